/* test_nn_transformer.c — the transformer blocks (encoder/decoder layers, pre- and post-norm,
 * their stacks, the encoder-decoder Transformer) against float64 references written out here
 * (linear, layer norm, multi-head attention, MLP) from the same random weights, with no,
 * causal, additive and boolean masks; the initializer's names, shapes and values; dropout;
 * custom activations; gradients by finite differences; error cases. */
#include "harness.h"

#include <float.h>
#include <string.h>

/* ───────────── a scratch arena for the reference's buffers ───────────── */

static void **arena;
static int narena, carena;

static double *keep(double *p)
{
    if (narena == carena) {
        carena = carena ? 2 * carena : 64;
        arena = realloc(arena, sizeof(void *) * (size_t)carena);
    }
    arena[narena++] = p;
    return p;
}
static double *alloc_d(int64_t n) { return keep(calloc((size_t)(n > 0 ? n : 1), sizeof(double))); }
static void arena_free(void)
{
    for (int i = 0; i < narena; i++) free(arena[i]);
    free(arena);
    arena = NULL;
    narena = carena = 0;
}

/* ───────────── the float64 reference ───────────── */

typedef struct {
    int mode; /* 0 none, 1 causal, 2 additive, 3 boolean */
    const double *m;
    int64_t ms[4]; /* the mask's shape, right-aligned against (B, H, L, S) */
    int mn;
} rmask;

typedef struct {
    const pn_params *p;
    int64_t D, H, M; /* dims, heads, mlp dims */
    bool norm_first, gelu;
} rctx;

/* The parameter prefix.name as doubles (kept in the arena). */
static const double *rp(const rctx *r, const char *prefix, const char *name)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    pn_array *a = pn_params_get(r->p, full);
    if (!a) test_fail(__FILE__, __LINE__, "reference: missing %s", full);
    double *v = a ? test_to_f64(a) : NULL;
    return v ? keep(v) : alloc_d(1 << 16); /* zeros keep going after a reported failure */
}

/* y (n, out) = x (n, in) W^T + b. */
static double *r_linear(const double *x, int64_t n, int64_t in, const double *w, const double *b, int64_t out)
{
    double *y = alloc_d(n * out);
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
    return y;
}

/* Layer norm of the rows of x (n, d) with prefix.<ln>.weight/bias, eps 1e-5, into a new buffer. */
static double *r_norm(const rctx *r, const char *prefix, const char *ln, const double *x, int64_t n)
{
    char sub[512];
    snprintf(sub, sizeof sub, "%s%s%s", prefix, prefix[0] ? "." : "", ln);
    const double *w = rp(r, sub, "weight"), *b = rp(r, sub, "bias");
    int64_t d = r->D;
    double *y = alloc_d(n * d);
    for (int64_t i = 0; i < n; i++) {
        double mu = 0, var = 0;
        for (int64_t k = 0; k < d; k++) mu += x[i * d + k];
        mu /= d;
        for (int64_t k = 0; k < d; k++) var += (x[i * d + k] - mu) * (x[i * d + k] - mu);
        var /= d;
        for (int64_t k = 0; k < d; k++) y[i * d + k] = (x[i * d + k] - mu) / sqrt(var + 1e-5) * w[k] + b[k];
    }
    return y;
}

/* Element (b, h, i, j) of a mask of shape ms (rank mn) broadcast to 4-d. */
static double mask_at(const rmask *m, int64_t b, int64_t h, int64_t i, int64_t j)
{
    int64_t s[4] = {1, 1, 1, 1}, c[4] = {b, h, i, j}, idx = 0, st = 1;
    for (int k = 0; k < m->mn; k++) s[4 - m->mn + k] = m->ms[k];
    for (int k = 3; k >= 0; k--) {
        idx += (s[k] == 1 ? 0 : c[k]) * st;
        st *= s[k];
    }
    return m->m[idx];
}

/* Multi-head attention at prefix: q (B, L, D) against kv (B, S, D). */
static double *r_attention(const rctx *r, const char *prefix, const double *q, const double *kv, int64_t B,
                           int64_t L, int64_t S, const rmask *m)
{
    char sub[512];
    const double *w[4];
    const char *proj[4] = {"query_proj", "key_proj", "value_proj", "out_proj"};
    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof sub, "%s.%s", prefix, proj[i]);
        w[i] = rp(r, sub, "weight");
    }
    int64_t D = r->D, H = r->H, dh = D / H;
    double *Q = r_linear(q, B * L, D, w[0], NULL, D), *K = r_linear(kv, B * S, D, w[1], NULL, D);
    double *V = r_linear(kv, B * S, D, w[2], NULL, D), *O = alloc_d(B * L * D), *s = alloc_d(S);
    double scale = 1.0 / sqrt((double)dh);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < L; i++) {
                double mx = -INFINITY, z = 0;
                for (int64_t j = 0; j < S; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < dh; d++) acc += Q[(b * L + i) * D + h * dh + d] * K[(b * S + j) * D + h * dh + d];
                    acc *= scale;
                    if (m->mode == 1 && j > i + S - L) acc = -DBL_MAX;
                    if (m->mode == 2) acc += mask_at(m, b, h, i, j);
                    if (m->mode == 3 && mask_at(m, b, h, i, j) == 0) acc = -DBL_MAX;
                    s[j] = acc;
                    if (acc > mx) mx = acc;
                }
                for (int64_t j = 0; j < S; j++) z += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < dh; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < S; j++) acc += s[j] / z * V[(b * S + j) * D + h * dh + d];
                    O[(b * L + i) * D + h * dh + d] = acc;
                }
            }
    return r_linear(O, B * L, D, w[3], NULL, D);
}

