"""Differential tests: the same calls through MLX (when the mlx package is importable) and
Ponte on random inputs — values, result dtypes, printing and error types. Skipped without MLX."""
import math

import numpy as np
import pytest

import ponte as pn

mlx = pytest.importorskip("mlx.core")

DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "float32", "bfloat16", "complex64"]


def both(x, dtype=None):
    """The same values as an MLX array and a Ponte array."""
    m = mlx.array(x) if dtype is None else mlx.array(x).astype(getattr(mlx, dtype))
    p = pn.array(x) if dtype is None else pn.array(x).astype(getattr(pn, dtype))
    return m, p


def same(m, p, rtol=1e-5, atol=1e-6):
    assert str(m.dtype).split(".")[-1] == str(p.dtype).split(".")[-1], (m.dtype, p.dtype)
    assert tuple(m.shape) == tuple(p.shape)
    a = np.array(m.astype(mlx.float32) if m.dtype == mlx.bfloat16 else m)
    b = np.array(p)
    if a.dtype.kind in "biu":
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("da", DTYPES)
@pytest.mark.parametrize("db", DTYPES)
def test_promotion_matches(da, db):
    m = mlx.zeros((1,), getattr(mlx, da)) + mlx.zeros((1,), getattr(mlx, db))
    p = pn.zeros((1,), getattr(pn, da)) + pn.zeros((1,), getattr(pn, db))
    assert str(m.dtype).split(".")[-1] == str(p.dtype).split(".")[-1]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("scalar", [True, 2, 2.5, 1j])
def test_weak_scalars_match(dt, scalar):
    m = mlx.zeros((1,), getattr(mlx, dt))
    p = pn.zeros((1,), getattr(pn, dt))
    for f in [lambda a: a + scalar, lambda a: scalar * a, lambda a: a == scalar]:
        try:
            rm = f(m)
        except Exception as e:  # noqa: BLE001
            with pytest.raises(type(e)):
                f(p)
            continue
        rp = f(p)
        assert str(rm.dtype).split(".")[-1] == str(rp.dtype).split(".")[-1], (dt, scalar)


@pytest.mark.parametrize("seed", range(5))
def test_printing_matches(seed):
    rng = np.random.default_rng(seed)
    for dt in ["float32", "int32", "bool_", "float16", "int64", "uint8", "complex64", "bfloat16"]:
        for shape in [(), (3,), (2, 3), (2, 2, 2), (0,), (10,), (8, 9), (0, 3)]:
            x = rng.standard_normal(shape) * 10.0 ** int(rng.integers(-3, 4))
            if dt[0] in "ui":  # in range: conversions of out-of-range floats differ (see below)
                x = np.clip(np.abs(x), 0, 100)
            if dt == "complex64":
                x = x + 1j * rng.standard_normal(shape)
            m, p = both(x, dt)
            assert repr(m) == repr(p), (dt, shape)
    for v in [1e-9, 123456789.0, 1.5e20, -0.0, math.inf, -math.inf, math.nan, 0.1, 1 / 3]:
        assert repr(mlx.array([v, 1.0])) == repr(pn.array([v, 1.0]))


OPS = ["abs", "exp", "log1p", "sin", "tanh", "sigmoid", "sqrt", "square", "floor", "sign", "erf"]


@pytest.mark.parametrize("name", OPS)
def test_unary_values_match(name):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 2, (4, 5)).astype(np.float32)
    for dt in ["float32", "float16", "int32"]:
        m, p = both(x * (10 if dt == "int32" else 1), dt)
        same(getattr(mlx, name)(m), getattr(pn, name)(p), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "power", "maximum",
                                  "floor_divide", "remainder", "arctan2", "logaddexp"])
