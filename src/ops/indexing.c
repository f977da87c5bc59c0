/* indexing.c — op constructors of take, take_along_axis, put_along_axis, gather and scatter:
 * MLX's checks, output shapes and broadcasting, and each primitive's derivatives written with
 * public ops (so they compose). One CPU kernel serves them all (backend/cpu/indexing.c); its
 * out-of-range policy: negative indices wrap once, gathers clamp, scatters drop. */
#include "ops/indexing.h"

#include "backend/cpu/indexing.h"
#include "backend/cuda/eval.h"

pn_array *pnC_alias(pn_array *a); /* core/array.c: a new handle on the same values */

extern const pnC_primitive take_prim, take_scatter_prim, gather_prim, gather_axis_prim,
    scatter_prim, scatter_axis_prim;

/* ───────────────────────────── helpers ───────────────────────────── */

static pnK_index_params index_params(pnK_index_kind kind, pn_scatter_mode mode, int axis)
{
    pnK_index_params p;
    memset(&p, 0, sizeof p); /* params are compared bytewise: no garbage in padding */
    p.kind = kind;
    p.mode = mode;
    p.axis = axis;
    return p;
}

/* Index arrays must hold integers (bool, float and complex are rejected, as MLX). */
static bool index_dtype_ok(const char *op, const pn_array *x)
{
    if (pnC_is_integer(x->dtype)) return true;
    pnC_fail(PN_ERR_INVALID_ARGUMENT,
             "[%s] Got indices with invalid dtype %s. Indices must be integral.", op,
             pn_dtype_name(x->dtype));
    return false;
}

