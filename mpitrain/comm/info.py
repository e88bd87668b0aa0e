"""What this build of mpitrain.comm offers: python -m mpitrain.comm.info

Lists the MPI library under mpi4py, its thread level and CUDA awareness, the transports, every
algorithm per collective, and the thresholds "auto" uses.

    mpiexec -n 2 python -m mpitrain.comm.info --gpu

also builds the GPU transport of the job (one GPU per rank, as the trainer picks them) and prints
how GPU buffers move between every pair of ranks.
"""
import sys

from mpi4py import MPI

from .. import kernels
from . import auto, cuda_aware
from .algorithms import ALGORITHMS, PEER_ALGORITHMS
from .transport import HostTransport


def gpu_paths(world):
    """Rank 0 prints, for every pair of ranks, how GPU buffers travel (collective)."""
    import torch
    torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    device = torch.cuda.current_device()
    world.all_reduce(torch.ones(1, device="cuda"))             # builds the transport
    transport = world.device_transport(torch.device("cuda", device))
    if transport.name == "cuda-ipc":
        peer = transport.peer_reason
        mine = {q: "cuda-ipc, " + ("peer kernels / copy engines" if peer is None else
                                   f"peer copies per step (no peer kernels: {peer})")
                for q in range(world.size) if q != world.rank}
    elif transport.name in ("mixed", "cuda-mpi"):
        mine = {q: ("" if transport.name == "mixed" else "cuda-mpi, ") + transport.path_to(q)
                for q in range(world.size) if q != world.rank}
    else:
        mine = {q: f"mpi-staged, {transport.path_to(q)}" for q in range(world.size) if q != world.rank}
        if transport.shared is None:
            mine = {q: f"{path} (no shared window: {transport.shared_reason})" for q, path in mine.items()}
    table = world.mpi_comm.gather((world.rank, world.node, torch.cuda.get_device_name(device), mine))
    if world.rank == 0:
        print("GPU paths between ranks:")
        for rank, node, name, paths in table:
            for q, path in sorted(paths.items()):
                if q > rank:
                    print(f"  {rank} <-> {q}: {path}   (rank {rank}: node {node}, {name})")


def main():
    print("MPI library:   ", MPI.Get_library_version().splitlines()[0].strip())
    print("mpi4py thread: ", {0: "single", 1: "funneled", 2: "serialized", 3: "multiple"}.get(
        MPI.Query_thread(), MPI.Query_thread()))
    aware, how = cuda_aware.query()
    print("CUDA-aware:    ", {True: "yes", False: "no", None: "unknown"}[aware], f"({how}); "
          + ("GPU buffers may go to MPI as device pointers (cuda-mpi) where CUDA IPC cannot serve"
             if aware else "GPU buffers never reach MPI: they move by CUDA IPC or through pinned "
             "host stages"))
    print("transports:    ", HostTransport.name, "(host memory over MPI point-to-point);",
          "cuda-ipc (GPU to GPU on one node, chosen when a test copy between every pair works);",
          "cuda-mpi (GPU pointers straight to a CUDA-aware MPI, chosen next when every rank's "
          "library says it takes them);",
          "mpi-staged (GPU memory through pinned host buffers: a shared-memory window between "
          "ranks of one node, MPI messages between nodes; any MPI)")
    print("kernels:       ", kernels.describe_backend())
    lane = kernels.compiled.mpi_lib()
    print("small all_reduce:", "C recursive doubling (csrc/mpi_small.c, built against this MPI)"
          if lane is not None else "Python recursive doubling (libmpitrain_mpi.so not built, or "
          "built against another MPI, or MPITRAIN_SMALL_ALLREDUCE=python)")
    print("algorithms:")
    for collective, algs in ALGORITHMS.items():
        peer = PEER_ALGORITHMS.get(collective, {})
        extra = ", hierarchical" if collective == "all_reduce" else ""
        print(f"  {collective:15s} auto, {', '.join(algs)}{extra}"
              + (f"; GPU peer kernels: {', '.join(peer)}" if peer else ""))
    print("auto thresholds:")
    print(f"  all_reduce: recursive_doubling_c below {auto.ALL_REDUCE_SMALL_BYTES // 1024} KB, "
          f"rabenseifner below {auto.ALL_REDUCE_MEDIUM_BYTES // 1024} KB (powers of two > 2 ranks), "
          f"else ring")
    print(f"  broadcast:  scatter_all_gather from {auto.BROADCAST_LARGE_BYTES >> 20} MB with > 2 "
          f"ranks, else binomial")
    print(f"  reduce, gather: linear up to {auto.LINEAR_MAX_RANKS} ranks, else binomial")
    print(f"  GPU, peer kernels (CUDA IPC, one GPU per rank): all_reduce one_shot up to "
          f"{auto.PEER_ONE_SHOT_MAX_BYTES // 1024} KB, else two_shot_push; reduce_scatter, "
          f"all_gather peer (ring beyond a workspace region); the communicators beside compute "
          f"(data parallel, ZeRO): all_reduce copy_engine (MPITRAIN_PEER_COPY_ENGINE)")
    print(f"  all_reduce with ranks on several nodes (the same number on each): hierarchical "
          f"from {auto.HIERARCHICAL_MIN_BYTES >> 20} MB")
    print(f"  GPU, 2 ranks without peer kernels: all_reduce recursive_doubling below "
          f"{auto.ALL_REDUCE_GPU_PAIR_BYTES >> 20} MB, else ring")


if __name__ == "__main__":
    if "--gpu" in sys.argv[1:]:
        from .world import init
        world = init()
        if world.rank == 0:
            main()
        gpu_paths(world)
    else:
        main()
