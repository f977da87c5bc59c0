"""More of mlx.core's surface: print options (set_printoptions, get_printoptions, the
printoptions context), depends, the matmul variants gather_mm, block_masked_mm and
segmented_mm, and export_to_dot. numpy float64 references on random data, gradients, keyword
names and errors (the comparisons with MLX itself are in test_mlx_differential.py)."""
import io
import re

import numpy as np
import pytest

import ponte as mx


@pytest.fixture(autouse=True)
def default_print_options():
    mx.set_printoptions()
    yield
    mx.set_printoptions()


def close(y, ref, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.array(y).astype(np.float64), ref, rtol=rtol, atol=atol)


# ───────────────────────────── print options ─────────────────────────────


def test_printoptions_precision_fixed_notation(rng):
    x = rng.standard_normal(5) * 100
    for p in [0, 1, 3, 8]:
        mx.set_printoptions(precision=p)
        assert mx.get_printoptions().precision == p
        body = ", ".join("%.*f" % (p, v) for v in x.astype(np.float32).astype(np.float64))
        assert repr(mx.array(x.astype(np.float32))) == "array([%s], dtype=float32)" % body
    mx.set_printoptions(precision=2)
    assert repr(mx.array(2.0)) == "array(2.00, dtype=float32)"
    assert repr(mx.array([1, 2])) == "array([1, 2], dtype=int32)"  # integers unaffected
    assert repr(mx.array([True])) == "array([True], dtype=bool)"
    assert repr(mx.array([1 - 2.5j])) == "array([1.00-2.50j], dtype=complex64)"
    assert repr(mx.array([float("nan"), float("inf"), -float("inf")])) == \
        "array([nan, inf, -inf], dtype=float32)"
    mx.set_printoptions(-3)  # negative (not -1): 6 decimals, as std::fixed
    assert repr(mx.array([0.5])) == "array([0.500000], dtype=float32)"
    mx.set_printoptions()
    assert mx.get_printoptions().precision == -1
    assert repr(mx.array([1 / 3])) == "array([0.333333], dtype=float32)"


def test_printoptions_context_restores():
    x = mx.array([1 / 3])
    with mx.printoptions(precision=2) as ctx:
        assert isinstance(ctx, type(mx.printoptions()))
        assert str(x) == "array([0.33], dtype=float32)"
        with mx.printoptions(precision=4):
            assert str(x) == "array([0.3333], dtype=float32)"
        assert str(x) == "array([0.33], dtype=float32)"
    assert str(x) == "array([0.333333], dtype=float32)"
    with pytest.raises(KeyError):
        with mx.printoptions(precision=1):
            raise KeyError
    assert mx.get_printoptions().precision == -1
    opts = mx.get_printoptions()
    opts.precision = 5  # a copy: the global options do not change
    assert mx.get_printoptions().precision == -1
    with pytest.raises(TypeError):
        mx.set_printoptions(precision=1.5)
    with pytest.raises(TypeError):
        mx.printoptions(precision=None)


# ───────────────────────────── depends ─────────────────────────────


def test_depends_values_and_gradients(rng):
    x, y = mx.array(rng.standard_normal(4)), mx.array(rng.standard_normal(3))
    d = mx.exp(y)
    r = mx.depends(x, d)
    assert isinstance(r, mx.array)
    close(r, np.array(x))
    rs = mx.depends([x, x * 2], [d, y])
    assert isinstance(rs, list) and len(rs) == 2
    close(rs[1], 2 * np.array(x))
    # the dependencies get no gradient from the identity; the inputs do
    gx, gy = mx.grad(lambda a, b: (mx.depends(a * a, b) * 3).sum(), argnums=(0, 1))(x, y)
    close(gx, 6 * np.array(x))
    close(gy, np.zeros(3))
    with pytest.raises(TypeError):
        mx.depends(x, "not an array")


# ───────────────────────────── matmul variants ─────────────────────────────


