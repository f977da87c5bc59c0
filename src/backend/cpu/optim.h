/* optim.h — CPU kernel of the fused optimizer step (src/ops/optim.c): OptimUpdate in one
 * threaded pass over parameter, gradient and state slots (optim.c). */
#ifndef PONTE_BACKEND_CPU_OPTIM_H
#define PONTE_BACKEND_CPU_OPTIM_H

#include "core/core.h"

/* OptimUpdate: in = (p, g, slots...) of one shape and floating dtype, out = (p', slots'...)
 * with the node's pnN_optim_params (ops/optim.h). Strided inputs are made contiguous first; p
 * and the slots donate their buffers to the outputs when nothing else holds them (an in-place
 * step). f16/bf16 compute in float. Returns 0, or -1 with an error. */
int pnK_optim_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_OPTIM_H */
