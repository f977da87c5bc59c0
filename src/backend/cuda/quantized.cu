/* quantized.cu — the quantization kernels on the GPU in every mode of quant_codec.h: quantize
 * (a thread per group, MLX's CPU arithmetic — affine in float, the fp modes through the shared
 * pnK_fp_quantize_group — so the packed words, scales and biases match the CPU bit for bit),
 * dequantize (a thread per element, T(T(s q) + b) with the product rounded before the add),
 * and the direct quantized product for small M (a warp per output column of x @ W^T, a thread
 * per output of x @ W) that dequantizes on the fly; larger M dequantize into scratch and use
 * the GEMM (quantized.c). Packing as backend/cpu/quantized.h: value i of a row occupies bits
 * [i bits, (i + 1) bits) of the row's little-endian uint32 stream. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/quantized.h"
#include "backend/cpu/quant_codec.h"

#include <math.h>

static const int QUANT_THREADS = 256;
/* Most rows of x the direct product keeps in registers per thread. */
#define QMM_DIRECT_MAX_M 8

/* The dtypes the quantization takes. */
template <typename T> struct quant_float {
    static const bool value = false;
};
#define QUANT_FLOAT(T)                                                                         \
    template <> struct quant_float<T> {                                                        \
        static const bool value = true;                                                        \
    };
QUANT_FLOAT(pn_float16)
QUANT_FLOAT(pn_bfloat16)
QUANT_FLOAT(float)
QUANT_FLOAT(double)
#undef QUANT_FLOAT

/* Value i (bits wide) of the bit stream starting at row. */
__device__ __forceinline__ uint32_t quant_at(const uint32_t *row, int bits, int64_t i)
{
    const int64_t bit = i * bits;
    const int64_t word = bit >> 5;
    const int shift = (int)(bit & 31);
    uint64_t v = row[word] >> shift;
    if (shift + bits > 32) v |= (uint64_t)row[word + 1] << (32 - shift);
    return (uint32_t)v & ((1u << bits) - 1u);
}

/* s * q rounded to T, then + b rounded to T (MLX's dequantization); no contraction into an
 * FMA. */
template <typename T, typename C> __device__ __forceinline__ T quant_deq(C s, C b, uint32_t q)
{
    T out;
    if constexpr (std::is_same<C, double>::value) {
        png_store(&out, __dmul_rn(s, (double)q) + b);
    } else if constexpr (std::is_same<T, float>::value) {
        png_store(&out, __fmul_rn(s, (float)q) + b);
    } else {
        T m;
        png_store(&m, s * (float)q);
        png_store(&out, png_load(&m) + b);
    }
    return out;
}

/* The rounding kind (PNK_RT_*) of T. */
template <typename T> __device__ __forceinline__ int quant_kind()
{
    if constexpr (std::is_same<T, pn_float16>::value) return PNK_RT_F16;
    else if constexpr (std::is_same<T, pn_bfloat16>::value) return PNK_RT_BF16;
    else if constexpr (std::is_same<T, double>::value) return PNK_RT_F64;
    else return PNK_RT_F32;
}

/* The scale of group g in compute type C: a T (affine) or a uint8 code decoded as a value of T
 * (fp modes; with a global scale gs: float(s * (gs / 2688))). */
template <typename T, typename C>
__device__ __forceinline__ C quant_scale(const void *scales, int64_t g, const pnK_qmode &m,
                                         const float *gscale)
{
    if (m.scale == PNK_SCALE_FLOAT) return (C)png_load((const T *)scales + g);
    const int c = ((const uint8_t *)scales)[g];
    if (gscale) return (C)(float)(pnK_e4m3_value(c) * (*gscale / 2688.0f));
    return (C)pnK_rt(pnK_scale_value(m.scale, c), quant_kind<T>());
}

/* The weight of code q in group g: s v(q) + b (b = 0 without biases). */
template <typename T, typename C>
__device__ __forceinline__ C quant_weight(const void *scales, const T *biases, int64_t g,
                                          uint32_t q, const pnK_qmode &m)
{
    const C v = m.elem == PNK_ELEM_UINT ? (C)q : (C)pnK_elem_value(m.elem, (int)q);
    const C s = quant_scale<T, C>(scales, g, m, nullptr);
    return biases ? s * v + (C)png_load(biases + g) : s * v;
}

/* ngroups groups of gs values: a thread per group computes min/max, the scale and bias, and
 * packs the values (float arithmetic, rint: as the CPU kernel); the fp modes through
 * pnK_fp_quantize_group (uint8 scale codes, no biases). */
