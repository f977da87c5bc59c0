/* test_conv_paths.c — the CPU convolution kernel's fast paths against a float64 reference
 * written here: the transposed product for few output channels per group (forward and input
 * gradient of a CNN layer), and the direct weight gradient for few input channels (a first
 * layer), each beside the general path it replaces (more channels), in 1, 2 and 3 spatial
 * dimensions with strides, padding and kernel dilation, float32 and float64; and products
 * spread over many tiles of rows shared by the threads. */
#include "core/core.h"
#include "harness.h"

#include <string.h>

/* One convolution: x (N, S..., C), w (O, K..., C / groups), symmetric padding. */
typedef struct path_cfg {
    int nsp;
    int64_t N, C, O, S, K;
    int stride, pad, kdil, groups;
} path_cfg;

static int64_t out_extent(const path_cfg *c) { return (c->S + 2 * c->pad - (c->K - 1) * c->kdil - 1) / c->stride + 1; }

static int64_t pw(int64_t b, int e)
{
    int64_t r = 1;
    for (int i = 0; i < e; i++) r *= b;
    return r;
}

/* y = conv(x, w) and, for the cotangent g of y, dx and dw, all from the definition. Every
 * output array is (re)set here. */
static void reference(const path_cfg *c, const double *x, const double *w, const double *g,
                      double *y, double *dx, double *dw)
{
    int nsp = c->nsp;
    int64_t Q = out_extent(c), P = pw(Q, nsp), KP = pw(c->K, nsp), SP = pw(c->S, nsp);
    int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
    memset(y, 0, sizeof(double) * (size_t)(c->N * P * c->O));
    memset(dx, 0, sizeof(double) * (size_t)(c->N * SP * c->C));
    memset(dw, 0, sizeof(double) * (size_t)(c->O * KP * Cg));
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t p = 0; p < P; p++)
            for (int64_t t = 0; t < KP; t++) {
                int64_t xi = 0, pr = p, tr = t, q[3], k[3];
                for (int d = nsp - 1; d >= 0; d--) q[d] = pr % Q, pr /= Q, k[d] = tr % c->K, tr /= c->K;
                bool valid = true;
                for (int d = 0; d < nsp && valid; d++) {
                    int64_t j = q[d] * c->stride + k[d] * c->kdil - c->pad;
                    valid = j >= 0 && j < c->S;
                    xi = xi * c->S + j;
                }
                if (!valid) continue;
                for (int64_t o = 0; o < c->O; o++) {
                    int64_t grp = o / Og, yi = (n * P + p) * c->O + o;
                    for (int64_t ch = 0; ch < Cg; ch++) {
                        int64_t xe = (n * SP + xi) * c->C + grp * Cg + ch, we = (o * KP + t) * Cg + ch;
                        y[yi] += x[xe] * w[we];
                        dx[xe] += g[yi] * w[we];
                        dw[we] += g[yi] * x[xe];
                    }
                }
            }
}

typedef struct path_ctx {
    const path_cfg *c;
} path_ctx;

