"""python -m mpitrain.predict CKPT IMAGE... : the top-k classes of each image, with names.

    python -m mpitrain.predict runs/ck photo1.jpg photo2.png --top-k 3
    python -m mpitrain.predict model.safetensors digits/*.png --json predictions.json

CKPT is a checkpoint directory or a weights file; the image size, the normalization and the
class names come from its model card (inference.py). One process; no mpiexec needed.
"""
import argparse
import json
import sys

import torch

from .checkpoint import CheckpointError
from .data.folder import DataError
from .inference import class_name, image_tensor, load_model


def parser():
    p = argparse.ArgumentParser(prog="python -m mpitrain.predict", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:4]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint directory or a .safetensors / .pt file")
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default: 5)")
    p.add_argument("--model", default="", help="the variant, for weights without a model card")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", default="", help="also write the predictions here")
    return p


def predict(model, card, paths, top_k, device):
    """[{"image", "top": [{"class", "index", "probability"}, ...]}] for each path."""
    out = []
    with torch.no_grad():
        for path in paths:
            probs = model(image_tensor(path, card).to(device)).float().softmax(-1)[0]
            values, indices = probs.topk(min(top_k, probs.numel()))
            out.append({"image": str(path), "top": [
                {"class": class_name(card, int(i)), "index": int(i), "probability": float(v)}
                for v, i in zip(values, indices)]})
    return out


def main(argv=None):
    args = parser().parse_args(argv)
    if args.top_k < 1:
        print(f"mpitrain.predict: error: --top-k must be >= 1, got {args.top_k}", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        model, card = load_model(args.checkpoint, device, args.model or None)
        results = predict(model, card, args.images, args.top_k, device)
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as exc:
        print(f"mpitrain.predict: error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability'] * 100:.1f}%"
                                            for t in r["top"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