def test_binary_values_match(name):
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0.5, 3, (3, 4)).astype(np.float32), rng.uniform(0.5, 3, (4,)).astype(np.float32)
    for dt in ["float32", "int32", "uint8", "float16"]:
        (mx_, px), (my, py) = both(x * 3, dt), both(y * 3, dt)
        same(getattr(mlx, name)(mx_, my), getattr(pn, name)(px, py), rtol=2e-3, atol=2e-3)
        same(getattr(mlx, name)(mx_, 2), getattr(pn, name)(px, 2), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp", "argmax", "argmin"])
def test_reductions_match(name):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)
    m, p = both(x)
    for axis in [None, 0, -1] + ([(0, 2)] if not name.startswith("arg") else []):
        same(getattr(mlx, name)(m, axis=axis), getattr(pn, name)(p, axis=axis), rtol=1e-4)
        same(getattr(mlx, name)(m, axis=axis, keepdims=True), getattr(pn, name)(p, axis=axis, keepdims=True), rtol=1e-4)


def test_indexing_matches():
    from test_indexing import random_index
    rng = np.random.default_rng(3)
    for _ in range(300):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        x = rng.standard_normal(shape).astype(np.float32)
        idx = random_index(rng, shape)
        try:
            x[idx]
        except IndexError:
            continue
        m, p = both(x)
        mi = tuple(mlx.array(i) if isinstance(i, np.ndarray) else i for i in idx)
        pi = tuple(pn.array(i) if isinstance(i, np.ndarray) else i for i in idx)
        same(m[mi], p[pi])


@pytest.mark.xfail(reason="core: out-of-range float to integer casts saturate; MLX wraps (uint8(-3.5) == 253, int8(300) == 44)",
                   strict=False)
def test_float_to_unsigned_conversion_matches():
    x = [-3.5, -0.4, 300.0, 12.7]
    m, p = both(x)
    same(m.astype(mlx.uint8), p.astype(pn.uint8))


def test_errors_match():
    calls = [
        lambda M: M.ones((2, 3)) + M.ones((4,)),
        lambda M: M.matmul(M.ones((2, 3)), M.ones((4, 5))),
        lambda M: M.reshape(M.ones((2, 3)), (4,)),
        lambda M: M.array([[1, 2], [3]]),
        lambda M: M.array("abc"),
        lambda M: M.array([1], M.uint8) + 256,
        lambda M: M.finfo(M.int32),
        lambda M: M.ones((2,))[0, 0],
        lambda M: M.concatenate([M.ones((2, 3)), M.ones((2, 4))]),
        lambda M: M.split(M.ones((5,)), 2),
        lambda M: M.grad(lambda x: x)(M.ones((2,))),
    ]
    for i, c in enumerate(calls):
        errs = []
        for M in (mlx, pn):
            try:
                r = c(M)
                M.eval(r)
                errs.append(None)
            except Exception as e:  # noqa: BLE001
                errs.append(type(e))
        if errs[0] is IndexError:  # MLX raises IndexError for some axis errors; Ponte ValueError
            assert errs[1] in (IndexError, ValueError), i
        else:
            assert errs[0] == errs[1], (i, errs)


def test_random_bits_match():
    for seed in [0, 1, 42]:
        km, kp = mlx.random.key(seed), pn.random.key(seed)
        assert np.array(km).tolist() == np.array(kp).tolist()
        same(mlx.random.uniform(shape=(5,), key=km), pn.random.uniform(shape=(5,), key=kp))
        same(mlx.random.normal((5,), key=km), pn.random.normal((5,), key=kp), rtol=1e-5)


def test_nn_init_and_training_step_match():
    import mlx.nn as mnn
    import mlx.optimizers as mopt
    import ponte.nn as pnn
    import ponte.optimizers as popt
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 3, 8)
    results = []
    for M, nn_, opt_ in [(mlx, mnn, mopt), (pn, pnn, popt)]:
        lin = nn_.Linear(5, 3)
        lin.update({"weight": M.array(w), "bias": M.array(b)})
        opt = opt_.AdamW(learning_rate=0.1)
        step = nn_.value_and_grad(lin, lambda a, t: nn_.losses.cross_entropy(lin(a), t, reduction="mean"))
        for _ in range(3):
            loss, g = step(M.array(x), M.array(y))
            opt.update(lin, g)
            M.eval(lin.parameters(), opt.state)
        results.append((loss.item(), np.array(lin.weight)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)
