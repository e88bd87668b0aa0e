"""comm/cuda_aware.py asks the MPI library itself whether it takes GPU pointers. Oracle: Open
MPI's own ompi_info, which prints how the library was built."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpitrain.comm import cuda_aware


def test_the_library_is_found_and_answers():
    aware, how = cuda_aware.query()
    assert aware in (True, False, None)
    assert cuda_aware.loaded_libmpi() is None or cuda_aware.loaded_libmpi() in how


def test_the_answer_agrees_with_ompi_info():
    ompi_info = Path(sys.executable).parent / "ompi_info"
    if not ompi_info.exists():
        ompi_info = shutil.which("ompi_info")
    if ompi_info is None:
        pytest.skip("no ompi_info: not Open MPI")
    text = subprocess.run([str(ompi_info), "--parsable", "--all"], capture_output=True,
                          text=True).stdout
    line = next((x for x in text.splitlines() if "built_with_cuda_support:value:" in x), None)
    if line is None:
        pytest.skip("this ompi_info does not say how it was built")
    built = line.rsplit(":", 1)[1].strip() == "true"
    aware, how = cuda_aware.query()
    assert "MPIX_Query_cuda_support" in how
    if not built:
        assert aware is False
