"""Lab 2: trees. Binomial broadcast and reduce against the naive linear versions.

    mpiexec -n 4 python examples/labs/02_trees.py [--step] [--trace trees.json] [--png trees.png]

What to look for:
  - linear: the root talks to every other rank itself, p - 1 moves in a row at the root.
  - binomial: every rank that has the data passes it on, so the number of ranks holding it
    doubles each step: log2(p) rounds. In the diagram, watch the root's value spread 1 -> 2 -> 4.
  - reduce is the same tree walked the other way: partial sums flow towards the root.
  - steps are counted on each rank: in the linear broadcast rank 0's steps are its p - 1 sends,
    while every other rank has one step, its receive (so "after step 1" shows every receiver
    done: each has finished *its* first step). The --trace timeline shows the real order.
  - the timing table at the end: at 4 ranks on one machine the two are close (copies, not links,
    are the cost); the tree's advantage grows with p, as log2(p) against p - 1.
"""
import time

import numpy as np
from mpi4py import MPI

from _lab import lab_args, show, verdict

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
    verdict(world, ok, "linear and binomial broadcast/reduce give MPI's results")


if __name__ == "__main__":
    main()
