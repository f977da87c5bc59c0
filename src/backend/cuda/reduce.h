/* reduce.h — launchers of the GPU reduction family (reduce.cu, scan.cu), called by the C glue
 * in reduce.c and scan.c: Reduce, ArgReduce and LogSumExp (one planned reduction over kept x
 * reduced dims), Softmax (rows) and Scan. Plain C, readable from nvcc and the simulator. */
#ifndef PONTE_BACKEND_CUDA_REDUCE_H
#define PONTE_BACKEND_CUDA_REDUCE_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The kinds of a planned reduction. 0..5 are the values of pnK_reduce_op (sum, prod, max,
 * min, all, any; reduce.c checks they agree); then logsumexp and the two arg reductions. */
enum {
    PNG_RED_SUM = 0,
    PNG_RED_PROD,
    PNG_RED_MAX,
    PNG_RED_MIN,
    PNG_RED_AND,
    PNG_RED_OR,
    PNG_RED_LSE,
    PNG_RED_ARGMAX,
    PNG_RED_ARGMIN,
    PNG_RED_LOGADDEXP = 6 /* scans: pnK's PNK_LOGADDEXP */
};

/* Extents and element strides of up to PNG_MAX_NDIM merged dims (row-major: dim ndim-1
 * fastest) for two operands; ndim == 0 is one element. */
typedef struct pnG_dims {
    int ndim;
    int64_t shape[PNG_MAX_NDIM];
    int64_t stride[2][PNG_MAX_NDIM];
} pnG_dims;

/* Merges n dims (extents shape, element strides s0 and s1; s1 may be NULL) into D: extent-1
 * dims drop, neighbours contiguous for both operands merge. Returns 0, or PNG_UNSUPPORTED
 * when more than PNG_MAX_NDIM dims remain (reduce.c). */
int pnG_merge_dims(pnG_dims *D, int n, const int64_t *shape, const int64_t *s0,
                   const int64_t *s1);

/* A reduction: out[o] = reduce over r < n of x[kept(o) + red(r)], o < outer, where kept(o)
 * is the input offset (stride[0]) of kept index o (row-major over kept's dims) and red(r) that
 * of reduced index r; the output is dense. Sums are multiplied by scale (1: none). */
typedef struct pnG_reduce_plan {
    int kind;       /* PNG_RED_* */
    pn_dtype dtype; /* input dtype */
    int64_t outer, n;
    pnG_dims kept, red;
    double scale;
} pnG_reduce_plan;

/* Runs plan P over device input x (NULL when empty) into device output out (dtype as the
 * CPU kernel: sum dtype for sum/prod, bool for all/any, uint32 for arg reductions, else
 * dtype). Returns 0, -1 with an error, or PNG_UNSUPPORTED for a dtype it lacks. */
int pnG_reduce(const pnG_reduce_plan *P, const void *x, void *out, int stream);

/* Softmax of each of outer rows of n elements: the row o starts at input offset kept(o)
 * (stride[0]), element r at red(r) (stride[0]); the output is dense (outer, n), same
 * dtype (a float type). Returns 0, -1 with an error, or PNG_UNSUPPORTED. */
int pnG_softmax(pn_dtype dtype, const pnG_dims *kept, const pnG_dims *red, int64_t outer,
                int64_t n, const void *x, void *out, int stream);

/* Scan with op (PNG_RED_SUM/PROD/MAX/MIN/LOGADDEXP) along one axis of n elements, at
 * element strides in_stride (input) and out_stride (output); kept gives the start offsets of
 * the outer lines (stride[0] input, stride[1] output). Same dtype in and out. Returns 0, -1
 * with an error, or PNG_UNSUPPORTED. */
int pnG_scan(int op, pn_dtype dtype, const pnG_dims *kept, int64_t outer, int64_t n,
             int64_t in_stride, int64_t out_stride, bool reverse, bool inclusive, const void *x,
             void *out, int stream);

/* The vjp of a max / min reduction: for each kept index o (row-major over K; K's operand
 * strides: 0 x, 1 the dense output g, 2 the reduction's result m, 3 the cotangent c) and each
 * of the n reduced indices r (R: stride[0] x, stride[1] g), g = x == m ? c / ties : 0, ties
 * counted over the window, the quotient rounded to the float dtype. Returns 0, -1 with an
 * error, or PNG_UNSUPPORTED (not a float dtype). */
int pnG_extreme_vjp(pn_dtype dtype, const pnG_layout *K, const pnG_dims *R, int64_t n,
                    const void *x, const void *m, const void *c, void *g, int stream);

