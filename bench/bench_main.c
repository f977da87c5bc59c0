/* bench_main.c — Ponte's benchmark program (`make bench`): each figure times a Ponte op
 * against a baseline measured in the same run (plain OpenMP C loops, cblas_sgemm) and prints
 *   bench NAME: VALUE UNIT (ratio R vs BASELINE)
 * Figures, baselines and targets are described in docs/benchmarks.md. */
#define _GNU_SOURCE
#include "ponte.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ───────────────────────────── timing and reporting ───────────────────────────── */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One timed repetition: returns 0, or -1 with a Ponte error (or a message in bench_msg). */
typedef int (*bench_fn)(void *ctx);

/* Our own failure message (a wrong result, a missing dependency); "" when the failure is a
 * Ponte error. */
static char bench_msg[256];

/* Runs fa and fb (fb may be NULL) alternately, in alternating order, so that both see the
 * same share of a busy machine: `warmup` untimed rounds, then `reps` timed rounds or as many
 * as fit in `budget` seconds (at least one). The best time of each goes to *ta and *tb.
 * Returns 0, or -1 when a run fails. */
static int bench_pair(bench_fn fa, void *ca, bench_fn fb, void *cb, int warmup, int reps,
                      double budget, double *ta, double *tb)
{
    for (int i = 0; i < warmup; i++)
        if (fa(ca) != 0 || (fb && fb(cb) != 0)) return -1;
    double best_a = INFINITY, best_b = INFINITY, start = now_s();
    for (int i = 0; i < reps; i++) {
        /* Odd rounds run b first, so neither side always follows the other. */
        bool swap = fb && (i & 1);
        double t0 = now_s();
        if ((swap ? fb(cb) : fa(ca)) != 0) return -1;
        double t1 = now_s();
        if (fb && (swap ? fa(ca) : fb(cb)) != 0) return -1;
        double t2 = now_s();
        double ta_i = swap ? t2 - t1 : t1 - t0, tb_i = swap ? t1 - t0 : t2 - t1;
        if (ta_i < best_a) best_a = ta_i;
        if (tb_i < best_b) best_b = tb_i;
        if (t2 - start > budget) break;
    }
    *ta = best_a;
    if (tb) *tb = best_b;
    return 0;
}

/* Prints one figure in the fixed machine-readable form. */
static void report(const char *name, double value, const char *unit, double ratio,
                   const char *baseline)
{
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

/* ───────────────────────────── data ───────────────────────────── */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float rand_uniform(void) /* in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* An evaluated f32 array of uniform [-1, 1) values (NULL with an error). */
static pn_array *random_f32(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *tmp = malloc((size_t)n * sizeof(float));
    if (!tmp) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "bench: host buffer of %lld floats", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) tmp[i] = rand_uniform();
    pn_array *a = pn_array_from_data(tmp, shape, ndim, PN_FLOAT32);
    free(tmp);
    if (a && pn_eval(&a, 1) != 0) {
        pn_release(a);
        return NULL;
    }
    return a;
}

/* A page-touched host buffer (so the baseline does not pay first-touch faults). */
static float *host_buffer(int64_t n)
{
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!p) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) p[i] = 0.0f;
    return p;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ───────────────────────────── machine ───────────────────────────── */

static void print_machine(void)
{
    char model[256] = "unknown", line[1024];
    int avx2 = 0, fma = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        int got_model = 0, got_flags = 0;
        while (fgets(line, sizeof line, f) && !(got_model && got_flags)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            if (!got_model && strncmp(line, "model name", 10) == 0) {
                snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = 0;
                got_model = 1;
            } else if (!got_flags && strncmp(line, "flags", 5) == 0) {
                avx2 = strstr(colon, " avx2") != NULL;
                fma = strstr(colon, " fma") != NULL;
                got_flags = 1;
            }
        }
        fclose(f);
    }
    double mem_gib = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) /
                     (1024.0 * 1024.0 * 1024.0);
    double load[3] = {0, 0, 0};
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("machine: %ld cores online, CPU \"%s\"%s%s, %.1f GiB memory\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, avx2 ? ", avx2" : "", fma ? ", fma" : "",
           mem_gib);
    /* OpenBLAS's own entry points, when the BLAS loaded is OpenBLAS (the libblas.so that
     * Ponte links exports only the standard interface, so look them up at run time). */
    int (*blas_threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    char *(*blas_config)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
    printf("machine: OpenMP threads %d, BLAS threads %d, load average %.2f %.2f %.2f\n",
           omp_get_max_threads(), blas_threads ? blas_threads() : -1, load[0], load[1], load[2]);
    printf("machine: BLAS %s\n", blas_config ? blas_config() : "(not OpenBLAS)");
    fflush(stdout);
}

/* ───────────────────────────── add_f32_16M, sum_f32_16M ───────────────────────────── */

#define BIG_N ((int64_t)1 << 24)

typedef struct {
    pn_array *a, *b;
    const float *ap, *bp;
    float *cp;
    double sum; /* the baseline's result, kept so the loop is not optimized away */
} stream_ctx;

static int run_pn_add(void *p)
{
    stream_ctx *c = p;
    pn_array *r = pn_add(c->a, c->b);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    pn_release(r);
    return rc;
}

static int run_c_add(void *p)
{
    stream_ctx *c = p;
    const float *restrict a = c->ap, *restrict b = c->bp;
    float *restrict out = c->cp;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < BIG_N; i++) out[i] = a[i] + b[i];
    return 0;
}

static int run_pn_sum(void *p)
{
    stream_ctx *c = p;
    pn_array *r = pn_sum(c->a, NULL, 0, false);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    pn_release(r);
    return rc;
}

/* A threaded, vectorized read of n floats: 32 independent float lanes per thread (four
 * AVX2 registers), combined in double at the end. */
static double c_sum(const float *x, int64_t n)
{
    double total = 0.0;
    int64_t nblocks = n / 32;
#pragma omp parallel reduction(+ : total)
    {
        float acc[32] = {0};
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const float *q = x + blk * 32;
            for (int j = 0; j < 32; j++) acc[j] += q[j];
        }
        double s = 0.0;
        for (int j = 0; j < 32; j++) s += acc[j];
        total += s;
    }
    for (int64_t i = nblocks * 32; i < n; i++) total += x[i];
    return total;
}

static int run_c_sum(void *p)
{
    stream_ctx *c = p;
    c->sum = c_sum(c->ap, BIG_N);
    return 0;
}

