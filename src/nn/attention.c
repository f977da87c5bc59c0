/* attention.c — scaled dot-product attention (mx.fast.scaled_dot_product_attention: the
 * argument checks here, the fused primitives in src/ops/attention.c) and the positional
 * encodings of mlx.nn (RoPE, sinusoidal, ALiBi) as compositions of public ops, so they run on
 * every backend and differentiate through the ops' own vjp/jvp rules. */
#include "core/core.h"
#include "ops/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SDPA "scaled_dot_product_attention"

/* softmax(scale * q @ k^T + mask) @ v over (B, H, L, D) inputs; see ponte.h. */
pn_array *pn_fast_scaled_dot_product_attention(pn_array *q, pn_array *k, pn_array *v,
                                               double scale, const char *mask_mode,
                                               pn_array *mask)
{
    return pn_fast_scaled_dot_product_attention_sinks(q, k, v, scale, mask_mode, mask, NULL);
}

pn_array *pn_fast_scaled_dot_product_attention_sinks(pn_array *q, pn_array *k, pn_array *v, double scale,
                                                     const char *mask_mode, pn_array *mask, pn_array *sinks)
{
    if (!pnC_inputs_ok(SDPA, 3, (pn_array *[]){q, k, v})) return NULL;
    char b1[96], b2[96];
    pn_array *qkv[3] = {q, k, v};
    for (int i = 0; i < 3; i++)
        if (qkv[i]->ndim != 4)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] input with shape %s expected to be rank 4.",
                            pnC_shape_str(qkv[i]->shape, qkv[i]->ndim, b1, sizeof b1));
    bool causal = false;
    if (mask_mode && mask_mode[0]) {
        if (strcmp(mask_mode, "causal") == 0) causal = true;
        else if (strcmp(mask_mode, "array") != 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[" SDPA "] Invalid mask_mode %s. mask_mode must be 'causal', 'array' or ''.",
                            mask_mode);
        else if (!mask)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] mask_mode 'array' needs a mask array.");
    }
    if (causal && mask)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[" SDPA "] Invalid mask for mask_mode 'causal'. No array mask should be passed.");
    if (mask && mask->ndim > 4)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] the mask with shape %s expected to have at most rank 4.",
                        pnC_shape_str(mask->shape, mask->ndim, b1, sizeof b1));
    for (int i = 1; i < 3; i++)
        if (qkv[i]->shape[0] != q->shape[0])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[" SDPA "] mismatching batch dimension for input with shape %s (queries have shape %s).",
                            pnC_shape_str(qkv[i]->shape, 4, b1, sizeof b1),
                            pnC_shape_str(q->shape, 4, b2, sizeof b2));
    if (q->shape[3] != k->shape[3])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[" SDPA "] query, keys expected to have matching last dimension; found query shape %s for keys shape %s.",
                        pnC_shape_str(q->shape, 4, b1, sizeof b1), pnC_shape_str(k->shape, 4, b2, sizeof b2));
    if (k->shape[1] != v->shape[1])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[" SDPA "] keys, values expected to have matching n_kv_heads; found keys with n_heads %lld for values with n_heads %lld.",
                        (long long)k->shape[1], (long long)v->shape[1]);
    if (k->shape[2] != v->shape[2])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[" SDPA "] keys, values expected to have matching sequence length; found keys shape %s for values shape %s.",
                        pnC_shape_str(k->shape, 4, b1, sizeof b1), pnC_shape_str(v->shape, 4, b2, sizeof b2));
    int64_t hq = q->shape[1], hkv = k->shape[1];
    if (hkv < 1 || hq % hkv != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[" SDPA "] n_heads must be a multiple of n_kv_heads, found n_heads %lld for n_kv_heads %lld.",
                        (long long)hq, (long long)hkv);
    pn_dtype t = pnC_result_type(3, qkv);
    if (!pnC_is_float(t))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] Received unsupported type %s.", pn_dtype_name(t));
    int64_t mshape[4] = {q->shape[0], hq, q->shape[2], k->shape[2]};
    if (mask) {
        if (pn_promote_types(mask->dtype, t) != t)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[" SDPA "] Mask type %s must promote to output type %s.",
                            pn_dtype_name(mask->dtype), pn_dtype_name(t));
        if (!pnC_broadcasts_to(mask, mshape, 4))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[" SDPA "] the mask with shape %s cannot be broadcast to the scores' shape %s.",
                            pnC_shape_str(mask->shape, mask->ndim, b1, sizeof b1),
                            pnC_shape_str(mshape, 4, b2, sizeof b2));
    }

    if (sinks) {
        if (sinks->ndim != 1 || sinks->shape[0] != hq)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] Received invalid shape for sinks %s.",
                            pnC_shape_str(sinks->shape, sinks->ndim, b1, sizeof b1));
        if (pn_promote_types(sinks->dtype, t) != t)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" SDPA "] Type of sinks must promote to output type %s.",
                            pn_dtype_name(t));
    }
    return pnO_sdpa(q, k, v, causal ? NULL : mask, causal, scale, t, sinks);
}

