"""Lab 1: point-to-point, then scatter -> compute -> reduce -> broadcast.

    mpiexec -n 4 python examples/labs/01_scatter_reduce.py

What to look for:
  1. rank 0 sends a number to rank 1 and gets it back doubled: Send and Recv are the only
     primitives; every collective below is built from them.
  2. the classic program, twice: rank 0 scatters 39, 72, 129, 42 (one per rank), every rank
     halves its value, the halves are summed at rank 0 (141) and their average (35.25) is
     broadcast to every rank. First with mpi4py's own collectives, then with mpitrain's
     hand-rolled ones: the output is the same. With more ranks the values repeat.
"""
import numpy as np
from mpi4py import MPI

from _lab import lab_args, questions, verdict

from mpitrain.comm import init

VALUES = [39.0, 72.0, 129.0, 42.0]


def scatter_compute_reduce(world, rank, p, with_mpi4py):
    comm = world.mpi_comm
    data = np.array([VALUES[i % 4] for i in range(p)]) if rank == 0 else None
    mine = np.empty(1)
    total = np.zeros(1)
    if with_mpi4py:
        comm.Scatter(data, mine, root=0)
        half = mine / 2
        comm.Reduce(half, total, op=MPI.SUM, root=0)
        average = total / p if rank == 0 else np.empty(1)
        comm.Bcast(average, root=0)
    else:
        world.scatter(data, mine, root=0)
        half = mine / 2
        world.reduce(half, total, root=0, op="sum")
        average = total / p if rank == 0 else np.empty(1)
        world.broadcast(average, root=0)
    return mine[0], half[0], total[0], average[0]


def main():
    args = lab_args(__doc__, takes=())
    world = init()
    rank, p = world.rank, world.size
    comm = world.mpi_comm

    if p > 1:                                     # 1. point-to-point
        if rank == 0:
            comm.Send(np.array([21.0]), dest=1)
            back = np.empty(1)
            comm.Recv(back, source=1)
            print(f"rank 0: sent 21 to rank 1, got back {back[0]:g}", flush=True)
        elif rank == 1:
            got = np.empty(1)
            comm.Recv(got, source=0)
            comm.Send(got * 2, dest=0)
    world.barrier()

    results = {}
    for label, with_mpi4py in (("mpi4py's collectives", True), ("mpitrain's collectives", False)):
        mine, half, total, average = scatter_compute_reduce(world, rank, p, with_mpi4py)
        results[label] = (mine, half, average)
        line = (f"rank {rank}: got {mine:g}, halved to {half:g}, average {average:g}"
                + (f" (sum of halves {total:g})" if rank == 0 else ""))
        lines = world.gather_object(line, root=0)   # rank 0 prints them all, in rank order
        world.print0("\n".join([f"-- {label}", *(lines or [])]))

    questions(world,
              "Rank 0 sent 21 and got back a number: which rank computed it, and from what?",
              "Which rank printed the sum of the halves, and why only that one? Which call "
              "then gave every rank the average?",
              "Run it at 3 ranks: which of the four values is left out, and does the average "
              "change as the arithmetic says?")
    expected_avg = sum(VALUES[i % 4] for i in range(p)) / 2 / p          # the arithmetic oracle
    ours, theirs = results["mpitrain's collectives"], results["mpi4py's collectives"]
    verdict(world, ours == theirs and abs(ours[2] - expected_avg) < 1e-12,
            f"mpitrain's scatter/reduce/broadcast give mpi4py's answer (average {expected_avg:g})")


if __name__ == "__main__":
    main()
