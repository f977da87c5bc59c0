/* test_export.c — export_function / import_function / exporter: round trips of graphs over
 * every family of primitives (results equal to calling the function, on new random inputs),
 * keyword inputs, several traces per file, gradients of and through imported functions, the
 * refusals, and hostile files (crafted field by field and truncated) that must fail cleanly. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

#include "backend/cpu/elementwise.h"
#include "core/core.h"
#include "io/registry.h"

/* Whether a and b have the same dtype, shape and values (within tol, relative). */
static int same(const char *what, pn_array *a, pn_array *b, double tol)
{
    if (!a || !b) {
        test_fail(__FILE__, __LINE__, "%s: NULL (%s)", what, pn_last_error_message());
        return 0;
    }
    double *rb = test_to_f64(b);
    int ok = rb && test_check_values(what, a, b->shape, b->ndim, b->dtype, rb, tol, tol);
    free(rb);
    return ok;
}

/* Calls f directly and through the file on the same inputs and compares every output. */
static void check_round_trip(const char *name, pn_closure *f, int nin, pn_array *const *example,
                             pn_array *const *fresh, double tol)
{
    const char *path = test_tmp_path(name);
    CHECK_MSG(pn_export_function(path, f, nin, example, 0, NULL, NULL, false, NULL) == 0,
              "%s: export failed: %s", name, pn_last_error_message());
    pn_imported_function *g = pn_import_function(path);
    CHECK_MSG(g != NULL, "%s: import failed: %s", name, pn_last_error_message());
    if (!g) return;
    pn_array *want[PN_MAX_OUTPUTS], *got[PN_MAX_OUTPUTS];
    int nw = 0, ng = 0;
    CHECK(pn_closure_call(f, nin, fresh, &nw, want) == 0);
    CHECK_MSG(pn_imported_function_call(g, nin, fresh, 0, NULL, NULL, &ng, got) == 0, "%s: %s",
              name, pn_last_error_message());
    CHECK_MSG(nw == ng, "%s: %d outputs, imported %d", name, nw, ng);
    for (int j = 0; j < nw && j < ng; j++) {
        char what[96];
        snprintf(what, sizeof what, "%s output %d", name, j);
        same(what, got[j], want[j], tol);
    }
    pn_imported_function_free(g);
}

/* ───────────────────────────── functions under test ───────────────────────────── */

/* x (3,4), y (4,5), key: elementwise with weak scalars, reductions, matmul, a captured
 * constant, indexing, a multi-output primitive (split, divmod), sort, scan and random bits. */
static pn_array *captured; /* a constant the function reads */

static int fn_mix(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0], *y = in[1], *key = in[2];
    pn_array *e = pn_add(pn_multiply(pn_exp(x), pn_weak_float(2.0)), pn_sin(x));
    int ax1[] = {1};
    out[0] = pn_sum(e, ax1, 1, false);
    out[1] = pn_max(x, NULL, 0, true);
    out[2] = pn_add(pn_matmul(x, y), captured);
    int32_t idx[] = {3, 0, 2};
    out[3] = pn_take(x, pn_array_from_data(idx, (int64_t[]){3}, 1, PN_INT32), 1);
    pn_array *parts[2];
    int64_t at[] = {1};
    if (pn_split(y, at, 1, 0, parts)) return -1;
    out[4] = parts[0], out[5] = parts[1];
    pn_array *dm[2];
    pn_array *den = pn_add(pn_abs(pn_slice(y, (int64_t[]){0, 0}, (int64_t[]){3, 4}, NULL, 2)), pn_weak_float(1.0));
    if (pn_divmod(x, den, dm)) return -1;
    out[6] = dm[0], out[7] = dm[1];
    out[8] = pn_sort(x, 1);
    out[9] = pn_cumsum(x, 0, false, true);
    out[10] = pn_random_uniform(pn_weak_float(-1), pn_weak_float(1), (int64_t[]){2, 3}, 2, PN_FLOAT32, key);
    out[11] = pn_softmax(pn_transpose(x, NULL, 0), (int[]){-1}, 1, false);
    *nout = 12;
    return 0;
}

/* Convolutions: x (N=2, H=6, W=5, C=3), w (O=4, 3, 2, C=3) and a 1-d one. */
static int fn_conv(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_conv2d(in[0], in[1], (int[]){1, 2}, (int[]){1, 0}, NULL, 1);
    pn_array *x1 = pn_reshape(in[0], (int64_t[]){2, 30, 3}, 3);
    pn_array *w1 = pn_slice(in[1], (int64_t[]){0, 0, 0, 0}, (int64_t[]){4, 1, 2, 3}, NULL, 4);
    out[1] = pn_conv1d(x1, pn_reshape(w1, (int64_t[]){4, 2, 3}, 3), 2, 1, 1, 1);
    *nout = 2;
    return 0;
}

/* x (4,4), y (4,4): the other primitive families (matrix, shape, indexing, sort, FFT,
 * decomposition, dependency and gradient-stopping nodes), so every params struct is checked
 * against the registry by an export. */
