/* sort.h — the launcher of the GPU sort family (sort.cu), called by its C glue (sort.c).
 * Plain C. */
#ifndef PONTE_BACKEND_CUDA_SORT_H
#define PONTE_BACKEND_CUDA_SORT_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A sort along one axis: the rows are the positions of the other dims (shape, merged, with
 * element strides of the input `a` and of the output `o`); each row has n elements (stride sa
 * in a) and its arranged positions [lo, n) go to the output (stride so). */
typedef struct pnG_sort_desc {
    int nd;
    int64_t shape[PNG_MAX_NDIM], astr[PNG_MAX_NDIM], ostr[PNG_MAX_NDIM];
    int64_t rows, n, sa, so, lo;
    bool arg;   /* write uint32 source indices */
    bool canon; /* order -0 with +0 and write source values; else write values from the keys
                 * (the CPU's radix path: -0 before +0, one NaN) */
} pnG_sort_desc;

/* Sorts every row of src (dtype) stably, ascending with NaNs last (complex: lexicographic,
 * a NaN in either part counts as NaN), into dst as d describes. Queued on stream. Returns 0,
 * PNG_UNSUPPORTED (dtype) or -1 with an error. */
int pnG_sort(const pnG_sort_desc *d, pn_dtype dtype, const void *src, void *dst, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_SORT_H */
