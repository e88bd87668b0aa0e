"""One bucket of data parallel: a flat buffer holding several parameters' gradients, and the
all-reduce the communication thread runs on it.

    bucket = Bucket(spec, "fp32")          # spec: one entry of buckets.plan_buckets()
    p.grad is bucket.views[i]              # fp32 wire: backward accumulates into the bucket
    bucket.all_reduce(comm, stream, "avg", None)    # run by the communication thread

The path of one gradient reads in one direction through the files: data_parallel.py (the hook
sees the bucket complete) -> comm_thread.py (the queue, in plan order) -> here (the bucket's
all-reduce) -> comm/communicator.py -> comm/peer_workspace.py (the copy-engine lane) -> csrc;
docs/architecture.md draws it.
"""
import torch

from .. import kernels
from ..precision import torch_dtype

PACKABLE = (torch.float32, torch.bfloat16, torch.float16)


class Bucket:
    """One bucket's state: its plan, its flat buffers and, per backward, how many are ready."""

    def __init__(self, spec, wire_dtype, grad_views=True, host_wait=False):
        self.spec = spec
        self.index = spec.index
        self.params = spec.params
        self.layout = kernels.BucketLayout([p.numel() for p in spec.params], wire_dtype)
        device = spec.device
        self.wire = torch.zeros(self.layout.total, dtype=torch_dtype(wire_dtype), device=device)
        self.on_gpu = device.type == "cuda"
        # bucket complete on the GPU; host_wait: the communication thread sleeps on it (a
        # blocking-sync event) instead of queueing a stream wait
        self.host_wait = host_wait
        self.ready = torch.cuda.Event(blocking=host_wait) if self.on_gpu else None
        self._plan, self._plan_key = None, None
        self.pending = len(self.params)
        self.launched = False
        self.registered = None          # GPU: whether the peers write results straight into it
        # the wire in the gradients' own dtype: each p.grad can be a view of the bucket (not
        # fp16, whose sum over ranks could overflow before the division: it packs pre-scaled)
        self.views = None
        if grad_views and self.wire.dtype == spec.dtype and spec.dtype != torch.float16:
            self.views = [self.wire[o: o + p.numel()].view(p.shape)
                          for p, o in zip(self.params, self.layout.offsets)]
            self._view_ptrs = [v.data_ptr() for v in self.views]

    def reset(self):
        self.pending = len(self.params)
        self.launched = False

    def bound(self):
        """Every parameter's .grad is its view of the bucket (backward accumulated into it)."""
        return all(p.grad is not None and p.grad.data_ptr() == ptr
                   for p, ptr in zip(self.params, self._view_ptrs))

    def bind(self, stream):
        """Point every p.grad at its view (after a pack queued on `stream` copied them in); the
        old tensors are freed only once that stream is past the pack."""
        for p, view in zip(self.params, self.views):
            old = p.grad
            if old is not None and old.is_cuda and stream is not None:
                old.record_stream(stream)
            p.grad = view
        # the plan lets go of the old tensors but keeps their addresses: after the next
        # zero_grad(set_to_none=True) the allocator mostly hands the same memory out again, and
        # a plan for ViT-L's 296 tensors takes milliseconds to check
        self._plan.tensors = []

    def pack_plan(self):
        """The fused-kernel plan for the current .grad tensors; re-checked only when autograd
        handed out new gradient tensors (e.g. after zero_grad(set_to_none=True))."""
        grads = [p.grad for p in self.params]
        key = tuple(g.data_ptr() for g in grads)
        if key != self._plan_key:
            self._plan = kernels.PackPlan(grads, self.wire, self.layout.offsets)
            self._plan_key = key
        else:
            self._plan.tensors = grads               # the same memory, perhaps new tensors
        return self._plan

    def all_reduce(self, comm, comm_stream, op, plan):
        """The communication thread's work for this bucket: all-reduce it with `op` on `comm`;
        on a GPU on `comm_stream`, after the bucket's ready event, then unpack it with `plan`
        (None: the gradients are views of the bucket). The next hop is comm.all_reduce
        (comm/communicator.py), which hands a GPU bucket to the copy-engine lane
        (comm/peer_workspace.py)."""
        if not self.on_gpu:
            comm.all_reduce(self.wire, op=op)
            return
        with torch.cuda.device(comm_stream.device), torch.cuda.stream(comm_stream):
            if self.registered is None:              # first all-reduce: every rank, plan order
                self.registered = comm.register_in_place(self.wire)
            if self.host_wait:
                self.ready.synchronize()             # the thread sleeps (GIL released)
            else:
                comm_stream.wait_event(self.ready)   # GPU-side wait: the thread does not block
            comm.all_reduce(self.wire, op=op)
            if plan is not None:
                plan.unpack(stream=comm_stream)      # the bucket's .grad final, during backward

