"""More behaviours that running newer copies of MLX's own Python tests against Ponte found
different, each checked against numpy and, where MLX is importable, against MLX itself: the
fft functions' norm= argument, transpose's positional stream, safetensors string metadata
(save_safetensors' metadata=, load's return_metadata=), safetensors F8_E4M3 tensors, and
async_eval refused inside a transform."""
import math
import os

import numpy as np
import pytest

import ponte as mx

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
except ImportError:
    mlx = None

NORMS = ["backward", "ortho", "forward"]
C2C = ["fft", "ifft", "fft2", "ifft2", "fftn", "ifftn"]
R2C = ["rfft", "rfft2", "rfftn"]
C2R = ["irfft", "irfft2", "irfftn"]


def complex_input(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# ───────────────────────────── fft norm= ─────────────────────────────


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", C2C + R2C + C2R)
def test_fft_norm_matches_numpy(rng, name, norm):
    x = rng.standard_normal((6, 5, 4)).astype(np.float32) if name in R2C else complex_input(rng, (6, 5, 4))
    f, g = getattr(mx.fft, name), getattr(np.fft, name)
    np.testing.assert_allclose(np.array(f(mx.array(x), norm=norm)), g(x, norm=norm),
                               rtol=1e-4, atol=1e-4)
    # with a size: N is the transform's (padded / cut) size, the output's for the inverse real
    if name in ("fft", "ifft", "rfft", "irfft"):
        kw = dict(n=7, axis=0)
    else:
        kw = dict(s=(3, 8), axes=(0, 2))
    np.testing.assert_allclose(np.array(f(mx.array(x), norm=norm, **kw)), g(x, norm=norm, **kw),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm", NORMS)
def test_fft_norm_round_trips_and_positional(rng, norm):
    x = complex_input(rng, (4, 9))
    y = mx.fft.ifftn(mx.fft.fftn(mx.array(x), None, None, norm), None, None, norm)
    np.testing.assert_allclose(np.array(y), x, rtol=1e-4, atol=1e-5)
    # fft(a, n, axis, norm, stream) positionally, as MLX
    r = mx.fft.fft(mx.array(x), 9, -1, norm, mx.cpu)
    np.testing.assert_allclose(np.array(r), np.fft.fft(x, 9, -1, norm), rtol=1e-4, atol=1e-4)


def test_fft_norm_ortho_preserves_energy(rng):
    x = rng.standard_normal((5, 12)).astype(np.float32)
    y = np.array(mx.fft.fft2(mx.array(x), norm="ortho"))
    np.testing.assert_allclose(np.sum(np.abs(y) ** 2), np.sum(x.astype(np.float64) ** 2), rtol=1e-4)


@pytest.mark.parametrize("name", ["fft", "rfft2", "irfftn"])
def test_fft_bad_norm(name):
    x = mx.ones((4, 4), dtype=mx.complex64 if name != "rfft2" else mx.float32)
    with pytest.raises(ValueError, match="Invalid norm"):
        getattr(mx.fft, name)(x, norm="unitary")
    with pytest.raises(TypeError):
        getattr(mx.fft, name)(x, norm=None)


@pytest.mark.skipif(mlx is None, reason="MLX is not installed")
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["fft", "irfft", "rfftn", "ifft2"])
def test_fft_norm_matches_mlx(rng, name, norm):
    x = rng.standard_normal((8, 6)).astype(np.float32) if name == "rfftn" else complex_input(rng, (8, 6))
    got = np.array(getattr(mx.fft, name)(mx.array(x), norm=norm))
    want = np.array(getattr(mlx.fft, name)(mlx.array(x), norm=norm))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ───────────────────────────── transpose's stream ─────────────────────────────


def test_transpose_stream_positional(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for axes in [(2, 0, 1), [1, 2, 0], None]:
        for s in [mx.cpu, mx.default_stream(mx.cpu)]:
            got = mx.transpose(mx.array(x), axes, s)
            np.testing.assert_array_equal(np.array(got), np.transpose(x, axes))
    np.testing.assert_array_equal(np.array(mx.transpose(mx.array(x), (1, 0, 2), stream=mx.cpu)),
                                  np.transpose(x, (1, 0, 2)))
    with pytest.raises(ValueError):
        mx.transpose(mx.array(x), (0, 1), mx.cpu)


# ───────────────────────────── safetensors metadata ─────────────────────────────


def test_safetensors_metadata_round_trip(tmp_path, rng):
    meta = {"format": "mlx", "testing": "test", "quote\"s": "a\\b\nc", "empty": ""}
    arrays = {"w": mx.array(rng.standard_normal((3, 2)).astype(np.float32)), "i": mx.arange(5)}
    path = str(tmp_path / "m.safetensors")
    mx.save_safetensors(path, arrays, meta)
    loaded, got = mx.load(path, return_metadata=True)
    assert got == meta
    assert set(loaded) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(np.array(loaded[k]), np.array(arrays[k]))
    # through file objects too, and a pathlib path, and with format=
    with open(tmp_path / "f.bin", "wb") as f:
        mx.save_safetensors(f, arrays, {"k": "v"})
    with open(tmp_path / "f.bin", "rb") as f:
        assert mx.load(f, format="safetensors", return_metadata=True)[1] == {"k": "v"}
    assert mx.load(tmp_path / "m.safetensors", return_metadata=True)[1] == meta
    # no metadata: {}; without return_metadata just the dict
    mx.save_safetensors(path, arrays)
    assert mx.load(path, return_metadata=True)[1] == {}
    assert isinstance(mx.load(path), dict)
    # metadata with no arrays
    mx.save_safetensors(path, {}, {"only": "meta"})
    assert mx.load(path, return_metadata=True) == ({}, {"only": "meta"})


def test_safetensors_metadata_header_layout(tmp_path):
    path = str(tmp_path / "h.safetensors")
    mx.save_safetensors(path, {"a": mx.ones((2,))}, {"k": "v"})
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    import json

    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"k": "v"}
    assert header["a"]["shape"] == [2] and (8 + n) % 8 == 0


@pytest.mark.parametrize("bad", [{"testing": 0}, {1: "a"}, {"a": ["x"]}, {"a": mx.ones(2)}])
def test_safetensors_metadata_must_be_strings(tmp_path, bad):
    with pytest.raises(ValueError, match="string keys and values"):
        mx.save_safetensors(str(tmp_path / "b.safetensors"), {"a": mx.ones((2,))}, bad)
    with pytest.raises(TypeError):
        mx.save_safetensors(str(tmp_path / "b.safetensors"), {"a": mx.ones((2,))}, [("k", "v")])


def test_load_metadata_refused_for_numpy_formats(tmp_path):
    mx.save(str(tmp_path / "a.npy"), mx.ones((2,)))
    mx.savez(str(tmp_path / "a.npz"), a=mx.ones((2,)))
    with pytest.raises(ValueError, match="metadata not supported for format npy"):
        mx.load(str(tmp_path / "a.npy"), return_metadata=True)
    with pytest.raises(ValueError, match="metadata not supported for format npz"):
        mx.load(str(tmp_path / "a.npz"), return_metadata=True)


@pytest.mark.skipif(mlx is None, reason="MLX is not installed")
def test_safetensors_metadata_against_mlx(tmp_path, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    meta = {"a": "1", "b": "two words", "c": "{\"json\": [1]}"}
    mine, theirs = str(tmp_path / "p.safetensors"), str(tmp_path / "m.safetensors")
    mx.save_safetensors(mine, {"x": mx.array(x)}, meta)
    mlx.save_safetensors(theirs, {"x": mlx.array(x)}, meta)
    for path in (mine, theirs):
        d1, m1 = mx.load(path, return_metadata=True)
        d2, m2 = mlx.load(path, return_metadata=True)
        assert m1 == m2 == meta
        np.testing.assert_array_equal(np.array(d1["x"]), np.array(d2["x"]))


def f8_file(tmp_path, codes):
    header = b'{"t":{"dtype":"F8_E4M3","shape":[%d],"data_offsets":[0,%d]}}' % (len(codes), len(codes))
    header += b" " * (-len(header) % 8)
    path = str(tmp_path / "f8.safetensors")
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + bytes(codes))
    return path


def test_safetensors_f8_e4m3_loads_as_codes(tmp_path, rng):
    codes = [int(c) for c in rng.integers(0, 256, 37)]
    t = mx.load(f8_file(tmp_path, codes))["t"]
    assert t.dtype == mx.uint8
    np.testing.assert_array_equal(np.array(t), np.array(codes, dtype=np.uint8))
    # the codes decode with from_fp8 as MLX's: 0x7f is NaN, 0x7e is 448
    np.testing.assert_array_equal(np.array(mx.from_fp8(mx.array([0x7E, 0x38], dtype=mx.uint8),
                                                       dtype=mx.float32)), [448.0, 1.0])
    if mlx is not None:
        want = mlx.load(f8_file(tmp_path, codes))["t"]
        assert want.dtype == mlx.uint8
        np.testing.assert_array_equal(np.array(t), np.array(want))


# ───────────────────────────── async_eval inside transforms ─────────────────────────────


def async_inside(x):
    y = mx.sin(x) + 1.0
    mx.async_eval(y)
    return mx.exp(y).sum()


@pytest.mark.parametrize("transform", ["grad", "vmap", "vjp", "jvp", "compile"])
def test_async_eval_refused_inside_a_transform(transform):
    x = mx.array(np.linspace(0.1, 0.9, 6, dtype=np.float32).reshape(2, 3))
    calls = {
        "grad": lambda: mx.grad(async_inside)(x),
        "vmap": lambda: mx.vmap(async_inside)(x),
        "vjp": lambda: mx.vjp(async_inside, [x], [mx.array(1.0)]),
        "jvp": lambda: mx.jvp(async_inside, [x], [mx.ones_like(x)]),
        "compile": lambda: mx.compile(async_inside)(x),
    }
    with pytest.raises(ValueError, match="Not allowed inside a graph transformation"):
        calls[transform]()
    # eval stays allowed there, and async_eval outside
    def with_eval(x):
        y = mx.sin(x)
        mx.eval(y)
        return (y * x).sum()

    g = mx.grad(with_eval)(x)
    xs = np.array(x).astype(np.float64)
    np.testing.assert_allclose(np.array(g), np.cos(xs) * xs + np.sin(xs), rtol=1e-5)
    y = mx.exp(x)
    mx.async_eval(y)
    np.testing.assert_allclose(np.array(y), np.exp(np.array(x)), rtol=1e-6)


# ───────────────────────────── grad's trees ─────────────────────────────

from typing import NamedTuple  # noqa: E402


class State(NamedTuple):
    a: object
    b: object


class Pair(tuple):
    pass


def test_grad_keeps_namedtuples_and_tuple_subclasses(rng):
    a = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)

    def loss(s):  # attribute access: the function sees the caller's type
        return (mx.sin(s.a) * s.b).sum()

    g = mx.grad(loss)(State(mx.array(a), mx.array(b)))
    assert type(g) is State
    np.testing.assert_allclose(np.array(g.a), np.cos(a) * b, rtol=1e-5)
    np.testing.assert_allclose(np.array(g.b), np.sin(a), rtol=1e-5)

    def loss_pair(p):
        assert type(p) is Pair
        return (p[0] * p[1] * 10).sum()

    (v, g2) = mx.value_and_grad(loss_pair)(Pair([mx.array(a), mx.array(b)]))
    assert type(g2) is Pair
    np.testing.assert_allclose(np.array(g2[0]), 10 * b, rtol=1e-5)
    np.testing.assert_allclose(v.item(), float((a * b * 10).sum()), rtol=1e-5)
    # nested in a list and a dict; vmap's outputs keep the type too
    g3 = mx.grad(lambda t: loss(t[0]["s"]))([{"s": State(mx.array(a), mx.array(b))}])
    assert type(g3[0]["s"]) is State
    out = mx.vmap(lambda x: State(x * 2, x + 1))(mx.array(np.stack([a, b])))
    assert type(out) is State
    np.testing.assert_allclose(np.array(out.a), 2 * np.stack([a, b]), rtol=1e-6)
    if mlx is not None:
        class MState(NamedTuple):
            a: object
            b: object

        gm = mlx.grad(lambda s: (mlx.sin(s.a) * s.b).sum())(MState(mlx.array(a), mlx.array(b)))
        assert type(gm) is MState
        np.testing.assert_allclose(np.array(g.a), np.array(gm.a), rtol=1e-5)