static void bench_add_and_sum(void)
{
    stream_ctx c = {0};
    int64_t shape[1] = {BIG_N};
    c.a = random_f32(shape, 1);
    c.b = random_f32(shape, 1);
    c.cp = host_buffer(BIG_N);
    if (!c.a || !c.b || !c.cp) {
        if (!c.cp && !pn_last_error()) snprintf(bench_msg, sizeof bench_msg, "out of memory");
        report_error("add_f32_16M");
        report_error("sum_f32_16M");
        goto done;
    }
    c.ap = pn_data(c.a);
    c.bp = pn_data(c.b);

    /* add: check one result against the C loop's, then time both. */
    {
        double tp = -1, tc = -1;
        run_c_add(&c);
        pn_array *r = pn_add(c.a, c.b);
        const float *rp = r ? pn_data(r) : NULL;
        int64_t bad = -1;
        if (rp)
            for (int64_t i = 0; i < BIG_N; i++)
                if (rp[i] != c.cp[i]) {
                    bad = i;
                    break;
                }
        pn_release(r);
        if (rp && bad >= 0)
            snprintf(bench_msg, sizeof bench_msg, "wrong result at element %lld",
                     (long long)bad);
        else if (rp && bench_pair(run_pn_add, &c, run_c_add, &c, 2, 20, 4.0, &tp, &tc) != 0)
            tp = -1;
        if (tp < 0) {
            report_error("add_f32_16M");
        } else {
            double bytes = 3.0 * 4.0 * (double)BIG_N;
            report("add_f32_16M", bytes / tp / 1e9, "GB/s", tc / tp, "c_omp_loop");
            NOTE("pn_add+eval %.2f ms, C loop %.2f ms (%.2f GB/s)\n", tp * 1e3, tc * 1e3,
                 bytes / tc / 1e9);
        }
    }

    /* sum */
    {
        double tp = -1, tc = -1, ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < BIG_N; i++) {
            ref += c.ap[i];
            mag += fabs(c.ap[i]);
        }
        pn_array *r = pn_sum(c.a, NULL, 0, false);
        double got = r ? pn_item(r) : NAN;
        int ok = r && pn_last_error() == PN_OK;
        pn_release(r);
        if (ok && !(fabs(got - ref) <= 1e-5 * mag))
            snprintf(bench_msg, sizeof bench_msg, "wrong result %.6g, expected %.6g", got, ref);
        else if (ok && bench_pair(run_pn_sum, &c, run_c_sum, &c, 2, 20, 3.0, &tp, &tc) != 0)
            tp = -1;
        if (tp < 0) {
            report_error("sum_f32_16M");
        } else {
            double bytes = 4.0 * (double)BIG_N;
            report("sum_f32_16M", bytes / tp / 1e9, "GB/s", tc / tp, "c_omp_read");
            NOTE("pn_sum+eval %.2f ms, C read %.2f ms (%.2f GB/s)\n", tp * 1e3, tc * 1e3,
                 bytes / tc / 1e9);
        }
    }
done:
    pn_release(c.a);
    pn_release(c.b);
    free(c.cp);
    pn_clear_error();
}

/* ───────────────────────────── exp_f32_16M ───────────────────────────── */

/* pn_exp / pn_sin / pn_tanh over BIG_N floats (vmath.h's vector math) against the plain
 * OpenMP loop over libm's expf / sinf / tanhf (the kernels' earlier behaviour). */
typedef struct {
    pn_array *(*op)(pn_array *);
    float (*libm)(float);
    pn_array *a;
    const float *ap;
    float *cp;
} tr_ctx;

static int run_pn_unary(void *p)
{
    tr_ctx *c = p;
    pn_array *r = c->op(c->a);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    pn_release(r);
    return rc;
}

static int run_c_libm(void *p)
{
    tr_ctx *c = p;
    const float *restrict a = c->ap;
    float *restrict out = c->cp;
    float (*f)(float) = c->libm;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < BIG_N; i++) out[i] = f(a[i]);
    return 0;
}

static void bench_transcendentals(void)
{
    const struct {
        const char *name;
        pn_array *(*op)(pn_array *);
        float (*libm)(float);
    } ops[3] = {{"exp", pn_exp, expf}, {"sin", pn_sin, sinf}, {"tanh", pn_tanh, tanhf}};
    int64_t shape[1] = {BIG_N};
    tr_ctx c = {0};
    c.a = random_f32(shape, 1); /* uniform in [-1, 1) */
    c.cp = host_buffer(BIG_N);
    if (!c.a || !c.cp) {
        if (!c.cp && !pn_last_error()) snprintf(bench_msg, sizeof bench_msg, "out of memory");
        report_error("exp_f32_16M");
        goto done;
    }
    c.ap = pn_data(c.a);
    for (int k = 0; k < 3; k++) {
        double tp = -1, tc = -1;
        c.op = ops[k].op;
        c.libm = ops[k].libm;
        run_c_libm(&c);
        pn_array *r = c.op(c.a); /* within 4 ulp of libm everywhere */
        const float *rp = r && pn_eval(&r, 1) == 0 ? pn_data(r) : NULL;
        for (int64_t i = 0; rp && i < BIG_N && !bench_msg[0]; i++)
            if (!(fabsf(rp[i] - c.cp[i]) <= 5e-7f * fabsf(c.cp[i]) + 1e-37f))
                snprintf(bench_msg, sizeof bench_msg, "%s(%g) = %.9g, libm %.9g", ops[k].name,
                         (double)c.ap[i], (double)rp[i], (double)c.cp[i]);
        pn_release(r);
        if (rp && !bench_msg[0] &&
            bench_pair(run_pn_unary, &c, run_c_libm, &c, 2, 20, 4.0, &tp, &tc) != 0)
            tp = -1;
        if (!rp || bench_msg[0] || tp < 0) {
            if (k == 0) report_error("exp_f32_16M");
            else {
                NOTE("%s: %s\n", ops[k].name, bench_msg[0] ? bench_msg : pn_last_error_message());
                bench_msg[0] = 0;
                pn_clear_error();
            }
            continue;
        }
        double bytes = 2.0 * 4.0 * (double)BIG_N;
        if (k == 0) report("exp_f32_16M", bytes / tp / 1e9, "GB/s", tc / tp, "c_omp_expf");
        NOTE("pn_%s+eval %.2f ms (%.2f GB/s), C loop over %sf %.2f ms: ratio %.2f\n",
             ops[k].name, tp * 1e3, bytes / tp / 1e9, ops[k].name, tc * 1e3, tc / tp);
    }
done:
    pn_release(c.a);
    free(c.cp);
    pn_clear_error();
}

/* ───────────────────────────── sgemm, bf16 gemm ───────────────────────────── */

typedef struct {
    int n;
    pn_array *a, *b;
    const float *ap, *bp;
    float *cp;
} gemm_ctx;

static int run_pn_matmul(void *p)
{
    gemm_ctx *g = p;
    pn_array *r = pn_matmul(g->a, g->b);
    if (!r) return -1;
    int rc = pn_eval(&r, 1);
    pn_release(r);
    return rc;
}

static int run_cblas(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->ap, g->n,
                g->bp, g->n, 0.0f, g->cp, g->n);
    return 0;
}

/* Largest |x - ref| over n elements, and the largest |ref| into *mag. */
static double max_abs_diff(const float *x, const float *ref, int64_t n, double *mag)
{
    double d = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)x[i] - (double)ref[i]);
        if (!(e <= d)) d = e; /* NaN propagates */
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    *mag = m;
    return d;
}

/* Times pn_matmul on f32 n×n inputs against cblas_sgemm; returns Ponte's GFLOP/s (or -1),
 * and keeps the inputs and cblas's result in g for the bf16 figure. */
