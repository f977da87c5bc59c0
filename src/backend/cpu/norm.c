/* norm.c — CPU kernels of LayerNorm / RMSNorm and their backward (norm.h). Rows of the last
 * axis are split over OpenMP threads in equal ranges; each row is converted once into a
 * per-thread scratch row of the accumulation type (float for the halves, double for f64) and
 * its sums are taken over LANES accumulators, so every inner loop vectorizes. One macro over
 * the float dtypes (NORM_TYPES) makes every kernel. */

/* Nothing here reads floating-point exception flags (as reduce.c). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "backend/cpu/norm.h"
#include "backend/cpu/vmath.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define LANES 16 /* independent accumulators of a row sum */

#define ID(x) (x)

/* X(DT, T, A, S, LD, ST): storage type T, accumulation type A (suffix S of its helpers),
 * LD: T -> A, ST: A -> T. */
#define NORM_TYPES(X)                                                                          \
    X(PN_FLOAT16, pn_float16, float, f, pnC_f16_to_f32, pnC_f32_to_f16)                        \
    X(PN_FLOAT32, float, float, f, ID, ID)                                                     \
    X(PN_FLOAT64, double, double, d, ID, ID)                                                   \
    X(PN_BFLOAT16, pn_bfloat16, float, f, pnC_bf16_to_f32, pnC_f32_to_bf16)

/* ───────────────────────────── row sums ───────────────────────────── */

/* NAME(u, v, c, n) = Σ TERM(u[i], v[i], c) over a row of n, LANES accumulators wide. */
#define DEF_LANE_SUM(NAME, A, TERM)                                                            \
    static inline A NAME(const A *u, const A *v, A c, int64_t n)                               \
    {                                                                                          \
        (void)v;                                                                               \
        (void)c;                                                                               \
        A acc[LANES] = {0};                                                                    \
        int64_t i = 0;                                                                         \
        for (; i + LANES <= n; i += LANES)                                                     \
            for (int l = 0; l < LANES; l++) acc[l] += TERM(u[i + l], v[i + l], c);            \
        A s = 0;                                                                               \
        for (int l = 0; l < LANES; l++) s += acc[l];                                           \
        for (; i < n; i++) s += TERM(u[i], v[i], c);                                           \
        return s;                                                                              \
    }
#define T_SUM(a, b, c) (a)
#define T_SSD(a, b, c) (((a) - (c)) * ((a) - (c)))
#define T_DOT(a, b, c) ((a) * (b))

/* Per accumulation type A: Σ u, Σ (u - c)², Σ u v, and a row's mean (0 for RMS) and
 * 1 / sqrt(variance (RMS: mean square) + eps). */
