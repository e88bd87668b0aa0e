"""The training loop: data-parallel steps with gradient accumulation, a warm-up + cosine
schedule, mixed precision, periodic test evaluation, and rank-0 reporting.

Every rank runs the same code on its own slice of each batch; gradients are averaged across
ranks during backward by the bucketed engine (parallel/data_parallel.py), or after it by the
naive one (--parallel dp-naive). Failures every rank sees (bad flags, missing
data, a NaN loss) end every rank with the same message and a non-zero exit; a failure on one
rank only reaches the abort hook of mpitrain.comm, which ends the job.
"""
import contextlib
import importlib
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..precision import autocast
from .. import checkpoint, kernels
from ..checkpoint import diloco as diloco_checkpoint
from ..comm.world import cores_per_rank
from ..data import ShardedSampler, load_dataset
from ..data.sampler import eval_indices
from ..models import VARIANTS, VisionTransformer, ViTConfig
from ..models.split_compile import compile_in_pieces
from ..parallel import (SingleRank, Zero, Zero3, apply_data_parallel, apply_zero, apply_zero3,
                        memory)
from ..parallel.buckets import parse_tail_mb
from ..parallel.diloco import DiLoCo, DiLoCoConfigError
from .config import ConfigError
from .metrics import Reports, measure_matmul_tflops
from .run_dir import check_checkpoint_dir, resume_note
from .weights import init_from, model_card



class TrainingError(RuntimeError):
    """A failure of the run itself (e.g. a NaN loss), the same on every rank."""


class RankError(RuntimeError):
    """A failure of one rank's own (its device, its files): it ends the whole job at once."""


def pick_device(cfg, world):
    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise RankError("--device cuda: CUDA was asked for, but no GPU is visible here "
                        "(torch.cuda.is_available() is False)")
    if cfg.device == "cpu" or not has_cuda:
        torch.set_num_threads(cores_per_rank(world.local_size))
        return torch.device("cpu")
    gpus = torch.cuda.device_count()
    if world.local_size > gpus and world.local_rank == 0:
        print(f"mpitrain.train: warning: {world.local_size} ranks on this node share {gpus} "
              f"GPU(s); ranks sharing a GPU run far slower than one rank alone (measured on one "
              f"H200: ViT-L/16 at 16 img/s with 8 ranks against ~870 with one); launch "
              f"`mpiexec -n {gpus * world.num_nodes}` (one rank per GPU)", flush=True)
    index = world.local_rank % gpus                          # more ranks than GPUs share them
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def lr_at(step, cfg, total):
    """Linear warm-up to cfg.lr over cfg.warmup steps, then cosine decay to zero at `total`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(cfg, model):
    """Weight decay on weights (matrices), not on biases and norms."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg, groups, device):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda")


def make_parallel(cfg, model, world, device):
    """(engine, optimizer): data parallel (bucketed or naive) with a full optimizer, or ZeRO
    with an optimizer over this rank's shard; one rank alone needs no engine. DiLoCo wraps one
    of these over each worker's ranks."""
    if cfg.parallel == "diloco":
        return make_diloco(cfg, model, world, device)
    groups = param_groups(cfg, model)
    if cfg.parallel == "zero3":
        zero = apply_zero3(model, world, lambda shard_groups: make_optimizer(cfg, shard_groups, device),
                           units=model.blocks, groups=groups, window=cfg.zero3_window,
                           keep_between=cfg.zero3_keep_between, param_dtype=cfg.param_dtype,
                           reduce_dtype=cfg.grad_dtype)
        return zero, zero.optimizer
    if cfg.parallel.startswith("zero"):
        zero = apply_zero(model, world, lambda shard_groups: make_optimizer(cfg, shard_groups, device),
                          stage=int(cfg.parallel[-1]), groups=groups, bucket_mb=cfg.bucket_mb,
                          reduce_dtype=cfg.grad_dtype)
        return zero, zero.optimizer
    dp = SingleRank() if world.size == 1 else apply_data_parallel(
        model, world, cfg.bucket_mb, cfg.first_bucket_mb, cfg.grad_dtype,
        cfg.find_unused_parameters, overlap=not cfg.no_overlap, verbose=cfg.verbose,
        naive=cfg.parallel == "dp-naive", grad_views=cfg.grad_views,
        tail_mb=parse_tail_mb(cfg.tail_mb))
    return dp, make_optimizer(cfg, groups, device)


