/* shape.c — shape ops. Views share their input's buffer through strides and an offset
 * (reshape of data that allows it, transpose, broadcast_to, slice with any steps, flip,
 * as_strided, split into several outputs); concatenate, pad and slice_update copy; the rest
 * (squeeze, expand_dims, flatten, swapaxes, stack, tile, repeat, roll, edge padding,
 * meshgrid) are built from
 * those. Each primitive carries its CPU kernel and its vjp/jvp written with public ops. */
#include "backend/cpu/copy.h"
#include "backend/cuda/eval.h"
#include "ops/indexing.h"

#include <stdlib.h>

/* ───────────────────────────── helpers ───────────────────────────── */

/* Ends a derivative rule opened with pn_scope_push: the n results move to the enclosing
 * scope. ok says whether every result that should exist does. */
static int rule_end(pn_array **results, int n, bool ok)
{
    pn_scope_pop_keep(results, n);
    return ok ? 0 : -1;
}

/* Releases the first n arrays of out (a multi-output op failing half-way) and NULLs them. */
static int fail_outputs(pn_array **out, int n)
{
    for (int i = 0; i < n; i++) {
        pn_release(out[i]);
        out[i] = NULL;
    }
    return -1;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ───────────────────────────── reshape ───────────────────────────── */

/* Strides that let a (any strides, size > 0) be read with shape nshape without copying, as
 * numpy's no-copy reshape: every group of old axes merged or split into new ones must be
 * contiguous relative to itself. Returns false when a copy is needed. */
static bool reshape_strides(const pn_array *a, const int64_t *nshape, int nnd, int64_t *nstr)
{
    int64_t os[PNC_MAX_NDIM], ost[PNC_MAX_NDIM];
    int ond = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] == 1) continue;
        os[ond] = a->shape[i];
        ost[ond++] = a->strides[i];
    }
    int oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < nnd && oi < ond) {
        int64_t np = nshape[ni], op = os[oi];
        while (np != op) {
            if (np < op) np *= nshape[nj++];
            else op *= os[oj++];
        }
        for (int k = oi; k < oj - 1; k++)
            if (ost[k] != os[k + 1] * ost[k + 1]) return false;
        nstr[nj - 1] = ost[oj - 1];
        for (int k = nj - 1; k > ni; k--) nstr[k - 1] = nstr[k] * nshape[k];
        ni = nj++;
        oi = oj++;
    }
    int64_t last = ni > 0 ? nstr[ni - 1] : 1;
    for (int k = ni; k < nnd; k++) nstr[k] = last;
    return true;
}

/* out: a view when the data allows it (always for row-contiguous input), else a copy. */
static int reshape_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pn_array *a = in[0];
    pn_array *o = out[0];
    int64_t st[PNC_MAX_NDIM];
    if (pnC_row_contiguous(a)) {
        pnC_row_strides(o->shape, o->ndim, st);
        pnC_set_view(o, a, a->offset, st);
        return 0;
    }
    if (reshape_strides(a, o->shape, o->ndim, st)) {
        pnC_set_view(o, a, a->offset, st);
        return 0;
    }
    if (pnC_alloc_output(o)) return -1;
    pnC_copy_to_contiguous(a, pnC_data(o));
    return 0;
}

static pn_array *reshape_make(pn_array *a, const int64_t *shape, int ndim);

static int reshape_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = cot[0] ? reshape_make(cot[0], in[0]->shape, in[0]->ndim) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int reshape_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? reshape_make(tan[0], out[0]->shape, out[0]->ndim) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

/* Batching rules of the shape primitives: the mapped input goes first (inputs that must all
 * carry the batch get it broadcast when unmapped), the params gain a leading axis that is
 * taken whole, and the output is mapped at 0. No input mapped: the node as it was. */
static int reshape_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                        pn_array **out, int *out_axes)
{
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], 0);
    int64_t s[PNC_MAX_NDIM];
    int nd = x ? pnC_batch_shape(x->shape[0], node->out_shapes[0], node->out_ndims[0], s) : -1;
    out[0] = nd < 0 ? NULL : reshape_make(x, s, nd);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive reshape_prim = {
    .name = "Reshape",
    .eval = {[PN_CPU] = reshape_eval, [PN_GPU] = PNG_EVAL(reshape_eval)},
    .vjp = reshape_vjp,
    .jvp = reshape_jvp,
    .vmap = reshape_vmap,
};

/* Reshape's params: the axis whose extent the caller asked to infer (-1 in the requested
 * shape), or -1. A shapeless compiled replay infers that axis again from the new size and
 * keeps the others (MLX); without one it follows flatten / expand_dims / squeeze. */
typedef struct {
    int infer;
} reshape_params;

static pn_array *reshape_make_infer(pn_array *a, const int64_t *shape, int ndim, int infer)
{
    if (!a) return NULL;
    reshape_params p = {infer};
    return pnC_make(&reshape_prim, &p, sizeof p, 1, &a, a->dtype, shape, ndim);
}

static pn_array *reshape_make(pn_array *a, const int64_t *shape, int ndim)
{
    return reshape_make_infer(a, shape, ndim, -1);
}

enum { INFER_OK, INFER_TWICE, INFER_EMPTY, INFER_MISMATCH };

/* shape (one extent may be -1) for `total` elements into s: INFER_OK, or why not (more than one
 * -1; a -1 beside a zero extent; a negative extent, an overflowing product or another size:
 * INFER_MISMATCH, s then holds shape as given). */
static int infer_extent(const int64_t *shape, int ndim, int64_t total, int64_t *s)
{
    int infer = -1;
    int64_t size = 1;
    bool bad = false;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return INFER_TWICE;
            infer = i;
        } else if (shape[i] < 0 || __builtin_mul_overflow(size, shape[i], &size)) {
            bad = true;
        }
    }
    if (!bad && infer >= 0) {
        if (size == 0) return INFER_EMPTY;
        s[infer] = total / size;
        size *= s[infer];
    }
    return bad || size != total ? INFER_MISMATCH : INFER_OK;
}

/* Reshapes a to shape (one extent may be -1: inferred). A view when the data allows it. */
pn_array *pn_reshape(pn_array *a, const int64_t *shape, int ndim)
{
    if (!pnC_inputs_ok("reshape", 1, &a)) return NULL;
    if (ndim < 0 || ndim > PNC_MAX_NDIM || (ndim > 0 && !shape))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[reshape] Invalid shape (%d dimensions).",
                        ndim);
    int64_t s[PNC_MAX_NDIM];
    int rc = infer_extent(shape, ndim, a->size, s);
    if (rc == INFER_TWICE)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[reshape] Reshape can only infer one dimension.");
    if (rc == INFER_EMPTY)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[reshape] Cannot infer the shape of an empty array");
    if (rc)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[reshape] Cannot reshape array of size %lld into shape %s.",
                        (long long)a->size, PNC_SHAPE_STR(s, ndim));
    int infer = -1;
    for (int i = 0; i < ndim && infer < 0; i++)
        if (shape[i] == -1) infer = i;
    return reshape_make_infer(a, s, ndim, infer);
}

/* Merges axes start_axis..end_axis into one (MLX: a 0-d array becomes shape (1,)). */
pn_array *pn_flatten(pn_array *a, int start_axis, int end_axis)
{
    if (!pnC_inputs_ok("flatten", 1, &a)) return NULL;
    int nd = a->ndim;
    if (nd == 0) return reshape_make(a, (int64_t[]){1}, 1);
    int s = start_axis < 0 ? start_axis + nd : start_axis;
    int e = end_axis < 0 ? end_axis + nd : end_axis;
    s = s < 0 ? 0 : s;
    e = e > nd - 1 ? nd - 1 : e;
    if (s >= nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[flatten] Invalid start_axis %d for array with %d dimensions.",
                        start_axis, nd);
    if (e < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[flatten] Invalid end_axis %d for array with %d dimensions.", end_axis,
                        nd);
    if (e < s)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[flatten] start_axis must be less than or equal to end_axis");
    int64_t shape[PNC_MAX_NDIM];
    int n = 0;
    for (int i = 0; i < s; i++) shape[n++] = a->shape[i];
    int64_t m = 1;
    for (int i = s; i <= e; i++) m *= a->shape[i];
    shape[n++] = m;
    for (int i = e + 1; i < nd; i++) shape[n++] = a->shape[i];
    return reshape_make(a, shape, n);
}

