/* sort.c — CPU sorting along an axis. Rows of real dtypes from PNK_RADIX_MIN elements sort by
 * an LSD radix sort on order-preserving unsigned keys (stable, one pass per key byte); shorter
 * rows and complex ones by a stable bottom-up merge sort (insertion-sorted runs); partitions
 * and top-k by an introselect (median-of-3 quickselect, heapsort fallback). Each row is loaded
 * into per-thread scratch (as keys, or in a compute type: float16/bfloat16 as float, bool as
 * uint8), arranged there and written out; rows run in parallel. Per-dtype variation goes
 * through one macro table. */
#include "backend/cpu/sort.h"

#include <omp.h>
#include <stdlib.h>

/* Ascending order with NaNs last. */
#define PNK_LT_INT(a, b) ((a) < (b))
#define PNK_LT_FLT(a, b) ((a) < (b) || ((b) != (b) && (a) == (a)))
#define PNK_CNAN(z) (crealf(z) != crealf(z) || cimagf(z) != cimagf(z))
#define PNK_LT_CPX(a, b)                                                                       \
    (!PNK_CNAN(a) && (PNK_CNAN(b) || crealf(a) < crealf(b) ||                                  \
                      (crealf(a) == crealf(b) && cimagf(a) < cimagf(b))))

/* X(name, compute type, less-than) for each compute type. */
#define PNK_SORT_CTYPES(X)                                                                     \
    X(u8, uint8_t, PNK_LT_INT)                                                                 \
    X(u16, uint16_t, PNK_LT_INT)                                                               \
    X(u32, uint32_t, PNK_LT_INT)                                                               \
    X(u64, uint64_t, PNK_LT_INT)                                                               \
    X(i8, int8_t, PNK_LT_INT)                                                                  \
    X(i16, int16_t, PNK_LT_INT)                                                                \
    X(i32, int32_t, PNK_LT_INT)                                                                \
    X(i64, int64_t, PNK_LT_INT)                                                                \
    X(f32, float, PNK_LT_FLT)                                                                  \
    X(f64, double, PNK_LT_FLT)                                                                 \
    X(c64, pn_complex64, PNK_LT_CPX)

/* Radix key kinds: how a dtype's bits become an unsigned key in sort order. */
enum { PNK_KEY_NONE, PNK_KEY_UINT, PNK_KEY_SINT, PNK_KEY_FLOAT };

/* X(ENUM, storage type, compute name, compute type, to compute, from compute,
 *   key kind, key bits, float infinity bits). */
#define PNK_ID(x) (x)
#define PNK_SORT_DTYPES(X)                                                                     \
    X(PN_BOOL, bool, u8, uint8_t, PNK_ID, PNK_ID, PNK_KEY_UINT, 8, 0)                          \
    X(PN_UINT8, uint8_t, u8, uint8_t, PNK_ID, PNK_ID, PNK_KEY_UINT, 8, 0)                      \
    X(PN_UINT16, uint16_t, u16, uint16_t, PNK_ID, PNK_ID, PNK_KEY_UINT, 16, 0)                 \
    X(PN_UINT32, uint32_t, u32, uint32_t, PNK_ID, PNK_ID, PNK_KEY_UINT, 32, 0)                 \
    X(PN_UINT64, uint64_t, u64, uint64_t, PNK_ID, PNK_ID, PNK_KEY_UINT, 64, 0)                 \
    X(PN_INT8, int8_t, i8, int8_t, PNK_ID, PNK_ID, PNK_KEY_SINT, 8, 0)                         \
    X(PN_INT16, int16_t, i16, int16_t, PNK_ID, PNK_ID, PNK_KEY_SINT, 16, 0)                    \
    X(PN_INT32, int32_t, i32, int32_t, PNK_ID, PNK_ID, PNK_KEY_SINT, 32, 0)                    \
    X(PN_INT64, int64_t, i64, int64_t, PNK_ID, PNK_ID, PNK_KEY_SINT, 64, 0)                    \
    X(PN_FLOAT16, pn_float16, f32, float, pnC_f16_to_f32, pnC_f32_to_f16, PNK_KEY_FLOAT, 16,   \
      0x7c00u)                                                                                 \
    X(PN_FLOAT32, float, f32, float, PNK_ID, PNK_ID, PNK_KEY_FLOAT, 32, 0x7f800000u)           \
    X(PN_FLOAT64, double, f64, double, PNK_ID, PNK_ID, PNK_KEY_FLOAT, 64,                      \
      0x7ff0000000000000ull)                                                                   \
    X(PN_BFLOAT16, pn_bfloat16, f32, float, pnC_bf16_to_f32, pnC_f32_to_bf16, PNK_KEY_FLOAT,   \
      16, 0x7f80u)                                                                             \
    X(PN_COMPLEX64, pn_complex64, c64, pn_complex64, PNK_ID, PNK_ID, PNK_KEY_NONE, 64, 0)

