/* test_reduce.c — reductions (sum, prod, max, min, all, any, mean, var, std, logsumexp),
 * argmax / argmin, softmax / log_softmax and scans (cumsum, cumprod, cummax, cummin,
 * logcumsumexp) against float64 references computed here: 0-d, empty, 1-d and 4-d shapes,
 * axis sets (negative, non-adjacent, unsorted, none), keepdims, transposed and sliced views,
 * dtypes and result dtypes, NaN and infinity behaviour, errors, every kernel path (rows,
 * columns, split columns, threaded long rows, copies), and gradients (max / min with ties in
 * every float dtype through ExtremeVjp). */
#include "harness.h"

#include <string.h>

#include "core/core.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static int64_t prod64(const int64_t *s, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

static pn_dtype least_float(pn_dtype t)
{
    return pnC_is_inexact(t) ? t : pn_promote_types(t, PN_FLOAT32);
}

/* MLX's sum / prod result dtype (written out independently of the library). */
static pn_dtype sum_dtype(pn_dtype t)
{
    switch (t) {
    case PN_BOOL: case PN_INT8: case PN_INT16: case PN_INT32: return PN_INT32;
    case PN_UINT8: case PN_UINT16: case PN_UINT32: return PN_UINT32;
    default: return t;
    }
}

static double lowest(pn_dtype t)
{
    switch (t) {
    case PN_BOOL: return 0;
    case PN_UINT8: case PN_UINT16: case PN_UINT32: case PN_UINT64: return 0;
    case PN_INT8: return -128;
    case PN_INT16: return -32768;
    case PN_INT32: return -2147483648.0;
    case PN_INT64: return -9223372036854775808.0;
    default: return -INFINITY;
    }
}

static double highest(pn_dtype t)
{
    switch (t) {
    case PN_BOOL: return 1;
    case PN_UINT8: return 255;
    case PN_UINT16: return 65535;
    case PN_UINT32: return 4294967295.0;
    case PN_INT8: return 127;
    case PN_INT16: return 32767;
    case PN_INT32: return 2147483647.0;
    case PN_UINT64: return 18446744073709551615.0;
    case PN_INT64: return 9223372036854775807.0;
    default: return INFINITY;
    }
}

/* Random data suited to an op: near 1 for products (no overflow), small integers. */
static pn_array *rnd(const int64_t *shape, int nd, pn_dtype t, bool for_prod)
{
    if (for_prod) {
        if (pnC_is_unsigned(t) || t == PN_BOOL) return test_random_array(shape, nd, t, 0, 2);
        if (pnC_is_integer(t)) return test_random_array(shape, nd, t, -1, 2);
        return test_random_array(shape, nd, t, 0.8, 1.25);
    }
    if (pnC_is_unsigned(t) || t == PN_BOOL) return test_random_array(shape, nd, t, 0, 10);
    if (pnC_is_integer(t)) return test_random_array(shape, nd, t, -6, 6);
    return test_random_array(shape, nd, t, -2, 2);
}

/* The views an input is tested through: itself, its transpose, and a strided slice of a
 * bigger array with the same shape. */
enum { V_CONTIG, V_TRANSPOSED, V_SLICED, V_COUNT };
static const char *view_names[] = {"contiguous", "transposed", "sliced"};

static pn_array *make_view(int view, const int64_t *shape, int nd, pn_dtype t, bool for_prod)
{
    if (view == V_CONTIG || nd == 0) return rnd(shape, nd, t, for_prod);
    if (view == V_TRANSPOSED) {
        int64_t rs[PNC_MAX_NDIM];
        for (int i = 0; i < nd; i++) rs[i] = shape[nd - 1 - i];
        return pn_transpose(rnd(rs, nd, t, for_prod), NULL, 0);
    }
    int64_t big[PNC_MAX_NDIM], start[PNC_MAX_NDIM], stop[PNC_MAX_NDIM], step[PNC_MAX_NDIM];
    for (int i = 0; i < nd; i++) {
        big[i] = 2 * shape[i] + 1;
        start[i] = 1;
        stop[i] = 1 + 2 * shape[i];
        step[i] = 2;
    }
    return pn_slice(rnd(big, nd, t, for_prod), start, stop, step, nd);
}

/* Input flat index f -> flat index over the kept axes. */
static int64_t kept_index(int64_t f, const int64_t *shape, int nd, const bool *red)
{
    int64_t idx[PNC_MAX_NDIM], o = 0;
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = shape[i] ? f % shape[i] : 0;
        f = shape[i] ? f / shape[i] : 0;
    }
    for (int i = 0; i < nd; i++)
        if (!red[i]) o = o * shape[i] + idx[i];
    return o;
}

/* ───────────────────────────── reductions vs float64 ───────────────────────────── */

typedef enum { R_SUM, R_PROD, R_MAX, R_MIN, R_ALL, R_ANY, R_MEAN, R_VAR, R_STD, R_LSE, R_NOPS } rop;
static const char *rop_names[] = {"sum", "prod", "max", "min", "all", "any",
                                  "mean", "var", "std", "logsumexp"};

static pn_array *apply_reduce(rop op, pn_array *a, const int *axes, int naxes, bool kd, int ddof)
{
    switch (op) {
    case R_SUM: return pn_sum(a, axes, naxes, kd);
    case R_PROD: return pn_prod(a, axes, naxes, kd);
    case R_MAX: return pn_max(a, axes, naxes, kd);
    case R_MIN: return pn_min(a, axes, naxes, kd);
    case R_ALL: return pn_all(a, axes, naxes, kd);
    case R_ANY: return pn_any(a, axes, naxes, kd);
    case R_MEAN: return pn_mean(a, axes, naxes, kd);
    case R_VAR: return pn_var(a, axes, naxes, kd, ddof);
    case R_STD: return pn_std(a, axes, naxes, kd, ddof);
    default: return pn_logsumexp(a, axes, naxes, kd);
    }
}

static pn_dtype reduce_dtype(rop op, pn_dtype t, int nred)
{
    switch (op) {
    case R_SUM: case R_PROD: return nred == 0 ? t : sum_dtype(t);
    case R_MAX: case R_MIN: return t;
    case R_ALL: case R_ANY: return PN_BOOL;
    default: return least_float(t);
    }
}

/* The float64 reference of op over the flagged axes: out[n_out], and a magnitude per output
 * (what rounding errors scale with) in mag. */
