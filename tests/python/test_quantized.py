"""mx.quantize / dequantize / quantized_matmul and nn.QuantizedLinear, QuantizedEmbedding,
nn.quantize: numpy references of MLX's affine format (packing, the quantization formula,
products in float64), and the same calls through MLX when it is importable (bit-exact
w_q/scales/biases, close products, matching errors)."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.utils import tree_flatten

BITS = [1, 2, 3, 4, 5, 6, 8]
GROUPS = [32, 64, 128]


def np_unpack(wq, bits, k):
    """The quantized values of each row of w_q (..., k * bits / 32) as int64 (..., k)."""
    w = np.asarray(wq).astype(np.uint64)
    lead = w.shape[:-1]
    w = w.reshape(-1, w.shape[-1])
    out = np.zeros((w.shape[0], k), np.int64)
    for i in range(k):
        bit = i * bits
        word, shift = bit // 32, bit % 32
        v = w[:, word] >> np.uint64(shift)
        if shift + bits > 32:
            v |= w[:, word + 1] << np.uint64(32 - shift)
        out[:, i] = (v & np.uint64((1 << bits) - 1)).astype(np.int64)
    return out.reshape(lead + (k,))


def np_quantize(w, gs, bits):
    """MLX's affine quantization in float32: (q (..., k) int, scales, biases (..., k / gs))."""
    w = np.asarray(w, np.float32)
    g = w.reshape(w.shape[:-1] + (w.shape[-1] // gs, gs))
    mx_, mn = g.max(-1), g.min(-1)
    levels, eps = np.float32((1 << bits) - 1), np.float32(1e-7)
    if bits == 1:
        s = np.maximum(mx_ - mn, eps).astype(np.float32)
        b = mn
    else:
        neg = np.abs(mn) > np.abs(mx_)
        s = np.maximum((mx_ - mn) / levels, eps).astype(np.float32)
        s = np.where(neg, s, -s).astype(np.float32)
        edge = np.where(neg, mn, mx_).astype(np.float32)
        q0 = np.rint(edge / s).astype(np.float32)
        nz = q0 != 0
        s = np.where(nz, edge / np.where(nz, q0, 1), s).astype(np.float32)
        b = np.where(nz, edge, 0).astype(np.float32)
    q = np.clip(np.rint((g - b[..., None]) / s[..., None]), 0, levels).astype(np.int64)
    return q.reshape(w.shape), s, b


def np_dequant(wq, scales, biases, gs, bits):
    s = np.asarray(scales.astype(mx.float32), np.float64)
    b = np.asarray(biases.astype(mx.float32), np.float64)
    k = s.shape[-1] * gs
    q = np_unpack(wq, bits, k).astype(np.float64)
    return q * np.repeat(s, gs, -1) + np.repeat(b, gs, -1)


def f32(a):
    return np.asarray(a.astype(mx.float32))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("gs", GROUPS)
def test_quantize_matches_the_formula(bits, gs):
    rng = np.random.default_rng(bits * 1000 + gs)
    w = (rng.standard_normal((3, 2 * gs)) * 2 + 0.3).astype(np.float32)
    wq, s, b = mx.quantize(mx.array(w), group_size=gs, bits=bits)
    assert wq.dtype == mx.uint32 and wq.shape == (3, 2 * gs * bits // 32)
    assert s.shape == b.shape == (3, 2) and s.dtype == mx.float32
    q, rs, rb = np_quantize(w, gs, bits)
    np.testing.assert_array_equal(np_unpack(wq, bits, 2 * gs), q)
    np.testing.assert_array_equal(np.asarray(s), rs)
    np.testing.assert_array_equal(np.asarray(b), rb)
    d = mx.dequantize(wq, s, b, group_size=gs, bits=bits)
    np.testing.assert_allclose(np.asarray(d), np_dequant(wq, s, b, gs, bits), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_types_keep_their_dtype(dtype):
    rng = np.random.default_rng(5)
    w = mx.array(rng.standard_normal((4, 128)).astype(np.float32)).astype(dtype)
    wq, s, b = mx.quantize(w)
    assert s.dtype == dtype and b.dtype == dtype
    d = mx.dequantize(wq, s, b)
    assert d.dtype == dtype
    assert mx.dequantize(wq, s, b, dtype=mx.float32).dtype == mx.float32
    q, _, _ = np_quantize(f32(w), 64, 4)
    np.testing.assert_array_equal(np_unpack(wq, 4, 128), q)


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("bits,gs", [(4, 64), (3, 32), (8, 128), (2, 32), (6, 64)])
@pytest.mark.parametrize("m", [1, 33])
def test_quantized_matmul_against_numpy(transpose, bits, gs, m):
    rng = np.random.default_rng(bits + gs + m)
    n, k = 96 if transpose else 2 * gs, 2 * gs
    w = rng.uniform(-1, 1, (n, k) if transpose else (k, n)).astype(np.float32)
    x = rng.uniform(-1, 1, (2, m, k)).astype(np.float32)
    wq, s, b = mx.quantize(mx.array(w), gs, bits)
    y = mx.quantized_matmul(mx.array(x), wq, s, b, transpose=transpose, group_size=gs, bits=bits)
    wd = np_dequant(wq, s, b, gs, bits)
    ref = x.astype(np.float64) @ (wd.T if transpose else wd)
    assert y.shape == ref.shape and y.dtype == mx.float32
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)


def test_quantized_matmul_vector_batched_weights_and_grad():
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (2, 8, 64)).astype(np.float32)
    wq, s, b = mx.quantize(mx.array(w), 32, 4)
    x = mx.array(rng.uniform(-1, 1, (2, 3, 64)).astype(np.float32))
    y = mx.quantized_matmul(x, wq, s, b, group_size=32, bits=4)
    wd = np_dequant(wq, s, b, 32, 4)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x) @ np.swapaxes(wd, -1, -2), rtol=1e-5,
                               atol=1e-5)
    v = mx.quantized_matmul(x[0, 0], wq[0], s[0], b[0], group_size=32, bits=4)
    assert v.shape == (8,)
    # d sum(x @ W^T) / dx = column sums of W, for every row of x
    g = mx.grad(lambda x_: mx.quantized_matmul(x_, wq, s, b, group_size=32, bits=4).sum())(x)
    np.testing.assert_allclose(np.asarray(g), np.broadcast_to(wd.sum(1)[:, None, :], (2, 3, 64)),
                               rtol=1e-5, atol=1e-5)
    gb = mx.grad(lambda b_: mx.quantized_matmul(x, wq, s, b_, group_size=32, bits=4).sum())(b)
    np.testing.assert_allclose(np.asarray(gb),
                               np.broadcast_to(np.asarray(x).sum(1).reshape(2, 1, 2, 32).sum(-1),
                                               (2, 8, 2)), rtol=1e-5, atol=1e-5)