static int path_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const path_cfg *c = ((path_ctx *)ctx)->c;
    int s[3] = {c->stride, c->stride, c->stride}, p[3] = {c->pad, c->pad, c->pad};
    int kd[3] = {c->kdil, c->kdil, c->kdil}, id[3] = {1, 1, 1};
    (void)nin;
    out[0] = pn_conv_general(in[0], in[1], s, p, p, kd, id, c->groups, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* Forward, input and weight gradients of c in dtype dt against the reference. */
static void check_path(const char *what, const path_cfg *c, pn_dtype dt)
{
    pn_scope_push();
    int nd = c->nsp + 2;
    int64_t xs[5], ws[5], ys[5], Q = out_extent(c);
    xs[0] = c->N, ws[0] = c->O, ys[0] = c->N;
    for (int i = 0; i < c->nsp; i++) xs[1 + i] = c->S, ws[1 + i] = c->K, ys[1 + i] = Q;
    xs[nd - 1] = c->C, ws[nd - 1] = c->C / c->groups, ys[nd - 1] = c->O;
    pn_array *x = test_random_array(xs, nd, dt, -1, 1), *w = test_random_array(ws, nd, dt, -1, 1);
    pn_array *g = test_random_array(ys, nd, dt, -1, 1);
    pn_closure *f = pn_closure_new(path_fn, &(path_ctx){c}, NULL);
    pn_array *out[1] = {NULL}, *grads[2] = {NULL, NULL};
    int nout = 1;
    CHECK_OK(f && pn_vjp(f, 2, (pn_array *[]){x, w}, 1, &g, &nout, out, grads) == 0);
    pn_closure_release(f);
    double *xd = test_to_f64(x), *wd = test_to_f64(w), *gd = test_to_f64(g);
    if (xd && wd && gd && out[0] && grads[0] && grads[1]) {
        double *y = malloc(sizeof(double) * (size_t)pn_size(out[0]));
        double *dx = malloc(sizeof(double) * (size_t)pn_size(x)), *dw = malloc(sizeof(double) * (size_t)pn_size(w));
        reference(c, xd, wd, gd, y, dx, dw);
        double tol = test_tol(dt);
        int64_t red = (c->C / c->groups) * pw(c->K, c->nsp), redw = c->N * pw(Q, c->nsp);
        char name[160];
        snprintf(name, sizeof name, "%s %s forward", what, pn_dtype_name(dt));
        test_check_values(name, out[0], ys, nd, dt, y, tol, tol * (1 + sqrt((double)red)));
        snprintf(name, sizeof name, "%s %s input gradient", what, pn_dtype_name(dt));
        test_check_values(name, grads[0], xs, nd, dt, dx, tol, tol * (1 + sqrt((double)(c->O * red))));
        snprintf(name, sizeof name, "%s %s weight gradient", what, pn_dtype_name(dt));
        test_check_values(name, grads[1], ws, nd, dt, dw, tol, tol * (1 + sqrt((double)redw)));
        free(y), free(dx), free(dw);
    }
    free(xd), free(wd), free(gd);
    pn_scope_pop();
}

static void check_all(const char *what, const path_cfg *cs, int n)
{
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s case %d", what, i);
        check_path(name, &cs[i], PN_FLOAT32);
        check_path(name, &cs[i], PN_FLOAT64);
    }
}

/* Few output channels per group (<= 32) over a reduction longer than the direct path's: the
 * transposed product in the forward pass and in the input gradient; then 48 and 64 output
 * channels (the usual product). */
TEST(conv_few_output_channels)
{
    pn_scope_push();
    bool q = test_quick();
    path_cfg cs[] = {
        {2, q ? 2 : 8, 32, 16, q ? 6 : 14, 3, 1, 1, 1, 1}, /* a CNN's second layer, narrow */
        {2, q ? 2 : 4, 16, 32, q ? 7 : 12, 3, 2, 1, 1, 1}, /* strided */
        {2, 2, 32, 32, q ? 6 : 10, 3, 1, 2, 2, 2},          /* dilated, 2 groups of 16 */
        {1, 3, 24, 8, q ? 20 : 50, 5, 1, 2, 1, 1},          /* 1-d */
        {3, 1, 12, 16, q ? 4 : 6, 3, 1, 1, 1, 1},           /* 3-d */
        {2, q ? 2 : 4, 32, 48, q ? 6 : 10, 3, 1, 1, 1, 1},  /* 48 and 64 channels: usual path */
        {2, 2, 32, 64, q ? 6 : 9, 3, 2, 0, 1, 1},
    };
    check_all("few output channels", cs, (int)(sizeof cs / sizeof *cs));
    pn_scope_pop();
}

/* Few input channels (1, 3: P * C <= 32 taps times channels) in the weight gradient: the
 * direct path; then 4 and 8 channels (36 and 72 columns: the GEMM over the swapped layout). */
