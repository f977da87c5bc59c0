/* optim.h — CPU kernels of the fused optimizer primitives (src/ops/optim.c): AdamUpdate in one
 * threaded pass over parameter, gradient and moments (optim.c). */
#ifndef PONTE_BACKEND_CPU_OPTIM_H
#define PONTE_BACKEND_CPU_OPTIM_H

#include "core/core.h"

/* AdamUpdate: in = (p, g, m, v) of one shape and floating dtype, out = (p', m', v') with the
 * node's pnN_adam_params (ops/optim.h). Strided inputs are made contiguous first; p, m and v
 * donate their buffers to p', m', v' when nothing else holds them (an in-place step). f16/bf16
 * compute in float. Returns 0, or -1 with an error. */
int pnK_adam_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_OPTIM_H */
