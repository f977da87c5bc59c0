/* attention.cu — fused scaled dot-product attention on the GPU, in the compute type (float for
 * the halves). Forward: a block per (batch, head, tile of t query rows) walks the keys in
 * chunks of ch (at most 32) staged in shared memory; a warp owns a row, its lanes one key each
 * for the scores, then one output dim each for the online-softmax update of the row's
 * accumulator. Backward: sdpa_dq_kernel (a block per query tile: dq, and the rows' softmax
 * max, 1 / sum and rowsum(dout * out)) and sdpa_dkv_kernel (a block per (batch, kv head, key
 * tile): dk and dv over the group's heads), both recomputing P, so no atomics. Any head dims:
 * the launchers pick the tile and chunk that fit the default 48 KiB of shared memory, else the
 * device's opt-in maximum (cudaFuncSetAttribute before the launch), else run the same kernels
 * on a slice of global scratch per block instead of shared memory. On the
 * tensor cores, for float16 / bfloat16 with head dims multiples of 16 and 16 query rows or
 * more: the forward sdpa_fwd_tc_kernel (FlashAttention-2 style, a warp's rows and softmax in
 * registers as mma.cuh's m16n8k16 fragments, head dims up to 256) and the backward
 * sdpa_dq_tc_kernel and sdpa_dkv_reg_kernel / sdpa_dkv_tc_kernel (up to 256, tiles sized to
 * the device; on the same mma.cuh fragments, ldmatrix from padded shared-memory tiles, so
 * mma.sync is the one tensor-core path; dq, and dk / dv up to 128 dims, keep a warp's scores and
 * accumulators in registers as the forward does). Fewer query rows against many keys: the
 * split-key decoding kernels. */
#include "backend/attention_params.h"
#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/reduce.h"

#include <atomic>
#include <math.h>
#include <stdlib.h>
#include <type_traits>

/* Whether T is a half type (the tensor-core kernels' inputs). */
template <typename T> struct fa_half {
    static const bool value = false;
};
template <> struct fa_half<pn_float16> {
    static const bool value = true;
};
template <> struct fa_half<pn_bfloat16> {
    static const bool value = true;
};

#define SDPA_WARPS 4
#define SDPA_THREADS (32 * SDPA_WARPS)
#define SDPA_CHUNK 32                /* keys (forward, dq) or queries (dk/dv) per staged chunk, at most */
#define SDPA_SMEM (48 * 1024)        /* the default per-block limit */
#define SDPA_TILE 16                 /* query rows (forward, dq) or keys (dk/dv) per block, at most */
#define SDPA_SCRATCH_BLOCKS 64       /* blocks of a launch on global scratch */

/* How a launch lays out its blocks: t query rows (keys for dk/dv) per block, ch keys (queries)
 * per staged chunk, and each block's working memory: the dynamic shared memory, or with
 * scratch set (head dims too large for it) `per` elements of that global buffer. */
struct sdpa_tiling {
    int64_t t, per;
    int ch;
    void *scratch;
};
#ifdef PONTE_GPU_SIM
/* The simulated launch checks these pointers (cuda_sim.h). */
static inline void pnsim_param_pointers(const sdpa_tiling &g, pnsim_param_visit &v) { v.ptr(g.scratch); }
static inline void pnsim_param_pointers(const pnG_sdpa_args &a, pnsim_param_visit &v)
{
    v.ptr(a.q), v.ptr(a.k), v.ptr(a.v), v.ptr(a.mask_data);
    v.ptr(a.o), v.ptr(a.lse), v.ptr(a.dout), v.ptr(a.dlse);
}
#endif

__device__ __forceinline__ float sdpa_exp(float x) { return expf(x); }
__device__ __forceinline__ double sdpa_exp(double x) { return exp(x); }
__device__ __forceinline__ float sdpa_log(float x) { return logf(x); }
__device__ __forceinline__ double sdpa_log(double x) { return log(x); }

/* The block's working memory (see sdpa_tiling). */
template <typename C> __device__ __forceinline__ C *block_memory(const sdpa_tiling &g)
{
    PNG_DYNAMIC_SMEM(C, sm);
    return g.scratch ? (C *)g.scratch + blockIdx.x * g.per : sm;
}

template <typename C> __device__ __forceinline__ C warp_sum(C v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/* The max of the warp's values; a NaN wins. */
template <typename C> __device__ __forceinline__ C warp_max(C v)
{
    for (int o = 16; o > 0; o >>= 1) {
        C w = __shfl_xor_sync(0xffffffffu, v, o);
        v = (w > v || w != w) ? w : v;
    }
    return v;
}

/* One chunk of a row's online softmax, by the row's warp (lane's score s, counted when in):
 * updates the row's max *m and sum *l, returns the lane's exp(s - new max); *alpha gets the
 * factor that rescales what the row summed before. */
template <typename C> __device__ __forceinline__ C online_step(C s, bool in, C *m, C *l, C *alpha)
{
    C mold = *m, cm = warp_max(in ? s : (C)-INFINITY), mnew = (cm > mold || cm != cm) ? cm : mold;
    /* a row whose scores so far are all -inf has nothing to rescale */
    C p = in && mnew != -INFINITY ? sdpa_exp(s - mnew) : (C)0;
    C al = mnew == -INFINITY ? (C)1 : sdpa_exp(mold - mnew);
    C sum = warp_sum(p);
    __syncwarp(); /* every lane has read *m */
    if (threadIdx.x % 32 == 0) *l = *l * al + sum, *m = mnew;
    __syncwarp();
    *alpha = al;
    return p;
}

/* Copies rows [r0, r0 + n) of a (b, h) matrix with row stride rs and X columns into s (n x X,
 * rows past the matrix's `rows` zero), converting to the compute type. The whole block. */
template <typename T, typename C>
__device__ void stage(C *s, const T *base, int64_t rs, int64_t r0, int64_t n, int64_t rows, int64_t X)
{
    for (int64_t e = threadIdx.x; e < n * X; e += blockDim.x) {
        int64_t r = e / X, d = e % X;
        s[e] = r0 + r < rows ? (C)png_load(base + (r0 + r) * rs + d) : (C)0;
    }
}

/* The chunk of ch keys from j0 (of nk) into sk and, unless sv is NULL, their values into sv,
 * between barriers. */
template <typename T, typename C>
__device__ void stage_keys(const pnG_sdpa_args &a, C *sk, C *sv, const T *K, const T *V, int64_t j0,
                           int64_t nk, int ch)
{
    __syncthreads();
    stage(sk, K, a.ks[2], j0, ch, nk, a.D);
    if (sv) stage(sv, V, a.vs[2], j0, ch, nk, a.Dv);
    __syncthreads();
}

/* The masked score of query row qr against key row kr (both staged) at (b, h, i, j); *drop
 * tells whether causal or a bool mask put fill there. */
template <typename T, typename C>
__device__ __forceinline__ C mask_score(const pnG_sdpa_args &a, C s, int64_t b, int64_t h, int64_t i,
                                        int64_t j, bool *drop);
template <typename T, typename C>
__device__ __forceinline__ C score(const pnG_sdpa_args &a, const C *qr, const C *kr, int64_t b, int64_t h,
                                   int64_t i, int64_t j, bool *drop)
{
    C s = 0;
    for (int64_t d = 0; d < a.D; d++) s += qr[d] * kr[d];
    return mask_score<T, C>(a, s, b, h, i, j, drop);
}

/* The masked score of (b, h, i, j) from its dot product s of q and k (score's rules). */
template <typename T, typename C>
__device__ __forceinline__ C mask_score(const pnG_sdpa_args &a, C s, int64_t b, int64_t h, int64_t i,
                                        int64_t j, bool *drop)
{
    s *= (C)a.scale;
    bool dr = a.causal && j > i + a.Lk - a.Lq;
    int64_t mo = b * a.ms[0] + h * a.ms[1] + i * a.ms[2] + j * a.ms[3];
    if (a.mask == PNK_SDPA_BOOL_MASK) dr |= !((const bool *)a.mask_data)[mo];
    else if (a.mask == PNK_SDPA_ADD_MASK) s += (C)png_load((const T *)a.mask_data + mo);
    *drop = dr;
    return dr ? (C)a.fill : s;
}

/* Keys a tile of m rows from i0 needs (as the CPU kernel: causal stops at the last row's
 * diagonal unless a row of the tile sees no key). */
__device__ __forceinline__ int64_t keys_needed(const pnG_sdpa_args &a, int64_t i0, int64_t m)
{
    int64_t off = a.Lk - a.Lq;
    if (!a.causal || i0 + off < 0) return a.Lk;
    return i0 + m + off < a.Lk ? i0 + m + off : a.Lk;
}

/* Query tile `tile` of t rows (tiles run over (b, h, row tile)): its (b, h) index bh, batch b,
 * head h, first row i0, rows m, the keys it needs (keys_needed) and its kv head's K and V. */
template <typename T> struct query_tile {
    int64_t bh, b, h, i0, m, nk;
    const T *K, *V;
};
template <typename T>
__device__ __forceinline__ query_tile<T> query_tile_of(const pnG_sdpa_args &a, int64_t tile, int64_t t)
{
    query_tile<T> q;
    const int64_t nqt = (a.Lq + t - 1) / t, kh = tile / nqt % a.Hq / (a.Hq / a.Hkv);
    q.bh = tile / nqt, q.b = q.bh / a.Hq, q.h = q.bh % a.Hq, q.i0 = (tile % nqt) * t;
    q.m = a.Lq - q.i0 < t ? a.Lq - q.i0 : t, q.nk = keys_needed(a, q.i0, q.m);
    q.K = (const T *)a.k + q.b * a.ks[0] + kh * a.ks[1], q.V = (const T *)a.v + q.b * a.vs[0] + kh * a.vs[1];
    return q;
}

/* P of a score from its row's max m and 1 / sum inv (the logsumexp and 1 without an additive
 * mask): exp(s - m) * inv, or 1 / Lk in a row that causal or a bool mask dropped whole (its
 * scores all equal fill; lse cannot carry fill + log(Lk) exactly). */
template <typename C>
__device__ __forceinline__ C prob(const pnG_sdpa_args &a, C s, C m, C inv)
{
    bool whole = a.mask != PNK_SDPA_ADD_MASK && (a.causal || a.mask == PNK_SDPA_BOOL_MASK) && m < (C)(0.5 * a.fill);
    return whole ? (C)1 / (C)a.Lk : sdpa_exp(s - m) * inv;
}

/* ───────────────────────────── forward ───────────────────────────── */

/* out (B, Hq, Lq, Dv), lse (B, Hq, Lq). Working memory: q tile (t x D), accumulators
 * (t x Dv), key and value chunks (ch x D, ch x Dv), the warps' probabilities, row max and sum. */
template <typename T, typename C>
__global__ void sdpa_fwd_kernel(pnG_sdpa_args a, T *out, C *lse, sdpa_tiling g)
{
    const int64_t tq = g.t;
    const int ch = g.ch;
    C *sq = block_memory<C>(g), *acc = sq + tq * a.D, *sk = acc + tq * a.Dv, *sv = sk + ch * a.D;
    C *sp = sv + ch * a.Dv, *rm = sp + SDPA_THREADS, *rl = rm + tq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nqt = (a.Lq + tq - 1) / tq;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        const query_tile<T> qt = query_tile_of<T>(a, tile, tq);
        const int64_t bh = qt.bh, b = qt.b, h = qt.h, i0 = qt.i0, m = qt.m, nk = qt.nk;
        const T *K = qt.K, *V = qt.V;
        __syncthreads();
        stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, m, a.Lq, a.D);
        for (int64_t e = threadIdx.x; e < tq * a.Dv; e += blockDim.x) acc[e] = 0;
        for (int64_t r = threadIdx.x; r < tq; r += blockDim.x) rm[r] = -INFINITY, rl[r] = 0;
        for (int64_t j0 = 0; j0 < nk; j0 += ch) {
            stage_keys(a, sk, sv, K, V, j0, nk, ch);
            for (int64_t r = warp; r < m; r += SDPA_WARPS) {
                int64_t j = j0 + lane;
                bool drop, in = lane < ch && j < nk;
                C s = in ? score<T, C>(a, sq + r * a.D, sk + lane * a.D, b, h, i0 + r, j, &drop) : (C)-INFINITY;
                C alpha, p = online_step(s, in, rm + r, rl + r, &alpha);
                sp[threadIdx.x] = p;
                __syncwarp();
                for (int64_t d = lane; d < a.Dv; d += 32) {
                    C o = acc[r * a.Dv + d] * alpha;
                    for (int jj = 0; jj < ch; jj++) o += sp[warp * 32 + jj] * sv[jj * a.Dv + d];
                    acc[r * a.Dv + d] = o;
                }
                __syncwarp();
            }
        }
        __syncthreads();
        T *O = out + (bh * a.Lq + i0) * a.Dv;
        for (int64_t e = threadIdx.x; e < m * a.Dv; e += blockDim.x) {
            int64_t r = e / a.Dv;
            /* a row of -inf scores is NaN, as exp(-inf - -inf) in the softmax; no keys: 0 */
            png_store(O + e, rm[r] == -INFINITY ? (nk ? (C)NAN : (C)0) : acc[e] / rl[r]);
        }
        for (int64_t r = threadIdx.x; r < m; r += blockDim.x)
            lse[bh * a.Lq + i0 + r] = isinf(rm[r]) ? rm[r] : rm[r] + sdpa_log(rl[r]);
    }
}

