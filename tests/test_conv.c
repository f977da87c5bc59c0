/* test_conv.c — tests of the convolution ops (conv_general, conv1d/2d/3d, the transposed
 * convolutions, convolve) and of max/average pooling against float64 nested-loop references
 * written here, over strides, asymmetric and negative padding, dilations, groups, flips, dtypes,
 * strided inputs, empty shapes and errors; gradients with test_gradcheck, including the
 * gradient of a gradient. */
#include "core/core.h"
#include "harness.h"

#include <string.h>

static const pn_dtype FLOATS[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};

/* ───────────────────────────── the reference ───────────────────────────── */

/* One conv_general call: sizes and every argument (per spatial axis). */
typedef struct conv_cfg {
    int nsp;
    int64_t N, C, O;
    int64_t S[3], K[3];
    int stride[3], lo[3], hi[3], kd[3], id[3];
    int groups;
    bool flip;
} conv_cfg;

/* A configuration with all spatial extents S, kernel extents K, and default arguments. */
static conv_cfg cfg(int nsp, int64_t N, int64_t C, int64_t O, int64_t S, int64_t K)
{
    conv_cfg c;
    memset(&c, 0, sizeof c);
    c.nsp = nsp, c.N = N, c.C = C, c.O = O, c.groups = 1;
    for (int i = 0; i < 3; i++) c.S[i] = S, c.K[i] = K, c.stride[i] = c.kd[i] = c.id[i] = 1;
    return c;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Per-axis geometry after MLX's cropping of negative padding. */
typedef struct axis_geom {
    int64_t crop, se, din, pl, ph, kt, out;
} axis_geom;

static axis_geom axis(const conv_cfg *c, int i)
{
    axis_geom a;
    a.crop = max64(0, -c->lo[i]);
    a.se = max64(0, c->S[i] - a.crop - max64(0, -c->hi[i]));
    a.din = a.se > 0 ? (a.se - 1) * c->id[i] + 1 : 0;
    a.pl = max64(0, c->lo[i]), a.ph = max64(0, c->hi[i]);
    a.kt = (c->K[i] - 1) * c->kd[i] + 1;
    a.out = (a.din + a.pl + a.ph - a.kt) / c->stride[i] + 1;
    return a;
}

/* The output shape (N, out..., O). */
static void out_shape(const conv_cfg *c, int64_t *shape)
{
    shape[0] = c->N;
    for (int i = 0; i < c->nsp; i++) shape[1 + i] = axis(c, i).out;
    shape[c->nsp + 1] = c->O;
}

/* One output element of conv_general, straight from its definition. x is (N, S..., C), w is
 * (O, K..., C / groups), both row-major. */
static double ref_conv_at(const conv_cfg *c, const double *x, const double *w, int64_t n,
                          const int64_t *o, int64_t co)
{
    int nsp = c->nsp;
    int64_t Cg = c->C / c->groups, g = co / (c->O / c->groups), KP = 1;
    axis_geom ag[3];
    for (int i = 0; i < nsp; i++) ag[i] = axis(c, i), KP *= c->K[i];
    double sum = 0;
    for (int64_t t = 0; t < KP; t++) {
        int64_t k[3], r = t, xi = n, wi = co;
        for (int i = nsp - 1; i >= 0; i--) k[i] = r % c->K[i], r /= c->K[i];
        bool valid = true;
        for (int i = 0; i < nsp && valid; i++) {
            int64_t j = o[i] * c->stride[i] + k[i] * c->kd[i] - ag[i].pl;
            valid = j >= 0 && j < ag[i].din && j % c->id[i] == 0;
            xi = xi * c->S[i] + (valid ? j / c->id[i] + ag[i].crop : 0);
            wi = wi * c->K[i] + (c->flip ? c->K[i] - 1 - k[i] : k[i]);
        }
        if (!valid) continue;
        for (int64_t ch = 0; ch < Cg; ch++) sum += x[xi * c->C + g * Cg + ch] * w[wi * Cg + ch];
    }
    return sum;
}

/* Every output element (malloc'd, row-major (N, out..., O)). */
static double *ref_conv(const conv_cfg *c, const double *x, const double *w)
{
    int64_t shape[5];
    out_shape(c, shape);
    int64_t n = pnC_shape_size(shape, c->nsp + 2);
    double *y = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int64_t e = 0; e < n; e++) {
        int64_t r = e / c->O, o[3];
        for (int i = c->nsp - 1; i >= 0; i--) o[i] = r % shape[1 + i], r /= shape[1 + i];
        y[e] = ref_conv_at(c, x, w, r, o, e % c->O);
    }
    return y;
}

/* x (N, S..., C) and w (O, K..., C / groups) of dtype. strided 1: views with the channels moved
 * last from channels-first arrays; 2: views with the first and last axes swapped (the layout
 * the weight gradient hands the kernel). */
static void make_inputs(const conv_cfg *c, pn_dtype dt, int strided, pn_array **x, pn_array **w)
{
    int nd = c->nsp + 2;
    int64_t xs[5], ws[5];
    xs[0] = c->N, ws[0] = c->O;
    for (int i = 0; i < c->nsp; i++) xs[1 + i] = c->S[i], ws[1 + i] = c->K[i];
    xs[nd - 1] = c->C, ws[nd - 1] = c->C / (c->groups > 0 ? c->groups : 1);
    if (!strided) {
        *x = test_random_array(xs, nd, dt, -1, 1);
        *w = test_random_array(ws, nd, dt, -1, 1);
        return;
    }
    if (strided == 2) {
        int64_t t;
        t = xs[0], xs[0] = xs[nd - 1], xs[nd - 1] = t;
        t = ws[0], ws[0] = ws[nd - 1], ws[nd - 1] = t;
        *x = pn_swapaxes(test_random_array(xs, nd, dt, -1, 1), 0, -1);
        *w = pn_swapaxes(test_random_array(ws, nd, dt, -1, 1), 0, -1);
        return;
    }
    int64_t xt[5], wt[5]; /* channels-first */
    xt[0] = xs[0], xt[1] = xs[nd - 1], wt[0] = ws[0], wt[1] = ws[nd - 1];
    for (int i = 0; i < c->nsp; i++) xt[2 + i] = xs[1 + i], wt[2 + i] = ws[1 + i];
    *x = pn_moveaxis(test_random_array(xt, nd, dt, -1, 1), 1, -1);
    *w = pn_moveaxis(test_random_array(wt, nd, dt, -1, 1), 1, -1);
}

