"""mlx.core extras: can_cast, to_fp8/from_fp8, unique, linalg.det/slogdet,
matrix_norm, fast.cross_entropy, ThreadLocalStream and ArrayIterator — against numpy float64
references on random data, and (when MLX is importable) against MLX itself: values, bits,
dtypes, shapes and error types."""
import threading

import numpy as np
import pytest

import ponte as mx

try:
    import mlx.core as mlx
except ImportError:  # the differential part skips
    mlx = None
needs_mlx = pytest.mark.skipif(mlx is None, reason="MLX is not installed")

FLOATS = ["float16", "bfloat16", "float32", "float64"]


def f64(a):
    """A Ponte or MLX array as a float64 numpy array (bfloat16 through float32)."""
    if dname(a.dtype) == "bfloat16":
        a = a.astype(mx.float32 if isinstance(a, mx.array) else mlx.float32)
    return np.array(a).astype(np.float64)


def dname(dt):
    return str(dt).split(".")[-1]


# ───────────────────────────── numpy references ─────────────────────────────

def fp8_values():
    """The 256 e4m3 values (0x7f and 0xff NaN), computed from the bit fields."""
    c = np.arange(256)
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where(s == 1, -v, v)
    v[(c & 0x7F) == 0x7F] = np.nan
    return v


def fp8_codes(x):
    """Nearest finite code (ties to the even code), saturating above 448; the sign kept."""
    x = np.asarray(x, np.float64)
    vals = fp8_values()[:0x7F]
    a = np.abs(x)
    d = np.abs(vals[None, :] - np.where(np.isfinite(a), a, 0)[:, None])
    best = d.min(axis=1, keepdims=True)
    cand = np.where(d == best, np.arange(0x7F)[None, :], 1000)
    even = np.where(cand % 2 == 0, cand, 1000).min(axis=1)
    code = np.where(even < 1000, even, cand.min(axis=1))
    code = np.where(a <= 448, code, 0x7E)
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def np_unique(x, size, fill=None):
    flat = np.asarray(x).reshape(-1)
    perm = np.argsort(flat, kind="stable")
    s = flat[perm]
    new = np.ones(len(s), bool)
    new[1:] = s[1:] != s[:-1]
    gid = np.cumsum(new) - 1
    u = int(gid[-1]) + 1
    firsts = perm[new]
    vals, idx, counts = flat[firsts], firsts, np.bincount(gid, minlength=u)
    pad = max(0, size - u)
    idx = np.concatenate([idx[:size], np.full(pad, idx[0])]).astype(np.uint32)
    vals = np.concatenate([vals[:size], np.full(pad, vals[0] if fill is None else fill, flat.dtype)])
    counts = np.concatenate([counts[:size], np.zeros(pad, int)]).astype(np.int32)
    inv = np.empty(len(flat), np.int64)
    inv[perm] = gid
    inv = np.minimum(inv, max(size - 1, 0)).astype(np.uint32).reshape(np.shape(x))
    return vals, idx, inv, counts


def np_cross_entropy(logits, targets):
    lg = logits.astype(np.float64)
    m = lg.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(lg - m).sum(-1, keepdims=True)))[..., 0]
    return lse - np.take_along_axis(lg, targets[..., None].astype(np.int64), -1)[..., 0]


# ───────────────────────────── can_cast ─────────────────────────────

ALL = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
       "float16", "bfloat16", "float32", "float64", "complex64"]


def test_can_cast_is_promotion():
    for a in ALL:
        for b in ALL:
            da, db = getattr(mx, a), getattr(mx, b)
            promoted = (mx.zeros((1,), da) + mx.zeros((1,), db)).dtype
            assert mx.can_cast(da, db) == (promoted == db), (a, b)
    assert mx.can_cast(mx.array([1], mx.int8), mx.int16)
    assert not mx.can_cast(from_=mx.int16, to=mx.int8)
    with pytest.raises(ValueError):
        mx.can_cast(1, mx.int32)
    with pytest.raises(TypeError):
        mx.can_cast(mx.float32, mx.array([1.0]))


# ───────────────────────────── fp8 ─────────────────────────────

@pytest.mark.parametrize("dt", FLOATS)
def test_from_fp8_all_codes(dt):
    codes = mx.array(np.arange(256, dtype=np.uint8).reshape(16, 16))
    y = mx.from_fp8(codes, getattr(mx, dt))
    assert y.dtype == getattr(mx, dt) and y.shape == (16, 16)
    np.testing.assert_array_equal(f64(y).reshape(-1), fp8_values())
    assert mx.from_fp8(codes).dtype == mx.bfloat16


