"""An image folder read from disk batch by batch: each rank decodes only the images of its own
slice, at the model's size, on a pool of threads, one step ahead of the model.

    train:  random-resized crop (area 8-100% of the image, aspect 3/4-4/3) to img_size, and a
            left-right flip of half the images (the ImageNet recipe timm and torchvision use)
    eval:   the shorter side resized to img_size / 0.875, the centre img_size x img_size crop

The crop and flip of a sample depend only on (seed, epoch, sample index), so they are the same
at any world size and after a resume. PIL's decoding and resizing release the GIL, so threads
run in parallel (MPITRAIN_LOADER_THREADS, default: the cores of this rank). JPEGs are decoded
at a reduced scale where the crop allows (PIL's draft mode).
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

EVAL_CROP = 0.875
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


class DataError(ValueError):
    """A data set that cannot be read; the message names the file."""


def loader_threads():
    value = os.environ.get("MPITRAIN_LOADER_THREADS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise DataError(f"MPITRAIN_LOADER_THREADS={value}: give a number of threads >= 1")
        return int(value)
    return max(1, len(os.sched_getaffinity(0)))


def crop_box(width, height, rng):
    """A random-resized-crop box (left, top, right, bottom) in a width x height image."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)                      # fallback: the centre square
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def centre_box(width, height, img_size):
    """The eval crop: after resizing the shorter side to img_size / 0.875, the centre square of
    img_size, given in the original image's pixels."""
    side = min(width, height) * EVAL_CROP
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def decode(path, img_size, train, rng):
    """One image as uint8 (3, img_size, img_size)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            if train:
                box = crop_box(*im.size, rng)
                flip = rng.random() < 0.5
            else:
                box, flip = centre_box(*im.size, img_size), False
            # JPEG: decode at 1/2, 1/4 or 1/8 scale when the crop still has img_size pixels
            scale_w = (box[2] - box[0]) / img_size
            scale_h = (box[3] - box[1]) / img_size
            full = im.size
            im.draft("RGB", (max(1, int(full[0] / min(scale_w, scale_h))),
                             max(1, int(full[1] / min(scale_w, scale_h)))))
            fx, fy = im.size[0] / full[0], im.size[1] / full[1]
            box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
            out = im.convert("RGB").resize((img_size, img_size), Image.BILINEAR, box=box)
            if flip:
                out = out.transpose(Image.FLIP_LEFT_RIGHT)
            return np.asarray(out, np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError) as exc:             # truncated, corrupt, not an image
        raise DataError(f"{path}: cannot read this image ({exc})") from None


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
        self._pool = None
        self._ahead = {}                 # (epoch, indices, train) -> futures of decoded images

    def __len__(self):
        return len(self.files)

    def set_epoch(self, epoch):
        """The epoch of the coming batches (their crops and flips depend on it)."""
        self.epoch = epoch

    def _submit(self, indices, img_size, train):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(loader_threads(), thread_name_prefix="mpitrain-loader")
        return [self._pool.submit(decode, self.files[i], img_size, train,
                                  np.random.default_rng((self.seed, self.epoch, int(i))))
                for i in indices]

    def prefetch(self, indices, img_size, train):
        """Start decoding a batch that `batch` will ask for next."""
        key = (self.epoch, tuple(int(i) for i in indices), img_size, train)
        if key not in self._ahead:
            self._ahead[key] = self._submit(indices, img_size, train)

    def host_batch(self, indices, img_size, train):
        key = (self.epoch, tuple(int(i) for i in indices), img_size, train)
        futures = self._ahead.pop(key, None) or self._submit(indices, img_size, train)
        x = torch.from_numpy(np.stack([f.result() for f in futures])).float()
        return (x - self.mean) / self.std, self.labels[torch.as_tensor(np.asarray(indices))]

    def batch(self, indices, device, img_size, train, generator=None):
        """(images, labels) on `device`: normalized float32 (B, 3, img_size, img_size)."""
        x, y = self.host_batch(indices, img_size, train and self.train)
        if device.type == "cuda":
            x = x.pin_memory()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def sample_stats(files, img_size, count=256, seed=0):
    """Per-channel mean and std (0..255) of up to `count` training images, chosen with a fixed
    seed: the same on every rank, without decoding the whole folder."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
    with ThreadPoolExecutor(loader_threads()) as pool:
        images = list(pool.map(lambda i: decode(files[i], img_size, False, None), chosen))
    x = np.stack(images).astype(np.float32)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)) + 1e-6
