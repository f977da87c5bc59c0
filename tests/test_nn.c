/* test_nn.c — layers as functions: every activation and loss against its formula computed
 * here in float64, linear/embedding/normalization against loops, initializer statistics,
 * dropout, gradients by finite differences, and argument errors. */
#include "harness.h"

#include <string.h>

#include "core/core.h"

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigm(double x) { return 1 / (1 + exp(-x)); }

typedef struct {
    const char *name;
    pn_array *(*fn)(pn_array *);
    double (*ref)(double);
} activation;

static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_relu6(double x) { return fmin(fmax(x, 0), 6); }
static double r_selu(double x) { return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * expm1(x)); }
static double r_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2))); }
static double r_gelu_approx(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double r_gelu_fast(double x) { return x * sigm(1.702 * x); }
static double r_silu(double x) { return x * sigm(x); }
static double r_log_sigmoid(double x) { return -softplus(-x); }
static double r_softsign(double x) { return x / (1 + fabs(x)); }
static double r_mish(double x) { return x * tanh(softplus(x)); }
static double r_hardswish(double x) { return x * fmin(fmax(x + 3, 0), 6) / 6; }
static pn_array *leaky(pn_array *x) { return pn_nn_leaky_relu(x, 0.01); }
static double r_leaky(double x) { return x > 0 ? x : 0.01 * x; }
static pn_array *elu(pn_array *x) { return pn_nn_elu(x, 1.0); }
static double r_elu(double x) { return x > 0 ? x : expm1(x); }
static pn_array *celu(pn_array *x) { return pn_nn_celu(x, 1.5); }
static double r_celu(double x) { return fmax(x, 0) + 1.5 * expm1(fmin(x, 0) / 1.5); }
static pn_array *hard_tanh(pn_array *x) { return pn_nn_hard_tanh(x, -1, 1); }
static double r_hard_tanh(double x) { return fmin(fmax(x, -1), 1); }

static const activation ACTS[] = {
    {"relu", pn_nn_relu, r_relu},           {"relu6", pn_nn_relu6, r_relu6},
    {"leaky_relu", leaky, r_leaky},         {"elu", elu, r_elu},
    {"selu", pn_nn_selu, r_selu},           {"celu", celu, r_celu},
    {"gelu", pn_nn_gelu, r_gelu},           {"gelu_approx", pn_nn_gelu_approx, r_gelu_approx},
    {"gelu_fast", pn_nn_gelu_fast_approx, r_gelu_fast},
    {"silu", pn_nn_silu, r_silu},           {"sigmoid", pn_nn_sigmoid, sigm},
    {"log_sigmoid", pn_nn_log_sigmoid, r_log_sigmoid},
    {"softplus", pn_nn_softplus, softplus}, {"softsign", pn_nn_softsign, r_softsign},
    {"mish", pn_nn_mish, r_mish},           {"hardswish", pn_nn_hardswish, r_hardswish},
    {"hard_tanh", hard_tanh, r_hard_tanh},  {"tanh", pn_nn_tanh, tanh},
};

static pn_array *act_op(void *ctx, pn_array *const *in) { return ((const activation *)ctx)->fn(in[0]); }

TEST(activations_match_formulas)
{
    int64_t shape[2] = {7, 9};
    for (size_t k = 0; k < sizeof ACTS / sizeof ACTS[0]; k++) {
        const activation *a = &ACTS[k];
        pn_dtype types[2] = {PN_FLOAT32, PN_FLOAT64};
        for (int t = 0; t < 2; t++) {
            pn_scope_push();
            pn_array *x = test_random_array(shape, 2, types[t], -6, 6);
            double *xv = test_to_f64(x), ref[63];
            for (int i = 0; xv && i < 63; i++) ref[i] = a->ref(xv[i]);
            char what[64];
            snprintf(what, sizeof what, "%s %s", a->name, pn_dtype_name(types[t]));
            test_check_values(what, a->fn(x), shape, 2, types[t], ref, types[t] == PN_FLOAT64 ? 1e-12 : 2e-5,
                              types[t] == PN_FLOAT64 ? 1e-14 : 1e-6);
            free(xv);
            pn_scope_pop();
        }
        /* gradients away from the kinks */
        pn_scope_push();
        double v[6] = {-2.3, -0.7, 0.4, 1.1, 2.5, 4.2};
        pn_array *x = pn_array_from_data(v, (int64_t[]){6}, 1, PN_FLOAT64);
        test_gradcheck(a->name, act_op, (void *)a, 1, &x, 1e-6);
        pn_scope_pop();
    }
}

TEST(glu_and_prelu)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -3, 3);
    double *xv = test_to_f64(x), ref[6];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) ref[i * 2 + j] = xv[i * 4 + j] * sigm(xv[i * 4 + j + 2]);
    test_check_values("glu", pn_nn_glu(x, -1), (int64_t[]){3, 2}, 2, PN_FLOAT64, ref, 1e-12, 1e-14);
    CHECK_ERR(pn_nn_glu(test_random_array((int64_t[]){3}, 1, PN_FLOAT32, 0, 1), 0), PN_ERR_INVALID_ARGUMENT);
    double r2[12];
    for (int i = 0; i < 12; i++) r2[i] = xv[i] > 0 ? xv[i] : 0.25 * xv[i];
    test_check_values("prelu", pn_nn_prelu(x, pn_scalar(0.25, PN_FLOAT64)), (int64_t[]){3, 4}, 2, PN_FLOAT64, r2, 1e-12, 1e-14);
    free(xv);
    pn_scope_pop();
}

