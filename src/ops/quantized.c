/* quantized.c — mlx.core.quantize, dequantize, quantized_matmul and gather_qmm in MLX's
 * quantization modes (backend/cpu/quant_codec.h: "affine" — groups of 32/64/128 values along
 * the last axis, 1-8 bits packed little-endian into uint32 words, a scale and a bias per group —
 * and the floating-point "mxfp4", "mxfp8", "nvfp4" — fp4/fp8 elements, uint8 scales, no biases):
 * the constructors with MLX's checks, the primitives Quantize, Dequantize and QuantizedMatmul
 * with their derivatives and batching rule, and gather_qmm composed from take and
 * quantized_matmul. Kernels: backend/cpu/quantized.c, backend/cuda/quantized.{c,cu}. */
#include "backend/cpu/quantized.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/quantized.h"
#include "core/core.h"

#include <string.h>

/* ───────────────────────────── arguments ───────────────────────────── */

/* Resolves mode (NULL: affine), group_size and bits (0: the mode's default) and checks them as
 * MLX does. Returns the mode id (PNK_QMODE_*) or -1 with an error naming op. */
static int quant_args(const char *op, const char *mode, int *group_size, int *bits)
{
    const int id = pnK_qmode_find(mode);
    if (id < 0)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid quantization mode '%s'.", op,
                            mode);
    const pnK_qmode m = pnK_qmode_of(id);
    if (*group_size == 0) *group_size = m.group_size;
    if (*bits == 0) *bits = m.bits;
    if (!m.biases) {
        if (*group_size != m.group_size)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s quantization requires group "
                                "size %d but got %d.", op, m.name, m.group_size, *group_size);
        if (*bits != m.bits)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s quantization requires bits to "
                                "be %d but got %d.", op, m.name, m.bits, *bits);
        return id;
    }
    if (!pnK_quant_group_ok(*group_size))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The requested group size %d is not supported. The supported "
                            "group sizes are 32, 64, and 128.", op, *group_size);
    if (!pnK_quant_bits_ok(*bits))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The requested number of bits %d is not supported. The "
                            "supported bits are 1, 2, 3, 4, 5, 6 and 8.", op, *bits);
    return id;
}

/* Checks biases against the mode (required for affine, absent otherwise) and, for the
 * floating-point modes, that scales are uint8. Returns 0 or -1 with MLX's error. */
static int quant_check_mode_inputs(const char *op, int id, pn_array *scales, pn_array *biases)
{
    const pnK_qmode m = pnK_qmode_of(id);
    if (m.biases && !biases)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Biases must be provided for affine quantization.", op);
    if (!m.biases && biases)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Biases must be null for quantization mode '%s'.", op, m.name);
    if (!m.biases && scales->dtype != PN_UINT8)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Scale type must be uint8 but received type %s.", op,
                            pn_dtype_name(scales->dtype));
    return 0;
}

/* Checks an optional global scale (nvfp4 only, one float32 value). Returns 0 or -1. */
static int quant_check_global(const char *op, int id, pn_array *g)
{
    char s1[256];
    if (!g) return 0;
    if (!pnC_inputs_ok(op, 1, &g)) return -1;
    if (id != PNK_QMODE_NVFP4)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Global scale is only supported for "
                            "'nvfp4' quantization mode.", op);
    if (g->size != 1)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Global scale must be a scalar but got "
                            "shape %s.", op, pnC_shape_str(g->shape, g->ndim, s1, sizeof s1));
    if (g->dtype != PN_FLOAT32)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Global scale must have dtype float32 "
                            "but got %s.", op, pn_dtype_name(g->dtype));
    return 0;
}

/* The dtypes quantization takes: MLX's float32, float16, bfloat16, and float64 (which MLX
 * rejects when it evaluates). */
static bool quant_float(pn_dtype t)
{
    return pnC_is_float(t);
}

/* a cast to t, or a itself when it has that dtype already (astype would copy). */
static pn_array *cast_to(pn_array *a, pn_dtype t)
{
    return a && a->dtype != t ? pn_astype(a, t) : a;
}

/* The params of one node. */
static pnK_quant_params quant_params(int id, int group_size, int bits, bool transpose,
                                     bool global)
{
    pnK_quant_params p;
    memset(&p, 0, sizeof p);
    p.group_size = group_size, p.bits = bits, p.transpose = transpose, p.mode = id;
    p.global = global;
    return p;
}

/* Checks w_q (uint32, at least 2-d), scales and biases (if any: the same shape, w_q's leading
 * axes and one entry per group) and returns the unpacked extent of w_q's last axis; -1 with an
 * error. */
