"""Host-staged transport: GPU memory over any MPI, through pinned host buffers, chunked.

    GPU --D2H--> pinned send stage --MPI--> pinned recv stage --H2D--> GPU

A message is cut into chunks (MPITRAIN_STAGE_CHUNK_MB, default 4 MB) and each side keeps two
stages of each direction, so the copy of chunk k+1 to the host overlaps the MPI transfer of
chunk k, and the copy of received chunk k to the GPU overlaps the transfer of chunk k+1. Every
copy is queued on the caller's current CUDA stream: a send first waits (on an event) for
everything the caller queued before it; received data lands in stream order, so the reduce
kernels queued after it see it, with no device-wide synchronize. MPI needs no CUDA support:
this is the transport that works everywhere, across nodes included.

Every message of the collectives carries one tag on the communicator's private duplicate, as in
host.py: per pair, chunks arrive in the order they were sent.
"""
import os

from mpi4py import MPI

from .host import DATA_TAG

BYTE = MPI.BYTE
DEFAULT_CHUNK_MB = 4


class _Stages:
    """Two pinned send stages and two pinned receive stages of one chunk each, with the events
    that say when the GPU has finished with them."""

    def __init__(self, torch, chunk):
        pinned = torch.empty(4 * chunk, dtype=torch.uint8, pin_memory=True)
        self.pinned = pinned                                   # keeps the memory alive
        self.send = [pinned[i * chunk:(i + 1) * chunk] for i in (0, 1)]
        self.recv = [pinned[(2 + i) * chunk:(3 + i) * chunk] for i in (0, 1)]
        self.send_np = [s.numpy() for s in self.send]
        self.recv_np = [r.numpy() for r in self.recv]
        self.copied_out = [torch.cuda.Event(), torch.cuda.Event()]   # D2H into send[i] done
        self.copied_in = [torch.cuda.Event(), torch.cuda.Event()]    # H2D out of recv[i] done
        self.reading = [False, False]        # an H2D out of recv[i] may still be running


def _bytes(torch, buf):
    """The tensor's memory as uint8 (a 0/1-element slice may carry any stride)."""
    if buf is None:
        return None
    if buf.numel() <= 1 and buf.stride(0) != 1:
        buf = buf.as_strided((buf.numel(),), (1,))
    return buf.view(torch.uint8)


class StagedTransport:
    name = "mpi-staged"

    def __init__(self, comm, watchdog, chunk_bytes=None):
        import torch
        self.torch = torch
        self.comm = comm
        self.watchdog = watchdog
        mb = float(os.environ.get("MPITRAIN_STAGE_CHUNK_MB", DEFAULT_CHUNK_MB))
        self.chunk = int(chunk_bytes or mb * 2**20)
        self._stages = None

    def _get_stages(self):
        if self._stages is None:
            self._stages = _Stages(self.torch, self.chunk)
        return self._stages

    def send(self, buf, dest):
        self._exchange(buf, dest, None, None)

    def recv(self, buf, source):
        self._exchange(None, None, buf, source)

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        self._exchange(sendbuf, dest, recvbuf, source)

    def _exchange(self, sendbuf, dest, recvbuf, source):
        """Send `sendbuf` to dest while receiving `recvbuf` from source, chunk by chunk."""
        st, chunk, comm, wd = self._get_stages(), self.chunk, self.comm, self.watchdog
        out = _bytes(self.torch, sendbuf)
        into = _bytes(self.torch, recvbuf)
        n_out = -(-out.numel() // chunk) if out is not None else 0
        n_in = -(-into.numel() // chunk) if into is not None else 0
        if out is not None and out.numel() == 0:
            n_out = 1                                    # an empty message still pairs up
        if into is not None and into.numel() == 0:
            n_in = 1
        wd.peers = tuple(p for p in (source, dest) if p is not None)
        wd.progress += 1

        def post_recv(k):
            i = k % 2
            if st.reading[i]:                            # the GPU may still read this stage
                st.copied_in[i].synchronize()
                st.reading[i] = False
            size = min(chunk, into.numel() - k * chunk)
            return comm.Irecv([st.recv_np[i][:size], BYTE], source, DATA_TAG)

        recv_reqs = [post_recv(k) if k < n_in else None for k in (0, 1)]
        send_reqs = [None, None]
        for k in range(max(n_out, n_in)):
            if k < n_out:
                i = k % 2
                if send_reqs[i] is not None:
                    wd.progress += 1
                    send_reqs[i].Wait()
                start = k * chunk
                part = out[start:start + chunk]
                stage = st.send[i][:part.numel()]
                stage.copy_(part, non_blocking=True)     # D2H on the caller's stream
                st.copied_out[i].record()
                st.copied_out[i].synchronize()           # this chunk only: not the device
                send_reqs[i] = comm.Isend([st.send_np[i][:part.numel()], BYTE], dest, DATA_TAG)
            if k < n_in:
                i = k % 2
                wd.progress += 1
                recv_reqs[i].Wait()
                start = k * chunk
                part = into[start:start + chunk]
                if part.numel():
                    part.copy_(st.recv[i][:part.numel()], non_blocking=True)   # H2D, in order
                    st.copied_in[i].record()
                    st.reading[i] = True
                recv_reqs[i] = post_recv(k + 2) if k + 2 < n_in else None
        for req in send_reqs:
            if req is not None:
                wd.progress += 1
                req.Wait()
