/* reduce.c — reduction ops: sum, prod, max, min, all, any (one Reduce primitive with an op
 * code), argmax / argmin (ArgReduce), logsumexp and softmax (fused primitives), and the
 * composites mean, var, std, log_softmax. Validation, result dtypes and derivatives follow
 * mlx.core; kernels are in backend/cpu/reduce.c. */
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <math.h>

/* A new handle on a's values (core/array.c): reductions over no axis return it. */
pn_array *pnC_alias(pn_array *a);

static const char *const op_names[] = {"sum", "prod", "max", "min", "all", "any"};

/* ───────────────────────────── helpers ───────────────────────────── */

/* MLX's at_least_float: inexact dtypes stay, others promote with float32. */
static pn_dtype at_least_float(pn_dtype t)
{
    return pnC_is_inexact(t) ? t : pn_promote_types(t, PN_FLOAT32);
}

/* Normalized axes (sorted ascending) into p->axes; returns their count or -1. */
static int resolve_axes(const char *op, const pn_array *a, const int *axes, int naxes,
                        pnK_reduce_params *p)
{
    int n = pnC_axes(op, axes, naxes, a->ndim, p->axes);
    if (n < 0) return -1;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && p->axes[j - 1] > p->axes[j]; j--) {
            int t = p->axes[j];
            p->axes[j] = p->axes[j - 1];
            p->axes[j - 1] = t;
        }
    p->naxes = n;
    return n;
}

/* The shape of a reduced over p's axes, with them kept as 1 (keepdims) or dropped. */
static int reduced_shape(const pn_array *a, const pnK_reduce_params *p, bool keepdims,
                         int64_t *shape)
{
    int nd = 0;
    for (int i = 0, j = 0; i < a->ndim; i++) {
        bool r = j < p->naxes && p->axes[j] == i;
        if (r) j++;
        if (!r) shape[nd++] = a->shape[i];
        else if (keepdims) shape[nd++] = 1;
    }
    return nd;
}

/* Number of elements of a over p's axes. */
static int64_t reduced_count(const pn_array *a, const pnK_reduce_params *p)
{
    int64_t n = 1;
    for (int i = 0; i < p->naxes; i++) n *= a->shape[p->axes[i]];
    return n;
}

/* r reshaped to a's shape with p's axes kept as 1 (the shape that broadcasts against a). */
static pn_array *keepdims_view(pn_array *r, const pn_array *a, const pnK_reduce_params *p)
{
    int64_t shape[PNC_MAX_NDIM];
    int nd = reduced_shape(a, p, true, shape);
    return pn_reshape(r, shape, nd);
}

/* ───────────────────────────── Reduce primitive ───────────────────────────── */

static pn_array *make_reduce(pnK_reduce_op op, pn_array *a, const pnK_reduce_params *p,
                             pn_dtype dt);

/* Exclusive product of x over p's axes: for each element, the product of all the others on
 * its reduction slice (exact with zeros). Moves the axes last, flattens them, multiplies an
 * exclusive forward and an exclusive reverse cumprod. */
static pn_array *exclusive_prod(pn_array *x, const pnK_reduce_params *p)
{
    if (p->naxes == 1)
        return pn_multiply(pn_cumprod(x, p->axes[0], false, false),
                           pn_cumprod(x, p->axes[0], true, false));
    int perm[PNC_MAX_NDIM], inv[PNC_MAX_NDIM], nk = 0;
    int64_t fshape[PNC_MAX_NDIM], tshape[PNC_MAX_NDIM];
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    for (int i = 0; i < x->ndim; i++)
        if (!red[i]) {
            fshape[nk] = x->shape[i];
            perm[nk++] = i;
        }
    for (int i = 0; i < p->naxes; i++) perm[nk + i] = p->axes[i];
    for (int i = 0; i < x->ndim; i++) {
        inv[perm[i]] = i;
        tshape[i] = x->shape[perm[i]];
    }
    fshape[nk] = reduced_count(x, p);
    pn_array *xf = pn_reshape(pn_transpose(x, perm, x->ndim), fshape, nk + 1);
    pn_array *e = pn_multiply(pn_cumprod(xf, -1, false, false), pn_cumprod(xf, -1, true, false));
    return pn_transpose(pn_reshape(e, tshape, x->ndim), inv, x->ndim);
}

