"""Data parallel, the teaching path: after backward, one all-reduce per parameter.

    dp = NaiveDataParallel(model, world)
    loss.backward()
    dp.synchronize()            # every .grad becomes the mean over the ranks

This is the whole idea of data parallelism in ten lines: every rank computed gradients on its
own slice of the batch; their mean is the gradient of the whole batch. It is slow for two
reasons the bucketed engine (data_parallel.py) removes: nothing is sent until backward has
finished (no overlap), and a ViT has ~150 parameters, so ~150 small messages pay the per-message
latency ~150 times. The tests use it as the reference for the fast engine.
"""
import contextlib

import torch


class NaiveDataParallel:
    def __init__(self, model, world):
        self.world = world
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def no_sync(self):
        """Gradient accumulation: nothing is sent until synchronize(), so nothing to turn off."""
        return contextlib.nullcontext()

    def synchronize(self):
        """Average every .grad over the ranks, one parameter at a time."""
        missing = [n for n, p in self.named_params if p.grad is None]
        if missing:
            raise RuntimeError(f"rank {self.world.rank}: parameters without a gradient: "
                               f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        for _, p in self.named_params:
            host = p.grad.detach().to("cpu", copy=True) if p.grad.is_cuda else p.grad.detach()
            self.world.all_reduce(host, op="avg")
            if p.grad.is_cuda:
                with torch.no_grad():
                    p.grad.copy_(host)

    def close(self):
        pass
