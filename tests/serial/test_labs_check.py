"""`python -m mpitrain.labs check`: the library's own files and filled-in skeletons pass at 1-5
ranks; broken solutions fail with the rank, the element and the step, or the shape that is
wrong; the skeletons as shipped fail by raising; a hang ends with the waiting ranks named."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpitrain.labs import exercises

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = Path(__file__).resolve().parent / "exercise_solutions"


def check(name, path, *flags, env=None, timeout=300):
    full = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "mpitrain.labs", "check", name, str(path), *flags],
                          capture_output=True, text=True, timeout=timeout, env=full, cwd=ROOT,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def passes(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout
    for k in range(1, 6):
        assert f"  {k} rank(s): OK" in proc.stdout, proc.stdout


def fails(proc, *words):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    for word in words:
        assert word in out, out


@pytest.mark.parametrize("name", sorted(exercises()))
def test_the_reference_solutions_are_the_library_files_and_pass(name):
    passes(check(name, ROOT / "mpitrain" / exercises()[name].reference))


@pytest.mark.parametrize("name, solution", [("ring", "ring_solved"), ("broadcast", "broadcast_solved"),
                                            ("buckets", "buckets_solved"), ("zero1", "zero1_solved")])
def test_a_skeleton_filled_in_as_its_text_says_passes(name, solution):
    passes(check(name, SOLUTIONS / f"{solution}.py"))


@pytest.mark.parametrize("name", sorted(exercises()))
def test_the_skeletons_as_shipped_fail_by_raising(name):
    skeleton = ROOT / "examples" / "labs" / "exercises" / exercises()[name].skeleton
    fails(check(name, skeleton, "--ranks", "2"), "raised NotImplementedError", "rank ")


def test_a_wrong_value_is_named_by_rank_element_and_step():
    proc = check("ring", SOLUTIONS / "ring_adds_nothing.py")
    fails(proc, "1 rank(s): OK", "2 rank(s): FAILED", "rank 0, element 0 of 2",
          "MPI_Allreduce gives", "first differs from the reference's after step 1 of 2")


def test_a_right_sum_by_the_wrong_algorithm_fails():
    fails(check("ring", SOLUTIONS / "ring_whole_buffer.py"), "2 rank(s): FAILED",
          "a ring sends 2(p - 1) = 2")
    fails(check("broadcast", SOLUTIONS / "broadcast_linear.py"), "3 rank(s): OK",
          "4 rank(s): FAILED", "rank 0 sent 3 messages", "ceil(log2 4) = 2")
    fails(check("buckets", SOLUTIONS / "buckets_per_parameter.py"), "2 rank(s): FAILED",
          "8 all-reduces for 8 parameters")
    fails(check("zero1", SOLUTIONS / "zero1_solved.py", env={"REPLICATED": "1"}),
          "2 rank(s): FAILED", "the optimizer keeps state for 2788 elements of the model's 2788")


def test_a_wrong_gradient_is_named_by_step_parameter_and_element():
    fails(check("buckets", SOLUTIONS / "buckets_solved.py", env={"SUM": "1"}),
          "2 rank(s): FAILED, step 1: rank 0: the gradient of 0.weight, element 0",
          "one process on the whole batch gives")


def test_a_solution_that_waits_forever_is_stopped_with_the_ranks_named():
    proc = check("broadcast", SOLUTIONS / "broadcast_waits_forever.py", "--timeout", "3",
                 timeout=120)
    fails(proc, "binomial_broadcast #1 (yours) has waited", "for rank 1, which has not arrived")


def test_bad_input_is_refused_by_name(tmp_path):
    fails(check("rings", SOLUTIONS / "ring_solved.py"), "no exercise 'rings'", "ring, ")
    fails(check("ring", tmp_path / "none.py"), "none.py: no such file")
    fails(check("ring", SOLUTIONS / "ring_solved.py", "--ranks", "x"), "--ranks 'x'")
    fails(check("ring", SOLUTIONS / "broadcast_solved.py", "--ranks", "1"),
          "defines no ring_all_reduce", "exercises/ring_all_reduce.py")
    listing = subprocess.run([sys.executable, "-m", "mpitrain.labs", "list"], capture_output=True,
                             text=True, check=True).stdout
    for e in exercises().values():
        assert e.skeleton in listing and e.reference in listing
        assert (ROOT / "examples" / "labs" / "exercises" / e.skeleton).is_file()
