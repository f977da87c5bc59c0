"""mlx.core surface, part 3 (issue 4): random.state, device_info / metal.device_info,
clear_streams, new_thread_local_stream, and the signature tables of the bindings (keyword
names, positional-only and keyword-only parameters, defaults, error types); against MLX when
it is importable, else against numpy and fixed expectations."""
import platform
import threading

import numpy as np
import pytest

import ponte as mx

from conftest import rand

try:
    import mlx.core as mlx
except ImportError:  # the differential parts skip
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="MLX is not importable")


# ───────────────────────────── random.state ─────────────────────────────

@pytest.mark.parametrize("seed", [0, 3, 12345, 2**40 + 7])
def test_random_state_follows_seed(seed):
    mx.random.seed(seed)
    st = mx.random.state
    assert len(st) == 1
    key = st[0]
    assert key.dtype == mx.uint32 and key.shape == (2,)
    np.testing.assert_array_equal(np.array(key), [seed >> 32, seed & 0xFFFFFFFF])
    np.testing.assert_array_equal(np.array(key), np.array(mx.random.key(seed)))


def test_random_state_advances_with_draws_and_resets():
    mx.random.seed(5)
    k0 = np.array(mx.random.state[0])
    mx.random.uniform(shape=(3,))
    k1 = np.array(mx.random.state[0])
    assert not np.array_equal(k0, k1)
    mx.random.seed(5)
    np.testing.assert_array_equal(np.array(mx.random.state[0]), k0)
    # the same object, read afresh; iteration and negative index
    assert mx.random.state is mx.random.state
    (only,) = list(mx.random.state)
    np.testing.assert_array_equal(np.array(only), k0)
    np.testing.assert_array_equal(np.array(mx.random.state[-1]), k0)
    with pytest.raises(IndexError):
        mx.random.state[1]
    assert "array" in repr(mx.random.state)


def test_random_state_keyed_draws_leave_it():
    mx.random.seed(9)
    k0 = np.array(mx.random.state[0])
    mx.random.normal((4,), key=mx.random.key(1))
    np.testing.assert_array_equal(np.array(mx.random.state[0]), k0)


@needs_mlx
@pytest.mark.parametrize("seed", [0, 3, 77])
def test_random_state_matches_mlx(seed):
    for lib in (mx, mlx):
        lib.random.seed(seed)
    for step in range(3):
        np.testing.assert_array_equal(np.array(mx.random.state[0]), np.array(mlx.random.state[0]))
        mx.random.normal((2,))
        mlx.random.normal((2,))


# ───────────────────────────── device_info ─────────────────────────────

def test_device_info_cpu():
    info = mx.device_info(mx.cpu)
    assert info["architecture"] == platform.machine()
    assert isinstance(info["device_name"], str)
    assert info["memory_size"] > 0 and 0 < info["free_memory"] <= info["memory_size"]
    assert mx.device_info(mx.Device(mx.cpu)) == {**info, "free_memory": mx.device_info(mx.cpu)["free_memory"]}
    assert set(mx.device_info(d=mx.cpu)) == set(info)


def test_device_info_default_and_gpu():
    info = mx.device_info()
    assert set(info) == set(mx.device_info(mx.default_device()))
    gpu = mx.device_info(mx.gpu)
    if not mx.is_available(mx.gpu):
        assert gpu == {}
    else:
        assert gpu["architecture"].startswith("sm_")
        assert gpu["total_memory"] > 0 and 0 <= gpu["free_memory"] <= gpu["total_memory"]
        assert gpu["device_name"]
    assert mx.metal.device_info() == {}
    with pytest.raises(TypeError):
        mx.device_info("cpu")
    with pytest.raises(TypeError):
        mx.device_info(mx.cpu, mx.cpu)


@needs_mlx
def test_device_info_matches_mlx_keys():
    ours, theirs = mx.device_info(mx.cpu), mlx.device_info(mlx.cpu)
    assert set(theirs) <= set(ours)
    for k, v in theirs.items():
        assert type(ours[k]) is type(v)
    assert ours["device_name"] == theirs["device_name"]
    assert ours["architecture"] == theirs["architecture"]
    assert mx.metal.device_info() == mlx.metal.device_info()