static bool same_shape(const int64_t *a, int na, const int64_t *b, int nb)
{
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* Closes a vjp/jvp scope keeping the n results; on failure releases them. 0 or -1. */
static int keep_results(pn_array **r, int n, bool ok)
{
    pn_scope_pop_keep(r, n);
    if (ok) return 0;
    for (int i = 0; i < n; i++) pn_release(r[i]), r[i] = NULL;
    return -1;
}

static pn_array *zeros_like_or(pn_array *t, pn_array *like) { return t ? t : pn_zeros_like(like); }

/* ───────────────────────────── take ───────────────────────────── */

/* take along a validated axis: out = a.shape[:ax] + idx.shape + a.shape[ax+1:]. */
static pn_array *take_node(pn_array *a, pn_array *idx, int ax)
{
    int nd = a->ndim - 1 + idx->ndim;
    if (nd > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[take] The result would have %d dimensions.", nd);
    int64_t shape[PNC_MAX_NDIM];
    int k = 0;
    for (int d = 0; d < ax; d++) shape[k++] = a->shape[d];
    for (int d = 0; d < idx->ndim; d++) shape[k++] = idx->shape[d];
    for (int d = ax + 1; d < a->ndim; d++) shape[k++] = a->shape[d];
    pnK_index_params p = index_params(PNK_IDX_TAKE, PN_SCATTER_SET, ax);
    pn_array *ins[2] = {a, idx};
    return pnC_make(&take_prim, &p, sizeof p, 2, ins, a->dtype, shape, nd);
}

/* The transpose of take: z (a-shaped) with upd's slices added at idx along ax. */
static pn_array *take_scatter(pn_array *z, pn_array *idx, pn_array *upd, int ax)
{
    pn_array *ins[3] = {z, idx, upd};
    if (!pnC_inputs_ok("take", 3, ins)) return NULL;
    if (upd->dtype != z->dtype) ins[2] = pn_astype(upd, z->dtype);
    pnK_index_params p = index_params(PNK_IDX_TAKE_SCATTER, PN_SCATTER_ADD, ax);
    return pnC_make(&take_scatter_prim, &p, sizeof p, 3, ins, z->dtype, z->shape, z->ndim);
}

/* Elements of a at integer indices along axis (negative indices count from the end; out of
 * range ones are clamped). PN_ALL_AXES takes from the flattened array. */
pn_array *pn_take(pn_array *a, pn_array *indices, int axis)
{
    pn_array *ins[2] = {a, indices};
    if (!pnC_inputs_ok("take", 2, ins) || !index_dtype_ok("take", indices)) return NULL;
    if (axis == PN_ALL_AXES) {
        pn_scope_push();
        int64_t flat = a->size;
        return pnC_scope_return(pn_take(pn_reshape(a, &flat, 1), indices, 0));
    }
    int ax = pnC_axis("take", axis, a->ndim);
    if (ax < 0) return NULL;
    if (a->shape[ax] == 0 && indices->size != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[take] Cannot do a non-empty take from an empty axis.");
    return take_node(a, indices, ax);
}

static int take_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    bool ok = true;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (argnums[i] != 0 || !cot[0]) continue; /* indices get no gradient */
        ok &= (grads[i] = take_scatter(pn_zeros_like(in[0]), in[1], cot[0], p->axis)) != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int take_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_scope_push();
    out_tan[0] = tan[0] ? take_node(tan[0], in[1], p->axis) : NULL;
    return keep_results(out_tan, 1, !tan[0] || out_tan[0]);
}

static int take_scatter_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *cot, const int *argnums, int nargs,
                            pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    bool ok = true;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (!cot[0] || argnums[i] == 1) continue;
        grads[i] = argnums[i] == 0 ? pnC_alias(cot[0]) : take_node(cot[0], in[1], p->axis);
        ok &= grads[i] != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int take_scatter_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_scope_push();
    pn_array *r = NULL;
    if (tan[2]) r = take_scatter(zeros_like_or(tan[0], in[0]), in[1], tan[2], p->axis);
    else if (tan[0]) r = pnC_alias(tan[0]);
    out_tan[0] = r;
    return keep_results(out_tan, 1, r || (!tan[0] && !tan[2]));
}

/* ───────────────────────────── take_along_axis ───────────────────────────── */

/* a[..., indices[..., j, ...], ...] along axis; a and indices broadcast against each other
 * on the other axes. PN_ALL_AXES takes from the flattened a with 1-d indices. */
pn_array *pn_take_along_axis(pn_array *a, pn_array *indices, int axis)
{
    pn_array *ins[2] = {a, indices};
    if (!pnC_inputs_ok("take_along_axis", 2, ins) || !index_dtype_ok("take_along_axis", indices))
        return NULL;
    if (axis == PN_ALL_AXES) {
        pn_scope_push();
        int64_t flat = a->size;
        return pnC_scope_return(pn_take_along_axis(pn_reshape(a, &flat, 1), indices, 0));
    }
    int ax = pnC_axis("take_along_axis", axis, a->ndim);
    if (ax < 0) return NULL;
    int nd = a->ndim;
    if (indices->ndim != nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[take_along_axis] Indices of dimension %d does not match array of "
                        "dimension %d.",
                        indices->ndim, nd);
    int64_t oshape[PNC_MAX_NDIM], ashape[PNC_MAX_NDIM];
    for (int d = 0; d < nd; d++) {
        int64_t x = a->shape[d], y = indices->shape[d];
        if (d == ax) {
            oshape[d] = y;
            ashape[d] = x;
            continue;
        }
        if (x != y && x != 1 && y != 1) {
            char sa[256], si[256];
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[take_along_axis] Indices with shape %s cannot be broadcast with an "
                            "array of shape %s on the axes other than %d.",
                            pnC_shape_str(indices->shape, nd, si, sizeof si),
                            pnC_shape_str(a->shape, nd, sa, sizeof sa), ax);
        }
        oshape[d] = ashape[d] = x == 1 ? y : x;
    }
    if (a->shape[ax] == 0 && pnC_shape_size(oshape, nd) != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[take_along_axis] Cannot do a non-empty take from an empty axis.");
    pn_scope_push();
    if (!same_shape(ashape, nd, a->shape, nd)) ins[0] = pn_broadcast_to(a, ashape, nd);
    pnK_index_params p = index_params(PNK_IDX_GATHER_AXIS, PN_SCATTER_SET, ax);
    return pnC_scope_return(
        pnC_make(&gather_axis_prim, &p, sizeof p, 2, ins, a->dtype, oshape, nd));
}

static int gather_axis_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                           pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    bool ok = true;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (argnums[i] != 0 || !cot[0]) continue;
        grads[i] = pnO_scatter_add_axis(pn_zeros_like(in[0]), in[1], cot[0], p->axis);
        ok &= grads[i] != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int gather_axis_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                           pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_scope_push();
    out_tan[0] = tan[0] ? pn_take_along_axis(tan[0], in[1], p->axis) : NULL;
    return keep_results(out_tan, 1, !tan[0] || out_tan[0]);
}

/* ───────────────────────────── put_along_axis / scatter_add_axis ───────────────────────────── */

/* MLX's scatter_axis: values (cast to a's dtype, leading singleton dims dropped) broadcast
 * with indices; a, indices and values broadcast on the axes other than axis. */
