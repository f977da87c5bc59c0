/* test_pooling.c — max/average pooling on wide channel axes (where the CPU reduces the windows
 * in place, without a dense copy) and reductions of strided views in general, against float64
 * references: contiguous and non-contiguous inputs, padding, strides != kernel, 1-3 spatial
 * axes, ties (the gradient split evenly among them, as MLX) and finite differences. */
#include "harness.h"

#include <string.h>

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
    if (c->nsp == 2)
        return c->is_max ? pn_nn_max_pool2d(x, c->k, c->s, c->p)
                         : pn_nn_avg_pool2d(x, c->k, c->s, c->p);
    return c->is_max ? pn_nn_max_pool3d(x, c->k, c->s, c->p) : pn_nn_avg_pool3d(x, c->k, c->s, c->p);
}

static pn_array *pool_fn(void *ctx, pn_array *const *in) { return pool_of(ctx, in[0]); }

/* pool_of as a pn_fn (for pn_vjp). */
static int pool_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    out[0] = pool_of(ctx, in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int64_t out_extent(const pool_cfg *c, int i)
{
    return (c->S[i] + 2 * c->p[i] - c->k[i]) / c->s[i] + 1;
}

/* Visits every (output element, input element of its window) pair of pooling c: calls
 * visit(ctx, output index, input index or -1 for padding, window slot). */
static void for_windows(const pool_cfg *c, void (*visit)(void *, int64_t, int64_t), void *ctx)
{
    int nsp = c->nsp;
    int64_t P = 1, KP = 1, out[3];
    for (int i = 0; i < nsp; i++) out[i] = out_extent(c, i), P *= out[i], KP *= c->k[i];
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t q = 0; q < P; q++)
            for (int64_t ch = 0; ch < c->C; ch++) {
                int64_t o[3], r = q;
                for (int i = nsp - 1; i >= 0; i--) o[i] = r % out[i], r /= out[i];
                for (int64_t t = 0; t < KP; t++) {
                    int64_t k[3], u = t, xi = n, ok = 1;
                    for (int i = nsp - 1; i >= 0; i--) k[i] = u % c->k[i], u /= c->k[i];
                    for (int i = 0; i < nsp; i++) {
                        int64_t j = o[i] * c->s[i] + k[i] - c->p[i];
                        ok &= j >= 0 && j < c->S[i];
                        xi = xi * c->S[i] + j;
                    }
                    visit(ctx, (n * P + q) * c->C + ch, ok ? xi * c->C + ch : -1);
                }
            }
}

typedef struct ref_ctx {
    const pool_cfg *c;
    const double *x, *cot;
    double *y, *cnt, *g;
    int pass;
} ref_ctx;

/* pass 0: y = max or sum of the window (padding -inf / 0); pass 1: cnt = the number of
 * window elements equal to the max; pass 2: g[x] += cot / cnt where x equals the max. */
static void ref_visit(void *vctx, int64_t yi, int64_t xi)
{
    ref_ctx *r = vctx;
    double v = xi >= 0 ? r->x[xi] : (r->c->is_max ? -INFINITY : 0);
    if (r->pass == 0) r->y[yi] = r->c->is_max ? (v > r->y[yi] ? v : r->y[yi]) : r->y[yi] + v;
    else if (r->pass == 1) r->cnt[yi] += v == r->y[yi];
    else if (xi >= 0 && v == r->y[yi]) r->g[xi] += r->cot[yi] / r->cnt[yi];
}

/* The pooled output (and its shape) of x under c; with cot, also the max pooling gradient
 * into g (size of x). Returns the malloc'd output. */
static double *ref_pool(const pool_cfg *c, const double *x, int64_t *shape, const double *cot,
                        double *g)
{
    int64_t ny = c->N * c->C, KP = 1;
    shape[0] = c->N, shape[c->nsp + 1] = c->C;
    for (int i = 0; i < c->nsp; i++) shape[1 + i] = out_extent(c, i), ny *= shape[1 + i], KP *= c->k[i];
    ref_ctx r = {c, x, cot, malloc(sizeof(double) * (size_t)ny), calloc((size_t)ny, sizeof(double)), g, 0};
    for (int64_t i = 0; i < ny; i++) r.y[i] = c->is_max ? -INFINITY : 0;
    for_windows(c, ref_visit, &r);
    if (!c->is_max)
        for (int64_t i = 0; i < ny; i++) r.y[i] /= (double)KP;
    if (cot) {
        r.pass = 1;
        for_windows(c, ref_visit, &r);
        r.pass = 2;
        for_windows(c, ref_visit, &r);
    }
    free(r.cnt);
    return r.y;
}