static int64_t quant_check_packed(const char *op, pn_array *w, pn_array *scales,
                                  pn_array *biases, int group_size, int bits, bool affine)
{
    char s1[256], s2[256];
    if (w->dtype != PN_UINT32)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The weight matrix should be uint32 but received %s", op,
                            pn_dtype_name(w->dtype));
    if (w->ndim < 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The quantized matrix must have at least 2 dimensions but it "
                            "has only %d.", op, w->ndim);
    if (biases && (biases->ndim != scales->ndim ||
                   memcmp(biases->shape, scales->shape, sizeof(int64_t) * scales->ndim)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Scales and biases should have the same shape. Received scales "
                            "with shape %s and biases with %s", op,
                            pnC_shape_str(scales->shape, scales->ndim, s1, sizeof s1),
                            pnC_shape_str(biases->shape, biases->ndim, s2, sizeof s2));
    if (scales->ndim != w->ndim ||
        memcmp(scales->shape, w->shape, sizeof(int64_t) * (w->ndim - 1)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Weight and scales should have the same batch shape. Received "
                            "weight with shape %s, scales with %s.", op,
                            pnC_shape_str(w->shape, w->ndim, s1, sizeof s1),
                            pnC_shape_str(scales->shape, scales->ndim, s2, sizeof s2));
    int64_t packed_bits = w->shape[w->ndim - 1] * 32;
    int64_t k = packed_bits / bits;
    if (packed_bits % bits || k != scales->shape[scales->ndim - 1] * group_size)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The shapes of the weight and scales are incompatible based on "
                            "bits and group_size. w.shape() == %s and scales.shape() == %s with "
                            "group_size=%d and bits=%d", op,
                            pnC_shape_str(w->shape, w->ndim, s1, sizeof s1),
                            pnC_shape_str(scales->shape, scales->ndim, s2, sizeof s2),
                            group_size, bits);
    if (affine && (!quant_float(scales->dtype) || (biases && !quant_float(biases->dtype))))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Scales and biases must have a real floating type, got "
                            "%s and %s.", op, pn_dtype_name(scales->dtype),
                            biases ? pn_dtype_name(biases->dtype) : "none");
    return k;
}

/* ───────────────────────────── derivative helpers ───────────────────────────── */

/* Sums each group of group_size consecutive elements of a's last axis: (..., G * gs) ->
 * (..., G). */
static pn_array *group_sum(pn_array *a, int group_size)
{
    if (!a) return NULL;
    int n = pn_ndim(a);
    int64_t s[PNC_MAX_NDIM + 1];
    memcpy(s, pn_shape(a), sizeof(int64_t) * n);
    s[n - 1] /= group_size;
    s[n] = group_size;
    int ax = -1;
    return pn_sum(pn_reshape(a, s, n + 1), &ax, 1, false);
}

/* The quantized values q of w_q as floats of scales' dtype (dequantized with scale 1, bias 0;
 * affine only). */
static pn_array *quant_values(pn_array *w, pn_array *scales, const pnK_quant_params *p)
{
    return pn_dequantize(w, pn_ones_like(scales), pn_zeros_like(scales), p->group_size, p->bits,
                         "affine", NULL, PN_NUM_DTYPES);
}

/* The gradients of scales and biases from the gradient dw of the dequantized matrix (w_q's
 * shape unpacked): d scales = group sums of dw * q, d biases = group sums of dw. */
static void scale_bias_grads(pn_array *dw, pn_array *w, pn_array *scales,
                             const pnK_quant_params *p, pn_array **ds, pn_array **db)
{
    if (ds) *ds = group_sum(pn_multiply(dw, quant_values(w, scales, p)), p->group_size);
    if (db) *db = group_sum(dw, p->group_size);
}

/* ───────────────────────────── Quantize ───────────────────────────── */
/* Inputs (w) or (w, global scale); outputs (w_q, scales, biases) or (w_q, scales). */

/* Not differentiable (MLX differentiates its composed fallback; the packed result has no
 * meaningful gradient). */
const pnC_primitive quantize_prim = {
    .name = "Quantize",
    .eval = {[PN_CPU] = pnK_quantize_eval, [PN_GPU] = PNG_EVAL(pnG_quantize_eval)},
};

/* See ponte.h. */
int pn_quantize(pn_array *w, int group_size, int bits, const char *mode, pn_array *global_scale,
                pn_array **out)
{
    char s1[256];
    if (!out) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[quantize] NULL output array.");
    out[0] = out[1] = out[2] = NULL;
    if (!pnC_inputs_ok("quantize", 1, &w)) return -1;
    const int id = quant_args("quantize", mode, &group_size, &bits);
    if (id < 0 || quant_check_global("quantize", id, global_scale)) return -1;
    const pnK_qmode m = pnK_qmode_of(id);
    if (!quant_float(w->dtype))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[quantize] Only real floating types can be quantized but w has type "
                            "%s.", pn_dtype_name(w->dtype));
    if (w->ndim < 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[quantize] The matrix to be quantized must have at least 2 dimension "
                            "but it has only %d.", w->ndim);
    int64_t k = w->shape[w->ndim - 1];
    if (k % group_size)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[quantize] The last dimension of the matrix needs to be divisible by "
                            "the quantization group size %d. However the provided matrix has "
                            "shape %s", group_size,
                            pnC_shape_str(w->shape, w->ndim, s1, sizeof s1));
    int64_t qs[PNC_MAX_NDIM], ss[PNC_MAX_NDIM];
    memcpy(qs, w->shape, sizeof(int64_t) * w->ndim);
    memcpy(ss, w->shape, sizeof(int64_t) * w->ndim);
    qs[w->ndim - 1] = k * bits / 32;
    ss[w->ndim - 1] = k / group_size;
    const pnK_quant_params p = quant_params(id, group_size, bits, false, global_scale != NULL);
    const pn_dtype st = m.biases ? w->dtype : PN_UINT8;
    const pn_dtype dt[3] = {PN_UINT32, st, st};
    const int64_t *shapes[3] = {qs, ss, ss};
    const int nds[3] = {w->ndim, w->ndim, w->ndim};
    pn_array *in[2] = {w, global_scale};
    return pnC_make_multi(&quantize_prim, &p, sizeof p, global_scale ? 2 : 1, in,
                          m.biases ? 3 : 2, dt, shapes, nds, out)
               ? -1
               : 0;
}

