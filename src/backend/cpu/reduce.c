/* reduce.c — CPU kernels of the reduction family: Reduce (sum, prod, max, min, all, any),
 * ArgReduce, Scan (cumsum, cumprod, cummax, cummin, logcumsumexp), Softmax and LogSumExp.
 *
 * Every reduction is brought to one shape, out[o, k] = reduce_r x[o, r, k] over a dense
 * buffer (outer, n, inner): inner == 1 is a row reduction (vectorized over LANES independent
 * accumulators, threaded over rows, or over blocks of one long row), inner > 1 a column
 * reduction that accumulates whole rows with contiguous inner loops. An input whose reduced
 * and kept axes do not fall into that shape (or that is not dense in any order) is reduced
 * where it lies when its last axis is kept and contiguous (pooling windows, strided slices:
 * per result row, the window's rows combined with contiguous inner loops), else first
 * copied into a [kept..., reduced...] layout. Per-dtype variation comes from one table
 * (REDUCE_TYPES), per-op variation from the combine macros (C_SUM, C_MAX, ...). */

/* Nothing here reads floating-point exception flags; without them GCC if-converts (and so
 * vectorizes) the selects of the max / NaN / exp loops. Results are the same IEEE values. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "backend/cpu/reduce.h"
#include "backend/cpu/ew_exprs.h" /* pnK_clogaddexp */
#include "backend/cpu/vmath.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define LANES 32    /* independent accumulators of a row reduction */
#define CH 512      /* columns per chunk of a scan; narrow column reductions: inner <= CH/2 */
#define CW 1024     /* columns per task of a wide column reduction */
#define BLOCK 65536 /* elements per block of a threaded single-row reduction */
#define MAX_BLOCKS 64

/* ───────────────────────────── the dtype table ───────────────────────────── */

#define ID(x) (x)
#define GT_R(a, b) ((a) > (b))
#define GT_C(a, b) (crealf(a) > crealf(b) || (crealf(a) == crealf(b) && cimagf(a) > cimagf(b)))
#define ISNAN(v) ((v) != (v))

/* X(DT, T, F, LD, ST, S, SO, SDT, LO, HI, GT):
 *   T storage type; F compute type (float for the half types) with LD: T -> F, ST: F -> T;
 *   S the accumulator of sums and products, stored as SO (dtype SDT, as MLX's sum);
 *   LO / HI the lowest / highest F values (identities of max / min); GT(a, b) is a > b in F. */
#define REDUCE_TYPES(X)                                                                        \
    X(PN_BOOL, bool, bool, ID, ID, int32_t, int32_t, PN_INT32, false, true, GT_R)              \
    X(PN_UINT8, uint8_t, uint8_t, ID, ID, uint32_t, uint32_t, PN_UINT32, 0, UINT8_MAX, GT_R)   \
    X(PN_UINT16, uint16_t, uint16_t, ID, ID, uint32_t, uint32_t, PN_UINT32, 0, UINT16_MAX,     \
      GT_R)                                                                                    \
    X(PN_UINT32, uint32_t, uint32_t, ID, ID, uint32_t, uint32_t, PN_UINT32, 0, UINT32_MAX,     \
      GT_R)                                                                                    \
    X(PN_UINT64, uint64_t, uint64_t, ID, ID, uint64_t, uint64_t, PN_UINT64, 0, UINT64_MAX,     \
      GT_R)                                                                                    \
    X(PN_INT8, int8_t, int8_t, ID, ID, int32_t, int32_t, PN_INT32, INT8_MIN, INT8_MAX, GT_R)   \
    X(PN_INT16, int16_t, int16_t, ID, ID, int32_t, int32_t, PN_INT32, INT16_MIN, INT16_MAX,    \
      GT_R)                                                                                    \
    X(PN_INT32, int32_t, int32_t, ID, ID, int32_t, int32_t, PN_INT32, INT32_MIN, INT32_MAX,    \
      GT_R)                                                                                    \
    X(PN_INT64, int64_t, int64_t, ID, ID, int64_t, int64_t, PN_INT64, INT64_MIN, INT64_MAX,    \
      GT_R)                                                                                    \
    X(PN_FLOAT16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16, float, pn_float16,        \
      PN_FLOAT16, -INFINITY, INFINITY, GT_R)                                                   \
    X(PN_FLOAT32, float, float, ID, ID, float, float, PN_FLOAT32, -INFINITY, INFINITY, GT_R)   \
    X(PN_FLOAT64, double, double, ID, ID, double, double, PN_FLOAT64, -INFINITY, INFINITY,     \
      GT_R)                                                                                    \
    X(PN_BFLOAT16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16, float, pn_bfloat16,   \
      PN_BFLOAT16, -INFINITY, INFINITY, GT_R)                                                  \
    X(PN_COMPLEX64, pn_complex64, pn_complex64, ID, ID, pn_complex64, pn_complex64,            \
      PN_COMPLEX64, -INFINITY, INFINITY, GT_C)

/* The float dtypes, for softmax, logsumexp and logcumsumexp: X(DT, T, A, LD, ST). */
#define FLOAT_TYPES(X)                                                                         \
    X(PN_FLOAT16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16)                           \
    X(PN_FLOAT32, float, float, ID, ID)                                                        \
    X(PN_FLOAT64, double, double, ID, ID)                                                      \
    X(PN_BFLOAT16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16)

pn_dtype pnK_sum_dtype(pn_dtype t)
{
    switch (t) {
#define SUM_DT(DT, T, F, LD, ST, S, SO, SDT, LO, HI, GT)                                       \
    case DT: return SDT;
        REDUCE_TYPES(SUM_DT)
#undef SUM_DT
    default: return t;
    }
}

/* ───────────────────────────── combining operations ───────────────────────────── */

/* C_op(acc, v, GT): acc combined with v. Max and min let NaN win, as MLX. */
#define C_SUM(a, v, GT) ((a) + (v))
/* complex: pnK_cmul, the product of the elementwise kernels and of the GPU's (Annex G's
 * infinities recovered), not C's own (whose contraction into fmas is the compiler's choice) */
#define C_PROD(a, v, GT) _Generic((a), pn_complex64: pnK_cmul((a), (v)), default: (a) * (v))
#define C_MAX(a, v, GT) ((GT(v, a) || ISNAN(v)) ? (v) : (a))
#define C_MIN(a, v, GT) ((GT(a, v) || ISNAN(v)) ? (v) : (a))
#define C_AND(a, v, GT) ((a) & (v))
#define C_OR(a, v, GT) ((a) | (v))
#define C_LAE(a, v, GT) lae(a, v)

/* bool products (cumprod of bool) multiply 0/1 values on purpose. */
#pragma GCC diagnostic ignored "-Wint-in-bool-context"

/* Loaders: element e of type T to the accumulator type A. */
#define L_CAST(A, LD, e) ((A)LD(e))
#define L_NZ(A, LD, e) (LD(e) != 0)

