"""The CUDA kernels (csrc/cuda_*.cu) against CPU oracles: torch on the host and numpy.

Skipped with a reason where there is no GPU or the CUDA library was not built; run on the GPU
machine with `bash bench/gpu_suite.sh` (see bench/RESULTS.md).
"""
import time

import numpy as np
import pytest

from mpitrain import kernels
from mpitrain.kernels import compiled, locations, reference
from mpitrain.kernels.reduce import _host_multi_reduce, storage_view

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.skipif(locations.find_library("libmpitrain_cuda.so") is None,
                       reason="CUDA kernels not built (no nvcc when make install ran)"),
]

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
          "uint8": torch.uint8}
OPS = ["sum", "max", "min", "prod"]


def random_tensor(gen, dtype, n):
    if dtype in ("int64", "int32", "uint8"):
        return torch.randint(0, 200, (n,), generator=gen).to(DTYPES[dtype])
    t = torch.randn(n, generator=gen) * 8
    if n > 10:
        t[3] = float("nan")
    return t.to(DTYPES[dtype])


def same(a, b):
    """Equal values, NaN equal to NaN (bfloat16 NaN bit patterns may differ)."""
    if a.dtype.is_floating_point:
        return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(
            a.float().nan_to_num(0), b.float().nan_to_num(0))
    return torch.equal(a, b)


def test_the_cuda_library_loads():
    assert compiled.cuda_lib() is not None


@pytest.mark.parametrize("shift", [0, 1])
@pytest.mark.parametrize("n", [0, 1, 7, 1023, 1_000_003])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_reduce_on_gpu_equals_host_oracle(dtype, op, n, shift):
    gen = torch.Generator().manual_seed(n + shift)
    a = random_tensor(gen, dtype, n + shift)
    b = random_tensor(gen, dtype, n)
    ga, gb = a.cuda()[shift:], b.cuda()
    kernels.reduce_into(ga, gb, op)
    host = a[shift:].clone()
    reference.reduce_(storage_view(host, dtype), storage_view(b, dtype), dtype, op)   # numpy oracle
    torch.cuda.synchronize()
    assert same(ga.cpu(), host), (dtype, op, n, shift)


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int32"])
def test_multi_source_reduce_rounds_once(k, dtype):
    gen = torch.Generator().manual_seed(k)
    srcs = [random_tensor(gen, dtype, 4099) for _ in range(k)]
    dst = torch.empty_like(srcs[0]).cuda()
    kernels.multi_reduce(dst, [s.cuda() for s in srcs], "sum")
    host = torch.empty_like(srcs[0])
    _host_multi_reduce(host, srcs, dtype, "sum")
    torch.cuda.synchronize()
    assert same(dst.cpu(), host)