/* Splits axis into shape (one extent may be -1). */
pn_array *pn_unflatten(pn_array *a, int axis, const int64_t *shape, int ndim)
{
    if (!pnC_inputs_ok("unflatten", 1, &a)) return NULL;
    if (ndim <= 0 || !shape)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[unflatten] Shape to unflatten to cannot be empty.");
    int ax = pnC_axis("unflatten", axis, a->ndim);
    if (ax < 0) return NULL;
    if (a->ndim - 1 + ndim > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unflatten] Too many dimensions.");
    int64_t s[PNC_MAX_NDIM];
    int rc = infer_extent(shape, ndim, a->shape[ax], s);
    if (rc == INFER_TWICE)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unflatten] Can only infer one dimension.");
    if (rc == INFER_EMPTY)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unflatten] Cannot infer the shape of an empty array");
    if (rc)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[unflatten] Cannot unflatten axis %d with size %lld into shape %s.",
                        axis, (long long)a->shape[ax], PNC_SHAPE_STR(s, ndim));
    int64_t out[PNC_MAX_NDIM];
    int n = 0;
    for (int i = 0; i < ax; i++) out[n++] = a->shape[i];
    for (int i = 0; i < ndim; i++) out[n++] = s[i];
    for (int i = ax + 1; i < a->ndim; i++) out[n++] = a->shape[i];
    return reshape_make(a, out, n);
}

/* Removes size-1 axes (all of them when axes == NULL). */
pn_array *pn_squeeze(pn_array *a, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("squeeze", 1, &a)) return NULL;
    bool drop[PNC_MAX_NDIM] = {0};
    if (!axes) {
        for (int i = 0; i < a->ndim; i++) drop[i] = a->shape[i] == 1;
    } else {
        if (naxes < 0 || naxes > a->ndim)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[squeeze] Invalid number of axes %d for array with %d dimensions.",
                            naxes, a->ndim);
        for (int i = 0; i < naxes; i++) {
            int ax = axes[i] < 0 ? axes[i] + a->ndim : axes[i];
            if (ax < 0 || ax >= a->ndim)
                return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                                "[squeeze] Invalid axes %d for array with %d dimensions.",
                                axes[i], a->ndim);
            if (drop[ax])
                return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[squeeze] Received duplicate axes.");
            if (a->shape[ax] != 1)
                return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                                "[squeeze] Cannot squeeze axis %d with size %lld which is not "
                                "equal to 1.",
                                axes[i], (long long)a->shape[ax]);
            drop[ax] = true;
        }
    }
    int64_t shape[PNC_MAX_NDIM];
    int n = 0;
    for (int i = 0; i < a->ndim; i++)
        if (!drop[i]) shape[n++] = a->shape[i];
    return reshape_make(a, shape, n);
}

/* Inserts size-1 axes at the given positions of the result. */
pn_array *pn_expand_dims(pn_array *a, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("expand_dims", 1, &a)) return NULL;
    if (naxes < 0 || (naxes > 0 && !axes) || a->ndim + naxes > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[expand_dims] Invalid number of axes %d for array with %d dimensions.",
                        naxes, a->ndim);
    int ond = a->ndim + naxes;
    bool ins[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < naxes; i++) {
        int ax = axes[i] < 0 ? axes[i] + ond : axes[i];
        if (ax < 0 || ax >= ond)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[expand_dims] Invalid axis %d for output array with %d dimensions.",
                            axes[i], ond);
        if (ins[ax])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[expand_dims] Received duplicate axes.");
        ins[ax] = true;
    }
    int64_t shape[PNC_MAX_NDIM];
    for (int i = 0, j = 0; i < ond; i++) shape[i] = ins[i] ? 1 : a->shape[j++];
    return reshape_make(a, shape, ond);
}

/* ───────────────────────────── transpose ───────────────────────────── */

typedef struct {
    int perm[PNC_MAX_NDIM]; /* output axis i reads input axis perm[i] */
} transpose_params;

static int transpose_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const transpose_params *p = PNC_PARAMS(node, transpose_params);
    int64_t st[PNC_MAX_NDIM];
    for (int i = 0; i < out[0]->ndim; i++) st[i] = in[0]->strides[p->perm[i]];
    pnC_set_view(out[0], in[0], in[0]->offset, st);
    return 0;
}

static pn_array *transpose_make(pn_array *a, const int *perm);

static int transpose_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                         pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const transpose_params *p = PNC_PARAMS(node, transpose_params);
    int inv[PNC_MAX_NDIM];
    for (int i = 0; i < in[0]->ndim; i++) inv[p->perm[i]] = i;
    grads[0] = cot[0] ? transpose_make(cot[0], inv) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int transpose_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                         pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? transpose_make(tan[0], PNC_PARAMS(node, transpose_params)->perm) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

static int transpose_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                          pn_array **out, int *out_axes)
{
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    const transpose_params *p = PNC_PARAMS(node, transpose_params);
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], 0);
    int perm[PNC_MAX_NDIM] = {0};
    for (int i = 0; x && i < x->ndim - 1; i++) perm[i + 1] = p->perm[i] + 1;
    out[0] = transpose_make(x, perm);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive transpose_prim = {
    .name = "Transpose",
    .eval = {[PN_CPU] = transpose_eval, [PN_GPU] = PNG_EVAL(transpose_eval)},
    .vjp = transpose_vjp,
    .jvp = transpose_jvp,
    .vmap = transpose_vmap,
};

/* perm: a valid permutation of a's axes. */
static pn_array *transpose_make(pn_array *a, const int *perm)
{
    if (!a) return NULL;
    transpose_params p = {{0}};
    int64_t shape[PNC_MAX_NDIM];
    for (int i = 0; i < a->ndim; i++) {
        p.perm[i] = perm[i];
        shape[i] = a->shape[perm[i]];
    }
    return pnC_make(&transpose_prim, &p, sizeof p, 1, &a, a->dtype, shape, a->ndim);
}

/* Permutes the axes (axes == NULL reverses them). A view. */
pn_array *pn_transpose(pn_array *a, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("transpose", 1, &a)) return NULL;
    int perm[PNC_MAX_NDIM];
    if (!axes) {
        for (int i = 0; i < a->ndim; i++) perm[i] = a->ndim - 1 - i;
        return transpose_make(a, perm);
    }
    if (naxes != a->ndim)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[transpose] Received %d axes for array with %d dimensions.", naxes,
                        a->ndim);
    bool seen[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < naxes; i++) {
        int ax = axes[i] < 0 ? axes[i] + a->ndim : axes[i];
        if (ax < 0 || ax >= a->ndim)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[transpose] Invalid axis (%d) for array with %d dimensions.",
                            axes[i], a->ndim);
        if (seen[ax])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[transpose] Repeat axes not allowed.");
        seen[ax] = true;
        perm[i] = ax;
    }
    return transpose_make(a, perm);
}

/* Exchanges two axes. A view. */
pn_array *pn_swapaxes(pn_array *a, int axis1, int axis2)
{
    if (!pnC_inputs_ok("swapaxes", 1, &a)) return NULL;
    int a1 = pnC_axis("swapaxes", axis1, a->ndim), a2 = a1 < 0 ? -1 : pnC_axis("swapaxes", axis2, a->ndim);
    if (a1 < 0 || a2 < 0) return NULL;
    int perm[PNC_MAX_NDIM];
    for (int i = 0; i < a->ndim; i++) perm[i] = i;
    perm[a1] = a2;
    perm[a2] = a1;
    return transpose_make(a, perm);
}

/* Moves axis source to position destination, keeping the others in order. A view. */
pn_array *pn_moveaxis(pn_array *a, int source, int destination)
{
    if (!pnC_inputs_ok("moveaxis", 1, &a)) return NULL;
    int s = pnC_axis("moveaxis", source, a->ndim), d = s < 0 ? -1 : pnC_axis("moveaxis", destination, a->ndim);
    if (s < 0 || d < 0) return NULL;
    int rest[PNC_MAX_NDIM], perm[PNC_MAX_NDIM], n = 0;
    for (int i = 0; i < a->ndim; i++)
        if (i != s) rest[n++] = i;
    for (int i = 0, j = 0; i < a->ndim; i++) perm[i] = i == d ? s : rest[j++];
    return transpose_make(a, perm);
}

