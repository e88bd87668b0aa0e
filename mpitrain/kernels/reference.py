"""numpy reference kernels: the reduction step of every collective, written plainly.

They are the fallback when the compiled extension (csrc/) is absent and the oracle its tests
compare against. Arrays arrive in their storage dtype (dtypes.py): bfloat16 as uint16 bit
patterns, widened to float32 to compute and rounded back to nearest-even.
"""
import numpy as np

STORAGE = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
           "bfloat16": np.uint16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}
NUMPY_UFUNCS = {"sum": np.add, "max": np.maximum, "min": np.minimum, "prod": np.multiply}


def bf16_to_f32(bits):
    """bfloat16 bit patterns (uint16) -> float32 values (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values):
    """float32 values -> bfloat16 bit patterns, rounded to nearest, ties to even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)   # quiet NaN, sign kept
    return rounded


def reducer(dtype_name, op):
    """reduce_ with the dtype and op bound once: f(dst, src) does dst = dst op src."""
    ufunc = NUMPY_UFUNCS[op]
    if dtype_name == "bfloat16":
        def reduce_bf16(dst, src):
            dst[...] = f32_to_bf16(ufunc(bf16_to_f32(dst), bf16_to_f32(src)))
        return reduce_bf16

    def reduce_native(dst, src):
        ufunc(dst, src, out=dst)   # float16 computes each element in float32 and rounds once
    return reduce_native


def reduce_(dst, src, dtype_name, op):
    """dst = dst op src, elementwise, in place. op: sum, max, min, prod."""
    reducer(dtype_name, op)(dst, src)
    return dst


def divide_(dst, dtype_name, divisor):
    """dst = dst / divisor in place (the second half of op="avg"); floating dtypes only."""
    if dtype_name == "bfloat16":
        dst[...] = f32_to_bf16(bf16_to_f32(dst) / np.float32(divisor))
    else:
        np.divide(dst, divisor, out=dst)
    return dst
