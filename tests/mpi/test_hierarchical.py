"""The hierarchical all-reduce (comm/hierarchical.py) on a pretended node split
(MPITRAIN_RANKS_PER_NODE), against MPI's allgather + numpy: every op, several dtypes and counts,
in place; auto picks it when ranks span nodes evenly and the message is large; an uneven split
is refused by name. GPU buffers too where a GPU is present (IPC inside a node, staged between).
    mpiexec -n 4 python -m pytest --with-mpi tests/mpi/test_hierarchical.py
"""
import os

import pytest

from mpitrain.comm import CollectiveError, init
from mpitrain.comm import auto

from oracles import all_agree, make_input, matches, reduce_reference, user_buffer

pytestmark = pytest.mark.mpi


def split_world(ranks_per_node):
    os.environ["MPITRAIN_RANKS_PER_NODE"] = str(ranks_per_node)
    try:
        return init()
    finally:
        del os.environ["MPITRAIN_RANKS_PER_NODE"]


@pytest.fixture(scope="module")
def split(world):
    """Nodes of 2 ranks (4 ranks: 2 nodes of 2; 3 ranks: 2 + 1, uneven; 2: one node)."""
    return split_world(2)


@pytest.fixture(scope="module")
def singles(world):
    """Every rank its own node: even for any world size."""
    return split_world(1)


def evenly(w):
    return w.num_nodes > 1 and w.mpi_comm.allgather(w.local_size).count(w.local_size) == w.size


@pytest.mark.parametrize("which", ["split", "singles"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
def test_hierarchical_all_reduce_equals_the_oracle(request, which, dtype):
    w = request.getfixturevalue(which)
    if not evenly(w):
        pytest.skip(f"{w.size} ranks in nodes of {w.local_size}: not an even multi-node split")
    failures = []
    ops = ["sum", "max", "min", "prod"] + (["avg"] if dtype != "int64" else [])
    for op in ops:
        for count in (0, 1, 3, 1001, 100_003):
            x = make_input(dtype, count, seed=w.rank * 13 + count, op=op)
            expected = reduce_reference(w.mpi_comm.allgather(x), op, dtype, w.size)
            got = x.copy()
            w.all_reduce(user_buffer(got, dtype), op=op, algorithm="hierarchical")
            if not matches(got, expected, dtype, op):
                failures.append((op, count))
    ok, why = all_agree(w, not failures, str(failures[:5]))
    assert ok, why


def test_auto_goes_hierarchical_when_ranks_span_nodes_evenly(split, singles):
    big = auto.HIERARCHICAL_MIN_BYTES
    if evenly(split):                                  # 4 ranks: 2 nodes of 2
        assert split._algorithm("all_reduce", "auto", big) == "hierarchical"
        assert split._algorithm("all_reduce", "auto", big // 2) != "hierarchical"
        x = make_input("float32", big // 4 + 7, seed=split.rank)
        expected = reduce_reference(split.mpi_comm.allgather(x), "sum", "float32", split.size)
        split.all_reduce(x)                            # auto, through both levels
        ok, why = all_agree(split, matches(x, expected, "float32", "sum"), "auto hierarchical")
        assert ok, why
    # one rank per node: nothing to reduce inside a node, so the flat algorithms run
    assert singles._algorithm("all_reduce", "auto", big) != "hierarchical"


def test_an_uneven_split_is_refused_by_name(split):
    w = split
    if w.num_nodes < 2 or evenly(w):
        pytest.skip("needs nodes of different sizes (3 ranks in nodes of 2)")
    import numpy as np
    with pytest.raises(CollectiveError, match=f"rank {w.rank}: algorithm 'hierarchical' cannot "
                                              f"run: nodes hold different numbers of ranks"):
        w.all_reduce(np.ones(8, np.float32), algorithm="hierarchical")
    assert w._algorithm("all_reduce", "auto", auto.HIERARCHICAL_MIN_BYTES) != "hierarchical"


def test_hierarchical_on_gpu_buffers(singles):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if os.environ.get("MPITRAIN_GPU_TRANSPORT") == "ipc" and singles.size > 1:
        pytest.skip("every rank its own (pretended) node, where a forced ipc is refused by design")
    w = singles
    torch.cuda.set_device(w.mpi_comm.Get_rank() % torch.cuda.device_count())
    failures = []
    for count in (1, 100_003, 1 << 20):          # 4 MB: the levels' own auto runs flat
        x = make_input("float32", count, seed=w.rank + count)
        expected = reduce_reference(w.mpi_comm.allgather(x), "sum", "float32", w.size)
        g = torch.from_numpy(x.copy()).cuda()
        w.all_reduce(g, algorithm="hierarchical")
        if not matches(g.cpu().numpy(), expected, "float32", "sum"):
            failures.append(count)
    ok, why = all_agree(w, not failures, str(failures))
    assert ok, why


def test_the_levels_carry_the_settings_of_their_communicator(world):
    """The node and cross-node communicators of the hierarchical all-reduce are splits of the
    world, and a split hands on its settings: a GPU transport or timeout given to init() holds
    on every level, and ranks_per_node given in code splits the nodes as its variable does."""
    w = init(settings=world.settings.replace(ranks_per_node=1, gpu_transport="staged",
                                             timeout=77))
    assert (w.num_nodes, w.local_size) == (w.size, 1)
    levels = w.levels()
    for level in (levels.node, levels.cross):
        assert level.settings is w.settings
        assert (level.settings.gpu_transport, level.timeout, level.watchdog.timeout_s) == \
            ("staged", 77.0, 77.0)
