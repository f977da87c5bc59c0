/* attention.h — the CPU kernels of the fused scaled dot-product attention primitives
 * (src/ops/attention.c): ScaledDotProductAttention (q, k, v[, mask] -> out, logsumexp) and
 * ScaledDotProductAttentionVjp (q, k, v[, mask], out, lse, dout[, dlse] -> dq, dk, dv); their params
 * are in backend/attention_params.h. */
#ifndef PONTE_BACKEND_CPU_ATTENTION_H
#define PONTE_BACKEND_CPU_ATTENTION_H

#include "backend/attention_params.h"
#include "core/core.h"

/* Forward: in q (B,Hq,Lq,D), k (B,Hkv,Lk,D), v (B,Hkv,Lk,Dv) of one float dtype T[, mask];
 * out[0] (B,Hq,Lq,Dv) in T, out[1] the rows' logsumexp (B,Hq,Lq) in float32 (float64 for T
 * float64). Computes in float32 (float64 for float64). */
int pnK_sdpa_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Backward: in q, k, v[, mask], out, lse, dout[, dlse: lse's cotangent, lse's dtype]; out dq,
 * dk, dv (the shapes and dtype of q, k, v). Recomputes P = exp(S - lse) per query block (see p_row in attention.c); parallel over
 * (batch, kv head), so dk/dv of a group sum without races and in a fixed order. */
int pnK_sdpa_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_ATTENTION_H */
