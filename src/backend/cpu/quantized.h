/* quantized.h — the quantization primitives' parameters (shared by the constructors in
 * src/ops/quantized.c and the GPU glue in src/backend/cuda/quantized.c) and their CPU kernels
 * (quantized.c): Quantize, Dequantize and QuantizedMatmul in MLX's modes (quant_codec.h). */
#ifndef PONTE_BACKEND_CPU_QUANTIZED_H
#define PONTE_BACKEND_CPU_QUANTIZED_H

#include "backend/cpu/quant_codec.h"
#include "core/core.h"

/* Params of the three primitives. mode: PNK_QMODE_* (quant_codec.h); global: nvfp4 with a
 * global scale (a float32 scalar, the last input). The affine format (MLX's): a row of K values is cut into
 * groups of group_size (32, 64, 128); group g has a scale s and a bias b (w's dtype) and each
 * value q in [0, 2^bits) with w ~ s * q + b. Quantized values are packed little-endian into
 * the row's bit stream: value i occupies bits [i * bits, (i + 1) * bits) of the row's uint32
 * words (word j holds bits [32 j, 32 j + 32)), so 3-, 5- and 6-bit values may straddle two
 * words and every group starts on a word boundary (group_size * bits is a multiple of 32).
 * The floating-point modes pack their 4- or 8-bit element codes the same way and have one
 * uint8 scale code per group and no biases.
 * transpose (QuantizedMatmul only): x @ W^T with W (N, K), else x @ W with W (K, N). */
typedef struct pnK_quant_params {
    int group_size, bits;
    bool transpose;
    int mode;
    bool global;
} pnK_quant_params;

/* The rounding kind (PNK_RT_*) of a floating dtype. */
static inline int pnK_rt_kind(pn_dtype t)
{
    return t == PN_FLOAT16 ? PNK_RT_F16 : t == PN_BFLOAT16 ? PNK_RT_BF16
           : t == PN_FLOAT64 ? PNK_RT_F64 : PNK_RT_F32;
}

/* Quantize: in = (w (..., K), floating[, global scale]), out = (w_q uint32 (..., K * bits /
 * 32), scales (..., K / group_size), biases (same)) (affine) or (w_q, uint8 scales) with MLX's
 * CPU arithmetic (affine: float32, round half to even; fp modes: pnK_fp_quantize_group), bit
 * for bit. Returns 0 or -1 with an error. */
int pnK_quantize_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Dequantize: in = (w_q (..., Kp), scales, biases (..., G)), scales and biases of the output
 * dtype T; out (..., G * group_size) = T(T(s * q) + b), rounded to T after each operation as
 * MLX computes it. fp modes: in = (w_q, uint8 scales[, global scale]), out = T(T(v) * T(s))
 * with v the element's value and s the scale's (with a global scale g: float(s * (g / 2688))). */
int pnK_dequantize_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* QuantizedMatmul: in = (x (bx..., M, K), w_q, scales, biases (bw..., rows, ...)) with x,
 * scales, biases and out of one floating dtype; out (broadcast(bx, bw)..., M, N). Computes in
 * float32: small M as fused dequantize-and-dot rows, larger M by dequantizing tiles of W into
 * float32 scratch and multiplying them with pnK_gemm, threads over tiles. */
int pnK_qmm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Helpers shared with the GPU glue: the supported bits and group sizes. */
static inline bool pnK_quant_bits_ok(int bits)
{
    return (bits >= 1 && bits <= 6) || bits == 8;
}
static inline bool pnK_quant_group_ok(int group_size)
{
    return group_size == 32 || group_size == 64 || group_size == 128;
}

/* Element offset of output batch index i (over the output's nb batch dims oshape) into an
 * operand whose nd batch dims (right-aligned, extent 1 where broadcast) have the given shape,
 * each batch matrix `matrix` elements. Shared by the CPU and GPU products. */
static inline int64_t pnK_qmm_batch_offset(int64_t i, const int64_t *oshape, int nb,
                                           const int64_t *shape, int nd, int64_t matrix)
{
    int64_t off = 0, stride = matrix;
    for (int d = nb - 1, e = nd - 1; d >= 0; d--, e--) {
        int64_t idx = i % oshape[d];
        i /= oshape[d];
        if (e < 0) continue;
        if (shape[e] != 1) off += idx * stride;
        stride *= shape[e];
    }
    return off;
}

#endif /* PONTE_BACKEND_CPU_QUANTIZED_H */
