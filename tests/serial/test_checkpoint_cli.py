"""Checkpoints through the trainer: resuming continues the uninterrupted loss sequence at the
same or another world size and stage; bad checkpoints are refused by name; consolidate writes
a state dict plain torch loads into the model."""
import json
import shutil

import pytest

from launch import run_mpi

torch = pytest.importorskip("torch")

ARGS = ["-m", "mpitrain.train", "vit_digits", "--steps", "8", "--batch-size", "48", "--log-every",
        "1", "--warmup", "2", "--lr", "3e-3", "--no-progress", "--eval-every", "100"]


def train(tmp_path, ranks, name, *extra, ok=True):
    log = tmp_path / f"{name}.jsonl"
    proc = run_mpi(ranks, [*ARGS, "--log-jsonl", str(log), *extra], timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r], proc
    return None, proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    losses, _ = train(tmp_path_factory.mktemp("full"), 2, "full")
    return losses


@pytest.mark.parametrize("save, resume", [
    ((2, "dp"), (2, "dp")),
    ((3, "zero2"), (2, "dp")),
    ((2, "dp"), (3, "zero1")),
    ((2, "zero3"), (2, "zero3")),
    ((4, "zero3"), (3, "zero1")),
    ((3, "zero3"), (2, "dp")),
    ((2, "dp"), (3, "zero3")),
], ids=["same world", "zero2 x3 -> dp x2", "dp x2 -> zero1 x3", "zero3 x2 -> zero3 x2",
        "zero3 x4 -> zero1 x3", "zero3 x3 -> dp x2", "dp x2 -> zero3 x3"])
def test_resume_continues_the_loss_sequence(tmp_path, uninterrupted, save, resume):
    ck = tmp_path / "ck"
    first, _ = train(tmp_path, save[0], "first", "--parallel", save[1], "--checkpoint-dir", str(ck),
                     "--checkpoint-every", "2", "--stop-at-step", "4")
    second, proc = train(tmp_path, resume[0], "second", "--parallel", resume[1], "--checkpoint-dir",
                         str(ck), "--resume")
    assert "resumed from" in proc.stdout and "at step 4" in proc.stdout
    assert first + second == pytest.approx(uninterrupted, rel=1e-5)


def test_zero3_with_bf16_parameters_saves_the_float32_masters(tmp_path):
    """bf16 compute and communication, float32 shards: a resume must continue exactly, which
    it only does when the checkpoint holds the float32 masters, not their bf16 copies."""
    mixed = ["--parallel", "zero3", "--precision", "bf16", "--param-dtype", "bf16"]
    full, _ = train(tmp_path, 2, "full", *mixed)
    ck = tmp_path / "ck"
    first, _ = train(tmp_path, 2, "first", *mixed, "--checkpoint-dir", str(ck), "--stop-at-step", "4")
    second, _ = train(tmp_path, 2, "second", *mixed, "--checkpoint-dir", str(ck), "--resume")
    assert first + second == pytest.approx(full, rel=1e-5)


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    ck = tmp_path / "ck"
    train(tmp_path, 2, "save", "--checkpoint-dir", str(ck), "--stop-at-step", "2",
          "--checkpoint-keep", "1")
    step = ck / "step-00000002"
    (ck / "step-00000009").mkdir()                       # no manifest: never loaded
    backup = tmp_path / "shard.bak"
    shutil.copy(step / "shard-00001.pt", backup)
    with open(step / "shard-00001.pt", "r+b") as f:       # flip bytes in the middle
        f.seek(200)
        f.write(b"\xff" * 16)
    _, proc = train(tmp_path, 2, "corrupt", "--checkpoint-dir", str(ck), "--resume", ok=False)
    assert proc.returncode != 0 and "shard-00001.pt: shard of rank 1 is corrupt" in proc.stderr
    (step / "shard-00001.pt").unlink()
    _, proc = train(tmp_path, 2, "missing", "--checkpoint-dir", str(ck), "--resume", ok=False)
    assert proc.returncode != 0 and "shard of rank 1 is missing" in proc.stderr
    shutil.copy(backup, step / "shard-00001.pt")
    proc = run_mpi(2, ["-m", "mpitrain.train", "vit_cifar", "--data", "synthetic", "--steps", "3",
                       "--checkpoint-dir", str(ck), "--resume", "--no-progress"], timeout=300)
    assert proc.returncode != 0 and "a different model" in proc.stderr


def test_keep_and_consolidate(tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "model.pt"
    train(tmp_path, 3, "run", "--parallel", "zero2", "--checkpoint-dir", str(ck),
          "--checkpoint-every", "2", "--checkpoint-keep", "2")
    assert sorted(d.name for d in ck.iterdir()) == ["step-00000006", "step-00000008"]
    proc = run_mpi(1, ["-m", "mpitrain.checkpoint", "consolidate", str(ck), str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    from mpitrain.models import ViTConfig, VisionTransformer
    state = torch.load(out)
    model = VisionTransformer(ViTConfig.named("vit_digits"))
    model.load_state_dict(state, strict=True)             # every key, every shape
    assert set(state) == set(model.state_dict())
