"""Lab 4: recursive doubling and Rabenseifner, and the alpha-beta cost model against the clock.

    mpiexec -n 4 python examples/labs/04_doubling_cost_model.py [--step] [--png model.png]

What to look for:
  - recursive doubling: in step k rank r swaps its whole buffer with rank r XOR 2^k and adds:
    log2(p) steps, but every step moves everything.
  - Rabenseifner: recursive *halving* first (each step swaps half of what is left, so the
    messages shrink), then recursive doubling of the pieces back (all-gather): 2 log2(p) steps
    moving 2 (p - 1) / p of the buffer, as little as the ring, in fewer steps.
  - the model: a message of n bytes costs alpha + n * beta, a reduction n * gamma. Measured here
    (alpha, beta from Sendrecv ping-pongs, gamma from numpy), it predicts each algorithm's time:
      doubling      log2(p) (alpha + n beta + n gamma)
      ring          2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma
      rabenseifner  2 log2(p) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma
    The table compares prediction and measurement; --png plots both: where do the lines cross?
    (mpitrain.comm.auto switches algorithm near that crossover.)
  - noise: every point is the median of --repeats calls after 3 untimed ones, with the 10th-90th
    percentile beside it. On a loaded machine (or more ranks than cores) alpha can grow tenfold
    and a bigger message can look faster; the lab says when the fit is not to be trusted.
"""
import math
import time

import numpy as np
from mpi4py import MPI

from _lab import lab_args, questions, show, verdict

from mpitrain.comm import init

ALGORITHMS = ("recursive_doubling", "rabenseifner", "ring")


def timed(world, call, repeats, warmup=3):
    """(median, 10th, 90th percentile) seconds of one call, each call timed on its own as its
    slowest rank saw it, after `warmup` untimed calls (first calls pay for page faults, MPI's
    connection set-up and cold caches)."""
    for _ in range(warmup):
        call()
    times = np.empty(repeats)
    for k in range(repeats):
        world.mpi_comm.Barrier()
        start = time.perf_counter()
        call()
        times[k] = time.perf_counter() - start
    slowest = np.empty_like(times)
    world.mpi_comm.Allreduce(times, slowest, op=MPI.MAX)
    return tuple(float(v) for v in np.percentile(slowest, [50, 10, 90]))


FIT_BYTES = (8, 64 << 10, 1 << 20, 4 << 20)


def fit_alpha_beta(world, repeats):
    """alpha and beta by least squares on half the round trip of a Sendrecv between rank pairs
    at FIT_BYTES; also the spread of the 8-byte timing and how far the line misses the points,
    which say whether the fit can be trusted on this machine now."""
    comm, rank, p = world.mpi_comm, world.rank, world.size
    peer = rank ^ 1 if (rank ^ 1) < p else rank
    medians, spread = [], None
    for n in FIT_BYTES:
        a, b = np.zeros(n, np.uint8), np.zeros(n, np.uint8)
        median, low, high = timed(world, lambda: comm.Sendrecv(a, peer, 0, b, peer, 0), repeats)
        medians.append(median)
        spread = spread or high / max(low, 1e-9)
    beta, alpha = np.polyfit(np.array(FIT_BYTES, float), np.array(medians), 1,
                             w=1 / np.array(medians))          # relative misses count alike
    alpha, beta = max(alpha, 1e-7), max(beta, 1e-12)
    miss = max(abs(alpha + n * beta - m) / m for n, m in zip(FIT_BYTES, medians))
    return alpha, beta, spread, miss


def trust(spread, miss, rows):
    """Reasons not to trust the fit (empty: trust it)."""
    why = []
    if spread > 2:
        why.append(f"the 8-byte exchange varied {spread:.1f}x between calls (p90/p10)")
    if miss > 0.5:
        why.append(f"the line alpha + n beta misses a fitted point by {miss:.0%}")
    for algorithm in ALGORITHMS:
        times = [(n, measured) for n, a, _, (measured, _, _) in rows if a == algorithm]
        for (n1, t1), (n2, t2) in zip(times, times[1:]):
            if t2 < 0.8 * t1:
                why.append(f"{algorithm}: {n2} bytes measured faster than {n1}")
    return why


def predict(algorithm, n, p, alpha, beta, gamma):
    lg = math.log2(p)
    if algorithm == "recursive_doubling":
        return lg * (alpha + n * beta + n * gamma)
    if algorithm == "ring":
        return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta + (p - 1) / p * n * gamma
    return 2 * lg * alpha + 2 * (p - 1) / p * n * beta + (p - 1) / p * n * gamma


