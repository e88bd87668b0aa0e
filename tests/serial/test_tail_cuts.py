"""Tail cuts (parallel/buckets.py, models/split_compile.py): the last buckets and compiled pieces
of backward end where the parameter bytes still to come drop to each cut.

Oracles: the prefix sums of the parameters' bytes, computed here from the shapes; for the
compiled pieces, the eager model's output and gradients."""
import numpy as np
import pytest

from mpitrain.parallel.buckets import parse_tail_mb, plan_buckets, tail_cuts_bytes

torch = pytest.importorskip("torch")


def fake_params(sizes):
    return [torch.nn.Parameter(torch.zeros(n)) for n in sizes]


def boundaries(plan):
    """The registration positions where a bucket starts (its lowest position)."""
    return sorted(min(b.positions) for b in plan)


@pytest.mark.parametrize("seed", range(6))
def test_plan_cuts_where_the_bytes_before_first_drop_to_each_cut(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(1, 400, size=40)]
    params = fake_params(sizes)
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * 4
    cuts = sorted(int(c) for c in rng.integers(100, before[-1], size=3))
    cap = 2000
    plain = plan_buckets(params, 400, cap, "float32")
    plan = plan_buckets(params, 400, cap, "float32", tuple(cuts))
    # every parameter once, positions within a bucket contiguous and descending
    assert sorted(p for b in plan for p in b.positions) == list(range(len(sizes)))
    for b in plan:
        assert b.positions == list(range(b.positions[0], b.positions[-1] - 1, -1))
        assert b.elements * 4 <= cap or len(b.params) == 1
    starts = boundaries(plan)
    for cut in cuts:
        # walking back from the end, the first parameter whose bytes-before are <= cut closes
        # its bucket: the next bucket starts right before it
        first = max(i for i in range(len(sizes)) if before[i] <= cut)
        assert first in starts, (cut, first, starts)
    # the cuts only add boundaries where the plain plan would have none, or shift later ones
    assert len(plan) >= len(plain)


def test_without_cuts_the_plan_is_unchanged():
    params = fake_params([100, 2000, 30, 4000, 5, 700])
    a = plan_buckets(params, 400, 9000, "float32")
    b = plan_buckets(params, 400, 9000, "float32", ())
    assert [x.positions for x in a] == [x.positions for x in b]


@pytest.mark.parametrize("text, cuts", [("24,6", (24.0, 6.0)), ("none", ()), ("", ()), (" 3 ", (3.0,))])
def test_parse_tail_mb(text, cuts):
    assert parse_tail_mb(text) == cuts


@pytest.mark.parametrize("text, message", [("24,x", "--tail-mb '24,x'"), ("5,-1", "every cut must be > 0")])
def test_parse_tail_mb_refuses_bad_values_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tail_mb(text)


def test_tail_cuts_bytes_refuses_cuts_that_are_not_positive():
    assert tail_cuts_bytes((1.0, 0.5)) == (1 << 20, 1 << 19)
    with pytest.raises(ValueError, match=r"tail_mb \(6.0, 0.0\): every cut must be > 0 MB"):
        tail_cuts_bytes((6.0, 0.0))


def placeholder(name):
    """dynamo's placeholder name of a parameter: blocks.0.norm1.weight ->
    L_self_modules_blocks_modules_0_modules_norm1_parameters_weight_"""
    *mods, leaf = name.split(".")
    return "L_self_" + "".join(f"modules_{m}_" for m in mods) + f"parameters_{leaf}_"


def test_compiled_pieces_end_at_the_cuts_and_compute_what_eager_does():
    from mpitrain.models import ViTConfig, VisionTransformer
    from mpitrain.models.split_compile import compile_in_pieces
    cfg = ViTConfig(name="tiny", img_size=8, patch_size=2, in_chans=1, num_classes=10,
                    embed_dim=64, depth=3, num_heads=4, mlp_dim=128)
    torch.manual_seed(0)
    model = VisionTransformer(cfg)
    nbytes = {placeholder(n): p.numel() * 4 for n, p in model.named_parameters()}
    cuts = (0.02, 0.005)
    compiled = compile_in_pieces(model, 0.05, cuts)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = compiled(x)
    out.square().sum().backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    expected = model(x)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)
    pieces = compiled._mpitrain_splitter.buckets      # front of the graph first
    sizes = [sum(nbytes[n] for n in set(b.params)) for b in pieces]
    assert sum(sizes) == sum(nbytes.values())
    front = np.cumsum(sizes)                          # bytes in front of each boundary
    largest = max(nbytes.values())
    for cut in cuts:
        at = [c for c in front if c <= cut * 2**20]
        assert at and at[-1] > cut * 2**20 - largest, (cut, front)
    assert sizes[0] <= min(cuts) * 2**20
    torch._dynamo.reset()