/* Rotary positional encoding of x (..., L, D); see ponte.h. */
pn_array *pn_fast_rope(pn_array *x, int dims, bool traditional, double base, double scale, pn_array *offset,
                       pn_array *freqs)
{
    if (!pnC_inputs_ok("rope", 1, &x)) return NULL;
    if (x->ndim < 3)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[rope] Input must have at least 3 dimensions but got input with %d dimensions.", x->ndim);
    if (!pnC_is_float(x->dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[rope] Input must be a floating type but got %s.",
                        pn_dtype_name(x->dtype));
    if (dims <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[rope] dims must be positive but got %d.", dims);
    if (dims % 2 != 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[rope] dims must be even but got %d.", dims);
    int n = x->ndim;
    int64_t d = x->shape[n - 1], len = x->shape[n - 2];
    if (dims > d)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[rope] dims must not exceed the input's last dimension (%lld) but got %d.", (long long)d, dims);
    int half = dims / 2;
    if (freqs) {
        if (base != 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[rope] Exactly one of base and freqs must be given.");
        if (freqs->ndim != 1 || freqs->shape[0] != half || !pnC_is_float(freqs->dtype))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[rope] freqs must be a floating one-dimensional array of dims / 2 = %d elements but "
                            "has shape %s and dtype %s.", half, PNC_SHAPE_STR(freqs->shape, freqs->ndim),
                            pn_dtype_name(freqs->dtype));
    } else if (!(base > 0)) {
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[rope] base must be positive but got %g.", base);
    }
    if (offset && (!pnC_is_integer(offset->dtype) || offset->ndim > 1 ||
                   (offset->ndim == 1 && offset->shape[0] != 1 && offset->shape[0] != x->shape[0])))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[rope] offset must be an integer scalar or a vector of one offset per batch entry (%lld) but "
                        "has shape %s and dtype %s.", (long long)x->shape[0], PNC_SHAPE_STR(offset->shape, offset->ndim),
                        pn_dtype_name(offset->dtype));

    pn_scope_push();
    pn_dtype t = x->dtype;
    pn_dtype ct = t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32; /* angles: float32 (float64 for f64) */
    /* positions (offset + l) * scale: (L,), or (B, 1, ..., 1, L) for one offset per batch entry */
    pn_array *pos = pn_arange(0, (double)len, 1, ct);
    if (offset && offset->ndim == 1 && offset->shape[0] > 1) {
        int64_t shp[PNC_MAX_NDIM];
        for (int i = 0; i < n - 1; i++) shp[i] = i == 0 ? offset->shape[0] : 1;
        pos = pn_add(pn_reshape(pn_astype(offset, ct), shp, n - 1), pos);
    } else if (offset) {
        pos = pn_add(pn_reshape(pn_astype(offset, ct), NULL, 0), pos);
    }
    pos = pn_multiply(pos, pn_scalar(scale, ct));
    /* angles per position and rotated pair: base^(-i / half), or 1 / freqs[i] */
    pn_array *inv_freq = freqs ? pn_reciprocal(pn_astype(freqs, ct))
                               : pn_exp(pn_multiply(pn_arange(0, -half, -1, ct), pn_scalar(log(base) / half, ct)));
    pn_array *theta = pn_multiply(pn_expand_dims(pos, (int[]){-1}, 1), inv_freq); /* (..., L, half) */
    pn_array *c = pn_astype(pn_cos(theta), t), *s = pn_astype(pn_sin(theta), t);

    int64_t start[PNC_MAX_NDIM] = {0}, stop[PNC_MAX_NDIM], step[PNC_MAX_NDIM];
    for (int i = 0; i < n; i++) stop[i] = x->shape[i], step[i] = 1;
    pn_array *x1, *x2;
    if (traditional) { /* pairs (0,1), (2,3), ... */
        stop[n - 1] = dims, step[n - 1] = 2;
        x1 = pn_slice(x, start, stop, step, n);
        start[n - 1] = 1;
        x2 = pn_slice(x, start, stop, step, n);
    } else { /* pairs (i, i + dims/2) */
        stop[n - 1] = half;
        x1 = pn_slice(x, start, stop, NULL, n);
        start[n - 1] = half, stop[n - 1] = dims;
        x2 = pn_slice(x, start, stop, NULL, n);
    }
    pn_array *o1 = pn_subtract(pn_multiply(x1, c), pn_multiply(x2, s));
    pn_array *o2 = pn_add(pn_multiply(x1, s), pn_multiply(x2, c));
    pn_array *parts[3];
    int np = 0;
    if (traditional) {
        int64_t shp[PNC_MAX_NDIM];
        memcpy(shp, x->shape, sizeof(int64_t) * n);
        shp[n - 1] = dims;
        parts[np++] = pn_reshape(pn_stack((pn_array *[]){o1, o2}, 2, -1), shp, n);
    } else {
        parts[np++] = o1;
        parts[np++] = o2;
    }
    if (dims < d) {
        start[n - 1] = dims, stop[n - 1] = d;
        parts[np++] = pn_slice(x, start, stop, NULL, n);
    }
    pn_array *y = np == 1 ? parts[0] : pn_concatenate(parts, np, -1);
    return pnC_scope_return(y);
}

pn_array *pn_nn_rope(pn_array *x, int dims, bool traditional, double base, double scale, int64_t offset)
{
    pn_scope_push();
    pn_array *o = offset ? pn_scalar((double)offset, PN_INT64) : NULL;
    return pnC_scope_return(offset && !o ? NULL : pn_fast_rope(x, dims, traditional, base, scale, o, NULL));
}

/* Sinusoidal embedding of positions (...) into (..., 2 * (dims / 2)); see ponte.h. */
pn_array *pn_nn_sinusoidal_positional_encoding(pn_array *positions, int dims, double min_freq,
                                               double max_freq, double scale, bool cos_first,
                                               bool full_turns)
{
    const char *op = "sinusoidal_positional_encoding";
    if (!pnC_inputs_ok(op, 1, &positions)) return NULL;
    if (positions->dtype == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] positions must be real, got %s.", op,
                        pn_dtype_name(positions->dtype));
    if (dims < 4)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] dims must be at least 4 but got %d.", op, dims);
    if (!(min_freq > 0) || !(max_freq > 0))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] min_freq and max_freq must be positive, got %g and %g.",
                        op, min_freq, max_freq);
    pn_scope_push();
    pn_dtype t = pn_promote_types(positions->dtype, PN_FLOAT32);
    int half = dims / 2;
    double lo = log(min_freq), hi = log(max_freq);
    double *sig = malloc(sizeof(double) * half);
    if (!sig) return pnC_scope_return(pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] out of memory.", op));
    for (int i = 0; i < half; i++) { /* log-spaced from max_freq down to min_freq */
        double one_zero = 1.0 - (double)i / (half - 1);
        sig[i] = exp(one_zero * (hi - lo) + lo) * (full_turns ? 2 * M_PI : 1.0);
    }
    pn_array *sigmas = pn_astype(pn_array_from_data(sig, (int64_t[]){half}, 1, PN_FLOAT64), t);
    free(sig);
    int ax = -1;
    pn_array *y = pn_multiply(pn_expand_dims(positions, &ax, 1), sigmas);
    pn_array *c = pn_cos(y), *s = pn_sin(y);
    y = pn_concatenate(cos_first ? (pn_array *[]){c, s} : (pn_array *[]){s, c}, 2, -1);
    if (scale == 0) scale = sqrt(2.0 / dims);
    if (scale != 1) y = pn_multiply(y, pn_weak_float(scale));
    return pnC_scope_return(y);
}

