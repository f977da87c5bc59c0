/* test_nn_attention.c — scaled dot-product attention (no mask, causal, additive and boolean
 * masks, grouped-query), RoPE, sinusoidal encodings and ALiBi against float64 references
 * computed here on random data; attention gradients by finite differences; error cases. */
#include "harness.h"
#include "ops/attention.h"

#include <float.h>
#include <string.h>

/* ───────────── attention reference ───────────── */

/* Index of element (b,h,i,j) of a mask of shape ms (rank mn <= 4) broadcast to 4-d. */
static int64_t bidx(const int64_t *ms, int mn, const int64_t *c4)
{
    int64_t s[4] = {1, 1, 1, 1}, idx = 0, st = 1;
    for (int i = 0; i < mn; i++) s[4 - mn + i] = ms[i];
    for (int i = 3; i >= 0; i--) {
        idx += (s[i] == 1 ? 0 : c4[i]) * st;
        st *= s[i];
    }
    return idx;
}

typedef struct {
    int mode; /* 0 none, 1 causal, 2 additive mask, 3 boolean mask */
    const double *mask;
    const int64_t *ms;
    int mn;
    const double *sinks; /* NULL, or one logit per query head: a softmax column of value 0 */
} ref_mask;

/* out (B,Hq,Lq,Dv) = softmax(scale q k^T + mask) v, kv head = h / (Hq / Hkv). */
static double *ref_sdpa(const double *q, const double *k, const double *v, const int64_t *qs,
                        const int64_t *ks, int64_t dv, double scale, ref_mask m)
{
    int64_t B = qs[0], Hq = qs[1], Lq = qs[2], D = qs[3], Hk = ks[1], Lk = ks[2], rep = Hq / Hk;
    double *out = calloc((size_t)(B * Hq * Lq * dv) + 1, sizeof(double));
    double *s = malloc(sizeof(double) * (size_t)(Lk + 1));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Lq; i++) {
                int64_t hk = h / rep;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Lk; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++)
                        acc += q[((b * Hq + h) * Lq + i) * D + d] * k[((b * Hk + hk) * Lk + j) * D + d];
                    acc *= scale;
                    int64_t c4[4] = {b, h, i, j};
                    if (m.mode == 1 && j > i + Lk - Lq) acc = -DBL_MAX;
                    if (m.mode == 2) acc += m.mask[bidx(m.ms, m.mn, c4)];
                    if (m.mode == 3 && m.mask[bidx(m.ms, m.mn, c4)] == 0) acc = -DBL_MAX;
                    s[j] = acc;
                    if (acc > mx) mx = acc;
                }
                if (m.sinks && m.sinks[h] > mx) mx = m.sinks[h];
                double z = m.sinks ? exp(m.sinks[h] - mx) : 0;
                for (int64_t j = 0; j < Lk; j++) z += (s[j] = exp(s[j] - mx));
                for (int64_t j = 0; j < Lk; j++)
                    for (int64_t d = 0; d < dv; d++)
                        out[((b * Hq + h) * Lq + i) * dv + d] += s[j] / z * v[((b * Hk + hk) * Lk + j) * dv + d];
            }
    free(s);
    return out;
}

/* Runs attention on random q/k/v of the given shapes and dtype and compares with ref_sdpa. */
static void check_sdpa(const char *what, const int64_t *qs, const int64_t *ks, int64_t dv,
                       pn_dtype t, const char *mode, pn_array *mask, ref_mask m, bool transposed_q)
{
    pn_scope_push();
    int64_t vs[4] = {ks[0], ks[1], ks[2], dv};
    pn_array *q;
    if (transposed_q) { /* (B, L, H, D) swapped into (B, H, L, D): a strided view */
        int64_t s2[4] = {qs[0], qs[2], qs[1], qs[3]};
        q = pn_swapaxes(test_random_array(s2, 4, t, -1.5, 1.5), 1, 2);
    } else {
        q = test_random_array(qs, 4, t, -1.5, 1.5);
    }
    pn_array *k = test_random_array(ks, 4, t, -1.5, 1.5);
    pn_array *v = test_random_array(vs, 4, t, -1, 1);
    double scale = 1.0 / sqrt((double)qs[3]);
    pn_array *y = pn_fast_scaled_dot_product_attention(q, k, v, scale, mode, mask);
    CHECK_OK(y);
    double *qd = test_to_f64(q), *kd = test_to_f64(k), *vd = test_to_f64(v);
    if (y && qd && kd && vd) {
        double *ref = ref_sdpa(qd, kd, vd, qs, ks, dv, scale, m);
        int64_t os[4] = {qs[0], qs[1], qs[2], dv};
        double tol = t == PN_FLOAT64 ? 1e-12 : t == PN_FLOAT32 ? 1e-5 : 2e-2;
        CHECK_MSG(test_check_values(what, y, os, 4, t, ref, tol, tol), "%s", what);
        free(ref);
    }
    free(qd), free(kd), free(vd);
    pn_scope_pop();
}

