/* test_gpu.c — the GPU runtime under the core: availability, unified memory (arrays move
 * between host and device on demand and read back right), device memory statistics, limits
 * and out-of-memory errors, streams ordered across each other and used from several threads.
 * Runs on the simulated GPU in CI and natively in scripts/gpu-check; skips without a GPU. */
#include "core/core.h"
#include "harness.h"
#ifdef PONTE_HAS_GPU
#include "backend/cpu/ew_ops.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/gpu.h"
#endif

#include <pthread.h>
#include <string.h>

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
#ifdef PONTE_GPU_SIM
    /* a simulated device that is absent (PONTE_SIM_NO_DEVICE) or older than sm_80
     * (PONTE_SIM_ARCH=75 or 70: ctest variants): unavailable, the reason saying why. Over
     * several devices (PONTE_SIM_DEVICES, one architecture each, the last repeating), those
     * older than sm_80 are skipped: the first usable one is gpu:0 */
    const char *none = getenv("PONTE_SIM_NO_DEVICE"), *arch = getenv("PONTE_SIM_ARCH");
    const char *ndev = getenv("PONTE_SIM_DEVICES");
    const int devices = ndev && atoi(ndev) > 1 ? atoi(ndev) : 1;
    /* a launcher's rank (LOCAL_RANK, ctest variants) keeps usable GPU (rank mod usable) alone */
    const char *rank = getenv("LOCAL_RANK");
    int usable_cc[16], usable_ordinal[16], first_cc = 90, usable = 0;
    for (int d = 0; d < devices && d < 16; d++) {
        const int cc = arch && *arch ? atoi(arch) : 90;
        if (d == 0) first_cc = cc;
        if (cc >= 80) usable_cc[usable] = cc, usable_ordinal[usable++] = d;
        if (arch && strchr(arch, ',')) arch = strchr(arch, ',') + 1;
    }
    const int mine = rank && *rank && usable > 1 ? atoi(rank) % usable : 0;
    const int first_usable = usable ? usable_ordinal[mine] : -1, first_usable_cc = usable ? usable_cc[mine] : 0;
    if (rank && *rank && usable > 1) usable = 1;
    char want[64] = "";
    if (none && *none && strcmp(none, "0") != 0) snprintf(want, sizeof want, "no CUDA device");
    else if (!usable) snprintf(want, sizeof want, "compute capability %d.%d;", first_cc / 10, first_cc % 10);
    if (want[0]) CHECK_MSG(!avail && strstr(reason, want), "want '%s' in the reason '%s'", want, reason);
    else CHECK_MSG(avail, "the simulated GPU is unavailable: %s", reason);
    if (!usable && devices == 2) /* the reason covers the other device too */
        CHECK_MSG(strstr(reason, "nor can CUDA device 1"), "'%s'", reason);
    if (avail) {
        CHECK_MSG(pn_device_count(PN_GPU) == usable, "%d GPUs, %d usable", pn_device_count(PN_GPU), usable);
        pn_device_info info;
        char sm[16];
        snprintf(sm, sizeof sm, "sm_%d", first_usable_cc);
        CHECK(pn_get_device_info(GPU, &info) == 0);
        CHECK_MSG(!strcmp(info.architecture, sm), "gpu:0 is %s, want %s (CUDA device %d)",
                  info.architecture, sm, first_usable);
        /* gpu:0's work runs on that CUDA device, and its memory is Ponte's gpu:0 memory */
        pn_scope_push();
        pn_array *a = test_random_array((int64_t[]){257}, 1, PN_FLOAT32, -3, 3);
        pn_stream_push(pn_default_stream(GPU));
        pn_array *y = pn_sum(pn_multiply(a, a), NULL, 0, false);
        pn_stream_pop();
        CHECK_OK(y);
        CHECK(y && pn_eval(&y, 1) == 0);
        CHECK_MSG(y && y->buf && y->buf->device_valid && pnG_pointer_device(y->buf->device) == 0,
                  "the sum is not in gpu:0's memory");
        double *x = test_to_f64(a), want = 0;
        for (int i = 0; x && i < 257; i++) want += x[i] * x[i];
        double *v = y ? test_to_f64(y) : NULL;
        CHECK_MSG(v && fabs(v[0] - want) < 1e-5 * want, "sum of squares %g, want %g", v ? v[0] : 0.0, want);
        CHECK_MSG(pnG_cuda_device(0) == first_usable, "gpu:0 is CUDA device %d, want %d", pnG_cuda_device(0),
                  first_usable);
        free(v);
        free(x);
        pn_scope_pop();
    }
#endif
}

/* The GPU of a launcher's process: its local rank modulo the usable GPUs, the first variable
 * set of the launchers' (torchrun, MLX, Open MPI, MPICH, Slurm, then MLX's global rank);
 * none with one GPU, without a launcher or when turned off. CUDA_VISIBLE_DEVICES listing
 * several GPUs to every rank (CUDA_VISIBLE_DEVICES=2,3 torchrun ...) still gives one each. */
