"""Convolution, pooling and channel-dropout layers with mlx.nn's API, channels last: Conv1d/2d/3d,
ConvTranspose1d/2d/3d (over ponte.core's conv ops), MaxPool1d/2d/3d and AvgPool1d/2d/3d (over
libponte's C pooling) and Dropout2d/3d (over the C dropout)."""
import math

import ponte.core as mx
from ponte.core import _nn as _c
from ponte.nn.layers import Dropout, Module

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
           "Dropout2d", "Dropout3d"]


def _tuple(v, n):
    """An int repeated n times, or a sequence kept as a tuple (ponte.core checks its length)."""
    return (v,) * n if isinstance(v, int) else tuple(v)


# ───────────────────────────── convolutions ─────────────────────────────

class _Conv(Module):
    """The shared body of the convolution layers: weight (out_channels, *kernel_size,
    in_channels // groups) and bias (out_channels,) as MLX, the weight uniform in
    [-scale, scale] with scale = sqrt(1 / (in_channels * prod(kernel_size))), the bias zeros.
    Subclasses name the rank (_ndim), whether they transpose, and the core function."""

    _ndim = 0
    _transpose = False
    _fn = None

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 output_padding, bias):
        super().__init__()
        if groups < 1 or in_channels % groups != 0:
            raise ValueError(f"The number of input channels ({in_channels}) must be "
                             f"divisible by the number of groups ({groups})")
        n = self._ndim
        kernel_size = _tuple(kernel_size, n)
        if len(kernel_size) != n:
            raise ValueError(f"[{type(self).__name__}] kernel_size must be an int or a tuple of "
                             f"{n} ints, got {kernel_size}.")
        scale = math.sqrt(1 / (in_channels * math.prod(kernel_size)))
        self.weight = mx.random.uniform(low=-scale, high=scale,
                                        shape=(out_channels, *kernel_size, in_channels // groups))
        if bias:
            self.bias = mx.zeros((out_channels,))
        # 1-d layers keep plain ints, as MLX
        keep = (lambda v: v) if n == 1 else (lambda v: _tuple(v, n))
        self.stride = keep(stride)
        self.padding = keep(padding)
        self.dilation = dilation if isinstance(dilation, int) else tuple(dilation)
        self.groups = groups
        if self._transpose:
            self.output_padding = keep(output_padding)

    def _extra_repr(self):
        w = self.weight.shape
        k = w[1] if self._ndim == 1 else tuple(w[1:-1])
        s = (f"{w[-1] * self.groups}, {w[0]}, kernel_size={k}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}, ")
        if self._transpose:
            s += f"output_padding={self.output_padding}, "
        elif self._ndim < 3:
            s += f"groups={self.groups}, "
        return s + f"bias={'bias' in self}"

    def __call__(self, x):
        extra = (self.output_padding,) if self._transpose else ()
        y = type(self)._fn(x, self.weight, self.stride, self.padding, self.dilation, *extra,
                           self.groups)
        if "bias" in self:
            y = y + self.bias
        return y


class Conv1d(_Conv):
    """1-d convolution over x (N, L, in_channels) -> (N, L_out, out_channels); weight
    (out_channels, kernel_size, in_channels // groups)."""

    _ndim, _fn = 1, mx.conv1d

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         0, bias)


class Conv2d(_Conv):
    """2-d convolution over x (N, H, W, in_channels) -> (N, H_out, W_out, out_channels); weight
    (out_channels, kH, kW, in_channels // groups). Sizes are ints or pairs."""

    _ndim, _fn = 2, mx.conv2d

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         0, bias)


class Conv3d(_Conv):
    """3-d convolution over x (N, D, H, W, in_channels) -> (N, D_out, H_out, W_out,
    out_channels); weight (out_channels, kD, kH, kW, in_channels). No groups, as MLX."""

    _ndim, _fn = 3, mx.conv3d

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, 0,
                         bias)


class ConvTranspose1d(_Conv):
    """1-d transposed convolution over x (N, L, in_channels) -> (N, L_out, out_channels) with
    L_out = (L - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1;
    weight (out_channels, kernel_size, in_channels)."""

    _ndim, _fn, _transpose = 1, mx.conv_transpose1d, True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1,
                         output_padding, bias)


