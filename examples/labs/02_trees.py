"""Lab 2: trees. Binomial broadcast and reduce against the naive linear versions.

    mpiexec -n 4 python examples/labs/02_trees.py [--step] [--trace trees.json] [--png trees.png]

What to look for (the diagram shows rounds of the whole job: a move of round k needed only
moves of earlier rounds; "-> 4" sent to rank 4, "<- 0" received from rank 0):
  - linear broadcast: the root sends to every other rank itself, one after another: p - 1
    rounds, and one more rank holds the value after each.
  - binomial broadcast: every rank that has the value passes it on, so the number of ranks
    holding it doubles each round, 1 -> 2 -> 4 -> 8: ceil(log2 p) rounds.
  - reduce is the same tree walked the other way: each rank's row is its partial sum, which
    grows as its children's sums come in, until the root holds the total (at 4 ranks
    1 + 2 + 3 + 4 = 10). In the linear reduce every rank sends in round 1, but the root takes
    the messages one round at a time: they wait at the root.
  - the timing table at the end: at 4 ranks on one machine the two are close (copies, not links,
    are the cost); the tree's advantage grows with p, as log2(p) against p - 1.
"""
import time

import numpy as np
from mpi4py import MPI

from _lab import lab_args, questions, show, verdict

from mpitrain.comm import init


def main():
    args = lab_args(__doc__, size=4)
    world = init()
    rank, n = world.rank, args.size
    ok = True
    with world.trace(snapshots=True) as trace:
        for algorithm in ("linear", "binomial"):
            x = np.full(n, float(rank + 1)) if rank == 0 else np.zeros(n)
            world.broadcast(x, root=0, algorithm=algorithm)
            ok &= bool(np.all(x == 1.0))                    # root's value everywhere
            y = np.full(n, float(rank + 1))
            total = np.zeros(n)
            world.reduce(y, total, root=0, algorithm=algorithm)
            oracle = np.zeros(n)
            world.mpi_comm.Reduce(y, oracle, op=MPI.SUM, root=0)
            ok &= rank != 0 or bool(np.array_equal(total, oracle))
    show(world, trace, args, "broadcast and reduce: linear, then binomial")

    big = np.ones(1 << 18)                                  # 2 MB: time both shapes
    rows = []
    for algorithm in ("linear", "binomial"):
        for name, call in (("broadcast", lambda: world.broadcast(big, 0, algorithm)),
                           ("reduce", lambda: world.reduce(big, np.empty_like(big), 0, "sum", algorithm))):
            world.barrier()
            start = time.perf_counter()
            for _ in range(5):
                call()
            rows.append((name, algorithm, world.mpi_comm.allreduce(
                (time.perf_counter() - start) / 5, op=MPI.MAX)))
    world.print0("\n2 MB per call, slowest rank, mean of 5:")
    for name, algorithm, seconds in rows:
        world.print0(f"  {name:9s} {algorithm:8s} {seconds * 1e3:8.2f} ms")
    questions(world,
              f"How many rounds did each broadcast take at {world.size} ranks? Which of p - 1 and "
              f"ceil(log2 p) gives which, and what would each be at 64 ranks?",
              "After round 1 of the binomial reduce, which ranks hold a partial sum, and whose "
              "inputs does each one contain?",
              "Which shape was faster at 2 MB in the table? Is the root's link or its copies the "
              "cost here, and which would dominate across machines?")
    verdict(world, ok, "linear and binomial broadcast/reduce give MPI's results")


if __name__ == "__main__":
    main()