/* ───────────────────────────── broadcast_to ───────────────────────────── */

static int broadcast_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pn_array *a = in[0];
    pn_array *o = out[0];
    int lead = o->ndim - a->ndim;
    int64_t st[PNC_MAX_NDIM];
    for (int i = 0; i < o->ndim; i++) {
        int j = i - lead;
        st[i] = j < 0 || (a->shape[j] == 1 && o->shape[i] != 1) ? 0 : a->strides[j];
    }
    pnC_set_view(o, a, a->offset, st);
    return 0;
}

static pn_array *broadcast_make(pn_array *a, const int64_t *shape, int ndim);

/* Broadcast has one input and a target shape, or two (pnC_broadcast_like): the array and the
 * one whose shape it takes, which is read for its shape only (a shapeless compiled replay
 * follows it) and gets no gradient. The cotangent sums over the axes that broadcasting added
 * or stretched. */
static int broadcast_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                         pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    int at = -1;
    for (int i = 0; i < nargs; i++)
        if (argnums[i] == 0) at = i;
    if (!cot[0] || at < 0) return 0;
    pn_scope_push();
    int lead = out[0]->ndim - in[0]->ndim, axes[PNC_MAX_NDIM], n = 0;
    for (int i = 0; i < out[0]->ndim; i++)
        if (i < lead || (in[0]->shape[i - lead] == 1 && out[0]->shape[i] != 1)) axes[n++] = i;
    pn_array *s = n ? pn_sum(cot[0], axes, n, true) : cot[0];
    grads[at] = reshape_make(s, in[0]->shape, in[0]->ndim);
    return rule_end(&grads[at], 1, grads[at] != NULL);
}

static int broadcast_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                         pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? broadcast_make(tan[0], out[0]->shape, out[0]->ndim) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

/* The two-input form batched: mapped axes to the front (padded with ones up to the element's
 * rank), the output the broadcast of both, mapped at 0. */
static int broadcast_like_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                               pn_array **out, int *out_axes)
{
    if (in_axes[0] < 0 && in_axes[1] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    const int rank = node->out_ndims[0];
    pn_array *x = in_axes[0] >= 0 ? pnC_batch_front(in[0], in_axes[0], rank) : in[0];
    pn_array *l = in_axes[1] >= 0 ? pnC_batch_front(in[1], in_axes[1], rank) : in[1];
    out[0] = x && l ? pnC_broadcast_like(x, l) : NULL;
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

/* The input's own axes line up with the target's trailing ones behind the batch. */
static int broadcast_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                          pn_array **out, int *out_axes)
{
    if (node->nin == 2) return broadcast_like_vmap(node, in, in_axes, out, out_axes);
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], node->out_ndims[0]);
    int64_t s[PNC_MAX_NDIM];
    int nd = x ? pnC_batch_shape(x->shape[0], node->out_shapes[0], node->out_ndims[0], s) : -1;
    out[0] = nd < 0 ? NULL : broadcast_make(x, s, nd);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive broadcast_prim = {
    .name = "Broadcast",
    .eval = {[PN_CPU] = broadcast_eval, [PN_GPU] = PNG_EVAL(broadcast_eval)},
    .vjp = broadcast_vjp,
    .jvp = broadcast_jvp,
    .vmap = broadcast_vmap,
};

static pn_array *broadcast_make(pn_array *a, const int64_t *shape, int ndim)
{
    if (!a) return NULL;
    return pnC_make(&broadcast_prim, NULL, 0, 1, &a, a->dtype, shape, ndim);
}

/* See core.h. */
pn_array *pnC_broadcast_like(pn_array *a, pn_array *like)
{
    pn_array *in[2] = {a, like};
    if (!pnC_inputs_ok("broadcast_to", 2, in)) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = pnC_broadcast_shapes("broadcast_to", a->shape, a->ndim, like->shape, like->ndim, shape);
    if (nd < 0) return NULL;
    return pnC_make(&broadcast_prim, NULL, 0, 2, in, a->dtype, shape, nd);
}

/* Broadcasts a to shape under numpy's rules. A view (stride 0 along broadcast axes). */
pn_array *pn_broadcast_to(pn_array *a, const int64_t *shape, int ndim)
{
    if (!pnC_inputs_ok("broadcast_to", 1, &a)) return NULL;
    if (pnC_check_shape("broadcast_to", shape, ndim)) return NULL;
    bool ok = ndim >= a->ndim;
    for (int i = 0; ok && i < a->ndim; i++) {
        int64_t d = a->shape[i], o = shape[ndim - a->ndim + i];
        ok = d == o || d == 1;
    }
    if (!ok)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[broadcast_to] Cannot broadcast array of shape %s into shape %s.",
                        PNC_SHAPE_STR(a->shape, a->ndim), PNC_SHAPE_STR(shape, ndim));
    return broadcast_make(a, shape, ndim);
}

/* Broadcasts the n arrays against each other into out[0..n-1]. Returns 0 or -1. */
int pn_broadcast_arrays(pn_array *const *arrays, int n, pn_array **out)
{
    if (n < 0 || (n > 0 && (!arrays || !out)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[broadcast_arrays] Invalid arguments.");
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!pnC_inputs_ok("broadcast_arrays", n, arrays)) return -1;
    int64_t shape[PNC_MAX_NDIM], next[PNC_MAX_NDIM];
    int nd = 0;
    for (int i = 0; i < n; i++) {
        nd = pnC_broadcast_shapes("broadcast_arrays", shape, nd, arrays[i]->shape,
                                  arrays[i]->ndim, next);
        if (nd < 0) return -1;
        memcpy(shape, next, (size_t)nd * sizeof *shape);
    }
    for (int i = 0; i < n; i++)
        if (!(out[i] = broadcast_make(arrays[i], shape, nd))) return fail_outputs(out, i);
    return 0;
}

/* ───────────────────────────── slice ───────────────────────────── */

/* A slice in normalized form: element start and step per axis (the output shape says how
 * many). Shared by slice, flip, slice_update and the derivatives. */
typedef struct {
    int64_t start[PNC_MAX_NDIM];
    int64_t step[PNC_MAX_NDIM];
} slice_params;

/* Element offset of the slice's first element and the slice's strides, for an array with
 * strides `strides` (nothing is added for an empty slice, whose start may lie outside). */
static int64_t slice_layout(const slice_params *p, const int64_t *strides, const int64_t *oshape,
                            int ndim, int64_t *ostrides)
{
    int64_t off = 0;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        ostrides[i] = strides[i] * p->step[i];
        off += p->start[i] * strides[i];
        empty |= oshape[i] == 0;
    }
    return empty ? 0 : off;
}

static int slice_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    int64_t st[PNC_MAX_NDIM];
    int64_t off = slice_layout(PNC_PARAMS(node, slice_params), in[0]->strides, out[0]->shape,
                               out[0]->ndim, st);
    pnC_set_view(out[0], in[0], in[0]->offset + off, st);
    return 0;
}

static pn_array *slice_make(pn_array *a, const slice_params *p, const int64_t *shape);
static pn_array *slice_update_make(pn_array *src, pn_array *upd, const slice_params *p);

/* The cotangent lands in the sliced places of zeros. */
static int slice_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                     pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *z = pn_zeros(in[0]->shape, in[0]->ndim, cot[0]->dtype);
    grads[0] = slice_update_make(z, cot[0], PNC_PARAMS(node, slice_params));
    return rule_end(grads, 1, grads[0] != NULL);
}

static int slice_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                     pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? slice_make(tan[0], PNC_PARAMS(node, slice_params), out[0]->shape) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

/* p with a leading axis taken whole, for an input of ndim axes behind the batch. */
static slice_params slice_batched(const slice_params *p, int ndim)
{
    slice_params q;
    memset(&q, 0, sizeof q);
    q.step[0] = 1;
    for (int i = 0; i < ndim && i + 1 < PNC_MAX_NDIM; i++) {
        q.start[i + 1] = p->start[i];
        q.step[i + 1] = p->step[i];
    }
    return q;
}

