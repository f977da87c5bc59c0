"""ponte.nn: Module's tree API (parameters, children, update, freeze, apply_to_modules, train /
eval, save and load), layers and activations against their formulas in numpy, losses against
numpy, initializers, nn.value_and_grad, and ponte.utils' tree helpers."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.utils import tree_flatten, tree_map, tree_map_with_path, tree_reduce, tree_unflatten
from conftest import assert_close, rand


# ───────────────────────────── utils ─────────────────────────────

def test_tree_utils():
    tree = {"a": [1, {"b": 2}], "c": (3, 4)}
    flat = tree_flatten(tree)
    assert flat == [("a.0", 1), ("a.1.b", 2), ("c.0", 3), ("c.1", 4)]
    assert tree_flatten([[[0]]]) == [("0.0.0", 0)]
    assert tree_flatten(5) == [("", 5)]
    assert tree_flatten({"x": 1}, prefix=".m") == [("m.x", 1)]
    assert tree_unflatten(flat) == {"a": [1, {"b": 2}], "c": [3, 4]}
    assert tree_unflatten([("0.a", 1), ("2.a", 2)]) == [{"a": 1}, {}, {"a": 2}]
    assert tree_map(lambda x: x * 2, tree) == {"a": [2, {"b": 4}], "c": (6, 8)}
    assert tree_map(lambda x, y: x + y, [1, 2], [10, 20]) == [11, 22]
    assert tree_map_with_path(lambda p, x: p, tree) == {"a": ["a.0", {"b": "a.1.b"}], "c": ("c.0", "c.1")}
    assert tree_reduce(lambda acc, x: acc + x, tree, 0) == 10
    assert tree_reduce(lambda acc, x: acc + x, [1, 2, 3]) == 6
    assert tree_map(lambda x: x, [1, [2]], is_leaf=lambda x: isinstance(x, list)) == [1, [2]]


# ───────────────────────────── Module ─────────────────────────────

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 8), nn.Linear(8, 2)]
        self.norm = nn.LayerNorm(8)
        self.scale = 3.0
        self.extra = {"table": mx.zeros((2,))}
        self._private = mx.ones((1,))

    def __call__(self, x):
        return self.layers[1](nn.relu(self.norm(self.layers[0](x))))


def test_module_tree_api():
    m = MLP()
    keys = [k for k, _ in tree_flatten(m.parameters())]
    assert keys == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                    "norm.weight", "norm.bias", "extra.table"]
    assert m.scale == 3.0 and "scale" not in m and "layers" in m
    assert m.layers[0].weight.shape == (8, 4)
    assert set(m.children()) == {"layers", "norm", "extra"}  # as MLX: containers are kept
    names = sorted(n for n, _ in m.named_modules())
    assert names == ["", "layers.0", "layers.1", "norm"]
    assert len(m.modules()) == 4
    assert [k for k, _ in tree_flatten(m.leaf_modules(), is_leaf=nn.Module.is_module)] == ["layers.0", "layers.1", "norm"]
    m.freeze()
    assert tree_flatten(m.trainable_parameters()) == []
    m.unfreeze(keys=["weight"])
    assert [k for k, _ in tree_flatten(m.trainable_parameters())] == ["layers.0.weight", "layers.1.weight", "norm.weight"]
    m.unfreeze()
    m.layers[0].freeze(keys="bias")
    assert "layers.0.bias" not in dict(tree_flatten(m.trainable_parameters()))
    m.unfreeze()
    new = mx.ones((8, 4))
    m.update({"layers": [{"weight": new}]})
    assert m.layers[0].weight is new
    with pytest.raises(ValueError):
        m.update({"nope": mx.zeros(1)})
    m.update({"nope": mx.zeros(1)}, strict=False)
    seen = []
    m.apply_to_modules(lambda k, mod: seen.append(k))
    assert sorted(seen) == ["", "layers.0", "layers.1", "norm"]
    assert m.training and not m.eval().training and not m.layers[0].training
    assert m.train().layers[1].training
    m.apply(lambda p: p.astype(mx.float16))
    assert m.layers[0].weight.dtype == mx.float16
    m.set_dtype(mx.float32)
    assert m.layers[0].weight.dtype == mx.float32
    assert m(mx.zeros((3, 4))).shape == (3, 2)
    assert "Linear(input_dims=4, output_dims=8, bias=True)" in repr(m)
    del m.scale
    assert not hasattr(m, "scale")


def test_save_load_weights(tmp_path):
    m = MLP()
    for ext in [".safetensors", ".npz"]:
        path = str(tmp_path / ("w" + ext))
        m.save_weights(path)
        m2 = MLP()
        m2.load_weights(path)
        for (k, a), (k2, b) in zip(tree_flatten(m.parameters()), tree_flatten(m2.parameters())):
            assert k == k2 and a.tolist() == b.tolist()
    with pytest.raises(ValueError):
        m.save_weights(str(tmp_path / "w.bin"))
    with pytest.raises(ValueError):
        MLP().load_weights([("layers.0.weight", mx.zeros((8, 4)))])  # missing parameters
    MLP().load_weights([("layers.0.weight", mx.zeros((8, 4)))], strict=False)
    with pytest.raises(ValueError):
        MLP().load_weights([(k, mx.zeros((1,))) for k, _ in tree_flatten(m.parameters())])
    with pytest.raises(OSError):
        MLP().load_weights(str(tmp_path / "missing.safetensors"))


# ───────────────────────────── layers ─────────────────────────────

def test_linear_and_sequential(rng):
    lin = nn.Linear(5, 3)
    bound = 1 / math.sqrt(5)
    w = np.array(lin.weight)
    assert w.shape == (3, 5) and np.all(np.abs(w) <= bound)
    x = rand(rng, (4, 5))
    assert_close(lin(mx.array(x)), x @ w.T + np.array(lin.bias), rtol=1e-5, atol=1e-6)
    nb = nn.Linear(5, 3, bias=False)
    assert "bias" not in nb and nb(mx.array(x)).shape == (4, 3)
    seq = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 1))
    h = np.maximum(x @ w.T + np.array(lin.bias), 0)
    assert_close(seq(mx.array(x)), h @ np.array(seq.layers[2].weight).T + np.array(seq.layers[2].bias), rtol=1e-5, atol=1e-6)


def test_embedding_norms_dropout(rng):
    emb = nn.Embedding(10, 4)
    idx = np.array([[1, 3], [9, 0]])
    assert_close(emb(mx.array(idx)), np.array(emb.weight)[idx])
    x = rand(rng, (3, 4))
    assert_close(emb.as_linear(mx.array(x)), x @ np.array(emb.weight).T, rtol=1e-5, atol=1e-6)
    ln = nn.LayerNorm(4)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    assert_close(ln(mx.array(x)), (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    assert nn.LayerNorm(4, affine=False)(mx.array(x)).shape == (3, 4)
    rms = nn.RMSNorm(4, eps=1e-6)
    assert_close(rms(mx.array(x)), x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6), rtol=1e-4, atol=1e-5)
    d = nn.Dropout(0.5)
    y = np.array(d(mx.ones((2000,))))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    d.eval()
    assert d(mx.ones((5,))).tolist() == [1] * 5
    assert nn.Dropout(0.0)(mx.ones((3,))).tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


ACTS = [
    ("relu", lambda x: np.maximum(x, 0)), ("relu6", lambda x: np.clip(x, 0, 6)),
    ("leaky_relu", lambda x: np.where(x > 0, x, 0.01 * x)), ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
    ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    ("celu", lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x))), ("gelu", _gelu),
    ("gelu_approx", lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    ("gelu_fast_approx", lambda x: x / (1 + np.exp(-1.702 * x))), ("silu", lambda x: x / (1 + np.exp(-x))),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("log_sigmoid", lambda x: -np.log1p(np.exp(-x))),
    ("softplus", lambda x: np.log1p(np.exp(x))), ("softsign", lambda x: x / (1 + np.abs(x))),
    ("mish", lambda x: x * np.tanh(np.log1p(np.exp(x)))), ("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("hard_tanh", lambda x: np.clip(x, -1, 1)), ("tanh", np.tanh),
    ("softmax", lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ("log_softmax", lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
    ("step", lambda x: (x > 0).astype(np.float32)),
]


@pytest.mark.parametrize("name,ref", ACTS, ids=[a[0] for a in ACTS])
def test_activations(rng, name, ref):
    x = rand(rng, (3, 7), mx.float32, -4, 4)
    got = getattr(nn, name)(mx.array(x))
    assert_close(got, ref(x.astype(np.float64)), rtol=2e-5, atol=2e-5)


def test_activation_modules(rng):
    x = mx.array(rand(rng, (5,), mx.float32, -3, 3))
    for cls, fn in [(nn.ReLU, nn.relu), (nn.SiLU, nn.silu), (nn.Tanh, nn.tanh), (nn.Sigmoid, nn.sigmoid),
                    (nn.GELU, nn.gelu), (nn.Mish, nn.mish), (nn.Softplus, nn.softplus)]:
        assert cls()(x).tolist() == fn(x).tolist()
    assert nn.LeakyReLU(0.2)(x).tolist() == nn.leaky_relu(x, 0.2).tolist()
    assert nn.LeakyReLU(negative_slope=0.3)(x).tolist() == nn.leaky_relu(x, 0.3).tolist()
    assert nn.ELU(alpha=2.0)(x).tolist() == nn.elu(x, 2.0).tolist()
    assert nn.GELU(approx="tanh")(x).tolist() == nn.gelu_approx(x).tolist()
    assert nn.GELU(approx="fast")(x).tolist() == nn.gelu_fast_approx(x).tolist()
    with pytest.raises(ValueError):
        nn.GELU(approx="bogus")
    p = nn.PReLU()
    assert_close(p(x), np.where(np.array(x) > 0, np.array(x), 0.25 * np.array(x)))
    assert nn.GLU()(mx.ones((2, 4))).shape == (2, 2)


# ───────────────────────────── losses ─────────────────────────────

def _lse(x, axis=-1):
    m = x.max(axis, keepdims=True)
    return np.log(np.exp(x - m).sum(axis, keepdims=True)) + m


def test_losses(rng):
    L = nn.losses
    logits = rand(rng, (6, 5))
    t = rng.integers(0, 5, size=6)
    logp = logits - _lse(logits)
    ce = -logp[np.arange(6), t]
    assert_close(L.cross_entropy(mx.array(logits), mx.array(t)), ce, rtol=1e-5)
    assert_close(L.cross_entropy(mx.array(logits), mx.array(t), reduction="mean"), ce.mean(), rtol=1e-5)
    assert_close(L.cross_entropy(mx.array(logits), mx.array(t), reduction="sum"), ce.sum(), rtol=1e-5)
    probs = np.eye(5)[t]
    assert_close(L.cross_entropy(mx.array(logits), mx.array(probs)), ce, rtol=1e-5)
    ls = 0.1
    want = -((1 - ls) * logp[np.arange(6), t] + ls * logp.mean(-1))
    assert_close(L.cross_entropy(mx.array(logits), mx.array(t), label_smoothing=ls), want, rtol=1e-5)
    w = rand(rng, (6,), mx.float32, 0, 1)
    assert_close(L.cross_entropy(mx.array(logits), mx.array(t), weights=mx.array(w), reduction="mean"), (ce * w).mean(), rtol=1e-5)
    p, y = rand(rng, (8,)), rand(rng, (8,))
    assert_close(L.mse_loss(mx.array(p), mx.array(y)), np.mean((p - y) ** 2), rtol=1e-5)
    assert_close(L.l1_loss(mx.array(p), mx.array(y), reduction="sum"), np.sum(np.abs(p - y)), rtol=1e-5)
    d = np.abs(p - y)
    assert_close(L.smooth_l1_loss(mx.array(p), mx.array(y), beta=0.5), np.mean(np.where(d < 0.5, 0.5 * d * d / 0.5, d - 0.25)), rtol=1e-5)
    assert_close(L.huber_loss(mx.array(p), mx.array(y), delta=0.7), np.where(d <= 0.7, 0.5 * d * d, 0.7 * (d - 0.35)), rtol=1e-5)
    tb = (rng.random(8) < 0.5).astype(np.float32)
    bce = np.log1p(np.exp(p)) - tb * p
    assert_close(L.binary_cross_entropy(mx.array(p), mx.array(tb)), bce.mean(), rtol=1e-5)
    q = 1 / (1 + np.exp(-p))
    assert_close(L.binary_cross_entropy(mx.array(q), mx.array(tb), with_logits=False, reduction="none"),
                 -(tb * np.log(q) + (1 - tb) * np.log(1 - q)), rtol=1e-4)
    assert_close(L.nll_loss(mx.array(logp), mx.array(t)), ce, rtol=1e-5)
    lq = logits - _lse(logits)
    lp = rand(rng, (6, 5))
    lp = lp - _lse(lp)
    assert_close(L.kl_div_loss(mx.array(lq), mx.array(lp)), np.sum(np.exp(lp) * (lp - lq), -1), rtol=1e-4, atol=1e-6)
    assert_close(L.log_cosh_loss(mx.array(p), mx.array(y)), np.log(np.cosh(p - y)), rtol=1e-4, atol=1e-6)
    assert_close(L.hinge_loss(mx.array(p), mx.array(np.sign(y))), np.maximum(0, 1 - p * np.sign(y)), rtol=1e-5)
    with pytest.raises(ValueError):
        L.mse_loss(mx.array(p), mx.array(y), reduction="avg")
    with pytest.raises(ValueError):
        L.cross_entropy(mx.array(logits), mx.array(t), label_smoothing=1.5)


def test_init(rng):
    a = mx.zeros((200, 300))
    u = np.array(nn.init.uniform(-0.5, 0.5)(a))
    assert u.shape == (200, 300) and u.min() >= -0.5 and u.max() < 0.5
    n = np.array(nn.init.normal(1.0, 2.0)(a))
    assert abs(n.mean() - 1) < 0.05 and abs(n.std() - 2) < 0.05
    assert nn.init.constant(3.0)(a).tolist()[0][:2] == [3, 3]
    np.testing.assert_array_equal(np.array(nn.init.identity()(mx.zeros((3, 3)))), np.eye(3))
    g = np.array(nn.init.glorot_uniform()(a))
    lim = math.sqrt(6 / 500)
    assert g.min() >= -lim and g.max() <= lim and g.std() > lim / 2
    gn = np.array(nn.init.glorot_normal()(a, gain=2.0))
    assert abs(gn.std() - 2 * math.sqrt(2 / 500)) < 0.01
    h = np.array(nn.init.he_normal()(a))
    assert abs(h.std() - math.sqrt(1 / 300)) < 0.01  # gain 1, fan_in
    hu = np.array(nn.init.he_uniform()(a, mode="fan_out"))
    assert hu.max() <= math.sqrt(3 / 200) + 1e-6
    with pytest.raises(ValueError):
        nn.init.he_normal()(a, mode="bogus")


def test_nn_value_and_grad(rng):
    m = nn.Linear(3, 1)
    x, y = rand(rng, (5, 3)), rand(rng, (5, 1))
    w0 = m.weight

    def loss_fn(xx, yy):
        return nn.losses.mse_loss(m(xx), yy)

    val, grads = nn.value_and_grad(m, loss_fn)(mx.array(x), mx.array(y))
    w, b = np.array(m.weight), np.array(m.bias)
    r = x @ w.T + b - y
    assert val.item() == pytest.approx(np.mean(r ** 2), rel=1e-5)
    assert_close(grads["weight"], 2 * r.T @ x / 5, rtol=1e-4, atol=1e-6)
    assert_close(grads["bias"], 2 * r.sum(0) / 5, rtol=1e-4, atol=1e-6)
    assert m.weight is w0  # the model keeps its own arrays
    m.freeze(keys=["bias"])
    _, g2 = nn.value_and_grad(m, loss_fn)(mx.array(x), mx.array(y))
    assert set(g2) == {"weight"}
