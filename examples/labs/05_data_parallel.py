"""Lab 5: data parallelism, naive then bucketed and overlapped; the loss equals one process.

    mpiexec -n 4 python examples/labs/05_data_parallel.py [--steps 10] [--png buckets.png]

What to look for:
  - every rank computes gradients on its own quarter of the batch; averaging them gives the
    gradient of the whole batch, so N ranks follow the same losses as one process with the
    whole batch (the single-process column is computed on every rank as the oracle).
  - naive: after backward, one all-reduce per parameter (~40 here, ~300 in ViT-L).
  - bucketed: gradients are packed into a few flat buckets (the plan is printed: the last layers
    first, a small first bucket) and all-reduced by a communication thread while backward goes on.
  - times are medians over the steps after 2 untimed ones (the first steps pay for allocations
    and MPI's connections). On the tiny model, on a quiet machine, bucketed gains little: its
    gradients are 0.07 MB, so the all-reduces cost a few latencies either way, and on a laptop
    whose cores all run ranks the communication thread has no free core to overlap on. When
    ranks share cores with other work, every message waits for its peer to be scheduled, and
    the engine with fewer messages wins by far more than the quiet latency says. The lab prints
    the arithmetic (all-reduces per step times the measured latency of one) and which case the
    run showed.
  - where bucketing wins: a deep, narrow model (many small parameters). Naive pays one latency
    per parameter; the buckets pay one per bucket. The sweep over bucket sizes shows both ends:
    tiny buckets are the naive version again, one huge bucket leaves nothing to overlap (it is
    sent only when backward has finished). --png plots ms per step against the bucket size.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from _lab import lab_args, questions, verdict

from mpitrain.comm import init
from mpitrain.models import ViTConfig, VisionTransformer
from mpitrain.parallel import apply_data_parallel

TINY = ViTConfig(name="lab", img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=32,
                 depth=2, num_heads=2, mlp_dim=64)
DEEP = ViTConfig(name="lab-deep", img_size=8, patch_size=4, in_chans=1, num_classes=10,
                 embed_dim=16, depth=16, num_heads=2, mlp_dim=32)     # ~200 small parameters
PER_RANK = 8
WARMUP = 2
SWEEP_MB = (0.001, 0.004, 0.016, 0.064, 1.0)


def batch(step, size):
    g = torch.Generator().manual_seed(step)
    return torch.randn(size, 1, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)


def run(world, steps, engine, cfg=TINY, bucket_mb=0.02, show_plan=False):
    """engine None: one process, the whole batch. Else 'naive' or 'bucketed' over the ranks.
    Returns the losses, the median seconds of the steps after WARMUP, and the all-reduces of a
    step."""
    torch.manual_seed(0)
    model = VisionTransformer(cfg)
    dp = None
    if engine is not None:
        dp = apply_data_parallel(model, world, naive=engine == "naive", bucket_mb=bucket_mb,
                                 first_bucket_mb=min(0.005, bucket_mb))
        if show_plan:
            world.print0(dp.describe())
    messages = (len(dp.buckets) if hasattr(dp, "buckets") else
                sum(1 for q in model.parameters() if q.requires_grad)) if dp else 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses, times = [], []
    for step in range(steps):
        world.mpi_comm.Barrier()
        start = time.perf_counter()
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
        times.append(time.perf_counter() - start)
        value = loss.item()
        losses.append(value if engine is None else
                      float(np.mean(world.mpi_comm.allgather(value))))
    if dp is not None:
        dp.close()
    mine = np.array(times[WARMUP:])
    slowest = np.empty_like(mine)
    world.mpi_comm.Allreduce(mine, slowest, op=MPI.MAX)      # each step as its slowest rank saw it
    return losses, float(np.median(slowest)), messages


def latency(world, repeats=50):
    """Median seconds of one 4-byte all-reduce (the cost every message pays at least)."""
    x = np.ones(1, np.float32)
    for _ in range(5):
        world.all_reduce(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        world.all_reduce(x)
        times.append(time.perf_counter() - start)
    return world.mpi_comm.allreduce(float(np.median(times)), op=MPI.MAX)


def why(alpha, k_naive, k_bucketed, t_naive, t_bucketed, t_single, size):
    """The arithmetic behind the two times, and what the measured difference says."""
    bound = (k_naive - k_bucketed) * alpha
    text = (f"why: one all-reduce costs at least {alpha * 1e6:.0f} us here; naive makes {k_naive} "
            f"a step, bucketed {k_bucketed}, so naive's extra messages cost at least "
            f"{bound * 1e3:.2f} ms, against about {t_single * 1e3 / size:.1f} ms of compute per "
            f"rank. ")
    gain = t_naive - t_bucketed
    if gain < max(0.1 * t_naive, 2 * bound):
        return text + ("Measured, bucketed gained little or nothing: the messages are too few and "
                       "too small for their count to matter, and with every core running a "
                       "rank the communication thread has no free core to overlap on.")
    return text + (f"Measured, bucketed gained {gain * 1e3:.1f} ms, "
                   f"{gain / max(bound, 1e-9):.0f}x that bound: with ranks sharing cores (or other "
                   f"work on them), a message waits until its peer is scheduled, so every "
                   f"message costs far more than the quiet latency, and fewer messages win.")


def sweep_plot(path, rows, naive_ms, size):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([mb for mb, _, _ in rows], [ms for _, ms, _ in rows], "o-", label="bucketed")
    for mb, ms, buckets in rows:
        ax.annotate(f"{buckets} buckets", (mb, ms), textcoords="offset points", xytext=(4, 6),
                    fontsize=7)
    ax.axhline(naive_ms, color="grey", ls="--", label="naive (one all-reduce per parameter)")
    ax.set_xscale("log")
    ax.set_xlabel("bucket size (MB)")
    ax.set_ylabel("ms per step (median)")
    ax.set_title(f"{DEEP.depth}-block narrow ViT, {size} ranks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    def flags(p):
        p.add_argument("--steps", type=int, default=10, help=f"steps per run ({WARMUP} untimed)")
        p.add_argument("--sweep-steps", type=int, default=6, help="steps per bucket size")
    args = lab_args(__doc__, takes=("png",), extra=flags)
    if args.steps <= WARMUP or args.sweep_steps <= WARMUP:
        raise SystemExit(f"--steps and --sweep-steps must exceed the {WARMUP} untimed steps")
    world = init()
    torch.set_num_threads(1)
    single, t_single, _ = run(world, args.steps, None)
    naive, t_naive, k_naive = run(world, args.steps, "naive")
    bucketed, t_bucketed, k_bucketed = run(world, args.steps, "bucketed", show_plan=True)
    world.print0(f"\n{'step':>4} {'one process':>12} {'naive':>12} {'bucketed':>12}")
    for i, (a, b, c) in enumerate(zip(single, naive, bucketed)):
        world.print0(f"{i + 1:4d} {a:12.6f} {b:12.6f} {c:12.6f}")
    alpha = latency(world)
    world.print0(f"\nms per step (median of steps {WARMUP + 1}-{args.steps}): one process (whole "
                 f"batch) {t_single * 1e3:.1f}, naive {t_naive * 1e3:.1f}, bucketed "
                 f"{t_bucketed * 1e3:.1f}")
    world.print0(why(alpha, k_naive, k_bucketed, t_naive, t_bucketed, t_single, world.size))

    world.print0(f"\nwhere buckets win: {DEEP.depth} blocks of width {DEEP.embed_dim}, "
                 f"{DEEP.count_params()} parameters in "
                 f"{sum(1 for _ in VisionTransformer(DEEP).parameters())} tensors")
    _, t_deep_naive, k_deep = run(world, args.sweep_steps, "naive", cfg=DEEP)
    rows = []
    for mb in SWEEP_MB:
        _, t, buckets = run(world, args.sweep_steps, "bucketed", cfg=DEEP, bucket_mb=mb)
        rows.append((mb, t * 1e3, buckets))
    world.print0(f"  naive: {k_deep} all-reduces, {t_deep_naive * 1e3:.1f} ms per step")
    for mb, ms, buckets in rows:
        world.print0(f"  buckets of {mb:g} MB: {buckets:3d} all-reduces, {ms:.1f} ms per step")
    if world.rank == 0 and args.png:
        sweep_plot(args.png, rows, t_deep_naive * 1e3, world.size)
        print(f"wrote {args.png}")
    questions(world,
              "How many all-reduces does the naive engine make per step on the deep model, and "
              "how much time does the latency line say they cost at least?",
              "Which bucket size was fastest? Why are the smallest buckets no better than naive, "
              "and what does one bucket holding everything give up?",
              "On the tiny model, would more steps or more ranks change which engine is faster? "
              "Use the 'why' line.")
    same = np.allclose(naive, single, rtol=1e-5) and np.allclose(bucketed, single, rtol=1e-5)
    verdict(world, same, f"{world.size} ranks follow the single-process losses (rtol 1e-5)")


if __name__ == "__main__":
    main()
