"""Which samples each rank reads, epoch by epoch.

Every rank draws the same permutation of the whole set (a generator seeded with seed + epoch),
then takes every world-th index starting at its rank: slices are disjoint and together cover
the epoch. Remainder policy (as DistributedSampler(drop_last=True)): an epoch uses the largest
multiple of world x per_rank_batch samples and drops the rest; the dropped samples change from
epoch to epoch with the shuffle, so none is left out for good. Evaluation instead uses every
sample once (`eval_indices`), and the per-rank counts are summed with an all-reduce.
"""
import numpy as np


class ShardedSampler:
    def __init__(self, size, rank, world_size, per_rank_batch, seed=0, shuffle=True):
        if per_rank_batch * world_size > size:
            raise ValueError(f"a step takes {per_rank_batch * world_size} samples "
                             f"({world_size} ranks x {per_rank_batch}) but the data set has {size}")
        self.size, self.rank, self.world_size = size, rank, world_size
        self.per_rank_batch, self.seed, self.shuffle = per_rank_batch, seed, shuffle

    @property
    def steps_per_epoch(self):
        return self.size // (self.world_size * self.per_rank_batch)

    def epoch_indices(self, epoch):
        """This rank's indices for `epoch`, steps_per_epoch x per_rank_batch of them."""
        order = (np.random.default_rng(self.seed + epoch).permutation(self.size)
                 if self.shuffle else np.arange(self.size))
        used = self.steps_per_epoch * self.world_size * self.per_rank_batch
        return order[:used][self.rank::self.world_size]

    def batches(self, epoch, start_step=0):
        """(step_in_epoch, indices) for each step of the epoch from start_step on."""
        b, w = self.per_rank_batch, self.world_size
        if not self.shuffle:       # the same slices as epoch_indices, made one step at a time
            for step in range(start_step, self.steps_per_epoch):
                yield step, np.arange(self.rank + w * step * b, self.rank + w * (step + 1) * b, w)
            return
        mine = self.epoch_indices(epoch)
        for step in range(start_step, self.steps_per_epoch):
            yield step, mine[step * b: (step + 1) * b]


def eval_indices(size, rank, world_size):
    """Every sample exactly once over all ranks: rank r reads r, r + world, r + 2 world, ..."""
    return np.arange(rank, size, world_size)