/* linear2(act(linear1(y))) at prefix over n rows. */
static double *r_mlp(const rctx *r, const char *prefix, const double *y, int64_t n)
{
    char l1[512], l2[512];
    snprintf(l1, sizeof l1, "%s%slinear1", prefix, prefix[0] ? "." : "");
    snprintf(l2, sizeof l2, "%s%slinear2", prefix, prefix[0] ? "." : "");
    double *h = r_linear(y, n, r->D, rp(r, l1, "weight"), rp(r, l1, "bias"), r->M);
    for (int64_t i = 0; i < n * r->M; i++)
        h[i] = r->gelu ? 0.5 * h[i] * (1 + erf(h[i] / sqrt(2.0))) : (h[i] > 0 ? h[i] : 0);
    return r_linear(h, n, r->M, rp(r, l2, "weight"), rp(r, l2, "bias"), r->D);
}

static double *r_add(const double *a, const double *b, int64_t n)
{
    double *y = alloc_d(n);
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return y;
}

/* One encoder (mem NULL) or decoder layer, written as mlx.nn's __call__ reads. */
static double *r_layer(const rctx *r, const char *prefix, const double *x, const double *mem, int64_t B,
                       int64_t L, int64_t S, const rmask *masks)
{
    char self[640], cross[640];
    bool dec = mem != NULL;
    snprintf(self, sizeof self, "%s%s%s", prefix, prefix[0] ? "." : "", dec ? "self_attention" : "attention");
    snprintf(cross, sizeof cross, "%s%s%s", prefix, prefix[0] ? "." : "", "cross_attention");
    const char *last = dec ? "ln3" : "ln2";
    int64_t n = B * L * r->D;
    if (r->norm_first) {
        double *y = r_norm(r, prefix, "ln1", x, B * L);
        double *h = r_add(x, r_attention(r, self, y, y, B, L, L, &masks[0]), n);
        if (dec) {
            y = r_norm(r, prefix, "ln2", h, B * L);
            h = r_add(h, r_attention(r, cross, y, mem, B, L, S, &masks[1]), n);
        }
        y = r_norm(r, prefix, last, h, B * L);
        return r_add(h, r_mlp(r, prefix, y, B * L), n);
    }
    double *y = r_attention(r, self, x, x, B, L, L, &masks[0]);
    double *h = r_norm(r, prefix, "ln1", r_add(x, y, n), B * L);
    if (dec) {
        y = r_attention(r, cross, y, mem, B, L, S, &masks[1]); /* MLX: queries are y */
        h = r_norm(r, prefix, "ln2", r_add(h, y, n), B * L);
    }
    y = r_mlp(r, prefix, h, B * L);
    return r_norm(r, prefix, last, r_add(h, y, n), B * L);
}

/* nl layers then "ln". */
static double *r_stack(const rctx *r, const char *prefix, int nl, const double *x, const double *mem, int64_t B,
                       int64_t L, int64_t S, const rmask *masks)
{
    char sub[512];
    for (int i = 0; i < nl; i++) {
        snprintf(sub, sizeof sub, "%s%slayers.%d", prefix, prefix[0] ? "." : "", i);
        x = r_layer(r, sub, x, mem, B, L, S, masks);
    }
    return r_norm(r, prefix, "ln", x, B * L);
}

/* ───────────── fixtures ───────────── */

/* The parameters of part (initialized, then every entry replaced by random values so the
 * layer norms' affine parameters matter too), as dtype. */
static pn_params *random_params(pn_transformer_part part, const pn_transformer_config *cfg, pn_dtype dtype)
{
    pn_params *init = pn_params_new(), *p = pn_params_new();
    CHECK(pn_nn_transformer_init(init, "", part, cfg, pn_random_key(1)) == 0);
    for (int i = 0; i < pn_params_count(init); i++) {
        pn_array *a = pn_params_at(init, i);
        pn_params_set(p, pn_params_name(init, i), test_random_array(pn_shape(a), pn_ndim(a), dtype, -0.7, 0.7));
    }
    pn_params_free(init);
    return p;
}

/* A random mask for attention of L queries over S keys: mode 2 additive (shape (L, S)), 3
 * boolean (shape (B, 1, L, S)); its values into r. */
