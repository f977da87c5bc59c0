"""ponte.core.fast (scaled_dot_product_attention, rope) and the nn layers over them and the C
norms: BatchNorm, GroupNorm, InstanceNorm, RoPE, SinusoidalPositionalEncoding, ALiBi and
MultiHeadAttention, against numpy float64 references on random data."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.utils import tree_flatten

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def A(x):
    return mx.array(np.asarray(x, dtype=np.float32))


def close(y, ref, **kw):
    np.testing.assert_allclose(np.array(y).astype(np.float64), ref, **(kw or TOL))


# ───────────────────────────── numpy references ─────────────────────────────

def np_sdpa(q, k, v, scale, mask=None):
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = scale * q @ np.swapaxes(k, -1, -2)
    if isinstance(mask, str):
        Lq, Lk = s.shape[-2:]
        keep = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + Lk - Lq
        s = np.where(keep, s, -np.inf)
    elif mask is not None and mask.dtype == bool:
        s = np.where(mask, s, -np.inf)
    elif mask is not None:
        s = s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def np_rope(x, dims, traditional, base, scale, offset, freqs=None):
    """offset: an int, or one per entry of the first axis; freqs: angles are their reciprocals."""
    x = np.asarray(x, np.float64).copy()
    L = x.shape[-2]
    off = np.asarray(offset, np.float64).reshape((-1,) + (1,) * (x.ndim - 2))
    pos = (off + np.arange(L)) * scale  # (B or 1, 1, ..., L)
    inv = 1 / np.asarray(freqs, np.float64) if freqs is not None else base ** (-np.arange(dims // 2) / (dims / 2))
    theta = pos[..., None] * inv
    c, s = np.cos(theta), np.sin(theta)
    if traditional:
        a, b = x[..., 0:dims:2].copy(), x[..., 1:dims:2].copy()
        x[..., 0:dims:2] = a * c - b * s
        x[..., 1:dims:2] = a * s + b * c
    else:
        h = dims // 2
        a, b = x[..., :h].copy(), x[..., h:dims].copy()
        x[..., :h] = a * c - b * s
        x[..., h:dims] = a * s + b * c
    return x


def np_norm(x, axes, eps):
    m = x.mean(axis=axes, keepdims=True)
    v = x.var(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps)


# ───────────────────────────── fast ─────────────────────────────

@pytest.mark.parametrize("mask_kind", [None, "causal", "additive", "bool"])
def test_sdpa(rng, mask_kind):
    q = rng.standard_normal((2, 4, 5, 8))
    k = rng.standard_normal((2, 2, 7, 8))
    v = rng.standard_normal((2, 2, 7, 6))
    mask = None
    if mask_kind == "causal":
        mask = "causal"
    elif mask_kind == "additive":
        mask = rng.standard_normal((5, 7))
    elif mask_kind == "bool":
        mask = rng.random((2, 1, 5, 7)) < 0.7
        mask[..., 0] = True
    mmx = mask if mask is None or isinstance(mask, str) else (
        mx.array(mask) if mask.dtype == bool else A(mask))
    y = mx.core.fast.scaled_dot_product_attention(A(q), A(k), A(v), scale=0.3, mask=mmx)
    assert y.shape == (2, 4, 5, 6)
    close(y, np_sdpa(q, k, v, 0.3, mask))


def test_sdpa_errors(rng):
    q = A(rng.standard_normal((1, 2, 3, 4)))
    with pytest.raises(ValueError):
        mx.core.fast.scaled_dot_product_attention(q, q, q, scale=1.0, mask="sideways")
    with pytest.raises(ValueError):  # head dims differ
        mx.core.fast.scaled_dot_product_attention(q, A(np.zeros((1, 2, 3, 5))), q, scale=1.0)
    with pytest.raises(ValueError):  # Hq not a multiple of Hkv
        mx.core.fast.scaled_dot_product_attention(A(np.zeros((1, 3, 3, 4))), q, q, scale=1.0)
    with pytest.raises(TypeError):
        mx.core.fast.scaled_dot_product_attention(q, q, q)


def np_sdpa_grads(q, k, v, scale, w, mask=None):
    """float64 gradients of sum(sdpa(q, k, v) * w) with respect to q, k, v."""
    q, k, v, w = (np.asarray(t, np.float64) for t in (q, k, v, w))
    rep = q.shape[1] // k.shape[1]
    kr, vr = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = scale * q @ np.swapaxes(kr, -1, -2)
    Lq, Lk = s.shape[-2:]
    keep = np.ones(s.shape, bool)
    if isinstance(mask, str):
        keep = keep & (np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + Lk - Lq)
    elif mask is not None and mask.dtype == bool:
        keep = keep & mask
    elif mask is not None:
        s = s + mask
    s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dp = w @ np.swapaxes(vr, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq = scale * ds @ kr
    dk = scale * np.swapaxes(ds, -1, -2) @ q
    dv = np.swapaxes(p, -1, -2) @ w
    group = lambda g: g.reshape(g.shape[0], -1, rep, *g.shape[2:]).sum(2)
    return dq, group(dk), group(dv)


def sdpa_case(rng, mask_kind, shape):
    """Random q, k, v for (B, Hq, Hkv, Lq, Lk, D, Dv) and a mask of the kind (numpy)."""
    B, Hq, Hkv, Lq, Lk, D, Dv = shape
    q, k = rng.standard_normal((B, Hq, Lq, D)), rng.standard_normal((B, Hkv, Lk, D))
    v = rng.standard_normal((B, Hkv, Lk, Dv))
    mask = None
    if mask_kind == "causal":
        mask = "causal"
    elif mask_kind == "additive":
        mask = rng.standard_normal((Lq, Lk))
    elif mask_kind == "bool":
        mask = rng.random((B, 1, Lq, Lk)) < 0.7
        mask[..., 0] = True
    return q, k, v, mask


SDPA_SHAPES = [(2, 4, 2, 5, 7, 8, 6), (1, 2, 1, 130, 130, 80, 80), (2, 1, 1, 1, 300, 16, 16)]


@pytest.mark.parametrize("mask_kind", [None, "causal", "additive", "bool"])
@pytest.mark.parametrize("shape", SDPA_SHAPES)
def test_sdpa_fused_values_and_grads(rng, mask_kind, shape):
    q, k, v, mask = sdpa_case(rng, mask_kind, shape)
    w = rng.standard_normal(q.shape[:3] + (v.shape[-1],))
    mmx = mask if mask is None or isinstance(mask, str) else (
        mx.array(mask) if mask.dtype == bool else A(mask))
    scale = 1 / math.sqrt(q.shape[-1])
    f = lambda a, b, c: (mx.core.fast.scaled_dot_product_attention(a, b, c, scale=scale, mask=mmx) * A(w)).sum()
    close(mx.core.fast.scaled_dot_product_attention(A(q), A(k), A(v), scale=scale, mask=mmx),
          np_sdpa(q, k, v, scale, mask), rtol=2e-4, atol=2e-5)
    grads = mx.grad(f, argnums=(0, 1, 2))(A(q), A(k), A(v))
    for g, ref in zip(grads, np_sdpa_grads(q, k, v, scale, w, mask)):
        close(g, ref, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sdpa_fused_half(rng, dtype):
    """Half inputs: computed in float32, only the result is rounded."""
    q, k, v, _ = sdpa_case(rng, None, (1, 2, 2, 9, 33, 16, 16))
    t = getattr(mx, dtype)
    qh, kh, vh = (A(x).astype(t) for x in (q, k, v))
    ref = np_sdpa(*(np.array(x.astype(mx.float32)) for x in (qh, kh, vh)), 0.25, "causal")
    y = mx.core.fast.scaled_dot_product_attention(qh, kh, vh, scale=0.25, mask="causal")
    assert y.dtype == t
    close(y, ref, rtol=2e-2 if dtype == "bfloat16" else 3e-3, atol=1e-2 if dtype == "bfloat16" else 2e-3)


@pytest.mark.parametrize("mask_kind", [None, "causal", "additive", "bool"])
def test_sdpa_fused_vs_mlx(rng, mask_kind):
    mlx = pytest.importorskip("mlx.core")
    q, k, v, mask = sdpa_case(rng, mask_kind, (2, 4, 2, 33, 40, 16, 24))
    w = rng.standard_normal(q.shape[:3] + (v.shape[-1],)).astype(np.float32)
    outs = []
    for lib in (mx, mlx):
        arr = (lambda x: lib.array(np.asarray(x, np.float32)))
        m = mask if mask is None or isinstance(mask, str) else (
            lib.array(mask) if mask.dtype == bool else arr(mask))
        fast = lib.core.fast if lib is mx else lib.fast
        f = lambda a, b, c: (fast.scaled_dot_product_attention(a, b, c, scale=0.3, mask=m) * arr(w)).sum()
        y = fast.scaled_dot_product_attention(arr(q), arr(k), arr(v), scale=0.3, mask=m)
        gs = lib.grad(f, argnums=(0, 1, 2))(arr(q), arr(k), arr(v))
        outs.append([np.array(y)] + [np.array(g) for g in gs])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("mask_kind", [None, "causal", "bool"])
def test_sdpa_sinks(rng, mask_kind):
    """Attention sinks (gpt-oss): numpy with the sink column, and MLX itself, values and the
    gradients in q, k, v and the sinks; shapes and dtypes MLX refuses are refused."""
    q, k, v, mask = sdpa_case(rng, mask_kind, (2, 4, 2, 9, 12, 8, 8))
    sinks = rng.standard_normal(4).astype(np.float32)
    w = rng.standard_normal(q.shape[:3] + (v.shape[-1],)).astype(np.float32)

    def np_ref(q, k, v, sinks):
        q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
        rep = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = 0.3 * q @ np.swapaxes(k, -1, -2)
        if isinstance(mask, str):
            Lq, Lk = s.shape[-2:]
            s = np.where(np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + Lk - Lq, s, -np.inf)
        elif mask is not None:
            s = np.where(mask, s, -np.inf)
        col = np.broadcast_to(np.asarray(sinks, np.float64)[None, :, None, None], s.shape[:3] + (1,))
        full = np.concatenate([col, s], -1)
        p = np.exp(full - full.max(-1, keepdims=True))
        return (p / p.sum(-1, keepdims=True))[..., 1:] @ v

    outs = []
    libs = [mx]
    try:
        import mlx.core as mlx
        libs.append(mlx)
    except ImportError:
        pass
    for lib in libs:
        arr = (lambda x: lib.array(np.asarray(x, np.float32)))
        m = mask if mask is None or isinstance(mask, str) else lib.array(mask)
        fast = lib.core.fast if lib is mx else lib.fast
        f = lambda a, b, c, d: (fast.scaled_dot_product_attention(a, b, c, scale=0.3, mask=m, sinks=d) * arr(w)).sum()
        y = fast.scaled_dot_product_attention(arr(q), arr(k), arr(v), scale=0.3, mask=m, sinks=arr(sinks))
        gs = lib.grad(f, argnums=(0, 1, 2, 3))(arr(q), arr(k), arr(v), arr(sinks))
        outs.append([np.array(y)] + [np.array(g) for g in gs])
    close(outs[0][0], np_ref(q, k, v, sinks))
    eps = 1e-3  # the sinks' gradient by central differences of the float64 reference
    num = [((np_ref(q, k, v, sinks + eps * e) - np_ref(q, k, v, sinks - eps * e)) / (2 * eps) * w).sum()
           for e in np.eye(4)]
    np.testing.assert_allclose(outs[0][4], num, rtol=1e-3, atol=1e-4)
    for a, b in zip(*outs) if len(outs) == 2 else []:
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    x = mx.array(np.asarray(q, np.float32)).astype(mx.bfloat16)
    kb = mx.array(np.asarray(k, np.float32)).astype(mx.bfloat16)
    # one per query head, not per kv head nor broadcast; float32 does not promote to bfloat16
    for bad in (mx.zeros((2,), mx.bfloat16), mx.zeros((1, 4, 1, 1), mx.bfloat16), mx.zeros((4,), mx.float32)):
        with pytest.raises(ValueError):
            mx.core.fast.scaled_dot_product_attention(x, kb, kb, scale=1.0, sinks=bad)
    y = mx.core.fast.scaled_dot_product_attention(x, kb, kb, scale=1.0, sinks=mx.zeros((4,), mx.bfloat16),
                                                  force_fused=True)
    assert y.dtype == mx.bfloat16


def sdpa_vs_mlx(q, k, v, mask, w, scale):
    """Values and q, k, v gradients of Ponte's and MLX's sdpa (float32; mask None, a string
    or a float numpy array): two lists of numpy arrays."""
    mlx = pytest.importorskip("mlx.core")
    outs = []
    for lib in (mx, mlx):
        arr = (lambda x: lib.array(np.asarray(x, np.float32)))
        m = mask if mask is None or isinstance(mask, str) else arr(mask)
        fast = lib.core.fast if lib is mx else lib.fast
        f = lambda a, b, c: (fast.scaled_dot_product_attention(a, b, c, scale=scale, mask=m) * arr(w)).sum()
        y = fast.scaled_dot_product_attention(arr(q), arr(k), arr(v), scale=scale, mask=m)
        gs = lib.grad(f, argnums=(0, 1, 2))(arr(q), arr(k), arr(v))
        outs.append([np.array(y)] + [np.array(g) for g in gs])
    return outs


@pytest.mark.parametrize("fill", [-1e9, float(np.finfo(np.float32).min), -np.inf])
def test_sdpa_masked_rows_vs_mlx(rng, fill):
    """Rows that an additive mask pushes to huge negative scores: the softmax of the rounded
    (equal) scores is uniform; a row of -inf is NaN, and so are its dq row and its kv heads'
    dk and dv. Row 4 mixes -inf with a finite fill."""
    q, k, v, _ = sdpa_case(rng, None, (2, 4, 2, 6, 9, 16, 8))
    mask = rng.standard_normal((6, 9)).astype(np.float32)
    mask[1] = fill
    mask[4, ::2], mask[4, 1::2] = -np.inf, fill if np.isfinite(fill) else -1e9
    w = rng.standard_normal(q.shape[:3] + (v.shape[-1],)).astype(np.float32)
    ours, theirs = sdpa_vs_mlx(q, k, v, mask, w, 0.3)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, equal_nan=True)
    assert np.isnan(ours[0][:, :, 1]).all() == (fill == -np.inf)


@pytest.mark.parametrize("shape", [(1, 4, 2, 9, 13, 128, 128), (1, 2, 2, 5, 7, 256, 96), (1, 2, 1, 3, 4, 512, 512)])
@pytest.mark.parametrize("mask_kind", [None, "causal"])
def test_sdpa_large_heads_vs_mlx(rng, shape, mask_kind):
    """Head dims past 48 KiB of shared memory on the GPU (the opt-in limit, smaller chunks),
    Dv != D, grouped heads."""
    q, k, v, _ = sdpa_case(rng, None, shape)
    w = rng.standard_normal(q.shape[:3] + (v.shape[-1],)).astype(np.float32)
    ours, theirs = sdpa_vs_mlx(q, k, v, mask_kind, w, 1 / math.sqrt(shape[5]))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=5e-4, atol=5e-5)


def test_sdpa_error_types_match_mlx(rng):
    mlx = pytest.importorskip("mlx.core")
    bad = [((1, 2, 3, 4), (1, 2, 3, 5), (1, 2, 3, 4), None),   # head dims differ
           ((1, 3, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), None),   # Hq not a multiple of Hkv
           ((1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), "sideways"),
           ((1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 5, 4), None)]   # k, v lengths differ
    for qs, ks, vs, mask in bad:
        kinds = []
        for lib in (mx, mlx):
            fast = lib.core.fast if lib is mx else lib.fast
            arr = (lambda s: lib.array(rng.standard_normal(s).astype(np.float32)))
            try:
                lib.eval(fast.scaled_dot_product_attention(arr(qs), arr(ks), arr(vs), scale=1.0, mask=mask))
                kinds.append(None)
            except Exception as e:  # noqa: BLE001 - the type is what is compared
                kinds.append(type(e))
        assert kinds[0] is not None and kinds[0] == kinds[1], (qs, ks, vs, mask, kinds)


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("dims", [8, 6])
def test_rope(rng, traditional, dims):
    x = rng.standard_normal((2, 3, 5, 8))
    y = mx.core.fast.rope(A(x), dims, traditional=traditional, base=10000.0, scale=0.5, offset=3)
    close(y, np_rope(x, dims, traditional, 10000.0, 0.5, 3))
    layer = nn.RoPE(dims, traditional=traditional, base=500)
    close(layer(A(x), offset=2), np_rope(x, dims, traditional, 500.0, 1.0, 2))
    close(layer(A(x)), np_rope(x, dims, traditional, 500.0, 1.0, 0))


@pytest.mark.parametrize("traditional", [False, True])
def test_rope_freqs_and_array_offsets(rng, traditional):
    """mlx-lm's scaled RoPEs pass freqs (base=None); batched caches pass one offset per entry."""
    x = rng.standard_normal((3, 2, 5, 8))
    freqs = rng.uniform(0.5, 50, 3)
    offs = np.array([4, 0, 9], np.int32)
    y = mx.core.fast.rope(A(x), 6, traditional=traditional, base=None, scale=0.5, offset=mx.array(offs),
                          freqs=A(freqs))
    close(y, np_rope(x, 6, traditional, None, 0.5, offs, freqs))
    y = mx.core.fast.rope(A(x), 8, traditional=traditional, base=100.0, scale=1.0, offset=mx.array(5))
    close(y, np_rope(x, 8, traditional, 100.0, 1.0, 5))
    g = mx.grad(lambda a: mx.core.fast.rope(a, 6, traditional=traditional, base=None, scale=1.0,
                                            offset=2, freqs=A(freqs)).sum())(A(x))
    # the rotation is orthogonal: the gradient of the sum is the transposed rotation of ones
    ref = np_rope(np.ones_like(x), 6, traditional, None, -1.0, 2, freqs)
    close(g, ref)


