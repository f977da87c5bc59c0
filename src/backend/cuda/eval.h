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
/* A row-contiguous device copy of x (dtype kept), owned by the caller (pnC_decref), for
 * kernels that need dense data or overwrite their input. NULL with an error. */
pn_array *pnG_dense_copy(pn_array *x, int stream);
/* dense[k] = in[k] when row-contiguous (or empty), else a pnG_dense_copy of it, for k < n:
 * for kernels that read dense rows. Release with pnG_release_dense (the copies are freed in
 * stream order, so right after the launch that reads them). Returns 0, or -1 with an error
 * and nothing held. */
int pnG_make_dense(int n, pn_array *const *in, pn_array **dense, int stream);
void pnG_release_dense(int n, pn_array *const *in, pn_array **dense);

/* Each helper appends its family's declarations below, in its own section. */

/* ── linalg (gemm.c, conv.c): matmul / addmm through cuBLASLt, convolution through im2col and
 * the same GEMM. ── */
int pnG_gemm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_conv_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── copies and creation (copy.c, creation.c): astype through the converting strided copy;
 * arange/linspace, eye/tri and tril/triu kernels. The view and copy primitives of
 * src/ops/shape.c and creation.c hook their CPU evals, which are device-generic. ── */
int pnG_astype_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_sequence_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_eye_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_trimask_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── indexing, sort and random (indexing.c, sort.c, random.c): take/gather/scatter through one
 * index engine (atomics; "set" keeps the last position's update, as the CPU), the sort family
 * as a stable sort of (key, index) pairs (partitions are full sorts: they satisfy the same
 * contract), RandomBits as threefry2x32 with the CPU's counter layout. ── */
int pnG_index_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_sort_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_random_bits_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_sqrt_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── reductions and scans (reduce.c, scan.c): Reduce, ArgReduce, LogSumExp and Softmax over
 * strided inputs (row or column kernels, multi-block for long reductions); Scan with a
 * block-wide scan per line or one thread per line. ── */
int pnG_reduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_argreduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_logsumexp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_softmax_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_scan_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* ExtremeVjp (src/ops/reduce.c): one thread per kept index counts its window's ties, then
 * writes the gradient of the window. */
int pnG_extreme_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── elementwise (elementwise.c): unary, binary, divmod, where ── */
int pnG_unary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_binary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_divmod_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_where_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── fused optimizer steps (optim.c): OptimUpdate over contiguous inputs ── */
int pnG_optim_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── fused normalizations (norm.c): LayerNorm / RMSNorm and their backward nodes, rows of the
 * last axis made dense first ── */
int pnG_norm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_norm_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── decompositions (solver.c): SVD, Eigh, Eig and LUF through cuSOLVER ── */
int pnG_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_eigh_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_eig_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_luf_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_qr_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* SolveTriangular (cuBLAS trsm per matrix; the diagonal checked for zeros first, which
 * waits for the stream) and Cholesky (cuSOLVER potrf per matrix): src/backend/cuda/linsolve.c. */
int pnG_trsm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_cholesky_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── FFT (fft.c): the FFT primitive through cuFFT, one axis after another over contiguous
 * device copies. ── */
int pnG_fft_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* ── attention (attention.c): the fused ScaledDotProductAttention forward (one block per
 * (batch, head, query tile), online softmax over key chunks in shared memory, compute-type
 * accumulation) and its Vjp (one kernel for dq per query tile, one for dk/dv per key tile,
 * both recomputing P from the saved logsumexp; no atomics). ── */
int pnG_sdpa_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_sdpa_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CUDA_EVAL_H */
