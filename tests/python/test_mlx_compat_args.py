"""Argument conventions MLX programs rely on: integer arguments given as numpy integers (and
numpy integer arrays of shape ()), streams and dtypes given positionally where MLX takes them
so, the memory limits' return values, what grad accepts as a function's result, two ellipses
in an index, GPU streams without a GPU, and arange's dtype for bounds beyond int32. Checked
against numpy and, where the mlx package is importable, against MLX itself."""
import numpy as np
import pytest

import ponte as mx

try:
    import mlx.core as mlx
except ImportError:  # the differential checks skip
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="mlx is not installed")

NP_INTS = [np.int64, np.int32, np.int16, np.uint8, lambda v: np.array(v, dtype=np.int64)]


@pytest.fixture
def x(rng):
    return rng.standard_normal((4, 6, 8)).astype(np.float32)


# ───────────────────────────── numpy integers ─────────────────────────────

# (name, call(mx, array, int maker)): each call passes every integer through `i`, so the same
# call with `int` and with a numpy integer must give the same array.
INT_CALLS = [
    ("fft n", lambda m, a, i: m.fft.fft(a, n=i(5))),
    ("fft axis", lambda m, a, i: m.fft.fft(a, axis=i(1))),
    ("rfftn s", lambda m, a, i: m.fft.rfftn(a, s=[i(3), i(4)], axes=[i(1), i(2)])),
    ("reshape", lambda m, a, i: a.reshape(i(24), i(8))),
    ("reshape tuple", lambda m, a, i: m.reshape(a, (i(8), i(-1)))),
    ("transpose", lambda m, a, i: m.transpose(a, [i(2), i(0), i(1)])),
    ("sum axis", lambda m, a, i: m.sum(a, axis=i(1))),
    ("sum axes", lambda m, a, i: m.sum(a, axis=[i(0), i(2)])),
    ("argmax", lambda m, a, i: m.argmax(a, axis=i(2))),
    ("softmax", lambda m, a, i: m.softmax(a, axis=i(1))),
    ("cumsum", lambda m, a, i: m.cumsum(a, axis=i(2))),
    ("take", lambda m, a, i: m.take(a, m.array([0, 2]), axis=i(1))),
    ("concatenate", lambda m, a, i: m.concatenate([a, a], axis=i(1))),
    ("stack", lambda m, a, i: m.stack([a, a], axis=i(2))),
    ("split sections", lambda m, a, i: m.split(a, i(3), axis=i(1))[1]),
    ("split indices", lambda m, a, i: m.split(a, [i(2), i(5)], axis=i(2))[2]),
    ("pad int", lambda m, a, i: m.pad(a, i(1))),
    ("pad pairs", lambda m, a, i: m.pad(a, [(i(1), i(2))])),
    ("repeat", lambda m, a, i: m.repeat(a, i(2), axis=i(0))),
    ("tile", lambda m, a, i: m.tile(a, [i(2), i(1), i(1)])),
    ("moveaxis", lambda m, a, i: m.moveaxis(a, i(0), i(2))),
    ("swapaxes", lambda m, a, i: m.swapaxes(a, i(0), i(1))),
    ("flatten", lambda m, a, i: m.flatten(a, i(0), i(1))),
    ("expand_dims", lambda m, a, i: m.expand_dims(a, i(1))),
    ("squeeze", lambda m, a, i: m.squeeze(m.expand_dims(a, 0), i(0))),
    ("broadcast_to", lambda m, a, i: m.broadcast_to(a[:1], (i(3), i(6), i(8)))),
    ("tensordot", lambda m, a, i: m.tensordot(a, a.transpose(2, 1, 0), axes=i(1))),
    ("diagonal", lambda m, a, i: m.diagonal(a, i(1), i(1), i(2))),
    ("triu", lambda m, a, i: m.triu(a, i(1))),
    ("topk", lambda m, a, i: m.sort(m.topk(a, i(3), axis=i(2)), axis=-1)),
    ("partition", lambda m, a, i: m.partition(a, i(2), axis=i(2))[..., :3].max(axis=-1)),
    ("zeros", lambda m, a, i: m.zeros(i(3)) + a[0, 0, :3]),
    ("full shape", lambda m, a, i: m.full([i(2), i(3)], 1.5)),
    ("eye", lambda m, a, i: m.eye(i(3), i(4), i(1))),
    ("tri", lambda m, a, i: m.tri(i(3), i(4), i(-1))),
    ("linspace num", lambda m, a, i: m.linspace(0, 1, i(7))),
    ("arange", lambda m, a, i: m.arange(i(2), i(11), i(3))),
    ("conv stride", lambda m, a, i: m.conv1d(a, m.ones((2, 3, 8)), stride=i(2), padding=i(1))),
    ("random.split", lambda m, a, i: m.random.split(m.random.key(i(3)), i(3))),
    ("quantize", lambda m, a, i: m.quantize(m.reshape(a, (12, 16)).astype(m.float32)
                                              .reshape(6, 32), group_size=i(32), bits=i(4))[0]),
]


