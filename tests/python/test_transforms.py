"""Function transformations over Python callables: grad and value_and_grad (argnums, pytrees,
auxiliary outputs, kwargs), vjp, jvp, checkpoint, custom_function, vmap, compile; gradients
checked against finite differences; exceptions inside transformed functions propagate."""
import numpy as np
import pytest

import ponte as mx


def numeric_grad(f, x, eps=1e-3):
    """Central differences of the scalar function f (numpy in, float out) at x (float64)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


FUNCS = [
    ("poly", lambda x: mx.sum(x * x * x - 2 * x)),
    ("exp_log", lambda x: mx.sum(mx.exp(x) * mx.log(x * x + 1))),
    ("softmax", lambda x: mx.sum(mx.softmax(x, axis=-1) * mx.arange(x.shape[-1]))),
    ("matmul", lambda x: mx.sum(mx.tanh(x @ x.T))),
    ("index", lambda x: mx.sum(x[1:, ::2] ** 2) + x[0, 0]),
    ("reduce", lambda x: mx.logsumexp(x) + mx.max(x, axis=0).sum() + mx.mean(x)),
    ("where", lambda x: mx.sum(mx.where(x > 0, x, 0.1 * x))),
]


@pytest.mark.parametrize("name,f", FUNCS, ids=[n for n, _ in FUNCS])
def test_grad_finite_differences(rng, name, f):
    x = rng.uniform(-1.5, 1.5, size=(3, 4))
    g = mx.grad(f)(mx.array(x, mx.float64))
    want = numeric_grad(lambda v: f(mx.array(v, mx.float64)).item(), x, 1e-5)
    np.testing.assert_allclose(np.array(g), want, rtol=1e-5, atol=1e-6)


def test_value_and_grad_argnums_and_trees(rng):
    def loss(params, x, scale=1.0):
        return scale * mx.sum((x @ params["w"] + params["b"][0]) ** 2)

    w, b, x = rng.standard_normal((3, 2)), rng.standard_normal((2,)), rng.standard_normal((4, 3))
    params = {"w": mx.array(w, mx.float64), "b": [mx.array(b, mx.float64)]}
    val, grads = mx.value_and_grad(loss)(params, mx.array(x, mx.float64), scale=2.0)
    r = x @ w + b
    assert val.item() == pytest.approx(2 * np.sum(r * r))
    assert set(grads) == {"w", "b"} and isinstance(grads["b"], list)
    np.testing.assert_allclose(np.array(grads["w"]), 2 * x.T @ (2 * r), rtol=1e-10)
    np.testing.assert_allclose(np.array(grads["b"][0]), 2 * np.sum(2 * r, 0), rtol=1e-10)
    gx = mx.grad(loss, argnums=1)(params, mx.array(x, mx.float64))
    np.testing.assert_allclose(np.array(gx), (2 * r) @ w.T, rtol=1e-10)
    g0, g1 = mx.grad(loss, argnums=[0, 1])(params, mx.array(x, mx.float64))
    np.testing.assert_allclose(np.array(g1), (2 * r) @ w.T, rtol=1e-10)
    g0b, g1b = mx.grad(loss, argnums=(1, 0))(params, mx.array(x, mx.float64))  # MLX: ascending positions
    np.testing.assert_allclose(np.array(g0b["w"]), np.array(g0["w"]))
    np.testing.assert_allclose(np.array(g1b), np.array(g1))


def test_aux_outputs():
    def f(x):
        return mx.sum(x * x), {"double": 2 * x, "n": 3}

    (val, aux), g = mx.value_and_grad(f)(mx.array([1.0, 2.0]))
    assert val.item() == 5 and aux["double"].tolist() == [2, 4] and aux["n"] == 3
    assert g.tolist() == [2, 4]
    (v2, a2), g2 = mx.value_and_grad(lambda x: (mx.sum(x), x + 1))(mx.array([1.0]))
    assert g2.tolist() == [1] and a2.tolist() == [2]


def test_grad_of_grad_and_composition():
    x = mx.array(1.5)
    d1 = mx.grad(lambda t: t ** 3)
    d2 = mx.grad(d1)
    d3 = mx.grad(d2)
    assert d1(x).item() == pytest.approx(3 * 1.5 ** 2)
    assert d2(x).item() == pytest.approx(6 * 1.5)
    assert d3(x).item() == pytest.approx(6)
    vg = mx.value_and_grad(mx.grad(lambda t: mx.sin(t)))
    v, g = vg(x)
    assert v.item() == pytest.approx(np.cos(1.5), rel=1e-6) and g.item() == pytest.approx(-np.sin(1.5), rel=1e-6)


def test_grad_errors():
    with pytest.raises(ValueError, match="scalar"):
        mx.grad(lambda x: x * 2)(mx.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        mx.grad(lambda x: 1.0)(mx.array(1.0))
    with pytest.raises(ValueError):
        mx.grad(lambda x, y: x, argnums=3)(mx.array(1.0), mx.array(2.0))
    with pytest.raises(ValueError):
        mx.grad(lambda x: mx.sum(x))([mx.array(1.0), "str"])
    with pytest.raises(TypeError):
        mx.grad(5)


class Boom(Exception):
    pass


def test_exceptions_propagate():
    def bad(x):
        raise Boom("inside")

    for fn in [lambda: mx.grad(bad)(mx.array(1.0)),
               lambda: mx.value_and_grad(bad)(mx.array(1.0)),
               lambda: mx.vjp(bad, [mx.array(1.0)], [mx.array(1.0)]),
               lambda: mx.jvp(bad, [mx.array(1.0)], [mx.array(1.0)]),
               lambda: mx.vmap(bad)(mx.ones((3, 2))),
               lambda: mx.checkpoint(bad)(mx.array(1.0)),
               lambda: mx.grad(mx.grad(bad))(mx.array(1.0))]:
        with pytest.raises(Boom, match="inside"):
            fn()
    # the library is fine afterwards
    assert mx.grad(lambda x: x * x)(mx.array(3.0)).item() == 6

    def bad_later(x):
        y = x * 2
        return y.undefined_attribute

    with pytest.raises(AttributeError):
        mx.grad(bad_later)(mx.array(1.0))


def test_vjp_jvp(rng):
    x, y = rng.standard_normal((3,)), rng.standard_normal((3,))

    def f(a, b):
        return a * b, mx.sin(a)

    outs, vjps = mx.vjp(f, [mx.array(x), mx.array(y)], [mx.ones((3,)), mx.ones((3,))])
    assert len(outs) == 2 and len(vjps) == 2
    np.testing.assert_allclose(np.array(outs[0]), x * y, rtol=1e-6)
    np.testing.assert_allclose(np.array(vjps[0]), y + np.cos(x), rtol=1e-5)
    np.testing.assert_allclose(np.array(vjps[1]), x, rtol=1e-6)
    outs, jvps = mx.jvp(lambda a: a * a, [mx.array(x)], [mx.ones((3,))])
    np.testing.assert_allclose(np.array(jvps[0]), 2 * x, rtol=1e-6)
    with pytest.raises(ValueError):
        mx.jvp(lambda a: a, [mx.array(x)], [])


def test_stop_gradient():
    g = mx.grad(lambda x: mx.sum(x * mx.stop_gradient(x)))(mx.array([2.0, 3.0]))
    assert g.tolist() == [2, 3]


def test_checkpoint(rng):
    x = rng.standard_normal((4,))
    f = lambda a: mx.sum(mx.tanh(a) ** 2)  # noqa: E731
    g1 = mx.grad(f)(mx.array(x))
    g2 = mx.grad(mx.checkpoint(f))(mx.array(x))
    np.testing.assert_allclose(np.array(g1), np.array(g2), rtol=1e-6)
    assert mx.checkpoint(f)(mx.array(x)).item() == pytest.approx(f(mx.array(x)).item())


def test_custom_function():
    @mx.custom_function
    def f(x, y):
        return x * y

    @f.vjp
    def f_vjp(primals, cotangent, output):
        x, y = primals
        return 10 * cotangent, 20 * cotangent

    x, y = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    assert f(x, y).tolist() == [3, 8]
    gx, gy = mx.grad(lambda a, b: mx.sum(f(a, b)), argnums=(0, 1))(x, y)
    assert gx.tolist() == [10, 10] and gy.tolist() == [20, 20]

    @mx.custom_function
    def h(x):
        return mx.exp(x)

    assert h(mx.array(0.0)).item() == 1.0  # no custom rule: the function as is
    assert mx.grad(h)(mx.array(0.0)).item() == 1.0


def test_vmap(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((3,))
    f = mx.vmap(lambda a, b: mx.sum(a * b))
    np.testing.assert_allclose(np.array(mx.vmap(lambda a, b: mx.sum(a * b), in_axes=(0, None))(mx.array(x), mx.array(y))),
                               x @ y, rtol=1e-5)
    np.testing.assert_allclose(np.array(f(mx.array(x), mx.array(x))), np.sum(x * x, 1), rtol=1e-5)
    g = mx.vmap(lambda a: a * 2, in_axes=1, out_axes=1)
    np.testing.assert_allclose(np.array(g(mx.array(x))), 2 * x, rtol=1e-6)
    with pytest.raises(ValueError):
        mx.vmap(lambda a, b: a, in_axes=(0,))(mx.array(x), mx.array(x))
    h = mx.vmap(lambda d: d["a"] + d["b"])
    assert h({"a": mx.ones((2, 3)), "b": mx.ones((2, 3))}).shape == (2, 3)


def test_custom_function_jvp_rule(rng):
    x, y, t = (mx.array(rng.standard_normal(3)) for _ in range(3))

    @mx.custom_function
    def f(a, b):
        return mx.sin(a) * b

    @f.jvp
    def f_jvp(primals, tangents):
        a, b = primals
        da, db = tangents
        return 100 * da + db  # not the true derivative, so its use shows

    out, tan = mx.jvp(f, [x, y], [t, mx.zeros(3)])
    np.testing.assert_allclose(np.array(out[0]), np.sin(np.array(x)) * np.array(y), rtol=1e-6)
    np.testing.assert_allclose(np.array(tan[0]), 100 * np.array(t), rtol=1e-6)
    # reverse mode without a vjp rule differentiates the function
    g = mx.grad(lambda a, b: f(a, b).sum())(x, y)
    np.testing.assert_allclose(np.array(g), np.cos(np.array(x)) * np.array(y), rtol=1e-5)

    @mx.custom_function
    def h(a):
        return a * 2, a * 3

    @h.jvp
    def h_jvp(primal, tangent):  # one argument: the array itself, as MLX passes it
        assert isinstance(primal, mx.array) and isinstance(tangent, mx.array)
        return tangent * 10, tangent * 20

    @h.vjp
    def h_vjp(primal, cotangents, outputs):
        assert isinstance(primal, mx.array) and isinstance(cotangents, tuple)
        return cotangents[0] * 7 + cotangents[1]

    _, tans = mx.jvp(h, [x], [t])
    np.testing.assert_allclose(np.array(tans[1]), 20 * np.array(t), rtol=1e-6)
    g = mx.grad(lambda a: h(a)[0].sum())(x)
    np.testing.assert_allclose(np.array(g), np.full(3, 7.0), rtol=1e-6)

    @mx.custom_function
    def bad(a):
        return a

    @bad.jvp
    def bad_jvp(primal, tangent):
        return tangent, tangent

    with pytest.raises(ValueError):
        mx.jvp(bad, [x], [t])


def test_custom_function_vmap_rule(rng):
    x, y = rng.standard_normal((3, 2)), rng.standard_normal(2)
    seen = []

    @mx.custom_function
    def f(a, b):
        return a + b

    @f.vmap
    def f_vmap(inputs, axes):
        seen.append(axes)
        a, b = inputs
        return a * 10 + b, axes[0]  # not the function itself, so its use shows

    out = mx.vmap(f, in_axes=(0, None))(mx.array(x), mx.array(y))
    assert seen == [(0, None)]
    np.testing.assert_allclose(np.array(out), 10 * x + y, rtol=1e-6)
    np.testing.assert_allclose(np.array(f(mx.array(x), mx.array(y))), x + y, rtol=1e-6)

    @mx.custom_function
    def h(a):
        return a * 2

    @h.vmap
    def h_vmap(inputs, axes):  # one argument: the array and its axis themselves
        assert isinstance(inputs, mx.array) and axes == 1
        return inputs * 5, -1  # negative axes count from the end of the batched output

    out = mx.vmap(h, in_axes=1)(mx.array(x))
    np.testing.assert_allclose(np.array(out), 5 * x.T, rtol=1e-6)

    @mx.custom_function
    def bad(a):
        return a

    @bad.vmap
    def bad_vmap(inputs, axes):
        return inputs

    with pytest.raises(ValueError):
        mx.vmap(bad)(mx.array(x))


def test_vmap_axes_trees(rng):
    p, l0, l1 = rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((2, 3))

    def fn(d, l):
        return {"a": d["p"] * l[0], "b": l[1] * 2}

    out = mx.vmap(fn, in_axes=({"p": 0}, [None, 1]), out_axes={"a": 0, "b": 1})(
        {"p": mx.array(p)}, [mx.array(l0), mx.array(l1)])
    np.testing.assert_allclose(np.array(out["a"]), p * l0, rtol=1e-6)
    np.testing.assert_allclose(np.array(out["b"]), 2 * l1, rtol=1e-6)
    # out_axes trees over nested outputs, negative axes
    out = mx.vmap(lambda a: {"u": a, "v": (a, a)}, out_axes={"u": 1, "v": (0, -1)})(mx.array(p))
    assert out["u"].shape == (2, 3) and out["v"][0].shape == (3, 2) and out["v"][1].shape == (2, 3)
    # None: an output the batch does not change comes back unbatched
    a, b = mx.vmap(lambda x, y: (x + 1, y * 2), in_axes=(0, None), out_axes=(0, None))(
        mx.array(p), mx.array(l0))
    assert a.shape == (3, 2) and b.shape == (2,)
    np.testing.assert_allclose(np.array(b), 2 * l0, rtol=1e-6)
    with pytest.raises(ValueError):  # it varies along the batch
        mx.vmap(lambda x: x, out_axes=None)(mx.array(p))
    with pytest.raises(ValueError):  # not a prefix of the arguments
        mx.vmap(lambda x: x, in_axes=({"a": 0},))(mx.array(p))
    with pytest.raises(ValueError):
        mx.vmap(lambda x: [x, x], out_axes=(1, 0))(mx.array(p))
    with pytest.raises(ValueError):
        mx.vmap(lambda x: x, in_axes=("x",))(mx.array(p))
    with pytest.raises(ValueError):
        mx.vmap(lambda x: x, in_axes=5)(mx.array(p))


def test_compile_runs_function():
    f = lambda x: x + 1  # noqa: E731
    assert mx.compile(f)(mx.array(1)).item() == 2
    assert mx.compile(f, shapeless=True)(mx.array(1)).item() == 2
    mx.disable_compile()
    mx.enable_compile()
    with pytest.raises(TypeError):
        mx.compile(3)


def test_eval_trees():
    a, b = mx.array(1.0) + 1, mx.array(2.0) * 3
    assert mx.eval([a, {"x": (b,)}], 5, "ignored") is None
    mx.async_eval(a)
    assert a.item() == 2 and b.item() == 6


def test_transformed_metadata():
    def loss(x):
        """docs"""
        return mx.sum(x)

    g = mx.grad(loss)
    assert g.__name__ == "loss" and g.__doc__ == "docs"

    class M:
        def __init__(self):
            self.k = 2.0

        @mx.custom_function
        def f(self, x):
            return x * self.k

    assert M().f(mx.array(3.0)).item() == 6.0


def test_value_and_grad_of_a_model_with_many_parameters():
    """nn.value_and_grad over a model with 120 parameter arrays (a closure returns at most 64
    arrays; the gradients do not go through one), each gradient checked against numpy."""
    import ponte.nn as nn
    rng = np.random.default_rng(7)
    layers = [nn.Linear(4, 4) for _ in range(60)]

    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x) * 0.5
            return x

    model = Deep()
    x_np = rng.standard_normal((3, 4)).astype(np.float32)
    loss_and_grad = nn.value_and_grad(model, lambda m, x: mx.sum(m(x)))
    loss, grads = loss_and_grad(model, mx.array(x_np))
    assert len(grads["layers"]) == 60
    # numpy reference: forward, then backward through the chain of y = 0.5 (W x + b)
    ws = [np.array(layer.weight, np.float64) for layer in layers]
    bs = [np.array(layer.bias, np.float64) for layer in layers]
    acts = [x_np.astype(np.float64)]
    for w, b in zip(ws, bs):
        acts.append(0.5 * (acts[-1] @ w.T + b))
    np.testing.assert_allclose(loss.item(), acts[-1].sum(), rtol=1e-4)
    up = np.ones_like(acts[-1])
    for k in reversed(range(60)):
        g_pre = 0.5 * up
        np.testing.assert_allclose(np.array(grads["layers"][k]["weight"]), g_pre.T @ acts[k],
                                   rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(np.array(grads["layers"][k]["bias"]), g_pre.sum(0),
                                   rtol=1e-3, atol=1e-6)
        up = g_pre @ ws[k]


def test_async_eval_overlaps_graph_building():
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((64, 256)).astype(np.float32)
    x = mx.array(xs)
    with mx.stream(mx.cpu):
        y = x
        for _ in range(30):
            y = mx.tanh(y @ mx.array(np.eye(256, dtype=np.float32)) * 1.01)
        mx.async_eval(y)
        z = mx.exp(x) + 1  # built while y computes
        del x  # releasing an input the job still reads
    ref = xs.astype(np.float64)
    for _ in range(30):
        ref = np.tanh(ref * 1.01)
    np.testing.assert_allclose(np.array(y), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(z), np.exp(xs.astype(np.float64)) + 1, rtol=1e-6)
