/* recurrent.c — mlx.nn's recurrent layers (RNN, GRU, LSTM) as functions of their inputs and
 * weights, with MLX's layouts and gate orders. Composite ops: the input projection of the whole
 * sequence is one matmul split once into its time steps, then a loop over time steps (matmul +
 * elementwise) and one stack, so gradients and the GPU come from the ops and the backward is
 * linear in the sequence length. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define W(x) pn_weak_float(x)

/* One layer's names (for messages) and its number of gates: the weights have G * H rows (MLX's
 * (out, in) layout: x @ Wx^T). */
typedef struct rnn_spec {
    const char *op, *wx, *wh, *bias;
    int gates;
} rnn_spec;

static const rnn_spec RNN_SPEC = {"rnn", "Wxh", "Whh", "bias", 1};
static const rnn_spec GRU_SPEC = {"gru", "Wx", "Wh", "b", 3};
static const rnn_spec LSTM_SPEC = {"lstm", "Wx", "Wh", "bias", 4};

#define SHAPE(a) pnC_shape_str((a)->shape, (a)->ndim, (char[128]){0}, 128)

/* Checks an optional vector of n entries. */
static bool check_vector(const rnn_spec *s, const char *what, pn_array *v, int64_t n)
{
    if (!v || (v->ndim == 1 && v->shape[0] == n)) return true;
    pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s must have shape (%lld,), got %s.", s->op, what, (long long)n,
             SHAPE(v));
    return false;
}

/* Checks x (..., L, D) with L >= 1, wx (G*H, D), wh (G*H, H), bias (G*H,) or NULL, and the
 * initial states (NULL or broadcastable to x's batch shape + (H,)). Sets *hidden_size. */
static bool rnn_check(const rnn_spec *s, pn_array *x, pn_array *wx, pn_array *wh, pn_array *bias,
                      pn_array *const *states, const char *const *state_names, int nstates, int64_t *hidden_size)
{
    if (!pnC_inputs_ok(s->op, 3, (pn_array *[]){x, wx, wh})) return false;
    if (bias && !pnC_inputs_ok(s->op, 1, &bias)) return false;
    for (int i = 0; i < nstates; i++)
        if (states[i] && !pnC_inputs_ok(s->op, 1, &states[i])) return false;
    if (x->ndim < 2) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Expected an input of shape (N, L, D) or (L, D), got %s.", s->op,
                 SHAPE(x));
        return false;
    }
    int g = s->gates;
    if (wh->ndim != 2 || wh->shape[0] != g * wh->shape[1]) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] %s must have shape (%s, H), got %s.", s->op, s->wh,
                 g == 1 ? "H" : g == 3 ? "3H" : "4H", SHAPE(wh));
        return false;
    }
    int64_t h = wh->shape[1], d = x->shape[x->ndim - 1];
    if (wx->ndim != 2 || wx->shape[1] != d || wx->shape[0] != g * h) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT,
                 "[%s] %s must have shape (%lld, %lld) for inputs with %lld features and hidden size %lld, got %s.",
                 s->op, s->wx, (long long)(g * h), (long long)d, (long long)d, (long long)h, SHAPE(wx));
        return false;
    }
    if (!check_vector(s, s->bias, bias, g * h)) return false;
    if (x->shape[x->ndim - 2] < 1) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] The input sequence is empty (shape %s).", s->op, SHAPE(x));
        return false;
    }
    /* the states meet (..., H) with ... the batch shape of x */
    int64_t want[PNC_MAX_NDIM], out[PNC_MAX_NDIM];
    int nd = x->ndim - 1;
    for (int i = 0; i < nd - 1; i++) want[i] = x->shape[i];
    want[nd - 1] = h;
    for (int i = 0; i < nstates; i++) {
        pn_array *st = states[i];
        if (!st) continue;
        if (st->ndim < 1 || st->shape[st->ndim - 1] != h) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT,
                     "[%s] The initial %s state must have shape (N, %lld) or (%lld,) for input %s, got %s.", s->op,
                     state_names[i], (long long)h, (long long)h, SHAPE(x), SHAPE(st));
            return false;
        }
        if (pnC_broadcast_shapes(s->op, want, nd, st->shape, st->ndim, out) < 0) return false;
    }
    *hidden_size = h;
    return true;
}

/* w (out, in) as the (in, out) right operand of a product: a transposed view. */
static pn_array *right(pn_array *w) { return pn_swapaxes(w, 0, 1); }

