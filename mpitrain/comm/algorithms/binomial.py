"""Binomial trees: broadcast, reduce, scatter and gather in ceil(log2 p) rounds.

Ranks are renumbered relative to the root, v = (rank - root) mod p, so the root is v = 0. In a
binomial tree, v's parent is v with its lowest set bit cleared, and v's subtree is the range
[v, v + lowbit(v)) cut at p. Each round doubles the number of ranks that hold the data
(broadcast, scatter) or halves the number still sending (reduce, gather).

    p = 8, root 0:   round 1: 0->4    round 2: 0->2, 4->6    round 3: 0->1, 2->3, 4->5, 6->7

Run a picture of it: mpiexec -n 8 python examples/labs/02_trees.py
"""
from .blocks import offsets


def _lowbit_span(v, p):
    """Size of v's subtree before cutting at p: lowest set bit of v, or the next power of 2 >= p for the root."""
    if v == 0:
        span = 1
        while span < p:
            span <<= 1
        return span
    return v & -v


def binomial_broadcast(ctx, buf, root):
    p = ctx.size
    v = (ctx.rank - root) % p
    span = _lowbit_span(v, p)
    if v:
        ctx.recv(buf, (v - span + root) % p)
    child_span = span >> 1
    while child_span:                                  # largest subtree first
        if v + child_span < p:
            ctx.send(buf, (v + child_span + root) % p)
        child_span >>= 1


def binomial_reduce(ctx, sendbuf, recvbuf, root):
    """Reduce to root. Each rank combines its children's partial results into its own, then sends up."""
    p = ctx.size
    v = (ctx.rank - root) % p
    n = sendbuf.shape[0]
    acc = recvbuf[:n] if v == 0 else ctx.scratch(n, slot=0)
    ctx.copy(acc, sendbuf)
    ctx.working(acc)                                   # a trace shows the partial sum
    incoming = ctx.scratch(n, slot=1)
    mask = 1
    while mask < p:
        if v & mask:
            ctx.send(acc, (v - mask + root) % p)       # partial result of my subtree goes up
            return
        if v + mask < p:
            ctx.recv(incoming, (v + mask + root) % p)
            ctx.reduce(acc, incoming)
        mask <<= 1


def binomial_scatter_blocks(ctx, data, voffs, root, base):
    """Core of a binomial scatter: blocks are in relative-rank order, block v at
    data[voffs[v] - base : voffs[v + 1] - base]. On entry the root's `data` holds every block;
    on return each rank's `data` holds the blocks of its subtree (its own first)."""
    p = ctx.size
    v = (ctx.rank - root) % p
    span = _lowbit_span(v, p)
    end = min(v + span, p)
    if v:
        ctx.recv(data[voffs[v] - base: voffs[end] - base], (v - span + root) % p)
    child_span = span >> 1
    while child_span:
        child = v + child_span
        if child < p:
            child_end = min(child + child_span, p)
            ctx.send(data[voffs[child] - base: voffs[child_end] - base], (child + root) % p)
        child_span >>= 1


def binomial_gather_blocks(ctx, data, voffs, root, base):
    """Mirror of binomial_scatter_blocks: on entry each rank's own block is in place; on return the
    root's `data` holds every block in relative-rank order."""
    p = ctx.size
    v = (ctx.rank - root) % p
    mask = 1
    while mask < p:
        if v & mask:
            end = min(v + mask, p)
            ctx.send(data[voffs[v] - base: voffs[end] - base], (v - mask + root) % p)
            return
        child = v + mask
        if child < p:
            child_end = min(child + mask, p)
            ctx.recv(data[voffs[child] - base: voffs[child_end] - base], (child + root) % p)
        mask <<= 1


def _relative_counts(counts, root):
    p = len(counts)
    return [counts[(v + root) % p] for v in range(p)]


def binomial_scatter(ctx, sendbuf, recvbuf, counts, root):
    """sendbuf (root only) holds counts[i] elements for each rank i in rank order."""
    p, rank = ctx.size, ctx.rank
    v = (rank - root) % p
    voffs = offsets(_relative_counts(counts, root))
    total = voffs[-1]
    if v == 0:
        if root == 0:
            data = sendbuf[:total]
        else:                                          # rotate so blocks are in relative order
            data = ctx.scratch(total)
            split = total - offsets(counts)[root]
            ctx.copy(data[:split], sendbuf[total - split: total])
            ctx.copy(data[split:], sendbuf[: total - split])
        binomial_scatter_blocks(ctx, data, voffs, root, base=0)
        ctx.copy(recvbuf[: counts[rank]], data[: counts[rank]])
        return
    end = min(v + _lowbit_span(v, p), p)
    if end == v + 1:                                   # a leaf receives straight into its output
        data = recvbuf[: counts[rank]]
    else:
        data = ctx.scratch(voffs[end] - voffs[v])
    binomial_scatter_blocks(ctx, data, voffs, root, base=voffs[v])
    ctx.copy(recvbuf[: counts[rank]], data[: counts[rank]])


def binomial_gather(ctx, sendbuf, recvbuf, counts, root):
    """recvbuf (root only) receives counts[i] elements from each rank i in rank order."""
    p, rank = ctx.size, ctx.rank
    v = (rank - root) % p
    voffs = offsets(_relative_counts(counts, root))
    total = voffs[-1]
    if v == 0:
        data = recvbuf[:total] if root == 0 else ctx.scratch(total)
        ctx.copy(data[: counts[rank]], sendbuf)
        binomial_gather_blocks(ctx, data, voffs, root, base=0)
        if root:                                       # rotate back into rank order
            split = total - offsets(counts)[root]
            ctx.copy(recvbuf[total - split: total], data[:split])
            ctx.copy(recvbuf[: total - split], data[split:])
        return
    end = min(v + _lowbit_span(v, p), p)
    data = sendbuf if end == v + 1 else ctx.scratch(voffs[end] - voffs[v])
    ctx.copy(data[: counts[rank]], sendbuf)
    binomial_gather_blocks(ctx, data, voffs, root, base=voffs[v])
