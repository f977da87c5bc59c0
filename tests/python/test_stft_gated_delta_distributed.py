"""fft.fftfreq / rfftfreq / stft / istft and
fast.gated_delta_update against numpy float64 references on random data, nn.relu2 / ReLU2,
nn's layer modules (nn.linear, ...), distributed on one process and nn.average_gradients;
the same calls through MLX when it is importable (differential part)."""
import subprocess
import sys

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn

try:
    import mlx.core as mlx_core
    import mlx.nn as mlx_nn
except ImportError:  # the differential part skips
    mlx_core = mlx_nn = None
needs_mlx = pytest.mark.skipif(mlx_core is None, reason="MLX is not importable")


# ───────────────────────────── numpy references ─────────────────────────────

def np_stft(x, n_fft=2048, hop=None, win=None, window=None, center=True, pad_mode="reflect",
            norm="backward", onesided=None):
    x = np.asarray(x)
    if onesided is None:
        onesided = not np.iscomplexobj(x)
    hop = n_fft // 4 if hop is None else hop
    w = np.ones(n_fft if win is None else win) if window is None else np.asarray(window, np.float64)
    left = (n_fft - len(w)) // 2
    w = np.pad(w, (left, n_fft - len(w) - left))
    if center:
        p = n_fft // 2
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(p, p)], mode=pad_mode)
    frames = 1 + (x.shape[-1] - n_fft) // hop
    fr = np.stack([x[..., i * hop:i * hop + n_fft] * w for i in range(frames)], axis=-2)
    f = np.fft.rfft(fr.real, axis=-1, norm=norm) if onesided else np.fft.fft(fr, axis=-1, norm=norm)
    return np.swapaxes(f, -1, -2)


def np_istft(s, n_fft=None, hop=None, window=None, center=True, norm="backward", onesided=True,
             length=None):
    nfreq = s.shape[-2]
    n_fft = (2 * (nfreq - 1) if onesided else nfreq) if n_fft is None else n_fft
    hop = n_fft // 4 if hop is None else hop
    w = np.ones(n_fft) if window is None else np.asarray(window, np.float64)
    left = (n_fft - len(w)) // 2
    w = np.pad(w, (left, n_fft - len(w) - left))
    f = np.swapaxes(s, -1, -2)
    f = np.fft.irfft(f, n=n_fft, axis=-1, norm=norm) if onesided else \
        np.fft.ifft(f, n=n_fft, axis=-1, norm=norm).real
    f = f * w
    total = n_fft + hop * (f.shape[-2] - 1)
    y = np.zeros(s.shape[:-2] + (total,))
    env = np.zeros(total)
    for i in range(f.shape[-2]):
        y[..., i * hop:i * hop + n_fft] += f[..., i, :]
        env[i * hop:i * hop + n_fft] += w * w
    y = y / np.maximum(env, 1e-8)
    start = n_fft // 2 if center else 0
    stop = total - n_fft // 2 if center else total
    if length is not None:
        stop = start + max(length, 0)
        if stop > total:
            y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, stop - total)])
    return y[..., start:stop]


def np_gated_delta(q, k, v, g, beta, state=None, mask=None):
    B, T, Hk, Dk = q.shape
    Hv, Dv = v.shape[2:]
    r = Hv // Hk
    S = np.zeros((B, Hv, Dv, Dk)) if state is None else state.astype(np.float64)
    ys = []
    for t in range(T):
        qt, kt = np.repeat(q[:, t], r, axis=1), np.repeat(k[:, t], r, axis=1)
        gt = g[:, t][:, :, None, None] if g.ndim == 3 else g[:, t][:, :, None, :]
        Sn = S * gt
        delta = (v[:, t] - np.einsum("bhvk,bhk->bhv", Sn, kt)) * beta[:, t, :, None]
        Sn = Sn + np.einsum("bhv,bhk->bhvk", delta, kt)
        y = np.einsum("bhvk,bhk->bhv", Sn, qt)
        if mask is not None:
            m = mask[:, t] != 0
            y = np.where(m[:, None, None], y, 0)
            Sn = np.where(m[:, None, None, None], Sn, S)
        ys.append(y)
        S = Sn
    return np.stack(ys, 1), S


def close(a, ref, tol=1e-4):
    np.testing.assert_allclose(np.array(a), ref, rtol=tol, atol=tol)


# ───────────────────────────── fft helpers ─────────────────────────────

