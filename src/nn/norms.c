/* norms.c — mlx.nn's BatchNorm, GroupNorm and InstanceNorm as functions of their inputs,
 * weights and (for batch norm) running statistics; channels-last like mlx.nn. Composite ops:
 * built from mean/var/rsqrt, so they run on every backend and differentiate for free. */
#include "core/core.h"

#include <math.h>

#define W(x) pn_weak_float(x)

/* Checks that an optional per-channel array (weight, bias, running stats) has shape (C,). */
static bool norm_check_channel(const char *op, const char *what, pn_array *a, int64_t c)
{
    if (!a) return true;
    if (a->ndim != 1 || a->shape[0] != c) {
        char buf[128];
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s must have shape (%lld,) to match the %lld features of the input, got %s.",
                 op, what, (long long)c, (long long)c, pnC_shape_str(a->shape, a->ndim, buf, sizeof buf));
        return false;
    }
    if (a->dtype == PN_COMPLEX64) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s must be real, got complex64.", op, what);
        return false;
    }
    return true;
}

/* The common checks: inputs not in error, x real with at least min_ndim dimensions, weight and
 * bias of shape (C,). */
static bool norm_check(const char *op, pn_array *x, int min_ndim, pn_array *weight, pn_array *bias)
{
    if (!pnC_inputs_ok(op, 1, &x)) return false;
    if ((weight && !pnC_inputs_ok(op, 1, &weight)) || (bias && !pnC_inputs_ok(op, 1, &bias)))
        return false;
    if (x->ndim < min_ndim) {
        char buf[128];
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Expected input to have at least %d dimensions, got shape %s.", op,
                 min_ndim, pnC_shape_str(x->shape, x->ndim, buf, sizeof buf));
        return false;
    }
    if (x->dtype == PN_COMPLEX64) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Input must be real, got complex64.", op);
        return false;
    }
    int64_t c = x->shape[x->ndim - 1];
    return norm_check_channel(op, "weight", weight, c) && norm_check_channel(op, "bias", bias, c);
}

/* weight * y + bias with either optional (lazy; in the caller's scope). */
static pn_array *norm_affine(pn_array *y, pn_array *weight, pn_array *bias)
{
    if (weight) y = pn_multiply(weight, y);
    if (bias) y = pn_add(y, bias);
    return y;
}

/* Half inputs are normalized in float32 and cast back, as pn_nn_layer_norm. */
static pn_array *norm_upcast(pn_array *x) { return pnC_is_half(x->dtype) ? pn_astype(x, PN_FLOAT32) : x; }
static pn_array *norm_downcast(pn_array *y, pn_dtype t) { return pnC_is_half(t) ? pn_astype(y, t) : y; }

/* Batch normalization over every axis but the last (MLX: 2 to 4 dimensions). Training, or no
 * running statistics: normalizes with the batch mean and biased variance; when training with
 * running_mean and running_var (both or neither) and new_mean/new_var non-NULL, these receive
 * (1 - momentum) * running + momentum * batch_stat, the variance's statistic unbiased (ddof 1,
 * as mlx.nn.BatchNorm; the normalization itself uses the biased one). Training with a single
 * value per channel is an error (MLX's ValueError).
 * Eval with running statistics: normalizes with them. new_mean/new_var (each may be NULL) are
 * set to NULL whenever no update is produced, and on error. Returns weight * x̂ + bias. */
pn_array *pn_nn_batch_norm(pn_array *x, pn_array *weight, pn_array *bias, pn_array *running_mean,
                           pn_array *running_var, bool training, double momentum, double eps,
                           pn_array **new_mean, pn_array **new_var)
{
    if (new_mean) *new_mean = NULL;
    if (new_var) *new_var = NULL;
    if (!norm_check("batch_norm", x, 2, weight, bias)) return NULL;
    if ((running_mean && !pnC_inputs_ok("batch_norm", 1, &running_mean)) ||
        (running_var && !pnC_inputs_ok("batch_norm", 1, &running_var)))
        return NULL;
    if (x->ndim > 4) {
        char buf[128];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[batch_norm] Expected input to have 2, 3 or 4 dimensions, got shape %s.",
                        pnC_shape_str(x->shape, x->ndim, buf, sizeof buf));
    }
    if (!running_mean != !running_var)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[batch_norm] running_mean and running_var must be given together.");
    int64_t c = x->shape[x->ndim - 1];
    if (!norm_check_channel("batch_norm", "running_mean", running_mean, c) ||
        !norm_check_channel("batch_norm", "running_var", running_var, c))
        return NULL;

    int64_t per_channel = 1;
    for (int i = 0; i < x->ndim - 1; i++) per_channel *= x->shape[i];
    if (training && per_channel == 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[batch_norm] Training requires more than one value per channel.");

    pn_scope_push();
    pn_dtype t = x->dtype;
    pn_array *xf = norm_upcast(x);
    int axes[3];
    int naxes = x->ndim - 1;
    for (int i = 0; i < naxes; i++) axes[i] = i;
    pn_array *mean, *var;
    bool update = training && running_mean;
    pn_array *nm = NULL, *nv = NULL;
    if (training || !running_mean) {
        mean = pn_mean(xf, axes, naxes, false);
        var = pn_var(xf, axes, naxes, false, 0);
        if (update && new_mean)
            nm = pn_add(pn_multiply(W(1.0 - momentum), running_mean), pn_multiply(W(momentum), mean));
        if (update && new_var)
            nv = pn_add(pn_multiply(W(1.0 - momentum), running_var),
                        pn_multiply(W(momentum), pn_var(xf, axes, naxes, false, 1)));
    } else {
        mean = running_mean;
        var = running_var;
    }
    pn_array *y = pn_multiply(pn_subtract(xf, mean), pn_rsqrt(pn_add(var, W(eps))));
    y = norm_affine(norm_downcast(y, t), weight, bias);
    if (!y || (update && ((new_mean && !nm) || (new_var && !nv)))) {
        pn_scope_pop();
        return NULL;
    }
    pn_array *keep[3] = {y};
    int nkeep = 1;
    if (nm) keep[nkeep++] = nm;
    if (nv) keep[nkeep++] = nv;
    pn_scope_pop_keep(keep, nkeep);
    if (new_mean) *new_mean = nm;
    if (new_var) *new_var = nv;
    return y;
}

