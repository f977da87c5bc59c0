/* common.cuh — what every CUDA source of Ponte shares: the device types of each dtype (one
 * table), dtype dispatch, loads and stores through the compute type, strided indexing over a
 * pnG_layout, grid sizing, the launch macro and error checks.
 *
 * Every .cu file builds twice from the same text: with nvcc for the GPU, and with g++ against
 * the simulated runtime (PONTE_GPU_SIM defined, sim/cuda_sim.h) so that CI runs the kernels
 * without a GPU. Hence the rules for kernel code:
 *   - launch with PNG_LAUNCH(kernel, grid, block, smem_bytes, stream, args...), never <<< >>>;
 *     a template kernel goes through a pointer first: `auto k = my_kernel<T>; PNG_LAUNCH(k,...)`;
 *   - dynamic shared memory with PNG_DYNAMIC_SMEM(type, name) inside the kernel;
 *   - every kernel loops over its work with a grid stride (over elements, or over rows for a
 *     block-per-row kernel), so any grid size is correct: the simulator launches few blocks;
 *     size grids with png_blocks();
 *   - half types are pn_float16 / pn_bfloat16 (16-bit storage); compute through png_load and
 *     png_store (float for halves), never arithmetic on the storage type. */
#ifndef PONTE_BACKEND_CUDA_COMMON_CUH
#define PONTE_BACKEND_CUDA_COMMON_CUH

#if defined(PONTE_GPU_SIM)
#include "backend/cuda/sim/cuda_sim.h"
#elif defined(__CUDACC_RTC__) /* a kernel generated at run time (fused.c): NVRTC's built-ins */
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include "backend/cuda/gpu.h"
#include "core/half.h"

#include <stdint.h>

/* complex64 on the device: the layout of C's float _Complex. */
struct png_c64 {
    float re, im;
};

/* log(1 + z) and logaddexp on complex64, as the CPU's pnK_clog1p / pnK_clogaddexp
 * (backend/cpu/ew_exprs.h, which explains them): the same operations, the same roundings. */
__device__ __forceinline__ png_c64 png_clog1p(png_c64 z)
{
    double x = z.re, y = z.im;
    png_c64 r = {(float)(0.5 * log1p(fma(x, 2 + x, y * y))), (float)atan2(y, 1 + x)};
    return r;
}
__device__ __forceinline__ png_c64 png_clae(png_c64 a, png_c64 b)
{
    if (a.re != a.re || a.im != a.im || b.re != b.re || b.im != b.im) {
        png_c64 nan = {NAN, NAN};
        return nan;
    }
    bool agt = a.re > b.re || (a.re == b.re && a.im > b.im);
    png_c64 hi = agt ? a : b, lo = agt ? b : a;
    if (lo.re == -INFINITY || hi.re == INFINITY) return hi;
    float m = expf(lo.re - hi.re), d = lo.im - hi.im;
    png_c64 e = {m * cosf(d), m * sinf(d)};
    png_c64 l = png_clog1p(e);
    png_c64 r = {hi.re + l.re, hi.im + l.im};
    return r;
}

/* copysign(x, s) for float or double x (exact in double). */
template <typename R> __device__ __forceinline__ R png_copysign_r(R x, R s)
{
    return (R)copysign((double)x, (double)s);
}

