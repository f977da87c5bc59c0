/* attention.cu — fused scaled dot-product attention on the GPU, in the compute type (float for
 * the halves). Forward: a block per (batch, head, tile of TQ query rows) walks the keys in
 * chunks of 32 staged in shared memory; a warp owns a row, its lanes one key each for the
 * scores, then one output dim each for the online-softmax update of the row's accumulator.
 * Backward: sdpa_dq_kernel (a block per query tile: dq and the rows' rowsum(dout * out)) and
 * sdpa_dkv_kernel (a block per (batch, kv head, key tile): dk and dv over the group's heads),
 * both recomputing P from the saved logsumexp, so no atomics. No tensor cores. */
#include "backend/attention_params.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/reduce.h"

#include <math.h>

#define SDPA_WARPS 4
#define SDPA_THREADS (32 * SDPA_WARPS)
#define SDPA_CHUNK 32                /* keys (forward, dq) or queries (dk/dv) per staged chunk */
#define SDPA_SMEM (48 * 1024)        /* the default per-block limit */
#define SDPA_TILE 16                 /* query rows (forward, dq) or keys (dk/dv) per block, at most */

__device__ __forceinline__ float sdpa_exp(float x) { return expf(x); }
__device__ __forceinline__ double sdpa_exp(double x) { return exp(x); }
__device__ __forceinline__ float sdpa_log(float x) { return logf(x); }
__device__ __forceinline__ double sdpa_log(double x) { return log(x); }

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

/* The chunk of keys from j0 (of nk) and their values into sk, sv, between barriers. */
template <typename T, typename C>
__device__ void stage_keys(const pnG_sdpa_args &a, C *sk, C *sv, const T *K, const T *V, int64_t j0, int64_t nk)
{
    __syncthreads();
    stage(sk, K, a.ks[2], j0, SDPA_CHUNK, nk, a.D);
    stage(sv, V, a.vs[2], j0, SDPA_CHUNK, nk, a.Dv);
    __syncthreads();
}

/* The masked score of query row qr against key row kr (both staged) at (b, h, i, j); *drop
 * tells whether causal or a bool mask put fill there. */
