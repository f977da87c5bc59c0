/* copy.c — CPU kernels that move elements for the shape and creation ops: a copy into a
 * strided region of another buffer (concatenate, pad and slice_update write their pieces
 * with it, through the core's strided copy) and a fill with one value (1, 2, 4 or 8-byte
 * elements, so one loop serves every dtype), and a threaded memcpy for the GPU's staging. */
#include "backend/cpu/copy.h"
#ifdef PONTE_HAS_GPU
#include "backend/cuda/eval.h"
#endif

#include <omp.h>
#include <string.h>

/* See copy.h. The region is described by a header on the stack that views dst's buffer with
 * src's shape; the core's pnC_copy_strided then walks both. */
void pnK_copy_region(const pn_array *src, pn_array *dst, int64_t offset,
                     const int64_t *strides)
{
    if (src->size == 0) return;
    union {
        pn_array a;
        unsigned char room[sizeof(pn_array) + 2 * PNC_MAX_NDIM * sizeof(int64_t)];
    } u;
    memset(&u.a, 0, sizeof u.a);
    pn_array *v = &u.a;
    v->dtype = dst->dtype;
    v->ndim = src->ndim;
    v->buf = dst->buf;
    v->offset = dst->offset + offset;
    v->size = src->size;
    v->shape = v->dims;
    v->strides = v->dims + src->ndim;
    memcpy(v->shape, src->shape, (size_t)src->ndim * sizeof(int64_t));
    memcpy(v->strides, strides, (size_t)src->ndim * sizeof(int64_t));
    pnC_copy_strided(src, v);
}

/* See copy.h. */
void pnK_fill(void *dst, const void *value, size_t elem_size, int64_t n)
{
#ifdef PONTE_HAS_GPU
    if (pnC_eval_gpu) { /* inside a GPU kernel: dst and value are device memory */
        pnG_fill(dst, value, elem_size, n, pnC_eval_stream);
        return;
    }
#endif
    switch (elem_size) {
#define FILL(W, UT)                                                                            \
    case W: {                                                                                  \
        UT v, *d = dst;                                                                        \
        memcpy(&v, value, W);                                                                  \
        _Pragma("omp parallel for if (n > PNC_PAR_GRAIN)") for (int64_t i = 0; i < n; i++)     \
            d[i] = v;                                                                          \
        break;                                                                                 \
    }
        FILL(1, uint8_t)
        FILL(2, uint16_t)
        FILL(4, uint32_t)
        FILL(8, uint64_t)
#undef FILL
    default: break;
    }
}

/* See copy.h. */
void pnK_memcpy(void *dst, const void *src, size_t n)
{
    const size_t piece = (size_t)512 << 10;
    if (n < 2 * piece || omp_in_parallel()) {
        memcpy(dst, src, n);
        return;
    }
    int64_t pieces = (int64_t)((n + piece - 1) / piece);
#pragma omp parallel for
    for (int64_t i = 0; i < pieces; i++) {
        size_t off = (size_t)i * piece;
        memcpy((char *)dst + off, (const char *)src + off, n - off < piece ? n - off : piece);
    }
}