static double bench_sgemm(const char *name, gemm_ctx *g, int reps, double budget)
{
    int n = g->n;
    int64_t shape[2] = {n, n};
    double flops = 2.0 * (double)n * n * n;
    g->a = random_f32(shape, 2);
    g->b = random_f32(shape, 2);
    g->cp = host_buffer((int64_t)n * n);
    if (!g->a || !g->b || !g->cp) {
        if (!g->cp && !pn_last_error()) snprintf(bench_msg, sizeof bench_msg, "out of memory");
        report_error(name);
        return -1;
    }
    g->ap = pn_data(g->a);
    g->bp = pn_data(g->b);
    double tc = -1, tp = -1;
    run_cblas(g);
    pn_array *r = pn_matmul(g->a, g->b);
    const float *rp = r ? pn_data(r) : NULL;
    double mag = 0.0, diff = rp ? max_abs_diff(rp, g->cp, (int64_t)n * n, &mag) : 0.0;
    pn_release(r);
    if (rp && !(diff <= 1e-4 * mag + 1e-6))
        snprintf(bench_msg, sizeof bench_msg, "wrong result: max |diff| %.3g vs cblas (|max| %.3g)",
                 diff, mag);
    else if (rp && bench_pair(run_pn_matmul, g, run_cblas, g, 1, reps, budget, &tp, &tc) != 0)
        tp = -1;
    if (tp < 0) {
        report_error(name);
        return -1;
    }
    report(name, flops / tp / 1e9, "GFLOP/s", tc / tp, "cblas_sgemm");
    NOTE("pn_matmul+eval %.2f ms, cblas_sgemm %.2f ms (%.2f GFLOP/s)\n", tp * 1e3, tc * 1e3,
         flops / tc / 1e9);
    return flops / tp / 1e9;
}

static void gemm_free(gemm_ctx *g)
{
    pn_release(g->a);
    pn_release(g->b);
    free(g->cp);
    memset(g, 0, sizeof *g);
    pn_clear_error();
}

/* bf16 matmul at g->n (inputs: g's f32 inputs cast to bfloat16) vs the f32 pn_matmul rate on
 * g's inputs, timed alternately. */
static void bench_bf16(const char *name, gemm_ctx *g)
{
    int n = g->n;
    double flops = 2.0 * (double)n * n * n;
    gemm_ctx h = {.n = n};
    h.a = pn_astype(g->a, PN_BFLOAT16);
    h.b = pn_astype(g->b, PN_BFLOAT16);
    pn_array *ab[2] = {h.a, h.b};
    double tp = -1, tf = -1;
    if (h.a && h.b && pn_eval(ab, 2) == 0) {
        pn_array *r = pn_matmul(h.a, h.b);
        const uint16_t *rp = NULL;
        if (r && pn_array_dtype(r) != PN_BFLOAT16) {
            snprintf(bench_msg, sizeof bench_msg, "result dtype %s, expected bfloat16",
                     pn_dtype_name(pn_array_dtype(r)));
        } else if (r) {
            rp = pn_data(r);
        }
        if (rp) {
            /* Inputs rounded to 8 bits of mantissa, output too: compare loosely. */
            double d = 0.0, mag = 0.0;
            for (int64_t i = 0; i < (int64_t)n * n; i++) {
                double e = fabs((double)bf16_to_f32(rp[i]) - g->cp[i]);
                if (!(e <= d)) d = e;
                if (fabs(g->cp[i]) > mag) mag = fabs(g->cp[i]);
            }
            if (!(d <= 0.03 * mag))
                snprintf(bench_msg, sizeof bench_msg,
                         "wrong result: max |diff| %.3g vs f32 cblas (|max| %.3g)", d, mag);
            else if (bench_pair(run_pn_matmul, &h, run_pn_matmul, g, 1, 20, 5.0, &tp, &tf) != 0)
                tp = -1;
        }
        pn_release(r);
    }
    if (tp < 0) {
        report_error(name);
    } else {
        report(name, flops / tp / 1e9, "GFLOP/s", tf / tp, "pn_matmul_f32");
        NOTE("bf16 pn_matmul+eval %.2f ms, f32 pn_matmul+eval %.2f ms (%.2f GFLOP/s)\n",
             tp * 1e3, tf * 1e3, flops / tf / 1e9);
    }
    pn_release(h.a);
    pn_release(h.b);
    pn_clear_error();
}

static void bench_gemms(void)
{
    gemm_ctx g = {.n = 1024};
    bench_sgemm("sgemm_1024", &g, 20, 4.0);
    if (g.a && g.b && g.cp)
        bench_bf16("bf16_gemm_1024", &g);
    else {
        snprintf(bench_msg, sizeof bench_msg, "no f32 inputs (sgemm_1024 failed)");
        report_error("bf16_gemm_1024");
    }
    gemm_free(&g);

    g.n = 2048;
    bench_sgemm("sgemm_2048", &g, 10, 8.0);
    gemm_free(&g);
}

/* ───────────────────────────── op_overhead ───────────────────────────── */

#define CHAIN_LEN 10000

typedef struct {
    pn_array *x0, *one;
    double build_s, eval_s; /* best build and best eval time over the runs */
    double cpu_s;           /* best thread CPU time of a whole run (immune to preemption) */
    float result;
} overhead_ctx;

/* x = x0; CHAIN_LEN times x = pn_add(x, one), releasing each previous handle; then eval. */
static int run_pn_chain(void *p)
{
    overhead_ctx *c = p;
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    double t0 = now_s();
    pn_array *x = pn_retain(c->x0);
    for (int i = 0; i < CHAIN_LEN && x; i++) {
        pn_array *y = pn_add(x, c->one);
        pn_release(x);
        x = y;
    }
    if (!x) return -1;
    double t1 = now_s();
    int rc = pn_eval(&x, 1);
    double t2 = now_s();
    if (c->build_s == 0 || t1 - t0 < c->build_s) c->build_s = t1 - t0;
    if (c->eval_s == 0 || t2 - t1 < c->eval_s) c->eval_s = t2 - t1;
    if (rc == 0) {
        const float *v = pn_data(x);
        if (!v) rc = -1;
        else c->result = v[0];
    }
    pn_release(x);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    double cpu = (double)(cpu1.tv_sec - cpu0.tv_sec) + 1e-9 * (double)(cpu1.tv_nsec - cpu0.tv_nsec);
    if (c->cpu_s == 0 || cpu < c->cpu_s) c->cpu_s = cpu;
    return rc;
}

