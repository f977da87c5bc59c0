/* test_fused_norm.c — the fused LayerNorm / RMSNorm primitives (src/ops/norm.c): values
 * against float64 math written here for every float dtype, row lengths and parameter
 * combinations, strided inputs; gradients and a second derivative against finite
 * differences; vmap (mapped input, mapped weight, per-example gradients); MLX's argument
 * checks and result dtypes. */
#include "core/core.h"
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { LN, RMS };

/* y = norm(x) * w + b per row of n, in float64 (w, b NULL: none). */
static void ref_norm(int kind, const double *x, const double *w, const double *b, double *y,
                     int64_t rows, int64_t n, double eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *p = x + r * n;
        double m = 0, v = 0;
        if (kind == LN)
            for (int64_t i = 0; i < n; i++) m += p[i] / (double)n;
        for (int64_t i = 0; i < n; i++) v += (p[i] - m) * (p[i] - m) / (double)n;
        double s = 1 / sqrt(v + eps);
        for (int64_t i = 0; i < n; i++)
            y[r * n + i] = (p[i] - m) * s * (w ? w[i] : 1) + (b ? b[i] : 0);
    }
}

/* A random weight in [0.5, 1.5) and bias in [-1, 1) of n elements. */
static void random_affine(int64_t n, pn_dtype t, pn_array **w, pn_array **b)
{
    *w = test_random_array(&n, 1, t, 0.5, 1.5);
    *b = test_random_array(&n, 1, t, -1, 1);
}

/* x (rows, n) in [-2, 3), a weight, a bias, and a cotangent of x's shape in [-1, 1) into v. */
static void random_rows(int64_t rows, int64_t n, pn_dtype t, pn_array **v)
{
    v[0] = test_random_array((int64_t[]){rows, n}, 2, t, -2, 3);
    random_affine(n, t, &v[1], &v[2]);
    v[3] = test_random_array((int64_t[]){rows, n}, 2, t, -1, 1);
}

static pn_array *norm_of(int kind, pn_array *x, pn_array *w, pn_array *b, double eps)
{
    return kind == LN ? pn_nn_layer_norm(x, w, b, eps) : pn_nn_rms_norm(x, w, eps);
}

/* Checks norm_of(kind, x, w, b) against ref_norm on x's (dtype-rounded) values. */
static void check_norm(const char *what, int kind, pn_array *x, pn_array *w, pn_array *b,
                       pn_dtype out_dt, double tol)
{
    pn_scope_push();
    int64_t n = pn_dim(x, -1), rows = n ? pn_size(x) / n : 0;
    double *xv = test_to_f64(x), *wv = w ? test_to_f64(w) : NULL, *bv = b ? test_to_f64(b) : NULL;
    double *ref = malloc(sizeof(double) * (size_t)(pn_size(x) + 1));
    ref_norm(kind, xv, wv, bv, ref, rows, n, 1e-5);
    pn_array *y = norm_of(kind, x, w, b, 1e-5);
    CHECK_MSG(test_check_values(what, y, pn_shape(x), pn_ndim(x), out_dt, ref, tol, tol),
              "%s: %s", what, kind == LN ? "layer_norm" : "rms_norm");
    free(xv), free(wv), free(bv), free(ref);
    pn_scope_pop();
}

TEST(values_every_dtype_length_and_parameters)
{
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    /* 1, 3, 257: element by element; 64, 1000 (a warp per row) and 4096, 8200 (a block per
     * row): 16-byte runs, the GPU holding 2, 4 or 8 runs a lane in registers or (f32 and f64
     * 8200, f64 1000) reading the row again in each pass; 1000's last runs are partial */
    const int64_t lens[] = {1, 3, 64, 257, 1000, 4096, 8200};
    for (int d = 0; d < 4; d++)
        for (int l = 0; l < 7; l++) {
            pn_scope_push();
            int64_t n = lens[l];
            int64_t shape[3] = {2, n < 4096 ? 5 : 2, n};
            pn_dtype t = dts[d];
            pn_array *x = test_random_array(shape, 3, t, -2, 3);
            pn_array *w, *b;
            random_affine(n, t, &w, &b);
            double tol = t == PN_FLOAT64 ? 1e-12 : 4 * test_tol(t);
            for (int kind = LN; kind <= RMS; kind++) {
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld %s", pn_dtype_name(t), (long long)n,
                         kind == LN ? "LN" : "RMS");
                check_norm(what, kind, x, NULL, NULL, t, tol);
                check_norm(what, kind, x, w, NULL, t, tol);
                if (kind == LN) {
                    check_norm(what, kind, x, w, b, t, tol);
                    check_norm(what, kind, x, NULL, b, t, tol);
                }
            }
            pn_scope_pop();
        }
}

