/* norm.c — mx.fast.layer_norm and mx.fast.rms_norm as fused primitives over the last axis:
 * LayerNorm / RMSNorm (x, optional weight and bias -> y) and their backward LayerNormVjp /
 * RMSNormVjp (x, weight, cotangent -> dx, dweight, dbias in one node). Their jvp and vmap
 * rules, and the derivatives of the backward node, go through the same math written with ops
 * (norm_math / norm_back_math), which runs wherever the fused kernels do not fit.
 * Kernels: backend/cpu/norm.c, backend/cuda/norm.c. */
#include "backend/cpu/norm.h"
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "core/core.h"
#include "transforms/transforms.h"

#include <string.h>

/* The four descriptors (defined after the rules below). */
extern const pnC_primitive layer_norm_prim, rms_norm_prim, layer_norm_vjp_prim, rms_norm_vjp_prim;

/* ───────────────────────────── the math with ops ───────────────────────────── */

/* The normalized rows of x (halves in float32): *xhat, and 1 / sqrt(var + eps) with its last
 * axis kept in *rstd. */
static void normalized(const pnK_norm_params *p, pn_array *x, pn_array **xhat, pn_array **rstd)
{
    int ax = -1;
    pn_array *xf = x && pnC_is_half(x->dtype) ? pn_astype(x, PN_FLOAT32) : x;
    pn_array *c = p->kind == PNK_NORM_LAYER ? pn_subtract(xf, pn_mean(xf, &ax, 1, true)) : xf;
    *rstd = pn_rsqrt(pn_add(pn_mean(pn_square(c), &ax, 1, true), pn_weak_float(p->eps)));
    *xhat = pn_multiply(c, *rstd);
}

/* y = xhat * w + b in x's dtype (w, b: NULL or broadcasting against x). */
static pn_array *norm_math(const pnK_norm_params *p, pn_array *x, pn_array *w, pn_array *b)
{
    pn_array *xhat, *rstd;
    normalized(p, x, &xhat, &rstd);
    pn_array *y = xhat;
    if (w) y = pn_multiply(y, w);
    if (b) y = pn_add(y, b);
    return y && y->dtype != x->dtype ? pn_astype(y, x->dtype) : y;
}

/* The backward: dx = rstd (g w - mean(g w) - xhat mean(g w xhat)) (no mean(g w) for RMS),
 * and with p->weight / p->bias the sums of g xhat / g down to pshape (the weight's shape, or a
 * batch of them) into d[1], d[2]; all in x's dtype. */
static void norm_back_math(const pnK_norm_params *p, pn_array *x, pn_array *w, pn_array *g,
                           const int64_t *pshape, int pnd, pn_array **d)
{
    int ax = -1;
    pn_array *xhat, *rstd;
    normalized(p, x, &xhat, &rstd);
    pn_array *gf = g && pnC_is_half(g->dtype) ? pn_astype(g, PN_FLOAT32) : g;
    pn_array *gw = w ? pn_multiply(gf, w) : gf;
    pn_array *t = pn_multiply(xhat, pn_mean(pn_multiply(gw, xhat), &ax, 1, true));
    if (p->kind == PNK_NORM_LAYER) t = pn_add(t, pn_mean(gw, &ax, 1, true));
    d[0] = pn_multiply(rstd, pn_subtract(gw, t));
    d[1] = p->weight ? pnC_sum_to_shape(pn_multiply(gf, xhat), pshape, pnd) : NULL;
    d[2] = p->bias ? pnC_sum_to_shape(gf, pshape, pnd) : NULL;
    for (int j = 0; j < 3; j++)
        if (d[j] && x && d[j]->dtype != x->dtype) d[j] = pn_astype(d[j], x->dtype);
}

/* The two as closures over a node's inputs, for the derivative engines. */
typedef struct math_ctx {
    const pnK_norm_params *p;
    const int64_t *pshape;
    int pnd;
} math_ctx;