static void c_add_f32(const float *a, const float *b, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
/* Called through a volatile pointer so the compiler keeps every call. */
static void (*volatile c_add_ptr)(const float *, const float *, float *, int64_t) = c_add_f32;

static int run_c_calls(void *p)
{
    overhead_ctx *c = p;
    float x[1] = {0.0f}, one[1] = {1.0f};
    for (int i = 0; i < CHAIN_LEN; i++) c_add_ptr(x, one, x, 1);
    c->result = x[0];
    return 0;
}

static void bench_op_overhead(void)
{
    overhead_ctx c = {0};
    double tp = -1, tc = -1;
    float zero = 0.0f, onev = 1.0f;
    int64_t shape[1] = {1};
    c.x0 = pn_array_from_data(&zero, shape, 1, PN_FLOAT32);
    c.one = pn_array_from_data(&onev, shape, 1, PN_FLOAT32);
    if (c.x0 && c.one) {
        pn_array *both[2] = {c.x0, c.one};
        if (pn_eval(both, 2) == 0 && run_pn_chain(&c) == 0) {
            if (c.result != (float)CHAIN_LEN)
                snprintf(bench_msg, sizeof bench_msg, "wrong result %g, expected %d",
                         (double)c.result, CHAIN_LEN);
            else if (bench_pair(run_pn_chain, &c, run_c_calls, &c, 2, 100, 3.0, &tp, &tc) != 0)
                tp = -1;
        }
    }
    if (tp < 0) {
        report_error("op_overhead");
    } else {
        double us = tp / CHAIN_LEN * 1e6, c_us = tc / CHAIN_LEN * 1e6;
        report("op_overhead", us, "us/op", us / c_us, "c_call_loop");
        NOTE("best build %.3f us/op, best eval %.3f us/op, best thread CPU time %.3f us/op; "
             "C call %.4f us/op\n",
             c.build_s / CHAIN_LEN * 1e6, c.eval_s / CHAIN_LEN * 1e6, c.cpu_s / CHAIN_LEN * 1e6,
             c_us);
        NOTE("numpy: 0.36 us per tiny add on this machine (quoted, not measured here) -> "
             "ratio %.2f vs numpy_0.36us\n", us / 0.36);
    }
    pn_release(c.x0);
    pn_release(c.one);
    pn_clear_error();
}

/* ───────────────────────────── chain_peak_memory ───────────────────────────── */

#define PEAK_OPS 100

/* Step k of the chain: exp, *0.5, sin, -0.5 in turn (values stay in about [-0.4, 1.4]). */
static pn_array *chain_step(pn_array *x, int k, pn_array *half)
{
    switch (k % 4) {
    case 0: return pn_exp(x);
    case 1: return pn_multiply(x, half);
    case 2: return pn_sin(x);
    default: return pn_subtract(x, half);
    }
}

/* The C idiom: each previous handle is released as soon as the next op holds it. */
static pn_array *chain_released(pn_array *x0, pn_array *half)
{
    pn_array *x = pn_retain(x0);
    for (int k = 0; k < PEAK_OPS && x; k++) {
        pn_array *y = chain_step(x, k, half);
        pn_release(x);
        x = y;
    }
    return x;
}

/* Nested scopes: step k opens a scope, makes its op there, recurses, and moves the final
 * result out with pn_scope_pop_keep (its own intermediate dies with the scope). */
static pn_array *chain_nested(pn_array *x, int k, pn_array *half)
{
    if (k == PEAK_OPS) return x;
    pn_scope_push();
    pn_array *y = chain_step(x, k, half);
    pn_array *r = y ? chain_nested(y, k + 1, half) : NULL;
    if (r)
        pn_scope_pop_keep(&r, 1);
    else
        pn_scope_pop();
    return r;
}

/* Flat scope, no releases: every step result stays owned by one scope until it pops
 * (the pattern to avoid; reported as a note). */
static pn_array *chain_flat_scope(pn_array *x0, pn_array *half)
{
    pn_scope_push();
    pn_array *x = x0;
    for (int k = 0; k < PEAK_OPS && x; k++) x = chain_step(x, k, half);
    if (x && pn_eval(&x, 1) != 0) x = NULL;
    if (x)
        pn_scope_pop_keep(&x, 1);
    else
        pn_scope_pop();
    return x;
}

/* Builds a chain over x0 with `build`, evaluates it, and returns the peak memory in multiples
 * of x0's bytes (-1 on failure); *secs gets the build+eval time. */
static double chain_peak(pn_array *x0, pn_array *half, int mode, double *secs)
{
    size_t nbytes = pn_nbytes(x0);
    pn_reset_peak_memory();
    double t0 = now_s();
    pn_array *x = mode == 0   ? chain_released(x0, half)
                  : mode == 1 ? chain_nested(x0, 0, half)
                              : chain_flat_scope(x0, half);
    if (!x || pn_eval(&x, 1) != 0) {
        pn_release(x);
        return -1;
    }
    *secs = now_s() - t0;
    double peak = (double)pn_get_peak_memory() / (double)nbytes;
    /* The values must stay finite and match a scalar replay of the chain on element 0. */
    const float *v = pn_data(x), *in = pn_data(x0);
    double ok = v && in ? 1.0 : 0.0;
    if (ok) {
        float e = in[0];
        for (int k = 0; k < PEAK_OPS; k++)
            e = k % 4 == 0 ? expf(e) : k % 4 == 1 ? e * 0.5f : k % 4 == 2 ? sinf(e) : e - 0.5f;
        if (!(fabsf(v[0] - e) <= 1e-4f) || !isfinite(v[pn_size(x) - 1])) {
            snprintf(bench_msg, sizeof bench_msg, "wrong result %g, expected %g", (double)v[0],
                     (double)e);
            ok = 0.0;
        }
    }
    pn_release(x);
    return ok ? peak : -1;
}

static void bench_chain_peak(void)
{
    int64_t shape[1] = {BIG_N};
    pn_array *x0 = random_f32(shape, 1);
    pn_array *half = pn_scalar(0.5, PN_FLOAT32);
    if (!x0 || !half) {
        report_error("chain_peak_memory");
        report_error("chain_peak_memory_scoped");
        pn_release(x0);
        pn_release(half);
        return;
    }
    const char *names[2] = {"chain_peak_memory", "chain_peak_memory_scoped"};
    for (int mode = 0; mode < 2; mode++) {
        double secs = 0.0, peak = chain_peak(x0, half, mode, &secs);
        if (peak < 0) {
            report_error(names[mode]);
            continue;
        }
        /* Ideal: the caller's input plus one output buffer reused in place by every op. */
        report(names[mode], peak, "x", peak / 2.0, "c_inplace_2x");
        NOTE("%d ops over %lld floats: build+eval %.2f s (%.2f GB/s effective)\n", PEAK_OPS,
             (long long)BIG_N, secs, 2.0 * 4.0 * (double)BIG_N * PEAK_OPS / secs / 1e9);
    }
    pn_release(x0);

    /* The pitfall, on a smaller array: one flat scope holding every step's handle. */
    int64_t small[1] = {(int64_t)1 << 18};
    x0 = random_f32(small, 1);
    double secs = 0.0, peak = x0 ? chain_peak(x0, half, 2, &secs) : -1;
    if (peak >= 0)
        NOTE("flat scope without releases (2^18 floats): peak %.2f x (every handle kept)\n",
             peak);
    else
        NOTE("flat scope without releases: error: %s\n",
             bench_msg[0] ? bench_msg : pn_last_error_message());
    bench_msg[0] = 0;
    pn_clear_error();
    pn_release(x0);
    pn_release(half);
}

/* ───────────────────────────── char_lm training step ───────────────────────────── */
/* One training step of examples/char_lm.c's default model (2 pre-norm layers of width 64, 4
 * heads, MLP 256, a 96-symbol vocabulary, batch 16 x 64 tokens): forward and backward
 * (pn_vjp), gradient clipping, the AdamW update, all evaluated. Figures: ms per step and
 * tokens per second. Baseline (same run): cblas_sgemm running the step's matrix products —
 * every projection's forward, input-gradient and weight-gradient GEMMs and the attention's
 * per-head score and value products with their gradients — on buffers of the same shapes;
 * ratio = GEMM time / step time (1: the step costs no more than its bare GEMMs). The step's
 * loss must be finite and fall while the timed steps train on the same batch. */

enum { CL_B = 16, CL_T = 64, CL_D = 64, CL_H = 4, CL_L = 2, CL_V = 96 };

typedef struct {
    pn_transformer_config cfg;
    pn_params *params;
    pn_optimizer *opt;
    pn_closure *loss;
    pn_array *x, *y; /* the fixed batch (B, T) of int32 tokens and targets */
    int np;
    char **names;
    double last_loss;
} charlm_ctx;

static int charlm_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    charlm_ctx *c = ctx;
    pn_params *p = pn_params_new();
    for (int i = 0; i < nin; i++) pn_params_set(p, c->names[i], in[i]);
    pn_array *h = pn_add(pn_nn_embedding(c->x, pn_params_get(p, "embedding.weight")),
                         pn_nn_sinusoidal_positional_encoding(pn_arange(0, CL_T, 1, PN_FLOAT32), CL_D, 1e-4, 1, 0,
                                                              false, false));
    h = pn_nn_transformer_encoder(h, (pn_attention_mask){"causal", NULL}, p, "transformer", &c->cfg, NULL);
    pn_array *logits = pn_nn_linear(h, pn_params_get(p, "out_proj.weight"), pn_params_get(p, "out_proj.bias"));
    pn_params_free(p);
    out[0] = pn_nn_cross_entropy(logits, c->y, -1, 0.0, PN_REDUCTION_MEAN);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int run_charlm_step(void *p)
{
    charlm_ctx *c = p;
    pn_scope_push();
    pn_array *prim[64], *grads[64], *loss = NULL, *one = pn_scalar(1.0, PN_FLOAT32);
    for (int i = 0; i < c->np; i++) prim[i] = pn_params_get(c->params, c->names[i]);
    int nout = 0, rc = pn_vjp(c->loss, c->np, prim, 1, &one, &nout, &loss, grads);
    pn_params *g = rc == 0 ? pn_params_new() : NULL;
    for (int i = 0; g && i < c->np; i++) rc |= pn_params_set(g, c->names[i], grads[i]);
    if (rc == 0 && (!pn_clip_grad_norm(g, 1.0) || pn_optimizer_update(c->opt, c->params, g) != 0)) rc = -1;
    pn_params_free(g);
    if (rc == 0) {
        pn_params *st = pn_optimizer_state(c->opt);
        int n = 1 + c->np + pn_params_count(st), k = 0;
        pn_array **all = malloc(sizeof *all * (size_t)n);
        all[k++] = loss;
        for (int i = 0; i < c->np; i++) all[k++] = pn_params_at(c->params, i);
        for (int i = 0; i < pn_params_count(st); i++) all[k++] = pn_params_at(st, i);
        rc = pn_eval(all, n);
        free(all);
        if (rc == 0) c->last_loss = pn_item(loss);
    }
    pn_scope_pop();
    return rc;
}

/* The step's GEMMs: {m, k, n, count}, each run forward (m x k)(k x n) and as its two
 * gradient products of the same FLOPs. */
static const int charlm_gemms[][4] = {
    {CL_B * CL_T, CL_D, CL_D, 4 * CL_L},   /* q, k, v, out projections */
    {CL_B * CL_T, CL_D, 4 * CL_D, CL_L},   /* linear1 */
    {CL_B * CL_T, 4 * CL_D, CL_D, CL_L},   /* linear2 */
    {CL_T, CL_D / CL_H, CL_T, CL_B * CL_H * CL_L}, /* scores q k^T per head */
    {CL_T, CL_T, CL_D / CL_H, CL_B * CL_H * CL_L}, /* probabilities @ v per head */
    {CL_B * CL_T, CL_D, CL_V, 1},          /* the output head */
};

typedef struct {
    float *a, *b, *c;
} charlm_gemm_bufs;

static int run_charlm_gemms(void *p)
{
    charlm_gemm_bufs *g = p;
    for (size_t s = 0; s < sizeof charlm_gemms / sizeof charlm_gemms[0]; s++) {
        int m = charlm_gemms[s][0], k = charlm_gemms[s][1], n = charlm_gemms[s][2];
        int dims[3][3] = {{m, k, n}, {m, n, k}, {k, m, n}}; /* forward, dA = dC B^T, dB = A^T dC */
        for (int r = 0; r < charlm_gemms[s][3]; r++)
            for (int d = 0; d < 3; d++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dims[d][0], dims[d][2], dims[d][1], 1.0f,
                            g->a, dims[d][1], g->b, dims[d][2], 0.0f, g->c, dims[d][2]);
    }
    return 0;
}

static void bench_char_lm(void)
{
    const char *n1 = "char_lm_train_step", *n2 = "char_lm_tokens";
    charlm_ctx c = {.cfg = {.dims = CL_D, .num_heads = CL_H, .num_encoder_layers = CL_L, .norm_first = true}};
    pn_scope_push(); /* the setup's temporaries */
    pn_array *keys = pn_random_split(pn_random_key(0), 4), *k[4];
    for (int i = 0; i < 4; i++) k[i] = pn_take(keys, pn_scalar_int(i, PN_INT32), 0);
    c.params = pn_params_new();
    int64_t vd[2] = {CL_V, CL_D}, v1[1] = {CL_V};
    int rc = c.params && k[3] ? 0 : -1;
    if (rc == 0) rc = pn_params_set(c.params, "embedding.weight", pn_nn_init_normal(vd, 2, PN_FLOAT32, 0, 0.125, k[0]));
    if (rc == 0) rc = pn_nn_transformer_init(c.params, "transformer", PN_TRANSFORMER_ENCODER, &c.cfg, k[1]);
    if (rc == 0) rc = pn_params_set(c.params, "out_proj.weight", pn_nn_init_uniform(vd, 2, PN_FLOAT32, -0.125, 0.125, k[2]));
    if (rc == 0) rc = pn_params_set(c.params, "out_proj.bias", pn_nn_init_uniform(v1, 1, PN_FLOAT32, -0.125, 0.125, k[3]));
    int32_t tok[CL_B * (CL_T + 1)];
    for (int i = 0; i < CL_B * (CL_T + 1); i++) tok[i] = (int32_t)((rand_uniform() + 1.0f) * 0.5f * (CL_V - 1));
    int64_t bt[2] = {CL_B, CL_T + 1};
    pn_array *all = rc == 0 ? pn_array_from_data(tok, bt, 2, PN_INT32) : NULL;
    int64_t lo0[2] = {0, 0}, hi0[2] = {CL_B, CL_T}, lo1[2] = {0, 1}, hi1[2] = {CL_B, CL_T + 1};
    c.x = pn_retain(pn_slice(all, lo0, hi0, NULL, 2)); /* NULL-safe */
    c.y = pn_retain(pn_slice(all, lo1, hi1, NULL, 2));
    if (rc == 0) rc = pn_params_eval(c.params);
    pn_scope_pop();
    c.np = pn_params_count(c.params);
    c.names = calloc((size_t)c.np + 1, sizeof *c.names);
    for (int i = 0; i < c.np; i++) c.names[i] = strdup(pn_params_name(c.params, i));
    c.opt = pn_optim_adamw(3e-3, 0.9, 0.999, 1e-8, 0.01, false);
    c.loss = pn_closure_new(charlm_loss, &c, NULL);
    size_t big = (size_t)CL_B * CL_T * 4 * CL_D;
    charlm_gemm_bufs g = {host_buffer((int64_t)big), host_buffer((int64_t)big), host_buffer((int64_t)big)};
    for (size_t i = 0; g.a && g.b && i < big; i++) g.a[i] = rand_uniform(), g.b[i] = rand_uniform();
    double tp = -1, tc = -1, first = NAN;
    if (rc != 0 || !c.x || !c.y || !c.opt || !c.loss || c.np > 64 || !g.a || !g.b || !g.c) {
        if (!pn_last_error()) snprintf(bench_msg, sizeof bench_msg, "setup failed (out of memory?)");
    } else if (run_charlm_step(&c) == 0) {
        first = c.last_loss;
        if (!isfinite(first)) snprintf(bench_msg, sizeof bench_msg, "the loss is %g", first);
        else if (bench_pair(run_charlm_step, &c, run_charlm_gemms, &g, 2, 30, 6.0, &tp, &tc) != 0) tp = -1;
        else if (!(c.last_loss < first)) {
            snprintf(bench_msg, sizeof bench_msg, "the loss did not fall (%.4f -> %.4f)", first, c.last_loss);
            tp = -1;
        }
    }
    if (tp > 0) {
        report(n1, tp * 1e3, "ms/step", tc / tp, "sgemm_same_gemms");
        report(n2, CL_B * CL_T / tp, "tokens/s", tc / tp, "sgemm_same_gemms");
        NOTE("%d layers x %d dims, batch %d x %d tokens: step %.2f ms, its GEMMs in cblas %.2f ms; loss %.3f -> %.3f\n",
             CL_L, CL_D, CL_B, CL_T, tp * 1e3, tc * 1e3, first, c.last_loss);
    } else {
        const char *msg = bench_msg[0] ? bench_msg : pn_last_error_message();
        printf("bench %s: error: %s\nbench %s: error: %s\n", n1, msg, n2, msg);
        bench_msg[0] = 0;
        pn_clear_error();
    }
    pn_closure_release(c.loss);
    pn_optimizer_free(c.opt);
    pn_params_free(c.params);
    pn_release(c.x);
    pn_release(c.y);
    for (int i = 0; i < c.np; i++) free(c.names[i]);
    free(c.names);
    free(g.a), free(g.b), free(g.c);
}

/* ───────────────────────────── Fashion-MNIST training steps ───────────────────────────── */
/* One Adam training step of examples/fashion_mnist.c's MLP (784-512-512-10, batch 128) and
 * --cnn CNN (batch 64), the models and step of bench/train_models.h (the GPU benchmark's and,
 * in Python, bench_python.py's): value_and_grad, Adam update, one pn_eval of loss, parameters
 * and state, on a fixed random batch. Figures: ms per step and images per second. Baseline
 * (same run): cblas_sgemm running the step's own matrix products (forward, weight gradient,
 * and input gradient except for the first layer; the convolutions as their im2col GEMMs) on
 * buffers of the same shapes; ratio = GEMM time / step time (1: the step costs no more than
 * its bare GEMMs). The loss must be finite and fall on the fixed batch. */

#include "train_models.h"

/* n floats uniform in [lo, hi) (malloc'd; NULL with an error). */
static float *host_random(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "bench: host buffer of %lld floats", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * 0.5f * (rand_uniform() + 1.0f);
    return p;
}

/* An evaluated array of the host data (CPU). */
static pn_array *host_array(const void *data, const int64_t *shape, int ndim, pn_dtype dtype)
{
    return pn_array_from_data(data, shape, ndim, dtype);
}

typedef struct {
    const tm_model *m;
    int64_t batch;
    float *a, *b, *c;
} model_gemm_ctx;

/* The step's GEMMs {rows, k, n}: forward (M x k)(k x n), weight gradient (k x M)(M x n), input
 * gradient (M x n)(n x k) where needed. */
static int run_model_gemms(void *p)
{
    model_gemm_ctx *g = p;
    for (int s = 0; s < g->m->ngemms; s++) {
        const int64_t *q = g->m->gemms[s];
        int M = (int)(g->batch * q[0]), k = (int)q[1], n = (int)q[2];
        int dims[3][3] = {{M, k, n}, {k, M, n}, {M, n, k}}; /* rows, inner, cols */
        for (int d = 0; d < (q[3] ? 3 : 2); d++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dims[d][0], dims[d][2], dims[d][1], 1.0f, g->a,
                        dims[d][1], g->b, dims[d][2], 0.0f, g->c, dims[d][2]);
    }
    return 0;
}

static void bench_model_train(const tm_model *m, const char *n1, const char *n2)
{
    const int64_t B = m->batch;
    tm_train t = {0};
    model_gemm_ctx g = {m, B, NULL, NULL, NULL};
    int64_t big = 0;
    for (int s = 0; s < m->ngemms; s++) {
        const int64_t *q = m->gemms[s], M = B * q[0];
        int64_t sizes[3] = {M * q[1], q[1] * q[2], M * q[2]};
        for (int k = 0; k < 3; k++) big = sizes[k] > big ? sizes[k] : big;
    }
    g.a = host_buffer(big), g.b = host_buffer(big), g.c = host_buffer(big);
    for (int64_t i = 0; g.a && g.b && i < big; i++) g.a[i] = rand_uniform(), g.b[i] = rand_uniform();
    float *xh = host_random(B * 784, 0.0f, 1.0f);
    int32_t *yh = malloc((size_t)B * sizeof(int32_t));
    double tp = -1, tc = -1, first = NAN;
    if (!xh || !yh || !g.a || !g.b || !g.c) {
        snprintf(bench_msg, sizeof bench_msg, "out of memory");
        goto report;
    }
    for (int64_t i = 0; i < B; i++) yh[i] = (int32_t)((rand_uniform() + 1.0f) * 5.0f) % 10;
    if (tm_setup(&t, m, host_random, host_array) != 0) goto report;
    t.x = pn_array_from_data(xh, (int64_t[]){B, 784}, 2, PN_FLOAT32);
    t.y = t.x ? pn_array_from_data(yh, &B, 1, PN_INT32) : NULL;
    if (!t.y) goto report;
    t.read_loss = true;
    if (tm_run_step(&t) != 0) goto report;
    first = t.loss;
    if (!isfinite(first)) {
        snprintf(bench_msg, sizeof bench_msg, "the loss is %g", first);
        goto report;
    }
    t.read_loss = false;
    if (bench_pair(tm_run_step, &t, run_model_gemms, &g, 1, 20, 6.0, &tp, &tc) != 0) {
        tp = -1;
        goto report;
    }
    t.read_loss = true;
    if (tm_run_step(&t) != 0 || !(t.loss < first)) {
        if (!pn_last_error())
            snprintf(bench_msg, sizeof bench_msg, "the loss did not fall (%.4f -> %.4f)", first, t.loss);
        tp = -1;
    }
report:
    if (tp > 0) {
        double flops = tm_gemm_flops(m, B);
        report(n1, tp * 1e3, "ms/step", tc / tp, "sgemm_same_gemms");
        report(n2, (double)B / tp, "images/s", tc / tp, "sgemm_same_gemms");
        NOTE("batch %lld: step %.2f ms, its GEMMs (%.2f GFLOP) in cblas %.2f ms (%.1f GFLOP/s); the step runs them at "
             "%.1f GFLOP/s; loss %.3f -> %.3f\n",
             (long long)B, tp * 1e3, flops * 1e-9, tc * 1e3, flops / tc * 1e-9, flops / tp * 1e-9, first, t.loss);
    } else {
        const char *msg = bench_msg[0] ? bench_msg : pn_last_error_message();
        printf("bench %s: error: %s\nbench %s: error: %s\n", n1, msg, n2, msg);
        bench_msg[0] = 0;
        pn_clear_error();
    }
    tm_free(&t);
    free(xh), free(yh);
    free(g.a), free(g.b), free(g.c);
}

static void bench_mlp_train(void) { bench_model_train(&TM_MLP, "mlp_train_step", "mlp_train_images"); }
static void bench_cnn_train(void) { bench_model_train(&TM_CNN, "cnn_train_step", "cnn_train_images"); }

/* ───────────────────────────── fused optimizer steps ───────────────────────────── */
/* One optimizer update of a 4.2M-parameter float32 tree (a 2048 x 2048 matrix and a 2048
 * vector; the char_lm transformer has 0.1M) per rule, fused (one OptimUpdate node per
 * parameter) against the same rule composed from elementwise ops (pnN_optim_set_fused(false)),
 * both through pn_optimizer_update and one pn_eval of the parameters and state. The state is
 * warm (one untimed step first) and every step runs in place when it can. Figure: ms per
 * fused step; ratio = composed time / fused time (the speedup of fusion). */

#include "ops/optim.h"

typedef struct {
    pn_optimizer *o;
    pn_params *params, *grads;
    bool fused;
} optim_bench_ctx;

static int run_optim_step(void *p)
{
    optim_bench_ctx *c = p;
    bool was = pnN_optim_set_fused(c->fused);
    pn_scope_push();
    int rc = pn_optimizer_update(c->o, c->params, c->grads);
    if (rc == 0) rc = pn_params_eval(c->params);
    if (rc == 0) rc = pn_params_eval(pn_optimizer_state(c->o));
    pn_scope_pop();
    pnN_optim_set_fused(was);
    return rc;
}

/* The benchmarked rules: figure suffix and fused rule (for the traffic count). */
static const struct {
    const char *name;
    int rule;
} OPTIM_BENCH_RULES[] = {
    {"sgd", PNN_OPT_SGD},         {"momentum", PNN_OPT_MOMENTUM}, {"adamw", PNN_OPT_ADAM},
    {"rmsprop", PNN_OPT_RMSPROP}, {"adagrad", PNN_OPT_ADAGRAD},   {"adadelta", PNN_OPT_ADADELTA},
    {"adamax", PNN_OPT_ADAMAX},   {"lion", PNN_OPT_LION},
};

/* Optimizer i of OPTIM_BENCH_RULES with typical hyperparameters. */
static pn_optimizer *optim_bench_make(size_t i)
{
    switch (i) {
    case 0: return pn_optim_sgd(1e-2, 0, 0, 0, false);
    case 1: return pn_optim_sgd(1e-2, 0.9, 1e-4, 0, true);
    case 2: return pn_optim_adamw(1e-3, 0.9, 0.999, 1e-8, 0.01, true);
    case 3: return pn_optim_rmsprop(1e-3, 0.99, 1e-8);
    case 4: return pn_optim_adagrad(1e-2, 1e-8);
    case 5: return pn_optim_adadelta(1.0, 0.9, 1e-6);
    case 6: return pn_optim_adamax(2e-3, 0.9, 0.999, 1e-8);
    default: return pn_optim_lion(1e-4, 0.9, 0.99, 0.01);
    }
}

static void bench_optim_steps(void)
{
    const int64_t shapes[2][2] = {{2048, 2048}, {2048, 1}}, nparam = 2048 * 2048 + 2048;
    for (size_t r = 0; r < sizeof OPTIM_BENCH_RULES / sizeof *OPTIM_BENCH_RULES; r++) {
        char fig[64];
        snprintf(fig, sizeof fig, "optim_step_%s", OPTIM_BENCH_RULES[r].name);
        optim_bench_ctx c[2] = {{NULL}};
        double tf = -1, tcmp = -1;
        int rc = 0;
        for (int f = 0; f < 2 && rc == 0; f++) { /* c[0] fused, c[1] composed */
            c[f] = (optim_bench_ctx){optim_bench_make(r), pn_params_new(), pn_params_new(), f == 0};
            for (int k = 0; k < 2 && c[f].o && c[f].params && c[f].grads; k++) {
                const char *nm = k ? "b" : "w";
                pn_array *w = random_f32(shapes[k], k ? 1 : 2), *gr = random_f32(shapes[k], k ? 1 : 2);
                if (!w || !gr || pn_params_set(c[f].params, nm, w) || pn_params_set(c[f].grads, nm, gr)) rc = -1;
                pn_release(w);
                pn_release(gr);
            }
            if (!c[f].o || !c[f].params || !c[f].grads) rc = -1;
        }
        if (rc == 0) rc = bench_pair(run_optim_step, &c[0], run_optim_step, &c[1], 2, 20, 3.0, &tf, &tcmp);
        if (rc == 0) {
            /* bytes: p read and written, g read, each slot read and written */
            double bytes = (double)nparam * 4 * (3 + 2 * pnN_optim_nslots(OPTIM_BENCH_RULES[r].rule));
            report(fig, tf * 1e3, "ms/step", tcmp / tf, "composed_same_rule");
            NOTE("4.2M float32 parameters: fused %.2f ms (%.1f GB/s of parameter, gradient and state traffic), "
                 "composed %.2f ms\n",
                 tf * 1e3, bytes / tf * 1e-9, tcmp * 1e3);
        } else {
            report_error(fig);
        }
        for (int f = 0; f < 2; f++) {
            pn_optimizer_free(c[f].o);
            pn_params_free(c[f].params);
            pn_params_free(c[f].grads);
        }
    }
}

/* ───────────────────────────── compile ───────────────────────────── */

/* compile: mx.compile on the tanh GELU over 4M floats (the chain fused into one Compiled node);
 * baseline: the same function uncompiled; ratio = uncompiled / compiled; results bit-identical. */
static int gelu_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0];
    pn_array *inner = pn_multiply(pn_add(x, pn_multiply(pn_multiply(pn_multiply(x, x), x), pn_weak_float(0.044715))),
                                  pn_weak_float(0.7978845608028654));
    out[0] = pn_multiply(pn_multiply(x, pn_weak_float(0.5)), pn_add(pn_tanh(inner), pn_weak_float(1.0)));
    *nout = 1;
    return out[0] ? 0 : -1;
}
typedef struct {
    pn_closure *f;
    int nin;
    pn_array *x[2], *y;
} gelu_ctx;
static int gelu_run(void *p)
{
    gelu_ctx *c = p;
    int n = 0;
    pn_release(c->y);
    c->y = NULL;
    pn_scope_push();
    int rc = pn_closure_call(c->f, c->nin, c->x, &n, &c->y);
    if (rc == 0) rc = pn_eval(&c->y, 1);
    if (rc == 0) pn_scope_pop_keep(&c->y, 1);
    else pn_scope_pop(), c->y = NULL;
    return rc;
}
/* A chain of eight cheap ops over two inputs: ((x * 0.5 + y) * 1.5 - x) * (y - 0.25) + x, max 0. */
static int chain_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0], *y = in[1];
    pn_array *a = pn_subtract(pn_multiply(pn_add(pn_multiply(x, pn_weak_float(0.5)), y), pn_weak_float(1.5)), x);
    out[0] = pn_maximum(pn_add(pn_multiply(a, pn_subtract(y, pn_weak_float(0.25))), x), pn_weak_float(0));
    *nout = 1;
    return out[0] ? 0 : -1;
}
/* The compiled function run with the fused groups interpreted (PONTE_FUSED_JIT=0). */
static int run_interpreted(void *p)
{
    setenv("PONTE_FUSED_JIT", "0", 1);
    int rc = gelu_run(p);
    unsetenv("PONTE_FUSED_JIT");
    return rc;
}
/* compile_gelu_4M: compiled against uncompiled; compile_gelu_4M_generated and
 * compile_chain_4M: the CPU's generated kernel against its tile interpreter (ratio =
 * interpreted / generated). Results bit-identical throughout. */
