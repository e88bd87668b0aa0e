"""Host-staged transport: GPU memory over any MPI, through pinned host buffers, chunked.

A message is cut into chunks (MPITRAIN_STAGE_CHUNK_MB, default 4 MB) that travel one of two
ways, chosen per pair of ranks:

  across nodes (MPI messages):
    GPU --D2H--> pinned send stage --MPI--> pinned recv stage --H2D--> GPU
  on one node (an MPI-3 shared-memory window, MPI_Win_allocate_shared, pinned with
  cudaHostRegister in every process):
    GPU --D2H--> the sender's stage in the window --H2D by the receiver--> GPU
    and MPI carries only two 8-byte notes per chunk: "chunk k is in stage s", "stage s is free".

Each side keeps several stages per direction, so copying chunk k+1 to the host overlaps moving
chunk k, and copying chunk k to the GPU overlaps moving chunk k+1. The copies to the host run
on a stream of their own (after an event on the caller's stream: everything the caller queued
first), so they overlap the copies to the GPU, which run on the caller's stream; received data
lands in stream order and the reduce kernels queued after it see it, with no device-wide
synchronize. Before returning, a send waits until every chunk has left its GPU buffer (the
algorithms may overwrite it) and, on one node, until the receiver has copied every stage out.
MPI needs no CUDA support: this is the transport that works everywhere.

MPITRAIN_STAGED_SHARED=0 sends every chunk as MPI messages, on one node too (to measure, or
where shared windows misbehave). Every message carries its own tag on the communicator's
private duplicate: per pair, chunks and notes arrive in the order they were sent.
"""

from mpi4py import MPI

from .one_call import OneCall
from .staged_chunks import (STAGES, MessageReceiver, MessageSender, WindowReceiver,
                            WindowSender)


def _bytes(torch, buf):
    """The tensor's memory as uint8 (a 0/1-element slice may carry any stride)."""
    if buf is None:
        return None
    if buf.numel() <= 1 and buf.stride(0) != 1:
        buf = buf.as_strided((buf.numel(),), (1,))
    return buf.view(torch.uint8)


