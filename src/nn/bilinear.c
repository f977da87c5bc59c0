/* bilinear.c — mlx.nn.Bilinear as a function: y_o = x2 . (W_o x1) + b_o with MLX's weight
 * layout (output, input2, input1). Composite: two matmuls (x1 against every W_o at once, then a
 * batched product with x2), so gradients and the GPU come from the ops. */
#include "core/core.h"

#include <string.h>

#define SHAPE(a) pnC_shape_str((a)->shape, (a)->ndim, (char[128]){0}, 128)

/* y[..., o] = sum_{j,k} x2[..., j] w[o, j, k] x1[..., k] + bias[o] for x1 (..., in1), x2 (...,
 * in2) with the same leading shape, w (out, in2, in1) and bias (out,) or NULL. Returns (...,
 * out) in the promoted dtype. */
pn_array *pn_nn_bilinear(pn_array *x1, pn_array *x2, pn_array *weight, pn_array *bias)
{
    if (!pnC_inputs_ok("bilinear", 3, (pn_array *[]){x1, x2, weight})) return NULL;
    if (bias && !pnC_inputs_ok("bilinear", 1, &bias)) return NULL;
    if (weight->ndim != 3)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bilinear] weight must have shape (output_dims, input2_dims, input1_dims), got %s.",
                        SHAPE(weight));
    int64_t out = weight->shape[0], in2 = weight->shape[1], in1 = weight->shape[2];
    if (x1->ndim < 1 || x2->ndim < 1 || x1->shape[x1->ndim - 1] != in1 || x2->shape[x2->ndim - 1] != in2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bilinear] Inputs of shapes %s and %s do not match weight %s (their last dimensions "
                        "must be %lld and %lld).",
                        SHAPE(x1), SHAPE(x2), SHAPE(weight), (long long)in1, (long long)in2);
    if (x1->ndim != x2->ndim ||
        memcmp(x1->shape, x2->shape, sizeof(int64_t) * (size_t)(x1->ndim - 1)) != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bilinear] The inputs must have the same leading dimensions, got %s and %s.", SHAPE(x1),
                        SHAPE(x2));
    if (bias && (bias->ndim != 1 || bias->shape[0] != out))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[bilinear] bias must have shape (%lld,), got %s.",
                        (long long)out, SHAPE(bias));
    pn_scope_push();
    int64_t rows = pnC_shape_size(x1->shape, x1->ndim - 1);
    /* (rows, in1) @ (in1, out * in2) -> (rows, out, in2), then @ x2 as (rows, in2, 1) */
    pn_array *wt = pn_transpose(pn_reshape(weight, (int64_t[]){out * in2, in1}, 2), NULL, 0);
    pn_array *y = pn_matmul(pn_reshape(x1, (int64_t[]){rows, in1}, 2), wt);
    y = pn_matmul(pn_reshape(y, (int64_t[]){rows, out, in2}, 3), pn_reshape(x2, (int64_t[]){rows, in2, 1}, 3));
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, x1->shape, sizeof(int64_t) * (size_t)x1->ndim);
    shape[x1->ndim - 1] = out;
    y = pn_reshape(y, shape, x1->ndim);
    if (bias) y = pn_add(y, bias);
    return pnC_scope_return(y);
}
