/* bench_gpu.c — Ponte's GPU benchmarks (ponte_bench_gpu, run by scripts/gpu-check): each figure
 * times Ponte ops on the GPU through the public API, median of timed repetitions, against a
 * baseline measured in the same run (a device-to-device copy, cuBLASLt through pnG_gemm, a tiny
 * async copy, a plain pageable cudaMemcpy), and prints `bench NAME: VALUE UNIT (ratio R vs BASELINE)`; bench/gpu/bench_torch.py
 * runs the same workloads in PyTorch. --quick shrinks every size so the simulated GPU finishes in
 * seconds (run it there: every figure's result is checked before it is timed); WORDs select
 * figures (`ponte_bench_gpu --quick rms_norm gather`). Figures and method: docs/benchmarks.md,
 * section "GPU". */
#define _GNU_SOURCE
#include "ponte.h"
#include "backend/cpu/ew_ops.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/fused.h"
#include "backend/cuda/gpu.h"
#include "core/core.h" /* pnC_gpu_fallback_count: a figure that fell back to the CPU says so */

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ───────────────────────────── sizes ───────────────────────────── */

/* The workloads: full sizes on a real GPU, --quick sizes for the simulator. */
typedef struct {
    int64_t n;                  /* elements of the add / sum arrays */
    int64_t sm_rows, sm_cols;   /* softmax over the last axis */
    int64_t sgemm_n, bf16_n;    /* square GEMM sizes */
    int64_t batch;              /* images per training step */
    int64_t norm_rows, norm_cols; /* LayerNorm / RMSNorm over the last axis */
    int64_t table_rows, lookups;  /* gather / scatter-add: rows of the table, indices */
    int64_t gather_cols, scatter_cols;
    int64_t attn_batch, attn_heads, attn_len, attn_dim; /* sdpa: (B, H, L, D) bfloat16 */
    int chain;                  /* tiny adds of op_overhead_gpu */
    int warmup, reps;           /* untimed and (at most) timed repetitions per figure */
    double budget;              /* seconds of timed repetitions per figure, at most */
    int64_t qmm_n, qmm_m;       /* quantized matmul: W (n, n), rows of x in the prefill figure */
} sizes;

static const sizes FULL = {(int64_t)1 << 26, 4096, 4096, 4096, 8192, 256, 4096, 4096, 65536,
                           16384, 2048, 1024, 2, 16, 2048, 128, 1000, 5, 50, 3.0, 4096, 512};
static const sizes QUICK = {(int64_t)1 << 16, 64, 1024, 256, 256, 16, 16, 4096, 512, 64, 2048,
                            1024, 1, 2, 128, 64, 1000, 1, 3, 2.0, 256, 32};

static sizes S;
static pn_device GPU = {PN_GPU, 0};
static int STREAM; /* Ponte's index of the GPU's default stream */

/* ───────────────────────────── timing and reporting ───────────────────────────── */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One repetition, ending with the GPU's stream synchronized: returns 0, or -1 with a Ponte
 * error (or a message in bench_msg). */
typedef int (*bench_fn)(void *ctx);

/* Our own failure message (a wrong result, an unavailable baseline); "" when the failure is a
 * Ponte error. */
static char bench_msg[256];

static int gpu_sync(void) { return pn_synchronize(pn_default_stream(GPU)); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_REPS 256

/* Runs fa and fb (fb may be NULL) alternately, swapping their order every round: S.warmup
 * untimed rounds, then S.reps timed rounds or as many as fit in S.budget seconds (at least
 * three). Each run starts on a synchronized GPU and is timed with the host clock until it has
 * synchronized again. The medians go to *ta and *tb. Returns 0, or -1 when a run fails. */
static int time_pair(bench_fn fa, void *ca, bench_fn fb, void *cb, double *ta, double *tb)
{
    static double sa[MAX_REPS], sb[MAX_REPS];
    if (gpu_sync() != 0) return -1;
    for (int i = 0; i < S.warmup; i++)
        if (fa(ca) != 0 || (fb && fb(cb) != 0)) return -1;
    int n = 0, reps = S.reps < MAX_REPS ? S.reps : MAX_REPS;
    double start = now_s();
    for (; n < reps; n++) {
        bool swap = fb && (n & 1);
        double t0 = now_s();
        if ((swap ? fb(cb) : fa(ca)) != 0) return -1;
        double t1 = now_s();
        if (fb && (swap ? fa(ca) : fb(cb)) != 0) return -1;
        double t2 = now_s();
        sa[n] = swap ? t2 - t1 : t1 - t0;
        sb[n] = swap ? t1 - t0 : t2 - t1;
        if (n >= 2 && t2 - start > S.budget) {
            n++;
            break;
        }
    }
    qsort(sa, (size_t)n, sizeof(double), cmp_double);
    qsort(sb, (size_t)n, sizeof(double), cmp_double);
    *ta = n % 2 ? sa[n / 2] : 0.5 * (sa[n / 2 - 1] + sa[n / 2]);
    if (tb) *tb = n % 2 ? sb[n / 2] : 0.5 * (sb[n / 2 - 1] + sb[n / 2]);
    return 0;
}

/* Prints one figure in the fixed machine-readable form; ratio < 0 prints "n/a" (the PyTorch
 * comparison is bench_torch.py's). */
static void report(const char *name, double value, const char *unit, double ratio,
                   const char *baseline)
{
    if (ratio < 0)
        printf("bench %s: %.3f %s (ratio n/a vs %s)\n", name, value, unit, baseline);
    else
        printf("bench %s: %.3f %s (ratio %.3f vs %s)\n", name, value, unit, ratio, baseline);
    fflush(stdout);
}

/* Prints a failed figure with the library's (or our own) message and clears the error. */
static void report_error(const char *name)
{
    const char *msg = bench_msg[0] ? bench_msg : pn_last_error_message();
    printf("bench %s: error: %s\n", name, msg && msg[0] ? msg : "unknown failure");
    fflush(stdout);
    bench_msg[0] = 0;
    pn_clear_error();
}

/* Extra detail below a figure (not a figure line). */
#define NOTE(...)                                                                              \
    do {                                                                                       \
        printf("  note: " __VA_ARGS__);                                                        \
        fflush(stdout);                                                                        \
    } while (0)

/* Says how many primitive evaluations of the figure ran on the CPU instead (since `since`):
 * such a figure does not measure the GPU kernels. */
static void note_fallbacks(int64_t since)
{
    int64_t n = pnC_gpu_fallback_count() - since;
    if (n > 0)
        NOTE("%lld primitive evaluations fell back to the CPU during this figure "
             "(PONTE_GPU_FALLBACK_LOG=1 names them): not a GPU measurement\n", (long long)n);
}

/* "64M", "64K", or the plain count. */
static const char *count_label(int64_t n, char *buf, size_t cap)
{
    if (n >= ((int64_t)1 << 20) && n % ((int64_t)1 << 20) == 0)
        snprintf(buf, cap, "%lldM", (long long)(n >> 20));
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, cap, "%lldK", (long long)(n >> 10));
    else
        snprintf(buf, cap, "%lld", (long long)n);
    return buf;
}