def as_numpy(r):
    return np.array(r)


@pytest.mark.parametrize("name,call", INT_CALLS, ids=[c[0] for c in INT_CALLS])
@pytest.mark.parametrize("maker", range(len(NP_INTS)))
def test_numpy_integer_arguments(x, name, call, maker):
    """A numpy integer (or a 0-d numpy integer array) is an int wherever a Python int is."""
    make = NP_INTS[maker]
    a = mx.array(x)
    want = as_numpy(call(mx, a, int))
    got = as_numpy(call(mx, a, lambda v: make(v) if v >= 0 or make is not np.uint8 else v))
    np.testing.assert_array_equal(got, want)


@needs_mlx
@pytest.mark.parametrize("name,call", INT_CALLS, ids=[c[0] for c in INT_CALLS])
def test_numpy_integer_arguments_match_mlx(x, name, call):
    """With numpy.int64 arguments, the values MLX computes (where MLX accepts them)."""
    try:
        want = call(mlx, mlx.array(x), np.int64)
    except Exception:  # noqa: BLE001  (MLX refuses some: std::bad_cast)
        pytest.skip("MLX refuses numpy integers here")
    got = call(mx, mx.array(x), np.int64)
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-4, atol=1e-4)


def test_non_integers_stay_refused():
    a = mx.zeros((2, 3))
    for bad in [1.5, np.float32(1.0), "1", np.array([1, 2])]:
        with pytest.raises(TypeError):
            mx.fft.fft(a, n=bad)
    with pytest.raises(TypeError):
        mx.sum(a, axis=np.float64(0))
    with pytest.raises(TypeError):
        mx.zeros(2.0)


def test_seed_and_key_take_numpy_integers():
    k = mx.random.key(np.int64(7))
    np.testing.assert_array_equal(np.array(k), np.array(mx.random.key(7)))
    mx.random.seed(np.uint32(5))
    a = mx.random.uniform(shape=(4,))
    mx.random.seed(5)
    np.testing.assert_array_equal(np.array(a), np.array(mx.random.uniform(shape=(4,))))


# ───────────────────────────── positional streams ─────────────────────────────

