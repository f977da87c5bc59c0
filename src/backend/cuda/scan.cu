/* scan.cu — GPU kernels of Scan (cumsum, cumprod, cummax, cummin, logcumsumexp; reverse,
 * inclusive or exclusive) with the CPU kernel's semantics (backend/cpu/reduce.c): values
 * accumulate in the compute type (float for halves, the type itself otherwise, integers
 * wrapping). A line per block with a block-wide scan (warp shuffles, warp totals in shared
 * memory, a carry across chunks), or a line per thread when lines are short or the scanned
 * axis is not the innermost (then consecutive threads read consecutive lines). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/reduce.h"

/* sop<K, T>: the compute type F, init(), comb(a, b) (a holds the earlier elements). */
template <int K, typename T> struct sop_base {
    enum { KIND = K };
    typedef T In;
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F load(const T *p) { return png_load(p); }
    static __device__ __forceinline__ void store(T *p, F v) { png_store(p, v); }
};
template <int K, typename T> struct sop;
template <typename T> struct sop<PNG_RED_SUM, T> : sop_base<PNG_RED_SUM, T> {
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F init() { return png_from_int<F>(0); }
    static __device__ __forceinline__ F comb(F a, F b) { return png_add(a, b); }
};
template <typename T> struct sop<PNG_RED_PROD, T> : sop_base<PNG_RED_PROD, T> {
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F init() { return png_from_int<F>(1); }
    static __device__ __forceinline__ F comb(F a, F b) { return png_mul(a, b); }
};
template <typename T> struct sop<PNG_RED_MAX, T> : sop_base<PNG_RED_MAX, T> {
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F init() { return png_limits<F>::lo(); }
    static __device__ __forceinline__ F comb(F a, F b) { return png_max_nan(a, b); }
};
template <typename T> struct sop<PNG_RED_MIN, T> : sop_base<PNG_RED_MIN, T> {
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F init() { return png_limits<F>::hi(); }
    static __device__ __forceinline__ F comb(F a, F b) { return png_min_nan(a, b); }
};
template <typename T> struct sop<PNG_RED_LOGADDEXP, T> : sop_base<PNG_RED_LOGADDEXP, T> {
    typedef typename png_compute<T>::type F;
    static __device__ __forceinline__ F init() { return png_lae_init<F>(); }
    static __device__ __forceinline__ F comb(F a, F b) { return png_lae(a, b); }
};

#ifdef PONTE_GPU_SIM
#define SCAN_FEW_LINES 4 /* small, so the tests take the segmented path */
#define SCAN_SEGMENT 256
#else
#define SCAN_FEW_LINES 128
#define SCAN_SEGMENT 4096
#endif

/* Launch parameters: line o starts at kept(o) (stride[0] input, stride[1] output). */
struct scan_args {
    pnG_dims kept;
    int64_t outer, n, is, os;
    int64_t segs; /* parts of each line (scan_rows, scan_totals), carried through carries */
    bool reverse, inclusive;
};

/* Inclusive scan of v over the warp. */
template <class Op>
__device__ __forceinline__ typename Op::F warp_scan(typename Op::F v, int lane)
{
    for (int d = 1; d < 32; d <<= 1) {
        typename Op::F t = png_shfl_up(v, d);
        if (lane >= d) v = Op::comb(t, v);
    }
    return v;
}

/* Block-wide inclusive scan of v (warp totals in wsum); returns it and sets *total to the
 * combination of the whole block's values. Every thread of the block must call it. */
template <class Op>
__device__ __forceinline__ typename Op::F block_scan(typename Op::F v, typename Op::F *wsum,
                                                     typename Op::F *before_warp,
                                                     typename Op::F *total)
{
    typedef typename Op::F F;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_scan<Op>(v, lane);
    if (lane == 31) wsum[warp] = v;
    __syncthreads();
    if (warp == 0) {
        F t = lane < nw ? wsum[lane] : Op::init();
        t = warp_scan<Op>(t, lane);
        if (lane < nw) wsum[lane] = t;
    }
    __syncthreads();
    *before_warp = warp > 0 ? wsum[warp - 1] : Op::init();
    *total = wsum[nw - 1];
    __syncthreads();
    return v;
}

