/* random.c — the GPU evals of RandomBits (src/ops/random.c): makes the keys contiguous on the
 * device and runs the threefry kernel (random.cu) over one block per key; and of SqrtSVD, the
 * matrix square root of multivariate_normal (the CPU kernel's sweeps, a thread per matrix). */
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

/* See eval.h. */
int pnG_sqrt_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o) < 0) return -1;
    if (o->size == 0) return 0;
    int64_t n = o->shape[o->ndim - 1];
    pn_array *a = pnC_contiguous(in[0]);
    if (!a) return -1;
    int rc = pnG_sqrt_svd(pnC_data(a), pnC_data(o), n, o->size / (n * n), node->stream.index);
    pnC_decref(a);
    return rc;
}
