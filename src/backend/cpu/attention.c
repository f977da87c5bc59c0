/* attention.c — the CPU kernels of fused scaled dot-product attention (backend/cpu/attention.h).
 * Forward: one task per (batch, head, query block): S = scale q_blk k^T by a single-threaded
 * GEMM into a per-thread buffer, mask / causal, a row softmax with vmath.h's vectorized exp
 * (the row's logsumexp is the second output), then P v. Backward: one task per (batch, kv
 * head) recomputing P from the saved logsumexp per query block of each head of the group.
 * float16 and bfloat16 are converted to float32 once and computed there.
 * Scratch: the query block shrinks so that its S (and dP) take at most SCRATCH_BYTES per
 * thread; a key length beyond SCRATCH_BYTES / 8 floats still needs one row of it. */
/* As reduce.c: no floating-point exception flags are read here, so GCC may if-convert the
 * selects and inline vmath.h's exp (compiled with the same option) into the vector loops. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "backend/cpu/attention.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/vmath.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define LD(n) ((n) > 1 ? (n) : 1) /* a BLAS leading dimension for n columns */
#define SMALL_MM (1 << 18) /* multiply-adds below which a product skips BLAS */
#define QBLOCK 64               /* query rows per task */
#define QBLOCK_CAUSAL 16        /* causal: shorter blocks skip more of the keys past the diagonal */
#define SCRATCH_BYTES (4 << 20) /* per thread, for S and dP of one block */

/* A (B, H, L, X) operand in the compute type: matrix (b, h) starts at element
 * b * sb + h * sh of base, its rows ld elements apart, unit column stride. tmp: the
 * converted or compacted copy behind base, if one was needed. */
typedef struct view {
    const char *base;
    int64_t sb, sh, ld;
    pn_array *tmp;
} view;

/* Everything a task reads. The mask is a compact copy (bool or compute type) read through
 * ms, its element strides per (b, h, i, j), 0 where broadcast. */
typedef struct sdpa_ctx {
    const pnK_sdpa_params *p;
    int64_t B, Hq, Hkv, Lq, Lk, D, Dv, rep, off, bq;
    int64_t tsz; /* elements of a thread's buffer for transposed small operands */
    bool pre;    /* backward: k and v fit SMALL_MM transposed, so each task transposes them once */
    view q, k, v, o, dout;
    const char *mask;
    int64_t ms[4];
    pn_array *mask_tmp;
} sdpa_ctx;

/* x (rank 4) as a view in compute type ct: x's own memory when it already is ct with unit
 * column stride and usable row strides, else a row-major copy. 0 or -1. */
static int view_init(view *v, pn_array *x, pn_dtype ct)
{
    const int64_t *s = x->strides, X = x->shape[3];
    v->tmp = NULL;
    bool direct = x->dtype == ct && (s[3] == 1 || X <= 1) && s[0] >= 0 && s[1] >= 0 &&
                  (s[2] >= (X > 1 ? X : 1) || x->shape[2] <= 1);
    if (direct) {
        v->base = pnC_data(x);
        v->sb = s[0], v->sh = s[1], v->ld = x->shape[2] <= 1 ? (X > 1 ? X : 1) : s[2];
        return 0;
    }
    v->tmp = pnC_new_temp(ct, x->shape, 4);
    if (!v->tmp) return -1;
    if (x->size) pnC_copy_strided(x, v->tmp);
    v->base = pnC_data(v->tmp);
    v->ld = X > 1 ? X : 1;
    v->sh = x->shape[2] * X, v->sb = x->shape[1] * v->sh;
    return 0;
}

/* The mask view m (B, Hq, Lq, Lk; broadcast dims have stride 0) compacted to its own extents
 * in dtype mt, with c->ms its broadcast strides. 0 or -1. */
