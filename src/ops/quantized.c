/* quantized.c — mlx.core.quantize, dequantize and quantized_matmul in MLX's affine format
 * (groups of 32/64/128 values along the last axis, 1-8 bits packed little-endian into uint32
 * words, a scale and a bias per group): the constructors with MLX's checks, the primitives
 * Quantize, Dequantize and QuantizedMatmul with their derivatives and batching rule.
 * Kernels: backend/cpu/quantized.c, backend/cuda/quantized.{c,cu}. */
#include "backend/cpu/quantized.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/quantized.h"
#include "core/core.h"

#include <string.h>

/* ───────────────────────────── arguments ───────────────────────────── */

/* Resolves mode, group_size and bits (0: the mode's default) and checks them. Only "affine"
 * is implemented. Returns 0 or -1 with an error naming op. */
static int quant_args(const char *op, const char *mode, int *group_size, int *bits)
{
    if (mode && *mode && strcmp(mode, "affine") != 0) {
        if (!strcmp(mode, "mxfp4") || !strcmp(mode, "mxfp8") || !strcmp(mode, "nvfp4"))
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[%s] Quantization mode '%s' is not implemented in Ponte; only "
                                "'affine' is.", op, mode);
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid quantization mode '%s'.", op,
                            mode);
    }
    if (*group_size == 0) *group_size = 64;
    if (*bits == 0) *bits = 4;
    if (!pnK_quant_group_ok(*group_size))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The requested group size %d is not supported. The supported "
                            "group sizes are 32, 64, and 128.", op, *group_size);
    if (!pnK_quant_bits_ok(*bits))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The requested number of bits %d is not supported. The "
                            "supported bits are 1, 2, 3, 4, 5, 6 and 8.", op, *bits);
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

/* Checks w_q (uint32, at least 2-d), scales and biases (the same shape: w_q's leading axes and
 * one entry per group) and returns the unpacked extent of w_q's last axis; -1 with an error. */
static int64_t quant_check_packed(const char *op, pn_array *w, pn_array *scales,
                                  pn_array *biases, int group_size, int bits)
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
    if (!quant_float(scales->dtype) || (biases && !quant_float(biases->dtype)))
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

/* The quantized values q of w_q as floats of scales' dtype (dequantized with scale 1, bias 0). */
static pn_array *quant_values(pn_array *w, pn_array *scales, const pnK_quant_params *p)
{
    return pn_dequantize(w, pn_ones_like(scales), pn_zeros_like(scales), p->group_size, p->bits,
                         "affine", PN_NUM_DTYPES);
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

/* Not differentiable (MLX differentiates its composed fallback; the packed result has no
 * meaningful gradient). */
static const pnC_primitive quantize_prim = {
    .name = "Quantize",
    .eval = {[PN_CPU] = pnK_quantize_eval, [PN_GPU] = PNG_EVAL(pnG_quantize_eval)},
};

/* See ponte.h. */
int pn_quantize(pn_array *w, int group_size, int bits, const char *mode, pn_array **out)
{
    char s1[256];
    if (!out) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[quantize] NULL output array.");
    out[0] = out[1] = out[2] = NULL;
    if (!pnC_inputs_ok("quantize", 1, &w)) return -1;
    if (quant_args("quantize", mode, &group_size, &bits)) return -1;
    if (w->ndim < 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[quantize] The matrix to be quantized must have at least 2 dimension "
                            "but it has only %d.", w->ndim);
    if (!quant_float(w->dtype))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[quantize] Only real floating types can be quantized but w has type "
                            "%s.", pn_dtype_name(w->dtype));
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
    const pnK_quant_params p = {.group_size = group_size, .bits = bits};
    const pn_dtype dt[3] = {PN_UINT32, w->dtype, w->dtype};
    const int64_t *shapes[3] = {qs, ss, ss};
    const int nds[3] = {w->ndim, w->ndim, w->ndim};
    return pnC_make_multi(&quantize_prim, &p, sizeof p, 1, &w, 3, dt, shapes, nds, out) ? -1 : 0;
}

/* ───────────────────────────── Dequantize ───────────────────────────── */
/* Inputs (w_q, scales, biases), scales and biases of the output dtype. */

static int dequantize_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    for (int i = 0; i < nargs; i++)
        if (argnums[i] == 0)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[Dequantize::vjp] no gradient wrt the quantized matrix.");
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

/* Linear in (scales, biases): the tangent is the dequantization with the tangents. */
static int dequantize_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *tan, pn_array **out_tan)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    out_tan[0] = NULL;
    if (tan[0])
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[Dequantize::jvp] no JVP wrt the quantized matrix.");
    if (!tan[1] && !tan[2]) return 0;
    pn_scope_push();
    pn_array *ts = tan[1] ? tan[1] : pn_zeros_like(in[1]);
    pn_array *tb = tan[2] ? tan[2] : pn_zeros_like(in[2]);
    out_tan[0] = pnC_scope_return(
        pn_dequantize(in[0], ts, tb, p->group_size, p->bits, "affine", out[0]->dtype));
    return out_tan[0] ? 0 : -1;
}