/* Group normalization as mlx.nn.GroupNorm: x (N, ..., C) with C divisible by num_groups; the
 * statistics are taken per sample and group over the spatial axes and the group's channels.
 * pytorch_compatible: group g holds the consecutive channels [g*C/G, (g+1)*C/G); otherwise
 * (MLX's default) channel c belongs to group c % num_groups. Returns weight * x̂ + bias. */
pn_array *pn_nn_group_norm(pn_array *x, int num_groups, pn_array *weight, pn_array *bias, double eps,
                           bool pytorch_compatible)
{
    if (!norm_check("group_norm", x, 2, weight, bias)) return NULL;
    int64_t c = x->shape[x->ndim - 1];
    if (num_groups <= 0 || c % num_groups != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[group_norm] The number of features (%lld) must be divisible by the number of groups (%d), "
                        "which must be positive.", (long long)c, num_groups);
    int64_t spatial = 1;
    for (int i = 1; i < x->ndim - 1; i++) spatial *= x->shape[i];
    int64_t gs = c / num_groups;
    /* (N, S, G, gs) for the PyTorch grouping, (N, S, gs, G) for MLX's; reduce S and the
     * within-group axis. */
    int64_t shape[4] = {x->shape[0], spatial, pytorch_compatible ? num_groups : gs,
                        pytorch_compatible ? gs : num_groups};
    int axes[2] = {1, pytorch_compatible ? 3 : 2};
    pn_scope_push();
    pn_dtype t = x->dtype;
    pn_array *xg = pn_reshape(norm_upcast(x), shape, 4);
    pn_array *mean = pn_mean(xg, axes, 2, true);
    pn_array *var = pn_var(xg, axes, 2, true, 0);
    pn_array *y = pn_multiply(pn_subtract(xg, mean), pn_rsqrt(pn_add(var, W(eps))));
    y = pn_reshape(norm_downcast(y, t), x->shape, x->ndim);
    return pnC_scope_return(norm_affine(y, weight, bias));
}

/* Instance normalization as mlx.nn.InstanceNorm: x (N, ..., C) normalized per sample and
 * channel over the spatial axes 1..ndim-2 (biased variance); for 2-d x there are no spatial
 * axes, so x̂ is 0 (as MLX). Returns weight * x̂ + bias. */
pn_array *pn_nn_instance_norm(pn_array *x, pn_array *weight, pn_array *bias, double eps)
{
    if (!norm_check("instance_norm", x, 2, weight, bias)) return NULL;
    pn_scope_push();
    pn_dtype t = x->dtype;
    pn_array *xf = norm_upcast(x);
    pn_array *y;
    if (x->ndim == 2) {
        /* mean over no axes is x itself and its variance 0. */
        pn_array *d = pn_subtract(xf, xf);
        y = pn_multiply(d, pn_rsqrt(pn_add(pn_multiply(d, W(0.0)), W(eps))));
    } else {
        int axes[PNC_MAX_NDIM];
        int naxes = x->ndim - 2;
        for (int i = 0; i < naxes; i++) axes[i] = i + 1;
        pn_array *mean = pn_mean(xf, axes, naxes, true);
        pn_array *var = pn_var(xf, axes, naxes, true, 0);
        y = pn_multiply(pn_subtract(xf, mean), pn_rsqrt(pn_add(var, W(eps))));
    }
    y = norm_downcast(y, t);
    return pnC_scope_return(norm_affine(y, weight, bias));
}
