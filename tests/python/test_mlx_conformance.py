"""Behaviours that running MLX's own Python test suite against Ponte (standing in for mlx)
found different, each checked here against numpy or float64 references and, where MLX is
importable, against MLX itself: Hadamard transforms of sizes m * 2^k, rounding complex numbers,
rolling by several shifts without axes, grad's view of the caller's containers, and
nn.Module.update_modules / set_dtype."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
except ImportError:
    mlx = None


def sylvester(n):
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def transform_matrix(n):
    """Ponte's hadamard_transform as a matrix (row i: the transform of e_i), float64."""
    return np.array(mx.hadamard_transform(mx.eye(n, dtype=mx.float64), scale=1.0))


@pytest.mark.parametrize("m", [12, 20, 28])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_hadamard_transform_of_m_times_power_of_two(rng, m, k):
    n = m * 2**k
    h = transform_matrix(n)
    # a Hadamard matrix: entries +-1, rows orthogonal, so the default scale is orthonormal
    np.testing.assert_array_equal(np.abs(h), np.ones((n, n)))
    np.testing.assert_array_equal(h @ h.T, n * np.eye(n))
    # MLX's layout: the order-m matrix mixes blocks of 2^k, Sylvester's inside each block
    np.testing.assert_array_equal(h, np.kron(transform_matrix(m), sylvester(2**k)))
    x = rng.standard_normal((3, 2, n))
    y = mx.hadamard_transform(mx.array(x, mx.float64))  # float64 stays float64
    np.testing.assert_allclose(np.array(y), x @ h / np.sqrt(n), rtol=1e-12, atol=1e-12)
    y32 = mx.hadamard_transform(mx.array(x.astype(np.float32)), scale=0.5)
    assert y32.dtype == mx.float32
    np.testing.assert_allclose(np.array(y32), x @ h * 0.5, rtol=1e-4, atol=1e-4)
    assert mx.hadamard_transform(mx.ones((n,), mx.int32)).dtype == mx.float32
    # linear, so the vjp is the cotangent through the transposed matrix
    c = rng.standard_normal((3, 2, n))
    g = mx.grad(lambda t: (mx.hadamard_transform(t) * mx.array(c, mx.float64)).sum())(mx.array(x, mx.float64))
    np.testing.assert_allclose(np.array(g), c @ h.T / np.sqrt(n), rtol=1e-12, atol=1e-12)
    if mlx is not None:
        xm = x.astype(np.float32)
        want = np.array(mlx.hadamard_transform(mlx.array(xm), scale=0.25))
        got = np.array(mx.hadamard_transform(mx.array(xm), scale=0.25))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n", [3, 6, 10, 36, 44, 60 * 4, 0])
def test_hadamard_transform_rejects_other_sizes(n):
    # (MLX 0.32.4 takes 36 = 12 * 3 and then corrupts its heap; Ponte refuses it)
    with pytest.raises(ValueError, match="12 \\* 2\\^k"):
        mx.hadamard_transform(mx.ones((2, n)))


