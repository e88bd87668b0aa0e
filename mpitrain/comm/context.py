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


class Context:
    __slots__ = ("rank", "size", "send", "recv", "sendrecv", "dtype", "op", "reduce", "transport",
                 "_pool")

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
        self._pool = pool

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