def test_positional_stream(x):
    """MLX takes the stream positionally in astype, the arithmetic and comparison functions,
    round, array_equal, diagonal, linspace and the random functions."""
    s = mx.default_stream(mx.cpu)
    a, b = mx.array(x), mx.array(x[::-1].copy())
    k = mx.random.key(1)
    pairs = [
        (a.astype(mx.float16, s), a.astype(mx.float16, stream=s)),
        (mx.astype(a, mx.int32, s), mx.astype(a, mx.int32)),
        (mx.add(a, b, s), a + b),
        (mx.subtract(a, 2, s), a - 2),
        (mx.multiply(a, b, s), a * b),
        (mx.divide(a, b, s), a / b),
        (mx.less(a, b, s), a < b),
        (mx.equal(a, a, s), a == a),
        (mx.round(a, 2, s), mx.round(a, 2)),
        (mx.array_equal(a, b, False, s), mx.array_equal(a, b)),
        (mx.diagonal(a, 0, 1, 2, s), mx.diagonal(a, 0, 1, 2)),
        (mx.linspace(0, 1, 5, True, mx.float32, s), mx.linspace(0, 1, 5)),
        (mx.random.normal((3,), mx.float32, 0.0, 1.0, k, s), mx.random.normal((3,), key=k)),
        (mx.random.uniform(0, 1, (3,), mx.float32, k, s), mx.random.uniform(shape=(3,), key=k)),
        (mx.random.randint(0, 9, (3,), mx.int32, k, s), mx.random.randint(0, 9, (3,), key=k)),
        (mx.random.bernoulli(0.5, (3,), k, s), mx.random.bernoulli(0.5, (3,), key=k)),
        (mx.random.split(k, 3, s), mx.random.split(k, 3)),
        (mx.random.categorical(a[0], -1, None, 2, k, s),
         mx.random.categorical(a[0], num_samples=2, key=k)),
        (mx.random.permutation(6, 0, k, s), mx.random.permutation(6, key=k)),
    ]
    for got, want in pairs:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.array(got), np.array(want))
    with pytest.raises(TypeError):  # keyword-only in MLX as well
        mx.maximum(a, b, s)


@needs_mlx
def test_positional_stream_matches_mlx(x):
    got = mx.array(x).astype(mx.float16, mx.cpu)
    want = mlx.array(x).astype(mlx.float16, mlx.cpu)
    np.testing.assert_array_equal(np.array(got), np.array(want))


# ───────────────────────────── positional dtypes ─────────────────────────────

POS_DTYPE_CALLS = [
    ("linspace", lambda m: m.linspace(0, 10, 5, m.int64)),
    ("linspace endpoint", lambda m: m.linspace(0, 10, 5, False, m.int32)),
    ("arange 4", lambda m: m.arange(1, 9, 2, m.float16)),
    ("arange stop step dtype", lambda m: m.arange(7, 2, m.int16)),
    ("eye", lambda m: m.eye(3, 4, 1, m.int32)),
    ("tri", lambda m: m.tri(3, 4, 0, m.int8)),
    ("full", lambda m: m.full((2, 3), 7, m.float16)),
    ("zeros", lambda m: m.zeros((2,), m.uint8)),
    ("ones", lambda m: m.ones((2,), m.int64)),
    ("identity", lambda m: m.identity(3, m.int32)),
    ("random.normal", lambda m: m.random.normal((2,), m.float16, key=m.random.key(0)).shape),
]


def test_positional_dtype_against_numpy():
    np.testing.assert_array_equal(np.array(mx.linspace(0, 10, 5, mx.int64)),
                                  np.linspace(0, 10, 5, dtype=np.int64))
    assert mx.linspace(0, 10, 5, mx.int64).dtype == mx.int64
    r = mx.arange(7, 2, mx.int16)  # MLX's arange(stop, step, dtype)
    assert r.dtype == mx.int16 and r.tolist() == list(range(0, 7, 2))
    assert mx.arange(5, dtype=mx.float16).dtype == mx.float16
    with pytest.raises(TypeError):
        mx.linspace(0, 1, 3, mx.int32, mx.int32)
    with pytest.raises(TypeError):
        mx.arange(0, 5, mx.int32, dtype=mx.int32)


@needs_mlx
@pytest.mark.parametrize("name,call", POS_DTYPE_CALLS, ids=[c[0] for c in POS_DTYPE_CALLS])
def test_positional_dtype_matches_mlx(name, call):
    try:
        want = call(mlx)
    except TypeError:  # MLX 0.32.4 refuses linspace's old positional dtype
        want = None
    got = call(mx)
    if isinstance(got, tuple) or want is None:
        return
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_array_equal(np.array(got), np.array(want))