static pn_array *scatter_axis(const char *op, pn_array *a, pn_array *idx, pn_array *values,
                              int axis, pn_scatter_mode mode)
{
    pn_array *ins[3] = {a, idx, values};
    /* an empty a gives an empty result, which MLX never evaluates: indices of any dtype pass
     * (MLX checks the dtype in its kernels) */
    if (!pnC_inputs_ok(op, 3, ins) || (a->size > 0 && !index_dtype_ok(op, idx))) return NULL;
    if (axis == PN_ALL_AXES) {
        pn_scope_push();
        int64_t flat = a->size;
        pn_array *r = scatter_axis(op, pn_reshape(a, &flat, 1), idx, values, 0, mode);
        return pnC_scope_return(r ? pn_reshape(r, a->shape, a->ndim) : NULL);
    }
    int ax = pnC_axis(op, axis, a->ndim);
    if (ax < 0) return NULL;
    int nd = a->ndim;
    char s1[256], s2[256];
    if (idx->ndim != nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Indices of dimension %d does not match array of dimension %d.", op,
                        idx->ndim, nd);
    int lead = values->ndim > nd ? values->ndim - nd : 0;
    for (int d = 0; d < lead; d++)
        if (values->shape[d] != 1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Values with shape %s cannot be broadcast to indices with shape "
                            "%s.",
                            op, pnC_shape_str(values->shape, values->ndim, s1, sizeof s1),
                            pnC_shape_str(idx->shape, nd, s2, sizeof s2));
    int64_t ushape[PNC_MAX_NDIM], oshape[PNC_MAX_NDIM];
    if (pnC_broadcast_shapes(op, idx->shape, nd, values->shape + lead, values->ndim - lead,
                             ushape) < 0)
        return NULL;
    for (int d = 0; d < nd; d++) {
        int64_t x = a->shape[d], y = ushape[d];
        if (d == ax) {
            oshape[d] = x;
            continue;
        }
        if (x != y && x != 1 && y != 1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Indices and values with shape %s cannot be broadcast with an "
                            "array of shape %s on the axes other than %d.",
                            op, pnC_shape_str(ushape, nd, s1, sizeof s1),
                            pnC_shape_str(a->shape, nd, s2, sizeof s2), ax);
        oshape[d] = ushape[d] = x == 1 ? y : x;
    }
    pn_scope_push();
    pn_array *v = values;
    if (lead) v = pn_reshape(v, values->shape + lead, values->ndim - lead);
    if (v && v->dtype != a->dtype) v = pn_astype(v, a->dtype);
    if (v && !same_shape(v->shape, v->ndim, ushape, nd)) v = pn_broadcast_to(v, ushape, nd);
    if (!same_shape(oshape, nd, a->shape, nd)) ins[0] = pn_broadcast_to(a, oshape, nd);
    ins[2] = v;
    if (!pnC_is_integer(idx->dtype)) ins[1] = pn_astype(idx, PN_INT32); /* empty a only */
    pnK_index_params p = index_params(PNK_IDX_SCATTER_AXIS, mode, ax);
    return pnC_scope_return(
        pnC_make(&scatter_axis_prim, &p, sizeof p, 3, ins, a->dtype, oshape, nd));
}

/* A copy of a with values written at indices along axis (the last duplicate wins;
 * out-of-range indices are dropped). PN_ALL_AXES works on the flattened a. */
pn_array *pn_put_along_axis(pn_array *a, pn_array *indices, pn_array *values, int axis)
{
    return scatter_axis("put_along_axis", a, indices, values, axis, PN_SCATTER_SET);
}

pn_array *pnO_scatter_add_axis(pn_array *a, pn_array *indices, pn_array *values, int axis)
{
    return scatter_axis("scatter_add_axis", a, indices, values, axis, PN_SCATTER_ADD);
}

static int scatter_axis_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *cot, const int *argnums, int nargs,
                            pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    bool ok = true;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (!cot[0] || argnums[i] == 1) continue;
        pn_array *r;
        if (argnums[i] == 0) {
            /* set: what was overwritten gets no gradient; add: everything passes */
            r = p->mode == PN_SCATTER_SET
                    ? pn_put_along_axis(cot[0], in[1], pn_zeros_like(in[2]), p->axis)
                    : pnC_alias(cot[0]);
        } else {
            r = pn_take_along_axis(cot[0], in[1], p->axis);
            if (r && !same_shape(r->shape, r->ndim, in[2]->shape, in[2]->ndim))
                r = pn_broadcast_to(r, in[2]->shape, in[2]->ndim); /* indices stretched on axis */
        }
        ok &= (grads[i] = r) != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int scatter_axis_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_scope_push();
    pn_array *r = NULL;
    if (tan[2] || (tan[0] && p->mode == PN_SCATTER_SET)) {
        r = scatter_axis(p->mode == PN_SCATTER_SET ? "put_along_axis" : "scatter_add_axis",
                         zeros_like_or(tan[0], in[0]), in[1], zeros_like_or(tan[2], in[2]),
                         p->axis, p->mode);
    } else if (tan[0]) {
        r = pnC_alias(tan[0]);
    }
    out_tan[0] = r;
    return keep_results(out_tan, 1, r || (!tan[0] && !tan[2]));
}

