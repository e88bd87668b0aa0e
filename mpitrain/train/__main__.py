"""Entry point of `python -m mpitrain.train` (see mpitrain/train/__init__.py)."""
import sys

from ..comm import init
from .config import ConfigError, from_args
from .loop import TrainingError, train


def main(argv=None):
    cfg = from_args(argv)
    world = init()
    try:
        train(cfg, world)
    except (ConfigError, FileNotFoundError, TrainingError) as exc:
        # Every rank reaches the same error (same flags, same files, same all-reduced loss):
        # rank 0 says it once, every rank exits non-zero, nobody is left waiting.
        code = 2 if isinstance(exc, (ConfigError, FileNotFoundError)) else 3
        if world.rank == 0:
            print(f"mpitrain.train: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(code)
    except ValueError as exc:            # unknown model name and similar checks
        if world.rank == 0:
            print(f"mpitrain.train: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
