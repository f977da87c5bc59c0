"""The parts of mlx.core's surface added to close the gaps with MLX: kron, diff, median,
count_nonzero, searchsorted, vecdot, hadamard_transform, view, slice/slice_update, minmax, flip,
einsum_path, isdtype, the convolutions, mx.linalg's solvers and factorizations, and grad's
argnames; plus the behaviour of existing ops the gap list named. numpy float64 references on
random data, keyword names, dtypes and errors."""
import numpy as np
import pytest

import ponte as mx
from conftest import assert_close


def F(x, dtype=np.float32):
    return mx.array(np.asarray(x, dtype=dtype))


def D(x):
    return mx.array(np.asarray(x, dtype=np.float64), mx.float64)


def close(y, ref, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.array(y).astype(np.float64), ref, rtol=rtol, atol=atol)


def hadamard(n):
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def test_surface_names():
    for name in ["kron", "diff", "median", "count_nonzero", "searchsorted", "vecdot",
                 "hadamard_transform", "view", "slice", "slice_update", "minmax", "flip",
                 "einsum_path", "isdtype", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                 "conv_transpose2d", "conv_transpose3d", "conv_general", "convolve"]:
        assert callable(getattr(mx, name)), name
    for name in ["norm", "inv", "tri_inv", "cholesky", "cholesky_inv", "solve", "solve_triangular",
                 "qr", "cross"]:
        assert callable(getattr(mx.linalg, name)), name
    assert callable(mx.array.view)
    assert mx.array([1]).__array_namespace__() is mx.core


# ───────────────────────────── array ops ─────────────────────────────

@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 1)), ((3,), (2, 2)), ((2, 1, 3), (2, 2)), ((4,), (3,))])
def test_kron(rng, sa, sb):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    close(mx.kron(D(a), D(b)), np.kron(a, b), rtol=1e-12)
    ai = rng.integers(-5, 5, size=sa).astype(np.int32)
    k = mx.kron(mx.array(ai), mx.array(ai))
    assert k.dtype == mx.int32
    np.testing.assert_array_equal(np.array(k), np.kron(ai, ai))
    assert mx.kron(a=D(a), b=D(b)).shape == np.kron(a, b).shape


@pytest.mark.parametrize("n,axis", [(1, -1), (2, 0), (3, 1), (0, -1), (5, 1)])
def test_diff(rng, n, axis):
    x = rng.standard_normal((4, 5))
    close(mx.diff(D(x), n=n, axis=axis), np.diff(x, n=n, axis=axis), rtol=1e-12)
    b = rng.random(7) < 0.5
    np.testing.assert_array_equal(np.array(mx.diff(mx.array(b))), np.diff(b))
    with pytest.raises(ValueError):
        mx.diff(D(x), n=-1)
    with pytest.raises(ValueError):
        mx.diff(mx.array(1.0))
    with pytest.raises(ValueError):
        mx.diff(D(x), axis=2)