/* ───────────────────────────── Dequantize ───────────────────────────── */
/* Inputs (w_q, scales, biases) (affine; scales and biases of the output dtype), (w_q, scales)
 * or (w_q, scales, global scale) (floating-point modes, uint8 scales). */

static int dequantize_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    for (int i = 0; i < nargs; i++)
        if (argnums[i] == 0 || p->mode != PNK_QMODE_AFFINE)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[Dequantize::vjp] no gradient wrt the quantized matrix or the "
                                "scales of the floating-point modes.");
    if (!cot[0]) return 0;
    pn_scope_push();
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        pn_array *g = NULL;
        scale_bias_grads(cot[0], in[0], in[1], p, argnums[i] == 1 ? &g : NULL,
                         argnums[i] == 2 ? &g : NULL);
        ok &= (grads[i] = g) != NULL;
    }
    return ok ? (pn_scope_pop_keep(grads, nargs), 0)
              : (pn_scope_pop(), memset(grads, 0, sizeof *grads * nargs), -1);
}

/* Linear in (scales, biases) (affine): the tangent is the dequantization with the tangents. */
static int dequantize_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *tan, pn_array **out_tan)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    out_tan[0] = NULL;
    if (tan[0] || (p->mode != PNK_QMODE_AFFINE && tan[1]))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[Dequantize::jvp] no JVP wrt the quantized matrix or the scales of "
                            "the floating-point modes.");
    if (p->mode != PNK_QMODE_AFFINE || (!tan[1] && !tan[2])) return 0;
    pn_scope_push();
    pn_array *ts = tan[1] ? tan[1] : pn_zeros_like(in[1]);
    pn_array *tb = tan[2] ? tan[2] : pn_zeros_like(in[2]);
    out_tan[0] = pnC_scope_return(
        pn_dequantize(in[0], ts, tb, p->group_size, p->bits, "affine", NULL, out[0]->dtype));
    return out_tan[0] ? 0 : -1;
}

const pnC_primitive dequantize_prim = {
    .name = "Dequantize",
    .eval = {[PN_CPU] = pnK_dequantize_eval, [PN_GPU] = PNG_EVAL(pnG_dequantize_eval)},
    .vjp = dequantize_vjp,
    .jvp = dequantize_jvp,
};

/* See ponte.h. */
pn_array *pn_dequantize(pn_array *w, pn_array *scales, pn_array *biases, int group_size,
                        int bits, const char *mode, pn_array *global_scale, pn_dtype dtype)
{
    pn_array *ins[2] = {w, scales};
    if (!pnC_inputs_ok("dequantize", 2, ins)) return NULL;
    const int id = quant_args("dequantize", mode, &group_size, &bits);
    if (id < 0 || quant_check_mode_inputs("dequantize", id, scales, biases) ||
        quant_check_global("dequantize", id, global_scale))
        return NULL;
    const bool affine = id == PNK_QMODE_AFFINE;
    if (w->dtype != PN_UINT32)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dequantize] The matrix should be given as a "
                        "uint32 but it has type %s.", pn_dtype_name(w->dtype));
    if (w->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[dequantize] The matrix to be dequantized must have at least 2 "
                        "dimension but it has only %d.", w->ndim);
    int64_t k = quant_check_packed("dequantize", w, scales, biases, group_size, bits, affine);
    if (k < 0) return NULL;
    /* affine: computed in the scales' and biases' dtype and cast (as MLX); the floating-point
     * modes compute in the output dtype (bfloat16 by default; float32, whatever dtype says,
     * with a global scale) */
    pn_array *sb[2] = {scales, biases};
    pn_dtype t = affine ? pnC_result_type(2, sb)
                 : global_scale ? PN_FLOAT32 /* MLX: float32 whatever dtype asks */
                 : dtype != PN_NUM_DTYPES ? dtype
                                : PN_BFLOAT16;
    if (dtype == PN_NUM_DTYPES || global_scale) dtype = t;
    if (!pnC_dtype_valid(dtype) || !pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dequantize] Only real floating types are "
                        "supported but output dtype == %s.", pn_dtype_name(dtype));
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, w->shape, sizeof(int64_t) * w->ndim);
    shape[w->ndim - 1] = k;
    const pnK_quant_params p = quant_params(id, group_size, bits, false, global_scale != NULL);
    pn_scope_push();
    pn_array *in[3] = {w, affine ? cast_to(scales, t) : scales,
                       affine ? cast_to(biases, t) : global_scale};
    pn_array *r = pnC_make(&dequantize_prim, &p, sizeof p, in[2] ? 3 : 2, in, t, shape, w->ndim);
    if (r && dtype != t) r = pn_astype(r, dtype);
    return pnC_scope_return(r);
}

/* ───────────────────────────── QuantizedMatmul ───────────────────────────── */
/* Inputs (x (bx..., M, K), w_q, scales[, biases] (bw..., rows, ...)); affine: x, scales and
 * biases of the output dtype; floating-point modes: x of the output dtype, uint8 scales.
 * Output (broadcast(bx, bw)..., M, N). */

