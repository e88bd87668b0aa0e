"""ZeRO stage 3: the parameters are sharded too, and a block's full parameters exist only while
it computes.

    zero = apply_zero3(model, world, make_optimizer, units=model.blocks, window=1)
    loss = F.cross_entropy(model(x), y); loss.backward(); zero.synchronize()
    zero.step(); zero.zero_grad()

Units. Each module of `units` (a ViT's transformer blocks) is one unit; every other parameter
(patch embedding, cls token, positions, final norm, head) forms the root unit. A unit's
parameters of each optimizer group live in one flat float32 buffer padded to a multiple of 4 x
the world size; rank r keeps only slice r of it (its shard: the optimizer's parameter and
state), and the buffer's memory exists only while the unit is gathered.

A step, for each block unit k:
  forward   a pre-hook all-gathers unit k (and the next `window` units, gathered ahead), the
            block runs, a post-hook frees it again (unless keep_between=True keeps every unit
            from forward to backward: more memory, one all-gather fewer per unit);
  backward  a hook on the block's output fires when its gradient arrives, just before the
            block's backward: it all-gathers unit k again (and the `window` units before it);
            when every parameter of the unit has its gradient (post-accumulate-grad hooks), the
            gradients are packed, reduce-scattered (averaged) into this rank's shard gradient,
            released, and the unit is freed.
The root unit is gathered at the first forward and kept until the optimizer step. `step()`
updates the shards and frees every unit: the next forward gathers the new values.

Freeing swaps every parameter's data for an empty tensor (shape (0,)) and drops the flat
buffer; gathering makes a new one and points the parameters back into it. Autograd keeps the
parameters themselves for backward, not copies, so it sees whatever they hold when backward
runs: the unit gathered again just before. Between steps a parameter is empty: read the whole
model inside `with zero.gathered():`. Checked against one process in tests/mpi/test_zero3.py.
"""
import contextlib

import torch

from .. import kernels
from .replicate import broadcast_parameters
from .zero import ShardedGradients, flatten


class FlatShard:
    """One unit's parameters of one optimizer group: a flat gathered buffer and this rank's
    shard of it."""

    def __init__(self, params, world):
        self.params = params
        self.world = world
        device = params[0].device
        self.full, self.offsets, self.shard = flatten(params, world)
        self.padded = self.full.numel()
        lo = world.rank * self.shard
        self.master = torch.nn.Parameter(self.full[lo: lo + self.shard].clone())
        self.master.grad = torch.zeros(self.shard, dtype=torch.float32, device=device)
        self.shapes = [param.shape for param in params]
        self._empty = torch.empty(0, dtype=torch.float32, device=device)
        self.gathered = True

    def gather(self):
        """A fresh full buffer, all-gathered from the shards; the parameters become its views
        (Parameter.data is swapped, so autograd's references to the parameters see it)."""
        if not self.gathered:
            self.full = torch.empty(self.padded, dtype=torch.float32, device=self._empty.device)
            self.world.all_gather(self.master.detach(), self.full)
            for param, off, shape in zip(self.params, self.offsets, self.shapes):
                param.data = self.full[off: off + shape.numel()].view(shape)
            self.gathered = True

    def free(self):
        """Drop the full buffer: the parameters become empty until the next gather."""
        if self.gathered:
            for param in self.params:
                param.data = self._empty
            self.full = None
            self.gathered = False


class Unit:
    def __init__(self, name, flats):
        self.name = name
        self.flats = flats
        self.params = [p for f in flats for p in f.params]
        self.pending = len(self.params)

    def gather(self):
        for f in self.flats:
            f.gather()

    def free(self):
        for f in self.flats:
            f.free()


