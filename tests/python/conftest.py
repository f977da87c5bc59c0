"""Shared helpers of the Python tests: random data, numpy comparisons, dtype tables."""
import os

import numpy as np
import pytest

# float32 semantics on the GPU too: no TF32 products (MLX's default) under the tests
os.environ.setdefault("PONTE_ENABLE_TF32", "0")

import ponte as mx  # noqa: E402

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16, mx.float64]
INT_DTYPES = [mx.int8, mx.int16, mx.int32, mx.int64, mx.uint8, mx.uint16, mx.uint32, mx.uint64]
NP_OF = {
    mx.bool_: np.bool_, mx.int8: np.int8, mx.int16: np.int16, mx.int32: np.int32,
    mx.int64: np.int64, mx.uint8: np.uint8, mx.uint16: np.uint16, mx.uint32: np.uint32,
    mx.uint64: np.uint64, mx.float16: np.float16, mx.float32: np.float32,
    mx.float64: np.float64, mx.complex64: np.complex64, mx.bfloat16: np.float32,
}
TOL = {mx.float16: 2e-3, mx.bfloat16: 2e-2, mx.float32: 1e-5, mx.float64: 1e-12}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def rand(rng, shape, dtype=mx.float32, low=-2.0, high=2.0):
    """A random numpy array for dtype (integers in [low, high), bools half true)."""
    if dtype == mx.bool_:
        return rng.random(shape) < 0.5
    npt = NP_OF[dtype]
    if np.issubdtype(npt, np.integer):
        lo = 0 if np.issubdtype(npt, np.unsignedinteger) else int(low) * 10
        return rng.integers(lo, int(high) * 10 + 1, size=shape).astype(npt)
    x = rng.uniform(low, high, size=shape)
    if dtype == mx.complex64:
        x = x + 1j * rng.uniform(low, high, size=shape)
    return x.astype(npt)


def to_np(a):
    """numpy copy of a ponte array (bfloat16 through float32)."""
    return np.array(a)


def assert_close(a, expected, rtol=None, atol=None, dtype=None):
    """a (ponte) equals expected (numpy) within the tolerance of a's dtype."""
    assert isinstance(a, mx.array), type(a)
    got = to_np(a)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    t = TOL.get(a.dtype, 0)
    rtol = t if rtol is None else rtol
    atol = t if atol is None else atol
    if got.dtype == np.bool_ or np.issubdtype(got.dtype, np.integer):
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got.astype(np.complex128 if np.iscomplexobj(got) else np.float64),
                                   expected, rtol=rtol, atol=atol, equal_nan=True)