static int slice_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                      pn_array **out, int *out_axes)
{
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], 0);
    slice_params q = slice_batched(PNC_PARAMS(node, slice_params), node->out_ndims[0]);
    int64_t s[PNC_MAX_NDIM];
    int nd = x ? pnC_batch_shape(x->shape[0], node->out_shapes[0], node->out_ndims[0], s) : -1;
    out[0] = nd < 0 ? NULL : slice_make(x, &q, s);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive slice_prim = {
    .name = "Slice",
    .eval = {[PN_CPU] = slice_eval, [PN_GPU] = PNG_EVAL(slice_eval)},
    .vjp = slice_vjp,
    .jvp = slice_jvp,
    .vmap = slice_vmap,
};

static pn_array *slice_make(pn_array *a, const slice_params *p, const int64_t *shape)
{
    if (!a) return NULL;
    return pnC_make(&slice_prim, p, sizeof *p, 1, &a, a->dtype, shape, a->ndim);
}

/* Normalizes Python-style start/stop/step for each axis of shape into p and the sliced
 * extents into oshape (MLX's rules: negative indices count from the end, bounds clamp, a
 * negative step walks down from start). Returns 0 or -1 with an error naming op. */
static int normalize_slice(const char *op, const int64_t *shape, int ndim, const int64_t *start,
                           const int64_t *stop, const int64_t *steps, int n, slice_params *p,
                           int64_t *oshape)
{
    if (n != ndim || (n > 0 && (!start || !stop)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Invalid number of indices or strides for array with "
                            "dimension %d.",
                            op, ndim);
    memset(p, 0, sizeof *p);
    for (int i = 0; i < ndim; i++) {
        int64_t len = shape[i], k = steps ? steps[i] : 1;
        int64_t s = start[i] < 0 ? start[i] + len : start[i];
        int64_t e = stop[i] < 0 ? stop[i] + len : stop[i];
        if (k == 0)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Slice step cannot be zero.", op);
        if (k > 0) {
            s = clamp64(s, 0, len);
            e = clamp64(e, s, len);
            oshape[i] = (e - s + k - 1) / k;
        } else {
            s = clamp64(s, -1, len - 1);
            e = clamp64(e, -1, s);
            oshape[i] = (s - e + (-k) - 1) / (-k);
        }
        p->start[i] = s;
        p->step[i] = oshape[i] == 1 ? 1 : k;
    }
    return 0;
}

/* a[start:stop:step] per axis, Python's clamping, negative steps allowed. A view. */
pn_array *pn_slice(pn_array *a, const int64_t *start, const int64_t *stop, const int64_t *strides,
                   int n)
{
    if (!pnC_inputs_ok("slice", 1, &a)) return NULL;
    slice_params p;
    int64_t shape[PNC_MAX_NDIM];
    if (normalize_slice("slice", a->shape, a->ndim, start, stop, strides, n, &p, shape))
        return NULL;
    return slice_make(a, &p, shape);
}

/* Reverses the order along the given axes (NULL: all). A view with negative strides. */
pn_array *pn_flip(pn_array *a, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("flip", 1, &a)) return NULL;
    int ax[PNC_MAX_NDIM];
    int n = pnC_axes("flip", axes, naxes, a->ndim, ax);
    if (n < 0) return NULL;
    slice_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < a->ndim; i++) p.step[i] = 1;
    for (int i = 0; i < n; i++) {
        p.start[ax[i]] = a->shape[ax[i]] - 1;
        p.step[ax[i]] = -1;
    }
    return slice_make(a, &p, a->shape);
}

/* ───────────────────────────── slice_update ───────────────────────────── */

/* out = src with the slice replaced by upd (already of the slice's shape and src's dtype). */
static int slice_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *src = in[0], *upd = in[1], *o = out[0];
    if (!pnC_donate(o, src)) {
        if (pnC_alloc_output(o)) return -1;
        pnC_copy_to_contiguous(src, pnC_data(o));
    }
    int64_t st[PNC_MAX_NDIM];
    int64_t off = slice_layout(PNC_PARAMS(node, slice_params), o->strides, upd->shape, o->ndim, st);
    pnK_copy_region(upd, o, off, st);
    return 0;
}

static int slice_update_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *cot, const int *argnums, int nargs,
                            pn_array **grads)
{
    const slice_params *p = PNC_PARAMS(node, slice_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        if (argnums[i] == 0) { /* src: everything outside the slice */
            pn_array *z = pn_zeros(in[1]->shape, in[1]->ndim, cot[0]->dtype);
            grads[i] = slice_update_make(cot[0], z, p);
        } else { /* update: the slice */
            grads[i] = slice_make(cot[0], p, in[1]->shape);
        }
        ok &= grads[i] != NULL;
    }
    return rule_end(grads, nargs, ok);
}

static int slice_update_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                            pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[0] && !tan[1]) return 0;
    pn_scope_push();
    pn_dtype t = (tan[0] ? tan[0] : tan[1])->dtype;
    pn_array *ts = tan[0] ? tan[0] : pn_zeros(in[0]->shape, in[0]->ndim, t);
    pn_array *tu = tan[1] ? tan[1] : pn_zeros(in[1]->shape, in[1]->ndim, t);
    out_tan[0] = slice_update_make(ts, tu, PNC_PARAMS(node, slice_params));
    return rule_end(out_tan, 1, out_tan[0] != NULL);
}

/* Source and update both carry the batch (an unmapped one broadcast along it). */
static int slice_update_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                             pn_array **out, int *out_axes)
{
    int64_t B = pnC_batch_extent(in, in_axes, 2);
    if (!pnC_any_mapped(in_axes, 2)) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    slice_params q = slice_batched(PNC_PARAMS(node, slice_params), in[0]->ndim);
    pn_array *src = pnC_batch_lead(in[0], in_axes[0], B), *upd = pnC_batch_lead(in[1], in_axes[1], B);
    out[0] = slice_update_make(src, upd, &q);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive slice_update_prim = {
    .name = "SliceUpdate",
    .eval = {[PN_CPU] = slice_update_eval, [PN_GPU] = PNG_EVAL(slice_update_eval)},
    .vjp = slice_update_vjp,
    .jvp = slice_update_jvp,
    .vmap = slice_update_vmap,
};

/* upd has the slice's shape and src's dtype. */
static pn_array *slice_update_make(pn_array *src, pn_array *upd, const slice_params *p)
{
    pn_array *in[2] = {src, upd};
    if (!src || !upd) return NULL;
    return pnC_make(&slice_update_prim, p, sizeof *p, 2, in, src->dtype, src->shape, src->ndim);
}

/* A copy of src with src[start:stop:step] = update (cast to src's dtype and broadcast). */
pn_array *pn_slice_update(pn_array *src, pn_array *update, const int64_t *start,
                          const int64_t *stop, const int64_t *strides, int n)
{
    pn_array *in[2] = {src, update};
    if (!pnC_inputs_ok("slice_update", 2, in)) return NULL;
    slice_params p;
    int64_t shape[PNC_MAX_NDIM];
    if (normalize_slice("slice_update", src->shape, src->ndim, start, stop, strides, n, &p, shape))
        return NULL;
    pn_scope_push();
    pn_array *u = pn_broadcast_to(pn_astype(update, src->dtype), shape, src->ndim);
    return pnC_scope_return(slice_update_make(src, u, &p));
}

/* ───────────────────────────── concatenate ───────────────────────────── */

typedef struct {
    int axis;
} concat_params;

static int concat_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    int ax = PNC_PARAMS(node, concat_params)->axis;
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int64_t pos = 0;
    for (int i = 0; i < node->nin; i++) {
        pnK_copy_region(in[i], o, pos * o->strides[ax], o->strides);
        pos += in[i]->shape[ax];
    }
    return 0;
}

static pn_array *concat_make(pn_array *const *arrays, int n, int axis);

/* Each input gets its slab of the cotangent. */
static int concat_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    int ax = PNC_PARAMS(node, concat_params)->axis;
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        int64_t pos = 0;
        for (int j = 0; j < argnums[i]; j++) pos += in[j]->shape[ax];
        slice_params p;
        memset(&p, 0, sizeof p);
        for (int d = 0; d < out[0]->ndim; d++) p.step[d] = 1;
        p.start[ax] = pos;
        grads[i] = slice_make(cot[0], &p, in[argnums[i]]->shape);
        ok &= grads[i] != NULL;
    }
    return rule_end(grads, nargs, ok);
}

