import math

import pytest
import torch

from stereo.models.attention import (
    DotProductAttention,
    EfficientAttention,
    LatentAttention,
    LinearAttention,
    MultiResolutionAttention,
    build_attention,
)


def _pair(normalization, c, dk, dv, heads, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    eff = EfficientAttention(c, dk, dv, heads, normalization).to(dtype)
    dot = DotProductAttention(c, dk, dv, heads, normalization).to(dtype)
    dot.load_state_dict(eff.state_dict())
    return eff, dot


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("seed", range(8))
def test_scaling_efficient_equals_dot_product_float64(seed, device):
    g = torch.Generator().manual_seed(seed)
    heads = int(torch.randint(1, 5, (1,), generator=g))
    c = int(torch.randint(1, 9, (1,), generator=g))
    dk = heads * int(torch.randint(1, 5, (1,), generator=g))
    dv = heads * int(torch.randint(1, 5, (1,), generator=g))
    b = int(torch.randint(1, 4, (1,), generator=g))
    h = 2 * int(torch.randint(1, 6, (1,), generator=g)) + 1  # odd sizes
    w = 2 * int(torch.randint(1, 8, (1,), generator=g)) + 1
    eff, dot = (m.to(device) for m in _pair("scaling", c, dk, dv, heads, seed=seed))
    x = torch.randn(b, c, h, w, dtype=torch.float64, generator=g).to(device)
    # Compare the attention part alone: the residual would hide errors in a small update.
    assert _rel_err(eff(x) - x, dot(x) - x) < 1e-10


def test_state_dict_is_interchangeable():
    eff = EfficientAttention(8, 4, 6, 2)
    dot = DotProductAttention(8, 4, 6, 2)
    assert eff.state_dict().keys() == dot.state_dict().keys()
    assert set(dict(eff.named_children())) == {"queries", "keys", "values", "reprojection"}
    dot.load_state_dict(eff.state_dict())  # strict


def _reference_efficient_softmax(m: EfficientAttention, x):
    """Straightforward per-head loop in the style of the paper's reference code."""
    b, c, h, w = x.shape
    n = h * w
    keys = m.keys(x).reshape(b, m.key_channels, n)
    queries = m.queries(x).reshape(b, m.key_channels, n)
    values = m.values(x).reshape(b, m.value_channels, n)
    hk, hv = m.key_channels // m.heads, m.value_channels // m.heads
    outs = []
    for i in range(m.heads):
        key = torch.exp(keys[:, i * hk : (i + 1) * hk])
        key = key / key.sum(dim=2, keepdim=True)
        query = torch.exp(queries[:, i * hk : (i + 1) * hk])
        query = query / query.sum(dim=1, keepdim=True)
        value = values[:, i * hv : (i + 1) * hv]
        out = torch.zeros(b, hv, n, dtype=x.dtype)
        for bi in range(b):
            for p in range(n):  # out_p = sum_j (q_p . k_j) v_j
                weights = (query[bi, :, p : p + 1] * key[bi]).sum(0)
                out[bi, :, p] = (value[bi] * weights).sum(1)
        outs.append(out.reshape(b, hv, h, w))
    return x + m.reprojection(torch.cat(outs, 1))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_softmax_efficient_matches_straightforward_implementation(heads):
    torch.manual_seed(heads)
    m = EfficientAttention(6, 8, 4 * heads, heads).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    assert _rel_err(m(x) - x, _reference_efficient_softmax(m, x) - x) < 1e-12


def test_softmax_dot_product_matches_explicit_formula():
    torch.manual_seed(1)
    m = DotProductAttention(5, 6, 4, 2).double()
    x = torch.randn(2, 5, 3, 5, dtype=torch.float64)
    b, n = 2, 15
    q = m.queries(x).reshape(b, 2, 3, n)
    k = m.keys(x).reshape(b, 2, 3, n)
    v = m.values(x).reshape(b, 2, 2, n)
    expected = torch.empty(b, 2, 2, n, dtype=torch.float64)
    for bi in range(b):
        for hd in range(2):
            logits = q[bi, hd].T @ k[bi, hd] / math.sqrt(3)
            expected[bi, hd] = v[bi, hd] @ torch.softmax(logits, dim=1).T
    expected = x + m.reprojection(expected.reshape(b, 4, 3, 5))
    assert _rel_err(m(x) - x, expected - x) < 1e-12


def test_fused_sdpa_matches_explicit_dot_product():
    torch.manual_seed(2)
    explicit = DotProductAttention(8, 8, 8, 2).double()
    fused = DotProductAttention(8, 8, 8, 2, fused=True).double()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(1, 8, 6, 5, dtype=torch.float64)
    assert _rel_err(fused(x) - x, explicit(x) - x) < 1e-10


@pytest.mark.parametrize("normalization", ["softmax", "scaling"])
def test_attention_map_reproduces_forward(normalization):
    torch.manual_seed(3)
    m = EfficientAttention(4, 6, 6, 3, normalization).double()
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    amap = m.attention_map(x)  # (B, heads, n, n)
    _, _, v = m._project(x)
    out = torch.einsum("bhij,bhcj->bhci", amap, v).reshape(2, 6, 3, 4)
    assert _rel_err(m(x) - x, m.reprojection(out)) < 1e-12


def test_softmax_attention_map_rows_sum_to_one():
    torch.manual_seed(4)
    m = EfficientAttention(8, 8, 8, 2).double()
    amap = m.attention_map(torch.randn(3, 8, 5, 9, dtype=torch.float64) * 5)
    assert amap.shape == (3, 2, 45, 45)
    assert (amap >= 0).all()
    torch.testing.assert_close(amap.sum(-1), torch.ones(3, 2, 45, dtype=torch.float64))


def _gradcheck_inputs_and_weights(m, x) -> None:
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)
    # Parameters too: gradcheck over a functional call with the weights as inputs.
    params = {k: p.detach().clone().requires_grad_() for k, p in m.named_parameters()}

    def f(*ps):
        return torch.func.functional_call(m, dict(zip(params, ps, strict=True)), (x.detach(),))

    assert torch.autograd.gradcheck(f, tuple(params.values()), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("cls", [EfficientAttention, DotProductAttention])
@pytest.mark.parametrize("normalization", ["softmax", "scaling"])
def test_gradcheck(cls, normalization):
    torch.manual_seed(5)
    m = cls(3, 4, 4, 2, normalization).double()
    x = torch.randn(1, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    _gradcheck_inputs_and_weights(m, x)


@pytest.mark.parametrize("cls", [EfficientAttention, DotProductAttention])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preserves_shape_dtype_device_and_memory_format(cls, dtype):
    m = cls(16, 8, 12, 4).to(dtype)
    x = torch.randn(2, 16, 7, 9, dtype=dtype)
    y = m(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    xc = x.contiguous(memory_format=torch.channels_last)
    yc = m.to(memory_format=torch.channels_last)(xc)
    torch.testing.assert_close(yc, y)


def _check_bf16(m) -> None:
    big = torch.randn(2, 32, 12, 20) * 30  # large logits: a naive half softmax would overflow
    x = torch.randn(2, 32, 12, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_big, y = m(big), m(x)
    assert torch.isfinite(y_big).all()
    assert _rel_err(y.float() - x, m(x) - x) < 0.05  # bf16 keeps ~3 significant digits


@pytest.mark.parametrize("cls", [EfficientAttention, DotProductAttention])
def test_bf16_autocast_is_finite_and_close(cls):
    torch.manual_seed(6)
    _check_bf16(cls(32, 16, 32, 2))


def test_compiles_without_graph_breaks():
    m = EfficientAttention(8, 8, 8, 2)
    x = torch.randn(1, 8, 5, 6)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x))


def test_bad_heads_raise():
    with pytest.raises(ValueError, match="heads=3 must divide key_channels=8"):
        EfficientAttention(16, 8, 12, 3)
    with pytest.raises(ValueError, match="must divide"):
        DotProductAttention(16, 9, 12, 4)
    with pytest.raises(ValueError, match="normalization"):
        EfficientAttention(16, 8, 8, 1, "softmaxx")
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 16, H, W\)"):
        EfficientAttention(16, 8, 8)(torch.randn(1, 15, 4, 4))


def test_build_attention_kinds():
    assert isinstance(build_attention("efficient", 8, 4, 4), EfficientAttention)
    assert isinstance(build_attention("dot_product", 8, 4, 4), DotProductAttention)
    # heads left out: each kind's own default (multires: one head per scale of its 4), not a global 1
    assert build_attention("multires", 8, 4, 4).heads == 4 and build_attention("efficient", 8, 4, 4).heads == 1
    x = torch.randn(1, 8, 2, 2)
    assert build_attention("none", 8, 4, 4)(x) is x
    with pytest.raises(ValueError, match="attention kind"):
        build_attention("bogus", 8, 4, 4)


def _largest_saved(m, x) -> int:
    """Elements of the largest tensor autograd saves for the backward pass of ``m(x)``."""
    largest = 0

    def pack(t):
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x).sum().backward()
    return largest


