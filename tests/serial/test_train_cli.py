"""`python -m mpitrain.train` under mpiexec: N ranks equal one rank, and bad input ends every
rank with a message and a non-zero exit (never a hang)."""
import json
import re

import pytest

from launch import run_mpi

torch = pytest.importorskip("torch")


def losses(tmp_path, ranks, extra=()):
    log = tmp_path / f"log{ranks}.jsonl"
    proc = run_mpi(ranks, ["-m", "mpitrain.train", "vit_digits", "--steps", "6", "--batch-size", "48",
                           "--log-every", "1", "--warmup", "2", "--lr", "3e-3", "--no-progress",
                           "--log-jsonl", str(log), *extra], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r], proc


@pytest.mark.parametrize("ranks, extra", [
    (2, ()), (3, ()), (2, ("--grad-accum", "2")), (2, ("--parallel", "dp-naive")),
    (3, ("--bucket-mb", "1e-9", "--first-bucket-mb", "1e-9", "--grad-accum", "2")),
    (2, ("--no-overlap",)), (2, ("--parallel", "zero1")),
    (3, ("--parallel", "zero2", "--grad-accum", "2", "--bucket-mb", "0.01")),
    (3, ("--parallel", "zero3")),
    (2, ("--parallel", "zero3", "--grad-accum", "2", "--zero3-window", "0", "--zero3-keep-between")),
    (2, ("--compile", "--compile-piece-mb", "0.05", "--tail-mb", "0.02,0.005")),
    (2, ("--parallel", "zero3", "--compile"))])
def test_n_ranks_follow_the_single_process_loss_sequence(tmp_path, ranks, extra):
    single, _ = losses(tmp_path, 1)
    multi, proc = losses(tmp_path, ranks, extra)
    assert len(single) == len(multi) == 6
    assert multi == pytest.approx(single, rel=1e-5), proc.stdout
    assert "test accuracy" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["vit_nonesuch"], r"unknown model 'vit_nonesuch'; valid: vit_ti16"),
    (["vit_digits", "--batch-size", "33"], r"--batch-size 33 does not divide over 2 ranks"),
    (["vit_digits", "--batch-size", "32", "--micro-batch-size", "5"],
     r"--batch-size 32 is not divisible by 2 ranks x --micro-batch-size 5"),
    (["vit_digits", "--data", "cifar10", "--data-dir", "/nonexistent"],
     r"CIFAR-10 file missing: /nonexistent/data_batch_1"),
    (["vit_digits", "--param-dtype", "bf16"], r"--param-dtype bf16 is for --parallel zero3"),
    (["vit_digits", "--parallel", "zero3", "--param-dtype", "bf16"],
     r"--param-dtype bf16 computes in bf16: use it with --precision bf16"),
    (["vit_digits", "--parallel", "zero3", "--zero3-window", "-1"], r"--zero3-window must be >= 0, got -1"),
    (["vit_digits", "--grad-dtype", "int8"], r"--grad-dtype int8: choose from fp32, bf16, fp16"),
    (["vit_digits", "--bucket-mb", "0"], r"--bucket-mb must be > 0, got 0"),
    (["vit_digits", "--tail-mb", "6,x"], r"--tail-mb '6,x': give MB values separated by commas"),
    (["vit_digits", "--parallel", "zero1", "--precision", "fp16"], r"--parallel zero1 with --precision fp16"),
    (["vit_digits", "--resume"], r"--resume needs --checkpoint-dir"),
    (["vit_digits", "--lr", "1e30", "--steps", "20", "--warmup", "0", "--optimizer", "sgd"],
     r"loss is (nan|inf) at step \d+"),
])
def test_bad_input_ends_every_rank_with_a_message(args, message):
    proc = run_mpi(2, ["-m", "mpitrain.train", *args, "--no-progress"], timeout=120)
    assert proc.returncode != 0
    assert re.search(message, proc.stderr), proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_refused():
    proc = run_mpi(2, ["-m", "mpitrain.train", "vit_digits", "--device", "cuda"], timeout=120)
    assert proc.returncode != 0
    assert "--device cuda: CUDA was asked for, but no GPU is visible" in proc.stderr


def test_help_lists_every_flag():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "mpitrain.train", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    for flag in ("--data", "--data-dir", "--epochs", "--steps", "--batch-size", "--micro-batch-size",
                 "--grad-accum", "--lr", "--warmup", "--optimizer", "--weight-decay", "--precision",
                 "--compile", "--seed", "--eval-every", "--log-jsonl", "--checkpoint-dir", "--resume",
                 "--parallel", "--bucket-mb", "--first-bucket-mb", "--tail-mb", "--grad-dtype",
                 "--find-unused-parameters", "--no-grad-views", "--no-overlap", "--verbose", "--checkpoint-keep",
                 "--checkpoint-every", "--stop-at-step", "--memory-report", "--zero3-window",
                 "--zero3-keep-between", "--param-dtype", "--compile-piece-mb"):
        assert flag in out


def test_memory_report_prints_every_rank(tmp_path):
    """--memory-report: each rank's items, its predicted peak and a measured one, the same loss
    sequence as without it (it only observes)."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "reported").mkdir()
    plain, _ = losses(tmp_path / "plain", 2, ("--parallel", "zero2"))
    reported, proc = losses(tmp_path / "reported", 2, ("--parallel", "zero2", "--memory-report"))
    assert reported == plain
    for rank in range(2):
        block = proc.stdout.split(f"memory report, rank {rank} (zero2, 2 rank(s))")[1]
        for row in ("parameters", "gradients", "optimizer state", "activations", "predicted peak",
                    "measured peak"):
            assert row in block.split("memory report")[0], block
