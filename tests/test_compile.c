/* test_compile.c — mx.compile (pn_compile): results equal to the function's (float64
 * references) on fresh random inputs, one call of the function per input signature, retracing
 * on new shapes and dtypes, shapeless replay at new shapes, simplification (merged constants,
 * common subexpressions, dead nodes), frozen captured arrays, gradients through and of
 * compiled functions, the disabled switch and the refusals; then (issue 4) transformations
 * replaying the tape, the traced random key, array optimizer hyper-parameters, shapeless
 * reductions/matmul/reshapes and two threads sharing one compiled function. */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/core.h"
#include "backend/cpu/fused.h"
#include "transforms/trace.h"

/* Function contexts: a call counter and a captured array. */
typedef struct {
    int calls;
    pn_array *w;
} fctx;

/* out0 = exp(x) * y + sin(x) * y, out1 = x - y (two outputs). */
static int fn_two(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    pn_array *x = in[0], *y = in[1];
    out[0] = pn_add(pn_multiply(pn_exp(x), y), pn_multiply(pn_sin(x), y));
    out[1] = pn_subtract(x, y);
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

static void ref_two(const double *x, const double *y, double *o0, double *o1, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        o0[i] = exp(x[i]) * y[i] + sin(x[i]) * y[i];
        o1[i] = x[i] - y[i];
    }
}

/* Checks a call of c on random x, y of shape/dtype against ref_two. */
static void check_two(pn_closure *c, const int64_t *shape, int nd, pn_dtype t)
{
    pn_scope_push();
    pn_array *in[2] = {test_random_array(shape, nd, t, -1, 1), test_random_array(shape, nd, t, -1, 1)};
    pn_array *out[PN_MAX_OUTPUTS] = {0};
    int nout = 0;
    CHECK_MSG(pn_closure_call(c, 2, in, &nout, out) == 0, "call: %s", pn_last_error_message());
    CHECK(nout == 2);
    if (nout == 2) {
        double *x = test_to_f64(in[0]), *y = test_to_f64(in[1]);
        int64_t n = in[0]->size;
        double *o0 = malloc((size_t)(n + 1) * sizeof *o0), *o1 = malloc((size_t)(n + 1) * sizeof *o1);
        ref_two(x, y, o0, o1, n);
        test_check_values("out0", out[0], shape, nd, t, o0, test_tol(t), test_tol(t));
        test_check_values("out1", out[1], shape, nd, t, o1, test_tol(t), test_tol(t));
        free(x), free(y), free(o0), free(o1);
    }
    pn_scope_pop();
}

TEST(compile_cache_and_retrace)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_two, &ctx, NULL);
    pn_closure *c = pn_compile(f, false);
    CHECK_OK(c);
    int64_t big = test_quick() ? 64 : 1000;
    int64_t s1[2] = {3, big}, s2[1] = {7};
    for (int k = 0; k < 3; k++) check_two(c, s1, 2, PN_FLOAT32);
    CHECK_MSG(ctx.calls == 1, "traced %d times for one signature", ctx.calls);
    check_two(c, s2, 1, PN_FLOAT32); /* new shape */
    CHECK(ctx.calls == 2);
    check_two(c, s2, 1, PN_FLOAT64); /* new dtype */
    CHECK(ctx.calls == 3);
    check_two(c, s1, 2, PN_FLOAT32); /* cached */
    check_two(c, s2, 1, PN_FLOAT64);
    check_two(c, s2, 1, PN_FLOAT16);
    CHECK(ctx.calls == 4);
    check_two(c, (int64_t[]){2, 3, 4}, 3, PN_BFLOAT16);
    CHECK(ctx.calls == 5);
    pn_closure_release(c);
    pn_closure_release(f);
    pn_scope_pop();
}

/* (x + 1) * (x + 1) + exp(x) + exp(x), with a dead branch: CSE and DCE leave 5 nodes. */
static int fn_cse(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    pn_array *x = in[0];
    pn_array *a = pn_add(x, pn_weak_float(1.0)), *b = pn_add(x, pn_weak_float(1.0));
    (void)pn_cos(x); /* unused */
    out[0] = pn_add(pn_multiply(a, b), pn_add(pn_exp(x), pn_exp(x)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(compile_simplifies)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_cse, &ctx, NULL);
    pn_closure *c = pn_compile(f, false);
    int64_t shape[2] = {4, 5};
    for (int k = 0; k < 2; k++) {
        pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -2, 2), *out[PN_MAX_OUTPUTS];
        int nout = 0;
        CHECK(pn_closure_call(c, 1, &x, &nout, out) == 0 && nout == 1);
        if (k == 0) {
            pnT_compile_stats st = pnT_compile_last_stats();
            /* traced: add, add, multiply, exp, exp, add, add (cos is not under the output) */
            CHECK_MSG(st.nodes_traced == 7 && st.nodes == 5 && st.consts == 1,
                      "traced %u nodes, kept %u, %u constants", st.nodes_traced, st.nodes,
                      st.consts);
        }
        double *xv = test_to_f64(x), ref[20];
        for (int i = 0; i < 20; i++) ref[i] = (xv[i] + 1) * (xv[i] + 1) + 2 * exp(xv[i]);
        test_check_values("cse", out[0], shape, 2, PN_FLOAT32, ref, 1e-5, 1e-5);
        free(xv);
    }
    CHECK(ctx.calls == 1);
    pn_closure_release(c);
    pn_closure_release(f);
    pn_scope_pop();
}

/* x * w with w captured: frozen at the trace. */
static int fn_capture(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    fctx *c = ctx;
    c->calls++;
    out[0] = pn_multiply(in[0], c->w);
    out[1] = c->w;    /* a constant output */
    out[2] = in[0];   /* an input passed through */
    *nout = 3;
    return out[0] ? 0 : -1;
}

TEST(compile_constants_frozen)
{
    pn_scope_push();
    fctx ctx = {0};
    ctx.w = pn_multiply(pn_array_from_data((float[]){2, 3, 4}, (int64_t[]){3}, 1, PN_FLOAT32), pn_weak_float(1.0));
    pn_closure *f = pn_closure_new(fn_capture, &ctx, NULL);
    pn_closure *c = pn_compile(f, false);
    pn_array *x = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1), *out[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_closure_call(c, 1, &x, &nout, out) == 0 && nout == 3);
    double *xv = test_to_f64(x);
    double r1[3] = {2 * xv[0], 3 * xv[1], 4 * xv[2]}, w1[3] = {2, 3, 4};
    test_check_values("x*w", out[0], (int64_t[]){3}, 1, PN_FLOAT32, r1, 1e-6, 1e-6);
    test_check_values("w", out[1], (int64_t[]){3}, 1, PN_FLOAT32, w1, 0, 0);
    test_check_values("x", out[2], (int64_t[]){3}, 1, PN_FLOAT32, xv, 0, 0);
    CHECK(out[2] != x); /* a distinct handle */
    ctx.w = pn_array_from_data((float[]){-1, -1, -1}, (int64_t[]){3}, 1, PN_FLOAT32);
    CHECK(pn_closure_call(c, 1, &x, &nout, out) == 0 && nout == 3);
    test_check_values("frozen", out[0], (int64_t[]){3}, 1, PN_FLOAT32, r1, 1e-6, 1e-6);
    CHECK(ctx.calls == 1);
    free(xv);
    pn_closure_release(c);
    pn_closure_release(f);
    pn_scope_pop();
}

/* x + w where w is (or is computed from) the call's own input: MLX refuses such a function
 * ("uncaptured inputs"); a pending w that is no input is frozen as above. */
TEST(compile_refuses_uncaptured_inputs)
{
    pn_scope_push();
    for (int evaluated = 0; evaluated < 2; evaluated++) {
        for (int derived = 0; derived < 2; derived++) {
            fctx ctx = {0};
            pn_array *x = pn_add(test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1), pn_weak_float(2.0));
            if (evaluated) CHECK(pn_eval(&x, 1) == 0);
            ctx.w = derived ? pn_multiply(x, pn_weak_float(3.0)) : x;
            pn_closure *f = pn_closure_new(fn_capture, &ctx, NULL);
            pn_closure *c = pn_compile(f, false);
            pn_array *out[PN_MAX_OUTPUTS];
            int nout = 0;
            CHECK(pn_closure_call(c, 1, &x, &nout, out) == -1 && nout == 0);
            CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT &&
                  strstr(pn_last_error_message(), "uncaptured inputs") != NULL);
            pn_clear_error();
            /* another input: w is then an outside array, frozen */
            pn_array *y = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
            CHECK(pn_closure_call(c, 1, &y, &nout, out) == 0 && nout == 3);
            pn_closure_release(c);
            pn_closure_release(f);
        }
    }
    pn_scope_pop();
}

/* exp(x) + y * 2 (elementwise only: replayable at any shape). */
static int fn_ew(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    out[0] = pn_add(pn_exp(in[0]), pn_multiply(in[1], pn_weak_float(2.0)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* A slice bakes its bounds: no shapeless rule (as MLX's Slice). */
static int fn_slice(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    out[0] = pn_slice(pn_exp(in[0]), (int64_t[]){1}, (int64_t[]){3}, NULL, 1);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(compile_shapeless)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_ew, &ctx, NULL);
    pn_closure *c = pn_compile(f, true);
    const int64_t shapes[][4] = {{3, 4}, {5, 2}, {5, 1}, {1, 6}};
    const int64_t outs[][2] = {{3, 4}, {5, 2}, {5, 6}, {1, 6}};
    for (int k = 0; k < 4; k++) {
        pn_array *in[2] = {test_random_array(shapes[k], 2, PN_FLOAT32, -1, 1),
                           test_random_array(k == 2 ? shapes[3] : shapes[k], 2, PN_FLOAT32, -1, 1)};
        pn_array *out[PN_MAX_OUTPUTS];
        int nout = 0;
        CHECK_MSG(pn_closure_call(c, 2, in, &nout, out) == 0, "%s", pn_last_error_message());
        double *x = test_to_f64(in[0]), *y = test_to_f64(in[1]);
        int64_t r = outs[k][0], q = outs[k][1];
        double *ref = malloc((size_t)(r * q) * sizeof *ref);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < q; j++)
                ref[i * q + j] = exp(x[(in[0]->shape[0] > 1 ? i : 0) * in[0]->shape[1] + (in[0]->shape[1] > 1 ? j : 0)]) +
                                 2 * y[(in[1]->shape[0] > 1 ? i : 0) * in[1]->shape[1] + (in[1]->shape[1] > 1 ? j : 0)];
        if (nout == 1) test_check_values("shapeless", out[0], outs[k], 2, PN_FLOAT32, ref, 1e-6, 1e-6);
        free(x), free(y), free(ref);
    }
    CHECK_MSG(ctx.calls == 1, "shapeless traced %d times", ctx.calls);
    pn_array *in[2] = {test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1)};
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_closure_call(c, 2, in, &nout, out) == 0); /* new rank: retrace */
    CHECK(ctx.calls == 2);
    /* a slice has no shape rule: refused at the first call, and not cached */
    fctx sctx = {0};
    pn_closure *fs = pn_closure_new(fn_slice, &sctx, NULL);
    pn_closure *cs = pn_compile(fs, true);
    pn_clear_error();
    CHECK(pn_closure_call(cs, 1, in, &nout, out) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && strstr(pn_last_error_message(), "shape"));
    pn_clear_error();
    CHECK(pn_closure_call(cs, 1, in, &nout, out) == -1 && sctx.calls == 2);
    pn_clear_error();
    pn_closure_release(cs), pn_closure_release(fs);
    pn_closure_release(c);
    pn_closure_release(f);
    pn_scope_pop();
}