def test_efficient_memory_does_not_grow_quadratically():
    """The efficient path's largest intermediate is O(n d): check by counting saved-tensor sizes."""
    x = torch.randn(1, 8, 64, 64, requires_grad=True)  # n = 4096; n^2 = 16.7 M elements
    assert _largest_saved(EfficientAttention(8, 4, 8), x) <= 8 * 4096


# ---- the seed's other kinds: linear, latent, multires ------------------------------------------------


def _heads(t, heads):  # (B, C, n) -> list of (B, C/heads, n)
    return list(t.chunk(heads, dim=1))


def _reference_linear(m: LinearAttention, x):
    """Li et al.'s formula through the explicit (n, n) similarity 1 + q_i . k_j, per head."""
    b, _, h, w = x.shape
    flat = lambda conv: conv(x).reshape(b, -1, h * w)  # noqa: E731
    outs = []
    for q, k, v in zip(*(_heads(flat(c), m.heads) for c in (m.queries, m.keys, m.values)), strict=True):
        q, k = q / q.norm(dim=1, keepdim=True), k / k.norm(dim=1, keepdim=True)
        sim = 1 + q.transpose(1, 2) @ k  # (B, n, n), row i: query i against every key
        outs.append(v @ (sim / sim.sum(-1, keepdim=True)).transpose(1, 2))
    return x + m.reprojection(torch.cat(outs, 1).reshape(b, -1, h, w))


