/* test_cudnn_conv.c — the CUDA backend's convolutions through cuDNN (backend/cuda/cudnn.c; on
 * the simulated runtime, sim/cudnn_sim.cpp's reference cuDNN): each mapping (forward, backward
 * data for transposed convolutions and input gradients, backward filter for weight gradients)
 * must run the cuDNN entry point it maps to (counted), and agree with the CPU kernel and with
 * the GPU's im2col path (cuDNN disabled, as PONTE_CUDNN=0); geometries cuDNN cannot express
 * fall back silently. Skips when the build has no usable GPU. */
#include "core/core.h"
#include "harness.h"
#ifdef PONTE_HAS_GPU
#include "backend/cuda/cudnn.h"
#endif

#include <math.h>
#include <string.h>

#ifdef PONTE_HAS_GPU
#ifdef PONTE_GPU_SIM
extern long long pnsim_cudnn_calls[3]; /* sim/cudnn_sim.cpp: its entry points' calls */
#endif

typedef pn_array *(*conv_fn)(pn_array *const *x);

/* Which cuDNN entry points a case must use: bit PNG_CUDNN_* set = that count must grow. */
#define F (1 << PNG_CUDNN_FORWARD)
#define BD (1 << PNG_CUDNN_BACKWARD_DATA)
#define BF (1 << PNG_CUDNN_BACKWARD_FILTER)

typedef struct cudnn_case {
    const char *name;
    conv_fn fn;
    int nd;
    int64_t xs[5], ws[5];
    pn_dtype dtype;
    int fwd_ops; /* entry points of the forward pass (0: must fall back) */
    int vjp_ops; /* entry points the vjp (forward + both gradients) must include */
} cudnn_case;

static pn_array *c_conv2d_sp(pn_array *const *x) /* stride, padding, dilation */
{
    return pn_conv2d(x[0], x[1], (int[]){2, 1}, (int[]){1, 2}, (int[]){1, 2}, 1);
}
static pn_array *c_conv2d_same(pn_array *const *x) { return pn_conv2d(x[0], x[1], NULL, (int[]){1, 1}, NULL, 1); }
static pn_array *c_conv2d_groups(pn_array *const *x)
{
    return pn_conv2d(x[0], x[1], (int[]){2, 2}, (int[]){1, 1}, NULL, 2);
}
static pn_array *c_conv1d(pn_array *const *x) { return pn_conv1d(x[0], x[1], 2, 1, 1, 1); }
static pn_array *c_conv3d(pn_array *const *x)
{
    return pn_conv3d(x[0], x[1], (int[]){1, 2, 1}, (int[]){1, 1, 0}, (int[]){1, 1, 2}, 1);
}
static pn_array *c_conv_t2d(pn_array *const *x)
{
    return pn_conv_transpose2d(x[0], x[1], (int[]){2, 2}, (int[]){1, 0}, NULL, (int[]){1, 0}, 1);
}
static pn_array *c_conv_t2d_groups(pn_array *const *x)
{
    return pn_conv_transpose2d(x[0], x[1], (int[]){2, 1}, (int[]){0, 1}, (int[]){1, 2}, NULL, 2);
}
static pn_array *c_conv_t1d(pn_array *const *x) { return pn_conv_transpose1d(x[0], x[1], 3, 1, 1, 2, 1); }
static pn_array *c_flip(pn_array *const *x) /* a true convolution: CUDNN_CONVOLUTION */
{
    return pn_conv_general(x[0], x[1], (int[]){1, 2}, (int[]){1, 1}, (int[]){1, 1}, NULL, NULL, 1, true);
}
static pn_array *c_asym(pn_array *const *x) /* padding (0, 0) / (2, 1): no symmetric form */
{
    return pn_conv_general(x[0], x[1], NULL, (int[]){0, 0}, (int[]){2, 1}, NULL, NULL, 1, false);
}
static pn_array *c_idil_stride(pn_array *const *x) /* input dilation and stride at once */
{
    return pn_conv_general(x[0], x[1], (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1}, NULL,
                           (int[]){2, 2}, 1, false);
}

#define X4(a, b, c, d) 4, {a, b, c, d}
/* cuDNN 9 on an H100 finds no backward-data or backward-filter algorithm for float64 NHWC
 * (seen 2026-11-26): those gradients take the im2col path there; the simulated cuDNN has them */
