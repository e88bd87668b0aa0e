"""The emulated cluster: ranks in network namespaces, real MPI over TCP between them. Skips with
the reason where namespaces cannot be made (not root, no iproute2)."""
import sys

import pytest

from mpitrain.cluster import can_make_namespaces
from mpitrain.cluster.netns import Cluster

from cluster_run import cluster_run

REASON = can_make_namespaces()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

TOPOLOGY = """
import socket
from mpitrain.comm import init
w = init()
print(f"TOPO {w.rank} {socket.gethostname()} {w.node} {w.num_nodes} {w.local_rank} {w.local_size}")
"""


@pytest.mark.parametrize("nodes, rpn", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_topology_matches_the_hosts(tmp_path, nodes, rpn):
    script = tmp_path / "topo.py"
    script.write_text(TOPOLOGY)
    proc = cluster_run(nodes, rpn, [sys.executable, str(script)])
    assert proc.returncode == 0, proc.stderr
    rows = sorted(tuple(line.split()[1:]) for line in proc.stdout.splitlines()
                  if line.startswith("TOPO"))
    assert len(rows) == nodes * rpn
    hosts = sorted({host for _, host, *_ in rows})             # the oracle: each rank's hostname
    assert len(hosts) == nodes
    for rank, host, node, num_nodes, local_rank, local_size in rows:
        same = sorted(int(r) for r, h, *_ in rows if h == host)
        assert int(num_nodes) == nodes and int(local_size) == len(same) == rpn
        assert int(local_rank) == same.index(int(rank))
        first_ranks = sorted(min(int(r) for r, h, *_ in rows if h == x) for x in hosts)
        assert int(node) == first_ranks.index(same[0])
    assert Cluster.load() is None                              # run removed what it made


SUITE = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--with-mpi"]


def test_the_mpi_suite_across_two_nodes_of_two_ranks():
    """Every collective and algorithm, the hierarchical all-reduce, data parallel, ZeRO 1/2/3,
    the staged transport's messages and the object collectives, against the same oracles as on
    one node, with half the ranks on the other side of a 1 Gbit/s link."""
    files = ["test_collectives", "test_hierarchical", "test_data_parallel", "test_zero",
             "test_zero3", "test_staged_transport", "test_objects_and_barrier"]
    proc = cluster_run(2, 2, [sys.executable, *SUITE, *(f"tests/mpi/{f}.py" for f in files)],
                       link="1gbit", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_collectives_across_three_nodes_of_one_rank():
    """An odd world where every message crosses a link."""
    proc = cluster_run(3, 1, [sys.executable, *SUITE, "tests/mpi/test_collectives.py",
                              "tests/mpi/test_hierarchical.py"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