static inline float lae_f(float a, float b)
{
    if (ISNAN(a) || ISNAN(b)) return a + b;
    float hi = a > b ? a : b, lo = a > b ? b : a;
    if (isinf(hi)) return hi; /* -inf with -inf, or +inf */
    return hi + log1pf(expf(lo - hi));
}
static inline double lae_d(double a, double b)
{
    if (ISNAN(a) || ISNAN(b)) return a + b;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    if (isinf(hi)) return hi;
    return hi + log1p(exp(lo - hi));
}
#define lae(a, b) _Generic((a), double: lae_d, pn_complex64: pnK_clogaddexp, default: lae_f)(a, b)
/* float exp: vmath.h's, the one the elementwise kernels use (vectorizes in the loops here). */
#define EXP(x) _Generic((x), double: exp, default: pnV_expf)(x)
#define LOG(x) _Generic((x), double: log, default: logf)(x)

/* ───────────────────────────── Reduce kernels ───────────────────────────── */

/* out[o, k] = reduce_r x[o, r, k] for o < outer, r < n, k < inner; x dense. Sums are
 * multiplied by scale before they are stored. Returns 0 or -1 (out of memory). */
typedef int (*reduce_fn)(const void *x, void *out, int64_t outer, int64_t n, int64_t inner,
                         double scale);

/* Splits of the rows of a column reduction of `tasks` (slice, column chunk) pairs, chunks
 * cw wide: more than one only when there are too few tasks to share among threads. Depends
 * on the shape alone, so results do not depend on the number of threads. */
static int64_t col_splits(int64_t tasks, int64_t n, int64_t cw)
{
    if (tasks >= 8) return 1;
    int64_t ns = n * cw / (2 * PNC_PAR_GRAIN);
    if (ns > 16) ns = 16;
    if (ns > n) ns = n;
    return ns < 1 ? 1 : ns;
}

/* Blocks a single long row is split into for threads (fixed by n: results do not depend on
 * the number of threads). */
static int64_t row_blocks(int64_t n)
{
    int64_t nb = n / BLOCK;
    return nb > MAX_BLOCKS ? MAX_BLOCKS : nb < 1 ? 1 : nb;
}

