"""Run a command on the emulated cluster from a test: `python -m mpitrain.cluster run`."""
import os
import subprocess
import sys


def cluster_command(nodes, rpn, command, link="none"):
    return [sys.executable, "-m", "mpitrain.cluster", "run", "--nodes", str(nodes),
            "--ranks-per-node", str(rpn), "--link", link, "--", *command]


def cluster_run(nodes, rpn, command, link="none", env=None, timeout=180):
    return subprocess.run(cluster_command(nodes, rpn, command, link), capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