/* Max / min: the mask of the positions equal to the (kept-dims) result. */
static pn_array *extreme_mask(pn_array *x, pn_array *out, const pnK_reduce_params *p)
{
    return pn_equal(x, keepdims_view(out, x, p));
}

/* ───────────────────────────── ExtremeVjp ───────────────────────────── */

/* The composite form of max / min's vjp: where(x == m, c / ties, 0), ties counted per
 * window (m and c have the reduction's shape). */
static pn_array *extreme_vjp_composite(pn_array *x, pn_array *m, pn_array *c,
                                       const pnK_reduce_params *p)
{
    pn_array *mask = extreme_mask(x, m, p);
    pn_array *cnt = pn_sum(mask, p->axes, p->naxes, true);
    return pn_where(mask, pn_divide(keepdims_view(c, x, p), cnt), pn_weak_float(0));
}

/* Derivatives of ExtremeVjp: linear in the cotangent (input 2), flat in x and m. The vjp
 * sums the upstream gradient of each window's ties, divided by their count. */
static int extreme_vjp_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                           pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *r = NULL;
    for (int i = 0; i < nargs; i++) {
        if (argnums[i] != 2) continue;
        pn_array *mask = extreme_mask(in[0], in[1], p);
        pn_array *s = pn_sum(pn_where(mask, cot[0], pn_weak_float(0)), p->axes, p->naxes, p->keepdims);
        r = pn_divide(s, pn_sum(mask, p->axes, p->naxes, p->keepdims));
        r = r ? pn_reshape(r, in[2]->shape, in[2]->ndim) : NULL;
        return pnO_keep_result(r, &grads[i]);
    }
    pn_scope_pop();
    return 0;
}

static pn_array *make_extreme_vjp(pn_array *x, pn_array *m, pn_array *c, const pnK_reduce_params *p);

static int extreme_vjp_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                           pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[2]) return 0;
    pn_scope_push();
    pn_array *t = pn_astype(tan[2], in[0]->dtype);
    return pnO_keep_result(t ? make_extreme_vjp(in[0], in[1], t, PNC_PARAMS(node, pnK_reduce_params)) : NULL,
                           out_tan);
}

/* Batching: every input gets the mapped axis in front (broadcast where unmapped), the
 * reduced axes shift by one. */
static int extreme_vjp_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                            pn_array **out, int *out_axes)
{
    pnK_reduce_params q = *PNC_PARAMS(node, pnK_reduce_params);
    int64_t B = -1;
    for (int i = 0; i < 3; i++)
        if (in_axes[i] >= 0) B = in[i]->shape[in_axes[i]];
    pn_scope_push();
    pn_array *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = pnC_batch_front(in[i], in_axes[i], 0);
        if (v[i] && in_axes[i] < 0 && B >= 0) { /* unmapped: broadcast a batch axis in front */
            int64_t shape[PNC_MAX_NDIM];
            shape[0] = B;
            for (int d = 0; d < v[i]->ndim; d++) shape[d + 1] = v[i]->shape[d];
            v[i] = pn_broadcast_to(pn_expand_dims(v[i], (int[]){0}, 1), shape, v[i]->ndim + 1);
        }
    }
    if (B >= 0)
        for (int i = 0; i < q.naxes; i++) q.axes[i]++;
    out_axes[0] = B >= 0 ? 0 : -1;
    return pnO_keep_result(v[0] && v[1] && v[2] ? make_extreme_vjp(v[0], v[1], v[2], &q) : NULL, out);
}

const pnC_primitive extreme_vjp_prim = {
    .name = "ExtremeVjp",
    .eval = {[PN_CPU] = pnK_extreme_vjp_eval, [PN_GPU] = PNG_EVAL(pnG_extreme_vjp_eval)},
    .vjp = extreme_vjp_vjp,
    .jvp = extreme_vjp_jvp,
    .vmap = extreme_vjp_vmap,
};

static pn_array *make_extreme_vjp(pn_array *x, pn_array *m, pn_array *c, const pnK_reduce_params *p)
{
    return pnC_make(&extreme_vjp_prim, p, sizeof *p, 3, (pn_array *[]){x, m, c}, x->dtype, x->shape,
                    x->ndim);
}

/* The gradient of max / min (result m, cotangent c) with respect to x: one ExtremeVjp node
 * when x is a float array and c of its dtype (the windows of pooling walked once), else the
 * composite. */