def test_rope_errors(rng):
    x = A(rng.standard_normal((1, 2, 3, 4)))
    with pytest.raises(ValueError):  # both base and freqs
        mx.core.fast.rope(x, 4, traditional=False, base=10000.0, scale=1.0, offset=0,
                          freqs=mx.ones((2,)))
    with pytest.raises(ValueError):  # neither
        mx.core.fast.rope(x, 4, traditional=False, base=None, scale=1.0, offset=0)
    with pytest.raises(ValueError):  # freqs of the wrong size
        mx.core.fast.rope(x, 4, traditional=False, base=None, scale=1.0, offset=0,
                          freqs=mx.ones((3,)))
    with pytest.raises(ValueError):  # a float offset
        mx.core.fast.rope(x, 4, traditional=False, base=10000.0, scale=1.0, offset=mx.array(1.5))
    with pytest.raises(ValueError):  # offsets for another batch size
        mx.core.fast.rope(x, 4, traditional=False, base=10000.0, scale=1.0, offset=mx.array([1, 2]))
    with pytest.raises(ValueError):  # odd dims
        mx.core.fast.rope(x, 3, traditional=False, base=10000.0, scale=1.0, offset=0)
    with pytest.raises(ValueError):  # dims > D
        mx.core.fast.rope(x, 8, traditional=False, base=10000.0, scale=1.0, offset=0)