/* ───────────────────────────── gather / scatter ───────────────────────────── */

/* Normalizes the nidx axes of an MLX gather/scatter (negative counts from the end). */
static int index_axes(const char *op, const pn_array *a, const int *axes, int nidx, int *out)
{
    for (int k = 0; k < nidx; k++) {
        int ax = axes[k] < 0 ? axes[k] + a->ndim : axes[k];
        if (ax < 0 || ax >= a->ndim) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Axes don't match array dimensions.", op);
            return -1;
        }
        for (int j = 0; j < k; j++) {
            if (out[j] == ax) {
                pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Repeat axes not allowed in %s.", op, op);
                return -1;
            }
        }
        out[k] = ax;
    }
    return 0;
}

/* Checks the common arguments of gather/scatter and broadcasts the index shapes into
 * ishape. Returns the index rank or -1 with an error. */
static int check_index_arrays(const char *op, const pn_array *a, pn_array *const *indices,
                              int nidx, const int *axes, int *ax, int64_t *ishape)
{
    if (nidx < 0 || (nidx > 0 && (!indices || !axes))) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Got %d index arrays without %s.", op, nidx,
                 indices ? "axes" : "indices");
        return -1;
    }
    if (nidx > 0 && !pnC_inputs_ok(op, nidx, indices)) return -1;
    if (nidx > a->ndim) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT,
                 "[%s] Too many index arrays. Got %d index arrays for input with %d dimensions.",
                 op, nidx, a->ndim);
        return -1;
    }
    if (index_axes(op, a, axes, nidx, ax)) return -1;
    int m = 0;
    for (int k = 0; k < nidx; k++) {
        if (!index_dtype_ok(op, indices[k])) return -1;
        int64_t tmp[PNC_MAX_NDIM];
        m = pnC_broadcast_shapes(op, ishape, m, indices[k]->shape, indices[k]->ndim, tmp);
        if (m < 0) return -1;
        memcpy(ishape, tmp, sizeof(int64_t) * (size_t)m);
    }
    return m;
}

/* MLX's gather: the nidx index arrays (broadcast together) give, for each index position,
 * the start of a slice of slice_sizes along axes; out = broadcast(indices).shape +
 * slice_sizes. Out-of-range starts are clamped so the slice fits. */
pn_array *pn_gather(pn_array *a, pn_array *const *indices, int nidx, const int *axes,
                    const int64_t *slice_sizes)
{
    if (!pnC_inputs_ok("gather", 1, &a)) return NULL;
    int ax[PNC_MAX_NDIM];
    int64_t shape[PNC_MAX_NDIM];
    int m = check_index_arrays("gather", a, indices, nidx, axes, ax, shape);
    if (m < 0) return NULL;
    int n = a->ndim;
    char s1[256], s2[256];
    if (n > 0 && !slice_sizes)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather] slice_sizes is NULL.");
    if (m + n > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather] The result would have %d dimensions.",
                        m + n);
    int64_t total_slice = 1, idx_size = pnC_shape_size(shape, m);
    bool bad = false;
    for (int d = 0; d < n; d++) {
        total_slice *= slice_sizes[d];
        bad |= slice_sizes[d] < 0 || (a->size != 0 && slice_sizes[d] > a->shape[d]);
    }
    if (bad)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[gather] Slice sizes must be in [0, a.shape(i)]. Got %s for array with "
                        "shape %s.",
                        pnC_shape_str(slice_sizes, n, s1, sizeof s1),
                        pnC_shape_str(a->shape, n, s2, sizeof s2));
    if (a->size == 0 && idx_size != 0 && total_slice != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[gather] If the input is empty, either the indices must be empty or the "
                        "total slice size must be 0.");
    for (int d = 0; d < n; d++) shape[m + d] = slice_sizes[d];
    pnK_index_params p = index_params(PNK_IDX_GATHER, PN_SCATTER_SET, 0);
    p.nidx = nidx;
    memcpy(p.axes, ax, sizeof(int) * (size_t)nidx);
    if (n > 0) memcpy(p.slice_sizes, slice_sizes, sizeof(int64_t) * (size_t)n);
    pn_array *ins[PNC_MAX_NDIM + 1];
    ins[0] = a;
    for (int k = 0; k < nidx; k++) ins[1 + k] = indices[k];
    return pnC_make(&gather_prim, &p, sizeof p, 1 + nidx, ins, a->dtype, shape, m + n);
}

