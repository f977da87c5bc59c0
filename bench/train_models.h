/* train_models.h — the two Fashion-MNIST models of examples/fashion_mnist.c (the MLP
 * 784-512-512-10 and the --cnn CNN, same layers, names and initialization scales) and one Adam
 * training step over them, shared by the CPU benchmark (bench_main.c: mlp_train_step,
 * cnn_train_step) and the GPU benchmark (gpu/bench_gpu.c: mlp_step, cnn_step), so both time
 * the same step as bench/bench_python.py. Static definitions: each benchmark is one
 * translation unit that includes this header once. */
#ifndef PONTE_BENCH_TRAIN_MODELS_H
#define PONTE_BENCH_TRAIN_MODELS_H

#include "ponte.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { TM_MAX_PARAMS = 8, TM_MAX_GEMMS = 4 };

/* A model: its parameters (names and shapes as the example saves them), its forward pass from
 * the parameters (in that order) and a batch of images (B, 784) to logits (B, 10), the
 * example's default batch, and the matrix products of one training step (for a GEMM
 * baseline): {rows per image, k, n, whether the input's gradient is needed}. */
typedef struct tm_model {
    const char *figure; /* the GPU benchmark's figure name */
    int nparams;
    const char *names[TM_MAX_PARAMS];
    int64_t shapes[TM_MAX_PARAMS][4];
    int ndims[TM_MAX_PARAMS];
    pn_array *(*forward)(pn_array *const *w, pn_array *x);
    int64_t batch;
    int ngemms;
    int64_t gemms[TM_MAX_GEMMS][4];
} tm_model;

/* MLP 784 → 512 → 512 → 10 with ReLU (the example's default). */
static pn_array *tm_mlp_forward(pn_array *const *w, pn_array *x)
{
    pn_array *h = pn_nn_relu(pn_nn_linear(x, w[0], w[1]));
    h = pn_nn_relu(pn_nn_linear(h, w[2], w[3]));
    return pn_nn_linear(h, w[4], w[5]);
}

/* CNN on (B, 28, 28, 1): conv3x3 32 - pool - bias - relu - conv3x3 64 - pool - bias - relu -
 * linear 128 - relu - linear 10, exactly as the example's --cnn model (the same function as
 * bench_python.py's relu-then-pool with biased convolutions: a per-channel bias and relu
 * commute with max pooling). */
static pn_array *tm_cnn_forward(pn_array *const *w, pn_array *x)
{
    const int pad[2] = {1, 1}, pool[2] = {2, 2};
    pn_array *h = pn_reshape(x, (int64_t[]){-1, 28, 28, 1}, 4);
    h = pn_nn_relu(pn_add(pn_nn_max_pool2d(pn_conv2d(h, w[0], NULL, pad, NULL, 1), pool, NULL, NULL), w[1]));
    h = pn_nn_relu(pn_add(pn_nn_max_pool2d(pn_conv2d(h, w[2], NULL, pad, NULL, 1), pool, NULL, NULL), w[3]));
    h = pn_reshape(h, (int64_t[]){-1, 7 * 7 * 64}, 2);
    h = pn_nn_relu(pn_nn_linear(h, w[4], w[5]));
    return pn_nn_linear(h, w[6], w[7]);
}

static const tm_model TM_MLP = {"mlp_step", 6,
    {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.2.weight",
     "layers.2.bias"},
    {{512, 784}, {512}, {512, 512}, {512}, {10, 512}, {10}},
    {2, 1, 2, 1, 2, 1}, tm_mlp_forward, 128,
    3, {{1, 784, 512, 0}, {1, 512, 512, 1}, {1, 512, 10, 1}}};
/* The convolutions as im2col GEMMs: (B*H*W, 9*Cin) x (9*Cin, Cout). */
static const tm_model TM_CNN = {"cnn_step", 8,
    {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
     "fc2.weight", "fc2.bias"},
    {{32, 3, 3, 1}, {32}, {64, 3, 3, 32}, {64}, {128, 3136}, {128}, {10, 128}, {10}},
    {4, 1, 4, 1, 2, 1, 2, 1}, tm_cnn_forward, 64,
    4, {{28 * 28, 9, 32, 0}, {14 * 14, 9 * 32, 64, 1}, {1, 3136, 128, 1}, {1, 128, 10, 1}}};

/* Floating-point operations of the GEMMs of one step at batch B: each product forward
 * (2 m k n) and its weight gradient, plus its input gradient where needed. */
static inline double tm_gemm_flops(const tm_model *m, int64_t B)
{
    double f = 0;
    for (int i = 0; i < m->ngemms; i++) {
        const int64_t *g = m->gemms[i];
        f += 2.0 * (double)(B * g[0]) * (double)g[1] * (double)g[2] * (2 + (g[3] ? 1 : 0));
    }
    return f;
}

