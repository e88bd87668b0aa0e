"""The host-staged GPU transport (comm/transport/staged.py), forced with gpu_transport="staged":
each pair of ranks takes the shared-memory window when they share a node and MPI messages when
they do not (a pretended node split, MPITRAIN_RANKS_PER_NODE, makes both happen on one machine),
and both give the oracle's result: MPI's allgather + numpy. Messages of many chunks (small
chunks here, so that stages are reused many times over), uneven sizes, every ring step.

Skips without a GPU.
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_staged_transport.py
"""
import os

import pytest

from mpitrain.comm import init

from oracles import all_agree, gpu_all_reduce_failures

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def staged_world(ranks_per_node=None, shared=True, chunk_mb="0.25"):
    """A world whose GPU buffers go host-staged, in chunks of 256 KB."""
    env = {"MPITRAIN_STAGE_CHUNK_MB": chunk_mb, "MPITRAIN_STAGED_SHARED": "1" if shared else "0"}
    if ranks_per_node:
        env["MPITRAIN_RANKS_PER_NODE"] = str(ranks_per_node)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        w = init(gpu_transport="staged")
        torch.cuda.set_device(w.local_rank % torch.cuda.device_count())
        w.all_reduce(torch.zeros(4, device="cuda"))        # builds the transport (collective)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return w


def transport(w):
    return w.device_transport(torch.device("cuda", torch.cuda.current_device()))


def check_all_reduce(w, algorithm):
    failures = gpu_all_reduce_failures(w, algorithm, ("float32", "bfloat16"),
                                       (0, 1, 65_537, 1_000_003))   # up to 16 chunks of 256 KB
    ok, why = all_agree(w, not failures, f"{algorithm}: {failures[:5]}")
    assert ok, why

@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling"])
def test_ranks_of_one_node_share_a_window(world, algorithm):
    w = staged_world()
    t = transport(w)
    assert t.name == "mpi-staged"
    nodes = w.mpi_comm.allgather(w.node)
    on_node = [q for q in range(w.size) if q != w.rank and nodes[q] == w.node]
    assert all(t.path_to(q) == "shared-memory" for q in on_node), (t.shared_reason, on_node)
    check_all_reduce(w, algorithm)


def test_messages_everywhere_when_the_window_is_turned_off(world):
    w = staged_world(shared=False)
    t = transport(w)
    assert t.shared is None and t.shared_reason == "MPITRAIN_STAGED_SHARED=0"
    assert all(t.path_to(q) == "messages" for q in range(w.size) if q != w.rank)
    check_all_reduce(w, "ring")


def test_each_pair_takes_its_own_path_across_a_pretended_node_split(world):
    """Nodes of 2 ranks: a ring step sends over the window to one neighbour and receives as
    messages from the other (3 and 4 ranks), both at once."""
    w = staged_world(ranks_per_node=2)
    t = transport(w)
    nodes = w.mpi_comm.allgather(w.node)
    for q in range(w.size):
        if q != w.rank:
            assert t.path_to(q) == ("shared-memory" if nodes[q] == w.node else "messages")
    check_all_reduce(w, "ring")


def test_a_long_message_reuses_every_stage_many_times(world):
    """64 MB in 256 KB chunks: each stage reused dozens of times, with the ranks arriving at
    different moments."""
    w = staged_world()
    count = 16 << 20
    x = torch.arange(count, dtype=torch.float32, device="cuda") % 97 + w.rank
    if w.rank % 2:
        torch.cuda._sleep(5_000_000)
    w.all_reduce(x, algorithm="ring")
    expected = (torch.arange(count, dtype=torch.float32) % 97) * w.size + sum(range(w.size))
    ok, why = all_agree(w, torch.equal(x.cpu(), expected), "wrong sum")
    assert ok, why