static pn_attention_mask make_mask(int mode, int64_t B, int64_t L, int64_t S, rmask *r)
{
    *r = (rmask){mode};
    if (mode == 0) return (pn_attention_mask){0};
    if (mode == 1) return (pn_attention_mask){"causal", NULL};
    pn_array *m;
    if (mode == 2) {
        m = test_random_array((int64_t[]){L, S}, 2, PN_FLOAT32, -2, 2);
        r->mn = 2, r->ms[0] = L, r->ms[1] = S;
    } else {
        pn_array *u = test_random_array((int64_t[]){B, 1, L, S}, 4, PN_FLOAT32, 0, 1);
        /* keep key 0 visible so no row is fully masked (the reference would differ in ties) */
        m = pn_logical_or(pn_greater(u, pn_weak_float(0.35)),
                          pn_equal(pn_arange(0, (double)S, 1, PN_INT32), pn_weak_int(0)));
        r->mn = 4, r->ms[0] = B, r->ms[1] = 1, r->ms[2] = L, r->ms[3] = S;
    }
    r->m = keep(test_to_f64(m));
    return (pn_attention_mask){NULL, m};
}

static const char *mode_name[4] = {"none", "causal", "additive", "bool"};

/* ───────────── forward passes against the reference ───────────── */

TEST(encoder_layer_matches_reference)
{
    int64_t B = 2, L = 5, D = 8;
    pn_dtype ts[2] = {PN_FLOAT32, PN_FLOAT64};
    for (int ti = 0; ti < 2; ti++)
        for (int nf = 0; nf < 2; nf++)
            for (int mode = 0; mode < 4; mode++) {
                pn_scope_push();
                pn_transformer_config cfg = {.dims = (int)D, .num_heads = 2, .mlp_dims = mode == 3 ? 12 : 0,
                                             .norm_first = nf};
                pn_params *p = random_params(PN_TRANSFORMER_ENCODER_LAYER, &cfg, ts[ti]);
                rctx r = {p, D, 2, cfg.mlp_dims ? cfg.mlp_dims : 4 * D, nf, false};
                rmask rm[2] = {{0}, {0}};
                pn_attention_mask m = make_mask(mode, B, L, L, &rm[0]);
                pn_array *x = test_random_array((int64_t[]){B, L, D}, 3, ts[ti], -1.5, 1.5);
                pn_array *y = pn_nn_transformer_encoder_layer(x, m, p, NULL, &cfg, NULL);
                CHECK_OK(y);
                double *ref = r_layer(&r, "", keep(test_to_f64(x)), NULL, B, L, L, rm);
                double tol = ts[ti] == PN_FLOAT64 ? 1e-10 : 2e-4;
                CHECK_MSG(test_check_values("encoder layer", y, (int64_t[]){B, L, D}, 3, ts[ti], ref, tol, tol),
                          "encoder layer %s norm_first %d mask %s", pn_dtype_name(ts[ti]), nf, mode_name[mode]);
                /* unbatched (L, D): the same as a batch of one */
                if (mode != 3) {
                    pn_array *x0 = pn_take(x, pn_scalar_int(1, PN_INT32), 0);
                    pn_array *y0 = pn_nn_transformer_encoder_layer(x0, m, p, "", &cfg, NULL);
                    CHECK_OK(y0);
                    CHECK_MSG(test_check_values("unbatched", y0, (int64_t[]){L, D}, 2, ts[ti], ref + L * D, tol, tol),
                              "unbatched encoder layer mask %s", mode_name[mode]);
                }
                pn_params_free(p);
                arena_free();
                pn_scope_pop();
            }
}

TEST(decoder_layer_matches_reference)
{
    int64_t B = 2, L = 4, S = 6, D = 8;
    struct { int xm, mm; } masks[] = {{0, 0}, {1, 0}, {1, 2}, {3, 3}, {2, 3}};
    for (int nf = 0; nf < 2; nf++)
        for (size_t c = 0; c < sizeof masks / sizeof masks[0]; c++) {
            pn_scope_push();
            pn_dtype t = c % 2 ? PN_FLOAT64 : PN_FLOAT32;
            pn_transformer_config cfg = {.dims = (int)D, .num_heads = 4, .mlp_dims = 16, .norm_first = nf};
            pn_params *p = random_params(PN_TRANSFORMER_DECODER_LAYER, &cfg, t);
            rctx r = {p, D, 4, 16, nf, false};
            rmask rm[2];
            pn_attention_mask xm = make_mask(masks[c].xm, B, L, L, &rm[0]);
            pn_attention_mask mm = make_mask(masks[c].mm, B, L, S, &rm[1]);
            pn_array *x = test_random_array((int64_t[]){B, L, D}, 3, t, -1.5, 1.5);
            pn_array *mem = test_random_array((int64_t[]){B, S, D}, 3, t, -1.5, 1.5);
            pn_array *y = pn_nn_transformer_decoder_layer(x, mem, xm, mm, p, "", &cfg, NULL);
            CHECK_OK(y);
            double *ref = r_layer(&r, "", keep(test_to_f64(x)), keep(test_to_f64(mem)), B, L, S, rm);
            double tol = t == PN_FLOAT64 ? 1e-10 : 2e-4;
            CHECK_MSG(test_check_values("decoder layer", y, (int64_t[]){B, L, D}, 3, t, ref, tol, tol),
                      "decoder layer norm_first %d x_mask %s memory_mask %s", nf, mode_name[masks[c].xm],
                      mode_name[masks[c].mm]);
            pn_params_free(p);
            arena_free();
            pn_scope_pop();
        }
}

