"""ponte.nn's RNN, GRU, LSTM, Upsample and Bilinear against numpy float64 references (loops
over time, per-axis interpolation matrices on MLX's float32 sampling grid, einsum) on random
data: parameters and initialization, batched and unbatched inputs, initial states, custom
nonlinearities, gradients, MLX's documented examples and errors."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.utils import tree_flatten

TOL = dict(rtol=2e-5, atol=2e-5)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def A(x, dtype=np.float32):
    a = np.asarray(x, dtype=dtype)
    return mx.array(a, dtype=mx.float64) if dtype == np.float64 else mx.array(a)


def N(a):
    return np.array(a).astype(np.float64)


def close(y, ref, **kw):
    np.testing.assert_allclose(N(y), ref, **(kw or TOL))


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


# ───────────────────────────── recurrent references ─────────────────────────────

def np_recurrent(kind, x, p, hidden=None, cell=None, act=np.tanh):
    """Every hidden state (and for the LSTM the cells) of x (..., L, D), a loop over time."""
    x = np.asarray(x, np.float64)
    g = {k: (None if v is None else N(v)) for k, v in p.items()}
    wx, wh = (g["Wxh"], g["Whh"]) if kind == "rnn" else (g["Wx"], g["Wh"])
    b = g.get("bias") if kind != "gru" else g.get("b")
    H = wh.shape[1]  # weights in MLX's (out, in) layout
    xp = x @ wx.T + (0 if b is None else b)
    h = np.zeros(H) if hidden is None else N(hidden)
    c = np.zeros(H) if cell is None else N(cell)
    hs, cs = [], []
    for t in range(x.shape[-2]):
        xt, hp = xp[..., t, :], h @ wh.T
        if kind == "rnn":
            h = act(xt + hp)
        elif kind == "gru":
            r = sigmoid(xt[..., :H] + hp[..., :H])
            z = sigmoid(xt[..., H:2 * H] + hp[..., H:2 * H])
            bhn = 0 if g.get("bhn") is None else g["bhn"]
            n = np.tanh(xt[..., 2 * H:] + r * (hp[..., 2 * H:] + bhn))
            h = (1 - z) * n + z * h
        else:
            i, f, gg, o = (xt[..., k * H:(k + 1) * H] + hp[..., k * H:(k + 1) * H] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
            h = sigmoid(o) * np.tanh(c)
            cs.append(c)
        hs.append(h)
    hs = np.stack(np.broadcast_arrays(*hs), axis=-2)
    return (hs, np.stack(np.broadcast_arrays(*cs), axis=-2)) if kind == "lstm" else hs


LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
PARAMS = {"rnn": ["Wxh", "Whh", "bias"], "gru": ["Wx", "Wh", "b", "bhn"],
          "lstm": ["Wx", "Wh", "bias"]}


def layer_params(layer):
    return dict(tree_flatten(layer.parameters()))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bias", [True, False])
def test_recurrent_parameters_and_init(kind, bias):
    D, H = 5, 16
    layer = LAYERS[kind](D, H, bias=bias)
    params = layer_params(layer)
    shapes = {"rnn": {"Wxh": (H, D), "Whh": (H, H), "bias": (H,)},
              "gru": {"Wx": (3 * H, D), "Wh": (3 * H, H), "b": (3 * H,), "bhn": (H,)},
              "lstm": {"Wx": (4 * H, D), "Wh": (4 * H, H), "bias": (4 * H,)}}[kind]
    if not bias:
        shapes = {k: v for k, v in shapes.items() if k not in ("bias", "b", "bhn")}
    assert {k: tuple(v.shape) for k, v in params.items()} == shapes
    bound = 1 / math.sqrt(H)
    for v in params.values():
        a = np.array(v)
        assert v.dtype == mx.float32
        assert np.all(np.abs(a) <= bound) and np.abs(a).max() > 0.5 * bound
    assert f"hidden_size={H}" in repr(layer) and f"input_dims={D}" in repr(layer)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("state", [None, "full", "row"])
def test_recurrent_values(rng, kind, batched, bias, state):
    Nb, L, D, H = 3, 5, 4, 6
    layer = LAYERS[kind](D, H, bias=bias)
    x = rng.uniform(-1.5, 1.5, (Nb, L, D) if batched else (L, D))
    sshape = (Nb, H) if state == "full" and batched else (H,)
    h0 = rng.uniform(-1, 1, sshape) if state else None
    c0 = rng.uniform(-1, 1, sshape) if state and kind == "lstm" else None
    args = [A(x)]
    if state:
        args.append(A(h0))
        if kind == "lstm":
            args.append(A(c0))
    p = {k: layer.get(k) if k in layer else None for k in PARAMS[kind]}
    h0_32 = None if h0 is None else N(A(h0))
    c0_32 = None if c0 is None else N(A(c0))
    ref = np_recurrent(kind, N(A(x)), p, h0_32, c0_32)
    out = layer(*args)
    if kind == "lstm":
        assert isinstance(out, tuple) and len(out) == 2
        close(out[0], ref[0])
        close(out[1], ref[1])
        assert out[0].shape == ((Nb, L, H) if batched else (L, H))
    else:
        close(out, ref)
        assert out.shape == ((Nb, L, H) if batched else (L, H))
        assert out.dtype == mx.float32


def test_lstm_hidden_only_and_cell_only(rng):
    layer = nn.LSTM(3, 4)
    x = A(rng.uniform(-1, 1, (2, 4, 3)))
    h0, c0 = A(rng.uniform(-1, 1, (2, 4))), A(rng.uniform(-1, 1, (4,)))
    p = {k: layer[k] for k in ("Wx", "Wh", "bias")}
    h, c = layer(x, hidden=h0)
    rh, rc = np_recurrent("lstm", N(x), p, N(h0))
    close(h, rh)
    close(c, rc)
    h, c = layer(x, cell=c0)
    rh, rc = np_recurrent("lstm", N(x), p, None, N(c0))
    close(h, rh)
    close(c, rc)


def test_rnn_nonlinearities(rng):
    x = A(rng.uniform(-1.5, 1.5, (2, 4, 3)))
    for f, npf in [(nn.relu, lambda v: np.maximum(v, 0)), (mx.sigmoid, sigmoid),
                   (lambda v: 0.5 * v, lambda v: 0.5 * v), (nn.tanh, np.tanh), (mx.tanh, np.tanh)]:
        layer = nn.RNN(3, 5, nonlinearity=f)
        p = {k: layer[k] for k in ("Wxh", "Whh", "bias")}
        close(layer(x), np_recurrent("rnn", N(x), p, act=npf))
        h0 = A(rng.uniform(-1, 1, (5,)))
        close(layer(x, h0), np_recurrent("rnn", N(x), p, N(h0), act=npf))
    with pytest.raises(ValueError):
        nn.RNN(3, 5, nonlinearity="relu")

    class Boom(Exception):
        pass

    def boom(v):
        raise Boom("inside the nonlinearity")

    with pytest.raises(Boom):
        nn.RNN(3, 5, nonlinearity=boom)(x)
    with pytest.raises(TypeError):
        nn.RNN(3, 5, nonlinearity=lambda v: 1.0)(x)
    with pytest.raises(ValueError):
        nn.RNN(3, 5, nonlinearity=lambda v: v.sum(-1))(x)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_gradients(rng, kind):
    """d sum(layer(x)) / dx against central finite differences of the numpy reference."""
    layer = LAYERS[kind](3, 4)
    layer.set_dtype(mx.float64)
    p = {k: layer[k] for k in PARAMS[kind]}
    x = rng.uniform(-1, 1, (2, 3, 3))
    h0 = rng.uniform(-1, 1, (4,))
    proj = rng.uniform(-1, 1, (2, 3, 4))

    def loss_np(xv):
        out = np_recurrent(kind, xv, p, h0)
        out = out[0] + 0.5 * out[1] if kind == "lstm" else out
        return float((out * proj).sum())

    def loss(xa):
        out = layer(xa, A(h0, np.float64))
        out = out[0] + 0.5 * out[1] if kind == "lstm" else out
        return (out * A(proj, np.float64)).sum()

    g = N(mx.grad(loss)(A(x, np.float64)))
    num = np.zeros_like(x)
    eps = 1e-6
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        num[i] = (loss_np(x + d) - loss_np(x - d)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)
    # parameter gradients flow through nn.value_and_grad
    # (loss reads the layer's parameters, which value_and_grad swaps for tracers)
    value, grads = nn.value_and_grad(layer, lambda m, xa: loss(xa))(layer, A(x, np.float64))
    assert abs(float(value) - loss_np(x)) < 1e-9
    assert {k: v.shape for k, v in tree_flatten(grads)} == {k: v.shape for k, v in tree_flatten(layer.parameters())}
    assert all(np.abs(N(v)).max() > 0 for _, v in tree_flatten(grads))


def test_recurrent_errors(rng):
    with pytest.raises(ValueError):
        nn.RNN(3, 4)(A(rng.uniform(size=(3,))))
    with pytest.raises(ValueError):
        nn.GRU(3, 4)(A(rng.uniform(size=(2, 5, 2))))
    with pytest.raises(ValueError):
        nn.LSTM(3, 4)(A(rng.uniform(size=(2, 5, 3))), A(rng.uniform(size=(2, 5))))
    with pytest.raises(ValueError):
        nn.LSTM(3, 4)(A(rng.uniform(size=(2, 5, 3))), None, A(rng.uniform(size=(3, 4))))
    with pytest.raises(ValueError):
        nn.GRU(3, 4)(A(rng.uniform(size=(2, 0, 3))))


# ───────────────────────────── upsample ─────────────────────────────

def f32(v):
    return np.float32(v)


def np_taps(mode, n, scale, align):
    """The (m, n) interpolation matrix of one axis on MLX's float32 grid."""
    m = int(scale * n)
    i = np.arange(m, dtype=np.float32)
    mat = np.zeros((m, n))
    rows = np.arange(m)
    if mode == "nearest":
        if m > n:
            idx = np.round((i + f32(0.5)) * f32(n / m) - f32(0.5))
        else:
            idx = i * f32(n / m)
        mat[rows, np.clip(idx.astype(np.int64), 0, n - 1)] = 1
        return mat
    if align:
        pos = i * f32((n - 1) / max(m - 1, 1))
    else:
        step = 1 / scale
        pos = i * f32(step) - f32(((m - 1) * step - n + 1) / 2)
    pos = pos.astype(np.float64)
    if mode == "linear":
        pos = np.clip(pos, 0, n - 1)
        lo = np.floor(pos)
        np.add.at(mat, (rows, lo.astype(int)), 1 - (pos - lo))
        np.add.at(mat, (rows, np.ceil(pos).astype(int)), pos - lo)
        return mat
    a = -0.75
    for k in (-1, 0, 1, 2):
        g = np.floor(pos) + k
        d = np.abs(pos - g)
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, (((d - 5) * d + 8) * d - 4) * a)
        np.add.at(mat, (rows, np.clip(g, 0, n - 1).astype(int)), w)
    return mat