static int gather_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    bool ok = true;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (argnums[i] != 0 || !cot[0]) continue;
        grads[i] = pn_scatter(pn_zeros_like(in[0]), in + 1, p->nidx, cot[0], p->axes,
                              PN_SCATTER_ADD);
        ok &= grads[i] != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int gather_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_scope_push();
    out_tan[0] = tan[0] ? pn_gather(tan[0], in + 1, p->nidx, p->axes, p->slice_sizes) : NULL;
    return keep_results(out_tan, 1, !tan[0] || out_tan[0]);
}

/* MLX's scatter: a copy of a where each slice of updates (shape broadcast(indices).shape +
 * slice shape, the slice no larger than a) lands at its index position along axes, combined
 * by mode. Duplicates: set keeps the last, the others accumulate. Slices that would not fit
 * are dropped. */
pn_array *pn_scatter(pn_array *a, pn_array *const *indices, int nidx, pn_array *updates,
                     const int *axes, pn_scatter_mode mode)
{
    pn_array *au[2] = {a, updates};
    if (!pnC_inputs_ok("scatter", 2, au)) return NULL;
    if ((unsigned)mode > PN_SCATTER_MIN)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[scatter] Invalid mode %d.", (int)mode);
    int ax[PNC_MAX_NDIM];
    int64_t ishape[PNC_MAX_NDIM];
    int m = check_index_arrays("scatter", a, indices, nidx, axes, ax, ishape);
    if (m < 0) return NULL;
    int n = a->ndim;
    char s1[256], s2[256];
    if (updates->ndim != n + m)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[scatter] Updates with %d dimensions does not match the sum of the array "
                        "(%d) and indices (%d) dimensions.",
                        updates->ndim, n, m);
    if (!same_shape(updates->shape, m, ishape, m))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[scatter] Update shape %s is not valid for broadcasted index shape %s.",
                        pnC_shape_str(updates->shape, updates->ndim, s1, sizeof s1),
                        pnC_shape_str(ishape, m, s2, sizeof s2));
    for (int d = 0; d < n; d++)
        if (updates->shape[m + d] > a->shape[d])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[scatter] Updates with shape %s are too large for array with shape "
                            "%s.",
                            pnC_shape_str(updates->shape, updates->ndim, s1, sizeof s1),
                            pnC_shape_str(a->shape, n, s2, sizeof s2));
    pnK_index_params p = index_params(PNK_IDX_SCATTER, mode, 0);
    p.nidx = nidx;
    memcpy(p.axes, ax, sizeof(int) * (size_t)nidx);
    pn_scope_push();
    pn_array *ins[PNC_MAX_NDIM + 2];
    ins[0] = a;
    for (int k = 0; k < nidx; k++) ins[1 + k] = indices[k];
    ins[1 + nidx] = updates->dtype == a->dtype ? updates : pn_astype(updates, a->dtype);
    return pnC_scope_return(
        pnC_make(&scatter_prim, &p, sizeof p, 2 + nidx, ins, a->dtype, a->shape, n));
}

static pn_array *scatter_not_differentiable(void)
{
    return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                    "[scatter] scatter_prod is not differentiable (no vjp/jvp).");
}

/* Where the result came from the updates (max/min): updates equal to the gathered result. */
static pn_array *update_won(const pnC_node *node, pn_array *const *in, pn_array *out)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    pn_array *upd = in[1 + p->nidx];
    const int64_t *ss = upd->shape + (upd->ndim - in[0]->ndim);
    return pn_equal(pn_gather(out, in + 1, p->nidx, p->axes, ss), upd);
}