/* ───────────────────────────── forward on tensor cores ───────────────────────────── */
/* float16 / bfloat16 with head dims D and Dv multiples of 16 up to FA_MAXD, FlashAttention-2
 * style: a block of FA_WARPS warps per (b, h, tile of FA_BM query rows), 16 rows a warp, and a
 * warp's whole state in registers as mma.cuh's m16n8k16 fragments: its Q fragments (loaded
 * once with ldmatrix; up to 128 dims, above that re-read from shared memory per chunk), a
 * chunk's scores S and probabilities P, the float output accumulator O, the rows' max and sum.
 * Per chunk of BN keys staged in shared memory (K and V rows padded against bank conflicts):
 * S = Q K^T, each element scaled and masked (mask_score; keys_needed: sdpa_fwd_kernel's rules),
 * the online softmax of the lane's two rows (max over the quad of lanes sharing a row), O
 * rescaled, P rounded to the input type (as flash attention does) — S's accumulator fragments
 * of two adjacent 8-key tiles are P's A fragment of a 16-key step — then O += P V. The same
 * out and lse as sdpa_fwd_kernel up to P's rounding. FA_WARPS, FA_MAXD and FA2_PAD also serve
 * the backward's tensor-core kernels. */
#define FA_BM 64
#define FA_BN 64
#define FA_WARPS 4
#define FA_MAXD 256 /* head dims of the tensor-core kernels, forward and backward, at most */
#define FA2_PAD 8    /* elements after each staged row: rows 16-byte aligned, banks staggered */

#ifdef PONTE_GPU_SIM
#define FA2_UNROLL
#else
#define FA2_UNROLL _Pragma("unroll")
#endif

__host__ __device__ __forceinline__ size_t fa_up(size_t n) { return (n + 127) / 128 * 128; }

/* The forward's shape for head dims up to DM (64, 128 or 256): BN keys a chunk; Q kept in
 * registers (QREG) up to 128 dims, where the q tile is staged once in the space of the chunks. */
template <int DM> struct fa2_cfg {
    static const int BN = DM > 128 ? 32 : 64;
    static const bool QREG = DM <= 128;
};

/* Byte offsets of the forward's shared memory (input type) with `stages` (1 or 2) buffers of
 * key and value chunks (BN x (D + FA2_PAD), BN x (Dv + FA2_PAD)), buffer s's at k + s * kv and
 * v + s * kv, and the q tile (FA_BM x (D + FA2_PAD)); 128-byte aligned parts. With QREG the q
 * tile lies over the first buffer (it is read into registers before any chunk is staged). */
struct fa2_layout {
    size_t q, k, v, kv, bytes;
};
template <int DM>
__host__ __device__ __forceinline__ fa2_layout fa2_layout_of(int64_t D, int64_t Dv, size_t es, int stages)
{
    const int BN = fa2_cfg<DM>::BN;
    const size_t qb = fa_up(FA_BM * (D + FA2_PAD) * es), kb = fa_up(BN * (D + FA2_PAD) * es),
                 vb = fa_up(BN * (Dv + FA2_PAD) * es);
    fa2_layout L;
    L.k = 0, L.v = kb, L.kv = kb + vb;
    const size_t chunks = stages * L.kv;
    if (fa2_cfg<DM>::QREG) L.q = 0, L.bytes = qb > chunks ? qb : chunks;
    else L.q = chunks, L.bytes = chunks + qb;
    return L;
}

/* The chunk loop of the tensor-core kernels over the chunks c = first, next(first),
 * next(next(first)), ... below n (next(c) > c): stage(c, buf) puts chunk c into buffer buf as
 * cp.async copies (fa_stage<T, true>; plain stores too, the barrier below orders them),
 * compute(c, buf) runs once every thread's copies of it have landed. With stages = 2 the next
 * chunk is staged into the other buffer while this one is computed; with 1, between chunks.
 * The whole block calls it (its barriers), with the buffers free: the caller's earlier reads
 * behind a barrier. */
template <typename Next, typename Stage, typename Compute>
__device__ __forceinline__ void fa_chunks_of(int64_t first, int64_t n, Next next, int stages, Stage stage,
                                             Compute compute)
{
    if (first < n) stage(first, 0), png_cp_async_commit();
    for (int64_t c = first, k = 0; c < n; k++) {
        const int64_t cn = next(c);
        const bool more = cn < n;
        const int buf = stages > 1 ? (int)(k & 1) : 0;
        if (stages > 1 && more) { /* the other buffer was last read by the previous chunk, before its barrier */
            stage(cn, buf ^ 1), png_cp_async_commit();
            png_cp_async_wait<1>();
        } else {
            png_cp_async_wait<0>();
        }
        __syncthreads(); /* chunk c landed, from every thread's copies */
        compute(c, buf);
        __syncthreads(); /* chunk c read: its buffer may be staged again */
        if (stages == 1 && more) stage(cn, 0), png_cp_async_commit();
        c = cn;
    }
}

/* fa_chunks_of over every chunk 0 .. n - 1. */
template <typename Stage, typename Compute>
__device__ __forceinline__ void fa_chunks(int64_t n, int stages, Stage stage, Compute compute)
{
    fa_chunks_of(0, n, [](int64_t c) { return c + 1; }, stages, stage, compute);
}

/* Rows [r0, r0 + n) of a (b, h) matrix with row stride rs and X (a multiple of 8) columns
 * into s (n rows of ld elements, ld a multiple of 8; 0: X), rows past `rows` zero; 16-byte
 * moves when the rows allow, with ASYNC as cp.async (async_copy.cuh: they land at the
 * thread's png_cp_async_wait; the caller commits the group). The whole block. */
template <typename T, bool ASYNC = false>
__device__ void fa_stage(T *s, const T *base, int64_t rs, int64_t r0, int64_t n, int64_t rows, int64_t X,
                         int64_t ld = 0)
{
    const int64_t per = X / 8; /* 16-byte pieces per row */
    const bool vec = (uintptr_t)base % 16 == 0 && rs % 8 == 0;
    if (!ld) ld = X;
    for (int64_t e = threadIdx.x; e < n * per; e += blockDim.x) {
        int64_t r = e / per, c = e % per;
        uint4 *dst = (uint4 *)(s + r * ld + c * 8);
        if (r0 + r >= rows) {
            *dst = make_uint4(0, 0, 0, 0);
        } else if (vec) {
            if constexpr (ASYNC) png_cp_async16(dst, base + (r0 + r) * rs + c * 8);
            else *dst = *(const uint4 *)(base + (r0 + r) * rs + c * 8);
        } else {
            const T *src = base + (r0 + r) * rs + c * 8;
            for (int u = 0; u < 8; u++) s[r * ld + c * 8 + u] = src[u];
        }
    }
}

/* Zeroes N accumulator fragments. */
template <int N> __device__ __forceinline__ void fa_frag_zero(float (*c)[4])
{
    FA2_UNROLL
    for (int u = 0; u < N; u++) c[u][0] = c[u][1] = c[u][2] = c[u][3] = 0.0f;
}

/* c = A B^T for a warp's 16-row strip, as NT 8-wide accumulator fragments: A the strip's 16
 * rows and B 8 NT rows of two staged tiles, over their first X columns (a multiple of 16, at
 * most 16 KD) in 16-wide steps. a and b are the lane's ldmatrix addresses (fa_reg_warp's a_at,
 * b_at), ldb B's row stride. */
template <typename T, int NT, int KD>
__device__ __forceinline__ void fa_frag_abt(float (*c)[4], const T *a, const T *b, int ldb, int X)
{
    fa_frag_zero<NT>(c);
    FA2_UNROLL
    for (int kk = 0; kk < KD; kk++) {
        if (kk >= X / 16) break;
        uint32_t af[4];
        png_ldmatrix_x4(af, a + kk * 16);
        FA2_UNROLL
        for (int np = 0; np < NT / 2; np++) {
            uint32_t bf[4];
            png_ldmatrix_x4(bf, b + np * 16 * ldb + kk * 16);
            png_mma_16816<T>(c[2 * np], af, bf, c[2 * np]);
            png_mma_16816<T>(c[2 * np + 1], af, bf + 2, c[2 * np + 1]);
        }
    }
}

/* acc += P B for a warp's 16-row strip: P its NT 8-wide accumulator fragments (8 NT columns)
 * rounded to T, two adjacent ones making the A fragment of a 16-wide step; B the 8 NT rows of
 * a staged row-major tile (row stride ldb, b the lane's a_at address), transposed by ldmatrix;
 * acc its first X columns (a multiple of 16) as NO 8-wide fragments. */
template <typename T, int NT, int NO>
__device__ __forceinline__ void fa_frag_acc(float (*acc)[4], const float (*p)[4], const T *b, int ldb, int X)
{
    FA2_UNROLL
    for (int kc = 0; kc < NT / 2; kc++) {
        const uint32_t pa[4] = {png_pack2<T>(p[2 * kc][0], p[2 * kc][1]), png_pack2<T>(p[2 * kc][2], p[2 * kc][3]),
                                png_pack2<T>(p[2 * kc + 1][0], p[2 * kc + 1][1]),
                                png_pack2<T>(p[2 * kc + 1][2], p[2 * kc + 1][3])};
        FA2_UNROLL
        for (int np = 0; np < NO / 2; np++) {
            if (np >= X / 16) break;
            uint32_t bf[4];
            png_ldmatrix_x4_trans(bf, b + kc * 16 * ldb + np * 16);
            png_mma_16816<T>(acc[2 * np], pa, bf, acc[2 * np]);
            png_mma_16816<T>(acc[2 * np + 1], pa, bf + 2, acc[2 * np + 1]);
        }
    }
}

/* The larger of two row maxima; a NaN wins. */
__device__ __forceinline__ float fa2_max(float x, float y) { return (y > x || y != y) ? y : x; }

/* out (B, Hq, Lq, Dv), lse (B, Hq, Lq) for head dims up to DM (see fa2_cfg). With stages = 2
 * the next key / value chunk is copied in (cp.async) while the warps compute on this one; with
 * 1 (when two buffers do not fit the shared memory) it is copied between chunks. A warp skips
 * the chunks that causal masking hides from all its rows (keys_needed of its 16 rows). */
