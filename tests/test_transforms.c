/* test_transforms.c — function transformations: closures, vjp, jvp, grad, value_and_grad
 * (argnums, auxiliary outputs, nesting to third order, mixed partials), stop_gradient,
 * checkpoint, custom_vjp, vmap (generic path and batching rules), a million-node chain,
 * errors travelling out of closures, and the gradient checker itself. */
#include "harness.h"

#include <string.h>
#include <time.h>

#include "core/core.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static pn_array *scalar64(double v) { return pn_scalar(v, PN_FLOAT64); }

static double item(pn_array *a)
{
    if (!a) {
        test_fail(__FILE__, __LINE__, "NULL array: %s", pn_last_error_message());
        return NAN;
    }
    return pn_item(a);
}

static pn_closure *closure(pn_fn fn) { return pn_closure_new(fn, NULL, NULL); }

/* Releases the closures of a list. */
#define RELEASE_ALL(...)                                                                       \
    do {                                                                                       \
        pn_closure *_all[] = {__VA_ARGS__};                                                    \
        for (size_t _i = 0; _i < sizeof _all / sizeof *_all; _i++) pn_closure_release(_all[_i]); \
    } while (0)

/* Calls f on n inputs and returns output j (or NULL, reported). */
static pn_array *call1(pn_closure *f, int n, pn_array *const *in, int j)
{
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    if (pn_closure_call(f, n, in, &nout, out) || j >= nout) {
        test_fail(__FILE__, __LINE__, "closure call failed: %s", pn_last_error_message());
        return NULL;
    }
    return out[j];
}

/* ───────────────────────────── functions under test ───────────────────────────── */