def test_gather_mm_matches_numpy(rng):
    a = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 5, 6)).astype(np.float32)
    li, ri = np.array([[0], [5], [3]]), np.array([1, 0, 1, 1])
    out = mx.gather_mm(mx.array(a), mx.array(b), mx.array(li), mx.array(ri))
    ref = a.reshape(6, 4, 5)[li] @ b[ri]
    assert out.shape == (3, 4, 4, 6)
    close(out, ref, rtol=1e-4)
    close(mx.gather_mm(mx.array(a), mx.array(b)), a @ b, rtol=1e-4)
    close(mx.gather_mm(mx.array(a[0, 0]), mx.array(b), rhs_indices=mx.array(ri), sorted_indices=True),
          a[0, 0] @ b[ri], rtol=1e-4)
    v = rng.standard_normal(5).astype(np.float32)
    assert mx.gather_mm(mx.array(v), mx.array(b), None, mx.array([1, 0])).shape == (2, 6)
    assert mx.gather_mm(mx.array(a), mx.array(b), mx.array([0, 5]), mx.array([1, 0])).dtype == mx.float32
    with pytest.raises(ValueError):
        mx.gather_mm(mx.array(a), mx.array(b), mx.array([0.0, 1.0]))
    with pytest.raises(ValueError):
        mx.gather_mm(mx.array(a), mx.array(a))
    with pytest.raises(ValueError):
        mx.gather_mm(mx.array([[1, 2]]), mx.array([[1], [2]]))


def test_gather_mm_gradient(rng):
    a = rng.standard_normal((3, 2, 4)).astype(np.float64)
    b = rng.standard_normal((2, 4, 3)).astype(np.float64)
    li, ri = np.array([2, 0, 2]), np.array([1, 1, 0])
    c = rng.standard_normal((3, 2, 3))
    ga, gb = mx.grad(lambda x, y: (mx.gather_mm(x, y, mx.array(li), mx.array(ri)) * mx.array(c)).sum(),
                     argnums=(0, 1))(mx.array(a), mx.array(b))
    ra, rb = np.zeros_like(a), np.zeros_like(b)
    for k in range(3):
        ra[li[k]] += c[k] @ b[ri[k]].T
        rb[ri[k]] += a[li[k]].T @ c[k]
    close(ga, ra, rtol=1e-10)
    close(gb, rb, rtol=1e-10)


def expand(mask, bs, rows, cols):
    return np.repeat(np.repeat(mask, bs, -2), bs, -1)[..., :rows, :cols]


