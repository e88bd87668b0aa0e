"""The trainer on the emulated cluster: vit_digits, data parallel, 4 ranks, step time at each
link rate against the same 4 ranks on one node (the baseline, run first, in the same run).

    .venv/bin/python bench/cluster_train.py [--rates 100mbit,1gbit,10gbit,none] [--steps 40]

Step time: the median of the differences between the logged steps' wall-clock times, the first
five steps left out (start-up, first all-reduces). Writes bench/cluster/train.json and .md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mpitrain.cluster.launch import run_command  # noqa: E402


def train_args(steps, log, extra):
    return [sys.executable, "-m", "mpitrain.train", "vit_digits", "--parallel", "dp", "--steps",
            str(steps), "--log-every", "1", "--no-progress", "--eval-every", "100000",
            "--log-jsonl", str(log), *extra]


def step_time(log, skip=5):
    times = [r["time"] for r in map(json.loads, Path(log).read_text().splitlines())
             if "loss" in r]
    gaps = [b - a for a, b in zip(times[skip:], times[skip + 1:])]
    return statistics.median(gaps)


def run(command, env):
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="100mbit,1gbit,10gbit,none")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--extra", default="", help="more trainer flags, space separated")
    args = parser.parse_args()
    extra = args.extra.split()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", PYTHONUNBUFFERED="1")
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "one-node.jsonl"
        run([mpiexec, "--oversubscribe", "-n", "4", *train_args(args.steps, log, extra)], env)
        base = step_time(log)
        rows.append({"where": "one node, 4 ranks", "link": "shared memory", "step_s": base})
        for rate in args.rates.split(","):
            log = Path(tmp) / f"{rate}.jsonl"
            run(run_command(2, 2, rate, train_args(args.steps, log, extra)), env)
            rows.append({"where": "2 nodes x 2 ranks", "link": rate, "step_s": step_time(log)})
    lines = ["| ranks | link | step ms | vs one node |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['where']} | {r['link']} | {r['step_s'] * 1e3:.1f} | "
                     f"{r['step_s'] / base:.2f}x |")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "cluster"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(rows, indent=1))
    (out / "train.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
