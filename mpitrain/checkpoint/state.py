"""The canonical form of a training state, the same whatever the parallelism that produced it.

Parameters of each optimizer group, in the group's order, laid end to end in one flat float32
vector (16-byte aligned slots: kernels.BucketLayout), and each optimizer state tensor
(exp_avg, exp_avg_sq, momentum_buffer) laid out the same way. Data parallel holds all of it on
every rank; ZeRO holds one slice per rank. Saving writes slices of these vectors, loading
rebuilds what this rank needs from them, so any world size and any stage can read what any
other wrote.

ZeRO-3 keeps each block's parameters and state in shards of per-block flat buffers, a layout
of its own: save and load run with the whole model gathered (`zero.gathered()`, see
checkpoint/__init__.py), so its parameters go the data-parallel way, and its optimizer state is
all-gathered from the shards into the canonical vectors here (one vector at a time).
"""
import torch

from .. import kernels
from ..parallel.zero import Zero
from ..parallel.zero3 import Zero3

STATE_KEYS = ("exp_avg", "exp_avg_sq", "momentum_buffer")


def group_layout(params):
    layout = kernels.BucketLayout([p.numel() for p in params], "float32")
    return layout.offsets, layout.total


def describe_groups(groups, names):
    """What the manifest records of each group: its parameters (name, shape, offset, count)."""
    out = []
    for params in groups:
        offsets, total = group_layout(params)
        out.append({"total": total, "params": [
            {"name": names[id(p)], "shape": list(p.shape), "offset": off, "numel": p.numel()}
            for p, off in zip(params, offsets)]})
    return out


def owned_ranges(engine, groups, world):
    """The [lo, hi) of each group's canonical vector this rank saves: its ZeRO shard, or under
    data parallel an even split (every rank holds everything; each writes a part)."""
    ranges = []
    for gi, params in enumerate(groups):
        _, total = group_layout(params)
        if isinstance(engine, Zero):
            shard = engine.groups[gi].shard
            lo, hi = world.rank * shard, min(total, (world.rank + 1) * shard)
        else:
            per, extra = divmod(total, world.size)
            lo = world.rank * per + min(world.rank, extra)
            hi = lo + per + (1 if world.rank < extra else 0)
        ranges.append((lo, max(lo, hi)))
    return ranges


def local_slices(engine, optimizer, groups, ranges):
    """{f"g{i}.param"|f"g{i}.{key}": CPU tensor of this rank's slice}, and the optimizer step."""
    out, step = {}, 0.0
    for gi, (params, (lo, hi)) in enumerate(zip(groups, ranges)):
        offsets, total = group_layout(params)
        if isinstance(engine, Zero):
            g = engine.groups[gi]
            base = engine.world.rank * g.shard
            out[f"g{gi}.param"] = g.flat[lo:hi].detach().cpu().clone()
            state = optimizer.state.get(g.master, {})
            for key in STATE_KEYS:
                if key in state:
                    out[f"g{gi}.{key}"] = state[key][lo - base: hi - base].detach().cpu().clone()
            step = float(state.get("step", step)) if state else step
            continue
        flat = torch.zeros(total)
        for p, off in zip(params, offsets):
            flat[off: off + p.numel()] = p.detach().reshape(-1).cpu()
        out[f"g{gi}.param"] = flat[lo:hi].clone()
        for key in STATE_KEYS:
            if any(key in optimizer.state.get(p, {}) for p in params):
                flat = torch.zeros(total)
                for p, off in zip(params, offsets):
                    if key in optimizer.state.get(p, {}):
                        flat[off: off + p.numel()] = optimizer.state[p][key].detach().reshape(-1).cpu()
                out[f"g{gi}.{key}"] = flat[lo:hi].clone()
        for p in params:
            if "step" in optimizer.state.get(p, {}):
                step = float(optimizer.state[p]["step"])
    if isinstance(engine, Zero3):
        vectors, step = zero3_state_vectors(engine, optimizer, groups)
        for name, vector in vectors.items():
            lo, hi = ranges[int(name.split(".")[0][1:])]
            out[name] = vector[lo:hi].clone()
    return out, step


