"""Exercise: broadcast down a binomial tree. Fill in binomial_broadcast, then check it:

    python -m mpitrain.labs check broadcast examples/labs/exercises/binomial_broadcast.py

What you have:
    ctx.rank, ctx.size        who you are, how many ranks there are (p)
    ctx.send(buf, dest)       send the whole array to rank dest
    ctx.recv(buf, source)     receive the whole array from rank source

The tree: number the ranks relative to the root, v = (rank - root) mod p, so the root is v = 0.
In round k (k = 0, 1, ...) every v < 2^k that holds the data sends it to v + 2^k (when that is
below p). So the number of ranks holding it doubles each round: ceil(log2 p) rounds, and no
rank sends more than ceil(log2 p) times. Work out, for your v, whom you receive from (v with
its highest set bit cleared) and whom you send to afterwards (v + 2^k for each later round k);
remember to turn the relative numbers back into ranks: (v + root) mod p.

The checker runs every root at 1-5 ranks, compares every rank's buffer with MPI_Bcast, and
counts the messages each rank sends and receives. The library's answer, written as the
largest subtree first, is mpitrain/comm/algorithms/binomial.py.
"""


def binomial_broadcast(ctx, buf, root):
    """buf on the root is copied into buf on every rank."""
    p = ctx.size
    v = (ctx.rank - root) % p
    # TODO: receive from your parent (unless v == 0), then send to each child in later rounds
    raise NotImplementedError("binomial_broadcast")
