"""The numpy reference kernels against torch (the bfloat16 oracle) and float64 arithmetic."""
import numpy as np
import pytest

from mpitrain.kernels.reference import bf16_to_f32, divide_, f32_to_bf16, reduce_

torch = pytest.importorskip("torch")


def torch_bf16_bits(values):
    return torch.from_numpy(np.asarray(values, np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_bf16_round_trip_matches_torch():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.standard_normal(10000).astype(np.float32) * 1e3,
                           np.array([0, -0.0, 1, -1, 65504, 3.4e38, -3.4e38, 1e-40, np.inf, -np.inf],
                                    np.float32)])
    assert np.array_equal(f32_to_bf16(vals), torch_bf16_bits(vals))
    back = torch.from_numpy(torch_bf16_bits(vals).view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(bf16_to_f32(torch_bf16_bits(vals)), back)
    assert np.isnan(bf16_to_f32(f32_to_bf16(np.array([np.nan], np.float32))))[0]


@pytest.mark.parametrize("op", ["sum", "max", "min", "prod"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int64", "int32", "uint8"])
def test_reduce_matches_numpy(op, dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 50, 1001).astype(dtype)
    b = rng.integers(0, 50, 1001).astype(dtype)
    ref = {"sum": a + b, "max": np.maximum(a, b), "min": np.minimum(a, b), "prod": a * b}[op]
    assert np.array_equal(reduce_(a.copy(), b, dtype, op), ref)


@pytest.mark.parametrize("op", ["sum", "max", "min", "prod"])
def test_reduce_bfloat16_matches_torch(op):
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.standard_normal(999).astype(np.float32)).to(torch.bfloat16)
    b = torch.from_numpy(rng.standard_normal(999).astype(np.float32)).to(torch.bfloat16)
    ref = {"sum": a.float() + b.float(), "max": torch.maximum(a, b).float(),
           "min": torch.minimum(a, b).float(), "prod": a.float() * b.float()}[op].to(torch.bfloat16)
    bits = lambda t: t.view(torch.int16).numpy().view(np.uint16).copy()
    assert np.array_equal(reduce_(bits(a), bits(b), "bfloat16", op), bits(ref))


def test_divide():
    x = np.array([3.0, 6.0, 1.0], np.float32)
    assert np.array_equal(divide_(x, "float32", 3), np.array([1.0, 2.0, 1 / 3], np.float32))
    bits = torch_bf16_bits([3.0, 6.0, 1.0])
    expected = torch_bf16_bits(np.array([3.0, 6.0, 1.0], np.float32) / np.float32(3))
    assert np.array_equal(divide_(bits, "bfloat16", 3), expected)
