"""ponte.core.array: construction, properties, conversions, printing, numpy interop and the
operators with Python numbers as weak scalars."""
import math
import pickle
import copy

import numpy as np
import pytest

import ponte as mx
from conftest import FLOAT_DTYPES, INT_DTYPES, NP_OF, assert_close, rand


# ───────────────────────────── construction ─────────────────────────────

@pytest.mark.parametrize("value,dtype", [
    (True, mx.bool_), (3, mx.int32), (2**40, mx.int64), (-2**31, mx.int32), (2**31, mx.int64),
    (1.5, mx.float32), (1 + 2j, mx.complex64),
])
def test_scalar_construction(value, dtype):
    a = mx.array(value)
    assert a.dtype == dtype and a.shape == () and a.ndim == 0 and a.size == 1
    assert a.item() == value if dtype != mx.float32 else a.item() == pytest.approx(value)
    assert type(a.item()) is type(value)


@pytest.mark.parametrize("value,dtype,shape", [
    ([1, 2, 3], mx.int32, (3,)), ([1, 2.0], mx.float32, (2,)), ([True, False], mx.bool_, (2,)),
    ([[1, 2], [3, 4]], mx.int32, (2, 2)), ((1, 2), mx.int32, (2,)), ([1, 2**40], mx.int64, (2,)),
    ([], mx.float32, (0,)), ([[], []], mx.float32, (2, 0)), ([1 + 1j, 2], mx.complex64, (2,)),
    ([[[1.5]]], mx.float32, (1, 1, 1)),
])
def test_list_construction(value, dtype, shape):
    a = mx.array(value)
    assert a.dtype == dtype and a.shape == shape
    np.testing.assert_array_equal(np.array(a), np.array(value, dtype=NP_OF[dtype]))
    assert a.tolist() == np.array(value).tolist()


def test_construction_with_dtype(rng):
    assert mx.array([1.5, 2.7], dtype=mx.int32).tolist() == [1, 2]
    assert mx.array([1, 2], mx.float16).dtype == mx.float16
    assert mx.array(3, dtype=mx.float64).item() == 3.0
    x = [0.1, 0.2]
    assert mx.array(x, dtype=mx.float64).tolist() == x  # doubles kept exactly
    a = mx.array([1, 2])
    b = mx.array(a, dtype=mx.float32)
    assert b.dtype == mx.float32 and a.dtype == mx.int32


def test_list_of_arrays():
    a = mx.array([mx.array([1, 2]), mx.array([3, 4])])
    assert a.shape == (2, 2) and a.tolist() == [[1, 2], [3, 4]]
    b = mx.array([mx.array([1, 2]), [3, 4.5]])
    assert b.dtype == mx.float32 and b.tolist() == [[1, 2], [3, 4.5]]


@pytest.mark.parametrize("bad", [[[1, 2], [3]], [1, [2]], [[1], 2]])
def test_nonuniform_lists(bad):
    with pytest.raises(ValueError, match="non-uniform"):
        mx.array(bad)


@pytest.mark.parametrize("bad,exc", [("abc", ValueError), ([1, "a"], ValueError), (None, TypeError),
                                     (object(), ValueError), ({"a": 1}, ValueError), (2**64, OverflowError)])
def test_bad_construction(bad, exc):
    with pytest.raises(exc):
        mx.array(bad)


@pytest.mark.parametrize("npdt", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                  np.uint32, np.int64, np.uint64, np.float16, np.float32, np.complex64])
def test_from_numpy(rng, npdt):
    x = (rng.standard_normal((3, 4)) * 10).astype(npdt)
    a = mx.array(x)
    assert a.shape == (3, 4) and np.dtype(NP_OF[a.dtype]) == np.dtype(npdt)
    np.testing.assert_array_equal(np.array(a), x)


def test_from_numpy_special(rng):
    x = rng.standard_normal((3, 4))
    assert mx.array(x).dtype == mx.float32  # numpy float64 becomes float32, as MLX
    assert mx.array(x, dtype=mx.float64).dtype == mx.float64
    np.testing.assert_array_equal(np.array(mx.array(x, dtype=mx.float64)), x)
    t = x.T  # non-contiguous
    assert_close(mx.array(t), t.astype(np.float32))
    s = x[::2, ::-1]
    assert_close(mx.array(s), s.astype(np.float32))
    z = (x + 1j * x).astype(np.complex128)
    assert_close(mx.array(z), z.astype(np.complex64))
    assert mx.array(np.float32(1.5)).item() == 1.5
    assert mx.array(np.int64(3)).dtype == mx.int64
    assert mx.array(np.zeros((0, 3))).shape == (0, 3)
    assert mx.array(memoryview(np.arange(4, dtype=np.int16))).tolist() == [0, 1, 2, 3]


