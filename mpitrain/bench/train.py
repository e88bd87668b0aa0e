"""Training steps: mpitrain's engines against torch DistributedDataParallel and FSDP2, one run.

    mpiexec -n 4 python -m mpitrain.bench train vit_digits --impl mpitrain,ddp
    mpiexec -n 2 python -m mpitrain.bench train vit_b16 --batch-size 64 --precision bf16
    mpiexec -n 2 python -m mpitrain.bench train vit_G14 --batch-size 64 --precision bf16 \
        --impl mpitrain-zero3,fsdp2

Every implementation trains the same model (same seed) on the same synthetic batches: forward,
cross-entropy, backward with its gradient all-reduce, AdamW step. Implementations:
  mpitrain        the bucketed engine, all-reduce on a communication thread overlapping backward
  mpitrain-sync   the same buckets, all-reduced on the main thread as each completes (no thread)
  mpitrain-sm     mpitrain with its GPU all-reduces on the peer kernels (SMs move the bytes)
                  instead of the copy engines (the default since 2026-11-23)
  mpitrain-packed mpitrain with every bucket packed before its all-reduce and unpacked after
                  (grad_views=False), where the engine otherwise makes each .grad a view of its
                  bucket (fp32 on the wire)
  naive           one all-reduce per parameter after backward (the teaching path)
  ddp             torch DistributedDataParallel: gloo on CPU, NCCL on GPU; its process group is
                  started inside the same mpiexec, rendezvous address taken from MPI
  local           no gradient exchange at all: the compute-only floor (its loss is not the others')
  local-split     the same, compiled the way mpitrain compiles (with --compile): the graph cut
                  into pieces (--compile-piece-mb; 0: block by block), what that costs by itself
  mpitrain-zero3  ZeRO stage 3 (parallel/zero3.py): parameters, gradients and optimizer state
                  sharded; each block all-gathered before its forward and its backward
  fsdp2           torch's fully_shard on each block and on the model (NCCL on GPU); the same
                  --param-dtype and --grad-dtype as mpitrain-zero3 (MixedPrecisionPolicy)
  mpitrain-diloco DiLoCo (parallel/diloco.py): one worker per node (--workers), the bucketed
                  engine inside each, an outer step every --sync-every steps (its loss is not
                  the others' after the first outer step: the workers train apart)
Rounds alternate the order of the implementations; each row is the median over rounds of the
job's step time (the slowest rank's mean over --steps steps). `vs ddp` is ddp's step time over
the row's (fsdp2's when the run has no ddp): above 1 is faster. `peak GiB` is the largest
torch.cuda.max_memory_allocated of any rank over the round's steps (the model built, then the
peak reset). `final loss` is there to show they train the same thing.
"""
import contextlib
import gc
import os
import time

import numpy as np

from ..precision import autocast, torch_dtype
from ..models import ViTConfig, VisionTransformer
from ..parallel.buckets import DEFAULT_TAIL_MB
from .cli import bench_main
from .torch_dist import start_torch_distributed

IMPLS = ("mpitrain", "mpitrain-sync", "mpitrain-sm", "mpitrain-packed", "naive", "ddp", "local", "local-split", "mpitrain-zero3",
         "fsdp2", "mpitrain-diloco")


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
                   help="wire dtype of gradients (ddp: its bf16 compression hook; mpitrain-zero3 "
                        "and fsdp2: the reduce-scatter's dtype)")
    p.add_argument("--param-dtype", default="fp32", choices=["fp32", "bf16"],
                   help="mpitrain-zero3 and fsdp2: the dtype blocks are all-gathered and "
                        "computed in (shards and optimizer stay fp32)")
    p.add_argument("--zero3-window", type=int, default=1, help="mpitrain-zero3: blocks prefetched")
    p.add_argument("--workers", type=int, default=0,
                   help="mpitrain-diloco: groups of ranks that train apart (0: one per node)")
    p.add_argument("--sync-every", type=int, default=50,
                   help="mpitrain-diloco: inner steps between outer steps")
    p.add_argument("--profile", action="store_true",
                   help="GPU: after the timing, profile 3 steps of each implementation and print "
                        "rank 0's busy time per CUDA stream and heaviest kernels")
    p.add_argument("--profile-dir", default="",
                   help="with --profile: also keep each rank's events of each implementation in "
                        "DIR/trace-IMPL-rRANK.json.gz (read by python -m mpitrain.bench.trace_report DIR)")
    p.add_argument("--grads-to-none", action="store_true",
                   help="zero_grad(set_to_none=True) after each step (default: zero in place, as "
                        "the trainer does, so gradients that are bucket views stay views)")
    p.add_argument("--img-size", type=int, default=0, help="input side (0: the variant's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile: ddp and local compile the whole model (DDP splits the "
                        "graph at its buckets); mpitrain compiles the model cut into pieces "
                        "(models/split_compile.py), so gradients still arrive piece by piece for "
                        "the overlapped all-reduce; mpitrain-zero3 and fsdp2 compile each block")
    p.add_argument("--compile-piece-mb", type=float, default=100.0,
                   help="mpitrain and local-split with --compile: parameter megabytes per "
                        "compiled piece (0: each block compiled on its own)")
    p.add_argument("--tail-mb", default=DEFAULT_TAIL_MB,
                   help="mpitrain's buckets and, with --compile, mpitrain's and local-split's "
                        "pieces also end where the parameter MB still to come in backward drop "
                        "to each of these (the trainer's --tail-mb; none: no cuts)")


