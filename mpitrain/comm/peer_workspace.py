"""Peer kernels: all-reduce, reduce-scatter and all-gather as one kernel that reads the other GPUs.

The point-to-point algorithms move data in steps, and every step costs notes over MPI and a few
CUDA calls (~50 us on 2x H200): fine for hundreds of MB, too much at 4 KB. Here each rank owns a
workspace, mapped once into every peer (CUDA IPC), and one kernel per call does everything on
the GPUs: copy the input into the workspace, meet the peers at a barrier of flags written in each
other's memory, then read and reduce the peers' data directly over NVLink
(csrc/cuda_peer.cu explains the kernel and why it needs no closing barrier).

  one-shot all-reduce   every rank reduces the whole buffer, reading all p copies: one barrier,
                        (p - 1) x size read over the links per rank: the small-message form;
  two-shot all-reduce   reduce-scatter then all-gather inside one kernel: each rank reduces its
                        1/p chunk, then reads the peers' reduced chunks; two barriers,
                        2 (p - 1)/p x size per rank: the large-message form;
  two-shot by pushing   the same exchange with every byte written into the peer's memory
                        instead of read from it (NVLink writes need no round trip), and no
                        copy of the input into the workspace: half a region per piece;
  reduce-scatter, all-gather: one barrier each;
  copy engine           two-shot by pushing with the bytes moved by the GPUs' DMA engines
                        (cudaMemcpyAsync into the mapped regions) and the barriers queued as
                        stream memory operations: no SM moves or waits, only a local reduce
                        kernel runs (csrc/cuda_peer_ce.cu). For collectives beside compute.

A workspace's regions start at 1 MB and double as calls need, up to MPITRAIN_PEER_REGION_MB
(256 MB: on 2x H200 1 GB all-reduced at 303 GB/s in 32 MB pieces, 329 in 128 MB pieces). A call
larger than that is all-reduced in pieces; reduce-scatter and all-gather beyond it use the ring.

Used when the CUDA IPC transport is up and every rank has its own GPU (ranks sharing a GPU
would spin against each other's kernels), for up to 8 ranks. MPITRAIN_PEER_KERNELS=0 turns it
off; MPITRAIN_PEER_BLOCKS sets the most thread blocks a kernel uses (default 128: on 2x H200
128 blocks moved 1 GB at 277 GB/s one-shot against 268 with 64, bench/RESULTS.md).
The copy-engine path waits for its peers with stream memory operations (the host watchdog
times them); MPITRAIN_PEER_CE_WAIT=kernel waits in a one-block kernel instead (with the
kernels' timeout trap), for drivers without cuStreamWaitValue32. The copy-engine path's reduce kernel takes one thread per 16 bytes, up to 8192
blocks (a cap on its grid ran the trainer no faster on 2x H200; the tests still cap it, to run
the kernel's stride loop).

Registered outputs (PeerWorkspace.register, data parallel's buckets): a buffer that is
all-reduced in place again and again is mapped into every peer once, and the copy-engine path
then writes each reduced chunk straight into the peers' buffers (no local copy out of the
workspace; csrc/cuda_peer_ce.cu). MPITRAIN_PEER_REGISTER=0 turns it off.
"""
import ctypes
import time
import weakref
from dataclasses import dataclass

from ..kernels.compiled import DTYPE_CODES, OP_CODES, check

ONE_SHOT, TWO_SHOT, REDUCE_SCATTER, ALL_GATHER, TWO_SHOT_PUSH, COPY_ENGINE = range(6)
CE_WAITS = {"memop": 0, "kernel": 1}       # csrc/cuda_peer_ce.cu: MT_CE_WAIT_*
MAX_RANKS = 8
THREADS = 512                       # per block (MT_PEER_THREADS)
MAX_BLOCKS = 128                    # MT_PEER_MAX_BLOCKS
LINE = 128                          # two-shot chunks start on cache-line boundaries
MIN_REGION = 1 << 20