/* ───────────────────────────── data ───────────────────────────── */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float rand_uniform(void) /* in [-1, 1) */
{
    return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* n host floats uniform in [lo, hi), never all zero; NULL with an error. */
static float *host_random(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "bench: host buffer of %lld floats", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * 0.5f * (rand_uniform() + 1.0f);
    return p;
}

/* n host values of a 16-bit float dtype (bfloat16 or float16) uniform in [lo, hi), rounded to
 * nearest even, never all zero; NULL with an error. */
static uint16_t *host_random16(int64_t n, float lo, float hi, pn_dtype dt)
{
    uint16_t *p = malloc((size_t)n * sizeof(uint16_t));
    if (!p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "bench: host buffer of %lld halves", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = lo + (hi - lo) * 0.5f * (rand_uniform() + 1.0f);
        p[i] = dt == PN_BFLOAT16 ? pnC_f32_to_bf16(v).bits : pnC_f32_to_f16(v).bits;
    }
    return p;
}

/* Element i of a host buffer of dtype f32, bf16 or f16, as double. */
static double host_at(const void *m, pn_dtype dt, int64_t i)
{
    switch (dt) {
    case PN_BFLOAT16: return pnC_bf16_to_f32(((const pn_bfloat16 *)m)[i]);
    case PN_FLOAT16: return pnC_f16_to_f32(((const pn_float16 *)m)[i]);
    default: return ((const float *)m)[i];
    }
}

/* A Ponte array of the host data, already moved to the GPU (an evaluated copy made on the
 * GPU stream), so that no timed repetition pays the upload. NULL with an error. */
static pn_array *gpu_array(const void *data, const int64_t *shape, int ndim, pn_dtype dtype)
{
    pn_array *h = pn_array_from_data(data, shape, ndim, dtype);
    pn_array *d = h ? pn_copy(h) : NULL;
    pn_release(h);
    if (d && (pn_eval(&d, 1) != 0 || gpu_sync() != 0)) {
        pn_release(d);
        return NULL;
    }
    return d;
}

/* A raw device buffer (pnG_malloc) holding a copy of nbytes of host data; NULL with an error. */
static void *device_copy_of(const void *host, size_t nbytes)
{
    void *p = pnG_malloc(nbytes, STREAM);
    if (!p) return NULL;
    if (pnG_copy_to_device(p, host, nbytes, STREAM) != 0 || pnG_synchronize(STREAM) != 0) {
        pnG_free(p, nbytes, STREAM);
        return NULL;
    }
    return p;
}

/* ───────────────────────────── device copy (the bandwidth baseline) ───────────────────────────── */

typedef struct {
    void *src, *dst;
    size_t nbytes;
} copy_ctx;

static int run_copy(void *p)
{
    copy_ctx *c = p;
    if (pnG_copy_device(c->dst, c->src, c->nbytes, STREAM) != 0) return -1;
    return pnG_synchronize(STREAM);
}

/* Two raw device buffers of nbytes (a multiple of 4), src holding host data; checks that a copy
 * arrives. Returns 0 or -1 (message in bench_msg or a Ponte error). */
static int copy_setup(copy_ctx *c, const void *host, size_t nbytes)
{
    c->nbytes = nbytes;
    c->src = device_copy_of(host, nbytes);
    c->dst = c->src ? pnG_malloc(nbytes, STREAM) : NULL;
    if (!c->dst) return -1;
    if (run_copy(c) != 0) return -1;
    const char *h = host;
    char probe[8];
    if (pnG_copy_to_host(&probe[0], c->dst, 4, STREAM) != 0 ||
        pnG_copy_to_host(&probe[4], (char *)c->dst + (nbytes - 4), 4, STREAM) != 0)
        return -1;
    if (memcmp(probe, h, 4) != 0 || memcmp(probe + 4, h + nbytes - 4, 4) != 0) {
        snprintf(bench_msg, sizeof bench_msg, "device copy baseline: wrong bytes");
        return -1;
    }
    return 0;
}

static void copy_free(copy_ctx *c)
{
    if (c->src) pnG_free(c->src, c->nbytes, STREAM);
    if (c->dst) pnG_free(c->dst, c->nbytes, STREAM);
    memset(c, 0, sizeof *c);
}

/* ───────────────────────────── add, sum, softmax ───────────────────────────── */

typedef struct {
    pn_array *a, *b;
    int which; /* 0 add, 1 sum, 2 softmax */
} stream_ctx;

/* A fresh lazy op over the evaluated inputs each time: the result is really recomputed. */
static pn_array *stream_op(const stream_ctx *c)
{
    static const int last_axis[1] = {-1};
    switch (c->which) {
    case 0: return pn_add(c->a, c->b);
    case 1: return pn_sum(c->a, NULL, 0, false);
    default: return pn_softmax(c->a, last_axis, 1, false);
    }
}

static int run_stream_op(void *p)
{
    pn_array *r = stream_op(p);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    if (rc == 0) rc = gpu_sync();
    pn_release(r);
    return rc;
}

/* Checks one result of the op against a host computation over a, b (host copies). */
static bool stream_check(const stream_ctx *c, const float *a, const float *b, int64_t n)
{
    pn_array *r = stream_op(c);
    const float *v = r ? pn_data(r) : NULL;
    bool ok = v != NULL;
    if (ok && c->which == 0) {
        for (int64_t i = 0; i < n && ok; i++)
            if (v[i] != a[i] + b[i]) {
                snprintf(bench_msg, sizeof bench_msg, "wrong result at %lld: %g, expected %g",
                         (long long)i, (double)v[i], (double)(a[i] + b[i]));
                ok = false;
            }
    } else if (ok && c->which == 1) {
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            ref += a[i];
            mag += fabs(a[i]);
        }
        if (!(fabs(v[0] - ref) <= 1e-6 * mag)) {
            snprintf(bench_msg, sizeof bench_msg, "wrong sum %.8g, expected %.8g", (double)v[0],
                     ref);
            ok = false;
        }
    } else if (ok) {
        int64_t rows = S.sm_rows, cols = S.sm_cols, check_rows[3] = {0, rows / 2, rows - 1};
        for (int k = 0; k < 3 && ok; k++) {
            const float *x = a + check_rows[k] * cols, *y = v + check_rows[k] * cols;
            double mx = -INFINITY, den = 0.0;
            for (int64_t j = 0; j < cols; j++) mx = x[j] > mx ? x[j] : mx;
            for (int64_t j = 0; j < cols; j++) den += exp(x[j] - mx);
            for (int64_t j = 0; j < cols && ok; j++) {
                double ref = exp(x[j] - mx) / den;
                if (!(fabs(y[j] - ref) <= 1e-4 * ref + 1e-12)) {
                    snprintf(bench_msg, sizeof bench_msg,
                             "wrong softmax at row %lld col %lld: %g, expected %g",
                             (long long)check_rows[k], (long long)j, (double)y[j], ref);
                    ok = false;
                }
            }
        }
    }
    pn_release(r);
    return ok;
}

/* A figure in GB/s timed against the device copy `copy` (checked: whether its result was
 * checked and right, else the error is reported): GB/s = bytes / median time of run(ctx),
 * ratio = that over the copy's GB/s (copy_bytes / copy time). fb0: the fallback count before
 * the check. */
static void bw_figure(const char *name, bool checked, bench_fn run, void *ctx, double bytes,
                      copy_ctx *copy, double copy_bytes, const char *baseline, int64_t fb0)
{
    double t = -1, tc = -1;
    if (checked && time_pair(run, ctx, run_copy, copy, &t, &tc) != 0) t = -1;
    if (t < 0) {
        report_error(name);
        return;
    }
    double gbs = bytes / t / 1e9, copy_gbs = copy_bytes / tc / 1e9;
    report(name, gbs, "GB/s", gbs / copy_gbs, baseline);
    NOTE("median %.3f ms; device copy of %.4g MB %.3f ms (%.1f GB/s counted as %s)\n", t * 1e3,
         (double)copy->nbytes / 1e6, tc * 1e3, copy_gbs,
         copy_bytes > (double)copy->nbytes ? "read+write" : "read");
    note_fallbacks(fb0);
}

/* Times the stream op against the device copy (bw_figure). */
static void stream_figure(const char *name, stream_ctx *c, const float *a, const float *b,
                          int64_t n, double bytes, copy_ctx *copy, double copy_bytes,
                          const char *baseline)
{
    int64_t fb0 = pnC_gpu_fallback_count();
    bool ok = stream_check(c, a, b, n);
    bw_figure(name, ok, run_stream_op, c, bytes, copy, copy_bytes, baseline, fb0);
}

static void bench_bandwidth(void)
{
    char lbl[32], name[64];
    int64_t n = S.n, sm_n = S.sm_rows * S.sm_cols;
    float *a = host_random(n, -1.0f, 1.0f), *b = a ? host_random(n, -1.0f, 1.0f) : NULL;
    float *x = b ? host_random(sm_n, -4.0f, 4.0f) : NULL;
    copy_ctx copy = {0};
    stream_ctx c = {0};
    double nb = (double)n * sizeof(float);
    count_label(n, lbl, sizeof lbl);
    if (x && copy_setup(&copy, a, (size_t)n * sizeof(float)) == 0) {
        c.a = gpu_array(a, &n, 1, PN_FLOAT32);
        c.b = c.a ? gpu_array(b, &n, 1, PN_FLOAT32) : NULL;
    }
    if (!c.b) {
        snprintf(name, sizeof name, "add_f32_%s", lbl);
        report_error(name);
        goto done;
    }
    NOTE("device copy of %.4g MB through pnG_copy_device is the bandwidth baseline\n", nb / 1e6);

    snprintf(name, sizeof name, "add_f32_%s", lbl);
    c.which = 0;
    stream_figure(name, &c, a, b, n, 3.0 * nb, &copy, 2.0 * nb, "d2d_copy");

    snprintf(name, sizeof name, "sum_f32_%s", lbl);
    c.which = 1;
    stream_figure(name, &c, a, b, n, nb, &copy, nb, "d2d_copy_read");

    snprintf(name, sizeof name, "softmax_%lldx%lld", (long long)S.sm_rows, (long long)S.sm_cols);
    pn_release(c.a);
    pn_release(c.b);
    c.b = NULL;
    c.a = gpu_array(x, (int64_t[]){S.sm_rows, S.sm_cols}, 2, PN_FLOAT32);
    c.which = 2;
    if (!c.a)
        report_error(name);
    else
        stream_figure(name, &c, x, NULL, sm_n, 2.0 * (double)sm_n * sizeof(float), &copy,
                      2.0 * nb, "d2d_copy");
done:
    pn_release(c.a);
    pn_release(c.b);
    copy_free(&copy);
    free(a);
    free(b);
    free(x);
    pn_clear_error();
}

/* ───────────────────────────── sgemm, bf16 gemm ───────────────────────────── */

typedef struct {
    int64_t n;
    pn_dtype dtype;
    pn_array *a, *b;       /* Ponte's inputs, on the GPU */
    void *da, *db, *dc;    /* the same inputs as raw device buffers, and the baseline's output */
} gemm_ctx;

static int run_pn_matmul(void *p)
{
    gemm_ctx *g = p;
    pn_array *r = pn_matmul(g->a, g->b);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    if (rc == 0) rc = gpu_sync();
    pn_release(r);
    return rc;
}

/* pn_matmul with the GEMM autotuning on for every shape (its first call times cuBLASLt's
 * candidates; the figure's check runs that first call before timing). */
static int run_pn_matmul_tuned(void *p)
{
    pnG_gemm_set_tuning(true, 0.0);
    int rc = run_pn_matmul(p);
    pnG_gemm_set_tuning(false, -1.0);
    return rc;
}

/* The baseline: cuBLASLt through the backend's launcher on raw buffers, no graph. */
static int run_pnG_gemm(void *p)
{
    gemm_ctx *g = p;
    int64_t n = g->n;
    int rc = pnG_gemm(g->dtype, false, false, n, n, n, 1.0, g->da, n, 0, g->db, n, 0, 0.0, g->dc,
                      n, 0, 1, STREAM);
    if (rc == PNG_UNSUPPORTED) {
        snprintf(bench_msg, sizeof bench_msg, "pnG_gemm declined %s", pn_dtype_name(g->dtype));
        return -1;
    }
    return rc == 0 ? pnG_synchronize(STREAM) : -1;
}

/* Compares 64 random entries of the n×n product c (dtype dt, host) with a double-precision
 * reference from the host inputs: within rel_tol of the sum of |products| (f32 without TF32 is
 * far closer than 1e-4), plus the output's rounding for bfloat16. *worst gets the largest error over the
 * sum of |products| (about 1e-7 for f32 without TF32, 1e-4 or more with it). */
static bool gemm_check(const char *who, const void *a, const void *b, const void *c, pn_dtype dt,
                       int64_t n, double rel_tol, double *worst)
{
    *worst = 0.0;
    for (int s = 0; s < 64; s++) {
        int64_t i = (int64_t)(rng_next() % (uint64_t)n), j = (int64_t)(rng_next() % (uint64_t)n);
        double ref = 0.0, mag = 0.0;
        for (int64_t k = 0; k < n; k++) {
            double t = host_at(a, dt, i * n + k) * host_at(b, dt, k * n + j);
            ref += t;
            mag += fabs(t);
        }
        double got = host_at(c, dt, i * n + j);
        if (fabs(got - ref) / mag > *worst) *worst = fabs(got - ref) / mag;
        double tol = rel_tol * mag + (dt == PN_BFLOAT16 ? fabs(ref) / 128.0 : 0.0);
        if (!(fabs(got - ref) <= tol)) {
            snprintf(bench_msg, sizeof bench_msg, "%s: wrong entry (%lld, %lld): %g, expected %g",
                     who, (long long)i, (long long)j, got, ref);
            return false;
        }
    }
    return true;
}

