"""The data-parallel engines against a single process (the oracle every rank computes itself).

N ranks with micro-batch b must follow one process with batch N*b: the same losses and the same
parameters after 20 steps, at both bucket extremes, with and without no_sync accumulation; all
ranks must hold bitwise-identical parameters after every step.
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_data_parallel.py
"""
import contextlib
import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpitrain.models import ViTConfig, VisionTransformer
from mpitrain.parallel import UnusedParameterError, apply_data_parallel

from oracles import all_agree

pytestmark = pytest.mark.mpi

TINY = ViTConfig(name="tiny", img_size=8, patch_size=4, in_chans=1, num_classes=5, embed_dim=16,
                 depth=2, num_heads=2, mlp_dim=32)
STEPS = 20
PER_RANK = 4                   # micro-batch of one rank (per step, all accumulation included)

EXTREMES = {
    "one param per bucket": dict(bucket_mb=1e-9, first_bucket_mb=1e-9),
    "one bucket for all": dict(bucket_mb=1e6, first_bucket_mb=1e6),
    "default caps": dict(),
    "tail cuts": dict(bucket_mb=0.004, first_bucket_mb=0.001, tail_mb=(0.003, 0.0005)),
}


DEVICE = "cpu"                 # the GPU tests below switch it (same code, CUDA tensors)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_model(seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(TINY).to(DEVICE)


def batch(step, size):
    g = torch.Generator().manual_seed(1000 + step)
    return (torch.randn(size, 1, 8, 8, generator=g).to(DEVICE),
            torch.randint(0, 5, (size,), generator=g).to(DEVICE))


def optimizer_for(model, kind="sgd"):
    """SGD keeps parameters a linear function of the gradients, so rounding differences stay at
    rounding size; AdamW divides each element by its own running magnitude, which blows up the
    rounding noise of near-zero gradient elements (tested separately, with a wider tolerance)."""
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)