/* x @ wx^T + bias for the whole sequence: (..., L, G*H). */
static pn_array *project(pn_array *x, pn_array *wx, pn_array *bias)
{
    return bias ? pn_addmm(bias, x, right(wx), 1.0, 1.0) : pn_matmul(x, right(wx));
}

/* The len time steps a[..., t, :] of a (..., len, F) into xs[0..len-1], each (..., F): one
 * Split node, whose vjp joins the steps' cotangents in one concatenation (a slice per step
 * would cost a zero-filled copy of a per step, quadratic in len). Returns 0 or -1. */
static int split_steps(pn_array *a, int64_t len, pn_array **xs)
{
    if (!a || pn_split_sections(a, (int)len, -2, xs)) return -1;
    int ax = a->ndim - 2;
    for (int64_t t = 0; t < len; t++)
        if (!(xs[t] = pn_squeeze(xs[t], &ax, 1))) return -1;
    return 0;
}

/* The nonlinearity of an Elman step: f(pre) (one output of pre's shape), or tanh when f is NULL. */
static pn_array *apply_nonlinearity(pn_closure *f, pn_array *pre)
{
    if (!f || !pre) return pn_tanh(pre);
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    if (pn_closure_call(f, 1, &pre, &n, out)) return NULL;
    if (n != 1 || out[0]->ndim != pre->ndim ||
        memcmp(out[0]->shape, pre->shape, sizeof(int64_t) * (size_t)pre->ndim) != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[rnn] The nonlinearity must return one array of its input's shape %s, got %d array%s%s.",
                        SHAPE(pre), n, n == 1 ? " of shape " : "s", n == 1 ? SHAPE(out[0]) : "");
    return out[0];
}

/* Stacks the L per-step arrays along axis -2; NULL if any is NULL (an error is set). */
static pn_array *stack_steps(pn_array **steps, int64_t len)
{
    for (int64_t t = 0; t < len; t++)
        if (!steps[t]) return NULL;
    return pn_stack(steps, (int)len, -2);
}

/* Elman RNN as mlx.nn.RNN over x (..., L, D), Wxh (H, D), Whh (H, H), bias (H,) or NULL:
 * h_t = f(x_t Wxh^T + bias + h_{t-1} Whh^T), starting from hidden (broadcastable to (..., H); NULL:
 * no recurrent term at the first step, i.e. zeros). f is the nonlinearity closure (one array in,
 * one array of the same shape out); NULL means tanh. Returns every h_t, shape (..., L, H). */
pn_array *pn_nn_rnn(pn_array *x, pn_array *wxh, pn_array *whh, pn_array *bias, pn_array *hidden,
                    pn_closure *nonlinearity)
{
    int64_t hs;
    if (!rnn_check(&RNN_SPEC, x, wxh, whh, bias, &hidden, (const char *[]){"hidden"}, 1, &hs)) return NULL;
    int64_t len = x->shape[x->ndim - 2];
    pn_array **steps = calloc((size_t)(2 * len), sizeof *steps), **xs = steps + len;
    if (!steps) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[rnn] Out of memory.");
    pn_scope_push();
    pn_array *h = hidden, *whh_r = right(whh);
    bool ok = split_steps(project(x, wxh, bias), len, xs) == 0; /* else steps stay NULL: stack fails */
    for (int64_t t = 0; ok && t < len; t++) {
        pn_array *pre = xs[t];
        if (h) pre = pn_add(pre, pn_matmul(h, whh_r));
        if (!(h = steps[t] = apply_nonlinearity(nonlinearity, pre))) break;
    }
    pn_array *y = stack_steps(steps, len);
    free(steps);
    return pnC_scope_return(y);
}

/* GRU as mlx.nn.GRU over x (..., L, D), Wx (3H, D), Wh (3H, H) (row blocks r, z, n), b (3H,)
 * and bhn (H,) (each may be NULL): r, z = sigmoid(x_t Wx_rz^T + b_rz + h Wh_rz^T), n = tanh(x_t
 * Wx_n^T + b_n + r * (h Wh_n^T + bhn)), h' = (1 - z) * n + z * h, from hidden (broadcastable to
 * (..., H); NULL: zeros). Returns every h_t, shape (..., L, H). */
