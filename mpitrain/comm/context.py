"""What an algorithm sees of one collective call: who it is, how to move bytes, how to combine.

Algorithms are written once against this object: they slice flat arrays, call send / recv /
sendrecv with a peer rank, `reduce(dst, src)` to combine (dst = dst op src), `scratch` for
temporary space and `copy` to move data locally. Nothing in an algorithm knows whether the
arrays are numpy, torch or CuPy memory, or which transport carries them.
"""
import numpy as np

from .. import kernels


class ScratchPool:
    """Reusable temporary buffers, a few independent slots, grown on demand.

    A fresh np.empty of several MB per call costs page faults each time; keeping the memory
    between calls removes that from the hot path.
    """

    def __init__(self):
        self._slots = {}          # (slot, storage dtype) -> array of that dtype

    def get(self, count, storage, slot):
        buf = self._slots.get((slot, storage))
        if buf is None or buf.shape[0] < count:
            buf = np.empty(max(count, 4096 // storage.itemsize), dtype=storage)
            self._slots[(slot, storage)] = buf
        return buf[:count]


def untraced(array):
    """Context.working outside a trace: nothing to show."""


class Context:
    __slots__ = ("rank", "size", "send", "recv", "sendrecv", "dtype", "op", "reduce", "transport",
                 "working", "_pool")

    def __init__(self, rank, size, transport, dtype, op, pool):
        self.rank = rank
        self.size = size
        self.send = transport.send            # send(array, dest)
        self.recv = transport.recv            # recv(array, source)
        self.sendrecv = transport.sendrecv    # sendrecv(sendarray, dest, recvarray, source)
        self.transport = transport            # for compiled algorithms that call MPI themselves
        self.dtype = dtype                    # DType of the elements
        self.op = op                          # combining op: sum, max, min, prod
        self.reduce = kernels.reducer(dtype.name, op)   # reduce(dst, src): dst = dst op src
        self.working = untraced               # working(array): this rank's state is in `array`
        self._pool = pool                     # from now on (a trace shows it; else nothing)

    def scratch(self, count, slot=0):
        """A temporary array of `count` elements; each slot is independent of the others."""
        return self._pool.get(count, self.dtype.storage, slot)

    @staticmethod
    def same_memory(a, b):
        """True when both non-empty arrays start at the same address (an in-place call)."""
        return bool(a.shape[0] and b.shape[0]) and (
            a.__array_interface__["data"][0] == b.__array_interface__["data"][0])

    def copy(self, dst, src):
        """dst[:] = src, skipped when both are the same memory (in-place calls)."""
        if dst.shape[0] and not self.same_memory(dst, src):
            dst[...] = src


class DeviceScratchPool:
    """ScratchPool's GPU twin: reusable torch CUDA tensors, per slot, dtype and device (cached
    by torch's allocator too, but reusing keeps the addresses stable for the IPC transport)."""

    def __init__(self):
        self._slots = {}

    def get(self, count, dtype, device, slot):
        key = (slot, dtype, device)
        buf = self._slots.get(key)
        if buf is None or buf.shape[0] < count:
            import torch
            buf = torch.empty(max(count, 1024), dtype=dtype, device=device)
            self._slots[key] = buf
        return buf[:count]


class DeviceContext(Context):
    """The Context of a GPU buffer: the same face, over flat torch CUDA tensors. Every kernel and
    copy is queued on the caller's current stream, so a collective runs after the work the
    caller queued before it, and its result is ready for that stream when it returns."""

    __slots__ = ("device", "torch_dtype")

    def __init__(self, rank, size, transport, dtype, op, pool, device, torch_dtype):
        Context.__init__(self, rank, size, transport, dtype, op, pool)
        self.reduce = kernels.device_reducer(dtype.name, op)
        self.device = device
        self.torch_dtype = torch_dtype

    def scratch(self, count, slot=0):
        return self._pool.get(count, self.torch_dtype, self.device, slot)

    @staticmethod
    def same_memory(a, b):
        return bool(a.shape[0] and b.shape[0]) and a.data_ptr() == b.data_ptr()

    def copy(self, dst, src):
        if dst.shape[0] and not self.same_memory(dst, src):
            dst.copy_(src)