@pytest.mark.parametrize("dt", FLOATS)
def test_to_fp8_random_and_special(dt, rng):
    x = rng.standard_normal(5000) * 2.0 ** rng.integers(-14, 11, 5000)
    v = fp8_values()
    mids = (v[:0x7E] + v[1:0x7F]) / 2  # the ties between neighbouring codes
    x = np.concatenate([x, v[np.isfinite(v)], mids, -mids,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 448, 449, 464, 470, 480, 1e9]])
    a = mx.array(x.astype(np.float32)).astype(getattr(mx, dt))
    y = mx.to_fp8(a)
    assert y.dtype == mx.uint8 and y.shape == a.shape
    np.testing.assert_array_equal(np.array(y), fp8_codes(f64(a)))
    # batched and strided, under vmap and compile (one lazy ToFP8 node)
    b = a[:4096].reshape(4, 32, 32)
    want = np.array(mx.to_fp8(b))
    np.testing.assert_array_equal(np.array(mx.to_fp8(b.transpose(2, 0, 1))), want.transpose(2, 0, 1))
    np.testing.assert_array_equal(np.array(mx.vmap(mx.to_fp8, in_axes=1)(b)), want.transpose(1, 0, 2))
    np.testing.assert_array_equal(np.array(mx.compile(mx.to_fp8)(b)), want)


def test_fp8_errors():
    with pytest.raises(ValueError):
        mx.to_fp8(mx.array([1, 2]))
    with pytest.raises(ValueError):
        mx.from_fp8(mx.array([1.0]))
    with pytest.raises(ValueError):
        mx.from_fp8(mx.array([1], mx.uint8), mx.int32)


# ───────────────────────────── unique ─────────────────────────────

@pytest.mark.parametrize("shape", [(9,), (4, 5), (2, 3, 4), ()])
@pytest.mark.parametrize("dt", ["int32", "float32", "int64", "float16"])
def test_unique_vs_numpy(shape, dt, rng):
    x = rng.integers(-4, 5, shape).astype(np.float64)
    a = mx.array(x).astype(getattr(mx, dt))
    xn = np.array(a)
    nu = len(np.unique(xn))
    for size in sorted({0, 1, max(nu - 1, 1), nu, nu + 3}):
        for fill in [None, 7]:
            got = mx.unique(a, size, True, True, True, fill_value=fill)
            ref = np_unique(xn, size, fill)
            for g, r, want in zip(got, ref, [a.dtype, mx.uint32, mx.uint32, mx.int32]):
                assert g.dtype == want and g.shape == r.shape
                np.testing.assert_array_equal(np.array(g), r)


def test_unique_return_forms_and_errors():
    a = mx.array([2, 1, 2, 3, 1])
    v = mx.unique(a, 3)
    assert isinstance(v, mx.array) and v.tolist() == [1, 2, 3]
    assert mx.unique(a, 5).tolist() == [1, 2, 3, 1, 1]
    v, idx = mx.unique(a, 3, return_index=True)
    assert idx.tolist() == [1, 0, 3]
    v, counts = mx.unique(a, size=4, return_counts=True)
    assert counts.tolist() == [2, 2, 1, 0]
    v, inv = mx.unique(a, 4, return_inverse=True)
    assert inv.tolist() == [1, 0, 1, 2, 0]
    assert mx.unique(a, 6, fill_value=2.5).tolist() == [1, 2, 3, 2, 2, 2]
    assert mx.unique(a, 5, fill_value=mx.array(9, mx.int16)).dtype == mx.int32
    with pytest.raises(ValueError):
        mx.unique(a, -1)
    with pytest.raises(TypeError):
        mx.unique(a, 2.0)
    with pytest.raises(TypeError):
        mx.unique(a)
    with pytest.raises(ValueError):
        mx.unique(a, 3, fill_value=mx.array([9, 8]))
    with pytest.raises(ValueError):
        mx.unique(mx.array([], mx.float32), 2)
    with pytest.raises(ValueError):
        mx.unique(mx.array([3, 1], mx.uint8), 3, fill_value=-1)


def test_unique_gradient_goes_to_first_occurrences():
    g = mx.grad(lambda x: (mx.unique(x, 4) * mx.array([1.0, 2, 3, 4])).sum())(mx.array([2.0, 1, 2, 5]))
    np.testing.assert_array_equal(np.array(g), [2, 5, 0, 3])


