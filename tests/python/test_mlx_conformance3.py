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
