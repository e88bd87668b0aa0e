"""Broken: every rank but the root waits for rank (root + 1), which never sends."""


def binomial_broadcast(ctx, buf, root):
    p = ctx.size
    if ctx.rank != root:
        ctx.recv(buf, (root + 1) % p if ctx.rank != (root + 1) % p else root)
    elif p > 1:
        ctx.send(buf, (root + 1) % p)
