"""CUDA IPC transport: GPU memory straight from one process's GPU to another's, same node.

The receiver pulls. For one message from rank S to rank R:
  S: records its "ready" event on its stream (everything queued so far, the data included), and
     sends R a 144-byte note over MPI: the IPC handle of the allocation holding the data, the
     offset inside it, the byte count, and the handle of the ready event;
  R: opens the allocation and the event (once each, then cached), makes its stream wait for S's
     ready event (a GPU-side wait), copies the bytes GPU to GPU on its stream (NVLink or PCIe
     peer-to-peer), records its own "done" event and sends S that event's handle;
  S: makes its stream wait for R's done event before anything queued later can touch the data,
     before returning: the algorithms may overwrite what they just sent (recursive doubling
     reduces into it; deferring this wait to the next move broke them, bench/RESULTS.md).
No host ever waits for the GPU and no byte passes through host memory; MPI carries the notes
only. cuda_ipc.cu holds the CUDA calls. An allocation is named by its base (torch's caching
allocator hands out pieces of larger cudaMalloc blocks, and a handle names a whole block).

Used for every pair when all ranks share a node and a real test copy between every pair
succeeded at start-up (IpcTransport.probe); when ranks span nodes, for the pairs that share one
(transport/mixed.py), the others going over cuda-mpi or host-staged MPI.
"""
import ctypes

import numpy as np
from mpi4py import MPI

from ...kernels.compiled import check, cuda_lib
from .one_call import OneCall

READY_TAG, DONE_TAG = 0x6D71, 0x6D72
HANDLE = 64
NOTE = HANDLE + 8 + 8 + HANDLE          # mem handle, offset, nbytes, ready-event handle


class IpcUnavailable(RuntimeError):
    """This job cannot use CUDA IPC (the reason is in the message)."""


