/* elementwise.c — CPU kernels of every elementwise op (unary, binary, divmod, where).
 * One machinery: a table of ops x dtypes (X-macros) generates a typed row function per pair
 * (an inner loop the compiler vectorizes: no per-element function pointers), and one driver
 * runs rows over the output: a flat threaded loop when every input is dense or a scalar,
 * else broadcast strides through pnC_nditer. f16/bf16 compute in float. Transcendental ops
 * on float32 (and f16/bf16, through blocks of floats) use the vector math of vmath.h. */
#include "backend/cpu/elementwise.h"

#include "backend/cpu/ew_exprs.h"
#include "backend/cpu/vmath.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ───────────────────────────── row functions ───────────────────────────── */

/* A row of a V(...) op in float: dense float32 goes to the array function VF in place;
 * other storage (f16, bf16) and strided rows through a block of floats. */
#define PNK_VROW(T, LD, OST, VF)                                                               \
    do {                                                                                       \
        if (s[0] == 1 && s[1] == 1 && sizeof(T) == sizeof(float)) {                            \
            VF((const float *)x, (float *)y, n);                                               \
            break;                                                                             \
        }                                                                                      \
        float buf[PNV_BLOCK];                                                                  \
        for (int64_t i0 = 0; i0 < n; i0 += PNV_BLOCK) {                                        \
            const int64_t m = n - i0 < PNV_BLOCK ? n - i0 : PNV_BLOCK;                         \
            if (s[1] == 1) {                                                                   \
                PNK_SIMD for (int64_t j = 0; j < m; j++) buf[j] = LD(x[i0 + j]);               \
            } else {                                                                           \
                for (int64_t j = 0; j < m; j++) buf[j] = LD(x[(i0 + j) * s[1]]);               \
            }                                                                                  \
            VF(buf, buf, m);                                                                   \
            if (s[0] == 1) {                                                                   \
                PNK_SIMD for (int64_t j = 0; j < m; j++) y[i0 + j] = OST(buf[j]);              \
            } else {                                                                           \
                for (int64_t j = 0; j < m; j++) y[(i0 + j) * s[0]] = OST(buf[j]);              \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Unary row: y = f(x) over n elements. The element function is inlined into the loops; the
 * dense loop carries no loop dependence (in place is fine: y[i] only depends on x[i]). */
#define PNK_UNARY_FN(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                         \
    PNK_UNARY_FN_(SN, T, CT, LD, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,             \
                  PNK_COL(CLS, FE, CE, IE))
#define PNK_UNARY_FN_(SN, T, CT, LD, OT, OST, OP, COL)                                         \
    PNK_UNUSED static inline void pnK_u_##OP##_##SN(int64_t n, char *const *p, const int64_t *s,          \
                                         const pnK_ew_params *prm)                             \
    {                                                                                          \
        const T *x = (const T *)p[1];                                                          \
        OT *y = (OT *)p[0];                                                                    \
        if (PNK_ISV(COL) && sizeof(CT) == sizeof(float)) {                                     \
            PNK_VROW(T, LD, OST, PNK_VFN(COL));                                                \
        } else if (s[0] == 1 && s[1] == 1) {                                                   \
            PNK_SIMD for (int64_t i = 0; i < n; i++) y[i] = pnK_ue_##OP##_##SN(LD(x[i]), prm); \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i * s[0]] = pnK_ue_##OP##_##SN(LD(x[i * s[1]]), prm);                        \
        }                                                                                      \
    }
#define PNK_UNARY_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_UNARY_FN, OP, RULE, FE, CE, IE)
PNK_UNARY_EXPRS(PNK_UNARY_GEN)

/* Binary row: o = f(a, b), with dense loops for the common layouts (both dense, either one a
 * broadcast scalar) and a strided one for the rest. */
#define PNK_BINARY_FN(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                        \
    PNK_BINARY_FN_(SN, T, CT, LD, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,            \
                   PNK_COL(CLS, FE, CE, IE))
#define PNK_BINARY_FN_(SN, T, CT, LD, OT, OST, OP, COL)                                        \
    PNK_UNUSED static inline void pnK_b_##OP##_##SN(int64_t n, char *const *p, const int64_t *s,          \
                                         const pnK_ew_params *prm)                             \
    {                                                                                          \
        const T *x = (const T *)p[1], *y = (const T *)p[2];                                    \
        OT *o = (OT *)p[0];                                                                    \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                             \
            PNK_SIMD for (int64_t i = 0; i < n; i++)                                           \
                o[i] = pnK_be_##OP##_##SN(LD(x[i]), LD(y[i]), prm);                            \
        } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                      \
            const CT x0 = LD(x[0]);                                                            \
            PNK_SIMD for (int64_t i = 0; i < n; i++) o[i] = pnK_be_##OP##_##SN(x0, LD(y[i]), prm); \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                      \
            const CT y0 = LD(y[0]);                                                            \
            PNK_SIMD for (int64_t i = 0; i < n; i++) o[i] = pnK_be_##OP##_##SN(LD(x[i]), y0, prm); \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                o[i * s[0]] = pnK_be_##OP##_##SN(LD(x[i * s[1]]), LD(y[i * s[2]]), prm);       \
        }                                                                                      \
    }
