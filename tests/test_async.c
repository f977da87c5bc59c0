/* test_async.c — pn_async_eval: evaluation really runs on the worker thread while the caller
 * builds and releases graphs, results equal synchronous evaluation, errors surface at the next
 * eval, and handles released mid-job (pending intermediates included) never dangle (the ASan
 * run checks the last). */
#include "harness.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/core.h"

/* ───────────────────────────── a gate primitive ───────────────────────────── */

/* TestGate copies its input once the test opens the gate, so a test can observe the caller's
 * thread while the worker is inside a kernel. It gives up after 10 s with an error (a
 * synchronous pn_async_eval would otherwise hang the test instead of failing it). */
static atomic_int gate_open, gate_entered;

static int gate_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    (void)nd;
    atomic_store(&gate_entered, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!atomic_load(&gate_open)) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10)
            return pn_set_error(PN_ERR_BACKEND, "[TestGate] The gate never opened.");
        struct timespec nap = {0, 100000};
        nanosleep(&nap, NULL);
    }
    if (pnC_alloc_output(out[0])) return -1;
    memcpy(pnC_data(out[0]), pnC_data(in[0]), pn_nbytes(in[0]));
    return 0;
}

static const pnC_primitive gate_prim = {.name = "TestGate", .eval = {[PN_CPU] = gate_eval}};

static pn_array *gate(pn_array *x)
{
    return pnC_make(&gate_prim, NULL, 0, 1, &x, x->dtype, x->shape, x->ndim);
}

static pn_array *cpu_array(const double *v, int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    pn_array *a = pn_array_from_data(f, &n, 1, PN_FLOAT32);
    free(f);
    return a;
}

TEST(async_eval_returns_while_the_worker_computes)
{
    pn_scope_push();
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    int64_t n = 1000;
    double xv[1000], ref[1000];
    for (int i = 0; i < n; i++) xv[i] = test_uniform(-2, 2);
    pn_array *x = cpu_array(xv, n);
    pn_array *two = pn_scalar(2.0, PN_FLOAT32);
    pn_array *y = pn_multiply(gate(x), two);
    atomic_store(&gate_open, 0);
    atomic_store(&gate_entered, 0);
    CHECK(pn_async_eval(&y, 1) == 0);
    /* the gate is closed, so only a worker can be inside it; building more graph works */
    CHECK(pnC_async_busy());
    pn_array *z = pn_add(pn_multiply(x, x), x);
    CHECK_OK(z);
    atomic_store(&gate_open, 1);
    for (int i = 0; i < n; i++) ref[i] = 2 * (double)(float)xv[i];
    test_check_values("async result", y, &n, 1, PN_FLOAT32, ref, 1e-7, 0);
    CHECK(atomic_load(&gate_entered) == 1);
    /* y's data is out before the worker has released the job's roots: the job ends by itself
     * (the wait returns), and nothing is in flight after it */
    pnC_async_wait();
    CHECK(!pnC_async_busy());
    for (int i = 0; i < n; i++) {
        double f = (float)xv[i];
        ref[i] = f * f + f;
    }
    test_check_values("graph built meanwhile", z, &n, 1, PN_FLOAT32, ref, 1e-6, 1e-6);
    pn_stream_pop();
    pn_scope_pop();
}

/* A chain of ops over x in float64 on the host, step k of kind k % 5. */
static double chain_step(int k, double v)
{
    switch (k % 5) {
    case 0: return exp(-fabs(v));
    case 1: return v * 1.5 - 0.25;
    case 2: return sin(v);
    case 3: return v * v;
    default: return v + 0.5;
    }
}

static pn_array *chain_op(int k, pn_array *v)
{
    switch (k % 5) {
    case 0: return pn_exp(pn_negative(pn_abs(v)));
    case 1: return pn_subtract(pn_multiply(v, pn_scalar(1.5, PN_FLOAT32)), pn_scalar(0.25, PN_FLOAT32));
    case 2: return pn_sin(v);
    case 3: return pn_square(v);
    default: return pn_add(v, pn_scalar(0.5, PN_FLOAT32));
    }
}

