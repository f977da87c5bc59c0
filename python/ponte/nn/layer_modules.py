"""ponte.nn.layer_modules — stand-ins for mlx.nn.layers' modules (nn.linear, nn.activations,
...): module objects holding the same public names as MLX 0.32.4's files, reachable as
ponte.nn.<name>, ponte.nn.layers.<name> and importable as ponte.nn.layers.<name>; plus
average_gradients (mlx.nn.utils) over ponte.core.distributed."""
import sys
import types

import ponte.core as mx
from ponte.utils import tree_flatten, tree_map, tree_unflatten

__all__ = ["install", "mlx_aliases", "average_gradients", "upsample_nearest", "upsample_linear",
           "upsample_cubic"]

# The public names of each mlx/nn/layers/<name>.py (MLX 0.32.4).
CONTENTS = {
    "activations": [
        "CELU", "ELU", "GELU", "GLU", "HardShrink", "HardTanh", "Hardswish", "LeakyReLU",
        "LogSigmoid", "LogSoftmax", "Mish", "PReLU", "ReLU", "ReLU2", "ReLU6", "SELU", "SiLU",
        "Sigmoid", "Softmax", "Softmin", "Softplus", "Softshrink", "Softsign", "Step", "Tanh",
        "celu", "elu", "gelu", "gelu_approx", "gelu_fast_approx", "glu", "hard_shrink",
        "hard_tanh", "hardswish", "leaky_relu", "log_sigmoid", "log_softmax", "mish", "prelu",
        "relu", "relu2", "relu6", "selu", "sigmoid", "silu", "softmax", "softmin", "softplus",
        "softshrink", "softsign", "step", "tanh"],
    "base": ["Module"],
    "containers": ["Sequential"],
    "convolution": ["Conv1d", "Conv2d", "Conv3d"],
    "convolution_transpose": ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"],
    "dropout": ["Dropout", "Dropout2d", "Dropout3d"],
    "embedding": ["Embedding"],
    "linear": ["Bilinear", "Identity", "Linear"],
    "normalization": ["BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "RMSNorm"],
    "pooling": ["AvgPool1d", "AvgPool2d", "AvgPool3d", "MaxPool1d", "MaxPool2d", "MaxPool3d"],
    "positional_encoding": ["ALiBi", "RoPE", "SinusoidalPositionalEncoding"],
    "upsample": ["Upsample", "upsample_cubic", "upsample_linear", "upsample_nearest"],
}

# ponte.nn's own modules that MLX also keeps under mlx.nn.layers.
EXISTING = ("quantized", "recurrent", "transformer", "distributed")

_MODULES = {}


def _upsample(x, scale_factor, mode, align_corners, antialias=False):
    from ponte.core import _nn as _c
    return _c.upsample(x, tuple(float(s) for s in scale_factor), mode, align_corners, antialias)


def upsample_nearest(x, scale_factor):
    """Nearest-neighbour upsampling of x (N, spatial..., C) by one factor per spatial axis."""
    return _upsample(x, scale_factor, "nearest", False)


def upsample_linear(x, scale_factor, align_corners=False, antialias=False):
    """(Bi/tri)linear upsampling of x (N, spatial..., C) by one factor per spatial axis;
    antialias filters when downsampling (see Upsample)."""
    return _upsample(x, scale_factor, "linear", align_corners, antialias)


def upsample_cubic(x, scale_factor, align_corners=False, antialias=False):
    """Bicubic upsampling of x (N, H, W, C) by one factor per spatial axis; antialias filters
    when downsampling (see Upsample)."""
    return _upsample(x, scale_factor, "cubic", align_corners, antialias)


def average_gradients(gradients, group=None, all_reduce_size=32 * 1024**2,
                      communication_stream=None):
    """The tree of gradients averaged over the processes of group (None: the global group),
    as mlx.nn.average_gradients; with one process the tree itself comes back. Arrays of one
    dtype travel concatenated, one all_sum per run that reaches all_reduce_size bytes (<= 0:
    one array at a time); communication_stream is the stream of the sums."""
    group = group or mx.distributed.init()
    n = group.size()
    if n == 1:
        return gradients

    def average(x):
        return mx.distributed.all_sum(x, group=group, stream=communication_stream) / n

    if all_reduce_size <= 0:
        return tree_map(average, gradients)
    flat = tree_flatten(gradients)
    if not flat:
        return gradients
    keys, values = zip(*flat)
    dtype = values[0].dtype
    if any(v.dtype != dtype for v in values):
        return average_gradients(gradients, group, 0, communication_stream)
    # one all_sum per run of arrays that just reaches all_reduce_size bytes (as MLX groups)
    out, batch, size = [], [], 0

    def flush():
        big = average(mx.concatenate([b.reshape(-1) for b in batch]))
        offset = 0
        for b in batch:
            out.append(big[offset:offset + b.size].reshape(b.shape))
            offset += b.size

    for v in values:
        batch.append(v)
        size += v.nbytes
        if size >= all_reduce_size:
            flush()
            batch, size = [], 0
    if batch:
        flush()
    return tree_unflatten(list(zip(keys, out)))


def install(nn):
    """Builds the modules from ponte.nn's names (once) and hangs them on nn and nn.layers.
    Returns {name: module}."""
    if not _MODULES:
        extra = {"upsample_nearest": upsample_nearest, "upsample_linear": upsample_linear,
                 "upsample_cubic": upsample_cubic}
        for name, names in CONTENTS.items():
            full = f"ponte.nn.layers.{name}"
            mod = types.ModuleType(full, f"ponte's counterpart of mlx.nn.layers.{name}.")
            for n in names:
                setattr(mod, n, extra[n] if n in extra else getattr(nn, n))
            mod.__all__ = list(names)
            _MODULES[name] = mod
        for name in EXISTING:
            _MODULES[name] = sys.modules[f"ponte.nn.{name}"]
    for name, mod in _MODULES.items():
        setattr(nn, name, mod)
        setattr(nn.layers, name, mod)
        sys.modules.setdefault(f"ponte.nn.layers.{name}", mod)
    return dict(_MODULES)


def mlx_aliases():
    """{"mlx.nn.layers.<name>": module} for ponte.run's aliasing of mlx (install first)."""
    return {f"mlx.nn.layers.{name}": mod for name, mod in _MODULES.items()}