@pytest.mark.parametrize("n", [1, 2, 7, 8, 33])
@pytest.mark.parametrize("d", [1.0, 0.1, -2.5])
def test_fftfreq(n, d):
    f, rf = mx.fft.fftfreq(n, d), mx.fft.rfftfreq(n, d=d)
    assert f.dtype == mx.float32 and rf.dtype == mx.float32
    close(f, np.fft.fftfreq(n, d), 1e-6)
    close(rf, np.abs(np.fft.rfftfreq(n, abs(d))) * np.sign(d), 1e-6)


def test_fftfreq_errors():
    for f in (mx.fft.fftfreq, mx.fft.rfftfreq):
        with pytest.raises(ValueError):
            f(0)
        with pytest.raises(ValueError):
            f(4, 0.0)


STFT_CASES = [
    dict(n_fft=16),
    dict(n_fft=16, hop_length=5, pad_mode="constant", norm="ortho"),
    dict(n_fft=15, hop_length=4, center=False, norm="forward"),
    dict(n_fft=12, win_length=7, pad_mode="edge"),
    dict(n_fft=16, hop_length=3, window="hann"),
    dict(n_fft=8, onesided=False),
    dict(n_fft=64, hop_length=16),  # reflect padding longer than the signal
]


def _kw(case):
    kw = dict(case)
    window = None
    if kw.get("window") == "hann":
        window = np.hanning(11)
        kw["window"] = mx.array(window.astype(np.float32))
    return kw, window


@pytest.mark.parametrize("case", STFT_CASES)
@pytest.mark.parametrize("shape", [(40,), (2, 37), (2, 1, 30)])
def test_stft_matches_numpy(rng, case, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    kw, window = _kw(case)
    r = mx.fft.stft(mx.array(x), **kw)
    ref = np_stft(x.astype(np.float64), case["n_fft"], case.get("hop_length"),
                  case.get("win_length"), window, case.get("center", True),
                  case.get("pad_mode", "reflect"), case.get("norm", "backward"),
                  case.get("onesided"))
    assert r.dtype == mx.complex64 and r.shape == ref.shape
    close(r, ref, 2e-4)


def test_stft_complex_input_and_defaults(rng):
    x = (rng.standard_normal(50) + 1j * rng.standard_normal(50)).astype(np.complex64)
    r = mx.fft.stft(mx.array(x), n_fft=8)
    assert r.shape == (8, 26)  # two-sided by default for complex input
    close(r, np_stft(x.astype(np.complex128), 8), 2e-4)
    assert mx.fft.stft(mx.array(x), n_fft=8, onesided=True).shape == (5, 26)
    xr = rng.standard_normal(3000).astype(np.float32)
    assert mx.fft.stft(mx.array(xr)).shape == (1025, 6)  # n_fft 2048, hop 512


def test_stft_errors():
    x = mx.array(np.ones(64, np.float32))
    for kw in [dict(n_fft=0), dict(n_fft=8, hop_length=0), dict(n_fft=8, win_length=9),
               dict(n_fft=8, window=mx.ones((8, 1))), dict(n_fft=4, window=mx.ones(6)),
               dict(n_fft=8, pad_mode="wrap"), dict(n_fft=8, norm="bad"),
               dict(n_fft=65, center=False), dict(n_fft=2)]:
        with pytest.raises(ValueError):
            mx.fft.stft(x, **kw)
    with pytest.raises(ValueError):
        mx.fft.stft(mx.array(1.0), n_fft=4)


@pytest.mark.parametrize("kw", [
    dict(), dict(hop_length=3), dict(onesided=False), dict(onesided=False, norm="forward",
                                                             hop_length=3),
    dict(n_fft=17, hop_length=5), dict(hop_length=20, center=False), dict(length=20),
    dict(length=40), dict(norm="ortho", window="hann"),
])
def test_istft_matches_numpy(rng, kw):
    s = (rng.standard_normal((2, 9, 7)) + 1j * rng.standard_normal((2, 9, 7))).astype(np.complex64)
    kw = dict(kw)
    window = None
    if kw.get("window") == "hann":
        window = np.hanning(16)
        kw["window"] = mx.array(window.astype(np.float32))
    r = mx.fft.istft(mx.array(s), **kw)
    ref = np_istft(s.astype(np.complex128), kw.get("n_fft"), kw.get("hop_length"), window,
                   kw.get("center", True), kw.get("norm", "backward"), kw.get("onesided", True),
                   kw.get("length"))
    assert r.dtype == mx.float32 and r.shape == ref.shape
    close(r, ref, 2e-4)


@pytest.mark.parametrize("n_fft,hop", [(16, 4), (32, 8), (15, 5)])
def test_istft_inverts_stft(rng, n_fft, hop):
    x = rng.standard_normal((3, 150)).astype(np.float32)
    w = mx.array(np.hanning(n_fft + 2)[1:-1].astype(np.float32))
    s = mx.fft.stft(mx.array(x), n_fft=n_fft, hop_length=hop, window=w)
    y = mx.fft.istft(s, n_fft=n_fft, hop_length=hop, window=w, length=150)
    close(y, x, 1e-4)


def test_istft_errors():
    s = mx.zeros((9, 7), dtype=mx.complex64)
    for kw in [dict(n_fft=0), dict(hop_length=0), dict(win_length=20), dict(window=mx.ones(20)),
               dict(window=mx.ones((4, 4))), dict(norm="x"), dict(n_fft=3)]:
        with pytest.raises(ValueError):
            mx.fft.istft(s, **kw)
    with pytest.raises(ValueError):
        mx.fft.istft(mx.zeros((7,), dtype=mx.complex64))


def test_stft_gradient_matches_finite_differences(rng):
    x = rng.standard_normal(20).astype(np.float32)

    def f(a):
        s = mx.fft.stft(a, n_fft=8, hop_length=3, window=mx.array(np.hanning(8).astype(np.float32)))
        return (mx.real(s) ** 2 + mx.imag(s) ** 2).sum()  # (mx.abs's complex vjp is off)

    g = np.array(mx.grad(f)(mx.array(x)))
    eps, num = 1e-2, np.zeros(20)
    for i in range(20):
        e = np.zeros(20, np.float32)
        e[i] = eps
        num[i] = (f(mx.array(x + e)).item() - f(mx.array(x - e)).item()) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=2e-2, atol=2e-2)


