"""ctypes bindings to the compiled kernels in csrc/ (built by `python -m mpitrain.kernels.build`).

Each library is loaded on first use, from the package's _lib or the cache directory
(locations.py); one found in neither is built into the cache then, where the sources are
(build.build_at_first_use). A library that cannot be had is None and the callers fall back to
numpy or torch. The CUDA library is loaded only when a GPU buffer first arrives, so a CPU-only
process never touches the CUDA driver. Every C entry point returns 0 or -1; `check` turns -1
into a KernelError carrying the C side's "csrc/file.c:line: message".
"""
import ctypes
import os

from . import locations
from .. import settings

DTYPE_CODES = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3, "int64": 4, "int32": 5,
               "uint8": 6}
OP_CODES = {"sum": 0, "max": 1, "min": 2, "prod": 3}
PACK_DTYPES = ("float32", "bfloat16", "float16")


class KernelError(RuntimeError):
    """A compiled kernel refused its arguments or failed; the message names file and line."""


class MtSlot(ctypes.Structure):
    """One tensor of a pack/unpack list (mt_slot in csrc/mt_common.h)."""
    _fields_ = [("ptr", ctypes.c_void_p), ("count", ctypes.c_int64), ("offset", ctypes.c_int64)]


_i64, _int, _ptr, _dbl = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_double
_SLOTS = ctypes.POINTER(MtSlot)
_CPU_SIGNATURES = {
    "mt_cpu_reduce": [_ptr, _ptr, _i64, _int, _int],
    "mt_cpu_divide": [_ptr, _i64, _int, _dbl],
    "mt_cpu_pack": [_SLOTS, _int, _int, _ptr, _int, _dbl],
    "mt_cpu_unpack": [_SLOTS, _int, _int, _ptr, _int, _dbl, _int],
    "mt_cpu_quantize": [_ptr, _i64, _int, _ptr, _ptr],
    "mt_cpu_dequantize": [_ptr, _ptr, _i64, _int, _ptr, _int],
    "mt_cpu_set_threads": [_int],
    "mt_cpu_get_threads": [],
}
_CUDA_SIGNATURES = {
    "mt_cuda_reduce": [_ptr, _ptr, _i64, _int, _int, _int, _ptr],
    "mt_cuda_multi_reduce": [_ptr, ctypes.POINTER(_ptr), _int, _i64, _int, _int, _int, _ptr],
    "mt_cuda_multi_reduce_scaled": [_ptr, ctypes.POINTER(_ptr), _int, _i64, _int, _int, _dbl, _int,
                                    _int, _ptr],
    "mt_cuda_pack": [_SLOTS, _int, _int, _ptr, _int, _dbl, _int, _ptr],
    "mt_cuda_unpack": [_SLOTS, _int, _int, _ptr, _int, _dbl, _int, _int, _ptr],
    "mt_cuda_quantize": [_ptr, _i64, _int, _ptr, _ptr, _ptr],
    "mt_cuda_dequantize": [_ptr, _ptr, _i64, _int, _ptr, _int, _ptr],
    "mt_cuda_device_count": [ctypes.POINTER(_int)],
    "mt_ipc_export": [_ptr, _int, _ptr, ctypes.POINTER(_i64)],
    "mt_ipc_open": [_ptr, _int, ctypes.POINTER(_ptr)],
    "mt_ipc_close": [_ptr, _int],
    "mt_ipc_event_create": [_int, ctypes.POINTER(_ptr), _ptr],
    "mt_ipc_event_open": [_ptr, _int, ctypes.POINTER(_ptr)],
    "mt_event_record": [_ptr, _int, _ptr],
    "mt_stream_wait_event": [_ptr, _int, _ptr],
    "mt_event_synchronize": [_ptr, _int],
    "mt_event_query": [_ptr, _int, ctypes.POINTER(_int)],
    "mt_memcpy_async": [_ptr, _ptr, _i64, _int, _ptr],
    "mt_cuda_synchronize": [_int],
    "mt_peer_workspace_bytes": [_i64, ctypes.POINTER(_i64)],
    "mt_peer_workspace_alloc": [_int, _i64, ctypes.POINTER(_ptr)],
    "mt_peer_workspace_free": [_ptr, _int],
    "mt_peer_run": [_int, _ptr, _int, _int, _ptr, _ptr, _ptr, _i64, _int, _i64, ctypes.c_uint32,
                    _int, _int, _int, _int, _dbl, _int, _ptr],
    "mt_peer_ce_all_reduce": [_ptr, _ptr, _int, _int, _ptr, _ptr, _ptr, _i64, _int, _i64,
                              ctypes.c_uint32, _int, _int, _dbl, _int, _int, _dbl, _int, _ptr],
}