# ───────────────────────────── properties ─────────────────────────────

def test_properties(rng):
    a = mx.array(rand(rng, (2, 3, 4)))
    assert a.shape == (2, 3, 4) and a.ndim == 3 and a.size == 24 and a.itemsize == 4 and a.nbytes == 96
    assert a.T.shape == (4, 3, 2) and a.mT.shape == (2, 4, 3)
    assert len(a) == 2
    with pytest.raises(TypeError):
        len(mx.array(1))
    assert mx.float16.size == 2 and mx.complex64.size == 8 and mx.bool_.size == 1
    assert [x.shape for x in a] == [(3, 4), (3, 4)]
    c = mx.array([1 + 2j, 3 - 1j])
    assert c.real.tolist() == [1, 3] and c.imag.tolist() == [2, -1]


def test_item_tolist_types():
    assert type(mx.array(3, mx.uint64).item()) is int
    assert mx.array(np.array([2**63 + 5], dtype=np.uint64))[0].item() == 2**63 + 5
    assert mx.array([1.5], mx.float16).tolist() == [1.5]
    assert mx.array([1.5], mx.bfloat16).tolist() == [1.5]
    assert mx.array([[True]]).tolist() == [[True]]
    with pytest.raises(ValueError):
        mx.array([1, 2]).item()
    assert int(mx.array(2.7)) == 2 and float(mx.array(2)) == 2.0 and bool(mx.array(1))
    with pytest.raises(ValueError):
        bool(mx.array([1, 2]))
    assert [1, 2, 3][mx.array(1)] == 2  # __index__


def test_astype_all_pairs(rng):
    x = rand(rng, (5,), mx.float32, 0, 5)
    for dt in FLOAT_DTYPES + INT_DTYPES + [mx.bool_]:
        a = mx.array(x).astype(dt)
        assert a.dtype == dt
        if dt in INT_DTYPES:
            np.testing.assert_array_equal(np.array(a), x.astype(NP_OF[dt]))


# ───────────────────────────── printing ─────────────────────────────

@pytest.mark.parametrize("value,dtype,text", [
    ([[1, 2], [3, 4]], mx.int32, "array([[1, 2],\n       [3, 4]], dtype=int32)"),
    (5, mx.int32, "array(5, dtype=int32)"),
    ([1.5, 2], mx.float32, "array([1.5, 2], dtype=float32)"),
    ([True, False], mx.bool_, "array([True, False], dtype=bool)"),
    ([], mx.float32, "array([], dtype=float32)"),
    (1 + 2j, mx.complex64, "array(1+2j, dtype=complex64)"),
])
def test_repr(value, dtype, text):
    a = mx.array(value, dtype)
    assert repr(a) == text and str(a) == text


def test_dtype_objects():
    assert repr(mx.float32) == "ponte.core.float32"
    assert mx.float32 == mx.float32 and mx.float32 != mx.int32
    assert len({mx.float32, mx.float32, mx.int8}) == 2
    assert mx.issubdtype(mx.float32, mx.floating) and not mx.issubdtype(mx.int32, mx.floating)
    assert mx.issubdtype(mx.floating, mx.inexact) and mx.issubdtype(mx.uint8, mx.unsignedinteger)
    assert not mx.issubdtype(mx.bool_, mx.integer) and mx.issubdtype(mx.integer, mx.number)
    assert mx.issubdtype(mx.complex64, mx.complexfloating) and mx.issubdtype(mx.int8, mx.int8)
    assert repr(mx.floating) == "DtypeCategory.floating"
    f = mx.finfo(mx.float32)
    assert f.eps == np.finfo(np.float32).eps and f.max == np.finfo(np.float32).max and f.min == -f.max
    assert repr(f) == "finfo(min=-3.40282e+38, max=3.40282e+38, dtype=float32)"
    assert mx.finfo(mx.float16).max == 65504 and mx.finfo(mx.bfloat16).eps == 2**-7
    i = mx.iinfo(mx.int16)
    assert (i.min, i.max) == (-32768, 32767) and mx.iinfo(mx.uint64).max == 2**64 - 1
    assert repr(mx.iinfo(mx.uint8)) == "iinfo(min=0, max=255, dtype=uint8)"
    with pytest.raises(ValueError):
        mx.finfo(mx.int32)
    with pytest.raises(ValueError):
        mx.iinfo(mx.float32)
    assert pickle.loads(pickle.dumps(mx.float16)) == mx.float16


# ───────────────────────────── numpy interop ─────────────────────────────

