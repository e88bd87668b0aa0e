"""Pictures of a trace (trace.py): a text diagram, a Chrome/Perfetto trace, a PNG timeline, and
step-through.

    events, snapshots = trace.gather()                 # on rank 0
    print(text_diagram(snapshots, events))             # every rank's buffer after every round
    write_chrome_trace(events, "ring.json")            # open in chrome://tracing or ui.perfetto.dev
    write_timeline_png(events, "ring.png")             # by round and by time, one row per rank
    step_through(snapshots)                            # the diagram one step at a time (Enter)
"""
import json
import sys



def _calls(snapshots):
    """{(collective, call, algorithm): {rank: [(after_step, array), ...]}} in call order."""
    calls = {}
    for rank, snaps in sorted(snapshots.items()):
        for collective, call, algorithm, step, array in snaps:
            calls.setdefault((call, collective, algorithm), {}).setdefault(rank, []).append((step, array))
    return {(c, n, a): v for (n, c, a), v in sorted(calls.items())}


def _row(array):
    return "[" + " ".join(f"{v:>6g}" for v in array.tolist()) + " ]"


def frames(snapshots, events=None):
    """One text frame per (call, round): every rank's buffer after that round of the whole job
    (trace_rounds.py), with what the rank did in it (-> 4: sent to rank 4, <- 0: received from
    rank 0). Without events, per step of each rank instead (steps are counted per rank)."""
    if events is None:
        return _frames_by_step(snapshots)
    from .trace_rounds import number_rounds
    rounds, _ = number_rounds(events)
    moves = {}
    for e in events:
        n = rounds.get((e["call"], e["rank"], e["step"]))
        arrows = ([f"-> {e['peer'][0]}"] if e["kind"] in ("send", "sendrecv") else []) + \
                 ([f"<- {e['peer'][-1]}"] if e["kind"] in ("recv", "sendrecv") else [])
        moves.setdefault((e["call"], e["rank"], n), []).extend(arrows)
    out = []
    for (collective, call, algorithm), by_rank in _calls(snapshots).items():
        states = {rank: [(rounds.get((call, rank, step), 0) if step else 0, a) for step, a in snaps]
                  for rank, snaps in by_rank.items()}
        last = max(n for snaps in states.values() for n, _ in snaps)
        for k in range(last + 1):
            title = "before the first round" if k == 0 else f"round {k} of {last}"
            if k == last:
                title += " (the result)"
            lines = [f"{collective} #{call} ({algorithm}), {title}:"]
            for rank, snaps in sorted(states.items()):
                array = [a for n, a in snaps if n <= k][-1]
                did = ", ".join(moves.get((call, rank, k), [])) if k else ""
                lines.append(f"  rank {rank}: {_row(array)}" + (f"   {did}" if did else ""))
            out.append("\n".join(lines))
    return out


def _frames_by_step(snapshots):
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


def text_diagram(snapshots, events=None):
    return "\n\n".join(frames(snapshots, events))


def step_through(snapshots, out=sys.stdout, keys=None, events=None):
    """Show the frames one at a time, waiting for Enter between them. Enter is read from `keys`
    (default: stdin when someone is at a terminal: under mpiexec rank 0's stdin is a pipe that
    mpiexec fills from the terminal; without a terminal, as in a batch job, where that pipe
    never ends, the frames run straight through)."""
    if keys is None and (sys.stdin.isatty() or _at_a_terminal()):
        keys = sys.stdin
    shown = frames(snapshots, events)
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


def _label(e):
    """'-> 2 <- 0' for a sendrecv to rank 2 from rank 0, with the buffer slices moved."""
    parts = []
    sent, received = e["chunk"] if e["chunk"] else (None, None)
    if e["kind"] in ("send", "sendrecv"):
        parts.append(f"-> {e['peer'][0]}" + (f" [{sent[0]}:{sent[0] + sent[1]}]" if sent else ""))
    if e["kind"] in ("recv", "sendrecv"):
        parts.append(f"<- {e['peer'][-1]}" +
                     (f" [{received[0]}:{received[0] + received[1]}]" if received else ""))
    return " ".join(parts)