/* A line segment per block: chunks of blockDim.x elements, each scanned block-wide and
 * combined with the carry of the chunks before it (starting from carries[w] when given: the
 * combination of the line's earlier segments). Work item w = line * segs + segment. */
template <class Op> __global__ void scan_rows(const typename Op::In *x, typename Op::In *out,
                                              const typename Op::F *carries, scan_args P)
{
    typedef typename Op::F F;
    __shared__ F wsum[32];
    int lane = threadIdx.x & 31;
    for (int64_t w = blockIdx.x; w < P.outer * P.segs; w += gridDim.x) {
        int64_t line = w / P.segs, seg = w % P.segs;
        const typename Op::In *xp = x + png_dims_offset(P.kept, 0, line);
        typename Op::In *op = out + png_dims_offset(P.kept, 1, line);
        F carry = carries ? carries[w] : Op::init();
        int64_t s0 = P.n * seg / P.segs, s1 = P.n * (seg + 1) / P.segs;
        for (int64_t c0 = s0; c0 < s1; c0 += blockDim.x) {
            int64_t s = c0 + threadIdx.x, i = P.reverse ? P.n - 1 - s : s;
            F v = s < s1 ? Op::load(xp + i * P.is) : Op::init(), pre, total;
            v = block_scan<Op>(v, wsum, &pre, &total);
            F before = Op::comb(carry, pre);
            F prev = png_shfl_up(v, 1);
            if (s < s1)
                Op::store(op + i * P.os, P.inclusive ? Op::comb(before, v)
                                         : lane == 0 ? before
                                                     : Op::comb(before, prev));
            carry = Op::comb(carry, total);
        }
    }
}

/* The combination of each segment's elements (work items as scan_rows) into tot[w]. */
template <class Op> __global__ void scan_totals(const typename Op::In *x, typename Op::F *tot,
                                                scan_args P)
{
    typedef typename Op::F F;
    __shared__ F wsum[32];
    for (int64_t w = blockIdx.x; w < P.outer * P.segs; w += gridDim.x) {
        int64_t line = w / P.segs, seg = w % P.segs;
        const typename Op::In *xp = x + png_dims_offset(P.kept, 0, line);
        int64_t s0 = P.n * seg / P.segs, s1 = P.n * (seg + 1) / P.segs;
        F carry = Op::init();
        for (int64_t c0 = s0; c0 < s1; c0 += blockDim.x) {
            int64_t s = c0 + threadIdx.x, i = P.reverse ? P.n - 1 - s : s;
            F v = s < s1 ? Op::load(xp + i * P.is) : Op::init(), pre, total;
            block_scan<Op>(v, wsum, &pre, &total);
            carry = Op::comb(carry, total);
        }
        if (threadIdx.x == 0) tot[w] = carry;
    }
}

/* A line per thread, in order (the CPU's loop). */
template <class Op> __global__ void scan_lines(const typename Op::In *x, typename Op::In *out,
                                               scan_args P)
{
    typedef typename Op::F F;
    for (int64_t line = png_thread_index(); line < P.outer; line += png_grid_stride()) {
        const typename Op::In *xp = x + png_dims_offset(P.kept, 0, line);
        typename Op::In *op = out + png_dims_offset(P.kept, 1, line);
        F acc = Op::init();
        for (int64_t s = 0; s < P.n; s++) {
            int64_t i = P.reverse ? P.n - 1 - s : s;
            F v = Op::load(xp + i * P.is);
            if (P.inclusive) {
                acc = Op::comb(acc, v);
                Op::store(op + i * P.os, acc);
            } else {
                Op::store(op + i * P.os, acc);
                acc = Op::comb(acc, v);
            }
        }
    }
}