def test_grad_keeps_the_functions_replacements_in_the_callers_containers():
    def loss(model):
        model[1] = mx.array(2.0)  # the function's own array
        return model[0] * 3

    model = [mx.array(0.5), mx.array(1.0)]
    first = model[0]
    g = mx.grad(loss)(model)
    assert g[0].item() == 3.0
    assert model[1].item() == 2.0  # kept, as MLX
    assert model[0] is first  # untouched entries get the caller's arrays back

    def loss2(arrs):
        arrs[1] = arrs[0] + arrs[1] + arrs[2]
        return arrs[1]

    arrs = [mx.array(1.0), mx.array(2.0), mx.array(4.0)]
    a0, a1, a2 = arrs
    mx.grad(loss2)(arrs)
    assert arrs[0] is a0 and arrs[2] is a2 and arrs[1] is not a1
    assert arrs[1].item() == 7.0

    params = {"w": mx.array(2.0), "b": mx.array(1.0)}
    w = params["w"]

    def loss3(p):
        p["b"] = mx.array(5.0)
        return p["w"] ** 2

    assert mx.grad(loss3)(params)["w"].item() == 4.0
    assert params["w"] is w and params["b"].item() == 5.0
    if mlx is not None:
        m = [mlx.array(0.5), mlx.array(1.0)]
        mlx.grad(lambda mm: (mm.__setitem__(1, mlx.array(2.0)), mm[0] * 3)[1])(m)
        assert m[1].item() == 2.0