def np_upsample(x, scales, mode, align):
    y = np.asarray(x, np.float64)
    for d, s in enumerate(scales):
        mat = np_taps(mode, y.shape[d + 1], s, align)
        y = np.moveaxis(np.tensordot(mat, y, axes=([1], [d + 1])), 0, d + 1)
    return y


def test_upsample_mlx_examples():
    x = mx.arange(1, 5).reshape((1, 2, 2, 1))
    y = nn.Upsample(scale_factor=2, mode="nearest")(x)
    assert y.dtype == mx.int32
    assert np.array(y).squeeze().tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    y = nn.Upsample(scale_factor=2, mode="linear")(x)
    assert y.dtype == mx.float32
    close(np.array(y).squeeze(), [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
                                  [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]], rtol=1e-6, atol=1e-6)
    t = 1 / 3
    y = nn.Upsample(scale_factor=2, mode="linear", align_corners=True)(x)
    close(np.array(y).squeeze(), [[1, 1 + t, 2 - t, 2], [2 - t, 2, 2 + t, 3 - t],
                                  [2 + t, 3 - t, 3, 3 + t], [3, 3 + t, 4 - t, 4]], rtol=1e-6, atol=1e-6)


CASES = [((2, 5, 3), (2.0,)), ((1, 7, 2), (1.5,)), ((2, 6, 1), (0.7,)), ((1, 4, 3, 2), (2.0, 3.0)),
         ((2, 3, 5, 1), (1.5, 2.5)), ((1, 5, 4, 2), (0.6, 1.75)), ((1, 3, 2, 4, 2), (2.0, 1.5, 0.75)),
         ((1, 2, 3, 2, 1), (3.0, 2.0, 2.0))]


