/* copy.h — CPU kernels that move elements for the shape and creation ops (copy.c): a copy
 * of an array into a strided region of another array's buffer, and a fill with one value.
 * Used by src/ops/shape.c (concatenate, pad, slice_update) and src/ops/creation.c. */
#ifndef PONTE_BACKEND_CPU_COPY_H
#define PONTE_BACKEND_CPU_COPY_H

#include "core/core.h"

/* Copies every element of src (evaluated, any strides) into the buffer of dst (evaluated,
 * same dtype) at element offset `offset` from dst's data with `strides` (elements,
 * ndim(src) entries): dst[offset + sum idx[i] * strides[i]] = src[idx]. Threaded. */
void pnK_copy_region(const pn_array *src, pn_array *dst, int64_t offset,
                     const int64_t *strides);
/* Writes n copies of the element at value (elem_size bytes: 1, 2, 4 or 8) to the contiguous
 * dst. Threaded. */
void pnK_fill(void *dst, const void *value, size_t elem_size, int64_t n);
/* memcpy of n bytes between host buffers that do not overlap, split over the OpenMP threads
 * when n is large (the GPU runtime's pinned staging uses it: one thread's memcpy is slower
 * than the host-device link). Plain memcpy when small or already inside a parallel region. */
void pnK_memcpy(void *dst, const void *src, size_t n);

#endif /* PONTE_BACKEND_CPU_COPY_H */
