/* norm.h — CPU kernels of the fused normalizations over the last axis (src/ops/norm.c):
 * LayerNorm / RMSNorm and their backward LayerNormVjp / RMSNormVjp (norm.c). */
#ifndef PONTE_BACKEND_CPU_NORM_H
#define PONTE_BACKEND_CPU_NORM_H

#include "core/core.h"

enum { PNK_NORM_LAYER, PNK_NORM_RMS };

/* Params of the four primitives. kind: PNK_NORM_LAYER ((x - mean) * rstd) or PNK_NORM_RMS
 * (x * rstd), rstd = 1 / sqrt(var + eps) (RMS: mean of squares); weight / bias: whether the
 * node has those inputs (bias only with PNK_NORM_LAYER). */
typedef struct pnK_norm_params {
    int kind;
    bool weight, bias;
    double eps;
} pnK_norm_params;

/* LayerNorm / RMSNorm: in = (x, [weight], [bias]) of one float dtype (weight and bias of
 * shape (n,), n = x's last extent), out = y of x's shape: each row of n normalized, times
 * weight, plus bias. f16/bf16 accumulate in float32, f64 in double. Strided inputs are copied
 * row-major first. Returns 0, or -1 with an error. */
int pnK_norm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* LayerNormVjp / RMSNormVjp: in = (x, [weight], g), out = (dx, [dweight], [dbias]) in one pass
 * over the rows (mean and rstd recomputed per row). dweight / dbias sum over all rows: per
 * thread partials added in thread order, so a given thread count gives the same bits every
 * run. Returns 0, or -1 with an error. */
int pnK_norm_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_NORM_H */