/* sum(x * x * y): its gradient closure compiled, and grad of the compiled function. */
static int fn_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    out[0] = pn_sum(pn_multiply(pn_square(in[0]), in[1]), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(compile_and_grad)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_loss, &ctx, NULL);
    pn_closure *g = pn_value_and_grad(f, (int[]){0, 1}, 2);
    pn_closure *cg = pn_compile(g, false);
    pn_closure *cf = pn_compile(f, false);
    pn_closure *gcf = pn_grad(cf, NULL, 0);
    int64_t shape[2] = {3, 5};
    for (int k = 0; k < 3; k++) {
        pn_array *in[2] = {test_random_array(shape, 2, PN_FLOAT64, -1, 1),
                           test_random_array(shape, 2, PN_FLOAT64, -1, 1)};
        pn_array *out[PN_MAX_OUTPUTS], *gout[PN_MAX_OUTPUTS];
        int nout = 0, ng = 0;
        CHECK(pn_closure_call(cg, 2, in, &nout, out) == 0 && nout == 3);
        CHECK(pn_closure_call(gcf, 2, in, &ng, gout) == 0 && ng == 1);
        double *x = test_to_f64(in[0]), *y = test_to_f64(in[1]), v = 0, dx[15], dy[15];
        for (int i = 0; i < 15; i++) v += x[i] * x[i] * y[i], dx[i] = 2 * x[i] * y[i], dy[i] = x[i] * x[i];
        test_check_values("value", out[0], NULL, 0, PN_FLOAT64, &v, 1e-12, 1e-12);
        test_check_values("dx", out[1], shape, 2, PN_FLOAT64, dx, 1e-12, 1e-12);
        test_check_values("dy", out[2], shape, 2, PN_FLOAT64, dy, 1e-12, 1e-12);
        test_check_values("grad of compiled", gout[0], shape, 2, PN_FLOAT64, dx, 1e-12, 1e-12);
        free(x), free(y);
    }
    /* the compiled gradient traced f once; grad of the compiled function traced cf once and
     * replayed its tape after that */
    CHECK_MSG(ctx.calls == 1 + 1, "f ran %d times", ctx.calls);
    pn_closure_release(gcf), pn_closure_release(cf), pn_closure_release(cg), pn_closure_release(g);
    pn_closure_release(f);
    pn_scope_pop();
}

/* Evaluates an array that depends on its input; or fails. */
static int fn_evals(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin, (void)ctx;
    pn_array *y = pn_exp(in[0]);
    if (pn_eval(&y, 1)) return -1;
    out[0] = y;
    *nout = 1;
    return 0;
}

static int fn_fails(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin, (void)ctx, (void)in, (void)out, (void)nout;
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[fn_fails] On purpose.");
}

static int custom_rule(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_multiply(in[1], pn_weak_float(3.0));
    *nout = 1;
    return 0;
}

TEST(compile_refusals_and_switch)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){4}, 1, PN_FLOAT32, -1, 1), *out[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_compile(NULL, false) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure *ev = pn_closure_new(fn_evals, NULL, NULL), *cev = pn_compile(ev, false);
    CHECK(pn_closure_call(cev, 1, &x, &nout, out) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && strstr(pn_last_error_message(), "eval"));
    pn_clear_error();
    pn_closure *fl = pn_closure_new(fn_fails, NULL, NULL), *cfl = pn_compile(fl, false);
    CHECK(pn_closure_call(cfl, 1, &x, &nout, out) == -1);
    CHECK(strstr(pn_last_error_message(), "On purpose") != NULL);
    pn_clear_error();
    CHECK(pn_closure_call(cfl, 1, (pn_array *[]){NULL}, &nout, out) == -1);
    pn_clear_error();
    fctx ctx = {0};
    pn_closure *sq = pn_closure_new(fn_ew, &ctx, NULL), *rule = pn_closure_new(custom_rule, NULL, NULL);
    pn_closure *cv = pn_custom_vjp(sq, rule), *ccv = pn_compile(cv, false);
    CHECK(pn_closure_call(ccv, 2, (pn_array *[]){x, x}, &nout, out) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    /* disabled: the function runs on every call */
    pn_closure *c = pn_compile(sq, false);
    int before = ctx.calls;
    pn_compile_set_enabled(false);
    CHECK(!pn_compile_enabled());
    for (int k = 0; k < 3; k++) CHECK(pn_closure_call(c, 2, (pn_array *[]){x, x}, &nout, out) == 0);
    CHECK(ctx.calls == before + 3);
    pn_compile_set_enabled(true);
    for (int k = 0; k < 3; k++) CHECK(pn_closure_call(c, 2, (pn_array *[]){x, x}, &nout, out) == 0);
    CHECK(ctx.calls == before + 4);
    pn_closure_release(c), pn_closure_release(ccv), pn_closure_release(cv), pn_closure_release(rule);
    pn_closure_release(sq), pn_closure_release(cfl), pn_closure_release(fl);
    pn_closure_release(cev), pn_closure_release(ev);
    pn_scope_pop();
}

/* ───────────────────────────── fusion ───────────────────────────── */

/* where(x > y, x + y, |x| * y) - x, and sin(float32(that)) * 2: two elementwise chains. */
static int fn_chain(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    if (ctx) ((fctx *)ctx)->calls++;
    pn_array *x = in[0], *y = in[1];
    pn_array *a = pn_subtract(pn_where(pn_greater(x, y), pn_add(x, y), pn_multiply(pn_abs(x), y)), x);
    out[0] = a;
    out[1] = pn_multiply(pn_sin(pn_astype(a, PN_FLOAT32)), pn_weak_float(2.0));
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

/* Whether a and b have the same dtype, shape and values, bit for bit (through float64, which
 * holds every value of these dtypes exactly; read through the public data path, so GPU arrays
 * come back to the host). */
static bool same_bits(pn_array *a, pn_array *b)
{
    if (!a || !b || a->dtype != b->dtype || a->size != b->size) return false;
    double *x = test_to_f64(a), *y = test_to_f64(b);
    bool same = x && y && memcmp(x, y, (size_t)a->size * sizeof *x) == 0;
    free(x), free(y);
    return same;
}

TEST(compile_fusion_bit_identical)
{
    const pn_dtype types[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16, PN_INT32,
                              PN_INT64, PN_INT8, PN_UINT8, PN_UINT32};
    int64_t n = test_quick() ? 5000 : 70001;
    for (size_t d = 0; d < sizeof types / sizeof *types; d++) {
        pn_scope_push();
        pn_dtype t = types[d];
        pn_closure *f = pn_closure_new(fn_chain, NULL, NULL), *c = pn_compile(f, false);
        for (int variant = 0; variant < 3; variant++) {
            /* 0: dense (several tiles, threads); 1: x a transposed view; 2: y a scalar */
            int64_t shape[2] = {3, n};
            pn_array *x = variant == 1 ? pn_transpose(test_random_array((int64_t[]){n, 3}, 2, t, -50, 50), NULL, 0)
                                       : test_random_array(shape, 2, t, -50, 50);
            pn_array *y = variant == 2 ? test_random_array(NULL, 0, t, -5, 5) : test_random_array(shape, 2, t, -50, 50);
            pn_array *in[2] = {x, y}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
            int ng = 0, nw = 0;
            CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 2);
            if (variant == 0) {
                pnT_compile_stats st = pnT_compile_last_stats();
                CHECK_MSG(st.compiled >= 1 && st.fused_nodes < st.nodes,
                          "%s: %u Compiled nodes, %u nodes after fusion of %u", pn_dtype_name(t),
                          st.compiled, st.fused_nodes, st.nodes);
            }
            CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 2);
            for (int j = 0; j < 2 && ng == 2 && nw == 2; j++)
                CHECK_MSG(same_bits(got[j], want[j]), "%s variant %d output %d differs from the unfused graph",
                          pn_dtype_name(t), variant, j);
        }
        pn_closure_release(c), pn_closure_release(f);
        pn_scope_pop();
    }
}

