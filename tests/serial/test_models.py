"""The Vision Transformer: sizes against the variant table, timm's key names, behaviour."""
import pytest

from mpitrain.models import ALIASES, VARIANTS, ViTConfig, build_model

torch = pytest.importorskip("torch")


def meta_model(name, **kw):
    with torch.device("meta"):
        return build_model(name, **kw)


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.params])
def test_parameter_counts_match_the_table(name):
    model = meta_model(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == model.cfg.count_params()
    assert abs(count - VARIANTS[name].params) / VARIANTS[name].params < 0.01


@pytest.mark.parametrize("name, depth, width, mlp, heads", [
    ("vit_b16", 12, 768, 3072, 12), ("vit_l16", 24, 1024, 4096, 16), ("vit_h14", 32, 1280, 5120, 16),
    ("vit_g14", 40, 1408, 6144, 16), ("vit_G14", 48, 1664, 8192, 16)])
def test_variant_shapes_are_the_papers(name, depth, width, mlp, heads):
    c = ViTConfig.named(name)
    assert (c.depth, c.embed_dim, c.mlp_dim, c.num_heads) == (depth, width, mlp, heads)


def timm_keys_and_shapes(depth, D, H, C, P, chans, tokens, classes):
    """timm VisionTransformer's state-dict layout, written out from its module structure."""
    keys = {"cls_token": (1, 1, D), "pos_embed": (1, tokens, D),
            "patch_embed.proj.weight": (D, chans, P, P), "patch_embed.proj.bias": (D,),
            "norm.weight": (D,), "norm.bias": (D,), "head.weight": (classes, D), "head.bias": (classes,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,),
                     b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                     b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                     b + "norm2.weight": (D,), b + "norm2.bias": (D,),
                     b + "mlp.fc1.weight": (H, D), b + "mlp.fc1.bias": (H,),
                     b + "mlp.fc2.weight": (D, H), b + "mlp.fc2.bias": (D,)})
    return keys


@pytest.mark.parametrize("timm_name", list(ALIASES))
def test_state_dict_keys_and_shapes_follow_timm(timm_name):
    model = meta_model(timm_name)
    c = model.cfg
    expected = timm_keys_and_shapes(c.depth, c.embed_dim, c.mlp_dim, c.num_classes, c.patch_size,
                                    c.in_chans, c.tokens, c.num_classes)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected


def test_a_timm_layout_state_dict_loads():
    c = ViTConfig.named("vit_digits")
    shapes = timm_keys_and_shapes(c.depth, c.embed_dim, c.mlp_dim, c.num_classes, c.patch_size,
                                  c.in_chans, c.tokens, c.num_classes)
    state = {k: torch.randn(s) for k, s in shapes.items()}
    model = build_model("vit_digits")
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.blocks[2].mlp.fc1.weight, state["blocks.2.mlp.fc1.weight"])


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'vit_q99'; valid: vit_ti16, .*vit_G14"):
        ViTConfig.named("vit_q99")


@pytest.mark.parametrize("bad, match", [({"img_size": 30, "patch_size": 4}, "not a multiple"),
                                        ({"embed_dim": 100, "num_heads": 3}, "does not split"),
                                        ({"depth": 0}, "depth must be >= 1")])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig.named("vit_digits", **bad)


def test_forward_shapes_and_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = build_model("vit_digits")
    ckpt = build_model("vit_digits", checkpoint_activations=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(5, 1, 8, 8)
    assert plain(x).shape == (5, 10)
    plain(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for a, b in zip(plain.parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_attention_equals_the_written_out_softmax():
    torch.manual_seed(1)
    model = build_model("vit_digits")
    attn = model.blocks[0].attn
    x = torch.randn(2, 17, 64)
    B, N, D = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, 4, D // 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / (D // 4) ** 0.5, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(B, N, D))
    assert torch.allclose(attn(x), expected, atol=1e-5)
