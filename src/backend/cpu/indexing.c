/* indexing.c — the CPU index engine behind take, take_along_axis, put_along_axis, gather and
 * scatter. Each primitive is described as a plan: an "index space" (one position per index
 * tuple) and a "slice" (the block copied per position) over two arrays: the target, whose
 * offset depends on the index values, and the linear side, whose offset does not. Gathers
 * copy target -> linear, scatters combine linear -> target. Plans merge contiguous dims,
 * then OpenMP splits the positions that cannot collide (and, for large slices, the slice). */
#include "backend/cpu/indexing.h"

#include <limits.h>
#include <omp.h>
#include <stdlib.h>

enum { MAXD = PNC_MAX_NDIM, MAXOP = PNC_MAX_NDIM + 2 };

/* A row operation: n elements from src (stride ss) into dst (stride ds), strides in elements. */
typedef void (*row_fn)(char *dst, int64_t ds, const char *src, int64_t ss, int64_t n);

/* The plan. Operand 0 is the linear side, operand 1 the target, operand 2 + k index array k. */
typedef struct plan {
    size_t es;      /* element size of target and linear side */
    bool scatter;   /* false: target -> linear (gather), true: linear -> target (scatter) */
    row_fn row;     /* the row operation (copy or combine) */
    char *lin, *tgt;
    /* index space: dims [0, np) may run in parallel, [np, ni) run in order */
    int ni, np, nop;
    int64_t ishape[MAXD];
    int64_t istr[MAXOP][MAXD];
    /* index arrays */
    int nidx;
    const char *idata[MAXD];
    pn_dtype idtype[MAXD];
    size_t ies[MAXD];
    int64_t extent[MAXD], window[MAXD], tstride[MAXD];
    /* slice */
    int ns;
    bool slice_safe; /* slice elements of different positions never collide */
    int64_t sshape[MAXD], sstr[2][MAXD];
} plan;

/* ───────────────────────────── row operations ───────────────────────────── */

#define PNK_COPY_ROW(NAME, T)                                                                  \
    static void NAME(char *dst, int64_t ds, const char *src, int64_t ss, int64_t n)            \
    {                                                                                          \
        T *d = (T *)dst;                                                                       \
        const T *s = (const T *)src;                                                           \
        if (ds == 1 && ss == 1) {                                                              \
            memcpy(d, s, (size_t)n * sizeof(T));                                               \
            return;                                                                            \
        }                                                                                      \
        for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss];                                 \
    }
PNK_COPY_ROW(copy_row1, uint8_t)
PNK_COPY_ROW(copy_row2, uint16_t)
PNK_COPY_ROW(copy_row4, uint32_t)
PNK_COPY_ROW(copy_row8, uint64_t)

static row_fn copy_row_for(size_t es)
{
    switch (es) {
    case 1: return copy_row1;
    case 2: return copy_row2;
    case 4: return copy_row4;
    default: return copy_row8;
    }
}

/* Per-dtype arithmetic for the combining scatters:
 * X(ENUM, name, storage type, compute type, to compute, from compute, greater, is-NaN). */
#define PNK_ID(x) (x)
#define PNK_NONZERO(x) ((x) != 0)
#define PNK_GT_REAL(a, b) ((a) > (b))
#define PNK_GT_CPX(a, b)                                                                       \
    (crealf(a) > crealf(b) || (crealf(a) == crealf(b) && cimagf(a) > cimagf(b)))
#define PNK_NAN_NONE(x) 0
#define PNK_NAN_FLT(x) ((x) != (x))
#define PNK_SCATTER_TYPES(X)                                                                   \
    X(PN_BOOL, b8, bool, int, PNK_ID, PNK_NONZERO, PNK_GT_REAL, PNK_NAN_NONE)                  \
    X(PN_UINT8, u8, uint8_t, uint8_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)               \
    X(PN_UINT16, u16, uint16_t, uint16_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)           \
    X(PN_UINT32, u32, uint32_t, uint32_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)           \
    X(PN_UINT64, u64, uint64_t, uint64_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)           \
    X(PN_INT8, i8, int8_t, int8_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)                  \
    X(PN_INT16, i16, int16_t, int16_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)              \
    X(PN_INT32, i32, int32_t, int32_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)              \
    X(PN_INT64, i64, int64_t, int64_t, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_NONE)              \
    X(PN_FLOAT16, f16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16, PNK_GT_REAL,         \
      PNK_NAN_FLT)                                                                             \
    X(PN_FLOAT32, f32, float, float, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_FLT)                 \
    X(PN_FLOAT64, f64, double, double, PNK_ID, PNK_ID, PNK_GT_REAL, PNK_NAN_FLT)               \
    X(PN_BFLOAT16, bf16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16, PNK_GT_REAL,    \
      PNK_NAN_FLT)                                                                             \
    X(PN_COMPLEX64, c64, pn_complex64, pn_complex64, PNK_ID, PNK_ID, PNK_GT_CPX, PNK_NAN_FLT)

