"""The collectives benchmark runs end to end, with MPI's own collectives in the same run, and
writes its JSON and plot."""
import json

from launch import run_mpi


def test_collectives_bench_small(tmp_path):
    out_json, out_png = tmp_path / "rows.json", tmp_path / "busbw.png"
    proc = run_mpi(2, ["-m", "mpitrain.bench", "collectives", "--ops", "all_reduce,broadcast",
                       "--sizes", "4K,64K", "--iters", "5", "--repeats", "1",
                       "--json", str(out_json), "--plot", str(out_png), "--markdown", str(tmp_path / "t.md")], timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out_json.read_text())
    impls = {(r["op"], r["impl"]) for r in rows}
    assert ("all_reduce", "mpi") in impls and ("all_reduce", "mpitrain") in impls
    assert all(r["busbw"] > 0 and r["time_us"] > 0 for r in rows)
    ar = [r for r in rows if r["op"] == "all_reduce" and r["impl"] == "mpitrain"][0]
    assert abs(ar["busbw"] - ar["algbw"] * 2 * (2 - 1) / 2) < 1e-9     # nccl-tests' factor
    assert out_png.stat().st_size > 1000
    assert "| all_reduce | 4K |" in (tmp_path / "t.md").read_text()
    assert "busbw" in proc.stdout and "mpi (native)" in proc.stdout