@dataclass
class PeerOptions:
    """How one communicator's peer kernels run; read when its workspace is made (its first GPU
    collective). Made from the communicator's settings: plain() for the collectives a user
    calls, beside_compute() for the communicators of data parallel and ZeRO (parallel/streams.py).
    A test may change a field before the communicator's first GPU collective."""
    blocks: int                      # most thread blocks a kernel uses
    region_mb: float                 # largest workspace region
    ce_wait: str                     # how the copy-engine path waits for its peers (CE_WAITS)
    register: bool                   # registered buffers take the peers' results directly
    arrive_first: bool = False       # wait for the peers on one block before each kernel
    copy_engine: bool = False        # all_reduce's fast lane by the copy engines

    @classmethod
    def plain(cls, settings):
        return cls(blocks=settings.peer_blocks, region_mb=settings.peer_region_mb,
                   ce_wait=settings.peer_ce_wait, register=settings.peer_register)

    @classmethod
    def beside_compute(cls, settings, copy_engine=None):
        """Few SMs (dp_peer_blocks), the peers met on one block first (peer_arrive_first), and
        the all-reduces by the copy engines (peer_copy_engine, or `copy_engine` when given)."""
        options = cls.plain(settings)
        options.blocks = settings.dp_peer_blocks
        options.arrive_first = settings.peer_arrive_first
        options.copy_engine = bool(settings.peer_copy_engine if copy_engine is None
                                   else copy_engine)
        return options

    def region_bytes(self):
        return max(LINE, int(self.region_mb * (1 << 20)) // LINE * LINE)


_U8 = DTYPE_CODES["uint8"]


def two_shot_bounds(count, size, itemsize):
    """Where each rank's chunk starts, for the two-shot all-reduce: p nearly equal chunks whose
    starts fall on cache lines (a line never straddles two ranks' chunks)."""
    align = max(1, LINE // itemsize)
    part = -(-count // size)
    part = -(-part // align) * align
    return [min(q * part, count) for q in range(size + 1)]


class Registered:
    """A registered buffer: its size, every rank's copy as mapped here (None for this rank),
    and a weak reference to the tensor (the entry dies with it)."""

    def __init__(self, nbytes, peers, tensor_ref):
        self.nbytes, self.peers, self.tensor_ref = nbytes, peers, tensor_ref


class PeerWorkspace:
    """This rank's workspace, every peer's mapped here, and the running count of barriers.

    Built by IpcTransport.peer_workspace(), collectively (every rank at the same call)."""

    ce_reduce_blocks = 0       # the copy-engine reduce's grid cap; 0: sized by the data

    def __init__(self, transport, timeout_s, options):
        self.transport = transport
        self.lib, self.comm = transport.lib, transport.comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.device = transport.device
        self.max_region_bytes = options.region_bytes()
        self.region_bytes = 0           # grown on demand (_ensure), up to max_region_bytes
        self.options = options
        self.ce_wait = options.ce_wait                                    # CE_WAITS
        self.max_blocks = int(options.blocks)
        if not 1 <= self.max_blocks <= MAX_BLOCKS:
            raise ValueError(f"rank {self.rank}: peer kernel blocks {options.blocks}: must be "
                             f"1..{MAX_BLOCKS}")
        self.timeout_s = float(timeout_s)
        self._own = None
        self._mapped = []               # (peer, handle): the peers' workspaces opened here
        self._bases = (ctypes.c_void_p * MAX_RANKS)()
        self._bound = (ctypes.c_int64 * (MAX_RANKS + 1))()
        self._epoch = 1                 # the flags start at 0; barrier k writes epoch k
        self._region = 0
        self._last_stream = None
        event, _ = transport._own_event({}, "order")
        self._order_event = event
        self._ce_event, _ = transport._own_event({}, "copy engine")
        self._ce_queued = None          # (when, epoch) of the last copy-engine call with memop waits
        self.register_outputs = options.register
        self._registered = {}           # own pointer -> Registered
        self.registered_calls = 0       # calls that wrote straight into registered buffers
        transport.watchdog.gpu_checks.append(self._overdue)

    def _ensure(self, nbytes):
        """Regions of at least min(nbytes, the maximum) bytes. They start small and double as
        calls need (a job that only all-reduces 4 KB keeps 2 MB, not 2 x 256). Every rank makes
        the same calls, so every rank grows at the same call: finish all work on the old ones,
        unmap, free, allocate, exchange the new handles, restart the barrier counters."""
        want = min(max(nbytes, 1), self.max_region_bytes)
        if want <= self.region_bytes:
            return
        region = MIN_REGION
        while region < want:
            region *= 2
        region = min(region, self.max_region_bytes)
        lib, comm, transport = self.lib, self.comm, self.transport
        if self._own is not None:
            if self._last_stream is not None:         # this workspace's kernels run in call
                # order (_follow), so the last stream's work done means all of it is done; the
                # rest of the device (another communicator's kernels, the compute) runs on
                check(lib, lib.mt_event_record(self._order_event, self.device, self._last_stream))
                check(lib, lib.mt_event_synchronize(self._order_event, self.device))
            comm.Barrier()                            # no kernel anywhere touches the old ones
            for peer, handle in self._mapped:
                check(lib, lib.mt_ipc_close(transport._opened.pop((peer, handle)), self.device))
            comm.Barrier()                            # unmapped everywhere before it is freed
            check(lib, lib.mt_peer_workspace_free(self._own, self.device))
            self._own = None
        total = ctypes.c_int64()
        check(lib, lib.mt_peer_workspace_bytes(region, ctypes.byref(total)))
        own = ctypes.c_void_p()
        check(lib, lib.mt_peer_workspace_alloc(self.device, total.value, ctypes.byref(own)))
        self._own = own.value
        handle, offset = transport._export(self._own)
        assert offset == 0, "a workspace is its own allocation"
        handles = comm.allgather(handle)
        self._mapped = [(q, h) for q, h in enumerate(handles) if q != self.rank]
        for q, h in enumerate(handles):
            self._bases[q] = self._own if q == self.rank else transport._open(q, h)
        self.region_bytes = region
        self._epoch, self._region, self._last_stream = 1, 0, None

    def _follow(self, stream):
        """Kernels of this workspace must run one after another in call order on this GPU (a
        kernel waits at its barrier for the peers' kernel of the same call): when a call comes
        on another stream than the last, it first waits for the last one's work."""
        last = self._last_stream
        if last is not None and last != stream:
            check(self.lib, self.lib.mt_event_record(self._order_event, self.device, last))
            check(self.lib, self.lib.mt_stream_wait_event(stream, self.device, self._order_event))
        self._last_stream = stream

    # ----------------------------------------------------------------- registered outputs
    def register(self, tensor):
        """Collective, every rank in the same order: `tensor` (contiguous, on this GPU) will be
        all-reduced in place by the copy engines many times, on every rank at the same call,
        and every rank keeps it alive meanwhile. Maps every rank's buffer into every peer, so
        those calls skip the copy out of the workspace. Returns whether it took effect (every
        rank the same: off with MPITRAIN_PEER_REGISTER=0, or where any rank cannot)."""
        ptr, nbytes = tensor.data_ptr(), tensor.numel() * tensor.element_size()
        usable = bool(self.register_outputs and self.options.copy_engine and nbytes > 0
                      and tensor.is_contiguous())
        handle, offset = self.transport._export(ptr) if usable else (None, 0)
        everyone = self.comm.allgather((usable, nbytes, handle, offset))
        if not all(u for u, _, _, _ in everyone) or len({n for _, n, _, _ in everyone}) != 1:
            return False
        peers = [None if q == self.rank else self.transport._open(q, h) + o
                 for q, (_, _, h, o) in enumerate(everyone)]
        self._registered[ptr] = Registered(nbytes, peers, weakref.ref(tensor))
        return True

    def _peer_outputs(self, ptr, nbytes):
        """The peers' registered buffers for an in-place call on `ptr`, or None."""
        entry = self._registered.get(ptr)
        if entry is None:
            return None
        tensor = entry.tensor_ref()
        if tensor is None or tensor.data_ptr() != ptr:
            del self._registered[ptr]               # freed: its address may serve another
            return None
        return entry.peers if nbytes <= entry.nbytes else None

    def _run(self, mode, src, dst, bound, n, nbytes, dtype_code, op_code, stream, scale=1.0,
             peer_out=None):
        for q, b in enumerate(bound):
            self._bound[q] = b
        if mode == COPY_ENGINE:
            self._run_copy_engine(src, dst, n, dtype_code, op_code, scale, stream, peer_out)
        else:
            blocks = min(self.max_blocks, max(1, -(-nbytes // (THREADS * 16))))
            check(self.lib, self.lib.mt_peer_run(
                mode, self._bases, self.rank, self.size, src, dst, self._bound, n, self._region,
                self.region_bytes, self._epoch & 0xFFFFFFFF, blocks, dtype_code, op_code,
                int(self.options.arrive_first), self.timeout_s, self.device, stream))
        self._epoch += 2 if mode in (TWO_SHOT, TWO_SHOT_PUSH, COPY_ENGINE) else 1
        self._region ^= 1

    def _run_copy_engine(self, src, dst, n, dtype_code, op_code, scale, stream, peer_out=None):
        lib = self.lib
        check(lib, lib.mt_peer_ce_all_reduce(
            self._bases, peer_out, self.rank, self.size, src, dst, self._bound, n, self._region,
            self.region_bytes, self._epoch & 0xFFFFFFFF, dtype_code, op_code, float(scale),
            self.ce_reduce_blocks, CE_WAITS[self.ce_wait], self.timeout_s, self.device, stream))
        if self.ce_wait == "memop" and self.size > 1:     # the watchdog times it (_overdue)
            check(lib, lib.mt_event_record(self._ce_event, self.device, stream))
            self._ce_queued = (time.monotonic(), self._epoch)

    def _overdue(self, now, timeout_s):
        """The watchdog's check (another thread): the last copy-engine call, queued more than
        timeout_s ago, still not done on the GPU: a peer never reached its barrier."""
        queued = self._ce_queued
        if queued is None or now - queued[0] <= timeout_s:
            return None
        pending = ctypes.c_int(0)
        if self.lib.mt_event_query(self._ce_event, self.device, ctypes.byref(pending)) or not pending.value:
            return None
        return (f"a copy-engine all-reduce (barrier {queued[1]}) queued {now - queued[0]:.1f} s ago "
                f"has not finished on the GPU: a peer never reached it (a rank died or made a "
                f"different call)")

    # ------------------------------------------------------------------------ the collectives
    def all_reduce(self, src, dst, count, itemsize, dtype, op, mode, stream, scale=1.0):
        """dst[:count] = the reduction of every rank's src[:count] (src may be dst). dtype and
        op are names (float32, sum); mode ONE_SHOT, TWO_SHOT, TWO_SHOT_PUSH or COPY_ENGINE.
        Pieces that fit a region, one kernel (or copy-engine sequence) each. scale (a floating
        sum by the copy engines only): the sum times scale, in the reducing pass."""
        if scale != 1.0 and (mode != COPY_ENGINE or op != "sum"):
            raise ValueError(f"rank {self.rank}: a scaled all_reduce is a sum by the copy engines")
        dtype_code, op_code = DTYPE_CODES[dtype], OP_CODES[op]
        push = mode in (TWO_SHOT_PUSH, COPY_ENGINE)   # p slots of piece/p + piece results
        unit = self.size * max(1, LINE // itemsize)
        self._ensure((2 if push else 1) * (-(-count // unit) * unit) * itemsize)
        self._follow(stream)
        elements = self.region_bytes // itemsize
        piece = (elements // 2 if push else elements) // unit * unit
        peers = (self._peer_outputs(dst, count * itemsize)
                 if mode == COPY_ENGINE and src == dst and self._registered else None)
        self.registered_calls += peers is not None
        for start in range(0, count, piece):
            n = min(piece, count - start)
            bound = (two_shot_bounds(n, self.size, itemsize) if mode != ONE_SHOT
                     else [0] * self.size + [n])
            peer_out = None
            if peers is not None:
                peer_out = (ctypes.c_void_p * MAX_RANKS)(
                    *[0 if q is None else q + start * itemsize for q in peers])
            self._run(mode, src + start * itemsize, dst + start * itemsize, bound, n,
                      n * itemsize, dtype_code, op_code, stream, scale, peer_out)

    def fits(self, nbytes):
        return nbytes <= self.max_region_bytes

    def reduce_scatter(self, src, dst, counts, itemsize, dtype, op, stream):
        """dst[:counts[rank]] = the reduction of every rank's block `rank` of src (blocks in
        rank order, counts[q] elements each). The whole of src must fit a region."""
        bound = [sum(counts[:q]) for q in range(self.size + 1)]
        self._ensure(bound[-1] * itemsize)
        self._follow(stream)
        self._run(REDUCE_SCATTER, src, dst, bound, bound[-1], bound[-1] * itemsize,
                  DTYPE_CODES[dtype], OP_CODES[op], stream)

    def all_gather(self, src, dst, counts, itemsize, stream):
        """Every rank's src (counts[q] elements) lands in dst in rank order; moved as bytes."""
        bound = [sum(counts[:q]) * itemsize for q in range(self.size + 1)]
        self._ensure(max(counts) * itemsize)
        self._follow(stream)
        mine = counts[self.rank] * itemsize
        self._run(ALL_GATHER, src, dst, bound, mine, bound[-1], _U8, OP_CODES["sum"], stream)


class PeerLane:
    """all_reduce's fast lane for GPU tensors: a contiguous torch CUDA tensor on this
    workspace's GPU goes straight to the kernel, past the general path's layers (which cost more
    than the kernel itself at 4 KB). The same kernel auto would pick; None when it does not
    apply, and the general path runs."""

    def __init__(self, workspace, size, one_shot_max_bytes):
        import torch
        self.tensor = torch.Tensor
        self.workspace = workspace
        self.size = size
        self.one_shot_max_bytes = one_shot_max_bytes
        self._stream = torch._C._cuda_getCurrentRawStream
        self._dtypes = {getattr(torch, name): name for name in DTYPE_CODES}
        self._ops = {"sum", "max", "min", "prod", "avg"}

    def all_reduce(self, t, op):
        name = self._dtypes.get(t.dtype)
        ws = self.workspace
        if (name is None or op not in self._ops or not t.is_cuda or t.get_device() != ws.device
                or not t.is_contiguous()):
            return None
        count = t.numel()
        if count == 0 or (op == "avg" and not t.is_floating_point()):
            return None
        itemsize = t.element_size()
        ptr = t.data_ptr()
        nbytes = count * itemsize
        mode = (COPY_ENGINE if ws.options.copy_engine          # beside compute: no SM, whatever the size
                else ONE_SHOT if nbytes <= self.one_shot_max_bytes else TWO_SHOT_PUSH)
        # avg: the copy engines' reducing pass scales by 1/p (data parallel's buckets); the
        # kernels sum, then one division
        folded = op == "avg" and mode == COPY_ENGINE
        ws.all_reduce(ptr, ptr, count, itemsize, name, "sum" if op == "avg" else op, mode,
                      self._stream(ws.device), 1.0 / self.size if folded else 1.0)
        if op == "avg" and not folded:
            t.div_(self.size)
        return t
