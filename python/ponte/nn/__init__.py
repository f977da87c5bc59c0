"""ponte.nn — neural networks with mlx.nn's API: Module, layers, activations, losses and
initializers over libponte's C layers."""
from ponte.nn import init, losses  # noqa: F401
from ponte.nn.layers import *  # noqa: F401,F403
from ponte.nn.layers import Module  # noqa: F401
from ponte.nn.utils import value_and_grad  # noqa: F401
from ponte.nn.norm_attention import (  # noqa: F401
    ALiBi, BatchNorm, GroupNorm, InstanceNorm, MultiHeadAttention, RoPE,
    SinusoidalPositionalEncoding)