template <typename T>
__global__ void quantize_kernel(const T *w, uint32_t *wq, void *scales_, T *biases,
                                int64_t ngroups, int gs, int bits, pnK_qmode m,
                                const float *gscale)
{
    if (!m.biases) {
        const int wpg = gs * bits / 32;
        for (int64_t g = png_thread_index(); g < ngroups; g += png_grid_stride()) {
            double v[32];
            uint8_t q[32];
            for (int i = 0; i < gs; i++) v[i] = (double)png_load(w + g * gs + i);
            pnK_fp_quantize_group(&m, quant_kind<T>(), v, gs, gscale ? *gscale : 0.0f, q,
                                  (uint8_t *)scales_ + g);
            uint32_t *out = wq + g * wpg;
            uint64_t acc = 0;
            int have = 0;
            for (int i = 0; i < gs; i++) {
                acc |= (uint64_t)q[i] << have, have += bits;
                if (have >= 32) *out++ = (uint32_t)acc, acc >>= 32, have -= 32;
            }
        }
        return;
    }
    T *scales = (T *)scales_;
    const int wpg = gs * bits / 32;
    for (int64_t g = png_thread_index(); g < ngroups; g += png_grid_stride()) {
        const T *v = w + g * gs;
        float w_min = INFINITY, w_max = -INFINITY;
        for (int i = 0; i < gs; i++) {
            float x = (float)png_load(v + i);
            w_max = w_max < x ? x : w_max;
            w_min = x < w_min ? x : w_min;
        }
        float scale, bias;
        pnK_affine_params(w_min, w_max, bits, &scale, &bias);
        uint32_t *out = wq + g * wpg;
        uint64_t acc = 0;
        int have = 0;
        for (int i = 0; i < gs; i++) {
            acc |= (uint64_t)pnK_affine_level((float)png_load(v + i), scale, bias, bits) << have;
            have += bits;
            if (have >= 32) *out++ = (uint32_t)acc, acc >>= 32, have -= 32;
        }
        png_store(scales + g, scale);
        png_store(biases + g, bias);
    }
}

/* ngroups * gs outputs, a thread per element. */
template <typename T>
__global__ void dequantize_kernel(const uint32_t *wq, const void *scales, const T *biases, T *out,
                                  int64_t ngroups, int gs, int bits, pnK_qmode m,
                                  const float *gscale)
{
    using C = typename png_compute<T>::type;
    const int wpg = gs * bits / 32;
    const int64_t n = ngroups * gs;
    for (int64_t e = png_thread_index(); e < n; e += png_grid_stride()) {
        const int64_t g = e / gs;
        const uint32_t q = quant_at(wq + g * wpg, bits, e % gs);
        if (m.biases) {
            out[e] = quant_deq<T, C>((C)png_load((const T *)scales + g), (C)png_load(biases + g),
                                     q);
        } else { /* T(T(v) T(s)) */
            const int kind = quant_kind<T>();
            const double s = quant_scale<T, double>(scales, g, m, gscale);
            png_store(out + e, pnK_rt(s * pnK_rt(pnK_elem_value(m.elem, (int)q), kind), kind));
        }
    }
}

/* out (M, N) = x (M, K) @ W^T, W (N, K) packed: a warp per output column n, each lane summing
 * a strided slice of K for every row of x (M <= QMM_DIRECT_MAX_M), then a warp reduction. */
template <typename T>
__global__ void qmm_t_kernel(const T *x, const uint32_t *wq, const void *scales, const T *biases,
                             T *out, int64_t M, int64_t N, int64_t K, int64_t words,
                             int64_t groups, int gs, int bits, pnK_qmode mode)
{
    using C = typename png_compute<T>::type;
    const int lane = threadIdx.x % 32;
    const int64_t warp = png_thread_index() / 32, nwarps = png_grid_stride() / 32;
    for (int64_t n = warp; n < N; n += nwarps) {
        C acc[QMM_DIRECT_MAX_M];
        for (int m = 0; m < QMM_DIRECT_MAX_M; m++) acc[m] = 0;
        const uint32_t *row = wq + n * words;
        for (int64_t k = lane; k < K; k += 32) {
            const int64_t g = n * groups + k / gs;
            const C wv = quant_weight<T, C>(scales, biases, g, quant_at(row, bits, k), mode);
            for (int m = 0; m < QMM_DIRECT_MAX_M; m++)
                if (m < M) acc[m] += (C)png_load(x + m * K + k) * wv;
        }
        for (int m = 0; m < QMM_DIRECT_MAX_M; m++) {
            if (m >= M) break;
            C v = acc[m];
            for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) png_store(out + m * N + n, v);
        }
    }
}