static pn_array *conv_of(const conv_cfg *c, pn_array *x, pn_array *w)
{
    return pn_conv_general(x, w, c->stride, c->lo, c->hi, c->kd, c->id, c->groups, c->flip);
}

/* Runs c in dtype dt (strided inputs: see make_inputs) against the reference. */
static void check_conv(const char *what, const conv_cfg *c, pn_dtype dt, int strided)
{
    pn_scope_push();
    pn_array *x, *w;
    make_inputs(c, dt, strided, &x, &w);
    pn_array *y = conv_of(c, x, w);
    double *xd = test_to_f64(x), *wd = test_to_f64(w);
    if (xd && wd) {
        double *ref = ref_conv(c, xd, wd);
        int64_t shape[5], kdim = c->C / c->groups;
        out_shape(c, shape);
        for (int i = 0; i < c->nsp; i++) kdim *= c->K[i];
        char name[160];
        snprintf(name, sizeof name, "%s %s%s", what, pn_dtype_name(dt),
                 strided == 1 ? " strided" : strided == 2 ? " swapped" : "");
        double tol = test_tol(dt);
        test_check_values(name, y, shape, c->nsp + 2, dt, ref, tol, tol * (1 + sqrt((double)kdim)));
        free(ref);
    }
    free(xd);
    free(wd);
    pn_scope_pop();
}

/* Runs the cases in every floating dtype and layout. */
static void check_cases(const char *what, const conv_cfg *cases, int n)
{
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 4; d++)
            for (int l = 0; l < 3; l++) {
                char name[64];
                snprintf(name, sizeof name, "%s case %d", what, i);
                check_conv(name, &cases[i], FLOATS[d], l);
            }
}

/* ───────────────────────────── forward values ───────────────────────────── */

TEST(conv1d_general_values)
{
    pn_scope_push();
    conv_cfg cs[13];
    int n = 0;
    cs[n++] = cfg(1, 2, 3, 4, 9, 3);                                  /* plain */
    cs[n] = cfg(1, 2, 3, 5, 10, 3), cs[n].stride[0] = 2, cs[n].lo[0] = 1, cs[n].hi[0] = 2, n++;
    cs[n] = cfg(1, 1, 2, 3, 8, 3), cs[n].kd[0] = 2, cs[n].id[0] = 2, cs[n].lo[0] = 2, n++;
    cs[n] = cfg(1, 2, 6, 9, 7, 2), cs[n].groups = 3, n++;              /* groups */
    cs[n] = cfg(1, 2, 4, 4, 9, 3), cs[n].groups = 4, cs[n].lo[0] = cs[n].hi[0] = 1, n++; /* depthwise */
    cs[n] = cfg(1, 2, 4, 8, 9, 3), cs[n].groups = 4, n++;              /* depthwise x2 */
    cs[n] = cfg(1, 2, 3, 2, 8, 4), cs[n].flip = true, cs[n].lo[0] = 3, n++;
    cs[n] = cfg(1, 2, 3, 2, 12, 3), cs[n].lo[0] = -2, cs[n].hi[0] = -1, n++; /* crop */
    cs[n] = cfg(1, 3, 5, 7, 6, 1), n++;                                /* pointwise */
    cs[n] = cfg(1, 2, 4, 6, 5, 3), cs[n].groups = 2, cs[n].id[0] = 3, cs[n].stride[0] = 2,
    cs[n].flip = true, cs[n].lo[0] = 1, cs[n].hi[0] = 2, n++;
    cs[n] = cfg(1, 2, 4, 6, 6, 1), cs[n].groups = 2, n++;              /* grouped pointwise */
    cs[n] = cfg(1, 1, 3, 2, 11, 3), cs[n].stride[0] = 3, cs[n].kd[0] = 3, cs[n].hi[0] = 4, n++;
    cs[n] = cfg(1, 2, 24, 5, 9, 3), cs[n].lo[0] = 1, cs[n].stride[0] = 2, n++; /* im2col + GEMM */
    check_cases("conv1d", cs, n);
    pn_scope_pop();
}

TEST(conv2d_general_values)
{
    pn_scope_push();
    conv_cfg cs[11];
    int n = 0;
    cs[n++] = cfg(2, 2, 3, 4, 6, 3);
    cs[n] = cfg(2, 2, 4, 6, 7, 3), cs[n].stride[0] = 2, cs[n].stride[1] = 1, cs[n].lo[0] = 1,
    cs[n].hi[0] = 0, cs[n].lo[1] = 2, cs[n].hi[1] = 1, n++;
    cs[n] = cfg(2, 1, 2, 3, 6, 2), cs[n].kd[0] = 2, cs[n].kd[1] = 3, cs[n].id[0] = 2, n++;
    cs[n] = cfg(2, 2, 6, 4, 5, 3), cs[n].groups = 2, cs[n].flip = true, cs[n].lo[1] = 1, n++;
    cs[n] = cfg(2, 2, 5, 5, 6, 3), cs[n].groups = 5, cs[n].lo[0] = cs[n].lo[1] = 1,
    cs[n].hi[0] = cs[n].hi[1] = 1, n++; /* depthwise, "same" */
    cs[n] = cfg(2, 3, 8, 5, 4, 1), n++; /* pointwise */
    cs[n] = cfg(2, 2, 3, 2, 7, 3), cs[n].lo[0] = -1, cs[n].hi[1] = -2, cs[n].lo[1] = 1, n++;
    cs[n] = cfg(2, 1, 2, 2, 4, 3), cs[n].id[0] = cs[n].id[1] = 2, cs[n].stride[0] = 2,
    cs[n].lo[0] = cs[n].hi[0] = cs[n].lo[1] = cs[n].hi[1] = 2, cs[n].flip = true, n++;
    cs[n] = cfg(2, 2, 3, 4, 5, 2), cs[n].S[1] = 9, cs[n].K[1] = 4, cs[n].stride[1] = 3, n++;
    cs[n] = cfg(2, 2, 4, 2, 5, 1), cs[n].stride[0] = cs[n].stride[1] = 2, n++; /* 1x1 strided */
    cs[n] = cfg(2, 2, 8, 6, 6, 3), cs[n].lo[0] = cs[n].hi[1] = 1, cs[n].flip = true, n++; /* im2col */
    check_cases("conv2d", cs, n);
    pn_scope_pop();
}