@pytest.mark.parametrize("shape,axis", [((7,), None), ((4, 6), 1), ((4, 5, 3), (0, 2)), ((3, 4), -2), ((2, 3, 4), None)])
def test_median(rng, shape, axis):
    x = rng.standard_normal(shape)
    for keepdims in (False, True):
        close(mx.median(D(x), axis=axis, keepdims=keepdims), np.median(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    xi = rng.integers(-9, 9, size=shape).astype(np.int32)
    m = mx.median(mx.array(xi), axis)
    assert m.dtype == mx.float32
    close(m, np.median(xi, axis=axis))
    assert mx.median(F(x)).dtype == mx.float32


def test_count_nonzero_and_minmax(rng):
    x = rng.integers(-2, 3, size=(4, 5, 3)).astype(np.int32)
    c = mx.count_nonzero(mx.array(x))
    assert c.dtype == mx.int32 and c.item() == np.count_nonzero(x)
    np.testing.assert_array_equal(np.array(mx.count_nonzero(mx.array(x), axis=(0, 2))), np.count_nonzero(x, axis=(0, 2)))
    assert mx.count_nonzero(mx.array(x), axis=1, keepdims=True).shape == (4, 1, 3)
    y = rng.standard_normal((3, 4))
    lo, hi = mx.minmax(D(y), axis=1)
    close(lo, y.min(1), rtol=0), close(hi, y.max(1), rtol=0)
    lo, hi = mx.minmax(D(y), keepdims=True)
    assert lo.shape == (1, 1) and lo.item() == y.min() and hi.item() == y.max()


@pytest.mark.parametrize("n", [0, 1, 2, 5, 33])
def test_searchsorted(rng, n):
    s = np.sort(rng.integers(-5, 5, size=n)).astype(np.float32)
    v = rng.integers(-7, 7, size=(3, 4)).astype(np.float32)
    for side in ("left", "right"):
        r = mx.searchsorted(mx.array(s), mx.array(v), side=side)
        assert r.dtype == mx.uint32 and r.shape == v.shape
        np.testing.assert_array_equal(np.array(r), np.searchsorted(s, v, side=side))
    assert mx.searchsorted(mx.array(s), 0.5).item() == np.searchsorted(s, 0.5)
    with pytest.raises(ValueError):
        mx.searchsorted(mx.array(s), mx.array(v), side="middle")
    with pytest.raises(ValueError):
        mx.searchsorted(mx.zeros((2, 2)), mx.array(v))


def test_vecdot(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4))
    close(mx.vecdot(D(a), D(b)), np.sum(a * b, -1), rtol=1e-12)
    close(mx.vecdot(D(a), D(b), axis=0), np.sum(a * b, 0), rtol=1e-12)
    c = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    close(mx.real(mx.vecdot(mx.array(c), mx.array(c))), np.vdot(c, c).real, rtol=1e-5)
    with pytest.raises(ValueError):
        mx.vecdot(D(a), D(rng.standard_normal(5)))


@pytest.mark.parametrize("n", [1, 2, 16, 128])
def test_hadamard_transform(rng, n):
    x = rng.standard_normal((3, n))
    close(mx.hadamard_transform(D(x)), x @ hadamard(n).T / np.sqrt(n), rtol=1e-12, atol=1e-12)
    close(mx.hadamard_transform(F(x), scale=0.25), x @ hadamard(n).T * 0.25, rtol=1e-5, atol=1e-5)
    assert mx.hadamard_transform(mx.ones((n,), mx.int32)).dtype == mx.float32
    with pytest.raises(ValueError):
        mx.hadamard_transform(mx.ones((6,)))  # 12 * 2^k is valid (test_mlx_conformance.py)


def test_view(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for dt, npdt in [(mx.uint32, np.uint32), (mx.int32, np.int32), (mx.uint8, np.uint8), (mx.int16, np.int16)]:
        v = mx.view(mx.array(x), dt)
        assert v.dtype == dt
        np.testing.assert_array_equal(np.array(v), x.view(npdt))
        np.testing.assert_array_equal(np.array(mx.array(x).view(dt)), x.view(npdt))
    d = rng.standard_normal((2, 4))
    np.testing.assert_array_equal(np.array(D(d).view(mx.float32)), d.view(np.float32))
    x4 = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.array(mx.array(x4).view(dtype=mx.float64)), x4.view(np.float64))
    with pytest.raises(ValueError):
        mx.array(x).view(mx.float64)  # 3 float32 per row do not make whole float64s
    with pytest.raises(ValueError):
        mx.view(mx.array(1.0), mx.float16)
    with pytest.raises(ValueError):
        mx.grad(lambda t: mx.sum(t.view(mx.float32)))(D(d))


def test_dynamic_slice_and_update(rng):
    a = rng.standard_normal((4, 5, 6))
    s = mx.slice(D(a), mx.array([1, 2]), (0, 2), (2, 5, 3))
    close(s, a[1:3, :, 2:5], rtol=0)
    s = mx.slice(D(a), start_indices=mx.array(3), axes=(1,), slice_size=(4, 2, 6))
    close(s, a[:, 3:5, :], rtol=0)
    u = rng.standard_normal((2, 1, 3))
    r = mx.slice_update(D(a), D(u), mx.array([1, 2]), (0, 2))
    want = a.copy()
    want[1:3, 0:1, 2:5] = u
    close(r, want, rtol=0)
    r = mx.slice_update(D(a), 7, start_indices=mx.array([2]), axes=[1])
    want = a.copy()
    want[0:1, 2:3, 0:1] = 7
    close(r, want, rtol=0)
    # the start may come from a computation: gradients flow to a and the update
    ga, gu = mx.grad(lambda x, y: mx.sum(mx.slice_update(x, y, mx.array([1, 1]), (0, 1)) ** 2), argnums=(0, 1))(D(a), D(u))
    upd = a.copy()
    upd[1:3, 1:2, 0:3] = u
    wa = 2 * upd
    wa[1:3, 1:2, 0:3] = 0
    close(ga, wa, rtol=1e-12), close(gu, 2 * u, rtol=1e-12)
    with pytest.raises(ValueError):
        mx.slice(D(a), mx.array([1.5]), (0,), (1, 5, 6))
    with pytest.raises(ValueError):
        mx.slice(D(a), mx.array([1, 2]), (0,), (1, 5, 6))
    with pytest.raises(ValueError):
        mx.slice(D(a), mx.array([1]), (0,), (1, 5))


def test_flip_einsum_path_isdtype(rng):
    x = rng.standard_normal((2, 3, 4))
    close(mx.flip(D(x)), np.flip(x), rtol=0)
    close(mx.flip(D(x), axis=1), np.flip(x, 1), rtol=0)
    close(mx.flip(D(x), axis=(0, 2)), np.flip(x, (0, 2)), rtol=0)
    path, text = mx.einsum_path("ij,jk,kl->il", D(x[0]), D(x[0].T), D(x[0]))
    assert path == [(0, 1), (0, 1)] and isinstance(text, str)
    with pytest.raises(ValueError):
        mx.einsum_path("ij,jk->ik", D(x[0]), D(x[0]))
    assert mx.isdtype(mx.float16, "real floating") and not mx.isdtype(mx.int8, "real floating")
    assert mx.isdtype(mx.uint8, ("bool", "unsigned integer")) and mx.isdtype(mx.int64, "integral")
    assert mx.isdtype(mx.complex64, "numeric") and not mx.isdtype(mx.bool_, "numeric")
    assert mx.isdtype(mx.int32, mx.int32) and mx.isdtype(mx.bfloat16, mx.floating)
    with pytest.raises(ValueError):
        mx.isdtype(mx.int32, "whole")
    with pytest.raises(TypeError):
        mx.isdtype(mx.int32, 3)


# ───────────────────────────── convolutions ─────────────────────────────

def ref_conv(x, w, stride, pad_lo, pad_hi, dil, groups, flip=False, in_dil=None):
    """numpy reference of conv_general in MLX's layouts (N, spatial..., C)."""
    nd = x.ndim - 2
    in_dil = in_dil or [1] * nd
    if any(d > 1 for d in in_dil):
        shp = [x.shape[0]] + [(s - 1) * d + 1 for s, d in zip(x.shape[1:-1], in_dil)] + [x.shape[-1]]
        xd = np.zeros(shp)
        xd[(slice(None),) + tuple(slice(None, None, d) for d in in_dil)] = x
        x = xd
    x = np.pad(x, [(0, 0)] + list(zip(pad_lo, pad_hi)) + [(0, 0)])
    if flip:
        w = w[(slice(None),) + (slice(None, None, -1),) * nd]
    co, ks, cig = w.shape[0], w.shape[1:-1], w.shape[-1]
    out_sp = [(x.shape[1 + i] - dil[i] * (ks[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    out = np.zeros([x.shape[0]] + out_sp + [co])
    per = co // groups
    for o in np.ndindex(*out_sp):
        for kk in np.ndindex(*ks):
            idx = tuple(o[i] * stride[i] + kk[i] * dil[i] for i in range(nd))
            patch = x[(slice(None),) + idx]  # (N, C)
            for g in range(groups):
                xs = patch[:, g * cig:(g + 1) * cig]
                ws = w[(slice(g * per, (g + 1) * per),) + kk]  # (per, cig)
                out[(slice(None),) + o + (slice(g * per, (g + 1) * per),)] += xs @ ws.T
    return out


def test_conv_nd(rng):
    x, w = rng.standard_normal((2, 9, 4)), rng.standard_normal((6, 3, 2))
    close(mx.conv1d(D(x), D(w), stride=2, padding=1, dilation=1, groups=2),
          ref_conv(x, w, [2], [1], [1], [1], 2), rtol=1e-10, atol=1e-10)
    x2, w2 = rng.standard_normal((2, 7, 6, 3)), rng.standard_normal((4, 3, 2, 3))
    close(mx.conv2d(D(x2), D(w2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
          ref_conv(x2, w2, [2, 1], [1, 0], [1, 0], [1, 2], 1), rtol=1e-10, atol=1e-10)
    close(mx.conv2d(D(x2), D(w2), 1, 1), ref_conv(x2, w2, [1, 1], [1, 1], [1, 1], [1, 1], 1), rtol=1e-10, atol=1e-10)
    x3, w3 = rng.standard_normal((1, 4, 5, 3, 2)), rng.standard_normal((3, 2, 2, 2, 2))
    close(mx.conv3d(D(x3), D(w3), padding=1), ref_conv(x3, w3, [1] * 3, [1] * 3, [1] * 3, [1] * 3, 1),
          rtol=1e-10, atol=1e-10)
    close(mx.conv_general(D(x2), D(w2), stride=1, padding=([1, 0], [0, 2]), kernel_dilation=1, input_dilation=(2, 1), flip=True),
          ref_conv(x2, w2, [1, 1], [1, 0], [0, 2], [1, 1], 1, flip=True, in_dil=[2, 1]), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError):
        mx.conv2d(D(x2), D(w2), stride=(1, 1, 1))
    with pytest.raises(ValueError):
        mx.conv1d(D(x), D(w), groups=3)


def test_conv_transpose_and_convolve(rng):
    # the transposed convolution is the adjoint of the strided convolution
    x, w = rng.standard_normal((2, 5, 4)), rng.standard_normal((3, 3, 4))  # w (C_out=3, K=3, C_in=4)
    y = rng.standard_normal((2, 16, 3))
    for stride, pad, dil, opad in [(1, 0, 1, 0), (2, 1, 1, 1), (2, 0, 2, 0)]:
        t = mx.conv_transpose1d(D(x), D(w), stride=stride, padding=pad, dilation=dil, output_padding=opad)
        n_out = (5 - 1) * stride - 2 * pad + dil * 2 + opad + 1
        assert t.shape == (2, n_out, 3)
        yy = y[:, :n_out]
        # <conv_transpose(x), yy> == <x, conv(yy)>: the conv maps yy's 3 channels to 4 with the
        # kernel w[co, k, ci] read as (ci, k, co)
        wt = np.transpose(w, (2, 1, 0))
        cy = ref_conv(yy, wt, [stride], [pad], [pad + opad], [dil], 1)[:, :5, :]
        lhs = np.sum(np.array(t) * yy)
        assert cy.shape == x.shape
        rhs = np.sum(x * cy)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-9)
    x2, w2 = rng.standard_normal((1, 4, 3, 2)), rng.standard_normal((3, 2, 2, 2))
    assert mx.conv_transpose2d(D(x2), D(w2), stride=(2, 1), output_padding=(1, 0)).shape == (1, 9, 4, 3)
    assert mx.conv_transpose3d(D(x2[:, :, :, None]), D(w2[:, :, :, None]), stride=1).shape == (1, 5, 4, 1, 3)
    a, v = rng.standard_normal(7), rng.standard_normal(3)
    for mode in ("full", "same", "valid"):
        close(mx.convolve(D(a), D(v), mode=mode), np.convolve(a, v, mode=mode), rtol=1e-12)


# ───────────────────────────── linalg ─────────────────────────────

def spd(rng, *shape):
    m = rng.standard_normal(shape)
    n = shape[-1]
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


@pytest.mark.parametrize("shape", [(4, 4), (3, 5, 5), (2, 2, 1, 1)])
def test_cholesky_inv_solve(rng, shape):
    a = spd(rng, *shape)
    lo = mx.linalg.cholesky(D(a))
    close(lo, np.linalg.cholesky(a), rtol=1e-10, atol=1e-12)
    close(mx.linalg.cholesky(D(a), upper=True), np.swapaxes(np.linalg.cholesky(a), -1, -2), rtol=1e-10, atol=1e-12)
    close(mx.linalg.cholesky_inv(a=lo), np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    close(mx.linalg.cholesky_inv(mx.linalg.cholesky(D(a), upper=True), upper=True), np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    g = rng.standard_normal(shape) + shape[-1] * np.eye(shape[-1])
    close(mx.linalg.inv(D(g)), np.linalg.inv(g), rtol=1e-9, atol=1e-12)
    b = rng.standard_normal(shape[:-1] + (3,))
    close(mx.linalg.solve(D(g), D(b)), np.linalg.solve(g, b), rtol=1e-9, atol=1e-12)
    v = rng.standard_normal(shape[-1])
    close(mx.linalg.solve(D(g), D(v)), np.linalg.inv(g) @ v, rtol=1e-9, atol=1e-12)
    f = mx.linalg.inv(F(g))
    assert f.dtype == mx.float32
    close(f, np.linalg.inv(g), rtol=1e-4, atol=1e-5)


def test_inv_pivots_and_errors(rng):
    p = np.array([[0.0, 2, 1], [1, 0, 0], [3, 1, 0]])
    close(mx.linalg.inv(D(p)), np.linalg.inv(p), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError):
        mx.linalg.inv(D(rng.standard_normal((2, 3))))
    with pytest.raises(ValueError):
        mx.linalg.cholesky(mx.ones((2, 2), mx.int32))
    with pytest.raises(ValueError):
        mx.linalg.solve(D(p), D(rng.standard_normal(2)))
    with pytest.raises(ValueError):
        mx.linalg.qr(D(rng.standard_normal(3)))


@pytest.mark.parametrize("upper", [False, True])
def test_triangular(rng, upper):
    t = rng.standard_normal((2, 5, 5)) + 5 * np.eye(5)
    tri = np.triu(t) if upper else np.tril(t)
    b = rng.standard_normal((2, 5, 3))
    close(mx.linalg.solve_triangular(D(t), D(b), upper=upper), np.linalg.solve(tri, b), rtol=1e-10, atol=1e-12)
    close(mx.linalg.tri_inv(D(t), upper=upper), np.linalg.inv(tri), rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError):
        mx.linalg.solve_triangular(D(t), D(b), upper)  # upper is keyword-only, as MLX


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 6, 4)])
def test_qr(rng, shape):
    a = rng.standard_normal(shape)
    q, r = mx.linalg.qr(D(a))
    if a.ndim == 2:
        nq, nr = np.linalg.qr(a)
        close(q, nq, rtol=1e-10, atol=1e-12), close(r, nr, rtol=1e-10, atol=1e-12)
    else:
        for i in range(a.shape[0]):
            nq, nr = np.linalg.qr(a[i])
            close(q[i], nq, rtol=1e-10, atol=1e-12), close(r[i], nr, rtol=1e-10, atol=1e-12)


def test_cross(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3,))
    close(mx.linalg.cross(D(a), D(b)), np.cross(a, b), rtol=1e-12)
    close(mx.linalg.cross(D(a.T), D(b[:, None]), axis=0), np.cross(a.T, b[:, None], axis=0), rtol=1e-12)
    u = rng.standard_normal(2)
    close(mx.linalg.cross(D(u), D(b)), np.cross(np.append(u, 0), b), rtol=1e-12)
    with pytest.raises(ValueError):
        mx.linalg.cross(D(rng.standard_normal(4)), D(b))


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_linalg_gradients(rng):
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    w = rng.standard_normal((3, 3))
    for fn, npf in [(mx.linalg.inv, np.linalg.inv),
                    (lambda m: mx.linalg.solve(m, D(w)), lambda m: np.linalg.solve(m, w)),
                    (lambda m: mx.linalg.qr(m)[1], lambda m: np.linalg.qr(m)[1])]:
        g = mx.grad(lambda m: mx.sum(fn(m) * D(w)))(D(a))
        close(g, numeric_grad(lambda m: np.sum(npf(m) * w), a), rtol=1e-5, atol=1e-7)
    s = spd(rng, 3, 3)
    g = mx.grad(lambda m: mx.sum(mx.linalg.cholesky(m) * D(w)))(D(s))
    close(g, numeric_grad(lambda m: np.sum(np.linalg.cholesky(np.tril(m) + np.tril(m, -1).T) * w), s), rtol=1e-5, atol=1e-7)
    x = rng.standard_normal((3, 4))
    g = mx.grad(lambda t: mx.sum(mx.median(t, axis=1) ** 2))(D(x))
    close(g, numeric_grad(lambda t: np.sum(np.median(t, axis=1) ** 2), x), rtol=1e-5, atol=1e-7)


# ───────────────────────────── grad's argnames ─────────────────────────────

def test_grad_argnames(rng):
    def f(x, y=None, z=None):
        return mx.sum(x * y * y) + mx.sum(z["w"] * x)

    x, y, zw = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3)
    kw = dict(y=D(y), z={"w": D(zw)})
    pos, named = mx.grad(f, argnames="y")(D(x), **kw)
    assert pos is None and set(named) == {"y"}
    close(named["y"], 2 * x * y, rtol=1e-12)
    gx, named = mx.grad(f, argnums=0, argnames=["y", "z"])(D(x), **kw)
    close(gx, y * y + zw, rtol=1e-12)
    close(named["y"], 2 * x * y, rtol=1e-12)
    assert isinstance(named["z"], dict)
    close(named["z"]["w"], x, rtol=1e-12)
    val, (gx, named) = mx.value_and_grad(f, argnums=[0], argnames=("z",))(D(x), **kw)
    close(val, np.sum(x * y * y) + np.sum(zw * x), rtol=1e-12)
    assert isinstance(gx, mx.array)  # one position in a list: not a tuple, as MLX
    close(named["z"]["w"], x, rtol=1e-12)
    with pytest.raises(ValueError):
        mx.grad(f, argnames="q")(D(x), **kw)
    with pytest.raises(ValueError):
        mx.grad(f, argnames="y")(D(x))
    with pytest.raises(TypeError):
        mx.grad(f, argnames=3)
    with pytest.raises(ValueError):
        mx.grad(f, argnums=[])


def test_grad_argnums_order_is_ascending(rng):
    def f(a, b):
        return mx.sum(a * 2 + b * 3)

    ga, gb = mx.grad(f, argnums=(1, 0))(D(np.ones(2)), D(np.ones(2)))
    assert np.array(ga).tolist() == [2, 2] and np.array(gb).tolist() == [3, 3]
    g = mx.grad(f, argnums=[1])(D(np.ones(2)), D(np.ones(2)))
    assert isinstance(g, mx.array) and np.array(g).tolist() == [3, 3]
    with pytest.raises(ValueError, match="index 2"):
        mx.grad(f, argnums=(0, 2))(D(np.ones(2)), D(np.ones(2)))


# ───────────────────────────── existing ops the gap list named ─────────────────────────────

def test_existing_ops_behave_as_mlx(rng):
    x = rng.standard_normal((3, 4))
    assert_close(mx.nan_to_num(D([np.nan, np.inf, -np.inf, 1.0]), nan=1.0, posinf=2.0, neginf=-2.0), [1, 2, -2, 1])
    f = mx.nan_to_num(F([np.inf, -np.inf]))
    assert np.array(f).tolist() == [np.finfo(np.float32).max, np.finfo(np.float32).min]
    gx, gy = mx.meshgrid(D([1, 2, 3]), D([4, 5]))
    nx, ny = np.meshgrid([1, 2, 3], [4, 5])
    close(gx, nx, rtol=0), close(gy, ny, rtol=0)
    gx, gy = mx.meshgrid(D([1, 2, 3]), D([4, 5]), indexing="ij", sparse=True)
    nx, ny = np.meshgrid([1, 2, 3], [4, 5], indexing="ij", sparse=True)
    close(gx, nx, rtol=0), close(gy, ny, rtol=0)
    assert mx.tri(3, 4, k=1).dtype == mx.float32
    close(mx.tri(3, 4, k=1), np.tri(3, 4, k=1), rtol=0)
    close(mx.tril(D(x), k=-1), np.tril(x, -1), rtol=0), close(mx.triu(D(x), k=1), np.triu(x, 1), rtol=0)
    close(mx.einsum("ij,kj->ik", D(x), D(x)), x @ x.T, rtol=1e-12)
    y = rng.standard_normal((4, 2, 3))
    close(mx.tensordot(D(x), D(y), axes=1), np.tensordot(x, y, axes=1), rtol=1e-12)
    close(mx.tensordot(D(x), D(y), axes=([0], [2])), np.tensordot(x, y, axes=([0], [2])), rtol=1e-12)
    close(mx.inner(D(x), D(x)), np.inner(x, x), rtol=1e-12)
    close(mx.outer(D(x[0]), D(x[1])), np.outer(x[0], x[1]), rtol=1e-12)
    close(mx.trace(D(x), offset=1), np.trace(x, offset=1), rtol=1e-12)
    close(mx.diag(D(x), k=-1), np.diag(x, k=-1), rtol=0), close(mx.diag(D(x[0]), k=1), np.diag(x[0], k=1), rtol=0)
    close(mx.diagonal(D(y), offset=1, axis1=0, axis2=2), np.diagonal(y, 1, 0, 2), rtol=0)
    close(mx.roll(D(x), 2, axis=1), np.roll(x, 2, axis=1), rtol=0), close(mx.roll(D(x), -3), np.roll(x, -3), rtol=0)
    close(mx.roll(D(x), (1, 2), axis=(0, 1)), np.roll(x, (1, 2), axis=(0, 1)), rtol=0)
    close(mx.pad(D(x), ((1, 0), (2, 1)), constant_values=3.0), np.pad(x, ((1, 0), (2, 1)), constant_values=3.0), rtol=0)
    close(mx.pad(D(x), 2, mode="edge"), np.pad(x, 2, mode="edge"), rtol=0)
    with pytest.raises(ValueError):
        mx.pad(D(x), 1, mode="reflect")


def test_vmap_out_axes_per_output(rng):
    x = rng.standard_normal((3, 4))
    a, b = mx.vmap(lambda t: (t * 2, mx.sum(t)), in_axes=0, out_axes=(1, 0))(D(x))
    assert a.shape == (4, 3) and b.shape == (3,)
    close(a, 2 * x.T, rtol=0), close(b, x.sum(1), rtol=1e-12)
    a, = mx.vmap(lambda t: [t + 1], out_axes=[-1])(D(x))
    close(a, x.T + 1, rtol=0)
    with pytest.raises(ValueError):
        mx.vmap(lambda t: (t, t), out_axes=(0,))(D(x))
    with pytest.raises(ValueError):
        mx.vmap(lambda t: (t, t), out_axes=(0, None))(D(x))


def test_fast_norms(rng):
    x, w, b = rng.standard_normal((2, 3, 8)), rng.standard_normal(8), rng.standard_normal(8)
    ms = np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5)
    close(mx.fast.rms_norm(D(x), D(w), 1e-5), x / ms * w, rtol=1e-10)
    close(mx.fast.rms_norm(D(x), None, eps=1e-5), x / ms, rtol=1e-10)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    close(mx.fast.layer_norm(D(x), D(w), D(b), 1e-5), (x - mu) / np.sqrt(var + 1e-5) * w + b, rtol=1e-10)
    close(mx.fast.layer_norm(D(x), None, None, eps=1e-5), (x - mu) / np.sqrt(var + 1e-5), rtol=1e-10)


@pytest.mark.parametrize("name", ["bartlett", "blackman", "hamming", "hanning"])
def test_windows(name):
    for m in (0, 1, 2, 5, 12):
        w = getattr(mx, name)(m)
        assert w.dtype == mx.float32 and w.shape == (m,)
        close(w, getattr(np, name)(m), rtol=1e-5, atol=1e-6)
    assert getattr(mx, name)(M=4).shape == (4,)


def test_compositions_under_vmap(rng):
    a = rng.standard_normal((4, 3, 3)) + 3 * np.eye(3)
    close(mx.vmap(mx.linalg.inv)(D(a)), np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    close(mx.vmap(lambda t: mx.median(t, axis=0))(D(a)), np.median(a, axis=1), rtol=0)
    close(mx.vmap(lambda t: mx.slice(t, mx.array([1]), (0,), (2, 3)))(D(a)), a[:, 1:3, :], rtol=0)
    s = np.sort(rng.standard_normal(10)).astype(np.float32)
    v = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(np.array(mx.vmap(lambda t: mx.searchsorted(mx.array(s), t))(mx.array(v))),
                                  np.searchsorted(s, v))
