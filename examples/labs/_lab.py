"""What every lab shares: its flags, showing a trace, and one verdict agreed by all ranks.

    args = lab_args(__doc__)          # --step, --trace PATH.json, --png PATH.png, --size N
                                      # (takes=("trace",): the others are refused)
    with world.trace(snapshots=True) as trace:
        ...
    show(world, trace, args, "ring all-reduce")
    verdict(world, ok, "ring all-reduce equals MPI_Allreduce")
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from mpitrain.comm import trace_render  # noqa: E402


COMMON = ("size", "step", "trace", "png")


def lab_args(doc, size=8, extra=None, takes=COMMON):
    """The lab's flags: the common ones it `takes` (a lab without small traced buffers has no
    --size or --step) and its own (`extra`). A common flag the lab does not take is refused with
    the reason, not ignored."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=size, help=f"elements per buffer (default {size})")
    p.add_argument("--step", action="store_true",
                   help="walk through the recorded rounds one at a time (Enter for the next)")
    p.add_argument("--trace", metavar="PATH.json", help="write a Chrome/Perfetto trace here")
    p.add_argument("--png", metavar="PATH.png", help="write a picture here")
    if extra:
        extra(p)
    args = p.parse_args()
    given = [name for name in COMMON if name not in takes and getattr(args, name) != p.get_default(name)]
    if given:
        p.error(f"{', '.join('--' + n for n in given)}: this lab has no "
                f"{', '.join(WHAT[n] for n in given)}; it takes "
                f"{', '.join('--' + n for n in takes) or 'none of --size, --step, --trace, --png'}"
                f" (labs 02-04 take them all)")
    return args


WHAT = {"size": "traced buffer to size", "step": "recorded rounds to step through",
        "trace": "collective trace to write", "png": "picture to draw"}


def show(world, trace, args, title, diagram=True):
    """Rank 0 prints every rank's buffer after every step (or steps through it with --step) and
    writes the trace files asked for. Collective: every rank calls it."""
    events, snapshots = trace.gather()
    if args.step:
        # rank 0 waits for Enter between steps; the others wait for it in a plain MPI call,
        # which the collectives' watchdog does not time (a student may think for a while)
        if world.rank == 0:
            trace_render.step_through(snapshots, events=events)
        world.mpi_comm.bcast(None, root=0)
    if world.rank != 0:
        return events
    if diagram and not args.step:
        print(trace_render.text_diagram(snapshots, events), flush=True)
    if args.trace:
        trace_render.write_chrome_trace(events, args.trace)
        print(f"wrote {args.trace} (open it in ui.perfetto.dev or chrome://tracing)")
    if args.png and events:
        trace_render.write_timeline_png(events, args.png, title)
        print(f"wrote {args.png}")
    return events


def questions(world, *items):
    """The lab's closing questions; the numbers the run printed answer each."""
    world.print0("\nQuestions (this run's numbers answer them):")
    for k, text in enumerate(items, 1):
        world.print0(f"  {k}. {text}")


def verdict(world, ok, what):
    """Every rank's check, agreed: rank 0 prints OK or FAILED; a failure exits 1 everywhere."""
    every = world.mpi_comm.allgather(bool(ok))
    bad = [r for r, good in enumerate(every) if not good]
    world.print0(f"{'OK' if not bad else 'FAILED'}: {what}" + (f" (ranks {bad})" if bad else ""))
    if bad:
        raise SystemExit(1)
