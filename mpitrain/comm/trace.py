"""Tracing: what every step of an algorithm did, on every rank.

    with world.trace(snapshots=True) as trace:       # every rank, around the same calls
        world.all_reduce(x, algorithm="ring")
    events, snapshots = trace.gather()               # rank 0: every rank's records; others None

While a trace is open, every point-to-point move of the collectives is recorded as one event:
(collective, call, algorithm, step, kind, rank, peer, chunk, bytes, start, end). `chunk` is the
(first element, count) of the collective's buffer that moved, or None for scratch memory;
`start`/`end` are seconds since the trace opened (one clock per node: CLOCK_MONOTONIC). With
snapshots=True each rank also keeps a copy of the collective's buffer before its first step
and after each step (the reduce that follows a receive included; the last one is the result),
for small buffers only (SNAPSHOT_MAX elements): the input of the text diagram and step-through.

Tracing runs the Python version of every algorithm (the C fast lane of small all-reduces has no
steps to show) and costs a few microseconds per step. Renderers: trace_render.py.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

SNAPSHOT_MAX = 64


@dataclass
class Event:
    collective: str
    call: int
    algorithm: str
    step: int            # 1, 2, ... within this call on this rank
    kind: str            # send | recv | sendrecv
    rank: int
    peer: tuple          # (dest,), (source,) or (dest, source)
    chunk: tuple         # ((start, count) sent, (start, count) received), None for scratch
    bytes: int
    start: float
    end: float


class Trace:
    def __init__(self, world, snapshots):
        self.world = world
        self.snapshots_on = snapshots
        self.events = []
        self.snapshots = []      # (collective, call, algorithm, after_step, array copy)
        world.barrier()
        self.t0 = time.perf_counter()
        self._call = None        # [collective, call, algorithm, [buffers], step, watched array]

    # ---------------------------------------------------------------------- from the layers
    def begin(self, collective, call, algorithm, buffers):
        self._call = [collective, call, algorithm, [b for b in buffers if b is not None], 0, None]
        self._snapshot()

    def watch(self, array):
        """Context.working: the algorithm keeps this rank's state in `array` from now on (a
        reduce's partial sum, in scratch memory on every rank but the root); the snapshots show
        it instead of the call's output buffer, from the one before the first step on."""
        if self._call is None or not self.snapshots_on:
            return
        self._call[5] = array
        if self._call[4] == 0 and self.snapshots and self.snapshots[-1][:4] == (*self._call[:3], 0):
            self.snapshots.pop()                   # the state before the first step, again
        self._snapshot()

    def end(self):
        if self._call is not None:
            self._snapshot()                       # after the last step: the result
        self._call = None

    def move(self, kind, peer, sent, received, run):
        """Run one transport call and record it."""
        if self._call is None:
            return run()
        if self._call[4] > 0:
            self._snapshot()                       # the state after the previous step
        self._call[4] += 1
        start = time.perf_counter()
        run()
        end = time.perf_counter()
        nbytes = sum(a.nbytes for a in (sent, received) if a is not None)
        collective, call, algorithm, _, step, _ = self._call
        self.events.append(Event(
            collective=collective, call=call, algorithm=algorithm, step=step, kind=kind,
            rank=self.world.rank, peer=peer, chunk=(self._chunk(sent), self._chunk(received)),
            bytes=int(nbytes), start=start - self.t0, end=end - self.t0))

    def _chunk(self, array):
        """(first element, count) of `array` inside the collective's buffer(s), else None."""
        if array is None:
            return None
        address = _address(array)
        for buf in self._call[3]:
            base = _address(buf)
            if base <= address < base + max(1, buf.nbytes):
                return (int((address - base) // buf.itemsize), int(array.shape[0]))
        return None

    def _snapshot(self):
        """Keep (collective, call, algorithm, steps done so far, copy of the buffer)."""
        if not self.snapshots_on or not (self._call[3] or self._call[5] is not None):
            return
        buf = self._call[5] if self._call[5] is not None else self._call[3][-1]   # the output side
        if hasattr(buf, "shape") and buf.shape[0] <= SNAPSHOT_MAX:
            collective, call, algorithm, _, step, _ = self._call
            copy = buf.copy() if isinstance(buf, np.ndarray) else buf.detach().cpu().numpy()
            self.snapshots.append((collective, call, algorithm, step, copy))

    # ------------------------------------------------------------------------- afterwards
    def gather(self):
        """Rank 0 gets (events of every rank as dicts sorted by start, {rank: snapshots});
        the other ranks get (None, None). Collective."""
        events = self.world.gather_object([asdict(e) for e in self.events], root=0)
        snaps = self.world.gather_object(self.snapshots, root=0)
        if self.world.rank != 0:
            return None, None
        merged = sorted((e for per_rank in events for e in per_rank), key=lambda e: e["start"])
        return merged, dict(enumerate(snaps))


def _address(array):
    """numpy arrays and torch tensors (CPU or CUDA) alike."""
    if hasattr(array, "__array_interface__"):
        return array.__array_interface__["data"][0]
    return array.data_ptr()


class TracingTransport:
    """A transport that records each move in the open trace, then makes it with the real one."""

    def __init__(self, inner, trace):
        self.inner = inner
        self.trace = trace
        self.name = inner.name
        self.watchdog = inner.watchdog
        self.comm = inner.comm

    def send(self, buf, dest):
        self.trace.move("send", (dest,), buf, None, lambda: self.inner.send(buf, dest))

    def recv(self, buf, source):
        self.trace.move("recv", (source,), None, buf, lambda: self.inner.recv(buf, source))

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        self.trace.move("sendrecv", (dest, source), sendbuf, recvbuf,
                        lambda: self.inner.sendrecv(sendbuf, dest, recvbuf, source))
