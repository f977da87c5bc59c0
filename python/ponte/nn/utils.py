"""ponte.nn.utils — value_and_grad and checkpoint over a model's trainable parameters, and
clip_grad_norm_sharded, as mlx.nn.utils (average_gradients is attached by ponte.nn)."""
from functools import wraps

import ponte.core as mx
from ponte.utils import tree_map, tree_reduce

__all__ = ["value_and_grad", "checkpoint", "clip_grad_norm_sharded"]


def _over_parameters(model, transform, fn):
    """transform (mx.value_and_grad, mx.checkpoint) applied to fn as a function of model's
    trainable parameters and fn's arguments; the model keeps its own arrays afterwards, not
    the transform's."""
    def inner(params, *args, **kwargs):
        model.update(params)
        return fn(*args, **kwargs)

    t = transform(inner)

    @wraps(fn)
    def wrapped(*args, **kwargs):
        params = model.trainable_parameters()
        try:
            return t(params, *args, **kwargs)
        finally:
            model.update(params)

    return wrapped


def value_and_grad(model, fn):
    """A function returning fn(*args) and its gradient with respect to model's trainable
    parameters (a tree like model.trainable_parameters())."""
    return _over_parameters(model, mx.value_and_grad, fn)


def checkpoint(module, fn=None):
    """fn (default: module itself, looked up at each call, so a __call__ patched later is the
    one used) recomputed in the backward pass instead of keeping its intermediates:
    mx.checkpoint over the module's trainable parameters and fn's arguments."""
    return _over_parameters(module, mx.checkpoint, module if fn is None else fn)


def clip_grad_norm_sharded(gradients, max_norm, group=None):
    """(gradients scaled so that their global norm is at most max_norm, that norm) where each
    process of group (None: the global one) holds a shard of the gradients: the squared norms
    are summed over the group before the scale min(max_norm / (norm + 1e-6), 1) is applied."""
    local = tree_reduce(lambda acc, g: acc + g.square().sum(), gradients, 0.0)
    norm = mx.sqrt(mx.distributed.all_sum(local, group=group))
    scale = mx.minimum(max_norm / (norm + 1e-6), 1.0)
    return tree_map(lambda g: g * scale, gradients), norm
