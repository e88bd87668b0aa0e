"""The mpiexec of the jobs mpitrain starts itself (mpitrain/mpiexec.py)."""
import sys
from pathlib import Path

import pytest

from mpitrain.mpiexec import find_mpiexec, is_open_mpi

BESIDE = Path(sys.executable).parent / "mpiexec"
SETTING = "MPITRAIN_" + "MPIEXEC"


def test_the_setting_is_split_like_a_shell_and_kept(monkeypatch):
    monkeypatch.setenv(SETTING, "/opt/mpi/bin/mpiexec -x 'A B' --oversubscribe")
    assert find_mpiexec() == ["/opt/mpi/bin/mpiexec", "-x", "A B", "--oversubscribe"]
    assert find_mpiexec(oversubscribe=True)[-1] == "--oversubscribe"    # not added twice


@pytest.mark.skipif(not BESIDE.exists(), reason="no mpiexec beside this Python")
def test_open_mpi_gets_oversubscribe_once(monkeypatch):
    monkeypatch.delenv(SETTING, raising=False)
    assert find_mpiexec() == [str(BESIDE)]
    if not is_open_mpi(str(BESIDE)):
        pytest.skip("the mpiexec beside this Python is not Open MPI")
    assert find_mpiexec(oversubscribe=True) == [str(BESIDE), "--oversubscribe"]


def test_a_program_that_cannot_run_says_so(monkeypatch):
    monkeypatch.setenv(SETTING, "/no/such/mpiexec")
    assert find_mpiexec() == ["/no/such/mpiexec"]
    with pytest.raises(OSError):
        find_mpiexec(oversubscribe=True)