template <typename T, int DM>
__global__ void __launch_bounds__(FA_WARPS * 32) sdpa_fwd_tc_kernel(pnG_sdpa_args a, T *out, float *lse, int stages)
{
    typedef fa2_cfg<DM> cfg;
    constexpr int BN = cfg::BN, NT = BN / 8, KD = DM / 16, NO = DM / 8;
    PNG_DYNAMIC_SMEM(unsigned char, smem);
    const int D = (int)a.D, Dv = (int)a.Dv, ldk = D + FA2_PAD, ldv = Dv + FA2_PAD;
    const fa2_layout L = fa2_layout_of<DM>(D, Dv, sizeof(T), stages);
    T *sq = (T *)(smem + L.q);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4, r0 = warp * 16;
    const int lj = lane / 8, lr = lane % 8; /* the lane's ldmatrix row: matrix lj, row lr */
    /* the lane's row addresses for ldmatrix: Q (rows r0.., matrices (rows 0-7 | 8-15) x
     * (cols 0-7 | 8-15)), K (keys (0-7 | 8-15) x dims (0-7 | 8-15)), V transposed (keys
     * (0-7 | 8-15) x dims (0-7 | 8-15), key-major) */
    const int qoff = (r0 + (lj & 1) * 8 + lr) * ldk + (lj >> 1) * 8;
    const int koff = ((lj >> 1) * 8 + lr) * ldk + (lj & 1) * 8;
    const int voff = ((lj & 1) * 8 + lr) * ldv + (lj >> 1) * 8;
    const int64_t nqt = (a.Lq + FA_BM - 1) / FA_BM;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        const query_tile<T> qt = query_tile_of<T>(a, tile, FA_BM);
        const int64_t bh = qt.bh, b = qt.b, h = qt.h, i0 = qt.i0, m = qt.m, nk = qt.nk;
        const T *K = qt.K, *V = qt.V;
        /* the keys this warp's rows need; none for rows past the tile's */
        const int64_t wnk = r0 < m ? keys_needed(a, i0 + r0, m - r0 < 16 ? m - r0 : 16) : 0;
        __syncthreads(); /* the previous tile's chunks read */
        fa_stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, FA_BM, a.Lq, D, ldk);
        __syncthreads();
        uint32_t qf[cfg::QREG ? KD : 1][4];
        if constexpr (cfg::QREG) {
            FA2_UNROLL
            for (int kk = 0; kk < KD; kk++)
                if (kk < D / 16) png_ldmatrix_x4(qf[kk], sq + qoff + kk * 16);
            __syncthreads(); /* the q tile read: the first chunk goes over it */
        }
        float o[NO][4], mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};
        FA2_UNROLL
        for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
        fa_chunks(
            (nk + BN - 1) / BN, stages,
            [&](int64_t c, int buf) {
                unsigned char *at = smem + buf * L.kv;
                fa_stage<T, true>((T *)(at + L.k), K, a.ks[2], c * BN, BN, nk, D, ldk);
                fa_stage<T, true>((T *)(at + L.v), V, a.vs[2], c * BN, BN, nk, Dv, ldv);
            },
            [&](int64_t c, int buf) {
                const int64_t j0 = c * BN;
                if (j0 >= wnk) return; /* hidden from all the warp's rows */
                const T *sk = (const T *)(smem + buf * L.kv + L.k), *sv = (const T *)(smem + buf * L.kv + L.v);
                /* S = Q K^T for the warp's 16 rows */
                float s[NT][4];
                FA2_UNROLL
                for (int n = 0; n < NT; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
                FA2_UNROLL
                for (int kk = 0; kk < KD; kk++) {
                    if (kk >= D / 16) break;
                    uint32_t af[4];
                    const uint32_t *A = af;
                    if constexpr (cfg::QREG) A = qf[kk];
                    else png_ldmatrix_x4(af, sq + qoff + kk * 16);
                    FA2_UNROLL
                    for (int np = 0; np < NT / 2; np++) {
                        uint32_t bf[4];
                        png_ldmatrix_x4(bf, sk + koff + np * 16 * ldk + kk * 16);
                        png_mma_16816<T>(s[2 * np], A, bf, s[2 * np]);
                        png_mma_16816<T>(s[2 * np + 1], A, bf + 2, s[2 * np + 1]);
                    }
                }
                /* scale and mask; the rows' online softmax (rows g and g + 8 of the warp's) */
                float cm[2] = {-INFINITY, -INFINITY};
                FA2_UNROLL
                for (int n = 0; n < NT; n++)
                    FA2_UNROLL
                    for (int e = 0; e < 4; e++) {
                        const int rr = r0 + g + (e / 2) * 8;
                        const int64_t j = j0 + n * 8 + 2 * t + (e & 1);
                        float v = -INFINITY;
                        bool drop;
                        if (rr < m && j < nk) v = mask_score<T, float>(a, s[n][e], b, h, i0 + rr, j, &drop);
                        s[n][e] = v;
                        cm[e / 2] = fa2_max(cm[e / 2], v);
                    }
                float al[2];
                FA2_UNROLL
                for (int r = 0; r < 2; r++) {
                    cm[r] = fa2_max(cm[r], __shfl_xor_sync(0xffffffffu, cm[r], 1));
                    cm[r] = fa2_max(cm[r], __shfl_xor_sync(0xffffffffu, cm[r], 2));
                    const float mnew = fa2_max(mx[r], cm[r]);
                    /* a row whose scores so far are all -inf has nothing to rescale */
                    al[r] = mnew == -INFINITY ? 1.0f : sdpa_exp(mx[r] - mnew);
                    mx[r] = mnew;
                }
                float part[2] = {0.0f, 0.0f};
                FA2_UNROLL
                for (int n = 0; n < NT; n++)
                    FA2_UNROLL
                    for (int e = 0; e < 4; e++) {
                        const float p = mx[e / 2] == -INFINITY ? 0.0f : sdpa_exp(s[n][e] - mx[e / 2]);
                        s[n][e] = p;
                        part[e / 2] += p;
                    }
                /* the lane's share of each row's sum (the quad's shares added at the end) */
                sum[0] = sum[0] * al[0] + part[0], sum[1] = sum[1] * al[1] + part[1];
                FA2_UNROLL
                for (int n = 0; n < NO; n++) o[n][0] *= al[0], o[n][1] *= al[0], o[n][2] *= al[1], o[n][3] *= al[1];
                /* O += P V */
                fa_frag_acc<T, NT, NO>(o, s, sv + voff, ldv, Dv);
            });
        FA2_UNROLL
        for (int r = 0; r < 2; r++) {
            sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 1);
            sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 2);
        }
        T *O = out + (bh * a.Lq + i0) * Dv;
        FA2_UNROLL
        for (int r = 0; r < 2; r++) {
            const int rr = r0 + g + r * 8;
            if (rr >= m) continue;
            /* a row of -inf scores is NaN, as exp(-inf - -inf) in the softmax; no keys: 0 */
            const bool none = mx[r] == -INFINITY;
            const float inv = 1.0f / sum[r], dead = nk ? NAN : 0.0f;
            FA2_UNROLL
            for (int n = 0; n < NO; n++) { /* the two columns in one 4-byte store where aligned */
                if (n >= Dv / 8) break;
                T *at = O + rr * Dv + n * 8 + 2 * t;
                const float x = none ? dead : o[n][2 * r] * inv, y = none ? dead : o[n][2 * r + 1] * inv;
                if ((uintptr_t)at % 4 == 0) *(uint32_t *)at = png_pack2<T>(x, y);
                else png_store(at, x), png_store(at + 1, y);
            }
            if (t == 0) lse[bh * a.Lq + i0 + rr] = isinf(mx[r]) ? mx[r] : mx[r] + sdpa_log(sum[r]);
        }
    }
}

/* ───────────────────────────── backward ───────────────────────────── */

/* dq (B, Hq, Lq, D) and, in dsc (3 x B * Hq * Lq), the rows' rowsum(dout * out) (less lse's
 * cotangent when there is one), softmax max and 1 / sum. With an additive mask the max and sum are recomputed (a first pass over the
 * keys): a row that the mask pushes to huge negative scores (-1e9, finfo.min) loses log(sum)
 * in lse's rounding, and exp(s - lse) would be 1 where the softmax is 1 / Lk. Otherwise they
 * are lse and 1. Working memory: q, dout and dq tiles, key and value chunks, the warps' dS,
 * the rows' max, 1 / sum and rowsum. */
template <typename T, typename C>
__global__ void sdpa_dq_kernel(pnG_sdpa_args a, T *dq, C *dsc, sdpa_tiling g)
{
    const int64_t tq = g.t, n = a.B * a.Hq * a.Lq;
    const int ch = g.ch;
    C *sq = block_memory<C>(g), *sdo = sq + tq * a.D, *sdq = sdo + tq * a.Dv, *sk = sdq + tq * a.D;
    C *sv = sk + ch * a.D, *sp = sv + ch * a.Dv, *rm = sp + SDPA_THREADS, *rl = rm + tq, *rd = rl + tq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nqt = (a.Lq + tq - 1) / tq;
    const bool add = a.mask == PNK_SDPA_ADD_MASK;
    const C *lse = (const C *)a.lse, *dlse = (const C *)a.dlse;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        const query_tile<T> qt = query_tile_of<T>(a, tile, tq);
        const int64_t bh = qt.bh, b = qt.b, h = qt.h, i0 = qt.i0, m = qt.m, nk = qt.nk;
        const T *K = qt.K, *V = qt.V;
        const T *O = (const T *)a.o + b * a.os[0] + h * a.os[1];
        __syncthreads();
        stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, m, a.Lq, a.D);
        stage(sdo, (const T *)a.dout + b * a.dos[0] + h * a.dos[1], a.dos[2], i0, m, a.Lq, a.Dv);
        for (int64_t e = threadIdx.x; e < tq * a.D; e += blockDim.x) sdq[e] = 0;
        for (int64_t r = threadIdx.x; r < m; r += blockDim.x)
            rm[r] = add ? (C)-INFINITY : lse[bh * a.Lq + i0 + r], rl[r] = add ? (C)0 : (C)1;
        __syncthreads();
        for (int64_t r = warp; r < m; r += SDPA_WARPS) {
            C part = 0;
            for (int64_t d = lane; d < a.Dv; d += 32) part += sdo[r * a.Dv + d] * (C)png_load(O + (i0 + r) * a.os[2] + d);
            part = warp_sum(part);
            if (lane == 0) rd[r] = dlse ? part - dlse[bh * a.Lq + i0 + r] : part;
        }
        for (int64_t j0 = 0; add && j0 < nk; j0 += ch) { /* the rows' max and sum */
            stage_keys(a, sk, (C *)NULL, K, V, j0, nk, ch);
            for (int64_t r = warp; r < m; r += SDPA_WARPS) {
                int64_t j = j0 + lane;
                bool drop, in = lane < ch && j < nk;
                C s = in ? score<T, C>(a, sq + r * a.D, sk + lane * a.D, b, h, i0 + r, j, &drop) : (C)-INFINITY, alpha;
                online_step(s, in, rm + r, rl + r, &alpha);
            }
        }
        __syncthreads();
        for (int64_t r = threadIdx.x; r < m; r += blockDim.x) {
            if (add) rl[r] = (C)1 / rl[r];
            int64_t row = bh * a.Lq + i0 + r;
            dsc[row] = rd[r], dsc[n + row] = rm[r], dsc[2 * n + row] = rl[r];
        }
        for (int64_t j0 = 0; j0 < nk; j0 += ch) {
            stage_keys(a, sk, sv, K, V, j0, nk, ch);
            for (int64_t r = warp; r < m; r += SDPA_WARPS) {
                int64_t j = j0 + lane;
                C ds = 0;
                if (lane < ch && j < nk) {
                    bool drop;
                    C s = score<T, C>(a, sq + r * a.D, sk + lane * a.D, b, h, i0 + r, j, &drop), dp = 0;
                    for (int64_t d = 0; d < a.Dv; d++) dp += sdo[r * a.Dv + d] * sv[lane * a.Dv + d];
                    ds = drop ? (C)0 : prob(a, s, rm[r], rl[r]) * (dp - rd[r]);
                }
                sp[threadIdx.x] = ds;
                __syncwarp();
                for (int64_t d = lane; d < a.D; d += 32) {
                    C o = 0;
                    for (int jj = 0; jj < ch; jj++) o += sp[warp * 32 + jj] * sk[jj * a.D + d];
                    sdq[r * a.D + d] += (C)a.scale * o;
                }
                __syncwarp();
            }
        }
        __syncthreads();
        T *DQ = dq + (bh * a.Lq + i0) * a.D;
        for (int64_t e = threadIdx.x; e < m * a.D; e += blockDim.x) png_store(DQ + e, sdq[e]);
    }
}

/* dk (B, Hkv, Lk, D), dv (B, Hkv, Lk, Dv) for a tile of t keys, over the query heads of the
 * group in chunks of ch rows (dsc from sdpa_dq_kernel). Working memory: k, v, dk, dv tiles, q
 * and dout chunks, the warps' P and dS, the chunk's max, 1 / sum and rowsum. */
template <typename T, typename C>
__global__ void sdpa_dkv_kernel(pnG_sdpa_args a, T *dk, T *dv, const C *dsc, sdpa_tiling g)
{
    const int64_t tk = g.t, nrow = a.B * a.Hq * a.Lq;
    const int ch = g.ch;
    C *sk = block_memory<C>(g), *sv = sk + tk * a.D, *sdk = sv + tk * a.Dv, *sdv = sdk + tk * a.D;
    C *sq = sdv + tk * a.Dv, *sdo = sq + ch * a.D, *sp = sdo + ch * a.Dv;
    C *sds = sp + SDPA_THREADS, *cm = sds + SDPA_THREADS, *cl = cm + ch, *cd = cl + ch;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nkt = (a.Lk + tk - 1) / tk, rep = a.Hq / a.Hkv, off = a.Lk - a.Lq;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hkv * nkt; tile += gridDim.x) {
        int64_t bg = tile / nkt, b = bg / a.Hkv, kh = bg % a.Hkv, k0 = (tile % nkt) * tk;
        int64_t n = a.Lk - k0 < tk ? a.Lk - k0 : tk;
        __syncthreads();
        stage(sk, (const T *)a.k + b * a.ks[0] + kh * a.ks[1], a.ks[2], k0, n, a.Lk, a.D);
        stage(sv, (const T *)a.v + b * a.vs[0] + kh * a.vs[1], a.vs[2], k0, n, a.Lk, a.Dv);
        for (int64_t e = threadIdx.x; e < tk * a.D; e += blockDim.x) sdk[e] = 0;
        for (int64_t e = threadIdx.x; e < tk * a.Dv; e += blockDim.x) sdv[e] = 0;
        for (int64_t h = kh * rep; h < (kh + 1) * rep; h++)
            for (int64_t i0 = 0; i0 < a.Lq; i0 += ch) {
                int64_t i1 = a.Lq - i0 < ch ? a.Lq : i0 + ch;
                if (a.causal && i0 + off >= 0 && i1 - 1 + off < k0) continue; /* sees none of the tile */
                int64_t bh = b * a.Hq + h;
                __syncthreads();
                stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, ch, a.Lq, a.D);
                stage(sdo, (const T *)a.dout + b * a.dos[0] + h * a.dos[1], a.dos[2], i0, ch, a.Lq, a.Dv);
                for (int64_t r = threadIdx.x; r < ch; r += blockDim.x) {
                    int64_t row = bh * a.Lq + i0 + r;
                    bool in = i0 + r < a.Lq;
                    cd[r] = in ? dsc[row] : (C)0, cm[r] = in ? dsc[nrow + row] : (C)0;
                    cl[r] = in ? dsc[2 * nrow + row] : (C)0;
                }
                __syncthreads();
                for (int64_t kk = warp; kk < n; kk += SDPA_WARPS) {
                    int64_t i = i0 + lane;
                    C p = 0, ds = 0;
                    if (lane < ch && i < a.Lq) {
                        bool drop;
                        C s = score<T, C>(a, sq + lane * a.D, sk + kk * a.D, b, h, i, k0 + kk, &drop), dp = 0;
                        for (int64_t d = 0; d < a.Dv; d++) dp += sdo[lane * a.Dv + d] * sv[kk * a.Dv + d];
                        p = prob(a, s, cm[lane], cl[lane]);
                        ds = drop ? (C)0 : p * (dp - cd[lane]);
                    }
                    sp[threadIdx.x] = p, sds[threadIdx.x] = ds;
                    __syncwarp();
                    for (int64_t d = lane; d < a.D; d += 32) {
                        C o = 0;
                        for (int ii = 0; ii < ch; ii++) o += sds[warp * 32 + ii] * sq[ii * a.D + d];
                        sdk[kk * a.D + d] += (C)a.scale * o;
                    }
                    for (int64_t d = lane; d < a.Dv; d += 32) {
                        C o = 0;
                        for (int ii = 0; ii < ch; ii++) o += sp[warp * 32 + ii] * sdo[ii * a.Dv + d];
                        sdv[kk * a.Dv + d] += o;
                    }
                    __syncwarp();
                }
            }
        __syncthreads();
        T *DK = dk + (bg * a.Lk + k0) * a.D, *DV = dv + (bg * a.Lk + k0) * a.Dv;
        for (int64_t e = threadIdx.x; e < n * a.D; e += blockDim.x) png_store(DK + e, sdk[e]);
        for (int64_t e = threadIdx.x; e < n * a.Dv; e += blockDim.x) png_store(DV + e, sdv[e]);
    }
}

