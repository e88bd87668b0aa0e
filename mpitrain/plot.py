"""python -m mpitrain.plot RUN.jsonl [RUN2.jsonl ...] -o curves.png [--x step|time]

One figure of four panels: training loss, test accuracy, images per second and MFU, against
the step or the wall time since each run's start; one line per run, labelled by file name.
Reads the JSON lines the trainer writes with --log-jsonl (matplotlib).
"""
import argparse
import json
import sys
from pathlib import Path

PANELS = [("loss", "training loss"), ("test_accuracy", "test accuracy"),
          ("img_per_s", "images / s"), ("mfu", "MFU")]


def read_run(path):
    """{metric: [(step, seconds since start, value)]} of one JSON-lines file."""
    series, start = {name: [] for name, _ in PANELS}, None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}:{n}: not a JSON line") from None
        if record.get("kind") == "run" or "step" not in record:
            continue
        record.setdefault("time", 0.0)
        start = record["time"] if start is None else start
        for name in series:
            if record.get(name) is not None:
                series[name].append((record["step"], record["time"] - start, record[name]))
    return series


def plot(paths, out, x="step"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for path in paths:
        series = read_run(path)
        for ax, (name, title) in zip(axes.flat, PANELS):
            points = series[name]
            if points:
                xs = [p[0] if x == "step" else p[1] for p in points]
                ax.plot(xs, [p[2] for p in points], label=Path(path).stem,
                        marker="o" if name == "test_accuracy" else None, markersize=3)
    for ax, (_, title) in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel("step" if x == "step" else "seconds since start")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpitrain.plot", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="JSON-lines files written with --log-jsonl")
    p.add_argument("-o", "--out", default="curves.png", help="the figure (png, pdf, svg)")
    p.add_argument("--x", choices=("step", "time"), default="step", help="the horizontal axis")
    args = p.parse_args(argv)
    try:
        plot(args.runs, args.out, args.x)
    except (OSError, ValueError) as exc:
        print(f"mpitrain.plot: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
