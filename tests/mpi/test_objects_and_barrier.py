"""The watched helpers every rank calls: barrier, object gather and broadcast (against mpi4py's
own), a root of any integer type, print0's keywords."""
import io
import contextlib

import numpy as np
import pytest


@pytest.mark.mpi
def test_barrier_orders_every_rank(world):
    from mpi4py import MPI
    for _ in range(3):
        world.barrier()
    # every rank came through; the count is MPI's own
    assert world.mpi_comm.allreduce(1, op=MPI.SUM) == world.size


@pytest.mark.mpi
@pytest.mark.parametrize("root", [0, -1])
def test_object_collectives_match_mpi4py(world, root):
    root = root % world.size
    obj = {"rank": world.rank, "payload": list(range(world.rank + 3))}
    assert world.gather_object(obj, root=root) == world.mpi_comm.gather(obj, root=root)
    assert world.broadcast_object(obj, root=root) == world.mpi_comm.bcast(obj, root=root)
    assert world.all_gather_object(obj) == world.mpi_comm.allgather(obj)


@pytest.mark.mpi
def test_root_of_any_integer_type(world):
    root = np.int64(world.size - 1)
    x = np.full(5, float(world.rank))
    world.broadcast(x, root=root)
    assert (x == world.size - 1).all()
    assert world.broadcast_object(world.rank, root=np.int32(0)) == 0
    with pytest.raises(ValueError, match=r"root True is out of range"):
        world.broadcast(x, root=True)


@pytest.mark.mpi
def test_print0_takes_print_keywords(world):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        world.print0("a", "b", sep="-", end="!", flush=True)
    assert out.getvalue() == ("a-b!" if world.rank == 0 else "")
