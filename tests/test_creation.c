/* test_creation.c — creation ops (zeros, ones, full and the _like forms, arange, linspace,
 * eye, identity, tri, tril, triu) and astype/copy, against references computed here in
 * float64; every dtype, 0-d and empty shapes, strided inputs, errors and derivatives. */
#include "harness.h"

#include <string.h>

#include "core/core.h"

static const pn_dtype all_dtypes[] = {PN_BOOL,    PN_UINT8,   PN_UINT16,  PN_UINT32, PN_UINT64,
                                      PN_INT8,    PN_INT16,   PN_INT32,   PN_INT64,  PN_FLOAT16,
                                      PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16, PN_COMPLEX64};
#define NALL ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

/* value as stored in dtype and read back (the reference of a cast). */
static double cast_ref(double v, pn_dtype t)
{
    unsigned char buf[16];
    pnC_store_f64(buf, t, v);
    return pnC_load_f64(buf, t);
}

static double *filled(int64_t n, double v)
{
    double *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    for (int64_t i = 0; i < n; i++) r[i] = v;
    return r;
}

/* ───────────────────────────── full family ───────────────────────────── */

TEST(zeros_ones_full_every_dtype)
{
    pn_scope_push();
    int64_t shapes[4][3] = {{0}, {5}, {2, 3}, {2, 0, 4}};
    int nds[4] = {0, 1, 2, 3};
    for (int d = 0; d < NALL; d++) {
        pn_dtype t = all_dtypes[d];
        for (int s = 0; s < 4; s++) {
            int64_t n = 1;
            for (int i = 0; i < nds[s]; i++) n *= shapes[s][i];
            double *z = filled(n, 0), *o = filled(n, 1), *f = filled(n, cast_ref(3.75, t));
            test_check_values("zeros", pn_zeros(shapes[s], nds[s], t), shapes[s], nds[s], t, z,
                              0, 0);
            test_check_values("ones", pn_ones(shapes[s], nds[s], t), shapes[s], nds[s], t, o, 0,
                              0);
            pn_array *v = pn_scalar(3.75, PN_FLOAT64);
            test_check_values("full", pn_full(shapes[s], nds[s], v, t), shapes[s], nds[s], t, f,
                              0, 0);
            pn_array *like = pn_ones(shapes[s], nds[s], t);
            test_check_values("zeros_like", pn_zeros_like(like), shapes[s], nds[s], t, z, 0, 0);
            test_check_values("ones_like", pn_ones_like(like), shapes[s], nds[s], t, o, 0, 0);
            test_check_values("full_like", pn_full_like(like, v), shapes[s], nds[s], t, f, 0, 0);
            free(z);
            free(o);
            free(f);
        }
    }
    pn_scope_pop();
}