static void ref_reduce(rop op, const double *x, const int64_t *shape, int nd, const bool *red,
                       int ddof, double *out, double *mag)
{
    int64_t n = prod64(shape, nd), nout = 1, cnt = 1;
    for (int i = 0; i < nd; i++) {
        if (red[i]) cnt *= shape[i];
        else nout *= shape[i];
    }
    double *aux = calloc((size_t)(nout + 1), sizeof *aux);
    for (int64_t o = 0; o < nout; o++) {
        mag[o] = 0;
        switch (op) {
        case R_PROD: case R_ALL: out[o] = 1; break;
        case R_MAX: case R_LSE: out[o] = -INFINITY; break;
        case R_MIN: out[o] = INFINITY; break;
        default: out[o] = 0; break;
        }
    }
    for (int64_t f = 0; f < n; f++) { /* first pass */
        int64_t o = kept_index(f, shape, nd, red);
        double v = x[f];
        switch (op) {
        case R_PROD: out[o] *= v; break;
        case R_MAX: case R_LSE:
            if (isnan(v) || v > out[o]) out[o] = v;
            break;
        case R_MIN:
            if (isnan(v) || v < out[o]) out[o] = v;
            break;
        case R_ALL: out[o] = out[o] && v != 0; break;
        case R_ANY: out[o] = out[o] || v != 0; break;
        default:
            out[o] += v;
            mag[o] += fabs(v);
            aux[o] += v * v;
            break;
        }
    }
    for (int64_t o = 0; o < nout; o++) {
        if (op == R_MEAN) {
            out[o] /= (double)cnt;
            mag[o] /= (double)cnt;
        } else if (op == R_VAR || op == R_STD) {
            mag[o] = 1 + aux[o] / (double)cnt;
            aux[o] = out[o] / (double)cnt; /* the mean */
            out[o] = 0;
        } else if (op == R_LSE) {
            aux[o] = out[o]; /* the max */
            out[o] = 0;
        }
    }
    if (op == R_VAR || op == R_STD || op == R_LSE)
        for (int64_t f = 0; f < n; f++) { /* second pass */
            int64_t o = kept_index(f, shape, nd, red);
            out[o] += op == R_LSE ? exp(x[f] - aux[o]) : (x[f] - aux[o]) * (x[f] - aux[o]);
        }
    for (int64_t o = 0; o < nout; o++) {
        if (op == R_VAR || op == R_STD) {
            double den = (double)cnt - ddof;
            out[o] = out[o] / (den > 0 ? den : 0);
            if (op == R_STD) out[o] = sqrt(out[o]);
        } else if (op == R_LSE) {
            out[o] = isinf(aux[o]) ? aux[o] : aux[o] + log(out[o]);
            mag[o] = 1 + fabs(out[o]);
        }
    }
    free(aux);
}

/* Checks op(a, axes, keepdims) against the reference. */
static void check_reduce(rop op, pn_array *a, const int *axes, int naxes, bool kd, int ddof,
                         const char *label)
{
    pn_scope_push();
    int nd = pn_ndim(a);
    const int64_t *shape = pn_shape(a);
    bool red[PNC_MAX_NDIM] = {0};
    int nred = 0;
    for (int i = 0; i < (axes ? naxes : nd); i++) {
        int ax = axes ? (axes[i] < 0 ? axes[i] + nd : axes[i]) : i;
        red[ax] = true;
        nred++;
    }
    int64_t oshape[PNC_MAX_NDIM];
    int ond = 0;
    for (int i = 0; i < nd; i++)
        if (!red[i]) oshape[ond++] = shape[i];
        else if (kd) oshape[ond++] = 1;
    int64_t nout = prod64(oshape, ond);
    double *x = test_to_f64(a), *ref = malloc((size_t)(nout + 1) * sizeof *ref),
           *mag = malloc((size_t)(nout + 1) * sizeof *mag);
    ref_reduce(op, x, shape, nd, red, ddof, ref, mag);
    double maxmag = 0;
    for (int64_t o = 0; o < nout; o++) maxmag = mag[o] > maxmag ? mag[o] : maxmag;
    pn_dtype dt = reduce_dtype(op, pn_array_dtype(a), nred);
    double tol = 4 * test_tol(dt);
    char what[256], ax[64] = "NULL";
    if (axes) {
        int k = snprintf(ax, sizeof ax, "{");
        for (int i = 0; i < naxes; i++) k += snprintf(ax + k, sizeof ax - k, "%d,", axes[i]);
        snprintf(ax + k, sizeof ax - k, "}");
    }
    snprintf(what, sizeof what, "%s %s(%s, axes=%s, keepdims=%d, ddof=%d)", label, rop_names[op],
             pn_dtype_name(pn_array_dtype(a)), ax, (int)kd, ddof);
    for (int64_t o = 0; o < nout; o++) /* float16 overflows to infinity */
        if (dt == PN_FLOAT16 && fabs(ref[o]) > 65504) ref[o] = ref[o] > 0 ? INFINITY : -INFINITY;
    pn_array *r = apply_reduce(op, a, axes, naxes, kd, ddof);
    test_check_values(what, r, oshape, ond, dt, ref, tol, tol * maxmag + (dt == PN_FLOAT16) * 1e-7);
    free(x);
    free(ref);
    free(mag);
    pn_scope_pop();
}

typedef struct {
    int64_t shape[4];
    int nd;
    int axes[8][4];
    int naxes[8]; /* -1: axes == NULL */
    int ncases;
} reduce_case;

static const reduce_case reduce_cases[] = {
    {{0}, 0, {{0}, {0}}, {-1, 0}, 2},
    {{6}, 1, {{0}, {0}, {-1}}, {-1, 1, 1}, 3},
    {{0}, 1, {{0}, {0}}, {-1, 1}, 2},
    {{3, 0, 2}, 3, {{0}, {1}, {0}, {0, 2}}, {-1, 1, 1, 2}, 4},
    {{2, 3, 4, 5},
     4,
     {{0}, {0}, {-1}, {1, 3}, {0, 2}, {3, 1}, {1, 2}, {-4, 2}},
     {-1, 1, 1, 2, 2, 2, 2, 2},
     8},
    {{2, 3, 4, 5}, 4, {{0, 1, 2, 3}, {0}, {0, 1, 3}}, {4, 0, 3}, 3},
    {{5, 37}, 2, {{0}, {1}, {0, 1}}, {1, 1, 2}, 3},
    {{3, 600}, 2, {{0}, {1}}, {1, 1}, 2},
    {{4, 130, 3}, 3, {{1}, {0, 2}}, {1, 2}, 2},
};

static const pn_dtype reduce_dtypes[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16, PN_INT32,
                                         PN_UINT8,   PN_BOOL,    PN_INT8,    PN_INT64};

/* Runs every op over every case, dtype, view and keepdims. */
static void run_reduce_matrix(const rop *ops, int nops)
{
    for (size_t c = 0; c < sizeof reduce_cases / sizeof *reduce_cases; c++) {
        const reduce_case *rc = &reduce_cases[c];
        if (test_quick() && rc->shape[1] == 600) continue;
        for (size_t d = 0; d < sizeof reduce_dtypes / sizeof *reduce_dtypes; d++) {
            pn_dtype t = reduce_dtypes[d];
            for (int v = 0; v < V_COUNT; v++) {
                if (v != V_CONTIG && rc->nd < 2) continue;
                pn_scope_push();
                pn_array *a = make_view(v, rc->shape, rc->nd, t, false);
                pn_array *ap = make_view(v, rc->shape, rc->nd, t, true);
                for (int k = 0; k < nops; k++) {
                    rop op = ops[k];
                    bool empty = prod64(rc->shape, rc->nd) == 0;
                    if (empty && (op == R_MAX || op == R_MIN || op == R_LSE)) continue;
                    for (int i = 0; i < rc->ncases; i++)
                        for (int kd = 0; kd < 2; kd++) {
                            const int *axes = rc->naxes[i] < 0 ? NULL : rc->axes[i];
                            int na = rc->naxes[i] < 0 ? 0 : rc->naxes[i];
                            check_reduce(op, op == R_PROD ? ap : a, axes, na, kd,
                                         op == R_VAR || op == R_STD ? (i & 1) : 0,
                                         view_names[v]);
                        }
                }
                pn_scope_pop();
            }
        }
    }
}

TEST(sum_prod_vs_reference)
{
    const rop ops[] = {R_SUM, R_PROD};
    run_reduce_matrix(ops, 2);
}

TEST(max_min_all_any_vs_reference)
{
    const rop ops[] = {R_MAX, R_MIN, R_ALL, R_ANY};
    run_reduce_matrix(ops, 4);
}

TEST(mean_var_std_logsumexp_vs_reference)
{
    const rop ops[] = {R_MEAN, R_VAR, R_STD, R_LSE};
    run_reduce_matrix(ops, 4);
}

