/* scan.c — GPU eval function of Scan: the input's strides are read as they are (no copy),
 * the other dims merge into lines whose start offsets (input and dense output) the kernels of
 * scan.cu compute. */
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gpu.h"
#include "backend/cuda/reduce.h"

/* See eval.h. */
int pnG_scan_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_scan_params *p = PNC_PARAMS(node, pnK_scan_params);
    pn_array *x = in[0], *o = out[0];
    if (o->dtype != x->dtype || p->op == PNK_AND || p->op == PNK_OR) return PNG_UNSUPPORTED;
    if (p->op == PNK_LOGADDEXP && !pnC_is_float(x->dtype) && x->dtype != PN_COMPLEX64)
        return PNG_UNSUPPORTED;
    /* The scanned axis and the others (the flattened input when PN_ALL_AXES). */
    int64_t oshape[PNC_MAX_NDIM], ostr[PNC_MAX_NDIM], ks[PNC_MAX_NDIM], kin[PNC_MAX_NDIM],
        kout[PNC_MAX_NDIM];
    int nk = 0;
    int64_t n, is, os;
    if (p->axis == PN_ALL_AXES) {
        if (x->ndim > 1 && !pnC_row_contiguous(x)) return PNG_UNSUPPORTED;
        n = x->size;
        is = 1;
        os = 1;
    } else {
        if (p->axis < 0 || p->axis >= x->ndim) return PNG_UNSUPPORTED;
        for (int i = 0; i < o->ndim; i++) oshape[i] = o->shape[i];
        pnC_row_strides(oshape, o->ndim, ostr);
        for (int i = 0; i < x->ndim; i++)
            if (i != p->axis) {
                ks[nk] = x->shape[i];
                kin[nk] = x->strides[i];
                kout[nk++] = ostr[i];
            }
        n = x->shape[p->axis];
        is = x->strides[p->axis];
        os = ostr[p->axis];
    }
    pnG_dims K;
    if (pnG_merge_dims(&K, nk, ks, kin, kout)) return PNG_UNSUPPORTED;
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    int rc = pnG_scan(p->op, x->dtype, &K, o->size / (n ? n : 1), n, is, os, p->reverse,
                      p->inclusive, pnC_data(x), pnC_data(o), node->stream.index);
    return rc == PNG_UNSUPPORTED ? pn_set_error(PN_ERR_BACKEND, "[scan] No GPU kernel.") : rc;
}