static int fn_more(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0], *y = in[1];
    int n = 0;
    out[n++] = pn_addmm(y, x, y, 0.5, 2.0);
    out[n++] = pn_diagonal(x, 1, 0, 1);
    out[n++] = pn_tril(x, 0);
    out[n++] = pn_argmax(x, 1, false);
    out[n++] = pn_logsumexp(x, (int[]){0}, 1, true);
    out[n++] = pn_concatenate((pn_array *[]){x, y, x}, 3, 1);
    out[n++] = pn_pad(x, (int[]){0}, (int64_t[]){1}, (int64_t[]){2}, 1, pn_scalar(7, PN_FLOAT32), PN_PAD_CONSTANT);
    out[n++] = pn_broadcast_to(pn_slice(x, (int64_t[]){0, 0}, (int64_t[]){1, 4}, NULL, 2), (int64_t[]){3, 4}, 2);
    out[n++] = pn_where(pn_greater(x, y), x, pn_stop_gradient(y));
    out[n++] = pn_argsort(x, 0);
    out[n++] = pn_partition(y, 2, 1);
    out[n++] = pn_fft_rfft(x, 4, -1);
    pn_array *idx = pn_argsort(y, 1);
    out[n++] = pn_take_along_axis(x, idx, 1);
    out[n++] = pn_put_along_axis(x, idx, y, 1);
    out[n++] = pn_slice_update(x, pn_slice(y, (int64_t[]){0, 0}, (int64_t[]){2, 2}, NULL, 2), (int64_t[]){1, 1},
                               (int64_t[]){3, 3}, NULL, 2);
    out[n++] = pn_as_strided(pn_copy(x), (int64_t[]){3, 2}, (int64_t[]){4, 1}, 2, 1);
    pn_array *rows = pn_array_from_data((int32_t[]){2, 0, 3}, (int64_t[]){3}, 1, PN_INT32);
    out[n++] = pn_gather(x, &rows, 1, (int[]){0}, (int64_t[]){1, 4});
    pn_array *upd = pn_reshape(pn_slice(y, (int64_t[]){0, 0}, (int64_t[]){3, 4}, NULL, 2),
                               (int64_t[]){3, 1, 4}, 3);
    out[n++] = pn_scatter(x, &rows, 1, upd, (int[]){0}, PN_SCATTER_ADD);
    pn_array *sym = pn_add(pn_matmul(x, pn_transpose(x, NULL, 0)), pn_eye(4, 4, 0, PN_FLOAT32));
    pn_array *svd[3];
    if (pn_linalg_svd(sym, false, svd)) return -1;
    out[n++] = svd[0];
    out[n++] = pn_linalg_solve_triangular(sym, x, false);
    out[n++] = pn_linalg_cholesky(sym, false);
    out[n++] = pn_to_fp8(x);
    pn_array *w = pn_reshape(pn_slice(y, (int64_t[]){0, 0}, (int64_t[]){1, 4}, NULL, 2), (int64_t[]){4}, 1);
    out[n++] = pn_nn_layer_norm(x, w, w, 1e-5);
    out[n++] = pn_nn_rms_norm(x, w, 1e-5);
    pn_array *dep[1];
    if (pn_depends((pn_array *[]){x}, 1, (pn_array *[]){y}, 1, dep)) return -1;
    out[n++] = dep[0];
    int64_t s4[4] = {1, 2, 4, 2}; /* fused attention with a bool mask (its fourth input) */
    out[n++] = pn_fast_scaled_dot_product_attention(pn_reshape(x, s4, 4), pn_reshape(y, s4, 4), pn_reshape(x, s4, 4),
                                                    0.5, "", pn_greater(x, y));
    *nout = n;
    return 0;
}

/* x (3,64), w (8,64): quantize (three outputs), dequantize and quantized_matmul as nodes. */
static int fn_quant(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *q[3];
    if (pn_quantize(in[1], 32, 4, "affine", NULL, q)) return -1;
    out[0] = pn_quantized_matmul(in[0], q[0], q[1], q[2], true, 32, 4, "affine");
    out[1] = pn_dequantize(q[0], q[1], q[2], 32, 4, "affine", NULL, PN_NUM_DTYPES);
    out[2] = q[0];
    *nout = 3;
    return 0;
}

/* A scalar loss of (w, x) for gradients. */
static int fn_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_sum(pn_tanh(pn_multiply(pn_matmul(in[1], in[0]), pn_weak_float(0.5))), NULL, 0, false);
    /* + sum(layer_norm(x, w[:, 0]) * x): the fused norm's forward and backward nodes */
    pn_array *wcol = pn_reshape(pn_slice(in[0], (int64_t[]){0, 0}, (int64_t[]){4, 1}, NULL, 2), (int64_t[]){4}, 1);
    out[0] = pn_add(out[0], pn_sum(pn_multiply(pn_nn_layer_norm(in[1], wcol, NULL, 1e-5), in[1]), NULL, 0, false));
    *nout = 1;
    return 0;
}