TEST(stacks_and_transformer_match_reference)
{
    int64_t B = 2, L = 5, S = 3, D = 6;
    for (int nf = 0; nf < 2; nf++) {
        pn_scope_push();
        pn_transformer_config cfg = {.dims = (int)D, .num_heads = 3, .mlp_dims = 10, .num_encoder_layers = 2,
                                     .num_decoder_layers = 3, .norm_first = nf};
        rmask none = {0}, causal = {1}, rm[3];
        /* the encoder stack, with a prefix, causal */
        pn_params *p = pn_params_new(), *tmp = random_params(PN_TRANSFORMER_ENCODER, &cfg, PN_FLOAT64);
        for (int i = 0; i < pn_params_count(tmp); i++) {
            char name[256];
            snprintf(name, sizeof name, "model.%s", pn_params_name(tmp, i));
            pn_params_set(p, name, pn_params_at(tmp, i));
        }
        pn_params_free(tmp);
        rctx r = {p, D, 3, 10, nf, false};
        pn_array *x = test_random_array((int64_t[]){B, L, D}, 3, PN_FLOAT64, -1, 1);
        pn_array *y = pn_nn_transformer_encoder(x, (pn_attention_mask){"causal", NULL}, p, "model", &cfg, NULL);
        CHECK_OK(y);
        rm[0] = causal;
        double *xd = keep(test_to_f64(x));
        double *ref = r_stack(&r, "model", 2, xd, NULL, B, L, L, rm);
        CHECK_MSG(test_check_values("encoder", y, (int64_t[]){B, L, D}, 3, PN_FLOAT64, ref, 1e-10, 1e-10),
                  "encoder norm_first %d", nf);
        pn_params_free(p);

        /* the decoder stack over a memory of another length */
        p = random_params(PN_TRANSFORMER_DECODER, &cfg, PN_FLOAT32);
        r.p = p;
        pn_array *xf = test_random_array((int64_t[]){B, L, D}, 3, PN_FLOAT32, -1, 1);
        pn_array *mem = test_random_array((int64_t[]){B, S, D}, 3, PN_FLOAT32, -1, 1);
        pn_attention_mask mm = make_mask(2, B, L, S, &rm[1]);
        rm[0] = causal;
        y = pn_nn_transformer_decoder(xf, mem, (pn_attention_mask){"causal", NULL}, mm, p, NULL, &cfg, NULL);
        CHECK_OK(y);
        ref = r_stack(&r, "", 3, keep(test_to_f64(xf)), keep(test_to_f64(mem)), B, L, S, rm);
        CHECK_MSG(test_check_values("decoder", y, (int64_t[]){B, L, D}, 3, PN_FLOAT32, ref, 3e-4, 3e-4),
                  "decoder norm_first %d", nf);
        pn_params_free(p);

        /* the whole transformer: src (B, S, D), tgt (B, L, D); masks src: none, tgt: causal,
         * memory: boolean */
        p = random_params(PN_TRANSFORMER, &cfg, PN_FLOAT64);
        r.p = p;
        pn_array *src = test_random_array((int64_t[]){B, S, D}, 3, PN_FLOAT64, -1, 1);
        pn_array *tgt = test_random_array((int64_t[]){B, L, D}, 3, PN_FLOAT64, -1, 1);
        rmask dm[2];
        dm[0] = causal;
        pn_attention_mask bm = make_mask(3, B, L, S, &dm[1]);
        y = pn_nn_transformer(src, tgt, (pn_attention_mask){0}, (pn_attention_mask){"causal", NULL}, bm, p, "", &cfg,
                              NULL);
        CHECK_OK(y);
        rm[0] = none;
        double *memd = r_stack(&r, "encoder", 2, keep(test_to_f64(src)), NULL, B, S, S, rm);
        ref = r_stack(&r, "decoder", 3, keep(test_to_f64(tgt)), memd, B, L, S, dm);
        CHECK_MSG(test_check_values("transformer", y, (int64_t[]){B, L, D}, 3, PN_FLOAT64, ref, 1e-10, 1e-10),
                  "transformer norm_first %d", nf);
        /* unbatched: the first sample */
        pn_array *zero = pn_scalar_int(0, PN_INT32);
        pn_array *bm0 = pn_take(bm.array, zero, 0);
        y = pn_nn_transformer(pn_take(src, zero, 0), pn_take(tgt, zero, 0), (pn_attention_mask){0},
                              (pn_attention_mask){"causal", NULL}, (pn_attention_mask){NULL, bm0}, p, "", &cfg, NULL);
        CHECK_MSG(test_check_values("transformer unbatched", y, (int64_t[]){L, D}, 2, PN_FLOAT64, ref, 1e-10, 1e-10),
                  "unbatched transformer norm_first %d", nf);
        /* zero layers: only the final norm */
        pn_transformer_config c0 = cfg;
        c0.num_encoder_layers = 0;
        pn_params *p0 = pn_params_new();
        CHECK(pn_nn_transformer_init(p0, "", PN_TRANSFORMER_ENCODER, &c0, NULL) == 0);
        CHECK(pn_params_count(p0) == 2);
        r.p = p0;
        y = pn_nn_transformer_encoder(x, (pn_attention_mask){0}, p0, "", &c0, NULL);
        ref = r_norm(&r, "", "ln", xd, B * L);
        CHECK(test_check_values("no layers", y, (int64_t[]){B, L, D}, 3, PN_FLOAT64, ref, 1e-10, 1e-10));
        pn_params_free(p0);
        pn_params_free(p);
        arena_free();
        pn_scope_pop();
    }
}

