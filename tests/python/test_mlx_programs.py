"""API behaviours that whole MLX programs (models and training loops of the kind found in
public MLX example collections, run unchanged on Ponte) showed different from MLX, each
checked against numpy and, where MLX is importable, against MLX itself."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
    import mlx.nn as mlx_nn
except ImportError:
    mlx = mlx_nn = None


# ───────────────────────── BatchNorm running statistics ─────────────────────────


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (2, 3, 2, 3)])
def test_batch_norm_running_var_is_unbiased(rng, shape):
    # a VAE trained with BatchNorm and then run in eval mode depends on this: MLX updates
    # running_var with the ddof=1 variance while normalizing with the biased one
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    axes = tuple(range(len(shape) - 1))
    bn = nn.BatchNorm(3, momentum=0.3)
    y = bn(mx.array(x))
    ref = (x - x.mean(axes)) / np.sqrt(x.var(axes) + 1e-5)
    np.testing.assert_allclose(np.array(y), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(bn.running_mean), 0.3 * x.mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(bn.running_var), 0.7 + 0.3 * x.var(axes, ddof=1),
                               rtol=1e-5, atol=1e-6)
    # under value_and_grad too, and then in eval mode with the stored statistics
    bn2 = nn.BatchNorm(3, momentum=0.3)
    nn.value_and_grad(bn2, lambda m, a: m(a).sum())(bn2, mx.array(x))
    np.testing.assert_allclose(np.array(bn2.running_var), np.array(bn.running_var), rtol=1e-6)
    bn.eval()
    rv = 0.7 + 0.3 * x.var(axes, ddof=1)
    np.testing.assert_allclose(np.array(bn(mx.array(x))), (x - 0.3 * x.mean(axes)) / np.sqrt(rv + 1e-5),
                               rtol=1e-4, atol=1e-5)
    if mlx_nn is not None:
        m = mlx_nn.BatchNorm(3, momentum=0.3)
        m(mlx.array(x))
        np.testing.assert_allclose(np.array(bn2.running_var), np.array(m.running_var), rtol=1e-5)


def test_batch_norm_training_needs_more_than_one_value_per_channel():
    bn = nn.BatchNorm(4)
    with pytest.raises(ValueError):
        bn(mx.ones((1, 4)))
    with pytest.raises(ValueError):
        bn(mx.ones((1, 1, 1, 4)))
    bn.eval()  # eval mode uses the running statistics: fine
    np.testing.assert_allclose(np.array(bn(mx.ones((1, 4)))), np.full((1, 4), 1 / np.sqrt(1 + 1e-5)), rtol=1e-6)
    if mlx_nn is not None:
        with pytest.raises(ValueError):
            mlx_nn.BatchNorm(4)(mlx.ones((1, 4)))


# ──────────────── mlx.* submodules under ponte.run: ponte's modules, not copies ────────────────

ALIAS_PROGRAM = r"""
import ponte.run
ponte.run.install_mlx_alias()
import numpy as np
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.nn.utils import average_gradients, checkpoint, clip_grad_norm_sharded
import mlx.nn.utils, mlx.optimizers.optimizers, mlx.optimizers.schedulers
import ponte.nn.utils, ponte.optimizers.optimizers, ponte.optimizers.schedulers
# the same module objects, so classes and what ponte attaches are shared
assert mlx.nn.utils is ponte.nn.utils, mlx.nn.utils
assert mlx.optimizers.optimizers is ponte.optimizers.optimizers
assert mlx.optimizers.schedulers is ponte.optimizers.schedulers
assert isinstance(optim.Adam(1e-3), mlx.optimizers.optimizers.Optimizer)
assert average_gradients is nn.average_gradients
try:
    import mlx.no_such_module
    raise SystemExit("imported a module that does not exist")
except ImportError:
    pass