class Trainee:
    """One implementation's model and step: forward(x), then after_backward(), step(),
    zero_grad(); close() at the end of the round."""

    def __init__(self, forward, model, engine=None, zero=None, outer=None):
        self.forward, self.model, self.engine, self.zero = forward, model, engine, zero
        self.outer, self.steps = outer, 0       # DiLoCo: the outer loop, told of every step
        self.optimizer = outer.optimizer if outer is not None else None

    def after_step(self):
        if self.outer is not None:
            self.steps += 1
            self.outer.after_inner_step(self.steps)

    def after_backward(self):
        if self.engine is not None:
            self.engine.synchronize()

    def close(self):
        if self.engine is not None:
            self.engine.close()


def build(impl, cfg, world, device, args):
    """The model (same seed everywhere) and how its gradients are averaged under `impl`."""
    import torch
    from ..parallel import apply_data_parallel, apply_zero3
    torch.manual_seed(0)
    with device:                       # initialised where it runs (a 1.8 B model in seconds)
        model = VisionTransformer(cfg)
    if impl in ("local", "local-split"):
        forward = model
        if args.compile:
            forward = _split_compiled(model, args) if impl == "local-split" else torch.compile(model)
        return Trainee(forward, model)
    if impl == "ddp":
        start_torch_distributed(world, device)
        from torch.nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      bucket_cap_mb=args.bucket_mb)
        if args.grad_dtype == "bf16":
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            ddp.register_comm_hook(None, default_hooks.bf16_compress_hook)
        return Trainee(torch.compile(ddp) if args.compile else ddp, model)
    if impl == "fsdp2":
        start_torch_distributed(world, device)
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        policy = MixedPrecisionPolicy(param_dtype=torch_dtype(args.param_dtype),
                                      reduce_dtype=torch_dtype(args.grad_dtype))
        for block in model.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        if args.compile:
            model.compile_blocks()
        return Trainee(model, model)
    if impl == "mpitrain-zero3":
        zero = apply_zero3(model, world, lambda groups: _adamw(groups, device), units=model.blocks,
                           window=args.zero3_window, param_dtype=args.param_dtype,
                           reduce_dtype=args.grad_dtype)
        if args.compile:
            model.compile_blocks()
        return Trainee(model, model, engine=zero, zero=zero)
    if impl == "mpitrain-diloco":
        from ..parallel import SingleRank
        from ..parallel.diloco import DiLoCo

        def make_inner(model, comm):
            inner = SingleRank() if comm.size == 1 else apply_data_parallel(
                model, comm, bucket_mb=args.bucket_mb, grad_dtype=args.grad_dtype,
                tail_mb=args.tail_cuts_mb)
            return inner, _adamw(model.parameters(), device)
        outer = DiLoCo(model, world, make_inner, args.workers or world.num_nodes, args.sync_every)
        return Trainee(_split_compiled(model, args) if args.compile else model, model,
                       engine=outer, outer=outer)
    engine = apply_data_parallel(model, world, bucket_mb=args.bucket_mb, grad_dtype=args.grad_dtype,
                                 overlap=impl != "mpitrain-sync", naive=impl == "naive",
                                 copy_engine=False if impl == "mpitrain-sm" else None,
                                 grad_views=impl != "mpitrain-packed",
                                 tail_mb=args.tail_cuts_mb)
    return Trainee(_split_compiled(model, args) if args.compile else model, model, engine=engine)


def _split_compiled(model, args):
    from ..models.split_compile import compile_in_pieces
    if args.compile_piece_mb <= 0:
        return model.compile_blocks()
    return compile_in_pieces(model, args.compile_piece_mb, args.tail_cuts_mb)


def _adamw(params, device):
    import torch
    return torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")


