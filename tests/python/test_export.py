"""mx.export_function / mx.import_function / mx.exporter: round trips (results equal to calling
the function, on new random inputs), MLX's input forms, keyword inputs, several traces per
file, an nn.Module exported with its parameters as constants, gradients, the refusals, hostile
files, and the API's shape checked against MLX's when MLX is importable."""
import inspect
import os

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from conftest import rand


def close(a, b, tol=0.0):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=tol, atol=tol)


def test_round_trip_families(tmp_path, rng):
    c = mx.array(rand(rng, (3, 5)))

    def fun(x, y, key):
        e = mx.exp(x) * 2 + mx.sin(x)
        top, bottom = mx.split(y, [1], axis=0)
        q, r = mx.divmod(x, mx.abs(y[:3, :4]) + 1)
        return (e.sum(axis=1), x.max(keepdims=True), x @ y + c, mx.take(x, mx.array([3, 0, 2]), 1),
                top, bottom, q, r, mx.sort(x, axis=1), mx.cumsum(x, 0), x[1:, ::2],
                mx.random.uniform(shape=(2, 3), key=key), mx.softmax(x.T, axis=-1),
                mx.conv1d(mx.reshape(x, (1, 3, 4)), mx.reshape(y[:, :4], (2, 2, 4)), stride=1))

    path = str(tmp_path / "fun.pfn")
    mx.export_function(path, fun, mx.array(rand(rng, (3, 4))), mx.array(rand(rng, (4, 5))),
                       mx.random.key(0))
    imported = mx.import_function(path)
    for seed in range(3):
        args = (mx.array(rand(rng, (3, 4))), mx.array(rand(rng, (4, 5))), mx.random.key(seed + 7))
        got, want = imported(*args), fun(*args)
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            close(g, w)


def test_input_forms_and_keywords(tmp_path, rng):
    def fun(a, b, c):
        return a - b * c

    a, b, c = (mx.array(rand(rng, s)) for s in [(3,), (2, 3), (1,)])
    path = str(tmp_path / "kw.pfn")
    mx.export_function(path, fun, b=b, a=a, c=c)          # keywords only
    f = mx.import_function(path)
    a2, b2, c2 = (mx.array(rand(rng, s)) for s in [(3,), (2, 3), (1,)])
    want = a2 - b2 * c2
    close(f(c=c2, a=a2, b=b2)[0], want)
    close(f({"a": a2, "b": b2, "c": c2})[0], want)        # one dict of arrays
    with pytest.raises(ValueError, match="No imported function"):
        f(a2, b2, c2)                                     # positional where keywords were traced
    with pytest.raises(ValueError, match="No imported function"):
        f(a=a2, b=b2, d=c2)
    with pytest.raises(ValueError, match="Inputs can either be"):
        f(a2, 2.0)

    path = str(tmp_path / "mixed.pfn")
    mx.export_function(path, fun, (a, b), {"c": c})       # a tuple and a dict
    f = mx.import_function(path)
    close(f(a2, b2, c=c2)[0], want)
    close(f((a2, b2), {"c": c2})[0], want)
    with pytest.raises(ValueError, match="Inputs can either be"):
        mx.export_function(path, fun, (a,), b=b, c=c)
    with pytest.raises(ValueError, match="Inputs can either be"):
        mx.export_function(path, fun, a, 2.0, c)


