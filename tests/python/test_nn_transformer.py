"""nn.TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder, TransformerDecoder
and Transformer against numpy float64 references on random data (pre- and post-norm, masks,
activations), MLX's parameter names and defaults, dropout in training and eval mode,
gradients (with and without checkpointing) and errors."""
import math

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.core import _nn
from ponte.utils import tree_flatten

TOL = dict(rtol=2e-4, atol=2e-4)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def A(x):
    return mx.array(np.asarray(x, dtype=np.float32))


def close(y, ref, **kw):
    np.testing.assert_allclose(np.array(y).astype(np.float64), ref, **(kw or TOL))


def randomize(model, rng):
    """Replaces every parameter by random values (so the layer norms' affine parameters
    matter) and returns them as float64 numpy arrays by name."""
    flat = [(k, rng.uniform(-0.7, 0.7, v.shape)) for k, v in tree_flatten(model.parameters())]
    model.load_weights([(k, A(v)) for k, v in flat])
    return {k: np.array(np.float32(v), dtype=np.float64) for k, v in flat}


# ───────────────────────────── numpy reference ─────────────────────────────

def np_layer_norm(x, P, name):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * P[name + ".weight"] + P[name + ".bias"]


def np_mask(mask, L, S):
    """An additive float64 mask for L queries over S keys."""
    if mask is None:
        return np.zeros((L, S))
    if isinstance(mask, str):
        keep = np.arange(S)[None, :] <= np.arange(L)[:, None] + S - L
        return np.where(keep, 0.0, -np.inf)
    m = np.asarray(mask)
    return np.where(m, 0.0, -np.inf) if m.dtype == bool else m.astype(np.float64)


