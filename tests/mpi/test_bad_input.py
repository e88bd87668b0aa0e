"""Bad input raises a clear CollectiveError on every rank, naming the value and the rank; in debug
mode, ranks that disagree (count, dtype, op, root, algorithm, collective) or a bad input on one
rank alone raise on every rank instead of hanging."""
import numpy as np
import pytest

from mpitrain.comm import CollectiveError, CollectiveMismatchError

from oracles import all_agree

pytestmark = pytest.mark.mpi


def raises_everywhere(world, call, *fragments, exc=CollectiveError):
    """Run call(); it must raise `exc` here, with 'rank R' and every fragment in its message."""
    try:
        call()
        ok, detail = False, "no exception"
    except exc as e:
        msg = str(e)
        missing = [f for f in (f"rank {world.rank}", *fragments) if f not in msg]
        ok, detail = not missing, f"{msg!r} lacks {missing}"
    good, why = all_agree(world, ok, detail)
    assert good, why


def test_local_bad_inputs(world):
    p = world.size
    x = np.zeros(8, np.float32)
    raises_everywhere(world, lambda: world.all_reduce(np.zeros(16, np.float32)[::2]), "not contiguous")
    raises_everywhere(world, lambda: world.all_reduce(np.zeros(4, np.complex64)), "complex64")
    raises_everywhere(world, lambda: world.all_reduce(np.zeros(4, np.int16)), "int16")
    raises_everywhere(world, lambda: world.all_reduce(x, op="xor"), "'xor'")
    raises_everywhere(world, lambda: world.all_reduce(np.zeros(4, np.int32), op="avg"), "int32")
    raises_everywhere(world, lambda: world.all_reduce(x, algorithm="bogus"), "'bogus'")
    raises_everywhere(world, lambda: world.broadcast(x, root=p), f"root {p}")
    raises_everywhere(world, lambda: world.broadcast(x, root=-1), "root -1")
    raises_everywhere(world, lambda: world.reduce(x, np.zeros(3, np.float32), root=world.rank),
                      "output too small")
    raises_everywhere(world, lambda: world.all_gather(x, np.zeros(8 * p - 1, np.float32)),
                      "output too small")
    raises_everywhere(world, lambda: world.all_gather(x, np.zeros(8 * p, np.float64)),
                      "float32", "float64")
    raises_everywhere(world, lambda: world.all_gather_v(x, np.zeros(8 * p, np.float32), [8] * (p + 1)),
                      "counts")
    raises_everywhere(world, lambda: world.all_reduce([1.0, 2.0]), "list")


@pytest.mark.skipif("world_size() < 2")
@pytest.mark.parametrize("case", ["count", "dtype", "op", "root", "algorithm", "collective"])
def test_debug_mode_mismatch_raises_on_every_rank(debug_world, case):
    w, last = debug_world, debug_world.rank == debug_world.size - 1
    x = np.zeros(10 if not (case == "count" and last) else 12,
                 np.float64 if case == "dtype" and last else np.float32)
    calls = {
        "count": lambda: w.all_reduce(x),
        "dtype": lambda: w.all_reduce(x),
        "op": lambda: w.all_reduce(x, op="max" if last else "sum"),
        "root": lambda: w.broadcast(x, root=1 if last else 0),
        "algorithm": lambda: w.all_reduce(x, algorithm="ring" if last else "recursive_doubling"),
        "collective": lambda: (w.broadcast(x) if last else w.all_reduce(x)),
    }
    raises_everywhere(w, calls[case], f"rank {w.size - 1} called", exc=CollectiveMismatchError)
    y = np.ones(4, np.float32)                       # and the communicator still works after
    w.all_reduce(y)
    good, why = all_agree(w, np.all(y == w.size), str(y))
    assert good, why


@pytest.mark.skipif("world_size() < 2")
def test_debug_mode_bad_input_on_one_rank_raises_everywhere(debug_world):
    w = debug_world
    x = np.zeros(16, np.float32)
    buf = x[::2] if w.rank == 1 else x[:8]           # only rank 1 passes a strided view
    raises_everywhere(w, lambda: w.all_reduce(buf), "rank 1", "not contiguous")
