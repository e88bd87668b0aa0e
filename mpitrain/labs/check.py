"""Run one exercise's check on the ranks of this job, at each world size asked for.

For each size k, the first k ranks split off a communicator of their own and run the check
there (one mpiexec serves every size). Every case ends with the ranks agreeing on the first
problem any of them saw; rank 0 prints one line per size and the job exits 1 at the first size
that fails.
"""
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]          # .../mpitrain


def load_solution(exercise, path):
    """The module in PATH; the library's own file is imported as the package module (its
    relative imports need that)."""
    reference_file = PACKAGE / exercise.reference
    if Path(path).resolve() == reference_file:
        return reference_module(exercise)
    spec = importlib.util.spec_from_file_location(f"student_{exercise.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_module(exercise):
    return importlib.import_module("mpitrain." + exercise.reference[:-3].replace("/", "."))


def check_at_size(exercise, student, reference, sub):
    """The first problem at this size, agreed by the k ranks of `sub` (None: all cases pass)."""
    yours_comm, ref_comm = sub.dup(), sub.dup()      # a stray message of yours stays in yours
    for case, problem in exercise.check(student, reference, sub, yours_comm, ref_comm):
        problems = [q for q in sub.mpi_comm.allgather(problem) if q]
        if problems:
            return f"{case}: {problems[0]}"
    return None


def abort_with(world, exercise, path, exc):
    """A student's exception on this rank: say where in their file, then end the job (the other
    ranks may be waiting for a message this rank will never send)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == Path(path).resolve()] or \
        traceback.extract_tb(exc.__traceback__)[-1:]
    where = "".join(traceback.format_list(frames[-3:]))
    sys.stderr.write(f"mpitrain.labs: rank {world.rank}: {exercise.function} raised "
                     f"{type(exc).__name__}: {exc}\n{where}")
    sys.stderr.flush()
    world.mpi_comm.Abort(1)


def run(exercise, path, sizes, timeout):
    from ..comm import init
    world = init(timeout=timeout, abort_on_error=True)
    try:
        student = load_solution(exercise, path)
    except Exception as exc:                       # a syntax error: every rank sees the same
        world.print0(f"mpitrain.labs: {path} cannot be loaded: {type(exc).__name__}: {exc}")
        return 2
    if not hasattr(student, exercise.function):
        world.print0(f"mpitrain.labs: {path} defines no {exercise.function} (the exercise "
                     f"{exercise.name!r} checks that name; start from "
                     f"examples/labs/exercises/{exercise.skeleton})")
        return 2
    reference = reference_module(exercise)
    world.print0(f"checking {exercise.function} in {path}: {exercise.what}")
    for k in sizes:
        if k > world.size:
            world.print0(f"  {k} rank(s): not run, the job has {world.size}")
            continue
        sub = world.split(0 if world.rank < k else 1)
        verdict = None
        if world.rank < k:
            try:
                verdict = check_at_size(exercise, student, reference, sub)
            except Exception as exc:
                abort_with(world, exercise, path, exc)
        verdict = world.mpi_comm.bcast(verdict, root=0)
        if verdict:
            world.print0(f"  {k} rank(s): FAILED, {verdict}")
            world.print0(f"FAILED: {exercise.function} at {k} rank(s)")
            return 1
        world.print0(f"  {k} rank(s): OK")
    world.print0(f"OK: {exercise.function} agrees with the oracle at "
                 f"{', '.join(str(k) for k in sizes if k <= world.size)} rank(s)")
    return 0


def under_mpi_launcher(env=None):
    """True when an MPI launcher started this process (Open MPI, MPICH/Intel hydra, PMIx)."""
    env = os.environ if env is None else env
    return any(k in env for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"))