# ───────────────────────────── gated delta ─────────────────────────────

GD = [((2, 5, 2, 4, 3, 6), False, False, False), ((1, 4, 1, 1, 5, 2), False, True, False),
      ((2, 6, 2, 2, 4, 3), True, True, True), ((3, 3, 1, 3, 2, 2), False, False, True)]


def _gd_inputs(rng, dims, gamma4, state, mask):
    B, T, Hk, Hv, Dk, Dv = dims
    q = rng.standard_normal((B, T, Hk, Dk))
    k = rng.standard_normal((B, T, Hk, Dk)) / np.sqrt(Dk)
    v = rng.standard_normal((B, T, Hv, Dv))
    g = rng.uniform(0.5, 1, (B, T, Hv, Dk) if gamma4 else (B, T, Hv))
    beta = rng.uniform(0, 1, (B, T, Hv))
    s0 = rng.standard_normal((B, Hv, Dv, Dk)) if state else None
    m = (rng.uniform(0, 1, (B, T)) > 0.3) if mask else None
    return q, k, v, g, beta, s0, m


@pytest.mark.parametrize("dims,gamma4,state,mask", GD)
def test_gated_delta_matches_numpy(rng, dims, gamma4, state, mask):
    q, k, v, g, beta, s0, m = _gd_inputs(rng, dims, gamma4, state, mask)
    a = [mx.array(t.astype(np.float32)) for t in (q, k, v, g, beta)]
    out = mx.fast.gated_delta_update(*a, initial_state=None if s0 is None else mx.array(s0.astype(np.float32)),
                                     mask=None if m is None else mx.array(m))
    assert isinstance(out, list) and len(out) == 2
    y, S = np_gated_delta(q, k, v, g, beta, s0, m)
    assert out[0].shape == y.shape and out[1].shape == S.shape
    assert out[0].dtype == mx.float32 and out[1].dtype == mx.float32
    close(out[0], y, 1e-4)
    close(out[1], S, 1e-4)


def test_gated_delta_dtypes_and_errors(rng):
    q, k, v, g, beta, _, _ = _gd_inputs(rng, (1, 3, 1, 2, 2, 2), False, False, False)
    h = [mx.array(t).astype(mx.float16) for t in (q, k, v, g, beta)]
    y, s = mx.fast.gated_delta_update(*h)
    assert y.dtype == mx.float16 and s.dtype == mx.float32
    y, s = mx.fast.gated_delta_update(*[mx.array(t, dtype=mx.float64) for t in (q, k, v, g, beta)])
    assert y.dtype == mx.float64 and s.dtype == mx.float64
    with pytest.raises(ValueError):
        mx.fast.gated_delta_update(*[mx.array(t) for t in (q, k, v, g[:, :, :1], beta)])
    with pytest.raises(ValueError):
        mx.fast.gated_delta_update(*[mx.array(t) for t in (q, k, v, g, beta)],
                                   initial_state=mx.zeros((1, 2, 2, 3)))