static int norm_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const pnK_norm_params *p = ((math_ctx *)ctx)->p;
    out[0] = norm_math(p, in[0], p->weight ? in[1] : NULL, p->bias ? in[1 + p->weight] : NULL);
    *nout = out[0] ? 1 : 0;
    return out[0] ? 0 : -1;
}

/* Outputs as the backward node's: dx, then dweight and dbias where the node has them. */
static int back_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const math_ctx *m = ctx;
    pn_array *d[3];
    norm_back_math(m->p, in[0], m->p->weight ? in[1] : NULL, in[1 + m->p->weight], m->pshape,
                   m->pnd, d);
    *nout = 0;
    for (int j = 0; j < 3; j++) {
        if (j > 0 && !(j == 1 ? m->p->weight : m->p->bias)) continue;
        if (!d[j]) return -1;
        out[(*nout)++] = d[j];
    }
    return 0;
}

/* ───────────────────────────── node construction ───────────────────────────── */

static const pnC_primitive *fwd_prim(int kind)
{
    return kind == PNK_NORM_LAYER ? &layer_norm_prim : &rms_norm_prim;
}

/* The backward node over x, w (NULL unless p->weight) and g, all of one dtype: its outputs
 * into d[0..2] (dx, dweight, dbias; NULL where the node has none). 0 or -1. */
static int make_back(const pnK_norm_params *p, pn_array *x, pn_array *w, pn_array *g, pn_array **d)
{
    const pnC_primitive *prim = p->kind == PNK_NORM_LAYER ? &layer_norm_vjp_prim : &rms_norm_vjp_prim;
    pn_array *in[3] = {x, w, g}, *o[3] = {NULL};
    if (!w) in[1] = g;
    int64_t n = x->shape[x->ndim - 1];
    pn_dtype dt[3] = {x->dtype, x->dtype, x->dtype};
    const int64_t *shapes[3] = {x->shape, &n, &n};
    int nds[3] = {x->ndim, 1, 1}, nout = 1 + p->weight + p->bias;
    if (pnC_make_multi(prim, p, sizeof *p, 2 + p->weight, in, nout, dt, shapes, nds, o)) return -1;
    d[0] = o[0];
    d[1] = p->weight ? o[1] : NULL;
    d[2] = p->bias ? o[1 + p->weight] : NULL;
    return 0;
}

/* ───────────────────────────── rules of LayerNorm / RMSNorm ───────────────────────────── */

/* One backward node gives every gradient (input k: x, then weight and bias as present). */
static int norm_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *g = cot[0]->dtype == in[0]->dtype ? cot[0] : pn_astype(cot[0], in[0]->dtype), *d[3];
    if (!g || make_back(p, in[0], p->weight ? in[1] : NULL, g, d)) {
        pn_scope_pop();
        return -1;
    }
    pn_array *by_input[3] = {d[0], p->weight ? d[1] : d[2], d[2]};
    for (int i = 0; i < nargs; i++) grads[i] = by_input[argnums[i]];
    pn_scope_pop_keep(grads, nargs);
    return 0;
}

/* Forward mode through the math with ops. */
static int norm_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    math_ctx m = {PNC_PARAMS(node, pnK_norm_params), NULL, 0};
    pn_closure *f = pn_closure_new(norm_fn, &m, NULL);
    pn_array *o[PN_MAX_OUTPUTS];
    int n = 0, rc = f ? pnT_jvp(f, node->nin, in, tan, &n, o, out_tan) : -1;
    pn_closure_release(f);
    if (rc == 0) pn_release(o[0]);
    return rc;
}

/* in[k] with its mapped axis in front, size-1 axes added up to rank unmapped axes; an
 * unmapped one broadcast along a leading batch of B when bcast (else returned as is). */
