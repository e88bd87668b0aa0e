"""Data-parallel training steps: mpitrain's engines against torch DistributedDataParallel, one run.

    mpiexec -n 4 python -m mpitrain.bench train vit_digits --impl mpitrain,ddp
    mpiexec -n 2 python -m mpitrain.bench train vit_b16 --batch-size 64 --precision bf16

Every implementation trains the same model (same seed) on the same synthetic batches: forward,
cross-entropy, backward with its gradient all-reduce, AdamW step. Implementations:
  mpitrain        the bucketed engine, all-reduce on a communication thread overlapping backward
  mpitrain-sync   the same buckets, all-reduced on the main thread as each completes (no thread)
  naive           one all-reduce per parameter after backward (the teaching path)
  ddp             torch DistributedDataParallel: gloo on CPU, NCCL on GPU; its process group is
                  started inside the same mpiexec, rendezvous address taken from MPI
  local           no gradient exchange at all: the compute-only floor (its loss is not the others')
Rounds alternate the order of the implementations; each row is the median over rounds of the
job's step time (the slowest rank's mean over --steps steps). `vs ddp` is ddp's step time over
the row's: above 1 is faster than DDP. `final loss` is there to show they train the same thing.
"""
import contextlib
import time

import numpy as np

from ..models import ViTConfig, VisionTransformer
from .cli import bench_main
from .torch_dist import start_torch_distributed

IMPLS = ("mpitrain", "mpitrain-sync", "naive", "ddp", "local")
AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


def add_arguments(p):
    p.add_argument("model", nargs="?", default="vit_digits", help="model variant (default vit_digits)")
    p.add_argument("--impl", default="mpitrain,ddp", help=f"comma list from {', '.join(IMPLS)}")
    p.add_argument("--batch-size", type=int, default=64, help="global batch (all ranks) per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first, every round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; implementations alternate")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--bucket-mb", type=float, default=25.0, help="bucket cap, both engines")
    p.add_argument("--grad-dtype", default="fp32", choices=["fp32", "bf16"],
                   help="wire dtype of gradients (ddp: its bf16 compression hook)")
    p.add_argument("--img-size", type=int, default=0, help="input side (0: the variant's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile: ddp and local compile the whole model (DDP splits the "
                        "graph at its buckets); mpitrain compiles each block, so gradients "
                        "still arrive block by block for the overlapped all-reduce")


def build(impl, cfg, world, device, args):
    """The model (same seed everywhere) and how to average its gradients under `impl`."""
    import torch
    from ..parallel import apply_data_parallel
    torch.manual_seed(0)
    model = VisionTransformer(cfg).to(device)
    if impl == "local":
        return (torch.compile(model) if args.compile else model), model, None
    if impl == "ddp":
        start_torch_distributed(world, device)
        from torch.nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      bucket_cap_mb=args.bucket_mb)
        if args.grad_dtype == "bf16":
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            ddp.register_comm_hook(None, default_hooks.bf16_compress_hook)
        return (torch.compile(ddp) if args.compile else ddp), model, None
    engine = apply_data_parallel(model, world, bucket_mb=args.bucket_mb, grad_dtype=args.grad_dtype,
                                 overlap=impl != "mpitrain-sync", naive=impl == "naive")
    if args.compile:
        model.compile_blocks()
    return model, model, engine


def run_round(impl, cfg, world, device, args, batches):
    import torch
    import torch.nn.functional as F
    forward, model, engine = build(impl, cfg, world, device, args)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dtype = getattr(torch, AUTOCAST.get(args.precision, "float32"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loss = None

    def step(x, y):
        with torch.autocast(device.type, dtype, enabled=args.precision in AUTOCAST):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        if engine is not None:
            engine.synchronize()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup):
        step(*batches[i % len(batches)])
    sync()
    world.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(*batches[i % len(batches)])
    sync()
    mine = (time.perf_counter() - start) / args.steps
    seconds = max(world.mpi_comm.allgather(mine))          # the job moves at its slowest rank
    if engine is not None:
        engine.close()
    return seconds, float(loss.detach())


def run(args):
    import torch
    from ..comm import init
    from ..comm.world import cores_per_rank
    world = init()
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for impl in impls:
        if impl not in IMPLS:
            raise SystemExit(f"--impl {impl}: choose from {', '.join(IMPLS)}")
    if args.batch_size % world.size:
        raise SystemExit(f"--batch-size {args.batch_size} does not divide over {world.size} ranks")
    want_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if want_cuda:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
        torch.set_num_threads(cores_per_rank(world.local_size))
    overrides = {"img_size": args.img_size} if args.img_size else {}
    cfg = ViTConfig.named(args.model, **overrides)
    per_rank = args.batch_size // world.size
    g = torch.Generator().manual_seed(1234 + world.rank)
    batches = [(torch.randn(per_rank, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g).to(device),
                torch.randint(0, cfg.num_classes, (per_rank,), generator=g).to(device))
               for _ in range(4)]
    times = {impl: [] for impl in impls}
    losses = {}
    for r in range(args.rounds):
        order = impls if r % 2 == 0 else impls[::-1]
        for impl in order:
            seconds, losses[impl] = run_round(impl, cfg, world, device, args, batches)
            times[impl].append(seconds)
    rows = []
    ddp = float(np.median(times["ddp"])) if "ddp" in times else None
    for impl in impls:
        t = float(np.median(times[impl]))
        rows.append({"impl": impl, "step_ms": t * 1e3, "img_per_s": args.batch_size / t,
                     "vs_ddp": ddp / t if ddp else None, "final_loss": losses[impl],
                     "rounds_ms": [x * 1e3 for x in times[impl]]})
    with contextlib.suppress(Exception):
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return {"model": cfg.name, "params": cfg.count_params(), "ranks": world.size,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "batch_size": args.batch_size, "precision": args.precision, "grad_dtype": args.grad_dtype,
            "bucket_mb": args.bucket_mb, "steps": args.steps, "rounds": args.rounds,
            "compile": args.compile,
            "rows": rows, "rank": world.rank}


def show(report, args):
    if report["rank"] != 0:
        return
    print(f"# bench train: {report['model']} ({report['params'] / 1e6:.2f} M params), "
          f"{report['ranks']} ranks on {report['device']}, global batch {report['batch_size']}, "
          f"{report['precision']}, grads on the wire {report['grad_dtype']}, buckets "
          f"{report['bucket_mb']:g} MB{', compiled' if report.get('compile') else ''}; median of "
          f"{report['rounds']} rounds x {report['steps']} steps")
    print(f"{'impl':>14} {'step ms':>9} {'img/s':>9} {'vs ddp':>7} {'final loss':>11}  rounds (ms)")
    for row in report["rows"]:
        vs = f"{row['vs_ddp']:.2f}x" if row["vs_ddp"] else "-"
        rounds = " ".join(f"{x:.1f}" for x in row["rounds_ms"])
        print(f"{row['impl']:>14} {row['step_ms']:9.2f} {row['img_per_s']:9.1f} {vs:>7} "
              f"{row['final_loss']:11.5f}  {rounds}")


def main(argv=None):
    return bench_main("train", __doc__, add_arguments, run, show, argv)
