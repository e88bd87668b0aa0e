"""The Vision Transformer variants: one table, one dataclass.

    ViTConfig.named("vit_l16")                     # ViT-L/16 at 224 px, 1000 classes
    ViTConfig.named("vit_large_patch16_224")       # timm's name for the same model
    ViTConfig.named("vit_b16", img_size=32, patch_size=4, num_classes=10)

Sizes follow the ViT papers (depth / width / MLP / heads / parameters at 224 px, 1000 classes);
`params` is the headline count the tests hold the built model to (within 1%).
"""
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ViTConfig:
    name: str = "vit_b16"
    img_size: int = 224        # input height = width, pixels
    patch_size: int = 16       # square patch side, pixels; img_size must be a multiple
    in_chans: int = 3          # input channels (1 for the grey-scale digits)
    num_classes: int = 1000    # classifier outputs
    embed_dim: int = 768       # token width D
    depth: int = 12            # transformer blocks
    num_heads: int = 12        # attention heads; embed_dim must be a multiple
    mlp_dim: int = 3072        # hidden width of each block's MLP
    params: float = 0.0        # headline parameter count of the variant (0: not tabulated)

    def __post_init__(self):
        for field in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth",
                      "num_heads", "mlp_dim"):
            if getattr(self, field) < 1:
                raise ValueError(f"{self.name}: {field} must be >= 1, got {getattr(self, field)}")
        if self.img_size % self.patch_size:
            raise ValueError(f"{self.name}: img_size {self.img_size} is not a multiple of "
                             f"patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{self.name}: embed_dim {self.embed_dim} does not split into "
                             f"{self.num_heads} heads")

    @property
    def num_patches(self):
        return (self.img_size // self.patch_size) ** 2

    @property
    def tokens(self):
        return self.num_patches + 1          # patches and the cls token

    @property
    def mlp_ratio(self):
        return self.mlp_dim / self.embed_dim

    def count_params(self):
        """Parameters of the model this config builds (computed, not tabulated)."""
        D, H, P, C = self.embed_dim, self.mlp_dim, self.patch_size, self.in_chans
        block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * H + H) + (H * D + D)
        return (D * C * P * P + D) + D + self.tokens * D + self.depth * block + 2 * D + (
            D * self.num_classes + self.num_classes)

    def flops_per_image(self):
        """Training FLOPs per image: 6 x params x tokens for the matrix products (forward 2,
        backward 4) plus 12 x layers x tokens^2 x width for attention's two products (the
        count of PaLM, Chowdhery et al. 2022, appendix B, with an image's tokens for a
        sequence's)."""
        return 6 * self.count_params() * self.tokens + 12 * self.depth * self.tokens ** 2 * self.embed_dim

    @classmethod
    def named(cls, name, **overrides):
        key = ALIASES.get(name, name)
        if key not in VARIANTS:
            raise ValueError(f"unknown model {name!r}; valid: {', '.join(VARIANTS)} "
                             f"(timm names: {', '.join(ALIASES)})")
        return replace(VARIANTS[key], **overrides) if overrides else VARIANTS[key]


def _variant(name, depth, width, mlp, heads, params, patch=16, img=224, chans=3, classes=1000):
    return ViTConfig(name=name, img_size=img, patch_size=patch, in_chans=chans,
                     num_classes=classes, embed_dim=width, depth=depth, num_heads=heads,
                     mlp_dim=mlp, params=params)


VARIANTS = {v.name: v for v in (
    # name        depth width  mlp  heads  params
    _variant("vit_ti16", 12, 192, 768, 3, 5.7e6),
    _variant("vit_s16", 12, 384, 1536, 6, 22e6),
    _variant("vit_b16", 12, 768, 3072, 12, 86e6),
    _variant("vit_l16", 24, 1024, 4096, 16, 307e6),
    _variant("vit_h14", 32, 1280, 5120, 16, 632e6, patch=14),
    _variant("vit_g14", 40, 1408, 6144, 16, 1.011e9, patch=14),
    _variant("vit_G14", 48, 1664, 8192, 16, 1.843e9, patch=14),
    # teaching and test sizes: 8x8 grey digits and 32x32 colour images, 10 classes
    _variant("vit_digits", 4, 64, 128, 4, 0, patch=2, img=8, chans=1, classes=10),
    _variant("vit_cifar", 6, 192, 384, 3, 0, patch=4, img=32, chans=3, classes=10),
    # many parameters for little compute (5 tokens an image): where the links, not the cores,
    # set the step time; the low-communication benchmark's model (bench/cluster_diloco.py)
    _variant("vit_digits_wide", 4, 256, 512, 4, 0, patch=4, img=8, chans=1, classes=10),
)}

ALIASES = {
    "vit_tiny_patch16_224": "vit_ti16",
    "vit_small_patch16_224": "vit_s16",
    "vit_base_patch16_224": "vit_b16",
    "vit_large_patch16_224": "vit_l16",
    "vit_huge_patch14_224": "vit_h14",
    "vit_giant_patch14_224": "vit_g14",
    "vit_gigantic_patch14_224": "vit_G14",
}
