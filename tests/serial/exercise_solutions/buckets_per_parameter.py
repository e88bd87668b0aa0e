"""Broken as buckets, right in value: one all-reduce per parameter after backward (naive)."""
from mpitrain.parallel.naive_data_parallel import NaiveDataParallel


class DataParallel(NaiveDataParallel):
    def __init__(self, model, world, *, bucket_mb=25.0):
        super().__init__(model, world)
