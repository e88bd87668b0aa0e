"""Run a command on the emulated cluster from a test: `python -m mpitrain.cluster run`."""
import os
import subprocess

from mpitrain.cluster.launch import run_command


def cluster_command(nodes, rpn, command, link="none"):
    return run_command(nodes, rpn, link, command)


def cluster_run(nodes, rpn, command, link="none", env=None, timeout=180):
    return subprocess.run(run_command(nodes, rpn, link, command), capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
