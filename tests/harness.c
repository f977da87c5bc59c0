/* harness.c — the runner behind tests/harness.h: registered cases run in order, each with
 * its own random seed; the process exits non-zero when any check failed, and reports leaks
 * of Ponte memory (active bytes must return to where they were). */
#include "harness.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#ifdef PONTE_GPU_SIM
#include "backend/cuda/gpu.h"
#endif

#define MAX_TESTS 1024

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int ntests;
int test_failures;
static const char *current;
static uint64_t rng_state;

void test_register(const char *name, test_fn fn)
{
    if (ntests < MAX_TESTS) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s (%s:%d): ", current ? current : "?", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    test_failures++;
}

uint64_t test_rand_u64(void)
{ /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double test_uniform(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(test_rand_u64() >> 11) / 9007199254740992.0);
}

double test_normal(void)
{
    double u1 = test_uniform(1e-12, 1), u2 = test_uniform(0, 1);
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

int test_quick(void)
{
    const char *q = getenv("PONTE_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

pn_array *test_random_array(const int64_t *shape, int ndim, pn_dtype dtype, double lo, double hi)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) {
        double x = test_uniform(lo, hi);
        if (dtype == PN_BOOL) x = test_rand_u64() & 1;
        else if (pnC_is_integer(dtype)) x = floor(x);
        v[i] = x;
    }
    if (dtype == PN_COMPLEX64) { /* real parts as above, imaginary parts drawn from the same range */
        float *c = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *c);
        for (int64_t i = 0; c && i < n; i++) c[2 * i] = (float)v[i], c[2 * i + 1] = (float)test_uniform(lo, hi);
        pn_array *z = c ? pn_array_from_data(c, shape, ndim, PN_COMPLEX64) : NULL;
        free(c), free(v);
        return z;
    }
    pn_array *f = pn_array_from_data(v, shape, ndim, PN_FLOAT64);
    free(v);
    if (!f || dtype == PN_FLOAT64) return f;
    /* convert here (not with pn_astype) so the harness does not depend on any op */
    pn_array *a = pnC_new_leaf(dtype, shape, ndim);
    if (a) pnC_convert(pnC_data(f), PN_FLOAT64, pnC_data(a), dtype, n);
    pn_release(f);
    return a;
}

double *test_to_f64(pn_array *a)
{
    if (!a) {
        test_fail(__FILE__, __LINE__, "NULL array: %s", pn_last_error_message());
        return NULL;
    }
    int64_t n = pn_size(a);
    size_t es = pn_itemsize(a);
    char *raw = malloc((size_t)(n > 0 ? n : 1) * es);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!raw || !v || pn_to_host(a, raw, (size_t)n * es)) {
        test_fail(__FILE__, __LINE__, "cannot read array: %s", pn_last_error_message());
        free(raw);
        free(v);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) v[i] = pnC_load_f64(raw + i * (int64_t)es, pn_array_dtype(a));
    free(raw);
    return v;
}

double test_tol(pn_dtype t)
{
    switch (t) {
    case PN_FLOAT16: return 2e-3;
    case PN_BFLOAT16: return 1.6e-2;
    case PN_FLOAT32: case PN_COMPLEX64: return 2e-5;
    case PN_FLOAT64: return 1e-12;
    default: return 0;
    }
}

int test_check_values(const char *what, pn_array *a, const int64_t *shape, int ndim,
                      pn_dtype dtype, const double *ref, double rtol, double atol)
{
    if (!a) {
        test_fail(__FILE__, __LINE__, "%s: NULL result: %s", what, pn_last_error_message());
        return 0;
    }
    if (pn_array_dtype(a) != dtype) {
        test_fail(__FILE__, __LINE__, "%s: dtype %s, expected %s", what,
                  pn_dtype_name(pn_array_dtype(a)), pn_dtype_name(dtype));
        return 0;
    }
    if (pn_ndim(a) != ndim) {
        test_fail(__FILE__, __LINE__, "%s: ndim %d, expected %d", what, pn_ndim(a), ndim);
        return 0;
    }
    for (int i = 0; i < ndim; i++) {
        if (pn_shape(a)[i] != shape[i]) {
            test_fail(__FILE__, __LINE__, "%s: shape[%d] = %lld, expected %lld", what, i,
                      (long long)pn_shape(a)[i], (long long)shape[i]);
            return 0;
        }
    }
    double *v = test_to_f64(a);
    if (!v) return 0;
    int64_t n = pn_size(a);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        double r = ref[i], x = v[i];
        if (isnan(r) || isnan(x)) {
            if (!(isnan(r) && isnan(x))) ok = 0;
        } else if (isinf(r) || isinf(x)) {
            if (r != x) ok = 0;
        } else if (fabs(x - r) > atol + rtol * fabs(r)) {
            ok = 0;
        }
        if (!ok)
            test_fail(__FILE__, __LINE__, "%s: element %lld is %.17g, expected %.17g", what,
                      (long long)i, x, r);
    }
    free(v);
    return ok;
}

static char tmpdir[256];

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
}

const char *test_tmp_path(const char *name)
{
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ponte_test_%d", (int)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cannot make %s", tmpdir);
        atexit(remove_tmpdir);
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int run = 0, failed = 0;
    /* the tests check float32 semantics: TF32 products only where a test turns them on */
    pn_set_tf32_enabled(false);
    for (int i = 0; i < ntests; i++) {
        if (only && strcmp(only, tests[i].name) != 0) continue;
        current = tests[i].name;
        rng_state = 0x1234567ull;
        for (const char *p = current; *p; p++) rng_state = rng_state * 131 + (unsigned char)*p;
        int before = test_failures;
        size_t active = pn_get_active_memory();
        pn_clear_error();
        tests[i].fn();
        if (pn_get_active_memory() != active)
            test_fail(__FILE__, __LINE__, "%zu bytes of array memory still active after the test",
                      pn_get_active_memory() - active);
        if (pn_scope_depth() != 0) test_fail(__FILE__, __LINE__, "unbalanced pn_scope_push/pop");
        printf("%s %s\n", test_failures == before ? "ok  " : "FAIL", current);
        run++;
        failed += test_failures != before;
    }
#ifdef PONTE_GPU_SIM
    /* the process made CUDA contexts only on the GPUs Ponte uses: none on a GPU too old to
     * use, nor on one left to another launcher rank (on hardware each costs device memory) */
    current = "only_used_gpus_got_contexts";
    const int before = test_failures;
    for (int d = 0; d < PNG_MAX_DEVICES; d++) {
        bool used = false;
        for (int k = 0; k < pnG_device_count(); k++) used |= pnG_cuda_device(k) == d;
        if (!used && pnG_sim_context_made(d) == 1)
            test_fail(__FILE__, __LINE__, "CUDA device %d, which Ponte does not use, got a context", d);
    }
    if (test_failures != before) printf("FAIL %s\n", current), run++, failed++;
#endif
    printf("%d passed, %d failed\n", run - failed, failed);
    return test_failures ? 1 : 0;
}