#define DEF_REDUCE(NAME, T, A, O, LOADER, LD, ST, INIT, COMB, GT, FIN)                              \
    /* One row of n contiguous elements, LANES accumulators wide. */                           \
    static inline A NAME##_row(const T *x, int64_t n)                                          \
    {                                                                                          \
        if (n < LANES) {                                                                       \
            A r = (INIT);                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                  \
                A v = LOADER(A, LD, x[i]);                                                     \
                r = COMB(r, v, GT);                                                            \
            }                                                                                  \
            return r;                                                                          \
        }                                                                                      \
        A acc[LANES];                                                                          \
        for (int l = 0; l < LANES; l++) acc[l] = (INIT);                                       \
        int64_t i = 0;                                                                         \
        for (; i + LANES <= n; i += LANES)                                                     \
            for (int l = 0; l < LANES; l++) {                                                  \
                A v = LOADER(A, LD, x[i + l]);                                                 \
                acc[l] = COMB(acc[l], v, GT);                                                  \
            }                                                                                  \
        A r = acc[0];                                                                          \
        for (int l = 1; l < LANES; l++) r = COMB(r, acc[l], GT);                               \
        for (; i < n; i++) {                                                                   \
            A v = LOADER(A, LD, x[i]);                                                         \
            r = COMB(r, v, GT);                                                                \
        }                                                                                      \
        return r;                                                                              \
    }                                                                                          \
    /* Rows [r0, r1) of (rows, inner) with inner <= CH / 2 into acc[inner]: blocks of m rows   \
     * are one contiguous run of m * inner accumulators, folded at the end. */                 \
    static void NAME##_colsmall(const T *x, int64_t r0, int64_t r1, int64_t inner, A *acc)     \
    {                                                                                          \
        A buf[CH];                                                                             \
        int64_t m = CH / inner, w = m * inner, r = r0;                                         \
        for (int64_t j = 0; j < w; j++) buf[j] = (INIT);                                       \
        for (; r + m <= r1; r += m) {                                                          \
            const T *p = x + r * inner;                                                        \
            for (int64_t j = 0; j < w; j++) {                                                  \
                A v = LOADER(A, LD, p[j]);                                                     \
                buf[j] = COMB(buf[j], v, GT);                                                  \
            }                                                                                  \
        }                                                                                      \
        for (; r < r1; r++) {                                                                  \
            const T *p = x + r * inner;                                                        \
            for (int64_t k = 0; k < inner; k++) {                                              \
                A v = LOADER(A, LD, p[k]);                                                     \
                buf[k] = COMB(buf[k], v, GT);                                                  \
            }                                                                                  \
        }                                                                                      \
        for (int64_t k = 0; k < inner; k++) {                                                  \
            A a = buf[k];                                                                      \
            for (int64_t q = 1; q < m; q++) a = COMB(a, buf[q * inner + k], GT);               \
            acc[k] = a;                                                                        \
        }                                                                                      \
    }                                                                                          \
    static int NAME(const void *xv, void *ov, int64_t outer, int64_t n, int64_t inner,          \
                    double scale)                                                              \
    {                                                                                          \
        const T *x = xv;                                                                       \
        O *out = ov;                                                                           \
        int64_t total = outer * n * inner;                                                     \
        if (inner == 1 && outer == 1 && n > 2 * BLOCK) { /* one long row: blocks */            \
            int64_t nb = row_blocks(n);                                                        \
            A part[MAX_BLOCKS];                                                                \
            _Pragma("omp parallel for schedule(static)") for (int64_t b = 0; b < nb; b++)      \
            {                                                                                  \
                int64_t s = n * b / nb, e = n * (b + 1) / nb;                                  \
                part[b] = NAME##_row(x + s, e - s);                                            \
            }                                                                                  \
            A r = part[0];                                                                     \
            for (int64_t b = 1; b < nb; b++) r = COMB(r, part[b], GT);                         \
            out[0] = ST(FIN(A, r));                                                            \
            return 0;                                                                          \
        }                                                                                      \
        if (inner == 1) { /* rows */                                                           \
            _Pragma("omp parallel for schedule(static) if (total > PNC_PAR_GRAIN && outer > 1)") \
            for (int64_t o = 0; o < outer; o++) {                                              \
                A r = NAME##_row(x + o * n, n);                                                \
                out[o] = ST(FIN(A, r));                                                        \
            }                                                                                  \
            return 0;                                                                          \
        }                                                                                      \
        /* Columns: task (o, c, s) folds rows [n s / ns, n (s+1) / ns) of columns chunk c      \
         * of slice o, reading runs of whole (narrow inner) or cw-wide rows in order. With     \
         * ns > 1 (too few tasks for the threads) partial results meet in part. */             \
        int64_t cw = inner <= CH / 2 ? inner : CW, nch = (inner + cw - 1) / cw;                 \
        int64_t ns = col_splits(outer * nch, n, cw);                                           \
        A *part = NULL;                                                                        \
        if (ns > 1 && !(part = malloc((size_t)(outer * ns * inner) * sizeof(A)))) return -1;   \
        _Pragma("omp parallel for schedule(static) if (total > PNC_PAR_GRAIN && outer * nch * ns > 1)") \
        for (int64_t t = 0; t < outer * nch * ns; t++) {                                       \
            int64_t o = t / (nch * ns), k0 = (t / ns) % nch * cw, s = t % ns;                  \
            int64_t len = inner - k0 < cw ? inner - k0 : cw, r0 = n * s / ns, r1 = n * (s + 1) / ns; \
            const T *xo = x + o * n * inner;                                                   \
            A buf[CW];                                                                         \
            if (inner <= CH / 2) {                                                             \
                NAME##_colsmall(xo, r0, r1, inner, buf);                                       \
            } else {                                                                           \
                for (int64_t j = 0; j < len; j++) buf[j] = (INIT);                             \
                for (int64_t r = r0; r < r1; r++) {                                            \
                    const T *p = xo + r * inner + k0;                                          \
                    for (int64_t j = 0; j < len; j++) {                                        \
                        A v = LOADER(A, LD, p[j]);                                             \
                        buf[j] = COMB(buf[j], v, GT);                                          \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            if (ns == 1)                                                                       \
                for (int64_t j = 0; j < len; j++) out[o * inner + k0 + j] = ST(FIN(A, buf[j])); \
            else                                                                               \
                memcpy(part + (o * ns + s) * inner + k0, buf, (size_t)len * sizeof(A));        \
        }                                                                                      \
        if (ns == 1) return 0;                                                                 \
        _Pragma("omp parallel for schedule(static) if (outer * inner * ns > PNC_PAR_GRAIN)")   \
        for (int64_t e = 0; e < outer * inner; e++) {                                          \
            int64_t o = e / inner, k = e % inner;                                              \
            A a = part[o * ns * inner + k];                                                    \
            for (int64_t s = 1; s < ns; s++) a = COMB(a, part[(o * ns + s) * inner + k], GT);  \
            out[e] = ST(FIN(A, a));                                                            \
        }                                                                                      \
        free(part);                                                                            \
        return 0;                                                                              \
    }                                                                                          \
    /* out[o, k] = reduce_r x[ooff[o] + roff[r] + k] for k < inner (contiguous): the windows   \
     * of a strided view reduced where they lie, inner in chunks of CW. */                     \
    static void NAME##_win(const void *xv, void *ov, int64_t outer, const int64_t *ooff,       \
                           int64_t nred, const int64_t *roff, int64_t inner, double scale)    \
    {                                                                                          \
        const T *x = xv;                                                                       \
        O *out = ov;                                                                           \
        (void)scale;                                                                           \
        int64_t nch = (inner + CW - 1) / CW;                                                   \
        _Pragma("omp parallel for schedule(static) if (outer * nred * inner > PNC_PAR_GRAIN && outer * nch > 1)") \
        for (int64_t t = 0; t < outer * nch; t++) {                                            \
            int64_t o = t / nch, k0 = t % nch * CW, len = inner - k0 < CW ? inner - k0 : CW;   \
            const T *xo = x + ooff[o] + k0;                                                    \
            A buf[CW];                                                                         \
            for (int64_t j = 0; j < len; j++) buf[j] = (INIT);                                 \
            for (int64_t r = 0; r < nred; r++) {                                               \
                const T *p = xo + roff[r];                                                     \
                for (int64_t j = 0; j < len; j++) {                                            \
                    A v = LOADER(A, LD, p[j]);                                                 \
                    buf[j] = COMB(buf[j], v, GT);                                              \
                }                                                                              \
            }                                                                                  \
            O *po = out + o * inner + k0;                                                      \
            for (int64_t j = 0; j < len; j++) po[j] = ST(FIN(A, buf[j]));                      \
        }                                                                                      \
    }

/* Finishers applied to each result before it is stored: sums may be scaled (mean). */
#define F_ID(A, a) (a)
#define F_SCALE(A, a) (scale == 1 ? (a) : (A)((a) * scale))

/* Per dtype: sum and prod accumulate in S, max and min compare in F, all and any in bool. */
#define DEF_REDUCE_ALL(DT, T, F, LD, ST, S, SO, SDT, LO, HI, GT)                               \
    DEF_REDUCE(r_sum_##DT, T, S, SO, L_CAST, LD, ST, (S)0, C_SUM, GT, F_SCALE)                 \
    DEF_REDUCE(r_prod_##DT, T, S, SO, L_CAST, LD, ST, (S)1, C_PROD, GT, F_ID)                  \
    DEF_REDUCE(r_max_##DT, T, F, T, L_CAST, LD, ST, (F)(LO), C_MAX, GT, F_ID)                  \
    DEF_REDUCE(r_min_##DT, T, F, T, L_CAST, LD, ST, (F)(HI), C_MIN, GT, F_ID)                  \
    DEF_REDUCE(r_and_##DT, T, bool, bool, L_NZ, LD, ID, true, C_AND, GT, F_ID)                 \
    DEF_REDUCE(r_or_##DT, T, bool, bool, L_NZ, LD, ID, false, C_OR, GT, F_ID)
REDUCE_TYPES(DEF_REDUCE_ALL)

/* The in-place reduction of strided windows (NAME_win above). */
typedef void (*win_fn)(const void *x, void *out, int64_t outer, const int64_t *ooff,
                       int64_t nred, const int64_t *roff, int64_t inner, double scale);

/* Per (op, dtype): the kernel over a dense (outer, n, inner) layout and the window kernel. */
typedef struct reduce_kernels {
    reduce_fn dense;
    win_fn win;
} reduce_kernels;

#define E_SUM(DT, ...) [DT] = {r_sum_##DT, r_sum_##DT##_win},
#define E_PROD(DT, ...) [DT] = {r_prod_##DT, r_prod_##DT##_win},
#define E_MAX(DT, ...) [DT] = {r_max_##DT, r_max_##DT##_win},
#define E_MIN(DT, ...) [DT] = {r_min_##DT, r_min_##DT##_win},
#define E_AND(DT, ...) [DT] = {r_and_##DT, r_and_##DT##_win},
#define E_OR(DT, ...) [DT] = {r_or_##DT, r_or_##DT##_win},
static const reduce_kernels reduce_table[PNK_NUM_REDUCE_OPS][PN_NUM_DTYPES] = {
    [PNK_SUM] = {REDUCE_TYPES(E_SUM)}, [PNK_PROD] = {REDUCE_TYPES(E_PROD)},
    [PNK_MAX] = {REDUCE_TYPES(E_MAX)}, [PNK_MIN] = {REDUCE_TYPES(E_MIN)},
    [PNK_AND] = {REDUCE_TYPES(E_AND)}, [PNK_OR] = {REDUCE_TYPES(E_OR)},
};

/* ───────────────────────────── layout planning ───────────────────────────── */

/* Copies every element of src (any strides) to dst at the element strides dst_strides
 * (ndim(src) entries). Rows of the merged iteration go to threads for large arrays. */
static void copy_strided(const pn_array *src, void *dst, const int64_t *dst_strides)
{
    size_t w = pn_dtype_size(src->dtype);
    const int64_t *strides[2] = {src->strides, dst_strides};
    pnC_nditer it;
    pnC_nditer_init(&it, src->ndim, src->shape, 2, strides);
    const char *s0 = pnC_data(src);
    char *d0 = dst;
#pragma omp parallel if (src->size > PNC_PAR_GRAIN && it.rows > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t r0 = it.rows * t / nt, r1 = it.rows * (t + 1) / nt;
        int64_t idx[PNC_MAX_NDIM], off[PNC_MAX_OPS];
        if (r0 < r1) pnC_nditer_seek(&it, r0, idx, off);
        for (int64_t r = r0; r < r1; r++) {
            const char *s = s0 + off[0] * (int64_t)w;
            char *d = d0 + off[1] * (int64_t)w;
            int64_t ss = it.inner_stride[0], ds = it.inner_stride[1];
            switch (w) {
#define COPY_W(W, UT)                                                                          \
    case W:                                                                                    \
        for (int64_t j = 0; j < it.inner; j++) ((UT *)d)[j * ds] = ((const UT *)s)[j * ss];   \
        break;
                COPY_W(1, uint8_t)
                COPY_W(2, uint16_t)
                COPY_W(4, uint32_t)
                COPY_W(8, uint64_t)
#undef COPY_W
            default: break;
            }
            if (r + 1 < r1) pnC_nditer_next(&it, idx, off);
        }
    }
}

/* A reduction brought to out[o, k] = reduce_r data[o, r, k]. tmp (when not NULL) is a copy
 * that the caller frees with pnC_free_bytes(tmp, cap). */
typedef struct layout {
    const void *data;
    void *tmp;
    size_t cap;
    int64_t outer, n, inner;
} layout;

/* Plans the reduction of x over the axes flagged in red. rows_only asks for inner == 1.
 * Uses x's memory when it is dense (in some axis order) with the kept axes in order and the
 * reduced ones grouped as [K, R], [R, K] or [K, R, K]; otherwise copies x into a dense
 * [kept..., reduced...] buffer, or, when copy is false, returns 1 (nothing planned).
 * Returns 0 or -1 (out of memory). */
static int plan_reduce(const pn_array *x, const bool *red, bool rows_only, bool copy, layout *L)
{
    int nd = x->ndim;
    int64_t kept = 1, nred = 1;
    for (int i = 0; i < nd; i++) {
        if (red[i]) nred *= x->shape[i];
        else kept *= x->shape[i];
    }
    L->tmp = NULL;
    L->cap = 0;
    if (x->size == 0) { /* nothing to read: every output is the identity */
        *L = (layout){NULL, NULL, 0, kept, 0, 1};
        return 0;
    }
    /* The axes of extent > 1 ordered by decreasing stride (stable). */
    int ax[PNC_MAX_NDIM], m = 0;
    for (int i = 0; i < nd; i++)
        if (x->shape[i] != 1) ax[m++] = i;
    if (!pnC_row_contiguous(x))
        for (int j = 1; j < m; j++)
            for (int q = j; q > 0 && x->strides[ax[q - 1]] < x->strides[ax[q]]; q--) {
                int t = ax[q];
                ax[q] = ax[q - 1];
                ax[q - 1] = t;
            }
    bool ok = true;
    int64_t expect = 1;
    for (int j = m - 1; j >= 0 && ok; j--) {
        ok = x->strides[ax[j]] == expect;
        expect *= x->shape[ax[j]];
    }
    for (int j = 0, prev = -1; j < m && ok; j++)
        if (!red[ax[j]]) {
            ok = ax[j] > prev;
            prev = ax[j];
        }
    if (ok) { /* groups of consecutive kept / reduced axes */
        int ng = 0;
        bool gred[3];
        int64_t gsz[3];
        for (int j = 0; j < m && ng <= 3; j++) {
            if (ng > 0 && gred[ng - 1] == red[ax[j]]) {
                gsz[ng - 1] *= x->shape[ax[j]];
            } else if (ng < 3) {
                gred[ng] = red[ax[j]];
                gsz[ng++] = x->shape[ax[j]];
            } else {
                ng = 4;
            }
        }
        int64_t o = 1, r = 1, k = 1;
        if (ng == 0) {
        } else if (ng == 1) {
            if (gred[0]) r = gsz[0];
            else o = gsz[0];
        } else if (ng == 2 && !gred[0]) {
            o = gsz[0], r = gsz[1];
        } else if (ng == 2 && !rows_only) {
            r = gsz[0], k = gsz[1];
        } else if (ng == 3 && !gred[0] && !rows_only) {
            o = gsz[0], r = gsz[1], k = gsz[2];
        } else {
            ok = false;
        }
        if (ok) {
            *L = (layout){pnC_data(x), NULL, 0, o, r, k};
            return 0;
        }
    }
    if (!copy) return 1;
    /* Copy into [kept..., reduced...], each group in its original order. */
    int64_t dst[PNC_MAX_NDIM], s = 1;
    for (int pass = 0; pass < 2; pass++)
        for (int i = nd - 1; i >= 0; i--)
            if (red[i] == (pass == 0)) {
                dst[i] = s;
                s *= x->shape[i];
            }
    size_t cap;
    void *tmp = pnC_alloc_bytes((size_t)x->size * pn_dtype_size(x->dtype), &cap);
    if (!tmp) return -1;
    copy_strided(x, tmp, dst);
    *L = (layout){tmp, tmp, cap, kept, nred, 1};
    return 0;
}

/* x as a dense row-major buffer: its own memory when row-contiguous, else a copy. */
static int plan_rowmajor(const pn_array *x, layout *L)
{
    *L = (layout){NULL, NULL, 0, 1, x->size, 1};
    if (x->size == 0 || pnC_row_contiguous(x)) {
        L->data = x->size ? pnC_data(x) : NULL;
        return 0;
    }
    int64_t dst[PNC_MAX_NDIM];
    pnC_row_strides(x->shape, x->ndim, dst);
    L->tmp = pnC_alloc_bytes((size_t)x->size * pn_dtype_size(x->dtype), &L->cap);
    if (!L->tmp) return -1;
    copy_strided(x, L->tmp, dst);
    L->data = L->tmp;
    return 0;
}

static void layout_free(layout *L)
{
    if (L->tmp) pnC_free_bytes(L->tmp, L->cap);
    L->tmp = NULL;
}

/* (outer, n, inner) of axis in a row-major shape. */
static void split_axis(const pn_array *x, int axis, layout *L)
{
    L->outer = L->inner = 1;
    for (int i = 0; i < axis; i++) L->outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) L->inner *= x->shape[i];
    L->n = x->shape[axis];
}

/* off[i] = the element offset in x of the i-th (row-major) index over its n axes. */
static void axis_offsets(const pn_array *x, const int *axes, int n, int64_t *off)
{
    int64_t idx[PNC_MAX_NDIM] = {0}, cur = 0, count = 1;
    for (int j = 0; j < n; j++) count *= x->shape[axes[j]];
    for (int64_t i = 0; i < count; i++) {
        off[i] = cur;
        for (int j = n - 1; j >= 0; j--) {
            int a = axes[j];
            cur += x->strides[a];
            if (++idx[j] < x->shape[a]) break;
            cur -= x->strides[a] * x->shape[a];
            idx[j] = 0;
        }
    }
}

#define WIN_MIN_INNER 8   /* the contiguous kept extent that pays for the window kernel */
#define WIN_MAX_RED 4096  /* the most elements of one window */

/* Reduces x (not dense in a plannable order) over the axes flagged in red where its elements
 * lie, without a dense copy, when its last axis is kept, contiguous and at least
 * WIN_MIN_INNER wide and a window has at most WIN_MAX_RED elements (the windows of pooling,
 * strided slices): the offsets of each result row and of each window element, then fn.
 * Returns 1 when x does not qualify, else 0 or -1 (out of memory). */
static int reduce_windows(const pn_array *x, const bool *red, win_fn fn, void *out, double scale)
{
    int nd = x->ndim;
    if (nd < 2 || red[nd - 1] || x->strides[nd - 1] != 1 || x->shape[nd - 1] < WIN_MIN_INNER)
        return 1;
    int kax[PNC_MAX_NDIM], rax[PNC_MAX_NDIM], nk = 0, nr = 0;
    int64_t outer = 1, nred = 1;
    for (int i = 0; i < nd - 1; i++) {
        if (red[i]) rax[nr++] = i, nred *= x->shape[i];
        else kax[nk++] = i, outer *= x->shape[i];
    }
    if (nred > WIN_MAX_RED) return 1;
    int64_t *off = malloc((size_t)(outer + nred) * sizeof *off);
    if (!off) return -1;
    axis_offsets(x, kax, nk, off);
    axis_offsets(x, rax, nr, off + outer);
    fn(pnC_data(x), out, outer, off, nred, off + outer, x->shape[nd - 1], scale);
    free(off);
    return 0;
}

/* See reduce.h. */
int pnK_reduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *o = out[0];
    const reduce_kernels *k = &reduce_table[p->op][x->dtype];
    if (!k->dense)
        return pn_set_error(PN_ERR_BACKEND, "[reduce] No CPU kernel for %s.",
                            pn_dtype_name(x->dtype));
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    double scale = p->op == PNK_SUM ? p->scale : 1.0;
    layout L;
    int rc = plan_reduce(x, red, false, false, &L);
    if (rc == 1) { /* not in place: the windows where they lie, else a dense copy */
        rc = reduce_windows(x, red, k->win, pnC_data(o), scale);
        if (rc == 0) return 0;
        if (rc == 1) rc = plan_reduce(x, red, false, true, &L);
    }
    if (rc < 0) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[reduce] Out of memory.");
    rc = k->dense(L.data, pnC_data(o), L.outer, L.n, L.inner, scale);
    layout_free(&L);
    return rc ? pn_set_error(PN_ERR_OUT_OF_MEMORY, "[reduce] Out of memory.") : 0;
}

/* ───────────────────────────── ExtremeVjp ───────────────────────────── */

/* g = x == m ? c / ties : 0 over each window, written dense in x's shape: out (the max or
 * min, m) and cot (c) are dense over the kept index (outer rows x inner), ties counts the
 * window's elements equal to m. x's window element r of row o lies at koff[2o] + roff[2r]
 * (+ k * xs along the inner axis), g's at koff[2o + 1] + roff[2r + 1] (+ k). The quotient is
 * rounded to T before it is stored, as the composite where(x == m, c / ties, 0). */
#define EV_CW 64
typedef void (*ev_fn)(const void *x, const void *out, const void *cot, void *g, int64_t outer,
                      const int64_t *koff, int64_t nred, const int64_t *roff, int64_t inner,
                      int64_t xs);
#define DEF_EXTREME_VJP(DT, T, A, LD, ST)                                                      \
    static void ev_##DT(const void *xv, const void *ov, const void *cv, void *gv,            \
                        int64_t outer, const int64_t *koff, int64_t nred, const int64_t *roff, \
                        int64_t inner, int64_t xs)                                             \
    {                                                                                          \
        const T *x = xv, *out = ov, *cot = cv;                                                 \
        T *g = gv;                                                                             \
        const T zero = ST((A)0);                                                               \
        int64_t nch = (inner + EV_CW - 1) / EV_CW;                                             \
        _Pragma("omp parallel for schedule(static) if (outer * nred * inner > PNC_PAR_GRAIN && outer * nch > 1)") \
        for (int64_t t = 0; t < outer * nch; t++) {                                            \
            int64_t o = t / nch, k0 = t % nch * EV_CW, len = inner - k0 < EV_CW ? inner - k0 : EV_CW; \
            const T *xo = x + koff[2 * o] + k0 * xs;                                           \
            T *go = g + koff[2 * o + 1] + k0;                                                  \
            A m[EV_CW];                                                                        \
            T v[EV_CW];                                                                        \
            int32_t ties[EV_CW];                                                               \
            for (int64_t j = 0; j < len; j++) m[j] = LD(out[o * inner + k0 + j]), ties[j] = 0; \
            for (int64_t r = 0; r < nred; r++) {                                               \
                const T *p = xo + roff[2 * r];                                                 \
                for (int64_t j = 0; j < len; j++) ties[j] += LD(p[j * xs]) == m[j];            \
            }                                                                                  \
            for (int64_t j = 0; j < len; j++)                                                  \
                v[j] = ST((A)LD(cot[o * inner + k0 + j]) / (A)LD(ST((A)ties[j])));             \
            for (int64_t r = 0; r < nred; r++) {                                               \
                const T *p = xo + roff[2 * r];                                                 \
                T *q = go + roff[2 * r + 1];                                                   \
                for (int64_t j = 0; j < len; j++) q[j] = LD(p[j * xs]) == m[j] ? v[j] : zero;  \
            }                                                                                  \
        }                                                                                      \
    }
FLOAT_TYPES(DEF_EXTREME_VJP)
#define E_EV(DT, ...) [DT] = ev_##DT,
static const ev_fn extreme_vjp_table[PN_NUM_DTYPES] = {FLOAT_TYPES(E_EV)};

/* off[2i], off[2i + 1] = the element offsets in x (its strides) and in a dense array of x's
 * shape of the i-th (row-major) index over x's axes axes[0..n-1]. */
static void axis_offsets2(const pn_array *x, const int *axes, int n, int64_t *off)
{
    int64_t rs[PNC_MAX_NDIM], idx[PNC_MAX_NDIM] = {0}, cur[2] = {0, 0}, count = 1;
    pnC_row_strides(x->shape, x->ndim, rs);
    for (int j = 0; j < n; j++) count *= x->shape[axes[j]];
    for (int64_t i = 0; i < count; i++) {
        off[2 * i] = cur[0], off[2 * i + 1] = cur[1];
        for (int j = n - 1; j >= 0; j--) {
            int a = axes[j];
            cur[0] += x->strides[a], cur[1] += rs[a];
            if (++idx[j] < x->shape[a]) break;
            cur[0] -= x->strides[a] * x->shape[a], cur[1] -= rs[a] * x->shape[a];
            idx[j] = 0;
        }
    }
}

/* See reduce.h. */
int pnK_extreme_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *g = out[0];
    ev_fn fn = extreme_vjp_table[x->dtype];
    if (!fn || in[1]->dtype != x->dtype || in[2]->dtype != x->dtype)
        return pn_set_error(PN_ERR_BACKEND, "[ExtremeVjp] No CPU kernel for %s.", pn_dtype_name(x->dtype));
    if (pnC_alloc_output(g)) return -1;
    if (g->size == 0) return 0;
    pn_array *m = pnC_contiguous(in[1]), *c = m ? pnC_contiguous(in[2]) : NULL; /* small */
    if (!c) {
        if (m) pnC_decref(m);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ExtremeVjp] Out of memory.");
    }
    const int nd = x->ndim;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    /* the last axis, when kept, is the inner run (vectorized when x is dense along it) */
    bool inner_last = nd > 0 && !red[nd - 1];
    int kax[PNC_MAX_NDIM], rax[PNC_MAX_NDIM], nk = 0, nr = 0;
    int64_t outer = 1, nred = 1;
    for (int i = 0; i < nd - (inner_last ? 1 : 0); i++) {
        if (red[i]) rax[nr++] = i, nred *= x->shape[i];
        else kax[nk++] = i, outer *= x->shape[i];
    }
    int64_t inner = inner_last ? x->shape[nd - 1] : 1, xs = inner_last ? x->strides[nd - 1] : 1;
    int64_t *off = malloc((size_t)(outer + nred) * 2 * sizeof *off);
    if (off) {
        axis_offsets2(x, kax, nk, off);
        axis_offsets2(x, rax, nr, off + 2 * outer);
        fn(pnC_data(x), pnC_data(m), pnC_data(c), pnC_data(g), outer, off, nred,
           off + 2 * outer, inner, xs);
        free(off);
    }
    pnC_decref(m);
    pnC_decref(c);
    return off ? 0 : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ExtremeVjp] Out of memory.");
}

/* ───────────────────────────── ArgReduce ───────────────────────────── */

/* out[o, k] = index r of the first extreme of x[o, r, k] (NaN counts as the extreme). */
typedef void (*arg_fn)(const void *x, uint32_t *out, int64_t outer, int64_t n, int64_t inner);

#define BETTER_MAX(v, b, GT) (GT(v, b) || (ISNAN(v) && !ISNAN(b)))
#define BETTER_MIN(v, b, GT) (GT(b, v) || (ISNAN(v) && !ISNAN(b)))

#define ARG_LANES 8
#define DEF_ARG(NAME, T, F, LD, GT, BETTER)                                                    \
    /* One row: ARG_LANES running (best, index) pairs, merged with the lowest index winning    \
     * ties (and the first NaN winning). */                                                    \
    static uint32_t NAME##_row(const T *x, int64_t n)                                          \
    {                                                                                          \
        F best[ARG_LANES];                                                                     \
        int64_t idx[ARG_LANES] = {0};                                                          \
        int64_t i = 0, nl = n < ARG_LANES ? n : ARG_LANES;                                     \
        if (n <= 0) return 0;                                                                  \
        for (int l = 0; l < nl; l++) {                                                         \
            best[l] = LD(x[l]);                                                                \
            idx[l] = l;                                                                        \
        }                                                                                      \
        if (n >= ARG_LANES)                                                                    \
            for (i = ARG_LANES; i + ARG_LANES <= n; i += ARG_LANES)                            \
                for (int l = 0; l < ARG_LANES; l++) {                                          \
                    F v = LD(x[i + l]);                                                        \
                    bool b = BETTER(v, best[l], GT);                                           \
                    best[l] = b ? v : best[l];                                                 \
                    idx[l] = b ? i + l : idx[l];                                               \
                }                                                                              \
        else                                                                                   \
            i = n;                                                                             \
        F bv = best[0];                                                                        \
        int64_t bi = idx[0];                                                                   \
        for (int l = 1; l < nl; l++) {                                                         \
            bool same = bv == best[l] || (ISNAN(bv) && ISNAN(best[l]));                        \
            if (BETTER(best[l], bv, GT) || (same && idx[l] < bi)) {                            \
                bv = best[l];                                                                  \
                bi = idx[l];                                                                   \
            }                                                                                  \
        }                                                                                      \
        for (; i < n; i++) {                                                                   \
            F v = LD(x[i]);                                                                    \
            if (BETTER(v, bv, GT)) {                                                           \
                bv = v;                                                                        \
                bi = i;                                                                        \
            }                                                                                  \
        }                                                                                      \
        return (uint32_t)bi;                                                                   \
    }                                                                                          \
    static void NAME(const void *xv, uint32_t *out, int64_t outer, int64_t n, int64_t inner)   \
    {                                                                                          \
        const T *x = xv;                                                                       \
        if (inner == 1) {                                                                      \
            _Pragma("omp parallel for schedule(static) if (outer * n > PNC_PAR_GRAIN && outer > 1)") \
            for (int64_t o = 0; o < outer; o++) out[o] = NAME##_row(x + o * n, n);             \
            return;                                                                            \
        }                                                                                      \
        int64_t nch = (inner + CH - 1) / CH;                                                   \
        _Pragma("omp parallel for schedule(static) if (outer * n * inner > PNC_PAR_GRAIN)")    \
        for (int64_t t = 0; t < outer * nch; t++) {                                            \
            int64_t o = t / nch, k0 = (t % nch) * CH;                                          \
            int64_t len = inner - k0 < CH ? inner - k0 : CH;                                   \
            const T *xo = x + o * n * inner + k0;                                              \
            F best[CH];                                                                        \
            uint32_t idx[CH];                                                                  \
            for (int64_t j = 0; j < len; j++) {                                                \
                best[j] = LD(xo[j]);                                                           \
                idx[j] = 0;                                                                    \
            }                                                                                  \
            for (int64_t r = 1; r < n; r++) {                                                  \
                const T *p = xo + r * inner;                                                   \
                for (int64_t j = 0; j < len; j++) {                                            \
                    F v = LD(p[j]);                                                            \
                    bool b = BETTER(v, best[j], GT);                                           \
                    best[j] = b ? v : best[j];                                                 \
                    idx[j] = b ? (uint32_t)r : idx[j];                                         \
                }                                                                              \
            }                                                                                  \
            for (int64_t j = 0; j < len; j++) out[o * inner + k0 + j] = idx[j];                \
        }                                                                                      \
    }

#define DEF_ARG_ALL(DT, T, F, LD, ST, S, SO, SDT, LO, HI, GT)                                  \
    DEF_ARG(a_max_##DT, T, F, LD, GT, BETTER_MAX)                                              \
    DEF_ARG(a_min_##DT, T, F, LD, GT, BETTER_MIN)
REDUCE_TYPES(DEF_ARG_ALL)

#define E_AMAX(DT, ...) [DT] = a_max_##DT,
#define E_AMIN(DT, ...) [DT] = a_min_##DT,
static const arg_fn arg_table[2][PN_NUM_DTYPES] = {{REDUCE_TYPES(E_AMAX)},
                                                   {REDUCE_TYPES(E_AMIN)}};

/* See reduce.h. */
int pnK_argreduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_argreduce_params *p = PNC_PARAMS(node, pnK_argreduce_params);
    pn_array *x = in[0], *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0 || x->size == 0) return 0;
    layout L;
    if (p->axis == PN_ALL_AXES) {
        if (plan_rowmajor(x, &L)) return -1;
    } else {
        bool red[PNC_MAX_NDIM] = {0};
        red[p->axis] = true;
        if (plan_reduce(x, red, false, true, &L)) return -1;
    }
    arg_table[p->op == PNK_MIN][x->dtype](L.data, pnC_data(o), L.outer, L.n, L.inner);
    layout_free(&L);
    return 0;
}

/* ───────────────────────────── Scan ───────────────────────────── */

/* out[o, i, k] = op over x[o, j, k] for j <= i (j >= i when reverse; strictly when
 * exclusive, the first being the identity). In and out have the same dtype. */
typedef void (*scan_fn)(const void *x, void *out, int64_t outer, int64_t n, int64_t inner,
                        bool reverse, bool inclusive);

#define DEF_SCAN(NAME, T, A, LD, ST, INIT, COMB, GT)                                           \
    static void NAME(const void *xv, void *ov, int64_t outer, int64_t n, int64_t inner,        \
                     bool reverse, bool inclusive)                                             \
    {                                                                                          \
        const T *x = xv;                                                                       \
        T *out = ov;                                                                           \
        if (inner == 1) { /* rows: one running value each */                                   \
            int64_t d = reverse ? -1 : 1;                                                      \
            _Pragma("omp parallel for schedule(static) if (outer * n > PNC_PAR_GRAIN && outer > 1)") \
            for (int64_t o = 0; o < outer; o++) {                                              \
                const T *p = x + o * n + (reverse ? n - 1 : 0);                                \
                T *q = out + o * n + (reverse ? n - 1 : 0);                                    \
                A acc = (INIT);                                                                \
                if (inclusive)                                                                 \
                    for (int64_t s = 0; s < n; s++) {                                          \
                        A v = LD(p[s * d]);                                                    \
                        acc = COMB(acc, v, GT);                                                \
                        q[s * d] = ST(acc);                                                    \
                    }                                                                          \
                else                                                                           \
                    for (int64_t s = 0; s < n; s++) {                                          \
                        A v = LD(p[s * d]);                                                    \
                        q[s * d] = ST(acc);                                                    \
                        acc = COMB(acc, v, GT);                                                \
                    }                                                                          \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        int64_t nch = (inner + CH - 1) / CH;                                                   \
        _Pragma("omp parallel for schedule(static) if (outer * n * inner > PNC_PAR_GRAIN)")    \
        for (int64_t t = 0; t < outer * nch; t++) {                                            \
            int64_t o = t / nch, k0 = (t % nch) * CH;                                          \
            int64_t len = inner - k0 < CH ? inner - k0 : CH;                                   \
            A acc[CH];                                                                         \
            for (int64_t j = 0; j < len; j++) acc[j] = (INIT);                                 \
            for (int64_t s = 0; s < n; s++) {                                                  \
                int64_t i = reverse ? n - 1 - s : s;                                           \
                const T *p = x + (o * n + i) * inner + k0;                                     \
                T *q = out + (o * n + i) * inner + k0;                                         \
                if (inclusive)                                                                 \
                    for (int64_t j = 0; j < len; j++) {                                        \
                        A v = LD(p[j]);                                                        \
                        acc[j] = COMB(acc[j], v, GT);                                          \
                        q[j] = ST(acc[j]);                                                     \
                    }                                                                          \
                else                                                                           \
                    for (int64_t j = 0; j < len; j++) {                                        \
                        A v = LD(p[j]);                                                        \
                        q[j] = ST(acc[j]);                                                     \
                        acc[j] = COMB(acc[j], v, GT);                                          \
                    }                                                                          \
            }                                                                                  \
        }                                                                                      \
    }

#define DEF_SCAN_ALL(DT, T, F, LD, ST, S, SO, SDT, LO, HI, GT)                                 \
    DEF_SCAN(s_sum_##DT, T, F, LD, ST, (F)0, C_SUM, GT)                                        \
    DEF_SCAN(s_prod_##DT, T, F, LD, ST, (F)1, C_PROD, GT)                                      \
    DEF_SCAN(s_max_##DT, T, F, LD, ST, (F)(LO), C_MAX, GT)                                     \
    DEF_SCAN(s_min_##DT, T, F, LD, ST, (F)(HI), C_MIN, GT)
REDUCE_TYPES(DEF_SCAN_ALL)
#define DEF_SCAN_LAE(DT, T, A, LD, ST) DEF_SCAN(s_lae_##DT, T, A, LD, ST, (A)-INFINITY, C_LAE, GT_R)
FLOAT_TYPES(DEF_SCAN_LAE)
DEF_SCAN_LAE(PN_COMPLEX64, pn_complex64, pn_complex64, ID, ID) /* -inf + 0j first */

#define E_SSUM(DT, ...) [DT] = s_sum_##DT,
#define E_SPROD(DT, ...) [DT] = s_prod_##DT,
#define E_SMAX(DT, ...) [DT] = s_max_##DT,
#define E_SMIN(DT, ...) [DT] = s_min_##DT,
#define E_SLAE(DT, ...) [DT] = s_lae_##DT,
static const scan_fn scan_table[PNK_NUM_REDUCE_OPS][PN_NUM_DTYPES] = {
    [PNK_SUM] = {REDUCE_TYPES(E_SSUM)}, [PNK_PROD] = {REDUCE_TYPES(E_SPROD)},
    [PNK_MAX] = {REDUCE_TYPES(E_SMAX)}, [PNK_MIN] = {REDUCE_TYPES(E_SMIN)},
    [PNK_LOGADDEXP] = {FLOAT_TYPES(E_SLAE) E_SLAE(PN_COMPLEX64)},
};

/* See reduce.h. */
int pnK_scan_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_scan_params *p = PNC_PARAMS(node, pnK_scan_params);
    pn_array *x = in[0], *o = out[0];
    scan_fn fn = scan_table[p->op][x->dtype];
    if (!fn || o->dtype != x->dtype)
        return pn_set_error(PN_ERR_BACKEND, "[scan] No CPU kernel for %s.",
                            pn_dtype_name(x->dtype));
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    layout L;
    if (plan_rowmajor(x, &L)) return -1;
    if (p->axis != PN_ALL_AXES) split_axis(x, p->axis, &L);
    fn(L.data, pnC_data(o), L.outer, L.n, L.inner, p->reverse, p->inclusive);
    layout_free(&L);
    return 0;
}

/* ───────────────────────────── Softmax and LogSumExp ───────────────────────────── */

/* Softmax or logsumexp of each contiguous row of n elements; A accumulates. */
typedef void (*rows_fn)(const void *x, void *out, int64_t rows, int64_t n);

/* sum(exp(row - m)) in LANES accumulators; also writes the exps to q when q != NULL. */
#define DEF_SUMEXP(NAME, T, A, LD, ST)                                                         \
    static inline A NAME(const T *p, T *q, int64_t n, A m)                                     \
    {                                                                                          \
        A acc[LANES];                                                                          \
        for (int l = 0; l < LANES; l++) acc[l] = 0;                                            \
        int64_t i = 0;                                                                         \
        if (q)                                                                                 \
            for (; i + LANES <= n; i += LANES)                                                 \
                for (int l = 0; l < LANES; l++) {                                              \
                    A e = EXP((A)LD(p[i + l]) - m);                                            \
                    q[i + l] = ST(e);                                                          \
                    acc[l] += e;                                                               \
                }                                                                              \
        else                                                                                   \
            for (; i + LANES <= n; i += LANES)                                                 \
                for (int l = 0; l < LANES; l++) acc[l] += EXP((A)LD(p[i + l]) - m);            \
        A s = 0;                                                                               \
        for (int l = 0; l < LANES; l++) s += acc[l];                                           \
        for (; i < n; i++) {                                                                   \
            A e = EXP((A)LD(p[i]) - m);                                                        \
            if (q) q[i] = ST(e);                                                               \
            s += e;                                                                            \
        }                                                                                      \
        return s;                                                                              \
    }

/* Softmax: max (NaN wins), then exp(x - max) / sum. float32 / float64 write the exps and
 * scale them; the half types recompute them in float rather than round them twice. */
#define DEF_SOFTMAX(NAME, T, A, LD, ST, DT)                                                    \
    static void NAME(const void *xv, void *ov, int64_t rows, int64_t n)                        \
    {                                                                                          \
        const T *x = xv;                                                                       \
        T *out = ov;                                                                           \
        _Pragma("omp parallel for schedule(static) if (rows * n > PNC_PAR_GRAIN / 8 && rows > 1)") \
        for (int64_t r = 0; r < rows; r++) {                                                   \
            const T *p = x + r * n;                                                            \
            T *q = out + r * n;                                                                \
            A m = r_max_##DT##_row(p, n);                                                      \
            bool direct = sizeof(T) == sizeof(A);                                              \
            A inv = (A)1 / sumexp_##DT(p, direct ? q : NULL, n, m);                            \
            if (direct)                                                                        \
                for (int64_t i = 0; i < n; i++) q[i] = ST((A)LD(q[i]) * inv);                  \
            else                                                                               \
                for (int64_t i = 0; i < n; i++) q[i] = ST(EXP((A)LD(p[i]) - m) * inv);         \
        }                                                                                      \
    }

/* log(sum(exp(row))) of each contiguous row; rows whose max is infinite give that max. */
#define DEF_LSE(NAME, T, A, LD, ST, DT)                                                        \
    static void NAME(const void *xv, void *ov, int64_t rows, int64_t n)                        \
    {                                                                                          \
        const T *x = xv;                                                                       \
        T *out = ov;                                                                           \
        _Pragma("omp parallel for schedule(static) if (rows * n > PNC_PAR_GRAIN / 8 && rows > 1)") \
        for (int64_t r = 0; r < rows; r++) {                                                   \
            const T *p = x + r * n;                                                            \
            A m = r_max_##DT##_row(p, n);                                                      \
            out[r] = ST(isinf(m) ? m : m + LOG(sumexp_##DT(p, NULL, n, m)));                   \
        }                                                                                      \
    }

#define DEF_ROWS_ALL(DT, T, A, LD, ST)                                                         \
    DEF_SUMEXP(sumexp_##DT, T, A, LD, ST)                                                      \
    DEF_SOFTMAX(sm_##DT, T, A, LD, ST, DT)                                                     \
    DEF_LSE(lse_##DT, T, A, LD, ST, DT)
FLOAT_TYPES(DEF_ROWS_ALL)
#define E_SM(DT, ...) [DT] = sm_##DT,
#define E_LSE(DT, ...) [DT] = lse_##DT,
static const rows_fn softmax_table[PN_NUM_DTYPES] = {FLOAT_TYPES(E_SM)};
static const rows_fn lse_table[PN_NUM_DTYPES] = {FLOAT_TYPES(E_LSE)};

/* See reduce.h. */
int pnK_softmax_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_softmax_params *p = PNC_PARAMS(node, pnK_softmax_params);
    pn_array *x = in[0], *o = out[0];
    rows_fn fn = softmax_table[x->dtype];
    if (!fn || o->dtype != x->dtype)
        return pn_set_error(PN_ERR_BACKEND, "[softmax] No CPU kernel for %s.",
                            pn_dtype_name(x->dtype));
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    layout L;
    if (plan_rowmajor(x, &L)) return -1;
    int64_t n = 1;
    for (int i = x->ndim - p->naxes; i < x->ndim; i++) n *= x->shape[i];
    fn(L.data, pnC_data(o), x->size / n, n);
    layout_free(&L);
    return 0;
}

/* See reduce.h. */
int pnK_logsumexp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_reduce_params *p = PNC_PARAMS(node, pnK_reduce_params);
    pn_array *x = in[0], *o = out[0];
    rows_fn fn = lse_table[x->dtype];
    if (!fn || o->dtype != x->dtype)
        return pn_set_error(PN_ERR_BACKEND, "[logsumexp] No CPU kernel for %s.",
                            pn_dtype_name(x->dtype));
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < p->naxes; i++) red[p->axes[i]] = true;
    layout L;
    if (plan_reduce(x, red, true, true, &L)) return -1;
    fn(L.data, pnC_data(o), L.outer, L.n);
    layout_free(&L);
    return 0;
}
