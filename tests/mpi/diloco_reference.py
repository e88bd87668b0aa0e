"""DiLoCo in one process, plain torch: k workers simulated one after the other, the oracle of
tests/mpi/test_diloco.py. Written from the algorithm, not from mpitrain/parallel/diloco.py:
full vectors (no shards), one model copy per worker."""
import copy

import torch
import torch.nn.functional as F


def fragment_params(model, fragments):
    blocks = list(model.blocks)
    per = len(blocks) // fragments
    owner = {id(p): i // per for i, b in enumerate(blocks) for p in b.parameters()}
    parts, seen = [[] for _ in range(fragments)], False
    for p in model.parameters():
        if id(p) in owner:
            seen = True
            parts[owner[id(p)]].append(p)
        else:
            parts[-1 if seen else 0].append(p)
    return parts


def vector(params):
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def assign(params, flat):
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()


def diloco_reference(make_model, make_optimizer, batch, steps, world_size, per_rank, workers,
                     sync_every, outer_lr, outer_momentum, fragments=1, overlap=0):
    """(global loss per step, [each worker's parameters at the end])."""
    base = make_model()
    models = [copy.deepcopy(base) for _ in range(workers)]
    opts = [make_optimizer(m) for m in models]
    frags = [fragment_params(m, fragments) for m in models]             # [worker][fragment]
    theta = [vector(part) for part in fragment_params(base, fragments)]   # theta_global
    momentum = [torch.zeros_like(t) for t in theta]
    pending = {}                 # fragment -> (merge step, new theta_global, [start per worker])
    rows = world_size * per_rank // workers
    losses = []
    for n in range(steps):
        x, y = batch(n, world_size * per_rank)
        step_loss = 0.0
        for w, (model, opt) in enumerate(zip(models, opts)):
            mine = slice(w * rows, (w + 1) * rows)
            opt.zero_grad()
            loss = F.cross_entropy(model(x[mine]), y[mine])
            loss.backward()
            opt.step()
            step_loss += loss.item() / workers
        losses.append(step_loss)
        step = n + 1
        for f in [f for f, (at, _, _) in pending.items() if at == step]:
            _, new, starts = pending.pop(f)
            for w in range(workers):
                assign(frags[w][f], new + (vector(frags[w][f]) - starts[w]))
        for f in range(fragments):
            if step % sync_every != ((f + 1) * sync_every // fragments) % sync_every:
                continue
            starts = [vector(frags[w][f]) for w in range(workers)]
            delta = sum(theta[f] - s for s in starts) / workers
            if outer_momentum:
                momentum[f] = outer_momentum * momentum[f] + delta
                delta = delta + outer_momentum * momentum[f]
            theta[f] = theta[f] - outer_lr * delta
            if overlap:
                pending[f] = (step + overlap, theta[f].clone(), starts)
            else:
                for w in range(workers):
                    assign(frags[w][f], theta[f])
    for f, (_, new, starts) in pending.items():          # what close() merges
        for w in range(workers):
            assign(frags[w][f], new + (vector(frags[w][f]) - starts[w]))
    return losses, [[p.detach().clone() for p in m.parameters()] for m in models]
