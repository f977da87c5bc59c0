/* test_shape.c — the shape ops (reshape, transpose, broadcast, slice, concatenate, pad, tile,
 * repeat, roll, split, as_strided, meshgrid, ...) against references computed here by index
 * arithmetic on float64 values; views (shared buffers, chains of views, views as inputs of
 * other ops), empty and 0-d arrays, errors, derivatives, and an array of more than 2^31
 * elements. */
#include "harness.h"

#include <string.h>

#include "core/core.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static const pn_dtype some_dtypes[] = {PN_FLOAT32, PN_INT32,   PN_FLOAT16, PN_BOOL,
                                       PN_UINT8,   PN_FLOAT64, PN_BFLOAT16, PN_INT64,
                                       PN_COMPLEX64};
#define NDTYPES ((int)(sizeof some_dtypes / sizeof some_dtypes[0]))

static pn_array *rnd(const int64_t *shape, int nd, pn_dtype t)
{
    bool unsig = pnC_is_unsigned(t) || t == PN_BOOL;
    return test_random_array(shape, nd, t, unsig ? 0 : -50, 50);
}

static int64_t prod(const int64_t *s, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

static void unravel(int64_t f, const int64_t *shape, int nd, int64_t *idx)
{
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = shape[i] ? f % shape[i] : 0;
        f = shape[i] ? f / shape[i] : 0;
    }
}

static int64_t ravel(const int64_t *idx, const int64_t *shape, int nd)
{
    int64_t f = 0;
    for (int i = 0; i < nd; i++) f = f * shape[i] + idx[i];
    return f;
}

/* Everything a reference index map may need. */
typedef struct {
    int64_t in_shape[8];
    int in_nd;
    int perm[8];
    int64_t start[8], step[8]; /* slice: element index = start + i * step */
    int64_t shift[8];
    int64_t reps[8], low[8];
    int64_t strides[8], offset;
    int axis;
    int64_t repeats;
    bool edge;
} gather_ctx;

/* Maps an output index to the flat input index it reads, or -1 for "the fill value". */
typedef int64_t (*index_map)(const int64_t *oidx, int ond, const gather_ctx *c);

/* Checks out (shape oshape, dtype dt) against ref[i] = in_vals[map(i)] (or fill). */
static void check_gather(const char *what, pn_array *out, const int64_t *oshape, int ond,
                         pn_dtype dt, const double *in_vals, index_map map, const gather_ctx *c,
                         double fill)
{
    int64_t n = prod(oshape, ond);
    double *ref = malloc((size_t)(n ? n : 1) * sizeof *ref);
    int64_t idx[PNC_MAX_NDIM];
    for (int64_t f = 0; f < n; f++) {
        unravel(f, oshape, ond, idx);
        int64_t k = map(idx, ond, c);
        ref[f] = k < 0 ? fill : in_vals[k];
    }
    test_check_values(what, out, oshape, ond, dt, ref, 0, 0);
    free(ref);
}

/* Evaluates a and reports whether it shares src's buffer (a view). */
static bool shares_buffer(pn_array *a, pn_array *src)
{
    pn_array *both[2] = {a, src};
    if (!a || !src || pn_eval(both, 2)) return false;
    return a->buf == src->buf;
}

/* Python's slice.indices(): first index, step and count along an axis of length len. */
static int64_t py_slice(int64_t len, int64_t start, int64_t stop, int64_t step, int64_t *first)
{
    if (step > 0) {
        if (start < 0) start = start + len < 0 ? 0 : start + len;
        else if (start > len) start = len;
        if (stop < 0) stop = stop + len < 0 ? 0 : stop + len;
        else if (stop > len) stop = len;
        *first = start;
        return stop > start ? (stop - start - 1) / step + 1 : 0;
    }
    if (start < 0) start = start + len < 0 ? -1 : start + len;
    else if (start >= len) start = len - 1;
    if (stop < 0) stop = stop + len < 0 ? -1 : stop + len;
    else if (stop >= len) stop = len - 1;
    *first = start;
    return stop < start ? (start - stop - 1) / (-step) + 1 : 0;
}

static int64_t map_transpose(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < ond; i++) idx[c->perm[i]] = o[i];
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_broadcast(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < c->in_nd; i++) {
        int j = i + ond - c->in_nd;
        idx[i] = c->in_shape[i] == 1 ? 0 : o[j];
    }
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_slice(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < ond; i++) idx[i] = c->start[i] + o[i] * c->step[i];
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_roll(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < ond; i++) {
        int64_t n = c->in_shape[i], s = n ? ((c->shift[i] % n) + n) % n : 0;
        idx[i] = n ? (o[i] - s + n) % n : 0;
    }
    return ravel(idx, c->in_shape, c->in_nd);
}

/* roll of the flattened array: output index in the (reshaped-back) input shape */
static int64_t map_roll_flat(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t n = prod(c->in_shape, c->in_nd), f = ravel(o, c->in_shape, c->in_nd);
    int64_t s = ((c->shift[0] % n) + n) % n;
    return (f - s + n) % n;
}

static int64_t map_tile(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < c->in_nd; i++) {
        int j = i + ond - c->in_nd;
        idx[i] = o[j] % c->in_shape[i];
    }
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_repeat(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < ond; i++) idx[i] = i == c->axis ? o[i] / c->repeats : o[i];
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_pad(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t idx[8];
    for (int i = 0; i < ond; i++) {
        int64_t k = o[i] - c->low[i];
        if (k < 0 || k >= c->in_shape[i]) {
            if (!c->edge) return -1;
            k = k < 0 ? 0 : c->in_shape[i] - 1;
        }
        idx[i] = k;
    }
    return ravel(idx, c->in_shape, c->in_nd);
}

static int64_t map_as_strided(const int64_t *o, int ond, const gather_ctx *c)
{
    int64_t k = c->offset;
    for (int i = 0; i < ond; i++) k += o[i] * c->strides[i];
    return k;
}

static void random_perm(int *perm, int n)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(test_rand_u64() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ───────────────────────────── reshape family ───────────────────────────── */

TEST(reshape_values_and_views)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        int64_t shape[3] = {4, 6, 5};
        pn_array *x = rnd(shape, 3, t);
        double *v = test_to_f64(x);
        int64_t s1[2] = {-1, 10}, w1[2] = {12, 10};
        pn_array *r = pn_reshape(x, s1, 2);
        test_check_values("reshape", r, w1, 2, t, v, 0, 0);
        CHECK(shares_buffer(r, x));
        /* reshape of a transposed view: a copy with the transposed order */
        pn_array *xt = pn_transpose(x, NULL, 0);
        double *vt = test_to_f64(xt);
        int64_t s2[1] = {120};
        test_check_values("reshape(T)", pn_reshape(xt, s2, 1), s2, 1, t, vt, 0, 0);
        /* a view that merges only axes contiguous with each other stays a view */
        int64_t st[3] = {0, 0, 0}, sp[3] = {4, 6, 5}, stp[3] = {2, 1, 1};
        pn_array *sl = pn_slice(x, st, sp, stp, 3); /* (2,6,5), rows 0 and 2 */
        int64_t s3[2] = {2, 30};
        pn_array *r3 = pn_reshape(sl, s3, 2);
        double *vs = test_to_f64(sl);
        test_check_values("reshape(slice)", r3, s3, 2, t, vs, 0, 0);
        CHECK(shares_buffer(r3, x));
        /* ... and one that cannot is a copy with the right values */
        int64_t s4[2] = {6, 10};
        pn_array *r4 = pn_reshape(sl, s4, 2);
        test_check_values("reshape(slice) copy", r4, s4, 2, t, vs, 0, 0);
        CHECK(!shares_buffer(r4, x));
        free(v);
        free(vt);
        free(vs);
    }
    /* 0-d and empty */
    pn_array *z = pn_scalar(3.5, PN_FLOAT32);
    int64_t one[3] = {1, 1, 1};
    double want = 3.5;
    test_check_values("reshape 0-d", pn_reshape(z, one, 3), one, 3, PN_FLOAT32, &want, 0, 0);
    test_check_values("reshape to 0-d", pn_reshape(pn_reshape(z, one, 3), NULL, 0), NULL, 0,
                      PN_FLOAT32, &want, 0, 0);
    int64_t e[2] = {0, 4}, e2[3] = {2, 0, 8};
    pn_array *empty = pn_zeros(e, 2, PN_INT32);
    test_check_values("reshape empty", pn_reshape(empty, e2, 3), e2, 3, PN_INT32, NULL, 0, 0);
    pn_scope_pop();
}