static int qmm_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const char *mode = pnK_qmode_of(p->mode).name;
    const bool affine = p->mode == PNK_QMODE_AFFINE;
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    for (int i = 0; i < nargs; i++)
        if (argnums[i] == 1 || (!affine && argnums[i] != 0))
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[QuantizedMatmul::vjp] no gradient wrt the quantized weights "
                                "or the scales of the floating-point modes.");
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *x = in[0], *w = in[1], *g = cot[0], *dw = NULL;
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        pn_array *r = NULL;
        if (argnums[i] == 0) {
            /* x @ W^T: dx = g @ W; x @ W: dx = g @ W^T */
            r = pnC_sum_to_shape(pn_quantized_matmul(g, w, in[2], affine ? in[3] : NULL,
                                                     !p->transpose, p->group_size, p->bits,
                                                     mode),
                                 x->shape, x->ndim);
        } else {
            if (!dw) {
                /* the gradient of the dequantized W, summed over broadcast batch axes */
                int64_t ws[PNC_MAX_NDIM];
                memcpy(ws, in[2]->shape, sizeof(int64_t) * in[2]->ndim);
                ws[in[2]->ndim - 1] *= p->group_size;
                pn_array *gx = g, *xx = x;
                if (w->ndim == 2 && x->ndim > 2) { /* one GEMM over the folded batch */
                    int64_t gs2[2] = {-1, g->shape[g->ndim - 1]},
                            xs2[2] = {-1, x->shape[x->ndim - 1]};
                    gx = pn_reshape(g, gs2, 2), xx = pn_reshape(x, xs2, 2);
                }
                pn_array *full = p->transpose ? pn_matmul(pn_swapaxes(gx, -1, -2), xx)
                                              : pn_matmul(pn_swapaxes(xx, -1, -2), gx);
                dw = pnC_sum_to_shape(full, ws, in[2]->ndim);
            }
            scale_bias_grads(dw, w, in[2], p, argnums[i] == 2 ? &r : NULL,
                             argnums[i] == 3 ? &r : NULL);
        }
        ok &= (grads[i] = r) != NULL;
    }
    return ok ? (pn_scope_pop_keep(grads, nargs), 0)
              : (pn_scope_pop(), memset(grads, 0, sizeof *grads * nargs), -1);
}

/* Linear in x and (affine) in (scales, biases) separately: x' W^T + x (dequantize(w, s', b'))^T. */
static int qmm_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const bool affine = p->mode == PNK_QMODE_AFFINE;
    out_tan[0] = NULL;
    if (tan[1] || (!affine && tan[2]))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[QuantizedMatmul::jvp] no JVP wrt the quantized matrix or the "
                            "scales of the floating-point modes.");
    pn_scope_push();
    pn_array *r = NULL;
    bool ok = true;
    if (tan[0])
        ok &= (r = pn_quantized_matmul(tan[0], in[1], in[2], affine ? in[3] : NULL,
                                       p->transpose, p->group_size, p->bits,
                                       pnK_qmode_of(p->mode).name)) != NULL;
    if (affine && (tan[2] || tan[3])) {
        pn_array *ts = tan[2] ? tan[2] : pn_zeros_like(in[2]);
        pn_array *tb = tan[3] ? tan[3] : pn_zeros_like(in[3]);
        pn_array *dw = pn_dequantize(in[1], ts, tb, p->group_size, p->bits, "affine", NULL,
                                     out[0]->dtype);
        pn_array *y = pn_matmul(in[0], p->transpose ? pn_swapaxes(dw, -1, -2) : dw);
        ok &= (r = r ? pn_add(r, y) : y) != NULL;
    }
    out_tan[0] = pnC_scope_return(ok ? r : NULL);
    return ok ? 0 : -1;
}

/* Batching: every mapped input gets the batch axis in front (x and w_q, scales, biases with
 * the same number of axes behind it); scales and biases are broadcast to w_q's batch shape,
 * which quantized_matmul requires to match. */
static int qmm_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                    pn_array **out, int *out_axes)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const int n = p->mode == PNK_QMODE_AFFINE ? 4 : 3;
    int rank = 0;
    bool mapped = false, wmapped = false;
    for (int k = 0; k < n; k++) {
        int r = in[k]->ndim - (in_axes[k] >= 0);
        rank = r > rank ? r : rank;
        mapped |= in_axes[k] >= 0;
        wmapped |= k > 0 && in_axes[k] >= 0;
    }
    pn_scope_push();
    pn_array *v[4] = {NULL, NULL, NULL, NULL};
    for (int k = 0; k < n; k++) v[k] = pnC_batch_front(in[k], in_axes[k], rank);
    if (wmapped) {
        /* one batch shape for w_q, scales and biases */
        int64_t bs[PNC_MAX_NDIM], tmp[PNC_MAX_NDIM];
        int nb = 0;
        for (int k = 1; k < n && v[k]; k++) {
            nb = pnC_broadcast_shapes("quantized_matmul", bs, nb, pn_shape(v[k]),
                                      pn_ndim(v[k]) - 2, tmp);
            if (nb < 0) break;
            memcpy(bs, tmp, sizeof(int64_t) * nb);
        }
        for (int k = 1; k < n && nb >= 0; k++) {
            if (!v[k]) break;
            memcpy(tmp, bs, sizeof(int64_t) * nb);
            memcpy(tmp + nb, pn_shape(v[k]) + pn_ndim(v[k]) - 2, 2 * sizeof(int64_t));
            v[k] = pn_broadcast_to(v[k], tmp, nb + 2);
        }
    }
    out[0] = pn_quantized_matmul(v[0], v[1], v[2], v[3], p->transpose, p->group_size, p->bits,
                                 pnK_qmode_of(p->mode).name);
    out_axes[0] = mapped ? 0 : -1;
    if (!out[0]) {
        pn_scope_pop();
        return -1;
    }
    pn_scope_pop_keep(out, 1);
    return 0;
}

