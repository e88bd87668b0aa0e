"""Data for the trainer, without torchvision: four sources and one per-rank sampler.

    digits       scikit-learn's bundled 8x8 handwritten digits (1797 images), the embedded default
    cifar10      a CIFAR-10 python-pickle directory the user already has (--data-dir)
    imagefolder  one sub-directory of images per class (--data-dir), read with PIL
    synthetic    random images and labels made on the device, for throughput

`load_dataset(name, ...)` returns a `Splits(train, test)` of `ImageSet`s (test is None for
synthetic); `ShardedSampler` gives each rank its disjoint slice of an epoch.
"""
from .sampler import ShardedSampler
from .sources import SOURCES, Splits, load_dataset
from .tensors import ImageSet, SyntheticImages

__all__ = ["load_dataset", "SOURCES", "Splits", "ImageSet", "SyntheticImages", "ShardedSampler"]