/* x @ W^T as qmm_t_kernel, through 16-byte loads of W's packed rows (BITS 2, 4 or 8): each lane
 * takes whole 16-byte runs of the row, P = 128 / BITS values of one group, and x's matching
 * values in 16-byte loads, and adds s * sum(x v) + b * sum(x) per run: the weight s v + b
 * without forming it (a decoding step of a quantized model reads W once, so the packed bytes'
 * load rate decides its speed). Needs rows and groups of whole runs, W and x 16-byte aligned,
 * rows of x whole 16-byte runs (qmv_vec_fits). */
template <typename T, int BITS>
__global__ void qmv_t_vec_kernel(const T *x, const uint32_t *wq, const void *scales, const T *biases,
                                 T *out, int64_t M, int64_t N, int64_t K, int64_t words,
                                 int64_t groups, int gs, pnK_qmode mode)
{
    constexpr int P = 128 / BITS, PER_WORD = 32 / BITS, XV = 16 / (int)sizeof(T);
    struct alignas(16) xrun { /* 16 bytes of x, loaded at once */
        T v[XV];
    };
    const int lane = threadIdx.x % 32;
    const int64_t warp = png_thread_index() / 32, nwarps = png_grid_stride() / 32, runs = words / 4;
    for (int64_t n = warp; n < N; n += nwarps) {
        float acc[QMM_DIRECT_MAX_M];
        for (int m = 0; m < QMM_DIRECT_MAX_M; m++) acc[m] = 0.0f;
        const uint4 *row = (const uint4 *)(wq + n * words);
        for (int64_t r = lane; r < runs; r += 32) {
            const uint4 packed = row[r];
            const uint32_t w4[4] = {packed.x, packed.y, packed.z, packed.w};
            float v[P];
            PNG_UNROLL_ALL
            for (int i = 0; i < P; i++) {
                const uint32_t q = (w4[i / PER_WORD] >> (i % PER_WORD * BITS)) & ((1u << BITS) - 1u);
                v[i] = mode.elem == PNK_ELEM_UINT ? (float)q : (float)pnK_elem_value(mode.elem, (int)q);
            }
            const int64_t k0 = r * P, g = n * groups + k0 / gs;
            const float s = quant_scale<T, float>(scales, g, mode, nullptr);
            const float b = biases ? (float)png_load(biases + g) : 0.0f;
            for (int m = 0; m < QMM_DIRECT_MAX_M; m++) {
                if (m >= M) break;
                const xrun *xv = (const xrun *)(x + m * K + k0);
                float dot = 0.0f, sum = 0.0f;
                PNG_UNROLL_ALL
                for (int c = 0; c < P / XV; c++) {
                    const xrun e = xv[c];
                    PNG_UNROLL_ALL
                    for (int u = 0; u < XV; u++) {
                        const float xf = (float)png_load(&e.v[u]);
                        dot += xf * v[c * XV + u];
                        sum += xf;
                    }
                }
                acc[m] += s * dot + b * sum;
            }
        }
        for (int m = 0; m < QMM_DIRECT_MAX_M; m++) {
            if (m >= M) break;
            float v = acc[m];
            for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) png_store(out + m * N + n, v);
        }
    }
}

/* Whether qmv_t_vec_kernel takes a transposed product (T of at most 4 bytes: the caller) with
 * W packed at wq (rows of `words`), x at x (rows of K values of T), groups of gs values of
 * `bits`. */
template <typename T>
static bool qmv_vec_fits(const T *x, const uint32_t *wq, int64_t K, int64_t words, int gs, int bits)
{
    if (bits != 2 && bits != 4 && bits != 8) return false;
    const int P = 128 / bits;
    return words % 4 == 0 && gs % P == 0 && (uintptr_t)wq % 16 == 0 && (uintptr_t)x % 16 == 0 &&
           (K * (int64_t)sizeof(T)) % 16 == 0;
}

