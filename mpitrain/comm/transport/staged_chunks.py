"""One direction of a staged exchange, for one of the two paths (staged.py says why each):

    MessageSender / MessageReceiver   chunks as MPI messages between pinned stages
    WindowSender / WindowReceiver     chunks in the sender's stage of the shared window; MPI
                                      carries the notes "chunk k is in stage s" (sender to
                                      receiver) and "stage s is free" (receiver to sender)

A sender gives the stage chunk k goes to (after waiting until the stage is free) and announces
it once the copy to the host is done; a receiver posts its receive for chunk k and copies it to
the GPU on the caller's stream when it has arrived. `idle` is what a receiver must keep doing
while its rank waits for anything: a window receiver frees the stages it has copied out, since
the sender may be waiting for a free stage to send what this rank waits for.
"""
import numpy as np
from mpi4py import MPI

from .host import DATA_TAG

BYTE = MPI.BYTE
STAGES = 3                       # per direction and pair
NOTE_TAG, FREE_TAG = 0x6D73, 0x6D74


def _note(k):
    return [np.array([k], np.int64), MPI.INT64_T]


def _note_slot():
    return [np.empty(1, np.int64), MPI.INT64_T]


class MessageSender:
    def __init__(self, comm, stages, dest):
        self.comm, self.stages, self.dest = comm, stages, dest
        self.requests = [None] * STAGES          # the Isend of stage i

    def stage(self, i, nbytes, wait):
        if self.requests[i] is not None:
            wait(self.requests[i])
        return self.stages.send[i][:nbytes]

    def announce(self, k, i, nbytes):
        self.requests[i] = self.comm.Isend([self.stages.send_np[i][:nbytes], BYTE], self.dest,
                                           DATA_TAG)


class WindowSender:
    def __init__(self, comm, window, dest):
        self.comm, self.window, self.dest = comm, window, dest
        self.requests = [None] * STAGES          # "stage i is free" from dest

    def stage(self, i, nbytes, wait):
        if self.requests[i] is not None:         # dest has copied chunk k - STAGES out
            wait(self.requests[i])
        return self.window.stage(self.comm.Get_rank(), self.dest, i, nbytes)

    def announce(self, k, i, nbytes):
        self.comm.Send(_note(k), self.dest, NOTE_TAG)
        self.requests[i] = self.comm.Irecv(_note_slot(), self.dest, FREE_TAG)


class MessageReceiver:
    shared = False

    def __init__(self, comm, stages, source, into, chunk):
        self.comm, self.stages, self.source, self.into, self.chunk = comm, stages, source, into, chunk

    def post(self, k):
        i = k % STAGES
        if self.stages.reading[i]:               # the GPU may still read this stage
            self.stages.copied_in[i].synchronize()
            self.stages.reading[i] = False
        size = min(self.chunk, self.into.numel() - k * self.chunk)
        return self.comm.Irecv([self.stages.recv_np[i][:size], BYTE], self.source, DATA_TAG)

    def take(self, k, i, part, caller):
        if part.numel():
            part.copy_(self.stages.recv[i][:part.numel()], non_blocking=True)
            self.stages.copied_in[i].record(caller)
            self.stages.reading[i] = True

    def idle(self, block):
        pass


class WindowReceiver:
    shared = True

    def __init__(self, comm, window, source, copied_in):
        self.comm, self.window, self.source = comm, window, source
        self.copied_in = copied_in               # events: the H2D out of stage i is done
        self.unfreed = []                        # chunks copied out, their stage not yet freed

    def post(self, k):
        return self.comm.Irecv(_note_slot(), self.source, NOTE_TAG)

    def take(self, k, i, part, caller):
        self.idle(block=False)
        if part.numel():
            part.copy_(self.window.stage(self.source, self.comm.Get_rank(), i, part.numel()),
                       non_blocking=True)                       # H2D, in the caller's order
        self.copied_in[i].record(caller)
        self.unfreed.append(k)

    def idle(self, block):
        """Tell the source which stages it may reuse (their H2D is done)."""
        while self.unfreed and (block or self.copied_in[self.unfreed[0] % STAGES].query()):
            k = self.unfreed.pop(0)
            self.copied_in[k % STAGES].synchronize()
            self.comm.Send(_note(k), self.source, FREE_TAG)