/* a - b * c, for keyword inputs (receives a, b, c in name order). */
static int fn_abc(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx;
    if (nin != 3) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "fn_abc: %d inputs", nin);
    out[0] = pn_subtract(in[0], pn_multiply(in[1], in[2]));
    *nout = 1;
    return 0;
}

/* Sums its inputs (any count), for several traces in one file. */
static int fn_sum_all(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx;
    pn_array *s = in[0];
    for (int i = 1; i < nin; i++) s = pn_add(s, in[i]);
    out[0] = pn_multiply(s, pn_weak_float(2.0));
    *nout = 1;
    return 0;
}

/* Returns its input, a constant and a function of nothing but constants. */
static int fn_passthrough(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx;
    out[0] = nin ? in[0] : pn_scalar(1.0, PN_FLOAT32);
    out[1] = captured;
    out[2] = pn_exp(captured);
    *nout = 3;
    return 0;
}

/* Evaluates an array that depends on its input (refused while exporting). */
static int fn_evals(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *y = pn_exp(in[0]);
    if (pn_eval(&y, 1)) return -1;
    out[0] = y;
    *nout = 1;
    return 0;
}

static int fn_square(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_square(in[0]);
    *nout = 1;
    return 0;
}

/* ───────────────────────────── round trips ───────────────────────────── */

TEST(export_round_trip_families)
{
    pn_scope_push();
    captured = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT32, -1, 1);
    pn_closure *f = pn_closure_new(fn_mix, NULL, NULL);
    pn_array *ex[3] = {test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT32, -2, 2),
                       test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT32, -2, 2), pn_random_key(1)};
    for (int rep = 0; rep < 3; rep++) {
        pn_array *fresh[3] = {test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT32, -2, 2),
                              test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT32, -2, 2),
                              pn_random_key(100 + (uint64_t)rep)};
        check_round_trip("mix.pfn", f, 3, ex, fresh, 0);
    }
    pn_closure_release(f);

    f = pn_closure_new(fn_conv, NULL, NULL);
    pn_array *cx[2] = {test_random_array((int64_t[]){2, 6, 5, 3}, 4, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){4, 3, 2, 3}, 4, PN_FLOAT32, -1, 1)};
    pn_array *cf[2] = {test_random_array((int64_t[]){2, 6, 5, 3}, 4, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){4, 3, 2, 3}, 4, PN_FLOAT32, -1, 1)};
    check_round_trip("conv.pfn", f, 2, cx, cf, 0);
    pn_closure_release(f);

    f = pn_closure_new(fn_more, NULL, NULL);
    pn_array *mx_[2] = {test_random_array((int64_t[]){4, 4}, 2, PN_FLOAT32, -1, 1),
                        test_random_array((int64_t[]){4, 4}, 2, PN_FLOAT32, -1, 1)};
    pn_array *mf[2] = {test_random_array((int64_t[]){4, 4}, 2, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){4, 4}, 2, PN_FLOAT32, -1, 1)};
    check_round_trip("more.pfn", f, 2, mx_, mf, 0);
    pn_closure_release(f);

    /* float64 and integer inputs, 0-d and empty shapes */
    f = pn_closure_new(fn_square, NULL, NULL);
    const int64_t shapes[3][2] = {{0, 0}, {0, 3}, {5, 1}};
    const int ranks[3] = {0, 2, 2};
    const pn_dtype dts[3] = {PN_FLOAT64, PN_INT32, PN_FLOAT16};
    for (int k = 0; k < 3; k++) {
        pn_array *a = test_random_array(shapes[k], ranks[k], dts[k], -5, 5);
        pn_array *b = test_random_array(shapes[k], ranks[k], dts[k], -5, 5);
        check_round_trip("square.pfn", f, 1, &a, &b, 0);
    }
    pn_closure_release(f);
    captured = NULL;
    pn_scope_pop();
}

TEST(export_quantized)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_quant, NULL, NULL);
    pn_array *ex[2] = {test_random_array((int64_t[]){3, 64}, 2, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){8, 64}, 2, PN_FLOAT32, -1, 1)};
    pn_array *fr[2] = {test_random_array((int64_t[]){3, 64}, 2, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){8, 64}, 2, PN_FLOAT32, -1, 1)};
    check_round_trip("quant.pfn", f, 2, ex, fr, 0);
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(export_constants_and_passthrough)
{
    pn_scope_push();
    captured = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT64, -1, 1);
    pn_closure *f = pn_closure_new(fn_passthrough, NULL, NULL);
    pn_array *x = test_random_array((int64_t[]){4}, 1, PN_INT64, -9, 9);
    pn_array *y = test_random_array((int64_t[]){4}, 1, PN_INT64, -9, 9);
    check_round_trip("pass.pfn", f, 1, &x, &y, 0);
    check_round_trip("noinput.pfn", f, 0, NULL, NULL, 0); /* a function of no inputs */
    pn_closure_release(f);
    captured = NULL;
    pn_scope_pop();
}

