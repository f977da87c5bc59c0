"""ponte.nn.distributed — mlx.nn.layers.distributed over mx.distributed: linear layers whose
weights are sharded across a group (AllToShardedLinear, ShardedToAllLinear and their quantized
versions), shard_linear / shard_inplace to shard existing layers, and FullyShardedModule /
fully_shard. Each rank keeps the slice of the weights MLX gives it for the group's size and rank;
Ponte's groups hold one process, where every collective is the identity."""
import math
from functools import lru_cache, reduce

import ponte.core as mx
from ponte.nn.layers import Linear, Module
from ponte.utils import tree_flatten, tree_map_with_path, tree_unflatten

__all__ = [
    "AllToShardedLinear", "ShardedToAllLinear", "QuantizedAllToShardedLinear",
    "QuantizedShardedToAllLinear", "FullyShardedModule", "fully_shard", "shard_linear",
    "shard_inplace", "sum_gradients",
]


@lru_cache
def sum_gradients(group):
    """The identity on x whose vjp sums the cotangent over group (the identity itself when the
    group has one member)."""
    if group.size() == 1:
        return lambda x: x

    @mx.custom_function
    def f(x):
        return x

    @f.vjp
    def f_vjp(x, dx, _):
        return mx.distributed.all_sum(dx, group=group)

    return f


def _split(weight, segments, axis):
    """weight split along axis into segments: a count or split indices (as mx.split), or
    fractions of the axis."""
    if isinstance(segments, int) or isinstance(segments[0], int):
        return mx.split(weight, segments, axis=axis)
    n = weight.shape[axis]
    return mx.split(weight, [int(s * n) for s in segments], axis=axis)


def _shard(parameters, sharding_predicate, group=None):
    """A copy of the tree parameters where each array for which sharding_predicate(path, array)
    gives an axis (or (axis, segments)) keeps this rank's part: each segment of the axis is cut
    into group.size() equal parts, and the rank's parts of all segments are concatenated."""
    group = group or mx.distributed.init()
    n, r = group.size(), group.rank()

    def shard_one(path, weight):
        if not isinstance(weight, mx.array):
            return weight
        spec = sharding_predicate(path, weight)
        if spec is None:
            return weight
        segments = 1
        if isinstance(spec, int):
            axis = spec
        elif isinstance(spec, tuple):
            axis, segments = spec
        else:
            raise ValueError("The sharding function should return int or tuple[int, list]")
        parts = [_split(part, n, axis)[r] for part in _split(weight, segments, axis)]
        return mx.contiguous(mx.concatenate(parts, axis=axis))

    return tree_map_with_path(shard_one, parameters)


def _all_to_sharded(segments):
    """Predicate for layers whose output becomes sharded: the weight's output axis and the
    bias are cut."""
    def predicate(path, weight):
        if path.endswith("bias"):
            return -1, segments
        return max(weight.ndim - 2, 0), segments

    return predicate


def _sharded_to_all(segments):
    """Predicate for layers whose sharded input becomes a whole output: the weight's input
    axis is cut, the bias is kept whole."""
    def predicate(path, weight):
        if path.endswith("bias"):
            return None
        return -1, segments

    return predicate


def _check_sharding(sharding):
    if sharding not in ("all-to-sharded", "sharded-to-all"):
        raise ValueError(f"Sharding type sharding={sharding!r} not supported, choose one of "
                         "'all-to-sharded' or 'sharded-to-all'")


def shard_inplace(module, sharding, *, segments=1, group=None):
    """Shards module's parameters in place: sharding is "all-to-sharded", "sharded-to-all" or
    a callable (path, weight) -> axis or (axis, segments) or None; segments (a count, indices
    or fractions) says how the unsharded weight is made of parts (3 for a fused QKV). The
    module's computation is unchanged."""
    if isinstance(sharding, str):
        _check_sharding(sharding)
        sharding = (_all_to_sharded(segments) if sharding == "all-to-sharded"
                    else _sharded_to_all(segments))
    module.update(_shard(module.parameters(), sharding, group))


