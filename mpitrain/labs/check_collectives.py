"""The checks of the collective exercises (ring all-reduce, binomial broadcast).

Each rank runs the student's function through a Context whose transport records every move,
then compares its buffer with MPI's own collective (the oracle). When a value is wrong it says
where: the rank, the element, and the first step after which the student's buffer differs from
what the library's algorithm (the reference) held after the same step. It also checks the shape
of the algorithm, which a correct result alone does not show: a ring talks to its two
neighbours only, 2(p - 1) times; a binomial tree lets no rank send more than ceil(log2 p) times.
"""
import math

import numpy as np
from mpi4py import MPI

from ..comm.context import Context, ScratchPool
from ..comm.dtypes import DTYPES
from .recording import Recorder

FLOAT64 = DTYPES["float64"]


def run_recorded(comm, function, buf, *args):
    """function(ctx, buf, *args) on comm's ranks, every move recorded; a rank that waits for a
    peer longer than the timeout has the job aborted with both ranks named."""
    recorder = Recorder(comm.transport, buf)
    ctx = Context(comm.rank, comm.size, recorder, FLOAT64, "sum", ScratchPool())
    comm.watchdog.begin((function.__name__, 1, "yours"))
    try:
        function(ctx, buf, *args)
    finally:
        comm.watchdog.end()
    recorder.finish()
    return recorder


def describe_move(move):
    kind, dest, sent, source, received = move
    parts = []
    if dest is not None:
        parts.append(f"{sent} element(s) to rank {dest}")
    if source is not None:
        parts.append(f"{received} from rank {source}")
    return f"{kind}: {', '.join(parts)}"


def departure(yours, reference):
    """Where the student's buffer first differs from the reference's, step by step, or None."""
    steps = len(reference.moves)
    for step, (a, b) in enumerate(zip(yours.snapshots[1:], reference.snapshots[1:]), start=1):
        if not np.array_equal(a, b):
            j = int(np.flatnonzero(a != b)[0])
            move = describe_move(yours.moves[step - 1]) if step <= len(yours.moves) else "the end"
            return (f"your buffer first differs from the reference's after step {step} of "
                    f"{steps} ({move}, and what you did with it): element {j} is {a[j]:g} "
                    f"there, {b[j]:g} in the reference")
    if len(yours.moves) != steps:
        return f"your run took {len(yours.moves)} step(s), the reference {steps}"
    return None


def wrong_values(rank, got, want, what, yours, reference):
    wrong = np.flatnonzero(got != want)
    if not wrong.size:
        return None
    i = int(wrong[0])
    where = departure(yours, reference)
    return (f"rank {rank}, element {i} of {got.shape[0]}: {got[i]:g}, {what} gives {want[i]:g}"
            f" ({wrong.size} element(s) wrong)" + (f"; {where}" if where else ""))


def ints(rng, n):
    """Small non-zero integers as float64: every sum is exact, so any difference is a real
    error, and a value overwritten instead of added always shows."""
    return (rng.integers(1, 9, n) * rng.choice([-1, 1], n)).astype(np.float64)


def check_ring(student, reference, comm, yours_comm, ref_comm):
    """Yield (case, this rank's problem or None) for each case in turn."""
    p, r = comm.size, comm.rank
    for n in (p, 2 * p + 1, 1000):
        case = f"{n} elements"
        x = ints(np.random.default_rng(7919 * p + 31 * n + r), n)
        want = np.empty_like(x)
        comm.mpi_comm.Allreduce(x, want, op=MPI.SUM)
        mine, ref = x.copy(), x.copy()
        yours = run_recorded(yours_comm, student.ring_all_reduce, mine)
        theirs = run_recorded(ref_comm, reference.ring_all_reduce, ref)
        problem = wrong_values(r, mine, want, "MPI_Allreduce", yours, theirs)
        if problem is None and p > 1:
            problem = ring_shape(r, p, n, yours)
        yield case, problem


def ring_shape(r, p, n, yours):
    right, left = (r + 1) % p, (r - 1) % p
    sent, received = yours.sent_to(), yours.received_from()
    strangers = sorted({d for d, _ in sent if d != right} | {s for s, _ in received if s != left})
    if strangers:
        return (f"rank {r} talked to rank(s) {strangers}; in a ring rank {r} sends only to its "
                f"right neighbour {right} and receives only from its left neighbour {left}")
    if len(sent) != 2 * (p - 1):
        return (f"rank {r} sent {len(sent)} message(s); a ring sends 2(p - 1) = {2 * (p - 1)}: "
                f"p - 1 in the reduce-scatter, p - 1 in the all-gather")
    block = math.ceil(n / p)
    total = sum(count for _, count in sent)
    if total > 2 * (p - 1) * block:
        return (f"rank {r} sent {total} elements in all for a buffer of {n}; a ring sends one "
                f"block (at most {block}) per step, {2 * (p - 1) * block} at most")
    return None


def check_broadcast(student, reference, comm, yours_comm, ref_comm):
    p, r = comm.size, comm.rank
    n = 5
    for root in range(p):
        case = f"root {root}"
        mine = ints(np.random.default_rng(104729 + root), n) if r == root else np.full(n, -99.0)
        want = mine.copy()
        comm.mpi_comm.Bcast(want, root=root)
        ref = mine.copy()
        yours = run_recorded(yours_comm, student.binomial_broadcast, mine, root)
        theirs = run_recorded(ref_comm, reference.binomial_broadcast, ref, root)
        problem = wrong_values(r, mine, want, "MPI_Bcast", yours, theirs)
        if problem is None and p > 1:
            problem = tree_shape(r, p, root, yours)
        yield case, problem


def tree_shape(r, p, root, yours):
    sent, received = yours.sent_to(), yours.received_from()
    rounds = math.ceil(math.log2(p))
    if r == root and received:
        return f"rank {r} is the root ({root}) but received {len(received)} message(s)"
    if r != root and len(received) != 1:
        return (f"rank {r} received {len(received)} message(s); in a broadcast tree every rank "
                f"but the root receives exactly once")
    if len(sent) > rounds:
        return (f"rank {r} sent {len(sent)} messages; in a binomial tree no rank sends more than "
                f"ceil(log2 {p}) = {rounds} (the root sending to everyone is the linear "
                f"broadcast)")
    return None
