/* surface6a.c — mlx.core functions of the issue-4 surface, part A, built only from existing ops
 * (so they run on every backend and differentiate and vmap through their parts): can_cast,
 * from_fp8, the static-size unique, linalg.det and linalg.slogdet over the LU factorization
 * and fast.cross_entropy; and to_fp8, one primitive (ToFP8) over the e4m3 codec of the mxfp8
 * quantizer, with a CPU kernel here and a GPU one in backend/cuda/fp8.cu. */
#include "core/core.h"

#include <math.h>

#include "backend/cpu/quant_codec.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/fp8.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static pn_array *u32(uint32_t v) { return pn_scalar_int((int64_t)v, PN_UINT32); }

/* x[lo:hi] of the 1-d x. NULL-safe. */
static pn_array *range1(pn_array *x, int64_t lo, int64_t hi)
{
    return x ? pn_slice(x, &lo, &hi, NULL, 1) : NULL;
}

/* The 1-d x (length n) cut or padded with pad (a scalar of x's dtype) to length size. */
static pn_array *resize1(pn_array *x, int64_t n, int64_t size, pn_array *pad)
{
    if (size <= n) return range1(x, 0, size);
    int64_t extra = size - n;
    pn_array *parts[2] = {x, pn_full(&extra, 1, pad, pn_array_dtype(x))};
    return parts[1] ? pn_concatenate(parts, 2, 0) : NULL;
}

/* "(d0,d1,...)" as MLX prints shapes in messages. */
static const char *shape_str(const pn_array *a, char *buf, size_t n)
{
    return pnC_shape_str(pn_shape(a), pn_ndim(a), buf, n);
}

/* ───────────────────────────── can_cast ───────────────────────────── */

/* See ponte.h. */
bool pn_can_cast(pn_dtype from, pn_dtype to)
{
    if (!pnC_dtype_valid(from) || !pnC_dtype_valid(to)) return false;
    return pn_promote_types(from, to) == to;
}

/* ───────────────────────────── fp8 e4m3 ───────────────────────────── */

/* ToFP8 on the CPU: float32 x (any strides) to uint8 codes through the codec the mxfp8
 * quantizer uses (backend/cpu/quant_codec.h), which the GPU kernel shares bit for bit. */
static int to_fp8_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    pn_array *x = pnC_contiguous(in[0]);
    if (!x) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[to_fp8] Out of memory."), -1;
    const float *src = pnC_data(x);
    uint8_t *dst = pnC_data(o);
    const int64_t n = o->size;
#pragma omp parallel for if (n > PNC_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++) dst[i] = pnK_e4m3_code(src[i]);
    pnC_decref(x);
    return 0;
}

/* Elementwise: the batch axis stays where it is. */
static int to_fp8_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                       int *out_axes)
{
    out[0] = pn_to_fp8(in[0]);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

/* No derivatives, as MLX's ToFP8 (a gradient through it is an error). */
const pnC_primitive to_fp8_prim = {
    .name = "ToFP8",
    .eval = {[PN_CPU] = to_fp8_eval, [PN_GPU] = PNG_EVAL(pnG_to_fp8_eval)},
    .vmap = to_fp8_vmap,
};

/* See ponte.h. One ToFP8 node over x as float32 (exact for float16 and bfloat16). */
pn_array *pn_to_fp8(pn_array *x)
{
    if (!pnC_inputs_ok("to_fp8", 1, &x)) return NULL;
    pn_dtype t = pn_array_dtype(x);
    if (!pnC_is_float(t))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[to_fp8] Only real floating types are supported but x.dtype() == %s.",
                        pn_dtype_name(t));
    pn_scope_push();
    pn_array *f = t == PN_FLOAT32 ? x : pn_astype(x, PN_FLOAT32);
    return pnC_scope_return(f ? pnC_make(&to_fp8_prim, NULL, 0, 1, &f, PN_UINT8, pn_shape(x), pn_ndim(x)) : NULL);
}

/* Fills table with the 256 values of from_fp8 as float32: MLX's reading of e4m3, with 0x7f and
 * 0xff NaN (signed as their code). */
static void fp8_table(float *table)
{
    for (int c = 0; c < 256; c++)
        table[c] = (c & 0x7f) == 0x7f ? copysignf(NAN, c & 0x80 ? -1.0f : 1.0f) : pnK_e4m3_value(c);
}

/* See ponte.h. A gather from the 256-entry table, then a cast (exact: every e4m3 value is a
 * float16 and a bfloat16). */