#ifdef __cplusplus
}
#endif

/* ───────── device helpers shared by reduce.cu and scan.cu (C++, after common.cuh) ───────── */
#if defined(__cplusplus) && defined(PONTE_BACKEND_CUDA_COMMON_CUH)

/* Input offset (stride[op]) of row-major index i over D; the outermost dim needs no modulo,
 * so one dim costs no division. */
__device__ __forceinline__ int64_t png_dims_offset(const pnG_dims &D, int op, int64_t i)
{
    int64_t off = 0;
    for (int d = D.ndim - 1; d > 0; d--) {
        int64_t ext = D.shape[d];
        off += (i % ext) * D.stride[op][d];
        i /= ext;
    }
    return D.ndim > 0 ? off + i * D.stride[op][0] : 0;
}

/* Arithmetic with the CPU kernels' results: integers wrap (computed unsigned, no undefined
 * overflow), bool sums / products are or / and, complex products png_cmul (the CPU's
 * pnK_cmul, Annex G's infinities included). */
template <typename A> __device__ __forceinline__ A png_add(A a, A b) { return (A)(a + b); }
template <typename A> __device__ __forceinline__ A png_mul(A a, A b) { return (A)(a * b); }
__device__ __forceinline__ bool png_add(bool a, bool b) { return a || b; }
__device__ __forceinline__ bool png_mul(bool a, bool b) { return a && b; }
__device__ __forceinline__ int32_t png_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}
__device__ __forceinline__ int32_t png_mul(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a * (uint32_t)b);
}
__device__ __forceinline__ int64_t png_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}
__device__ __forceinline__ int64_t png_mul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}
__device__ __forceinline__ uint16_t png_mul(uint16_t a, uint16_t b)
{
    return (uint16_t)((uint32_t)a * (uint32_t)b);
}
__device__ __forceinline__ png_c64 png_add(png_c64 a, png_c64 b)
{
    png_c64 r = {a.re + b.re, a.im + b.im};
    return r;
}
__device__ __forceinline__ png_c64 png_mul(png_c64 a, png_c64 b) { return png_cmul(a, b); }

/* a > b (complex: lexicographic, as the CPU), NaN tests, != 0 tests. */
template <typename A> __device__ __forceinline__ bool png_gt(A a, A b) { return a > b; }
__device__ __forceinline__ bool png_gt(png_c64 a, png_c64 b)
{
    return a.re > b.re || (a.re == b.re && a.im > b.im);
}
template <typename A> __device__ __forceinline__ bool png_isnan(A) { return false; }
__device__ __forceinline__ bool png_isnan(float v) { return v != v; }
__device__ __forceinline__ bool png_isnan(double v) { return v != v; }
__device__ __forceinline__ bool png_isnan(png_c64 v) { return v.re != v.re || v.im != v.im; }
template <typename A> __device__ __forceinline__ bool png_nonzero(A v) { return v != 0; }
__device__ __forceinline__ bool png_nonzero(png_c64 v) { return v.re != 0 || v.im != 0; }

/* Max / min letting NaN win (the CPU's C_MAX / C_MIN with a the running value). */
template <typename A> __device__ __forceinline__ A png_max_nan(A a, A v)
{
    return (png_gt(v, a) || png_isnan(v)) ? v : a;
}
template <typename A> __device__ __forceinline__ A png_min_nan(A a, A v)
{
    return (png_gt(a, v) || png_isnan(v)) ? v : a;
}

/* The identities of max and min in compute type A (the CPU's LO / HI). */
template <typename A> struct png_limits;
#define PNG_LIMITS(A, LO, HI)                                                                  \
    template <> struct png_limits<A> {                                                         \
        static __device__ __forceinline__ A lo() { return (A)(LO); }                            \
        static __device__ __forceinline__ A hi() { return (A)(HI); }                            \
    };