# ───────────────────────────── arange's integer dtype ─────────────────────────────

@pytest.mark.parametrize("args", [(2**31 - 2, 2**31), (2**31, 2**31 + 3), (-2**31 - 2, -2**31 + 1),
                                  (0, 3, 2**31), (2**40, 2**40 + 2), (2**31 - 4, 2**31 - 1)])
def test_arange_int64_beyond_int32(args):
    r = mx.arange(*args)
    fits = all(-2**31 <= v < 2**31 for v in args)
    assert r.dtype == (mx.int32 if fits else mx.int64)
    np.testing.assert_array_equal(np.array(r), np.arange(*args))
    if mlx is not None:
        assert str(mlx.arange(*args).dtype).split(".")[-1] == str(r.dtype).split(".")[-1]


# ───────────────────────────── memory limits ─────────────────────────────

def test_memory_limit_returns_the_previous_one():
    old = mx.set_memory_limit(10)
    try:
        assert old > 0  # MLX's default: 0.8 of the physical memory
        assert mx.set_memory_limit(old) == 10
        assert mx.set_memory_limit(old) == old
        assert mx.get_memory_limit() == old
        old_cache = mx.set_cache_limit(0)
        assert mx.set_cache_limit(old_cache) == 0
        assert mx.set_cache_limit(old_cache) == old_cache
        assert mx.set_wired_limit(1000) == 0 and mx.set_wired_limit(0) == 0  # no wired memory
        assert mx.set_memory_limit(np.int64(old)) == old
    finally:
        mx.set_memory_limit(old)


@needs_mlx
def test_default_memory_limit_matches_mlx():
    want = mlx.get_memory_limit()
    assert abs(mx.get_memory_limit() - want) <= 4096, (mx.get_memory_limit(), want)


# ───────────────────────────── grad's function result ─────────────────────────────

@pytest.mark.parametrize("ret", [lambda x: (x.sum(), x), lambda x: [x.sum()], lambda x: 1.0,
                                 lambda x: None, lambda x: {"a": x.sum()}])
def test_grad_needs_an_array(rng, ret):
    x = mx.array(rng.standard_normal((3,)).astype(np.float32))
    with pytest.raises(ValueError, match="should be a scalar array; but .* was returned"):
        mx.grad(ret)(x)
    if mlx is not None:
        with pytest.raises(ValueError):
            mlx.grad(lambda y: ret(y))(mlx.array(np.array(x)))


def test_value_and_grad_keeps_aux(rng):
    xn = rng.standard_normal((3,)).astype(np.float32)
    (v, aux), g = mx.value_and_grad(lambda x: ((x * x).sum(), {"x": x}))(mx.array(xn))
    np.testing.assert_allclose(v.item(), (xn * xn).sum(), rtol=1e-6)
    np.testing.assert_allclose(np.array(g), 2 * xn, rtol=1e-6)
    np.testing.assert_array_equal(np.array(aux["x"]), xn)
    for ret in [lambda x: [x.sum(), x], lambda x: 1.0, lambda x: {"a": x.sum()}]:
        with pytest.raises(ValueError, match="either a scalar array or a tuple"):
            mx.value_and_grad(ret)(mx.array(xn))


# ───────────────────────────── GPU streams without a GPU ─────────────────────────────

def test_gpu_streams_need_a_gpu():
    if mx.is_available(mx.gpu):
        s = mx.default_stream(mx.gpu)
        assert s.device == mx.gpu
        assert mx.new_stream(mx.gpu).device == mx.gpu
        return
    with pytest.raises(ValueError, match="Cannot get gpu stream"):
        mx.default_stream(mx.gpu)
    with pytest.raises(ValueError, match="Cannot make gpu stream"):
        mx.new_stream(mx.gpu)
    with pytest.raises(ValueError):
        mx.set_default_device(mx.gpu)
    assert mx.default_stream(mx.cpu).device == mx.cpu
