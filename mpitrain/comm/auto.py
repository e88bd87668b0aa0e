"""algorithm="auto": which algorithm runs, by collective, message size and world size.

The thresholds come from `mpiexec -n 4 python -m mpitrain.bench collectives` on the 2-core CPU
machine (bench/RESULTS.md has the run: all_reduce float32, 4 ranks — recursive doubling fastest
through 64 KB, rabenseifner at 256 KB, ring from 1 MB). The reasoning behind them is the alpha-beta model: a
step costs alpha (latency: MPI call + Python) + bytes x beta (copy + reduce).
  - recursive doubling: log2 p steps, each moving the whole buffer: least alpha, most beta.
  - rabenseifner: 2 log2 p steps, moving 2 (p-1)/p of the buffer: near ring bandwidth, fewer steps.
  - ring: 2 (p - 1) steps moving 2 (p-1)/p of the buffer, every step between neighbours only.
"""
ALL_REDUCE_SMALL_BYTES = 128 * 1024    # below: recursive doubling (fewest steps; 4 ranks: best to 64 KB),
# in C (csrc/mpi_small.c) when it was built against this MPI: at 4 KB the Python between the MPI
# calls was a third of the time, and with 4 ranks on 2 cores every rank's overhead adds up
ALL_REDUCE_MEDIUM_BYTES = 1024 * 1024  # below: rabenseifner (best at 256 KB); at and above: ring
BROADCAST_LARGE_BYTES = 64 << 20      # at and above, with more than 2 ranks: scatter + all-gather
# (in shared memory the binomial tree won at every size measured, 4 KB to 16 MB: scatter +
#  all-gather moves each byte twice in more steps; it pays where links, not copies, are slow)
LINEAR_MAX_RANKS = 4                   # reduce / gather: the root talks to each rank directly
# (at 4 ranks the flat tree won every size of the first sweep and most of the rotated one, where
#  the two sit within noise: it forwards no partial result through middle ranks, so it copies
#  less; beyond a few ranks the root's p - 1 serial steps lose to the tree's log2 p)


ALL_REDUCE_GPU_PAIR_BYTES = 64 << 20   # GPU buffers, 2 ranks: recursive doubling below this
# (2x H200 over CUDA IPC, bench/gpu-2026-11-22-h200x2-algos: every step costs ~50 us of notes and
#  CUDA calls, and with 2 ranks recursive doubling moves the same bytes as the ring in one step
#  instead of two: 56 vs 102 us at 1 MB, 58 vs 105 at 4 MB, 108 vs 129 at 16 MB, equal at 64 MB;
#  at 256 MB the ring wins, 918 vs 998 us: doubling reduces the whole buffer on both ranks.
#  More than 2 GPUs: not measured yet, so the host thresholds apply.)


HIERARCHICAL_MIN_BYTES = 256 << 10  # ranks on several nodes, the same number on each: at and
# above, reduce-scatter in the node, all-reduce across nodes, all-gather in the node
# (comm/hierarchical.py); below, one algorithm over all ranks (latency-bound: fewest steps).
# Measured on the emulated cluster, 2 nodes x 2 ranks (bench/cluster_allreduce.sh; the tables
# are in bench/RESULTS.md, 2026-12-02): from 256 KB on, hierarchical was the fastest or within
# 3% of it at 100 Mbit/s, 1 Gbit/s and 10 Gbit/s links at every size but one (16 MB at 100 Mbit/s
# and 1 Gbit/s: 15% and 3% behind the ring), and 1.3-2x faster than the flat algorithms at
# 256 KB-1 MB over 1 Gbit/s or less; below it, at 10 Gbit/s, it lost (64 KB: 0.30 against 0.50
# GB/s busbw for auto's flat choice). Over an unshaped veth, as fast as memory, it only won
# from 16 MB.

PEER_ONE_SHOT_MAX_BYTES = 256 << 10   # GPU buffers with the peer kernels (comm/peer_workspace.py): one-shot
# all-reduce up to this size, two-shot above. (A first guess from the traffic model: one-shot
# reads (p - 1) x size per rank, two-shot 2 (p - 1)/p x size but meets the peers twice; to be
# replaced by the measured crossover.)


def choose(collective, nbytes, size, gpu=False, peer=False):
    """peer: GPU buffers and the peer kernels can run (one GPU per rank over CUDA IPC)."""
    if peer:
        if collective == "all_reduce":
            return "one_shot" if nbytes <= PEER_ONE_SHOT_MAX_BYTES else "two_shot_push"
        if collective in ("reduce_scatter", "all_gather"):
            return "peer"
    if collective == "all_reduce":
        if gpu and size == 2:
            return "recursive_doubling" if nbytes < ALL_REDUCE_GPU_PAIR_BYTES else "ring"
        if nbytes < ALL_REDUCE_SMALL_BYTES:
            return "recursive_doubling_c"     # the C version when built, else the Python one
        power_of_two = size & (size - 1) == 0
        if size > 2 and power_of_two and nbytes < ALL_REDUCE_MEDIUM_BYTES:
            return "rabenseifner"    # (other sizes fold two ranks into one: the ring is better)
        return "ring"
    if collective == "broadcast":
        return "scatter_all_gather" if size > 2 and nbytes >= BROADCAST_LARGE_BYTES else "binomial"
    if collective in ("reduce", "gather"):
        return "linear" if size <= LINEAR_MAX_RANKS else "binomial"
    if collective == "scatter":
        return "binomial"
    return "ring"                          # reduce_scatter, all_gather