# ───────────────────────────── det, slogdet, matrix_norm ─────────────────────────────

@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (5, 5), (4, 2, 2), (2, 3, 6, 6)])
@pytest.mark.parametrize("dt", FLOATS)
def test_det_slogdet_vs_numpy(shape, dt, rng):
    a = mx.array(rng.uniform(-2, 2, shape)).astype(getattr(mx, dt))
    an = f64(a)
    rt = {"float64": 1e-10, "float32": 1e-4}.get(dt, 3e-2)
    d = mx.linalg.det(a)
    s, ld = mx.linalg.slogdet(a)
    sn, ldn = np.linalg.slogdet(an)
    for r in (d, s, ld):
        assert r.dtype == a.dtype and r.shape == shape[:-2]
    np.testing.assert_allclose(f64(d), np.linalg.det(an), rtol=rt, atol=rt * 1e-3)
    np.testing.assert_array_equal(f64(s), sn)
    np.testing.assert_allclose(f64(ld), ldn, rtol=rt, atol=rt)


def test_det_singular_int_empty_errors():
    a = mx.array([[[1.0, 2], [2, 4]], [[0, 0], [0, 0]], [[1, 2], [3, 4]]])
    np.testing.assert_allclose(np.array(mx.linalg.det(a)), [0, 0, -2], rtol=1e-6)
    s, ld = mx.linalg.slogdet(a)
    assert s.tolist() == [0, 0, -1] and ld.tolist()[:2] == [-np.inf, -np.inf]
    assert mx.linalg.det(mx.array([[1, 2], [3, 4]])).dtype == mx.float32
    assert mx.linalg.det(mx.zeros((0, 0))).item() == 1.0
    s, ld = mx.linalg.slogdet(mx.zeros((2, 0, 0)))
    assert s.tolist() == [1, 1] and ld.tolist() == [0, 0]
    for bad in [mx.array([1.0, 2]), mx.ones((2, 3)), mx.ones((2, 2), mx.complex64)]:
        with pytest.raises(ValueError):
            mx.linalg.det(bad)
        with pytest.raises(ValueError):
            mx.linalg.slogdet(bad)


def test_det_gradients_finite_differences(rng):
    a = rng.uniform(-1, 1, (3, 3))
    for f in [lambda m: mx.linalg.det(m), lambda m: mx.linalg.slogdet(m)[1]]:
        g = np.array(mx.grad(f)(mx.array(a, mx.float64)))
        fd = np.zeros_like(a)
        for i in range(3):
            for j in range(3):
                e = np.zeros_like(a)
                e[i, j] = 1e-6
                fd[i, j] = (f(mx.array(a + e, mx.float64)).item() - f(mx.array(a - e, mx.float64)).item()) / 2e-6
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)
    # analytic: d det / dA = det A^-T
    g = np.array(mx.grad(mx.linalg.det)(mx.array(a, mx.float64)))
    np.testing.assert_allclose(g, np.linalg.det(a) * np.linalg.inv(a).T, rtol=1e-8)


def test_matrix_norm_is_linalg_norm():
    assert mx.matrix_norm is mx.linalg.norm


# ───────────────────────────── cross_entropy ─────────────────────────────

