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
    /* shifted by the rows' max (no gradient through it), as MLX: the same loss when the target
     * probabilities sum to 1, and MLX's value when they do not */
    logits = pn_subtract(logits, pn_stop_gradient(pn_max(logits, &ax, 1, true)));
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

/* ── Losses of mlx.nn without a C counterpart before (issue 3), each MLX's formula. ── */

/* All arrays in arrs have the same shape (for the losses where MLX checks it). */
static bool all_same_shape(const char *op, int n, pn_array **arrs, const char *const *names)
{
    for (int k = 1; k < n; k++) {
        bool ok = arrs[k]->ndim == arrs[0]->ndim;
        for (int i = 0; ok && i < arrs[0]->ndim; i++) ok = arrs[k]->shape[i] == arrs[0]->shape[i];
        if (!ok) {
            char sa[256], sb[256];
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s shape %s does not match %s shape %s.", op, names[0],
                     pnC_shape_str(arrs[0]->shape, arrs[0]->ndim, sa, sizeof sa), names[k],
                     pnC_shape_str(arrs[k]->shape, arrs[k]->ndim, sb, sizeof sb));
            return false;
        }
    }
    return true;
}

pn_array *pn_nn_log_cosh_loss(pn_array *inputs, pn_array *targets, pn_loss_reduction r)
{
    if (!pnC_inputs_ok("log_cosh_loss", 2, (pn_array *[]){inputs, targets})) return NULL;
    if (!reduction_ok("log_cosh_loss", r)) return NULL;
    pn_scope_push();
    pn_array *d = pn_subtract(inputs, targets);
    pn_array *loss = pn_subtract(pn_logaddexp(d, pn_negative(d)), W(M_LN2));
    return pnC_scope_return(reduce(loss, r));
}

pn_array *pn_nn_hinge_loss(pn_array *inputs, pn_array *targets, pn_loss_reduction r)
{
    if (!pnC_inputs_ok("hinge_loss", 2, (pn_array *[]){inputs, targets})) return NULL;
    if (!reduction_ok("hinge_loss", r)) return NULL;
    pn_scope_push();
    pn_array *loss = pn_maximum(pn_subtract(W(1), pn_multiply(inputs, targets)), W(0));
    return pnC_scope_return(reduce(loss, r));
}

pn_array *pn_nn_cosine_similarity_loss(pn_array *x1, pn_array *x2, int axis, double eps,
                                       pn_loss_reduction r)
{
    if (!pnC_inputs_ok("cosine_similarity_loss", 2, (pn_array *[]){x1, x2})) return NULL;
    if (!reduction_ok("cosine_similarity_loss", r)) return NULL;
    int nd = x1->ndim > x2->ndim ? x1->ndim : x2->ndim;
    int ax = pnC_axis("cosine_similarity_loss", axis, nd);
    if (ax < 0) return NULL;
    pn_scope_push();
    pn_array *n1 = pn_sqrt(pn_sum(pn_square(x1), &ax, 1, false));
    pn_array *n2 = pn_sqrt(pn_sum(pn_square(x2), &ax, 1, false));
    pn_array *dot = pn_sum(pn_multiply(x1, x2), &ax, 1, false);
    pn_array *loss = pn_divide(dot, pn_maximum(pn_multiply(n1, n2), W(eps)));
    return pnC_scope_return(reduce(loss, r));
}

pn_array *pn_nn_margin_ranking_loss(pn_array *inputs1, pn_array *inputs2, pn_array *targets,
                                    double margin, pn_loss_reduction r)
{
    pn_array *a[3] = {inputs1, inputs2, targets};
    if (!pnC_inputs_ok("margin_ranking_loss", 3, a)) return NULL;
    if (!reduction_ok("margin_ranking_loss", r)) return NULL;
    if (!all_same_shape("margin_ranking_loss", 3, a, (const char *const[]){"Inputs1", "inputs2", "targets"}))
        return NULL;
    pn_scope_push();
    pn_array *loss = pn_add(pn_negative(pn_multiply(targets, pn_subtract(inputs1, inputs2))), W(margin));
    return pnC_scope_return(reduce(pn_maximum(loss, W(0)), r));
}