def add_flags(p):
    p.add_argument("--repeats", type=int, default=20, help="timed calls per point (after 3 untimed)")
    p.add_argument("--sizes", default="1K,16K,256K,1M,4M", help="bytes per all-reduce")
    p.add_argument("--model-png", metavar="PATH.png",
                   help="the model against the clock (default with --png X.png: X-model.png)")


def main():
    args = lab_args(__doc__, size=8, extra=add_flags)
    world = init()
    rank, p = world.rank, world.size
    ok = True
    with world.trace(snapshots=True) as trace:
        for algorithm in ("recursive_doubling", "rabenseifner"):
            x = (np.arange(args.size) + 100 * rank).astype(np.float64)
            oracle = np.empty_like(x)
            world.mpi_comm.Allreduce(x, oracle, op=MPI.SUM)
            world.all_reduce(x, algorithm=algorithm)
            ok &= bool(np.array_equal(x, oracle))
    show(world, trace, args, "recursive doubling, then Rabenseifner")

    alpha, beta, spread, miss = fit_alpha_beta(world, args.repeats)
    a, b = np.ones(1 << 20, np.float32), np.ones(1 << 20, np.float32)
    start = time.perf_counter()
    for _ in range(10):
        np.add(a, b, out=a)
    gamma = (time.perf_counter() - start) / 10 / a.nbytes
    world.print0(f"\nmodel: alpha {alpha * 1e6:.1f} us, beta {1 / beta / 1e9 if beta > 0 else float('inf'):.2f} "
                 f"GB/s, gamma {1 / gamma / 1e9:.2f} GB/s (reduce); {p} ranks")
    sizes = [int(s[:-1]) * {"K": 1 << 10, "M": 1 << 20}[s[-1]] if s[-1] in "KM" else int(s)
             for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        buf = np.ones(n // 4, np.float32)
        for algorithm in ALGORITHMS:
            measured = timed(world, lambda: world.all_reduce(buf, algorithm=algorithm), args.repeats)
            rows.append((n, algorithm, predict(algorithm, n, p, alpha, beta, gamma), measured))
    world.print0(f"{'bytes':>9} {'algorithm':>20} {'model us':>10} {'measured us':>12}"
                 f" {'p10-p90 us':>17}   (median of {args.repeats} calls after 3 untimed)")
    for n, algorithm, model, (measured, low, high) in rows:
        world.print0(f"{n:9d} {algorithm:>20} {model * 1e6:10.1f} {measured * 1e6:12.1f}"
                     f" {low * 1e6:8.1f}-{high * 1e6:<8.1f}")
    doubts = trust(spread, miss, rows)
    if doubts:
        world.print0("do not trust this fit: " + "; ".join(doubts) + ". Other work is sharing "
                     "the cores (or ranks outnumber them): rerun on a quiet machine, with "
                     "--repeats 50, or with fewer ranks.")
    else:
        world.print0(f"the fit holds: 8-byte calls within {spread:.1f}x of each other, the line "
                     f"within {miss:.0%} of every fitted point")
    model_png = args.model_png or (args.png and (args.png[:-4] if args.png.endswith(".png")
                                                 else args.png) + "-model.png")
    if rank == 0 and model_png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, algorithm in enumerate(ALGORITHMS):
            mine = [(n, m, t) for n, a, m, t in rows if a == algorithm]
            ax.plot([r[0] for r in mine], [r[1] * 1e6 for r in mine], "--", color=f"C{i}",
                    label=f"{algorithm} (model)")
            ax.errorbar([r[0] for r in mine], [r[2][0] * 1e6 for r in mine],
                        yerr=[[(r[2][0] - r[2][1]) * 1e6 for r in mine],
                              [(r[2][2] - r[2][0]) * 1e6 for r in mine]],
                        fmt="o-", color=f"C{i}", capsize=2, label=f"{algorithm} (measured, p10-p90)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("bytes")
        ax.set_ylabel("microseconds per all-reduce")
        ax.set_title(f"alpha-beta model against the clock, {p} ranks")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(model_png, dpi=110)
        print(f"wrote {model_png}")
    questions(world,
              "From the fitted alpha and beta: at what message size does sending take as long as "
              "the latency (n = alpha / beta)? Which algorithm does the table favour below it?",
              "Where does the model miss the measurement most, and by how much? Which term "
              "(alpha, beta, gamma) would have to change to close the gap?",
              "Run it again with twice the ranks of your cores: what happens to alpha and to the "
              "lab's verdict on the fit?")
    verdict(world, ok, "recursive doubling and Rabenseifner equal MPI_Allreduce")


if __name__ == "__main__":
    main()
