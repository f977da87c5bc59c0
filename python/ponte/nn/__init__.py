"""ponte.nn — neural networks with mlx.nn's API: Module, layers, activations, losses and
initializers over libponte's C layers."""
from ponte.nn import init, losses  # noqa: F401
from ponte.nn.layers import *  # noqa: F401,F403
from ponte.nn.layers import Module  # noqa: F401
from ponte.nn.utils import value_and_grad  # noqa: F401
from ponte.nn.norm_attention import (  # noqa: F401
    ALiBi, BatchNorm, GroupNorm, InstanceNorm, MultiHeadAttention, RoPE,
    SinusoidalPositionalEncoding)
from ponte.nn.recurrent import GRU, LSTM, RNN, Bilinear, Upsample  # noqa: F401
from ponte.nn.transformer import (  # noqa: F401
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
    TransformerEncoderLayer)
from ponte.nn.conv_pool import (  # noqa: F401
    AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
    ConvTranspose3d, Dropout2d, Dropout3d, MaxPool1d, MaxPool2d, MaxPool3d)
from ponte.nn.quantized import QuantizedEmbedding, QuantizedLinear, quantize  # noqa: F401
from ponte.nn.quantized import QQLinear  # noqa: F401
from ponte.nn.distributed import (  # noqa: F401
    AllToShardedLinear, FullyShardedModule, QuantizedAllToShardedLinear,
    QuantizedShardedToAllLinear, ShardedToAllLinear, fully_shard)
from ponte.nn import quantized as _quantized

# Linear.to_quantized / Embedding.to_quantized live with the quantized layers they build
Linear.to_quantized = _quantized._linear_to_quantized  # noqa: F405
Embedding.to_quantized = _quantized._embedding_to_quantized  # noqa: F405

# nn.linear, nn.activations, ... as mlx.nn's layer modules; nn.average_gradients
from ponte.nn import layer_modules as _layer_modules, utils as _utils  # noqa: E402
from ponte.nn.layer_modules import average_gradients  # noqa: E402,F401

_utils.average_gradients = average_gradients
_layer_modules.install(__import__("sys").modules[__name__])
