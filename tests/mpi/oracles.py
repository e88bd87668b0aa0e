"""Oracles and helpers of the MPI tests (run under mpiexec with --with-mpi; see the Makefile).

Oracles: every rank's input is gathered with MPI's own allgather and reduced with numpy (float64
for floats, the dtype's own wrap-around arithmetic for integers); bfloat16 values are rounded by
torch. Inputs are small integers, so every reduction order gives the same exact answer.
A verdict is gathered from all ranks before asserting, so a failure on one rank never leaves the
others waiting in the next collective.
"""
import numpy as np

def bf16_bits(values):
    """float values -> bfloat16 bit patterns (uint16), rounded by torch (the oracle)."""
    import torch
    t = torch.from_numpy(np.asarray(values, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def values_of(array, dtype):
    """Storage array -> the numbers it holds, as float64 (floats) or int64 (ints)."""
    if dtype == "bfloat16":
        import torch
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16).double().numpy()
    return array.astype(np.float64 if np.dtype(array.dtype).kind == "f" else np.int64)


def make_input(dtype, count, seed, op="sum"):
    """Small integers that stay exact in every dtype whatever the reduction order."""
    rng = np.random.default_rng(seed)
    if op == "prod":
        vals = rng.choice([1, 2] if dtype == "uint8" else [-2, -1, 1, 2], count)
    else:
        vals = rng.integers(0 if dtype == "uint8" else -8, 9, count)
    if dtype == "bfloat16":
        return bf16_bits(vals)
    return vals.astype(dtype)


def cast_result(values, dtype):
    """The oracle's float64 / int64 result in the dtype's storage."""
    if dtype == "bfloat16":
        return bf16_bits(values)
    return np.asarray(values).astype(dtype)


def reduce_reference(inputs, op, dtype, size):
    """numpy reduction of the list of every rank's input (storage arrays)."""
    vals = np.stack([values_of(a, dtype) for a in inputs]) if inputs else None
    if op in ("sum", "avg"):
        out = vals.sum(axis=0)
    elif op == "max":
        out = vals.max(axis=0)
    elif op == "min":
        out = vals.min(axis=0)
    else:
        out = vals.prod(axis=0)
    if op == "avg":
        return cast_result(out / size, dtype)
    if np.dtype(dtype if dtype != "bfloat16" else "float32").kind in "iu":
        out = out.astype(np.int64).astype(dtype)     # wrap around as the dtype does
    return cast_result(out, dtype)


TOLERANCE = {"float64": 1e-15, "float32": 1e-6, "float16": 2 ** -10, "bfloat16": 2 ** -7}


def matches(actual, expected, dtype, op):
    if op == "avg":
        return np.allclose(values_of(actual, dtype), values_of(expected, dtype),
                           rtol=TOLERANCE[dtype], atol=0)
    return np.array_equal(actual.view(np.uint8), expected.view(np.uint8))


def all_agree(world, ok, detail=""):
    """True on every rank iff ok on every rank; the failing ranks' details are in the message."""
    verdicts = world.mpi_comm.allgather((bool(ok), detail))
    bad = [f"rank {r}: {d}" for r, (good, d) in enumerate(verdicts) if not good]
    return not bad, "; ".join(bad)


def user_buffer(array, dtype):
    """What a user passes for `array`: itself, or for bfloat16 (no numpy type) a torch bfloat16
    tensor over the same memory, so in-place results land in `array`."""
    if array is None or dtype != "bfloat16":
        return array
    import torch
    return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)


def gpu_all_reduce_failures(world, algorithm, dtypes, counts, seed=17):
    """Sum all-reduce of each dtype x count on a CUDA tensor by `algorithm`, against MPI's
    allgather of every rank's input reduced by numpy: the (dtype, count) pairs that differ."""
    import torch
    failures = []
    for dtype in dtypes:
        for count in counts:
            x = make_input(dtype, count, seed=world.rank * seed + count)
            expected = reduce_reference(world.mpi_comm.allgather(x), "sum", dtype, world.size)
            g = torch.from_numpy(x.copy())
            if dtype == "bfloat16":
                g = g.view(torch.int16).view(torch.bfloat16)
            g = g.cuda()
            world.all_reduce(g, algorithm=algorithm)
            got = (g.view(torch.int16) if dtype == "bfloat16" else g).cpu().numpy()
            if not matches(got.view(expected.dtype), expected, dtype, "sum"):
                failures.append((dtype, count))
    return failures