const pnC_primitive qmm_prim = {
    .name = "QuantizedMatmul",
    .eval = {[PN_CPU] = pnK_qmm_eval, [PN_GPU] = PNG_EVAL(pnG_qmm_eval)},
    .vjp = qmm_vjp,
    .jvp = qmm_jvp,
    .vmap = qmm_vmap,
    .vjp_sees_integer_inputs = true, /* MLX: no gradient wrt the packed weights, fp scales */
};

/* The checks shared by quantized_matmul and gather_qmm: mode and params, biases, packed shapes,
 * x's last axis against W. Returns the mode id and sets *outer (N) and *t (the result dtype),
 * or -1 with an error. */
static int qmm_check(const char *op, pn_array *x, pn_array *w, pn_array *scales,
                     pn_array *biases, bool transpose, int *group_size, int *bits,
                     const char *mode, int64_t *outer, pn_dtype *t)
{
    char s1[256];
    const int id = quant_args(op, mode, group_size, bits);
    if (id < 0 || quant_check_mode_inputs(op, id, scales, biases)) return -1;
    const bool affine = id == PNK_QMODE_AFFINE;
    int64_t k = quant_check_packed(op, w, scales, biases, *group_size, *bits, affine);
    if (k < 0) return -1;
    int64_t inner = transpose ? k : w->shape[w->ndim - 2];
    *outer = transpose ? w->shape[w->ndim - 2] : k;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != inner)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Last dimension of first input with shape (..., %lld) does not "
                            "match the expanded quantized matrix (%lld, %lld) computed from "
                            "shape %s with group_size=%d, bits=%d and transpose=%s", op,
                            x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL, (long long)inner,
                            (long long)*outer, pnC_shape_str(w->shape, w->ndim, s1, sizeof s1),
                            *group_size, *bits, transpose ? "true" : "false");
    pn_array *xsb[3] = {x, scales, biases};
    *t = affine ? pnC_result_type(3, xsb) : x->dtype;
    if (!quant_float(*t))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Only real floating types are "
                            "supported, but the inputs promote to %s.", op, pn_dtype_name(*t));
    return id;
}

/* See ponte.h. */
pn_array *pn_quantized_matmul(pn_array *x, pn_array *w, pn_array *scales, pn_array *biases,
                              bool transpose, int group_size, int bits, const char *mode)
{
    pn_array *ins[3] = {x, w, scales};
    if (!pnC_inputs_ok("quantized_matmul", 3, ins)) return NULL;
    int64_t outer;
    pn_dtype t;
    const int id = qmm_check("quantized_matmul", x, w, scales, biases, transpose, &group_size,
                             &bits, mode, &outer, &t);
    if (id < 0) return NULL;
    const bool affine = id == PNK_QMODE_AFFINE;
    bool vec = x->ndim == 1;
    int64_t shape[PNC_MAX_NDIM];
    int xb = vec ? 0 : x->ndim - 2;
    int nb = pnC_broadcast_shapes("quantized_matmul", x->shape, xb, w->shape, w->ndim - 2, shape);
    if (nb < 0) return NULL;
    shape[nb] = vec ? 1 : x->shape[x->ndim - 2];
    shape[nb + 1] = outer;
    const pnK_quant_params p = quant_params(id, group_size, bits, transpose, false);
    pn_scope_push();
    pn_array *x2 = vec ? pn_expand_dims(x, (int[]){0}, 1) : x;
    pn_array *in[4] = {cast_to(x2, t), w, affine ? cast_to(scales, t) : scales,
                       affine ? cast_to(biases, t) : NULL};
    pn_array *r = pnC_make(&qmm_prim, &p, sizeof p, affine ? 4 : 3, in, t, shape, nb + 2);
    if (r && vec) r = pn_squeeze(r, (int[]){-2}, 1);
    return pnC_scope_return(r);
}

/* ───────────────────────────── gather_qmm ───────────────────────────── */

/* The gather functions' index arrays (NULL: none) must be integers. 0, or -1 with an error. */
static int check_indices(const char *fn, pn_array *lhs_indices, pn_array *rhs_indices)
{
    bool bad_lhs = lhs_indices && !pnC_is_integer(lhs_indices->dtype);
    if (!bad_lhs && !(rhs_indices && !pnC_is_integer(rhs_indices->dtype))) return 0;
    return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Got %s with invalid dtype. Indices must be "
                    "integral.", fn, bad_lhs ? "lhs_indices" : "rhs_indices"), -1;
}