def test_errors():
    w = mx.random.normal((4, 64))
    wq, s, b = mx.quantize(w)
    with pytest.raises(ValueError, match="at least 2"):
        mx.quantize(mx.zeros((64,)))
    with pytest.raises(ValueError, match="divisible"):
        mx.quantize(mx.zeros((2, 48)))
    with pytest.raises(ValueError, match="bits 7"):
        mx.quantize(w, bits=7)
    with pytest.raises(ValueError, match="group size 16"):
        mx.quantize(w, group_size=16)
    with pytest.raises(ValueError):
        mx.quantize(w.astype(mx.int32))
    with pytest.raises(ValueError, match="'foo'"):
        mx.quantize(w, mode="foo")
    with pytest.raises(ValueError, match="Biases must be provided"):
        mx.dequantize(wq, s)
    with pytest.raises(ValueError):
        mx.dequantize(wq, s, b, group_size=32)
    with pytest.raises(ValueError):
        mx.quantized_matmul(mx.zeros((3, 32)), wq, s, b)
    with pytest.raises(ValueError, match="uint32"):
        mx.quantized_matmul(mx.zeros((3, 64)), wq.astype(mx.int32), s, b)
    with pytest.raises(ValueError, match="same shape"):
        mx.quantized_matmul(mx.zeros((3, 64)), wq, s, mx.zeros((4, 2)))


