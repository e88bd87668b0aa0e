"""Start a small mpiexec job from a serial test and collect what it printed."""
import os
import subprocess
import sys

from mpitrain.mpiexec import find_mpiexec


def mpiexec_command():
    """The setting's mpiexec (the Makefile sets it), else the mpiexec beside this Python; with
    --oversubscribe for Open MPI (4 ranks on 2 cores)."""
    return find_mpiexec(oversubscribe=True)


def run_mpi(nranks, args, env=None, timeout=120):
    full_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    OMPI_MCA_mpi_yield_when_idle="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([*mpiexec_command(), "-n", str(nranks), sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL, start_new_session=True)   # no terminal