TEST(linear_and_embedding)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){2, 3, 5}, 3, PN_FLOAT64, -1, 1);
    pn_array *w = test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT64, -1, 1);
    pn_array *b = test_random_array((int64_t[]){4}, 1, PN_FLOAT64, -1, 1);
    double *xv = test_to_f64(x), *wv = test_to_f64(w), *bv = test_to_f64(b), ref[24];
    for (int r = 0; r < 6; r++)
        for (int o = 0; o < 4; o++) {
            double s = bv[o];
            for (int i = 0; i < 5; i++) s += xv[r * 5 + i] * wv[o * 5 + i];
            ref[r * 4 + o] = s;
        }
    test_check_values("linear", pn_nn_linear(x, w, b), (int64_t[]){2, 3, 4}, 3, PN_FLOAT64, ref, 1e-12, 1e-12);
    for (int r = 0; r < 24; r++) ref[r] -= bv[r % 4];
    test_check_values("linear no bias", pn_nn_linear(x, w, NULL), (int64_t[]){2, 3, 4}, 3, PN_FLOAT64, ref, 1e-12, 1e-12);
    CHECK_ERR(pn_nn_linear(x, pn_transpose(w, NULL, 0), b), PN_ERR_INVALID_ARGUMENT);
    int32_t idx[3] = {3, 0, 3};
    pn_array *e = pn_nn_embedding(pn_array_from_data(idx, (int64_t[]){3}, 1, PN_INT32), w);
    double eref[15];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) eref[i * 5 + j] = wv[idx[i] * 5 + j];
    test_check_values("embedding", e, (int64_t[]){3, 5}, 2, PN_FLOAT64, eref, 0, 0);
    free(xv); free(wv); free(bv);
    pn_scope_pop();
}

static pn_array *ln_op(void *ctx, pn_array *const *in) { return pn_nn_layer_norm(in[0], in[1], in[2], 1e-5); }
static pn_array *rms_op(void *ctx, pn_array *const *in) { return pn_nn_rms_norm(in[0], in[1], 1e-5); }

TEST(normalization)
{
    pn_scope_push();
    int R = 4, C = 6;
    pn_array *x = test_random_array((int64_t[]){R, C}, 2, PN_FLOAT64, -2, 3);
    pn_array *w = test_random_array((int64_t[]){C}, 1, PN_FLOAT64, 0.5, 1.5);
    pn_array *b = test_random_array((int64_t[]){C}, 1, PN_FLOAT64, -1, 1);
    double *xv = test_to_f64(x), *wv = test_to_f64(w), *bv = test_to_f64(b), ln[24], rms[24];
    for (int r = 0; r < R; r++) {
        double m = 0, v = 0, q = 0;
        for (int c = 0; c < C; c++) m += xv[r * C + c] / C;
        for (int c = 0; c < C; c++) v += pow(xv[r * C + c] - m, 2) / C, q += pow(xv[r * C + c], 2) / C;
        for (int c = 0; c < C; c++) {
            ln[r * C + c] = (xv[r * C + c] - m) / sqrt(v + 1e-5) * wv[c] + bv[c];
            rms[r * C + c] = xv[r * C + c] / sqrt(q + 1e-5) * wv[c];
        }
    }
    test_check_values("layer_norm", pn_nn_layer_norm(x, w, b, 1e-5), (int64_t[]){R, C}, 2, PN_FLOAT64, ln, 1e-10, 1e-12);
    test_check_values("rms_norm", pn_nn_rms_norm(x, w, 1e-5), (int64_t[]){R, C}, 2, PN_FLOAT64, rms, 1e-10, 1e-12);
    pn_array *in[3] = {x, w, b};
    test_gradcheck("layer_norm", ln_op, NULL, 3, in, 1e-5);
    test_gradcheck("rms_norm", rms_op, NULL, 2, in, 1e-5);
    /* half inputs are normalized in float32 and keep their dtype */
    pn_array *h = pn_nn_layer_norm(pn_astype(x, PN_BFLOAT16), NULL, NULL, 1e-5);
    CHECK(pn_array_dtype(h) == PN_BFLOAT16);
    free(xv); free(wv); free(bv);
    pn_scope_pop();
}