/* loss(params..., x, y): mean cross entropy; ctx is the model. */
static int tm_loss_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const tm_model *m = ctx;
    (void)nin;
    pn_array *logits = m->forward(in, in[m->nparams]);
    out[0] = pn_nn_cross_entropy(logits, in[m->nparams + 1], -1, 0.0, PN_REDUCTION_MEAN);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* One model being trained: parameters, the Adam optimizer (lr 1e-3, no bias correction, as
 * the example), value_and_grad of tm_loss_fn, a fixed batch, and a sync hook run after each
 * step's eval (NULL: none; the GPU benchmark waits for the device). */
typedef struct tm_train {
    const tm_model *m;
    pn_params *params;
    pn_optimizer *optim;
    pn_closure *vg;
    pn_array *x, *y;
    int (*sync)(void);
    double loss; /* the last step's loss, when the step was asked to read it */
    bool read_loss;
} tm_train;

/* Sets t's parameters with mlx.nn's initialization scales, uniform(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) (convolution biases 0), from host_random(n, lo, hi) (a malloc'd buffer the
 * caller's generator fills) through make(data, shape, ndim, dtype) (the array on the
 * benchmark's device); creates the optimizer and value_and_grad. Returns 0, or -1 (an error
 * set, or out of memory). */
static int tm_setup(tm_train *t, const tm_model *m, float *(*host_random)(int64_t n, float lo, float hi),
                    pn_array *(*make)(const void *data, const int64_t *shape, int ndim, pn_dtype dtype))
{
    t->m = m;
    t->params = pn_params_new();
    if (!t->params) return -1;
    for (int i = 0; i < m->nparams; i++) {
        const int64_t *sh = m->shapes[i];
        int nd = m->ndims[i];
        bool conv_bias = nd == 1 && i > 0 && m->ndims[i - 1] == 4;
        const int64_t *wsh = nd == 1 ? m->shapes[i - 1] : sh;
        int wnd = nd == 1 ? m->ndims[i - 1] : nd;
        int64_t fan_in = 1, count = 1;
        for (int d = 1; d < wnd; d++) fan_in *= wsh[d];
        for (int d = 0; d < nd; d++) count *= sh[d];
        float scale = (float)(1.0 / sqrt((double)fan_in));
        float *w = host_random(count, -scale, scale);
        if (w && conv_bias) memset(w, 0, (size_t)count * sizeof(float));
        pn_array *a = w ? make(w, sh, nd, PN_FLOAT32) : NULL;
        free(w);
        if (!a || pn_params_set(t->params, m->names[i], a) != 0) return -1;
        pn_release(a);
    }
    int argnums[TM_MAX_PARAMS] = {0, 1, 2, 3, 4, 5, 6, 7};
    t->optim = pn_optim_adam(1e-3, 0.9, 0.999, 1e-8, false);
    pn_closure *lf = pn_closure_new(tm_loss_fn, (void *)m, NULL);
    t->vg = lf ? pn_value_and_grad(lf, argnums, m->nparams) : NULL;
    pn_closure_release(lf);
    return t->optim && t->vg ? 0 : -1;
}

/* Releases what tm_setup and the caller (x, y) put in t. */
static void tm_free(tm_train *t)
{
    pn_closure_release(t->vg);
    pn_optimizer_free(t->optim);
    pn_params_free(t->params);
    pn_release(t->x);
    pn_release(t->y);
}

/* One training step: value_and_grad, Adam update, one pn_eval of the loss, the new parameters
 * and the optimizer state, then t->sync (the loss is read only when asked). ctx is the
 * tm_train. Returns 0 or -1. */
static int tm_run_step(void *ctx)
{
    tm_train *t = ctx;
    const tm_model *m = t->m;
    int np = m->nparams, rc = -1;
    pn_scope_push();
    pn_array *in[TM_MAX_PARAMS + 2], *out[1 + TM_MAX_PARAMS];
    for (int i = 0; i < np; i++) in[i] = pn_params_get(t->params, m->names[i]);
    in[np] = t->x;
    in[np + 1] = t->y;
    int nout = 1 + np;
    pn_params *grads = NULL;
    if (pn_closure_call(t->vg, np + 2, in, &nout, out) != 0) goto done;
    grads = pn_params_new();
    for (int i = 0; i < np; i++) pn_params_set(grads, m->names[i], out[1 + i]);
    if (pn_optimizer_update(t->optim, t->params, grads) != 0) goto done;
    pn_array *todo[1 + TM_MAX_PARAMS + 64];
    int n = 0;
    todo[n++] = out[0];
    for (int i = 0; i < pn_params_count(t->params) && n < 1 + TM_MAX_PARAMS; i++)
        todo[n++] = pn_params_at(t->params, i);
    pn_params *st = pn_optimizer_state(t->optim);
    for (int i = 0; i < pn_params_count(st) && n < (int)(sizeof todo / sizeof todo[0]); i++)
        todo[n++] = pn_params_at(st, i);
    if (pn_eval(todo, n) != 0 || (t->sync && t->sync() != 0)) goto done;
    rc = 0;
    if (t->read_loss) {
        t->loss = pn_item(out[0]);
        if (pn_last_error() != PN_OK) rc = -1;
    }
done:
    pn_params_free(grads);
    pn_scope_pop();
    return rc;
}

#endif /* PONTE_BENCH_TRAIN_MODELS_H */
