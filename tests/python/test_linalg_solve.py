"""mx.linalg's solvers over the SolveTriangular and Cholesky primitives (inv, solve,
solve_triangular, tri_inv, cholesky, cholesky_inv) against numpy in float64 on random
matrices of several sizes, batched and broadcast; singular matrices raise RuntimeError at
evaluation as MLX's do (compared with MLX when it is importable)."""
import numpy as np
import pytest

import ponte as mx

RNG = np.random.default_rng(7)


def P(x):
    """x as a Ponte array of its own float dtype (mx.array alone makes float64 float32)."""
    return mx.array(x, dtype=mx.float64 if x.dtype == np.float64 else mx.float32)


def well_posed(shape, dtype=np.float64):
    n = shape[-1]
    return (RNG.uniform(-1, 1, shape) + n * np.eye(n)).astype(dtype)


@pytest.mark.parametrize("n", [1, 5, 64, 130])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-4), (np.float64, 1e-10)])
def test_inv_and_solve_match_numpy(n, dtype, tol):
    a = well_posed((2, n, n), dtype)
    b = RNG.uniform(-1, 1, (2, n, 3)).astype(dtype)
    np.testing.assert_allclose(np.array(mx.linalg.inv(P(a))), np.linalg.inv(a.astype(np.float64)),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(np.array(mx.linalg.solve(P(a), P(b))),
                               np.linalg.solve(a.astype(np.float64), b.astype(np.float64)), rtol=tol, atol=tol)


def test_solve_broadcasts_and_takes_vectors():
    a = well_posed((4, 4))
    b = RNG.uniform(-1, 1, (3, 4, 2))
    got = np.array(mx.linalg.solve(P(a), P(b)))
    np.testing.assert_allclose(got, np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    v = RNG.uniform(-1, 1, 4)
    np.testing.assert_allclose(np.array(mx.linalg.solve(P(a), P(v))), np.linalg.solve(a, v),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
def test_triangular_solves(upper):
    a = well_posed((3, 9, 9))
    t = np.triu(a) if upper else np.tril(a)
    b = RNG.uniform(-1, 1, (3, 9, 4))
    got = np.array(mx.linalg.solve_triangular(P(a), P(b), upper=upper))
    np.testing.assert_allclose(got, np.linalg.solve(t, b), rtol=1e-10, atol=1e-12)
    ti = np.array(mx.linalg.tri_inv(P(a), upper=upper))
    np.testing.assert_allclose(ti, np.linalg.inv(t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_and_its_inverse(upper):
    m = RNG.uniform(-1, 1, (2, 40, 40))
    spd = m @ np.swapaxes(m, -1, -2) + 40 * np.eye(40)
    want = np.linalg.cholesky(spd)
    if upper:
        want = np.swapaxes(want, -1, -2)
    f = mx.linalg.cholesky(P(spd), upper=upper)
    np.testing.assert_allclose(np.array(f), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(mx.linalg.cholesky_inv(f, upper=upper)), np.linalg.inv(spd),
                               rtol=1e-9, atol=1e-12)


def test_gradient_of_inv_matches_the_formula():
    a = well_posed((5, 5))
    g = np.array(mx.grad(lambda x: mx.sum(mx.linalg.inv(x)))(P(a)))
    ai = np.linalg.inv(a)
    want = -(ai.T @ np.ones((5, 5)) @ ai.T)
    np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fn", ["inv", "solve", "tri_inv"])
def test_singular_raises_at_eval(fn):
    a = mx.array([[1.0, 2.0], [2.0, 4.0]]) if fn != "tri_inv" else mx.array([[1.0, 0.0], [3.0, 0.0]])
    with pytest.raises(RuntimeError, match="singular"):
        if fn == "inv":
            mx.eval(mx.linalg.inv(a))
        elif fn == "solve":
            mx.eval(mx.linalg.solve(a, mx.array([1.0, 2.0])))
        else:
            mx.eval(mx.linalg.tri_inv(a))


def test_singular_errors_like_mlx():
    mlx = pytest.importorskip("mlx.core")
    s = [[1.0, 2.0], [2.0, 4.0]]
    with pytest.raises(RuntimeError):
        mlx.eval(mlx.linalg.inv(mlx.array(s), stream=mlx.cpu))
    with pytest.raises(RuntimeError):
        mx.eval(mx.linalg.inv(mx.array(s)))
    # a matrix that is not positive definite: both give potrf's partial factor
    q = [[1.0, 2.0], [2.0, 1.0]]
    np.testing.assert_array_equal(np.array(mlx.linalg.cholesky(mlx.array(q), stream=mlx.cpu)),
                                  np.array(mx.linalg.cholesky(mx.array(q))))
