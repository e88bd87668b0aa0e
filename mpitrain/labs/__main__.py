"""python -m mpitrain.labs list | check NAME FILE [--ranks 1-5] [--timeout S]

Without an MPI launcher around it, `check` starts `mpiexec -n MAX(ranks)` on itself."""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from . import exercises
from .check import run, under_mpi_launcher
from ..mpiexec import find_mpiexec


def parse_sizes(text):
    """'1-5' or '2,3' -> [1, 2, 3, 4, 5] / [2, 3]; a clear error for anything else."""
    sizes = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            sizes.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SystemExit(f"mpitrain.labs: --ranks {text!r}: give sizes like 1-5 or 2,3") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"mpitrain.labs: --ranks {text!r}: world sizes start at 1")
    return sorted(set(sizes))


def launch(args, sizes):
    """Start this check under mpiexec with as many ranks as the largest size."""
    from ..cluster.launch import environment               # Open MPI as root
    try:
        start = find_mpiexec(oversubscribe=True)          # 5 ranks on a 2-core laptop
    except OSError:
        print(f"mpitrain.labs: {find_mpiexec()[0]} cannot be run: install an MPI (make install) "
              f"or name one with MPITRAIN_MPIEXEC", file=sys.stderr)
        return 2
    limit = 60 + 20 * args.timeout
    with tempfile.TemporaryDirectory() as tmp:
        # the verdict comes back in a file, so that the ranks exit 0 and mpiexec adds no banner
        result = Path(tmp) / "verdict"
        command = [*start, "-n", str(max(sizes)), sys.executable, "-m", "mpitrain.labs", "check",
                   args.name, args.file, "--ranks", args.ranks, "--timeout", str(args.timeout),
                   "--result-file", str(result)]
        try:
            rc = subprocess.run(command, env=environment(), timeout=limit).returncode
        except subprocess.TimeoutExpired:
            print(f"mpitrain.labs: the check did not end in {limit:g} s (a loop that never "
                  f"ends?)", file=sys.stderr)
            return 1
        return int(result.read_text()) if rc == 0 and result.exists() else (rc or 1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpitrain.labs", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="the exercises, their skeletons and reference solutions")
    p = sub.add_parser("check", help="check a solution against the oracles")
    p.add_argument("name", help="the exercise: " + ", ".join(exercises()))
    p.add_argument("file", help="the solution file")
    p.add_argument("--ranks", default="1-5", help="world sizes to check at (default 1-5)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds a rank may wait for a message before the job is aborted")
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = exercises()
    if args.verb == "list":
        for e in known.values():
            print(f"{e.name:10s} {e.what}\n{'':10s} start from examples/labs/exercises/"
                  f"{e.skeleton}; the reference is mpitrain/{e.reference} ({e.function})")
        return 0
    if args.name not in known:
        print(f"mpitrain.labs: no exercise {args.name!r}; there are {', '.join(known)}",
              file=sys.stderr)
        return 2
    if not Path(args.file).is_file():
        print(f"mpitrain.labs: {args.file}: no such file", file=sys.stderr)
        return 2
    sizes = parse_sizes(args.ranks)
    if not under_mpi_launcher() and max(sizes) > 1:
        return launch(args, sizes)
    rc = run(known[args.name], args.file, sizes, args.timeout)
    if args.result_file is None:
        return rc
    from mpi4py import MPI
    if MPI.COMM_WORLD.Get_rank() == 0:
        Path(args.result_file).write_text(str(rc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
