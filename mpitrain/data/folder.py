"""An image folder read from disk batch by batch: each rank decodes only the images of its own
slice, at the model's size, on worker processes or threads (workers.py), one step ahead of the
model. The crops and flips are decode.py's; a sample's depend only on (seed, epoch, index).
Batches travel to the GPU as uint8 and are normalized there (a quarter of the bytes of float32,
and no float work on the host).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .decode import DataError, decode
from .workers import loader_workers, make_decoder

__all__ = ["DataError", "ImageFolderSet", "sample_stats"]


class ImageFolderSet:
    """Files and labels; images decoded when a batch asks for them."""

    channels = 3
    augment = True

    def __init__(self, files, labels, num_classes, mean, std, img_size, train, seed=0):
        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.num_classes, self.img_size, self.train, self.seed = num_classes, img_size, train, seed
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.epoch = 0
        self._decoder = None
        self._stats = {}                 # device -> (mean, std) there
        self._ahead = {}                 # (epoch, indices, train) -> futures of decoded images

    def __len__(self):
        return len(self.files)

    def set_epoch(self, epoch):
        """The epoch of the coming batches (their crops and flips depend on it)."""
        self.epoch = epoch

    def _start(self, indices, img_size, train):
        if self._decoder is None:
            self._decoder = make_decoder()
        items = [(self.files[i], (self.seed, self.epoch, int(i))) for i in indices]
        return self._decoder.start(items, img_size, train)

    def prefetch(self, indices, img_size, train):
        """Start decoding a batch that `batch` will ask for next."""
        key = (self.epoch, tuple(int(i) for i in indices), img_size, train)
        if key not in self._ahead:
            self._ahead[key] = self._start(indices, img_size, train)

    def images(self, indices, img_size, train, out=None):
        """The batch's images as uint8 (B, 3, img_size, img_size), written into `out` (a
        contiguous uint8 tensor of that shape, e.g. pinned) when given, and its labels."""
        key = (self.epoch, tuple(int(i) for i in indices), img_size, train)
        pending = self._ahead.pop(key, None) or self._start(indices, img_size, train)
        x = pending(None if out is None else out.numpy())
        return (out if out is not None else torch.from_numpy(x),
                self.labels[torch.as_tensor(np.asarray(indices))])

    def host_batch(self, indices, img_size, train):
        """(images, labels) on the host: normalized float32."""
        x, y = self.images(indices, img_size, train)
        return (x.float() - self.mean) / self.std, y

    def batch(self, indices, device, img_size, train, generator=None):
        """(images, labels) on `device`: normalized float32 (B, 3, img_size, img_size)."""
        pinned = None
        if device.type == "cuda":      # decoded straight into page-locked memory: one copy
            pinned = torch.empty((len(indices), 3, img_size, img_size), dtype=torch.uint8,
                                 pin_memory=True)
        x, y = self.images(indices, img_size, train and self.train, out=pinned)
        if device not in self._stats:  # once per device: no copy (and no wait) per batch
            self._stats[device] = (self.mean.to(device), self.std.to(device))
        mean, std = self._stats[device]
        x = x.to(device, non_blocking=True).float()
        return (x - mean) / std, y.to(device, non_blocking=True)

    def close(self):
        """Stop the loader's workers (they also end when this process does)."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


def sample_stats(files, img_size, count=256, seed=0):
    """Per-channel mean and std (0..255) of up to `count` training images, chosen with a fixed
    seed: the same on every rank, without decoding the whole folder."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
    with ThreadPoolExecutor(loader_workers()) as pool:
        images = list(pool.map(lambda i: decode(files[i], img_size, False, None), chosen))
    x = np.stack(images).astype(np.float32)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)) + 1e-6
