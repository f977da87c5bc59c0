"""qqmm, gather_qqmm, nn.QQLinear and quantized GGUF tensors: numpy float64 references (the
nvfp4 / mxfp8 / mxfp4 rounding written from the formats, the gradient rule, ggml's Q4_0 / Q4_1 /
Q8_0 blocks) and, when mlx is importable, the same calls through MLX."""
import math
import struct

import numpy as np
import pytest

import ponte as pn
import ponte.nn as nn

try:
    import mlx.core as mx
    import mlx.nn as mnn
except ImportError:  # the differential tests skip
    mx = None

MODES = {"nvfp4": (16, 6.0, False, False), "mxfp8": (32, 448.0, True, True),
         "mxfp4": (32, 6.0, False, True)}
FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6])


def _e4m3_values():
    v = [(m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
         for e in range(16) for m in range(8)]
    return np.array(v[:127])


E4M3 = _e4m3_values()


def _nearest(table, a, ties_even):
    """The entries of table nearest |a| (ties: the even index, which is the even code, or the
    first), signed as a."""
    d = np.abs(np.abs(a)[..., None] - table)
    if ties_even:
        best = d.min(-1, keepdims=True)
        cand = np.where(d == best, np.arange(len(table)), 1 << 20)
        idx = np.where((cand % 2 == 0) & (cand < 1 << 20), cand, 1 << 20).min(-1)
        idx = np.where(idx == 1 << 20, cand.min(-1), idx)
    else:
        idx = d.argmin(-1)
    return np.sign(a) * table[idx]


def ref_round(a, mode):
    """a (..., K) rounded through mode group by group along the last axis (float32 scale and
    quotient, element ties to the even code, as MLX's CPU qqmm)."""
    gs, emax, fp8, e8m0 = MODES[mode]
    a = np.asarray(a, np.float64)
    g = a.reshape(-1, gs)
    amax = np.abs(g).max(-1, keepdims=True)
    s = (amax.astype(np.float32) / np.float32(emax)).astype(np.float64)
    if e8m0:
        sc = np.where(s == 0, 1.0, 2.0 ** np.ceil(np.log2(np.where(s == 0, 1, s))))
    else:
        sc = _nearest(E4M3, s, True)
    x = np.where(sc == 0, 0, (g.astype(np.float32) / sc.astype(np.float32))).astype(np.float64)
    q = _nearest(E4M3, x, True) if fp8 else _nearest(FP4, np.clip(x, -6, 6), True)
    return (q * sc).reshape(a.shape)


def rnd(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("xshape,n", [((3, 64), 5), ((2, 3, 64), 4), ((64,), 6)])
def test_qqmm_matches_numpy(mode, xshape, n):
    x, w = rnd(xshape, 1, 3), rnd((n, 64), 2)
    ref = ref_round(x, mode) @ ref_round(w, mode).T
    y = pn.qqmm(pn.array(x), pn.array(w), mode=mode)
    assert y.dtype == pn.float32 and y.shape == ref.shape
    np.testing.assert_allclose(np.array(y), ref, rtol=1e-5, atol=1e-4)
    wq, s = pn.quantize(pn.array(w), mode=mode)
    yq = pn.qqmm(pn.array(x), wq, s, mode=mode)
    np.testing.assert_array_equal(np.array(yq), np.array(y))


def test_qqmm_defaults_and_dtypes():
    x, w = rnd((2, 32), 3), rnd((3, 32), 4)
    y = pn.qqmm(pn.array(x), pn.array(w))  # nvfp4 by default
    np.testing.assert_allclose(np.array(y), ref_round(x, "nvfp4") @ ref_round(w, "nvfp4").T,
                               rtol=1e-5, atol=1e-4)
    yb = pn.qqmm(pn.array(x).astype(pn.bfloat16), pn.array(w))
    assert yb.dtype == pn.bfloat16


def test_qqmm_errors():
    x, w = pn.array(rnd((2, 32), 5)), pn.array(rnd((3, 32), 6))
    wq, s = pn.quantize(w, mode="nvfp4")
    g = pn.array(1.0)
    for call in [lambda: pn.qqmm(x, w, mode="affine"),
                 lambda: pn.qqmm(x, w, mode="nvfp4", group_size=32),
                 lambda: pn.qqmm(x.astype(pn.float64), w),
                 lambda: pn.qqmm(x, wq),
                 lambda: pn.qqmm(x, w, s),
                 lambda: pn.qqmm(x, w, global_scale_x=g),
                 lambda: pn.qqmm(x, w, mode="mxfp8", global_scale_x=g, global_scale_w=g),
                 lambda: pn.qqmm(x, pn.array(rnd((3, 24), 7)))]:
        with pytest.raises(ValueError):
            call()


def test_gather_qqmm_matches_per_item():
    x, w = rnd((4, 2, 32), 8), rnd((3, 5, 32), 9)
    li, ri = np.array([3, 0, 2, 2, 1]), np.array([1, 2, 0, 0, 2])
    ref = np.stack([ref_round(x[a], "mxfp8") @ ref_round(w[b], "mxfp8").T for a, b in zip(li, ri)])
    y = pn.gather_qqmm(pn.array(x), pn.array(w), lhs_indices=pn.array(li),
                       rhs_indices=pn.array(ri), mode="mxfp8")
    np.testing.assert_allclose(np.array(y), ref, rtol=1e-5, atol=1e-4)
    wq, s = pn.quantize(pn.array(w), mode="mxfp8")
    y2 = pn.gather_qqmm(pn.array(x), wq, s, pn.array(li), pn.array(ri), mode="mxfp8",
                        sorted_indices=True)
    np.testing.assert_array_equal(np.array(y2), np.array(y))


@pytest.mark.parametrize("mode", list(MODES))
def test_qqmm_gradient_rule(mode):
    gs = MODES[mode][0]
    x, w, c = rnd((gs, 2 * gs), 10, 2), rnd((gs, 2 * gs), 11), rnd((gs, gs), 12)
    gx, gw = pn.grad(lambda a, b: (pn.qqmm(a, b, mode=mode) * pn.array(c)).sum(),
                     argnums=(0, 1))(pn.array(x), pn.array(w))
    dx = ref_round(c, mode) @ ref_round(w.T, mode).T
    dw = ref_round(c.T, mode) @ ref_round(x.T, mode).T
    np.testing.assert_allclose(np.array(gx), dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.array(gw), dw, rtol=1e-5, atol=1e-4)


# ───────────────────────────── QQLinear ─────────────────────────────

REPR = "QQLinear(input_dims=32, output_dims=8, group_size=16, bits=4, mode=nvfp4)"


def test_qqlinear_train_eval_and_grad():
    layer = nn.QQLinear(32, 8)
    assert repr(layer) == REPR
    assert layer.training and layer.weight.dtype == pn.float32 and "scales" not in layer
    x = pn.array(rnd((3, 32), 13))
    y_train = layer(x)
    w = np.array(layer.weight)
    np.testing.assert_allclose(np.array(y_train), ref_round(np.array(x), "nvfp4") @
                               ref_round(w, "nvfp4").T, rtol=1e-5, atol=1e-4)
    layer.eval()
    assert layer.weight.dtype == pn.uint32 and "scales" in layer
    assert repr(layer) == REPR
    np.testing.assert_array_equal(np.array(layer(x)), np.array(y_train))
    layer.train()
    assert layer.weight.dtype == pn.bfloat16 and "scales" not in layer  # as MLX: dequantized
    layer.eval()
    layer.eval()  # idempotent
    assert layer.weight.dtype == pn.uint32
    # training: the weight receives gradients (the qqmm rule)
    layer = nn.QQLinear(32, 32, mode="mxfp8")  # the rule rounds along the output axis too
    xs = pn.array(rnd((32, 32), 14))
    loss = lambda m, a: m(a).sum()  # noqa: E731
    _, grads = nn.value_and_grad(layer, loss)(layer, xs)
    c = np.ones((32, 32))
    ref = ref_round(c.T, "mxfp8") @ ref_round(np.array(xs).T, "mxfp8").T
    np.testing.assert_allclose(np.array(grads["weight"]), ref, rtol=1e-5, atol=1e-4)


def test_qqlinear_from_linear_and_quantize():
    lin = nn.Linear(32, 16, bias=False)
    q = nn.QQLinear.from_linear(lin)
    assert isinstance(q, nn.QQLinear) and q.training
    np.testing.assert_array_equal(np.array(q.weight), np.array(lin.weight))
    lin.eval()
    q = nn.QQLinear.from_linear(lin, mode="mxfp8")
    assert not q.training and q.weight.dtype == pn.uint32 and q.group_size == 32 and q.bits == 8
    with pytest.raises(NotImplementedError):
        nn.QQLinear.from_linear(nn.Linear(32, 16))
    assert isinstance(nn.Linear(32, 16, bias=False).to_quantized(mode="mxfp8",
                                                                 quantize_input=True), nn.QQLinear)
    with pytest.raises(ValueError):
        nn.Linear(32, 16, bias=False).to_quantized(mode="mxfp4", quantize_input=True)
    with pytest.raises(ValueError):
        nn.Embedding(10, 32).to_quantized(quantize_input=True)
    model = nn.Sequential(nn.Linear(32, 16, bias=False), nn.Embedding(10, 32))
    nn.quantize(model, mode="nvfp4", quantize_input=True,
                class_predicate=lambda p, m: isinstance(m, nn.Linear))
    assert isinstance(model.layers[0], nn.QQLinear) and isinstance(model.layers[1], nn.Embedding)
    with pytest.raises(NotImplementedError):
        nn.quantize(nn.Sequential(nn.Linear(32, 16)), mode="nvfp4", quantize_input=True)


# ───────────────────────────── MLX differential ─────────────────────────────

needs_mlx = pytest.mark.skipif(mx is None, reason="mlx is not importable")


@needs_mlx
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16"])
def test_qqmm_vs_mlx(mode, dt):
    # MLX 0.32.4's CPU evaluates qqmm only for one row and a quantized w
    for seed in range(4):
        x, w = rnd((1, 64), 20 + seed, 3), rnd((7, 64), 30 + seed)
        mw = mx.quantize(mx.array(w).astype(getattr(mx, dt)), mode=mode)
        my = mx.qqmm(mx.array(x).astype(getattr(mx, dt)), mw[0], mw[1], mode=mode)
        pw = pn.quantize(pn.array(w).astype(getattr(pn, dt)), mode=mode)
        np.testing.assert_array_equal(np.array(pw[0]), np.array(mw[0]))
        py = pn.qqmm(pn.array(x).astype(getattr(pn, dt)), pw[0], pw[1], mode=mode)
        assert str(py.dtype).split(".")[-1] == dt
        a, b = np.array(my.astype(mx.float32)), np.array(py.astype(pn.float32))
        if dt == "float32":
            np.testing.assert_array_equal(b, a)  # bit-exact
        else:  # MLX sums each group's products, then the groups, in the half dtype itself;
            # Ponte accumulates in float32: allow the half-precision summation error
            xh = ref_round(x.astype(np.float64), mode)  # x is float32: the same rounding
            wd = np.array(mx.dequantize(mw[0], mw[1], mode=mode, dtype=mx.float32))
            eps = 2.0 ** (-8 if dt == "bfloat16" else -11)
            bound = 2 * 64 * eps * (np.abs(xh) @ np.abs(wd).T)
            assert np.all(np.abs(b - a) <= bound), (a, b)
        # the rounded x itself: w = 6 I is exact in every mode, so y = 6 x̂ exactly
        eye = 6 * np.eye(64, dtype=np.float32)
        me, pe = mx.quantize(mx.array(eye).astype(getattr(mx, dt)), mode=mode), \
            pn.quantize(pn.array(eye).astype(getattr(pn, dt)), mode=mode)
        mxh = mx.qqmm(mx.array(x).astype(getattr(mx, dt)), me[0], me[1], mode=mode)
        pxh = pn.qqmm(pn.array(x).astype(getattr(pn, dt)), pe[0], pe[1], mode=mode)
        np.testing.assert_array_equal(np.array(pxh.astype(pn.float32)),
                                      np.array(mxh.astype(mx.float32)))


@needs_mlx
def test_qqlinear_vs_mlx():
    ml = mnn.QQLinear(64, 8)
    pl = nn.QQLinear(64, 8)
    pl.weight = pn.array(np.array(ml.weight))
    assert repr(pl) == repr(ml)
    ml.eval(), pl.eval()
    np.testing.assert_array_equal(np.array(pl.weight), np.array(ml.weight))
    np.testing.assert_array_equal(np.array(pl.scales), np.array(ml.scales))
    x = rnd((1, 64), 40)
    np.testing.assert_allclose(np.array(pl(pn.array(x))), np.array(ml(mx.array(x))), rtol=1e-6,
                               atol=1e-5)
    ml.train(), pl.train()
    assert str(pl.weight.dtype).split(".")[-1] == str(ml.weight.dtype).split(".")[-1]
    np.testing.assert_array_equal(np.array(pl.weight.astype(pn.float32)),
                                  np.array(ml.weight.astype(mx.float32)))


# ───────────────────────────── quantized GGUF ─────────────────────────────

def write_gguf(path, tensors, align=32):
    """A GGUF v3 file holding tensors (name, extents fastest-first, ggml type, data bytes)."""
    out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, len(tensors), 0)
    off, datas = 0, []
    for name, dims, t, data in tensors:
        nb = name.encode()
        out += struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", t, off)
        datas.append((off, data))
        off = (off + len(data) + align - 1) // align * align
    out += b"\0" * (-len(out) % align)
    base = len(out)
    for o, d in datas:
        out += b"\0" * (base + o - len(out)) + d
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


def blocks(kind, n, rng):
    """n ggml blocks of kind ("Q4_0", "Q4_1", "Q8_0") and their float64 values."""
    data, vals = bytearray(), []
    for _ in range(n):
        d, m = np.float16(rng.uniform(-2, 2)), np.float16(rng.uniform(-1, 1))
        if kind == "Q8_0":
            q = rng.integers(-128, 128, 32)
            data += d.tobytes() + q.astype(np.int8).tobytes()
            vals += list(float(d) * q)
            continue
        q = rng.integers(0, 16, 32)
        nib = bytes(int(q[i]) | int(q[i + 16]) << 4 for i in range(16))
        data += d.tobytes() + (m.tobytes() if kind == "Q4_1" else b"") + nib
        vals += list(float(d) * q + float(m) if kind == "Q4_1" else float(d) * (q - 8))
    return bytes(data), np.array(vals)


GGML = {"Q4_0": (2, 4), "Q4_1": (3, 4), "Q8_0": (8, 8)}


def dequant64(d, name):
    w = np.array(d[name]).astype(np.uint64)
    bits = 32 * w.shape[-1] // (np.array(d[name + ".scales"]).shape[-1] * 32)
    vals = np.stack([(w >> np.uint64(bits * i % 32)) & np.uint64((1 << bits) - 1)
                     for i in range(32 // bits)], -1).reshape(*w.shape[:-1], -1)
    s = np.array(d[name + ".scales"]).astype(np.float64).repeat(32, -1)
    b = np.array(d[name + ".biases"]).astype(np.float64).repeat(32, -1)
    return s * vals + b


@pytest.mark.parametrize("kind", list(GGML))
@pytest.mark.parametrize("dims", [[64, 3], [32], [32, 2, 2]])
def test_gguf_quantized_load(tmp_path, kind, dims):
    rng = np.random.default_rng(50)
    n = int(np.prod(dims)) // 32
    data, vals = blocks(kind, n, rng)
    path = str(tmp_path / "q.gguf")
    raw = write_gguf(path, [("t", dims, GGML[kind][0], data), ("f", [4], 0, b"\0" * 16)])
    d = pn.load(path)
    shape = tuple(reversed(dims))
    bits = GGML[kind][1]
    assert d["t"].dtype == pn.uint32 and d["t"].shape == shape[:-1] + (shape[-1] * bits // 32,)
    assert d["t.scales"].dtype == pn.float16
    assert d["t.scales"].shape == shape[:-1] + (shape[-1] // 32,)
    assert d["t.biases"].dtype == pn.float16 and d["t.biases"].shape == d["t.scales"].shape
    np.testing.assert_array_equal(dequant64(d, "t"), vals.reshape(shape))
    if mx is not None:
        m = mx.load(path)
        assert sorted(m) == sorted(d)
        for k in m:
            np.testing.assert_array_equal(np.array(d[k]), np.array(m[k]))
    # every truncation of the file is refused cleanly
    for cut in range(0, len(raw), 7):
        with open(path, "wb") as f:
            f.write(raw[:cut])
        with pytest.raises((OSError, ValueError, RuntimeError)):
            pn.load(path, format="gguf")


def test_gguf_quantized_errors(tmp_path):
    path = str(tmp_path / "bad.gguf")
    write_gguf(path, [("t", [48], 2, b"\0" * 36)])  # not whole blocks along the row
    with pytest.raises(OSError, match="multiple of the block size"):
        pn.load(path)
    write_gguf(path, [("t", [32], 12, b"\0" * 144)])  # Q4_K is not decoded
    with pytest.raises(OSError, match="Q4_K"):
        pn.load(path)
    write_gguf(path, [("t", [1 << 40, 1 << 20], 8, b"")])  # huge extents
    with pytest.raises(OSError):
        pn.load(path)