static int mask_init(sdpa_ctx *c, pn_array *m, pn_dtype mt)
{
    int64_t cs[4], rs[4];
    for (int d = 0; d < 4; d++) cs[d] = m->strides[d] == 0 ? 1 : m->shape[d];
    c->mask_tmp = pnC_new_temp(mt, cs, 4);
    if (!c->mask_tmp) return -1;
    pnC_row_strides(cs, 4, rs);
    if (m->size)
        pnC_strided_copy(pnC_data(m), m->strides, m->dtype, pnC_data(c->mask_tmp), rs, mt, cs, 4);
    for (int d = 0; d < 4; d++) c->ms[d] = cs[d] == 1 ? 0 : rs[d];
    c->mask = pnC_data(c->mask_tmp);
    return 0;
}

static void ctx_free(sdpa_ctx *c)
{
    view *vs[5] = {&c->q, &c->k, &c->v, &c->o, &c->dout};
    for (int i = 0; i < 5; i++)
        if (vs[i]->tmp) pnC_decref(vs[i]->tmp);
    if (c->mask_tmp) pnC_decref(c->mask_tmp);
}

/* Fills the shapes, views of q, k, v (and, for the backward, out and dout at in[o_at],
 * in[o_at + 2]) and the mask, and the query block. 0 or -1 (c freed). */
static int ctx_init(sdpa_ctx *c, const pnC_node *node, pn_array *const *in, pn_dtype ct, int o_at)
{
    memset(c, 0, sizeof *c);
    c->p = PNC_PARAMS(node, pnK_sdpa_params);
    c->B = in[0]->shape[0], c->Hq = in[0]->shape[1], c->Lq = in[0]->shape[2];
    c->D = in[0]->shape[3], c->Hkv = in[1]->shape[1], c->Lk = in[1]->shape[2];
    c->Dv = in[2]->shape[3];
    c->rep = c->Hkv ? c->Hq / c->Hkv : 1;
    c->off = c->Lk - c->Lq;
    int64_t es = (int64_t)pn_dtype_size(ct), bq = SCRATCH_BYTES / (2 * es * (c->Lk > 1 ? c->Lk : 1));
    int64_t most = c->p->causal ? QBLOCK_CAUSAL : QBLOCK;
    c->bq = bq < 1 ? 1 : bq > most ? most : bq;
    c->tsz = c->Lk * (c->D > c->Dv ? c->D : c->Dv);
    if (c->tsz > SMALL_MM) c->tsz = SMALL_MM;
    c->pre = c->Lk * (c->D + c->Dv) <= 2 * SMALL_MM;
    int rc = view_init(&c->q, in[0], ct) || view_init(&c->k, in[1], ct) || view_init(&c->v, in[2], ct);
    if (!rc && o_at >= 0) rc = view_init(&c->o, in[o_at], ct) || view_init(&c->dout, in[o_at + 2], ct);
    if (!rc && c->p->mask != PNK_SDPA_NO_MASK)
        rc = mask_init(c, in[3], c->p->mask == PNK_SDPA_BOOL_MASK ? PN_BOOL : ct);
    if (rc) ctx_free(c);
    return rc ? -1 : 0;
}

/* Keys a block of m query rows from i0 needs: with causal, those up to the last row's
 * diagonal, unless a row of the block sees no key at all (it then averages all of them, as
 * the composite's all-finfo.min row does). */
static int64_t keys_needed(const sdpa_ctx *c, int64_t i0, int64_t m)
{
    if (!c->p->causal || i0 + c->off < 0) return c->Lk;
    int64_t n = i0 + m + c->off;
    return n < c->Lk ? n : c->Lk;
}

/* Runs body(task, thread's scratch) for every task on nt threads; scratch holds `per`
 * elements of es bytes per thread. 0, or -1 when a task failed or out of memory. */
