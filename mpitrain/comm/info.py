"""What this build of mpitrain.comm offers: python -m mpitrain.comm.info

Lists the MPI library under mpi4py, its thread level and CUDA awareness, the transports, every
algorithm per collective, and the thresholds "auto" uses.
"""
from mpi4py import MPI

from .. import kernels
from . import auto
from .algorithms import ALGORITHMS, PEER_ALGORITHMS
from .transport import HostTransport


def main():
    print("MPI library:   ", MPI.Get_library_version().splitlines()[0].strip())
    print("mpi4py thread: ", {0: "single", 1: "funneled", 2: "serialized", 3: "multiple"}.get(
        MPI.Query_thread(), MPI.Query_thread()))
    print("transports:    ", HostTransport.name, "(host memory over MPI point-to-point);",
          "mpi-staged (GPU memory through pinned host buffers, any MPI);",
          "cuda-ipc (GPU to GPU on one node, chosen when a test copy between every pair works)")
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
          f"{auto.PEER_ONE_SHOT_MAX_BYTES // 1024} KB, else two_shot; reduce_scatter, all_gather "
          f"peer (ring beyond a workspace region)")
    print(f"  all_reduce with ranks on several nodes (the same number on each): hierarchical "
          f"from {auto.HIERARCHICAL_MIN_BYTES >> 20} MB")
    print(f"  GPU, 2 ranks without peer kernels: all_reduce recursive_doubling below "
          f"{auto.ALL_REDUCE_GPU_PAIR_BYTES >> 20} MB, else ring")


if __name__ == "__main__":
    main()
