"""A trained model back from its weights, and images made ready for it: what evaluate and
predict share.

    model, card = load_model(PATH, device)     # PATH: anything checkpoint.read_weights reads
    x = image_tensor(FILE, card)               # (1, C, H, W), normalized as in training

The model card (train/weights.py) names the variant, its shape, the class names and the
normalization; a weights file without one (a timm state dict) needs --model and gets the
ImageNet statistics timm's ViTs were trained with.
"""
import numpy as np
import torch

from .checkpoint import CheckpointError, read_weights
from .models import VisionTransformer, ViTConfig

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]   # timm's IMAGENET_DEFAULT_MEAN, 0..255
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def load_model(path, device, model_name=None):
    """(model in eval mode on device, model card)."""
    state, card = read_weights(path)
    if card is None:
        if not model_name:
            raise CheckpointError(f"{path}: no model card (not written by mpitrain): name the "
                                  f"model with --model (e.g. vit_base_patch16_224)")
        head = state.get("head.weight")
        patch = state.get("patch_embed.proj.weight")
        card = {"model": model_name, "num_classes": int(head.shape[0]) if head is not None else 1000,
                "in_chans": int(patch.shape[1]) if patch is not None else 3, "img_size": 0,
                "classes": None, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "value_range": 255.0,
                "data": None, "data_dir": ""}
    overrides = {"num_classes": card["num_classes"], "in_chans": card["in_chans"]}
    if card["img_size"]:
        overrides["img_size"] = card["img_size"]
    mcfg = ViTConfig.named(model_name or card["model"], **overrides)
    card = dict(card, img_size=mcfg.img_size)
    model = VisionTransformer(mcfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit {mcfg.name}: "
                              f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    return model.to(device).eval(), card


def class_name(card, index):
    classes = card.get("classes")
    return classes[index] if classes and index < len(classes) else str(index)


def image_tensor(path, card):
    """One image file as the model saw its test images: with the centre crop of an image folder
    (a model trained on one, or on ImageNet), else resized whole (digits, CIFAR-10); pixels brought to the range the statistics
    were taken in (the digits run 0..16), then normalized."""
    from PIL import Image

    from .data.decode import DataError, decode
    size = card["img_size"]
    if card["in_chans"] == 3 and card.get("data") in ("imagefolder", None):
        x = decode(path, size, train=False, rng=None).astype(np.float32)
    else:
        mode = "RGB" if card["in_chans"] == 3 else "L"
        try:
            with Image.open(path) as im:
                x = np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), np.float32)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read this image ({exc})") from None
        x = x.transpose(2, 0, 1) if x.ndim == 3 else x[None]
    x = x * (card.get("value_range", 255.0) / 255.0)
    mean = np.asarray(card["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(card["std"], np.float32).reshape(-1, 1, 1)
    return torch.from_numpy((x - mean) / std)[None]