@pytest.mark.parametrize("dtype", FLOAT_DTYPES + INT_DTYPES + [mx.bool_, mx.complex64])
def test_to_numpy(rng, dtype):
    x = rand(rng, (3, 5), dtype)
    a = mx.array(x, dtype) if dtype != mx.bfloat16 else mx.array(x).astype(mx.bfloat16)
    got = np.array(a)
    if dtype == mx.bfloat16:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, x, rtol=1e-2)
    else:
        assert got.dtype == np.dtype(NP_OF[dtype])
        np.testing.assert_array_equal(got, x)


def test_buffer_protocol_views(rng):
    x = rand(rng, (4, 6))
    a = mx.array(x)
    t = a.T  # a view: exported as its row-major copy
    np.testing.assert_array_equal(np.asarray(t), x.T)
    m = memoryview(a)
    assert m.format == "f" and m.shape == (4, 6) and m.readonly
    v = np.asarray(a)  # no copy: shares the buffer
    assert not v.flags.writeable
    np.testing.assert_array_equal(v, x)
    np.testing.assert_array_equal(np.array(a[1:3, ::2]), x[1:3, ::2])
    assert np.array(mx.array(3.5)).shape == ()
    assert np.array(mx.zeros((0, 2))).shape == (0, 2)
    assert np.array(a, dtype=np.float64).dtype == np.float64


def test_numpy_operands(rng):
    x = rand(rng, (3,))
    r = mx.ones(3) + x
    assert isinstance(r, mx.array) and r.dtype == mx.float32
    assert_close(r, 1 + x)


def test_copy_pickle():
    a = mx.array([[1.5, 2], [3, 4]])
    assert copy.copy(a).tolist() == a.tolist()
    assert copy.deepcopy(a).tolist() == a.tolist()
    b = pickle.loads(pickle.dumps(a))
    assert b.tolist() == a.tolist() and b.dtype == a.dtype


# ───────────────────────────── operators ─────────────────────────────

BINOPS = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b), ("pow", lambda a, b: a ** b),
]


@pytest.mark.parametrize("name,op", BINOPS)
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.float64])
def test_float_operators(rng, name, op, dtype):
    x = rand(rng, (3, 4), dtype, 0.5, 2)
    y = rand(rng, (4,), dtype, 0.5, 2)
    a, b = mx.array(x, dtype), mx.array(y, dtype)
    for got, want in [(op(a, b), op(x, y)), (op(a, 1.5), op(x, np.array(1.5, x.dtype))),
                      (op(2, a), op(np.array(2, x.dtype), x))]:
        assert got.dtype == dtype
        assert_close(got, want, rtol=3e-3 if dtype == mx.float16 else 1e-5)


@pytest.mark.parametrize("dtype", [mx.int32, mx.int64, mx.uint8, mx.int8, mx.uint32])
def test_int_operators(rng, dtype):
    x = rand(rng, (3, 4), dtype, 1, 5)
    y = rand(rng, (3, 4), dtype, 1, 5)
    x[x == 0] = 1
    y[y == 0] = 1
    a, b = mx.array(x), mx.array(y)
    for op in [lambda p, q: p + q, lambda p, q: p * q, lambda p, q: p // q, lambda p, q: p % q,
               lambda p, q: p & q, lambda p, q: p | q, lambda p, q: p ^ q, lambda p, q: p - q]:
        r = op(a, b)
        assert r.dtype == dtype
        np.testing.assert_array_equal(np.array(r), op(x, y))
    np.testing.assert_array_equal(np.array(a << 1), x << 1)
    np.testing.assert_array_equal(np.array(a >> 1), x >> 1)
    np.testing.assert_array_equal(np.array(~a), ~x)
    assert (a + 2).dtype == dtype and (a * 3).dtype == dtype
    assert (a / 2).dtype == mx.float32 and (a + 0.5).dtype == mx.float32


def test_weak_scalar_promotion():
    assert (mx.array([1, 2], mx.float16) * 2.5).dtype == mx.float16
    assert (mx.array([1, 2], mx.int8) + 1).dtype == mx.int8
    assert (mx.array([True]) + 1).dtype == mx.int32
    assert (mx.array([True]) + 1.5).dtype == mx.float32
    assert (mx.array([1], mx.uint8) + True).dtype == mx.uint8
    assert (mx.array([1.0]) + 1j).dtype == mx.complex64
    assert mx.add(1, 2).dtype == mx.int32 and mx.add(1, 2.5).dtype == mx.float32
    with pytest.raises(ValueError, match="overflow"):
        mx.array([1], mx.uint8) + 256
    with pytest.raises(ValueError, match="overflow"):
        mx.array([1], mx.int8) * 1000
    with pytest.raises(ValueError, match="overflow"):
        mx.array([1], mx.uint8) + (-1)


