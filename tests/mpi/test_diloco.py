"""DiLoCo against its one-process reference (diloco_reference.py, computed on every rank): the
same losses and each worker's parameters after 12 steps, for every number of workers that
divides the ranks (k = 1..4 over runs of 1-4 ranks), H = 1, 3, 4, F = 1, 2, with and without
overlap; the identity with data parallel; bad settings refused by name.
    mpiexec -n 4 python -m pytest --with-mpi tests/mpi/test_diloco.py
"""
import pytest
import torch
import torch.nn.functional as F

from mpitrain.parallel import SingleRank, apply_data_parallel, apply_zero
from mpitrain.parallel.diloco import DiLoCo, DiLoCoConfigError

from diloco_reference import diloco_reference
from oracles import all_agree
from test_data_parallel import PER_RANK, batch, make_model

pytestmark = pytest.mark.mpi
STEPS = 12


def sgd(model_or_groups):
    params = model_or_groups.parameters() if hasattr(model_or_groups, "parameters") else model_or_groups
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def inner_dp(model, comm):
    engine = SingleRank() if comm.size == 1 else apply_data_parallel(model, comm)
    return engine, sgd(model)


def inner_zero1(model, comm):
    zero = apply_zero(model, comm, sgd, stage=1)
    return zero, zero.optimizer


def run_diloco(world, workers, make_inner=inner_dp, **settings):
    model = make_model()
    engine = DiLoCo(model, world, make_inner, workers, **settings)
    zero = engine.inner if hasattr(engine.inner, "step") else None
    losses = []
    for n in range(STEPS):
        x, y = batch(n, world.size * PER_RANK)
        mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
        loss = F.cross_entropy(model(x[mine]), y[mine])
        loss.backward()
        engine.synchronize()
        if zero is not None:
            zero.step()
            zero.zero_grad()
        else:
            engine.optimizer.step()
            engine.optimizer.zero_grad(set_to_none=False)
        engine.after_inner_step(n + 1)
        mean = torch.tensor([loss.item()], dtype=torch.float64)
        world.all_reduce(mean, op="avg")
        losses.append(float(mean[0]))
    engine.close()
    return losses, [p.detach().clone() for p in model.parameters()], engine.worker


def check(world, workers, make_inner=inner_dp, rtol=1e-5, **settings):
    losses, params, worker = run_diloco(world, workers, make_inner, **settings)
    ref_losses, ref_params = diloco_reference(make_model, sgd, batch, STEPS, world.size, PER_RANK,
                                              workers, **settings)
    problems = []
    if not torch.allclose(torch.tensor(losses), torch.tensor(ref_losses), rtol=rtol, atol=0):
        problems.append(f"losses {losses[:4]} vs the reference {ref_losses[:4]}")
    worst = max(float((p - q).abs().max()) for p, q in zip(params, ref_params[worker]))
    if worst > rtol * max(float(q.abs().max()) for q in ref_params[worker]):
        problems.append(f"worker {worker}'s parameters differ from the reference by {worst:.3g}")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


def divisors(n):
    return [k for k in range(1, n + 1) if n % k == 0]


SETTINGS = {
    "H=1": dict(sync_every=1, outer_lr=0.7, outer_momentum=0.9),
    "H=3": dict(sync_every=3, outer_lr=0.7, outer_momentum=0.9),
    "H=3 overlap 2": dict(sync_every=3, outer_lr=0.7, outer_momentum=0.9, overlap=2),
    "H=4 F=2": dict(sync_every=4, outer_lr=0.7, outer_momentum=0.9, fragments=2),
    "H=4 F=2 overlap 1": dict(sync_every=4, outer_lr=0.7, outer_momentum=0.9, fragments=2,
                              overlap=1),
    "no momentum": dict(sync_every=3, outer_lr=0.5, outer_momentum=0.0),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_matches_the_reference_for_every_worker_count(world, name):
    for workers in divisors(world.size):
        check(world, workers, **SETTINGS[name])


def test_zero1_inside_each_worker(world):
    workers = divisors(world.size)[len(divisors(world.size)) // 2]
    check(world, workers, inner_zero1, sync_every=3, outer_lr=0.7, outer_momentum=0.9)


def test_one_step_of_plain_averaging_is_data_parallel(world):
    """--sync-every 1, outer lr 1, no momentum: every step the workers' parameters are averaged,
    which for SGD (linear in the gradients, momentum included) is data parallel's step."""
    from test_data_parallel import single_process_run
    losses, params, _ = run_diloco(world, world.size, sync_every=1, outer_lr=1.0,
                                   outer_momentum=0.0)
    ref_losses, ref_params = single_process_run(world.size, make_optimizer=sgd)
    ref_losses = ref_losses[:STEPS]
    close = torch.allclose(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-5, atol=0)
    ok, why = all_agree(world, close, f"losses {losses[:4]} vs one process {ref_losses[:4]}")
    assert ok, why


@pytest.mark.parametrize("settings, words", [
    (dict(workers=0, sync_every=2), "--workers 0"),
    (dict(workers=1, sync_every=0), "--sync-every 0"),
    (dict(workers=1, sync_every=4, fragments=3), "--fragments 3"),
    (dict(workers=1, sync_every=3, fragments=2), "--fragments 2"),
    (dict(workers=1, sync_every=4, fragments=2, overlap=2), "--overlap 2"),
    (dict(workers=1, sync_every=4, outer_dtype="fp8"), "--outer-dtype fp8"),
])
def test_bad_settings_are_refused_by_name(world, settings, words):
    workers = settings.pop("workers")
    with pytest.raises(DiLoCoConfigError, match=words):
        DiLoCo(make_model(), world, inner_dp, workers, **settings)


@pytest.mark.skipif("world_size() < 2")
def test_workers_that_do_not_divide_the_ranks_are_refused(world):
    with pytest.raises(DiLoCoConfigError, match=f"--workers {world.size + 1}"):
        DiLoCo(make_model(), world, inner_dp, world.size + 1, sync_every=2)


from test_data_parallel import needs_gpu, on_gpu  # noqa: E402,F401  (a fixture, used by name)


@needs_gpu
@pytest.mark.parametrize("name", ["H=3 overlap 2", "H=4 F=2 overlap 1"])
def test_on_cuda_tensors_matches_the_reference(world, on_gpu, name):
    """The same engine on the ranks' GPUs (shared round robin): parameters, shards and the
    exchanges are CUDA tensors, moved by the GPU transports."""
    for workers in divisors(world.size):
        check(world, workers, rtol=1e-4, **SETTINGS[name])
