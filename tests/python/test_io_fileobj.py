"""Saving to and loading from file objects (anything with write / read), as MLX: every saver
writes through a file object exactly the bytes it writes to a path, load reads them back (the
format from format= or the file object's name), numpy and MLX read and write the same streams,
and failing streams give Python errors."""
import io
import pathlib

import numpy as np
import pytest

import ponte as mx

try:
    import mlx.core as mlx
except ImportError:
    mlx = None

DTYPES = [np.float32, np.float16, np.int32, np.int64, np.uint8, np.bool_]


def arrays(rng, n=3):
    out = {}
    for i in range(n):
        dt = DTYPES[(i + rng.integers(len(DTYPES))) % len(DTYPES)]
        shape = tuple(int(s) for s in rng.integers(1, 6, size=rng.integers(1, 4)))
        x = rng.standard_normal(shape) * 10
        out[f"w{i}"] = (x > 0) if dt is np.bool_ else x.astype(dt)
    return out


# (format, ext, save(file, dict of ponte arrays))
SAVERS = [
    ("npz", ".npz", lambda f, d: mx.savez(f, **d)),
    ("npz", ".npz", lambda f, d: mx.savez_compressed(f, **d)),
    ("safetensors", ".safetensors", lambda f, d: mx.save_safetensors(f, d)),
    ("gguf", ".gguf", lambda f, d: mx.save_gguf(f, {k: v for k, v in d.items() if v.dtype in (mx.float32, mx.float16, mx.int32)})),
]


def check_same(loaded, want):
    assert set(loaded) == set(want)
    for k, v in want.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        np.testing.assert_array_equal(np.array(loaded[k]), np.array(v))


@pytest.mark.parametrize("fmt,ext,save", SAVERS, ids=["savez", "savez_compressed", "safetensors", "gguf"])
def test_file_object_round_trip(rng, tmp_path, fmt, ext, save):
    d = {k: mx.array(v) for k, v in arrays(rng).items()}
    if fmt == "gguf":
        d = {k: v for k, v in d.items() if v.dtype in (mx.float32, mx.float16, mx.int32)} or {"w": mx.array([1.5])}
    buf = io.BytesIO()
    save(buf, d)
    path = tmp_path / ("x" + ext)
    save(str(path), d)
    assert buf.getvalue() == path.read_bytes()  # the same bytes as the path saver
    buf.seek(0)
    check_same(mx.load(buf, format=fmt), d)
    with open(path, "rb") as f:  # the format from the file object's name
        check_same(mx.load(f), d)
    with open(tmp_path / ("y" + ext), "wb") as f:
        save(f, d)
    assert (tmp_path / ("y" + ext)).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("dt", DTYPES)
def test_npy_file_object_and_numpy(rng, tmp_path, dt):
    x = arrays(rng, 1)["w0"].astype(dt)
    buf = io.BytesIO()
    mx.save(buf, mx.array(x))
    buf.seek(0)
    np.testing.assert_array_equal(np.load(buf), x)  # numpy reads what Ponte wrote
    nb = io.BytesIO()
    np.save(nb, x)
    nb.seek(0)
    got = mx.load(nb, format="npy")  # and Ponte what numpy wrote
    np.testing.assert_array_equal(np.array(got), x)
    with open(tmp_path / "a.npy", "wb") as f:
        mx.save(f, mx.array(x))
    with open(tmp_path / "a.npy", "rb") as f:
        np.testing.assert_array_equal(np.array(mx.load(f)), x)
    assert not (tmp_path / "a.npy.npy").exists()  # a file object gets no extension


@pytest.mark.skipif(mlx is None, reason="mlx is not installed")
@pytest.mark.parametrize("which", ["npy", "npz", "safetensors"])
def test_streams_match_mlx(rng, which):
    d = {k: v for k, v in arrays(rng).items() if v.dtype != np.bool_} or {"w": np.ones(3, np.float32)}
    ours, theirs = io.BytesIO(), io.BytesIO()
    if which == "npy":
        x = next(iter(d.values()))
        mx.save(ours, mx.array(x))
        mlx.save(theirs, mlx.array(x))
        ours.seek(0), theirs.seek(0)
        np.testing.assert_array_equal(np.array(mlx.load(ours, format="npy")), x)
        np.testing.assert_array_equal(np.array(mx.load(theirs, format="npy")), x)
        return
    if which == "npz":
        mx.savez(ours, **{k: mx.array(v) for k, v in d.items()})
        mlx.savez(theirs, **{k: mlx.array(v) for k, v in d.items()})
    else:
        mx.save_safetensors(ours, {k: mx.array(v) for k, v in d.items()})
        mlx.save_safetensors(theirs, {k: mlx.array(v) for k, v in d.items()})
    ours.seek(0), theirs.seek(0)
    a, b = mlx.load(ours, format=which), mx.load(theirs, format=which)
    for k, v in d.items():
        np.testing.assert_array_equal(np.array(a[k]), v)
        np.testing.assert_array_equal(np.array(b[k]), v)


