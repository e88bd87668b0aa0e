"""The public face of the collectives: check the call, pick the algorithm, run it, time it out.

Every collective goes through the same three steps:
  1. validate, on this rank: buffers, dtype, op, root, counts, output size -> CollectiveError
     naming the value and this rank;
  2. in debug mode, agree: every rank sends its call's signature (or its validation error) to
     rank 0, which compares them and tells everyone; a mismatch or an error anywhere raises on
     every rank before any data moves, and ranks that never arrive are named before the abort;
  3. run the algorithm under the watchdog, which aborts the job if a peer never shows up.
"""
import contextlib
import time
from ctypes import addressof, c_char

import numpy as np

from . import auto
from .algorithms import ALGORITHMS, PEER_ALGORITHMS, algorithm_for
from .buffers import as_buffer
from .context import Context, DeviceContext, DeviceScratchPool, ScratchPool
from .errors import CollectiveError, CollectiveMismatchError
from .ops import OPS, combine_op
from .peer_workspace import PeerOptions
from .topology import Topology
from .transport import HostTransport
from .watchdog import Watchdog, abort_job
from .. import kernels

SIGNATURE_TAG, VERDICT_TAG, OBJECT_TAG = 0x5167, 0x5168, 0x5169

# (numpy dtype, op) -> (dtype code, op code) of the C kernels, for all_reduce's fast lane:
# native numpy dtypes only (bfloat16 has none); avg = sum, then a division (floats only).
_SMALL_CODES = {}
for _name, _code in kernels.compiled.DTYPE_CODES.items():
    if _name == "bfloat16":
        continue
    for _op, _opcode in kernels.compiled.OP_CODES.items():
        _SMALL_CODES[(np.dtype(_name), _op)] = (_code, _opcode)
    if np.dtype(_name).kind == "f":
        _SMALL_CODES[(np.dtype(_name), "avg")] = (_code, kernels.compiled.OP_CODES["sum"])


