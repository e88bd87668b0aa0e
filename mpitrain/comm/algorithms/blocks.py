"""How a buffer is cut into one block per rank.

When the count does not divide by the number of parts, the first `count % parts` blocks get one
element more (as MPI's Reduce_scatter and most ring implementations do).
"""


def even_counts(count, parts):
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def offsets(counts):
    """Start of each block, plus the total at the end: block i is [offs[i], offs[i + 1])."""
    offs = [0]
    for c in counts:
        offs.append(offs[-1] + c)
    return offs
