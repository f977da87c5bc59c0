"""Gradients through complex numbers in MLX's convention: for a real loss L of z = x + iy the
gradient is dL/dx + i dL/dy, checked against central finite differences in float64 on random
inputs, for holomorphic ops, linear maps (matmul, fft), abs/real/imag and custom_function;
and vjp/jvp compared with MLX when it is importable."""
import numpy as np
import pytest

import ponte as mx

RNG = np.random.default_rng(11)


def cplx(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def numeric_grad(loss, z, eps=1e-3):
    """dL/dx + i dL/dy by central differences (L evaluated in complex128 numpy)."""
    g = np.zeros(z.shape, np.complex128)
    zf = z.astype(np.complex128)
    for idx in np.ndindex(z.shape):
        for unit in (1, 1j):
            d = np.zeros_like(zf)
            d[idx] = eps * unit
            slope = (loss(zf + d) - loss(zf - d)) / (2 * eps)
            g[idx] += slope * (1 if unit == 1 else 1j)
    return g


W = cplx(4, 4)
CASES = {
    "multiply": (lambda m, z: m.sum(m.abs(z * z[::-1]) ** 2), lambda z: np.sum(np.abs(z * z[::-1]) ** 2)),
    "exp_sin": (lambda m, z: m.sum(m.real(m.exp(z) * m.sin(z))), lambda z: np.sum(np.real(np.exp(z) * np.sin(z)))),
    "divide_log": (lambda m, z: m.sum(m.imag(m.log(z) / (z + 3))), lambda z: np.sum(np.imag(np.log(z) / (z + 3)))),
    "matmul": (lambda m, z: m.sum(m.abs(m.array(W) @ z) ** 2), lambda z: np.sum(np.abs(W.astype(np.complex128) @ z) ** 2)),
    "fft": (lambda m, z: m.sum(m.abs(m.fft.fft(z) * m.array(W[0])) ** 2),
            lambda z: np.sum(np.abs(np.fft.fft(z) * W[0]) ** 2)),
    "conj_square": (lambda m, z: m.sum(m.real(m.conjugate(z) * m.square(z))),
                    lambda z: np.sum(np.real(np.conj(z) * z * z))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_is_dLdx_plus_i_dLdy(name):
    f, ref = CASES[name]
    z = cplx(4)
    got = np.array(mx.grad(lambda a: f(mx, a))(mx.array(z)))
    want = numeric_grad(ref, z)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_real_input_through_complex_ops():
    x = RNG.standard_normal(8).astype(np.float32)
    g = np.array(mx.grad(lambda a: mx.sum(mx.abs(mx.fft.fft(a)) ** 2))(mx.array(x)))
    np.testing.assert_allclose(g, 2 * 8 * x, rtol=1e-5, atol=1e-5)  # |F x|^2 = n |x|^2
    c = 1 + 2j
    g = np.array(mx.grad(lambda a: mx.sum(mx.abs(a * c)))(mx.array(x)))
    np.testing.assert_allclose(g, abs(c) * np.sign(x), rtol=1e-6)


def test_abs_jvp_is_real():
    z, t = cplx(5), cplx(5)
    _, (jt,) = mx.jvp(lambda a: mx.abs(a), [mx.array(z)], [mx.array(t)])
    assert jt.dtype == mx.float32
    np.testing.assert_allclose(np.array(jt), np.real(np.conj(z) * t) / np.abs(z), rtol=1e-5)


def test_custom_function_speaks_the_same_convention():
    @mx.custom_function
    def f(a):
        return a * 2

    @f.vjp
    def f_vjp(primals, cotangent, output):
        return (cotangent * 2,)

    z = cplx(3)
    got = np.array(mx.grad(lambda a: mx.sum(mx.abs(f(a)) ** 2))(mx.array(z)))
    want = numeric_grad(lambda a: np.sum(np.abs(2 * a) ** 2), z)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3)


def test_vjp_matches_mlx():
    mlx = pytest.importorskip("mlx.core")
    z, w = cplx(4), cplx(4)
    fns = (lambda m: (lambda a, b: a * b), lambda m: (lambda a, b: a / b),
           lambda m: (lambda a, b: m.exp(a)[:, None] * m.sin(b)[None, :]),
           lambda m: (lambda a, b: m.fft.ifft(a * b)),
           lambda m: (lambda a, b: m.sqrt(a)[:, None] @ b[None, :]))
    for fn in fns:
        out = np.array(fn(mx)(mx.array(z), mx.array(w)))
        cot = cplx(*out.shape)
        pm = mlx.vjp(fn(mlx), [mlx.array(z), mlx.array(w)], [mlx.array(cot)])[1]
        pp = mx.vjp(fn(mx), [mx.array(z), mx.array(w)], [mx.array(cot)])[1]
        for a, b in zip(pm, pp):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-5)