TEST(conv3d_general_values)
{
    pn_scope_push();
    conv_cfg cs[6];
    int n = 0;
    cs[n++] = cfg(3, 2, 2, 3, 4, 2);
    cs[n] = cfg(3, 1, 3, 4, 4, 3), cs[n].lo[1] = cs[n].hi[2] = 1, n++; /* kdim 81: im2col */
    cs[n] = cfg(3, 1, 4, 4, 5, 3), cs[n].groups = 2, cs[n].stride[0] = 2, cs[n].lo[1] = 1,
    cs[n].hi[2] = 1, cs[n].flip = true, n++;
    cs[n] = cfg(3, 2, 3, 2, 4, 2), cs[n].kd[2] = 2, cs[n].id[0] = 2, cs[n].lo[0] = -1, n++;
    cs[n] = cfg(3, 2, 3, 3, 3, 1), n++;
    cs[n] = cfg(3, 1, 3, 3, 4, 3), cs[n].groups = 3, cs[n].lo[0] = cs[n].lo[1] = cs[n].lo[2] = 1, n++;
    check_cases("conv3d", cs, n);
    pn_scope_pop();
}

/* conv1d/2d/3d: symmetric padding, stride, dilation and groups through the wrappers. */
TEST(conv_wrappers)
{
    pn_scope_push();
    for (int nsp = 1; nsp <= 3; nsp++) {
        conv_cfg c = cfg(nsp, 2, 4, 6, nsp == 3 ? 5 : 8, 3);
        c.groups = 2;
        for (int i = 0; i < nsp; i++) {
            c.stride[i] = 1 + (i % 2);
            c.lo[i] = c.hi[i] = 1;
            c.kd[i] = 1 + (i == 0);
        }
        pn_array *x, *w;
        make_inputs(&c, PN_FLOAT32, 0, &x, &w);
        pn_array *y = nsp == 1 ? pn_conv1d(x, w, c.stride[0], c.lo[0], c.kd[0], c.groups)
                      : nsp == 2 ? pn_conv2d(x, w, c.stride, c.lo, c.kd, c.groups)
                                 : pn_conv3d(x, w, c.stride, c.lo, c.kd, c.groups);
        double *xd = test_to_f64(x), *wd = test_to_f64(w), *ref = ref_conv(&c, xd, wd);
        int64_t shape[5];
        out_shape(&c, shape);
        test_check_values("conv wrapper", y, shape, nsp + 2, PN_FLOAT32, ref, 1e-5, 1e-5);
        free(xd), free(wd), free(ref);
        /* defaults: NULL arguments are stride 1, padding 0, dilation 1 */
        conv_cfg d = cfg(nsp, 1, 4, 3, nsp == 3 ? 4 : 6, 2);
        make_inputs(&d, PN_FLOAT64, 0, &x, &w);
        y = nsp == 1 ? pn_conv1d(x, w, 1, 0, 1, 1)
            : nsp == 2 ? pn_conv2d(x, w, NULL, NULL, NULL, 1) : pn_conv3d(x, w, NULL, NULL, NULL, 1);
        xd = test_to_f64(x), wd = test_to_f64(w), ref = ref_conv(&d, xd, wd);
        out_shape(&d, shape);
        test_check_values("conv wrapper defaults", y, shape, nsp + 2, PN_FLOAT64, ref, 1e-12, 1e-12);
        free(xd), free(wd), free(ref);
    }
    pn_scope_pop();
}

/* Mixed dtypes promote; integer weights with a float input are fine. */
TEST(conv_promotion)
{
    pn_scope_push();
    conv_cfg c = cfg(1, 1, 2, 2, 5, 2);
    pn_array *x, *w;
    make_inputs(&c, PN_FLOAT16, 0, &x, &w);
    pn_array *w32 = pn_astype(w, PN_FLOAT32);
    pn_array *y = conv_of(&c, x, w32);
    CHECK(y && pn_array_dtype(y) == PN_FLOAT32);
    pn_array *wi = test_random_array((int64_t[]){2, 2, 2}, 3, PN_INT32, -3, 3);
    y = conv_of(&c, x, wi);
    CHECK(y && pn_array_dtype(y) == PN_FLOAT16);
    double *xd = test_to_f64(x), *wd = test_to_f64(wi), *ref = ref_conv(&c, xd, wd);
    int64_t shape[3];
    out_shape(&c, shape);
    test_check_values("int weight", y, shape, 3, PN_FLOAT16, ref, 2e-3, 1e-2);
    free(xd), free(wd), free(ref);
    pn_scope_pop();
}

