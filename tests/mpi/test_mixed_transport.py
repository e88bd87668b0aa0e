"""Two transports in one communicator, chosen per pair (comm/transport/mixed.py).

On any machine: the mixing itself, with host stand-ins. The near stand-in behaves as CUDA IPC
does for ordering (its sender cannot finish until the reader has pulled and answered), the far
one is the host transport, and nodes of 2 ranks are pretended: every ring step of 3 and 4 ranks
then sends one way and receives the other. Results against MPI's own collectives.
With a GPU: a pretended split under auto picks CUDA IPC for the pairs of one node and the
staged (or cuda-mpi) transport for the others, and the collectives still match the oracle.
    mpiexec -n 4 python -m pytest --with-mpi tests/mpi/test_mixed_transport.py
"""
import os

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain.comm import init
from mpitrain.comm.transport import HostTransport
from mpitrain.comm.transport.mixed import MixedTransport

from oracles import all_agree, gpu_all_reduce_failures, make_input

pytestmark = pytest.mark.mpi
NEAR_TAG, ACK_TAG = 0x7001, 0x7002


class RendezvousOnHost:
    """A host stand-in for the IPC transport's ordering: send_start offers (no wait), the
    receiver pulls and answers, send_finish waits for the answer."""
    name = "near-standin"
    peer_reason = "stand-in"

    def __init__(self, comm):
        self.comm = comm

    def send_start(self, buf, dest):
        return (self.comm.Isend([buf, MPI.BYTE], dest, NEAR_TAG),
                self.comm.Irecv([np.empty(1, np.uint8), MPI.BYTE], dest, ACK_TAG))

    def send_finish(self, offered):
        sent, ack = offered
        ack.Wait()
        sent.Wait()

    def send(self, buf, dest):
        self.send_finish(self.send_start(buf, dest))

    def recv(self, buf, source):
        self.comm.Recv([buf, MPI.BYTE], source, NEAR_TAG)
        self.comm.Send([np.ones(1, np.uint8), MPI.BYTE], source, ACK_TAG)

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        offered = self.send_start(sendbuf, dest) if sendbuf is not None else None
        if recvbuf is not None:
            self.recv(recvbuf, source)
        if offered is not None:
            self.send_finish(offered)


def mixed_host_world(ranks_per_node=2):
    w = init()
    near = [q for q in range(w.size) if q != w.rank and q // ranks_per_node == w.rank // ranks_per_node]
    w.transport = MixedTransport(RendezvousOnHost(w.comm), HostTransport(w.comm, w.watchdog), near)
    return w, near


def test_each_pair_takes_its_own_transport(world):
    w, near = mixed_host_world()
    for q in range(w.size):
        if q != w.rank:
            assert w.transport.path_to(q).startswith("near-standin" if q in near else "mpi-host")


@pytest.mark.parametrize("collective", ["all_reduce", "reduce_scatter", "all_gather", "broadcast"])
@pytest.mark.parametrize("count", [3, 300_001])      # 1.2 MB: past MPI's eager limit
def test_collectives_across_a_pretended_node_split(world, collective, count):
    w, _ = mixed_host_world()
    comm = MPI.COMM_WORLD
    mine = make_input("float32", count * w.size, seed=w.rank * 7 + count)
    if collective == "all_reduce":
        want = np.empty_like(mine)
        comm.Allreduce(mine, want)
        got = mine.copy()
        w.all_reduce(got, algorithm="ring")
    elif collective == "reduce_scatter":
        want = np.empty(count, np.float32)
        comm.Reduce_scatter_block(mine, want)
        got = np.empty(count, np.float32)
        w.reduce_scatter(mine, got, algorithm="ring")
    elif collective == "all_gather":
        part = mine[:count].copy()
        want = np.empty(count * w.size, np.float32)
        comm.Allgather(part, want)
        got = np.empty_like(want)
        w.all_gather(part, got, algorithm="ring")
    else:
        want = comm.bcast(mine, root=0)
        got = mine.copy()
        w.broadcast(got, root=0, algorithm="scatter_all_gather")
    ok, why = all_agree(w, np.allclose(got, want, rtol=1e-5, atol=1e-5), f"{collective} differs")
    assert ok, why


# ---------------------------------------------------------------------------------------- GPU
torch = pytest.importorskip("torch")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def split_gpu_world(ranks_per_node=2):
    saved = os.environ.get("MPITRAIN_RANKS_PER_NODE")
    os.environ["MPITRAIN_RANKS_PER_NODE"] = str(ranks_per_node)
    try:
        w = init()
        torch.cuda.set_device(w.local_rank % torch.cuda.device_count())
        w.all_reduce(torch.zeros(4, device="cuda"))          # builds the transport (collective)
    finally:
        if saved is None:
            os.environ.pop("MPITRAIN_RANKS_PER_NODE", None)
        else:
            os.environ["MPITRAIN_RANKS_PER_NODE"] = saved
    return w


@needs_gpu
def test_auto_takes_ipc_inside_a_node_and_another_transport_across(world):
    w = split_gpu_world()
    t = w.device_transport(torch.device("cuda", torch.cuda.current_device()))
    nodes = w.mpi_comm.allgather(w.node)
    near = [q for q in range(w.size) if q != w.rank and nodes[q] == w.node]
    if w.num_nodes == 1 or not near:
        assert t.name != "mixed"
    else:
        assert t.name == "mixed", t.name
        for q in range(w.size):
            if q != w.rank:
                assert t.path_to(q).startswith("cuda-ipc" if q in near else ("mpi-staged", "cuda-mpi")), \
                    (q, t.path_to(q))
    failures = gpu_all_reduce_failures(w, "ring", ("float32", "bfloat16"), (1, 1003, 1_000_003), seed=13)
    count = 1 << 20
    full = torch.arange(count * w.size, dtype=torch.float32, device="cuda") % 89 + w.rank
    part = torch.empty(count, device="cuda")
    w.reduce_scatter(full, part, algorithm="ring")
    gathered = torch.empty(count * w.size, device="cuda")
    w.all_gather(part, gathered, algorithm="ring")
    want = (torch.arange(count * w.size, dtype=torch.float32) % 89) * w.size + sum(range(w.size))
    if not torch.equal(gathered.cpu(), want):
        failures.append("reduce_scatter + all_gather")
    ok, why = all_agree(w, not failures, str(failures[:5]))
    assert ok, why