# ───────────────────────────── masked scatter, vmap axes ─────────────────────────────


def masked_scatter_ref(x, mask, src):
    """MLX's a[mask] = src in numpy: src of at most rest's rank fills every selected slice;
    with one more dimension its rows fill the selected slices in order."""
    x = x.copy()
    k = mask.ndim
    rest = x.shape[k:]
    sel = np.argwhere(mask)
    if src.ndim <= len(rest):
        for i in sel:
            x[tuple(i)] = np.broadcast_to(src, rest)
    else:
        rows = np.broadcast_to(src, (src.shape[0],) + rest)
        for j, i in enumerate(sel):
            x[tuple(i)] = rows[j]
    return x


MASK_CASES = [((3, 3), (3,), (1, 3)), ((3, 3), (3,), (3,)), ((3, 3), (3,), (5, 3)),
              ((3, 3), (3,), (4, 1)), ((3, 3), (3, 3), (9,)), ((4,), (4,), ()),
              ((4,), (4,), (6,)), ((2, 3, 4), (2,), (4,)), ((2, 3, 4), (2, 3), (7, 4))]


@pytest.mark.parametrize("shape,mshape,sshape", MASK_CASES)
def test_masked_scatter_matches_reference(rng, shape, mshape, sshape):
    x = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(mshape) < 0.5
    src = rng.standard_normal(sshape).astype(np.float32)
    if len(sshape) > len(shape) - len(mshape) and sshape[0] < mask.sum():
        src = rng.standard_normal((int(mask.sum()),) + sshape[1:]).astype(np.float32)
    want = masked_scatter_ref(x, mask, src)
    a = mx.array(x)
    a[mx.array(mask)] = mx.array(src)
    np.testing.assert_array_equal(np.array(a), want)
    if mlx is not None:
        c = mlx.array(x)
        c[mlx.array(mask)] = mlx.array(src)
        np.testing.assert_array_equal(np.array(a), np.array(c))


