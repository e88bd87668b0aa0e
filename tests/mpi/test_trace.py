"""Tracing records what each algorithm step moved; oracles: the algorithm's own schedule (the
ring's block formulas) and MPI_Allreduce for the final snapshot."""
import json

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain.comm import trace_render
from mpitrain.comm.algorithms.blocks import even_counts, offsets

from oracles import all_agree

pytestmark = pytest.mark.mpi


def test_ring_trace_matches_the_ring_schedule(world, tmp_path):
    p, r = world.size, world.rank
    x = (np.arange(4 * p) + 100 * r).astype(np.float64)
    oracle = np.empty_like(x)
    world.mpi_comm.Allreduce(x, oracle, op=MPI.SUM)
    with world.trace(snapshots=True) as trace:
        world.all_reduce(x, algorithm="ring")
    mine = [e for e in trace.events if e.rank == r]
    offs = offsets(even_counts(x.shape[0], p))
    problems = []
    if len(mine) != 2 * (p - 1):
        problems.append(f"{len(mine)} moves, expected {2 * (p - 1)}")
    for e in mine[: p - 1]:                                  # reduce-scatter: block r - s - 1 out
        s = e.step - 1
        block = (r - s - 1) % p
        if e.chunk[0] != (offs[block], offs[block + 1] - offs[block]) or e.peer != ((r + 1) % p, (r - 1) % p):
            problems.append(f"step {e.step}: sent {e.chunk[0]} to {e.peer}")
    final = trace.snapshots[-1] if trace.snapshots else None
    if final is None or final[3] != len(mine) or not np.array_equal(final[4], oracle):
        problems.append("the final snapshot is not MPI's result")
    events, snapshots = trace.gather()
    if r == 0:
        if len(events) != p * 2 * (p - 1) or sorted(snapshots) != list(range(p)):
            problems.append(f"gathered {len(events)} events from {sorted(snapshots)}")
        text = trace_render.text_diagram(snapshots)
        if p > 1 and f"after step {2 * (p - 1)}" not in text:
            problems.append("the diagram lacks the last step")
        trace_render.write_chrome_trace(events, tmp_path / "t.json")
        moves = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e["ph"] == "X"]
        if len(moves) != len(events):
            problems.append("the Chrome trace lost events")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


def test_tracing_is_off_after_the_block(world):
    x = np.ones(8)
    with world.trace() as trace:
        world.all_reduce(x, algorithm="recursive_doubling")
    n = len(trace.events)
    world.all_reduce(x)
    world.broadcast(x, root=0)
    ok, why = all_agree(world, len(trace.events) == n and world._trace is None, "still tracing")
    assert ok, why


def test_every_collective_can_be_traced(world):
    p, r = world.size, world.rank
    k = 3
    with world.trace(snapshots=True) as trace:
        world.broadcast(np.zeros(k), root=p - 1)
        world.reduce(np.ones(k), np.zeros(k), root=0)
        world.reduce_scatter(np.ones(k * p), np.zeros(k))
        world.all_gather(np.ones(k), np.zeros(k * p))
        world.scatter(np.ones(k * p) if r == 0 else None, np.zeros(k), root=0)
        world.gather(np.ones(k), np.zeros(k * p) if r == 0 else None, root=0)
    names = {e.collective for e in trace.events}
    expected = {"broadcast", "reduce", "reduce_scatter", "all_gather", "scatter", "gather"}
    ok, why = all_agree(world, p == 1 or names == expected, f"traced {sorted(names)}")
    assert ok, why