TEST(launcher_ranks_take_a_gpu_each)
{
#ifdef PONTE_HAS_GPU
    static const char *const VARS[] = {"LOCAL_RANK",      "MLX_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                       "MPI_LOCALRANKID", "SLURM_LOCALID",  "MLX_RANK",
                                       "CUDA_VISIBLE_DEVICES", "PONTE_GPU_PER_RANK"};
    enum { NV = sizeof VARS / sizeof *VARS };
    char *saved[NV];
    for (int k = 0; k < NV; k++) {
        const char *v = getenv(VARS[k]);
        saved[k] = v ? strdup(v) : NULL;
        unsetenv(VARS[k]);
    }
    CHECK(pnG_rank_gpu(8) == -1); /* no launcher */
    for (int k = 0; k < 6; k++) { /* each launcher's variable alone */
        setenv(VARS[k], "11", 1);
        CHECK_MSG(pnG_rank_gpu(8) == 3 && pnG_rank_gpu(4) == 3 && pnG_rank_gpu(11) == 0, "%s", VARS[k]);
        CHECK(pnG_rank_gpu(1) == -1 && pnG_rank_gpu(0) == -1);
        unsetenv(VARS[k]);
    }
    setenv("MLX_RANK", "5", 1); /* a local rank wins over the global one */
    setenv("SLURM_LOCALID", "2", 1);
    CHECK(pnG_rank_gpu(4) == 2);
    setenv("LOCAL_RANK", "x1", 1); /* not a number: the next variable */
    CHECK(pnG_rank_gpu(4) == 2);
    setenv("PONTE_GPU_PER_RANK", "0", 1);
    CHECK(pnG_rank_gpu(4) == -1);
    unsetenv("PONTE_GPU_PER_RANK");
    setenv("CUDA_VISIBLE_DEVICES", "2,3", 1);
    CHECK(pnG_rank_gpu(2) == 0);
    for (int k = 0; k < NV; k++) {
        if (saved[k]) setenv(VARS[k], saved[k], 1);
        else unsetenv(VARS[k]);
        free(saved[k]);
    }
#endif
}

/* Row gathers (take along axis 0, as an embedding lookup) on the GPU equal the CPU's, bit for
 * bit: rows of whole 16-byte vectors move as vectors (pnG_index_vectorized_count), the others
 * element by element; negative indices wrap. */
#ifdef PONTE_HAS_GPU
#include "backend/cuda/indexing.h"
#endif
TEST(row_gathers_move_vectors)
{
#ifdef PONTE_HAS_GPU
    if (!have_gpu()) return;
    static const struct {
        pn_dtype t;
        int64_t cols;
        bool vector; /* rows of whole 16-byte vectors */
    } CASES[] = {{PN_FLOAT16, 64, true}, {PN_BFLOAT16, 8, true},  {PN_FLOAT32, 24, true},
                 {PN_FLOAT64, 6, true},  {PN_INT8, 48, true},     {PN_BOOL, 16, true},
                 {PN_FLOAT16, 7, false}, {PN_FLOAT32, 3, false},  {PN_FLOAT64, 1, false},
                 {PN_FLOAT32, 1000, true}};
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        pn_scope_push();
        const int64_t T = 37, K = 50;
        pn_array *table = test_random_array((int64_t[]){T, CASES[c].cols}, 2, CASES[c].t, -4, 4);
        int32_t idx[50];
        for (int64_t k = 0; k < K; k++) idx[k] = (int32_t)(test_rand_u64() % (2 * T)) - (int32_t)T;
        pn_array *ix = pn_array_from_data(idx, (int64_t[]){5, 10}, 2, PN_INT32);
        pn_stream_push(pn_default_stream(CPU));
        pn_array *want = pn_take(table, ix, 0);
        pn_stream_pop();
        int64_t before = pnG_index_vectorized_count();
        pn_stream_push(pn_default_stream(GPU));
        pn_array *got = pn_take(table, ix, 0);
        pn_stream_pop();
        CHECK_OK(got);
        CHECK(pn_eval(&got, 1) == 0);
        CHECK_MSG((pnG_index_vectorized_count() > before) == CASES[c].vector, "%s x %lld: %s",
                  pn_dtype_name(CASES[c].t), (long long)CASES[c].cols,
                  CASES[c].vector ? "not vectorized" : "vectorized");
        double *w = test_to_f64(want);
        if (w) test_check_values(pn_dtype_name(CASES[c].t), got, want->shape, want->ndim, CASES[c].t, w, 0, 0);
        free(w);
        pn_scope_pop();
    }
#endif
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
#ifdef PONTE_HAS_GPU
    bool graphs = pnG_graphs_set(false); /* a graph segment keeps its buffers to its end */
#endif
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
#ifdef PONTE_HAS_GPU
    pnG_graphs_set(graphs);
