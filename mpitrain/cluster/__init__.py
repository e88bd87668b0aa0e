"""An emulated cluster on one Linux machine: nodes as network namespaces, links shaped with tc,
real MPI over TCP between them. A tool beside the runtime: nothing in comm/ or parallel/
imports it. `python -m mpitrain.cluster --help`; docs/cluster.md."""
from .links import LinkError, parse_rate
from .netns import Cluster, ClusterError, can_make_namespaces

__all__ = ["Cluster", "ClusterError", "LinkError", "can_make_namespaces", "parse_rate"]