TEST(reshape_errors)
{
    pn_scope_push();
    int64_t shape[2] = {2, 3};
    pn_array *x = rnd(shape, 2, PN_FLOAT32);
    int64_t bad[2] = {4, 2};
    CHECK_ERR(pn_reshape(x, bad, 2), PN_ERR_INVALID_ARGUMENT);
    pn_reshape(x, bad, 2);
    CHECK(strcmp(pn_last_error_message(),
                 "[reshape] Cannot reshape array of size 6 into shape (4,2).") == 0);
    pn_clear_error();
    int64_t two[3] = {-1, -1, 3}, neg[2] = {-2, -3}, inf[2] = {4, -1};
    CHECK_ERR(pn_reshape(x, two, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, neg, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, inf, 2), PN_ERR_INVALID_ARGUMENT);
    int64_t e[2] = {0, 3}, ie[2] = {0, -1};
    CHECK_ERR(pn_reshape(pn_zeros(e, 2, PN_FLOAT32), ie, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(NULL, shape, 2), PN_ERR_INVALID_ARGUMENT);
    /* sticky: a NULL input keeps the first error */
    pn_clear_error();
    pn_array *r = pn_reshape(pn_reshape(x, bad, 2), shape, 2);
    CHECK(!r && strstr(pn_last_error_message(), "(4,2)"));
    pn_clear_error();
    pn_scope_pop();
}

TEST(flatten_unflatten_squeeze_expand)
{
    pn_scope_push();
    int64_t shape[4] = {2, 1, 3, 4};
    pn_array *x = rnd(shape, 4, PN_FLOAT32);
    double *v = test_to_f64(x);
    int64_t f1[1] = {24}, f2[3] = {2, 3, 4}, f3[2] = {6, 4}, f4[5] = {2, 1, 1, 3, 4};
    test_check_values("flatten", pn_flatten(x, 0, -1), f1, 1, PN_FLOAT32, v, 0, 0);
    test_check_values("flatten 1..2", pn_flatten(x, 1, 2), f2, 3, PN_FLOAT32, v, 0, 0);
    test_check_values("flatten -4..-2", pn_flatten(x, -4, -2), f3, 2, PN_FLOAT32, v, 0, 0);
    test_check_values("squeeze all", pn_squeeze(x, NULL, 0), f2, 3, PN_FLOAT32, v, 0, 0);
    int ax1 = -3;
    test_check_values("squeeze -3", pn_squeeze(x, &ax1, 1), f2, 3, PN_FLOAT32, v, 0, 0);
    int ax2 = 2;
    test_check_values("expand_dims 2", pn_expand_dims(x, &ax2, 1), f4, 5, PN_FLOAT32, v, 0, 0);
    int axes[2] = {0, -1};
    int64_t f5[6] = {1, 2, 1, 3, 4, 1};
    test_check_values("expand_dims 0,-1", pn_expand_dims(x, axes, 2), f5, 6, PN_FLOAT32, v, 0, 0);
    int64_t u[2] = {-1, 2}, f6[5] = {2, 1, 3, 2, 2};
    test_check_values("unflatten", pn_unflatten(x, 3, u, 2), f6, 5, PN_FLOAT32, v, 0, 0);
    CHECK(shares_buffer(pn_squeeze(x, NULL, 0), x));
    /* 0-d */
    pn_array *s = pn_scalar(2, PN_INT32);
    double two = 2;
    int64_t one[1] = {1};
    test_check_values("flatten 0-d", pn_flatten(s, 0, -1), one, 1, PN_INT32, &two, 0, 0);
    int z = 0;
    test_check_values("expand 0-d", pn_expand_dims(s, &z, 1), one, 1, PN_INT32, &two, 0, 0);
    /* errors */
    int bad = 0, big = 4, dup[2] = {1, -5};
    CHECK_ERR(pn_squeeze(x, &bad, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_squeeze(x, &big, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_flatten(x, 3, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_flatten(x, 4, 5), PN_ERR_INVALID_ARGUMENT);
    int e5 = 5, e2[2] = {1, 1};
    CHECK_ERR(pn_expand_dims(x, &e5, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_expand_dims(x, e2, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_expand_dims(x, dup, 2), PN_ERR_INVALID_ARGUMENT);
    int64_t ub[2] = {5, -1}, ub2[2] = {-1, -1};
    CHECK_ERR(pn_unflatten(x, 3, ub, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_unflatten(x, 3, ub2, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_unflatten(x, 4, u, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_unflatten(x, 0, u, 0), PN_ERR_INVALID_ARGUMENT);
    /* reshape's inferred extent, and each way inference fails */
    int64_t r1[3] = {4, -1, 2}, r1s[3] = {4, 3, 2};
    test_check_values("reshape -1", pn_reshape(x, r1, 3), r1s, 3, PN_FLOAT32, v, 0, 0);
    int64_t rtwice[2] = {-1, -1}, rzero[2] = {0, -1}, rneg[2] = {-2, -12}, rbig[3] = {INT64_MAX / 2, 4, -1},
            rsize[2] = {5, -1};
    CHECK_ERR(pn_reshape(x, rtwice, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, rzero, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, rneg, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, rbig, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_reshape(x, rsize, 2), PN_ERR_INVALID_ARGUMENT);
    int64_t e0[2] = {0, -1}, z0[2] = {0, 3};
    pn_array *empty = pn_zeros(z0, 2, PN_FLOAT32);
    CHECK_ERR(pn_reshape(empty, e0, 2), PN_ERR_INVALID_ARGUMENT);
    free(v);
    pn_scope_pop();
}

/* ───────────────────────────── transpose family ───────────────────────────── */

TEST(transpose_values)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        gather_ctx c = {.in_shape = {2, 3, 4, 5}, .in_nd = 4};
        pn_array *x = rnd(c.in_shape, 4, t);
        double *v = test_to_f64(x);
        for (int rep = 0; rep < 4; rep++) {
            random_perm(c.perm, 4);
            int axes[4];
            int64_t oshape[4];
            for (int i = 0; i < 4; i++) {
                axes[i] = c.perm[i] - (rep & 1 ? 4 : 0); /* negative axes too */
                oshape[i] = c.in_shape[c.perm[i]];
            }
            pn_array *y = pn_transpose(x, axes, 4);
            check_gather("transpose", y, oshape, 4, t, v, map_transpose, &c, 0);
            CHECK(shares_buffer(y, x));
        }
        /* NULL reverses */
        for (int i = 0; i < 4; i++) c.perm[i] = 3 - i;
        int64_t rs[4] = {5, 4, 3, 2};
        check_gather("transpose NULL", pn_transpose(x, NULL, 0), rs, 4, t, v, map_transpose, &c, 0);
        /* swapaxes(1, -1) */
        int sw[4] = {0, 3, 2, 1};
        memcpy(c.perm, sw, sizeof sw);
        int64_t ss[4] = {2, 5, 4, 3};
        check_gather("swapaxes", pn_swapaxes(x, 1, -1), ss, 4, t, v, map_transpose, &c, 0);
        /* moveaxis(0, 2): (3,4,2,5) */
        int mv[4] = {1, 2, 0, 3};
        memcpy(c.perm, mv, sizeof mv);
        int64_t ms[4] = {3, 4, 2, 5};
        check_gather("moveaxis", pn_moveaxis(x, 0, 2), ms, 4, t, v, map_transpose, &c, 0);
        /* moveaxis(-1, 0): (5,2,3,4) */
        int mv2[4] = {3, 0, 1, 2};
        memcpy(c.perm, mv2, sizeof mv2);
        int64_t ms2[4] = {5, 2, 3, 4};
        check_gather("moveaxis back", pn_moveaxis(x, -1, 0), ms2, 4, t, v, map_transpose, &c, 0);
        free(v);
    }
    pn_array *s = pn_scalar(1, PN_FLOAT32);
    double one = 1;
    test_check_values("transpose 0-d", pn_transpose(s, NULL, 0), NULL, 0, PN_FLOAT32, &one, 0, 0);
    pn_scope_pop();
}

TEST(transpose_errors)
{
    pn_scope_push();
    int64_t shape[3] = {2, 3, 4};
    pn_array *x = rnd(shape, 3, PN_FLOAT32);
    int few[2] = {0, 1}, rep[3] = {0, 1, 1}, oob[3] = {0, 1, 3}, neg[3] = {0, 1, -4};
    CHECK_ERR(pn_transpose(x, few, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_transpose(x, rep, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_transpose(x, oob, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_transpose(x, neg, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_swapaxes(x, 0, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_swapaxes(x, -4, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_moveaxis(x, 3, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_moveaxis(x, 0, -4), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── broadcast ───────────────────────────── */

TEST(broadcast_values)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        gather_ctx c = {.in_shape = {3, 1, 4}, .in_nd = 3};
        pn_array *x = rnd(c.in_shape, 3, t);
        double *v = test_to_f64(x);
        int64_t os[4] = {2, 3, 5, 4};
        pn_array *y = pn_broadcast_to(x, os, 4);
        check_gather("broadcast_to", y, os, 4, t, v, map_broadcast, &c, 0);
        CHECK(shares_buffer(y, x));
        /* broadcast of a transposed view */
        pn_array *xt = pn_transpose(x, NULL, 0); /* (4,1,3) */
        double *vt = test_to_f64(xt);
        gather_ctx ct = {.in_shape = {4, 1, 3}, .in_nd = 3};
        int64_t os2[3] = {4, 6, 3};
        check_gather("broadcast_to(T)", pn_broadcast_to(xt, os2, 3), os2, 3, t, vt,
                     map_broadcast, &ct, 0);
        free(v);
        free(vt);
    }
    /* 0-d to anything, and to empty */
    pn_array *s = pn_scalar(7, PN_INT16);
    gather_ctx c0 = {.in_nd = 0};
    double seven = 7;
    int64_t os[2] = {3, 2}, es[2] = {0, 5};
    check_gather("broadcast 0-d", pn_broadcast_to(s, os, 2), os, 2, PN_INT16, &seven,
                 map_broadcast, &c0, 0);
    test_check_values("broadcast empty", pn_broadcast_to(s, es, 2), es, 2, PN_INT16, NULL, 0, 0);
    /* broadcast_arrays */
    int64_t sa[2] = {3, 1}, sb[1] = {4};
    pn_array *in[3] = {rnd(sa, 2, PN_FLOAT32), rnd(sb, 1, PN_INT32), pn_scalar(1, PN_UINT8)};
    pn_array *out[3];
    CHECK(pn_broadcast_arrays(in, 3, out) == 0);
    int64_t want[2] = {3, 4};
    for (int i = 0; i < 3; i++) {
        double *vi = test_to_f64(in[i]);
        gather_ctx ci = {.in_nd = pn_ndim(in[i])};
        memcpy(ci.in_shape, pn_shape(in[i]), (size_t)ci.in_nd * sizeof(int64_t));
        check_gather("broadcast_arrays", out[i], want, 2, pn_array_dtype(in[i]), vi, map_broadcast,
                     &ci, 0);
        free(vi);
    }
    /* errors */
    int64_t bad[2] = {3, 5}, fewer[1] = {4}, negs[2] = {-1, 4};
    CHECK_ERR(pn_broadcast_to(in[0], fewer, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_broadcast_to(in[1], bad, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_broadcast_to(in[1], negs, 2), PN_ERR_INVALID_ARGUMENT);
    pn_array *in2[2] = {in[1], pn_zeros(bad, 2, PN_FLOAT32)};
    pn_clear_error();
    CHECK(pn_broadcast_arrays(in2, 2, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(out[0] == NULL && out[1] == NULL);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── slice and flip ───────────────────────────── */

TEST(slice_random_python_semantics)
{
    pn_scope_push();
    int rounds = test_quick() ? 40 : 200;
    for (int r = 0; r < rounds; r++) {
        pn_dtype t = some_dtypes[r % NDTYPES];
        gather_ctx c = {.in_nd = 1 + r % 3};
        for (int i = 0; i < c.in_nd; i++) c.in_shape[i] = (int64_t)(test_rand_u64() % 7);
        pn_array *x = rnd(c.in_shape, c.in_nd, t);
        double *v = test_to_f64(x);
        int64_t start[3], stop[3], step[3], oshape[3];
        for (int i = 0; i < c.in_nd; i++) {
            start[i] = (int64_t)(test_rand_u64() % 21) - 10;
            stop[i] = (int64_t)(test_rand_u64() % 21) - 10;
            if (r % 5 == 0) stop[i] = i % 2 ? INT64_MAX : INT64_MIN; /* "to the end" */
            step[i] = (int64_t)(test_rand_u64() % 7) - 3;
            if (step[i] == 0) step[i] = -1;
            oshape[i] = py_slice(c.in_shape[i], start[i], stop[i], step[i], &c.start[i]);
            c.step[i] = step[i];
        }
        pn_array *y = pn_slice(x, start, stop, step, c.in_nd);
        check_gather("slice", y, oshape, c.in_nd, t, v, map_slice, &c, 0);
        CHECK(shares_buffer(y, x));
        free(v);
    }
    /* strides == NULL means 1 */
    int64_t shape[2] = {5, 6}, st[2] = {1, -4}, sp[2] = {4, 100};
    pn_array *x = rnd(shape, 2, PN_FLOAT32);
    double *v = test_to_f64(x);
    gather_ctx c = {.in_shape = {5, 6}, .in_nd = 2, .start = {1, 2}, .step = {1, 1}};
    int64_t os[2] = {3, 4};
    check_gather("slice NULL steps", pn_slice(x, st, sp, NULL, 2), os, 2, PN_FLOAT32, v, map_slice,
                 &c, 0);
    /* errors */
    int64_t zero[2] = {1, 0};
    CHECK_ERR(pn_slice(x, st, sp, zero, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_slice(x, st, sp, NULL, 1), PN_ERR_INVALID_ARGUMENT);
    free(v);
    pn_scope_pop();
}

TEST(flip_values)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        gather_ctx c = {.in_shape = {3, 4, 5}, .in_nd = 3};
        pn_array *x = rnd(c.in_shape, 3, t);
        double *v = test_to_f64(x);
        int axes[2] = {0, -1};
        for (int i = 0; i < 3; i++) {
            bool f = i != 1;
            c.start[i] = f ? c.in_shape[i] - 1 : 0;
            c.step[i] = f ? -1 : 1;
        }
        pn_array *y = pn_flip(x, axes, 2);
        check_gather("flip", y, c.in_shape, 3, t, v, map_slice, &c, 0);
        CHECK(shares_buffer(y, x));
        c.start[1] = 3;
        c.step[1] = -1;
        check_gather("flip all", pn_flip(x, NULL, 0), c.in_shape, 3, t, v, map_slice, &c, 0);
        free(v);
    }
    int64_t e[2] = {0, 3};
    test_check_values("flip empty", pn_flip(pn_zeros(e, 2, PN_FLOAT32), NULL, 0), e, 2,
                      PN_FLOAT32, NULL, 0, 0);
    int64_t s[1] = {3};
    int bad = 1;
    CHECK_ERR(pn_flip(pn_zeros(s, 1, PN_FLOAT32), &bad, 1), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* Views as inputs of other ops, and chains of views. */
TEST(views_feed_other_ops)
{
    pn_scope_push();
    int64_t shape[2] = {6, 8};
    pn_array *x = rnd(shape, 2, PN_FLOAT32);
    double *v = test_to_f64(x);
    /* slice of transpose of reshape: reshape (6,8)->(4,12), transpose (12,4),
     * slice [10:1:-3, ::2] -> rows 10,7,4 ; cols 0,2 */
    int64_t rs[2] = {4, 12};
    pn_array *chain = pn_transpose(pn_reshape(x, rs, 2), NULL, 0);
    int64_t st[2] = {10, 0}, sp[2] = {1, 4}, stp[2] = {-3, 2};
    pn_array *y = pn_slice(chain, st, sp, stp, 2);
    int64_t os[2] = {3, 2};
    double ref[6];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) ref[i * 2 + j] = v[(2 * j) * 12 + (10 - 3 * i)];
    test_check_values("chain", y, os, 2, PN_FLOAT32, ref, 0, 0);
    CHECK(shares_buffer(y, x));
    /* a further reshape of the strided chain copies */
    int64_t six[1] = {6};
    test_check_values("chain reshape", pn_reshape(y, six, 1), six, 1, PN_FLOAT32, ref, 0, 0);
    /* concatenate and astype of views */
    pn_array *pair[2] = {y, pn_flip(y, NULL, 0)};
    int64_t cs[2] = {3, 4};
    double cref[12];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            cref[i * 4 + j] = j < 2 ? ref[i * 2 + j] : ref[(2 - i) * 2 + (1 - (j - 2))];
    test_check_values("concat views", pn_concatenate(pair, 2, 1), cs, 2, PN_FLOAT32, cref, 0, 0);
    test_check_values("astype view", pn_astype(y, PN_FLOAT64), os, 2, PN_FLOAT64, ref, 0, 0);
    /* elementwise ops read the transposed view correctly */
    pn_array *xt = pn_transpose(x, NULL, 0);
    int64_t ts[2] = {8, 6};
    double tref[48];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 6; j++) tref[i * 6 + j] = 2 * v[j * 8 + i];
    test_check_values("add(T, T)", pn_add(xt, xt), ts, 2, PN_FLOAT32, tref, 1e-6, 0);
    /* broadcast view as an input */
    int64_t bs[3] = {2, 6, 8};
    double bref[96];
    for (int k = 0; k < 96; k++) bref[k] = v[k % 48] + 1;
    test_check_values("add(broadcast)", pn_add(pn_broadcast_to(x, bs, 3), pn_ones(bs, 3, PN_FLOAT32)),
                      bs, 3, PN_FLOAT32, bref, 1e-6, 0);
    free(v);
    pn_scope_pop();
}

/* ───────────────────────────── concatenate, stack, split ───────────────────────────── */

TEST(concatenate_values)
{
    pn_scope_push();
    for (int axis = -3; axis < 3; axis++) {
        int ax = axis < 0 ? axis + 3 : axis;
        pn_dtype types[3] = {PN_INT32, PN_FLOAT32, PN_UINT8};
        pn_array *in[3];
        double *vals[3];
        int64_t shapes[3][3], oshape[3] = {2, 3, 4};
        oshape[ax] = 0;
        for (int k = 0; k < 3; k++) {
            int64_t s[3] = {2, 3, 4};
            s[ax] = k; /* 0, 1, 2: an empty piece too */
            memcpy(shapes[k], s, sizeof s);
            oshape[ax] += k;
            in[k] = rnd(s, 3, axis == 0 ? PN_FLOAT32 : types[k]);
            vals[k] = test_to_f64(in[k]);
        }
        pn_array *y = pn_concatenate(in, 3, axis);
        pn_dtype want = axis == 0 ? PN_FLOAT32 : PN_FLOAT32; /* int32+float32+uint8 -> float32 */
        int64_t n = prod(oshape, 3), idx[3];
        double *ref = malloc((size_t)n * sizeof *ref);
        for (int64_t f = 0; f < n; f++) {
            unravel(f, oshape, 3, idx);
            int k = 0;
            while (idx[ax] >= shapes[k][ax]) idx[ax] -= shapes[k++][ax];
            ref[f] = vals[k][ravel(idx, shapes[k], 3)];
        }
        test_check_values("concatenate", y, oshape, 3, want, ref, 0, 0);
        free(ref);
        for (int k = 0; k < 3; k++) free(vals[k]);
    }
    /* int dtypes promote to a wider int */
    int64_t s1[1] = {2};
    pn_array *ab[2] = {rnd(s1, 1, PN_INT8), rnd(s1, 1, PN_UINT8)};
    CHECK(pn_array_dtype(pn_concatenate(ab, 2, 0)) == PN_INT16);
    /* errors */
    int64_t sa[2] = {2, 3}, sb[2] = {3, 3}, sc[1] = {3};
    pn_array *bad[2] = {pn_zeros(sa, 2, PN_FLOAT32), pn_zeros(sb, 2, PN_FLOAT32)};
    CHECK_ERR(pn_concatenate(bad, 2, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_concatenate(bad, 2, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_concatenate(bad, 0, 0), PN_ERR_INVALID_ARGUMENT);
    pn_array *bad2[2] = {bad[0], pn_zeros(sc, 1, PN_FLOAT32)};
    CHECK_ERR(pn_concatenate(bad2, 2, 0), PN_ERR_INVALID_ARGUMENT);
    pn_array *scalars[2] = {pn_scalar(1, PN_FLOAT32), pn_scalar(2, PN_FLOAT32)};
    CHECK_ERR(pn_concatenate(scalars, 2, 0), PN_ERR_INVALID_ARGUMENT);
    pn_array *withnull[2] = {bad[0], NULL};
    CHECK_ERR(pn_concatenate(withnull, 2, 0), PN_ERR_INVALID_ARGUMENT);
    /* the message names the shapes */
    pn_concatenate(bad, 2, 1);
    CHECK(strstr(pn_last_error_message(), "(2,3)") && strstr(pn_last_error_message(), "(3,3)"));
    pn_clear_error();
    pn_scope_pop();
}

TEST(stack_and_split)
{
    pn_scope_push();
    int64_t s[2] = {3, 4};
    pn_array *in[3];
    double *v[3];
    for (int k = 0; k < 3; k++) {
        in[k] = rnd(s, 2, PN_FLOAT32);
        v[k] = test_to_f64(in[k]);
    }
    for (int axis = -3; axis < 3; axis++) {
        int ax = axis < 0 ? axis + 3 : axis;
        int64_t os[3], j = 0;
        for (int i = 0; i < 3; i++) os[i] = i == ax ? 3 : s[j++];
        double ref[36];
        int64_t idx[3];
        for (int f = 0; f < 36; f++) {
            unravel(f, os, 3, idx);
            int64_t inner[2], q = 0;
            for (int i = 0; i < 3; i++)
                if (i != ax) inner[q++] = idx[i];
            ref[f] = v[idx[ax]][ravel(inner, s, 2)];
        }
        test_check_values("stack", pn_stack(in, 3, axis), os, 3, PN_FLOAT32, ref, 0, 0);
    }
    pn_array *odd[2] = {in[0], pn_zeros((int64_t[]){4, 3}, 2, PN_FLOAT32)};
    CHECK_ERR(pn_stack(odd, 2, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_stack(in, 3, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_stack(in, 0, 0), PN_ERR_INVALID_ARGUMENT);

    /* split at indices (unsorted and out-of-range ones behave like Python slices) */
    int64_t xs[2] = {7, 3};
    pn_array *x = rnd(xs, 2, PN_INT32);
    double *xv = test_to_f64(x);
    int64_t idx[4] = {2, 5, 3, 9};
    pn_array *parts[5];
    CHECK(pn_split(x, idx, 4, 0, parts) == 0);
    int64_t lo[5] = {0, 2, 5, 3, 9}, hi[5] = {2, 5, 3, 9, 7};
    for (int k = 0; k < 5; k++) {
        int64_t a = lo[k] > 7 ? 7 : lo[k], b = hi[k] > 7 ? 7 : hi[k];
        int64_t rows = b > a ? b - a : 0;
        int64_t ps[2] = {rows, 3};
        test_check_values("split", parts[k], ps, 2, PN_INT32, xv + a * 3, 0, 0);
        CHECK(rows == 0 || shares_buffer(parts[k], x));
    }
    /* split_sections along axis 1 */
    pn_array *cols[3];
    CHECK(pn_split_sections(x, 3, -1, cols) == 0);
    for (int k = 0; k < 3; k++) {
        double ref[7];
        for (int i = 0; i < 7; i++) ref[i] = xv[i * 3 + k];
        int64_t cs[2] = {7, 1};
        test_check_values("split_sections", cols[k], cs, 2, PN_INT32, ref, 0, 0);
    }
    pn_clear_error();
    CHECK(pn_split_sections(x, 2, 0, parts) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_split_sections(x, 0, 0, parts) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_split(x, idx, 1, 2, parts) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    free(xv);
    for (int k = 0; k < 3; k++) free(v[k]);
    pn_scope_pop();
}

/* ───────────────────────────── tile, repeat, roll ───────────────────────────── */

TEST(tile_repeat_roll_values)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        gather_ctx c = {.in_shape = {2, 3}, .in_nd = 2};
        pn_array *x = rnd(c.in_shape, 2, t);
        double *v = test_to_f64(x);
        /* tile: reps shorter, equal and longer than ndim */
        int64_t r1[1] = {3}, o1[2] = {2, 9};
        check_gather("tile (3)", pn_tile(x, r1, 1), o1, 2, t, v, map_tile, &c, 0);
        int64_t r2[2] = {2, 1}, o2[2] = {4, 3};
        check_gather("tile (2,1)", pn_tile(x, r2, 2), o2, 2, t, v, map_tile, &c, 0);
        int64_t r3[3] = {2, 1, 2}, o3[3] = {2, 2, 6};
        check_gather("tile (2,1,2)", pn_tile(x, r3, 3), o3, 3, t, v, map_tile, &c, 0);
        int64_t r0[2] = {0, 2}, o0[2] = {0, 6};
        test_check_values("tile 0", pn_tile(x, r0, 2), o0, 2, t, NULL, 0, 0);
        /* repeat along each axis and flattened */
        for (int axis = -2; axis < 2; axis++) {
            gather_ctx cr = c;
            cr.axis = axis < 0 ? axis + 2 : axis;
            cr.repeats = 3;
            int64_t os[2] = {2, 3};
            os[cr.axis] *= 3;
            check_gather("repeat", pn_repeat(x, 3, axis), os, 2, t, v, map_repeat, &cr, 0);
        }
        gather_ctx cf = {.in_shape = {6}, .in_nd = 1, .axis = 0, .repeats = 2};
        int64_t of[1] = {12};
        check_gather("repeat flat", pn_repeat(x, 2, PN_ALL_AXES), of, 1, t, v, map_repeat, &cf, 0);
        int64_t oz[2] = {0, 3};
        test_check_values("repeat 0", pn_repeat(x, 0, 0), oz, 2, t, NULL, 0, 0);
        /* roll along axes, with negative and large shifts */
        int64_t sh[2] = {-1, 7};
        int axes[2] = {0, 1};
        gather_ctx cr = c;
        cr.shift[0] = -1;
        cr.shift[1] = 7;
        check_gather("roll", pn_roll(x, sh, axes, 2), c.in_shape, 2, t, v, map_roll, &cr, 0);
        int64_t s2[1] = {-5};
        gather_ctx cfl = c;
        cfl.shift[0] = -5;
        check_gather("roll flat", pn_roll(x, s2, NULL, 1), c.in_shape, 2, t, v, map_roll_flat,
                     &cfl, 0);
        int64_t s0[1] = {3};
        gather_ctx c0 = c;
        check_gather("roll by size", pn_roll(x, s0, axes + 1, 1), c.in_shape, 2, t, v, map_roll,
                     &c0, 0);
        free(v);
    }
    int64_t s[1] = {3}, neg[1] = {-1};
    pn_array *x = pn_zeros(s, 1, PN_FLOAT32);
    CHECK_ERR(pn_tile(x, neg, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_repeat(x, -1, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_repeat(x, 2, 1), PN_ERR_INVALID_ARGUMENT);
    int bad = 2;
    CHECK_ERR(pn_roll(x, s, &bad, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_roll(x, NULL, NULL, 1), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── pad ───────────────────────────── */

TEST(pad_constant_and_edge)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        gather_ctx c = {.in_shape = {3, 4}, .in_nd = 2};
        pn_array *x = rnd(c.in_shape, 2, t);
        double *v = test_to_f64(x);
        int64_t lo[2] = {1, 0}, hi[2] = {2, 3};
        int axes[2] = {-1, 0};
        /* constant, axes given in another order: axis 1 gets (1,2), axis 0 (0,3) */
        c.low[0] = 0;
        c.low[1] = 1;
        int64_t os[2] = {6, 7};
        double fill = pn_array_dtype(x) == PN_BOOL ? 1 : 5;
        pn_array *val = pn_scalar(fill, PN_FLOAT64);
        check_gather("pad const", pn_pad(x, axes, lo, hi, 2, val, PN_PAD_CONSTANT), os, 2, t, v,
                     map_pad, &c, fill);
        /* NULL axes: the first naxes axes; NULL value: zeros */
        gather_ctx c1 = c;
        c1.low[0] = 2;
        c1.low[1] = 0;
        int64_t l1[1] = {2}, h1[1] = {1}, o1[2] = {6, 4};
        check_gather("pad first axis", pn_pad(x, NULL, l1, h1, 1, NULL, PN_PAD_CONSTANT), o1, 2,
                     t, v, map_pad, &c1, 0);
        /* edge */
        gather_ctx ce = c;
        ce.edge = true;
        check_gather("pad edge", pn_pad(x, axes, lo, hi, 2, NULL, PN_PAD_EDGE), os, 2, t, v,
                     map_pad, &ce, 0);
        free(v);
    }
    int64_t s[2] = {2, 2}, e[2] = {0, 2};
    pn_array *x = pn_ones(s, 2, PN_FLOAT32);
    int64_t neg[2] = {-1, 0}, ok[2] = {1, 1};
    CHECK_ERR(pn_pad(x, NULL, neg, ok, 2, NULL, PN_PAD_CONSTANT), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_pad(x, NULL, ok, neg, 2, NULL, PN_PAD_CONSTANT), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_pad(x, NULL, ok, ok, 3, NULL, PN_PAD_CONSTANT), PN_ERR_INVALID_ARGUMENT);
    int dup[2] = {0, -2};
    CHECK_ERR(pn_pad(x, dup, ok, ok, 2, NULL, PN_PAD_CONSTANT), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_pad(x, NULL, ok, ok, 2, x, PN_PAD_CONSTANT), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_pad(x, NULL, ok, ok, 2, NULL, (pn_pad_mode)7), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_pad(pn_zeros(e, 2, PN_FLOAT32), NULL, ok, ok, 2, NULL, PN_PAD_EDGE),
              PN_ERR_INVALID_ARGUMENT);
    /* padding an empty array with a constant fills everything */
    int64_t pe[2] = {2, 4};
    double fives[8] = {5, 5, 5, 5, 5, 5, 5, 5};
    test_check_values("pad empty", pn_pad(pn_zeros(e, 2, PN_FLOAT32), NULL, ok, ok, 2,
                                          pn_scalar(5, PN_INT32), PN_PAD_CONSTANT),
                      pe, 2, PN_FLOAT32, fives, 0, 0);
    pn_scope_pop();
}

/* ───────────────────────────── slice_update ───────────────────────────── */

TEST(slice_update_values)
{
    pn_scope_push();
    int rounds = test_quick() ? 30 : 120;
    for (int r = 0; r < rounds; r++) {
        pn_dtype t = some_dtypes[r % NDTYPES];
        int nd = 1 + r % 3;
        int64_t shape[3], start[3], stop[3], step[3], first[3], cnt[3];
        for (int i = 0; i < nd; i++) {
            shape[i] = 1 + (int64_t)(test_rand_u64() % 6);
            start[i] = (int64_t)(test_rand_u64() % 15) - 7;
            stop[i] = (int64_t)(test_rand_u64() % 15) - 7;
            step[i] = (int64_t)(test_rand_u64() % 5) - 2;
            if (step[i] == 0) step[i] = 2;
            cnt[i] = py_slice(shape[i], start[i], stop[i], step[i], &first[i]);
        }
        pn_array *src = rnd(shape, nd, t);
        /* the update is float64 (cast to src's dtype) and broadcast along axis 0 */
        int64_t ushape[3];
        memcpy(ushape, cnt, sizeof cnt);
        ushape[0] = 1;
        pn_array *upd = rnd(ushape, nd, PN_FLOAT64);
        if (r % 4 == 1) src = pn_transpose(pn_transpose(src, NULL, 0), NULL, 0); /* a view */
        double *sv = test_to_f64(src), *uv = test_to_f64(pn_astype(upd, t));
        pn_array *y = pn_slice_update(src, upd, start, stop, step, nd);
        int64_t n = prod(shape, nd), idx[3];
        for (int64_t f = 0; f < prod(cnt, nd); f++) {
            unravel(f, cnt, nd, idx);
            int64_t uidx[3], sidx[3];
            for (int i = 0; i < nd; i++) {
                uidx[i] = i == 0 ? 0 : idx[i];
                sidx[i] = first[i] + idx[i] * step[i];
            }
            sv[ravel(sidx, shape, nd)] = uv[ravel(uidx, ushape, nd)];
        }
        test_check_values("slice_update", y, shape, nd, t, sv, 0, 0);
        (void)n;
        free(sv);
        free(uv);
    }
    /* the source is not modified (its buffer is not donated while it is alive) */
    int64_t s[1] = {4}, a[1] = {1}, b[1] = {3};
    double ones[4] = {1, 1, 1, 1}, mixed[4] = {1, 0, 0, 1};
    pn_array *src = pn_ones(s, 1, PN_FLOAT32);
    pn_eval(&src, 1);
    pn_array *y = pn_slice_update(src, pn_scalar(0, PN_FLOAT32), a, b, NULL, 1);
    test_check_values("slice_update result", y, s, 1, PN_FLOAT32, mixed, 0, 0);
    test_check_values("slice_update source", src, s, 1, PN_FLOAT32, ones, 0, 0);
    /* errors */
    int64_t two[1] = {2};
    CHECK_ERR(pn_slice_update(src, pn_zeros(s, 1, PN_FLOAT32), a, b, NULL, 1),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_slice_update(src, pn_zeros(two, 1, PN_FLOAT32), a, b, NULL, 0),
              PN_ERR_INVALID_ARGUMENT);
    int64_t z[1] = {0};
    CHECK_ERR(pn_slice_update(src, pn_zeros(two, 1, PN_FLOAT32), a, b, z, 1),
              PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── as_strided, meshgrid ───────────────────────────── */

TEST(as_strided_values)
{
    pn_scope_push();
    for (int d = 0; d < NDTYPES; d++) {
        pn_dtype t = some_dtypes[d];
        int64_t s[2] = {3, 5};
        pn_array *x = rnd(s, 2, t);
        double *v = test_to_f64(x);
        /* sliding windows of 4 over the flattened 15 elements, from element 1 */
        gather_ctx c = {.strides = {2, 1}, .offset = 1};
        int64_t os[2] = {6, 4}, st[2] = {2, 1};
        pn_array *y = pn_as_strided(x, os, st, 2, 1);
        check_gather("as_strided", y, os, 2, t, v, map_as_strided, &c, 0);
        CHECK(shares_buffer(y, x));
        /* negative strides, reading backwards from the end */
        gather_ctx c2 = {.strides = {-5, -1}, .offset = 14};
        int64_t st2[2] = {-5, -1};
        check_gather("as_strided neg", pn_as_strided(x, s, st2, 2, 14), s, 2, t, v,
                     map_as_strided, &c2, 0);
        /* of a transposed view: as MLX, the elements of a in row-major order */
        pn_array *xt = pn_transpose(x, NULL, 0);
        double *vt = test_to_f64(xt);
        int64_t st3[1] = {3}, os3[1] = {5};
        gather_ctx c3 = {.strides = {3}, .offset = 0};
        check_gather("as_strided(T)", pn_as_strided(xt, os3, st3, 1, 0), os3, 1, t, vt,
                     map_as_strided, &c3, 0);
        free(v);
        free(vt);
    }
    int64_t s[1] = {10}, big[1] = {6}, st[1] = {2};
    pn_array *x = pn_zeros(s, 1, PN_FLOAT32);
    CHECK_ERR(pn_as_strided(x, big, st, 1, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_as_strided(x, s, st, 1, -1), PN_ERR_INVALID_ARGUMENT);
    int64_t negst[1] = {-1};
    CHECK_ERR(pn_as_strided(x, s, negst, 1, 5), PN_ERR_INVALID_ARGUMENT);
    int64_t zero[1] = {0};
    test_check_values("as_strided empty", pn_as_strided(x, zero, st, 1, 100), zero, 1,
                      PN_FLOAT32, NULL, 0, 0);
    pn_scope_pop();
}

TEST(meshgrid_values)
{
    pn_scope_push();
    int64_t sa[1] = {3}, sb[1] = {4}, sc[2] = {1, 2};
    pn_array *in[3] = {rnd(sa, 1, PN_FLOAT32), rnd(sb, 1, PN_INT32), rnd(sc, 2, PN_FLOAT32)};
    double *v[3] = {test_to_f64(in[0]), test_to_f64(in[1]), test_to_f64(in[2])};
    int64_t len[3] = {3, 4, 2};
    for (int mode = 0; mode < 4; mode++) {
        bool xy = mode & 1, sparse = mode & 2;
        pn_array *out[3];
        CHECK(pn_meshgrid(in, 3, sparse, xy ? "xy" : "ij", out) == 0);
        int64_t full[3] = {len[0], len[1], len[2]};
        if (xy) {
            full[0] = len[1];
            full[1] = len[0];
        }
        for (int k = 0; k < 3; k++) {
            int pos = xy && k < 2 ? 1 - k : k;
            int64_t os[3];
            for (int i = 0; i < 3; i++) os[i] = sparse ? (i == pos ? len[k] : 1) : full[i];
            int64_t n = prod(os, 3), idx[3];
            double *ref = malloc((size_t)n * sizeof *ref);
            for (int64_t f = 0; f < n; f++) {
                unravel(f, os, 3, idx);
                ref[f] = v[k][idx[pos]];
            }
            test_check_values("meshgrid", out[k], os, 3, pn_array_dtype(in[k]), ref, 0, 0);
            free(ref);
        }
    }
    pn_array *out[3];
    pn_clear_error();
    CHECK(pn_meshgrid(in, 3, false, "xx", out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    for (int k = 0; k < 3; k++) free(v[k]);
    pn_scope_pop();
}

/* ───────────────────────────── large arrays ───────────────────────────── */

/* An array of more than 2^31 elements that never needs a big buffer: broadcast views, their
 * slices and reshapes. */
TEST(more_than_2_31_elements)
{
    pn_scope_push();
    int64_t n = ((int64_t)1 << 31) + 8;
    pn_array *big = pn_broadcast_to(pn_scalar_int(7, PN_UINT8), &n, 1);
    CHECK_OK(big);
    CHECK(pn_size(big) == n && pn_dim(big, 0) == n && pn_nbytes(big) == (size_t)n);
    int64_t st[1] = {n - 5}, sp[1] = {INT64_MAX};
    pn_array *tail = pn_slice(big, st, sp, NULL, 1);
    int64_t five[1] = {5};
    double sevens[5] = {7, 7, 7, 7, 7};
    test_check_values("tail", tail, five, 1, PN_UINT8, sevens, 0, 0);
    /* a concatenation at the far end: arange after the broadcast */
    pn_array *parts[2] = {big, pn_astype(pn_arange(0, 4, 1, PN_INT32), PN_UINT8)};
    pn_array *cat = pn_concatenate(parts, 2, 0);
    CHECK(pn_size(cat) == n + 4);
    /* reshape of the stride-0 view stays a view; slice the last row */
    int64_t rs[2] = {2, n / 2};
    pn_array *r = pn_reshape(big, rs, 2);
    int64_t s2[2] = {1, n / 2 - 3}, e2[2] = {2, n / 2}, o2[2] = {1, 3};
    test_check_values("reshape tail", pn_slice(r, s2, e2, NULL, 2), o2, 2, PN_UINT8, sevens, 0, 0);
    if (getenv("PONTE_TEST_LARGE")) { /* materializes 2 GiB: 10+ s, so only on request */
        pn_array *ce = pn_slice(cat, (int64_t[]){n - 2}, (int64_t[]){n + 4}, NULL, 1);
        double want[6] = {7, 7, 0, 1, 2, 3};
        test_check_values("concat tail", ce, (int64_t[]){6}, 1, PN_UINT8, want, 0, 0);
    }
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

typedef struct {
    int which;
} gctx;

static pn_array *shape_fn(void *ctx, pn_array *const *in)
{
    int w = ((gctx *)ctx)->which;
    pn_array *x = in[0];
    switch (w) {
    case 0: return pn_reshape(x, (int64_t[]){3, 8}, 2);
    case 1: return pn_reshape(pn_transpose(x, NULL, 0), (int64_t[]){2, 12}, 2);
    case 2: return pn_transpose(x, (int[]){2, 0, 1}, 3);
    case 3: return pn_broadcast_to(pn_slice(x, (int64_t[]){0, 0, 0}, (int64_t[]){2, 1, 4}, NULL, 3),
                                   (int64_t[]){3, 2, 5, 4}, 4);
    case 4: return pn_slice(x, (int64_t[]){1, 2, -1}, (int64_t[]){2, -4, -5}, (int64_t[]){1, -2, -2}, 3);
    case 5: return pn_flip(x, (int[]){0, 2}, 2);
    case 6: return pn_roll(x, (int64_t[]){1, -2}, (int[]){1, 2}, 2);
    case 7: return pn_tile(x, (int64_t[]){2, 1, 2}, 3);
    case 8: return pn_repeat(x, 3, 1);
    case 9: return pn_pad(x, (int[]){0, 2}, (int64_t[]){1, 0}, (int64_t[]){2, 3}, 2, NULL, PN_PAD_CONSTANT);
    case 10: return pn_pad(x, NULL, (int64_t[]){1, 2, 0}, (int64_t[]){0, 1, 2}, 3, NULL, PN_PAD_EDGE);
    case 11: return pn_squeeze(pn_expand_dims(pn_moveaxis(x, 0, -1), (int[]){1}, 1), NULL, 0);
    case 12: return pn_flatten(pn_swapaxes(x, 0, 2), 1, 2);
    case 13: { /* split: one of the pieces */
        pn_array *parts[3];
        if (pn_split(x, (int64_t[]){1, 3}, 2, 2, parts)) return NULL;
        return parts[1];
    }
    case 14: return pn_stack((pn_array *[]){x, pn_flip(x, NULL, 0)}, 2, 1);
    case 15: return pn_as_strided(x, (int64_t[]){5, 4}, (int64_t[]){4, 1}, 2, 2);
    case 16: /* overlapping windows of a strided view, read backwards */
        return pn_as_strided(pn_transpose(x, NULL, 0), (int64_t[]){3, 6}, (int64_t[]){-3, 2}, 2, 10);
    default: return NULL;
    }
}

static pn_array *two_input_fn(void *ctx, pn_array *const *in)
{
    int w = ((gctx *)ctx)->which;
    switch (w) {
    case 0: /* slice_update with a broadcast update: in[1] is (1,3) */
        return pn_slice_update(in[0], in[1], (int64_t[]){3, 0}, (int64_t[]){-5, 100},
                               (int64_t[]){-1, 2}, 2);
    case 1: /* concatenate along 1 with a view */
        return pn_concatenate((pn_array *[]){in[0], pn_transpose(in[1], NULL, 0), in[0]}, 3, 1);
    case 2: /* pad with a value: in[1] is 0-d */
        return pn_pad(in[0], NULL, (int64_t[]){1, 2}, (int64_t[]){2, 0}, 2, in[1], PN_PAD_CONSTANT);
    case 3: { /* meshgrid */
        pn_array *out[2];
        if (pn_meshgrid(in, 2, false, "xy", out)) return NULL;
        return pn_multiply(out[0], out[1]);
    }
    case 4: { /* broadcast_arrays */
        pn_array *out[2];
        if (pn_broadcast_arrays(in, 2, out)) return NULL;
        return pn_multiply(out[0], out[1]);
    }
    default: return NULL;
    }
}

TEST(gradients_single_input)
{
    pn_scope_push();
    int64_t s[3] = {2, 3, 4};
    pn_array *x = test_random_array(s, 3, PN_FLOAT64, -1, 1);
    for (int w = 0; w <= 16; w++) {
        gctx c = {w};
        char name[32];
        snprintf(name, sizeof name, "shape op %d", w);
        CHECK_MSG(test_gradcheck(name, shape_fn, &c, 1, &x, 1e-6), "%s: %s", name,
                  pn_last_error_message());
        pn_clear_error();
    }
    pn_scope_pop();
}

TEST(gradients_two_inputs)
{
    pn_scope_push();
    int64_t s[2] = {6, 5}, u[2] = {1, 3}, t[2] = {2, 6};
    pn_array *x = test_random_array(s, 2, PN_FLOAT64, -1, 1);
    pn_array *in0[2] = {x, test_random_array(u, 2, PN_FLOAT64, -1, 1)};
    pn_array *in1[2] = {x, test_random_array(t, 2, PN_FLOAT64, -1, 1)};
    pn_array *in2[2] = {x, pn_scalar(0.5, PN_FLOAT64)};
    int64_t a[1] = {3}, b[1] = {4};
    pn_array *in3[2] = {test_random_array(a, 1, PN_FLOAT64, -1, 1),
                        test_random_array(b, 1, PN_FLOAT64, -1, 1)};
    int64_t c1[2] = {3, 1}, c2[1] = {4};
    pn_array *in4[2] = {test_random_array(c1, 2, PN_FLOAT64, -1, 1),
                        test_random_array(c2, 1, PN_FLOAT64, -1, 1)};
    pn_array **ins[5] = {in0, in1, in2, in3, in4};
    for (int w = 0; w < 5; w++) {
        gctx c = {w};
        char name[32];
        snprintf(name, sizeof name, "two-input op %d", w);
        CHECK_MSG(test_gradcheck(name, two_input_fn, &c, 2, ins[w], 1e-6), "%s: %s", name,
                  pn_last_error_message());
        pn_clear_error();
    }
    pn_scope_pop();
}

/* Second derivatives: the derivative rules are built from the same ops, so the gradient of
 * a gradient works. h(x) = sum(a^3) + sum(b^3) + sum(c^3) with a, b, c chains of shape ops;
 * the gradient of h is checked against finite differences of itself (its vjp and jvp). */
static pn_array *cube_sum(pn_array *a)
{
    return pn_sum(pn_multiply(pn_multiply(a, a), a), NULL, 0, false);
}

static int h_closure(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *x = in[0]; /* (3,4) */
    pn_array *a = pn_transpose(pn_pad(pn_slice(x, (int64_t[]){2, 0}, (int64_t[]){-4, 4},
                                               (int64_t[]){-1, 2}, 2),
                                      NULL, (int64_t[]){1, 0}, (int64_t[]){0, 2}, 2, NULL,
                                      PN_PAD_EDGE),
                               NULL, 0);
    pn_array *b = pn_roll(pn_tile(pn_repeat(x, 2, 0), (int64_t[]){1, 2}, 2), (int64_t[]){3},
                          (int[]){1}, 1);
    pn_array *c = pn_slice_update(pn_flip(x, NULL, 0), pn_reshape(pn_slice(x, (int64_t[]){0, 0},
                                                                   (int64_t[]){1, 4}, NULL, 2),
                                                          (int64_t[]){4}, 1),
                                  (int64_t[]){1, 0}, (int64_t[]){2, 4}, NULL, 2);
    pn_array *d = pn_as_strided(x, (int64_t[]){3, 3}, (int64_t[]){3, 1}, 2, 1);
    out[0] = pn_add(pn_add(cube_sum(a), cube_sum(b)), pn_add(cube_sum(c), cube_sum(d)));
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *grad_of_h(void *ctx, pn_array *const *in)
{
    pn_closure *h = pn_closure_new(h_closure, NULL, NULL);
    pn_closure *g = pn_grad(h, NULL, 0);
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    int rc = pn_closure_call(g, 1, in, &nout, out);
    pn_closure_release(g);
    pn_closure_release(h);
    return rc || nout != 1 ? NULL : out[0];
}

TEST(second_derivatives)
{
    pn_scope_push();
    int64_t s[2] = {3, 4};
    pn_array *x = test_random_array(s, 2, PN_FLOAT64, -1, 1);
    CHECK_MSG(test_gradcheck("grad of h", grad_of_h, NULL, 1, &x, 1e-5), "%s",
              pn_last_error_message());
    pn_clear_error();
    pn_scope_pop();
}

/* A long chain of views evaluates without deep recursion and still shares the buffer. */
TEST(long_view_chain)
{
    pn_scope_push();
    int64_t s[2] = {3, 5};
    pn_array *x = test_random_array(s, 2, PN_FLOAT32, -1, 1);
    double *v = test_to_f64(x);
    pn_array *y = x;
    int n = test_quick() ? 2000 : 20000;
    for (int i = 0; i < n; i++) {
        y = pn_transpose(y, NULL, 0);
        if (i % 2) y = pn_reshape(y, s, 2);
    }
    test_check_values("view chain", y, s, 2, PN_FLOAT32, v, 0, 0);
    CHECK(shares_buffer(y, x));
    free(v);
    pn_scope_pop();
}