static int concat_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    pn_dtype t = PN_NUM_DTYPES;
    for (int i = 0; i < node->nin; i++)
        if (tan[i]) t = tan[i]->dtype;
    if (t == PN_NUM_DTYPES) return 0;
    pn_scope_push();
    pn_array **ts = malloc((size_t)node->nin * sizeof *ts);
    if (!ts) {
        pn_scope_pop();
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[concatenate] Out of memory.");
    }
    for (int i = 0; i < node->nin; i++)
        ts[i] = tan[i] ? tan[i] : pn_zeros(in[i]->shape, in[i]->ndim, t);
    out_tan[0] = concat_make(ts, node->nin, PNC_PARAMS(node, concat_params)->axis);
    free(ts);
    return rule_end(out_tan, 1, out_tan[0] != NULL);
}

static int concat_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    int n = node->nin;
    int64_t B = pnC_batch_extent(in, in_axes, n);
    if (!pnC_any_mapped(in_axes, n)) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_array **xs = malloc((size_t)n * sizeof *xs);
    if (!xs) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[concatenate] Out of memory.");
    pn_scope_push();
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= (xs[i] = pnC_batch_lead(in[i], in_axes[i], B)) != NULL;
    out[0] = ok ? concat_make(xs, n, PNC_PARAMS(node, concat_params)->axis + 1) : NULL;
    free(xs);
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive concat_prim = {
    .name = "Concatenate",
    .eval = {[PN_CPU] = concat_eval, [PN_GPU] = PNG_EVAL(concat_eval)},
    .vjp = concat_vjp,
    .jvp = concat_jvp,
    .vmap = concat_vmap,
};

/* arrays: n >= 1 of one dtype whose shapes agree off axis (normalized). */
static pn_array *concat_make(pn_array *const *arrays, int n, int axis)
{
    if (!pnC_inputs_ok("concatenate", n, arrays)) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, arrays[0]->shape, (size_t)arrays[0]->ndim * sizeof *shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) shape[axis] += arrays[i]->shape[axis];
    concat_params p = {axis};
    return pnC_make(&concat_prim, &p, sizeof p, n, arrays, arrays[0]->dtype, shape,
                    arrays[0]->ndim);
}

/* Joins the n arrays along axis; their dtypes promote as in MLX. */
pn_array *pn_concatenate(pn_array *const *arrays, int n, int axis)
{
    if (n <= 0 || !arrays)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[concatenate] No arrays provided for concatenation");
    if (!pnC_inputs_ok("concatenate", n, arrays)) return NULL;
    int nd = arrays[0]->ndim;
    int ax = pnC_axis("concatenate", axis, nd);
    if (ax < 0) return NULL;
    for (int i = 1; i < n; i++) {
        if (arrays[i]->ndim != nd)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[concatenate] All the input arrays must have the same number of "
                            "dimensions. However, got arrays with dimensions %d and %d.",
                            nd, arrays[i]->ndim);
        for (int d = 0; d < nd; d++) {
            if (d != ax && arrays[i]->shape[d] != arrays[0]->shape[d])
                return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                                "[concatenate] All the input array dimensions must match "
                                "exactly except for the concatenation axis. However, the "
                                "provided shapes are %s and %s, and the concatenation axis "
                                "is %d.",
                                PNC_SHAPE_STR(arrays[0]->shape, nd), PNC_SHAPE_STR(arrays[i]->shape, nd),
                                axis);
        }
    }
    pn_dtype t = pnC_result_type(n, arrays);
    pn_array **cast = malloc((size_t)n * sizeof *cast);
    if (!cast) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[concatenate] Out of memory.");
    pn_scope_push();
    for (int i = 0; i < n; i++) cast[i] = arrays[i]->dtype == t ? arrays[i] : pn_astype(arrays[i], t);
    pn_array *r = concat_make(cast, n, ax);
    free(cast);
    return pnC_scope_return(r);
}

/* Joins the n same-shaped arrays along a new axis. */
pn_array *pn_stack(pn_array *const *arrays, int n, int axis)
{
    if (n <= 0 || !arrays)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stack] No arrays provided for stacking");
    if (!pnC_inputs_ok("stack", n, arrays)) return NULL;
    for (int i = 1; i < n; i++) {
        if (arrays[i]->ndim != arrays[0]->ndim ||
            memcmp(arrays[i]->shape, arrays[0]->shape, (size_t)arrays[0]->ndim * sizeof(int64_t)))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[stack] All arrays must have the same shape");
    }
    int ax = pnC_axis("stack", axis, arrays[0]->ndim + 1);
    if (ax < 0) return NULL;
    pn_array **e = malloc((size_t)n * sizeof *e);
    if (!e) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[stack] Out of memory.");
    pn_scope_push();
    for (int i = 0; i < n; i++) e[i] = pn_expand_dims(arrays[i], &ax, 1);
    pn_array *r = pn_concatenate(e, n, ax);
    free(e);
    return pnC_scope_return(r);
}

/* ───────────────────────────── split ───────────────────────────── */

/* Split: one node whose outputs are views of its input along axis, output j from start[j]
 * (its shape gives the extent). Its vjp concatenates the cotangents once when the pieces tile
 * the axis in order (always, unless split's indices go backwards), so taking a sequence apart
 * step by step costs one pass in the backward instead of one zero-filled copy of the whole
 * input per piece, as a slice's vjp would. */
typedef struct {
    int axis;
    int64_t start[]; /* one per output */
} split_params;

static size_t split_params_size(int n) { return sizeof(split_params) + (size_t)n * sizeof(int64_t); }

static int split_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const split_params *p = PNC_PARAMS(node, split_params);
    const pn_array *a = in[0];
    for (int j = 0; j < node->nout; j++) {
        int64_t off = out[j]->size > 0 ? p->start[j] * a->strides[p->axis] : 0;
        pnC_set_view(out[j], a, a->offset + off, a->strides);
    }
    return 0;
}

static int split_make(pn_array *a, int axis, int n, const int64_t *starts, const int64_t *extents,
                      pn_array **out);

/* The input's cotangent: the outputs' cotangents (zeros where NULL) joined along axis when the
 * pieces tile it in order, else each one's cotangent placed in zeros and summed. */
static int split_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                     pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    int n = node->nout;
    pn_dtype t = PN_NUM_DTYPES;
    for (int j = 0; j < n && t == PN_NUM_DTYPES; j++)
        if (cot[j]) t = cot[j]->dtype;
    if (t == PN_NUM_DTYPES) return 0;
    const split_params *p = PNC_PARAMS(node, split_params);
    bool tiled = true;
    for (int j = 1; j < n; j++) tiled &= p->start[j] == p->start[j - 1] + out[j - 1]->shape[p->axis];
    pn_scope_push();
    if (tiled) {
        pn_array **parts = malloc((size_t)n * sizeof *parts);
        if (!parts) {
            pn_scope_pop();
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
        }
        for (int j = 0; j < n; j++)
            parts[j] = cot[j] ? cot[j] : pn_zeros(out[j]->shape, out[j]->ndim, t);
        grads[0] = pn_concatenate(parts, n, p->axis);
        free(parts);
        return rule_end(grads, 1, grads[0] != NULL);
    }
    pn_array *acc = pn_zeros(in[0]->shape, in[0]->ndim, t);
    for (int j = 0; j < n; j++) {
        if (!cot[j] || out[j]->size == 0) continue;
        slice_params sp;
        memset(&sp, 0, sizeof sp);
        for (int d = 0; d < in[0]->ndim; d++) sp.step[d] = 1;
        sp.start[p->axis] = p->start[j];
        acc = pn_add(acc, slice_update_make(pn_zeros(in[0]->shape, in[0]->ndim, t), cot[j], &sp));
    }
    grads[0] = acc;
    return rule_end(grads, 1, grads[0] != NULL);
}

/* The tangent split the same way. */
static int split_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                     pn_array *const *tan, pn_array **out_tan)
{
    int n = node->nout, ax = PNC_PARAMS(node, split_params)->axis;
    for (int j = 0; j < n; j++) out_tan[j] = NULL;
    if (!tan[0]) return 0;
    int64_t *ext = malloc((size_t)n * sizeof *ext);
    if (!ext) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    for (int j = 0; j < n; j++) ext[j] = out[j]->shape[ax];
    int rc = split_make(tan[0], ax, n, PNC_PARAMS(node, split_params)->start, ext, out_tan);
    free(ext);
    return rc;
}

