"""Compile a whole model as one graph cut into pieces, so gradients still arrive piece by piece.

torch.compile of a whole model makes one backward graph: every gradient appears at its very end,
and nothing can overlap backward. Compiling each block on its own (VisionTransformer.
compile_blocks) keeps gradients per block but pays the compiled call's Python overhead per block
twice a step (measured: ViT-L/16 on an H200, 62 ms a step compiled whole, 73 ms block by block,
the GPU equally busy in both). The middle way, DDP's own for torch.compile: one dynamo frame for
the model (one guard check a step), the captured graph split where the parameters it has
consumed, counted backwards from the end, pass `piece_mb`; each piece compiled by inductor as
its own autograd function. A piece's gradients reach post-accumulate-grad hooks as soon as its
backward ends. The splitting is torch's DDPOptimizer used as a plain dynamo backend.
"""
import torch


def compile_in_pieces(model, piece_mb=100.0):
    """The compiled model (call it instead of `model`): about piece_mb megabytes of parameters
    per piece. Falls back to compiling each block when this torch has no graph splitter."""
    try:
        from torch._dynamo.backends.distributed import DDPOptimizer
        from torch._dynamo.backends.registry import lookup_backend
    except ImportError:                                   # pragma: no cover (older torch)
        return model.compile_blocks()
    cap = max(1, int(piece_mb * 2**20))
    splitter = DDPOptimizer(cap, lookup_backend("inductor"), first_bucket_cap=cap)
    return torch.compile(model, backend=splitter.compile_fn)
