"""ponte.core.fft (mlx.core.fft) against numpy.fft on random data: the 14 functions with n / s /
axes variants, views, dtypes, long and prime lengths, errors, and gradients through mx.grad
against numpy references of the transforms' exact derivatives."""
import time

import numpy as np
import pytest

import ponte as mx


def crand(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def close(got, want, tol=3e-6):
    """Norm-wise relative error (max |got - want| / max |want|), what FFT rounding bounds."""
    got = np.array(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
    assert err <= tol, err


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 12, 16, 17, 30, 64, 67, 97, 100, 243, 256, 1000, 1031])
def test_fft_ifft_lengths(rng, n):
    a = crand(rng, (3, n))
    close(mx.fft.fft(mx.array(a)), np.fft.fft(a.astype(np.complex128)))
    close(mx.fft.ifft(mx.array(a)), np.fft.ifft(a.astype(np.complex128)))
    r = a.real.copy()
    close(mx.fft.rfft(mx.array(r)), np.fft.rfft(r.astype(np.float64)))
    h = np.fft.rfft(r.astype(np.float64)).astype(np.complex64)
    close(mx.fft.irfft(mx.array(h), n=n), np.fft.irfft(h, n=n))


@pytest.mark.parametrize("n", [65536, 65521, 3 ** 10])
def test_long_lengths(rng, n):
    a = crand(rng, (n,))
    want = np.fft.fft(a.astype(np.complex128))
    # |X_k| ~ sqrt(n) for unit data: error relative to the spectrum's norm scale
    err = np.max(np.abs(np.array(mx.fft.fft(mx.array(a))) - want)) / np.sqrt(n)
    assert err < 2e-6, err


@pytest.mark.parametrize("fn", ["fft", "ifft", "rfft", "irfft"])
@pytest.mark.parametrize("axis", [0, 1, -1, -3])
@pytest.mark.parametrize("n", [None, 1, 4, 11])
def test_1d_axis_n(rng, fn, axis, n):
    a = crand(rng, (4, 6, 5))
    x = a.real.copy() if fn == "rfft" else a
    got = getattr(mx.fft, fn)(mx.array(x), n=n, axis=axis)
    want = getattr(np.fft, fn)(x.astype(np.complex128 if fn != "rfft" else np.float64), n=n, axis=axis)
    close(got, want)
    assert got.dtype == (mx.float32 if fn == "irfft" else mx.complex64)


ND = ["fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn", "rfftn", "irfftn"]


@pytest.mark.parametrize("op", ND)
@pytest.mark.parametrize("axes,s", [(None, None), ((1, 2), None), ((2, 1), None), ((0, 2), None),
                                    ((1, 2), (10, 5)), ((2, 0), (5, 10)), ((0, 1), (3, 7))])
def test_nd(rng, op, axes, s):
    a = crand(rng, (6, 8, 7))
    r = a.real.copy()
    x = r if op in ("rfft2", "rfftn") else a
    if op.startswith("irfft"):
        x = np.fft.rfftn(r, axes=axes if axes is not None else (None if op == "irfftn" else (-2, -1)))
        x = np.ascontiguousarray(x).astype(np.complex64)
    kw = {}
    if axes is not None:
        kw["axes"] = axes
    if s is not None:
        kw["s"] = s
    got = getattr(mx.fft, op)(mx.array(x), **kw)
    want = getattr(np.fft, op)(x.astype(np.float64 if op in ("rfft2", "rfftn") else np.complex128), **kw)
    close(got, want)


def test_views(rng):
    a = crand(rng, (8, 10, 6))
    m = mx.array(a)
    close(mx.fft.fftn(mx.transpose(m, (1, 2, 0)), axes=(2, 0)),
          np.fft.fftn(np.transpose(a, (1, 2, 0)).astype(np.complex128), axes=(2, 0)))
    close(mx.fft.fft(m[:, ::2, 1::2]), np.fft.fft(a[:, ::2, 1::2].astype(np.complex128)))
    r = a.real.copy()
    close(mx.fft.rfft2(mx.array(r)[::2].T), np.fft.rfft2(r[::2].T.astype(np.float64)))
    h = np.fft.rfftn(r).astype(np.complex64)
    close(mx.fft.irfftn(mx.array(h)[:, ::-1]), np.fft.irfftn(h[:, ::-1]))
    b = np.broadcast_to(a[:1], (4, 10, 6))
    close(mx.fft.fft(mx.broadcast_to(m[:1], (4, 10, 6)), axis=0), np.fft.fft(b.astype(np.complex128), axis=0))


