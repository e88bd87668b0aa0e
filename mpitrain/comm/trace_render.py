"""Pictures of a trace (trace.py): a text diagram, a Chrome/Perfetto trace, a PNG timeline, and
step-through.

    events, snapshots = trace.gather()                 # on rank 0
    print(text_diagram(snapshots))                     # every rank's buffer after every step
    write_chrome_trace(events, "ring.json")            # open in chrome://tracing or ui.perfetto.dev
    write_timeline_png(events, "ring.png")             # one row per rank, one bar per move
    step_through(snapshots)                            # the diagram one step at a time (Enter)
"""
import json
import sys
from itertools import groupby

KIND_COLOURS = {"send": "tab:blue", "recv": "tab:orange", "sendrecv": "tab:green"}


def _calls(snapshots):
    """{(collective, call, algorithm): {rank: [(after_step, array), ...]}} in call order."""
    calls = {}
    for rank, snaps in sorted(snapshots.items()):
        for collective, call, algorithm, step, array in snaps:
            calls.setdefault((call, collective, algorithm), {}).setdefault(rank, []).append((step, array))
    return {(c, n, a): v for (n, c, a), v in sorted(calls.items())}


def _row(array):
    return "[" + " ".join(f"{v:>6g}" for v in array.tolist()) + " ]"


def frames(snapshots):
    """One text frame per (call, step): every rank's buffer after that step. A rank whose
    algorithm took fewer steps (trees) shows its state after its own last step."""
    out = []
    for (collective, call, algorithm), by_rank in _calls(snapshots).items():
        labels = sorted({step for snaps in by_rank.values() for step, _ in snaps})
        for label in labels:
            title = "before the first step" if label == 0 else f"after step {label}"
            if label and len({len(snaps) for snaps in by_rank.values()}) > 1:
                title += " of each rank (steps are counted per rank)"
            if label == labels[-1]:
                title += " (the result)"
            lines = [f"{collective} #{call} ({algorithm}), {title}:"]
            for rank, snaps in sorted(by_rank.items()):
                array = [a for step, a in snaps if step <= label][-1]
                lines.append(f"  rank {rank}: {_row(array)}")
            out.append("\n".join(lines))
    return out


def text_diagram(snapshots):
    return "\n\n".join(frames(snapshots))


def step_through(snapshots, out=sys.stdout, keys=None):
    """Show the frames one at a time, waiting for Enter between them. Enter is read from `keys`
    (default: stdin when someone is at a terminal: under mpiexec rank 0's stdin is a pipe that
    mpiexec fills from the terminal; without a terminal, as in a batch job, where that pipe
    never ends, the frames run straight through)."""
    if keys is None and (sys.stdin.isatty() or _at_a_terminal()):
        keys = sys.stdin
    shown = frames(snapshots)
    if keys is None:
        out.write("(no terminal: every step at once)\n")
    for n, frame in enumerate(shown):
        out.write(frame + "\n")
        if n + 1 < len(shown) and keys is not None:
            out.write("  (Enter: next step)\n")
            out.flush()
            if keys.readline() == "":              # input ended: the rest at once
                keys = None
        out.flush()
    return len(shown)


def _at_a_terminal():
    """Whether this process has a controlling terminal (mpiexec started from one)."""
    try:
        open("/dev/tty").close()
        return True
    except OSError:
        return False


def chrome_trace(events):
    """The Chrome trace-event format: one process, one row (thread) per rank, times in us."""
    trace = []
    for e in events:
        peers = ", ".join(str(p) for p in e["peer"])
        trace.append({"name": f"{e['kind']} {peers}", "cat": f"{e['collective']}/{e['algorithm']}",
                      "ph": "X", "ts": e["start"] * 1e6, "dur": (e["end"] - e["start"]) * 1e6,
                      "pid": 0, "tid": e["rank"],
                      "args": {"collective": e["collective"], "call": e["call"],
                               "step": e["step"], "bytes": e["bytes"],
                               "chunk": e["chunk"], "peer": e["peer"]}})
    ranks = sorted({e["rank"] for e in events})
    trace += [{"name": "thread_name", "ph": "M", "pid": 0, "tid": r, "args": {"name": f"rank {r}"}}
              for r in ranks]
    return {"traceEvents": trace, "displayTimeUnit": "ns"}


def write_chrome_trace(events, path):
    with open(path, "w") as f:
        json.dump(chrome_trace(events), f)


def write_timeline_png(events, path, title="collective steps"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ranks = sorted({e["rank"] for e in events})
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(ranks) + 1.2))
    labelled = set()                                   # one legend entry per kind
    for rank in ranks:
        mine = [e for e in events if e["rank"] == rank]
        for kind, group in groupby(sorted(mine, key=lambda e: e["kind"]), key=lambda e: e["kind"]):
            bars = [(e["start"] * 1e6, max((e["end"] - e["start"]) * 1e6, 0.5)) for e in group]
            ax.broken_barh(bars, (rank - 0.35, 0.7), color=KIND_COLOURS.get(kind, "grey"),
                           label=None if kind in labelled else kind)
            labelled.add(kind)
    ax.set_yticks(ranks, [f"rank {r}" for r in ranks])
    ax.set_xlabel("microseconds since the trace opened")
    ax.set_title(title)
    if labelled:
        ax.legend(fontsize=8, loc="upper right")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