/* The kernel paths that need bigger inputs: one long threaded row, columns split over
 * threads, chunked columns, a non-dense view that is copied. */
TEST(reduce_kernel_paths)
{
    pn_scope_push();
    int64_t n = test_quick() ? 140000 : 1 << 20;
    const int64_t sh1[] = {n}, sh2[] = {40000, 4}, sh3[] = {2, 3000, 300};
    pn_array *v = rnd(sh1, 1, PN_FLOAT32, false);
    check_reduce(R_SUM, v, NULL, 0, false, 0, "long row");
    check_reduce(R_MAX, v, NULL, 0, false, 0, "long row");
    check_reduce(R_MEAN, v, NULL, 0, true, 0, "long row");
    check_reduce(R_SUM, rnd(sh1, 1, PN_FLOAT64, false), NULL, 0, false, 0, "long row");
    check_reduce(R_SUM, rnd(sh1, 1, PN_INT32, false), NULL, 0, false, 0, "long row");
    check_reduce(R_ANY, rnd(sh1, 1, PN_FLOAT16, false), NULL, 0, false, 0, "long row");
    int ax0 = 0, ax1 = 1, ax02[] = {0, 2};
    pn_array *m = rnd(sh2, 2, PN_FLOAT32, false);
    check_reduce(R_SUM, m, &ax0, 1, false, 0, "split columns");
    check_reduce(R_MIN, m, &ax0, 1, false, 0, "split columns");
    check_reduce(R_SUM, rnd(sh2, 2, PN_UINT8, false), &ax0, 1, false, 0, "split columns");
    if (!test_quick()) {
        pn_array *b = rnd(sh3, 3, PN_FLOAT32, false);
        check_reduce(R_SUM, b, &ax1, 1, false, 0, "chunked columns");
        check_reduce(R_SUM, b, ax02, 2, true, 0, "copied");
        check_reduce(R_LSE, b, ax02, 2, false, 0, "copied");
        check_reduce(R_LSE, b, &ax1, 1, false, 0, "copied");
        check_reduce(R_MAX, pn_transpose(b, NULL, 0), &ax1, 1, false, 0, "chunked transposed");
    }
    /* a broadcast (stride 0) input */
    const int64_t bs[] = {5, 7, 3}, row[] = {3};
    pn_array *bb = pn_broadcast_to(rnd(row, 1, PN_FLOAT32, false), bs, 3);
    check_reduce(R_SUM, bb, &ax1, 1, false, 0, "broadcast");
    check_reduce(R_PROD, bb, ax02, 2, false, 0, "broadcast");
    pn_scope_pop();
}

/* ───────────────────────────── dtypes, NaN, errors ───────────────────────────── */

TEST(result_dtypes)
{
    pn_scope_push();
    const int64_t sh[] = {2, 3};
    int ax = 1;
    struct {
        pn_dtype in, sum, mean;
    } t[] = {
        {PN_BOOL, PN_INT32, PN_FLOAT32},     {PN_INT8, PN_INT32, PN_FLOAT32},
        {PN_INT16, PN_INT32, PN_FLOAT32},    {PN_INT32, PN_INT32, PN_FLOAT32},
        {PN_INT64, PN_INT64, PN_FLOAT32},    {PN_UINT8, PN_UINT32, PN_FLOAT32},
        {PN_UINT16, PN_UINT32, PN_FLOAT32},  {PN_UINT32, PN_UINT32, PN_FLOAT32},
        {PN_UINT64, PN_UINT64, PN_FLOAT32},  {PN_FLOAT16, PN_FLOAT16, PN_FLOAT16},
        {PN_BFLOAT16, PN_BFLOAT16, PN_BFLOAT16}, {PN_FLOAT32, PN_FLOAT32, PN_FLOAT32},
        {PN_FLOAT64, PN_FLOAT64, PN_FLOAT64},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        pn_array *a = test_random_array(sh, 2, t[i].in, 0, 3);
        const char *n = pn_dtype_name(t[i].in);
        CHECK_MSG(pn_array_dtype(pn_sum(a, &ax, 1, false)) == t[i].sum, "sum %s", n);
        CHECK_MSG(pn_array_dtype(pn_prod(a, &ax, 1, false)) == t[i].sum, "prod %s", n);
        CHECK_MSG(pn_array_dtype(pn_max(a, &ax, 1, false)) == t[i].in, "max %s", n);
        CHECK_MSG(pn_array_dtype(pn_min(a, NULL, 0, false)) == t[i].in, "min %s", n);
        CHECK_MSG(pn_array_dtype(pn_all(a, &ax, 1, false)) == PN_BOOL, "all %s", n);
        CHECK_MSG(pn_array_dtype(pn_any(a, NULL, 0, true)) == PN_BOOL, "any %s", n);
        CHECK_MSG(pn_array_dtype(pn_mean(a, &ax, 1, false)) == t[i].mean, "mean %s", n);
        CHECK_MSG(pn_array_dtype(pn_var(a, &ax, 1, false, 0)) == t[i].mean, "var %s", n);
        CHECK_MSG(pn_array_dtype(pn_std(a, &ax, 1, false, 1)) == t[i].mean, "std %s", n);
        CHECK_MSG(pn_array_dtype(pn_logsumexp(a, &ax, 1, false)) == t[i].mean, "lse %s", n);
        CHECK_MSG(pn_array_dtype(pn_argmax(a, ax, false)) == PN_UINT32, "argmax %s", n);
        CHECK_MSG(pn_array_dtype(pn_argmin(a, PN_ALL_AXES, false)) == PN_UINT32, "argmin %s", n);
        CHECK_MSG(pn_array_dtype(pn_softmax(a, &ax, 1, false)) == t[i].mean, "softmax %s", n);
        CHECK_MSG(pn_array_dtype(pn_cumsum(a, 0, false, true)) ==
                      (t[i].in == PN_BOOL ? PN_INT32 : t[i].in),
                  "cumsum %s", n);
        CHECK_MSG(pn_array_dtype(pn_cumprod(a, 0, false, true)) == t[i].in, "cumprod %s", n);
        CHECK_MSG(pn_array_dtype(pn_cummax(a, 0, false, true)) == t[i].in, "cummax %s", n);
        CHECK_MSG(pn_array_dtype(pn_logcumsumexp(a, 0, false, true)) == t[i].mean, "lcse %s", n);
        /* no axis: sum keeps the dtype, all casts to bool (MLX) */
        CHECK_MSG(pn_array_dtype(pn_sum(a, &ax, 0, false)) == t[i].in, "sum() %s", n);
        CHECK_MSG(pn_array_dtype(pn_all(a, &ax, 0, false)) == PN_BOOL, "all() %s", n);
    }
    pn_scope_pop();
}

/* Integers accumulate in their result type; half means accumulate in float. */
TEST(accumulation_width)
{
    pn_scope_push();
    const int64_t n = 300, big = 100000;
    pn_array *i8 = pn_full(&n, 1, pn_scalar(100, PN_INT8), PN_INT8);
    pn_array *u8 = pn_full(&n, 1, pn_scalar(255, PN_UINT8), PN_UINT8);
    CHECK(pn_item_int(pn_sum(i8, NULL, 0, false)) == 30000);
    CHECK(pn_item_int(pn_sum(u8, NULL, 0, false)) == 76500);
    CHECK(pn_item(pn_mean(u8, NULL, 0, false)) == 255);
    pn_array *h = pn_ones(&big, 1, PN_FLOAT16);
    CHECK(fabs(pn_item(pn_mean(h, NULL, 0, false)) - 1) < 1e-3);
    CHECK(fabs(pn_item(pn_var(h, NULL, 0, false, 0))) < 1e-3);
    CHECK(isinf(pn_item(pn_sum(h, NULL, 0, false)))); /* 100000 overflows float16 */
    pn_array *b = pn_ones(&big, 1, PN_BFLOAT16);
    CHECK(fabs(pn_item(pn_sum(b, NULL, 0, false)) - 100000) <= 512); /* not stuck at 256 */
    pn_scope_pop();
}