# checkpoint(module) differentiates as the module itself
lin = nn.Linear(3, 2)
x = mx.array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
loss = lambda m, f: (mx.tanh(f(x)) ** 2).sum()
g1 = nn.value_and_grad(lin, lambda: loss(lin, lin))()[1]
g2 = nn.value_and_grad(lin, lambda: loss(lin, checkpoint(lin)))()[1]
assert np.allclose(np.array(g1["weight"]), np.array(g2["weight"]), atol=1e-6)
assert float(np.abs(np.array(g1["weight"])).sum()) > 0
g, n = clip_grad_norm_sharded({"a": mx.array([3.0, 4.0])}, 1.0)
assert abs(n.item() - 5.0) < 1e-5 and np.allclose(np.array(g["a"]), [0.6, 0.8], atol=1e-5)
print("ALIAS-OK")
"""


def test_mlx_submodules_resolve_to_ponte_modules():
    # distributed trainers import average_gradients from mlx.nn.utils; under ponte.run that
    # import used to load a second copy of ponte/nn/utils.py named mlx.nn.utils
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", ALIAS_PROGRAM], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "ALIAS-OK" in r.stdout, r.stdout + r.stderr


def test_nn_utils_checkpoint_and_clip_grad_norm_sharded(rng):
    from ponte.nn.utils import checkpoint, clip_grad_norm_sharded
    lin = nn.Linear(4, 3)
    x = mx.array(rng.standard_normal((5, 4)).astype(np.float32))

    def loss(f):
        return (mx.sin(f(x)) * f(x)).sum()

    v1, g1 = nn.value_and_grad(lin, lambda: loss(lin))()
    v2, g2 = nn.value_and_grad(lin, lambda: loss(checkpoint(lin)))()
    # with fn: a method of the module
    v3, g3 = nn.value_and_grad(lin, lambda: loss(checkpoint(lin, lambda a: lin(a))))()
    for g in (g2, g3):
        for k in ("weight", "bias"):
            np.testing.assert_allclose(np.array(g[k]), np.array(g1[k]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v2.item(), v1.item(), rtol=1e-6)
    # input gradients flow through the checkpoint too
    gx = mx.grad(lambda a: mx.sin(checkpoint(lin)(a)).sum())(x)
    gx_ref = mx.grad(lambda a: mx.sin(lin(a)).sum())(x)
    np.testing.assert_allclose(np.array(gx), np.array(gx_ref), rtol=1e-5, atol=1e-6)
    tree = {"a": mx.array([[3.0, 0.0]]), "b": [mx.array([4.0])]}
    clipped, norm = clip_grad_norm_sharded(tree, 2.0)
    np.testing.assert_allclose(norm.item(), 5.0, rtol=1e-6)
    np.testing.assert_allclose(np.array(clipped["a"]), [[1.2, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(np.array(clipped["b"][0]), [1.6], rtol=1e-5)
    small, _ = clip_grad_norm_sharded(tree, 10.0)  # under the bound: unchanged
    np.testing.assert_allclose(np.array(small["b"][0]), [4.0], rtol=1e-6)
    if mlx_nn is not None:
        import mlx.nn.utils as mu
        ref, rn = mu.clip_grad_norm_sharded({"a": mlx.array([[3.0, 0.0]]), "b": [mlx.array([4.0])]}, 2.0)
        np.testing.assert_allclose(np.array(clipped["a"]), np.array(ref["a"]), rtol=1e-6)
        np.testing.assert_allclose(norm.item(), rn.item(), rtol=1e-6)


# ─────────────────────────── copying optimizers ───────────────────────────


def _opt_steps(opt, w, g, n):
    import ponte.optimizers as optim  # noqa: F401
    params = {"w": w}
    for _ in range(n):
        params = opt.apply_gradients({"w": g}, params)
    return params["w"]


@pytest.mark.parametrize("how", ["deepcopy", "copy", "pickle"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adafactor", "Multi"])
def test_optimizer_copies_continue_independently(rng, how, name):
    # EMA / checkpointing code deep-copies optimizers; Ponte's wrap a C object
    import copy
    import pickle
    import ponte.optimizers as optim
    if name == "Multi" and how == "pickle":
        pytest.skip("its filters are lambdas, which pickle refuses (in MLX too)")
    make = {"SGD": lambda: optim.SGD(0.1, momentum=0.9), "Adam": lambda: optim.Adam(0.05),
            "AdamW": lambda: optim.AdamW(optim.cosine_decay(0.05, 10)) if how != "pickle" else optim.AdamW(0.05),
            "Adafactor": lambda: optim.Adafactor(),
            "Multi": lambda: optim.MultiOptimizer([optim.SGD(0.1), optim.Adam(0.05)],
                                                  [lambda k, a: k == "w"])}[name]
    w = mx.array(rng.standard_normal((3, 2)).astype(np.float32))
    g = mx.array(rng.standard_normal((3, 2)).astype(np.float32))
    a = make()
    w1 = _opt_steps(a, w, g, 2)
    b = {"deepcopy": copy.deepcopy, "copy": copy.copy,
         "pickle": lambda o: pickle.loads(pickle.dumps(o))}[how](a)
    assert type(b) is type(a)
    wa = _opt_steps(a, w1, g, 2)
    wb = _opt_steps(b, w1, g, 2)  # the copy goes on from the same state ...
    np.testing.assert_allclose(np.array(wb), np.array(wa), rtol=1e-6, atol=1e-7)
    assert a.step.item() == 4 and b.step.item() == 4  # ... and the two count separately
    ref = make()
    np.testing.assert_allclose(np.array(_opt_steps(ref, w, g, 4)), np.array(wa), rtol=1e-6, atol=1e-7)