_MPI_SIGNATURES = {
    "mt_mpi_all_reduce_doubling": [_ptr, _ptr, _ptr, _i64, _int, _int, _int, _ptr],
    "mt_mpi_library_version": [ctypes.c_char_p, _int],
}

_loaded = {}


def _load(name, signatures):
    if name in _loaded:
        return _loaded[name]
    lib = None
    path = None
    if settings.get("MPITRAIN_KERNELS") != "reference":
        path = locations.find_library(name)
        if path is None:
            from .build import build_at_first_use
            path = build_at_first_use(name)
    if path is not None:
        lib = ctypes.CDLL(str(path))
        for fn, argtypes in signatures.items():
            getattr(lib, fn).argtypes = argtypes
            getattr(lib, fn).restype = _int
        lib.mt_last_error.restype = ctypes.c_char_p
        lib.mt_last_error.argtypes = []
    _loaded[name] = lib
    return lib


def cpu_lib():
    """The C kernels, or None when they were not built (or MPITRAIN_KERNELS=reference)."""
    lib = _load("libmpitrain_cpu.so", _CPU_SIGNATURES)
    if lib is not None and "threads" not in _loaded:
        _loaded["threads"] = True
        threads = settings.get("MPITRAIN_CPU_THREADS") or (os.cpu_count() or 1)
        check(lib, lib.mt_cpu_set_threads(threads))
    return lib


def cuda_lib():
    """The CUDA kernels, or None when they were not built or no GPU is visible."""
    if "cuda-usable" in _loaded:
        return _loaded["cuda-usable"]
    lib = _load("libmpitrain_cuda.so", _CUDA_SIGNATURES)
    if lib is not None:
        count = _int(0)
        if lib.mt_cuda_device_count(ctypes.byref(count)) != 0 or count.value == 0:
            lib = None
    _loaded["cuda-usable"] = lib
    return lib


def mpi_lib():
    """The small-message all-reduce in C, or None: not built, MPITRAIN_KERNELS=reference, or
    built against another MPI than the one mpi4py loaded (two MPIs in one process never work)."""
    if "mpi-usable" in _loaded:
        return _loaded["mpi-usable"]
    lib = None
    if settings.get("MPITRAIN_SMALL_ALLREDUCE") != "python":
        lib = _load("libmpitrain_mpi.so", _MPI_SIGNATURES)
    if lib is not None:
        from mpi4py import MPI
        text = ctypes.create_string_buffer(8192)
        if lib.mt_mpi_library_version(text, len(text)) != 0 or \
                text.value.decode(errors="replace").strip("\x00 \n") != \
                MPI.Get_library_version().strip("\x00 \n"):
            lib = None
    _loaded["mpi-usable"] = lib
    return lib


def check(lib, rc):
    if rc != 0:
        raise KernelError(lib.mt_last_error().decode(errors="replace"))


def set_cpu_threads(n):
    """Threads the C kernels use (make install's default: every core; the world divides the
    cores among the ranks of a node, see comm/world.py)."""
    lib = cpu_lib()
    if lib is not None:
        check(lib, lib.mt_cpu_set_threads(int(n)))