def test_gated_delta_gradient(rng):
    q, k, v, g, beta, s0, _ = _gd_inputs(rng, (1, 3, 1, 2, 2, 2), False, True, False)
    f64 = lambda t: mx.array(t, dtype=mx.float64)  # noqa: E731
    args = [f64(t) for t in (q, k, v, g, beta, s0)]

    def f(q, v):
        y, s = mx.fast.gated_delta_update(q, args[1], v, args[3], args[4], initial_state=args[5])
        return y.sum() + (s * s).sum()

    gq, gv = mx.grad(f, argnums=(0, 1))(args[0], args[2])
    eps = 1e-6
    for arr, grad, idx in ((q, gq, 0), (v, gv, 1)):
        num = np.zeros(arr.size)
        for i in range(arr.size):
            e = np.zeros(arr.size)
            e[i] = eps
            e = e.reshape(arr.shape)
            pa = [f64(q), f64(v)]
            ma = [f64(q), f64(v)]
            pa[idx], ma[idx] = f64(arr + e), f64(arr - e)
            num[i] = (f(*pa).item() - f(*ma).item()) / (2 * eps)
        np.testing.assert_allclose(np.array(grad).reshape(-1), num, rtol=1e-5, atol=1e-7)


# ───────────────────────────── relu2, nn modules, distributed ─────────────────────────────

def test_relu2(rng):
    x = rng.uniform(-3, 3, (4, 7)).astype(np.float32)
    close(nn.relu2(mx.array(x)), np.maximum(x, 0) ** 2, 1e-6)
    close(nn.ReLU2()(mx.array(x)), np.maximum(x, 0) ** 2, 1e-6)
    assert nn.relu2(mx.array(x).astype(mx.float16)).dtype == mx.float16
    g = mx.grad(lambda a: nn.relu2(a).sum())(mx.array(x))
    close(g, 2 * np.maximum(x, 0), 1e-6)


MODULES = ["activations", "base", "containers", "convolution", "convolution_transpose",
           "dropout", "embedding", "linear", "normalization", "pooling", "positional_encoding",
           "upsample"]