# ───────────────────────────── norms ─────────────────────────────

@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4), (2, 3, 5, 4)])
def test_batch_norm(rng, shape):
    bn = nn.BatchNorm(4, momentum=0.2)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    bn.weight, bn.bias = A(w), A(b)
    x = rng.standard_normal(shape) * 3 + 1
    axes = tuple(range(len(shape) - 1))
    y = bn(A(x))
    close(y, np_norm(x, axes, 1e-5) * w + b)
    rm = 0.8 * np.zeros(4) + 0.2 * x.mean(axis=axes)
    rv = 0.8 * np.ones(4) + 0.2 * x.var(axis=axes, ddof=1)  # unbiased, as MLX
    close(bn.running_mean, rm)
    close(bn.running_var, rv)
    x2 = rng.standard_normal(shape)
    bn(A(x2))
    rm = 0.8 * rm + 0.2 * x2.mean(axis=axes)
    rv = 0.8 * rv + 0.2 * x2.var(axis=axes, ddof=1)
    close(bn.running_mean, rm)
    close(bn.running_var, rv)
    bn.eval()
    y = bn(A(x))
    close(y, (x - rm) / np.sqrt(rv + 1e-5) * w + b)
    close(bn.running_mean, rm)  # unchanged in eval mode


def test_batch_norm_frozen_stats_and_options(rng):
    bn = nn.BatchNorm(3)
    assert set(bn.trainable_parameters()) == {"weight", "bias"}
    assert set(bn.parameters()) == {"weight", "bias", "running_mean", "running_var"}
    bn.unfreeze()
    assert set(bn.trainable_parameters()) == {"weight", "bias"}
    xg = A(rng.standard_normal((4, 3)))
    _, grads = nn.value_and_grad(bn, lambda inp: (bn(inp) ** 2).sum())(xg)
    assert set(grads) == {"weight", "bias"}
    close(bn.running_mean, 0.1 * np.array(xg).astype(np.float64).mean(0))  # updated under the trace
    x = rng.standard_normal((5, 3))
    plain = nn.BatchNorm(3, affine=False, track_running_stats=False)
    assert set(plain.parameters()) == set()
    close(plain(A(x)), np_norm(x, (0,), 1e-5))
    plain.eval()
    close(plain(A(x)), np_norm(x, (0,), 1e-5))  # no running stats: batch stats
    with pytest.raises(ValueError):
        bn(A(np.zeros((2, 4))))  # wrong channel count
    with pytest.raises(ValueError):
        bn(A(np.zeros((3,))))  # 1-d