/* Annex G's recovery of infinities in a product, on values of type R. */
template <typename R> __device__ __forceinline__ void png_cmul_g(R a, R b, R c, R d, R *x, R *y)
{
    R ac = a * c, bd = b * d, ad = a * d, bc = b * c;
    *x = ac - bd;
    *y = ad + bc;
    if (!(isnan(*x) && isnan(*y))) return;
    bool recalc = false;
    if (isinf(a) || isinf(b)) {
        a = png_copysign_r(isinf(a) ? (R)1 : (R)0, a);
        b = png_copysign_r(isinf(b) ? (R)1 : (R)0, b);
        if (isnan(c)) c = png_copysign_r((R)0, c);
        if (isnan(d)) d = png_copysign_r((R)0, d);
        recalc = true;
    }
    if (isinf(c) || isinf(d)) {
        c = png_copysign_r(isinf(c) ? (R)1 : (R)0, c);
        d = png_copysign_r(isinf(d) ? (R)1 : (R)0, d);
        if (isnan(a)) a = png_copysign_r((R)0, a);
        if (isnan(b)) b = png_copysign_r((R)0, b);
        recalc = true;
    }
    if (!recalc && (isinf(ac) || isinf(bd) || isinf(ad) || isinf(bc))) {
        if (isnan(a)) a = png_copysign_r((R)0, a);
        if (isnan(b)) b = png_copysign_r((R)0, b);
        if (isnan(c)) c = png_copysign_r((R)0, c);
        if (isnan(d)) d = png_copysign_r((R)0, d);
        recalc = true;
    }
    if (recalc) {
        *x = (R)INFINITY * (a * c - b * d);
        *y = (R)INFINITY * (a * d + b * c);
    }
}
/* The complex64 product of every GPU kernel (elementwise, reductions, scans), as the CPU's
 * pnK_cmul (backend/cpu/ew_exprs.h): each part one fma, Annex G's infinities recovered when
 * both parts come out NaN. */
__device__ __forceinline__ png_c64 png_cmul(png_c64 a, png_c64 b)
{
    png_c64 r = {fmaf(a.re, b.re, -(a.im * b.im)), fmaf(a.re, b.im, a.im * b.re)};
    if (r.re != r.re && r.im != r.im) png_cmul_g<float>(a.re, a.im, b.re, b.im, &r.re, &r.im);
    return r;
}

/* X(ENUM, device type) for every dtype: the one table of per-dtype variation on the GPU. */
#define PNG_FOR_EACH_DTYPE(X)                                                                  \
    X(PN_BOOL, bool)                                                                           \
    X(PN_UINT8, uint8_t)                                                                       \
    X(PN_UINT16, uint16_t)                                                                     \
    X(PN_UINT32, uint32_t)                                                                     \
    X(PN_UINT64, uint64_t)                                                                     \
    X(PN_INT8, int8_t)                                                                         \
    X(PN_INT16, int16_t)                                                                       \
    X(PN_INT32, int32_t)                                                                       \
    X(PN_INT64, int64_t)                                                                       \
    X(PN_FLOAT16, pn_float16)                                                                  \
    X(PN_FLOAT32, float)                                                                       \
    X(PN_FLOAT64, double)                                                                      \
    X(PN_BFLOAT16, pn_bfloat16)                                                                \
    X(PN_COMPLEX64, png_c64)

/* A type carried as a value, for dispatch: `png_dispatch(t, [&](auto tag) { using T =
 * typename decltype(tag)::type; ... })`. Returns false (nothing called) for an unknown dtype. */
template <typename T> struct png_tag {
    typedef T type;
};
template <typename F> static inline bool png_dispatch(pn_dtype t, F &&f)
{
    switch (t) {
#define PNG_DISPATCH_CASE(E, T)                                                                \
    case E: f(png_tag<T>()); return true;
        PNG_FOR_EACH_DTYPE(PNG_DISPATCH_CASE)
#undef PNG_DISPATCH_CASE
    default: return false;
    }
}

/* The type arithmetic happens in: float for the halves, the type itself otherwise. */
template <typename T> struct png_compute {
    typedef T type;
};
template <> struct png_compute<pn_float16> {
    typedef float type;
};
template <> struct png_compute<pn_bfloat16> {
    typedef float type;
};

__device__ __forceinline__ float png_f16_to_float(pn_float16 h)
{
#if defined(PONTE_GPU_SIM)
    return pnC_f16_to_f32(h);
#elif defined(__CUDACC_RTC__) /* the instruction __half2float is, without cuda_fp16.h */
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
#else
    return __half2float(__ushort_as_half(h.bits));
#endif
}
__device__ __forceinline__ pn_float16 png_float_to_f16(float f)
{
#if defined(PONTE_GPU_SIM)
    return pnC_f32_to_f16(f);
#elif defined(__CUDACC_RTC__) /* the instruction __float2half_rn is */
    pn_float16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
    return h;
#else
    pn_float16 h;
    h.bits = __half_as_ushort(__float2half_rn(f));
    return h;
#endif
}
__device__ __forceinline__ float png_bf16_to_float(pn_bfloat16 h)
{
    return __uint_as_float((uint32_t)h.bits << 16);
}
__device__ __forceinline__ pn_bfloat16 png_float_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    pn_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        h.bits = (uint16_t)((u >> 16) | 0x40u);
        return h;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    h.bits = (uint16_t)(u >> 16);
    return h;
}

