"""Two transports under one communicator, chosen per pair of ranks: `near` for the pairs that
share a node (CUDA IPC), `far` for the others (device pointers to a CUDA-aware MPI, or host
staging). The communicator builds it when its ranks span nodes and some of them share one.

A ring step may send to a rank of this node and receive from a rank of another (or the other
way round), so one sendrecv can need both. The order that cannot deadlock:
  - IPC out, far in: offer the IPC data first (a note, no wait: near.send_start), then receive
    over far, then wait for the IPC reader (near.send_finish);
  - far out, IPC in: send over far, then pull the IPC data (its sender offered it before it
    blocked on anything).
Every rank offers its IPC data before it blocks, so an IPC wait never waits on a far move that
waits on it; the far moves pair up among themselves as they do without IPC.
"""
from .one_call import OneCall


class MixedTransport(OneCall):
    name = "mixed"

    def __init__(self, near, far, near_peers):
        self.near, self.far = near, far
        self.comm, self.watchdog = far.comm, far.watchdog      # one communicator under both
        self.near_peers = frozenset(near_peers)
        self.peer_reason = near.peer_reason or "ranks span nodes"

    def path_to(self, peer):
        if peer in self.near_peers:
            return f"{self.near.name} (same node)"
        far = getattr(self.far, "path_to", None)
        return f"{self.far.name}, {far(peer)}" if far else self.far.name

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        near_out = sendbuf is not None and dest in self.near_peers
        near_in = recvbuf is not None and source in self.near_peers
        far_out = sendbuf is not None and not near_out
        far_in = recvbuf is not None and not near_in
        if recvbuf is None:
            return (self.near if near_out else self.far).send(sendbuf, dest)
        if sendbuf is None:
            return (self.near if near_in else self.far).recv(recvbuf, source)
        if not (far_out or far_in):
            return self.near.sendrecv(sendbuf, dest, recvbuf, source)
        if not (near_out or near_in):
            return self.far.sendrecv(sendbuf, dest, recvbuf, source)
        if near_out:                         # IPC out, far in
            offered = self.near.send_start(sendbuf, dest)
            self.far.recv(recvbuf, source)
            self.near.send_finish(offered)
        else:                                # far out, IPC in
            self.far.send(sendbuf, dest)
            self.near.recv(recvbuf, source)