TEST(values_one_dim_strided_and_empty)
{
    pn_scope_push();
    int64_t n = 37;
    pn_array *w, *b;
    random_affine(n, PN_FLOAT32, &w, &b);
    check_norm("1-d", LN, test_random_array(&n, 1, PN_FLOAT32, -2, 2), w, b, PN_FLOAT32, 1e-5);
    /* a transposed x: rows of n are strided */
    pn_array *xt = pn_transpose(test_random_array((int64_t[]){n, 6}, 2, PN_FLOAT32, -2, 2), NULL, 0);
    check_norm("transposed", LN, xt, w, b, PN_FLOAT32, 1e-5);
    check_norm("transposed", RMS, xt, w, NULL, PN_FLOAT32, 1e-5);
    /* every other row and a strided weight */
    pn_array *big = test_random_array((int64_t[]){8, 2 * n}, 2, PN_FLOAT32, -2, 2);
    pn_array *xs = pn_slice(big, (int64_t[]){0, 0}, (int64_t[]){8, 2 * n}, (int64_t[]){2, 2}, 2);
    pn_array *ws = pn_slice(test_random_array((int64_t[]){2 * n}, 1, PN_FLOAT32, 0.5, 1.5),
                            (int64_t[]){1}, (int64_t[]){2 * n}, (int64_t[]){2}, 1);
    check_norm("strided", LN, xs, ws, b, PN_FLOAT32, 1e-5);
    /* empty: no rows, or rows of nothing */
    pn_array *e = pn_nn_layer_norm(pn_zeros((int64_t[]){0, n}, 2, PN_FLOAT32), w, b, 1e-5);
    CHECK_OK(e);
    CHECK(pn_eval(&e, 1) == 0 && pn_size(e) == 0 && pn_dim(e, 1) == n);
    pn_array *e2 = pn_nn_rms_norm(pn_zeros((int64_t[]){3, 0}, 2, PN_FLOAT32), NULL, 1e-5);
    CHECK_OK(e2);
    CHECK(pn_eval(&e2, 1) == 0 && pn_size(e2) == 0);
    pn_scope_pop();
}

TEST(result_dtypes_as_mlx)
{
    pn_scope_push();
    int64_t n = 8;
    pn_array *x16 = test_random_array((int64_t[]){4, n}, 2, PN_FLOAT16, -2, 2);
    pn_array *w32 = test_random_array(&n, 1, PN_FLOAT32, 0.5, 1.5);
    pn_array *bbf = test_random_array(&n, 1, PN_BFLOAT16, -1, 1);
    pn_array *wi = pn_astype(test_random_array(&n, 1, PN_INT32, 1, 3), PN_INT32);
    CHECK(pn_array_dtype(pn_nn_layer_norm(x16, w32, NULL, 1e-5)) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_nn_layer_norm(x16, NULL, bbf, 1e-5)) == PN_FLOAT16); /* bias alone: x's */
    CHECK(pn_array_dtype(pn_nn_layer_norm(x16, pn_astype(w32, PN_FLOAT16), w32, 1e-5)) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_nn_rms_norm(x16, bbf, 1e-5)) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_nn_rms_norm(pn_astype(x16, PN_FLOAT32), wi, 1e-5)) == PN_FLOAT32);
    /* an int x with a float weight normalizes in the weight's dtype */
    pn_array *xi = test_random_array((int64_t[]){3, n}, 2, PN_INT32, -5, 5);
    check_norm("int x, f32 weight", LN, xi, w32, NULL, PN_FLOAT32, 1e-5);
    /* a mixed-dtype result matches the math on the promoted values */
    check_norm("f16 x, f32 weight", LN, x16, w32, NULL, PN_FLOAT32, 1e-5);
    pn_scope_pop();
}

