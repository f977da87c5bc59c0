"""Quantized layers with mlx.nn's API: QuantizedLinear, QuantizedEmbedding, QQLinear (input and
weight quantized, trainable) and nn.quantize, which swaps the layers of a model that define
to_quantized() for their quantized versions. The math is mx.quantize / mx.dequantize /
mx.quantized_matmul / mx.qqmm (libponte's C functions)."""
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


class QQLinear(Module):
    """Linear without bias whose input and weight are both quantized (mx.qqmm): y = x̂ @ Ŵ.T.
    In training mode the weight (output_dims, input_dims) is kept in floating point, quantized
    on the fly, and receives gradients; eval() stores it quantized (weight uint32 + scales) and
    train() dequantizes it back, as MLX's layer does. Modes "nvfp4" (default) and "mxfp8"."""

    def __init__(self, input_dims, output_dims, group_size=None, bits=None, mode="nvfp4"):
        self._quantized = False
        super().__init__()
        self.group_size, self.bits = _defaults_for_mode(mode, group_size, bits)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))

    # Module.train / eval set _training on every module: switching the mode here (de)quantizes
    # the weight, as MLX's _set_training_mode does
    @property
    def _training(self):
        return self.__dict__.get("_training_flag", True)

    @_training.setter
    def _training(self, mode):
        self.__dict__["_training_flag"] = bool(mode)
        if "weight" not in self:
            return
        if mode:
            self.dequantize()
        else:
            self.quantize()

    def _extra_repr(self):
        out_dims, in_dims = self.weight.shape
        if self.weight.dtype == mx.uint32:
            in_dims = in_dims * 32 // self.bits
        return (f"input_dims={in_dims}, output_dims={out_dims}, group_size={self.group_size}, "
                f"bits={self.bits}, mode={self.mode}")

    def quantize(self):
        """Stores the weight quantized (weight uint32, scales); no-op when it already is."""
        if not self._quantized:
            self.weight, self.scales = mx.quantize(self.weight, self.group_size, self.bits,
                                                   mode=self.mode)
            self._quantized = True

    def dequantize(self):
        """Stores the weight in floating point again; no-op when it is not quantized."""
        if self._quantized:
            self.weight = mx.dequantize(self.weight, scales=self.scales,
                                        group_size=self.group_size, bits=self.bits,
                                        mode=self.mode)
            del self["scales"]
            self._quantized = False

    def __call__(self, x):
        return mx.qqmm(x, self["weight"], scales=self.get("scales"), group_size=self.group_size,
                       bits=self.bits, mode=self.mode)

    @classmethod
    def from_linear(cls, linear_layer, group_size=None, bits=None, mode="nvfp4"):
        """A QQLinear holding linear_layer's weight, in linear_layer's training mode; a layer
        with a bias raises NotImplementedError (as MLX)."""
        output_dims, input_dims = linear_layer.weight.shape
        if linear_layer.get("bias") is not None:
            raise NotImplementedError("QQLinear does not support bias yet.")
        ql = cls(input_dims, output_dims, group_size, bits, mode=mode)
        ql.weight = linear_layer.weight
        ql.train(linear_layer.training)
        return ql


def quantize(model, group_size=None, bits=None, *, mode="affine", quantize_input=False,
             class_predicate=None):
    """Replaces, in place, the leaf modules of model for which class_predicate(path, module)
    is true (default: those with a to_quantized method) by module.to_quantized(group_size,
    bits, mode); a dict returned by the predicate gives to_quantized's arguments instead."""
    class_predicate = class_predicate or (lambda _, m: hasattr(m, "to_quantized"))

    def maybe_quantize(path, m):
        choice = class_predicate(path, m)
        if not choice:
            return m
        if not hasattr(m, "to_quantized"):
            raise ValueError(f"Unable to quantize model of type {type(m)}")
        if isinstance(choice, bool):
            kwargs = {"group_size": group_size, "bits": bits, "mode": mode}
            if quantize_input:
                kwargs["quantize_input"] = True
            return m.to_quantized(**kwargs)
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
    """This layer as a QuantizedLinear (see QuantizedLinear.from_linear), or with
    quantize_input as a QQLinear ("nvfp4" and "mxfp8" only, as MLX)."""
    if quantize_input:
        if mode not in ("nvfp4", "mxfp8"):
            raise ValueError("Quantized activations are only supported for 'nvfp4' and "
                             f"'mxfp8' modes, got {mode}.")
        return QQLinear.from_linear(self, group_size, bits, mode)
    return QuantizedLinear.from_linear(self, group_size, bits, mode)


def _embedding_to_quantized(self, group_size=None, bits=None, mode="affine",
                            quantize_input=False):
    """This layer as a QuantizedEmbedding (see QuantizedEmbedding.from_embedding)."""
    if quantize_input:
        raise ValueError("Quantized input is not supported.")
    return QuantizedEmbedding.from_embedding(self, group_size, bits, mode)
