"""Python face of the kernels in csrc/: reduce, multi-source reduce, divide, pack and unpack.

Host arrays use the compiled C kernels, CUDA arrays the CUDA kernels; where a library was not
built, numpy or torch computes the same results (see backend.py). reference.py holds the numpy
versions, the oracle the tests compare against.
"""
from .backend import announce, describe_backend
from .compiled import KernelError, set_cpu_threads
from .pack import BucketLayout, PackPlan, pack, unpack
from .reduce import device_reducer, divide_, multi_reduce, reduce_, reduce_into, reducer

__all__ = ["reducer", "device_reducer", "reduce_", "divide_", "multi_reduce", "reduce_into", "pack", "unpack",
           "PackPlan", "BucketLayout", "KernelError", "set_cpu_threads", "describe_backend",
           "announce"]