TEST(sdpa_no_mask)
{
    pn_dtype ts[3] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16};
    ref_mask none = {0};
    for (int i = 0; i < 3; i++) {
        check_sdpa("no mask", (int64_t[]){2, 3, 4, 8}, (int64_t[]){2, 3, 5, 8}, 6, ts[i], NULL, NULL, none, false);
        check_sdpa("no mask, strided q", (int64_t[]){2, 3, 4, 8}, (int64_t[]){2, 3, 5, 8}, 8, ts[i], "", NULL, none, true);
        check_sdpa("single key", (int64_t[]){1, 1, 3, 4}, (int64_t[]){1, 1, 1, 4}, 2, ts[i], NULL, NULL, none, false);
    }
}

TEST(sdpa_causal)
{
    ref_mask causal = {1};
    pn_dtype ts[2] = {PN_FLOAT32, PN_FLOAT64};
    for (int i = 0; i < 2; i++) {
        check_sdpa("causal Lq == Lk", (int64_t[]){2, 2, 5, 4}, (int64_t[]){2, 2, 5, 4}, 4, ts[i], "causal", NULL, causal, false);
        check_sdpa("causal Lq < Lk", (int64_t[]){2, 2, 3, 4}, (int64_t[]){2, 2, 7, 4}, 3, ts[i], "causal", NULL, causal, false);
        check_sdpa("causal Lq == 1", (int64_t[]){1, 2, 1, 4}, (int64_t[]){1, 2, 6, 4}, 4, ts[i], "causal", NULL, causal, false);
        /* Lq > Lk: the first rows see no key and average all values (uniform softmax) */
        check_sdpa("causal Lq > Lk", (int64_t[]){1, 2, 5, 4}, (int64_t[]){1, 2, 3, 4}, 4, ts[i], "causal", NULL, causal, false);
    }
}

/* Attention with a random mask of shape ms (additive float or boolean). */
static void check_mask(const char *what, const int64_t *qs, const int64_t *ks, const int64_t *ms,
                       int mn, pn_dtype t, pn_dtype mt, const char *mode)
{
    pn_scope_push();
    pn_array *mask = mt == PN_BOOL ? pn_greater(test_random_array(ms, mn, PN_FLOAT32, 0, 1), pn_weak_float(0.3))
                                   : test_random_array(ms, mn, mt, -2, 2);
    double *md = test_to_f64(mask);
    ref_mask m = {mt == PN_BOOL ? 3 : 2, md, ms, mn};
    if (md) check_sdpa(what, qs, ks, qs[3], t, mode, mask, m, false);
    free(md);
    pn_scope_pop();
}

TEST(sdpa_additive_mask)
{
    int64_t qs[4] = {2, 3, 4, 8}, ks[4] = {2, 3, 6, 8};
    check_mask("additive (Lq,Lk)", qs, ks, (int64_t[]){4, 6}, 2, PN_FLOAT32, PN_FLOAT32, NULL);
    check_mask("additive (B,1,Lq,Lk)", qs, ks, (int64_t[]){2, 1, 4, 6}, 4, PN_FLOAT32, PN_FLOAT32, "array");
    check_mask("additive (1,H,1,Lk)", qs, ks, (int64_t[]){1, 3, 1, 6}, 4, PN_FLOAT64, PN_FLOAT32, "");
    check_mask("additive (Lk)", qs, ks, (int64_t[]){6}, 1, PN_FLOAT64, PN_FLOAT64, NULL);
    check_mask("additive f16", qs, ks, (int64_t[]){4, 6}, 2, PN_FLOAT16, PN_FLOAT16, NULL);
    check_mask("additive int mask promotes", qs, ks, (int64_t[]){4, 6}, 2, PN_FLOAT32, PN_INT8, NULL);
}

