"""Which implementation of the kernels this process uses, said once.

    compiled C (OpenMP, N threads) + CUDA sm_90       everything built
    numpy/torch fallback                              nothing built (or MPITRAIN_KERNELS=reference)
The line goes to stderr the first time a kernel is used, only when a fallback is in use (a
compiled build is the normal case and stays quiet); `describe_backend()` returns it for the
trainer's banner, the benchmarks and `python -m mpitrain.comm.info`.
"""
import sys

from . import compiled, locations

_announced = []


def describe_backend():
    lib = compiled.cpu_lib()
    host = (f"compiled C (OpenMP, {lib.mt_cpu_get_threads()} threads)" if lib is not None
            else "numpy fallback (csrc/ not built: run `python -m mpitrain.kernels.build`)")
    cuda_built = locations.find_library("libmpitrain_cuda.so") is not None
    gpu = "CUDA kernels built" if cuda_built else "CUDA kernels not built (torch fallback on GPU)"
    return f"host: {host}; gpu: {gpu}"


def announce():
    """Say once per process which backend is in use, when it is a fallback."""
    if _announced:
        return
    _announced.append(True)
    if compiled.cpu_lib() is None:
        print(f"mpitrain.kernels: {describe_backend()}", file=sys.stderr, flush=True)
