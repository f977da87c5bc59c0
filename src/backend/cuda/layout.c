/* layout.c — pnG_layout construction for the GPU kernels: broadcasts every input to the
 * output's shape (stride 0 on broadcast dims) and merges the dims that are contiguous for
 * all operands, through the same pnC_nditer the CPU kernels use. */
#include "backend/cuda/eval.h"
#include "backend/cuda/gpu.h"

int pnG_make_layout(pnG_layout *L, int nop, pn_array *const *ops)
{
    if (nop < 1 || nop > PNG_MAX_OPS) return PNG_UNSUPPORTED;
    const pn_array *o = ops[0];
    int nd = o->ndim;
    int64_t strides_buf[PNG_MAX_OPS][PNC_MAX_NDIM];
    const int64_t *strides[PNG_MAX_OPS];
    for (int k = 0; k < nop; k++) {
        const pn_array *a = ops[k];
        int lead = nd - a->ndim;
        if (lead < 0) return PNG_UNSUPPORTED;
        for (int d = 0; d < nd; d++) {
            int ad = d - lead;
            strides_buf[k][d] = (ad < 0 || a->shape[ad] == 1) ? 0 : a->strides[ad];
        }
        strides[k] = strides_buf[k];
    }
    pnC_nditer it;
    pnC_nditer_init(&it, nd, o->shape, nop, strides);
    if (it.ndim > PNG_MAX_NDIM) return PNG_UNSUPPORTED;
    L->ndim = it.ndim;
    L->nop = nop;
    L->size = 1;
    for (int d = 0; d < it.ndim; d++) {
        L->shape[d] = it.shape[d];
        L->size *= it.shape[d];
        for (int k = 0; k < nop; k++) L->strides[k][d] = it.strides[k][d];
    }
    return 0;
}
