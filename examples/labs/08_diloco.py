"""Lab 8: data parallel against DiLoCo over a slow link: bytes between workers, and accuracy.

    mpiexec -n 4 python examples/labs/08_diloco.py [--link-mbit 100] [--sync-every 20]
    python -m mpitrain.cluster run --nodes 2 --ranks-per-node 2 --link 100mbit -- \
        python examples/labs/08_diloco.py            # the same over a real (emulated) link

What to look for:
  - data parallel all-reduces every gradient every step; DiLoCo's workers (here 2 groups of
    ranks) train apart and exchange only the change of their parameters every H steps, so the
    bytes between workers fall by about H (and by 4-8 more with --outer-dtype int8 / int4);
  - the link time: the bytes a worker sends across divided by the link rate. On one machine it
    is computed, not waited for (--link-mbit); through `mpitrain.cluster run` the link is real
    and the measured time already holds it;
  - test accuracy after the same samples: close, though the workers saw different data between
    outer steps;
  - the check at the end: with plain SGD, H = 1, outer lr 1 and no momentum, DiLoCo is data
    parallel step for step (averaging parameters every step = averaging gradients).
Questions, which this lab's own numbers answer:
  1. How many times fewer bytes does DiLoCo send than data parallel here, and what sets it?
  2. At what link rate would the two take the same time? (compute time + bytes / rate)
  3. Does --sync-every 5 or 50 change the accuracy more than the bytes? Try both.
"""
import json
import os
import tempfile

from _lab import lab_args, questions, verdict

from mpitrain.comm import init
from mpitrain.train.config import TrainConfig
from mpitrain.train.loop import train


def options(p):
    p.add_argument("--link-mbit", type=float, default=100.0, help="the link, for the link time")
    p.add_argument("--sync-every", type=int, default=20, help="DiLoCo's H")
    p.add_argument("--outer-dtype", default="fp32", help="fp32 | bf16 | int8 | int4")
    p.add_argument("--epochs", type=int, default=3)


def run(world, log, **flags):
    cfg = TrainConfig(model="vit_digits", batch_size=64, lr=3e-3, eval_every=0, log_every=1,
                      progress=False, log_jsonl=log, **flags)
    result = train(cfg, world)
    rows = [json.loads(line) for line in open(log)] if world.rank == 0 else []
    seconds = sum(64 / r["img_per_s"] for r in rows if "loss" in r)
    return result, seconds, [r["loss"] for r in rows if "loss" in r]


def main():
    args = lab_args(__doc__, takes=(), extra=options)
    world = init()
    workers = 2 if world.size % 2 == 0 else 1
    params = 136138                                   # vit_digits (mpitrain/models/config.py)
    grad_bytes = 4 * params
    tmp = tempfile.mkdtemp()
    base = dict(epochs=args.epochs)
    dp, dp_s, _ = run(world, os.path.join(tmp, "dp.jsonl"), parallel="dp", **base)
    lo, lo_s, _ = run(world, os.path.join(tmp, "diloco.jsonl"), parallel="diloco",
                      workers=workers, sync_every=args.sync_every, outer_dtype=args.outer_dtype,
                      **base)
    steps = dp["steps"]
    # bytes one worker sends to the others: data parallel all-reduces the gradient every step
    # (the hierarchical all-reduce: once per step, split over the worker's ranks); DiLoCo sends
    # its outer gradient every H steps (all-reduce or, compressed, all-gather: the same once)
    per_outer = {"fp32": 4, "bf16": 2, "int8": 1 + 4 / 256, "int4": 0.5 + 4 / 256}[args.outer_dtype]
    dp_bytes = steps * grad_bytes if workers > 1 else 0
    lo_bytes = (steps // args.sync_every) * per_outer * params if workers > 1 else 0
    rate = args.link_mbit * 1e6 / 8
    world.print0(f"\n{world.size} ranks, {workers} workers of {world.size // workers}; "
                 f"{steps} steps of 64 images; link {args.link_mbit:g} Mbit/s")
    world.print0(f"{'':>10} {'MB between workers':>19} {'link s':>7} {'compute s':>10} "
                 f"{'test accuracy':>14}")
    for name, r, s, b in (("dp", dp, dp_s, dp_bytes), (f"diloco H={args.sync_every}", lo, lo_s, lo_bytes)):
        world.print0(f"{name:>10} {b / 1e6:>19.2f} {b / rate:>7.2f} {s:>10.2f} "
                     f"{r['test_accuracy'] * 100:>13.2f}%")
    if lo_bytes:
        world.print0(f"DiLoCo sent {dp_bytes / lo_bytes:.0f}x fewer bytes between workers")

    questions(world,
              "How many times fewer bytes did DiLoCo send between workers, and which two settings "
              "(--sync-every, --outer-dtype) multiply into that factor?",
              "At the link of the table, how many seconds of each run were the link's? At what "
              "link rate would data parallel's link time equal its compute time?",
              "What did the test accuracy cost? Run with a larger --sync-every and see when it "
              "starts to fall.")
    # the check: SGD, H = 1, outer lr 1, no momentum is data parallel, step for step
    short = dict(steps=6, optimizer="sgd")
    _, _, dp_losses = run(world, os.path.join(tmp, "dp-sgd.jsonl"), parallel="dp", **short)
    _, _, lo_losses = run(world, os.path.join(tmp, "diloco-sgd.jsonl"), parallel="diloco",
                          workers=workers, sync_every=1, outer_lr=1.0, outer_momentum=0.0, **short)
    same = world.rank != 0 or all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(lo_losses, dp_losses))
    verdict(world, same, "DiLoCo with SGD, H = 1, outer lr 1 and no momentum follows data "
                         "parallel's losses (1e-5)")


if __name__ == "__main__":
    main()