/* Loads a value in its compute type; stores a compute-type value. */
template <typename T> __device__ __forceinline__ T png_load(const T *p) { return *p; }
__device__ __forceinline__ float png_load(const pn_float16 *p) { return png_f16_to_float(*p); }
__device__ __forceinline__ float png_load(const pn_bfloat16 *p) { return png_bf16_to_float(*p); }
template <typename T, typename V> __device__ __forceinline__ void png_store(T *p, V v) { *p = (T)v; }
template <typename V> __device__ __forceinline__ void png_store(pn_float16 *p, V v)
{
    *p = png_float_to_f16((float)v);
}
template <typename V> __device__ __forceinline__ void png_store(pn_bfloat16 *p, V v)
{
    *p = png_float_to_bf16((float)v);
}

/* N elements of T moved together, aligned to their size (16 bytes: one load or store; 32:
 * two). */
template <typename T, int N> struct alignas(N * sizeof(T)) png_vec {
    T v[N];
};

/* Element offset of operand op for the linear (row-major) index i of layout L. */
__device__ __forceinline__ int64_t png_offset(const pnG_layout &L, int op, int64_t i)
{
    int64_t off = 0;
    for (int d = L.ndim - 1; d >= 0; d--) {
        int64_t ext = L.shape[d];
        off += (i % ext) * L.strides[op][d];
        i /= ext;
    }
    return off;
}

/* Global thread index and grid stride, in 64 bits. */
__device__ __forceinline__ int64_t png_thread_index(void)
{
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t png_grid_stride(void) { return (int64_t)gridDim.x * blockDim.x; }

#ifndef __CUDACC_RTC__ /* host side: launching, checking */
/* Blocks for `items` independent pieces of work (elements / threads_per_block, or rows for a
 * block-per-row kernel): enough to fill the device, fewer on the simulator (kernels loop with
 * a grid stride, so any count is correct). At least 1. */
static inline unsigned png_blocks(int64_t items)
{
#ifdef PONTE_GPU_SIM
    const int64_t cap = 4;
#else
    const int64_t cap = 65535;
#endif
    if (items < 1) return 1;
    return (unsigned)(items < cap ? items : cap);
}
static inline unsigned png_blocks_for(int64_t elements, int threads)
{
    return png_blocks((elements + threads - 1) / threads);
}

/* The CUDA stream of a Ponte stream index. */
static inline cudaStream_t png_stream(int stream) { return (cudaStream_t)pnG_cuda_stream(stream); }

#ifdef PONTE_GPU_SIM
#define PNG_LAUNCH(kernel, grid, block, smem, stream, ...)                                     \
    pnsim_launch_kernel((kernel), dim3(grid), dim3(block), (size_t)(smem), (stream),            \
                        pnsim_bind((kernel), ##__VA_ARGS__))
#define PNG_DYNAMIC_SMEM(T, name) T *name = (T *)pnsim_dynamic_smem()
#define PNG_UNROLL_ALL /* the loop that follows unrolled whole (nvcc only) */
#else
#define PNG_LAUNCH(kernel, grid, block, smem, stream, ...)                                     \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define PNG_DYNAMIC_SMEM(T, name)                                                              \
    extern __shared__ __align__(128) unsigned char png_smem_raw_[];                           \
    T *name = (T *)png_smem_raw_
#define PNG_UNROLL_ALL _Pragma("unroll")
#endif

/* Checks a CUDA runtime call: on failure records a PN_ERR_BACKEND error naming it and
 * returns -1 from the enclosing function. */
#define PNG_CHECK(call)                                                                        \
    do {                                                                                       \
        cudaError_t png_err_ = (call);                                                         \
        if (png_err_ != cudaSuccess) {                                                         \
            pn_set_error(PN_ERR_BACKEND, "[cuda] %s failed: %s", #call,                        \
                         cudaGetErrorString(png_err_));                                        \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

#endif /* __CUDACC_RTC__ */

#endif /* PONTE_BACKEND_CUDA_COMMON_CUH */
