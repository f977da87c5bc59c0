"""ponte.nn.utils — value_and_grad over a model's trainable parameters, as mlx.nn."""
from functools import wraps

import ponte.core as mx

__all__ = ["value_and_grad"]


def value_and_grad(model, fn):
    """A function returning fn(*args) and its gradient with respect to model's trainable
    parameters (a tree like model.trainable_parameters())."""
    def inner(params, *args, **kwargs):
        model.update(params)
        return fn(*args, **kwargs)

    vg = mx.value_and_grad(inner)

    @wraps(fn)
    def wrapped(*args, **kwargs):
        params = model.trainable_parameters()
        try:
            return vg(params, *args, **kwargs)
        finally:
            model.update(params)  # the model keeps its own arrays, not the traced ones

    return wrapped
