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

The parameters are views of their unit's flat buffer for good. Freeing shrinks the buffer's
storage to nothing (its memory goes back to the allocator); gathering gives the same storage
its memory back and all-gathers into it. Whatever autograd saved in forward (the parameters, or
views of them such as a transposed weight) shares that storage, so it is released with the
unit after forward and sees the gathered values again when backward runs: the unit is gathered
just before. (Dropping the buffer instead would leave the saved views holding it alive from
forward to backward: every block's weights at once.) Between steps a parameter's storage is
empty: read the whole model inside `with zero.gathered():` (float32, whatever param_dtype).
Checked against one process in tests/mpi/test_zero3.py.

On a GPU the collectives run on a stream of their own: a unit's all-gather waits for the
compute queued so far (its memory may be reused), and the compute waits for it (an event)
only where the unit is used; the gradients are packed and reduce-scattered there too, after
the backward queued so far. param_dtype="bf16" gathers and computes in bfloat16 (the shards,
the optimizer and the update stay float32); reduce_dtype sets the reduce-scatter's dtype.
"""
import contextlib

import torch

from ..precision import torch_dtype
from .. import kernels
from .replicate import broadcast_parameters
from .streams import join, on_stream, overlapping_comm
from .zero import ShardedGradients, flatten, reduce_dtype_of

PARAM_DTYPES = ("fp32", "bf16")


class FlatShard:
    """One unit's parameters of one optimizer group: a flat gathered buffer (of the parameter
    dtype) whose views the parameters are, and this rank's float32 shard of it."""

    def __init__(self, params, world, dtype=torch.float32):
        self.params = params
        self.world = world
        full, self.offsets, self.shard = flatten(params, world)
        self.padded = full.numel()
        lo = world.rank * self.shard
        self.master = torch.nn.Parameter(full[lo: lo + self.shard].clone())
        self.master.grad = None          # made by the step's reduce-scatter (see Zero3.zero_grad)
        self.shapes = [param.shape for param in params]
        self.full = full if dtype == torch.float32 else full.to(dtype)
        self._empty = torch.empty(0, dtype=torch.float32, device=full.device)
        self._bind(self.full)
        self.gathered = True

    def _bind(self, buffer):
        """The parameters become views of `buffer`."""
        for param, off, shape in zip(self.params, self.offsets, self.shapes):
            param.data = buffer[off: off + shape.numel()].view(shape)
        self.bound = True

    def park(self):
        """Between steps: released, and the parameters empty tensors (shape (0,)), so that
        reading one is an error, not a read of released memory."""
        self.free()
        for param in self.params:
            param.data = self._empty
        self.bound = False

    def gather(self, comm, stream=None):
        """Give the buffer its memory back and all-gather the shards into it (cast first when
        the buffer is 16-bit). With a CUDA `stream`, the all-gather runs there, after the work
        queued so far on the current stream (where the memory is allocated)."""
        if self.gathered:
            return
        full = self.full
        full.untyped_storage().resize_(full.numel() * full.element_size())
        if not self.bound:
            self._bind(full)
        with on_stream(stream):
            shard = self.master.detach()
            # host memory reaches the collectives as numpy, and torch then marks the storage
            # not resizable: on the CPU gather into a temporary and copy
            into = full if full.is_cuda else torch.empty_like(full)
            comm.all_gather(shard if full.dtype == shard.dtype else shard.to(full.dtype), into)
            if into is not full:
                full.copy_(into)
        self.gathered = True

    def free(self):
        """Release the buffer's memory (its storage shrinks to nothing; the parameters stay its
        views, so whatever autograd saved of them is refilled by the next gather)."""
        if not self.gathered:
            return
        try:
            self.full.untyped_storage().resize_(0)
        except RuntimeError:          # storage shared with numpy (torch forbids the resize):
            self.full = torch.empty(self.padded, dtype=self.full.dtype, device=self.full.device)
            self._bind(self.full)     # new views of a new buffer; the old one lives while used
            self.full.untyped_storage().resize_(0)
        self.gathered = False

    @contextlib.contextmanager
    def float32(self, comm):
        """The parameters as float32 views of a freshly gathered float32 buffer (which `full`
        names meanwhile), whatever the compute dtype; on exit they are views of the released
        compute buffer again."""
        self.free()
        compute = self.full
        self.full = torch.empty(self.padded, dtype=torch.float32, device=compute.device)
        comm.all_gather(self.master.detach(), self.full)
        self._bind(self.full)
        try:
            yield
        finally:
            self.full = compute
            self.park()


class Unit:
    def __init__(self, name, flats):
        self.name = name
        self.flats = flats
        self.params = [p for f in flats for p in f.params]
        self.pending = len(self.params)
        self.ready = None               # CUDA: the event its latest all-gather recorded

    def gather(self, comm, stream=None):
        if all(f.gathered for f in self.flats):
            return
        for f in self.flats:
            f.gather(comm, stream)
        if stream is not None:
            self.ready = stream.record_event()

    def wait(self):
        """The current stream waits for the unit's all-gather (a GPU-side wait)."""
        if self.ready is not None:
            torch.cuda.current_stream().wait_event(self.ready)
            self.ready = None

    def free(self):
        self.wait()              # a prefetched unit never used: its gather must end before reuse
        for f in self.flats:
            f.free()

    def park(self):
        self.wait()
        for f in self.flats:
            f.park()