TEST(full_broadcasts_arrays)
{
    pn_scope_push();
    int64_t vs[2] = {3, 1}, os[3] = {2, 3, 4};
    pn_array *vals = test_random_array(vs, 2, PN_FLOAT64, -10, 10);
    double *v = test_to_f64(vals);
    double ref[24];
    for (int i = 0; i < 24; i++) ref[i] = cast_ref(v[(i / 4) % 3], PN_FLOAT16);
    pn_array *f = pn_full(os, 3, vals, PN_FLOAT16);
    test_check_values("full(array)", f, os, 3, PN_FLOAT16, ref, 0, 0);
    CHECK(pn_eval(&f, 1) == 0 && pnC_row_contiguous(f)); /* dense */
    /* vals given as a transposed view */
    int64_t ts[2] = {1, 3};
    pn_array *vt = pn_transpose(test_random_array(ts, 2, PN_INT32, -5, 5), NULL, 0);
    double *tv = test_to_f64(vt);
    for (int i = 0; i < 24; i++) ref[i] = tv[(i / 4) % 3];
    test_check_values("full(view)", pn_full(os, 3, vt, PN_INT64), os, 3, PN_INT64, ref, 0, 0);
    /* full_like takes the broadcast shape of both and a's dtype */
    int64_t as[1] = {4};
    pn_array *a = pn_zeros(as, 1, PN_INT32);
    int64_t ws[2] = {3, 4};
    for (int i = 0; i < 12; i++) ref[i] = (double)(int32_t)v[i / 4];
    test_check_values("full_like", pn_full_like(a, vals), ws, 2, PN_INT32, ref, 0, 0);
    /* weak scalars take the requested dtype */
    double h = 0.5;
    test_check_values("full weak", pn_full(NULL, 0, pn_weak_float(0.5), PN_BFLOAT16), NULL, 0,
                      PN_BFLOAT16, &h, 0, 0);
    /* errors */
    int64_t neg[2] = {2, -1}, bad[2] = {2, 2};
    CHECK_ERR(pn_full(neg, 2, vals, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_full(bad, 2, vals, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_full(os, 3, vals, (pn_dtype)99), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_full(os, 3, NULL, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_zeros(neg, 2, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_ones(os, 3, (pn_dtype)-1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_full_like(a, pn_zeros((int64_t[]){3}, 1, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_zeros_like(NULL), PN_ERR_INVALID_ARGUMENT);
    free(v);
    free(tv);
    pn_scope_pop();
}

/* zeros_like(x) + 2 * x through a shapeless compiled closure. */
static int fn_like(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_add(pn_full_like_dtype(in[0], pn_weak_float(1.5), PN_FLOAT32),
                    pn_multiply(in[0], pn_weak_float(2.0)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(full_like_dtype_follows_its_array)
{
    pn_scope_push();
    int64_t s1[2] = {2, 3};
    pn_array *a = test_random_array(s1, 2, PN_FLOAT64, -4, 4);
    double ref[64];
    for (int i = 0; i < 6; i++) ref[i] = 7;
    test_check_values("full_like_dtype", pn_full_like_dtype(a, pn_scalar_int(7, PN_INT32), PN_INT16),
                      s1, 2, PN_INT16, ref, 0, 0);
    CHECK_ERR(pn_full_like_dtype(a, pn_scalar(1, PN_FLOAT32), (pn_dtype)99), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_full_like_dtype(NULL, pn_scalar(1, PN_FLOAT32), PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    /* a shapeless compiled replay takes the new input's shape */
    pn_closure *f = pn_closure_new(fn_like, NULL, NULL);
    pn_closure *c = pn_compile(f, true);
    int64_t shapes[3][3] = {{1, 1, 8}, {2, 2, 4}, {3, 1, 5}};
    for (int k = 0; k < 3; k++) {
        pn_array *x = test_random_array(shapes[k], 3, PN_FLOAT32, -1, 1), *out[PN_MAX_OUTPUTS];
        double *xv = test_to_f64(x);
        for (int64_t i = 0; i < pn_size(x); i++) ref[i] = 1.5 + 2 * xv[i];
        int nout = 0;
        CHECK(pn_closure_call(c, 1, &x, &nout, out) == 0 && nout == 1);
        if (nout == 1) test_check_values("shapeless like", out[0], shapes[k], 3, PN_FLOAT32, ref, 1e-6, 1e-6);
        free(xv);
    }
    pn_closure_release(c);
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── arange and linspace ───────────────────────────── */

TEST(arange_values)
{
    pn_scope_push();
    struct {
        double start, stop, step;
    } cases[] = {{0, 10, 1}, {2, 11, 3}, {5, -3, -2}, {0.5, 4.25, 0.25}, {-1, 1, 0.3},
                 {3, 3, 1},  {3, 0, 1},  {0, 1, INFINITY}, {1, 0, -INFINITY}, {0, 1, -INFINITY}};
    pn_dtype types[] = {PN_INT32, PN_FLOAT32, PN_FLOAT64, PN_INT64, PN_FLOAT16, PN_INT16,
                        PN_BFLOAT16, PN_UINT32};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            pn_dtype t = types[k];
            double start = cases[c].start, stop = cases[c].stop, step = cases[c].step;
            if (pnC_is_unsigned(t) && (start < 0 || stop < 0)) continue;
            int64_t n = isinf(step) ? ((step > 0) == (start < stop) && start != stop)
                                    : (int64_t)fmax(0, ceil((stop - start) / step));
            double *ref = filled(n, 0);
            if (pnC_is_integer(t)) { /* MLX: start and start+step in the dtype, then steps */
                double s0 = cast_ref(start, t), st = cast_ref(start + step, t) - s0;
                for (int64_t i = 0; i < n; i++) ref[i] = s0 + (double)i * st;
            } else {
                for (int64_t i = 0; i < n; i++) ref[i] = cast_ref(start + (double)i * (i ? step : 0), t);
            }
            test_check_values("arange", pn_arange(start, stop, step, t), &n, 1, t, ref,
                              test_tol(t), 0);
            free(ref);
        }
    }
    int64_t big = test_quick() ? 1000 : 3000000;
    pn_array *r = pn_arange(0, (double)big, 1, PN_INT64);
    double *v = test_to_f64(r);
    bool ok = v != NULL;
    for (int64_t i = 0; ok && i < big; i++) ok = v[i] == (double)i;
    CHECK(ok);
    free(v);
    CHECK_ERR(pn_arange(0, 10, 1, PN_BOOL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(0, NAN, 1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(-INFINITY, 1, 1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(0, 1, NAN, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(0, 1e300, 1e-300, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(0, 10, 0, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_arange(0, 10, 1, (pn_dtype)20), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(linspace_values)
{
    pn_scope_push();
    int64_t nums[] = {0, 1, 2, 7, 50};
    pn_dtype types[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_INT32, PN_BFLOAT16};
    for (size_t a = 0; a < sizeof nums / sizeof nums[0]; a++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            int64_t n = nums[a];
            pn_dtype t = types[k];
            double start = -2.5, stop = 7.25;
            double *ref = filled(n, 0);
            for (int64_t i = 0; i < n; i++) {
                double x = n == 1 ? start : start + (stop - start) * (double)i / (double)(n - 1);
                ref[i] = pnC_is_integer(t) ? trunc(x) : x;
            }
            test_check_values("linspace", pn_linspace(start, stop, n, t), &n, 1, t, ref,
                              pnC_is_integer(t) ? 0 : test_tol(t), 1e-12);
            free(ref);
        }
    }
    pn_array *l = pn_linspace(0, 1, 11, PN_FLOAT32);
    CHECK(l && pn_item(pn_slice(l, (int64_t[]){10}, (int64_t[]){11}, NULL, 1)) == 1.0);
    CHECK_ERR(pn_linspace(0, 1, -1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linspace(0, 1, 3, (pn_dtype)14), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── eye, tri, tril, triu ───────────────────────────── */

TEST(eye_tri_values)
{
    pn_scope_push();
    int64_t dims[][2] = {{1, 1}, {3, 3}, {3, 5}, {5, 2}, {4, -1}};
    int ks[] = {0, 1, -1, 2, -3, 7, -9};
    for (size_t a = 0; a < sizeof dims / sizeof dims[0]; a++) {
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            pn_dtype t = all_dtypes[(a * 7 + b) % NALL];
            int64_t n = dims[a][0], m = dims[a][1] < 0 ? n : dims[a][1], shape[2] = {n, m};
            int k = ks[b];
            double *e = filled(n * m, 0), *tr = filled(n * m, 0);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < m; j++) {
                    e[i * m + j] = j - i == k;
                    tr[i * m + j] = j - i <= k;
                }
            test_check_values("eye", pn_eye(n, dims[a][1], k, t), shape, 2, t, e, 0, 0);
            test_check_values("tri", pn_tri(n, dims[a][1], k, t), shape, 2, t, tr, 0, 0);
            if (k == 0 && m == n)
                test_check_values("identity", pn_identity(n, t), shape, 2, t, e, 0, 0);
            free(e);
            free(tr);
        }
    }
    int64_t e0[2] = {0, 3};
    test_check_values("tri empty", pn_tri(0, 3, 0, PN_FLOAT32), e0, 2, PN_FLOAT32, NULL, 0, 0);
    CHECK_ERR(pn_eye(0, 3, 0, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_eye(-2, 3, 0, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_identity(0, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tri(-1, 3, 0, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_eye(2, 2, 0, (pn_dtype)99), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(tril_triu_values)
{
    pn_scope_push();
    int ks[] = {0, 1, -1, 3, -4};
    pn_dtype types[] = {PN_FLOAT32, PN_INT8, PN_BOOL, PN_FLOAT16, PN_COMPLEX64, PN_FLOAT64};
    for (size_t a = 0; a < sizeof types / sizeof types[0]; a++) {
        pn_dtype t = types[a];
        int64_t shape[3] = {2, 4, 5};
        pn_array *x = test_random_array(shape, 3, t, t == PN_BOOL ? 0 : -9, 9);
        for (int view = 0; view < 2; view++) {
            pn_array *in = x;
            int64_t s[3] = {2, 4, 5};
            if (view) { /* a transposed view (2,5,4) */
                in = pn_swapaxes(x, 1, 2);
                s[1] = 5;
                s[2] = 4;
            }
            double *v = test_to_f64(in);
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                int k = ks[b];
                double lo[40], up[40];
                for (int i = 0; i < 40; i++) {
                    int64_t r = (i / s[2]) % s[1], c = i % s[2];
                    lo[i] = c - r <= k ? v[i] : 0;
                    up[i] = c - r >= k ? v[i] : 0;
                }
                test_check_values("tril", pn_tril(in, k), s, 3, t, lo, 0, 0);
                test_check_values("triu", pn_triu(in, k), s, 3, t, up, 0, 0);
            }
            free(v);
        }
    }
    /* the input is untouched when the output could have taken its buffer */
    int64_t s2[2] = {3, 3};
    pn_array *o = pn_ones(s2, 2, PN_FLOAT32);
    pn_array *lo = pn_tril(o, 0);
    double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, tl[9] = {1, 0, 0, 1, 1, 0, 1, 1, 1};
    test_check_values("tril once", lo, s2, 2, PN_FLOAT32, tl, 0, 0);
    test_check_values("source", o, s2, 2, PN_FLOAT32, ones, 0, 0);
    int64_t one[1] = {3};
    CHECK_ERR(pn_tril(pn_ones(one, 1, PN_FLOAT32), 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_triu(pn_scalar(1, PN_FLOAT32), 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_triu(NULL, 0), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── astype and copy ───────────────────────────── */

TEST(astype_every_pair)
{
    pn_scope_push();
    int64_t shape[2] = {3, 7};
    for (int a = 0; a < NALL; a++) {
        pn_dtype from = all_dtypes[a];
        /* non-negative values in every integer range, with fractions for float sources */
        pn_array *x = test_random_array(shape, 2, from, 0, 100);
        for (int view = 0; view < 2; view++) {
            pn_array *in = view ? pn_transpose(x, NULL, 0) : x;
            int64_t s[2] = {pn_shape(in)[0], pn_shape(in)[1]};
            double *v = test_to_f64(in);
            for (int b = 0; b < NALL; b++) {
                pn_dtype to = all_dtypes[b];
                double ref[21];
                for (int i = 0; i < 21; i++) ref[i] = cast_ref(v[i], to);
                pn_array *y = pn_astype(in, to);
                test_check_values("astype", y, s, 2, to, ref, 0, 0);
            }
            free(v);
        }
    }
    /* float -> int truncates toward zero and saturates; int -> narrower int wraps */
    double fv[4] = {-2.7, 2.7, 1e10, -1e10};
    int64_t four[1] = {4};
    pn_array *f = pn_array_from_data(fv, four, 1, PN_FLOAT64);
    double want_i8[4] = {-2, 2, 127, -128};
    test_check_values("f64->i8", pn_astype(f, PN_INT8), four, 1, PN_INT8, want_i8, 0, 0);
    int32_t iv[4] = {300, -1, 255, 256};
    pn_array *i = pn_array_from_data(iv, four, 1, PN_INT32);
    double want_u8[4] = {44, 255, 255, 0};
    test_check_values("i32->u8", pn_astype(i, PN_UINT8), four, 1, PN_UINT8, want_u8, 0, 0);
    CHECK_ERR(pn_astype(f, (pn_dtype)14), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_astype(NULL, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(copy_values)
{
    pn_scope_push();
    int64_t shape[3] = {2, 3, 4};
    for (int d = 0; d < NALL; d++) {
        pn_dtype t = all_dtypes[d];
        pn_array *x = test_random_array(shape, 3, t, 0, 50);
        pn_array *xt = pn_transpose(x, NULL, 0);
        double *v = test_to_f64(x), *vt = test_to_f64(xt);
        pn_array *c = pn_copy(x);
        test_check_values("copy", c, shape, 3, t, v, 0, 0);
        int64_t ts[3] = {4, 3, 2};
        test_check_values("copy(T)", pn_copy(xt), ts, 3, t, vt, 0, 0);
        test_check_values("astype same", pn_astype(x, t), shape, 3, t, v, 0, 0);
        CHECK(c != x);
        free(v);
        free(vt);
    }
    double s = 4;
    test_check_values("copy 0-d", pn_copy(pn_scalar(4, PN_INT8)), NULL, 0, PN_INT8, &s, 0, 0);
    CHECK_ERR(pn_copy(NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

static pn_array *creation_fn(void *ctx, pn_array *const *in)
{
    int w = *(int *)ctx;
    pn_array *x = in[0];
    switch (w) {
    case 0: return pn_tril(x, 1);
    case 1: return pn_triu(pn_transpose(x, (int[]){0, 2, 1}, 3), -1);
    case 2: return pn_astype(pn_astype(x, PN_FLOAT32), PN_FLOAT64);
    case 3: return pn_copy(pn_swapaxes(x, 0, 1));
    case 4: return pn_full((int64_t[]){3, 2, 3, 4}, 4, x, PN_FLOAT64);
    case 5: return pn_full_like(pn_zeros((int64_t[]){5, 1, 1, 1}, 4, PN_FLOAT64), x);
    case 6: return pn_astype(pn_astype(x, PN_COMPLEX64), PN_FLOAT64);
    default: return NULL;
    }
}

TEST(gradients)
{
    pn_scope_push();
    int64_t s[3] = {2, 3, 4};
    pn_array *x = test_random_array(s, 3, PN_FLOAT64, -1, 1);
    for (int w = 0; w <= 6; w++) {
        char name[32];
        snprintf(name, sizeof name, "creation op %d", w);
        /* through float32: finite differences see its rounding; the exact check is below */
        double tol = w == 2 || w == 6 ? 5e-2 : 1e-6;
        CHECK_MSG(test_gradcheck(name, creation_fn, &w, 1, &x, tol), "%s: %s", name,
                  pn_last_error_message());
        pn_clear_error();
    }
    pn_scope_pop();
}

static int cast_closure(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_astype(in[0], *(pn_dtype *)ctx);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* astype's derivatives are casts of the cotangent / tangent, exactly; integer results carry
 * none (zero). */
TEST(astype_derivatives_exact)
{
    pn_scope_push();
    int64_t s[2] = {3, 4};
    pn_dtype to[3] = {PN_FLOAT32, PN_BFLOAT16, PN_INT32};
    for (int k = 0; k < 3; k++) {
        pn_closure *f = pn_closure_new(cast_closure, &to[k], NULL);
        pn_array *x = test_random_array(s, 2, PN_FLOAT64, -3, 3);
        pn_array *u = test_random_array(s, 2, k == 2 ? PN_FLOAT32 : to[k], -3, 3);
        pn_array *out[1], *g[1];
        int nout = 0;
        CHECK(pn_vjp(f, 1, &x, 1, &u, &nout, out, g) == 0);
        if (k < 2) {
            double *uv = test_to_f64(u);
            test_check_values("astype vjp", g[0], s, 2, PN_FLOAT64, uv, 0, 0);
            free(uv);
        } else {
            double z[12] = {0};
            CHECK(g[0] == NULL || test_check_values("astype int vjp", g[0], s, 2,
                                                    pn_array_dtype(g[0]), z, 0, 0));
        }
        pn_array *t = test_random_array(s, 2, PN_FLOAT64, -3, 3), *jv[1];
        CHECK(pn_jvp(f, 1, &x, &t, &nout, out, jv) == 0);
        if (k < 2) {
            double *tv = test_to_f64(pn_astype(t, to[k]));
            test_check_values("astype jvp", jv[0], s, 2, to[k], tv, 0, 0);
            free(tv);
        }
        pn_closure_release(f);
    }
    pn_clear_error();
    pn_scope_pop();
}
