"""The bucket plan: which parameters' gradients travel together, in which order.

Backward produces gradients roughly in reverse order of the parameters' registration (the last
layer's first), so buckets are filled in that order: the first bucket is small (1 MB by
default) so communication starts as soon as the last layer's gradients exist, the others grow to
a cap (25 MB by default, as DDP's). A bucket holds one dtype on one device; a parameter larger
than the cap gets a bucket of its own. Every rank builds the same plan from the same model, and
buckets are all-reduced in plan order, so ranks always pair the same bucket with each other.

    plan = plan_buckets(params, first_cap_bytes=1 << 20, cap_bytes=25 << 20, wire_dtype="float32")
    print(describe_plan(plan, names))
"""
from dataclasses import dataclass, field

from ..kernels.pack import ITEMSIZE

WIRE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEFAULT_TAIL_MB = "24,6"    # the trainer's and the benchmark's --tail-mb


def parse_tail_mb(text):
    """--tail-mb "24,6" -> (24.0, 6.0); "" or "none" -> () (no cuts). Raises ValueError naming
    the bad value."""
    text = text.strip()
    if text.lower() in ("", "none", "0"):
        return ()
    try:
        cuts = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--tail-mb {text!r}: give MB values separated by commas, e.g. 24,6") from None
    if any(not c > 0 for c in cuts):
        raise ValueError(f"--tail-mb {text!r}: every cut must be > 0 MB")
    return cuts


def tail_cuts_bytes(tail_mb):
    """MB cuts -> byte cuts; raises ValueError naming them when one is not > 0."""
    if any(not mb > 0 for mb in tail_mb):
        raise ValueError(f"tail_mb {tuple(tail_mb)!r}: every cut must be > 0 MB")
    return tuple(int(mb * 2**20) for mb in tail_mb)


@dataclass
class BucketSpec:
    index: int                       # position in the plan: the order of all-reduces
    params: list = field(default_factory=list)        # the parameters, in the order they are packed
    positions: list = field(default_factory=list)     # their index in the model's parameter list
    elements: int = 0                # gradient elements held (padding not included)
    dtype: object = None             # the gradients' torch dtype
    device: object = None            # the gradients' torch device

    def nbytes(self, wire_dtype):
        return self.elements * ITEMSIZE[wire_dtype]


def plan_buckets(params, first_cap_bytes, cap_bytes, wire_dtype, tail_cuts_bytes=()):
    """Buckets over `params` (the model's parameters that take gradients, registration order),
    filled from the last parameter backwards. tail_cuts_bytes: a bucket also ends where the
    bytes of the parameters before it (in registration order) first drop to a cut or under.
    Returns a list of BucketSpec."""
    if cap_bytes <= 0 or first_cap_bytes <= 0:
        raise ValueError(f"bucket caps must be > 0 bytes, got first {first_cap_bytes}, cap {cap_bytes}")
    itemsize = ITEMSIZE[wire_dtype]
    before = parameter_bytes_before(params)
    cuts = sorted(tail_cuts_bytes, reverse=True)
    buckets = []
    current = None
    cut_here = False
    for position in reversed(range(len(params))):
        p = params[position]
        limit = first_cap_bytes if len(buckets) <= 1 else cap_bytes    # filling bucket 0?
        starts_new = (current is None or cut_here or p.dtype != current.dtype
                      or p.device != current.device
                      or (current.elements and (current.elements + p.numel()) * itemsize > limit))
        if starts_new:
            current = BucketSpec(index=len(buckets), dtype=p.dtype, device=p.device)
            buckets.append(current)
        current.params.append(p)
        current.positions.append(position)
        current.elements += p.numel()
        cut_here = False
        while cuts and before[position] <= cuts[0]:
            cuts.pop(0)
            cut_here = True
    return buckets


def parameter_bytes_before(params):
    """before[i]: the bytes of params[:i] (what backward still has to produce after params[i])."""
    before, total = [], 0
    for p in params:
        before.append(total)
        total += p.numel() * p.element_size()
    return before


def describe_plan(buckets, names, wire_dtype):
    """A few lines a person can read: each bucket's size, parameter count and first/last names."""
    total = sum(b.nbytes(wire_dtype) for b in buckets)
    lines = [f"data parallel: {len(buckets)} bucket(s), {total / 2**20:.2f} MB of {wire_dtype} "
             f"gradients, all-reduced in this order:"]
    for b in buckets:
        first, last = names[b.positions[0]], names[b.positions[-1]]
        span = first if len(b.params) == 1 else f"{first} .. {last}"
        lines.append(f"  bucket {b.index:3d}: {b.nbytes(wire_dtype) / 2**20:8.3f} MB, "
                     f"{len(b.params):4d} param(s): {span}")
    return "\n".join(lines)