@pytest.mark.parametrize("pytorch_compatible", [False, True])
def test_group_norm(rng, pytorch_compatible):
    C, G = 6, 3
    gn = nn.GroupNorm(G, C, eps=1e-4, pytorch_compatible=pytorch_compatible)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    gn.weight, gn.bias = A(w), A(b)
    x = rng.standard_normal((2, 4, 5, C)) * 2 + 0.5
    y = np.empty_like(x)
    for g in range(G):
        ch = np.arange(g * (C // G), (g + 1) * (C // G)) if pytorch_compatible else np.arange(g, C, G)
        xs = x[..., ch]
        y[..., ch] = np_norm(xs, (1, 2, 3), 1e-4)
    close(gn(A(x)), y * w + b)
    if G > 1:  # the orderings differ
        other = nn.GroupNorm(G, C, eps=1e-4, affine=False, pytorch_compatible=not pytorch_compatible)
        assert not np.allclose(np.array(other(A(x))), y, atol=1e-3)
    with pytest.raises(ValueError):
        nn.GroupNorm(4, C)(A(x))  # 6 channels into 4 groups


def test_instance_norm(rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 2 + 1
    inorm = nn.InstanceNorm(5)
    assert set(inorm.parameters()) == set()
    close(inorm(A(x)), np_norm(x, (1, 2), 1e-5))
    aff = nn.InstanceNorm(5, affine=True)
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    aff.weight, aff.bias = A(w), A(b)
    close(aff(A(x)), np_norm(x, (1, 2), 1e-5) * w + b)
    with pytest.raises(ValueError):
        aff(A(np.zeros((2, 3, 4))))  # channels 4 != 5


# ───────────────────────────── positional ─────────────────────────────

@pytest.mark.parametrize("cos_first,full_turns", [(False, False), (True, True)])
def test_sinusoidal(rng, cos_first, full_turns):
    dims = 8
    pe = nn.SinusoidalPositionalEncoding(dims, min_freq=1e-3, max_freq=2.0, cos_first=cos_first,
                                         full_turns=full_turns)
    p = rng.random((3, 4)) * 20
    one_zero = 1 - np.arange(dims // 2) / (dims // 2 - 1)
    freqs = 1e-3 * (2.0 / 1e-3) ** one_zero
    if full_turns:
        freqs = freqs * 2 * np.pi
    t = p[..., None] * freqs
    parts = [np.cos(t), np.sin(t)] if cos_first else [np.sin(t), np.cos(t)]
    ref = np.concatenate(parts, -1) * math.sqrt(2 / dims)
    y = pe(A(p))
    assert y.shape == (3, 4, dims)
    close(y, ref, rtol=1e-4, atol=1e-4)
    close(nn.SinusoidalPositionalEncoding(dims, scale=3.0)(A(p)),
          np.array(nn.SinusoidalPositionalEncoding(dims)(A(p))) / math.sqrt(2 / dims) * 3.0)


def np_alibi_slopes(H):
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    if math.log2(H).is_integer():
        return np.array(pow2(H))
    c = 2 ** math.floor(math.log2(H))
    return np.array(pow2(c) + pow2(2 * c)[0::2][: H - c])


@pytest.mark.parametrize("H", [4, 6])
def test_alibi(rng, H):
    L, S, off = 3, 7, 2
    scores = rng.standard_normal((2, H, L, S))
    mask = rng.standard_normal((L, S))
    dist = -np.abs(off + np.arange(L)[:, None] - np.arange(S)[None, :])
    bias = np_alibi_slopes(H)[:, None, None] * dist[None]
    close(nn.ALiBi()(A(scores), offset=off), scores + bias[None])
    close(nn.ALiBi()(A(scores), offset=off, mask=A(mask)), scores + bias[None] + mask)
    m = nn.ALiBi.create_alibi_matrix(L + off, S, H, off)
    assert m.shape == (1, H, L, S)
    close(m, bias[None])


# ───────────────────────────── multi-head attention ─────────────────────────────

def test_causal_mask():
    m = np.array(nn.MultiHeadAttention.create_additive_causal_mask(4))
    assert m.shape == (4, 4) and m.dtype == np.float32
    assert (m[np.tril_indices(4)] == 0).all()
    assert (m[np.triu_indices(4, 1)] == np.finfo(np.float32).min).all()


@pytest.mark.parametrize("use_mask", [False, True])
def test_multi_head_attention(rng, use_mask):
    mha = nn.MultiHeadAttention(8, 2, key_input_dims=6, value_dims=10, value_output_dims=5, bias=True)
    q = rng.standard_normal((2, 3, 8))
    kv = rng.standard_normal((2, 4, 6))
    mask = None
    if use_mask:
        mask = rng.standard_normal((3, 4))
    y = mha(A(q), A(kv), A(kv), mask=None if mask is None else A(mask))
    assert y.shape == (2, 3, 5)
    P = {k: np.array(v).astype(np.float64) for k, v in tree_flatten(mha.parameters())}

    def lin(x, name):
        return x @ P[name + ".weight"].T + P[name + ".bias"]

    def heads(x):
        B, L, D = x.shape
        return x.reshape(B, L, 2, D // 2).transpose(0, 2, 1, 3)

    Q, K, V = heads(lin(q, "query_proj")), heads(lin(kv, "key_proj")), heads(lin(kv, "value_proj"))
    o = np_sdpa(Q, K, V, 1 / math.sqrt(4), mask)
    ref = lin(o.transpose(0, 2, 1, 3).reshape(2, 3, -1), "out_proj")
    close(y, ref)


def test_multi_head_attention_causal_and_errors(rng):
    mha = nn.MultiHeadAttention(8, 4)
    assert set(mha.parameters()) == {"query_proj", "key_proj", "value_proj", "out_proj"}
    assert "bias" not in mha.query_proj
    x = A(rng.standard_normal((1, 5, 8)))
    m = nn.MultiHeadAttention.create_additive_causal_mask(5)
    a = np.array(mha(x, x, x, mask=m))
    b = np.array(mha(x, x, x, mask="causal"))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        nn.MultiHeadAttention(10, 4)
    with pytest.raises(ValueError):
        mha(x, A(np.zeros((1, 5, 7))), x)
