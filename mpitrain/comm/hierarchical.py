"""Hierarchical all-reduce, for ranks on several nodes: the fast links inside a node carry most
of the bytes, the slow ones between nodes carry 1/(ranks per node) of them.

    1. reduce-scatter inside each node: local rank j ends with chunk j of its node's sum;
    2. all-reduce across nodes, among the ranks with the same local rank: chunk j of the total;
    3. all-gather inside each node: every rank has every chunk.

Each level is a Communicator of its own over a split of the ranks (`Levels`), so each picks its
own transport and algorithm: GPU buffers go over CUDA IPC (peer kernels) inside a node and
through host-staged MPI between nodes, host buffers over MPI point-to-point everywhere. It
needs the same number of ranks on every node (step 2 pairs local rank j of every node).
MPITRAIN_RANKS_PER_NODE=k pretends nodes of k ranks, which is how one machine tests it.
"""
from .algorithms.blocks import even_counts
from .errors import CollectiveError


class Levels:
    """The two communicators of a hierarchical collective, made once (collectively)."""

    def __init__(self, parent):
        t = parent.topology
        sizes = parent.mpi_comm.allgather(t.local_size)
        self.rank = parent.rank
        self.reason = None
        if len(set(sizes)) > 1:
            self.reason = (f"nodes hold different numbers of ranks ({sorted(set(sizes))}); the "
                           f"hierarchical all-reduce pairs local rank j of every node")
        self.node = parent.split(t.node)             # the ranks of this node
        self.cross = parent.split(t.local_rank)      # local rank j of every node


def hierarchical_all_reduce(levels, buf, op):
    """In place over `buf` (flat: a numpy array, torch tensor or CuPy array); op: sum, max, min
    or prod."""
    if levels.reason is not None:
        raise CollectiveError(levels.rank, f"algorithm 'hierarchical' cannot run: "
                                                f"{levels.reason}")
    node, cross = levels.node, levels.cross
    counts = even_counts(buf.shape[0], node.size)
    start = sum(counts[:node.rank])
    mine = buf[start: start + counts[node.rank]]
    node.reduce_scatter_v(buf, mine, counts, op=op)
    cross.all_reduce(mine, op=op)
    node.all_gather_v(mine, buf, counts)
