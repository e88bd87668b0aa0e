"""Reduction ops of the collectives: sum, avg, max, min, prod.

avg is sum followed by a division by the number of ranks, done once where the reduced value is
complete; it is defined for floating dtypes only (as in torch.distributed), so an integer avg is
refused rather than silently truncated.
"""
OPS = ("sum", "avg", "max", "min", "prod")


def combine_op(op):
    """The elementwise op the algorithm applies at each step (avg combines by sum)."""
    return "sum" if op == "avg" else op
