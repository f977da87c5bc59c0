/* shape.c — shape arithmetic shared by every op (axis normalization, broadcasting, checks)
 * and the strided machinery shared by every kernel (the nditer and strided copies). */
#include "core.h"
#ifdef PONTE_HAS_GPU
#include "backend/cuda/eval.h"
#endif

#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>

int pnC_axis(const char *op, int axis, int ndim)
{
    int ax = axis < 0 ? axis + ndim : axis;
    if (ax < 0 || ax >= ndim) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid axis %d for array with %d dimensions.",
                 op, axis, ndim);
        return -1;
    }
    return ax;
}

int pnC_axes(const char *op, const int *axes, int naxes, int ndim, int *out)
{
    if (!axes) {
        for (int i = 0; i < ndim; i++) out[i] = i;
        return ndim;
    }
    if (naxes < 0 || naxes > PNC_MAX_NDIM) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid number of axes %d.", op, naxes);
        return -1;
    }
    for (int i = 0; i < naxes; i++) {
        int ax = pnC_axis(op, axes[i], ndim);
        if (ax < 0) return -1;
        for (int j = 0; j < i; j++) {
            if (out[j] == ax) {
                pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Received duplicate axis %d.", op, axes[i]);
                return -1;
            }
        }
        out[i] = ax;
    }
    return naxes;
}

const char *pnC_shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t k = 0;
    if (n == 0) return buf;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

/* See core.h. */
bool pnC_broadcasts_to(const pn_array *a, const int64_t *shape, int ndim)
{
    if (a->ndim > ndim) return false;
    for (int i = 1; i <= a->ndim; i++)
        if (a->shape[a->ndim - i] != 1 && a->shape[a->ndim - i] != shape[ndim - i]) return false;
    return true;
}

int pnC_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                         int64_t *out)
{
    int n = na > nb ? na : nb;
    if (n > PNC_MAX_NDIM) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Too many dimensions (%d).", op, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da != db && da != 1 && db != 1) {
            char sa[256], sb[256];
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Shapes %s and %s cannot be broadcast.", op,
                     pnC_shape_str(a, na, sa, sizeof sa), pnC_shape_str(b, nb, sb, sizeof sb));
            return -1;
        }
        out[i] = da == 1 ? db : da;
    }
    return n;
}

int pnC_check_shape(const char *op, const int64_t *shape, int ndim)
{
    if (ndim < 0 || ndim > PNC_MAX_NDIM)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Arrays have at most %d dimensions (got %d).", op, PNC_MAX_NDIM, ndim);
    if (ndim > 0 && !shape)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Shape is NULL.", op);
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Negative dimension %lld in shape.",
                                op, (long long)shape[i]);
        if (shape[i] && size > INT64_MAX / 16 / shape[i])
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Shape is too large.", op);
        size *= shape[i];
    }
    return 0;
}

int64_t pnC_shape_size(const int64_t *shape, int ndim)
{
    int64_t s = 1;
    for (int i = 0; i < ndim; i++) s *= shape[i];
    return s;
}

/* ───────────────────────────── nditer ───────────────────────────── */

void pnC_nditer_init(pnC_nditer *it, int ndim, const int64_t *shape, int nop,
                     const int64_t *const *strides)
{
    it->nop = nop;
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue; /* size-1 dims do not move anything */
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nop; k++)
                if (it->strides[k][n - 1] != strides[k][d] * shape[d]) merge = false;
            if (merge) {
                it->shape[n - 1] *= shape[d];
                for (int k = 0; k < nop; k++) it->strides[k][n - 1] = strides[k][d];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int k = 0; k < nop; k++) it->strides[k][n] = strides[k][d];
        n++;
    }
    if (n == 0) { /* 0-d, or all ones: one element */
        it->shape[0] = 1;
        for (int k = 0; k < nop; k++) it->strides[k][0] = 0;
        n = 1;
    }
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 0) { /* empty: one row of nothing */
            n = 1;
            it->shape[0] = 0;
            for (int k = 0; k < nop; k++) it->strides[k][0] = 0;
            break;
        }
    }
    it->ndim = n;
    it->inner = it->shape[n - 1];
    it->rows = 1;
    for (int d = 0; d < n - 1; d++) it->rows *= it->shape[d];
    if (it->inner == 0 || it->shape[0] == 0) it->rows = 0;
    for (int k = 0; k < nop; k++) it->inner_stride[k] = it->strides[k][n - 1];
}

void pnC_nditer_seek(const pnC_nditer *it, int64_t row, int64_t *idx, int64_t *offsets)
{
    for (int k = 0; k < it->nop; k++) offsets[k] = 0;
    for (int d = it->ndim - 2; d >= 0; d--) {
        idx[d] = row % it->shape[d];
        row /= it->shape[d];
        for (int k = 0; k < it->nop; k++) offsets[k] += idx[d] * it->strides[k][d];
    }
}