#endif
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

/* ───────────────────── GEMM epilogues (backend/cuda/gemm.h) ───────────────────── */
#ifdef PONTE_HAS_GPU
#include "backend/cuda/gemm.h"

/* float64 reference of alpha * a @ b + beta * c over a batch: a (B, M, K), b (B, K, N) or
 * (K, N) when !b_batched, c the addend broadcast to (B, M, N). Largest error relative to the
 * output's scale. */
static double addmm_error(pn_array *y, const double *a, const double *b, const double *c,
                          int64_t B, int64_t M, int64_t K, int64_t N, bool b_batched,
                          double alpha, double beta)
{
    double *v = test_to_f64(y), worst = 0, scale = 1e-30;
    if (!v) return INFINITY;
    double *ref = malloc(sizeof(double) * (size_t)(B * M * N));
    for (int64_t p = 0; p < B; p++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t l = 0; l < K; l++)
                    s += a[(p * M + i) * K + l] * b[((b_batched ? p : 0) * K + l) * N + j];
                double r = alpha * s + beta * c[(p * M + i) * N + j];
                ref[(p * M + i) * N + j] = r;
                if (fabs(r) > scale) scale = fabs(r);
            }
    for (int64_t i = 0; i < B * M * N; i++)
        if (!(fabs(v[i] - ref[i]) / scale <= worst)) worst = fabs(v[i] - ref[i]) / scale;
    free(ref);
    free(v);
    return worst;
}

/* addmm on the GPU with a broadcast row c and beta 1 runs one fused bias epilogue per GEMM
 * call; beta != 1, full / column addends and float64 do not; all agree with float64 math. */
TEST(addmm_bias_epilogue_fused)
{
    if (!have_gpu()) return;
    static const struct {
        pn_dtype dtype;
        int cnd;
        int64_t cshape[3];
        bool b_batched;
        double alpha, beta;
        bool fused;
    } cases[] = {
        {PN_FLOAT32, 1, {6}, false, 1.0, 1.0, true},
        {PN_FLOAT32, 2, {1, 6}, true, -0.75, 1.0, true},
        {PN_FLOAT16, 1, {6}, false, 0.5, 1.0, true},
        {PN_BFLOAT16, 3, {1, 1, 6}, true, 1.0, 1.0, true},
        {PN_FLOAT32, 1, {6}, false, 1.0, 2.0, false},     /* beta != 1 */
        {PN_FLOAT32, 2, {5, 6}, false, 1.0, 1.0, false},  /* full matrix */
        {PN_FLOAT32, 2, {5, 1}, true, 1.0, 1.0, false},   /* one value per row */
        {PN_FLOAT64, 1, {6}, false, 1.0, 1.0, false},     /* no float64 bias */
    };
    const int64_t B = 3, M = 5, K = 11, N = 6;
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        pn_scope_push();
        pn_dtype dt = cases[t].dtype;
        pn_array *a = test_random_array((int64_t[]){B, M, K}, 3, dt, -1, 1);
        pn_array *b = cases[t].b_batched ? test_random_array((int64_t[]){B, K, N}, 3, dt, -1, 1)
                                         : test_random_array((int64_t[]){K, N}, 2, dt, -1, 1);
        pn_array *c = test_random_array(cases[t].cshape, cases[t].cnd, dt, -1, 1);
        pn_array *cfull = pn_broadcast_to(c, (int64_t[]){B, M, N}, 3);
        double *av = test_to_f64(a), *bv = test_to_f64(b), *cv = test_to_f64(cfull);
        int64_t before = pnG_gemm_epilogue_count();
        pn_stream_push(pn_default_stream(GPU));
        pn_array *y = pn_addmm(c, a, b, cases[t].alpha, cases[t].beta);
        pn_stream_pop();
        CHECK(y && pn_eval(&y, 1) == 0);
        int64_t fused = pnG_gemm_epilogue_count() - before;
        CHECK_MSG(cases[t].fused ? fused >= 1 : fused == 0, "case %zu (%s): %lld fused GEMMs", t,
                  pn_dtype_name(dt), (long long)fused);
        double tol = dt == PN_FLOAT64 ? 1e-12 : dt == PN_FLOAT32 ? 1e-5 : 1e-2;
        double err = y ? addmm_error(y, av, bv, cv, B, M, K, N, cases[t].b_batched,
                                     cases[t].alpha, cases[t].beta)
                       : INFINITY;
        CHECK_MSG(err < tol, "case %zu (%s): error %g of the output's scale", t,
                  pn_dtype_name(dt), err);
        free(av);
        free(bv);
        free(cv);
        pn_scope_pop();
    }
}

/* pnG_gemm_ex's epilogues on raw device memory: bias added per output column, then ReLU or
 * GELU (tanh form), against float64 math; dtypes without a fused bias are refused. */