def test_quantized_linear_and_embedding():
    mx.random.seed(3)
    lin = nn.Linear(64, 16)
    ql = lin.to_quantized(group_size=32, bits=8)
    assert isinstance(ql, nn.QuantizedLinear) and ql.weight.dtype == mx.uint32
    assert "input_dims=64, output_dims=16, bias=True, group_size=32, bits=8" in repr(ql)
    x = mx.random.normal((5, 64))
    np.testing.assert_allclose(np.asarray(ql(x)), np.asarray(lin(x)), rtol=2e-2, atol=2e-2)
    # the quantized parameters are frozen; the bias copied from the Linear is not (as MLX)
    assert sorted(k for k, _ in tree_flatten(ql.trainable_parameters())) == ["bias"]
    assert sorted(k for k, _ in tree_flatten(ql.parameters())) == ["bias", "biases", "scales",
                                                                    "weight"]
    emb = nn.Embedding(10, 64)
    qe = emb.to_quantized(bits=8)
    idx = mx.array([[1, 3], [9, 0]])
    np.testing.assert_allclose(np.asarray(qe(idx)), np.asarray(emb(idx)), atol=2e-2)
    np.testing.assert_allclose(np.asarray(qe.as_linear(x)), np.asarray(emb.as_linear(x)),
                               rtol=5e-2, atol=5e-2)
    q2 = nn.QuantizedLinear(128, 8, bias=False)
    assert q2.group_size == 64 and q2.bits == 4 and "bias" not in q2
    assert q2(mx.random.normal((5, 128))).shape == (5, 8)


