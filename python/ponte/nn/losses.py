"""ponte.nn.losses — mlx.nn.losses over libponte's C losses (pn_nn_*); only the optional
weights of cross_entropy / binary_cross_entropy are applied here."""

import ponte.core as mx
from ponte.core import _nn as _c

__all__ = ["cross_entropy", "binary_cross_entropy", "mse_loss", "l1_loss", "smooth_l1_loss",
           "huber_loss", "nll_loss", "kl_div_loss", "log_cosh_loss", "cosine_similarity_loss",
           "hinge_loss", "margin_ranking_loss", "gaussian_nll_loss", "triplet_loss"]


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return mx.mean(loss)
    if reduction == "sum":
        return mx.sum(loss)
    raise ValueError("Invalid reduction. Must be 'none', 'mean', or 'sum'.")


def _weighted(fn, weights, reduction, *args):
    if weights is None:
        return fn(*args, reduction)
    loss = fn(*args, "none")
    if weights.shape != loss.shape:
        raise ValueError(f"Weights with shape {weights.shape} is not the same as output loss with shape {loss.shape}.")
    return _reduce(loss * weights, reduction)


def cross_entropy(logits, targets, weights=None, axis=-1, label_smoothing=0.0, reduction="none"):
    """Cross entropy of logits against class indices (or probabilities of logits' shape)."""
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"Label smoothing must in [0, 1), got {label_smoothing}.")
    return _weighted(lambda l, t, r: _c.cross_entropy(l, t, axis, label_smoothing, r),
                     weights, reduction, logits, targets)


def binary_cross_entropy(inputs, targets, weights=None, with_logits=True, reduction="mean"):
    """Binary cross entropy of logits (with_logits) or probabilities against targets."""
    return _weighted(lambda i, t, r: _c.binary_cross_entropy(i, t, 1.0 if with_logits else 0.0, r),
                     weights, reduction, inputs, targets)


def mse_loss(predictions, targets, reduction="mean"):
    """Mean squared error."""
    return _c.mse_loss(predictions, targets, 0.0, reduction)


def l1_loss(predictions, targets, reduction="mean"):
    """Mean absolute error."""
    return _c.l1_loss(predictions, targets, 0.0, reduction)


def smooth_l1_loss(predictions, targets, beta=1.0, reduction="mean"):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    return _c.smooth_l1_loss(predictions, targets, beta, reduction)


def huber_loss(inputs, targets, delta=1.0, reduction="none"):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta)."""
    return _c.huber_loss(inputs, targets, delta, reduction)


def nll_loss(inputs, targets, axis=-1, reduction="none"):
    """Negative log likelihood of log-probabilities at the target classes."""
    return _c.nll_loss(inputs, targets, axis, reduction)


def kl_div_loss(inputs, targets, axis=-1, reduction="none"):
    """KL divergence between log-probabilities inputs and targets."""
    return _c.kl_div_loss(inputs, targets, axis, reduction)


def log_cosh_loss(inputs, targets, reduction="none"):
    """log(cosh(inputs - targets)), computed stably."""
    return _c.log_cosh_loss(inputs, targets, None, -1, 0.0, 0.0, 0.0, reduction)


def cosine_similarity_loss(x1, x2, axis=1, eps=1e-8, reduction="none"):
    """Cosine similarity of x1 and x2 along axis."""
    return _c.cosine_similarity_loss(x1, x2, None, axis, eps, 0.0, 0.0, reduction)


def hinge_loss(inputs, targets, reduction="none"):
    """max(0, 1 - inputs * targets)."""
    return _c.hinge_loss(inputs, targets, None, -1, 0.0, 0.0, 0.0, reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin=0.0, reduction="none"):
    """max(0, -targets * (inputs1 - inputs2) + margin)."""
    return _c.margin_ranking_loss(inputs1, inputs2, targets, -1, margin, 0.0, 0.0, reduction)


def gaussian_nll_loss(inputs, targets, vars, full=False, eps=1e-6, reduction="mean"):
    """Negative log likelihood of targets under N(inputs, vars)."""
    return _c.gaussian_nll_loss(inputs, targets, vars, -1, 1.0 if full else 0.0, eps, 0.0, reduction)


def triplet_loss(anchors, positives, negatives, axis=-1, p=2, margin=1.0, eps=1e-6, reduction="none"):
    """max(d(a, p) - d(a, n) + margin, 0), d(a, b) = sqrt(sum((a - b)^p, axis) + eps) as MLX."""
    return _c.triplet_loss(anchors, positives, negatives, axis, p, margin, eps, reduction)