def test_outputs_and_errors(tmp_path, rng):
    x = mx.array(rand(rng, (4,)))
    path = str(tmp_path / "f.pfn")
    mx.export_function(path, lambda x: [x * 2], x)
    (y,) = mx.import_function(path)(x)
    close(y, x * 2)
    with pytest.raises(ValueError, match="Outputs can be either"):
        mx.export_function(path, lambda x: {"a": x}, x)
    with pytest.raises(ValueError, match="Outputs can be either"):
        mx.export_function(path, lambda x: 3, x)
    with pytest.raises(ZeroDivisionError):                # the function's own exception
        mx.export_function(path, lambda x: 1 / 0, x)
    with pytest.raises(ValueError, match="eval"):
        mx.export_function(path, lambda x: x * x.sum().item(), x)
    f = mx.import_function(path)
    with pytest.raises(ValueError, match=r"1: \(4\) float32"):
        f(mx.array([1, 2, 3, 4]))                          # int32, not float32
    with pytest.raises(ValueError):
        f(mx.array(rand(rng, (5,))))
    with pytest.raises(OSError):
        mx.import_function(str(tmp_path / "missing.pfn"))
    (tmp_path / "bad.pfn").write_bytes(b"hello world, not a function")
    with pytest.raises(OSError, match="not a Ponte function file"):
        mx.import_function(str(tmp_path / "bad.pfn"))


def test_hostile_truncations(tmp_path, rng):
    path = tmp_path / "t.pfn"
    mx.export_function(str(path), lambda x, y: (x @ y, x + 1), mx.array(rand(rng, (2, 3))),
                       y=mx.array(rand(rng, (3, 2))))
    data = path.read_bytes()
    bad = tmp_path / "cut.pfn"
    for n in range(0, len(data), 7):
        bad.write_bytes(data[:n])
        with pytest.raises(OSError):
            mx.import_function(str(bad))
    for i in rng.integers(0, len(data), 50):
        b = bytearray(data)
        b[i] ^= 0x5A
        bad.write_bytes(bytes(b))
        with pytest.raises(OSError):
            mx.import_function(str(bad))