pn_array *pn_from_fp8(pn_array *x, pn_dtype dtype)
{
    if (!pnC_inputs_ok("from_fp8", 1, &x)) return NULL;
    pn_dtype t = pn_array_dtype(x);
    if (t != PN_UINT8)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[from_fp8] Input must have type uint8 but x.dtype() == %s.", pn_dtype_name(t));
    if (!pnC_dtype_valid(dtype) || !pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[from_fp8] Only real floating types are supported but dtype == %s.",
                        pnC_dtype_valid(dtype) ? pn_dtype_name(dtype) : "?");
    pn_scope_push();
    int64_t n = 256;
    float values[256];
    fp8_table(values);
    pn_array *table = pn_array_from_data(values, &n, 1, PN_FLOAT32);
    pn_array *v = pn_take(table, pn_astype(x, PN_INT32), 0);
    return pnC_scope_return(dtype == PN_FLOAT32 ? v : pn_astype(v, dtype));
}

/* ───────────────────────────── unique ───────────────────────────── */

/* See ponte.h. Sort the flattened a (argsort), start a group where a sorted element differs
 * from the one before (so NaNs are each their own group and -0.0 joins 0.0), number the groups
 * by a cumulative sum, then scatter: the group of each position (inverse), the smallest
 * position of each group (index, min-scatter) and the group sizes (counts, add-scatter). The
 * values are a gathered at index, so their gradient goes to the first occurrences. */
int pn_unique(pn_array *a, int64_t size, pn_array *fill_value, pn_array **out)
{
    for (int k = 0; k < 4; k++) out[k] = NULL;
    if (!pnC_inputs_ok("unique", 1, &a)) return -1;
    if (size < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unique] Received negative size %lld.", (long long)size), -1;
    char buf[256];
    if (fill_value && pn_size(fill_value) != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unique] Fill value must have one element, but got shape %s.",
                        shape_str(fill_value, buf, sizeof buf)),
               -1;
    int64_t n = pn_size(a);
    if (n == 0 && size > 0 && !fill_value)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[unique] A fill value is required for an empty input with a non-zero size."),
               -1;
    pn_dtype t = pn_array_dtype(a);
    pn_scope_push();
    pn_array *fill = fill_value ? pn_astype(pn_reshape(fill_value, NULL, 0), t) : NULL;
    pn_array *r[4];
    if (n == 0) {
        r[0] = fill ? pn_full(&size, 1, fill, t) : pn_zeros(&size, 1, t); /* size 0 without fill */
        r[1] = pn_zeros(&size, 1, PN_UINT32);
        r[2] = pn_zeros(pn_shape(a), pn_ndim(a), PN_UINT32);
        r[3] = pn_zeros(&size, 1, PN_INT32);
    } else {
        pn_array *flat = pn_reshape(a, &n, 1);
        pn_array *perm = pn_argsort(flat, 0);
        pn_array *sorted = pn_take(flat, perm, 0);
        pn_array *start = pn_ones((int64_t[]){1}, 1, PN_BOOL);
        if (n > 1) {
            pn_array *parts[2] = {start, pn_not_equal(range1(sorted, 1, n), range1(sorted, 0, n - 1))};
            start = pn_concatenate(parts, 2, 0);
        }
        pn_array *gid = pn_subtract(pn_cumsum(pn_astype(start, PN_INT32), 0, false, true),
                                    pn_scalar_int(1, PN_INT32));
        pn_array *nuniq = pn_add(pn_reshape(range1(gid, n - 1, n), NULL, 0), pn_scalar_int(1, PN_INT32));
        int64_t col[2] = {n, 1};
        pn_array *inv = pn_put_along_axis(pn_zeros(&n, 1, PN_INT32), perm, gid, 0);
        inv = pn_minimum(inv, pn_scalar_int(size > 0 ? size - 1 : 0, PN_INT32));
        pn_array *counts = pn_scatter(pn_zeros(&n, 1, PN_INT32), &gid, 1, pn_ones(col, 2, PN_INT32),
                                      (int[]){0}, PN_SCATTER_ADD);
        pn_array *first = pn_scatter(pn_full(&n, 1, pn_scalar_int(n, PN_UINT32), PN_UINT32), &gid, 1,
                                     pn_reshape(perm, col, 2), (int[]){0}, PN_SCATTER_MIN);
        pn_array *valid = pn_less(pn_arange(0, (double)size, 1, PN_INT32), nuniq);
        pn_array *index = pn_where(valid, resize1(first, n, size, u32(0)),
                                   pn_reshape(range1(first, 0, 1), NULL, 0));
        pn_array *values = pn_take(flat, index, 0);
        r[0] = fill ? pn_where(valid, values, fill) : values;
        r[1] = index;
        r[2] = inv ? pn_reshape(pn_astype(inv, PN_UINT32), pn_shape(a), pn_ndim(a)) : NULL;
        r[3] = resize1(counts, n, size, pn_scalar_int(0, PN_INT32));
    }
    bool ok = r[0] && r[1] && r[2] && r[3];
    pn_scope_pop_keep(r, ok ? 4 : 0);
    if (!ok) return -1;
    for (int k = 0; k < 4; k++) out[k] = r[k];
    return 0;
}

/* ───────────────────────────── det, slogdet ───────────────────────────── */

