/* fft.h — the CPU FFT (fft.c): the FFT primitive's parameters and CPU kernel, and the batched
 * line transform that the kernel and the simulated cuFFT (backend/cuda/sim/cufft_sim.cpp) share.
 * The line transform is plain C over raw pointers, so C++ can include this header. */
#ifndef PONTE_BACKEND_CPU_FFT_H
#define PONTE_BACKEND_CPU_FFT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The three transforms: complex to complex, real to complex (n reals give n/2+1 complex
 * values) and complex to real (n/2+1 complex values, Hermitian, give n reals). */
typedef enum pnK_fft_kind { PNK_FFT_C2C = 0, PNK_FFT_R2C = 1, PNK_FFT_C2R = 2 } pnK_fft_kind;

/* Most axes of one FFT node (the core's PNC_MAX_NDIM). */
#define PNK_FFT_MAX_AXES 64

/* Params of the FFT primitive (src/ops/fft.c): the transformed axes, normalized and in the
 * order the user gave them (for R2C and C2R the last one is the real axis), the direction and
 * the kind. The input is complex64 (C2C, C2R) or float32 (R2C), already padded or truncated;
 * the output is complex64 (C2C, R2C) or float32 (C2R). Inverse transforms are scaled by
 * 1/n per axis (numpy's and MLX's "backward" normalization). */
typedef struct pnK_fft_params {
    int naxes;
    int axes[PNK_FFT_MAX_AXES];
    int inverse;
    int kind; /* pnK_fft_kind */
} pnK_fft_params;

/* count transforms of logical length n (n >= 1) of the given kind, as cuFFT's advanced layout
 * with rank 1: element k of line b is read at in[b * idist + k * istride] and written at
 * out[b * odist + k * ostride] (strides in elements of complex64 (8 bytes) or float32, the
 * element type of each side for the kind). Input lines hold n elements (C2C, R2C) or n/2+1
 * (C2R); output lines n (C2C, C2R) or n/2+1 (R2C). The forward transform uses e^{-2 pi i jk/n},
 * the inverse e^{+2 pi i jk/n}, and every result is multiplied by scale. in and out may be the
 * same memory when each line maps onto itself. Threads over the lines (OpenMP), or inside one
 * long transform. Returns 0, or -1 with PN_ERR_OUT_OF_MEMORY recorded. */
int pnK_fft_lines(int kind, bool inverse, int64_t n, int64_t count, const void *in,
                  int64_t istride, int64_t idist, void *out, int64_t ostride, int64_t odist,
                  double scale);

#ifdef __cplusplus
}
#else
#include "core/core.h"

/* The FFT primitive's CPU kernel (pnC_eval_fn): any input strides, a fresh row-contiguous
 * output; multi-axis transforms run one axis after another. */
int pnK_fft_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
#endif

#endif /* PONTE_BACKEND_CPU_FFT_H */