TEST(nan_and_infinity)
{
    pn_scope_push();
    const double v[] = {1, NAN, 3, -2, 5, 4, 0, -1};
    const int64_t sh[] = {2, 4}, s2[] = {2};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    int ax = 1;
    for (int d = 0; d < 4; d++) {
        pn_array *a = pn_astype(pn_array_from_data(v, sh, 2, PN_FLOAT64), dts[d]);
        const double mx[] = {NAN, 5}, mn[] = {NAN, -1}, sm[] = {NAN, 8};
        test_check_values("max nan", pn_max(a, &ax, 1, false), s2, 1, dts[d], mx, 0, 0);
        test_check_values("min nan", pn_min(a, &ax, 1, false), s2, 1, dts[d], mn, 0, 0);
        test_check_values("sum nan", pn_sum(a, &ax, 1, false), s2, 1, dts[d], sm, 0, 0);
        const double am[] = {1, 0}, an[] = {1, 3};
        test_check_values("argmax nan", pn_argmax(a, 1, false), s2, 1, PN_UINT32, am, 0, 0);
        test_check_values("argmin nan", pn_argmin(a, 1, false), s2, 1, PN_UINT32, an, 0, 0);
        const double cm[] = {1, NAN, NAN, NAN, 5, 5, 5, 5};
        test_check_values("cummax nan", pn_cummax(a, 1, false, true), sh, 2, dts[d], cm, 0, 0);
        /* the max also wins through the column kernel */
        pn_array *t = pn_transpose(a, NULL, 0);
        int a0 = 0;
        test_check_values("max nan cols", pn_max(pn_copy(t), &a0, 1, false), s2, 1, dts[d], mx,
                          0, 0);
        test_check_values("lse nan", pn_logsumexp(a, &ax, 1, false), s2, 1, dts[d],
                          (double[]){NAN, log(exp(5) + exp(4) + 1 + exp(-1))}, 4 * test_tol(dts[d]),
                          0);
    }
    /* logsumexp of all -inf gives -inf, of +inf gives +inf; softmax with some -inf */
    const double w[] = {-INFINITY, -INFINITY, -INFINITY, 1, INFINITY, 2, -INFINITY, 0, 0};
    const int64_t s33[] = {3, 3}, s3[] = {3};
    pn_array *b = pn_astype(pn_array_from_data(w, s33, 2, PN_FLOAT64), PN_FLOAT32);
    const double lse[] = {-INFINITY, INFINITY, log(2)};
    test_check_values("lse inf", pn_logsumexp(b, &ax, 1, false), s3, 1, PN_FLOAT32, lse, 1e-6, 0);
    const double sm[] = {0, 0.5, 0.5};
    pn_array *row = pn_slice(b, (int64_t[]){2, 0}, (int64_t[]){3, 3}, NULL, 2);
    test_check_values("softmax -inf", pn_softmax(row, &ax, 1, false), (int64_t[]){1, 3}, 2,
                      PN_FLOAT32, sm, 1e-6, 0);
    const double lc[] = {-INFINITY, -INFINITY, -INFINITY, 1, INFINITY, INFINITY,
                         -INFINITY, 0, log(2)};
    test_check_values("logcumsumexp inf", pn_logcumsumexp(b, 1, false, true), s33, 2,
                      PN_FLOAT32, lc, 1e-6, 0);
    pn_scope_pop();
}

