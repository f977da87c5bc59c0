/* gradcheck.c — test_gradcheck (harness.h): checks an op's vjp and jvp against central finite
 * differences in float64. The vjp with a random cotangent u is compared, element by element
 * of each input, with (<u, f(x + eps e)> - <u, f(x - eps e)>) / 2 eps; the jvp with random
 * tangents t with (f(x + eps t) - f(x - eps t)) / 2 eps. */
#include "harness.h"

#include <string.h>

#define GC_EPS 1e-6
#define GC_ALL_ELEMENTS 64 /* inputs up to this size are checked at every element */
#define GC_SAMPLES 32      /* elements checked in larger inputs */
#define GC_MAX_REPORTS 4   /* mismatches printed per check */

static bool gc_is_float(pn_dtype t)
{
    return t == PN_FLOAT16 || t == PN_FLOAT32 || t == PN_FLOAT64 || t == PN_BFLOAT16;
}

/* The op as a closure of its differentiated (floating-point) inputs only; the others are
 * held fixed. */
typedef struct gc_ctx {
    test_op_fn fn;
    void *ctx;
    int nin, ndiff;
    pn_array **all;  /* nin inputs as float64 (floating ones) or as given */
    int *diff;       /* ndiff indices into all */
    pn_array **args; /* scratch: nin */
} gc_ctx;

static int gc_call(void *c, int n, pn_array *const *in, int *nout, pn_array **out)
{
    gc_ctx *g = c;
    memcpy(g->args, g->all, (size_t)g->nin * sizeof *g->args);
    for (int k = 0; k < g->ndiff && k < n; k++) g->args[g->diff[k]] = in[k];
    pn_array *y = g->fn(g->ctx, g->args);
    if (!y) return -1;
    out[0] = y;
    *nout = 1;
    return 0;
}

/* f with differentiated input k replaced by the float64 data x (NULL: unchanged), as doubles
 * (malloc'd, size *n). NULL on failure (reported). */
static double *gc_eval(gc_ctx *g, const char *name, int k, const double *x, int64_t *n)
{
    pn_scope_push();
    memcpy(g->args, g->all, (size_t)g->nin * sizeof *g->args);
    if (x) {
        pn_array *a = g->all[g->diff[k]];
        g->args[g->diff[k]] = pn_array_from_data(x, pn_shape(a), pn_ndim(a), PN_FLOAT64);
    }
    pn_array *y = g->fn(g->ctx, g->args);
    double *v = NULL;
    if (!y)
        test_fail(__FILE__, __LINE__, "gradcheck %s: the function failed: %s", name,
                  pn_last_error_message());
    else {
        v = test_to_f64(y);
        *n = pn_size(y);
    }
    pn_scope_pop();
    return v;
}

static double gc_dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static bool gc_close(double got, double want, double tol)
{
    double scale = fabs(want) > 1 ? fabs(want) : 1;
    return fabs(got - want) <= tol * scale; /* NaN fails */
}

/* Random normal data as an array of shape/dtype; its values (as stored) into vals. */
static pn_array *gc_random(const int64_t *shape, int ndim, pn_dtype dtype, double *vals,
                           int64_t n)
{
    for (int64_t i = 0; i < n; i++) vals[i] = test_normal();
    pn_array *a = pn_astype(pn_array_from_data(vals, shape, ndim, PN_FLOAT64), dtype);
    double *stored = a ? test_to_f64(a) : NULL;
    if (stored) memcpy(vals, stored, (size_t)n * sizeof *vals);
    free(stored);
    return a;
}

