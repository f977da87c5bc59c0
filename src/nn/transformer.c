/* transformer.c — mlx.nn's transformer blocks (encoder and decoder layers, their stacks, the
 * encoder-decoder Transformer) as functions over parameter trees with MLX's names, and the
 * initializer that creates those trees. Compositions of public ops, like the rest of src/nn:
 * they run on every backend and differentiate through the ops' own rules. */
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { NAME_LEN = 512, LN_COUNT = 3 };
#define LN_EPS 1e-5

/* What every step of one public call shares. */
typedef struct {
    const char *op; /* the public function's name, for messages */
    const pn_params *p;
    const pn_transformer_config *cfg;
    int64_t dims, heads, mlp;
} tctx;

/* dst = a "." b (either may be empty). 0, or -1 with an error when the name is too long. */
static int join(char *dst, const char *op, const char *a, const char *b)
{
    int n = snprintf(dst, NAME_LEN, "%s%s%s", a, a[0] && b[0] ? "." : "", b);
    if (n < 0 || n >= NAME_LEN)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] parameter prefix too long.", op);
    return 0;
}

/* Checks cfg and fills c's sizes. 0, or -1 with an error. */
static int config(tctx *c, const char *op, const pn_params *p, const pn_transformer_config *cfg)
{
    *c = (tctx){.op = op, .p = p, .cfg = cfg};
    if (!cfg) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] NULL config.", op);
    if (cfg->dims < 1 || cfg->num_heads < 1)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] dims (%d) and num_heads (%d) must be positive.",
                            op, cfg->dims, cfg->num_heads);
    if (cfg->dims % cfg->num_heads != 0)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The input feature dimensions should be divisible by the number of heads (%d %% %d) != 0",
                            op, cfg->dims, cfg->num_heads);
    if (cfg->mlp_dims < 0 || cfg->num_encoder_layers < 0 || cfg->num_decoder_layers < 0)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] mlp_dims (%d) and the layer counts (%d, %d) must not be negative.", op,
                            cfg->mlp_dims, cfg->num_encoder_layers, cfg->num_decoder_layers);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] The dropout probability %g is not in [0, 1).", op,
                            cfg->dropout);
    c->dims = cfg->dims;
    c->heads = cfg->num_heads;
    c->mlp = cfg->mlp_dims ? cfg->mlp_dims : 4 * (int64_t)cfg->dims;
    return 0;
}

/* ───────────────────────────── forward ───────────────────────────── */

/* The parameter prefix.name, which must have shape (d0) or (d0, d1) (d1 == 0: 1-d); NULL with
 * an error naming it otherwise. */
static pn_array *param(const tctx *c, const char *prefix, const char *name, int64_t d0, int64_t d1)
{
    char full[NAME_LEN];
    if (join(full, c->op, prefix, name)) return NULL;
    pn_array *a = pn_params_get(c->p, full);
    if (!a) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] missing parameter '%s'.", c->op, full);
    int nd = d1 ? 2 : 1;
    int64_t want[2] = {d0, d1};
    if (a->ndim != nd || a->shape[0] != d0 || (nd == 2 && a->shape[1] != d1)) {
        char b1[96], b2[96];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] parameter '%s' has shape %s, expected %s.", c->op, full,
                        pnC_shape_str(a->shape, a->ndim, b1, sizeof b1), pnC_shape_str(want, nd, b2, sizeof b2));
    }
    return a;
}

/* Layer norm prefix.<ln> of x. */
static pn_array *norm(const tctx *c, const char *prefix, const char *ln, pn_array *x)
{
    char sub[NAME_LEN];
    if (join(sub, c->op, prefix, ln)) return NULL;
    pn_array *w = param(c, sub, "weight", c->dims, 0), *b = w ? param(c, sub, "bias", c->dims, 0) : NULL;
    return b ? pn_nn_layer_norm(x, w, b, LN_EPS) : NULL;
}

/* Key i of keys (n, 2), or NULL when keys is NULL (the global random state). */
static pn_array *subkey(pn_array *keys, int i)
{
    return keys ? pn_take(keys, pn_scalar_int(i, PN_INT32), 0) : NULL;
}

/* Dropout site `site` of a layer whose dropout keys are keys (NULL: the global state). */
static pn_array *drop(const tctx *c, pn_array *y, pn_array *keys, int site)
{
    return c->cfg->dropout == 0 ? y : pn_nn_dropout(y, c->cfg->dropout, subkey(keys, site));
}