# ───────────────────────────── streams ─────────────────────────────

def test_clear_streams_restores_default(rng):
    original = mx.default_stream(mx.cpu)
    s = mx.new_stream(mx.cpu)
    mx.set_default_stream(s)
    assert mx.default_stream(mx.cpu) == s
    assert mx.clear_streams() is None
    assert mx.default_stream(mx.cpu) == original
    x = rand(rng, (3, 4))
    np.testing.assert_allclose(np.array(mx.sum(mx.array(x), axis=1)), x.sum(1), rtol=1e-5)


def test_new_thread_local_stream(rng):
    s = mx.new_thread_local_stream(mx.cpu)
    t = mx.new_thread_local_stream(mx.Device(mx.cpu))
    assert s.device == mx.cpu and t.device == mx.cpu and s != t
    x = rand(rng, (5,))
    out = {}

    def work():
        out["y"] = np.array(mx.exp(mx.array(x), stream=s))

    th = threading.Thread(target=work)
    th.start()
    th.join()
    np.testing.assert_allclose(out["y"], np.exp(x), rtol=1e-6)
    with mx.stream(t):
        np.testing.assert_allclose(np.array(mx.sqrt(mx.array(np.abs(x)))), np.sqrt(np.abs(x)), rtol=1e-6)
    with pytest.raises(TypeError):
        mx.new_thread_local_stream(3)


@needs_mlx
def test_stream_functions_exist_as_in_mlx():
    for name in ("clear_streams", "new_thread_local_stream", "device_info"):
        assert hasattr(mlx, name) and hasattr(mx, name)


# ───────────────────────────── signature tables ─────────────────────────────