static int split_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                      pn_array **out, int *out_axes)
{
    int n = node->nout;
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    const split_params *p = PNC_PARAMS(node, split_params);
    int64_t *ext = malloc((size_t)n * sizeof *ext);
    if (!ext) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    for (int j = 0; j < n; j++) {
        ext[j] = node->out_shapes[j][p->axis];
        out_axes[j] = 0;
    }
    pn_scope_push();
    int rc = split_make(pnC_batch_front(in[0], in_axes[0], 0), p->axis + 1, n, p->start, ext, out);
    free(ext);
    return rule_end(out, n, rc == 0);
}

const pnC_primitive split_prim = {
    .name = "Split",
    .eval = {[PN_CPU] = split_eval, [PN_GPU] = PNG_EVAL(split_eval)},
    .vjp = split_vjp,
    .jvp = split_jvp,
    .vmap = split_vmap,
};

/* out[0..n-1]: the n pieces of a (axis normalized) starting at starts[j] with extents[j]
 * along axis, as the outputs of one Split node. Returns 0 or -1 (outputs NULL). */
static int split_make(pn_array *a, int axis, int n, const int64_t *starts, const int64_t *extents,
                      pn_array **out)
{
    for (int j = 0; j < n; j++) out[j] = NULL;
    if (!a) return -1;
    int nd = a->ndim;
    int64_t *shapes = malloc((size_t)n * (size_t)(nd > 0 ? nd : 1) * sizeof *shapes);
    const int64_t **sp = malloc((size_t)n * sizeof *sp);
    int *nds = malloc((size_t)n * sizeof *nds);
    pn_dtype *dts = malloc((size_t)n * sizeof *dts);
    split_params *p = malloc(split_params_size(n));
    int rc = -1;
    if (!shapes || !sp || !nds || !dts || !p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
        goto done;
    }
    for (int j = 0; j < n; j++) {
        int64_t *s = shapes + (size_t)j * (size_t)nd;
        memcpy(s, a->shape, (size_t)nd * sizeof *s);
        s[axis] = extents[j];
        sp[j] = s;
        nds[j] = nd;
        dts[j] = a->dtype;
        p->start[j] = starts[j];
    }
    p->axis = axis;
    rc = pnC_make_multi(&split_prim, p, split_params_size(n), 1, &a, n, dts, sp, nds, out);
done:
    free(p);
    free(shapes);
    free(sp);
    free(nds);
    free(dts);
    return rc;
}

/* Splits at the nindices indices along axis into out[0..nindices] (views of one Split node). */
int pn_split(pn_array *a, const int64_t *indices, int nindices, int axis, pn_array **out)
{
    if (!out) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[split] out is NULL.");
    if (nindices < 0 || (nindices > 0 && !indices)) {
        out[0] = NULL;
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[split] Invalid indices.");
    }
    for (int i = 0; i <= nindices; i++) out[i] = NULL;
    if (!pnC_inputs_ok("split", 1, &a)) return -1;
    int ax = axis < 0 ? axis + a->ndim : axis;
    if (ax < 0 || ax >= a->ndim)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[split] Invalid axis (%d) passed to split for array with shape %s.",
                            axis, PNC_SHAPE_STR(a->shape, a->ndim));
    int64_t *st = malloc(2 * (size_t)(nindices + 1) * sizeof *st);
    if (!st) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    int64_t *ext = st + nindices + 1;
    /* numpy's rule: piece i is a[indices[i-1]:indices[i]] (clamped; empty when they go back) */
    int64_t len = a->shape[ax], prev = 0;
    for (int i = 0; i <= nindices; i++) {
        int64_t e = len;
        if (i < nindices) e = clamp64(indices[i] < 0 ? indices[i] + len : indices[i], 0, len);
        st[i] = prev;
        ext[i] = e > prev ? e - prev : 0;
        prev = e;
    }
    int rc = split_make(a, ax, nindices + 1, st, ext, out);
    free(st);
    return rc;
}

/* Splits into nsections equal parts along axis. */
int pn_split_sections(pn_array *a, int nsections, int axis, pn_array **out)
{
    if (!pnC_inputs_ok("split", 1, &a)) return -1;
    int ax = axis < 0 ? axis + a->ndim : axis;
    if (ax < 0 || ax >= a->ndim)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[split] Invalid axis %d passed to split for array with shape %s.",
                            axis, PNC_SHAPE_STR(a->shape, a->ndim));
    if (nsections <= 0)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[split] Number of splits must be positive (got %d).", nsections);
    if (a->shape[ax] % nsections)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[split] Array split does not result in sub arrays with equal size: "
                            "attempting %d splits along axis %d for shape %s.",
                            nsections, axis, PNC_SHAPE_STR(a->shape, a->ndim));
    int64_t *idx = malloc((size_t)nsections * sizeof *idx);
    if (!idx) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    int64_t part = a->shape[ax] / nsections;
    for (int i = 0; i < nsections - 1; i++) idx[i] = (i + 1) * part;
    int r = pn_split(a, idx, nsections - 1, ax, out);
    free(idx);
    return r;
}

/* ───────────────────────────── tile and repeat ───────────────────────────── */

/* a repeated reps[i] times along each axis (numpy's tile: reps and shape are aligned on
 * the right). Built as reshape -> broadcast -> reshape. */
pn_array *pn_tile(pn_array *a, const int64_t *reps, int nreps)
{
    if (!pnC_inputs_ok("tile", 1, &a)) return NULL;
    if (nreps < 0 || (nreps > 0 && !reps) || nreps > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tile] Invalid reps (%d of them).", nreps);
    int nd = a->ndim > nreps ? a->ndim : nreps;
    int64_t shape[PNC_MAX_NDIM], r[PNC_MAX_NDIM];
    for (int i = 0; i < nd; i++) {
        int j = i - (nd - a->ndim), k = i - (nd - nreps);
        shape[i] = j < 0 ? 1 : a->shape[j];
        r[i] = k < 0 ? 1 : reps[k];
        if (r[i] < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tile] Negative reps (%lld) not allowed.",
                            (long long)r[i]);
    }
    int64_t expand[2 * PNC_MAX_NDIM], broad[2 * PNC_MAX_NDIM], final[PNC_MAX_NDIM];
    int ne = 0;
    for (int i = 0; i < nd; i++) {
        if (r[i] != 1) {
            expand[ne] = 1;
            broad[ne++] = r[i];
        }
        expand[ne] = shape[i];
        broad[ne++] = shape[i];
        if (__builtin_mul_overflow(shape[i], r[i], &final[i]))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tile] The result is too large.");
    }
    if (ne > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tile] Too many dimensions to tile.");
    pn_scope_push();
    pn_array *x = broadcast_make(reshape_make(a, expand, ne), broad, ne);
    return pnC_scope_return(reshape_make(x, final, nd));
}

/* Each element repeated `repeats` times along axis (PN_ALL_AXES: of the flattened array).
 * Built as expand_dims -> broadcast -> reshape. */
