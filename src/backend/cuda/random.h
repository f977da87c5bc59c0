/* random.h — the launchers of the GPU RandomBits and SqrtSVD kernels (random.cu), called by
 * their C glue (random.c). Plain C. */
#ifndef PONTE_BACKEND_CUDA_RANDOM_H
#define PONTE_BACKEND_CUDA_RANDOM_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills nkeys blocks of nbytes each (block i at out + i * nbytes, device memory) with the
 * random bits of key i (keys: 2 * nkeys contiguous uint32 on the device), exactly as
 * pnK_random_block does. Queued on stream; 0 or -1 with an error. */
int pnG_random_bits(const uint32_t *keys, int64_t nkeys, void *out, int64_t nbytes, int stream);
/* out = U·sqrt(S)·Vᵀ of each of the nmat dense float32 n x n matrices at a (device memory),
 * as the CPU kernel computes it (pnK_sqrt_svd, a thread per matrix). Queued on stream; 0 or -1
 * with an error. */
int pnG_sqrt_svd(const float *a, float *out, int64_t n, int64_t nmat, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_RANDOM_H */