@pytest.mark.parametrize("misaligned", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("wire", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pack_unpack_on_gpu_equal_host(dtype, wire, accumulate, misaligned):
    gen = torch.Generator().manual_seed(11)
    sizes = [0, 1, 3, 1000, 8191, 8193, 1_000_001] + torch.randint(1, 5000, (300,), generator=gen).tolist()
    start = 2 if misaligned else 0
    host = [(torch.randn(n + start, generator=gen)[start:]).to(DTYPES[dtype]) for n in sizes]
    dev = [torch.randn(n + start, device="cuda")[start:].to(DTYPES[dtype]) for n in sizes]
    for d, h in zip(dev, host):
        d.copy_(h)
    layout = kernels.BucketLayout.of(host, wire)
    hb = torch.zeros(layout.total, dtype=DTYPES[wire])
    db = hb.cuda()
    kernels.pack(host, hb, layout.offsets, scale=0.25)
    kernels.pack(dev, db, layout.offsets, scale=0.25)
    torch.cuda.synchronize()
    assert torch.equal(db.cpu(), hb)
    kernels.unpack(hb, host, layout.offsets, scale=3.0, accumulate=accumulate)
    kernels.unpack(db, dev, layout.offsets, scale=3.0, accumulate=accumulate)
    torch.cuda.synchronize()
    assert all(torch.equal(d.cpu(), h) for d, h in zip(dev, host))


def test_pack_runs_on_the_callers_stream():
    src = [torch.randn(1 << 20, device="cuda") for _ in range(4)]
    layout = kernels.BucketLayout.of(src, "bfloat16")
    bucket = torch.zeros(layout.total, dtype=torch.bfloat16, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        kernels.pack(src, bucket, layout.offsets, scale=0.5)       # default: current = side
    side.synchronize()
    want = torch.cat([(t * 0.5).to(torch.bfloat16) for t in src])
    got = torch.cat([bucket[o: o + t.numel()] for t, o in zip(src, layout.offsets)])
    assert torch.equal(got, want)


@pytest.mark.parametrize("which", ["pack", "multi_reduce"])
def test_the_torch_fallback_runs_on_the_stream_asked_for(monkeypatch, which):
    """Without the library, torch does the arithmetic, and on the stream the caller named: an
    event recorded there must cover it (the data-parallel engine packs on a side stream)."""
    monkeypatch.setitem(compiled._loaded, "libmpitrain_cuda.so", None)      # as if not built
    monkeypatch.setitem(compiled._loaded, "cuda-usable", None)
    assert compiled.cuda_lib() is None
    src = [torch.randn(1 << 20, device="cuda") for _ in range(2)]
    out = torch.zeros(2 << 20, device="cuda")
    early = torch.empty_like(out)          # made now: an allocation later could wait for the GPU
    side = torch.cuda.Stream()

    def call():
        if which == "pack":
            kernels.pack(src, out, [0, 1 << 20], stream=side)
            return torch.cat(src)
        kernels.multi_reduce(out[: 1 << 20], src, stream=side)
        return torch.cat([src[0] + src[1], torch.zeros(1 << 20, device="cuda")])
    want = call()                        # once unobserved: the allocator keeps its temporaries
    out.zero_()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)                  # the side stream is busy for a while
    start = time.perf_counter()
    call()
    blocked = time.perf_counter() - start
    early.copy_(out)                                    # on the current stream: not behind it
    torch.cuda.synchronize()
    assert blocked < 0.05, f"the call held the host {blocked * 1e3:.0f} ms (it waited for the GPU)"
    assert not early.any(), "the fallback ran on the current stream, not the one asked for"
    assert torch.equal(out, want)


def test_cupy_arrays_work_too():
    cupy = pytest.importorskip("cupy")
    a = cupy.arange(1001, dtype=cupy.float32)
    b = cupy.ones(1001, dtype=cupy.float32)
    kernels.reduce_into(a, b, "sum")
    cupy.cuda.get_current_stream().synchronize()
    assert np.array_equal(cupy.asnumpy(a), np.arange(1001, dtype=np.float32) + 1)
    bucket = cupy.zeros(2048, dtype=cupy.float16)
    kernels.pack([a, b], bucket, [0, 1008], scale=0.5)
    cupy.cuda.get_current_stream().synchronize()
    assert np.array_equal(cupy.asnumpy(bucket[:1001]),
                          ((np.arange(1001, dtype=np.float32) + 1) * np.float32(0.5)).astype(np.float16))


def test_wrong_device_is_refused_before_launch():
    bucket = torch.zeros(16, device="cuda")
    with pytest.raises(ValueError, match=r"tensor 0 is on the host, the bucket on cuda:0"):
        kernels.PackPlan([torch.ones(4)], bucket)
    with pytest.raises(ValueError, match=r"source 1 is on the host, dst on cuda:0"):
        kernels.reduce_into(bucket, torch.zeros(16))
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match=r"tensor 0 is on cuda:1, the bucket on cuda:0"):
            kernels.PackPlan([torch.ones(4, device="cuda:1")], bucket)


def test_cuda_errors_name_the_file_and_line():
    lib = compiled.cuda_lib()
    import ctypes
    ptrs = (ctypes.c_void_p * 9)()
    with pytest.raises(kernels.KernelError, match=r"cuda_reduce\.cu:\d+: source count must be 1\.\.8, got 9"):
        compiled.check(lib, lib.mt_cuda_multi_reduce(1, ptrs, 9, 4, 1, 0, 0, 0))
