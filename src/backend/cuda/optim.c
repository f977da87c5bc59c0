/* optim.c — GPU eval of OptimUpdate (src/ops/optim.c): the C glue around the launcher of
 * optim.cu. Strided inputs (a weight's gradient is often a transposed product) are copied
 * dense on the device first; p and the slots donate their buffers to the outputs when nothing
 * else holds them. */
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
    const int stream = node->stream.index;
    pn_array *dense[2 + PNN_OPT_MAX_SLOTS];
    if (pnG_make_dense(node->nin, in, dense, stream)) return -1;
    const void *ip[2 + PNN_OPT_MAX_SLOTS] = {NULL};
    for (int k = 0; k < node->nin; k++) ip[k] = n ? pnC_data(dense[k]) : NULL; /* before donation */
    int rc = 0;
    for (int j = 0; j < node->nout && rc == 0; j++) { /* p -> p', slot s -> slot s' */
        pn_array *src = in[j ? j + 1 : 0];
        bool donated = n > 0 && dense[j ? j + 1 : 0] == src && pnC_donate(out[j], src);
        if (!donated && pnC_alloc_output(out[j])) rc = -1;
    }
    if (rc == 0 && n > 0) {
        void *op[1 + PNN_OPT_MAX_SLOTS] = {NULL};
        for (int j = 0; j < node->nout; j++) op[j] = pnC_data(out[j]);
        rc = pnG_optim_update(t, n, op, ip, prm, stream);
    }
    pnG_release_dense(node->nin, in, dense);
    return rc;
}
