"""Parallelism applied to a model: data parallel (ZeRO arrives with its issue)."""
from .data_parallel import FlatGradientAllReduce, broadcast_parameters

__all__ = ["broadcast_parameters", "FlatGradientAllReduce"]
