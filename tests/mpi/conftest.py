"""Fixtures of the MPI tests: one world per process (init once), and one in debug mode."""
import pytest
from mpi4py import MPI

from mpitrain.comm import init


def world_size():
    return MPI.COMM_WORLD.Get_size()


def pytest_configure(config):
    import builtins
    builtins.world_size = world_size     # for skipif strings


@pytest.fixture(scope="session")
def world():
    return init()


@pytest.fixture(scope="session")
def debug_world():
    return init(debug=True)