/* One GEMM figure; tf32: float32 through TF32 tensor cores (both sides), checked within 2e-3
 * of the magnitudes instead of 1e-4; tuned: pn_matmul with the autotuning against pn_matmul
 * with the heuristic's first algorithm (the default) instead of against pnG_gemm. */
static void gemm_figure(const char *name, int64_t n, pn_dtype dt, bool tf32, bool tuned)
{
    bool tf32_was = pn_tf32_enabled();
    pn_set_tf32_enabled(tf32);
    int64_t fb0 = pnC_gpu_fallback_count();
    size_t es = pn_dtype_size(dt), nbytes = (size_t)(n * n) * es;
    gemm_ctx g = {.n = n, .dtype = dt};
    int64_t shape[2] = {n, n};
    double t = -1, tb = -1, flops = 2.0 * (double)n * (double)n * (double)n, err = 0, err_b = 0;
    void *ha = malloc(nbytes), *hb = malloc(nbytes), *hc = malloc(nbytes);
    if (!ha || !hb || !hc) {
        snprintf(bench_msg, sizeof bench_msg, "out of host memory");
        goto fail;
    }
    for (int64_t i = 0; i < n * n; i++) {
        float va = rand_uniform(), vb = rand_uniform();
        if (dt == PN_FLOAT32) {
            ((float *)ha)[i] = va;
            ((float *)hb)[i] = vb;
        } else {
            ((pn_bfloat16 *)ha)[i] = pnC_f32_to_bf16(va);
            ((pn_bfloat16 *)hb)[i] = pnC_f32_to_bf16(vb);
        }
    }
    g.a = gpu_array(ha, shape, 2, dt);
    g.b = g.a ? gpu_array(hb, shape, 2, dt) : NULL;
    g.da = g.b ? device_copy_of(ha, nbytes) : NULL;
    g.db = g.da ? device_copy_of(hb, nbytes) : NULL;
    g.dc = g.db ? pnG_malloc(nbytes, STREAM) : NULL;
    if (!g.dc) goto fail;
    /* Ponte's result and the baseline's, both checked before timing. */
    if (tuned) pnG_gemm_set_tuning(true, 0.0);
    pn_array *r = pn_matmul(g.a, g.b);
    if (tuned) pnG_gemm_set_tuning(false, -1.0);
    const void *rv = r ? pn_data(r) : NULL;
    bool ok = rv && pn_array_dtype(r) == dt && gemm_check("pn_matmul", ha, hb, rv, dt, n, tf32 ? 2e-3 : 1e-4, &err);
    if (rv && pn_array_dtype(r) != dt)
        snprintf(bench_msg, sizeof bench_msg, "result dtype %s", pn_dtype_name(pn_array_dtype(r)));
    pn_release(r);
    if (!ok) goto fail;
    if (run_pnG_gemm(&g) != 0 || pnG_copy_to_host(hc, g.dc, nbytes, STREAM) != 0 ||
        !gemm_check("pnG_gemm", ha, hb, hc, dt, n, tf32 ? 2e-3 : 1e-4, &err_b))
        goto fail;
    if (tuned) {
        int pick = -1;
        pnG_gemm_tuned_count(&pick);
        if (time_pair(run_pn_matmul_tuned, &g, run_pn_matmul, &g, &t, &tb) != 0) goto fail;
        report(name, flops / t / 1e12, "TFLOP/s", tb / t, "heuristic_first");
        NOTE("median %.3f ms tuned (the heuristic's algorithm %d of its first 8), %.3f ms with its "
             "first\n", t * 1e3, pick, tb * 1e3);
        goto done;
    }
    if (time_pair(run_pn_matmul, &g, run_pnG_gemm, &g, &t, &tb) != 0) goto fail;
    report(name, flops / t / 1e12, "TFLOP/s", tb / t, "pnG_gemm_cublaslt");
    NOTE("median %.3f ms; pnG_gemm (cuBLASLt, no graph) %.3f ms = %.1f TFLOP/s; PyTorch: "
         "bench_torch.py\n", t * 1e3, tb * 1e3, flops / tb / 1e12);
    NOTE("largest error / sum|products| over 64 sampled entries: %.2g (pnG_gemm %.2g)\n", err,
         err_b);
    note_fallbacks(fb0);
    goto done;
fail:
    report_error(name);
done:
    pn_release(g.a);
    pn_release(g.b);
    if (g.da) pnG_free(g.da, nbytes, STREAM);
    if (g.db) pnG_free(g.db, nbytes, STREAM);
    if (g.dc) pnG_free(g.dc, nbytes, STREAM);
    free(ha);
    free(hb);
    free(hc);
    pn_clear_error();
    pn_set_tf32_enabled(tf32_was);
}

static void bench_gemms(void)
{
    char name[64];
    snprintf(name, sizeof name, "sgemm_%lld", (long long)S.sgemm_n);
    gemm_figure(name, S.sgemm_n, PN_FLOAT32, false, false);
    snprintf(name, sizeof name, "tf32_gemm_%lld", (long long)S.sgemm_n);
    gemm_figure(name, S.sgemm_n, PN_FLOAT32, true, false);
    snprintf(name, sizeof name, "bf16_gemm_%lld", (long long)S.bf16_n);
    gemm_figure(name, S.bf16_n, PN_BFLOAT16, false, false);
    snprintf(name, sizeof name, "bf16_gemm_%lld_tuned", (long long)S.bf16_n);
    gemm_figure(name, S.bf16_n, PN_BFLOAT16, false, true);
}

/* ───────────────────────────── training steps ───────────────────────────── */
/* The two models of examples/fashion_mnist.c and one Adam step (bench/train_models.h, shared
 * with the CPU benchmark) on a fixed random batch. */

#include "../train_models.h"

/* The model's loss at its current parameters, computed on the CPU (the reference). */
static double cpu_loss(tm_train *t)
{
    double v = NAN;
    if (pn_stream_push(pn_default_stream((pn_device){PN_CPU, 0})) != 0) return v;
    pn_scope_push();
    pn_array *in[TM_MAX_PARAMS + 2], *out[1];
    int np = t->m->nparams, nout = 1;
    for (int i = 0; i < np; i++) in[i] = pn_params_get(t->params, t->m->names[i]);
    in[np] = t->x;
    in[np + 1] = t->y;
    if (tm_loss_fn((void *)t->m, np + 2, in, &nout, out) == 0) v = pn_item(out[0]);
    pn_scope_pop();
    pn_stream_pop();
    return v;
}

/* Notes what graph segments did since `before` (gpu.h: pnG_segment_counts). */
static void note_segments(const pnG_segment_stats *before)
{
    pnG_segment_stats after;
    pnG_segment_counts(&after);
    NOTE("%lld graphs launched (%lld instantiated, %lld updated), %lld segments run again "
         "directly\n", (long long)(after.launched - before->launched),
         (long long)(after.instantiated - before->instantiated),
         (long long)(after.updated - before->updated),
         (long long)(after.run_again - before->run_again));
}

/* One training step with eval's graph segments on (gpu.h: pnG_graphs_set). */
static int run_step_graphs(void *p)
{
    bool was = pnG_graphs_set(true);
    int rc = tm_run_step(p);
    pnG_graphs_set(was);
    return rc;
}

/* The model's step timed (checked against the CPU's loss first); with `graphs`, the step with
 * graph segments on against the same step without them. */
static void bench_train(const tm_model *m, bool graphs)
{
    char figure[64];
    snprintf(figure, sizeof figure, "%s%s", m->figure, graphs ? "_graphs" : "");
    bench_fn step = graphs ? run_step_graphs : tm_run_step;
    int64_t fb0 = pnC_gpu_fallback_count(), B = S.batch;
    pnG_segment_stats seg0;
    pnG_segment_counts(&seg0);
    tm_train t = {.sync = gpu_sync};
    double tstep = -1, tplain = -1;
    float *xh = host_random(B * 784, 0.0f, 1.0f);
    int32_t *yh = malloc((size_t)B * sizeof(int32_t));
    if (!xh || !yh) goto fail;
    for (int64_t i = 0; i < B; i++) yh[i] = (int32_t)(rng_next() % 10);
    if (tm_setup(&t, m, host_random, gpu_array) != 0) goto fail;
    t.x = gpu_array(xh, (int64_t[]){B, 784}, 2, PN_FLOAT32);
    t.y = t.x ? gpu_array(yh, &B, 1, PN_INT32) : NULL;
    if (!t.y) goto fail;

    /* Check: the first GPU step's loss equals the CPU's at the same parameters, and the loss
     * on this fixed batch has gone down once all steps have run. */
    double ref = cpu_loss(&t);
    t.read_loss = true;
    if (!isfinite(ref) || step(&t) != 0) goto fail;
    double first = t.loss;
    if (!(fabs(first - ref) <= 1e-4 * fabs(ref) + 1e-5)) {
        snprintf(bench_msg, sizeof bench_msg, "first loss %.7g on the GPU, %.7g on the CPU",
                 first, ref);
        goto fail;
    }
    t.read_loss = false;
    if (time_pair(step, &t, graphs ? tm_run_step : NULL, &t, &tstep, graphs ? &tplain : NULL))
        goto fail;
    t.read_loss = true;
    if (step(&t) != 0) goto fail;
    if (!(t.loss < first)) {
        snprintf(bench_msg, sizeof bench_msg, "loss did not go down: %.6g then %.6g", first,
                 t.loss);
        goto fail;
    }
    if (graphs) report(figure, tstep * 1e3, "ms", tstep / tplain, m->figure);
    else report(figure, tstep * 1e3, "ms", -1, "bench_torch.py");
    NOTE("batch %lld: %.0f images/s; loss %.4f (CPU %.4f) -> %.4f on the fixed batch\n",
         (long long)B, (double)B / tstep, first, ref, t.loss);
    if (graphs) note_segments(&seg0);
    note_fallbacks(fb0);
    goto done;
fail:
    report_error(figure);
done:
    tm_free(&t);
    free(xh);
    free(yh);
    pn_clear_error();
}

static void bench_mlp(void) { bench_train(&TM_MLP, false); }
static void bench_cnn(void) { bench_train(&TM_CNN, false); }
static void bench_mlp_graphs(void) { bench_train(&TM_MLP, true); }
static void bench_cnn_graphs(void) { bench_train(&TM_CNN, true); }

