"""Every collective algorithm, by collective and name. Each is written once against comm.context.

    all_reduce      ring, recursive_doubling, recursive_doubling_c (the same in C), rabenseifner
    broadcast       binomial, scatter_all_gather, linear
    reduce          binomial, linear
    reduce_scatter  ring
    all_gather      ring
    scatter         binomial, linear
    gather          binomial, linear

GPU buffers only, over CUDA IPC with one GPU per rank (peer_kernels.py, comm/peer_workspace.py):

    all_reduce      one_shot, two_shot
    reduce_scatter  peer
    all_gather      peer

"auto" picks among them by message size and world size: see auto.py.
"""
from .binomial import binomial_broadcast, binomial_gather, binomial_reduce, binomial_scatter
from .linear import linear_broadcast, linear_gather, linear_reduce, linear_scatter
from .peer_kernels import PEER_ALGORITHMS
from .rabenseifner import rabenseifner_all_reduce
from .recursive_doubling import recursive_doubling_all_reduce, recursive_doubling_c_all_reduce
from .ring import ring_all_gather, ring_all_reduce, ring_reduce_scatter
from .scatter_all_gather import scatter_all_gather_broadcast

ALGORITHMS = {
    "all_reduce": {
        "ring": ring_all_reduce,
        "recursive_doubling": recursive_doubling_all_reduce,
        "recursive_doubling_c": recursive_doubling_c_all_reduce,
        "rabenseifner": rabenseifner_all_reduce,
    },
    "broadcast": {
        "binomial": binomial_broadcast,
        "scatter_all_gather": scatter_all_gather_broadcast,
        "linear": linear_broadcast,
    },
    "reduce": {"binomial": binomial_reduce, "linear": linear_reduce},
    "reduce_scatter": {"ring": ring_reduce_scatter},
    "all_gather": {"ring": ring_all_gather},
    "scatter": {"binomial": binomial_scatter, "linear": linear_scatter},
    "gather": {"binomial": binomial_gather, "linear": linear_gather},
}


def algorithm_for(collective, name, gpu):
    """The function of algorithm `name` for `collective`, or None when there is no such
    algorithm for this memory (the peer algorithms exist for GPU buffers only)."""
    found = ALGORITHMS[collective].get(name)
    if found is None and gpu:
        found = PEER_ALGORITHMS.get(collective, {}).get(name)
    return found