/* The derivatives and batching of a Compiled node, against the unfused function's. */
static int fn_smooth(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin, (void)ctx;
    out[0] = pn_multiply(pn_tanh(pn_add(in[0], pn_multiply(in[1], pn_weak_float(0.5)))), pn_exp(in[1]));
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(compile_fused_node_rules)
{
    /* the rules of a Compiled node, checked on a CPU stream */
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_smooth, NULL, NULL), *c = pn_compile(f, false);
    int64_t shape[1] = {6};
    pn_array *x = test_random_array(shape, 1, PN_FLOAT64, -1, 1), *y = test_random_array(shape, 1, PN_FLOAT64, -1, 1);
    pn_array *in[2] = {x, y}, *o[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_closure_call(c, 2, in, &n, o) == 0 && n == 1);
    pnC_node *node = o[0]->node;
    CHECK(node && node->prim == &pnF_compiled_prim);
    if (node && node->prim == &pnF_compiled_prim) {
        int ix = -1, iy = -1;
        for (int i = 0; i < node->nin; i++) {
            if (node->inputs[i] == x) ix = i;
            if (node->inputs[i] == y) iy = i;
        }
        CHECK(ix >= 0 && iy >= 0);
        pn_array *cot = test_random_array(shape, 1, PN_FLOAT64, -1, 1), *fo[PN_MAX_OUTPUTS], *want[2];
        int nf = 0;
        CHECK(pn_vjp(f, 2, in, 1, &cot, &nf, fo, want) == 0);
        int argnums[PNF_MAX_IN];
        pn_array *g[PNF_MAX_IN] = {0};
        for (int i = 0; i < node->nin; i++) argnums[i] = i;
        CHECK(pnF_compiled_prim.vjp(node, node->inputs, o, &cot, argnums, node->nin, g) == 0);
        CHECK(same_bits(g[ix], want[0]) || test_check_values("vjp x", g[ix], shape, 1, PN_FLOAT64, test_to_f64(want[0]), 1e-12, 1e-12));
        double *wy = test_to_f64(want[1]);
        test_check_values("vjp y", g[iy], shape, 1, PN_FLOAT64, wy, 1e-12, 1e-12);
        free(wy);
        /* jvp: tangent on x only */
        pn_array *tx = test_random_array(shape, 1, PN_FLOAT64, -1, 1), *tans[PNF_MAX_IN] = {0}, *jt[PN_MAX_OUTPUTS], *jo[PN_MAX_OUTPUTS], *ot = NULL;
        tans[ix] = tx;
        CHECK(pn_jvp(f, 2, in, (pn_array *[]){tx, pn_zeros_like(y)}, &nf, jo, jt) == 0);
        CHECK(pnF_compiled_prim.jvp(node, node->inputs, o, tans, &ot) == 0);
        double *wj = test_to_f64(jt[0]);
        test_check_values("jvp", ot, shape, 1, PN_FLOAT64, wj, 1e-12, 1e-12);
        free(wj);
        /* vmap: x batched along axis 1 of (6, 2) */
        pn_array *xb = test_random_array((int64_t[]){6, 2}, 2, PN_FLOAT64, -1, 1), *bin[PNF_MAX_IN], *bo = NULL;
        int axes[PNF_MAX_IN], oax = -1;
        for (int i = 0; i < node->nin; i++) bin[i] = node->inputs[i], axes[i] = -1;
        bin[ix] = xb, axes[ix] = 1;
        CHECK(pnF_compiled_prim.vmap(node, bin, axes, &bo, &oax) == 0 && oax == 0);
        pn_array *xt = pn_transpose(xb, NULL, 0), *wv[PN_MAX_OUTPUTS];
        CHECK(pn_closure_call(f, 2, (pn_array *[]){xt, y}, &nf, wv) == 0);
        double *wb = test_to_f64(wv[0]);
        test_check_values("vmap", bo, (int64_t[]){2, 6}, 2, PN_FLOAT64, wb, 1e-12, 1e-12);
        free(wb);
    }
    pn_closure_release(c), pn_closure_release(f);
    pn_scope_pop();
    pn_stream_pop();
}

/* ─────────────── transformations of compiled functions; threads (issue 4) ─────────────── */

