"""Where the compute stream loses time, from the traces `bench train --profile --profile-dir DIR`
keeps (one per implementation and rank):

    python -m mpitrain.bench.trace_report DIR [--base local]

For each trace: the compute stream (the busiest) per step, split into
  busy        its kernels running;
  host-bound  idle while the next kernel had not been launched yet (the host was behind);
  waiting     idle with the next kernel already launched (it waited for another stream: the
              communication at the end of backward, or a cross-stream event);
then the longest waits with the kernels around them, and each stream's work after the last
backward kernel (the tail). With --base, the kernels that got slower than in the base
implementation's trace of the same rank (same names, per-step time).
"""
import argparse
import bisect
import glob
import os
import re

from .gpu_profile import GPU_CATS, busy_time, read_dump

OPTIMIZER = re.compile(r"multi_tensor_apply|fused_adam|adamw", re.I)


def load(path):
    steps, events = read_dump(path)
    gpu = [e for e in events if e["cat"] in GPU_CATS]
    launches = {e["correlation"]: e for e in events
                if e["cat"] in ("cuda_runtime", "cuda_driver") and e["correlation"] is not None}
    return steps, gpu, launches


def streams_of(gpu):
    by = {}
    for e in gpu:
        by.setdefault(e["tid"], []).append(e)
    for evs in by.values():
        evs.sort(key=lambda e: e["ts"])
    return by


def split_steps(compute, steps):
    """Step boundaries on the compute stream: the end of each step's last optimizer kernel."""
    # optimizer kernels come in runs; a run ends where the next compute kernel is not one
    ends, run_end = [], None
    for i, e in enumerate(compute):
        if OPTIMIZER.search(e["name"]):
            run_end = e["ts"] + e["dur"]
            nxt = compute[i + 1] if i + 1 < len(compute) else None
            if nxt is None or not OPTIMIZER.search(nxt["name"]):
                ends.append((run_end, e))
    return ends[-steps:]