class Communicator:
    """A group of ranks and the collectives among them. Build one with mpitrain.comm.init()."""

    def __init__(self, comm, topology, settings):
        self.mpi_comm = comm                 # the user's communicator, left untouched
        self.settings = settings             # mpitrain.settings.Settings, read once by init()
        self.comm = comm.Dup()               # data plane: the collectives' messages
        self.ctl = comm.Dup()                # control plane: debug-mode agreement
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.topology = topology
        self.local_rank = topology.local_rank
        self.local_size = topology.local_size
        self.node = topology.node
        self.num_nodes = topology.num_nodes
        self.timeout = settings.timeout      # seconds; 0: no watchdog
        self.debug = settings.debug
        self.watchdog = Watchdog(self.rank, self.timeout, lambda msg: abort_job(self.comm, msg))
        self.transport = HostTransport(self.comm, self.watchdog)
        self._pool = ScratchPool()
        self._small = self._small_lane()         # the C fast lane of small all_reduce, or None
        self._contexts = {}                  # (dtype, op, device) -> Context, built once
        self._device_pool = DeviceScratchPool()
        self._gpu_transport = None           # made when the first GPU buffer arrives
        self._peer_lane = None               # all_reduce's GPU fast lane (comm/peer_workspace.py), or None
        self._levels = None                  # node and cross-node communicators (hierarchical.py)
        self.peer = PeerOptions.plain(settings)   # how its GPU peer kernels run (peer_workspace.py)
        self._trace = None                   # the open Trace (world.trace()), or None
        self._calls = 0
        self._sync_calls = 0                 # barriers and object collectives (not traced)

    def __repr__(self):
        return (f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"local_size={self.local_size}, node={self.node}/{self.num_nodes})")

    def _small_lane(self):
        c_call = getattr(self.transport, "compiled_doubling", None)
        if c_call is None:
            return None
        self._small_scratch = np.empty(auto.ALL_REDUCE_SMALL_BYTES, np.uint8)   # kept alive here
        return (c_call, self.transport.comm_address, self._small_scratch.ctypes.data,
                self.transport.c_waiting_on_address)

    @contextlib.contextmanager
    def trace(self, snapshots=False):
        """Record every step of the collectives called inside (see trace.py). Every rank must
        open it around the same calls (it starts with a barrier)."""
        from .trace import Trace, TracingTransport
        trace = Trace(self, snapshots)
        saved = self.transport, self._contexts, self._small, self._peer_lane
        self.transport = TracingTransport(self.transport, trace)
        self._contexts, self._small, self._peer_lane, self._trace = {}, None, None, trace
        try:
            yield trace
        finally:
            self.transport, self._contexts, self._small, self._peer_lane = saved
            self._trace = None
            self._contexts = {}

    def dup(self, settings=None):
        """A Communicator over the same ranks with its own message space, scratch memory and
        watchdog: collectives on it never pair with this one's, so another thread may use it
        (the data-parallel engine's communication thread does). It carries this one's settings,
        or `settings` (e.g. comm.settings.replace(peer_register=False))."""
        return Communicator(self.mpi_comm, self.topology, settings or self.settings)

    def split(self, color, key=None):
        """Collective: a Communicator over the ranks that pass the same `color` (ordered by `key`,
        default this rank), with its own topology (which of its ranks share a node) and the same
        settings (timeout, debug mode, GPU transport choice, ...) as this one."""
        comm = self.mpi_comm.Split(int(color), self.rank if key is None else int(key))
        nodes = comm.allgather(self.topology.node)
        order = list(dict.fromkeys(nodes))            # nodes by their first rank in the split
        mine = self.topology.node
        topology = Topology(nodes[:comm.Get_rank()].count(mine), nodes.count(mine),
                            order.index(mine), len(order))
        return Communicator(comm, topology, self.settings)

    # ----------------------------------------------------------------- helpers for every rank
    def print0(self, *args, **kwargs):
        """print on rank 0 only, flushed."""
        if self.rank == 0:
            kwargs.setdefault("flush", True)
            print(*args, **kwargs)

    def barrier(self):
        """Every rank waits until all have arrived. A dissemination barrier on point-to-point
        messages (round k: send to rank + 2^k, receive from rank - 2^k), so a stall names the
        rank that has not arrived."""
        self._sync_calls += 1
        self.watchdog.begin(("barrier", self._sync_calls, "dissemination"))
        token, incoming = np.zeros(1, np.uint8), np.zeros(1, np.uint8)
        try:
            distance = 1
            while distance < self.size:
                self.transport.sendrecv(token, (self.rank + distance) % self.size,
                                        incoming, (self.rank - distance) % self.size)
                distance *= 2
        finally:
            self.watchdog.end()

    # Python objects (small: metadata, reports), every wait under the watchdog with its peer named
    def gather_object(self, obj, root=0):
        """root gets [every rank's obj] in rank order, the others None."""
        root = self._check_object_root(root)
        self._sync_calls += 1
        self.watchdog.begin(("gather_object", self._sync_calls, "linear"))
        try:
            if self.rank != root:
                self.watchdog.peers = (root,)
                self.comm.send(obj, dest=root, tag=OBJECT_TAG)
                return None
            out = []
            for source in range(self.size):
                if source == root:
                    out.append(obj)
                    continue
                self.watchdog.peers = (source,)
                self.watchdog.progress += 1
                out.append(self.comm.recv(source=source, tag=OBJECT_TAG))
            return out
        finally:
            self.watchdog.end()

    def broadcast_object(self, obj, root=0):
        """Every rank gets root's obj."""
        root = self._check_object_root(root)
        self._sync_calls += 1
        self.watchdog.begin(("broadcast_object", self._sync_calls, "linear"))
        try:
            if self.rank == root:
                for dest in range(self.size):
                    if dest != root:
                        self.watchdog.peers = (dest,)
                        self.watchdog.progress += 1
                        self.comm.send(obj, dest=dest, tag=OBJECT_TAG)
                return obj
            self.watchdog.peers = (root,)
            return self.comm.recv(source=root, tag=OBJECT_TAG)
        finally:
            self.watchdog.end()

    def all_gather_object(self, obj):
        """Every rank gets [every rank's obj] in rank order."""
        return self.broadcast_object(self.gather_object(obj, 0), 0)

    def _check_object_root(self, root):
        root = _as_rank(root)

        self._check_root(root)
        return root

    def abort(self, message, code=1):
        abort_job(self.comm, f"mpitrain: rank {self.rank}: {message}", code)

    # ------------------------------------------------------------------------- the collectives
    def all_reduce(self, buf, op="sum", algorithm="auto"):
        """In place: every rank's `buf` becomes the elementwise reduction over all ranks.

        Written out step by step rather than through _collective: it is the hot call of data
        parallelism, and at 4 KB every microsecond of Python shows (see auto.py)."""
        if (algorithm == "auto" and self._small is not None and type(buf) is np.ndarray
                and not self.debug):
            done = self._small_all_reduce(buf, op)
            if done is not None:
                return done
        if algorithm == "auto" and self._peer_lane is not None and type(buf) is self._peer_lane.tensor:
            done = self._peer_lane.all_reduce(buf, op)
            if done is not None:
                return done
        try:
            b = self._buffer(buf, "buf")
            self._check_op(op, b.dtype)
            alg = self._algorithm("all_reduce", algorithm, b.nbytes, b.device)
        except CollectiveError as exc:
            self._refuse("all_reduce", exc)
        if self.debug:
            self._agree_or_raise("all_reduce", (("count", b.count), ("dtype", b.dtype.name),
                                                ("op", op), ("algorithm", alg)))
        if alg == "hierarchical":
            from .hierarchical import hierarchical_all_reduce
            # the user's own object, flat (its checks passed above): the levels check it again,
            # and bfloat16 host memory is only a bfloat16 there (b.array holds its raw bits)
            hierarchical_all_reduce(self.levels(), buf.reshape(-1), combine_op(op))
            if op == "avg":
                _divide(b, b.array, self.size)
            return buf
        self._calls += 1
        self.watchdog.begin(("all_reduce", self._calls, alg))
        try:
            with _on_device(b):
                ctx = self._context(b, combine_op(op))
                if self._trace is not None:
                    self._trace.begin("all_reduce", self._calls, alg, [b.array])
                algorithm_for("all_reduce", alg, b.device >= 0)(ctx, b.array)
                if self._trace is not None:
                    self._trace.end()
                if op == "avg":
                    _divide(b, b.array, self.size)
        finally:
            self.watchdog.what = None
        return buf

    def _small_all_reduce(self, buf, op):
        """The fast lane of all_reduce: a small, contiguous, writable numpy array of a native
        dtype goes straight to the C recursive doubling (csrc/mpi_small.c) with none of the
        general path's layers; the same algorithm auto would choose, the same result. Returns
        None (nothing done) for anything else, which then takes the general path."""
        codes = _SMALL_CODES.get((buf.dtype, op))
        nbytes = buf.nbytes
        if codes is None or not 0 < nbytes < auto.ALL_REDUCE_SMALL_BYTES:
            return None
        flags = buf.flags
        if not (flags.c_contiguous and flags.writeable):
            return None
        c_call, comm_address, scratch_address, waiting_on = self._small
        self._calls += 1
        wd = self.watchdog
        wd.what = ("all_reduce", self._calls, "recursive_doubling_c")
        wd.peers = self.transport.c_waiting_on           # the C code stores its current peer there
        wd.progress += 1
        rc = c_call(comm_address, addressof(c_char.from_buffer(buf)), scratch_address, buf.size,
                    buf.itemsize, codes[0], codes[1], waiting_on)
        wd.what = None
        if rc:
            from ..kernels.compiled import check, mpi_lib
            check(mpi_lib(), rc)
        if op == "avg":
            kernels.divide_(buf.reshape(-1), buf.dtype.name, self.size)
        return buf

    def broadcast(self, buf, root=0, algorithm="auto"):
        """In place: every rank's `buf` becomes root's."""
        root = _as_rank(root)

        def plan():
            b = self._buffer(buf, "buf")
            self._check_root(root)
            alg = self._algorithm("broadcast", algorithm, b.nbytes)
            sig = (("count", b.count), ("dtype", b.dtype.name), ("root", root))
            return alg, sig, b, (lambda ctx: ALGORITHMS["broadcast"][alg](ctx, b.array, root)), [b]
        self._collective("broadcast", plan)
        return buf

    def reduce(self, sendbuf, recvbuf, root=0, op="sum", algorithm="auto"):
        """root's `recvbuf` receives the reduction of every rank's `sendbuf` (recvbuf: root only,
        may be `sendbuf` itself for an in-place reduce)."""
        root = _as_rank(root)

        def plan():
            s = self._buffer(sendbuf, "sendbuf")
            self._check_root(root)
            self._check_op(op, s.dtype)
            r = self._output(recvbuf, s, s.count) if self.rank == root else None
            alg = self._algorithm("reduce", algorithm, s.nbytes)
            sig = (("count", s.count), ("dtype", s.dtype.name), ("op", op), ("root", root))

            def run(ctx):
                ALGORITHMS["reduce"][alg](ctx, s.array, None if r is None else r.array, root)
                if op == "avg" and r is not None:
                    _divide(r, r.array[: s.count], self.size)
            return alg, sig, s, run, [s, r]
        self._collective("reduce", plan, op)
        return recvbuf

    def reduce_scatter(self, sendbuf, recvbuf, op="sum", algorithm="auto"):
        """sendbuf: size * k elements; each rank's recvbuf (k) receives its block, reduced."""
        k = self._count_of(recvbuf, "recvbuf")
        return self.reduce_scatter_v(sendbuf, recvbuf, [k] * self.size, op, algorithm)

    def reduce_scatter_v(self, sendbuf, recvbuf, counts, op="sum", algorithm="auto"):
        """sendbuf: sum(counts) elements; rank i's recvbuf receives counts[i] of them, reduced."""
        def plan():
            cs = self._check_counts(counts)
            s = self._buffer(sendbuf, "sendbuf")
            self._check_op(op, s.dtype)
            self._check_input(s, sum(cs), "sum(counts)")
            r = self._output(recvbuf, s, cs[self.rank])
            alg = self._algorithm("reduce_scatter", algorithm, s.dtype.itemsize * sum(cs), s.device)
            sig = (("counts", cs), ("dtype", s.dtype.name), ("op", op))

            def run(ctx):
                algorithm_for("reduce_scatter", alg, s.device >= 0)(ctx, s.array, r.array, cs)
                if op == "avg":
                    _divide(r, r.array[: cs[self.rank]], self.size)
            return alg, sig, s, run, [s, r]
        self._collective("reduce_scatter", plan, op)
        return recvbuf

    def all_gather(self, sendbuf, recvbuf, algorithm="auto"):
        """sendbuf: k elements; every rank's recvbuf (size * k) receives all of them, rank order."""
        k = self._count_of(sendbuf, "sendbuf")
        return self.all_gather_v(sendbuf, recvbuf, [k] * self.size, algorithm)

    def all_gather_v(self, sendbuf, recvbuf, counts, algorithm="auto"):
        def plan():
            cs = self._check_counts(counts)
            s = self._buffer(sendbuf, "sendbuf")
            self._check_input(s, cs[self.rank], f"counts[{self.rank}]")
            r = self._output(recvbuf, s, sum(cs))
            alg = self._algorithm("all_gather", algorithm, s.dtype.itemsize * sum(cs), s.device)
            sig = (("counts", cs), ("dtype", s.dtype.name))
            return alg, sig, s, lambda ctx: algorithm_for("all_gather", alg, s.device >= 0)(
                ctx, s.array[: cs[self.rank]], r.array, cs), [s, r]
        self._collective("all_gather", plan)
        return recvbuf

    def scatter(self, sendbuf, recvbuf, root=0, algorithm="auto"):
        """root's sendbuf: size * k elements; rank i's recvbuf (k) receives block i."""
        k = self._count_of(recvbuf, "recvbuf")
        return self.scatter_v(sendbuf, recvbuf, [k] * self.size, root, algorithm)

    def scatter_v(self, sendbuf, recvbuf, counts, root=0, algorithm="auto"):
        root = _as_rank(root)

        def plan():
            cs = self._check_counts(counts)
            self._check_root(root)
            r = self._buffer(recvbuf, "recvbuf")
            self._check_capacity(r, cs[self.rank], "recvbuf", f"counts[{self.rank}]")
            s = None
            if self.rank == root:
                s = self._buffer(sendbuf, "sendbuf")
                self._check_same_dtype(s, r)
                self._check_input(s, sum(cs), "sum(counts)")
            alg = self._algorithm("scatter", algorithm, r.dtype.itemsize * sum(cs))
            sig = (("counts", cs), ("dtype", r.dtype.name), ("root", root))
            return alg, sig, r, lambda ctx: ALGORITHMS["scatter"][alg](
                ctx, None if s is None else s.array, r.array, cs, root), [s, r]
        self._collective("scatter", plan)
        return recvbuf

    def gather(self, sendbuf, recvbuf, root=0, algorithm="auto"):
        """Every rank's sendbuf (k elements) lands in root's recvbuf (size * k), rank order."""
        k = self._count_of(sendbuf, "sendbuf")
        return self.gather_v(sendbuf, recvbuf, [k] * self.size, root, algorithm)

    def gather_v(self, sendbuf, recvbuf, counts, root=0, algorithm="auto"):
        root = _as_rank(root)

        def plan():
            cs = self._check_counts(counts)
            self._check_root(root)
            s = self._buffer(sendbuf, "sendbuf")
            self._check_input(s, cs[self.rank], f"counts[{self.rank}]")
            r = self._output(recvbuf, s, sum(cs)) if self.rank == root else None
            alg = self._algorithm("gather", algorithm, s.dtype.itemsize * sum(cs))
            sig = (("counts", cs), ("dtype", s.dtype.name), ("root", root))
            return alg, sig, s, lambda ctx: ALGORITHMS["gather"][alg](
                ctx, s.array[: cs[self.rank]], None if r is None else r.array, cs, root), [s, r]
        self._collective("gather", plan)
        return recvbuf

    # ------------------------------------------------------------------------ the common path
    def _collective(self, name, plan, op="sum"):
        """Validate (plan), agree in debug mode, then run the algorithm under the watchdog.
        plan() returns (algorithm, signature, the buffer whose dtype and memory decide the
        context, run, the buffers a trace maps moves onto)."""
        try:
            alg, sig, buffer, run, traced = plan()
        except CollectiveError as exc:
            self._refuse(name, exc)
        if self.debug:
            self._agree_or_raise(name, (*sig, ("algorithm", alg)))
        self._calls += 1
        self.watchdog.begin((name, self._calls, alg))
        try:
            with _on_device(buffer):
                ctx = self._context(buffer, combine_op(op))
                if self._trace is not None:
                    self._trace.begin(name, self._calls, alg,
                                      [t.array for t in traced if t is not None])
                run(ctx)
                if self._trace is not None:
                    self._trace.end()
        finally:
            self.watchdog.what = None

    def _refuse(self, name, exc):
        """This rank's input is bad: in debug mode tell the other ranks first, so every rank
        raises instead of the others waiting; then raise."""
        if self.debug:
            self._agree(name, None, str(exc))
        raise exc

    def _agree_or_raise(self, name, sig):
        verdict = self._agree(name, sig, None)
        if verdict is not None:
            raise (CollectiveError if verdict.startswith("refused") else
                   CollectiveMismatchError)(self.rank, verdict)

    def _context(self, buffer, op):
        """The Context for this buffer's dtype, op and memory (host, or which GPU), built once."""
        key = (buffer.dtype.name, op, buffer.device)
        ctx = self._contexts.get(key)
        if ctx is None:
            if buffer.device < 0:
                ctx = Context(self.rank, self.size, self.transport, buffer.dtype, op, self._pool)
            else:
                ctx = DeviceContext(self.rank, self.size, self.device_transport(buffer.device),
                                    buffer.dtype,
                                    op, self._device_pool, buffer.array.device,
                                    buffer.array.dtype)
            if self._trace is not None:
                ctx.working = self._trace.watch
            self._contexts[key] = ctx
        return ctx

    def device_transport(self, device):
        """How GPU buffers move, decided once per communicator at its first GPU collective (all
        ranks together): CUDA IPC when every rank shares one node and a test copy between every
        pair works; else, when the MPI library on every rank says it takes CUDA memory, device
        pointers straight to MPI (cuda-mpi); else host-staged MPI (through a shared-memory window
        between ranks of one node, MPI messages between nodes: StagedTransport.path_to). With
        ranks on several nodes, the pairs that share a node and pass the IPC test copy take CUDA
        IPC and the others the transport above (transport/mixed.py: chosen per pair).
        init(gpu_transport=...) or MPITRAIN_GPU_TRANSPORT=ipc|cuda-mpi|staged forces one (ipc
        and cuda-mpi fail on every rank, with the reason, when they cannot work)."""
        if self._gpu_transport is None:
            self._gpu_transport = self._choose_gpu_transport(device)
            self._start_peer_lane(self._gpu_transport)
        if self._trace is not None:
            from .trace import TracingTransport
            return TracingTransport(self._gpu_transport, self._trace)
        return self._gpu_transport

    def _choose_gpu_transport(self, device):
        """device_transport's choice, made collectively (every rank the same)."""
        from .transport.ipc import IpcTransport, IpcUnavailable
        from .transport.staged import StagedTransport
        choice = self.settings.gpu_transport          # checked when the settings were made
        transport = near = None
        if choice in ("auto", "ipc") and self.size > 1:
            # auto with ranks on several nodes, some sharing one: IPC for the pairs that do
            across = choice == "auto" and 1 < self.num_nodes < self.size
            try:
                near = IpcTransport.probe(self.comm, self.watchdog, device, self.node,
                                          across_nodes=across,
                                          peer_kernels=self.settings.peer_kernels)
            except IpcUnavailable as exc:
                if choice == "ipc":
                    raise CollectiveError(self.rank, f"GPU transport ipc was asked for, but "
                                                     f"CUDA IPC is unavailable: {exc}") from exc
            if near is not None and self.num_nodes == 1:
                transport, near = near, None
        if transport is None and choice in ("auto", "cuda-mpi"):
            transport = self._cuda_mpi_transport(forced=choice == "cuda-mpi")
        if transport is None:
            transport = StagedTransport(self.comm, self.watchdog, node=self.node,
                                        chunk_mb=self.settings.stage_chunk_mb,
                                        shared=self.settings.staged_shared)
        if near is not None and near.near_peers:
            from .transport.mixed import MixedTransport
            transport = MixedTransport(near, transport, near.near_peers)
        return transport

    def _start_peer_lane(self, transport):
        """The peer kernels' workspace and all_reduce's GPU fast lane, where the transport
        offers them (CUDA IPC, one GPU per rank; peer_reason None)."""
        if getattr(transport, "peer_reason", "none") is None:
            workspace = transport.peer_workspace(self.peer)
            if not self.debug:
                from .peer_workspace import PeerLane
                self._peer_lane = PeerLane(workspace, self.size, auto.PEER_ONE_SHOT_MAX_BYTES)

    def _cuda_mpi_transport(self, forced):
        """The CUDA-aware MPI transport when the library of every rank says it takes CUDA memory
        (asked of the library: comm/cuda_aware.py), else None. Forced, a library that says no
        fails on every rank; one that cannot say (no query function) is taken at its word."""
        from . import cuda_aware
        from .transport.cuda_mpi import CudaMpiTransport
        aware, how = cuda_aware.query()
        answers = self.comm.allgather((aware, how))
        refusals = [(r, h) for r, (a, h) in enumerate(answers) if a is False or (a is None and not forced)]
        if not refusals:
            return CudaMpiTransport(self.comm, self.watchdog)
        if forced:
            rank, how = refusals[0]
            raise CollectiveError(self.rank, f"GPU transport cuda-mpi was asked for, but the MPI "
                                             f"library of rank {rank} is not CUDA-aware ({how})")
        return None

    def levels(self):
        """The node and cross-node communicators of the hierarchical all-reduce, made at the
        first call that needs them (every rank together)."""
        if self._levels is None:
            from .hierarchical import Levels
            self._levels = Levels(self)
        return self._levels

    def _spans_nodes_evenly(self):
        """Ranks on several nodes, more than one and the same number on each: where auto goes
        hierarchical. (With one rank per node there is nothing to do inside a node; the
        cross-node level itself is such a communicator, so this also ends the recursion.)"""
        return (self.num_nodes > 1 and self.local_size > 1 and self._trace is None
                and self.levels().reason is None)

    def register_in_place(self, tensor):
        """Collective (every rank, the same order): `tensor`, a CUDA tensor this communicator
        will all_reduce in place many times, each time on every rank (data parallel's buckets),
        kept alive by every rank meanwhile. Where the copy-engine lane serves it, every rank's
        buffer is mapped into every peer and the reduced chunks are written straight into it
        (comm/peer_workspace.py). Returns whether that took effect (the same on every rank)."""
        if self.size == 1:
            return False
        self.device_transport(tensor.get_device())
        if self._peer_lane is None:
            return False
        return self._peer_lane.workspace.register(tensor)

    def peer_kernels_reason(self, device):
        """None when the GPU peer kernels (comm/peer_workspace.py) serve buffers on `device`, else why
        not. Sets up the GPU transport on first use: every rank must call it together."""
        transport = self.device_transport(device)
        return getattr(transport, "peer_reason",
                       f"the {transport.name} transport has no peer memory")

    def _agree(self, name, sig, error):
        """Debug mode: all ranks compare (collective, signature) through rank 0 before moving data.
        Returns None when every rank made the same valid call, else the message to raise."""
        mine = (name, sig, error)
        deadline = time.monotonic() + (self.timeout if self.timeout > 0 else 3600.0)
        if self.rank == 0:
            pending = {peer: self.ctl.irecv(source=peer, tag=SIGNATURE_TAG)
                       for peer in range(1, self.size)}
            seen = {0: mine}
            while pending:
                for peer, req in list(pending.items()):
                    done, msg = req.test()
                    if done:
                        seen[peer] = msg
                        del pending[peer]
                if pending and time.monotonic() > deadline:
                    abort_job(self.comm, f"mpitrain: rank 0: entered {name} (debug check) but "
                              f"rank(s) {sorted(pending)} have not arrived after {self.timeout:g} s; "
                              f"aborting the job")
                if pending:
                    time.sleep(0.0005)
            verdict = _verdict(seen)
            for peer in range(1, self.size):
                self.ctl.send(verdict, dest=peer, tag=VERDICT_TAG)
            return verdict
        self.ctl.send(mine, dest=0, tag=SIGNATURE_TAG)
        req = self.ctl.irecv(source=0, tag=VERDICT_TAG)
        while True:
            done, verdict = req.test()
            if done:
                return verdict
            if time.monotonic() > deadline:
                abort_job(self.comm, f"mpitrain: rank {self.rank}: entered {name} (debug check) "
                          f"but rank 0 has not answered after {self.timeout:g} s; aborting")
            time.sleep(0.0005)

    # ------------------------------------------------------------------------------ validation
    def _buffer(self, obj, what):
        if obj is None:
            raise CollectiveError(self.rank, f"{what} is None")
        return as_buffer(obj, what, self.rank)

    def _count_of(self, obj, what):
        return self._buffer(obj, what).count if obj is not None else 0

    def _check_op(self, op, dtype):
        if op not in OPS:
            raise CollectiveError(self.rank, f"op {op!r} is not one of {', '.join(OPS)}")
        if op == "avg" and not dtype.is_float:
            raise CollectiveError(self.rank, f"op 'avg' needs a floating dtype, got {dtype.name}; "
                                             f"use 'sum' and divide")

    def _check_root(self, root):
        root = _as_rank(root)

        if not isinstance(root, int) or isinstance(root, bool) or not 0 <= root < self.size:
            raise CollectiveError(self.rank, f"root {root!r} is out of range for {self.size} ranks "
                                             f"(0..{self.size - 1})")

    def _check_counts(self, counts):
        cs = [int(c) for c in counts]
        if len(cs) != self.size or any(c < 0 for c in cs) or any(c != c0 for c, c0 in zip(cs, counts)):
            raise CollectiveError(self.rank, f"counts {list(counts)!r} must be {self.size} "
                                             f"non-negative integers, one per rank")
        return tuple(cs)

    def _algorithm(self, collective, algorithm, nbytes, device=-1):
        """The algorithm to run: `algorithm`, checked, or auto's choice. GPU buffers (device >=
        0) may also name the peer kernels, and auto picks them when they can run (the first GPU
        call sets up the GPU transport, on every rank together)."""
        gpu = device >= 0
        if algorithm == "auto":
            if (collective == "all_reduce" and nbytes >= auto.HIERARCHICAL_MIN_BYTES
                    and self._spans_nodes_evenly()):
                return "hierarchical"
            peer = gpu and self._trace is None and self.size > 1 and collective in PEER_ALGORITHMS \
                and getattr(self.device_transport(device), "peer_reason", "none") is None
            return auto.choose(collective, nbytes, self.size, gpu, peer)
        if collective == "all_reduce" and algorithm == "hierarchical":
            return algorithm
        if algorithm_for(collective, algorithm, gpu) is None:
            names = ["auto", *ALGORITHMS[collective], *(["hierarchical"] if collective == "all_reduce" else []),
                     *(PEER_ALGORITHMS.get(collective, {}) if gpu else ())]
            raise CollectiveError(self.rank, f"algorithm {algorithm!r} is not one of "
                                             f"{', '.join(names)} for {collective}"
                                             f"{'' if gpu else ' on host buffers'}")
        return algorithm

    def _check_same_dtype(self, a, b):
        if a.device != b.device:
            where = lambda buf: "the host" if buf.device < 0 else f"cuda:{buf.device}"
            raise CollectiveError(self.rank, f"sendbuf is on {where(a)} but recvbuf is on "
                                             f"{where(b)}; both must be in the same memory")
        if a.dtype is not b.dtype:
            raise CollectiveError(self.rank, f"sendbuf is {a.dtype.name} but recvbuf is {b.dtype.name}")

    def _check_capacity(self, buf, needed, what, because):
        if buf.count < needed:
            raise CollectiveError(self.rank, f"{what} has {buf.count} elements but {because} needs "
                                             f"{needed}: output too small")

    def _check_input(self, buf, needed, because):
        if buf.count < needed:
            raise CollectiveError(self.rank, f"sendbuf has {buf.count} elements but {because} = "
                                             f"{needed}")

    def _output(self, obj, sendbuf, needed):
        r = self._buffer(obj, "recvbuf")
        self._check_same_dtype(sendbuf, r)
        self._check_capacity(r, needed, "recvbuf", "this call")
        return r