static pn_array *extreme_vjp(pn_array *x, pn_array *m, pn_array *c, const pnK_reduce_params *p)
{
    if (!pnC_is_float(x->dtype) || c->dtype != x->dtype || m->dtype != x->dtype)
        return extreme_vjp_composite(x, m, c, p);
    return make_extreme_vjp(x, m, c, p);
}

static int reduce_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0];
    grads[0] = NULL;
    if (!cot[0] || p->op == PNK_AND || p->op == PNK_OR) return 0;
    pn_scope_push();
    pn_array *c = keepdims_view(cot[0], x, p), *g = NULL;
    switch (p->op) {
    case PNK_SUM:
        g = pnC_broadcast_like(c, x); /* x's shape, also in a shapeless compiled replay */
        if (g && p->scale != 1) g = pn_multiply(g, pn_scalar(p->scale, g->dtype));
        break;
    case PNK_PROD: g = pn_multiply(c, exclusive_prod(x, p)); break;
    default: /* max, min: split evenly among ties, as MLX */
        g = extreme_vjp(x, out[0], cot[0], p);
        break;
    }
    return pnO_keep_result(g, grads);
}

static int reduce_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *t = tan[0];
    out_tan[0] = NULL;
    if (!t || p->op == PNK_AND || p->op == PNK_OR) return 0;
    pn_scope_push();
    pn_array *r = NULL;
    switch (p->op) {
    case PNK_SUM: r = make_reduce(PNK_SUM, t, p, pnK_sum_dtype(t->dtype)); break;
    case PNK_PROD:
        r = pn_sum(pn_multiply(t, exclusive_prod(x, p)), p->axes, p->naxes, p->keepdims);
        break;
    default: {
        pn_array *mask = extreme_mask(x, out[0], p);
        r = pn_divide(pn_sum(pn_multiply(t, mask), p->axes, p->naxes, p->keepdims),
                      pn_sum(mask, p->axes, p->naxes, p->keepdims));
        break;
    }
    }
    return pnO_keep_result(r, out_tan);
}

/* Batching rule of Reduce and LogSumExp (same params): the mapped axis goes first, the
 * reduced axes shift by one, the output is mapped at 0. */
static int reduce_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    pnK_reduce_params q = *PNC_PARAMS(node, pnK_reduce_params);
    int b = in_axes[0];
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], b, 0), *r = NULL;
    if (b >= 0)
        for (int i = 0; i < q.naxes; i++) q.axes[i]++;
    if (x) {
        int64_t shape[PNC_MAX_NDIM];
        int nd = reduced_shape(x, &q, q.keepdims, shape);
        r = pnC_make(node->prim, &q, sizeof q, 1, &x, node->out_dtypes[0], shape, nd);
    }
    out_axes[0] = b >= 0 ? 0 : -1;
    return pnO_keep_result(r, out);
}

const pnC_primitive reduce_prim = {
    .name = "Reduce",
    .eval = {[PN_CPU] = pnK_reduce_eval, [PN_GPU] = PNG_EVAL(pnG_reduce_eval)},
    .vjp = reduce_vjp,
    .jvp = reduce_jvp,
    .vmap = reduce_vmap,
};

/* The Reduce node of a with resolved params p, of dtype dt. */
static pn_array *make_reduce(pnK_reduce_op op, pn_array *a, const pnK_reduce_params *p,
                             pn_dtype dt)
{
    pnK_reduce_params q = *p;
    q.op = op;
    int64_t shape[PNC_MAX_NDIM];
    int nd = reduced_shape(a, &q, q.keepdims, shape);
    return pnC_make(&reduce_prim, &q, sizeof q, 1, &a, dt, shape, nd);
}

/* sum(a) * scale over the axes, in one pass (mean and var of float arrays): the sum is
 * accumulated in float32 or wider and scaled before it is rounded, so half types do not
 * overflow on the way. */
static pn_array *scaled_sum(pn_array *a, const int *axes, int naxes, bool keepdims, double scale)
{
    pnK_reduce_params p = {.op = PNK_SUM, .keepdims = keepdims, .scale = scale};
    if (resolve_axes("sum", a, axes, naxes, &p) < 0) return NULL;
    return make_reduce(PNK_SUM, a, &p, a->dtype);
}

/* The Reduce node of op over axes. Reductions over no axis: sum, prod, max and min give a
 * (as MLX), all and any cast it to bool. */
