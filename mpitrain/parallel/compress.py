"""Compressed outer gradients for DiLoCo: what one worker sends instead of a float32 vector.

    payload = compress(x, "int4")          # a Payload: codes and one float32 scale per block
    y = decompress(payload)                # float32, the shape of x
    feedback = ErrorFeedback(n)            # per worker: what compression dropped, added back
    payload = feedback.compress(delta, "int8")   # at the next outer step

Formats (bytes per element on the wire):
  fp32  4      exact;
  bf16  2      rounded to bfloat16 (8 bits of mantissa: relative error <= 2^-8);
  int8  1 + 4/BLOCK   symmetric, per block of BLOCK elements: code = round(x / scale),
                      scale = max|x| / 127, so |error| <= scale / 2 per element;
  int4  0.5 + 4/BLOCK codes in -7..7 (scale = max|x| / 7), two codes per byte.
The integer formats run in csrc/cpu_quantize.c and csrc/cuda_quantize.cu where those are built
and in torch otherwise (the same bytes: tests/serial/test_compress.py compares them).
The sum over workers is taken in float32 after decompressing: the payloads are all-gathered,
not reduced on the wire (a sum of codes with different scales means nothing).

Error feedback keeps, per worker, the part of each outer gradient that compression dropped and
adds it to the next one, so the sum of what was sent tracks the sum of the true updates: the
dropped part is never lost, only late (tests/serial/test_compress.py shows both ways).
"""
import ctypes
from dataclasses import dataclass

import torch

BLOCK = 256
FORMATS = ("fp32", "bf16", "int8", "int4")
LEVELS = {"int8": 127, "int4": 7}


@dataclass
class Payload:
    dtype: str
    count: int                      # elements of the original vector
    codes: torch.Tensor             # fp32 / bf16 values, int8 codes, or uint8 nibble pairs
    scales: torch.Tensor            # float32, one per block (empty for fp32 / bf16)

    def nbytes(self):
        return self.codes.numel() * self.codes.element_size() + self.scales.numel() * 4


def _blocks(x):
    pad = (-x.numel()) % BLOCK
    return torch.nn.functional.pad(x, (0, pad)).view(-1, BLOCK)


def compress(x, dtype, kernels=True):
    """x: a flat float32 tensor. kernels: the csrc kernels where they are built (the same bytes
    as the torch version below, which runs otherwise)."""
    if dtype not in FORMATS:
        raise ValueError(f"outer gradient dtype {dtype!r}: choose from {', '.join(FORMATS)}")
    x = x.reshape(-1).float()
    empty = torch.zeros(0, dtype=torch.float32, device=x.device)
    if dtype == "fp32":
        return Payload(dtype, x.numel(), x.clone(), empty)
    if dtype == "bf16":
        return Payload(dtype, x.numel(), x.to(torch.bfloat16), empty)
    if kernels:
        done = _compiled_quantize(x.contiguous(), dtype)
        if done is not None:
            return done
    levels = LEVELS[dtype]
    blocks = _blocks(x)
    # a divisor on the device: torch multiplies by the reciprocal of a CPU scalar on a GPU,
    # which can differ from the kernels' true division by an ulp
    scales = blocks.abs().amax(dim=1) / torch.full((), float(levels), device=x.device)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(blocks / safe[:, None]).clamp_(-levels, levels).to(torch.int8)
    if dtype == "int4":                       # two codes per byte: low nibble, high nibble
        nibbles = (codes.view(-1) + 8).to(torch.uint8)        # 1..15
        codes = nibbles[0::2] | (nibbles[1::2] << 4)
    return Payload(dtype, x.numel(), codes.reshape(-1), scales)


def decompress(payload, out=None, kernels=True):
    """The float32 vector of a payload; out: add it into this tensor instead (in place)."""
    if payload.dtype in ("fp32", "bf16"):
        return payload.codes.float() if out is None else out.add_(payload.codes.float())
    if kernels:
        done = _compiled_dequantize(payload, out)
        if done is not None:
            return done
    values = _dequantize_torch(payload)
    return values if out is None else out.add_(values)


def _dequantize_torch(payload):
    if payload.dtype == "int4":
        packed = payload.codes
        low = (packed & 0x0F).to(torch.int16) - 8
        high = (packed >> 4).to(torch.int16) - 8
        codes = torch.stack([low, high], dim=1).reshape(-1)
    else:
        codes = payload.codes
    values = codes.float().view(-1, BLOCK) * payload.scales[:, None]
    return values.reshape(-1)[:payload.count]


def _library(device):
    from ..kernels import compiled
    return compiled.cuda_lib() if device.type == "cuda" else compiled.cpu_lib()


def _stream(device):
    return ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)


def _compiled_quantize(x, dtype):
    lib = _library(x.device)
    if lib is None:
        return None
    from ..kernels.compiled import check
    blocks = -(-x.numel() // BLOCK)
    bits = 8 if dtype == "int8" else 4
    codes = torch.empty(blocks * BLOCK if bits == 8 else blocks * BLOCK // 2,
                        dtype=torch.int8 if bits == 8 else torch.uint8, device=x.device)
    scales = torch.empty(blocks, dtype=torch.float32, device=x.device)
    args = (x.data_ptr(), x.numel(), bits, codes.data_ptr(), scales.data_ptr())
    if x.device.type == "cuda":
        check(lib, lib.mt_cuda_quantize(*args, _stream(x.device)))
    else:
        check(lib, lib.mt_cpu_quantize(*args))
    return Payload(dtype, x.numel(), codes, scales)


def _compiled_dequantize(payload, out):
    device = payload.codes.device
    lib = _library(device)
    if lib is None:
        return None
    from ..kernels.compiled import check
    accumulate = out is not None
    if out is None:
        out = torch.empty(payload.count, dtype=torch.float32, device=device)
    codes, scales = payload.codes.contiguous(), payload.scales.contiguous()
    args = (codes.data_ptr(), scales.data_ptr(), payload.count,
            8 if payload.dtype == "int8" else 4, out.data_ptr(), int(accumulate))
    if device.type == "cuda":
        check(lib, lib.mt_cuda_dequantize(*args, _stream(device)))
    else:
        check(lib, lib.mt_cpu_dequantize(*args))
    return out


class ErrorFeedback:
    """One worker's memory of what compression has not yet delivered."""

    def __init__(self, count, device="cpu"):
        self.residual = torch.zeros(count, dtype=torch.float32, device=device)

    def compress(self, x, dtype):
        target = x.reshape(-1).float() + self.residual
        payload = compress(target, dtype)
        self.residual = target - decompress(payload)
        return payload
