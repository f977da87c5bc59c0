/* test_gpu.c — the GPU runtime under the core: availability, unified memory (arrays move
 * between host and device on demand and read back right), device memory statistics, limits
 * and out-of-memory errors, streams ordered across each other and used from several threads.
 * Runs on the simulated GPU in CI and natively in scripts/gpu-check; skips without a GPU. */
#include "core/core.h"
#include "harness.h"

#include <pthread.h>

static const pn_device GPU = {PN_GPU, 0};
static const pn_device CPU = {PN_CPU, 0};

static bool have_gpu(void)
{
    if (pn_is_available(GPU)) return true;
    printf("  (no GPU: %s)\n", pn_gpu_unavailable_reason());
    return false;
}

/* Reference for x * 2 + 1 - x, element by element. */
static void check_affine(pn_array *y, const double *x, int64_t n, const char *what)
{
    double *v = test_to_f64(y);
    if (!v) return;
    for (int64_t i = 0; i < n; i++) {
        double ref = x[i] * 2 + 1 - x[i];
        if (fabs(v[i] - ref) > 1e-5 * (1 + fabs(ref))) {
            test_fail(__FILE__, __LINE__, "%s: element %lld is %g, expected %g", what,
                      (long long)i, v[i], ref);
            break;
        }
    }
    free(v);
}

TEST(availability_and_reason)
{
    bool avail = pn_gpu_available();
    const char *reason = pn_gpu_unavailable_reason();
    CHECK(reason != NULL);
    if (avail)
        CHECK_MSG(reason[0] == 0, "available, but the reason is '%s'", reason);
    else
        CHECK_MSG(reason[0] != 0, "unavailable without a reason");
    CHECK(pn_is_available(GPU) == avail);
}

TEST(arrays_move_between_host_and_device)
{
    if (!have_gpu()) return;
    pn_scope_push();
    int64_t shape[2] = {37, 129};
    pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -3, 3);
    double *xv = test_to_f64(x);
    /* host leaf -> GPU op -> CPU op -> GPU op, reading back in between */
    pn_stream_push(pn_default_stream(GPU));
    pn_array *a = pn_add(pn_multiply(x, pn_weak_float(2)), pn_weak_float(1));
    pn_stream_pop();
    CHECK_OK(a);
    CHECK(pn_eval(&a, 1) == 0);
    pn_stream_push(pn_default_stream(CPU));
    pn_array *b = pn_subtract(a, x);
    pn_stream_pop();
    check_affine(b, xv, 37 * 129, "gpu then cpu");
    pn_stream_push(pn_default_stream(GPU));
    pn_array *c = pn_multiply(pn_add(b, pn_weak_float(0)), pn_weak_float(1));
    pn_stream_pop();
    check_affine(c, xv, 37 * 129, "gpu, cpu, gpu");
    /* a transposed view of a device result, read on the host */
    pn_stream_push(pn_default_stream(GPU));
    pn_array *t = pn_transpose(c, NULL, 0);
    pn_stream_pop();
    double *tv = test_to_f64(t);
    if (tv) {
        double ref = xv[5 * 129 + 7] + 1;
        CHECK_MSG(fabs(tv[7 * 37 + 5] - ref) < 1e-5 * (1 + fabs(ref)), "transposed read %g vs %g",
                  tv[7 * 37 + 5], ref);
    }
    free(tv);
    CHECK(fabs(pn_item(pn_sum(c, NULL, 0, false)) - pn_item(pn_sum(b, NULL, 0, false))) < 1e-2);
    free(xv);
    pn_scope_pop();
}

TEST(device_memory_statistics_and_limits)
{
    if (!have_gpu()) return;
    pn_scope_push();
    int64_t n = test_quick() ? 1 << 16 : 1 << 20;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -1, 1);
    CHECK(pn_eval(&x, 1) == 0);
    size_t before = pn_get_active_memory();
    pn_stream_push(pn_default_stream(GPU));
    pn_array *y = pn_exp(x);
    pn_stream_pop();
    CHECK(pn_eval(&y, 1) == 0);
    size_t after = pn_get_active_memory();
    /* the device holds y and the migrated copy of x */
    CHECK_MSG(after >= before + 2 * (size_t)n * 4, "active %zu -> %zu", before, after);
    CHECK(pn_get_peak_memory() >= after);
    pn_release(y);
    CHECK_MSG(pn_get_active_memory() <= after - (size_t)n * 4, "y's device memory not released");

    /* a limit below what an op needs (the device already holds more than it): out of memory,
     * then it works again */
    size_t old = pn_set_memory_limit((size_t)n * 4 / 2);
    pn_stream_push(pn_default_stream(GPU));
    pn_array *z = pn_sin(x);
    pn_stream_pop();
    pn_clear_error();
    CHECK(pn_eval(&z, 1) != 0);
    CHECK_MSG(pn_last_error() == PN_ERR_OUT_OF_MEMORY, "error kind %d: %s", (int)pn_last_error(),
              pn_last_error_message());
    pn_clear_error();
    pn_set_memory_limit(old);
    pn_stream_push(pn_default_stream(GPU));
    pn_array *w = pn_sin(x);
    pn_stream_pop();
    CHECK(pn_eval(&w, 1) == 0);
    double *xv = test_to_f64(x), *wv = test_to_f64(w);
    if (xv && wv) CHECK(fabs(wv[n - 1] - sin(xv[n - 1])) < 1e-5);
    free(xv);
    free(wv);
    pn_clear_cache();
    pn_scope_pop();
}

