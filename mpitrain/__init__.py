"""mpitrain: hand-rolled MPI collectives and the data-parallel / ZeRO training built on them."""

__version__ = "0.2.0"