static pool_cfg pcfg(int nsp, bool is_max, int64_t C, int64_t S, int k, int s, int p)
{
    pool_cfg c;
    memset(&c, 0, sizeof c);
    c.nsp = nsp, c.N = 2, c.C = C, c.is_max = is_max;
    for (int i = 0; i < nsp && i < 3; i++) c.S[i] = S + i, c.k[i] = k, c.s[i] = s, c.p[i] = p;
    return c;
}

/* x of c's input shape in one of four layouts: 0 contiguous, 1 the channels a slice of a
 * wider array (rows not dense), 2 every other element of a longer first spatial axis, 3 the
 * batch and first spatial axes swapped in memory. Values: random in [lo, hi), rounded to
 * integers when ties is set. */
static pn_array *make_input(const pool_cfg *c, int layout, pn_dtype dt, bool ties)
{
    int nd = c->nsp + 2;
    int64_t xs[5] = {c->N};
    for (int a = 0; a < c->nsp; a++) xs[1 + a] = c->S[a];
    xs[nd - 1] = c->C;
    int64_t big[5];
    memcpy(big, xs, sizeof big);
    if (layout == 1) big[nd - 1] += 5;
    if (layout == 2) big[1] = 2 * xs[1];
    pn_array *x = test_random_array(big, nd, PN_FLOAT64, ties ? 0 : -2, ties ? 3 : 2);
    if (ties) x = pn_floor(x);
    x = pn_astype(x, dt);
    int64_t start[5] = {0}, step[5] = {1, 1, 1, 1, 1};
    if (layout == 1) start[nd - 1] = 2;
    if (layout == 2) step[1] = 2;
    if (layout == 1 || layout == 2) {
        int64_t stop[5];
        for (int a = 0; a < nd; a++) stop[a] = start[a] + (xs[a] - 1) * step[a] + 1;
        x = pn_slice(x, start, stop, step, nd);
    }
    if (layout == 3) x = pn_swapaxes(pn_copy(pn_swapaxes(x, 0, 1)), 0, 1);
    return x;
}

TEST(pool_wide_channels_values)
{
    pn_scope_push();
    const pn_dtype dts[3] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16};
    const int64_t Cs[3] = {8, 13, 33};
    int tested = 0;
    for (int nsp = 1; nsp <= 3; nsp++)
        for (int m = 0; m < 2; m++) {
            int64_t S = nsp == 3 ? 4 : 7;
            pool_cfg cs[5] = {
                pcfg(nsp, m, 8, S - 1, 2, 2, 0), /* tiled */
                pcfg(nsp, m, 8, S, 2, 2, 0),     /* a tail that no window covers */
                pcfg(nsp, m, 8, S, 3, 2, 1),     /* overlapping, padded */
                pcfg(nsp, m, 8, S, 2, 3, 0),     /* stride larger than the kernel */
                pcfg(nsp, m, 8, S, 3, 1, 1),
            };
            for (int i = 0; i < 5; i++)
                for (int v = 0; v < 6; v++) {
                    cs[i].C = Cs[v % 3];
                    int layout = (i + v) % 4;
                    pn_dtype dt = dts[(v + nsp) % 3];
                    pn_array *x = make_input(&cs[i], layout, dt, v % 2 == 1);
                    double *xd = test_to_f64(x);
                    int64_t shape[5];
                    double *ref = ref_pool(&cs[i], xd, shape, NULL, NULL);
                    char name[96];
                    snprintf(name, sizeof name, "%s_pool%dd case %d C %lld layout %d %s",
                             m ? "max" : "avg", nsp, i, (long long)cs[i].C, layout,
                             pn_dtype_name(dt));
                    tested += test_check_values(name, pool_of(&cs[i], x), shape, nsp + 2, dt, ref,
                                                test_tol(dt), test_tol(dt));
                    free(xd), free(ref);
                }
        }
    CHECK(tested == 3 * 2 * 5 * 6);
    /* integers: max keeps the dtype and pads with the lowest value */
    pool_cfg c = pcfg(2, true, 9, 5, 3, 2, 1);
    pn_array *x = pn_astype(pn_subtract(make_input(&c, 1, PN_FLOAT64, true),
                                        pn_scalar(10, PN_FLOAT64)), PN_INT32);
    double *xd = test_to_f64(x);
    int64_t shape[4];
    double *ref = ref_pool(&c, xd, shape, NULL, NULL);
    test_check_values("max_pool2d int32 C 9", pool_of(&c, x), shape, 4, PN_INT32, ref, 0, 0);
    free(ref), free(xd);
    pn_scope_pop();
}

