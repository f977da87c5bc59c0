"""ponte.linalg's decompositions (svd, eigh, eigvalsh, eig, eigvals, lu, lu_factor, qr, pinv) and
the singular-value norms (ord 2, -2, 'nuc') against numpy.linalg in float64: values,
reconstructions up to the signs of the vectors, batches, float32/float64, errors, and
gradients against central finite differences."""
import numpy as np
import pytest

import ponte as mx

SHAPES = [(4, 4), (5, 3), (3, 5), (2, 3, 4, 4), (6, 2, 3)]
DTYPES = [(mx.float32, np.float32, 2e-4), (mx.float64, np.float64, 1e-10)]


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def A(a, dt=mx.float64):
    """a as a ponte array of dtype dt (float64 numpy data keeps its precision)."""
    return mx.array(np.asarray(a), dtype=dt)


def np_of(x):
    return np.array(x).astype(np.float64) if x.dtype != mx.complex64 else np.array(x).astype(np.complex128)


# ───────────────────────────── values ─────────────────────────────

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dt,npt,tol", DTYPES)
def test_svd(rng, shape, dt, npt, tol):
    a = rng.standard_normal(shape).astype(npt)
    u, s, vt = mx.linalg.svd(A(a, dt))
    assert u.dtype == dt and s.dtype == dt and vt.dtype == dt
    m, n = shape[-2:]
    k = min(m, n)
    assert u.shape == shape[:-2] + (m, m) and s.shape == shape[:-2] + (k,) and vt.shape == shape[:-2] + (n, n)
    U, S, Vt = np_of(u), np_of(s), np_of(vt)
    np.testing.assert_allclose(S, np.linalg.svd(a.astype(np.float64), compute_uv=False), rtol=tol, atol=tol)
    rec = (U[..., :, :k] * S[..., None, :]) @ Vt[..., :k, :]
    np.testing.assert_allclose(rec, a, rtol=tol * 10, atol=tol * 10)
    eye_m, eye_n = np.eye(m), np.eye(n)
    np.testing.assert_allclose(np.swapaxes(U, -1, -2) @ U, np.broadcast_to(eye_m, U.shape), atol=tol * 10)
    np.testing.assert_allclose(Vt @ np.swapaxes(Vt, -1, -2), np.broadcast_to(eye_n, Vt.shape), atol=tol * 10)
    s_only = mx.linalg.svd(A(a, dt), compute_uv=False)
    assert isinstance(s_only, mx.array)
    np.testing.assert_allclose(np_of(s_only), S, rtol=tol, atol=tol)


