/* gemm.c — the CPU GEMM: float32/float64/complex64 through OpenBLAS (cblas), float16 and
 * bfloat16 through our own kernel: BLIS-style blocking (KC x TN panels of B, MC x KC blocks of
 * A), panels converted to float while they are packed, a 6x16 AVX2+FMA micro-kernel that
 * accumulates in float, and OpenMP threads over tiles of C. A portable scalar path stands in
 * where AVX2/FMA/F16C are missing. */
#include "backend/cpu/gemm.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PNK_GEMM_AVX2 1
#endif

/* Blocking: a 6x16 float tile of C lives in 12 ymm registers; KC x 16 floats of packed B
 * (16 KiB) stay in L1, MC x KC of packed A (<= 144 KiB) in L2, KC x TN of packed B in L3.
 * Threads take whole tiles of C (at most TM_MAX x TN_MAX, halved down to TM_MIN / TN_MIN
 * while there are too few tiles to share). */
enum { MR = 6, NR = 16, KC = 256, MC_MAX = 144 };
enum { TM_MAX = 576, TN_MAX = 512, TM_MIN = 96, TN_MIN = 128 };

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ───────────────────────────── half <-> float ───────────────────────────── */
/* `bf` selects bfloat16 (true) or float16 (false); the helpers are inlined into loops that are
 * specialized on it, so the choice costs nothing per element. */

static inline float half_load(uint16_t h, bool bf)
{
    return bf ? pnC_bf16_to_f32((pn_bfloat16){h}) : pnC_f16_to_f32((pn_float16){h});
}

static inline uint16_t half_store(float f, bool bf)
{
    return bf ? pnC_f32_to_bf16(f).bits : pnC_f32_to_f16(f).bits;
}

#ifdef PNK_GEMM_AVX2
/* 8 halves at p as 8 floats. */
static inline __m256 half_load8(const uint16_t *p, bool bf)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#ifdef __F16C__
    return _mm256_cvtph_ps(h);
#else
    float f[8];
    for (int i = 0; i < 8; i++) f[i] = half_load(p[i], false);
    return _mm256_loadu_ps(f);
#endif
}

/* 8 floats to 8 halves at p, rounding to nearest even (NaN stays NaN). */
static inline void half_store8(uint16_t *p, __m256 v, bool bf)
{
    if (bf) {
        __m256i u = _mm256_castps_si256(v);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
        r = _mm256_srli_epi32(r, 16);
        __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
        __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));
        __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        r = _mm256_blendv_epi8(r, quiet, nan);
        __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)p, h);
        return;
    }
#ifdef __F16C__
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
#else
    float f[8];
    _mm256_storeu_ps(f, v);
    for (int i = 0; i < 8; i++) p[i] = half_store(f[i], false);
#endif
}
#endif

/* ───────────────────────────── packing ───────────────────────────── */

/* Packs a kc x w panel as kc rows of W floats, zero beyond w: dst[p*W + i] = x(p, i) with
 * x(p, i) = src[p*ps + i*is]. Panels of B are (k, column) with W = NR, panels of A
 * (k, row) with W = MR. Reads follow whichever of the two strides is 1. */
static inline __attribute__((always_inline)) void pack(const uint16_t *src, int64_t ps,
                                                        int64_t is, int64_t kc, int64_t w, int W,
                                                        float *dst, bool bf)
{
#ifdef PNK_GEMM_AVX2
    if (is == 1 && w == NR && W == NR) {
        for (int64_t p = 0; p < kc; p++) {
            _mm256_storeu_ps(dst + p * NR, half_load8(src + p * ps, bf));
            _mm256_storeu_ps(dst + p * NR + 8, half_load8(src + p * ps + 8, bf));
        }
        return;
    }
#endif
    if (ps == 1) { /* contiguous along k: one element column i at a time */
        for (int64_t i = 0; i < W; i++)
            for (int64_t p = 0; p < kc; p++)
                dst[p * W + i] = i < w ? half_load(src[p + i * is], bf) : 0.0f;
    } else {
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = 0; i < W; i++)
                dst[p * W + i] = i < w ? half_load(src[p * ps + i * is], bf) : 0.0f;
    }
}

/* ───────────────────────────── micro-kernel ───────────────────────────── */

/* cout[MR][NR] (row stride ldo) = cin (row stride ldi; NULL: zero) + a @ b, where a is kc
 * packed columns of MR floats and b kc packed rows of NR floats. */
