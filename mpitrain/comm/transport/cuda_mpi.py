"""CUDA-aware MPI transport: GPU pointers handed straight to MPI's point-to-point calls.

Used when the MPI library says it takes CUDA memory (comm/cuda_aware.py: Open MPI built with
CUDA, MPICH with CUDA, Intel MPI with I_MPI_OFFLOAD=1). The library then moves the bytes itself:
CUDA IPC or its shared-memory copies between ranks of one node, GPUDirect RDMA or its own
staging between nodes. No pinned stage of ours, no copy of ours.

MPI knows nothing of CUDA streams, so the stream order is kept by the host:
  - before a send or a receive the host waits for the caller's stream (one event): the data to
    send is complete, and no kernel queued earlier still reads the buffer MPI is about to write;
  - a receive's request completes only after the library has written the bytes (its copies are
    done by then), so whatever the caller queues after the call returns sees them.
That host wait is the price against the IPC transport, which orders everything on the GPU.

Messages over MAX_MESSAGE_BYTES travel in pieces, as on the host transport. Every message
carries the data tag on the communicator's private duplicate.
"""
from mpi4py import MPI

from .host import DATA_TAG, MAX_MESSAGE_BYTES
from .one_call import OneCall

BYTE = MPI.BYTE


class DeviceBytes:
    """`nbytes` bytes of GPU memory at `address`, shown to mpi4py through the CUDA array
    interface alone (a torch tensor also offers DLPack, whose stream handshake MPI has no use
    for: the transport has already waited for the stream)."""

    def __init__(self, address, nbytes):
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "strides": None,
                                         "data": (address, False), "version": 3, "stream": None}


def byte_pieces(tensor, limit=None):
    """A contiguous GPU tensor's bytes as DeviceBytes of at most `limit` (MAX_MESSAGE_BYTES)."""
    limit = limit or MAX_MESSAGE_BYTES
    start, nbytes = tensor.data_ptr(), tensor.numel() * tensor.element_size()
    return [DeviceBytes(start + i, min(limit, nbytes - i)) for i in range(0, nbytes, limit)] or \
        [DeviceBytes(start, 0)]


class CudaMpiTransport(OneCall):
    name = "cuda-mpi"

    def __init__(self, comm, watchdog):
        import torch
        self.torch = torch
        self.comm = comm
        self.watchdog = watchdog
        self._queued = torch.cuda.Event()

    def path_to(self, peer):
        return "device pointers to MPI (the library moves them)"

    def _after_caller(self):
        """Wait on the host for everything queued on the caller's stream so far."""
        self._queued.record(self.torch.cuda.current_stream())
        self._queued.synchronize()

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        wd = self.watchdog
        wd.peers = tuple(p for p in (source, dest) if p is not None)
        wd.progress += 1
        self._after_caller()
        comm = self.comm
        requests = []
        if recvbuf is not None:
            requests += [comm.Irecv([p, BYTE], source, DATA_TAG) for p in byte_pieces(recvbuf)]
        if sendbuf is not None:
            requests += [comm.Isend([p, BYTE], dest, DATA_TAG) for p in byte_pieces(sendbuf)]
        MPI.Request.Waitall(requests)
        wd.progress += 1