/* (B, L, dims) -> (B, heads, L, dims / heads). */
static pn_array *split_heads(const tctx *c, pn_array *x)
{
    return pn_transpose(pn_unflatten(x, -1, (int64_t[]){c->heads, -1}, 2), (int[]){0, 2, 1, 3}, 4);
}

/* mlx.nn.MultiHeadAttention (no biases) at prefix: queries q (B, L, dims) against keys and
 * values kv (B, S, dims). */
static pn_array *attention(const tctx *c, const char *prefix, pn_array *q, pn_array *kv,
                           pn_attention_mask m)
{
    static const char *proj[4] = {"query_proj", "key_proj", "value_proj", "out_proj"};
    pn_array *w[4];
    for (int i = 0; i < 4; i++) {
        char sub[NAME_LEN];
        if (join(sub, c->op, prefix, proj[i]) || !(w[i] = param(c, sub, "weight", c->dims, c->dims))) return NULL;
    }
    pn_array *qh = split_heads(c, pn_nn_linear(q, w[0], NULL));
    pn_array *kh = split_heads(c, pn_nn_linear(kv, w[1], NULL));
    pn_array *vh = split_heads(c, pn_nn_linear(kv, w[2], NULL));
    double scale = 1.0 / sqrt((double)(c->dims / c->heads));
    pn_array *o = pn_fast_scaled_dot_product_attention(qh, kh, vh, scale, m.mode, m.array);
    o = pn_flatten(pn_transpose(o, (int[]){0, 2, 1, 3}, 4), -2, -1);
    return pn_nn_linear(o, w[3], NULL);
}

/* The activation of the MLP: cfg->activation (one array in, one of x's shape out) or relu. */
static pn_array *activate(const tctx *c, pn_array *x)
{
    if (!x) return NULL;
    if (!c->cfg->activation) return pn_nn_relu(x);
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    if (pn_closure_call(c->cfg->activation, 1, &x, &nout, out)) return NULL;
    if (nout < 1 || !out[0])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] the activation returned no array.", c->op);
    if (out[0]->ndim != x->ndim || memcmp(out[0]->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
        char b1[96], b2[96];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] the activation changed the shape %s into %s.", c->op,
                        pnC_shape_str(x->shape, x->ndim, b1, sizeof b1),
                        pnC_shape_str(out[0]->shape, out[0]->ndim, b2, sizeof b2));
    }
    return out[0];
}

/* linear2(drop(act(linear1(y)))) at prefix, dropout site `site`. */
static pn_array *mlp(const tctx *c, const char *prefix, pn_array *y, pn_array *keys, int site)
{
    char l1[NAME_LEN], l2[NAME_LEN];
    if (join(l1, c->op, prefix, "linear1") || join(l2, c->op, prefix, "linear2")) return NULL;
    pn_array *w1 = param(c, l1, "weight", c->mlp, c->dims), *b1 = w1 ? param(c, l1, "bias", c->mlp, 0) : NULL;
    pn_array *w2 = b1 ? param(c, l2, "weight", c->dims, c->mlp) : NULL, *b2 = w2 ? param(c, l2, "bias", c->dims, 0) : NULL;
    if (!b2) return NULL;
    return pn_nn_linear(drop(c, activate(c, pn_nn_linear(y, w1, b1)), keys, site), w2, b2);
}

/* One encoder layer (memory NULL) or decoder layer at prefix; masks[0] is the self-attention
 * mask, masks[1] the cross-attention one. Dropout sites, in MLX's order: after each attention,
 * then after the MLP's activation. */
static pn_array *layer(const tctx *c, const char *prefix, pn_array *x, pn_array *memory,
                       const pn_attention_mask *masks, pn_array *key)
{
    static const char *ln[LN_COUNT] = {"ln1", "ln2", "ln3"};
    bool dec = memory != NULL;
    int nsub = dec ? 3 : 2;
    char self[NAME_LEN], cross[NAME_LEN];
    if (join(self, c->op, prefix, dec ? "self_attention" : "attention") ||
        join(cross, c->op, prefix, "cross_attention"))
        return NULL;
    pn_array *keys = c->cfg->dropout > 0 && key ? pn_random_split(key, nsub) : NULL;
    pn_array *y;
    if (c->cfg->norm_first) {
        y = norm(c, prefix, ln[0], x);
        x = pn_add(x, drop(c, attention(c, self, y, y, masks[0]), keys, 0));
        if (dec) {
            y = norm(c, prefix, ln[1], x);
            x = pn_add(x, drop(c, attention(c, cross, y, memory, masks[1]), keys, 1));
        }
        y = norm(c, prefix, ln[nsub - 1], x);
        return pn_add(x, mlp(c, prefix, y, keys, nsub - 1));
    }
    y = drop(c, attention(c, self, x, x, masks[0]), keys, 0);
    x = norm(c, prefix, ln[0], pn_add(x, y));
    if (dec) { /* MLX queries with the self-attention's output y here, not with x */
        y = drop(c, attention(c, cross, y, memory, masks[1]), keys, 1);
        x = norm(c, prefix, ln[1], pn_add(x, y));
    }
    y = mlp(c, prefix, x, keys, nsub - 1);
    return norm(c, prefix, ln[nsub - 1], pn_add(x, y));
}