@pytest.mark.parametrize("shape,scales", CASES)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("align", [False, True])
def test_upsample_values(rng, shape, scales, mode, align):
    x = rng.uniform(-2, 2, shape)
    y = nn.Upsample(scale_factor=scales, mode=mode, align_corners=align)(A(x))
    ref = np_upsample(N(A(x)), scales, mode, align)
    assert y.shape == ref.shape
    close(y, ref, rtol=2e-6, atol=2e-6)
    if len(set(scales)) == 1:
        y1 = nn.Upsample(scale_factor=scales[0], mode=mode, align_corners=align)(A(x))
        close(y1, ref, rtol=2e-6, atol=2e-6)


def test_upsample_dtypes_and_float64(rng):
    x = rng.uniform(-2, 2, (2, 3, 4, 2))
    for mode in ("linear", "cubic"):
        y = nn.Upsample(scale_factor=(1.5, 2.5), mode=mode)(A(x, np.float64))
        assert y.dtype == mx.float64
        close(y, np_upsample(x, (1.5, 2.5), mode, False), rtol=1e-12, atol=1e-12)
        assert nn.Upsample(1.5, mode=mode)(A(x, np.float16)).dtype == mx.float32
        assert nn.Upsample(1.5, mode=mode)(mx.array(np.arange(24).reshape(1, 4, 6, 1))).dtype == mx.float32
    assert nn.Upsample(1.5)(A(x, np.float16)).dtype == mx.float16