static void bench_compile_one(const char *name, pn_fn fn, int nin, bool against_uncompiled)
{
    int64_t shape[1] = {(int64_t)1 << 22};
    pn_closure *f = pn_closure_new(fn, NULL, NULL), *cf = f ? pn_compile(f, false) : NULL;
    gelu_ctx plain = {f, nin, {random_f32(shape, 1), nin > 1 ? random_f32(shape, 1) : NULL}, NULL};
    gelu_ctx comp = plain, interp = plain;
    comp.f = interp.f = cf;
    gelu_ctx *base = against_uncompiled ? &plain : &interp;
    double tb = 0, tc = 0;
    if (!cf || !plain.x[0] || (nin > 1 && !plain.x[1]) ||
        bench_pair(gelu_run, &comp, against_uncompiled ? gelu_run : run_interpreted, base, 2, 30, 3.0, &tc, &tb)) {
        report_error(name);
    } else if (memcmp(pn_data(comp.y), pn_data(base->y), sizeof(float) << 22) != 0) {
        snprintf(bench_msg, sizeof bench_msg, "the two runs differ");
        report_error(name);
    } else {
        report(name, tc * 1e3, "ms", tb / tc, against_uncompiled ? "uncompiled" : "interpreted fused groups");
        NOTE("%s %.2f ms (%.2f GB/s of input and output), %s %.2f ms\n", against_uncompiled ? "compiled" : "generated",
             tc * 1e3, 4.0 * (nin + 1) * (double)((int64_t)1 << 22) / tc / 1e9,
             against_uncompiled ? "uncompiled" : "interpreted", tb * 1e3);
    }
    pn_release(comp.y), pn_release(plain.y), pn_release(interp.y), pn_release(plain.x[0]), pn_release(plain.x[1]);
    pn_closure_release(cf), pn_closure_release(f);
}
static void bench_compile(void)
{
    bench_compile_one("compile_gelu_4M", gelu_fn, 1, true);
    bench_compile_one("compile_gelu_4M_generated", gelu_fn, 1, false);
    bench_compile_one("compile_chain_4M", chain_fn, 2, false);
}

