/* mma.cuh — warp-level tensor-core fragments: mma.sync m16n8k16 (16-bit inputs, float
 * accumulation) and ldmatrix, for kernels that keep their tiles in registers (attention.cu's
 * forward). On the device each helper is one PTX instruction (sm_80 and later); under
 * PONTE_GPU_SIM the same contract built from __shfl_sync, so all 32 lanes of the warp must call
 * each helper together (cuda_sim.h's warp-collective model), as the hardware requires.
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"),
 * with g = lane / 4 and t = lane % 4; a 32-bit register holds two 16-bit elements, the lower
 * column (or k) in its low half:
 *   A (16 x 16, row-major) a[4]: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same cols),
 *     a2 (row g, cols 2t+8, 2t+9), a3 (row g+8, cols 2t+8, 2t+9);
 *   B (16 x 8, k x n) b[2]: b0 (k 2t, 2t+1; n g), b1 (k 2t+8, 2t+9; n g);
 *   C / D (16 x 8, float) c[4]: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols).
 * ldmatrix .x4: lanes 8j..8j+7 give the addresses of rows 0..7 of 8x8 matrix j (16 bytes a
 * row, 16-byte aligned, shared memory); lane L gets in r[j] matrix j's (row L/4, cols 2(L%4),
 * 2(L%4)+1), or with .trans its (rows 2(L%4), 2(L%4)+1; col L/4). */
#ifndef PONTE_BACKEND_CUDA_MMA_CUH
#define PONTE_BACKEND_CUDA_MMA_CUH

#include "backend/cuda/common.cuh"

#include <stdint.h>

#ifdef PONTE_GPU_SIM
void pnsim_record_error(cudaError_t e); /* runtime.cpp: the launch's error */
#endif

/* The 16 bits of v rounded to T (pn_float16 or pn_bfloat16). */
template <typename T> __device__ __forceinline__ uint32_t png_half_bits(float v);
template <> __device__ __forceinline__ uint32_t png_half_bits<pn_float16>(float v)
{
    return png_float_to_f16(v).bits;
}
template <> __device__ __forceinline__ uint32_t png_half_bits<pn_bfloat16>(float v)
{
    return png_float_to_bf16(v).bits;
}

/* Two floats rounded to T and packed in one register: lo (the even column) in the low half. */
template <typename T> __device__ __forceinline__ uint32_t png_pack2(float lo, float hi)
{
    return png_half_bits<T>(lo) | png_half_bits<T>(hi) << 16;
}

#ifdef PONTE_GPU_SIM

/* The float of 16-bit element bits of type T. */
template <typename T> static inline float pnsim_mma_float(uint32_t bits)
{
    T h;
    h.bits = (uint16_t)bits;
    return png_load(&h);
}

/* d = a b + c for the warp (d may be c): every lane gathers its rows of A and columns of B
 * from the lanes holding them, then sums in float in k order. */
template <typename T>
static inline void png_mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    const int lane = (int)(threadIdx.x % 32), g = lane / 4, t = lane % 4;
    const uint64_t a01 = a[0] | (uint64_t)a[1] << 32, a23 = a[2] | (uint64_t)a[3] << 32;
    const uint64_t b01 = b[0] | (uint64_t)b[1] << 32;
    float A[2][16], B[2][16]; /* A[row g, g + 8][k], B[col 2t, 2t + 1][k] */
    for (int tt = 0; tt < 4; tt++) {
        uint64_t x = __shfl_sync(0xffffffffu, a01, 4 * g + tt), y = __shfl_sync(0xffffffffu, a23, 4 * g + tt);
        for (int h = 0; h < 2; h++) {
            A[0][2 * tt + h] = pnsim_mma_float<T>((uint32_t)(x >> 16 * h));           /* a0 */
            A[1][2 * tt + h] = pnsim_mma_float<T>((uint32_t)(x >> (32 + 16 * h)));    /* a1 */
            A[0][2 * tt + 8 + h] = pnsim_mma_float<T>((uint32_t)(y >> 16 * h));       /* a2 */
            A[1][2 * tt + 8 + h] = pnsim_mma_float<T>((uint32_t)(y >> (32 + 16 * h))); /* a3 */
        }
    }
    for (int n = 0; n < 2; n++)
        for (int tt = 0; tt < 4; tt++) {
            uint64_t z = __shfl_sync(0xffffffffu, b01, 4 * (2 * t + n) + tt);
            for (int h = 0; h < 2; h++) {
                B[n][2 * tt + h] = pnsim_mma_float<T>((uint32_t)(z >> 16 * h));
                B[n][2 * tt + 8 + h] = pnsim_mma_float<T>((uint32_t)(z >> (32 + 16 * h)));
            }
        }
    float out[4];
    for (int e = 0; e < 4; e++) {
        float s = c[e];
        for (int k = 0; k < 16; k++) s += A[e / 2][k] * B[e % 2][k];
        out[e] = s;
    }
    for (int e = 0; e < 4; e++) d[e] = out[e];
}