def analyse(path, top=8):
    steps, gpu, launches = load(path)
    by = streams_of(gpu)
    compute_id = max(by, key=lambda s: busy_time([(e["ts"], e["ts"] + e["dur"]) for e in by[s]]))
    compute = by[compute_id]
    lines = [f"== {os.path.basename(path)}: compute stream {compute_id}, {len(by)} streams"]
    start, end = compute[0]["ts"], max(e["ts"] + e["dur"] for e in gpu)
    span = (end - start) / steps
    host = wait = 0.0
    waits = []
    for prev, cur in zip(compute, compute[1:]):
        gap = cur["ts"] - (prev["ts"] + prev["dur"])
        if gap <= 0:
            continue
        launch = launches.get(cur["correlation"])
        launched_at = launch["ts"] + launch["dur"] if launch else None
        if launched_at is not None and launched_at > prev["ts"] + prev["dur"]:
            h = min(gap, launched_at - (prev["ts"] + prev["dur"]))
            host += h
            wait += gap - h
            if gap - h > 0:
                waits.append((gap - h, prev, cur, h))
        else:
            wait += gap
            waits.append((gap, prev, cur, 0.0))
    busy = busy_time([(e["ts"], e["ts"] + e["dur"]) for e in compute])
    lines.append(f"  per step: span {span / 1e3:.2f} ms = busy {busy / steps / 1e3:.2f} + host-bound "
                 f"{host / steps / 1e3:.2f} + waiting {wait / steps / 1e3:.2f} (+ before the first kernel)")
    lines.append("  longest waits (ms, the kernels before and after):")
    for gap, prev, cur, h in sorted(waits, key=lambda w: -w[0])[:top]:
        lines.append(f"    {gap / 1e3:7.3f} at +{(prev['ts'] + prev['dur'] - start) / 1e3:8.2f}  "
                     f"{prev['name'][:45]}  ->  {cur['name'][:45]}")
    bounds = split_steps(compute, steps)
    if bounds:
        lines.append("  the tail of each step (from the last compute kernel before the optimizer):")
        for opt_end, last_opt in bounds:
            i = compute.index(last_opt)
            while i > 0 and OPTIMIZER.search(compute[i - 1]["name"]):
                i -= 1
            first_opt = compute[i]
            before = compute[i - 1] if i > 0 else None
            if before is None:
                continue
            bw_end = before["ts"] + before["dur"]
            lines.append(f"    backward ends +{(bw_end - start) / 1e3:8.2f}; optimizer starts "
                         f"{(first_opt['ts'] - bw_end) / 1e3:.3f} ms later and runs "
                         f"{(opt_end - first_opt['ts']) / 1e3:.3f} ms")
            for sid, evs in by.items():
                if sid == compute_id:
                    continue
                after = [e for e in evs if e["ts"] + e["dur"] > bw_end and e["ts"] < first_opt["ts"]]
                if after:
                    b = busy_time([(max(e["ts"], bw_end), e["ts"] + e["dur"]) for e in after])
                    last = max(e["ts"] + e["dur"] for e in after)
                    lines.append(f"      stream {sid}: {len(after)} ops busy {b / 1e3:.3f} ms after "
                                 f"backward, its last ends {(last - bw_end) / 1e3:.3f} ms after it")
    lines.append(small_gaps(compute, [e for sid, evs in by.items() if sid != compute_id for e in evs],
                            steps))
    for sid, evs in sorted(by.items(), key=lambda kv: -len(kv[1])):
        if sid == compute_id:
            continue
        b = busy_time([(e["ts"], e["ts"] + e["dur"]) for e in evs])
        kinds = {}
        for e in evs:
            k = e["cat"] if e["cat"] != "kernel" else e["name"][:40]
            kinds[k] = kinds.get(k, 0.0) + e["dur"]
        top_kinds = ", ".join(f"{k} {v / steps / 1e3:.2f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:4])
        lines.append(f"  stream {sid}: busy {b / steps / 1e3:.2f} ms/step ({top_kinds})")
    return "\n".join(lines), compute, steps


SMALL_GAP_US = 50.0     # a kernel-to-kernel gap below this is dispatch latency, not a wait
NEAR_US = 10_000.0      # other-stream ops closer than this belong to one stretch of communication


def small_gaps(compute, others, steps):
    """The compute stream's kernel-to-kernel gaps under SMALL_GAP_US, by what the other
    streams were doing at the gap: running an op, between ops of one stretch of communication
    (waiting in the stream for an event or a peer), or nothing at all."""
    others = sorted(others, key=lambda e: e["ts"])
    spans = [(e["ts"], e["ts"] + e["dur"], "beside an op") for e in others]
    spans += [(a["ts"] + a["dur"], b["ts"], "between ops") for a, b in zip(others, others[1:])
              if 0 < b["ts"] - (a["ts"] + a["dur"]) < NEAR_US]
    spans.sort()
    starts = [s for s, _, _ in spans]
    groups = {}
    for prev, cur in zip(compute, compute[1:]):
        gap = cur["ts"] - (prev["ts"] + prev["dur"])
        if not 0 < gap < SMALL_GAP_US:
            continue
        t = prev["ts"] + prev["dur"] + gap / 2
        i = bisect.bisect_right(starts, t) - 1
        where = "no other stream"
        while i >= 0 and spans[i][0] > t - NEAR_US - SMALL_GAP_US:   # the spans that may hold t
            if spans[i][0] <= t <= spans[i][1]:
                where = spans[i][2]
                break
            i -= 1
        n, total = groups.get(where, (0, 0.0))
        groups[where] = (n + 1, total + gap)
    parts = [f"{where}: {n / steps:.0f}/step, mean {total / n:.2f} us ({total / steps / 1e3:.2f} ms)"
             for where, (n, total) in sorted(groups.items())]
    return "  small gaps (< 50 us) by the other streams' state: " + "; ".join(parts)


def slower_kernels(compute, base, steps, base_steps, top=10):
    def per_name(evs, n):
        d = {}
        for e in evs:
            d[e["name"]] = d.get(e["name"], 0.0) + e["dur"] / n
        return d
    mine, theirs = per_name(compute, steps), per_name(base, base_steps)
    diff = sorted(((mine[k] - theirs.get(k, 0.0), k) for k in mine), reverse=True)
    total = sum(mine.values()) - sum(theirs.values())
    lines = [f"  kernels slower than the base, per step (compute busy {total / 1e3:+.2f} ms in all):"]
    for d, k in diff[:top]:
        lines.append(f"    {d / 1e3:+7.3f} ms  ({mine[k] / 1e3:.3f} vs {theirs.get(k, 0.0) / 1e3:.3f})  {k[:70]}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory")
    p.add_argument("--base", default="", help="compare each trace with this implementation's")
    p.add_argument("--top", type=int, default=8)
    args = p.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.directory, "trace-*-r*.json.gz")))
    if not paths:
        raise SystemExit(f"no trace-*-r*.json.gz in {args.directory}")
    results = {}
    for path in paths:
        text, compute, steps = analyse(path, args.top)
        results[os.path.basename(path)] = (compute, steps)
        print(text)
    if args.base:
        for name, (compute, steps) in results.items():
            impl, rank = re.match(r"trace-(.+)-r(\d+)\.json\.gz", name).groups()
            base = results.get(f"trace-{args.base}-r{rank}.json.gz")
            if base is not None and impl != args.base:
                print(f"== {name} against {args.base}")
                print(slower_kernels(compute, base[0], steps, base[1], args.top))


if __name__ == "__main__":
    main()