/* Checks the vjp: every (or a sample of) element of each differentiated input. */
static int gc_check_vjp(gc_ctx *g, const char *name, pn_closure *cl, pn_array *y,
                        double **xs, double tol)
{
    int64_t ny = pn_size(y);
    double *u = malloc((size_t)(ny + 1) * sizeof *u);
    pn_array *ua = gc_random(pn_shape(y), pn_ndim(y), pn_array_dtype(y), u, ny);
    pn_array *dins[64], **din = g->ndiff <= 64 ? dins : malloc((size_t)g->ndiff * sizeof *din);
    pn_array **vjps = malloc((size_t)(g->ndiff + 1) * sizeof *vjps);
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0, ok = 1;
    for (int k = 0; k < g->ndiff; k++) din[k] = g->all[g->diff[k]];
    if (!ua || pn_vjp(cl, g->ndiff, din, 1, &ua, &nout, out, vjps)) {
        test_fail(__FILE__, __LINE__, "gradcheck %s: vjp failed: %s", name,
                  pn_last_error_message());
        ok = 0;
    }
    for (int k = 0; k < g->ndiff && ok; k++) {
        pn_array *a = din[k];
        int64_t n = pn_size(a);
        if (pn_ndim(vjps[k]) != pn_ndim(a) ||
            memcmp(pn_shape(vjps[k]), pn_shape(a), (size_t)pn_ndim(a) * sizeof(int64_t)) ||
            (pn_array_dtype(y) == PN_FLOAT64 && pn_array_dtype(vjps[k]) != PN_FLOAT64)) {
            test_fail(__FILE__, __LINE__,
                      "gradcheck %s: the vjp of input %d has the wrong shape or dtype %s", name,
                      g->diff[k], pn_dtype_name(pn_array_dtype(vjps[k])));
            ok = 0;
            break;
        }
        double *gv = test_to_f64(vjps[k]);
        if (!gv) {
            ok = 0;
            break;
        }
        double *x = malloc((size_t)(n + 1) * sizeof *x);
        memcpy(x, xs[k], (size_t)n * sizeof *x);
        int64_t count = n <= GC_ALL_ELEMENTS ? n : GC_SAMPLES, reports = 0;
        for (int64_t s = 0; s < count && ok; s++) {
            int64_t e = n <= GC_ALL_ELEMENTS ? s : (int64_t)(test_rand_u64() % (uint64_t)n);
            int64_t m1 = 0, m2 = 0;
            x[e] = xs[k][e] + GC_EPS;
            double *yp = gc_eval(g, name, k, x, &m1);
            x[e] = xs[k][e] - GC_EPS;
            double *ym = gc_eval(g, name, k, x, &m2);
            x[e] = xs[k][e];
            if (!yp || !ym || m1 != ny || m2 != ny) {
                ok = 0;
            } else {
                double fd = (gc_dot(u, yp, ny) - gc_dot(u, ym, ny)) / (2 * GC_EPS);
                if (!gc_close(gv[e], fd, tol)) {
                    if (reports++ < GC_MAX_REPORTS)
                        test_fail(__FILE__, __LINE__,
                                  "gradcheck %s: vjp of input %d, element %lld: expected %.10g "
                                  "(finite differences), got %.10g",
                                  name, g->diff[k], (long long)e, fd, gv[e]);
                }
            }
            free(yp);
            free(ym);
        }
        if (reports) ok = 0;
        free(x);
        free(gv);
    }
    free(u);
    free(vjps);
    if (din != dins) free(din);
    return ok;
}

