"""Was this process started by something that is not an MPI launcher?

torchrun, torch.distributed.launch and Slurm's srun without PMI start N processes that each
see an MPI world of one rank: every one would train alone, on the whole data, and exit 0. The
trainer stops such a start with a message saying how to launch instead.
"""
import os


def foreign_launcher(mpi_size, env=None):
    """None when the start looks right; else one line: who started N processes, and what to
    type instead."""
    env = os.environ if env is None else env
    if mpi_size != 1:
        return None
    try:
        torch_world = int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        torch_world = 1
    if torch_world > 1 and ("LOCAL_RANK" in env or "RANK" in env):
        return (f"started by a torch launcher (WORLD_SIZE={torch_world}, torchrun or "
                f"torch.distributed.launch), but MPI sees 1 rank, so each of the {torch_world} "
                f"processes would train alone; mpitrain's ranks are MPI's: launch with "
                f"`mpiexec -n {torch_world} python -m mpitrain.train ...`")
    try:
        tasks = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")))
    except ValueError:
        tasks = 1
    if tasks > 1 and "SLURM_PROCID" in env:
        return (f"started by srun with {tasks} tasks, but MPI sees 1 rank (srun without PMI "
                f"support for this MPI), so each task would train alone; launch with `srun "
                f"--mpi=pmix ...` (see `srun --mpi=list`) or with `mpiexec -n {tasks}` inside "
                f"the allocation")
    return None
