/* eval.h — the GPU eval functions (pnC_eval_fn) of every primitive, defined by the C glue in
 * src/backend/cuda/<family>.c, and PNG_EVAL, which op files use to name them in a primitive's
 * descriptor: `.eval = {[PN_CPU] = pnK_x_eval, [PN_GPU] = PNG_EVAL(pnG_x_eval)}`. Without the
 * CUDA backend in the build PNG_EVAL gives NULL, so the descriptors compile either way. A GPU
 * eval function may return PNG_UNSUPPORTED (gpu.h) for a case it does not cover. */
#ifndef PONTE_BACKEND_CUDA_EVAL_H
#define PONTE_BACKEND_CUDA_EVAL_H

#include "core/core.h"

#ifdef PONTE_HAS_GPU
#define PNG_EVAL(f) f
#else
#define PNG_EVAL(f) NULL
#endif

/* Builds the merged layout of nop arrays for a strided kernel: ops[0] is the output, whose
 * shape every input broadcasts to (missing or size-1 dims get stride 0). Dims contiguous for
 * every operand merge. Returns 0, or PNG_UNSUPPORTED when nop > PNG_MAX_OPS or the merged
 * rank exceeds PNG_MAX_NDIM (layout.c). */
struct pnG_layout;
int pnG_make_layout(struct pnG_layout *L, int nop, pn_array *const *ops);

/* ── device copies behind the core's copy helpers (copy.c): pnC_strided_copy and pnK_fill
 * call these while a GPU kernel runs, so every primitive built on them (reshape, concatenate,
 * pad, slice_update, full, ...) runs on the GPU. All pointers are device memory; they record
 * an error (sticky) on failure. ── */
/* As pnC_strided_copy (any rank; converts dtype when st != dt), queued on stream. */
void pnG_strided_copy(const void *src, const int64_t *src_strides, pn_dtype st, void *dst,
                      const int64_t *dst_strides, pn_dtype dt, const int64_t *shape, int ndim,
                      int stream);
/* As pnK_fill: n copies of the elem_size-byte value at (device) value into dst. */
void pnG_fill(void *dst, const void *value, size_t elem_size, int64_t n, int stream);

/* Each helper appends its family's declarations below, in its own section. */

#endif /* PONTE_BACKEND_CUDA_EVAL_H */