TEST(sdpa_bool_mask)
{
    int64_t qs[4] = {2, 3, 4, 8}, ks[4] = {2, 3, 6, 8};
    check_mask("bool (Lq,Lk)", qs, ks, (int64_t[]){4, 6}, 2, PN_FLOAT32, PN_BOOL, NULL);
    check_mask("bool full", qs, ks, (int64_t[]){2, 3, 4, 6}, 4, PN_FLOAT32, PN_BOOL, "array");
    check_mask("bool f64", qs, ks, (int64_t[]){2, 1, 1, 6}, 4, PN_FLOAT64, PN_BOOL, NULL);
    check_mask("bool f16", qs, ks, (int64_t[]){4, 6}, 2, PN_FLOAT16, PN_BOOL, NULL);
    /* an all-false row: MLX fills with the lowest finite value, so the row averages v */
    pn_scope_push();
    bool mb[2 * 3] = {1, 0, 1, 0, 0, 0};
    pn_array *mask = pn_array_from_data(mb, (int64_t[]){2, 3}, 2, PN_BOOL);
    double md[6];
    for (int i = 0; i < 6; i++) md[i] = mb[i];
    ref_mask m = {3, md, (int64_t[]){2, 3}, 2};
    check_sdpa("bool all-false row", (int64_t[]){1, 2, 2, 4}, (int64_t[]){1, 2, 3, 4}, 4, PN_FLOAT32, NULL, mask, m, false);
    pn_scope_pop();
}

TEST(sdpa_gqa)
{
    int64_t qs[4] = {2, 6, 4, 8}, ks[4] = {2, 2, 5, 8};
    ref_mask none = {0}, causal = {1};
    check_sdpa("gqa", qs, ks, 8, PN_FLOAT32, NULL, NULL, none, false);
    check_sdpa("gqa strided", qs, ks, 4, PN_FLOAT64, NULL, NULL, none, true);
    check_sdpa("gqa causal", qs, ks, 8, PN_FLOAT32, "causal", NULL, causal, false);
    check_sdpa("mqa causal", (int64_t[]){1, 4, 5, 4}, (int64_t[]){1, 1, 5, 4}, 4, PN_FLOAT64, "causal", NULL, causal, false);
    check_mask("gqa per-head additive", qs, ks, (int64_t[]){1, 6, 4, 5}, 4, PN_FLOAT32, PN_FLOAT32, NULL);
    check_mask("gqa per-head bool", qs, ks, (int64_t[]){2, 6, 4, 5}, 4, PN_FLOAT64, PN_BOOL, NULL);
    check_mask("gqa (Lq,Lk) mask", qs, ks, (int64_t[]){4, 5}, 2, PN_FLOAT32, PN_FLOAT32, NULL);
}

typedef struct {
    const char *mode;
    pn_array *mask;
} sdpa_ctx;

static pn_array *sdpa_op(void *ctx, pn_array *const *in)
{
    sdpa_ctx *c = ctx;
    return pn_fast_scaled_dot_product_attention(in[0], in[1], in[2], 0.4, c->mode, c->mask);
}

/* Attention sinks (MLX's sinks=): against the float64 reference with the sink column, fused
 * and composite, with GQA, causal and boolean masks; the gradient in q, k, v and the sinks;
 * bad shapes and dtypes. */
static pn_array *sdpa_sinks_op(void *ctx, pn_array *const *in)
{
    return pn_fast_scaled_dot_product_attention_sinks(in[0], in[1], in[2], 0.4, ctx, NULL, in[3]);
}

