"""ponte.optimizers against their update formulas written in numpy (several steps, a tree of
parameters), schedules, state, gradient clipping, and flat memory over 10,000 training
steps."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
import ponte.optimizers as optim
from ponte.utils import tree_flatten


def np_rule(kind, hp):
    """One step of each rule in numpy: (param, grad, state dict, lr, step) -> param."""
    def sgd(p, g, s, lr, t):
        mom, wd, damp, nest = hp.get("momentum", 0), hp.get("weight_decay", 0), hp.get("dampening", 0), hp.get("nesterov", False)
        if wd:
            g = g + wd * p
        if mom <= 0:
            return p - lr * g
        v = mom * s.get("v", 0) + (1 - damp) * g
        s["v"] = v
        return p - lr * (g + mom * v if nest else v)

    def adam(p, g, s, lr, t, wd=0.0):
        b1, b2 = hp.get("betas", (0.9, 0.999))
        eps = hp.get("eps", 1e-8)
        if kind == "adamw":
            p = p * (1 - lr * hp.get("weight_decay", 0.01))
        m = b1 * s.get("m", 0) + (1 - b1) * g
        v = b2 * s.get("v", 0) + (1 - b2) * g * g
        s["m"], s["v"] = m, v
        if hp.get("bias_correction"):
            return p - (lr / (1 - b1 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
        return p - lr * m / (np.sqrt(v) + eps)

    def rmsprop(p, g, s, lr, t):
        a, eps = hp.get("alpha", 0.99), hp.get("eps", 1e-8)
        v = a * s.get("v", 0) + (1 - a) * g * g
        s["v"] = v
        return p - lr * g / (np.sqrt(v) + eps)

    def adagrad(p, g, s, lr, t):
        v = s.get("v", 0) + g * g
        s["v"] = v
        return p - lr * g / (np.sqrt(v) + hp.get("eps", 1e-8))

    def adadelta(p, g, s, lr, t):
        rho, eps = hp.get("rho", 0.9), hp.get("eps", 1e-6)
        v = rho * s.get("v", 0) + (1 - rho) * g * g
        d = np.sqrt(s.get("u", 0) + eps) / np.sqrt(v + eps) * g
        s["u"] = rho * s.get("u", 0) + (1 - rho) * d * d
        s["v"] = v
        return p - lr * d

    def adamax(p, g, s, lr, t):
        b1, b2 = hp.get("betas", (0.9, 0.999))
        m = b1 * s.get("m", 0) + (1 - b1) * g
        v = np.maximum(b2 * s.get("v", 0), np.abs(g))
        s["m"], s["v"] = m, v
        return p - lr * m / (v + hp.get("eps", 1e-8))

    def lion(p, g, s, lr, t):
        b1, b2 = hp.get("betas", (0.9, 0.99))
        c = b1 * s.get("m", 0) + (1 - b1) * g
        s["m"] = b2 * s.get("m", 0) + (1 - b2) * g
        wd = hp.get("weight_decay", 0)
        if wd > 0:
            p = p * (1 - lr * wd)
        return p - lr * np.sign(c)

    return {"sgd": sgd, "adam": adam, "adamw": adam, "rmsprop": rmsprop, "adagrad": adagrad,
            "adadelta": adadelta, "adamax": adamax, "lion": lion}[kind]


CASES = [
    ("sgd", optim.SGD, {}), ("sgd", optim.SGD, {"momentum": 0.9, "weight_decay": 0.01}),
    ("sgd", optim.SGD, {"momentum": 0.9, "nesterov": True}), ("sgd", optim.SGD, {"momentum": 0.5, "dampening": 0.2}),
    ("adam", optim.Adam, {}), ("adam", optim.Adam, {"betas": (0.8, 0.99), "bias_correction": True}),
    ("adamw", optim.AdamW, {"weight_decay": 0.1}), ("rmsprop", optim.RMSprop, {"alpha": 0.9}),
    ("adagrad", optim.Adagrad, {}), ("adadelta", optim.AdaDelta, {"rho": 0.95}),
    ("adamax", optim.Adamax, {}), ("lion", optim.Lion, {"weight_decay": 0.1}),
]


@pytest.mark.parametrize("kind,cls,hp", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_optimizer_formulas(rng, kind, cls, hp):
    lr = 0.05
    opt = cls(lr, **hp)
    p0 = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal((2,))]}
    params = {"w": mx.array(p0["w"], mx.float64), "b": [mx.array(p0["b"][0], mx.float64)]}
    ref = {"w": p0["w"].copy(), "b": p0["b"][0].copy()}
    states = {"w": {}, "b": {}}
    rule = np_rule(kind, hp)
    for t in range(1, 5):
        gw, gb = rng.standard_normal((3, 2)), rng.standard_normal((2,))
        params = opt.apply_gradients({"w": mx.array(gw, mx.float64), "b": [mx.array(gb, mx.float64)]}, params)
        ref["w"] = rule(ref["w"], gw, states["w"], lr, t)
        ref["b"] = rule(ref["b"], gb, states["b"], lr, t)
        mx.eval(params, opt.state)
        np.testing.assert_allclose(np.array(params["w"]), ref["w"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.array(params["b"][0]), ref["b"], rtol=1e-9, atol=1e-12)
    assert opt.step.item() == 4
    assert isinstance(params["b"], list)


def test_optimizer_update_model_and_state(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    opt = optim.Adam(learning_rate=1e-2)
    assert opt.learning_rate.item() == pytest.approx(1e-2)
    assert opt.state["step"].item() == 0
    x, y = mx.array(rng.standard_normal((16, 3))), mx.array(rng.standard_normal((16, 1)))
    loss_and_grad = nn.value_and_grad(model, lambda a, b: nn.losses.mse_loss(model(a), b))
    losses = []
    for _ in range(30):
        loss, grads = loss_and_grad(x, y)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    st = opt.state
    assert st["step"].item() == 30 and set(st["layers"][0]["weight"]) == {"m", "v"}
    opt.learning_rate = 0.5
    assert opt.learning_rate.item() == 0.5
    # frozen parameters are left alone
    model.layers[0].freeze()
    w0 = model.layers[0].weight
    _, grads = loss_and_grad(x, y)
    opt.update(model, grads)
    assert model.layers[0].weight is w0
    # resuming from a saved state continues identically
    opt2 = optim.Adam(learning_rate=0.5)
    opt2.state = opt.state
    assert opt2.step.item() == opt.step.item()


def test_schedules():
    assert optim.exponential_decay(0.1, 0.9)(3).item() == pytest.approx(0.1 * 0.9 ** 3)
    assert optim.step_decay(0.1, 0.5, 10)(25).item() == pytest.approx(0.025)
    cd = optim.cosine_decay(0.1, 100, end=0.01)
    assert cd(0).item() == pytest.approx(0.1) and cd(50).item() == pytest.approx(0.055, rel=1e-5)
    assert cd(500).item() == pytest.approx(0.01)
    ls = optim.linear_schedule(0.0, 1.0, 10)
    assert ls(5).item() == pytest.approx(0.5) and ls(20).item() == pytest.approx(1.0)
    j = optim.join_schedules([optim.linear_schedule(0.0, 0.1, 10), optim.cosine_decay(0.1, 100)], [10])
    assert j(5).item() == pytest.approx(0.05) and j(10).item() == pytest.approx(0.1)
    assert j(mx.array(60)).item() == pytest.approx(0.05, rel=1e-5)
    with pytest.raises(ValueError):
        optim.join_schedules([cd], [1])
    with pytest.raises(ValueError):
        optim.linear_schedule(0, 1, 0)
    opt = optim.SGD(learning_rate=optim.step_decay(1.0, 0.5, 1))
    p = {"w": mx.array([0.0])}
    for _ in range(3):
        p = opt.apply_gradients({"w": mx.array([1.0])}, p)
    assert p["w"].item() == pytest.approx(-(1 + 0.5 + 0.25))
    opt = optim.SGD(learning_rate=lambda step: 0.1 * (step + 1))  # any callable
    p = opt.apply_gradients({"w": mx.array([1.0])}, {"w": mx.array([0.0])})
    p = opt.apply_gradients({"w": mx.array([1.0])}, p)
    assert p["w"].item() == pytest.approx(-0.3)


def test_clip_grad_norm():
    g = {"a": mx.array([3.0, 0.0]), "b": [mx.array([4.0])]}
    clipped, norm = optim.clip_grad_norm(g, 1.0)
    assert norm.item() == pytest.approx(5.0)
    total = math.sqrt(sum(np.sum(np.array(v) ** 2) for _, v in tree_flatten(clipped)))
    assert total == pytest.approx(1.0, rel=1e-4) and isinstance(clipped["b"], list)
    same, n2 = optim.clip_grad_norm(g, 10.0)
    assert same["a"].tolist() == [3.0, 0.0] and n2.item() == pytest.approx(5.0)


def test_optimizer_errors():
    with pytest.raises(ValueError):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.RMSprop(0.1, alpha=-1)
    opt = optim.Adam(0.1)
    with pytest.raises(ValueError):
        opt.apply_gradients({"w": mx.zeros((2,))}, {"w": mx.zeros((3,))})
    with pytest.raises(ValueError):
        opt.apply_gradients({"nope": mx.zeros((2,))}, {"w": mx.zeros((2,))})


def test_memory_flat_over_training_steps(rng):
    """10,000 small training steps through the Python layers keep active memory flat."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = optim.SGD(learning_rate=0.01, momentum=0.9)
    x = mx.array(rng.standard_normal((4, 8)).astype(np.float32))
    y = mx.array(rng.integers(0, 4, size=4))
    step = nn.value_and_grad(model, lambda a, b: nn.losses.cross_entropy(model(a), b, reduction="mean"))
    marks = []
    for i in range(10000):
        loss, grads = step(x, y)
        opt.update(model, grads)
        mx.eval(loss, model.parameters(), opt.state)
        if i in (500, 9999):
            marks.append(mx.get_active_memory())
    assert marks[1] <= marks[0] + 4096, marks
    assert math.isfinite(loss.item())