TEST(gemm_epilogues_bias_relu_gelu)
{
    if (!have_gpu()) return;
    const int64_t M = 5, K = 9, N = 7;
    const int stream = pn_default_stream(GPU).index;
    float a[5 * 9], b[9 * 7], bias[7], out[5 * 7];
    uint32_t seed = 12345;
    for (int i = 0; i < M * K; i++) a[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int i = 0; i < N; i++) bias[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    void *da = pnG_malloc(sizeof a, stream), *db = pnG_malloc(sizeof b, stream);
    void *dbias = pnG_malloc(sizeof bias, stream), *dout = pnG_malloc(sizeof out, stream);
    CHECK(da && db && dbias && dout);
    if (!da || !db || !dbias || !dout) return;
    CHECK(pnG_copy_to_device(da, a, sizeof a, stream) == 0);
    CHECK(pnG_copy_to_device(db, b, sizeof b, stream) == 0);
    CHECK(pnG_copy_to_device(dbias, bias, sizeof bias, stream) == 0);
    const pnG_epilogue epis[3] = {PNG_EPI_BIAS, PNG_EPI_RELU_BIAS, PNG_EPI_GELU_BIAS};
    for (int e = 0; e < 3; e++) {
        for (int transA = 0; transA < 2; transA++) {
            /* transA: a read as the (K, M) matrix stored row-major, i.e. op(A) = a^T viewed as
             * (M, K) with column stride M: element (i, l) at a[l * M + i] */
            CHECK(pnG_gemm_ex(PN_FLOAT32, transA, false, M, N, K, 1.5, da, transA ? M : K, 0, db, N,
                              0, 0.0, dout, N, 0, 1, epis[e], dbias, stream) == 0);
            CHECK(pnG_copy_to_host(out, dout, sizeof out, stream) == 0);
            CHECK(pnG_synchronize(stream) == 0);
            double worst = 0, worst_erf = 0; /* against the tanh form; the erf form: a hint */
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t l = 0; l < K; l++)
                        s += (double)(transA ? a[l * M + i] : a[i * K + l]) * b[l * N + j];
                    double x = 1.5 * s + bias[j], x_erf = x;
                    if (epis[e] == PNG_EPI_RELU_BIAS) x = x_erf = x > 0 ? x : 0;
                    if (epis[e] == PNG_EPI_GELU_BIAS) {
                        x_erf = 0.5 * x * (1 + erf(x / sqrt(2.0)));
                        x = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
                    }
                    double err = fabs(out[i * N + j] - x) / (1 + fabs(x));
                    double err_erf = fabs(out[i * N + j] - x_erf) / (1 + fabs(x_erf));
                    if (err > worst) worst = err;
                    if (err_erf > worst_erf) worst_erf = err_erf;
                }
            /* the simulator is exact; a device's GELU may use a fast tanh (~1e-4) */
            double tol = pnG_simulated() || epis[e] != PNG_EPI_GELU_BIAS ? 1e-5 : 2e-4;
            CHECK_MSG(worst < tol, "epilogue %d transA %d: error %g of the tanh GELU form "
                      "(%g of the erf form)", e, transA, worst, worst_erf);
        }
    }
    CHECK(pnG_gemm_ex(PN_FLOAT64, false, false, M, N, K, 1.0, da, K, 0, db, N, 0, 0.0, dout, N, 0,
                      1, PNG_EPI_BIAS, dbias, stream) == PNG_UNSUPPORTED);
    CHECK(pnG_gemm_ex(PN_FLOAT32, false, false, M, N, K, 1.0, da, K, 0, db, N, 0, 0.0, dout, N, 0,
                      1, PNG_EPI_BIAS, (const char *)dbias + 4, stream) == PNG_UNSUPPORTED);
    pnG_free(da, sizeof a, stream);
    pnG_free(db, sizeof b, stream);
    pnG_free(dbias, sizeof bias, stream);
    pnG_free(dout, sizeof out, stream);
}

/* Autotuning of the GEMM plans: with tuning on, a plan's first call times the heuristic's
 * algorithms and keeps the fastest, and every algorithm's product is right. On the simulated
 * GPU, PONTE_SIM_LT_PASSES makes the heuristic's first and third algorithms thirty times
 * slower than the second (a margin a loaded machine's timing noise does not cross; three
 * times was crossed under ctest -j 2), so the tuning must pick index 1; with tuning off,
 * nothing is timed. */