/* ───────────────────────────── forward of a few query rows ───────────────────────────── */
/* Decoding (Lq below 16: one new token against a long cache): a tile of query rows would
 * leave the GPU idle (one block per (b, h), one warp working), so the keys of each row are
 * split over blocks (flash decoding). sdpa_decode_kernel: a block per (row, split); its warps
 * take the split's keys in turn, a warp per key: the dot product with the lanes over the head
 * dim (read straight from global memory), the masked score (mask_score), the online softmax
 * and the value row into the warp's accumulator; the warps are merged and the split's max,
 * sum and accumulator written to scratch. sdpa_decode_combine: a warp per row merges the
 * splits into out and lse, with sdpa_fwd_kernel's rules for rows of -inf and rows with no
 * key. */
#define DEC_WARPS 4
#define DEC_MIN_KEYS 64 /* keys per split, at least */

/* Partials of split s of row `row`: max, sum (pm, pl: rows x splits) and accumulator (pacc:
 * rows x splits x Dv). */
template <typename T, typename C>
__global__ void __launch_bounds__(DEC_WARPS * 32) sdpa_decode_kernel(pnG_sdpa_args a, int64_t splits, int64_t per,
                                                                     C *pm, C *pl, C *pacc)
{
    PNG_DYNAMIC_SMEM(C, sm);
    C *sq = sm, *sacc = sq + a.D, *wm = sacc + DEC_WARPS * a.Dv, *wl = wm + DEC_WARPS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int D = (int)a.D, Dv = (int)a.Dv; /* int counters in the key loop: 64-bit ones spilled on sm_90 */
    const int64_t rows = a.B * a.Hq * a.Lq, rep = a.Hq / a.Hkv;
    for (int64_t w = blockIdx.x; w < rows * splits; w += gridDim.x) {
        int64_t row = w / splits, sp = w % splits, bh = row / a.Lq, i = row % a.Lq, b = bh / a.Hq, h = bh % a.Hq;
        int64_t kh = h / rep, nk = keys_needed(a, i, 1);
        int64_t j0 = sp * per, j1 = j0 + per < nk ? j0 + per : nk;
        const T *K = (const T *)a.k + b * a.ks[0] + kh * a.ks[1], *V = (const T *)a.v + b * a.vs[0] + kh * a.vs[1];
        const T *Q = (const T *)a.q + b * a.qs[0] + h * a.qs[1] + i * a.qs[2];
        __syncthreads();
        for (int64_t d = threadIdx.x; d < a.D; d += blockDim.x) sq[d] = (C)png_load(Q + d);
        for (int64_t e = threadIdx.x; e < DEC_WARPS * a.Dv; e += blockDim.x) sacc[e] = 0;
        __syncthreads();
        C m = -INFINITY, l = 0, *acc = sacc + warp * a.Dv;
        for (int64_t j = j0 + warp; j < j1; j += DEC_WARPS) {
            C dot = 0;
            const T *kr = K + j * a.ks[2], *vr = V + j * a.vs[2];
            for (int d = lane; d < D; d += 32) dot += sq[d] * (C)png_load(kr + d);
            dot = warp_sum(dot);
            bool drop;
            C sc = mask_score<T, C>(a, dot, b, h, i, j, &drop);
            C mnew = (sc > m || sc != sc) ? sc : m;
            C al = mnew == -INFINITY ? (C)1 : sdpa_exp(m - mnew);
            C p = mnew == -INFINITY ? (C)0 : sdpa_exp(sc - mnew);
            l = l * al + p, m = mnew;
            for (int d = lane; d < Dv; d += 32) acc[d] = acc[d] * al + p * (C)png_load(vr + d);
        }
        if (lane == 0) wm[warp] = m, wl[warp] = l;
        __syncthreads();
        /* the warps merged: max over them (a NaN wins), each warp's factor exp(its max - M) once
         * (f: constant indices, registers), then sums and accumulators rescaled; 0 when M is -inf */
        C M = -INFINITY, f[DEC_WARPS];
        FA2_UNROLL
        for (int u = 0; u < DEC_WARPS; u++) M = (wm[u] > M || wm[u] != wm[u]) ? wm[u] : M;
        FA2_UNROLL
        for (int u = 0; u < DEC_WARPS; u++) f[u] = M == -INFINITY ? (C)0 : sdpa_exp(wm[u] - M);
        if (threadIdx.x == 0) {
            C L = 0;
            FA2_UNROLL
            for (int u = 0; u < DEC_WARPS; u++) L += M == -INFINITY ? (C)0 : wl[u] * f[u];
            pm[w] = M, pl[w] = L;
        }
        for (int64_t d = threadIdx.x; d < a.Dv; d += blockDim.x) {
            C o = 0;
            FA2_UNROLL
            for (int u = 0; u < DEC_WARPS; u++) o += M == -INFINITY ? (C)0 : sacc[u * a.Dv + d] * f[u];
            pacc[w * a.Dv + d] = o;
        }
    }
}

template <typename T, typename C>
__global__ void sdpa_decode_combine(pnG_sdpa_args a, int64_t splits, const C *pm, const C *pl, const C *pacc,
                                    T *out, C *lse)
{
    const int64_t rows = a.B * a.Hq * a.Lq, per_block = blockDim.x / 32;
    const int lane = threadIdx.x % 32;
    for (int64_t row = (int64_t)blockIdx.x * per_block + threadIdx.x / 32; row < rows;
         row += (int64_t)gridDim.x * per_block) {
        int64_t nk = keys_needed(a, row % a.Lq, 1);
        C M = -INFINITY, L = 0;
        for (int64_t s = 0; s < splits; s++) {
            C v = pm[row * splits + s];
            M = (v > M || v != v) ? v : M;
        }
        for (int64_t s = 0; s < splits; s++)
            L += M == -INFINITY ? (C)0 : pl[row * splits + s] * sdpa_exp(pm[row * splits + s] - M);
        for (int64_t d = lane; d < a.Dv; d += 32) {
            C o = 0;
            for (int64_t s = 0; s < splits; s++)
                o += M == -INFINITY ? (C)0 : pacc[(row * splits + s) * a.Dv + d] * sdpa_exp(pm[row * splits + s] - M);
            /* a row of -inf scores is NaN, as exp(-inf - -inf) in the softmax; no keys: 0 */
            png_store(out + row * a.Dv + d, M == -INFINITY ? (nk ? (C)NAN : (C)0) : o / L);
        }
        if (lane == 0) lse[row] = isinf(M) ? M : M + sdpa_log(L);
    }
}

/* ───────────────────────────── backward on tensor cores ───────────────────────────── */
/* The two kernels above with their products on the tensor cores, for half types and head dims
 * multiples of 16 up to FA_MAXD: the same quantities, rules and dsc contract, dS and P
 * rounded to the input type before their products, all on mma.cuh's m16n8k16 fragments with
 * float accumulators, operands by ldmatrix from shared-memory tiles whose rows are padded by
 * FA2_PAD (every row 16-byte aligned, rows spread over the banks). Both run FA_WARPS warps and
 * take their tile height TM (64, 32 or 16 rows a block) and chunk TN (64 or 32) as template
 * parameters; the launcher takes the largest tile whose shared memory fits the device.
 * sdpa_dq_tc_kernel (fa_dq_pick; also templated on the head dims' bucket DM): the forward's
 * scheme, a warp's 16 query rows against its share of each TN-key chunk with S, P, dP, dS and
 * the dq accumulator in registers, only the q and dout tiles and the key and value chunks in
 * shared memory (69 KiB at D = 128 with 64 x 64 tiles). sdpa_dkv_reg_kernel (fa_dkv_pick, head
 * dims up to 128): the same scheme with a warp's 16 keys for rows, S^T, P^T, dP^T, dS^T and the
 * dk and dv accumulators in registers, only the k and v tiles and the q and dout chunks in
 * shared memory. sdpa_dkv_tc_kernel (fa_bwd_pick, head dims above 128, where the two float
 * accumulators would not fit the registers): a block per TM keys of a kv head, per TN-query chunk of each head of the group S^T = K Q^T and
 * dP^T = V dO^T into shared memory (fa_mma_rows: the TM / 16 row groups of 16 rows each get
 * FA_WARPS * 16 / TM warps, which split the 16-wide column tiles of every product between
 * them), P^T and dS^T there (the elementwise steps over the whole block), dV += P^T dO and
 * dK += dS^T Q; at D = 128 its 64-row tiles need 183 KiB, more than the 99 KiB of sm_86 /
 * sm_89. Both dkv kernels take their query chunks through fa_dkv_chunks (two buffers, the next
 * copied in by cp.async, where they fit with the tile; else one). */
/* Consecutive 128-byte-aligned sections of a block's shared memory. */
struct fa_sections {
    size_t at;
    __host__ __device__ size_t take(size_t bytes)
    {
        size_t o = at;
        at += fa_up(bytes);
        return o;
    }
};

/* The 16 rows at a (row-major, lda) times B, into the 16 rows at out (float, ldo), over kk
 * 16-wide steps: B from b (row-major (k, n) with ldb, or COLB: element (k, n) at
 * b[n * ldb + k]); the output's 16-wide column tiles c0, c0 + cstep, ... below nc, each
 * loaded, multiplied and stored back (accumulate), or started from zero (overwrite). One warp,
 * on mma.cuh's m16n8k16 fragments: A and B through ldmatrix (B of a row-major b transposed),
 * so a, b, lda and ldb must keep every row 16-byte aligned (lda, ldb multiples of 8). */
template <typename T, bool COLB>
__device__ __forceinline__ void fa_mma_rows(float *out, int64_t ldo, const T *a, int64_t lda, const T *b,
                                            int64_t ldb, int64_t kk, int64_t nc, int c0, int cstep,
                                            bool accumulate)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int lj = lane / 8, lr = lane % 8; /* the lane's ldmatrix row: matrix lj, row lr */
    /* A: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15), a0..a3; B of COLB: (n 0-7 | 8-15) x
     * (k 0-7 | 8-15), n-major (b0, b1 of the two 8-wide n tiles); B row-major: (k 0-7 | 8-15) x
     * (n 0-7 | 8-15), k-major, transposed by ldmatrix */
    const T *arow = a + ((lj & 1) * 8 + lr) * lda + (lj >> 1) * 8;
    const T *brow = COLB ? b + ((lj >> 1) * 8 + lr) * ldb + (lj & 1) * 8 : b + ((lj & 1) * 8 + lr) * ldb + (lj >> 1) * 8;
    for (int64_t c = c0; c < nc; c += cstep) {
        float acc[2][4];
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < 4; e++)
                acc[h][e] = accumulate ? out[(g + (e / 2) * 8) * ldo + c * 16 + h * 8 + 2 * t + (e & 1)] : 0.0f;
        for (int64_t k = 0; k < kk; k++) {
            uint32_t af[4], bf[4];
            png_ldmatrix_x4(af, arow + k * 16);
            if (COLB) png_ldmatrix_x4(bf, brow + c * 16 * ldb + k * 16);
            else png_ldmatrix_x4_trans(bf, brow + k * 16 * ldb + c * 16);
            png_mma_16816<T>(acc[0], af, bf, acc[0]);
            png_mma_16816<T>(acc[1], af, bf + 2, acc[1]);
        }
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < 4; e++) out[(g + (e / 2) * 8) * ldo + c * 16 + h * 8 + 2 * t + (e & 1)] = acc[h][e];
    }
}

/* A warp's share of a tile of tm rows: its 16 rows from r0, and its column tiles cg, cg +
 * cstep, ... of each product (the tm / 16 row groups split the FA_WARPS warps evenly). */
struct fa_warp_part {
    int r0, cg, cstep;
};
template <int TM> __device__ __forceinline__ fa_warp_part fa_warp_part_of(void)
{
    static_assert(TM % 16 == 0 && FA_WARPS % (TM / 16) == 0, "tile rows: 16 a row group, FA_WARPS divisible");
    const int cstep = FA_WARPS / (TM / 16), warp = threadIdx.x / 32;
    return fa_warp_part{warp / cstep * 16, warp % cstep, cstep};
}