def test_comparisons(rng):
    x, y = rand(rng, (5,)), rand(rng, (5,))
    a, b = mx.array(x), mx.array(y)
    for op in [lambda p, q: p < q, lambda p, q: p <= q, lambda p, q: p > q, lambda p, q: p >= q,
               lambda p, q: p == q, lambda p, q: p != q]:
        r = op(a, b)
        assert r.dtype == mx.bool_
        np.testing.assert_array_equal(np.array(r), op(x, y))
        np.testing.assert_array_equal(np.array(op(a, 0.5)), op(x, np.float32(0.5)))
        np.testing.assert_array_equal(np.array(op(0.5, a)), op(np.float32(0.5), x))
    assert (a == None) is False and (a != "x") is True  # noqa: E711
    assert hash(a) != hash(b)


def test_unary_operators(rng):
    x = rand(rng, (4,))
    a = mx.array(x)
    assert_close(-a, -x)
    assert_close(abs(a), abs(x))
    assert (+a).tolist() == a.tolist()
    assert (~mx.array([True, False])).tolist() == [False, True]
    with pytest.raises(ValueError):
        ~a
    p, q = rand(rng, (3, 4)), rand(rng, (4, 2))
    assert_close(mx.array(p) @ mx.array(q), p @ q)
    d = divmod(mx.array([7, -7]), 3)
    assert d[0].tolist() == [2, -3] and d[1].tolist() == [1, 2]


def test_inplace_operators():
    a = mx.array([1.0, 2.0])
    b = a
    a += 1
    assert a is b and b.tolist() == [2.0, 3.0]
    a *= 2
    a -= 1
    a /= 2
    a **= 2
    assert b.tolist() == pytest.approx([2.25, 6.25])
    i = mx.array([5, 6])
    i //= 2
    i %= 2
    i <<= 1
    i |= 1
    assert i.tolist() == [1, 3]


def test_operator_type_errors():
    a = mx.array([1, 2])
    with pytest.raises(TypeError):
        a + None
    # MLX: an operand that is neither a scalar nor array-like is a ValueError (None: TypeError)
    with pytest.raises(ValueError, match="addition"):
        a + "x"
    with pytest.raises(ValueError, match="multiplication"):
        a * object()
    with pytest.raises(ValueError):
        mx.array([1.0]) & 1
    with pytest.raises(ValueError, match="broadcast"):
        mx.ones((2, 3)) + mx.ones((4,))


def test_methods_forward_to_ops(rng):
    x = rand(rng, (3, 4), mx.float32, 0.5, 2)
    a = mx.array(x)
    assert_close(a.sum(), x.sum())
    assert_close(a.sum(axis=1, keepdims=True), x.sum(1, keepdims=True))
    assert_close(a.mean(0), x.mean(0))
    assert_close(a.max(), x.max())
    assert_close(a.exp(), np.exp(x))
    assert_close(a.log(), np.log(x))
    assert_close(a.sqrt(), np.sqrt(x))
    assert_close(a.square(), x * x)
    assert a.reshape(4, 3).shape == (4, 3) and a.reshape((2, 6)).shape == (2, 6)
    assert a.reshape([-1]).shape == (12,)
    assert a.transpose().shape == (4, 3) and a.transpose(1, 0).shape == (4, 3)
    assert a.transpose((1, 0)).shape == (4, 3)
    assert a.flatten().shape == (12,) and a.astype(mx.int32).dtype == mx.int32
    assert a[None].squeeze().shape == (3, 4) and a.swapaxes(0, 1).shape == (4, 3)
    assert a.moveaxis(0, 1).shape == (4, 3) and a.argmax().item() == int(np.argmax(x))
    assert [p.shape for p in a.split(2, axis=1)] == [(3, 2), (3, 2)]
    assert_close(a.cumsum(axis=1), np.cumsum(x, 1))
    assert_close(a.var(), x.var(), rtol=1e-4)
    assert_close(a.round(1), np.round(x, 1))


# ───────────────────────────── DLPack ─────────────────────────────

@pytest.mark.parametrize("dtype", [mx.float32, mx.float64, mx.int8, mx.uint16, mx.int64, mx.float16, mx.complex64])
def test_dlpack_roundtrip(rng, dtype):
    x = rand(rng, (3, 4), dtype)
    a = mx.array(x, dtype)
    assert a.__dlpack_device__() == (1, 0)
    n = np.from_dlpack(a)  # zero-copy view of the array's buffer
    np.testing.assert_array_equal(n, x)
    np.testing.assert_array_equal(np.from_dlpack(a.T), x.T)  # views export their dense copy
    b = mx.from_dlpack(x)
    assert b.dtype == dtype
    np.testing.assert_array_equal(np.array(b), x)
    np.testing.assert_array_equal(np.array(mx.from_dlpack(x.T[::-1])), x.T[::-1])  # strided producer
    assert mx.from_dlpack(a).tolist() == a.tolist()


def test_dlpack_errors():
    with pytest.raises(TypeError):
        mx.from_dlpack([1, 2])
