"""Ponte: lazy arrays, function transformations and neural networks in C, with MLX's Python
API. `import ponte as mx` (or `import ponte.core as mx`) gives mlx.core's functions; ponte.nn,
ponte.optimizers and ponte.utils follow mlx.nn, mlx.optimizers and mlx.utils."""
from ponte.core import *  # noqa: F401,F403
from ponte.core import __version__, random, linalg, fft, fast, metal, cuda  # noqa: F401
from ponte import core  # noqa: F401


class ArrayLike:
    """mlx.core.ArrayLike: the type of objects that convert to an array (for type hints);
    wraps the object given, and isinstance(x, ArrayLike) is False for everything, as in MLX."""

    __module__ = "ponte.core"

    def __init__(self, obj):
        self.obj = obj


core.ArrayLike = ArrayLike