void pnC_nditer_next(const pnC_nditer *it, int64_t *idx, int64_t *offsets)
{
    for (int d = it->ndim - 2; d >= 0; d--) {
        idx[d]++;
        for (int k = 0; k < it->nop; k++) offsets[k] += it->strides[k][d];
        if (idx[d] < it->shape[d]) return;
        for (int k = 0; k < it->nop; k++) offsets[k] -= it->shape[d] * it->strides[k][d];
        idx[d] = 0;
    }
}

/* ───────────────────────────── strided copies ───────────────────────────── */

/* Copies one row of `inner` elements of size es between strided places. */
static inline void copy_row(char *d, int64_t ds, const char *s, int64_t ss, int64_t inner,
                            size_t es)
{
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)inner * es);
        return;
    }
#define ROW(T)                                                                                 \
    for (int64_t i = 0; i < inner; i++) ((T *)d)[i * ds] = ((const T *)s)[i * ss];             \
    return;
    switch (es) {
    case 1: ROW(uint8_t)
    case 2: ROW(uint16_t)
    case 4: ROW(uint32_t)
    case 8: ROW(uint64_t)
    default:
        for (int64_t i = 0; i < inner; i++) memcpy(d + i * ds * (int64_t)es, s + i * ss * (int64_t)es, es);
    }
#undef ROW
}

/* Copies a 2-d block (n0 x n1): dst[a * d0 + b] = src[a + b * s1] (the destination contiguous
 * along dim 1, the source along dim 0: a transpose), in T x T tiles. Each tile's source
 * columns are read whole into a buffer first: reading them in place at a power-of-two row
 * stride maps the tile's lines onto a few L1 sets, which evict one another (a 512-wide float
 * matrix transposed at under 1 GB/s). */
static void copy_tiled(char *dst, int64_t d0, const char *src, int64_t s1, int64_t n0, int64_t n1,
                       size_t es)
{
    enum { T = 32 };
    for (int64_t i0 = 0; i0 < n0; i0 += T)
        for (int64_t i1 = 0; i1 < n1; i1 += T) {
            int64_t m0 = i0 + T < n0 ? T : n0 - i0, m1 = i1 + T < n1 ? T : n1 - i1;
#define TILE(TY)                                                                               \
    {                                                                                          \
        TY buf[T][T]; /* buf[b][a]: the source's contiguous runs */                            \
        const TY *sp = (const TY *)src + i0 + i1 * s1;                                         \
        TY *dp = (TY *)dst + i0 * d0 + i1;                                                     \
        for (int64_t b = 0; b < m1; b++)                                                       \
            for (int64_t a = 0; a < m0; a++) buf[b][a] = sp[a + b * s1];                       \
        for (int64_t a = 0; a < m0; a++)                                                       \
            for (int64_t b = 0; b < m1; b++) dp[a * d0 + b] = buf[b][a];                       \
    }
            switch (es) {
            case 1: TILE(uint8_t) break;
            case 2: TILE(uint16_t) break;
            case 4: TILE(uint32_t) break;
            case 8: TILE(uint64_t) break;
            default:
                for (int64_t a = i0; a < i0 + m0; a++)
                    for (int64_t b = i1; b < i1 + m1; b++)
                        memcpy(dst + (a * d0 + b) * (int64_t)es, src + (a + b * s1) * (int64_t)es, es);
            }
#undef TILE
        }
}

/* The transpose-like case: same dtype, destination unit stride on the inner dim, source unit
 * stride on another dim k. Threads split the outer index space; each does tiled 2-d copies. */
static bool try_transpose_copy(const pnC_nditer *it, const char *src, char *dst, size_t es)
{
    int L = it->ndim - 1, k = -1;
    if (L < 1 || it->strides[0][L] != 1 || it->strides[1][L] == 1) return false;
    for (int d = 0; d < L; d++)
        if (it->strides[1][d] == 1) k = d;
    if (k < 0 || it->shape[k] < 8 || it->shape[L] < 8) return false;
    int64_t outer = 1;
    for (int d = 0; d < L; d++)
        if (d != k) outer *= it->shape[d];
#pragma omp parallel for if (outer * it->shape[k] * it->shape[L] > PNC_PAR_GRAIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, doff = 0, soff = 0;
        for (int d = L - 1; d >= 0; d--) {
            if (d == k) continue;
            int64_t i = rem % it->shape[d];
            rem /= it->shape[d];
            doff += i * it->strides[0][d];
            soff += i * it->strides[1][d];
        }
        copy_tiled(dst + doff * (int64_t)es, it->strides[0][k], src + soff * (int64_t)es,
                   it->strides[1][L], it->shape[k], it->shape[L], es);
    }
    return true;
}

