"""Parallelism applied to a model: data parallel (naive and bucketed) and ZeRO stages 1, 2, 3."""
from .data_parallel import DataParallel, SingleRank, UnusedParameterError, apply_data_parallel
from .naive_data_parallel import NaiveDataParallel
from .replicate import broadcast_parameters
from .zero import Zero, apply_zero
from .zero3 import Zero3, apply_zero3

__all__ = ["apply_data_parallel", "DataParallel", "NaiveDataParallel", "UnusedParameterError", "SingleRank",
           "broadcast_parameters", "apply_zero", "Zero", "apply_zero3", "Zero3"]
