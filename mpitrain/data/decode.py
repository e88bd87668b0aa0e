"""One image file decoded to uint8 (3, S, S) with numpy and PIL only (no torch), so the loader's
worker processes start in a fraction of a second.

    train:  random-resized crop (area 8-100% of the image, aspect 3/4-4/3) to img_size, and a
            left-right flip of half the images (the ImageNet recipe timm and torchvision use)
    eval:   the shorter side resized to img_size / 0.875, the centre img_size x img_size crop

The crop and flip of a sample come from the generator it is given; the loader seeds it with
(seed, epoch, sample index), so they are the same at any world size and after a resume. JPEGs are
decoded at a reduced scale where the crop allows (PIL's draft mode).
"""
import math

import numpy as np

EVAL_CROP = 0.875
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


class DataError(ValueError):
    """A data set that cannot be read; the message names the file."""


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
