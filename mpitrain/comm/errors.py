"""The exceptions the collectives raise. Every message starts with the rank that saw the problem."""


class CollectiveError(ValueError):
    """A collective was called with input it cannot use (bad buffer, dtype, op, root, size...)."""

    def __init__(self, rank, message):
        self.rank = rank
        super().__init__(f"rank {rank}: {message}")


class CollectiveMismatchError(CollectiveError):
    """Ranks entered a collective with different signatures (found by the debug-mode check)."""