/* ───────────────────────────── fused attention ───────────────────────────── */

#include "ops/attention.h"

/* One causal attention forward + backward (q, k, v gradients for a random cotangent; with
 * sinks, x[3], their gradient too), on the fused primitives or on the composite of ops
 * (pnO_sdpa_set_fused). */
typedef struct sdpa_ctx {
    pn_array *x[4], *cot;
    bool fused;
} sdpa_ctx;

static int sdpa_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx;
    out[0] = nin > 3 ? pn_fast_scaled_dot_product_attention_sinks(in[0], in[1], in[2], 0.25, "causal", NULL, in[3])
                     : pn_fast_scaled_dot_product_attention(in[0], in[1], in[2], 0.25, "causal", NULL);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int sdpa_run(void *p)
{
    sdpa_ctx *c = p;
    int nin = c->x[3] ? 4 : 3;
    bool was = pnO_sdpa_set_fused(c->fused);
    pn_scope_push();
    pn_closure *f = pn_closure_new(sdpa_fn, NULL, NULL);
    pn_array *y[1], *g[4];
    int n = 0, rc = f ? pn_vjp(f, nin, c->x, 1, &c->cot, &n, y, g) : -1;
    if (rc == 0) rc = pn_eval(g, nin);
    pn_closure_release(f);
    pn_scope_pop();
    pnO_sdpa_set_fused(was);
    return rc;
}