#define PARALLEL_TASKS(ntasks, per, es, BODY)                                                   \
    do {                                                                                       \
        int nt_ = omp_in_parallel() ? 1 : omp_get_max_threads();                               \
        if ((int64_t)nt_ > (ntasks)) nt_ = (int)((ntasks) > 0 ? (ntasks) : 1);                  \
        size_t cap_ = 0;                                                                       \
        char *scr_ = pnC_alloc_bytes((size_t)(nt_ * (per)) * (es) + 64, &cap_);                 \
        if (!scr_) { rc = -1; break; }                                                         \
        _Pragma("omp parallel num_threads(nt_) if (nt_ > 1)")                                   \
        {                                                                                      \
            void *scratch = scr_ + (size_t)(omp_get_thread_num() * (per)) * (es);             \
            int trc_ = 0;                                                                      \
            _Pragma("omp for schedule(dynamic, 1)")                                             \
            for (int64_t task = 0; task < (ntasks); task++)                                    \
                if (trc_ == 0) trc_ = (BODY);                                                  \
            if (trc_) {                                                                        \
                _Pragma("omp atomic write")                                                    \
                rc = -1;                                                                       \
            }                                                                                  \
        }                                                                                      \
        pnC_free_bytes(scr_, cap_);                                                            \
    } while (0)

/* ───────────────────────────── per compute type ───────────────────────────── */

