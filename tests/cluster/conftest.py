import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serial"))    # launch.py


@pytest.fixture(scope="session", autouse=True)
def no_cluster_from_before():
    """The cluster tests own the machine's emulated cluster: one that `up` made and a killed
    test run left would refuse every run of another shape, so it is removed first."""
    from mpitrain.cluster import can_make_namespaces
    if can_make_namespaces() is None:
        subprocess.run([sys.executable, "-m", "mpitrain.cluster", "down"], check=True)
    yield
