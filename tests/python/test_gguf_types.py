"""GGUF's block-quantized tensor types (src/io/gguf.c) against gguf-py, ggml's own Python
package: files written by gguf.GGUFWriter with random tensors (quantized by gguf.quants where it
can quantize the type, else random blocks with sane scales) load through mx.load as MLX's affine
triples (Q4_0/Q4_1/Q8_0) or float16 arrays equal to gguf.quants.dequantize rounded to float16.
Skips when gguf is not importable (scripts/python-run installs it into $BUILD/pydeps)."""
import numpy as np
import pytest

import ponte as pn

gguf = pytest.importorskip("gguf")
gq = pytest.importorskip("gguf.quants")

try:
    import mlx.core as mlx_core
except ImportError:  # the MLX comparison skips
    mlx_core = None

T = gguf.GGMLQuantizationType

# type -> float16 (or float32 for Q8_K) scale fields in each block: (byte offset, bytes)
SCALE_FIELDS = {
    "Q5_0": [(0, 2)], "Q5_1": [(0, 2), (2, 2)], "Q2_K": [(80, 2), (82, 2)],
    "Q3_K": [(108, 2)], "Q4_K": [(0, 2), (2, 2)], "Q5_K": [(0, 2), (2, 2)],
    "Q6_K": [(208, 2)], "Q8_K": [(0, 4)], "IQ4_NL": [(0, 2)], "IQ4_XS": [(0, 2)],
}
AFFINE = {"Q4_0": 4, "Q4_1": 4, "Q8_0": 8}
DEQUANT = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL",
           "IQ4_XS"]
# the types MLX 0.32 dequantizes through gguflib; its Q4_K decoder scales each odd sub-block
# of 32 with the preceding even one's (scale, min), so only the even sub-blocks agree there
MLX_FLOAT16 = {"Q2_K", "Q4_K", "Q6_K"}


def block_size(kind):
    return gguf.GGML_QUANT_SIZES[T[kind]]


