"""Normalization, positional-encoding and attention layers with mlx.nn's API: BatchNorm,
GroupNorm, InstanceNorm, RoPE, SinusoidalPositionalEncoding, ALiBi and MultiHeadAttention,
over libponte's C functions (ponte.core._nn and ponte.core.fast)."""
import math

import ponte.core as mx
from ponte.core import _nn as _c
from ponte.nn.layers import Linear, Module

__all__ = ["BatchNorm", "GroupNorm", "InstanceNorm", "RoPE", "SinusoidalPositionalEncoding",
           "ALiBi", "MultiHeadAttention"]

_RUNNING = ["running_mean", "running_var"]


class BatchNorm(Module):
    """Batch normalization over all axes but the last (input (N, C), (N, L, C) or (N, H, W, C)).
    running_mean / running_var are updated in training mode and used in eval mode; they are
    frozen (never receive gradients), as in MLX."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = mx.ones((num_features,))
            self.bias = mx.zeros((num_features,))
        if track_running_stats:
            self.running_mean = mx.zeros((num_features,))
            self.running_var = mx.ones((num_features,))
            self.freeze(keys=_RUNNING, recurse=False)

    def unfreeze(self, *args, **kwargs):
        """As Module.unfreeze, but the running statistics stay frozen."""
        super().unfreeze(*args, **kwargs)
        if self.track_running_stats:
            self.freeze(keys=_RUNNING, recurse=False)
        return self

    def _extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={'weight' in self}, track_running_stats={self.track_running_stats}")

    def __call__(self, x):
        y, new_mean, new_var = _c.batch_norm(x, self.get("weight"), self.get("bias"),
                                             self.get("running_mean"), self.get("running_var"),
                                             self.training, self.momentum, self.eps)
        if new_mean is not None:
            self.running_mean = new_mean
            self.running_var = new_var
        return y


class GroupNorm(Module):
    """Group normalization of x (N, ..., dims) into num_groups groups (MLX's channel grouping
    c % num_groups by default; contiguous groups as PyTorch when pytorch_compatible)."""

    def __init__(self, num_groups, dims, eps=1e-5, affine=True, pytorch_compatible=False):
        super().__init__()
        if affine:
            self.bias = mx.zeros((dims,))
            self.weight = mx.ones((dims,))
        self.num_groups = num_groups
        self.dims = dims
        self.eps = eps
        self.pytorch_compatible = pytorch_compatible

    def _extra_repr(self):
        return (f"{self.num_groups}, {self.dims}, eps={self.eps}, affine={'weight' in self}, "
                f"pytorch_compatible={self.pytorch_compatible}")

    def __call__(self, x):
        return _c.group_norm(x, self.num_groups, self.get("weight"), self.get("bias"), self.eps,
                             self.pytorch_compatible)


class InstanceNorm(Module):
    """Instance normalization of x (N, ..., dims): per sample and channel over the spatial axes."""

    def __init__(self, dims, eps=1e-5, affine=False):
        super().__init__()
        if affine:
            self.weight = mx.ones((dims,))
            self.bias = mx.zeros((dims,))
        self.dims = dims
        self.eps = eps

    def _extra_repr(self):
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        return _c.instance_norm(x, self.get("weight"), self.get("bias"), self.eps)


class RoPE(Module):
    """Rotary positional encoding of the first dims features (mx.fast.rope)."""

    def __init__(self, dims, traditional=False, base=10000, scale=1.0):
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.base = base
        self.scale = scale

    def _extra_repr(self):
        return f"{self.dims}, traditional={self.traditional}"

    def __call__(self, x, offset=0):
        return mx.fast.rope(x, self.dims, traditional=self.traditional, base=self.base,
                            scale=self.scale, offset=offset)


class SinusoidalPositionalEncoding(Module):
    """Sinusoidal positional encoding of positions (...) -> (..., dims)."""

    def __init__(self, dims, min_freq=0.0001, max_freq=1, scale=None, cos_first=False,
                 full_turns=False):
        super().__init__()
        self.dims = dims
        self.min_freq = min_freq
        self.max_freq = max_freq
        self.scale = scale or math.sqrt(2 / dims)
        self.cos_first = cos_first
        self.full_turns = full_turns

    def __call__(self, x):
        return _c.sinusoidal_positional_encoding(x, self.dims, self.min_freq, self.max_freq,
                                                 self.scale, self.cos_first, self.full_turns)


class ALiBi(Module):
    """Attention with linear biases: adds -|offset + i - j| * slope(head) to attention scores
    (B, num_heads, L, S)."""

    @staticmethod
    def create_alibi_matrix(q_sequence_length, k_sequence_length, num_heads, offset,
                            dtype=mx.float32):
        """The bias (1, num_heads, q_sequence_length - offset, k_sequence_length), as MLX."""
        return _c.alibi_bias(q_sequence_length - offset, k_sequence_length, num_heads, offset,
                             dtype)

    def __call__(self, attention_scores, offset=0, mask=None):
        if attention_scores.ndim != 4:
            raise ValueError("ALiBi expects attention scores of shape (B, num_heads, L, S), got "
                             f"{attention_scores.shape}")
        alibi_mask = _c.alibi_bias(attention_scores.shape[-2], attention_scores.shape[-1],
                                   attention_scores.shape[1], offset, attention_scores.dtype)
        if mask is not None:
            alibi_mask = alibi_mask + mask
        return attention_scores + alibi_mask


class MultiHeadAttention(Module):
    """Multi-head attention (Vaswani et al.) with mlx.nn.MultiHeadAttention's projections."""

    def __init__(self, dims, num_heads, query_input_dims=None, key_input_dims=None,
                 value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
        super().__init__()
        if (dims % num_heads) != 0:
            raise ValueError("The input feature dimensions should be divisible by the "
                             f"number of heads ({dims} % {num_heads}) != 0")
        query_input_dims = query_input_dims or dims
        key_input_dims = key_input_dims or dims
        value_input_dims = value_input_dims or key_input_dims
        value_dims = value_dims or dims
        value_output_dims = value_output_dims or dims
        self.num_heads = num_heads
        self.query_proj = Linear(query_input_dims, dims, bias=bias)
        self.key_proj = Linear(key_input_dims, dims, bias=bias)
        self.value_proj = Linear(value_input_dims, value_dims, bias=bias)
        self.out_proj = Linear(value_dims, value_output_dims, bias=bias)

    def __call__(self, queries, keys, values, mask=None):
        queries = self.query_proj(queries)
        keys = self.key_proj(keys)
        values = self.value_proj(values)
        h = self.num_heads

        def heads(x):
            if x.ndim != 3:
                raise ValueError(f"MultiHeadAttention expects (B, L, D) inputs, got {x.shape}")
            B, L, D = x.shape
            return x.reshape(B, L, h, D // h).transpose(0, 2, 1, 3)

        queries, keys, values = heads(queries), heads(keys), heads(values)
        scale = math.sqrt(1 / queries.shape[-1])
        out = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)
        B, _, L, _ = out.shape
        out = out.transpose(0, 2, 1, 3).reshape(B, L, -1)
        return self.out_proj(out)

    @staticmethod
    def create_additive_causal_mask(N, dtype=mx.float32):
        """(N, N): 0 on and below the diagonal, the dtype's lowest value above it."""
        indices = mx.arange(N)
        mask = indices[:, None] < indices[None]
        return mask.astype(dtype) * mx.finfo(dtype).min
