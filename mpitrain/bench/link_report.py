"""All-reduce across emulated nodes against the link's limit: tables, crossover and a plot.

    python -m mpitrain.bench.link_report bench/cluster/allreduce-*.json \
        --markdown bench/cluster/allreduce.md --plot bench/cluster/allreduce.png

Reads the JSON of `python -m mpitrain.bench collectives` run through `python -m mpitrain.cluster
run --nodes 2 --ranks-per-node 2 --link RATE` (bench/cluster_allreduce.sh), one file per rate,
named allreduce-RATE.json.

The link's limit, in the busbw units of the table (busbw = size / time x 2(n-1)/n): with ranks
0, 1 on node0 and 2, 3 on node1, each node's egress is shaped to R bytes/s, and
  - the flat ring crosses the link at 1 -> 2 and 3 -> 0; rank 1 alone sends 2(n-1)/n x size
    through node0's link, so time >= 2(n-1)/n x size / R, and busbw <= R;
  - recursive doubling sends the whole buffer from both ranks of a node in its cross-node step:
    time >= 2 x size / R, busbw <= 0.75 R at 4 ranks;
  - the hierarchical all-reduce sends, per node, 2 local ranks x half the buffer once:
    time >= size / R, busbw <= 1.5 R at 2 nodes of 2 ranks.
`busbw / link` is busbw over R, so the ring's bound reads 1.00.
"""
import argparse
import json
import re
from pathlib import Path

from ..cluster.links import parse_rate

FLAT = ("ring", "recursive_doubling")


def rate_of(path):
    match = re.search(r"allreduce-([^/]+)\.json$", str(path))
    if not match:
        raise SystemExit(f"{path}: expected a file named allreduce-RATE.json")
    return match.group(1)


def label(row):
    return "mpi" if row["impl"] == "mpi" else row["algorithm"]


def load(paths):
    """{rate: {(label, bytes): row}}, rates ordered slowest first ('none' last)."""
    runs = {}
    for path in paths:
        rows = [r for r in json.loads(Path(path).read_text()) if r["op"] == "all_reduce"]
        runs[rate_of(path)] = {(label(r), r["bytes"]): r for r in rows}
    return dict(sorted(runs.items(), key=lambda kv: parse_rate(kv[0]) or float("inf")))


def link_bytes_per_s(rate):
    bits = parse_rate(rate)
    return None if bits is None else bits / 8


def crossover(rows):
    """The smallest size from which hierarchical is faster than every flat algorithm at that
    size and every larger one measured; None when it never is."""
    sizes = sorted({b for (_, b) in rows})
    wins = []
    for b in sizes:
        hier = rows.get(("hierarchical", b))
        flats = [rows[(a, b)]["time_us"] for a in FLAT if (a, b) in rows]
        wins.append(hier is not None and flats and hier["time_us"] < min(flats))
    for i, b in enumerate(sizes):
        if all(wins[i:]):
            return b
    return None


def human(nbytes):
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return str(nbytes)


def markdown(runs):
    out = []
    for rate, rows in runs.items():
        R = link_bytes_per_s(rate)
        labels = sorted({lab for (lab, _) in rows}, key=["ring", "recursive_doubling",
                                                         "hierarchical", "auto", "mpi"].index)
        out.append(f"### --link {rate}" + ("" if R else " (unshaped veth)"))
        head = "| size | " + " | ".join(labels) + " |"
        out += [head, "|" + "---|" * (len(labels) + 1)]
        for b in sorted({b for (_, b) in rows}):
            cells = []
            for lab in labels:
                r = rows.get((lab, b))
                if r is None:
                    cells.append("")
                    continue
                cell = f"{r['busbw']:.3f}"
                if R:
                    cell += f" ({r['busbw'] * 1e9 / R:.2f})"
                if lab != "mpi" and r.get("vs_mpi"):
                    cell += f" x{r['vs_mpi']:.2f}"
                cells.append(cell)
            out.append(f"| {human(b)} | " + " | ".join(cells) + " |")
        cut = crossover(rows)
        out.append("")
        out.append(f"hierarchical faster than ring and recursive doubling from: "
                   f"{human(cut) if cut else 'no size measured'}")
        out.append("")
    out.insert(0, "busbw GB/s (busbw / link rate) x(MPI's time / this time); 2 nodes x 2 ranks\n")
    return "\n".join(out)


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), squeeze=False)
    for ax, (rate, rows) in zip(axes[0], runs.items()):
        for lab in ("ring", "recursive_doubling", "hierarchical", "mpi"):
            pts = sorted((b, r["busbw"]) for (l, b), r in rows.items() if l == lab)
            if pts:
                ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", ms=3, label=lab)
        R = link_bytes_per_s(rate)
        if R:
            ax.axhline(R / 1e9, color="grey", ls="--", lw=1, label="link rate (ring's bound)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"--link {rate}")
        ax.set_xlabel("bytes per all_reduce")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("busbw GB/s")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("all_reduce, 2 emulated nodes x 2 ranks (mpitrain.cluster)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpitrain.bench.link_report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--markdown")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    runs = load(args.files)
    text = markdown(runs)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