/* sum(exp(x) * y + sin(x * y) * x) + sum(x @ y^T): elementwise chains, a reduction, a matmul. */
static int fn_mixed(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    if (ctx) ((fctx *)ctx)->calls++;
    pn_array *x = in[0], *y = in[1];
    pn_array *e = pn_add(pn_multiply(pn_exp(x), y), pn_multiply(pn_sin(pn_multiply(x, y)), x));
    out[0] = pn_add(pn_sum(e, NULL, 0, false), pn_sum(pn_matmul(x, pn_transpose(y, NULL, 0)), NULL, 0, false));
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* The first output of the closure ctx (for test_gradcheck). */
static pn_array *call_first(void *ctx, pn_array *const *in)
{
    pn_array *o[PN_MAX_OUTPUTS];
    int n = 0;
    return pn_closure_call(ctx, 2, in, &n, o) == 0 && n >= 1 ? o[0] : NULL;
}

/* Checks that a and b (same shape) hold the same values within tol. */
static void check_same(const char *what, pn_array *a, pn_array *b, double tol)
{
    CHECK_MSG(a && b, "%s: %s", what, pn_last_error_message());
    if (!a || !b) return;
    double *w = test_to_f64(b);
    test_check_values(what, a, b->shape, b->ndim, b->dtype, w, tol, tol);
    free(w);
}

/* tanh(x + r) * x - r with x (3, 6) and r a row (6,) broadcast over x's rows. */
static int fn_rowwise(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin, (void)ctx;
    out[0] = pn_subtract(pn_multiply(pn_tanh(pn_add(in[0], in[1])), in[0]), in[1]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* A Compiled node whose input broadcasts: its vjp reduces the row's gradient to the row's
 * shape, its vmap batches the row (of fewer dimensions than the output) along a new axis. */
TEST(compile_fused_node_rules_broadcast)
{
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_rowwise, NULL, NULL), *c = pn_compile(f, false);
    int64_t xs[2] = {3, 6}, rs[1] = {6};
    pn_array *x = test_random_array(xs, 2, PN_FLOAT64, -1, 1), *r = test_random_array(rs, 1, PN_FLOAT64, -1, 1);
    pn_array *in[2] = {x, r}, *o[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
    int n = 0, nw = 0;
    CHECK(pn_closure_call(c, 2, in, &n, o) == 0 && n == 1);
    pnC_node *node = n == 1 ? o[0]->node : NULL; /* before evaluation detaches it */
    CHECK_MSG(node && node->prim == &pnF_compiled_prim && node->nin == 2, "the row was not fused in");
    if (node && node->prim == &pnF_compiled_prim && node->nin == 2) {
        const int ir = node->inputs[0] == r ? 0 : 1, ix = 1 - ir;
        CHECK(node->inputs[ix] == x && node->inputs[ir] == r);
        pn_array *cot = test_random_array(xs, 2, PN_FLOAT64, -1, 1), *fo[PN_MAX_OUTPUTS], *g0[2], *g[2] = {0};
        int nf = 0;
        CHECK(pn_vjp(f, 2, in, 1, &cot, &nf, fo, g0) == 0);
        CHECK(pnF_compiled_prim.vjp(node, node->inputs, o, &cot, (int[]){0, 1}, 2, g) == 0);
        CHECK(g[ir] && g[ir]->ndim == 1 && g[ir]->shape[0] == 6);
        check_same("vjp row", g[ir], g0[1], 1e-12);
        check_same("vjp x", g[ix], g0[0], 1e-12);
        /* vmap: the row batched along axis 1 of (6, 2), x not batched */
        pn_array *rb = test_random_array((int64_t[]){6, 2}, 2, PN_FLOAT64, -1, 1), *bin[2], *bo = NULL;
        int axes[2], oax = -1;
        bin[ix] = x, axes[ix] = -1, bin[ir] = rb, axes[ir] = 1;
        CHECK(pnF_compiled_prim.vmap(node, bin, axes, &bo, &oax) == 0 && oax == 0);
        CHECK(bo && bo->ndim == 3 && bo->shape[0] == 2 && bo->shape[1] == 3 && bo->shape[2] == 6);
        for (int b = 0; b < 2 && bo && bo->ndim == 3; b++) {
            pn_array *rcol = pn_take(rb, pn_scalar_int(b, PN_INT32), 1), *wv[PN_MAX_OUTPUTS];
            CHECK(pn_closure_call(f, 2, (pn_array *[]){x, rcol}, &nf, wv) == 0);
            check_same("vmap", pn_take(bo, pn_scalar_int(b, PN_INT32), 0), wv[0], 1e-12);
        }
    }
    CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 1);
    CHECK(n == 1 && nw == 1 && same_bits(o[0], want[0]));
    pn_closure_release(c), pn_closure_release(f);
    pn_scope_pop();
    pn_stream_pop();
}

#ifdef PONTE_HAS_GPU
#include "backend/cuda/fused.h"
#endif

/* MLX's shared broadcast: bb = broadcast_to(b, a's shape) feeds two outputs' elementwise
 * chains, out0 = (a + bb) * bb and out1 = exp(bb) * 2 - bb (whose only array input is b);
 * ctx != NULL adds out2 = sum(bb), a consumer outside the groups that keeps the Broadcast. */
static int fn_shared_bcast(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    pn_array *a = in[0], *bb = pn_broadcast_to(in[1], a->shape, a->ndim);
    out[0] = pn_multiply(pn_add(a, bb), bb);
    out[1] = pn_subtract(pn_multiply(pn_exp(bb), pn_weak_float(2)), bb);
    *nout = 2;
    if (ctx) out[(*nout)++] = pn_sum(bb, NULL, 0, false);
    for (int j = 0; j < *nout; j++)
        if (!out[j]) return -1;
    return 0;
}

/* The float64 references of fn_shared_bcast for a (m, n) and b (1, n): the outputs, and the
 * gradients of sum(c0 * out0 + c1 * out1 + c2 * out2) (c2 a scalar; 0 without out2). */
static void ref_shared_bcast(const double *a, const double *b, const double *c0, const double *c1,
                             double c2, int64_t m, int64_t n, double *o0, double *o1, double *o2,
                             double *ga, double *gb)
{
    *o2 = 0;
    for (int64_t j = 0; j < n; j++) gb[j] = c2 * (double)m;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            int64_t k = i * n + j;
            o0[k] = (a[k] + b[j]) * b[j];
            o1[k] = exp(b[j]) * 2 - b[j];
            *o2 += b[j];
            ga[k] = c0[k] * b[j];
            gb[j] += c0[k] * (a[k] + 2 * b[j]) + c1[k] * (2 * exp(b[j]) - 1);
        }
}

/* out0 + out1 of the compiled fn_shared_bcast (ctx), for test_gradcheck. */
static pn_array *shared_bcast_sum(void *ctx, pn_array *const *in)
{
    pn_array *o[PN_MAX_OUTPUTS];
    int n = 0;
    return pn_closure_call(ctx, 2, in, &n, o) == 0 && n == 2 ? pn_add(o[0], o[1]) : NULL;
}

/* The index of x among node's inputs, or -1. */
static int input_index(const pnC_node *node, const pn_array *x)
{
    for (int i = 0; node && i < node->nin; i++)
        if (node->inputs[i] == x) return i;
    return -1;
}

/* A Broadcast to a fused group's shape is taken into the group (MLX's shared-broadcast
 * fusion): two Compiled nodes reading b itself, the Broadcast gone unless sum(bb) also reads
 * it; values and gradients (through the compiled function, and the Compiled nodes' own vjp and
 * vmap) against float64 references, on the CPU and, when there is one, the GPU (one fused
 * launch per group, no CPU fallback). */
TEST(compile_shared_broadcast_fused_in)
{
    pn_device devs[2] = {{.type = PN_CPU, .index = 0}, {.type = PN_GPU, .index = 0}};
    const int64_t m = 5, n = 7, as[2] = {5, 7}, bs[2] = {1, 7};
    for (int d = 0; d < 2; d++) {
        if (!pn_is_available(devs[d])) continue;
        pn_stream_push(pn_default_stream(devs[d]));
        for (int extra = 0; extra < 2; extra++) {
            pn_scope_push();
            pn_closure *f = pn_closure_new(fn_shared_bcast, extra ? (void *)1 : NULL, NULL), *c = pn_compile(f, false);
            pn_array *a = test_random_array(as, 2, PN_FLOAT64, -1, 1), *b = test_random_array(bs, 2, PN_FLOAT64, -1, 1);
            pn_array *in[2] = {a, b}, *o[PN_MAX_OUTPUTS];
            CHECK(pn_eval(in, 2) == 0);
            int no = 0;
#ifdef PONTE_HAS_GPU
            int64_t runs = pnG_fused_count(), falls = pnC_gpu_fallback_count();
#endif
            CHECK(pn_closure_call(c, 2, in, &no, o) == 0 && no == 2 + extra);
            if (no != 2 + extra) goto next;
            pnT_compile_stats st = pnT_compile_last_stats();
            /* traced: Broadcast, Add, Multiply, Exp, Multiply, Subtract (, Sum): two groups,
             * the Broadcast inlined into both, and dropped when nothing else reads it */
            CHECK_MSG(st.compiled == 2 && st.fused_nodes == (extra ? 4u : 2u),
                      "extra %d: %u Compiled nodes, %u nodes after fusion", extra, st.compiled, st.fused_nodes);
            for (int j = 0; j < 2; j++) {
                pnC_node *node = o[j]->node;
                CHECK_MSG(node && node->prim == &pnF_compiled_prim && input_index(node, b) >= 0,
                          "output %d: the broadcast was not fused in", j);
            }
            double *av = test_to_f64(a), *bv = test_to_f64(b), o0[35], o1[35], o2, ga[35], gb[7];
            pn_array *c0 = test_random_array(as, 2, PN_FLOAT64, -1, 1), *c1 = test_random_array(as, 2, PN_FLOAT64, -1, 1);
            double *c0v = test_to_f64(c0), *c1v = test_to_f64(c1);
            ref_shared_bcast(av, bv, c0v, c1v, extra ? 0.75 : 0, m, n, o0, o1, &o2, ga, gb);
            if (d == 0) { /* the Compiled nodes' own rules (before evaluation detaches them) */
                pnC_node *n0 = o[0]->node, *n1 = o[1]->node;
                int ia = input_index(n0, a), ib = input_index(n0, b), ib1 = input_index(n1, b);
                CHECK(ia >= 0 && ib >= 0 && ib1 >= 0);
                pn_array *g[PNF_MAX_IN] = {0}, *g1[PNF_MAX_IN] = {0}, *bo = NULL;
                int argnums[PNF_MAX_IN], axes[PNF_MAX_IN], oax = -1;
                for (int i = 0; i < PNF_MAX_IN; i++) argnums[i] = i;
                if (ia >= 0 && ib >= 0 && ib1 >= 0 &&
                    pnF_compiled_prim.vjp(n0, n0->inputs, o, &c0, argnums, n0->nin, g) == 0 &&
                    pnF_compiled_prim.vjp(n1, n1->inputs, o + 1, &c1, argnums, n1->nin, g1) == 0) {
                    test_check_values("node vjp a", g[ia], as, 2, PN_FLOAT64, ga, 1e-12, 1e-12);
                    double gb0[7] = {0};
                    for (int64_t k = 0; k < m * n; k++) gb0[k % n] += c0v[k] * (av[k] + 2 * bv[k % n]);
                    test_check_values("node vjp b (out0)", g[ib], bs, 2, PN_FLOAT64, gb0, 1e-12, 1e-12);
                    for (int j = 0; j < n; j++) gb0[j] = gb[j] - gb0[j] - (extra ? 0.75 * (double)m : 0);
                    test_check_values("node vjp b (out1)", g1[ib1], bs, 2, PN_FLOAT64, gb0, 1e-12, 1e-12);
                } else {
                    CHECK_MSG(0, "node vjp: %s", pn_last_error_message());
                }
                /* vmap of out1's node (only b, broadcast): b batched (3, 1, 7) on axis 0 gives
                 * (3, 5, 7), the row of each batch broadcast over the rows */
                pn_array *bb3 = test_random_array((int64_t[]){3, 1, 7}, 3, PN_FLOAT64, -1, 1), *bin[PNF_MAX_IN];
                for (int i = 0; i < n1->nin; i++) bin[i] = n1->inputs[i], axes[i] = -1;
                if (ib1 >= 0) bin[ib1] = bb3, axes[ib1] = 0;
                CHECK(ib1 >= 0 && pnF_compiled_prim.vmap(n1, bin, axes, &bo, &oax) == 0 && oax == 0);
                double *b3 = test_to_f64(bb3), want[105];
                for (int64_t k = 0; k < 105; k++) want[k] = exp(b3[k / 35 * 7 + k % 7]) * 2 - b3[k / 35 * 7 + k % 7];
                test_check_values("node vmap", bo, (int64_t[]){3, 5, 7}, 3, PN_FLOAT64, want, 1e-12, 1e-12);
                free(b3);
            }
            CHECK(pn_eval(o, no) == 0);
#ifdef PONTE_HAS_GPU
            if (d == 1) {
                CHECK_MSG(pnG_fused_count() == runs + 2, "%lld fused GPU launches", (long long)(pnG_fused_count() - runs));
                CHECK(pnC_gpu_fallback_count() == falls);
            }
#endif
            test_check_values("out0", o[0], as, 2, PN_FLOAT64, o0, 1e-12, 1e-12);
            test_check_values("out1", o[1], as, 2, PN_FLOAT64, o1, 1e-12, 1e-12);
            if (extra) test_check_values("out2", o[2], NULL, 0, PN_FLOAT64, &o2, 1e-12, 1e-12);
            /* the gradient through the compiled function: analytic, and finite differences */
            pn_array *cots[3] = {c0, c1, pn_scalar(0.75, PN_FLOAT64)};
            pn_array *fo[PN_MAX_OUTPUTS], *gr[2] = {0};
            int nf = 0;
            CHECK(pn_vjp(c, 2, in, no, cots, &nf, fo, gr) == 0 && nf == no);
            test_check_values("vjp a", gr[0], as, 2, PN_FLOAT64, ga, 1e-12, 1e-12);
            test_check_values("vjp b", gr[1], bs, 2, PN_FLOAT64, gb, 1e-12, 1e-12);
            CHECK(extra || test_gradcheck("shared broadcast", shared_bcast_sum, c, 2, in, 1e-6));
            free(av), free(bv), free(c0v), free(c1v);
        next:
            pn_closure_release(c), pn_closure_release(f);
            pn_scope_pop();
        }
        pn_stream_pop();
    }
}

TEST(compile_transforms_replay_the_tape)
{
    pn_scope_push();
    fctx cc = {0};
    pn_closure *f = pn_closure_new(fn_mixed, NULL, NULL), *inner = pn_closure_new(fn_mixed, &cc, NULL);
    pn_closure *cf = pn_compile(inner, false);
    pn_closure *gf = pn_grad(f, (int[]){0, 1}, 2), *gcf = pn_grad(cf, (int[]){0, 1}, 2);
    int64_t shapes[][2] = {{3, 4}, {2, 5}, {3, 4}};
    for (int k = 0; k < 3; k++) {
        pn_array *in[2] = {test_random_array(shapes[k], 2, PN_FLOAT64, -1, 1),
                           test_random_array(shapes[k], 2, PN_FLOAT64, -1, 1)};
        pn_array *a[PN_MAX_OUTPUTS], *b[PN_MAX_OUTPUTS];
        int na = 0, nb = 0;
        /* grad */
        CHECK(pn_closure_call(gcf, 2, in, &na, a) == 0 && na == 2);
        CHECK(pn_closure_call(gf, 2, in, &nb, b) == 0 && nb == 2);
        if (na == 2 && nb == 2) check_same("grad x", a[0], b[0], 1e-12), check_same("grad y", a[1], b[1], 1e-12);
        /* vjp with a cotangent, jvp with tangents on both inputs */
        pn_array *cot = test_random_array(NULL, 0, PN_FLOAT64, -1, 1), *va[2], *vb[2];
        CHECK(pn_vjp(cf, 2, in, 1, &cot, &na, a, va) == 0 && pn_vjp(f, 2, in, 1, &cot, &nb, b, vb) == 0);
        check_same("vjp value", a[0], b[0], 1e-12);
        check_same("vjp x", va[0], vb[0], 1e-12), check_same("vjp y", va[1], vb[1], 1e-12);
        pn_array *tan[2] = {test_random_array(shapes[k], 2, PN_FLOAT64, -1, 1),
                            test_random_array(shapes[k], 2, PN_FLOAT64, -1, 1)}, *ja[2], *jb[2];
        CHECK(pn_jvp(cf, 2, in, tan, &na, a, ja) == 0 && pn_jvp(f, 2, in, tan, &nb, b, jb) == 0);
        check_same("jvp", ja[0], jb[0], 1e-12);
    }
    /* traced once per signature ((3, 4) and (2, 5)); every transformation replayed the tape */
    CHECK_MSG(cc.calls == 2, "f ran %d times", cc.calls);
    /* vmap over a leading axis of x: the element signature (4, 5) traces once more */
    pn_closure *vf = pn_vmap(f, (int[]){0, -1}, 2, NULL, 0), *vcf = pn_vmap(cf, (int[]){0, -1}, 2, NULL, 0);
    pn_array *xb = test_random_array((int64_t[]){3, 4, 5}, 3, PN_FLOAT64, -1, 1);
    pn_array *y = test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT64, -1, 1), *a[PN_MAX_OUTPUTS], *b[PN_MAX_OUTPUTS];
    int na = 0, nb = 0;
    CHECK(pn_closure_call(vcf, 2, (pn_array *[]){xb, y}, &na, a) == 0 && na == 1);
    CHECK(pn_closure_call(vf, 2, (pn_array *[]){xb, y}, &nb, b) == 0 && nb == 1);
    if (na == 1 && nb == 1) check_same("vmap", a[0], b[0], 1e-12);
    CHECK_MSG(cc.calls == 3, "f ran %d times", cc.calls);
    /* finite differences through the compiled closure (float64 traces once more) */
    pn_array *in32[2] = {test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1),
                         test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1)};
    CHECK(test_gradcheck("compiled", call_first, cf, 2, in32, 1e-6));
    pn_closure_release(vf), pn_closure_release(vcf), pn_closure_release(gf), pn_closure_release(gcf);
    pn_closure_release(cf), pn_closure_release(inner), pn_closure_release(f);
    pn_scope_pop();
}