typedef struct {
    pn_loss_reduction red;
} loss_ctx;

TEST(losses_match_formulas)
{
    pn_scope_push();
    int B = 5, K = 4;
    pn_array *logits = test_random_array((int64_t[]){B, K}, 2, PN_FLOAT64, -3, 3);
    int32_t cls[5] = {0, 3, 1, 1, 2};
    pn_array *y = pn_array_from_data(cls, (int64_t[]){B}, 1, PN_INT32);
    double *lv = test_to_f64(logits), ce[5], ces[5], mean_ce = 0;
    for (int b = 0; b < B; b++) {
        double mx = -1e300, s = 0, mean = 0;
        for (int k = 0; k < K; k++) mx = fmax(mx, lv[b * K + k]);
        for (int k = 0; k < K; k++) s += exp(lv[b * K + k] - mx), mean += lv[b * K + k] / K;
        double lse = mx + log(s);
        ce[b] = lse - lv[b * K + cls[b]];
        ces[b] = lse - 0.9 * lv[b * K + cls[b]] - 0.1 * mean;
        mean_ce += ce[b] / B;
    }
    test_check_values("cross_entropy", pn_nn_cross_entropy(logits, y, -1, 0, PN_REDUCTION_NONE), (int64_t[]){B}, 1, PN_FLOAT64, ce, 1e-12, 1e-12);
    test_check_values("cross_entropy smoothed", pn_nn_cross_entropy(logits, y, -1, 0.1, PN_REDUCTION_NONE), (int64_t[]){B}, 1, PN_FLOAT64, ces, 1e-12, 1e-12);
    test_check_values("cross_entropy mean", pn_nn_cross_entropy(logits, y, -1, 0, PN_REDUCTION_MEAN), NULL, 0, PN_FLOAT64, &mean_ce, 1e-12, 1e-12);
    /* probabilities as targets: one-hot gives the same as class indices */
    double onehot[20] = {0};
    for (int b = 0; b < B; b++) onehot[b * K + cls[b]] = 1;
    test_check_values("cross_entropy probs", pn_nn_cross_entropy(logits, pn_array_from_data(onehot, (int64_t[]){B, K}, 2, PN_FLOAT64), -1, 0, PN_REDUCTION_NONE),
                      (int64_t[]){B}, 1, PN_FLOAT64, ce, 1e-12, 1e-12);
    CHECK_ERR(pn_nn_cross_entropy(logits, pn_array_from_data(cls, (int64_t[]){4}, 1, PN_INT32), -1, 0, PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_cross_entropy(logits, y, -1, 1.5, PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);

    pn_array *p = test_random_array((int64_t[]){B, K}, 2, PN_FLOAT64, -2, 2);
    pn_array *t = test_random_array((int64_t[]){B, K}, 2, PN_FLOAT64, -2, 2);
    pn_array *pr = test_random_array((int64_t[]){B, K}, 2, PN_FLOAT64, 0.05, 0.95);
    pn_array *tb = test_random_array((int64_t[]){B, K}, 2, PN_FLOAT64, 0, 1);
    double *pv = test_to_f64(p), *tv = test_to_f64(t), *prv = test_to_f64(pr), *tbv = test_to_f64(tb);
    double mse = 0, l1 = 0, sl1 = 0, hub[20], bce[20], bcel[20];
    for (int i = 0; i < B * K; i++) {
        double d = pv[i] - tv[i], ad = fabs(d);
        mse += d * d / (B * K);
        l1 += ad / (B * K);
        sl1 += (ad < 1.0 ? 0.5 * d * d : ad - 0.5) / (B * K);
        double q = fmin(ad, 1.5);
        hub[i] = 0.5 * q * q + 1.5 * (ad - q);
        bce[i] = -(tbv[i] * log(prv[i]) + (1 - tbv[i]) * log(1 - prv[i]));
        bcel[i] = softplus(pv[i]) - pv[i] * tbv[i];
    }
    test_check_values("mse", pn_nn_mse_loss(p, t, PN_REDUCTION_MEAN), NULL, 0, PN_FLOAT64, &mse, 1e-12, 1e-14);
    test_check_values("l1", pn_nn_l1_loss(p, t, PN_REDUCTION_MEAN), NULL, 0, PN_FLOAT64, &l1, 1e-12, 1e-14);
    test_check_values("smooth_l1", pn_nn_smooth_l1_loss(p, t, 1.0, PN_REDUCTION_MEAN), NULL, 0, PN_FLOAT64, &sl1, 1e-12, 1e-14);
    test_check_values("huber", pn_nn_huber_loss(p, t, 1.5, PN_REDUCTION_NONE), (int64_t[]){B, K}, 2, PN_FLOAT64, hub, 1e-12, 1e-14);
    test_check_values("bce", pn_nn_binary_cross_entropy(pr, tb, false, PN_REDUCTION_NONE), (int64_t[]){B, K}, 2, PN_FLOAT64, bce, 1e-12, 1e-14);
    test_check_values("bce logits", pn_nn_binary_cross_entropy(p, tb, true, PN_REDUCTION_NONE), (int64_t[]){B, K}, 2, PN_FLOAT64, bcel, 1e-12, 1e-14);
    CHECK_ERR(pn_nn_mse_loss(p, pn_transpose(t, NULL, 0), PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_mse_loss(p, t, (pn_loss_reduction)7), PN_ERR_INVALID_ARGUMENT);
    double nll[5], kl[5] = {0};
    for (int b = 0; b < B; b++) {
        nll[b] = -pv[b * K + cls[b]];
        for (int k = 0; k < K; k++) kl[b] += exp(tv[b * K + k]) * (tv[b * K + k] - pv[b * K + k]);
    }
    test_check_values("nll", pn_nn_nll_loss(p, y, -1, PN_REDUCTION_NONE), (int64_t[]){B}, 1, PN_FLOAT64, nll, 1e-12, 1e-14);
    test_check_values("kl_div", pn_nn_kl_div_loss(p, t, -1, PN_REDUCTION_NONE), (int64_t[]){B}, 1, PN_FLOAT64, kl, 1e-12, 1e-14);
    free(lv); free(pv); free(tv); free(prv); free(tbv);
    pn_scope_pop();
}

static pn_array *ce_op(void *ctx, pn_array *const *in)
{
    return pn_nn_cross_entropy(in[0], (pn_array *)ctx, -1, 0.1, PN_REDUCTION_MEAN);
}

TEST(loss_gradients)
{
    pn_scope_push();
    pn_array *logits = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT64, -2, 2);
    int32_t cls[3] = {4, 0, 2};
    pn_array *y = pn_array_from_data(cls, (int64_t[]){3}, 1, PN_INT32);
    test_gradcheck("cross_entropy", ce_op, y, 1, &logits, 1e-6);
    pn_scope_pop();
}

TEST(initializers_and_dropout)
{
    pn_scope_push();
    int64_t shape[2] = {256, 128};
    pn_array *g = pn_nn_init_glorot_uniform(shape, 2, PN_FLOAT32, 1.0, pn_random_key(1));
    double *v = test_to_f64(g), lim = sqrt(6.0 / (256 + 128)), m = 0, s = 0;
    int n = 256 * 128;
    for (int i = 0; v && i < n; i++) {
        CHECK(fabs(v[i]) <= lim + 1e-7);
        m += v[i] / n;
        s += v[i] * v[i] / n;
    }
    CHECK(fabs(m) < 0.01 * lim);
    CHECK(fabs(s - lim * lim / 3) < 0.05 * lim * lim / 3);
    free(v);
    pn_array *h = pn_nn_init_he_normal(shape, 2, PN_FLOAT32, false, 1.0, pn_random_key(2));
    v = test_to_f64(h);
    s = 0;
    for (int i = 0; v && i < n; i++) s += v[i] * v[i] / n;
    CHECK(fabs(s - 1.0 / 128) < 0.05 / 128);
    free(v);
    CHECK_ERR(pn_nn_init_glorot_uniform(shape, 1, PN_FLOAT32, 1.0, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_array *x = pn_ones(shape, 2, PN_FLOAT32);
    pn_array *d = pn_nn_dropout(x, 0.25, pn_random_key(3));
    v = test_to_f64(d);
    int zeros = 0;
    for (int i = 0; v && i < n; i++) {
        CHECK(v[i] == 0 || fabs(v[i] - 1 / 0.75) < 1e-6);
        zeros += v[i] == 0;
    }
    CHECK(fabs(zeros / (double)n - 0.25) < 0.02);
    free(v);
    CHECK_ERR(pn_nn_dropout(x, 1.0, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
