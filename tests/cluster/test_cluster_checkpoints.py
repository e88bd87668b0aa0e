"""Checkpoints written by ranks of several hosts (ZeRO-3 shards from 2 nodes of 2 ranks) resume
on another cluster shape (3 nodes of 1 rank, ZeRO-1) and continue the loss sequence of an
uninterrupted run on one node."""
import json
import sys

import pytest

from launch import run_mpi
from mpitrain.cluster import can_make_namespaces

from cluster_run import cluster_run

REASON = can_make_namespaces()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

ARGS = ["-m", "mpitrain.train", "vit_digits", "--steps", "6", "--batch-size", "48", "--log-every",
        "1", "--warmup", "2", "--lr", "3e-3", "--no-progress", "--eval-every", "100"]


def losses(log):
    return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def test_save_on_two_nodes_resume_on_three(tmp_path):
    full = tmp_path / "full.jsonl"
    proc = run_mpi(2, [*ARGS, "--log-jsonl", str(full)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    ck, first, second = tmp_path / "ck", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    proc = cluster_run(2, 2, [sys.executable, *ARGS, "--parallel", "zero3", "--checkpoint-dir",
                              str(ck), "--checkpoint-every", "3", "--stop-at-step", "3",
                              "--log-jsonl", str(first)], link="1gbit", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(list((ck / "step-00000003").glob("shard-*.pt"))) == 4
    proc = cluster_run(3, 1, [sys.executable, *ARGS, "--parallel", "zero1", "--checkpoint-dir",
                              str(ck), "--resume", "--log-jsonl", str(second)], link="1gbit",
                       timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "at step 3" in proc.stdout
    assert losses(first) + losses(second) == pytest.approx(losses(full), rel=1e-5)
