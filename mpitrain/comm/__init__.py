"""mpitrain.comm: hand-rolled collectives on MPI point-to-point calls.

    from mpitrain.comm import init
    world = init()
    world.all_reduce(x, op="sum", algorithm="auto")

Works with mpi4py and numpy alone; torch is imported only when a torch tensor is passed.
"""
from .algorithms import ALGORITHMS
from .communicator import Communicator
from .errors import CollectiveError, CollectiveMismatchError
from .ops import OPS
from .world import init

__all__ = ["init", "Communicator", "CollectiveError", "CollectiveMismatchError", "ALGORITHMS", "OPS"]
