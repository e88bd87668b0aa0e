"""Lab 3: the ring all-reduce, as reduce-scatter then all-gather, step by step.

    mpiexec -n 4 python examples/labs/03_ring.py [--step] [--size 8] [--trace ring.json]

What to look for:
  - the buffer is cut into p blocks. Reduce-scatter: in each of p - 1 steps every rank sends
    one block to its right neighbour and adds the block arriving from its left. After p - 1
    steps rank r holds block r summed over all ranks (watch one block per rank "fill up").
  - all-gather: p - 1 more steps pass the finished blocks around the ring until every rank has
    all of them.
  - every link carries 2 (p - 1) / p of the buffer whatever p is: that is why the ring is the
    algorithm for large messages (busbw in `python -m mpitrain.bench collectives`).
"""
import numpy as np
from mpi4py import MPI

from _lab import lab_args, questions, show, verdict

from mpitrain.comm import init


def main():
    args = lab_args(__doc__, size=8)
    world = init()
    rank, p = world.rank, world.size
    x = (np.arange(args.size) + 100 * rank).astype(np.float64)      # easy to follow by eye
    oracle = np.empty_like(x)
    world.mpi_comm.Allreduce(x, oracle, op=MPI.SUM)
    with world.trace(snapshots=True) as trace:
        world.all_reduce(x, algorithm="ring")
    events = show(world, trace, args, f"ring all-reduce, {p} ranks")
    if world.rank == 0 and events:
        steps = max(e["step"] for e in events)
        print(f"{steps} steps per rank: {p - 1} of reduce-scatter, then {p - 1} of all-gather")
    questions(world,
              f"After round {p - 1}, which block of its buffer does each rank hold fully summed? "
              f"Read it off the diagram.",
              "How many elements did each rank send in all (the trace's slices)? Compare with "
              "2 (p - 1) / p of the buffer, and with sending the whole buffer p - 1 times.",
              "Run it at 5 ranks with --size 8: which blocks are shorter, and does any rank wait "
              "longer in the timeline for it?")
    verdict(world, np.array_equal(x, oracle), "the ring all-reduce equals MPI_Allreduce")


if __name__ == "__main__":
    main()