static pn_array *batched(pn_array *a, int axis, int rank, int64_t B, bool bcast)
{
    if (axis >= 0) return pnC_batch_front(a, axis, rank);
    if (!bcast || !a) return a;
    int64_t shape[PNC_MAX_NDIM];
    shape[0] = B;
    memcpy(shape + 1, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    return pn_broadcast_to(pn_expand_dims(a, (int[]){0}, 1), shape, a->ndim + 1);
}

/* The normalized axis stays last with the mapped axis in front: a mapped x alone keeps the
 * fused node; a mapped weight or bias (B, 1.., n) goes through the math with ops. */
static int norm_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    int xr = in[0]->ndim - (in_axes[0] >= 0);
    int64_t B = -1;
    bool params_mapped = false;
    for (int k = 0; k < node->nin; k++)
        if (in_axes[k] >= 0) {
            B = in[k]->shape[in_axes[k]];
            params_mapped |= k > 0;
        }
    pn_scope_push();
    pn_array *v[3] = {NULL};
    for (int k = 0; k < node->nin; k++) v[k] = batched(in[k], in_axes[k], k ? xr : 0, B, false);
    pn_array *r;
    if (!v[0])
        r = NULL;
    else if (!params_mapped)
        r = pnC_make(node->prim, p, sizeof *p, node->nin, v, node->out_dtypes[0], v[0]->shape, v[0]->ndim);
    else
        r = norm_math(p, v[0], p->weight ? v[1] : NULL, p->bias ? v[1 + p->weight] : NULL);
    out_axes[0] = B >= 0 ? 0 : -1;
    if (r && B >= 0 && in_axes[0] < 0) { /* only a parameter was mapped: y is (B, x.shape) */
        int64_t shape[PNC_MAX_NDIM];
        shape[0] = B;
        memcpy(shape + 1, in[0]->shape, sizeof(int64_t) * (size_t)in[0]->ndim);
        r = pn_broadcast_to(r, shape, in[0]->ndim + 1);
    }
    return pnO_keep_result(r, out);
}

/* ───────────────────────────── rules of the backward nodes ───────────────────────────── */

static int back_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    int64_t n = in[0]->shape[in[0]->ndim - 1];
    math_ctx m = {p, &n, 1};
    pn_closure *f = pn_closure_new(back_fn, &m, NULL);
    pn_array *o[PN_MAX_OUTPUTS];
    int no = 0, rc = f ? pnT_vjp(f, node->nin, in, argnums, nargs, node->nout, cot, false, false,
                                 &no, o, grads)
                       : -1;
    pn_closure_release(f);
    for (int j = 0; rc == 0 && j < no; j++) pn_release(o[j]);
    return rc;
}

static int back_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    int64_t n = in[0]->shape[in[0]->ndim - 1];
    math_ctx m = {p, &n, 1};
    pn_closure *f = pn_closure_new(back_fn, &m, NULL);
    pn_array *o[PN_MAX_OUTPUTS];
    int no = 0, rc = f ? pnT_jvp(f, node->nin, in, tan, &no, o, out_tan) : -1;
    pn_closure_release(f);
    for (int j = 0; rc == 0 && j < no; j++) pn_release(o[j]);
    return rc;
}

/* The parameter gradients sum over each batch item's rows only, so a batched backward is the
 * math with ops over inputs all batched in front, summed down to (B, 1.., n). */
static int back_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    int xr = in[0]->ndim - (in_axes[0] >= 0);
    int64_t B = -1;
    for (int k = 0; k < node->nin; k++)
        if (in_axes[k] >= 0) B = in[k]->shape[in_axes[k]];
    for (int j = 0; j < node->nout; j++) out_axes[j] = B >= 0 ? 0 : -1;
    pn_scope_push();
    pn_array *v[3] = {NULL}, *d[3] = {NULL};
    for (int k = 0; k < node->nin; k++) {
        bool is_w = p->weight && k == 1;
        v[k] = batched(in[k], in_axes[k], is_w ? xr : 0, B, !is_w);
    }
    int64_t ps[PNC_MAX_NDIM], n = in[0]->shape[in[0]->ndim - 1];
    int pnd = B >= 0 ? xr + 1 : 1;
    for (int d0 = 0; d0 < pnd; d0++) ps[d0] = 1;
    ps[0] = B >= 0 ? B : n;
    ps[pnd - 1] = n;
    norm_back_math(p, v[0], p->weight ? v[1] : NULL, v[1 + p->weight], ps, pnd, d);
    int k = 0;
    out[k++] = d[0];
    for (int j = 1; j < 3; j++) {
        if (!(j == 1 ? p->weight : p->bias)) continue;
        out[k++] = d[j] && B >= 0 ? pn_reshape(d[j], (int64_t[]){B, n}, 2) : d[j];
    }
    for (int j = 0; j < k; j++)
        if (!out[j]) {
            pn_scope_pop();
            for (int i = 0; i < k; i++) out[i] = NULL;
            return -1;
        }
    pn_scope_pop_keep(out, k);
    return 0;
}

