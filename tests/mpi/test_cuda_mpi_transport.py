"""The CUDA-aware MPI transport (comm/transport/cuda_mpi.py): GPU pointers straight to MPI.

On any machine: the byte pieces a message is cut into cover it exactly (sent through real MPI
on host memory, which the pointers may name as well), and forcing the transport on an MPI that
says it is not CUDA-aware fails on every rank with the rank and the library's answer.
With a GPU and a CUDA-aware MPI (the GPU round runs these under Intel MPI with I_MPI_OFFLOAD=1,
bench/gpu_suite.sh cuda-mpi-tests): results against MPI's allgather + numpy, messages in pieces,
and the stream order on both sides.
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_cuda_mpi_transport.py
"""
import pytest
from mpi4py import MPI

from mpitrain.comm import CollectiveError, cuda_aware, init
from mpitrain.comm.transport import cuda_mpi

from oracles import all_agree, gpu_all_reduce_failures

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.mpi

AWARE, HOW = cuda_aware.query()
needs_aware_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or AWARE is not True,
    reason=f"needs a CUDA GPU and a CUDA-aware MPI (this one: {AWARE}, {HOW})")


def test_pieces_cover_the_message_in_order(world):
    """A 1001-float message cut into 24-byte pieces and sent as such: the receiver's bytes equal
    the sender's. Host tensors here: a pointer is a pointer to MPI."""
    sent = torch.arange(1001, dtype=torch.float32) + 1000 * world.rank
    got = torch.zeros_like(sent)
    right, left = (world.rank + 1) % world.size, (world.rank - 1) % world.size
    outgoing, incoming = cuda_mpi.byte_pieces(sent, limit=24), cuda_mpi.byte_pieces(got, limit=24)
    assert [p.__cuda_array_interface__["shape"][0] for p in outgoing] == [24] * 166 + [20]
    requests = [world.mpi_comm.Irecv([p, MPI.BYTE], left, 7) for p in incoming]
    requests += [world.mpi_comm.Isend([p, MPI.BYTE], right, 7) for p in outgoing]
    MPI.Request.Waitall(requests)
    want = torch.arange(1001, dtype=torch.float32) + 1000 * left
    ok, why = all_agree(world, torch.equal(got, want), "pieces reassembled wrongly")
    assert ok, why
    assert len(cuda_mpi.byte_pieces(torch.empty(0), limit=24)) == 1


@pytest.mark.skipif(AWARE is not False, reason=f"this MPI does not say no ({AWARE}, {HOW})")
def test_forcing_it_on_an_mpi_that_is_not_cuda_aware_fails_on_every_rank():
    w = init(gpu_transport="cuda-mpi", abort_on_error=False)
    with pytest.raises(CollectiveError, match=r"cuda-mpi was asked for, but the MPI library of "
                                              r"rank 0 is not CUDA-aware \(MPIX_"):
        w.device_transport(None)


@pytest.fixture(scope="module")
def cuda_mpi_world():
    w = init(gpu_transport="cuda-mpi")
    torch.cuda.set_device(w.local_rank % torch.cuda.device_count())
    w.all_reduce(torch.zeros(4, device="cuda"))              # builds the transport (collective)
    return w


def check_all_reduce(w, algorithm, counts=(0, 1, 1003, 300_001)):
    failures = gpu_all_reduce_failures(w, algorithm, ("float32", "bfloat16", "int64"), counts, seed=31)
    ok, why = all_agree(w, not failures, f"{algorithm}: {failures[:5]}")
    assert ok, why

@needs_aware_gpu
@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling", "rabenseifner"])
def test_all_reduce_through_device_pointers(cuda_mpi_world, algorithm):
    w = cuda_mpi_world
    t = w.device_transport(torch.device("cuda", torch.cuda.current_device()))
    assert t.name == "cuda-mpi"
    check_all_reduce(w, algorithm)


@needs_aware_gpu
def test_messages_in_pieces(cuda_mpi_world, monkeypatch):
    monkeypatch.setattr(cuda_mpi, "MAX_MESSAGE_BYTES", 4096 + 4)
    check_all_reduce(cuda_mpi_world, "ring", counts=(5, 300_001))


@needs_aware_gpu
def test_the_callers_stream_order_is_kept(cuda_mpi_world):
    """The sender's data is written by a kernel queued behind a 50 ms sleep on its stream, and
    the receiver's buffer is still being read by a kernel queued before the call: MPI must
    neither send early nor write early."""
    w = cuda_mpi_world
    count = 1 << 22
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.zeros(count, device="cuda")
        torch.cuda._sleep(50_000_000)
        x.fill_(w.rank + 1.0)
        w.all_reduce(x, algorithm="ring")
        total = x.sum()
    stream.synchronize()
    want = float(count) * sum(r + 1 for r in range(w.size))
    ok, why = all_agree(w, float(total) == want, f"sum {float(total)} != {want}")
    assert ok, why