/* dq kernel with tm query rows a block and chunks of tn keys: q and dout tiles, `stages` (1 or
 * 2) buffers of key and value chunks (input type, rows padded by FA2_PAD; buffer s's at k + s *
 * kv and v + s * kv), the rows' max, 1 / sum and rowsum, the warps' partial max and sum of the
 * additive mask's pass; the dq partials of the row groups' warps are added at the end in the
 * space of the tiles (dq, tm x D floats from 0). */
struct fa_dq_layout {
    size_t q, dout, k, v, kv, rm, rl, rd, wm, wl, dq, bytes;
};
__host__ __device__ __forceinline__ fa_dq_layout fa_dq_layout_of(int64_t D, int64_t Dv, size_t es, int64_t tm,
                                                                 int64_t tn, int stages)
{
    fa_sections c = {0};
    fa_dq_layout L;
    L.q = c.take(tm * (D + FA2_PAD) * es), L.dout = c.take(tm * (Dv + FA2_PAD) * es);
    L.k = c.take(tn * (D + FA2_PAD) * es), L.v = c.take(tn * (Dv + FA2_PAD) * es);
    L.kv = c.at - L.k;
    if (stages > 1) c.take(L.kv);
    L.rm = c.take(tm * sizeof(float)), L.rl = c.take(tm * sizeof(float)), L.rd = c.take(tm * sizeof(float));
    L.wm = c.take(FA_WARPS * 16 * sizeof(float)), L.wl = c.take(FA_WARPS * 16 * sizeof(float));
    L.dq = 0;
    L.bytes = c.at > fa_up(tm * D * sizeof(float)) ? c.at : fa_up(tm * D * sizeof(float));
    return L;
}

/* The warp's accumulator fragments acc (16 rows from r0, NO 8-wide column tiles below X) of
 * the WR warps of each row group (cg the warp's place) added in warp order into out (rows of
 * X floats) and stored, scaled by sc, to the n rows at dst (X elements a row). The whole block,
 * between barriers. */
template <typename T, int NO, int WR>
__device__ __forceinline__ void fa_reduce_store(float *out, const float (*acc)[4], int X, int r0, int cg, int64_t n,
                                                T *dst, float sc)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int u = 0; u < WR; u++) {
        __syncthreads();
        if (cg == u) {
            FA2_UNROLL
            for (int c = 0; c < NO; c++) {
                if (c >= X / 8) break;
                FA2_UNROLL
                for (int e = 0; e < 4; e++) {
                    float *at = out + (r0 + g + (e / 2) * 8) * X + c * 8 + 2 * t + (e & 1);
                    *at = u ? *at + acc[c][e] : acc[c][e];
                }
            }
        }
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * X; e += blockDim.x) png_store(dst + e, sc * out[e]);
}

/* Both backward kernels ask for one resident block an SM at least (launch bounds): their shared
 * memory keeps few blocks on an SM anyway, and ptxas' default register target spilled a few
 * bytes in some tiles. */

/* The register kernels' warp tile, for TM rows a block (queries in the dq kernel, keys in the
 * dkv kernel), chunks of TN columns (keys, or query rows) and head dims up to DM: WR warps
 * share a row group, a warp owns its 16 rows from r0 and the chunk's KW columns from kb, as NT
 * 8-wide accumulator tiles; NO 8-wide tiles and KD 16-wide steps span DM. a_at and b_at give
 * the lane's ldmatrix address (an element offset) in a staged tile of row stride ld for 16
 * rows from row: a_at for an A operand (rows 0-7 | 8-15) x (cols 0-7 | 8-15), also the
 * transposed B of a row-major (k, n) tile; b_at for the B of A B^T, (rows 0-7 | 8-15) being
 * the two 8-wide n tiles, x (cols 0-7 | 8-15). */
template <int TM, int TN, int DM> struct fa_reg_warp {
    static constexpr int WR = FA_WARPS / (TM / 16), KW = TN / WR, NT = KW / 8, NO = DM / 8, KD = DM / 16;
    static_assert(TM % 16 == 0 && FA_WARPS % (TM / 16) == 0 && KW % 16 == 0, "tile: 16 rows, 16 columns a warp");
    int r0, cg, kb, lj, lr;
    __device__ __forceinline__ fa_reg_warp(void)
    {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        r0 = warp / WR * 16, cg = warp % WR, kb = cg * KW, lj = lane / 8, lr = lane % 8;
    }
    __device__ __forceinline__ int a_at(int row, int ld) const { return (row + (lj & 1) * 8 + lr) * ld + (lj >> 1) * 8; }
    __device__ __forceinline__ int b_at(int row, int ld) const { return (row + (lj >> 1) * 8 + lr) * ld + (lj & 1) * 8; }
};

/* f(u, e, r, c) for each element e of each of NT accumulator fragments u of the lane: the
 * element's row r (0-15) and column c (below 8 NT) in the warp's 16-row strip. */
template <int NT, typename F> __device__ __forceinline__ void fa_frag_each(F f)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    FA2_UNROLL
    for (int u = 0; u < NT; u++)
        FA2_UNROLL
        for (int e = 0; e < 4; e++) f(u, e, g + (e / 2) * 8, u * 8 + 2 * t + (e & 1));
}

/* P and dS = P (dP - rowsum) of the score at (b, h, i, j) from its dot product s and dP's dp,
 * with its row's max m, 1 / sum inv (prob's rules) and rowsum rd; dS is zero where causal or a
 * bool mask dropped the score, both zero where in is false (outside the problem). */
template <typename T>
__device__ __forceinline__ void fa_prob_ds(const pnG_sdpa_args &a, bool in, float s, float dp, int64_t b, int64_t h,
                                           int64_t i, int64_t j, float m, float inv, float rd, float *p, float *ds)
{
    float pv = 0.0f, dv = 0.0f;
    if (in) {
        bool drop;
        const float sc = mask_score<T, float>(a, s, b, h, i, j, &drop);
        pv = prob(a, sc, m, inv);
        dv = drop ? 0.0f : pv * (dp - rd);
    }
    *p = pv, *ds = dv;
}

/* Rows [r0, r0 + n) of the q and dout of (b, h) into sq and sdo (row strides ldk, ldv), rows
 * past Lq zero (fa_stage, ASYNC its cp.async form). The whole block. */
template <typename T, bool ASYNC = false>
__device__ __forceinline__ void fa_stage_q_dout(const pnG_sdpa_args &a, T *sq, T *sdo, int64_t b, int64_t h,
                                                int64_t r0, int64_t n, int ldk, int ldv)
{
    fa_stage<T, ASYNC>(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], r0, n, a.Lq, a.D, ldk);
    fa_stage<T, ASYNC>(sdo, (const T *)a.dout + b * a.dos[0] + h * a.dos[1], a.dos[2], r0, n, a.Lq, a.Dv, ldv);
}

/* Whether query rows [i, i + rows) need key j or later (keys_needed's causal rule, a row that
 * sees no key needing them all): false for no rows. A warp skips the products of keys none of
 * its rows needs, whose P and dS are exactly zero. */
__device__ __forceinline__ bool fa_rows_need(const pnG_sdpa_args &a, int64_t i, int64_t rows, int64_t j)
{
    return rows > 0 && j < keys_needed(a, i, rows);
}

/* dq (B, Hq, Lq, D) and dsc (sdpa_dq_kernel's contract) for head dims up to DM (64, 128, 256),
 * TM query rows a block, chunks of TN keys, the products' operands staged as fa_dq_layout says.
 * A warp owns 16 rows (the row group r0) and the chunk's KW = TN / WR keys from kb, where WR
 * warps share a row group; per chunk, all in registers as mma.cuh's fragments (the forward's
 * scheme): S = Q K^T and dP = dO V^T for its 16 x KW scores, dS = P (dP - rowsum) rounded to
 * T, whose accumulator fragments of two adjacent 8-key tiles are dS's A fragment of a 16-key
 * step, and dQ += dS K into the warp's float accumulator (16 x D). The rows' max and sum of the
 * additive mask (a first pass over the keys, S alone) merge the WR warps' online softmax in
 * shared memory; so do the WR warps' dQ partials at the end, in warp order. Key / value
 * chunks go through fa_chunks: with stages = 2 the next is copied in (cp.async) during this
 * one's products. Under causal a warp skips the products of a chunk none of its rows needs
 * (fa_rows_need). */
template <typename T, int TM, int TN, int DM>
__global__ void __launch_bounds__(FA_WARPS * 32, 1) sdpa_dq_tc_kernel(pnG_sdpa_args a, T *dq, float *dsc, int stages)
{
    using W = fa_reg_warp<TM, TN, DM>;
    constexpr int WR = W::WR, NT = W::NT, NO = W::NO, KD = W::KD;
    PNG_DYNAMIC_SMEM(unsigned char, smem);
    const int D = (int)a.D, Dv = (int)a.Dv, ldk = D + FA2_PAD, ldv = Dv + FA2_PAD;
    const int64_t n = a.B * a.Hq * a.Lq;
    const fa_dq_layout L = fa_dq_layout_of(D, Dv, sizeof(T), TM, TN, stages);
    T *sq = (T *)(smem + L.q), *sdo = (T *)(smem + L.dout);
    float *rm = (float *)(smem + L.rm), *rl = (float *)(smem + L.rl), *rd = (float *)(smem + L.rd);
    float *wm = (float *)(smem + L.wm), *wl = (float *)(smem + L.wl), *sdq = (float *)(smem + L.dq);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const W w;
    const int r0 = w.r0, kb = w.kb;
    /* the lane's ldmatrix addresses: Q and dO as A (rows r0..), K and V as B of S and dP (keys
     * kb..), K as the transposed B of dS K */
    const int qoff = w.a_at(r0, ldk), dooff = w.a_at(r0, ldv);
    const int koff = w.b_at(kb, ldk), voff = w.b_at(kb, ldv), ktoff = w.a_at(kb, ldk);
    const int64_t nqt = (a.Lq + TM - 1) / TM;
    const bool add = a.mask == PNK_SDPA_ADD_MASK;
    const float *lse = (const float *)a.lse, *dlse = (const float *)a.dlse;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        const query_tile<T> qt = query_tile_of<T>(a, tile, TM);
        const int64_t bh = qt.bh, b = qt.b, h = qt.h, i0 = qt.i0, m = qt.m, nk = qt.nk;
        const T *K = qt.K, *V = qt.V;
        const T *O = (const T *)a.o + b * a.os[0] + h * a.os[1];
        __syncthreads();
        fa_stage_q_dout(a, sq, sdo, b, h, i0, TM, ldk, ldv);
        for (int r = threadIdx.x; r < TM; r += blockDim.x)
            rm[r] = add || r >= m ? -INFINITY : lse[bh * a.Lq + i0 + r], rl[r] = add || r >= m ? 0.0f : 1.0f;
        __syncthreads();
        for (int r = warp; r < m; r += FA_WARPS) { /* rowsum(dout * out), less lse's cotangent */
            float part = 0.0f;
            for (int64_t d = lane; d < Dv; d += 32)
                part += png_load(sdo + r * ldv + d) * png_load(O + (i0 + r) * a.os[2] + d);
            part = warp_sum(part);
            if (lane == 0) rd[r] = dlse ? part - dlse[bh * a.Lq + i0 + r] : part;
        }
        if (add) { /* the rows' max and sum: the forward's online softmax over the warp's keys */
            float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};
            fa_chunks(
                (nk + TN - 1) / TN, stages,
                [&](int64_t ch, int buf) {
                    fa_stage<T, true>((T *)(smem + L.k + buf * L.kv), K, a.ks[2], ch * TN, TN, nk, D, ldk);
                },
                [&](int64_t ch, int buf) {
                    const int64_t j0 = ch * TN;
                    const T *sk = (const T *)(smem + L.k + buf * L.kv);
                    float s[NT][4];
                    fa_frag_abt<T, NT, KD>(s, sq + qoff, sk + koff, ldk, D);
                    float cm[2] = {-INFINITY, -INFINITY};
                    fa_frag_each<NT>([&](int u, int e, int r, int c) {
                        const int64_t j = j0 + kb + c;
                        bool drop;
                        const float v =
                            r0 + r < m && j < nk ? mask_score<T, float>(a, s[u][e], b, h, i0 + (r0 + r), j, &drop) : -INFINITY;
                        s[u][e] = v;
                        cm[e / 2] = fa2_max(cm[e / 2], v);
                    });
                    FA2_UNROLL
                    for (int r = 0; r < 2; r++) {
                        cm[r] = fa2_max(cm[r], __shfl_xor_sync(0xffffffffu, cm[r], 1));
                        cm[r] = fa2_max(cm[r], __shfl_xor_sync(0xffffffffu, cm[r], 2));
                        const float mnew = fa2_max(mx[r], cm[r]);
                        /* a row whose scores so far are all -inf has nothing to rescale */
                        sum[r] *= mnew == -INFINITY ? 1.0f : sdpa_exp(mx[r] - mnew);
                        mx[r] = mnew;
                    }
                    fa_frag_each<NT>([&](int u, int e, int, int) {
                        sum[e / 2] += mx[e / 2] == -INFINITY ? 0.0f : sdpa_exp(s[u][e] - mx[e / 2]);
                    });
                });
            FA2_UNROLL
            for (int r = 0; r < 2; r++) {
                sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 1);
                sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 2);
                if (t == 0) wm[warp * 16 + g + 8 * r] = mx[r], wl[warp * 16 + g + 8 * r] = sum[r];
            }
            __syncthreads();
            for (int r = threadIdx.x; r < m; r += blockDim.x) { /* the row group's warps merged */
                const int w0 = r / 16 * WR;
                float M = -INFINITY, S = 0.0f;
                for (int u = 0; u < WR; u++) M = fa2_max(M, wm[(w0 + u) * 16 + r % 16]);
                for (int u = 0; u < WR; u++)
                    S += M == -INFINITY ? 0.0f : wl[(w0 + u) * 16 + r % 16] * sdpa_exp(wm[(w0 + u) * 16 + r % 16] - M);
                rm[r] = M, rl[r] = S;
            }
        }
        __syncthreads();
        for (int r = threadIdx.x; r < m; r += blockDim.x) {
            if (add) rl[r] = 1.0f / rl[r];
            int64_t row = bh * a.Lq + i0 + r;
            dsc[row] = rd[r], dsc[n + row] = rm[r], dsc[2 * n + row] = rl[r];
        }
        __syncthreads();
        /* the lane's rows g and g + 8 of the warp's: max, 1 / sum, rowsum */
        const float lm[2] = {rm[r0 + g], rm[r0 + g + 8]}, li[2] = {rl[r0 + g], rl[r0 + g + 8]},
                    ld[2] = {rd[r0 + g], rd[r0 + g + 8]};
        float acc[NO][4];
        fa_frag_zero<NO>(acc);
        const int64_t wrows = m - r0 < 16 ? m - r0 : 16; /* the warp's rows in the tile */
        fa_chunks(
            (nk + TN - 1) / TN, stages,
            [&](int64_t ch, int buf) {
                fa_stage<T, true>((T *)(smem + L.k + buf * L.kv), K, a.ks[2], ch * TN, TN, nk, D, ldk);
                fa_stage<T, true>((T *)(smem + L.v + buf * L.kv), V, a.vs[2], ch * TN, TN, nk, Dv, ldv);
            },
            [&](int64_t ch, int buf) {
                const int64_t j0 = ch * TN;
                if (!fa_rows_need(a, i0 + r0, wrows, j0 + kb)) return; /* causal: the warp's rows need none */
                const T *sk = (const T *)(smem + L.k + buf * L.kv), *sv = (const T *)(smem + L.v + buf * L.kv);
                /* S = Q K^T and dP = dO V^T for the warp's 16 rows and KW keys; dS = P (dP -
                 * rowsum) into s; dQ += dS K */
                float s[NT][4], dp[NT][4];
                fa_frag_abt<T, NT, KD>(s, sq + qoff, sk + koff, ldk, D);
                fa_frag_abt<T, NT, KD>(dp, sdo + dooff, sv + voff, ldv, Dv);
                fa_frag_each<NT>([&](int u, int e, int r, int c) {
                    const int64_t j = j0 + kb + c;
                    float p;
                    fa_prob_ds<T>(a, r0 + r < m && j < nk, s[u][e], dp[u][e], b, h, i0 + (r0 + r), j, lm[e / 2],
                                  li[e / 2], ld[e / 2], &p, &s[u][e]);
                });
                fa_frag_acc<T, NT, NO>(acc, s, sk + ktoff, ldk, D);
            });
        /* the row group's WR partials added in warp order (over the tiles), then out */
        fa_reduce_store<T, NO, WR>(sdq, acc, D, r0, w.cg, m, dq + (bh * a.Lq + i0) * D, (float)a.scale);
    }
}

