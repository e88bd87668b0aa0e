"""python -m mpitrain.checkpoint consolidate DIR OUT

DIR: a checkpoint directory (DIR/step-NNNNNNNN) or a checkpoint root (its newest valid step).
OUT: one file of {parameter name: tensor} with timm's names: OUT.safetensors (the model card in
its metadata) or OUT.pt (loadable with torch.load alone; the model card in OUT.pt.json).
"""
import argparse
import sys

from . import CheckpointError, consolidate
from .export import step_directory


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpitrain.checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("consolidate", help="write one plain state dict")
    c.add_argument("directory")
    c.add_argument("out")
    args = p.parse_args(argv)
    try:
        directory = step_directory(args.directory)
        state = consolidate(directory, args.out)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(state)} tensors from {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
