"""Indexing against numpy: ints, slices (negative steps, out-of-range bounds), None, Ellipsis,
integer arrays (numpy's placement of the broadcast dimensions), boolean masks; __setitem__ and
the .at[] updates with repeated indices."""
import numpy as np
import pytest

import ponte as mx
from conftest import assert_close


def random_index(rng, shape, allow_arrays=True):
    """A random numpy-valid index for an array of shape."""
    items, ndim_left = [], len(shape)
    axis = 0
    used_ellipsis = False
    while axis < len(shape):
        r = rng.random()
        n = shape[axis]
        if r < 0.08:
            items.append(None)
            continue
        if r < 0.14 and not used_ellipsis:
            items.append(Ellipsis)
            used_ellipsis = True
            skip = int(rng.integers(0, len(shape) - axis + 1))
            axis += skip
            continue
        if r < 0.4 and n > 0:
            items.append(int(rng.integers(-n, n)))
        elif r < 0.75 or not allow_arrays:
            start = int(rng.integers(-n - 2, n + 3)) if rng.random() < 0.7 else None
            stop = int(rng.integers(-n - 2, n + 3)) if rng.random() < 0.7 else None
            step = int(rng.choice([1, 1, 2, 3, -1, -2])) if rng.random() < 0.6 else None
            items.append(slice(start, stop, step))
        elif r < 0.9 and n > 0:
            k = tuple(int(v) for v in rng.integers(1, 3, size=int(rng.integers(1, 3))))
            items.append(rng.integers(-n, n, size=k))
        else:
            items.append(slice(None))
        axis += 1
    if rng.random() < 0.3 and items:
        items = items[: int(rng.integers(1, len(items) + 1))]
    return tuple(items)


def ponte_index(idx):
    return tuple(mx.array(i) if isinstance(i, np.ndarray) else i for i in idx)


@pytest.mark.parametrize("seed", range(6))
def test_getitem_random(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 5))))
        x = rng.standard_normal(shape).astype(np.float32)
        idx = random_index(rng, shape)
        try:
            want = x[idx]
        except IndexError:
            continue
        got = mx.array(x)[ponte_index(idx)]
        assert got.shape == want.shape, (shape, idx)
        np.testing.assert_array_equal(np.array(got), want, err_msg=str((shape, idx)))


def test_getitem_basic_cases():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    a = mx.array(x)
    cases = [0, -1, (1, 2), (slice(None), 1), (Ellipsis, 0), (None, 0), (0, None, Ellipsis, None),
             slice(None, None, -1), (slice(5, -5), 0), (Ellipsis,), (), (1, 2, 3), (-2, -3, -4),
             (slice(None), slice(None, None, -2)), (slice(1, 0), 0)]
    for idx in cases:
        np.testing.assert_array_equal(np.array(a[idx]), x[idx], err_msg=str(idx))
    assert a[1, 2, 3].item() == 23
    assert mx.array(3)[None].shape == (1,)
    assert mx.array(3)[...].item() == 3


def test_getitem_advanced_placement():
    x = np.arange(24).reshape(2, 3, 4)
    a = mx.array(x)
    cases = [
        (slice(None), [0, 1], None, [1, 2]), ([0, 1], slice(None), [1, 2]), (None, [0, 1], [1, 2]),
        (Ellipsis, [0, 1]), (1, Ellipsis, [0, 1]), ([[0, 1]], slice(1, None)), ([1, 0], [2, 1], [3, 0]),
        ([[0], [1]], [0, 2]), (0, [2, 0]), ([-1, 0],),
    ]
    for idx in cases:
        pidx = tuple(mx.array(i) if isinstance(i, list) else i for i in idx)
        np.testing.assert_array_equal(np.array(a[pidx]), x[tuple(np.array(i) if isinstance(i, list) else i for i in idx)],
                                      err_msg=str(idx))
    np.testing.assert_array_equal(np.array(a[[1, 0]]), x[[1, 0]])  # a list is an index array
    np.testing.assert_array_equal(np.array(a[np.array([1, 0])]), x[[1, 0]])