/* ───────────── activation closures ───────────── */

static int gelu_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_nn_gelu(in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}
static int bad_shape_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    int ax = -1;
    out[0] = pn_sum(in[0], &ax, 1, false);
    *nout = 1;
    return 0;
}
static int failing_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    return pn_set_error(PN_ERR_TYPE, "activation failed on purpose");
}

TEST(custom_activation)
{
    pn_scope_push();
    int64_t B = 2, L = 3, D = 4;
    pn_closure *gelu = pn_closure_new(gelu_fn, NULL, NULL);
    pn_transformer_config cfg = {.dims = 4, .num_heads = 2, .mlp_dims = 8, .norm_first = true, .activation = gelu};
    pn_params *p = random_params(PN_TRANSFORMER_ENCODER_LAYER, &cfg, PN_FLOAT64);
    rctx r = {p, D, 2, 8, true, true};
    rmask rm[2] = {{1}, {0}};
    pn_array *x = test_random_array((int64_t[]){B, L, D}, 3, PN_FLOAT64, -1.5, 1.5);
    pn_array *y = pn_nn_transformer_encoder_layer(x, (pn_attention_mask){"causal", NULL}, p, "", &cfg, NULL);
    double *ref = r_layer(&r, "", keep(test_to_f64(x)), NULL, B, L, L, rm);
    CHECK(test_check_values("gelu layer", y, (int64_t[]){B, L, D}, 3, PN_FLOAT64, ref, 1e-10, 1e-10));
    /* and relu's result differs, so the closure was used */
    cfg.activation = NULL;
    r.gelu = false;
    pn_array *yr = pn_nn_transformer_encoder_layer(x, (pn_attention_mask){"causal", NULL}, p, "", &cfg, NULL);
    CHECK(pn_item(pn_array_equal(y, yr, false)) == 0);
    pn_closure *bad = pn_closure_new(bad_shape_fn, NULL, NULL), *fail = pn_closure_new(failing_fn, NULL, NULL);
    cfg.activation = bad;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, (pn_attention_mask){0}, p, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    cfg.activation = fail;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, (pn_attention_mask){0}, p, "", &cfg, NULL), PN_ERR_TYPE);
    pn_closure_release(gelu);
    pn_closure_release(bad);
    pn_closure_release(fail);
    pn_params_free(p);
    arena_free();
    pn_scope_pop();
}

/* ───────────── dropout ───────────── */

