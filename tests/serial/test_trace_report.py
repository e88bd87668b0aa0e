"""The trace dump of bench train --profile-dir and its report, on a trace built here: a compute
stream whose gaps are made host-bound or waiting on purpose, an optimizer at the end of each
step, and a communication stream that runs past backward."""
from mpitrain.bench import gpu_profile, trace_report


def kernel(ts, dur, name, stream, corr):
    return {"ph": "X", "cat": "kernel", "ts": ts, "dur": dur, "name": name,
            "args": {"stream": stream, "correlation": corr}}


def launch(ts, corr):
    return {"ph": "X", "cat": "cuda_runtime", "ts": ts, "dur": 2.0, "name": "cudaLaunchKernel",
            "tid": 11, "args": {"correlation": corr}}


def build_trace(steps):
    """Each step (1000 us): gemm 0-400; a gap of 50 the host caused (the next launch ends at
    448 + 2); bwd 450-700; a gap of 100 waiting for the comm stream (launched early); adam
    800-900. The comm stream runs 650-790."""
    events, corr = [], 0
    for s in range(steps):
        t = 1000.0 * s
        for ts, dur, name, launched in ((0, 400, "gemm", -500), (450, 250, "bwd", 448),
                                        (800, 100, "multi_tensor_apply_kernel", 500)):
            corr += 1
            events.append(kernel(t + ts, dur, name, 7, corr))
            events.append(launch(t + launched, corr))
        corr += 1
        events.append(kernel(t + 650, 140, "reduce", 20, corr))
        events.append(launch(t + 600, corr))
    events.append({"ph": "i", "name": "marker", "ts": 0})       # not a complete event: dropped
    return events


def test_dump_round_trip(tmp_path):
    events = build_trace(2)
    path = tmp_path / "trace-x-r0.json.gz"
    gpu_profile.write_dump(events, path, 2)
    steps, back = gpu_profile.read_dump(path)
    assert steps == 2
    complete = [e for e in events if e["ph"] == "X"]
    assert len(back) == len(complete)
    for a, b in zip(complete, back):
        assert (a["ts"], a["dur"], a["name"], a["cat"]) == (b["ts"], b["dur"], b["name"], b["cat"])
        assert b["correlation"] == a["args"]["correlation"]
        assert b["tid"] == (a["args"]["stream"] if a["cat"] == "kernel" else a["tid"])


def test_report_splits_the_gaps(tmp_path):
    steps = 3
    events = build_trace(steps)
    gpu_profile.write_dump(events, tmp_path / "trace-x-r0.json.gz", steps)
    text, compute, n = trace_report.analyse(str(tmp_path / "trace-x-r0.json.gz"))
    # per step: busy 750; host-bound 50 (400 -> the launch at 450); waiting 100 (700 -> 800);
    # between steps 100 (900 -> 1000, launched long before): waiting as well
    total_wait = 100 * steps + 100 * (steps - 1)
    assert f"busy {750 / 1e3:.2f}" in text
    assert f"host-bound {50 / 1e3:.2f}" in text
    assert f"waiting {total_wait / steps / 1e3:.2f}" in text
    # the tail: backward ends at 700, the optimizer starts 0.100 ms later; the comm stream's
    # last op ends 90 us after backward
    assert "optimizer starts 0.100 ms later and runs 0.100 ms" in text
    assert "its last ends 0.090 ms after it" in text
    assert n == steps and len(compute) == 3 * steps


def test_slower_kernels(tmp_path):
    a = build_trace(2)
    b = [dict(e, dur=e["dur"] * 2) if e.get("name") == "gemm" else e for e in a]
    for name, evs in (("base", a), ("slow", b)):
        gpu_profile.write_dump(evs, tmp_path / f"trace-{name}-r0.json.gz", 2)
    _, base, _ = trace_report.analyse(str(tmp_path / "trace-base-r0.json.gz"))
    _, slow, _ = trace_report.analyse(str(tmp_path / "trace-slow-r0.json.gz"))
    text = trace_report.slower_kernels(slow, base, 2, 2)
    assert "compute busy +0.40 ms" in text
    assert text.splitlines()[1].split()[0] == "+0.400"


def test_small_gaps_by_what_the_other_streams_do():
    """Compute kernels 10 us long with 2 us gaps from 0 to 60 ms; the other stream runs ops at
    1000-1100 and 1500-1600 us (500 us apart: one stretch) and at 40 ms (alone)."""
    compute = [{"ts": 12.0 * i, "dur": 10.0, "name": "k"} for i in range(5000)]
    others = [{"ts": a, "dur": 100.0, "name": "c"} for a in (1000.0, 1500.0, 40_000.0)]
    text = trace_report.small_gaps(compute, others, steps=1)
    gaps_at = [12.0 * i + 11.0 for i in range(4999)]            # each gap's midpoint
    beside = sum(1 for t in gaps_at if any(a <= t <= a + 100 for a in (1000.0, 1500.0, 40_000.0)))
    between = sum(1 for t in gaps_at if 1100 < t < 1500)
    rest = len(gaps_at) - beside - between
    assert f"beside an op: {beside}/step, mean 2.00 us" in text
    assert f"between ops: {between}/step, mean 2.00 us" in text
    assert f"no other stream: {rest}/step" in text
