"""ponte.core's convolutions (conv1d/2d/3d, conv_general, conv_transpose1d/2d/3d, convolve) and
ponte.nn's Conv*, ConvTranspose*, MaxPool*, AvgPool* and Dropout2d/3d layers, against numpy
float64 references written here (window sums, scatters, sliding windows) on random data, with
gradients against finite differences and a small CNN trained with Adam."""
import itertools
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
import ponte.optimizers as optim
from ponte.utils import tree_flatten

TOL = dict(rtol=2e-4, atol=2e-4)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def A(x, dtype=mx.float32):
    return mx.array(np.asarray(x, dtype=np.float64), dtype=mx.float64).astype(dtype)


def close(y, ref, **kw):
    assert isinstance(y, mx.array)
    got = np.array(y.astype(mx.float64)) if y.dtype != mx.float64 else np.array(y)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_allclose(got, ref, **(kw or TOL))


# ───────────────────────────── numpy references ─────────────────────────────

def _per_axis(v, n):
    return [v] * n if isinstance(v, int) else list(v)


def np_conv_general(x, w, stride=1, padding=0, kernel_dilation=1, input_dilation=1, groups=1,
                    flip=False):
    """Cross-correlation of x (N, S..., C) with w (O, K..., C / groups), channels last, computed
    as a sum over kernel offsets of strided windows of the dilated, padded input."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = x.ndim - 2
    s, kd, idl = (_per_axis(v, nd) for v in (stride, kernel_dilation, input_dilation))
    if isinstance(padding, (list, tuple)) and len(padding) == 2 and not isinstance(padding[0], int):
        lo, hi = list(padding[0]), list(padding[1])
    else:
        lo = hi = _per_axis(padding, nd)
    # input dilation: zeros between the elements
    dil = np.zeros((x.shape[0], *[(n - 1) * d + 1 for n, d in zip(x.shape[1:-1], idl)], x.shape[-1]))
    dil[(slice(None), *[slice(None, None, d) for d in idl], slice(None))] = x
    # padding (negative crops)
    crop = tuple([slice(None)] + [slice(max(-a, 0), n - max(-b, 0)) for a, b, n in
                                  zip(lo, hi, dil.shape[1:-1])] + [slice(None)])
    xp = np.pad(dil[crop], [(0, 0)] + [(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)] + [(0, 0)])
    if flip:
        w = w[(slice(None), *[slice(None, None, -1)] * nd, slice(None))]
    O, K, Cg = w.shape[0], w.shape[1:-1], w.shape[-1]
    Og = O // groups
    out_sp = [(n - (k - 1) * d - 1) // st + 1 for n, k, d, st in zip(xp.shape[1:-1], K, kd, s)]
    out = np.zeros((x.shape[0], *out_sp, O))
    for kk in itertools.product(*[range(k) for k in K]):
        win = xp[(slice(None), *[slice(k * d, k * d + (o - 1) * st + 1, st)
                                 for k, d, o, st in zip(kk, kd, out_sp, s)], slice(None))]
        for g in range(groups):
            out[..., g * Og:(g + 1) * Og] += win[..., g * Cg:(g + 1) * Cg] @ w[(slice(g * Og, (g + 1) * Og), *kk)].T
    return out


def np_conv_transpose(x, w, stride=1, padding=0, dilation=1, output_padding=0, groups=1):
    """The adjoint of a strided convolution, by its definition: input element j of channel ci
    adds x * w[co, k, ci] to output position j * stride + k * dilation - padding."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = x.ndim - 2
    s, p, d, op = (_per_axis(v, nd) for v in (stride, padding, dilation, output_padding))
    O, K, Cg = w.shape[0], w.shape[1:-1], w.shape[-1]
    Og = O // groups
    full = [(n - 1) * st + (k - 1) * dd + 1 + o for n, st, k, dd, o in zip(x.shape[1:-1], s, K, d, op)]
    buf = np.zeros((x.shape[0], *full, O))
    for kk in itertools.product(*[range(k) for k in K]):
        sl = (slice(None), *[slice(k * dd, k * dd + (n - 1) * st + 1, st)
                             for k, dd, n, st in zip(kk, d, x.shape[1:-1], s)], slice(None))
        for g in range(groups):
            buf[sl][..., g * Og:(g + 1) * Og] += x[..., g * Cg:(g + 1) * Cg] @ w[(slice(g * Og, (g + 1) * Og), *kk)].T
    crop = tuple([slice(None)] + [slice(pp, f - pp) for pp, f in zip(p, full)] + [slice(None)])
    return buf[crop]


