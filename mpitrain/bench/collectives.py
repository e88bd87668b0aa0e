"""Collectives benchmark: every hand-rolled algorithm beside MPI's own collective, in one run.

    mpiexec -n 4 python -m mpitrain.bench collectives --sizes 4K,1M,16M --plot busbw.png

Prints an nccl-tests style table. `size` is the bytes of the largest buffer of the call (the whole
buffer for all_reduce / broadcast / reduce, the size x k side for the others), and, as in
nccl-tests: algbw = size / time, busbw = algbw x factor, factor = 2(n-1)/n for all_reduce,
(n-1)/n for reduce_scatter, all_gather, scatter and gather, 1 for broadcast and reduce.
`vs mpi` is MPI's time divided by this row's time (above 1: faster than MPI); with `--device
cuda` the buffers are torch CUDA tensors, `--impl` may add `nccl` (torch.distributed, same ranks,
same buffers) and the ratio column is then `vs nccl` (collectives_gpu.py).
Times are per call: the slowest rank's average over the iterations of a round, then the median
of --repeats rounds, taken round-robin across the variants, each round starting one variant
later (the first of a round runs 15-25% faster on the 2-core machine, whichever it is).
"""
import argparse
import json
import time

import numpy as np

from ..comm import ALGORITHMS, init
from ..comm.algorithms import PEER_ALGORITHMS
from ..comm.dtypes import DTYPES

OPS = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "reduce", "scatter", "gather")


def bus_factor(op, n):
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("broadcast", "reduce"):
        return 1.0
    return (n - 1) / n


def parse_size(text):
    text = text.strip().upper().rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def format_size(nbytes):
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return str(nbytes)


def make_call(world, op, impl, count, dtype):
    """A no-argument function doing one call of `op` by `impl` ('mpi' or an algorithm name)."""
    from mpi4py import MPI
    p = world.size
    k = count // p
    storage = DTYPES[dtype].storage
    # zeros: all_reduce runs in place call after call, and growing sums would overflow to inf,
    # after which numpy's floating-point warnings machinery runs on every call and skews timing
    full = np.zeros(count, dtype=storage)                       # the big side
    part = np.zeros(k, dtype=storage)
    out_full = np.empty_like(full)
    out_part = np.empty_like(part)
    comm = world.mpi_comm
    mpi_type = {np.float64: MPI.DOUBLE, np.float32: MPI.FLOAT, np.int64: MPI.INT64_T,
                np.int32: MPI.INT32_T, np.uint8: MPI.UINT8_T}.get(storage.type)
    if impl == "mpi":
        if mpi_type is None:
            return None
        full_k = full[: k * p]
        calls = {
            "all_reduce": lambda: comm.Allreduce([full, mpi_type], [out_full, mpi_type]),
            "reduce_scatter": lambda: comm.Reduce_scatter_block([full_k, mpi_type], [out_part, mpi_type]),
            "all_gather": lambda: comm.Allgather([part, mpi_type], [out_full[: k * p], mpi_type]),
            "broadcast": lambda: comm.Bcast([full, mpi_type], root=0),
            "reduce": lambda: comm.Reduce([full, mpi_type], [out_full, mpi_type], root=0),
            "scatter": lambda: comm.Scatter([full_k, mpi_type], [out_part, mpi_type], root=0),
            "gather": lambda: comm.Gather([part, mpi_type], [out_full[: k * p], mpi_type], root=0),
        }
        return calls[op]
    calls = {
        "all_reduce": lambda: world.all_reduce(full, algorithm=impl),
        "reduce_scatter": lambda: world.reduce_scatter(full[: k * p], out_part, algorithm=impl),
        "all_gather": lambda: world.all_gather(part, out_full[: k * p], algorithm=impl),
        "broadcast": lambda: world.broadcast(full, root=0, algorithm=impl),
        "reduce": lambda: world.reduce(full, out_full, root=0, algorithm=impl),
        "scatter": lambda: world.scatter(full[: k * p], out_part, root=0, algorithm=impl),
        "gather": lambda: world.gather(part, out_full[: k * p], root=0, algorithm=impl),
    }
    return calls[op]