static int scatter_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    int ui = 1 + p->nidx;
    pn_array *upd = in[ui], *g = cot[0];
    const int64_t *ss = upd->shape + (upd->ndim - in[0]->ndim);
    bool ok = true, minmax = p->mode == PN_SCATTER_MAX || p->mode == PN_SCATTER_MIN;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (!g || (argnums[i] != 0 && argnums[i] != ui)) continue;
        pn_array *r;
        if (p->mode == PN_SCATTER_PROD) {
            r = scatter_not_differentiable();
        } else if (argnums[i] == 0) {
            r = p->mode == PN_SCATTER_SET ? pn_scatter(g, in + 1, p->nidx, pn_zeros_like(upd),
                                                      p->axes, PN_SCATTER_SET)
                : p->mode == PN_SCATTER_ADD ? pnC_alias(g)
                                            : pn_multiply(g, pn_equal(out[0], in[0]));
        } else {
            r = pn_gather(g, in + 1, p->nidx, p->axes, ss);
            if (minmax) r = pn_multiply(r, update_won(node, in, out[0]));
        }
        ok &= (grads[i] = r) != NULL;
    }
    return keep_results(grads, nargs, ok);
}

static int scatter_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    int ui = 1 + p->nidx;
    pn_array *ta = tan[0], *tu = tan[ui], *r = NULL;
    pn_scope_push();
    if (!ta && !tu) {
        /* zero tangent */
    } else if (p->mode == PN_SCATTER_PROD) {
        r = scatter_not_differentiable();
    } else if (p->mode == PN_SCATTER_SET) {
        r = pn_scatter(zeros_like_or(ta, in[0]), in + 1, p->nidx, zeros_like_or(tu, in[ui]),
                       p->axes, PN_SCATTER_SET);
    } else if (p->mode == PN_SCATTER_ADD) {
        r = tu ? pn_scatter(zeros_like_or(ta, in[0]), in + 1, p->nidx, tu, p->axes,
                            PN_SCATTER_ADD)
               : pnC_alias(ta);
    } else { /* max/min: the transpose of the vjp's masks */
        if (ta) r = pn_multiply(ta, pn_equal(out[0], in[0]));
        if (tu) {
            pn_array *s = pn_scatter(pn_zeros_like(in[0]), in + 1, p->nidx,
                                     pn_multiply(tu, update_won(node, in, out[0])), p->axes,
                                     PN_SCATTER_ADD);
            r = r ? pn_add(r, s) : s;
        }
    }
    out_tan[0] = r;
    return keep_results(out_tan, 1, r || (!ta && !tu));
}

/* ───────────────────────────── batching rules ───────────────────────────── */

/* Indices i (B, ...) along an axis of extent N made absolute in the flattened (B * N) axis,
 * negative ones counted from the end first; out-of-range ones are clamped, as gathers do, or
 * (scatter) sent past B * N, where the scatter drops them as it drops them per item. */
static pn_array *flat_batch_indices(pn_array *i, int64_t N, bool scatter)
{
    int64_t B = i->shape[0], s[PNC_MAX_NDIM];
    pn_array *x = pn_astype(i, PN_INT64);
    x = pn_where(pn_less(x, pn_scalar_int(0, PN_INT64)), pn_add(x, pn_scalar_int(N, PN_INT64)), x);
    pn_array *lo = pn_scalar_int(0, PN_INT64), *hi = pn_scalar_int(N - 1, PN_INT64);
    s[0] = B;
    for (int d = 1; d < i->ndim; d++) s[d] = 1;
    pn_array *off = pn_reshape(pn_arange(0, (double)(B * N), (double)N, PN_INT64), s, i->ndim);
    if (!scatter) return pn_add(pn_clip(x, lo, hi), off);
    pn_array *out = pn_logical_or(pn_less(x, lo), pn_greater(x, hi));
    return pn_where(out, pn_scalar_int(B * N, PN_INT64), pn_add(x, off));
}

/* The permutation that moves axes [from, from + n) of an ndim array to just after axis 0,
 * keeping the others in order (or back, when inverse). */
static void move_block_perm(int ndim, int from, int n, bool inverse, int *perm)
{
    int fwd[PNC_MAX_NDIM], k = 0;
    fwd[k++] = 0;
    for (int d = from; d < from + n; d++) fwd[k++] = d;
    for (int d = 1; d < ndim; d++)
        if (d < from || d >= from + n) fwd[k++] = d;
    for (int d = 0; d < ndim; d++) {
        if (inverse) perm[fwd[d]] = d;
        else perm[d] = fwd[d];
    }
}

/* Take and its transpose: with unmapped indices the batch is one more leading axis of a; with
 * mapped indices the batch and the taken axis flatten into one axis of B * N that the
 * indices, offset per batch item, address. */
