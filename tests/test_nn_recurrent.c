/* test_nn_recurrent.c — RNN, GRU, LSTM (src/nn/recurrent.c) and Bilinear (src/nn/bilinear.c)
 * against float64 loops over time written here: batched and unbatched inputs, with and without
 * biases and initial states, a custom nonlinearity, float32, gradients (vjp/jvp vs finite
 * differences) and argument errors; the Split primitive the layers take sequences apart with
 * (its vjp and jvp against finite differences). */
#include "harness.h"

#include "core/core.h" /* the Split node behind pn_split */

#include <string.h>

enum { K_RNN, K_GRU, K_LSTM };
static const int GATES[] = {1, 3, 4};

/* The float64 reference of one layer over x (B, L, D) with weights wx (G*H, D), wh (G*H, H),
 * bias (G*H) / bhn (H) or NULL, initial states h0, c0 (B*H) or NULL, the Elman nonlinearity
 * relu instead of tanh when relu. Writes hs and (LSTM) cs, each (B, L, H). */
static void ref_layer(int kind, const double *x, int64_t B, int64_t L, int64_t D, int64_t H, const double *wx,
                      const double *wh, const double *bias, const double *bhn, const double *h0, const double *c0,
                      bool relu, double *hs, double *cs)
{
    int64_t G = GATES[kind] * H;
    double *h = calloc((size_t)H, sizeof *h), *c = calloc((size_t)H, sizeof *c);
    double *xp = malloc(sizeof(double) * (size_t)G), *hp = malloc(sizeof(double) * (size_t)G);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < H; j++) h[j] = h0 ? h0[b * H + j] : 0, c[j] = c0 ? c0[b * H + j] : 0;
        for (int64_t t = 0; t < L; t++) {
            const double *xt = x + (b * L + t) * D;
            for (int64_t g = 0; g < G; g++) {
                xp[g] = bias ? bias[g] : 0;
                for (int64_t d = 0; d < D; d++) xp[g] += xt[d] * wx[g * D + d];
                hp[g] = 0;
                for (int64_t k = 0; k < H; k++) hp[g] += h[k] * wh[g * H + k];
            }
            double *ho = hs + (b * L + t) * H, *co = cs ? cs + (b * L + t) * H : NULL;
            for (int64_t j = 0; j < H; j++) {
                if (kind == K_RNN) {
                    double v = xp[j] + hp[j];
                    ho[j] = relu ? (v > 0 ? v : 0) : tanh(v);
                } else if (kind == K_GRU) {
                    double r = 1 / (1 + exp(-(xp[j] + hp[j]))), z = 1 / (1 + exp(-(xp[H + j] + hp[H + j])));
                    double n = tanh(xp[2 * H + j] + r * (hp[2 * H + j] + (bhn ? bhn[j] : 0)));
                    ho[j] = (1 - z) * n + z * h[j];
                } else {
                    double i = 1 / (1 + exp(-(xp[j] + hp[j]))), f = 1 / (1 + exp(-(xp[H + j] + hp[H + j])));
                    double g = tanh(xp[2 * H + j] + hp[2 * H + j]), o = 1 / (1 + exp(-(xp[3 * H + j] + hp[3 * H + j])));
                    c[j] = f * c[j] + i * g;
                    ho[j] = o * tanh(c[j]);
                    if (co) co[j] = c[j];
                }
            }
            memcpy(h, ho, sizeof(double) * (size_t)H);
        }
    }
    free(h), free(c), free(xp), free(hp);
}