/* The staged part of the dkv kernels' shared memory, with tm keys a block and chunks of tn
 * query rows: k and v tiles, then `stages` (1 or 2) buffers of a chunk's q and dout rows (input
 * type, rows padded by FA2_PAD) and its max, 1 / sum and rowsum, buffer s's parts at q + s *
 * chunk, dout + s * chunk, ... (fa_dkv_chunks); taken from c, whose later sections are the
 * kernel's own. */
struct fa_dkv_staged {
    size_t k, v, q, dout, cm, cl, cd, chunk;
};
__host__ __device__ __forceinline__ fa_dkv_staged fa_dkv_staged_of(fa_sections *c, int64_t D, int64_t Dv, size_t es,
                                                                   int64_t tm, int64_t tn, int stages)
{
    fa_dkv_staged S;
    S.k = c->take(tm * (D + FA2_PAD) * es), S.v = c->take(tm * (Dv + FA2_PAD) * es);
    S.q = c->take(tn * (D + FA2_PAD) * es), S.dout = c->take(tn * (Dv + FA2_PAD) * es);
    S.cm = c->take(tn * sizeof(float)), S.cl = c->take(tn * sizeof(float)), S.cd = c->take(tn * sizeof(float));
    S.chunk = c->at - S.q;
    if (stages > 1) c->take(S.chunk);
    return S;
}

/* dkv kernel with tm keys a block and chunks of tn query rows: the staged part (fa_dkv_staged),
 * then S^T and dP^T (float), P^T and dS^T (input type), the dk and dv accumulators (float). */
struct fa_dkv_layout {
    fa_dkv_staged st;
    size_t s, dp, p, ds, dk, dv, bytes;
};
__host__ __device__ __forceinline__ fa_dkv_layout fa_dkv_layout_of(int64_t D, int64_t Dv, size_t es, int64_t tm,
                                                                   int64_t tn, int stages)
{
    fa_sections c = {0};
    fa_dkv_layout L;
    L.st = fa_dkv_staged_of(&c, D, Dv, es, tm, tn, stages);
    L.s = c.take(tm * tn * sizeof(float)), L.dp = c.take(tm * tn * sizeof(float));
    L.p = c.take(tm * (tn + FA2_PAD) * es), L.ds = c.take(tm * (tn + FA2_PAD) * es);
    L.dk = c.take(tm * D * sizeof(float)), L.dv = c.take(tm * Dv * sizeof(float));
    L.bytes = c.at;
    return L;
}

/* A staged query chunk of the dkv kernels: its rows of q and dout (input type, rows padded by
 * FA2_PAD) and their max, 1 / sum and rowsum (zero past Lq). */
template <typename T> struct fa_dkv_chunk {
    const T *q, *dout;
    const float *cm, *cl, *cd;
};

/* The dkv kernels' chunk loop for the key tile from k0 of kv head kh of batch b: chunk ci is the
 * TN query rows from (ci % nq) TN of head kh rep + ci / nq (nq chunks a head, heads in turn),
 * those that see none of the tile's keys under causal left out of the sequence (never staged).
 * Each goes through fa_chunks_of into buffer buf of L (q and dout by cp.async, the statistics
 * from dsc, the dq kernel's), then compute(h, i0, chunk) runs on it. The whole block, with the
 * buffers free. */
template <typename T, int TN, typename Compute>
__device__ __forceinline__ void fa_dkv_chunks(const pnG_sdpa_args &a, const fa_dkv_staged &L, unsigned char *smem,
                                              const float *dsc, int64_t b, int64_t kh, int64_t k0, int stages,
                                              Compute compute)
{
    const int64_t nq = (a.Lq + TN - 1) / TN, rep = a.Hq / a.Hkv, off = a.Lk - a.Lq, nrow = a.B * a.Hq * a.Lq;
    const int ldk = (int)a.D + FA2_PAD, ldv = (int)a.Dv + FA2_PAD;
    auto need = [&](int64_t ci) {
        const int64_t i0 = ci % nq * TN, i1 = a.Lq - i0 < TN ? a.Lq : i0 + TN;
        return !(a.causal && i0 + off >= 0 && i1 - 1 + off < k0);
    };
    auto next = [&](int64_t ci) {
        do ci++;
        while (ci < rep * nq && !need(ci));
        return ci;
    };
    fa_chunks_of(
        need(0) ? 0 : next(0), rep * nq, next, stages,
        [&](int64_t ci, int buf) {
            const int64_t h = kh * rep + ci / nq, i0 = ci % nq * TN, bh = b * a.Hq + h;
            unsigned char *at = smem + buf * L.chunk;
            fa_stage_q_dout<T, true>(a, (T *)(at + L.q), (T *)(at + L.dout), b, h, i0, TN, ldk, ldv);
            float *cm = (float *)(at + L.cm), *cl = (float *)(at + L.cl), *cd = (float *)(at + L.cd);
            for (int r = threadIdx.x; r < TN; r += blockDim.x) {
                const int64_t row = bh * a.Lq + i0 + r;
                const bool in = i0 + r < a.Lq;
                cd[r] = in ? dsc[row] : 0.0f, cm[r] = in ? dsc[nrow + row] : 0.0f;
                cl[r] = in ? dsc[2 * nrow + row] : 0.0f;
            }
        },
        [&](int64_t ci, int buf) {
            const unsigned char *at = smem + buf * L.chunk;
            const fa_dkv_chunk<T> c = {(const T *)(at + L.q), (const T *)(at + L.dout), (const float *)(at + L.cm),
                                       (const float *)(at + L.cl), (const float *)(at + L.cd)};
            compute(kh * rep + ci / nq, ci % nq * TN, c);
        });
}

/* dk (B, Hkv, Lk, D), dv (B, Hkv, Lk, Dv) for head dims above 128 (see the section's comment),
 * TM keys a block, chunks of TN query rows of each head of the group (dsc from the dq kernel),
 * staged as fa_dkv_layout says. The chunks go through fa_dkv_chunks: with stages = 2 the next
 * is copied in (cp.async) during this one's products; causal chunks that see none of the tile
 * are left out. */
template <typename T, int TM, int TN>
__global__ void __launch_bounds__(FA_WARPS * 32, 1) sdpa_dkv_tc_kernel(pnG_sdpa_args a, T *dk, T *dv,
                                                                        const float *dsc, int stages)
{
    static_assert(TN % 16 == 0, "chunk: 16-wide column tiles");
    PNG_DYNAMIC_SMEM(unsigned char, smem);
    const int64_t D = a.D, Dv = a.Dv;
    const int64_t ldk = D + FA2_PAD, ldv = Dv + FA2_PAD, lds = TN + FA2_PAD; /* staged rows' strides */
    const fa_dkv_layout L = fa_dkv_layout_of(D, Dv, sizeof(T), TM, TN, stages);
    T *sk = (T *)(smem + L.st.k), *sv = (T *)(smem + L.st.v), *sp = (T *)(smem + L.p), *sds = (T *)(smem + L.ds);
    float *ss = (float *)(smem + L.s), *sdp = (float *)(smem + L.dp), *sdk = (float *)(smem + L.dk),
          *sdv = (float *)(smem + L.dv);
    const fa_warp_part w = fa_warp_part_of<TM>();
    const int k0w = w.r0;
    const int64_t nkt = (a.Lk + TM - 1) / TM;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hkv * nkt; tile += gridDim.x) {
        int64_t bg = tile / nkt, b = bg / a.Hkv, kh = bg % a.Hkv, k0 = (tile % nkt) * TM;
        int64_t n = a.Lk - k0 < TM ? a.Lk - k0 : TM;
        __syncthreads();
        fa_stage(sk, (const T *)a.k + b * a.ks[0] + kh * a.ks[1], a.ks[2], k0, TM, a.Lk, D, ldk);
        fa_stage(sv, (const T *)a.v + b * a.vs[0] + kh * a.vs[1], a.vs[2], k0, TM, a.Lk, Dv, ldv);
        for (int64_t e = threadIdx.x; e < TM * D; e += blockDim.x) sdk[e] = 0.0f;
        for (int64_t e = threadIdx.x; e < TM * Dv; e += blockDim.x) sdv[e] = 0.0f;
        fa_dkv_chunks<T, TN>(a, L.st, smem, dsc, b, kh, k0, stages, [&](int64_t h, int64_t i0, const fa_dkv_chunk<T> &c) {
            /* S^T and dP^T for the warp's 16 keys: rows of K (V) against rows of Q (dO) */
            fa_mma_rows<T, true>(ss + k0w * TN, TN, sk + k0w * ldk, ldk, c.q, ldk, D / 16, TN / 16, w.cg, w.cstep,
                                 false);
            fa_mma_rows<T, true>(sdp + k0w * TN, TN, sv + k0w * ldv, ldv, c.dout, ldv, Dv / 16, TN / 16, w.cg,
                                 w.cstep, false);
            __syncthreads();
            for (int e = threadIdx.x; e < TM * TN; e += blockDim.x) {
                const int kk = e / TN, ii = e % TN;
                const int64_t i = i0 + ii;
                float p = 0.0f, ds = 0.0f;
                if (kk < n && i < a.Lq) {
                    bool drop;
                    float sc = mask_score<T, float>(a, ss[e], b, h, i, k0 + kk, &drop);
                    p = prob(a, sc, c.cm[ii], c.cl[ii]);
                    ds = drop ? 0.0f : p * (sdp[e] - c.cd[ii]);
                }
                png_store(sp + kk * lds + ii, p);
                png_store(sds + kk * lds + ii, ds);
            }
            __syncthreads();
            fa_mma_rows<T, false>(sdv + k0w * Dv, Dv, sp + k0w * lds, lds, c.dout, ldv, TN / 16, Dv / 16, w.cg,
                                  w.cstep, true);
            fa_mma_rows<T, false>(sdk + k0w * D, D, sds + k0w * lds, lds, c.q, ldk, TN / 16, D / 16, w.cg, w.cstep,
                                  true);
        });
        __syncthreads();
        T *DK = dk + (bg * a.Lk + k0) * D, *DV = dv + (bg * a.Lk + k0) * Dv;
        for (int64_t e = threadIdx.x; e < n * D; e += blockDim.x) png_store(DK + e, (float)a.scale * sdk[e]);
        for (int64_t e = threadIdx.x; e < n * Dv; e += blockDim.x) png_store(DV + e, sdv[e]);
    }
}