def test_exporter_several_traces(tmp_path):
    def fun(*args):
        return sum(args)

    path = str(tmp_path / "multi.pfn")
    with mx.exporter(path, fun) as exporter:
        assert type(exporter).__name__ == "FunctionExporter"
        exporter(mx.array(1))
        exporter(mx.array(1), mx.array(2))
        exporter(mx.array([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="closed"):
        exporter(mx.array(3))
    f = mx.import_function(path)
    assert f(mx.array(5))[0].item() == 5
    assert f(mx.array(5), mx.array(6))[0].item() == 11
    close(f(mx.array([3.0, 4.0]))[0], mx.array([3.0, 4.0]))
    with pytest.raises(ValueError, match="3. 1 positional"):
        f(mx.array(5.0))
    ex = mx.exporter(str(tmp_path / "empty.pfn"), fun)
    ex.close()
    g = mx.import_function(str(tmp_path / "empty.pfn"))
    with pytest.raises(ValueError):
        g(mx.array(1))


def test_metadata(tmp_path):
    path = str(tmp_path / "m.pfn")
    mx.export_function(path, lambda x: x + 1, mx.array(1.0), metadata='{"layers": 2}')
    f, meta = mx.import_function(path, return_metadata=True)
    assert meta == '{"layers": 2}'
    assert f(mx.array(2.0))[0].item() == 3.0
    mx.export_function(path, lambda x: x + 1, mx.array(1.0))
    assert mx.import_function(path, return_metadata=True)[1] == ""


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.l2 = nn.Linear(16, 3)

    def __call__(self, x):
        return self.l2(nn.relu(self.l1(x)))


def test_module_with_parameters(tmp_path, rng):
    model = MLP()
    mx.eval(model.parameters())
    path = str(tmp_path / "mlp.pfn")
    mx.export_function(path, model, mx.array(rand(rng, (5, 6))))
    f = mx.import_function(path)
    x = mx.array(rand(rng, (5, 6)))
    want = model(x)
    w1, b1, w2, b2 = (np.array(v, np.float64) for v in
                      [model.l1.weight, model.l1.bias, model.l2.weight, model.l2.bias])
    ref = np.maximum(np.array(x, np.float64) @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(np.array(f(x)[0]), ref, rtol=1e-4, atol=1e-5)
    # the file's constants are dense copies of the weights: on the GPU the GEMMs may take
    # another algorithm for that layout than for the model's views, rounding differently
    close(f(x)[0], want, 1e-6)
    # the parameters are constants of the file: changing the model does not change f
    model.update({"l2": {"bias": mx.ones((3,))}})
    close(f(x)[0], want, 1e-6)


def test_gradients(tmp_path, rng):
    def loss(w, x):
        return mx.tanh(x @ w).sum()

    w, x = mx.array(rand(rng, (4, 3))), mx.array(rand(rng, (5, 4)))
    path = str(tmp_path / "g.pfn")
    mx.export_function(path, mx.grad(loss), w, x)
    w2, x2 = mx.array(rand(rng, (4, 3))), mx.array(rand(rng, (5, 4)))
    close(mx.import_function(path)(w2, x2)[0], mx.grad(loss)(w2, x2), 1e-6)
    # reference: d/dw sum(tanh(x w)) = x^T (1 - tanh^2)
    t = np.tanh(np.array(x2, np.float64) @ np.array(w2, np.float64))
    np.testing.assert_allclose(np.array(mx.import_function(path)(w2, x2)[0]),
                               np.array(x2, np.float64).T @ (1 - t * t), rtol=1e-4, atol=1e-5)


def test_api_matches_mlx():
    mlx = pytest.importorskip("mlx.core")
    for name in ["export_function", "import_function", "exporter"]:
        assert callable(getattr(mx, name)) and callable(getattr(mlx, name))
    assert hasattr(mx, "FunctionExporter") and hasattr(mlx, "FunctionExporter")
    assert callable(getattr(mx.FunctionExporter, "close"))
    # the documented signatures: file, fun, *args, shapeless, metadata, **kwargs
    for name, params in [("export_function", ["shapeless=False", "metadata"]),
                         ("import_function", ["return_metadata=False"]),
                         ("exporter", ["shapeless: bool = False", "metadata"])]:
        doc = getattr(mlx, name).__doc__.split("\n")[0]
        for p in params:
            assert p.split("=")[0].split(":")[0] in doc, (name, p, doc)


def test_same_behaviour_as_mlx(tmp_path, rng):
    mlx = pytest.importorskip("mlx.core")
    xs = rand(rng, (3, 4))
    for lib, tag in [(mx, "p"), (mlx, "m")]:
        path = str(tmp_path / f"{tag}.fn")
        lib.export_function(path, lambda x, y: (x * y, (x + y).sum(0)), lib.array(xs), y=lib.array(xs))
        f = lib.import_function(path)
        out = f(lib.array(xs), y=lib.array(xs * 2))
        assert isinstance(out, tuple) and len(out) == 2
        close(out[0], xs * xs * 2, 1e-6)
        with pytest.raises(ValueError):
            f(lib.array(xs), lib.array(xs))
        with pytest.raises(ValueError):
            f(lib.array(xs), y=lib.array(xs.astype(np.float16)))
        with pytest.raises(ValueError):
            lib.export_function(path, lambda x: {"a": x}, lib.array(xs))
        with pytest.raises(ValueError):
            lib.export_function(path, lambda x: x * x.sum().item(), lib.array(xs))
        with pytest.raises(ValueError):
            lib.export_function(path, lambda x: x, lib.array(xs), 2.0)
        with lib.exporter(path, lambda x: x + 1) as ex:
            ex(lib.array(1.0))
        with pytest.raises(RuntimeError):
            ex(lib.array(1.0))


def test_runs_on_default_device(tmp_path, rng):
    """The imported graph is built on the current stream (the GPU under PONTE_DEVICE=gpu)."""
    x = mx.array(rand(rng, (8, 8)))
    path = str(tmp_path / "d.pfn")
    mx.export_function(path, lambda x: mx.softmax(x @ x, axis=-1), x)
    out = mx.import_function(path)(x)[0]
    close(out, mx.softmax(x @ x, axis=-1), 1e-6)
    assert os.path.getsize(path) > 0 and inspect.isclass(mx.FunctionExporter)


def _shapeless_fun(lib):
    def fun(x, y):
        h = lib.exp(x) @ y + lib.mean(y, axis=0)
        return h, lib.sum(lib.square(x), axis=1, keepdims=True), lib.softmax(h, axis=-1), x.reshape(-1)
    return fun


def test_shapeless_export(tmp_path, rng):
    """A shapeless file replays at new shapes (same dtypes and ranks) through the shape rules;
    float64 numpy is the reference."""
    path = str(tmp_path / "s.pfn")
    mx.export_function(path, _shapeless_fun(mx), mx.array(rand(rng, (3, 4))),
                       mx.array(rand(rng, (4, 5))), shapeless=True)
    f = mx.import_function(path)
    for n, k, m in [(3, 4, 5), (7, 4, 2), (1, 9, 6), (16, 3, 1)]:
        x, y = rand(rng, (n, k)), rand(rng, (k, m))
        h, sq, sm, flat = f(mx.array(x), mx.array(y))
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        want = np.exp(x64) @ y64 + y64.mean(0)
        close(h, want, 1e-5)
        close(sq, (x64 ** 2).sum(1, keepdims=True), 1e-5)
        e = np.exp(want - want.max(-1, keepdims=True))
        close(sm, e / e.sum(-1, keepdims=True), 1e-5)
        assert flat.shape == (n * k,)
    with pytest.raises(ValueError):  # another rank matches no trace
        f(mx.array(rand(rng, (2, 3, 4))), mx.array(rand(rng, (4, 5))))
    with pytest.raises(ValueError):  # another dtype
        f(mx.array(rand(rng, (3, 4))).astype(mx.float16), mx.array(rand(rng, (4, 5))))
    with pytest.raises(ValueError):  # inner sizes that do not multiply
        f(mx.array(rand(rng, (3, 6))), mx.array(rand(rng, (4, 5))))
    with pytest.raises(ValueError, match="Slice"):  # no shape rule: refused when exporting
        mx.export_function(str(tmp_path / "t.pfn"), lambda x: x[1:], mx.array(rand(rng, (3, 4))),
                           shapeless=True)
    assert not os.path.exists(str(tmp_path / "t.pfn"))
    with mx.exporter(str(tmp_path / "e.pfn"), lambda x: mx.exp(x).sum(0), shapeless=True) as ex:
        ex(mx.array(rand(rng, (2, 3))))
    close(mx.import_function(str(tmp_path / "e.pfn"))(mx.array(np.ones((5, 7), np.float32)))[0],
          np.full(7, 5 * np.e), 1e-5)


def test_shapeless_export_as_mlx(tmp_path, rng):
    """The same shapeless exports through MLX give the same shapes, values and error types."""
    mlx = pytest.importorskip("mlx.core")
    x0, y0 = rand(rng, (3, 4)), rand(rng, (4, 5))
    x1, y1 = rand(rng, (6, 4)), rand(rng, (4, 2))
    outs = []
    for lib, tag in [(mx, "p"), (mlx, "m")]:
        path = str(tmp_path / f"{tag}.fn")
        lib.export_function(path, _shapeless_fun(lib), lib.array(x0), lib.array(y0), shapeless=True)
        f = lib.import_function(path)
        outs.append([np.array(o) for o in f(lib.array(x1), lib.array(y1))])
        with pytest.raises(ValueError):
            f(lib.array(rand(rng, (2, 3, 4))), lib.array(y0))
        # no shape rule: Ponte refuses the export, MLX writes the file and refuses every call
        for k, g in enumerate([lambda x: x[1:], lambda x: lib.pad(x, 1)]):
            with pytest.raises(ValueError):
                p2 = str(tmp_path / f"{tag}{k}.fn")
                lib.export_function(p2, g, lib.array(x0), shapeless=True)
                lib.import_function(p2)(lib.array(x0))
    for a, b in zip(*outs):
        assert a.shape == b.shape
        close(a, b, 1e-5)