/* See ponte.h. */
pn_array *pn_gather_qmm(pn_array *x, pn_array *w, pn_array *scales, pn_array *biases,
                        pn_array *lhs_indices, pn_array *rhs_indices, bool transpose,
                        int group_size, int bits, const char *mode, bool sorted_indices)
{
    char s1[256];
    (void)sorted_indices; /* a hint for a faster kernel; the composition does not need it */
    if (!lhs_indices && !rhs_indices)
        return pn_quantized_matmul(x, w, scales, biases, transpose, group_size, bits, mode);
    pn_array *ins[3] = {x, w, scales};
    if (!pnC_inputs_ok("gather_qmm", 3, ins)) return NULL;
    if (pnC_failed()) return NULL; /* a NULL index array coming from a failed op */
    int64_t outer;
    pn_dtype t;
    if (qmm_check("gather_qmm", x, w, scales, biases, transpose, &group_size, &bits, mode,
                  &outer, &t) < 0)
        return NULL;
    if (check_indices("gather_qmm", lhs_indices, rhs_indices)) return NULL;
    if (x->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_qmm] Non-quantized input must have at "
                        "least two dimensions but got input with shape %s.",
                        pnC_shape_str(x->shape, x->ndim, s1, sizeof s1));
    pn_scope_push();
    pn_array *bidx[2];
    if (pnC_gather_indices(x, lhs_indices, w, rhs_indices, bidx)) {
        pn_scope_pop();
        return NULL;
    }
    pn_array *r = pn_quantized_matmul(pnC_take_batch(x, bidx[0]), pnC_take_batch(w, bidx[1]),
                                      pnC_take_batch(scales, bidx[1]), pnC_take_batch(biases, bidx[1]),
                                      transpose, group_size, bits, mode);
    return pnC_scope_return(r);
}

/* ───────────────────────────── qqmm and gather_qqmm ───────────────────────────── */
/* mlx.core.qqmm: x quantized on the fly and multiplied by a quantized w (quantized here too when
 * given in floating point). Composed of quantize, dequantize, quantized_matmul and matmul, so it
 * runs on every backend. The derivative with a floating w is MLX's: the cotangent and the
 * operands are themselves quantized along the contracted axis (custom vjp). */

/* The parameters of a qqmm (fp modes: the group size and bits are the mode's). */
typedef struct qq_ctx {
    int mode, group_size, bits;
} qq_ctx;

/* The parameters of fp mode id. */
static qq_ctx qq_ctx_of(int id)
{
    const pnK_qmode m = pnK_qmode_of(id);
    return (qq_ctx){id, m.group_size, m.bits};
}

/* fp4 e2m1 rounding of a float32 array, ties to the even code (MLX's to_fp4_e2m1, which
 * QQMatmul uses; quantize keeps the smaller value on ties): steps of .5 below 2, 1 below 4, 2
 * up to 6, saturating at 6. */
static pn_array *qq_fp4_round(pn_array *v)
{
    pn_array *a = pn_abs(v), *two = pn_scalar(2, PN_FLOAT32), *four = pn_scalar(4, PN_FLOAT32);
    pn_array *r1 = pn_divide(pn_round(pn_multiply(a, two), 0), two);
    pn_array *r3 = pn_minimum(pn_multiply(pn_round(pn_divide(a, two), 0), two),
                              pn_scalar(6, PN_FLOAT32));
    pn_array *q = pn_where(pn_less(a, two), r1, pn_where(pn_less(a, four), pn_round(a, 0), r3));
    return pn_multiply(pn_sign(v), q);
}

/* dequantize(quantize(a)) as MLX's CPU QQMatmul rounds its input: the group scales as
 * quantize computes them in float32, each value / scale (float32) rounded to the element
 * format (fp4: ties to even, see qq_fp4_round), times the scale, cast back to a's dtype. With
 * a global scale (nvfp4): dequantize(quantize(a)) in float32. */
static pn_array *qq_round(pn_array *a, const qq_ctx *c, pn_array *g)
{
    const char *mode = pnK_qmode_of(c->mode).name;
    pn_array *q[3] = {NULL, NULL, NULL};
    pn_array *a2 = a->ndim == 1 ? pn_expand_dims(a, (int[]){0}, 1) : a; /* quantize wants 2-d */
    pn_array *af = a2 ? cast_to(a2, PN_FLOAT32) : NULL;
    if (!af || pn_quantize(af, c->group_size, c->bits, mode, g, q)) return NULL;
    pn_array *r;
    if (g || c->bits != 4) {
        r = pn_dequantize(q[0], q[1], NULL, c->group_size, c->bits, mode, g, PN_FLOAT32);
    } else {
        /* each element's scale: the codes all 1.0 (fp4 code 2) dequantized with the scales */
        pn_array *ones = pn_full_like(q[0], pn_scalar_int(0x22222222, PN_UINT32));
        pn_array *div = pn_dequantize(ones, q[1], NULL, c->group_size, c->bits, mode, NULL,
                                      PN_FLOAT32);
        pn_array *zero = pn_scalar(0, PN_FLOAT32), *nz = pn_equal(div, zero);
        pn_array *v = pn_where(nz, zero, pn_divide(af, pn_where(nz, pn_scalar(1, PN_FLOAT32),
                                                                div)));
        r = pn_multiply(qq_fp4_round(v), div);
    }
    r = r ? cast_to(r, a->dtype) : NULL;
    return r && a->ndim == 1 ? pn_squeeze(r, (int[]){0}, 1) : r;
}