def _chunks(buf, chunk):
    """How many chunks a message is cut into (an empty message is still one)."""
    if buf is None:
        return 0
    return max(1, -(-buf.numel() // chunk))


class _MessageStages:
    """Pinned send and receive stages for the MPI-message path, with their events."""

    def __init__(self, torch, chunk):
        pinned = torch.empty(2 * STAGES * chunk, dtype=torch.uint8, pin_memory=True)
        self.pinned = pinned                                   # keeps the memory alive
        self.send = [pinned[i * chunk:(i + 1) * chunk] for i in range(STAGES)]
        self.recv = [pinned[(STAGES + i) * chunk:(STAGES + i + 1) * chunk] for i in range(STAGES)]
        self.send_np = [s.numpy() for s in self.send]
        self.recv_np = [r.numpy() for r in self.recv]
        self.copied_in = [torch.cuda.Event() for _ in range(STAGES)]   # H2D out of recv[i] done
        self.reading = [False] * STAGES      # an H2D out of recv[i] may still be running


class SharedWindow:
    """Send stages in an MPI shared-memory window over the ranks of this node: rank a's stages
    for rank b are read by b itself. Built collectively over `comm`; `peers` are the ranks of
    comm that share it (this one included)."""

    def __init__(self, torch, comm, node, chunk):
        shm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
        group = shm.Split(color=node, key=comm.Get_rank())     # honours a pretended node split
        shm.Free()
        self.group = group
        self.peers = group.allgather(comm.Get_rank())          # comm ranks, in group order
        self.index = {r: i for i, r in enumerate(self.peers)}
        n = len(self.peers)
        self.stride = STAGES * chunk                          # one destination's stages
        page = 1 << 21
        size = -(-n * self.stride // page) * page
        self.win = MPI.Win.Allocate_shared(size, 1, comm=group)
        self.segments = []
        self.registered = []
        cudart = torch.cuda.cudart()
        for i in range(n):
            mem, _ = self.win.Shared_query(i)
            seg = torch.frombuffer(mem, dtype=torch.uint8) if len(mem) else torch.empty(0, dtype=torch.uint8)
            if seg.numel():
                rc = cudart.cudaHostRegister(seg.data_ptr(), seg.numel(), 0)
                if int(rc) != 0:
                    raise RuntimeError(f"cudaHostRegister of the shared window failed ({rc})")
                self.registered.append(seg.data_ptr())
            self.segments.append(seg)
        group.Barrier()

    def stage(self, owner, reader, s, nbytes):
        """Stage s of comm rank `owner`'s stages for comm rank `reader`."""
        start = self.index[reader] * self.stride + s * (self.stride // STAGES)
        return self.segments[self.index[owner]][start:start + nbytes]


class StagedTransport(OneCall):
    name = "mpi-staged"

    def __init__(self, comm, watchdog, node=0, chunk_mb=4.0, shared=True):
        """chunk_mb and shared: the settings stage_chunk_mb and staged_shared (the
        communicator passes its own)."""
        import torch
        self.torch = torch
        self.comm = comm
        self.watchdog = watchdog
        self.chunk = int(chunk_mb * 2**20)
        self._stages = None
        self._d2h_stream = None
        self._events = None
        self.shared = None
        self.shared_reason = "MPITRAIN_STAGED_SHARED=0"
        if shared:
            reason = None
            try:
                shared = SharedWindow(torch, comm, node, self.chunk)
            except Exception as exc:                            # every rank learns, below
                shared, reason = None, f"rank {comm.Get_rank()}: {exc}"
            reasons = [r for r in comm.allgather(reason) if r]
            if reasons:
                self.shared_reason = reasons[0]
            else:
                self.shared, self.shared_reason = shared, None

    def path_to(self, peer):
        """'shared-memory' or 'messages': how chunks travel between this rank and `peer`."""
        return "shared-memory" if self._shares(peer) else "messages"

    def _shares(self, peer):
        return self.shared is not None and peer in self.shared.index

    def _setup(self, messages):
        """The copy stream and events, made once; the pinned message stages too when a pair
        without the window is in the exchange (none on a node that has it)."""
        torch = self.torch
        if self._d2h_stream is None:
            self._d2h_stream = torch.cuda.Stream()
            self._events = [torch.cuda.Event() for _ in range(STAGES)]     # D2H of chunk k % S done
            self._in_events = [torch.cuda.Event() for _ in range(STAGES)]  # H2D of chunk k % S done
            self._start = torch.cuda.Event()
        if messages and self._stages is None:
            self._stages = _MessageStages(torch, self.chunk)
        return self._stages

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        """Send `sendbuf` to dest while receiving `recvbuf` from source, chunk by chunk."""
        torch, chunk, wd = self.torch, self.chunk, self.watchdog
        out, into = _bytes(torch, sendbuf), _bytes(torch, recvbuf)
        sender, receiver = self._sender(out, dest), self._receiver(into, source)
        n_out, n_in = _chunks(out, chunk), _chunks(into, chunk)
        wd.peers = tuple(p for p in (source, dest) if p is not None)
        wd.progress += 1
        caller = torch.cuda.current_stream()
        if out is not None:                       # the D2H copies start after the caller's work
            self._start.record(caller)
            self._d2h_stream.wait_event(self._start)

        def wait(req):
            """Wait for req; a window receiver keeps freeing stages meanwhile (never block
            without that: the source may wait for a free stage to send what we wait for)."""
            wd.progress += 1
            if receiver is None or not receiver.shared:
                req.Wait()
                return
            while not req.Test():
                receiver.idle(block=False)

        posted = [receiver.post(k) if k < n_in else None for k in range(STAGES)]
        for k in range(max(n_out, n_in)):
            i = k % STAGES
            if k < n_out:
                part = out[k * chunk:(k + 1) * chunk]
                stage = sender.stage(i, part.numel(), wait)
                with torch.cuda.stream(self._d2h_stream):
                    stage.copy_(part, non_blocking=True)
                    self._events[i].record()
                self._events[i].synchronize()     # this chunk only: not the device
                sender.announce(k, i, part.numel())
            if k < n_in:
                wait(posted[i])
                receiver.take(k, i, into[k * chunk:(k + 1) * chunk], caller)
                posted[i] = receiver.post(k + STAGES) if k + STAGES < n_in else None
        if receiver is not None:
            receiver.idle(block=True)
        for req in (sender.requests if sender is not None else []):
            if req is not None:
                wait(req)

    def _sender(self, out, dest):
        if out is None:
            return None
        if self._shares(dest):
            self._setup(messages=False)
            return WindowSender(self.comm, self.shared, dest)
        return MessageSender(self.comm, self._setup(messages=True), dest)

    def _receiver(self, into, source):
        if into is None:
            return None
        if self._shares(source):
            self._setup(messages=False)
            return WindowReceiver(self.comm, self.shared, source, self._in_events)
        return MessageReceiver(self.comm, self._setup(messages=True), source, into, self.chunk)
