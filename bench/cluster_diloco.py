"""DiLoCo against data parallel on the emulated cluster (2 nodes x 2 ranks), at each link rate:
the same model, global batch, samples and inner optimizer; DiLoCo with H = 10 and 50 and a
streaming variant. Data parallel is the baseline, run first at each rate, in the same run.

    .venv/bin/python bench/cluster_diloco.py --rates 100mbit,1gbit --epochs 8

Reported per run: seconds of training per sample (the logged windows' training time, evaluation
left out), its ratio to data parallel at the same rate, final test accuracy, and the bytes the
outer steps sent. Writes bench/cluster/diloco.json, .md and a plot of test accuracy against
wall-clock time per rate (bench/cluster/diloco.png).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mpitrain.cluster.launch import run_command  # noqa: E402
RUNS = {
    "dp": ["--parallel", "dp"],
    "diloco H=10": ["--parallel", "diloco", "--sync-every", "10"],
    "diloco H=50": ["--parallel", "diloco", "--sync-every", "50"],
    "streaming H=50 F=2 T=2 int4": ["--parallel", "diloco", "--sync-every", "50", "--fragments",
                                    "2", "--overlap", "2", "--outer-dtype", "int4"],
}


def read(log):
    rows = [json.loads(line) for line in Path(log).read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "test_accuracy" in r]
    return steps, evals


def summary(log, batch, log_every):
    steps, evals = read(log)
    seconds = sum(log_every * batch / r["img_per_s"] for r in steps)
    samples = len(steps) * log_every * batch
    start = steps[0]["time"] - log_every * batch / steps[0]["img_per_s"]
    curve = [(r["time"] - start, r["test_accuracy"]) for r in evals]
    return {"s_per_sample": seconds / samples, "accuracy": evals[-1]["test_accuracy"],
            "curve": curve, "steps": len(steps) * log_every}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="100mbit,1gbit")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--model", default="vit_digits_wide")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", default="1e-3")
    parser.add_argument("--extra", default="", help="more trainer flags for every run")
    args = parser.parse_args()
    log_every = 5
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates.split(","):
            for name in args.runs.split(","):
                log = Path(tmp) / f"{rate}-{len(results)}.jsonl"
                command = run_command(2, 2, rate, [
                           sys.executable, "-m", "mpitrain.train", args.model, "--epochs", str(args.epochs),
                           "--batch-size", str(args.batch_size), "--lr", args.lr,
                           "--log-every", str(log_every), "--no-progress", "--log-jsonl",
                           str(log), *RUNS[name], *args.extra.split()])
                proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} at {rate} failed:\n{proc.stdout[-2000:]}"
                                     f"{proc.stderr[-2000:]}")
                row = {"rate": rate, "run": name, **summary(log, args.batch_size, log_every)}
                print(f"{rate:>8} {name:>28}: {row['s_per_sample'] * 1e3:.3f} ms/sample, "
                      f"accuracy {row['accuracy'] * 100:.2f}%", flush=True)
                results.append(row)
    lines = [f"{args.model}, global batch {args.batch_size}, {args.epochs} epochs, 2 nodes x 2 "
             f"ranks\n", "| link | run | ms per sample | vs dp | test accuracy | vs dp |",
             "|---|---|---|---|---|---|"]
    for r in results:
        base = next(b for b in results if b["rate"] == r["rate"] and b["run"] == "dp")
        lines.append(f"| {r['rate']} | {r['run']} | {r['s_per_sample'] * 1e3:.3f} | "
                     f"{base['s_per_sample'] / r['s_per_sample']:.2f}x faster | "
                     f"{r['accuracy'] * 100:.2f}% | {(r['accuracy'] - base['accuracy']) * 100:+.2f} |")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "cluster"
    out.mkdir(exist_ok=True)
    (out / "diloco.json").write_text(json.dumps(results, indent=1))
    (out / "diloco.md").write_text(text + "\n")
    plot(results, out / "diloco.png")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates = list(dict.fromkeys(r["rate"] for r in results))
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 3.8), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        for r in (r for r in results if r["rate"] == rate):
            xs, ys = zip(*r["curve"])
            ax.plot(xs, [y * 100 for y in ys], marker="o", ms=3, label=r["run"])
        ax.set_title(f"--link {rate}")
        ax.set_xlabel("wall-clock seconds")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("DiLoCo vs data parallel, 2 emulated nodes x 2 ranks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