def test_masked_scatter_errors_dtype_and_grad():
    a = mx.zeros((3, 3))
    with pytest.raises(ValueError, match="broadcastable"):
        a[mx.array([[True, False, True]] * 3)] = mx.ones((3, 2))
    with pytest.raises(ValueError):
        a[mx.array([True, False])] = 1.0  # not a's leading shape
    i = mx.zeros((4,), dtype=mx.int32)
    i[mx.array([True, False, True, False])] = mx.array([2.7, 5.2])
    assert i.dtype == mx.int32 and i.tolist() == [2, 0, 5, 0]

    def f(x, s):
        x[mx.array([True, False, True])] = s
        return (x * x).sum()

    gx, gs = mx.grad(f, argnums=(0, 1))(mx.array([1.0, 2.0, 3.0]), mx.array([1.0, 2.0, 3.0]))
    assert gx.tolist() == [0.0, 4.0, 0.0] and gs.tolist() == [2.0, 4.0, 0.0]


def test_masked_scatter_under_vmap(rng):
    def scatter(x, m, src):
        x[m] = src
        return x

    x = rng.standard_normal((5, 6)).astype(np.float32)
    m = rng.random((5, 6)) < 0.5
    src = rng.standard_normal((5, 6)).astype(np.float32)
    want = np.stack([masked_scatter_ref(x[i], m[i], src[i]) for i in range(5)])
    got = mx.vmap(scatter)(mx.array(x), mx.array(m), mx.array(src))
    np.testing.assert_array_equal(np.array(got), want)
    # a shared source restarts for every example; a shared mask with batched sources
    want = np.stack([masked_scatter_ref(x[i], m[i], src[0]) for i in range(5)])
    got = mx.vmap(scatter, in_axes=(0, 0, None))(mx.array(x), mx.array(m), mx.array(src[0]))
    np.testing.assert_array_equal(np.array(got), want)
    want = np.stack([masked_scatter_ref(x[i], m[0], src[i]) for i in range(5)])
    got = mx.vmap(scatter, in_axes=(0, None, 0))(mx.array(x), mx.array(m[0]), mx.array(src))
    np.testing.assert_array_equal(np.array(got), want)