def test_nn_quantize_model():
    mx.random.seed(4)
    model = nn.Sequential(nn.Embedding(12, 64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
    idx = mx.array([1, 2, 11])
    before = model(idx)
    nn.quantize(model, group_size=32, bits=8, class_predicate=lambda p, m: hasattr(
        m, "to_quantized") and not (isinstance(m, nn.Linear) and m.weight.shape[0] == 32))
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["QuantizedEmbedding", "QuantizedLinear", "ReLU", "Linear"]
    np.testing.assert_allclose(np.asarray(model(idx)), np.asarray(before), rtol=5e-2, atol=5e-2)
    model2 = nn.Sequential(nn.Linear(64, 64))
    nn.quantize(model2)
    assert isinstance(model2.layers[0], nn.QuantizedLinear) and model2.layers[0].bits == 4


# ───────────────────────────── against MLX ─────────────────────────────

def _mlx():
    return pytest.importorskip("mlx.core")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("gs", GROUPS)
def test_mlx_quantize_bit_exact(dtype, bits, gs):
    mlx = _mlx()
    rng = np.random.default_rng(bits * 7 + gs)
    w = (rng.standard_normal((5, 2 * gs)) * 1.5 - 0.2).astype(np.float32)
    w[0, :gs] = 0.25  # a constant group
    w[1, gs:] = 0.0  # a zero group
    mw = mlx.array(w).astype(getattr(mlx, dtype))
    pw = mx.array(w).astype(getattr(mx, dtype))
    mq, ms, mb = mlx.quantize(mw, group_size=gs, bits=bits)
    pq, ps, pb = mx.quantize(pw, group_size=gs, bits=bits)
    np.testing.assert_array_equal(np.asarray(mq), np.asarray(pq))
    np.testing.assert_array_equal(np.asarray(ms.astype(mlx.float32)), f32(ps))
    np.testing.assert_array_equal(np.asarray(mb.astype(mlx.float32)), f32(pb))
    md = mlx.dequantize(mq, ms, mb, group_size=gs, bits=bits)
    pd = mx.dequantize(pq, ps, pb, group_size=gs, bits=bits)
    np.testing.assert_array_equal(np.asarray(md.astype(mlx.float32)), f32(pd))


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("m", [1, 20])
def test_mlx_quantized_matmul_close(transpose, dtype, m):
    mlx = _mlx()
    rng = np.random.default_rng(m + transpose)
    w = rng.uniform(-1, 1, (64, 128)).astype(np.float32)
    x = rng.uniform(-1, 1, (3, m, 128 if transpose else 64)).astype(np.float32)
    mq = mlx.quantize(mlx.array(w).astype(getattr(mlx, dtype)), group_size=32, bits=4)
    pq = mx.quantize(mx.array(w).astype(getattr(mx, dtype)), group_size=32, bits=4)
    my = mlx.quantized_matmul(mlx.array(x).astype(getattr(mlx, dtype)), *mq, transpose=transpose,
                              group_size=32, bits=4)
    py = mx.quantized_matmul(mx.array(x).astype(getattr(mx, dtype)), *pq, transpose=transpose,
                             group_size=32, bits=4)
    assert str(my.dtype).split(".")[-1] == str(py.dtype).split(".")[-1]
    # MLX accumulates half types in the half type itself; Ponte in float32
    tol = {"float32": 1e-4, "float16": 5e-2, "bfloat16": 0.3}[dtype]
    np.testing.assert_allclose(np.asarray(my.astype(mlx.float32)), f32(py), rtol=tol, atol=tol)


def test_mlx_gradients_match():
    mlx = _mlx()
    rng = np.random.default_rng(9)
    w = rng.uniform(-1, 1, (16, 64)).astype(np.float32)
    x = rng.uniform(-1, 1, (3, 64)).astype(np.float32)
    mq = mlx.quantize(mlx.array(w), group_size=32, bits=4)
    pq = mx.quantize(mx.array(w), group_size=32, bits=4)

    def loss(lib, q):
        return lambda x_, s_, b_: (lib.quantized_matmul(x_, q[0], s_, b_, group_size=32,
                                                        bits=4) ** 2).sum()
    mg = mlx.grad(loss(mlx, mq), argnums=(0, 1, 2))(mlx.array(x), mq[1], mq[2])
    pg = mx.grad(loss(mx, pq), argnums=(0, 1, 2))(mx.array(x), pq[1], pq[2])
    for a, b in zip(mg, pg):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_mlx_error_types_match():
    mlx = _mlx()
    for lib in (mlx, mx):
        w = lib.zeros((4, 64))
        q = lib.quantize(w)
        for bad in (lambda: lib.quantize(lib.zeros((64,))), lambda: lib.quantize(w, bits=7),
                    lambda: lib.quantize(w, group_size=16), lambda: lib.dequantize(q[0], q[1]),
                    lambda: lib.quantized_matmul(lib.zeros((2, 32)), *q)):
            with pytest.raises(ValueError):
                bad()


# ───────────────────────────── floating-point modes ─────────────────────────────
# mxfp4 (fp4 e2m1, groups of 32, e8m0 scales), mxfp8 (fp8 e4m3, groups of 32, e8m0), nvfp4
# (fp4 e2m1, groups of 16, e4m3 scales): numpy references of MLX 0.32.4's CPU arithmetic for
# float32 inputs, then differential checks against MLX for every dtype.

FP_MODES = {"mxfp4": (32, 4, 6.0, True), "mxfp8": (32, 8, 448.0, True),
            "nvfp4": (16, 4, 6.0, False)}
FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def np_e4m3_value(c):
    c = np.asarray(c, np.int64)
    e, m = (c >> 3) & 15, c & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    return np.where(c & 128, -v, v)


def np_e4m3_code(x):
    """Nearest e4m3 code over 0..126 (ties to even), saturating at 448 (inf, NaN too)."""
    x = np.asarray(x, np.float64).ravel()
    vals = np_e4m3_value(np.arange(127))
    a = np.abs(np.nan_to_num(x, nan=np.inf))
    d = np.abs(vals[None, :] - np.where(np.isinf(a), 0, a)[:, None])
    tie = d == d.min(1, keepdims=True)
    idx = np.where(tie.sum(1) > 1, np.argmax(tie & (np.arange(127) % 2 == 0), 1), d.argmin(1))
    idx = np.where(a >= 448, 126, idx)
    return (idx | np.where(np.signbit(x), 128, 0)).astype(np.uint8)


def np_fp_quantize(w, mode, gscale=None):
    """(w_q uint32 (..., k bits / 32), scale codes uint8 (..., k / gs)) of float32 w."""
    gs, bits, maxv, e8m0 = FP_MODES[mode]
    w = np.asarray(w, np.float32)
    g = w.reshape(-1, gs)
    with np.errstate(all="ignore"):
        s = (np.max(np.abs(g), 1) / np.float32(maxv)).astype(np.float32)
        if e8m0:
            e = np.ceil(np.log2(s))
            fin = np.isfinite(e)
            e = np.where(s == 0, 0, np.where(fin, e, 0)).astype(np.int64)
            codes = np.where(fin | (s == 0), (e + 127) & 255, 128).astype(np.uint8)
            div = np.where(fin | (s == 0), np.ldexp(np.float32(1), e), np.float32(0))
        else:  # with a global scale g: e4m3(s * 2688 / g), elements then times 2688 / g
            f = np.float32(1) if gscale is None else np.float32(2688) / np.float32(gscale)
            codes = np_e4m3_code((s * f).astype(np.float32))
            div = np_e4m3_value(codes).astype(np.float32)
        x = (g / div.astype(np.float32)[:, None]).astype(np.float32)
        if gscale is not None and not e8m0:
            x = (x * f).astype(np.float32)
    if bits == 8:
        q = np_e4m3_code(x).reshape(g.shape)
    else:
        with np.errstate(invalid="ignore"):
            d = np.abs(x[..., None] - FP4)
        q = np.argmin(np.where(np.isnan(d), np.inf, d), -1).astype(np.uint8)
        q = q.reshape(-1, 2)
        q = (q[:, 0] | (q[:, 1] << 4)).astype(np.uint8)
    wq = np.ascontiguousarray(q).reshape(w.shape[:-1] + (-1,)).view(np.uint32)
    return wq, codes.reshape(w.shape[:-1] + (-1,))


def np_fp_dequantize(wq, codes, mode):
    """The float64 values that fp-mode words and scale codes encode."""
    gs, bits, _, e8m0 = FP_MODES[mode]
    b = np.ascontiguousarray(np.asarray(wq)).view(np.uint8)
    v = (np_e4m3_value(b) if bits == 8 else
         FP4[np.stack([b & 15, b >> 4], -1).reshape(b.shape[:-1] + (-1,))].astype(np.float64))
    c = np.asarray(codes).astype(np.int64)
    s = np.ldexp(1.0, c - 127) if e8m0 else np_e4m3_value(c)
    return v * np.repeat(s, gs, -1)


def fp_test_matrix(rng, rows, k, specials=True):
    w = (rng.standard_normal((rows, k)) * 10.0 ** rng.uniform(-6, 3, (rows, 1))).astype(np.float32)
    w[0] = rng.integers(-12, 13, k) * 0.25  # fp4 ties
    w[1] = rng.integers(-8, 9, k) * 0.375
    w[2, ::3] = 0
    w[3] = 0
    w[4, : k // 2] = 2.0 ** rng.integers(-10, 10) * rng.integers(-8, 9, k // 2)
    if specials:
        w[5, 1], w[6, 2], w[7, 3], w[8, 4] = np.inf, -np.inf, np.nan, 1e-45
        w[9, :] *= 1e-38
    return w


@pytest.mark.parametrize("mode", list(FP_MODES))
def test_fp_quantize_matches_numpy(mode):
    rng = np.random.default_rng(len(mode) * 7 + ord(mode[-1]))
    w = fp_test_matrix(rng, 12, 64)
    wq, s = mx.quantize(mx.array(w), mode=mode)[:2]
    assert len(mx.quantize(mx.array(w), mode=mode)) == 2
    assert wq.dtype == mx.uint32 and s.dtype == mx.uint8
    rq, rs = np_fp_quantize(w, mode)
    np.testing.assert_array_equal(np.asarray(wq), rq)
    np.testing.assert_array_equal(np.asarray(s), rs)
    d = mx.dequantize(wq, s, mode=mode)
    assert d.dtype == mx.bfloat16
    d32 = mx.dequantize(wq, s, mode=mode, dtype=mx.float32)
    with np.errstate(over="ignore"):
        ref = np_fp_dequantize(rq, rs, mode).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(d32), ref)


@pytest.mark.parametrize("mode", list(FP_MODES))
@pytest.mark.parametrize("transpose", [True, False])
def test_fp_quantized_matmul_against_numpy(mode, transpose):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((2, 48, 64) if transpose else (2, 64, 96)).astype(np.float32)
    wq, s = mx.quantize(mx.array(w), mode=mode)
    wd = np_fp_dequantize(np.asarray(wq), np.asarray(s), mode)
    for xs in [(64,), (3, 64), (2, 20, 64), (4, 1, 5, 64)]:
        x = rng.standard_normal(xs).astype(np.float32)
        y = mx.quantized_matmul(mx.array(x), wq, s, transpose=transpose, mode=mode)
        ref = np.matmul(x.astype(np.float64), np.swapaxes(wd, -1, -2) if transpose else wd)
        np.testing.assert_allclose(np.asarray(y), ref, rtol=2e-4, atol=2e-4)
    # gradient with respect to x: the product with the other transpose
    x = mx.array(rng.standard_normal((3, 64)).astype(np.float32))
    g = mx.grad(lambda x: mx.quantized_matmul(x, wq[0], s[0], transpose=transpose,
                                              mode=mode).sum())(x)
    ref = (np.ones((3, wd.shape[1] if transpose else wd.shape[2])) @
           (wd[0] if transpose else wd[0].T))
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-4, atol=1e-4)


def test_gather_qmm_against_numpy():
    rng = np.random.default_rng(8)
    for mode in ["affine", "mxfp8"]:
        w = rng.standard_normal((4, 32, 64)).astype(np.float32)
        q = mx.quantize(mx.array(w), mode=mode)
        wd = np.asarray(mx.dequantize(*q, mode=mode, dtype=mx.float32), np.float64)
        x = rng.standard_normal((5, 2, 64)).astype(np.float32)
        li, ri = np.array([[4], [0], [2]]), np.array([3, 1, 1, 0])
        y = mx.gather_qmm(mx.array(x), *q, lhs_indices=mx.array(li), rhs_indices=mx.array(ri),
                          mode=mode)
        ref = np.matmul(x[li], np.swapaxes(wd[ri], -1, -2))
        assert y.shape == (3, 4, 2, 32)
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)
        # vjp with respect to x: scattered back to the gathered rows
        g = mx.grad(lambda x: mx.gather_qmm(x, *q, lhs_indices=mx.array(li),
                                            rhs_indices=mx.array(ri), mode=mode).sum())(
            mx.array(x))
        ref_g = np.zeros_like(x, np.float64)
        for i, l in enumerate(li[:, 0]):
            ref_g[l] += np.ones((2, 32)) @ wd[ri].sum(0)
        np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="integral"):
        mx.gather_qmm(mx.array(x), *q, rhs_indices=mx.array([0.5]), mode=mode)


