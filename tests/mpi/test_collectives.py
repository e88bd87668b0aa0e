"""Every collective x algorithm x op x dtype against numpy and MPI's own collectives.

Counts 0, 1, fewer than the ranks, not divisible by them, and a few thousand; every root.
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_collectives.py
"""
import numpy as np
import pytest
from mpi4py import MPI

from mpitrain.comm import ALGORITHMS, OPS
from mpitrain.comm.dtypes import DTYPES

from oracles import all_agree, make_input, matches, reduce_reference, user_buffer as U

pytestmark = pytest.mark.mpi

DTYPE_NAMES = list(DTYPES)
FLOATS = [d for d in DTYPE_NAMES if DTYPES[d].is_float]


def counts_for(size):
    return sorted({0, 1, max(size - 1, 0), 2 * size + 1, 1003})


def ops_for(dtype):
    return OPS if dtype in FLOATS else [op for op in OPS if op != "avg"]


def gathered(world, array):
    return world.mpi_comm.allgather(array)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["all_reduce"]])
def test_all_reduce(world, algorithm, dtype):
    failures = []
    for op in ops_for(dtype):
        for count in counts_for(world.size):
            x = make_input(dtype, count, seed=world.rank * 7919 + count, op=op)
            expected = reduce_reference(gathered(world, x), op, dtype, world.size)
            world.all_reduce(U(x, dtype), op=op, algorithm=algorithm)
            if not matches(x, expected, dtype, op):
                failures.append((op, count))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["reduce"]])
def test_reduce(world, algorithm, dtype):
    failures = []
    for op in ops_for(dtype):
        for count in counts_for(world.size):
            x = make_input(dtype, count, seed=world.rank * 31 + count, op=op)
            expected = reduce_reference(gathered(world, x), op, dtype, world.size)
            for root in range(world.size):
                out = np.full_like(x, 77)
                world.reduce(U(x, dtype), U(out, dtype), root=root, op=op, algorithm=algorithm)
                if world.rank == root and not matches(out, expected, dtype, op):
                    failures.append((op, count, root))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["broadcast"]])
def test_broadcast(world, algorithm, dtype):
    failures = []
    for count in counts_for(world.size):
        for root in range(world.size):
            x = make_input(dtype, count, seed=1000 * world.rank + count)
            expected = gathered(world, x)[root]
            world.broadcast(U(x, dtype), root=root, algorithm=algorithm)
            if not np.array_equal(x, expected):
                failures.append((count, root))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS["reduce_scatter"]])
def test_reduce_scatter(world, algorithm, dtype):
    failures = []
    p, r = world.size, world.rank
    for op in ops_for(dtype):
        for k in counts_for(p):
            x = make_input(dtype, p * k, seed=r * 131 + k, op=op)
            expected = reduce_reference(gathered(world, x), op, dtype, p)[r * k:(r + 1) * k]
            out = np.empty(k, dtype=x.dtype)
            world.reduce_scatter(U(x, dtype), U(out, dtype), op=op, algorithm=algorithm)
            if not matches(out, expected, dtype, op):
                failures.append((op, k))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_all_gather_scatter_gather(world, dtype):
    """all_gather, scatter and gather (each algorithm, every root) against MPI's Allgather."""
    failures = []
    p, r = world.size, world.rank
    for k in counts_for(p):
        mine = make_input(dtype, k, seed=r * 17 + k)
        expected = np.concatenate(gathered(world, mine)) if k else np.empty(0, mine.dtype)
        for alg in ["auto", *ALGORITHMS["all_gather"]]:
            out = np.empty(p * k, dtype=mine.dtype)
            world.all_gather(U(mine, dtype), U(out, dtype), algorithm=alg)
            if not np.array_equal(out, expected):
                failures.append(("all_gather", alg, k))
        for root in range(p):
            for alg in ["auto", *ALGORITHMS["gather"]]:
                out = np.full(p * k, 9, dtype=mine.dtype) if r == root else None
                world.gather(U(mine, dtype), U(out, dtype), root=root, algorithm=alg)
                if r == root and not np.array_equal(out, expected):
                    failures.append(("gather", alg, k, root))
            for alg in ["auto", *ALGORITHMS["scatter"]]:
                out = np.full(k, 9, dtype=mine.dtype)
                world.scatter(U(expected, dtype) if r == root else None, U(out, dtype), root=root, algorithm=alg)
                if not np.array_equal(out, expected[r * k:(r + 1) * k]):
                    failures.append(("scatter", alg, k, root))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


MPI_TYPES = {"float64": MPI.DOUBLE, "float32": MPI.FLOAT, "int64": MPI.INT64_T,
             "int32": MPI.INT32_T, "uint8": MPI.UINT8_T}
MPI_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}


@pytest.mark.parametrize("dtype", list(MPI_TYPES))
def test_against_mpi_native(world, dtype):
    """The second oracle: MPI's own Allreduce / Reduce_scatter / Allgather, bit for bit."""
    failures = []
    comm, p, r = world.mpi_comm, world.size, world.rank
    t = MPI_TYPES[dtype]
    for op, mpi_op in MPI_OPS.items():
        for k in counts_for(p):
            x = make_input(dtype, p * k, seed=r + 5 * k, op=op)
            ref = np.empty_like(x)
            comm.Allreduce([x, t], [ref, t], op=mpi_op)
            for alg in ALGORITHMS["all_reduce"]:
                y = x.copy()
                world.all_reduce(y, op=op, algorithm=alg)
                if not np.array_equal(y, ref):
                    failures.append(("all_reduce", alg, op, k))
            rs_ref, rs = np.empty(k, x.dtype), np.empty(k, x.dtype)
            comm.Reduce_scatter_block([x, t], [rs_ref, t], op=mpi_op)
            world.reduce_scatter(x, rs, op=op)
            if not np.array_equal(rs, rs_ref):
                failures.append(("reduce_scatter", op, k))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


