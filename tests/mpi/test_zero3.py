"""ZeRO stage 3 against one process (computed on every rank): the same losses and parameters
after 20 steps on 1-4 ranks (the tiny ViT's parameter count does not divide by 3 or 4), every
window and with the units kept between forward and backward, with and without accumulation;
the optimizer state is sharded, and between steps no rank holds more than its shards.
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_zero3.py
"""
import contextlib

import pytest
import torch

from mpitrain.parallel.zero3 import apply_zero3

from oracles import all_agree
from test_data_parallel import on_gpu  # noqa: F401  (a fixture, used by name)
from test_data_parallel import compare, make_model, needs_gpu, param_hash, run_steps
from test_zero import groups_of, make_optimizer, sgd_reference_with_groups

pytestmark = pytest.mark.mpi


def zero3_run(world, window=1, keep_between=False, accum=1, optimizer="sgd", watch=None,
              param_dtype="fp32", reduce_dtype="fp32"):
    model = make_model(seed=0 if world.rank == 0 else 100 + world.rank)   # the broadcast fixes it
    zero = apply_zero3(model, world, make_optimizer(optimizer), units=model.blocks,
                       groups=groups_of(model) if optimizer == "sgd" else None, window=window,
                       keep_between=keep_between, param_dtype=param_dtype,
                       reduce_dtype=reduce_dtype)
    device = next(iter(zero.flat_shards())).master.device.type
    forward_context = contextlib.nullcontext if param_dtype == "fp32" else (
        lambda: torch.autocast(device, torch.bfloat16))
    if watch is not None:
        watch(model, zero)
    freed = []

    def step():
        zero.step()
        freed.append(all(p.untyped_storage().nbytes() == 0 for p in model.parameters()))

    def digest(model):
        with zero.gathered():
            return param_hash(model)

    losses, identical = run_steps(world, model, zero, zero.zero_grad, step, accum, digest,
                                  forward_context)
    freed = all(freed)
    with zero.gathered():
        params = [p.detach().clone() for p in model.parameters()]
    state = sum(v.numel() for s in zero.optimizer.state.values() for v in s.values()
                if torch.is_tensor(v) and v.ndim)
    shards = sum(f.shard for u in zero.units + [zero.root] for f in u.flats)
    zero.close()
    return losses, params, identical, freed, state, shards


@pytest.fixture(scope="module")
def sgd_reference(world):
    return sgd_reference_with_groups(world.size)


@pytest.mark.parametrize("accum", [1, 2], ids=["no accumulation", "no_sync x2"])
@pytest.mark.parametrize("window, keep_between", [(0, False), (1, False), (2, True)])
def test_zero3_follows_one_process(world, sgd_reference, window, keep_between, accum):
    losses, params, identical, freed, state, shards = zero3_run(world, window, keep_between, accum)
    compare(world, losses, params, identical, sgd_reference)
    ok, why = all_agree(world, freed and state == shards,
                        f"freed between steps: {freed}; momentum {state} elements, shard {shards}")
    assert ok, why


@pytest.mark.parametrize("reduce_dtype", ["fp32", "bf16"])
def test_bf16_parameters_within_bf16_tolerance(world, sgd_reference, reduce_dtype):
    """Blocks gathered and computed in bfloat16 (shards and optimizer float32; gradients
    reduce-scattered in reduce_dtype): the fp32 run's losses within 1%, parameters within
    2e-2, and the shards stay float32."""
    seen = []

    def watch(model, zero):
        model.blocks[0].register_forward_pre_hook(
            lambda mod, args: seen.append(mod.attn.qkv.weight.dtype))
    losses, params, identical, freed, _, _ = zero3_run(world, accum=2, param_dtype="bf16",
                                                       reduce_dtype=reduce_dtype, watch=watch)
    compare(world, losses, params, identical, sgd_reference, rtol=1e-2, atol=2e-2)
    ok, why = all_agree(world, freed and set(seen) == {torch.bfloat16} and
                        all(p.dtype == torch.float32 for p in params),
                        f"freed {freed}, forward saw {set(seen)}, final {[p.dtype for p in params][:2]}")
    assert ok, why


@needs_gpu
@pytest.mark.parametrize("param_dtype", ["fp32", "bf16"])
def test_zero3_on_gpu_follows_one_process(world, on_gpu, param_dtype):  # noqa: F811
    """CUDA: gathers and reduce-scatters on the communication stream, prefetch window 1."""
    tol = dict(rtol=1e-5, atol=1e-6) if param_dtype == "fp32" else dict(rtol=1e-2, atol=2e-2)
    losses, params, identical, freed, _, _ = zero3_run(world, accum=2, param_dtype=param_dtype)
    compare(world, losses, params, identical, sgd_reference_with_groups(world.size), **tol)
    ok, why = all_agree(world, freed, "parameters not freed between steps")
    assert ok, why


def test_zero3_adamw_state_is_sharded(world):
    from test_data_parallel import single_process_run
    losses, params, identical, _, state, shards = zero3_run(world, optimizer="adamw")
    compare(world, losses, params, identical, single_process_run(world.size, "adamw"),
            rtol=1e-5, atol=1e-4)
    ok, why = all_agree(world, state == 2 * shards, f"AdamW {state} elements, shard {shards}")
    assert ok, why


@pytest.mark.parametrize("window", [0, 1])
def test_only_the_window_is_gathered_in_forward(world, window):
    """While block k runs forward, blocks k .. k + window are gathered and no others."""
    seen = []

    def watch(model, zero):
        for k, block in enumerate(model.blocks):
            block.register_forward_pre_hook(lambda mod, args, k=k: seen.append(
                (k, tuple(u.flats[0].gathered for u in zero.units))))

    zero3_run(world, window=window, watch=watch)
    depth = len(seen[0][1])
    bad = [(k, g) for k, g in seen
           if g != tuple(k <= j <= k + window for j in range(depth))]
    ok, why = all_agree(world, not bad, f"gathered during forward: {bad[:3]}")
    assert ok, why


def test_a_missing_gradient_is_reported(world):
    model = make_model()
    zero = apply_zero3(model, world, make_optimizer("sgd"), units=model.blocks)
    zero.zero_grad()
    try:
        zero.synchronize()
        raised = False
    except RuntimeError as exc:
        raised = f"rank {world.rank}: ZeRO-3" in str(exc)
    zero.close()
    ok, why = all_agree(world, raised, "no error for a step without backward")
    assert ok, why