def test_vmap_dict_in_axes_and_one_tuple_out_axes(rng):
    a = rng.standard_normal((2, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2)).astype(np.float32)
    tree = {"a": mx.array(a), "b": (mx.array(b), mx.array(b))}
    f = lambda t: (t["a"] + t["b"][0]) * t["b"][1]  # noqa: E731
    out = mx.vmap(f, in_axes={"a": 0, "b": (1, 1)})(tree)
    np.testing.assert_allclose(np.array(out), (a + b.T) * b.T, rtol=1e-6)
    out = mx.vmap(f, in_axes={"a": 0, "b": 1})(tree)
    np.testing.assert_allclose(np.array(out), (a + b.T) * b.T, rtol=1e-6)
    with pytest.raises(ValueError):
        mx.vmap(lambda x, y: x + y, in_axes={"a": 0})(mx.array(a), mx.array(a))
    # out_axes=(1,) for a single output; a tuple output needs one entry per item
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    out = mx.vmap(mx.matmul, in_axes=(1, None), out_axes=(1,))(mx.array(x), mx.array(w))
    np.testing.assert_allclose(np.array(out), x @ w, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        mx.vmap(lambda t: (t, t), out_axes=(1,))(mx.array(x))
    if mlx is not None:
        ref = mlx.vmap(mlx.matmul, in_axes=(1, None), out_axes=(1,))(mlx.array(x), mlx.array(w))
        np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-5)


