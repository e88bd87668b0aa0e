"""python -m mpitrain.checkpoint consolidate DIR OUT

DIR: a checkpoint directory (DIR/step-NNNNNNNN) or a checkpoint root (its newest valid step).
OUT: one file of {parameter name: tensor}, loadable with torch.load by itself (no mpitrain).
"""
import argparse
import sys
from pathlib import Path

from . import CheckpointError, consolidate
from .store import MANIFEST, valid_checkpoints


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpitrain.checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("consolidate", help="write one plain state dict")
    c.add_argument("directory")
    c.add_argument("out")
    args = p.parse_args(argv)
    directory = Path(args.directory)
    if not (directory / MANIFEST).is_file():
        found = valid_checkpoints(directory)
        if not found:
            print(f"error: {directory}: no checkpoint with a manifest here", file=sys.stderr)
            return 2
        directory = found[-1]
    try:
        state = consolidate(directory, args.out)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(state)} tensors from {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
