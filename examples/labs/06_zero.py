"""Lab 6: ZeRO — what each stage keeps on a rank, predicted and measured, and where its
reduce-scatter and all-gather sit in a training step.

    mpiexec -n 4 python examples/labs/06_zero.py [--steps 3] [--trace zero.json] [--png zero.png]

--trace writes the last step of each stage into one file, a process per stage; --png writes one
timeline per stage (zero-zero1.png, ...).

What to look for:
  - memory: data parallel keeps on every rank the fp32 parameters (4 bytes each), their
    gradients (4), AdamW's two moments (8) and the wire buckets. Stage 1 splits the optimizer
    state over the ranks (8/p) but packs a full gradient copy; stage 2 splits the gradients too
    (4/p + one bucket); stage 3 splits the parameters as well, and holds full only the blocks
    it is computing (here: the root and 2 blocks at its peak, inside backward). The accountant's
    prediction (mpitrain/parallel/memory.py, the ZeRO paper's
    arithmetic for this layout) is printed beside the bytes of the tensors this rank really holds.
  - the step: stage 1 reduce-scatters the whole gradient after backward; stage 2 reduce-scatters
    bucket by bucket *during* backward (each bucket as soon as its gradients exist); both
    all-gather the updated shards after the optimizer step. Stage 3 all-gathers each block
    just before its forward and again just before its backward, and reduce-scatters each
    block's gradients as soon as they are complete; nothing after the optimizer step. The list
    shows each collective call of one step with the phase it ran in.
  - wire buckets: 0 in every column here, predicted and held, because the gradients are fp32
    and the data-parallel buckets are the gradients' own memory (each .grad a view of its
    bucket); a bucket of its own exists only when the wire dtype differs (--grad-dtype bf16).
  - zero3 at 2 ranks holds more parameter bytes than data parallel: its shard is half the
    model, but at its peak it also holds full copies of what it is computing (the root: patch
    embedding, norm and head, and the blocks in its window). That saving grows with the ranks
    and the depth; the line under the table splits the bytes.
  - the losses: every stage follows data parallel's loss sequence.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from _lab import lab_args, questions, verdict

from mpitrain.comm import init, trace_render
from mpitrain.models import ViTConfig, VisionTransformer
from mpitrain.parallel import apply_data_parallel, apply_zero, apply_zero3
from mpitrain.parallel.memory import held_bytes, predict, watch_zero3_peak

CFG = ViTConfig(name="lab", img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=64,
                depth=4, num_heads=4, mlp_dim=256)
PER_RANK = 4
BUCKET_MB = 0.05


def batch(step, world):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(world.size * PER_RANK, 1, 16, 16, generator=g)
    y = torch.randint(0, 10, (world.size * PER_RANK,), generator=g)
    mine = slice(world.rank * PER_RANK, (world.rank + 1) * PER_RANK)
    return x[mine], y[mine]


def run(world, parallel, steps, args):
    """Train `steps` steps; trace the last one (ZeRO) with phase marks. Returns losses, the
    memory rows and (rank 0) the step's collective calls."""
    torch.manual_seed(0)
    model = VisionTransformer(CFG)
    make_opt = lambda groups: torch.optim.AdamW(groups, lr=1e-3)   # noqa: E731
    if parallel == "dp":
        engine = apply_data_parallel(model, world, bucket_mb=BUCKET_MB, overlap=False)
        opt = make_opt(model.parameters())
    elif parallel == "zero3":
        engine = apply_zero3(model, world, make_opt, units=model.blocks, window=1)
        opt = engine.optimizer
    else:
        engine = apply_zero(model, world, make_opt, stage=int(parallel[-1]), bucket_mb=BUCKET_MB)
        opt = engine.optimizer
    # ZeRO-3's model state peaks inside backward: look there
    peak = watch_zero3_peak(model, engine, opt) if parallel == "zero3" else []
    losses, calls = [], None
    for step in range(steps):
        x, y = batch(step, world)
        peak.clear()
        traced = parallel != "dp" and step == steps - 1
        with (world.trace() if traced else _nothing()) as trace:
            marks = {"start": time.perf_counter()}
            loss = F.cross_entropy(model(x), y)
            marks["forward"] = time.perf_counter()
            loss.backward()
            marks["backward"] = time.perf_counter()
            engine.synchronize()
            marks["after backward"] = time.perf_counter()
            if parallel == "dp":
                opt.step()
                opt.zero_grad(set_to_none=False)
            else:
                engine.step()
            marks["optimizer step + gather"] = time.perf_counter()
            if traced:
                calls = phases(world, trace, marks, args)
            if parallel != "dp":
                engine.zero_grad()
        losses.append(float(np.mean(world.mpi_comm.allgather(loss.item()))))
    memory = peak[0] if peak else held_bytes(model, engine, opt)
    engine.close()
    return losses, memory, calls


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def phases(world, trace, marks, args):
    """Each collective call of the traced step and the phase it started in (rank 0's view)."""
    events, _ = trace.gather()
    if world.rank != 0:
        return None
    bounds = [(name, t - trace.t0) for name, t in marks.items() if name != "start"]
    first = {}
    for e in events:
        key = (e["collective"], e["call"])
        if e["rank"] == 0 and key not in first:
            first[key] = e["start"]
    calls = []
    for (collective, call), start in sorted(first.items(), key=lambda kv: kv[1]):
        phase = next((name for name, t in bounds if start <= t), "after the step")
        calls.append((collective, call, phase))
    return calls, events


