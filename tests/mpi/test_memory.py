"""The memory accountant's model states (parallel/memory.py) against the tensors a rank really
holds after a training step: parameters, gradients, optimizer state and wire buckets, for data
parallel and ZeRO 1 and 2, on 1-4 ranks. (Activations are checked in tests/serial/test_memory.py.)
    mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_memory.py
"""
import pytest
import torch
import torch.nn.functional as F

from mpitrain.parallel import SingleRank, apply_data_parallel, apply_zero
from mpitrain.parallel.memory import predict

from oracles import all_agree
from test_data_parallel import TINY, batch, make_model

pytestmark = pytest.mark.mpi


def nbytes(tensors):
    """Bytes of distinct storages (views of one buffer count once)."""
    seen = {}
    for t in tensors:
        if t is not None and t.numel():
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def held_after_one_step(world, parallel, optimizer):
    model = make_model()
    make_opt = (lambda groups: torch.optim.AdamW(groups, lr=1e-3)) if optimizer == "adamw" else (
        lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9))
    if parallel == "dp":
        engine = SingleRank() if world.size == 1 else apply_data_parallel(model, world)
        opt = make_opt(model.parameters())
    else:
        engine = apply_zero(model, world, make_opt, stage=int(parallel[-1]), bucket_mb=0.004)
        opt = engine.optimizer
    x, y = batch(0, 4)
    F.cross_entropy(model(x), y).backward()
    engine.synchronize()
    if parallel == "dp":
        opt.step()
        grads = [p.grad for p in model.parameters()]
    else:
        engine.step()
        grads = [g.master.grad for g in engine.groups] + [
            g.grad_flat for g in engine.groups] + [engine._bucket_buffer]
    held = {"parameters": nbytes(model.parameters()), "gradients": nbytes(grads),
            "optimizer state": nbytes(v for s in opt.state.values() for v in s.values()
                                      if torch.is_tensor(v) and v.ndim)}
    if parallel == "dp" and world.size > 1:
        held["wire buckets"] = nbytes(b.wire for b in engine.buckets)
    engine.close()
    return held


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("parallel", ["dp", "zero1", "zero2"])
def test_model_states_match_the_tensors_held(world, parallel, optimizer):
    held = held_after_one_step(world, parallel, optimizer)
    items, _ = predict(TINY, parallel, world.size, 4, "fp32", optimizer, bucket_mb=0.004)
    predicted = {i.name: i.bytes for i in items if i.name in held}
    # padding: slots are 16-byte aligned and shards a multiple of 4 elements
    slack = 16 * 4 * (len(list(make_model().parameters())) + world.size)
    bad = {k: (held[k], predicted.get(k)) for k in held
           if predicted.get(k) is None or abs(held[k] - predicted[k]) > slack}
    ok, why = all_agree(world, not bad, f"held vs predicted bytes: {bad}")
    assert ok, why