static const pnC_primitive dequantize_prim = {
    .name = "Dequantize",
    .eval = {[PN_CPU] = pnK_dequantize_eval, [PN_GPU] = PNG_EVAL(pnG_dequantize_eval)},
    .vjp = dequantize_vjp,
    .jvp = dequantize_jvp,
};

/* See ponte.h. */
pn_array *pn_dequantize(pn_array *w, pn_array *scales, pn_array *biases, int group_size,
                        int bits, const char *mode, pn_dtype dtype)
{
    pn_array *ins[2] = {w, scales};
    if (!pnC_inputs_ok("dequantize", 2, ins)) return NULL;
    if (quant_args("dequantize", mode, &group_size, &bits)) return NULL;
    if (!biases)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[dequantize] Biases must be provided for affine quantization.");
    if (w->dtype != PN_UINT32)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dequantize] The matrix should be given as a "
                        "uint32 but it has type %s.", pn_dtype_name(w->dtype));
    if (w->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[dequantize] The matrix to be dequantized must have at least 2 "
                        "dimension but it has only %d.", w->ndim);
    int64_t k = quant_check_packed("dequantize", w, scales, biases, group_size, bits);
    if (k < 0) return NULL;
    pn_array *sb[2] = {scales, biases};
    pn_dtype t = pnC_result_type(2, sb);
    if (dtype == PN_NUM_DTYPES) dtype = t;
    if (!pnC_dtype_valid(dtype) || !pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dequantize] Only real floating types are "
                        "supported but output dtype == %s.", pn_dtype_name(dtype));
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, w->shape, sizeof(int64_t) * w->ndim);
    shape[w->ndim - 1] = k;
    const pnK_quant_params p = {.group_size = group_size, .bits = bits};
    pn_scope_push();
    pn_array *in[3] = {w, cast_to(scales, t), cast_to(biases, t)};
    pn_array *r = pnC_make(&dequantize_prim, &p, sizeof p, 3, in, t, shape, w->ndim);
    /* MLX computes in the scales' dtype and casts the result */
    if (r && dtype != t) r = pn_astype(r, dtype);
    return pnC_scope_return(r);
}

/* ───────────────────────────── QuantizedMatmul ───────────────────────────── */
/* Inputs (x (bx..., M, K), w_q, scales, biases (bw..., rows, ...)), x, scales and biases of
 * the output dtype; output (broadcast(bx, bw)..., M, N). */

