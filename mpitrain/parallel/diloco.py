"""DiLoCo and Streaming DiLoCo: workers train apart for H inner steps, then average only the
change of their parameters (Douillard et al. 2023, arXiv 2311.08105; streaming: arXiv
2501.18512).

    engine = DiLoCo(model, world, make_inner, workers=2, sync_every=50)
    ... every inner step: backward, engine.synchronize(), the inner optimizer's step, then
    engine.after_inner_step(step)            # step counts from 1

The world splits into `workers` equal groups of consecutive ranks (one per node by default in
the trainer). Inside a worker, the inner engine (data parallel or ZeRO-1/2 over the worker's
ranks, `make_inner(model, worker_comm)`) trains with the inner optimizer. At an outer step each
worker computes the outer gradient delta = theta_global - theta_local; the workers average it
over the cross-worker communicator (the ranks with the same index in every worker: the same
split as the hierarchical all-reduce's, `Communicator.split`), and an outer optimizer, SGD with
Nesterov momentum, updates theta_global, from which every worker continues.

Where the outer state lives: theta_global and the outer momentum are sharded over the worker's
ranks (rank j of a worker holds shard j of each fragment, float32, on the parameters' device),
so each rank keeps 2 x 4 bytes x params / ranks-per-worker, and the cross-worker traffic of a
worker is one copy of the outer gradient, split over its ranks. After the outer step the worker
all-gathers the new shards.

Streaming (`fragments` F): the model's blocks split into F consecutive fragments (the
parameters before the first block go with the first, those after the last with the last);
fragment f is synced when step % H == (f + 1) H / F (mod H): each fragment every H steps, a
different one every H / F steps. `overlap` T: a fragment's exchange runs on a thread of its own
during the next T inner steps; at step t0 + T the result is merged, keeping the local progress
of those T steps: theta_local = theta_global_new + (theta_local(t0 + T) - theta_local(t0)).

`outer_dtype`: the outer gradient goes over the wire as fp32 (averaged by all-reduce) or
compressed (bf16, int8, int4 with a scale per block of 256: compress.py), all-gathered and
summed in float32, with error feedback kept per worker.
"""
import contextlib
import threading

import torch

from .. import kernels
from ..comm.algorithms.blocks import even_counts
from .compress import BLOCK, FORMATS, ErrorFeedback, decompress
from .replicate import broadcast_parameters


class DiLoCoConfigError(ValueError):
    """A DiLoCo setting that cannot run (every rank sees the same one)."""


def check_settings(world_size, workers, sync_every, fragments, overlap, outer_dtype, num_blocks):
    """Raise DiLoCoConfigError naming the bad value."""
    if workers < 1 or world_size % workers:
        raise DiLoCoConfigError(f"--workers {workers}: must divide the {world_size} ranks into "
                                f"equal groups")
    if sync_every < 1:
        raise DiLoCoConfigError(f"--sync-every {sync_every}: must be >= 1")
    if fragments < 1 or num_blocks % fragments:
        raise DiLoCoConfigError(f"--fragments {fragments}: must divide the model's {num_blocks} "
                                f"blocks")
    if sync_every % fragments:
        raise DiLoCoConfigError(f"--fragments {fragments}: must divide --sync-every {sync_every} "
                                f"(a fragment every H/F steps)")
    if overlap < 0 or overlap >= sync_every // fragments:
        raise DiLoCoConfigError(f"--overlap {overlap}: must be >= 0 and < --sync-every / "
                                f"--fragments = {sync_every // fragments}")
    if outer_dtype not in FORMATS:
        raise DiLoCoConfigError(f"--outer-dtype {outer_dtype}: choose from {', '.join(FORMATS)}")


def split_fragments(model, blocks, fragments):
    """[[parameters of fragment f] for f in range(F)], in the model's parameter order."""
    owner = {}
    per = len(blocks) // fragments
    for i, block in enumerate(blocks):
        for p in block.parameters():
            owner[id(p)] = i // per
    params = [p for p in model.parameters() if p.requires_grad]
    seen_block = False
    parts = [[] for _ in range(fragments)]
    for p in params:
        if id(p) in owner:
            seen_block = True
            parts[owner[id(p)]].append(p)
        else:                                   # embeddings before the blocks, head after them
            parts[-1 if seen_block else 0].append(p)
    return parts


