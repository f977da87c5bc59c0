/* optim.c — GPU eval of OptimUpdate (src/ops/optim.c): the C glue around the launcher of
 * optim.cu. Dense inputs only (strided ones go to the CPU kernel on host copies); p and the
 * slots donate their buffers to the outputs when nothing else holds them. */
#include "backend/cuda/optim.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

/* See eval.h. */
int pnG_optim_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnN_optim_params *prm = PNC_PARAMS(node, pnN_optim_params);
    const pn_dtype t = in[0]->dtype;
    if (pnG_optim_update(t, 0, NULL, NULL, prm, node->stream.index) != 0) return PNG_UNSUPPORTED;
    const int64_t n = out[0]->size;
    for (int k = 0; k < node->nin; k++)
        if (n > 0 && !pnC_row_contiguous(in[k])) return PNG_UNSUPPORTED;
    const void *ip[2 + PNN_OPT_MAX_SLOTS] = {NULL};
    for (int k = 0; k < node->nin; k++) ip[k] = n ? pnC_data(in[k]) : NULL; /* before donation */
    for (int j = 0; j < node->nout; j++) /* p -> p', slot s -> slot s' */
        if (!(n > 0 && pnC_donate(out[j], in[j ? j + 1 : 0])) && pnC_alloc_output(out[j])) return -1;
    if (n == 0) return 0;
    void *op[1 + PNN_OPT_MAX_SLOTS] = {NULL};
    for (int j = 0; j < node->nout; j++) op[j] = pnC_data(out[j]);
    return pnG_optim_update(t, n, op, ip, prm, node->stream.index);
}
