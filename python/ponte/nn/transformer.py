"""Transformer blocks with mlx.nn's API: TransformerEncoderLayer, TransformerDecoderLayer,
TransformerEncoder, TransformerDecoder and Transformer. Each module holds MLX's submodules (so
parameter names match and MLX weights load); its forward pass is one call of libponte's C block
(pn_nn_transformer_*, through ponte.core._nn.transformer) over the module's parameter tree."""
import ponte.core as mx
from ponte.core import _nn as _c
from ponte.nn.layers import Dropout, LayerNorm, Linear, Module, relu
from ponte.nn.norm_attention import MultiHeadAttention
from ponte.utils import tree_flatten

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerDecoder", "Transformer"]

# pn_transformer_part
_ENCODER_LAYER, _DECODER_LAYER, _ENCODER, _DECODER, _TRANSFORMER = range(5)


class _Block(Module):
    """What the blocks share: their sizes, kept for the C call, and the call itself."""

    def _sizes(self, dims, num_heads, mlp_dims, dropout):
        self._dims = dims
        self._num_heads = num_heads
        self._mlp_dims = mlp_dims or dims * 4
        self._dropout = dropout

    def _run(self, part, x, memory, masks, activation, norm_first, encoder_layers=0,
             decoder_layers=0):
        flat = tree_flatten(self.parameters())
        config = (self._dims, self._num_heads, self._mlp_dims, encoder_layers, decoder_layers,
                  self._dropout if self.training else 0.0, bool(norm_first))
        act = None if activation is relu else activation
        return _c.transformer(part, x, memory, masks, [k for k, _ in flat], [v for _, v in flat],
                              config, act)


def _checkpointed(layer, x, *rest):
    """layer(x, *rest) recomputed in the backward pass (mlx.nn.utils.checkpoint): the layer's
    trainable parameters and the array arguments are the checkpoint's inputs."""
    arrays = [i for i, r in enumerate(rest) if isinstance(r, mx.array)]

    def inner(params, x, *arr):
        layer.update(params)
        full = list(rest)
        for i, a in zip(arrays, arr):
            full[i] = a
        return layer(x, *full)

    params = layer.trainable_parameters()
    try:
        return mx.checkpoint(inner)(params, x, *[rest[i] for i in arrays])
    finally:
        layer.update(params)  # the layer keeps its own arrays, not the traced ones


class TransformerEncoderLayer(_Block):
    """Self-attention and an MLP, each in a residual branch; layer norms before them
    (norm_first, the default) or after the residual sums."""

    def __init__(self, dims, num_heads, mlp_dims=None, dropout=0.0, activation=relu,
                 norm_first=True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first
        self._sizes(dims, num_heads, mlp_dims, dropout)

    def __call__(self, x, mask):
        return self._run(_ENCODER_LAYER, x, None, (mask,), self.activation, self.norm_first)


class TransformerEncoder(_Block):
    """num_layers encoder layers followed by a layer norm."""

    def __init__(self, num_layers, dims, num_heads, mlp_dims=None, dropout=0.0, activation=relu,
                 norm_first=True, checkpoint=False):
        super().__init__()
        self.layers = [TransformerEncoderLayer(dims, num_heads, mlp_dims, dropout, activation,
                                               norm_first) for _ in range(num_layers)]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint
        self._sizes(dims, num_heads, mlp_dims, dropout)
        self._activation, self._norm_first = activation, norm_first

    def __call__(self, x, mask):
        if self.checkpoint:
            for layer in self.layers:
                x = _checkpointed(layer, x, mask)
            return self.ln(x)
        return self._run(_ENCODER, x, None, (mask,), self._activation, self._norm_first,
                         encoder_layers=len(self.layers))


class TransformerDecoderLayer(_Block):
    """Self-attention, cross-attention over the encoder's memory and an MLP, each in a
    residual branch, with layer norms before (norm_first) or after them."""

    def __init__(self, dims, num_heads, mlp_dims=None, dropout=0.0, activation=relu,
                 norm_first=True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.self_attention = MultiHeadAttention(dims, num_heads)
        self.cross_attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.ln3 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first
        self._sizes(dims, num_heads, mlp_dims, dropout)

    def __call__(self, x, memory, x_mask, memory_mask):
        return self._run(_DECODER_LAYER, x, memory, (x_mask, memory_mask), self.activation,
                         self.norm_first)


class TransformerDecoder(_Block):
    """num_layers decoder layers followed by a layer norm."""

    def __init__(self, num_layers, dims, num_heads, mlp_dims=None, dropout=0.0, activation=relu,
                 norm_first=True, checkpoint=False):
        super().__init__()
        self.layers = [TransformerDecoderLayer(dims, num_heads, mlp_dims, dropout, activation,
                                               norm_first) for _ in range(num_layers)]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint
        self._sizes(dims, num_heads, mlp_dims, dropout)
        self._activation, self._norm_first = activation, norm_first

    def __call__(self, x, memory, x_mask, memory_mask):
        if self.checkpoint:
            for layer in self.layers:
                x = _checkpointed(layer, x, memory, x_mask, memory_mask)
            return self.ln(x)
        return self._run(_DECODER, x, memory, (x_mask, memory_mask), self._activation,
                         self._norm_first, decoder_layers=len(self.layers))


class Transformer(_Block):
    """An encoder over src and a decoder over tgt that attends to the encoder's output
    ("Attention Is All You Need"); custom_encoder / custom_decoder replace either part."""

    def __init__(self, dims=512, num_heads=8, num_encoder_layers=6, num_decoder_layers=6,
                 mlp_dims=None, dropout=0.0, activation=relu, custom_encoder=None,
                 custom_decoder=None, norm_first=True, checkpoint=False):
        super().__init__()
        self.encoder = custom_encoder or TransformerEncoder(
            num_encoder_layers, dims, num_heads, mlp_dims, dropout, activation, norm_first,
            checkpoint)
        self.decoder = custom_decoder or TransformerDecoder(
            num_decoder_layers, dims, num_heads, mlp_dims, dropout, activation, norm_first,
            checkpoint)
        self._sizes(dims, num_heads, mlp_dims, dropout)
        self._activation, self._norm_first = activation, norm_first

    def __call__(self, src, tgt, src_mask, tgt_mask, memory_mask):
        enc, dec = self.encoder, self.decoder
        if (type(enc) is not TransformerEncoder or type(dec) is not TransformerDecoder
                or enc.checkpoint or dec.checkpoint):  # custom parts: one call each
            return dec(tgt, enc(src, src_mask), tgt_mask, memory_mask)
        return self._run(_TRANSFORMER, src, tgt, (src_mask, tgt_mask, memory_mask),
                         self._activation, self._norm_first, len(enc.layers), len(dec.layers))
