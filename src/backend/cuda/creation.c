/* creation.c — GPU evals of the creation primitives whose CPU kernels write element values
 * on the host (src/ops/creation.c): Arange and Linspace (sequence), Eye and Tri, TriMask
 * (tril/triu). Same formulas as the CPU kernels; kernels in copy.cu. */
#include "backend/cuda/copy.h"
#include "backend/cuda/eval.h"
#include "ops/creation.h"


/* Arange and Linspace, as the CPU's sequence_eval: integer arange casts start and start+step
 * to the dtype and steps by their difference with wrap-around; everything else is
 * start + i * step in double, converted, with linspace ending exactly at stop. */
int pnG_sequence_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const sequence_params *p = PNC_PARAMS(node, sequence_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int64_t n = o->size;
    if (n == 0) return 0;
    pn_dtype dt = o->dtype;
    bool int_mode = pnC_is_integer(dt) && !p->linspace;
    uint64_t base = 0, istep = 0;
    if (int_mode) { /* host scalars from the params, exactly as the CPU kernel */
        int64_t s0 = 0, s1 = 0;
        unsigned char tmp0[8], tmp1[8];
        pnC_store_f64(tmp0, dt, p->start);
        pnC_store_f64(tmp1, dt, p->start + p->step);
        pnC_convert(tmp0, dt, &s0, PN_INT64, 1);
        pnC_convert(tmp1, dt, &s1, PN_INT64, 1);
        base = (uint64_t)s0;
        istep = (uint64_t)s1 - (uint64_t)s0;
    }
    double step = !p->linspace ? p->step : n > 1 ? (p->stop - p->start) / (double)(n - 1) : 0;
    return pnG_launch_sequence(pnC_data(o), dt, n, int_mode, base, istep, p->start, step,
                               p->stop, p->linspace, node->stream.index);
}

/* Eye (ones on diagonal k) and Tri (ones at and below it), zeros elsewhere. */
int pnG_eye_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const eye_params *p = PNC_PARAMS(node, eye_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    int64_t n = o->shape[0], m = o->shape[1];
    return pnG_launch_band(pnC_data(o), o->dtype, n, n, m, p->k,
                           p->tri ? PNG_BAND_TRI : PNG_BAND_EYE, node->stream.index);
}

/* TriMask: a dense copy of the input (its own buffer when donated) with the other triangle
 * of each matrix (the last two axes) zeroed. */
int pnG_trimask_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const trimask_params *p = PNC_PARAMS(node, trimask_params);
    pn_array *o = out[0];
    if (!pnC_donate(o, in[0])) {
        if (pnC_alloc_output(o)) return -1;
        if (o->size) pnC_copy_to_contiguous(in[0], pnC_data(o));
    }
    int64_t n = o->shape[o->ndim - 2], m = o->shape[o->ndim - 1];
    if (o->size == 0) return 0;
    return pnG_launch_band(pnC_data(o), o->dtype, o->size / m, n, m, p->k,
                           p->upper ? PNG_BAND_TRIU : PNG_BAND_TRIL, node->stream.index);
}