@pytest.mark.parametrize("shape", [(7,), (4, 10), (2, 3, 33)])
@pytest.mark.parametrize("dt", FLOATS)
def test_cross_entropy_vs_numpy(shape, dt, rng):
    lg = mx.array(rng.uniform(-6, 6, shape)).astype(getattr(mx, dt))
    t = rng.integers(0, shape[-1], shape[:-1])
    y = mx.fast.cross_entropy(lg, mx.array(t, mx.int32))
    assert y.dtype == mx.float32 and y.shape == shape[:-1]
    np.testing.assert_allclose(f64(y), np_cross_entropy(f64(lg), t), rtol=1e-5, atol=1e-5)
    # the gradient keeps the logits' dtype: softmax - onehot
    g = mx.grad(lambda x: mx.fast.cross_entropy(x, mx.array(t, mx.uint8)).sum())(lg)
    assert g.dtype == lg.dtype
    ln = f64(lg)
    sm = np.exp(ln - ln.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    oh = np.eye(shape[-1])[t]
    np.testing.assert_allclose(f64(g), sm - oh, atol={"float16": 2e-3, "bfloat16": 1e-2}.get(dt, 1e-6))


def test_cross_entropy_errors():
    lg = mx.zeros((2, 3))
    for logits, targets in [(mx.array(1.0), mx.array(1)), (mx.zeros((2, 3), mx.int32), mx.array([0, 1])),
                            (lg, mx.array([0.0, 1.0])), (lg, mx.array([True, False])),
                            (lg, mx.array([2, 0, 1])), (lg, mx.array([[2], [0]])), (lg, mx.array(1)),
                            (mx.zeros((2, 0)), mx.array([0, 0]))]:
        with pytest.raises(ValueError):
            mx.fast.cross_entropy(logits, targets)


# ───────────────────────────── types ─────────────────────────────

def test_thread_local_stream():
    s = mx.new_thread_local_stream(mx.cpu)
    s2 = mx.new_thread_local_stream(mx.DeviceType.cpu)
    assert type(s) is mx.ThreadLocalStream and mx.ThreadLocalStream.__name__ == "ThreadLocalStream"
    assert repr(s).startswith("ThreadLocalStream(Device(cpu, 0), ") and str(s) == repr(s)
    n1, n2 = int(repr(s)[:-1].split(", ")[-1]), int(repr(s2)[:-1].split(", ")[-1])
    assert n2 == n1 + 1
    assert s.device == mx.cpu
    assert s == s and s != s2 and s != mx.default_stream(mx.cpu)
    assert len({s, s2, s}) == 2
    with pytest.raises(TypeError):
        mx.ThreadLocalStream()
    with pytest.raises(TypeError):
        mx.new_thread_local_stream("cpu")
    with pytest.raises(TypeError):
        s < s2  # noqa: B015
    # usable as a stream, from any thread
    assert mx.add(mx.array(1), 1, stream=s).item() == 2
    with mx.stream(s):
        assert (mx.array([1, 2]) * 2).tolist() == [2, 4]
    out = []
    th = threading.Thread(target=lambda: out.append(mx.multiply(mx.array(3), 2, stream=s).item()))
    th.start()
    th.join()
    assert out == [6]


def test_array_iterator():
    a = mx.array([[1, 2], [3, 4], [5, 6]])
    it = iter(a)
    assert isinstance(it, mx.ArrayIterator) and iter(it) is it
    assert [r.tolist() for r in it] == [[1, 2], [3, 4], [5, 6]]
    with pytest.raises(StopIteration):
        next(it)
    assert [x.item() for x in mx.array([7, 8])] == [7, 8]
    with pytest.raises(TypeError):
        iter(mx.array(1))
    with pytest.raises(TypeError):
        mx.ArrayIterator()


# ───────────────────────────── differential against MLX ─────────────────────────────

def both(x, dt=None):
    m, p = mlx.array(x), mx.array(x)
    if dt:
        m, p = m.astype(getattr(mlx, dt)), p.astype(getattr(mx, dt))
    return m, p


def same(m, p, exact=False, rtol=1e-5, atol=1e-6):
    assert dname(m.dtype) == dname(p.dtype), (m.dtype, p.dtype)
    assert tuple(m.shape) == tuple(p.shape)
    a, b = f64(m), f64(p)
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def same_error(fm, fp):
    try:
        fm()
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            fp()
        return
    fp()


@needs_mlx
def test_mlx_can_cast():
    for a in ALL:
        for b in ALL:
            assert mlx.can_cast(getattr(mlx, a), getattr(mlx, b)) == mx.can_cast(getattr(mx, a), getattr(mx, b))
    same_error(lambda: mlx.can_cast(1, mlx.int32), lambda: mx.can_cast(1, mx.int32))
    same_error(lambda: mlx.can_cast(mlx.int8, mlx.array([1])), lambda: mx.can_cast(mx.int8, mx.array([1])))


@needs_mlx
@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16"])
def test_mlx_fp8_bits(dt, rng):
    codes = np.arange(256, dtype=np.uint8)
    m, p = both(codes)
    same(mlx.from_fp8(m, getattr(mlx, dt)), mx.from_fp8(p, getattr(mx, dt)), exact=True)
    same(mlx.from_fp8(m), mx.from_fp8(p), exact=True)
    x = rng.standard_normal(20000) * 2.0 ** rng.integers(-16, 12, 20000)
    v = fp8_values()
    mids = (v[:0x7E] + v[1:0x7F]) / 2
    x = np.concatenate([x, mids, -mids, np.nextafter(mids, 0), np.nextafter(mids, 1e9), v[np.isfinite(v)],
                        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 448, 449, 460, 464, 470, 480, 1e-9, 1e9]])
    m = mlx.array(x.astype(np.float32)).astype(getattr(mlx, dt))
    # the same bits on both sides (the casts differ in the sign they give a NaN)
    bits = np.array(m.view(mlx.uint16 if dt != "float32" else mlx.uint32))
    p = mx.array(bits).view(getattr(mx, dt))
    same(mlx.to_fp8(m), mx.to_fp8(p), exact=True)
    np.testing.assert_array_equal(np.array(mlx.to_fp8(m)), np.array(mx.to_fp8(p)))
    same_error(lambda: mlx.to_fp8(mlx.array([1])), lambda: mx.to_fp8(mx.array([1])))
    same_error(lambda: mlx.from_fp8(mlx.array([1.0])), lambda: mx.from_fp8(mx.array([1.0])))
    same_error(lambda: mlx.from_fp8(mlx.array([1], mlx.uint8), mlx.int32),
               lambda: mx.from_fp8(mx.array([1], mx.uint8), mx.int32))


