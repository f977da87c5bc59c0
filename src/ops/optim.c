/* optim.c — fused optimizer steps as primitives: AdamUpdate, one node with three outputs
 * (parameter, first and second moments) that the Adam/AdamW rules of src/nn/optimizers.c use
 * instead of a dozen elementwise nodes. Kernels: backend/cpu/optim.c, backend/cuda/optim.c. */
#include "ops/optim.h"

#include "backend/cpu/optim.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <string.h>

/* No vjp/jvp/vmap: the constructor declines while a transformation traces (the caller then
 * composes the step), so these are never needed. */
static const pnC_primitive adam_update_prim = {
    .name = "AdamUpdate",
    .eval = {[PN_CPU] = pnK_adam_update_eval, [PN_GPU] = PNG_EVAL(pnG_adam_update_eval)},
};

/* See optim.h. */
int pnN_adam_update(pn_array *p, pn_array *g, pn_array *m, pn_array *v,
                    const pnN_adam_params *prm, pn_array **out3)
{
    pn_array *in[4] = {p, g, m, v};
    if (!out3 || !prm)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[adam_update] NULL params or outputs.");
    if (!pnC_inputs_ok("adam_update", 4, in)) return -1;
    /* under a transformation (grad, vjp, jvp, vmap of a step) the composed ops keep it
     * differentiable and batchable */
    if (pnC_tracing()) return 1;
    pn_dtype t = p->dtype;
    if (!pnC_is_float(t)) return 1;
    for (int k = 1; k < 4; k++) {
        if (in[k]->dtype != t || in[k]->ndim != p->ndim) return 1;
        if (memcmp(in[k]->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0) return 1;
    }
    const pn_dtype dt[3] = {t, t, t};
    const int64_t *shapes[3] = {p->shape, p->shape, p->shape};
    const int nds[3] = {p->ndim, p->ndim, p->ndim};
    return pnC_make_multi(&adam_update_prim, prm, sizeof *prm, 4, in, 3, dt, shapes, nds, out3)
               ? -1
               : 0;
}