pn_array *pn_nn_gru(pn_array *x, pn_array *wx, pn_array *wh, pn_array *b, pn_array *bhn, pn_array *hidden)
{
    int64_t hs;
    if (!rnn_check(&GRU_SPEC, x, wx, wh, b, &hidden, (const char *[]){"hidden"}, 1, &hs)) return NULL;
    if (bhn && (!pnC_inputs_ok("gru", 1, &bhn) || !check_vector(&GRU_SPEC, "bhn", bhn, hs))) return NULL;
    int64_t len = x->shape[x->ndim - 2];
    pn_array **steps = calloc((size_t)(2 * len), sizeof *steps), **xs = steps + len;
    if (!steps) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[gru] Out of memory.");
    pn_scope_push();
    int64_t cut = 2 * hs;
    pn_array *h = hidden, *wh_r = right(wh);
    bool ok = split_steps(project(x, wx, b), len, xs) == 0; /* else steps stay NULL: stack fails */
    for (int64_t t = 0; ok && t < len; t++) {
        pn_array *xp[2] = {NULL, NULL}; /* (..., 2H), (..., H) */
        if (pn_split(xs[t], &cut, 1, -1, xp)) break;
        pn_array *rz_in = xp[0], *n_in = xp[1], *hn = bhn;
        if (h) {
            pn_array *hp[2] = {NULL, NULL};
            pn_split(pn_matmul(h, wh_r), &cut, 1, -1, hp);
            rz_in = pn_add(rz_in, hp[0]);
            hn = bhn ? pn_add(hp[1], bhn) : hp[1];
        }
        pn_array *rz[2] = {NULL, NULL};
        pn_split_sections(pn_sigmoid(rz_in), 2, -1, rz);
        pn_array *n = pn_tanh(hn ? pn_add(n_in, pn_multiply(rz[0], hn)) : n_in);
        pn_array *keep = pn_multiply(pn_subtract(W(1.0), rz[1]), n);
        if (!(h = steps[t] = h ? pn_add(keep, pn_multiply(rz[1], h)) : keep)) break;
    }
    pn_array *y = stack_steps(steps, len);
    free(steps);
    return pnC_scope_return(y);
}

/* LSTM as mlx.nn.LSTM over x (..., L, D), Wx (4H, D), Wh (4H, H) (row blocks i, f, g, o),
 * bias (4H,) or NULL: i, f, o = sigmoid(.), g = tanh(.) of x_t Wx^T + bias + h Wh^T, c' = f * c +
 * i * g, h' = o * tanh(c'), from hidden and cell (each broadcastable to (..., H); NULL: zeros).
 * Returns every h_t, shape (..., L, H); *cell_out (when cell_out is non-NULL) receives every c_t
 * of the same shape, or NULL on error. */
pn_array *pn_nn_lstm(pn_array *x, pn_array *wx, pn_array *wh, pn_array *bias, pn_array *hidden, pn_array *cell,
                     pn_array **cell_out)
{
    if (cell_out) *cell_out = NULL;
    int64_t hs;
    if (!rnn_check(&LSTM_SPEC, x, wx, wh, bias, (pn_array *[]){hidden, cell}, (const char *[]){"hidden", "cell"}, 2,
                   &hs))
        return NULL;
    int64_t len = x->shape[x->ndim - 2];
    pn_array **steps = calloc((size_t)(3 * len), sizeof *steps), **cells = steps + len, **xs = cells + len;
    if (!steps) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[lstm] Out of memory.");
    pn_scope_push();
    pn_array *h = hidden, *c = cell, *wh_r = right(wh);
    bool ok = split_steps(project(x, wx, bias), len, xs) == 0; /* else steps stay NULL: stack fails */
    for (int64_t t = 0; ok && t < len; t++) {
        pn_array *ifgo = xs[t];
        if (h) ifgo = pn_add(ifgo, pn_matmul(h, wh_r));
        pn_array *gate[4] = {NULL, NULL, NULL, NULL};
        if (pn_split_sections(ifgo, 4, -1, gate)) break;
        pn_array *ig = pn_multiply(pn_sigmoid(gate[0]), pn_tanh(gate[2]));
        c = cells[t] = c ? pn_add(pn_multiply(pn_sigmoid(gate[1]), c), ig) : ig;
        if (!(h = steps[t] = pn_multiply(pn_sigmoid(gate[3]), pn_tanh(c)))) break;
    }
    pn_array *keep[2] = {stack_steps(steps, len), cell_out ? stack_steps(cells, len) : NULL};
    free(steps);
    if (!keep[0] || (cell_out && !keep[1])) {
        pn_scope_pop();
        return NULL;
    }
    pn_scope_pop_keep(keep, cell_out ? 2 : 1);
    if (cell_out) *cell_out = keep[1];
    return keep[0];
}