TEST(async_eval_survives_releases_and_rebuilds_mid_job)
{
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    int64_t n = test_quick() ? 4096 : 1 << 16;
    int rounds = test_quick() ? 8 : 40, steps = 24;
    double *xv = malloc((size_t)n * sizeof *xv), *ref = malloc((size_t)n * sizeof *ref);
    double *ref2 = malloc((size_t)n * sizeof *ref2);
    for (int r = 0; r < rounds; r++) {
        pn_scope_push();
        for (int64_t i = 0; i < n; i++) xv[i] = test_uniform(-3, 3);
        pn_array *x = cpu_array(xv, n);
        pn_array *h[24];
        pn_scope_push();
        pn_array *v = x;
        for (int k = 0; k < steps; k++) h[k] = v = pn_retain(chain_op(k, v));
        pn_scope_pop(); /* only the retained step results stay */
        CHECK(pn_async_eval(&h[steps - 1], 1) == 0);
        /* a second graph over a pending intermediate, then release the intermediates in a
         * random order while the worker runs (some are inputs it has yet to read) */
        int mid = 6 + (int)(test_rand_u64() % 12);
        pn_array *side = pn_multiply(h[mid], h[mid]);
        pn_array *fin = h[steps - 1];
        for (int k = steps - 2; k > 0; k--) {
            int j = (int)(test_rand_u64() % (uint64_t)(k + 1));
            pn_array *t = h[j];
            h[j] = h[k];
            h[k] = t;
        }
        for (int k = 0; k < steps - 1; k++) pn_release(h[k]);
        for (int64_t i = 0; i < n; i++) {
            double f = (float)xv[i];
            for (int k = 0; k < steps; k++) {
                f = chain_step(k, f);
                if (k == mid) ref2[i] = f * f;
            }
            ref[i] = f;
        }
        CHECK(pn_eval(&side, 1) == 0);
        test_check_values("side graph", side, &n, 1, PN_FLOAT32, ref2, 2e-4, 1e-5);
        test_check_values("chain end", fin, &n, 1, PN_FLOAT32, ref, 2e-4, 1e-5);
        pn_release(fin);
        pn_scope_pop();
    }
    free(xv);
    free(ref);
    free(ref2);
    pn_stream_pop();
}

TEST(async_eval_matches_sync_eval)
{
    pn_scope_push();
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    int64_t n = test_quick() ? 2048 : 1 << 15;
    double *xv = malloc((size_t)n * sizeof *xv), *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) xv[i] = test_uniform(-3, 3);
    for (int round = 0; round < 10; round++) {
        pn_scope_push();
        pn_array *x = cpu_array(xv, n), *v = x;
        int steps = 10 + round;
        for (int k = 0; k < steps; k++) v = chain_op(k, v);
        pn_array *s = pn_sum(v, NULL, 0, false);
        pn_array *outs[2] = {v, s};
        CHECK(pn_async_eval(outs, 2) == 0);
        double total = 0;
        for (int64_t i = 0; i < n; i++) {
            double f = (float)xv[i];
            for (int k = 0; k < steps; k++) f = chain_step(k, f);
            ref[i] = f;
            total += f;
        }
        test_check_values("chain", v, &n, 1, PN_FLOAT32, ref, 2e-4, 1e-5);
        CHECK_MSG(fabs(pn_item(s) - total) <= 1e-3 * (fabs(total) + n), "sum %g vs %g",
                  pn_item(s), total);
        pn_scope_pop();
    }
    free(xv);
    free(ref);
    pn_stream_pop();
    pn_scope_pop();
}

TEST(async_eval_error_surfaces_at_the_next_eval)
{
    pn_scope_push();
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    int64_t big = 1 << 22;
    pn_array *x = pn_ones(&big, 1, PN_FLOAT32);
    CHECK(pn_eval(&x, 1) == 0);
    size_t old = pn_set_memory_limit(pn_get_active_memory() + 1024);
    pn_array *y = pn_exp(x); /* needs 16 MiB: over the limit */
    CHECK(pn_async_eval(&y, 1) == 0);
    pn_clear_error();
    CHECK(pn_eval(&y, 1) != 0);
    CHECK_MSG(pn_last_error() == PN_ERR_OUT_OF_MEMORY, "kind %d: %s", (int)pn_last_error(),
              pn_last_error_message());
    pn_clear_error();
    CHECK(!pn_is_evaluated(y));
    pn_set_memory_limit(old);
    CHECK(pn_eval(&y, 1) == 0);
    CHECK(fabs(pn_item(pn_sum(y, NULL, 0, false)) - exp(1.0) * (double)big) < 1e-3 * big);
    /* bad arguments fail at once */
    pn_array *none = NULL;
    pn_clear_error();
    CHECK(pn_async_eval(&none, 1) != 0);
    pn_clear_error();
    CHECK(pn_async_eval(NULL, 2) != 0);
    pn_clear_error();
    pn_stream_pop();
    pn_scope_pop();
}

static int f_async_inside(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx;
    (void)nin;
    pn_array *y = pn_sin(in[0]);
    if (pn_async_eval(&y, 1) == 0) return -1; /* under a trace: refused, as MLX */
    pn_clear_error();
    if (pn_eval(&y, 1)) return -1; /* pn_eval is allowed there */
    out[0] = pn_multiply(y, in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(async_eval_inside_a_transform)
{
    pn_scope_push();
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    pn_closure *f = pn_closure_new(f_async_inside, NULL, NULL);
    int argnums[1] = {0};
    pn_closure *g = pn_grad(f, argnums, 1);
    double xv = 0.7;
    pn_array *x = pn_scalar(xv, PN_FLOAT64);
    pn_array *out[1];
    int nout = 0;
    CHECK(pn_closure_call(g, 1, &x, &nout, out) == 0);
    CHECK_MSG(nout == 1 && fabs(pn_item(out[0]) - (cos(xv) * xv + sin(xv))) < 1e-12,
              "grad %g", nout ? pn_item(out[0]) : NAN);
    pn_closure_release(g);
    pn_closure_release(f);
    pn_stream_pop();
    pn_scope_pop();
}
