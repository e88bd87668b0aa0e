"""Data parallel with bucketed gradients whose all-reduce overlaps the rest of backward.

    dp = apply_data_parallel(model, world, bucket_mb=25, grad_dtype="fp32")
    loss.backward()             # returns with every .grad averaged over the ranks
    with dp.no_sync():          # gradient accumulation: these backwards send nothing
        loss2.backward()

The path of one gradient (docs/architecture.md):
  1. backward accumulates p.grad; p's post-accumulate-grad hook marks p ready in its bucket;
  2. when every parameter of a bucket is ready, the bucket's flat buffer is made to hold them:
     - the wire carries the gradients' own dtype (fp32, the default): p.grad *is* a view of the
       bucket (as DDP's gradient_as_bucket_view), so backward already accumulated into it and
       nothing moves. A .grad autograd made anew (after zero_grad(set_to_none=True), or on the
       first backward) is packed once by the fused kernel and p.grad re-pointed at its view;
     - a 16-bit wire (or fp16 gradients): one fused kernel packs the gradients, scaled by
       1/world and cast (on a GPU: on a side stream, after the compute stream's work so far);
  3. the communication thread all-reduces the bucket with the hand-rolled collectives, "avg"
     over views (the copy-engine path folds the 1/world into its reduction), "sum" over packed
     buckets (on a GPU: on its own stream, after the bucket's ready event; the GPU
     transport moves the bytes and the CUDA kernels reduce them),
     while the main thread goes on with backward; buckets are handed over strictly in plan
     order, so every rank all-reduces the same bucket at the same position;
  4. a packed bucket is unpacked into p.grad (float32 again) on the communication stream right
     after its all-reduce; views need nothing. When autograd finishes, a callback it runs at the
     end of backward waits for the thread and makes the compute stream wait for the
     communication stream (on the host it unpacks the packed buckets there).
"""
import contextlib
import functools
import time

import torch

from .no_sync import NoSync
from .bucket import PACKABLE, Bucket
from .buckets import WIRE_DTYPES, describe_plan, plan_buckets, tail_cuts_bytes
from .comm_thread import CommThread
from .naive_data_parallel import NaiveDataParallel
from .replicate import broadcast_parameters
from .streams import comm_stream, overlapping_comm


class UnusedParameterError(RuntimeError):
    """A backward finished with parameters that produced no gradient on this rank."""


