"""Model weights out of checkpoints and into models: one file for other tools, and the facts
evaluate and predict need to use it.

    consolidate(DIR, "model.safetensors" | "model.pt")   one state dict with timm's key names
    state, info = read_weights(PATH)    PATH: a .safetensors / .pt / .pth / .bin file (a timm
                                        state dict, or the output of consolidate) or a
                                        checkpoint directory (a root: its newest valid step)

`info` is the checkpoint's model card (None for a file from elsewhere): the model's name and
shape (num_classes, in_chans, img_size), the class names, the normalization statistics and the
pixel range the statistics were taken in. A .safetensors file keeps it in its metadata; a .pt
file beside itself, in FILE.json (the .pt stays a plain state dict that torch.load reads alone).
Files are read with weights_only=True: a .pt holding anything but tensors is refused.
"""
import json
from pathlib import Path

import torch

from .store import (MANIFEST, CheckpointError, assemble, atomic_write, read_manifest, read_shards,
                    valid_checkpoints)

INFO_KEY = "mpitrain.model"          # the model card's key in a safetensors file's metadata
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def step_directory(path):
    """A step directory for a step directory or a checkpoint root (its newest valid step)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    found = valid_checkpoints(path)
    if not found:
        raise CheckpointError(f"{path}: no checkpoint with a manifest here")
    return found[-1]


def checkpoint_weights(directory):
    """({name: tensor}, model card or None) of a checkpoint directory. A DiLoCo checkpoint gives
    worker 0's weights (after an outer step every worker holds the same)."""
    directory = step_directory(directory)
    manifest = read_manifest(directory)
    payloads = read_shards(directory, manifest)
    if "diloco" in manifest:
        payloads = [p for p in payloads if p["worker"] == 0]
    full = assemble(manifest, payloads)
    state = {}
    for gi, group in enumerate(manifest["groups"]):
        for p in group["params"]:
            flat = full[f"g{gi}.param"][p["offset"]: p["offset"] + p["numel"]]
            state[p["name"]] = flat.view(p["shape"]).clone()
    return dict(sorted(state.items())), manifest["extra"].get("model_info")


def consolidate(directory, out):
    """Write the checkpoint's weights as one file (format by suffix); returns the state dict."""
    out = Path(out)
    if out.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise CheckpointError(f"{out}: name the output .safetensors or .pt")
    state, info = checkpoint_weights(directory)
    if out.suffix == ".safetensors":
        from safetensors.torch import save as to_bytes
        metadata = {INFO_KEY: json.dumps(info)} if info else None
        atomic_write(out, lambda f: f.write(to_bytes(state, metadata=metadata)))
    else:
        atomic_write(out, lambda f: torch.save(state, f))
        if info:
            atomic_write(_sidecar(out), lambda f: f.write(json.dumps(info, indent=1).encode()))
    return state


def _sidecar(path):
    return path.with_name(path.name + ".json")


def read_weights(path):
    """({name: tensor}, model card or None) from a weights file or a checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        return checkpoint_weights(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file or checkpoint directory")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}
                metadata = f.metadata() or {}
        except Exception as exc:      # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        info = json.loads(metadata[INFO_KEY]) if INFO_KEY in metadata else None
        return state, info
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path}: weights are read from {', '.join(WEIGHT_SUFFIXES)} files "
                              f"or checkpoint directories")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:          # pickle refusals, truncated files
        raise CheckpointError(f"{path}: cannot be read as a state dict with weights_only=True "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    for wrapper in ("state_dict", "model", "module"):   # timm / training scripts' wrappings
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    sidecar = _sidecar(path)
    info = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    return state, info
