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


# ───────────────────────────── Adafactor, Muon, MultiOptimizer ─────────────────────────────

def np_adafactor(hp):
    """One Adafactor step in numpy (mlx.optimizers.Adafactor's rule): (p, g, state, t) -> p."""
    eps1, eps2 = hp.get("eps", (1e-30, 1e-3))
    clip, decay = hp.get("clip_threshold", 1.0), hp.get("decay_rate", -0.8)
    beta_1, wd = hp.get("beta_1"), hp.get("weight_decay", 0.0)

    def rms(x):
        return math.sqrt(np.mean(np.square(x)))

    def step(p, g, s, t):
        if hp.get("relative_step", True):
            rel = min(1e-6 * t if hp.get("warmup_init", False) else 1e-2, 1 / math.sqrt(t))
        else:
            rel = hp["learning_rate"]
        alpha = max(eps2, rms(p)) * rel if hp.get("scale_parameter", True) else rel
        b2 = 1 - t ** decay
        u = g * g + eps1
        if g.ndim >= 2:
            s["exp_avg_sq_row"] = b2 * s.get("exp_avg_sq_row", 0) + (1 - b2) * u.mean(-1)
            s["exp_avg_sq_col"] = b2 * s.get("exp_avg_sq_col", 0) + (1 - b2) * u.mean(-2)
            row, col = s["exp_avg_sq_row"], s["exp_avg_sq_col"]
            r = 1 / np.sqrt(row / row.mean(-1, keepdims=True))
            u = r[..., :, None] * (1 / np.sqrt(col))[..., None, :] * g
        else:
            s["exp_avg_sq"] = b2 * s.get("exp_avg_sq", 0) + (1 - b2) * u
            u = g / np.sqrt(s["exp_avg_sq"])
        u = alpha * u / max(1.0, rms(u) / clip)
        if beta_1 is not None:
            s["exp_avg"] = u = beta_1 * s.get("exp_avg", 0) + (1 - beta_1) * u
        if wd:
            p = p - p * wd * alpha
        return p - u

    return step