class Zero3(ShardedGradients):
    def __init__(self, model, world, make_optimizer, units, *, groups=None, window=1,
                 keep_between=False, param_dtype="fp32", reduce_dtype="fp32"):
        if window < 0:
            raise ValueError(f"rank {world.rank}: ZeRO-3 window must be >= 0, got {window}")
        if param_dtype not in PARAM_DTYPES:
            raise ValueError(f"rank {world.rank}: ZeRO-3 param dtype {param_dtype!r}: choose "
                             f"from {', '.join(PARAM_DTYPES)}")
        self.world = world
        self.window = int(window)
        self.keep_between = bool(keep_between)
        self.param_dtype = torch_dtype(param_dtype)
        self.reduce_dtype = reduce_dtype_of(reduce_dtype, world.rank)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            if p.dtype != torch.float32:
                raise TypeError(f"rank {world.rank}: ZeRO keeps float32 parameters; got {p.dtype}")
        device = trainable[0].device
        # On a GPU the collectives run on their own stream, beside the compute (the gathers
        # ahead of use overlap the blocks before; the reduce-scatters overlap the rest of
        # backward), through a communicator of their own whose peer kernels take few SMs.
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.comm = overlapping_comm(world) if self.stream is not None else world
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
            unit.park()                                 # only shards between steps
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
        return Unit(name, [FlatShard(ps, self.world, self.param_dtype)
                           for _, ps in sorted(by_group.items())])

    def _gather(self, unit):
        unit.gather(self.comm, self.stream)

    def _use(self, unit):
        """Gathered (if it is not yet) and ready for the current stream."""
        self._gather(unit)
        unit.wait()

    # --------------------------------------------------------------------------- the hooks
    def _root_forward(self, module, args):
        if self.root is not None:
            self._use(self.root)

    def _before_forward(self, k):
        for j in range(k, min(len(self.units), k + 1 + self.window)):
            self._gather(self.units[j])
        self.units[k].wait()

    def _after_forward(self, k, out):
        if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad, k=k: self._before_backward(k))
            if self.keep_between:
                return
        self.units[k].free()

    def _before_backward(self, k):
        for j in range(k, max(-1, k - 1 - self.window), -1):
            self._gather(self.units[j])
        self.units[k].wait()

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
        """Pack the unit's gradients (scaled by 1/world, in the reduction dtype) and
        reduce-scatter them into this rank's shard gradient; on a GPU both on the
        communication stream, after the backward queued so far."""
        for observe in self.before_reduce_scatter:
            observe(unit)
        for f in unit.flats:                    # on the compute stream, which the comm one follows
            if f.master.grad is None:
                f.master.grad = torch.empty(f.shard, dtype=torch.float32, device=f.master.device)
        stream = self.stream
        with on_stream(stream):
            for f in unit.flats:
                flat = self._scratch(f.padded, f.master.device)
                kernels.PackPlan([p.grad for p in f.params], flat, f.offsets).pack(
                    scale=1.0 / self.world.size)
                self._reduce_scatter_into(self.comm, flat, f.master.grad, [f.shard] * self.world.size)
                for p in f.params:
                    if stream is not None:
                        p.grad.record_stream(stream)    # read there: not reused before it is
                    p.grad = None                       # every rank keeps its shard's only

    # ----------------------------------------------------------------------------- the step
    def _join(self):
        """The current stream waits for every collective issued so far."""
        join(self.stream)

    def synchronize(self):
        names = [u.name for u in self.units + ([self.root] if self.root else [])]
        missing = [n for n in names if n not in self._reduced]
        if missing:
            raise RuntimeError(f"rank {self.world.rank}: ZeRO-3: the gradients of {missing} "
                               f"never completed: a trainable parameter got no gradient")
        self._join()

    def step(self):
        self._join()
        self.optimizer.step()
        for unit in self.units + ([self.root] if self.root else []):
            unit.park()                                # stale: gathered again when needed

    def zero_grad(self):
        self._join()
        self._reduced = set()
        for unit in self.units + ([self.root] if self.root else []):
            for f in unit.flats:
                # the shard gradients exist from a step's reduce-scatters to its optimizer step
                # only (the reduce-scatter writes them whole): forward, where activations peak,
                # runs without them (as FSDP2 with zero_grad(set_to_none=True))
                f.master.grad = None
                for p in f.params:
                    p.grad = None

    def flat_shards(self):
        """Every flat buffer of every unit, root last."""
        return [f for u in self.units + ([self.root] if self.root else []) for f in u.flats]

    @contextlib.contextmanager
    def gathered(self):
        """Every parameter materialized in float32 (to read or save the whole model); released
        on exit."""
        everything = self.units + ([self.root] if self.root else [])
        self._join()
        for unit in everything:
            unit.free()
        with contextlib.ExitStack() as stack:
            for f in self.flat_shards():
                stack.enter_context(f.float32(self.comm))
            yield

    def close(self):
        for h in self._hooks:
            h.remove()


def apply_zero3(model, world, make_optimizer, units, groups=None, window=1, keep_between=False,
                broadcast=True, param_dtype="fp32", reduce_dtype="fp32"):
    """Broadcast rank 0's weights, then shard everything (see the module docstring). `units`:
    the modules gathered one at a time (a ViT's blocks). param_dtype (fp32 | bf16): the dtype
    parameters are all-gathered in and computed with (the shards stay float32); reduce_dtype
    (fp32 | bf16 | fp16): the dtype gradients are reduce-scattered in."""
    if broadcast:
        broadcast_parameters(model, world)
    return Zero3(model, world, make_optimizer, list(units), groups=groups, window=window,
                 keep_between=keep_between, param_dtype=param_dtype, reduce_dtype=reduce_dtype)