/* The max pooling gradient with many ties (integer values in 0..2), against the reference
 * that splits each window's cotangent evenly among its maxima. */
TEST(pool_ties_gradient)
{
    pn_scope_push();
    for (int nsp = 1; nsp <= 3; nsp++) {
        int64_t S = nsp == 3 ? 4 : 6;
        pool_cfg cs[4] = {pcfg(nsp, true, 8, S, 2, 2, 0), pcfg(nsp, true, 16, S, 3, 2, 1),
                          pcfg(nsp, true, 9, S + 1, 2, 3, 0), pcfg(nsp, true, 12, S, 2, 1, 1)};
        for (int i = 0; i < 4; i++)
            for (int layout = 0; layout < 4; layout += 1 + (nsp == 3)) {
                pn_dtype dt = layout % 2 ? PN_FLOAT32 : PN_FLOAT64;
                pn_array *x = make_input(&cs[i], layout, dt, true);
                double *xd = test_to_f64(x);
                int64_t shape[5];
                double *y0 = ref_pool(&cs[i], xd, shape, NULL, NULL);
                int64_t ny = 1;
                for (int a = 0; a < nsp + 2; a++) ny *= shape[a];
                pn_array *cot = test_random_array(shape, nsp + 2, dt, -1, 1);
                double *cd = test_to_f64(cot);
                double *g = calloc((size_t)pn_size(x), sizeof(double));
                free(y0);
                double *y = ref_pool(&cs[i], xd, shape, cd, g);
                pn_closure *f = pn_closure_new(pool_call, &cs[i], NULL);
                int nout = 0;
                pn_array *out[1] = {NULL}, *grad[1] = {NULL};
                CHECK(pn_vjp(f, 1, &x, 1, &cot, &nout, out, grad) == 0);
                char name[80];
                snprintf(name, sizeof name, "max_pool%dd ties case %d layout %d %s", nsp, i,
                         layout, pn_dtype_name(dt));
                test_check_values(name, out[0], shape, nsp + 2, dt, y, 0, 0);
                test_check_values(name, grad[0], pn_shape(x), pn_ndim(x), dt, g, test_tol(dt),
                                  test_tol(dt));
                pn_closure_release(f);
                free(xd), free(cd), free(g), free(y);
            }
    }
    pn_scope_pop();
}

/* Finite differences through a wide channel axis (distinct values: no ties). */
TEST(pool_wide_gradcheck)
{
    pn_scope_push();
    for (int m = 0; m < 2; m++)
        for (int layout = 0; layout < 2; layout++) {
            pool_cfg c = pcfg(2, m, 8, 4, 3, 2, 1);
            c.N = 1;
            pn_array *x = make_input(&c, layout, PN_FLOAT64, false);
            char name[48];
            snprintf(name, sizeof name, "%s_pool2d C 8 layout %d grad", m ? "max" : "avg", layout);
            CHECK_MSG(test_gradcheck(name, pool_fn, &c, 1, &x, 1e-6), "%s", name);
        }
    pn_scope_pop();
}

/* ───────────────────────────── reductions of strided views ───────────────────────────── */

typedef enum { R_SUM, R_PROD, R_MAX, R_MIN, R_ALL, R_ANY, R_MEAN, R_COUNT } rop;
static const char *const ROP_NAMES[R_COUNT] = {"sum", "prod", "max", "min", "all", "any", "mean"};

static pn_array *reduce_op(rop op, pn_array *x, const int *axes, int n)
{
    switch (op) {
    case R_SUM: return pn_sum(x, axes, n, false);
    case R_PROD: return pn_prod(x, axes, n, false);
    case R_MAX: return pn_max(x, axes, n, false);
    case R_MIN: return pn_min(x, axes, n, false);
    case R_ALL: return pn_all(x, axes, n, false);
    case R_ANY: return pn_any(x, axes, n, false);
    default: return pn_mean(x, axes, n, false);
    }
}

/* op over the flagged axes of the row-major float64 x of shape (nd axes): out (kept axes,
 * row-major) and its element count in *nout. */
