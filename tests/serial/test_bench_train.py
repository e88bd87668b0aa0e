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


@pytest.mark.parametrize("param_dtype", ["fp32", "bf16"])
def test_bench_train_sharded_impls_train_what_ddp_and_fsdp2_train(tmp_path, param_dtype):
    """ZeRO-3 beside torch's FSDP2: fp32, both follow DDP; bf16 parameters (autocast), they
    follow each other (FSDP2's MixedPrecisionPolicy is the oracle)."""
    out = tmp_path / "train.json"
    impls = "mpitrain-zero3,fsdp2" + (",ddp" if param_dtype == "fp32" else "")
    args = ["--precision", "bf16", "--param-dtype", "bf16"] if param_dtype == "bf16" else []
    proc = run_mpi(2, ["-m", "mpitrain.bench", "train", "vit_digits", "--impl", impls,
                       "--steps", "3", "--warmup", "1", "--rounds", "1", "--batch-size", "16",
                       "--json", str(out), *args], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    oracle = rows["ddp" if param_dtype == "fp32" else "fsdp2"]["final_loss"]
    for impl in ("mpitrain-zero3", "fsdp2"):
        assert rows[impl]["final_loss"] == pytest.approx(oracle, rel=1e-5 if param_dtype == "fp32"
                                                         else 1e-3), impl
    assert rows["mpitrain-zero3"]["baseline"] == ("ddp" if param_dtype == "fp32" else "fsdp2")


def test_bench_train_refuses_an_unknown_impl():
    proc = run_mpi(2, ["-m", "mpitrain.bench", "train", "--impl", "horovod"], timeout=120)
    assert proc.returncode != 0
    assert "--impl horovod: choose from" in proc.stderr + proc.stdout


def test_bench_train_diloco_before_its_first_outer_step_is_data_parallel(tmp_path):
    """One worker and no outer step due within the round: DiLoCo's inner engine alone, which must
    train what DDP trains; the outer step itself is tested in tests/mpi/test_diloco.py."""
    out = tmp_path / "train.json"
    proc = run_mpi(2, ["-m", "mpitrain.bench", "train", "vit_digits", "--impl",
                       "mpitrain-diloco,ddp", "--workers", "1", "--sync-every", "1000",
                       "--steps", "3", "--warmup", "1", "--rounds", "1", "--batch-size", "16",
                       "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["mpitrain-diloco"]["final_loss"] == pytest.approx(rows["ddp"]["final_loss"],
                                                                   rel=1e-5)