TEST(compile_of_grad_of_compiled)
{
    pn_scope_push();
    fctx cc = {0};
    pn_closure *inner = pn_closure_new(fn_mixed, &cc, NULL), *cf = pn_compile(inner, false);
    pn_closure *g = pn_grad(cf, (int[]){0, 1}, 2), *cg = pn_compile(g, false);
    pn_closure *f = pn_closure_new(fn_mixed, NULL, NULL), *gf = pn_grad(f, (int[]){0, 1}, 2);
    int64_t shape[2] = {4, 3};
    for (int k = 0; k < 3; k++) {
        pn_array *in[2] = {test_random_array(shape, 2, PN_FLOAT32, -1, 1),
                           test_random_array(shape, 2, PN_FLOAT32, -1, 1)}, *a[PN_MAX_OUTPUTS], *b[PN_MAX_OUTPUTS];
        int na = 0, nb = 0;
        CHECK(pn_closure_call(cg, 2, in, &na, a) == 0 && na == 2);
        CHECK(pn_closure_call(gf, 2, in, &nb, b) == 0 && nb == 2);
        if (na == 2 && nb == 2) check_same("dx", a[0], b[0], 1e-5), check_same("dy", a[1], b[1], 1e-5);
        CHECK(pn_closure_call(cf, 2, in, &na, a) == 0 && na == 1); /* the inner entry is shared */
    }
    CHECK_MSG(cc.calls == 1, "f ran %d times", cc.calls);
    pn_closure_release(cg), pn_closure_release(g), pn_closure_release(cf), pn_closure_release(inner);
    pn_closure_release(gf), pn_closure_release(f);
    pn_scope_pop();
}

/* y * w where w is the enclosing grad's input captured by a compiled function made per call:
 * the trace would freeze w, so the function runs itself and the gradient still flows to w. */
static int fn_times_w(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    out[0] = pn_sum(pn_multiply(pn_exp(in[0]), ((fctx *)ctx)->w), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int fn_outer(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    fctx inner = {.w = pn_square(in[0])};
    pn_closure *f = pn_closure_new(fn_times_w, &inner, NULL), *c = pn_compile(f, false);
    pn_array *y = pn_array_from_data((double[]){0.5, -1, 2}, (int64_t[]){3}, 1, PN_FLOAT64);
    int rc = pn_closure_call(c, 1, &y, nout, out);
    pn_closure_release(c), pn_closure_release(f);
    return rc;
}

TEST(compile_inside_grad_capturing_its_input)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_outer, NULL, NULL), *g = pn_grad(f, NULL, 0);
    pn_array *w = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1, 1), *o[PN_MAX_OUTPUTS];
    int n = 0;
    CHECK(pn_closure_call(g, 1, &w, &n, o) == 0 && n == 1);
    double *wv = test_to_f64(w), want[3], ys[3] = {0.5, -1, 2};
    for (int i = 0; i < 3; i++) want[i] = 2 * wv[i] * exp(ys[i]);
    if (n == 1) test_check_values("d/dw", o[0], (int64_t[]){3}, 1, PN_FLOAT64, want, 1e-12, 1e-12);
    free(wv);
    pn_closure_release(g), pn_closure_release(f);
    pn_scope_pop();
}

/* Two threads call one compiled function at once (shared cache, one lock). */
typedef struct {
    pn_closure *c;
    int64_t n; /* the length of this thread's inputs */
    int iters, bad;
} thread_job;

static void *compile_thread(void *p)
{
    thread_job *j = p;
    for (int it = 0; it < j->iters; it++) {
        pn_scope_push();
        int64_t n = j->n + (it % 3); /* three signatures per thread, some shared */
        pn_array *in[2] = {test_random_array(&n, 1, PN_FLOAT64, -1, 1), test_random_array(&n, 1, PN_FLOAT64, -1, 1)};
        pn_array *out[PN_MAX_OUTPUTS];
        int nout = 0;
        if (pn_closure_call(j->c, 2, in, &nout, out) || nout != 2) {
            j->bad++;
        } else {
            double *x = test_to_f64(in[0]), *y = test_to_f64(in[1]), *o0 = test_to_f64(out[0]);
            for (int64_t i = 0; x && y && o0 && i < n; i++)
                if (fabs(o0[i] - (exp(x[i]) * y[i] + sin(x[i]) * y[i])) > 1e-12) j->bad++;
            free(x), free(y), free(o0);
        }
        pn_scope_pop();
    }
    return NULL;
}

TEST(compile_two_threads)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_two, &ctx, NULL), *c = pn_compile(f, false);
    thread_job jobs[2] = {{c, 5, test_quick() ? 20 : 200, 0}, {c, 6, test_quick() ? 20 : 200, 0}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK(pthread_create(&th[t], NULL, compile_thread, &jobs[t]) == 0);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    CHECK_MSG(jobs[0].bad == 0 && jobs[1].bad == 0, "wrong results: %d, %d", jobs[0].bad, jobs[1].bad);
    /* four signatures (5, 6, 7, 8); a race may trace one twice but caches it once */
    CHECK_MSG(ctx.calls >= 4 && ctx.calls <= 8, "f ran %d times", ctx.calls);
    int before = ctx.calls;
    compile_thread(&jobs[0]);
    CHECK(ctx.calls == before && jobs[0].bad == 0);
    pn_closure_release(c), pn_closure_release(f);
    pn_scope_pop();
}

/* Keyless draws from a traced global key (what mx.compile's random state uses) give the host
 * sequence's bits, and the key they leave continues it. */
TEST(compile_random_traced_key)
{
    pn_scope_push();
    int64_t shape[1] = {7};
    pn_array *host[3];
    pn_random_seed(21);
    for (int k = 0; k < 3; k++) host[k] = pn_random_normal(shape, 1, PN_FLOAT32, 0, 1, NULL);
    pn_random_seed(21);
    pn_array *key = pn_random_state(), *prev = pnC_random_trace_key(key);
    pn_array *a = pn_random_normal(shape, 1, PN_FLOAT32, 0, 1, NULL);
    pn_array *b = pn_random_normal(shape, 1, PN_FLOAT32, 0, 1, NULL);
    CHECK(a && a->node && b); /* lazy: a graph over the key */
    pn_array *left = pnC_random_trace_key(prev);
    CHECK(prev == NULL && left != NULL);
    CHECK(pnC_random_set_key(left) == 0);
    pnC_decref(left);
    pn_array *c = pn_random_normal(shape, 1, PN_FLOAT32, 0, 1, NULL);
    CHECK(same_bits(a, host[0]) && same_bits(b, host[1]) && same_bits(c, host[2]));
    pn_clear_error();
    CHECK(pnC_random_set_key(pn_zeros((int64_t[]){3}, 1, PN_UINT32)) == -1);
    pn_clear_error();
    pn_scope_pop();
}

/* pn_optimizer_update_arrays (the learning rate an array, the step counted with ops) against
 * pn_optimizer_update with the same rate, over three steps of each rule. */
TEST(compile_optimizer_array_hyperparameters)
{
    pn_scope_push();
    int64_t shape[2] = {3, 4};
    pn_optimizer *pairs[][2] = {
        {pn_optim_adam(0.01, 0.9, 0.999, 1e-8, true), pn_optim_adam(0.01, 0.9, 0.999, 1e-8, true)},
        {pn_optim_adamw(0.02, 0.9, 0.99, 1e-8, 0.1, false), pn_optim_adamw(0.02, 0.9, 0.99, 1e-8, 0.1, false)},
        {pn_optim_sgd(0.1, 0.9, 0.01, 0, true), pn_optim_sgd(0.1, 0.9, 0.01, 0, true)},
        {pn_optim_lion(0.01, 0.9, 0.99, 0.1), pn_optim_lion(0.01, 0.9, 0.99, 0.1)},
        {pn_optim_rmsprop(0.01, 0.99, 1e-8), pn_optim_rmsprop(0.01, 0.99, 1e-8)},
    };
    const double lrs[] = {0.01, 0.02, 0.1, 0.01, 0.01};
    for (int r = 0; r < 5; r++) {
        pn_params *pa = pn_params_new(), *pb = pn_params_new();
        pn_array *w = test_random_array(shape, 2, PN_FLOAT32, -1, 1);
        pn_params_set(pa, "w", w), pn_params_set(pb, "w", w);
        for (int k = 0; k < 3; k++) {
            pn_params *g = pn_params_new();
            pn_params_set(g, "w", test_random_array(shape, 2, PN_FLOAT32, -1, 1));
            CHECK(pn_optimizer_update(pairs[r][0], pa, g) == 0);
            CHECK_MSG(pn_optimizer_update_arrays(pairs[r][1], pb, g, pn_scalar(lrs[r], PN_FLOAT32)) == 0,
                      "%s", pn_last_error_message());
            pn_params_free(g);
        }
        check_same("array hyper-parameters", pn_params_get(pb, "w"), pn_params_get(pa, "w"), 1e-5);
        pn_array *step = pn_params_get(pn_optimizer_state(pairs[r][1]), "step");
        CHECK(step && pn_item_int(step) == 3);
        pn_params_free(pa), pn_params_free(pb);
        pn_optimizer_free(pairs[r][0]), pn_optimizer_free(pairs[r][1]);
    }
    /* refusals: a non-float rate; Adafactor's relative step */
    pn_optimizer *o = pn_optim_adam(0.01, 0.9, 0.999, 1e-8, false);
    pn_params *p = pn_params_new(), *g = pn_params_new();
    pn_params_set(p, "w", pn_ones(shape, 2, PN_FLOAT32)), pn_params_set(g, "w", pn_ones(shape, 2, PN_FLOAT32));
    pn_clear_error();
    CHECK(pn_optimizer_update_arrays(o, p, g, pn_scalar_int(1, PN_INT32)) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_optimizer_free(o);
    o = pn_optim_adafactor(NAN, 1e-30, 1e-3, 1.0, -0.8, NAN, 0.0, true, true, false);
    CHECK(pn_optimizer_update_arrays(o, p, g, pn_scalar(0.01, PN_FLOAT32)) == -1 && strstr(pn_last_error_message(), "Adafactor"));
    pn_clear_error();
    pn_optimizer_free(o);
    pn_params_free(p), pn_params_free(g);
    pn_scope_pop();
}

/* Shapeless beyond elementwise ops: x (B, N), w (N, M), b (M,). */
static int fn_layers(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    if (ctx) ((fctx *)ctx)->calls++;
    pn_array *x = in[0], *w = in[1], *b = in[2];
    pn_array *h = pn_add(pn_matmul(x, w), b);
    out[0] = pn_softmax(h, (int[]){-1}, 1, false);
    out[1] = pn_mean(x, (int[]){1}, 1, true);
    out[2] = pn_var(x, (int[]){0}, 1, false, 1);
    out[3] = pn_logsumexp(h, (int[]){-1}, 1, false);
    out[4] = pn_transpose(x, NULL, 0);
    out[5] = pn_flatten(x, 0, -1);
    out[6] = pn_expand_dims(out[3], (int[]){0}, 1);
    out[7] = pn_argmax(h, 1, false);
    out[8] = pn_concatenate((pn_array *[]){x, pn_multiply(x, pn_weak_float(2.0))}, 2, 0);
    out[9] = pn_cumsum(pn_sort(x, 1), 1, false, true);
    out[10] = pn_sum(pn_matmul(pn_transpose(w, NULL, 0), pn_transpose(x, NULL, 0)), NULL, 0, false);
    out[11] = pn_exp(pn_squeeze(pn_expand_dims(pn_expand_dims(x, (int[]){1}, 1), (int[]){-1}, 1), (int[]){1}, 1));
    *nout = 12;
    for (int j = 0; j < 12; j++)
        if (!out[j]) return -1;
    return 0;
}

TEST(compile_shapeless_layers)
{
    pn_scope_push();
    fctx ctx = {0};
    pn_closure *f = pn_closure_new(fn_layers, NULL, NULL), *inner = pn_closure_new(fn_layers, &ctx, NULL);
    pn_closure *c = pn_compile(inner, true);
    const int64_t dims[][3] = {{3, 4, 5}, {6, 2, 3}, {1, 7, 2}, {3, 4, 5}, {5, 1, 1}};
    for (int k = 0; k < 5; k++) {
        int64_t B = dims[k][0], N = dims[k][1], M = dims[k][2];
        pn_array *in[3] = {test_random_array((int64_t[]){B, N}, 2, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){N, M}, 2, PN_FLOAT64, -1, 1),
                           test_random_array((int64_t[]){M}, 1, PN_FLOAT64, -1, 1)};
        pn_array *a[PN_MAX_OUTPUTS], *r[PN_MAX_OUTPUTS];
        int na = 0, nr = 0;
        CHECK_MSG(pn_closure_call(c, 3, in, &na, a) == 0 && na == 12, "%s", pn_last_error_message());
        CHECK(pn_closure_call(f, 3, in, &nr, r) == 0 && nr == 12);
        for (int j = 0; j < na && j < nr; j++) {
            char what[64];
            snprintf(what, sizeof what, "shapeless output %d at (%lld, %lld, %lld)", j, (long long)B,
                     (long long)N, (long long)M);
            CHECK_MSG(a[j]->dtype == r[j]->dtype, "%s: dtype", what);
            check_same(what, a[j], r[j], 1e-12);
        }
    }
    CHECK_MSG(ctx.calls == 1, "traced %d times", ctx.calls);
    /* shapes the traced ops cannot take: a clear error */
    pn_array *bad[3] = {test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT64, -1, 1),
                        test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT64, -1, 1),
                        test_random_array((int64_t[]){5}, 1, PN_FLOAT64, -1, 1)}, *o[PN_MAX_OUTPUTS];
    int n = 0;
    pn_clear_error();
    CHECK(pn_closure_call(c, 3, bad, &n, o) == -1 && strstr(pn_last_error_message(), "matmul"));
    pn_clear_error();
    pn_closure_release(c), pn_closure_release(inner), pn_closure_release(f);
    pn_scope_pop();
}