def run_round(impl, cfg, world, device, args, batches):
    """(seconds per step, final loss, peak GiB or None, profile text or None, every rank's own
    seconds per step)."""
    import torch
    import torch.nn.functional as F
    on_gpu = device.type == "cuda"
    gc.collect()                    # the previous round's model (hooks make reference cycles)
    if on_gpu:
        torch.cuda.empty_cache()
    t = build(impl, cfg, world, device, args)
    opt = t.zero.optimizer if t.zero is not None else t.optimizer or _adamw(t.model.parameters(),
                                                                            device)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    loss = None

    def step(x, y):
        with autocast(device.type, args.precision):
            loss = F.cross_entropy(t.forward(x), y)
        loss.backward()
        t.after_backward()
        if t.zero is not None:
            t.zero.step()
            t.zero.zero_grad()
        else:
            opt.step()
            opt.zero_grad(set_to_none=args.grads_to_none)
        t.after_step()
        return loss

    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):
        step(*batches[i % len(batches)])
    sync()
    world.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(*batches[i % len(batches)])
    sync()
    mine = (time.perf_counter() - start) / args.steps
    per_rank = world.mpi_comm.allgather(mine)
    seconds = max(per_rank)                                 # the job moves at its slowest rank
    peak = None
    if on_gpu:
        peak = max(world.mpi_comm.allgather(torch.cuda.max_memory_allocated(device))) / 2**30
    profile = None
    if args.profile and on_gpu:
        from .gpu_profile import profile_steps
        dump = None
        if args.profile_dir:
            os.makedirs(args.profile_dir, exist_ok=True)
            dump = os.path.join(args.profile_dir, f"trace-{impl}-r{world.rank}.json.gz")
        profile = profile_steps(lambda: step(*batches[0]), steps=3, dump=dump)
    final = float(loss.detach())
    t.close()
    return seconds, final, peak, profile, per_rank


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
    from ..parallel.buckets import parse_tail_mb
    try:
        args.tail_cuts_mb = parse_tail_mb(args.tail_mb)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
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
    losses, peaks, profiles, rank_times = {}, {}, {}, {}
    for r in range(args.rounds):
        order = impls if r % 2 == 0 else impls[::-1]
        for impl in order:
            seconds, losses[impl], peak, profile, per_rank = run_round(impl, cfg, world, device,
                                                                       args, batches)
            times[impl].append(seconds)
            rank_times.setdefault(impl, []).append([x * 1e3 for x in per_rank])
            if peak is not None:
                peaks[impl] = max(peak, peaks.get(impl, 0.0))
            if profile is not None:
                profiles[impl] = profile
    rows = []
    base = "ddp" if "ddp" in times else "fsdp2" if "fsdp2" in times else None
    ref = float(np.median(times[base])) if base else None
    for impl in impls:
        t = float(np.median(times[impl]))
        rows.append({"impl": impl, "step_ms": t * 1e3, "img_per_s": args.batch_size / t,
                     "vs_ddp": ref / t if ref else None, "baseline": base,
                     "peak_gib": peaks.get(impl), "final_loss": losses[impl],
                     "rounds_ms": [x * 1e3 for x in times[impl]], "profile": profiles.get(impl),
                     "rank_ms": rank_times[impl]})
    with contextlib.suppress(Exception):
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return {"model": cfg.name, "params": cfg.count_params(), "ranks": world.size,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "batch_size": args.batch_size, "precision": args.precision, "grad_dtype": args.grad_dtype,
            "param_dtype": args.param_dtype,
            "bucket_mb": args.bucket_mb, "steps": args.steps, "rounds": args.rounds,
            "compile": args.compile, "tail_mb": list(args.tail_cuts_mb),
            "rows": rows, "rank": world.rank}


def _cuts(tail_mb):
    return ",".join(f"{mb:g}" for mb in tail_mb) + " MB" if tail_mb else "none"


def show(report, args):
    if report["rank"] != 0:
        return
    print(f"# bench train: {report['model']} ({report['params'] / 1e6:.2f} M params), "
          f"{report['ranks']} ranks on {report['device']}, global batch {report['batch_size']}, "
          f"{report['precision']}, grads on the wire {report['grad_dtype']}, buckets "
          f"{report['bucket_mb']:g} MB (tail cuts {_cuts(report.get('tail_mb'))}), sharded parameters in {report.get('param_dtype', 'fp32')}"
          f"{', compiled' if report.get('compile') else ''}; median of "
          f"{report['rounds']} rounds x {report['steps']} steps")
    base = next((r["baseline"] for r in report["rows"] if r.get("baseline")), None) or "ddp"
    print(f"{'impl':>14} {'step ms':>9} {'img/s':>9} {'vs ' + base:>9} {'peak GiB':>9} "
          f"{'final loss':>11}  rounds (ms) [each rank's own]")
    for row in report["rows"]:
        vs = f"{row['vs_ddp']:.2f}x" if row["vs_ddp"] else "-"
        peak = f"{row['peak_gib']:.2f}" if row.get("peak_gib") is not None else "-"
        rounds = " ".join(f"{x:.1f} [{' '.join(f'{y:.1f}' for y in ranks)}]"
                          for x, ranks in zip(row["rounds_ms"], row["rank_ms"]))
        print(f"{row['impl']:>14} {row['step_ms']:9.2f} {row['img_per_s']:9.1f} {vs:>9} {peak:>9} "
              f"{row['final_loss']:11.5f}  {rounds}")
    for row in report["rows"]:
        if row.get("profile"):
            print(f"# profile of {row['impl']} (rank 0, 3 steps)\n{row['profile']}")


def main(argv=None):
    return bench_main("train", __doc__, add_arguments, run, show, argv)