static void ukernel(int64_t kc, const float *restrict a, const float *restrict b,
                    const float *cin, int64_t ldi, float *cout, int64_t ldo)
{
#ifdef PNK_GEMM_AVX2
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (cin) {
#define PNK_LOAD(i)                                                                                \
    c##i##0 = _mm256_loadu_ps(cin + i * ldi), c##i##1 = _mm256_loadu_ps(cin + i * ldi + 8)
        PNK_LOAD(0); PNK_LOAD(1); PNK_LOAD(2); PNK_LOAD(3); PNK_LOAD(4); PNK_LOAD(5);
#undef PNK_LOAD
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), ai;
#define PNK_FMA(i)                                                                             \
    ai = _mm256_broadcast_ss(a + i);                                                           \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                                \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1)
        PNK_FMA(0); PNK_FMA(1); PNK_FMA(2); PNK_FMA(3); PNK_FMA(4); PNK_FMA(5);
#undef PNK_FMA
        a += MR;
        b += NR;
    }
#define PNK_STORE(i)                                                                               \
    _mm256_storeu_ps(cout + i * ldo, c##i##0), _mm256_storeu_ps(cout + i * ldo + 8, c##i##1)
    PNK_STORE(0); PNK_STORE(1); PNK_STORE(2); PNK_STORE(3); PNK_STORE(4); PNK_STORE(5);
#undef PNK_STORE
#else
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = cin ? cin[i * ldi + j] : 0.0f;
    for (int64_t p = 0; p < kc; p++, a += MR, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) cout[i * ldo + j] = acc[i][j];
#endif
}

/* C[0:m, 0:n] (row stride ldc) = alpha * t + beta * C for a float tile t[MR][NR]. */
static inline __attribute__((always_inline)) void store_tile(const float *t, int64_t m,
                                                              int64_t n, float alpha, float beta,
                                                              uint16_t *C, int64_t ldc, bool bf)
{
    for (int64_t i = 0; i < m; i++) {
        uint16_t *c = C + i * ldc;
        const float *r = t + i * NR;
        int64_t j = 0;
#ifdef PNK_GEMM_AVX2
        __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
        for (; j + 8 <= n; j += 8) {
            __m256 v = _mm256_mul_ps(va, _mm256_loadu_ps(r + j));
            if (beta != 0.0f) v = _mm256_fmadd_ps(vb, half_load8(c + j, bf), v);
            half_store8(c + j, v, bf);
        }
#endif
        for (; j < n; j++) {
            float v = alpha * r[j];
            if (beta != 0.0f) v += beta * half_load(c[j], bf);
            c[j] = half_store(v, bf);
        }
    }
}

/* ───────────────────────────── half-precision driver ───────────────────────────── */

/* C = beta * C for an M x N half matrix (beta == 0 writes zeros without reading). */
static void scale_half(int64_t M, int64_t N, float beta, uint16_t *C, int64_t ldc, bool bf)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] =
                half_store(beta == 0.0f ? 0.0f : beta * half_load(C[i * ldc + j], bf), bf);
}

/* Matrix-vector products (M == 1 or N == 1): out[i] = alpha * sum_p mat(i, p) * v[p] + beta *
 * out[i], mat(i, p) = mat[i*rs + p*cs], v[p] = vec[p*vs], out[i] = out[i*os]. */
static inline __attribute__((always_inline)) int gemv_half(
    int64_t n, int64_t K, float alpha, const uint16_t *mat, int64_t rs, int64_t cs,
    const uint16_t *vec, int64_t vs, float beta, uint16_t *out, int64_t os, bool bf)
{
    float *v = malloc((size_t)K * sizeof(float));
    if (!v) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[matmul] out of memory"), -1;
    for (int64_t p = 0; p < K; p++) v[p] = half_load(vec[p * vs], bf);
#pragma omp parallel for schedule(static) if (n * K > 8 * PNC_PAR_GRAIN && !omp_in_parallel())
    for (int64_t i = 0; i < n; i++) {
        const uint16_t *row = mat + i * rs;
        float s = 0.0f;
        int64_t p = 0;
#ifdef PNK_GEMM_AVX2
        if (cs == 1) {
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            for (; p + 16 <= K; p += 16) {
                acc0 = _mm256_fmadd_ps(half_load8(row + p, bf), _mm256_loadu_ps(v + p), acc0);
                acc1 =
                    _mm256_fmadd_ps(half_load8(row + p + 8, bf), _mm256_loadu_ps(v + p + 8), acc1);
            }
            float t[8];
            _mm256_storeu_ps(t, _mm256_add_ps(acc0, acc1));
            for (int q = 0; q < 8; q++) s += t[q];
        }
#endif
        for (; p < K; p++) s += half_load(row[p * cs], bf) * v[p];
        float r = alpha * s;
        if (beta != 0.0f) r += beta * half_load(out[i * os], bf);
        out[i * os] = half_store(r, bf);
    }
    free(v);
    return 0;
}

