"""Model throughput: our VisionTransformer against timm's, same step, same data, one run.

    python -m mpitrain.bench model --model vit_l16 --batch-size 64 --precision bf16
    python -m mpitrain.bench model --modes eager,compiled        # eager vs eager, compiled vs compiled

One training step = forward under autocast, cross-entropy, backward, fused AdamW step, on
synthetic images made on the device (224 px, 1000 classes: the timm model's defaults). Both
models are built from the same seed; rows alternate round by round (each round starting with
the other model), and each row reports the median of --repeats rounds of --steps steps.
`vs timm` is our img/s over timm's in the same mode. timm is needed only here (the GPU image
has it); without it the timm rows are skipped with a note.
"""
import time

import numpy as np

from ..precision import autocast
from ..models import ALIASES, ViTConfig, build_model
from .cli import bench_main



def timm_name(model):
    key = ViTConfig.named(model).name
    for alias, target in ALIASES.items():
        if target == key:
            return alias
    raise SystemExit(f"{model} has no timm counterpart")


def make_step(torch, model, cfg, batch, precision, device):
    x = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    loss_fn = torch.nn.functional.cross_entropy

    def step():
        with autocast(device.type, precision):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def run(args):
    import torch
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    impls = args.impl.split(",")
    rows, notes = [], []
    for mode in args.modes.split(","):
        steps = {}
        for impl in impls:
            torch.manual_seed(0)
            if impl == "mpitrain":
                model = build_model(args.model).to(device)
            elif impl == "timm":
                try:
                    import timm
                except ImportError:
                    notes.append("timm is not installed: its rows are skipped")
                    continue
                model = timm.create_model(timm_name(args.model), pretrained=False).to(device)
            else:
                raise SystemExit(f"--impl {impl}: choose from mpitrain, timm")
            compiled = torch.compile(model) if mode == "compiled" else model
            steps[impl] = (model, make_step(torch, compiled, ViTConfig.named(args.model), args.batch_size, args.precision, device))
            for _ in range(args.warmup):
                steps[impl][1]()
            sync()
        samples = {impl: [] for impl in steps}
        names = list(steps)
        for r in range(args.repeats):
            for i in range(len(names)):
                impl = names[(i + r) % len(names)]
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    steps[impl][1]()
                sync()
                samples[impl].append(args.steps * args.batch_size / (time.perf_counter() - t0))
        med = {impl: float(np.median(v)) for impl, v in samples.items()}
        flops = ViTConfig.named(args.model).flops_per_image()
        for impl, img_s in med.items():
            rows.append({"mode": mode, "impl": impl, "img_per_s": img_s,
                         "rounds_img_per_s": samples[impl],
                         "tflops": img_s * flops / 1e12,
                         "vs_timm": img_s / med["timm"] if "timm" in med else None})
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return {"model": args.model, "batch_size": args.batch_size, "precision": args.precision,
            "device": name, "torch": torch.__version__, "rows": rows, "notes": notes}


def add_arguments(parser):
    parser.add_argument("--model", default="vit_l16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--impl", default="mpitrain,timm")
    parser.add_argument("--modes", default="eager,compiled", help="eager and/or compiled")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=4, help="rounds (even: each model leads as often)")


def show(report, args):
    print(f"# {args.model}, batch {args.batch_size}, {args.precision}, {report['device']}, "
          f"torch {report['torch']}")
    for note in report["notes"]:
        print(f"# {note}")
    print(f"{'mode':9s} {'impl':9s} {'img/s':>8s} {'TFLOP/s':>8s} {'vs timm':>8s}  rounds (img/s)")
    for r in report["rows"]:
        vs = f"{r['vs_timm']:.3f}x" if r["vs_timm"] else "-"
        rounds = " ".join(f"{x:.1f}" for x in r["rounds_img_per_s"])
        print(f"{r['mode']:9s} {r['impl']:9s} {r['img_per_s']:8.1f} {r['tflops']:8.1f} {vs:>8s}  {rounds}")


def main(argv=None):
    return bench_main("model", __doc__, add_arguments, run, show, argv)
