"""mx.fast.layer_norm / rms_norm and nn.LayerNorm / nn.RMSNorm (the fused primitives of
src/ops/norm.c) against numpy in float64, their gradients through mx.grad against the
closed-form formulas, and, when MLX is importable, against MLX itself: values, result dtypes
and the error types of bad arguments."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn

try:
    import mlx.core as mlx
    import mlx.nn as mlx_nn
except ImportError:  # the differential parts skip
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="MLX is not importable")

EPS = 1e-5


def np_norm(x, w=None, b=None, rms=False, eps=EPS):
    x = np.asarray(x, np.float64)
    m = 0.0 if rms else x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(v + eps)
    if w is not None:
        y = y * np.asarray(w, np.float64)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return y


def np_norm_grads(x, w, g, rms=False, eps=EPS):
    """dx, dw, db of sum(norm(x) * w * g) (the vjp with cotangent g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    n = x.shape[-1]
    m = 0.0 if rms else x.mean(-1, keepdims=True)
    s = 1 / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - m) * s
    gw = g * w
    t = xh * (gw * xh).mean(-1, keepdims=True)
    if not rms:
        t = t + gw.mean(-1, keepdims=True)
    dx = s * (gw - t)
    axes = tuple(range(x.ndim - 1))
    return dx, (g * xh).sum(axes), g.sum(axes)


def f64(a):
    return np.array(a.astype(mx.float32) if a.dtype in (mx.float16, mx.bfloat16) else a, np.float64)


DTYPES = [(mx.float32, 2e-5), (mx.float16, 4e-3), (mx.bfloat16, 3e-2)]


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 64, 257, 4096])
def test_fast_norms_match_numpy(dtype, tol, n):
    rng = np.random.default_rng(n)
    x = mx.array(rng.uniform(-2, 3, (3, n))).astype(dtype)
    w = mx.array(rng.uniform(0.5, 1.5, n)).astype(dtype)
    b = mx.array(rng.uniform(-1, 1, n)).astype(dtype)
    xv, wv, bv = f64(x), f64(w), f64(b)
    for got, want in [
        (mx.fast.layer_norm(x, w, b, EPS), np_norm(xv, wv, bv)),
        (mx.fast.layer_norm(x, None, None, EPS), np_norm(xv)),
        (mx.fast.layer_norm(x, None, b, EPS), np_norm(xv, None, bv)),
        (mx.fast.rms_norm(x, w, EPS), np_norm(xv, wv, rms=True)),
        (mx.fast.rms_norm(x, None, EPS), np_norm(xv, rms=True)),
    ]:
        assert got.dtype == dtype
        np.testing.assert_allclose(f64(got), want, rtol=tol, atol=tol)


def test_float64_and_strided_inputs():
    rng = np.random.default_rng(1)
    xv = rng.uniform(-2, 3, (2, 5, 9))
    wv, bv = rng.uniform(0.5, 1.5, 9), rng.uniform(-1, 1, 9)
    x, w, b = mx.array(xv, mx.float64), mx.array(wv, mx.float64), mx.array(bv, mx.float64)
    np.testing.assert_allclose(np.array(mx.fast.layer_norm(x, w, b, EPS)), np_norm(xv, wv, bv), rtol=1e-12)
    # rows that are not contiguous: a transposed x
    xt = mx.array(rng.uniform(-2, 3, (9, 4)), mx.float64)
    np.testing.assert_allclose(np.array(mx.fast.rms_norm(xt.T, w, EPS)), np_norm(np.array(xt).T, wv, rms=True),
                               rtol=1e-12)


def test_nn_layers_match_numpy():
    rng = np.random.default_rng(2)
    xv = rng.uniform(-2, 3, (4, 6, 16)).astype(np.float32)
    ln = nn.LayerNorm(16)
    ln.update({"weight": mx.array(rng.uniform(0.5, 1.5, 16).astype(np.float32)),
               "bias": mx.array(rng.uniform(-1, 1, 16).astype(np.float32))})
    want = np_norm(xv, np.array(ln.weight), np.array(ln.bias))
    np.testing.assert_allclose(np.array(ln(mx.array(xv))), want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.array(nn.LayerNorm(16, affine=False)(mx.array(xv))), np_norm(xv),
                               rtol=2e-5, atol=2e-5)
    rms = nn.RMSNorm(16, eps=1e-6)
    np.testing.assert_allclose(np.array(rms(mx.array(xv))), np_norm(xv, rms=True, eps=1e-6), rtol=2e-5,
                               atol=2e-5)
    # a float16 input with the float32 weight of the layer: promoted to float32, as MLX
    assert ln(mx.array(xv).astype(mx.float16)).dtype == mx.float32


@pytest.mark.parametrize("rms", [False, True])
def test_gradients_match_formulas(rms):
    rng = np.random.default_rng(3)
    xv, gv = rng.uniform(-2, 3, (3, 4, 10)), rng.uniform(-1, 1, (3, 4, 10))
    wv, bv = rng.uniform(0.5, 1.5, 10), rng.uniform(-1, 1, 10)
    x, g, w, b = (mx.array(a, mx.float64) for a in (xv, gv, wv, bv))

    def loss(x, w, b):
        y = mx.fast.rms_norm(x, w, EPS) if rms else mx.fast.layer_norm(x, w, b, EPS)
        return (y * g).sum()

    dx, dw, db = mx.grad(loss, argnums=(0, 1, 2))(x, w, b)
    ex, ew, eb = np_norm_grads(xv, wv, gv, rms=rms)
    np.testing.assert_allclose(np.array(dx), ex, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(dw), ew, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(db), 0 * eb if rms else eb, rtol=1e-10, atol=1e-12)


