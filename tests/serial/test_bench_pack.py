"""`python -m mpitrain.bench pack` runs end to end on a small model and reports every row."""
import json
import subprocess
import sys


def test_pack_benchmark_reports_fused_loop_and_torch_rows(tmp_path):
    out = tmp_path / "pack.json"
    proc = subprocess.run([sys.executable, "-m", "mpitrain.bench", "pack", "--model", "vit_digits",
                           "--bucket-mb", "1", "--iters", "1", "--repeats", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    impls = {(r["direction"], r["transform"], r["impl"].split(":")[0]) for r in report["rows"]}
    for direction in ("pack", "unpack"):
        for transform in ("copy", "scale+bf16"):
            for impl in ("fused", "loop", "torch"):
                assert (direction, transform, impl) in impls
    assert all(r["GBps"] > 0 for r in report["rows"])
    assert "fused" in proc.stdout
