/* depends.c — mlx.core.depends: arrays equal to their inputs whose nodes also take extra
 * dependencies, so that evaluating an output evaluates the dependencies first. The primitive
 * is a zero-copy view of its first input on either device; derivatives and batching flow to
 * that input only. */
#include "core/core.h"
#include "backend/cuda/eval.h"

#include <stdlib.h>

static int depends_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
    return 0;
}

static int depends_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) {
        grads[i] = NULL;
        if (argnums[i] != 0 || !cot[0]) continue;
        grads[i] = pnC_alias(cot[0]);
        if (!grads[i]) return -1;
    }
    return 0;
}

static int depends_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? pnC_alias(tan[0]) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

extern const pnC_primitive depends_prim;

/* The batched node keeps the (batched or not) dependencies, so they still run first. */
static int depends_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                        pn_array **out, int *out_axes)
{
    out[0] = pnC_make(&depends_prim, NULL, 0, node->nin, in, in[0]->dtype, in[0]->shape,
                      in[0]->ndim);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

const pnC_primitive depends_prim = {
    .name = "Depends",
    .eval = {[PN_CPU] = depends_eval, [PN_GPU] = PNG_EVAL(depends_eval)},
    .vjp = depends_vjp,
    .jvp = depends_jvp,
    .vmap = depends_vmap,
};

int pn_depends(pn_array *const *inputs, int n, pn_array *const *dependencies, int ndeps,
               pn_array **out)
{
    if (n < 0 || ndeps < 0 || (n > 0 && (!inputs || !out)) || (ndeps > 0 && !dependencies))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[depends] Bad array counts (%d inputs, %d "
                            "dependencies).", n, ndeps);
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!pnC_inputs_ok("depends", n, inputs) || !pnC_inputs_ok("depends", ndeps, dependencies))
        return -1;
    pn_array **in = malloc((size_t)(ndeps + 1) * sizeof *in);
    if (!in) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[depends] Out of memory.");
    for (int j = 0; j < ndeps; j++) in[j + 1] = dependencies[j];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        in[0] = inputs[i];
        out[i] = pnC_make(&depends_prim, NULL, 0, ndeps + 1, in, inputs[i]->dtype,
                          inputs[i]->shape, inputs[i]->ndim);
        if (!out[i]) rc = -1;
        else out[i]->weak = inputs[i]->weak;
    }
    free(in);
    if (rc) {
        for (int i = 0; i < n; i++) pn_release(out[i]), out[i] = NULL;
    }
    return rc;
}