pn_array *pn_repeat(pn_array *a, int64_t repeats, int axis)
{
    if (!pnC_inputs_ok("repeat", 1, &a)) return NULL;
    if (repeats < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[repeat] Number of repeats cannot be negative");
    pn_scope_push();
    pn_array *x = a;
    if (axis == PN_ALL_AXES) {
        x = pn_flatten(a, 0, -1);
        axis = 0;
    }
    int ax = x ? pnC_axis("repeat", axis, x->ndim) : -1;
    if (ax < 0 || x->ndim + 1 > PNC_MAX_NDIM) {
        if (ax >= 0) pnC_fail(PN_ERR_INVALID_ARGUMENT, "[repeat] Too many dimensions.");
        pn_scope_pop();
        return NULL;
    }
    int64_t shape[PNC_MAX_NDIM], final[PNC_MAX_NDIM];
    int n = 0;
    for (int i = 0; i < x->ndim; i++) {
        shape[n++] = x->shape[i];
        final[i] = x->shape[i];
        if (i == ax) shape[n++] = repeats;
    }
    if (__builtin_mul_overflow(final[ax], repeats, &final[ax])) {
        pn_scope_pop();
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[repeat] The result is too large.");
    }
    int e = ax + 1;
    x = broadcast_make(pn_expand_dims(x, &e, 1), shape, n);
    return pnC_scope_return(reshape_make(x, final, n - 1));
}

/* ───────────────────────────── pad ───────────────────────────── */

typedef struct {
    int64_t low[PNC_MAX_NDIM];
} pad_params;

/* out: filled with the value, then a copied into its interior. */
static int pad_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pad_params *p = PNC_PARAMS(node, pad_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    pnK_fill(pnC_data(o), pnC_data(in[1]), pn_dtype_size(o->dtype), o->size);
    int64_t off = 0;
    for (int i = 0; i < o->ndim; i++) off += p->low[i] * o->strides[i];
    if (in[0]->size) pnK_copy_region(in[0], o, off, o->strides);
    return 0;
}

static pn_array *pad_make(pn_array *a, pn_array *value, const int64_t *low, const int64_t *high);

static int pad_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pad_params *p = PNC_PARAMS(node, pad_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    slice_params sp;
    memset(&sp, 0, sizeof sp);
    for (int d = 0; d < in[0]->ndim; d++) {
        sp.start[d] = p->low[d];
        sp.step[d] = 1;
    }
    pn_array *inner = slice_make(cot[0], &sp, in[0]->shape);
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        if (argnums[i] == 0)
            grads[i] = inner;
        else /* the value fills everything outside the interior */
            grads[i] = pn_subtract(pn_sum(cot[0], NULL, 0, false), pn_sum(inner, NULL, 0, false));
        ok &= grads[i] != NULL;
    }
    return rule_end(grads, nargs, ok);
}

static int pad_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    const pad_params *p = PNC_PARAMS(node, pad_params);
    out_tan[0] = NULL;
    if (!tan[0] && !tan[1]) return 0;
    pn_scope_push();
    pn_dtype t = (tan[0] ? tan[0] : tan[1])->dtype;
    pn_array *ta = tan[0] ? tan[0] : pn_zeros(in[0]->shape, in[0]->ndim, t);
    pn_array *tv = tan[1] ? tan[1] : pn_zeros(NULL, 0, t);
    int64_t high[PNC_MAX_NDIM];
    for (int d = 0; d < in[0]->ndim; d++) high[d] = out[0]->shape[d] - in[0]->shape[d] - p->low[d];
    out_tan[0] = pad_make(ta, tv, p->low, high);
    return rule_end(out_tan, 1, out_tan[0] != NULL);
}

/* A mapped fill value (one per batch item) fills the border through a where over the padded
 * interior's mask. */
static int pad_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                    int *out_axes)
{
    if (in_axes[0] < 0 && in_axes[1] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    const pad_params *p = PNC_PARAMS(node, pad_params);
    int nd = in[0]->ndim - (in_axes[0] >= 0);
    int64_t B = pnC_batch_extent(in, in_axes, 2), low[PNC_MAX_NDIM] = {0}, high[PNC_MAX_NDIM] = {0};
    const int64_t *os = node->out_shapes[0];
    pn_scope_push();
    pn_array *x = pnC_batch_lead(in[0], in_axes[0], B), *r = NULL;
    for (int d = 0; x && d < nd; d++) {
        low[d + 1] = p->low[d];
        high[d + 1] = os[d] - x->shape[d + 1] - p->low[d];
    }
    if (x && in_axes[1] < 0) {
        r = pad_make(x, in[1], low, high);
    } else if (x) {
        pn_array *zero = pn_zeros(NULL, 0, x->dtype);
        int64_t shape1[PNC_MAX_NDIM];
        for (int d = 0; d < nd; d++) shape1[d] = x->shape[d + 1];
        pn_array *mask = pad_make(pn_ones(shape1, nd, PN_BOOL), pn_zeros(NULL, 0, PN_BOOL), low + 1, high + 1);
        int64_t vs[PNC_MAX_NDIM];
        vs[0] = B;
        for (int d = 1; d <= nd; d++) vs[d] = 1;
        pn_array *v = pn_reshape(pnC_batch_front(in[1], in_axes[1], 0), vs, nd + 1);
        r = pn_where(mask, pad_make(x, zero, low, high), v);
    }
    out[0] = r;
    out_axes[0] = 0;
    return rule_end(out, 1, out[0] != NULL);
}

const pnC_primitive pad_prim = {
    .name = "Pad",
    .eval = {[PN_CPU] = pad_eval, [PN_GPU] = PNG_EVAL(pad_eval)},
    .vjp = pad_vjp,
    .jvp = pad_jvp,
    .vmap = pad_vmap,
};

/* value: 0-d of a's dtype; low/high: ndim(a) non-negative entries. */
static pn_array *pad_make(pn_array *a, pn_array *value, const int64_t *low, const int64_t *high)
{
    pn_array *in[2] = {a, value};
    if (!a || !value) return NULL;
    pad_params p = {{0}};
    int64_t shape[PNC_MAX_NDIM];
    for (int i = 0; i < a->ndim; i++) {
        p.low[i] = low[i];
        if (__builtin_add_overflow(a->shape[i], low[i], &shape[i]) ||
            __builtin_add_overflow(shape[i], high[i], &shape[i]))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[pad] The result is too large.");
    }
    return pnC_make(&pad_prim, &p, sizeof p, 2, in, a->dtype, shape, a->ndim);
}

/* Edge padding: each padded axis in turn gets copies of its first and last slabs. */
static pn_array *edge_pad(pn_array *a, const int64_t *low, const int64_t *high)
{
    pn_array *x = a;
    for (int ax = 0; ax < a->ndim && x; ax++) {
        if (!low[ax] && !high[ax]) continue;
        int64_t n = x->shape[ax];
        if (n == 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[pad] Cannot edge-pad axis %d of size 0.", ax);
        slice_params p;
        memset(&p, 0, sizeof p);
        for (int d = 0; d < x->ndim; d++) p.step[d] = 1;
        int64_t shape[PNC_MAX_NDIM];
        memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
        shape[ax] = 1;
        pn_array *parts[3];
        int k = 0;
        if (low[ax]) {
            pn_array *first = slice_make(x, &p, shape);
            shape[ax] = low[ax];
            parts[k++] = broadcast_make(first, shape, x->ndim);
            shape[ax] = 1;
        }
        parts[k++] = x;
        if (high[ax]) {
            p.start[ax] = n - 1;
            pn_array *last = slice_make(x, &p, shape);
            shape[ax] = high[ax];
            parts[k++] = broadcast_make(last, shape, x->ndim);
        }
        x = concat_make(parts, k, ax);
    }
    return x;
}

/* Pads axes[i] (NULL: the first naxes axes) with low[i] before and high[i] after; constant
 * padding uses value (a size-1 array, NULL: 0) cast to a's dtype. */
pn_array *pn_pad(pn_array *a, const int *axes, const int64_t *low, const int64_t *high,
                 int naxes, pn_array *value, pn_pad_mode mode)
{
    if (!pnC_inputs_ok("pad", 1, &a)) return NULL;
    if (naxes < 0 || naxes > a->ndim || (naxes > 0 && (!low || !high)))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[pad] Invalid number of padding sizes (%d) for array with %d "
                        "dimensions.",
                        naxes, a->ndim);
    int ax[PNC_MAX_NDIM];
    if (axes) {
        if (pnC_axes("pad", axes, naxes, a->ndim, ax) < 0) return NULL;
    } else {
        for (int i = 0; i < naxes; i++) ax[i] = i;
    }
    int64_t lo[PNC_MAX_NDIM] = {0}, hi[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < naxes; i++) {
        if (low[i] < 0 || high[i] < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[pad] Invalid %s padding size (%lld) passed to pad for axis %d. "
                            "Padding sizes must be non-negative",
                            low[i] < 0 ? "low" : "high", (long long)(low[i] < 0 ? low[i] : high[i]),
                            i);
        lo[ax[i]] = low[i];
        hi[ax[i]] = high[i];
    }
    if (mode == PN_PAD_EDGE) {
        pn_scope_push();
        return pnC_scope_return(edge_pad(a, lo, hi));
    }
    if (mode != PN_PAD_CONSTANT)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[pad] Invalid padding mode (%d) passed to pad",
                        (int)mode);
    if (value && value->size != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[pad] The padding value must be a scalar (got shape %s).",
                        PNC_SHAPE_STR(value->shape, value->ndim));
    pn_scope_push();
    pn_array *v = value ? pn_astype(reshape_make(value, NULL, 0), a->dtype)
                        : pn_zeros(NULL, 0, a->dtype);
    return pnC_scope_return(pad_make(a, v, lo, hi));
}

