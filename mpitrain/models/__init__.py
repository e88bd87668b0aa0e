"""Vision Transformers: the variant table (config.py) and the model (vit.py)."""
from .config import ALIASES, VARIANTS, ViTConfig
from .vit import VisionTransformer, build_model

__all__ = ["ViTConfig", "VARIANTS", "ALIASES", "VisionTransformer", "build_model"]
