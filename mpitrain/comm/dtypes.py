"""The element types the collectives move and reduce, and how each is stored in host memory.

bfloat16 has no numpy type of its own: a bfloat16 buffer is held as its raw 16-bit patterns
(numpy uint16) and widened to float32 whenever it is reduced.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str            # the name users and error messages see: "float32", "bfloat16", ...
    itemsize: int        # bytes per element
    storage: np.dtype    # the numpy dtype that holds the bytes (uint16 for bfloat16)
    is_float: bool       # floating point (avg is defined only for these)


DTYPES = {
    d.name: d
    for d in (
        DType("float64", 8, np.dtype(np.float64), True),
        DType("float32", 4, np.dtype(np.float32), True),
        DType("float16", 2, np.dtype(np.float16), True),
        DType("bfloat16", 2, np.dtype(np.uint16), True),
        DType("int64", 8, np.dtype(np.int64), False),
        DType("int32", 4, np.dtype(np.int32), False),
        DType("uint8", 1, np.dtype(np.uint8), False),
    )
}

