"""ZeRO stages 1 and 2 against one process (computed on every rank): the same losses and the
same parameters after 20 steps, 1-4 ranks (the tiny ViT's parameter count does not divide by 3
or 4), with and without gradient accumulation; the optimizer state is really sharded.
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_zero.py
"""
import pytest
import torch
import torch.nn.functional as F

from mpitrain.parallel import apply_zero

from oracles import all_agree
from test_data_parallel import on_gpu  # noqa: F401  (a fixture, used by name)
from test_data_parallel import (PER_RANK, batch, compare, make_model, needs_gpu, run_steps,
                                single_process_run)

pytestmark = pytest.mark.mpi


def groups_of(model):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}]


def make_optimizer(kind):
    if kind == "adamw":
        return lambda groups: torch.optim.AdamW(groups, lr=3e-3, weight_decay=0.05)
    return lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9)


def zero_run(world, stage, accum=1, optimizer="sgd", bucket_mb=25.0, reduce_dtype="fp32"):
    model = make_model(seed=0 if world.rank == 0 else 100 + world.rank)
    groups = groups_of(model) if optimizer == "sgd" else None
    zero = apply_zero(model, world, make_optimizer(optimizer), stage=stage, groups=groups,
                      bucket_mb=bucket_mb, reduce_dtype=reduce_dtype)
    losses, identical = run_steps(world, model, zero, zero.zero_grad, zero.step, accum)
    state = sum(v.numel() for s in zero.optimizer.state.values() for v in s.values()
                if torch.is_tensor(v) and v.ndim)
    shards = sum(g.shard for g in zero.groups)
    zero.close()
    return losses, [p.detach().clone() for p in model.parameters()], identical, state, shards


def sgd_reference_with_groups(world_size):
    """One process with the same two groups (weight decay on matrices only)."""
    return single_process_run(world_size, make_optimizer=lambda model: torch.optim.SGD(
        groups_of(model), lr=0.05, momentum=0.9))


@pytest.fixture(scope="module")
def sgd_reference(world):
    return sgd_reference_with_groups(world.size)


@pytest.mark.parametrize("accum", [1, 2], ids=["no accumulation", "no_sync x2"])
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_follows_one_process(world, sgd_reference, stage, accum):
    losses, params, identical, state, shards = zero_run(world, stage, accum,
                                                        bucket_mb=0.004 if stage == 2 else 25.0)
    compare(world, losses, params, identical, sgd_reference)
    ok, why = all_agree(world, state == shards, f"momentum holds {state} elements, shard {shards}")
    assert ok, why


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_adamw_state_is_sharded(world, stage):
    losses, params, identical, state, shards = zero_run(world, stage, optimizer="adamw")
    compare(world, losses, params, identical, single_process_run(world.size, "adamw"),
            rtol=1e-5, atol=1e-4)
    ok, why = all_agree(world, state == 2 * shards, f"AdamW holds {state} elements for a shard "
                                                    f"of {shards}: expected 2 per element")
    assert ok, why


def test_zero2_releases_gradients_and_reports_a_missing_one(world):
    model = make_model()
    zero = apply_zero(model, world, make_optimizer("sgd"), stage=2, bucket_mb=0.004)
    x, y = batch(0, PER_RANK)
    F.cross_entropy(model(x), y).backward()
    released = all(p.grad is None for p in model.parameters())
    zero.synchronize()
    zero.zero_grad()
    try:
        zero.synchronize()                       # no backward since zero_grad: every bucket missing
        raised = False
    except RuntimeError as exc:
        raised = f"rank {world.rank}: ZeRO-2" in str(exc)
    zero.close()
    ok, why = all_agree(world, released and raised, f"released={released} raised={raised}")
    assert ok, why


@pytest.mark.parametrize("stage", [1, 2])
def test_bf16_reduction_within_its_tolerance(world, sgd_reference, stage):
    """Gradients reduce-scattered in bfloat16 (reduce_dtype): losses within 1% of one process,
    parameters within 2e-2 (the data-parallel bf16 wire's tolerance)."""
    losses, params, identical, _, _ = zero_run(world, stage, bucket_mb=0.004 if stage == 2 else 25.0,
                                               reduce_dtype="bf16")
    compare(world, losses, params, identical, sgd_reference, rtol=1e-2, atol=2e-2)


@needs_gpu
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_on_gpu_follows_one_process(world, on_gpu, stage):  # noqa: F811
    losses, params, identical, _, _ = zero_run(world, stage, accum=2,
                                               bucket_mb=0.004 if stage == 2 else 25.0)
    compare(world, losses, params, identical, sgd_reference_with_groups(world.size))
