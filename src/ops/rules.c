/* rules.c — helpers shared by the derivative and batching rules of several op families:
 * undoing broadcasting in a cotangent and lining up mapped axes for batched products; and the
 * batch-item gathering that gather_mm and gather_qmm share. */
#include "core/core.h"

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
