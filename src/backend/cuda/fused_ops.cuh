/* fused_ops.cuh — one op of a fused elementwise chain (mx.compile's Compiled node) on values
 * held in registers of type R (float, or double when the program holds values a float does not
 * hold exactly): the functor of the unfused kernel (elementwise_ops.cuh), its result rounded to
 * its dtype as the unfused kernel stores it. Shared by the interpreting kernel (fused.cu) and
 * the kernels generated from a program and compiled with NVRTC (fused.c), so both are
 * bit-identical to the unfused GPU graph. */
#ifndef PONTE_BACKEND_CUDA_FUSED_OPS_CUH
#define PONTE_BACKEND_CUDA_FUSED_OPS_CUH

#include "backend/cuda/elementwise_ops.cuh"
#include "backend/cuda/fused.h"

/* Threads per block of both fused kernels. */
#define PNG_FUSED_THREADS 256

/* The one parameter of a generated fused kernel: n elements, the dense output, the inputs
 * (dense, one element broadcast, or strided over the output's shape: the source says which)
 * and each op's params. */
struct pnG_fused_jit_params {
    int64_t n;
    void *out;
    const void *in[PNG_FUSED_MAX_IN];
    pnK_ew_params prm[PNG_FUSED_MAX_OPS];
    int64_t shape[PNG_MAX_NDIM];
    int64_t strides[PNG_FUSED_MAX_IN][PNG_MAX_NDIM];
};

/* Whether a register of type R holds every value of storage type T exactly (a double: every
 * type of the table; a float: those narrower than 4 bytes and float32). */
template <typename T, typename R> struct png_fits {
    static const bool value =
        sizeof(R) == 8 || sizeof(T) < 4 || (sizeof(T) == 4 && png_class<T>::value == PNG_KFLT);
};

/* An op's result rounded to its dtype as the unfused kernel stores it, back in a register. */
template <typename OT, typename R, typename V> __device__ __forceinline__ R png_fround(V v)
{
    OT o;
    png_store(&o, v);
    return (R)png_load(&o);
}

template <int OP, typename T, typename R>
__device__ __forceinline__ R png_fused_unary(const pnK_ew_params &prm, R a)
{
    typedef png_unary_fn<OP, T> F;
    if constexpr (!F::ok || !png_fits<T, R>::value) {
        return (R)0; /* never issued: the host checks png_fused_case_ok */
    } else {
        F f;
        f.prm_ = prm;
        return png_fround<typename F::out_t, R>(f((typename F::CT)a));
    }
}

template <int OP, typename T, typename R>
__device__ __forceinline__ R png_fused_binary(const pnK_ew_params &prm, R a, R b)
{
    typedef png_binary_fn<OP, T> F;
    if constexpr (!F::ok || !png_fits<T, R>::value) {
        return (R)0;
    } else {
        F f;
        f.prm_ = prm;
        return png_fround<typename F::out_t, R>(f((typename F::CT)a, (typename F::CT)b));
    }
}

/* astype to a floating or bool dtype from any register dtype: png_convert (copy.cu) of these
 * pairs is the store's rounding of the value (to bool: v != 0; to float64: exact; to float32
 * and the halves: through (float)v). Integer destinations (saturating or wrapping) have no
 * case: the host declines them. */
template <typename D, typename R> __device__ __forceinline__ R png_fused_astype(R a)
{
    if constexpr (!png_fits<D, R>::value) return (R)0;
    else return png_fround<D, R>(a);
}

#endif /* PONTE_BACKEND_CUDA_FUSED_OPS_CUH */
