"""Entry point of `python -m mpitrain.train` (see mpitrain/train/__init__.py).

How a failure ends the job:
- an error every rank meets in the same way (a bad flag, checked against the same flags on every
  rank; a NaN loss, found in the all-reduced losses): rank 0 prints it once, every rank exits
  non-zero, nobody is left waiting;
- an error of one rank's own (a file only it opens, its device, its shard, a collective it was
  called wrongly in): that rank prints one line naming itself and aborts the whole job at once
  (MPI_Abort), so no other rank waits in a collective the failed rank will never join;
- anything else (a bug): the abort hook of mpitrain.comm prints the traceback and aborts.
"""
import sys

from ..checkpoint import CheckpointError
from ..comm import init
from ..comm.launcher import foreign_launcher
from ..comm.watchdog import abort_job
from .config import ConfigError
from .loop import RankError, TrainingError, train

EVERY_RANK = (ConfigError, TrainingError)        # the same inputs on every rank: one message
ONE_RANK = (OSError, ValueError, CheckpointError, RankError)   # this rank's own: one line, abort
EXIT_CODES = {ConfigError: 2, TrainingError: 3}


def main(argv=None):
    try:
        import torch  # noqa: F401
    except ImportError:
        print("mpitrain.train: error: the trainer needs torch, which is not installed: "
              "pip install 'mpitrain[train]' (or the torch build for your CUDA)", file=sys.stderr)
        sys.exit(2)
    from .config import from_args
    cfg = from_args(argv)
    world = init()
    wrong_start = foreign_launcher(world.size)
    if wrong_start:
        print(f"mpitrain.train: error: {wrong_start}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        train(cfg, world)
    except EVERY_RANK as exc:
        if world.rank == 0:
            print(f"mpitrain.train: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES[ConfigError if isinstance(exc, ConfigError) else TrainingError])
    except ONE_RANK as exc:
        message = (f"mpitrain.train: error on rank {world.rank} of {world.size}: {exc}"
                   + ("; aborting the job" if world.size > 1 else ""))
        if world.size > 1:
            abort_job(world.comm, message, code=2)
        print(message, file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