def _as_rank(value):
    """A rank given as any integer type (numpy's too) as a Python int; anything else as it is,
    for the check to refuse by name."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, int):
        return value
    if isinstance(value, np.integer):
        return int(value)
    return value


def _on_device(buffer):
    """A GPU buffer's collective runs with its device current (streams and events are per
    device); host buffers need nothing."""
    if buffer.device < 0:
        return contextlib.nullcontext()
    import torch
    return torch.cuda.device(buffer.device)


def _divide(buffer, array, size):
    """avg's division, where the reduced values are complete."""
    if buffer.device < 0:
        kernels.divide_(array, buffer.dtype.name, size)
    else:
        array.div_(size)


def _describe(name, sig):
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in sig) + ")"


def _verdict(seen):
    """None when every rank made the same valid call, else a message that names the differences."""
    errors = [err for _, (_, _, err) in sorted(seen.items()) if err]
    if errors:
        return "refused, another rank's input is bad: " + "; ".join(errors)
    name0, sig0, _ = seen[0]
    diffs = []
    for r, (name, sig, _) in sorted(seen.items()):
        if (name, sig) != (name0, sig0):
            diffs.append(f"rank {r} called {_describe(name, sig)}")
    if not diffs:
        return None
    return (f"ranks disagree on the collective: rank 0 called {_describe(name0, sig0)} but "
            + "; ".join(diffs))
