"""A tour of the hand-rolled collectives, checked against MPI's own (what `make train` runs until
the trainer lands).

    mpiexec -n 4 python -m mpitrain.comm.demo

Rank 0 scatters 39, 72, 129, 42 (one value per rank, cycling if there are more ranks); every rank
halves its value; the halves are summed at rank 0 and their average is broadcast to all. Then
every all-reduce algorithm reduces 1 M floats, compared with MPI_Allreduce.
"""
import time

import numpy as np

from . import ALGORITHMS, init

VALUES = [39.0, 72.0, 129.0, 42.0]


def main():
    world = init()
    p, rank = world.size, world.rank
    world.print0(f"{p} rank(s) on {world.num_nodes} node(s)")

    data = np.array([VALUES[i % len(VALUES)] for i in range(p)]) if rank == 0 else None
    mine = np.empty(1)
    world.scatter(data, mine, root=0)
    half = mine / 2
    total = np.empty(1)
    world.reduce(half, total, root=0, op="sum")
    average = total / p if rank == 0 else np.empty(1)
    world.broadcast(average, root=0)
    print(f"rank {rank}: got {mine[0]:g}, halved to {half[0]:g}; average of the halves "
          f"{average[0]:g}" + (f" (sum {total[0]:g} at rank 0)" if rank == 0 else ""), flush=True)
    world.barrier()

    from mpi4py import MPI
    x = np.random.default_rng(rank).integers(-100, 100, 1 << 20).astype(np.float32)
    expected = np.empty_like(x)
    world.mpi_comm.Allreduce(x, expected, op=MPI.SUM)
    for name in ALGORITHMS["all_reduce"]:
        y = x.copy()
        start = time.perf_counter()
        world.all_reduce(y, algorithm=name)
        elapsed = time.perf_counter() - start
        same = world.mpi_comm.allreduce(bool(np.array_equal(y, expected)), op=MPI.LAND)
        world.print0(f"all_reduce {name:>18}: 4 MB in {elapsed * 1e3:7.2f} ms, "
                     f"{'equals' if same else 'DIFFERS FROM'} MPI_Allreduce")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
