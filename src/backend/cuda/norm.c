/* norm.c — GPU evals of LayerNorm / RMSNorm and their backward nodes (src/ops/norm.c): the C
 * glue around the launchers of norm.cu. Strided inputs are copied dense on the device first. */
#include "backend/cuda/norm.h"
#include "backend/cpu/norm.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

static void *data_or_null(pn_array *a) { return a && a->size ? pnC_data(a) : NULL; }

/* See eval.h. */
int pnG_norm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    pn_array *x = in[0], *y = out[0];
    if (!pnC_is_float(x->dtype) || y->dtype != x->dtype) return PNG_UNSUPPORTED;
    if (pnC_alloc_output(y)) return -1;
    if (y->size == 0) return 0;
    pn_array *dense[3];
    if (pnG_make_dense(node->nin, in, dense, node->stream.index)) return -1;
    int64_t n = x->shape[x->ndim - 1];
    int rc = pnG_norm(x->dtype, p->kind == PNK_NORM_LAYER, p->eps, x->size / n, n, pnC_data(dense[0]),
                      p->weight ? pnC_data(dense[1]) : NULL,
                      p->bias ? pnC_data(dense[1 + p->weight]) : NULL, pnC_data(y),
                      node->stream.index);
    pnG_release_dense(node->nin, in, dense);
    return rc;
}

/* See eval.h. */
int pnG_norm_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    pn_array *x = in[0];
    if (!pnC_is_float(x->dtype)) return PNG_UNSUPPORTED;
    for (int j = 0; j < node->nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    int64_t n = x->shape[x->ndim - 1];
    if (n == 0) return 0;
    pn_array *dense[3];
    if (pnG_make_dense(node->nin, in, dense, node->stream.index)) return -1;
    int rc = pnG_norm_vjp(x->dtype, p->kind == PNK_NORM_LAYER, p->eps, x->size / n, n, data_or_null(dense[0]),
                          p->weight ? data_or_null(dense[1]) : NULL,
                          data_or_null(dense[1 + p->weight]), data_or_null(out[0]),
                          p->weight ? data_or_null(out[1]) : NULL,
                          p->bias ? data_or_null(out[1 + p->weight]) : NULL, node->stream.index);
    pnG_release_dense(node->nin, in, dense);
    return rc;
}