def test_fp_errors():
    w = mx.random.normal((4, 64))
    wq, s = mx.quantize(w, mode="mxfp4")
    for mode, gs, bits, msg in [("mxfp4", 64, None, "requires group size 32 but got 64"),
                                ("mxfp4", None, 8, "requires bits to be 4 but got 8"),
                                ("mxfp8", None, 4, "requires bits to be 8 but got 4"),
                                ("nvfp4", 32, None, "requires group size 16 but got 32")]:
        with pytest.raises(ValueError, match=msg):
            mx.quantize(w, gs, bits, mode=mode)
    with pytest.raises(ValueError, match="Biases must be null"):
        mx.dequantize(wq, s, s, mode="mxfp4")
    with pytest.raises(ValueError, match="Scale type must be uint8"):
        mx.dequantize(wq, s.astype(mx.float32), mode="mxfp4")
    with pytest.raises(ValueError, match="only supported for 'nvfp4'"):
        mx.quantize(w, mode="mxfp4", global_scale=mx.array(2.0))
    with pytest.raises(ValueError, match="must be a scalar"):
        mx.quantize(w, mode="nvfp4", global_scale=mx.array([2.0, 3.0]))
    with pytest.raises(ValueError, match="dtype float32"):
        mx.quantize(w, mode="nvfp4", global_scale=mx.array(2.0, dtype=mx.float16))