/* The four combine modes on compute values x (target) and y (update). max/min propagate
 * NaN from the update (a NaN already in the target stays: nothing compares greater). */
#define PNK_OP_ADD(x, y, GT, ISNAN) ((x) + (y))
#define PNK_OP_PROD(x, y, GT, ISNAN) ((x) * (y))
#define PNK_OP_MAX(x, y, GT, ISNAN) ((GT(y, x) || ISNAN(y)) ? (y) : (x))
#define PNK_OP_MIN(x, y, GT, ISNAN) ((GT(x, y) || ISNAN(y)) ? (y) : (x))

#define PNK_COMBINE_FN(OP, name, T, C, TOC, FROMC, GT, ISNAN)                                  \
    static void combine_##OP##_##name(char *dst, int64_t ds, const char *src, int64_t ss,      \
                                      int64_t n)                                               \
    {                                                                                          \
        T *d = (T *)dst;                                                                       \
        const T *s = (const T *)src;                                                           \
        if (ds == 1 && ss == 1) { /* the contiguous case, vectorizable */                      \
            for (int64_t i = 0; i < n; i++) {                                                  \
                C x = TOC(d[i]), y = TOC(s[i]);                                                \
                d[i] = FROMC(PNK_OP_##OP(x, y, GT, ISNAN));                                    \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        for (int64_t i = 0; i < n; i++) {                                                      \
            C x = TOC(d[i * ds]), y = TOC(s[i * ss]);                                          \
            d[i * ds] = FROMC(PNK_OP_##OP(x, y, GT, ISNAN));                                   \
        }                                                                                      \
    }
#define PNK_COMBINE_DEFS(E, name, T, C, TOC, FROMC, GT, ISNAN)                                 \
    PNK_COMBINE_FN(ADD, name, T, C, TOC, FROMC, GT, ISNAN)                                     \
    PNK_COMBINE_FN(PROD, name, T, C, TOC, FROMC, GT, ISNAN)                                    \
    PNK_COMBINE_FN(MAX, name, T, C, TOC, FROMC, GT, ISNAN)                                     \
    PNK_COMBINE_FN(MIN, name, T, C, TOC, FROMC, GT, ISNAN)
PNK_SCATTER_TYPES(PNK_COMBINE_DEFS)

/* combine_table[dtype][mode - PN_SCATTER_ADD] */
#define PNK_COMBINE_ENTRY(E, name, T, C, TOC, FROMC, GT, ISNAN)                                \
    [E] = {combine_ADD_##name, combine_PROD_##name, combine_MAX_##name, combine_MIN_##name},
static const row_fn combine_table[PN_NUM_DTYPES][4] = {PNK_SCATTER_TYPES(PNK_COMBINE_ENTRY)};

/* ───────────────────────────── plan building ───────────────────────────── */

/* An integer index element as int64 (uint64 beyond INT64_MAX saturates: out of range). */
static inline int64_t load_index(const char *p, pn_dtype t)
{
    switch (t) {
    case PN_UINT8: return *(const uint8_t *)p;
    case PN_UINT16: return *(const uint16_t *)p;
    case PN_UINT32: return *(const uint32_t *)p;
    case PN_UINT64: {
        uint64_t v = *(const uint64_t *)p;
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    }
    case PN_INT8: return *(const int8_t *)p;
    case PN_INT16: return *(const int16_t *)p;
    case PN_INT32: return *(const int32_t *)p;
    default: return *(const int64_t *)p;
    }
}

/* Strides of x broadcast (right-aligned) to shape[nd]: 0 along missing and stretched dims. */
static void bcast_strides(const pn_array *x, const int64_t *shape, int nd, int64_t *st)
{
    int lead = nd - x->ndim;
    for (int d = 0; d < nd; d++) {
        int xd = d - lead;
        st[d] = (xd < 0 || (x->shape[xd] == 1 && shape[d] != 1)) ? 0 : x->strides[xd];
    }
}

/* Registers index array k (data pointer, dtype) of the plan. */
static void add_index(plan *p, int k, const pn_array *x, int64_t extent, int64_t window,
                      int64_t tstride)
{
    p->idata[k] = (const char *)pnC_data(x);
    p->idtype[k] = x->dtype;
    p->ies[k] = pn_dtype_size(x->dtype);
    p->extent[k] = extent;
    p->window[k] = window;
    p->tstride[k] = tstride;
}

/* Reorders the index space (parallel-safe dims first, each group in its order), drops
 * extent-1 dims and merges dims that are contiguous for every operand. */
static void finish_index_space(plan *p, const bool *safe)
{
    int64_t shape[MAXD], str[MAXOP][MAXD];
    int n = 0, np = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int d = 0; d < p->ni; d++) {
            if (safe[d] != (pass == 0) || p->ishape[d] == 1) continue;
            bool merge = n > (pass == 0 ? 0 : np);
            for (int op = 0; merge && op < p->nop; op++)
                merge = str[op][n - 1] == p->istr[op][d] * p->ishape[d];
            if (merge) {
                shape[n - 1] *= p->ishape[d];
                for (int op = 0; op < p->nop; op++) str[op][n - 1] = p->istr[op][d];
            } else {
                shape[n] = p->ishape[d];
                for (int op = 0; op < p->nop; op++) str[op][n] = p->istr[op][d];
                n++;
            }
        }
        if (pass == 0) np = n;
    }
    p->ni = n;
    p->np = np;
    memcpy(p->ishape, shape, sizeof(int64_t) * (size_t)n);
    for (int op = 0; op < p->nop; op++) memcpy(p->istr[op], str[op], sizeof(int64_t) * (size_t)n);
}

/* Drops extent-1 slice dims and merges contiguous ones. */
static void finish_slice(plan *p)
{
    int n = 0;
    for (int d = 0; d < p->ns; d++) {
        if (p->sshape[d] == 1) continue;
        if (n > 0 && p->sstr[0][n - 1] == p->sstr[0][d] * p->sshape[d] &&
            p->sstr[1][n - 1] == p->sstr[1][d] * p->sshape[d]) {
            p->sshape[n - 1] *= p->sshape[d];
            p->sstr[0][n - 1] = p->sstr[0][d];
            p->sstr[1][n - 1] = p->sstr[1][d];
            continue;
        }
        p->sshape[n] = p->sshape[d];
        p->sstr[0][n] = p->sstr[0][d];
        p->sstr[1][n] = p->sstr[1][d];
        n++;
    }
    p->ns = n;
}

/* take / take-scatter: T (a-shaped, axis ax), L = pre + idx.shape + post. */
static void build_take(plan *p, const pn_array *T, const pn_array *L, const pn_array *x, int ax,
                       bool *safe)
{
    int m = x->ndim, n = T->ndim;
    p->ni = m;
    p->nidx = 1;
    for (int d = 0; d < m; d++) {
        p->ishape[d] = x->shape[d];
        p->istr[0][d] = L->strides[ax + d];
        p->istr[1][d] = 0;
        p->istr[2][d] = x->strides[d];
        safe[d] = !p->scatter;
    }
    add_index(p, 0, x, T->shape[ax], 1, T->strides[ax]);
    p->ns = 0;
    for (int d = 0; d < n; d++) {
        if (d == ax) continue;
        p->sshape[p->ns] = T->shape[d];
        p->sstr[0][p->ns] = L->strides[d < ax ? d : d + m - 1];
        p->sstr[1][p->ns] = T->strides[d];
        p->ns++;
    }
    p->slice_safe = true;
}

/* gather / scatter: T has ndim n, L = broadcast(idx).shape (m dims) + slice shape (n dims). */
static void build_gather(plan *p, const pn_array *T, const pn_array *L, pn_array *const *idx,
                         const pnK_index_params *pr, bool *safe)
{
    int n = T->ndim, m = L->ndim - n;
    p->ni = m;
    p->nidx = pr->nidx;
    for (int d = 0; d < m; d++) {
        p->ishape[d] = L->shape[d];
        p->istr[0][d] = L->strides[d];
        p->istr[1][d] = 0;
        safe[d] = !p->scatter;
    }
    p->ns = n;
    p->slice_safe = true;
    for (int d = 0; d < n; d++) {
        p->sshape[d] = L->shape[m + d];
        p->sstr[0][d] = L->strides[m + d];
        p->sstr[1][d] = T->strides[d];
    }
    for (int k = 0; k < pr->nidx; k++) {
        int ax = pr->axes[k];
        bcast_strides(idx[k], p->ishape, m, p->istr[2 + k]);
        add_index(p, k, idx[k], T->shape[ax], p->sshape[ax], T->strides[ax]);
        if (p->sshape[ax] != 1) p->slice_safe = false;
    }
}

/* take_along_axis / put_along_axis: the index space is L's shape; no slice. */
static void build_axis(plan *p, const pn_array *T, const pn_array *L, const pn_array *x, int ax,
                       bool *safe)
{
    int n = L->ndim;
    p->ni = n;
    p->nidx = 1;
    for (int d = 0; d < n; d++) {
        p->ishape[d] = L->shape[d];
        p->istr[0][d] = L->strides[d];
        p->istr[1][d] = d == ax ? 0 : T->strides[d];
        safe[d] = !p->scatter || d != ax;
    }
    bcast_strides(x, p->ishape, n, p->istr[2]);
    add_index(p, 0, x, T->shape[ax], 1, T->strides[ax]);
    p->ns = 0;
    p->slice_safe = true;
}

/* ───────────────────────────── execution ───────────────────────────── */

/* Sets coords (dims [lo, hi)) and operand offsets (added to off) for position pos. */
static void seek(const plan *p, int lo, int hi, int64_t pos, int64_t *coord, int64_t *off)
{
    for (int d = hi - 1; d >= lo; d--) {
        int64_t c = pos % p->ishape[d];
        pos /= p->ishape[d];
        coord[d] = c;
        for (int op = 0; op < p->nop; op++) off[op] += c * p->istr[op][d];
    }
}

/* Advances coords/offsets over dims [lo, hi) by one position (odometer). */
static inline void advance(const plan *p, int lo, int hi, int64_t *coord, int64_t *off)
{
    for (int d = hi - 1; d >= lo; d--) {
        for (int op = 0; op < p->nop; op++) off[op] += p->istr[op][d];
        if (++coord[d] < p->ishape[d]) return;
        for (int op = 0; op < p->nop; op++) off[op] -= p->istr[op][d] * p->ishape[d];
        coord[d] = 0;
    }
}

/* Element offset into the target selected by the indices at off, or -1 to skip. */
static inline int64_t resolve(const plan *p, const int64_t *off)
{
    int64_t t = off[1];
    for (int k = 0; k < p->nidx; k++) {
        int64_t v = load_index(p->idata[k] + off[2 + k] * (int64_t)p->ies[k], p->idtype[k]);
        int64_t hi = p->extent[k] - p->window[k];
        if (v < 0) v += p->extent[k];
        if (v < 0 || v > hi) {
            if (p->scatter) return -1;
            v = v < 0 ? 0 : hi;
        }
        t += v * p->tstride[k];
    }
    return t;
}

/* Applies the row op over the slice at (lin, tgt) restricted to [s0, s1) of slice dim 0. */
static void run_slice(const plan *p, char *lin, char *tgt, int64_t s0, int64_t s1)
{
    int64_t es = (int64_t)p->es;
    if (p->ns == 0) {
        if (p->scatter) p->row(tgt, 1, lin, 1, 1);
        else p->row(lin, 1, tgt, 1, 1);
        return;
    }
    int last = p->ns - 1;
    int64_t coord[MAXD] = {0};
    coord[0] = s0;
    int64_t lo = s0 * p->sstr[0][0], to = s0 * p->sstr[1][0];
    if (last == 0) {
        if (p->scatter) p->row(tgt + to * es, p->sstr[1][0], lin + lo * es, p->sstr[0][0], s1 - s0);
        else p->row(lin + lo * es, p->sstr[0][0], tgt + to * es, p->sstr[1][0], s1 - s0);
        return;
    }
    int64_t n = p->sshape[last], ls = p->sstr[0][last], ts = p->sstr[1][last];
    for (;;) {
        if (p->scatter) p->row(tgt + to * es, ts, lin + lo * es, ls, n);
        else p->row(lin + lo * es, ls, tgt + to * es, ts, n);
        int d = last - 1;
        for (; d >= 0; d--) {
            lo += p->sstr[0][d];
            to += p->sstr[1][d];
            int64_t end = d == 0 ? s1 : p->sshape[d];
            if (++coord[d] < end) break;
            if (d == 0) return;
            lo -= p->sstr[0][d] * p->sshape[d];
            to -= p->sstr[1][d] * p->sshape[d];
            coord[d] = 0;
        }
    }
}

/* Runs outer positions [p0, p1) (each with all inner positions, in order) on slice part
 * [s0, s1). */
static void run_unit(const plan *p, int64_t p0, int64_t p1, int64_t s0, int64_t s1)
{
    int64_t ocoord[MAXD], icoord[MAXD], base[MAXOP] = {0}, off[MAXOP];
    int64_t Q = 1, es = (int64_t)p->es;
    for (int d = p->np; d < p->ni; d++) Q *= p->ishape[d];
    seek(p, 0, p->np, p0, ocoord, base);
    bool elem_gather = !p->scatter && p->ns == 0;
    for (int64_t pp = p0; pp < p1; pp++) {
        memcpy(off, base, sizeof(int64_t) * (size_t)p->nop);
        for (int d = p->np; d < p->ni; d++) icoord[d] = 0;
        for (int64_t q = 0; q < Q; q++) {
            int64_t t = resolve(p, off);
            if (elem_gather) {
                char *d = p->lin + off[0] * es;
                const char *s = p->tgt + t * es;
                switch (es) {
                case 1: *(uint8_t *)d = *(const uint8_t *)s; break;
                case 2: *(uint16_t *)d = *(const uint16_t *)s; break;
                case 4: *(uint32_t *)d = *(const uint32_t *)s; break;
                default: *(uint64_t *)d = *(const uint64_t *)s; break;
                }
            } else if (t >= 0) {
                run_slice(p, p->lin + off[0] * es, p->tgt + t * es, s0, s1);
            }
            if (p->ni > p->np) advance(p, p->np, p->ni, icoord, off);
        }
        if (p->np > 0) advance(p, 0, p->np, ocoord, base);
    }
}

static void run(const plan *p)
{
    int64_t P = 1, Q = 1, S = 1;
    for (int d = 0; d < p->np; d++) P *= p->ishape[d];
    for (int d = p->np; d < p->ni; d++) Q *= p->ishape[d];
    for (int d = 0; d < p->ns; d++) S *= p->sshape[d];
    int64_t total = P * Q * S, S0 = p->ns > 0 ? p->sshape[0] : 1;
    if (total == 0) return;
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (total <= PNC_PAR_GRAIN || nt <= 1) {
        run_unit(p, 0, P, 0, S0);
        return;
    }
    int64_t want = 4 * (int64_t)nt;
    int64_t pch = P < want ? P : want, C = 1;
    if (pch < want && p->ns > 0 && (!p->scatter || p->slice_safe)) {
        C = (want + pch - 1) / pch;
        if (C > S0) C = S0;
    }
    int64_t units = pch * C;
#pragma omp parallel for schedule(dynamic) if (units > 1)
    for (int64_t u = 0; u < units; u++) {
        int64_t pc = u / C, c = u % C;
        run_unit(p, P * pc / pch, P * (pc + 1) / pch, S0 * c / C, S0 * (c + 1) / C);
    }
}

/* ───────────────────────────── entry point ───────────────────────────── */

int pnK_index_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_index_params *pr = PNC_PARAMS(node, pnK_index_params);
    pn_array *o = out[0];
    bool scatter = pr->kind >= PNK_IDX_TAKE_SCATTER;
    if (scatter) {
        if (!pnC_donate(o, in[0])) {
            if (pnC_alloc_output(o)) return -1;
            pnC_copy_to_contiguous(in[0], pnC_data(o));
        }
    } else if (pnC_alloc_output(o)) {
        return -1;
    }
    if (o->size == 0) return 0;

    plan *p = calloc(1, sizeof *p);
    if (!p) {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory for the index plan.", node->prim->name);
        return -1;
    }
    p->scatter = scatter;
    p->es = pn_dtype_size(o->dtype);
    bool safe[MAXD];
    /* Target T and linear side L: gathers read in[0] into out; scatters write out from the
     * updates (the last input). */
    const pn_array *T = scatter ? o : in[0];
    const pn_array *L = scatter ? in[node->nin - 1] : o;
    switch (pr->kind) {
    case PNK_IDX_TAKE:
    case PNK_IDX_TAKE_SCATTER: build_take(p, T, L, in[1], pr->axis, safe); break;
    case PNK_IDX_GATHER:
    case PNK_IDX_SCATTER: build_gather(p, T, L, in + 1, pr, safe); break;
    default: build_axis(p, T, L, in[1], pr->axis, safe); break;
    }
    p->nop = 2 + p->nidx;
    p->lin = (char *)pnC_data(L);
    p->tgt = (char *)pnC_data(T);
    p->row = (!scatter || pr->mode == PN_SCATTER_SET)
                 ? copy_row_for(p->es)
                 : combine_table[o->dtype][pr->mode - PN_SCATTER_ADD];
    finish_index_space(p, safe);
    finish_slice(p);
    run(p);
    free(p);
    return 0;
}