#ifdef PONTE_GPU_SIM
extern long long pnsim_lt_algo_calls[3]; /* sim/cublaslt_sim.cpp: cublasLtMatmul calls per algorithm */
#endif
TEST(gemm_tuning_keeps_the_fastest_algorithm)
{
    if (!have_gpu()) return;
    const int64_t M = 48, K = 40, N = 56;
    const int stream = pn_default_stream(GPU).index;
    float a[48 * 40], b[40 * 56], c0[48 * 56], out[48 * 56];
    uint32_t seed = 777;
    for (int i = 0; i < M * K; i++) a[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int i = 0; i < M * N; i++) c0[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    void *da = pnG_malloc(sizeof a, stream), *db = pnG_malloc(sizeof b, stream);
    void *dc = pnG_malloc(sizeof out, stream);
    CHECK(da && db && dc);
    if (!da || !db || !dc) return;
    CHECK(pnG_copy_to_device(da, a, sizeof a, stream) == 0);
    CHECK(pnG_copy_to_device(db, b, sizeof b, stream) == 0);
    const bool sim = pnG_simulated();
    if (sim) setenv("PONTE_SIM_LT_PASSES", "30,1,30", 1);
    for (int on = 1; on >= 0; on--) {
        pnG_gemm_set_tuning(on, 0.0); /* every shape */
        int pick = -1;
        const int64_t before = pnG_gemm_tuned_count(NULL);
        /* C = 0.5 A B + 0.25 C: C is read, and must be read only once however many runs the
         * tuning times */
        CHECK(pnG_copy_to_device(dc, c0, sizeof c0, stream) == 0);
        CHECK(pnG_gemm(PN_FLOAT32, false, false, M, N, K, 0.5, da, K, 0, db, N, 0, 0.25, dc, N, 0,
                       1, stream) == 0);
        CHECK(pnG_copy_to_host(out, dc, sizeof out, stream) == 0);
        CHECK(pnG_synchronize(stream) == 0);
        const int64_t tuned = pnG_gemm_tuned_count(&pick) - before;
        CHECK_MSG(tuned == on, "tuning %d: %lld plans tuned", on, (long long)tuned);
        if (on && sim) CHECK_MSG(pick == 1, "the tuning chose algorithm %d, not the fastest (1)", pick);
        double worst = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t l = 0; l < K; l++) s += (double)a[i * K + l] * b[l * N + j];
                double ref = 0.5 * s + 0.25 * c0[i * N + j];
                double err = fabs(out[i * N + j] - ref) / (1 + fabs(ref));
                if (err > worst) worst = err;
            }
        CHECK_MSG(worst < 1e-5, "tuning %d: error %g", on, worst);
#ifdef PONTE_GPU_SIM
        /* the plan's later calls run the algorithm chosen: 1 tuned, the heuristic's first not */
        long long calls[3];
        memcpy(calls, pnsim_lt_algo_calls, sizeof calls);
        CHECK(pnG_gemm(PN_FLOAT32, false, false, M, N, K, 1.0, da, K, 0, db, N, 0, 0.0, dc, N, 0,
                       1, stream) == 0);
        CHECK(pnG_synchronize(stream) == 0);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(pnsim_lt_algo_calls[i] - calls[i] == (i == (on ? 1 : 0)),
                      "tuning %d: algorithm %d ran %lld times", on, i,
                      pnsim_lt_algo_calls[i] - calls[i]);
#endif
    }
    if (sim) unsetenv("PONTE_SIM_LT_PASSES");
    pnG_gemm_set_tuning(false, 1e10);
    pnG_free(da, sizeof a, stream);
    pnG_free(db, sizeof b, stream);
    pnG_free(dc, sizeof out, stream);
}
#endif /* PONTE_HAS_GPU */

/* ───────────────────── pinned staging of host <-> device copies ───────────────────── */
#ifdef PONTE_HAS_GPU

/* Round trips host -> device -> host of sizes around the staging chunk, from and to unaligned
 * offsets, several copies queued back to back (buffers reused while in flight): every byte
 * comes back, the source is reusable as soon as pnG_copy_to_device returns. */
