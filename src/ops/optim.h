/* optim.h — fused optimizer update primitives (src/ops/optim.c), internal to the library:
 * the parameters of AdamUpdate shared by its constructor, the CPU kernel
 * (backend/cpu/optim.c) and the GPU launcher (backend/cuda/optim.cu). Plain C, C++-safe. */
#ifndef PONTE_OPS_OPTIM_H
#define PONTE_OPS_OPTIM_H

#include "ponte.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Coefficients of one Adam/AdamW step, computed on the host by the rule:
 *   m' = b1*m + (1-b1)*g;  v' = b2*v + (1-b2)*g*g;  p' = p*decay - c1*m' / (sqrt(v')*c2 + eps)
 * decay = 1 - lr*wd (AdamW) or 1 (Adam); c1 = lr, c2 = 1 without bias correction, else
 * c1 = lr/(1 - b1^t), c2 = 1/sqrt(1 - b2^t). Kernels round each coefficient to the compute
 * type (float for f32/f16/bf16, double for f64) exactly as weak scalars would be. */
typedef struct pnN_adam_params {
    double b1, b2, eps, decay, c1, c2;
} pnN_adam_params;

/* One fused Adam step as a single three-output node: out3[0] = p', out3[1] = m',
 * out3[2] = v' (owned by the current scope), computed in one pass. p, g, m, v must share one
 * shape and one floating dtype (f16, bf16, f32, f64) and no transformation may be tracing;
 * otherwise returns 1 and writes nothing ("not fusable": the caller composes the step from
 * elementwise ops, which stay differentiable). Returns 0 on success,
 * -1 with an error (NULL input, out of memory). The node is not differentiable. */
int pnN_adam_update(pn_array *p, pn_array *g, pn_array *m, pn_array *v,
                    const pnN_adam_params *prm, pn_array **out3);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_OPS_OPTIM_H */