#ifdef PONTE_GPU_SIM
#define F64_VJP (F | BD | BF)
#else
#define F64_VJP F
#endif
static const cudnn_case CASES[] = {
    {"conv2d stride pad dilation", c_conv2d_sp, X4(2, 9, 8, 3), {5, 3, 2, 3}, PN_FLOAT32, F, F | BD | BF},
    {"conv2d same (input grad forward)", c_conv2d_same, X4(2, 6, 7, 4), {3, 3, 3, 4}, PN_FLOAT32, F, F | BF},
    {"conv2d groups", c_conv2d_groups, X4(2, 8, 7, 6), {4, 3, 3, 3}, PN_FLOAT32, F, F | BD | BF},
    {"conv2d f64", c_conv2d_sp, X4(2, 9, 8, 3), {5, 3, 2, 3}, PN_FLOAT64, F, F64_VJP},
    {"conv2d f16", c_conv2d_sp, X4(2, 9, 8, 3), {5, 3, 2, 3}, PN_FLOAT16, F, F | BD | BF},
    {"conv2d bf16", c_conv2d_groups, X4(2, 8, 7, 6), {4, 3, 3, 3}, PN_BFLOAT16, F, F | BD | BF},
    {"conv1d", c_conv1d, 3, {2, 15, 3}, {4, 3, 3}, PN_FLOAT32, F, F | BD | BF},
    {"conv3d", c_conv3d, 5, {2, 4, 5, 6, 2}, {3, 2, 3, 2, 2}, PN_FLOAT32, F, F | BD | BF},
    {"conv_transpose2d", c_conv_t2d, X4(2, 5, 4, 3), {4, 3, 3, 3}, PN_FLOAT32, BD, BD | F},
    {"conv_transpose2d groups", c_conv_t2d_groups, X4(2, 4, 5, 4), {6, 2, 3, 2}, PN_FLOAT32, BD, BD | F},
    {"conv_transpose1d", c_conv_t1d, 3, {2, 6, 3}, {2, 4, 3}, PN_FLOAT32, BD, BD | F},
    {"conv_general flip", c_flip, X4(2, 6, 7, 3), {4, 3, 2, 3}, PN_FLOAT32, F, F | BD | BF},
    {"conv_general asymmetric padding", c_asym, X4(2, 6, 5, 3), {4, 3, 2, 3}, PN_FLOAT32, 0, 0},
    {"conv_general input dilation + stride", c_idil_stride, X4(2, 5, 4, 3), {4, 3, 3, 3}, PN_FLOAT32, 0, 0},
};

typedef struct run_ctx {
    conv_fn fn;
} run_ctx;

static int call_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    out[0] = ((run_ctx *)ctx)->fn(in);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* fn on device t: the output (and with cot, the gradients of both inputs), evaluated. */
static pn_array *run_on(pn_device_type t, conv_fn fn, pn_array *const *x, pn_array *cot, pn_array **grads)
{
    if (pn_stream_push(pn_default_stream((pn_device){.type = t, .index = 0}))) return NULL;
    pn_array *y = NULL;
    if (cot) {
        run_ctx ctx = {fn};
        pn_closure *f = pn_closure_new(call_fn, &ctx, NULL);
        int nout = 0;
        pn_array *outs[1] = {NULL};
        if (f && pn_vjp(f, 2, x, 1, &cot, &nout, outs, grads) == 0) y = outs[0];
        pn_closure_release(f);
    } else {
        y = fn(x);
    }
    pn_stream_pop();
    if (y && pn_eval(&y, 1)) y = NULL;
    if (y && cot && pn_eval(grads, 2)) y = NULL;
    return y;
}

/* a and b agree within tol of b's scale (max |b|, at least 1). */
static void agree(const char *what, const char *name, pn_array *a, pn_array *b, double tol)
{
    if (!a || !b) {
        test_fail(__FILE__, __LINE__, "%s %s: missing result: %s", name, what, pn_last_error_message());
        pn_clear_error();
        return;
    }
    CHECK_MSG(a->size == b->size && a->ndim == b->ndim, "%s %s: shapes differ", name, what);
    double *ad = test_to_f64(a), *bd = test_to_f64(b);
    if (ad && bd && a->size == b->size) {
        double scale = 1.0, err = 0.0;
        for (int64_t i = 0; i < b->size; i++) scale = fmax(scale, fabs(bd[i]));
        for (int64_t i = 0; i < b->size; i++) err = fmax(err, fabs(ad[i] - bd[i]));
        CHECK_MSG(err <= tol * scale, "%s %s: max error %g > %g", name, what, err, tol * scale);
    }
    free(ad), free(bd);
}

static double tol_of(pn_dtype t)
{
    return t == PN_FLOAT64 ? 1e-10 : t == PN_FLOAT32 ? 2e-5 : 2e-2;
}

/* Which counters grew between before and now, as a PNG_CUDNN_* bit mask. */
static int grown(const int64_t *before)
{
    int m = 0;
    for (int op = 0; op < PNG_CUDNN_NOPS; op++)
        if (pnG_cudnn_count(op) > before[op]) m |= 1 << op;
    return m;
}

static void snap(int64_t *c)
{
    for (int op = 0; op < PNG_CUDNN_NOPS; op++) c[op] = pnG_cudnn_count(op);
}

