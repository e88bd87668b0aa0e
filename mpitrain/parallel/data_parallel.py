"""Data parallel, the simplest correct form: after backward, all gradients in one bucket.

    broadcast_parameters(model, world)         # every rank starts from rank 0's weights
    reducer = FlatGradientAllReduce(model, world)
    loss.backward(); reducer.all_reduce()      # every .grad = the mean over ranks

The fused pack kernel copies every gradient into one flat float32 bucket, the hand-rolled
all_reduce averages it across ranks, and the unpack kernel writes the result back into .grad.
Nothing overlaps backward here; the bucketed, overlapped engine is the data-parallel issue's.
GPU gradients are staged through host memory (the collectives take host buffers until the
CUDA transport lands).
"""
import torch

from .. import kernels


def broadcast_parameters(model, world):
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    if world.size == 1:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            host = t.detach().to("cpu", copy=True).contiguous()
            world.broadcast(host, root=0)
            t.copy_(host)


class FlatGradientAllReduce:
    def __init__(self, model, world):
        self.world = world
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._plan_key = None

    def _plan(self, grads):
        key = tuple(g.data_ptr() for g in grads)
        if key != self._plan_key:
            layout = kernels.BucketLayout.of(grads, "float32")
            self.bucket = torch.zeros(layout.total, dtype=torch.float32, device=grads[0].device)
            self.host = (torch.empty(layout.total, dtype=torch.float32).pin_memory()
                         if self.bucket.is_cuda else self.bucket)
            self.plan = kernels.PackPlan(grads, self.bucket, layout.offsets)
            self._plan_key = key
        return self.plan

    def all_reduce(self):
        """Average every parameter's .grad over the ranks (a missing grad counts as zero)."""
        if self.world.size == 1:
            return
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self.params]
        if grads[0].dtype != torch.float32:
            raise TypeError(f"gradients are {grads[0].dtype}; this path packs float32 gradients")
        plan = self._plan(grads)
        plan.pack()
        if self.bucket.is_cuda:
            self.host.copy_(self.bucket)          # synchronizes: the collective reads host memory
        self.world.all_reduce(self.host, op="avg")
        if self.bucket.is_cuda:
            self.bucket.copy_(self.host, non_blocking=True)
        plan.unpack()
