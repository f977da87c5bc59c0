/* layers.c — mlx.nn's parameterized layers as functions of their inputs and weights:
 * linear, embedding, dropout (layer and RMS normalization: src/ops/norm.c). */
#include "core/core.h"

#include <math.h>

#define W(x) pn_weak_float(x)

pn_array *pn_nn_linear(pn_array *x, pn_array *weight, pn_array *bias)
{
    if (!pnC_inputs_ok("linear", 2, (pn_array *[]){x, weight})) return NULL;
    if (weight->ndim != 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linear] weight must be 2-d (out, in), got %d-d.",
                        weight->ndim);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != weight->shape[1])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[linear] Input's last dimension (%lld) must match weight's input size (%lld).",
                        x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL, (long long)weight->shape[1]);
    pn_scope_push();
    pn_array *wt = pn_transpose(weight, NULL, 0);
    pn_array *y = bias ? pn_addmm(bias, x, wt, 1.0, 1.0) : pn_matmul(x, wt);
    return pnC_scope_return(y);
}

pn_array *pn_nn_embedding(pn_array *indices, pn_array *weight)
{
    if (!pnC_inputs_ok("embedding", 2, (pn_array *[]){indices, weight})) return NULL;
    return pn_take(weight, indices, 0);
}

pn_array *pn_nn_dropout(pn_array *x, double p, pn_array *key)
{
    if (!pnC_inputs_ok("dropout", 1, &x)) return NULL;
    if (!(p >= 0 && p < 1))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dropout] The probability should be in [0, 1), got %g.", p);
    pn_scope_push();
    if (p == 0) return pnC_scope_return(x);
    pn_array *keep = pn_random_bernoulli(W(1 - p), x->shape, x->ndim, key);
    pn_array *y = pn_multiply(pn_multiply(x, pn_astype(keep, x->dtype)), W(1 / (1 - p)));
    return pnC_scope_return(y);
}