/* The ldmatrix contract on a row address: 16-byte aligned, else the launch's error (the
 * device's misaligned-address fault). */
static inline void pnsim_ldmatrix_check(const void *p)
{
    if ((uintptr_t)p % 16 == 0) return;
    fprintf(stderr, "pnsim: ldmatrix row address %p breaks the 16-byte alignment\n", p);
    pnsim_record_error(cudaErrorMisalignedAddress);
}

/* Four 8x8 matrices of 16-bit elements (see the header comment); `row` is the calling lane's
 * row address. */
static inline void png_ldmatrix_x4(uint32_t r[4], const void *row)
{
    pnsim_ldmatrix_check(row);
    const int lane = (int)(threadIdx.x % 32);
    for (int j = 0; j < 4; j++) {
        const uint16_t *p = (const uint16_t *)(uintptr_t)__shfl_sync(0xffffffffu, (uint64_t)(uintptr_t)row,
                                                                     8 * j + lane / 4);
        if ((uintptr_t)p % 16) { r[j] = 0; continue; }
        r[j] = p[2 * (lane % 4)] | (uint32_t)p[2 * (lane % 4) + 1] << 16;
    }
}

/* The same, each matrix transposed. */
static inline void png_ldmatrix_x4_trans(uint32_t r[4], const void *row)
{
    pnsim_ldmatrix_check(row);
    const int lane = (int)(threadIdx.x % 32);
    for (int j = 0; j < 4; j++) {
        const uint64_t mine = (uint64_t)(uintptr_t)row;
        const uint16_t *p0 = (const uint16_t *)(uintptr_t)__shfl_sync(0xffffffffu, mine, 8 * j + 2 * (lane % 4));
        const uint16_t *p1 = (const uint16_t *)(uintptr_t)__shfl_sync(0xffffffffu, mine, 8 * j + 2 * (lane % 4) + 1);
        if ((uintptr_t)p0 % 16 || (uintptr_t)p1 % 16) { r[j] = 0; continue; }
        r[j] = p0[lane / 4] | (uint32_t)p1[lane / 4] << 16;
    }
}

#else /* the device */

template <typename T>
__device__ __forceinline__ void png_mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);

/* The specialization of png_mma_16816 for T, whose operands PTX calls PTX_TYPE (the asm text
 * must be a literal). */
#define PNG_MMA_16816(T, PTX_TYPE)                                                              \
    template <>                                                                                 \
    __device__ __forceinline__ void png_mma_16816<T>(float d[4], const uint32_t a[4], const uint32_t b[2], \
                                                     const float c[4])                          \
    {                                                                                           \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE ".f32 "    \
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"      \
                     : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                           \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), \
                       "f"(c[1]), "f"(c[2]), "f"(c[3]));                                        \
    }
PNG_MMA_16816(pn_float16, "f16")
PNG_MMA_16816(pn_bfloat16, "bf16")
#undef PNG_MMA_16816

__device__ __forceinline__ void png_ldmatrix_x4(uint32_t r[4], const void *row)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

__device__ __forceinline__ void png_ldmatrix_x4_trans(uint32_t r[4], const void *row)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

#endif /* PONTE_GPU_SIM */

#endif /* PONTE_BACKEND_CUDA_MMA_CUH */
