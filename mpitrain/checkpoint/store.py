"""Checkpoints on disk: one shard file per rank, then a manifest that makes them valid.

    DIR/step-00000120/shard-00003.pt    rank 3's slices (+ its RNG states)
    DIR/step-00000120/manifest.json     written last, by rank 0: groups, parameter names,
                                        shapes, offsets, who saved which range, step, data
                                        position, config, and each shard's size and sha256

Every file is written to a temporary name, flushed, fsynced and renamed, and the manifest goes
last, after every rank's shard is on disk: a writer killed at any moment leaves either the
previous checkpoints or a directory without a manifest, which is never loaded. On load, a
missing or changed shard (size or sha256), or a model whose parameters differ from the
manifest, is refused with the file or parameter named, before anything is copied.
"""
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

MANIFEST = "manifest.json"
RUN_FILE = "run-id"          # in each step directory, written by rank 0 before the shards
FORMAT = "mpitrain-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file or parameter."""


def atomic_write(path, write):
    """write(f) into path.tmp, fsync, rename over path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def step_dir(root, step):
    return Path(root) / f"step-{step:08d}"


def write_shard(directory, rank, payload):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"shard-{rank:05d}.pt"
    atomic_write(path, lambda f: torch.save(payload, f))
    return {"rank": rank, "file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path)}


def write_manifest(directory, manifest):
    manifest = dict(manifest, format=FORMAT)
    atomic_write(directory / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def valid_checkpoints(root):
    """Step directories with a manifest, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d for d in root.glob("step-*") if (d / MANIFEST).is_file())


def read_manifest(directory):
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mpitrain checkpoint (format {manifest.get('format')!r})")
    return manifest


def read_shards(directory, manifest):
    """Every shard's payload, after checking each one's size and sha256 against the manifest."""
    payloads = []
    for entry in manifest["shards"]:
        path = Path(directory) / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}: shard of rank {entry['rank']} is missing")
        if path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: shard of rank {entry['rank']} is corrupt (its size or "
                                  f"sha256 differs from the manifest)")
        payloads.append(torch.load(path, map_location="cpu", weights_only=True))
    return payloads


def assemble(manifest, payloads):
    """{"g0.param": full canonical vector, ...} from every shard's slices; every element of every
    vector must be covered exactly once."""
    full = {}
    for gi, group in enumerate(manifest["groups"]):
        total = group["total"]
        covered = torch.zeros(total, dtype=torch.int32)
        for payload in payloads:
            lo, hi = payload["ranges"][gi]
            covered[lo:hi] += 1
            for name, tensor in payload["slices"].items():
                if name.startswith(f"g{gi}."):
                    full.setdefault(name, torch.zeros(total))[lo:hi] = tensor
        if total and not bool((covered == 1).all()):
            raise CheckpointError(f"group {gi}: the shards do not cover its {total} elements "
                                  f"exactly once")
    return full


def run_of(directory):
    """The run id a step directory was written by (None: unknown, e.g. written before run ids)."""
    try:
        return (Path(directory) / RUN_FILE).read_text().strip() or None
    except OSError:
        return None


def write_run_id(directory, run_id):
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / RUN_FILE, lambda f: f.write(run_id.encode()))


def prune(root, keep, run_id):
    """Delete all but the newest `keep` valid checkpoints of run `run_id`, and that run's
    leftovers without a manifest older than its newest valid one. Nothing another run wrote
    (or whose run is unknown) is ever deleted."""
    ours = [d for d in valid_checkpoints(root) if run_of(d) == run_id]
    for old in ours[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    if ours:
        for d in Path(root).glob("step-*"):
            if (not (d / MANIFEST).is_file() and d.name < ours[-1].name
                    and run_of(d) == run_id):
                shutil.rmtree(d, ignore_errors=True)
