"""Array-protocol and op edge cases where MLX 0.32.4's own tests found Ponte different, each
checked against numpy / the rule MLX follows and, where MLX is importable, against MLX itself:
operators with operands an array cannot meet, in-place true division of integers, __format__,
0-d and mismatched boolean masks in indexing."""
import numpy as np
import pytest

import ponte as mx

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
except ImportError:
    mlx = None

LIBS = [mx] + ([mlx] if mlx is not None else [])


def outcome(f):
    """("ok", value) or ("raise", exception type) for f()."""
    try:
        r = f()
    except Exception as e:  # noqa: BLE001 - the type is the result
        return ("raise", type(e))
    return ("ok", r.tolist() if hasattr(r, "tolist") else r)


# ───────────────────────────── operators and foreign operands ─────────────────────────────

FOREIGN = ["hello", [1, 2, 3], (1, 2, 3), {1: 2}, object(), range(3)]
ARITH = [
    lambda a, o: a + o, lambda a, o: o + a, lambda a, o: a - o, lambda a, o: a * o,
    lambda a, o: o * a, lambda a, o: a / o, lambda a, o: a // o, lambda a, o: a % o,
    lambda a, o: a ** o, lambda a, o: a & o, lambda a, o: a | o, lambda a, o: a ^ o,
    lambda a, o: a << o, lambda a, o: a >> o, lambda a, o: a < o, lambda a, o: a <= o,
    lambda a, o: a > o, lambda a, o: a >= o, lambda a, o: o < a,
]


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("other", FOREIGN, ids=lambda o: type(o).__name__)
def test_foreign_operands(lib, other):
    a = lib.array([1, 2, 3])
    # an array never equals a list, tuple, string or other object: plain bools, not arrays
    assert (a == other) is False
    assert (a != other) is True
    for op in ARITH:
        with pytest.raises(ValueError):
            op(a, other)
    b = lib.array([1, 2, 3])
    with pytest.raises(ValueError, match="inplace"):
        b += other
    assert b.tolist() == [1, 2, 3]


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_operands_that_still_work(lib):
    a = lib.array([1, 2, 3])
    n = np.array([1, 0, 3], np.int32)
    assert (a == n).tolist() == [True, False, True]
    assert (a < n).tolist() == [False, False, False]
    assert (a + n).tolist() == [2, 2, 6]
    assert (a + 1.5).tolist() == [2.5, 3.5, 4.5]
    assert (a == 2).tolist() == [False, True, False]
    # None stays a TypeError for arithmetic
    with pytest.raises(TypeError):
        a + None
    with pytest.raises(TypeError):
        divmod(a, [1, 2, 3])


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_inplace_true_division_keeps_dtype(lib):
    for dt, v in [(lib.int32, 1), (lib.int32, 1.0), (lib.bool_, 1), (lib.uint8, 2)]:
        a = lib.array([1], dt)
        b = a
        with pytest.raises(ValueError, match="In place division"):
            b /= v
        assert a.dtype == dt and b.dtype == dt
    a = lib.array([2.0, 3.0])
    b = a
    b /= 2
    assert b is a and a.tolist() == [1.0, 1.5]
    # other in-place ops may still promote (MLX: int32 += 1.5 is float32)
    c = lib.array([1])
    c += 1.5
    assert c.dtype == lib.float32 and c.tolist() == [2.5]
    c = lib.array([1], lib.int32)
    c //= 2
    assert c.dtype == lib.int32


# ───────────────────────────── __format__ ─────────────────────────────


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_format(lib, rng):
    x = rng.standard_normal(4).astype(np.float32)
    a = lib.array(x)
    for i in range(4):
        for spec in [".2f", ".1e", ">10.3f", "+.4g", ""]:
            assert format(a[i], spec) == format(float(x[i]), spec)
    assert f"{lib.array(0.35487):.1f}" == "0.4"
    assert f"{lib.array(7):03d}" == "007"
    assert f"{lib.array(True)}" == "True"
    assert f"{lib.array(1 + 2j):.1f}" == "1.0+2.0j"
    assert f"{a}" == str(a)
    for arr in [a, lib.array([3.5])]:
        with pytest.raises(TypeError):
            format(arr, ".2f")


