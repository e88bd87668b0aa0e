"""ZeRO stages 1 and 2: each rank keeps the optimizer state of one shard of the parameters.

    zero = apply_zero(model, world, make_optimizer, stage=1)   # make_optimizer(param_groups)
    loss.backward(); zero.synchronize()     # gradients reduced: this rank's shard only
    zero.step()                             # update the shard, all-gather the parameters
    zero.zero_grad()

Layout. The trainable parameters of each optimizer group are laid out in one flat float32
buffer (16-byte aligned slots, padded to a multiple of the world size) and each parameter
becomes a view into it. Rank r owns elements [r*S, (r+1)*S) of every group's flat buffer: its
optimizer holds one flat parameter per group, that slice, and only that slice's state (AdamW:
2 floats per element, so the optimizer memory is divided by the number of ranks).

  stage 1: after backward every gradient is packed into a flat buffer and reduce-scattered
           (averaged), so each rank receives its shard's gradient; the optimizer updates the
           shard; all-gather puts every rank's updated shard into everyone's flat buffer, which
           *is* the model's parameters.
  stage 2: the same, but bucket by bucket during backward: when a bucket's gradients are all
           there, they are packed and reduce-scattered (reduce_scatter_v: each rank receives the
           part of the bucket that falls in its shard), and the parameters' .grad are released,
           so no rank ever holds the full gradient.

Both are checked against data parallel and a single process in tests/mpi/test_zero.py.
"""

import torch

from .. import kernels
from ..precision import SHORT, torch_dtype
from .buckets import plan_buckets
from .no_sync import NoSync
from .replicate import broadcast_parameters
from .streams import join, on_stream, overlapping_comm