TEST(sdpa_sinks)
{
    pn_scope_push();
    struct { int64_t qs[4], ks[4], dv; int mode; pn_dtype t; } cases[] = {
        {{2, 4, 5, 8}, {2, 2, 7, 8}, 6, 0, PN_FLOAT32},
        {{1, 4, 6, 8}, {1, 4, 6, 8}, 8, 1, PN_FLOAT64},
        {{2, 6, 3, 4}, {2, 2, 9, 4}, 4, 3, PN_FLOAT32},
        {{1, 2, 4, 16}, {1, 1, 4, 16}, 16, 1, PN_FLOAT16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int fused = 1; fused >= 0; fused--) {
            bool was = pnO_sdpa_set_fused(fused);
            const int64_t *qs = cases[c].qs, *ks = cases[c].ks;
            pn_dtype t = cases[c].t;
            int64_t vs[4] = {ks[0], ks[1], ks[2], cases[c].dv}, os[4] = {qs[0], qs[1], qs[2], cases[c].dv};
            pn_array *q = test_random_array(qs, 4, t, -1.5, 1.5), *k = test_random_array(ks, 4, t, -1.5, 1.5);
            pn_array *v = test_random_array(vs, 4, t, -1, 1);
            pn_array *sk = test_random_array((int64_t[]){qs[1]}, 1, t, -2, 3);
            int64_t ms[2] = {qs[2], ks[2]};
            pn_array *mask = cases[c].mode == 3 ? pn_greater(test_random_array(ms, 2, PN_FLOAT32, 0, 1), pn_weak_float(0.3))
                                                : NULL;
            const char *mode = cases[c].mode == 1 ? "causal" : mask ? "array" : NULL;
            pn_array *y = pn_fast_scaled_dot_product_attention_sinks(q, k, v, 0.3, mode, mask, sk);
            CHECK_OK(y);
            double *qd = test_to_f64(q), *kd = test_to_f64(k), *vd = test_to_f64(v), *sd = test_to_f64(sk);
            double *md = mask ? test_to_f64(mask) : NULL;
            ref_mask m = {cases[c].mode, md, ms, 2, sd};
            double *ref = ref_sdpa(qd, kd, vd, qs, ks, cases[c].dv, 0.3, m);
            double tol = t == PN_FLOAT64 ? 1e-12 : t == PN_FLOAT32 ? 1e-5 : 2e-2;
            CHECK_MSG(test_check_values("sdpa sinks", y, os, 4, t, ref, tol, tol), "case %zu fused %d", c, fused);
            free(ref), free(qd), free(kd), free(vd), free(sd), free(md);
            pnO_sdpa_set_fused(was);
        }
    for (int causal = 0; causal < 2; causal++) {
        pn_array *in[4] = {test_random_array((int64_t[]){1, 4, 3, 4}, 4, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){1, 2, 5, 4}, 4, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){1, 2, 5, 3}, 4, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){4}, 1, PN_FLOAT64, -1, 2)};
        CHECK_MSG(test_gradcheck("sdpa sinks", sdpa_sinks_op, causal ? "causal" : NULL, 4, in, 1e-5),
                  "sinks grad causal %d", causal);
    }
    const pn_error_kind E = PN_ERR_INVALID_ARGUMENT;
    pn_array *q = test_random_array((int64_t[]){1, 4, 3, 4}, 4, PN_BFLOAT16, -1, 1);
    pn_array *k = test_random_array((int64_t[]){1, 2, 5, 4}, 4, PN_BFLOAT16, -1, 1);
    CHECK_ERR(pn_fast_scaled_dot_product_attention_sinks(q, k, k, 1, NULL, NULL, pn_zeros((int64_t[]){2}, 1, PN_BFLOAT16)), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention_sinks(q, k, k, 1, NULL, NULL,
                                                         pn_zeros((int64_t[]){1, 4, 1, 1}, 4, PN_BFLOAT16)), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention_sinks(q, k, k, 1, NULL, NULL, pn_zeros((int64_t[]){4}, 1, PN_FLOAT32)), E);
    CHECK_OK(pn_fast_scaled_dot_product_attention_sinks(q, k, k, 1, NULL, NULL, pn_zeros((int64_t[]){4}, 1, PN_INT8)));
    pn_scope_pop();
}