template <typename T, typename C>
__device__ __forceinline__ C score(const pnG_sdpa_args &a, const C *qr, const C *kr, int64_t b, int64_t h,
                                   int64_t i, int64_t j, bool *drop)
{
    C s = 0;
    for (int64_t d = 0; d < a.D; d++) s += qr[d] * kr[d];
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

/* P of a score: exp(s - lse), or 1 / Lk in a row that causal or a bool mask dropped whole (its
 * scores all equal fill; lse cannot carry fill + log(Lk) exactly). */
template <typename C>
__device__ __forceinline__ C prob(const pnG_sdpa_args &a, C s, C lse)
{
    bool whole = (a.causal || a.mask == PNK_SDPA_BOOL_MASK) && lse < (C)(0.5 * a.fill);
    return whole ? (C)1 / (C)a.Lk : sdpa_exp(s - lse);
}

/* ───────────────────────────── forward ───────────────────────────── */

/* out (B, Hq, Lq, Dv), lse (B, Hq, Lq). Shared memory: q tile (tq x D), accumulators
 * (tq x Dv), key and value chunks, the warps' probabilities, row max and sum. */
template <typename T, typename C>
__global__ void sdpa_fwd_kernel(pnG_sdpa_args a, T *out, C *lse, int64_t tq)
{
    PNG_DYNAMIC_SMEM(C, sm);
    C *sq = sm, *acc = sq + tq * a.D, *sk = acc + tq * a.Dv, *sv = sk + SDPA_CHUNK * a.D;
    C *sp = sv + SDPA_CHUNK * a.Dv, *rm = sp + SDPA_THREADS, *rl = rm + tq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nqt = (a.Lq + tq - 1) / tq, rep = a.Hq / a.Hkv;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        int64_t bh = tile / nqt, b = bh / a.Hq, h = bh % a.Hq, g = h / rep, i0 = (tile % nqt) * tq;
        int64_t m = a.Lq - i0 < tq ? a.Lq - i0 : tq, nk = keys_needed(a, i0, m);
        const T *K = (const T *)a.k + b * a.ks[0] + g * a.ks[1], *V = (const T *)a.v + b * a.vs[0] + g * a.vs[1];
        __syncthreads();
        stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, m, a.Lq, a.D);
        for (int64_t e = threadIdx.x; e < tq * a.Dv; e += blockDim.x) acc[e] = 0;
        for (int64_t r = threadIdx.x; r < tq; r += blockDim.x) rm[r] = -INFINITY, rl[r] = 0;
        for (int64_t j0 = 0; j0 < nk; j0 += SDPA_CHUNK) {
            stage_keys(a, sk, sv, K, V, j0, nk);
            for (int64_t r = warp; r < m; r += SDPA_WARPS) {
                int64_t j = j0 + lane;
                bool drop;
                C s = j < nk ? score<T, C>(a, sq + r * a.D, sk + lane * a.D, b, h, i0 + r, j, &drop) : (C)-INFINITY;
                C mold = rm[r], cm = warp_max(s), mnew = (cm > mold || cm != cm) ? cm : mold;
                /* a row whose scores so far are all -inf has nothing to rescale */
                C p = j < nk && mnew != -INFINITY ? sdpa_exp(s - mnew) : (C)0;
                C alpha = mnew == -INFINITY ? (C)1 : sdpa_exp(mold - mnew);
                C sum = warp_sum(p);
                sp[threadIdx.x] = p;
                __syncwarp();
                for (int64_t d = lane; d < a.Dv; d += 32) {
                    C o = acc[r * a.Dv + d] * alpha;
                    for (int jj = 0; jj < SDPA_CHUNK; jj++) o += sp[warp * 32 + jj] * sv[jj * a.Dv + d];
                    acc[r * a.Dv + d] = o;
                }
                __syncwarp();
                if (lane == 0) rl[r] = rl[r] * alpha + sum, rm[r] = mnew;
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

/* ───────────────────────────── backward ───────────────────────────── */

/* dq (B, Hq, Lq, D) and dsc (B, Hq, Lq) = rowsum(dout * out). Shared memory: q, dout and dq
 * tiles, key and value chunks, the warps' dS, the rows' lse and rowsum. */
template <typename T, typename C>
__global__ void sdpa_dq_kernel(pnG_sdpa_args a, T *dq, C *dsc, int64_t tq)
{
    PNG_DYNAMIC_SMEM(C, sm);
    C *sq = sm, *sdo = sq + tq * a.D, *sdq = sdo + tq * a.Dv, *sk = sdq + tq * a.D;
    C *sv = sk + SDPA_CHUNK * a.D, *sp = sv + SDPA_CHUNK * a.Dv, *rl = sp + SDPA_THREADS, *rd = rl + tq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nqt = (a.Lq + tq - 1) / tq, rep = a.Hq / a.Hkv;
    const C *lse = (const C *)a.lse;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hq * nqt; tile += gridDim.x) {
        int64_t bh = tile / nqt, b = bh / a.Hq, h = bh % a.Hq, g = h / rep, i0 = (tile % nqt) * tq;
        int64_t m = a.Lq - i0 < tq ? a.Lq - i0 : tq, nk = keys_needed(a, i0, m);
        const T *K = (const T *)a.k + b * a.ks[0] + g * a.ks[1], *V = (const T *)a.v + b * a.vs[0] + g * a.vs[1];
        const T *O = (const T *)a.o + b * a.os[0] + h * a.os[1];
        __syncthreads();
        stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, m, a.Lq, a.D);
        stage(sdo, (const T *)a.dout + b * a.dos[0] + h * a.dos[1], a.dos[2], i0, m, a.Lq, a.Dv);
        for (int64_t e = threadIdx.x; e < tq * a.D; e += blockDim.x) sdq[e] = 0;
        __syncthreads();
        for (int64_t r = warp; r < m; r += SDPA_WARPS) {
            C part = 0;
            for (int64_t d = lane; d < a.Dv; d += 32) part += sdo[r * a.Dv + d] * (C)png_load(O + (i0 + r) * a.os[2] + d);
            part = warp_sum(part);
            if (lane == 0) rd[r] = part, rl[r] = lse[bh * a.Lq + i0 + r], dsc[bh * a.Lq + i0 + r] = part;
        }
        for (int64_t j0 = 0; j0 < nk; j0 += SDPA_CHUNK) {
            stage_keys(a, sk, sv, K, V, j0, nk);
            for (int64_t r = warp; r < m; r += SDPA_WARPS) {
                int64_t j = j0 + lane;
                C ds = 0;
                if (j < nk) {
                    bool drop;
                    C s = score<T, C>(a, sq + r * a.D, sk + lane * a.D, b, h, i0 + r, j, &drop), dp = 0;
                    for (int64_t d = 0; d < a.Dv; d++) dp += sdo[r * a.Dv + d] * sv[lane * a.Dv + d];
                    ds = drop ? (C)0 : prob(a, s, rl[r]) * (dp - rd[r]);
                }
                sp[threadIdx.x] = ds;
                __syncwarp();
                for (int64_t d = lane; d < a.D; d += 32) {
                    C o = 0;
                    for (int jj = 0; jj < SDPA_CHUNK; jj++) o += sp[warp * 32 + jj] * sk[jj * a.D + d];
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

/* dk (B, Hkv, Lk, D), dv (B, Hkv, Lk, Dv) for a tile of tk keys, over the query heads of the
 * group in chunks of 32 rows (dsc from sdpa_dq_kernel). Shared memory: k, v, dk, dv tiles, q
 * and dout chunks, the warps' P and dS, the chunk's lse and rowsum. */
template <typename T, typename C>
__global__ void sdpa_dkv_kernel(pnG_sdpa_args a, T *dk, T *dv, const C *dsc, int64_t tk)
{
    PNG_DYNAMIC_SMEM(C, sm);
    C *sk = sm, *sv = sk + tk * a.D, *sdk = sv + tk * a.Dv, *sdv = sdk + tk * a.D;
    C *sq = sdv + tk * a.Dv, *sdo = sq + SDPA_CHUNK * a.D, *sp = sdo + SDPA_CHUNK * a.Dv;
    C *sds = sp + SDPA_THREADS, *cl = sds + SDPA_THREADS, *cd = cl + SDPA_CHUNK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t nkt = (a.Lk + tk - 1) / tk, rep = a.Hq / a.Hkv, off = a.Lk - a.Lq;
    const C *lse = (const C *)a.lse;
    for (int64_t tile = blockIdx.x; tile < a.B * a.Hkv * nkt; tile += gridDim.x) {
        int64_t bg = tile / nkt, b = bg / a.Hkv, g = bg % a.Hkv, k0 = (tile % nkt) * tk;
        int64_t n = a.Lk - k0 < tk ? a.Lk - k0 : tk;
        __syncthreads();
        stage(sk, (const T *)a.k + b * a.ks[0] + g * a.ks[1], a.ks[2], k0, n, a.Lk, a.D);
        stage(sv, (const T *)a.v + b * a.vs[0] + g * a.vs[1], a.vs[2], k0, n, a.Lk, a.Dv);
        for (int64_t e = threadIdx.x; e < tk * a.D; e += blockDim.x) sdk[e] = 0;
        for (int64_t e = threadIdx.x; e < tk * a.Dv; e += blockDim.x) sdv[e] = 0;
        for (int64_t h = g * rep; h < (g + 1) * rep; h++)
            for (int64_t i0 = 0; i0 < a.Lq; i0 += SDPA_CHUNK) {
                int64_t i1 = a.Lq - i0 < SDPA_CHUNK ? a.Lq : i0 + SDPA_CHUNK;
                if (a.causal && i0 + off >= 0 && i1 - 1 + off < k0) continue; /* sees none of the tile */
                int64_t bh = b * a.Hq + h;
                __syncthreads();
                stage(sq, (const T *)a.q + b * a.qs[0] + h * a.qs[1], a.qs[2], i0, SDPA_CHUNK, a.Lq, a.D);
                stage(sdo, (const T *)a.dout + b * a.dos[0] + h * a.dos[1], a.dos[2], i0, SDPA_CHUNK, a.Lq, a.Dv);
                for (int64_t r = threadIdx.x; r < SDPA_CHUNK; r += blockDim.x) {
                    cl[r] = i0 + r < a.Lq ? lse[bh * a.Lq + i0 + r] : (C)0;
                    cd[r] = i0 + r < a.Lq ? dsc[bh * a.Lq + i0 + r] : (C)0;
                }
                __syncthreads();
                for (int64_t kk = warp; kk < n; kk += SDPA_WARPS) {
                    int64_t i = i0 + lane;
                    C p = 0, ds = 0;
                    if (i < a.Lq) {
                        bool drop;
                        C s = score<T, C>(a, sq + lane * a.D, sk + kk * a.D, b, h, i, k0 + kk, &drop), dp = 0;
                        for (int64_t d = 0; d < a.Dv; d++) dp += sdo[lane * a.Dv + d] * sv[kk * a.Dv + d];
                        p = prob(a, s, cl[lane]);
                        ds = drop ? (C)0 : p * (dp - cd[lane]);
                    }
                    sp[threadIdx.x] = p, sds[threadIdx.x] = ds;
                    __syncwarp();
                    for (int64_t d = lane; d < a.D; d += 32) {
                        C o = 0;
                        for (int ii = 0; ii < SDPA_CHUNK; ii++) o += sds[warp * 32 + ii] * sq[ii * a.D + d];
                        sdk[kk * a.D + d] += (C)a.scale * o;
                    }
                    for (int64_t d = lane; d < a.Dv; d += 32) {
                        C o = 0;
                        for (int ii = 0; ii < SDPA_CHUNK; ii++) o += sp[warp * 32 + ii] * sdo[ii * a.Dv + d];
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

/* ───────────────────────────── launchers ───────────────────────────── */

/* The largest tile (at most SDPA_TILE) whose shared memory, per_tile elements per row plus
 * fixed ones, fits; 0 when none does. *bytes gets its size. */
static int64_t pick_tile(int64_t per_tile, int64_t fixed, size_t es, size_t *bytes)
{
    for (int64_t t = SDPA_TILE; t >= 1; t /= 2) {
        *bytes = (size_t)(t * per_tile + fixed) * es;
        if (*bytes <= SDPA_SMEM) return t;
    }
    return 0;
}

/* See attention.h. */
extern "C" int pnG_sdpa_forward(const pnG_sdpa_args *a, void *out, void *lse, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (png_is_float<T>::value) {
            using C = typename png_compute<T>::type;
            size_t smem;
            int64_t tq = pick_tile(a->D + a->Dv + 2, SDPA_CHUNK * (a->D + a->Dv) + SDPA_THREADS, sizeof(C), &smem);
            if (!tq) return;
            rc = 0;
            if (!out) return; /* the check alone */
            auto kern = sdpa_fwd_kernel<T, C>;
            int64_t tiles = a->B * a->Hq * ((a->Lq + tq - 1) / tq);
            PNG_LAUNCH(kern, png_blocks(tiles), SDPA_THREADS, smem, png_stream(stream), *a, (T *)out, (C *)lse, tq);
            rc = pnG_check_launch("sdpa_forward");
        }
    });
    return rc;
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
            size_t sq_bytes, sk_bytes;
            int64_t fixed = SDPA_CHUNK * (a->D + a->Dv);
            int64_t tq = pick_tile(2 * a->D + a->Dv + 2, fixed + SDPA_THREADS, sizeof(C), &sq_bytes);
            int64_t tk = pick_tile(2 * (a->D + a->Dv), fixed + 2 * SDPA_THREADS + 2 * SDPA_CHUNK, sizeof(C), &sk_bytes);
            if (!tq || !tk) return;
            rc = 0;
            if (!dq) return; /* the check alone */
            auto kq = sdpa_dq_kernel<T, C>;
            auto kkv = sdpa_dkv_kernel<T, C>;
            PNG_LAUNCH(kq, png_blocks(a->B * a->Hq * ((a->Lq + tq - 1) / tq)), SDPA_THREADS, sq_bytes,
                       png_stream(stream), *a, (T *)dq, (C *)dscratch, tq);
            rc = pnG_check_launch("sdpa_dq");
            if (rc) return;
            PNG_LAUNCH(kkv, png_blocks(a->B * a->Hkv * ((a->Lk + tk - 1) / tk)), SDPA_THREADS, sk_bytes,
                       png_stream(stream), *a, (T *)dk, (T *)dv, (const C *)dscratch, tk);
            rc = pnG_check_launch("sdpa_dkv");
        }
    });
    return rc;
}