/* Scratch per row: two arrays of the largest (value, index) pair. */
enum { PNK_PAIR_MAX = 16, PNK_RUN = 24, PNK_SELECT_SMALL = 16, PNK_RADIX_MIN = 256 };

/* ───────────────────────────── algorithms (one macro each) ───────────────────────────── */
/* LESS(LT, x, y) compares two elements with the compute type's LT: by value, by the value of
 * a (value, index) pair, or by the pair's total order (value, then index). */
#define PNK_VAL_LESS(LT, x, y) LT(x, y)
#define PNK_PAIR_LESS(LT, x, y) LT((x).v, (y).v)
#define PNK_PAIR_TOTAL(LT, x, y) (LT((x).v, (y).v) || (!LT((y).v, (x).v) && (x).i < (y).i))

/* Stable merge sort of a[0..n); tmp has room for n elements. */
#define PNK_MERGESORT(FN, E, LESS, LT)                                                         \
    static void FN(E *a, E *tmp, int64_t n)                                                    \
    {                                                                                          \
        for (int64_t s = 0; s < n; s += PNK_RUN) {                                             \
            int64_t e = s + PNK_RUN < n ? s + PNK_RUN : n;                                     \
            for (int64_t i = s + 1; i < e; i++) {                                              \
                E x = a[i];                                                                    \
                int64_t j = i;                                                                 \
                for (; j > s && LESS(LT, x, a[j - 1]); j--) a[j] = a[j - 1];                   \
                a[j] = x;                                                                      \
            }                                                                                  \
        }                                                                                      \
        E *src = a, *dst = tmp;                                                                \
        for (int64_t w = PNK_RUN; w < n; w *= 2) {                                             \
            for (int64_t s = 0; s < n; s += 2 * w) {                                           \
                int64_t m = s + w < n ? s + w : n, e = s + 2 * w < n ? s + 2 * w : n;          \
                int64_t i = s, j = m, k = s;                                                   \
                if (m < e && LESS(LT, src[m], src[m - 1])) {                                   \
                    while (i < m && j < e)                                                     \
                        dst[k++] = LESS(LT, src[j], src[i]) ? src[j++] : src[i++];             \
                }                                                                              \
                if (i < m) memcpy(dst + k, src + i, (size_t)(m - i) * sizeof(E));              \
                k += m - i;                                                                    \
                if (j < e) memcpy(dst + k, src + j, (size_t)(e - j) * sizeof(E));              \
            }                                                                                  \
            E *t = src;                                                                        \
            src = dst;                                                                         \
            dst = t;                                                                           \
        }                                                                                      \
        if (src != a) memcpy(a, src, (size_t)n * sizeof(E));                                   \
    }

/* Heapsort of a[0..n) (the introselect fallback: O(n log n) whatever the input). */
#define PNK_HEAPSORT(FN, E, LESS, LT)                                                          \
    static void FN##_sift(E *a, int64_t i, int64_t n)                                          \
    {                                                                                          \
        E x = a[i];                                                                            \
        for (int64_t c; (c = 2 * i + 1) < n; i = c) {                                          \
            if (c + 1 < n && LESS(LT, a[c], a[c + 1])) c++;                                    \
            if (!LESS(LT, x, a[c])) break;                                                     \
            a[i] = a[c];                                                                       \
        }                                                                                      \
        a[i] = x;                                                                              \
    }                                                                                          \
    static void FN(E *a, int64_t n)                                                            \
    {                                                                                          \
        for (int64_t i = n / 2 - 1; i >= 0; i--) FN##_sift(a, i, n);                           \
        for (int64_t e = n - 1; e > 0; e--) {                                                  \
            E t = a[0];                                                                        \
            a[0] = a[e];                                                                       \
            a[e] = t;                                                                          \
            FN##_sift(a, 0, e);                                                                \
        }                                                                                      \
    }

