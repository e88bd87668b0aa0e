"""python -m mpitrain.cluster: several nodes on one Linux machine, for multi-node runs and tests.

    python -m mpitrain.cluster up --nodes 2 --link 1gbit --ranks-per-node 2   # prints the hostfile
    python -m mpitrain.cluster run --nodes 2 --ranks-per-node 2 --link 1gbit -- python -m mpitrain.comm.info
    python -m mpitrain.cluster link node1 down          # or up, or a new rate: 8kbit
    python -m mpitrain.cluster down

`run` makes the cluster (or reuses one `up` made with the same nodes and link), launches the
command with mpiexec through the namespaces' launch agent, and removes what it made when the job
ends, fails or is interrupted. A cluster that a killed `run` left behind is removed by the next
`up` or `run`, which says so. Needs root; see docs/cluster.md.
"""
import argparse
import os
import signal
import subprocess
import sys

from .launch import environment, mpiexec_command
from .links import LinkError
from .netns import STATE_DIR, Cluster, ClusterError


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m mpitrain.cluster",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("up", "run"):
        p = sub.add_parser(verb)
        p.add_argument("--nodes", type=int, default=2, help="nodes (network namespaces), 1-16")
        p.add_argument("--link", default="1gbit",
                       help="each node's egress rate: 100mbit, 1gbit, 10gbit, ... or none")
        p.add_argument("--ranks-per-node", type=int, default=1, help="MPI ranks on each node")
        if verb == "run":
            p.add_argument("--mpiexec", default=None, help="the mpiexec to launch with")
            p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    p = sub.add_parser("link", help="set a node's link down, up, or to another rate")
    p.add_argument("node")
    p.add_argument("state", help="down, up, or a rate such as 8kbit")
    sub.add_parser("down", help="remove the cluster (and leftovers of a killed run)")
    return parser.parse_args(argv)


def up(args, owner=0):
    """The cluster ARGS ask for: the existing one if it matches, else a new one (made for the
    `run` of pid OWNER, or kept until `down` when OWNER is 0)."""
    existing = Cluster.load()
    why = existing.abandoned() if existing is not None else None
    if why:
        print(f"mpitrain.cluster: removing a cluster of {existing.nodes} nodes at {existing.link} "
              f"left behind ({why})", file=sys.stderr)
        existing.destroy()
        existing = None
    if existing is not None:
        if (existing.nodes, existing.link) == (args.nodes, args.link):
            return existing, False
        raise ClusterError(f"a cluster of {existing.nodes} nodes at {existing.link} exists; "
                           f"`python -m mpitrain.cluster down` first")
    if args.ranks_per_node < 1:
        raise ClusterError(f"--ranks-per-node {args.ranks_per_node}: must be >= 1")
    return Cluster.create(args.nodes, args.link, args.ranks_per_node, owner), True


def run(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ClusterError("run: no command given (python -m mpitrain.cluster run ... -- COMMAND)")
    cluster, made = up(args, owner=os.getpid())
    # the hostfile's slots follow this run's ranks per node
    with open(cluster.hostfile, "w") as f:
        f.writelines(f"{n} slots={args.ranks_per_node}\n" for n in cluster.names)
    interrupted = []

    def stop(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop)
    for marker in STATE_DIR.glob("lost-*"):
        marker.unlink()
    try:
        rc = subprocess.run(mpiexec_command(cluster, args.ranks_per_node, command, args.mpiexec),
                            env=environment()).returncode
        return report_lost_nodes(rc)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if made:
            cluster.destroy()


def report_lost_nodes(rc):
    """Say which nodes the launch agent gave up (their link stayed down); such a job failed even
    where mpiexec, having lost the daemon, exits 0."""
    lost = sorted(STATE_DIR.glob("lost-*"))
    for marker in lost:
        print(f"mpitrain.cluster: {marker.read_text().strip()}", file=sys.stderr)
    return rc or (255 if lost else 0)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.verb == "up":
            cluster, made = up(args)
            print(cluster.hostfile if made else f"{cluster.hostfile} (the cluster already exists)")
            return 0
        if args.verb == "run":
            return run(args)
        if args.verb == "link":
            cluster = Cluster.load()
            if cluster is None:
                raise ClusterError("no cluster is up (python -m mpitrain.cluster up ...)")
            cluster.set_link(args.node, args.state)
            return 0
        Cluster(0, "none").destroy()
        return 0
    except (ClusterError, LinkError) as exc:
        print(f"mpitrain.cluster: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