@pytest.mark.parametrize("collective", ["all_reduce", "broadcast", "reduce_scatter", "all_gather"])
def test_large_8mb(world, collective):
    """2 Mi float32 elements (8 MB), every algorithm."""
    p, r = world.size, world.rank
    n = 2 * 1024 * 1024 // p * p
    x = make_input("float32", n, seed=r)
    inputs = gathered(world, x)
    failures = []
    for alg in ALGORITHMS[collective]:
        if collective == "all_reduce":
            y = x.copy()
            world.all_reduce(y, algorithm=alg)
            good = np.array_equal(y, np.sum(inputs, axis=0, dtype=np.float32))
        elif collective == "broadcast":
            y = x.copy()
            world.broadcast(y, root=p - 1, algorithm=alg)
            good = np.array_equal(y, inputs[p - 1])
        elif collective == "reduce_scatter":
            y = np.empty(n // p, np.float32)
            world.reduce_scatter(x, y, algorithm=alg)
            good = np.array_equal(y, np.sum(inputs, axis=0, dtype=np.float32)[r * n // p:(r + 1) * n // p])
        else:
            mine = x[: n // p]
            y = np.empty(n, np.float32)
            world.all_gather(mine, y, algorithm=alg)
            good = np.array_equal(y, np.concatenate([a[: n // p] for a in inputs]))
        if not good:
            failures.append(alg)
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


def test_v_forms_uneven_counts(world):
    """scatter_v, gather_v, all_gather_v, reduce_scatter_v with counts that differ per rank."""
    p, r = world.size, world.rank
    counts = [(3 * i + 1) % 5 for i in range(p)]            # includes zeros for some p
    total = sum(counts)
    offs = np.concatenate([[0], np.cumsum(counts)])
    failures = []
    full = make_input("int32", total, seed=r)
    inputs = gathered(world, full)
    mine = full[: counts[r]]
    expect_gather = np.concatenate([inputs[i][: counts[i]] for i in range(p)])
    out = np.empty(total, np.int32)
    world.all_gather_v(mine, out, counts)
    failures += [] if np.array_equal(out, expect_gather) else ["all_gather_v"]
    for root in range(p):
        for alg in ALGORITHMS["gather"]:
            g = np.empty(total, np.int32) if r == root else None
            world.gather_v(mine, g, counts, root=root, algorithm=alg)
            if r == root and not np.array_equal(g, expect_gather):
                failures.append(("gather_v", alg, root))
        for alg in ALGORITHMS["scatter"]:
            s = np.empty(counts[r], np.int32)
            world.scatter_v(inputs[root] if r == root else None, s, counts, root=root, algorithm=alg)
            if not np.array_equal(s, inputs[root][offs[r]:offs[r + 1]]):
                failures.append(("scatter_v", alg, root))
    rs = np.empty(counts[r], np.int32)
    world.reduce_scatter_v(full, rs, counts, op="sum")
    if not np.array_equal(rs, np.sum(inputs, axis=0, dtype=np.int32)[offs[r]:offs[r + 1]]):
        failures.append("reduce_scatter_v")
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


def test_in_place(world):
    """reduce with sendbuf is recvbuf; all_gather from the rank's own block of recvbuf;
    reduce_scatter into the rank's own block of sendbuf."""
    p, r = world.size, world.rank
    k = 5
    failures = []
    x = make_input("float64", p * k, seed=r)
    inputs = gathered(world, x)
    total = np.sum(inputs, axis=0)
    for root in range(p):
        y = x.copy()
        world.reduce(y, y, root=root)
        if r == root and not np.array_equal(y, total):
            failures.append(("reduce", root))
    buf = np.zeros(p * k)
    buf[r * k:(r + 1) * k] = x[:k]
    world.all_gather(buf[r * k:(r + 1) * k], buf)
    if not np.array_equal(buf, np.concatenate([a[:k] for a in inputs])):
        failures.append("all_gather")
    y = x.copy()
    world.reduce_scatter(y, y[r * k:(r + 1) * k])
    if not np.array_equal(y[r * k:(r + 1) * k], total[r * k:(r + 1) * k]):
        failures.append("reduce_scatter")
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


def test_torch_cpu_tensors(world):
    """torch CPU tensors, bfloat16 included, reduce in place through the same buffer layer."""
    torch = pytest.importorskip("torch")
    failures = []
    for dt in (torch.float32, torch.bfloat16, torch.int64):
        t = torch.arange(10, dtype=dt) + world.rank
        world.all_reduce(t)
        expected = torch.arange(10, dtype=torch.float64) * world.size + sum(range(world.size))
        if not torch.equal(t.double(), expected):
            failures.append(str(dt))
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


def test_results_bitwise_identical_on_every_rank(world):
    """Random floats (not integers): every rank must end with the same bits (data parallelism
    depends on it), whatever the algorithm."""
    failures = []
    for alg in ALGORITHMS["all_reduce"]:
        x = np.random.default_rng(world.rank).standard_normal(10007).astype(np.float32)
        world.all_reduce(x, algorithm=alg)
        if len({a.tobytes() for a in gathered(world, x)}) != 1:
            failures.append(alg)
    ok, why = all_agree(world, not failures, str(failures))
    assert ok, why


def test_topology_matches_mpi(world):
    local = world.mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
    ok = (world.local_rank, world.local_size) == (local.Get_rank(), local.Get_size())
    ok = ok and 0 <= world.node < world.num_nodes
    local.Free()
    good, why = all_agree(world, ok, repr(world))
    assert good, why