/* The register dkv kernel's shared memory with tm keys a block and chunks of tn query rows: the
 * staged part (fa_dkv_staged); the dk, then the dv partials of the row groups' warps are added
 * at the end in the space of the tiles (acc: tm x max(D, Dv) floats from 0). */
struct fa_dkv_reg_layout {
    fa_dkv_staged st;
    size_t acc, bytes;
};
__host__ __device__ __forceinline__ fa_dkv_reg_layout fa_dkv_reg_layout_of(int64_t D, int64_t Dv, size_t es,
                                                                           int64_t tm, int64_t tn, int stages)
{
    fa_sections c = {0};
    fa_dkv_reg_layout L;
    L.st = fa_dkv_staged_of(&c, D, Dv, es, tm, tn, stages);
    L.acc = 0;
    const size_t acc = fa_up(tm * (D > Dv ? D : Dv) * sizeof(float));
    L.bytes = c.at > acc ? c.at : acc;
    return L;
}

/* dk (B, Hkv, Lk, D), dv (B, Hkv, Lk, Dv) for head dims up to DM (64 or 128), TM keys a block,
 * chunks of TN query rows of each head of the group (dsc from the dq kernel), the operands
 * staged as fa_dkv_reg_layout says. sdpa_dq_tc_kernel's scheme with keys for rows: a warp owns
 * 16 keys (r0) and the chunk's KW = TN / WR query rows from kb, where WR warps share a key
 * group; per chunk, in registers: S^T = K Q^T and dP^T = V dO^T (16 keys x KW queries), P^T
 * and dS^T = P^T (dP^T - rowsum) rounded to T (their accumulator fragments of two adjacent
 * 8-query tiles are the A fragment of a 16-query step), dV += P^T dO and dK += dS^T Q into the
 * warp's float accumulators; the WR warps' partials added at the end in warp order. The
 * chunks go through fa_chunks_of (two buffers: the next copied in by cp.async during this
 * one's products), leaving out those whose rows see none of the tile's keys under causal; a
 * warp skips the products of a chunk none of whose rows needs its keys (fa_rows_need). */
template <typename T, int TM, int TN, int DM>
__global__ void __launch_bounds__(FA_WARPS * 32, 1) sdpa_dkv_reg_kernel(pnG_sdpa_args a, T *dk, T *dv,
                                                                         const float *dsc, int stages)
{
    using W = fa_reg_warp<TM, TN, DM>;
    constexpr int WR = W::WR, NT = W::NT, NO = W::NO, KD = W::KD;
    PNG_DYNAMIC_SMEM(unsigned char, smem);
    const int D = (int)a.D, Dv = (int)a.Dv, ldk = D + FA2_PAD, ldv = Dv + FA2_PAD;
    const fa_dkv_reg_layout L = fa_dkv_reg_layout_of(D, Dv, sizeof(T), TM, TN, stages);
    T *sk = (T *)(smem + L.st.k), *sv = (T *)(smem + L.st.v);
    float *sacc = (float *)(smem + L.acc);
    const W w;
    const int r0 = w.r0, kb = w.kb;
    /* the lane's ldmatrix addresses: K and V as A (keys r0..), Q and dO as B of S^T and dP^T
     * (rows kb..), and as the transposed B of dS^T Q and P^T dO */
    const int koff = w.a_at(r0, ldk), voff = w.a_at(r0, ldv), qoff = w.b_at(kb, ldk), dooff = w.b_at(kb, ldv);
    const int qtoff = w.a_at(kb, ldk), dotoff = w.a_at(kb, ldv);
    const int64_t nkt = (a.Lk + TM - 1) / TM;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hkv * nkt; tile += gridDim.x) {
        const int64_t bg = tile / nkt, b = bg / a.Hkv, kh = bg % a.Hkv, k0 = (tile % nkt) * TM;
        const int64_t n = a.Lk - k0 < TM ? a.Lk - k0 : TM;
        __syncthreads();
        fa_stage(sk, (const T *)a.k + b * a.ks[0] + kh * a.ks[1], a.ks[2], k0, TM, a.Lk, D, ldk);
        fa_stage(sv, (const T *)a.v + b * a.vs[0] + kh * a.vs[1], a.vs[2], k0, TM, a.Lk, Dv, ldv);
        float adk[NO][4], adv[NO][4];
        fa_frag_zero<NO>(adk);
        fa_frag_zero<NO>(adv);
        fa_dkv_chunks<T, TN>(a, L.st, smem, dsc, b, kh, k0, stages, [&](int64_t h, int64_t i0, const fa_dkv_chunk<T> &c) {
            const int64_t wrows = a.Lq - i0 - kb < W::KW ? a.Lq - i0 - kb : W::KW; /* the warp's query rows */
            if (r0 >= n || !fa_rows_need(a, i0 + kb, wrows, k0 + r0)) return; /* causal: sees none of its keys */
            /* S^T = K Q^T and dP^T = V dO^T for the warp's 16 keys and KW query rows; P^T into
             * s, dS^T into dp; dV += P^T dO and dK += dS^T Q */
            float s[NT][4], dp[NT][4];
            fa_frag_abt<T, NT, KD>(s, sk + koff, c.q + qoff, ldk, D);
            fa_frag_abt<T, NT, KD>(dp, sv + voff, c.dout + dooff, ldv, Dv);
            fa_frag_each<NT>([&](int u, int e, int r, int col) {
                const int ii = kb + col;
                fa_prob_ds<T>(a, r0 + r < n && i0 + ii < a.Lq, s[u][e], dp[u][e], b, h, i0 + ii, k0 + (r0 + r),
                              c.cm[ii], c.cl[ii], c.cd[ii], &s[u][e], &dp[u][e]);
            });
            fa_frag_acc<T, NT, NO>(adv, s, c.dout + dotoff, ldv, Dv);
            fa_frag_acc<T, NT, NO>(adk, dp, c.q + qtoff, ldk, D);
        });
        fa_reduce_store<T, NO, WR>(sacc, adk, D, r0, w.cg, n, dk + (bg * a.Lk + k0) * D, (float)a.scale);
        fa_reduce_store<T, NO, WR>(sacc, adv, Dv, r0, w.cg, n, dv + (bg * a.Lk + k0) * Dv, 1.0f);
    }
}

/* ───────────────────────────── launchers ───────────────────────────── */

static std::atomic<size_t> smem_cap{0}; /* pnG_sdpa_set_smem_limit; 0: none */

/* The current device's opt-in shared memory per block (the default 48 KiB when it cannot be
 * read), lowered to pnG_sdpa_set_smem_limit's cap (not below 48 KiB). */
static size_t smem_optin(void)
{
    static std::atomic<int> cached[PNG_MAX_DEVICES]; /* by device; 0 until read */
    const int dev = pnG_current_device();
    int v = cached[dev].load(std::memory_order_relaxed);
    if (!v) {
        if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, pnG_cuda_device(dev)) !=
                cudaSuccess ||
            v < SDPA_SMEM) {
            cudaGetLastError();
            v = SDPA_SMEM;
        }
        cached[dev].store(v, std::memory_order_relaxed);
    }
    size_t cap = smem_cap.load(std::memory_order_relaxed);
    if (cap && cap < (size_t)v) return cap > SDPA_SMEM ? cap : SDPA_SMEM;
    return (size_t)v;
}

extern "C" size_t pnG_sdpa_set_smem_limit(size_t bytes)
{
    return smem_cap.exchange(bytes, std::memory_order_relaxed);
}

/* A kernel's working memory in compute-type elements: per_t for each row of the tile, per_ch
 * for each row of the chunk, and fixed. */
struct sdpa_mem {
    int64_t per_t, per_ch, fixed;
};

/* The tiling of a launch over `tiles(t)` tiles: the largest chunk, then the largest tile that
 * fits the default shared memory, else the opt-in maximum; when not even a chunk of one key
 * does, global scratch (chunk 32, tile 1, SDPA_SCRATCH_BLOCKS blocks at most; the caller
 * allocates g->per * *blocks elements into g->scratch). *bytes: the shared memory to launch
 * with (0 on scratch). */
template <typename Tiles>
static sdpa_tiling plan(sdpa_mem m, size_t es, Tiles tiles, size_t *bytes, unsigned *blocks)
{
    const size_t limits[2] = {SDPA_SMEM, smem_optin()};
    for (int ch = SDPA_CHUNK; ch >= 1; ch /= 2)
        for (size_t lim : limits)
            for (int64_t t = SDPA_TILE; t >= 1; t /= 2) {
                *bytes = (size_t)(t * m.per_t + ch * m.per_ch + m.fixed) * es;
                if (*bytes > lim) continue;
                *blocks = png_blocks(tiles(t));
                return sdpa_tiling{t, 0, ch, NULL};
            }
    *bytes = 0;
    *blocks = png_blocks(tiles(1));
    if (*blocks > SDPA_SCRATCH_BLOCKS) *blocks = SDPA_SCRATCH_BLOCKS;
    return sdpa_tiling{1, m.per_t + SDPA_CHUNK * m.per_ch + m.fixed, SDPA_CHUNK, NULL};
}

/* Raises kern's dynamic shared memory limit to bytes when that is above the default, on the
 * current device (the setting is per device: the launchers make the stream's device current
 * first). 0 or -1 with an error. */