@pytest.mark.parametrize("dtype", [mx.float32, mx.float64, mx.int32, mx.float16, mx.complex64])
def test_dtypes(rng, dtype):
    x = np.round(rng.standard_normal((5, 9)) * 4)
    m = mx.array(x).astype(dtype)
    got = mx.fft.fft(m)
    assert got.dtype == mx.complex64  # no complex128: float64 gives complex64 too
    close(got, np.fft.fft(x))
    assert mx.fft.rfft(m).dtype == mx.complex64 and mx.fft.irfft(m).dtype == mx.float32
    close(mx.fft.irfft(m), np.fft.irfft(x))


def test_rfft_of_complex_drops_imag(rng):
    a = crand(rng, (3, 8))
    close(mx.fft.rfft(mx.array(a)), np.fft.rfft(a.real.astype(np.float64)))


@pytest.mark.parametrize("fn", ["fftshift", "ifftshift"])
def test_shifts(rng, fn):
    for shape in [(100,), (4, 6), (5, 7)]:
        r = rng.standard_normal(shape).astype(np.float32)
        for axes in [None, 0, -1, [0], (0, -1)[: len(shape)]]:
            got = getattr(mx.fft, fn)(mx.array(r), axes=axes)
            np.testing.assert_array_equal(np.array(got), getattr(np.fft, fn)(r, axes=axes))
            assert got.dtype == mx.float32
    c = crand(rng, (8, 8))
    np.testing.assert_array_equal(np.array(getattr(mx.fft, fn)(mx.array(c))), getattr(np.fft, fn)(c))
    e = mx.array(np.zeros((0,), np.float32))
    assert getattr(mx.fft, fn)(e).shape == (0,)


def test_errors(rng):
    x = mx.array(rng.standard_normal((4, 4)).astype(np.float32))
    with pytest.raises(ValueError):
        mx.fft.irfftn(mx.array(3.0))
    with pytest.raises(ValueError):
        mx.fft.fft(mx.array(3.0))
    with pytest.raises(ValueError):
        mx.fft.fft(x, axis=2)
    with pytest.raises(ValueError):
        mx.fft.rfft(x, axis=-3)
    with pytest.raises(ValueError):
        mx.fft.fft(x, n=0)
    with pytest.raises(ValueError):
        mx.fft.ifft(x, n=-3)
    with pytest.raises(ValueError):
        mx.fft.fftn(x, s=(4, 0), axes=(0, 1))
    with pytest.raises(ValueError):
        mx.fft.fft2(x, axes=(1, 1))
    with pytest.raises(ValueError):
        mx.fft.fftn(x, axes=(0, -2))
    with pytest.raises(ValueError):
        mx.fft.fftn(x, s=(4, 4))  # MLX: s needs axes
    with pytest.raises(ValueError):
        mx.fft.fft2(x, s=(4, 4), axes=None)
    with pytest.raises(ValueError):
        mx.fft.rfftn(x, s=(4, 4, 4), axes=(0, 1))
    with pytest.raises(ValueError):
        mx.fft.irfft(mx.array(np.zeros((3, 1), np.complex64)))  # n = 2 * (1 - 1) = 0
    with pytest.raises(ValueError):
        mx.fft.fftshift(x, axes=[2])
    with pytest.raises(ValueError):
        mx.fft.ifftshift(x, axes=[-3])
    with pytest.raises(TypeError):
        mx.fft.fft(x, n=2.5)
    # empty axes: the input back
    np.testing.assert_array_equal(np.array(mx.fft.fftn(x, axes=[])), np.array(x))


# ── gradients: the transforms are real-linear; with MLX's convention a complex input's
# cotangent is dL/dRe + i dL/dIm (checked against MLX 0.32.4). For a linear loss L(x) = sum(w * view(f(x))) the numpy
# reference is L at each unit input (and i times it). ──

