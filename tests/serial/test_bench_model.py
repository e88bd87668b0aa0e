"""`python -m mpitrain.bench model` runs end to end on a CPU and reports every round."""
import json
import subprocess
import sys


def test_model_benchmark_reports_rounds_and_skips_missing_timm(tmp_path):
    out = tmp_path / "model.json"
    proc = subprocess.run([sys.executable, "-m", "mpitrain.bench", "model", "--model", "vit_digits",
                           "--device", "cpu", "--batch-size", "8", "--steps", "2", "--repeats", "2",
                           "--warmup", "1", "--modes", "eager", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    ours = [r for r in report["rows"] if r["impl"] == "mpitrain"]
    assert len(ours) == 1 and len(ours[0]["rounds_img_per_s"]) == 2 and ours[0]["img_per_s"] > 0
    try:
        import timm  # noqa: F401
    except ImportError:
        assert "timm is not installed" in proc.stdout