/* SUF: name suffix; A: compute type (its dtype DT); EXPF / LOGF: its exp and log. */
#define DEF_SDPA(SUF, A, DT, EXPF, LOGF)                                                       \
    typedef A vec_##SUF __attribute__((vector_size(32)));                                     \
    /* Rows i..i+R of the small product (R a constant after inlining): C's columns in pairs  \
     * of 32-byte vectors, R * 2 independent accumulators in registers, then scalar tails. */  \
    static inline __attribute__((always_inline)) void tile_##SUF(                            \
        const int R, int64_t i, int64_t N, int64_t K, A alpha, const A *a, int64_t si,          \
        int64_t sk, const A *b, int64_t ldb, double beta, A *c, int64_t ldc)                   \
    {                                                                                          \
        const int64_t L = 32 / (int64_t)sizeof(A);                                             \
        int64_t j0 = 0;                                                                        \
        for (; j0 + 2 * L <= N; j0 += 2 * L) {                                                 \
            vec_##SUF acc[4][2] = {{{0}}}, b0, b1;                                             \
            for (int r = 0; r < R; r++)                                                        \
                if (beta != 0) {                                                               \
                    memcpy(&acc[r][0], c + (i + r) * ldc + j0, 32);                            \
                    memcpy(&acc[r][1], c + (i + r) * ldc + j0 + L, 32);                        \
                }                                                                              \
            for (int64_t k = 0; k < K; k++) {                                                  \
                memcpy(&b0, b + k * ldb + j0, 32), memcpy(&b1, b + k * ldb + j0 + L, 32);      \
                for (int r = 0; r < R; r++) {                                                  \
                    A ar = alpha * a[(i + r) * si + k * sk];                                   \
                    acc[r][0] += ar * b0, acc[r][1] += ar * b1;                                \
                }                                                                              \
            }                                                                                  \
            for (int r = 0; r < R; r++) {                                                      \
                memcpy(c + (i + r) * ldc + j0, &acc[r][0], 32);                                \
                memcpy(c + (i + r) * ldc + j0 + L, &acc[r][1], 32);                            \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < R; r++)                                                            \
            for (int64_t j = j0; j < N; j++) {                                                 \
                A acc = beta != 0 ? c[(i + r) * ldc + j] : 0;                                  \
                for (int64_t k = 0; k < K; k++) acc += alpha * a[(i + r) * si + k * sk] * b[k * ldb + j]; \
                c[(i + r) * ldc + j] = acc;                                                    \
            }                                                                                  \
    }                                                                                          \
                                                                                               \
    /* dst (cols x rows, dense) = src (rows x cols, row stride ld) transposed. */           \
    static void transpose_##SUF(const A *src, int64_t ld, int64_t rows, int64_t cols, A *dst)  \
    {                                                                                          \
        for (int64_t r = 0; r < rows; r++)                                                     \
            for (int64_t k = 0; k < cols; k++) dst[k * rows + r] = src[r * ld + k];            \
    }                                                                                          \
                                                                                               \
    /* C (M x N, row stride ldc) = alpha op(a) op(b) + beta C, beta 0 or 1. Products under     \
     * SMALL_MM multiply-adds run here, vectorized over C's rows (OpenBLAS's call and packing  \
     * cost more than such math); larger ones through pnK_gemm. tb's b (N x K) is transposed  \
     * into T (at least N * K elements) first. */                                             \
    static int mm_##SUF(A *T, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, \
                        const A *a, int64_t lda, const A *b, int64_t ldb, double beta, A *c,   \
                        int64_t ldc)                                                           \
    {                                                                                          \
        if (M * N * K > SMALL_MM)                                                              \
            return pnK_gemm(DT, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);         \
        if (tb) {                                                                              \
            transpose_##SUF(b, ldb, N, K, T);                                                  \
            b = T, ldb = N;                                                                    \
        }                                                                                      \
        int64_t si = ta ? 1 : lda, sk = ta ? lda : 1, i = 0;                                   \
        for (; i + 4 <= M; i += 4) tile_##SUF(4, i, N, K, (A)alpha, a, si, sk, b, ldb, beta, c, ldc); \
        for (; i < M; i++) tile_##SUF(1, i, N, K, (A)alpha, a, si, sk, b, ldb, beta, c, ldc);  \
        return 0;                                                                              \
    }                                                                                          \
                                                                                               \
    /* Puts v at the entries of row s (query i of head (b, h), keys < nk) that causal or a     \
     * bool mask drops. */                                                                     \
    static void drop_##SUF(const sdpa_ctx *c, int64_t b, int64_t h, int64_t i, int64_t nk,      \
                           A *s, A v)                                                          \
    {                                                                                          \
        if (c->p->causal)                                                                      \
            for (int64_t j = i + c->off + 1 > 0 ? i + c->off + 1 : 0; j < nk; j++) s[j] = v;   \
        if (c->p->mask != PNK_SDPA_BOOL_MASK) return;                                          \
        const bool *mr = (const bool *)c->mask + b * c->ms[0] + h * c->ms[1] + i * c->ms[2];   \
        for (int64_t j = 0; j < nk; j++)                                                       \
            if (!mr[j * c->ms[3]]) s[j] = v;                                                   \
    }                                                                                          \
                                                                                               \
    /* S (m x nk, row stride nk) = the scores of query rows i0.. of head (b, h), masked; the  \
     * keys are kt (D x Lk, row stride Lk), or when NULL read from k (through T). */           \
    static int scores_##SUF(const sdpa_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t m,    \
                            int64_t nk, A *S, A *T, const A *kt)                               \
    {                                                                                          \
        const A *Q = (const A *)c->q.base + b * c->q.sb + h * c->q.sh + i0 * c->q.ld;          \
        const A *K = (const A *)c->k.base + b * c->k.sb + (h / c->rep) * c->k.sh;              \
        if (mm_##SUF(T, false, !kt, m, nk, c->D, c->p->scale, Q, c->q.ld,        \
                     kt ? kt : K, kt ? c->Lk : c->k.ld, 0.0, S, LD(nk)))                       \
            return -1;                                                                         \
        for (int64_t r = 0; r < m; r++) {                                                      \
            drop_##SUF(c, b, h, i0 + r, nk, S + r * nk, (A)c->p->fill);                        \
            if (c->p->mask != PNK_SDPA_ADD_MASK) continue;                                     \
            const A *mr = (const A *)c->mask + b * c->ms[0] + h * c->ms[1] + (i0 + r) * c->ms[2]; \
            for (int64_t j = 0; j < nk; j++) S[r * nk + j] += mr[j * c->ms[3]];                \
        }                                                                                      \
        return 0;                                                                              \
    }                                                                                          \
                                                                                               \
    /* Softmax of the row s[0..n) in place (the max lets NaN win); returns its logsumexp. */  \
    static A softmax_row_##SUF(A *s, int64_t n)                                                \
    {                                                                                          \
        A mx = -INFINITY;                                                                      \
        int nan = 0;                                                                           \
        _Pragma("omp simd reduction(max : mx) reduction(| : nan)")                             \
        for (int64_t j = 0; j < n; j++) {                                                      \
            mx = s[j] > mx ? s[j] : mx;                                                        \
            nan |= s[j] != s[j];                                                               \
        }                                                                                      \
        if (nan) mx = NAN;                                                                     \
        A sum = 0;                                                                             \
        _Pragma("omp simd reduction(+ : sum)")                                                 \
        for (int64_t j = 0; j < n; j++) {                                                      \
            A e = EXPF(s[j] - mx);                                                             \
            s[j] = e;                                                                          \
            sum += e;                                                                          \
        }                                                                                      \
        A inv = (A)1 / sum;                                                                    \
        _Pragma("omp simd")                                                                    \
        for (int64_t j = 0; j < n; j++) s[j] *= inv;                                           \
        return isinf(mx) ? mx : mx + LOGF(sum);                                                \
    }                                                                                          \
                                                                                               \
    /* Forward task: query block `task` into O (B, Hq, Lq, Dv) and lse (B, Hq, Lq). */       \
    static int fwd_task_##SUF(const sdpa_ctx *c, int64_t task, A *S, A *O, A *lse)             \
    {                                                                                          \
        int64_t nqb = (c->Lq + c->bq - 1) / c->bq, bh = task / nqb;                             \
        A *T = S + c->bq * c->Lk;                                                              \
        int64_t b = bh / c->Hq, h = bh % c->Hq, i0 = (task % nqb) * c->bq;                     \
        int64_t m = c->Lq - i0 < c->bq ? c->Lq - i0 : c->bq, nk = keys_needed(c, i0, m);       \
        if (scores_##SUF(c, b, h, i0, m, nk, S, T, NULL)) return -1;                          \
        A *L = lse + bh * c->Lq + i0;                                                          \
        for (int64_t r = 0; r < m; r++) L[r] = softmax_row_##SUF(S + r * nk, nk);             \
        const A *V = (const A *)c->v.base + b * c->v.sb + (h / c->rep) * c->v.sh;              \
        return mm_##SUF(T, false, false, m, c->Dv, nk, 1.0, S, LD(nk), V, c->v.ld, 0.0,           \
                        O + (bh * c->Lq + i0) * c->Dv, LD(c->Dv));                 \
    }                                                                                          \
                                                                                               \
    /* The scores row s (nk keys) turned back into P: exp(s - lse); a row that causal or a   \
     * bool mask dropped whole is uniform (lse cannot hold fill + log(Lk) exactly); with an   \
     * additive mask the softmax is recomputed whole, exact for rows that it pushes to huge   \
     * negative values (-1e9 masks). */                                                       \
    static void p_row_##SUF(const sdpa_ctx *c, A *s, int64_t nk, A lse)                        \
    {                                                                                          \
        if (c->p->mask == PNK_SDPA_ADD_MASK) {                                                 \
            softmax_row_##SUF(s, nk);                                                          \
        } else if (lse < (A)(0.5 * c->p->fill)) {                                              \
            for (int64_t j = 0; j < nk; j++) s[j] = (A)1 / (A)nk;                              \
        } else {                                                                               \
            _Pragma("omp simd")                                                                \
            for (int64_t j = 0; j < nk; j++) s[j] = EXPF(s[j] - lse);                          \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    /* Backward task (b, g): dq of the group's heads, dk and dv of kv head g. S and dP are   \
     * the thread's scratch (bq x Lk each); dlse NULL or lse's cotangent. */                   \
    static int bwd_task_##SUF(const sdpa_ctx *c, int64_t task, A *S, const A *lse,             \
                              const A *dlse, A *dq, A *dk, A *dv)                              \
    {                                                                                          \
        int64_t b = task / c->Hkv, g = task % c->Hkv;                                          \
        A *dP = S + c->bq * c->Lk, *T = dP + c->bq * c->Lk, *dK = dk + task * c->Lk * c->D, *dV = dv + task * c->Lk * c->Dv; \
        memset(dK, 0, sizeof(A) * (size_t)(c->Lk * c->D));                                     \
        memset(dV, 0, sizeof(A) * (size_t)(c->Lk * c->Dv));                                    \
        const A *K = (const A *)c->k.base + b * c->k.sb + g * c->k.sh;                         \
        const A *V = (const A *)c->v.base + b * c->v.sb + g * c->v.sh;                         \
        A *KT = NULL, *VT = NULL; /* small heads: k and v transposed once for the task */       \
        if (c->pre) {                                                                          \
            KT = T, VT = T + c->D * c->Lk;                                                     \
            transpose_##SUF(K, c->k.ld, c->Lk, c->D, KT);                                      \
            transpose_##SUF(V, c->v.ld, c->Lk, c->Dv, VT);                                     \
        }                                                                                      \
        for (int64_t h = g * c->rep; h < (g + 1) * c->rep; h++)                                \
            for (int64_t i0 = 0; i0 < c->Lq; i0 += c->bq) {                                    \
                int64_t m = c->Lq - i0 < c->bq ? c->Lq - i0 : c->bq, nk = keys_needed(c, i0, m); \
                if (scores_##SUF(c, b, h, i0, m, nk, S, T, KT)) return -1;                     \
                const A *L = lse + (b * c->Hq + h) * c->Lq + i0;                               \
                const A *dL = dlse ? dlse + (b * c->Hq + h) * c->Lq + i0 : NULL;               \
                const A *Q = (const A *)c->q.base + b * c->q.sb + h * c->q.sh + i0 * c->q.ld;  \
                const A *dO = (const A *)c->dout.base + b * c->dout.sb + h * c->dout.sh +      \
                              i0 * c->dout.ld;                                                 \
                const A *O = (const A *)c->o.base + b * c->o.sb + h * c->o.sh + i0 * c->o.ld;  \
                if (mm_##SUF(T, false, !VT, m, nk, c->Dv, 1.0, dO, c->dout.ld, VT ? VT : V,    \
                             VT ? c->Lk : c->v.ld, 0.0, dP, LD(nk)))                           \
                    return -1;                                                                 \
                for (int64_t r = 0; r < m; r++) {                                              \
                    A *s = S + r * nk, *dp = dP + r * nk, Dr = 0;                              \
                    const A *dor = dO + r * c->dout.ld, *orow = O + r * c->o.ld;               \
                    for (int64_t d = 0; d < c->Dv; d++) Dr += dor[d] * orow[d];                \
                    if (dL) Dr -= dL[r];                                                       \
                    p_row_##SUF(c, s, nk, L[r]);                                              \
                    _Pragma("omp simd")                                                        \
                    for (int64_t j = 0; j < nk; j++) dp[j] = s[j] * (dp[j] - Dr);              \
                    drop_##SUF(c, b, h, i0 + r, nk, dp, 0); /* where's gradient: none there */  \
                }                                                                              \
                A *dQ = dq + ((b * c->Hq + h) * c->Lq + i0) * c->D;                            \
                if (mm_##SUF(T, false, false, m, c->D, nk, c->p->scale, dP, LD(nk), K, c->k.ld,   \
                             0.0, dQ, LD(c->D)) ||                                                   \
                    mm_##SUF(T, true, false, nk, c->D, m, c->p->scale, dP, LD(nk), Q, c->q.ld,    \
                             1.0, dK, LD(c->D)) ||                                                   \
                    mm_##SUF(T, true, false, nk, c->Dv, m, 1.0, S, LD(nk), dO, c->dout.ld, 1.0,   \
                             dV, LD(c->Dv)))                                                         \
                    return -1;                                                                 \
            }                                                                                  \
        return 0;                                                                              \
    }

