/* gated_delta.c — mlx.core.fast.gated_delta_update: the gated delta rule recurrence (Gated
 * DeltaNet) as a composition of ops, one step per time index. Cost: T steps of ~10 ops, each
 * O(B Hv Dv Dk); the graph grows with T (no chunked kernel yet). Differentiable. */
#include "core/core.h"

#include <stdlib.h>

/* One argument's check: ndim and the leading extents it must share with q / v. */
static bool shape_is(const pn_array *a, int ndim, const int64_t *want)
{
    if (a->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (a->shape[d] != want[d]) return false;
    return true;
}

static char *shape_str(const pn_array *a, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < a->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)a->shape[d]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

static int fail_shape(const char *what, const pn_array *a, const char *want)
{
    char buf[160];
    pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gated_delta_update] %s has shape %s, expected %s.", what,
             shape_str(a, buf, sizeof buf), want);
    return -1;
}

/* Checks the shapes against q (B, T, Hk, Dk) and v (B, T, Hv, Dv). 0 or -1. */
static int check_shapes(pn_array *q, pn_array *k, pn_array *v, pn_array *g, pn_array *beta,
                        pn_array *s0, pn_array *mask)
{
    if (q->ndim != 4) return fail_shape("q", q, "(B, T, Hk, Dk)");
    if (!shape_is(k, 4, q->shape)) return fail_shape("k", k, "q's shape (B, T, Hk, Dk)");
    const int64_t B = q->shape[0], T = q->shape[1], Hk = q->shape[2], Dk = q->shape[3];
    if (v->ndim != 4 || v->shape[0] != B || v->shape[1] != T || Hk == 0 || v->shape[2] % Hk)
        return fail_shape("v", v, "(B, T, Hv, Dv) with Hv a multiple of q's Hk");
    const int64_t Hv = v->shape[2], Dv = v->shape[3];
    if (T == 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gated_delta_update] T must be positive."), -1;
    if (!shape_is(g, 3, (int64_t[]){B, T, Hv}) && !shape_is(g, 4, (int64_t[]){B, T, Hv, Dk}))
        return fail_shape("gamma", g, "(B, T, Hv) or (B, T, Hv, Dk)");
    if (!shape_is(beta, 3, (int64_t[]){B, T, Hv})) return fail_shape("beta", beta, "(B, T, Hv)");
    if (s0 && !shape_is(s0, 4, (int64_t[]){B, Hv, Dv, Dk}))
        return fail_shape("initial_state", s0, "(B, Hv, Dv, Dk)");
    if (mask && !shape_is(mask, 2, (int64_t[]){B, T})) return fail_shape("mask", mask, "(B, T)");
    return 0;
}

/* The T slices of a along axis 1, each without that axis, into out (T entries). */
static int steps(pn_array *a, int64_t T, pn_array **out)
{
    if (pn_split_sections(a, (int)T, 1, out)) return -1;
    int axis = 1;
    for (int64_t t = 0; t < T; t++)
        if (!(out[t] = pn_squeeze(out[t], &axis, 1))) return -1;
    return 0;
}