def np_attention(P, name, q, kv, mask, heads):
    B, L, D = q.shape
    S = kv.shape[1]

    def split(x):
        return x.reshape(B, -1, heads, D // heads).transpose(0, 2, 1, 3)

    Q = split(q @ P[name + ".query_proj.weight"].T)
    K = split(kv @ P[name + ".key_proj.weight"].T)
    V = split(kv @ P[name + ".value_proj.weight"].T)
    s = Q @ K.transpose(0, 1, 3, 2) / math.sqrt(D // heads) + np_mask(mask, L, S)
    s = np.exp(s - s.max(-1, keepdims=True))
    o = (s / s.sum(-1, keepdims=True)) @ V
    return o.transpose(0, 2, 1, 3).reshape(B, L, D) @ P[name + ".out_proj.weight"].T


def np_relu(x):
    return np.maximum(x, 0)


def np_gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_mlp(P, pre, y, act):
    h = act(y @ P[pre + "linear1.weight"].T + P[pre + "linear1.bias"])
    return h @ P[pre + "linear2.weight"].T + P[pre + "linear2.bias"]


def np_encoder_layer(P, pre, x, mask, heads, norm_first, act=np_relu):
    if norm_first:
        y = np_layer_norm(x, P, pre + "ln1")
        x = x + np_attention(P, pre + "attention", y, y, mask, heads)
        return x + np_mlp(P, pre, np_layer_norm(x, P, pre + "ln2"), act)
    x = np_layer_norm(x + np_attention(P, pre + "attention", x, x, mask, heads), P, pre + "ln1")
    return np_layer_norm(x + np_mlp(P, pre, x, act), P, pre + "ln2")


def np_decoder_layer(P, pre, x, mem, x_mask, m_mask, heads, norm_first, act=np_relu):
    if norm_first:
        y = np_layer_norm(x, P, pre + "ln1")
        x = x + np_attention(P, pre + "self_attention", y, y, x_mask, heads)
        y = np_layer_norm(x, P, pre + "ln2")
        x = x + np_attention(P, pre + "cross_attention", y, mem, m_mask, heads)
        return x + np_mlp(P, pre, np_layer_norm(x, P, pre + "ln3"), act)
    y = np_attention(P, pre + "self_attention", x, x, x_mask, heads)
    x = np_layer_norm(x + y, P, pre + "ln1")
    y = np_attention(P, pre + "cross_attention", y, mem, m_mask, heads)  # MLX queries with y
    x = np_layer_norm(x + y, P, pre + "ln2")
    return np_layer_norm(x + np_mlp(P, pre, x, act), P, pre + "ln3")


def np_encoder(P, pre, n, x, mask, heads, norm_first):
    for i in range(n):
        x = np_encoder_layer(P, f"{pre}layers.{i}.", x, mask, heads, norm_first)
    return np_layer_norm(x, P, pre + "ln")


def np_decoder(P, pre, n, x, mem, x_mask, m_mask, heads, norm_first):
    for i in range(n):
        x = np_decoder_layer(P, f"{pre}layers.{i}.", x, mem, x_mask, m_mask, heads, norm_first)
    return np_layer_norm(x, P, pre + "ln")


# ───────────────────────────── names and defaults ─────────────────────────────

ENCODER_LAYER_NAMES = [
    "attention.query_proj.weight", "attention.key_proj.weight", "attention.value_proj.weight",
    "attention.out_proj.weight", "ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]


def test_parameter_names_and_defaults():
    layer = nn.TransformerEncoderLayer(16, 4)
    flat = dict(tree_flatten(layer.parameters()))
    assert sorted(flat) == sorted(ENCODER_LAYER_NAMES)
    assert flat["linear1.weight"].shape == (64, 16)  # mlp_dims = 4 * dims
    assert flat["linear2.weight"].shape == (16, 64)
    assert layer.norm_first is True and layer.activation is nn.relu
    assert (np.array(flat["ln1.weight"]) == 1).all() and (np.array(flat["ln1.bias"]) == 0).all()
    assert np.abs(np.array(flat["linear2.weight"])).max() <= 1 / 8
    dec = nn.TransformerDecoderLayer(8, 2, mlp_dims=12)
    names = {k for k, _ in tree_flatten(dec.parameters())}
    assert {"self_attention.query_proj.weight", "cross_attention.out_proj.weight", "ln3.bias",
            "linear1.bias"} <= names and len(names) == 18
    assert not any("bias" in k for k in names if "attention" in k)  # projections without bias
    t = nn.Transformer(dims=8, num_heads=2, num_encoder_layers=2, num_decoder_layers=1)
    names = [k for k, _ in tree_flatten(t.parameters())]
    assert len(names) == 2 * 12 + 2 + 18 + 2
    assert "encoder.layers.1.linear2.bias" in names and "decoder.ln.weight" in names
    assert isinstance(t.encoder.layers[0].attention, nn.MultiHeadAttention)
    assert t.encoder.checkpoint is False and t.decoder.layers[0].norm_first is True
    enc = nn.TransformerEncoder(3, 8, 2, checkpoint=True)
    assert len(enc.layers) == 3 and enc.checkpoint is True
    for bad in [lambda: nn.TransformerEncoderLayer(10, 3), lambda: nn.TransformerEncoder(1, 8, 2, dropout=1.0)]:
        with pytest.raises(ValueError):
            bad()


def test_c_initializer_matches_the_modules():
    """The C initializer (pn_nn_transformer_init) makes the same names, in the same order, and
    from the same global random state the same values as constructing the modules."""
    cfg = (8, 2, 12, 2, 1, 0.0, True)
    for part, make in [(0, lambda: nn.TransformerEncoderLayer(8, 2, 12)),
                       (1, lambda: nn.TransformerDecoderLayer(8, 2, 12)),
                       (4, lambda: nn.Transformer(8, 2, 2, 1, 12))]:
        mx.random.seed(5)
        model = make()
        mx.random.seed(5)
        items = _nn.transformer_init(part, "", cfg)
        flat = tree_flatten(model.parameters())
        assert [k for k, _ in items] == [k for k, _ in flat]
        for (k, a), (_, b) in zip(items, flat):
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)
    keyed = _nn.transformer_init(0, "blk", cfg, mx.random.key(3))
    assert keyed[0][0] == "blk.attention.query_proj.weight"
    again = _nn.transformer_init(0, "blk", cfg, mx.random.key(3))
    np.testing.assert_array_equal(np.array(keyed[0][1]), np.array(again[0][1]))


# ───────────────────────────── forward passes ─────────────────────────────

@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "additive", "bool"])
def test_encoder_layer(rng, norm_first, mask_kind):
    B, L, D, H = 2, 5, 8, 2
    layer = nn.TransformerEncoderLayer(D, H, mlp_dims=12, norm_first=norm_first)
    P = randomize(layer, rng)
    x = rng.standard_normal((B, L, D))
    mask = {"none": None, "causal": "causal",
            "additive": nn.MultiHeadAttention.create_additive_causal_mask(L),
            "bool": rng.random((B, 1, L, L)) > 0.3}[mask_kind]
    if mask_kind == "bool":
        mask[..., 0] = True
    np_m = np.array(mask) if isinstance(mask, mx.array) else mask
    arg = mx.array(mask) if mask_kind == "bool" else mask
    y = layer(A(x), arg)
    assert y.shape == (B, L, D) and y.dtype == mx.float32
    close(y, np_encoder_layer(P, "", x, np_m, H, norm_first))
    if mask_kind != "bool":  # unbatched (L, D): a batch of one (a Ponte extension)
        close(layer(A(x[1]), arg), np_encoder_layer(P, "", x[1:], np_m, H, norm_first)[0])


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer(rng, norm_first):
    B, L, S, D, H = 2, 4, 6, 8, 4
    layer = nn.TransformerDecoderLayer(D, H, mlp_dims=16, norm_first=norm_first)
    P = randomize(layer, rng)
    x, mem = rng.standard_normal((B, L, D)), rng.standard_normal((B, S, D))
    m_mask = rng.standard_normal((L, S))
    y = layer(A(x), A(mem), "causal", A(m_mask))
    close(y, np_decoder_layer(P, "", x, mem, "causal", m_mask, H, norm_first))
    y = layer(A(x), A(mem), None, None)
    close(y, np_decoder_layer(P, "", x, mem, None, None, H, norm_first))


