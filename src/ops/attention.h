/* attention.h — the fused scaled dot-product attention primitives (attention.c) behind
 * pn_fast_scaled_dot_product_attention (src/nn/attention.c), which validates its arguments and
 * calls pnO_sdpa. */
#ifndef PONTE_OPS_ATTENTION_H
#define PONTE_OPS_ATTENTION_H

#include "core/core.h"

/* softmax(scale * q k^T masked) v for q, k, v already checked by the public function (ranks,
 * heads, lengths) and t their floating result dtype: q, k, v are cast to t, mask (NULL, bool,
 * or a dtype promoting to t) broadcast to (B, Hq, Lq, Lk); causal as in ponte.h; sinks NULL
 * or (Hq,) logits of one more softmax column per head whose value is 0. One fused
 * ScaledDotProductAttention node (with sinks, its output rescaled by its rows' logsumexp), or
 * the composite of ops while pnO_sdpa_set_fused(false). The result belongs to the current
 * scope; NULL with an error. */
pn_array *pnO_sdpa(pn_array *q, pn_array *k, pn_array *v, pn_array *mask, bool causal,
                   double scale, pn_dtype t, pn_array *sinks);
/* Whether pnO_sdpa builds the fused node (default; PONTE_SDPA_FUSED=0 in the environment
 * turns it off) or the composite, for benchmarks and tests. Returns the previous setting. */
bool pnO_sdpa_set_fused(bool on);

#endif /* PONTE_OPS_ATTENTION_H */
