/* scan.c — cumulative ops: cumsum, cumprod, cummax, cummin, logcumsumexp, as one Scan
 * primitive with an op code (kernel in backend/cpu/reduce.c), with their derivatives.
 * Semantics follow mlx.core: axis PN_ALL_AXES scans the flattened array; reverse scans from
 * the end; exclusive scans (inclusive == false) start from the op's identity. */
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

static const char *const scan_names[] = {"cumsum", "cumprod", "cummax", "cummin", "", "",
                                         "logcumsumexp"};

static pn_array *scan(pnK_reduce_op op, pn_array *a, int axis, bool reverse, bool inclusive);

/* ───────────────────────────── derivative helpers ───────────────────────────── */

/* arange(n) (int32) shaped to broadcast along axis of an ndim array. */
static pn_array *positions(int64_t n, int axis, int ndim)
{
    int64_t shape[PNC_MAX_NDIM];
    for (int i = 0; i < ndim; i++) shape[i] = i == axis ? n : 1;
    return pn_reshape(pn_arange(0, (double)n, 1, PN_INT32), shape, ndim);
}

/* c shifted by one along axis towards lower indices (toward_low) or higher ones, the vacated
 * place filled with zero. */
static pn_array *shift(pn_array *c, int axis, bool toward_low)
{
    int64_t n = c->shape[axis], start[PNC_MAX_NDIM], stop[PNC_MAX_NDIM];
    if (n == 0) return c;
    for (int i = 0; i < c->ndim; i++) {
        start[i] = 0;
        stop[i] = c->shape[i];
    }
    int64_t one = 1, zero = 0;
    if (toward_low) start[axis] = 1;
    else stop[axis] = n - 1;
    pn_array *s = pn_slice(c, start, stop, NULL, c->ndim);
    return pn_pad(s, &axis, toward_low ? &zero : &one, toward_low ? &one : &zero, 1, NULL,
                  PN_PAD_CONSTANT);
}

/* Cummax / cummin of a forward inclusive scan: which positions start a new running extreme
 * ("leaders": the first element, and every element beating all before it). */
static pn_array *leaders(pn_array *x, int axis, bool is_max)
{
    pn_array *prev = scan(is_max ? PNK_MAX : PNK_MIN, x, axis, false, false);
    pn_array *beats = is_max ? pn_greater(x, prev) : pn_less(x, prev);
    pn_array *first = pn_equal(positions(x->shape[axis], axis, x->ndim), pn_weak_int(0));
    return pn_logical_or(beats, first);
}

/* Gradient of a forward inclusive cummax / cummin of x along axis for cotangent c: each
 * leader receives the sum of c over its run (up to the next leader). */
static pn_array *cumext_grad_forward(pn_array *x, pn_array *c, int axis, bool is_max)
{
    int64_t n = x->shape[axis];
    pn_array *lead = leaders(x, axis, is_max);
    pn_array *pos = positions(n, axis, x->ndim);
    /* the next leader after each position (n when none) */
    pn_array *cand = pn_where(lead, pos, pn_scalar_int(n, PN_INT32));
    pn_array *next = pn_minimum(scan(PNK_MIN, cand, axis, true, false),
                                pn_scalar_int(n, PN_INT32));
    /* prefix sums with the total appended: pre[k] = sum(c[:k]) for k <= n */
    pn_array *pre = scan(PNK_SUM, c, axis, false, false);
    pn_array *parts[2] = {pre, pn_sum(c, &axis, 1, true)};
    pn_array *full = pn_concatenate(parts, 2, axis);
    pn_array *run = pn_subtract(pn_take_along_axis(full, next, axis), pre);
    return pn_multiply(run, lead);
}

/* Tangent of a forward inclusive cummax / cummin: t at the running extreme's position. */
static pn_array *cumext_tangent_forward(pn_array *x, pn_array *t, int axis, bool is_max)
{
    pn_array *lead = leaders(x, axis, is_max);
    pn_array *pos = positions(x->shape[axis], axis, x->ndim);
    pn_array *src = scan(PNK_MAX, pn_where(lead, pos, pn_scalar_int(0, PN_INT32)), axis, false,
                         true);
    return pn_take_along_axis(t, src, axis);
}

/* exp(logcumsumexp(log(max(+-c, 0)) ...)) pieces: the stable sum_{i in scan} w_i exp(...)
 * for a signed weight w, split into its positive and negative parts. */
static pn_array *signed_log_part(pn_array *w, bool negative)
{
    pn_array *z = pn_weak_float(0);
    return pn_log(negative ? pn_maximum(pn_negative(w), z) : pn_maximum(w, z));
}

/* ───────────────────────────── vjp / jvp ───────────────────────────── */

