"""Quantized layers with mlx.nn's API: QuantizedLinear, QuantizedEmbedding and nn.quantize,
which swaps the layers of a model that define to_quantized() for their quantized versions.
The math is mx.quantize / mx.dequantize / mx.quantized_matmul (libponte's C primitives)."""
import math

import ponte.core as mx
from ponte.nn.layers import Module
from ponte.utils import tree_map_with_path

_MODE_DEFAULTS = {"affine": (64, 4), "mxfp4": (32, 4), "nvfp4": (16, 4), "mxfp8": (32, 8)}


def _defaults_for_mode(mode, group_size, bits):
    """(group_size, bits) with None replaced by the mode's defaults; unknown modes raise."""
    if mode not in _MODE_DEFAULTS:
        raise ValueError(f"Invalid quantization mode '{mode}'. "
                         f"Valid modes are: {', '.join(_MODE_DEFAULTS)}.")
    gs, b = _MODE_DEFAULTS[mode]
    return group_size or gs, bits or b


def _quantize_weight(layer, weight, group_size, bits, mode):
    layer.weight, layer.scales, *biases = mx.quantize(weight, group_size, bits, mode=mode)
    if biases:
        layer.biases = biases[0]
    elif "biases" in layer:
        del layer["biases"]


class QuantizedLinear(Module):
    """Linear with a quantized weight (output_dims, input_dims): y = x @ dequantize(w).T + bias.
    The quantized parameters are frozen (as in MLX); the bias stays trainable only after
    unfreeze."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=None, bits=None,
                 mode="affine"):
        super().__init__()
        self.group_size, self.bits = _defaults_for_mode(mode, group_size, bits)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        _quantize_weight(self, weight, self.group_size, self.bits, mode)
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()

    def _extra_repr(self):
        out_dims, in_dims = self.weight.shape
        in_dims = in_dims * 32 // self.bits
        return (f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    def __call__(self, x):
        y = mx.quantized_matmul(x, self["weight"], scales=self["scales"],
                                biases=self.get("biases"), transpose=True,
                                group_size=self.group_size, bits=self.bits, mode=self.mode)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_linear(cls, linear_layer, group_size=None, bits=None, mode="affine"):
        """A QuantizedLinear holding linear_layer's weight (quantized) and bias."""
        output_dims, input_dims = linear_layer.weight.shape
        ql = cls(input_dims, output_dims, False, group_size, bits, mode=mode)
        _quantize_weight(ql, linear_layer.weight, ql.group_size, ql.bits, mode)
        if "bias" in linear_layer:
            ql.bias = linear_layer.bias
        return ql


class QuantizedEmbedding(Module):
    """Embedding with a quantized table (num_embeddings, dims): rows are dequantized on
    lookup; as_linear multiplies by the table as a quantized linear layer (tied weights)."""

    def __init__(self, num_embeddings, dims, group_size=None, bits=None, mode="affine"):
        super().__init__()
        self.group_size, self.bits = _defaults_for_mode(mode, group_size, bits)
        self.mode = mode
        scale = math.sqrt(1 / dims)
        weight = mx.random.normal(shape=(num_embeddings, dims), scale=scale)
        _quantize_weight(self, weight, self.group_size, self.bits, mode)
        self.num_embeddings = num_embeddings
        self.dims = dims
        self.freeze()

    def __call__(self, x):
        biases = self.get("biases")
        return mx.dequantize(self["weight"][x], scales=self["scales"][x],
                             biases=biases[x] if biases is not None else None,
                             group_size=self.group_size, bits=self.bits, mode=self.mode)

    def as_linear(self, x):
        """x @ table.T with the quantized table."""
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"],
                                   biases=self.get("biases"), transpose=True,
                                   group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _extra_repr(self):
        return (f"{self.num_embeddings}, {self.dims}, group_size={self.group_size}, "
                f"bits={self.bits}, mode={self.mode}")

    @classmethod
    def from_embedding(cls, embedding_layer, group_size=None, bits=None, mode="affine"):
        """A QuantizedEmbedding holding embedding_layer's table, quantized."""
        num_embeddings, dims = embedding_layer.weight.shape
        ql = cls(num_embeddings, dims, group_size, bits, mode=mode)
        _quantize_weight(ql, embedding_layer.weight, ql.group_size, ql.bits, mode)
        return ql


def quantize(model, group_size=None, bits=None, *, mode="affine", quantize_input=False,
             class_predicate=None):
    """Replaces, in place, the leaf modules of model for which class_predicate(path, module)
    is true (default: those with a to_quantized method) by module.to_quantized(group_size,
    bits, mode); a dict returned by the predicate gives to_quantized's arguments instead."""
    if quantize_input:
        raise ValueError("[quantize] quantize_input is only supported for the 'nvfp4' and "
                         "'mxfp8' modes, which Ponte does not implement.")
    class_predicate = class_predicate or (lambda _, m: hasattr(m, "to_quantized"))

    def maybe_quantize(path, m):
        choice = class_predicate(path, m)
        if not choice:
            return m
        if not hasattr(m, "to_quantized"):
            raise ValueError(f"Unable to quantize model of type {type(m)}")
        if isinstance(choice, bool):
            return m.to_quantized(group_size=group_size, bits=bits, mode=mode)
        if isinstance(choice, dict):
            kwargs = dict(choice)
            if not kwargs.get("quantize_input", True):
                kwargs.pop("quantize_input")
            return m.to_quantized(**kwargs)
        raise ValueError("``class_predicate`` must return a bool or a dict of parameters to "
                         "pass to ``to_quantized``")

    leaves = tree_map_with_path(maybe_quantize, model.leaf_modules(), is_leaf=Module.is_module)
    model.update_modules(leaves)


def _linear_to_quantized(self, group_size=None, bits=None, mode="affine", quantize_input=False):
    """This layer as a QuantizedLinear (see QuantizedLinear.from_linear)."""
    if quantize_input:
        raise ValueError("[to_quantized] quantize_input is not supported in Ponte.")
    return QuantizedLinear.from_linear(self, group_size, bits, mode)


def _embedding_to_quantized(self, group_size=None, bits=None, mode="affine",
                            quantize_input=False):
    """This layer as a QuantizedEmbedding (see QuantizedEmbedding.from_embedding)."""
    if quantize_input:
        raise ValueError("[to_quantized] quantize_input is not supported in Ponte.")
    return QuantizedEmbedding.from_embedding(self, group_size, bits, mode)