template <typename K> static int allow_smem(const char *what, K kern, size_t bytes)
{
    if (bytes <= SDPA_SMEM) return 0;
    cudaError_t e = cudaFuncSetAttribute((const void *)kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    return pn_set_error(PN_ERR_BACKEND, "[cuda] %s: shared memory of %zu bytes refused: %s", what, bytes,
                        cudaGetErrorString(e));
}

/* Launches kern on plan g (from plan()): raises the kernel's dynamic shared memory limit
 * above the default first, or allocates and later frees the global scratch. 0 or -1. */
template <typename K, typename... Args>
static int launch(const char *what, K kern, sdpa_tiling g, size_t bytes, unsigned blocks, size_t es,
                  int stream, Args... args)
{
    size_t scratch = g.per ? (size_t)g.per * blocks * es : 0;
    cudaStream_t cs = png_stream(stream);
    if (!cs || allow_smem(what, kern, bytes)) return -1;
    if (scratch && !(g.scratch = pnG_malloc(scratch, stream))) return -1;
    PNG_LAUNCH(kern, blocks, SDPA_THREADS, bytes, cs, args..., g);
    int rc = pnG_check_launch(what);
    if (scratch) pnG_free(g.scratch, scratch, stream);
    return rc;
}

static int64_t tc_launches; /* pnG_sdpa_tensor_core_count (atomic builtins) */
static int64_t decode_launches; /* pnG_sdpa_decode_count */

extern "C" int64_t pnG_sdpa_decode_count(void)
{
    return __atomic_load_n(&decode_launches, __ATOMIC_RELAXED);
}

extern "C" int64_t pnG_sdpa_tensor_core_count(void)
{
    return __atomic_load_n(&tc_launches, __ATOMIC_RELAXED);
}

/* Whether a tensor-core kernel needing `bytes` of shared memory takes a (dtype T): half types,
 * head dims multiples of 16 up to FA_MAXD, at least 16 query rows (fewer: a decode step,
 * where a 64-row tile would mostly compute padding), the shared memory within the device's,
 * and not turned off with PONTE_SDPA_FAST=0. */
static std::atomic<int> tc_on{-1}; /* -1: PONTE_SDPA_FAST not read yet */

static bool fast_paths_on(void)
{
    int on = tc_on.load(std::memory_order_relaxed);
    if (on < 0) {
        const char *e = getenv("PONTE_SDPA_FAST");
        int want = !(e && e[0] == '0'), unread = -1;
        tc_on.compare_exchange_strong(unread, want, std::memory_order_relaxed);
        on = tc_on.load(std::memory_order_relaxed);
    }
    return on != 0;
}

extern "C" bool pnG_sdpa_set_fast_paths(bool on)
{
    bool was = fast_paths_on();
    tc_on.store(on ? 1 : 0, std::memory_order_relaxed);
    return was;
}

template <typename T> static bool use_tensor_cores(const pnG_sdpa_args *a, size_t bytes)
{
    if (!fast_paths_on() || !fa_half<T>::value || a->D % 16 || a->Dv % 16 || a->D > FA_MAXD || a->Dv > FA_MAXD ||
        a->Lq < 16)
        return false;
    return bytes <= smem_optin();
}

/* The buffers of chunks (2, else 1) for a tensor-core kernel whose shared memory with s of them
 * is bytes_of(s): the most that use_tensor_cores takes, *bytes its shared memory; 0 when not
 * even one buffer is taken. */
template <typename T, typename F> static int fa_stages(const pnG_sdpa_args *a, F bytes_of, size_t *bytes)
{
    for (int s = 2; s >= 1; s--)
        if (use_tensor_cores<T>(a, *bytes = bytes_of(s))) return s;
    return 0;
}

/* Launches a tensor-core kernel of FA_WARPS warps over `tiles` blocks with `bytes` of shared
 * memory, counting it. 0 or -1. */
template <typename K, typename... Args>
static int launch_tc(const char *what, K kern, int64_t tiles, size_t bytes, int stream, Args... args)
{
    cudaStream_t cs = png_stream(stream);
    if (!cs || allow_smem(what, kern, bytes)) return -1;
    PNG_LAUNCH(kern, png_blocks(tiles), FA_WARPS * 32, bytes, cs, args...);
    int rc = pnG_check_launch(what);
    if (rc == 0) __atomic_fetch_add(&tc_launches, 1, __ATOMIC_RELAXED);
    return rc;
}

/* f(std::integral_constant<int, DM>()) for the forward's head-dim bucket DM (64, 128, 256)
 * of a. */
template <typename F> static auto fa2_bucket(const pnG_sdpa_args *a, F f)
{
    const int64_t dm = a->D > a->Dv ? a->D : a->Dv;
    if (dm <= 64) return f(std::integral_constant<int, 64>());
    if (dm <= 128) return f(std::integral_constant<int, 128>());
    return f(std::integral_constant<int, 256>());
}

/* Whether a forward takes sdpa_fwd_tc_kernel: use_tensor_cores with its bucket's shared memory
 * for one buffer of chunks. */
template <typename T> static bool use_fa2(const pnG_sdpa_args *a)
{
    return fa2_bucket(a, [&](auto dm) {
        return use_tensor_cores<T>(a, fa2_layout_of<decltype(dm)::value>(a->D, a->Dv, sizeof(T), 1).bytes);
    });
}

/* Launches sdpa_fwd_tc_kernel for a's bucket, with two buffers of chunks where they fit the
 * device's shared memory. 0 or -1. */
template <typename T> static int launch_fa2(const pnG_sdpa_args *a, void *out, void *lse, int stream)
{
    const int64_t tiles = a->B * a->Hq * ((a->Lq + FA_BM - 1) / FA_BM);
    return fa2_bucket(a, [&](auto dm) {
        constexpr int DM = decltype(dm)::value;
        const int stages = fa2_layout_of<DM>(a->D, a->Dv, sizeof(T), 2).bytes <= smem_optin() ? 2 : 1;
        return launch_tc("sdpa_forward_tc", sdpa_fwd_tc_kernel<T, DM>, tiles,
                         fa2_layout_of<DM>(a->D, a->Dv, sizeof(T), stages).bytes, stream, *a, (T *)out,
                         (float *)lse, stages);
    });
}

/* Whether a forward takes the split-key decoding kernels: fewer than 16 query rows, keys to
 * split (2 * DEC_MIN_KEYS or more), the block's q row and accumulators within the default
 * shared memory. */
static bool use_decode(const pnG_sdpa_args *a, size_t es)
{
    return fast_paths_on() && a->Lq < 16 && a->Lk >= 2 * DEC_MIN_KEYS &&
           (size_t)(a->D + DEC_WARPS * a->Dv + 2 * DEC_WARPS) * es <= SDPA_SMEM;
}

/* The decoding forward: splits of at least DEC_MIN_KEYS keys, enough blocks to fill the
 * device, partials in scratch, then the combine. 0 or -1. */
template <typename T, typename C>
static int launch_decode(const pnG_sdpa_args *a, void *out, void *lse, int stream)
{
    const int64_t rows = a->B * a->Hq * a->Lq;
    int64_t want = pnG_resident_threads() / (DEC_WARPS * 32); /* blocks the device holds at once */
    int64_t splits = (want + rows - 1) / rows, most = (a->Lk + DEC_MIN_KEYS - 1) / DEC_MIN_KEYS;
    if (splits > most) splits = most;
    if (splits < 1) splits = 1;
    const int64_t per = (a->Lk + splits - 1) / splits;
    const size_t part = (size_t)(rows * splits) * sizeof(C), acc = part * (size_t)a->Dv;
    C *scratch = (C *)pnG_malloc(2 * part + acc, stream);
    if (!scratch) return -1;
    C *pm = scratch, *pl = pm + rows * splits, *pacc = pl + rows * splits;
    cudaStream_t st = png_stream(stream);
    size_t bytes = (size_t)(a->D + DEC_WARPS * a->Dv + 2 * DEC_WARPS) * sizeof(C);
    auto k1 = sdpa_decode_kernel<T, C>;
    PNG_LAUNCH(k1, png_blocks(rows * splits), DEC_WARPS * 32, bytes, st, *a, splits, per, pm, pl, pacc);
    int rc = pnG_check_launch("sdpa_decode");
    if (rc == 0) {
        auto k2 = sdpa_decode_combine<T, C>;
        PNG_LAUNCH(k2, png_blocks((rows + 7) / 8), 256, 0, st, *a, splits, (const C *)pm, (const C *)pl,
                   (const C *)pacc, (T *)out, (C *)lse);
        rc = pnG_check_launch("sdpa_decode_combine");
    }
    pnG_free(scratch, 2 * part + acc, stream);
    if (rc == 0) __atomic_fetch_add(&decode_launches, 1, __ATOMIC_RELAXED);
    return rc;
}

/* See attention.h. */
extern "C" int pnG_sdpa_forward(const pnG_sdpa_args *a, void *out, void *lse, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (png_is_float<T>::value) {
            using C = typename png_compute<T>::type;
            rc = 0;
            if (!out) return; /* the check alone */
            if constexpr (fa_half<T>::value) {
                if (use_fa2<T>(a)) {
                    rc = launch_fa2<T>(a, out, lse, stream);
                    return;
                }
            }
            size_t bytes;
            unsigned blocks;
            if (use_decode(a, sizeof(C))) {
                rc = launch_decode<T, C>(a, out, lse, stream);
                return;
            }
            sdpa_mem mem = {a->D + a->Dv + 2, a->D + a->Dv, SDPA_THREADS};
            sdpa_tiling g = plan(mem, sizeof(C), [&](int64_t t) { return a->B * a->Hq * ((a->Lq + t - 1) / t); },
                                 &bytes, &blocks);
            rc = launch("sdpa_forward", sdpa_fwd_kernel<T, C>, g, bytes, blocks, sizeof(C), stream, *a, (T *)out,
                        (C *)lse);
        }
    });
    return rc;
}

/* A tile of the tensor-core backward: tm rows a block (queries for dq, keys for dk / dv) and
 * chunks of tn (keys, queries). */
template <int TM, int TN> struct fa_bwd_tile {
    static constexpr int tm = TM, tn = TN;
};

/* Offers try_tile the dkv kernel's tiles, largest first (the tile height before the chunk: a
 * taller tile reads the other operand fewer times), until it takes one (returns true): the
 * launcher's choice of the largest tile whose shared memory fits. Whether one was taken. */
template <typename F> static bool fa_bwd_pick(F try_tile)
{
    return try_tile(fa_bwd_tile<64, 64>()) || try_tile(fa_bwd_tile<64, 32>()) || try_tile(fa_bwd_tile<32, 64>()) ||
           try_tile(fa_bwd_tile<32, 32>()) || try_tile(fa_bwd_tile<16, 64>()) || try_tile(fa_bwd_tile<16, 32>());
}

/* The same for the dq kernel with head dims up to DM: a warp's 16 rows against 16 keys of a
 * chunk at least, and at 256 dims chunks of 32 keys a warp at most (its registers); up to 64
 * dims the 64 x 64 tile fits the default 48 KiB, at 128 the 32 x 32 tile does. */
template <int DM, typename F> static bool fa_dq_pick(F try_tile)
{
    if constexpr (DM <= 64) return try_tile(fa_bwd_tile<64, 64>());
    else if constexpr (DM <= 128)
        return try_tile(fa_bwd_tile<64, 64>()) || try_tile(fa_bwd_tile<64, 32>()) || try_tile(fa_bwd_tile<32, 32>());
    else return try_tile(fa_bwd_tile<64, 32>()) || try_tile(fa_bwd_tile<32, 32>());
}

/* The same for sdpa_dkv_reg_kernel with head dims up to DM (64 or 128; above, the dkv kernel of
 * fa_bwd_pick): 16 query rows a warp at least, 32 at most at 128 dims (its registers hold the
 * dk and dv accumulators); the 64 x 64 tile at 64 dims and the 32 x 32 tile at 128 fit the
 * default 48 KiB. */
template <int DM, typename F> static bool fa_dkv_pick(F try_tile)
{
    if constexpr (DM <= 64) return try_tile(fa_bwd_tile<64, 64>());
    else return try_tile(fa_bwd_tile<64, 32>()) || try_tile(fa_bwd_tile<32, 32>());
}

/* See attention.h. */
extern "C" int pnG_sdpa_backward(const pnG_sdpa_args *a, void *dq, void *dk, void *dv, void *dscratch,
                                 int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (png_is_float<T>::value) {
            using C = typename png_compute<T>::type;
            rc = 0;
            if (!dq) return; /* the check alone */
            size_t qbytes, kbytes;
            unsigned qblocks, kblocks;
            sdpa_mem qmem = {2 * a->D + a->Dv + 3, a->D + a->Dv, SDPA_THREADS};
            sdpa_mem kmem = {2 * (a->D + a->Dv), a->D + a->Dv + 3, 2 * SDPA_THREADS};
            sdpa_tiling gq = plan(qmem, sizeof(C), [&](int64_t t) { return a->B * a->Hq * ((a->Lq + t - 1) / t); },
                                  &qbytes, &qblocks);
            sdpa_tiling gk = plan(kmem, sizeof(C), [&](int64_t t) { return a->B * a->Hkv * ((a->Lk + t - 1) / t); },
                                  &kbytes, &kblocks);
            /* each kernel on the tensor cores where a tile fits (the dsc contract is shared) */
            bool tc_dq = false, tc_dkv = false;
            if constexpr (fa_half<T>::value) {
                const int64_t D = a->D, Dv = a->Dv;
                auto try_dq = [&](auto dm) {
                    constexpr int DM = decltype(dm)::value;
                    return fa_dq_pick<DM>([&](auto tile) {
                        constexpr int tm = decltype(tile)::tm, tn = decltype(tile)::tn;
                        size_t bytes; /* two buffers of key / value chunks where they fit, else one */
                        const int stages = fa_stages<T>(
                            a, [&](int s) { return fa_dq_layout_of(D, Dv, sizeof(T), tm, tn, s).bytes; }, &bytes);
                        if (!stages) return false;
                        rc = launch_tc("sdpa_dq_tc", sdpa_dq_tc_kernel<T, tm, tn, DM>,
                                       a->B * a->Hq * ((a->Lq + tm - 1) / tm), bytes, stream, *a, (T *)dq,
                                       (float *)dscratch, stages);
                        return true;
                    });
                };
                const int64_t dm = D > Dv ? D : Dv;
                tc_dq = dm <= 64    ? try_dq(std::integral_constant<int, 64>())
                        : dm <= 128 ? try_dq(std::integral_constant<int, 128>())
                                    : try_dq(std::integral_constant<int, 256>());
                if (!tc_dq) rc = launch("sdpa_dq", sdpa_dq_kernel<T, C>, gq, qbytes, qblocks, sizeof(C), stream, *a,
                                        (T *)dq, (C *)dscratch);
                auto try_dkv = [&](auto dm) {
                    constexpr int DM = decltype(dm)::value;
                    return fa_dkv_pick<DM>([&](auto tile) {
                        constexpr int tm = decltype(tile)::tm, tn = decltype(tile)::tn;
                        size_t bytes; /* two buffers of query chunks where they fit, else one */
                        const int stages = fa_stages<T>(
                            a, [&](int s) { return fa_dkv_reg_layout_of(D, Dv, sizeof(T), tm, tn, s).bytes; },
                            &bytes);
                        if (!stages) return false;
                        rc = launch_tc("sdpa_dkv_tc", sdpa_dkv_reg_kernel<T, tm, tn, DM>,
                                       a->B * a->Hkv * ((a->Lk + tm - 1) / tm), bytes, stream, *a, (T *)dk, (T *)dv,
                                       (const float *)dscratch, stages);
                        return true;
                    });
                };
                if (!rc && dm <= 128)
                    tc_dkv = dm <= 64 ? try_dkv(std::integral_constant<int, 64>())
                                      : try_dkv(std::integral_constant<int, 128>());
                else if (!rc)
                    tc_dkv = fa_bwd_pick([&](auto tile) {
                        constexpr int tm = decltype(tile)::tm, tn = decltype(tile)::tn;
                        size_t bytes; /* two buffers of query chunks where they fit, else one */
                        const int stages = fa_stages<T>(
                            a, [&](int s) { return fa_dkv_layout_of(D, Dv, sizeof(T), tm, tn, s).bytes; }, &bytes);
                        if (!stages) return false;
                        rc = launch_tc("sdpa_dkv_tc", sdpa_dkv_tc_kernel<T, tm, tn>,
                                       a->B * a->Hkv * ((a->Lk + tm - 1) / tm), bytes, stream, *a, (T *)dk, (T *)dv,
                                       (const float *)dscratch, stages);
                        return true;
                    });
            } else {
                rc = launch("sdpa_dq", sdpa_dq_kernel<T, C>, gq, qbytes, qblocks, sizeof(C), stream, *a, (T *)dq,
                            (C *)dscratch);
            }
            if (!rc && !tc_dkv)
                rc = launch("sdpa_dkv", sdpa_dkv_kernel<T, C>, gk, kbytes, kblocks, sizeof(C), stream, *a,
                            (T *)dk, (T *)dv, (const C *)dscratch);
        }
    });
    return rc;
}
