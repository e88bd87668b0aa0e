"""The memory accountant's activations (parallel/memory.py) against what autograd really keeps:
every tensor saved for backward during a forward pass, counted by storage (saved_tensors_hooks),
on CPU, fp32 and bf16 autocast. Model states are checked against real tensors in
tests/mpi/test_memory.py; the GPU peak against torch.cuda.max_memory_allocated in docs/zero.md.
"""
import pytest
import torch

from mpitrain.models import ViTConfig, VisionTransformer
from mpitrain.parallel.memory import _matrix_params, activation_bytes


def saved_bytes(model, x, precision):
    """Bytes of the distinct storages autograd saves for backward (parameters excluded)."""
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant,img", [("vit_ti16", 64), ("vit_s16", 48)])
def test_predicted_activations_are_what_autograd_saves(variant, img, precision):
    cfg = ViTConfig.named(variant, img_size=img)
    torch.manual_seed(0)
    model = VisionTransformer(cfg)
    batch = 3
    x = torch.randn(batch, cfg.in_chans, img, img)
    kept, _ = activation_bytes(cfg, batch, precision)
    if precision == "bf16":
        kept -= batch * cfg.in_chans * img * img * 4     # the fp32 images exist, but are not saved
        kept += 2 * _matrix_params(cfg)                  # the 16-bit weight copies are saved
    measured = saved_bytes(model, x, precision)
    assert abs(measured - kept) <= 0.10 * measured, (measured, kept)