@pytest.mark.parametrize("norm_first", [True, False])
def test_stacks_and_transformer(rng, norm_first):
    B, L, S, D, H = 2, 5, 3, 6, 3
    enc = nn.TransformerEncoder(2, D, H, mlp_dims=10, norm_first=norm_first)
    P = randomize(enc, rng)
    x = rng.standard_normal((B, L, D))
    close(enc(A(x), "causal"), np_encoder(P, "", 2, x, "causal", H, norm_first))
    dec = nn.TransformerDecoder(3, D, H, mlp_dims=10, norm_first=norm_first)
    P = randomize(dec, rng)
    mem = rng.standard_normal((B, S, D))
    mm = rng.standard_normal((L, S))
    close(dec(A(x), A(mem), "causal", A(mm)), np_decoder(P, "", 3, x, mem, "causal", mm, H, norm_first))
    t = nn.Transformer(D, H, 2, 1, mlp_dims=10, norm_first=norm_first)
    P = randomize(t, rng)
    src, tgt = rng.standard_normal((B, S, D)), rng.standard_normal((B, L, D))
    memory = np_encoder(P, "encoder.", 2, src, None, H, norm_first)
    ref = np_decoder(P, "decoder.", 1, tgt, memory, "causal", None, H, norm_first)
    close(t(A(src), A(tgt), None, "causal", None), ref)
    # encoder and decoder called one after the other (as MLX's Transformer does): the same
    close(t.decoder(A(tgt), t.encoder(A(src), None), "causal", None), ref)


def test_activation_and_dtype(rng):
    B, L, D = 2, 3, 8
    layer = nn.TransformerEncoderLayer(D, 2, mlp_dims=16, activation=nn.gelu)
    P = randomize(layer, rng)
    x = rng.standard_normal((B, L, D))
    close(layer(A(x), None), np_encoder_layer(P, "", x, None, 2, True, np_gelu))
    layer.activation = lambda v: nn.relu(v) * 2.0  # any callable
    close(layer(A(x), None), np_encoder_layer(P, "", x, None, 2, True, lambda v: 2 * np_relu(v)))
    layer.set_dtype(mx.float64)
    y = layer(mx.array(x), None)
    assert y.dtype == mx.float64
    np.testing.assert_allclose(np.array(y), np_encoder_layer(P, "", x, None, 2, True, lambda v: 2 * np_relu(v)),
                               rtol=1e-6, atol=1e-6)
    layer.activation = lambda v: v.sum(-1)
    with pytest.raises(ValueError):
        layer(A(x), None)
    layer.activation = lambda v: 1 / 0
    with pytest.raises(ZeroDivisionError):
        layer(A(x), None)


def test_dropout_training_and_eval(rng):
    D = 8
    t = nn.TransformerEncoder(2, D, 2, dropout=0.5)
    x = A(rng.standard_normal((2, 6, D)))
    mx.random.seed(1)
    a = t(x, None)
    mx.random.seed(1)
    b = t(x, None)
    c = t(x, None)
    assert np.array_equal(np.array(a), np.array(b)) and not np.array_equal(np.array(a), np.array(c))
    t.eval()
    e1, e2 = t(x, None), t(x, None)
    assert np.array_equal(np.array(e1), np.array(e2)) and not np.array_equal(np.array(a), np.array(e1))
    t.train()
    assert not np.array_equal(np.array(t(x, None)), np.array(e1))