def test_round_complex_rounds_each_part(rng):
    z = (rng.uniform(-50, 50, 64) + 1j * rng.uniform(-50, 50, 64)).astype(np.complex64)
    z[:4] = [2.5 + 3.5j, -0.5 - 1.5j, np.inf + 1.4j, 1.6 + np.nan * 1j]  # halves go to even
    for decimals in (0, 1, -1):
        got = mx.round(mx.array(z), decimals)
        assert got.dtype == mx.complex64
        want = np.round(z.real, decimals) + 1j * np.round(z.imag, decimals)
        np.testing.assert_allclose(np.array(got).real, want.real, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(np.array(got).imag, want.imag, rtol=1e-6, equal_nan=True)
    a = np.array(mx.round(mx.array(z[:2].reshape(2, 1))))
    np.testing.assert_array_equal(a.ravel(), [2 + 4j, -0.0 - 2j])
    if mlx is not None:
        np.testing.assert_array_equal(np.array(mlx.round(mlx.array(z[4:]))), np.array(mx.round(mx.array(z[4:]))))


@pytest.mark.parametrize("shift", [(2, 3), (-1, -1, -1), (4,), (7, -9)])
def test_roll_by_several_shifts_without_axes(shift):
    x = np.arange(30).reshape(2, 3, 5)
    np.testing.assert_array_equal(np.array(mx.roll(mx.array(x), shift)), np.roll(x, shift))
    for axis in (0, 1, -1):  # one axis, several shifts: each shift rolls that axis
        np.testing.assert_array_equal(np.array(mx.roll(mx.array(x), shift, axis)), np.roll(x, shift, axis))
    np.testing.assert_array_equal(np.array(mx.roll(mx.array(x), shift[0], (1, 0))), np.roll(x, shift[0], (1, 0)))
    if len(shift) == 3:
        np.testing.assert_array_equal(np.array(mx.roll(mx.array(x), shift, axis=(0, 1, 2))),
                                      np.roll(x, shift, axis=(0, 1, 2)))


class _Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.m1 = nn.Linear(3, 2)


def test_grad_hands_the_callers_module_and_dicts_through_and_restores_them(rng):
    model = _Holder()
    w0 = model.m1.weight
    x = mx.array(rng.standard_normal(3).astype(np.float32))
    seen = []

    def loss(mod):
        seen.append(mod)
        return (mod.m1(x) ** 2).sum()

    g = mx.grad(loss)(model)
    assert seen[0] is model and model.m1.weight is w0  # the same object, its arrays put back
    assert type(g) is dict and set(g["m1"]) == {"weight", "bias"}
    y = np.array(w0) @ np.array(x) + np.array(model.m1.bias)
    np.testing.assert_allclose(np.array(g["m1"]["weight"]), 2 * np.outer(y, np.array(x)), rtol=1e-5)
    # plain dicts and lists too; tuples inside are rebuilt; an error restores as well
    tree = {"a": mx.array([1.0, 2.0]), "l": [mx.array(3.0), (mx.array(4.0),)]}
    a0, l0 = tree["a"], tree["l"]

    def f(t):
        assert t is tree and t["l"] is l0 and t["a"] is not a0
        return (t["a"] * t["l"][0] * t["l"][1][0]).sum()

    v, gt = mx.value_and_grad(f)(tree)
    assert v.item() == 36.0 and tree["a"] is a0 and tree["l"] is l0
    np.testing.assert_array_equal(np.array(gt["a"]), [12.0, 12.0])
    assert gt["l"][0].item() == 12.0 and gt["l"][1][0].item() == 9.0

    def bad(t):
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        mx.grad(bad)(tree)
    assert tree["a"] is a0
    # vmap hands a copy, as MLX does
    d = {"a": mx.ones((2, 3))}
    mx.vmap(lambda t: (seen.append(t is d), t["a"] * 2)[1])(d)
    assert seen[-1] is False


def test_update_modules_checks_as_mlx():
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    with pytest.raises(ValueError, match="values"):
        m.update_modules({"values": [0, 1]})
    with pytest.raises(ValueError, match="invalid type"):
        m.update_modules({"layers": [0, 1]})
    with pytest.raises(ValueError, match="out of bounds"):
        m.update_modules({"layers": [{}, {}, nn.ReLU()]})
    m.update_modules({"values": [0, 1]}, strict=False)
    m.update_modules({"layers": [{}, nn.ReLU()]})
    assert isinstance(m.layers[1], nn.ReLU) and isinstance(m.layers[0], nn.Linear)


def test_set_dtype_predicate_none_casts_everything():
    layer = nn.Linear(4, 8)
    layer.set_dtype(mx.bfloat16)
    assert {v.dtype for v in layer.parameters().values()} == {mx.bfloat16}
    layer.set_dtype(mx.float32, lambda t: False)
    assert {v.dtype for v in layer.parameters().values()} == {mx.bfloat16}
    layer.set_dtype(mx.int32, lambda t: True)
    assert {v.dtype for v in layer.parameters().values()} == {mx.int32}
    layer.set_dtype(mx.int64, predicate=None)
    assert {v.dtype for v in layer.parameters().values()} == {mx.int64}
    layer.set_dtype(mx.float16)  # the default predicate leaves integer parameters alone
    assert {v.dtype for v in layer.parameters().values()} == {mx.int64}
