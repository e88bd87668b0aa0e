"""Lab 7: against the baselines, in one job: MPI's own collectives, torch DDP, and NCCL where a
GPU is present.

    mpiexec -n 4 python examples/labs/07_baselines.py [--quick] [--sweep --png sweep.png]

What to look for:
  - the hand-rolled all-reduce against MPI_Allreduce, small to large: MPI's C wins on latency at
    small sizes; the ring wins on bandwidth at large ones (bench/RESULTS.md has the full sweep).
  - the data-parallel engine against torch DistributedDataParallel (gloo on CPU), same model,
    same batches: step time, and the same final loss.
  - --sweep: all-reduce from 1 MB to 1 GB, the ring against MPI_Allreduce, with bus bandwidth
    plotted against size (--png): where the latency stops mattering and what the memory
    system gives.
  - with GPUs: the GPU transports against NCCL (`python -m mpitrain.bench collectives --device
    cuda --impl mpitrain,nccl`); skipped with a note on a machine without one.
"""
import numpy as np
import torch

from _lab import lab_args, questions, verdict

from mpitrain.bench import collectives, train
from mpitrain.comm import init


def same_as_mpi(world, count):
    """The timed call's result against the oracle: mpitrain's auto all-reduce and
    MPI_Allreduce of the same float64 buffers give the same sums."""
    from mpi4py import MPI
    x = np.random.default_rng(world.rank).standard_normal(count)
    ours, theirs = x.copy(), np.empty_like(x)
    world.all_reduce(ours, algorithm="auto")
    world.mpi_comm.Allreduce(x, theirs, op=MPI.SUM)
    return np.allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def main():
    def flags(p):
        p.add_argument("--quick", action="store_true", help="small sizes and few steps")
        p.add_argument("--sweep", action="store_true",
                       help="also sweep all-reduce from 1 MB to --sweep-max-mb (about 30 s and "
                            "3 GB of memory per rank at 1 GB on 4 ranks); --png plots it")
        p.add_argument("--sweep-max-mb", type=int, default=1024)
    args = lab_args(__doc__, takes=("png",), extra=flags)
    if args.png and not args.sweep:
        raise SystemExit("--png draws the --sweep: give both")
    world = init()
    sizes = "4K,256K" if args.quick else "4K,256K,4M"
    world.print0("== all_reduce: hand-rolled against MPI_Allreduce")
    world.print0("(vs mpi = MPI_Allreduce's time / ours, in the same job: above 1, ours is faster)")
    collectives.main(["--ops", "all_reduce", "--sizes", sizes, "--algorithms", "auto",
                      "--repeats", "1" if args.quick else "3"])
    ok = all(same_as_mpi(world, collectives.parse_size(s) // 4) for s in sizes.split(","))

    world.print0("\n== data parallel: mpitrain against torch DDP (gloo)")
    report = train.main(["vit_digits", "--impl", "mpitrain,ddp", "--batch-size", str(8 * world.size),
                         "--steps", "3" if args.quick else "20", "--rounds", "1" if args.quick else "3"])
    by_impl = {r["impl"]: r for r in report["rows"]}
    ok &= abs(by_impl["mpitrain"]["final_loss"] - by_impl["ddp"]["final_loss"]) < 1e-4

    if args.sweep:
        sizes = [f"{mb}M" for mb in (1, 4, 16, 64, 256, 1024) if mb <= args.sweep_max_mb]
        world.print0(f"\n== all_reduce from 1 MB to {sizes[-1]}B: the ring against MPI_Allreduce "
                     f"(one timed call per size after one untimed)")
        collectives.main(["--ops", "all_reduce", "--sizes", ",".join(sizes), "--algorithms", "ring",
                          "--warmup", "1", "--iters", "1", "--repeats", "1",
                          *(["--plot", args.png] if args.png else [])])
        ok &= same_as_mpi(world, collectives.parse_size(sizes[-1]) // 4 // 16)

    if torch.cuda.is_available():
        world.print0("\n== GPU: all_reduce against NCCL")
        collectives.main(["--device", "cuda", "--impl", "mpitrain,nccl", "--ops", "all_reduce",
                          "--sizes", "64K,16M", "--algorithms", "auto", "--repeats", "1"])
    else:
        world.print0("\n(no GPU here: the NCCL comparison runs where one is)")
    questions(world,
              "At which size did the hand-rolled all-reduce first beat MPI_Allreduce ('vs mpi' "
              "above 1)? What do the two do differently below it?",
              "How far is DDP's step time from mpitrain's, and which part of a step could explain "
              "the difference (the bucket plan, the thread, gloo's own all-reduce)?",
              "With --sweep: where does the bus bandwidth stop growing, and what limits it on this "
              "machine (memory bandwidth, cores, the ranks sharing them)?")
    verdict(world, ok, "every baseline ran beside mpitrain; our all-reduce gives MPI_Allreduce's "
                       "sums and DDP's final loss equals ours")


if __name__ == "__main__":
    main()
