"""Which ranks share a node: asked of MPI itself (MPI_Comm_split_type with
MPI_COMM_TYPE_SHARED), never of launcher variables, so it is right under mpiexec, srun and any
MPI. MPITRAIN_RANKS_PER_NODE=k pretends nodes of k ranks (tests of the multi-node paths).

A Communicator carries its Topology; Communicator.split gives a sub-communicator its own.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    local_rank: int      # rank among the ranks on this node
    local_size: int      # ranks on this node
    node: int            # index of this node, 0 .. num_nodes - 1, in order of the nodes' first rank
    num_nodes: int


def discover_topology(comm, ranks_per_node=0):
    """Where every rank of `comm` runs (collective). ranks_per_node: the setting of that name
    (0: ask MPI)."""
    from mpi4py import MPI
    if ranks_per_node:
        local = comm.Split(comm.Get_rank() // int(ranks_per_node), comm.Get_rank())
    else:
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    is_leader = local.Get_rank() == 0
    leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, comm.Get_rank())
    node, num_nodes = (leaders.Get_rank(), leaders.Get_size()) if is_leader else (0, 0)
    node, num_nodes = local.bcast((node, num_nodes), root=0)
    topology = Topology(local.Get_rank(), local.Get_size(), node, num_nodes)
    if leaders != MPI.COMM_NULL:
        leaders.Free()
    local.Free()
    return topology
