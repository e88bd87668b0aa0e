"""The compiled C kernels (csrc/cpu_*.c) against the numpy reference and torch.

Sizes 0, 1, odd and large (large enough for the OpenMP path), misaligned starts, every dtype
and op, tensor lists of 300+ tensors like ViT-L/16's gradients. The fallback paths (what runs
where nothing was compiled) are checked against the same oracles.
"""
import numpy as np
import pytest

from mpitrain import kernels
from mpitrain.kernels import compiled, reference
from mpitrain.kernels.pack import _fallback

torch = pytest.importorskip("torch")
needs_c = pytest.mark.skipif(compiled.cpu_lib() is None,
                             reason="C kernels not built (python -m mpitrain.kernels.build)")

DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "int32", "uint8"]
OPS = ["sum", "max", "min", "prod"]
SIZES = [0, 1, 7, 1023, 200_003]
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def random_storage(rng, dtype, n):
    """n random values in the storage dtype (bfloat16 as its uint16 bits), with NaN for floats."""
    if dtype in ("int64", "int32", "uint8"):
        return rng.integers(0, 200, n).astype(dtype)
    values = (rng.standard_normal(n) * 8).astype(np.float32)
    if n > 10:
        values[3] = np.nan
    if dtype == "bfloat16":
        return reference.f32_to_bf16(values)
    return values.astype(dtype)


@needs_c
@pytest.mark.parametrize("shift", [0, 1, 3])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_reduce_equals_reference(dtype, op, n, shift):
    rng = np.random.default_rng(n + shift)
    a = random_storage(rng, dtype, n + shift)[shift:]     # starts off any 16-byte boundary
    b = random_storage(rng, dtype, n)
    expected = reference.reduce_(a.copy(), b, dtype, op)
    got = kernels.reduce_(a.copy(), b, dtype, op)
    assert np.array_equal(got, expected, equal_nan=dtype not in ("int64", "int32", "uint8", "bfloat16"))


@needs_c
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_compiled_divide_equals_reference(dtype, n):
    a = random_storage(np.random.default_rng(n), dtype, n)
    expected = reference.divide_(a.copy(), dtype, 3)
    got = kernels.divide_(a.copy(), dtype, 3, min_bytes=0)
    assert np.array_equal(got, expected, equal_nan=dtype != "bfloat16")


