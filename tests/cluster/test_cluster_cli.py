"""The cluster tool's bad input: each a one-line error naming the value, exit status 2."""
import subprocess
import time
import sys

import pytest

from mpitrain.cluster import can_make_namespaces
from mpitrain.cluster.links import LinkError, parse_rate, tbf_args

REASON = can_make_namespaces()
needs_namespaces = pytest.mark.skipif(REASON is not None, reason=str(REASON))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mpitrain.cluster", *args], capture_output=True,
                          text=True, timeout=60)


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpitrain.cluster: "), proc.stderr
    for word in words:
        assert word in lines[0], proc.stderr


@pytest.mark.parametrize("text, bits", [("100mbit", 1e8), ("1gbit", 1e9), ("10GBIT", 1e10),
                                        ("2.5gbit", 2.5e9), ("8kbit", 8e3)])
def test_rates_parse(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["5furlongs", "gbit", "1 gbit x", "1kbit", ""])
def test_bad_rates_are_refused_by_value(text):
    with pytest.raises(LinkError, match="--link"):
        parse_rate(text)


def test_the_token_bucket_holds_a_64k_segment_at_any_rate():
    for bits in (8e3, 1e8, 1e9, 1e10):
        args = tbf_args(bits)
        assert int(args[args.index("burst") + 1]) >= 64 * 1024
        assert args[args.index("rate") + 1] == f"{int(bits)}bit"


@needs_namespaces
def test_bad_input_of_up_and_run():
    cli("down")
    one_line_error(cli("up", "--link", "5furlongs"), "5furlongs", "unit")
    one_line_error(cli("up", "--nodes", "40"), "--nodes 40")
    one_line_error(cli("run", "--nodes", "2"), "no command")
    assert cli("up", "--nodes", "2", "--link", "1gbit").returncode == 0
    try:
        again = cli("up", "--nodes", "2", "--link", "1gbit")
        assert again.returncode == 0 and "already exists" in again.stdout
        one_line_error(cli("up", "--nodes", "3", "--link", "1gbit"), "2 nodes at 1gbit exists")
        one_line_error(cli("link", "node7", "down"), "node7")
        one_line_error(cli("link", "node1", "9parsecs"), "9parsecs")
    finally:
        cli("down")


@needs_namespaces
def test_a_leftover_namespace_is_named_and_down_removes_it():
    cli("down")
    subprocess.run(["ip", "netns", "add", "mtc-node0"], check=True)    # as a killed run leaves it
    try:
        one_line_error(cli("up", "--nodes", "2"), "mtc-node0", "down")
    finally:
        assert cli("down").returncode == 0
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mtc-" not in names


@needs_namespaces
def test_a_cluster_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path):
    """SIGKILL leaves a run no chance to clean up; the next run of another shape must not be
    refused for it, and must say what it removed."""
    cli("down")
    ready = tmp_path / "ready"
    killed = subprocess.Popen([sys.executable, "-m", "mpitrain.cluster", "run", "--nodes", "2",
                               "--link", "1gbit", "--", "sh", "-c", f"touch {ready}; sleep 600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if ready.exists() or killed.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "the first run never started its command"
        killed.kill()
        killed.wait()
        assert "mtc-node1" in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                             text=True).stdout
        proc = cli("run", "--nodes", "3", "--link", "none", "--", "true")
        assert proc.returncode == 0, proc.stderr
        assert "2 nodes at 1gbit left behind" in proc.stderr and str(killed.pid) in proc.stderr
    finally:
        cli("down")


@needs_namespaces
def test_a_state_file_without_its_namespaces_is_not_a_cluster():
    cli("down")
    assert cli("up", "--nodes", "2", "--link", "1gbit").returncode == 0
    for k in range(2):                       # as a reboot with a kept /run leaves it
        subprocess.run(["ip", "netns", "del", f"mtc-node{k}"], check=True)
    try:
        proc = cli("up", "--nodes", "3", "--link", "none")
        assert proc.returncode == 0, proc.stderr
        assert "namespaces mtc-node0, mtc-node1 are gone" in proc.stderr
    finally:
        cli("down")