TEST(export_keywords)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_abc, NULL, NULL);
    pn_array *a = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *c = test_random_array((int64_t[]){1}, 1, PN_FLOAT32, -1, 1);
    const char *names[] = {"c", "a"}; /* stored in name order: a, c */
    const char *path = test_tmp_path("kw.pfn");
    CHECK(pn_export_function(path, f, 1, (pn_array *[]){b}, 2, names, (pn_array *[]){c, a}, false,
                             "{\"model\": 1}") == 0);
    pn_imported_function *g = pn_import_function(path);
    CHECK_OK((pn_array *)g);
    if (g) {
        CHECK(strcmp(pn_imported_function_metadata(g), "{\"model\": 1}") == 0);
        pn_array *a2 = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
        pn_array *b2 = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1);
        pn_array *c2 = test_random_array((int64_t[]){1}, 1, PN_FLOAT32, -1, 1);
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        /* keywords in another order than exported */
        CHECK(pn_imported_function_call(g, 1, &b2, 2, (const char *[]){"a", "c"},
                                        (pn_array *[]){a2, c2}, &n, out) == 0 && n == 1);
        /* f receives the positional input, then a, then c */
        pn_array *want = pn_subtract(b2, pn_multiply(a2, c2));
        if (n == 1) same("keywords", out[0], want, 0);
        /* the closure form takes them flat in the same order */
        pn_closure *h = pn_imported_function_closure(g);
        CHECK(pn_closure_call(h, 3, (pn_array *[]){b2, a2, c2}, &n, out) == 0 && n == 1);
        if (n == 1) same("keywords closure", out[0], want, 0);
        pn_closure_release(h);
        /* wrong names, keyword given as positional, wrong shape: no trace matches */
        pn_clear_error();
        CHECK(pn_imported_function_call(g, 1, &b2, 2, (const char *[]){"a", "d"},
                                        (pn_array *[]){a2, c2}, &n, out) == -1 && n == 0);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        CHECK(strstr(pn_last_error_message(), "\"a\": (3) float32") != NULL);
        pn_clear_error();
        CHECK(pn_imported_function_call(g, 3, (pn_array *[]){b2, a2, c2}, 0, NULL, NULL, &n, out) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        CHECK(pn_imported_function_call(g, 1, &a2, 2, (const char *[]){"a", "c"},
                                        (pn_array *[]){a2, c2}, &n, out) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        CHECK(pn_imported_function_call(g, 1, &b2, 2, (const char *[]){"a", "a"},
                                        (pn_array *[]){a2, c2}, &n, out) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        pn_imported_function_free(g);
    }
    /* duplicate and empty names are refused at export */
    CHECK(pn_export_function(path, f, 1, &b, 2, (const char *[]){"a", "a"}, (pn_array *[]){a, c},
                             false, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_export_function(path, f, 1, &b, 2, (const char *[]){"a", ""}, (pn_array *[]){a, c},
                             false, NULL) == -1);
    pn_clear_error();
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(export_several_traces)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_sum_all, NULL, NULL);
    const char *path = test_tmp_path("multi.pfn");
    pn_exporter *e = pn_exporter_new(path, f, false, NULL);
    CHECK(e != NULL);
    pn_array *i0 = pn_scalar(1, PN_INT32), *i1 = pn_scalar(2, PN_INT32);
    pn_array *v = test_random_array((int64_t[]){2}, 1, PN_FLOAT32, -1, 1);
    /* a file with no trace yet exists and imports */
    pn_imported_function *g0 = pn_import_function(path);
    CHECK(g0 != NULL);
    pn_imported_function_free(g0);
    CHECK(pn_exporter_call(e, 1, &i0, 0, NULL, NULL) == 0);
    CHECK(pn_exporter_call(e, 2, (pn_array *[]){i0, i1}, 0, NULL, NULL) == 0);
    CHECK(pn_exporter_call(e, 1, &v, 0, NULL, NULL) == 0);
    pn_exporter_close(e);
    CHECK(pn_exporter_call(e, 1, &v, 0, NULL, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "closed") != NULL);
    pn_clear_error();
    pn_exporter_free(e);

    pn_imported_function *g = pn_import_function(path);
    CHECK(g != NULL);
    if (g) {
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        pn_array *a = pn_scalar(5, PN_INT32), *b = pn_scalar(6, PN_INT32);
        CHECK(pn_imported_function_call(g, 1, &a, 0, NULL, NULL, &n, out) == 0 && n == 1);
        if (n == 1) CHECK(pn_item_int(out[0]) == 10);
        CHECK(pn_imported_function_call(g, 2, (pn_array *[]){a, b}, 0, NULL, NULL, &n, out) == 0);
        if (n == 1) CHECK(pn_item_int(out[0]) == 22);
        pn_array *w = test_random_array((int64_t[]){2}, 1, PN_FLOAT32, -1, 1);
        CHECK(pn_imported_function_call(g, 1, &w, 0, NULL, NULL, &n, out) == 0);
        if (n == 1) same("trace 3", out[0], pn_multiply(w, pn_weak_float(2)), 0);
        pn_array *bad = pn_scalar(5, PN_FLOAT32);
        CHECK(pn_imported_function_call(g, 1, &bad, 0, NULL, NULL, &n, out) == -1 && n == 0);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        CHECK(strstr(pn_last_error_message(), " 3. 1 positional") != NULL);
        CHECK(strstr(pn_last_error_message(), "1: () float32") != NULL);
        pn_clear_error();
        pn_imported_function_free(g);
    }
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(export_gradients)
{
    pn_scope_push();
    pn_closure *loss = pn_closure_new(fn_loss, NULL, NULL);
    pn_closure *grad = pn_grad(loss, (int[]){0, 1}, 2);
    pn_array *w = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *x = test_random_array((int64_t[]){5, 4}, 2, PN_FLOAT32, -1, 1);
    pn_array *w2 = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *x2 = test_random_array((int64_t[]){5, 4}, 2, PN_FLOAT32, -1, 1);
    /* a grad function exports like any other */
    check_round_trip("grad.pfn", grad, 2, (pn_array *[]){w, x}, (pn_array *[]){w2, x2}, 1e-6);
    /* and an imported function differentiates like the original */
    CHECK(pn_export_function(test_tmp_path("loss.pfn"), loss, 2, (pn_array *[]){w, x}, 0, NULL, NULL,
                             false, NULL) == 0);
    pn_imported_function *g = pn_import_function(test_tmp_path("loss.pfn"));
    CHECK(g != NULL);
    if (g) {
        pn_closure *h = pn_imported_function_closure(g);
        pn_imported_function_free(g); /* the closure keeps it alive */
        pn_closure *hg = pn_grad(h, (int[]){0, 1}, 2);
        pn_array *want[PN_MAX_OUTPUTS], *got[PN_MAX_OUTPUTS];
        int nw = 0, ng = 0;
        CHECK(pn_closure_call(grad, 2, (pn_array *[]){w2, x2}, &nw, want) == 0);
        CHECK(pn_closure_call(hg, 2, (pn_array *[]){w2, x2}, &ng, got) == 0);
        CHECK(nw == 2 && ng == 2);
        for (int j = 0; j < 2 && j < ng && j < nw; j++) same("grad through import", got[j], want[j], 1e-6);
        pn_closure_release(hg);
        pn_closure_release(h);
    }
    pn_closure_release(grad);
    pn_closure_release(loss);
    pn_scope_pop();
}

TEST(export_vmap_of_imported)
{
    pn_scope_push();
    pn_closure *loss = pn_closure_new(fn_loss, NULL, NULL);
    pn_array *w = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *x = test_random_array((int64_t[]){5, 4}, 2, PN_FLOAT32, -1, 1);
    CHECK(pn_export_function(test_tmp_path("vloss.pfn"), loss, 2, (pn_array *[]){w, x}, 0, NULL, NULL,
                             false, NULL) == 0);
    pn_imported_function *g = pn_import_function(test_tmp_path("vloss.pfn"));
    CHECK(g != NULL);
    if (g) {
        pn_closure *h = pn_imported_function_closure(g);
        pn_closure *vh = pn_vmap(h, (int[]){-1, 0}, 2, NULL, 1);
        pn_closure *vl = pn_vmap(loss, (int[]){-1, 0}, 2, NULL, 1);
        pn_array *xb = test_random_array((int64_t[]){6, 5, 4}, 3, PN_FLOAT32, -1, 1);
        pn_array *want[PN_MAX_OUTPUTS], *got[PN_MAX_OUTPUTS];
        int nw = 0, ng = 0;
        CHECK(pn_closure_call(vl, 2, (pn_array *[]){w, xb}, &nw, want) == 0);
        CHECK_MSG(pn_closure_call(vh, 2, (pn_array *[]){w, xb}, &ng, got) == 0, "%s",
                  pn_last_error_message());
        if (nw == 1 && ng == 1) same("vmap of imported", got[0], want[0], 1e-6);
        pn_clear_error();
        pn_closure_release(vl);
        pn_closure_release(vh);
        pn_closure_release(h);
        pn_imported_function_free(g);
    }
    pn_closure_release(loss);
    pn_scope_pop();
}

/* ───────────────────────────── shapeless ───────────────────────────── */

/* x (n,k), y (k,m): exp(x) @ y + the column means of y, and the row sums of x's square. */
static int fn_shapeless(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0], *y = in[1];
    out[0] = pn_add(pn_matmul(pn_exp(x), y), pn_mean(y, (int[]){0}, 1, false));
    out[1] = pn_sum(pn_square(x), (int[]){1}, 1, true);
    *nout = 2;
    return out[0] && out[1] ? 0 : -1;
}

/* x[1:] along the first axis: a Slice, which has no shape rule. */
static int fn_slice_rows(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    pn_array *x = in[0];
    int64_t start[2] = {1, 0}, stop[2] = {x->shape[0], x->shape[1]};
    out[0] = pn_slice(x, start, stop, NULL, 2);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(export_shapeless)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(fn_shapeless, NULL, NULL);
    const char *path = test_tmp_path("shapeless.pfn");
    pn_array *ex[2] = {test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT32, -1, 1),
                       test_random_array((int64_t[]){4, 5}, 2, PN_FLOAT32, -1, 1)};
    CHECK_MSG(pn_export_function(path, f, 2, ex, 0, NULL, NULL, true, NULL) == 0, "%s",
              pn_last_error_message());
    pn_imported_function *g = pn_import_function(path);
    CHECK_MSG(g != NULL, "%s", pn_last_error_message());
    /* other sizes of every axis: the results equal calling f directly */
    const int64_t sizes[3][3] = {{3, 4, 5}, {7, 4, 2}, {2, 9, 6}};
    for (int c = 0; g && c < 3; c++) {
        pn_array *in[2] = {test_random_array((int64_t[]){sizes[c][0], sizes[c][1]}, 2, PN_FLOAT32, -1, 1),
                           test_random_array((int64_t[]){sizes[c][1], sizes[c][2]}, 2, PN_FLOAT32, -1, 1)};
        pn_array *want[PN_MAX_OUTPUTS], *got[PN_MAX_OUTPUTS];
        int nw = 0, ng = 0;
        CHECK(pn_closure_call(f, 2, in, &nw, want) == 0);
        CHECK_MSG(pn_imported_function_call(g, 2, in, 0, NULL, NULL, &ng, got) == 0, "%s",
                  pn_last_error_message());
        CHECK(nw == 2 && ng == 2);
        for (int j = 0; j < 2 && ng == 2; j++) same("shapeless output", got[j], want[j], 1e-6);
    }
    if (g) {
        /* a rank or dtype other than traced matches no trace; mismatched sizes fail in the rules */
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        pn_array *r3[2] = {test_random_array((int64_t[]){2, 3, 4}, 3, PN_FLOAT32, -1, 1), ex[1]};
        CHECK(pn_imported_function_call(g, 2, r3, 0, NULL, NULL, &n, out) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && strstr(pn_last_error_message(), "(4,5) float32"));
        pn_clear_error();
        pn_array *f64[2] = {pn_astype(ex[0], PN_FLOAT64), ex[1]};
        CHECK(pn_imported_function_call(g, 2, f64, 0, NULL, NULL, &n, out) == -1);
        pn_clear_error();
        pn_array *bad[2] = {test_random_array((int64_t[]){3, 6}, 2, PN_FLOAT32, -1, 1), ex[1]};
        CHECK(pn_imported_function_call(g, 2, bad, 0, NULL, NULL, &n, out) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        pn_imported_function_free(g);
    }
    /* a primitive without a shape rule is refused when exporting, and no file is left */
    pn_closure *sl = pn_closure_new(fn_slice_rows, NULL, NULL);
    const char *path2 = test_tmp_path("shapeless_slice.pfn");
    unlink(path2);
    CHECK(pn_export_function(path2, sl, 1, ex, 0, NULL, NULL, true, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && strstr(pn_last_error_message(), "Slice"));
    pn_clear_error();
    CHECK(access(path2, F_OK) != 0);
    /* the same function exports with shapes fixed */
    CHECK(pn_export_function(path2, sl, 1, ex, 0, NULL, NULL, false, NULL) == 0);
    pn_closure_release(sl);
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── refusals ───────────────────────────── */

static int custom_vjp_rule(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = in[1];
    *nout = 1;
    return 0;
}

TEST(export_refusals)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
    const char *path = test_tmp_path("refused.pfn");
    pn_closure *sq = pn_closure_new(fn_square, NULL, NULL);
    pn_closure *ev = pn_closure_new(fn_evals, NULL, NULL);
    CHECK(pn_export_function(path, ev, 1, &x, 0, NULL, NULL, false, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "eval") != NULL);
    pn_clear_error();
    pn_closure *rule = pn_closure_new(custom_vjp_rule, NULL, NULL);
    pn_closure *cv = pn_custom_vjp(sq, rule);
    CHECK(pn_export_function(path, cv, 1, &x, 0, NULL, NULL, false, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "Cannot export the primitive") != NULL);
    pn_clear_error();
    pn_closure *ck = pn_checkpoint(sq);
    CHECK(pn_export_function(path, ck, 1, &x, 0, NULL, NULL, false, NULL) == -1);
    pn_clear_error();
    CHECK(pn_export_function("/nonexistent-dir/x.pfn", sq, 1, &x, 0, NULL, NULL, false, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_IO);
    pn_clear_error();
    CHECK(pn_export_function(path, NULL, 1, &x, 0, NULL, NULL, false, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_export_function(path, sq, 1, (pn_array *[]){NULL}, 0, NULL, NULL, false, NULL) == -1);
    pn_clear_error();
    CHECK(pn_import_function(test_tmp_path("missing.pfn")) == NULL && pn_last_error() == PN_ERR_IO);
    pn_clear_error();
    pn_closure_release(ck);
    pn_closure_release(cv);
    pn_closure_release(rule);
    pn_closure_release(ev);
    pn_closure_release(sq);
    pn_scope_pop();
}

TEST(export_registry)
{
    /* every registered primitive has a distinct name and is found by it */
    for (int i = 0; i < pnR_count(); i++) {
        const pnC_primitive *p = pnR_at(i);
        CHECK_MSG(pnR_find(p->name) == p, "%s is not found by name (duplicate?)", p->name);
    }
    CHECK(pnR_find("NoSuchPrimitive") == NULL);
    CHECK(pnR_count() > 100);
}

/* ───────────────────────────── hostile files ───────────────────────────── */

/* A file built field by field, as the format says (export.c), to lie in one place at a time. */
typedef struct {
    unsigned char b[4096];
    size_t n;
} fb;

static void u32(fb *f, uint32_t v)
{
    for (int i = 0; i < 4; i++) f->b[f->n++] = (unsigned char)(v >> (8 * i));
}
static void u64(fb *f, uint64_t v)
{
    for (int i = 0; i < 8; i++) f->b[f->n++] = (unsigned char)(v >> (8 * i));
}
static void bytes(fb *f, const void *p, size_t n)
{
    memcpy(f->b + f->n, p, n);
    f->n += n;
}
static void str(fb *f, const char *s)
{
    u32(f, (uint32_t)strlen(s));
    bytes(f, s, strlen(s));
}
static void seal(fb *f)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < f->n; i++) h = (h ^ f->b[i]) * 0x100000001b3ULL;
    u64(f, h);
}

/* What to break in the crafted file. */
enum {
    OK, BAD_MAGIC, BAD_VERSION, BAD_CHECKSUM, UNKNOWN_PRIM, INPUT_OOR, FORWARD_REF, CONST_OOR,
    BAD_KIND, PARAMS_SIZE, INPUT_COUNT, CONST_BYTES, BAD_DTYPE, BAD_RANK, BAD_EXTENT, RESULT_OOR,
    TOO_MANY_RESULTS, KW_NUL, TRAILING, HUGE_COUNT, NUM_CASES
};

/* (x (3) f32, y (3) f32) -> x + y + c, with c a constant (3) f32 = 1, 2, 3. */
static void craft(fb *f, int bad)
{
    f->n = 0;
    bytes(f, bad == BAD_MAGIC ? "PONTEFX" : "PONTEFN", 8);
    u32(f, bad == BAD_VERSION ? 2 : 1);
    u32(f, 0);
    str(f, "meta");
    u32(f, 1); /* one constant */
    u32(f, bad == BAD_DTYPE ? 99 : PN_FLOAT32);
    u32(f, 1);
    u64(f, 3);
    u64(f, bad == CONST_BYTES ? 8 : 12);
    float c[3] = {1, 2, 3};
    bytes(f, c, bad == CONST_BYTES ? 8 : 12);
    u32(f, 1); /* one trace */
    u32(f, 1), u32(f, 1);
    str(f, "y");
    if (bad == KW_NUL) f->b[f->n - 1] = 0; /* a NUL in a name */
    for (int i = 0; i < 2; i++) {
        u32(f, PN_FLOAT32);
        u32(f, bad == BAD_RANK && i == 1 ? 65 : 1);
        u64(f, bad == BAD_EXTENT && i == 1 ? UINT64_MAX : 3);
    }
    u32(f, bad == HUGE_COUNT ? UINT32_MAX : 2); /* nodes */
    pnK_ew_params p = {.op = PNK_B_ADD};
    for (int k = 0; k < 2; k++) {
        str(f, bad == UNKNOWN_PRIM && k == 1 ? "Frobnicate" : "Add");
        u32(f, bad == PARAMS_SIZE && k == 0 ? (uint32_t)sizeof p - 1 : (uint32_t)sizeof p);
        bytes(f, &p, bad == PARAMS_SIZE && k == 0 ? sizeof p - 1 : sizeof p);
        u32(f, bad == INPUT_COUNT && k == 0 ? 1 : 2);
        if (k == 0) {
            u32(f, 0), u32(f, bad == INPUT_OOR ? 2 : 0);             /* input 0 */
            if (bad != INPUT_COUNT) {
                u32(f, bad == BAD_KIND ? 7 : bad == FORWARD_REF ? 2 : 0);
                u32(f, bad == FORWARD_REF ? 0 : 1);                   /* input 1 */
            }
        } else {
            u32(f, 2), u32(f, 0);                                     /* node 0's output */
            u32(f, 1), u32(f, bad == CONST_OOR ? 1 : 0);              /* the constant */
        }
        u32(f, 1);
        u32(f, PN_FLOAT32), u32(f, 1), u64(f, 3);
    }
    u32(f, bad == TOO_MANY_RESULTS ? 65 : 1);
    for (int j = 0; j < (bad == TOO_MANY_RESULTS ? 65 : 1); j++) u32(f, 2), u32(f, bad == RESULT_OOR ? 2 : 1);
    if (bad == TRAILING) u32(f, 0);
    seal(f);
    if (bad == BAD_CHECKSUM) f->b[f->n - 20] ^= 1;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n) test_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (fp) fclose(fp);
}

TEST(export_hostile_files)
{
    pn_scope_push();
    const char *path = test_tmp_path("crafted.pfn");
    static fb f;
    craft(&f, OK);
    write_bytes(path, f.b, f.n);
    pn_imported_function *g = pn_import_function(path);
    CHECK_MSG(g != NULL, "the crafted file: %s", pn_last_error_message());
    if (g) {
        pn_array *x = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
        pn_array *y = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        CHECK(pn_imported_function_call(g, 1, &x, 1, (const char *[]){"y"}, &y, &n, out) == 0 && n == 1);
        double *xv = test_to_f64(x), *yv = test_to_f64(y), ref[3];
        for (int i = 0; i < 3 && xv && yv; i++) ref[i] = (float)((float)(xv[i] + yv[i]) + (i + 1));
        if (n == 1) test_check_values("crafted", out[0], (int64_t[]){3}, 1, PN_FLOAT32, ref, 1e-7, 0);
        free(xv), free(yv);
        CHECK(strcmp(pn_imported_function_metadata(g), "meta") == 0);
        pn_imported_function_free(g);
    }
    const char *expect[NUM_CASES] = {
        [BAD_MAGIC] = "magic", [BAD_VERSION] = "version", [BAD_CHECKSUM] = "checksum",
        [UNKNOWN_PRIM] = "Frobnicate", [INPUT_OOR] = "out of range", [FORWARD_REF] = "out of range",
        [CONST_OOR] = "out of range", [BAD_KIND] = "unknown kind", [PARAMS_SIZE] = "bytes of params",
        [INPUT_COUNT] = "inputs", [CONST_BYTES] = "bytes of data", [BAD_DTYPE] = "dtype",
        [BAD_RANK] = "rank", [BAD_EXTENT] = "extent", [RESULT_OOR] = "out of range",
        [TOO_MANY_RESULTS] = "at most", [KW_NUL] = "NUL", [TRAILING] = "unexpected bytes",
        [HUGE_COUNT] = "larger than the rest"};
    for (int bad = OK + 1; bad < NUM_CASES; bad++) {
        craft(&f, bad);
        write_bytes(path, f.b, f.n);
        pn_clear_error();
        pn_imported_function *h = pn_import_function(path);
        CHECK_MSG(h == NULL, "case %d imported", bad);
        pn_imported_function_free(h);
        CHECK_MSG(pn_last_error() == PN_ERR_IO, "case %d: error %d", bad, (int)pn_last_error());
        CHECK_MSG(strstr(pn_last_error_message(), expect[bad]) != NULL, "case %d: \"%s\" lacks \"%s\"",
                  bad, pn_last_error_message(), expect[bad]);
    }
    pn_clear_error();
    /* every truncation of the valid file, and random byte flips, fail cleanly */
    craft(&f, OK);
    static fb g2;
    for (size_t len = 0; len < f.n; len++) {
        write_bytes(path, f.b, len);
        pn_imported_function *h = pn_import_function(path);
        CHECK_MSG(h == NULL && pn_last_error() == PN_ERR_IO, "truncated at %zu", len);
        pn_imported_function_free(h);
        pn_clear_error();
    }
    for (int rep = 0; rep < 200; rep++) {
        g2 = f;
        g2.b[test_rand_u64() % g2.n] ^= (unsigned char)(1 + test_rand_u64() % 255);
        write_bytes(path, g2.b, g2.n);
        pn_imported_function *h = pn_import_function(path);
        CHECK_MSG(h == NULL && pn_last_error() == PN_ERR_IO, "flip %d imported", rep);
        pn_imported_function_free(h);
        pn_clear_error();
    }
    /* a file exported by Ponte, truncated everywhere */
    pn_closure *sq = pn_closure_new(fn_square, NULL, NULL);
    pn_array *x = test_random_array((int64_t[]){2, 2}, 2, PN_FLOAT32, -1, 1);
    CHECK(pn_export_function(path, sq, 1, &x, 1, (const char *[]){"k"}, &x, false, "m") == 0);
    size_t size = 0;
    FILE *fp = fopen(path, "rb");
    static unsigned char data[8192];
    if (fp) size = fread(data, 1, sizeof data, fp), fclose(fp);
    CHECK(size > 0 && size < sizeof data);
    for (size_t len = 0; len < size; len++) {
        write_bytes(path, data, len);
        pn_imported_function *h = pn_import_function(path);
        CHECK_MSG(h == NULL && pn_last_error() == PN_ERR_IO, "exported file truncated at %zu", len);
        pn_imported_function_free(h);
        pn_clear_error();
    }
    pn_closure_release(sq);
    pn_scope_pop();
}
