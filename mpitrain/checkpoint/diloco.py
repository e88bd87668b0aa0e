"""Checkpoints of --parallel diloco: every worker's inner state and the outer state, in the same
step directories, shards and manifest as every other checkpoint (store.py).

Each rank's shard holds
  - its part of its worker's inner state (parameters = that worker's theta_local, and the inner
    optimizer's state), cut as owned_ranges cuts it over the worker's ranks;
  - its shard of every fragment's theta_global and outer momentum, and of its worker's error
    feedback;
  - on each worker's first rank, the fragments whose exchange is still in flight (the new
    theta_global it will bring, the worker's theta_local at its start, the step it merges at):
    the save waits for those exchanges to arrive, but merges nothing early, so a resumed run
    continues exactly as the uninterrupted one.
Resuming with another number of workers, new worker j takes old worker j mod k_old's inner
state, error feedback and in-flight exchanges; theta_global and the momentum are the same in
every worker. Any world size: the inner state is re-cut over the new worker's ranks, the outer
shards over its new shard ranges.
"""
import torch

from . import _check_model, _names, newest_usable
from .state import describe_groups, local_slices, owned_ranges, restore
from .store import (CheckpointError, assemble, prune, step_dir, write_manifest, write_run_id,
                    write_shard)


def save(root, step, model, engine, groups, world, run_id, extra=None, rng=None, keep=3):
    directory = step_dir(root, step)
    if world.rank == 0:
        write_run_id(directory, run_id)
    pending = engine.settle()                       # in-flight exchanges, arrived, not merged
    ranges = owned_ranges(engine.inner, groups, engine.worker_comm)
    slices, opt_step = local_slices(engine.inner, engine.optimizer, groups, ranges)
    outer = {}
    for frag in engine.fragments:
        outer[f"f{frag.index}.theta"] = frag.theta.detach().cpu().clone()
        outer[f"f{frag.index}.momentum"] = frag.momentum.detach().cpu().clone()
        if frag.feedback is not None:
            outer[f"f{frag.index}.feedback"] = frag.feedback.residual.detach().cpu().clone()
    payload = {"worker": engine.worker, "ranges": ranges, "slices": slices, "rng": rng,
               "outer": outer, "outer_ranges": {f.index: (f.lo, f.hi) for f in engine.fragments},
               "pending": pending if engine.worker_comm.rank == 0 else None}
    entry = write_shard(directory, world.rank, payload)
    entries = world.gather_object(entry, root=0)
    if world.rank == 0:
        shape = {"workers": engine.workers, "fragments": len(engine.fragments),
                 "counts": [f.count for f in engine.fragments], "outer_dtype": engine.outer_dtype}
        write_manifest(directory, {"step": step, "optimizer_step": opt_step, "run_id": run_id,
                                   "world_size": world.size,
                                   "groups": describe_groups(groups, _names(model)),
                                   "shards": entries, "extra": extra or {}, "diloco": shape})
        prune(root, keep, run_id)
    world.barrier()
    return directory


def _whole(payloads, key, total):
    """One fragment's vector from the outer shards of one worker's ranks."""
    out = torch.zeros(total)
    covered = torch.zeros(total, dtype=torch.int32)
    index = int(key.split(".")[0][1:])
    for p in payloads:
        lo, hi = p["outer_ranges"][index]
        out[lo:hi] = p["outer"][key]
        covered[lo:hi] += 1
    if not bool((covered == 1).all()):
        raise CheckpointError(f"outer state {key}: the shards do not cover it exactly once")
    return out


def _check_shape(manifest, engine, directory):
    shape = manifest.get("diloco")
    if shape is None:
        raise CheckpointError(f"{directory}: saved by --parallel "
                              f"{manifest['extra'].get('config', {}).get('parallel', 'dp')}, not "
                              f"by --parallel diloco")
    counts = [f.count for f in engine.fragments]
    if shape["counts"] != counts:
        raise CheckpointError(f"{directory}: saved with {shape['fragments']} fragment(s) of "
                              f"{shape['counts']} parameters, this run has {len(counts)} of {counts}")
    if shape["outer_dtype"] != engine.outer_dtype and "fp32" in (shape["outer_dtype"],
                                                                 engine.outer_dtype):
        raise CheckpointError(f"{directory}: saved with --outer-dtype {shape['outer_dtype']}, "
                              f"this run has {engine.outer_dtype} (error feedback exists in "
                              f"only one of them)")
    return shape


def load(root, model, engine, groups, world):
    """The newest usable DiLoCo checkpoint under root, restored; the same answer as
    checkpoint.load (None when there is none)."""
    skipped = []
    for directory, manifest, payloads in newest_usable(root, skipped):
        shape = _check_shape(manifest, engine, directory)
        source = engine.worker % shape["workers"]
        mine = [p for p in payloads if p["worker"] == source]
        _check_model(manifest, groups, _names(model), directory)
        engine.drop_in_flight()
        restore(engine.inner, engine.optimizer, groups, assemble(manifest, mine),
                manifest["optimizer_step"])
        for frag in engine.fragments:
            for key, target in (("theta", frag.theta), ("momentum", frag.momentum)):
                whole = _whole(mine, f"f{frag.index}.{key}", frag.count)
                target.copy_(whole[frag.lo:frag.hi].to(target.device))
            if frag.feedback is not None:
                name = f"f{frag.index}.feedback"
                if name in mine[0]["outer"]:
                    whole = _whole(mine, name, frag.count)
                    frag.feedback.residual.copy_(whole[frag.lo:frag.hi].to(frag.theta.device))
        pending = next(p["pending"] for p in mine if p["pending"] is not None)
        engine.resume_in_flight(pending)
        same_world = manifest["world_size"] == world.size
        return {"step": manifest["step"], "extra": manifest["extra"], "directory": str(directory),
                "run_id": manifest.get("run_id"), "skipped": skipped,
                "rng": payloads[world.rank]["rng"] if same_world else None}
    return None