static pn_array *reduce(pnK_reduce_op op, pn_array *a, const int *axes, int naxes,
                        bool keepdims)
{
    const char *name = op_names[op];
    if (!pnC_inputs_ok(name, 1, &a)) return NULL;
    if ((op == PNK_MAX || op == PNK_MIN) && a->size == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Cannot %s reduce zero size array.", name,
                        name);
    pnK_reduce_params p = {.op = op, .keepdims = keepdims, .scale = 1};
    if (resolve_axes(name, a, axes, naxes, &p) < 0) return NULL;
    if (p.naxes == 0 && op != PNK_AND && op != PNK_OR) return pnC_alias(a);
    pn_dtype dt = op == PNK_SUM || op == PNK_PROD ? pnK_sum_dtype(a->dtype)
                  : op == PNK_AND || op == PNK_OR ? PN_BOOL
                                                  : a->dtype;
    return make_reduce(op, a, &p, dt);
}

/* MLX's sum: bool and small integers accumulate in int32 / uint32. */
pn_array *pn_sum(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_SUM, a, axes, naxes, keepdims);
}

/* MLX's prod: result dtypes as pn_sum. */
pn_array *pn_prod(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_PROD, a, axes, naxes, keepdims);
}

/* MLX's max: a's dtype; NaN wins; an error on an empty array. */
pn_array *pn_max(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_MAX, a, axes, naxes, keepdims);
}

/* MLX's min: as pn_max. */
pn_array *pn_min(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_MIN, a, axes, naxes, keepdims);
}

/* MLX's all: bool; True over an empty axis. */
pn_array *pn_all(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_AND, a, axes, naxes, keepdims);
}

/* MLX's any: bool; False over an empty axis. */
pn_array *pn_any(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    return reduce(PNK_OR, a, axes, naxes, keepdims);
}

/* ───────────────────────────── composites: mean, var, std ───────────────────────────── */

/* MLX's mean: sum times 1/count in at_least_float(dtype) (NaN over an empty axis); one
 * scaled Reduce for float arrays. */
pn_array *pn_mean(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    if (!pnC_inputs_ok("mean", 1, &a)) return NULL;
    pnK_reduce_params p;
    if (resolve_axes("mean", a, axes, naxes, &p) < 0) return NULL;
    pn_dtype dt = at_least_float(a->dtype);
    if (pnC_is_float(a->dtype))
        return scaled_sum(a, axes, naxes, keepdims, 1.0 / (double)reduced_count(a, &p));
    pn_scope_push();
    pn_array *r = pn_multiply(pn_sum(a, axes, naxes, keepdims),
                              pn_scalar(1.0 / (double)reduced_count(a, &p), dt));
    return pnC_scope_return(r);
}

/* MLX's var: sum((a - mean)^2) / max(count - ddof, 0). */
pn_array *pn_var(pn_array *a, const int *axes, int naxes, bool keepdims, int ddof)
{
    if (!pnC_inputs_ok("var", 1, &a)) return NULL;
    pnK_reduce_params p;
    if (resolve_axes("var", a, axes, naxes, &p) < 0) return NULL;
    pn_dtype dt = at_least_float(a->dtype);
    double den = (double)reduced_count(a, &p) - ddof;
    pn_scope_push();
    double scale = 1.0 / (den > 0 ? den : 0.0);
    pn_array *d2 = pn_square(pn_subtract(a, pn_mean(a, axes, naxes, true))), *r;
    if (d2 && pnC_is_float(d2->dtype))
        r = scaled_sum(d2, axes, naxes, keepdims, scale);
    else
        r = pn_multiply(pn_sum(d2, axes, naxes, keepdims), pn_scalar(scale, dt));
    return pnC_scope_return(r);
}

/* MLX's std: sqrt(var). */
pn_array *pn_std(pn_array *a, const int *axes, int naxes, bool keepdims, int ddof)
{
    if (!pnC_inputs_ok("std", 1, &a)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_sqrt(pn_var(a, axes, naxes, keepdims, ddof)));
}

/* ───────────────────────────── ArgReduce ───────────────────────────── */

static int no_grad_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    return 0;
}

static int no_grad_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    return 0;
}

static pn_array *argreduce(pnK_reduce_op op, pn_array *a, int axis, bool keepdims);

/* Batching rule: the mapped axis first; over the flattened array, each batch element's
 * flattened slice (a (B, rest) reshape), then the keepdims shape. */
