"""Medians over passes of mpitrain `auto` per op and size, before and after, with each run's own
MPI ratio: python compare.py DIR (cpubench-before-N.json and cpubench-after-N.json in DIR)."""
import json
import statistics
import sys
from pathlib import Path

SIZE = {4096: "4K", 65536: "64K", 1 << 20: "1M", 4 << 20: "4M", 16 << 20: "16M"}


def medians(files):
    times, ratios = {}, {}
    for f in files:
        for row in json.loads(f.read_text()):
            if row["impl"] == "mpitrain":
                key = (row["op"], row["bytes"])
                times.setdefault(key, []).append(row["time_us"])
                ratios.setdefault(key, []).append(row["vs_mpi"])
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: statistics.median(v) for k, v in ratios.items()})


def main(folder):
    folder = Path(folder)
    before = sorted(folder.glob("cpubench-before-*.json"))
    after = sorted(folder.glob("cpubench-after-*.json"))
    (tb, rb), (ta, ra) = medians(before), medians(after)
    print(f"{len(before)} passes before, {len(after)} after; median over passes of mpitrain auto\n")
    print("| op | size | before: µs, vs MPI | after: µs, vs MPI | after / before |")
    print("|---|---|---|---|---|")
    changes = []
    for key in tb:
        if key not in ta:
            continue
        changes.append(ta[key] / tb[key])
        print(f"| {key[0]} | {SIZE.get(key[1], key[1])} | {tb[key]:.0f}, {rb[key]:.2f}× | "
              f"{ta[key]:.0f}, {ra[key]:.2f}× | {changes[-1]:.2f} |")
    print(f"\nMedian of after / before over the {len(changes)} rows: "
          f"{statistics.median(changes):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