pn_array *pn_nn_gaussian_nll_loss(pn_array *inputs, pn_array *targets, pn_array *vars, bool full,
                                  double eps, pn_loss_reduction r)
{
    pn_array *a[3] = {inputs, targets, vars};
    if (!pnC_inputs_ok("gaussian_nll_loss", 3, a)) return NULL;
    if (!reduction_ok("gaussian_nll_loss", r)) return NULL;
    if (!all_same_shape("gaussian_nll_loss", 3, a, (const char *const[]){"Inputs", "targets", "vars"}))
        return NULL;
    pn_scope_push();
    pn_array *v = pn_maximum(vars, W(eps));
    pn_array *loss = pn_add(pn_log(v), pn_divide(pn_square(pn_subtract(targets, inputs)), v));
    loss = pn_multiply(W(0.5), loss);
    if (full) loss = pn_add(loss, W(0.5 * log(2 * M_PI)));
    return pnC_scope_return(reduce(loss, r));
}

pn_array *pn_nn_triplet_loss(pn_array *anchors, pn_array *positives, pn_array *negatives, int axis,
                             double p, double margin, double eps, pn_loss_reduction r)
{
    pn_array *a[3] = {anchors, positives, negatives};
    if (!pnC_inputs_ok("triplet_loss", 3, a)) return NULL;
    if (!reduction_ok("triplet_loss", r)) return NULL;
    int nd = anchors->ndim;
    for (int i = 1; i < 3; i++) nd = a[i]->ndim > nd ? a[i]->ndim : nd;
    int ax = pnC_axis("triplet_loss", axis, nd);
    if (ax < 0) return NULL;
    pn_scope_push();
    pn_array *dist[2];
    for (int i = 0; i < 2; i++) {
        pn_array *s = pn_sum(pn_power(pn_subtract(anchors, a[i + 1]), W(p)), &ax, 1, false);
        dist[i] = pn_sqrt(pn_add(s, W(eps)));
    }
    pn_array *loss = pn_maximum(pn_add(pn_subtract(dist[0], dist[1]), W(margin)), W(0));
    return pnC_scope_return(reduce(loss, r));
}

/* ───────────────────────────── cross_entropy ───────────────────────────── */

/* See ponte.h. logsumexp(logits, -1) - logits[..., targets] in float32 (float64 for float64
 * logits, then cast), so half-precision logits accumulate in float32 as MLX's fused kernel. */
pn_array *pn_fast_cross_entropy(pn_array *logits, pn_array *targets)
{
    pn_array *ins[2] = {logits, targets};
    if (!pnC_inputs_ok("cross_entropy", 2, ins)) return NULL;
    pn_dtype lt = pn_array_dtype(logits), tt = pn_array_dtype(targets);
    int nd = pn_ndim(logits);
    char b1[256], b2[256];
    if (nd < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[cross_entropy] logits must have at least 1 dimension but got input with 0 dimensions.");
    if (!pnC_is_float(lt))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cross_entropy] Received unsupported logits type %s.",
                        pn_dtype_name(lt));
    if (!pnC_is_integer(tt))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[cross_entropy] targets must be integer class indices but got %s.", pn_dtype_name(tt));
    bool same = pn_ndim(targets) == nd - 1;
    for (int k = 0; same && k < nd - 1; k++) same = pn_shape(targets)[k] == pn_shape(logits)[k];
    if (!same)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[cross_entropy] targets shape %s does not match logits shape %s with the last axis removed.",
                        pnC_shape_str(targets->shape, targets->ndim, b1, sizeof b1), pnC_shape_str(logits->shape, logits->ndim, b2, sizeof b2));
    if (pn_size(logits) == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cross_entropy] Received empty logits of shape %s.",
                        pnC_shape_str(logits->shape, logits->ndim, b2, sizeof b2));
    pn_scope_push();
    pn_dtype ct = lt == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *x = lt == ct ? logits : pn_astype(logits, ct);
    pn_array *lse = pn_logsumexp(x, (int[]){-1}, 1, false);
    pn_array *picked = pn_squeeze(pn_take_along_axis(x, pn_expand_dims(targets, (int[]){-1}, 1), -1), (int[]){-1}, 1);
    pn_array *r = pn_subtract(lse, picked);
    return pnC_scope_return(ct == PN_FLOAT32 ? r : pn_astype(r, PN_FLOAT32));
}
