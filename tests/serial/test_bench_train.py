"""`python -m mpitrain.bench train` runs every implementation in one mpiexec, DDP included, and
they all train the same model: the final losses agree with DDP's (the oracle)."""
import json

import pytest

from launch import run_mpi

pytest.importorskip("torch")


def test_bench_train_runs_every_impl_beside_ddp(tmp_path):
    out = tmp_path / "train.json"
    proc = run_mpi(2, ["-m", "mpitrain.bench", "train", "vit_digits", "--impl",
                       "mpitrain,mpitrain-sync,naive,ddp,local", "--steps", "3", "--warmup", "1",
                       "--rounds", "2", "--batch-size", "16", "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    rows = {r["impl"]: r for r in report["rows"]}
    assert set(rows) == {"mpitrain", "mpitrain-sync", "naive", "ddp", "local"}
    ddp = rows["ddp"]["final_loss"]
    for impl in ("mpitrain", "mpitrain-sync", "naive"):
        assert rows[impl]["final_loss"] == pytest.approx(ddp, rel=1e-5), impl
        assert rows[impl]["vs_ddp"] == pytest.approx(rows["ddp"]["step_ms"] / rows[impl]["step_ms"])
    assert "vs ddp" in proc.stdout and report["ranks"] == 2


def test_bench_train_refuses_an_unknown_impl():
    proc = run_mpi(2, ["-m", "mpitrain.bench", "train", "--impl", "horovod"], timeout=120)
    assert proc.returncode != 0
    assert "--impl horovod: choose from" in proc.stderr + proc.stdout
