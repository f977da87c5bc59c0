/* quantized.h — the GPU side of the quantization primitives (src/ops/quantized.c): their GPU
 * eval functions (quantized.c, named by the primitives through PNG_EVAL) and the launchers of
 * quantized.cu they call. Plain C, readable from C, CUDA C++ and the simulator. */
#ifndef PONTE_BACKEND_CUDA_QUANTIZED_H
#define PONTE_BACKEND_CUDA_QUANTIZED_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU evals of Quantize, Dequantize and QuantizedMatmul (pnC_eval_fn; contracts as the CPU
 * kernels in backend/cpu/quantized.h). */
struct pnC_node;
int pnG_quantize_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_dequantize_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnG_qmm_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Launchers; all pointers are device memory, dtype t is float32, float16, bfloat16 or float64,
 * work is queued on the Ponte stream. Each returns 0, -1 with an error, or PNG_UNSUPPORTED
 * (another dtype). mode is a PNK_QMODE_* (backend/cpu/quant_codec.h); groups hold group_size
 * values of bits bits, packed as in backend/cpu/quantized.h; affine groups have a scale and a
 * bias of dtype t, the fp modes a uint8 scale code and no biases (biases NULL). gscale: NULL
 * or the nvfp4 global scale (one float32 in device memory). */

/* Quantizes ngroups dense groups of w (dtype t) into wq (group_size * bits / 32 words each) and
 * one scale (and bias) each, with MLX's CPU arithmetic. */
int pnG_quantize(pn_dtype t, const void *w, uint32_t *wq, void *scales, void *biases,
                 int64_t ngroups, int group_size, int bits, int mode, const float *gscale,
                 int stream);
/* Dequantizes ngroups groups: out (ngroups * group_size values of dtype t) = T(T(s * q) + b)
 * (affine) or T(T(v) T(s)) (fp modes). */
int pnG_dequantize(pn_dtype t, const uint32_t *wq, const void *scales, const void *biases,
                   void *out, int64_t ngroups, int group_size, int bits, int mode,
                   const float *gscale, int stream);
/* out (M, N) = x (M, K) @ W^T (transpose: W is N x K) or x @ W (W is K x N), x and out dense of
 * dtype t, W given packed (rows of `words` uint32, `groups` scales and biases per row), computed
 * directly in float (no scratch): a warp per output column for transpose, a thread per output
 * otherwise. For small M (the decode case). */
int pnG_qmm_direct(pn_dtype t, const void *x, const uint32_t *wq, const void *scales,
                   const void *biases, void *out, int64_t M, int64_t N, int64_t K, int64_t words,
                   int64_t groups, int group_size, int bits, int mode, bool transpose,
                   int stream);
/* How many transposed direct products took the 16-byte decoding kernel (2, 4 or 8 bits, rows and
 * groups of whole 16-byte runs, aligned operands); the others take the per-element kernel. For
 * tests. */
int64_t pnG_qmv_vec_count(void);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_QUANTIZED_H */
