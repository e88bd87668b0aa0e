"""Reduction kernels: dst = dst op src, dst = src_0 op ... op src_k, and avg's division.

Host arrays go to the C kernels (csrc/cpu_reduce.c) and CUDA arrays to the CUDA kernels
(csrc/cuda_reduce.cu); where a library is missing, numpy (reference.py) or torch stands in with
the same results. `reducer` is the hot path of the collectives: it binds dtype and op once and
returns f(dst, src) for flat host arrays in their storage dtype (bfloat16 as uint16).
"""
import numpy as np

from . import reference
from .arrays import current_stream, describe, on_stream
from .backend import announce
from .compiled import DTYPE_CODES, OP_CODES, KernelError, check, cpu_lib, cuda_lib

MAX_SOURCES = 8


# Below this many bytes numpy's own SIMD loops beat a ctypes call for float32/64 and integers:
# reading two addresses through __array_interface__ and calling C costs about 3 us, which the
# C loop wins back only on long arrays (measured on the 2-core CI machine, bench/RESULTS.md).
# 16-bit floats always go to C: numpy has no float16 SIMD and no bfloat16 at all.
COMPILED_MIN_BYTES = 512 * 1024


def reducer(dtype_name, op, min_bytes=COMPILED_MIN_BYTES):
    """f(dst, src): dst = dst op src over flat host arrays (storage dtype), compiled if built
    and the arrays are at least `min_bytes` long (16-bit floats: always)."""
    lib = cpu_lib()
    announce()
    small = reference.reducer(dtype_name, op)
    if lib is None:
        return small
    c_reduce, code, opcode = lib.mt_cpu_reduce, DTYPE_CODES[dtype_name], OP_CODES[op]
    min_count = 0 if dtype_name in ("float16", "bfloat16") else min_bytes // np.dtype(
        reference.STORAGE[dtype_name]).itemsize

    def reduce_compiled(dst, src):
        n = dst.shape[0]
        if src.shape[0] != n:
            raise KernelError(f"reduce of {n} elements with a source of {src.shape[0]}")
        if n < min_count:
            return small(dst, src)
        if c_reduce(dst.__array_interface__["data"][0], src.__array_interface__["data"][0], n,
                    code, opcode):
            check(lib, -1)
    return reduce_compiled


def device_reducer(dtype_name, op):
    """f(dst, src): dst = dst op src over flat torch CUDA tensors of one device, on the current
    stream: the CUDA reduce kernel when built, else torch's own ops (the same results)."""
    lib = cuda_lib()
    if lib is None:
        return lambda dst, src: _torch_multi_reduce(dst, [dst, src], op)
    import torch
    raw_stream = torch._C._cuda_getCurrentRawStream
    c_reduce, code, opcode = lib.mt_cuda_reduce, DTYPE_CODES[dtype_name], OP_CODES[op]

    def reduce_on_gpu(dst, src):
        n = dst.shape[0]
        if src.shape[0] != n:
            raise KernelError(f"reduce of {n} elements with a source of {src.shape[0]}")
        device = dst.device.index
        if c_reduce(dst.data_ptr(), src.data_ptr(), n, code, opcode, device, raw_stream(device)):
            check(lib, -1)
    return reduce_on_gpu


def reduce_(dst, src, dtype_name, op):
    """dst = dst op src for flat host arrays in storage dtype, compiled when built; returns dst."""
    reducer(dtype_name, op, min_bytes=0)(dst, src)
    return dst


def divide_(dst, dtype_name, divisor, min_bytes=COMPILED_MIN_BYTES):
    """dst = dst / divisor in place for a flat floating host array (op="avg"); returns dst."""
    lib = cpu_lib()
    if lib is None or dtype_name not in ("float16", "bfloat16") and dst.nbytes < min_bytes:
        return reference.divide_(dst, dtype_name, divisor)
    check(lib, lib.mt_cpu_divide(dst.__array_interface__["data"][0], dst.shape[0],
                                 DTYPE_CODES[dtype_name], float(divisor)))
    return dst


