/* fp8.c — GPU eval of ToFP8 (src/ops/fp8.c): the C glue around the launcher of fp8.cu.
 * A strided input is copied dense on the device first. */
#include "backend/cuda/fp8.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

/* See fp8.h. */
int pnG_to_fp8_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    const int stream = node->stream.index;
    pn_array *dense[1];
    if (pnG_make_dense(1, in, dense, stream)) return -1;
    int rc = pnG_launch_to_fp8(pnC_data(dense[0]), pnC_data(o), o->size, stream);
    pnG_release_dense(1, in, dense);
    return rc;
}