TEST(dropout)
{
    pn_scope_push();
    pn_transformer_config cfg = {.dims = 8, .num_heads = 2, .num_encoder_layers = 2, .num_decoder_layers = 1,
                                 .dropout = 0.5, .norm_first = true};
    pn_params *p = random_params(PN_TRANSFORMER, &cfg, PN_FLOAT32);
    pn_array *src = test_random_array((int64_t[]){2, 5, 8}, 3, PN_FLOAT32, -1, 1);
    pn_array *tgt = test_random_array((int64_t[]){2, 4, 8}, 3, PN_FLOAT32, -1, 1);
    pn_attention_mask none = {0};
    pn_array *k1 = pn_random_key(7), *k2 = pn_random_key(8);
    pn_array *a = pn_nn_transformer(src, tgt, none, none, none, p, "", &cfg, k1);
    pn_array *b = pn_nn_transformer(src, tgt, none, none, none, p, "", &cfg, k1);
    pn_array *c = pn_nn_transformer(src, tgt, none, none, none, p, "", &cfg, k2);
    pn_array *g = pn_nn_transformer(src, tgt, none, none, none, p, "", &cfg, NULL); /* global state */
    pn_transformer_config eval = cfg;
    eval.dropout = 0;
    pn_array *e = pn_nn_transformer(src, tgt, none, none, none, p, "", &eval, k1);
    pn_array *e2 = pn_nn_transformer(src, tgt, none, none, none, p, "", &eval, k2);
    CHECK_OK(a);
    CHECK_OK(c);
    CHECK_OK(g);
    CHECK_OK(e);
    CHECK(pn_item(pn_array_equal(a, b, false)) == 1); /* the same key, the same masks */
    CHECK(pn_item(pn_array_equal(a, c, false)) == 0);
    CHECK(pn_item(pn_array_equal(a, e, false)) == 0);
    CHECK(pn_item(pn_array_equal(e, e2, false)) == 1); /* no dropout: the key does not matter */
    CHECK(pn_item(pn_all(pn_isfinite(g), NULL, 0, false)) == 1);
    /* a single layer's dropout sites: with p close to 1 the attention's output and the MLP's
     * hidden units are dropped, so the pre-norm layer gives x + linear2.bias */
    pn_transformer_config hi = {.dims = 8, .num_heads = 2, .dropout = 0.999999, .norm_first = true};
    pn_params *pl = random_params(PN_TRANSFORMER_ENCODER_LAYER, &hi, PN_FLOAT32);
    pn_array *y = pn_nn_transformer_encoder_layer(src, none, pl, "", &hi, k1);
    pn_array *want = pn_add(src, pn_params_get(pl, "linear2.bias"));
    CHECK(pn_item(pn_allclose(y, want, 0, 1e-6, false)) == 1);
    CHECK(pn_item(pn_allclose(pn_nn_transformer_encoder_layer(src, none, pl, "", &cfg, k1), want, 0, 1e-3, false)) == 0);
    /* a malformed key is an error, not a silent fallback to the global state */
    CHECK_ERR(pn_nn_transformer(src, tgt, none, none, none, p, "", &cfg, pn_zeros((int64_t[]){3}, 1, PN_FLOAT32)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(src, none, pl, "", &hi, pn_zeros((int64_t[]){2}, 1, PN_FLOAT32)),
              PN_ERR_INVALID_ARGUMENT);
    pn_params_free(pl);
    pn_params_free(p);
    pn_scope_pop();
}

/* ───────────── initialization ───────────── */

TEST(init_names_shapes_values)
{
    pn_scope_push();
    pn_transformer_config cfg = {.dims = 8, .num_heads = 2, .mlp_dims = 0, .num_encoder_layers = 2,
                                 .num_decoder_layers = 1};
    static const struct { const char *name; int64_t d0, d1; } enc[] = {
        {"attention.query_proj.weight", 8, 8}, {"attention.key_proj.weight", 8, 8},
        {"attention.value_proj.weight", 8, 8}, {"attention.out_proj.weight", 8, 8},
        {"ln1.weight", 8, 0}, {"ln1.bias", 8, 0}, {"ln2.weight", 8, 0}, {"ln2.bias", 8, 0},
        {"linear1.weight", 32, 8}, {"linear1.bias", 32, 0}, {"linear2.weight", 8, 32}, {"linear2.bias", 8, 0},
    };
    pn_params *p = pn_params_new();
    CHECK(pn_nn_transformer_init(p, "blk", PN_TRANSFORMER_ENCODER_LAYER, &cfg, pn_random_key(3)) == 0);
    CHECK(pn_params_count(p) == 12);
    for (int i = 0; i < 12 && i < pn_params_count(p); i++) {
        char want[128];
        snprintf(want, sizeof want, "blk.%s", enc[i].name);
        CHECK_MSG(strcmp(pn_params_name(p, i), want) == 0, "entry %d is %s, expected %s", i, pn_params_name(p, i), want);
        pn_array *a = pn_params_at(p, i);
        int nd = enc[i].d1 ? 2 : 1;
        CHECK_MSG(pn_ndim(a) == nd && pn_shape(a)[0] == enc[i].d0 && (nd == 1 || pn_shape(a)[1] == enc[i].d1),
                  "shape of %s", want);
        CHECK(pn_array_dtype(a) == PN_FLOAT32);
        double *v = test_to_f64(a);
        int64_t n = pn_size(a);
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t k = 0; v && k < n; k++) lo = fmin(lo, v[k]), hi = fmax(hi, v[k]);
        if (strstr(want, "ln")) {
            double c = strstr(want, "weight") ? 1 : 0;
            CHECK_MSG(lo == c && hi == c, "%s should be all %g", want, c);
        } else { /* uniform(-1/sqrt(in), 1/sqrt(in)) with in = 8, or 32 for linear2 */
            double bound = 1 / sqrt(strstr(want, "linear2") ? 32.0 : 8.0);
            CHECK_MSG(lo >= -bound && hi <= bound && hi - lo > bound, "%s in [%g, %g], bound %g", want, lo, hi, bound);
        }
        free(v);
    }
    /* the same key gives the same parameters, another key others, and each tensor its own draw */
    pn_params *q = pn_params_new(), *o = pn_params_new();
    CHECK(pn_nn_transformer_init(q, "blk", PN_TRANSFORMER_ENCODER_LAYER, &cfg, pn_random_key(3)) == 0);
    CHECK(pn_nn_transformer_init(o, "blk", PN_TRANSFORMER_ENCODER_LAYER, &cfg, pn_random_key(4)) == 0);
    pn_array *wq = pn_params_get(p, "blk.attention.query_proj.weight"), *wk = pn_params_get(p, "blk.attention.key_proj.weight");
    CHECK(pn_item(pn_array_equal(wq, pn_params_get(q, "blk.attention.query_proj.weight"), false)) == 1);
    CHECK(pn_item(pn_array_equal(wq, pn_params_get(o, "blk.attention.query_proj.weight"), false)) == 0);
    CHECK(pn_item(pn_array_equal(wq, wk, false)) == 0);
    /* NULL key: the global random state, reproducible after pn_random_seed */
    pn_params *g1 = pn_params_new(), *g2 = pn_params_new();
    pn_random_seed(11);
    CHECK(pn_nn_transformer_init(g1, NULL, PN_TRANSFORMER_DECODER_LAYER, &cfg, NULL) == 0);
    pn_random_seed(11);
    CHECK(pn_nn_transformer_init(g2, "", PN_TRANSFORMER_DECODER_LAYER, &cfg, NULL) == 0);
    CHECK(pn_params_count(g1) == 4 + 4 + 6 + 4);
    CHECK(strcmp(pn_params_name(g1, 0), "self_attention.query_proj.weight") == 0);
    CHECK(strcmp(pn_params_name(g1, 4), "cross_attention.query_proj.weight") == 0);
    CHECK(strcmp(pn_params_name(g1, 12), "ln3.weight") == 0);
    CHECK(pn_item(pn_array_equal(pn_params_at(g1, 14), pn_params_at(g2, 14), false)) == 1);
    /* the whole transformer: 2 encoder layers + ln, 1 decoder layer + ln */
    pn_params *t = pn_params_new();
    CHECK(pn_nn_transformer_init(t, "", PN_TRANSFORMER, &cfg, NULL) == 0);
    CHECK(pn_params_count(t) == 2 * 12 + 2 + 18 + 2);
    CHECK(pn_params_get(t, "encoder.layers.1.linear2.bias") && pn_params_get(t, "encoder.ln.weight"));
    CHECK(pn_params_get(t, "decoder.layers.0.cross_attention.out_proj.weight") && pn_params_get(t, "decoder.ln.bias"));
    CHECK(!pn_params_get(t, "decoder.layers.1.ln1.weight"));
    pn_params *all[] = {p, q, o, g1, g2, t};
    for (int i = 0; i < 6; i++) pn_params_free(all[i]);
    pn_scope_pop();
}

