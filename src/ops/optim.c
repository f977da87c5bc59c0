/* optim.c — the fused optimizer step as one primitive, OptimUpdate: one node reading the
 * parameter, its gradient and the rule's state slots and writing the new parameter and slots,
 * for every rule of the table in optim.h (SGD, momentum SGD, Adam/AdamW, RMSprop, Adagrad,
 * AdaDelta, Adamax, Lion), instead of five to fifteen elementwise nodes per parameter.
 * Kernels: backend/cpu/optim.c, backend/cuda/optim.c. */
#include "ops/optim.h"

#include "backend/cpu/optim.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <string.h>

static bool fused_on = true;

/* See optim.h. */
bool pnN_optim_set_fused(bool on)
{
    bool was = fused_on;
    fused_on = on;
    return was;
}

/* See optim.h. */
int pnN_optim_nslots(int rule)
{
    switch (rule) {
#define PNN_OPTIM_SLOTS(E, N, S)                                                               \
    case E: return S;
        PNN_OPTIM_RULES(PNN_OPTIM_SLOTS)
#undef PNN_OPTIM_SLOTS
    default: return -1;
    }
}

/* No vjp/jvp/vmap: the constructor declines while a transformation traces (the caller then
 * composes the step), so these are never needed. */
const pnC_primitive optim_update_prim = {
    .name = "OptimUpdate",
    .eval = {[PN_CPU] = pnK_optim_update_eval, [PN_GPU] = PNG_EVAL(pnG_optim_update_eval)},
};

/* See optim.h. */
int pnN_optim_update(pn_array *p, pn_array *g, pn_array *const *slots, const pnN_optim_params *prm,
                     pn_array **out)
{
    const int ns = prm ? pnN_optim_nslots(prm->rule) : 0;
    if (!out || !prm || (ns > 0 && !slots))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optim_update] NULL params, slots or outputs.");
    if (ns < 0) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optim_update] Unknown rule %d.", prm->rule);
    pn_array *in[2 + PNN_OPT_MAX_SLOTS] = {p, g};
    for (int s = 0; s < ns; s++) in[2 + s] = slots[s];
    if (!pnC_inputs_ok("optim_update", 2 + ns, in)) return -1;
    /* under a transformation (grad, vjp, jvp, vmap of a step) the composed ops keep it
     * differentiable and batchable */
    if (!fused_on || pnC_tracing()) return 1;
    pn_dtype t = p->dtype;
    if (!pnC_is_float(t)) return 1;
    for (int k = 1; k < 2 + ns; k++) {
        if (in[k]->dtype != t || in[k]->ndim != p->ndim) return 1;
        if (memcmp(in[k]->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0) return 1;
    }
    pn_dtype dt[1 + PNN_OPT_MAX_SLOTS];
    const int64_t *shapes[1 + PNN_OPT_MAX_SLOTS];
    int nds[1 + PNN_OPT_MAX_SLOTS];
    for (int j = 0; j <= ns; j++) {
        dt[j] = t;
        shapes[j] = p->shape;
        nds[j] = p->ndim;
    }
    return pnC_make_multi(&optim_update_prim, prm, sizeof *prm, 2 + ns, in, 1 + ns, dt, shapes, nds, out) ? -1
                                                                                                          : 0;
}
