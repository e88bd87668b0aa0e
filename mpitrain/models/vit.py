"""A Vision Transformer, written out: patch embedding, cls token, position embeddings, pre-norm
blocks, final norm, head. Parameter names follow timm's VisionTransformer, so a timm state dict
(vit_large_patch16_224, ...) loads with load_state_dict and ours loads into timm.

    model = VisionTransformer(ViTConfig.named("vit_digits"))
    logits = model(images)                    # (B, C, H, W) -> (B, num_classes)
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ViTConfig


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens with one strided convolution."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        x = self.proj(x)                     # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (flash kernels on GPU)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)     # each (B, heads, N, D/heads)
        x = F.scaled_dot_product_attention(q, k, v)         # (B, heads, N, D/heads)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.embed_dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = Mlp(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig, checkpoint_activations=False):
        super().__init__()
        self.cfg = cfg
        self.checkpoint_activations = checkpoint_activations   # recompute blocks in backward
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """timm's recipe: truncated normal (std 0.02) for position embeddings and linear weights,
        zero biases, a tiny cls token, unit LayerNorms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        x = self.patch_embed(x)                                   # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)           # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.pos_embed           # (B, N+1, D)
        for block in self.blocks:
            if self.checkpoint_activations and self.training:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)                                       # (B, N+1, D)

    def compile_blocks(self):
        """torch.compile each block on its own (regional compilation) instead of the whole model:
        each block's backward is then its own compiled graph, so its gradients reach
        post-accumulate-grad hooks as soon as it finishes, and the data-parallel engine
        overlaps their all-reduce with the rest of backward. (One graph for the whole model
        hands every gradient over at the very end.) Compiles one block's code once. Only the
        blocks' forward is compiled, not their __call__: module hooks (ZeRO-3's and FSDP2's
        gathers) stay outside the graph, in eager Python."""
        import torch
        for block in self.blocks:
            block.forward = torch.compile(block.forward)
        return self

    def forward_head(self, x):
        return self.head(x[:, 0])                                 # (B, num_classes)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def build_model(name, checkpoint_activations=False, **overrides):
    """VisionTransformer for a variant name (ours or timm's), with config overrides."""
    return VisionTransformer(ViTConfig.named(name, **overrides), checkpoint_activations)
