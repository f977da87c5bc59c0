/* copy.h — launchers of the copy, conversion and creation kernels (copy.cu), called by the C
 * glue in copy.c (strided copies, fills, astype) and creation.c (arange, linspace, eye, tri,
 * tril/triu). Plain C: raw device pointers, dtypes and pnG_layout descriptors. Every launcher
 * queues its work on the Ponte GPU stream `stream` and returns 0, or -1 with an error set. */
#ifndef PONTE_BACKEND_CUDA_COPY_H
#define PONTE_BACKEND_CUDA_COPY_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[offset(L, 0, i)] = convert(src[offset(L, 1, i)]) for every i < L->size, with
 * pnC_convert's semantics when st != dt. L: 2 operands (0: dst, 1: src), dims merged as
 * pnC_nditer merges them. Picks a device-to-device memcpy (dense, same dtype), a vectorized
 * conversion (dense), a shared-memory tiled transpose, or a strided walk. */
int pnG_launch_copy(const pnG_layout *L, void *dst, pn_dtype dt, const void *src, pn_dtype st,
                    int stream);

/* n copies of the elem_size-byte value at the device address value into the dense dst;
 * elem_size 1, 2, 4 or 8 (anything else writes nothing, as pnK_fill). */
int pnG_launch_fill(void *dst, const void *value, size_t elem_size, int64_t n, int stream);

/* n elements of a sequence into the dense dst of dtype dt. int_mode (integer arange): element
 * i is (T)(base + i * istep) with uint64 wrap-around. Otherwise element i is
 * start + (double)i * step converted as pnC_convert converts float64, and with linspace the
 * last element (n > 1) is exactly stop. */
int pnG_launch_sequence(void *dst, pn_dtype dt, int64_t n, bool int_mode, uint64_t base,
                        uint64_t istep, double start, double step, double stop, bool linspace,
                        int stream);

/* What pnG_launch_band writes into a stack of n x m matrices, dense, rows * m elements in all:
 * row r is row i = r % n of its matrix, j its column, k the diagonal. */
typedef enum pnG_band_mode {
    PNG_BAND_EYE,  /* every element: 1 where j == i + k, else 0 */
    PNG_BAND_TRI,  /* every element: 1 where j <= i + k, else 0 */
    PNG_BAND_TRIL, /* in place: 0 where j > i + k, others untouched */
    PNG_BAND_TRIU, /* in place: 0 where j < i + k, others untouched */
} pnG_band_mode;

/* Writes the band pattern `mode` into dst (dtype dt, rows * m elements, dense). */
int pnG_launch_band(void *dst, pn_dtype dt, int64_t rows, int64_t n, int64_t m, int64_t k,
                    pnG_band_mode mode, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_COPY_H */