/* ───────────────────────────── roll ───────────────────────────── */

/* Rolls by shift[i] along axes[i]: the last shift elements come first. Built from two
 * slices and a concatenation per axis. axes == NULL rolls the flattened array by the sum of
 * the naxes shifts. */
pn_array *pn_roll(pn_array *a, const int64_t *shift, const int *axes, int naxes)
{
    if (!pnC_inputs_ok("roll", 1, &a)) return NULL;
    if (!shift || (axes && (naxes < 0 || naxes > PNC_MAX_NDIM)))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[roll] At least one shift value per axis is required.");
    if (!axes) {
        int64_t total = 0; /* numpy's rule: each shift rolls the flattened array once */
        for (int i = 0; i < naxes; i++) total += shift[i];
        pn_scope_push();
        int zero = 0;
        pn_array *r = pn_roll(pn_flatten(a, 0, -1), &total, &zero, 1);
        return pnC_scope_return(reshape_make(r, a->shape, a->ndim));
    }
    int ax[PNC_MAX_NDIM];
    for (int i = 0; i < naxes; i++)
        if ((ax[i] = pnC_axis("roll", axes[i], a->ndim)) < 0) return NULL;
    pn_scope_push();
    pn_array *x = a;
    for (int i = 0; i < naxes && x; i++) {
        int64_t n = x->shape[ax[i]];
        if (n == 0) continue;
        int64_t s = shift[i] % n;
        if (s < 0) s += n;
        if (s == 0) continue;
        slice_params p;
        memset(&p, 0, sizeof p);
        for (int d = 0; d < x->ndim; d++) p.step[d] = 1;
        int64_t shape[PNC_MAX_NDIM];
        memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
        p.start[ax[i]] = n - s;
        shape[ax[i]] = s;
        pn_array *parts[2];
        parts[0] = slice_make(x, &p, shape);
        p.start[ax[i]] = 0;
        shape[ax[i]] = n - s;
        parts[1] = slice_make(x, &p, shape);
        x = concat_make(parts, 2, ax[i]);
    }
    return pnC_scope_return(x == a ? pn_copy(a) : x);
}

/* ───────────────────────────── as_strided ───────────────────────────── */

typedef struct {
    int64_t strides[PNC_MAX_NDIM];
    int64_t offset;
} as_strided_params;

static int as_strided_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const as_strided_params *p = PNC_PARAMS(node, as_strided_params);
    if (pnC_row_contiguous(in[0])) {
        pnC_set_view(out[0], in[0], in[0]->offset + p->offset, p->strides);
        return 0;
    }
    pn_array *c = pnC_contiguous(in[0]); /* a strided flat input: view a dense copy */
    if (!c) return -1;
    pnC_set_view(out[0], c, c->offset + p->offset, p->strides);
    pnC_decref(c);
    return 0;
}

static pn_array *as_strided_make(pn_array *flat, const int64_t *shape, int ndim,
                                 const as_strided_params *p);

/* The cotangent of every view element adds into the input element it reads (overlapping
 * views read some elements several times): a scatter-add into zeros at the positions that
 * the same view of arange(size) holds. */
static int as_strided_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    int64_t n = in[0]->size, k = out[0]->size;
    pn_array *pos = as_strided_make(pn_arange(0, (double)n, 1, n <= INT32_MAX ? PN_INT32 : PN_INT64),
                                    out[0]->shape, out[0]->ndim,
                                    PNC_PARAMS(node, as_strided_params));
    grads[0] = pnO_scatter_add_axis(pn_zeros(&n, 1, cot[0]->dtype), reshape_make(pos, &k, 1),
                                    reshape_make(cot[0], &k, 1), 0);
    return rule_end(grads, 1, grads[0] != NULL);
}

static int as_strided_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? as_strided_make(tan[0], out[0]->shape, out[0]->ndim,
                                          PNC_PARAMS(node, as_strided_params))
                        : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

const pnC_primitive as_strided_prim = {
    .name = "AsStrided",
    .eval = {[PN_CPU] = as_strided_eval, [PN_GPU] = PNG_EVAL(as_strided_eval)},
    .vjp = as_strided_vjp,
    .jvp = as_strided_jvp,
};

static pn_array *as_strided_make(pn_array *flat, const int64_t *shape, int ndim,
                                 const as_strided_params *p)
{
    if (!flat) return NULL;
    return pnC_make(&as_strided_prim, p, sizeof *p, 1, &flat, flat->dtype, shape, ndim);
}

/* A view of a's elements (row-major) with the given shape and element strides, starting at
 * element offset. Every element it can reach must lie inside a. */
pn_array *pn_as_strided(pn_array *a, const int64_t *shape, const int64_t *strides, int ndim,
                        int64_t offset)
{
    if (!pnC_inputs_ok("as_strided", 1, &a)) return NULL;
    if (pnC_check_shape("as_strided", shape, ndim)) return NULL;
    if (ndim > 0 && !strides)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[as_strided] strides is NULL.");
    as_strided_params p;
    memset(&p, 0, sizeof p);
    p.offset = offset;
    int64_t lo = offset, hi = offset;
    bool empty = false, overflow = false;
    for (int i = 0; i < ndim; i++) {
        p.strides[i] = strides[i];
        empty |= shape[i] == 0;
        int64_t reach;
        overflow |= __builtin_mul_overflow(shape[i] > 0 ? shape[i] - 1 : 0, strides[i], &reach);
        if (reach < 0) overflow |= __builtin_add_overflow(lo, reach, &lo);
        else overflow |= __builtin_add_overflow(hi, reach, &hi);
    }
    if (!empty && (overflow || lo < 0 || hi >= a->size))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[as_strided] The view with shape %s, strides %s and offset %lld reaches "
                        "outside the array of size %lld.",
                        PNC_SHAPE_STR(shape, ndim), PNC_SHAPE_STR(strides, ndim), (long long)offset,
                        (long long)a->size);
    pn_scope_push();
    pn_array *flat = reshape_make(a, (int64_t[]){a->size}, 1);
    return pnC_scope_return(as_strided_make(flat, shape, ndim, &p));
}

/* ───────────────────────────── meshgrid ───────────────────────────── */

/* Coordinate grids from n 1-d arrays (others are flattened): "xy" swaps the first two axes of
 * the result (Cartesian), "ij" keeps them (matrix). sparse leaves them unbroadcast. */
int pn_meshgrid(pn_array *const *arrays, int n, bool sparse, const char *indexing,
                pn_array **out)
{
    if (n < 0 || n > PNC_MAX_NDIM || (n > 0 && (!arrays || !out)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[meshgrid] Invalid number of arrays %d.", n);
    for (int i = 0; i < n; i++) out[i] = NULL;
    bool xy;
    if (!indexing || !strcmp(indexing, "xy")) xy = true;
    else if (!strcmp(indexing, "ij")) xy = false;
    else
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[meshgrid] Invalid indexing value. Valid values are 'xy' and 'ij'.");
    if (n == 0) return 0;
    if (!pnC_inputs_ok("meshgrid", n, arrays)) return -1;
    pn_array *r[PNC_MAX_NDIM];
    pn_scope_push();
    for (int i = 0; i < n; i++) {
        int64_t shape[PNC_MAX_NDIM];
        for (int d = 0; d < n; d++) shape[d] = 1;
        int pos = xy && n > 1 && i < 2 ? 1 - i : i;
        shape[pos] = arrays[i]->size;
        r[i] = reshape_make(arrays[i], shape, n);
    }
    int rc = 0;
    if (!sparse && n > 0) {
        pn_array *b[PNC_MAX_NDIM];
        rc = pn_broadcast_arrays(r, n, b);
        memcpy(r, b, (size_t)n * sizeof *r);
    }
    for (int i = 0; i < n; i++)
        if (!r[i]) rc = -1;
    if (rc) {
        pn_scope_pop();
        return -1;
    }
    memcpy(out, r, (size_t)n * sizeof *r);
    pn_scope_pop_keep(out, n);
    return 0;
}