/* ───────────────────────────── descriptors ───────────────────────────── */

#define NORM_PRIM(NAME)                                                                        \
    {                                                                                          \
        .name = NAME, .eval = {[PN_CPU] = pnK_norm_eval, [PN_GPU] = PNG_EVAL(pnG_norm_eval)},  \
        .vjp = norm_vjp, .jvp = norm_jvp, .vmap = norm_vmap,                                   \
    }
#define NORM_BACK_PRIM(NAME)                                                                   \
    {                                                                                          \
        .name = NAME,                                                                          \
        .eval = {[PN_CPU] = pnK_norm_vjp_eval, [PN_GPU] = PNG_EVAL(pnG_norm_vjp_eval)},        \
        .vjp = back_vjp, .jvp = back_jvp, .vmap = back_vmap,                                   \
    }
const pnC_primitive layer_norm_prim = NORM_PRIM("LayerNorm");
const pnC_primitive rms_norm_prim = NORM_PRIM("RMSNorm");
const pnC_primitive layer_norm_vjp_prim = NORM_BACK_PRIM("LayerNormVjp");
const pnC_primitive rms_norm_vjp_prim = NORM_BACK_PRIM("RMSNormVjp");

/* ───────────────────────────── constructors ───────────────────────────── */

/* Checks as MLX's fast.layer_norm / rms_norm, the result dtype x's promoted with the weight's
 * (and the bias's when there is a weight), x and the parameters cast to it. */
static pn_array *norm(const char *name, int kind, pn_array *x, pn_array *weight, pn_array *bias,
                      double eps)
{
    if (!pnC_inputs_ok(name, 1, &x)) return NULL;
    if (x->ndim < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Input must have at least 1 dimension but got input with 0 dimensions.",
                        name);
    int64_t n = x->shape[x->ndim - 1];
    pn_array *prm[2] = {weight, bias};
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "bias" : "weight";
        if (!prm[k]) continue;
        if (prm[k]->ndim != 1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s must have 1 dimension but has %d dimensions.",
                            name, what, prm[k]->ndim);
        if (prm[k]->shape[0] != n)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] %s must have the same size as the last dimension of x but has %lld elements.",
                            name, what, (long long)prm[k]->shape[0]);
    }
    pn_dtype t = weight ? pnC_result_type(bias ? 3 : 2, (pn_array *[]){x, weight, bias}) : x->dtype;
    if (!pnC_is_float(t))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Received unsupported type %s.", name,
                        pn_dtype_name(t));
    pnK_norm_params p = {.kind = kind, .weight = weight != NULL, .bias = bias != NULL, .eps = eps};
    pn_scope_push();
    pn_array *in[3];
    int nin = 0;
    pn_array *all[3] = {x, weight, bias};
    for (int k = 0; k < 3; k++)
        if (all[k]) in[nin++] = all[k]->dtype == t ? all[k] : pn_astype(all[k], t);
    return pnC_scope_return(pnC_make(fwd_prim(kind), &p, sizeof p, nin, in, t, x->shape, x->ndim));
}

pn_array *pn_nn_layer_norm(pn_array *x, pn_array *weight, pn_array *bias, double eps)
{
    return norm("layer_norm", PNK_NORM_LAYER, x, weight, bias, eps);
}

pn_array *pn_nn_rms_norm(pn_array *x, pn_array *weight, double eps)
{
    return norm("rms_norm", PNK_NORM_RMS, x, weight, NULL, eps);
}
