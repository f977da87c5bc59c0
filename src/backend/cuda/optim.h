/* optim.h — the launcher of the GPU AdamUpdate kernel (optim.cu), called by its C glue
 * (optim.c). Plain C. */
#ifndef PONTE_BACKEND_CUDA_OPTIM_H
#define PONTE_BACKEND_CUDA_OPTIM_H

#include "backend/cuda/gpu.h"
#include "ops/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One Adam step over n dense elements of dtype t (f16, bf16, f32, f64), device pointers:
 * o[0..2] = p', m', v', i[0..3] = p, g, m, v; an output may be the same memory as its input.
 * Arithmetic and coefficient rounding as pnK_adam_update_eval. Queued on stream; 0, -1 with an
 * error, or PNG_UNSUPPORTED (other dtype; with o == NULL only that check is made). */
int pnG_adam_update(pn_dtype t, int64_t n, void *const *o, const void *const *i,
                    const pnN_adam_params *prm, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_OPTIM_H */
