/* elementwise.c — GPU eval functions of the elementwise primitives (unary, binary, divmod,
 * where): the C glue around the launchers of elementwise_*.cu. Mirrors the CPU driver (ew_run
 * in backend/cpu/elementwise.c): a flat walk when every input is dense or a scalar, else a
 * strided layout; an input's buffer is donated to the output when nothing else holds it. */
#include "backend/cuda/elementwise.h"
#include "backend/cpu/elementwise.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

typedef int (*ew_launch_fn)(int op, const struct pnK_ew_params *prm, pn_dtype t,
                            const pnG_ew_args *a);

/* Runs launch(op, prm, t) over out = f(in[0..nin)), inputs broadcast to out's shape, on the
 * node's stream. Declines (PNG_UNSUPPORTED) before touching any buffer. */
static int ew_gpu(const pnC_node *node, int nin, pn_array *const *in, pn_array *out,
                  ew_launch_fn launch, int op, const pnK_ew_params *prm, pn_dtype t, bool donate)
{
    if (launch(op, prm, t, NULL) != 0) return PNG_UNSUPPORTED;
    const int64_t n = out->size;
    pnG_ew_args a = {.n = n, .flat = true, .stream = node->stream.index};
    for (int k = 0; k < nin; k++) { /* before any donation moves a buffer away */
        a.in[k] = in[k]->size ? pnC_data(in[k]) : NULL;
        a.scalar[k] = in[k]->size != n;
        a.flat &= in[k]->size == 1 || (in[k]->size == n && pnC_row_contiguous(in[k]));
    }
    /* a strided walk of more dims than a layout holds may be declined below: keep the inputs */
    if (!a.flat && out->ndim > PNG_MAX_NDIM) donate = false;
    bool given = false;
    for (int k = 0; donate && k < nin && !given; k++)
        if (in[k]->size == n && n > 0) given = pnC_donate(out, in[k]);
    if (!given && pnC_alloc_output(out)) return -1;
    if (n == 0) return 0;
    a.out = pnC_data(out);
    if (!a.flat) {
        pn_array *ops[PNG_MAX_OPS] = {out};
        for (int k = 0; k < nin; k++) ops[k + 1] = in[k];
        int rc = pnG_make_layout(&a.layout, nin + 1, ops);
        if (rc) return rc;
    }
    return launch(op, prm, t, &a);
}

int pnG_unary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    return ew_gpu(node, 1, in, out[0], pnG_ew_unary, prm->op, prm, in[0]->dtype, true);
}

int pnG_binary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    return ew_gpu(node, 2, in, out[0], pnG_ew_binary, prm->op, prm, in[0]->dtype, true);
}

int pnG_divmod_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params prm = {0};
    pn_dtype t = in[0]->dtype;
    if (pnG_ew_binary(PNK_B_FLOOR_DIVIDE, &prm, t, NULL) ||
        pnG_ew_binary(PNK_B_REMAINDER, &prm, t, NULL))
        return PNG_UNSUPPORTED;
    /* both outputs read both inputs: no donation */
    int rc = ew_gpu(node, 2, in, out[0], pnG_ew_binary, PNK_B_FLOOR_DIVIDE, &prm, t, false);
    if (rc) return rc;
    return ew_gpu(node, 2, in, out[1], pnG_ew_binary, PNK_B_REMAINDER, &prm, t, false);
}

int pnG_where_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    if (in[0]->dtype != PN_BOOL) return PNG_UNSUPPORTED;
    const pnK_ew_params prm = {0};
    return ew_gpu(node, 3, in, out[0], pnG_ew_where, 0, &prm, out[0]->dtype, true);
}