static int argreduce_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                          pn_array **out, int *out_axes)
{
    const pnK_argreduce_params *p = PNC_PARAMS(node, pnK_argreduce_params);
    int b = in_axes[0];
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], b, 0), *r;
    if (b < 0) {
        r = argreduce(p->op, x, p->axis, p->keepdims);
    } else if (p->axis != PN_ALL_AXES) {
        r = argreduce(p->op, x, p->axis + 1, p->keepdims);
    } else {
        int64_t B = x ? x->shape[0] : 0, flat[2] = {B, -1}, kd[PNC_MAX_NDIM];
        int nd = x ? x->ndim : 0;
        for (int i = 0; i < nd; i++) kd[i] = i == 0 ? B : 1;
        r = argreduce(p->op, pn_reshape(x, flat, 2), 1, false);
        if (p->keepdims) r = pn_reshape(r, kd, nd);
    }
    out_axes[0] = b >= 0 ? 0 : -1;
    return pnO_keep_result(r, out);
}

const pnC_primitive argreduce_prim = {
    .name = "ArgReduce",
    .eval = {[PN_CPU] = pnK_argreduce_eval, [PN_GPU] = PNG_EVAL(pnG_argreduce_eval)},
    .vjp = no_grad_vjp,
    .jvp = no_grad_jvp,
    .vmap = argreduce_vmap,
};

static pn_array *argreduce(pnK_reduce_op op, pn_array *a, int axis, bool keepdims)
{
    const char *name = op == PNK_MAX ? "argmax" : "argmin";
    if (!pnC_inputs_ok(name, 1, &a)) return NULL;
    if (a->size == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Cannot %s reduce zero size array.", name,
                        name);
    pnK_argreduce_params p = {.op = op, .axis = axis, .keepdims = keepdims};
    int64_t shape[PNC_MAX_NDIM];
    int nd = 0;
    if (axis == PN_ALL_AXES) {
        if (keepdims)
            for (; nd < a->ndim; nd++) shape[nd] = 1;
    } else {
        p.axis = pnC_axis(name, axis, a->ndim);
        if (p.axis < 0) return NULL;
        for (int i = 0; i < a->ndim; i++)
            if (i != p.axis) shape[nd++] = a->shape[i];
            else if (keepdims) shape[nd++] = 1;
    }
    return pnC_make(&argreduce_prim, &p, sizeof p, 1, &a, PN_UINT32, shape, nd);
}

/* MLX's argmax: uint32 index of the first maximum (NaN counts as the maximum). */
pn_array *pn_argmax(pn_array *a, int axis, bool keepdims)
{
    return argreduce(PNK_MAX, a, axis, keepdims);
}

/* MLX's argmin: as pn_argmax for the minimum. */
pn_array *pn_argmin(pn_array *a, int axis, bool keepdims)
{
    return argreduce(PNK_MIN, a, axis, keepdims);
}

/* ───────────────────────────── LogSumExp ───────────────────────────── */

/* exp(x - logsumexp) with the result kept over the reduced axes. */
static pn_array *lse_weights(pn_array *x, pn_array *out, const pnK_reduce_params *p)
{
    return pn_exp(pn_subtract(x, keepdims_view(out, x, p)));
}

static int lse_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *g = pn_multiply(keepdims_view(cot[0], in[0], p), lse_weights(in[0], out[0], p));
    return pnO_keep_result(g, grads);
}

static int lse_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    pn_array *r = pn_sum(pn_multiply(tan[0], lse_weights(in[0], out[0], p)), p->axes, p->naxes,
                         p->keepdims);
    return pnO_keep_result(r, out_tan);
}

const pnC_primitive lse_prim = {
    .name = "LogSumExp",
    .eval = {[PN_CPU] = pnK_logsumexp_eval, [PN_GPU] = PNG_EVAL(pnG_logsumexp_eval)},
    .vjp = lse_vjp,
    .jvp = lse_jvp,
    .vmap = reduce_vmap,
};

/* MLX's logsumexp: max-shifted and fused; a slice whose max is infinite gives that max (so
 * all -inf gives -inf). Integers compute in float32. An error on an empty array. */
