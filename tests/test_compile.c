/* test_compile.c — mx.compile (pn_compile): results equal to the function's (float64
 * references) on fresh random inputs, one call of the function per input signature, retracing
 * on new shapes and dtypes, shapeless replay at new shapes, simplification (merged constants,
 * common subexpressions, dead nodes), frozen captured arrays, gradients through and of
 * compiled functions, the disabled switch and the refusals. */
#include "harness.h"

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

/* exp(x) + y * 2 (elementwise only: replayable at any shape). */
static int fn_ew(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    out[0] = pn_add(pn_exp(in[0]), pn_multiply(in[1], pn_weak_float(2.0)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int fn_sum(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    ((fctx *)ctx)->calls++;
    out[0] = pn_sum(pn_exp(in[0]), NULL, 0, false);
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
    /* a reduction has no shape rule: refused at the first call, and not cached */
    fctx sctx = {0};
    pn_closure *fs = pn_closure_new(fn_sum, &sctx, NULL);
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
    /* the compiled gradient traced f once; grad of the compiled function runs f each time */
    CHECK_MSG(ctx.calls == 1 + 3, "f ran %d times", ctx.calls);
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
    /* Compiled nodes are made on CPU streams (GPU streams replay the unfused tape) */
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