DEF_SDPA(f32, float, PN_FLOAT32, pnV_expf, logf)
DEF_SDPA(f64, double, PN_FLOAT64, exp, log)

/* ───────────────────────────── outputs ───────────────────────────── */

/* out's buffer, and the compute-type memory to write it through: out's own when its dtype is
 * ct, else a temporary (*tmp) that out_finish converts into it. NULL on out of memory. */
static void *out_begin(pn_array *o, pn_dtype ct, pn_array **tmp)
{
    *tmp = NULL;
    if (pnC_alloc_output(o)) return NULL;
    if (o->dtype == ct) return pnC_data(o);
    *tmp = pnC_new_temp(ct, o->shape, o->ndim);
    return *tmp ? pnC_data(*tmp) : NULL;
}

static void out_finish(pn_array *o, pn_array *tmp, bool ok)
{
    if (!tmp) return;
    if (ok) pnC_convert(pnC_data(tmp), tmp->dtype, pnC_data(o), o->dtype, o->size);
    pnC_decref(tmp);
}

/* The compute dtype of result dtype t. */
static pn_dtype compute_dtype(pn_dtype t) { return t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32; }

/* See attention.h. */
int pnK_sdpa_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_dtype ct = compute_dtype(in[0]->dtype);
    pn_array *otmp = NULL;
    void *O = out_begin(out[0], ct, &otmp);
    if (!O || pnC_alloc_output(out[1])) {
        out_finish(out[0], otmp, false);
        return -1;
    }
    if (out[0]->size == 0 && out[1]->size == 0) return 0;
    sdpa_ctx c;
    if (ctx_init(&c, node, in, ct, -1)) {
        out_finish(out[0], otmp, false);
        return -1;
    }
    int rc = 0;
    int64_t ntasks = c.B * c.Hq * ((c.Lq + c.bq - 1) / c.bq), per = c.bq * c.Lk + c.tsz;
    if (ct == PN_FLOAT32)
        PARALLEL_TASKS(ntasks, per, sizeof(float), fwd_task_f32(&c, task, scratch, O, pnC_data(out[1])));
    else
        PARALLEL_TASKS(ntasks, per, sizeof(double), fwd_task_f64(&c, task, scratch, O, pnC_data(out[1])));
    ctx_free(&c);
    out_finish(out[0], otmp, rc == 0);
    return rc;
}