# ───────────────────────────── boolean masks in indexing ─────────────────────────────


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_zero_d_mask_setitem(lib, rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    row = rng.standard_normal(3).astype(np.float32)
    for mask, expect in [(True, True), (False, False), (lib.array(True), True),
                         (lib.array(False), False)]:
        a = lib.array(x)
        a[mask] = 5.0
        np.testing.assert_array_equal(np.array(a), np.full_like(x, 5.0) if expect else x)
        a = lib.array(x)
        a[mask] = lib.array(row)  # broadcast to a
        np.testing.assert_array_equal(np.array(a), np.broadcast_to(row, x.shape) if expect else x)
    a = lib.array(x)
    with pytest.raises(ValueError):
        a[lib.array(True)] = lib.ones((4,))


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_zero_d_mask_setitem_grad(lib):
    def f(x):
        y = x * 1
        y[lib.array(True)] = 2 * x
        return y.sum()
    g = lib.grad(f)(lib.array([1.0, 2.0]))
    assert g.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("shape", [(1, 4, 4), (4, 4, 1), (3,)])
def test_mismatched_mask_setitem_raises(lib, shape):
    for kind in ["numpy", "array", "list"]:
        m = np.zeros(shape, bool)
        m.flat[0] = True
        mask = {"numpy": m, "array": lib.array(m), "list": m.tolist()}[kind]
        a = lib.arange(64).reshape(4, 4, 4)
        with pytest.raises(ValueError):
            a[mask] = 0
        assert a.tolist() == np.arange(64).reshape(4, 4, 4).tolist()


@pytest.mark.parametrize("kind", ["numpy", "array", "list"])
def test_mask_setitem_matches_numpy(rng, kind):
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    m = rng.random((4, 3)) < 0.5
    mask = {"numpy": m, "array": mx.array(m), "list": m.tolist()}[kind]
    a = mx.array(x)
    a[mask] = -1.0
    ref = x.copy()
    ref[m] = -1.0
    np.testing.assert_array_equal(np.array(a), ref)


@pytest.mark.parametrize("shape", [(1, 4, 4), (4, 4, 1), (3,)])
def test_mismatched_mask_getitem_raises(shape):
    # numpy's rule (MLX has no boolean getitem): the mask's shape must match the indexed axes
    m = np.zeros(shape, bool)
    m.flat[0] = True
    with pytest.raises(IndexError):
        np.arange(64).reshape(4, 4, 4)[m]
    for mask in [m, mx.array(m)]:
        with pytest.raises(IndexError):
            mx.arange(64).reshape(4, 4, 4)[mask]
    good = np.zeros((4, 4), bool)
    good[1, 2] = True
    assert mx.arange(64).reshape(4, 4, 4)[good].tolist() == np.arange(64).reshape(4, 4, 4)[good].tolist()


# ───────────────────────────── complex64 logarithms ─────────────────────────────


def complex_sample(rng, n, scale=3.0):
    z = rng.standard_normal(n) * scale + 1j * rng.standard_normal(n) * scale
    z[:6] = [0, -1, 1e-5 + 1e-5j, -1e-4j, 50 + 2j, -3 + 0.5j]
    return z.astype(np.complex64)


def assert_complex_close(got, want, rtol=2e-5, atol=2e-5):
    got, want = np.asarray(got), np.asarray(want)
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol)
    np.testing.assert_array_equal(np.isfinite(got), fin)


@pytest.mark.parametrize("name", ["log2", "log10", "log1p"])
def test_complex_logs_match_numpy(rng, name):
    z = complex_sample(rng, 500)
    got = getattr(mx, name)(mx.array(z))
    assert got.dtype == mx.complex64
    with np.errstate(divide="ignore", invalid="ignore"):
        want = getattr(np, name)(z.astype(np.complex128))
    assert_complex_close(np.array(got), want)
    # near zero log1p keeps its relative accuracy
    small = np.array([1e-6 + 2e-6j, -3e-7j, 1e-8], np.complex64)
    np.testing.assert_allclose(np.array(mx.log1p(mx.array(small))),
                               np.log1p(small.astype(np.complex128)), rtol=1e-5)
    if mlx is not None:
        np.testing.assert_allclose(np.array(got), np.array(getattr(mlx, name)(mlx.array(z))),
                                   rtol=1e-5, atol=1e-5)


def np_clogaddexp(a, b):
    """MLX's complex logaddexp in complex128: hi + log1p(exp(lo - hi)), hi the operand with
    the larger real part (then imaginary)."""
    a, b = np.broadcast_arrays(a.astype(np.complex128), b.astype(np.complex128))
    agt = (a.real > b.real) | ((a.real == b.real) & (a.imag > b.imag))
    hi, lo = np.where(agt, a, b), np.where(agt, b, a)
    return hi + np.log1p(np.exp(lo - hi))


