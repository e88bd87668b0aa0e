"""What every benchmark command shares: parse flags, run, print the table, save the JSON."""
import argparse
import json


def bench_main(prog, doc, add_arguments, run, show, argv=None):
    """Parse `argv` with the benchmark's flags (plus --json), run it, show the report."""
    parser = argparse.ArgumentParser(prog=f"python -m mpitrain.bench {prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    report = run(args)
    show(report, args)
    rank = report.get("rank", 0) if isinstance(report, dict) else 0     # MPI benchmarks: rank 0 writes
    if args.json and rank == 0:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report
