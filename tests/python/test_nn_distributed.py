"""nn.AllToShardedLinear / ShardedToAllLinear / their quantized versions, shard_linear,
shard_inplace and fully_shard (python/ponte/nn/distributed.py): each rank's slices for groups of
size N (a stand-in group object with size() and rank()) against numpy slicing, the ranks'
partial results recombined against the whole layer in float64, the single-process group's
forward and gradients, errors, and (when mlx is importable) the same slices through MLX."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn
from ponte.nn import distributed as dist

try:
    import mlx.core as mlx_core
    import mlx.nn as mlx_nn
    from mlx.nn.layers import distributed as mlx_dist
except ImportError:  # the differential tests skip
    mlx_core = None


class FakeGroup:
    """A group of size n seen from rank r: enough for the sharding (collectives need a real
    mx.distributed.Group)."""

    def __init__(self, n, r):
        self.n, self.r = n, r

    def size(self):
        return self.n

    def rank(self):
        return self.r


def np_(a):
    return np.array(a).astype(np.float64)


def linear(rng, din, dout, bias=True):
    lin = nn.Linear(din, dout, bias=bias)
    lin.weight = mx.array(rng.standard_normal((dout, din)).astype(np.float32))
    if bias:
        lin.bias = mx.array(rng.standard_normal(dout).astype(np.float32))
    return lin


def ref_slices(dim, n, r, segments):
    """Indices of rank r's part of an axis of size dim made of segments (a count, split
    indices or fractions): each segment cut into n equal pieces, rank r taking piece r of each."""
    if isinstance(segments, int):
        bounds = [dim * i // segments for i in range(segments + 1)]
    elif isinstance(segments[0], int):
        bounds = [0] + list(segments) + [dim]
    else:
        bounds = [0] + [int(s * dim) for s in segments] + [dim]
    return np.concatenate([np.split(np.arange(a, b), n)[r]
                           for a, b in zip(bounds[:-1], bounds[1:])])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("segments", [1, 3, [0.5], [12, 36]])
def test_all_to_sharded_slices_and_outputs(n, segments):
    rng = np.random.default_rng(10 * n)
    din, dout = 5, 72
    lin = linear(rng, din, dout)
    x = rng.standard_normal((2, 3, din)).astype(np.float32)
    full = np_(x) @ np_(lin.weight).T + np_(lin.bias)
    outs = []
    for r in range(n):
        g = FakeGroup(n, r)
        sl = nn.AllToShardedLinear.from_linear(lin, segments=segments, group=g)
        assert isinstance(sl, nn.AllToShardedLinear)
        idx = ref_slices(dout, n, r, segments)
        np.testing.assert_array_equal(np_(sl.weight), np_(lin.weight)[idx])
        np.testing.assert_array_equal(np_(sl.bias), np_(lin.bias)[idx])
        assert tuple(sl.weight.shape) == (len(idx), din)
        # the forward needs no communication (the group only sums gradients)
        y = np_(sl(mx.array(x)))
        np.testing.assert_allclose(y, full[..., idx], rtol=1e-5, atol=1e-5)
        outs.append((idx, y))
        same = dist.shard_linear(lin, "all-to-sharded", segments=segments, group=g)
        np.testing.assert_array_equal(np_(same.weight), np_(sl.weight))
    # the ranks' outputs together are the whole layer's output, each column once
    order = np.concatenate([i for i, _ in outs])
    assert sorted(order.tolist()) == list(range(dout))
    np.testing.assert_allclose(np.concatenate([y for _, y in outs], -1)[..., np.argsort(order)],
                               full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_sharded_to_all_slices_and_sum(n, bias):
    rng = np.random.default_rng(20 + n)
    din, dout = 16, 6
    lin = linear(rng, din, dout, bias)
    x = rng.standard_normal((4, din)).astype(np.float32)
    full = np_(x) @ np_(lin.weight).T + (np_(lin.bias) if bias else 0)
    total = np.zeros_like(full)
    for r in range(n):
        sl = dist.shard_linear(lin, "sharded-to-all", group=FakeGroup(n, r))
        assert isinstance(sl, nn.ShardedToAllLinear)
        cols = np.arange(r * din // n, (r + 1) * din // n)
        np.testing.assert_array_equal(np_(sl.weight), np_(lin.weight)[:, cols])
        assert ("bias" in sl) == bias
        if bias:  # the bias is whole on every rank
            np.testing.assert_array_equal(np_(sl.bias), np_(lin.bias))
        total += np_(x)[:, cols] @ np_(sl.weight).T
    total += np_(lin.bias) if bias else 0
    np.testing.assert_allclose(total, full, rtol=1e-5, atol=1e-5)


def test_single_process_group_forward_and_gradients():
    rng = np.random.default_rng(3)
    lin = linear(rng, 6, 8)
    x = mx.array(rng.standard_normal((3, 6)).astype(np.float32))
    full = np_(lin(x))
    for kind in ("all-to-sharded", "sharded-to-all"):
        sl = dist.shard_linear(lin, kind)  # the global group: one process
        np.testing.assert_allclose(np_(sl(x)), full, rtol=1e-5, atol=1e-5)

        def loss(m, x):
            return (m(x) ** 2).sum()

        _, g_sharded = nn.value_and_grad(sl, loss)(sl, x)
        _, g_full = nn.value_and_grad(lin, loss)(lin, x)
        for k in ("weight", "bias"):
            np.testing.assert_allclose(np_(g_sharded[k]), np_(g_full[k]), rtol=1e-4,
                                       atol=1e-4)
        gx = mx.grad(lambda x: loss(sl, x))(x)
        gx_ref = 2 * (np_(x) @ np_(lin.weight).T + np_(lin.bias)) @ np_(lin.weight)
        np.testing.assert_allclose(np_(gx), gx_ref, rtol=1e-4, atol=1e-4)


def test_constructors_shapes_repr_and_errors():
    g = mx.distributed.init()
    a = nn.AllToShardedLinear(6, 8, group=g)
    s = nn.ShardedToAllLinear(6, 8, bias=False)
    assert tuple(a.weight.shape) == (8, 6) and tuple(a.bias.shape) == (8,)
    assert tuple(s.weight.shape) == (8, 6) and "bias" not in s
    assert np.abs(np_(a.weight)).max() <= np.sqrt(1 / 6) + 1e-7
    assert "input_dims=6, output_dims=8, bias=True" in repr(a)
    f4 = FakeGroup(4, 1)
    a4 = nn.AllToShardedLinear(6, 8, group=f4)
    assert tuple(a4.weight.shape) == (2, 6) and tuple(a4.bias.shape) == (2,)
    assert "output_dims=8" in repr(a4)
    s4 = nn.ShardedToAllLinear(8, 6, group=f4)
    assert tuple(s4.weight.shape) == (6, 2) and tuple(s4.bias.shape) == (6,)
    with pytest.raises(ValueError, match="Cannot shard the output of size 6 across 4"):
        nn.AllToShardedLinear(3, 6, group=f4)
    with pytest.raises(ValueError, match="input of size 6 cannot be sharded across 4"):
        nn.ShardedToAllLinear(6, 3, group=f4)
    with pytest.raises(ValueError, match="not supported"):
        dist.shard_linear(nn.Linear(4, 4), "all-to-all")
    with pytest.raises(ValueError, match="int or tuple"):
        dist.shard_inplace(nn.Linear(4, 4), lambda p, w: [0])
    with pytest.raises(ValueError, match="Cannot shard the output of size 6 across 4"):
        dist.shard_linear(nn.Linear(4, 6), "all-to-sharded", group=f4)


def test_shard_inplace_model():
    rng = np.random.default_rng(5)
    model = nn.Sequential(linear(rng, 4, 8), nn.ReLU(), linear(rng, 8, 4))
    w0, b0 = np_(model.layers[0].weight), np_(model.layers[0].bias)
    w2, b2 = np_(model.layers[2].weight), np_(model.layers[2].bias)
    m = nn.Sequential(*[layer for layer in model.layers])
    dist.shard_inplace(m.layers[0], "all-to-sharded", group=FakeGroup(2, 1))
    dist.shard_inplace(m.layers[2], "sharded-to-all", group=FakeGroup(2, 1))
    np.testing.assert_array_equal(np_(m.layers[0].weight), w0[4:])
    np.testing.assert_array_equal(np_(m.layers[0].bias), b0[4:])
    np.testing.assert_array_equal(np_(m.layers[2].weight), w2[:, 4:])
    np.testing.assert_array_equal(np_(m.layers[2].bias), b2)
    # a callable: the predicate picks the axis per path (None: untouched)
    lin = linear(rng, 6, 9)
    w, b = np_(lin.weight), np_(lin.bias)
    dist.shard_inplace(lin, lambda p, a: None if p.endswith("bias") else (0, 3),
                       group=FakeGroup(3, 2))
    np.testing.assert_array_equal(np_(lin.weight), w[[2, 5, 8]])
    np.testing.assert_array_equal(np_(lin.bias), b)


@pytest.mark.parametrize("bits,group_size", [(4, 32), (8, 64)])
def test_quantized_sharded_layers(bits, group_size):
    rng = np.random.default_rng(bits)
    din, dout = 256, 8
    lin = linear(rng, din, dout)
    q = nn.QuantizedLinear.from_linear(lin, group_size=group_size, bits=bits)
    x = mx.array(rng.standard_normal((3, din)).astype(np.float32))
    full = np_(q(x))
    deq = np_(mx.dequantize(q.weight, q.scales, q.biases, group_size=group_size, bits=bits))
    n = 2
    total = np.zeros_like(full)
    for r in range(n):
        a = dist.shard_linear(q, "all-to-sharded", group=FakeGroup(n, r))
        assert isinstance(a, nn.QuantizedAllToShardedLinear)
        assert (a.group_size, a.bits, a.mode) == (group_size, bits, "affine")
        rows = slice(r * dout // n, (r + 1) * dout // n)
        for k in ("weight", "scales", "biases"):
            np.testing.assert_array_equal(np.array(a[k]), np.array(q[k])[rows])
        np.testing.assert_array_equal(np_(a.bias), np_(q.bias)[rows])
        np.testing.assert_allclose(np_(a(x)), full[:, rows], rtol=1e-4, atol=1e-4)
        s = dist.shard_linear(q, "sharded-to-all", group=FakeGroup(n, r))
        assert isinstance(s, nn.QuantizedShardedToAllLinear)
        for k in ("weight", "scales", "biases"):
            cols = np.array(q[k]).shape[-1] // n
            np.testing.assert_array_equal(np.array(s[k]),
                                          np.array(q[k])[:, r * cols:(r + 1) * cols])
        np.testing.assert_array_equal(np_(s.bias), np_(q.bias))
        part = np_(mx.dequantize(s.weight, s.scales, s.biases, group_size=group_size, bits=bits))
        np.testing.assert_allclose(part, deq[:, r * din // n:(r + 1) * din // n])
        total += np_(x)[:, r * din // n:(r + 1) * din // n] @ part.T
    np.testing.assert_allclose(total + np_(q.bias), full, rtol=1e-4, atol=1e-4)
    # the single-process group: the whole quantized layer, frozen parameters
    for kind in ("all-to-sharded", "sharded-to-all"):
        s1 = dist.shard_linear(q, kind)
        np.testing.assert_allclose(np_(s1(x)), full, rtol=1e-4, atol=1e-4)
        assert s1.trainable_parameters() == {}
        s1.unfreeze()
        assert s1.trainable_parameters() == {}
        assert f"bits={bits}" in repr(s1) and "input_dims=256, output_dims=8" in repr(s1)
    qa = nn.QuantizedAllToShardedLinear(64, 4, bias=False)
    assert (qa.group_size, qa.bits) == (64, 4) and "bias" not in qa
    with pytest.raises(ValueError, match="across 3 devices"):
        nn.QuantizedShardedToAllLinear(64, 4, group=FakeGroup(3, 0))


def test_fully_shard_single_process():
    rng = np.random.default_rng(8)
    lin = linear(rng, 4, 6)
    assert nn.fully_shard(lin) is lin  # one process: nothing to shard
    x = mx.array(rng.standard_normal((2, 4)).astype(np.float32))
    ref = np_(lin(x))
    fs = nn.FullyShardedModule(linear(rng, 4, 6))
    fs.module.update({"weight": lin.weight, "bias": lin.bias})
    np.testing.assert_allclose(np_(fs(x)), ref, rtol=1e-6)
    assert "num_sharded_params=2" in repr(fs)
    _, g = nn.value_and_grad(fs, lambda m, x: m(x).sum())(fs, x)
    np.testing.assert_allclose(np_(g["module"]["weight"]),
                               np.tile(np_(x).sum(0), (6, 1)), rtol=1e-5)
    with pytest.raises(ValueError, match="axis 0 must be divisible by 4"):
        nn.FullyShardedModule(nn.Linear(3, 6), group=FakeGroup(4, 0))


@pytest.mark.skipif(mlx_core is None, reason="mlx is not importable")
@pytest.mark.parametrize("segments", [1, 3, [0.5], [12, 36]])
def test_slices_match_mlx(segments):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((72, 12)).astype(np.float32)
    b = rng.standard_normal(72).astype(np.float32)
    lin = nn.Linear(12, 72)
    lin.update({"weight": mx.array(w), "bias": mx.array(b)})
    mlin = mlx_nn.Linear(12, 72)
    mlin.update({"weight": mlx_core.array(w), "bias": mlx_core.array(b)})
    for n, r in [(2, 0), (2, 1), (3, 2), (4, 3)]:
        for kind in ("all-to-sharded", "sharded-to-all"):
            if kind == "sharded-to-all" and segments != 1:
                continue
            ours = dist.shard_linear(lin, kind, segments=segments, group=FakeGroup(n, r))
            theirs = mlx_dist.shard_linear(mlin, kind, segments=segments, group=FakeGroup(n, r))
            assert type(ours).__name__ == type(theirs).__name__
            for k in ("weight", "bias"):
                np.testing.assert_array_equal(np.array(ours[k]), np.array(theirs[k]))