@pytest.mark.parametrize("mode", list(FP_MODES))
def test_fp_quantized_layers(mode):
    mx.random.seed(9)
    gs = FP_MODES[mode][0]
    lin = nn.Linear(64, 16)
    ql = nn.QuantizedLinear.from_linear(lin, mode=mode)
    assert ql.group_size == gs and ql.bits == FP_MODES[mode][1] and "biases" not in ql
    assert sorted(k for k, _ in tree_flatten(ql.parameters())) == ["bias", "scales", "weight"]
    assert f"mode={mode}" in repr(ql)
    x = mx.random.normal((5, 64))
    np.testing.assert_allclose(np.asarray(ql(x)), np.asarray(lin(x)), rtol=0.3, atol=0.3)
    qe = nn.QuantizedEmbedding(10, 64, mode=mode)
    assert qe(mx.array([1, 2])).shape == (2, 64) and qe.as_linear(x).shape == (5, 10)
    model = nn.Sequential(nn.Embedding(5, 64), nn.Linear(64, 32))
    nn.quantize(model, mode=mode)
    assert [m.mode for m in model.layers] == [mode, mode]
    with pytest.raises(ValueError):
        nn.QuantizedLinear(64, 32, group_size=64 if gs != 64 else 32, mode=mode)


# the floating-point modes against MLX: bit-exact words, scales and dequantized values for
# every dtype (ties, zeros, subnormals, huge values, inf and NaN), the nvfp4 global scale,
# products and gather_qmm close