def single_process_run(world_size, optimizer="sgd", make_optimizer=None):
    """One process, batch world_size * PER_RANK per step: the oracle. make_optimizer(model)
    replaces the named optimizer."""
    model = make_model()
    opt = make_optimizer(model) if make_optimizer else optimizer_for(model, optimizer)
    losses = []
    for step in range(STEPS):
        x, y = batch(step, world_size * PER_RANK)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def param_hash(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def run_steps(world, model, engine, zero_grad, step, accum=1, digest=param_hash,
              forward_context=contextlib.nullcontext):
    """STEPS steps, PER_RANK images per rank in `accum` micro-batches (all but the last under
    engine.no_sync()); returns the losses averaged over ranks and whether every step left
    bitwise-identical parameters on every rank (digest(model): their hash). Each forward runs
    inside forward_context() (autocast, for 16-bit parameters)."""
    losses, identical = [], True
    micro = PER_RANK // accum
    for n in range(STEPS):
        x, y = batch(n, world.size * PER_RANK)
        mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
        x, y = x[mine], y[mine]
        zero_grad()
        local = 0.0
        for m in range(accum):
            part = slice(m * micro, (m + 1) * micro)
            with forward_context():
                loss = F.cross_entropy(model(x[part]), y[part]) / accum
            with contextlib.nullcontext() if m == accum - 1 else engine.no_sync():
                loss.backward()
            local += loss.item()
        engine.synchronize()
        step()
        losses.append(float(np.mean(world.mpi_comm.allgather(local))))
        identical &= len(set(world.mpi_comm.allgather(digest(model)))) == 1
    return losses, identical


def data_parallel_run(world, engine_kwargs, accum=1, naive=False, set_to_none=True,
                      optimizer="sgd"):
    """world.size ranks, PER_RANK images each, in `accum` micro-batches; returns the averaged
    losses, the final parameters and whether every step left identical parameters everywhere."""
    model = make_model(seed=0 if world.rank == 0 else 100 + world.rank)   # the broadcast fixes it
    dp = apply_data_parallel(model, world, naive=naive, **engine_kwargs)
    opt = optimizer_for(model, optimizer)
    losses, identical = run_steps(world, model, dp, lambda: opt.zero_grad(set_to_none=set_to_none),
                                  opt.step, accum)
    dp.close()
    return losses, [p.detach().clone() for p in model.parameters()], identical


def compare(world, losses, params, identical, reference, rtol=1e-5, atol=1e-6):
    ref_losses, ref_params = reference
    problems = []
    if not np.allclose(losses, ref_losses, rtol=rtol, atol=0):
        problems.append(f"losses {losses[:3]}... vs one process {ref_losses[:3]}...")
    worst = max(float((p - q).abs().max()) for p, q in zip(params, ref_params))
    if worst > atol + rtol * max(float(q.abs().max()) for q in ref_params):
        problems.append(f"parameters differ from one process by up to {worst:.3g}")
    if not identical:
        problems.append("ranks held different parameters after some step")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


@pytest.fixture(scope="module")
def reference(world):
    return single_process_run(world.size)


@pytest.fixture
def on_gpu(world, monkeypatch):
    """Run the test's models and batches on this rank's GPU (ranks share GPUs round robin)."""
    torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    monkeypatch.setitem(globals(), "DEVICE", "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@needs_gpu
@pytest.mark.parametrize("wait", ["stream", "host"])
@pytest.mark.parametrize("caps", ["one param per bucket", "default caps", "tail cuts"])
def test_bucketed_engine_on_gpu_follows_one_process(world, on_gpu, caps, wait):
    """CUDA gradients: views of their buckets (or packed on a side stream), all-reduced by the
    GPU transport; the communication thread queues a stream wait per bucket or waits for the
    bucket on the host (settings.dp_bucket_wait, MPITRAIN_DP_BUCKET_WAIT)."""
    waiting = world.dup(settings=world.settings.replace(dp_bucket_wait=wait))
    compare(world, *data_parallel_run(waiting, EXTREMES[caps], accum=2),
            single_process_run(world.size))


@needs_gpu
def test_gpu_buckets_are_registered_where_the_copy_engine_lane_serves(world, on_gpu):
    """Every GPU bucket is registered at its first all-reduce (the peers then write the reduced
    chunks straight into it) exactly where the copy-engine lane serves the engine's
    communicator, and its averaged gradients still match one process."""
    model = make_model()
    dp = apply_data_parallel(model, world, bucket_mb=0.004, first_bucket_mb=0.001)
    x, y = batch(0, world.size * PER_RANK)
    mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
    F.cross_entropy(model(x[mine]), y[mine]).backward()
    lane = dp.comm._peer_lane
    expected = lane is not None and lane.workspace.options.copy_engine and world.size > 1
    registered = [b.registered for b in dp.buckets]
    calls = lane.workspace.registered_calls if lane is not None else 0
    grads = [p.grad.clone() for p in model.parameters()]
    dp.close()
    reference = make_model()
    F.cross_entropy(reference(x), y).backward()
    worst = max(float((g - p.grad).abs().max()) for g, p in zip(grads, reference.parameters()))
    ok = registered == [expected] * len(dp.buckets) and calls == (len(dp.buckets) if expected else 0)
    ok, why = all_agree(world, ok and worst < 1e-5,
                        f"registered {registered}, lane calls {calls}, gradients off by {worst:.3g}")
    assert ok, why


@needs_gpu
def test_bf16_wire_on_gpu(world, on_gpu):
    compare(world, *data_parallel_run(world, dict(grad_dtype="bf16", bucket_mb=1e-3)),
            single_process_run(world.size), rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("accum", [1, 2], ids=["no accumulation", "no_sync x2"])
@pytest.mark.parametrize("caps", list(EXTREMES), ids=list(EXTREMES))
def test_bucketed_engine_follows_one_process(world, reference, caps, accum):
    compare(world, *data_parallel_run(world, EXTREMES[caps], accum=accum), reference)


@pytest.mark.parametrize("accum", [1, 2], ids=["no accumulation", "no_sync x2"])
def test_naive_engine_follows_one_process(world, reference, accum):
    compare(world, *data_parallel_run(world, {}, accum=accum, naive=True), reference)


def test_without_the_thread_and_with_persistent_grads(world, reference):
    """Synchronous hand-over (no communication thread) and zero_grad(set_to_none=False)."""
    compare(world, *data_parallel_run(world, dict(overlap=False, bucket_mb=1e-3, first_bucket_mb=1e-4),
                                      set_to_none=False), reference)


def test_persistent_grads_accumulate_in_the_buckets_under_no_sync(world, reference):
    """zero_grad(set_to_none=False) with fp32 gradients: from the second step on every backward,
    the no_sync one included, accumulates straight into the buckets (the .grad are their views)."""
    compare(world, *data_parallel_run(world, dict(bucket_mb=1e-3, first_bucket_mb=1e-4), accum=2,
                                      set_to_none=False), reference)


@pytest.mark.parametrize("grad_dtype", ["fp32", "bf16"])
def test_gradients_are_views_of_the_buckets_when_the_wire_is_their_dtype(world, grad_dtype):
    """fp32 on the wire: after a backward every .grad lives in its bucket, also after
    zero_grad(set_to_none=True) made autograd hand out new tensors; a bf16 wire keeps its own
    buffers beside the fp32 .grad."""
    model = make_model()
    dp = apply_data_parallel(model, world, bucket_mb=0.004, first_bucket_mb=0.001,
                             grad_dtype=grad_dtype)
    x, y = batch(0, PER_RANK)
    in_buckets = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        wires = {b.wire.untyped_storage().data_ptr() for b in dp.buckets}
        in_buckets.append([p.grad.untyped_storage().data_ptr() in wires for p in model.parameters()])
    dp.close()
    want = grad_dtype == "fp32"
    problems = [f"backward {i}: {sum(seen)} of {len(seen)} .grad in the buckets, expected "
                f"{'all' if want else 'none'}" for i, seen in enumerate(in_buckets)
                if seen != [want] * len(seen)]
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


def test_fresh_gradients_are_let_go_once_copied_into_the_buckets(world):
    """After zero_grad(set_to_none=True) autograd makes new .grad tensors; once packed into the
    buckets nothing keeps them (a held copy would double the gradients' memory). Seen through
    weak references taken by a hook that runs before the engine's."""
    import gc
    import weakref
    model = make_model()
    fresh = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda p: fresh.append(weakref.ref(p.grad)))
    dp = apply_data_parallel(model, world, bucket_mb=0.004, first_bucket_mb=0.001)
    x, y = batch(0, PER_RANK)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    gc.collect()
    alive = sum(r() is not None for r in fresh)
    dp.close()
    ok, why = all_agree(world, alive == 0, f"{alive} of {len(fresh)} fresh .grad tensors still alive")
    assert ok, why


def test_adamw_follows_one_process(world):
    """Same losses (rtol 1e-5); parameters within 1e-4, AdamW's amplified rounding (see
    optimizer_for): measured up to 6.6e-5 here, against steps of up to 20 x 3e-3."""
    compare(world, *data_parallel_run(world, dict(bucket_mb=1e-3), optimizer="adamw"),
            single_process_run(world.size, "adamw"), rtol=1e-5, atol=1e-4)


def test_bf16_wire_within_its_documented_tolerance(world, reference):
    """Gradients travel as bfloat16 (8 bits of mantissa): losses within 1% of one process."""
    compare(world, *data_parallel_run(world, dict(grad_dtype="bf16", bucket_mb=1e-3)), reference,
            rtol=1e-2, atol=2e-2)


def test_buckets_fill_in_reverse_order_small_first(world):
    model = make_model()
    dp = apply_data_parallel(model, world, bucket_mb=0.01, first_bucket_mb=0.002, broadcast=False)
    params = list(model.parameters())
    order = [p for b in dp.buckets for p in b.params]
    sizes = [b.spec.nbytes("float32") for b in dp.buckets]
    text = dp.describe()
    dp.close()
    assert [id(p) for p in order] == [id(p) for p in reversed(params)]
    assert len(sizes) > 2
    assert sizes[0] <= 0.002 * 2**20 or len(dp.buckets[0].params) == 1
    assert all(s <= 0.01 * 2**20 or len(b.params) == 1 for s, b in zip(sizes, dp.buckets))
    assert "bucket   0" in text and "head.bias" in text


def test_gradients_match_the_naive_engine_after_one_backward(world):
    """Same step, both engines: bucketed grads equal the per-parameter all-reduce's."""
    x, y = batch(0, world.size * PER_RANK)
    mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
    grads = []
    for naive in (True, False):
        model = make_model()
        dp = apply_data_parallel(model, world, naive=naive, bucket_mb=0.004, first_bucket_mb=0.001)
        F.cross_entropy(model(x[mine]), y[mine]).backward()
        dp.synchronize()
        grads.append([p.grad.clone() for p in model.parameters()])
        dp.close()
    worst = max(float((a - b).abs().max()) for a, b in zip(*grads))
    ok, why = all_agree(world, worst < 1e-6, f"max difference {worst:.3g}")
    assert ok, why


class WithSpareHead(nn.Module):
    """The tiny ViT plus a head that only odd ranks use, and one nobody uses."""

    def __init__(self):
        super().__init__()
        self.vit = make_model()
        self.spare = nn.Linear(5, 5)
        self.never = nn.Linear(5, 5)

    def forward(self, x, use_spare):
        out = self.vit(x)
        return self.spare(out) if use_spare else out


def test_a_parameter_without_gradient_is_reported(world):
    model = WithSpareHead()
    dp = apply_data_parallel(model, world)
    x, y = batch(0, PER_RANK)
    with pytest.raises(UnusedParameterError) as info:
        F.cross_entropy(model(x, use_spare=True), y).backward()
    dp.close()
    message = str(info.value)
    assert f"rank {world.rank}" in message and "never.weight" in message
    assert "find_unused_parameters" in message


def test_find_unused_parameters_averages_with_zeros(world):
    """Rank r uses the spare head iff r is odd: its gradient is the mean over ranks with zeros
    from the others, computed here by running every rank's micro-batch in one process."""
    x, y = batch(0, world.size * PER_RANK)
    expected = None
    for r in range(world.size):
        model = WithSpareHead()
        sl = slice(r * PER_RANK, (r + 1) * PER_RANK)
        F.cross_entropy(model(x[sl], use_spare=r % 2 == 1), y[sl]).backward()
        g = [torch.zeros_like(p) if p.grad is None else p.grad / world.size for p in model.parameters()]
        expected = g if expected is None else [a + b for a, b in zip(expected, g)]
    model = WithSpareHead()
    dp = apply_data_parallel(model, world, find_unused_parameters=True, bucket_mb=0.002)
    mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
    F.cross_entropy(model(x[mine], use_spare=world.rank % 2 == 1), y[mine]).backward()
    dp.close()
    names = [n for n, _ in model.named_parameters()]
    problems = []
    for name, p, e in zip(names, model.parameters(), expected):
        if name.startswith("never"):
            if p.grad is not None:
                problems.append(f"{name} was used by no rank but has a gradient")
        elif name.startswith("spare") and world.size == 1:
            if p.grad is not None:
                problems.append(f"{name} unused on the only rank but has a gradient")
        elif p.grad is None or not torch.allclose(p.grad, e, rtol=1e-5, atol=1e-7):
            problems.append(f"{name} differs from the mean over ranks")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


def test_the_plan_is_rebuilt_only_when_the_trainable_set_changes(world):
    model = make_model()
    dp = apply_data_parallel(model, world, bucket_mb=0.004, first_bucket_mb=0.001)
    x, y = batch(0, PER_RANK)
    for _ in range(3):
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
    plans_while_unchanged = dp.stats["plans"]
    model.head.weight.requires_grad_(False)                  # freeze one parameter
    F.cross_entropy(model(x), y).backward()
    frozen_plans = dp.stats["plans"]
    in_plan = {id(p) for b in dp.buckets for p in b.params}
    dp.close()
    assert plans_while_unchanged == 1
    assert frozen_plans == 2 and id(model.head.weight) not in in_plan
    assert model.head.weight.grad is None and model.head.bias.grad is not None
