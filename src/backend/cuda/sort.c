/* sort.c — the GPU eval of the sort family (Sort, ArgSort, Partition, ArgPartition;
 * src/ops/sort.c): describes the rows along the axis and runs the stable (key, index) sort of
 * sort.cu. Partitions are full sorts in the CPU's total order (value, then source index),
 * which places the kth element, keeps smaller ones before and larger after, and gives the
 * value and index forms the same arrangement, as the CPU contract asks. */
#include "backend/cpu/sort.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/sort.h"
#include "core/core.h"

/* Rows shorter than this sort by comparisons on the CPU (ties of -0 and +0 keep their order);
 * longer value sorts by radix keys (src/backend/cpu/sort.c, PNK_RADIX_MIN). */
enum { RADIX_MIN = 256 };

/* See eval.h. */
int pnG_sort_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_sort_params *pr = PNC_PARAMS(node, pnK_sort_params);
    const pn_array *a = in[0];
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int ax = pr->axis;
    int64_t n = a->shape[ax];
    if (o->size == 0 || n == 0) return 0;
    if (n >= (int64_t)UINT32_MAX) return PNG_UNSUPPORTED;

    pnG_sort_desc d;
    memset(&d, 0, sizeof d);
    for (int k = 0; k < a->ndim; k++) { /* the row dims: drop extent 1, merge contiguous */
        if (k == ax || a->shape[k] == 1) continue;
        if (d.nd > 0 && d.astr[d.nd - 1] == a->strides[k] * a->shape[k] &&
            d.ostr[d.nd - 1] == o->strides[k] * a->shape[k]) {
            d.shape[d.nd - 1] *= a->shape[k];
            d.astr[d.nd - 1] = a->strides[k];
            d.ostr[d.nd - 1] = o->strides[k];
            continue;
        }
        if (d.nd == PNG_MAX_NDIM) return PNG_UNSUPPORTED;
        d.shape[d.nd] = a->shape[k];
        d.astr[d.nd] = a->strides[k];
        d.ostr[d.nd] = o->strides[k];
        d.nd++;
    }
    d.rows = a->size / n;
    d.n = n;
    d.sa = a->strides[ax];
    d.so = o->strides[ax];
    d.lo = pr->lo;
    d.arg = pr->arg;
    d.canon = pr->arg || pr->partition || n < RADIX_MIN || a->dtype == PN_COMPLEX64;
    return pnG_sort(&d, a->dtype, pnC_data(a), pnC_data(o), node->stream.index);
}