def test_boolean_masks(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    a = mx.array(x)
    m = x > 0
    np.testing.assert_array_equal(np.array(a[mx.array(m)]), x[m])
    np.testing.assert_array_equal(np.array(a[a > 0]), x[m])
    row = np.array([True, False, True, True])
    np.testing.assert_array_equal(np.array(a[mx.array(row)]), x[row])
    col = np.array([False, True, False, True, True])
    np.testing.assert_array_equal(np.array(a[:, mx.array(col)]), x[:, col])
    np.testing.assert_array_equal(np.array(a[mx.array(row), 1:3]), x[row, 1:3])
    np.testing.assert_array_equal(np.array(a[[True, False, False, False]]), x[[True, False, False, False]])
    assert a[mx.zeros((4, 5), mx.bool_)].shape == (0,)
    b = mx.array(x)
    b[b < 0] = 0
    np.testing.assert_array_equal(np.array(b), np.where(x < 0, 0, x))


def test_index_errors():
    a = mx.zeros((2, 3))
    with pytest.raises(IndexError):
        a[2]
    with pytest.raises(IndexError):
        a[0, -4]
    with pytest.raises(ValueError, match="Too many indices"):  # MLX's error
        a[0, 0, 0]
    with pytest.raises(ValueError):
        a["x"]
    with pytest.raises(ValueError):
        a[1.5]
    with pytest.raises(ValueError):
        a[mx.array([0.5])]
    with pytest.raises(ValueError, match="single ellipsis"):  # MLX's error type
        a[..., ...]
    with pytest.raises(ValueError, match="single ellipsis"):
        a[..., 0, ...] = 1
    with pytest.raises(TypeError):
        del a[0]


@pytest.mark.parametrize("seed", range(4))
def test_setitem_random(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(50):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        x = rng.standard_normal(shape).astype(np.float32)
        idx = random_index(rng, shape, allow_arrays=rng.random() < 0.5)
        try:
            target = x[idx]
        except IndexError:
            continue
        # avoid repeated positions with array indices (numpy's order is unspecified there)
        if any(isinstance(i, np.ndarray) for i in idx):
            pos = np.arange(x.size).reshape(shape)[idx]
            if len(np.unique(pos)) != pos.size:
                continue
        val = rng.standard_normal(target.shape[-1:] if target.ndim and rng.random() < 0.5 else target.shape).astype(np.float32)
        want = x.copy()
        want[idx] = val
        a = mx.array(x)
        a[ponte_index(idx)] = mx.array(val)
        np.testing.assert_array_equal(np.array(a), want, err_msg=str((shape, idx)))


def test_setitem_cases():
    a = mx.zeros((3, 4))
    a[1] = 5
    a[:, [0, 2]] = mx.array([1.0, 2.0])
    a[2, 3] = -1.5
    want = np.zeros((3, 4), np.float32)
    want[1] = 5
    want[:, [0, 2]] = [1, 2]
    want[2, 3] = -1.5
    np.testing.assert_array_equal(np.array(a), want)
    i = mx.zeros((3,), mx.int32)
    i[0] = 2.7
    assert i.tolist() == [2, 0, 0]
    b = mx.zeros((2, 3))
    b[0] = mx.ones((1, 3))  # leading size-1 dimensions are dropped, as numpy
    assert b.tolist() == [[1, 1, 1], [0, 0, 0]]
    with pytest.raises(ValueError):
        b[0] = mx.ones((2,))
    c = mx.arange(5)
    c[::-2] = mx.array([10, 11, 12])
    assert c.tolist() == [12, 1, 11, 3, 10]


def test_at_updates():
    idx = mx.array([0, 0, 1])
    assert mx.zeros((3,)).at[idx].add(1).tolist() == [2, 1, 0]
    assert mx.zeros((3,)).at[idx].subtract(mx.array([1.0, 2, 3])).tolist() == [-3, -3, 0]
    assert mx.full((3,), 2.0).at[idx].multiply(3).tolist() == [18, 6, 2]
    assert mx.full((3,), 8.0).at[idx].divide(2).tolist() == [2, 4, 8]
    assert mx.array([1.0, 5, 3]).at[idx].maximum(mx.array([4.0, 2, 7])).tolist() == [4, 7, 3]
    assert mx.array([1.0, 5, 3]).at[idx].minimum(mx.array([4.0, -2, 7])).tolist() == [-2, 5, 3]
    m = mx.zeros((2, 3))
    assert m.at[:, 1].add(2).tolist() == [[0, 2, 0], [0, 2, 0]]
    assert m.tolist() == [[0, 0, 0], [0, 0, 0]]  # .at returns a new array
    with pytest.raises(ValueError):
        m.at.add(1)


def test_iteration():
    x = np.arange(6).reshape(3, 2)
    assert [r.tolist() for r in mx.array(x)] == x.tolist()
    assert list(mx.array([1, 2, 3])) == [1, 2, 3]  # arrays compare equal elementwise to ints


def test_at_slice_multiply_gradient(rng):
    """x.at[..., :d].multiply(u) (mlx-lm's SuScaledRoPE and YaRN) differentiates in x and u:
    against the numpy derivative of sum(w * where(first d columns, x * u, x))."""
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    u = rng.standard_normal(4).astype(np.float32)
    w = rng.standard_normal((3, 4, 6)).astype(np.float32)

    def f(xx, uu):
        return (xx.at[..., :4].multiply(uu) * mx.array(w)).sum()

    gx, gu = mx.grad(f, argnums=(0, 1))(mx.array(x), mx.array(u))
    ex = w.copy()
    ex[..., :4] *= u
    assert_close(gx, ex, rtol=1e-5, atol=1e-6)
    assert_close(gu, (w[..., :4] * x[..., :4]).sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    y = mx.array(x).at[1:, 2].divide(mx.array(4.0))
    e = x.copy()
    e[1:, 2] *= 0.25
    assert_close(y, e)