TEST(sdpa_grad)
{
    pn_scope_push();
    struct { int64_t qs[4], ks[4], dv; const char *mode; int mask; } cases[] = {
        {{1, 2, 3, 4}, {1, 2, 4, 4}, 3, NULL, 0},
        {{2, 2, 4, 3}, {2, 2, 4, 3}, 3, "causal", 0},
        {{1, 4, 3, 4}, {1, 2, 5, 4}, 2, "causal", 0},
        {{1, 4, 3, 4}, {1, 2, 5, 4}, 4, NULL, 1},
        {{1, 2, 3, 4}, {1, 2, 5, 4}, 4, NULL, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t vs[4] = {cases[i].ks[0], cases[i].ks[1], cases[i].ks[2], cases[i].dv};
        pn_array *in[3] = {test_random_array(cases[i].qs, 4, PN_FLOAT64, -1, 1),
                           test_random_array(cases[i].ks, 4, PN_FLOAT64, -1, 1),
                           test_random_array(vs, 4, PN_FLOAT64, -1, 1)};
        sdpa_ctx c = {cases[i].mode, NULL};
        int64_t ms[2] = {cases[i].qs[2], cases[i].ks[2]};
        if (cases[i].mask == 1) c.mask = test_random_array(ms, 2, PN_FLOAT64, -1, 1);
        if (cases[i].mask == 2) c.mask = pn_greater(test_random_array(ms, 2, PN_FLOAT32, 0, 1), pn_weak_float(0.3));
        CHECK_MSG(test_gradcheck("sdpa", sdpa_op, &c, 3, in, 1e-5), "sdpa grad case %zu", i);
    }
    pn_scope_pop();
}

/* ───────────── RoPE ───────────── */

/* The reference in float64: offsets holds one offset (noff 1) or one per batch entry; freqs,
 * when given, replaces base's angles by their reciprocals. */
static double *ref_rope_ex(const double *x, const int64_t *shape, int n, int dims, bool trad, double base,
                           double scale, const int64_t *offsets, int noff, const double *freqs)
{
    int64_t D = shape[n - 1], L = shape[n - 2], rows = 1;
    for (int i = 0; i < n - 1; i++) rows *= shape[i];
    double *y = malloc(sizeof(double) * (size_t)(rows * D + 1));
    memcpy(y, x, sizeof(double) * (size_t)(rows * D));
    int half = dims / 2;
    const int64_t per_batch = shape[0] ? rows / shape[0] : 1;
    for (int64_t r = 0; r < rows; r++) {
        double pos = (double)(offsets[noff > 1 ? r / per_batch : 0] + r % L) * scale;
        for (int i = 0; i < half; i++) {
            double th = pos * (freqs ? 1 / freqs[i] : pow(base, -(double)i / half));
            int64_t a = trad ? 2 * i : i, b = trad ? 2 * i + 1 : i + half;
            double x1 = x[r * D + a], x2 = x[r * D + b];
            y[r * D + a] = x1 * cos(th) - x2 * sin(th);
            y[r * D + b] = x1 * sin(th) + x2 * cos(th);
        }
    }
    return y;
}

static double *ref_rope(const double *x, const int64_t *shape, int n, int dims, bool trad,
                        double base, double scale, int64_t offset)
{
    return ref_rope_ex(x, shape, n, dims, trad, base, scale, &offset, 1, NULL);
}

TEST(rope)
{
    struct { int64_t shape[4]; int n, dims; double base, scale; int64_t offset; } cases[] = {
        {{2, 3, 5, 8}, 4, 8, 10000, 1, 0},
        {{2, 3, 5, 8}, 4, 6, 10000, 1, 7},
        {{2, 5, 10}, 3, 4, 500, 0.5, 3},
        {{1, 2, 4, 6}, 4, 2, 10000, 2, 100},
        {{2, 0, 4}, 3, 4, 10000, 1, 1},
    };
    pn_dtype ts[3] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int trad = 0; trad < 2; trad++)
            for (int ti = 0; ti < 3; ti++) {
                pn_scope_push();
                pn_array *x = test_random_array(cases[c].shape, cases[c].n, ts[ti], -2, 2);
                pn_array *y = pn_nn_rope(x, cases[c].dims, trad, cases[c].base, cases[c].scale, cases[c].offset);
                CHECK_OK(y);
                double *xd = test_to_f64(x);
                if (y && xd) {
                    double *ref = ref_rope(xd, cases[c].shape, cases[c].n, cases[c].dims, trad,
                                           cases[c].base, cases[c].scale, cases[c].offset);
                    double tol = ts[ti] == PN_FLOAT64 ? 1e-12 : ts[ti] == PN_FLOAT32 ? 2e-5 : 1e-2;
                    CHECK_MSG(test_check_values("rope", y, cases[c].shape, cases[c].n, ts[ti], ref, tol, tol),
                              "rope case %zu traditional %d dtype %s", c, trad, pn_dtype_name(ts[ti]));
                    free(ref);
                }
                free(xd);
                pn_scope_pop();
            }
}

static pn_array *rope_op(void *ctx, pn_array *const *in)
{
    return pn_nn_rope(in[0], 4, *(bool *)ctx, 10000, 1, 2);
}

TEST(rope_grad_and_strided)
{
    pn_scope_push();
    for (int trad = 0; trad < 2; trad++) {
        bool t = trad;
        pn_array *x = test_random_array((int64_t[]){1, 2, 3, 6}, 4, PN_FLOAT64, -1, 1);
        CHECK(test_gradcheck("rope", rope_op, &t, 1, &x, 1e-6));
        /* a strided input: (B, L, H, D) swapped to (B, H, L, D) */
        pn_array *xs = pn_swapaxes(test_random_array((int64_t[]){2, 5, 3, 8}, 4, PN_FLOAT32, -1, 1), 1, 2);
        pn_array *y = pn_nn_rope(xs, 8, t, 10000, 1, 4);
        double *xd = test_to_f64(xs);
        if (y && xd) {
            double *ref = ref_rope(xd, (int64_t[]){2, 3, 5, 8}, 4, 8, t, 10000, 1, 4);
            CHECK(test_check_values("rope strided", y, (int64_t[]){2, 3, 5, 8}, 4, PN_FLOAT32, ref, 2e-5, 2e-5));
            free(ref);
        }
        free(xd);
    }
    pn_scope_pop();
}

/* mx.fast.rope's other choices: frequencies given as an array (mlx-lm's scaled RoPEs), one
 * offset per batch entry (batched caches), an offset array of one element; float32 and float64,
 * both layouts; the gradient through freqs-given rope; and each bad argument. */
