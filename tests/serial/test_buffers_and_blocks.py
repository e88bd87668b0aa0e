"""The buffer layer (same memory, no copy; clear refusals) and the block arithmetic."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from mpitrain.comm.algorithms.blocks import even_counts, offsets
from mpitrain.comm.buffers import as_buffer
from mpitrain.comm.errors import CollectiveError


def test_numpy_buffer_shares_memory():
    x = np.zeros((3, 4), np.float32)
    b = as_buffer(x, "buf", 0)
    b.array[5] = 7
    assert x[1, 1] == 7 and b.count == 12 and b.dtype.name == "float32"


def test_torch_bfloat16_buffer_shares_memory():
    torch = pytest.importorskip("torch")
    t = torch.zeros(6, dtype=torch.bfloat16)
    b = as_buffer(t, "buf", 3)
    b.array[2] = 0x3F80                               # bfloat16 bits of 1.0
    assert t[2].item() == 1.0 and b.dtype.name == "bfloat16"


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros(10)[::2], "not contiguous"),
    (np.zeros(3, np.complex128), "complex128"),
    (np.zeros(3, np.uint16), "uint16"),
    ([1, 2, 3], "list"),
])
def test_refusals_name_value_and_rank(bad, fragment):
    with pytest.raises(CollectiveError) as e:
        as_buffer(bad, "buf", 5)
    assert "rank 5" in str(e.value) and fragment in str(e.value)


def test_torch_non_contiguous_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(CollectiveError, match="rank 2: buf is not contiguous"):
        as_buffer(torch.zeros(4, 4).t(), "buf", 2)


@given(count=st.integers(0, 10**6), parts=st.integers(1, 64))
def test_even_counts_cover_the_buffer(count, parts):
    counts = even_counts(count, parts)
    assert len(counts) == parts and sum(counts) == count
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    offs = offsets(counts)
    assert offs[0] == 0 and offs[-1] == count