/* Places a[k] in sorted order with smaller elements before it and larger after (LESS must
 * be a strict total order). Median-of-3 quickselect; heapsort when it degenerates. */
#define PNK_SELECT(FN, E, LESS, LT, HEAPFN)                                                    \
    static void FN(E *a, int64_t n, int64_t k)                                                 \
    {                                                                                          \
        int64_t lo = 0, hi = n - 1;                                                            \
        int depth = 8;                                                                         \
        for (int64_t m = n; m > 1; m >>= 1) depth += 2;                                        \
        E t;                                                                                   \
        while (hi - lo > PNK_SELECT_SMALL) {                                                   \
            if (depth-- == 0) {                                                                \
                HEAPFN(a + lo, hi - lo + 1);                                                   \
                return;                                                                        \
            }                                                                                  \
            int64_t mid = lo + (hi - lo) / 2;                                                  \
            if (LESS(LT, a[mid], a[lo])) t = a[mid], a[mid] = a[lo], a[lo] = t;                \
            if (LESS(LT, a[hi], a[lo])) t = a[hi], a[hi] = a[lo], a[lo] = t;                   \
            if (LESS(LT, a[hi], a[mid])) t = a[hi], a[hi] = a[mid], a[mid] = t;                \
            t = a[mid], a[mid] = a[hi - 1], a[hi - 1] = t;                                     \
            E pv = a[hi - 1];                                                                  \
            int64_t i = lo, j = hi - 1;                                                        \
            for (;;) {                                                                         \
                do ++i; while (LESS(LT, a[i], pv));                                             \
                do --j; while (LESS(LT, pv, a[j]));                                             \
                if (i >= j) break;                                                             \
                t = a[i], a[i] = a[j], a[j] = t;                                               \
            }                                                                                  \
            t = a[i], a[i] = a[hi - 1], a[hi - 1] = t;                                         \
            if (k == i) return;                                                                \
            if (k < i) hi = i - 1;                                                             \
            else lo = i + 1;                                                                   \
        }                                                                                      \
        for (int64_t i = lo + 1; i <= hi; i++) {                                               \
            E x = a[i];                                                                        \
            int64_t j = i;                                                                     \
            for (; j > lo && LESS(LT, x, a[j - 1]); j--) a[j] = a[j - 1];                      \
            a[j] = x;                                                                          \
        }                                                                                      \
    }

/* Per compute type: its (value, index) pair, the value sort, the stable pair sort, and the
 * selection in the pairs' total order. */