/* n layers at prefix.layers.<i>, then the layer norm prefix.ln. */
static pn_array *stack(const tctx *c, const char *prefix, int n, pn_array *x, pn_array *memory,
                       const pn_attention_mask *masks, pn_array *key)
{
    pn_array *keys = c->cfg->dropout > 0 && key && n > 0 ? pn_random_split(key, n) : NULL;
    for (int i = 0; i < n && x; i++) {
        char idx[32], sub[NAME_LEN];
        snprintf(idx, sizeof idx, "layers.%d", i);
        if (join(sub, c->op, prefix, idx)) return NULL;
        x = layer(c, sub, x, memory, masks, subkey(keys, i));
    }
    return norm(c, prefix, "ln", x);
}

/* Checks that a (named what) is (B, L, dims), or (L, dims) when unbatched, with the batch of
 * ref (when given). */
static int check_input(const tctx *c, const char *what, pn_array *a, pn_array *ref)
{
    char b1[96], b2[96];
    if (a->ndim != 3 && a->ndim != 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s must be (B, L, %lld) or (L, %lld), got shape %s.",
                            c->op, what, (long long)c->dims, (long long)c->dims,
                            pnC_shape_str(a->shape, a->ndim, b1, sizeof b1));
    if (a->shape[a->ndim - 1] != c->dims)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s with shape %s must have %lld features (dims).", c->op,
                            what, pnC_shape_str(a->shape, a->ndim, b1, sizeof b1), (long long)c->dims);
    if (ref && (a->ndim != ref->ndim || (a->ndim == 3 && a->shape[0] != ref->shape[0])))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s with shape %s does not match the batch of shape %s.",
                            c->op, what, pnC_shape_str(a->shape, a->ndim, b1, sizeof b1),
                            pnC_shape_str(ref->shape, ref->ndim, b2, sizeof b2));
    return 0;
}

/* The five public forward passes: part's block on x (the transformer's src), memory (the
 * transformer's tgt; NULL for encoders) with masks[0..2] as the public functions order them. */
static pn_array *run(const char *op, pn_transformer_part part, pn_array *x, pn_array *memory,
                     const pn_attention_mask *masks, const pn_params *params, const char *prefix,
                     const pn_transformer_config *cfg, pn_array *key)
{
    tctx c;
    pn_array *in[2] = {x, memory};
    int nin = part == PN_TRANSFORMER_ENCODER_LAYER || part == PN_TRANSFORMER_ENCODER ? 1 : 2;
    if (!pnC_inputs_ok(op, nin, in)) return NULL;
    if (config(&c, op, params, cfg)) return NULL;
    if (!params) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] NULL parameters.", op);
    bool two = part == PN_TRANSFORMER;
    if (check_input(&c, two ? "src" : "x", x, NULL) ||
        (memory && check_input(&c, two ? "tgt" : "memory", memory, x)))
        return NULL;
    if (!prefix) prefix = "";
    pn_scope_push();
    if (key && cfg->dropout > 0 && !pn_random_split(key, 1)) /* a bad key fails here, not silently below */
        return pnC_scope_return(NULL);
    bool unbatched = x->ndim == 2;
    if (unbatched) { /* a batch of one, removed at the end */
        int a0 = 0;
        x = pn_expand_dims(x, &a0, 1);
        if (memory) memory = pn_expand_dims(memory, &a0, 1);
    }
    pn_array *y = NULL;
    switch (part) {
    case PN_TRANSFORMER_ENCODER_LAYER: y = layer(&c, prefix, x, NULL, masks, key); break;
    case PN_TRANSFORMER_DECODER_LAYER: y = layer(&c, prefix, x, memory, masks, key); break;
    case PN_TRANSFORMER_ENCODER: y = stack(&c, prefix, cfg->num_encoder_layers, x, NULL, masks, key); break;
    case PN_TRANSFORMER_DECODER: y = stack(&c, prefix, cfg->num_decoder_layers, x, memory, masks, key); break;
    case PN_TRANSFORMER: {
        char enc[NAME_LEN], dec[NAME_LEN];
        if (join(enc, op, prefix, "encoder") || join(dec, op, prefix, "decoder")) break;
        pn_array *keys = cfg->dropout > 0 && key ? pn_random_split(key, 2) : NULL;
        pn_array *mem = stack(&c, enc, cfg->num_encoder_layers, x, NULL, masks, subkey(keys, 0));
        if (mem) y = stack(&c, dec, cfg->num_decoder_layers, memory, mem, masks + 1, subkey(keys, 1));
        break;
    }
    }
    if (unbatched && y) {
        int a0 = 0;
        y = pn_squeeze(y, &a0, 1);
    }
    return pnC_scope_return(y);
}

