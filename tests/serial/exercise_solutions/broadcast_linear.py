"""Broken as a tree, right in value: the root sends to everyone itself."""


def binomial_broadcast(ctx, buf, root):
    if ctx.rank == root:
        for k in range(ctx.size):
            if k != root:
                ctx.send(buf, k)
    else:
        ctx.recv(buf, root)
