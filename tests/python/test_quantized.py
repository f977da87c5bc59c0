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
