"""The fault matrix of the trainer: one fault on one rank of a real 2-rank job, and what must hold
after it: every rank exited, well within a bound, with a message that names the right rank and
cause, and nothing a user saved is lost. The faults are patched in by inject.py, never in the
product. MPITRAIN_TIMEOUT is 60 s except where a stall is the fault: a job that only ended at
the timeout would fail the time bound."""
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from launch import run_mpi

torch = pytest.importorskip("torch")

INJECT = str(Path(__file__).with_name("inject.py"))
TRAIN = ["vit_digits", "--steps", "6", "--batch-size", "48", "--log-every", "1", "--warmup", "2",
         "--no-progress", "--eval-every", "100"]
QUICK_S = 45          # the job must end well before MPITRAIN_TIMEOUT (60 s) would end it


def run(args, env=None, nranks=2, timeout=240):
    start = time.monotonic()
    proc = run_mpi(nranks, args, env=dict({"MPITRAIN_TIMEOUT": "60"}, **(env or {})),
                   timeout=timeout)
    return proc, time.monotonic() - start


def inject(fault, rank, *train_args, at=1, env=None):
    return run([INJECT, fault, str(rank), str(at), "--", *TRAIN, *train_args], env=env)


def trainer(*train_args, env=None):
    return run(["-m", "mpitrain.train", *TRAIN, *train_args], env=env)


def losses_by_step(log):
    rows = [json.loads(line) for line in Path(log).read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    log = tmp_path_factory.mktemp("full") / "full.jsonl"
    proc, _ = trainer("--log-jsonl", str(log))
    assert proc.returncode == 0, proc.stderr
    return losses_by_step(log)


def test_exception_on_one_rank_inside_the_trainer_aborts_at_once():
    proc, elapsed = inject("raise-in-step", 1, at=2)
    assert proc.returncode != 0
    assert "error on rank 1 of 2: injected fault on rank 1; aborting the job" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < QUICK_S


def test_a_file_only_rank_0_opens():
    proc, elapsed = trainer("--log-jsonl", "/nonexistent/x.jsonl")
    assert proc.returncode != 0
    assert "error on rank 0 of 2" in proc.stderr and "/nonexistent/x.jsonl" in proc.stderr
    assert elapsed < QUICK_S


def test_sigkill_of_a_rank_ends_the_job():
    proc, elapsed = inject("kill-in-step", 1, at=2)
    assert proc.returncode != 0
    assert re.search(r"rank 1 .*signal 9|signal 9.*rank 1", proc.stderr, re.S), proc.stderr
    assert elapsed < QUICK_S


def test_sigstop_of_a_rank_ends_at_the_timeout_naming_it():
    proc, elapsed = inject("stop-in-step", 1, at=2, env={"MPITRAIN_TIMEOUT": "3"})
    assert proc.returncode != 0
    assert re.search(r"rank 0: \w+ #\d+ \(\w+\) has waited [\d.]+ s for rank 1,", proc.stderr), \
        proc.stderr
    assert elapsed < QUICK_S


def test_nan_loss_on_one_rank_ends_every_rank_with_one_message():
    proc, elapsed = inject("nan-loss", 1)
    assert proc.returncode == 3
    assert proc.stderr.count("mpitrain.train: error: loss is nan at step 1") == 1, proc.stderr
    assert elapsed < QUICK_S


@pytest.mark.parametrize("fault, rank, resumed_at", [
    ("kill-before-shard", 1, 2), ("kill-after-shard", 1, 2),
    ("kill-before-manifest", 0, 2), ("kill-after-manifest", 0, 4)])
def test_a_rank_killed_during_a_save_loses_nothing(tmp_path, uninterrupted, fault, rank, resumed_at):
    ck = tmp_path / "ck"
    proc, elapsed = inject(fault, rank, "--checkpoint-dir", str(ck), "--checkpoint-every", "2",
                           at=2)                            # the second save: step 4
    assert proc.returncode != 0 and elapsed < QUICK_S
    log = tmp_path / "resumed.jsonl"
    proc, _ = trainer("--checkpoint-dir", str(ck), "--checkpoint-every", "2", "--resume",
                      "--log-jsonl", str(log))
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from {ck / f'step-{resumed_at:08d}'} at step {resumed_at}" in proc.stdout
    resumed = losses_by_step(log)
    assert sorted(resumed) == list(range(resumed_at + 1, 7))
    assert resumed == pytest.approx({s: uninterrupted[s] for s in resumed}, rel=1e-5)


def test_a_stalled_save_ends_at_the_timeout_naming_the_rank(tmp_path):
    proc, elapsed = inject("stall-in-save", 1, "--checkpoint-dir", str(tmp_path / "ck"),
                           env={"MPITRAIN_TIMEOUT": "3"})
    assert proc.returncode != 0
    assert re.search(r"rank 0: gather_object #\d+ \(linear\) has waited [\d.]+ s for rank 1,",
                     proc.stderr), proc.stderr
    assert elapsed < QUICK_S


def test_damaged_newest_checkpoint_falls_back_and_other_runs_are_kept(tmp_path, uninterrupted):
    ck = tmp_path / "ck"
    proc, _ = trainer("--checkpoint-dir", str(ck), "--checkpoint-every", "2", "--stop-at-step", "4")
    assert proc.returncode == 0, proc.stderr
    (ck / "step-00000004" / "manifest.json").write_text("{ truncated")
    log = tmp_path / "resumed.jsonl"
    proc, _ = trainer("--checkpoint-dir", str(ck), "--resume", "--log-jsonl", str(log))
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: skipped {ck / 'step-00000004'}: " in proc.stdout
    assert "unreadable manifest" in proc.stdout
    assert f"resumed from {ck / 'step-00000002'} at step 2" in proc.stdout
    resumed = losses_by_step(log)
    assert resumed == pytest.approx({s: uninterrupted[s] for s in range(3, 7)}, rel=1e-5)

    before = sorted(str(p) for p in ck.rglob("*"))
    proc, elapsed = trainer("--checkpoint-dir", str(ck), "--seed", "7")    # a fresh run: refused
    assert proc.returncode == 2
    assert f"--checkpoint-dir {ck} holds another run's checkpoints" in proc.stderr
    assert sorted(str(p) for p in ck.rglob("*")) == before                  # nothing deleted


def test_bad_directories_are_named(tmp_path):
    missing = tmp_path / "no-such-dir"
    proc, _ = trainer("--checkpoint-dir", str(missing), "--resume", "--steps", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"--resume: {missing} does not exist; starting at step 0" in proc.stdout
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc, _ = trainer("--checkpoint-dir", str(afile))
    assert proc.returncode == 2
    assert f"--checkpoint-dir {afile} is a file, not a directory" in proc.stderr


def test_a_truncated_image_is_named(tmp_path):
    from PIL import Image
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    bad = tmp_path / "imgs" / "b" / "5.png"
    bad.write_bytes(bad.read_bytes()[:30])
    proc, elapsed = run(["-m", "mpitrain.train", "vit_digits", "--data", "imagefolder", "--data-dir",
                         str(tmp_path / "imgs"), "--img-size", "8", "--batch-size", "4",
                         "--steps", "1", "--no-progress"])
    assert proc.returncode != 0
    assert f"{bad}: cannot read this image" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < QUICK_S


def test_synthetic_data_costs_nothing_before_the_first_step():
    proc, elapsed = run(["-m", "mpitrain.train", "vit_digits", "--data", "synthetic", "--steps",
                         "2", "--batch-size", "8", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert elapsed < QUICK_S              # it took two minutes and 8.8 GB a rank when shuffled