def _reference_latent(m: LatentAttention, x):
    """Perceiver encode / latent self-attention / Perceiver IO decode with explicit softmax maps."""
    b, _, h, w = x.shape
    flat = lambda conv: conv(x).reshape(b, -1, h * w)  # noqa: E731
    outs = []
    qs, ks, vs = (_heads(flat(c), m.heads) for c in (m.queries, m.keys, m.values))
    for i in range(m.heads):
        q, k, v = qs[i], ks[i], vs[i]
        dk = q.shape[1]
        lq = m.latent_queries[i]  # (dk, M)
        enc = torch.softmax(torch.einsum("dm,bdn->bmn", lq, k) / dk**0.5, dim=-1)
        z = torch.einsum("bvn,bmn->bvm", v, enc)
        for wgt in m.latent_qkv:
            wq, wk, wv = wgt[i][:dk], wgt[i][dk : 2 * dk], wgt[i][2 * dk :]
            zq, zk, zv = wq @ z, wk @ z, wv @ z
            att = torch.softmax(torch.einsum("bdm,bdl->bml", zq, zk) / dk**0.5, dim=-1)
            z = z + torch.einsum("bvl,bml->bvm", zv, att)
        zk = m.latent_keys[i] @ z
        dec = torch.softmax(torch.einsum("bdn,bdm->bnm", q, zk) / dk**0.5, dim=-1)
        outs.append(torch.einsum("bvm,bnm->bvn", z, dec))
    return x + m.reprojection(torch.cat(outs, 1).reshape(b, -1, h, w))