TEST(copies_round_trip_through_staging)
{
    if (!have_gpu()) return;
    const int stream = pn_default_stream(GPU).index;
    size_t chunk = pnG_staging_chunk_bytes();
    size_t c = chunk ? chunk : (size_t)8 << 20;
    const size_t sizes[] = {0, 1, 4097, (256 << 10) - 1, 256 << 10, c - 1, c, c + 1, 3 * c + 7};
    const size_t most = 5 * c + 16;
    unsigned char *src = malloc(most), *back = malloc(most);
    void *dev = pnG_malloc(most, stream);
    CHECK(src && back && dev);
    if (!src || !back || !dev) {
        free(src);
        free(back);
        return;
    }
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t n = sizes[t], so = t % 4, dof = (t * 3) % 8, bo = (t + 1) % 5;
        for (size_t i = 0; i < n; i++) src[so + i] = (unsigned char)(i * 131u + t * 7u + 1u);
        CHECK(pnG_copy_to_device((char *)dev + dof, src + so, n, stream) == 0);
        memset(src + so, 0xee, n); /* reusable at once: the device keeps the old bytes */
        memset(back, 0, most);
        CHECK(pnG_copy_to_host(back + bo, (char *)dev + dof, n, stream) == 0);
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++)
            if (back[bo + i] != (unsigned char)(i * 131u + t * 7u + 1u)) bad = i;
        CHECK_MSG(bad == n, "size %zu (src +%zu, device +%zu, dst +%zu): byte %zu differs", n, so,
                  dof, bo, bad);
        CHECK_MSG(bo == 0 || back[bo - 1] == 0, "size %zu: wrote before the destination", n);
        CHECK_MSG(back[bo + n] == 0, "size %zu: wrote past the destination", n);
    }
    /* three copies into adjacent ranges queued without waiting, then one read of all */
    size_t part = c + c / 2;
    if (3 * part <= most) {
        for (int k = 0; k < 3; k++) {
            memset(src, 0x11 * (k + 1), part);
            CHECK(pnG_copy_to_device((char *)dev + k * part, src, part, stream) == 0);
        }
        CHECK(pnG_copy_to_host(back, dev, 3 * part, stream) == 0);
        size_t bad = 3 * part;
        for (size_t i = 0; i < 3 * part && bad == 3 * part; i++)
            if (back[i] != (unsigned char)(0x11 * (i / part + 1))) bad = i;
        CHECK_MSG(bad == 3 * part, "queued copies: byte %zu differs", bad);
    }
    pnG_free(dev, most, stream);
    free(src);
    free(back);
}
/* CUDA graphs (pnG_capture_begin / end, pnG_graph_launch): Ponte's add kernel queued five
 * times in place while capturing is recorded, not run; each launch of the graph adds y five
 * times more (checked against float64); waiting for the stream while capturing makes the
 * capture fail, and its recorded work never runs. */