static void bench_sdpa(void)
{
    static const struct { int64_t s[4]; bool sinks; } cfgs[] = {
        {{16, 4, 64, 16}, false}, {{1, 8, 1024, 64}, false}, {{1, 8, 1024, 64}, true}};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        const int64_t *s = cfgs[i].s;
        char name[64];
        snprintf(name, sizeof name, "sdpa_%sfwd_bwd_%lldx%lldx%lldx%lld", cfgs[i].sinks ? "sinks_" : "",
                 (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3]);
        sdpa_ctx fused = {{random_f32(s, 4), random_f32(s, 4), random_f32(s, 4),
                           cfgs[i].sinks ? random_f32(&s[1], 1) : NULL}, random_f32(s, 4), true};
        sdpa_ctx comp = fused;
        comp.fused = false;
        double tf = 0, tc = 0;
        if (!fused.x[0] || !fused.x[1] || !fused.x[2] || (cfgs[i].sinks && !fused.x[3]) || !fused.cot ||
            bench_pair(sdpa_run, &fused, sdpa_run, &comp, 2, 50, 3.0, &tf, &tc))
            report_error(name);
        else
            report(name, tf * 1e3, "ms", tc / tf, "composite ops");
        for (int k = 0; k < 4; k++) pn_release(fused.x[k]);
        pn_release(fused.cot);
    }
}

