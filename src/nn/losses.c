/* losses.c — mlx.nn.losses as compositions of ops, each with MLX's formula and a reduction
 * (none, mean, sum). */
#include "core/core.h"

#include <math.h>

#define W(x) pn_weak_float(x)

static pn_array *reduce(pn_array *loss, pn_loss_reduction r)
{
    switch (r) {
    case PN_REDUCTION_MEAN: return pn_mean(loss, NULL, 0, false);
    case PN_REDUCTION_SUM: return pn_sum(loss, NULL, 0, false);
    default: return loss;
    }
}

static bool reduction_ok(const char *op, pn_loss_reduction r)
{
    if (r == PN_REDUCTION_NONE || r == PN_REDUCTION_MEAN || r == PN_REDUCTION_SUM) return true;
    pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid reduction %d.", op, (int)r);
    return false;
}

static bool same_shape(const char *op, const pn_array *a, const pn_array *b, const char *what)
{
    bool ok = a->ndim == b->ndim;
    for (int i = 0; ok && i < a->ndim; i++) ok = a->shape[i] == b->shape[i];
    if (!ok) {
        char sa[256], sb[256];
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s shape %s does not match targets shape %s.", op, what,
                 pnC_shape_str(a->shape, a->ndim, sa, sizeof sa),
                 pnC_shape_str(b->shape, b->ndim, sb, sizeof sb));
    }
    return ok;
}

pn_array *pn_nn_cross_entropy(pn_array *logits, pn_array *targets, int axis,
                              double label_smoothing, pn_loss_reduction reduction)
{
    if (!pnC_inputs_ok("cross_entropy", 2, (pn_array *[]){logits, targets})) return NULL;
    if (!reduction_ok("cross_entropy", reduction)) return NULL;
    if (!(label_smoothing >= 0 && label_smoothing < 1))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cross_entropy] Label smoothing must be in [0, 1), got %g.",
                        label_smoothing);
    int ax = pnC_axis("cross_entropy", axis, logits->ndim);
    if (ax < 0) return NULL;
    bool probs = targets->ndim == logits->ndim;
    if (probs && !same_shape("cross_entropy", logits, targets, "Logits")) return NULL;
    if (!probs) {
        bool ok = targets->ndim == logits->ndim - 1;
        for (int i = 0, j = 0; ok && i < logits->ndim; i++)
            if (i != ax) ok = logits->shape[i] == targets->shape[j++];
        if (!ok)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[cross_entropy] Targets must be class indices with the logits' shape "
                            "without the class axis, or probabilities of the logits' shape.");
        if (!pnC_is_integer(targets->dtype))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cross_entropy] Class indices must be integers, got %s.",
                            pn_dtype_name(targets->dtype));
    }
    pn_scope_push();
    pn_array *lse = pn_logsumexp(logits, &ax, 1, false);
    pn_array *score;
    if (probs) {
        score = pn_sum(pn_multiply(logits, targets), &ax, 1, false);
    } else {
        pn_array *idx = pn_expand_dims(targets, &ax, 1);
        score = pn_squeeze(pn_take_along_axis(logits, idx, ax), &ax, 1);
    }
    pn_array *loss;
    if (label_smoothing > 0) {
        pn_array *mean_logits = pn_mean(logits, &ax, 1, false);
        loss = pn_subtract(lse, pn_multiply(W(1 - label_smoothing), score));
        loss = pn_subtract(loss, pn_multiply(W(label_smoothing), mean_logits));
    } else {
        loss = pn_subtract(lse, score);
    }
    return pnC_scope_return(reduce(loss, reduction));
}

pn_array *pn_nn_binary_cross_entropy(pn_array *inputs, pn_array *targets, bool with_logits,
                                     pn_loss_reduction reduction)
{
    if (!pnC_inputs_ok("binary_cross_entropy", 2, (pn_array *[]){inputs, targets})) return NULL;
    if (!reduction_ok("binary_cross_entropy", reduction)) return NULL;
    if (!same_shape("binary_cross_entropy", inputs, targets, "Inputs")) return NULL;
    pn_scope_push();
    pn_array *loss;
    if (with_logits) {
        loss = pn_subtract(pn_logaddexp(W(0), inputs), pn_multiply(inputs, targets));
    } else {
        pn_array *lo = pn_clip(pn_log(inputs), W(-100), NULL);
        pn_array *l1 = pn_clip(pn_log(pn_subtract(W(1), inputs)), W(-100), NULL);
        loss = pn_negative(pn_add(pn_multiply(targets, lo), pn_multiply(pn_subtract(W(1), targets), l1)));
    }
    return pnC_scope_return(reduce(loss, reduction));
}

