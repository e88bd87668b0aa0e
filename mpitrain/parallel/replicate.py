"""Start every rank from the same weights: rank 0's parameters and buffers, broadcast.

All tensors of one dtype travel as one flat host buffer (one broadcast per dtype, not one per
tensor), packed and unpacked with torch's own copies; this runs once, before training.
"""
import torch


def broadcast_parameters(model, world, root=0):
    """Copy root's parameters and buffers to every rank, in place."""
    if world.size == 1:
        return
    tensors = list(model.parameters()) + list(model.buffers())
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for dtype, group in by_dtype.items():
            flat = torch.cat([t.detach().reshape(-1).to("cpu") for t in group])
            world.broadcast(flat, root=root)
            offset = 0
            for t in group:
                n = t.numel()
                t.copy_(flat[offset: offset + n].view_as(t))
                offset += n