/* mlx.nn.TransformerEncoderLayer over the tree at prefix: x (B, L, dims) -> same; see ponte.h. */
pn_array *pn_nn_transformer_encoder_layer(pn_array *x, pn_attention_mask mask,
                                          const pn_params *params, const char *prefix,
                                          const pn_transformer_config *cfg, pn_array *key)
{
    return run("transformer_encoder_layer", PN_TRANSFORMER_ENCODER_LAYER, x, NULL,
               (pn_attention_mask[]){mask, {0}}, params, prefix, cfg, key);
}

/* mlx.nn.TransformerDecoderLayer: x (B, L, dims) attending to memory (B, S, dims); see ponte.h. */
pn_array *pn_nn_transformer_decoder_layer(pn_array *x, pn_array *memory,
                                          pn_attention_mask x_mask,
                                          pn_attention_mask memory_mask,
                                          const pn_params *params, const char *prefix,
                                          const pn_transformer_config *cfg, pn_array *key)
{
    return run("transformer_decoder_layer", PN_TRANSFORMER_DECODER_LAYER, x, memory,
               (pn_attention_mask[]){x_mask, memory_mask}, params, prefix, cfg, key);
}

/* mlx.nn.TransformerEncoder: cfg->num_encoder_layers layers and the norm "ln"; see ponte.h. */
pn_array *pn_nn_transformer_encoder(pn_array *x, pn_attention_mask mask,
                                    const pn_params *params, const char *prefix,
                                    const pn_transformer_config *cfg, pn_array *key)
{
    return run("transformer_encoder", PN_TRANSFORMER_ENCODER, x, NULL, (pn_attention_mask[]){mask, {0}},
               params, prefix, cfg, key);
}

/* mlx.nn.TransformerDecoder: cfg->num_decoder_layers layers and the norm "ln"; see ponte.h. */
pn_array *pn_nn_transformer_decoder(pn_array *x, pn_array *memory, pn_attention_mask x_mask,
                                    pn_attention_mask memory_mask, const pn_params *params,
                                    const char *prefix, const pn_transformer_config *cfg,
                                    pn_array *key)
{
    return run("transformer_decoder", PN_TRANSFORMER_DECODER, x, memory,
               (pn_attention_mask[]){x_mask, memory_mask}, params, prefix, cfg, key);
}

/* mlx.nn.Transformer: decoder(tgt, encoder(src)) under "encoder." and "decoder."; see ponte.h. */
pn_array *pn_nn_transformer(pn_array *src, pn_array *tgt, pn_attention_mask src_mask,
                            pn_attention_mask tgt_mask, pn_attention_mask memory_mask,
                            const pn_params *params, const char *prefix,
                            const pn_transformer_config *cfg, pn_array *key)
{
    return run("transformer", PN_TRANSFORMER, src, tgt,
               (pn_attention_mask[]){src_mask, tgt_mask, memory_mask}, params, prefix, cfg, key);
}

/* ───────────────────────────── initialization ───────────────────────────── */

/* The state of one initialization: where the parameters go and the key stream. */
typedef struct {
    const tctx *c;
    pn_params *out;
    pn_array *key; /* the next key is split from it; NULL: global random state */
} init_ctx;

/* Sets prefix.name to uniform(-scale, scale) of shape (d0[, d1]) (scale 0: the constant
 * fill). 0 or -1. */
static int put(init_ctx *s, const char *prefix, const char *name, int64_t d0, int64_t d1,
               double scale, double fill)
{
    char full[NAME_LEN];
    if (join(full, s->c->op, prefix, name)) return -1;
    int64_t shape[2] = {d0, d1};
    int nd = d1 ? 2 : 1;
    pn_array *a;
    if (scale > 0) {
        pn_array *k = NULL;
        if (s->key) { /* key, sub = split(key) */
            pn_array *ks = pn_random_split(s->key, 2);
            s->key = pn_take(ks, pn_scalar_int(0, PN_INT32), 0);
            k = pn_take(ks, pn_scalar_int(1, PN_INT32), 0);
            if (!k) return -1;
        }
        a = pn_nn_init_uniform(shape, nd, PN_FLOAT32, -scale, scale, k);
    } else {
        a = pn_full(shape, nd, pn_scalar(fill, PN_FLOAT32), PN_FLOAT32);
    }
    return a ? pn_params_set(s->out, full, a) : -1;
}