/* ─────────────── the fused GPU kernel of Compiled nodes (issue 5) ─────────────── */
/* Programs of one output for the fused kernels, chosen by ctx: 0 GELU (tanh form), 1 GELU
 * (erf form) times y, 2 where over comparisons and logic, 3 astype f32->bf16->f32 and f16,
 * 4 infinities and NaN (x / y with zeros in y) through nan_to_num, maximum, isclose, round. */
static int fn_fused_prog(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    pn_array *x = in[0], *y = in[1], *r = NULL;
    switch ((int)(intptr_t)ctx) {
    case 0: {
        pn_array *inner = pn_multiply(pn_add(x, pn_multiply(pn_weak_float(0.044715), pn_power(x, pn_weak_float(3)))),
                                      pn_weak_float(0.7978845608028654));
        r = pn_multiply(pn_multiply(pn_weak_float(0.5), x), pn_add(pn_weak_float(1), pn_tanh(inner)));
        break;
    }
    case 1:
        r = pn_multiply(pn_multiply(pn_multiply(x, pn_weak_float(0.5)),
                                    pn_add(pn_weak_float(1), pn_erf(pn_multiply(x, pn_weak_float(0.7071067811865476))))),
                        y);
        break;
    case 2: {
        pn_array *m = pn_logical_and(pn_greater(x, y), pn_logical_not(pn_less(x, pn_weak_float(-0.5))));
        r = pn_where(m, pn_multiply(x, y), pn_subtract(pn_exp(pn_negative(x)), pn_sigmoid(y)));
        break;
    }
    case 3: {
        pn_array *b = pn_astype(pn_astype(pn_multiply(x, y), PN_BFLOAT16), PN_FLOAT32);
        pn_array *h = pn_astype(pn_sqrt(pn_abs(pn_astype(pn_add(x, y), PN_FLOAT16))), PN_FLOAT32);
        r = pn_astype(pn_add(pn_add(b, h), pn_astype(x, PN_FLOAT32)), x->dtype);
        break;
    }
    default: {
        const double big = 7;
        pn_array *q = pn_divide(x, y), *z = pn_nan_to_num(q, 0.25, &big, NULL);
        pn_array *c = pn_where(pn_isclose(z, x, 1e-1, 1e-1, false), pn_round(z, 1), pn_maximum(q, x));
        r = pn_add(c, pn_astype(pn_isnan(q), x->dtype));
        break;
    }
    }
    out[0] = r;
    *nout = 1;
    return r ? 0 : -1;
}

/* Inputs by variant: 0 dense (an odd size); 1 x a transposed view; 2 y a scalar; 3 y a row
 * broadcast over x's rows; 4 x a reversed view, every other column, of a larger array; 5 y a
 * column broadcast along x's rows. y has zeros for program 4. */
#define FUSED_PROG_VARIANTS 6
static void fused_prog_inputs(int variant, int64_t n, pn_dtype t, bool zeros, pn_array **x, pn_array **y)
{
    int64_t shape[2] = {3, n};
    if (variant == 1) {
        *x = pn_transpose(test_random_array((int64_t[]){n, 3}, 2, t, -3, 3), NULL, 0);
    } else if (variant == 4) {
        pn_array *big = test_random_array((int64_t[]){3, 2 * n + 1}, 2, t, -3, 3);
        *x = pn_slice(big, (int64_t[]){0, 2 * n}, (int64_t[]){3, 0}, (int64_t[]){1, -2}, 2);
    } else {
        *x = test_random_array(shape, 2, t, -3, 3);
    }
    *y = variant == 2   ? test_random_array(NULL, 0, t, 0.5, 2)
         : variant == 3 ? test_random_array((int64_t[]){n}, 1, t, -3, 3)
         : variant == 5 ? test_random_array((int64_t[]){3, 1}, 2, t, -3, 3)
                        : test_random_array(shape, 2, t, -3, 3);
    if (zeros && variant != 2 && variant != 3 && variant != 5) { /* zeros at every seventh element: x / 0 is inf or NaN */
        pn_array *k = pn_reshape(pn_arange(0, (double)(3 * n), 1, PN_INT32), shape, 2);
        *y = pn_where(pn_equal(pn_remainder(k, pn_weak_float(7)), pn_weak_float(0)), pn_weak_float(0), *y);
    }
}

/* The CPU's generated kernels (backend/cpu/fused_jit.c, built with the system C compiler):
 * every program above, on every input layout, in dtypes of every class, gives the unfused
 * graph's bits and the tile interpreter's. */
TEST(compile_fused_cpu_generated_bit_identical)
{
    const pn_dtype types[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64, PN_INT32, PN_INT8, PN_UINT16, PN_INT64};
    const int64_t n = test_quick() ? 401 : 3001; /* several blocks of the kernel, a ragged end */
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    pnK_fused_jit_set_min_size(0);
    for (size_t d = 0; d < sizeof types / sizeof *types; d++) {
        for (int prog = 0; prog < 5; prog++) {
            pn_scope_push();
            pn_dtype t = types[d];
            pn_closure *f = pn_closure_new(fn_fused_prog, (void *)(intptr_t)prog, NULL), *c = pn_compile(f, false);
            for (int variant = 0; variant < FUSED_PROG_VARIANTS; variant++) {
                pn_array *x, *y;
                fused_prog_inputs(variant, n, t, prog == 4, &x, &y);
                CHECK_MSG(x && y && pn_eval((pn_array *[]){x, y}, 2) == 0, "%s", pn_last_error_message());
                pn_array *in[2] = {x, y}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS], *interp[PN_MAX_OUTPUTS];
                int ng = 0, nw = 0, ni = 0;
                int64_t generated = pnK_fused_generated_count();
                CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 1 && pn_eval(got, 1) == 0);
                CHECK_MSG(!pnK_fused_jit_error(), "%s", pnK_fused_jit_error());
                CHECK_MSG(pnK_fused_generated_count() > generated, "%s program %d variant %d: no generated kernel ran",
                          pn_dtype_name(t), prog, variant);
                CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 1);
                CHECK_MSG(ng == 1 && nw == 1 && same_bits(got[0], want[0]),
                          "%s program %d variant %d differs from the unfused graph", pn_dtype_name(t), prog, variant);
                setenv("PONTE_FUSED_JIT", "0", 1);
                generated = pnK_fused_generated_count();
                CHECK(pn_closure_call(c, 2, in, &ni, interp) == 0 && ni == 1 && pn_eval(interp, 1) == 0);
                unsetenv("PONTE_FUSED_JIT");
                CHECK(pnK_fused_generated_count() == generated);
                CHECK_MSG(ni == 1 && ng == 1 && same_bits(got[0], interp[0]),
                          "%s program %d variant %d: generated and interpreted kernels differ", pn_dtype_name(t), prog,
                          variant);
            }
            pn_closure_release(c), pn_closure_release(f);
            pn_scope_pop();
        }
    }
    pnK_fused_jit_set_min_size(-1);
    pn_stream_pop();
}

/* Every plain unary and binary op, in every dtype, through the CPU's generated kernels:
 * programs of up to six ops, each op's result cast to float64 (which holds every value of
 * these dtypes exactly, 64-bit integers past 2^53 rounded alike; complex64's to complex64) and
 * selected into the output where a random index names it, so each op
 * decides several hundred elements. */
