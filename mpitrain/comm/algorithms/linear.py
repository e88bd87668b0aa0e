"""Linear (flat-tree) versions: the root talks to every other rank in turn, p - 1 rounds.

The naive baseline the binomial trees are measured against, and the first thing to read:
    mpiexec -n 4 python examples/labs/02_trees.py
"""
from .blocks import offsets


def linear_broadcast(ctx, buf, root):
    if ctx.rank == root:
        for peer in range(ctx.size):
            if peer != root:
                ctx.send(buf, peer)
    else:
        ctx.recv(buf, root)


def linear_reduce(ctx, sendbuf, recvbuf, root):
    """The root receives every rank's data and combines it in rank order."""
    if ctx.rank != root:
        ctx.send(sendbuf, root)
        return
    n = sendbuf.shape[0]
    acc = recvbuf[:n]
    ctx.copy(acc, sendbuf)
    ctx.working(acc)                                   # a trace shows the partial sum
    incoming = ctx.scratch(n)
    for peer in range(ctx.size):
        if peer != root:
            ctx.recv(incoming, peer)
            ctx.reduce(acc, incoming)


def linear_scatter(ctx, sendbuf, recvbuf, counts, root):
    offs = offsets(counts)
    if ctx.rank != root:
        ctx.recv(recvbuf[: counts[ctx.rank]], root)
        return
    for peer in range(ctx.size):
        block = sendbuf[offs[peer]: offs[peer + 1]]
        if peer == root:
            ctx.copy(recvbuf[: counts[peer]], block)
        else:
            ctx.send(block, peer)


def linear_gather(ctx, sendbuf, recvbuf, counts, root):
    offs = offsets(counts)
    if ctx.rank != root:
        ctx.send(sendbuf, root)
        return
    for peer in range(ctx.size):
        block = recvbuf[offs[peer]: offs[peer + 1]]
        if peer == root:
            ctx.copy(block, sendbuf)
        else:
            ctx.recv(block, peer)