/* ───────────────────────────── h2d_copy ───────────────────────────── */


typedef struct {
    void *dev;
    const void *host;
    size_t nbytes;
} h2d_ctx;

static int run_h2d_ponte(void *p)
{
    h2d_ctx *c = p;
    if (pnG_copy_to_device(c->dev, c->host, c->nbytes, STREAM) != 0) return -1;
    return pnG_synchronize(STREAM);
}

static int run_h2d_plain(void *p)
{
    h2d_ctx *c = p;
    return pnG_copy_to_device_unstaged(c->dev, c->host, c->nbytes, STREAM);
}

/* h2d_copy_<bytes>: GB/s of pnG_copy_to_device (pinned staging, pipelined chunks) from
 * pageable host memory, until the bytes are on the device; ratio = its bandwidth over a plain
 * cudaMemcpyAsync from the same pageable buffer (> 1: staging is faster). */
static void bench_h2d(void)
{
    char lbl[32], name[64];
    size_t nb = (size_t)S.n * sizeof(float); /* 256 MiB at full size */
    snprintf(name, sizeof name, "h2d_copy_%s", count_label((int64_t)nb, lbl, sizeof lbl));
    float *host = host_random(S.n, -1.0f, 1.0f);
    h2d_ctx c = {NULL, host, nb};
    double t = -1, tb = -1;
    c.dev = host ? pnG_malloc(nb, STREAM) : NULL;
    if (c.dev && run_h2d_ponte(&c) == 0) {
        float probe[2];
        if (pnG_copy_to_host(&probe[0], c.dev, sizeof(float), STREAM) != 0 ||
            pnG_copy_to_host(&probe[1], (char *)c.dev + nb - sizeof(float), sizeof(float),
                             STREAM) != 0)
            ;
        else if (probe[0] != host[0] || probe[1] != host[S.n - 1])
            snprintf(bench_msg, sizeof bench_msg, "staged copy: wrong bytes on the device");
        else if (time_pair(run_h2d_ponte, &c, run_h2d_plain, &c, &t, &tb) != 0)
            t = -1;
    }
    if (t <= 0 || tb <= 0) {
        report_error(name);
    } else {
        double gbs = (double)nb / t / 1e9, base = (double)nb / tb / 1e9;
        report(name, gbs, "GB/s", gbs / base, "pageable_cudaMemcpy");
        size_t chunk = pnG_staging_chunk_bytes();
        NOTE("pageable source; pinned staging %s, %zu MiB chunks; plain cudaMemcpyAsync %.2f GB/s\n",
             chunk ? "on" : "off (PONTE_PINNED_STAGING=0)", chunk >> 20, base);
    }
    if (c.dev) pnG_free(c.dev, nb, STREAM);
    free(host);
    pn_clear_error();
}

/* ───────────────────────────── op_overhead_gpu ───────────────────────────── */

typedef struct {
    pn_array *x0, *one;
    void *d4; /* 8 device bytes for the baseline's tiny copies */
    double build_s, eval_s; /* medians are not kept for the split: the best of each */
    float result;
} overhead_ctx;

/* x = x0; S.chain times x = pn_add(x, one) (releasing each previous handle), one pn_eval,
 * synchronize, read nothing. */
static int run_chain(void *p)
{
    overhead_ctx *c = p;
    double t0 = now_s();
    pn_array *x = pn_retain(c->x0);
    for (int i = 0; i < S.chain && x; i++) {
        pn_array *y = pn_add(x, c->one);
        pn_release(x);
        x = y;
    }
    if (!x) return -1;
    double t1 = now_s();
    int rc = pn_eval(&x, 1);
    if (rc == 0) rc = gpu_sync();
    double t2 = now_s();
    if (c->build_s == 0 || t1 - t0 < c->build_s) c->build_s = t1 - t0;
    if (c->eval_s == 0 || t2 - t1 < c->eval_s) c->eval_s = t2 - t1;
    if (rc == 0 && c->result == 0.0f) {
        const float *v = pn_data(x);
        if (!v) rc = -1;
        else c->result = v[0];
    }
    pn_release(x);
    return rc;
}

/* The baseline: S.chain 4-byte device-to-device copies queued back to back, one synchronize. */
static int run_tiny_copies(void *p)
{
    overhead_ctx *c = p;
    for (int i = 0; i < S.chain; i++)
        if (pnG_copy_device((char *)c->d4 + 4 * (i & 1), (char *)c->d4 + 4 * (~i & 1), 4,
                            STREAM) != 0)
            return -1;
    return pnG_synchronize(STREAM);
}

/* The chain figures' common step: checks that a chain of S.chain adds of one from 0.5 gave
 * result, then times fa against fb (time_pair); their times per add in microseconds go to *us
 * and *base_us. 0, or -1 (bench_msg or the error says why). */
static int time_chain(float result, bench_fn fa, void *ca, bench_fn fb, void *cb, double *us,
                      double *base_us)
{
    double t, tb;
    if (result != 0.5f + (float)S.chain) {
        snprintf(bench_msg, sizeof bench_msg, "wrong result %g, expected %g", (double)result,
                 0.5 + S.chain);
        return -1;
    }
    if (time_pair(fa, ca, fb, cb, &t, &tb) != 0) return -1;
    *us = t / S.chain * 1e6, *base_us = tb / S.chain * 1e6;
    return 0;
}

static void bench_op_overhead(void)
{
    int64_t fb0 = pnC_gpu_fallback_count(), shape[1] = {1};
    overhead_ctx c = {0};
    double us, base_us;
    float x0 = 0.5f, one = 1.0f, pair[2] = {0.25f, 0.75f};
    c.x0 = gpu_array(&x0, shape, 1, PN_FLOAT32);
    c.one = c.x0 ? gpu_array(&one, shape, 1, PN_FLOAT32) : NULL;
    c.d4 = c.one ? device_copy_of(pair, sizeof pair) : NULL;
    if (!c.d4 || run_chain(&c) != 0 ||
        time_chain(c.result, run_chain, &c, run_tiny_copies, &c, &us, &base_us) != 0) {
        report_error("op_overhead_gpu");
    } else {
        report("op_overhead_gpu", us, "us/op", us / base_us, "d2d_copy_4B");
        NOTE("chain of %d adds on 1 element, one eval: best build %.3f us/op, best eval+sync "
             "%.3f us/op; a 4-byte async device copy %.3f us\n", S.chain,
             c.build_s / S.chain * 1e6, c.eval_s / S.chain * 1e6, base_us);
    }
    note_fallbacks(fb0);
    pn_release(c.x0);
    pn_release(c.one);
    if (c.d4) pnG_free(c.d4, 8, STREAM);
    pn_clear_error();
}

/* The chain of op_overhead_gpu with eval's graph segments on: one graph of S.chain adds. */
static int run_chain_graphs(void *p)
{
    bool was = pnG_graphs_set(true);
    int rc = run_chain(p);
    pnG_graphs_set(was);
    return rc;
}

/* op_overhead_gpu's chain evaluated as graph segments against the same chain launched node by
 * node (the figure that says whether graph segments should be eval's default). */
static void bench_op_overhead_graphs(void)
{
    int64_t shape[1] = {1};
    overhead_ctx c = {0};
    double us, base_us;
    float x0 = 0.5f, one = 1.0f;
    pnG_segment_stats before;
    pnG_segment_counts(&before);
    c.x0 = gpu_array(&x0, shape, 1, PN_FLOAT32);
    c.one = c.x0 ? gpu_array(&one, shape, 1, PN_FLOAT32) : NULL;
    if (!c.one || run_chain_graphs(&c) != 0 ||
        time_chain(c.result, run_chain_graphs, &c, run_chain, &c, &us, &base_us) != 0) {
        report_error("op_overhead_gpu_graphs");
    } else {
        report("op_overhead_gpu_graphs", us, "us/op", us / base_us, "op_overhead_gpu");
        note_segments(&before);
    }
    pn_release(c.x0);
    pn_release(c.one);
    pn_clear_error();
}

/* ───────────────────────────── compile_gelu_gpu ───────────────────────────── */

/* ───────────────────────────── graph_overhead_gpu ───────────────────────────── */

/* What a CUDA graph would save per kernel (DESIGN.md 11): S.chain launches of Ponte's add
 * kernel on one element (x += one, in place), queued one by one against the same launches
 * captured once and replayed by one pnG_graph_launch; both synchronize at the end. */
typedef struct {
    pnK_ew_params prm;
    pnG_ew_args args;
    pnG_graph *graph;
} replay_ctx;

static int run_direct_adds(void *p)
{
    replay_ctx *c = p;
    for (int i = 0; i < S.chain; i++)
        if (pnG_ew_binary(PNK_B_ADD, &c->prm, PN_FLOAT32, &c->args) != 0) return -1;
    return pnG_synchronize(STREAM);
}

static int run_graph_adds(void *p)
{
    replay_ctx *c = p;
    return pnG_graph_launch(c->graph, STREAM) == 0 ? pnG_synchronize(STREAM) : -1;
}

static void bench_graph_overhead(void)
{
    float init[2] = {0.5f, 1.0f}, x = 0;
    replay_ctx c = {.prm = {.op = PNK_B_ADD}};
    float *d = device_copy_of(init, sizeof init); /* x, then one */
    double us, base_us;
    if (d) {
        c.args = (pnG_ew_args){.n = 1, .out = d, .in = {d, d + 1}, .flat = true, .stream = STREAM};
        if (pnG_capture_begin(STREAM) == 0) {
            for (int i = 0; i < S.chain; i++)
                if (pnG_ew_binary(PNK_B_ADD, &c.prm, PN_FLOAT32, &c.args) != 0) break;
            c.graph = pnG_capture_end(STREAM);
        }
    }
    /* one replay adds S.chain: checked before timing */
    if (!c.graph || run_graph_adds(&c) != 0 || pnG_copy_to_host(&x, d, sizeof x, STREAM) != 0 ||
        time_chain(x, run_graph_adds, &c, run_direct_adds, &c, &us, &base_us) != 0) {
        report_error("graph_overhead_gpu");
    } else {
        report("graph_overhead_gpu", us, "us/op", us / base_us, "direct_launch");
        NOTE("%d adds on 1 element: replayed from one CUDA graph %.3f us each, launched one by "
             "one %.3f us each\n", S.chain, us, base_us);
    }
    pnG_graph_free(c.graph);
    if (d) pnG_free(d, sizeof init, STREAM);
    pn_clear_error();
}