static double *ref_reduce(rop op, const double *x, const int64_t *shape, int nd, const bool *red,
                          int64_t *nout)
{
    int64_t total = 1, no = 1, cnt = 1;
    for (int i = 0; i < nd; i++) {
        total *= shape[i];
        if (red[i]) cnt *= shape[i];
        else no *= shape[i];
    }
    double *o = malloc(sizeof(double) * (size_t)no);
    const double init[R_COUNT] = {0, 1, -INFINITY, INFINITY, 1, 0, 0};
    for (int64_t i = 0; i < no; i++) o[i] = init[op];
    for (int64_t e = 0; e < total; e++) {
        int64_t r = e, oi = 0, mul = 1;
        for (int i = nd - 1; i >= 0; i--) {
            int64_t idx = r % shape[i];
            r /= shape[i];
            if (!red[i]) oi += idx * mul, mul *= shape[i];
        }
        double v = x[e], *a = &o[oi];
        switch (op) {
        case R_SUM:
        case R_MEAN: *a += v; break;
        case R_PROD: *a *= v; break;
        case R_MAX: *a = v > *a ? v : *a; break;
        case R_MIN: *a = v < *a ? v : *a; break;
        case R_ALL: *a = *a && v != 0; break;
        default: *a = *a || v != 0; break;
        }
    }
    if (op == R_MEAN)
        for (int64_t i = 0; i < no; i++) o[i] /= (double)cnt;
    *nout = no;
    return o;
}

/* Every reduction over window-like axis sets of strided views whose last axis is kept and
 * contiguous (the in-place window path), one longer than a kernel chunk included. */
TEST(window_reductions)
{
    pn_scope_push();
    typedef struct {
        int64_t shape[4];
        int nd;
        int axes[3], naxes;
    } rcase;
    const rcase cases[] = {
        {{3, 4, 5, 16}, 4, {1, 2}, 2}, {{3, 4, 5, 16}, 4, {0, 2}, 2}, {{3, 4, 5, 9}, 4, {1}, 1},
        {{2, 3, 4, 8}, 4, {0, 1, 2}, 3}, {{3, 2, 1100}, 3, {1}, 1}, {{4, 5, 12}, 3, {0}, 1},
    };
    const pn_dtype dts[4] = {PN_FLOAT32, PN_INT8, PN_FLOAT16, PN_FLOAT64};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const rcase *rc = &cases[ci];
        int nd = rc->nd;
        for (int d = 0; d < 4; d++)
            for (int op = 0; op < R_COUNT; op++) {
                pn_dtype dt = dts[d];
                bool prod = op == R_PROD;
                /* a view: the first axis every other element, the last a slice at offset 1 */
                int64_t big[4], start[4] = {0}, stop[4], step[4] = {1, 1, 1, 1};
                for (int i = 0; i < nd; i++) big[i] = rc->shape[i], stop[i] = rc->shape[i];
                big[0] = 2 * rc->shape[0], step[0] = 2, stop[0] = 2 * rc->shape[0] - 1;
                big[nd - 1] += 3, start[nd - 1] = 1, stop[nd - 1] = rc->shape[nd - 1] + 1;
                pn_array *x = test_random_array(big, nd, PN_FLOAT64, prod ? 0.7 : -3,
                                                prod ? 1.3 : 3);
                if (dt == PN_INT8) x = pn_round(x, 0);
                x = pn_slice(pn_astype(x, dt), start, stop, step, nd);
                CHECK_OK(x);
                double *xd = test_to_f64(x);
                bool red[4] = {0};
                for (int i = 0; i < rc->naxes; i++) red[rc->axes[i]] = true;
                int64_t no, oshape[4];
                int ond = 0;
                for (int i = 0; i < nd; i++)
                    if (!red[i]) oshape[ond++] = rc->shape[i];
                double *ref = ref_reduce(op, xd, rc->shape, nd, red, &no);
                pn_array *y = reduce_op(op, x, rc->axes, rc->naxes);
                CHECK_OK(y);
                pn_dtype odt = op == R_ALL || op == R_ANY ? PN_BOOL
                               : op == R_MEAN && dt == PN_INT8 ? PN_FLOAT32
                               : (op == R_SUM || op == R_PROD) && dt == PN_INT8 ? PN_INT32
                                                                                 : dt;
                double tol = dt == PN_INT8 && op != R_MEAN ? 0 : test_tol(odt == PN_INT32 ? dt : odt);
                if (dt == PN_INT8 && op == R_PROD) tol = 0; /* values 1 only: exact */
                char name[96];
                snprintf(name, sizeof name, "%s over case %zu %s", ROP_NAMES[op], ci,
                         pn_dtype_name(dt));
                if (y && pn_array_dtype(y) != odt)
                    CHECK_MSG(0, "%s: dtype %s, expected %s", name, pn_dtype_name(pn_array_dtype(y)),
                              pn_dtype_name(odt));
                else
                    test_check_values(name, y, oshape, ond, odt, ref, tol, tol);
                free(xd), free(ref);
            }
    }
    pn_scope_pop();
}