def make_diloco(cfg, model, world, device):
    def make_inner(model, comm):
        inner = type(cfg)(**{**vars(cfg), "parallel": cfg.inner})
        return make_parallel(inner, model, comm, device)
    try:
        engine = DiLoCo(model, world, make_inner, workers=diloco_shape(cfg, world)["workers"],
                        sync_every=cfg.sync_every, outer_lr=cfg.outer_lr,
                        outer_momentum=cfg.outer_momentum, fragments=cfg.fragments,
                        overlap=cfg.overlap, outer_dtype=cfg.outer_dtype)
    except DiLoCoConfigError as exc:
        raise ConfigError(str(exc)) from None
    return engine, engine.optimizer


def diloco_shape(cfg, world):
    return {"inner": cfg.inner, "workers": cfg.workers or world.num_nodes,
            "fragments": cfg.fragments, "outer_dtype": cfg.outer_dtype, "overlap": cfg.overlap}


def memory_report(cfg, mcfg, world, device, rss_before_model, measure):
    """--memory-report: after step 1 start a fresh peak (the optimizer state exists from then
    on); after step 2 print, for every rank, the accountant's prediction beside the measured
    peak of that step (parallel/memory.py)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        if not measure:
            torch.cuda.reset_peak_memory_stats(device)
            return
        measured, how = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated, step 2"
    else:
        if not measure:
            return
        measured = memory.peak_rss_bytes() - rss_before_model
        how = "peak RSS minus RSS before the model (CPU: rough)"
    parallel = cfg.parallel if world.size > 1 else "dp"
    items, peak = memory.predict(mcfg, parallel, world.size, cfg.micro_batch_size,
                                 precision=cfg.precision, optimizer=cfg.optimizer,
                                 grad_dtype=cfg.grad_dtype, bucket_mb=cfg.bucket_mb,
                                 checkpoint_activations=cfg.checkpoint_activations,
                                 window=cfg.zero3_window, keep_between=cfg.zero3_keep_between,
                                 param_dtype=cfg.param_dtype, grad_views=cfg.grad_views,
                                 diloco=diloco_shape(cfg, world) if parallel == "diloco" else None)
    text = memory.report(items, peak, measured, how, world.rank, parallel, world.size)
    for t in world.gather_object(text, root=0) or []:
        world.print0(t)


def read_losses(pending, world):
    """The losses of the steps in `pending` ((step, loss on this rank's device), oldest first),
    read in one transfer (which waits for the GPU) and averaged over ranks: the last step's
    loss. A loss that is not finite on any rank ends every rank with the step it happened at."""
    steps = [s for s, _ in pending]
    losses = torch.stack([loss.float() for _, loss in pending]).cpu().numpy().astype(np.float64)
    world.all_reduce(losses, op="avg")
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise TrainingError(f"loss is {losses[bad[0]]} at step {steps[bad[0]]}; "
                            f"try a lower --lr or --precision bf16/fp32")
    return float(losses[-1])


def evaluate(model, data, world, device, img_size, precision):
    """Top-1 accuracy over the whole test set: each rank scores its slice, counts are summed."""
    if data is None:
        return None
    model.eval()
    correct = 0
    mine = eval_indices(len(data), world.rank, world.size)
    with torch.no_grad(), autocast(device.type, precision):
        for start in range(0, len(mine), 256):
            x, y = data.batch(mine[start: start + 256], device, img_size, train=False)
            correct += int((model(x).argmax(-1) == y).sum())
    counts = np.array([correct, len(mine)], np.int64)
    world.all_reduce(counts)
    model.train()
    return counts[0] / max(1, counts[1])


def cpu_warning(cfg, mcfg, peak_tflops, world):
    """On a CPU, a big model gets an estimate of its step time and a suggestion that fits."""
    per_rank = cfg.batch_size // world.size
    seconds = mcfg.flops_per_image() * per_rank / (peak_tflops * 1e12)
    if seconds < 10:
        return None
    fits = [v.name for v in sorted(VARIANTS.values(), key=lambda v: v.flops_per_image())
            if v.flops_per_image() * per_rank / (peak_tflops * 1e12) < 1.0]
    suggestion = fits[-1] if fits else "vit_digits"
    return (f"warning: {mcfg.name} on a CPU: at least {seconds:.0f} s per step on each rank "
            f"({mcfg.flops_per_image() / 1e9:.0f} GFLOP per image x {per_rank} images at the "
            f"measured {peak_tflops * 1e3:.0f} GFLOP/s); a model that fits this machine: "
            f"{suggestion} (e.g. {suggestion} --data digits)")


@dataclass
class Run:
    """Everything one training run is built from (see `setup`)."""
    device: torch.device
    data: object                 # Splits
    mcfg: ViTConfig
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model as called in a step (compiled, or the model)
    groups: list                 # the checkpoint's parameter groups
    engine: object               # data parallel / ZeRO / DiLoCo / SingleRank
    optimizer: object
    zero: object                 # the ZeRO engine stepping the optimizer itself, or None
    outer: object                # the DiLoCo engine, or None
    scaler: object
    sampler: ShardedSampler
    total: int                   # steps of the whole run
    eval_every: int
    card: dict                   # the model card saved with every checkpoint
    rss_before_model: int        # host memory before the model was built (--memory-report)


def setup(cfg, world):
    """Check the config, pick the device, load the data, build the model (from --init-from's
    weights where given) and wrap it in its engine."""
    cfg.check(world.size)
    if cfg.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise ConfigError(f"--tensorboard {cfg.tensorboard}: the tensorboard package is not "
                              f"installed (pip install tensorboard)") from None
    device = pick_device(cfg, world)
    variant = ViTConfig.named(cfg.model)        # unknown names fail here, listing the valid ones
    data = load_dataset(cfg.data, cfg.data_dir, cfg.img_size or None,
                        num_classes=variant.num_classes, channels=variant.in_chans, seed=cfg.seed)
    overrides = {"num_classes": data.num_classes, "in_chans": data.channels}
    if cfg.img_size:
        overrides["img_size"] = cfg.img_size
    mcfg = ViTConfig.named(cfg.model, **overrides)

    torch.manual_seed(cfg.seed)
    rss_before_model = memory.rss_bytes()
    model = VisionTransformer(mcfg, cfg.checkpoint_activations)
    if cfg.init_from:
        for line in init_from(model, cfg.init_from):
            world.print0(line)
    model = model.to(device)
    # the checkpoint's parameter groups, taken before ZeRO-3 empties the parameters (the groups
    # split by parameter shape)
    groups = [g["params"] for g in param_groups(cfg, model)]
    engine, optimizer = make_parallel(cfg, model, world, device)
    inner = engine.inner if isinstance(engine, DiLoCo) else engine
    step_model = model
    if cfg.compile:        # with other ranks: in pieces, so gradients still come piece by piece
        if world.size == 1:
            step_model = torch.compile(model)
        elif cfg.parallel == "zero3" or cfg.compile_piece_mb <= 0:
            step_model = model.compile_blocks()          # ZeRO-3's gather hooks stay eager
        else:
            step_model = compile_in_pieces(model, cfg.compile_piece_mb, parse_tail_mb(cfg.tail_mb))
    per_rank_batch = cfg.micro_batch_size * cfg.grad_accum
    sampler = ShardedSampler(len(data.train), world.rank, world.size, per_rank_batch, cfg.seed,
                             shuffle=getattr(data.train, "shuffle", True))
    total = cfg.steps or cfg.epochs * sampler.steps_per_epoch
    return Run(device=device, data=data, mcfg=mcfg, model=model, step_model=step_model,
               groups=groups, engine=engine, optimizer=optimizer,
               zero=inner if isinstance(inner, (Zero, Zero3)) else None,
               outer=engine if isinstance(engine, DiLoCo) else None,
               scaler=torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"),
               sampler=sampler, total=total, eval_every=cfg.eval_every or sampler.steps_per_epoch,
               card=model_card(cfg, mcfg, data), rss_before_model=rss_before_model)


def banner(cfg, run, world, job_peak):
    mcfg = run.mcfg
    return (f"mpitrain.train: {mcfg.name} ({mcfg.count_params() / 1e6:.2f} M params, "
            f"{mcfg.img_size}px, {mcfg.num_classes} classes) on {cfg.data}; {world.size} "
            f"rank(s) on {run.device.type}; global batch {cfg.batch_size} = {world.size} x "
            f"{cfg.micro_batch_size} x {cfg.grad_accum} accum; {run.total} steps; {cfg.precision}"
            f"{' compiled' if cfg.compile else ''}\n  kernels: {kernels.describe_backend()}\n"
            f"  MFU peak: {job_peak:.2f} TFLOP/s (sum over ranks of "
            f"{'--peak-tflops' if cfg.peak_tflops else 'a matmul measured at start-up'})")


def restore(cfg, run, world):
    """--resume: the newest usable checkpoint into the run; its info, or None."""
    if run.outer is not None:
        return diloco_checkpoint.load(cfg.checkpoint_dir, run.model, run.outer, run.groups, world)
    return checkpoint.load(cfg.checkpoint_dir, run.model, run.engine, run.optimizer, run.groups,
                           world)


def save(cfg, run, world, position, gen):
    """A checkpoint of the run at `position`, with every rank's random draws."""
    extra = {"epoch": position.epoch, "config": vars(cfg).copy(), "loss": position.loss,
             "test_accuracy": position.accuracy, "model_info": run.card}
    rng = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if run.outer is not None:
        diloco_checkpoint.save(cfg.checkpoint_dir, position.step, run.model, run.outer,
                               run.groups, world, position.run_id, extra=extra, rng=rng,
                               keep=cfg.checkpoint_keep)
    else:
        checkpoint.save(cfg.checkpoint_dir, position.step, run.model, run.engine, run.optimizer,
                        run.groups, world, position.run_id, extra=extra, rng=rng,
                        keep=cfg.checkpoint_keep)


@dataclass
class Position:
    """Where a run stands: steps done, the epoch, the batches of that epoch already trained
    (after a resume), the last loss (averaged over ranks), the last test accuracy, the run id."""
    run_id: str
    step: int = 0
    epoch: int = 0
    skip: int = 0
    loss: float = 0.0
    accuracy: float = None


def resume(cfg, run, world, gen, position, stop):
    """--resume: the newest usable checkpoint into the run and into `position`, and each
    rank's random draws as they were (when the world size is the same)."""
    info = restore(cfg, run, world)
    for line in resume_note(cfg, info, stop):
        world.print0(line)
    if info is None:
        return
    position.step = info["step"]
    position.run_id = info["run_id"] or position.run_id
    position.epoch, position.skip = divmod(position.step, run.sampler.steps_per_epoch)
    position.loss = info["extra"].get("loss", math.nan)
    position.accuracy = info["extra"].get("test_accuracy")
    if info["rng"] is not None:
        torch.set_rng_state(info["rng"]["torch"])
        gen.set_state(info["rng"]["gen"])


def due(cfg, run, step, stop):
    """What the end of step `step` brings: (a log line, an evaluation, a checkpoint)."""
    logging = step % cfg.log_every == 0 or step == run.total
    evaluating = step % run.eval_every == 0 or step == run.total
    saving = bool(cfg.checkpoint_dir) and (
        step == stop or bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0))
    return logging, evaluating, saving


def train_step(cfg, run, indices, step, gen):
    """One optimizer step over this rank's `indices` (grad_accum micro-batches); returns the
    step's loss on the device (not read: reading it waits for the GPU)."""
    dp, data = run.engine, run.data.train
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(step, cfg, run.total)
    local_loss = torch.zeros((), device=run.device)   # summed on the device: no sync per micro-batch
    for m in range(cfg.grad_accum):
        part = indices[m * cfg.micro_batch_size: (m + 1) * cfg.micro_batch_size]
        x, y = data.batch(part, run.device, run.mcfg.img_size, train=True, generator=gen)
        with autocast(run.device.type, cfg.precision):
            loss = F.cross_entropy(run.step_model(x), y) / cfg.grad_accum
        last = m == cfg.grad_accum - 1          # only the last backward sends gradients
        with contextlib.nullcontext() if last else dp.no_sync():
            run.scaler.scale(loss).backward()
        local_loss += loss.detach()
    dp.synchronize()
    if run.zero is not None:
        run.zero.step()                       # this rank's shard, then all-gather
        run.zero.zero_grad()
    else:
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=False)
    if run.outer is not None:
        run.outer.after_inner_step(step + 1)     # an outer step where one is due
    return local_loss