# ───────────────────────────── random.normal's loc and scale arrays ─────────────────────────────


def test_random_normal_array_and_complex_loc_scale(rng):
    key = mx.random.key(7)
    loc = rng.standard_normal((4, 1)).astype(np.float32)
    scale = (rng.random(3) + 0.5).astype(np.float32)
    base = np.array(mx.random.normal((4, 3), key=key)).astype(np.float64)
    got = mx.random.normal((4, 3), loc=mx.array(loc), scale=mx.array(scale), key=key)
    assert got.shape == (4, 3) and got.dtype == mx.float32
    np.testing.assert_allclose(np.array(got), base * scale + loc, rtol=1e-5, atol=1e-6)
    # only one of them; the sample dtype is kept (float16 from float32 loc)
    got = mx.random.normal((4, 3), dtype=mx.float16, loc=mx.array(loc), key=key)
    assert got.dtype == mx.float16
    # complex samples with a complex loc
    cb = np.array(mx.random.normal((5,), dtype=mx.complex64, key=key))
    c = mx.random.normal((5,), dtype=mx.complex64, loc=3.0 + 1j, scale=2.0, key=key)
    np.testing.assert_allclose(np.array(c), 2 * cb + (3 + 1j), rtol=1e-5)
    with pytest.raises(ValueError):
        mx.random.normal((2, 10, 2), loc=mx.ones((10,)), scale=mx.ones((10,)))
    if mlx is not None:
        mk = mlx.random.key(7)
        want = mlx.random.normal((4, 3), loc=mlx.array(loc), scale=mlx.array(scale), key=mk)
        mine = mx.random.normal((4, 3), loc=mx.array(loc), scale=mx.array(scale), key=key)
        np.testing.assert_allclose(np.array(mine), np.array(want), rtol=1e-6, atol=1e-6)
        want = mlx.random.normal((5,), dtype=mlx.complex64, loc=3.0 + 1j, scale=2.0, key=mk)
        np.testing.assert_allclose(np.array(c), np.array(want), rtol=1e-5, atol=1e-6)


# ───────────────────────────── complex64 svd and eigh ─────────────────────────────