def test_complex_logaddexp(rng):
    a, b = complex_sample(rng, 400, 4.0), complex_sample(rng, 400, 4.0)[::-1].copy()
    got = np.array(mx.logaddexp(mx.array(a), mx.array(b)))
    want = np_clogaddexp(a, b)
    assert_complex_close(got, want)
    # log(e^a + e^b) up to a multiple of 2 pi i
    np.testing.assert_allclose(np.exp(got.astype(np.complex128)), np.exp(a) + np.exp(b),
                               rtol=1e-3, atol=1e-3)
    ninf = np.array([complex(-np.inf, 1.0)], np.complex64)
    assert np.array(mx.logaddexp(mx.array(ninf), mx.array([2 + 3j])))[0] == 2 + 3j
    nan = np.array(mx.logaddexp(mx.array([complex(np.nan, 0)]), mx.array([1 + 0j])))[0]
    assert np.isnan(nan.real) and np.isnan(nan.imag)
    if mlx is not None:
        np.testing.assert_allclose(got, np.array(mlx.logaddexp(mlx.array(a), mlx.array(b))),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
def test_complex_logcumsumexp(rng, reverse, inclusive):
    z = complex_sample(rng, 7 * 9, 2.0).reshape(7, 9)
    got = np.array(mx.logcumsumexp(mx.array(z), axis=1, reverse=reverse, inclusive=inclusive))
    want = np.empty(z.shape, np.complex128)
    for r in range(7):
        row = z[r, ::-1] if reverse else z[r]
        acc = complex(-np.inf, 0)
        out = []
        for v in row:
            if inclusive:
                acc = v if np.isneginf(acc.real) else np_clogaddexp(np.array(acc), np.array(v))[()]
                out.append(acc)
            else:
                out.append(acc)
                acc = v if np.isneginf(acc.real) else np_clogaddexp(np.array(acc), np.array(v))[()]
        want[r] = out[::-1] if reverse else out
    assert_complex_close(got, want, rtol=1e-4, atol=1e-4)
    if mlx is not None:
        ref = mlx.logcumsumexp(mlx.array(z), axis=1, reverse=reverse, inclusive=inclusive)
        np.testing.assert_allclose(got, np.array(ref), rtol=1e-4, atol=1e-4)


def real_loss_grad(f, z, h=1e-3):
    """dL/dx + i dL/dy of L = sum(real(f(z))) by central differences in complex128."""
    g = np.zeros(z.shape, np.complex128)
    for i in np.ndindex(z.shape):
        for step, unit in [(h, 1), (1j * h, 1j)]:
            zp, zm = z.astype(np.complex128), z.astype(np.complex128)
            zp[i] += step
            zm[i] -= step
            g[i] += unit * (f(zp).real.sum() - f(zm).real.sum()) / (2 * h)
    return g


@pytest.mark.parametrize("name", ["log2", "log10", "log1p"])
def test_complex_log_grads(rng, name):
    z = complex_sample(rng, 8)[6:]
    g = mx.grad(lambda x: getattr(mx, name)(x).real.sum())(mx.array(z))
    np.testing.assert_allclose(np.array(g), real_loss_grad(getattr(np, name), z), rtol=1e-3, atol=1e-3)
    if mlx is not None:
        gm = mlx.grad(lambda x: getattr(mlx, name)(x).real.sum())(mlx.array(z))
        np.testing.assert_allclose(np.array(g), np.array(gm), rtol=1e-4, atol=1e-5)


def test_complex_logcumsumexp_grad_and_jvp(rng):
    z = complex_sample(rng, 10, 1.0)[4:]
    w = complex_sample(rng, 6, 1.0)

    def lcse(v):
        return np.log(np.cumsum(np.exp(v)))
    # the convention of log's gradient (dL/dx + i dL/dy); MLX's logcumsumexp vjp gives the
    # conjugate for complex input, so it is not compared here
    g = mx.grad(lambda x: (mx.logcumsumexp(x) * mx.array(w)).real.sum())(mx.array(z))
    np.testing.assert_allclose(np.array(g), real_loss_grad(lambda v: lcse(v) * w, z),
                               rtol=1e-3, atol=1e-3)
    gr = mx.grad(lambda x: mx.logcumsumexp(x, reverse=True).real.sum())(mx.array(z))
    np.testing.assert_allclose(np.array(gr), real_loss_grad(lambda v: lcse(v[::-1])[::-1], z),
                               rtol=1e-3, atol=1e-3)
    t = complex_sample(rng, 6, 1.0)
    _, (jt,) = mx.jvp(mx.logcumsumexp, [mx.array(z)], [mx.array(t)])
    h = 1e-4
    num = (lcse(z.astype(np.complex128) + h * t) - lcse(z.astype(np.complex128) - h * t)) / (2 * h)
    np.testing.assert_allclose(np.array(jt), num, rtol=1e-3, atol=1e-3)


# ───────────────────────────── small edge cases ─────────────────────────────


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_kron_of_empty_raises(lib):
    for a, b in [(lib.array([]), lib.array([1, 2])), (lib.array([1, 2]), lib.zeros((0, 3))),
                 (lib.zeros((2, 0)), lib.ones((1, 3)))]:
        with pytest.raises(ValueError, match="empty"):
            lib.kron(a, b)
    np.testing.assert_array_equal(np.array(lib.kron(lib.array([1, 2]), lib.array([[1], [3]]))),
                                  np.kron([1, 2], [[1], [3]]))


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_put_along_axis_empty_float_indices(lib):
    a = lib.array([], lib.float32)
    r = lib.put_along_axis(a, a, a, axis=None)
    assert r.shape == (0,) and r.dtype == lib.float32
    assert r.tolist() == []
    # non-empty arrays still need integer indices (Ponte: at once; MLX: when evaluated)
    with pytest.raises((ValueError, RuntimeError)):
        lib.eval(lib.put_along_axis(lib.zeros((2, 3)), lib.array([[1.0], [2.0]]),
                                    lib.ones((2, 1)), axis=1))


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
@pytest.mark.parametrize("n", [8, 64, 28 * 8, 12 * 4, 20 * 4])
def test_hadamard_half_rounds_once(rng, dt, n):
    x = rng.standard_normal((5, n)).astype(np.float32)
    xh = mx.array(x).astype(getattr(mx, dt))
    got = mx.hadamard_transform(xh)
    assert got.dtype == getattr(mx, dt)
    # computed in float32 from the half input, rounded once at the end
    want = mx.hadamard_transform(xh.astype(mx.float32)).astype(getattr(mx, dt))
    np.testing.assert_array_equal(np.array(got.astype(mx.float32)), np.array(want.astype(mx.float32)))
    got_s = mx.hadamard_transform(xh, scale=0.25)
    want_s = mx.hadamard_transform(xh.astype(mx.float32), scale=0.25).astype(getattr(mx, dt))
    np.testing.assert_array_equal(np.array(got_s.astype(mx.float32)), np.array(want_s.astype(mx.float32)))
    if mlx is not None:
        ref = mlx.hadamard_transform(mlx.array(x).astype(getattr(mlx, dt))).astype(mlx.float32)
        np.testing.assert_allclose(np.array(got.astype(mx.float32)), np.array(ref),
                                   rtol=2e-2, atol=2e-2)


def np_conv_nd(x, w, stride, padding, dilation, groups):
    """Cross-correlation of x (N, *S, C) with w (O, *K, C/groups), same ints on every axis."""
    nsp = x.ndim - 2
    x = np.pad(x, [(0, 0)] + [(padding, padding)] * nsp + [(0, 0)])
    O, K, Cg = w.shape[0], w.shape[1:-1], w.shape[-1]
    out_sp = [(x.shape[1 + i] - dilation * (K[i] - 1) - 1) // stride + 1 for i in range(nsp)]
    out = np.zeros((x.shape[0], *out_sp, O), np.float64)
    og = O // groups
    for o in np.ndindex(*out_sp):
        for k in np.ndindex(*K):
            pos = tuple(o[i] * stride + k[i] * dilation for i in range(nsp))
            xs = x[(slice(None),) + pos]  # (N, C)
            for g in range(groups):
                wk = w[(slice(g * og, (g + 1) * og),) + k]  # (og, Cg)
                out[(slice(None),) + o + (slice(g * og, (g + 1) * og),)] += \
                    xs[:, g * Cg:(g + 1) * Cg] @ wk.T
    return out


@pytest.mark.parametrize("case", [
    ((1, 5, 5, 2), (2, 3, 3, 1), 1, 0, 1, 2),
    ((2, 6, 7, 3), (4, 3, 2, 3), 2, 1, 1, 1),
    ((1, 5, 5, 5, 2), (2, 3, 3, 3, 2), 1, 1, 2, 1),
])
def test_conv1d_infers_spatial_rank(rng, case):
    xs, ws, stride, padding, dilation, groups = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    got = mx.conv1d(mx.array(x), mx.array(w), stride=stride, padding=padding, dilation=dilation,
                    groups=groups)
    want = np_conv_nd(x, w, stride, padding, dilation, groups)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-4, atol=1e-4)
    if mlx is not None:
        ref = mlx.conv1d(mlx.array(x), mlx.array(w), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
        np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
def test_conv1d_rank_errors_and_transpose(lib, rng):
    with pytest.raises(ValueError, match="1-3 spatial"):
        lib.conv1d(lib.zeros((5, 2)), lib.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="1-3 spatial"):
        lib.conv1d(lib.zeros((1, 3, 3, 3, 3, 2)), lib.zeros((2, 2, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="weight"):
        lib.conv1d(lib.zeros((1, 5, 5, 2)), lib.zeros((2, 3, 2)))
    with pytest.raises(ValueError):
        lib.conv2d(lib.zeros((1, 5, 2)), lib.zeros((2, 3, 2)))
    # conv_transpose1d on a 4-d input: a 2-d transposed convolution with the ints on both axes
    # (square kernel: MLX 0.32.4 pads every axis by the first kernel extent here)
    x = rng.standard_normal((1, 4, 5, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    got = lib.conv_transpose1d(lib.array(x), lib.array(w), stride=2, padding=1, output_padding=1)
    want = lib.conv_transpose2d(lib.array(x), lib.array(w), stride=(2, 2), padding=(1, 1),
                                output_padding=(1, 1))
    assert got.shape == want.shape == (1, 8, 10, 3)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lib", LIBS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("mode", ["mxfp4", "mxfp8", "nvfp4"])
def test_grad_wrt_fp_scales_raises(lib, mode):
    x = lib.random.normal(shape=(2, 64))
    w = lib.random.normal(shape=(64, 64))
    wq, s = lib.quantize(w, mode=mode)[:2]
    with pytest.raises(ValueError):
        lib.grad(lambda s: lib.quantized_matmul(x, wq, s, mode=mode).sum())(s)
    with pytest.raises(ValueError):
        lib.grad(lambda s: lib.gather_qmm(x, wq, s, rhs_indices=lib.array(0), mode=mode).sum())(s)
    # the input's gradient is unaffected
    gx = lib.grad(lambda x: lib.quantized_matmul(x, wq, s, mode=mode).sum())(x)
    ref = lib.dequantize(wq, s, mode=mode).astype(lib.float32).sum(0)
    np.testing.assert_allclose(np.array(gx), np.broadcast_to(np.array(ref), (2, 64)),
                               rtol=1e-2, atol=0.1)  # (dequantize rounds to its dtype)


def test_integer_input_gradients_stay_zero():
    # Ponte's rule (deliberately not MLX's): an integer primal gets a zero gradient
    x = mx.array([1.0, 2.0, 3.0])
    for f in [lambda i: (i * x).sum(), lambda i: mx.take(x, i).sum(),
              lambda i: (i.astype(mx.float32) * 2).sum()]:
        g = mx.grad(f)(mx.array([1]))
        assert g.dtype == mx.int32 and g.tolist() == [0]
    w = mx.random.normal(shape=(64, 64))
    wq, s, b = mx.quantize(w)
    # affine: the float scales still get their gradient
    gs = mx.grad(lambda s: mx.quantized_matmul(mx.ones((1, 64)), wq, s, b).sum())(s)
    assert gs.shape == s.shape and float(mx.abs(gs).sum()) > 0


@pytest.mark.parametrize("reverse", [False, True])
def test_complex_logcumsumexp_long_line(rng, reverse):
    # long lines take the GPU's block-parallel scan, whose association can land the imaginary
    # part on another branch (a multiple of 2 pi away): the real part and the phase must agree
    z = (rng.standard_normal((3, 5000)) + 1j * rng.standard_normal((3, 5000))).astype(np.complex64)
    got = np.array(mx.logcumsumexp(mx.array(z), axis=1, reverse=reverse)).astype(np.complex128)
    zz = z[:, ::-1] if reverse else z
    want = np.log(np.cumsum(np.exp(zz.astype(np.complex128)), axis=1))
    want = want[:, ::-1] if reverse else want
    np.testing.assert_allclose(got.real, want.real, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.exp(1j * got.imag), np.exp(1j * want.imag), rtol=0, atol=1e-3)
