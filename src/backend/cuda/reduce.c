/* reduce.c — GPU eval functions of Reduce, ArgReduce, LogSumExp and Softmax: each splits its
 * input's dims into kept and reduced ones (merged where contiguous, straight from the input's
 * strides: no copies) and hands the plan to the kernels of reduce.cu. */
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gpu.h"
#include "backend/cuda/reduce.h"

_Static_assert((int)PNG_RED_SUM == (int)PNK_SUM && (int)PNG_RED_PROD == (int)PNK_PROD &&
                   (int)PNG_RED_MAX == (int)PNK_MAX &&
                   (int)PNG_RED_MIN == (int)PNK_MIN && (int)PNG_RED_AND == (int)PNK_AND &&
                   (int)PNG_RED_OR == (int)PNK_OR &&
                   (int)PNG_RED_LOGADDEXP == (int)PNK_LOGADDEXP,
               "reduce op codes of the GPU and the CPU differ");

/* See reduce.h. */
int pnG_merge_dims(pnG_dims *D, int n, const int64_t *shape, const int64_t *s0,
                      const int64_t *s1)
{
    D->ndim = 0;
    for (int i = 0; i < n; i++) {
        if (shape[i] == 1) continue;
        int64_t a = s0[i], b = s1 ? s1[i] : 0;
        int k = D->ndim;
        if (k > 0 && D->stride[0][k - 1] == a * shape[i] && D->stride[1][k - 1] == b * shape[i]) {
            D->shape[k - 1] *= shape[i];
            D->stride[0][k - 1] = a;
            D->stride[1][k - 1] = b;
            continue;
        }
        if (k == PNG_MAX_NDIM) return PNG_UNSUPPORTED;
        D->shape[k] = shape[i];
        D->stride[0][k] = a;
        D->stride[1][k] = b;
        D->ndim = k + 1;
    }
    return 0;
}

/* The plan of reducing x over the axes flagged in red: kept dims in order; reduced dims in
 * order (keep_order, for arg reductions whose index is row-major) or by decreasing stride
 * (better merging and access). Returns 0 or PNG_UNSUPPORTED. */
static int plan_axes(const pn_array *x, const bool *red, bool keep_order, pnG_reduce_plan *P)
{
    int64_t ks[PNC_MAX_NDIM], kst[PNC_MAX_NDIM], rs[PNC_MAX_NDIM], rst[PNC_MAX_NDIM];
    int nk = 0, nr = 0;
    P->outer = 1;
    P->n = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (red[i]) {
            rs[nr] = x->shape[i];
            rst[nr++] = x->strides[i];
            P->n *= x->shape[i];
        } else {
            ks[nk] = x->shape[i];
            kst[nk++] = x->strides[i];
            P->outer *= x->shape[i];
        }
    }
    if (!keep_order) /* insertion sort by decreasing |stride| (stable) */
        for (int j = 1; j < nr; j++)
            for (int q = j; q > 0; q--) {
                int64_t a = rst[q - 1] < 0 ? -rst[q - 1] : rst[q - 1];
                int64_t b = rst[q] < 0 ? -rst[q] : rst[q];
                if (a >= b) break;
                int64_t t = rst[q], u = rs[q];
                rst[q] = rst[q - 1];
                rs[q] = rs[q - 1];
                rst[q - 1] = t;
                rs[q - 1] = u;
            }
    if (pnG_merge_dims(&P->kept, nk, ks, kst, NULL) || pnG_merge_dims(&P->red, nr, rs, rst, NULL))
        return PNG_UNSUPPORTED;
    return 0;
}

/* Runs P over x into o (allocated here). Empty inputs reach the kernels with n == 0. */
static int run_plan(const pnC_node *node, pnG_reduce_plan *P, pn_array *x, pn_array *o)
{
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    int rc = pnG_reduce(P, x->size ? pnC_data(x) : NULL, pnC_data(o), node->stream.index);
    return rc == PNG_UNSUPPORTED ? pn_set_error(PN_ERR_BACKEND, "[reduce] No GPU kernel.") : rc;
}

/* See eval.h. */
int pnG_reduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *o = out[0];
    pn_dtype want = p->op == PNK_SUM || p->op == PNK_PROD ? pnK_sum_dtype(x->dtype)
                    : p->op == PNK_AND || p->op == PNK_OR ? PN_BOOL
                                                          : x->dtype;
    if (p->op < PNK_SUM || p->op > PNK_OR || o->dtype != want) return PNG_UNSUPPORTED;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    pnG_reduce_plan P = {.kind = p->op, .dtype = x->dtype,
                         .scale = p->op == PNK_SUM ? p->scale : 1.0};
    if (plan_axes(x, red, false, &P)) return PNG_UNSUPPORTED;
    return run_plan(node, &P, x, o);
}

