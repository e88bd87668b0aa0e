"""Where a GPU step's time goes, from a torch.profiler trace: for each CUDA stream, how long it
was busy per step and its heaviest kernels; the span is first kernel start to last kernel end.
A compute stream busy for less than the span is waiting (for the host, or for another stream).

    text = profile_steps(step, steps=3)          # runs step() `steps` times under the profiler
    profile_steps(step, dump="trace.json.gz")    # and keeps the events (mpitrain/bench/trace_report.py)

A dump holds every complete event of the trace in a compact form (a chrome trace of a ViT-L
step is tens of MB): {"names": [...], "cats": [...], "events": [[ts, dur, cat, name, tid,
correlation], ...]}, times in microseconds; tid is the CUDA stream for GPU events, the thread
for host events; correlation ties a kernel to the runtime call that launched it.
"""
import gzip
import json
import os
import tempfile

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def profile_steps(step, steps=3, top=6, dump=None):
    """Run step() `steps` times under torch.profiler (CPU and CUDA activity); return the
    per-stream summary as text. dump: also write the events there (gzip JSON, see above)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    if dump:
        write_dump(events, dump, steps)
    return summarize(events, steps, top)


def write_dump(events, path, steps):
    names, cats, rows = {}, {}, []
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        args = e.get("args", {})
        tid = args.get("stream", e.get("tid")) if e.get("cat") in GPU_CATS else e.get("tid")
        rows.append([e["ts"], e["dur"], cats.setdefault(e.get("cat", ""), len(cats)),
                     names.setdefault(e.get("name", ""), len(names)), tid,
                     args.get("correlation")])
    with gzip.open(path, "wt") as f:
        json.dump({"steps": steps, "names": list(names), "cats": list(cats), "events": rows}, f)


def read_dump(path):
    """A dump back as a list of dicts (ts, dur, cat, name, tid, correlation)."""
    with gzip.open(path, "rt") as f:
        d = json.load(f)
    names, cats = d["names"], d["cats"]
    return d["steps"], [{"ts": ts, "dur": dur, "cat": cats[c], "name": names[n], "tid": tid,
                         "correlation": corr} for ts, dur, c, n, tid, corr in d["events"]]


def busy_time(intervals):
    """Length of the union of (start, end) intervals."""
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def summarize(events, steps, top=6):
    """Chrome-trace events -> text: span per step, then per stream (busiest first) its busy
    time per step and its `top` kernels by time."""
    gpu = [e for e in events if e.get("ph") == "X" and "dur" in e and e.get("cat") in GPU_CATS]
    if not gpu:
        return "  (no GPU activity recorded)"
    streams = {}
    for e in gpu:
        stream = e.get("args", {}).get("stream", e.get("tid"))
        streams.setdefault(stream, []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    start = min(s for ivs in streams.values() for s, _, _ in ivs)
    end = max(t for ivs in streams.values() for _, t, _ in ivs)
    lines = [f"  GPU span {(end - start) / steps / 1e3:.2f} ms/step"]
    ranked = sorted(streams.items(), key=lambda kv: -busy_time([(s, t) for s, t, _ in kv[1]]))
    for stream, ivs in ranked:
        busy = busy_time([(s, t) for s, t, _ in ivs])
        lines.append(f"  stream {stream}: busy {busy / steps / 1e3:.2f} ms/step, "
                     f"{len(ivs) / steps:.0f} kernels/step")
        by_name = {}
        for s, t, name in ivs:
            by_name[name] = by_name.get(name, 0.0) + (t - s)
        for name, d in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"      {d / steps / 1e3:7.3f} ms  {name[:90]}")
    return "\n".join(lines)