def test_paths(tmp_path):
    x = mx.array(np.arange(6, dtype=np.float32).reshape(2, 3))
    mx.save(tmp_path / "p", x)  # os.PathLike, the extension appended
    assert (tmp_path / "p.npy").exists()
    np.testing.assert_array_equal(np.array(mx.load(pathlib.Path(tmp_path / "p.npy"))), np.array(x))
    (tmp_path / "p.npy").rename(tmp_path / "noext")
    np.testing.assert_array_equal(np.array(mx.load(str(tmp_path / "noext"), format="npy")), np.array(x))
    with pytest.raises(ValueError, match="infer"):
        mx.load(str(tmp_path / "noext"))
    with pytest.raises(OSError):
        mx.load(str(tmp_path / "missing.npy"))


class Writer:
    """A raw-style writer that takes at most `chunk` bytes a call."""

    def __init__(self, chunk):
        self.chunk, self.data = chunk, bytearray()

    def write(self, b):
        k = min(len(b), self.chunk)
        self.data += bytes(b[:k])
        return k


def test_partial_writes_and_bad_streams(rng, tmp_path):
    d = {k: mx.array(v) for k, v in arrays(rng).items()}
    w, ref = Writer(7), io.BytesIO()
    mx.savez(w, **d)
    mx.savez(ref, **d)
    assert bytes(w.data) == ref.getvalue()

    class Raises:
        def write(self, b):
            raise KeyError("disk on fire")

    with pytest.raises(KeyError, match="disk on fire"):  # the stream's own exception
        mx.save_safetensors(Raises(), d)
    with pytest.raises(OSError):
        mx.save(Writer(0), mx.ones(3))  # a stream that takes nothing
    path = tmp_path / "r.npy"
    mx.save(str(path), mx.ones(3))
    with open(path, "rb") as f, pytest.raises(OSError):  # read-only: io.UnsupportedOperation
        mx.save(f, mx.ones(3))
    with open(path, "r") as f, pytest.raises(TypeError):  # text mode
        mx.save(f, mx.ones(3))
    (tmp_path / "t.txt").write_text("not binary")
    with open(tmp_path / "t.txt", "r") as f, pytest.raises(ValueError, match="binary mode"):
        mx.load(f, format="npy")
    with pytest.raises(ValueError, match="file-like object"):
        mx.save(object(), mx.ones(3))
    with pytest.raises(ValueError, match="file-like object"):
        mx.load(object())
    with pytest.raises(ValueError, match="format="):
        mx.load(io.BytesIO(path.read_bytes()))
    with pytest.raises(ValueError, match="Unknown file format"):
        mx.load(io.BytesIO(b""), format="xyz")


@pytest.mark.parametrize("fmt,save", [("npy", lambda f: mx.save(f, mx.arange(100))),
                                      ("npz", lambda f: mx.savez(f, a=mx.arange(100))),
                                      ("safetensors", lambda f: mx.save_safetensors(f, {"a": mx.arange(100)})),
                                      ("gguf", lambda f: mx.save_gguf(f, {"a": mx.arange(100)}))])
def test_truncated_streams(fmt, save):
    buf = io.BytesIO()
    save(buf)
    data = buf.getvalue()
    for cut in [0, 5, len(data) // 2, len(data) - 17]:  # (gguf pads its data to 32 bytes)
        with pytest.raises(OSError):
            mx.load(io.BytesIO(data[:cut]), format=fmt)
    np.testing.assert_array_equal(np.array((lambda r: r if fmt == "npy" else r["a"])(
        mx.load(io.BytesIO(data), format=fmt))), np.arange(100))