static int take_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                     int *out_axes)
{
    int64_t B = pnC_batch_extent(in, in_axes, 2);
    if (in_axes[0] < 0 && in_axes[1] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    int ax = PNC_PARAMS(node, pnK_index_params)->axis;
    pn_scope_push();
    pn_array *a = pnC_batch_lead(in[0], in_axes[0], B), *r = NULL;
    if (a && in_axes[1] < 0) {
        r = take_node(a, in[1], ax + 1);
    } else if (a && a->shape[ax + 1] == 0) { /* nothing to take from: empty indices only */
        int64_t s[PNC_MAX_NDIM];
        int nd = pnC_batch_shape(B, node->out_shapes[0], node->out_ndims[0], s);
        r = nd < 0 ? NULL : pn_zeros(s, nd, a->dtype);
    } else if (a) {
        int64_t N = a->shape[ax + 1], s[PNC_MAX_NDIM];
        pn_array *a2 = pn_moveaxis(a, ax + 1, 1);
        s[0] = B * N;
        for (int d = 2; a2 && d < a2->ndim; d++) s[d - 1] = a2->shape[d];
        pn_array *i = pnC_batch_front(in[1], in_axes[1], 0);
        pn_array *t = a2 && i ? take_node(pn_reshape(a2, s, a2->ndim - 1), flat_batch_indices(i, N, false), 0) : NULL;
        int perm[PNC_MAX_NDIM], ni = i ? i->ndim - 1 : 0;
        /* t: (B, idx..., pre..., post...) -> (B, pre..., idx..., post...) */
        if (t) move_block_perm(t->ndim, 1 + ni, ax, false, perm);
        r = t ? pn_transpose(t, perm, t->ndim) : NULL;
    }
    out[0] = r;
    out_axes[0] = 0;
    return keep_results(out, 1, r != NULL);
}

static int take_scatter_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                             pn_array **out, int *out_axes)
{
    int64_t B = pnC_batch_extent(in, in_axes, 3);
    if (!pnC_any_mapped(in_axes, 3)) return pnC_batch_rebuild(node, in, out, out_axes);
    int ax = PNC_PARAMS(node, pnK_index_params)->axis;
    pn_scope_push();
    pn_array *z = pnC_batch_lead(in[0], in_axes[0], B), *u = pnC_batch_lead(in[2], in_axes[2], B);
    pn_array *r = NULL;
    if (z && u && in_axes[1] < 0) {
        r = take_scatter(z, in[1], u, ax + 1);
    } else if (z && u && z->shape[ax + 1] == 0) {
        r = z;
    } else if (z && u) {
        int64_t N = z->shape[ax + 1], s[PNC_MAX_NDIM];
        pn_array *z2 = pn_moveaxis(z, ax + 1, 1);
        s[0] = B * N;
        for (int d = 2; z2 && d < z2->ndim; d++) s[d - 1] = z2->shape[d];
        pn_array *i = pnC_batch_front(in[1], in_axes[1], 0);
        int perm[PNC_MAX_NDIM], ni = i ? i->ndim - 1 : 0;
        /* u: (B, pre..., idx..., post...) -> (B, idx..., pre..., post...) */
        move_block_perm(u->ndim, 1 + ax, ni, false, perm);
        pn_array *t = z2 && i ? take_scatter(pn_reshape(z2, s, z2->ndim - 1), flat_batch_indices(i, N, true),
                                              pn_transpose(u, perm, u->ndim), 0)
                              : NULL;
        r = t ? pn_moveaxis(pn_reshape(t, z2->shape, z2->ndim), 1, ax + 1) : NULL;
    }
    out[0] = r;
    out_axes[0] = 0;
    return keep_results(out, 1, r != NULL);
}

/* take_along_axis / put_along_axis nodes: every input carries the batch, the axis moves by
 * one. */
static int along_axis_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                           pn_array **out, int *out_axes)
{
    int n = node->nin;
    int64_t B = pnC_batch_extent(in, in_axes, n);
    if (!pnC_any_mapped(in_axes, n)) return pnC_batch_rebuild(node, in, out, out_axes);
    pnK_index_params p = *PNC_PARAMS(node, pnK_index_params);
    p.axis++;
    pn_scope_push();
    pn_array *xs[3] = {NULL, NULL, NULL};
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= (xs[i] = pnC_batch_lead(in[i], in_axes[i], B)) != NULL;
    int64_t s[PNC_MAX_NDIM];
    int nd = ok ? pnC_batch_shape(B, node->out_shapes[0], node->out_ndims[0], s) : -1;
    out[0] = nd < 0 ? NULL : pnC_make(node->prim, &p, sizeof p, n, xs, node->out_dtypes[0], s, nd);
    out_axes[0] = 0;
    return keep_results(out, 1, out[0] != NULL);
}

