"""Ring algorithms: reduce-scatter, all-gather, and all-reduce as one then the other.

Ranks form a ring r -> r+1. The buffer is cut into p blocks. In p - 1 steps every rank sends one
block to its right neighbour while receiving one from its left, so each link carries
(p - 1)/p of the buffer per phase whatever p is: bandwidth-optimal, latency p - 1 steps.

    reduce-scatter, step s: send block (r - s - 1), receive block (r - s - 2) and combine it in;
                            after p - 1 steps rank r holds block r fully reduced.
    all-gather,     step s: send block (r - s), receive block (r - s - 1).

Step through it: mpiexec -n 4 python examples/labs/03_ring.py
"""
from .blocks import even_counts, offsets


def ring_all_gather_inplace(ctx, buf, counts, owner_shift=0):
    """buf holds p blocks (sizes `counts`); rank r starts with block (r - owner_shift) mod p and
    ends with all of them."""
    p, r = ctx.size, ctx.rank
    offs = offsets(counts)
    right, left = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):
        sb = (r - owner_shift - s) % p
        rb = (r - owner_shift - s - 1) % p
        ctx.sendrecv(buf[offs[sb]: offs[sb + 1]], right, buf[offs[rb]: offs[rb + 1]], left)


def ring_all_reduce(ctx, buf):
    p, r = ctx.size, ctx.rank
    counts = even_counts(buf.shape[0], p)
    offs = offsets(counts)
    right, left = (r + 1) % p, (r - 1) % p
    incoming_all = ctx.scratch(max(counts))
    for s in range(p - 1):                                       # reduce-scatter, in place
        sb = (r - s - 1) % p
        rb = (r - s - 2) % p
        incoming = incoming_all[: counts[rb]]
        ctx.sendrecv(buf[offs[sb]: offs[sb + 1]], right, incoming, left)
        ctx.reduce(buf[offs[rb]: offs[rb + 1]], incoming)
    ring_all_gather_inplace(ctx, buf, counts)                    # rank r now owns block r


def ring_reduce_scatter(ctx, sendbuf, recvbuf, counts):
    """sendbuf holds p blocks of sizes `counts`; rank r receives block r reduced over all ranks.
    sendbuf is only read: partial sums travel through two scratch buffers."""
    p, r = ctx.size, ctx.rank
    offs = offsets(counts)
    mine = recvbuf[: counts[r]]
    if p == 1:
        ctx.copy(mine, sendbuf[: counts[0]])
        return
    right, left = (r + 1) % p, (r - 1) % p
    biggest = max(counts)
    partial = (ctx.scratch(biggest, slot=0), ctx.scratch(biggest, slot=1))
    out_aliases_input = ctx.same_memory(mine, sendbuf[offs[r]: offs[r + 1]])
    outgoing = sendbuf[offs[(r - 1) % p]: offs[(r - 1) % p + 1]]
    for s in range(p - 1):
        rb = (r - s - 2) % p
        last = s == p - 2                                        # rb == r: the result lands
        incoming = mine if last and not out_aliases_input else partial[s % 2][: counts[rb]]
        ctx.sendrecv(outgoing, right, incoming, left)
        ctx.reduce(incoming, sendbuf[offs[rb]: offs[rb + 1]])
        outgoing = incoming
    if out_aliases_input:
        ctx.copy(mine, outgoing)


def ring_all_gather(ctx, sendbuf, recvbuf, counts):
    offs = offsets(counts)
    r = ctx.rank
    ctx.copy(recvbuf[offs[r]: offs[r + 1]], sendbuf)
    ring_all_gather_inplace(ctx, recvbuf[: offs[-1]], counts)
