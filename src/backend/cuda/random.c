/* random.c — the GPU eval of RandomBits (src/ops/random.c): makes the keys contiguous on the
 * device and runs the threefry kernel (random.cu) over one block per key. The matrix square
 * root (SqrtSVD) stays on the CPU. */
#include "backend/cuda/eval.h"
#include "backend/cuda/random.h"
#include "core/core.h"

/* See eval.h. */
int pnG_random_bits_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o) < 0) return -1;
    pn_array *keys = in[0];
    int64_t nkeys = keys->size / 2;
    if (o->size == 0 || nkeys == 0) return 0;
    pn_array *k = pnC_contiguous(keys);
    if (!k) return -1;
    int64_t nbytes = o->size / nkeys * (int64_t)pn_dtype_size(o->dtype);
    int rc = pnG_random_bits(pnC_data(k), nkeys, pnC_data(o), nbytes, node->stream.index);
    pnC_decref(k);
    return rc;
}
