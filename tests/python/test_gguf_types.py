"""GGUF's block-quantized tensor types (src/io/gguf.c) against gguf-py, ggml's own Python
package: files written by gguf.GGUFWriter with random tensors (quantized by gguf.quants where it
can quantize the type, else random blocks with sane scales) load through mx.load as MLX's affine
triples (Q4_0/Q4_1/Q8_0) or float16 arrays equal to gguf.quants.dequantize rounded to float16
(the IQ2/IQ3/IQ1, TQ and FP4 types bit for bit, non-finite scales included). Skips when gguf is not importable (scripts/python-run installs it into $BUILD/pydeps)."""
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
    "IQ2_XXS": [(0, 2)], "IQ2_XS": [(0, 2)], "IQ2_S": [(0, 2)], "IQ3_XXS": [(0, 2)],
    "IQ3_S": [(0, 2)], "IQ1_S": [(0, 2)], "TQ1_0": [(52, 2)], "TQ2_0": [(64, 2)],
    "MXFP4": [(0, 1)],  # an e8m0 exponent byte
    "NVFP4": [],  # four e4m3 bytes: every byte is a finite scale
    "IQ1_M": [],  # d is spread over the top nibbles of the u16s at 48..55 (set_iq1_m_d)
}
AFFINE = {"Q4_0": 4, "Q4_1": 4, "Q8_0": 8}
# the types added in session 10: equal to gguf-py's decoding rounded to float16, bit for bit
NEW = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0",
       "MXFP4", "NVFP4"]
DEQUANT = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL",
           "IQ4_XS"] + NEW
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
        if width == 1:  # 2^(e - 128) times e2m1 values up to 12: float16's normal range mostly
            raw[:, off] = rng.integers(105, 140, nb)
            continue
        ft = np.float16 if width == 2 else np.float32
        v = (rng.uniform(0.05, 1.0, nb) * rng.choice([-1, 1], nb)).astype(ft)
        raw[:, off:off + width] = v.view(np.uint8).reshape(nb, width)
    if kind == "IQ1_M":
        set_iq1_m_d(raw, (rng.uniform(0.05, 1.0, nb) * rng.choice([-1, 1], nb)).astype(np.float16))
    return raw.reshape(*shape[:-1], shape[-1] // bs * ts)


def set_iq1_m_d(raw, d):
    """IQ1_M's float16 d: nibble i of its bits is the top nibble of the u16 at 48 + 2 i."""
    w = raw[:, 48:56].copy().view(np.uint16)
    bits = d.view(np.uint16).astype(np.uint16)
    for i in range(4):
        w[:, i] = (w[:, i] & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
    raw[:, 48:56] = w.view(np.uint8)


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


def same_float16(got, ref16):
    """got == ref16 bit for bit, except that any NaN matches any NaN."""
    g, r = got.view(np.uint16), ref16.view(np.uint16)
    nan = np.isnan(got) & np.isnan(ref16)
    assert np.array_equal(np.isnan(got), np.isnan(ref16))
    bad = (g != r) & ~nan
    assert not bad.any(), "%d of %d values differ, first at %s: %r vs %r" % (
        bad.sum(), bad.size, np.argwhere(bad)[0], got[bad][:4], ref16[bad][:4])


@pytest.mark.parametrize("kind", [k for k in DEQUANT if k != "Q8_K"])
def test_dequantized_types_bit_exact(tmp_path, kind):
    """Several random blocks per 2-D tensor; ponte's float16 equals gguf-py's float32
    dequantization cast to float16 exactly (same float32 operations, same rounding)."""
    rng = np.random.default_rng(1000 + int(T[kind]))
    bs = block_size(kind)[0]
    for si, shape in enumerate([(3, 2 * bs), (5, bs), (2, 4 * bs)]):
        raw = random_blocks(kind, shape, rng)
        path = tmp_path / ("%s_%d.gguf" % (kind, si))
        write(path, [("w", raw, kind)])
        got = np.array(pn.load(str(path))["w"])
        assert got.dtype == np.float16 and got.shape == shape
        ref = gq.dequantize(raw, T[kind]).reshape(shape)
        assert ref.dtype == np.float32 and np.isfinite(ref).all()
        assert np.count_nonzero(ref) > ref.size // 4
        same_float16(got, ref.astype(np.float16))


NONFINITE_F16 = np.array([np.inf, -np.inf, np.nan, 65504, -6e-8, 0.0], dtype=np.float16)


@pytest.mark.parametrize("kind", ["IQ2_XXS", "IQ2_S", "IQ3_S", "IQ1_S", "IQ1_M", "TQ1_0",
                                  "MXFP4", "NVFP4"])
def test_new_types_extreme_scales_follow_gguf_py(tmp_path, kind):
    """Infinite, NaN, largest, subnormal and zero scales (e8m0 0, 1, 254, 255; the e4m3 bytes
    0, 0x7f, 0x80, 0xff) decode as gguf-py decodes them."""
    rng = np.random.default_rng(77)
    bs, ts = block_size(kind)
    nb = 6
    raw = random_blocks(kind, (nb * bs,), rng).reshape(nb, ts)
    if kind == "MXFP4":
        raw[:, 0] = [0, 1, 2, 254, 255, 127]
    elif kind == "NVFP4":
        raw[:, :4] = np.array([0, 0x7F, 0x80, 0xFF, 0x7E, 0x01, 0x08, 0x87] * 3,
                              dtype=np.uint8).reshape(nb, 4)
    elif kind == "IQ1_M":
        set_iq1_m_d(raw, NONFINITE_F16)
    else:
        off = SCALE_FIELDS[kind][0][0]
        raw[:, off:off + 2] = NONFINITE_F16.view(np.uint8).reshape(nb, 2)
    raw = raw.reshape(2, nb * ts // 2)
    path = tmp_path / "x.gguf"
    write(path, [("w", raw, kind)])
    got = np.array(pn.load(str(path))["w"])
    with np.errstate(all="ignore"):
        ref = gq.dequantize(raw, T[kind]).reshape(got.shape).astype(np.float16)
    assert not np.isfinite(ref).all() or kind == "NVFP4"
    same_float16(got, ref)


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


@pytest.mark.parametrize("kind", ["Q2_K", "Q5_0", "IQ4_XS", "Q4_0", "IQ2_S", "IQ1_M", "MXFP4",
                                  "NVFP4"])
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
    with pytest.raises(OSError, match="Q1_0"):  # gguf-py has no dequantizer for it
        pn.load(one_tensor([128], int(T.Q1_0), 18))
    with pytest.raises(OSError, match="Q8_1"):
        pn.load(one_tensor([32], int(T.Q8_1), 36))
    with pytest.raises(OSError, match=r"type Q4_0_4_4 \(31\)"):
        pn.load(one_tensor([32], 31, 18))
    with pytest.raises(OSError, match="outside the file"):
        pn.load(one_tensor([64, 3], int(T.NVFP4), 107))  # a byte short of 3 blocks of 36
    assert tuple(pn.load(one_tensor([512, 2], int(T.IQ1_M), 224))["t"].shape) == (2, 512)
    with pytest.raises(OSError, match="outside the file"):
        pn.load(one_tensor([256, 2], int(T.Q3_K), 219))  # a byte short of 2 blocks of 110
    assert tuple(pn.load(one_tensor([256, 2], int(T.Q3_K), 220))["t"].shape) == (2, 256)
