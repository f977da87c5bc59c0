/* wmma_sim.h — the simulated warp matrix functions: the subset of CUDA's <mma.h>
 * (nvcuda::wmma) that Ponte's kernels use, 16x16x16 tiles of float16 / bfloat16 (Ponte's
 * pn_float16 / pn_bfloat16 storage types) multiplied into float accumulators.
 *
 * Faithful to the hardware's contract, so that a kernel that is right here is right there:
 * a fragment's elements are spread over the warp's 32 lanes (lane l holds elements l, l + 32,
 * ... of the tile in row-major order; the hardware's own spread is opaque to kernels, and
 * code that relies on one breaks here too), load_matrix_sync / store_matrix_sync move only the
 * calling lane's elements, and mma_sync is warp-collective: the lanes exchange their fragments'
 * addresses (through per-block slots and a __syncwarp), each computes its own elements of D from every lane's A and B (in
 * float, k in order), and a __syncwarp keeps every fragment unchanged until all have read. */
#ifndef PONTE_BACKEND_CUDA_SIM_WMMA_SIM_H
#define PONTE_BACKEND_CUDA_SIM_WMMA_SIM_H

#include "backend/cuda/sim/cuda_sim.h"
#include "core/half.h"

#include <stdint.h>
#include <stdio.h>
#include <type_traits>

void pnsim_record_error(cudaError_t e); /* runtime.cpp: the launch's error */

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

/* A 16x16 tile's share held by one lane: 256 / 32 elements. */
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the simulator has the 16x16x16 shape only");
    enum { num_elements = 8 };
    T x[num_elements];
};

static inline float pnsim_wmma_float(float v) { return v; }
static inline float pnsim_wmma_float(pn_float16 v) { return pnC_f16_to_f32(v); }
static inline float pnsim_wmma_float(pn_bfloat16 v) { return pnC_bf16_to_f32(v); }

/* The hardware's contract on a fragment's memory: 256-bit aligned, ldm a multiple of 16 bytes.
 * A breach is the launch's error, as the device's misaligned-address fault. */
static inline void pnsim_wmma_check(const void *p, unsigned ldm, size_t elem)
{
    if ((uintptr_t)p % 32 == 0 && ldm * elem % 16 == 0) return;
    fprintf(stderr, "pnsim: wmma fragment memory %p with ldm %u breaks the 32-byte alignment\n", p, ldm);
    pnsim_record_error(cudaErrorMisalignedAddress);
}

/* Element e (row-major over the 16x16 tile) of the calling lane's share: x[e / 32]. */
static inline int pnsim_wmma_lane(void) { return (int)(threadIdx.x % 32); }

static inline void fill_fragment(fragment<accumulator, 16, 16, 16, float> &f, float v)
{
    for (int i = 0; i < 8; i++) f.x[i] = v;
}

/* Matrix A or B from p (ldm elements between rows, row_major, or between columns). */
template <typename Use, typename T, typename Layout>
static inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const T *p, unsigned ldm)
{
    pnsim_wmma_check(p, ldm, sizeof(T));
    const int lane = pnsim_wmma_lane();
    for (int i = 0; i < 8; i++) {
        int e = i * 32 + lane, r = e / 16, c = e % 16;
        f.x[i] = std::is_same<Layout, col_major>::value ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    }
}

/* An accumulator from p in layout `layout`. */
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                                    unsigned ldm, layout_t layout)
{
    pnsim_wmma_check(p, ldm, sizeof(float));
    const int lane = pnsim_wmma_lane();
    for (int i = 0; i < 8; i++) {
        int e = i * 32 + lane, r = e / 16, c = e % 16;
        f.x[i] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    }
}

static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                                     unsigned ldm, layout_t layout)
{
    pnsim_wmma_check(p, ldm, sizeof(float));
    const int lane = pnsim_wmma_lane();
    for (int i = 0; i < 8; i++) {
        int e = i * 32 + lane, r = e / 16, c = e % 16;
        if (layout == mem_col_major) p[(size_t)c * ldm + r] = f.x[i];
        else p[(size_t)r * ldm + c] = f.x[i];
    }
}

/* d = a b + c over the warp (d may be c). */
template <typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                            const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c)
{
    typedef const fragment<matrix_a, 16, 16, 16, T, LA> *APtr;
    typedef const fragment<matrix_b, 16, 16, 16, T, LB> *BPtr;
    /* the lanes publish their fragments' addresses in the block's exchange slots (a block's
     * threads run on one host thread, one block at a time) */
    static thread_local const void *slots[1024 / 32][32][2];
    const int lane = pnsim_wmma_lane(), warp = (int)(threadIdx.x / 32);
    slots[warp][lane][0] = &a, slots[warp][lane][1] = &b;
    __syncwarp();
    APtr as[32];
    BPtr bs[32];
    for (int l = 0; l < 32; l++) as[l] = (APtr)slots[warp][l][0], bs[l] = (BPtr)slots[warp][l][1];
    float out[8];
    for (int i = 0; i < 8; i++) {
        int e = i * 32 + lane, r = e / 16, col = e % 16;
        float s = c.x[i];
        for (int k = 0; k < 16; k++) {
            int ea = r * 16 + k, eb = k * 16 + col; /* a's (r, k), b's (k, col) */
            s += pnsim_wmma_float(as[ea % 32]->x[ea / 32]) * pnsim_wmma_float(bs[eb % 32]->x[eb / 32]);
        }
        out[i] = s;
    }
    __syncwarp(); /* every lane has read every a and b */
    for (int i = 0; i < 8; i++) d.x[i] = out[i];
}

} /* namespace wmma */
} /* namespace nvcuda */

#endif /* PONTE_BACKEND_CUDA_SIM_WMMA_SIM_H */