/* (x, y) -> (x * y, sin(x)) */
static int f_mul_sin(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_multiply(in[0], in[1]);
    out[1] = pn_sin(in[0]);
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

/* (x, y) -> (sum(x * x * y), x + 1): a loss and an auxiliary output */
static int f_loss_aux(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_multiply(pn_multiply(in[0], in[0]), in[1]), NULL, 0, false);
    out[1] = pn_add(in[0], pn_weak_float(1));
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

static int f_cube(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_multiply(pn_multiply(in[0], in[0]), in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int f_sin(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sin(in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int f_exp(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_exp(in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* (x, y) -> x^2 y^3 */
static int f_x2y3(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *x2 = pn_multiply(in[0], in[0]);
    out[0] = pn_multiply(x2, pn_multiply(pn_multiply(in[1], in[1]), in[1]));
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* x -> sum(x * stop_gradient(x)) */
static int f_stop(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_multiply(in[0], pn_stop_gradient(in[0])), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* (x, y) -> sin(exp(x)) * y (elementwise) */
static int f_body(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_multiply(pn_sin(pn_exp(in[0])), in[1]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* the identity, returning its input as is */
static int f_identity(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = in[0];
    out[1] = in[0];
    *nout = 2;
    return 0;
}

/* fails with an error of its own */
static int f_fail(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sin(in[0]); /* something to clean up */
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "f_fail: deliberate failure %d", 42);
}

/* fails without saying why */
static int f_fail_silent(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    return -1;
}

/* ───────────────────────────── closures ───────────────────────────── */

static int destroyed;
static void count_destroy(void *ctx) { destroyed += *(int *)ctx; }

TEST(closure_lifetime_and_call)
{
    pn_scope_push();
    static int one = 1;
    destroyed = 0;
    pn_closure *f = pn_closure_new(f_sin, &one, count_destroy);
    CHECK_OK(f);
    CHECK(pn_closure_retain(f) == f);
    pn_closure_release(f);
    CHECK(destroyed == 0);
    pn_closure *g = pn_grad(f, NULL, 0); /* g holds f */
    pn_closure_release(f);
    CHECK(destroyed == 0);
    pn_array *x = scalar64(0.3);
    CHECK(fabs(item(call1(g, 1, &x, 0)) - cos(0.3)) < 1e-12);
    pn_closure_release(g);
    CHECK(destroyed == 1);
    pn_closure_release(NULL);

    /* a NULL function pointer is an error; its context is destroyed at once */
    pn_clear_error();
    destroyed = 0;
    CHECK(pn_closure_new(NULL, &one, count_destroy) == NULL);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && destroyed == 1);
    pn_clear_error();
    pn_scope_pop();
}

TEST(closure_outputs_are_distinct_owned_arrays)
{
    /* a function returning its input twice: the caller gets two handles it may release */
    pn_scope_push();
    pn_closure *f = closure(f_identity);
    pn_array *x = scalar64(2.0);
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_closure_call(f, 1, &x, &n, out) == 0 && n == 2);
    CHECK(out[0] != x && out[1] != x && out[0] != out[1]);
    CHECK(item(out[0]) == 2.0 && item(out[1]) == 2.0);
    pn_release(out[0]);
    pn_release(out[1]);
    CHECK(item(x) == 2.0);
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(closure_errors)
{
    pn_scope_push();
    pn_closure *f = closure(f_fail), *s = closure(f_fail_silent);
    pn_array *x = scalar64(1.0), *out[PN_MAX_OUTPUTS], *nul = NULL;
    int n = 7;
    pn_clear_error();
    CHECK(pn_closure_call(f, 1, &x, &n, out) == -1 && n == 0);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "deliberate failure 42") != NULL);
    pn_clear_error();
    CHECK(pn_closure_call(s, 1, &x, &n, out) == -1 && pn_last_error() != PN_OK);
    pn_clear_error();
    CHECK(pn_closure_call(f, 1, &nul, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_closure_call(NULL, 1, &x, &n, out) == -1 &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure_release(f);
    pn_closure_release(s);
    pn_scope_pop();
}

/* ───────────────────────────── vjp / jvp ───────────────────────────── */

TEST(vjp_two_outputs)
{
    pn_scope_push();
    int64_t shapes[][2] = {{3, 4}, {5, 1}, {0, 3}};
    pn_closure *f = closure(f_mul_sin);
    for (int s = 0; s < 3; s++) {
        int64_t *sh = shapes[s];
        pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
        pn_array *y = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
        pn_array *u0 = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
        pn_array *u1 = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
        pn_array *prim[2] = {x, y}, *cot[2] = {u0, u1}, *out[PN_MAX_OUTPUTS], *vjps[2];
        int n = 0;
        CHECK(pn_vjp(f, 2, prim, 2, cot, &n, out, vjps) == 0 && n == 2);
        if (n != 2) continue;
        double *xv = test_to_f64(x), *yv = test_to_f64(y), *a = test_to_f64(u0),
               *b = test_to_f64(u1);
        int64_t m = sh[0] * sh[1];
        double *r0 = malloc((m + 1) * sizeof *r0), *r1 = malloc((m + 1) * sizeof *r1),
               *o0 = malloc((m + 1) * sizeof *o0), *o1 = malloc((m + 1) * sizeof *o1);
        for (int64_t i = 0; i < m; i++) {
            r0[i] = a[i] * yv[i] + b[i] * cos(xv[i]);
            r1[i] = a[i] * xv[i];
            o0[i] = xv[i] * yv[i];
            o1[i] = sin(xv[i]);
        }
        test_check_values("vjp x", vjps[0], sh, 2, PN_FLOAT64, r0, 1e-12, 1e-14);
        test_check_values("vjp y", vjps[1], sh, 2, PN_FLOAT64, r1, 1e-12, 1e-14);
        test_check_values("out 0", out[0], sh, 2, PN_FLOAT64, o0, 1e-12, 1e-14);
        test_check_values("out 1", out[1], sh, 2, PN_FLOAT64, o1, 1e-12, 1e-14);
        free(xv), free(yv), free(a), free(b), free(r0), free(r1), free(o0), free(o1);
    }
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(vjp_unused_primal_and_float32)
{
    /* a primal the outputs do not depend on gets zeros of its shape and dtype */
    pn_scope_push();
    pn_closure *f = closure(f_sin);
    int64_t sh[1] = {4}, sh2[2] = {2, 3};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT32, -3, 3);
    pn_array *unused = test_random_array(sh2, 2, PN_FLOAT32, -3, 3);
    pn_array *u = pn_ones(sh, 1, PN_FLOAT32);
    pn_array *prim[2] = {x, unused}, *out[PN_MAX_OUTPUTS], *vjps[2];
    int n = 0;
    CHECK(pn_vjp(f, 2, prim, 1, &u, &n, out, vjps) == 0 && n == 1);
    double *xv = test_to_f64(x), r[4], z[6] = {0};
    for (int i = 0; i < 4; i++) r[i] = cos(xv[i]);
    test_check_values("vjp f32", vjps[0], sh, 1, PN_FLOAT32, r, 1e-5, 1e-6);
    test_check_values("zeros", vjps[1], sh2, 2, PN_FLOAT32, z, 0, 0);
    free(xv);
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(vjp_errors)
{
    pn_scope_push();
    pn_closure *f = closure(f_mul_sin);
    int64_t sh[1] = {3}, bad[1] = {4};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT64, -1, 1);
    pn_array *u = test_random_array(sh, 1, PN_FLOAT64, -1, 1);
    pn_array *ub = test_random_array(bad, 1, PN_FLOAT64, -1, 1);
    pn_array *prim[2] = {x, x}, *out[PN_MAX_OUTPUTS], *vjps[2];
    int n = 5;
    pn_array *one[1] = {u}, *mism[2] = {u, ub};
    pn_clear_error();
    CHECK(pn_vjp(f, 2, prim, 1, one, &n, out, vjps) == -1 && n == 0);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "cotangents") != NULL);
    pn_clear_error();
    CHECK(pn_vjp(f, 2, prim, 2, mism, &n, out, vjps) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "shape") != NULL);
    pn_clear_error();
    pn_array *withnull[2] = {u, NULL};
    CHECK(pn_vjp(f, 2, prim, 2, withnull, &n, out, vjps) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure *ff = closure(f_fail);
    CHECK(pn_vjp(ff, 1, &x, 1, one, &n, out, vjps) == -1);
    CHECK(strstr(pn_last_error_message(), "deliberate failure") != NULL);
    pn_clear_error();
    pn_closure_release(ff);
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(jvp_two_outputs)
{
    pn_scope_push();
    pn_closure *f = closure(f_mul_sin);
    int64_t sh[2] = {2, 5};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    pn_array *y = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    pn_array *tx = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
    pn_array *ty = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
    pn_array *prim[2] = {x, y}, *tan[2] = {tx, ty}, *out[PN_MAX_OUTPUTS], *jv[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_jvp(f, 2, prim, tan, &n, out, jv) == 0 && n == 2);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), *a = test_to_f64(tx), *b = test_to_f64(ty);
    double r0[10], r1[10];
    for (int i = 0; i < 10; i++) {
        r0[i] = a[i] * yv[i] + xv[i] * b[i];
        r1[i] = cos(xv[i]) * a[i];
    }
    test_check_values("jvp 0", jv[0], sh, 2, PN_FLOAT64, r0, 1e-12, 1e-14);
    test_check_values("jvp 1", jv[1], sh, 2, PN_FLOAT64, r1, 1e-12, 1e-14);
    free(xv), free(yv), free(a), free(b);

    /* tangent shape must match its primal */
    int64_t bad[1] = {10};
    pn_array *tb[2] = {pn_reshape(tx, bad, 1), ty};
    pn_clear_error();
    CHECK(pn_jvp(f, 2, prim, tb, &n, out, jv) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure_release(f);
    pn_scope_pop();
}

/* (x, y) -> (x % y)^2 through divmod, whose quotient output dies unused */
static int f_remainder_sq(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *qr[2];
    if (pn_divmod(in[0], in[1], qr)) return -1;
    pn_release(qr[0]);
    out[0] = pn_multiply(qr[1], qr[1]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* x -> sum(x * x), evaluating the product in the middle of the trace */
static int f_eval_inside(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *x2 = pn_multiply(in[0], in[0]);
    if (pn_eval(&x2, 1)) return -1;
    out[0] = pn_sum(x2, NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(vjp_multi_output_node_and_eval_inside)
{
    pn_scope_push();
    int64_t sh[1] = {6};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT64, 0.5, 9.5);
    pn_array *y = test_random_array(sh, 1, PN_FLOAT64, 1.1, 2.9);
    pn_array *prim[2] = {x, y}, *u = test_random_array(sh, 1, PN_FLOAT64, -1, 1);
    pn_array *out[PN_MAX_OUTPUTS], *v[2];
    int n = 0;
    pn_closure *f = closure(f_remainder_sq);
    CHECK(pn_vjp(f, 2, prim, 1, &u, &n, out, v) == 0 && n == 1);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), *uv = test_to_f64(u), rx[6], ry[6];
    for (int i = 0; i < 6; i++) {
        double q = floor(xv[i] / yv[i]), r = xv[i] - q * yv[i];
        rx[i] = 2 * r * uv[i];
        ry[i] = -2 * r * q * uv[i];
    }
    test_check_values("divmod dx", v[0], sh, 1, PN_FLOAT64, rx, 1e-12, 1e-12);
    test_check_values("divmod dy", v[1], sh, 1, PN_FLOAT64, ry, 1e-12, 1e-12);

    /* evaluation inside the traced function keeps the graph for the walk */
    pn_closure *e = closure(f_eval_inside), *ge = pn_grad(e, NULL, 0);
    for (int i = 0; i < 6; i++) rx[i] = 2 * xv[i];
    test_check_values("grad with eval inside", call1(ge, 1, &x, 0), sh, 1, PN_FLOAT64, rx, 1e-12,
                      0);

    /* grad of a function called with no inputs is an error; an input returned twice gets
     * both cotangents */
    pn_closure *c = closure(f_identity);
    pn_array *one = scalar64(1), *uu[2] = {one, one};
    pn_closure *wrap = pn_grad(c, NULL, 0);
    pn_clear_error();
    CHECK(pn_closure_call(wrap, 0, NULL, &n, out) == -1 &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_vjp(c, 1, &one, 2, uu, &n, out, v) == 0 && n == 2);
    CHECK(item(v[0]) == 2.0);
    free(xv), free(yv), free(uv);
    RELEASE_ALL(f, e, ge, c, wrap);
    pn_scope_pop();
}

/* ───────────────────────────── grad / value_and_grad ───────────────────────────── */

TEST(grad_argnums_and_aux)
{
    pn_scope_push();
    pn_closure *f = closure(f_loss_aux);
    int64_t sh[1] = {6};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT64, -2, 2);
    pn_array *y = test_random_array(sh, 1, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), gx[6], gy[6], aux[6], loss = 0;
    for (int i = 0; i < 6; i++) {
        gx[i] = 2 * xv[i] * yv[i];
        gy[i] = xv[i] * xv[i];
        aux[i] = xv[i] + 1;
        loss += xv[i] * xv[i] * yv[i];
    }
    pn_array *in[2] = {x, y}, *out[PN_MAX_OUTPUTS];
    int n = 0;

    pn_closure *g0 = pn_grad(f, NULL, 0); /* default: input 0 */
    CHECK(pn_closure_call(g0, 2, in, &n, out) == 0 && n == 1);
    test_check_values("grad x", out[0], sh, 1, PN_FLOAT64, gx, 1e-12, 1e-14);

    int order[2] = {1, -2}; /* y then x (negative counts from the end) */
    pn_closure *g10 = pn_grad(f, order, 2);
    CHECK(pn_closure_call(g10, 2, in, &n, out) == 0 && n == 2);
    test_check_values("grad y", out[0], sh, 1, PN_FLOAT64, gy, 1e-12, 1e-14);
    test_check_values("grad x 2", out[1], sh, 1, PN_FLOAT64, gx, 1e-12, 1e-14);

    pn_closure *vg = pn_value_and_grad(f, order, 2);
    CHECK(pn_closure_call(vg, 2, in, &n, out) == 0 && n == 4);
    CHECK(fabs(item(out[0]) - loss) < 1e-12 * (1 + fabs(loss)));
    test_check_values("aux", out[1], sh, 1, PN_FLOAT64, aux, 1e-12, 1e-14);
    test_check_values("vg y", out[2], sh, 1, PN_FLOAT64, gy, 1e-12, 1e-14);
    test_check_values("vg x", out[3], sh, 1, PN_FLOAT64, gx, 1e-12, 1e-14);

    /* errors: bad and repeated argnums, empty list, non-scalar output */
    int badnum[1] = {2}, rep[2] = {0, -2};
    pn_closure *gb = pn_grad(f, badnum, 1), *gr = pn_grad(f, rep, 2);
    pn_clear_error();
    CHECK(pn_closure_call(gb, 2, in, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "Invalid argument number") != NULL);
    pn_clear_error();
    CHECK(pn_closure_call(gr, 2, in, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_grad(f, badnum, 0) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure *ms = closure(f_mul_sin), *gms = pn_grad(ms, NULL, 0);
    CHECK(pn_closure_call(gms, 2, in, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "scalar") != NULL);
    pn_clear_error();
    pn_closure *ff = closure(f_fail), *gf = pn_value_and_grad(ff, NULL, 0);
    CHECK(pn_closure_call(gf, 1, &x, &n, out) == -1);
    CHECK(strstr(pn_last_error_message(), "deliberate failure 42") != NULL);
    pn_clear_error();

    free(xv), free(yv);
    RELEASE_ALL(f, g0, g10, vg, gb, gr, ms, gms, ff, gf);
    pn_scope_pop();
}

/* d^k/dx^k f at x through k nested pn_grad. */
static double nth_derivative(pn_fn fn, int k, double x)
{
    pn_closure *f = closure(fn), *g = f;
    pn_closure_retain(f);
    for (int i = 0; i < k; i++) {
        pn_closure *h = pn_grad(g, NULL, 0);
        pn_closure_release(g);
        g = h;
    }
    pn_array *xa = scalar64(x);
    double r = item(call1(g, 1, &xa, 0));
    pn_closure_release(g);
    pn_closure_release(f);
    return r;
}

TEST(grad_of_grad_three_levels)
{
    pn_scope_push();
    for (int t = 0; t < 3; t++) {
        double x = test_uniform(-2, 2);
        double want_cube[4] = {x * x * x, 3 * x * x, 6 * x, 6};
        double want_sin[4] = {sin(x), cos(x), -sin(x), -cos(x)};
        double e = exp(x);
        for (int k = 1; k <= 3; k++) {
            double c = nth_derivative(f_cube, k, x), s = nth_derivative(f_sin, k, x),
                   ex = nth_derivative(f_exp, k, x);
            CHECK_MSG(fabs(c - want_cube[k]) < 1e-10, "d%d x^3 at %g: %g vs %g", k, x, c,
                      want_cube[k]);
            CHECK_MSG(fabs(s - want_sin[k]) < 1e-12, "d%d sin at %g: %g vs %g", k, x, s,
                      want_sin[k]);
            CHECK_MSG(fabs(ex - e) < 1e-12 * e, "d%d exp at %g: %g vs %g", k, x, ex, e);
        }
    }
    pn_scope_pop();
}

TEST(mixed_partials_and_forward_over_reverse)
{
    pn_scope_push();
    double x = 1.3, y = -0.7;
    pn_closure *f = closure(f_x2y3);
    int a0[1] = {0}, a1[1] = {1};
    pn_closure *fx = pn_grad(f, a0, 1), *fxy = pn_grad(fx, a1, 1), *fy = pn_grad(f, a1, 1),
               *fyx = pn_grad(fy, a0, 1), *fxx = pn_grad(fx, a0, 1);
    pn_array *in[2] = {scalar64(x), scalar64(y)};
    double want = 6 * x * y * y;
    CHECK(fabs(item(call1(fxy, 2, in, 0)) - want) < 1e-12);
    CHECK(fabs(item(call1(fyx, 2, in, 0)) - want) < 1e-12);
    CHECK(fabs(item(call1(fxx, 2, in, 0)) - 2 * y * y * y) < 1e-12);
    /* jvp of the gradient: Hessian-vector product [fxx fxy; fyx fyy] (1, 2) */
    int both[2] = {0, 1};
    pn_closure *gboth = pn_grad(f, both, 2);
    pn_array *tan[2] = {scalar64(1), scalar64(2)}, *out[PN_MAX_OUTPUTS], *jv[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_jvp(gboth, 2, in, tan, &n, out, jv) == 0 && n == 2);
    double hxx = 2 * y * y * y, hxy = 6 * x * y * y, hyy = 6 * x * x * y;
    CHECK(fabs(item(jv[0]) - (hxx + 2 * hxy)) < 1e-12);
    CHECK(fabs(item(jv[1]) - (hxy + 2 * hyy)) < 1e-12);
    RELEASE_ALL(f, fx, fxy, fy, fyx, fxx, gboth);
    pn_scope_pop();
}

TEST(stop_gradient_blocks)
{
    pn_scope_push();
    pn_closure *f = closure(f_stop), *g = pn_grad(f, NULL, 0);
    int64_t sh[2] = {2, 3};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x);
    test_check_values("stop_gradient", call1(g, 1, &x, 0), sh, 2, PN_FLOAT64, xv, 1e-12, 0);
    free(xv);
    pn_closure_release(g);
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── checkpoint / custom_vjp ───────────────────────────── */

static pn_closure *ckpt_inner; /* checkpointed body used inside f_ckpt_loss */

/* (x, y) -> sum(body(body(x, y), y)) with the body checkpointed */
static int f_ckpt_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_closure *body = ctx ? ckpt_inner : NULL;
    pn_array *h[PN_MAX_OUTPUTS];
    int n = 0;
    pn_array *cur = in[0];
    for (int r = 0; r < 2; r++) {
        pn_array *args[2] = {cur, in[1]};
        if (body) {
            if (pn_closure_call(body, 2, args, &n, h)) return -1;
        } else if (f_body(NULL, 2, args, &n, h)) {
            return -1;
        }
        cur = h[0];
    }
    out[0] = pn_sum(cur, NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(checkpoint_matches_plain_grad)
{
    pn_scope_push();
    static int on = 1;
    pn_closure *body = closure(f_body);
    ckpt_inner = pn_checkpoint(body);
    CHECK_MSG(ckpt_inner != NULL, "checkpoint: %s", pn_last_error_message());
    pn_closure *plain = pn_closure_new(f_ckpt_loss, NULL, NULL),
               *ck = pn_closure_new(f_ckpt_loss, &on, NULL);
    int both[2] = {0, 1};
    pn_closure *gp = pn_value_and_grad(plain, both, 2), *gc = pn_value_and_grad(ck, both, 2);
    int64_t sh[2] = {3, 4};
    pn_array *in[2] = {test_random_array(sh, 2, PN_FLOAT64, -1, 1),
                       test_random_array(sh, 2, PN_FLOAT64, -1, 1)};
    pn_array *op[PN_MAX_OUTPUTS], *oc[PN_MAX_OUTPUTS];
    int np = 0, nc = 0;
    CHECK(pn_closure_call(gp, 2, in, &np, op) == 0 && np == 3);
    CHECK(pn_closure_call(gc, 2, in, &nc, oc) == 0 && nc == 3);
    if (np == 3 && nc == 3) {
        CHECK(fabs(item(op[0]) - item(oc[0])) < 1e-12);
        for (int k = 1; k < 3; k++) {
            double *r = test_to_f64(op[k]);
            test_check_values("checkpoint grad", oc[k], sh, 2, PN_FLOAT64, r, 1e-12, 1e-14);
            free(r);
        }
    }
    /* forward mode and second order go through the checkpoint too */
    pn_array *tan[2] = {pn_ones(sh, 2, PN_FLOAT64), pn_zeros(sh, 2, PN_FLOAT64)};
    pn_array *jo[PN_MAX_OUTPUTS], *jp[PN_MAX_OUTPUTS], *jc[PN_MAX_OUTPUTS];
    CHECK(pn_jvp(plain, 2, in, tan, &np, jo, jp) == 0);
    CHECK(pn_jvp(ck, 2, in, tan, &nc, jo, jc) == 0);
    CHECK(fabs(item(jp[0]) - item(jc[0])) < 1e-12);
    /* second order: the vjp of the gradient, through the recomputation */
    pn_closure *lp = pn_grad(plain, NULL, 0), *lc = pn_grad(ck, NULL, 0);
    pn_array *ip[PN_MAX_OUTPUTS], *ic[PN_MAX_OUTPUTS], *u = pn_ones(sh, 2, PN_FLOAT64);
    pn_array *vp[2], *vc[2];
    CHECK(pn_vjp(lp, 2, in, 1, &u, &np, ip, vp) == 0);
    CHECK(pn_vjp(lc, 2, in, 1, &u, &nc, ic, vc) == 0);
    for (int k = 0; k < 2; k++) {
        double *r = test_to_f64(vp[k]);
        test_check_values("checkpoint 2nd order", vc[k], sh, 2, PN_FLOAT64, r, 1e-10, 1e-12);
        free(r);
    }
    RELEASE_ALL(body, ckpt_inner, plain, ck, gp, gc, lp, lc);
    ckpt_inner = NULL;
    pn_scope_pop();
}

/* custom rule for sin: 2 * cos(x) * cotangent (twice the truth, so its use shows) */
static int sin_vjp_doubled(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    /* in: primal x, cotangent, output */
    out[0] = pn_multiply(pn_multiply(pn_cos(in[0]), in[1]), pn_weak_float(2));
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int vjp_wrong_count(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = in[1];
    out[1] = in[1];
    *nout = 2;
    return 0;
}

static pn_closure *custom_sin;

/* x -> sum(custom_sin(x) * x) */
static int f_custom_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *s = call1(custom_sin, 1, in, 0);
    out[0] = pn_sum(pn_multiply(s, in[0]), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(custom_vjp_rule_is_used)
{
    pn_scope_push();
    pn_closure *fs = closure(f_sin), *rule = closure(sin_vjp_doubled);
    custom_sin = pn_custom_vjp(fs, rule);
    CHECK_MSG(custom_sin != NULL, "custom_vjp: %s", pn_last_error_message());
    int64_t sh[1] = {5};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), val[5], g2[5], loss_g[5], jv[5];
    for (int i = 0; i < 5; i++) {
        val[i] = sin(xv[i]);
        g2[i] = 2 * cos(xv[i]);
        loss_g[i] = 2 * cos(xv[i]) * xv[i] + sin(xv[i]);
        jv[i] = cos(xv[i]); /* forward mode uses f's own derivative */
    }
    test_check_values("custom value", call1(custom_sin, 1, &x, 0), sh, 1, PN_FLOAT64, val, 1e-12,
                      0);
    pn_array *u = pn_ones(sh, 1, PN_FLOAT64), *out[PN_MAX_OUTPUTS], *v[1];
    int n = 0;
    CHECK(pn_vjp(custom_sin, 1, &x, 1, &u, &n, out, v) == 0);
    test_check_values("custom vjp", v[0], sh, 1, PN_FLOAT64, g2, 1e-12, 1e-14);
    pn_closure *loss = closure(f_custom_loss), *gl = pn_grad(loss, NULL, 0);
    test_check_values("custom in a loss", call1(gl, 1, &x, 0), sh, 1, PN_FLOAT64, loss_g, 1e-12,
                      1e-14);
    CHECK(pn_jvp(custom_sin, 1, &x, &u, &n, out, v) == 0);
    test_check_values("custom jvp", v[0], sh, 1, PN_FLOAT64, jv, 1e-12, 1e-14);

    /* a vjp function returning the wrong number of cotangents, or failing */
    pn_closure *wrong = closure(vjp_wrong_count), *cw = pn_custom_vjp(fs, wrong);
    pn_clear_error();
    CHECK(pn_vjp(cw, 1, &x, 1, &u, &n, out, v) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure *fail = closure(f_fail), *cf = pn_custom_vjp(fs, fail);
    CHECK(pn_vjp(cf, 1, &x, 1, &u, &n, out, v) == -1);
    CHECK(strstr(pn_last_error_message(), "deliberate failure") != NULL);
    pn_clear_error();
    CHECK(pn_custom_vjp(fs, NULL) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_checkpoint(NULL) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    free(xv);
    RELEASE_ALL(fs, rule, custom_sin, loss, gl, wrong, cw, fail, cf);
    custom_sin = NULL;
    pn_scope_pop();
}

/* pn_custom_function's jvp rule (custom jvp): in = primal x, tangent t; 3 * t (not cos(x) t,
 * so its use shows) */
static int sin_jvp_tripled(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = nin == 2 ? pn_multiply(in[1], pn_weak_float(3)) : NULL;
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* a jvp rule whose tangent has the wrong shape */
static int jvp_wrong_shape(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(in[1], NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(custom_function_jvp_rule_is_used)
{
    pn_scope_push();
    pn_closure *fs = closure(f_sin), *jr = closure(sin_jvp_tripled), *vr = closure(sin_vjp_doubled);
    pn_closure *both = pn_custom_function(fs, vr, jr, NULL), *jonly = pn_custom_function(fs, NULL, jr, NULL);
    CHECK_MSG(both && jonly, "custom_function: %s", pn_last_error_message());
    int64_t sh[1] = {4};
    pn_array *x = test_random_array(sh, 1, PN_FLOAT64, -2, 2), *t = test_random_array(sh, 1, PN_FLOAT64, -1, 1);
    double *xv = test_to_f64(x), *tv = test_to_f64(t), val[4], jt[4], g2[4], g1[4];
    for (int i = 0; i < 4; i++) {
        val[i] = sin(xv[i]), jt[i] = 3 * tv[i];
        g2[i] = 2 * cos(xv[i]) * tv[i], g1[i] = cos(xv[i]) * tv[i];
    }
    pn_array *out[PN_MAX_OUTPUTS], *v[1];
    int n = 0;
    CHECK(pn_jvp(both, 1, &x, &t, &n, out, v) == 0 && n == 1);
    test_check_values("custom_function value", out[0], sh, 1, PN_FLOAT64, val, 1e-12, 0);
    test_check_values("custom_function jvp", v[0], sh, 1, PN_FLOAT64, jt, 1e-12, 1e-14);
    CHECK(pn_vjp(both, 1, &x, 1, &t, &n, out, v) == 0);
    test_check_values("custom_function vjp", v[0], sh, 1, PN_FLOAT64, g2, 1e-12, 1e-14);
    /* no vjp rule: reverse mode differentiates f */
    CHECK(pn_vjp(jonly, 1, &x, 1, &t, &n, out, v) == 0);
    test_check_values("custom_function default vjp", v[0], sh, 1, PN_FLOAT64, g1, 1e-12, 1e-14);
    CHECK(pn_jvp(jonly, 1, &x, &t, &n, out, v) == 0);
    test_check_values("custom_function jvp only", v[0], sh, 1, PN_FLOAT64, jt, 1e-12, 1e-14);
    /* errors from the rule travel out */
    pn_closure *bad = closure(jvp_wrong_shape), *cb = pn_custom_function(fs, NULL, bad, NULL);
    pn_closure *fail = closure(f_fail), *cf = pn_custom_function(fs, NULL, fail, NULL);
    pn_clear_error();
    CHECK(pn_jvp(cb, 1, &x, &t, &n, out, v) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_jvp(cf, 1, &x, &t, &n, out, v) == -1);
    CHECK(strstr(pn_last_error_message(), "deliberate failure") != NULL);
    pn_clear_error();
    CHECK(pn_custom_function(NULL, vr, jr, NULL) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    free(xv), free(tv);
    RELEASE_ALL(fs, jr, vr, both, jonly, bad, cb, fail, cf);
    pn_scope_pop();
}

/* custom vmap rule for sin: in = x (batched), its axis; out = 5 * x (so its use shows), then
 * the same axis */
static int sin_vmap_rule(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = nin == 2 ? pn_multiply(in[0], pn_weak_float(5)) : NULL;
    out[1] = nin == 2 ? in[1] : NULL;
    *nout = 2;
    return out[0] ? 0 : -1;
}

/* a vmap rule that claims a batch axis the output does not have */
static int vmap_rule_bad_axis(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = in[0];
    out[1] = pn_scalar_int(7, PN_INT32);
    *nout = 2;
    return out[1] ? 0 : -1;
}

TEST(custom_function_vmap_rule_is_used)
{
    pn_scope_push();
    pn_closure *fs = closure(f_sin), *vr = closure(sin_vmap_rule), *bad = closure(vmap_rule_bad_axis);
    pn_closure *cf = pn_custom_function(fs, NULL, NULL, vr), *cb = pn_custom_function(fs, NULL, NULL, bad);
    int ax1 = 1;
    pn_closure *vm = pn_vmap(cf, &ax1, 1, NULL, 0), *vb = pn_vmap(cb, &ax1, 1, NULL, 0);
    int64_t sh[2] = {3, 4};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), ref[12], val[12];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ref[j * 3 + i] = 5 * xv[i * 4 + j], val[i * 4 + j] = sin(xv[i * 4 + j]);
    /* vmap over axis 1: the rule's output (batch axis 1) moved to axis 0 */
    test_check_values("custom vmap rule", call1(vm, 1, &x, 0), (int64_t[]){4, 3}, 2, PN_FLOAT64, ref,
                      1e-12, 0);
    /* called directly, the function itself */
    test_check_values("custom vmap direct", call1(cf, 1, &x, 0), sh, 2, PN_FLOAT64, val, 1e-12, 0);
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    pn_clear_error();
    CHECK(pn_closure_call(vb, 1, &x, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    free(xv);
    RELEASE_ALL(fs, vr, bad, cf, cb, vm, vb);
    pn_scope_pop();
}

/* ───────────────────────────── vmap ───────────────────────────── */

/* (x (4,), y (3,)) -> (sin(x) * sum(y), y + 1): the second does not depend on x */
static int f_vm(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_multiply(pn_sin(in[0]), pn_sum(in[1], NULL, 0, false));
    out[1] = pn_add(in[1], pn_weak_float(1));
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

TEST(vmap_matches_loop)
{
    pn_scope_push();
    pn_closure *f = closure(f_vm);
    int64_t xs[2] = {4, 5}, ys[1] = {3}; /* x mapped along axis 1 (batch 5) */
    pn_array *x = test_random_array(xs, 2, PN_FLOAT64, -2, 2);
    pn_array *y = test_random_array(ys, 1, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), sy = 0;
    for (int i = 0; i < 3; i++) sy += yv[i];
    int in_axes[2] = {1, -1};
    for (int oa = 0; oa < 2; oa++) {
        int out_axes[2] = {oa, 0};
        pn_closure *v = pn_vmap(f, in_axes, 2, out_axes, 2);
        pn_array *in[2] = {x, y}, *out[PN_MAX_OUTPUTS];
        int n = 0;
        CHECK(pn_closure_call(v, 2, in, &n, out) == 0 && n == 2);
        if (n == 2) {
            double r[20];
            int64_t rs[2] = {oa == 0 ? 5 : 4, oa == 0 ? 4 : 5};
            for (int b = 0; b < 5; b++)
                for (int i = 0; i < 4; i++)
                    r[oa == 0 ? b * 4 + i : i * 5 + b] = sin(xv[i * 5 + b]) * sy;
            test_check_values("vmap out 0", out[0], rs, 2, PN_FLOAT64, r, 1e-12, 1e-14);
            double r1[15];
            for (int b = 0; b < 5; b++)
                for (int i = 0; i < 3; i++) r1[b * 3 + i] = yv[i] + 1;
            /* an output that depends on no mapped input is broadcast along the batch, as MLX */
            test_check_values("vmap out 1", out[1], (int64_t[]){5, 3}, 2, PN_FLOAT64, r1, 1e-12, 0);
        }
        pn_closure_release(v);
    }
    /* vmap of vmap: both axes of a (3,4) input through sin */
    pn_closure *s = closure(f_sin), *v1 = pn_vmap(s, NULL, 0, NULL, 0),
               *v2 = pn_vmap(v1, NULL, 0, NULL, 0);
    int64_t ms[2] = {3, 4};
    pn_array *m = test_random_array(ms, 2, PN_FLOAT64, -2, 2);
    double *mv = test_to_f64(m), r[12];
    for (int i = 0; i < 12; i++) r[i] = sin(mv[i]);
    test_check_values("vmap of vmap", call1(v2, 1, &m, 0), ms, 2, PN_FLOAT64, r, 1e-12, 0);
    /* an empty batch */
    int64_t es[2] = {0, 4}, eo[2] = {0, 4};
    pn_array *e = pn_zeros(es, 2, PN_FLOAT32);
    test_check_values("vmap empty", call1(v1, 1, &e, 0), eo, 2, PN_FLOAT32, r, 0, 0);
    free(xv), free(yv), free(mv);
    RELEASE_ALL(f, s, v1, v2);
    pn_scope_pop();
}

/* elementwise ops carry batching rules: vmap takes the rule path, with broadcasting */
TEST(vmap_rules_with_broadcasting)
{
    pn_scope_push();
    pn_closure *f = closure(f_mul_sin);
    int in_axes[2] = {0, -1}, out_axes[2] = {2, 0};
    pn_closure *v = pn_vmap(f, in_axes, 2, out_axes, 2);
    int64_t xs[2] = {5, 4}, ys[2] = {3, 1}, o0[3] = {3, 4, 5};
    pn_array *x = test_random_array(xs, 2, PN_FLOAT64, -2, 2);
    pn_array *y = test_random_array(ys, 2, PN_FLOAT64, -2, 2);
    pn_array *in[2] = {x, y}, *out[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_closure_call(v, 2, in, &n, out) == 0 && n == 2);
    if (n == 2) {
        double *xv = test_to_f64(x), *yv = test_to_f64(y), r0[60], r1[20];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++)
                for (int b = 0; b < 5; b++) r0[(i * 4 + j) * 5 + b] = xv[b * 4 + j] * yv[i];
        for (int k = 0; k < 20; k++) r1[k] = sin(xv[k]);
        test_check_values("vmap rules 0", out[0], o0, 3, PN_FLOAT64, r0, 1e-12, 1e-14);
        test_check_values("vmap rules 1", out[1], xs, 2, PN_FLOAT64, r1, 1e-12, 1e-14);
        free(xv), free(yv);
    }
    pn_closure_release(v);
    pn_closure_release(f);
    pn_scope_pop();
}

/* per-example gradients: vmap(grad(sum(x * x * y))) over rows of x and y */
TEST(vmap_of_grad_and_grad_of_vmap)
{
    pn_scope_push();
    pn_closure *f = closure(f_loss_aux), *g = pn_grad(f, NULL, 0),
               *vg = pn_vmap(g, NULL, 0, NULL, 0);
    int64_t sh[2] = {3, 4};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    pn_array *y = test_random_array(sh, 2, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), r[12], rs[12];
    for (int i = 0; i < 12; i++) {
        r[i] = 2 * xv[i] * yv[i];
        rs[i] = cos(xv[i]);
    }
    pn_array *in[2] = {x, y};
    test_check_values("vmap(grad)", call1(vg, 2, in, 0), sh, 2, PN_FLOAT64, r, 1e-12, 1e-14);
    /* grad of a vmapped function: the vjp flows through slicing and stacking */
    pn_closure *s = closure(f_sin), *vs = pn_vmap(s, NULL, 0, NULL, 0);
    pn_array *u = pn_ones(sh, 2, PN_FLOAT64), *out[PN_MAX_OUTPUTS], *v[1];
    int n = 0;
    CHECK(pn_vjp(vs, 1, &x, 1, &u, &n, out, v) == 0);
    test_check_values("grad(vmap)", v[0], sh, 2, PN_FLOAT64, rs, 1e-12, 1e-14);
    free(xv), free(yv);
    RELEASE_ALL(f, g, vg, s, vs);
    pn_scope_pop();
}

TEST(vmap_errors)
{
    pn_scope_push();
    pn_closure *f = closure(f_mul_sin);
    int64_t a[2] = {3, 2}, b[2] = {4, 2};
    pn_array *x = test_random_array(a, 2, PN_FLOAT64, -1, 1);
    pn_array *y = test_random_array(b, 2, PN_FLOAT64, -1, 1), *s = scalar64(1);
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    struct {
        int in_axes[2];
        int nin;
        pn_array *in[2];
        const char *msg;
    } cases[] = {
        {{0, 0}, 2, {x, y}, "Inconsistent axis sizes"},
        {{0, 2}, 2, {x, x}, "invalid for input"},
        {{0, 0}, 2, {x, s}, "zero dimensions"},
        {{-1, -1}, 2, {x, x}, "must be mapped"},
        {{0, 0}, 1, {x, x}, "number of in axes"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pn_closure *v = pn_vmap(f, cases[c].in_axes, cases[c].nin, NULL, 0);
        pn_clear_error();
        CHECK_MSG(pn_closure_call(v, 2, cases[c].in, &n, out) == -1, "vmap case %zu", c);
        CHECK_MSG(pn_last_error() == PN_ERR_INVALID_ARGUMENT &&
                      strstr(pn_last_error_message(), cases[c].msg),
                  "vmap case %zu: %s", c, pn_last_error_message());
        pn_clear_error();
        pn_closure_release(v);
    }
    int oa[2] = {3, 0}, oa1[1] = {0};
    pn_closure *v = pn_vmap(f, NULL, 0, oa, 2), *v1 = pn_vmap(f, NULL, 0, oa1, 1);
    pn_array *in[2] = {x, x};
    CHECK(pn_closure_call(v, 2, in, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_closure_call(v1, 2, in, &n, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure *ff = closure(f_fail), *vf = pn_vmap(ff, NULL, 0, NULL, 0);
    CHECK(pn_closure_call(vf, 1, &x, &n, out) == -1);
    CHECK(strstr(pn_last_error_message(), "deliberate failure") != NULL);
    pn_clear_error();
    RELEASE_ALL(f, v, v1, ff, vf);
    pn_scope_pop();
}

/* A test primitive: y = 3 x (float64), with a batching rule and no derivatives. */
static int triple_vmaps;

static int triple_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    if (pnC_alloc_output(out[0])) return -1;
    pn_array *c = pnC_contiguous(in[0]);
    if (!c) return -1;
    const double *x = pnC_data(c);
    double *y = pnC_data(out[0]);
    for (int64_t i = 0; i < out[0]->size; i++) y[i] = 3 * x[i];
    pnC_decref(c);
    return 0;
}

static pn_array *triple(pn_array *x);

static int triple_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    triple_vmaps++;
    out[0] = triple(in[0]);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

static const pnC_primitive triple_prim = {
    .name = "TestTriple",
    .eval = {[PN_CPU] = triple_eval},
    .vmap = triple_vmap,
};

static pn_array *triple(pn_array *x)
{
    return pnC_make(&triple_prim, NULL, 0, 1, &x, PN_FLOAT64, x->shape, x->ndim);
}

static int f_triple(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = triple(triple(in[0]));
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* On the CPU stream: TestTriple has a CPU kernel only (its subject is the transformation, and
 * PONTE_GPU_STRICT=1 would refuse its fallback on the GPU). */
TEST(vmap_uses_batching_rules)
{
    CHECK(pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0})) == 0);
    pn_scope_push();
    pn_closure *f = closure(f_triple);
    int ax[1] = {1}, oa[1] = {0};
    pn_closure *v = pn_vmap(f, ax, 1, oa, 1);
    int64_t sh[2] = {3, 4}, osh[2] = {4, 3};
    pn_array *x = test_random_array(sh, 2, PN_FLOAT64, -1, 1);
    double *xv = test_to_f64(x), r[12];
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 3; i++) r[b * 3 + i] = 9 * xv[i * 4 + b];
    triple_vmaps = 0;
    test_check_values("vmap by rules", call1(v, 1, &x, 0), osh, 2, PN_FLOAT64, r, 1e-15, 0);
    CHECK(triple_vmaps == 2); /* one rule call per traced node, not per batch element */

    /* no vjp: differentiating through it is an error that names the primitive */
    pn_array *u = pn_ones(sh, 2, PN_FLOAT64), *out[PN_MAX_OUTPUTS], *g[1];
    int n = 0;
    pn_clear_error();
    CHECK(pn_vjp(f, 1, &x, 1, &u, &n, out, g) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "TestTriple does not support gradients") != NULL);
    pn_clear_error();
    CHECK(pn_jvp(f, 1, &x, &u, &n, out, g) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    free(xv);
    pn_closure_release(v);
    pn_closure_release(f);
    pn_scope_pop();
    pn_stream_pop();
}

/* ───────────────────────────── long graphs ───────────────────────────── */

static int64_t chain_length;

/* x -> x + x + ... + x (chain_length additions), releasing handles as it goes */
static int f_chain(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *y = in[0];
    for (int64_t i = 0; i < chain_length; i++) {
        pn_array *next = pn_add(y, in[0]);
        if (y != in[0]) pn_release(y);
        if (!next) return -1;
        y = next;
    }
    out[0] = y;
    *nout = 1;
    return 0;
}

TEST(million_node_chain)
{
    pn_scope_push();
    chain_length = test_quick() ? 200000 : 1000000;
    pn_closure *f = closure(f_chain), *vg = pn_value_and_grad(f, NULL, 0);
    pn_array *x = scalar64(0.5), *out[PN_MAX_OUTPUTS];
    int n = 0;
    clock_t t0 = clock();
    CHECK(pn_closure_call(vg, 1, &x, &n, out) == 0 && n == 2);
    if (n == 2) {
        CHECK(pn_eval(out, 2) == 0);
        CHECK(item(out[0]) == 0.5 * (double)(chain_length + 1));
        CHECK(item(out[1]) == (double)(chain_length + 1));
    }
    printf("  chain of %lld: value_and_grad + eval %.2f s\n", (long long)chain_length,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    /* forward mode over a long chain */
    chain_length /= 10;
    pn_array *t = scalar64(1), *jv[PN_MAX_OUTPUTS];
    CHECK(pn_jvp(f, 1, &x, &t, &n, out, jv) == 0 && n == 1);
    if (n == 1) CHECK(item(jv[0]) == (double)(chain_length + 1));
    pn_closure_release(vg);
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── the gradient checker ───────────────────────────── */

static pn_array *op_body(void *ctx, pn_array *const *in)
{
    return pn_multiply(pn_sin(pn_exp(in[0])), in[1]);
}

static pn_closure *bad_sin; /* sin with a wrong derivative rule */

static pn_array *op_bad(void *ctx, pn_array *const *in) { return call1(bad_sin, 1, in, 0); }

TEST(gradcheck_passes_and_fails)
{
    pn_scope_push();
    int64_t sh[2] = {3, 4}, big[1] = {100};
    pn_array *in[2] = {test_random_array(sh, 2, PN_FLOAT32, -1, 1),
                       test_random_array(sh, 2, PN_FLOAT64, -1, 1)};
    CHECK(test_gradcheck("sin(exp(x)) * y", op_body, NULL, 2, in, 1e-6));
    pn_array *inb[2] = {test_random_array(big, 1, PN_FLOAT64, -1, 1),
                        test_random_array(big, 1, PN_FLOAT64, -1, 1)};
    CHECK(test_gradcheck("sin(exp(x)) * y, 100 elements", op_body, NULL, 2, inb, 1e-6));

    /* it must be able to fail: a custom rule giving twice the true gradient */
    pn_closure *fs = closure(f_sin), *rule = closure(sin_vjp_doubled);
    bad_sin = pn_custom_vjp(fs, rule);
    int before = test_failures;
    printf("  (an expected gradcheck failure report follows)\n");
    fflush(stdout);
    int r = test_gradcheck("sin with a doubled vjp", op_bad, NULL, 1, in, 1e-6);
    test_failures = before;
    CHECK(r == 0);
    pn_closure_release(bad_sin);
    pn_closure_release(fs);
    pn_closure_release(rule);
    bad_sin = NULL;
    pn_scope_pop();
}

/* sum over k of in[k]^2 * (k + 1): many inputs, a 0-d loss */
static int f_weighted_squares(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *acc = pn_weak_float(0);
    for (int k = 0; k < nin && acc; k++)
        acc = pn_add(acc, pn_sum(pn_multiply(pn_square(in[k]), pn_weak_float(k + 1)), NULL, 0, false));
    out[0] = acc;
    *nout = 1;
    return acc ? 0 : -1;
}

/* pn_value_and_grad_call returns the gradients of many more inputs than a closure's
 * PN_MAX_OUTPUTS (a model with hundreds of parameter arrays), each equal to 2 (k + 1) x_k. */
/* A call returning -1 with the given error kind; clears the error. */
#define CHECK_RC_ERR(expr, kind)                                                               \
    do {                                                                                       \
        pn_clear_error();                                                                      \
        CHECK((expr) == -1 && pn_last_error() == (kind));                                      \
        pn_clear_error();                                                                      \
    } while (0)

TEST(value_and_grad_call_many_inputs)
{
    pn_scope_push();
    enum { N = 3 * PN_MAX_OUTPUTS + 5 };
    pn_array *x[N], *grads[N], *out[PN_MAX_OUTPUTS];
    int argnums[N];
    double want_loss = 0;
    for (int k = 0; k < N; k++) {
        x[k] = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1, 1);
        double *v = test_to_f64(x[k]);
        for (int i = 0; i < 3; i++) want_loss += v[i] * v[i] * (k + 1);
        free(v);
        argnums[k] = k;
    }
    pn_closure *f = pn_closure_new(f_weighted_squares, NULL, NULL);
    int nout = 0;
    CHECK(pn_value_and_grad_call(f, N, x, argnums, N, &nout, out, grads) == 0);
    CHECK(nout == 1);
    double *loss = test_to_f64(out[0]);
    CHECK(fabs(loss[0] - want_loss) < 1e-9 * fabs(want_loss));
    free(loss);
    for (int k = 0; k < N; k++) {
        double *g = test_to_f64(grads[k]), *v = test_to_f64(x[k]);
        for (int i = 0; i < 3; i++) CHECK(fabs(g[i] - 2.0 * (k + 1) * v[i]) < 1e-9 * (k + 1));
        free(g);
        free(v);
    }
    /* a subset in another order, with a negative index */
    int some[3] = {-1, 0, 7};
    CHECK(pn_value_and_grad_call(f, N, x, some, 3, &nout, out, grads) == 0);
    double *g = test_to_f64(grads[0]), *v = test_to_f64(x[N - 1]);
    CHECK(fabs(g[1] - 2.0 * N * v[1]) < 1e-9 * N);
    free(g);
    free(v);
    /* the closure form still says where its limit is */
    pn_closure *vg = pn_value_and_grad(f, argnums, N);
    CHECK_RC_ERR(pn_closure_call(vg, N, x, &nout, out), PN_ERR_INVALID_ARGUMENT);
    int repeat[2] = {1, 1}, outside[1] = {N};
    CHECK_RC_ERR(pn_value_and_grad_call(f, N, x, repeat, 2, &nout, out, grads), PN_ERR_INVALID_ARGUMENT);
    CHECK_RC_ERR(pn_value_and_grad_call(f, N, x, outside, 1, &nout, out, grads), PN_ERR_INVALID_ARGUMENT);
    CHECK_RC_ERR(pn_value_and_grad_call(NULL, N, x, argnums, N, &nout, out, grads), PN_ERR_INVALID_ARGUMENT);
    pn_closure_release(vg);
    pn_closure_release(f);
    pn_scope_pop();
}
