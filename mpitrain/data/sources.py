"""The four data sources, each loaded into a train and a test ImageSet.

    digits:      sklearn.datasets.load_digits(); a fixed split (seed 0): 1438 train / 359 test
    cifar10:     DIR/data_batch_1..5 and DIR/test_batch (the python pickles from the CIFAR site)
    imagefolder: DIR/train/CLASS/*.png|jpg and DIR/val/CLASS/... ; without train/ and val/, DIR/CLASS/
                 with a fixed 10% held out for testing; decoded per batch (folder.py)
    synthetic:   random data on the device, no test split
"""
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folder import DataError, ImageFolderSet, sample_stats
from .tensors import ImageSet, SyntheticImages

SOURCES = ("digits", "cifar10", "imagefolder", "synthetic")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm"}


@dataclass
class Splits:
    train: object            # ImageSet or SyntheticImages
    test: object             # ImageSet, or None (synthetic)
    num_classes: int
    channels: int
    native_size: int         # image side as stored (the model may resize)
    classes: list = None     # class names, in label order (None: synthetic)
    value_range: float = 255.0   # pixel values run 0..value_range (digits: 16)


def load_dataset(name, data_dir=None, img_size=None, num_classes=1000, channels=3, seed=0):
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name == "imagefolder":
        return load_imagefolder(data_dir, img_size or 224, seed)
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
                  ImageSet(images[test], labels[test], 10, mean, std), 10, 1, 8,
                  classes=[str(d) for d in range(10)], value_range=16.0)


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
                  ImageSet(x_test, y_test, 10, mean, std), 10, 3, 32, classes=_cifar_names(root))


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]


def _cifar_names(root):
    """The names in batches.meta when it is there, else CIFAR-10's published order."""
    meta = root / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            names = pickle.load(f, encoding="bytes").get(b"label_names")
        if names and len(names) == 10:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return list(CIFAR10_CLASSES)


def load_imagefolder(data_dir, img_size, seed=0):
    """File lists only: images are decoded per batch (folder.py), at img_size."""
    if not data_dir:
        raise FileNotFoundError("--data imagefolder needs --data-dir DIR with one sub-directory per class")
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = _classes(root / "train")
        f_train, y_train = _list_images(root / "train", classes)
        f_test, y_test = _list_images(root / "val", classes)
    else:
        classes = _classes(root)
        files, labels = _list_images(root, classes)
        train, test = _split(files, labels, 0.1)
        f_train, y_train = [files[i] for i in train], labels[train]
        f_test, y_test = [files[i] for i in test], labels[test]
    mean, std = sample_stats(f_train, min(img_size, 64), seed=0)
    n = len(classes)
    return Splits(ImageFolderSet(f_train, y_train, n, mean, std, img_size, train=True, seed=seed),
                  ImageFolderSet(f_test, y_test, n, mean, std, img_size, train=False, seed=seed),
                  n, 3, img_size, classes=classes)


def _classes(root):
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class sub-directories in {root}")
    return classes


def _list_images(root, classes):
    """(files, labels) of every image under root/CLASS/, in class then file-name order."""
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return files, np.asarray(labels, np.int64)