typedef pn_array *(*unary_fn)(pn_array *);
typedef pn_array *(*binary_fn)(pn_array *, pn_array *);
#define OPS_U(E, name, prim, rule, cpx) pn_##name,
#define OPS_B(E, name, prim, rule, cpx) pn_##name,
static const unary_fn every_unary[] = {PNK_UNARY_OPS(OPS_U)};
static const binary_fn every_binary[] = {PNK_BINARY_OPS(OPS_B)};
#undef OPS_U
#undef OPS_B
#define EVERY_PER_PROGRAM 6

typedef struct {
    bool binary;
    int first, count;
} every_ctx;

static int fn_every(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    const every_ctx *e = ctx;
    pn_array *x = in[0], *y = in[1], *idx = in[2], *acc = NULL;
    const pn_dtype to = pn_array_dtype(x) == PN_COMPLEX64 ? PN_COMPLEX64 : PN_FLOAT64;
    for (int i = 0; i < e->count; i++) {
        int op = e->first + i;
        pn_array *r = e->binary ? every_binary[op](x, y) : every_unary[op](x);
        if (!r) { /* not an op of this dtype: left out, in both calls alike */
            pn_clear_error();
            continue;
        }
        if (pn_array_dtype(r) != to) r = pn_astype(r, to);
        acc = acc ? pn_where(pn_equal(idx, pn_weak_int(i)), r, acc) : r;
    }
    out[0] = acc ? acc : pn_astype(x, to);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(compile_fused_cpu_generated_every_op)
{
    const pn_dtype all[] = {PN_BOOL,  PN_UINT8, PN_UINT16,  PN_UINT32,  PN_UINT64,  PN_INT8,    PN_INT16,
                            PN_INT32, PN_INT64, PN_FLOAT16, PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16, PN_COMPLEX64};
    const pn_dtype quick[] = {PN_BOOL, PN_UINT8, PN_INT32, PN_FLOAT16, PN_FLOAT32};
    const pn_dtype *types = test_quick() ? quick : all;
    const int nt = test_quick() ? 5 : 14;
    const int nu = (int)(sizeof every_unary / sizeof *every_unary), nb = (int)(sizeof every_binary / sizeof *every_binary);
    const int64_t n = 3001;
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    pnK_fused_jit_set_min_size(0);
    int programs = 0;
    for (int d = 0; d < nt; d++) {
        const pn_dtype t = types[d];
        const bool is_unsigned = t == PN_BOOL || t == PN_UINT8 || t == PN_UINT16 || t == PN_UINT32 || t == PN_UINT64;
        for (int binary = 0; binary < 2; binary++) {
            const int total = binary ? nb : nu;
            for (int first = 0; first < total; first += EVERY_PER_PROGRAM) {
                pn_scope_push();
                every_ctx e = {binary, first, total - first < EVERY_PER_PROGRAM ? total - first : EVERY_PER_PROGRAM};
                pn_array *x = test_random_array((int64_t[]){n}, 1, t, is_unsigned ? 0 : -3, 3);
                pn_array *y = test_random_array((int64_t[]){n}, 1, t, is_unsigned ? 0 : -3, 3);
                pn_array *idx = pn_floor(test_random_array((int64_t[]){n}, 1, PN_FLOAT32, 0, e.count - 1e-3));
                idx = pn_astype(idx, PN_INT32);
                CHECK_MSG(x && y && idx && pn_eval((pn_array *[]){x, y, idx}, 3) == 0, "%s", pn_last_error_message());
                pn_closure *f = pn_closure_new(fn_every, &e, NULL), *c = pn_compile(f, false);
                pn_array *in[3] = {x, y, idx}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
                int ng = 0, nw = 0;
                int64_t generated = pnK_fused_generated_count();
                CHECK(pn_closure_call(c, 3, in, &ng, got) == 0 && ng == 1 && pn_eval(got, 1) == 0);
                CHECK_MSG(!pnK_fused_jit_error(), "%s", pnK_fused_jit_error());
                CHECK_MSG(pnK_fused_generated_count() > generated, "%s %s ops %d..: no generated kernel ran",
                          pn_dtype_name(t), binary ? "binary" : "unary", first);
                CHECK(pn_closure_call(f, 3, in, &nw, want) == 0 && nw == 1);
                CHECK_MSG(ng == 1 && nw == 1 && same_bits(got[0], want[0]),
                          "%s %s ops %d..%d: the generated kernel differs from the unfused ops", pn_dtype_name(t),
                          binary ? "binary" : "unary", first, first + e.count - 1);
                programs++;
                pn_closure_release(c), pn_closure_release(f);
                pn_scope_pop();
            }
        }
    }
    CHECK(programs >= nt * 10);
    pnK_fused_jit_set_min_size(-1);
    pn_stream_pop();
}

#ifdef PONTE_HAS_GPU
#include "backend/cuda/custom_kernel.h"
#include "backend/cuda/fused.h"

TEST(compile_fused_gpu_bit_identical)
{
    if (!pn_is_available((pn_device){.type = PN_GPU, .index = 0})) return;
    pn_stream_push(pn_default_stream((pn_device){.type = PN_GPU, .index = 0}));
    const pn_dtype types[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64, PN_INT32, PN_INT8, PN_UINT16};
    const int64_t n = test_quick() ? 301 : 1001;
    /* the simulator runs generated kernels with PONTE_SIM_JIT=1 (it builds them with the host
     * C++ compiler) */
    const char *sim_jit = getenv("PONTE_SIM_JIT");
    const bool restore = !sim_jit || strcmp(sim_jit, "1") != 0;
    setenv("PONTE_SIM_JIT", "1", 1);
    for (size_t d = 0; d < sizeof types / sizeof *types; d++) {
        for (int prog = 0; prog < 5; prog++) {
            pn_scope_push();
            pn_dtype t = types[d];
            pn_closure *f = pn_closure_new(fn_fused_prog, (void *)(intptr_t)prog, NULL), *c = pn_compile(f, false);
            for (int variant = 0; variant < FUSED_PROG_VARIANTS; variant++) {
                pn_array *x, *y;
                fused_prog_inputs(variant, n, t, prog == 4, &x, &y);
                CHECK_MSG(x && y && x->shape[1] == n, "%s", pn_last_error_message());
                CHECK(pn_eval((pn_array *[]){x, y}, 2) == 0);
                pn_array *in[2] = {x, y}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
                int ng = 0, nw = 0;
                int64_t runs = pnG_fused_count(), falls = pnC_gpu_fallback_count();
                int64_t generated = pnG_fused_generated_count();
                CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 1);
                CHECK(ng == 1 && pn_eval(got, 1) == 0);
                pnT_compile_stats st = pnT_compile_last_stats();
                CHECK_MSG(variant > 0 || st.compiled >= 1, "%s program %d: no Compiled node", pn_dtype_name(t), prog);
                /* programs 3 and 4 cast back to x's dtype: astype to an integer has no fused case,
                 * so with integer inputs the GPU fuses the chains before that cast only */
                CHECK_MSG(pnG_fused_count() > runs, "%s program %d variant %d: the fused GPU kernel did not run",
                          pn_dtype_name(t), prog, variant);
                CHECK_MSG(pnC_gpu_fallback_count() == falls, "%s program %d: a CPU fallback", pn_dtype_name(t), prog);
                CHECK(ng == 1 && got[0]->buf && got[0]->buf->device_valid);
                CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 1);
                CHECK_MSG(ng == 1 && nw == 1 && same_bits(got[0], want[0]),
                          "%s program %d variant %d differs from the unfused GPU graph", pn_dtype_name(t), prog, variant);
                /* on a GPU with NVRTC (and on the simulator, which builds them with the host
                 * compiler: PONTE_SIM_JIT) the launch was a generated kernel: the interpreter
                 * gives the same bits */
#ifdef PONTE_GPU_SIM
                CHECK_MSG(!pnG_fused_jit_error(), "%s", pnG_fused_jit_error());
#endif
                if (!pnG_fused_jit_error()) {
                        CHECK_MSG(pnG_fused_generated_count() > generated, "%s program %d variant %d: no generated kernel ran",
                              pn_dtype_name(t), prog, variant);
                    setenv("PONTE_FUSED_JIT", "0", 1);
                    pn_array *interp[PN_MAX_OUTPUTS];
                    int ni = 0;
                    int64_t before = pnG_fused_generated_count();
                    CHECK(pn_closure_call(c, 2, in, &ni, interp) == 0 && ni == 1 && pn_eval(interp, 1) == 0);
                    unsetenv("PONTE_FUSED_JIT");
                    CHECK(pnG_fused_generated_count() == before);
                    CHECK_MSG(ni == 1 && ng == 1 && same_bits(got[0], interp[0]),
                              "%s program %d variant %d: generated and interpreted kernels differ",
                              pn_dtype_name(t), prog, variant);
                }
            }
            pn_closure_release(c), pn_closure_release(f);
            pn_scope_pop();
        }
    }
    if (restore) unsetenv("PONTE_SIM_JIT");
    pn_stream_pop();
}

/* Programs outside the fused kernel's dtypes (64-bit integers) replay the unfused tape on the
 * GPU: no fused launch, no CPU fallback, the right values. */
TEST(compile_fused_gpu_declines)
{
    if (!pn_is_available((pn_device){.type = PN_GPU, .index = 0})) return;
    pn_stream_push(pn_default_stream((pn_device){.type = PN_GPU, .index = 0}));
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_chain, NULL, NULL), *c = pn_compile(f, false);
    int64_t shape[2] = {2, 77};
    pn_array *x = test_random_array(shape, 2, PN_INT64, -50, 50), *y = test_random_array(shape, 2, PN_INT64, -50, 50);
    pn_array *in[2] = {x, y}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
    int ng = 0, nw = 0;
    int64_t runs = pnG_fused_count(), falls = pnC_gpu_fallback_count();
    CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 2 && pn_eval(got, 2) == 0);
    CHECK_MSG(pnG_fused_count() == runs, "an int64 program ran the fused kernel");
    CHECK(pnC_gpu_fallback_count() == falls);
    CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 2);
    for (int j = 0; j < 2 && ng == 2 && nw == 2; j++) CHECK(same_bits(got[j], want[j]));
    /* the launcher refuses what it has no case for (int64 values, a float shift, astype to an
     * integer) and takes the rest */
    pnG_fused_args a = {.nin = 1, .nops = 1, .nslots = 1, .out_dtype = PN_INT64, .in_dtype = {PN_INT64}};
    a.ops[0] = (pnG_fused_op){.kind = PNG_FUSED_UNARY, .op = PNK_U_ABS, .t = PN_INT64, .dst = PN_INT64};
    CHECK(pnG_fused_launch(&a, false) == PNG_UNSUPPORTED);
    a.out_dtype = a.in_dtype[0] = a.ops[0].t = a.ops[0].dst = PN_INT32;
    CHECK(pnG_fused_launch(&a, false) == 0);
    a.out_dtype = a.in_dtype[0] = a.ops[0].t = a.ops[0].dst = PN_FLOAT32;
    CHECK(pnG_fused_launch(&a, false) == 0);
    a.ops[0].op = PNK_B_LEFT_SHIFT, a.ops[0].kind = PNG_FUSED_BINARY;
    CHECK(pnG_fused_launch(&a, false) == PNG_UNSUPPORTED);
    a.ops[0] = (pnG_fused_op){.kind = PNG_FUSED_ASTYPE, .t = PN_FLOAT32, .dst = PN_INT32};
    a.out_dtype = PN_INT32;
    CHECK(pnG_fused_launch(&a, false) == PNG_UNSUPPORTED);
    pn_closure_release(c), pn_closure_release(f);
    pn_scope_pop();
    pn_stream_pop();
}