@pytest.mark.parametrize("mode", list(FP_MODES))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_mlx_fp_bit_exact(mode, dtype):
    mlx = _mlx()
    rng = np.random.default_rng(11)
    w = fp_test_matrix(rng, 24, 64)
    if dtype == "float16":
        w[np.abs(w) > 60000] = 60000.0
    mq, ms = mlx.quantize(mlx.array(w).astype(getattr(mlx, dtype)), mode=mode)
    pq, ps = mx.quantize(mx.array(w).astype(getattr(mx, dtype)), mode=mode)
    np.testing.assert_array_equal(np.asarray(mq), np.asarray(pq))
    np.testing.assert_array_equal(np.asarray(ms), np.asarray(ps))
    for odt in [None, "float32", "float16", "bfloat16"]:
        md = mlx.dequantize(mq, ms, mode=mode, dtype=odt and getattr(mlx, odt))
        pd = mx.dequantize(pq, ps, mode=mode, dtype=odt and getattr(mx, odt))
        assert str(md.dtype).split(".")[-1] == str(pd.dtype).split(".")[-1]
        np.testing.assert_array_equal(np.asarray(md.astype(mlx.float32)), f32(pd))


def test_mlx_nvfp4_global_scale():
    mlx = _mlx()
    rng = np.random.default_rng(12)
    for k in range(12):
        w = (rng.standard_normal((8, 64)) * rng.uniform(0.01, 100)).astype(np.float32)
        g = np.float32(np.abs(w).max() * rng.uniform(0.3, 2))
        dt = ["float32", "float16", "bfloat16"][k % 3]
        mq, ms = mlx.quantize(mlx.array(w).astype(getattr(mlx, dt)), mode="nvfp4",
                              global_scale=mlx.array(g))
        pq, ps = mx.quantize(mx.array(w).astype(getattr(mx, dt)), mode="nvfp4",
                             global_scale=mx.array(g))
        if dt == "float32":  # the numpy reference too
            rq, rs = np_fp_quantize(w, "nvfp4", gscale=g)
            np.testing.assert_array_equal(np.asarray(pq), rq)
            np.testing.assert_array_equal(np.asarray(ps), rs)
        np.testing.assert_array_equal(np.asarray(mq), np.asarray(pq))
        np.testing.assert_array_equal(np.asarray(ms), np.asarray(ps))
        md = mlx.dequantize(mq, ms, mode="nvfp4", global_scale=mlx.array(g), dtype=mlx.bfloat16)
        pd = mx.dequantize(pq, ps, mode="nvfp4", global_scale=mx.array(g), dtype=mx.bfloat16)
        assert md.dtype == mlx.float32 and pd.dtype == mx.float32
        np.testing.assert_array_equal(np.asarray(md), np.asarray(pd))