@needs_c
def test_reducer_is_exact_on_both_sides_of_the_compiled_threshold():
    rng = np.random.default_rng(5)
    f = kernels.reducer("float32", "sum")
    for n in (10, kernels.reduce.COMPILED_MIN_BYTES // 4 + 1):
        a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        x = a.copy()
        f(x, b)
        assert np.array_equal(x, a + b)


def test_kernel_errors_name_the_c_file_and_line():
    lib = compiled.cpu_lib()
    if lib is None:
        pytest.skip("C kernels not built")
    a = np.zeros(4, np.float32)
    with pytest.raises(kernels.KernelError, match=r"cpu_reduce\.c:\d+: unknown dtype code 42"):
        compiled.check(lib, lib.mt_cpu_reduce(a.ctypes.data, a.ctypes.data, 4, 42, 0))


def tensor_list(rng, count, dtype, misaligned=False):
    """`count` tensors of mixed sizes (0, 1, odd, large); with misaligned, views that start
    2 elements into their storage (off any 16-byte boundary)."""
    sizes = [0, 1, 3, 1000, 4097, 300_001] + list(rng.integers(1, 5000, count - 6))
    out = []
    for n in sizes:
        base = torch.from_numpy(rng.standard_normal(n + 2).astype(np.float32)).to(TORCH_DTYPES[dtype])
        out.append(base[2:] if misaligned else base[:n].clone())
    return out


def oracle_pack(tensors, layout, wire, scale):
    bucket = torch.zeros(layout.total, dtype=TORCH_DTYPES[wire])
    for t, o in zip(tensors, layout.offsets):
        bucket[o: o + t.numel()] = (t.float() * scale).to(TORCH_DTYPES[wire])
    return bucket


@pytest.mark.parametrize("backend", ["compiled", "fallback"])
@pytest.mark.parametrize("misaligned", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("wire", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pack_unpack_match_torch(dtype, wire, scale, misaligned, backend):
    if backend == "compiled" and compiled.cpu_lib() is None:
        pytest.skip("C kernels not built")
    rng = np.random.default_rng(7)
    tensors = tensor_list(rng, 310, dtype, misaligned)
    layout = kernels.BucketLayout.of(tensors, wire)
    bucket = torch.full((layout.total,), 7.0, dtype=TORCH_DTYPES[wire])
    plan = kernels.PackPlan(tensors, bucket, layout.offsets)
    run = (lambda d, **kw: getattr(plan, d)(**kw)) if backend == "compiled" else (
        lambda d, **kw: _fallback(plan, d, kw.get("scale", 1.0), kw.get("accumulate", False)))
    run("pack", scale=scale)
    expected = oracle_pack(tensors, layout, wire, scale)
    for t, o in zip(tensors, layout.offsets):
        assert torch.equal(bucket[o: o + t.numel()], expected[o: o + t.numel()])

    outs = [torch.zeros_like(t) for t in tensors]
    plan = kernels.PackPlan(outs, bucket, layout.offsets)
    run("unpack", scale=2.0)
    for out, o in zip(outs, layout.offsets):
        assert torch.equal(out, (bucket[o: o + out.numel()].float() * 2.0).to(out.dtype))
    before = [out.clone() for out in outs]
    run("unpack", scale=0.5, accumulate=True)
    for out, prev, o in zip(outs, before, layout.offsets):
        want = (prev.float() + bucket[o: o + out.numel()].float() * 0.5).to(out.dtype)
        assert torch.equal(out, want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32"])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_host_multi_reduce_and_reduce_into_match_reference(dtype, k):
    rng = np.random.default_rng(k)
    srcs = [torch.from_numpy(rng.standard_normal(1001).astype(np.float32) * 9).to(
        torch.int32 if dtype == "int32" else TORCH_DTYPES[dtype]) for _ in range(k)]
    expected = srcs[0].float().clone() if dtype != "int32" else srcs[0].clone()   # float32 accumulator
    for s in srcs[1:]:
        expected += s if dtype == "int32" else s.float()
    dst = torch.empty_like(srcs[0])
    kernels.multi_reduce(dst, srcs, "sum")
    assert torch.equal(dst, expected.to(dst.dtype))                  # rounded once at the end
    a, b = srcs[0].clone(), srcs[-1]
    kernels.reduce_into(a, b, "max")
    assert torch.equal(a, torch.maximum(srcs[0], b))


def test_pack_numpy_arrays_match_torch():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (5, 1, 4099)]
    layout = kernels.BucketLayout.of(arrays, "float16")
    bucket = np.zeros(layout.total, np.float16)
    kernels.pack(arrays, bucket, layout.offsets, scale=0.5)
    for a, o in zip(arrays, layout.offsets):
        assert np.array_equal(bucket[o: o + a.size], (a * np.float32(0.5)).astype(np.float16))


def test_layout_slots_are_16_byte_aligned_and_disjoint():
    layout = kernels.BucketLayout([3, 0, 5, 8], "bfloat16")
    assert all(o * 2 % 16 == 0 for o in layout.offsets)
    ends = [o + c for o, c in zip(layout.offsets, layout.counts)]
    assert all(e <= nxt for e, nxt in zip(ends, layout.offsets[1:]))
    assert layout.total >= ends[-1]


@pytest.mark.parametrize("case, match", [
    ("overlap", r"slots 0 .* and 1 .* overlap"),
    ("misaligned", r"slot 1 starts at element 2 \(byte 8\), not on a 16-byte boundary"),
    ("too_small", r"slot 1 ends at element 12, past the bucket's 10 elements"),
    ("dtype", r"tensor dtype must be one of float32, bfloat16, float16, got float64"),
    ("mixed", r"tensors of one bucket must share a dtype"),
    ("bucket_dtype", r"bucket dtype must be one of .*got int32"),
    ("count", r"3 offsets for 2 tensors"),
])
def test_bad_pack_arguments_are_refused_before_any_launch(case, match):
    a, b = torch.ones(4), torch.ones(4)
    bucket = torch.zeros(16)
    tensors, offsets = [a, b], [0, 4]
    if case == "overlap":
        offsets = [0, 0]
    elif case == "misaligned":
        offsets = [0, 2]
    elif case == "too_small":
        bucket, offsets = torch.zeros(10), [0, 8]
    elif case == "dtype":
        tensors = [a.double(), b.double()]
    elif case == "mixed":
        tensors = [a, b.half()]
    elif case == "bucket_dtype":
        bucket = torch.zeros(16, dtype=torch.int32)
    elif case == "count":
        offsets = [0, 4, 8]
    with pytest.raises((ValueError, TypeError), match=match):
        kernels.PackPlan(tensors, bucket, offsets)
    assert torch.equal(bucket, torch.zeros_like(bucket))


def test_the_small_all_reduce_library_is_built_against_mpi4pys_mpi():
    """make install builds csrc/mpi_small.c with the mpicc of mpi4py's MPI; the loader accepts it
    only when the library versions agree, so a None here means the slow path in production."""
    from mpitrain.kernels import build, locations
    from mpitrain.kernels.compiled import mpi_lib
    if build.find_mpicc() is None:
        pytest.skip("no mpicc on this machine: the Python recursive doubling is used")
    assert locations.find_library(build.MPI_LIB), "run python -m mpitrain.kernels.build"
    assert mpi_lib() is not None
