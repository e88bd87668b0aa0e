"""MPI start-up: who am I, where am I, and a crash on one rank ends every rank.

    from mpitrain.comm import init
    world = init()            # MPI.COMM_WORLD, or init(comm) for any mpi4py communicator
    world.print0(world)       # Communicator(rank=0, size=4, local_rank=0, local_size=4, node=0/1)

Node layout comes from MPI itself (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED), not from
launcher variables, so it is right under mpiexec, srun and any MPI. Set
MPITRAIN_RANKS_PER_NODE=k to pretend nodes hold k ranks each (tests of multi-node paths).
"""
import os
import socket
import sys
import threading
import traceback

from .communicator import Communicator
from .topology import discover_topology
from ..settings import Settings, unknown_variables


_hook_installed = False


def install_abort_hook(comm):
    """An uncaught exception on any rank prints the rank and traceback, then aborts the whole
    job (MPI_Abort), so no other rank waits forever in a collective the failed rank never joins."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    rank, size, host = comm.Get_rank(), comm.Get_size(), socket.gethostname()
    previous = sys.excepthook

    def report_and_abort(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"mpitrain: rank {rank} of {size} on {host} failed; aborting all ranks\n"
                         f"{text}")
        sys.stderr.flush()
        if size > 1:
            comm.Abort(1)
        previous(exc_type, exc, tb)

    def thread_hook(args):
        if args.exc_type is not SystemExit:
            report_and_abort(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = report_and_abort
    threading.excepthook = thread_hook


def init(comm=None, timeout=None, debug=None, abort_on_error=True, gpu_transport=None,
         settings=None):
    """The world of ranks as a Communicator.

    comm: an mpi4py communicator (default MPI.COMM_WORLD).
    timeout: seconds a collective may wait for a peer before the job is aborted
             (default $MPITRAIN_TIMEOUT or 600; 0 turns the watchdog off).
    debug: check before every collective that all ranks made the same call
           (default $MPITRAIN_DEBUG).
    abort_on_error: install the hook that aborts the job on an uncaught exception.
    gpu_transport: how GPU buffers move: auto (default $MPITRAIN_GPU_TRANSPORT, else auto),
           ipc, cuda-mpi or staged (Communicator.device_transport).
    settings: a mpitrain.settings.Settings to run with instead of the environment's.

    The settings are read once, here (every MPITRAIN_* variable: a bad value fails now, on
    the rank that has it, not at its first use), and carried by the Communicator
    (world.settings) to everything it makes; timeout, debug and gpu_transport override them.
    """
    from mpi4py import MPI
    comm = MPI.COMM_WORLD if comm is None else comm
    rank = comm.Get_rank()
    if abort_on_error:
        install_abort_hook(comm)
    if settings is None:
        settings = Settings.from_env(rank=rank)
        for warning in unknown_variables(rank):
            if rank == 0:
                print(f"mpitrain: {warning}", file=sys.stderr, flush=True)
    given = {"timeout": timeout, "debug": debug, "gpu_transport": gpu_transport}
    settings = settings.replace(rank, **{k: v for k, v in given.items() if v is not None})
    topology = discover_topology(comm, settings.ranks_per_node)
    share_cores(topology.local_size, settings.cpu_threads)
    return Communicator(comm, topology, settings)


def cores_per_rank(local_size):
    """This rank's share of the cores it may run on (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, local_size))


def share_cores(local_size, cpu_threads=0):
    """Give the compiled kernels this rank's share of the node's cores (all of them when one
    rank runs alone; one thread each when ranks outnumber cores). cpu_threads (the setting,
    MPITRAIN_CPU_THREADS) wins when not 0."""
    from .. import kernels
    kernels.set_cpu_threads(cpu_threads or cores_per_rank(local_size))
