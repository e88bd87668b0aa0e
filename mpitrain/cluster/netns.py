"""The emulated cluster itself: one Linux network namespace per node, joined by veth pairs on a
bridge, on a subnet that exists only on that bridge.

    cluster = Cluster.create(nodes=2, link="1gbit")    # needs root (CAP_NET_ADMIN)
    cluster.set_link("node1", "down")                  # a fault: node1's cable pulled
    cluster.destroy()

Node k is the namespace `mtc-nodek` with hostname `nodek` (its own UTS namespace is made by the
launch agent, agent.py), address 10.213.97.(k+1) on its `eth0`; the root namespace holds the bridge
`mtc-br` with 10.213.97.254, so mpiexec, which runs there, reaches every node's daemon. No route
leads off the bridge: traffic stays on this machine, between these namespaces.
State (nodes, link, hostfile, agent, and the pid of the `run` that made it, 0 for `up`) is kept
in STATE_DIR/state.json, so `down` and a later `up` find what an earlier command made, also
after a killed run; a cluster whose `run` is dead, or whose namespaces are gone, is abandoned.
"""
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .links import parse_rate, tbf_args
from .. import settings

PREFIX = "mtc-"                       # every namespace and link this tool makes starts with it
BRIDGE = PREFIX + "br"
SUBNET = "10.213.97.0/24"
HOST_ADDRESS = "10.213.97.254"
MAX_NODES = 16                        # each node is a few daemons and ranks on 2 cores
STATE_DIR = Path(settings.get("MPITRAIN_CLUSTER_DIR"))


class ClusterError(RuntimeError):
    """The cluster cannot be made or used here; the message says why in one line."""


def node_name(k):
    return f"node{k}"


def node_address(k):
    return f"10.213.97.{k + 1}"


def sh(*args, check=True):
    """Run one ip/tc command; a failure becomes a ClusterError naming the command."""
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(args)}: {proc.stderr.strip() or 'failed'}")
    return proc


def can_make_namespaces():
    """None when namespaces, veth and a bridge can be made here, else the reason in one line."""
    if os.geteuid() != 0:
        return "the emulated cluster needs root (CAP_NET_ADMIN to make network namespaces)"
    for tool in ("ip", "tc", "unshare"):
        if shutil.which(tool) is None:
            return f"the emulated cluster needs `{tool}` (iproute2 / util-linux), not found on PATH"
    probe = PREFIX + "probe"
    proc = sh("ip", "netns", "add", probe, check=False)
    if proc.returncode != 0:
        return f"cannot make a network namespace here: {proc.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


def leftovers():
    """Namespaces and links of this tool that exist now (from this or a killed run)."""
    names = sh("ip", "netns", "list", check=False).stdout.split()
    spaces = [n for n in names if n.startswith(PREFIX)]
    links = [line.split(":")[1].strip().split("@")[0]
             for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines()
             if line.split(":")[1].strip().startswith(PREFIX)]
    return spaces, links


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Cluster:
    nodes: int
    link: str                         # the rate as given, e.g. "1gbit", or "none"
    hostfile: str = ""
    agent: str = ""
    owner: int = 0                    # pid of the `run` that made it and removes it; 0: `up`

    @property
    def names(self):
        return [node_name(k) for k in range(self.nodes)]

    # ------------------------------------------------------------------ making and removing
    @classmethod
    def create(cls, nodes, link, ranks_per_node=1, owner=0):
        if not 1 <= nodes <= MAX_NODES:
            raise ClusterError(f"--nodes {nodes}: this tool makes 1 to {MAX_NODES} nodes")
        parse_rate(link)                                  # a bad rate fails before anything is made
        reason = can_make_namespaces()
        if reason:
            raise ClusterError(reason)
        spaces, links = leftovers()
        if spaces or links:
            raise ClusterError(f"a cluster already exists ({', '.join(spaces + links)}); "
                               f"`python -m mpitrain.cluster down` removes it")
        cluster = cls(nodes, link, owner=owner)
        try:
            cluster._make(ranks_per_node)
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _make(self, ranks_per_node):
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for k, name in enumerate(self.names):
            space, outside = PREFIX + name, f"{PREFIX}{name}-br"
            sh("ip", "netns", "add", space)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", space)
            sh("ip", "link", "set", outside, "master", BRIDGE, "up")
            inside = ("ip", "netns", "exec", space)
            sh(*inside, "ip", "addr", "add", f"{node_address(k)}/24", "dev", "eth0")
            sh(*inside, "ip", "link", "set", "eth0", "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
            self._shape(k, self.link)
        self.hostfile = str(STATE_DIR / "hostfile")
        Path(self.hostfile).write_text("".join(f"{n} slots={ranks_per_node}\n" for n in self.names))
        self.agent = str(STATE_DIR / "agent")
        write_agent(self.agent)
        self.save()

    def destroy(self):
        """Remove every namespace, link and file of this tool, whatever made them."""
        spaces, links = leftovers()
        for space in spaces:          # processes left inside (a job cut off by a pulled link)
            for pid in sh("ip", "netns", "pids", space, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", space, check=False)
        for link in links:
            sh("ip", "link", "del", link, check=False)
        shutil.rmtree(STATE_DIR, ignore_errors=True)

    # ------------------------------------------------------------------ state between commands
    def save(self):
        (STATE_DIR / "state.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls):
        """The cluster an earlier `up` made, or None."""
        try:
            return cls(**json.loads((STATE_DIR / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def abandoned(self):
        """Why this cluster is a leftover nobody will remove (its `run` was killed, or its
        namespaces are gone), or None while it is in use or was made by `up`."""
        if self.owner and not process_alive(self.owner):
            return f"the run (pid {self.owner}) that made it is gone"
        spaces, _ = leftovers()
        missing = [n for n in self.names if PREFIX + n not in spaces]
        if missing:
            return f"its namespaces {', '.join(PREFIX + n for n in missing)} are gone"
        return None

    # ------------------------------------------------------------------ links
    def _shape(self, k, link):
        inside = ("ip", "netns", "exec", PREFIX + node_name(k))
        sh(*inside, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        bits = parse_rate(link)
        if bits is not None:
            sh(*inside, "tc", "qdisc", "add", "dev", "eth0", "root", *tbf_args(bits))

    def set_link(self, node, state):
        """A node's link: 'down' (pulled), 'up' (back), or a rate (reshaped, e.g. '8kbit')."""
        if node not in self.names:
            raise ClusterError(f"node {node!r}: this cluster has {', '.join(self.names)}")
        k = self.names.index(node)
        if state in ("down", "up"):
            sh("ip", "link", "set", f"{PREFIX}{node}-br", state)
        else:
            self._shape(k, state)


AGENT = """#!{python}
# Launch agent of mpitrain's emulated cluster: mpiexec calls it as it would call ssh
# (AGENT [options] HOST COMMAND...); mpitrain/cluster/agent.py says what it does.
import sys
sys.path.insert(0, {root!r})
from mpitrain.cluster.agent import main
sys.exit(main(sys.argv[1:]))
"""


def write_agent(path):
    root = str(Path(__file__).resolve().parents[2])
    Path(path).write_text(AGENT.format(python=sys.executable, root=root))
    os.chmod(path, 0o755)
