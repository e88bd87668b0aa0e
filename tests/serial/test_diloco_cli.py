"""--parallel diloco through the trainer: its identities with data parallel, and bad settings
refused in one line on every rank."""
import json

import pytest

from launch import run_mpi

pytest.importorskip("torch")

ARGS = ["-m", "mpitrain.train", "vit_digits", "--steps", "8", "--batch-size", "48", "--log-every",
        "1", "--warmup", "2", "--lr", "3e-3", "--no-progress", "--eval-every", "100"]


def losses(tmp_path, name, *extra, ranks=2):
    log = tmp_path / f"{name}.jsonl"
    proc = run_mpi(ranks, [*ARGS, "--log-jsonl", str(log), *extra], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def test_averaging_every_step_with_sgd_is_data_parallel(tmp_path):
    dp = losses(tmp_path, "dp", "--optimizer", "sgd")
    diloco = losses(tmp_path, "diloco", "--optimizer", "sgd", "--parallel", "diloco",
                    "--workers", "2", "--sync-every", "1", "--outer-lr", "1",
                    "--outer-momentum", "0")
    assert diloco == pytest.approx(dp, rel=1e-5)


def test_one_worker_with_outer_lr_1_is_plain_training(tmp_path):
    dp = losses(tmp_path, "dp")
    diloco = losses(tmp_path, "diloco", "--parallel", "diloco", "--workers", "1", "--sync-every",
                    "3", "--outer-lr", "1", "--outer-momentum", "0")
    assert diloco == pytest.approx(dp, rel=1e-5)


@pytest.mark.parametrize("extra, words", [
    (["--workers", "3"], "--workers 3"),
    (["--workers", "2", "--sync-every", "0"], "--sync-every 0"),
    (["--workers", "2", "--sync-every", "4", "--fragments", "3"], "--fragments 3"),
    (["--workers", "2", "--sync-every", "4", "--fragments", "2", "--overlap", "2"], "--overlap 2"),
    (["--workers", "2", "--inner", "zero3"], "--inner zero3"),
])
def test_bad_settings_end_every_rank_with_one_line(tmp_path, extra, words):
    proc = run_mpi(2, [*ARGS, "--parallel", "diloco", *extra], timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_checkpoint_with_an_exchange_in_flight_resumes_exactly(tmp_path):
    """H=4, F=2, T=1: fragment 0's exchange starts after step 6 and merges after step 7, so the
    save at step 6 holds it in flight. Saved and resumed by 4 ranks in 2 workers: the losses
    continue the uninterrupted run's. (At another world size a worker's ranks read other slices
    of each batch, so a resumed run is a different, equally valid, trajectory.)"""
    streaming = ["--parallel", "diloco", "--workers", "2", "--sync-every", "4", "--fragments", "2",
                 "--overlap", "1", "--outer-dtype", "int8"]
    full = losses(tmp_path, "full", *streaming, ranks=4)
    ck = str(tmp_path / "ck")
    first = losses(tmp_path, "first", *streaming, "--checkpoint-dir", ck, "--stop-at-step", "6",
                   ranks=4)
    second = losses(tmp_path, "second", *streaming, "--checkpoint-dir", ck, "--resume", ranks=4)
    assert first + second == pytest.approx(full, rel=1e-5)


def test_resuming_with_another_number_of_workers_and_other_modes(tmp_path):
    ck = str(tmp_path / "ck")
    losses(tmp_path, "first", "--parallel", "diloco", "--workers", "2", "--sync-every", "3",
           "--checkpoint-dir", ck, "--stop-at-step", "4", ranks=4)
    log = tmp_path / "second.jsonl"
    proc = run_mpi(2, [*ARGS, "--log-jsonl", str(log), "--parallel", "diloco", "--workers", "1",
                       "--checkpoint-dir", ck, "--resume"], timeout=300)
    assert proc.returncode == 0 and "at step 4" in proc.stdout, proc.stdout + proc.stderr
    proc = run_mpi(2, [*ARGS, "--parallel", "dp", "--checkpoint-dir", ck, "--resume"], timeout=300)
    assert proc.returncode != 0 and "saved by --parallel diloco" in proc.stderr, proc.stderr