@pytest.mark.parametrize("mode", ["affine"] + list(FP_MODES))
@pytest.mark.parametrize("transpose", [True, False])
def test_mlx_fp_quantized_matmul_and_gather_qmm(mode, transpose):
    mlx = _mlx()
    rng = np.random.default_rng(13)
    w = rng.standard_normal((4, 32, 64) if transpose else (4, 64, 128)).astype(np.float32)
    mq = mlx.quantize(mlx.array(w), mode=mode)
    pq = [mx.array(np.asarray(a)) for a in mq]
    for xs in [(64,), (3, 64), (4, 20, 64)]:
        x = rng.standard_normal(xs).astype(np.float32)
        k = 0 if len(xs) < 3 else slice(None)  # MLX does not broadcast W's batch over x
        my = mlx.quantized_matmul(mlx.array(x), *[a[k] for a in mq], transpose=transpose,
                                  mode=mode)
        py = mx.quantized_matmul(mx.array(x), *[a[k] for a in pq], transpose=transpose,
                                 mode=mode)
        assert my.shape == py.shape
        np.testing.assert_allclose(np.asarray(my), np.asarray(py), rtol=2e-5, atol=2e-5)
    x = rng.standard_normal((6, 2, 64)).astype(np.float32)
    li, ri = np.array([0, 5, 2, 2], np.uint32), np.array([[3], [0]], np.int32)
    my = mlx.gather_qmm(mlx.array(x), *mq, lhs_indices=mlx.array(li), rhs_indices=mlx.array(ri),
                        transpose=transpose, mode=mode)
    py = mx.gather_qmm(mx.array(x), *pq, lhs_indices=mx.array(li), rhs_indices=mx.array(ri),
                       transpose=transpose, mode=mode, sorted_indices=False)
    assert my.shape == py.shape
    np.testing.assert_allclose(np.asarray(my), np.asarray(py), rtol=2e-5, atol=2e-5)


def test_mlx_fp_errors_match():
    mlx = _mlx()
    for lib in (mlx, mx):
        w = lib.zeros((4, 64))
        q = lib.quantize(w, mode="mxfp8")
        for bad in (lambda: lib.quantize(w, 64, mode="mxfp4"),
                    lambda: lib.quantize(w, bits=4, mode="mxfp8"),
                    lambda: lib.quantize(w, mode="nvfp5"),
                    lambda: lib.dequantize(q[0], q[1], q[1], mode="mxfp8"),
                    lambda: lib.dequantize(q[0], q[1].astype(lib.float32), mode="mxfp8"),
                    lambda: lib.quantized_matmul(lib.zeros((2, 32)), *q, mode="mxfp8"),
                    lambda: lib.quantize(w, mode="mxfp8", global_scale=lib.array(1.0))):
            with pytest.raises(ValueError):
                bad()