def main():
    args = lab_args(__doc__, takes=("trace", "png"),
                    extra=lambda p: p.add_argument("--steps", type=int, default=3))
    world = init()
    torch.set_num_threads(1)
    results = {par: run(world, par, args.steps, args) for par in ("dp", "zero1", "zero2", "zero3")}
    p = world.size
    world.print0(f"\nmemory on rank 0 after {args.steps} steps ({CFG.count_params()} parameters, "
                 f"{p} ranks; zero3: at its first reduce-scatter in backward, where its model "
                 f"state peaks), bytes: predicted / held")
    world.print0(f"{'item':18s}" + "".join(f"{par:>22s}" for par in results))
    ok = True
    for item in ("parameters", "gradients", "optimizer state", "wire buckets"):
        row = f"{item:18s}"
        for par, (_, memory, _) in results.items():
            items, _ = predict(CFG, par, p, PER_RANK, precision="fp32", optimizer="adamw",
                               bucket_mb=BUCKET_MB)
            predicted = {i.name: i.bytes for i in items}.get(item, 0)
            have = memory.get(item, 0)
            ok &= abs(predicted - have) <= 64 * (len(list(VisionTransformer(CFG).parameters())) + p)
            row += f"{predicted:>11d} / {have:<9d}"
        world.print0(row)
    held3 = results["zero3"][1]["parameters"]
    shard3 = 4 * -(-CFG.count_params() // p)
    world.print0(f"zero3's parameters at its peak: {shard3} bytes of its shard (1/{p} of the "
                 f"model) + {held3 - shard3} of full copies being computed with; data parallel "
                 f"holds {4 * CFG.count_params()}")
    world.print0("wire buckets: 0 because fp32 gradients are views of their buckets (no copy)")
    stages = {}
    for par in ("zero1", "zero2", "zero3"):
        if world.rank == 0:
            calls, stages[par] = results[par][2]
            print(f"\n{par}: the collectives of step {args.steps} (the last), in order, with the "
                  f"phase each started in")
            for collective, call, phase in calls:
                print(f"  {collective:15s} #{call:<4d} {phase}")
    dp_losses = results["dp"][0]
    world.print0(f"\n{'step':>4}" + "".join(f"{par:>12s}" for par in results))
    for i in range(args.steps):
        world.print0(f"{i + 1:4d}" + "".join(f"{results[par][0][i]:12.6f}" for par in results))
    if world.rank == 0 and args.trace:
        trace_render.write_chrome_trace({f"{par}, step {args.steps}": ev
                                         for par, ev in stages.items()}, args.trace)
        print(f"wrote {args.trace} (one process per stage; ui.perfetto.dev)")
    if world.rank == 0 and args.png:
        stem = args.png[:-4] if args.png.endswith(".png") else args.png
        for par, ev in stages.items():
            trace_render.write_timeline_png(ev, f"{stem}-{par}.png", f"{par}: step {args.steps}")
            print(f"wrote {stem}-{par}.png")
    questions(world,
              "Which item does stage 1 divide by the number of ranks, and which does it not? "
              "Read it off the optimizer-state and gradient rows.",
              "Stage 2 reduce-scatters inside backward and stage 1 after it: which list above "
              "shows that, and what does stage 2 save by it?",
              f"At how many ranks would zero3's parameters fall below data parallel's here? "
              f"Use the shard and the full copies of the line under the table.")
    same = all(np.allclose(results[par][0], dp_losses, rtol=1e-5) for par in ("zero1", "zero2", "zero3"))
    verdict(world, ok and same, "each stage holds what the accountant predicts, and follows data "
                                "parallel's losses (rtol 1e-5)")


if __name__ == "__main__":
    main()
