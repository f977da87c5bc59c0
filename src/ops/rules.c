/* rules.c — helpers shared by the derivative and batching rules of several op families:
 * undoing broadcasting in a cotangent and lining up mapped axes for batched products; and the
 * batch-item gathering that gather_mm and gather_qmm share. */
#include "core/core.h"

int64_t pnC_batch_extent(pn_array *const *in, const int *axes, int n)
{
    for (int i = 0; i < n; i++)
        if (axes[i] >= 0 && in[i]) return pn_shape(in[i])[axes[i]];
    return 0;
}

bool pnC_any_mapped(const int *axes, int n)
{
    for (int i = 0; i < n; i++)
        if (axes[i] >= 0) return true;
    return false;
}

pn_array *pnC_batch_lead(pn_array *x, int axis, int64_t B)
{
    if (!x || axis >= 0) return pnC_batch_front(x, axis, 0);
    int64_t s[PNC_MAX_NDIM];
    int nd = pnC_batch_shape(B, pn_shape(x), pn_ndim(x), s);
    return nd < 0 ? NULL : pn_broadcast_to(pn_expand_dims(x, (int[]){0}, 1), s, nd);
}

int pnC_batch_shape(int64_t B, const int64_t *shape, int ndim, int64_t *out)
{
    if (ndim + 1 > PNC_MAX_NDIM)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[vmap] The batched array would have %d "
                            "dimensions (at most %d).", ndim + 1, PNC_MAX_NDIM);
    out[0] = B;
    for (int i = 0; i < ndim; i++) out[i + 1] = shape[i];
    return ndim + 1;
}

int pnC_batch_rebuild(const pnC_node *node, pn_array *const *in, pn_array **out, int *out_axes)
{
    for (int j = 0; j < node->nout; j++) out_axes[j] = -1;
    return pnC_make_multi(node->prim, node->params, node->params_size, node->nin, in, node->nout,
                          node->out_dtypes, (const int64_t *const *)node->out_shapes,
                          node->out_ndims, out);
}

int pnC_vmap_same_shape(const pnC_node *node, pn_array *const *in, const int *in_axes,
                        pn_array **out, int *out_axes)
{
    out_axes[0] = in_axes[0];
    out[0] = pnC_make(node->prim, node->params, node->params_size, 1, in, node->out_dtypes[0],
                      in[0]->shape, in[0]->ndim);
    return out[0] ? 0 : -1;
}

pn_array *pnC_sum_to_shape(pn_array *x, const int64_t *shape, int ndim)
{
    if (!x) return NULL;
    int xn = pn_ndim(x), lead = xn - ndim, axes[PNC_MAX_NDIM], na = 0;
    const int64_t *xs = pn_shape(x);
    bool same = xn == ndim;
    for (int i = 0; same && i < xn; i++) same = xs[i] == shape[i];
    if (same) return x;
    for (int i = 0; i < xn; i++)
        if (i < lead || (shape[i - lead] == 1 && xs[i] != 1)) axes[na++] = i;
    pn_array *s = na ? pn_sum(x, axes, na, true) : x;
    return pn_reshape(s, shape, ndim);
}

pn_array *pnC_batch_front(pn_array *x, int axis, int rank)
{
    if (axis < 0 || !x) return x;
    if (axis > 0) x = pn_moveaxis(x, axis, 0);
    int r = pn_ndim(x) - 1;
    if (!x || r >= rank) return x;
    int64_t s[PNC_MAX_NDIM];
    s[0] = pn_shape(x)[0];
    for (int d = 1; d <= rank; d++) s[d] = d <= rank - r ? 1 : pn_shape(x)[d - (rank - r)];
    return pn_reshape(x, s, rank + 1);
}

/* The product of the batch extents (all but the last two axes) of x. */
static int64_t batch_size(pn_array *x)
{
    int64_t n = 1;
    for (int i = 0; i < x->ndim - 2; i++) n *= x->shape[i];
    return n;
}

/* indices, or an arange over x's flattened batch shaped as its batch axes. */
static pn_array *batch_indices(pn_array *x, pn_array *indices)
{
    if (indices) return indices;
    pn_array *r = pn_arange(0, (double)batch_size(x), 1, PN_UINT32);
    return pn_reshape(r, x->shape, x->ndim - 2);
}

int pnC_gather_indices(pn_array *x, pn_array *lhs, pn_array *y, pn_array *rhs, pn_array **bidx)
{
    bidx[0] = bidx[1] = NULL;
    if (!x || !y) return -1;
    pn_array *idx[2] = {batch_indices(x, lhs), batch_indices(y, rhs)};
    return idx[0] && idx[1] ? pn_broadcast_arrays(idx, 2, bidx) : -1;
}

pn_array *pnC_take_batch(pn_array *x, pn_array *indices)
{
    if (!x) return NULL;
    int64_t shape[3] = {batch_size(x), x->shape[x->ndim - 2], x->shape[x->ndim - 1]};
    return pn_take(pn_reshape(x, shape, 3), indices, 0);
}