TEST(streams_order_across_each_other)
{
    if (!have_gpu()) return;
    pn_scope_push();
    pn_stream s1 = pn_new_stream(GPU), s2 = pn_new_stream(GPU);
    int64_t shape[2] = {64, 65};
    pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x);
    pn_stream_push(s1);
    pn_array *a = x;
    for (int i = 0; i < 20; i++) a = pn_add(a, pn_weak_float(0.5));
    pn_stream_pop();
    pn_stream_push(s2);
    pn_array *b = pn_multiply(a, pn_weak_float(2)); /* waits for s1's chain */
    pn_stream_pop();
    CHECK(pn_eval(&b, 1) == 0);
    CHECK(pn_synchronize(s1) == 0 && pn_synchronize(s2) == 0);
    double *bv = test_to_f64(b);
    if (bv && xv)
        for (int64_t i = 0; i < 64 * 65; i += 97)
            CHECK_MSG(fabs(bv[i] - 2 * (xv[i] + 10)) < 1e-4, "element %lld", (long long)i);
    free(bv);
    free(xv);
    pn_scope_pop();
}

typedef struct worker {
    int id;
    int failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    pn_stream s = pn_new_stream(GPU);
    for (int round = 0; round < 5; round++) {
        pn_scope_push();
        int64_t n = 4096 + w->id;
        pn_array *x = pn_arange(0, (double)n, 1, PN_FLOAT32);
        pn_stream_push(s);
        pn_array *y = pn_sum(pn_multiply(x, pn_weak_float(w->id + 1)), NULL, 0, false);
        pn_stream_pop();
        double v = pn_item(y), ref = (double)(w->id + 1) * (double)n * (double)(n - 1) / 2;
        if (!(fabs(v - ref) <= 1e-5 * ref)) w->failures++;
        pn_scope_pop();
    }
    return NULL;
}

TEST(streams_from_several_threads)
{
    if (!have_gpu()) return;
    enum { N = 4 };
    pthread_t t[N];
    worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){i, 0};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_MSG(w[i].failures == 0, "thread %d: %d wrong sums", i, w[i].failures);
    }
}

TEST(donation_keeps_device_memory_flat)
{
    if (!have_gpu()) return;
    pn_scope_push();
    int64_t n = 1 << 16;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -1, 1);
    CHECK(pn_eval(&x, 1) == 0);
    pn_stream_push(pn_default_stream(GPU));
    pn_array *a = pn_exp(x);
    pn_stream_pop();
    CHECK(pn_eval(&a, 1) == 0);
    pn_reset_peak_memory();
    size_t base = pn_get_active_memory();
    pn_scope_push();
    pn_stream_push(pn_default_stream(GPU));
    pn_array *y = pn_copy(a);
    for (int i = 0; i < 50; i++) {
        pn_array *next = pn_add(y, pn_weak_float(1));
        pn_release(y);
        y = next;
    }
    pn_stream_pop();
    CHECK(pn_eval(&y, 1) == 0);
    size_t peak = pn_get_peak_memory();
    CHECK_MSG(peak <= base + 4 * (size_t)n * 4 + 65536, "a 50-op chain peaked at %zu over %zu",
              peak - base, (size_t)n * 4);
    pn_scope_pop();
    pn_scope_pop();
}

/* Largest |c - ref| / sum_l |a_il b_lj| over a (m x k) @ b (k x n) product, ref in float64. */
static double product_error(pn_array *c, const double *a, const double *b, int64_t m, int64_t k,
                            int64_t n)
{
    double *cv = test_to_f64(c), worst = 0;
    if (!cv) return INFINITY;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (int64_t l = 0; l < k; l++) {
                ref += a[i * k + l] * b[l * n + j];
                mag += fabs(a[i * k + l] * b[l * n + j]);
            }
            double e = fabs(cv[i * n + j] - ref) / (mag > 0 ? mag : 1);
            if (e > worst) worst = e;
        }
    free(cv);
    return worst;
}

/* float32 products on the GPU go through TF32 when allowed (the default, as MLX) and keep full
 * precision when not; the CPU is unaffected either way. */
TEST(tf32_matmul_when_allowed)
{
    bool was = pn_tf32_enabled();
    pn_scope_push();
    const int64_t m = 48, k = 200, n = 40;
    pn_array *a = test_random_array((int64_t[]){m, k}, 2, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){k, n}, 2, PN_FLOAT32, -1, 1);
    double *av = test_to_f64(a), *bv = test_to_f64(b);
    double err[2][2] = {{0}}; /* [tf32][device] */
    for (int on = 0; on < 2; on++) {
        pn_set_tf32_enabled(on);
        CHECK(pn_tf32_enabled() == (bool)on);
        for (int dev = 0; dev < 2; dev++) {
            if (dev && !have_gpu()) break;
            pn_stream_push(pn_default_stream(dev ? GPU : CPU));
            pn_array *c = pn_matmul(a, b);
            pn_stream_pop();
            CHECK(c && pn_eval(&c, 1) == 0);
            err[on][dev] = c ? product_error(c, av, bv, m, k, n) : INFINITY;
        }
    }
    pn_set_tf32_enabled(was);
    /* float32 rounding of a 200-term sum: well under 1e-5 of the magnitudes */
    CHECK_MSG(err[0][0] < 1e-5 && err[1][0] < 1e-5, "CPU errors %g / %g", err[0][0], err[1][0]);
    if (have_gpu()) {
        CHECK_MSG(err[0][1] < 1e-5, "GPU without TF32: error %g of the magnitudes", err[0][1]);
        /* inputs rounded to 10 mantissa bits: each product within ~2^-10 of its magnitude, and
         * visibly coarser than float32 (the TF32 path really ran) */
        CHECK_MSG(err[1][1] < 2e-3 && err[1][1] > 1e-5,
                  "GPU with TF32: error %g of the magnitudes (expected 1e-5 .. 2e-3)", err[1][1]);
    }
    free(av);
    free(bv);
    pn_scope_pop();
}
