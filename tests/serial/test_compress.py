"""Compressed outer gradients (mpitrain/parallel/compress.py): each format's round-trip error
within its bound, its bytes on the wire, and error feedback keeping the sum of what was sent
on the sum of the true updates (which plain compression does not)."""
import pytest
import torch

from mpitrain.parallel.compress import BLOCK, ErrorFeedback, compress, decompress


def vectors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=g) * torch.logspace(-4, 1, 10_000)   # scales vary a lot
    x[:BLOCK] = 0.0                                                        # an all-zero block
    return x


@pytest.mark.parametrize("dtype, levels", [("int8", 127), ("int4", 7)])
def test_integer_formats_err_by_at_most_half_a_step_per_block(dtype, levels):
    x = vectors()
    y = decompress(compress(x, dtype))
    blocks = torch.nn.functional.pad(x, (0, (-x.numel()) % BLOCK)).view(-1, BLOCK)
    step = (blocks.abs().amax(dim=1) / levels).repeat_interleave(BLOCK)[:x.numel()]
    assert torch.all((y - x).abs() <= step / 2 + 1e-7 * x.abs().max())
    assert torch.all(y[:BLOCK] == 0)


def test_float_formats():
    x = vectors()
    assert torch.equal(decompress(compress(x, "fp32")), x)
    y = decompress(compress(x, "bf16"))
    assert torch.all((y - x).abs() <= x.abs() * 2 ** -8)


def test_bytes_on_the_wire():
    n = 4096
    x = torch.randn(n)
    sizes = {d: compress(x, d).nbytes() for d in ("fp32", "bf16", "int8", "int4")}
    blocks = n // BLOCK
    assert sizes == {"fp32": 4 * n, "bf16": 2 * n, "int8": n + 4 * blocks,
                     "int4": n // 2 + 4 * blocks}


def test_bad_format_is_named():
    with pytest.raises(ValueError, match="'fp8'"):
        compress(torch.zeros(4), "fp8")


@pytest.mark.parametrize("dtype", ["int4", "int8", "bf16"])
def test_error_feedback_tracks_the_sum_of_true_updates(dtype):
    """Many small updates of one sign, each below the quantization step of a block that also
    holds a large element: without feedback they are rounded away every time; with it, the
    sent total stays within one step of the true total."""
    g = torch.Generator().manual_seed(1)
    n, rounds = 2 * BLOCK, 200
    feedback = ErrorFeedback(n)
    sent_with = torch.zeros(n)
    sent_without = torch.zeros(n)
    true = torch.zeros(n)
    for _ in range(rounds):
        update = 1e-3 * (1 + torch.rand(n, generator=g))
        update[0] = 1.0                              # sets the scale of the first block
        true += update
        sent_with += decompress(feedback.compress(update, dtype))
        sent_without += decompress(compress(update, dtype))
    err_with = (sent_with - true).abs()[1:].max()
    err_without = (sent_without - true).abs()[1:].max()
    step = 1.0 / {"int4": 7, "int8": 127, "bf16": 256}[dtype]
    assert err_with <= step                          # at most what one round can still hold back
    if dtype != "bf16":
        assert err_without > 10 * err_with           # lost for good without feedback


def devices():
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    return out


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_the_kernels_give_the_torch_version_s_bytes(device, dtype):
    from mpitrain.parallel.compress import _library
    if _library(torch.device(device)) is None:
        pytest.skip(f"the {device} kernels are not built (python -m mpitrain.kernels.build)")
    x = vectors().to(device)
    fast, slow = compress(x, dtype), compress(x, dtype, kernels=False)
    assert torch.equal(fast.codes, slow.codes) and torch.equal(fast.scales, slow.scales)
    assert torch.equal(decompress(fast), decompress(slow, kernels=False))
    total = torch.ones(x.numel(), device=device)
    decompress(fast, out=total)
    assert torch.equal(total, 1 + decompress(slow, kernels=False))