template <class Op> static int launch_scan(const void *x, void *out, const scan_args &P, int stream)
{
    typedef typename Op::In T;
    cudaStream_t st = png_stream(stream);
    if (!st) return -1;
    int64_t kmin = INT64_MAX, as = P.is < 0 ? -P.is : P.is;
    for (int d = 0; d < P.kept.ndim; d++) {
        int64_t s = P.kept.stride[0][d] < 0 ? -P.kept.stride[0][d] : P.kept.stride[0][d];
        if (s < kmin) kmin = s;
    }
    if (P.n <= 32 || (kmin < as && P.outer >= 4096)) {
        auto k = scan_lines<Op>;
        PNG_LAUNCH(k, png_blocks_for(P.outer, 256), 256, 0, st, (const T *)x, (T *)out, P);
        return pnG_check_launch("scan_lines");
    }
    int threads = P.n >= 256 ? 256 : P.n > 64 ? 128 : 64;
    if (P.outer < SCAN_FEW_LINES && P.n >= 2 * SCAN_SEGMENT) {
        /* Few long lines: segment totals, their exclusive scan, then the segments rescanned
         * from those carries. */
        typedef typename Op::F F;
        scan_args Q = P;
        Q.segs = P.n / SCAN_SEGMENT < 1024 ? P.n / SCAN_SEGMENT : 1024;
        size_t bytes = (size_t)(P.outer * Q.segs) * sizeof(F);
        F *tot = (F *)pnG_malloc(bytes, stream);
        if (!tot) return -1;
        auto kt = scan_totals<Op>;
        PNG_LAUNCH(kt, png_blocks(P.outer * Q.segs), 256, 0, st, (const T *)x, tot, Q);
        int rc = pnG_check_launch("scan_totals");
        if (rc == 0) {
            scan_args C = P; /* exclusive scan of the totals, in place, a line per thread */
            C.kept.ndim = 1;
            C.kept.shape[0] = P.outer;
            C.kept.stride[0][0] = C.kept.stride[1][0] = Q.segs;
            C.n = Q.segs;
            C.is = C.os = 1;
            C.segs = 1;
            C.reverse = false;
            C.inclusive = false;
            auto kc = scan_lines<sop<Op::KIND, F> >;
            PNG_LAUNCH(kc, png_blocks_for(P.outer, 256), 256, 0, st, (const F *)tot, tot, C);
            rc = pnG_check_launch("scan_lines");
        }
        if (rc == 0) {
            auto k = scan_rows<Op>;
            PNG_LAUNCH(k, png_blocks(P.outer * Q.segs), 256, 0, st, (const T *)x, (T *)out,
                       (const F *)tot, Q);
            rc = pnG_check_launch("scan_rows");
        }
        pnG_free(tot, bytes, stream);
        return rc;
    }
    auto k = scan_rows<Op>;
    PNG_LAUNCH(k, png_blocks(P.outer), threads, 0, st, (const T *)x, (T *)out,
               (const typename Op::F *)NULL, P);
    return pnG_check_launch("scan_rows");
}

template <int K, typename T, bool OK> struct scan_kind {
    static int run(const void *, void *, const scan_args &, int) { return PNG_UNSUPPORTED; }
};
template <int K, typename T> struct scan_kind<K, T, true> {
    static int run(const void *x, void *o, const scan_args &P, int s)
    {
        return launch_scan<sop<K, T> >(x, o, P, s);
    }
};

/* See reduce.h. */
extern "C" int pnG_scan(int op, pn_dtype dtype, const pnG_dims *kept, int64_t outer, int64_t n,
                        int64_t in_stride, int64_t out_stride, bool reverse, bool inclusive,
                        const void *x, void *out, int stream)
{
    if (outer == 0 || n == 0) return 0;
    scan_args P;
    P.kept = *kept;
    P.outer = outer;
    P.n = n;
    P.is = in_stride;
    P.os = out_stride;
    P.segs = 1;
    P.reverse = reverse;
    P.inclusive = inclusive;
    int rc = PNG_UNSUPPORTED;
    png_dispatch(dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        switch (op) {
        case PNG_RED_SUM: rc = scan_kind<PNG_RED_SUM, T, true>::run(x, out, P, stream); break;
        case PNG_RED_PROD: rc = scan_kind<PNG_RED_PROD, T, true>::run(x, out, P, stream); break;
        case PNG_RED_MAX: rc = scan_kind<PNG_RED_MAX, T, true>::run(x, out, P, stream); break;
        case PNG_RED_MIN: rc = scan_kind<PNG_RED_MIN, T, true>::run(x, out, P, stream); break;
        case PNG_RED_LOGADDEXP:
            rc = scan_kind<PNG_RED_LOGADDEXP, T, png_has_lae<T>::value>::run(x, out, P, stream);
            break;
        default: break;
        }
    });
    return rc;
}
