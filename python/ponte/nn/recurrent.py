"""Recurrent, upsampling and bilinear layers with mlx.nn's API: RNN, GRU, LSTM, Upsample and
Bilinear, with MLX's parameter names, shapes and initialization, over libponte's C functions
(ponte.core._nn)."""
import math

import ponte.core as mx
from ponte.core import _nn as _c
from ponte.nn.layers import Module, tanh

__all__ = ["RNN", "GRU", "LSTM", "Upsample", "Bilinear"]


def _uniform(scale, shape):
    return mx.random.uniform(low=-scale, high=scale, shape=shape)


class RNN(Module):
    """Elman recurrent layer over x (N, L, D) or (L, D): h_t = nonlinearity(x_t Wxh^T + bias +
    h_{t-1} Whh^T), weights in MLX's (out, in) layout. Returns every hidden state, (N, L, H) or
    (L, H)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity=None):
        super().__init__()
        self.nonlinearity = nonlinearity or tanh
        if not callable(self.nonlinearity):
            raise ValueError(f"Nonlinearity must be callable. Current value: {nonlinearity}.")
        scale = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.Wxh = _uniform(scale, (hidden_size, input_size))
        self.Whh = _uniform(scale, (hidden_size, hidden_size))
        self.bias = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return (f"input_dims={self.Wxh.shape[1]}, hidden_size={self.hidden_size}, "
                f"nonlinearity={self.nonlinearity}, bias={self.bias is not None}")

    def __call__(self, x, hidden=None):
        f = self.nonlinearity
        return _c.rnn(x, self.Wxh, self.Whh, self.bias, hidden,
                      None if f is tanh or f is mx.tanh else f)


class GRU(Module):
    """Gated recurrent unit over x (N, L, D) or (L, D) with MLX's gates: r, z = sigmoid(.),
    n = tanh(x_t Wx_n + b_n + r * (h Wh_n + bhn)), h' = (1 - z) * n + z * h. Returns every
    hidden state, (N, L, H) or (L, H)."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (3 * hidden_size, input_size))
        self.Wh = _uniform(scale, (3 * hidden_size, hidden_size))
        self.b = _uniform(scale, (3 * hidden_size,)) if bias else None
        self.bhn = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return (f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, "
                f"bias={self.b is not None}")

    def __call__(self, x, hidden=None):
        return _c.gru(x, self.Wx, self.Wh, self.b, self.bhn, hidden)


class LSTM(Module):
    """Long short-term memory over x (N, L, D) or (L, D) with MLX's gate order i, f, g, o.
    Returns (hidden states, cell states), each (N, L, H) or (L, H)."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (4 * hidden_size, input_size))
        self.Wh = _uniform(scale, (4 * hidden_size, hidden_size))
        self.bias = _uniform(scale, (4 * hidden_size,)) if bias else None

    def _extra_repr(self):
        return (f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, "
                f"bias={self.bias is not None}")

    def __call__(self, x, hidden=None, cell=None):
        return _c.lstm(x, self.Wx, self.Wh, self.bias, hidden, cell)


class Upsample(Module):
    """Upsamples the spatial axes 1 .. ndim-2 of x (N, spatial..., C) by scale_factor (a number
    for every axis, or one per axis) with "nearest", "linear" or "cubic" interpolation;
    align_corners maps the corner samples of input and output onto each other; antialias
    (linear and cubic, not with align_corners) widens the filter by 1/scale when downsampling,
    cubic then with a = -0.5, as MLX and PyTorch's interpolate(antialias=True)."""

    def __init__(self, scale_factor, mode="nearest", align_corners=False, antialias=False):
        super().__init__()
        if mode not in ["nearest", "linear", "cubic"]:
            raise ValueError(f"[Upsample] Got unsupported upsampling algorithm: {mode}")
        if antialias and mode == "nearest":
            raise ValueError("[Upsample] Antialiasing is not supported for nearest neighbor upsampling")
        if antialias and align_corners:
            raise ValueError("[Upsample] antialias=True with align_corners=True is not supported. Use "
                             "align_corners=False for antialiased interpolation.")
        if isinstance(scale_factor, (list, tuple)):
            self.scale_factor = tuple(map(float, scale_factor))
        else:
            self.scale_factor = float(scale_factor)
        self.mode = mode
        self.align_corners = align_corners
        self.antialias = antialias

    def _extra_repr(self):
        return (f"scale_factor={self.scale_factor}, mode={self.mode!r}, "
                f"align_corners={self.align_corners}" + (", antialias=True" if self.antialias else ""))

    def __call__(self, x):
        dims = x.ndim - 2
        if dims <= 0:
            raise ValueError(f"[Upsample] The input should have at least 1 spatial dimension which "
                             f"means it should be at least 3D but {x.ndim}D was provided")
        if isinstance(self.scale_factor, tuple) and len(self.scale_factor) != dims:
            raise ValueError(f"[Upsample] One scale per spatial dimension is required but "
                             f"scale_factor={self.scale_factor} and the number of spatial "
                             f"dimensions were {dims}")
        return _c.upsample(x, self.scale_factor, self.mode, self.align_corners, self.antialias)


class Bilinear(Module):
    """y_i = x2 . (W_i x1) + b_i over inputs (..., input1_dims) and (..., input2_dims) with the
    same leading shape; weight (output_dims, input2_dims, input1_dims) and bias uniform in
    [-1/sqrt(input1_dims), 1/sqrt(input1_dims)] as MLX."""

    def __init__(self, input1_dims, input2_dims, output_dims, bias=True):
        super().__init__()
        scale = math.sqrt(1.0 / input1_dims)
        self.weight = _uniform(scale, (output_dims, input2_dims, input1_dims))
        if bias:
            self.bias = _uniform(scale, (output_dims,))

    def _extra_repr(self):
        out, in2, in1 = self.weight.shape
        return f"input1_dims={in1}, input2_dims={in2}, output_dims={out}, bias={'bias' in self}"

    def __call__(self, x1, x2):
        return _c.bilinear(x1, x2, self["weight"], self.get("bias"))
