"""Lab 5: data parallelism, naive then bucketed and overlapped; the loss equals one process.

    mpiexec -n 4 python examples/labs/05_data_parallel.py [--steps 10]

What to look for:
  - every rank computes gradients on its own quarter of the batch; averaging them gives the
    gradient of the whole batch, so N ranks follow the same losses as one process with the
    whole batch (the single-process column is computed on every rank as the oracle).
  - naive: after backward, one all-reduce per parameter (~40 here, ~300 in ViT-L).
  - bucketed: gradients are packed into a few flat buckets (the plan is printed: the last layers
    first, a small first bucket) and all-reduced by a communication thread while backward goes on.
  - the time per step of each, and how much of the communication was left after backward.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from _lab import lab_args, verdict

from mpitrain.comm import init
from mpitrain.models import ViTConfig, VisionTransformer
from mpitrain.parallel import apply_data_parallel

TINY = ViTConfig(name="lab", img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=32,
                 depth=2, num_heads=2, mlp_dim=64)
PER_RANK = 8


def batch(step, size):
    g = torch.Generator().manual_seed(step)
    return torch.randn(size, 1, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)


def run(world, steps, engine):
    """engine None: one process, the whole batch. Else 'naive' or 'bucketed' over the ranks."""
    torch.manual_seed(0)
    model = VisionTransformer(TINY)
    dp = None
    if engine is not None:
        dp = apply_data_parallel(model, world, naive=engine == "naive", bucket_mb=0.02,
                                 first_bucket_mb=0.005)
        if engine == "bucketed":
            world.print0(dp.describe())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses, start = [], time.perf_counter()
    for step in range(steps):
        x, y = batch(step, world.size * PER_RANK)
        if engine is not None:
            mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
            x, y = x[mine], y[mine]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if dp is not None:
            dp.synchronize()
        opt.step()
        value = loss.item()
        losses.append(value if engine is None else
                      float(np.mean(world.mpi_comm.allgather(value))))
    seconds = (time.perf_counter() - start) / steps
    waited = dp.stats["wait_s"] / steps if dp is not None and hasattr(dp, "stats") else None
    if dp is not None:
        dp.close()
    return losses, seconds, waited


def main():
    args = lab_args(__doc__, takes=(), extra=lambda p: p.add_argument("--steps", type=int, default=10))
    world = init()
    torch.set_num_threads(1)
    single, t_single, _ = run(world, args.steps, None)
    naive, t_naive, _ = run(world, args.steps, "naive")
    bucketed, t_bucketed, waited = run(world, args.steps, "bucketed")
    world.print0(f"\n{'step':>4} {'one process':>12} {'naive':>12} {'bucketed':>12}")
    for i, (a, b, c) in enumerate(zip(single, naive, bucketed)):
        world.print0(f"{i:4d} {a:12.6f} {b:12.6f} {c:12.6f}")
    world.print0(f"ms per step: one process (whole batch) {t_single * 1e3:.1f}, naive "
                 f"{t_naive * 1e3:.1f}, bucketed {t_bucketed * 1e3:.1f} (of which "
                 f"{waited * 1e3:.2f} waiting for communication after backward)")
    same = np.allclose(naive, single, rtol=1e-5) and np.allclose(bucketed, single, rtol=1e-5)
    verdict(world, same, f"{world.size} ranks follow the single-process losses (rtol 1e-5)")


if __name__ == "__main__":
    main()
