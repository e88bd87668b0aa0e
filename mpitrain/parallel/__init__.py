"""Parallelism applied to a model: data parallel, naive and bucketed (ZeRO arrives with its issue)."""
from .data_parallel import DataParallel, SingleRank, UnusedParameterError, apply_data_parallel
from .naive_data_parallel import NaiveDataParallel
from .replicate import broadcast_parameters

__all__ = ["apply_data_parallel", "DataParallel", "NaiveDataParallel", "UnusedParameterError", "SingleRank",
           "broadcast_parameters"]
