"""Host transport: MPI point-to-point calls on host (numpy) memory, sent as raw bytes.

Every message of the collectives carries one tag on the communicator's private duplicate:
MPI delivers messages between one pair of ranks in the order they were sent, and every rank
runs the collectives in the same order, so sends and receives always pair up correctly.
"""
import ctypes

from mpi4py import MPI

from ...kernels.compiled import mpi_lib

BYTE = MPI.BYTE

DATA_TAG = 0x6D70
# MPI counts are C ints: a message of 2 GiB or more overflows them (MPI_ERR_ARG / MPI_ERR_COUNT).
# Larger messages travel as pieces of at most this many bytes; sender and receiver cut the same
# message the same way, and MPI keeps the pieces in order.
MAX_MESSAGE_BYTES = 1 << 30


def pieces(buf, limit=None):
    """A contiguous array as byte views of at most `limit` (MAX_MESSAGE_BYTES) bytes each."""
    limit = limit or MAX_MESSAGE_BYTES
    flat = buf.reshape(-1).view("u1")
    return [flat[i: i + limit] for i in range(0, flat.nbytes, limit)] or [flat]


class HostTransport:
    name = "mpi-host"

    def __init__(self, comm, watchdog):
        self.comm = comm            # a private duplicate of the user's communicator
        self.watchdog = watchdog
        # where the MPI_Comm handle lives, for C code calling MPI on the same communicator
        self.comm_address = MPI._addressof(comm)
        lib = mpi_lib()            # csrc/mpi_small.c, when built against this MPI
        self.compiled_doubling = lib.mt_mpi_all_reduce_doubling if lib is not None else None
        # the C recursive doubling stores the rank each of its blocking calls waits for here;
        # the watchdog reads it (a ctypes int has .value, as the watchdog expects of it)
        self.c_waiting_on = ctypes.c_int(-1)
        self.c_waiting_on_address = ctypes.addressof(self.c_waiting_on)

    # Each call first tells the watchdog whom it waits for (two attribute stores: this is the
    # hot path of small messages, so no method call there).
    def send(self, buf, dest):
        wd = self.watchdog
        wd.peers = (dest,)
        wd.progress += 1
        if buf.nbytes <= MAX_MESSAGE_BYTES:
            self.comm.Send([buf, BYTE], dest, DATA_TAG)
            return
        for piece in pieces(buf):
            self.comm.Send([piece, BYTE], dest, DATA_TAG)

    def recv(self, buf, source):
        wd = self.watchdog
        wd.peers = (source,)
        wd.progress += 1
        if buf.nbytes <= MAX_MESSAGE_BYTES:
            self.comm.Recv([buf, BYTE], source, DATA_TAG)
            return
        for piece in pieces(buf):
            self.comm.Recv([piece, BYTE], source, DATA_TAG)

    def sendrecv(self, sendbuf, dest, recvbuf, source):
        # Both sides start at once; the receive is waited for first, then the send, each with
        # its own peer named, so a stall names the one rank that did not answer.
        wd = self.watchdog
        comm = self.comm
        if max(sendbuf.nbytes, recvbuf.nbytes) <= MAX_MESSAGE_BYTES:
            receive = comm.Irecv([recvbuf, BYTE], source, DATA_TAG)
            send = comm.Isend([sendbuf, BYTE], dest, DATA_TAG)
            wd.peers = (source,)
            wd.progress += 1
            receive.Wait()
            wd.peers = (dest,)
            wd.progress += 1
            send.Wait()
            return
        receives = [comm.Irecv([p, BYTE], source, DATA_TAG) for p in pieces(recvbuf)]
        sends = [comm.Isend([p, BYTE], dest, DATA_TAG) for p in pieces(sendbuf)]
        wd.peers = (source,)
        wd.progress += 1
        MPI.Request.Waitall(receives)
        wd.peers = (dest,)
        wd.progress += 1
        MPI.Request.Waitall(sends)