/* A float chain beside an int64 one (which the GPU's fused kernels do not take). */
static int fn_float_and_int64(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0], *i = in[1];
    out[0] = pn_multiply(pn_tanh(pn_add(pn_multiply(x, pn_weak_float(2)), pn_weak_float(1))), x);
    out[1] = pn_subtract(pn_add(pn_multiply(i, pn_weak_int(3)), pn_weak_int(1)), pn_abs(i));
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

/* A tape whose int64 chain has no GPU kernel still runs its float chain as one fused GPU
 * launch (the GPU replays a tape fusing only what its kernels take); the CPU fuses both. */
TEST(compile_fused_gpu_per_group)
{
    if (!pn_is_available((pn_device){.type = PN_GPU, .index = 0})) return;
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_float_and_int64, NULL, NULL), *c = pn_compile(f, false);
    int64_t shape[2] = {4, 131};
    pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -2, 2), *i = test_random_array(shape, 2, PN_INT64, -50, 50);
    pn_array *in[2] = {x, i}, *got[PN_MAX_OUTPUTS], *want[PN_MAX_OUTPUTS];
    int ng = 0, nw = 0;
    CHECK(pn_eval(in, 2) == 0);
    pn_stream_push(pn_default_stream((pn_device){.type = PN_GPU, .index = 0}));
    for (int call = 0; call < 2; call++) {
        int64_t runs = pnG_fused_count(), falls = pnC_gpu_fallback_count();
        CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 2 && pn_eval(got, 2) == 0);
        CHECK_MSG(pnG_fused_count() == runs + 1, "call %d: %lld fused GPU launches", call,
                  (long long)(pnG_fused_count() - runs));
        CHECK(pnC_gpu_fallback_count() == falls);
        CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 2);
        for (int j = 0; j < 2 && ng == 2 && nw == 2; j++) CHECK_MSG(same_bits(got[j], want[j]), "output %d", j);
    }
    pn_stream_pop();
    pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU, .index = 0}));
    CHECK(pn_closure_call(c, 2, in, &ng, got) == 0 && ng == 2 && pn_eval(got, 2) == 0);
    CHECK_MSG(pnT_compile_last_stats().compiled == 2, "%d Compiled nodes", pnT_compile_last_stats().compiled);
    CHECK(pn_closure_call(f, 2, in, &nw, want) == 0 && nw == 2);
    for (int j = 0; j < 2 && ng == 2 && nw == 2; j++) CHECK(same_bits(got[j], want[j]));
    pn_stream_pop();
    pn_closure_release(c), pn_closure_release(f);
    pn_scope_pop();
}

/* Every case the fused GPU kernels take (unary and binary op x dtype, astype, where), as
 * generated source, compiles with NVRTC for sm_80 and sm_90: no GPU needed, only NVRTC (the
 * test says so and checks nothing more without it). On a GPU the bit-identical test above
 * runs these kernels. */
TEST(compile_fused_generated_sources_compile)
{
    const pn_dtype types[] = {PN_BOOL,  PN_FLOAT16, PN_BFLOAT16, PN_FLOAT32, PN_FLOAT64, PN_INT8,
                              PN_INT16, PN_INT32,   PN_UINT8,    PN_UINT16,  PN_UINT32};
    const int nt = (int)(sizeof types / sizeof *types);
    /* every case, as a one-op launch the planner accepts */
    static pnG_fused_op cases[4 * (PNK_U_COUNT + PNK_B_COUNT) * 11];
    int ncases = 0;
    for (int d = 0; d < nt; d++) {
        pnG_fused_args one = {.nin = 3, .nops = 1, .nslots = 1, .out_dtype = PN_FLOAT64,
                              .in_dtype = {PN_BOOL, types[d], types[d]}};
        for (int kind = PNG_FUSED_UNARY; kind <= PNG_FUSED_ASTYPE; kind++) {
            int nops = kind == PNG_FUSED_UNARY ? PNK_U_COUNT : kind == PNG_FUSED_BINARY ? PNK_B_COUNT
                       : kind == PNG_FUSED_ASTYPE ? nt : 1;
            for (int op = 0; op < nops; op++) {
                pnG_fused_op o = {.kind = (int16_t)kind, .t = (int16_t)types[d], .dst = (int16_t)types[d]};
                if (kind == PNG_FUSED_UNARY || kind == PNG_FUSED_BINARY) o.op = (int16_t)op;
                if (kind == PNG_FUSED_ASTYPE) o.dst = (int16_t)types[op];
                o.in[0] = kind == PNG_FUSED_WHERE ? 0 : 1, o.in[1] = o.in[2] = 2;
                one.ops[0] = o;
                one.out_dtype = o.dst;
                if (pnG_fused_launch(&one, false) == 0) cases[ncases++] = o;
            }
        }
    }
    CHECK_MSG(ncases > 400, "only %d fused cases", ncases);
    /* programs of up to 32 cases of one operand dtype t (inputs: a bool, t, a broadcast t;
     * each op reads them, the last one's result is stored), once with double registers (a
     * float64 input forces them) and, for the dtypes a float holds, once with float registers */
    int programs = 0, compiled = 0;
    for (int d = 0; d < nt; d++) {
        const pn_dtype t = types[d];
        const bool wide_t = t == PN_FLOAT64 || t == PN_INT32 || t == PN_UINT32;
        for (int narrow = 0; narrow < (wide_t ? 1 : 2); narrow++) {
            for (int at = 0; at < ncases;) {
                pnG_fused_args a = {.nin = narrow ? 3 : 4, .in_dtype = {PN_BOOL, t, t, PN_FLOAT64}};
                a.scalar[2] = true;
                while (at < ncases && a.nops < PNG_FUSED_MAX_OPS) {
                    pnG_fused_op o = cases[at++];
                    bool wide_dst = o.dst == PN_FLOAT64 || o.dst == PN_INT32 || o.dst == PN_UINT32;
                    if (o.t != t || (narrow && wide_dst)) continue;
                    o.out = (int16_t)a.nops;
                    a.ops[a.nops++] = o;
                }
                if (a.nops == 0) continue;
                a.nslots = a.nops;
                a.out_dtype = a.ops[a.nops - 1].dst;
                char *src = pnG_fused_source(&a);
                CHECK_MSG(src != NULL, "program %d: %s", programs, pn_last_error_message());
                if (!src) {
                    pn_clear_error();
                    continue;
                }
                CHECK_MSG(strstr(src, narrow ? "typedef float R;" : "typedef double R;") != NULL,
                          "program %d: registers\n%s", programs, src);
                size_t len = 0;
                int sm = programs % 2 ? 80 : 90;
                char *cubin = pnG_rtc_compile("fused_test.cu", src, sm, &len);
                if (!cubin && strstr(pn_last_error_message(), "could not be loaded")) {
                    printf("    (NVRTC not found: the generated sources were not compiled)\n");
                    pn_clear_error();
                    free(src);
                    return;
                }
                CHECK_MSG(cubin && len > 0, "program %d (sm_%d) does not compile:\n%s\n%s", programs, sm,
                          pn_last_error_message(), src);
                compiled += cubin != NULL;
                pn_clear_error();
                free(cubin);
                free(src);
                programs++;
            }
        }
    }
    CHECK_MSG(compiled == programs && programs > 20, "%d of %d programs compiled", compiled, programs);
}

/* A generated kernel rounds each op as the unfused kernels do: x * y + x, in float and double
 * registers, compiles (NVRTC, PTX for compute_90) to a rounded multiply and a rounded add,
 * never one fused multiply-add, which would differ from the unfused graph in the last bit (as
 * a native run on an H200 found). */
TEST(compile_fused_generated_rounds_each_op)
{
    for (int wide = 0; wide < 2; wide++) {
        pn_dtype t = wide ? PN_FLOAT64 : PN_FLOAT32;
        pnG_fused_args a = {.nin = 2, .nops = 2, .nslots = 2, .out_dtype = t, .in_dtype = {t, t}};
        a.ops[0] = (pnG_fused_op){.kind = PNG_FUSED_BINARY, .op = PNK_B_MULTIPLY, .t = (int16_t)t,
                                  .dst = (int16_t)t, .in = {0, 1}, .out = 0};
        a.ops[1] = (pnG_fused_op){.kind = PNG_FUSED_BINARY, .op = PNK_B_ADD, .t = (int16_t)t,
                                  .dst = (int16_t)t, .in = {2, 0}, .out = 1};
        char *src = pnG_fused_source(&a);
        CHECK_MSG(src != NULL, "%s", pn_last_error_message());
        size_t len = 0;
        char *ptx = src ? pnG_rtc_compile("fused_fma_test.cu", src, -90, &len) : NULL;
        if (!ptx && src && strstr(pn_last_error_message(), "could not be loaded")) {
            printf("    (NVRTC not found: not checked)\n");
            pn_clear_error();
            free(src);
            return;
        }
        CHECK_MSG(ptx && len > 0, "%s\n%s", pn_last_error_message(), src ? src : "");
        if (ptx) {
            const char *w = wide ? "f64" : "f32";
            char mul[16], add[16], fma[16];
            snprintf(mul, sizeof mul, "mul.rn.%s", w), snprintf(add, sizeof add, "add.rn.%s", w);
            snprintf(fma, sizeof fma, "fma.rn.%s", w);
            CHECK_MSG(strstr(ptx, mul) && strstr(ptx, add) && !strstr(ptx, fma),
                      "%s: the multiply and the add are not rounded each:\n%s", w, ptx);
        }
        pn_clear_error();
        free(ptx);
        free(src);
    }
}
#endif /* PONTE_HAS_GPU */
