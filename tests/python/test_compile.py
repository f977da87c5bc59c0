"""mx.compile: results equal to the plain function (numpy float64 references) on fresh random
inputs, the Python function run once per call structure (shapes, dtypes, pytree structure,
constant arguments), shapeless replay, implicit state through inputs/outputs (a Module's
parameters updated in place, matching an uncompiled twin), frozen randomness, gradients of
compiled functions, disable/enable_compile, the refusals, and a differential run against
MLX's compile when MLX is importable."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from conftest import rand


def counted(fun):
    """fun with a call counter (.calls) kept on a list the closure shares."""
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        return fun(*args, **kwargs)

    wrapper.calls = calls
    return wrapper


def test_results_and_cache(rng):
    f = counted(lambda x, y: mx.exp(x) * y + mx.sin(x) * y)
    cf = mx.compile(f)
    for shape, dtype, tol, traces in [((3, 5), mx.float32, 1e-5, 1), ((3, 5), mx.float32, 1e-5, 1),
                                      ((7,), mx.float32, 1e-5, 2), ((7,), mx.float64, 1e-12, 3),
                                      ((3, 5), mx.float32, 1e-5, 3), ((2, 2), mx.float16, 2e-3, 4)]:
        x, y = rand(rng, shape, dtype), rand(rng, shape, dtype)
        got = cf(mx.array(x, dtype), mx.array(y, dtype))
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        np.testing.assert_allclose(np.array(got.astype(mx.float64)), np.exp(x64) * y64 + np.sin(x64) * y64,
                                   rtol=tol, atol=tol)
        assert got.dtype == dtype and got.shape == shape
        assert f.calls[0] == traces


def test_pytrees_and_constants(rng):
    def fun(d, pair, scale=2.0, mode="add"):
        a, b = pair
        s = d["x"] * scale + a
        return {"sum": s + b if mode == "add" else s - b, "parts": (a, [d["x"]])}

    f = counted(fun)
    cf = mx.compile(f)
    x, a, b = (rand(rng, (4,)) for _ in range(3))
    for scale, mode, traces in [(2.0, "add", 1), (2.0, "add", 1), (3.0, "add", 2), (3.0, "sub", 3),
                                (2.0, "add", 3)]:
        out = cf({"x": mx.array(x)}, (mx.array(a), mx.array(b)), scale=scale, mode=mode)
        want = x * scale + a + (b if mode == "add" else -b)
        np.testing.assert_allclose(np.array(out["sum"]), want, rtol=1e-6)
        assert isinstance(out["parts"], tuple) and isinstance(out["parts"][1], list)
        np.testing.assert_array_equal(np.array(out["parts"][1][0]), x)
        assert f.calls[0] == traces
    # an int constant differs from a float constant of the same value
    cf({"x": mx.array(x)}, (mx.array(a), mx.array(b)), scale=2, mode="add")
    assert f.calls[0] == 4
    with pytest.raises(ValueError, match="compile"):  # as MLX
        cf({"x": mx.array(x)}, (mx.array(a), object()))


def test_capture_is_frozen_and_eval_refused(rng):
    w = mx.array(rand(rng, (3,)))
    w0 = np.array(w)
    cf = mx.compile(lambda x: x * w)
    x = rand(rng, (3,))
    np.testing.assert_allclose(np.array(cf(mx.array(x))), x * w0, rtol=1e-6)
    w = mx.zeros((3,))  # noqa: F841 (the closure sees the new w; the trace does not)
    np.testing.assert_allclose(np.array(cf(mx.array(x))), x * w0, rtol=1e-6)

    def evals(x):
        y = mx.exp(x)
        return y * y.sum().item()

    with pytest.raises(ValueError, match="eval"):
        mx.compile(evals)(mx.array(x))
    with pytest.raises(TypeError):
        mx.compile(3)


def test_random_without_state_is_frozen(rng):
    cf = mx.compile(lambda x: x + mx.random.uniform(shape=x.shape))
    x = mx.zeros((5,))
    a, b = np.array(cf(x)), np.array(cf(x))
    np.testing.assert_array_equal(a, b)  # MLX: randomness is traced once without the state


def test_shapeless(rng):
    f = counted(lambda x, y: mx.exp(x) + y * 2)
    cf = mx.compile(f, shapeless=True)
    for sx, sy in [((3, 4), (3, 4)), ((5, 2), (5, 2)), ((5, 1), (1, 6))]:
        x, y = rand(rng, sx), rand(rng, sy)
        np.testing.assert_allclose(np.array(cf(mx.array(x), mx.array(y))), np.exp(x) + 2 * y, rtol=1e-6)
    assert f.calls[0] == 1
    cf(mx.zeros((2,)), mx.zeros((2,)))  # a new rank traces again
    assert f.calls[0] == 2
    with pytest.raises(ValueError, match="shape"):
        mx.compile(lambda x: mx.sum(x), shapeless=True)(mx.zeros((3,)))


def test_module_state_in_place(rng):
    """The training pattern with the state of a Module: updated in place like the plain run."""
    mx.random.seed(3)
    model, twin = nn.Linear(4, 3), nn.Linear(4, 3)
    twin.update(model.parameters())

    def loss_fn(m, x, y):
        return mx.mean((m(x) - y) ** 2)

    def make_step(m):
        def step(x, y):
            loss, grads = nn.value_and_grad(m, loss_fn)(m, x, y)
            m.update({k: m[k] - 0.1 * grads[k] for k in ("weight", "bias")})
            return loss
        return step

    state = [model.state]
    cstep = mx.compile(make_step(model), inputs=state, outputs=state)
    pstep = make_step(twin)
    for _ in range(4):
        x, y = mx.array(rand(rng, (8, 4))), mx.array(rand(rng, (8, 3)))
        lc, lp = cstep(x, y), pstep(x, y)
        np.testing.assert_allclose(np.array(lc), np.array(lp), rtol=1e-5, atol=1e-6)
        for k in ("weight", "bias"):
            np.testing.assert_allclose(np.array(model[k]), np.array(twin[k]), rtol=1e-5, atol=1e-6)


def test_grad_of_compiled_and_compiled_grad(rng):
    fun = lambda x, y: mx.sum(mx.square(x) * y)  # noqa: E731
    x, y = rand(rng, (3, 4)).astype(np.float64), rand(rng, (3, 4)).astype(np.float64)
    ax, ay = mx.array(x, mx.float64), mx.array(y, mx.float64)
    g1 = mx.grad(mx.compile(fun))(ax, ay)
    v2, g2 = mx.compile(mx.value_and_grad(fun, argnums=(0, 1)))(ax, ay)
    np.testing.assert_allclose(np.array(g1), 2 * x * y, rtol=1e-12)
    np.testing.assert_allclose(np.array(v2), np.sum(x * x * y), rtol=1e-12)
    np.testing.assert_allclose(np.array(g2[1]), x * x, rtol=1e-12)


def test_disable_enable(rng):
    f = counted(lambda x: x + 1)
    cf = mx.compile(f)
    x = mx.array(rand(rng, (2,)))
    cf(x)
    cf(x)
    assert f.calls[0] == 1
    mx.disable_compile()
    try:
        cf(x)
        cf(x)
        assert f.calls[0] == 3
    finally:
        mx.enable_compile()
    cf(x)
    assert f.calls[0] == 3


def test_against_mlx(rng):
    mlx = pytest.importorskip("mlx.core")

    def make(m):
        def fun(x, y, k=2.0):
            return m.tanh(x) * y + m.exp(-x * k), m.maximum(x, y) - 0.5
        return fun

    x, y = rand(rng, (6, 5)), rand(rng, (6, 5))
    ours = mx.compile(make(mx))(mx.array(x), mx.array(y), k=1.5)
    theirs = mlx.compile(make(mlx))(mlx.array(x), mlx.array(y), k=1.5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-6)


def test_state_kept_elsewhere_is_pulled_and_pushed(rng):
    """A state dict with _compile_pull/_compile_push (its arrays live in another object) is
    refreshed before each call and handed back after it, traced or replayed."""
    store = {"acc": mx.zeros((3,))}

    class Held(dict):
        def _compile_pull(self):
            self.clear()
            self.update(store)

        def _compile_push(self):
            store.update(self)

    held = Held()
    held._compile_pull()
    def bump(x):  # works on the owner, as an optimizer's update works on its C state
        store["acc"] = store["acc"] + x
        return store["acc"] * 2

    f = counted(bump)
    cf = mx.compile(f, inputs=[held], outputs=[held])
    x = rand(rng, (3,))
    for k in range(1, 4):
        out = cf(mx.array(x))
        np.testing.assert_allclose(np.array(store["acc"]), k * x, rtol=1e-6)
        np.testing.assert_allclose(np.array(out), 2 * k * x, rtol=1e-6)
    store["acc"] = mx.ones((3,))  # changed outside: the next call reads it
    cf(mx.array(x))
    np.testing.assert_allclose(np.array(store["acc"]), 1 + x, rtol=1e-6)
    assert f.calls[0] == 1


def _train(compiled, make_opt, steps=4):
    import ponte.optimizers as optim  # noqa: F401
    from functools import partial
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = make_opt()

    def loss_fn(m, x, y):
        return mx.mean((m(x) - y) ** 2)

    state = [model.state, opt.state]

    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        opt.update(model, grads)
        return loss

    if compiled:
        step = partial(mx.compile, inputs=state, outputs=state)(step)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(steps):
        x = mx.array(rng.standard_normal((16, 4)).astype(np.float32))
        y = mx.array(rng.standard_normal((16, 2)).astype(np.float32))
        out.append(step(x, y).item())
    return out, opt


def test_training_pattern_sgd():
    import ponte.optimizers as optim
    plain, _ = _train(False, lambda: optim.SGD(learning_rate=0.1))
    comp, _ = _train(True, lambda: optim.SGD(learning_rate=0.1))
    np.testing.assert_allclose(comp, plain, rtol=1e-5)


def test_training_pattern_adam():
    import ponte.optimizers as optim
    plain, _ = _train(False, lambda: optim.Adam(learning_rate=0.05))
    comp, _ = _train(True, lambda: optim.Adam(learning_rate=0.05))
    np.testing.assert_allclose(comp, plain, rtol=1e-5)