/* The product of the rounded x with the quantized (w_q, scales): x̂ @ W^T in x's dtype.
 * Without a global scale the fp quantized_matmul kernel (as MLX's); with one, W is dequantized
 * in float32 and multiplied in float32. */
static pn_array *qq_product(pn_array *xh, pn_array *wq, pn_array *scales, const qq_ctx *c,
                            pn_array *gw)
{
    const char *mode = pnK_qmode_of(c->mode).name;
    if (!gw)
        return pn_quantized_matmul(xh, wq, scales, NULL, true, c->group_size, c->bits, mode);
    pn_array *wd = pn_dequantize(wq, scales, NULL, c->group_size, c->bits, mode, gw, PN_FLOAT32);
    return cast_to(pn_matmul(cast_to(xh, PN_FLOAT32), pn_swapaxes(wd, -1, -2)), xh->dtype);
}

/* The forward of qqmm with a floating w: in = (x, w[, gx, gw]). */
static int qq_forward(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const qq_ctx cc = qq_ctx_of((int)(intptr_t)ctx), *c = &cc; /* ctx: the mode id */
    pn_array *gx = nin > 2 ? in[2] : NULL, *gw = nin > 2 ? in[3] : NULL;
    pn_array *q[3] = {NULL, NULL, NULL};
    *nout = 1;
    out[0] = NULL;
    pn_scope_push();
    pn_array *xh = qq_round(in[0], c, gx);
    if (xh && !pn_quantize(in[1], c->group_size, c->bits, pnK_qmode_of(c->mode).name, gw, q))
        out[0] = qq_product(xh, q[0], q[1], c, gw);
    out[0] = pnC_scope_return(out[0]);
    return out[0] ? 0 : -1;
}

static pn_array *qq_float_call(pn_array *x, pn_array *w, pn_array *gx, pn_array *gw,
                               const qq_ctx *c);

/* MLX's QQMatmul vjp with a floating w: dx = qqmm(g, w^T), dw = qqmm(g^T, x^T) (each operand
 * rounded along the contracted axis), batch axes summed away; global scales get zeros.
 * in = (x, w[, gx, gw], g, y). */
static int qq_backward(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const qq_ctx cc = qq_ctx_of((int)(intptr_t)ctx), *c = &cc; /* ctx: the mode id */
    const int np = nin - 2; /* primals, then one cotangent and one output */
    pn_array *x = in[0], *w = in[1], *g = in[np];
    *nout = np;
    for (int i = 0; i < np; i++) out[i] = NULL;
    pn_scope_push();
    pn_array *xx = x, *gg = g;
    if (w->ndim == 2 && x->ndim != 2) { /* fold x's batch axes into its rows, as one GEMM */
        int64_t xs[2] = {-1, x->shape[x->ndim - 1]}, gs[2] = {-1, g->shape[g->ndim - 1]};
        xx = pn_reshape(x, xs, 2), gg = pn_reshape(g, gs, 2);
    }
    pn_array *dx = qq_float_call(g, pn_swapaxes(w, -1, -2), NULL, NULL, c);
    pn_array *dw = qq_float_call(pn_swapaxes(gg, -1, -2), pn_swapaxes(xx, -1, -2), NULL, NULL, c);
    bool ok = dx && dw;
    if (ok) {
        out[0] = pnC_sum_to_shape(dx, x->shape, x->ndim);
        out[1] = pnC_sum_to_shape(dw, w->shape, w->ndim);
        for (int i = 2; i < np; i++) out[i] = pn_zeros_like(in[i]);
        for (int i = 0; i < np; i++) ok &= out[i] != NULL;
    }
    if (!ok) {
        pn_scope_pop();
        for (int i = 0; i < np; i++) out[i] = NULL;
        return -1;
    }
    pn_scope_pop_keep(out, np);
    return 0;
}

/* The custom-vjp closure of each fp mode (its group size and bits are fixed), made on first
 * use and kept for the process: graph nodes refer to the rule without owning it. */
static pn_closure *qq_closures[PNK_QMODE_COUNT];

