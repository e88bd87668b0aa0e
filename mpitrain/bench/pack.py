"""Bucketing benchmark: the fused pack/unpack kernels against a per-tensor copy loop and torch's
best equivalent, on a real gradient list, in one run.

    python -m mpitrain.bench pack                       # CPU, ViT-L/16's 296 gradients (304 M)
    python -m mpitrain.bench pack --device cuda         # GPU, with a device-to-device copy baseline

The list is cut into buckets of --bucket-mb (in list order, as the data-parallel engine does;
a tensor larger than the cap gets a bucket of its own). One iteration packs (or unpacks) every
bucket. Transforms: `copy` (float32 to float32) and `scale+bf16` (x / world, cast to bfloat16;
unpack: bfloat16 to float32 times the scale). GB/s counts the bytes a single pass must move
(read + write), the same for every row, so GB/s compares speed. torch's best is the fastest of
several torch formulations (named in the row); the GPU's `copy` row is one large
tensor.copy_ of the same bytes. Times: median of --repeats rounds, rows taken round-robin,
each round starting one row later.
"""
import time

import numpy as np

from .. import kernels
from .cli import bench_main


def gradient_list(model, device, dtype):
    """Tensors shaped like every parameter of `model`, filled with random values."""
    import torch
    from ..models import build_model
    with torch.device("meta"):
        shapes = [p.shape for p in build_model(model).parameters()]
    gen = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(s, device=device, dtype=dtype, generator=gen) for s in shapes]


def buckets_of(tensors, cap_bytes):
    """Consecutive groups of tensors, each at most cap_bytes (or one tensor larger than it)."""
    groups, current, size = [], [], 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > cap_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(t)
        size += nbytes
    return groups + ([current] if current else [])


class Case:
    """Everything one transform needs: the groups, their buckets and layouts, and the rows."""

    def __init__(self, torch, grads, cap_bytes, wire, scale):
        self.torch, self.wire, self.scale = torch, wire, scale
        wire_dtype = getattr(torch, wire)
        self.groups = buckets_of(grads, cap_bytes)
        self.layouts = [kernels.BucketLayout.of(g, wire) for g in self.groups]
        self.buckets = [torch.zeros(lay.total, dtype=wire_dtype, device=grads[0].device)
                        for lay in self.layouts]
        # each tensor's slot in its bucket, shaped like the tensor (what the torch rows copy into)
        self.flat = [[b[o: o + t.numel()].view(t.shape) for t, o in zip(g, lay.offsets)]
                     for g, b, lay in zip(self.groups, self.buckets, self.layouts)]
        self.elements = sum(t.numel() for t in grads)
        self.plans = [kernels.PackPlan(g, b, lay.offsets)
                      for g, b, lay in zip(self.groups, self.buckets, self.layouts)]

    def bytes_moved(self, grads):
        return self.elements * (grads[0].element_size() + self.buckets[0].element_size())

    def pack_rows(self):
        torch, s = self.torch, self.scale
        rows = {"fused": lambda: [p.pack(scale=s) for p in self.plans]}
        if self.wire == "float32" and s == 1.0:
            rows["loop"] = lambda: [v.copy_(t) for g, vs in zip(self.groups, self.flat) for t, v in zip(g, vs)]
            rows["torch: cat"] = lambda: [torch.cat([t.reshape(-1) for t in g], out=b[: sum(t.numel() for t in g)])
                                          for g, b in zip(self.groups, self.buckets)]
            rows["torch: _foreach_copy_"] = lambda: [torch._foreach_copy_(vs, g) for g, vs in zip(self.groups, self.flat)]
        else:
            rows["loop"] = lambda: [v.copy_(t * s) for g, vs in zip(self.groups, self.flat) for t, v in zip(g, vs)]
            rows["torch: _foreach_copy_ (cast), _foreach_mul_"] = lambda: [
                (torch._foreach_copy_(vs, g), torch._foreach_mul_(vs, s)) for g, vs in zip(self.groups, self.flat)]
            rows["torch: _foreach_mul, cat (cast)"] = lambda: [
                torch.cat([t.reshape(-1) for t in torch._foreach_mul(g, s)], out=b[: sum(t.numel() for t in g)])
                for g, b in zip(self.groups, self.buckets)]
            rows["torch: cat (cast), mul_"] = lambda: [
                torch.cat([t.reshape(-1) for t in g], out=b[: sum(t.numel() for t in g)]).mul_(s)
                for g, b in zip(self.groups, self.buckets)]
        return rows

    def unpack_rows(self):
        torch, s = self.torch, self.scale
        rows = {"fused": lambda: [p.unpack(scale=s) for p in self.plans]}
        if self.wire == "float32" and s == 1.0:
            rows["loop"] = lambda: [t.copy_(v) for g, vs in zip(self.groups, self.flat) for t, v in zip(g, vs)]
            rows["torch: _foreach_copy_"] = lambda: [torch._foreach_copy_(g, vs) for g, vs in zip(self.groups, self.flat)]
        else:
            rows["loop"] = lambda: [t.copy_(v.float() * s) for g, vs in zip(self.groups, self.flat) for t, v in zip(g, vs)]
            rows["torch: _foreach_copy_ (cast), _foreach_mul_"] = lambda: [
                (torch._foreach_copy_(g, vs), torch._foreach_mul_(g, s)) for g, vs in zip(self.groups, self.flat)]
            rows["torch: _foreach_mul (bf16), _foreach_copy_ (cast)"] = lambda: [
                torch._foreach_copy_(g, torch._foreach_mul(vs, s)) for g, vs in zip(self.groups, self.flat)]
        return rows