@needs_mlx
def test_mlx_fp8_not_differentiable_alike():
    """MLX has no vjp for ToFP8/FromFP8; the uint8 side carries no gradient here either."""
    gm = mlx.grad(lambda x: mlx.from_fp8(mlx.to_fp8(x), mlx.float32).sum())
    gp = mx.grad(lambda x: mx.from_fp8(mx.to_fp8(x), mx.float32).sum())
    x = [1.0, 2.0]
    try:
        gm(mlx.array(x))
    except ValueError:
        try:
            r = gp(mx.array(x))
        except ValueError:
            return
        assert np.all(np.array(r) == 0)


@needs_mlx
@pytest.mark.parametrize("case", range(6))
def test_mlx_unique(case, rng):
    shape = [(9,), (3, 4), (2, 3, 5), (), (1,), (6, 6)][case]
    dt = ["int32", "float32", "int64", "uint8", "float16", "bool_"][case]
    x = rng.integers(0, 5, shape)
    m, p = both(x, dt)
    nu = len(np.unique(np.array(p)))
    for size in sorted({0, 1, max(nu - 1, 0), nu, nu + 2}):
        for kw in [{}, {"fill_value": 3}, {"fill_value": mlx.array(2, mlx.int16)}]:
            kp = {k: (mx.array(2, mx.int16) if isinstance(v, mlx.array) else v) for k, v in kw.items()}
            rm = mlx.unique(m, size, True, True, True, stream=mlx.cpu, **kw)
            rp = mx.unique(p, size, True, True, True, **kp)
            for a, b in zip(rm, rp):
                same(a, b, exact=True)
    xf = np.array([1.5, np.nan, 1.5, np.nan, -0.0, 0.0, 2.0], np.float32)
    m, p = both(xf)
    for a, b in zip(mlx.unique(m, 7, True, True, True), mx.unique(p, 7, True, True, True)):
        same(a, b, exact=True)
        assert np.array_equal(np.signbit(f64(a)), np.signbit(f64(b)))
    e_m, e_p = both(np.zeros((2, 0), np.float32))
    for size, kw in [(0, {}), (2, {"fill_value": 3})]:
        for a, b in zip(mlx.unique(e_m, size, True, True, True, **kw), mx.unique(e_p, size, True, True, True, **kw)):
            same(a, b, exact=True)
    m, p = both([2, 1, 2, 3, 1])
    for f in [lambda u, a: u.unique(a, -1), lambda u, a: u.unique(a, 2.0), lambda u, a: u.unique(a),
              lambda u, a: u.unique(a, 3, fill_value=u.array([1, 2])),
              lambda u, a: u.unique(a.astype(u.uint8), 7, fill_value=-1),
              lambda u, a: u.unique(a[:0], 2), lambda u, a: u.unique(a, 3, fill_value=2.5)]:
        same_error(lambda: f(mlx, m), lambda: f(mx, p))
    gm = mlx.grad(lambda x: (mlx.unique(x, 5) * mlx.arange(1, 6)).sum())(mlx.array([3.0, 1, 3, 2]))
    gp = mx.grad(lambda x: (mx.unique(x, 5) * mx.arange(1, 6)).sum())(mx.array([3.0, 1, 3, 2]))
    same(gm, gp, exact=True)