@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("dt,npt,tol", DTYPES)
def test_eigh_and_eigvalsh(rng, uplo, dt, npt, tol):
    a = rng.standard_normal((3, 5, 5)).astype(npt)  # not symmetric: one triangle is read
    w, v = mx.linalg.eigh(A(a, dt), UPLO=uplo)
    wn, vn = np.linalg.eigh(a.astype(np.float64), UPLO=uplo)
    np.testing.assert_allclose(np_of(w), wn, rtol=tol * 10, atol=tol * 10)
    W, V = np_of(w), np_of(v)
    np.testing.assert_allclose(np.abs(np.einsum("bij,bij->bj", V, vn)), 1, atol=tol * 100)
    tri = np.tril(a) if uplo == "L" else np.triu(a)
    sym = tri + np.swapaxes(tri, -1, -2) - np.einsum("bii->bi", a)[..., None] * np.eye(5)
    np.testing.assert_allclose(sym @ V, V * W[:, None, :], atol=tol * 100)
    np.testing.assert_allclose(np_of(mx.linalg.eigvalsh(A(a, dt), UPLO=uplo)), wn, rtol=tol * 10, atol=tol * 10)
    # default UPLO is "L"
    np.testing.assert_allclose(np_of(mx.linalg.eigvalsh(A(a, dt))), np.linalg.eigvalsh(a.astype(np.float64)),
                               rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("dt,npt", [(mx.float32, np.float32), (mx.float64, np.float64)])
def test_eig_and_eigvals(rng, dt, npt):
    a = rng.standard_normal((4, 6, 6)).astype(npt)
    w, v = mx.linalg.eig(A(a, dt))
    assert w.dtype == mx.complex64 and v.dtype == mx.complex64 and w.shape == (4, 6) and v.shape == (4, 6, 6)
    W, V = np_of(w), np_of(v)
    np.testing.assert_allclose(a.astype(np.float64) @ V, V * W[:, None, :], atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(V, axis=-2), 1, atol=1e-5)
    ref = np.linalg.eigvals(a.astype(np.float64))
    for b in range(4):
        np.testing.assert_allclose(np.sort_complex(W[b]), np.sort_complex(ref[b]), atol=1e-4)
    np.testing.assert_allclose(np_of(mx.linalg.eigvals(A(a, dt))), W, atol=1e-5)
    assert np.abs(W.imag).max() > 0  # random 6x6 matrices have complex pairs


@pytest.mark.parametrize("shape", [(5, 5), (3, 6, 6), (1, 1), (2, 0, 0)])
def test_eig_complex64(rng, shape):
    """eig / eigvals of complex64 matrices (LAPACK cgeev): A V = V diag(w) in complex128,
    unit-norm columns, the eigenvalues numpy's (float64 complex) as a set, eigvals the same
    as eig's values, and a non-contiguous (transposed) input."""
    a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    w, v = mx.linalg.eig(mx.array(a))
    assert w.dtype == mx.complex64 and v.dtype == mx.complex64
    assert w.shape == shape[:-1] and v.shape == shape
    W, V = np_of(w), np_of(v)
    a64 = a.astype(np.complex128)
    np.testing.assert_allclose(a64 @ V, V * W[..., None, :], atol=5e-5 * max(shape[-1], 1))
    if not a.size:
        return
    np.testing.assert_allclose(np.linalg.norm(V, axis=-2), 1, atol=1e-5)
    ref = np.linalg.eigvals(a64).reshape(-1, shape[-1])
    for wb, rb in zip(W.reshape(-1, shape[-1]), ref):
        np.testing.assert_allclose(np.sort_complex(wb), np.sort_complex(rb), atol=5e-5 * shape[-1])
    np.testing.assert_allclose(np_of(mx.linalg.eigvals(mx.array(a))), W, atol=1e-5)
    at = mx.swapaxes(mx.array(a), -1, -2)  # strided input
    wt = np_of(mx.linalg.eigvals(at))
    rt = np.linalg.eigvals(np.swapaxes(a64, -1, -2)).reshape(-1, shape[-1])
    for wb, rb in zip(wt.reshape(-1, shape[-1]), rt):
        np.testing.assert_allclose(np.sort_complex(wb), np.sort_complex(rb), atol=5e-5 * shape[-1])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dt,npt,tol", DTYPES)
def test_lu(rng, shape, dt, npt, tol):
    a = rng.standard_normal(shape).astype(npt)
    p, l, u = mx.linalg.lu(A(a, dt))
    m, n = shape[-2:]
    k = min(m, n)
    assert p.dtype == mx.uint32 and p.shape == shape[:-2] + (m,)
    assert l.shape == shape[:-2] + (m, k) and u.shape == shape[:-2] + (k, n)
    P, L, U = np.array(p).astype(np.int64), np_of(l), np_of(u)
    lu_prod = L @ U
    rec = np.take_along_axis(lu_prod, P[..., None], axis=-2)  # L[P] @ U
    np.testing.assert_allclose(rec, a, rtol=tol * 10, atol=tol * 10)
    assert np.all(np.triu(L, 1) == 0) and np.all(np.tril(U, -1) == 0)
    np.testing.assert_array_equal(np.diagonal(L, axis1=-2, axis2=-1), 1)
    assert np.abs(L).max() <= 1 + 1e-6  # partial pivoting
    lu, piv = mx.linalg.lu_factor(A(a, dt))
    assert piv.dtype == mx.uint32 and piv.shape == shape[:-2] + (k,) and lu.shape == shape
    LU = np_of(lu)
    np.testing.assert_array_equal(np.tril(LU, -1)[..., :, :k], np.tril(L, -1))
    np.testing.assert_array_equal(np.triu(LU)[..., :k, :], U)


def test_lu_factor_matches_mlx_construction(rng):
    # MLX's documented use: the permutation matrix from p reconstructs a
    a = rng.standard_normal((5, 5))
    p, l, u = mx.linalg.lu(A(a))
    P = mx.put_along_axis(mx.zeros_like(l), p[..., None], mx.array(1.0, dtype=mx.float64), axis=-1)
    np.testing.assert_allclose(np.array(P @ l @ u), a, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES + [(7, 1), (1, 6)])
@pytest.mark.parametrize("dt,npt,tol", DTYPES)
def test_qr(rng, shape, dt, npt, tol):
    a = rng.standard_normal(shape).astype(npt)
    q, r = mx.linalg.qr(A(a, dt))
    m, n = shape[-2:]
    k = min(m, n)
    assert q.dtype == dt and r.dtype == dt
    assert q.shape == shape[:-2] + (m, k) and r.shape == shape[:-2] + (k, n)
    Q, R = np_of(q), np_of(r)
    # numpy's QR is LAPACK's geqrf + orgqr too: the same signs
    nq, nr = np.linalg.qr(a.astype(np.float64))
    np.testing.assert_allclose(Q, nq, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(R, nr, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(Q @ R, a, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(np.swapaxes(Q, -1, -2) @ Q, np.broadcast_to(np.eye(k), R.shape[:-2] + (k, k)),
                               atol=tol * 10)
    assert np.all(np.tril(R, -1) == 0)


def test_qr_strided_and_empty(rng):
    a = rng.standard_normal((3, 6, 4))
    t = mx.swapaxes(A(a), -1, -2)  # (3, 4, 6), not contiguous
    q, r = mx.linalg.qr(t)
    nq, nr = np.linalg.qr(np.swapaxes(a, -1, -2))
    np.testing.assert_allclose(np.array(q), nq, atol=1e-12)
    np.testing.assert_allclose(np.array(r), nr, atol=1e-12)
    q, r = mx.linalg.qr(A(a)[:, ::2, 1:])
    nq, nr = np.linalg.qr(a[:, ::2, 1:])
    np.testing.assert_allclose(np.array(q), nq, atol=1e-12)
    np.testing.assert_allclose(np.array(r), nr, atol=1e-12)
    q, r = mx.linalg.qr(mx.zeros((0, 3)))
    assert q.shape == (0, 0) and r.shape == (0, 3)


def test_qr_matches_mlx(rng):
    mlx = pytest.importorskip("mlx.core")
    for shape in [(5, 3), (3, 5), (4, 4), (2, 3, 3)]:
        a = rng.standard_normal(shape).astype(np.float32)
        mq, mr = mlx.linalg.qr(mlx.array(a), stream=mlx.cpu)
        q, r = mx.linalg.qr(mx.array(a))
        assert tuple(mq.shape) == q.shape and tuple(mr.shape) == r.shape
        np.testing.assert_allclose(np.array(q), np.array(mq), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.array(r), np.array(mr), rtol=1e-4, atol=1e-5)
    for bad in [np.ones((2, 2), np.int32), np.ones(3, np.float32)]:
        with pytest.raises(ValueError) as em:
            mlx.linalg.qr(mlx.array(bad), stream=mlx.cpu)
        with pytest.raises(ValueError) as ep:
            mx.linalg.qr(mx.array(bad))
        assert str(em.value) == str(ep.value)


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("dt,npt,tol", DTYPES)
def test_pinv(rng, shape, dt, npt, tol):
    a = rng.standard_normal(shape).astype(npt)
    x = mx.linalg.pinv(A(a, dt))
    assert x.dtype == dt and x.shape == shape[:-2] + (shape[-1], shape[-2])
    np.testing.assert_allclose(np_of(x), np.linalg.pinv(a.astype(np.float64)), rtol=tol * 100, atol=tol * 100)


def test_pinv_rank_deficient(rng):
    a = rng.standard_normal((5, 3))
    a = np.concatenate([a, a[:, :1]], axis=1)
    np.testing.assert_allclose(np.array(mx.linalg.pinv(A(a))), np.linalg.pinv(a), atol=1e-10)


@pytest.mark.parametrize("ord", [2, -2, "nuc"])
def test_singular_value_norms(rng, ord):
    a = rng.standard_normal((3, 4, 5))
    for axis in [None, (1, 2), (2, 1), (0, 2)]:
        if axis is None:
            np.testing.assert_allclose(np.array(mx.linalg.norm(A(a[0]), ord)),
                                       np.linalg.norm(a[0], ord), rtol=1e-10)
            continue
        for keepdims in [False, True]:
            got = mx.linalg.norm(A(a), ord, axis=axis, keepdims=keepdims)
            ref = np.linalg.norm(a, ord, axis=axis, keepdims=keepdims)
            assert got.shape == ref.shape
            np.testing.assert_allclose(np.array(got), ref, rtol=1e-10)
    f32 = mx.linalg.norm(A(a[0], mx.float32), ord)
    assert f32.dtype == mx.float32


# ───────────────────────────── errors ─────────────────────────────

@pytest.mark.parametrize("fn", [lambda a: mx.linalg.svd(a), lambda a: mx.linalg.eigh(a),
                                lambda a: mx.linalg.eigvalsh(a), lambda a: mx.linalg.eig(a),
                                lambda a: mx.linalg.eigvals(a), lambda a: mx.linalg.lu(a),
                                lambda a: mx.linalg.lu_factor(a), lambda a: mx.linalg.pinv(a),
                                lambda a: mx.linalg.qr(a)])
def test_errors(fn):
    with pytest.raises(ValueError, match="float32 or float64"):
        fn(mx.array([[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match=">= 2 dimensions"):
        fn(mx.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        fn(mx.zeros((2, 2), dtype=mx.float16))


@pytest.mark.parametrize("fn", [mx.linalg.eigh, mx.linalg.eigvalsh, mx.linalg.eig, mx.linalg.eigvals])
def test_square_only(fn):
    with pytest.raises(ValueError, match="square"):
        fn(mx.zeros((2, 3)))


def test_bad_uplo():
    with pytest.raises(ValueError, match="UPLO"):
        mx.linalg.eigh(mx.eye(3), UPLO="X")
    with pytest.raises(ValueError):
        mx.linalg.norm(mx.zeros((3, 3)), 3)


# ───────────────────────────── gradients ─────────────────────────────

def fd_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        d = np.zeros_like(a)
        d[i] = eps
        g[i] = (f(a + d) - f(a - d)) / (2 * eps)
    return g


def sign_free(q):
    """q diag(1..k) q^T: independent of the signs of q's columns."""
    k = q.shape[-1]
    return (q * mx.arange(1, k + 1, dtype=q.dtype)) @ mx.swapaxes(q, -1, -2)


def _svd_all(a):
    u, s, vt = mx.linalg.svd(a)
    k = min(a.shape[-2:])
    return mx.sum(s * mx.arange(1, k + 1, dtype=a.dtype)) + mx.sum(mx.sin(sign_free(u[..., :, :k]))) \
        + mx.sum(mx.cos(sign_free(mx.swapaxes(vt[..., :k, :], -1, -2))))


def _eigh(a):
    w, v = mx.linalg.eigh(a + mx.swapaxes(a, -1, -2))
    return mx.sum(w * w) + mx.sum(mx.sin(sign_free(v)))


def _lu(a):
    _, l, u = mx.linalg.lu(a)
    return mx.sum(mx.sin(l)) + mx.sum(u * u)


def _qr(a):
    q, r = mx.linalg.qr(a)
    return mx.sum(mx.sin(q) * mx.arange(1, q.shape[-1] + 1, dtype=a.dtype)) + mx.sum(r * mx.cos(r))


GRAD_CASES = {
    "qr": (_qr, [(4, 4), (5, 3), (3, 5), (2, 4, 2)]),
    "qr R only": (lambda a: mx.sum(mx.linalg.qr(a)[1] ** 2), [(4, 3), (2, 4)]),
    "svd": (_svd_all, [(4, 4), (5, 3), (3, 5)]),
    "svd values only": (lambda a: mx.sum(mx.linalg.svd(a, compute_uv=False) ** 3), [(4, 3), (2, 3, 3)]),
    "eigh": (_eigh, [(4, 4), (2, 3, 3)]),
    "eigvalsh": (lambda a: mx.sum(mx.exp(mx.linalg.eigvalsh(a + mx.swapaxes(a, -1, -2)) / 4)), [(4, 4)]),
    "lu": (_lu, [(4, 4), (2, 3, 3)]),
    "pinv": (lambda a: mx.sum(mx.sin(mx.linalg.pinv(a))), [(3, 3), (4, 2), (2, 4)]),
    "norm 2": (lambda a: mx.linalg.norm(a, 2), [(4, 3)]),
    "norm nuc": (lambda a: mx.linalg.norm(a, "nuc"), [(3, 4)]),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradients_vs_finite_differences(rng, name):
    f, shapes = GRAD_CASES[name]
    for shape in shapes:
        a = rng.standard_normal(shape)
        g = np.array(mx.grad(f)(A(a)))
        ref = fd_grad(lambda x: float(f(A(x)).item()), a)
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-6, err_msg=f"{name} {shape}")
