"""Faults that only exist across hosts: a node's link pulled, or throttled to a crawl, in the
middle of a job. The job must end, with the waiting ranks naming the ranks that stopped
answering, within the watchdog's timeout plus the launch agent's keepalive; no hang."""
import os
import re
import subprocess
import sys
import time

import pytest

from mpitrain.cluster import can_make_namespaces

from cluster_run import cluster_command

REASON = can_make_namespaces()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

TIMEOUT, KEEPALIVE = 10, 20
LOOP = """
import time
import numpy as np
from mpitrain.comm import init
w = init()
x = np.ones(1 << 16, np.float32)
for i in range(10 ** 9):
    w.all_reduce(x.copy(), algorithm="ring")
    if i == 20 and w.rank == 0:
        print("RUNNING", flush=True)
"""
WAITED = re.compile(r"mpitrain: rank (\d): all_reduce #\d+ \(ring\) has waited [\d.]+ s for rank (\d)")


def cluster_cli(*args):
    subprocess.run([sys.executable, "-m", "mpitrain.cluster", *args], check=True,
                   capture_output=True, text=True)


@pytest.fixture
def cluster():
    cluster_cli("down")
    cluster_cli("up", "--nodes", "2", "--ranks-per-node", "2", "--link", "1gbit")
    yield
    cluster_cli("down")


def fault_mid_job(tmp_path, state):
    """Start the loop on 2 nodes of 2 ranks, set node1's link to STATE once it runs; (rc,
    output, seconds from the fault to the end)."""
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    env = {"MPITRAIN_TIMEOUT": str(TIMEOUT), "MPITRAIN_CLUSTER_KEEPALIVE": str(KEEPALIVE)}
    job = subprocess.Popen(cluster_command(2, 2, [sys.executable, str(script)], "1gbit"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, **env))
    lines = []
    for line in job.stdout:
        lines.append(line)
        if line.startswith("RUNNING"):
            break
    cluster_cli("link", "node1", state)
    faulted = time.monotonic()
    try:
        out, _ = job.communicate(timeout=TIMEOUT + KEEPALIVE + 60)
    except subprocess.TimeoutExpired:
        job.kill()
        out, _ = job.communicate()
        pytest.fail(f"the job hung after node1's link went {state}:\n" + "".join(lines) + out)
    return job.returncode, "".join(lines) + out, time.monotonic() - faulted


def waits(output):
    return {(int(r), int(p)) for r, p in WAITED.findall(output)}


def test_a_pulled_link_ends_the_job_naming_the_other_node(cluster, tmp_path):
    rc, out, seconds = fault_mid_job(tmp_path, "down")
    assert rc != 0, out
    named = waits(out)
    assert any(rank in (0, 1) and peer in (2, 3) for rank, peer in named), out
    assert "node1: link down for 20 s, node given up" in out, out
    # node1's ranks had ended by themselves (their own watchdogs) before the node was fenced
    assert "python" not in out.split("still running there:")[1].splitlines()[0], out
    assert seconds < TIMEOUT + KEEPALIVE + 15, out


def test_a_throttled_link_ends_the_job_naming_the_other_node(cluster, tmp_path):
    rc, out, seconds = fault_mid_job(tmp_path, "8kbit")
    assert rc != 0, out
    named = waits(out)
    assert any(rank in (0, 1) and peer in (2, 3) for rank, peer in named), out
    assert seconds < TIMEOUT + 30, out