static pn_array *rope_freqs_op(void *ctx, pn_array *const *in)
{
    return pn_fast_rope(in[0], 6, *(bool *)ctx, 0, 0.5, in[2], in[1]);
}

TEST(rope_freqs_and_offsets)
{
    pn_scope_push();
    const int64_t shape[4] = {3, 2, 5, 8}, offs[3] = {4, 0, 11};
    pn_dtype ts[2] = {PN_FLOAT32, PN_FLOAT64};
    for (int ti = 0; ti < 2; ti++)
        for (int trad = 0; trad < 2; trad++)
            for (int mode = 0; mode < 3; mode++) { /* base + vector offset, freqs + scalar, freqs + vector */
                pn_array *x = test_random_array(shape, 4, ts[ti], -2, 2);
                pn_array *fr = mode ? test_random_array((int64_t[]){3}, 1, ts[ti], 0.5, 40) : NULL;
                pn_array *off = mode == 1 ? pn_array_from_data((int32_t[]){7}, (int64_t[]){1}, 1, PN_INT32)
                                          : pn_array_from_data(offs, (int64_t[]){3}, 1, PN_INT64);
                pn_array *y = pn_fast_rope(x, 6, trad, mode ? 0 : 500, 0.75, off, fr);
                CHECK_OK(y);
                double *xd = test_to_f64(x), *fd = fr ? test_to_f64(fr) : NULL;
                int64_t seven = 7;
                double *ref = ref_rope_ex(xd, shape, 4, 6, trad, 500, 0.75, mode == 1 ? &seven : offs,
                                          mode == 1 ? 1 : 3, fd);
                double tol = ts[ti] == PN_FLOAT64 ? 1e-12 : 3e-5;
                CHECK_MSG(test_check_values("rope freqs/offsets", y, shape, 4, ts[ti], ref, tol, tol),
                          "mode %d traditional %d %s", mode, trad, pn_dtype_name(ts[ti]));
                free(ref), free(xd), free(fd);
            }
    for (int trad = 0; trad < 2; trad++) {
        bool t = trad;
        pn_array *in[3] = {test_random_array((int64_t[]){2, 1, 3, 6}, 4, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){3}, 1, PN_FLOAT64, 0.5, 4),
                           pn_array_from_data((int32_t[]){2, 9}, (int64_t[]){2}, 1, PN_INT32)};
        CHECK(test_gradcheck("rope freqs", rope_freqs_op, &t, 3, in, 1e-6));
    }
    const pn_error_kind E = PN_ERR_INVALID_ARGUMENT;
    pn_array *x = test_random_array(shape, 4, PN_FLOAT32, -1, 1);
    pn_array *fr3 = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, 1, 2);
    CHECK_ERR(pn_fast_rope(x, 6, false, 10000, 1, NULL, fr3), E);                     /* base and freqs */
    CHECK_ERR(pn_fast_rope(x, 8, false, 0, 1, NULL, fr3), E);                         /* freqs not dims/2 */
    CHECK_ERR(pn_fast_rope(x, 6, false, 0, 1, NULL, pn_astype(fr3, PN_INT32)), E);    /* integer freqs */
    CHECK_ERR(pn_fast_rope(x, 6, false, 0, 1, NULL, NULL), E);                        /* neither */
    CHECK_ERR(pn_fast_rope(x, 6, false, 10000, 1, pn_scalar(1.5, PN_FLOAT32), NULL), E); /* float offset */
    CHECK_ERR(pn_fast_rope(x, 6, false, 10000, 1, pn_zeros((int64_t[]){2}, 1, PN_INT32), NULL), E); /* 2 != B */
    CHECK_ERR(pn_fast_rope(x, 6, false, 10000, 1, pn_zeros((int64_t[]){3, 1}, 2, PN_INT32), NULL), E);
    pn_scope_pop();
}

/* ───────────── sinusoidal ───────────── */

