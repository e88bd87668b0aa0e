"""Recursive doubling all-reduce: log2(p) exchanges of the whole buffer. Few steps, so it wins on
small messages where latency dominates; every step moves everything, so it loses on large ones.

    step k: rank r exchanges its whole partial result with rank r XOR 2^k and combines.

A world that is not a power of two is folded first: of the first 2*rem ranks (rem = p - p2,
p2 the largest power of two <= p), each even rank hands its data to the odd rank above it and
sits out; the p2 survivors run the exchange; the result is handed back at the end.
"""
from ctypes import addressof, c_char

import numpy as np

from ...kernels.compiled import DTYPE_CODES, OP_CODES, check, mpi_lib


def fold_to_power_of_two(ctx, buf):
    """Returns (new_rank, p2, rem): this rank's number among the p2 survivors (-1 if it sits out)
    and rem; survivor n is real rank to_real(n, rem)."""
    p, r = ctx.size, ctx.rank
    p2 = 1 << (p.bit_length() - 1)
    rem = p - p2
    if r >= 2 * rem:                                 # always the case when p is a power of two
        return r - rem, p2, rem
    if r % 2 == 0:
        ctx.send(buf, r + 1)
        return -1, p2, rem
    incoming = ctx.scratch(buf.shape[0], slot=1)
    ctx.recv(incoming, r - 1)
    ctx.reduce(buf, incoming)
    return r // 2, p2, rem


def to_real(new_rank, rem):
    return new_rank * 2 + 1 if new_rank < rem else new_rank + rem


def unfold(ctx, buf, new_rank, rem):
    """Hand the result back to the ranks that sat out."""
    if ctx.rank < 2 * rem:
        if new_rank == -1:
            ctx.recv(buf, ctx.rank + 1)
        else:
            ctx.send(buf, ctx.rank - 1)


def recursive_doubling_all_reduce(ctx, buf):
    p2 = 1 << (ctx.size.bit_length() - 1)
    if p2 == ctx.size:                               # a power of two: nothing to fold
        new_rank, rem = ctx.rank, 0
    else:
        new_rank, p2, rem = fold_to_power_of_two(ctx, buf)
    if new_rank >= 0 and p2 > 1:
        incoming = ctx.scratch(buf.shape[0], slot=0)
        sendrecv, reduce = ctx.sendrecv, ctx.reduce
        mask = 1
        while mask < p2:
            peer = to_real(new_rank ^ mask, rem)
            sendrecv(buf, peer, incoming, peer)
            reduce(buf, incoming)
            mask <<= 1
    if rem:
        unfold(ctx, buf, new_rank, rem)


def recursive_doubling_c_all_reduce(ctx, buf):
    """The same algorithm in C (csrc/mpi_small.c): the MPI calls and reduce steps without the
    Python between them, for small messages where that Python is a third of the time. Host
    (numpy) buffers under 2 GB; anything else, or no compiled library, runs the Python version."""
    c_call = getattr(ctx.transport, "compiled_doubling", None)   # None: not usable here
    if c_call is None or type(buf) is not np.ndarray or not buf.shape[0] or buf.nbytes >= 2**31:
        return recursive_doubling_all_reduce(ctx, buf)
    incoming = ctx.scratch(buf.shape[0], slot=0)
    watchdog = ctx.transport.watchdog
    watchdog.peers = ctx.transport.c_waiting_on       # the C code stores its current peer there
    watchdog.progress += 1
    if c_call(ctx.transport.comm_address, addressof(c_char.from_buffer(buf)),   # (0.3 us; the
              addressof(c_char.from_buffer(incoming)),                       # array interface: 2)
              buf.shape[0], ctx.dtype.itemsize,
              DTYPE_CODES[ctx.dtype.name], OP_CODES[ctx.op], ctx.transport.c_waiting_on_address):
        check(mpi_lib(), -1)