def schedule_offset(fragment, fragments, sync_every):
    return ((fragment + 1) * sync_every // fragments) % sync_every


class Fragment:
    """One fragment's parameters, this rank's shard of theta_global and momentum, and its
    error feedback."""

    def __init__(self, index, params, worker_comm, outer_dtype):
        self.index = index
        self.params = params
        self.count = sum(p.numel() for p in params)
        self.offsets = [sum(p.numel() for p in params[:i]) for i in range(len(params))]
        # shards cut at multiples of the compression block, so the blocks (and the compressed
        # outer gradient) are the same whatever the number of ranks in a worker
        blocks = even_counts(-(-self.count // BLOCK), worker_comm.size)
        ends = [min(self.count, BLOCK * sum(blocks[:j + 1])) for j in range(len(blocks))]
        self.counts = [b - a for a, b in zip([0] + ends[:-1], ends)]
        self.lo = sum(self.counts[:worker_comm.rank])
        self.hi = self.lo + self.counts[worker_comm.rank]
        flat = self.flat()
        self.theta = flat[self.lo:self.hi].clone()          # this rank's shard of theta_global
        self.momentum = torch.zeros_like(self.theta)
        self.feedback = None if outer_dtype == "fp32" else ErrorFeedback(self.theta.numel(),
                                                                         self.theta.device)
        self.started = None                                   # theta_local at the sync's start

    def flat(self):
        """theta_local of the fragment, one float32 vector (the fused pack of kernels/)."""
        out = torch.empty(self.count, dtype=torch.float32, device=self.params[0].device)
        return kernels.pack([p.detach() for p in self.params], out, self.offsets)

    def write(self, flat):
        with torch.no_grad():
            kernels.unpack(flat, [p.data for p in self.params], self.offsets)


class DiLoCo:
    def __init__(self, model, world, make_inner, workers, sync_every, outer_lr=0.7,
                 outer_momentum=0.9, fragments=1, overlap=0, outer_dtype="fp32", blocks=None):
        blocks = list(blocks if blocks is not None else model.blocks)
        check_settings(world.size, workers, sync_every, fragments, overlap, outer_dtype,
                       len(blocks))
        self.workers, self.sync_every = workers, sync_every
        self.outer_lr, self.outer_momentum = outer_lr, outer_momentum
        self.overlap, self.outer_dtype = overlap, outer_dtype
        per_worker = world.size // workers
        self.worker = world.rank // per_worker
        self.worker_comm = world.split(self.worker)              # this worker's ranks
        self.cross = world.split(world.rank % per_worker)        # one rank of every worker
        broadcast_parameters(model, world)                       # every worker starts alike
        self.inner, self.optimizer = make_inner(model, self.worker_comm)
        self.fragments = [Fragment(f, params, self.worker_comm, outer_dtype) for f, params
                          in enumerate(split_fragments(model, blocks, fragments))]
        # the exchange thread's own communicators: its collectives never pair with the inner
        # engine's or the trainer's
        self._cross_async = self.cross.dup()
        self._worker_async = self.worker_comm.dup()
        self._in_flight = {}                       # fragment index -> (thread, result, merge step)
        self.stats = {"outer_steps": 0, "bytes_sent": 0}

    # ---------------------------------------------------------------- the inner engine's face
    def no_sync(self):
        return self.inner.no_sync() if hasattr(self.inner, "no_sync") else contextlib.nullcontext()

    def synchronize(self):
        self.inner.synchronize()

    def close(self):
        for f in list(self._in_flight):
            self._merge(f)
        self.inner.close()

    # ---------------------------------------------------------------- the outer loop
    def after_inner_step(self, step):
        for index in [f for f, (_, _, at) in self._in_flight.items() if at == step]:
            self._merge(index)
        for frag in self.fragments:
            if step % self.sync_every == schedule_offset(frag.index, len(self.fragments),
                                                         self.sync_every):
                self._start(frag, step)

    def _start(self, frag, step):
        local = frag.flat()
        frag.started = local if self.overlap else None
        delta = frag.theta - local[frag.lo:frag.hi]
        del local                 # (without overlap: freed before the gathered theta is made)
        if self.overlap == 0:
            new = self._exchange(frag, delta, self.cross, self.worker_comm)
            frag.write(new)
            return
        result = {}

        def run():
            try:
                result["theta"] = self._exchange(frag, delta, self._cross_async,
                                                 self._worker_async)
            except BaseException as exc:          # re-raised on the main thread at the merge
                result["error"] = exc
        thread = threading.Thread(target=run, name=f"diloco-fragment-{frag.index}", daemon=True)
        thread.start()
        self._in_flight[frag.index] = (thread, result, step + self.overlap)

    # ---------------------------------------------------------------- checkpoints
    def settle(self):
        """Wait for the exchanges in flight to arrive, without merging them: {fragment: (merge
        step, new theta_global, theta_local at the start)}, on the CPU, for a checkpoint."""
        out = {}
        for index, (thread, result, at) in self._in_flight.items():
            thread.join()
            if "error" in result:
                raise result["error"]
            out[index] = (at, result["theta"].cpu(), self.fragments[index].started.cpu())
        return out

    def drop_in_flight(self):
        for index in list(self._in_flight):
            self._in_flight.pop(index)[0].join()

    def resume_in_flight(self, pending):
        """Put back the exchanges a checkpoint saved in flight (settle's answer)."""
        for index, (at, theta, started) in (pending or {}).items():
            frag = self.fragments[index]
            frag.started = started.to(frag.theta.device)
            self._in_flight[index] = (_Arrived(), {"theta": theta.to(frag.theta.device)}, at)

    def _merge(self, index):
        thread, result, _ = self._in_flight.pop(index)
        thread.join()
        if "error" in result:
            raise result["error"]
        frag = self.fragments[index]
        frag.write(result["theta"] + (frag.flat() - frag.started))
        frag.started = None

    def _exchange(self, frag, delta, cross, worker_comm):
        """Average delta over the workers, take the outer step on this rank's shard of
        theta_global, and all-gather the worker's shards: the new theta_global, whole."""
        mean = self._average(frag, delta, cross)           # may be delta itself, reused
        if self.outer_momentum:
            frag.momentum.mul_(self.outer_momentum).add_(mean)
            mean.add_(frag.momentum, alpha=self.outer_momentum)          # Nesterov
        frag.theta.add_(mean, alpha=-self.outer_lr)
        whole = torch.empty(frag.count, dtype=torch.float32, device=frag.theta.device)
        if worker_comm.size == 1:
            whole.copy_(frag.theta)
        else:
            worker_comm.all_gather_v(frag.theta, whole, frag.counts)
        self.stats["outer_steps"] += 1
        return whole

    def _average(self, frag, delta, cross):
        if cross.size == 1:
            if frag.feedback is not None:              # what one worker would send
                return decompress(frag.feedback.compress(delta, self.outer_dtype))
            return delta
        if self.outer_dtype == "fp32":
            cross.all_reduce(delta, op="avg")              # in place: delta is this call's own
            self.stats["bytes_sent"] += delta.numel() * 4
            return delta
        payload = frag.feedback.compress(delta, self.outer_dtype)
        wire = pack(payload)
        gathered = torch.empty(cross.size * wire.numel(), dtype=torch.uint8, device=wire.device)
        cross.all_gather(wire, gathered)
        self.stats["bytes_sent"] += wire.numel()
        total = torch.zeros_like(delta)
        for piece in gathered.view(cross.size, -1):
            decompress(unpack(piece, payload), out=total)
        return total.div_(cross.size)


class _Arrived:
    """An exchange restored from a checkpoint: already here."""

    def join(self):
        pass


def pack(payload):
    """A payload's codes and scales as one byte buffer (the same size on every worker)."""
    return torch.cat([payload.codes.reshape(-1).view(torch.uint8),
                      payload.scales.reshape(-1).view(torch.uint8)])


def unpack(wire, like):
    """The payload packed in `wire`, shaped as `like` (another worker's payload of this size)."""
    from .compress import Payload
    n = like.codes.numel() * like.codes.element_size()
    codes = wire[:n].view(like.codes.dtype)
    scales = wire[n:].view(torch.float32)
    return Payload(like.dtype, like.count, codes, scales)