def time_call(world, call, nbytes, iters, warmup, sync=lambda: None):
    from mpi4py import MPI
    warm = time.perf_counter()
    for _ in range(warmup):
        call()
    sync()
    if iters is None:                       # about 0.1 s of calls per round at memory speed, 5
        iters = int(min(300, max(5, 1e8 / max(nbytes, 1 << 16))))       # to 300 of them; over
        if warmup:                          # a slow link, as many as fit in 0.25 s, at least 2
            one = world.mpi_comm.allreduce((time.perf_counter() - warm) / warmup, op=MPI.MAX)
            iters = min(iters, max(2, int(0.25 / one)))
    world.mpi_comm.Barrier()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    sync()                                  # GPU: the work queued by the calls has finished
    elapsed = (time.perf_counter() - start) / iters
    return world.mpi_comm.allreduce(elapsed, op=MPI.MAX), iters


def run(args):
    world = init()
    sync, make = (lambda: None), make_call
    if args.device == "cuda":
        import torch
        from .collectives_gpu import make_gpu_call
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        sync, make = torch.cuda.synchronize, make_gpu_call
    ops = [o.strip() for o in args.ops.split(",")] if args.ops else list(OPS)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    impls = [s.strip() for s in args.impl.split(",")]
    itemsize = DTYPES[args.dtype].itemsize
    rows = []
    baseline = "nccl" if "nccl" in impls else "mpi"
    where = "host memory" if args.device == "cpu" else f"GPU ({_gpu_name()})"
    from mpi4py import MPI
    mpi_label = "mpi (native)"
    if args.device == "cuda":
        from ..comm import cuda_aware
        mpi_label = "mpi (GPU pointers)" if cuda_aware.query()[0] else "mpi (host copies)"
    world.print0(f"# mpitrain collectives: {world.size} ranks, dtype {args.dtype}, "
                 f"{world.num_nodes} node(s), {where}; MPI: "
                 f"{MPI.Get_library_version().splitlines()[0].split(',')[0].strip()}")
    for op in ops:
        if op not in OPS:
            raise SystemExit(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        known = [*ALGORITHMS[op], *(PEER_ALGORITHMS.get(op, {}) if args.device == "cuda" else ()),
                 *(["hierarchical"] if op == "all_reduce" and world.num_nodes > 1 else [])]
        algs = ["auto", *known] if args.algorithms == "all" else [
            a for a in args.algorithms.split(",") if a == "auto" or a in known]
        if args.algorithms != "all":
            left = [a for a in args.algorithms.split(",") if a not in algs]
            if left:
                world.print0(f"# {op}: not run here: {', '.join(left)} (this op here has: "
                             f"auto, {', '.join(known)}; hierarchical needs ranks on several nodes)")
        variants = ([("mpitrain", a) for a in algs] if "mpitrain" in impls else []) + (
            [("mpi", "mpi")] if "mpi" in impls else []) + (
            [("nccl", "nccl")] if "nccl" in impls and args.device == "cuda" else [])
        world.print0(f"\n## {op}\n{'size':>8} {'impl':>28} {'time us':>10} {'algbw GB/s':>11} "
                     f"{'busbw GB/s':>11} {'vs ' + baseline:>7}")
        for nbytes in sizes:
            count = max(world.size, nbytes // itemsize) // world.size * world.size
            size_bytes = count * itemsize
            calls = [(impl, alg, make(world, op, alg, count, args.dtype)) for impl, alg in variants]
            calls = [c for c in calls if c[2] is not None]
            rounds = {i: [] for i in range(len(calls))}
            for rnd in range(args.repeats):       # round-robin, and each round starts one later:
                for j in range(len(calls)):        # the first variant of a round runs measurably
                    i = (j + rnd) % len(calls)     # faster, so every variant takes every place
                    rounds[i].append(time_call(world, calls[i][2], size_bytes, args.iters,
                                               args.warmup, sync))
            timed = [(impl, alg, float(np.median([t for t, _ in rounds[i]])), rounds[i][0][1])
                     for i, (impl, alg, _) in enumerate(calls)]
            mpi_time = next((t for impl, _, t, _ in timed if impl == "mpi"), None)
            base_time = next((t for impl, _, t, _ in timed if impl == baseline), None)
            for impl, alg, t, iters in timed:
                algbw = size_bytes / t / 1e9
                row = dict(op=op, impl=impl, algorithm=alg, bytes=size_bytes, ranks=world.size,
                           dtype=args.dtype, time_us=t * 1e6, algbw=algbw,
                           busbw=algbw * bus_factor(op, world.size), iters=iters,
                           vs_mpi=(mpi_time / t) if mpi_time else None, device=args.device,
                           vs_nccl=(base_time / t) if base_time and baseline == "nccl" else None)
                rows.append(row)
                label = {"mpi": mpi_label, "nccl": "nccl"}.get(impl, f"mpitrain {alg}")
                vs = row["vs_nccl"] if baseline == "nccl" else row["vs_mpi"]
                ratio = f"{vs:7.2f}" if vs else "      -"
                world.print0(f"{format_size(size_bytes):>8} {label:>28} {t * 1e6:10.1f} "
                             f"{algbw:11.3f} {row['busbw']:11.3f} {ratio}")
    if world.rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {args.json}")
    if world.rank == 0 and args.markdown:
        with open(args.markdown, "w") as f:
            f.write(summary_markdown(rows, f"Collectives, {world.size} ranks, {args.dtype}: time per "
                                           f"call, (×) = MPI's time / ours"))
        print(f"wrote {args.markdown}")
    if world.rank == 0 and args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return rows


def _gpu_name():
    import torch
    return torch.cuda.get_device_name()


def summary_markdown(rows, title):
    """One table: per op and size, time of auto, of each named algorithm, of MPI, and the ratios."""
    lines = [title, "", "| op | size | MPI native µs | mpitrain auto µs (vs MPI) | every algorithm µs (vs MPI) |",
             "|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["op"], r["bytes"]) for r in rows))
    for op, nbytes in keys:
        here = [r for r in rows if r["op"] == op and r["bytes"] == nbytes]
        mpi = next((r for r in here if r["impl"] == "mpi"), None)
        auto = next((r for r in here if r["algorithm"] == "auto"), None)
        ratio = lambda r: f" ({r['vs_mpi']:.2f}×)" if r["vs_mpi"] else ""
        named = ", ".join(f"{r['algorithm']} {r['time_us']:.0f}{ratio(r)}" for r in here
                          if r["impl"] == "mpitrain" and r["algorithm"] != "auto")
        lines.append(f"| {op} | {format_size(nbytes)} | {mpi['time_us']:.0f} | "
                     f"{auto['time_us']:.0f}{ratio(auto)} | {named} |" if mpi and auto else
                     f"| {op} | {format_size(nbytes)} | - | - | {named} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ops = list(dict.fromkeys(r["op"] for r in rows))
    cols = min(3, len(ops))
    fig, axes = plt.subplots((len(ops) + cols - 1) // cols, cols, figsize=(5 * cols, 3.6 * ((len(ops) + cols - 1) // cols)),
                             squeeze=False)
    for ax, op in zip(axes.flat, ops):
        lines = {}
        for r in rows:
            if r["op"] == op:
                label = "MPI native" if r["impl"] == "mpi" else r["algorithm"]
                lines.setdefault(label, []).append((r["bytes"], r["busbw"]))
        for label, pts in lines.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=label, linestyle="--" if label == "MPI native" else "-")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{op} ({rows[0]['ranks']} ranks)")
        ax.set_xlabel("bytes")
        ax.set_ylabel("busbw GB/s")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ops):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def add_arguments(parser):
    parser.add_argument("--ops", default=None, help=f"comma list from {','.join(OPS)} (default all)")
    parser.add_argument("--sizes", default="4K,64K,1M,4M,16M", help="bytes per call, e.g. 4K,1M,16M")
    parser.add_argument("--algorithms", default="all",
                        help="comma list of algorithm names (and 'auto'), or 'all'")
    parser.add_argument("--impl", default="mpitrain,mpi",
                        help="comma list of mpitrain, mpi, nccl (nccl: --device cuda only)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="host buffers, or torch CUDA tensors on each rank's GPU")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per row (default: ~0.25 s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per row; the median is shown")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--plot", default=None, help="write busbw against size as a PNG here")
    parser.add_argument("--markdown", default=None, help="write a summary table (Markdown) here")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpitrain.bench collectives", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