/* out (M, N) = x (M, K) @ W, W (K, N) packed: a thread per output element. */
template <typename T>
__global__ void qmm_n_kernel(const T *x, const uint32_t *wq, const void *scales, const T *biases,
                             T *out, int64_t M, int64_t N, int64_t K, int64_t words,
                             int64_t groups, int gs, int bits, pnK_qmode mode)
{
    using C = typename png_compute<T>::type;
    for (int64_t e = png_thread_index(); e < M * N; e += png_grid_stride()) {
        const int64_t m = e / N, n = e % N;
        C acc = 0;
        for (int64_t k = 0; k < K; k++) {
            const int64_t g = k * groups + n / gs;
            const C wv =
                quant_weight<T, C>(scales, biases, g, quant_at(wq + k * words, bits, n), mode);
            acc += (C)png_load(x + m * K + k) * wv;
        }
        png_store(out + e, acc);
    }
}

/* See quantized.h. */
extern "C" int pnG_quantize(pn_dtype t, const void *w, uint32_t *wq, void *scales, void *biases,
                            int64_t ngroups, int group_size, int bits, int mode,
                            const float *gscale, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (quant_float<T>::value) {
            rc = 0;
            if (ngroups == 0) return;
            auto kern = quantize_kernel<T>;
            PNG_LAUNCH(kern, png_blocks_for(ngroups, QUANT_THREADS), QUANT_THREADS, 0,
                       png_stream(stream), (const T *)w, wq, scales, (T *)biases, ngroups,
                       group_size, bits, pnK_qmode_of(mode), gscale);
            rc = pnG_check_launch("quantize");
        }
    });
    return rc;
}

/* See quantized.h. */
extern "C" int pnG_dequantize(pn_dtype t, const uint32_t *wq, const void *scales,
                              const void *biases, void *out, int64_t ngroups, int group_size,
                              int bits, int mode, const float *gscale, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (quant_float<T>::value) {
            rc = 0;
            if (ngroups == 0) return;
            auto kern = dequantize_kernel<T>;
            PNG_LAUNCH(kern, png_blocks_for(ngroups * group_size, QUANT_THREADS), QUANT_THREADS, 0,
                       png_stream(stream), wq, scales, (const T *)biases, (T *)out, ngroups,
                       group_size, bits, pnK_qmode_of(mode), gscale);
            rc = pnG_check_launch("dequantize");
        }
    });
    return rc;
}

static int64_t qmv_vec_launches; /* pnG_qmv_vec_count (atomic builtins) */

/* See quantized.h. */
extern "C" int64_t pnG_qmv_vec_count(void) { return __atomic_load_n(&qmv_vec_launches, __ATOMIC_RELAXED); }

/* See quantized.h. */
extern "C" int pnG_qmm_direct(pn_dtype t, const void *x, const uint32_t *wq, const void *scales,
                              const void *biases, void *out, int64_t M, int64_t N, int64_t K,
                              int64_t words, int64_t groups, int group_size, int bits,
                              int mode, bool transpose, int stream)
{
    if (transpose && M > QMM_DIRECT_MAX_M) return PNG_UNSUPPORTED;
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (quant_float<T>::value) {
            rc = 0;
            if (M * N == 0) return;
            bool vec = false;
            if constexpr (sizeof(T) <= 4) {
                if ((vec = transpose && qmv_vec_fits((const T *)x, wq, K, words, group_size, bits))) {
                    auto kern = bits == 2   ? qmv_t_vec_kernel<T, 2>
                                : bits == 4 ? qmv_t_vec_kernel<T, 4>
                                            : qmv_t_vec_kernel<T, 8>;
                    PNG_LAUNCH(kern, png_blocks_for(N * 32, QUANT_THREADS), QUANT_THREADS, 0,
                               png_stream(stream), (const T *)x, wq, scales, (const T *)biases,
                               (T *)out, M, N, K, words, groups, group_size, pnK_qmode_of(mode));
                    __atomic_fetch_add(&qmv_vec_launches, 1, __ATOMIC_RELAXED);
                }
            }
            if (!vec && transpose) {
                auto kern = qmm_t_kernel<T>;
                PNG_LAUNCH(kern, png_blocks_for(N * 32, QUANT_THREADS), QUANT_THREADS, 0,
                           png_stream(stream), (const T *)x, wq, scales, (const T *)biases,
                           (T *)out, M, N, K, words, groups, group_size, bits,
                           pnK_qmode_of(mode));
            } else if (!vec) {
                auto kern = qmm_n_kernel<T>;
                PNG_LAUNCH(kern, png_blocks_for(M * N, QUANT_THREADS), QUANT_THREADS, 0,
                           png_stream(stream), (const T *)x, wq, scales, (const T *)biases,
                           (T *)out, M, N, K, words, groups, group_size, bits,
                           pnK_qmode_of(mode));
            }
            rc = pnG_check_launch("quantized_matmul");
        }
    });
    return rc;
}