def test_upsample_gradient(rng):
    x = rng.uniform(-1, 1, (1, 3, 4, 2))
    proj = rng.uniform(-1, 1, (1, 5, 9, 2))
    for mode in ("nearest", "linear", "cubic"):
        up = nn.Upsample((1.7, 2.3), mode=mode, align_corners=mode == "linear")
        g = N(mx.grad(lambda a: (up(a) * A(proj, np.float64)).sum())(A(x, np.float64)))
        # the map is linear: the gradient is the transposed interpolation applied to proj
        mats = [np_taps(mode, 3, 1.7, mode == "linear"), np_taps(mode, 4, 2.3, mode == "linear")]
        ref = np.einsum("ai,bj,nabc->nijc", mats[0], mats[1], proj)
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)


def test_upsample_errors(rng):
    with pytest.raises(ValueError):
        nn.Upsample(2, mode="bilinear")
    with pytest.raises(ValueError):
        nn.Upsample(2)(A(rng.uniform(size=(4, 3))))
    with pytest.raises(ValueError):
        nn.Upsample((2, 2))(A(rng.uniform(size=(1, 4, 3))))
    with pytest.raises(ValueError):
        nn.Upsample(-1.0, mode="linear")(A(rng.uniform(size=(1, 4, 3))))
    up = nn.Upsample((2, 1.5), mode="cubic", align_corners=True)
    assert repr(up) == "Upsample(scale_factor=(2.0, 1.5), mode='cubic', align_corners=True)"
    assert up.parameters() == {}