def test_float32_gradients_of_the_layer():
    rng = np.random.default_rng(4)
    xv = rng.uniform(-2, 3, (64, 32)).astype(np.float32)
    ln = nn.LayerNorm(32)

    def loss(params, x):
        ln.update(params)
        return (ln(x) ** 2).sum()

    grads = mx.grad(loss)(ln.trainable_parameters(), mx.array(xv))
    _, ew, eb = np_norm_grads(xv, np.ones(32), 2 * np_norm(xv))
    np.testing.assert_allclose(np.array(grads["weight"]), ew, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.array(grads["bias"]), eb, rtol=1e-4, atol=1e-4)


BAD_ARGS = [
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x, m.ones((7,)), None, EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x, m.ones((1, 8)), None, EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x, w, m.ones((7,)), EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x, None, m.ones((1, 8)), EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(m.array(1.0), None, None, EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x.astype(m.int32), None, None, EPS)),
    ("layer_norm", lambda m, x, w: m.fast.layer_norm(x.astype(m.bool_), None, None, EPS)),
    ("rms_norm", lambda m, x, w: m.fast.rms_norm(x, m.ones((7,)), EPS)),
    ("rms_norm", lambda m, x, w: m.fast.rms_norm(x, m.ones((1, 8)), EPS)),
    ("rms_norm", lambda m, x, w: m.fast.rms_norm(m.array(1.0), None, EPS)),
    ("rms_norm", lambda m, x, w: m.fast.rms_norm(x.astype(m.int32), w.astype(m.int32), EPS)),
]


@pytest.mark.parametrize("case", range(len(BAD_ARGS)))
def test_bad_arguments_raise_value_error(case):
    _, f = BAD_ARGS[case]
    with pytest.raises(ValueError):
        f(mx, mx.ones((4, 8)), mx.ones((8,)))


@needs_mlx
@pytest.mark.parametrize("case", range(len(BAD_ARGS)))
def test_bad_arguments_raise_as_mlx(case):
    _, f = BAD_ARGS[case]
    errors = []
    for m in (mx, mlx):
        try:
            f(m, m.ones((4, 8)), m.ones((8,)))
            errors.append(None)
        except Exception as e:  # the type is what is compared
            errors.append(type(e))
    assert errors[0] == errors[1] and errors[0] is not None, errors


DTYPE_COMBOS = [  # x, weight, bias
    ("float16", "float32", None), ("float16", None, "bfloat16"), ("float16", "float16", "float32"),
    ("bfloat16", "float16", None), ("float32", "int32", None), ("int32", "float32", "float32"),
    ("float32", "float64", None), ("float64", None, None),
]


@needs_mlx
@pytest.mark.parametrize("rms", [False, True])
@pytest.mark.parametrize("combo", DTYPE_COMBOS)
def test_values_and_dtypes_match_mlx(rms, combo):
    rng = np.random.default_rng(5)
    xv, wv, bv = rng.uniform(-2, 3, (3, 5, 24)), rng.uniform(0.5, 1.5, 24), rng.uniform(-1, 1, 24)
    got = []
    for m in (mx, mlx):
        dt = lambda name: getattr(m, name)
        x = m.array(xv.astype(np.float32)).astype(dt(combo[0]))
        w = None if combo[1] is None else m.array(wv.astype(np.float32)).astype(dt(combo[1]))
        b = None if combo[2] is None else m.array(bv.astype(np.float32)).astype(dt(combo[2]))
        y = m.fast.rms_norm(x, w, EPS) if rms else m.fast.layer_norm(x, w, b, EPS)
        got.append((str(y.dtype).split(".")[-1], np.array(y.astype(m.float32))))
    assert got[0][0] == got[1][0]
    tol = 3e-2 if got[1][0] in ("float16", "bfloat16") else 1e-5
    np.testing.assert_allclose(got[0][1], got[1][1], rtol=tol, atol=tol)


@needs_mlx
@pytest.mark.parametrize("rms", [False, True])
def test_layers_and_gradients_match_mlx(rms):
    rng = np.random.default_rng(6)
    xv = rng.uniform(-2, 3, (8, 33)).astype(np.float32)
    wv = rng.uniform(0.5, 1.5, 33).astype(np.float32)
    bv = rng.uniform(-1, 1, 33).astype(np.float32)
    gv = rng.uniform(-1, 1, (8, 33)).astype(np.float32)
    out = []
    for m, mnn in ((mx, nn), (mlx, mlx_nn)):
        layer = mnn.RMSNorm(33) if rms else mnn.LayerNorm(33)
        layer.update({"weight": m.array(wv)} if rms else {"weight": m.array(wv), "bias": m.array(bv)})
        g = m.array(gv)

        def loss(x, w, b):
            y = m.fast.rms_norm(x, w, EPS) if rms else m.fast.layer_norm(x, w, b, EPS)
            return (y * g).sum()

        grads = m.grad(loss, argnums=(0, 1, 2))(m.array(xv), m.array(wv), m.array(bv))
        out.append([np.array(layer(m.array(xv)))] + [np.array(a) for a in grads])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
