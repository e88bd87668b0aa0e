"""The four data sources, each loaded into a train and a test ImageSet.

    digits:      sklearn.datasets.load_digits(); a fixed split (seed 0): 1438 train / 359 test
    cifar10:     DIR/data_batch_1..5 and DIR/test_batch (the python pickles from the CIFAR site)
    imagefolder: DIR/train/CLASS/*.png|jpg and DIR/val/CLASS/... ; without train/ and val/, DIR/CLASS/
                 with a fixed 10% of each class held out for testing
    synthetic:   random data on the device, no test split
"""
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tensors import ImageSet, SyntheticImages

SOURCES = ("digits", "cifar10", "imagefolder", "synthetic")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm"}


class DataError(ValueError):
    """A data set that cannot be read; the message names the file."""


@dataclass
class Splits:
    train: object            # ImageSet or SyntheticImages
    test: object             # ImageSet, or None (synthetic)
    num_classes: int
    channels: int
    native_size: int         # image side as stored (the model may resize)


def load_dataset(name, data_dir=None, img_size=None, num_classes=1000, channels=3):
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name == "imagefolder":
        return load_imagefolder(data_dir, img_size or 224)
    if name == "synthetic":
        return Splits(SyntheticImages(num_classes, channels), None, num_classes, channels, img_size)
    raise ValueError(f"unknown data source {name!r}; choose from {', '.join(SOURCES)}")


def _split(images, labels, test_fraction, seed=0):
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    return order[n_test:], order[:n_test]


def _stats(train_images):
    x = train_images.astype(np.float32)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)) + 1e-6


def load_digits():
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError("--data digits reads scikit-learn's bundled digits, and scikit-learn is "
                        "not installed: pip install 'mpitrain[train]' (or scikit-learn)") from None
    d = sk_digits()
    images = d.images.astype(np.float32)[:, None]                 # (1797, 1, 8, 8), 0..16
    labels = d.target.astype(np.int64)
    train, test = _split(images, labels, 0.2)
    mean, std = _stats(images[train])
    return Splits(ImageSet(images[train], labels[train], 10, mean, std),
                  ImageSet(images[test], labels[test], 10, mean, std), 10, 1, 8)


def load_cifar10(data_dir):
    if not data_dir:
        raise FileNotFoundError("--data cifar10 needs --data-dir DIR, the directory holding "
                                "data_batch_1..5 and test_batch (cifar-10-batches-py)")
    root = Path(data_dir)

    def read(file):
        path = root / file
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 file missing: {path} (expected the python version: "
                                    f"data_batch_1..5 and test_batch in {root})")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        return (np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32),
                np.asarray(batch[b"labels"], np.int64))

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read("test_batch")
    mean, std = _stats(x_train)
    return Splits(ImageSet(x_train, y_train, 10, mean, std, augment=True),
                  ImageSet(x_test, y_test, 10, mean, std), 10, 3, 32)


def load_imagefolder(data_dir, img_size):
    if not data_dir:
        raise FileNotFoundError("--data imagefolder needs --data-dir DIR with one sub-directory per class")
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = _classes(root / "train")
        x_train, y_train = _read_images(root / "train", classes, img_size)
        x_test, y_test = _read_images(root / "val", classes, img_size)
    else:
        classes = _classes(root)
        images, labels = _read_images(root, classes, img_size)
        train, test = _split(images, labels, 0.1)
        x_train, y_train, x_test, y_test = images[train], labels[train], images[test], labels[test]
    mean, std = _stats(x_train)
    n = len(classes)
    return Splits(ImageSet(x_train, y_train, n, mean, std), ImageSet(x_test, y_test, n, mean, std),
                  n, 3, img_size)


def _classes(root):
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class sub-directories in {root}")
    return classes


def _read_images(root, classes, img_size):
    """Every image under root/CLASS/, decoded with PIL to RGB and resized to img_size (held in
    memory as uint8)."""
    from PIL import Image
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((img_size, img_size), Image.BILINEAR)
                    images.append(np.asarray(im, np.uint8).transpose(2, 0, 1))
            except (OSError, ValueError) as exc:       # truncated, corrupt, not an image
                raise DataError(f"{path}: cannot read this image ({exc})") from None
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return np.stack(images), np.asarray(labels, np.int64)
