"""Data for the trainer, without torchvision: four sources and one per-rank sampler.

    digits       scikit-learn's bundled 8x8 handwritten digits (1797 images), the embedded default
    cifar10      a CIFAR-10 python-pickle directory the user already has (--data-dir)
    imagefolder  one sub-directory of images per class (--data-dir), read with PIL
    synthetic    random images and labels made on the device, for throughput

`load_dataset(name, ...)` returns a `Splits(train, test)` of `ImageSet`s (test is None for
synthetic); `ShardedSampler` gives each rank its disjoint slice of an epoch.
"""
import importlib

_HOMES = {"ShardedSampler": "sampler", "SOURCES": "sources", "Splits": "sources",
          "load_dataset": "sources", "ImageSet": "tensors", "SyntheticImages": "tensors"}
__all__ = list(_HOMES)


def __getattr__(name):
    """Imported on first use, so the image loader's worker processes (decode_worker), which need
    numpy and PIL only, do not pay for importing torch."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
