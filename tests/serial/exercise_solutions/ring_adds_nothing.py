"""Broken: the reduce-scatter copies what comes in instead of adding it."""
from mpitrain.comm.algorithms.blocks import even_counts, offsets


def ring_all_reduce(ctx, buf):
    p, r = ctx.size, ctx.rank
    counts = even_counts(buf.shape[0], p)
    offs = offsets(counts)
    right, left = (r + 1) % p, (r - 1) % p
    incoming = ctx.scratch(max(counts))
    for s in range(p - 1):
        sb, rb = (r - s - 1) % p, (r - s - 2) % p
        ctx.sendrecv(buf[offs[sb]: offs[sb + 1]], right, incoming[: counts[rb]], left)
        ctx.copy(buf[offs[rb]: offs[rb + 1]], incoming[: counts[rb]])       # should add
    for s in range(p - 1):
        sb, rb = (r - s) % p, (r - s - 1) % p
        ctx.sendrecv(buf[offs[sb]: offs[sb + 1]], right, buf[offs[rb]: offs[rb + 1]], left)
