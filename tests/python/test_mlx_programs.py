"""API behaviours that whole MLX programs (models and training loops of the kind found in
public MLX example collections, run unchanged on Ponte) showed different from MLX, each
checked against numpy and, where MLX is importable, against MLX itself."""
import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn

try:  # the differential halves run where MLX is installed
    import mlx.core as mlx
    import mlx.nn as mlx_nn
except ImportError:
    mlx = mlx_nn = None


# ───────────────────────── BatchNorm running statistics ─────────────────────────


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (2, 3, 2, 3)])
def test_batch_norm_running_var_is_unbiased(rng, shape):
    # a VAE trained with BatchNorm and then run in eval mode depends on this: MLX updates
    # running_var with the ddof=1 variance while normalizing with the biased one
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    axes = tuple(range(len(shape) - 1))
    bn = nn.BatchNorm(3, momentum=0.3)
    y = bn(mx.array(x))
    ref = (x - x.mean(axes)) / np.sqrt(x.var(axes) + 1e-5)
    np.testing.assert_allclose(np.array(y), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(bn.running_mean), 0.3 * x.mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(bn.running_var), 0.7 + 0.3 * x.var(axes, ddof=1),
                               rtol=1e-5, atol=1e-6)
    # under value_and_grad too, and then in eval mode with the stored statistics
    bn2 = nn.BatchNorm(3, momentum=0.3)
    nn.value_and_grad(bn2, lambda m, a: m(a).sum())(bn2, mx.array(x))
    np.testing.assert_allclose(np.array(bn2.running_var), np.array(bn.running_var), rtol=1e-6)
    bn.eval()
    rv = 0.7 + 0.3 * x.var(axes, ddof=1)
    np.testing.assert_allclose(np.array(bn(mx.array(x))), (x - 0.3 * x.mean(axes)) / np.sqrt(rv + 1e-5),
                               rtol=1e-4, atol=1e-5)
    if mlx_nn is not None:
        m = mlx_nn.BatchNorm(3, momentum=0.3)
        m(mlx.array(x))
        np.testing.assert_allclose(np.array(bn2.running_var), np.array(m.running_var), rtol=1e-5)


def test_batch_norm_training_needs_more_than_one_value_per_channel():
    bn = nn.BatchNorm(4)
    with pytest.raises(ValueError):
        bn(mx.ones((1, 4)))
    with pytest.raises(ValueError):
        bn(mx.ones((1, 1, 1, 4)))
    bn.eval()  # eval mode uses the running statistics: fine
    np.testing.assert_allclose(np.array(bn(mx.ones((1, 4)))), np.full((1, 4), 1 / np.sqrt(1 + 1e-5)), rtol=1e-6)
    if mlx_nn is not None:
        with pytest.raises(ValueError):
            mlx_nn.BatchNorm(4)(mlx.ones((1, 4)))
