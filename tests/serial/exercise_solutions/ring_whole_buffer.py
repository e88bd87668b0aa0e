"""Broken as a ring, right in value: the whole buffer goes round, p - 1 times."""
import numpy as np


def ring_all_reduce(ctx, buf):
    p, r = ctx.size, ctx.rank
    passing, incoming = buf.copy(), np.empty_like(buf)
    for _ in range(p - 1):
        ctx.sendrecv(passing, (r + 1) % p, incoming, (r - 1) % p)
        ctx.reduce(buf, incoming)
        passing, incoming = incoming, passing
