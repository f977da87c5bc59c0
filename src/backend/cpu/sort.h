/* sort.h — CPU kernels of the sorting primitives (sort, argsort, partition, argpartition and
 * the top-k selection they share) and the parameter struct their nodes carry. */
#ifndef PONTE_BACKEND_CPU_SORT_H
#define PONTE_BACKEND_CPU_SORT_H

#include "core/core.h"

/* Params of a sort-family node. Input: one array a; the output has a's shape except along
 * axis, where it holds positions [lo, N) of the arranged row (N = a.shape[axis]). */
typedef struct pnK_sort_params {
    int axis;       /* normalized axis of a */
    bool arg;       /* output uint32 source indices instead of values */
    bool partition; /* place only position kth in sorted order (smaller before, larger after) */
    int64_t kth;    /* partition: the position in [0, N) */
    int64_t lo;     /* first output position along axis (topk: N - k; else 0) */
} pnK_sort_params;

/* The CPU evaluation of the sort family. Order: ascending with NaNs last (complex:
 * lexicographic on (real, imag), a NaN in either part counts as NaN); full sorts are stable;
 * partitions break ties by source index, so the value and index forms of one partition place
 * every element at the same position. Rows along axis run in parallel. Returns 0 or -1. */
int pnK_sort_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_SORT_H */
