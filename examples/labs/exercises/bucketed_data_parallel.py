"""Exercise: data parallel with gradient buckets. Fill in DataParallel, then check it:

    python -m mpitrain.labs check buckets examples/labs/exercises/bucketed_data_parallel.py

Every rank holds the same model and computes gradients on its own slice of the batch; the mean
of those gradients over the ranks is the gradient of the whole batch. The naive version
(mpitrain/parallel/naive_data_parallel.py) all-reduces every parameter after backward: ~150
small messages for a ViT, and nothing sent until backward ends. Here, instead:
  - cut the parameters, in the order backward produces their gradients (the reverse of
    model.parameters()), into buckets of about bucket_mb megabytes;
  - register a hook on every parameter (p.register_post_accumulate_grad_hook(fn): fn(p) runs
    once p.grad is final for this backward); when the last gradient of a bucket arrives, copy
    the bucket's gradients into one flat tensor and all-reduce it with
    world.all_reduce(flat, op="avg") -- during backward, while earlier layers still compute;
  - synchronize(): after backward, copy every bucket's averaged values back into p.grad.

The checker trains a 4-layer MLP (8 parameters, 11 KB) for 3 steps at 1-5 ranks with
bucket_mb=0.004 and compares every gradient with one process on the whole batch; it also
counts your all-reduces: one per parameter fails as the naive version. The library's engine,
which also overlaps the all-reduces on a thread and packs with fused kernels, is
mpitrain/parallel/data_parallel.py.
"""
import torch


class DataParallel:
    def __init__(self, model, world, *, bucket_mb=25.0):
        self.world = world
        params = [p for p in model.parameters() if p.requires_grad]
        cap = bucket_mb * 2**20
        self.buckets = []                   # each: {"params": [...], "flat": tensor, "pending": n}
        # TODO: walk params in reverse, start a new bucket when the current one would pass cap
        #       bytes (p.numel() * p.element_size()), and give each bucket a flat tensor
        self.bucket_of = {}                 # id(param) -> its bucket
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)
        raise NotImplementedError("DataParallel: plan the buckets")

    def _grad_ready(self, param):
        # TODO: count down the bucket's pending gradients; when it reaches 0, pack them into
        #       bucket["flat"] (torch.cat of p.grad.reshape(-1)) and all-reduce with op="avg";
        #       reset the count for the next backward
        raise NotImplementedError("DataParallel._grad_ready")

    def synchronize(self):
        """After backward: every p.grad holds the mean over the ranks."""
        # TODO: unpack each bucket's flat tensor back into its parameters' .grad
        raise NotImplementedError("DataParallel.synchronize")
