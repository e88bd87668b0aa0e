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
        if p > 1 and f"round {2 * (p - 1)} of {2 * (p - 1)}" not in trace_render.text_diagram(snapshots, events):
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


def rounds_of(world, call):
    """The number of rounds the whole job took for `call` (rank 0; None elsewhere)."""
    from mpitrain.comm.trace_rounds import number_rounds
    with world.trace(snapshots=True) as trace:
        call()
    events, snapshots = trace.gather()
    if world.rank != 0:
        return None, (None, None), None
    rounds, links = number_rounds(events)
    return max(rounds.values(), default=0), (events, links), snapshots


@pytest.mark.parametrize("algorithm, expected", [
    ("binomial", lambda p: (p - 1).bit_length()),       # ceil(log2 p)
    ("linear", lambda p: p - 1)])
def test_broadcast_rounds_and_the_value_doubling_each_round(world, algorithm, expected):
    """Rounds of the whole job (not steps per rank): a binomial tree doubles the ranks holding the
    root's value each round, in ceil(log2 p) rounds; the linear broadcast adds one a round."""
    p = world.size
    x = np.full(3, 7.0) if world.rank == 0 else np.zeros(3)
    last, (events, links), snapshots = rounds_of(
        world, lambda: world.broadcast(x, root=0, algorithm=algorithm))
    problems = []
    if world.rank == 0:
        if last != expected(p):
            problems.append(f"{last} rounds, expected {expected(p)}")
        if len(links) != sum(e["kind"] == "recv" for e in events):
            problems.append("a receive without its send")
        for send, recv in links:
            if (send["rank"], send["peer"][0]) != (recv["peer"][0], recv["rank"]):
                problems.append(f"send {send['rank']}->{send['peer']} paired with recv at {recv['rank']}")
        frames = trace_render.frames(snapshots, events)
        for k, frame in enumerate(frames):
            holding = sum("[     7      7      7 ]" in line for line in frame.splitlines()[1:])
            want = min(2 ** k, p) if algorithm == "binomial" else min(k + 1, p)
            if holding != want:
                problems.append(f"round {k}: {holding} ranks hold the value, expected {want}")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why


def test_reduce_shows_every_partial_sum_and_the_roots_own_input(world):
    """The binomial reduce keeps non-roots' partial sums in scratch memory: the trace shows them
    (Context.working), and the root's row starts at its own input, not at the empty output."""
    p, r = world.size, world.rank
    y = np.full(2, float(r + 1))
    total = np.zeros(2)
    last, (events, _), snapshots = rounds_of(
        world, lambda: world.reduce(y, total, root=0, algorithm="binomial"))
    problems = []
    if r == 0:
        if last != (p - 1).bit_length():
            problems.append(f"{last} rounds, expected ceil(log2 {p})")
        for rank, snaps in snapshots.items():
            first, final = snaps[0][4], snaps[-1][4]
            if not np.array_equal(first, np.full(2, rank + 1.0)):
                problems.append(f"rank {rank} starts at {first}, its input is {rank + 1}")
            # a rank's last state: the sum over its binomial subtree [rank, rank + lowbit)
            span = 1 << (p - 1).bit_length() if rank == 0 else rank & -rank
            want = sum(k + 1 for k in range(rank, min(rank + span, p)))
            if not np.array_equal(final, np.full(2, float(want))):
                problems.append(f"rank {rank} ends at {final}, its subtree sums to {want}")
    ok, why = all_agree(world, not problems, "; ".join(problems))
    assert ok, why