pn_array *pn_logsumexp(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    if (!pnC_inputs_ok("logsumexp", 1, &a)) return NULL;
    if (a->size == 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[logsumexp] Received empty array.");
    if (a->dtype == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[logsumexp] complex64 is not supported.");
    pnK_reduce_params p = {.op = PNK_LOGADDEXP, .keepdims = keepdims, .scale = 1};
    if (resolve_axes("logsumexp", a, axes, naxes, &p) < 0) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = reduced_shape(a, &p, keepdims, shape);
    pn_dtype dt = at_least_float(a->dtype);
    pn_scope_push();
    pn_array *x = a->dtype == dt ? a : pn_astype(a, dt);
    return pnC_scope_return(pnC_make(&lse_prim, &p, sizeof p, 1, &x, dt, shape, nd));
}

/* ───────────────────────────── Softmax ───────────────────────────── */

/* s * (c - sum(c * s)) over the softmax axes. */
static pn_array *softmax_back(pn_array *s, pn_array *c, int naxes)
{
    int axes[PNC_MAX_NDIM];
    for (int i = 0; i < naxes; i++) axes[i] = s->ndim - naxes + i;
    pn_array *sc = pn_sum(pn_multiply(c, s), axes, naxes, true);
    return pn_multiply(s, pn_subtract(c, sc));
}

static int softmax_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *g = softmax_back(out[0], cot[0], PNC_PARAMS(node, pnK_softmax_params)->naxes);
    return pnO_keep_result(g, grads);
}

static int softmax_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    pn_array *r = softmax_back(out[0], tan[0], PNC_PARAMS(node, pnK_softmax_params)->naxes);
    return pnO_keep_result(r, out_tan);
}

/* Batching rule: with the mapped axis first the softmax axes stay the trailing ones. */
static int softmax_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                        pn_array **out, int *out_axes)
{
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], 0);
    pn_array *r = x ? pnC_make(node->prim, node->params, node->params_size, 1, &x,
                               node->out_dtypes[0], x->shape, x->ndim)
                    : NULL;
    out_axes[0] = in_axes[0] >= 0 ? 0 : -1;
    return pnO_keep_result(r, out);
}

const pnC_primitive softmax_prim = {
    .name = "Softmax",
    .eval = {[PN_CPU] = pnK_softmax_eval, [PN_GPU] = PNG_EVAL(pnG_softmax_eval)},
    .vjp = softmax_vjp,
    .jvp = softmax_jvp,
    .vmap = softmax_vmap,
};

/* MLX's softmax over axes (NULL: all), fused: trailing axes directly, other axes moved last
 * by a transposed view (the result is the inverse view of the fused output). Result dtype
 * at_least_float(a); the kernel accumulates half types in float32 whatever precise says. */
pn_array *pn_softmax(pn_array *a, const int *axes, int naxes, bool precise)
{
    if (!pnC_inputs_ok("softmax", 1, &a)) return NULL;
    if (a->ndim == 0 && axes && naxes > 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[softmax] Received non-empty axes for array with 0 dimensions.");
    if (a->dtype == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[softmax] complex64 is not supported.");
    pnK_reduce_params p;
    if (resolve_axes("softmax", a, axes, naxes, &p) < 0) return NULL;
    pn_dtype dt = at_least_float(a->dtype);
    /* perm: the kept axes, then the softmax axes (both in order) */
    int perm[PNC_MAX_NDIM], inv[PNC_MAX_NDIM], nk = 0;
    bool red[PNC_MAX_NDIM] = {0}, trailing = true;
    for (int i = 0; i < p.naxes; i++) red[p.axes[i]] = true;
    for (int i = 0; i < a->ndim; i++)
        if (!red[i]) perm[nk++] = i;
    for (int i = 0; i < p.naxes; i++) perm[nk + i] = p.axes[i];
    for (int i = 0; i < a->ndim; i++) {
        inv[perm[i]] = i;
        trailing &= perm[i] == i;
    }
    pn_scope_push();
    pn_array *x = a->dtype == dt ? a : pn_astype(a, dt), *r;
    if (a->size == 0) {
        r = pnC_alias(x);
    } else {
        if (!trailing) x = pn_transpose(x, perm, a->ndim);
        pnK_softmax_params sp = {.naxes = p.naxes, .precise = precise};
        r = x ? pnC_make(&softmax_prim, &sp, sizeof sp, 1, &x, dt, x->shape, x->ndim) : NULL;
        if (!trailing) r = pn_transpose(r, inv, a->ndim);
    }
    return pnC_scope_return(r);
}

/* log_softmax as mlx.nn: a - logsumexp(a, axes, keepdims=True). */
pn_array *pn_log_softmax(pn_array *a, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("log_softmax", 1, &a)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_subtract(a, pn_logsumexp(a, axes, naxes, true)));
}