def np_newton_schulz(x, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tall else x


def np_muon(hp):
    """One Muon step in numpy (mlx.optimizers.Muon's rule): (p, g, state, t) -> p."""
    mom, wd = hp.get("momentum", 0.95), hp.get("weight_decay", 0.01)
    nest, ns = hp.get("nesterov", True), hp.get("ns_steps", 5)

    def step(p, g, s, t):
        g = g + wd * p
        s["v"] = v = mom * s.get("v", 0) + (1 - mom) * g
        u = g * (1 - mom) + v * mom if nest else v
        lr = hp["learning_rate"]
        if u.ndim >= 2:
            u = np_newton_schulz(u.reshape(u.shape[0], -1), ns).reshape(u.shape)
            lr *= math.sqrt(max(1.0, u.shape[-2] / u.shape[-1]))
        return p - lr * u

    return step


SHAPES = {"mat": (4, 3), "wide": (2, 5), "batch": (2, 3, 4), "vec": (5,), "scalar": ()}

NEW_CASES = [
    (optim.Adafactor, np_adafactor, {}),
    (optim.Adafactor, np_adafactor, {"learning_rate": 0.05, "relative_step": False, "scale_parameter": False}),
    (optim.Adafactor, np_adafactor, {"beta_1": 0.9, "weight_decay": 0.1, "warmup_init": True}),
    (optim.Adafactor, np_adafactor, {"learning_rate": 0.02, "relative_step": False, "clip_threshold": 0.3,
                                     "eps": (1e-30, 0.5), "decay_rate": -0.5, "beta_1": 0.5}),
    (optim.Muon, np_muon, {"learning_rate": 0.02}),
    (optim.Muon, np_muon, {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}),
    (optim.Muon, np_muon, {"learning_rate": 0.01, "ns_steps": 3, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("cls,ref,hp", NEW_CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(NEW_CASES)])
def test_adafactor_muon_formulas(rng, cls, ref, hp):
    opt = cls(**hp)
    p0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    params = {k: mx.array(v, mx.float64) for k, v in p0.items()}
    states = {k: {} for k in SHAPES}
    rule = ref(hp)
    for t in range(1, 4):
        g = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
        params = opt.apply_gradients({k: mx.array(v, mx.float64) for k, v in g.items()}, params)
        for k in SHAPES:
            p0[k] = rule(p0[k], g[k], states[k], t)
        mx.eval(params, opt.state)
        for k in SHAPES:
            np.testing.assert_allclose(np.array(params[k]), p0[k], rtol=1e-9, atol=1e-12, err_msg=f"{k} step {t}")
    st = opt.state
    for k in SHAPES:
        assert set(st[k]) == set(states[k]), (k, set(st[k]))
        for name, v in states[k].items():
            np.testing.assert_allclose(np.array(st[k][name]), v, rtol=1e-9, atol=1e-14)
    assert st["step"].item() == 3


def test_adafactor_muon_train_and_errors(rng):
    x = mx.array(rng.standard_normal((32, 4)).astype(np.float32))
    y = mx.array(rng.standard_normal((32, 1)).astype(np.float32))
    for opt in (optim.Adafactor(), optim.Adafactor(learning_rate=1e-2, relative_step=False, beta_1=0.9),
                optim.Muon(learning_rate=0.02)):
        model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
        loss_and_grad = nn.value_and_grad(model, lambda a, b: nn.losses.mse_loss(model(a), b))
        losses = []
        for _ in range(20):
            loss, grads = loss_and_grad(x, y)
            opt.update(model, grads)
            mx.eval(model.parameters(), opt.state)
            losses.append(loss.item())
        assert losses[-1] < losses[0], (type(opt).__name__, losses)
        assert model.layers[0].weight.dtype == mx.float32
    st = optim.Adafactor().state
    assert "learning_rate" not in st and st["step"].item() == 0
    with pytest.raises(KeyError):
        optim.Adafactor().learning_rate
    assert optim.Adafactor(learning_rate=0.1).learning_rate.item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        optim.Adafactor(relative_step=False)
    with pytest.raises(ValueError):
        optim.Adafactor(eps=(1e-30,))
    with pytest.raises(ValueError):
        optim.Adafactor(clip_threshold=0.0)
    with pytest.raises(ValueError):
        optim.Muon(0.02, ns_steps=-1)
    with pytest.raises(ValueError):
        optim.Muon(0.02).apply_gradients({"w": mx.zeros((2, 3))}, {"w": mx.zeros((3, 2, 1))})


def test_multi_optimizer_groups(rng):
    """Matrices to Muon, "bias" paths to SGD with momentum and a schedule, the rest to AdamW;
    each parameter follows its own optimizer's formula."""
    muon = optim.Muon(learning_rate=0.02)
    sgd = optim.SGD(learning_rate=optim.step_decay(0.5, 0.5, 1), momentum=0.9, weight_decay=0.01)
    adamw = optim.AdamW(learning_rate=0.01, weight_decay=0.1)
    multi = optim.MultiOptimizer([muon, sgd, adamw],
                                 [lambda path, a: a.ndim >= 2, lambda path, a: path.endswith("bias")])
    shapes = {"l0": {"weight": (4, 3), "bias": (4,)}, "norm": {"scale": (4,), "bias": (4,)}, "head": (3,)}
    flat = [("l0.weight", (4, 3)), ("l0.bias", (4,)), ("norm.scale", (4,)), ("norm.bias", (4,)), ("head", (3,))]
    owner = {"l0.weight": 0, "l0.bias": 1, "norm.bias": 1, "norm.scale": 2, "head": 2}
    ref_p = {k: rng.standard_normal(s) for k, s in flat}
    ref_s = {k: {} for k, _ in flat}

    def tree(d, dtype=mx.float64):
        return {"l0": {"weight": mx.array(d["l0.weight"], dtype), "bias": mx.array(d["l0.bias"], dtype)},
                "norm": {"scale": mx.array(d["norm.scale"], dtype), "bias": mx.array(d["norm.bias"], dtype)},
                "head": mx.array(d["head"], dtype)}

    params = tree(ref_p)
    assert shapes["l0"]["weight"] == params["l0"]["weight"].shape
    sgd_rule = np_rule("sgd", {"momentum": 0.9, "weight_decay": 0.01})
    adamw_rule = np_rule("adamw", {"weight_decay": 0.1})
    muon_rule = np_muon({"learning_rate": 0.02})
    for t in range(1, 4):
        g = {k: rng.standard_normal(s) for k, s in flat}
        params = multi.apply_gradients(tree(g), params)
        for k, _ in flat:
            o = owner[k]
            if o == 0:
                ref_p[k] = muon_rule(ref_p[k], g[k], ref_s[k], t)
            elif o == 1:
                ref_p[k] = sgd_rule(ref_p[k], g[k], ref_s[k], 0.5 * 0.5 ** (t - 1), t)
            else:
                ref_p[k] = adamw_rule(ref_p[k], g[k], ref_s[k], 0.01, t)
        mx.eval(params, multi.state)
        got = dict(tree_flatten(params))
        for k, _ in flat:
            np.testing.assert_allclose(np.array(got[k]), ref_p[k], rtol=1e-9, atol=1e-12, err_msg=f"{k} step {t}")
    st = multi.state
    assert list(st) == ["states"] and len(st["states"]) == 3
    s0, s1, s2 = st["states"]
    assert set(s0["l0"]) == {"weight"} and set(s0["l0"]["weight"]) == {"v"}
    assert set(s1["l0"]) == {"bias"} and set(s1["norm"]) == {"bias"}
    assert set(s2["norm"]["scale"]) == {"m", "v"} and set(s2["head"]) == {"m", "v"}
    assert all(s["step"].item() == 3 for s in st["states"])
    # the rate of the last update (step 3 used the schedule at 2), as MLX's state holds it
    assert s1["learning_rate"].item() == pytest.approx(0.5 * 0.5 ** 2)
    assert multi.learning_rate.item() == pytest.approx(0.02)
    assert multi.step.item() == 3

    # resuming from the state into a fresh MultiOptimizer equals going on uninterrupted
    fresh = optim.MultiOptimizer([optim.Muon(learning_rate=0.02),
                                  optim.SGD(learning_rate=optim.step_decay(0.5, 0.5, 1), momentum=0.9,
                                            weight_decay=0.01),
                                  optim.AdamW(learning_rate=0.01, weight_decay=0.1)],
                                 [lambda path, a: a.ndim >= 2, lambda path, a: path.endswith("bias")])
    fresh.state = st
    assert fresh.step.item() == 3
    g = tree({k: rng.standard_normal(s) for k, s in flat})
    a, b = multi.apply_gradients(g, params), fresh.apply_gradients(g, params)
    mx.eval(a, b)
    for (k, x), (_, y) in zip(tree_flatten(a), tree_flatten(b)):
        assert np.array_equal(np.array(x), np.array(y)), k

    multi.learning_rate = 0.1
    assert multi.learning_rate.item() == pytest.approx(0.1) and sgd.learning_rate.item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        optim.MultiOptimizer([muon, sgd], [])
    with pytest.raises(ValueError):
        optim.MultiOptimizer([muon], [lambda p, a: True])
    with pytest.raises(ValueError):
        fresh.state = {"states": [{}]}
    with pytest.raises(ValueError):
        fresh.state = {"nope": []}


def test_multi_optimizer_update_model(rng):
    """MultiOptimizer over a Module: init assigns, frozen parameters are left alone, a single
    optimizer (no filters) behaves as that optimizer."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    multi = optim.MultiOptimizer([optim.Muon(learning_rate=0.02), optim.Adam(learning_rate=1e-2)],
                                 [lambda path, a: "weight" in path])
    multi.init(model.trainable_parameters())
    x = mx.array(rng.standard_normal((16, 4)).astype(np.float32))
    y = mx.array(rng.standard_normal((16, 1)).astype(np.float32))
    loss_and_grad = nn.value_and_grad(model, lambda a, b: nn.losses.mse_loss(model(a), b))
    losses = []
    for _ in range(20):
        loss, grads = loss_and_grad(x, y)
        multi.update(model, grads)
        mx.eval(model.parameters(), multi.state)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    s0, s1 = multi.state["states"]
    assert set(s0["layers"][0]) == {"weight"} and set(s1["layers"][1]) == {"bias"}
    single = optim.MultiOptimizer([optim.SGD(learning_rate=0.5)])
    p = single.apply_gradients({"w": mx.array([1.0, 2.0])}, {"w": mx.array([0.0, 0.0])})
    assert p["w"].tolist() == [-0.5, -1.0]


def _custom_optimizer_class(base, core):
    """MLX's way of writing an optimizer: momentum SGD with a decoupled decay, over
    init_single / apply_single, its rate a schedule and its decay a constant."""

    class MomentumDecay(base):
        def __init__(self, learning_rate, momentum=0.9, decay=0.01):
            super().__init__()
            self._maybe_schedule("learning_rate", learning_rate)
            self._maybe_schedule("decay", decay)
            self.momentum = momentum

        def init_single(self, parameter, state):
            state["v"] = core.zeros_like(parameter)

        def apply_single(self, gradient, parameter, state):
            v = self.momentum * state["v"] + gradient
            state["v"] = v
            lr = self.learning_rate.astype(gradient.dtype)
            return parameter * (1 - self.state["decay"].astype(gradient.dtype)) - lr * v

    return MomentumDecay


def _np_momentum_decay(params, grads, steps, lr_at, momentum=0.9, decay=0.01):
    v = {k: np.zeros_like(p) for k, p in params.items()}
    p = {k: a.copy() for k, a in params.items()}
    for t in range(steps):
        lr = lr_at(t)  # update t + 1 runs at the schedule's value for the t steps done before it
        for k in p:
            v[k] = momentum * v[k] + grads[t][k]
            p[k] = p[k] * (1 - decay) - lr * v[k]
    return p


def test_python_optimizer_subclass(rng):
    """An optimizer written against MLX's base class (init_single / apply_single, a
    scheduled rate) trains a model: numpy's formula over several steps, the state tree, a
    nested list of parameters, and mx.compile with the optimizer's state as state."""
    Opt = _custom_optimizer_class(optim.Optimizer, mx)
    sched = optim.step_decay(0.1, 0.5, 2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    params = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    grads = [{k: rng.standard_normal(a.shape).astype(np.float32) for k, a in params.items()} for _ in range(4)]
    opt = Opt(sched)
    for g in grads:
        from ponte.utils import tree_unflatten
        opt.update(model, tree_unflatten([(k, mx.array(a)) for k, a in g.items()]))
    want = _np_momentum_decay(params, grads, 4, lambda t: 0.1 * 0.5 ** (t // 2))
    got = dict(tree_flatten(model.parameters()))
    for k in want:
        np.testing.assert_allclose(np.array(got[k]), want[k], rtol=1e-5, atol=1e-6)
    assert opt.step.item() == 4
    assert sorted(opt.state.keys()) == ["decay", "layers", "learning_rate", "step"]
    assert set(opt.state["layers"][0].keys()) == {"weight", "bias"}
    np.testing.assert_allclose(opt.learning_rate.item(), 0.1 * 0.5 ** (3 // 2), rtol=1e-6)  # the 4th update's
    with pytest.raises(NotImplementedError):
        optim.Optimizer().update(model, model.parameters())

    # the same training, compiled with the model's and the optimizer's state
    model2 = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model2.update(tree_unflatten([(k, mx.array(a)) for k, a in params.items()]))
    opt2 = Opt(sched)
    state = [model2.state, opt2.state]
    from functools import partial

    @partial(mx.compile, inputs=state, outputs=state)
    def step(g):
        opt2.update(model2, g)

    for g in grads:
        step(tree_unflatten([(k, mx.array(a)) for k, a in g.items()]))
    got = dict(tree_flatten(model2.parameters()))
    for k in want:
        np.testing.assert_allclose(np.array(got[k]), want[k], rtol=1e-5, atol=1e-6)


def test_python_optimizer_subclass_matches_mlx(rng):
    """The same subclass run by MLX 0.32.4 gives the same parameters and state."""
    mlx = pytest.importorskip("mlx.core")
    mlx_optim = pytest.importorskip("mlx.optimizers")
    w0 = rng.standard_normal((3, 2)).astype(np.float32)
    grads = [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(3)]
    out = []
    for core, base, cosine in ((mx, optim.Optimizer, optim.cosine_decay),
                               (mlx, mlx_optim.Optimizer, mlx_optim.cosine_decay)):
        Opt = _custom_optimizer_class(base, core)
        o = Opt(cosine(0.2, 5), decay=0.05)
        params = {"w": [core.array(w0)]}
        for g in grads:
            params = o.apply_gradients({"w": [core.array(g)]}, params)
        out.append((np.array(params["w"][0]), np.array(o.state["w"][0]["v"]), o.step.item(),
                    float(o.learning_rate.item())))
    (pp, pv, ps, pl), (mp, mv, ms, ml) = out
    np.testing.assert_allclose(pp, mp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pv, mv, rtol=1e-6, atol=1e-7)
    assert ps == ms == 3
    np.testing.assert_allclose(pl, ml, rtol=1e-6)


def test_state_is_a_dict_kept_beside_the_c_state(rng, tmp_path):
    """optimizer.state behaves as MLX's dict: other keys put there stay (across reads and
    updates), assigning a dict replaces the whole state, "learning_rate" written there is the
    rate, and a state saved with save_safetensors and loaded into a fresh optimizer goes on as
    the uninterrupted one (numpy's SGD with momentum as the reference)."""
    from ponte.utils import tree_unflatten
    o = optim.SGD(0.1)
    o.state["hello"] = "world"
    assert o.state["hello"] == "world"
    o.state = {0: 1}
    assert o.state == {0: 1}

    lr, mom = 0.05, 0.9
    w0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(6)]
    o = optim.SGD(lr, momentum=mom)
    o.init({"w": mx.array(w0)})
    st = o.state
    assert sorted(k for k in st if isinstance(k, str)) == ["learning_rate", "step", "w"]
    st["note"] = {"epoch": 3}
    params = {"w": mx.array(w0)}
    ref, s = w0.copy(), {}
    for t, g in enumerate(grads[:3]):
        params = o.apply_gradients({"w": mx.array(g)}, params)
        ref = np_rule("sgd", {"momentum": mom})(ref, g, s, lr, t + 1)
    assert o.state is st and st["note"] == {"epoch": 3} and st["step"].item() == 3
    np.testing.assert_allclose(np.array(st["w"]["v"]), s["v"], rtol=1e-5, atol=1e-6)
    # save / load through safetensors into a fresh optimizer, then both go on
    saved = {k: v for k, v in tree_flatten(o.state) if isinstance(v, mx.array)}
    mx.save_safetensors(str(tmp_path / "opt.safetensors"), saved)
    o2 = optim.SGD(0.5, momentum=mom)
    o2.state = tree_unflatten(list(mx.load(str(tmp_path / "opt.safetensors")).items()))
    assert o2.state["step"].item() == 3 and o2.learning_rate.item() == pytest.approx(lr)
    p2 = dict(params)
    for t, g in enumerate(grads[3:]):
        params = o.apply_gradients({"w": mx.array(g)}, params)
        p2 = o2.apply_gradients({"w": mx.array(g)}, p2)
        ref = np_rule("sgd", {"momentum": mom})(ref, g, s, lr, t + 4)
    np.testing.assert_allclose(np.array(params["w"]), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(p2["w"]), ref, rtol=1e-5, atol=1e-6)
    # the rate written into the state; a replaced state without slots restarts the momentum
    o.state["learning_rate"] = mx.array(0.25)
    o.state = {"step": o.state["step"], "learning_rate": o.state["learning_rate"], "tag": "x"}
    assert o.state["tag"] == "x" and "w" not in o.state
    g = rng.standard_normal((3, 2))
    out = o.apply_gradients({"w": mx.array(g)}, {"w": mx.array(w0)})
    np.testing.assert_allclose(np.array(out["w"]), w0 - 0.25 * g, rtol=1e-5, atol=1e-6)
    assert o.state["step"].item() == 7 and o.state["tag"] == "x"