/* See attention.h. */
int pnK_sdpa_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_sdpa_params *p = PNC_PARAMS(node, pnK_sdpa_params);
    int o_at = p->mask == PNK_SDPA_NO_MASK ? 3 : 4;
    pn_dtype ct = compute_dtype(in[0]->dtype);
    pn_array *tmp[3] = {NULL};
    void *d[3] = {NULL};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        if (!(d[i] = out_begin(out[i], ct, &tmp[i]))) rc = -1;
    pn_array *lse = rc ? NULL : pnC_contiguous(in[o_at + 1]);
    pn_array *dlse = lse && node->nin > o_at + 3 ? pnC_contiguous(in[o_at + 3]) : NULL;
    sdpa_ctx c;
    if (!lse || (node->nin > o_at + 3 && !dlse) || ctx_init(&c, node, in, ct, o_at)) rc = -1;
    else {
        int64_t ntasks = c.B * c.Hkv, per = 2 * c.bq * c.Lk + (c.pre ? c.Lk * (c.D + c.Dv) : c.tsz);
        if (ct == PN_FLOAT32)
            PARALLEL_TASKS(ntasks, per, sizeof(float),
                           bwd_task_f32(&c, task, scratch, pnC_data(lse), dlse ? pnC_data(dlse) : NULL,
                                        d[0], d[1], d[2]));
        else
            PARALLEL_TASKS(ntasks, per, sizeof(double),
                           bwd_task_f64(&c, task, scratch, pnC_data(lse), dlse ? pnC_data(dlse) : NULL,
                                        d[0], d[1], d[2]));
        ctx_free(&c);
    }
    if (lse) pnC_decref(lse);
    if (dlse) pnC_decref(dlse);
    for (int i = 0; i < 3; i++) out_finish(out[i], tmp[i], rc == 0);
    return rc;
}
