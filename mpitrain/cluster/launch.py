"""The mpiexec command that runs a job on the emulated cluster (Open MPI; MPICH's hydra takes
the same agent with -launcher ssh -launcher-exec AGENT).

Ranks of one node talk through shared memory; ranks of different nodes through TCP over the
bridge, each node's sends shaped to the link rate. Both of Open MPI's planes (the daemons' own
messages and the ranks' data) are kept on the bridge's subnet.
"""
import os
import shlex
import sys

from .netns import SUBNET, ClusterError
from ..mpiexec import find_mpiexec, is_open_mpi


def mpiexec_command(cluster, ranks_per_node, command, mpiexec=None):
    """The job's command line; mpiexec: the --mpiexec flag's text (None: the setting
    MPITRAIN_CLUSTER_MPIEXEC, else the mpiexec beside Python, else PATH's)."""
    mpiexec = shlex.split(mpiexec) if mpiexec else find_mpiexec("MPITRAIN_CLUSTER_MPIEXEC")
    ranks = cluster.nodes * ranks_per_node
    try:
        open_mpi = is_open_mpi(mpiexec[0])
    except OSError as exc:
        raise ClusterError(f"mpiexec {mpiexec[0]!r} cannot be run ({exc.strerror}); give one "
                           f"with --mpiexec or MPITRAIN_CLUSTER_MPIEXEC") from None
    if not open_mpi:                      # MPICH / Intel MPI (hydra)
        return [*mpiexec, "-launcher", "ssh", "-launcher-exec", cluster.agent, "-f",
                cluster.hostfile, "-ppn", str(ranks_per_node), "-n", str(ranks),
                "-iface", "eth0", *command]
    return [*mpiexec, "--mca", "plm_ssh_agent", cluster.agent, "--hostfile", cluster.hostfile,
            "--map-by", f"ppr:{ranks_per_node}:node", "-n", str(ranks),
            "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include", SUBNET,
            *command]


def run_command(nodes, ranks_per_node, link, command):
    """`python -m mpitrain.cluster run ...` for COMMAND, as a list (what tests and benchmarks
    launch)."""
    return [sys.executable, "-m", "mpitrain.cluster", "run", "--nodes", str(nodes),
            "--ranks-per-node", str(ranks_per_node), "--link", link, "--", *command]


def environment():
    """What the job's processes need beyond the caller's environment (Open MPI as root)."""
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
