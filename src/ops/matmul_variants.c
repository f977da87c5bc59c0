/* matmul_variants.c — mlx.core's matmul variants as compositions of existing ops, so every
 * backend runs them and their derivatives come from their parts: gather_mm (take of the
 * flattened batch + batched matmul), block_masked_mm (masks expanded to elements, applied by
 * select or multiply), segmented_mm (one masked product per segment of the inner axis). */
#include "core/core.h"

#include <stdlib.h>

/* Promoted floating dtype of a and b, or -1 with MLX's matmul error. */
static int float_result(const char *op, pn_array *a, pn_array *b)
{
    pn_dtype t = pn_promote_types(a->dtype, b->dtype);
    if (!pnC_is_float(t)) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Only real floating point types are supported but "
                 "%s and %s were provided which results in %s, which is not a real floating point "
                 "type.", op, pn_dtype_name(a->dtype), pn_dtype_name(b->dtype), pn_dtype_name(t));
        return -1;
    }
    return (int)t;
}

pn_array *pn_gather_mm(pn_array *a, pn_array *b, pn_array *lhs_indices, pn_array *rhs_indices,
                       bool sorted_indices)
{
    (void)sorted_indices; /* a hint for a faster kernel; the composition does not need it */
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("gather_mm", 2, ins)) return NULL;
    if (pnC_failed()) return NULL; /* a NULL index array coming from a failed op */
    if (a->ndim == 0 || b->ndim == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_mm] Got 0 dimension input. Inputs must "
                        "have at least one dimension.");
    if ((lhs_indices && !pnC_is_integer(lhs_indices->dtype)) ||
        (rhs_indices && !pnC_is_integer(rhs_indices->dtype)))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_mm] Got indices with invalid dtype. "
                        "Indices must be integral.");
    int dtype = float_result("gather_mm", a, b);
    if (dtype < 0) return NULL;
    pn_scope_push();
    /* vectors become a (1, K) row / a (K, 1) column, removed again at the end */
    bool a_vec = a->ndim == 1, b_vec = b->ndim == 1;
    pn_array *x = a_vec ? pn_expand_dims(a, (int[]){0}, 1) : a;
    pn_array *y = b_vec ? pn_expand_dims(b, (int[]){1}, 1) : b;
    if (x && y && x->shape[x->ndim - 1] != y->shape[y->ndim - 2]) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_mm] Last dimension of first input (%lld) must "
                 "match second to last dimension of second input (%lld).",
                 (long long)x->shape[x->ndim - 1], (long long)y->shape[y->ndim - 2]);
        pn_scope_pop();
        return NULL;
    }
    pn_array *bidx[2];
    if (pnC_gather_indices(x, lhs_indices, y, rhs_indices, bidx)) {
        pn_scope_pop();
        return NULL;
    }
    pn_array *r = pn_matmul(pn_astype(pnC_take_batch(x, bidx[0]), (pn_dtype)dtype),
                            pn_astype(pnC_take_batch(y, bidx[1]), (pn_dtype)dtype));
    if (r && (a_vec || b_vec)) {
        int axes[2], n = 0;
        if (a_vec) axes[n++] = r->ndim - 2;
        if (b_vec) axes[n++] = r->ndim - 1;
        r = pn_squeeze(r, axes, n);
    }
    return pnC_scope_return(r);
}

/* A block mask (..., ceil(R / bs), ceil(C / bs)) expanded to elements (..., R, C). */
static pn_array *expand_mask(const char *what, pn_array *mask, int64_t rows, int64_t cols,
                             int bs)
{
    int nd = mask->ndim;
    int64_t br = (rows + bs - 1) / bs, bc = (cols + bs - 1) / bs;
    if (nd < 2 || (mask->shape[nd - 2] != br && mask->shape[nd - 2] != 1) ||
        (mask->shape[nd - 1] != bc && mask->shape[nd - 1] != 1))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[block_masked_mm] %s must have shape (..., %lld, "
                        "%lld) for block size %d, got a %d-d mask with trailing extents (%lld, %lld).",
                        what, (long long)br, (long long)bc, bs, nd,
                        (long long)(nd >= 2 ? mask->shape[nd - 2] : 0),
                        (long long)(nd >= 1 ? mask->shape[nd - 1] : 0));
    if (!pnC_is_float(mask->dtype) && mask->dtype != PN_BOOL)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[block_masked_mm] %s must be boolean or floating, "
                        "got %s.", what, pn_dtype_name(mask->dtype));
    pn_array *m = pn_repeat(pn_repeat(mask, mask->shape[nd - 2] == 1 ? 1 : bs, nd - 2),
                            mask->shape[nd - 1] == 1 ? 1 : bs, nd - 1);
    if (!m) return NULL;
    int64_t start[PNC_MAX_NDIM] = {0}, stop[PNC_MAX_NDIM];
    for (int i = 0; i < nd; i++) stop[i] = m->shape[i];
    if (stop[nd - 2] > rows) stop[nd - 2] = rows;
    if (stop[nd - 1] > cols) stop[nd - 1] = cols;
    return pn_slice(m, start, stop, NULL, nd);
}

