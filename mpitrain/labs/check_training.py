"""The checks of the training exercises (bucketed data parallel, a ZeRO-1 step).

A small MLP trains for three steps on every rank's slice of one batch; the oracle is the same
model trained in this process on the whole batch (what data parallelism must reproduce). Each
step compares the gradients (data parallel) or the updated parameters (ZeRO-1) and names the
first wrong element with its step, parameter and rank. Beyond the values: data parallel must
send fewer all-reduces than there are parameters (else it is the naive version), and ZeRO-1's
optimizer must hold the state of this rank's shard only.
"""
import threading

import torch

from ..comm.communicator import Communicator

STEPS, PER_RANK, FEATURES, CLASSES = 3, 4, 16, 4
BUCKET_MB = 0.004                  # about 4 KB: the MLP's 11 KB of gradients make 3-4 buckets


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
        torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, CLASSES))


def batch(step, p):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(PER_RANK * p, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (PER_RANK * p,), generator=g)
    return x, y


def loss_of(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def first_difference(rank, what, pairs, oracle_name, rtol=1e-4, atol=1e-6):
    """The first (name, got, want) whose elements differ, described; None when all agree."""
    for name, got, want in pairs:
        if got is None:
            return f"rank {rank}: parameter {name} has no {what}"
        got, want = got.detach().reshape(-1), want.detach().reshape(-1)
        bad = torch.nonzero(~torch.isclose(got, want, rtol=rtol, atol=atol)).reshape(-1)
        if bad.numel():
            i = int(bad[0])
            return (f"rank {rank}: {what} of {name}, element {i}: {got[i].item():.6g}, "
                    f"{oracle_name} gives {want[i].item():.6g} ({bad.numel()} of {got.numel()} "
                    f"element(s) wrong)")
    return None


class CountedAllReduces:
    """Counts Communicator.all_reduce calls of every communicator (the engine's thread's too)
    while it is open."""

    def __enter__(self):
        self.calls = 0
        self._lock = threading.Lock()
        self._original = Communicator.all_reduce
        original, counter = self._original, self

        def counted(comm, *args, **kwargs):
            with counter._lock:
                counter.calls += 1
            return original(comm, *args, **kwargs)
        Communicator.all_reduce = counted
        return self

    def __exit__(self, *exc):
        Communicator.all_reduce = self._original


def check_buckets(student, reference, comm, yours_comm, ref_comm):
    p, r = comm.size, comm.rank
    model, oracle = tiny_model(), tiny_model()
    names = [n for n, _ in model.named_parameters()]
    with CountedAllReduces() as counter:
        dp = student.DataParallel(model, yours_comm, bucket_mb=BUCKET_MB)
        sgd, sgd_oracle = (torch.optim.SGD(m.parameters(), lr=0.5) for m in (model, oracle))
        try:
            for step in range(1, STEPS + 1):
                x, y = batch(step, p)
                mine = slice(r * PER_RANK, (r + 1) * PER_RANK)
                sgd.zero_grad(set_to_none=True)
                before = counter.calls
                loss_of(model, x[mine], y[mine]).backward()
                dp.synchronize()
                calls = counter.calls - before
                sgd_oracle.zero_grad(set_to_none=True)
                loss_of(oracle, x, y).backward()
                pairs = [(n, a.grad, b.grad) for n, a, b in
                         zip(names, model.parameters(), oracle.parameters())]
                problem = first_difference(r, "the gradient", pairs,
                                           "one process on the whole batch")
                if problem is None and p > 1 and calls >= len(names):
                    problem = (f"rank {r}: {calls} all-reduces for {len(names)} "
                               f"parameters: one per parameter is the naive version; fill "
                               f"buckets of bucket_mb ({BUCKET_MB} MB here) and all-reduce "
                               f"each once")
                yield f"step {step}", problem
                sgd.step()
                sgd_oracle.step()
        finally:
            close = getattr(dp, "close", None)
            if close is not None:
                close()


def state_elements(optimizer):
    return sum(t.numel() for state in optimizer.state.values() for t in state.values()
               if torch.is_tensor(t) and t.dim() > 0)


def check_zero1(student, reference, comm, yours_comm, ref_comm):
    p, r = comm.size, comm.rank
    model, oracle = tiny_model(), tiny_model()
    names = [n for n, _ in model.named_parameters()]
    total = sum(q.numel() for q in oracle.parameters())

    def make_optimizer(groups):
        return torch.optim.SGD(groups, lr=0.5, momentum=0.9)
    zero = student.Zero(model, yours_comm, make_optimizer, stage=1)
    sgd_oracle = make_optimizer(oracle.parameters())
    for step in range(1, STEPS + 1):
        x, y = batch(step, p)
        mine = slice(r * PER_RANK, (r + 1) * PER_RANK)
        zero.zero_grad()
        loss_of(model, x[mine], y[mine]).backward()
        zero.synchronize()
        zero.step()
        sgd_oracle.zero_grad(set_to_none=True)
        loss_of(oracle, x, y).backward()
        sgd_oracle.step()
        pairs = [(n, a, b) for n, a, b in zip(names, model.parameters(), oracle.parameters())]
        problem = first_difference(r, "the value after the step", pairs,
                                   "one process on the whole batch")
        if problem is None and p > 1:
            kept = state_elements(zero.optimizer)
            shard = -(-total // p)
            if kept > shard + 4 * len(names) + p:           # room for alignment padding
                problem = (f"rank {r}: the optimizer keeps state for {kept} elements "
                           f"of the model's {total}; ZeRO-1 keeps only this rank's shard (about "
                           f"{total} / {p} = {shard})")
        yield f"step {step}", problem


