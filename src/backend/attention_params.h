/* attention_params.h — the params of the fused attention primitives (src/ops/attention.c),
 * read by the CPU kernels (cpu/attention.c) and by the CUDA glue and kernels (cuda/attention.*).
 * Plain C with no core types, so .cu files can include it. */
#ifndef PONTE_BACKEND_ATTENTION_PARAMS_H
#define PONTE_BACKEND_ATTENTION_PARAMS_H

#include <stdint.h>

/* What the optional fourth input is: none, a bool mask (true keeps the score, false puts
 * `fill` there) or an additive mask in the result dtype. Either mask is already broadcast
 * (a view) to (B, Hq, Lq, Lk). */
enum { PNK_SDPA_NO_MASK, PNK_SDPA_BOOL_MASK, PNK_SDPA_ADD_MASK };

/* scores = scale * q k^T; with causal, query i keeps keys j <= i + Lk - Lq and the others
 * (and a bool mask's false entries) get fill, the result dtype's lowest finite value, as the
 * composite's where(mask, scores, finfo.min) does. */
typedef struct pnK_sdpa_params {
    double scale, fill;
    int32_t causal, mask;
} pnK_sdpa_params;

#endif /* PONTE_BACKEND_ATTENTION_PARAMS_H */