def test_block_masked_mm_matches_numpy(rng):
    a = rng.standard_normal((2, 70, 40)).astype(np.float32)
    b = rng.standard_normal((40, 33)).astype(np.float32)
    ml = rng.random((2, 3, 2)) < 0.6
    mr = rng.random((2, 2)) < 0.6
    mo = rng.random((2, 3, 2)) < 0.6
    out = mx.block_masked_mm(mx.array(a), mx.array(b), 32, mx.array(mo), mx.array(ml), mx.array(mr))
    ref = ((a * expand(ml, 32, 70, 40)) @ (b * expand(mr, 32, 40, 33))) * expand(mo, 32, 70, 33)
    close(out, ref, rtol=1e-4, atol=1e-4)
    fo = rng.uniform(-1, 2, (3, 2)).astype(np.float32)  # floating masks scale their blocks
    out = mx.block_masked_mm(mx.array(a[0]), mx.array(b), block_size=32, mask_out=mx.array(fo))
    close(out, (a[0] @ b) * expand(fo, 32, 70, 33), rtol=1e-4, atol=1e-4)
    close(mx.block_masked_mm(mx.array(a), mx.array(b)), a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        mx.block_masked_mm(mx.array(a), mx.array(b), 32, mx.array(np.ones((4, 2), bool)))
    with pytest.raises(ValueError):
        mx.block_masked_mm(mx.array(a), mx.array(b), 0)


def test_block_masked_mm_gradient(rng):
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((4, 5))
    ml = rng.random((3, 2)) < 0.5
    g = mx.grad(lambda x: mx.block_masked_mm(x, mx.array(b), 2, None, mx.array(ml)).sum())(mx.array(a))
    close(g, np.ones((6, 5)) @ b.T * expand(ml, 2, 6, 4), rtol=1e-10)


def test_segmented_mm_matches_numpy(rng):
    a, b = rng.standard_normal((3, 10)), rng.standard_normal((10, 4))
    seg = np.array([[[0, 3], [3, 10]], [[5, 5], [7, 2]]])
    out = mx.segmented_mm(mx.array(a), mx.array(b), mx.array(seg))
    assert out.shape == (2, 2, 3, 4)
    ref = np.array([[a[:, s:e] @ b[s:e] if e > s else np.zeros((3, 4)) for s, e in row] for row in seg])
    close(out, ref, rtol=1e-10)
    close(mx.segmented_mm(mx.array(a), mx.array(b), segments=mx.array([2, 6])), a[:, 2:6] @ b[2:6])
    ga = mx.grad(lambda x: mx.segmented_mm(x, mx.array(b), mx.array(seg)).sum())(mx.array(a))
    gref = np.zeros_like(a)
    for s, e in seg.reshape(-1, 2):
        if e > s:
            gref[:, s:e] += np.ones((3, 4)) @ b[s:e].T
    close(ga, gref, rtol=1e-10)
    with pytest.raises(ValueError):
        mx.segmented_mm(mx.array(a), mx.array(b), mx.array([[0, 3, 4]]))
    with pytest.raises(ValueError):
        mx.segmented_mm(mx.array(a), mx.array(b), mx.array([[0.0, 3.0]]))
    with pytest.raises(ValueError):
        mx.segmented_mm(mx.array(a[None]), mx.array(b), mx.array([[0, 3]]))


# ───────────────────────────── export_to_dot ─────────────────────────────


def parse_dot(text):
    """(sources, nodes {id: label}, edges [(from, to)], sinks) of export_to_dot's output."""
    lines = text.strip().splitlines()
    assert lines[0] == "digraph {" and lines[-1] == "}"
    sources, sinks, nodes, edges = [], [], {}, []
    for ln in lines[1:-1]:
        if m := re.fullmatch(r'\{ rank=source; "(\w+)"; \}', ln):
            sources.append(m[1])
        elif m := re.fullmatch(r'\{ (\d+) \[label ="(\w+)", shape=rectangle\]; \}', ln):
            nodes[m[1]] = m[2]
        elif m := re.fullmatch(r'\{ (rank=sink; )?"(\w+)"; \}', ln):
            if m[1]:
                sinks.append(m[2])
        elif m := re.fullmatch(r'"?(\w+)"? -> "?(\w+)"?', ln):
            edges.append((m[1], m[2]))
        else:
            raise AssertionError("unexpected line: " + ln)
    return sources, nodes, edges, sinks


def test_export_to_dot_structure(tmp_path):
    x, y = mx.array(1.0), mx.array(2.0)
    z = mx.exp(x + y) * x
    path = tmp_path / "g.dot"
    mx.export_to_dot(str(path), z, x=x, y=y)
    sources, nodes, edges, sinks = parse_dot(path.read_text())
    assert sources == ["x", "y"]
    assert sorted(nodes.values()) == ["Add", "Exp", "Multiply"]
    ids = {v: k for k, v in nodes.items()}
    assert ("x", ids["Add"]) in edges and ("y", ids["Add"]) in edges
    assert (ids["Add"], "C") in edges and ("C", ids["Exp"]) in edges
    assert (ids["Exp"], "D") in edges and ("D", ids["Multiply"]) in edges
    assert ("x", ids["Multiply"]) in edges and (ids["Multiply"], "E") in edges
    assert sinks == ["E"]
    # a file-like object and generated names; evaluated arrays are sources
    a = mx.array([1.0, 2.0])
    b = mx.sin(a)
    mx.eval(b)
    buf = io.StringIO()
    mx.export_to_dot(buf, b + a)
    sources, nodes, edges, sinks = parse_dot(buf.getvalue())
    assert sources == ["A", "B"] and list(nodes.values()) == ["Add"] and sinks == ["C"]
    with pytest.raises(TypeError):
        mx.export_to_dot(buf, b, name=3)


def test_export_to_dot_long_chain(tmp_path):
    x = mx.array(0.0)
    for _ in range(3000):  # deep graphs: the walk is iterative
        x = x + 1
    buf = io.StringIO()
    mx.export_to_dot(buf, x)
    _, nodes, _, sinks = parse_dot(buf.getvalue())
    assert len(nodes) == 3000 and len(sinks) == 1


# ───────────────────────────── GGUF ─────────────────────────────


def test_gguf_roundtrip_with_metadata(tmp_path, rng):
    arrays = {"w": mx.array(rng.standard_normal((2, 3)).astype(np.float32)),
              "h": mx.array(rng.standard_normal(4).astype(np.float16)),
              "b": mx.array(rng.standard_normal((3, 1, 2)).astype(np.float32)).astype(mx.bfloat16),
              "i": mx.array(rng.integers(-100, 100, (1, 5)).astype(np.int32)),
              "s": mx.array(2.5)}
    meta = {"a": mx.array(1), "f": mx.array(2.5), "name": "ponte", "toks": ["x", "", "yy"],
            "v": mx.array([1, 2, 3], mx.uint8), "flag": mx.array(True)}
    path = str(tmp_path / "m")
    mx.save_gguf(path, arrays, meta)  # the extension is added
    loaded, md = mx.load(path + ".gguf", return_metadata=True)
    assert list(loaded) == list(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        np.testing.assert_array_equal(np.array(loaded[k].astype(mx.float32)), np.array(v.astype(mx.float32)))
    assert md["name"] == "ponte" and md["toks"] == ["x", "", "yy"]
    for k in ["a", "f", "v", "flag"]:
        assert md[k].dtype == meta[k].dtype and md[k].tolist() == meta[k].tolist()
    assert isinstance(mx.load(path + ".gguf"), dict)
    with pytest.raises(ValueError):
        mx.save_gguf(path, {"u": mx.array([1], mx.uint8)}, {})
    with pytest.raises(ValueError):
        mx.save_gguf(path, arrays, {"m": mx.zeros((2, 2))})
    with pytest.raises(TypeError):
        mx.save_gguf(path, arrays, {"m": 5})
    data = open(path + ".gguf", "rb").read()
    open(path + "_cut.gguf", "wb").write(data[:len(data) // 2])
    with pytest.raises(OSError):
        mx.load(path + "_cut.gguf")


def test_get_array_buffer_size():
    a = mx.array(np.arange(1000, dtype=np.float32))
    b = a.reshape(10, 100)  # a view: the same buffer
    c = mx.zeros((5,), mx.int8)
    mx.eval(a, b, c)
    one = mx.get_array_buffer_size(a)
    assert one >= 4000
    assert mx.get_array_buffer_size([a, {"v": b}]) == one
    assert mx.get_array_buffer_size(a, c, "not an array") >= one + 5
    assert mx.get_array_buffer_size() == 0
    with pytest.raises(ValueError):
        mx.get_array_buffer_size(a + 1)


def test_streams_surface():
    s = mx.new_thread_unsafe_stream(mx.cpu)
    assert s.device == mx.Device(mx.cpu) and s != mx.default_stream(mx.cpu)
    with mx.stream(s):
        assert (mx.array([1.0]) + 1).item() == 2.0
    assert mx.default_stream(mx.cpu) == mx.default_stream(mx.Device(mx.cpu))


def test_set_default_stream():
    old = mx.default_stream(mx.cpu)
    s = mx.new_stream(mx.cpu)
    mx.set_default_stream(s)
    try:
        assert mx.default_stream(mx.cpu) == s
        with mx.stream(mx.cpu):
            a = mx.array([1.0, 2.0]) * 3
        assert a.tolist() == [3.0, 6.0]
    finally:
        mx.set_default_stream(old)
    assert mx.default_stream(mx.cpu) == old
    with pytest.raises(TypeError):
        mx.set_default_stream(3)