static inline __attribute__((always_inline)) int gemm_half(
    bool bf, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
    int64_t lda, const uint16_t *B, int64_t ldb, float beta, uint16_t *C, int64_t ldc)
{
    if (K == 0) {
        scale_half(M, N, beta, C, ldc, bf);
        return 0;
    }
    /* op(A)(i, p) = A[i*ars + p*acs], op(B)(p, j) = B[p*brs + j*bcs] */
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1, brs = tb ? 1 : ldb, bcs = tb ? ldb : 1;
    if (N == 1) return gemv_half(M, K, alpha, A, ars, acs, B, brs, beta, C, ldc, bf);
    if (M == 1) return gemv_half(N, K, alpha, B, bcs, brs, A, acs, beta, C, 1, bf);
    if ((double)M * N * K <= 16.0 * 16 * 16) { /* tiny: packing would cost more than it saves */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float s = 0.0f;
                for (int64_t p = 0; p < K; p++)
                    s += half_load(A[i * ars + p * acs], bf) * half_load(B[p * brs + j * bcs], bf);
                float v = alpha * s;
                if (beta != 0.0f) v += beta * half_load(C[i * ldc + j], bf);
                C[i * ldc + j] = half_store(v, bf);
            }
        return 0;
    }

    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)M * N * K < 64.0 * 64 * 64) nt = 1;
    /* Tiles of C, each computed whole by one thread with its own packed panels, handed out
     * dynamically: no barriers, so a thread that the OS preempts delays only its tile. At
     * least 4 tiles per thread keeps the tail short; tiles stay large enough that packing
     * (repeated once per tile row for B, per tile column for A) stays cheap. */
    int64_t tm = min64(round_up(M, MR), TM_MAX), tn = min64(round_up(N, NR), TN_MAX);
    while (((M + tm - 1) / tm) * ((N + tn - 1) / tn) < 4 * nt && (tm > TM_MIN || tn > TN_MIN)) {
        if (tm > TM_MIN && (tm >= tn || tn <= TN_MIN)) tm = round_up(tm / 2, MR);
        else tn = round_up(tn / 2, NR);
    }
    int64_t ntm = (M + tm - 1) / tm, ntn = (N + tn - 1) / tn;
    int64_t kc_max = min64(KC, K), mc_max = min64(tm, MC_MAX);
    /* per thread: packed B (kc x tn), packed A (mc x kc), the float accumulator of a tile */
    size_t bp_n = (size_t)round_up(kc_max * tn, 16), ap_n = (size_t)round_up(mc_max * kc_max, 16);
    size_t ws_n = K > KC ? (size_t)(tm * tn) : 0, per = bp_n + ap_n + ws_n;
    float *buf = aligned_alloc(64, per * nt * sizeof(float));
    if (!buf)
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[matmul] out of memory for GEMM workspace"), -1;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *bp = buf + per * omp_get_thread_num(), *ap = bp + bp_n;
        float *ws = ws_n ? ap + ap_n : NULL;
        float tile[MR * NR];
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntm * ntn; t++) {
            int64_t i0 = t / ntn * tm, j0 = t % ntn * tn;
            int64_t m = min64(tm, M - i0), n = min64(tn, N - j0), nstrips = (n + NR - 1) / NR;
            for (int64_t pc = 0; pc < K; pc += KC) {
                int64_t kc = min64(KC, K - pc);
                bool first = pc == 0, last = pc + kc == K;
                for (int64_t s = 0; s < nstrips; s++)
                    pack(B + pc * brs + (j0 + s * NR) * bcs, brs, bcs, kc, min64(NR, n - s * NR),
                         NR, bp + s * NR * kc, bf);
                for (int64_t ic = 0; ic < m; ic += mc_max) {
                    int64_t mc = min64(mc_max, m - ic);
                    for (int64_t r = 0; r < mc; r += MR)
                        pack(A + (i0 + ic + r) * ars + pc * acs, acs, ars, kc, min64(MR, mc - r),
                             MR, ap + r * kc, bf);
                    for (int64_t s = 0; s < nstrips; s++) {
                        int64_t j = s * NR, nr = min64(NR, n - j);
                        for (int64_t r = 0; r < mc; r += MR) {
                            float *w = ws ? ws + (ic + r) * tn + j : NULL;
                            ukernel(kc, ap + r * kc, bp + s * NR * kc, first ? NULL : w, tn,
                                    last ? tile : w, last ? NR : tn);
                            if (last)
                                store_tile(tile, min64(MR, mc - r), nr, alpha, beta,
                                           C + (i0 + ic + r) * ldc + j0 + j, ldc, bf);
                        }
                    }
                }
            }
        }
    }
    free(buf);
    return 0;
}

/* ───────────────────────────── entry point ───────────────────────────── */

