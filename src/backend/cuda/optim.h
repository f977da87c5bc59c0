/* optim.h — the launcher of the GPU OptimUpdate kernel (optim.cu), called by its C glue
 * (optim.c). Plain C. */
#ifndef PONTE_BACKEND_CUDA_OPTIM_H
#define PONTE_BACKEND_CUDA_OPTIM_H

#include "backend/cuda/gpu.h"
#include "ops/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One fused step of prm->rule over n dense elements of dtype t (f16, bf16, f32, f64), device
 * pointers: o[0] = p', o[1 + s] = slot s'; i[0] = p, i[1] = g, i[2 + s] = slot s (s below the
 * rule's slot count); an output may be the same memory as its input. Arithmetic and
 * coefficient rounding as pnK_optim_update_eval (the shared step of ops/optim.h). Queued on
 * stream; 0, -1 with an error, or PNG_UNSUPPORTED (other dtype or rule; with o == NULL only
 * that check is made). */
int pnG_optim_update(pn_dtype t, int64_t n, void *const *o, const void *const *i,
                     const pnN_optim_params *prm, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_OPTIM_H */
