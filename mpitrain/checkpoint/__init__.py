"""Checkpoints that resume at any world size and any parallelism (dp, zero1, zero2, zero3).

    save(root, step, model, engine, optimizer, groups, world, run_id, extra={...}, keep=3)
    info = load(root, model, engine, optimizer, groups, world)   # newest valid, or None

Each rank writes its slice of the canonical state (state.py); rank 0 writes the manifest last
(store.py). Every checkpoint carries the id of the run that wrote it: pruning deletes only the
run's own, and a fresh run refuses a directory that holds another run's (`other_runs`).
`python -m mpitrain.checkpoint consolidate DIR OUT` writes one plain state dict (export.py:
.safetensors or .pt, with the model card evaluate and predict read).
"""
import contextlib

import torch

from ..parallel.zero3 import Zero3
from .export import consolidate, read_weights
from .state import describe_groups, local_slices, owned_ranges, restore
from .store import (CheckpointError, assemble, prune, read_manifest, read_shards, run_of,
                    step_dir, valid_checkpoints, write_manifest, write_run_id, write_shard)

__all__ = ["save", "load", "consolidate", "read_weights", "other_runs", "CheckpointError"]


def _names(model):
    return {id(p): n for n, p in model.named_parameters()}


def save(root, step, model, engine, optimizer, groups, world, run_id, extra=None, rng=None,
         keep=3):
    """Collective: every rank writes its shard, then rank 0 the manifest; returns the directory.
    Every wait (the gather of the shard entries, the barrier) is under the watchdog, so a rank
    stalled in its write ends the job at the timeout, named."""
    directory = step_dir(root, step)
    if world.rank == 0:
        write_run_id(directory, run_id)
    with _whole(engine):
        ranges = owned_ranges(engine, groups, world)
        slices, opt_step = local_slices(engine, optimizer, groups, ranges)
        described = describe_groups(groups, _names(model))
    entry = write_shard(directory, world.rank, {"ranges": ranges, "slices": slices, "rng": rng})
    entries = world.gather_object(entry, root=0)
    if world.rank == 0:
        write_manifest(directory, {"step": step, "optimizer_step": opt_step, "run_id": run_id,
                                   "world_size": world.size, "groups": described,
                                   "shards": entries, "extra": extra or {}})
        prune(root, keep, run_id)
    world.barrier()
    return directory


def other_runs(root, run_id=None):
    """{run id: [step directories]} of the valid checkpoints under root not written by run_id
    (None: every run's). A run whose id is unknown (older checkpoints) counts as another's."""
    runs = {}
    for d in valid_checkpoints(root):
        owner = run_of(d)
        if run_id is None or owner != run_id:
            runs.setdefault(owner or "unknown", []).append(d.name)
    return runs


def load(root, model, engine, optimizer, groups, world):
    """Restore the newest usable checkpoint under root into model and optimizer (any world size,
    any stage). A checkpoint whose manifest or shards are damaged is skipped for the next older
    one; a model that does not match is refused (every older one would not match either).
    Returns {"step", "extra", "run_id", "directory", "skipped": [(directory, why)], "rng" (this
    rank's, when the world size matches)}, or None when none is usable ("skipped" then lost)."""
    skipped = []
    for directory, manifest, payloads in newest_usable(root, skipped):
        if "diloco" in manifest:
            raise CheckpointError(f"{directory}: saved by --parallel diloco; resume it with "
                                  f"--parallel diloco")
        with _whole(engine):
            _check_model(manifest, groups, _names(model), directory)
            restore(engine, optimizer, groups, assemble(manifest, payloads),
                    manifest["optimizer_step"])
        same_world = manifest["world_size"] == world.size
        return {"step": manifest["step"], "extra": manifest["extra"], "directory": str(directory),
                "run_id": manifest.get("run_id"), "skipped": skipped,
                "rng": payloads[world.rank]["rng"] if same_world else None}
    return None


def newest_usable(root, skipped):
    """(directory, manifest, payloads) of each checkpoint under root, newest first, whose
    manifest and shards read back intact; the damaged ones go into `skipped` as (directory,
    why). When every one was damaged: CheckpointError listing why."""
    for directory in reversed(valid_checkpoints(root)):
        try:
            manifest = read_manifest(directory)
            payloads = read_shards(directory, manifest)
        except CheckpointError as exc:
            skipped.append((str(directory), str(exc)))
            continue
        yield directory, manifest, payloads
    if skipped:
        raise CheckpointError("no usable checkpoint: " + "; ".join(why for _, why in skipped))


def _whole(engine):
    """ZeRO-3's parameters are empty between steps: gather the whole model while its state is
    saved or restored (the memory of one full copy, for that moment)."""
    return engine.gathered() if isinstance(engine, Zero3) else contextlib.nullcontext()


def _check_model(manifest, groups, names, directory):
    saved = describe_groups(groups, names)
    if len(saved) != len(manifest["groups"]):
        raise CheckpointError(f"{directory}: saved with {len(manifest['groups'])} parameter "
                              f"groups, this model has {len(saved)}")
    for gi, (mine, theirs) in enumerate(zip(saved, manifest["groups"])):
        for a, b in zip(mine["params"], theirs["params"]):
            if (a["name"], a["shape"]) != (b["name"], b["shape"]):
                raise CheckpointError(f"{directory}: a different model: parameter {b['name']} "
                                      f"{b['shape']} in the checkpoint, {a['name']} {a['shape']} here")
        if len(mine["params"]) != len(theirs["params"]):
            raise CheckpointError(f"{directory}: a different model: group {gi} has "
                                  f"{len(theirs['params'])} parameters saved, {len(mine['params'])} here")