def flatten(params, world):
    """One flat float32 buffer holding `params` (16-byte slots, padded to a multiple of 4 x the
    world size so every rank's shard is aligned), each parameter becoming a view into it.
    Returns (buffer, each parameter's offset, elements per shard)."""
    layout = kernels.BucketLayout([p.numel() for p in params], "float32")
    p = world.size
    padded = -(-max(layout.total, 1) // (4 * p)) * 4 * p
    flat = torch.zeros(padded, dtype=torch.float32, device=params[0].device)
    with torch.no_grad():
        for param, off in zip(params, layout.offsets):
            n = param.numel()
            flat[off: off + n].copy_(param.detach().reshape(-1))
            param.data = flat[off: off + n].view_as(param)
    return flat, layout.offsets, padded // p


class FlatGroup:
    """One optimizer group's parameters as views into one flat, shardable buffer."""

    def __init__(self, params, world, options):
        self.params = params
        self.options = options                       # the group's optimizer options (lr, wd...)
        device = params[0].device
        self.flat, self.offsets, self.shard = flatten(params, world)
        lo = world.rank * self.shard
        self.master = torch.nn.Parameter(self.flat[lo: lo + self.shard])   # a view: updates land
        self.master.grad = torch.zeros(self.shard, dtype=torch.float32, device=device)
        self.grad_flat = None                        # stage 1: the packed full gradient

    def counts_in_shards(self, start, stop, world):
        """How many elements of flat range [start, stop) fall in each rank's shard, and where
        this rank's part lands in its shard."""
        counts = [max(0, min(stop, (r + 1) * self.shard) - max(start, r * self.shard))
                  for r in range(world.size)]
        lo = world.rank * self.shard
        return counts, max(start, lo) - lo


def reduce_dtype_of(name, rank):
    if name not in SHORT:
        raise ValueError(f"rank {rank}: reduce dtype {name!r}: choose from {', '.join(SHORT)}")
    return torch_dtype(name)


class ShardedGradients(NoSync):
    """What the stages share: the accumulation switch, one reused packing buffer, and the
    reduce-scatter in the reduction dtype (gradients travel and are summed in it; the shard's
    gradient is float32 again)."""

    _bucket_buffer = None
    _wire_buffer = None
    reduce_dtype = torch.float32

    def _scratch(self, count, device):
        """One reused buffer for the gradients being reduce-scattered (one bucket or unit at a
        time), zeroed where the padding between slots must contribute nothing."""
        buf = self._bucket_buffer
        if buf is None or buf.numel() < count or buf.dtype != self.reduce_dtype:
            self._bucket_buffer = buf = torch.zeros(count, dtype=self.reduce_dtype, device=device)
        flat = buf[:count]
        flat.zero_()
        return flat

    def _reduce_scatter_into(self, comm, flat, shard_grad, counts):
        """Reduce-scatter `flat` (the reduction dtype) so this rank's part lands in shard_grad
        (float32): directly when the dtypes agree, else through a temporary of the wire dtype."""
        if flat.dtype == shard_grad.dtype:
            comm.reduce_scatter_v(flat, shard_grad, counts)
            return
        n = shard_grad.numel()
        if self._wire_buffer is None or self._wire_buffer.numel() < n \
                or self._wire_buffer.dtype != flat.dtype:
            self._wire_buffer = torch.empty(n, dtype=flat.dtype, device=flat.device)
        wire = self._wire_buffer[:n]          # reused, like the packing buffer (same stream)
        comm.reduce_scatter_v(flat, wire, counts)
        shard_grad.copy_(wire)


class Zero(ShardedGradients):
    def __init__(self, model, world, make_optimizer, stage=1, groups=None, bucket_mb=25.0,
                 reduce_dtype="fp32"):
        if stage not in (1, 2):
            raise ValueError(f"ZeRO stage {stage}: stages 1 and 2 here (3: apply_zero3)")
        self.world = world
        self.reduce_dtype = reduce_dtype_of(reduce_dtype, world.rank)
        self.stage = stage
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            if p.dtype != torch.float32:
                raise TypeError(f"rank {world.rank}: ZeRO keeps float32 parameters; got {p.dtype}")
        groups = groups or [{"params": trainable}]
        self.groups = [FlatGroup(list(g["params"]), world,
                                 {k: v for k, v in g.items() if k != "params"})
                       for g in groups if len(g["params"])]
        self.optimizer = make_optimizer([dict(g.options, params=[g.master]) for g in self.groups])
        self._sync = True
        self._hooks = []
        self._reduced = set()            # stage 2: buckets reduce-scattered since zero_grad
        self._bucket_buffer = None
        self.stream, self.comm = None, world
        if stage == 2:
            self._plan_stage2(bucket_mb)
            device = self.groups[0].flat.device
            if device.type == "cuda":    # reduce-scatters beside backward, on their own stream
                self.stream, self.comm = torch.cuda.Stream(device), overlapping_comm(world)

    # ------------------------------------------------------------------------------ stage 2
    def _plan_stage2(self, bucket_mb):
        """Buckets within each group (reverse order, like data parallel); each is a contiguous
        range of the group's flat buffer."""
        self._bucket_of = {}
        self._buckets = []
        cap = max(1, int(bucket_mb * 2**20))
        for g in self.groups:
            index = {id(p): i for i, p in enumerate(g.params)}
            for spec in plan_buckets(g.params, cap, cap, "float32"):
                ids = sorted(index[id(p)] for p in spec.params)           # flat order
                params = [g.params[i] for i in ids]
                start = g.offsets[ids[0]]
                stop = g.offsets[ids[-1]] + params[-1].numel()
                bucket = {"index": len(self._buckets), "group": g, "params": params,
                          "start": start, "stop": stop,
                          "pending": len(params), "offsets": [g.offsets[i] - start for i in ids]}
                self._buckets.append(bucket)
                for p in params:
                    self._bucket_of[id(p)] = bucket
                    self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def _grad_ready(self, param):
        if not self._sync:
            return
        bucket = self._bucket_of[id(param)]
        bucket["pending"] -= 1
        if bucket["pending"] == 0:
            self._reduce_scatter_bucket(bucket)
            bucket["pending"] = len(bucket["params"])
            self._reduced.add(bucket["index"])

    def _reduce_scatter_bucket(self, bucket):
        """Pack the bucket's gradients and reduce-scatter them into the owners' shards; on a
        GPU on the communication stream, after the backward queued so far, so the rest of
        backward goes on meanwhile."""
        g, world = bucket["group"], self.world
        start, stop = bucket["start"], bucket["stop"]
        with on_stream(self.stream):
            flat = self._scratch(stop - start, g.flat.device)
            kernels.PackPlan([p.grad for p in bucket["params"]], flat, bucket["offsets"]).pack(
                scale=1.0 / world.size)
            counts, at = g.counts_in_shards(start, stop, world)
            mine = g.master.grad[at: at + counts[world.rank]]
            self._reduce_scatter_into(self.comm, flat, mine, counts)
            for p in bucket["params"]:
                if self.stream is not None:
                    p.grad.record_stream(self.stream)   # read there: not reused before it is
                p.grad = None               # the gradient memory this rank does not own

    # --------------------------------------------------------------------------- the step
    def synchronize(self):
        """Stage 1: reduce-scatter the whole gradient now (stage 2 did it during backward, and
        here checks that every bucket was reduced: a parameter without a gradient would leave
        its bucket waiting, and the ranks would disagree)."""
        if self.stage == 2:
            missing = [b for b in self._buckets if b["index"] not in self._reduced]
            if missing:
                raise RuntimeError(f"rank {self.world.rank}: ZeRO-2: {len(missing)} gradient "
                                   f"bucket(s) never completed: a trainable parameter got no "
                                   f"gradient in backward")
            join(self.stream)
            return
        world = self.world
        for g in self.groups:
            if g.grad_flat is None:
                g.grad_flat = torch.zeros_like(g.flat, dtype=self.reduce_dtype)
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in g.params]
            kernels.PackPlan(grads, g.grad_flat, g.offsets).pack(scale=1.0 / world.size)
            self._reduce_scatter_into(world, g.grad_flat, g.master.grad, [g.shard] * world.size)

    def step(self):
        """Update this rank's shard, then gather every shard into every rank's parameters."""
        join(self.stream)
        self.optimizer.step()
        world = self.world
        for g in self.groups:
            lo = world.rank * g.shard
            world.all_gather(g.flat[lo: lo + g.shard], g.flat)

    def zero_grad(self):
        join(self.stream)
        self._reduced = set()
        for g in self.groups:
            g.master.grad.zero_()
            for p in g.params:
                p.grad = None

    def close(self):
        for h in self._hooks:
            h.remove()


def apply_zero(model, world, make_optimizer, stage=1, groups=None, bucket_mb=25.0,
               broadcast=True, reduce_dtype="fp32"):
    """Broadcast rank 0's weights, shard the optimizer (stage 1) and the gradients (stage 2).
    make_optimizer(param_groups) builds the optimizer over this rank's flat shards; `groups`
    are the model's parameter groups with their options (default: one group); reduce_dtype
    (fp32 | bf16 | fp16) is the dtype gradients are reduce-scattered in."""
    if broadcast:
        broadcast_parameters(model, world)
    return Zero(model, world, make_optimizer, stage, groups, bucket_mb, reduce_dtype)
