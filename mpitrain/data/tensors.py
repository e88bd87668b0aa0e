"""In-memory image sets: uint8 or float images plus labels, batched onto a device.

A batch is normalized (per-channel mean and std of the training images), resized to the
model's input when the stored size differs, and for training optionally augmented with the
CIFAR recipe: pad by 4 and take a random 32x32-style crop, and flip half the images.
"""
import numpy as np
import torch
import torch.nn.functional as F


class ImageSet:
    def __init__(self, images, labels, num_classes, mean, std, augment=False):
        self.images = torch.as_tensor(images)            # (N, C, H, W), uint8 or float32
        self.labels = torch.as_tensor(labels, dtype=torch.int64)   # (N,)
        self.num_classes = num_classes
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment            # random crop + flip on training batches

    def __len__(self):
        return self.labels.shape[0]

    @property
    def channels(self):
        return self.images.shape[1]

    def batch(self, indices, device, img_size, train, generator=None):
        """(images, labels) on `device`: normalized float32 (B, C, img_size, img_size)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        x = self.images[idx].float()                              # (B, C, H, W)
        if train and self.augment:
            x = random_crop_flip(x, pad=4, generator=generator)
        x = (x - self.mean) / self.std
        if x.shape[-1] != img_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
        return x.to(device, non_blocking=True), self.labels[idx].to(device, non_blocking=True)


def random_crop_flip(x, pad, generator=None):
    """Pad each image by `pad` (reflect), crop back to its size at a random offset, and flip
    half the batch left-right."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    rows = (dy.view(B, 1) + torch.arange(H).view(1, H))                     # (B, H)
    cols = (dx.view(B, 1) + torch.arange(W).view(1, W))                     # (B, W)
    out = padded[torch.arange(B).view(B, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
                 rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]             # (B, C, H, W)
    flip = torch.rand(B, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class SyntheticImages:
    """Random normal images and uniform labels made on the device: no host work per step. Its
    samples have no order to shuffle (shuffle = False), so the sampler hands out index ranges
    without ever holding the 2^30 indices."""

    shuffle = False

    def __init__(self, num_classes, channels, size=1 << 30):
        self.num_classes, self._channels, self._size = num_classes, channels, size
        self.augment = False

    def __len__(self):
        return self._size

    @property
    def channels(self):
        return self._channels

    def batch(self, indices, device, img_size, train, generator=None):
        n = len(indices)
        x = torch.randn(n, self._channels, img_size, img_size, device=device)
        y = torch.randint(0, self.num_classes, (n,), device=device)
        return x, y