/* nn.Linear(in, out, bias) at prefix.name. */
static int init_linear(init_ctx *s, const char *prefix, const char *name, int64_t in, int64_t out,
                       bool bias)
{
    char sub[NAME_LEN];
    double scale = 1.0 / sqrt((double)in);
    if (join(sub, s->c->op, prefix, name) || put(s, sub, "weight", out, in, scale, 0)) return -1;
    return bias ? put(s, sub, "bias", out, 0, scale, 0) : 0;
}

/* nn.LayerNorm(dims) at prefix.name. */
static int init_norm(init_ctx *s, const char *prefix, const char *name)
{
    char sub[NAME_LEN];
    if (join(sub, s->c->op, prefix, name)) return -1;
    return put(s, sub, "weight", s->c->dims, 0, 0, 1) || put(s, sub, "bias", s->c->dims, 0, 0, 0) ? -1 : 0;
}

/* nn.MultiHeadAttention(dims, heads) at prefix.name. */
static int init_attention(init_ctx *s, const char *prefix, const char *name)
{
    static const char *proj[4] = {"query_proj", "key_proj", "value_proj", "out_proj"};
    char sub[NAME_LEN];
    if (join(sub, s->c->op, prefix, name)) return -1;
    for (int i = 0; i < 4; i++)
        if (init_linear(s, sub, proj[i], s->c->dims, s->c->dims, false)) return -1;
    return 0;
}

/* An encoder or decoder layer at prefix, in the order MLX's constructors create them. */
static int init_layer(init_ctx *s, const char *prefix, bool dec)
{
    const tctx *c = s->c;
    if (dec ? init_attention(s, prefix, "self_attention") || init_attention(s, prefix, "cross_attention")
            : init_attention(s, prefix, "attention"))
        return -1;
    if (init_norm(s, prefix, "ln1") || init_norm(s, prefix, "ln2") || (dec && init_norm(s, prefix, "ln3")))
        return -1;
    return init_linear(s, prefix, "linear1", c->dims, c->mlp, true) ||
                   init_linear(s, prefix, "linear2", c->mlp, c->dims, true)
               ? -1
               : 0;
}

/* n layers and the final norm at prefix. */
static int init_stack(init_ctx *s, const char *prefix, int n, bool dec)
{
    for (int i = 0; i < n; i++) {
        char idx[32], sub[NAME_LEN];
        snprintf(idx, sizeof idx, "layers.%d", i);
        if (join(sub, s->c->op, prefix, idx) || init_layer(s, sub, dec)) return -1;
    }
    return init_norm(s, prefix, "ln");
}

/* Adds part's parameters with MLX's names and initialization to params; see ponte.h. */
int pn_nn_transformer_init(pn_params *params, const char *prefix, pn_transformer_part part,
                           const pn_transformer_config *cfg, pn_array *key)
{
    const char *op = "transformer_init";
    tctx c;
    if (config(&c, op, NULL, cfg)) return -1;
    if (!params) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] NULL parameter map.", op);
    if (key && !pnC_inputs_ok(op, 1, &key)) return -1;
    if (!prefix) prefix = "";
    pn_scope_push();
    init_ctx s = {&c, params, key};
    int rc = -1;
    char enc[NAME_LEN], dec[NAME_LEN];
    switch (part) {
    case PN_TRANSFORMER_ENCODER_LAYER: rc = init_layer(&s, prefix, false); break;
    case PN_TRANSFORMER_DECODER_LAYER: rc = init_layer(&s, prefix, true); break;
    case PN_TRANSFORMER_ENCODER: rc = init_stack(&s, prefix, cfg->num_encoder_layers, false); break;
    case PN_TRANSFORMER_DECODER: rc = init_stack(&s, prefix, cfg->num_decoder_layers, true); break;
    case PN_TRANSFORMER:
        rc = join(enc, op, prefix, "encoder") || join(dec, op, prefix, "decoder") ||
                     init_stack(&s, enc, cfg->num_encoder_layers, false) ||
                     init_stack(&s, dec, cfg->num_decoder_layers, true)
                 ? -1
                 : 0;
        break;
    default: rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] unknown transformer part %d.", op, (int)part);
    }
    pn_scope_pop();
    return rc;
}