def linear_grad_ref(f_np, loss_np, x):
    g = np.zeros(x.shape, np.complex128 if np.iscomplexobj(x) else np.float64)
    for idx in np.ndindex(x.shape):
        e = np.zeros(x.shape, g.dtype)
        e[idx] = 1
        g[idx] = loss_np(f_np(e))
        if np.iscomplexobj(x):
            e[idx] = 1j
            g[idx] += 1j * loss_np(f_np(e))
    return g


CASES = [
    ("fft", {"axis": 1}, False), ("ifft", {"axis": 0, "n": 5}, False),
    ("fft2", {}, False), ("ifftn", {"axes": (1, 0), "s": (3, 7)}, False),
    ("rfft", {}, True), ("rfft", {"n": 9}, True), ("rfftn", {"axes": (1, 0)}, True),
    ("irfft", {}, False), ("irfft", {"n": 7}, False), ("irfft2", {}, False),
    ("irfftn", {"axes": (1, 0), "s": (4, 5)}, False),
]


@pytest.mark.parametrize("name,kw,real_in", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_grad_linear(rng, name, kw, real_in):
    x = rng.standard_normal((4, 6)).astype(np.float32) if real_in else crand(rng, (4, 6))
    f_np = lambda v: getattr(np.fft, name)(v, **kw)
    y = f_np(x.astype(np.float64 if real_in else np.complex128))
    w1, w2 = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    loss_np = lambda yy: np.sum(w1 * yy.real + w2 * yy.imag)
    W1, W2 = mx.array(w1.astype(np.float32)), mx.array(w2.astype(np.float32))

    def loss(v):
        out = getattr(mx.fft, name)(v, **kw)
        if out.dtype == mx.float32:
            return mx.sum(W1 * out)
        return mx.sum(W1 * mx.real(out) + W2 * mx.imag(out))

    g = mx.grad(loss)(mx.array(x))
    want = linear_grad_ref(f_np, loss_np, x.astype(np.float64 if real_in else np.complex128))
    close(g, want, 2e-5)


def test_grad_circular_convolution(rng):
    """A quadratic loss through rfft and irfft against numpy finite differences."""
    n = 9
    x = rng.standard_normal(n)
    h = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    H = mx.array(h.astype(np.complex64))
    loss = lambda v: mx.sum(mx.fft.irfft(mx.fft.rfft(v) * H, n=n) ** 2)
    loss_np = lambda v: np.sum(np.fft.irfft(np.fft.rfft(v) * h, n=n) ** 2)
    g = np.array(mx.grad(loss)(mx.array(x.astype(np.float32))))
    eps = 1e-6
    fd = np.array([(loss_np(x + eps * e) - loss_np(x - eps * e)) / (2 * eps) for e in np.eye(n)])
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-4)


def test_vmap_and_jvp(rng):
    a = crand(rng, (3, 8, 6))
    m = mx.array(a)
    for fn, axes in [(mx.fft.fftn, (-1,)), (mx.fft.ifftn, (0,)), (mx.fft.fftn, (-2, -1))]:
        f = lambda v: fn(v, axes=axes)
        out = mx.vmap(f)(m)
        close(out, np.stack([np.array(f(m[i])) for i in range(3)]), 1e-6)
        t = crand(rng, a.shape)
        _, jv = mx.jvp(f, [m], [mx.array(t)])
        close(jv[0], np.array(f(mx.array(t))), 1e-6)
    r = a.real.copy()
    out = mx.vmap(lambda v: mx.fft.rfftn(v, axes=(0,)), in_axes=1)(mx.array(r))
    close(out, np.stack([np.fft.rfft(r[:, i], axis=0) for i in range(8)]))


def test_speed_vs_numpy(rng):
    """Not a limit: prints the 2^20-point complex FFT time next to numpy's (pocketfft)."""
    a = crand(rng, (1 << 20,))
    m = mx.array(a)
    mx.eval(mx.fft.fft(m))
    t0 = time.perf_counter()
    for _ in range(3):
        mx.eval(mx.fft.fft(m))
    tp = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        np.fft.fft(a)
    tn = (time.perf_counter() - t0) / 3
    flops = 5 * (1 << 20) * 20
    print(f"\nfft 2^20 complex64: ponte {tp * 1e3:.1f} ms ({flops / tp / 1e9:.2f} GFLOP/s), "
          f"numpy {tn * 1e3:.1f} ms ({flops / tn / 1e9:.2f} GFLOP/s)")