/* Checks a for det/slogdet (fn names the function) and factors it: d (..., n) the diagonal of
 * U and psign (...) the permutation's sign (-1 for an odd number of row swaps), both in the
 * compute dtype (float64 for float64 input, else float32). Sets *out_t to the result dtype
 * (a's for floating a, float32 otherwise) and *empty for n = 0 (d and psign are then NULL).
 * 0 or -1. Arrays belong to the current scope. */
static int det_factor(const char *fn, pn_array *a, pn_array **d, pn_array **psign, pn_dtype *out_t,
                      bool *empty)
{
    char op[32];
    snprintf(op, sizeof op, "linalg::%s", fn);
    if (!pnC_inputs_ok(op, 1, &a)) return -1;
    int nd = pn_ndim(a);
    pn_dtype t = pn_array_dtype(a);
    if (nd < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Arrays must have >= 2 dimensions. Received array with %d dimensions.", op, nd),
               -1;
    if (pn_dim(a, -1) != pn_dim(a, -2))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Only defined for square matrices.", op), -1;
    if (t == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Complex inputs are not supported.", op), -1;
    *out_t = pnC_is_float(t) ? t : PN_FLOAT32;
    int64_t n = pn_dim(a, -1);
    *empty = n == 0;
    *d = *psign = NULL;
    if (n == 0) return 0;
    pn_dtype ct = t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *lu, *piv;
    if (pn_linalg_lu_factor(t == ct ? a : pn_astype(a, ct), &lu, &piv)) return -1;
    *d = pn_diagonal(lu, 0, -2, -1);
    pn_array *swaps = pn_sum(pn_astype(pn_not_equal(piv, pn_arange(0, (double)n, 1, PN_UINT32)), PN_INT32),
                             (int[]){-1}, 1, false);
    pn_array *odd = pn_astype(pn_bitwise_and(swaps, pn_scalar_int(1, PN_INT32)), ct);
    *psign = pn_subtract(pn_scalar(1.0, ct), pn_multiply(pn_scalar(2.0, ct), odd));
    return *d && *psign ? 0 : -1;
}

/* The batch shape of a (..., n, n). */
static int batch_of(pn_array *a, int64_t *shape)
{
    int nd = pn_ndim(a) - 2;
    for (int k = 0; k < nd; k++) shape[k] = pn_shape(a)[k];
    return nd;
}

/* See ponte.h. det = psign * prod(diag(U)). */
pn_array *pn_linalg_det(pn_array *a)
{
    pn_scope_push();
    pn_array *d, *psign;
    pn_dtype t;
    bool empty;
    if (det_factor("det", a, &d, &psign, &t, &empty)) return pnC_scope_return(NULL);
    int64_t bs[PNC_MAX_NDIM];
    if (empty) return pnC_scope_return(pn_ones(bs, batch_of(a, bs), t));
    pn_array *r = pn_multiply(psign, pn_prod(d, (int[]){-1}, 1, false));
    return pnC_scope_return(r && pn_array_dtype(r) != t ? pn_astype(r, t) : r);
}

/* See ponte.h. sign = psign * prod(sign(diag(U))), logabsdet = sum(log|diag(U)|). */
int pn_linalg_slogdet(pn_array *a, pn_array **sign, pn_array **logabsdet)
{
    sign[0] = logabsdet[0] = NULL;
    pn_scope_push();
    pn_array *d, *psign, *r[2];
    pn_dtype t;
    bool empty;
    if (det_factor("slogdet", a, &d, &psign, &t, &empty)) {
        pn_scope_pop();
        return -1;
    }
    int64_t bs[PNC_MAX_NDIM];
    if (empty) {
        int nb = batch_of(a, bs);
        r[0] = pn_ones(bs, nb, t), r[1] = pn_zeros(bs, nb, t);
    } else {
        r[0] = pn_astype(pn_multiply(psign, pn_prod(pn_sign(d), (int[]){-1}, 1, false)), t);
        r[1] = pn_astype(pn_sum(pn_log(pn_abs(d)), (int[]){-1}, 1, false), t);
    }
    bool ok = r[0] && r[1];
    pn_scope_pop_keep(r, ok ? 2 : 0);
    if (!ok) return -1;
    sign[0] = r[0], logabsdet[0] = r[1];
    return 0;
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
                        shape_str(targets, b1, sizeof b1), shape_str(logits, b2, sizeof b2));
    if (pn_size(logits) == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cross_entropy] Received empty logits of shape %s.",
                        shape_str(logits, b2, sizeof b2));
    pn_scope_push();
    pn_dtype ct = lt == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *x = lt == ct ? logits : pn_astype(logits, ct);
    pn_array *lse = pn_logsumexp(x, (int[]){-1}, 1, false);
    pn_array *picked = pn_squeeze(pn_take_along_axis(x, pn_expand_dims(targets, (int[]){-1}, 1), -1), (int[]){-1}, 1);
    pn_array *r = pn_subtract(lse, picked);
    return pnC_scope_return(ct == PN_FLOAT32 ? r : pn_astype(r, PN_FLOAT32));
}