def test_gradients_against_finite_differences(rng):
    B, L, S, D = 2, 3, 2, 4
    model = nn.TransformerDecoderLayer(D, 2, mlp_dims=6)
    P = randomize(model, rng)
    model.set_dtype(mx.float64)
    x, mem = rng.standard_normal((B, L, D)), rng.standard_normal((B, S, D))
    w = rng.standard_normal((B, L, D))

    def F(a):
        return mx.array(a, dtype=mx.float64)

    def loss(xx, mm):
        return (model(xx, mm, "causal", None) * F(w)).sum()

    lg = nn.value_and_grad(model, loss)
    val, grads = lg(F(x), F(mem))
    G = dict(tree_flatten(grads))
    assert sorted(G) == sorted(P)

    def np_loss(Pd, xx=x, mm=mem):
        return float((np_decoder_layer(Pd, "", xx, mm, "causal", None, 2, True) * w).sum())

    assert abs(val.item() - np_loss(P)) < 1e-9
    eps = 1e-6
    for name in ["self_attention.query_proj.weight", "cross_attention.value_proj.weight", "ln2.bias",
                 "linear1.weight", "ln3.weight"]:
        for idx in [(0,) * P[name].ndim, tuple(s - 1 for s in P[name].shape)]:
            Pp = {k: v.copy() for k, v in P.items()}
            Pm = {k: v.copy() for k, v in P.items()}
            Pp[name][idx] += eps
            Pm[name][idx] -= eps
            fd = (np_loss(Pp) - np_loss(Pm)) / (2 * eps)
            assert abs(np.array(G[name])[idx] - fd) < 1e-6 * max(1, abs(fd)), name
    # the gradient with respect to the memory flows through the cross attention
    gx = mx.grad(lambda mm: loss(F(x), mm))(F(mem))
    mp, mmn = mem.copy(), mem.copy()
    mp[1, 0, 2] += eps
    mmn[1, 0, 2] -= eps
    fd = (np_loss(P, mm=mp) - np_loss(P, mm=mmn)) / (2 * eps)
    assert abs(np.array(gx)[1, 0, 2] - fd) < 1e-6 * max(1, abs(fd))


def test_checkpoint_gives_the_same_gradients(rng):
    D = 8
    mx.random.seed(3)
    plain = nn.Transformer(D, 2, 1, 1, mlp_dims=12)
    mx.random.seed(3)
    ckpt = nn.Transformer(D, 2, 1, 1, mlp_dims=12, checkpoint=True)
    src, tgt = A(rng.standard_normal((2, 4, D))), A(rng.standard_normal((2, 3, D)))
    mask = A(rng.standard_normal((3, 4)))

    def grads_of(model):
        lg = nn.value_and_grad(model, lambda s, t: model(s, t, None, "causal", mask).square().sum())
        v, g = lg(src, tgt)
        return v.item(), dict(tree_flatten(g))

    v1, g1 = grads_of(plain)
    v2, g2 = grads_of(ckpt)
    assert abs(v1 - v2) < 1e-4 * abs(v1) and g1.keys() == g2.keys()
    for k in g1:
        np.testing.assert_allclose(np.array(g2[k]), np.array(g1[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    # the encoder's parameters get gradients through the memory
    assert np.abs(np.array(g1["encoder.layers.0.linear1.weight"])).sum() > 0


def test_errors(rng):
    layer = nn.TransformerEncoderLayer(8, 2)
    x = A(rng.standard_normal((2, 5, 8)))
    with pytest.raises(ValueError):
        layer(A(rng.standard_normal((2, 5, 6))), None)  # wrong feature size
    with pytest.raises(ValueError):
        layer(A(rng.standard_normal((1, 2, 5, 8))), None)  # rank 4
    with pytest.raises(ValueError):
        layer(x, "sideways")
    with pytest.raises(ValueError):
        layer(x, A(np.zeros((4, 5))))  # mask does not broadcast
    dec = nn.TransformerDecoderLayer(8, 2)
    with pytest.raises(ValueError):
        dec(x, A(rng.standard_normal((3, 4, 8))), None, None)  # batch mismatch
    layer.update({"linear1": {"bias": mx.zeros((31,))}})
    with pytest.raises(ValueError, match="linear1.bias"):
        layer(x, None)
    with pytest.raises(TypeError):
        nn.TransformerEncoderLayer(8, 2, activation=3)(x, None)


def test_custom_encoder_and_decoder(rng):
    D = 8

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = mx.array(np.float32(2.0))

        def __call__(self, x, mask):
            return x * self.s

    t = nn.Transformer(D, 2, num_decoder_layers=1, mlp_dims=12, custom_encoder=Scale())
    P = randomize(t, rng)
    assert "encoder.s" in P and not any(k.startswith("encoder.layers") for k in P)
    src, tgt = rng.standard_normal((2, 3, D)), rng.standard_normal((2, 4, D))
    ref = np_decoder(P, "decoder.", 1, tgt, P["encoder.s"] * src, None, None, 2, True)
    close(t(A(src), A(tgt), None, None, None), ref)