def chrome_trace(events):
    """The Chrome trace-event format: one row (thread) per rank, times in us; each move named by
    its collective, step and peers, with its round of the whole job (trace_rounds.py) in its
    args, and every send joined to its receive by a flow arrow. `events` is one trace's list,
    or {name: list} to show several traces one after another as processes of their own (lab 06
    shows each ZeRO stage's step so)."""
    from .trace_rounds import number_rounds
    sections = events if isinstance(events, dict) else {None: events}
    trace, flow = [], 0
    for pid, (section, mine) in enumerate(sections.items()):
        rounds, links = number_rounds(mine)
        for e in mine:
            trace.append({"name": f"{e['collective']} step {e['step']}: {_label(e)}",
                          "cat": f"{e['collective']}/{e['algorithm']}",
                          "ph": "X", "ts": e["start"] * 1e6, "dur": (e["end"] - e["start"]) * 1e6,
                          "pid": pid, "tid": e["rank"],
                          "args": {"collective": e["collective"], "call": e["call"],
                                   "algorithm": e["algorithm"], "step": e["step"],
                                   "round": rounds.get((e["call"], e["rank"], e["step"])),
                                   "bytes": e["bytes"], "chunk": e["chunk"], "peer": e["peer"]}})
        for send, recv in links:                  # arrows: from the send to its receive
            flow += 1
            trace.append({"name": "message", "cat": "message", "ph": "s", "id": flow, "pid": pid,
                          "tid": send["rank"], "ts": send["start"] * 1e6})
            trace.append({"name": "message", "cat": "message", "ph": "f", "bp": "e", "id": flow,
                          "pid": pid, "tid": recv["rank"],
                          "ts": (recv["start"] + recv["end"]) / 2 * 1e6})
        trace += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": r,
                   "args": {"name": f"rank {r}"}} for r in sorted({e["rank"] for e in mine})]
        if section is not None:
            trace.append({"name": "process_name", "ph": "M", "pid": pid,
                          "args": {"name": section}})
    return {"traceEvents": trace, "displayTimeUnit": "ns"}


def write_chrome_trace(events, path):
    with open(path, "w") as f:
        json.dump(chrome_trace(events), f)


def _calls_in_order(events):
    first = {}
    for e in sorted(events, key=lambda e: e["start"]):
        first.setdefault(e["call"], e)
    return [first[c] for c in sorted(first, key=lambda c: first[c]["start"])]


def write_timeline_png(events, path, title="collective steps"):
    """Two panels, one row per rank. Above, by round of the whole job: each move a box labelled
    with its peers and the slice of the buffer it moved, each send joined to its receive by an
    arrow, a line between collectives. Below, the same moves against the clock: a bar runs
    from the call to its completion, so most of a short bar's length is waiting for the peer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from .trace_rounds import number_rounds
    rounds, links = number_rounds(events)
    ranks = sorted({e["rank"] for e in events})
    calls = _calls_in_order(events)
    colour = {c["call"]: f"C{k % 10}" for k, c in enumerate(calls)}
    offset, at = {}, 0
    for c in calls:
        offset[c["call"]] = at
        at += max((n for (call, _, _), n in rounds.items() if call == c["call"]), default=0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 1.6 * len(ranks) + 3),
                                      gridspec_kw={"height_ratios": [3, 2]})

    def at_round(e):
        return offset[e["call"]] + rounds.get((e["call"], e["rank"], e["step"]), 0)
    for e in events:
        x = at_round(e)
        top.add_patch(Rectangle((x - 0.95, e["rank"] - 0.35), 0.9, 0.7, color=colour[e["call"]],
                                alpha=0.35))
        top.text(x - 0.5, e["rank"], f"s{e['step']}\n{_label(e)}", ha="center", va="center",
                 fontsize=6 if at < 16 else 4, clip_on=True)
        bottom.broken_barh([(e["start"] * 1e6, max((e["end"] - e["start"]) * 1e6, 0.5))],
                           (e["rank"] - 0.35, 0.7), color=colour[e["call"]])
    for send, recv in links:
        down = 0.35 if recv["rank"] > send["rank"] else -0.35     # box edge to box edge
        top.annotate("", xy=(at_round(recv) - 0.5, recv["rank"] - down),
                     xytext=(at_round(send) - 0.5, send["rank"] + down),
                     arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.6, "alpha": 0.6})
        bottom.annotate("", xy=(recv["end"] * 1e6, recv["rank"]),
                        xytext=(send["start"] * 1e6, send["rank"]),
                        arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.4, "alpha": 0.4})
    for c in calls[1:]:
        top.axvline(offset[c["call"]], color="grey", lw=1, ls="--")
        bottom.axvline(c["start"] * 1e6, color="grey", lw=1, ls="--")
    top.set_xlim(0, max(at, 1))
    top.set_xticks(range(max(at, 1) + 1))
    top.set_xlabel("round of the whole job (a move waits only for moves of earlier rounds)")
    bottom.set_xlabel("microseconds since the trace opened (a bar: from the call to its completion)")
    for ax in (top, bottom):
        ax.set_ylim(max(ranks) + 0.6, min(ranks) - 0.6)
        ax.set_yticks(ranks, [f"rank {r}" for r in ranks])
    top.set_title(title)
    fig.legend(handles=[Patch(color=colour[c["call"]], alpha=0.6,
                              label=f"{c['collective']} #{c['call']} ({c['algorithm']})")
                        for c in calls], loc="lower center", ncol=min(4, len(calls)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