static int relu_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_nn_relu(in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* A bad nonlinearity: sums its input (wrong shape). */
static int sum_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(in[0], NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* Runs kind on the given arrays (the LSTM's cells into *cells when non-NULL). */
static pn_array *run_layer(int kind, pn_array *x, pn_array *wx, pn_array *wh, pn_array *bias, pn_array *bhn,
                           pn_array *h0, pn_array *c0, pn_closure *act, pn_array **cells)
{
    switch (kind) {
    case K_RNN: return pn_nn_rnn(x, wx, wh, bias, h0, act);
    case K_GRU: return pn_nn_gru(x, wx, wh, bias, bhn, h0);
    default: return pn_nn_lstm(x, wx, wh, bias, h0, c0, cells);
    }
}

/* The initial state as B*H doubles: state (B, H), (H,) broadcast, or NULL. */
static double *expand_state(pn_array *s, int64_t B, int64_t H)
{
    if (!s) return NULL;
    double *v = test_to_f64(s), *out = malloc(sizeof(double) * (size_t)(B * H));
    bool per_row = pn_ndim(s) == 2;
    for (int64_t b = 0; b < B; b++) memcpy(out + b * H, v + (per_row ? b * H : 0), sizeof(double) * (size_t)H);
    free(v);
    return out;
}

TEST(recurrent_values)
{
    pn_scope_push();
    /* {N (0: unbatched), L, D, H} */
    static const int64_t dims[][4] = {{2, 5, 3, 4}, {0, 4, 3, 2}, {3, 1, 2, 3}, {1, 6, 4, 5}};
    pn_closure *relu = pn_closure_new(relu_fn, NULL, NULL);
    int ncases = test_quick() ? 2 : 4;
    for (int kind = 0; kind < 3; kind++)
        for (int ci = 0; ci < ncases; ci++)
            for (int variant = 0; variant < 8; variant++) {
                /* variant bits: 1 bias, 2 initial states, 4 states of shape (H,) / float32 / relu */
                pn_scope_push();
                int64_t N = dims[ci][0], L = dims[ci][1], D = dims[ci][2], H = dims[ci][3], B = N ? N : 1;
                int64_t G = GATES[kind] * H;
                bool has_bias = variant & 1, has_state = variant & 2, alt = variant & 4;
                pn_dtype dt = alt && !has_state ? PN_FLOAT32 : PN_FLOAT64;
                int64_t xs[3] = {N, L, D}, hsh[3] = {N, L, H};
                int nd = N ? 3 : 2;
                pn_array *x = test_random_array(N ? xs : xs + 1, nd, dt, -1.5, 1.5);
                pn_array *wx = test_random_array((int64_t[]){G, D}, 2, dt, -0.8, 0.8);
                pn_array *wh = test_random_array((int64_t[]){G, H}, 2, dt, -0.8, 0.8);
                pn_array *bias = has_bias ? test_random_array(&G, 1, dt, -0.5, 0.5) : NULL;
                pn_array *bhn = has_bias && kind == K_GRU ? test_random_array(&H, 1, dt, -0.5, 0.5) : NULL;
                /* the state as (N, H), or (H,) broadcast over the batch */
                int64_t ssh[2] = {N, H};
                bool row = alt || !N;
                pn_array *h0 = has_state ? test_random_array(row ? ssh + 1 : ssh, row ? 1 : 2, dt, -1, 1) : NULL;
                pn_array *c0 = has_state && kind == K_LSTM
                                   ? test_random_array(row ? ssh + 1 : ssh, row ? 1 : 2, dt, -1, 1)
                                   : NULL;
                bool use_relu = kind == K_RNN && alt && has_state;
                double *xv = test_to_f64(x), *wxv = test_to_f64(wx), *whv = test_to_f64(wh);
                double *bv = bias ? test_to_f64(bias) : NULL, *bhv = bhn ? test_to_f64(bhn) : NULL;
                double *h0v = expand_state(h0, B, H), *c0v = expand_state(c0, B, H);
                size_t nbytes = sizeof(double) * (size_t)(B * L * H);
                double *ref_h = malloc(nbytes), *ref_c = malloc(nbytes);
                ref_layer(kind, xv, B, L, D, H, wxv, whv, bv, bhv, h0v, c0v, use_relu, ref_h, ref_c);
                pn_array *cells = NULL;
                pn_array *y = run_layer(kind, x, wx, wh, bias, bhn, h0, c0, use_relu ? relu : NULL, &cells);
                CHECK_OK(y);
                double tol = dt == PN_FLOAT64 ? 1e-12 : 2e-5;
                if (!test_check_values("recurrent hidden", y, N ? hsh : hsh + 1, nd, dt, ref_h, tol, tol))
                    fprintf(stderr, "  kind %d case %d variant %d\n", kind, ci, variant);
                if (kind == K_LSTM) {
                    CHECK_OK(cells);
                    if (!test_check_values("lstm cell", cells, N ? hsh : hsh + 1, nd, dt, ref_c, tol, tol))
                        fprintf(stderr, "  case %d variant %d\n", ci, variant);
                    /* without a cell output */
                    test_check_values("lstm hidden (no cells)", pn_nn_lstm(x, wx, wh, bias, h0, c0, NULL),
                                      N ? hsh : hsh + 1, nd, dt, ref_h, tol, tol);
                } else {
                    CHECK(cells == NULL);
                }
                free(xv), free(wxv), free(whv), free(bv), free(bhv), free(h0v), free(c0v), free(ref_h), free(ref_c);
                pn_scope_pop();
            }
    pn_closure_release(relu);
    pn_scope_pop();
}

TEST(recurrent_state_broadcasts_and_only_hidden_or_cell)
{
    pn_scope_push();
    int64_t L = 3, D = 2, H = 3;
    pn_array *x = test_random_array((int64_t[]){L, D}, 2, PN_FLOAT64, -1, 1);
    pn_array *wx = test_random_array((int64_t[]){4 * H, D}, 2, PN_FLOAT64, -1, 1);
    pn_array *wh = test_random_array((int64_t[]){4 * H, H}, 2, PN_FLOAT64, -1, 1);
    pn_array *h0 = test_random_array((int64_t[]){2, H}, 2, PN_FLOAT64, -1, 1);
    double *xv = test_to_f64(x), *wxv = test_to_f64(wx), *whv = test_to_f64(wh), *h0v = test_to_f64(h0);
    /* unbatched x with a batch of initial states: (2, L, H), as MLX broadcasts */
    double *x2 = malloc(sizeof(double) * (size_t)(2 * L * D)), ref[2 * 3 * 3], cref[2 * 3 * 3];
    memcpy(x2, xv, sizeof(double) * (size_t)(L * D));
    memcpy(x2 + L * D, xv, sizeof(double) * (size_t)(L * D));
    ref_layer(K_LSTM, x2, 2, L, D, H, wxv, whv, NULL, NULL, h0v, NULL, false, ref, cref);
    pn_array *cells = NULL;
    test_check_values("lstm broadcast hidden", pn_nn_lstm(x, wx, wh, NULL, h0, NULL, &cells), (int64_t[]){2, L, H}, 3,
                      PN_FLOAT64, ref, 1e-12, 1e-12);
    test_check_values("lstm broadcast cells", cells, (int64_t[]){2, L, H}, 3, PN_FLOAT64, cref, 1e-12, 1e-12);
    /* only a cell state */
    pn_array *c0 = test_random_array((int64_t[]){H}, 1, PN_FLOAT64, -1, 1);
    double *c0v = test_to_f64(c0);
    ref_layer(K_LSTM, xv, 1, L, D, H, wxv, whv, NULL, NULL, NULL, c0v, false, ref, cref);
    test_check_values("lstm cell only", pn_nn_lstm(x, wx, wh, NULL, NULL, c0, NULL), (int64_t[]){L, H}, 2,
                      PN_FLOAT64, ref, 1e-12, 1e-12);
    free(xv), free(wxv), free(whv), free(h0v), free(x2), free(c0v);
    pn_scope_pop();
}

typedef struct {
    int kind;
    bool state, cells;
} grad_ctx;

/* in: x, wx, wh, bias, [bhn | h0, c0 | h0] */
static pn_array *layer_op(void *ctx, pn_array *const *in)
{
    const grad_ctx *g = ctx;
    pn_array *cells = NULL;
    pn_array *bhn = g->kind == K_GRU ? in[4] : NULL;
    pn_array *h0 = g->state ? in[g->kind == K_GRU ? 5 : 4] : NULL;
    pn_array *c0 = g->state && g->kind == K_LSTM ? in[5] : NULL;
    pn_array *y = run_layer(g->kind, in[0], in[1], in[2], in[3], bhn, h0, c0, NULL, g->cells ? &cells : NULL);
    return g->cells ? cells : y;
}

TEST(recurrent_gradients)
{
    pn_scope_push();
    int64_t N = 2, L = 3, D = 2, H = 2;
    for (int kind = 0; kind < 3; kind++)
        for (int st = 0; st < 2; st++)
            for (int cl = 0; cl < (kind == K_LSTM ? 2 : 1); cl++) {
                pn_scope_push();
                int64_t G = GATES[kind] * H;
                pn_array *in[6] = {test_random_array((int64_t[]){N, L, D}, 3, PN_FLOAT64, -1, 1),
                                   test_random_array((int64_t[]){G, D}, 2, PN_FLOAT64, -1, 1),
                                   test_random_array((int64_t[]){G, H}, 2, PN_FLOAT64, -1, 1),
                                   test_random_array(&G, 1, PN_FLOAT64, -0.5, 0.5), NULL, NULL};
                int nin = 4;
                if (kind == K_GRU) in[nin++] = test_random_array(&H, 1, PN_FLOAT64, -0.5, 0.5);
                if (st) in[nin++] = test_random_array((int64_t[]){N, H}, 2, PN_FLOAT64, -1, 1);
                if (st && kind == K_LSTM) in[nin++] = test_random_array(&H, 1, PN_FLOAT64, -1, 1);
                grad_ctx g = {kind, st, cl};
                CHECK_MSG(test_gradcheck("recurrent", layer_op, &g, nin, in, 1e-5), "kind %d state %d cells %d", kind,
                          st, cl);
                pn_scope_pop();
            }
    pn_scope_pop();
}

TEST(recurrent_errors)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){2, 3, 4}, 3, PN_FLOAT32, -1, 1);
    pn_array *x1 = test_random_array((int64_t[]){4}, 1, PN_FLOAT32, -1, 1);
    pn_array *x0 = pn_zeros((int64_t[]){2, 0, 4}, 3, PN_FLOAT32);
    pn_array *wx = test_random_array((int64_t[]){5, 4}, 2, PN_FLOAT32, -1, 1);
    pn_array *wh = test_random_array((int64_t[]){5, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *wx3 = test_random_array((int64_t[]){15, 4}, 2, PN_FLOAT32, -1, 1);
    pn_array *wh3 = test_random_array((int64_t[]){15, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *wx4 = test_random_array((int64_t[]){20, 4}, 2, PN_FLOAT32, -1, 1);
    pn_array *wh4 = test_random_array((int64_t[]){20, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *v5 = test_random_array((int64_t[]){5}, 1, PN_FLOAT32, -1, 1);
    pn_array *v4 = test_random_array((int64_t[]){4}, 1, PN_FLOAT32, -1, 1);
    pn_array *h3 = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *h2 = test_random_array((int64_t[]){2, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *w3d = test_random_array((int64_t[]){5, 4, 1}, 3, PN_FLOAT32, -1, 1);
    /* input rank and empty sequences */
    CHECK_ERR(pn_nn_rnn(x1, wx, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gru(x1, wx3, wh3, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_lstm(x1, wx4, wh4, NULL, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rnn(x0, wx, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* weight shapes */
    CHECK_ERR(pn_nn_rnn(x, wh, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);  /* Wxh (5, 5): D is 4 */
    CHECK_ERR(pn_nn_rnn(x, wx, wx, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);  /* Whh (5, 4) */
    CHECK_ERR(pn_nn_rnn(x, w3d, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT); /* 3-d Wxh */
    CHECK_ERR(pn_nn_gru(x, wx, wh3, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT); /* Wx without 3H rows */
    CHECK_ERR(pn_nn_gru(x, wx3, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT); /* Wh (H, H) */
    CHECK_ERR(pn_nn_lstm(x, wx3, wh3, NULL, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* biases */
    CHECK_ERR(pn_nn_rnn(x, wx, wh, v4, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gru(x, wx3, wh3, v5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gru(x, wx3, wh3, NULL, v4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_lstm(x, wx4, wh4, h2, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* initial states: wrong size, batch that does not broadcast */
    CHECK_ERR(pn_nn_rnn(x, wx, wh, NULL, v4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rnn(x, wx, wh, NULL, h3, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gru(x, wx3, wh3, NULL, NULL, h3), PN_ERR_INVALID_ARGUMENT);
    pn_array *cells = (pn_array *)1;
    CHECK_ERR(pn_nn_lstm(x, wx4, wh4, NULL, h2, h3, &cells), PN_ERR_INVALID_ARGUMENT);
    CHECK(cells == NULL);
    CHECK_ERR(pn_nn_lstm(x, wx4, wh4, NULL, v4, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* a nonlinearity that changes the shape */
    pn_closure *bad = pn_closure_new(sum_fn, NULL, NULL);
    CHECK_ERR(pn_nn_rnn(x, wx, wh, NULL, NULL, bad), PN_ERR_INVALID_ARGUMENT);
    pn_closure_release(bad);
    /* NULL inputs keep the first error */
    CHECK_ERR(pn_nn_rnn(NULL, wx, wh, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gru(x, NULL, wh3, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_lstm(x, wx4, NULL, NULL, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* the valid calls work (the arrays above are right where they should be) */
    CHECK_OK(pn_nn_rnn(x, wx, wh, v5, h2, NULL));
    CHECK_OK(pn_nn_gru(x, wx3, wh3, NULL, v5, h2));
    CHECK_OK(pn_nn_lstm(x, wx4, wh4, NULL, h2, v5, NULL));
    pn_scope_pop();
}

/* ───────────── bilinear ───────────── */

/* y[r, o] = sum_{j,k} x2[r, j] w[o, j, k] x1[r, k] + b[o] over rows r. */
static void ref_bilinear(const double *x1, const double *x2, const double *w, const double *b, int64_t rows,
                         int64_t in1, int64_t in2, int64_t out, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t j = 0; j < in2; j++)
                for (int64_t k = 0; k < in1; k++) s += x2[r * in2 + j] * w[(o * in2 + j) * in1 + k] * x1[r * in1 + k];
            y[r * out + o] = s;
        }
}

TEST(bilinear_values)
{
    pn_scope_push();
    /* leading shapes */
    static const int64_t lead[][2] = {{5, 0}, {0, 0}, {2, 3}, {1, 0}};
    static const int nlead[] = {1, 0, 2, 1};
    static const int64_t io[][3] = {{3, 4, 2}, {2, 2, 5}, {4, 1, 3}, {1, 3, 1}};
    for (int li = 0; li < 4; li++)
        for (int wi = 0; wi < 4; wi++)
            for (int variant = 0; variant < 4; variant++) {
                pn_scope_push();
                bool has_bias = variant & 1;
                pn_dtype dt = variant & 2 ? PN_FLOAT32 : PN_FLOAT64;
                int64_t in1 = io[wi][0], in2 = io[wi][1], out = io[wi][2];
                int nl = nlead[li];
                int64_t s1[3], s2[3], so[3], rows = 1;
                for (int i = 0; i < nl; i++) s1[i] = s2[i] = so[i] = lead[li][i], rows *= lead[li][i];
                s1[nl] = in1, s2[nl] = in2, so[nl] = out;
                pn_array *x1 = test_random_array(s1, nl + 1, dt, -1, 1), *x2 = test_random_array(s2, nl + 1, dt, -1, 1);
                pn_array *w = test_random_array((int64_t[]){out, in2, in1}, 3, dt, -1, 1);
                pn_array *b = has_bias ? test_random_array(&out, 1, dt, -1, 1) : NULL;
                double *x1v = test_to_f64(x1), *x2v = test_to_f64(x2), *wv = test_to_f64(w);
                double *bv = b ? test_to_f64(b) : NULL;
                double *y = malloc(sizeof(double) * (size_t)(rows * out));
                ref_bilinear(x1v, x2v, wv, bv, rows, in1, in2, out, y);
                double tol = dt == PN_FLOAT64 ? 1e-12 : 1e-5;
                if (!test_check_values("bilinear", pn_nn_bilinear(x1, x2, w, b), so, nl + 1, dt, y, tol, tol))
                    fprintf(stderr, "  lead %d weights %d variant %d\n", li, wi, variant);
                free(x1v), free(x2v), free(wv), free(bv), free(y);
                pn_scope_pop();
            }
    /* an asymmetric check that in1 and in2 are not swapped: weight (out, in2, in1) */
    pn_array *x1 = pn_array_from_data((double[]){1, 2}, (int64_t[]){2}, 1, PN_FLOAT64);
    pn_array *x2 = pn_array_from_data((double[]){3, 4, 5}, (int64_t[]){3}, 1, PN_FLOAT64);
    pn_array *w = pn_array_from_data((double[]){1, 0, 0, 0, 0, 1}, (int64_t[]){1, 3, 2}, 3, PN_FLOAT64);
    test_check_values("bilinear layout", pn_nn_bilinear(x1, x2, w, NULL), (int64_t[]){1}, 1, PN_FLOAT64,
                      (double[]){1 * 3 + 2 * 5}, 0, 0);
    pn_scope_pop();
}

static pn_array *bilinear_op(void *ctx, pn_array *const *in)
{
    return pn_nn_bilinear(in[0], in[1], in[2], *(const bool *)ctx ? in[3] : NULL);
}

TEST(bilinear_gradients_and_errors)
{
    pn_scope_push();
    pn_array *in[4] = {test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT64, -1, 1),
                       test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -1, 1),
                       test_random_array((int64_t[]){3, 4, 2}, 3, PN_FLOAT64, -1, 1),
                       test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1, 1)};
    bool with_bias[2] = {true, false};
    CHECK(test_gradcheck("bilinear", bilinear_op, &with_bias[0], 4, in, 1e-6));
    CHECK(test_gradcheck("bilinear (no bias)", bilinear_op, &with_bias[1], 3, in, 1e-6));
    pn_array *x1 = in[0], *x2 = in[1], *w = in[2], *b = in[3];
    pn_array *x2b = test_random_array((int64_t[]){4, 4}, 2, PN_FLOAT64, -1, 1);
    pn_array *x2s = test_random_array((int64_t[]){3, 1, 4}, 3, PN_FLOAT64, -1, 1);
    pn_array *b4 = test_random_array((int64_t[]){4}, 1, PN_FLOAT64, -1, 1);
    CHECK_ERR(pn_nn_bilinear(x2, x1, w, b), PN_ERR_INVALID_ARGUMENT);  /* inputs swapped */
    CHECK_ERR(pn_nn_bilinear(x1, x2b, w, b), PN_ERR_INVALID_ARGUMENT); /* 3 vs 4 rows */
    CHECK_ERR(pn_nn_bilinear(x1, x2s, w, b), PN_ERR_INVALID_ARGUMENT); /* different ranks */
    CHECK_ERR(pn_nn_bilinear(x1, x2, x1, b), PN_ERR_INVALID_ARGUMENT); /* 2-d weight */
    CHECK_ERR(pn_nn_bilinear(x1, x2, w, b4), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_bilinear(x1, x2, w, x1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_bilinear(NULL, x2, w, b), PN_ERR_INVALID_ARGUMENT);
    pn_array *s = pn_scalar(1.0, PN_FLOAT64);
    CHECK_ERR(pn_nn_bilinear(s, x2, w, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── the Split the layers take sequences apart with ───────────────────────────── */

/* The pieces of x split along axis 1 at ctx's two indices, weighted differently and summed
 * into one array of x's shape (each piece lands where it came from, so overlapping pieces of
 * "backwards" indices add up): exercises Split's vjp (one concatenation when the pieces tile
 * the axis, placed-and-summed otherwise) and jvp. */
static pn_array *split_op(void *ctx, pn_array *const *in)
{
    const int64_t *idx = ctx;
    pn_array *x = in[0], *p[3] = {NULL, NULL, NULL};
    if (pn_split(x, idx, 2, 1, p)) return NULL;
    int64_t len = x->shape[1], prev = 0;
    pn_array *acc = pn_zeros_like(x);
    for (int k = 0; k < 3; k++) {
        int64_t e = k < 2 ? (idx[k] < len ? idx[k] : len) : len;
        if (pn_size(p[k]) > 0) {
            pn_array *w = pn_multiply(pn_square(p[k]), pn_weak_float(k + 1.0));
            acc = pn_slice_update(acc, pn_add(pn_slice(acc, (int64_t[]){0, prev}, (int64_t[]){x->shape[0], e}, NULL, 2), w),
                                  (int64_t[]){0, prev}, (int64_t[]){x->shape[0], e}, NULL, 2);
        }
        prev = e;
    }
    return acc;
}

TEST(split_gradients)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){3, 7}, 2, PN_FLOAT64, -1, 1);
    int64_t tiled[2] = {2, 5}, backwards[2] = {5, 2}, empty[2] = {0, 7};
    CHECK(test_gradcheck("split tiled", split_op, tiled, 1, &x, 1e-6));
    CHECK(test_gradcheck("split backwards", split_op, backwards, 1, &x, 1e-6));
    CHECK(test_gradcheck("split empty pieces", split_op, empty, 1, &x, 1e-6));
    /* one Split node: every piece shares it */
    pn_array *p[3];
    CHECK(pn_split(x, tiled, 2, 1, p) == 0 && p[0]->node == p[1]->node && p[1]->node == p[2]->node);
    CHECK(strcmp(p[0]->node->prim->name, "Split") == 0);
    pn_scope_pop();
}