TEST(errors_as_mlx)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){4, 8}, 2, PN_FLOAT32, -1, 1);
    pn_array *w7 = test_random_array((int64_t[]){7}, 1, PN_FLOAT32, 0, 1);
    pn_array *w2d = test_random_array((int64_t[]){1, 8}, 2, PN_FLOAT32, 0, 1);
    pn_array *w8 = test_random_array((int64_t[]){8}, 1, PN_FLOAT32, 0, 1);
    CHECK_ERR(pn_nn_layer_norm(x, w7, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(x, w2d, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(x, w8, w7, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(x, NULL, w2d, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(x, pn_weak_float(2), NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rms_norm(x, w7, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rms_norm(x, w2d, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(pn_weak_float(1), NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rms_norm(pn_weak_float(1), NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    pn_array *xi = test_random_array((int64_t[]){4, 8}, 2, PN_INT32, -3, 3);
    CHECK_ERR(pn_nn_layer_norm(xi, NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_rms_norm(xi, pn_astype(w8, PN_INT32), 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(pn_astype(x, PN_BOOL), NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_layer_norm(pn_astype(x, PN_COMPLEX64), NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    /* a NULL x (a failed op before) keeps its error */
    CHECK_ERR(pn_nn_layer_norm(NULL, w8, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ── derivatives ── */

typedef struct {
    int kind;
    bool w, b;
} norm_ctx;

/* norm of in[0] with in[1] as weight and the next input as bias, as ctx says. */
static pn_array *norm_op(void *ctx, pn_array *const *in)
{
    const norm_ctx *c = ctx;
    return norm_of(c->kind, in[0], c->w ? in[1] : NULL, c->b ? in[1 + c->w] : NULL, 1e-5);
}

static int norm_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = norm_op(ctx, in);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(gradients_match_finite_differences)
{
    pn_scope_push();
    int64_t n = 7;
    pn_array *x = test_random_array((int64_t[]){2, 3, n}, 3, PN_FLOAT64, -2, 3);
    pn_array *w, *b;
    random_affine(n, PN_FLOAT64, &w, &b);
    const norm_ctx cases[] = {{LN, true, true}, {LN, true, false}, {LN, false, true},
                              {LN, false, false}, {RMS, true, false}, {RMS, false, false}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        norm_ctx c = cases[k];
        pn_array *in[3] = {x, c.w ? w : b, b};
        char name[64];
        snprintf(name, sizeof name, "%s w=%d b=%d", c.kind == LN ? "layer_norm" : "rms_norm",
                 c.w, c.b);
        test_gradcheck(name, norm_op, &c, 1 + c.w + c.b, in, 1e-6);
    }
    /* a transposed x */
    norm_ctx c = {LN, true, true};
    pn_array *xt = pn_transpose(test_random_array((int64_t[]){n, 4}, 2, PN_FLOAT64, -2, 3), NULL, 0);
    test_gradcheck("layer_norm transposed x", norm_op, &c, 3, (pn_array *[]){xt, w, b}, 1e-6);
    pn_scope_pop();
}

/* The gradients of <norm(x, w, b), cot> (in: x, w, b, cot) flattened and concatenated, for
 * second derivatives: the derivatives of the backward node. */
static pn_array *grads_op(void *ctx, pn_array *const *in)
{
    const norm_ctx *c = ctx;
    pn_closure *f = pn_closure_new(norm_fn, (void *)ctx, NULL);
    pn_array *out[1], *g[3] = {NULL};
    int nout = 0, np = 1 + c->w + c->b;
    int rc = pn_vjp(f, np, in, 1, &in[np], &nout, out, g);
    pn_closure_release(f);
    if (rc) return NULL;
    pn_array *flat[3];
    for (int i = 0; i < np; i++) flat[i] = pn_flatten(g[i], 0, -1);
    return pn_concatenate(flat, np, 0);
}

/* dx, dw, db of <norm(x, w, b), g> per row of n, in float64: xhat = (x - mean) rstd,
 * dx = rstd (g w - mean(g w) - xhat mean(g w xhat)) (no mean(g w) for RMS), dw = sum of g xhat,
 * db = sum of g over the rows (w NULL: ones). */
static void ref_norm_vjp(int kind, const double *x, const double *w, const double *g,
                         double *dx, double *dw, double *db, int64_t rows, int64_t n, double eps)
{
    for (int64_t i = 0; i < n; i++) dw[i] = db[i] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *p = x + r * n, *q = g + r * n;
        double m = 0, v = 0, c1 = 0, c2 = 0;
        if (kind == LN)
            for (int64_t i = 0; i < n; i++) m += p[i] / (double)n;
        for (int64_t i = 0; i < n; i++) v += (p[i] - m) * (p[i] - m) / (double)n;
        double s = 1 / sqrt(v + eps);
        for (int64_t i = 0; i < n; i++) {
            double gw = q[i] * (w ? w[i] : 1);
            c1 += kind == LN ? gw / (double)n : 0;
            c2 += gw * (p[i] - m) * s / (double)n;
        }
        for (int64_t i = 0; i < n; i++) {
            double xh = (p[i] - m) * s, gw = q[i] * (w ? w[i] : 1);
            dx[r * n + i] = s * (gw - c1 - xh * c2);
            dw[i] += q[i] * xh;
            db[i] += q[i];
        }
    }
}

/* The fused backward's values for every float dtype and the row lengths of the forward's
 * test (each of the GPU's paths: elements, 16-byte runs held in registers or read again),
 * against ref_norm_vjp on the dtype-rounded inputs. */
TEST(gradients_every_dtype_and_length)
{
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    const int64_t lens[] = {1, 3, 64, 257, 1000, 4096, 8200};
    const norm_ctx cases[] = {{LN, true, true}, {RMS, true, false}, {LN, false, false}};
    for (int d = 0; d < 4; d++)
        for (int l = 0; l < 7; l++)
            for (int c = 0; c < 3; c++) {
                pn_scope_push();
                pn_dtype t = dts[d];
                int64_t n = lens[l], rows = n < 4096 ? 10 : 4;
                pn_array *v[4];
                random_rows(rows, n, t, v);
                norm_ctx k = cases[c];
                int np = 1 + k.w + k.b;
                pn_array *in[3] = {v[0], v[1], v[2]}, *out[1], *grad[3] = {NULL};
                pn_closure *f = pn_closure_new(norm_fn, &k, NULL);
                int nout = 0;
                CHECK(pn_vjp(f, np, in, 1, &v[3], &nout, out, grad) == 0);
                pn_closure_release(f);
                double *xv = test_to_f64(v[0]), *wv = k.w ? test_to_f64(v[1]) : NULL;
                double *gv = test_to_f64(v[3]);
                double *dx = malloc(sizeof(double) * (size_t)(rows * n));
                double *dw = malloc(sizeof(double) * (size_t)n), *db = malloc(sizeof(double) * (size_t)n);
                ref_norm_vjp(k.kind, xv, wv, gv, dx, dw, db, rows, n, 1e-5);
                /* dx's terms cancel (it sums to zero over a LayerNorm row): an absolute
                 * tolerance at the scale of rstd g w; dw and db sum `rows` products */
                double tol = t == PN_FLOAT64 ? 1e-11 : 4 * test_tol(t);
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld %s%s%s dx", pn_dtype_name(t), (long long)n,
                         k.kind == LN ? "LN" : "RMS", k.w ? " w" : "", k.b ? " b" : "");
                test_check_values(what, grad[0], (int64_t[]){rows, n}, 2, t, dx, tol, 2 * tol);
                if (k.w) {
                    what[strlen(what) - 2] = 'w';
                    test_check_values(what, grad[1], &n, 1, t, dw, tol, tol * (double)rows);
                }
                if (k.b) {
                    what[strlen(what) - 2] = 'b';
                    test_check_values(what, grad[2], &n, 1, t, db, tol, tol * (double)rows);
                }
                free(xv), free(wv), free(gv), free(dx), free(dw), free(db);
                pn_scope_pop();
            }
}

TEST(second_derivatives_match_finite_differences)
{
    pn_scope_push();
    pn_array *v[4];
    random_rows(3, 5, PN_FLOAT64, v);
    pn_array *x = v[0], *w = v[1], *b = v[2], *cot = v[3];
    norm_ctx ln = {LN, true, true}, rms = {RMS, true, false}, bare = {LN, false, false};
    test_gradcheck("layer_norm grads", grads_op, &ln, 4, (pn_array *[]){x, w, b, cot}, 1e-5);
    test_gradcheck("rms_norm grads", grads_op, &rms, 3, (pn_array *[]){x, w, cot}, 1e-5);
    test_gradcheck("layer_norm grads, no params", grads_op, &bare, 2, (pn_array *[]){x, cot}, 1e-5);
    pn_scope_pop();
}

TEST(backward_is_deterministic)
{
    pn_scope_push();
    pn_array *v[4];
    random_rows(1024, 64, PN_FLOAT32, v);
    norm_ctx c = {LN, true, true};
    double *first = NULL;
    for (int rep = 0; rep < 3; rep++) {
        pn_array *g = grads_op(&c, v);
        double *v = test_to_f64(g);
        if (!first) first = v;
        else {
            CHECK(v && memcmp(first, v, sizeof(double) * (size_t)pn_size(g)) == 0);
            free(v);
        }
    }
    free(first);
    pn_scope_pop();
}

/* ── vmap ── */

static int call_norm(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    return norm_fn(ctx, nin, in, nout, out);
}

/* The gradients of sum(norm(x, w, b) * x) with respect to w and b (in: x, w, b), as two
 * outputs (Concatenate has no batching rule, and vmap would then map by a loop). */
static int grad_wb_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_closure *f = pn_closure_new(norm_fn, ctx, NULL);
    pn_array *o[1], *g[3] = {NULL};
    int no = 0, rc = pn_vjp(f, 3, in, 1, (pn_array *[]){in[0]}, &no, o, g);
    pn_closure_release(f);
    out[0] = g[1], out[1] = g[2];
    *nout = 2;
    return rc;
}

TEST(vmap_over_x_weight_and_gradients)
{
    pn_scope_push();
    int64_t n = 6, B = 3, R = 4;
    norm_ctx c = {LN, true, true};
    pn_closure *f = pn_closure_new(call_norm, &c, NULL);
    pn_array *x = test_random_array((int64_t[]){R, B, n}, 3, PN_FLOAT64, -2, 3);
    pn_array *w, *b;
    random_affine(n, PN_FLOAT64, &w, &b);
    /* x mapped along axis 1: the fused node over (B, R, n) */
    pn_closure *vf = pn_vmap(f, (int[]){1, -1, -1}, 3, NULL, 1);
    pn_array *o[1];
    int no = 0;
    CHECK(pn_closure_call(vf, 3, (pn_array *[]){x, w, b}, &no, o) == 0);
    check_norm("vmap x", LN, pn_moveaxis(x, 1, 0), w, b, PN_FLOAT64, 1e-12);
    double *xv = test_to_f64(pn_moveaxis(x, 1, 0)), *wv = test_to_f64(w), *bv = test_to_f64(b);
    double *ref = malloc(sizeof(double) * (size_t)(B * R * n));
    ref_norm(LN, xv, wv, bv, ref, B * R, n, 1e-5);
    test_check_values("vmap x", o[0], (int64_t[]){B, R, n}, 3, PN_FLOAT64, ref, 1e-12, 1e-12);
    /* the weight mapped: y[k] = norm(x) * w[k] + b */
    pn_array *x2 = pn_moveaxis(x, 1, 0);
    pn_array *x0 = pn_squeeze(pn_slice(x2, (int64_t[]){0, 0, 0}, (int64_t[]){1, R, n}, NULL, 3), (int[]){0}, 1);
    pn_array *wb = test_random_array((int64_t[]){B, n}, 2, PN_FLOAT64, 0.5, 1.5);
    pn_closure *vw = pn_vmap(f, (int[]){-1, 0, -1}, 3, NULL, 1);
    CHECK(pn_closure_call(vw, 3, (pn_array *[]){x0, wb, b}, &no, o) == 0);
    double *x0v = test_to_f64(x0), *wbv = test_to_f64(wb), *one = malloc(sizeof(double) * (size_t)(R * n));
    for (int64_t k = 0; k < B; k++) {
        ref_norm(LN, x0v, wbv + k * n, bv, one, R, n, 1e-5);
        memcpy(ref + k * R * n, one, sizeof(double) * (size_t)(R * n));
    }
    test_check_values("vmap weight", o[0], (int64_t[]){B, R, n}, 3, PN_FLOAT64, ref, 1e-12, 1e-12);
    /* per-example gradients: vmap of the backward node (its batching rule) over x, against
     * one fused backward per item */
    pn_closure *gw = pn_closure_new(grad_wb_fn, &c, NULL);
    pn_closure *vg = pn_vmap(gw, (int[]){0, -1, -1}, 3, NULL, 0);
    pn_array *og[2];
    CHECK(pn_closure_call(vg, 3, (pn_array *[]){x2, w, b}, &no, og) == 0 && no == 2);
    double *got = malloc(sizeof(double) * (size_t)(2 * B * n)), *want = malloc(sizeof(double) * (size_t)(2 * B * n));
    for (int j = 0; j < 2; j++) {
        double *v = test_to_f64(og[j]);
        CHECK(pn_ndim(og[j]) == 2 && pn_dim(og[j], 0) == B && pn_dim(og[j], 1) == n);
        if (v) memcpy(got + j * B * n, v, sizeof(double) * (size_t)(B * n));
        free(v);
    }
    for (int64_t k = 0; k < B; k++) {
        pn_array *xk = pn_squeeze(pn_slice(x2, (int64_t[]){k, 0, 0}, (int64_t[]){k + 1, R, n}, NULL, 3), (int[]){0}, 1);
        pn_array *gk[2];
        CHECK(pn_closure_call(gw, 3, (pn_array *[]){xk, w, b}, &no, gk) == 0);
        for (int j = 0; j < 2; j++) {
            double *v = test_to_f64(gk[j]);
            if (v) memcpy(want + j * B * n + k * n, v, sizeof(double) * (size_t)n);
            free(v);
        }
    }
    for (int64_t i = 0; i < 2 * B * n; i++)
        CHECK_MSG(fabs(got[i] - want[i]) <= 1e-10 * (1 + fabs(want[i])),
                  "vmap grad element %lld: %g vs %g", (long long)i, got[i], want[i]);
    free(got), free(want), free(xv), free(wv), free(bv), free(ref), free(x0v), free(wbv), free(one);
    pn_closure_release(f), pn_closure_release(vf), pn_closure_release(vw);
    pn_closure_release(gw), pn_closure_release(vg);
    pn_scope_pop();
}


/* ── compile ── */

/* y = layer_norm(x, w, b) and the vjp of y with cotangent x (in: x, w, b; out: y, dx, dw,
 * db), one forward and one backward node. */
static int norm_and_grads_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_closure *f = pn_closure_new(norm_fn, ctx, NULL);
    int no = 0, rc = pn_vjp(f, 3, in, 1, (pn_array *[]){in[0]}, &no, out, out + 1);
    pn_closure_release(f);
    *nout = 4;
    return rc;
}

TEST(compile_shapeless_over_rows)
{
    pn_scope_push();
    norm_ctx c = {LN, true, true};
    pn_closure *f = pn_closure_new(norm_and_grads_fn, &c, NULL);
    pn_closure *cf = pn_compile(f, true);
    const int64_t rows[] = {3, 5, 1, 8};
    for (int k = 0; k < 4; k++) {
        pn_array *v[4], *a[PN_MAX_OUTPUTS], *r[PN_MAX_OUTPUTS];
        random_rows(rows[k], 6, PN_FLOAT64, v);
        int na = 0, nr = 0;
        CHECK_MSG(pn_closure_call(cf, 3, v, &na, a) == 0 && na == 4, "%s", pn_last_error_message());
        CHECK(pn_closure_call(f, 3, v, &nr, r) == 0 && nr == 4);
        for (int j = 0; j < na && j < nr; j++) {
            double *want = test_to_f64(r[j]);
            char what[64];
            snprintf(what, sizeof what, "shapeless output %d at %lld rows", j, (long long)rows[k]);
            test_check_values(what, a[j], pn_shape(r[j]), pn_ndim(r[j]), PN_FLOAT64, want, 1e-12, 1e-12);
            free(want);
        }
    }
    pn_closure_release(cf), pn_closure_release(f);
    pn_scope_pop();
}