#define DEF_ACC(A, S)                                                                          \
    DEF_LANE_SUM(sum_##S, A, T_SUM)                                                            \
    DEF_LANE_SUM(ssd_##S, A, T_SSD)                                                            \
    DEF_LANE_SUM(dot_##S, A, T_DOT)                                                            \
    static inline void stats_##S(const A *xa, int64_t n, int kind, double eps, A *mean,        \
                                 A *rstd)                                                      \
    {                                                                                          \
        A m = kind == PNK_NORM_LAYER ? sum_##S(xa, NULL, 0, n) / (A)n : (A)0;                  \
        *mean = m;                                                                             \
        *rstd = (A)(1.0 / sqrt((double)(ssd_##S(xa, NULL, m, n) / (A)n) + eps));               \
    }
DEF_ACC(float, f)
DEF_ACC(double, d)

/* ───────────────────────────── kernels per dtype ───────────────────────────── */

/* Threads for rows of n: one unless the work is worth a team. */
static int norm_threads(int64_t rows, int64_t n)
{
    if (rows < 2 || rows * n <= PNC_PAR_GRAIN / 8) return 1;
    int t = omp_get_max_threads();
    return t > rows ? (int)rows : t;
}

/* fwd_DT: y (rows, n) = norm(x) * wa + ba (wa, ba: the weight and bias in A, 1 and 0 when
 * absent); xa: a scratch row. bwd_DT: dx of rows [r0, r1) and the partial sums dwp += g xhat,
 * dbp += g (NULL: not wanted); xa, ga, gw: scratch rows. */
#define DEF_ROWS(DT, T, A, S, LD, ST)                                                          \
    PNV_CLONES static void fwd_rows_##DT(const T *x, const A *wa, const A *ba, T *y, A *xa,   \
                                         int64_t r0, int64_t r1, int64_t n, int kind,          \
                                         double eps)                                           \
    {                                                                                          \
        for (int64_t r = r0; r < r1; r++) {                                                    \
            const T *p = x + r * n;                                                            \
            T *q = y + r * n;                                                                  \
            for (int64_t i = 0; i < n; i++) xa[i] = (A)LD(p[i]);                               \
            A m, s;                                                                            \
            stats_##S(xa, n, kind, eps, &m, &s);                                               \
            for (int64_t i = 0; i < n; i++) q[i] = ST((xa[i] - m) * s * wa[i] + ba[i]);        \
        }                                                                                      \
    }                                                                                          \
    PNV_CLONES static void bwd_rows_##DT(const T *x, const A *wa, const T *g, T *dx, A *dwp,   \
                                         A *dbp, A *xa, A *ga, A *gw, int64_t r0, int64_t r1,  \
                                         int64_t n, int kind, double eps)                      \
    {                                                                                          \
        for (int64_t r = r0; r < r1; r++) {                                                    \
            const T *p = x + r * n, *pg = g + r * n;                                           \
            T *q = dx + r * n;                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                  \
                xa[i] = (A)LD(p[i]);                                                           \
                ga[i] = (A)LD(pg[i]);                                                          \
            }                                                                                  \
            A m, s;                                                                            \
            stats_##S(xa, n, kind, eps, &m, &s);                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                xa[i] = (xa[i] - m) * s; /* xhat */                                            \
                gw[i] = ga[i] * wa[i];                                                         \
            }                                                                                  \
            A c1 = kind == PNK_NORM_LAYER ? sum_##S(gw, NULL, 0, n) / (A)n : (A)0;             \
            A c2 = dot_##S(gw, xa, 0, n) / (A)n;                                               \
            for (int64_t i = 0; i < n; i++) q[i] = ST(s * (gw[i] - c1 - xa[i] * c2));          \
            if (dwp)                                                                           \
                for (int64_t i = 0; i < n; i++) dwp[i] += ga[i] * xa[i];                       \
            if (dbp)                                                                           \
                for (int64_t i = 0; i < n; i++) dbp[i] += ga[i];                               \
        }                                                                                      \
    }                                                                                          \
    /* the weight and bias rows in A (defaults 1 and 0) into wa, ba (ba may be NULL) */        \
    static void affine_##DT(const T *w, const T *b, A *wa, A *ba, int64_t n)                   \
    {                                                                                          \
        for (int64_t i = 0; i < n; i++) wa[i] = w ? (A)LD(w[i]) : (A)1;                        \
        if (ba)                                                                                \
            for (int64_t i = 0; i < n; i++) ba[i] = b ? (A)LD(b[i]) : (A)0;                    \
    }                                                                                          \
    static int fwd_##DT(const void *xv, const void *wv, const void *bv, void *yv,              \
                        int64_t rows, int64_t n, int kind, double eps)                         \
    {                                                                                          \
        int nt = norm_threads(rows, n);                                                        \
        A *buf = malloc(sizeof(A) * (size_t)n * (size_t)(2 + nt));                             \
        if (!buf) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[norm] Out of memory.");         \
        affine_##DT(wv, bv, buf, buf + n, n);                                                  \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                    \
        {                                                                                      \
            int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();                     \
            fwd_rows_##DT(xv, buf, buf + n, yv, buf + (2 + t) * n, rows * t / nth,             \
                          rows * (t + 1) / nth, n, kind, eps);                                 \
        }                                                                                      \
        free(buf);                                                                             \
        return 0;                                                                              \
    }                                                                                          \
    static int bwd_##DT(const void *xv, const void *wv, const void *gv, void *dxv, void *dwv,  \
                        void *dbv, int64_t rows, int64_t n, int kind, double eps)              \
    {                                                                                          \
        int nt = norm_threads(rows, n), used = 1;                                              \
        /* wa, then per thread the scratch rows xa, ga, gw and the partials dw, db */          \
        A *buf = calloc((size_t)n * (size_t)(1 + 5 * nt) + 1, sizeof(A));                      \
        if (!buf) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[norm] Out of memory.");         \
        affine_##DT(wv, NULL, buf, NULL, n);                                                   \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                    \
        {                                                                                      \
            int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();                     \
            A *mine = buf + n + t * 5 * n;                                                     \
            if (t == 0) used = (int)nth;                                                       \
            bwd_rows_##DT(xv, buf, gv, dxv, dwv ? mine + 3 * n : NULL,                         \
                          dbv ? mine + 4 * n : NULL, mine, mine + n, mine + 2 * n,             \
                          rows * t / nth, rows * (t + 1) / nth, n, kind, eps);                 \
        }                                                                                      \
        T *dw = dwv, *db = dbv;                                                                \
        for (int64_t i = 0; i < n; i++) { /* the partials, in thread order */                  \
            A sw = 0, sb = 0;                                                                  \
            for (int t = 0; t < used; t++) {                                                   \
                sw += buf[n + t * 5 * n + 3 * n + i];                                          \
                sb += buf[n + t * 5 * n + 4 * n + i];                                          \
            }                                                                                  \
            if (dw) dw[i] = ST(sw);                                                            \
            if (db) db[i] = ST(sb);                                                            \
        }                                                                                      \
        free(buf);                                                                             \
        return 0;                                                                              \
    }
