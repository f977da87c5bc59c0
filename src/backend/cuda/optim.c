/* optim.c — GPU eval of AdamUpdate (src/ops/optim.c): the C glue around the launcher of
 * optim.cu. Dense inputs only (strided ones go to the CPU kernel on host copies); p, m, v
 * donate their buffers to p', m', v' when nothing else holds them. */
#include "backend/cuda/optim.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

/* See eval.h. */
int pnG_adam_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnN_adam_params *prm = PNC_PARAMS(node, pnN_adam_params);
    const pn_dtype t = in[0]->dtype;
    if (pnG_adam_update(t, 0, NULL, NULL, prm, node->stream.index) != 0) return PNG_UNSUPPORTED;
    const int64_t n = out[0]->size;
    for (int k = 0; k < 4; k++)
        if (n > 0 && !pnC_row_contiguous(in[k])) return PNG_UNSUPPORTED;
    const void *ip[4];
    for (int k = 0; k < 4; k++) ip[k] = n ? pnC_data(in[k]) : NULL; /* before donation */
    static const int donor[3] = {0, 2, 3}; /* p -> p', m -> m', v -> v' */
    for (int j = 0; j < 3; j++)
        if (!(n > 0 && pnC_donate(out[j], in[donor[j]])) && pnC_alloc_output(out[j])) return -1;
    if (n == 0) return 0;
    void *op[3];
    for (int j = 0; j < 3; j++) op[j] = pnC_data(out[j]);
    return pnG_adam_update(t, n, op, ip, prm, node->stream.index);
}
