/* fft.h — launchers of the GPU FFT (fft.cu), called by the FFT primitive's glue (fft.c): one
 * axis of a contiguous array through cuFFT (plans cached per layout and stream), and the
 * scaling of inverse transforms. All pointers are device memory; every launcher queues its
 * work on a Ponte stream index and returns 0, -1 with an error, or PNG_UNSUPPORTED. */
#ifndef PONTE_BACKEND_CUDA_FFT_H
#define PONTE_BACKEND_CUDA_FFT_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unnormalized transforms of kind (pnK_fft_kind: C2C, R2C, C2R) and logical length n along
 * the middle axis of the row-contiguous (pre, n_in, post) in into the row-contiguous
 * (pre, n_out, post) out, where n_in / n_out are n, or n/2+1 on the complex side of a real
 * transform. C2C may run in place (in == out); C2R may overwrite in. Extents beyond cuFFT's
 * int range give PNG_UNSUPPORTED. */
int pnG_fft_axis(int kind, bool inverse, int64_t pre, int64_t n, int64_t post, const void *in,
                 void *out, int stream);

/* Multiplies the count complex64 (is_complex) or float32 values at data by scale. */
int pnG_fft_scale(bool is_complex, int64_t count, void *data, double scale, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_FFT_H */