/* ───────────── gradients ───────────── */

typedef struct {
    pn_transformer_part part;
    const pn_transformer_config *cfg;
    const pn_params *names; /* the parameter names, in the order of in[2..] */
    pn_attention_mask m[3];
} gctx;

/* in: x, memory (ignored by encoder parts), then the parameters. */
static pn_array *block_op(void *ctx, pn_array *const *in)
{
    gctx *g = ctx;
    pn_params *p = pn_params_new();
    for (int i = 0; i < pn_params_count(g->names); i++) pn_params_set(p, pn_params_name(g->names, i), in[2 + i]);
    pn_array *y = NULL;
    switch (g->part) {
    case PN_TRANSFORMER_ENCODER_LAYER: y = pn_nn_transformer_encoder_layer(in[0], g->m[0], p, "", g->cfg, NULL); break;
    case PN_TRANSFORMER_DECODER_LAYER:
        y = pn_nn_transformer_decoder_layer(in[0], in[1], g->m[0], g->m[1], p, "", g->cfg, NULL);
        break;
    case PN_TRANSFORMER: y = pn_nn_transformer(in[1], in[0], g->m[2], g->m[0], g->m[1], p, "", g->cfg, NULL); break;
    default: break;
    }
    pn_params_free(p);
    return y;
}

TEST(gradients)
{
    pn_scope_push();
    int64_t B = 2, L = 3, S = 2, D = 4;
    struct { pn_transformer_part part; bool nf; int xm, mm; } cases[] = {
        {PN_TRANSFORMER_ENCODER_LAYER, true, 1, 0},
        {PN_TRANSFORMER_ENCODER_LAYER, false, 2, 0},
        {PN_TRANSFORMER_DECODER_LAYER, true, 1, 2},
        {PN_TRANSFORMER_DECODER_LAYER, false, 0, 3},
        {PN_TRANSFORMER, true, 1, 0},
    };
    /* each checked element costs two evaluations of the block: sanitizer runs and the
     * simulated GPU (slow kernels) check one encoder and one decoder case */
    bool small = test_quick() || pn_default_device().type == PN_GPU;
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        if (small && c != 0 && c != 3) continue;
        pn_scope_push();
        pn_transformer_config cfg = {.dims = (int)D, .num_heads = 2, .mlp_dims = 6, .num_encoder_layers = 1,
                                     .num_decoder_layers = 1, .norm_first = cases[c].nf};
        pn_params *p = random_params(cases[c].part, &cfg, PN_FLOAT64);
        rmask unused;
        gctx g = {cases[c].part, &cfg, p, {make_mask(cases[c].xm, B, L, L, &unused),
                                           make_mask(cases[c].mm, B, L, S, &unused), {0}}};
        int n = pn_params_count(p);
        pn_array **in = malloc(sizeof(pn_array *) * (size_t)(n + 2));
        in[0] = test_random_array((int64_t[]){B, L, D}, 3, PN_FLOAT64, -1, 1);
        in[1] = test_random_array((int64_t[]){B, S, D}, 3, PN_FLOAT64, -1, 1);
        for (int i = 0; i < n; i++) in[2 + i] = pn_params_at(p, i);
        CHECK_MSG(test_gradcheck("transformer block", block_op, &g, n + 2, in, 1e-5), "gradient case %d", c);
        free(in);
        pn_params_free(p);
        arena_free();
        pn_scope_pop();
    }
    pn_scope_pop();
}

/* ───────────── errors ───────────── */