TEST(sinusoidal)
{
    struct { int64_t shape[2]; int n; pn_dtype t; int dims; double lo, hi, scale; bool cf, ft; pn_dtype out; } cases[] = {
        {{3, 4}, 2, PN_FLOAT32, 16, 1e-4, 1, 0, false, false, PN_FLOAT32},
        {{5}, 1, PN_FLOAT64, 8, 1e-3, 2, 1, true, false, PN_FLOAT64},
        {{0}, 0, PN_FLOAT32, 6, 1e-4, 1, 0.5, false, true, PN_FLOAT32},
        {{7}, 1, PN_INT32, 9, 1e-2, 1, 0, true, true, PN_FLOAT32},
        {{2, 3}, 2, PN_FLOAT16, 4, 1e-4, 1, 3, false, false, PN_FLOAT32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pn_scope_push();
        pn_array *p = test_random_array(cases[c].shape, cases[c].n, cases[c].t, 0, 50);
        int dims = cases[c].dims, half = dims / 2;
        pn_array *y = pn_nn_sinusoidal_positional_encoding(p, dims, cases[c].lo, cases[c].hi, cases[c].scale,
                                                           cases[c].cf, cases[c].ft);
        CHECK_OK(y);
        double *pd = test_to_f64(p);
        if (y && pd) {
            int64_t np = 1;
            for (int i = 0; i < cases[c].n; i++) np *= cases[c].shape[i];
            double *ref = malloc(sizeof(double) * (size_t)(np * 2 * half));
            double scale = cases[c].scale ? cases[c].scale : sqrt(2.0 / dims);
            for (int64_t e = 0; e < np; e++)
                for (int i = 0; i < half; i++) {
                    double f = 1 - (double)i / (half - 1);
                    double sig = exp(f * (log(cases[c].hi) - log(cases[c].lo)) + log(cases[c].lo));
                    if (cases[c].ft) sig *= 2 * M_PI;
                    double a = pd[e] * sig;
                    ref[e * 2 * half + i] = scale * (cases[c].cf ? cos(a) : sin(a));
                    ref[e * 2 * half + half + i] = scale * (cases[c].cf ? sin(a) : cos(a));
                }
            int64_t os[3] = {cases[c].shape[0], cases[c].shape[1], 2 * half};
            os[cases[c].n] = 2 * half;
            double tol = cases[c].out == PN_FLOAT64 ? 1e-12 : 5e-5;
            CHECK_MSG(test_check_values("sinusoidal", y, os, cases[c].n + 1, cases[c].out, ref, tol, tol),
                      "sinusoidal case %zu", c);
            free(ref);
        }
        free(pd);
        pn_scope_pop();
    }
}

/* ───────────── ALiBi ───────────── */

/* The slopes as the ALiBi paper's code builds them (recursively for non-powers of two). */
static int ref_slopes(int n, double *out)
{
    double l2 = log2((double)n);
    if (l2 == floor(l2)) {
        double start = pow(2, -pow(2, -(l2 - 3)));
        for (int i = 0; i < n; i++) out[i] = start * pow(start, i);
        return n;
    }
    int p = 1 << (int)floor(l2);
    ref_slopes(p, out);
    double *tmp = malloc(sizeof(double) * 2 * p);
    ref_slopes(2 * p, tmp);
    for (int j = 0; j < n - p; j++) out[p + j] = tmp[2 * j];
    free(tmp);
    return n;
}

TEST(alibi)
{
    struct { int64_t q, k; int h; int64_t off; pn_dtype t; } cases[] = {
        {4, 4, 8, 0, PN_FLOAT32}, {3, 7, 6, 4, PN_FLOAT32}, {1, 5, 1, 4, PN_FLOAT64},
        {5, 5, 12, 0, PN_FLOAT16}, {0, 3, 3, 0, PN_FLOAT32}, {2, 6, 5, 2, PN_BFLOAT16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pn_scope_push();
        pn_array *y = pn_nn_alibi_bias(cases[c].q, cases[c].k, cases[c].h, cases[c].off, cases[c].t);
        CHECK_OK(y);
        int H = cases[c].h;
        double *sl = malloc(sizeof(double) * H);
        ref_slopes(H, sl);
        double *ref = malloc(sizeof(double) * (size_t)(H * cases[c].q * cases[c].k + 1));
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < cases[c].q; i++)
                for (int64_t j = 0; j < cases[c].k; j++)
                    ref[(h * cases[c].q + i) * cases[c].k + j] = -fabs((double)(i + cases[c].off - j)) * sl[h];
        int64_t os[4] = {1, H, cases[c].q, cases[c].k};
        if (y) CHECK_MSG(test_check_values("alibi", y, os, 4, cases[c].t, ref, 2 * test_tol(cases[c].t), 1e-12),
                         "alibi case %zu", c);
        free(sl), free(ref);
        pn_scope_pop();
    }
    /* slopes of 8 heads: 1/2, 1/4, ..., 1/256 (the paper's values), seen at distance 1 */
    pn_scope_push();
    pn_array *y = pn_nn_alibi_bias(1, 2, 8, 0, PN_FLOAT64);
    double *yd = test_to_f64(y);
    if (yd)
        for (int h = 0; h < 8; h++) CHECK(fabs(yd[h * 2 + 1] + pow(2, -(h + 1))) < 1e-15 && yd[h * 2] == 0);
    free(yd);
    pn_scope_pop();
}

/* ───────────── errors ───────────── */

TEST(errors)
{
    pn_scope_push();
    pn_array *q = pn_zeros((int64_t[]){2, 4, 3, 8}, 4, PN_FLOAT32);
    pn_array *k = pn_zeros((int64_t[]){2, 2, 5, 8}, 4, PN_FLOAT32);
    pn_array *v = pn_zeros((int64_t[]){2, 2, 5, 6}, 4, PN_FLOAT32);
    pn_array *m = pn_zeros((int64_t[]){3, 5}, 2, PN_FLOAT32);
    CHECK_OK(pn_fast_scaled_dot_product_attention(q, k, v, 1, NULL, m));
    const int E = PN_ERR_INVALID_ARGUMENT;
    CHECK_ERR(pn_fast_scaled_dot_product_attention(NULL, k, v, 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(pn_zeros((int64_t[]){4, 3, 8}, 3, PN_FLOAT32), k, v, 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, "upper", NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, "array", NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, "causal", m), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, NULL, pn_zeros((int64_t[]){1, 1, 1, 3, 5}, 5, PN_FLOAT32)), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, NULL, pn_zeros((int64_t[]){3, 4}, 2, PN_FLOAT32)), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, v, 1, NULL, pn_zeros((int64_t[]){3, 3, 5}, 3, PN_FLOAT32)), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, pn_zeros((int64_t[]){1, 2, 5, 8}, 4, PN_FLOAT32), v, 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, pn_zeros((int64_t[]){2, 2, 5, 7}, 4, PN_FLOAT32), v, 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, pn_zeros((int64_t[]){2, 1, 5, 6}, 4, PN_FLOAT32), 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k, pn_zeros((int64_t[]){2, 2, 4, 6}, 4, PN_FLOAT32), 1, NULL, NULL), E);
    pn_array *k3 = pn_zeros((int64_t[]){2, 3, 5, 8}, 4, PN_FLOAT32);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(q, k3, pn_zeros((int64_t[]){2, 3, 5, 6}, 4, PN_FLOAT32), 1, NULL, NULL), E);
    CHECK_ERR(pn_fast_scaled_dot_product_attention(pn_astype(q, PN_INT32), pn_astype(k, PN_INT32), pn_astype(v, PN_INT32),
                                                   1, NULL, NULL), E);
    pn_array *qh = pn_astype(q, PN_FLOAT16), *kh = pn_astype(k, PN_FLOAT16), *vh = pn_astype(v, PN_FLOAT16);
    CHECK_OK(pn_fast_scaled_dot_product_attention(qh, kh, vh, 1, NULL, pn_astype(m, PN_FLOAT16)));
    CHECK_ERR(pn_fast_scaled_dot_product_attention(qh, kh, vh, 1, NULL, m), E); /* f32 mask, f16 out */

    pn_array *x = pn_zeros((int64_t[]){2, 5, 8}, 3, PN_FLOAT32);
    CHECK_OK(pn_nn_rope(x, 8, false, 10000, 1, 0));
    CHECK_ERR(pn_nn_rope(NULL, 8, false, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(pn_zeros((int64_t[]){5, 8}, 2, PN_FLOAT32), 8, false, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(pn_astype(x, PN_INT32), 8, false, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(x, 0, false, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(x, 5, true, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(x, 10, false, 10000, 1, 0), E);
    CHECK_ERR(pn_nn_rope(x, 8, false, 0, 1, 0), E);

    pn_array *p = pn_arange(0, 4, 1, PN_INT32);
    CHECK_ERR(pn_nn_sinusoidal_positional_encoding(NULL, 8, 1e-4, 1, 0, false, false), E);
    CHECK_ERR(pn_nn_sinusoidal_positional_encoding(p, 3, 1e-4, 1, 0, false, false), E);
    CHECK_ERR(pn_nn_sinusoidal_positional_encoding(p, 8, 0, 1, 0, false, false), E);
    CHECK_ERR(pn_nn_sinusoidal_positional_encoding(p, 8, 1e-4, -1, 0, false, false), E);
    CHECK_ERR(pn_nn_sinusoidal_positional_encoding(pn_astype(p, PN_COMPLEX64), 8, 1e-4, 1, 0, false, false), E);

    CHECK_ERR(pn_nn_alibi_bias(4, 4, 0, 0, PN_FLOAT32), E);
    CHECK_ERR(pn_nn_alibi_bias(-1, 4, 2, 0, PN_FLOAT32), E);
    CHECK_ERR(pn_nn_alibi_bias(4, 4, 2, 0, PN_INT32), E);
    pn_scope_pop();
}
