/* fp8.h — the GPU ToFP8 (mlx.core.to_fp8, src/ops/fp8.c): the eval function of its C
 * glue (fp8.c) and the launcher of its kernel (fp8.cu). Plain C that CUDA C++ also reads (so
 * no core.h: the node is a forward-declared struct). */
#ifndef PONTE_BACKEND_CUDA_FP8_H
#define PONTE_BACKEND_CUDA_FP8_H

#include "backend/cuda/gpu.h"

#include <stdint.h>

struct pnC_node;

#ifdef __cplusplus
extern "C" {
#endif

/* ToFP8's GPU eval: float32 in[0] (any strides) to the uint8 e4m3 codes out[0]. 0 or -1. */
int pnG_to_fp8_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* o[i] = the e4m3 code of x[i] (backend/cpu/quant_codec.h's pnK_e4m3_code) for i < n, dense
 * device pointers, queued on stream. 0, or -1 with an error. */
int pnG_launch_to_fp8(const float *x, uint8_t *o, int64_t n, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_FP8_H */