/* Checks the jvp with random tangents on every differentiated input at once. */
static int gc_check_jvp(gc_ctx *g, const char *name, pn_closure *cl, pn_array *y,
                        double **xs, double tol)
{
    int64_t ny = pn_size(y);
    pn_array **din = malloc((size_t)(2 * g->ndiff + 1) * sizeof *din), **tan = din + g->ndiff;
    double **t = malloc((size_t)(g->ndiff + 1) * sizeof *t);
    pn_array *out[PN_MAX_OUTPUTS], *jv[PN_MAX_OUTPUTS];
    int nout = 0, ok = 1;
    for (int k = 0; k < g->ndiff; k++) {
        pn_array *a = din[k] = g->all[g->diff[k]];
        int64_t n = pn_size(a);
        t[k] = malloc((size_t)(n + 1) * sizeof **t);
        tan[k] = gc_random(pn_shape(a), pn_ndim(a), PN_FLOAT64, t[k], n);
        if (!tan[k]) ok = 0;
    }
    if (!ok || pn_jvp(cl, g->ndiff, din, tan, &nout, out, jv)) {
        test_fail(__FILE__, __LINE__, "gradcheck %s: jvp failed: %s", name,
                  pn_last_error_message());
        ok = 0;
    }
    double *jvv = ok ? test_to_f64(jv[0]) : NULL;
    if (ok && !jvv) ok = 0;
    if (ok && pn_size(jv[0]) != ny) {
        test_fail(__FILE__, __LINE__, "gradcheck %s: the jvp has %lld elements, expected %lld",
                  name, (long long)pn_size(jv[0]), (long long)ny);
        ok = 0;
    }
    if (ok) {
        /* f(x + eps t) and f(x - eps t): perturb every differentiated input */
        double *ys[2] = {NULL, NULL};
        for (int side = 0; side < 2 && ok; side++) {
            double sgn = side == 0 ? 1 : -1;
            pn_scope_push();
            memcpy(g->args, g->all, (size_t)g->nin * sizeof *g->args);
            for (int k = 0; k < g->ndiff; k++) {
                pn_array *a = din[k];
                int64_t n = pn_size(a);
                double *x = malloc((size_t)(n + 1) * sizeof *x);
                for (int64_t e = 0; e < n; e++) x[e] = xs[k][e] + sgn * GC_EPS * t[k][e];
                g->args[g->diff[k]] = pn_array_from_data(x, pn_shape(a), pn_ndim(a), PN_FLOAT64);
                free(x);
            }
            pn_array *yy = g->fn(g->ctx, g->args);
            ys[side] = yy ? test_to_f64(yy) : NULL;
            if (!ys[side]) {
                test_fail(__FILE__, __LINE__, "gradcheck %s: the function failed: %s", name,
                          pn_last_error_message());
                ok = 0;
            }
            pn_scope_pop();
        }
        int reports = 0;
        for (int64_t e = 0; e < ny && ok; e++) {
            double fd = (ys[0][e] - ys[1][e]) / (2 * GC_EPS);
            if (!gc_close(jvv[e], fd, tol) && reports++ < GC_MAX_REPORTS)
                test_fail(__FILE__, __LINE__,
                          "gradcheck %s: jvp, output element %lld: expected %.10g (finite "
                          "differences), got %.10g",
                          name, (long long)e, fd, jvv[e]);
        }
        if (reports) ok = 0;
        free(ys[0]);
        free(ys[1]);
    }
    free(jvv);
    for (int k = 0; k < g->ndiff; k++) free(t[k]);
    free(t);
    free(din);
    return ok;
}

int test_gradcheck(const char *name, test_op_fn fn, void *ctx, int nin, pn_array *const *in,
                   double tol)
{
    pn_scope_push();
    gc_ctx g = {.fn = fn, .ctx = ctx, .nin = nin};
    g.all = malloc((size_t)(nin + 1) * sizeof *g.all);
    g.args = malloc((size_t)(nin + 1) * sizeof *g.args);
    g.diff = malloc((size_t)(nin + 1) * sizeof *g.diff);
    double **xs = calloc((size_t)(nin + 1), sizeof *xs);
    pn_closure *cl = NULL;
    int ok = 1;
    for (int i = 0; i < nin && ok; i++) {
        if (!in[i]) {
            test_fail(__FILE__, __LINE__, "gradcheck %s: input %d is NULL (%s)", name, i,
                      pn_last_error_message());
            ok = 0;
            break;
        }
        g.all[i] = in[i];
        if (gc_is_float(pn_array_dtype(in[i]))) {
            g.all[i] = pn_astype(in[i], PN_FLOAT64);
            xs[g.ndiff] = test_to_f64(g.all[i]);
            if (!xs[g.ndiff]) ok = 0;
            g.diff[g.ndiff++] = i;
        }
    }
    int64_t ny = 0;
    double *y0 = ok ? gc_eval(&g, name, 0, NULL, &ny) : NULL;
    if (!y0) ok = 0;
    free(y0);
    pn_array *y = NULL;
    if (ok) {
        memcpy(g.args, g.all, (size_t)nin * sizeof *g.args);
        y = fn(ctx, g.args);
        ok = y != NULL;
    }
    /* only floating outputs of floating inputs have derivatives to check */
    if (ok && g.ndiff > 0 && gc_is_float(pn_array_dtype(y))) {
        cl = pn_closure_new(gc_call, &g, NULL);
        if (!cl) {
            test_fail(__FILE__, __LINE__, "gradcheck %s: %s", name, pn_last_error_message());
            ok = 0;
        }
        if (ok) ok = gc_check_vjp(&g, name, cl, y, xs, tol);
        if (ok) ok = gc_check_jvp(&g, name, cl, y, xs, tol);
        pn_closure_release(cl);
    }
    for (int k = 0; k < g.ndiff; k++) free(xs[k]);
    free(xs);
    free(g.all);
    free(g.args);
    free(g.diff);
    pn_scope_pop();
    return ok;
}