def np_pool(x, kernel, stride, padding, is_max):
    """Max (padding -inf) or average (zero padding counted) pooling of x (N, S..., C)."""
    x = np.asarray(x, np.float64)
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0)] + [(q, q) for q in padding] + [(0, 0)],
                constant_values=-np.inf if is_max else 0.0)
    win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=tuple(range(1, nd + 1)))
    win = win[(slice(None), *[slice(None, None, st) for st in stride])]
    axes = tuple(range(-nd, 0))
    return win.max(axis=axes) if is_max else win.mean(axis=axes)


def test_references_agree():
    """The two references are adjoint: <conv(y, w), x> == <y, conv_transpose(x, w')> with w'
    the weight with its channel axes swapped."""
    r = np.random.default_rng(0)
    y = r.standard_normal((2, 9, 8, 4))
    w = r.standard_normal((6, 3, 2, 4))
    c = np_conv_general(y, w, stride=(2, 1), padding=1, kernel_dilation=(1, 2))
    x = r.standard_normal(c.shape)
    t = np_conv_transpose(x, w.transpose(3, 1, 2, 0), stride=(2, 1), padding=1, dilation=(1, 2))
    assert t.shape[1] <= y.shape[1]
    yt = y[:, :t.shape[1], :t.shape[2]]
    assert np.isclose((c * x).sum(), (yt * t).sum())


# ───────────────────────────── mx.conv1d / conv2d / conv3d ─────────────────────────────