TEST(errors)
{
    pn_scope_push();
    pn_transformer_config cfg = {.dims = 8, .num_heads = 2, .num_encoder_layers = 1, .num_decoder_layers = 1};
    pn_params *p = random_params(PN_TRANSFORMER_ENCODER_LAYER, &cfg, PN_FLOAT32);
    pn_params *pd = random_params(PN_TRANSFORMER_DECODER_LAYER, &cfg, PN_FLOAT32);
    pn_array *x = test_random_array((int64_t[]){2, 5, 8}, 3, PN_FLOAT32, -1, 1);
    pn_attention_mask none = {0};
    /* configs */
    pn_transformer_config bad = cfg;
    bad.num_heads = 3;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "", &bad, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_nn_transformer_encoder_layer(x, none, p, "", &bad, NULL);
    CHECK(strstr(pn_last_error_message(), "divisible by the number of heads (8 % 3)") != NULL);
    pn_clear_error();
    bad = cfg, bad.dims = 0;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "", &bad, NULL), PN_ERR_INVALID_ARGUMENT);
    bad = cfg, bad.mlp_dims = -1;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "", &bad, NULL), PN_ERR_INVALID_ARGUMENT);
    bad = cfg, bad.dropout = 1.0;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "", &bad, NULL), PN_ERR_INVALID_ARGUMENT);
    bad = cfg, bad.num_encoder_layers = -1;
    CHECK_ERR(pn_nn_transformer_encoder(x, none, p, "", &bad, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, NULL, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK(pn_nn_transformer_init(p, "", (pn_transformer_part)42, &cfg, NULL) == -1 &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_nn_transformer_init(NULL, "", PN_TRANSFORMER, &cfg, NULL) == -1);
    pn_clear_error();
    CHECK(pn_nn_transformer_init(p, "", PN_TRANSFORMER, &bad, NULL) == -1);
    pn_clear_error();
    /* inputs */
    CHECK_ERR(pn_nn_transformer_encoder_layer(NULL, none, p, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(test_random_array((int64_t[]){2, 5, 6}, 3, PN_FLOAT32, 0, 1), none, p,
                                              "", &cfg, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(test_random_array((int64_t[]){1, 2, 5, 8}, 4, PN_FLOAT32, 0, 1), none,
                                              p, "", &cfg, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(test_random_array((int64_t[]){8}, 1, PN_FLOAT32, 0, 1), none, p, "",
                                              &cfg, NULL),
              PN_ERR_INVALID_ARGUMENT);
    pn_array *mem_b = test_random_array((int64_t[]){3, 4, 8}, 3, PN_FLOAT32, 0, 1);
    CHECK_ERR(pn_nn_transformer_decoder_layer(x, mem_b, none, none, pd, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_decoder_layer(x, NULL, none, none, pd, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_array *mem_d = test_random_array((int64_t[]){2, 4, 6}, 3, PN_FLOAT32, 0, 1);
    CHECK_ERR(pn_nn_transformer_decoder_layer(x, mem_d, none, none, pd, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    /* masks (reported by the attention) */
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, (pn_attention_mask){"sideways", NULL}, p, "", &cfg, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(
                  x, (pn_attention_mask){NULL, test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT32, 0, 1)}, p, "", &cfg,
                  NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, (pn_attention_mask){"causal", x}, p, "", &cfg, NULL),
              PN_ERR_INVALID_ARGUMENT);
    /* parameters: missing, misshapen, wrong prefix, the wrong block's tree */
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, "nope", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_nn_transformer_encoder_layer(x, none, p, "nope", &cfg, NULL);
    CHECK(strstr(pn_last_error_message(), "missing parameter 'nope.attention.query_proj.weight'") != NULL);
    pn_clear_error();
    CHECK_ERR(pn_nn_transformer_decoder_layer(x, x, none, none, p, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_transformer_encoder(x, none, p, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_params *q = random_params(PN_TRANSFORMER_ENCODER_LAYER, &cfg, PN_FLOAT32);
    pn_params_set(q, "linear1.bias", pn_zeros((int64_t[]){31}, 1, PN_FLOAT32));
    pn_nn_transformer_encoder_layer(x, none, q, "", &cfg, NULL);
    CHECK(strstr(pn_last_error_message(), "parameter 'linear1.bias' has shape (31), expected (32)") != NULL);
    pn_clear_error();
    pn_params_set(q, "linear1.bias", pn_zeros((int64_t[]){32}, 1, PN_FLOAT32));
    pn_params_set(q, "attention.key_proj.weight", pn_zeros((int64_t[]){8, 4}, 2, PN_FLOAT32));
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, q, "", &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_params_set(q, "attention.key_proj.weight", pn_zeros((int64_t[]){8, 8}, 2, PN_FLOAT32));
    CHECK_OK(pn_nn_transformer_encoder_layer(x, none, q, "", &cfg, NULL));
    /* a prefix longer than a parameter name may be */
    char longp[700];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK_ERR(pn_nn_transformer_encoder_layer(x, none, p, longp, &cfg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_params *r = pn_params_new();
    CHECK(pn_nn_transformer_init(r, longp, PN_TRANSFORMER_ENCODER_LAYER, &cfg, NULL) == -1);
    pn_clear_error();
    pn_params_free(r);
    pn_params_free(q);
    pn_params_free(p);
    pn_params_free(pd);
    pn_scope_pop();
}