@needs_mlx
@pytest.mark.parametrize("dt", FLOATS + ["int32"])
def test_mlx_det_slogdet(dt, rng):
    # MLX: a closed form up to 3 x 3 (any float dtype, differentiable), LU from 4 x 4 (float32
    # and float64 only, no gradient, float64 results about float32-accurate); Ponte: LU always
    n = 3 if dt in ("float16", "bfloat16") else 4
    a = rng.uniform(-2, 2, (3, n, n)) if dt != "int32" else rng.integers(-3, 4, (3, n, n))
    m, p = both(a, dt)
    rt = {"float64": 1e-6, "float32": 1e-4, "int32": 1e-4}.get(dt, 5e-2)
    same(mlx.linalg.det(m, stream=mlx.cpu), mx.linalg.det(p), rtol=rt, atol=rt)
    for x, y in zip(mlx.linalg.slogdet(m, stream=mlx.cpu), mx.linalg.slogdet(p)):
        same(x, y, rtol=rt, atol=rt)
    sing = np.array([[1.0, 2], [2, 4]])
    for x, y in zip(mlx.linalg.slogdet(mlx.array(sing), stream=mlx.cpu), mx.linalg.slogdet(mx.array(sing))):
        same(x, y, exact=True)
    for bad in [np.array([1.0, 2]), np.ones((2, 3)), np.ones((2, 2), np.complex64)]:
        same_error(lambda: mlx.linalg.det(mlx.array(bad), stream=mlx.cpu), lambda: mx.linalg.det(mx.array(bad)))
        same_error(lambda: mlx.linalg.slogdet(mlx.array(bad), stream=mlx.cpu),
                   lambda: mx.linalg.slogdet(mx.array(bad)))
    if dt in ("float32", "float64"):
        m3, p3 = both(a[:, :3, :3], dt)
        gm = mlx.grad(lambda x: mlx.linalg.det(x, stream=mlx.cpu).sum())(m3)
        same(gm, mx.grad(lambda x: mx.linalg.det(x).sum())(p3), rtol=1e-3, atol=1e-4)
        gm = mlx.grad(lambda x: mlx.linalg.slogdet(x, stream=mlx.cpu)[1].sum())(m3)
        same(gm, mx.grad(lambda x: mx.linalg.slogdet(x)[1].sum())(p3), rtol=1e-3, atol=1e-4)
    assert (mlx.matrix_norm is mlx.linalg.norm) == (mx.matrix_norm is mx.linalg.norm)


@needs_mlx
@pytest.mark.parametrize("dt", FLOATS)
def test_mlx_cross_entropy(dt, rng):
    lg = rng.uniform(-5, 5, (3, 4, 9))
    t = rng.integers(0, 9, (3, 4))
    (ml, pl), (mt, pt) = both(lg, dt), both(t)
    # MLX's CPU falls back to reducing in the logits' dtype; Ponte accumulates in float32
    tol = {"float16": 5e-3, "bfloat16": 5e-2}.get(dt, 1e-5)
    same(mlx.fast.cross_entropy(ml, mt), mx.fast.cross_entropy(pl, pt), rtol=tol, atol=tol)
    gm = mlx.grad(lambda x: mlx.fast.cross_entropy(x, mt).sum())(ml)
    gp = mx.grad(lambda x: mx.fast.cross_entropy(x, pt).sum())(pl)
    same(gm, gp, rtol=tol, atol=tol)
    lz = np.zeros((2, 3), np.float32)
    for lx, tx in [(np.float32(1), np.int32(1)), (lz.astype(np.int32), np.array([0, 1])),
                   (lz, np.array([0.0, 1.0])), (lz, np.array([True, False])), (lz, np.array([2, 0, 1])),
                   (lz, np.array([[2], [0]])), (np.zeros((2, 0), np.float32), np.array([0, 0]))]:
        same_error(lambda: mlx.fast.cross_entropy(mlx.array(lx), mlx.array(tx)),
                   lambda: mx.fast.cross_entropy(mx.array(lx), mx.array(tx)))


@needs_mlx
def test_mlx_types():
    ms, ps = mlx.new_thread_local_stream(mlx.cpu), mx.new_thread_local_stream(mx.cpu)
    assert type(ms).__name__ == type(ps).__name__ == "ThreadLocalStream"
    assert repr(ms).rsplit(", ", 1)[0] == repr(ps).rsplit(", ", 1)[0]
    assert (ms == ms, ms == mlx.new_thread_local_stream(mlx.cpu)) == (ps == ps, ps == mx.new_thread_local_stream(mx.cpu))
    assert type(iter(mlx.array([1]))).__name__ == type(iter(mx.array([1]))).__name__ == "ArrayIterator"
    same_error(lambda: mlx.ThreadLocalStream(), lambda: mx.ThreadLocalStream())
    same_error(lambda: mlx.ArrayIterator(), lambda: mx.ArrayIterator())