def shard_linear(module, sharding, *, segments=1, group=None):
    """A new sharded layer made from a Linear or QuantizedLinear: "all-to-sharded" gives an
    (Quantized)AllToShardedLinear, "sharded-to-all" a (Quantized)ShardedToAllLinear; module
    itself is unchanged."""
    _check_sharding(sharding)
    fns = {
        ("all-to-sharded", True): AllToShardedLinear.from_linear,
        ("all-to-sharded", False): QuantizedAllToShardedLinear.from_quantized_linear,
        ("sharded-to-all", True): ShardedToAllLinear.from_linear,
        ("sharded-to-all", False): QuantizedShardedToAllLinear.from_quantized_linear,
    }
    return fns[sharding, isinstance(module, Linear)](module, segments=segments, group=group)


def _uniform(scale, shape):
    return mx.random.uniform(low=-scale, high=scale, shape=shape)


class AllToShardedLinear(Module):
    """y_r = x @ W_r.T + b_r: every rank holds output_dims / N rows of the weight (and of the
    bias) and computes that part of the output from the whole input; the input's gradient is
    summed over the group. output_dims must be a multiple of the group's size N."""

    def __init__(self, input_dims, output_dims, bias=True, group=None):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.group = group or mx.distributed.init()
        n = self.group.size()
        if output_dims % n != 0:
            raise ValueError(f"Cannot shard the output of size {output_dims} across {n} devices.")
        self.weight = _uniform(scale, (output_dims // n, input_dims))
        if bias:
            self.bias = _uniform(scale, (output_dims // n,))

    def _extra_repr(self):
        out_dims, in_dims = self.weight.shape
        return (f"input_dims={in_dims}, output_dims={out_dims * self.group.size()}, "
                f"bias={'bias' in self}")

    def __call__(self, x):
        x = sum_gradients(self.group)(x)
        if "bias" in self:
            return mx.addmm(self["bias"], x, self["weight"].T)
        return x @ self["weight"].T

    @classmethod
    def from_linear(cls, linear_layer, *, segments=1, group=None):
        """This rank's AllToShardedLinear cut from linear_layer (not changed)."""
        group = group or mx.distributed.init()
        output_dims, input_dims = linear_layer.weight.shape
        sl = cls(input_dims, output_dims, hasattr(linear_layer, "bias"), group)
        sl.update(_shard(linear_layer.parameters(), _all_to_sharded(segments), group))
        return sl


class ShardedToAllLinear(Module):
    """y = sum over ranks of x_r @ W_r.T, plus b: every rank holds input_dims / N columns of the
    weight, multiplies its slice of the input and the partial outputs are summed over the group
    (all_sum); the bias is whole. input_dims must be a multiple of the group's size N."""

    def __init__(self, input_dims, output_dims, bias=True, group=None):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.group = group or mx.distributed.init()
        n = self.group.size()
        if input_dims % n != 0:
            raise ValueError(
                f"The input of size {input_dims} cannot be sharded across {n} devices.")
        self.weight = _uniform(scale, (output_dims, input_dims // n))
        if bias:
            self.bias = _uniform(scale, (output_dims,))

    def _extra_repr(self):
        out_dims, in_dims = self.weight.shape
        return (f"input_dims={in_dims * self.group.size()}, output_dims={out_dims}, "
                f"bias={'bias' in self}")

    def __call__(self, x):
        x = mx.distributed.all_sum(x @ self["weight"].T, group=self.group)
        if "bias" in self:
            x = x + self["bias"]
        return x

    @classmethod
    def from_linear(cls, linear_layer, *, segments=1, group=None):
        """This rank's ShardedToAllLinear cut from linear_layer (not changed)."""
        group = group or mx.distributed.init()
        output_dims, input_dims = linear_layer.weight.shape
        sl = cls(input_dims, output_dims, hasattr(linear_layer, "bias"), group)
        sl.update(_shard(linear_layer.parameters(), _sharded_to_all(segments), group))
        return sl


class _QuantizedSharded(Module):
    """What the two quantized sharded layers share: the quantized weight of shape
    weight_shape(input_dims, output_dims, N) (frozen, as QuantizedLinear), a zero bias of
    bias_dims, repr and construction from a QuantizedLinear."""

    def __init__(self, input_dims, output_dims, bias, group_size, bits, mode, group, split_out):
        super().__init__()
        self.group_size, self.bits, self.mode = group_size, bits, mode
        scale = math.sqrt(1.0 / input_dims)
        self.group = group or mx.distributed.init()
        n = self.group.size()
        if split_out and output_dims % n != 0:
            raise ValueError(f"Cannot shard the output of size {output_dims} across {n} devices.")
        if not split_out and input_dims % n != 0:
            raise ValueError(
                f"The input of size {input_dims} cannot be sharded across {n} devices.")
        shape = (output_dims // n, input_dims) if split_out else (output_dims, input_dims // n)
        self.weight, self.scales, *biases = mx.quantize(_uniform(scale, shape), group_size, bits,
                                                        mode=mode)
        self.biases = biases[0] if biases else None
        if bias:
            self.bias = mx.zeros((shape[0],))
        self.freeze()

    def unfreeze(self, *args, **kwargs):
        """Unfreezes submodules; this layer's own parameters stay frozen."""
        super().unfreeze(*args, **kwargs)
        self.freeze(recurse=False)
        return self

    def _qmm(self, x):
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"],
                                   biases=self.get("biases"), transpose=True,
                                   group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _extra_repr(self):
        out_dims, in_dims = self.weight.shape
        in_dims = in_dims * 32 // self.bits
        if isinstance(self, QuantizedAllToShardedLinear):
            out_dims *= self.group.size()
        else:
            in_dims *= self.group.size()
        return (f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    @classmethod
    def _from_quantized(cls, layer, predicate, group):
        group = group or mx.distributed.init()
        output_dims, input_dims = layer.weight.shape
        input_dims = input_dims * 32 // layer.bits
        sl = cls(input_dims, output_dims, hasattr(layer, "bias"), group_size=layer.group_size,
                 bits=layer.bits, mode=getattr(layer, "mode", "affine"), group=group)
        sl.update(_shard(layer.parameters(), predicate, group))
        return sl


class QuantizedAllToShardedLinear(_QuantizedSharded):
    """AllToShardedLinear with a quantized weight (mx.quantize's group_size, bits, mode); its
    parameters are frozen as QuantizedLinear's."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=64, bits=4,
                 mode="affine", group=None):
        super().__init__(input_dims, output_dims, bias, group_size, bits, mode, group, True)

    def __call__(self, x):
        x = self._qmm(sum_gradients(self.group)(x))
        if "bias" in self:
            x = x + self["bias"]
        return x

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer, *, segments=1, group=None):
        """This rank's layer cut from a QuantizedLinear (not changed): rows of the packed
        weight, scales, biases and bias."""
        return cls._from_quantized(quantized_linear_layer, _all_to_sharded(segments), group)


class QuantizedShardedToAllLinear(_QuantizedSharded):
    """ShardedToAllLinear with a quantized weight (mx.quantize's group_size, bits, mode); its
    parameters are frozen as QuantizedLinear's."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=64, bits=4,
                 mode="affine", group=None):
        super().__init__(input_dims, output_dims, bias, group_size, bits, mode, group, False)

    def __call__(self, x):
        x = mx.distributed.all_sum(self._qmm(x), group=self.group)
        if "bias" in self:
            x = x + self["bias"]
        return x

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer, *, segments=1, group=None):
        """This rank's layer cut from a QuantizedLinear (not changed): columns of the packed
        weight, scales and biases (whole groups per rank); the bias stays whole."""
        return cls._from_quantized(quantized_linear_layer, _sharded_to_all(segments), group)


def _make_gather_fn(group, full_shapes, shard_sizes, compute_dtype):
    """A custom function from the list of this rank's flat parameter shards to the whole
    parameters (all_gather), whose vjp gives each rank the mean over the group of its shard's
    cotangents (sum_scatter / N)."""
    n = group.size()
    offsets = reduce(lambda acc, s: acc + [acc[-1] + s], shard_sizes, [0])[1:-1]
    shard_shapes = [(shape[0] // n,) + tuple(shape[1:]) for shape in full_shapes]

    def cast(x, dtype):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)

    @mx.custom_function
    def gather(shards):
        flat = mx.concatenate([cast(s.reshape(1, -1), compute_dtype) for s in shards], axis=1)
        full = mx.distributed.all_gather(flat, group=group)
        return [p.reshape(shape) for p, shape in zip(mx.split(full, offsets, axis=1),
                                                     full_shapes)]

    @gather.vjp
    def gather_vjp(shards, cotangents, _):
        local = mx.concatenate([c.reshape(n, -1) for c in cotangents], axis=1)
        mine = mx.distributed.sum_scatter(local, group=group) / n
        return [cast(p.reshape(shape), s.dtype)
                for p, shape, s in zip(mx.split(mine, offsets, axis=1), shard_shapes, shards)]

    return gather


def _maybe_shard(m, k, v):
    if isinstance(v, FullyShardedModule):
        return False
    return Module.valid_parameter_filter(m, k, v)


class FullyShardedModule(Module):
    """Wraps module so that each rank stores only its axis-0 shard of every parameter: the
    whole parameters are gathered for each call and the gradients are reduce-scattered.
    Every parameter's axis 0 must be a multiple of the group's size; scalars are refused."""

    def __init__(self, module, group=None, compute_dtype=None):
        super().__init__()
        group = group or mx.distributed.init()
        n = group.size()
        shard_params = module.filter_and_map(_maybe_shard)
        flat = tree_flatten(shard_params)
        for path, a in flat:
            if a.ndim == 0:
                raise ValueError(f"Cannot shard parameter '{path}' because it is a scalar.")
            if a.shape[0] % n != 0:
                raise ValueError(f"Cannot shard parameter '{path}' with shape {a.shape} across "
                                 f"{n} devices: axis 0 must be divisible by {n}.")
        object.__setattr__(self, "_paths", [k for k, _ in flat])
        full_shapes = [tuple(a.shape) for _, a in flat]
        shard_sizes = [a.size // n for _, a in flat]
        module.update(_shard(shard_params, lambda p, w: 0, group))
        self.module = module
        object.__setattr__(self, "_gather_fn",
                           _make_gather_fn(group, full_shapes, shard_sizes, compute_dtype))

    def _extra_repr(self):
        return f"num_sharded_params={len(self._paths)}"

    def _gathered_call(self, fn, *args, **kwargs):
        shard_tree = self.module.filter_and_map(_maybe_shard)
        shards = [a for _, a in tree_flatten(shard_tree)]
        fulls = self._gather_fn(shards)
        self.module.update(tree_unflatten(list(zip(self._paths, fulls))))
        try:
            return fn(*args, **kwargs)
        finally:
            self.module.update(shard_tree)

    def __call__(self, *args, **kwargs):
        return self._gathered_call(self.module, *args, **kwargs)

    def as_linear(self, *args, **kwargs):
        return self._gathered_call(self.module.as_linear, *args, **kwargs)


def fully_shard(module, *, group=None, compute_dtype=None):
    """module wrapped in a FullyShardedModule; module itself when the group has one member,
    when it is already wrapped, or when it has no parameters to shard."""
    group = group or mx.distributed.init()
    if group.size() == 1 or isinstance(module, FullyShardedModule):
        return module
    wrapped = FullyShardedModule(module, group=group, compute_dtype=compute_dtype)
    return wrapped if wrapped._paths else module
