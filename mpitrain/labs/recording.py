"""A transport that passes every move on and notes it: to whom, how many elements, and what the
watched buffer held after it. The checker compares a student's notes with the reference's.

    recorder = Recorder(world.transport, watched=buf)
    ctx = Context(rank, size, recorder, dtype, "sum", ScratchPool())
    ring_all_reduce(ctx, buf)
    recorder.moves       # [("sendrecv", 1, 3, 2, 3), ...]: kind, to, elements sent, from, received
    recorder.snapshots   # buf before the first move, before each later one, and at the end:
                         # snapshots[k] is buf after step k (a move and the work after it)
"""


class Recorder:
    def __init__(self, inner, watched):
        self.inner = inner
        self.watched = watched
        self.moves = []
        self.snapshots = []

    def send(self, buf, dest):
        self._note("send", dest, buf.shape[0], None, 0)
        self.inner.send(buf, dest)

    def recv(self, buf, source):
        self._note("recv", None, 0, source, buf.shape[0])
        self.inner.recv(buf, source)

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        self._note("sendrecv", dest, sendbuf.shape[0], source, recvbuf.shape[0])
        self.inner.sendrecv(sendbuf, dest, recvbuf, source)

    def _note(self, kind, dest, sent, source, received):
        self.snapshots.append(self.watched.copy())      # the work since the last move is done
        self.moves.append((kind, dest, sent, source, received))

    def finish(self):
        self.snapshots.append(self.watched.copy())

    def sent_to(self):
        """(peer, elements) of every message this rank sent, in order."""
        return [(dest, sent) for _, dest, sent, _, _ in self.moves if dest is not None]

    def received_from(self):
        return [(source, got) for _, _, _, source, got in self.moves if source is not None]