static int scan_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_scan_params *p = PNC_PARAMS(node, pnK_scan_params);
    pn_array *x = in[0], *c = cot[0], *g = NULL;
    int ax = p->axis;
    grads[0] = NULL;
    if (!c) return 0;
    pn_scope_push();
    switch (p->op) {
    case PNK_SUM: g = scan(PNK_SUM, c, ax, !p->reverse, p->inclusive); break;
    case PNK_PROD: {
        /* Exact with zeros (as MLX): positions after the first zero get 0, the first zero
         * gets the gradient of the product with it replaced by 1. */
        pn_array *other = scan(PNK_PROD, x, ax, p->reverse, !p->inclusive);
        pn_array *incl = p->inclusive ? out[0] : other, *excl = p->inclusive ? other : out[0];
        pn_array *zero = pn_scalar(0, x->dtype);
        pn_array *is_zero = pn_equal(incl, zero);
        pn_array *first_zero = pn_logical_and(is_zero, pn_not_equal(excl, zero));
        pn_array *with_one =
            scan(PNK_PROD, pn_where(first_zero, pn_scalar(1, x->dtype), x), ax, p->reverse,
                 p->inclusive);
        pn_array *g_one = scan(PNK_SUM, pn_multiply(with_one, c), ax, !p->reverse, p->inclusive);
        pn_array *g_reg = pn_divide(scan(PNK_SUM, pn_multiply(out[0], c), ax, !p->reverse,
                                         p->inclusive),
                                    x);
        g = pn_where(first_zero, g_one, pn_where(is_zero, zero, g_reg));
        break;
    }
    case PNK_MAX:
    case PNK_MIN: {
        /* Canonical form: forward inclusive. Exclusive scans pass the cotangent of output i
         * to output i-1 of the inclusive scan; reverse scans flip. */
        bool is_max = p->op == PNK_MAX;
        pn_array *cc = p->inclusive ? c : shift(c, ax, !p->reverse);
        if (p->reverse) {
            pn_array *xf = pn_flip(x, &ax, 1), *cf = pn_flip(cc, &ax, 1);
            g = pn_flip(cumext_grad_forward(xf, cf, ax, is_max), &ax, 1);
        } else {
            g = cumext_grad_forward(x, cc, ax, is_max);
        }
        break;
    }
    case PNK_LOGADDEXP: {
        /* g_j = sum_{i in scan of j} c_i exp(x_j - out_i), stably as
         * exp(x + logcumsumexp(log c+ - out)) - exp(x + logcumsumexp(log c- - out)), the
         * inner scans running the other way. */
        if (x->dtype == PN_COMPLEX64) { /* log c covers every non-zero c (0: -inf) */
            pn_array *l = pn_subtract(pn_log(c), out[0]);
            g = pn_exp(pn_add(x, scan(PNK_LOGADDEXP, l, ax, !p->reverse, p->inclusive)));
            break;
        }
        pn_array *parts[2];
        for (int s = 0; s < 2; s++) {
            pn_array *l = pn_subtract(signed_log_part(c, s == 1), out[0]);
            parts[s] = pn_exp(pn_add(x, scan(PNK_LOGADDEXP, l, ax, !p->reverse, p->inclusive)));
        }
        g = pn_subtract(parts[0], parts[1]);
        break;
    }
    default: break;
    }
    return pnO_keep_result(g, grads);
}

static int scan_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_scan_params *p = PNC_PARAMS(node, pnK_scan_params);
    pn_array *x = in[0], *t = tan[0], *r = NULL;
    int ax = p->axis;
    out_tan[0] = NULL;
    if (!t) return 0;
    pn_scope_push();
    switch (p->op) {
    case PNK_SUM: r = scan(PNK_SUM, t, ax, p->reverse, p->inclusive); break;
    case PNK_PROD: /* exact for non-zero x */
        r = pn_multiply(out[0], scan(PNK_SUM, pn_divide(t, x), ax, p->reverse, p->inclusive));
        break;
    case PNK_MAX:
    case PNK_MIN: {
        bool is_max = p->op == PNK_MAX;
        if (p->reverse) {
            pn_array *xf = pn_flip(x, &ax, 1), *tf = pn_flip(t, &ax, 1);
            r = pn_flip(cumext_tangent_forward(xf, tf, ax, is_max), &ax, 1);
        } else {
            r = cumext_tangent_forward(x, t, ax, is_max);
        }
        /* exclusive: output i is inclusive output i-1 (i+1 when reverse), identity first */
        if (!p->inclusive) r = shift(r, ax, p->reverse);
        break;
    }
    case PNK_LOGADDEXP: {
        /* sum_{j in scan of i} t_j exp(x_j - out_i), split by the sign of t; positions with
         * an empty scan (out = -inf) get 0 */
        if (x->dtype == PN_COMPLEX64) {
            pn_array *l = pn_add(x, pn_log(t));
            r = pn_exp(pn_subtract(scan(PNK_LOGADDEXP, l, ax, p->reverse, p->inclusive), out[0]));
            r = pn_where(pn_isneginf(pn_real(out[0])), pn_weak_float(0), r);
            break;
        }
        pn_array *parts[2];
        for (int s = 0; s < 2; s++) {
            pn_array *l = pn_add(x, signed_log_part(t, s == 1));
            parts[s] = pn_exp(pn_subtract(scan(PNK_LOGADDEXP, l, ax, p->reverse, p->inclusive),
                                          out[0]));
        }
        r = pn_where(pn_isneginf(out[0]), pn_weak_float(0), pn_subtract(parts[0], parts[1]));
        break;
    }
    default: break;
    }
    return pnO_keep_result(r, out_tan);
}