/* See eval.h. */
int pnG_argreduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_argreduce_params *p = PNC_PARAMS(node, pnK_argreduce_params);
    pn_array *x = in[0], *o = out[0];
    if (o->dtype != PN_UINT32) return PNG_UNSUPPORTED;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < x->ndim; i++) red[i] = p->axis == PN_ALL_AXES || p->axis == i;
    pnG_reduce_plan P = {.kind = p->op == PNK_MIN ? PNG_RED_ARGMIN : PNG_RED_ARGMAX,
                         .dtype = x->dtype, .scale = 1.0};
    if (plan_axes(x, red, true, &P) || P.n >= (int64_t)UINT32_MAX) return PNG_UNSUPPORTED;
    if (x->size == 0) return pnC_alloc_output(o); /* the CPU leaves such outputs unset too */
    return run_plan(node, &P, x, o);
}

/* See eval.h. */
int pnG_logsumexp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *o = out[0];
    if (!pnC_is_float(x->dtype) || o->dtype != x->dtype) return PNG_UNSUPPORTED;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    pnG_reduce_plan P = {.kind = PNG_RED_LSE, .dtype = x->dtype, .scale = 1.0};
    if (plan_axes(x, red, false, &P)) return PNG_UNSUPPORTED;
    return run_plan(node, &P, x, o);
}

/* See eval.h. */
int pnG_softmax_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_softmax_params *p = PNC_PARAMS(node, pnK_softmax_params);
    pn_array *x = in[0], *o = out[0];
    if (!pnC_is_float(x->dtype) || o->dtype != x->dtype || p->naxes > x->ndim)
        return PNG_UNSUPPORTED;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = x->ndim - p->naxes; i < x->ndim; i++) red[i] = true;
    pnG_reduce_plan P;
    if (plan_axes(x, red, true, &P)) return PNG_UNSUPPORTED; /* row-major within a row */
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    int rc = pnG_softmax(x->dtype, &P.kept, &P.red, P.outer, P.n, pnC_data(x), pnC_data(o),
                         node->stream.index);
    return rc == PNG_UNSUPPORTED ? pn_set_error(PN_ERR_BACKEND, "[softmax] No GPU kernel.") : rc;
}

/* See eval.h. Kept dims walk x, the output and the (possibly broadcast) result and
 * cotangent by their own strides; reduced dims x and the output. */
int pnG_extreme_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *m = in[1], *c = in[2], *g = out[0];
    if (!pnC_is_float(x->dtype) || m->dtype != x->dtype || c->dtype != x->dtype ||
        m->ndim != c->ndim)
        return PNG_UNSUPPORTED;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    int64_t gs[PNC_MAX_NDIM], rs[PNC_MAX_NDIM], rgs[PNC_MAX_NDIM], rxs[PNC_MAX_NDIM];
    pnC_row_strides(x->shape, x->ndim, gs);
    pnG_layout K = {.nop = 4, .size = 1};
    int nr = 0;
    for (int i = 0, j = 0; i < x->ndim; i++) { /* j: the axis of m and c */
        if (red[i]) {
            rs[nr] = x->shape[i], rxs[nr] = x->strides[i], rgs[nr++] = gs[i];
            j += p->keepdims;
            continue;
        }
        if (x->shape[i] != 1) {
            if (K.ndim == PNG_MAX_NDIM) return PNG_UNSUPPORTED;
            int d = K.ndim++;
            K.shape[d] = x->shape[i];
            K.strides[0][d] = x->strides[i], K.strides[1][d] = gs[i];
            K.strides[2][d] = m->strides[j], K.strides[3][d] = c->strides[j];
            K.size *= x->shape[i];
        }
        j++;
    }
    pnG_dims R;
    if (pnG_merge_dims(&R, nr, rs, rxs, rgs)) return PNG_UNSUPPORTED;
    if (pnC_alloc_output(g)) return -1;
    if (g->size == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < nr; i++) n *= rs[i];
    int rc = pnG_extreme_vjp(x->dtype, &K, &R, n, pnC_data(x), pnC_data(m), pnC_data(c), pnC_data(g),
                             node->stream.index);
    return rc == PNG_UNSUPPORTED ? pn_set_error(PN_ERR_BACKEND, "[ExtremeVjp] No GPU kernel.") : rc;
}
