/* fp8.c — mlx.core.to_fp8 / from_fp8: ToFP8, one primitive over the e4m3 codec of the mxfp8
 * quantizer (CPU kernel here, GPU kernel in backend/cuda/fp8.cu), and from_fp8 as a lookup of
 * the 256 codes' values (a take, so it runs on every backend). */
#include "core/core.h"

#include <math.h>

#include "backend/cpu/quant_codec.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/fp8.h"

/* ToFP8 on the CPU: float32 x (any strides) to uint8 codes through the codec the mxfp8
 * quantizer uses (backend/cpu/quant_codec.h), which the GPU kernel shares bit for bit. */
static int to_fp8_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    pn_array *x = pnC_contiguous(in[0]);
    if (!x) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[to_fp8] Out of memory."), -1;
    const float *src = pnC_data(x);
    uint8_t *dst = pnC_data(o);
    const int64_t n = o->size;
#pragma omp parallel for if (n > PNC_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++) dst[i] = pnK_e4m3_code(src[i]);
    pnC_decref(x);
    return 0;
}

/* Elementwise: the batch axis stays where it is. */
static int to_fp8_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                       int *out_axes)
{
    out[0] = pn_to_fp8(in[0]);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

/* No derivatives, as MLX's ToFP8 (a gradient through it is an error). */
const pnC_primitive to_fp8_prim = {
    .name = "ToFP8",
    .eval = {[PN_CPU] = to_fp8_eval, [PN_GPU] = PNG_EVAL(pnG_to_fp8_eval)},
    .vmap = to_fp8_vmap,
};

/* See ponte.h. One ToFP8 node over x as float32 (exact for float16 and bfloat16). */
pn_array *pn_to_fp8(pn_array *x)
{
    if (!pnC_inputs_ok("to_fp8", 1, &x)) return NULL;
    pn_dtype t = pn_array_dtype(x);
    if (!pnC_is_float(t))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[to_fp8] Only real floating types are supported but x.dtype() == %s.",
                        pn_dtype_name(t));
    pn_scope_push();
    pn_array *f = t == PN_FLOAT32 ? x : pn_astype(x, PN_FLOAT32);
    return pnC_scope_return(f ? pnC_make(&to_fp8_prim, NULL, 0, 1, &f, PN_UINT8, pn_shape(x), pn_ndim(x)) : NULL);
}

/* Fills table with the 256 values of from_fp8 as float32: MLX's reading of e4m3, with 0x7f and
 * 0xff NaN (signed as their code). */
static void fp8_table(float *table)
{
    for (int c = 0; c < 256; c++)
        table[c] = (c & 0x7f) == 0x7f ? copysignf(NAN, c & 0x80 ? -1.0f : 1.0f) : pnK_e4m3_value(c);
}

/* See ponte.h. A gather from the 256-entry table, then a cast (exact: every e4m3 value is a
 * float16 and a bfloat16). */
pn_array *pn_from_fp8(pn_array *x, pn_dtype dtype)
{
    if (!pnC_inputs_ok("from_fp8", 1, &x)) return NULL;
    pn_dtype t = pn_array_dtype(x);
    if (t != PN_UINT8)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[from_fp8] Input must have type uint8 but x.dtype() == %s.", pn_dtype_name(t));
    if (!pnC_dtype_valid(dtype) || !pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[from_fp8] Only real floating types are supported but dtype == %s.",
                        pnC_dtype_valid(dtype) ? pn_dtype_name(dtype) : "?");
    pn_scope_push();
    int64_t n = 256;
    float values[256];
    fp8_table(values);
    pn_array *table = pn_array_from_data(values, &n, 1, PN_FLOAT32);
    pn_array *v = pn_take(table, pn_astype(x, PN_INT32), 0);
    return pnC_scope_return(dtype == PN_FLOAT32 ? v : pn_astype(v, dtype));
}