def _positions(groups):
    """id(parameter) -> (group, offset in the group's canonical vector); each group's length."""
    where, totals = {}, []
    for gi, params in enumerate(groups):
        offsets, total = group_layout(params)
        totals.append(total)
        where.update((id(p), (gi, off)) for p, off in zip(params, offsets))
    return where, totals


def zero3_state_vectors(engine, optimizer, groups):
    """ZeRO-3: {"g{i}.{key}": canonical vector} of the optimizer state, all-gathered from every
    rank's shards (collective), and the optimizer step."""
    where, totals = _positions(groups)
    out, step = {}, 0.0
    for f in engine.flat_shards():
        state = optimizer.state.get(f.master, {})
        if "step" in state:
            step = float(state["step"])
        for key in STATE_KEYS:
            if key not in state:
                continue
            full = torch.empty(f.padded, dtype=torch.float32, device=f.master.device)
            engine.world.all_gather(state[key].detach(), full)
            full = full.cpu()
            for p, off, shape in zip(f.params, f.offsets, f.shapes):
                gi, goff = where[id(p)]
                vector = out.setdefault(f"g{gi}.{key}", torch.zeros(totals[gi]))
                vector[goff: goff + shape.numel()] = full[off: off + shape.numel()]
    return out, step


def _restore_zero3(engine, optimizer, groups, full, step):
    """The shards of every flat buffer, parameters (from the gathered model) and state."""
    where, _ = _positions(groups)
    rank = engine.world.rank
    for f in engine.flat_shards():
        with torch.no_grad():
            f.master.copy_(f.full[rank * f.shard: (rank + 1) * f.shard])
        gi = where[id(f.params[0])][0]
        state = {}
        for key in STATE_KEYS:
            if f"g{gi}.{key}" not in full:
                continue
            padded = torch.zeros(f.padded)
            for p, off, shape in zip(f.params, f.offsets, f.shapes):
                goff = where[id(p)][1]
                padded[off: off + shape.numel()] = full[f"g{gi}.{key}"][goff: goff + shape.numel()]
            state[key] = padded[rank * f.shard: (rank + 1) * f.shard].to(f.master.device)
        if state:
            _put_step(state, optimizer, f.master, step)
            optimizer.state[f.master] = state


def restore(engine, optimizer, groups, full, step):
    """Put the canonical vectors `full` ({"g0.param": tensor of total, ...}) back into the
    model's parameters and this rank's optimizer state."""
    for gi, params in enumerate(groups):
        offsets, total = group_layout(params)
        with torch.no_grad():
            for p, off in zip(params, offsets):
                p.copy_(full[f"g{gi}.param"][off: off + p.numel()].view_as(p))
        keys = [k for k in STATE_KEYS if f"g{gi}.{k}" in full]
        if not keys or isinstance(engine, Zero3):
            continue
        if isinstance(engine, Zero):
            g = engine.groups[gi]
            lo = engine.world.rank * g.shard
            state = {}
            for key in keys:
                padded = torch.zeros(g.flat.numel())
                padded[:total] = full[f"g{gi}.{key}"]
                state[key] = padded[lo: lo + g.shard].to(g.flat.device)
            _put_step(state, optimizer, g.master, step)
            optimizer.state[g.master] = state
            continue
        for p, off in zip(params, offsets):
            state = {key: full[f"g{gi}.{key}"][off: off + p.numel()].view_as(p).to(p.device).clone()
                     for key in keys}
            _put_step(state, optimizer, p, step)
            optimizer.state[p] = state


    if isinstance(engine, Zero3):
        _restore_zero3(engine, optimizer, groups, full, step)


def _put_step(state, optimizer, param, step):
    if isinstance(optimizer, torch.optim.AdamW):
        fused = any(g.get("fused") or g.get("capturable") for g in optimizer.param_groups)
        state["step"] = torch.tensor(step, dtype=torch.float32,
                                     device=param.device if fused else "cpu")
