"""Fused gradient bucketing: pack a tensor list into one flat bucket, and unpack it back.

    layout = BucketLayout.of(grads, "bfloat16")           # 16-byte aligned slot per tensor
    plan = PackPlan(grads, bucket, layout.offsets)        # checked once, reused every step
    plan.pack(scale=1 / world.size)                       # bucket = bf16(grad / world), one pass
    plan.unpack(accumulate=False)                         # grad = float32(bucket)

One compiled call moves the whole list (one launch on a GPU, on the caller's stream). The
checks run before any launch: dtypes, devices, slot alignment, overlaps, bucket size. Without
the compiled library, numpy or torch does the same arithmetic (float32, round once).
"""
import numpy as np

from . import reference
from .arrays import current_stream, describe, on_stream
from .backend import announce
from .compiled import DTYPE_CODES, PACK_DTYPES, MtSlot, check, cpu_lib, cuda_lib

SLOT_ALIGN_BYTES = 16
ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}


class BucketLayout:
    """Where each tensor of a list sits in a flat bucket of `wire_dtype` elements: slots in list
    order, each starting on a 16-byte boundary (so the kernels can use 16-byte loads)."""

    def __init__(self, counts, wire_dtype):
        if wire_dtype not in ITEMSIZE:
            raise TypeError(f"wire dtype must be one of {', '.join(ITEMSIZE)}, got {wire_dtype}")
        step = SLOT_ALIGN_BYTES // ITEMSIZE[wire_dtype]
        self.counts = [int(c) for c in counts]
        self.offsets = []
        position = 0
        for c in self.counts:
            self.offsets.append(position)
            position += -(-c // step) * step
        self.total = position          # bucket length in elements, padding included
        self.wire_dtype = wire_dtype

    @classmethod
    def of(cls, tensors, wire_dtype):
        return cls([describe(t).count for t in tensors], wire_dtype)


class PackPlan:
    """A checked, reusable description of one bucket: which tensors, at which offsets."""

    def __init__(self, tensors, bucket, offsets=None):
        self.tensors = list(tensors)
        self.bucket = bucket
        b = describe(bucket)
        infos = [describe(t) for t in self.tensors]
        if b.dtype not in PACK_DTYPES:
            raise TypeError(f"bucket dtype must be one of {', '.join(PACK_DTYPES)}, got {b.dtype}")
        dtypes = {i.dtype for i in infos}
        if len(dtypes) > 1:
            raise TypeError(f"tensors of one bucket must share a dtype, got {sorted(dtypes)}")
        self.tensor_dtype = dtypes.pop() if dtypes else b.dtype
        if self.tensor_dtype not in PACK_DTYPES:
            raise TypeError(f"tensor dtype must be one of {', '.join(PACK_DTYPES)}, "
                            f"got {self.tensor_dtype}")
        for n, i in enumerate(infos):
            if i.device != b.device:
                raise ValueError(f"tensor {n} is on {_where(i.device)}, the bucket on {_where(b.device)}")
        if offsets is None:
            offsets = BucketLayout([i.count for i in infos], b.dtype).offsets
        offsets = [int(o) for o in offsets]
        if len(offsets) != len(infos):
            raise ValueError(f"{len(offsets)} offsets for {len(infos)} tensors")
        _check_slots([i.count for i in infos], offsets, b)
        self.wire_dtype, self.device, self.kind = b.dtype, b.device, b.kind
        self.counts, self.offsets = [i.count for i in infos], offsets
        self._info = b
        self._slots = (MtSlot * max(1, len(infos)))(
            *[MtSlot(i.ptr, i.count, o) for i, o in zip(infos, offsets)])
        self._n = len(infos)
        self._tensor_code = DTYPE_CODES[self.tensor_dtype]
        self._wire_code = DTYPE_CODES[self.wire_dtype]
        self._library = False          # looked up on first use

    def pack(self, scale=1.0, stream=None):
        """bucket[slot_i] = wire_dtype(scale * tensor_i) for every tensor, in one pass."""
        lib = self._lib()
        if lib is None:
            with on_stream(self._info, stream):
                return _fallback(self, "pack", scale, False)
        if self.device < 0:
            rc = lib.mt_cpu_pack(self._slots, self._n, self._tensor_code, self._info.ptr,
                                 self._wire_code, float(scale))
        else:
            rc = lib.mt_cuda_pack(self._slots, self._n, self._tensor_code, self._info.ptr,
                                  self._wire_code, float(scale), self.device,
                                  current_stream(self._info, stream))
        if rc:
            check(lib, rc)
        return self.bucket

    def unpack(self, scale=1.0, accumulate=False, stream=None):
        """tensor_i = scale * bucket[slot_i] (or += with accumulate), cast back to its dtype."""
        lib = self._lib()
        if lib is None:
            with on_stream(self._info, stream):
                return _fallback(self, "unpack", scale, accumulate)
        if self.device < 0:
            rc = lib.mt_cpu_unpack(self._slots, self._n, self._tensor_code, self._info.ptr,
                                   self._wire_code, float(scale), bool(accumulate))
        else:
            rc = lib.mt_cuda_unpack(self._slots, self._n, self._tensor_code, self._info.ptr,
                                    self._wire_code, float(scale), bool(accumulate), self.device,
                                    current_stream(self._info, stream))
        if rc:
            check(lib, rc)
        return self.tensors

    def _lib(self):
        if self._library is False:
            announce()
            self._library = cpu_lib() if self.device < 0 else cuda_lib()
        return self._library


def pack(tensors, bucket, offsets=None, scale=1.0, stream=None):
    """Pack `tensors` into `bucket` (offsets default to BucketLayout's); returns bucket."""
    return PackPlan(tensors, bucket, offsets).pack(scale, stream)


def unpack(bucket, tensors, offsets=None, scale=1.0, accumulate=False, stream=None):
    """Unpack `bucket` into `tensors`; returns tensors."""
    return PackPlan(tensors, bucket, offsets).unpack(scale, accumulate, stream)


def _where(device):
    return "the host" if device < 0 else f"cuda:{device}"


def _check_slots(counts, offsets, bucket):
    step = SLOT_ALIGN_BYTES // bucket.itemsize
    for n, o in enumerate(offsets):
        if o < 0 or o % step:
            raise ValueError(f"slot {n} starts at element {o} (byte {o * bucket.itemsize}), "
                             f"not on a {SLOT_ALIGN_BYTES}-byte boundary")
        if o + counts[n] > bucket.count:
            raise ValueError(f"slot {n} ends at element {o + counts[n]}, past the bucket's "
                             f"{bucket.count} elements")
    order = sorted(range(len(offsets)), key=lambda n: offsets[n])
    for a, b in zip(order, order[1:]):
        if counts[a] and counts[b] and offsets[a] + counts[a] > offsets[b]:
            raise ValueError(f"slots {a} (elements {offsets[a]}..{offsets[a] + counts[a]}) and "
                             f"{b} (from {offsets[b]}) overlap")


def _fallback(plan, direction, scale, accumulate):
    """The same arithmetic without the compiled library: float32, scale, round once."""
    if plan.kind == "torch":
        flat = plan.bucket.reshape(-1)
        for t, c, o in zip(plan.tensors, plan.counts, plan.offsets):
            slot, t = flat[o: o + c], t.reshape(-1)
            if direction == "pack":
                slot.copy_(t.float() * np.float32(scale))
            else:
                value = slot.float() * np.float32(scale)
                t.copy_(t.float() + value if accumulate else value)
        return plan.bucket if direction == "pack" else plan.tensors
    flat = plan.bucket.reshape(-1)
    for t, c, o in zip(plan.tensors, plan.counts, plan.offsets):
        slot, t = flat[o: o + c], t.reshape(-1)
        if direction == "pack":
            _store(slot, plan.wire_dtype, _load(t, plan.tensor_dtype) * np.float32(scale))
        else:
            value = _load(slot, plan.wire_dtype) * np.float32(scale)
            if accumulate:
                value = _load(t, plan.tensor_dtype) + value
            _store(t, plan.tensor_dtype, value)
    return plan.bucket if direction == "pack" else plan.tensors


def _load(a, dtype):
    if dtype == "bfloat16":
        return reference.bf16_to_f32(a.view(np.uint16))
    return a.astype(np.float32)


def _store(a, dtype, values):
    if dtype == "bfloat16":
        a.view(np.uint16)[...] = reference.f32_to_bf16(values)
    else:
        a[...] = values.astype(a.dtype)