/* The ALiBi slopes of the paper (and mlx.nn.ALiBi) for n heads into out[0..n). */
static void alibi_slopes(int n, double *out)
{
    int p = 1;
    while (p * 2 <= n) p *= 2; /* the largest power of two <= n */
    double start = pow(2.0, -8.0 / p);
    for (int i = 0; i < p; i++) out[i] = pow(start, i + 1);
    /* the rest: every other slope of 2p heads, i.e. 2^(-8 (2j + 1) / (2p)) */
    for (int j = 0; j < n - p; j++) out[p + j] = pow(2.0, -8.0 * (2 * j + 1) / (2.0 * p));
}

/* ALiBi's additive attention bias (1, H, q_len, k_len); see ponte.h. */
pn_array *pn_nn_alibi_bias(int64_t q_len, int64_t k_len, int num_heads, int64_t offset,
                           pn_dtype dtype)
{
    const char *op = "alibi";
    if (q_len < 0 || k_len < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] sequence lengths must be non-negative, got %lld and %lld.",
                        op, (long long)q_len, (long long)k_len);
    if (num_heads < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] num_heads must be positive but got %d.", op, num_heads);
    if (!pnC_dtype_valid(dtype) || !pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] dtype must be a floating type.", op);
    pn_scope_push();
    double *sl = malloc(sizeof(double) * num_heads);
    if (!sl) return pnC_scope_return(pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] out of memory.", op));
    alibi_slopes(num_heads, sl);
    pn_array *slopes = pn_astype(pn_array_from_data(sl, (int64_t[]){num_heads, 1, 1}, 3, PN_FLOAT64), dtype);
    free(sl);
    int a1 = 1, a0 = 0, a01[2] = {0, 1};
    pn_array *qi = pn_expand_dims(pn_arange((double)offset, (double)offset + (double)q_len, 1, PN_INT32), &a1, 1);
    pn_array *ki = pn_expand_dims(pn_arange(0, (double)k_len, 1, PN_INT32), &a0, 1);
    pn_array *dist = pn_expand_dims(pn_negative(pn_abs(pn_subtract(qi, ki))), a01, 2); /* (1,1,q,k) */
    pn_array *y = pn_astype(pn_multiply(dist, slopes), dtype);
    return pnC_scope_return(y);
}
