"""Broadcast for large messages (van de Geijn): binomial scatter, then ring all-gather.

A binomial broadcast sends the whole buffer log2(p) times along its deepest path; this sends
each byte across each link about twice, whatever p is: it wins once bandwidth dominates.
The buffer is cut into p blocks; relative rank v = (rank - root) mod p owns block v.
"""
from .binomial import binomial_scatter_blocks
from .blocks import even_counts, offsets
from .ring import ring_all_gather_inplace


def scatter_all_gather_broadcast(ctx, buf, root):
    counts = even_counts(buf.shape[0], ctx.size)
    binomial_scatter_blocks(ctx, buf, offsets(counts), root, base=0)
    ring_all_gather_inplace(ctx, buf, counts, owner_shift=root)