extern const pnC_primitive scatter_prim;

/* Gather and Scatter: the batch becomes one more indexed axis in front of the array (its
 * items addressed by an arange over the batch, window 1), mapped index arrays get the batch
 * first and the others broadcast against it; the gather's window axis of the batch is dropped
 * afterwards, the scatter's updates gain it. */
static int gather_scatter_batched(const pnC_node *node, pn_array *const *in, const int *in_axes,
                                  int64_t B, bool scatter, pn_array **r)
{
    const pnK_index_params *p = PNC_PARAMS(node, pnK_index_params);
    int nidx = p->nidx, n = in[0]->ndim - (in_axes[0] >= 0), m = 0;
    for (int k = 0; k < nidx; k++) { /* the index arrays' broadcast rank, per item */
        int r = in[1 + k]->ndim - (in_axes[1 + k] >= 0);
        m = r > m ? r : m;
    }
    if (m + 1 + n + 1 > PNC_MAX_NDIM || nidx + 1 > PNC_MAX_NDIM)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[vmap] The batched gather or scatter would "
                            "have too many dimensions.");
    pn_array *idx[PNC_MAX_NDIM + 1];
    int axes[PNC_MAX_NDIM + 1];
    int64_t bs[PNC_MAX_NDIM];
    bs[0] = B;
    for (int d = 1; d <= m; d++) bs[d] = 1;
    idx[0] = pn_reshape(pn_arange(0, (double)B, 1, PN_INT64), bs, m + 1);
    axes[0] = 0;
    for (int k = 0; k < nidx; k++) {
        idx[1 + k] = in_axes[1 + k] >= 0 ? pnC_batch_front(in[1 + k], in_axes[1 + k], m) : in[1 + k];
        axes[1 + k] = p->axes[k] + 1;
    }
    pn_array *a = pnC_batch_lead(in[0], in_axes[0], B);
    if (!scatter) {
        int64_t sizes[PNC_MAX_NDIM];
        sizes[0] = 1;
        for (int d = 0; d < n; d++) sizes[d + 1] = p->slice_sizes[d];
        *r = pn_squeeze(pn_gather(a, idx, nidx + 1, axes, sizes), (int[]){m + 1}, 1);
    } else {
        int ua = in_axes[1 + nidx];
        pn_array *u = pnC_batch_lead(in[1 + nidx], ua, B); /* (B, idx..., window...) */
        *r = pn_scatter(a, idx, nidx + 1, pn_expand_dims(u, (int[]){m + 1}, 1), axes, p->mode);
    }
    return *r ? 0 : -1;
}

static int gather_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                       int *out_axes)
{
    int64_t B = pnC_batch_extent(in, in_axes, node->nin);
    if (!pnC_any_mapped(in_axes, node->nin)) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    int rc = gather_scatter_batched(node, in, in_axes, B, node->prim == &scatter_prim, &out[0]);
    out_axes[0] = 0;
    return keep_results(out, 1, rc == 0);
}

/* ───────────────────────────── primitives ───────────────────────────── */

const pnC_primitive take_prim = {
    .name = "Take",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = take_vjp,
    .jvp = take_jvp,
    .vmap = take_vmap,
};
const pnC_primitive take_scatter_prim = {
    .name = "TakeScatterAdd",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = take_scatter_vjp,
    .jvp = take_scatter_jvp,
    .vmap = take_scatter_vmap,
};
const pnC_primitive gather_prim = {
    .name = "Gather",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = gather_vjp,
    .jvp = gather_jvp,
    .vmap = gather_vmap,
};
const pnC_primitive gather_axis_prim = {
    .name = "GatherAxis",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = gather_axis_vjp,
    .jvp = gather_axis_jvp,
    .vmap = along_axis_vmap,
};
const pnC_primitive scatter_prim = {
    .name = "Scatter",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = scatter_vjp,
    .jvp = scatter_jvp,
    .vmap = gather_vmap,
};
const pnC_primitive scatter_axis_prim = {
    .name = "ScatterAxis",
    .eval = {[PN_CPU] = pnK_index_eval, [PN_GPU] = PNG_EVAL(pnG_index_eval)},
    .vjp = scatter_axis_vjp,
    .jvp = scatter_axis_jvp,
    .vmap = along_axis_vmap,
};