class IpcTransport(OneCall):
    name = "cuda-ipc"

    def __init__(self, comm, watchdog, device):
        import torch
        self.torch = torch
        self.lib = cuda_lib()
        if self.lib is None:
            raise IpcUnavailable("the CUDA kernels library is not built")
        self.comm = comm
        self.watchdog = watchdog
        self.device = device
        self._stream = torch._C._cuda_getCurrentRawStream
        self._opened = {}            # (peer, handle bytes) -> base address mapped here
        self._peer_events = {}       # (peer, event handle bytes) -> event opened here
        self._ready = {}             # peer -> (event, handle bytes): "my data for you is ready"
        self._done = {}              # peer -> (event, handle bytes): "I finished reading yours"
        self._note_out = {}          # peer -> reusable 144-byte buffer
        self._note_in = {}
        self._done_in = {}
        self.peer_reason = "not probed"   # why the peer kernels cannot run here, or None
        self._workspace = None

    def peer_workspace(self, options=None):
        """The peer kernels' workspace (comm/peer_workspace.py), made once, by the communicator's
        first GPU collective, run as its `options` (a PeerOptions) say; the peer-kernel
        algorithms then ask for it with no options."""
        if self._workspace is None:
            if options is None:
                raise RuntimeError(f"rank {self.comm.Get_rank()}: the peer workspace is made by "
                                   f"the communicator (Communicator.device_transport) first")
            from ..peer_workspace import PeerWorkspace
            self._workspace = PeerWorkspace(self, self.watchdog.timeout_s, options)
        return self._workspace

    # ------------------------------------------------------------------------------ plumbing
    def _call(self, rc):
        if rc:
            check(self.lib, rc)

    def _export(self, ptr):
        handle = ctypes.create_string_buffer(HANDLE)
        offset = ctypes.c_int64()
        self._call(self.lib.mt_ipc_export(ptr, self.device, handle, ctypes.byref(offset)))
        return handle.raw, offset.value

    def _opened_here(self, table, opener, peer, handle):
        """A peer's allocation (opener mt_ipc_open) or event (mt_ipc_event_open), mapped into
        this process once and cached by (peer, handle)."""
        found = table.get((peer, handle))
        if found is None:
            out = ctypes.c_void_p()
            self._call(opener(handle, self.device, ctypes.byref(out)))
            found = table[(peer, handle)] = out.value
        return found

    def _open(self, peer, handle):
        return self._opened_here(self._opened, self.lib.mt_ipc_open, peer, handle)

    def _peer_event(self, peer, handle):
        return self._opened_here(self._peer_events, self.lib.mt_ipc_event_open, peer, handle)

    def _own_event(self, table, peer):
        entry = table.get(peer)
        if entry is None:
            event, handle = ctypes.c_void_p(), ctypes.create_string_buffer(HANDLE)
            self._call(self.lib.mt_ipc_event_create(self.device, ctypes.byref(event), handle))
            entry = table[peer] = (event.value, handle.raw)
        return entry

    @staticmethod
    def _buffer(table, peer, size):
        buf = table.get(peer)
        if buf is None:
            buf = table[peer] = np.zeros(size, np.uint8)
        return buf

    # --------------------------------------------------------------------------- the moves
    def sendrecv(self, sendbuf, dest, recvbuf, source):
        wd = self.watchdog
        wd.peers = tuple(p for p in (source, dest) if p is not None)
        wd.progress += 1
        sending = self.send_start(sendbuf, dest) if sendbuf is not None else None
        replied = self._pull(recvbuf, source) if recvbuf is not None else None
        if sending is not None:
            self.send_finish(sending)
        if replied is not None:
            replied.Wait()

    def send_start(self, sendbuf, dest):
        """Offer sendbuf to dest (a note over MPI; no wait): what send_finish needs. Split from
        the move so that a transport mixing this one with another (transport/mixed.py) can
        offer its IPC data before it blocks on the other."""
        lib, device = self.lib, self.device
        stream = self._stream(device)
        nbytes = sendbuf.numel() * sendbuf.element_size()
        event, event_handle = self._own_event(self._ready, dest)
        self._call(lib.mt_event_record(event, device, stream))
        handle, offset = self._export(sendbuf.data_ptr()) if nbytes else (bytes(HANDLE), 0)
        note = self._buffer(self._note_out, dest, NOTE)
        note[:HANDLE] = np.frombuffer(handle, np.uint8)
        note[HANDLE:HANDLE + 16] = np.array([offset, nbytes], np.int64).view(np.uint8)
        note[HANDLE + 16:] = np.frombuffer(event_handle, np.uint8)
        sent = self.comm.Isend([note, MPI.BYTE], dest, READY_TAG)
        done_in = self._buffer(self._done_in, dest, HANDLE)
        return dest, sent, done_in, self.comm.Irecv([done_in, MPI.BYTE], dest, DONE_TAG)

    def send_finish(self, sending):
        """Wait until dest has read the data, and order this stream after its read: later work
        may overwrite what was sent."""
        dest, sent, done_in, done_req = sending
        self.watchdog.progress += 1
        done_req.Wait()
        self._call(self.lib.mt_stream_wait_event(self._stream(self.device), self.device,
                                                 self._peer_event(dest, done_in.tobytes())))
        sent.Wait()

    def _pull(self, recvbuf, source):
        """Copy source's offered data into recvbuf on this stream; returns the request of the
        "done" note sent back."""
        lib, device = self.lib, self.device
        stream = self._stream(device)
        note = self._buffer(self._note_in, source, NOTE)
        self.comm.Recv([note, MPI.BYTE], source, READY_TAG)
        offset, nbytes = note[HANDLE:HANDLE + 16].view(np.int64).tolist()
        want = recvbuf.numel() * recvbuf.element_size()
        if nbytes != want:
            raise RuntimeError(f"cuda-ipc: rank {source} sent {nbytes} bytes, this rank "
                               f"expected {want}")
        self._call(lib.mt_stream_wait_event(stream, device,
                                            self._peer_event(source, note[HANDLE + 16:].tobytes())))
        if nbytes:
            base = self._open(source, note[:HANDLE].tobytes())
            self._call(lib.mt_memcpy_async(recvbuf.data_ptr(), base + offset, nbytes,
                                           device, stream))
        event, event_handle = self._own_event(self._done, source)
        self._call(lib.mt_event_record(event, device, stream))
        reply = self._buffer(self._note_out, ("done", source), HANDLE)
        reply[:] = np.frombuffer(event_handle, np.uint8)
        return self.comm.Isend([reply, MPI.BYTE], source, DONE_TAG)

    # ---------------------------------------------------------------------------- start-up
    @classmethod
    def probe(cls, comm, watchdog, device, node, across_nodes=False, peer_kernels="1"):
        """Build the transport if every pair of ranks that should use it can: all ranks on one
        node (or, across_nodes=True, the pairs of ranks that share a node: transport.near_peers
        lists this rank's), and a real copy from each such peer's GPU memory arrives intact.
        Collective over `comm`; every rank gets the same answer (a transport, or IpcUnavailable
        with the reason). peer_kernels: the setting of that name (1, 0 or shared)."""
        import torch
        rank = comm.Get_rank()
        reason = None
        nodes = comm.allgather(node)
        if len(set(nodes)) > 1 and not across_nodes:
            reason = f"ranks span {len(set(nodes))} nodes"
        near = [q for q in range(len(nodes)) if q != rank and nodes[q] == node]
        transport = probe_buf = None
        if reason is None:
            try:
                transport = cls(comm, watchdog, device)
                with torch.cuda.device(device):
                    probe_buf = torch.full((1024,), rank + 1, dtype=torch.int32, device="cuda")
                    torch.cuda.synchronize()
                handle, offset = transport._export(probe_buf.data_ptr())
            except Exception as exc:                   # reported to every rank below
                reason, handle, offset = f"rank {rank}: {exc}", None, 0
        shared = comm.allgather(reason or (handle, offset))
        reason = next((r for r in shared if isinstance(r, str)), None)
        if reason is None:
            try:
                with torch.cuda.device(device):
                    got = torch.zeros(1024, dtype=torch.int32, device="cuda")
                    for peer in near:
                        h, off = shared[peer]
                        base = transport._open(peer, h)
                        transport._call(transport.lib.mt_memcpy_async(
                            got.data_ptr(), base + off, got.numel() * 4, device,
                            torch._C._cuda_getCurrentRawStream(device)))
                        torch.cuda.synchronize()
                        if not bool((got == peer + 1).all()):
                            raise IpcUnavailable(f"a test copy from rank {peer} arrived corrupted")
            except Exception as exc:
                reason = f"rank {rank}: {exc}"
        verdicts = comm.allgather(reason)
        del probe_buf
        reason = next((r for r in verdicts if r), None)
        if reason is not None:
            raise IpcUnavailable(reason)
        transport.near_peers = near
        transport.peer_reason = (cls._peer_kernels_reason(comm, device, peer_kernels)
                                 if len(set(nodes)) == 1
                                 else f"ranks span {len(set(nodes))} nodes: the peer kernels "
                                      f"need every rank on one node")
        return transport

    @staticmethod
    def _peer_kernels_reason(comm, device, peer_kernels):
        """None when the peer kernels can run (one GPU per rank unless MPITRAIN_PEER_KERNELS=
        shared, at most 8 ranks, not turned off), else why not; the same answer on every rank.
        peer_kernels=shared also runs them for ranks that share a GPU (their processes take
        turns on it, so every barrier waits a time slice: slow, for testing on one GPU)."""
        import torch
        from ..peer_workspace import MAX_RANKS
        gpus = comm.allgather(str(torch.cuda.get_device_properties(device).uuid))
        if peer_kernels == "0":
            return "MPITRAIN_PEER_KERNELS=0"
        if len(gpus) > MAX_RANKS:
            return f"{len(gpus)} ranks; the peer kernels take at most {MAX_RANKS}"
        if len(set(gpus)) < len(gpus) and peer_kernels != "shared":
            return (f"{len(gpus)} ranks share {len(set(gpus))} GPU(s); the peer kernels need one "
                    f"GPU per rank")
        return None