#define PNK_BINARY_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_BINARY_FN, OP, RULE, FE, CE, IE)
PNK_BINARY_EXPRS(PNK_BINARY_GEN)

/* where: o = c ? x : y moves storage, so one function per element size serves every dtype.
 * The choice is a bit mask (no branch: random conditions would mispredict half the time),
 * with dense loops for a dense condition and dense or scalar values, a strided one else. */
#define PNK_WHERE_SIZES(X) X(1, uint8_t) X(2, uint16_t) X(4, uint32_t) X(8, uint64_t)
#define PNK_WHERE_LOOP(T, XI, YI)                                                              \
    PNK_SIMD for (int64_t i = 0; i < n; i++) {                                                 \
        const T m = (T)((T)0 - (T)(c[i] != 0)); /* c read as bytes: this vectorizes */   \
        o[i] = (T)(((XI) & m) | ((YI) & (T)~m));                                               \
    }
#define PNK_WHERE_FN(SZ, T)                                                                    \
    static void pnK_where_##SZ(int64_t n, char *const *p, const int64_t *s,                    \
                               const pnK_ew_params *prm)                                       \
    {                                                                                          \
        (void)prm;                                                                             \
        const uint8_t *c = (const uint8_t *)p[1];                                              \
        const T *x = (const T *)p[2], *y = (const T *)p[3];                                    \
        T *o = (T *)p[0];                                                                      \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                                \
            PNK_WHERE_LOOP(T, x[i], y[i]);                                                     \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 0) { /* vjps: where(m, g, 0) */ \
            const T y0 = y[0];                                                                 \
            PNK_WHERE_LOOP(T, x[i], y0);                                                       \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 1) {                         \
            const T x0 = x[0];                                                                 \
            PNK_WHERE_LOOP(T, x0, y[i]);                                                       \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 0) {                         \
            const T x0 = x[0], y0 = y[0];                                                      \
            PNK_WHERE_LOOP(T, x0, y0);                                                         \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];                         \
        }                                                                                      \
    }
PNK_WHERE_SIZES(PNK_WHERE_FN)

