"""One view over the buffers users hand to the collectives.

A buffer is a numpy array or a torch CPU tensor, contiguous. `as_buffer` turns it into a
`HostBuffer`: a flat numpy array over the *same memory* (no copy), in the storage dtype of
`dtypes.py`, plus the element type's name. The algorithms only slice these arrays, so they never
see where the memory came from.

torch is never imported here for host memory: a torch tensor is recognised by its class's
module, and only its own methods are called. GPU memory — torch CUDA tensors and CuPy arrays
(the latter seen through torch.from_dlpack, no copy) — becomes a `DeviceBuffer`: a flat torch
CUDA tensor over the same memory. The algorithms slice it exactly as they slice numpy arrays;
the device transports (transport/staged.py) move it.
"""
import numpy as np

from .dtypes import DTYPES
from .errors import CollectiveError


class HostBuffer:
    """Flat host memory: `array` is a 1-D numpy view in the storage dtype; `dtype` a DType."""

    __slots__ = ("array", "dtype")
    device = -1                      # host memory

    def __init__(self, array, dtype):
        self.array = array
        self.dtype = dtype

    @property
    def count(self):
        return self.array.shape[0]

    @property
    def nbytes(self):
        return self.array.nbytes


class DeviceBuffer(HostBuffer):
    """Flat GPU memory: `array` is a 1-D torch CUDA tensor over the user's memory (bfloat16 kept
    as torch.bfloat16); `device` the CUDA device index."""

    __slots__ = ("device",)

    def __init__(self, array, dtype, device):
        super().__init__(array, dtype)
        self.device = device

    @property
    def nbytes(self):
        return self.array.numel() * self.array.element_size()


_BY_NUMPY_DTYPE = {d.storage: d for d in DTYPES.values() if d.name != "bfloat16"}


def _from_numpy(arr, what, rank):
    dtype = _BY_NUMPY_DTYPE.get(arr.dtype)
    if dtype is not None and arr.flags.c_contiguous and (arr.flags.writeable or what == "sendbuf"):
        return HostBuffer(arr.reshape(-1), dtype)          # the common case, checked cheaply
    name = arr.dtype.name
    dtype = DTYPES.get(name)
    if dtype is None or (name != "bfloat16" and arr.dtype != dtype.storage):
        raise CollectiveError(rank, f"{what} has dtype {arr.dtype}, which the collectives do not "
                                    f"support; supported: {', '.join(DTYPES)}")
    if not arr.flags.c_contiguous:
        raise CollectiveError(rank, f"{what} is not contiguous (shape {arr.shape}, strides "
                                    f"{arr.strides}); pass np.ascontiguousarray(...) or a copy")
    if not arr.flags.writeable and what != "sendbuf":
        raise CollectiveError(rank, f"{what} is read-only")
    flat = arr.reshape(-1)
    if name == "bfloat16":           # ml_dtypes' bfloat16: reinterpret the same bytes as uint16
        flat = flat.view(np.uint16)
    return HostBuffer(flat, dtype)


def _from_torch(t, what, rank):
    if t.device.type not in ("cpu", "cuda"):
        raise CollectiveError(rank, f"{what} is a torch tensor on {t.device}; the collectives "
                                    f"move host (cpu) and CUDA memory")
    name = str(t.dtype).rsplit(".", 1)[-1]
    dtype = DTYPES.get(name)
    if dtype is None:
        raise CollectiveError(rank, f"{what} has dtype {t.dtype}, which the collectives do not "
                                    f"support; supported: {', '.join(DTYPES)}")
    if not t.is_contiguous():
        raise CollectiveError(rank, f"{what} is not contiguous (shape {tuple(t.shape)}, strides "
                                    f"{t.stride()}); pass t.contiguous()")
    t = t.detach().reshape(-1)
    if t.device.type == "cuda":
        if t.numel() <= 1 and t.stride(0) != 1:     # torch leaves 0/1-element strides arbitrary
            t = t.as_strided((t.numel(),), (1,))
        return DeviceBuffer(t, dtype, t.device.index)
    if name == "bfloat16":           # numpy has no bfloat16: share the bytes as int16 -> uint16
        import torch  # only reached when a torch tensor was passed in
        return HostBuffer(t.view(torch.int16).numpy().view(np.uint16), dtype)
    return HostBuffer(t.numpy(), dtype)


def _from_cupy(arr, what, rank):
    if not arr.flags.c_contiguous:
        raise CollectiveError(rank, f"{what} is not contiguous (shape {arr.shape}, strides "
                                    f"{arr.strides}); pass cupy.ascontiguousarray(...)")
    try:
        import torch
    except ImportError as exc:
        raise CollectiveError(rank, f"{what} is a CuPy array: the GPU path views it through "
                                    f"torch (DLPack), and torch is not installed") from exc
    return _from_torch(torch.from_dlpack(arr), what, rank)


def as_buffer(obj, what, rank):
    """The HostBuffer over `obj`'s memory; `what` names the argument in error messages."""
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, what, rank)
    module = type(obj).__module__
    if module.startswith("torch"):
        return _from_torch(obj, what, rank)
    if module.startswith("cupy"):
        return _from_cupy(obj, what, rank)
    raise CollectiveError(rank, f"{what} is a {type(obj).__name__}; expected a numpy array, a "
                                f"torch tensor (CPU or CUDA) or a CuPy array")
