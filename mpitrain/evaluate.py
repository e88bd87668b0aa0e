"""python -m mpitrain.evaluate CKPT [--data ...] : accuracy, loss and confusion counts of a
trained model on a data set, at any world size.

    mpiexec -n 4 python -m mpitrain.evaluate runs/ck                     # its own test split
    python -m mpitrain.evaluate model.safetensors --data imagefolder --data-dir photos --split train
    python -m mpitrain.evaluate vit_b16.pt --model vit_base_patch16_224 --data imagefolder ...

CKPT is a checkpoint directory or a weights file (checkpoint.read_weights). The data set and
its normalization default to the ones the checkpoint was trained on (its model card). Each rank
scores its slice of the split (rank r: samples r, r + world, ...); the counts are summed with an
all-reduce, so every world size gives the same numbers. --json FILE writes them (rank 0).
"""
import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from .precision import autocast
from .checkpoint import CheckpointError
from .comm import init
from .data import SOURCES, load_dataset
from .data.folder import DataError
from .data.sampler import eval_indices
from .inference import class_name, load_model



def parser():
    p = argparse.ArgumentParser(prog="python -m mpitrain.evaluate", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:6]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint directory or a .safetensors / .pt file")
    p.add_argument("--model", default="", help="the variant, for weights without a model card")
    p.add_argument("--data", default="", metavar="{" + ",".join(s for s in SOURCES if s != "synthetic") + "}",
                   help="the data set (default: the checkpoint's)")
    p.add_argument("--data-dir", default=None, help="its directory (default: the checkpoint's)")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--batch-size", type=int, default=256, help="images per forward on a rank")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--json", default="", help="write the results here (rank 0)")
    return p


def score(model, data, world, device, batch_size, precision, num_classes):
    """{correct, count, loss_sum, confusion[true][predicted]} over the whole split."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    loss_sum = np.zeros(1, np.float64)
    mine = eval_indices(len(data), world.rank, world.size)
    with torch.no_grad(), autocast(device.type, precision):
        for start in range(0, len(mine), batch_size):
            x, y = data.batch(mine[start: start + batch_size], device, model.cfg.img_size, train=False)
            logits = model(x).float()
            loss_sum[0] += float(F.cross_entropy(logits, y, reduction="sum"))
            np.add.at(confusion, (y.cpu().numpy(), logits.argmax(-1).cpu().numpy()), 1)
    world.all_reduce(confusion)
    world.all_reduce(loss_sum)
    count = int(confusion.sum())
    return {"accuracy": float(np.trace(confusion)) / max(1, count), "count": count,
            "loss": float(loss_sum[0]) / max(1, count), "confusion": confusion.tolist()}


def pick_device(name, world):
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DataError("--device cuda: no GPU is visible here")
        index = world.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def report(result, card):
    lines = [f"accuracy {result['accuracy'] * 100:.2f}% ({int(np.trace(result['confusion']))}/"
             f"{result['count']}), mean loss {result['loss']:.4f}",
             "confusion counts (rows: true class, columns: predicted):"]
    names = [class_name(card, i) for i in range(len(result["confusion"]))]
    width = max(6, max(len(n) for n in names) + 1)
    lines.append(" " * width + "".join(f"{n[:width - 1]:>{width}}" for n in names))
    for name, row in zip(names, result["confusion"]):
        lines.append(f"{name[:width - 1]:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return lines


def main(argv=None):
    args = parser().parse_args(argv)
    world = init()
    try:
        device = pick_device(args.device, world)
        model, card = load_model(args.checkpoint, device, args.model or None)
        data_name = args.data or card.get("data")
        if not data_name or data_name == "synthetic":
            raise DataError(f"{args.checkpoint}: say which data to evaluate on with --data "
                            f"(the checkpoint names {data_name or 'none'})")
        data_dir = args.data_dir if args.data_dir is not None else card.get("data_dir", "")
        splits = load_dataset(data_name, data_dir, card["img_size"], card["num_classes"],
                              card["in_chans"])
        if splits.num_classes != card["num_classes"]:
            raise DataError(f"--data {data_name}: {splits.num_classes} classes, the model has "
                            f"{card['num_classes']}")
        data = splits.test if args.split == "test" else splits.train
        if card.get("mean") is not None:          # the statistics the model was trained with
            data.mean = torch.as_tensor(card["mean"], dtype=torch.float32).view(1, -1, 1, 1)
            data.std = torch.as_tensor(card["std"], dtype=torch.float32).view(1, -1, 1, 1)
        if hasattr(data, "train"):
            data.train = False
        result = score(model, data, world, device, args.batch_size, args.precision,
                       card["num_classes"])
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as exc:
        message = f"mpitrain.evaluate: error on rank {world.rank}: {exc}"
        if world.size > 1:
            from .comm.watchdog import abort_job
            abort_job(world.comm, message, code=2)
        print(message, file=sys.stderr, flush=True)
        return 2
    if world.rank == 0:
        print(f"mpitrain.evaluate: {args.checkpoint} on {data_name} {args.split} "
              f"({world.size} rank(s), {device.type})")
        for line in report(result, card):
            print(line)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(result, checkpoint=str(args.checkpoint), data=data_name,
                               split=args.split, classes=card.get("classes")), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