static int qmm_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    for (int i = 0; i < nargs; i++)
        if (argnums[i] == 1)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[QuantizedMatmul::vjp] no gradient wrt the quantized weights.");
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *x = in[0], *w = in[1], *g = cot[0], *dw = NULL;
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        pn_array *r = NULL;
        if (argnums[i] == 0) {
            /* x @ W^T: dx = g @ W; x @ W: dx = g @ W^T */
            r = pnC_sum_to_shape(pn_quantized_matmul(g, w, in[2], in[3], !p->transpose,
                                                 p->group_size, p->bits, "affine"),
                             x->shape, x->ndim);
        } else {
            if (!dw) {
                /* the gradient of the dequantized W, summed over broadcast batch axes */
                int64_t ws[PNC_MAX_NDIM];
                memcpy(ws, in[2]->shape, sizeof(int64_t) * in[2]->ndim);
                ws[in[2]->ndim - 1] *= p->group_size;
                pn_array *gx = g, *xx = x;
                if (w->ndim == 2 && x->ndim > 2) { /* one GEMM over the folded batch */
                    int64_t gs2[2] = {-1, g->shape[g->ndim - 1]}, xs2[2] = {-1, x->shape[x->ndim - 1]};
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

/* Linear in x and in (scales, biases) separately: x' W^T + x (dequantize(w, s', b'))^T. */
static int qmm_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    out_tan[0] = NULL;
    if (tan[1])
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[QuantizedMatmul::jvp] no JVP wrt the quantized matrix.");
    pn_scope_push();
    pn_array *r = NULL;
    bool ok = true;
    if (tan[0])
        ok &= (r = pn_quantized_matmul(tan[0], in[1], in[2], in[3], p->transpose,
                                       p->group_size, p->bits, "affine")) != NULL;
    if (tan[2] || tan[3]) {
        pn_array *ts = tan[2] ? tan[2] : pn_zeros_like(in[2]);
        pn_array *tb = tan[3] ? tan[3] : pn_zeros_like(in[3]);
        pn_array *dw = pn_dequantize(in[1], ts, tb, p->group_size, p->bits, "affine",
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
    int rank = 0;
    bool mapped = false;
    for (int k = 0; k < 4; k++) {
        int r = in[k]->ndim - (in_axes[k] >= 0);
        rank = r > rank ? r : rank;
        mapped |= in_axes[k] >= 0;
    }
    pn_scope_push();
    pn_array *v[4];
    for (int k = 0; k < 4; k++) v[k] = pnC_batch_front(in[k], in_axes[k], rank);
    if (in_axes[1] >= 0 || in_axes[2] >= 0 || in_axes[3] >= 0) {
        /* one batch shape for w_q, scales and biases */
        int64_t bs[PNC_MAX_NDIM], tmp[PNC_MAX_NDIM];
        int nb = 0;
        for (int k = 1; k < 4 && v[k]; k++) {
            nb = pnC_broadcast_shapes("quantized_matmul", bs, nb, pn_shape(v[k]),
                                      pn_ndim(v[k]) - 2, tmp);
            if (nb < 0) break;
            memcpy(bs, tmp, sizeof(int64_t) * nb);
        }
        for (int k = 1; k < 4 && nb >= 0; k++) {
            if (!v[k]) break;
            memcpy(tmp, bs, sizeof(int64_t) * nb);
            memcpy(tmp + nb, pn_shape(v[k]) + pn_ndim(v[k]) - 2, 2 * sizeof(int64_t));
            v[k] = pn_broadcast_to(v[k], tmp, nb + 2);
        }
    }
    out[0] = pn_quantized_matmul(v[0], v[1], v[2], v[3], p->transpose, p->group_size, p->bits,
                                 "affine");
    out_axes[0] = mapped ? 0 : -1;
    if (!out[0]) {
        pn_scope_pop();
        return -1;
    }
    pn_scope_pop_keep(out, 1);
    return 0;
}

static const pnC_primitive qmm_prim = {
    .name = "QuantizedMatmul",
    .eval = {[PN_CPU] = pnK_qmm_eval, [PN_GPU] = PNG_EVAL(pnG_qmm_eval)},
    .vjp = qmm_vjp,
    .jvp = qmm_jvp,
    .vmap = qmm_vmap,
};

/* See ponte.h. */
pn_array *pn_quantized_matmul(pn_array *x, pn_array *w, pn_array *scales, pn_array *biases,
                              bool transpose, int group_size, int bits, const char *mode)
{
    char s1[256];
    pn_array *ins[3] = {x, w, scales};
    if (!pnC_inputs_ok("quantized_matmul", 3, ins)) return NULL;
    if (quant_args("quantized_matmul", mode, &group_size, &bits)) return NULL;
    if (!biases)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[quantized_matmul] Biases must be provided for affine quantization.");
    int64_t k = quant_check_packed("quantized_matmul", w, scales, biases, group_size, bits);
    if (k < 0) return NULL;
    int64_t inner = transpose ? k : w->shape[w->ndim - 2];
    int64_t outer = transpose ? w->shape[w->ndim - 2] : k;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != inner)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[quantized_matmul] Last dimension of first input with shape (..., %lld) "
                        "does not match the expanded quantized matrix (%lld, %lld) computed from "
                        "shape %s with group_size=%d, bits=%d and transpose=%s",
                        x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL, (long long)inner,
                        (long long)outer, pnC_shape_str(w->shape, w->ndim, s1, sizeof s1),
                        group_size, bits, transpose ? "true" : "false");
    pn_array *xsb[3] = {x, scales, biases};
    pn_dtype t = pnC_result_type(3, xsb);
    if (!quant_float(t))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[quantized_matmul] Only real floating types are "
                        "supported, but the inputs promote to %s.", pn_dtype_name(t));
    bool vec = x->ndim == 1;
    int64_t shape[PNC_MAX_NDIM];
    int xb = vec ? 0 : x->ndim - 2;
    int nb = pnC_broadcast_shapes("quantized_matmul", x->shape, xb, w->shape, w->ndim - 2, shape);
    if (nb < 0) return NULL;
    shape[nb] = vec ? 1 : x->shape[x->ndim - 2];
    shape[nb + 1] = outer;
    const pnK_quant_params p = {.group_size = group_size, .bits = bits, .transpose = transpose};
    pn_scope_push();
    pn_array *x2 = vec ? pn_expand_dims(x, (int[]){0}, 1) : x;
    pn_array *in[4] = {cast_to(x2, t), w, cast_to(scales, t), cast_to(biases, t)};
    pn_array *r = pnC_make(&qmm_prim, &p, sizeof p, 4, in, t, shape, nb + 2);
    if (r && vec) r = pn_squeeze(r, (int[]){-2}, 1);
    return pnC_scope_return(r);
}