class DataParallel(NoSync):
    """The bucketed, overlapped engine. Build it with apply_data_parallel()."""

    def __init__(self, model, world, *, bucket_mb=25.0, first_bucket_mb=1.0, grad_dtype="fp32",
                 find_unused_parameters=False, overlap=True, verbose=False, copy_engine=None,
                 grad_views=True, tail_mb=()):
        if grad_dtype not in WIRE_DTYPES:
            raise ValueError(f"grad_dtype {grad_dtype!r}: choose from {', '.join(WIRE_DTYPES)}")
        for name, value in (("bucket_mb", bucket_mb), ("first_bucket_mb", first_bucket_mb)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.model = model
        self.world = world
        self.wire_dtype = WIRE_DTYPES[grad_dtype]
        self.cap_bytes = max(1, int(bucket_mb * 2**20))
        self.first_cap_bytes = max(1, int(first_bucket_mb * 2**20))
        self.tail_cuts = tail_cuts_bytes(tail_mb)
        self.find_unused = find_unused_parameters
        self.verbose = verbose
        self.grad_views = grad_views     # False: pack and unpack every bucket, whatever its dtype
        # the thread's own message space. Collectives run beside backward: on GPUs joined by
        # CUDA IPC the buckets cross by the copy engines and the waits sit in the stream, so
        # no SM is taken from backward's GEMMs (copy_engine=False: the peer kernels on 32
        # blocks, bench/RESULTS.md)
        self.comm = overlapping_comm(world, copy_engine)
        self.overlap = overlap and _threads_allowed()
        self.thread = CommThread("mpitrain-dp") if self.overlap else None
        # how the thread orders a bucket's all-reduce after backward filled it (GPU):
        # "stream" queues a stream wait on its ready event at once (the communication stream
        # then sits blocked in the GPU's front end until backward gets there); "host" waits on
        # the host for the event, then queues the all-reduce behind nothing (only with the thread)
        self.bucket_wait = world.settings.dp_bucket_wait
        self.host_wait = self.bucket_wait == "host" and self.thread is not None
        self.side_stream = None          # GPU: packs
        self.comm_stream = None          # GPU: the communication thread's collectives
        self._sync = True
        self._in_backward = False
        self._plan_params = None
        self.buckets = []
        self.stats = {"backwards": 0, "wait_s": 0.0, "plans": 0}
        self._hooks = {}                 # id(param) -> hook handle
        self._unused_here = set()        # find_unused_parameters: ids zero-filled this backward
        self._build_plan()

    # ------------------------------------------------------------------------------- the plan
    def _trainable(self):
        return tuple(p for p in self.model.parameters() if p.requires_grad)

    def _build_plan(self):
        params = self._trainable()
        names = {id(p): n for n, p in self.model.named_parameters()}
        for p in params:
            if id(p) not in self._hooks:
                self._hooks[id(p)] = p.register_post_accumulate_grad_hook(self._on_grad_ready)
        for p in params:
            if p.dtype not in PACKABLE:
                raise TypeError(f"rank {self.world.rank}: parameter {names[id(p)]} is {p.dtype}; "
                                f"data parallel packs float32, bfloat16 and float16 gradients")
        specs = plan_buckets(params, self.first_cap_bytes, self.cap_bytes, self.wire_dtype,
                             self.tail_cuts)
        self.buckets = [Bucket(spec, self.wire_dtype, self.grad_views, self.host_wait) for spec in specs]
        self._bucket_of = {id(p): b for b in self.buckets for p in b.params}
        self._names = [names[id(p)] for p in params]
        self._plan_params = params
        if any(b.on_gpu for b in self.buckets) and self.side_stream is None:
            self.side_stream = comm_stream(self.buckets[0].spec.device)
            self.comm_stream = comm_stream(self.buckets[0].spec.device)
        self.stats["plans"] += 1
        if self.verbose:
            self.world.print0(describe_plan([b.spec for b in self.buckets], self._names, self.wire_dtype))

    def describe(self):
        return describe_plan([b.spec for b in self.buckets], self._names, self.wire_dtype)

    # ----------------------------------------------------------------------- during backward
    def _on_grad_ready(self, param):
        if not self._sync:
            return
        if not self._in_backward:
            self._start_backward()
        bucket = self._bucket_of[id(param)]
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch_ready_buckets()

    def _start_backward(self):
        self._in_backward = True
        if [id(p) for p in self._trainable()] != [id(p) for p in self._plan_params]:   # (un)frozen
            self._build_plan()
        for b in self.buckets:
            b.reset()
        self._next = 0
        torch.autograd.Variable._execution_engine.queue_callback(self._finish_backward)

    def _launch_ready_buckets(self):
        """Hand over complete buckets in plan order: bucket i waits until 0..i-1 have gone."""
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            self._launch(self.buckets[self._next])
            self._next += 1

    def _launch(self, bucket):
        """Make the bucket's buffer hold its gradients, then hand its all-reduce to the thread."""
        side = self.side_stream
        if bucket.on_gpu:
            compute = torch.cuda.current_stream(bucket.spec.device)
        if bucket.views is not None and bucket.bound():
            plan, op = None, "avg"                   # backward accumulated into the bucket
            if bucket.on_gpu:
                bucket.ready.record(compute)
        else:
            plan = bucket.pack_plan()
            # a view bucket copies fresh gradients in as they are; a packed one scales as it
            # casts (the sum of gradients already divided cannot overflow fp16)
            scale, op = (1.0, "avg") if bucket.views is not None else (1.0 / self.world.size, "sum")
            if bucket.on_gpu:
                side.wait_stream(compute)
                plan.pack(scale=scale, stream=side)
                bucket.ready.record(side)
            else:
                plan.pack(scale=scale)
            if bucket.views is not None:
                bucket.bind(side)
                plan = None
        bucket.launched = True
        job = functools.partial(bucket.all_reduce, self.comm, self.comm_stream, op, plan)
        if self.thread is not None:
            self.thread.submit(job, f"bucket {bucket.index}")    # the thread runs it in order
        else:
            job()

    # --------------------------------------------------------------------- end of backward
    def _finish_backward(self):
        self._in_backward = False
        self.stats["backwards"] += 1
        incomplete = [b for b in self.buckets if not b.launched]
        if incomplete:
            self._handle_unused(incomplete)
        start = time.perf_counter()
        if self.thread is not None:
            self.thread.wait_all()
        self.stats["wait_s"] += time.perf_counter() - start
        self._unpack_all()
        if self.find_unused:
            self._drop_globally_unused()

    def _handle_unused(self, incomplete):
        missing = [p for b in incomplete for p in b.params if p.grad is None]
        if not self.find_unused:
            names = {id(p): n for n, p in self.model.named_parameters()}
            stuck = [names[id(p)] for b in incomplete for p in b.params]
            raise UnusedParameterError(
                f"rank {self.world.rank}: backward finished but {len(stuck)} parameter(s) got no "
                f"gradient: {', '.join(stuck[:6])}{' ...' if len(stuck) > 6 else ''}. Every rank "
                f"must produce a gradient for every trainable parameter; use "
                f"find_unused_parameters=True (--find-unused-parameters) to count missing "
                f"gradients as zero, or set requires_grad=False on parameters you do not train")
        # The ranks that used a parameter still all-reduce it: the others contribute zeros.
        for p in missing:
            p.grad = torch.zeros_like(p)
        self._unused_here = {id(p) for p in missing}
        for b in incomplete:
            b.pending = 0
        self._launch_ready_buckets()

    def _drop_globally_unused(self):
        """With find_unused_parameters: a parameter no rank used gets .grad = None again, so the
        optimizer skips it (as on one process). One small all-reduce of a used-count per param."""
        counts = torch.tensor([0 if id(p) in self._unused_here else 1 for p in self._plan_params],
                              dtype=torch.int32)
        self.comm.all_reduce(counts, op="sum")
        for p, used in zip(self._plan_params, counts.tolist()):
            if used == 0:
                p.grad = None
        self._unused_here = set()

    def _unpack_all(self):
        """GPU buckets were unpacked on the communication stream right after their all-reduce
        (not all at the end, where nothing hides it), or needed nothing (views): the compute
        stream waits for that stream. Host packed buckets are unpacked here."""
        if self.comm_stream is not None:     # every job is queued there (the thread is done)
            torch.cuda.current_stream(self.comm_stream.device).wait_stream(self.comm_stream)
        for b in self.buckets:
            if not b.on_gpu and b.views is None:
                b.pack_plan().unpack()

    def synchronize(self):
        """Nothing left to do: the gradients were averaged when backward returned. (Kept so that
        the naive and the bucketed engines are used the same way.)"""

    def close(self):
        for h in self._hooks.values():
            h.remove()
        self._hooks = {}
        if self.thread is not None:
            self.thread.close()


def _threads_allowed():
    from mpi4py import MPI
    return MPI.Query_thread() == MPI.THREAD_MULTIPLE


class SingleRank:
    """One rank: nothing to average. Same face as the engines, so the trainer's loop is one."""

    def no_sync(self):
        return contextlib.nullcontext()

    def synchronize(self):
        pass

    def close(self):
        pass


def apply_data_parallel(model, world, bucket_mb=25.0, first_bucket_mb=1.0, grad_dtype="fp32",
                        find_unused_parameters=False, overlap=True, verbose=False, naive=False,
                        broadcast=True, copy_engine=None, grad_views=True, tail_mb=()):
    """Make `model` data parallel over `world`: broadcast rank 0's weights, then average the
    gradients of every backward. Returns the engine (no_sync(), synchronize(), describe()).
    grad_views: each .grad a view of its bucket when the wire carries the gradients' dtype (as
    DDP's gradient_as_bucket_view; False packs and unpacks every bucket). tail_mb: MB cuts at the
    end of backward (parallel/buckets.py; the trainer's --tail-mb, 24,6 by default)."""
    if broadcast:
        broadcast_parameters(model, world)
    if naive:
        return NaiveDataParallel(model, world)
    return DataParallel(model, world, bucket_mb=bucket_mb, first_bucket_mb=first_bucket_mb,
                        grad_dtype=grad_dtype, find_unused_parameters=find_unused_parameters,
                        overlap=overlap, verbose=verbose, copy_engine=copy_engine,
                        grad_views=grad_views, tail_mb=tail_mb)