TEST(graphs_replay_captured_kernels)
{
    if (!have_gpu()) return;
    enum { N = 1000, ADDS = 5, LAUNCHES = 3 };
    const int stream = pn_default_stream(GPU).index;
    float x0[N], y[N], back[N];
    for (int i = 0; i < N; i++) x0[i] = (float)test_uniform(-2, 2), y[i] = (float)test_uniform(-1, 1);
    float *dx = pnG_malloc(sizeof x0, stream), *dy = pnG_malloc(sizeof y, stream);
    CHECK(dx && dy);
    if (!dx || !dy) return;
    CHECK(pnG_copy_to_device(dx, x0, sizeof x0, stream) == 0);
    CHECK(pnG_copy_to_device(dy, y, sizeof y, stream) == 0);
    CHECK(pnG_synchronize(stream) == 0);
    pnK_ew_params prm = {.op = PNK_B_ADD};
    pnG_ew_args a = {.n = N, .out = dx, .in = {dx, dy}, .flat = true, .stream = stream};
    CHECK(pnG_capture_begin(stream) == 0);
    for (int k = 0; k < ADDS; k++) CHECK(pnG_ew_binary(PNK_B_ADD, &prm, PN_FLOAT32, &a) == 0);
    pnG_graph *g = pnG_capture_end(stream);
    CHECK_OK(g);
    CHECK(pnG_copy_to_host(back, dx, sizeof back, stream) == 0);
    CHECK_MSG(!memcmp(back, x0, sizeof back), "the captured adds ran at the capture");
    for (int l = 1; g && l <= LAUNCHES; l++) {
        CHECK(pnG_graph_launch(g, stream) == 0);
        CHECK(pnG_copy_to_host(back, dx, sizeof back, stream) == 0);
        int bad = -1;
        for (int i = 0; i < N && bad < 0; i++) {
            const double want = (double)x0[i] + (double)l * ADDS * y[i];
            if (fabs(back[i] - want) > 1e-5 * (1 + fabs(want))) bad = i;
        }
        CHECK_MSG(bad < 0, "launch %d: element %d is %g", l, bad, bad < 0 ? 0.0 : (double)back[bad]);
    }
    pnG_graph_free(g);
    CHECK(pnG_graph_launch(NULL, stream) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    /* waiting for the capturing stream: refused, the capture fails, nothing recorded runs */
    memcpy(x0, back, sizeof back);
    CHECK(pnG_capture_begin(stream) == 0);
    CHECK(pnG_ew_binary(PNK_B_ADD, &prm, PN_FLOAT32, &a) == 0);
    CHECK(pnG_synchronize(stream) == -1);
    pn_clear_error();
    g = pnG_capture_end(stream);
    CHECK(g == NULL && pn_last_error() == PN_ERR_BACKEND);
    pn_clear_error();
    CHECK(pnG_copy_to_host(back, dx, sizeof back, stream) == 0);
    CHECK_MSG(!memcmp(back, x0, sizeof back), "work of a failed capture ran");
    pnG_free(dx, sizeof x0, stream);
    pnG_free(dy, sizeof y, stream);
    pn_clear_error();
}
/* The network graph_segments_replay evaluates: 3 softmax(h) - mean(h) with h = tanh(x w + b),
 * over the rows of h. */
static pn_array *segment_net(pn_array *x, pn_array *w, pn_array *b)
{
    const int last = 1;
    pn_array *h = pn_tanh(pn_add(pn_matmul(x, w), b));
    return pn_subtract(pn_multiply(pn_softmax(h, &last, 1, false), pn_weak_float(3)),
                       pn_mean(h, &last, 1, true));
}

/* segment_net in float64: ref (m x n) from x (m x k), w (k x n), b (n). */
static void segment_net_ref(const double *x, const double *w, const double *b, int64_t m,
                            int64_t k, int64_t n, double *ref)
{
    for (int64_t i = 0; i < m; i++) {
        double *h = ref + i * n, mean = 0, mx = -INFINITY, z = 0;
        for (int64_t j = 0; j < n; j++) {
            double acc = b[j];
            for (int64_t l = 0; l < k; l++) acc += x[i * k + l] * w[l * n + j];
            h[j] = tanh(acc);
            mean += h[j] / (double)n;
            mx = fmax(mx, h[j]);
        }
        for (int64_t j = 0; j < n; j++) z += exp(h[j] - mx);
        for (int64_t j = 0; j < n; j++) h[j] = 3 * exp(h[j] - mx) / z - mean;
    }
}

/* What graph segments did since `before`. */
static pnG_segment_stats segments_since(const pnG_segment_stats *before)
{
    pnG_segment_stats d;
    pnG_segment_counts(&d);
    d.launched -= before->launched, d.instantiated -= before->instantiated;
    d.updated -= before->updated, d.run_again -= before->run_again;
    return d;
}

/* Evaluates segment_net on a new random x of m rows (w: k x n, b: n, wv and bv their float64
 * values) and checks it against float64; returns what graph segments did meanwhile. */
static pnG_segment_stats eval_segment_net(pn_array *w, pn_array *b, const double *wv,
                                          const double *bv, int64_t m, int64_t k, int64_t n,
                                          const char *what)
{
    pnG_segment_stats before;
    pnG_segment_counts(&before);
    pn_scope_push();
    const int64_t xshape[2] = {m, k};
    pn_array *x = test_random_array(xshape, 2, PN_FLOAT32, -1, 1);
    CHECK(pn_eval(&x, 1) == 0);
    pn_array *y = segment_net(x, w, b);
    CHECK(pn_eval(&y, 1) == 0);
    pnG_segment_stats d = segments_since(&before);
    double *xv = test_to_f64(x), *yv = test_to_f64(y);
    double *ref = malloc((size_t)(m * n) * sizeof *ref);
    if (xv && yv && ref) {
        segment_net_ref(xv, wv, bv, m, k, n, ref);
        int64_t bad = -1;
        for (int64_t i = 0; i < m * n && bad < 0; i++)
            if (fabs(yv[i] - ref[i]) > 2e-3 * (1 + fabs(ref[i]))) bad = i;
        CHECK_MSG(bad < 0, "%s: element %lld is %g, expected %g", what, (long long)bad,
                  bad < 0 ? 0 : yv[bad], bad < 0 ? 0 : ref[bad]);
    }
    free(xv), free(yv), free(ref);
    pn_scope_pop();
    return d;
}

/* Graph segments of eval (PONTE_GPU_GRAPHS): a small network evaluated three times on new
 * inputs is one graph each time (instantiated once, then updated with the new buffers) and
 * matches float64; another batch size makes another graph. GEMM tuning waits for the host at
 * a shape's first call: that capture breaks, the segment up to the GEMM runs again directly
 * and right (the nodes after it make a segment of their own), and the next call records all. The solvers read their status back and stay out of segments (the
 * nodes around them still record, none runs again). The frees put off during segments all
 * happen: device memory ends where it was. */
TEST(graph_segments_replay)
{
    if (!have_gpu()) return;
    bool was = pnG_graphs_set(true);
    const int64_t k = 24, n = 40, wshape[2] = {24, 40}, warm_shape[2] = {3, 24};
    pn_scope_push();
    pn_stream_push(pn_default_stream(GPU));
    pn_array *w = test_random_array(wshape, 2, PN_FLOAT32, -0.5, 0.5);
    pn_array *b = test_random_array(&n, 1, PN_FLOAT32, -0.5, 0.5);
    pn_array *warm = segment_net(test_random_array(warm_shape, 2, PN_FLOAT32, -1, 1), w, b);
    CHECK(pn_eval(&warm, 1) == 0);
    double *wv = test_to_f64(w), *bv = test_to_f64(b);
    CHECK(pn_synchronize(pn_default_stream(GPU)) == 0);
    size_t base = pn_get_active_memory();
    for (int round = 0; round < 4 && wv && bv; round++) {
        char what[32];
        snprintf(what, sizeof what, "round %d", round);
        pnG_segment_stats d = eval_segment_net(w, b, wv, bv, round < 3 ? 16 : 9, k, n, what);
        CHECK_MSG(d.launched == 1 && d.run_again == 0, "%s: %lld graphs, %lld run again", what,
                  (long long)d.launched, (long long)d.run_again);
        const int fresh = round == 0 || round == 3;
        CHECK_MSG(d.instantiated == fresh && d.updated == !fresh, "%s: %lld instantiated, %lld updated",
                  what, (long long)d.instantiated, (long long)d.updated);
    }
    pnG_gemm_set_tuning(true, 0);
    for (int round = 0; round < 2 && wv && bv; round++) {
        pnG_segment_stats d = eval_segment_net(w, b, wv, bv, 5, k, n, "tuned");
        if (round == 0) /* the segment up to the GEMM runs again, the nodes after record */
            CHECK_MSG(d.run_again == 1 && d.launched == 1, "tuning: %lld run again, %lld graphs",
                      (long long)d.run_again, (long long)d.launched);
        else
            CHECK_MSG(d.run_again == 0 && d.launched == 1, "tuned: %lld run again, %lld graphs",
                      (long long)d.run_again, (long long)d.launched);
    }
    pnG_gemm_set_tuning(false, 0);
    /* a = r r^T + 6 I (well conditioned): 2 a inv(2 a) + 1 is the identity plus 1 */
    pnG_segment_stats before;
    pnG_segment_counts(&before);
    pn_scope_push();
    const int64_t rshape[2] = {6, 6};
    pn_array *r = test_random_array(rshape, 2, PN_FLOAT32, -1, 1);
    pn_array *a = pn_add(pn_matmul(r, pn_transpose(r, NULL, 0)),
                         pn_multiply(pn_eye(6, 6, 0, PN_FLOAT32), pn_weak_float(6)));
    pn_array *half_inv = pn_linalg_inv(pn_multiply(a, pn_weak_float(2)));
    pn_array *e = pn_add(pn_multiply(pn_matmul(a, half_inv), pn_weak_float(2)), pn_weak_float(1));
    CHECK(pn_eval(&e, 1) == 0);
    pnG_segment_stats d = segments_since(&before);
    CHECK_MSG(d.run_again == 0 && d.launched >= 1, "around the inverse: %lld run again, %lld graphs",
              (long long)d.run_again, (long long)d.launched);
    double *ev = test_to_f64(e);
    for (int i = 0; ev && i < 36; i++)
        CHECK_MSG(fabs(ev[i] - (i % 7 == 0 ? 2 : 1)) < 1e-4, "2 a inv(2 a) + 1 [%d] = %g", i, ev[i]);
    free(ev);
    pn_scope_pop();
    CHECK(pn_synchronize(pn_default_stream(GPU)) == 0);
    CHECK_MSG(pn_get_active_memory() == base, "device memory %zu bytes after, %zu before",
              pn_get_active_memory(), base);
    free(wv), free(bv);
    pn_stream_pop();
    pn_scope_pop();
    pnG_graphs_set(was);
}
typedef struct segment_worker {
    pn_array *w, *b;
    const double *wv, *bv;
} segment_worker;

/* Ten rounds of eval_segment_net (which checks each) on the default GPU stream. */
static void *segment_work(void *arg)
{
    segment_worker *sw = arg;
    pn_stream_push(pn_default_stream(GPU));
    for (int round = 0; round < 10; round++) {
        pn_scope_push();
        eval_segment_net(sw->w, sw->b, sw->wv, sw->bv, 8 + round % 3, 24, 40, "beside");
        pn_scope_pop();
    }
    pn_stream_pop();
    return NULL;
}

/* Two threads evaluate on the one default GPU stream with graph segments on: each thread
 * records on a capture stream of its own, so neither records the other's kernels into its
 * graph nor waits on a stream that records. */
TEST(graph_segments_beside_other_threads)
{
    if (!have_gpu()) return;
    bool was = pnG_graphs_set(true);
    pn_scope_push();
    pn_stream_push(pn_default_stream(GPU));
    const int64_t wshape[2] = {24, 40}, n = 40;
    pn_array *w = test_random_array(wshape, 2, PN_FLOAT32, -0.5, 0.5);
    pn_array *b = test_random_array(&n, 1, PN_FLOAT32, -0.5, 0.5);
    double *wv = test_to_f64(w), *bv = test_to_f64(b);
    pn_stream_pop();
    pnG_segment_stats before;
    pnG_segment_counts(&before);
    enum { N = 2 };
    pthread_t t[N];
    segment_worker sw[N];
    for (int i = 0; i < N && wv && bv; i++) {
        sw[i] = (segment_worker){w, b, wv, bv};
        pthread_create(&t[i], NULL, segment_work, &sw[i]);
    }
    for (int i = 0; i < N && wv && bv; i++) pthread_join(t[i], NULL);
    pnG_segment_stats d = segments_since(&before);
    CHECK_MSG(d.launched >= 2 * 10, "%lld graphs for 20 evaluations", (long long)d.launched);
    free(wv), free(bv);
    pn_scope_pop();
    pnG_graphs_set(was);
}
#endif /* PONTE_HAS_GPU */