#define PNK_SORT_ALGOS(name, C, LT)                                                            \
    typedef struct pair_##name {                                                               \
        C v;                                                                                   \
        uint32_t i;                                                                            \
    } pair_##name;                                                                             \
    _Static_assert(sizeof(pair_##name) <= PNK_PAIR_MAX, "pair too large");                     \
    PNK_MERGESORT(msort_##name, C, PNK_VAL_LESS, LT)                                           \
    PNK_MERGESORT(msortp_##name, pair_##name, PNK_PAIR_LESS, LT)                               \
    PNK_HEAPSORT(heap_##name, pair_##name, PNK_PAIR_TOTAL, LT)                                 \
    PNK_SELECT(select_##name, pair_##name, PNK_PAIR_TOTAL, LT, heap_##name)
PNK_SORT_CTYPES(PNK_SORT_ALGOS)

/* ───────────────────────────── radix sort ───────────────────────────── */

static inline uint64_t pnk_load_bits(const char *p, int w)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (w) {
    case 8: memcpy(&u8, p, 1); return u8;
    case 16: memcpy(&u16, p, 2); return u16;
    case 32: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

static inline void pnk_store_bits(char *p, int w, uint64_t u)
{
    uint8_t u8 = (uint8_t)u;
    uint16_t u16 = (uint16_t)u;
    uint32_t u32 = (uint32_t)u;
    switch (w) {
    case 8: memcpy(p, &u8, 1); break;
    case 16: memcpy(p, &u16, 2); break;
    case 32: memcpy(p, &u32, 4); break;
    default: memcpy(p, &u, 8); break;
    }
}

/* The unsigned key (w bits) of the element at p, in sort order: integers flip the sign bit,
 * floats flip every bit of negatives and the sign bit of the rest, every NaN becomes the
 * largest key. canon also gives -0 the key of +0: argsort must keep equal values in index
 * order. Without it (value sorts) the map is one-to-one except for NaN payloads. */
static inline uint64_t pnk_key(const char *p, int w, int kind, uint64_t inf, bool canon)
{
    uint64_t u = pnk_load_bits(p, w), sign = 1ull << (w - 1);
    uint64_t mask = w == 64 ? ~0ull : (1ull << w) - 1;
    if (kind == PNK_KEY_UINT) return u;
    if (kind == PNK_KEY_SINT) return u ^ sign;
    if ((u & ~sign) > inf) return mask;
    if (canon && u == sign) u = 0;
    return (u & sign) ? (~u & mask) : (u | sign);
}

/* The inverse of pnk_key (a NaN comes back as the NaN with every mantissa bit set). */
static inline void pnk_unkey(char *p, uint64_t k, int w, int kind)
{
    uint64_t sign = 1ull << (w - 1), mask = w == 64 ? ~0ull : (1ull << w) - 1;
    uint64_t u = kind == PNK_KEY_UINT ? k : kind == PNK_KEY_SINT ? k ^ sign
               : (k & sign)           ? k ^ sign
                                      : ~k & mask;
    pnk_store_bits(p, w, u);
}

/* Sorts one row through W-bit keys: least significant byte first, each pass a stable
 * counting sort (skipped when every key has the same digit). scratch holds 2n keys and 2n
 * indices. Writes values, or the uint32 source indices when pr->arg. */
#define PNK_RADIX(K, W)                                                                        \
    static void radix_row_##W(const pnK_sort_params *pr, const char *src, int64_t ss,          \
                              char *dst, int64_t ds, int64_t n, void *scratch, int kind,       \
                              uint64_t inf)                                                    \
    {                                                                                          \
        enum { NB = W / 8, ES = W / 8 };                                                       \
        K *k = (K *)scratch, *k2 = k + n;                                                      \
        uint32_t *ix = (uint32_t *)(k2 + n), *ix2 = ix + n;                                    \
        int64_t cnt[NB][256];                                                                  \
        memset(cnt, 0, sizeof cnt);                                                            \
        for (int64_t i = 0; i < n; i++) {                                                      \
            K v = (K)pnk_key(src + i * ss * ES, W, kind, inf, pr->arg);                        \
            k[i] = v;                                                                          \
            for (int b = 0; b < NB; b++) cnt[b][(v >> (8 * b)) & 255]++;                       \
        }                                                                                      \
        if (pr->arg)                                                                           \
            for (int64_t i = 0; i < n; i++) ix[i] = (uint32_t)i;                               \
        for (int b = 0; b < NB; b++) {                                                         \
            int64_t *c = cnt[b], sum = 0;                                                      \
            if (c[(k[0] >> (8 * b)) & 255] == n) continue;                                     \
            for (int d = 0; d < 256; d++) {                                                    \
                int64_t t = c[d];                                                              \
                c[d] = sum;                                                                    \
                sum += t;                                                                      \
            }                                                                                  \
            if (pr->arg) {                                                                     \
                for (int64_t i = 0; i < n; i++) {                                              \
                    int64_t o = c[(k[i] >> (8 * b)) & 255]++;                                  \
                    k2[o] = k[i];                                                              \
                    ix2[o] = ix[i];                                                            \
                }                                                                              \
                uint32_t *t = ix;                                                              \
                ix = ix2;                                                                      \
                ix2 = t;                                                                       \
            } else {                                                                           \
                for (int64_t i = 0; i < n; i++) k2[c[(k[i] >> (8 * b)) & 255]++] = k[i];      \
            }                                                                                  \
            K *t = k;                                                                          \
            k = k2;                                                                            \
            k2 = t;                                                                            \
        }                                                                                      \
        if (pr->arg) {                                                                         \
            uint32_t *d = (uint32_t *)dst;                                                     \
            for (int64_t j = 0; j < n; j++) d[j * ds] = ix[j];                                 \
        } else {                                                                               \
            for (int64_t j = 0; j < n; j++) pnk_unkey(dst + j * ds * ES, k[j], W, kind);       \
        }                                                                                      \
    }
PNK_RADIX(uint8_t, 8)
PNK_RADIX(uint16_t, 16)
PNK_RADIX(uint32_t, 32)
PNK_RADIX(uint64_t, 64)

/* ───────────────────────────── rows ───────────────────────────── */

/* Arranges one row of n elements (src stride ss) and writes positions [lo, n) to dst
 * (stride ds). scratch holds 2 * n pairs. */
typedef void (*sort_row_fn)(const pnK_sort_params *pr, const char *src, int64_t ss, char *dst,
                            int64_t ds, int64_t n, void *scratch);

#define PNK_SORT_ROW(E, T, name, C, TOC, FROMC, KIND, W, INF)                                  \
    static void sort_row_##E(const pnK_sort_params *pr, const char *src, int64_t ss,           \
                             char *dst, int64_t ds, int64_t n, void *scratch)                  \
    {                                                                                          \
        const T *s = (const T *)src;                                                           \
        if (KIND != PNK_KEY_NONE && !pr->partition && n >= PNK_RADIX_MIN) {                    \
            radix_row_##W(pr, src, ss, dst, ds, n, scratch, KIND, INF);                        \
            return;                                                                            \
        }                                                                                      \
        if (!pr->arg && !pr->partition) {                                                      \
            C *v = (C *)scratch;                                                               \
            for (int64_t i = 0; i < n; i++) v[i] = TOC(s[i * ss]);                             \
            msort_##name(v, v + n, n);                                                         \
            T *d = (T *)dst;                                                                   \
            for (int64_t i = 0; i < n; i++) d[i * ds] = FROMC(v[i]);                           \
            return;                                                                            \
        }                                                                                      \
        pair_##name *p = (pair_##name *)scratch;                                               \
        for (int64_t i = 0; i < n; i++) {                                                      \
            p[i].v = TOC(s[i * ss]);                                                           \
            p[i].i = (uint32_t)i;                                                              \
        }                                                                                      \
        if (pr->partition) select_##name(p, n, pr->kth);                                       \
        else msortp_##name(p, p + n, n);                                                       \
        if (pr->arg) {                                                                         \
            uint32_t *d = (uint32_t *)dst;                                                     \
            for (int64_t j = pr->lo; j < n; j++) d[(j - pr->lo) * ds] = p[j].i;                \
        } else {                                                                               \
            T *d = (T *)dst;                                                                   \
            for (int64_t j = pr->lo; j < n; j++) d[(j - pr->lo) * ds] = FROMC(p[j].v);         \
        }                                                                                      \
    }
PNK_SORT_DTYPES(PNK_SORT_ROW)

#define PNK_SORT_ENTRY(E, T, name, C, TOC, FROMC, KIND, W, INF) [E] = sort_row_##E,
static const sort_row_fn sort_rows[PN_NUM_DTYPES] = {PNK_SORT_DTYPES(PNK_SORT_ENTRY)};

/* ───────────────────────────── entry point ───────────────────────────── */

int pnK_sort_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_sort_params *pr = PNC_PARAMS(node, pnK_sort_params);
    const pn_array *a = in[0];
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int ax = pr->axis;
    int64_t n = a->shape[ax];
    if (o->size == 0 || n == 0) return 0;

    /* The rows: every position of the dims other than axis. */
    int nd = 0;
    int64_t shp[PNC_MAX_NDIM], ast[PNC_MAX_NDIM], ost[PNC_MAX_NDIM];
    for (int d = 0; d < a->ndim; d++) {
        if (d == ax) continue;
        shp[nd] = a->shape[d];
        ast[nd] = a->strides[d];
        ost[nd] = o->strides[d];
        nd++;
    }
    int64_t rows = a->size / n, sa = a->strides[ax], so = o->strides[ax];
    int64_t ies = (int64_t)pn_dtype_size(a->dtype), oes = (int64_t)pn_dtype_size(o->dtype);
    const char *abase = (const char *)pnC_data(a);
    char *obase = (char *)pnC_data(o);
    sort_row_fn fn = sort_rows[a->dtype];
    int failed = 0;
    bool par = rows > 1 && a->size > 4096 && !omp_in_parallel();
#pragma omp parallel if (par)
    {
        void *scratch = malloc((size_t)(2 * n) * PNK_PAIR_MAX);
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!scratch) continue;
            int64_t rem = r, aoff = 0, ooff = 0;
            for (int d = nd - 1; d >= 0; d--) {
                int64_t c = rem % shp[d];
                rem /= shp[d];
                aoff += c * ast[d];
                ooff += c * ost[d];
            }
            fn(pr, abase + aoff * ies, sa, obase + ooff * oes, so, n, scratch);
        }
        free(scratch);
    }
    if (failed) {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory for sort scratch (%lld elements).",
                 node->prim->name, (long long)n);
        return -1;
    }
    return 0;
}
