/* attention.c — GPU evals of ScaledDotProductAttention and its Vjp (src/ops/attention.c): the
 * C glue around the launchers of attention.cu. q, k, v, out and dout are read through their
 * (b, h, row) strides; one whose last dim is not dense is copied dense on the device first. */
#include "backend/attention_params.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

/* x itself when its last dim is dense, else a dense device copy (*tmp, pnC_decref). Writes the
 * data pointer and (b, h, row) strides. 0 or -1. */
static int operand(pn_array *x, pn_array **tmp, const void **data, int64_t *s, int stream)
{
    *tmp = NULL;
    if (x->size && x->strides[3] != 1 && x->shape[3] > 1) {
        if (!(*tmp = pnG_dense_copy(x, stream))) return -1;
        x = *tmp;
    }
    *data = x->size ? pnC_data(x) : NULL;
    for (int d = 0; d < 3; d++) s[d] = x->strides[d];
    return 0;
}

/* x's data when x is row-contiguous, else a dense device copy's (*tmp); NULL when empty. 0 or
 * -1. */
static int dense_rows(pn_array *x, pn_array **tmp, const void **data, int stream)
{
    *tmp = NULL;
    if (x->size && !pnC_row_contiguous(x) && !(*tmp = pnG_dense_copy(x, stream))) return -1;
    *data = x->size ? pnC_data(*tmp ? *tmp : x) : NULL;
    return 0;
}

/* The kernels' view of a node: q, k, v[, mask] and, with o_at >= 0, out, lse, dout[, dlse] at
 * in[o_at..]. tmp collects dense copies (release_args). 0 or -1. */
static int make_args(const pnC_node *node, pn_array *const *in, int o_at, pnG_sdpa_args *a, pn_array **tmp)
{
    const pnK_sdpa_params *p = PNC_PARAMS(node, pnK_sdpa_params);
    const int stream = node->stream.index;
    *a = (pnG_sdpa_args){.B = in[0]->shape[0], .Hq = in[0]->shape[1], .Lq = in[0]->shape[2],
                         .D = in[0]->shape[3], .Hkv = in[1]->shape[1], .Lk = in[1]->shape[2],
                         .Dv = in[2]->shape[3], .scale = p->scale, .fill = p->fill,
                         .causal = p->causal, .mask = p->mask, .dtype = in[0]->dtype};
    int rc = operand(in[0], &tmp[0], &a->q, a->qs, stream) || operand(in[1], &tmp[1], &a->k, a->ks, stream) ||
             operand(in[2], &tmp[2], &a->v, a->vs, stream);
    if (!rc && o_at >= 0) {
        rc = operand(in[o_at], &tmp[3], &a->o, a->os, stream) ||
             operand(in[o_at + 2], &tmp[4], &a->dout, a->dos, stream);
        if (!rc) rc = dense_rows(in[o_at + 1], &tmp[5], &a->lse, stream);
        if (!rc && node->nin > o_at + 3) rc = dense_rows(in[o_at + 3], &tmp[6], &a->dlse, stream);
    }
    if (!rc && p->mask != PNK_SDPA_NO_MASK) {
        a->mask_data = in[3]->size ? pnC_data(in[3]) : NULL;
        for (int d = 0; d < 4; d++) a->ms[d] = in[3]->strides[d];
    }
    return rc ? -1 : 0;
}

static void release_args(pn_array **tmp)
{
    for (int i = 0; i < 7; i++)
        if (tmp[i]) pnC_decref(tmp[i]);
}

/* See eval.h. */
int pnG_sdpa_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *tmp[7] = {NULL};
    pnG_sdpa_args a;
    if (pnG_sdpa_forward(&(pnG_sdpa_args){.dtype = in[0]->dtype, .D = in[0]->shape[3], .Dv = in[2]->shape[3]},
                         NULL, NULL, -1) == PNG_UNSUPPORTED)
        return PNG_UNSUPPORTED;
    if (pnC_alloc_output(out[0]) || pnC_alloc_output(out[1])) return -1;
    if (out[0]->size == 0 && out[1]->size == 0) return 0;
    int rc = make_args(node, in, -1, &a, tmp);
    if (rc == 0) rc = pnG_sdpa_forward(&a, pnC_data(out[0]), pnC_data(out[1]), node->stream.index);
    release_args(tmp);
    return rc;
}

/* See eval.h. */
int pnG_sdpa_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_sdpa_params *p = PNC_PARAMS(node, pnK_sdpa_params);
    int o_at = p->mask == PNK_SDPA_NO_MASK ? 3 : 4;
    pn_array *tmp[7] = {NULL};
    pnG_sdpa_args a;
    if (pnG_sdpa_backward(&(pnG_sdpa_args){.dtype = in[0]->dtype, .D = in[0]->shape[3], .Dv = in[2]->shape[3]},
                          NULL, NULL, NULL, NULL, -1) == PNG_UNSUPPORTED)
        return PNG_UNSUPPORTED;
    for (int i = 0; i < 3; i++)
        if (pnC_alloc_output(out[i])) return -1;
    if (out[0]->size + out[1]->size + out[2]->size == 0) return 0;
    int rc = make_args(node, in, o_at, &a, tmp);
    const int64_t *ls = in[o_at + 1]->shape;
    pn_array *dsc = rc ? NULL : pnC_new_temp(in[o_at + 1]->dtype, (int64_t[]){3, ls[0], ls[1], ls[2]}, 4);
    if (!dsc) rc = -1;
    if (rc == 0)
        rc = pnG_sdpa_backward(&a, pnC_data(out[0]), pnC_data(out[1]), pnC_data(out[2]), pnC_data(dsc),
                               node->stream.index);
    if (dsc) pnC_decref(dsc);
    release_args(tmp);
    return rc;
}
