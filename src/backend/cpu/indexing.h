/* indexing.h — CPU kernels of the indexing primitives (take, take_along_axis, put_along_axis,
 * gather, scatter) and the parameter structs their nodes carry. Every one of them is the same
 * "index engine" seen from two sides: a read side (gather-like) and a write side (scatter). */
#ifndef PONTE_BACKEND_CPU_INDEXING_H
#define PONTE_BACKEND_CPU_INDEXING_H

#include "core/core.h"

/* Which indexing primitive a node is (selects how the kernel lays out its plan). */
typedef enum pnK_index_kind {
    PNK_IDX_TAKE = 0,    /* take(a, idx, axis): out = a.shape[:axis] + idx.shape + a.shape[axis+1:] */
    PNK_IDX_GATHER,      /* MLX gather: out = broadcast(idx).shape + slice_sizes */
    PNK_IDX_GATHER_AXIS, /* take_along_axis: out[.., j, ..] = a[.., idx[.., j, ..], ..] */
    PNK_IDX_TAKE_SCATTER,    /* transpose of TAKE: out = a with a[.., idx[i], ..] op= upd[.., i, ..] */
    PNK_IDX_SCATTER,         /* MLX scatter */
    PNK_IDX_SCATTER_AXIS     /* put_along_axis / scatter_add_axis */
} pnK_index_kind;

/* Params of every indexing node (a plain struct copied by pnC_make). Inputs are
 * [a, idx_0 .. idx_{nidx-1}] for gathers and [a, idx_0 .. idx_{nidx-1}, updates] for scatters;
 * index arrays may have any integer dtype and broadcast against each other (right-aligned). */
typedef struct pnK_index_params {
    pnK_index_kind kind;
    pn_scatter_mode mode; /* scatters only */
    int axis;             /* TAKE, GATHER_AXIS, TAKE_SCATTER, SCATTER_AXIS */
    int nidx;             /* GATHER, SCATTER: number of index arrays */
    int axes[PNC_MAX_NDIM];          /* GATHER, SCATTER: the axis each index array indexes */
    int64_t slice_sizes[PNC_MAX_NDIM]; /* GATHER: extent of each gathered slice (ndim(a)) */
} pnK_index_params;

/* The CPU evaluation of every indexing primitive (reads the node's pnK_index_params).
 * Out-of-range indices never touch memory outside the arrays: after negative indices wrap
 * once (i += extent), gathers clamp the slice start into [0, extent - slice] and scatters
 * skip (drop) updates whose slice would not fit. Returns 0, or -1 on out of memory. */
int pnK_index_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_INDEXING_H */