/* x where the (expanded) mask is true / x times the mask (floating masks). */
static pn_array *apply_mask(pn_array *x, pn_array *m)
{
    if (!m) return x;
    if (m->dtype == PN_BOOL) return pn_where(m, x, pn_scalar(0, x->dtype));
    return pn_multiply(x, pn_astype(m, x->dtype));
}

pn_array *pn_block_masked_mm(pn_array *a, pn_array *b, int block_size, pn_array *mask_out,
                             pn_array *mask_lhs, pn_array *mask_rhs)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("block_masked_mm", 2, ins)) return NULL;
    if (pnC_failed()) return NULL; /* a NULL mask coming from a failed op */
    if (block_size <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[block_masked_mm] block_size must be positive, "
                        "got %d.", block_size);
    if (a->ndim == 0 || b->ndim == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[block_masked_mm] Got 0 dimension input. Inputs "
                        "must have at least one dimension.");
    int dtype = float_result("block_masked_mm", a, b);
    if (dtype < 0) return NULL;
    pn_scope_push();
    bool a_vec = a->ndim == 1, b_vec = b->ndim == 1;
    pn_array *x = pn_astype(a_vec ? pn_expand_dims(a, (int[]){0}, 1) : a, (pn_dtype)dtype);
    pn_array *y = pn_astype(b_vec ? pn_expand_dims(b, (int[]){1}, 1) : b, (pn_dtype)dtype);
    pn_array *r = NULL;
    if (x && y) {
        int64_t m = x->shape[x->ndim - 2], k = x->shape[x->ndim - 1], n = y->shape[y->ndim - 1];
        if (y->shape[y->ndim - 2] != k) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[block_masked_mm] Last dimension of first input "
                     "(%lld) must match second to last dimension of second input (%lld).",
                     (long long)k, (long long)y->shape[y->ndim - 2]);
        } else {
            pn_array *ml = mask_lhs ? expand_mask("mask_lhs", mask_lhs, m, k, block_size) : NULL;
            pn_array *mr = mask_rhs ? expand_mask("mask_rhs", mask_rhs, k, n, block_size) : NULL;
            pn_array *mo = mask_out ? expand_mask("mask_out", mask_out, m, n, block_size) : NULL;
            if (!pnC_failed()) r = apply_mask(pn_matmul(apply_mask(x, ml), apply_mask(y, mr)), mo);
        }
    }
    if (r && (a_vec || b_vec)) {
        int axes[2], na = 0;
        if (a_vec) axes[na++] = r->ndim - 2;
        if (b_vec) axes[na++] = r->ndim - 1;
        r = pn_squeeze(r, axes, na);
    }
    return pnC_scope_return(r);
}

pn_array *pn_segmented_mm(pn_array *a, pn_array *b, pn_array *segments)
{
    pn_array *ins[3] = {a, b, segments};
    if (!pnC_inputs_ok("segmented_mm", 3, ins)) return NULL;
    if (a->ndim != 2 || b->ndim != 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[segmented_mm] Batched matmul not supported: a and "
                        "b must be 2-d, got %d-d and %d-d.", a->ndim, b->ndim);
    if (a->shape[1] != b->shape[0])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[segmented_mm] Last dimension of first input "
                        "(%lld) must match first dimension of second input (%lld).",
                        (long long)a->shape[1], (long long)b->shape[0]);
    if (segments->ndim < 1 || segments->shape[segments->ndim - 1] != 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[segmented_mm] The segments should have shape "
                        "(..., 2) but a %d-d array with last extent %lld was provided.",
                        segments->ndim,
                        (long long)(segments->ndim ? segments->shape[segments->ndim - 1] : 0));
    if (!pnC_is_integer(segments->dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[segmented_mm] Got segments with invalid dtype. "
                        "Segments must be integral.");
    int dtype = float_result("segmented_mm", a, b);
    if (dtype < 0) return NULL;
    pn_scope_push();
    int sd = segments->ndim;
    int64_t k = a->shape[1];
    /* mask[..., j] = start <= j < end, shape segments.shape[:-1] + (1, K) */
    int64_t lo[PNC_MAX_NDIM] = {0}, hi[PNC_MAX_NDIM];
    for (int i = 0; i < sd; i++) hi[i] = segments->shape[i];
    hi[sd - 1] = 1;
    pn_array *seg = pn_astype(segments, PN_INT64);
    pn_array *start = pn_slice(seg, lo, hi, NULL, sd);
    lo[sd - 1] = 1, hi[sd - 1] = 2;
    pn_array *end = pn_slice(seg, lo, hi, NULL, sd);
    pn_array *j = pn_arange(0, (double)k, 1, PN_INT64);
    pn_array *mask = pn_logical_and(pn_greater_equal(j, start), pn_less(j, end));
    mask = pn_expand_dims(mask, (int[]){-2}, 1);
    pn_array *x = pn_astype(a, (pn_dtype)dtype);
    pn_array *r = pn_matmul(pn_where(mask, x, pn_scalar(0, (pn_dtype)dtype)),
                            pn_astype(b, (pn_dtype)dtype));
    return pnC_scope_return(r);
}