/* See gemm.h. */
int pnK_gemm(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
             double alpha, const void *A, int64_t lda, const void *B, int64_t ldb, double beta,
             void *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return 0;
    /* Leading dimensions of single-row storage are arbitrary: make them what BLAS wants. */
    int64_t a_cols = transA ? M : K, a_rows = transA ? K : M;
    int64_t b_cols = transB ? K : N, b_rows = transB ? N : K;
    if (a_rows <= 1) lda = max64(lda, max64(1, a_cols));
    if (b_rows <= 1) ldb = max64(ldb, max64(1, b_cols));
    if (M <= 1) ldc = max64(ldc, N);
    if (lda < max64(1, a_cols) || ldb < max64(1, b_cols) || ldc < N)
        return pnC_fail(PN_ERR_BACKEND, "[gemm] leading dimensions too small"), -1;

    switch (dtype) {
    case PN_FLOAT16:
        return gemm_half(false, transA, transB, M, N, K, (float)alpha, A, lda, B, ldb,
                         (float)beta, C, ldc);
    case PN_BFLOAT16:
        return gemm_half(true, transA, transB, M, N, K, (float)alpha, A, lda, B, ldb,
                         (float)beta, C, ldc);
    case PN_FLOAT32:
    case PN_FLOAT64:
    case PN_COMPLEX64:
        break;
    default:
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gemm] unsupported dtype %s",
                        pn_dtype_name(dtype)), -1;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
        ldc > INT_MAX)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[matmul] matrix extents exceed what BLAS "
                        "accepts (%d)", INT_MAX), -1;
    enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
    if (K == 0) { /* BLAS would do the same, but not every BLAS ignores C when beta == 0 */
        size_t es = pn_dtype_size(dtype);
        for (int64_t i = 0; i < M; i++) {
            char *row = (char *)C + i * ldc * es;
            if (beta == 0.0) {
                memset(row, 0, N * es);
                continue;
            }
            for (int64_t j = 0; j < N; j++) {
                if (dtype == PN_FLOAT32) ((float *)row)[j] *= (float)beta;
                else if (dtype == PN_FLOAT64) ((double *)row)[j] *= beta;
                else ((pn_complex64 *)row)[j] *= (float)beta;
            }
        }
        return 0;
    }
    if (dtype == PN_FLOAT32) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, (float)alpha, A, (int)lda, B,
                    (int)ldb, (float)beta, C, (int)ldc);
    } else if (dtype == PN_FLOAT64) {
        cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                    (int)ldb, beta, C, (int)ldc);
    } else {
        pn_complex64 ca = (float)alpha, cb = (float)beta;
        cblas_cgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, &ca, A, (int)lda, B, (int)ldb,
                    &cb, C, (int)ldc);
    }
    return 0;
}

/* ───────────────────────────── batched operands ───────────────────────────── */

/* How a (rows, cols) matrix with element strides (sr, sc) reaches a BLAS: row-major with row
 * stride *ld, or transposed (column-major) with column stride *ld. False when neither works
 * (negative, zero or interleaved strides): the caller copies it. */
static bool matrix_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc, bool *trans,
                          int64_t *ld)
{
    int64_t cmin = cols > 1 ? cols : 1, rmin = rows > 1 ? rows : 1;
    if (cols <= 1) sc = 1;
    if (rows <= 1) sr = cmin;
    if (sc == 1 && sr >= cmin) {
        *trans = false, *ld = sr;
        return true;
    }
    if (sr == 1 && sc >= rmin) {
        *trans = true, *ld = sc;
        return true;
    }
    return false;
}

int pnK_gemm_operand_init(pnK_gemm_operand *op, pn_array *x, int nb)
{
    int nd = x->ndim;
    int64_t rows = x->shape[nd - 2], cols = x->shape[nd - 1];
    op->owned = NULL;
    if (!matrix_layout(rows, cols, x->strides[nd - 2], x->strides[nd - 1], &op->trans, &op->ld)) {
        op->owned = x = pnC_contiguous(x);
        if (!x) return -1;
        matrix_layout(rows, cols, x->strides[nd - 2], x->strides[nd - 1], &op->trans, &op->ld);
    }
    op->data = pnC_data(x);
    int xb = nd - 2; /* x's batch dims align with the last xb of the output's nb */
    for (int d = 0; d < nb; d++) {
        int xd = d - (nb - xb);
        op->bstrides[d] = (xd < 0 || x->shape[xd] == 1) ? 0 : x->strides[xd];
    }
    return 0;
}

void pnK_gemm_operand_release(pnK_gemm_operand *op)
{
    if (op->owned) pnC_decref(op->owned);
    op->owned = NULL;
}

bool pnK_gemm_batch_folds(const pnK_gemm_operand *a, const int64_t *bshape, int nb, int64_t M)
{
    if (a->trans) return false;
    int64_t expect = M * a->ld;
    for (int d = nb - 1; d >= 0; d--) {
        if (bshape[d] == 1) continue;
        if (a->bstrides[d] != expect) return false;
        expect *= bshape[d];
    }
    return true;
}
