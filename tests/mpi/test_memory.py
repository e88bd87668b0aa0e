"""The memory accountant's model states (parallel/memory.py) against the tensors a rank really
holds after a training step: parameters, gradients, optimizer state and wire buckets, for data
parallel and ZeRO 1 and 2, on 1-4 ranks. (Activations are checked in tests/serial/test_memory.py.)
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_memory.py
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mpitrain.models import VisionTransformer

from mpitrain.parallel import SingleRank, apply_data_parallel, apply_zero, apply_zero3
from mpitrain.parallel.memory import held_bytes, predict, watch_zero3_peak

from oracles import all_agree
from test_data_parallel import TINY, batch

DEEP = dataclasses.replace(TINY, name="deep", depth=4)    # enough blocks for a window to show


def make_model():
    torch.manual_seed(0)
    return VisionTransformer(DEEP)

pytestmark = pytest.mark.mpi


def make_engine(world, model, parallel, make_opt):
    if parallel in ("dp", "dp-packed"):
        engine = SingleRank() if world.size == 1 else apply_data_parallel(
            model, world, grad_views=parallel == "dp")
        return engine, make_opt(model.parameters())
    if parallel == "zero3":
        engine = apply_zero3(model, world, make_opt, units=model.blocks, window=1)
    else:
        engine = apply_zero(model, world, make_opt, stage=int(parallel[-1]), bucket_mb=0.004)
    return engine, engine.optimizer


def held_after_steps(world, parallel, optimizer):
    """The bytes held after a second step; for ZeRO-3 at its peak of model state instead: at
    the first reduce-scatter of the second step's backward (one block's gradients out, the root
    and window + 1 blocks gathered)."""
    model = make_model()
    make_opt = (lambda groups: torch.optim.AdamW(groups, lr=1e-3)) if optimizer == "adamw" else (
        lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9))
    engine, opt = make_engine(world, model, parallel, make_opt)
    seen = watch_zero3_peak(model, engine, opt) if parallel == "zero3" else []
    for step in range(2):
        seen.clear()
        x, y = batch(step, 4)
        F.cross_entropy(model(x), y).backward()
        engine.synchronize()
        if parallel in ("dp", "dp-packed"):
            opt.step()
        else:
            engine.step()
            engine.zero_grad()
    held = seen[0] if seen else held_bytes(model, engine, opt)
    engine.close()
    return held


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("parallel", ["dp", "dp-packed", "zero1", "zero2", "zero3"])
def test_model_states_match_the_tensors_held(world, parallel, optimizer):
    """dp-packed: data parallel with grad_views=False, whose buckets are memory of their own."""
    held = held_after_steps(world, parallel, optimizer)
    items, _ = predict(DEEP, "dp" if parallel == "dp-packed" else parallel, world.size, 4,
                       precision="fp32", optimizer=optimizer, bucket_mb=0.004, grad_views=parallel != "dp-packed")
    predicted = {i.name: i.bytes for i in items if i.name in held}
    # padding: slots are 16-byte aligned and shards a multiple of 4 elements
    slack = 16 * 4 * (len(list(make_model().parameters())) + world.size)
    bad = {k: (held[k], predicted.get(k)) for k in held
           if predicted.get(k) is None or abs(held[k] - predicted[k]) > slack}
    ok, why = all_agree(world, not bad, f"held vs predicted bytes: {bad}")
    assert ok, why