void pnC_strided_copy(const void *srcv, const int64_t *sstr, pn_dtype st, void *dstv,
                      const int64_t *dstr, pn_dtype dt, const int64_t *shape, int ndim)
{
#ifdef PONTE_HAS_GPU
    if (pnC_eval_gpu) { /* inside a GPU kernel the pointers are device memory */
        pnG_strided_copy(srcv, sstr, st, dstv, dstr, dt, shape, ndim, pnC_eval_stream);
        return;
    }
#endif
    const char *src = srcv;
    char *dst = dstv;
    pnC_nditer it;
    const int64_t *strides[2] = {dstr, sstr};
    pnC_nditer_init(&it, ndim, shape, 2, strides);
    size_t ses = pn_dtype_size(st), des = pn_dtype_size(dt);
    int64_t total = it.rows * it.inner;
    bool same = st == dt;
    if (total == 0) return;
    if (same && try_transpose_copy(&it, src, dst, ses)) return;
    /* Work items: rows, or chunks of one long row when there are few rows. */
    int64_t chunk = it.inner;
    if (it.rows < 16 && it.inner > 2 * PNC_PAR_GRAIN) chunk = PNC_PAR_GRAIN;
    int64_t per_row = (it.inner + chunk - 1) / chunk, items = it.rows * per_row;
#pragma omp parallel if (total > PNC_PAR_GRAIN)
    {
        int nth = 1, tid = 0;
#ifdef _OPENMP
        nth = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        int64_t w0 = items * tid / nth, w1 = items * (tid + 1) / nth;
        int64_t idx[PNC_MAX_NDIM], off[2], row = -1;
        for (int64_t w = w0; w < w1; w++) {
            int64_t r = w / per_row, c0 = (w % per_row) * chunk;
            int64_t n = it.inner - c0 < chunk ? it.inner - c0 : chunk;
            if (r != row) {
                if (row >= 0 && r == row + 1) pnC_nditer_next(&it, idx, off);
                else pnC_nditer_seek(&it, r, idx, off);
                row = r;
            }
            char *d = dst + (off[0] + c0 * it.inner_stride[0]) * (int64_t)des;
            const char *s = src + (off[1] + c0 * it.inner_stride[1]) * (int64_t)ses;
            if (same) {
                copy_row(d, it.inner_stride[0], s, it.inner_stride[1], n, ses);
            } else if (it.inner_stride[0] == 1 && it.inner_stride[1] == 1) {
                pnC_convert(s, st, d, dt, n);
            } else {
                for (int64_t i = 0; i < n; i++)
                    pnC_convert(s + i * it.inner_stride[1] * (int64_t)ses, st,
                                d + i * it.inner_stride[0] * (int64_t)des, dt, 1);
            }
        }
    }
}

void pnC_copy_to_contiguous(const pn_array *src, void *dst)
{
    int64_t dstr[PNC_MAX_NDIM];
    pnC_row_strides(src->shape, src->ndim, dstr);
    pnC_strided_copy(pnC_data(src), src->strides, src->dtype, dst, dstr, src->dtype, src->shape,
                     src->ndim);
}

void pnC_gather_range(const pn_array *a, int64_t start, int64_t count, void *dst)
{
    const size_t es = pn_dtype_size(a->dtype);
    const int64_t *strides = a->strides;
    pnC_nditer it;
    pnC_nditer_init(&it, a->ndim, a->shape, 1, &strides);
    const char *base = pnC_data(a);
    const int64_t step = it.inner_stride[0];
    int64_t idx[PNC_MAX_NDIM], off[1], col = start % it.inner;
    pnC_nditer_seek(&it, start / it.inner, idx, off);
    char *d = dst;
    while (count > 0) {
        const int64_t len = it.inner - col < count ? it.inner - col : count;
        const char *s = base + (off[0] + col * step) * (int64_t)es;
        if (step == 1) {
            memcpy(d, s, (size_t)len * es);
        } else if (step == 0) { /* a broadcast element: repeated */
            for (int64_t k = 0; k < len; k++) memcpy(d + k * (int64_t)es, s, es);
        } else {
            for (int64_t k = 0; k < len; k++) memcpy(d + k * (int64_t)es, s + k * step * (int64_t)es, es);
        }
        d += len * (int64_t)es;
        count -= len;
        col = 0;
        if (count > 0) pnC_nditer_next(&it, idx, off);
    }
}

void pnC_copy_strided(const pn_array *src, pn_array *dst)
{
    pnC_strided_copy(pnC_data(src), src->strides, src->dtype, pnC_data(dst), dst->strides,
                     dst->dtype, dst->shape, dst->ndim);
}