/* Elementwise losses of (predictions - targets): one helper, one formula each. */
typedef enum { LOSS_MSE, LOSS_L1, LOSS_SMOOTH_L1, LOSS_HUBER } pointwise_kind;

static pn_array *pointwise(const char *op, pointwise_kind kind, pn_array *p, pn_array *t,
                           double param, pn_loss_reduction reduction)
{
    if (!pnC_inputs_ok(op, 2, (pn_array *[]){p, t})) return NULL;
    if (!reduction_ok(op, reduction)) return NULL;
    if (!same_shape(op, p, t, "Predictions")) return NULL;
    pn_scope_push();
    pn_array *d = pn_subtract(p, t), *ad = pn_abs(d), *loss = NULL;
    switch (kind) {
    case LOSS_MSE: loss = pn_square(d); break;
    case LOSS_L1: loss = ad; break;
    case LOSS_SMOOTH_L1:
        loss = pn_where(pn_less(ad, W(param)), pn_divide(pn_multiply(W(0.5), pn_square(ad)), W(param)),
                        pn_subtract(ad, W(0.5 * param)));
        break;
    case LOSS_HUBER: {
        pn_array *q = pn_minimum(ad, W(param));
        loss = pn_add(pn_multiply(W(0.5), pn_square(q)), pn_multiply(W(param), pn_subtract(ad, q)));
        break;
    }
    }
    return pnC_scope_return(reduce(loss, reduction));
}

pn_array *pn_nn_mse_loss(pn_array *p, pn_array *t, pn_loss_reduction r) { return pointwise("mse_loss", LOSS_MSE, p, t, 0, r); }
pn_array *pn_nn_l1_loss(pn_array *p, pn_array *t, pn_loss_reduction r) { return pointwise("l1_loss", LOSS_L1, p, t, 0, r); }
pn_array *pn_nn_smooth_l1_loss(pn_array *p, pn_array *t, double beta, pn_loss_reduction r)
{
    return pointwise("smooth_l1_loss", LOSS_SMOOTH_L1, p, t, beta, r);
}
pn_array *pn_nn_huber_loss(pn_array *p, pn_array *t, double delta, pn_loss_reduction r)
{
    return pointwise("huber_loss", LOSS_HUBER, p, t, delta, r);
}

pn_array *pn_nn_nll_loss(pn_array *inputs, pn_array *targets, int axis, pn_loss_reduction r)
{
    if (!pnC_inputs_ok("nll_loss", 2, (pn_array *[]){inputs, targets})) return NULL;
    if (!reduction_ok("nll_loss", r)) return NULL;
    int ax = pnC_axis("nll_loss", axis, inputs->ndim);
    if (ax < 0) return NULL;
    pn_scope_push();
    pn_array *idx = pn_expand_dims(targets, &ax, 1);
    pn_array *loss = pn_negative(pn_squeeze(pn_take_along_axis(inputs, idx, ax), &ax, 1));
    return pnC_scope_return(reduce(loss, r));
}

pn_array *pn_nn_kl_div_loss(pn_array *inputs, pn_array *targets, int axis, pn_loss_reduction r)
{
    if (!pnC_inputs_ok("kl_div_loss", 2, (pn_array *[]){inputs, targets})) return NULL;
    if (!reduction_ok("kl_div_loss", r)) return NULL;
    int ax = pnC_axis("kl_div_loss", axis, inputs->ndim);
    if (ax < 0) return NULL;
    pn_scope_push();
    pn_array *loss = pn_sum(pn_multiply(pn_exp(targets), pn_subtract(targets, inputs)), &ax, 1, false);
    return pnC_scope_return(reduce(loss, r));
}