def test_nn_layer_modules():
    for name in MODULES:
        mod = getattr(nn, name)
        assert getattr(nn.layers, name) is mod
        assert sys.modules[f"ponte.nn.layers.{name}"] is mod
        for n in mod.__all__:
            assert hasattr(mod, n), (name, n)
    assert nn.linear.Linear is nn.Linear and nn.activations.ReLU2 is nn.ReLU2
    from ponte.nn.layers.linear import Linear  # noqa: F401
    x = mx.array(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    close(nn.upsample.upsample_nearest(x, (2, 2)), np.repeat(np.repeat(np.array(x), 2, 1), 2, 2))


def test_mlx_layer_imports_under_ponte_run():
    """`from mlx.nn.layers.linear import Linear` through ponte.run's aliases (with the
    layer_modules.mlx_aliases() entries)."""
    code = ("import sys, ponte.run as r, ponte.nn.layer_modules as lm; r.install_mlx_alias(); "
            "sys.modules.update(lm.mlx_aliases()); "
            "from mlx.nn.layers.linear import Linear; import mlx.nn as nn; "
            "from mlx.nn.layers.activations import ReLU2; "
            "assert Linear is nn.linear.Linear and ReLU2 is nn.ReLU2; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_distributed_single_process(rng):
    D = mx.distributed
    assert D.is_available() is True and D.is_available("ring") is True  # built in, as in MLX
    g = D.init()
    assert g.rank() == 0 and g.size() == 1
    assert D.init(backend="nccl").size() == 1
    with pytest.raises(RuntimeError):
        D.init(strict=True)
    with pytest.raises(ValueError):
        D.init(backend="foo")
    with pytest.raises(RuntimeError):
        g.split(0)
    x = rng.standard_normal((3, 2)).astype(np.float32)
    for f in (D.all_sum, D.all_max, D.all_min, D.all_gather, D.sum_scatter):
        for kw in ({}, {"group": g}):
            r = f(mx.array(x), **kw)
            assert r.dtype == mx.float32 and r.shape == (3, 2)
            close(r, x, 0)
    assert D.all_sum(mx.array([1, 2], dtype=mx.int32)).dtype == mx.int32
    with pytest.raises(ValueError):
        D.send(mx.array(x), 0)
    with pytest.raises(ValueError):
        D.recv((2, 3), mx.float32, 0)
    with pytest.raises(ValueError):
        D.recv_like(mx.array(x), 0, group=g)
    with pytest.raises(TypeError):
        D.all_sum(mx.array(x), group=3)


def test_average_gradients():
    tree = {"a": mx.ones((2, 3)), "b": [mx.zeros((4,))]}
    assert nn.average_gradients(tree) is tree
    assert nn.average_gradients(tree, group=mx.distributed.init(), all_reduce_size=0) is tree
    from ponte.nn.utils import average_gradients
    assert average_gradients is nn.average_gradients


# ───────────────────────────── differential (MLX) ─────────────────────────────

@needs_mlx
@pytest.mark.parametrize("case", STFT_CASES + [dict(n_fft=8, win_length=0)])
def test_stft_istft_vs_mlx(rng, case):
    x = rng.standard_normal((2, 45)).astype(np.float32)
    kw, _ = _kw(case)
    mkw = dict(kw)
    if "window" in kw:
        mkw["window"] = mlx_core.array(np.array(kw["window"]))
    p, m = mx.fft.stft(mx.array(x), **kw), mlx_core.fft.stft(mlx_core.array(x), **mkw)
    assert p.shape == tuple(m.shape)
    np.testing.assert_allclose(np.array(p), np.array(m), rtol=1e-4, atol=1e-4)
    ikw = {k: v for k, v in kw.items() if k != "pad_mode"}
    imkw = {k: v for k, v in mkw.items() if k != "pad_mode"}
    for length in (None, 30, 60):
        pi = mx.fft.istft(p, **ikw, length=length)
        mi = mlx_core.fft.istft(m, **imkw, length=length)
        assert pi.shape == tuple(mi.shape) and str(pi.dtype).split(".")[-1] == str(mi.dtype).split(".")[-1]
        np.testing.assert_allclose(np.array(pi), np.array(mi), rtol=1e-3, atol=1e-3)


@needs_mlx
def test_fftfreq_vs_mlx():
    for n, d in [(1, 1.0), (6, 0.5), (9, -2.0)]:
        np.testing.assert_allclose(np.array(mx.fft.fftfreq(n, d)), np.array(mlx_core.fft.fftfreq(n, d)),
                                   rtol=1e-6)
        np.testing.assert_allclose(np.array(mx.fft.rfftfreq(n, d)), np.array(mlx_core.fft.rfftfreq(n, d)),
                                   rtol=1e-6)


@needs_mlx
@pytest.mark.parametrize("dims,gamma4,state,mask", GD)
def test_gated_delta_vs_mlx(rng, dims, gamma4, state, mask):
    arrs = [t if t is None else t.astype(np.float32) for t in _gd_inputs(rng, dims, gamma4, state, mask)]
    arrs[6] = None if arrs[6] is None else arrs[6].astype(bool)
    conv = [lambda t, f=f: None if t is None else f(t) for f in (mx.array, mlx_core.array)]
    p = mx.fast.gated_delta_update(*[conv[0](t) for t in arrs])
    m = mlx_core.fast.gated_delta_update(*[conv[1](t) for t in arrs])
    for a, b in zip(p, m):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-4)


@needs_mlx
def test_relu2_and_modules_vs_mlx(rng):
    x = rng.uniform(-3, 3, (5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.array(nn.relu2(mx.array(x))), np.array(mlx_nn.relu2(mlx_core.array(x))),
                               rtol=1e-6)
    for name in MODULES:
        theirs = {n for n in dir(getattr(mlx_nn, name)) if not n.startswith("_")
                  and getattr(getattr(getattr(mlx_nn, name), n), "__module__", "") ==
                  getattr(mlx_nn, name).__name__}
        assert theirs <= set(getattr(nn, name).__all__), (name, theirs - set(getattr(nn, name).__all__))


@needs_mlx
def test_distributed_vs_mlx(rng):
    x = rng.standard_normal((3, 2)).astype(np.float32)
    mg, pg = mlx_core.distributed.init(), mx.distributed.init()
    assert (mg.rank(), mg.size()) == (pg.rank(), pg.size())
    for name in ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter"):
        a = getattr(mx.distributed, name)(mx.array(x))
        b = getattr(mlx_core.distributed, name)(mlx_core.array(x))
        np.testing.assert_array_equal(np.array(a), np.array(b))
    for mod, exc in ((mx, None), (mlx_core, None)):
        with pytest.raises(ValueError):
            mod.distributed.send(mod.array(x), 0)
        with pytest.raises(RuntimeError):
            mod.distributed.init(strict=True)
        with pytest.raises(RuntimeError):
            mod.distributed.init().split(0)