@pytest.mark.parametrize("shape,scales", [((2, 8, 3), (0.5,)), ((1, 13, 2), (0.3,)), ((1, 5, 2), (2.0,)),
                                          ((2, 8, 6, 2), (0.5, 0.5)), ((1, 12, 7, 1), (0.25, 1.5)),
                                          ((1, 9, 10, 2), (0.37, 0.8)), ((1, 6, 4, 5, 1), (0.5, 2.0, 0.4))])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_upsample_antialias(rng, shape, scales, mode):
    """antialias=True: the kernel (triangle, or Keys' cubic with a = -0.5) widened by 1/scale
    when downsampling, summed over every input and normalized (numpy, float64); against MLX
    0.32.4 itself when it is importable; MLX's errors and repr."""
    x = rng.uniform(-2, 2, shape)
    up = nn.Upsample(scale_factor=scales, mode=mode, antialias=True)
    y = up(A(x, np.float64))
    mats = []
    for n, s in zip(shape[1:-1], scales):
        m, widen = int(s * n), (1 / s if s < 1 else 1.0)
        p = np.arange(m) / s - ((m - 1) / s - n + 1) / 2
        d = np.abs(p[:, None] - np.arange(n)[None, :]) / widen
        k = (np.maximum(1 - d, 0) if mode == "linear" else
             np.where(d <= 1, (1.5 * d - 2.5) * d * d + 1, np.where(d <= 2, (((d - 5) * d + 8) * d - 4) * -0.5, 0)))
        mats.append(k / np.where(k.sum(1, keepdims=True) > 0, k.sum(1, keepdims=True), 1))
    ref = x
    for axis, mat in enumerate(mats):
        ref = np.moveaxis(np.tensordot(mat, np.moveaxis(ref, axis + 1, 0), axes=1), 0, axis + 1)
    assert y.shape == ref.shape
    close(y, ref, rtol=1e-6, atol=1e-6)  # positions as MLX computes them, in float32
    try:
        import mlx.core as mlx_core
        import importlib
        mlx_nn = importlib.import_module("mlx.nn")
    except ImportError:
        return
    want = np.array(mlx_nn.Upsample(scale_factor=scales, mode=mode, antialias=True)(mlx_core.array(x.astype(np.float32))))
    close(up(A(x, np.float32)), want, rtol=1e-5, atol=1e-5)
    assert repr(up) == repr(mlx_nn.Upsample(scale_factor=scales, mode=mode, antialias=True))


def test_upsample_antialias_errors():
    with pytest.raises(ValueError, match="nearest"):
        nn.Upsample(0.5, antialias=True)
    with pytest.raises(ValueError, match="align_corners"):
        nn.Upsample(0.5, mode="linear", align_corners=True, antialias=True)
    from ponte.nn.layers.upsample import upsample_linear
    with pytest.raises(ValueError, match="align_corners"):
        upsample_linear(mx.zeros((1, 4, 1)), (0.5,), align_corners=True, antialias=True)


# ───────────────────────────── bilinear ─────────────────────────────

@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear(rng, lead, bias):
    layer = nn.Bilinear(3, 4, 2, bias=bias)
    params = layer_params(layer)
    assert {k: tuple(v.shape) for k, v in params.items()} == (
        {"weight": (2, 4, 3), "bias": (2,)} if bias else {"weight": (2, 4, 3)})
    bound = 1 / math.sqrt(3)
    assert all(np.abs(np.array(v)).max() <= bound for v in params.values())
    x1, x2 = rng.uniform(-1, 1, lead + (3,)), rng.uniform(-1, 1, lead + (4,))
    ref = np.einsum("...k,ojk,...j->...o", N(A(x1)), N(layer.weight), N(A(x2)))
    if bias:
        ref = ref + N(layer.bias)
    y = layer(A(x1), A(x2))
    assert y.shape == lead + (2,)
    close(y, ref)
    assert repr(layer) == f"Bilinear(input1_dims=3, input2_dims=4, output_dims=2, bias={bias})"


def test_bilinear_gradient_and_errors(rng):
    layer = nn.Bilinear(2, 3, 2)
    layer.set_dtype(mx.float64)
    x1, x2 = rng.uniform(-1, 1, (4, 2)), rng.uniform(-1, 1, (4, 3))
    g1, g2 = mx.grad(lambda a, b: layer(a, b).sum(), argnums=(0, 1))(A(x1, np.float64), A(x2, np.float64))
    w = N(layer.weight)
    np.testing.assert_allclose(N(g1), np.einsum("ojk,nj->nk", w, x2), rtol=1e-12)
    np.testing.assert_allclose(N(g2), np.einsum("ojk,nk->nj", w, x1), rtol=1e-12)
    with pytest.raises(ValueError):
        layer(A(x2), A(x1))
    with pytest.raises(ValueError):
        layer(A(x1), A(rng.uniform(size=(5, 3))))
