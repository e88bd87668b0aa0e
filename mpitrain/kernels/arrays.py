"""What a kernel needs to know about an array: address, element count, dtype name, device.

Works on numpy arrays, torch tensors (CPU or CUDA) and CuPy arrays without importing torch or
CuPy unless such an array shows up. `device` is -1 for host memory, else the CUDA device index.
bfloat16 numpy arrays are ml_dtypes' bfloat16 (or uint16 bit patterns with dtype="bfloat16").
"""
import contextlib
from dataclasses import dataclass

import numpy as np

TORCH_DTYPE_NAMES = {"torch.float64": "float64", "torch.float32": "float32",
                     "torch.float16": "float16", "torch.bfloat16": "bfloat16",
                     "torch.int64": "int64", "torch.int32": "int32", "torch.uint8": "uint8"}


@dataclass(frozen=True)
class ArrayInfo:
    ptr: int          # address of the first element
    count: int        # elements
    dtype: str        # float32, bfloat16, ...
    itemsize: int     # bytes per element
    device: int       # -1: host memory; else the CUDA device index
    kind: str         # numpy, torch, cupy


def describe(x, dtype=None):
    """ArrayInfo of a contiguous numpy / torch / CuPy array; `dtype` overrides the name (to read
    uint16 bit patterns as bfloat16). Raises TypeError/ValueError naming the problem."""
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        if not x.is_contiguous():
            raise ValueError(f"tensor of shape {tuple(x.shape)} is not contiguous")
        name = TORCH_DTYPE_NAMES.get(str(x.dtype))
        if name is None:
            raise TypeError(f"unsupported dtype {x.dtype}")
        device = x.device.index if x.device.type == "cuda" else -1
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"tensor on device {x.device} (only cpu and cuda are supported)")
        return ArrayInfo(x.data_ptr(), x.numel(), dtype or name, x.element_size(), device, "torch")
    if module == "cupy":
        if not x.flags.c_contiguous:
            raise ValueError(f"CuPy array of shape {x.shape} is not contiguous")
        name = dtype or _numpy_name(x.dtype)
        return ArrayInfo(x.data.ptr, x.size, name, x.itemsize, x.device.id, "cupy")
    if isinstance(x, np.ndarray):
        if not x.flags.c_contiguous:
            raise ValueError(f"array of shape {x.shape} is not contiguous")
        name = dtype or _numpy_name(x.dtype)
        return ArrayInfo(x.__array_interface__["data"][0], x.size, name, x.itemsize, -1, "numpy")
    raise TypeError(f"expected a numpy array, torch tensor or CuPy array, got {type(x).__name__}")


def _numpy_name(dtype):
    name = np.dtype(dtype).name
    if name not in ("float64", "float32", "float16", "bfloat16", "int64", "int32", "uint8"):
        raise TypeError(f"unsupported dtype {name}")
    return name


def current_stream(info, stream=None):
    """The CUDA stream handle to launch on: the caller's `stream` (an int, torch or CuPy stream),
    else the current stream of the array's library on its device."""
    if type(stream) is int:
        return stream
    if stream is not None:
        for attr in ("cuda_stream", "ptr"):
            if hasattr(stream, attr):
                return int(getattr(stream, attr))
        return int(stream)
    if info.kind == "torch":
        import torch
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)    # ~10x cheaper
        return raw(info.device) if raw else torch.cuda.current_stream(info.device).cuda_stream
    if info.kind == "cupy":
        import cupy
        return cupy.cuda.get_current_stream().ptr
    return 0


def on_stream(info, stream=None):
    """A context in which torch's or CuPy's own ops run on `stream` (what current_stream takes;
    None: the current stream, nothing to switch): the fallbacks' arithmetic must land on the
    stream the caller asked for, as the compiled kernels do, or events recorded there miss it."""
    if stream is None or info.device < 0:
        return contextlib.nullcontext()
    if info.kind == "torch":
        import torch
        if not isinstance(stream, torch.cuda.Stream):
            stream = torch.cuda.ExternalStream(current_stream(info, stream), device=info.device)
        return torch.cuda.stream(stream)
    if info.kind == "cupy":
        import cupy
        if not isinstance(stream, cupy.cuda.Stream):
            stream = cupy.cuda.ExternalStream(current_stream(info, stream), info.device)
        return stream
    return contextlib.nullcontext()
