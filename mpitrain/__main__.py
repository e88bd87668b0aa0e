"""python -m mpitrain --version | python -m mpitrain (the commands this package has)."""
import argparse
import sys

from . import __version__

COMMANDS = {
    "mpitrain.train": "train a Vision Transformer over the ranks of mpiexec",
    "mpitrain.evaluate": "accuracy, loss and confusion counts of a checkpoint on a data set",
    "mpitrain.predict": "top-k classes of images under a checkpoint",
    "mpitrain.plot": "curves of one or more runs' metrics (JSON lines) in one figure",
    "mpitrain.checkpoint": "consolidate a sharded checkpoint into one state dict",
    "mpitrain.bench": "collectives and training side by side with MPI, NCCL, DDP, FSDP2",
    "mpitrain.cluster": "an emulated multi-node cluster on this machine",
    "mpitrain.comm.info": "what the MPI and the GPUs of this job offer",
    "mpitrain.kernels.build": "compile the C/CUDA kernels",
}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpitrain", description=__doc__.splitlines()[0],
                                epilog="commands:\n" + "\n".join(
                                    f"  python -m {name:24s} {what}" for name, what in COMMANDS.items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    p.parse_args(argv)
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
