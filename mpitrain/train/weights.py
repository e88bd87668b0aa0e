"""Starting from pretrained weights (--init-from) and the model card a checkpoint carries.

    init_from(model, PATH) -> lines to print

PATH is whatever checkpoint.read_weights reads: a timm state dict (.pt, .pth, .bin or
.safetensors), the output of `python -m mpitrain.checkpoint consolidate`, or a checkpoint
directory. Every tensor must match by name and shape, with two exceptions a fine-tune needs:
- a head of another number of classes is left out, so the model keeps its fresh head;
- position embeddings of another image size are resized (bicubic over the patch grid, the
  class token's kept), as timm does when it loads a checkpoint at a new resolution.
Anything else that differs is refused, naming the tensor.
"""
import math

import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError, read_weights

HEAD = ("head.weight", "head.bias")


def resize_pos_embed(saved, want_tokens):
    """(1, 1 + n*n, D) -> (1, want_tokens, D): the patch grid resized bicubically."""
    grid = saved[:, 1:]
    old, new = int(round(math.sqrt(grid.shape[1]))), int(round(math.sqrt(want_tokens - 1)))
    if old * old != grid.shape[1] or new * new != want_tokens - 1:
        raise CheckpointError(f"pos_embed: cannot resize {tuple(saved.shape)} to {want_tokens} "
                              f"tokens (not square patch grids)")
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(saved.dtype)
    return torch.cat([saved[:, :1], grid], dim=1)


def init_from(model, path):
    """Load the weights at `path` into `model` (before any engine wraps it); returns what was
    adapted, as lines for rank 0 to print."""
    state, _ = read_weights(path)
    own = model.state_dict()
    notes = []
    if "head.weight" in state and state["head.weight"].shape != own["head.weight"].shape:
        notes.append(f"--init-from {path}: new head for {own['head.weight'].shape[0]} classes "
                     f"(the weights have {state['head.weight'].shape[0]})")
        state = {k: v for k, v in state.items() if k not in HEAD}
        state.update({k: own[k] for k in HEAD})
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        if state["pos_embed"].shape[-1] != own["pos_embed"].shape[-1]:
            raise CheckpointError(f"--init-from {path}: pos_embed width "
                                  f"{state['pos_embed'].shape[-1]}, this model's "
                                  f"{own['pos_embed'].shape[-1]}: another model")
        notes.append(f"--init-from {path}: position embeddings resized from "
                     f"{state['pos_embed'].shape[1] - 1} to {own['pos_embed'].shape[1] - 1} patches")
        state = dict(state, pos_embed=resize_pos_embed(state["pos_embed"], own["pos_embed"].shape[1]))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"--init-from {path}: not this model's weights: missing "
                              f"{', '.join(missing[:5]) or 'none'}"
                              f"{' ...' if len(missing) > 5 else ''}; unexpected "
                              f"{', '.join(unexpected[:5]) or 'none'}"
                              f"{' ...' if len(unexpected) > 5 else ''}")
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"--init-from {path}: {name} is {tuple(tensor.shape)} there, "
                                  f"{tuple(own[name].shape)} in this model")
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    notes.append(f"--init-from {path}: loaded {len(state)} tensors")
    return notes


def model_card(cfg, mcfg, data):
    """What evaluate and predict need to rebuild the model and feed it: saved in every
    checkpoint (extra["model_info"]) and in consolidated files."""
    train = data.train
    return {"model": cfg.model, "num_classes": mcfg.num_classes, "in_chans": mcfg.in_chans,
            "img_size": mcfg.img_size, "classes": data.classes, "data": cfg.data,
            "data_dir": cfg.data_dir, "value_range": data.value_range,
            "mean": [float(v) for v in train.mean.flatten()] if hasattr(train, "mean") else None,
            "std": [float(v) for v in train.std.flatten()] if hasattr(train, "std") else None}