def with_next(batches):
    """(step, indices, the next step's indices or None) over a sampler's batches."""
    previous = None
    for item in batches:
        if previous is not None:
            yield (*previous, item[1])
        previous = item
    if previous is not None:
        yield (*previous, None)


def prefetch(cfg, run, indices):
    """Start decoding the next step's micro-batches where the data set reads from disk."""
    if indices is not None and hasattr(run.data.train, "prefetch"):
        for m in range(cfg.grad_accum):
            run.data.train.prefetch(indices[m * cfg.micro_batch_size: (m + 1) * cfg.micro_batch_size],
                                    run.mcfg.img_size, True)


def train(cfg, world):
    """The whole run: set up, resume where asked, then steps, each followed by what is due
    (a log line, an evaluation, a checkpoint). Returns steps, final loss and test accuracy."""
    given = replace(cfg)                       # as given: check() fills in the batch split
    position = Position(run_id=check_checkpoint_dir(cfg, world))
    run = setup(cfg, world)
    peak = cfg.peak_tflops or measure_matmul_tflops(run.device, cfg.precision)
    job_peak = np.array([peak], np.float64)
    world.all_reduce(job_peak)
    world.print0(banner(cfg, run, world, job_peak[0]))
    warning = cpu_warning(cfg, run.mcfg, peak, world) if run.device.type == "cpu" else None
    if warning:
        world.print0(warning)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + world.rank)   # augmentation draws
    stop = min(run.total, cfg.stop_at_step) if cfg.stop_at_step else run.total
    if cfg.resume:
        resume(cfg, run, world, gen, position, stop)
    reports = Reports(cfg, given, world, run, job_peak[0])
    pending = []                               # (step, loss on the device) not yet read
    while position.step < stop:
        if hasattr(run.data.train, "set_epoch"):
            run.data.train.set_epoch(position.epoch)
        for _, indices, upcoming in with_next(run.sampler.batches(position.epoch, position.skip)):
            if position.step >= stop:
                break
            start = time.perf_counter()
            prefetch(cfg, run, upcoming if position.step + 1 < stop else None)
            local_loss = train_step(cfg, run, indices, position.step, gen)
            position.step += 1
            step = position.step
            pending.append((step, local_loss))
            if cfg.memory_report and step in (1, min(2, stop)):
                memory_report(cfg, run.mcfg, world, run.device, run.rss_before_model,
                              measure=step == min(2, stop))
            logging, evaluating, saving = due(cfg, run, step, stop)
            if logging or evaluating or saving or step == stop:
                # the host waits for the GPU here only: between these points it queues the next
                # steps while the GPU runs (DDP's loop does the same; a per-step read of the loss
                # stalled the GPU every step while the host launched the next forward)
                position.loss = read_losses(pending, world)
                pending = []
            reports.timed(time.perf_counter() - start)
            if logging:
                reports.step(position, lr_at(step - 1, cfg, run.total))
            if evaluating:
                position.accuracy = evaluate(run.step_model, run.data.test, world, run.device,
                                             run.mcfg.img_size, cfg.precision)
                if position.accuracy is not None:
                    reports.accuracy(position)
            if saving:
                save(cfg, run, world, position, gen)
        position.epoch += 1
        position.skip = 0
    reports.close()
    return finish(cfg, run, world, position)


def finish(cfg, run, world, position):
    dp = run.engine
    if cfg.verbose and hasattr(dp, "stats"):
        world.print0(f"data parallel: {dp.stats['backwards']} synchronized backwards, "
                     f"{dp.stats['wait_s']:.2f} s waited for communication after backward "
                     f"(rank 0), bucket plan built {dp.stats['plans']} time(s)")
    dp.close()
    accuracy = position.accuracy
    world.print0(f"done: {position.step} steps, final loss {position.loss:.4f}"
                 + (f", test accuracy {accuracy * 100:.2f}%" if accuracy is not None else ""))
    return {"steps": position.step, "loss": float(position.loss), "test_accuracy": accuracy}