/* A cotangent or tangent of another dtype than the convolution is cast to it. */
static int conv1d_closure(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_conv1d(in[0], in[1], 2, 1, 1, 1);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(conv_mixed_dtype_derivatives)
{
    pn_scope_push();
    conv_cfg c = cfg(1, 2, 3, 4, 7, 3);
    pn_array *x, *w;
    make_inputs(&c, PN_FLOAT64, 0, &x, &w);
    pn_closure *f = pn_closure_new(conv1d_closure, NULL, NULL);
    pn_array *ct32 = test_random_array((int64_t[]){2, 4, 4}, 3, PN_FLOAT32, -1, 1);
    pn_array *ct64 = pn_astype(ct32, PN_FLOAT64);
    pn_array *out[1], *g32[2], *g64[2];
    int nout = 1;
    CHECK(pn_vjp(f, 2, (pn_array *[]){x, w}, 1, &ct32, &nout, out, g32) == 0);
    CHECK(pn_vjp(f, 2, (pn_array *[]){x, w}, 1, &ct64, &nout, out, g64) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK(pn_array_dtype(g32[i]) == PN_FLOAT64);
        CHECK(pn_item(pn_array_equal(g32[i], g64[i], false)) == 1);
    }
    pn_array *tx = pn_astype(pn_ones_like(x), PN_FLOAT32), *tw = pn_astype(pn_ones_like(w), PN_FLOAT16);
    pn_array *jv[1];
    CHECK(pn_jvp(f, 2, (pn_array *[]){x, w}, (pn_array *[]){tx, tw}, &nout, out, jv) == 0);
    pn_array *ref = pn_add(pn_conv1d(pn_ones_like(x), w, 2, 1, 1, 1), pn_conv1d(x, pn_ones_like(w), 2, 1, 1, 1));
    CHECK(pn_array_dtype(jv[0]) == PN_FLOAT64 && pn_item(pn_allclose(jv[0], ref, 1e-12, 1e-12, false)) == 1);
    pn_closure_release(f);
    pn_scope_pop();
}

/* A layer big enough that im2col goes in several tiles of bounded scratch; checked at sampled
 * output elements. */
TEST(conv_large_tiled)
{
    if (test_quick()) return;
    pn_scope_push();
    conv_cfg c = cfg(2, 12, 64, 48, 66, 3); /* 12*64*64 rows x 576: 113 MB of im2col in f32 */
    pn_array *x, *w;
    make_inputs(&c, PN_FLOAT32, 0, &x, &w);
    pn_array *y = conv_of(&c, x, w);
    double *xd = test_to_f64(x), *wd = test_to_f64(w), *yd = test_to_f64(y);
    int64_t shape[4];
    out_shape(&c, shape);
    CHECK(y && pn_shape(y)[1] == 64 && pn_shape(y)[3] == 48);
    int bad = 0;
    for (int s = 0; yd && s < 2000; s++) {
        int64_t e = (int64_t)(test_rand_u64() % (uint64_t)pn_size(y)), r = e / c.O, o[2];
        if (s == 0) e = 0, r = 0;
        if (s == 1) e = pn_size(y) - 1, r = e / c.O;
        o[1] = r % shape[2], r /= shape[2];
        o[0] = r % shape[1], r /= shape[1];
        double ref = ref_conv_at(&c, xd, wd, r, o, e % c.O);
        if (fabs(yd[e] - ref) > 1e-4 * (1 + fabs(ref))) bad++;
    }
    CHECK_MSG(bad == 0, "large conv: %d of 2000 sampled elements differ", bad);
    free(xd), free(wd), free(yd);
    pn_scope_pop();
}

TEST(conv_empty)
{
    pn_scope_push();
    /* empty batch */
    pn_array *x = pn_zeros((int64_t[]){0, 5, 3}, 3, PN_FLOAT32);
    pn_array *w = test_random_array((int64_t[]){4, 2, 3}, 3, PN_FLOAT32, -1, 1);
    pn_array *y = pn_conv1d(x, w, 1, 0, 1, 1);
    CHECK(y && pn_ndim(y) == 3 && pn_shape(y)[0] == 0 && pn_shape(y)[1] == 4 && pn_shape(y)[2] == 4);
    CHECK(y && pn_eval(&y, 1) == 0);
    /* no input channels: the sums are empty, the output zeros */
    x = pn_zeros((int64_t[]){2, 5, 0}, 3, PN_FLOAT32);
    w = pn_zeros((int64_t[]){3, 2, 0}, 3, PN_FLOAT32);
    y = pn_conv1d(x, w, 1, 1, 1, 1);
    double ref[2 * 6 * 3] = {0};
    test_check_values("no channels", y, (int64_t[]){2, 6, 3}, 3, PN_FLOAT32, ref, 0, 0);
    /* no output channels */
    x = test_random_array((int64_t[]){2, 5, 2}, 3, PN_FLOAT32, -1, 1);
    w = pn_zeros((int64_t[]){0, 2, 2}, 3, PN_FLOAT32);
    y = pn_conv1d(x, w, 1, 0, 1, 1);
    CHECK(y && pn_shape(y)[2] == 0 && pn_eval(&y, 1) == 0);
    pn_scope_pop();
}

TEST(conv_errors)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){2, 8, 4}, 3, PN_FLOAT32, -1, 1);
    pn_array *w = test_random_array((int64_t[]){6, 3, 4}, 3, PN_FLOAT32, -1, 1);
    pn_array *w2 = test_random_array((int64_t[]){6, 3, 2}, 3, PN_FLOAT32, -1, 1);
    pn_array *w3 = test_random_array((int64_t[]){6, 3, 3}, 3, PN_FLOAT32, -1, 1);
    pn_array *x4 = test_random_array((int64_t[]){2, 5, 5, 4}, 4, PN_FLOAT32, -1, 1);
    CHECK_OK(pn_conv1d(x, w, 1, 0, 1, 1));
    CHECK_OK(pn_conv1d(x, w2, 1, 0, 1, 2));
    CHECK_ERR(pn_conv1d(x, w3, 1, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);  /* channels */
    CHECK_ERR(pn_conv1d(x, w2, 1, 0, 1, 3), PN_ERR_INVALID_ARGUMENT);  /* 4 % 3 */
    CHECK_ERR(pn_conv1d(x, w, 1, 0, 1, 2), PN_ERR_INVALID_ARGUMENT);   /* 2 * 4 != 4 */
    CHECK_ERR(pn_conv1d(x, pn_zeros((int64_t[]){5, 3, 1}, 3, PN_FLOAT32), 1, 0, 1, 4),
              PN_ERR_INVALID_ARGUMENT); /* 5 output channels, 4 groups */
    CHECK_ERR(pn_conv1d(x, w, 1, 0, 1, 0), PN_ERR_INVALID_ARGUMENT);   /* groups */
    CHECK_ERR(pn_conv1d(x, w, 0, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);   /* stride */
    CHECK_ERR(pn_conv1d(x, w, 1, 0, 0, 1), PN_ERR_INVALID_ARGUMENT);   /* dilation */
    CHECK_ERR(pn_conv1d(x, w, 1, 0, 4, 1), PN_ERR_INVALID_ARGUMENT);   /* dilated kernel 9 > 8 */
    CHECK_ERR(pn_conv1d(x, pn_zeros((int64_t[]){6, 9, 4}, 3, PN_FLOAT32), 1, 0, 1, 1),
              PN_ERR_INVALID_ARGUMENT); /* kernel longer than input */
    CHECK_ERR(pn_conv_general(x, w, NULL, (int[]){-10}, NULL, NULL, NULL, 1, false),
              PN_ERR_INVALID_ARGUMENT); /* negative padding larger than the input */
    CHECK_ERR(pn_conv_general(x, w, NULL, (int[]){-3}, (int[]){-3}, NULL, NULL, 1, false),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv_general(x, w, NULL, NULL, NULL, NULL, (int[]){0}, 1, false),
              PN_ERR_INVALID_ARGUMENT); /* input dilation */
    CHECK_ERR(pn_conv1d(x4, w, 1, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);  /* rank for 1-d */
    CHECK_ERR(pn_conv2d(x, w, NULL, NULL, NULL, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv2d(x4, w, NULL, NULL, NULL, 1), PN_ERR_INVALID_ARGUMENT); /* weight rank */
    CHECK_ERR(pn_conv_general(pn_zeros((int64_t[]){2, 4}, 2, PN_FLOAT32), w, NULL, NULL, NULL,
                              NULL, NULL, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv_general(pn_zeros((int64_t[]){1, 2, 2, 2, 2, 1}, 6, PN_FLOAT32), w, NULL,
                              NULL, NULL, NULL, NULL, 1, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv1d(pn_astype(x, PN_INT32), w, 1, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv1d(x, pn_astype(w, PN_COMPLEX64), 1, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv1d(NULL, w, 1, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv_transpose1d(x, w, 1, -1, 1, 0, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_conv_transpose2d(x, w, NULL, NULL, NULL, NULL, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_convolve(x, w, "full"), PN_ERR_INVALID_ARGUMENT);
    pn_array *v = test_random_array((int64_t[]){5}, 1, PN_FLOAT32, -1, 1);
    CHECK_ERR(pn_convolve(v, v, "middle"), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_convolve(v, pn_zeros((int64_t[]){0}, 1, PN_FLOAT32), "full"), PN_ERR_INVALID_ARGUMENT);
    /* the messages say what is wrong, as MLX's */
    pn_clear_error();
    CHECK(!pn_conv1d(x, w3, 1, 0, 1, 1) &&
          strstr(pn_last_error_message(), "Expect the input channels in the input and weight array to match"));
    pn_clear_error();
    CHECK(!pn_conv1d(x, w2, 1, 0, 1, 3) &&
          strstr(pn_last_error_message(), "input channels must be divisible by the number of groups"));
    pn_clear_error();
    CHECK(!pn_conv_general(x, w, NULL, (int[]){-10}, NULL, NULL, NULL, 1, false) &&
          strstr(pn_last_error_message(), "cannot be smaller than weight spatial dimensions"));
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── transposed convolutions, convolve ───────────────────────────── */

/* MLX's transposed convolution from its definition as a scatter: input element j of channel ci
 * adds x * w[co, k, ci] into output i = j * stride + k * dilation - padding, for co of ci's
 * group. Output extent (S - 1) * stride - 2 padding + dilation (K - 1) + output_padding + 1. */
static double *ref_conv_transpose(const conv_cfg *c, const int *op, const double *x,
                                  const double *w, int64_t *shape)
{
    int nsp = c->nsp;
    int64_t Cg = c->C / c->groups, Og = c->O / c->groups, L[3], P = 1, SP = 1, KP = 1;
    shape[0] = c->N, shape[nsp + 1] = c->O;
    for (int i = 0; i < nsp; i++) {
        L[i] = (c->S[i] - 1) * c->stride[i] - 2 * c->lo[i] + c->kd[i] * (c->K[i] - 1) + op[i] + 1;
        shape[1 + i] = L[i], P *= L[i], SP *= c->S[i], KP *= c->K[i];
    }
    double *y = calloc((size_t)(c->N * P * c->O + 1), sizeof(double));
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t sj = 0; sj < SP; sj++)
            for (int64_t t = 0; t < KP; t++) {
                int64_t j[3], k[3], r = sj, q = t, yi = n, ok = 1;
                for (int i = nsp - 1; i >= 0; i--) j[i] = r % c->S[i], r /= c->S[i];
                for (int i = nsp - 1; i >= 0; i--) k[i] = q % c->K[i], q /= c->K[i];
                for (int i = 0; i < nsp; i++) {
                    int64_t p = j[i] * c->stride[i] + k[i] * c->kd[i] - c->lo[i];
                    ok &= p >= 0 && p < L[i];
                    yi = yi * L[i] + p;
                }
                if (!ok) continue;
                for (int64_t co = 0; co < c->O; co++) {
                    int64_t g = co / Og;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        y[yi * c->O + co] += x[(n * SP + sj) * c->C + g * Cg + ci] *
                                             w[(co * KP + t) * Cg + ci];
                }
            }
    return y;
}

TEST(conv_transpose_values)
{
    pn_scope_push();
    for (int nsp = 1; nsp <= 3; nsp++)
        for (int v = 0; v < 4; v++) {
            conv_cfg c = cfg(nsp, 2, v == 2 ? 4 : 3, v == 2 ? 6 : 2, nsp == 3 ? 3 : 5, 3);
            int op[3] = {0, 0, 0};
            if (v == 2) c.groups = 2;
            for (int i = 0; i < nsp; i++) {
                if (v >= 1) c.stride[i] = 2 + (i == 1);
                if (v == 1 || v == 3) c.lo[i] = 1;
                if (v == 3) c.kd[i] = 2, op[i] = 1, c.lo[i] = 2 - i % 2;
                if (v == 1 && i == 0) op[i] = 1;
            }
            pn_dtype dt = v == 3 ? PN_FLOAT64 : PN_FLOAT32;
            pn_array *x, *w;
            make_inputs(&c, dt, v % 3, &x, &w);
            pn_array *y = nsp == 1 ? pn_conv_transpose1d(x, w, c.stride[0], c.lo[0], c.kd[0], op[0], c.groups)
                          : nsp == 2 ? pn_conv_transpose2d(x, w, c.stride, c.lo, c.kd, op, c.groups)
                                     : pn_conv_transpose3d(x, w, c.stride, c.lo, c.kd, op, c.groups);
            double *xd = test_to_f64(x), *wd = test_to_f64(w);
            int64_t shape[5];
            double *ref = ref_conv_transpose(&c, op, xd, wd, shape);
            char name[64];
            snprintf(name, sizeof name, "conv_transpose%dd variant %d", nsp, v);
            test_check_values(name, y, shape, nsp + 2, dt, ref, 1e-5, 1e-5);
            free(xd), free(wd), free(ref);
        }
    pn_scope_pop();
}

TEST(convolve_values)
{
    pn_scope_push();
    const char *modes[] = {"full", "same", "valid"};
    int64_t sizes[][2] = {{1, 1}, {9, 3}, {8, 4}, {4, 9}, {7, 7}, {3, 8}};
    for (int s = 0; s < 6; s++)
        for (int m = 0; m < 3; m++) {
            int64_t M = sizes[s][0], N = sizes[s][1];
            pn_array *a = test_random_array(&M, 1, PN_FLOAT32, -1, 1);
            pn_array *v = test_random_array(&N, 1, PN_FLOAT32, -1, 1);
            double *ad = test_to_f64(a), *vd = test_to_f64(v);
            int64_t full = M + N - 1, len = m == 0 ? full : m == 1 ? max64(M, N) : max64(M, N) - (M < N ? M : N) + 1;
            int64_t start = m == 0 ? 0 : m == 1 ? ((M < N ? M : N) - 1) / 2 : (M < N ? M : N) - 1;
            double *ref = calloc((size_t)len, sizeof(double));
            for (int64_t i = 0; i < len; i++)
                for (int64_t j = 0; j < M; j++) {
                    int64_t k = i + start - j; /* numpy: full[i] = sum a[j] v[i - j] */
                    if (k >= 0 && k < N) ref[i] += ad[j] * vd[k];
                }
            char name[64];
            snprintf(name, sizeof name, "convolve %lld,%lld %s", (long long)M, (long long)N, modes[m]);
            test_check_values(name, pn_convolve(a, v, modes[m]), &len, 1, PN_FLOAT32, ref, 1e-5, 1e-5);
            free(ad), free(vd), free(ref);
        }
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

static pn_array *conv_fn(void *ctx, pn_array *const *in) { return conv_of(ctx, in[0], in[1]); }

static void gradcheck_cfg(const char *name, const conv_cfg *c)
{
    pn_scope_push();
    pn_array *x, *w;
    make_inputs(c, PN_FLOAT64, 0, &x, &w);
    CHECK_MSG(test_gradcheck(name, conv_fn, (void *)c, 2, (pn_array *[]){x, w}, 1e-6), "%s", name);
    pn_scope_pop();
}

TEST(conv_gradients)
{
    pn_scope_push();
    conv_cfg cs[16];
    int n = 0;
    cs[n++] = cfg(1, 2, 3, 2, 7, 3);
    cs[n] = cfg(1, 2, 2, 3, 8, 3), cs[n].stride[0] = 2, cs[n].lo[0] = 1, cs[n].hi[0] = 2, n++;
    cs[n] = cfg(1, 1, 2, 2, 9, 2), cs[n].stride[0] = 3, n++; /* unused tail of the input */
    cs[n] = cfg(1, 2, 2, 2, 6, 3), cs[n].kd[0] = 2, cs[n].lo[0] = 3, n++;
    cs[n] = cfg(1, 1, 2, 2, 4, 3), cs[n].id[0] = 2, cs[n].lo[0] = 1, cs[n].stride[0] = 2, n++;
    cs[n] = cfg(1, 2, 4, 6, 5, 2), cs[n].groups = 2, cs[n].flip = true, cs[n].hi[0] = 1, n++;
    cs[n] = cfg(1, 1, 3, 3, 6, 3), cs[n].groups = 3, cs[n].lo[0] = 4, cs[n].hi[0] = 1, n++;
    cs[n] = cfg(1, 2, 2, 2, 8, 2), cs[n].lo[0] = -2, cs[n].hi[0] = -1, cs[n].stride[0] = 2, n++;
    cs[n] = cfg(2, 1, 2, 2, 5, 3), cs[n].lo[0] = 1, cs[n].hi[1] = 2, cs[n].stride[1] = 2, n++;
    cs[n] = cfg(2, 1, 4, 4, 4, 2), cs[n].groups = 2, cs[n].kd[0] = 2, cs[n].id[1] = 2,
    cs[n].flip = true, n++;
    cs[n] = cfg(2, 2, 2, 3, 3, 1), n++;
    cs[n] = cfg(3, 1, 2, 2, 3, 2), cs[n].stride[2] = 2, cs[n].lo[0] = 1, n++;
    cs[n] = cfg(1, 1, 2, 2, 5, 2), cs[n].id[0] = 3, cs[n].stride[0] = 2, cs[n].kd[0] = 2,
    cs[n].lo[0] = 2, cs[n].hi[0] = 1, cs[n].flip = true, n++;
    for (int i = 0; i < n; i++) {
        char name[48];
        snprintf(name, sizeof name, "conv grad case %d", i);
        gradcheck_cfg(name, &cs[i]);
    }
    pn_scope_pop();
}

/* The gradient of a transposed convolution (a convolution over a dilated input). */
static pn_array *conv_t2_fn(void *ctx, pn_array *const *in)
{
    return pn_conv_transpose2d(in[0], in[1], (int[]){2, 1}, (int[]){1, 0}, NULL, (int[]){1, 0}, 1);
}

TEST(conv_transpose_gradients)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){1, 3, 3, 2}, 4, PN_FLOAT64, -1, 1);
    pn_array *w = test_random_array((int64_t[]){2, 3, 2, 2}, 4, PN_FLOAT64, -1, 1);
    CHECK(test_gradcheck("conv_transpose2d", conv_t2_fn, NULL, 2, (pn_array *[]){x, w}, 1e-6));
    pn_scope_pop();
}

/* d/dw of sum(conv(x, w)^2): its own gradient checks the derivatives of the vjp's
 * convolutions (grad of grad). */
typedef struct gg_ctx {
    conv_cfg c;
    pn_closure *grad;
} gg_ctx;

static int sq_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_square(conv_of(ctx, in[0], in[1])), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *grad_fn(void *ctx, pn_array *const *in)
{
    gg_ctx *g = ctx;
    pn_array *out[2];
    int nout = 2;
    if (pn_closure_call(g->grad, 2, in, &nout, out) != 0) return NULL;
    /* both gradients in one output */
    pn_array *parts[2] = {pn_flatten(out[0], 0, -1), pn_flatten(out[1], 0, -1)};
    return pn_concatenate(parts, 2, 0);
}

TEST(conv_grad_of_grad)
{
    pn_scope_push();
    conv_cfg cs[3];
    cs[0] = cfg(1, 1, 2, 2, 6, 3), cs[0].stride[0] = 2, cs[0].lo[0] = 1;
    cs[1] = cfg(1, 1, 4, 2, 5, 2), cs[1].groups = 2, cs[1].flip = true, cs[1].kd[0] = 2;
    cs[2] = cfg(2, 1, 2, 2, 4, 2), cs[2].id[0] = 2, cs[2].hi[1] = 1;
    for (int i = 0; i < 3; i++) {
        gg_ctx g = {cs[i], NULL};
        pn_closure *f = pn_closure_new(sq_loss, &g.c, NULL);
        g.grad = pn_grad(f, (int[]){0, 1}, 2);
        pn_array *x, *w;
        make_inputs(&g.c, PN_FLOAT64, 0, &x, &w);
        char name[48];
        snprintf(name, sizeof name, "conv grad of grad %d", i);
        CHECK_MSG(test_gradcheck(name, grad_fn, &g, 2, (pn_array *[]){x, w}, 1e-5), "%s", name);
        pn_closure_release(g.grad);
        pn_closure_release(f);
    }
    pn_scope_pop();
}

/* vmap over the input, the weight, or both (grouped, strided): each batch element equals the
 * unbatched convolution. */
static int conv_closure(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_conv2d(in[0], in[1], (int[]){1, 2}, (int[]){1, 0}, NULL, 2);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(conv_vmap)
{
    pn_scope_push();
    int64_t xs[5] = {2, 3, 5, 4, 4}, ws[5] = {6, 3, 3, 3, 2}; /* mapped axes: x 1, w 3 */
    pn_array *xb = test_random_array(xs, 5, PN_FLOAT32, -1, 1);
    pn_array *wb = test_random_array(ws, 5, PN_FLOAT32, -1, 1);
    pn_array *x1 = pn_take(xb, pn_scalar_int(0, PN_INT32), 1);
    pn_array *w1 = pn_take(wb, pn_scalar_int(0, PN_INT32), 3);
    pn_closure *f = pn_closure_new(conv_closure, NULL, NULL);
    for (int mode = 0; mode < 3; mode++) {
        int in_axes[2] = {mode != 1 ? 1 : -1, mode != 0 ? 3 : -1};
        pn_closure *vf = pn_vmap(f, in_axes, 2, (int[]){2}, 1);
        pn_array *out[1] = {NULL};
        int nout = 1;
        pn_array *args[2] = {mode != 1 ? xb : x1, mode != 0 ? wb : w1};
        CHECK_MSG(pn_closure_call(vf, 2, args, &nout, out) == 0, "vmap mode %d: %s", mode,
                  pn_last_error_message());
        for (int b = 0; out[0] && b < 3; b++) {
            pn_array *xi = mode != 1 ? pn_take(xb, pn_scalar_int(b, PN_INT32), 1) : x1;
            pn_array *wi = mode != 0 ? pn_take(wb, pn_scalar_int(b, PN_INT32), 3) : w1;
            pn_array *yb = pn_conv2d(xi, wi, (int[]){1, 2}, (int[]){1, 0}, NULL, 2);
            pn_array *vb = pn_take(out[0], pn_scalar_int(b, PN_INT32), 2);
            CHECK_MSG(pn_item(pn_allclose(yb, vb, 1e-5, 1e-6, false)) == 1, "vmap mode %d, element %d", mode, b);
        }
        pn_closure_release(vf);
    }
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── pooling ───────────────────────────── */

typedef struct pool_cfg {
    int nsp;
    int64_t N, C, S[3];
    int k[3], s[3], p[3];
    bool is_max;
} pool_cfg;

static pn_array *pool_of(const pool_cfg *c, pn_array *x)
{
    if (c->nsp == 1)
        return c->is_max ? pn_nn_max_pool1d(x, c->k[0], c->s[0], c->p[0])
                         : pn_nn_avg_pool1d(x, c->k[0], c->s[0], c->p[0]);
    const int *s = c->s[0] ? c->s : NULL;
    if (c->nsp == 2)
        return c->is_max ? pn_nn_max_pool2d(x, c->k, s, c->p) : pn_nn_avg_pool2d(x, c->k, s, c->p);
    return c->is_max ? pn_nn_max_pool3d(x, c->k, s, c->p) : pn_nn_avg_pool3d(x, c->k, s, c->p);
}

/* Pooling from its definition; writes the output shape. */
static double *ref_pool(const pool_cfg *c, const double *x, int64_t *shape)
{
    int nsp = c->nsp;
    int64_t P = 1, KP = 1, st[3];
    shape[0] = c->N, shape[nsp + 1] = c->C;
    for (int i = 0; i < nsp; i++) {
        st[i] = c->s[i] ? c->s[i] : c->k[i];
        shape[1 + i] = (c->S[i] + 2 * c->p[i] - c->k[i]) / st[i] + 1;
        P *= shape[1 + i], KP *= c->k[i];
    }
    double *y = malloc(sizeof(double) * (size_t)(c->N * P * c->C + 1));
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t q = 0; q < P; q++)
            for (int64_t ch = 0; ch < c->C; ch++) {
                int64_t o[3], r = q;
                for (int i = nsp - 1; i >= 0; i--) o[i] = r % shape[1 + i], r /= shape[1 + i];
                double acc = c->is_max ? -INFINITY : 0;
                for (int64_t t = 0; t < KP; t++) {
                    int64_t k[3], u = t, xi = n, ok = 1;
                    for (int i = nsp - 1; i >= 0; i--) k[i] = u % c->k[i], u /= c->k[i];
                    for (int i = 0; i < nsp; i++) {
                        int64_t j = o[i] * st[i] + k[i] - c->p[i];
                        ok &= j >= 0 && j < c->S[i];
                        xi = xi * c->S[i] + j;
                    }
                    double v = ok ? x[xi * c->C + ch] : (c->is_max ? -INFINITY : 0);
                    acc = c->is_max ? (v > acc ? v : acc) : acc + v;
                }
                y[(n * P + q) * c->C + ch] = c->is_max ? acc : acc / (double)KP;
            }
    return y;
}

static pool_cfg pcfg(int nsp, bool is_max, int64_t S, int k, int s, int p)
{
    pool_cfg c;
    memset(&c, 0, sizeof c);
    c.nsp = nsp, c.N = 2, c.C = 3, c.is_max = is_max;
    for (int i = 0; i < nsp && i < 3; i++) c.S[i] = S + i, c.k[i] = k, c.s[i] = s, c.p[i] = p;
    return c;
}

TEST(pool_values)
{
    pn_scope_push();
    for (int nsp = 1; nsp <= 3; nsp++)
        for (int m = 0; m < 2; m++) {
            pool_cfg cs[5];
            int64_t S = nsp == 3 ? 4 : 6;
            cs[0] = pcfg(nsp, m, S, 2, 0, 0);         /* tiled when the extent divides */
            cs[0].S[0] = S;
            for (int i = 0; i < nsp; i++) cs[0].S[i] = S;
            cs[1] = pcfg(nsp, m, S + 1, 2, 0, 0);     /* a tail that no window covers */
            cs[2] = pcfg(nsp, m, S, 3, 2, 1);         /* overlapping, padded */
            cs[3] = pcfg(nsp, m, S, 3, 1, 0);
            cs[4] = pcfg(nsp, m, S, 2, 2, 1);         /* tiled after padding */
            for (int i = 0; i < 5; i++)
                for (int d = 0; d < 4; d++) {
                    pn_dtype dt = FLOATS[d];
                    int64_t xs[5] = {cs[i].N};
                    for (int a = 0; a < nsp; a++) xs[1 + a] = cs[i].S[a];
                    xs[nsp + 1] = cs[i].C;
                    pn_array *x = test_random_array(xs, nsp + 2, dt, -2, 2);
                    if (d == 1) x = pn_swapaxes(pn_copy(pn_swapaxes(x, 0, 1)), 0, 1); /* strided */
                    pn_array *y = pool_of(&cs[i], x);
                    double *xd = test_to_f64(x);
                    int64_t shape[5];
                    double *ref = ref_pool(&cs[i], xd, shape);
                    char name[64];
                    snprintf(name, sizeof name, "%s_pool%dd case %d %s", m ? "max" : "avg", nsp, i,
                             pn_dtype_name(dt));
                    test_check_values(name, y, shape, nsp + 2, dt, ref, test_tol(dt), test_tol(dt));
                    free(xd), free(ref);
                }
        }
    /* integers: max pooling pads with the lowest value, average pooling gives float32 */
    pool_cfg c = pcfg(2, true, 5, 3, 2, 1);
    pn_array *x = test_random_array((int64_t[]){2, 5, 6, 3}, 4, PN_INT32, -100, -50);
    double *xd = test_to_f64(x);
    int64_t shape[4];
    double *ref = ref_pool(&c, xd, shape);
    test_check_values("max_pool2d int32", pool_of(&c, x), shape, 4, PN_INT32, ref, 0, 0);
    free(ref);
    c.is_max = false;
    ref = ref_pool(&c, xd, shape);
    test_check_values("avg_pool2d int32", pool_of(&c, x), shape, 4, PN_FLOAT32, ref, 1e-6, 1e-5);
    free(ref), free(xd);
    pn_scope_pop();
}

static pn_array *pool_fn(void *ctx, pn_array *const *in) { return pool_of(ctx, in[0]); }

TEST(pool_gradients)
{
    pn_scope_push();
    for (int nsp = 1; nsp <= 2; nsp++)
        for (int m = 0; m < 2; m++) {
            pool_cfg cs[3] = {pcfg(nsp, m, 4, 2, 0, 0), pcfg(nsp, m, 5, 3, 2, 1), pcfg(nsp, m, 5, 2, 1, 0)};
            for (int i = 0; i < 3; i++) {
                cs[i].N = 1, cs[i].C = 2;
                int64_t xs[4] = {1};
                for (int a = 0; a < nsp; a++) xs[1 + a] = cs[i].S[a];
                xs[nsp + 1] = 2;
                pn_array *x = test_random_array(xs, nsp + 2, PN_FLOAT64, -1, 1);
                char name[48];
                snprintf(name, sizeof name, "%s_pool%dd grad %d", m ? "max" : "avg", nsp, i);
                CHECK_MSG(test_gradcheck(name, pool_fn, &cs[i], 1, &x, 1e-6), "%s", name);
            }
        }
    pool_cfg c3 = pcfg(3, true, 3, 2, 1, 0);
    c3.N = 1, c3.C = 1;
    pn_array *x = test_random_array((int64_t[]){1, 3, 4, 5, 1}, 5, PN_FLOAT64, -1, 1);
    CHECK(test_gradcheck("max_pool3d grad", pool_fn, &c3, 1, &x, 1e-6));
    pn_scope_pop();
}

TEST(pool_errors)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){2, 6, 6, 3}, 4, PN_FLOAT32, -1, 1);
    CHECK_OK(pn_nn_max_pool2d(x, (int[]){2, 2}, NULL, NULL));
    CHECK_ERR(pn_nn_max_pool1d(x, 2, 0, 0), PN_ERR_INVALID_ARGUMENT);       /* rank */
    CHECK_ERR(pn_nn_avg_pool3d(x, (int[]){2, 2, 2}, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_max_pool2d(x, (int[]){0, 2}, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_max_pool2d(x, (int[]){2, 2}, (int[]){1, -1}, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_avg_pool2d(x, (int[]){2, 2}, NULL, (int[]){-1, 0}), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_avg_pool2d(x, (int[]){7, 2}, NULL, NULL), PN_ERR_INVALID_ARGUMENT); /* too big */
    CHECK_ERR(pn_nn_max_pool2d(x, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_max_pool2d(NULL, (int[]){2, 2}, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