TEST(conv_weight_grad_few_inputs)
{
    pn_scope_push();
    bool q = test_quick();
    path_cfg cs[] = {
        {2, q ? 4 : 16, 1, 32, q ? 10 : 28, 3, 1, 1, 1, 1}, /* a CNN's first layer */
        {2, q ? 3 : 8, 3, 16, q ? 9 : 20, 3, 2, 1, 1, 1},   /* RGB, strided */
        {2, 2, 1, 8, 11, 3, 1, 2, 2, 1},                    /* dilated */
        {1, 4, 2, 8, q ? 20 : 64, 5, 1, 2, 1, 1},           /* 1-d: 10 columns */
        {3, 2, 1, 4, q ? 5 : 7, 3, 1, 1, 1, 1},             /* 3-d: 27 columns */
        {2, q ? 3 : 8, 4, 16, q ? 9 : 20, 3, 1, 1, 1, 1},   /* 36 columns: GEMM */
        {2, 2, 8, 8, 10, 3, 1, 1, 1, 1},                    /* 72 columns: GEMM */
    };
    check_all("weight grad few inputs", cs, (int)(sizeof cs / sizeof *cs));
    pn_scope_pop();
}

/* Products over several tiles of im2col (or weight-gradient) rows shared by the threads: row
 * counts far above one tile and not a multiple of it, batch 1, odd sizes, groups, strides,
 * kernel dilation, 1-d; the weight gradients split in several partial products; and the
 * direct paths of first layers with whole and partial blocks of output channels. */
TEST(conv_shared_tiles)
{
    pn_scope_push();
    bool q = test_quick();
    path_cfg cs[] = {
        {2, q ? 2 : 6, 32, 64, q ? 12 : 20, 3, 1, 1, 1, 1}, /* a CNN's second layer */
        {2, 1, 32, 24, q ? 15 : 31, 3, 1, 1, 1, 1},         /* batch 1, odd size, narrow */
        {2, 3, 48, 48, q ? 11 : 21, 3, 2, 1, 1, 3},         /* 3 groups, strided */
        {1, 4, 64, 40, q ? 100 : 300, 5, 1, 4, 2, 1},       /* 1-d, dilated */
        {3, 2, 16, 32, q ? 6 : 9, 3, 1, 1, 1, 1},           /* 3-d */
        {2, q ? 2 : 5, 3, 48, q ? 9 : 30, 3, 1, 1, 1, 1},   /* first layer, 48 channels */
        {2, 3, 1, 40, q ? 8 : 17, 5, 2, 2, 1, 1},           /* first layer, 40, strided */
    };
    check_all("shared tiles", cs, (int)(sizeof cs / sizeof *cs));
    pn_scope_pop();
}

/* Gradients of a first layer against finite differences (through the direct weight-gradient
 * path) and of a narrow layer (through the transposed product). */
static pn_array *grad_fn(void *ctx, pn_array *const *in)
{
    const path_cfg *c = ctx;
    int s[2] = {c->stride, c->stride}, p[2] = {c->pad, c->pad};
    return pn_conv2d(in[0], in[1], s, p, NULL, c->groups);
}

TEST(conv_paths_gradcheck)
{
    pn_scope_push();
    path_cfg cs[] = {{2, 2, 1, 8, 6, 3, 1, 1, 1, 1}, {2, 2, 12, 4, 5, 3, 1, 1, 1, 1}};
    for (int i = 0; i < 2; i++) {
        const path_cfg *c = &cs[i];
        pn_array *x = test_random_array((int64_t[]){c->N, c->S, c->S, c->C}, 4, PN_FLOAT64, -1, 1);
        pn_array *w = test_random_array((int64_t[]){c->O, c->K, c->K, c->C}, 4, PN_FLOAT64, -1, 1);
        CHECK(test_gradcheck(i ? "narrow layer" : "first layer", grad_fn, (void *)c, 2, (pn_array *[]){x, w}, 1e-6));
    }
    pn_scope_pop();
}