@pytest.mark.parametrize("shape", [(2, 2), (5, 5), (3, 4, 4)])
def test_complex_svd(rng, shape):
    a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    u, s, vt = mx.linalg.svd(mx.array(a), stream=mx.cpu)
    assert (u.dtype, s.dtype, vt.dtype) == (mx.complex64, mx.float32, mx.complex64)
    u, s, vt = np.array(u), np.array(s), np.array(vt)
    np.testing.assert_allclose(s, np.linalg.svd(a.astype(np.complex128), compute_uv=False), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose((u * s[..., None, :]) @ vt, a, atol=1e-4)
    eye = np.eye(shape[-1])
    np.testing.assert_allclose(np.swapaxes(u.conj(), -1, -2) @ u, np.broadcast_to(eye, u.shape), atol=1e-5)
    np.testing.assert_allclose(vt @ np.swapaxes(vt.conj(), -1, -2), np.broadcast_to(eye, vt.shape), atol=1e-5)
    # values only, any shape
    b = a[..., :-1, :]
    sv = mx.linalg.svd(mx.array(b), compute_uv=False, stream=mx.cpu)
    np.testing.assert_allclose(np.array(sv), np.linalg.svd(b.astype(np.complex128), compute_uv=False), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        mx.linalg.svd(mx.array(b), stream=mx.cpu)  # singular vectors of a non-square complex
    if mlx is not None:
        ms = mlx.linalg.svd(mlx.array(a), compute_uv=False, stream=mlx.cpu)
        np.testing.assert_allclose(s, np.array(ms), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("uplo", ["L", "U"])
def test_complex_eigh(rng, uplo):
    b = (rng.standard_normal((2, 6, 6)) + 1j * rng.standard_normal((2, 6, 6))).astype(np.complex64)
    h = b + np.swapaxes(b.conj(), -1, -2)
    # only the uplo triangle is read: garbage in the other one
    junk = (rng.standard_normal((2, 6, 6)) * (1 + 1j)).astype(np.complex64)
    tri = np.tril(h) + np.triu(junk, 1) if uplo == "L" else np.triu(h) + np.tril(junk, -1)
    w, v = mx.linalg.eigh(mx.array(tri), UPLO=uplo, stream=mx.cpu)
    assert w.dtype == mx.float32 and v.dtype == mx.complex64
    w, v = np.array(w), np.array(v)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(h.astype(np.complex128)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h @ v, v * w[..., None, :], atol=1e-4)
    np.testing.assert_allclose(np.swapaxes(v.conj(), -1, -2) @ v, np.broadcast_to(np.eye(6), v.shape), atol=1e-5)
    wv = mx.linalg.eigvalsh(mx.array(tri), UPLO=uplo, stream=mx.cpu)
    np.testing.assert_allclose(np.array(wv), w, rtol=1e-5, atol=1e-5)
    if mlx is not None:
        mw = mlx.linalg.eigvalsh(mlx.array(tri), UPLO=uplo, stream=mlx.cpu)
        np.testing.assert_allclose(w, np.array(mw), rtol=1e-4, atol=1e-4)


# ───────────────────────────── reset_peak_memory ─────────────────────────────


def test_reset_peak_memory_sets_zero_as_mlx():
    keep = mx.zeros((4096,))
    mx.eval(keep)
    mx.synchronize()
    assert mx.get_active_memory() >= 4096 * 4
    mx.reset_peak_memory()
    assert mx.get_peak_memory() == 0  # as MLX, though `keep` is alive
    more = mx.ones((1024,)) + 1
    mx.eval(more)
    assert mx.get_peak_memory() >= mx.get_active_memory() >= 4096 * 4 + 1024 * 4
    if mlx is not None:
        k = mlx.zeros((4096,))
        mlx.eval(k)
        mlx.reset_peak_memory()
        assert mlx.get_peak_memory() == 0


# ───────────────────────────── optimizers ─────────────────────────────

import ponte.optimizers as optim  # noqa: E402
from ponte.utils import tree_flatten  # noqa: E402


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.RMSprop, optim.Lion])
def test_learning_rate_is_the_last_updates(cls):
    o = cls(learning_rate=optim.step_decay(0.1, 0.9, 1))
    assert o.learning_rate.item() == pytest.approx(0.1)
    p = {"w": mx.ones((3,))}
    seen = []
    for _ in range(4):
        p = o.apply_gradients({"w": mx.ones((3,))}, p)
        seen.append(o.learning_rate.item())
    np.testing.assert_allclose(seen, [0.1 * 0.9 ** k for k in range(4)], rtol=1e-6)
    assert o.state["learning_rate"].item() == pytest.approx(seen[-1])
    if mlx is not None:
        import mlx.optimizers as mopt

        m = getattr(mopt, cls.__name__)(learning_rate=mopt.step_decay(0.1, 0.9, 1))
        q = {"w": mlx.ones((3,))}
        for _ in range(4):
            q = m.apply_gradients({"w": mlx.ones((3,))}, q)
        assert m.learning_rate.item() == pytest.approx(seen[-1])
        np.testing.assert_allclose(np.array(p["w"]), np.array(q["w"]), rtol=1e-5)


def test_join_schedules_returns_arrays_and_clip_grad_norm_of_integers():
    s = optim.join_schedules([lambda _: 3, lambda _: 4, lambda _: 5], [2, 4])
    got = [s(k) for k in (0, 1, 2, 3, 5, 7)]
    assert all(isinstance(v, mx.array) for v in got)
    assert [v.item() for v in got] == [3, 3, 4, 4, 5, 5]
    g = {"a": mx.array([10, 20]), "b": [mx.array([30])]}
    clipped, norm = optim.clip_grad_norm(g, 1.0)
    assert clipped["a"].dtype == mx.float32 and norm.item() == pytest.approx(math.sqrt(1400), rel=1e-6)
    flat = np.concatenate([np.array(v) for _, v in tree_flatten(clipped)])
    np.testing.assert_allclose(flat, np.array([10, 20, 30]) / math.sqrt(1400), rtol=1e-5)
    small, _ = optim.clip_grad_norm({"a": mx.array([1, 2])}, 10.0)
    assert small["a"].dtype == mx.float32 and small["a"].tolist() == [1.0, 2.0]


def test_init_creates_the_state_of_every_parameter():
    params = {"first": [mx.zeros((10,)), mx.zeros((1,))], "second": mx.zeros((2, 2))}
    for cls, slots in [(lambda: optim.SGD(0.1, momentum=0.9), {"v"}), (lambda: optim.Adam(0.1), {"m", "v"}),
                       (lambda: optim.AdaDelta(0.1), {"u", "v"}), (lambda: optim.Lion(0.1), {"m"})]:
        o = cls()
        o.init(params)
        st = o.state
        assert st["step"].item() == 0
        for k, p in tree_flatten(params):
            node = st
            for part in k.split("."):
                node = node[int(part)] if isinstance(node, list) else node[part]
            assert set(node) == slots
            for v in node.values():
                assert v.shape == p.shape and not np.any(np.array(v))
        # the first real update then matches an optimizer that was not initialized
        g = {"first": [mx.ones((10,)), mx.ones((1,))], "second": mx.ones((2, 2))}
        a = o.apply_gradients(g, params)
        b = cls().apply_gradients(g, params)
        for (_, x), (_, y) in zip(tree_flatten(a), tree_flatten(b)):
            np.testing.assert_array_equal(np.array(x), np.array(y))


def test_optimizer_state_returned_from_a_compiled_step(rng):
    import ponte.nn as nn

    w = rng.standard_normal((4, 3)).astype(np.float32)
    x = mx.array(rng.standard_normal((2, 3)).astype(np.float32))

    def loss(params, x):
        return (x @ params["w"].T).sum()

    ref = optim.SGD(learning_rate=optim.exponential_decay(0.1, 0.5), momentum=0.9)
    p_ref = {"w": mx.array(w)}
    for _ in range(2):
        p_ref = ref.apply_gradients(mx.grad(loss)(p_ref, x), p_ref)

    o = optim.SGD(learning_rate=optim.exponential_decay(0.1, 0.5), momentum=0.9)
    o.init({"w": mx.array(w)})

    @mx.compile
    def step(params, opt_state, x):
        o.state = opt_state
        params = o.apply_gradients(mx.grad(loss)(params, x), params)
        return params, o.state  # the state, rate included, read inside the trace

    p, st = {"w": mx.array(w)}, o.state
    for _ in range(2):
        p, st = step(p, st, x)
    np.testing.assert_allclose(np.array(p["w"]), np.array(p_ref["w"]), rtol=1e-6)
    assert st["learning_rate"].item() == pytest.approx(0.05)
    assert isinstance(nn.Linear(2, 2), nn.Module)


# ───────────────────────────── export: one copy of a shared constant ─────────────────────────────


def test_exporter_writes_a_captured_constant_once(tmp_path, rng):
    c = mx.array(rng.standard_normal((16, 512)).astype(np.float32))
    mx.eval(c)

    def fun(*args):
        return c + sum(args)  # no args: c + 0, which may alias c itself

    path = str(tmp_path / "f.mlxfn")
    with mx.exporter(path, fun) as ex:
        for i in range(4):
            ex(*[mx.array(float(i))] * i)
    assert os.path.getsize(path) < c.nbytes + 8192
    imported = mx.import_function(path)
    for i in range(4):
        (out,) = imported(*[mx.array(float(i))] * i)
        np.testing.assert_allclose(np.array(out), np.array(c) + i * i, rtol=1e-6)