def test_keywords_defaults_and_markers(rng):
    x = rand(rng, (3, 4))
    a = mx.array(x)
    np.testing.assert_allclose(np.array(mx.sum(a, axis=0, keepdims=True)), x.sum(0, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.array(mx.var(a, 1, False, 1)), x.var(1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(np.array(mx.add(a=a, b=2)), x + 2, rtol=1e-6)
    np.testing.assert_allclose(np.array(mx.cumsum(a, 1, reverse=True)), np.cumsum(x[:, ::-1], 1)[:, ::-1], rtol=1e-5)
    np.testing.assert_allclose(np.array(mx.tril(x=a, k=-1)), np.tril(x, -1))
    np.testing.assert_allclose(np.array(mx.diagonal(a, 1, 0, 1, None)), np.diagonal(x, 1))  # stream positional
    np.testing.assert_array_equal(np.array(mx.sort(a)), np.sort(x, -1))
    np.testing.assert_array_equal(np.array(mx.sort(a, axis=None)), np.sort(x, None))
    assert mx.zeros((2,)).dtype == mx.float32 and mx.zeros((2,), None).dtype == mx.float32
    assert mx.zeros_like(mx.array([1, 2])).dtype == mx.int32
    assert mx.full((2,), 3).dtype == mx.int32 and mx.full_like(a, 3).dtype == mx.float32
    assert mx.trace(a, dtype=mx.int32).dtype == mx.int32
    assert mx.cumsum(mx.array([1, 2]), dtype=mx.float32).dtype == mx.float32
    np.testing.assert_array_equal(np.array(mx.repeat(mx.array([1, 2]), 2)), [1, 1, 2, 2])
    # positional-only first parameters, keyword-only streams
    with pytest.raises(TypeError):
        mx.sum(a=a)
    with pytest.raises(TypeError):
        mx.exp(a, None)
    with pytest.raises(TypeError):
        mx.cumsum(a, 0, True)
    with pytest.raises(TypeError):
        mx.sum(a, bogus=1)
    with pytest.raises(TypeError):
        mx.reshape(a)
    with pytest.raises(TypeError):
        mx.expand_dims(a, None)
    with pytest.raises(TypeError):
        mx.astype(a, "float32")
    with pytest.raises(TypeError):
        mx.swapaxes(a, 0, 1.5)
    with pytest.raises(ValueError):
        mx.clip(a, None, None)
    with pytest.raises(ValueError):
        mx.searchsorted(mx.array([1, 2]), 1, side="middle")
    with pytest.raises(ValueError):
        mx.reshape(a, (5,))                                   # the core's error


def test_weak_scalars_and_streams(rng):
    a = mx.array(rand(rng, (3,)).astype(np.float32)).astype(mx.float16)
    assert mx.add(a, 1).dtype == mx.float16 and mx.add(1, a).dtype == mx.float16
    assert mx.multiply(a, 2.5).dtype == mx.float16
    assert mx.add(1, 2).dtype == mx.int32 and mx.add(1, 2.5).dtype == mx.float32
    assert mx.clip(a, 0, 1).dtype == mx.float16
    assert mx.full_like(a, 2).dtype == mx.float16
    assert mx.isclose(a, 1).dtype == mx.bool_
    with pytest.raises(ValueError):
        mx.add(mx.array([1], dtype=mx.int8), 1000)            # the scalar does not fit int8
    s = mx.new_stream(mx.cpu)
    np.testing.assert_allclose(np.array(mx.exp(a, stream=s)), np.exp(np.array(a)), rtol=2e-3)
    np.testing.assert_allclose(np.array(mx.sum(a, stream=mx.cpu)), np.array(a).sum(), rtol=2e-3)
    with pytest.raises(TypeError):
        mx.exp(a, stream="cpu")


def test_submodule_rows(rng):
    x = rand(rng, (4, 4))
    spd = x @ x.T + 4 * np.eye(4)
    np.testing.assert_allclose(np.array(mx.linalg.inv(mx.array(spd), stream=mx.cpu)), np.linalg.inv(spd), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.array(mx.linalg.cholesky(mx.array(spd), upper=True)),
                               np.linalg.cholesky(spd).T, rtol=1e-4, atol=1e-5)
    w = rand(rng, (4,))
    ref = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(np.array(mx.fast.rms_norm(mx.array(x), mx.array(w), 1e-5)), ref, rtol=1e-4)
    k = mx.random.key(0)
    assert mx.random.normal((2, 3), key=k).shape == (2, 3)
    assert mx.random.bits((2,), key=k).dtype == mx.uint32
    assert mx.random.bernoulli(shape=(5,), key=k).dtype == mx.bool_
    with pytest.raises(TypeError):
        mx.random.split(3)
    with pytest.raises(TypeError):
        mx.random.bernoulli(None)


@needs_mlx
@pytest.mark.parametrize("call", [
    lambda m, a: m.sum(a, axis=1, keepdims=True),
    lambda m, a: m.mean(a, axis=(0, 1)),
    lambda m, a: m.std(a, axis=0, ddof=1),
    lambda m, a: m.argmax(a, axis=1, keepdims=True),
    lambda m, a: m.logcumsumexp(a, axis=1, reverse=True),
    lambda m, a: m.softmax(a, axis=-1, precise=True),
    lambda m, a: m.flatten(a, start_axis=0, end_axis=-1),
    lambda m, a: m.moveaxis(a, source=0, destination=1),
    lambda m, a: m.topk(a, k=2, axis=1),
    lambda m, a: m.take(a, m.array([0, 2]), axis=1),
    lambda m, a: m.isclose(a, a + 1e-7, rtol=1e-3, equal_nan=True),
    lambda m, a: m.round(a, decimals=2),
    lambda m, a: m.where(a > 0, a, 0.5),
    lambda m, a: m.power(2, a),
    lambda m, a: m.full_like(a, 7, dtype=m.int32),
    lambda m, a: m.tile(a, (2, 1)),
    lambda m, a: m.diag(a, k=1),
    lambda m, a: m.linalg.cross(a[:, :3], a[:, 1:4], axis=-1),
])
def test_signature_rows_match_mlx(call, rng):
    x = rand(rng, (3, 4))
    r_m, r_p = call(mlx, mlx.array(x)), call(mx, mx.array(x))
    assert str(r_m.dtype).split(".")[-1] == str(r_p.dtype).split(".")[-1]
    np.testing.assert_allclose(np.array(r_p), np.array(r_m), rtol=1e-5, atol=1e-6)


def test_random_state_as_compile_state():
    from functools import partial

    @partial(mx.compile, inputs=mx.random.state, outputs=mx.random.state)
    def draw(x):
        return x + mx.random.uniform(shape=(2,))

    mx.random.seed(1)
    a, b = np.array(draw(mx.zeros(2))), np.array(draw(mx.zeros(2)))
    assert not np.array_equal(a, b)
    mx.random.seed(1)
    np.testing.assert_array_equal(np.array(draw(mx.zeros(2))), a)
    if mlx is not None:
        @partial(mlx.compile, inputs=mlx.random.state, outputs=mlx.random.state)
        def draw_mlx(x):
            return x + mlx.random.uniform(shape=(2,))

        mlx.random.seed(1)
        np.testing.assert_allclose(np.array(draw_mlx(mlx.zeros(2))), a, rtol=1e-6)
        np.testing.assert_allclose(np.array(draw_mlx(mlx.zeros(2))), b, rtol=1e-6)


def test_metal_capture_and_wired_limit_and_arraylike():
    """Metal's capture and wired limit do nothing in Ponte (MLX on Linux: None, and the
    previous limit); ArrayLike exists for type hints and matches nothing, as MLX's."""
    assert mx.metal.start_capture("/tmp/ponte-capture.gputrace") is None
    assert mx.metal.stop_capture() is None
    assert mx.metal.set_wired_limit(0) == 0
    with pytest.raises(TypeError):
        mx.metal.start_capture(3)
    import ponte.core as core
    assert core.ArrayLike is mx.ArrayLike
    assert not isinstance(mx.array(1.0), mx.ArrayLike)
    assert mx.ArrayLike([1, 2]).obj == [1, 2]


@needs_mlx
def test_surface_names_match_mlx():
    """Every public name of mlx.core and its submodules, mlx.nn (with init and losses),
    mlx.optimizers and mlx.utils exists in Ponte (typing helpers and imported modules aside)."""
    import importlib
    import types
    import ponte.nn
    import ponte.optimizers
    import ponte.utils
    mnn, mopt, mutils = (importlib.import_module(n) for n in ("mlx.nn", "mlx.optimizers", "mlx.utils"))

    def defined_here(mod, obj):  # not a name imported from typing, math or another mlx module
        home = getattr(obj, "__module__", None) or mod.__name__
        return home.startswith(mod.__name__) or (mod.__name__.startswith(home) and home.startswith("mlx"))

    def public(mod):
        return {n for n in dir(mod) if not n.startswith("_")
                and not isinstance(getattr(mod, n), types.ModuleType) and defined_here(mod, getattr(mod, n))}

    pairs = [(mlx, mx), (mnn, ponte.nn), (mnn.init, ponte.nn.init),
             (mnn.losses, ponte.nn.losses), (mopt, ponte.optimizers), (mutils, ponte.utils)]
    pairs += [(getattr(mlx, s), getattr(mx, s)) for s in
              ("random", "linalg", "fft", "fast", "distributed", "metal", "cuda")]
    missing = {}
    for theirs, ours in pairs:
        gone = sorted(n for n in public(theirs) if not hasattr(ours, n))
        if gone:
            missing[theirs.__name__] = gone
    assert not missing, missing
    assert not [n for n in dir(mlx.array) if not n.startswith("_") and not hasattr(mx.array, n)]


def _rejects_keyword(fn, name):
    """Whether calling fn with only the keyword `name` fails because of the keyword itself
    (any other error, missing arguments or a bad value, means the name is accepted)."""
    try:
        fn(**{name: object()})
    except TypeError as e:
        msg = str(e)
        return any(s in msg for s in ("unexpected keyword", "invalid keyword", "takes no keyword"))
    except Exception:
        pass
    return False


def _nb_keyword_names(sig_text):
    """The parameters of a nanobind signature `def f(a, /, b=..., *, c=...)` that can be
    passed by name (after the `/`; *args and **kwargs left out)."""
    return [name for name, kind, _ in _nb_params((sig_text, None, ())) if kind != "PO"]


@needs_mlx
def test_every_mlx_keyword_is_accepted():
    """Every parameter MLX's functions take by name (mlx.core and its submodules, from their
    nanobind signatures; mlx.nn, its losses and init, mlx.optimizers, from their Python
    signatures) is taken by name by Ponte's function or class of the same name."""
    import importlib
    import inspect
    import ponte.nn
    import ponte.optimizers
    mlx_nn, mlx_optim = importlib.import_module("mlx.nn"), importlib.import_module("mlx.optimizers")
    rejected = []
    core_mods = [("", mlx, mx)] + [(s + ".", getattr(mlx, s), getattr(mx, s))
                                   for s in ("random", "linalg", "fft", "fast", "distributed", "metal", "cuda")]
    for prefix, mm, pm in core_mods:
        for name in dir(mm):
            sigs = getattr(getattr(mm, name), "__nb_signature__", None)
            if name.startswith("_") or not sigs:
                continue
            for sig in sigs:
                rejected += [f"{prefix}{name}({kw}=)" for kw in _nb_keyword_names(sig[0])
                             if _rejects_keyword(getattr(pm, name), kw)]
    a = mx.array([[1.0, 2.0], [3.0, 4.0]])
    for name in dir(mlx.array):
        sigs = getattr(getattr(mlx.array, name), "__nb_signature__", None)
        if name.startswith("_") or not sigs:
            continue
        for sig in sigs:
            rejected += [f"array.{name}({kw}=)" for kw in _nb_keyword_names(sig[0])
                         if kw != "self" and _rejects_keyword(getattr(a, name), kw)]
    py_mods = [("nn.", mlx_nn, ponte.nn), ("nn.losses.", mlx_nn.losses, ponte.nn.losses),
               ("nn.init.", mlx_nn.init, ponte.nn.init), ("optimizers.", mlx_optim, ponte.optimizers)]
    for prefix, mm, pm in py_mods:
        for name in dir(mm):
            f = getattr(mm, name)
            if name.startswith("_") or not callable(f) or not getattr(f, "__module__", "").startswith(mm.__name__):
                continue  # typing helpers and names the module imports from elsewhere
            try:
                params = inspect.signature(f).parameters.values()
            except (TypeError, ValueError):
                continue
            for p in params:
                if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
                    continue
                if _rejects_keyword(getattr(pm, name), p.name):
                    rejected.append(f"{prefix}{name}({p.name}=)")
    assert not rejected, "keywords MLX takes and Ponte refuses: " + ", ".join(rejected)


def test_var_std_methods_take_correction(rng):
    """a.var / a.std take the array API's keyword-only correction, which replaces ddof (numpy's
    ddof is the reference); the module's functions keep MLX's signature."""
    x = rng.standard_normal((4, 5)).astype(np.float32)
    a = mx.array(x)
    np.testing.assert_allclose(np.array(a.var(axis=1, correction=1)), x.var(axis=1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(np.array(a.std(correction=0)), x.std(), rtol=1e-5)
    np.testing.assert_allclose(np.array(a.var(ddof=1, correction=2)), x.var(ddof=2), rtol=1e-5)
    np.testing.assert_allclose(np.array(a.std(0, True, 1, correction=None)), x.std(0, ddof=1, keepdims=True), rtol=1e-5)
    with pytest.raises(TypeError):
        mx.var(a, correction=1)


def _nb_params(sig):
    """MLX's parameters from one nanobind signature (text, doc, defaults): [(name, kind,
    default)] with kind "PO", "POK" or "KO", default a Python value, the text of a default
    that is not a literal, or inspect.Parameter.empty."""
    import ast
    import inspect
    import re
    text, _, defaults = sig
    body = re.match(r"def \w+\((.*)\)(\s*->.*)?$", text, re.S).group(1)
    parts, depth, cur = [], 0, ""
    for ch in body:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts += [cur.strip()] if cur.strip() else []
    kind, out = "PO" if "/" in parts else "POK", []
    for p in parts:
        if p in ("/", "*"):
            kind = "POK" if p == "/" else "KO"
            continue
        if p.startswith("*"):
            continue
        name, default = p.split(":")[0].split("=")[0].strip(), inspect.Parameter.empty
        if "=" in p:
            d = p.split("=", 1)[1].strip()
            ref = re.fullmatch(r"\\(\d+)", d)
            try:
                default = defaults[int(ref.group(1))] if ref else ast.literal_eval(d)
            except (ValueError, SyntaxError, TypeError, IndexError):
                default = d
        out.append((name, kind, default))
    return out


@needs_mlx
def test_signatures_match_mlx():
    """Where a Ponte function shows its signature (inspect.signature: the signature tables'
    functions), it agrees with one of MLX's: each of MLX's parameters is there, under the same
    name where MLX lets it be passed by name, no stricter (positional-only or keyword-only where
    MLX is not), with the same default; Ponte's extra parameters have defaults."""
    import inspect
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "PO", inspect.Parameter.POSITIONAL_OR_KEYWORD: "POK",
             inspect.Parameter.KEYWORD_ONLY: "KO"}
    # p=None draws at 0.5, the same bits as MLX's default
    allowed = {("random.bernoulli", "p")}
    checked, problems = 0, []
    mods = [("", mlx, mx)] + [(s + ".", getattr(mlx, s), getattr(mx, s)) for s in ("random", "linalg", "fft", "fast")]
    for prefix, mm, pm in mods:
        for name in dir(mm):
            f, pf = getattr(mm, name), getattr(pm, name, None)
            if name.startswith("_") or not hasattr(f, "__nb_signature__") or pf is None:
                continue
            try:
                mine = [(p.name, kinds.get(p.kind), p.default) for p in inspect.signature(pf).parameters.values()]
            except ValueError:
                continue  # no signature shown (a function with its own parsing)
            checked += 1
            best = None
            for sig in f.__nb_signature__:
                issues = []
                theirs = _nb_params(sig)
                for i, (n, k, d) in enumerate(theirs):
                    match = [m for m in mine if m[0] == n] if k != "PO" else mine[i:i + 1]
                    if not match:
                        issues.append(f"{n} missing")
                        continue
                    mn, mk, md = match[0]
                    order = {"PO": 0, "POK": 1, "KO": 1}
                    if (mk == "PO" and k != "PO") or (mk == "KO" and k == "POK" and n != "stream"):
                        issues.append(f"{n}: {mk} where MLX has {k}")
                    literal = d is not inspect.Parameter.empty and not isinstance(d, str) or isinstance(md, str)
                    if (md is inspect.Parameter.empty) != (d is inspect.Parameter.empty) or \
                            (literal and md != d and (prefix + name, n) not in allowed):
                        issues.append(f"{n}: default {md!r} where MLX has {d!r}")
                names = {n for n, _, _ in theirs}
                issues += [f"extra {n} without a default" for n, _, d in mine
                           if n not in names and d is inspect.Parameter.empty and len(mine) > len(theirs)]
                if best is None or len(issues) < len(best):
                    best = issues
            if best:
                problems.append(f"{prefix}{name}: " + "; ".join(best))
    assert checked > 150
    assert not problems, "\n".join(problems)


def test_contiguous_allow_col_major(rng):
    """contiguous(a, allow_col_major=True) keeps a column-major array as it is (no copy, as
    MLX); otherwise, and for other layouts, the result is a row-major copy with a's values."""
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = mx.array(x).T  # column-major, dense
    kept = mx.contiguous(t, allow_col_major=True)
    np.testing.assert_array_equal(np.array(kept), x.T)
    np.testing.assert_array_equal(np.array(mx.contiguous(t)), x.T)
    s = mx.array(x)[:, ::2]
    np.testing.assert_array_equal(np.array(mx.contiguous(s, allow_col_major=True)), x[:, ::2])
    assert mx.isnan(a=mx.array([1.0, float("nan")])).tolist() == [False, True]
