"""mx.compile behaviours that running MLX's own test_compile against Ponte found different,
each checked against the uncompiled function (numpy) and, where MLX is importable, against
MLX itself: the compiled function's attributes, outputs whose structure depends on the
inputs' dtypes with implicit state, shapeless replays of slice updates and reshapes."""
import inspect
from functools import partial

import numpy as np
import pytest

import ponte as mx

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
except ImportError:
    mlx = None


# ───────────────────────────── attributes ─────────────────────────────


def test_compiled_function_keeps_attributes():
    def inner(x: mx.array, y: str = "a") -> mx.array:
        """Adds one."""
        return x + 1

    inner.custom = 7
    c = mx.compile(inner)
    assert c.__name__ == inner.__name__ == "inner"
    assert c.__qualname__ == inner.__qualname__
    assert c.__doc__ == inner.__doc__
    assert c.__module__ == inner.__module__
    assert c.custom == 7
    assert c.__wrapped__ is inner
    assert inspect.signature(c) == inspect.signature(inner)
    assert c(mx.array(2.0)).item() == 3.0


def test_compiled_callable_object_without_name():
    class F:
        def __call__(self, x):
            return x * 2

    c = mx.compile(F())
    assert not hasattr(c, "__name__")
    assert c(mx.array(3.0)).item() == 6.0


# ───────────────────────────── per-signature outputs ─────────────────────────────


@pytest.mark.parametrize("lib", ["ponte", "mlx"])
def test_output_structure_per_dtype_with_state(rng, lib):
    if lib == "mlx" and mlx is None:
        pytest.skip("MLX is not installed")
    m = mx if lib == "ponte" else mlx
    v = float(rng.uniform(1, 2))
    state = [m.array(v)]

    @partial(m.compile, inputs=state, outputs=state)
    def fun(y):
        x = state[0]
        if y.dtype == m.float32:
            state[0] = 2 * y
            return [x, y, x + y]
        state[0] = state[0] * 3
        return x + y

    expect = v
    for i in range(4):
        r = fun(m.array(1.5))
        assert isinstance(r, list) and len(r) == 3
        np.testing.assert_allclose([a.item() for a in r], [expect, 1.5, expect + 1.5], rtol=1e-6)
        expect = 3.0
        r = fun(m.array(2))
        assert not isinstance(r, list)
        np.testing.assert_allclose(r.item(), expect + 2, rtol=1e-6)
        expect *= 3
    np.testing.assert_allclose(state[0].item(), 9.0)


def test_output_structure_per_shape():
    @mx.compile
    def fun(x):
        return (x, x + 1) if x.shape[0] == 2 else x * 2

    for _ in range(3):
        assert isinstance(fun(mx.zeros((2,))), tuple)
        assert fun(mx.ones((3,))).tolist() == [2.0, 2.0, 2.0]