TEST(empty_and_identities)
{
    pn_scope_push();
    const int64_t sh[] = {3, 0, 2}, so[] = {3, 2};
    int ax = 1;
    pn_array *a = pn_zeros(sh, 3, PN_FLOAT32);
    double ones[6], zeros[6], nans[6];
    for (int i = 0; i < 6; i++) ones[i] = 1, zeros[i] = 0, nans[i] = NAN;
    test_check_values("sum empty", pn_sum(a, &ax, 1, false), so, 2, PN_FLOAT32, zeros, 0, 0);
    test_check_values("prod empty", pn_prod(a, &ax, 1, false), so, 2, PN_FLOAT32, ones, 0, 0);
    test_check_values("all empty", pn_all(a, &ax, 1, false), so, 2, PN_BOOL, ones, 0, 0);
    test_check_values("any empty", pn_any(a, &ax, 1, false), so, 2, PN_BOOL, zeros, 0, 0);
    test_check_values("mean empty", pn_mean(a, &ax, 1, false), so, 2, PN_FLOAT32, nans, 0, 0);
    const int64_t z[] = {0};
    test_check_values("sum over none", pn_sum(pn_zeros(z, 1, PN_INT8), NULL, 0, false), NULL, 0,
                      PN_INT32, zeros, 0, 0);
    CHECK_ERR(pn_max(a, &ax, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_min(a, NULL, 0, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argmax(a, 0, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_logsumexp(a, &ax, 1, false), PN_ERR_INVALID_ARGUMENT);
    /* empty softmax / scans give empty arrays */
    pn_array *s = pn_softmax(a, &ax, 1, false);
    CHECK_OK(s);
    CHECK(pn_size(s) == 0 && pn_eval(&s, 1) == 0);
    pn_array *c = pn_cumsum(a, 1, false, true);
    CHECK(c && pn_size(c) == 0 && pn_eval(&c, 1) == 0);
    pn_scope_pop();
}

TEST(errors)
{
    pn_scope_push();
    const int64_t sh[] = {2, 3};
    pn_array *a = test_random_array(sh, 2, PN_FLOAT32, -1, 1);
    int bad = 2, neg = -3, dup[] = {0, -2}, ok[] = {1, 0};
    CHECK_ERR(pn_sum(a, &bad, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_prod(a, &neg, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_max(a, dup, 2, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_all(a, dup, 2, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_mean(a, &bad, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_var(a, dup, 2, false, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_std(a, &bad, 1, false, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_logsumexp(a, dup, 2, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_softmax(a, &bad, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_log_softmax(a, dup, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argmax(a, 2, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argmin(a, -3, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_cumsum(a, 2, false, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_cummax(a, -3, false, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_softmax(pn_scalar(1, PN_FLOAT32), ok, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_sum(NULL, NULL, 0, false), PN_ERR_INVALID_ARGUMENT);
    /* sticky: a failed input keeps the first error */
    pn_clear_error();
    CHECK(pn_mean(pn_sum(a, &bad, 1, false), NULL, 0, false) == NULL);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK_OK(pn_sum(a, ok, 2, false));
    pn_scope_pop();
}

/* ───────────────────────────── argmax / argmin ───────────────────────────── */

static void check_arg(pn_array *a, bool is_max, int axis, bool kd, const char *label)
{
    pn_scope_push();
    int nd = pn_ndim(a);
    const int64_t *shape = pn_shape(a);
    double *x = test_to_f64(a);
    int64_t outer = 1, n, inner = 1, oshape[PNC_MAX_NDIM];
    int ond = 0;
    if (axis == PN_ALL_AXES) {
        n = pn_size(a);
        if (kd)
            for (; ond < nd; ond++) oshape[ond] = 1;
    } else {
        int ax = axis < 0 ? axis + nd : axis;
        for (int i = 0; i < ax; i++) outer *= shape[i];
        for (int i = ax + 1; i < nd; i++) inner *= shape[i];
        n = shape[ax];
        for (int i = 0; i < nd; i++)
            if (i != ax) oshape[ond++] = shape[i];
            else if (kd) oshape[ond++] = 1;
    }
    double *ref = malloc((size_t)(outer * inner + 1) * sizeof *ref);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            int64_t best = 0;
            for (int64_t i = 1; i < n; i++) {
                double v = x[(o * n + i) * inner + k], b = x[(o * n + best) * inner + k];
                if ((is_max ? v > b : v < b) || (isnan(v) && !isnan(b))) best = i;
            }
            ref[o * inner + k] = (double)best;
        }
    char what[128];
    snprintf(what, sizeof what, "%s arg%s(%s, axis=%d, keepdims=%d)", label, is_max ? "max" : "min",
             pn_dtype_name(pn_array_dtype(a)), axis, (int)kd);
    pn_array *r = is_max ? pn_argmax(a, axis, kd) : pn_argmin(a, axis, kd);
    test_check_values(what, r, oshape, ond, PN_UINT32, ref, 0, 0);
    free(x);
    free(ref);
    pn_scope_pop();
}

TEST(argmax_argmin)
{
    pn_scope_push();
    const int64_t shapes[][4] = {{0}, {7}, {3, 4, 5}, {4, 700}};
    const int nds[] = {0, 1, 3, 2};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16,
                            PN_INT32,   PN_UINT8,   PN_BOOL,    PN_INT64};
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 8; d++)
            for (int v = 0; v < V_COUNT; v++) {
                if (v != V_CONTIG && nds[s] < 2) continue;
                pn_scope_push();
                /* few distinct values so that ties (first index wins) happen */
                pn_array *a = make_view(v, shapes[s], nds[s], dts[d], true);
                for (int kd = 0; kd < 2; kd++)
                    for (int m = 0; m < 2; m++) {
                        check_arg(a, m, PN_ALL_AXES, kd, view_names[v]);
                        for (int ax = nds[s] ? -1 : 0; ax < nds[s]; ax++) check_arg(a, m, ax, kd, view_names[v]);
                    }
                pn_scope_pop();
            }
    pn_scope_pop();
}

/* ───────────────────────────── softmax, log_softmax ───────────────────────────── */

static void check_softmax(pn_array *a, const int *axes, int naxes, bool log_sm, bool precise,
                          const char *label)
{
    pn_scope_push();
    int nd = pn_ndim(a);
    const int64_t *shape = pn_shape(a);
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < (axes ? naxes : nd); i++)
        red[axes ? (axes[i] < 0 ? axes[i] + nd : axes[i]) : i] = true;
    int64_t n = pn_size(a), nout = 1;
    for (int i = 0; i < nd; i++)
        if (!red[i]) nout *= shape[i];
    double *x = test_to_f64(a), *lse = malloc((size_t)(nout + 1) * sizeof *lse),
           *mag = malloc((size_t)(nout + 1) * sizeof *mag), *ref = malloc((size_t)(n + 1) * sizeof *ref);
    ref_reduce(R_LSE, x, shape, nd, red, 0, lse, mag);
    for (int64_t f = 0; f < n; f++) {
        double l = lse[kept_index(f, shape, nd, red)];
        ref[f] = log_sm ? x[f] - l : exp(x[f] - l);
    }
    pn_dtype dt = least_float(pn_array_dtype(a));
    double tol = 4 * test_tol(dt);
    char what[128];
    snprintf(what, sizeof what, "%s %s(%s, naxes=%d%s)", label, log_sm ? "log_softmax" : "softmax",
             pn_dtype_name(pn_array_dtype(a)), axes ? naxes : -1, precise ? ", precise" : "");
    pn_array *r = log_sm ? pn_log_softmax(a, axes, naxes) : pn_softmax(a, axes, naxes, precise);
    test_check_values(what, r, shape, nd, dt, ref, tol, tol * (log_sm ? 8 : 1));
    free(x);
    free(lse);
    free(mag);
    free(ref);
    pn_scope_pop();
}

TEST(softmax_log_softmax)
{
    pn_scope_push();
    const int64_t sh[] = {3, 4, 5}, big[] = {3, 1000};
    const int axs[][3] = {{-1}, {1, 2}, {0}, {0, 2}, {2, 0}, {0}, {1}};
    const int nax[] = {1, 2, 1, 2, 2, 0, 1};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16, PN_INT32};
    for (int d = 0; d < 5; d++)
        for (int v = 0; v < V_COUNT; v++) {
            pn_scope_push();
            pn_array *a = make_view(v, sh, 3, dts[d], false);
            for (int ls = 0; ls < 2; ls++) {
                check_softmax(a, NULL, 0, ls, false, view_names[v]);
                for (int i = 0; i < 7; i++)
                    for (int p = 0; p < 2; p++)
                        check_softmax(a, axs[i], nax[i], ls, p, view_names[v]);
            }
            pn_scope_pop();
        }
    int last = -1;
    check_softmax(rnd(big, 2, PN_FLOAT32, false), &last, 1, false, false, "rows");
    check_softmax(rnd(big, 2, PN_FLOAT16, false), &last, 1, false, true, "rows");
    /* large values do not overflow */
    pn_array *x = pn_multiply(rnd(big, 2, PN_FLOAT32, false), pn_weak_float(400));
    check_softmax(x, &last, 1, false, false, "large");
    check_softmax(x, &last, 1, true, false, "large");
    /* long rows: the GPU's 1024-thread cached softmax element by element (an odd length), and
     * float64 rows longer than its registers hold (the two-pass kernel) */
    const int64_t longr[] = {2, 9001};
    check_softmax(rnd(longr, 2, PN_FLOAT32, false), &last, 1, false, false, "long rows");
    check_softmax(rnd(longr, 2, PN_FLOAT64, false), &last, 1, false, false, "long rows");
    pn_scope_pop();
}

/* ───────────────────────────── scans ───────────────────────────── */

typedef enum { S_SUM, S_PROD, S_MAX, S_MIN, S_LAE, S_NOPS } sop;
static const char *sop_names[] = {"cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"};

static pn_array *apply_scan(sop op, pn_array *a, int axis, bool rev, bool inc)
{
    switch (op) {
    case S_SUM: return pn_cumsum(a, axis, rev, inc);
    case S_PROD: return pn_cumprod(a, axis, rev, inc);
    case S_MAX: return pn_cummax(a, axis, rev, inc);
    case S_MIN: return pn_cummin(a, axis, rev, inc);
    default: return pn_logcumsumexp(a, axis, rev, inc);
    }
}

static double lae(double a, double b)
{
    if (isnan(a) || isnan(b)) return NAN;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return isinf(hi) ? hi : hi + log1p(exp(lo - hi));
}

static void check_scan(sop op, pn_array *a, int axis, bool rev, bool inc, const char *label)
{
    pn_scope_push();
    int nd = pn_ndim(a);
    const int64_t *shape = pn_shape(a);
    pn_dtype in = pn_array_dtype(a);
    pn_dtype dt = op == S_SUM && in == PN_BOOL ? PN_INT32 : op == S_LAE ? least_float(in) : in;
    int64_t n = pn_size(a), outer = 1, len = n, inner = 1, oshape[PNC_MAX_NDIM];
    int ond = nd;
    memcpy(oshape, shape, (size_t)nd * sizeof *oshape);
    if (axis == PN_ALL_AXES) {
        ond = 1;
        oshape[0] = n;
    } else {
        int ax = axis < 0 ? axis + nd : axis;
        for (int i = 0; i < ax; i++) outer *= shape[i];
        for (int i = ax + 1; i < nd; i++) inner *= shape[i];
        len = shape[ax];
    }
    double *x = test_to_f64(a), *ref = malloc((size_t)(n + 1) * sizeof *ref),
           *mag = malloc((size_t)(n + 1) * sizeof *mag);
    double ident = op == S_SUM ? 0 : op == S_PROD ? 1 : op == S_MAX ? lowest(in)
                 : op == S_MIN ? highest(in) : -INFINITY;
    double maxmag = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            double acc = ident, m = 0;
            for (int64_t s = 0; s < len; s++) {
                int64_t i = rev ? len - 1 - s : s, e = (o * len + i) * inner + k;
                double v = x[e], nxt = acc;
                switch (op) {
                case S_SUM: nxt = acc + v; break;
                case S_PROD: nxt = acc * v; break;
                case S_MAX: nxt = (isnan(v) || v > acc) ? v : acc; break;
                case S_MIN: nxt = (isnan(v) || v < acc) ? v : acc; break;
                default: nxt = lae(acc, v); break;
                }
                if (in == PN_BOOL && op == S_PROD) nxt = nxt != 0;
                if (in == PN_UINT8 && op == S_SUM) nxt = fmod(nxt, 256); /* wraps, as uint8 */
                m = op == S_SUM ? m + fabs(v) : op == S_LAE ? 1 + fabs(nxt) : 0;
                maxmag = m > maxmag ? m : maxmag;
                ref[e] = inc ? nxt : acc;
                acc = nxt;
            }
        }
    double tol = 4 * test_tol(dt);
    char what[160];
    snprintf(what, sizeof what, "%s %s(%s, axis=%d, reverse=%d, inclusive=%d)", label,
             sop_names[op], pn_dtype_name(in), axis, (int)rev, (int)inc);
    pn_array *r = apply_scan(op, a, axis, rev, inc);
    test_check_values(what, r, oshape, ond, dt, ref, tol, tol * maxmag);
    free(x);
    free(ref);
    free(mag);
    pn_scope_pop();
}

TEST(scans_vs_reference)
{
    pn_scope_push();
    const int64_t shapes[][3] = {{0}, {0}, {9}, {3, 4, 5}, {4, 600}, {2, 0, 3}};
    const int nds[] = {0, 1, 1, 3, 2, 3};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16,
                            PN_INT32,   PN_UINT8,   PN_BOOL,    PN_INT64};
    for (int s = 0; s < 6; s++)
        for (int d = 0; d < 8; d++)
            for (int v = 0; v < V_COUNT; v++) {
                if (v != V_CONTIG && nds[s] < 2) continue;
                if (s == 4 && (v != V_CONTIG || test_quick())) continue;
                pn_scope_push();
                pn_array *a = make_view(v, shapes[s], nds[s], dts[d], false);
                pn_array *ap = make_view(v, shapes[s], nds[s], dts[d], true);
                for (int op = 0; op < S_NOPS; op++) {
                    /* long products overflow the half types */
                    if (op == S_PROD && s == 4 && pnC_is_half(dts[d])) continue;
                    for (int f = 0; f < 4; f++) {
                        check_scan(op, op == S_PROD ? ap : a, PN_ALL_AXES, f & 1, f & 2,
                                   view_names[v]);
                        for (int ax = nds[s] ? -1 : 0; ax < nds[s]; ax++)
                            check_scan(op, op == S_PROD ? ap : a, ax, f & 1, f & 2, view_names[v]);
                    }
                }
                pn_scope_pop();
            }
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

typedef enum {
    G_SUM, G_PROD, G_MAX, G_MIN, G_MEAN, G_VAR, G_STD, G_LSE, G_SOFTMAX, G_LOG_SOFTMAX,
    G_CUMSUM, G_CUMPROD, G_CUMMAX, G_CUMMIN, G_LCSE, G_ARGMAX
} gop;

typedef struct {
    gop op;
    int axes[4], naxes; /* naxes -1: NULL */
    bool keepdims;
    int ddof, axis;
    bool reverse, inclusive;
} gctx;

static pn_array *g_apply(void *c, pn_array *const *in)
{
    const gctx *g = c;
    const int *axes = g->naxes < 0 ? NULL : g->axes;
    int na = g->naxes < 0 ? 0 : g->naxes;
    pn_array *x = in[0];
    switch (g->op) {
    case G_SUM: return pn_sum(x, axes, na, g->keepdims);
    case G_PROD: return pn_prod(x, axes, na, g->keepdims);
    case G_MAX: return pn_max(x, axes, na, g->keepdims);
    case G_MIN: return pn_min(x, axes, na, g->keepdims);
    case G_MEAN: return pn_mean(x, axes, na, g->keepdims);
    case G_VAR: return pn_var(x, axes, na, g->keepdims, g->ddof);
    case G_STD: return pn_std(x, axes, na, g->keepdims, g->ddof);
    case G_LSE: return pn_logsumexp(x, axes, na, g->keepdims);
    case G_SOFTMAX: return pn_softmax(x, axes, na, false);
    case G_LOG_SOFTMAX: return pn_log_softmax(x, axes, na);
    case G_CUMSUM: return pn_cumsum(x, g->axis, g->reverse, g->inclusive);
    case G_CUMPROD: return pn_cumprod(x, g->axis, g->reverse, g->inclusive);
    case G_ARGMAX: return pn_argmax(x, g->axis, g->keepdims);
    default: break;
    }
    /* exclusive cummax / cummin / logcumsumexp start with an infinite identity, which finite
     * differences cannot difference: compare the finite part */
    pn_array *y = g->op == G_CUMMAX   ? pn_cummax(x, g->axis, g->reverse, g->inclusive)
                  : g->op == G_CUMMIN ? pn_cummin(x, g->axis, g->reverse, g->inclusive)
                                      : pn_logcumsumexp(x, g->axis, g->reverse, g->inclusive);
    return g->inclusive ? y : pn_where(pn_isinf(y), pn_weak_float(0), y);
}

static const char *gop_names[] = {"sum",    "prod",        "max",    "min",     "mean",
                                  "var",    "std",         "lse",    "softmax", "log_softmax",
                                  "cumsum", "cumprod",     "cummax", "cummin",  "logcumsumexp",
                                  "argmax"};

TEST(reduction_gradients)
{
    pn_scope_push();
    const int64_t sh[] = {2, 3, 4};
    const int axs[][3] = {{0}, {-1}, {0, 2}, {2, 0}, {0, 1, 2}, {1}};
    const int nax[] = {1, 1, 2, 2, 3, -1};
    for (int op = G_SUM; op <= G_LOG_SOFTMAX; op++)
        for (int i = 0; i < 6; i++)
            for (int kd = 0; kd < 2; kd++) {
                pn_scope_push();
                gctx g = {.op = (gop)op, .naxes = nax[i], .keepdims = kd, .ddof = kd};
                memcpy(g.axes, axs[i], sizeof axs[i]);
                pn_array *x = op == G_PROD ? test_random_array(sh, 3, PN_FLOAT64, 0.5, 1.5)
                                           : test_random_array(sh, 3, PN_FLOAT64, -2, 2);
                if (op == G_STD) x = pn_add(x, pn_weak_float(0)); /* any float input */
                char name[96];
                snprintf(name, sizeof name, "%s case %d keepdims %d", gop_names[op], i, kd);
                CHECK_MSG(test_gradcheck(name, g_apply, &g, 1, &x, 1e-5), "%s", name);
                /* through a transposed view */
                pn_array *t = pn_transpose(x, NULL, 0);
                CHECK_MSG(test_gradcheck(name, g_apply, &g, 1, &t, 1e-5), "%s transposed", name);
                pn_scope_pop();
            }
    /* prod with zeros (the gradient at a zero is the product of the others) */
    const double v[] = {2, 0, 3, 0.5, 1.5, 0, 0, 2, 4, 1, -1, 3};
    const int64_t s34[] = {3, 4};
    pn_array *z = pn_array_from_data(v, s34, 2, PN_FLOAT64);
    for (int i = 0; i < 6; i++) {
        if (i == 2 || i == 3 || i == 4) continue; /* axes of a 3-d array */
        gctx g = {.op = G_PROD, .naxes = nax[i]};
        memcpy(g.axes, axs[i], sizeof axs[i]);
        CHECK_MSG(test_gradcheck("prod zeros", g_apply, &g, 1, &z, 1e-5), "prod zeros %d", i);
    }
    gctx g2 = {.op = G_PROD, .naxes = 2, .axes = {0, 1}};
    CHECK(test_gradcheck("prod zeros all", g_apply, &g2, 1, &z, 1e-5));
    pn_scope_pop();
}

TEST(scan_gradients)
{
    pn_scope_push();
    const int64_t sh[] = {3, 5};
    const int axes[] = {0, 1, -1, PN_ALL_AXES};
    for (int op = G_CUMSUM; op <= G_LCSE; op++)
        for (int a = 0; a < 4; a++)
            for (int f = 0; f < 4; f++) {
                pn_scope_push();
                gctx g = {.op = (gop)op, .axis = axes[a], .reverse = f & 1, .inclusive = f & 2};
                pn_array *x = op == G_CUMPROD ? test_random_array(sh, 2, PN_FLOAT64, 0.5, 1.5)
                                              : test_random_array(sh, 2, PN_FLOAT64, -2, 2);
                char name[96];
                snprintf(name, sizeof name, "%s axis %d reverse %d inclusive %d", gop_names[op],
                         axes[a], f & 1, (f & 2) != 0);
                CHECK_MSG(test_gradcheck(name, g_apply, &g, 1, &x, 1e-5), "%s", name);
                pn_array *t = pn_transpose(x, NULL, 0);
                CHECK_MSG(test_gradcheck(name, g_apply, &g, 1, &t, 1e-5), "%s transposed", name);
                pn_scope_pop();
            }
    pn_scope_pop();
}

static int op_closure(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = g_apply(ctx, in);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* cumprod's vjp with zeros (its jvp is exact only without zeros): brute force reference of
 * d/dx_j sum_i c_i out_i, out_i the product over the scan of i. */
TEST(cumprod_vjp_with_zeros)
{
    pn_scope_push();
    const double v[] = {2, 0, 3, 0, 4, 1.5}, c[] = {1, -2, 0.5, 3, 1, 2};
    const int64_t n = 6;
    for (int f = 0; f < 4; f++) {
        bool rev = f & 1, inc = f & 2;
        double ref[6];
        for (int j = 0; j < n; j++) {
            ref[j] = 0;
            for (int i = 0; i < n; i++) {
                bool jin = rev ? (inc ? j >= i : j > i) : (inc ? j <= i : j < i);
                if (!jin) continue;
                double p = c[i];
                for (int k = 0; k < n; k++) {
                    bool kin = rev ? (inc ? k >= i : k > i) : (inc ? k <= i : k < i);
                    if (kin && k != j) p *= v[k];
                }
                ref[j] += p;
            }
        }
        gctx g = {.op = G_CUMPROD, .axis = 0, .reverse = rev, .inclusive = inc};
        pn_array *x = pn_array_from_data(v, &n, 1, PN_FLOAT64);
        pn_array *cot = pn_array_from_data(c, &n, 1, PN_FLOAT64);
        pn_array *out[PN_MAX_OUTPUTS], *vj[1] = {NULL};
        int nout = 0;
        pn_closure *cl = pn_closure_new(op_closure, &g, NULL);
        CHECK(pn_vjp(cl, 1, &x, 1, &cot, &nout, out, vj) == 0);
        char what[64];
        snprintf(what, sizeof what, "cumprod vjp zeros reverse %d inclusive %d", rev, inc);
        test_check_values(what, vj[0], &n, 1, PN_FLOAT64, ref, 1e-12, 1e-12);
        pn_closure_release(cl);
    }
    pn_scope_pop();
}

/* vmap over axis 1 of a (3, 4, 5) array equals the op on each (3, 5) slice, stacked. */
TEST(vmap_rules)
{
    pn_scope_push();
    const int64_t sh[] = {3, 4, 5};
    pn_array *x = test_random_array(sh, 3, PN_FLOAT32, -2, 2);
    gctx cases[] = {
        {.op = G_SUM, .naxes = 2, .axes = {0, 1}},
        {.op = G_SUM, .naxes = 1, .axes = {-1}, .keepdims = true},
        {.op = G_MEAN, .naxes = -1},
        {.op = G_MAX, .naxes = 1, .axes = {0}},
        {.op = G_PROD, .naxes = 1, .axes = {1}, .keepdims = true},
        {.op = G_LSE, .naxes = 1, .axes = {0}},
        {.op = G_VAR, .naxes = 1, .axes = {1}, .ddof = 1},
        {.op = G_SOFTMAX, .naxes = 1, .axes = {-1}},
        {.op = G_SOFTMAX, .naxes = 1, .axes = {0}},
        {.op = G_LOG_SOFTMAX, .naxes = -1},
        {.op = G_CUMSUM, .axis = 0, .inclusive = true},
        {.op = G_CUMSUM, .axis = PN_ALL_AXES, .reverse = true},
        {.op = G_CUMMAX, .axis = 1, .inclusive = true},
        {.op = G_LCSE, .axis = -1, .reverse = true, .inclusive = true},
        {.op = G_ARGMAX, .axis = 1},
        {.op = G_ARGMAX, .axis = PN_ALL_AXES, .keepdims = true},
        {.op = G_ARGMAX, .axis = PN_ALL_AXES},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pn_scope_push();
        pn_array *parts[4];
        for (int64_t b = 0; b < 4; b++) {
            int one = 1;
            pn_array *sl = pn_slice(x, (int64_t[]){0, b, 0}, (int64_t[]){3, b + 1, 5}, NULL, 3);
            parts[b] = g_apply(&cases[c], (pn_array *[]){pn_squeeze(sl, &one, 1)});
        }
        pn_array *ref = pn_stack(parts, 4, 0);
        int in_ax = 1;
        pn_closure *f = pn_closure_new(op_closure, &cases[c], NULL);
        pn_closure *vf = pn_vmap(f, &in_ax, 1, NULL, 1);
        pn_array *out[PN_MAX_OUTPUTS];
        int nout = 0;
        char what[64];
        snprintf(what, sizeof what, "vmap %s case %zu", gop_names[cases[c].op], c);
        CHECK_MSG(vf && pn_closure_call(vf, 1, &x, &nout, out) == 0, "%s: %s", what,
                  pn_last_error_message());
        double *rv = ref ? test_to_f64(ref) : NULL;
        if (rv && nout == 1)
            test_check_values(what, out[0], pn_shape(ref), pn_ndim(ref), pn_array_dtype(ref), rv,
                              1e-5, 1e-5);
        free(rv);
        pn_closure_release(vf);
        pn_closure_release(f);
        pn_scope_pop();
    }
    pn_scope_pop();
}

/* Second order: the gradient of a gradient composes (vjps are built from ops). */
static int grad_sum_softmax(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    int ax = -1;
    pn_array *w = ctx;
    out[0] = pn_sum(pn_multiply(pn_softmax(in[0], &ax, 1, false), w), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *hvp_fn(void *ctx, pn_array *const *in)
{
    pn_closure *f = pn_closure_new(grad_sum_softmax, ctx, NULL);
    pn_closure *gf = pn_grad(f, NULL, 0);
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    int rc = pn_closure_call(gf, 1, in, &nout, out);
    pn_closure_release(gf);
    pn_closure_release(f);
    return rc ? NULL : out[0];
}

TEST(second_order)
{
    pn_scope_push();
    const int64_t sh[] = {2, 5};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
    pn_array *w = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
    CHECK(test_gradcheck("grad of softmax", hvp_fn, w, 1, &x, 1e-5));
    pn_scope_pop();
}

/* ───────────────────────────── speed ───────────────────────────── */

/* Not a benchmark: the full sum of 2^24 float32 must not be pathologically slow (a scalar
 * or single-threaded path would still pass; bench/ measures the bandwidth). */
TEST(full_sum_large)
{
    if (test_quick()) return;
    pn_scope_push();
    const int64_t n = 1 << 24;
    pn_array *a = pn_ones(&n, 1, PN_FLOAT32);
    pn_array *s = pn_sum(a, NULL, 0, false);
    CHECK(fabs(pn_item(s) - (double)n) < 1);
    pn_scope_pop();
}

/* ───────────────────────────── max / min vjp (ExtremeVjp) ───────────────────────────── */

typedef struct {
    bool is_min;
    int axes[3], naxes;
    bool keepdims;
    pn_array *x; /* the fixed point (for the cotangent-only closures) */
} ev_ctx;

static pn_array *ev_reduce(const ev_ctx *e, pn_array *x)
{
    return e->is_min ? pn_min(x, e->axes, e->naxes, e->keepdims)
                     : pn_max(x, e->axes, e->naxes, e->keepdims);
}

static int ev_reduce_fn(void *c, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    *nout = 1;
    out[0] = ev_reduce(c, in[0]);
    return out[0] ? 0 : -1;
}

/* The vjp of the reduction at e->x as a function of the cotangent (linear: its own vjp,
 * jvp and vmap are ExtremeVjp's derivative rules). */
static pn_array *ev_vjp_of_cot(void *c, pn_array *const *in)
{
    ev_ctx *e = c;
    pn_closure *f = pn_closure_new(ev_reduce_fn, e, NULL);
    int nout = 0;
    pn_array *out[1] = {NULL}, *g[1] = {NULL};
    int rc = pn_vjp(f, 1, &e->x, 1, in, &nout, out, g);
    pn_closure_release(f);
    return rc ? NULL : g[0];
}

static int ev_vjp_fn(void *c, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    *nout = 1;
    out[0] = ev_vjp_of_cot(c, in);
    return out[0] ? 0 : -1;
}

/* The gradient of max / min with many ties, in every float dtype, over axes that include or
 * skip the last one, with and without keepdims, on dense and transposed inputs: each window's
 * cotangent split evenly among its extremes (float64 reference). Then the rule's own
 * derivatives (linear in the cotangent: finite differences are exact) and its batching. */
TEST(extreme_vjp_ties)
{
    pn_scope_push();
    const int64_t sh[] = {3, 4, 10};
    const int axs[][3] = {{1}, {2}, {0, 2}, {0, 1}, {0, 1, 2}};
    const int nax[] = {1, 1, 2, 2, 3};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    for (int d = 0; d < 4; d++)
        for (int i = 0; i < 5; i++)
            for (int v = 0; v < 4; v++) { /* v: min?, keepdims?, transposed? mixed */
                pn_scope_push();
                ev_ctx e = {.is_min = v & 1, .naxes = nax[i], .keepdims = v & 2};
                memcpy(e.axes, axs[i], sizeof axs[i]);
                pn_array *x = pn_floor(test_random_array(sh, 3, dts[d], 0, 3)); /* ties */
                if (v == 1 || v == 2) /* a transposed view of the same shape's values */
                    x = pn_transpose(pn_floor(test_random_array((int64_t[]){10, 4, 3}, 3, dts[d], 0, 3)),
                                     NULL, 0);
                double *xd = test_to_f64(x);
                /* the kept index of each element, the extremes, their counts */
                int64_t n = 3 * 4 * 10, nk = 1;
                bool red[3] = {0};
                for (int a = 0; a < nax[i]; a++) red[axs[i][a]] = true;
                for (int a = 0; a < 3; a++) nk *= red[a] ? 1 : sh[a];
                int64_t *key = malloc((size_t)n * sizeof *key);
                double *m = malloc((size_t)nk * sizeof *m), *ties = calloc((size_t)nk, sizeof *ties);
                for (int64_t k = 0; k < nk; k++) m[k] = e.is_min ? INFINITY : -INFINITY;
                for (int64_t j = 0; j < n; j++) {
                    int64_t idx[3] = {j / 40, j / 10 % 4, j % 10}, k = 0;
                    for (int a = 0; a < 3; a++) k = red[a] ? k : k * sh[a] + idx[a];
                    key[j] = k;
                    m[k] = e.is_min ? fmin(m[k], xd[j]) : fmax(m[k], xd[j]);
                }
                for (int64_t j = 0; j < n; j++) ties[key[j]] += xd[j] == m[key[j]];
                pn_array *y = ev_reduce(&e, x);
                pn_array *cot = test_random_array(pn_shape(y), pn_ndim(y), dts[d], -1, 1);
                double *cd = test_to_f64(cot), *ref = malloc((size_t)n * sizeof *ref);
                for (int64_t j = 0; j < n; j++) ref[j] = xd[j] == m[key[j]] ? cd[key[j]] / ties[key[j]] : 0;
                e.x = x;
                char name[96];
                snprintf(name, sizeof name, "%s %s axes case %d keepdims %d view %d",
                         pn_dtype_name(dts[d]), e.is_min ? "min" : "max", i, e.keepdims, v);
                test_check_values(name, ev_vjp_of_cot(&e, &cot), sh, 3, dts[d], ref, test_tol(dts[d]),
                                  test_tol(dts[d]));
                if (dts[d] == PN_FLOAT64) {
                    CHECK_MSG(test_gradcheck(name, ev_vjp_of_cot, &e, 1, &cot, 1e-6), "%s", name);
                    /* batching over the cotangent: two cotangents at once == one by one */
                    pn_array *cots = pn_stack((pn_array *[]){cot, pn_negative(cot)}, 2, 0);
                    pn_closure *f = pn_closure_new(ev_vjp_fn, &e, NULL);
                    pn_closure *vf = pn_vmap(f, (int[]){0}, 1, NULL, 1);
                    int nout = 0;
                    pn_array *b[1] = {NULL};
                    CHECK(pn_closure_call(vf, 1, &cots, &nout, b) == 0);
                    double *both = malloc(2 * (size_t)n * sizeof *both);
                    for (int64_t j = 0; j < n; j++) both[j] = ref[j], both[n + j] = -ref[j];
                    test_check_values(name, b[0], (int64_t[]){2, 3, 4, 10}, 4, PN_FLOAT64, both, 1e-12, 0);
                    free(both);
                    pn_closure_release(vf);
                    pn_closure_release(f);
                }
                free(xd), free(key), free(m), free(ties), free(cd), free(ref);
                pn_scope_pop();
            }
    pn_scope_pop();
}