int pn_fast_gated_delta_update(pn_array *q, pn_array *k, pn_array *v, pn_array *gamma,
                               pn_array *beta, pn_array *initial_state, pn_array *mask,
                               pn_array **out)
{
    out[0] = out[1] = NULL;
    pn_array *req[5] = {q, k, v, gamma, beta}, *opt[2] = {initial_state, mask};
    if (!pnC_inputs_ok("gated_delta_update", 5, req)) return -1;
    for (int i = 0; i < 2; i++)
        if (opt[i] && !pnC_inputs_ok("gated_delta_update", 1, &opt[i])) return -1;
    if (check_shapes(q, k, v, gamma, beta, initial_state, mask)) return -1;
    const int64_t B = q->shape[0], T = q->shape[1], Hk = q->shape[2], Dk = q->shape[3];
    const int64_t Hv = v->shape[2], Dv = v->shape[3];
    /* state and arithmetic: float32, or float64 when an input is; output: q, k, v's type
     * (float32 for integers) */
    pn_array *all[6] = {q, k, v, gamma, beta, initial_state};
    pn_dtype ct = pn_promote_types(PN_FLOAT32, pnC_result_type(initial_state ? 6 : 5, all));
    pn_dtype ot = pnC_result_type(3, all);
    if (!pn_issubdtype(ot, PN_CAT_FLOATING)) ot = PN_FLOAT32;
    if (ct != PN_FLOAT32 && ct != PN_FLOAT64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gated_delta_update] Inputs must be real, got %s.",
                        pn_dtype_name(ct)), -1;

    pn_scope_push();
    pn_array **st = calloc((size_t)(6 * T), sizeof *st);
    if (!st) {
        pnC_scope_return(NULL);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[gated_delta_update] out of memory"), -1;
    }
    pn_array **qs = st, **ks = st + T, **vs = st + 2 * T, **gs = st + 3 * T, **bs = st + 4 * T,
             **ms = st + 5 * T;
    int64_t r = Hv / Hk;
    pn_array *qq = pn_astype(r > 1 ? pn_repeat(q, r, 2) : q, ct); /* (B, T, Hv, Dk) */
    pn_array *kk = pn_astype(r > 1 ? pn_repeat(k, r, 2) : k, ct);
    int ok = qq && kk && !steps(qq, T, qs) && !steps(kk, T, ks) &&
             !steps(pn_astype(v, ct), T, vs) && !steps(pn_astype(gamma, ct), T, gs) &&
             !steps(pn_astype(beta, ct), T, bs) &&
             (!mask || !steps(pn_not_equal(mask, pn_weak_int(0)), T, ms));
    pn_array *S = initial_state ? pn_astype(initial_state, ct)
                                : pn_zeros((int64_t[]){B, Hv, Dv, Dk}, 4, ct);
    pn_array **ys = calloc((size_t)T, sizeof *ys);
    int m1 = -1, m2 = -2;
    pn_array *zero = pn_scalar(0, ct);
    for (int64_t t = 0; ok && ys && t < T; t++) {
        /* S: (B, Hv, Dv, Dk); gate (B, Hv, 1, 1) or (B, Hv, 1, Dk) */
        pn_array *g = gamma->ndim == 3 ? pn_expand_dims(gs[t], (int[]){2, 3}, 2)
                                       : pn_expand_dims(gs[t], &m2, 1);
        pn_array *kt = pn_expand_dims(ks[t], &m2, 1);                    /* (B, Hv, 1, Dk) */
        pn_array *Sg = pn_multiply(S, g);
        pn_array *kv = pn_sum(pn_multiply(Sg, kt), &m1, 1, false);       /* (B, Hv, Dv) */
        pn_array *delta = pn_multiply(pn_subtract(vs[t], kv), pn_expand_dims(bs[t], &m1, 1));
        pn_array *Sn = pn_add(Sg, pn_multiply(pn_expand_dims(delta, &m1, 1), kt));
        pn_array *y = pn_sum(pn_multiply(Sn, pn_expand_dims(qs[t], &m2, 1)), &m1, 1, false);
        if (mask && Sn && y) {
            pn_array *mt = pn_reshape(ms[t], (int64_t[]){B, 1, 1}, 3);
            y = pn_where(mt, y, zero);
            Sn = pn_where(pn_expand_dims(mt, &m1, 1), Sn, S);
        }
        ok = (S = Sn) && (ys[t] = y);
    }
    pn_array *res[2] = {NULL, NULL};
    if (ok && ys) {
        res[0] = pn_astype(pn_stack(ys, (int)T, 1), ot); /* (B, T, Hv, Dv) */
        res[1] = S;
    } else if (!ys) {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[gated_delta_update] out of memory");
    }
    free(st);
    free(ys);
    if (!res[0] || !res[1]) {
        pn_scope_pop();
        return -1;
    }
    pn_scope_pop_keep(res, 2);
    out[0] = res[0];
    out[1] = res[1];
    return 0;
}