NORM_TYPES(DEF_ROWS)

typedef int (*fwd_fn)(const void *, const void *, const void *, void *, int64_t, int64_t, int,
                      double);
typedef int (*bwd_fn)(const void *, const void *, const void *, void *, void *, void *, int64_t,
                      int64_t, int, double);
#define E_FWD(DT, ...) [DT] = fwd_##DT,
#define E_BWD(DT, ...) [DT] = bwd_##DT,
static const fwd_fn fwd_table[PN_NUM_DTYPES] = {NORM_TYPES(E_FWD)};
static const bwd_fn bwd_table[PN_NUM_DTYPES] = {NORM_TYPES(E_BWD)};

/* ───────────────────────────── eval ───────────────────────────── */

/* Row-contiguous versions of the n inputs (NULL entries stay NULL) into c; 0 or -1. */
static int dense_inputs(int n, pn_array *const *in, pn_array **c)
{
    for (int k = 0; k < n; k++) {
        c[k] = in[k] ? pnC_contiguous(in[k]) : NULL;
        if (in[k] && !c[k]) {
            while (k-- > 0)
                if (c[k]) pnC_decref(c[k]);
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[norm] Out of memory.");
        }
    }
    return 0;
}

static void dense_release(int n, pn_array **c)
{
    for (int k = 0; k < n; k++)
        if (c[k]) pnC_decref(c[k]);
}

static void *data_or_null(pn_array *a) { return a ? pnC_data(a) : NULL; }

/* See norm.h. */
int pnK_norm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    pn_array *x = in[0], *y = out[0];
    fwd_fn fn = fwd_table[x->dtype];
    if (!fn || y->dtype != x->dtype)
        return pn_set_error(PN_ERR_BACKEND, "[%s] No CPU kernel for %s.", node->prim->name,
                            pn_dtype_name(x->dtype));
    if (pnC_alloc_output(y)) return -1;
    if (y->size == 0) return 0;
    pn_array *src[3] = {x, p->weight ? in[1] : NULL, p->bias ? in[1 + p->weight] : NULL}, *c[3];
    if (dense_inputs(3, src, c)) return -1;
    int64_t n = x->shape[x->ndim - 1];
    int rc = fn(pnC_data(c[0]), data_or_null(c[1]), data_or_null(c[2]), pnC_data(y), x->size / n,
                n, p->kind, p->eps);
    dense_release(3, c);
    return rc;
}

/* See norm.h. */
int pnK_norm_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_norm_params *p = PNC_PARAMS(node, pnK_norm_params);
    pn_array *x = in[0];
    bwd_fn fn = bwd_table[x->dtype];
    if (!fn)
        return pn_set_error(PN_ERR_BACKEND, "[%s] No CPU kernel for %s.", node->prim->name,
                            pn_dtype_name(x->dtype));
    for (int j = 0; j < node->nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_array *dw = p->weight ? out[1] : NULL, *db = p->bias ? out[1 + p->weight] : NULL;
    int64_t n = x->shape[x->ndim - 1];
    if (n == 0) return 0;
    pn_array *src[3] = {x, p->weight ? in[1] : NULL, in[1 + p->weight]}, *c[3];
    if (dense_inputs(3, src, c)) return -1;
    int rc = fn(x->size ? pnC_data(c[0]) : NULL, data_or_null(c[1]),
                x->size ? pnC_data(c[2]) : NULL, x->size ? pnC_data(out[0]) : NULL,
                data_or_null(dw), data_or_null(db), x->size / n, n, p->kind, p->eps);
    dense_release(3, c);
    return rc;
}
