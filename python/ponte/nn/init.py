"""ponte.nn.init — mlx.nn.init: functions that return initializers (array -> new array of the
same shape), over libponte's C initializers."""
import ponte.core as mx
from ponte.core import _nn as _c

__all__ = ["constant", "uniform", "normal", "identity", "glorot_normal", "glorot_uniform",
           "he_normal", "he_uniform", "sparse", "orthogonal"]


def constant(value, dtype=mx.float32):
    """Initializer filling with value."""
    return lambda a: _c.init_constant(a.shape, dtype, value, 0.0, 0.0)


def uniform(low=0.0, high=1.0, dtype=mx.float32):
    """Initializer drawing from U(low, high)."""
    return lambda a: _c.init_uniform(a.shape, dtype, low, high)


def normal(mean=0.0, std=1.0, dtype=mx.float32):
    """Initializer drawing from N(mean, std^2)."""
    return lambda a: _c.init_normal(a.shape, dtype, mean, std)


def identity(dtype=mx.float32):
    """Initializer giving the identity matrix (square 2-d arrays only)."""
    return lambda a: _c.init_identity(a.shape, dtype, 0.0, 0.0, 0.0)


def glorot_normal(dtype=mx.float32):
    """Initializer drawing from N(0, gain^2 * 2 / (fan_in + fan_out))."""
    return lambda a, gain=1.0: _c.init_glorot_normal(a.shape, dtype, gain, 0.0)


def glorot_uniform(dtype=mx.float32):
    """Initializer drawing from U(-l, l), l = gain * sqrt(6 / (fan_in + fan_out))."""
    return lambda a, gain=1.0: _c.init_glorot_uniform(a.shape, dtype, gain, 0.0)


def _fan_out(mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Invalid mode: {mode}. Valid modes are: fan_in, fan_out")
    return 1.0 if mode == "fan_out" else 0.0


def he_normal(dtype=mx.float32):
    """Initializer drawing from N(0, gain^2 / fan) (fan by mode)."""
    return lambda a, mode="fan_in", gain=1.0: _c.init_he_normal(a.shape, dtype, _fan_out(mode), gain)


def he_uniform(dtype=mx.float32):
    """Initializer drawing from U(-l, l), l = gain * sqrt(3 / fan) (fan by mode)."""
    return lambda a, mode="fan_in", gain=1.0: _c.init_he_uniform(a.shape, dtype, _fan_out(mode), gain)


def sparse(sparsity, mean=0.0, std=1.0, dtype=mx.float32):
    """Initializer drawing 2-d N(mean, std^2) with ceil(sparsity * cols) zeros in each row."""
    return lambda a: _c.init_sparse(a.shape, dtype, sparsity, mean, std)


def orthogonal(gain=1.0, dtype=mx.float32):
    """Initializer giving gain times a (semi-)orthogonal 2-d matrix (QR of a normal matrix)."""
    return lambda a: _c.init_orthogonal(a.shape, dtype, gain, 0.0, 0.0)