/* ───────────────────────────── main ───────────────────────────── */

/* bench/bench_conv.c: conv2d forward + backward against sgemm of the same FLOPs. */
void bench_conv(void);

/* The figures, in groups that share their inputs. */
static const struct {
    const char *figures;
    void (*run)(void);
} groups[] = {
    {"add_f32_16M sum_f32_16M", bench_add_and_sum},
    {"exp_f32_16M", bench_transcendentals},
    {"compile_gelu_4M compile_gelu_4M_generated compile_chain_4M", bench_compile},
    {"sgemm_1024 bf16_gemm_1024 sgemm_2048", bench_gemms},
    {"op_overhead", bench_op_overhead},
    {"chain_peak_memory chain_peak_memory_scoped", bench_chain_peak},
    {"conv2d_fwd_bwd", bench_conv},
    {"char_lm_train_step char_lm_tokens", bench_char_lm},
    {"sdpa_fwd_bwd_16x4x64x16 sdpa_fwd_bwd_1x8x1024x64 sdpa_sinks_fwd_bwd_1x8x1024x64", bench_sdpa},
    {"mlp_train_step mlp_train_images", bench_mlp_train},
    {"cnn_train_step cnn_train_images", bench_cnn_train},
    {"optim_step_sgd optim_step_momentum optim_step_adamw optim_step_rmsprop optim_step_adagrad "
     "optim_step_adadelta optim_step_adamax optim_step_lion",
     bench_optim_steps},
};

/* ponte_bench [WORD...]: runs every group, or those whose figure names contain a WORD. */
int main(int argc, char **argv)
{
    double t0 = now_s();
    printf("Ponte %d.%d.%d benchmarks\n", PONTE_VERSION_MAJOR, PONTE_VERSION_MINOR,
           PONTE_VERSION_PATCH);
    print_machine();
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        int run = argc < 2;
        for (int i = 1; i < argc && !run; i++) run = strstr(groups[g].figures, argv[i]) != NULL;
        if (run) groups[g].run();
    }
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1;
        fclose(f);
    }
    printf("total %.1f s, load average now %.2f\n", now_s() - t0, load);
    return 0;
}