def _reference_multires(m: MultiResolutionAttention, x):
    """Per head: keys/values pooled by its scale, the explicit (n, n_s) kernel map, times the gate."""
    b, _, h, w = x.shape
    gate = torch.softmax(m.gate(x), dim=1).reshape(b, m.heads, 1, h * w)
    qs, ks, vs = (_heads(c(x), m.heads) for c in (m.queries, m.keys, m.values))
    outs = []
    for i, s in enumerate(m.scales):
        q = torch.softmax(qs[i].reshape(b, -1, h * w), dim=1)
        k = torch.nn.functional.avg_pool2d(ks[i], s, ceil_mode=True).flatten(2) if s > 1 else ks[i].flatten(2)
        v = torch.nn.functional.avg_pool2d(vs[i], s, ceil_mode=True).flatten(2) if s > 1 else vs[i].flatten(2)
        amap = q.transpose(1, 2) @ torch.softmax(k, dim=2)  # (B, n, n_s), rows sum to 1
        torch.testing.assert_close(amap.sum(-1), torch.ones_like(amap[..., 0]))
        outs.append((v @ amap.transpose(1, 2)) * gate[:, i])
    return x + m.reprojection(torch.cat(outs, 1).reshape(b, -1, h, w))


NEW_KINDS = {
    "linear": (LinearAttention, {}, _reference_linear),
    "latent": (LatentAttention, {"latents": 5, "latent_layers": 2}, _reference_latent),
    "multires": (MultiResolutionAttention, {"scales": [1, 2, 3]}, _reference_multires),
}


def _new(kind, c=6, dk=6, dv=9, heads=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cls, extra, _ = NEW_KINDS[kind]
    return cls(c, dk, dv, heads, **extra).to(dtype)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_match_independent_reference(kind):
    m = _new(kind)
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)  # odd sizes: pooling with ceil_mode
    ref = NEW_KINDS[kind][2](m, x)
    assert _rel_err(m(x) - x, ref - x) < 1e-10


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_gradcheck(kind):
    m = _new(kind, c=3, dk=3, dv=3, heads=3 if kind == "multires" else 1, seed=2)
    if kind == "multires":
        m.scales = [1, 2, 1]
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    _gradcheck_inputs_and_weights(m, x)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_bf16_autocast_finite(kind):
    _check_bf16(_new(kind, c=32, dk=18, dv=33, heads=3, dtype=torch.float32))


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_save_only_linear_memory(kind):
    m = _new(kind, c=8, dk=3, dv=6, heads=3, dtype=torch.float32)
    x = torch.randn(1, 8, 64, 64, requires_grad=True)  # n = 4096
    # O(n d); latent: O(n M heads) for its (n, M) maps, M = 5. An n x n map would be 16.7 M elements.
    assert _largest_saved(m, x) <= (3 * 5 if kind == "latent" else 8) * 4096


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_compile_without_graph_breaks(kind):
    m = _new(kind, dtype=torch.float32)
    x = torch.randn(1, 6, 5, 6)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x))


def test_bad_keys_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"'latent' takes \[.*'latents'.*\]; unknown or unused keys \['scales'\]"):
        build_attention("latent", 8, 4, 4, scales=[1, 2])
    with pytest.raises(ValueError, match=r"unknown or unused keys \['blocks'\]"):
        build_attention("efficient", 8, 4, 4, blocks=3)
    with pytest.raises(ValueError, match="one scale >= 1 per head"):
        build_attention("multires", 8, 4, 4, heads=2, scales=[1, 2, 4])
    with pytest.raises(ValueError, match="leave normalization=softmax"):
        build_attention("linear", 8, 4, 4, normalization="scaling")
    assert isinstance(build_attention("latent", 8, 4, 4, scales=[1], ignore_unused=True), LatentAttention)
