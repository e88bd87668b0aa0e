"""Exercises for the labs, and their checker.

    python -m mpitrain.labs list
    python -m mpitrain.labs check ring my_ring.py        # starts mpiexec at 1-5 ranks itself
    mpiexec -n 3 python -m mpitrain.labs check ring my_ring.py --ranks 3

A student copies a skeleton from examples/labs/exercises/, fills it in, and checks it: the
student's function runs on every rank against the oracle (MPI's own collective, or one process
on the whole batch), and the first wrong element is reported with its rank and step. The
reference solutions are the library's own files: `check ring mpitrain/comm/algorithms/ring.py`
passes. See docs/labs-and-tracing.md.
"""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Exercise:
    name: str              # what the student types: check NAME FILE
    function: str          # the name the student's file must define
    reference: str         # the library's file with the same name in it (under mpitrain/)
    skeleton: str          # the file to start from, in examples/labs/exercises/
    what: str
    check: Callable        # check(student, reference, comm, yours_comm, ref_comm) -> (case, problem)...


def exercises():
    from .check_collectives import check_broadcast, check_ring
    from .check_training import check_buckets, check_zero1
    return {e.name: e for e in (
        Exercise("ring", "ring_all_reduce", "comm/algorithms/ring.py", "ring_all_reduce.py",
                 "ring all-reduce: reduce-scatter then all-gather, 2(p-1) steps", check_ring),
        Exercise("broadcast", "binomial_broadcast", "comm/algorithms/binomial.py",
                 "binomial_broadcast.py", "binomial-tree broadcast from any root, ceil(log2 p) "
                 "rounds", check_broadcast),
        Exercise("buckets", "DataParallel", "parallel/data_parallel.py",
                 "bucketed_data_parallel.py", "data parallel with gradient buckets "
                 "all-reduced as they fill in backward", check_buckets),
        Exercise("zero1", "Zero", "parallel/zero.py", "zero1.py",
                 "a ZeRO-1 step: reduce-scatter the gradient, update this rank's shard, "
                 "all-gather the parameters", check_zero1),
    )}
