"""python -m mpitrain.bench SUBCOMMAND [flags]: every benchmark runs its baseline in the same run.

    collectives   hand-rolled collectives against MPI's own (mpiexec -n 4 ...)
    pack          fused gradient pack/unpack against a copy loop and torch's best
    model         our ViT's training throughput against timm's (eager and compiled)
    train         data-parallel training steps against torch DDP (mpiexec -n 4 ...)
"""
import sys

SUBCOMMANDS = {"collectives": "mpitrain.bench.collectives", "pack": "mpitrain.bench.pack",
               "model": "mpitrain.bench.model",
               "train": "mpitrain.bench.train"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            raise SystemExit(f"unknown benchmark {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}")
        return
    import importlib
    importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
