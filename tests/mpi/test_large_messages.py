"""Messages past MPI's int count travel in pieces (transport/host.py). The limit is lowered to a
few bytes here, so ordinary sizes take the piecewise path; results against MPI's own
collectives and numpy. (The real limit, 1 GiB, would need 2 GiB buffers per rank.)
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_large_messages.py
"""
import numpy as np
import pytest
from mpi4py import MPI

from mpitrain.comm.transport import host

from oracles import all_agree

pytestmark = pytest.mark.mpi


@pytest.fixture
def tiny_messages(monkeypatch):
    monkeypatch.setattr(host, "MAX_MESSAGE_BYTES", 24)


def test_pieces_cover_the_buffer_in_order():
    a = np.arange(37, dtype=np.float32)
    parts = host.pieces(a, limit=24)
    assert [p.nbytes for p in parts] == [24] * 6 + [4]
    assert np.array_equal(np.concatenate(parts).view(np.float32), a)
    assert len(host.pieces(np.empty(0, np.float32), limit=24)) == 1


@pytest.mark.parametrize("count", [5, 6, 1001])
@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling", "auto"])
def test_all_reduce_in_pieces(world, tiny_messages, count, algorithm):
    mine = np.random.default_rng(world.rank).integers(-8, 9, count).astype(np.float64)
    want = np.empty_like(mine)
    MPI.COMM_WORLD.Allreduce(mine, want)
    got = mine.copy()
    world.all_reduce(got, algorithm=algorithm)
    ok, why = all_agree(world, np.array_equal(got, want), f"{algorithm}, {count}: differs from MPI")
    assert ok, why


@pytest.mark.parametrize("count", [3, 1000])
def test_broadcast_and_all_gather_in_pieces(world, tiny_messages, count):
    src = np.arange(count, dtype=np.int32) * 7 + 1
    buf = src.copy() if world.rank == 0 else np.zeros(count, np.int32)
    world.broadcast(buf, root=0)
    mine = np.full(count, world.rank + 1, np.int64)
    got = np.zeros(count * world.size, np.int64)
    world.all_gather(mine, got)
    want = np.empty_like(got)
    MPI.COMM_WORLD.Allgather(mine, want)
    ok, why = all_agree(world, np.array_equal(buf, src) and np.array_equal(got, want),
                        f"broadcast ok {np.array_equal(buf, src)}, all_gather ok {np.array_equal(got, want)}")
    assert ok, why
