"""ponte.nn.losses' log_cosh, cosine_similarity, hinge, margin_ranking, gaussian_nll and triplet
losses (now over libponte's C functions) against numpy float64 formulas, with MLX's defaults,
every reduction, and their argument errors."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn.losses as L
from conftest import assert_close


def _red(v, reduction):
    return {"none": v, "mean": np.mean(v), "sum": np.sum(v)}[reduction]


@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 5)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_elementwise_losses(shape, reduction):
    rng = np.random.default_rng(len(shape))
    x, y = rng.uniform(-3, 3, shape), rng.uniform(-3, 3, shape)
    s = np.sign(rng.uniform(-1, 1, shape))
    v = rng.uniform(-0.2, 2, shape)
    X, Y, S, V = (mx.array(a.astype(np.float32)) for a in (x, y, s, v))
    x, y, s, v = (a.astype(np.float32).astype(np.float64) for a in (x, y, s, v))
    tol = dict(rtol=1e-4, atol=1e-5)
    assert_close(L.log_cosh_loss(X, Y, reduction=reduction), _red(np.log(np.cosh(x - y)), reduction), **tol)
    assert_close(L.hinge_loss(X, Y, reduction=reduction), _red(np.maximum(1 - x * y, 0), reduction), **tol)
    assert_close(L.margin_ranking_loss(X, Y, S, margin=0.3, reduction=reduction),
                 _red(np.maximum(-s * (x - y) + 0.3, 0), reduction), **tol)
    vv = np.maximum(v, 1e-2)
    g = 0.5 * (np.log(vv) + (y - x) ** 2 / vv)
    assert_close(L.gaussian_nll_loss(X, Y, V, eps=1e-2, reduction=reduction), _red(g, reduction), **tol)
    assert_close(L.gaussian_nll_loss(X, Y, V, full=True, eps=1e-2, reduction=reduction),
                 _red(g + 0.5 * math.log(2 * math.pi), reduction), **tol)


@pytest.mark.parametrize("shape,axis", [((7,), 0), ((4, 6), 1), ((4, 6), -1), ((2, 3, 5), 1), ((2, 3, 5), -1)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_axis_losses(shape, axis, reduction):
    rng = np.random.default_rng(7)
    a, p, n = (rng.uniform(-2, 2, shape).astype(np.float32) for _ in range(3))
    A, P, N = (mx.array(t) for t in (a, p, n))
    a, p, n = (t.astype(np.float64) for t in (a, p, n))
    cs = np.sum(a * p, axis) / np.maximum(np.linalg.norm(a, axis=axis) * np.linalg.norm(p, axis=axis), 1e-8)
    assert_close(L.cosine_similarity_loss(A, P, axis=axis, reduction=reduction), _red(cs, reduction), rtol=1e-5, atol=1e-6)

    def d(u, w, k):
        return np.sqrt(np.sum((u - w) ** k, axis) + 1e-6)
    for k, margin in ((2, 1.0), (4, 0.5)):
        t = np.maximum(d(a, p, k) - d(a, n, k) + margin, 0)
        assert_close(L.triplet_loss(A, P, N, axis=axis, p=k, margin=margin, reduction=reduction),
                     _red(t, reduction), rtol=1e-5, atol=1e-5)


def test_defaults_and_errors():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (3, 4))
    A, B = mx.array(a), mx.array(b)
    # MLX defaults: cosine along axis 1, triplet along -1 with p=2 margin=1, gaussian_nll mean
    cs = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert_close(L.cosine_similarity_loss(A, B), cs, rtol=1e-10)
    assert L.gaussian_nll_loss(A, B, mx.abs(A)).shape == ()
    assert L.triplet_loss(A, B, A).shape == (3,)
    with pytest.raises(ValueError):
        L.margin_ranking_loss(A, B, mx.array(a.T))
    with pytest.raises(ValueError):
        L.gaussian_nll_loss(A, B, mx.array(a[:2]))
    with pytest.raises(ValueError):
        L.hinge_loss(A, B, reduction="avg")
    with pytest.raises(ValueError):
        L.cosine_similarity_loss(A, B, axis=2)


def test_loss_gradient():
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-2, 2, (5,)), rng.uniform(-2, 2, (5,))
    g = mx.grad(lambda t: L.log_cosh_loss(t, mx.array(y), reduction="sum"))(mx.array(x))
    assert_close(g, np.tanh(x - y), rtol=1e-10)


def test_activations2():
    import ponte.nn as nn
    rng = np.random.default_rng(9)
    for shape in ((7,), (3, 4), (2, 3, 5)):
        x = rng.uniform(-3, 3, shape)
        X = mx.array(x)
        assert_close(nn.softshrink(X), np.where(np.abs(x) > 0.5, x - np.sign(x) * 0.5, 0), rtol=1e-12)
        assert_close(nn.Softshrink(0.8)(X), np.where(np.abs(x) > 0.8, x - np.sign(x) * 0.8, 0), rtol=1e-12)
        assert_close(nn.hard_shrink(X, 0.7), np.where(np.abs(x) > 0.7, x, 0), rtol=1e-12)
        assert_close(nn.HardShrink()(X), np.where(np.abs(x) > 0.5, x, 0), rtol=1e-12)
        e = np.exp(-x - np.max(-x, -1, keepdims=True))
        assert_close(nn.softmin(X), e / e.sum(-1, keepdims=True), rtol=1e-10)
        assert_close(nn.Softmin()(X), e / e.sum(-1, keepdims=True), rtol=1e-10)
        s = nn.step(X, 0.5)
        assert s.dtype == mx.int32
        assert_close(s, (x > 0.5).astype(np.int32))
    with pytest.raises(ValueError):
        nn.softmin(mx.array(rng.uniform(-1, 1, (2, 3))), axis=2)


def test_initializers2():
    import ponte.nn as nn
    a = mx.zeros((3, 4))
    c = nn.init.constant(0.5)(a)
    assert c.dtype == mx.float32 and c.shape == (3, 4)
    assert_close(c, np.full((3, 4), 0.5))
    assert_close(nn.init.identity()(mx.zeros((4, 4))), np.eye(4))
    with pytest.raises(ValueError):
        nn.init.identity()(a)
    s = np.array(nn.init.sparse(0.3, mean=1.0, std=0.1)(mx.zeros((50, 10))))
    assert s.shape == (50, 10)
    assert np.all(np.sum(s == 0, axis=1) == 3)
    assert abs(s[s != 0].mean() - 1.0) < 0.05
    with pytest.raises(ValueError):
        nn.init.sparse(0.5)(mx.zeros((2, 2, 2)))
    for shape in ((6, 6), (8, 3), (3, 8)):
        q = np.array(nn.init.orthogonal(gain=2.0)(mx.zeros(shape))).astype(np.float64)
        g = q.T @ q if shape[0] >= shape[1] else q @ q.T
        np.testing.assert_allclose(g, 4 * np.eye(min(shape)), atol=1e-4)
    with pytest.raises(ValueError):
        nn.init.orthogonal()(mx.zeros((4,)))
