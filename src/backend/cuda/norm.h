/* norm.h — launchers of the GPU LayerNorm / RMSNorm kernels and their backward (norm.cu),
 * called by the C glue (norm.c). Plain C. */
#ifndef PONTE_BACKEND_CUDA_NORM_H
#define PONTE_BACKEND_CUDA_NORM_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y (rows, n) = norm(x) * w + b over dense rows of n, device pointers of float dtype t (w, b
 * NULL: none); center: subtract each row's mean (LayerNorm), else not (RMSNorm). Halves
 * accumulate in float32. Queued on stream; 0, -1 with an error, or PNG_UNSUPPORTED (not a float dtype). */
int pnG_norm(pn_dtype t, int center, double eps, int64_t rows, int64_t n, const void *x,
             const void *w, const void *b, void *y, int stream);

/* The backward over dense (rows, n) x and g and w (NULL: none): dx (rows, n), and dw / db (n;
 * NULL: not wanted) as the sums over rows of g xhat / g: per-group partial rows, then a
 * second kernel adding them in a fixed order (deterministic, no atomics). Returns as
 * pnG_norm. */
int pnG_norm_vjp(pn_dtype t, int center, double eps, int64_t rows, int64_t n, const void *x,
                 const void *w, const void *g, void *dx, void *dw, void *db, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_NORM_H */
