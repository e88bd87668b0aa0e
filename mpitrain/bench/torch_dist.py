"""torch.distributed inside an mpiexec job: the baselines (DDP, NCCL) share the job's ranks.

Rank 0 picks a free port and MPI broadcasts the address, so no launcher variables are needed.
"""
import os
import socket


def start_torch_distributed(world, device):
    """torch.distributed over the same ranks: rank 0 picks a free port and MPI broadcasts it."""
    import torch.distributed as dist
    if dist.is_initialized():
        return dist
    if world.rank == 0:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        host = "127.0.0.1" if world.num_nodes == 1 else socket.gethostbyname(socket.gethostname())
        address = os.environ.get("MASTER_ADDR", host), port
    else:
        address = None
    host, port = world.mpi_comm.bcast(address, root=0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=world.rank,
                            world_size=world.size,
                            device_id=device if device.type == "cuda" else None)
    return dist
