"""Property-based: random collectives, counts, roots, algorithms, ops and dtypes against the
numpy oracle. Derandomized, so every rank draws the same examples (and, since the verdict is
gathered before asserting, shrinks through the same ones)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mpitrain.comm import ALGORITHMS
from mpitrain.comm.dtypes import DTYPES

from oracles import all_agree, make_input, matches, reduce_reference, user_buffer as U

pytestmark = pytest.mark.mpi

DTYPE_NAMES = list(DTYPES)


@settings(derandomize=True, max_examples=60, deadline=None, database=None)
@given(collective=st.sampled_from(["all_reduce", "reduce", "reduce_scatter", "broadcast"]),
       count=st.integers(0, 3000), root_seed=st.integers(0, 63), alg_seed=st.integers(0, 63),
       op=st.sampled_from(["sum", "max", "min", "prod", "avg"]), dtype=st.sampled_from(DTYPE_NAMES))
def test_random_collectives(world, collective, count, root_seed, alg_seed, op, dtype):
    p, r = world.size, world.rank
    if op == "avg" and not DTYPES[dtype].is_float:
        op = "sum"
    algs = list(ALGORITHMS[collective])
    alg = algs[alg_seed % len(algs)]
    root = root_seed % p
    x = make_input(dtype, count * (p if collective == "reduce_scatter" else 1), seed=r + 101 * count, op=op)
    inputs = world.mpi_comm.allgather(x)
    if collective == "all_reduce":
        expected = reduce_reference(inputs, op, dtype, p)
        world.all_reduce(U(x, dtype), op=op, algorithm=alg)
        ok = matches(x, expected, dtype, op)
    elif collective == "reduce":
        expected = reduce_reference(inputs, op, dtype, p)
        out = np.zeros_like(x)
        world.reduce(U(x, dtype), U(out, dtype), root=root, op=op, algorithm=alg)
        ok = r != root or matches(out, expected, dtype, op)
    elif collective == "reduce_scatter":
        expected = reduce_reference(inputs, op, dtype, p)[r * count:(r + 1) * count]
        out = np.zeros(count, x.dtype)
        world.reduce_scatter(U(x, dtype), U(out, dtype), op=op, algorithm=alg)
        ok = matches(out, expected, dtype, op)
    else:
        world.broadcast(U(x, dtype), root=root, algorithm=alg)
        ok = np.array_equal(x, inputs[root])
    good, why = all_agree(world, ok, f"{collective} {alg} {op} {dtype} count={count} root={root}")
    assert good, why
