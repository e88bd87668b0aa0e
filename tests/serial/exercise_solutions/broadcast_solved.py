"""The skeleton of examples/labs/exercises/binomial_broadcast.py, filled in as its text says:
smallest subtree first, the other order from the library's."""


def binomial_broadcast(ctx, buf, root):
    p = ctx.size
    v = (ctx.rank - root) % p
    k = 0
    if v:
        high = 1 << (v.bit_length() - 1)             # v's highest set bit
        ctx.recv(buf, (v - high + root) % p)
        k = v.bit_length()                           # the rounds after the one that reached v
    while (1 << k) < p:
        if v < (1 << k) and v + (1 << k) < p:
            ctx.send(buf, (v + (1 << k) + root) % p)
        k += 1