/* GELU (tanh form) of x: nine elementwise ops. */
static int gelu_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0];
    pn_array *inner = pn_multiply(pn_add(x, pn_multiply(pn_weak_float(0.044715), pn_multiply(pn_multiply(x, x), x))),
                                  pn_weak_float(0.7978845608028654));
    out[0] = pn_multiply(pn_multiply(pn_weak_float(0.5), x), pn_add(pn_weak_float(1), pn_tanh(inner)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

typedef struct {
    pn_closure *f; /* the plain function (unfused ops) or its compiled form (one fused launch) */
    pn_array *x;
} gelu_ctx;

static int run_gelu(void *p)
{
    gelu_ctx *c = p;
    pn_array *y[PN_MAX_OUTPUTS];
    int n = 0;
    if (pn_closure_call(c->f, 1, &c->x, &n, y) != 0) return -1;
    int rc = pn_eval(y, 1);
    if (rc == 0) rc = gpu_sync();
    pn_release(y[0]);
    return rc;
}

/* run_gelu with the fused kernel's interpreter instead of the kernel generated for it. */
static int run_gelu_interpreted(void *p)
{
    setenv("PONTE_FUSED_JIT", "0", 1);
    int rc = run_gelu(p);
    unsetenv("PONTE_FUSED_JIT");
    return rc;
}

/* The compiled GELU (one fused kernel, backend/cuda/fused.cu) against the same function
 * unfused (nine kernels): GB/s counts one read and one write of x; ratio = fused GB/s over
 * unfused GB/s. Checks that both give the same bits and that the fused kernel ran. */
static void bench_compile_gelu(void)
{
    const char *name = "compile_gelu_gpu";
    int64_t fb0 = pnC_gpu_fallback_count(), shape[1] = {S.n};
    float *h = host_random(S.n, -4.0f, 4.0f);
    gelu_ctx plain = {pn_closure_new(gelu_fn, NULL, NULL), h ? gpu_array(h, shape, 1, PN_FLOAT32) : NULL};
    gelu_ctx fused = {plain.f ? pn_compile(plain.f, false) : NULL, plain.x};
    double t = -1, tu = -1;
    if (plain.x && fused.f) {
        pn_array *a[PN_MAX_OUTPUTS], *b[PN_MAX_OUTPUTS];
        int na = 0, nb = 0;
        int64_t launches = pnG_fused_count();
        bool ok = pn_closure_call(fused.f, 1, &fused.x, &na, a) == 0 &&
                  pn_closure_call(plain.f, 1, &plain.x, &nb, b) == 0;
        const void *va = ok ? pn_data(a[0]) : NULL, *vb = ok ? pn_data(b[0]) : NULL;
        if (va && vb && memcmp(va, vb, (size_t)S.n * sizeof(float)) != 0)
            snprintf(bench_msg, sizeof bench_msg, "fused and unfused results differ");
        else if (va && vb && pnG_fused_count() == launches)
            snprintf(bench_msg, sizeof bench_msg, "the fused GPU kernel did not run");
        else if (va && vb && time_pair(run_gelu, &fused, run_gelu, &plain, &t, &tu) != 0)
            t = -1;
        if (na) pn_release(a[0]);
        if (nb) pn_release(b[0]);
    }
    if (t < 0) {
        report_error(name);
    } else {
        double bytes = 2.0 * (double)S.n * sizeof(float), gbs = bytes / t / 1e9, ugbs = bytes / tu / 1e9;
        report(name, gbs, "GB/s", gbs / ugbs, "unfused");
        NOTE("median %.3f ms fused (1 launch), %.3f ms unfused (9 launches), %lld elements\n",
             t * 1e3, tu * 1e3, (long long)S.n);
        /* the kernel generated for the program against the interpreter running it */
        double tg = -1, ti = -1;
        int64_t generated = pnG_fused_generated_count();
        if (time_pair(run_gelu, &fused, run_gelu_interpreted, &fused, &tg, &ti) == 0 &&
            pnG_fused_generated_count() > generated)
            report("compile_gelu_gpu_generated", bytes / tg / 1e9, "GB/s", ti / tg, "interpreter");
        else
            NOTE("no generated kernel ran: %s\n", pnG_fused_jit_error() ? pnG_fused_jit_error() : "(no reason)");
    }
    note_fallbacks(fb0);
    pn_closure_release(fused.f);
    pn_closure_release(plain.f);
    pn_release(plain.x);
    free(h);
    pn_clear_error();
}

/* ───────────────────────────── layer_norm, rms_norm, gather_rows, scatter_add_rows ───────────────────────────── */
/* The kernels of backend/cuda/norm.cu and indexing.cu on transformer-sized workloads: GB/s of
 * the bytes that must move (inputs read once, outputs written once; the backward's partial rows
 * are not counted), against a device copy of the figure's main array (read+write) timed in the
 * same run. */

#define NORM_EPS 1e-5
#define HOT_ROWS 16 /* every 8th index names one of the table's first HOT_ROWS rows */

enum { G_LAYER_NORM, G_RMS_NORM, G_RMS_NORM_BWD, G_GATHER, G_SCATTER_ADD };

typedef struct {
    int which;
    pn_array *x, *w, *b, *g; /* norms: x (rows, cols), weight, bias, the backward's cotangent */
    pn_closure *rms;         /* (x, w) -> rms_norm(x, w): differentiated by the backward */
    pn_array *table, *idx, *upd; /* gather / scatter: the table, int32 row indices, updates */
    const void *hx, *hw, *hb, *hg, *htab, *hupd; /* host copies of the inputs */
    const int32_t *hidx;
} graph_ctx;

static int rms_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_nn_rms_norm(in[0], in[1], NORM_EPS);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* The figure's lazy outputs over its evaluated inputs, owned by the current scope: their count
 * (the backward: dx and dweight of pn_vjp; the forward output is built but never evaluated), or
 * -1 with an error. */
static int graph_build(graph_ctx *c, pn_array **out)
{
    static const int axis0[1] = {0};
    switch (c->which) {
    case G_LAYER_NORM: out[0] = pn_nn_layer_norm(c->x, c->w, c->b, NORM_EPS); break;
    case G_RMS_NORM: out[0] = pn_nn_rms_norm(c->x, c->w, NORM_EPS); break;
    case G_RMS_NORM_BWD: {
        pn_array *primals[2] = {c->x, c->w}, *y[PN_MAX_OUTPUTS];
        int ny = 0;
        return pn_vjp(c->rms, 2, primals, 1, &c->g, &ny, y, out) == 0 ? 2 : -1;
    }
    case G_GATHER: out[0] = pn_take(c->table, c->idx, 0); break;
    default: out[0] = pn_scatter(c->table, &c->idx, 1, c->upd, axis0, PN_SCATTER_ADD); break;
    }
    return out[0] ? 1 : -1;
}

static int run_graph(void *p)
{
    pn_array *out[2];
    pn_scope_push();
    int n = graph_build(p, out);
    int rc = n < 0 ? -1 : pn_eval(out, n);
    if (rc == 0) rc = gpu_sync();
    pn_scope_pop();
    return rc;
}

/* The figure's outputs evaluated and on the host (want of them, each of dtype dt): 0, or -1
 * (message in bench_msg or a Ponte error). Call inside a scope. */
static int graph_host(graph_ctx *c, int want, pn_dtype dt, const void **v)
{
    pn_array *out[2];
    if (graph_build(c, out) != want) return -1;
    for (int k = 0; k < want; k++) {
        if (pn_array_dtype(out[k]) != dt) {
            snprintf(bench_msg, sizeof bench_msg, "result dtype %s, expected %s",
                     pn_dtype_name(pn_array_dtype(out[k])), pn_dtype_name(dt));
            return -1;
        }
        if (!(v[k] = pn_data(out[k]))) return -1;
    }
    return 0;
}

/* got against ref within tol; else a message naming what and where. */
static bool near(const char *what, int64_t i, int64_t j, double got, double ref, double tol)
{
    if (fabs(got - ref) <= tol) return true;
    snprintf(bench_msg, sizeof bench_msg, "wrong %s at (%lld, %lld): %.6g, expected %.6g", what,
             (long long)i, (long long)j, got, ref);
    return false;
}

/* Row r's mean (0 without center) and 1 / sqrt(var + eps) of the host x, in double. */
static void norm_row_stats(const graph_ctx *c, int64_t r, bool center, double *mean, double *rstd)
{
    int64_t n = S.norm_cols;
    double m = 0.0, q = 0.0;
    for (int64_t j = 0; center && j < n; j++) m += host_at(c->hx, PN_BFLOAT16, r * n + j);
    m /= (double)n;
    for (int64_t j = 0; j < n; j++) {
        double d = host_at(c->hx, PN_BFLOAT16, r * n + j) - m;
        q += d * d;
    }
    *mean = m;
    *rstd = 1.0 / sqrt(q / (double)n + NORM_EPS);
}

/* Checks rows 0, rows/2 and rows-1 of the norm's output (the backward: of dx, and dweight at
 * 16 sampled columns over all rows) against double precision from the host inputs: within
 * 1/128 of the sum of the terms' magnitudes (two bfloat16 roundings) plus 1e-3. */
static bool norm_check(graph_ctx *c)
{
    int64_t rows = S.norm_rows, n = S.norm_cols, check_rows[3] = {0, rows / 2, rows - 1};
    bool center = c->which == G_LAYER_NORM, bwd = c->which == G_RMS_NORM_BWD;
    const pn_dtype bf = PN_BFLOAT16;
    const void *v[2] = {NULL, NULL};
    double *rstd_all = NULL;
    pn_scope_push();
    bool ok = graph_host(c, bwd ? 2 : 1, bf, v) == 0;
    for (int k = 0; k < 3 && ok; k++) {
        int64_t r = check_rows[k];
        double mean, rstd, dot = 0.0;
        norm_row_stats(c, r, center, &mean, &rstd);
        for (int64_t j = 0; bwd && j < n; j++) /* mean of (g w) (x rstd) over the row */
            dot += host_at(c->hg, bf, r * n + j) * host_at(c->hw, bf, j) *
                   host_at(c->hx, bf, r * n + j) * rstd / (double)n;
        for (int64_t j = 0; j < n && ok; j++) {
            double xh = (host_at(c->hx, bf, r * n + j) - mean) * rstd, w = host_at(c->hw, bf, j);
            double ref, mag;
            if (bwd) {
                double gw = host_at(c->hg, bf, r * n + j) * w;
                ref = rstd * (gw - xh * dot);
                mag = rstd * (fabs(gw) + fabs(xh * dot));
            } else {
                double b = c->hb ? host_at(c->hb, bf, j) : 0.0;
                ref = xh * w + b;
                mag = fabs(xh * w) + fabs(b);
            }
            ok = near(bwd ? "dx" : "output", r, j, host_at(v[0], bf, r * n + j), ref,
                      mag / 128.0 + 1e-3);
        }
    }
    if (ok && bwd) {
        rstd_all = malloc((size_t)rows * sizeof(double));
        if (!rstd_all) {
            snprintf(bench_msg, sizeof bench_msg, "out of host memory");
            ok = false;
        }
        for (int64_t r = 0; ok && r < rows; r++) {
            double mean;
            norm_row_stats(c, r, false, &mean, &rstd_all[r]);
        }
        for (int s = 0; s < 16 && ok; s++) {
            int64_t j = (int64_t)(rng_next() % (uint64_t)n);
            double ref = 0.0, mag = 0.0;
            for (int64_t r = 0; r < rows; r++) {
                double t = host_at(c->hg, bf, r * n + j) * host_at(c->hx, bf, r * n + j) * rstd_all[r];
                ref += t;
                mag += fabs(t);
            }
            ok = near("dweight", 0, j, host_at(v[1], bf, j), ref, fabs(ref) / 128.0 + 1e-4 * mag);
        }
    }
    free(rstd_all);
    pn_scope_pop();
    return ok;
}

/* Gather: 16 result rows (the first, middle, last, and random ones) bit for bit against the
 * table's rows they name. Scatter-add: the hot rows, two rows named by indices and the last
 * row against the table's row plus its updates summed in double, within 4e-5 of the sum of
 * magnitudes (float32 atomics add in any order). */
static bool index_check(graph_ctx *c)
{
    int64_t K = S.lookups, T = S.table_rows;
    bool gather = c->which == G_GATHER;
    int64_t C = gather ? S.gather_cols : S.scatter_cols;
    const void *v[1] = {NULL};
    int64_t *hits = gather ? NULL : malloc((size_t)K * sizeof(int64_t));
    pn_scope_push();
    bool ok = (gather || hits) && graph_host(c, 1, gather ? PN_FLOAT16 : PN_FLOAT32, v) == 0;
    for (int s = 0; gather && s < 16 && ok; s++) {
        int64_t i = s == 0 ? 0 : s == 1 ? K / 2 : s == 2 ? K - 1 : (int64_t)(rng_next() % (uint64_t)K);
        const uint16_t *got = (const uint16_t *)v[0] + i * C,
                       *ref = (const uint16_t *)c->htab + (int64_t)c->hidx[i] * C;
        for (int64_t j = 0; j < C && ok; j++)
            if (got[j] != ref[j]) {
                snprintf(bench_msg, sizeof bench_msg,
                         "gathered row %lld (table row %d) differs at column %lld",
                         (long long)i, (int)c->hidx[i], (long long)j);
                ok = false;
            }
    }
    for (int s = 0; !gather && s < HOT_ROWS + 3 && ok; s++) {
        int64_t t = s < HOT_ROWS ? s : s == HOT_ROWS ? c->hidx[1] : s == HOT_ROWS + 1 ? c->hidx[K - 1] : T - 1;
        int64_t nh = 0;
        for (int64_t i = 0; i < K; i++)
            if (c->hidx[i] == t) hits[nh++] = i;
        for (int64_t j = 0; j < C && ok; j++) {
            double ref = host_at(c->htab, PN_FLOAT32, t * C + j), mag = fabs(ref);
            for (int64_t h = 0; h < nh; h++) {
                double u = host_at(c->hupd, PN_FLOAT32, hits[h] * C + j);
                ref += u;
                mag += fabs(u);
            }
            ok = near("scattered row", t, j, host_at(v[0], PN_FLOAT32, t * C + j), ref, 4e-5 * mag);
        }
    }
    if (!gather && !hits) snprintf(bench_msg, sizeof bench_msg, "out of host memory");
    free(hits);
    pn_scope_pop();
    return ok;
}

/* layer_norm_bf16_RxN (weight and bias), rms_norm_bf16_RxN (weight) and rms_norm_bwd_bf16_RxN
 * (pn_vjp of rms_norm: dx and dweight), against a copy of x. */
static void bench_norms(void)
{
    int64_t R = S.norm_rows, N = S.norm_cols, shape[2] = {R, N};
    char names[3][64];
    snprintf(names[0], sizeof names[0], "layer_norm_bf16_%lldx%lld", (long long)R, (long long)N);
    snprintf(names[1], sizeof names[1], "rms_norm_bf16_%lldx%lld", (long long)R, (long long)N);
    snprintf(names[2], sizeof names[2], "rms_norm_bwd_bf16_%lldx%lld", (long long)R, (long long)N);
    uint16_t *hx = host_random16(R * N, -1.0f, 2.0f, PN_BFLOAT16);
    uint16_t *hg = hx ? host_random16(R * N, -1.0f, 1.0f, PN_BFLOAT16) : NULL;
    uint16_t *hw = hg ? host_random16(N, 0.5f, 1.5f, PN_BFLOAT16) : NULL;
    uint16_t *hb = hw ? host_random16(N, -0.5f, 0.5f, PN_BFLOAT16) : NULL;
    graph_ctx c = {.hx = hx, .hw = hw, .hb = hb, .hg = hg};
    copy_ctx copy = {0};
    double xb = (double)(R * N) * 2.0, vb = (double)N * 2.0;
    /* bytes: x, weight (and bias) read, y written; backward: x, g, weight read, dx, dweight written */
    const double bytes[3] = {2 * xb + 3 * vb, 2 * xb + 2 * vb, 3 * xb + 2 * vb};
    const int which[3] = {G_LAYER_NORM, G_RMS_NORM, G_RMS_NORM_BWD};
    if (hb && copy_setup(&copy, hx, (size_t)xb) == 0) {
        c.x = gpu_array(hx, shape, 2, PN_BFLOAT16);
        c.g = c.x ? gpu_array(hg, shape, 2, PN_BFLOAT16) : NULL;
        c.w = c.g ? gpu_array(hw, &N, 1, PN_BFLOAT16) : NULL;
        c.b = c.w ? gpu_array(hb, &N, 1, PN_BFLOAT16) : NULL;
        c.rms = c.b ? pn_closure_new(rms_fn, NULL, NULL) : NULL;
    }
    if (!c.rms) {
        report_error(names[0]);
        goto done;
    }
    for (int k = 0; k < 3; k++) {
        int64_t fb0 = pnC_gpu_fallback_count();
        c.which = which[k];
        c.hb = which[k] == G_LAYER_NORM ? hb : NULL;
        bool ok = norm_check(&c);
        bw_figure(names[k], ok, run_graph, &c, bytes[k], &copy, 2 * xb, "d2d_copy", fb0);
    }
done:
    pn_closure_release(c.rms);
    pn_release(c.x);
    pn_release(c.g);
    pn_release(c.w);
    pn_release(c.b);
    copy_free(&copy);
    free(hx);
    free(hg);
    free(hw);
    free(hb);
    pn_clear_error();
}

/* gather_rows_f16: pn_take of S.lookups rows of a (S.table_rows, S.gather_cols) float16 table
 * (an embedding lookup), against a copy of the result's size; scatter_add_rows_f32: its
 * backward's shape, pn_scatter (add) of S.lookups rows of S.scatter_cols float32 into a float32
 * table (a new array: the table is read and the result written), against a copy of the table.
 * The same int32 indices for both: every 8th among the first HOT_ROWS rows (repeated), the
 * rest uniform over the table. */
static void bench_indexing(void)
{
    int64_t T = S.table_rows, K = S.lookups, Cg = S.gather_cols, Cs = S.scatter_cols;
    int32_t *hidx = malloc((size_t)K * sizeof(int32_t));
    graph_ctx c = {.hidx = hidx};
    copy_ctx copy = {0};
    void *htab = NULL, *hupd = NULL;
    const char *name = "gather_rows_f16";
    double idx_b = (double)K * 4.0, out_b = (double)(K * Cg) * 2.0, tab_b = (double)(T * Cs) * 4.0,
           upd_b = (double)(K * Cs) * 4.0;
    int64_t fb0;
    bool ok;
    if (!hidx) goto fail;
    for (int64_t i = 0; i < K; i++)
        hidx[i] = (int32_t)(rng_next() % (uint64_t)(i % 8 == 0 ? HOT_ROWS : T));
    c.idx = gpu_array(hidx, &K, 1, PN_INT32);
    htab = c.idx ? host_random16(T * Cg, -1.0f, 1.0f, PN_FLOAT16) : NULL;
    if (!htab || copy_setup(&copy, htab, (size_t)(K * Cg) * 2) != 0) goto fail;
    c.table = gpu_array(htab, (int64_t[]){T, Cg}, 2, PN_FLOAT16);
    if (!c.table) goto fail;
    c.htab = htab;
    c.which = G_GATHER;
    fb0 = pnC_gpu_fallback_count();
    ok = index_check(&c);
    bw_figure(name, ok, run_graph, &c, 2 * out_b + idx_b, &copy, 2 * out_b, "d2d_copy", fb0);

    pn_release(c.table);
    c.table = NULL;
    copy_free(&copy);
    free(htab);
    name = "scatter_add_rows_f32";
    htab = host_random(T * Cs, -1.0f, 1.0f);
    hupd = htab ? host_random(K * Cs, -1.0f, 1.0f) : NULL;
    if (!hupd || copy_setup(&copy, htab, (size_t)(T * Cs) * 4) != 0) goto fail;
    c.table = gpu_array(htab, (int64_t[]){T, Cs}, 2, PN_FLOAT32);
    c.upd = c.table ? gpu_array(hupd, (int64_t[]){K, 1, Cs}, 3, PN_FLOAT32) : NULL;
    if (!c.upd) goto fail;
    c.htab = htab;
    c.hupd = hupd;
    c.which = G_SCATTER_ADD;
    fb0 = pnC_gpu_fallback_count();
    ok = index_check(&c);
    bw_figure(name, ok, run_graph, &c, 2 * tab_b + upd_b + idx_b, &copy, 2 * tab_b, "d2d_copy",
              fb0);
    goto done;
fail:
    report_error(name);
done:
    pn_release(c.table);
    pn_release(c.idx);
    pn_release(c.upd);
    copy_free(&copy);
    free(hidx);
    free(htab);
    free(hupd);
    pn_clear_error();
}

/* ───────────────────────────── quantized matmul ───────────────────────────── */
/* x @ W^T with W (qmm_n, qmm_n) quantized to 4 bits, affine, groups of 64, bfloat16 x, scales
 * and biases (mx.quantized_matmul as a quantized language model calls it).
 * qmv_bf16_4bit_N: one row of x (a decoding step), GB/s of the bytes read (packed weights,
 * scales, biases, x) and written, against a device copy of the quantized weight's bytes
 * (read+write counted). qmm_bf16_4bit_MxN: qmm_m rows (a prompt), TFLOP/s against pn_matmul of
 * the same x with the dequantized bfloat16 W in the same run (the ratio is the speed of the
 * quantized product over the dense one's). Both results are first checked against the dense
 * product in float32. */

typedef struct {
    pn_array *x, *wq, *scales, *biases, *w; /* w: the dequantized W (bfloat16) */
    bool dense;
} qmm_ctx;

static pn_array *qmm_op(const qmm_ctx *c)
{
    return c->dense ? pn_matmul(c->x, pn_transpose(c->w, NULL, 0))
                    : pn_quantized_matmul(c->x, c->wq, c->scales, c->biases, true, 64, 4, "affine");
}

static int run_qmm(void *p)
{
    pn_scope_push();
    pn_array *y = qmm_op(p);
    int rc = y ? pn_eval(&y, 1) : -1;
    if (rc == 0) rc = gpu_sync();
    pn_scope_pop();
    return rc;
}

/* The quantized product against the dense one in float32 (largest difference within 1% of the
 * largest value). */
static bool qmm_check(qmm_ctx *c)
{
    pn_scope_push();
    qmm_ctx d = *c;
    d.dense = true;
    d.x = pn_astype(c->x, PN_FLOAT32);
    d.w = pn_astype(c->w, PN_FLOAT32);
    pn_array *y = pn_astype(qmm_op(c), PN_FLOAT32), *r = d.x && d.w ? qmm_op(&d) : NULL;
    bool ok = y && r && pn_eval(&y, 1) == 0 && pn_eval(&r, 1) == 0;
    const float *a = ok ? pn_data(y) : NULL, *b = ok ? pn_data(r) : NULL;
    double worst = 0, top = 0;
    for (int64_t i = 0; a && b && i < pn_size(r); i++) {
        double e = fabs((double)a[i] - b[i]), m = fabs((double)b[i]);
        worst = e > worst ? e : worst;
        top = m > top ? m : top;
    }
    ok = a && b && worst <= 0.01 * top;
    if (a && b && !ok)
        snprintf(bench_msg, sizeof bench_msg, "quantized and dense products differ by %g (largest value %g)",
                 worst, top);
    pn_scope_pop();
    return ok;
}

static void bench_quantized(void)
{
    const int64_t N = S.qmm_n, M = S.qmm_m;
    char qmv[64], qmm[64];
    snprintf(qmv, sizeof qmv, "qmv_bf16_4bit_%lld", (long long)N);
    snprintf(qmm, sizeof qmm, "qmm_bf16_4bit_%lldx%lld", (long long)M, (long long)N);
    uint16_t *hw = host_random16(N * N, -1.0f, 1.0f, PN_BFLOAT16);
    uint16_t *hx = hw ? host_random16(M * N, -1.0f, 1.0f, PN_BFLOAT16) : NULL;
    qmm_ctx c = {0};
    copy_ctx copy = {0};
    pn_array *w = hx ? gpu_array(hw, (int64_t[]){N, N}, 2, PN_BFLOAT16) : NULL, *q[3] = {NULL, NULL, NULL};
    if (w && pn_quantize(w, 64, 4, "affine", NULL, q) == 0 && pn_eval(q, 3) == 0) {
        c.wq = q[0], c.scales = q[1], c.biases = q[2];
        c.w = pn_dequantize(q[0], q[1], q[2], 64, 4, "affine", NULL, PN_BFLOAT16);
        if (c.w && pn_eval(&c.w, 1) != 0) c.w = NULL;
    }
    const double wbytes = (double)(N * N) / 2 + 2.0 * 2.0 * (double)(N * N / 64);
    void *hq = c.w ? calloc(1, (size_t)wbytes) : NULL; /* the copy baseline's bytes */
    if (!hq || copy_setup(&copy, hq, (size_t)wbytes) != 0) {
        report_error(qmv);
        report_error(qmm);
        goto done;
    }
    for (int prefill = 0; prefill < 2; prefill++) {
        const int64_t rows = prefill ? M : 1;
        const char *name = prefill ? qmm : qmv;
        int64_t fb0 = pnC_gpu_fallback_count();
        pn_release(c.x);
        c.x = gpu_array(hx, (int64_t[]){rows, N}, 2, PN_BFLOAT16);
        c.dense = false;
        bool ok = c.x && qmm_check(&c);
        if (!prefill) {
            bw_figure(name, ok, run_qmm, &c, wbytes + 4.0 * (double)N, &copy, 2 * wbytes, "d2d_copy", fb0);
            continue;
        }
        qmm_ctx dense = c;
        dense.dense = true;
        double t = -1, td = -1;
        if (!ok || time_pair(run_qmm, &c, run_qmm, &dense, &t, &td) != 0) {
            report_error(name);
            continue;
        }
        double flops = 2.0 * (double)rows * (double)N * (double)N;
        report(name, flops / t / 1e12, "TFLOP/s", td / t, "bf16_matmul_dequantized");
        NOTE("median %.3f ms; dense bf16 matmul %.3f ms\n", t * 1e3, td * 1e3);
        note_fallbacks(fb0);
    }
done:
    pn_release(c.x);
    pn_release(c.w);
    pn_release(w);
    for (int i = 0; i < 3; i++) pn_release(q[i]);
    copy_free(&copy);
    free(hq);
    free(hw);
    free(hx);
    pn_clear_error();
}

/* ───────────────────────────── attention ───────────────────────────── */

typedef struct {
    pn_array *q, *k, *v, *cot;
    const char *mask; /* "" or "causal" */
    bool tensor_cores, backward; /* tensor_cores: the fast paths (pnG_sdpa_set_fast_paths) on */
    size_t smem_limit;           /* pnG_sdpa_set_smem_limit's cap while it runs; 0: the device's */
} sdpa_ctx;

static int sdpa_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    const sdpa_ctx *c = ctx;
    out[0] = pn_fast_scaled_dot_product_attention(in[0], in[1], in[2], 1.0 / sqrt((double)S.attn_dim),
                                                  c->mask, NULL);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* The forward, or (backward) the forward and the gradients of q, k and v for the cotangent
 * cot, evaluated. */
static int run_sdpa(void *p)
{
    sdpa_ctx *c = p;
    bool was = pnG_sdpa_set_fast_paths(c->tensor_cores);
    size_t cap = pnG_sdpa_set_smem_limit(c->smem_limit);
    pn_array *r[4] = {NULL, NULL, NULL, NULL}, *x[3] = {c->q, c->k, c->v};
    int rc = -1, n = 0;
    pn_scope_push();
    if (c->backward) {
        pn_closure *f = pn_closure_new(sdpa_fn, c, NULL);
        rc = f ? pn_vjp(f, 3, x, 1, &c->cot, &n, &r[0], &r[1]) : -1;
        pn_closure_release(f);
        if (rc == 0) rc = pn_eval(r, 4);
    } else {
        rc = sdpa_fn(c, 3, x, &n, r) == 0 ? pn_eval(r, 1) : -1;
    }
    if (rc == 0) rc = gpu_sync();
    pn_scope_pop();
    pnG_sdpa_set_smem_limit(cap);
    pnG_sdpa_set_fast_paths(was);
    return rc;
}

/* sdpa_bf16[_causal]_BxHxLxD: the fused attention forward (pn_fast_scaled_dot_product_attention,
 * bfloat16, no mask or causal) on the tensor cores against the CUDA-core kernels in the same
 * run, both results first compared (largest difference over the output's largest value);
 * sdpa_fwd_bwd_bf16...: the forward and the gradients of q, k and v (pn_vjp) likewise;
 * sdpa_two_buffers_bf16...: the tensor-core forward with the device's shared memory (the next
 * key / value chunk copied in by cp.async during this one's products) against the same under
 * the default 48 KiB, where at 128 dims only one buffer fits (copies between chunks; at 64
 * dims two fit either way, and the ratio is 1).
 * PyTorch's scaled_dot_product_attention in bench_torch.py. TFLOP/s count the forward's two
 * products (3.5 times that for forward and backward), halved for causal. */
static void bench_sdpa(void)
{
    const int64_t B = S.attn_batch, H = S.attn_heads, L = S.attn_len, D = S.attn_dim;
    const int64_t shape[4] = {B, H, L, D}, n = B * H * L * D;
    uint16_t *h[3] = {NULL, NULL, NULL};
    sdpa_ctx c = {0};
    for (int i = 0; i < 3; i++) h[i] = host_random16(n, -1.0f, 1.0f, PN_BFLOAT16);
    if (h[0] && h[1] && h[2]) {
        c.q = gpu_array(h[0], shape, 4, PN_BFLOAT16);
        c.k = c.q ? gpu_array(h[1], shape, 4, PN_BFLOAT16) : NULL;
        c.v = c.k ? gpu_array(h[2], shape, 4, PN_BFLOAT16) : NULL;
        c.cot = c.v ? gpu_array(h[0], shape, 4, PN_BFLOAT16) : NULL;
    }
    for (int causal = 0; causal < 2; causal++) {
        char name[96];
        snprintf(name, sizeof name, "sdpa_bf16%s_%lldx%lldx%lldx%lld", causal ? "_causal" : "",
                 (long long)B, (long long)H, (long long)L, (long long)D);
        if (!c.v) {
            report_error(name);
            continue;
        }
        c.mask = causal ? "causal" : "";
        int64_t fb0 = pnC_gpu_fallback_count(), tc0 = pnG_sdpa_tensor_core_count();
        pn_array *o[2] = {NULL, NULL};
        double worst = 0, top = 0, t = -1, tb = -1;
        bool ok = true;
        for (int tc = 0; tc < 2 && ok; tc++) {
            bool was = pnG_sdpa_set_fast_paths(tc == 1);
            o[tc] = pn_astype(pn_fast_scaled_dot_product_attention(c.q, c.k, c.v, 1.0 / sqrt((double)D),
                                                                   c.mask, NULL), PN_FLOAT32);
            ok = o[tc] && pn_eval(&o[tc], 1) == 0; /* evaluated under the setting */
            pnG_sdpa_set_fast_paths(was);
        }
        const float *a = ok ? pn_data(o[0]) : NULL, *b = ok ? pn_data(o[1]) : NULL;
        for (int64_t i = 0; a && b && i < n; i++) {
            double d = fabs((double)a[i] - b[i]), m = fabs((double)a[i]);
            worst = d > worst ? d : worst;
            top = m > top ? m : top;
        }
        pn_release(o[0]);
        pn_release(o[1]);
        if (!a || !b) {
            report_error(name);
            continue;
        }
        if (pnG_sdpa_tensor_core_count() == tc0) {
            snprintf(bench_msg, sizeof bench_msg, "the tensor-core forward did not run");
            report_error(name);
            continue;
        }
        if (worst > 0.02 * top) {
            snprintf(bench_msg, sizeof bench_msg, "tensor cores and CUDA cores differ by %g (largest value %g)",
                     worst, top);
            report_error(name);
            continue;
        }
        sdpa_ctx ct = c, cc = c;
        ct.tensor_cores = true;
        cc.tensor_cores = false;
        if (time_pair(run_sdpa, &ct, run_sdpa, &cc, &t, &tb) != 0) {
            report_error(name);
            continue;
        }
        double flops = 4.0 * (double)(B * H) * (double)L * (double)L * (double)D * (causal ? 0.5 : 1.0);
        report(name, flops / t / 1e12, "TFLOP/s", tb / t, "cuda_cores");
        NOTE("median %.3f ms (CUDA cores %.3f ms); largest difference %.3g of the largest value %.3g\n",
             t * 1e3, tb * 1e3, worst, top);
        snprintf(name, sizeof name, "sdpa_two_buffers_bf16%s_%lldx%lldx%lldx%lld", causal ? "_causal" : "",
                 (long long)B, (long long)H, (long long)L, (long long)D);
        sdpa_ctx one = ct;
        one.smem_limit = 48 * 1024;
        if (time_pair(run_sdpa, &ct, run_sdpa, &one, &t, &tb) != 0) {
            report_error(name);
            continue;
        }
        report(name, flops / t / 1e12, "TFLOP/s", tb / t, "one_buffer");
        /* forward and backward (value and the three gradients): 2.5 times the forward's flops
         * as flash attention counts them (the backward's five products over the forward's two) */
        snprintf(name, sizeof name, "sdpa_fwd_bwd_bf16%s_%lldx%lldx%lldx%lld", causal ? "_causal" : "",
                 (long long)B, (long long)H, (long long)L, (long long)D);
        ct.backward = cc.backward = true;
        if (!c.cot || time_pair(run_sdpa, &ct, run_sdpa, &cc, &t, &tb) != 0) {
            report_error(name);
            continue;
        }
        report(name, 3.5 * flops / t / 1e12, "TFLOP/s", tb / t, "cuda_cores");
        NOTE("median %.3f ms (CUDA cores %.3f ms)\n", t * 1e3, tb * 1e3);
        note_fallbacks(fb0);
    }
    pn_release(c.q);
    pn_release(c.k);
    pn_release(c.v);
    pn_release(c.cot);
    for (int i = 0; i < 3; i++) free(h[i]);
    pn_clear_error();
}

/* sdpa_decode_bf16_...: one new token's attention over a long cache, grouped-query heads
 * (B = 4 attn_batch, Hq = 2 attn_heads, Hkv = attn_heads / 2, Lk = 2 attn_len, the same head
 * dim), in GB/s of the keys and values read: the split-key decoding kernels against the
 * CUDA-core tile kernel, both results compared first; PyTorch in bench_torch.py. */
static void bench_sdpa_decode(void)
{
    const int64_t B = 4 * S.attn_batch, Hq = 2 * S.attn_heads, Hkv = S.attn_heads / 2, L = 2 * S.attn_len,
                  D = S.attn_dim;
    const int64_t qs[4] = {B, Hq, 1, D}, ks[4] = {B, Hkv, L, D};
    char name[96];
    snprintf(name, sizeof name, "sdpa_decode_bf16_%lldx%lldx%lldx%lldx%lld", (long long)B, (long long)Hq,
             (long long)Hkv, (long long)L, (long long)D);
    uint16_t *hq = host_random16(B * Hq * D, -1.0f, 1.0f, PN_BFLOAT16);
    uint16_t *hk = hq ? host_random16(B * Hkv * L * D, -1.0f, 1.0f, PN_BFLOAT16) : NULL;
    uint16_t *hv = hk ? host_random16(B * Hkv * L * D, -1.0f, 1.0f, PN_BFLOAT16) : NULL;
    sdpa_ctx c = {.mask = ""};
    int64_t fb0 = pnC_gpu_fallback_count(), d0 = pnG_sdpa_decode_count();
    double worst = 0, top = 0, t = -1, tb = -1;
    pn_array *o[2] = {NULL, NULL};
    if (hv) {
        c.q = gpu_array(hq, qs, 4, PN_BFLOAT16);
        c.k = c.q ? gpu_array(hk, ks, 4, PN_BFLOAT16) : NULL;
        c.v = c.k ? gpu_array(hv, ks, 4, PN_BFLOAT16) : NULL;
    }
    for (int fast = 0; fast < 2 && c.v; fast++) {
        bool was = pnG_sdpa_set_fast_paths(fast == 1);
        o[fast] = pn_astype(pn_fast_scaled_dot_product_attention(c.q, c.k, c.v, 1.0 / sqrt((double)D), "", NULL),
                            PN_FLOAT32);
        if (o[fast] && pn_eval(&o[fast], 1) != 0) pn_release(o[fast]), o[fast] = NULL;
        pnG_sdpa_set_fast_paths(was);
    }
    const float *a = o[0] && o[1] ? pn_data(o[0]) : NULL, *b = a ? pn_data(o[1]) : NULL;
    for (int64_t i = 0; a && b && i < B * Hq * D; i++) {
        double d = fabs((double)a[i] - b[i]), m = fabs((double)a[i]);
        worst = d > worst ? d : worst;
        top = m > top ? m : top;
    }
    if (!a || !b) goto fail;
    if (pnG_sdpa_decode_count() == d0) {
        snprintf(bench_msg, sizeof bench_msg, "the decoding kernels did not run");
        goto fail;
    }
    if (worst > 0.02 * top) {
        snprintf(bench_msg, sizeof bench_msg, "decoding and tile kernels differ by %g (largest value %g)", worst, top);
        goto fail;
    }
    sdpa_ctx cf = c, ct = c;
    cf.tensor_cores = true; /* run_sdpa's switch: the fast paths on */
    ct.tensor_cores = false;
    if (time_pair(run_sdpa, &cf, run_sdpa, &ct, &t, &tb) != 0) goto fail;
    double bytes = 2.0 * (double)(B * Hkv * L * D) * 2.0;
    report(name, bytes / t / 1e9, "GB/s", tb / t, "tile_kernel");
    NOTE("median %.3f ms (tile kernel %.3f ms); largest difference %.3g of the largest value %.3g\n", t * 1e3,
         tb * 1e3, worst, top);
    note_fallbacks(fb0);
    goto done;
fail:
    report_error(name);
done:
    pn_release(o[0]);
    pn_release(o[1]);
    pn_release(c.q);
    pn_release(c.k);
    pn_release(c.v);
    free(hq);
    free(hk);
    free(hv);
    pn_clear_error();
}

/* ───────────────────────────── main ───────────────────────────── */

static const struct {
    const char *figures;
    void (*run)(void);
} groups[] = {
    {"add_f32 sum_f32 softmax", bench_bandwidth},
    {"sgemm bf16_gemm", bench_gemms},
    {"mlp_step", bench_mlp},
    {"cnn_step", bench_cnn},
    {"mlp_step_graphs", bench_mlp_graphs},
    {"cnn_step_graphs", bench_cnn_graphs},
    {"op_overhead_gpu", bench_op_overhead},
    {"op_overhead_gpu_graphs", bench_op_overhead_graphs},
    {"graph_overhead_gpu", bench_graph_overhead},
    {"h2d_copy", bench_h2d},
    {"compile_gelu_gpu", bench_compile_gelu},
    {"layer_norm rms_norm", bench_norms},
    {"gather_rows scatter_add_rows", bench_indexing},
    {"sdpa_bf16", bench_sdpa},
    {"sdpa_decode", bench_sdpa_decode},
    {"qmv qmm", bench_quantized},
};

/* ponte_bench_gpu [--quick] [WORD...]: runs every group, or those whose figure names contain a
 * WORD, on the GPU. Exits 1 when there is no usable GPU. */
int main(int argc, char **argv)
{
    double t0 = now_s();
    bool quick = false;
    int nwords = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: ponte_bench_gpu [--quick] [WORD...]\n");
            return 2;
        } else nwords++;
    }
    S = quick ? QUICK : FULL;
    printf("Ponte %d.%d.%d GPU benchmarks%s\n", PONTE_VERSION_MAJOR, PONTE_VERSION_MINOR,
           PONTE_VERSION_PATCH, quick ? " (--quick sizes)" : "");
    if (!pn_gpu_available()) {
        printf("ponte_bench_gpu: no usable GPU: %s\n", pn_gpu_unavailable_reason());
        return 1;
    }
    if (pn_set_default_device(GPU) != 0) {
        printf("ponte_bench_gpu: %s\n", pn_last_error_message());
        return 1;
    }
    STREAM = pn_default_stream(GPU).index;
    /* full float32 everywhere (as PyTorch's default) except the TF32 GEMM figure */
    pn_set_tf32_enabled(false);
    if (pnG_simulated())
        printf("device: the SIMULATED GPU (src/backend/cuda/sim): timings mean nothing, the "
               "checks do%s\n", quick ? "" : "; use --quick");
    else
        printf("device: CUDA GPU 0 (nvidia-smi names it)\n");
    fflush(stdout);
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        bool run = nwords == 0;
        for (int i = 1; i < argc && !run; i++)
            run = argv[i][0] != '-' && strstr(groups[g].figures, argv[i]) != NULL;
        if (run) groups[g].run();
    }
    printf("total %.1f s\n", now_s() - t0);
    return 0;
}