/* Batching rule: the mapped axis first, the scanned axis shifts by one. */
static int scan_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    pnK_scan_params q = *PNC_PARAMS(node, pnK_scan_params);
    int b = in_axes[0];
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], b, 0);
    if (b >= 0) q.axis++;
    pn_array *r =
        x ? pnC_make(node->prim, &q, sizeof q, 1, &x, node->out_dtypes[0], x->shape, x->ndim)
          : NULL;
    out_axes[0] = b >= 0 ? 0 : -1;
    return pnO_keep_result(r, out);
}

const pnC_primitive scan_prim = {
    .name = "Scan",
    .eval = {[PN_CPU] = pnK_scan_eval, [PN_GPU] = PNG_EVAL(pnG_scan_eval)},
    .vjp = scan_vjp,
    .jvp = scan_jvp,
    .vmap = scan_vmap,
};

/* ───────────────────────────── constructors ───────────────────────────── */

/* The Scan node. PN_ALL_AXES flattens first. cumsum of bool scans in int32 (MLX);
 * logcumsumexp of integers scans in float32. */
static pn_array *scan(pnK_reduce_op op, pn_array *a, int axis, bool reverse, bool inclusive)
{
    const char *name = scan_names[op];
    if (!pnC_inputs_ok(name, 1, &a)) return NULL;
    if (axis != PN_ALL_AXES && (axis >= a->ndim || axis < -a->ndim))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Axis %d is out of bounds for array with %d dimensions.", name, axis,
                        a->ndim);
    pn_dtype dt = a->dtype;
    if (op == PNK_SUM && dt == PN_BOOL) dt = PN_INT32;
    if (op == PNK_LOGADDEXP && !pnC_is_float(dt)) dt = pn_promote_types(dt, PN_FLOAT32);
    pn_scope_push();
    pn_array *x = a;
    if (axis == PN_ALL_AXES) {
        int64_t n = a->size;
        x = pn_reshape(a, &n, 1);
        axis = 0;
    } else if (axis < 0) {
        axis += a->ndim;
    }
    if (x && x->dtype != dt) x = pn_astype(x, dt);
    pnK_scan_params p = {.op = op, .axis = axis, .reverse = reverse, .inclusive = inclusive};
    pn_array *r = x ? pnC_make(&scan_prim, &p, sizeof p, 1, &x, dt, x->shape, x->ndim) : NULL;
    return pnC_scope_return(r);
}

/* MLX's cumsum along axis; bool sums in int32. */
pn_array *pn_cumsum(pn_array *a, int axis, bool reverse, bool inclusive)
{
    return scan(PNK_SUM, a, axis, reverse, inclusive);
}

/* MLX's cumprod along axis; a's dtype. */
pn_array *pn_cumprod(pn_array *a, int axis, bool reverse, bool inclusive)
{
    return scan(PNK_PROD, a, axis, reverse, inclusive);
}

/* MLX's cummax along axis; NaN propagates. */
pn_array *pn_cummax(pn_array *a, int axis, bool reverse, bool inclusive)
{
    return scan(PNK_MAX, a, axis, reverse, inclusive);
}

/* MLX's cummin along axis; NaN propagates. */
pn_array *pn_cummin(pn_array *a, int axis, bool reverse, bool inclusive)
{
    return scan(PNK_MIN, a, axis, reverse, inclusive);
}

/* MLX's logcumsumexp along axis (stable; integers compute in float32). */
pn_array *pn_logcumsumexp(pn_array *a, int axis, bool reverse, bool inclusive)
{
    return scan(PNK_LOGADDEXP, a, axis, reverse, inclusive);
}