def timer(torch, device):
    """seconds(fn, iters): wall time per call (CUDA: events, after a synchronize)."""
    if device == "cuda":
        def seconds(fn, iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters
    else:
        def seconds(fn, iters):
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            return (time.perf_counter() - t0) / iters
    return seconds


def measure(rows, seconds, iters, warmup, repeats):
    names = list(rows)
    for name in names:
        for _ in range(warmup):
            rows[name]()
    samples = {name: [] for name in names}
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            samples[name].append(seconds(rows[name], iters))
    return {name: float(np.median(samples[name])) for name in names}


def run(args):
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible on this machine")
    grads = gradient_list(args.model, args.device, torch.float32)
    seconds = timer(torch, args.device)
    results = []
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    copy_gbs = None
    if args.device == "cuda":
        n = sum(t.numel() for t in grads)
        src, dst = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
        t = measure({"copy": lambda: dst.copy_(src)}, seconds, args.iters, args.warmup, args.repeats)["copy"]
        copy_gbs = 2 * n * 4 / t / 1e9
        del src, dst
    for wire, scale, label in (("float32", 1.0, "copy"), ("bfloat16", args.scale, "scale+bf16")):
        case = Case(torch, grads, args.bucket_mb << 20, wire, scale)
        for direction, rows in (("pack", case.pack_rows()), ("unpack", case.unpack_rows())):
            times = measure(rows, seconds, args.iters, args.warmup, args.repeats)
            best_torch = min((n for n in times if n.startswith("torch")), key=times.get)
            for name, t in times.items():
                results.append({"direction": direction, "transform": label, "impl": name,
                                "seconds": t, "GBps": case.bytes_moved(grads) / t / 1e9,
                                "vs_torch_best": times[best_torch] / t,
                                "torch_best": best_torch,
                                "vs_copy": (case.bytes_moved(grads) / t / 1e9 / copy_gbs) if copy_gbs else None})
        del case
    return {"model": args.model, "tensors": len(grads), "elements": sum(t.numel() for t in grads),
            "bucket_mb": args.bucket_mb, "device": args.device, "device_name": device_name,
            "copy_GBps": copy_gbs, "backend": kernels.describe_backend(), "rows": results}


def print_table(report):
    print(f"# pack/unpack: {report['model']}, {report['tensors']} tensors, "
          f"{report['elements'] / 1e6:.1f} M elements, {report['bucket_mb']} MB buckets, "
          f"{report['device_name']}; kernels: {report['backend']}")
    if report["copy_GBps"]:
        print(f"# device-to-device copy: {report['copy_GBps']:.0f} GB/s (read + write)")
    print(f"{'direction':9s} {'transform':11s} {'impl':50s} {'ms':>8s} {'GB/s':>8s} "
          f"{'vs torch best':>13s}" + (f" {'vs copy':>8s}" if report["copy_GBps"] else ""))
    for r in report["rows"]:
        line = (f"{r['direction']:9s} {r['transform']:11s} {r['impl']:50s} {r['seconds'] * 1e3:8.2f} "
                f"{r['GBps']:8.1f} {r['vs_torch_best']:12.2f}x")
        if report["copy_GBps"]:
            line += f" {r['vs_copy'] * 100:7.0f}%"
        print(line)


def add_arguments(parser):
    parser.add_argument("--model", default="vit_l16", help="whose gradient list (default vit_l16)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bucket-mb", type=int, default=25, help="bucket cap in MB (default 25)")
    parser.add_argument("--scale", type=float, default=0.125, help="the scale of scale+bf16 (1/world)")
    parser.add_argument("--iters", type=int, default=3, help="iterations per timing")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is shown")


def main(argv=None):
    return bench_main("pack", __doc__, add_arguments, run, lambda report, args: print_table(report), argv)