/* qqmm with a floating w through the mode's custom-vjp closure. */
static pn_array *qq_float_call(pn_array *x, pn_array *w, pn_array *gx, pn_array *gw,
                               const qq_ctx *c)
{
    pn_closure *cf = __atomic_load_n(&qq_closures[c->mode], __ATOMIC_ACQUIRE);
    if (!cf) {
        void *id = (void *)(intptr_t)c->mode;
        pn_closure *f = pn_closure_new(qq_forward, id, NULL);
        pn_closure *b = pn_closure_new(qq_backward, id, NULL);
        pn_closure *made = f && b ? pn_custom_vjp(f, b) : NULL, *expected = NULL;
        if (f) pn_closure_release(f);
        if (b) pn_closure_release(b);
        if (!made) return NULL;
        if (!__atomic_compare_exchange_n(&qq_closures[c->mode], &expected, made, false,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            pn_closure_release(made); /* another thread made it first */
            made = expected;
        }
        cf = made;
    }
    pn_array *in[4] = {x, w, gx, gw}, *out[PN_MAX_OUTPUTS];
    int nout = 0;
    if (pn_closure_call(cf, gx ? 4 : 2, in, &nout, out)) return NULL;
    return nout == 1 ? out[0] : NULL;
}

/* The checks of qqmm: the mode (fp modes only), x's dtype, scales against w, the global
 * scales. Returns the mode id with *c filled, or -1 with an error naming op. */
static int qq_check(const char *op, pn_array *x, pn_array *w, pn_array *scales, int group_size,
                    int bits, const char *mode, pn_array *gx, pn_array *gw, qq_ctx *c)
{
    if (!mode || !*mode) mode = "nvfp4"; /* qqmm's default */
    const int id = quant_args(op, mode, &group_size, &bits);
    if (id < 0) return -1;
    if (id == PNK_QMODE_AFFINE)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Only the 'nvfp4', 'mxfp8' and 'mxfp4' "
                            "modes are supported, got 'affine' (it has no biases argument).", op);
    if (x->dtype != PN_FLOAT32 && x->dtype != PN_FLOAT16 && x->dtype != PN_BFLOAT16)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] x must be float32, float16 or "
                            "bfloat16 but has type %s.", op, pn_dtype_name(x->dtype));
    if (w->dtype == PN_UINT32 && !scales)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Scales must be provided if second argument is quantized.", op);
    if (w->dtype != PN_UINT32 && scales)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Scales must be None when the second "
                            "argument is not quantized (it has type %s).", op,
                            pn_dtype_name(w->dtype));
    if (w->dtype != PN_UINT32 && w->dtype != PN_FLOAT32 && w->dtype != PN_FLOAT16 &&
        w->dtype != PN_BFLOAT16)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] w must be quantized (uint32) or "
                            "float32, float16 or bfloat16 but has type %s.", op,
                            pn_dtype_name(w->dtype));
    if (w->ndim < 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] w must have at least 2 dimensions but has %d.", op, w->ndim);
    if (id == PNK_QMODE_NVFP4 && (!gx) != (!gw))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] For nvfp4 mode, either both "
                            "global_scale_x and global_scale_w must be provided, or neither.", op);
    if (quant_check_global(op, id, gx) || quant_check_global(op, id, gw)) return -1;
    c->mode = id, c->group_size = group_size, c->bits = bits;
    return id;
}

/* See ponte.h. */
pn_array *pn_qqmm(pn_array *x, pn_array *w, pn_array *scales, int group_size, int bits,
                  const char *mode, pn_array *global_scale_x, pn_array *global_scale_w)
{
    pn_array *ins[2] = {x, w};
    if (!pnC_inputs_ok("qqmm", 2, ins)) return NULL;
    if (pnC_failed()) return NULL; /* a NULL optional input coming from a failed op */
    qq_ctx c;
    if (qq_check("qqmm", x, w, scales, group_size, bits, mode, global_scale_x, global_scale_w,
                 &c) < 0)
        return NULL;
    pn_scope_push();
    pn_array *r;
    if (w->dtype == PN_UINT32) {
        pn_array *xh = qq_round(x, &c, global_scale_x);
        r = xh ? qq_product(xh, w, scales, &c, global_scale_w) : NULL;
    } else {
        r = qq_float_call(x, w, global_scale_x, global_scale_w, &c);
    }
    return pnC_scope_return(r);
}

/* See ponte.h. */
pn_array *pn_gather_qqmm(pn_array *x, pn_array *w, pn_array *scales, pn_array *lhs_indices,
                         pn_array *rhs_indices, int group_size, int bits, const char *mode,
                         pn_array *global_scale_x, pn_array *global_scale_w,
                         bool sorted_indices)
{
    char s1[256];
    (void)sorted_indices; /* a hint for a faster kernel; the composition does not need it */
    if (!lhs_indices && !rhs_indices)
        return pn_qqmm(x, w, scales, group_size, bits, mode, global_scale_x, global_scale_w);
    pn_array *ins[2] = {x, w};
    if (!pnC_inputs_ok("gather_qqmm", 2, ins)) return NULL;
    if (pnC_failed()) return NULL;
    qq_ctx c;
    if (qq_check("gather_qqmm", x, w, scales, group_size, bits, mode, global_scale_x,
                 global_scale_w, &c) < 0)
        return NULL;
    if (check_indices("gather_qqmm", lhs_indices, rhs_indices)) return NULL;
    if (x->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_qqmm] x must have at least two "
                        "dimensions but got shape %s.",
                        pnC_shape_str(x->shape, x->ndim, s1, sizeof s1));
    if (scales && (scales->ndim != w->ndim ||
                   memcmp(scales->shape, w->shape, sizeof(int64_t) * (w->ndim - 2))))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[gather_qqmm] w and scales must share their "
                        "batch shape, got scales of shape %s.",
                        pnC_shape_str(scales->shape, scales->ndim, s1, sizeof s1));
    pn_scope_push();
    pn_array *bidx[2];
    if (pnC_gather_indices(x, lhs_indices, w, rhs_indices, bidx)) {
        pn_scope_pop();
        return NULL;
    }
    pn_array *r = pn_qqmm(pnC_take_batch(x, bidx[0]), pnC_take_batch(w, bidx[1]),
                          scales ? pnC_take_batch(scales, bidx[1]) : NULL, c.group_size, c.bits,
                          pnK_qmode_of(c.mode).name, global_scale_x, global_scale_w);
    return pnC_scope_return(r);
}
