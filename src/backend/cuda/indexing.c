/* indexing.c — the GPU eval of the indexing primitives (Take, TakeScatterAdd, Gather,
 * GatherAxis, Scatter, ScatterAxis; src/ops/indexing.c): describes each node as the CPU engine
 * does (src/backend/cpu/indexing.c: an index space of positions, a slice per position, a
 * target and a linear side), merges dims and runs the plan on the device (indexing.cu). */
#include "backend/cpu/indexing.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/indexing.h"
#include "core/core.h"

/* Strides of x broadcast (right-aligned) to shape[nd]: 0 along missing and stretched dims. */
static void bcast_strides(const pn_array *x, const int64_t *shape, int nd, int64_t *st)
{
    int lead = nd - x->ndim;
    for (int d = 0; d < nd; d++) {
        int xd = d - lead;
        st[d] = (xd < 0 || (x->shape[xd] == 1 && shape[d] != 1)) ? 0 : x->strides[xd];
    }
}

/* The unmerged description (any rank) the plan is built from. */
typedef struct raw_plan {
    int ni, ns, nidx;
    int64_t ishape[PNC_MAX_NDIM], istr[2 + PNG_IDX_MAXIDX][PNC_MAX_NDIM];
    int64_t sshape[PNC_MAX_NDIM], sstr[2][PNC_MAX_NDIM];
} raw_plan;

/* Registers index array k of plan p. */
static void add_index(pnG_index_plan *p, int k, const pn_array *x, int64_t extent,
                      int64_t window, int64_t tstride)
{
    p->idata[k] = pnC_data(x);
    p->idtype[k] = (int)x->dtype;
    p->extent[k] = extent;
    p->window[k] = window;
    p->tstride[k] = tstride;
}

/* Drops extent-1 dims of (shape, strides[nop]) and merges the dims contiguous for every
 * operand; writes at most PNG_MAX_NDIM dims. Returns the merged rank or -1 when too many. */
static int merge_dims(int n, const int64_t *shape, int nop, int64_t (*str)[PNC_MAX_NDIM],
                      int64_t *oshape, int64_t (*ostr)[PNG_MAX_NDIM])
{
    int m = 0;
    for (int d = 0; d < n; d++) {
        if (shape[d] == 1) continue;
        bool merge = m > 0;
        for (int op = 0; merge && op < nop; op++)
            merge = ostr[op][m - 1] == str[op][d] * shape[d];
        if (merge) {
            oshape[m - 1] *= shape[d];
            for (int op = 0; op < nop; op++) ostr[op][m - 1] = str[op][d];
            continue;
        }
        if (m == PNG_MAX_NDIM) return -1;
        oshape[m] = shape[d];
        for (int op = 0; op < nop; op++) ostr[op][m] = str[op][d];
        m++;
    }
    return m;
}

/* See eval.h. */
int pnG_index_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_index_params *pr = PNC_PARAMS(node, pnK_index_params);
    pn_array *o = out[0];
    bool scatter = pr->kind >= PNK_IDX_TAKE_SCATTER;
    int nidx = (pr->kind == PNK_IDX_GATHER || pr->kind == PNK_IDX_SCATTER) ? pr->nidx : 1;
    if (nidx > PNG_IDX_MAXIDX) return PNG_UNSUPPORTED;
    if (scatter) {
        if (!pnC_donate(o, in[0])) {
            if (pnC_alloc_output(o)) return -1;
            pnC_copy_to_contiguous(in[0], pnC_data(o));
            if (pnC_failed()) return -1;
        }
    } else if (pnC_alloc_output(o)) {
        return -1;
    }
    if (o->size == 0) return 0;

    /* Target T and linear side L (as the CPU engine). */
    const pn_array *T = scatter ? o : in[0];
    const pn_array *L = scatter ? in[node->nin - 1] : o;
    pnG_index_plan p;
    raw_plan r;
    memset(&p, 0, sizeof p);
    memset(&r, 0, sizeof r);
    r.nidx = p.nidx = nidx;
    if (pr->kind == PNK_IDX_TAKE || pr->kind == PNK_IDX_TAKE_SCATTER) {
        /* T is a-shaped (axis ax); L = pre + idx.shape + post. */
        const pn_array *x = in[1];
        int ax = pr->axis, m = x->ndim, n = T->ndim;
        r.ni = m;
        for (int d = 0; d < m; d++) {
            r.ishape[d] = x->shape[d];
            r.istr[0][d] = L->strides[ax + d];
            r.istr[1][d] = 0;
            r.istr[2][d] = x->strides[d];
        }
        add_index(&p, 0, x, T->shape[ax], 1, T->strides[ax]);
        for (int d = 0; d < n; d++) {
            if (d == ax) continue;
            r.sshape[r.ns] = T->shape[d];
            r.sstr[0][r.ns] = L->strides[d < ax ? d : d + m - 1];
            r.sstr[1][r.ns] = T->strides[d];
            r.ns++;
        }
    } else if (pr->kind == PNK_IDX_GATHER || pr->kind == PNK_IDX_SCATTER) {
        /* T has ndim n; L = broadcast(idx).shape (m dims) + slice shape (n dims). */
        int n = T->ndim, m = L->ndim - n;
        r.ni = m;
        for (int d = 0; d < m; d++) {
            r.ishape[d] = L->shape[d];
            r.istr[0][d] = L->strides[d];
            r.istr[1][d] = 0;
        }
        r.ns = n;
        for (int d = 0; d < n; d++) {
            r.sshape[d] = L->shape[m + d];
            r.sstr[0][d] = L->strides[m + d];
            r.sstr[1][d] = T->strides[d];
        }
        for (int k = 0; k < nidx; k++) {
            int ax = pr->axes[k];
            bcast_strides(in[1 + k], r.ishape, m, r.istr[2 + k]);
            add_index(&p, k, in[1 + k], T->shape[ax], r.sshape[ax], T->strides[ax]);
        }
    } else { /* take_along_axis / put_along_axis: the index space is L's shape; no slice */
        const pn_array *x = in[1];
        int ax = pr->axis, n = L->ndim;
        r.ni = n;
        for (int d = 0; d < n; d++) {
            r.ishape[d] = L->shape[d];
            r.istr[0][d] = L->strides[d];
            r.istr[1][d] = d == ax ? 0 : T->strides[d];
        }
        bcast_strides(x, r.ishape, n, r.istr[2]);
        add_index(&p, 0, x, T->shape[ax], 1, T->strides[ax]);
    }
    p.ni = merge_dims(r.ni, r.ishape, 2 + nidx, r.istr, p.ishape, p.istr);
    p.ns = merge_dims(r.ns, r.sshape, 2, r.sstr, p.sshape, p.sstr);
    if (p.ni < 0 || p.ns < 0) return PNG_UNSUPPORTED;
    for (int d = 0; d < r.ni; d++)
        if (r.ishape[d] == 0) return 0; /* no positions */
    for (int d = 0; d < r.ns; d++)
        if (r.sshape[d] == 0) return 0;
    return pnG_index_run(&p, o->dtype, scatter, (int)pr->mode, pnC_data(L), pnC_data(T), o->size,
                         node->stream.index);
}