class Zero3(ShardedGradients):
    def __init__(self, model, world, make_optimizer, units, groups=None, window=1,
                 keep_between=False):
        if window < 0:
            raise ValueError(f"rank {world.rank}: ZeRO-3 window must be >= 0, got {window}")
        self.world = world
        self.window = int(window)
        self.keep_between = bool(keep_between)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            if p.dtype != torch.float32:
                raise TypeError(f"rank {world.rank}: ZeRO keeps float32 parameters; got {p.dtype}")
        groups = groups or [{"params": trainable}]
        group_of = {id(p): i for i, g in enumerate(groups) for p in g["params"]}
        options = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        in_units = set()
        self.units = []
        for i, module in enumerate(units):
            params = [p for p in module.parameters() if p.requires_grad]
            in_units.update(id(p) for p in params)
            self.units.append(self._unit(f"unit {i}", params, group_of))
        root = [p for p in trainable if id(p) not in in_units]
        self.root = self._unit("root", root, group_of) if root else None
        everything = self.units + ([self.root] if self.root else [])
        for unit in everything:
            unit.free()                                 # only shards between steps
        shards = {}
        for unit in everything:
            for f in unit.flats:
                shards.setdefault(group_of[id(f.params[0])], []).append(f.master)
        self.optimizer = make_optimizer([dict(options[g], params=masters)
                                         for g, masters in sorted(shards.items())])
        self._unit_of = {id(p): u for u in everything for p in u.params}
        self._reduced = set()
        self.before_reduce_scatter = []     # callables(unit): observers (the memory report's)
        self._hooks = [model.register_forward_pre_hook(self._root_forward)]
        for k, module in enumerate(units):
            self._hooks.append(module.register_forward_pre_hook(
                lambda mod, args, k=k: self._before_forward(k)))
            self._hooks.append(module.register_forward_hook(
                lambda mod, args, out, k=k: self._after_forward(k, out)))
        for unit in everything:
            for p in unit.params:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def _unit(self, name, params, group_of):
        """One flat shard per optimizer group among the unit's parameters."""
        by_group = {}
        for p in params:
            by_group.setdefault(group_of[id(p)], []).append(p)
        return Unit(name, [FlatShard(ps, self.world) for _, ps in sorted(by_group.items())])

    # --------------------------------------------------------------------------- the hooks
    def _root_forward(self, module, args):
        if self.root is not None:
            self.root.gather()

    def _before_forward(self, k):
        for j in range(k, min(len(self.units), k + 1 + self.window)):
            self.units[j].gather()

    def _after_forward(self, k, out):
        if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad, k=k: self._before_backward(k))
            if self.keep_between:
                return
        self.units[k].free()

    def _before_backward(self, k):
        for j in range(k, max(-1, k - 1 - self.window), -1):
            self.units[j].gather()

    def _grad_ready(self, param):
        if not self._sync:
            return
        unit = self._unit_of[id(param)]
        unit.pending -= 1
        if unit.pending == 0:
            unit.pending = len(unit.params)
            self._reduce_scatter(unit)
            self._reduced.add(unit.name)
            if unit is not self.root:
                unit.free()

    def _reduce_scatter(self, unit):
        for observe in self.before_reduce_scatter:
            observe(unit)
        world = self.world
        for f in unit.flats:
            flat = self._scratch(f.padded, f.master.device)
            kernels.PackPlan([p.grad for p in f.params], flat, f.offsets).pack(scale=1.0 / world.size)
            world.reduce_scatter(flat, f.master.grad)
            for p in f.params:
                p.grad = None                          # every rank keeps its shard's only

    # ----------------------------------------------------------------------------- the step
    def synchronize(self):
        names = [u.name for u in self.units + ([self.root] if self.root else [])]
        missing = [n for n in names if n not in self._reduced]
        if missing:
            raise RuntimeError(f"rank {self.world.rank}: ZeRO-3: the gradients of {missing} "
                               f"never completed: a trainable parameter got no gradient")

    def step(self):
        self.optimizer.step()
        for unit in self.units + ([self.root] if self.root else []):
            unit.free()                                # stale: gathered again when needed

    def zero_grad(self):
        self._reduced = set()
        for unit in self.units + ([self.root] if self.root else []):
            for f in unit.flats:
                f.master.grad.zero_()
                for p in f.params:
                    p.grad = None

    def flat_shards(self):
        """Every flat buffer of every unit, root last."""
        return [f for u in self.units + ([self.root] if self.root else []) for f in u.flats]

    @contextlib.contextmanager
    def gathered(self):
        """Every parameter materialized (to read or save the whole model); freed on exit."""
        everything = self.units + ([self.root] if self.root else [])
        for unit in everything:
            unit.gather()
        try:
            yield
        finally:
            for unit in everything:
                unit.free()

    def close(self):
        for h in self._hooks:
            h.remove()


def apply_zero3(model, world, make_optimizer, units, groups=None, window=1, keep_between=False,
                broadcast=True):
    """Broadcast rank 0's weights, then shard everything (see the module docstring). `units`:
    the modules gathered one at a time (a ViT's blocks)."""
    if broadcast:
        broadcast_parameters(model, world)
    return Zero3(model, world, make_optimizer, list(units), groups, window, keep_between)
