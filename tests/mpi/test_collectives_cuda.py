"""Every collective x algorithm on GPU buffers (torch CUDA tensors and CuPy arrays), against the
same oracles as the host tests: every rank's input gathered by MPI, reduced by numpy.

Skips without a GPU. Ranks share the visible GPUs round robin (more ranks than GPUs works).
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_collectives_cuda.py
"""
import numpy as np
import pytest

from mpitrain.comm import ALGORITHMS
from mpitrain.comm.algorithms import PEER_ALGORITHMS

from oracles import all_agree, make_input, matches, reduce_reference

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

DTYPES = ["float32", "bfloat16", "float64", "float16", "int32", "int64", "uint8"]
KINDS = ["torch", "cupy"]


@pytest.fixture(autouse=True)
def my_gpu(world):
    torch.cuda.set_device(world.local_rank % torch.cuda.device_count())


def to_gpu(array, dtype, kind):
    """The storage array (bfloat16 as uint16 bits) as a GPU buffer of the given kind."""
    if array is None:
        return None
    t = torch.from_numpy(array.copy())
    if dtype == "bfloat16":
        t = t.view(torch.int16).view(torch.bfloat16)
    t = t.cuda()
    if kind == "cupy":
        cupy = pytest.importorskip("cupy")
        if dtype == "bfloat16":
            pytest.skip("CuPy has no bfloat16")
        return cupy.from_dlpack(t)
    return t


def to_host(buf, dtype):
    if type(buf).__module__.startswith("cupy"):
        buf = torch.from_dlpack(buf)
    t = buf.detach().cpu()
    if dtype == "bfloat16":
        t = t.view(torch.int16)
    out = t.numpy()
    return out.view(np.uint16) if dtype == "bfloat16" else out


def counts_for(size):
    return sorted({0, 1, 2 * size + 1, 1003, 300_001})


def skip_without_peer_kernels(world, algorithm, collective):
    """The peer algorithms run only where the job has CUDA IPC and one GPU per rank."""
    if algorithm in PEER_ALGORITHMS.get(collective, {}):
        reason = world.peer_kernels_reason(torch.cuda.current_device())
        if reason is not None:
            pytest.skip(f"peer kernels unavailable: {reason}")


def check(world, failures):
    ok, why = all_agree(world, not failures, str(failures[:5]))
    assert ok, why


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["all_reduce"],
                                       *PEER_ALGORITHMS["all_reduce"]])
def test_all_reduce_on_gpu(world, algorithm, dtype, kind):
    skip_without_peer_kernels(world, algorithm, "all_reduce")
    failures = []
    ops = ["sum", "max", "min", "prod"] + (["avg"] if dtype.startswith(("float", "bfloat")) else [])
    for op in ops:
        for count in counts_for(world.size):
            x = make_input(dtype, count, seed=world.rank * 7919 + count, op=op)
            expected = reduce_reference(world.mpi_comm.allgather(x), op, dtype, world.size)
            g = to_gpu(x, dtype, kind)
            world.all_reduce(g, op=op, algorithm=algorithm)
            if not matches(to_host(g, dtype), expected, dtype, op):
                failures.append((op, count))
    check(world, failures)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["broadcast"]])
def test_broadcast_on_gpu(world, algorithm, kind):
    failures = []
    for count in counts_for(world.size):
        for root in range(world.size):
            x = make_input("float32", count, seed=world.rank + 10 * count)
            expected = world.mpi_comm.bcast(x, root=root)
            g = to_gpu(x, "float32", kind)
            world.broadcast(g, root=root, algorithm=algorithm)
            if not np.array_equal(to_host(g, "float32"), expected):
                failures.append((count, root))
    check(world, failures)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["reduce"]])
def test_reduce_on_gpu(world, algorithm, dtype):
    failures = []
    for count in counts_for(world.size):
        x = make_input(dtype, count, seed=world.rank * 31 + count)
        expected = reduce_reference(world.mpi_comm.allgather(x), "sum", dtype, world.size)
        for root in range(world.size):
            out = to_gpu(np.zeros_like(x), dtype, "torch")
            world.reduce(to_gpu(x, dtype, "torch"), out, root=root, algorithm=algorithm)
            if world.rank == root and not matches(to_host(out, dtype), expected, dtype, "sum"):
                failures.append((count, root))
    check(world, failures)


@pytest.mark.parametrize("algorithm", ["auto", "ring", "peer"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64", "uint8"])
def test_reduce_scatter_and_all_gather_on_gpu(world, dtype, algorithm):
    skip_without_peer_kernels(world, algorithm, "all_gather")
    failures = []
    for k in (0, 1, 5, 100_003):
        x = make_input(dtype, k * world.size, seed=world.rank + k)
        full = reduce_reference(world.mpi_comm.allgather(x), "sum", dtype, world.size)
        mine = to_gpu(np.zeros(k, dtype=x.dtype), dtype, "torch")
        world.reduce_scatter(to_gpu(x, dtype, "torch"), mine, algorithm=algorithm)
        if not matches(to_host(mine, dtype), full[world.rank * k:(world.rank + 1) * k], dtype, "sum"):
            failures.append(("reduce_scatter", k))
        gathered = to_gpu(np.zeros(k * world.size, dtype=x.dtype), dtype, "torch")
        world.all_gather(mine, gathered, algorithm=algorithm)
        if not matches(to_host(gathered, dtype), full, dtype, "sum"):
            failures.append(("all_gather", k))
    check(world, failures)


@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["scatter"]])
def test_scatter_and_gather_on_gpu(world, algorithm):
    failures = []
    for k in (0, 3, 70_001):
        for root in range(world.size):
            x = make_input("int32", k * world.size, seed=root + k)
            block = to_gpu(np.zeros(k, np.int32), "int32", "torch")
            world.scatter(to_gpu(x, "int32", "torch") if world.rank == root else None, block,
                          root=root, algorithm=algorithm)
            if not np.array_equal(to_host(block, "int32"), x[world.rank * k:(world.rank + 1) * k]):
                failures.append(("scatter", k, root))
            back = to_gpu(np.zeros(k * world.size, np.int32), "int32", "torch")
            world.gather(block, back if world.rank == root else None, root=root,
                         algorithm=algorithm if algorithm in ALGORITHMS["gather"] else "auto")
            if world.rank == root and not np.array_equal(to_host(back, "int32"), x):
                failures.append(("gather", k, root))
    check(world, failures)


def test_a_gpu_collective_follows_the_callers_stream(world):
    """Work queued on a side stream before the call is seen by it; the result is ready for the
    caller's stream after it, with no synchronize by the caller in between."""
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.zeros(1 << 20, device="cuda")
        torch.cuda._sleep(20_000_000)             # keep the stream busy before the fill lands
        x.fill_(world.rank + 1)
        world.all_reduce(x)
        y = x * 2                                  # queued after the collective on the same stream
    side.synchronize()
    expected = 2 * sum(range(1, world.size + 1))
    ok = bool((y == expected).all())
    check(world, [] if ok else [f"got {y[:3].tolist()}, expected {expected}"])


def test_host_and_gpu_buffers_do_not_mix(world):
    from mpitrain.comm import CollectiveError
    with pytest.raises(CollectiveError, match=f"rank {world.rank}: sendbuf is on cuda:"):
        world.reduce_scatter(torch.zeros(world.size, device="cuda"), np.zeros(1, np.float32))
