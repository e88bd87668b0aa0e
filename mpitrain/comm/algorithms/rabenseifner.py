"""Rabenseifner's all-reduce: reduce-scatter by recursive halving, then all-gather by recursive
doubling. Bandwidth close to the ring's, in 2 log2(p) steps instead of 2 (p - 1).

    halving, step k (distance p2/2, p2/4, ... 1): keep one half of my current range, send the
        other half to my partner, combine the half it sends me;  -> rank owns 1/p2 of the result
    doubling, step k (distance 1, 2, ... p2/2): swap owned ranges with the partner.

Worlds that are not a power of two are folded exactly as in recursive doubling.
"""
from .blocks import even_counts, offsets
from .recursive_doubling import fold_to_power_of_two, to_real, unfold


def rabenseifner_all_reduce(ctx, buf):
    new_rank, p2, rem = fold_to_power_of_two(ctx, buf)
    if new_rank >= 0 and p2 > 1:
        counts = even_counts(buf.shape[0], p2)
        offs = offsets(counts)
        incoming_all = ctx.scratch(offs[p2 // 2], slot=0)       # the larger half
        lo, hi = 0, p2                                   # the block range this rank is responsible for
        mask = p2 >> 1
        while mask:                                      # recursive halving: reduce-scatter
            peer = to_real(new_rank ^ mask, rem)
            mid = lo + mask
            if new_rank & mask:
                keep, give = (mid, hi), (lo, mid)
            else:
                keep, give = (lo, mid), (mid, hi)
            kept = buf[offs[keep[0]]: offs[keep[1]]]
            incoming = incoming_all[: kept.shape[0]]
            ctx.sendrecv(buf[offs[give[0]]: offs[give[1]]], peer, incoming, peer)
            ctx.reduce(kept, incoming)
            lo, hi = keep
            mask >>= 1
        mask = 1
        while mask < p2:                                 # recursive doubling: all-gather
            peer = to_real(new_rank ^ mask, rem)
            theirs = (lo - mask, lo) if new_rank & mask else (hi, hi + mask)
            ctx.sendrecv(buf[offs[lo]: offs[hi]], peer, buf[offs[theirs[0]]: offs[theirs[1]]], peer)
            lo, hi = min(lo, theirs[0]), max(hi, theirs[1])
            mask <<= 1
    unfold(ctx, buf, new_rank, rem)