/* The tables: [op][dtype] -> row function, NULL where the op has no such dtype. */
#define PNK_UNARY_ENTRY(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                      \
    [DT] = PNK_FON(PNK_HAS(PNK_COL(CLS, FE, CE, IE)), pnK_u_##OP##_##SN),
#define PNK_UNARY_ROW(OP, RULE, FE, CE, IE)                                                    \
    [PNK_U_##OP] = {PNK_TYPES(PNK_UNARY_ENTRY, OP, RULE, FE, CE, IE)},
static const pnK_row_fn pnK_unary_rows[PNK_U_COUNT][PN_NUM_DTYPES] = {
    PNK_UNARY_EXPRS(PNK_UNARY_ROW)};

#define PNK_BINARY_ENTRY(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                     \
    [DT] = PNK_FON(PNK_HAS(PNK_COL(CLS, FE, CE, IE)), pnK_b_##OP##_##SN),
#define PNK_BINARY_ROW(OP, RULE, FE, CE, IE)                                                   \
    [PNK_B_##OP] = {PNK_TYPES(PNK_BINARY_ENTRY, OP, RULE, FE, CE, IE)},
static const pnK_row_fn pnK_binary_rows[PNK_B_COUNT][PN_NUM_DTYPES] = {
    PNK_BINARY_EXPRS(PNK_BINARY_ROW)};

#define PNK_VECTOR_ENTRY(OP, RULE, FE, CE, IE) [PNK_U_##OP] = PNK_FON(PNK_ISV(FE), PNK_VFN(FE)),
static pnV_array_fn const pnK_vector_fns[PNK_U_COUNT] = {PNK_UNARY_EXPRS(PNK_VECTOR_ENTRY)};

void (*pnK_ew_vector_fn(int op))(const float *x, float *y, int64_t n)
{
    return op >= 0 && op < PNK_U_COUNT ? pnK_vector_fns[op] : NULL;
}

bool pnK_unary_supported(int op, pn_dtype dtype)
{
    return op >= 0 && op < PNK_U_COUNT && pnC_dtype_valid(dtype) && pnK_unary_rows[op][dtype];
}

bool pnK_binary_supported(int op, pn_dtype dtype)
{
    return op >= 0 && op < PNK_B_COUNT && pnC_dtype_valid(dtype) && pnK_binary_rows[op][dtype];
}

pnK_row_fn pnK_ew_row(int kind, int op, pn_dtype t)
{
    if (kind == 0) return pnK_unary_supported(op, t) ? pnK_unary_rows[op][t] : NULL;
    if (kind == 1) return pnK_binary_supported(op, t) ? pnK_binary_rows[op][t] : NULL;
    switch (pnC_dtype_valid(t) ? pn_dtype_size(t) : 0) {
#define PNK_WHERE_CASE(SZ, T) case SZ: return pnK_where_##SZ;
        PNK_WHERE_SIZES(PNK_WHERE_CASE)
#undef PNK_WHERE_CASE
    }
    return NULL;
}

/* ───────────────────────────── the driver ───────────────────────────── */

/* Runs fn over one row of n elements (strides s), split among threads in contiguous parts
 * (multiples of 64 elements) when it is long enough. */
static void run_split(int64_t n, int nop, char *const *base, const int64_t *s, const size_t *es,
                      pnK_row_fn fn, const pnK_ew_params *prm)
{
    if (n <= PNC_PAR_GRAIN) {
        fn(n, base, s, prm);
        return;
    }
#pragma omp parallel
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t lo = t == 0 ? 0 : (n * t / nt) & ~(int64_t)63;
        int64_t hi = t == nt - 1 ? n : (n * (t + 1) / nt) & ~(int64_t)63;
        if (lo < hi) {
            char *p[PNC_MAX_OPS];
            for (int k = 0; k < nop; k++) p[k] = base[k] + lo * s[k] * (int64_t)es[k];
            fn(hi - lo, p, s, prm);
        }
    }
}

/* Runs fn over rows [r0, r1) of the iterator; base/es: each operand's data and item size. */
static void run_rows(const pnC_nditer *it, char *const *base, const size_t *es, int64_t r0,
                     int64_t r1, pnK_row_fn fn, const pnK_ew_params *prm)
{
    int64_t idx[PNC_MAX_NDIM], off[PNC_MAX_OPS];
    char *p[PNC_MAX_OPS];
    if (r0 >= r1) return;
    pnC_nditer_seek(it, r0, idx, off);
    for (int64_t r = r0; r < r1; r++) {
        for (int k = 0; k < it->nop; k++) p[k] = base[k] + off[k] * (int64_t)es[k];
        fn(it->inner, p, it->inner_stride, prm);
        if (r + 1 < r1) pnC_nditer_next(it, idx, off);
    }
}

/* Runs fn over out[i] = f(in[0][i], ...), inputs broadcast to out's shape. The output gets
 * the buffer of an input that nothing else holds (donate), else a fresh one. */
static int ew_run(int nin, pn_array *const *in, pn_array *out, pnK_row_fn fn,
                  const pnK_ew_params *prm, bool donate)
{
    const int nop = nin + 1;
    const int64_t n = out->size;
    char *base[PNC_MAX_OPS];
    size_t es[PNC_MAX_OPS];
    bool flat = true;
    for (int k = 0; k < nin; k++) { /* before any donation moves a buffer away */
        base[k + 1] = in[k]->size ? (char *)pnC_data(in[k]) : NULL;
        es[k + 1] = pn_dtype_size(in[k]->dtype);
        flat &= in[k]->size == 1 || (in[k]->size == n && pnC_row_contiguous(in[k]));
    }
    bool given = false;
    for (int k = 0; donate && k < nin && !given; k++)
        if (in[k]->size == n && n > 0) given = pnC_donate(out, in[k]);
    if (!given && pnC_alloc_output(out)) return -1;
    if (n == 0) return 0;
    base[0] = pnC_data(out);
    es[0] = pn_dtype_size(out->dtype);

    if (flat) { /* one dense row (scalars broadcast with stride 0) */
        int64_t s[PNC_MAX_OPS];
        s[0] = 1;
        for (int k = 0; k < nin; k++) s[k + 1] = in[k]->size == n ? 1 : 0;
        run_split(n, nop, base, s, es, fn, prm);
        return 0;
    }

    /* general: broadcast strides (0 along broadcast axes) through the nditer, by rows */
    int64_t st[PNC_MAX_OPS][PNC_MAX_NDIM];
    const int64_t *sp[PNC_MAX_OPS];
    const int nd = out->ndim;
    for (int d = 0; d < nd; d++) st[0][d] = out->strides[d];
    for (int k = 0; k < nin; k++) {
        const pn_array *a = in[k];
        int lead = nd - a->ndim;
        for (int d = 0; d < nd; d++) {
            int ad = d - lead;
            st[k + 1][d] = (ad < 0 || a->shape[ad] == 1) ? 0 : a->strides[ad];
        }
    }
    for (int k = 0; k < nop; k++) sp[k] = st[k];
    pnC_nditer it;
    pnC_nditer_init(&it, nd, out->shape, nop, sp);
    if (it.rows == 1) { /* one strided row: split it like a dense one */
        run_split(it.inner, nop, base, it.inner_stride, es, fn, prm);
        return 0;
    }
    if (n <= PNC_PAR_GRAIN) {
        run_rows(&it, base, es, 0, it.rows, fn, prm);
        return 0;
    }
#pragma omp parallel
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        run_rows(&it, base, es, it.rows * t / nt, it.rows * (t + 1) / nt, fn, prm);
    }
    return 0;
}

/* ───────────────────────────── entry points ───────────────────────────── */

static int not_implemented(const pnC_node *node, pn_dtype dtype)
{
    return pn_set_error(PN_ERR_BACKEND, "[%s] Not implemented on the CPU for %s.",
                        node->prim->name, pn_dtype_name(dtype));
}

int pnK_unary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    if (!pnK_unary_supported(prm->op, in[0]->dtype)) return not_implemented(node, in[0]->dtype);
    return ew_run(1, in, out[0], pnK_unary_rows[prm->op][in[0]->dtype], prm, true);
}

int pnK_binary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    if (!pnK_binary_supported(prm->op, in[0]->dtype)) return not_implemented(node, in[0]->dtype);
    return ew_run(2, in, out[0], pnK_binary_rows[prm->op][in[0]->dtype], prm, true);
}

int pnK_divmod_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_dtype t = in[0]->dtype;
    if (!pnK_binary_supported(PNK_B_FLOOR_DIVIDE, t) || !pnK_binary_supported(PNK_B_REMAINDER, t))
        return not_implemented(node, t);
    /* both outputs read both inputs: no donation */
    const pnK_ew_params prm = {0};
    if (ew_run(2, in, out[0], pnK_binary_rows[PNK_B_FLOOR_DIVIDE][t], &prm, false)) return -1;
    return ew_run(2, in, out[1], pnK_binary_rows[PNK_B_REMAINDER][t], &prm, false);
}

int pnK_where_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pnK_row_fn fn = NULL;
    switch (pn_dtype_size(out[0]->dtype)) {
#define PNK_WHERE_CASE(SZ, T) case SZ: fn = pnK_where_##SZ; break;
        PNK_WHERE_SIZES(PNK_WHERE_CASE)
#undef PNK_WHERE_CASE
    }
    if (!fn || in[0]->dtype != PN_BOOL) return not_implemented(node, out[0]->dtype);
    const pnK_ew_params prm = {0};
    return ew_run(3, in, out[0], fn, &prm, true);
}