def random_blocks(kind, shape, rng):
    """Random blocks of kind for a tensor of shape: random bytes, the scale fields replaced by
    random finite values of moderate size."""
    bs, ts = block_size(kind)
    nb = int(np.prod(shape)) // bs
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    for off, width in SCALE_FIELDS[kind]:
        ft = np.float16 if width == 2 else np.float32
        v = (rng.uniform(0.05, 1.0, nb) * rng.choice([-1, 1], nb)).astype(ft)
        raw[:, off:off + width] = v.view(np.uint8).reshape(nb, width)
    return raw.reshape(*shape[:-1], shape[-1] // bs * ts)


def q8_k_dequant(raw):
    """float64 decoder of Q8_K (gguf-py does not dequantize it): f32 d, 256 int8, 16 int16."""
    b = raw.reshape(-1, 292)
    d = b[:, :4].copy().view(np.float32).astype(np.float64)
    q = b[:, 4:260].copy().view(np.int8).astype(np.float64)
    return (d * q).reshape(-1)


def write(path, tensors):
    """A GGUF file of (name, raw array, ggml type) through gguf-py's writer."""
    w = gguf.GGUFWriter(str(path), "ponte-test")
    for name, raw, kind in tensors:
        w.add_tensor(name, raw, raw_dtype=T[kind])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(kind, raw, shape):
    if kind == "Q8_K":
        return q8_k_dequant(raw).reshape(shape)
    return gq.dequantize(raw, T[kind]).astype(np.float64).reshape(shape)


def shapes_for(kind):
    bs = block_size(kind)[0]
    return [(bs,), (3, 2 * bs), (2, 2, bs)]


@pytest.mark.parametrize("kind", DEQUANT)
def test_dequantized_types_match_gguf_py(tmp_path, kind):
    rng = np.random.default_rng(hash(kind) % 2**32)
    for si, shape in enumerate(shapes_for(kind)):
        raw = random_blocks(kind, shape, rng)
        path = tmp_path / ("%s_%d.gguf" % (kind, si))
        write(path, [("blk.0.w.weight", raw, kind), ("other", np.arange(6, dtype=np.float32),
                                                      "F32")])
        d = pn.load(str(path))
        assert sorted(d) == ["blk.0.w.weight", "other"]
        a = d["blk.0.w.weight"]
        assert a.dtype == pn.float16 and tuple(a.shape) == shape
        ref = reference(kind, raw, shape)
        got = np.array(a).astype(np.float64)
        assert np.isfinite(ref).all() and np.abs(ref).max() > 0
        # our values round the float32 decoding to float16: within float16's half ulp
        np.testing.assert_allclose(got, ref, rtol=2 ** -10, atol=1e-3 * np.abs(ref).max())
        np.testing.assert_array_equal(np.array(d["other"]), np.arange(6, dtype=np.float32))
        if mlx_core is not None and kind in MLX_FLOAT16:
            m = mlx_core.load(str(path))
            assert m["blk.0.w.weight"].dtype == mlx_core.float16
            theirs = np.array(m["blk.0.w.weight"]).astype(np.float64)
            if kind == "Q4_K":
                even = (np.arange(shape[-1]) // 32) % 2 == 0
                got, theirs = got[..., even], theirs[..., even]
            np.testing.assert_allclose(got, theirs, rtol=2 ** -10, atol=1e-3 * np.abs(ref).max())


def dequant_affine(d, name, prefix):
    w = np.array(d[name]).astype(np.uint64)
    s = np.array(d[prefix + ".scales"]).astype(np.float64)
    b = np.array(d[prefix + ".biases"]).astype(np.float64)
    bits = w.shape[-1] * 32 // (s.shape[-1] * 32)
    vals = np.stack([(w >> np.uint64(bits * i % 32)) & np.uint64((1 << bits) - 1)
                     for i in range(32 // bits)], -1).reshape(*w.shape[:-1], -1)
    return s.repeat(32, -1) * vals + b.repeat(32, -1)


@pytest.mark.parametrize("kind", list(AFFINE))
def test_affine_types_quantized_by_gguf_py(tmp_path, kind):
    rng = np.random.default_rng(7 + AFFINE[kind])
    for si, shape in enumerate([(64,), (3, 96), (2, 2, 32)]):
        x = rng.standard_normal(shape).astype(np.float32)
        raw = gq.quantize(x, T[kind])
        path = tmp_path / ("%s_%d.gguf" % (kind, si))
        write(path, [("layers.0.proj.weight", raw, kind), ("plain", x, "F32")])
        d = pn.load(str(path))
        # MLX's naming: the scales and biases sit beside "weight" under the module's prefix
        assert sorted(d) == ["layers.0.proj.biases", "layers.0.proj.scales",
                             "layers.0.proj.weight", "plain"]
        w = d["layers.0.proj.weight"]
        assert w.dtype == pn.uint32
        assert tuple(w.shape) == shape[:-1] + (shape[-1] * AFFINE[kind] // 32,)
        ref = gq.dequantize(raw, T[kind]).astype(np.float64).reshape(shape)
        got = dequant_affine(d, "layers.0.proj.weight", "layers.0.proj")
        # float16 biases (-8 d, -128 d) are exact: the values agree to float32 rounding
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
        if mlx_core is not None:
            m = mlx_core.load(str(path))
            assert sorted(m) == sorted(d)
            for k in m:
                np.testing.assert_array_equal(np.array(d[k]), np.array(m[k]))


@pytest.mark.parametrize("kind", ["Q2_K", "Q5_0", "IQ4_XS", "Q4_0"])
def test_truncations_refused(tmp_path, kind):
    rng = np.random.default_rng(3)
    bs = block_size(kind)[0]
    shape = (2, bs)
    raw = (gq.quantize(rng.standard_normal(shape).astype(np.float32), T[kind])
           if kind in AFFINE else random_blocks(kind, shape, rng))
    path = tmp_path / "t.gguf"
    write(path, [("t", raw, kind)])
    data = path.read_bytes()
    assert len(pn.load(str(path))) in (1, 3)
    end = data.rfind(raw.tobytes()) + raw.nbytes  # gguf-py pads the file past the data
    assert end > raw.nbytes
    for cut in list(range(0, end, max(1, end // 40))) + [end - 1]:
        path.write_bytes(data[:cut])
        with pytest.raises(OSError):
            pn.load(str(path), format="gguf")


def test_rows_not_whole_blocks_and_unknown_types(tmp_path):
    import struct

    def one_tensor(dims, t, nbytes):
        out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, 1, 0)
        out += struct.pack("<Q", 1) + b"t" + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", v) for v in dims) + struct.pack("<IQ", t, 0)
        out += b"\0" * (-len(out) % 32) + bytes(range(256)) * (nbytes // 256 + 1)
        p = tmp_path / "e.gguf"
        p.write_bytes(bytes(out[:len(out) - (256 * (nbytes // 256 + 1) - nbytes)]))
        return str(p)

    with pytest.raises(OSError, match="multiple of the block size 256"):
        pn.load(one_tensor([128, 2], int(T.Q6_K), 210))
    with pytest.raises(OSError, match="multiple of the block size 32"):
        pn.load(one_tensor([48], int(T.Q5_1), 48))
    with pytest.raises(OSError, match="IQ2_XXS"):
        pn.load(one_tensor([256], int(T.IQ2_XXS), 66))
    with pytest.raises(OSError, match="outside the file"):
        pn.load(one_tensor([256, 2], int(T.Q3_K), 219))  # a byte short of 2 blocks of 110
    assert tuple(pn.load(one_tensor([256, 2], int(T.Q3_K), 220))["t"].shape) == (2, 256)