CONV_CASES = [
    # (N, spatial, C, O, kernel, stride, padding, dilation, groups)
    (1, (9,), 3, 4, (3,), 1, 0, 1, 1),
    (3, (12,), 4, 6, (3,), 2, 1, 2, 2),
    (2, (7,), 6, 6, (2,), 3, 2, 1, 6),
    (1, (6, 7), 3, 5, (3, 2), 1, 0, 1, 1),
    (2, (9, 8), 4, 6, (3, 3), (2, 1), (1, 2), (2, 1), 2),
    (3, (5, 5), 2, 4, (1, 1), 2, 0, 1, 1),
    (1, (5, 6, 4), 2, 3, (2, 3, 2), 1, 0, 1, 1),
    (2, (6, 5, 5), 4, 4, (3, 2, 2), (2, 1, 2), (1, 0, 1), (1, 2, 1), 2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_nd(rng, case):
    N, sp, C, O, K, s, p, d, g = case
    x = rng.standard_normal((N, *sp, C))
    w = rng.standard_normal((O, *K, C // g))
    fn = {1: mx.conv1d, 2: mx.conv2d, 3: mx.conv3d}[len(sp)]
    ref = np_conv_general(x, w, s, p, d, 1, g)
    close(fn(A(x), A(w), s, p, d, g), ref)
    close(fn(A(x), A(w), stride=s, padding=p, dilation=d, groups=g), ref)
    close(fn(A(x, mx.float64), A(w, mx.float64), s, p, d, g), ref, rtol=1e-10, atol=1e-10)
    # ints and tuples mean the same thing
    if isinstance(s, int) and len(sp) > 1:
        close(fn(A(x), A(w), (s,) * len(sp), [p] * len(sp), (d,) * len(sp), g), ref)


def test_conv_defaults_and_dtypes(rng):
    x = rng.standard_normal((2, 6, 3))
    w = rng.standard_normal((4, 3, 3))
    y = mx.conv1d(A(x), A(w))
    assert y.shape == (2, 4, 4) and y.dtype == mx.float32
    close(y, np_conv_general(x, w))
    # float16 input promotes with a float32 weight, as MLX
    assert mx.conv1d(A(x, mx.float16), A(w)).dtype == mx.float32
    y16 = mx.conv1d(A(x, mx.float16), A(w, mx.float16))
    assert y16.dtype == mx.float16
    close(y16, np_conv_general(x, w), rtol=2e-2, atol=2e-2)


# ───────────────────────────── mx.conv_general ─────────────────────────────

GENERAL_CASES = [
    # (N, spatial, C, O, kernel, kwargs)
    (2, (8,), 2, 3, (3,), dict(stride=2, padding=1, kernel_dilation=2, input_dilation=1)),
    (1, (5,), 4, 2, (2,), dict(padding=([2], [1]), input_dilation=3, groups=2, flip=True)),
    (2, (6, 5), 3, 4, (3, 2), dict(stride=(1, 2), padding=([1, 0], [2, 1]), kernel_dilation=(1, 2))),
    (1, (4, 5), 2, 2, (2, 2), dict(input_dilation=(2, 1), padding=1, flip=True)),
    (2, (7, 6), 4, 4, (2, 3), dict(padding=([-1, 0], [0, -2]), groups=4)),
    (1, (4, 4, 5), 2, 3, (2, 2, 3), dict(stride=(1, 2, 1), padding=(1, 0, 1),
                                           kernel_dilation=(1, 1, 2), input_dilation=(1, 2, 1),
                                           flip=True)),
]


@pytest.mark.parametrize("case", GENERAL_CASES)
def test_conv_general(rng, case):
    N, sp, C, O, K, kw = case
    g = kw.get("groups", 1)
    x = rng.standard_normal((N, *sp, C))
    w = rng.standard_normal((O, *K, C // g))
    close(mx.conv_general(A(x), A(w), **kw), np_conv_general(x, w, **kw))


def test_conv_general_flip_groups_exact():
    # two groups of one channel, the kernel flipped: sums of products spelled out
    x = np.broadcast_to(np.arange(5.0), (2, 5)).T[None]    # (1, 5, 2)
    w = np.broadcast_to(np.arange(4.0), (2, 4))[..., None]  # (2, 4, 1)
    y = mx.conv_general(A(x), A(w), flip=True, groups=2)
    close(y, np.array([[[4.0, 4.0], [10.0, 10.0]]]))


def test_conv_general_matches_conv2d(rng):
    x = rng.standard_normal((2, 7, 6, 4))
    w = rng.standard_normal((3, 3, 2, 4))
    a = mx.conv_general(A(x), A(w), stride=(2, 1), padding=1, kernel_dilation=(1, 2))
    b = mx.conv2d(A(x), A(w), stride=(2, 1), padding=1, dilation=(1, 2))
    np.testing.assert_array_equal(np.array(a), np.array(b))


# ───────────────────────────── transposed convolutions ─────────────────────────────

TRANSPOSE_CASES = [
    # (N, spatial, C, O, kernel, stride, padding, dilation, output_padding, groups)
    (1, (5,), 3, 2, (3,), 1, 0, 1, 0, 1),
    (2, (6,), 4, 6, (4,), 2, 1, 1, 1, 2),
    (3, (4,), 2, 3, (2,), 3, 0, 2, 2, 1),
    (1, (4, 5), 3, 2, (3, 2), 1, 0, 1, 0, 1),
    (2, (3, 4), 4, 4, (3, 3), (2, 3), (1, 0), (1, 2), (1, 2), 2),
    (2, (3, 3), 2, 5, (2, 2), 2, 0, 1, 1, 1),
    (1, (3, 3, 2), 2, 3, (2, 2, 2), 2, 0, 1, 0, 1),
    (2, (2, 3, 3), 2, 2, (3, 2, 2), (1, 2, 2), (1, 0, 0), (1, 1, 2), (0, 1, 1), 2),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose(rng, case):
    N, sp, C, O, K, s, p, d, op, g = case
    x = rng.standard_normal((N, *sp, C))
    w = rng.standard_normal((O, *K, C // g))
    fn = {1: mx.conv_transpose1d, 2: mx.conv_transpose2d, 3: mx.conv_transpose3d}[len(sp)]
    ref = np_conv_transpose(x, w, s, p, d, op, g)
    close(fn(A(x), A(w), s, p, d, op, g), ref)
    close(fn(A(x), A(w), stride=s, padding=p, dilation=d, output_padding=op, groups=g), ref)


def test_conv_transpose_shape_formula(rng):
    # (in - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1
    x = A(rng.standard_normal((1, 5, 6, 2)))
    w = A(rng.standard_normal((3, 3, 4, 2)))
    y = mx.conv_transpose2d(x, w, stride=(2, 3), padding=(1, 2), dilation=(2, 1), output_padding=(1, 2))
    assert y.shape == (1, 4 * 2 - 2 + 2 * 2 + 1 + 1, 5 * 3 - 4 + 3 + 2 + 1, 3)


# ───────────────────────────── mx.convolve ─────────────────────────────

@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("M,N", [(1, 1), (25, 5), (24, 4), (4, 24), (5, 25), (7, 7)])
def test_convolve(rng, mode, M, N):
    a, v = rng.standard_normal(M), rng.standard_normal(N)
    close(mx.convolve(A(a), A(v), mode), np.convolve(a, v, mode=mode))
    close(mx.convolve(A(a), A(v), mode=mode), np.convolve(a, v, mode=mode))


def test_convolve_default_full(rng):
    a, v = rng.standard_normal(6), rng.standard_normal(3)
    close(mx.convolve(A(a), A(v)), np.convolve(a, v))


# ───────────────────────────── gradients ─────────────────────────────

def _fd_grad(f, arrays, i, eps=1e-6):
    """Central finite differences of the scalar f(*arrays) with respect to arrays[i]."""
    base = [np.array(a, np.float64) for a in arrays]
    g = np.zeros_like(base[i])
    for idx in np.ndindex(g.shape):
        plus = [b.copy() for b in base]
        minus = [b.copy() for b in base]
        plus[i][idx] += eps
        minus[i][idx] -= eps
        g[idx] = (f(*plus) - f(*minus)) / (2 * eps)
    return g


@pytest.mark.parametrize("transpose", [False, True])
def test_conv2d_gradients(rng, transpose):
    x = rng.standard_normal((2, 5, 4, 4))
    w = rng.standard_normal((4, 3, 2, 2))
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    if transpose:
        kw["output_padding"] = (1, 0)
        fn, ref_fn = mx.conv_transpose2d, np_conv_transpose
    else:
        fn, ref_fn = mx.conv2d, lambda a, b, **k: np_conv_general(a, b, k["stride"], k["padding"],
                                                                  k["dilation"], 1, k["groups"])
    r = rng.standard_normal(ref_fn(x, w, **kw).shape)

    def loss(a, b):
        return (fn(a, b, **kw) * A(r, mx.float64)).sum()

    gx, gw = mx.grad(loss, argnums=(0, 1))(A(x, mx.float64), A(w, mx.float64))

    def np_loss(a, b):
        return float((ref_fn(a, b, **kw) * r).sum())

    close(gx, _fd_grad(np_loss, [x, w], 0), rtol=1e-6, atol=1e-6)
    close(gw, _fd_grad(np_loss, [x, w], 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", [nn.MaxPool2d(2, stride=1, padding=1), nn.AvgPool2d((2, 3), padding=(1, 1))])
def test_pool_gradients(rng, layer):
    x = rng.standard_normal((2, 4, 5, 3))
    r = rng.standard_normal(layer(A(x)).shape)
    k, s, p = layer._kernel_size, layer._stride, layer._padding
    is_max = isinstance(layer, nn.MaxPool2d)
    g = mx.grad(lambda a: (layer(a) * A(r, mx.float64)).sum())(A(x, mx.float64))
    close(g, _fd_grad(lambda a: float((np_pool(a, k, s, p, is_max) * r).sum()), [x], 0),
          rtol=1e-6, atol=1e-6)


# ───────────────────────────── errors ─────────────────────────────

def test_conv_errors(rng):
    x4 = A(rng.standard_normal((1, 5, 5, 4)))
    w4 = A(rng.standard_normal((2, 3, 3, 4)))
    with pytest.raises(ValueError):  # rank: 2-d conv of a 3-d input
        mx.conv2d(A(rng.standard_normal((5, 5, 4))), w4)
    with pytest.raises(ValueError):  # weight rank
        mx.conv2d(x4, A(rng.standard_normal((2, 3, 4))))
    with pytest.raises(ValueError):  # channels mismatch
        mx.conv2d(x4, A(rng.standard_normal((2, 3, 3, 3))))
    with pytest.raises(ValueError):  # groups not dividing the input channels
        mx.conv2d(x4, A(rng.standard_normal((3, 3, 3, 1))), groups=3)
    with pytest.raises(ValueError):  # groups not dividing the output channels
        mx.conv2d(x4, A(rng.standard_normal((3, 3, 3, 2))), groups=2)
    with pytest.raises(ValueError):  # kernel larger than the padded input
        mx.conv2d(x4, A(rng.standard_normal((2, 7, 7, 4))))
    with pytest.raises(ValueError):  # per-axis argument of the wrong length
        mx.conv2d(x4, w4, stride=(1, 1, 1))
    with pytest.raises(ValueError):
        mx.conv2d(x4, w4, stride=0)
    with pytest.raises(ValueError):  # integer inputs
        mx.conv1d(mx.ones((1, 4, 2), dtype=mx.int32), mx.ones((1, 2, 2), dtype=mx.int32))
    # conv1d takes the spatial rank from the input, as MLX: on a 4-d input it is conv2d
    np.testing.assert_allclose(np.array(mx.conv1d(x4, w4, padding=1)),
                               np.array(mx.conv2d(x4, w4, padding=(1, 1))), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        mx.conv3d(x4, w4)
    with pytest.raises(ValueError):  # 1-3 spatial axes only
        mx.conv_general(A(rng.standard_normal((4, 3))), A(rng.standard_normal((2, 3))))
    with pytest.raises(ValueError):
        mx.conv_general(x4, w4, padding=([1, 1], [1]))
    with pytest.raises(ValueError):
        mx.conv_transpose2d(x4, A(rng.standard_normal((2, 3, 3, 3))))
    with pytest.raises(ValueError):
        mx.conv_transpose2d(x4, w4, output_padding=-1)
    with pytest.raises(TypeError):
        mx.conv2d(x4, w4, stride="2")


def test_convolve_errors():
    with pytest.raises(ValueError):
        mx.convolve(mx.ones((2, 3)), mx.ones((3,)))
    with pytest.raises(ValueError):
        mx.convolve(mx.ones((3,)), mx.array([], dtype=mx.float32))
    with pytest.raises(ValueError):
        mx.convolve(mx.ones((3,)), mx.ones((2,)), mode="middle")


# ───────────────────────────── convolution layers ─────────────────────────────

LAYER_CASES = [
    # (class, kwargs, input shape)
    (nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, dilation=2,
                     groups=2), (3, 11, 4)),
    (nn.Conv1d, dict(in_channels=2, out_channels=3, kernel_size=2), (1, 5, 2)),
    (nn.Conv2d, dict(in_channels=4, out_channels=2, kernel_size=(3, 2), stride=(2, 1), padding=1,
                     dilation=(1, 2), groups=2), (2, 7, 6, 4)),
    (nn.Conv2d, dict(in_channels=3, out_channels=5, kernel_size=3, bias=False), (1, 5, 5, 3)),
    (nn.Conv3d, dict(in_channels=2, out_channels=3, kernel_size=(2, 3, 2), stride=(1, 2, 1),
                     padding=(1, 0, 1), dilation=(2, 1, 1)), (2, 4, 5, 4, 2)),
    (nn.ConvTranspose1d, dict(in_channels=3, out_channels=2, kernel_size=4, stride=2, padding=1,
                              output_padding=1), (2, 5, 3)),
    (nn.ConvTranspose2d, dict(in_channels=2, out_channels=4, kernel_size=(2, 3), stride=2,
                              dilation=(1, 2), output_padding=(1, 0)), (1, 3, 4, 2)),
    (nn.ConvTranspose3d, dict(in_channels=2, out_channels=2, kernel_size=2, stride=(2, 1, 2),
                              padding=(0, 1, 0), bias=False), (2, 2, 3, 2, 2)),
]


@pytest.mark.parametrize("cls,kw,shape", LAYER_CASES)
def test_conv_layers(rng, cls, kw, shape):
    layer = cls(**kw)
    nd = len(shape) - 2
    ks = kw["kernel_size"]
    ks = (ks,) * nd if isinstance(ks, int) else ks
    g = kw.get("groups", 1)
    assert layer.weight.shape == (kw["out_channels"], *ks, kw["in_channels"] // g)
    names = sorted(k for k, _ in tree_flatten(layer.parameters()))
    assert names == (["bias", "weight"] if kw.get("bias", True) else ["weight"])
    if "bias" in layer:
        assert layer.bias.shape == (kw["out_channels"],)
        np.testing.assert_array_equal(np.array(layer.bias), 0)
        layer.bias = A(rng.standard_normal(kw["out_channels"]))
    x = rng.standard_normal(shape)
    w = np.array(layer.weight, np.float64)
    args = {k: kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1))}
    if cls.__name__.startswith("ConvTranspose"):
        ref = np_conv_transpose(x, w, output_padding=kw.get("output_padding", 0), **args)
    else:
        ref = np_conv_general(x, w, args["stride"], args["padding"], args["dilation"], 1, g)
    if "bias" in layer:
        ref = ref + np.array(layer.bias, np.float64)
    close(layer(A(x)), ref)


def test_conv_init_scale():
    mx.random.seed(3)
    layer = nn.Conv2d(16, 32, 3)
    w = np.array(layer.weight, np.float64)
    scale = math.sqrt(1 / (16 * 9))
    assert np.abs(w).max() <= scale
    assert abs(w.std() - scale / math.sqrt(3)) < 0.05 * scale  # uniform(-scale, scale)
    assert abs(w.mean()) < 0.05 * scale
    t = nn.ConvTranspose1d(8, 4, 5)
    assert np.abs(np.array(t.weight)).max() <= math.sqrt(1 / 40)
    assert t.weight.shape == (4, 5, 8)


def test_conv_layer_reprs():
    assert repr(nn.Conv1d(4, 6, 3, stride=2, groups=2)) == (
        "Conv1d(4, 6, kernel_size=3, stride=2, padding=0, dilation=1, groups=2, bias=True)")
    assert repr(nn.Conv2d(3, 8, (3, 2), padding=1, bias=False)) == (
        "Conv2d(3, 8, kernel_size=(3, 2), stride=(1, 1), padding=(1, 1), dilation=1, groups=1, "
        "bias=False)")
    assert repr(nn.Conv3d(2, 4, 3)) == (
        "Conv3d(2, 4, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(0, 0, 0), dilation=1, "
        "bias=True)")
    assert repr(nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1)) == (
        "ConvTranspose2d(4, 2, kernel_size=(3, 3), stride=(2, 2), padding=(0, 0), dilation=1, "
        "output_padding=(1, 1), bias=True)")


def test_conv_layer_errors(rng):
    with pytest.raises(ValueError):
        nn.Conv2d(5, 4, 3, groups=2)
    with pytest.raises(ValueError):
        nn.Conv1d(6, 4, 3, groups=4)
    with pytest.raises(ValueError):
        nn.Conv2d(2, 4, (3, 3, 3))
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError):  # channels mismatch
        layer(A(rng.standard_normal((1, 5, 5, 2))))
    with pytest.raises(ValueError):  # unbatched input: MLX's conv needs (N, H, W, C)
        layer(A(rng.standard_normal((5, 5, 3))))


# ───────────────────────────── pooling ─────────────────────────────

POOL_CASES = [
    # (dims, kernel_size, stride, padding, input shape)
    (1, 2, None, 0, (2, 8, 3)),
    (1, 3, 2, 1, (1, 9, 2)),
    (1, (4,), (1,), (2,), (3, 6, 1)),
    (2, 2, None, 0, (2, 6, 8, 3)),
    (2, (3, 2), (2, 1), (1, 0), (1, 7, 5, 2)),
    (2, 3, 3, 1, (2, 7, 7, 4)),
    (3, 2, None, 0, (2, 4, 6, 4, 2)),
    (3, (2, 3, 2), (1, 2, 2), (1, 1, 0), (1, 5, 5, 4, 3)),
]


@pytest.mark.parametrize("is_max", [True, False])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling(rng, case, is_max):
    nd, k, s, p, shape = case
    cls = getattr(nn, f"{'Max' if is_max else 'Avg'}Pool{nd}d")
    layer = cls(k) if s is None and p == 0 else cls(k, stride=s, padding=p)
    kt = (k,) * nd if isinstance(k, int) else tuple(k)
    st = kt if s is None else ((s,) * nd if isinstance(s, int) else tuple(s))
    pt = (p,) * nd if isinstance(p, int) else tuple(p)
    assert (layer._kernel_size, layer._stride, layer._padding) == (kt, st, pt)
    assert layer.parameters() == {}
    x = rng.standard_normal(shape)
    close(layer(A(x)), np_pool(x, kt, st, pt, is_max))


def test_pooling_edge_cases(rng):
    # max pooling pads with -inf: an all-negative input never yields a padded 0
    x = -np.abs(rng.standard_normal((1, 4, 4, 2))) - 1
    y = np.array(nn.MaxPool2d(2, stride=2, padding=1)(A(x)))
    assert (y < 0).all()
    close(nn.MaxPool2d(2, stride=2, padding=1)(A(x)), np_pool(x, (2, 2), (2, 2), (1, 1), True))
    # average pooling counts the zero padding
    y = nn.AvgPool1d(2, padding=1)(mx.ones((1, 2, 1)))
    close(y, np.array([[[0.5], [0.5]]]))
    # a window as large as the input: global pooling
    x = rng.standard_normal((2, 3, 5, 4))
    close(nn.AvgPool2d((3, 5))(A(x)), x.mean(axis=(1, 2), keepdims=True))
    close(nn.MaxPool2d((3, 5))(A(x)), x.max(axis=(1, 2), keepdims=True))
    # stride larger than the kernel skips elements; a remainder that fits no window is dropped
    x = rng.standard_normal((1, 10, 1))
    close(nn.MaxPool1d(2, stride=3)(A(x)), np_pool(x, (2,), (3,), (0,), True))
    assert nn.AvgPool1d(3)(A(x)).shape == (1, 3, 1)
    # integer inputs pool too (max keeps the dtype)
    xi = mx.array(np.arange(16, dtype=np.int32).reshape(1, 4, 4, 1))
    yi = nn.MaxPool2d(2)(xi)
    assert yi.dtype == mx.int32
    np.testing.assert_array_equal(np.array(yi)[0, ..., 0], [[5, 7], [13, 15]])
    # float16 keeps its dtype
    assert nn.AvgPool2d(2)(A(rng.standard_normal((1, 4, 4, 1)), mx.float16)).dtype == mx.float16


def test_pooling_reprs():
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(nn.AvgPool1d(3, stride=1, padding=1)) == (
        "AvgPool1d(kernel_size=(3,), stride=(1,), padding=(1,))")
    assert repr(nn.MaxPool3d((1, 2, 3), stride=(1, 1, 1))) == (
        "MaxPool3d(kernel_size=(1, 2, 3), stride=(1, 1, 1), padding=(0, 0, 0))")


def test_pooling_errors(rng):
    for bad in (dict(kernel_size=(2, 2, 2)), dict(kernel_size=2.0), dict(kernel_size=0),
                dict(kernel_size=2, stride=0), dict(kernel_size=2, stride=(1,)),
                dict(kernel_size=2, padding=-1), dict(kernel_size=2, padding=(1, 2, 3))):
        with pytest.raises(ValueError):
            nn.MaxPool2d(**bad)
    with pytest.raises(ValueError):
        nn.AvgPool1d((2, 2))
    with pytest.raises(ValueError):  # 2-d pooling of a 3-d input
        nn.MaxPool2d(2)(A(rng.standard_normal((4, 4, 3))))
    with pytest.raises(ValueError):
        nn.AvgPool3d(2)(A(rng.standard_normal((1, 4, 4, 3))))
    with pytest.raises(ValueError):  # window larger than the padded input
        nn.MaxPool1d(5)(A(rng.standard_normal((1, 3, 2))))


# ───────────────────────────── channel dropout ─────────────────────────────

@pytest.mark.parametrize("cls,nd", [(nn.Dropout2d, 2), (nn.Dropout3d, 3)])
@pytest.mark.parametrize("batched", [True, False])
def test_channel_dropout(rng, cls, nd, batched):
    mx.random.seed(21)
    p = 0.3
    layer = cls(p)
    assert repr(layer).startswith(f"{cls.__name__}(p=0.3")
    spatial = (3, 4) if nd == 2 else (2, 3, 2)
    shape = (64, *spatial, 32) if batched else (*spatial, 2048)  # 2048 channels either way
    x = rng.uniform(0.5, 1.5, shape)
    y = np.array(layer(A(x)), np.float64)
    assert y.shape == x.shape
    # every channel of every sample is dropped or kept as a whole
    ratio = y / x
    sp_axes = tuple(range(-nd - 1, -1))
    first = ratio[(..., *[slice(0, 1)] * nd, slice(None))]
    np.testing.assert_allclose(ratio, np.broadcast_to(first, ratio.shape), rtol=1e-5, atol=1e-6)
    vals = first.reshape(-1)
    kept = vals > 0
    np.testing.assert_allclose(vals[kept], 1 / (1 - p), rtol=1e-5)
    assert abs((~kept).mean() - p) < 0.05, (~kept).mean()
    assert np.ptp(ratio.max(axis=sp_axes)) > 0  # some channels kept, some dropped
    # eval mode: identity
    layer.eval()
    np.testing.assert_array_equal(np.array(layer(A(x))), np.array(A(x)))
    layer.train()
    assert layer.training


def test_channel_dropout_errors(rng):
    with pytest.raises(ValueError):
        nn.Dropout2d(1.0)
    with pytest.raises(ValueError):
        nn.Dropout3d(-0.1)
    with pytest.raises(ValueError):
        nn.Dropout2d()(A(rng.standard_normal((4, 3))))
    with pytest.raises(ValueError):
        nn.Dropout3d()(A(rng.standard_normal((1, 2, 3, 4, 5, 6))))
    d = nn.Dropout2d(0.0)
    x = A(rng.standard_normal((2, 3, 3, 4)))
    np.testing.assert_array_equal(np.array(d(x)), np.array(x))


# ───────────────────────────── training ─────────────────────────────

def test_cnn_training_smoke(rng):
    mx.random.seed(5)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.head = nn.Linear(4 * 4 * 4, 3)

        def __call__(self, x):
            h = self.pool(nn.relu(self.conv(x)))
            return self.head(h.reshape(h.shape[0], -1))

    model = CNN()
    x = A(rng.standard_normal((16, 8, 8, 1)))
    y = mx.array(rng.integers(0, 3, 16).astype(np.int32))

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    step = nn.value_and_grad(model, loss_fn)
    opt = optim.Adam(learning_rate=0.02)
    losses = []
    for _ in range(25):
        loss, grads = step(model, x, y)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