def multi_reduce(dst, srcs, op="sum", stream=None):
    """dst = srcs[0] op srcs[1] op ... for 1..8 sources, any array kind (numpy, torch, CuPy);
    16-bit floats accumulate in float32 and round once. dst may be one of the sources.
    On a GPU it runs on `stream` (default: the current stream of dst's library)."""
    if op not in OP_CODES:
        raise ValueError(f"op must be one of {', '.join(OP_CODES)}, got {op!r}")
    if not 1 <= len(srcs) <= MAX_SOURCES:
        raise ValueError(f"multi_reduce takes 1..{MAX_SOURCES} sources, got {len(srcs)}")
    d = describe(dst)
    infos = [describe(s) for s in srcs]
    for i, s in enumerate(infos):
        if s.count != d.count:
            raise ValueError(f"source {i} has {s.count} elements, dst has {d.count}")
        if s.dtype != d.dtype:
            raise TypeError(f"source {i} is {s.dtype}, dst is {d.dtype}")
        if s.device != d.device:
            raise ValueError(f"source {i} is on {_where(s.device)}, dst on {_where(d.device)}")
    if d.dtype not in DTYPE_CODES:
        raise TypeError(f"unsupported dtype {d.dtype}")
    if d.device >= 0:
        lib = cuda_lib()
        if lib is None:
            with on_stream(d, stream):
                return _torch_multi_reduce(dst, srcs, op)
        import ctypes
        ptrs = (ctypes.c_void_p * len(infos))(*[s.ptr for s in infos])
        check(lib, lib.mt_cuda_multi_reduce(d.ptr, ptrs, len(infos), d.count,
                                            DTYPE_CODES[d.dtype], OP_CODES[op], d.device,
                                            current_stream(d, stream)))
        return dst
    return _host_multi_reduce(dst, srcs, d.dtype, op)


def reduce_into(dst, src, op="sum", stream=None):
    """dst = dst op src for any array kind; returns dst."""
    return multi_reduce(dst, [dst, src], op, stream)


def _where(device):
    return "the host" if device < 0 else f"cuda:{device}"


def _host_multi_reduce(dst, srcs, dtype, op):
    """Host arrays. dst = dst op src (reduce_into) is the compiled reduce step; longer lists
    widen 16-bit floats to float32, combine, and round once (as the GPU does)."""
    out = storage_view(dst, dtype)
    arrays = [storage_view(s, dtype) for s in srcs]
    if len(arrays) == 2 and _same_start(out, arrays[0]):
        reduce_(out, arrays[1], dtype, op)
        return dst
    if dtype in ("float16", "bfloat16"):
        wide = [reference.bf16_to_f32(a) if dtype == "bfloat16" else a.astype(np.float32)
                for a in arrays]
        for w in wide[1:]:
            reference.reducer("float32", op)(wide[0], w)
        out[...] = reference.f32_to_bf16(wide[0]) if dtype == "bfloat16" else wide[0]
        return dst
    acc = arrays[0].copy()
    for a in arrays[1:]:
        reference.reducer(dtype, op)(acc, a)
    out[...] = acc
    return dst


def _same_start(a, b):
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def storage_view(x, dtype):
    """A flat numpy view of a host array in its storage dtype (bfloat16 as uint16 bits)."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch
        flat = x.reshape(-1)
        return flat.view(torch.int16).numpy().view(np.uint16) if flat.dtype == torch.bfloat16 else flat.numpy()
    flat = x.reshape(-1)
    return flat.view(np.uint16) if dtype == "bfloat16" else flat


def _torch_multi_reduce(dst, srcs, op):
    """Fallback on a GPU without the CUDA library: torch ops, accumulating 16-bit in float32."""
    import torch
    wide = dst.dtype in (torch.float16, torch.bfloat16)
    acc = srcs[0].float() if wide else srcs[0].clone()
    for s in srcs[1:]:
        s = s.float() if wide else s
        if op == "sum":
            acc.add_(s)
        elif op == "prod":
            acc.mul_(s)
        elif op == "max":
            acc = torch.maximum(acc, s)
        else:
            acc = torch.minimum(acc, s)
    dst.copy_(acc)
    return dst