PNG_LIMITS(bool, false, true)
PNG_LIMITS(uint8_t, 0, UINT8_MAX)
PNG_LIMITS(uint16_t, 0, UINT16_MAX)
PNG_LIMITS(uint32_t, 0, UINT32_MAX)
PNG_LIMITS(uint64_t, 0, UINT64_MAX)
PNG_LIMITS(int8_t, INT8_MIN, INT8_MAX)
PNG_LIMITS(int16_t, INT16_MIN, INT16_MAX)
PNG_LIMITS(int32_t, INT32_MIN, INT32_MAX)
PNG_LIMITS(int64_t, INT64_MIN, INT64_MAX)
PNG_LIMITS(float, -INFINITY, INFINITY)
PNG_LIMITS(double, -INFINITY, INFINITY)
#undef PNG_LIMITS
template <> struct png_limits<png_c64> {
    static __device__ __forceinline__ png_c64 lo()
    {
        png_c64 r = {-INFINITY, 0.0f};
        return r;
    }
    static __device__ __forceinline__ png_c64 hi()
    {
        png_c64 r = {INFINITY, 0.0f};
        return r;
    }
};
/* v as accumulator type A (0 and 1 of complex have a zero imaginary part). */
template <typename A> __device__ __forceinline__ A png_from_int(int v) { return (A)v; }
template <> __device__ __forceinline__ png_c64 png_from_int<png_c64>(int v)
{
    png_c64 r = {(float)v, 0.0f};
    return r;
}

/* log(exp(a) + exp(b)) as the CPU's lae (NaN propagates; an infinite larger one wins). */
__device__ __forceinline__ float png_lae(float a, float b)
{
    if (a != a || b != b) return a + b;
    float hi = a > b ? a : b, lo = a > b ? b : a;
    if (isinf(hi)) return hi;
    return hi + log1pf(expf(lo - hi));
}
__device__ __forceinline__ double png_lae(double a, double b)
{
    if (a != a || b != b) return a + b;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    if (isinf(hi)) return hi;
    return hi + log1p(exp(lo - hi));
}
__device__ __forceinline__ png_c64 png_lae(png_c64 a, png_c64 b) { return png_clae(a, b); }
/* The identity of png_lae: -inf (complex64: -inf + 0i). */
template <typename F> __device__ __forceinline__ F png_lae_init() { return (F)-INFINITY; }
template <> __device__ __forceinline__ png_c64 png_lae_init<png_c64>()
{
    png_c64 r = {-INFINITY, 0.0f};
    return r;
}

/* Warp shuffles of any trivially copyable value, as 32-bit words (full warp). */
template <typename A> union png_words {
    A a;
    unsigned w[(sizeof(A) + 3) / 4];
};
template <typename A> __device__ __forceinline__ A png_shfl_xor(A v, int mask)
{
    png_words<A> u;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++) u.w[k] = 0;
    u.a = v;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++)
        u.w[k] = __shfl_xor_sync(0xffffffffu, u.w[k], mask);
    return u.a;
}
template <typename A> __device__ __forceinline__ A png_shfl_up(A v, int delta)
{
    png_words<A> u;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++) u.w[k] = 0;
    u.a = v;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++)
        u.w[k] = __shfl_up_sync(0xffffffffu, u.w[k], delta);
    return u.a;
}
template <typename A> __device__ __forceinline__ A png_shfl_idx(A v, int src)
{
    png_words<A> u;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++) u.w[k] = 0;
    u.a = v;
    for (int k = 0; k < (int)(sizeof u.w / sizeof u.w[0]); k++)
        u.w[k] = __shfl_sync(0xffffffffu, u.w[k], src);
    return u.a;
}

/* Whether T is a float dtype's storage type (logsumexp, softmax, logcumsumexp exist for those). */
template <typename T> struct png_is_float {
    static const bool value = false;
};
template <> struct png_is_float<float> {
    static const bool value = true;
};
template <> struct png_is_float<double> {
    static const bool value = true;
};
template <> struct png_is_float<pn_float16> {
    static const bool value = true;
};
template <> struct png_is_float<pn_bfloat16> {
    static const bool value = true;
};
/* Whether logcumsumexp has a kernel for T: the float types and complex64. */
template <typename T> struct png_has_lae {
    static const bool value = png_is_float<T>::value;
};
template <> struct png_has_lae<png_c64> {
    static const bool value = true;
};

/* Warp and block reductions with Op::comb and Op::init (reduce.cu, norm.cu): the warp's
 * combined value in every lane. */
template <class Op> __device__ __forceinline__ typename Op::A warp_reduce(typename Op::A v)
{
    for (int m = 16; m > 0; m >>= 1) v = Op::comb(v, png_shfl_xor(v, m));
    return v;
}

/* The block's combined value, valid in every thread (blockDim.x a multiple of 32, at most
 * 1024; sh holds 33 values). Every thread of the block must call it. */
template <class Op>
__device__ __forceinline__ typename Op::A block_reduce(typename Op::A v, typename Op::A *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce<Op>(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sh[lane] : Op::init();
        v = warp_reduce<Op>(v);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    v = sh[32];
    __syncthreads();
    return v;
}

#endif /* __cplusplus && common.cuh */

#endif /* PONTE_BACKEND_CUDA_REDUCE_H */
