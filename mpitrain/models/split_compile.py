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

The front piece's gradients all appear at the very end of backward, so its all-reduce is the
step's tail: with 100 MB pieces ViT-L/16's front piece held blocks 0 and most of 1 (84 MB; 0.6 ms a
step on 2x H200, bench/RESULTS.md). Tail cuts (parallel/buckets.py: the same cuts the bucket
plan makes) also end a piece where the parameter bytes still to come drop to each cut, so the
last pieces are small.
"""
import torch


def compile_in_pieces(model, piece_mb=100.0, tail_mb=()):
    """The compiled model (call it instead of `model`): about piece_mb megabytes of parameters
    per piece, and a cut where the bytes of the parameters before it drop to each of tail_mb.
    Falls back to compiling each block when this torch has no graph splitter."""
    try:
        from torch._dynamo.backends.distributed import DDPOptimizer
        from torch._dynamo.backends.registry import lookup_backend
    except ImportError:                                   # pragma: no cover (older torch)
        return model.compile_blocks()
    splitter = make_splitter(DDPOptimizer, lookup_backend("inductor"), model, piece_mb, tail_mb)
    compiled = torch.compile(model, backend=splitter.compile_fn)
    compiled._mpitrain_splitter = splitter               # its .buckets: the pieces (tests)
    return compiled


def make_splitter(base, backend, model, piece_mb, tail_mb):
    """A DDPOptimizer (`base`) that also cuts at the tail. It walks the graph from the output
    back, adding each parameter's bytes to the piece being filled and starting a new piece at
    the next node once the size reaches the cap; here, when the bytes not yet walked (the
    parameters before, in the graph) first drop to a cut, the piece counts as full."""
    cap = max(1, int(piece_mb * 2**20))
    total = sum(p.untyped_storage().nbytes() for p in model.parameters() if p.requires_grad)
    cuts = sorted((int(mb * 2**20) for mb in tail_mb), reverse=True)

    class TailCutSplitter(base):
        def compile_fn(self, gm, example_inputs, **configs):
            self._seen, self._pending = set(), list(cuts)   # each graph walked from its end
            self._left = total
            return super().compile_fn(gm, example_inputs, **configs)

        def add_param(self, bucket, param, name):
            super().add_param(bucket, param, name)
            if name in self._seen:
                return
            self._seen.add(name)
            self._left -= param.untyped_storage().nbytes()
            while self._pending and self._left <= self._pending[0]:
                self._pending.pop(0)
                bucket.size = max(bucket.size, self.bucket_bytes_cap)

    return TailCutSplitter(cap, backend, first_bucket_cap=cap)