static void run_case(const cudnn_case *c)
{
    pn_scope_push();
    pn_array *x[2] = {test_random_array(c->xs, c->nd, c->dtype, -1, 1),
                      test_random_array(c->ws, c->nd, c->dtype, -1, 1)};
    pn_array *probe = run_on(PN_CPU, c->fn, x, NULL, NULL);
    CHECK_OK(probe);
    if (!probe) {
        pn_scope_pop();
        return;
    }
    pn_array *cot = test_random_array(probe->shape, probe->ndim, c->dtype, -1, 1);
    pn_array *gc[2] = {NULL}, *gg[2] = {NULL}, *gi[2] = {NULL};
    pn_array *yc = run_on(PN_CPU, c->fn, x, cot, gc);
    int64_t before[PNG_CUDNN_NOPS];
#ifdef PONTE_GPU_SIM
    long long sim_before = pnsim_cudnn_calls[0] + pnsim_cudnn_calls[1] + pnsim_cudnn_calls[2];
#endif
    /* forward alone: exactly the expected entry point */
    snap(before);
    pn_array *yf = run_on(PN_GPU, c->fn, x, NULL, NULL);
    CHECK_MSG(grown(before) == c->fwd_ops, "%s: forward used cuDNN ops %#x, expected %#x", c->name,
              grown(before), c->fwd_ops);
    /* forward and gradients: at least the expected ones */
#ifdef PONTE_GPU_SIM
    int64_t first = before[0] + before[1] + before[2]; /* checked against the simulator below */
#endif
    snap(before);
    pn_array *yg = run_on(PN_GPU, c->fn, x, cot, gg);
    CHECK_MSG((grown(before) & c->vjp_ops) == c->vjp_ops, "%s: vjp used cuDNN ops %#x, expected %#x",
              c->name, grown(before), c->vjp_ops);
#ifdef PONTE_GPU_SIM
    /* every counted run went through the simulated cuDNN's entry points */
    long long sim_now = pnsim_cudnn_calls[0] + pnsim_cudnn_calls[1] + pnsim_cudnn_calls[2];
    int64_t ours = 0;
    for (int op = 0; op < PNG_CUDNN_NOPS; op++) ours += pnG_cudnn_count(op);
    CHECK_MSG(sim_now - sim_before == ours - first, "%s: the simulated cuDNN ran %lld times, "
              "cudnn.c counted %lld", c->name, sim_now - sim_before, (long long)(ours - first));
#endif
    /* cuDNN off: the im2col path, no cuDNN call, the same results */
    pnG_cudnn_set_enabled(0);
    snap(before);
    pn_array *yi = run_on(PN_GPU, c->fn, x, cot, gi);
    CHECK_MSG(grown(before) == 0, "%s: cuDNN ran while disabled", c->name);
    pnG_cudnn_set_enabled(-1);
    double tol = tol_of(c->dtype);
    agree("forward vs CPU", c->name, yf, yc, tol);
    agree("forward (vjp) vs CPU", c->name, yg, yc, tol);
    agree("input gradient vs CPU", c->name, gg[0], gc[0], tol);
    agree("weight gradient vs CPU", c->name, gg[1], gc[1], tol);
    agree("forward vs im2col", c->name, yg, yi, tol);
    agree("input gradient vs im2col", c->name, gg[0], gi[0], tol);
    agree("weight gradient vs im2col", c->name, gg[1], gi[1], tol);
    pn_scope_pop();
}

TEST(cudnn_mappings)
{
    if (!pn_is_available((pn_device){.type = PN_GPU, .index = 0})) {
        printf("test_cudnn_conv: skipped, no GPU: %s\n", pn_gpu_unavailable_reason());
        return;
    }
    printf("test_cudnn_conv: %s\n", pnG_cudnn_describe());
    if (!pnG_cudnn_available()) {
        printf("test_cudnn_conv: skipped, cuDNN not available\n");
        return;
    }
    int n = (int)(sizeof CASES / sizeof *CASES);
    for (int i = 0; i < n; i++) {
        int f = test_failures;
        run_case(&CASES[i]);
        if (test_failures > f) printf("  case failed: %s\n", CASES[i].name);
    }
}

/* The weight gradient of a grouped convolution whose input is a non-contiguous view (a
 * transposed array): the backward-filter operands are gathered on the device first. */
static pn_array *c_conv_of_t(pn_array *const *x)
{
    pn_array *xt = pn_swapaxes(x[0], 1, 2);
    return pn_conv2d(xt, x[1], (int[]){1, 2}, (int[]){1, 1}, (int[]){2, 1}, 2);
}

TEST(cudnn_strided_operands)
{
    if (!pn_is_available((pn_device){.type = PN_GPU, .index = 0}) || !pnG_cudnn_available()) return;
    pn_scope_push();
    cudnn_case c = {"conv of a transposed input", c_conv_of_t, X4(2, 7, 9, 4), {6, 2, 3, 2},
                    PN_FLOAT32, F, F | BD | BF};
    run_case(&c);
    pn_scope_pop();
}
#else
TEST(cudnn_mappings) { printf("test_cudnn_conv: skipped, built without the CUDA backend\n"); }
#endif