class ConvTranspose2d(_Conv):
    """2-d transposed convolution over x (N, H, W, in_channels); weight (out_channels, kH, kW,
    in_channels)."""

    _ndim, _fn, _transpose = 2, mx.conv_transpose2d, True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1,
                         output_padding, bias)


class ConvTranspose3d(_Conv):
    """3-d transposed convolution over x (N, D, H, W, in_channels); weight (out_channels, kD,
    kH, kW, in_channels)."""

    _ndim, _fn, _transpose = 3, mx.conv_transpose3d, True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1,
                         output_padding, bias)


# ───────────────────────────── pooling ─────────────────────────────

def _pool_arg(v, n, cls, name):
    """MLX's pooling arguments: an int for every spatial axis, or a tuple/list of n ints."""
    if isinstance(v, (list, tuple)):
        ok = len(v) == n
    else:
        ok = isinstance(v, int)
        v = (v,) * n
    if not ok:
        raise ValueError(f"[{cls}] '{name}' must be an integer or a tuple containing {n} "
                         f"integer{'s' if n > 1 else ''}")
    return tuple(v)


class _Pool(Module):
    """Max or average pooling over the _ndim spatial axes of x (N, spatial..., C): windows of
    kernel_size moved by stride (default kernel_size) over x padded by padding on both sides
    (-inf for max pooling, zeros that count in the mean for average pooling)."""

    _ndim = 0
    _is_max = False

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        cls, n = type(self).__name__, self._ndim
        kernel_size = _pool_arg(kernel_size, n, cls, "kernel_size")
        stride = kernel_size if stride is None else _pool_arg(stride, n, cls, "stride")
        padding = _pool_arg(padding, n, cls, "padding")
        for name, v in (("kernel_size", kernel_size), ("stride", stride)):
            if any(e <= 0 for e in v):
                raise ValueError(f"[{cls}] '{name}' must be positive but got {v}.")
        if any(e < 0 for e in padding):
            raise ValueError(f"[{cls}] 'padding' must be non-negative but got {padding}.")
        self._kernel_size, self._stride, self._padding = kernel_size, stride, padding

    def _extra_repr(self):
        return f"kernel_size={self._kernel_size}, stride={self._stride}, padding={self._padding}"

    def __call__(self, x):
        return _c.pool(x, self._is_max, self._kernel_size, self._stride, self._padding)


class MaxPool1d(_Pool):
    """Max pooling over x (N, L, C)."""
    _ndim, _is_max = 1, True


class MaxPool2d(_Pool):
    """Max pooling over x (N, H, W, C)."""
    _ndim, _is_max = 2, True


class MaxPool3d(_Pool):
    """Max pooling over x (N, D, H, W, C)."""
    _ndim, _is_max = 3, True


class AvgPool1d(_Pool):
    """Average pooling over x (N, L, C)."""
    _ndim = 1


class AvgPool2d(_Pool):
    """Average pooling over x (N, H, W, C)."""
    _ndim = 2


class AvgPool3d(_Pool):
    """Average pooling over x (N, D, H, W, C)."""
    _ndim = 3


# ───────────────────────────── channel dropout ─────────────────────────────

class _DropoutNd(Dropout):
    """Channel-wise dropout while training: each channel of each sample (x of rank _ndim + 1
    unbatched or _ndim + 2 batched, channels last) is zeroed with probability p as a whole, the
    rest scaled by 1 / (1 - p); identity in eval mode. (p and its checks: Dropout's.)"""

    _ndim = 0

    def __call__(self, x):
        n = self._ndim
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(f"Received input with {x.ndim} dimensions. Expected {n + 1} or "
                             f"{n + 2} dimensions.")
        if self._p_1 == 1 or not self.training:
            return x
        shape = list(x.shape)
        shape[-n - 1:-1] = [1] * n  # one draw per (sample, channel)
        dtype = x.dtype if mx.issubdtype(x.dtype, mx.floating) else mx.float32
        return x * _c.dropout(mx.ones(shape, dtype=dtype), 1 - self._p_1)


class Dropout2d(_DropoutNd):
    """Dropout of whole channels of x (N, H, W, C) or (H, W, C)."""
    _ndim = 2


class Dropout3d(_DropoutNd):
    """Dropout of whole channels of x (N, D, H, W, C) or (D, H, W, C)."""
    _ndim = 3
