/* test_indexing.c — take, take_along_axis, put_along_axis, scatter_add_axis, gather and
 * scatter against references computed here with index arithmetic on float64 values: random
 * data and random indices (negative, duplicate, out of range, every integer dtype), several
 * shapes/axes/dtypes, views as inputs, 0-d and empty arrays, the parallel paths, errors, and
 * derivatives through test_gradcheck. */
#include "harness.h"

#include <string.h>

#include "core/core.h"
#include "ops/indexing.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static const pn_dtype data_dtypes[] = {PN_FLOAT32, PN_INT32,  PN_FLOAT16, PN_BOOL,
                                       PN_UINT8,   PN_FLOAT64, PN_BFLOAT16, PN_INT64,
                                       PN_INT8,    PN_UINT16, PN_UINT64,   PN_COMPLEX64};
#define NDATA ((int)(sizeof data_dtypes / sizeof data_dtypes[0]))
static const pn_dtype idx_dtypes[] = {PN_INT32, PN_INT64, PN_UINT8, PN_INT8,
                                      PN_UINT32, PN_INT16, PN_UINT16, PN_UINT64};
#define NIDX ((int)(sizeof idx_dtypes / sizeof idx_dtypes[0]))

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

static pn_array *rnd(const int64_t *shape, int nd, pn_dtype t)
{
    bool unsig = pnC_is_unsigned(t) || t == PN_BOOL;
    return test_random_array(shape, nd, t, unsig ? 0 : -50, 50);
}

/* An index array of dtype t holding vals (converted). */
__attribute__((noinline)) static pn_array *idx_array(const int64_t *vals, const int64_t *shape,
                                                   int nd, pn_dtype t)
{
    int64_t n = prod(shape, nd);
    char *buf = malloc((size_t)(n ? n : 1) * 8);
    size_t es = pn_dtype_size(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = vals[i];
        void *p = buf + i * es;
        switch (t) {
        case PN_UINT8: *(uint8_t *)p = (uint8_t)v; break;
        case PN_UINT16: *(uint16_t *)p = (uint16_t)v; break;
        case PN_UINT32: *(uint32_t *)p = (uint32_t)v; break;
        case PN_UINT64: *(uint64_t *)p = (uint64_t)v; break;
        case PN_INT8: *(int8_t *)p = (int8_t)v; break;
        case PN_INT16: *(int16_t *)p = (int16_t)v; break;
        case PN_INT32: *(int32_t *)p = (int32_t)v; break;
        default: *(int64_t *)p = v; break;
        }
    }
    pn_array *r = pn_array_from_data(buf, shape, nd, t);
    free(buf);
    return r;
}

/* n random indices for an axis of extent N: in [-N, N) when neg (never for unsigned), with
 * duplicates. */
static void rand_idx(int64_t *v, int64_t n, int64_t N, bool neg)
{
    for (int64_t i = 0; i < n; i++) {
        if (N == 0) {
            v[i] = 0;
            continue;
        }
        int64_t r = (int64_t)(test_rand_u64() % (uint64_t)(neg ? 2 * N : N));
        v[i] = neg ? r - N : r;
    }
}

static int64_t wrap_clamp(int64_t v, int64_t N, int64_t w)
{
    if (v < 0) v += N;
    if (v < 0) v = 0;
    if (v > N - w) v = N - w;
    return v;
}

/* ───────────────────────────── take ───────────────────────────── */

/* Checks pn_take(a, idx, axis) against the reference built from a's values. */
static void check_take(const char *what, pn_array *a, pn_array *idx, const int64_t *iv,
                       int axis)
{
    pn_array *r = pn_take(a, idx, axis);
    CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
    if (!r) return;
    double *av = test_to_f64(a);
    int64_t ashape[PNC_MAX_NDIM];
    int and_ = pn_ndim(a);
    memcpy(ashape, pn_shape(a), sizeof(int64_t) * (size_t)and_);
    if (axis == PN_ALL_AXES) {
        ashape[0] = pn_size(a);
        and_ = 1;
        axis = 0;
    }
    if (axis < 0) axis += and_;
    int ind = pn_ndim(idx);
    int64_t oshape[PNC_MAX_NDIM], oi[PNC_MAX_NDIM], ai[PNC_MAX_NDIM];
    int ond = 0;
    for (int d = 0; d < axis; d++) oshape[ond++] = ashape[d];
    for (int d = 0; d < ind; d++) oshape[ond++] = pn_shape(idx)[d];
    for (int d = axis + 1; d < and_; d++) oshape[ond++] = ashape[d];
    int64_t n = prod(oshape, ond);
    double *ref = malloc((size_t)(n ? n : 1) * sizeof *ref);
    for (int64_t f = 0; f < n; f++) {
        unravel(f, oshape, ond, oi);
        int64_t ipos = ravel(oi + axis, pn_shape(idx), ind);
        for (int d = 0; d < axis; d++) ai[d] = oi[d];
        ai[axis] = wrap_clamp(iv[ipos], ashape[axis], 1);
        for (int d = axis + 1; d < and_; d++) ai[d] = oi[d + ind - 1];
        ref[f] = av[ravel(ai, ashape, and_)];
    }
    CHECK_MSG(test_check_values(what, r, oshape, ond, pn_array_dtype(a), ref, 0, 0), "%s", what);
    free(ref);
    free(av);
}

TEST(take_dtypes_shapes_axes)
{
    pn_scope_push();
    const int64_t shapes[][3] = {{7, 0, 0}, {4, 6, 0}, {3, 4, 5}};
    const int nds[] = {1, 2, 3};
    const int64_t ishapes[][2] = {{0, 0}, {9, 0}, {2, 3}};
    const int inds[] = {0, 1, 2};
    for (int t = 0; t < NDATA; t++) {
        for (int s = 0; s < 3; s++) {
            pn_array *a = rnd(shapes[s], nds[s], data_dtypes[t]);
            for (int axis = -nds[s]; axis <= nds[s]; axis++) {
                int ax = axis == nds[s] ? PN_ALL_AXES : axis;
                int64_t N = ax == PN_ALL_AXES ? pn_size(a) : shapes[s][axis < 0 ? axis + nds[s] : axis];
                for (int is = 0; is < 3; is++) {
                    pn_dtype it = idx_dtypes[(t + s + is + axis + 8) % NIDX];
                    int64_t iv[16];
                    int64_t ni = prod(ishapes[is], inds[is]);
                    rand_idx(iv, ni, N, !pnC_is_unsigned(it));
                    pn_array *idx = idx_array(iv, ishapes[is], inds[is], it);
                    char what[128];
                    snprintf(what, sizeof what, "take %s shape#%d axis %d idx#%d (%s)",
                             pn_dtype_name(data_dtypes[t]), s, ax, is, pn_dtype_name(it));
                    check_take(what, a, idx, iv, ax);
                }
            }
        }
    }
    pn_scope_pop();
}

TEST(take_views_and_out_of_range)
{
    pn_scope_push();
    int64_t shape[3] = {5, 4, 6};
    pn_array *base = rnd(shape, 3, PN_FLOAT32);
    /* transposed view (2,0,1) -> shape (6,5,4) */
    int perm[3] = {2, 0, 1};
    pn_array *at = pn_transpose(base, perm, 3);
    int64_t iv[12], ishape[2] = {3, 4};
    rand_idx(iv, 12, 5, true);
    pn_array *idx = idx_array(iv, ishape, 2, PN_INT32);
    for (int ax = 0; ax < 3; ax++) {
        int64_t v2[12];
        rand_idx(v2, 12, pn_shape(at)[ax], true);
        check_take("take transposed", at, idx_array(v2, ishape, 2, PN_INT64), v2, ax);
    }
    /* transposed indices */
    pn_array *idxt = pn_transpose(idx, NULL, 0);
    int64_t ivt[12];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ivt[i * 3 + j] = iv[j * 4 + i];
    check_take("take transposed indices", base, idxt, ivt, 0);
    /* strided view with a stride-0 dim */
    int64_t vs[3] = {3, 2, 4}, st[3] = {24, 0, 1};
    pn_array *as = pn_as_strided(base, vs, st, 3, 2);
    int64_t v3[5] = {0, 2, -1, 1, -3}, s3[1] = {5};
    check_take("take as_strided", as, idx_array(v3, s3, 1, PN_INT8), v3, 0);
    check_take("take as_strided axis 2", as, idx_array(v3, s3, 1, PN_INT8), v3, 2);
    /* out of range: clamped into [0, N-1] after one wrap */
    int64_t v4[6] = {100, -100, 5, -6, 4, -5}, s4[1] = {6};
    check_take("take out of range", base, idx_array(v4, s4, 1, PN_INT64), v4, 0);
    int64_t v5[3] = {1000, 7, 255}, s5[1] = {3};
    check_take("take out of range uint8", base, idx_array(v5, s5, 1, PN_UINT8), v5, 2);
    /* take from a 0-d array (flattened) and with a 0-d index */
    pn_array *s0 = rnd(NULL, 0, PN_FLOAT64);
    int64_t v6[4] = {0, -1, 0, 0}, s6[1] = {4};
    check_take("take 0-d flat", s0, idx_array(v6, s6, 1, PN_INT32), v6, PN_ALL_AXES);
    int64_t v7[1] = {-2};
    check_take("take 0-d index", base, idx_array(v7, NULL, 0, PN_INT32), v7, 1);
    pn_scope_pop();
}

TEST(take_empty)
{
    pn_scope_push();
    int64_t s1[2] = {0, 3}, s2[2] = {4, 0}, e[1] = {0};
    pn_array *ei = idx_array(NULL, e, 1, PN_INT32);
    int64_t one[1] = {0}, s_one[1] = {1};
    pn_array *r = pn_take(rnd(s1, 2, PN_FLOAT32), ei, 0);
    CHECK_OK(r);
    if (r) CHECK(pn_ndim(r) == 2 && pn_shape(r)[0] == 0 && pn_shape(r)[1] == 3);
    CHECK(test_check_values("take empty from empty", r, (int64_t[]){0, 3}, 2, PN_FLOAT32, NULL, 0, 0));
    /* the other axes empty: fine */
    r = pn_take(rnd(s2, 2, PN_INT32), idx_array(one, s_one, 1, PN_INT32), 0);
    CHECK(test_check_values("take from (4,0)", r, (int64_t[]){1, 0}, 2, PN_INT32, NULL, 0, 0));
    /* a non-empty take from an empty axis is an error */
    CHECK_ERR(pn_take(rnd(s1, 2, PN_FLOAT32), idx_array(one, s_one, 1, PN_INT32), 0),
              PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(take_large_parallel)
{
    pn_scope_push();
    int64_t V = test_quick() ? 200 : 3000, D = 64, n = test_quick() ? 500 : 20000;
    int64_t shape[2] = {V, D};
    pn_array *a = rnd(shape, 2, PN_FLOAT32);
    int64_t *iv = malloc((size_t)n * sizeof *iv);
    rand_idx(iv, n, V, true);
    pn_array *idx = idx_array(iv, &n, 1, PN_INT32);
    check_take("take embedding rows", a, idx, iv, 0);
    /* elementwise-sized slices: many positions, each one element */
    int64_t *iv2 = malloc((size_t)n * sizeof *iv2);
    rand_idx(iv2, n, D, false);
    check_take("take columns", a, idx_array(iv2, &n, 1, PN_UINT32), iv2, 1);
    /* few positions, huge slice: the slice is split between threads */
    int64_t v3[2] = {1, 0}, s3[1] = {2};
    int64_t big[2] = {3, test_quick() ? 20000 : 400000};
    check_take("take rows of a wide array", rnd(big, 2, PN_FLOAT64), idx_array(v3, s3, 1, PN_INT64),
               v3, 0);
    free(iv);
    free(iv2);
    pn_scope_pop();
}

/* ───────────────────────────── take_along_axis ───────────────────────────── */

static void check_take_along(const char *what, pn_array *a, pn_array *idx, const int64_t *iv,
                             int axis)
{
    pn_array *r = pn_take_along_axis(a, idx, axis);
    CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
    if (!r) return;
    double *av = test_to_f64(a);
    int nd = pn_ndim(a);
    int64_t ashape[PNC_MAX_NDIM];
    memcpy(ashape, pn_shape(a), sizeof(int64_t) * (size_t)nd);
    if (axis == PN_ALL_AXES) {
        ashape[0] = pn_size(a);
        nd = 1;
        axis = 0;
    }
    if (axis < 0) axis += nd;
    const int64_t *ishape = pn_shape(idx);
    int64_t oshape[PNC_MAX_NDIM], oi[PNC_MAX_NDIM], ii[PNC_MAX_NDIM], ai[PNC_MAX_NDIM];
    for (int d = 0; d < nd; d++)
        oshape[d] = d == axis ? ishape[d] : (ashape[d] == 1 ? ishape[d] : ashape[d]);
    int64_t n = prod(oshape, nd);
    double *ref = malloc((size_t)(n ? n : 1) * sizeof *ref);
    for (int64_t f = 0; f < n; f++) {
        unravel(f, oshape, nd, oi);
        for (int d = 0; d < nd; d++) {
            ii[d] = ishape[d] == 1 ? 0 : oi[d];
            ai[d] = ashape[d] == 1 ? 0 : oi[d];
        }
        ai[axis] = wrap_clamp(iv[ravel(ii, ishape, nd)], ashape[axis], 1);
        ref[f] = av[ravel(ai, ashape, nd)];
    }
    CHECK_MSG(test_check_values(what, r, oshape, nd, pn_array_dtype(a), ref, 0, 0), "%s", what);
    free(ref);
    free(av);
}

TEST(take_along_axis_cases)
{
    pn_scope_push();
    int64_t ashape[3] = {3, 4, 5};
    for (int t = 0; t < NDATA; t++) {
        pn_array *a = rnd(ashape, 3, data_dtypes[t]);
        for (int axis = -3; axis < 3; axis++) {
            int ax = axis < 0 ? axis + 3 : axis;
            /* same shape but a different extent along the axis; then broadcast indices */
            int64_t is1[3] = {3, 4, 5}, is2[3] = {1, 4, 1};
            is1[ax] = 7;
            is2[ax] = 2;
            const int64_t *iss[2] = {is1, is2};
            for (int k = 0; k < 2; k++) {
                int64_t ni = prod(iss[k], 3), iv[256];
                pn_dtype it = idx_dtypes[(t + k + ax) % NIDX];
                rand_idx(iv, ni, ashape[ax], !pnC_is_unsigned(it));
                char what[128];
                snprintf(what, sizeof what, "take_along_axis %s axis %d case %d",
                         pn_dtype_name(data_dtypes[t]), axis, k);
                check_take_along(what, a, idx_array(iv, iss[k], 3, it), iv, axis);
            }
        }
    }
    /* a broadcast against the indices (a has 1 where indices are larger) */
    int64_t as2[3] = {1, 4, 1}, is3[3] = {3, 2, 5}, iv[30];
    rand_idx(iv, 30, 4, true);
    check_take_along("take_along_axis broadcast a", rnd(as2, 3, PN_FLOAT32),
                     idx_array(iv, is3, 3, PN_INT32), iv, 1);
    /* views: transposed a and transposed indices */
    pn_array *at = pn_transpose(rnd(ashape, 3, PN_FLOAT64), NULL, 0); /* (5,4,3) */
    int64_t is4[3] = {3, 4, 5}, iv4[60];
    rand_idx(iv4, 60, 5, true);
    pn_array *it = pn_transpose(idx_array(iv4, is4, 3, PN_INT64), NULL, 0); /* (5,4,3) */
    int64_t ivt[60];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) ivt[(i * 4 + j) * 3 + k] = iv4[(k * 4 + j) * 5 + i];
    check_take_along("take_along_axis views", at, it, ivt, 0);
    /* flattened with 1-d indices, out of range clamped */
    int64_t fl[5] = {0, -1, 59, 60, -61}, fs[1] = {5};
    check_take_along("take_along_axis flat", at, idx_array(fl, fs, 1, PN_INT32), fl, PN_ALL_AXES);
    /* empty indices */
    int64_t es[3] = {3, 0, 5};
    check_take_along("take_along_axis empty", rnd(ashape, 3, PN_INT32),
                     idx_array(NULL, es, 3, PN_INT32), NULL, 1);
    /* large: the parallel path */
    int64_t B = test_quick() ? 64 : 2000, V = 300, bs[2] = {B, V}, ts[2] = {B, 3};
    int64_t *bv = malloc((size_t)(3 * B) * sizeof *bv);
    rand_idx(bv, 3 * B, V, false);
    check_take_along("take_along_axis large", rnd(bs, 2, PN_FLOAT32), idx_array(bv, ts, 2, PN_INT64),
                     bv, 1);
    free(bv);
    pn_scope_pop();
}

/* ───────────────────────────── put_along_axis / scatter_add_axis ───────────────────────────── */

/* Reference of put_along_axis (add = false) or scatter_add_axis (add = true): positions of the
 * broadcast index/value shape in row-major order; out-of-range indices are dropped. */
static void check_put_along(const char *what, pn_array *a, pn_array *idx, const int64_t *iv,
                            pn_array *vals, int axis, bool add)
{
    pn_array *r = add ? pnO_scatter_add_axis(a, idx, vals, axis)
                      : pn_put_along_axis(a, idx, vals, axis);
    CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
    if (!r) return;
    int nd = pn_ndim(a);
    if (axis < 0) axis += nd;
    const int64_t *a0shape = pn_shape(a), *ishape = pn_shape(idx);
    int64_t ushape[PNC_MAX_NDIM], vshape[PNC_MAX_NDIM], ashape[PNC_MAX_NDIM];
    int vnd = pn_ndim(vals);
    for (int d = 0; d < nd; d++) {
        int vd = d - (nd - vnd);
        vshape[d] = vd >= 0 ? pn_shape(vals)[vd] : 1;
        ushape[d] = ishape[d] != 1 ? ishape[d] : vshape[d];
        if (d != axis && ushape[d] == 1) ushape[d] = a0shape[d];
        ashape[d] = d == axis || a0shape[d] != 1 ? a0shape[d] : ushape[d]; /* a broadcast */
    }
    double *a0 = test_to_f64(a), *vv = test_to_f64(vals);
    int64_t n = prod(ushape, nd), on = prod(ashape, nd), ui[PNC_MAX_NDIM], ii[PNC_MAX_NDIM],
            vi[PNC_MAX_NDIM], ai[PNC_MAX_NDIM];
    double *ref = malloc((size_t)(on ? on : 1) * sizeof *ref);
    for (int64_t f = 0; f < on; f++) {
        unravel(f, ashape, nd, ai);
        for (int d = 0; d < nd; d++) ai[d] = a0shape[d] == 1 ? 0 : ai[d];
        ref[f] = a0[ravel(ai, a0shape, nd)];
    }
    free(a0);
    pn_dtype dt = pn_array_dtype(a);
    for (int64_t f = 0; f < n; f++) {
        unravel(f, ushape, nd, ui);
        for (int d = 0; d < nd; d++) {
            ii[d] = ishape[d] == 1 ? 0 : ui[d];
            vi[d] = vshape[d] == 1 ? 0 : ui[d];
            ai[d] = ui[d];
        }
        int64_t k = iv[ravel(ii, ishape, nd)];
        if (k < 0) k += ashape[axis];
        if (k < 0 || k >= ashape[axis]) continue;
        ai[axis] = k;
        double v = vv[ravel(vi, vshape, nd)];
        if (dt == PN_BOOL) v = v != 0;
        int64_t o = ravel(ai, ashape, nd);
        ref[o] = add ? (dt == PN_BOOL ? (double)(ref[o] != 0 || v != 0) : ref[o] + v) : v;
    }
    CHECK_MSG(test_check_values(what, r, ashape, nd, dt, ref, add ? test_tol(dt) : 0, 0), "%s",
              what);
    free(ref);
    free(vv);
}

TEST(put_along_axis_cases)
{
    pn_scope_push();
    int64_t ashape[3] = {3, 4, 5};
    for (int t = 0; t < NDATA; t++) {
        pn_dtype dt = data_dtypes[t];
        if (dt == PN_COMPLEX64) continue; /* values compared through real parts only */
        pn_array *a = test_random_array(ashape, 3, dt, 0, 8);
        for (int axis = -3; axis < 3; axis++) {
            int ax = axis < 0 ? axis + 3 : axis;
            int64_t is1[3] = {3, 4, 5}, is2[3] = {1, 4, 1};
            is1[ax] = 6;
            is2[ax] = 3;
            const int64_t *iss[2] = {is1, is2};
            for (int k = 0; k < 2; k++) {
                int64_t ni = prod(iss[k], 3), iv[256];
                pn_dtype it = idx_dtypes[(t + k + ax) % NIDX];
                rand_idx(iv, ni, ashape[ax], !pnC_is_unsigned(it));
                pn_array *idx = idx_array(iv, iss[k], 3, it);
                /* values: full shape, or a scalar of another dtype */
                pn_array *v1 = test_random_array(iss[k], 3, dt, 0, 8);
                pn_array *v2 = pn_scalar(3, PN_FLOAT64);
                char what[128];
                for (int add = 0; add < 2; add++) {
                    snprintf(what, sizeof what, "%s %s axis %d case %d",
                             add ? "scatter_add_axis" : "put_along_axis", pn_dtype_name(dt), axis,
                             k);
                    check_put_along(what, a, idx, iv, v1, axis, add);
                    check_put_along(what, a, idx, iv, v2, axis, add);
                }
            }
        }
    }
    /* out-of-range indices are dropped; a broadcast on other axes; values broadcast along axis */
    int64_t as[2] = {1, 6}, is[2] = {3, 4}, iv[12] = {0, 6, -7, 5, 2, 2, 2, 9, -1, -6, 100, 3};
    check_put_along("put_along_axis drop", rnd(as, 2, PN_FLOAT32), idx_array(iv, is, 2, PN_INT32),
                    iv, rnd(is, 2, PN_FLOAT32), 1, false);
    check_put_along("scatter_add_axis drop", rnd(as, 2, PN_FLOAT32), idx_array(iv, is, 2, PN_INT32),
                    iv, rnd(is, 2, PN_FLOAT32), 1, true);
    int64_t vs[2] = {3, 1};
    check_put_along("put_along_axis value column", rnd((int64_t[]){3, 6}, 2, PN_INT64),
                    idx_array(iv, is, 2, PN_INT64), iv, rnd(vs, 2, PN_INT64), 1, false);
    /* flattened */
    int64_t fl[4] = {0, 17, -1, 5}, fs[1] = {4};
    pn_array *a = rnd((int64_t[]){3, 6}, 2, PN_FLOAT32);
    pn_array *r = pn_put_along_axis(a, idx_array(fl, fs, 1, PN_INT32), pn_scalar(-1, PN_FLOAT32),
                                    PN_ALL_AXES);
    double *ref = test_to_f64(a);
    ref[0] = ref[17] = ref[5] = -1;
    CHECK(test_check_values("put_along_axis flat", r, pn_shape(a), 2, PN_FLOAT32, ref, 0, 0));
    free(ref);
    /* views as inputs, and the large parallel path with many duplicates */
    pn_array *at = pn_transpose(rnd((int64_t[]){5, 4}, 2, PN_FLOAT64), NULL, 0); /* (4,5) */
    int64_t iv2[12], is2[2] = {4, 3};
    rand_idx(iv2, 12, 5, true);
    check_put_along("scatter_add_axis views", at, idx_array(iv2, is2, 2, PN_INT32), iv2,
                    pn_transpose(rnd((int64_t[]){3, 4}, 2, PN_FLOAT64), NULL, 0), 1, true);
    int64_t B = test_quick() ? 100 : 3000, bs[2] = {B, 50}, ts[2] = {B, 200};
    int64_t *bv = malloc((size_t)(200 * B) * sizeof *bv);
    rand_idx(bv, 200 * B, 50, true);
    pn_array *bidx = idx_array(bv, ts, 2, PN_INT32);
    pn_array *big = test_random_array(bs, 2, PN_FLOAT64, -4, 4);
    pn_array *bvals = test_random_array(ts, 2, PN_FLOAT64, -4, 4);
    check_put_along("scatter_add_axis large", big, bidx, bv, bvals, 1, true);
    check_put_along("put_along_axis large", big, bidx, bv, bvals, 1, false);
    free(bv);
    pn_scope_pop();
}

/* ───────────────────────────── gather ───────────────────────────── */

/* Reference of MLX's gather; ivs[k] holds index array k's values with shape ishapes[k]. */
static void check_gather(const char *what, pn_array *a, pn_array *const *idx,
                         const int64_t *const *ivs, int nidx, const int *axes,
                         const int64_t *slice)
{
    pn_array *r = pn_gather(a, idx, nidx, axes, slice);
    CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
    if (!r) return;
    int n = pn_ndim(a);
    const int64_t *ashape = pn_shape(a);
    int m = 0;
    int64_t ishape[PNC_MAX_NDIM];
    for (int k = 0; k < nidx; k++) {
        int kn = pn_ndim(idx[k]);
        if (kn > m) {
            for (int d = m - 1; d >= 0; d--) ishape[d + kn - m] = ishape[d];
            for (int d = 0; d < kn - m; d++) ishape[d] = 1;
            m = kn;
        }
        for (int d = 0; d < kn; d++) {
            int64_t e = pn_shape(idx[k])[d];
            if (e != 1) ishape[m - kn + d] = e;
        }
    }
    int64_t oshape[PNC_MAX_NDIM], oi[PNC_MAX_NDIM], ai[PNC_MAX_NDIM], ki[PNC_MAX_NDIM];
    memcpy(oshape, ishape, sizeof(int64_t) * (size_t)m);
    memcpy(oshape + m, slice, sizeof(int64_t) * (size_t)n);
    int64_t total = prod(oshape, m + n);
    double *av = test_to_f64(a), *ref = malloc((size_t)(total ? total : 1) * sizeof *ref);
    for (int64_t f = 0; f < total; f++) {
        unravel(f, oshape, m + n, oi);
        for (int d = 0; d < n; d++) ai[d] = oi[m + d];
        for (int k = 0; k < nidx; k++) {
            int kn = pn_ndim(idx[k]);
            const int64_t *ks = pn_shape(idx[k]);
            for (int d = 0; d < kn; d++) ki[d] = ks[d] == 1 ? 0 : oi[m - kn + d];
            int ax = axes[k] < 0 ? axes[k] + n : axes[k];
            ai[ax] += wrap_clamp(ivs[k][ravel(ki, ks, kn)], ashape[ax], slice[ax]);
        }
        ref[f] = av[ravel(ai, ashape, n)];
    }
    CHECK_MSG(test_check_values(what, r, oshape, m + n, pn_array_dtype(a), ref, 0, 0), "%s", what);
    free(ref);
    free(av);
}

TEST(gather_cases)
{
    pn_scope_push();
    int64_t ashape[3] = {4, 5, 6};
    for (int t = 0; t < NDATA; t++) {
        pn_array *a = rnd(ashape, 3, data_dtypes[t]);
        /* two index arrays broadcast (3,1) x (2), slices of width 2 on an indexed axis */
        int64_t s0[2] = {3, 1}, s1[1] = {2}, v0[3], v1[2];
        pn_dtype t0 = idx_dtypes[t % NIDX], t1 = idx_dtypes[(t + 3) % NIDX];
        rand_idx(v0, 3, 4, !pnC_is_unsigned(t0));
        rand_idx(v1, 2, 6, !pnC_is_unsigned(t1));
        pn_array *idx[2] = {idx_array(v0, s0, 2, t0), idx_array(v1, s1, 1, t1)};
        const int64_t *ivs[2] = {v0, v1};
        int axes[2] = {0, -1};
        int64_t slice[3] = {1, 5, 2};
        char what[96];
        snprintf(what, sizeof what, "gather %s two indices", pn_dtype_name(data_dtypes[t]));
        check_gather(what, a, idx, ivs, 2, axes, slice);
        /* one index array (take-like) on the middle axis, partial slices elsewhere */
        int64_t s2[2] = {2, 2}, v2[4] = {-1, 4, 0, 9};
        pn_array *i2 = idx_array(v2, s2, 2, PN_INT32);
        const int64_t *iv2[1] = {v2};
        int ax2[1] = {1};
        int64_t slice2[3] = {3, 1, 4};
        check_gather("gather one index", a, &i2, iv2, 1, ax2, slice2);
        /* no index arrays: a plain slice from the origin */
        int64_t slice3[3] = {2, 3, 1};
        check_gather("gather no indices", a, NULL, NULL, 0, NULL, slice3);
    }
    /* transposed a, 0-d index, every axis indexed */
    pn_array *at = pn_transpose(rnd(ashape, 3, PN_FLOAT32), NULL, 0); /* (6,5,4) */
    int64_t v0[1] = {-2}, v1[3] = {0, 4, 3}, v2[3] = {1, 1, -4}, s1[1] = {3};
    pn_array *idx[3] = {idx_array(v0, NULL, 0, PN_INT64), idx_array(v1, s1, 1, PN_INT16),
                        idx_array(v2, s1, 1, PN_INT64)};
    const int64_t *ivs[3] = {v0, v1, v2};
    int axes[3] = {0, 1, 2};
    int64_t sl[3] = {1, 1, 1}, sl2[3] = {0, 1, 1};
    check_gather("gather all axes on a view", at, idx, ivs, 3, axes, sl);
    check_gather("gather empty slice", at, idx, ivs, 3, axes, sl2);
    /* large, parallel */
    int64_t bs[2] = {test_quick() ? 100 : 2000, 128}, n = test_quick() ? 300 : 10000;
    int64_t *bv = malloc((size_t)n * sizeof *bv);
    rand_idx(bv, n, bs[0], true);
    pn_array *bi = idx_array(bv, &n, 1, PN_INT32);
    const int64_t *bvs[1] = {bv};
    int bax[1] = {0};
    int64_t bsl[2] = {1, 128};
    check_gather("gather large", rnd(bs, 2, PN_FLOAT32), &bi, bvs, 1, bax, bsl);
    free(bv);
    pn_scope_pop();
}

/* ───────────────────────────── scatter ───────────────────────────── */

static double combine(pn_scatter_mode mode, pn_dtype dt, double x, double y)
{
    double r;
    switch (mode) {
    case PN_SCATTER_SET: r = y; break;
    case PN_SCATTER_ADD: r = x + y; break;
    case PN_SCATTER_PROD: r = x * y; break;
    case PN_SCATTER_MAX: r = y > x ? y : x; break;
    default: r = y < x ? y : x; break;
    }
    return dt == PN_BOOL ? (double)(r != 0) : r;
}

/* Reference of MLX's scatter (index positions in row-major order; slices that do not fit
 * are dropped). */
static void check_scatter(const char *what, pn_array *a, pn_array *const *idx,
                          const int64_t *const *ivs, int nidx, pn_array *upd, const int *axes,
                          pn_scatter_mode mode)
{
    pn_array *r = pn_scatter(a, idx, nidx, upd, axes, mode);
    CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
    if (!r) return;
    int n = pn_ndim(a), un = pn_ndim(upd), m = un - n;
    const int64_t *ashape = pn_shape(a), *ushape = pn_shape(upd);
    pn_dtype dt = pn_array_dtype(a);
    double *ref = test_to_f64(a), *uv = test_to_f64(upd);
    int64_t total = prod(ushape, un), slice = prod(ushape + m, n);
    int64_t ui[PNC_MAX_NDIM], ai[PNC_MAX_NDIM], ki[PNC_MAX_NDIM], start[PNC_MAX_NDIM];
    for (int64_t f = 0; f < total; f++) {
        unravel(f, ushape, un, ui);
        bool fits = true;
        for (int d = 0; d < n; d++) start[d] = 0;
        for (int k = 0; k < nidx; k++) {
            int kn = pn_ndim(idx[k]);
            const int64_t *ks = pn_shape(idx[k]);
            for (int d = 0; d < kn; d++) ki[d] = ks[d] == 1 ? 0 : ui[m - kn + d];
            int ax = axes[k] < 0 ? axes[k] + n : axes[k];
            int64_t v = ivs[k][ravel(ki, ks, kn)];
            if (v < 0) v += ashape[ax];
            if (v < 0 || v + ushape[m + ax] > ashape[ax]) fits = false;
            start[ax] = v;
        }
        if (!fits) continue;
        for (int d = 0; d < n; d++) ai[d] = start[d] + ui[m + d];
        int64_t o = ravel(ai, ashape, n);
        ref[o] = combine(mode, dt, ref[o], dt == PN_BOOL ? (double)(uv[f] != 0) : uv[f]);
    }
    (void)slice;
    double tol = mode == PN_SCATTER_SET ? 0 : test_tol(dt);
    CHECK_MSG(test_check_values(what, r, ashape, n, dt, ref, tol, tol), "%s: %s", what,
              pn_last_error_message());
    free(ref);
    free(uv);
}

TEST(scatter_modes_dtypes)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_INT32, PN_INT64, PN_FLOAT16,
                            PN_BFLOAT16, PN_INT16, PN_BOOL, PN_UINT8};
    int64_t ashape[3] = {5, 4, 3};
    for (int t = 0; t < (int)(sizeof dts / sizeof dts[0]); t++) {
        pn_dtype dt = dts[t];
        bool unsig = dt == PN_BOOL || dt == PN_UINT8;
        for (int mode = PN_SCATTER_SET; mode <= PN_SCATTER_MIN; mode++) {
            if (unsig && mode == PN_SCATTER_PROD) continue;
            /* small integers: exact in every dtype, sums and short products included */
            pn_array *a = test_random_array(ashape, 3, dt, unsig ? 0 : -3, 4);
            /* index arrays (4,1) and (1,2) on axes 0 and 2: 8 positions with duplicates */
            int64_t s0[2] = {4, 1}, s1[2] = {1, 2}, v0[4], v1[2];
            rand_idx(v0, 4, 5, true);
            rand_idx(v1, 2, 3, true);
            v0[3] = v0[0]; /* a certain duplicate */
            pn_array *idx[2] = {idx_array(v0, s0, 2, PN_INT32), idx_array(v1, s1, 2, PN_INT64)};
            const int64_t *ivs[2] = {v0, v1};
            int axes[2] = {0, 2};
            int64_t us[5] = {4, 2, 1, 4, 1};
            pn_array *u = test_random_array(us, 5, dt, unsig ? 0 : -3, 4);
            char what[96];
            snprintf(what, sizeof what, "scatter mode %d %s", mode, pn_dtype_name(dt));
            check_scatter(what, a, idx, ivs, 2, u, axes, (pn_scatter_mode)mode);
            /* slices wider than 1 on an indexed axis (windows overlap; ones that do not fit
             * are dropped) */
            int64_t s2[1] = {6}, v2[6] = {0, 3, 2, -2, 1, 0};
            pn_array *i2 = idx_array(v2, s2, 1, PN_INT8);
            const int64_t *iv2[1] = {v2};
            int ax2[1] = {0};
            int64_t us2[4] = {6, 2, 4, 2};
            pn_array *u2 = test_random_array(us2, 4, dt, unsig ? 0 : -2, 3);
            snprintf(what, sizeof what, "scatter windows mode %d %s", mode, pn_dtype_name(dt));
            check_scatter(what, a, &i2, iv2, 1, u2, ax2, (pn_scatter_mode)mode);
        }
    }
    /* updates of another dtype are cast; a transposed view as a; no index arrays */
    pn_array *at = pn_transpose(test_random_array(ashape, 3, PN_FLOAT32, -3, 3), NULL, 0);
    int64_t us[3] = {2, 2, 2};
    check_scatter("scatter no indices", at, NULL, NULL, 0,
                  test_random_array(us, 3, PN_INT32, -3, 3), NULL, PN_SCATTER_ADD);
    int64_t v0[3] = {2, -1, 2}, s0[1] = {3};
    pn_array *i0 = idx_array(v0, s0, 1, PN_INT8);
    const int64_t *iv0[1] = {v0};
    int ax0[1] = {1};
    int64_t us0[4] = {3, 3, 1, 5};
    check_scatter("scatter on a view", at, &i0, iv0, 1, test_random_array(us0, 4, PN_FLOAT64, -3, 3),
                  ax0, PN_SCATTER_ADD);
    pn_scope_pop();
}

TEST(scatter_large_parallel)
{
    pn_scope_push();
    int64_t V = test_quick() ? 50 : 500, D = test_quick() ? 64 : 512, n = test_quick() ? 200 : 4000;
    int64_t ashape[2] = {V, D}, us[3] = {n, 1, D};
    pn_array *a = test_random_array(ashape, 2, PN_FLOAT64, -4, 4);
    int64_t *iv = malloc((size_t)n * sizeof *iv);
    rand_idx(iv, n, V, true);
    pn_array *idx = idx_array(iv, &n, 1, PN_INT64);
    const int64_t *ivs[1] = {iv};
    int axes[1] = {0};
    pn_array *u = test_random_array(us, 3, PN_FLOAT64, -4, 4);
    for (int mode = PN_SCATTER_SET; mode <= PN_SCATTER_MIN; mode++) {
        if (mode == PN_SCATTER_PROD) continue;
        char what[64];
        snprintf(what, sizeof what, "scatter large mode %d", mode);
        check_scatter(what, a, &idx, ivs, 1, u, axes, (pn_scatter_mode)mode);
    }
    /* elementwise scatter: many one-element slices through two index arrays */
    int64_t *iv2 = malloc((size_t)n * sizeof *iv2), us2[3] = {n, 1, 1};
    rand_idx(iv2, n, D, false);
    pn_array *idx2[2] = {idx, idx_array(iv2, &n, 1, PN_INT32)};
    const int64_t *ivs2[2] = {iv, iv2};
    int axes2[2] = {0, 1};
    check_scatter("scatter elementwise", a, idx2, ivs2, 2, test_random_array(us2, 3, PN_FLOAT64, -4, 4),
                  axes2, PN_SCATTER_ADD);
    free(iv);
    free(iv2);
    pn_scope_pop();
}

TEST(scatter_empty)
{
    pn_scope_push();
    int64_t ashape[2] = {3, 4}, e[1] = {0}, us[3] = {0, 1, 4};
    pn_array *a = rnd(ashape, 2, PN_FLOAT32);
    pn_array *idx = idx_array(NULL, e, 1, PN_INT32);
    const int64_t *ivs[1] = {NULL};
    int axes[1] = {0};
    check_scatter("scatter empty updates", a, &idx, ivs, 1, rnd(us, 3, PN_FLOAT32), axes,
                  PN_SCATTER_SET);
    int64_t es[2] = {0, 4};
    pn_array *ea = rnd(es, 2, PN_FLOAT32);
    int64_t gs[2] = {1, 4};
    pn_array *g = pn_gather(ea, &idx, 1, axes, gs);
    CHECK(test_check_values("gather empty", g, (int64_t[]){0, 1, 4}, 3, PN_FLOAT32, NULL, 0, 0));
    pn_scope_pop();
}

/* ───────────────────────────── errors ───────────────────────────── */

TEST(errors)
{
    pn_scope_push();
    int64_t s[2] = {3, 4}, s1[1] = {2}, iv[2] = {0, 1};
    pn_array *a = rnd(s, 2, PN_FLOAT32);
    pn_array *fi = test_random_array(s1, 1, PN_FLOAT32, 0, 2);
    pn_array *bi = test_random_array(s1, 1, PN_BOOL, 0, 2);
    pn_array *i1 = idx_array(iv, s1, 1, PN_INT32);
    pn_array *i2 = idx_array((int64_t[]){0, 1, 2, 3, 0, 1, 2, 3}, (int64_t[]){2, 4}, 2, PN_INT32);
    /* index dtypes */
    CHECK_ERR(pn_take(a, fi, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_take(a, bi, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_take_along_axis(a, pn_astype(i2, PN_FLOAT64), 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_put_along_axis(a, pn_astype(i2, PN_COMPLEX64), a, 1), PN_ERR_INVALID_ARGUMENT);
    int ax0[1] = {0};
    int64_t sl[2] = {1, 4};
    CHECK_ERR(pn_gather(a, &fi, 1, ax0, sl), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_scatter(a, &bi, 1, rnd((int64_t[]){2, 1, 4}, 3, PN_FLOAT32), ax0, PN_SCATTER_ADD),
              PN_ERR_INVALID_ARGUMENT);
    /* axes */
    CHECK_ERR(pn_take(a, i1, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_take(a, i1, -3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_take_along_axis(a, i2, 5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_put_along_axis(a, i2, a, -3), PN_ERR_INVALID_ARGUMENT);
    int bad_ax[1] = {2}, dup_ax[2] = {0, -2};
    CHECK_ERR(pn_gather(a, &i1, 1, bad_ax, sl), PN_ERR_INVALID_ARGUMENT);
    pn_array *two[2] = {i1, i1};
    CHECK_ERR(pn_gather(a, two, 2, dup_ax, (int64_t[]){1, 1}), PN_ERR_INVALID_ARGUMENT);
    pn_array *three[3] = {i1, i1, i1};
    CHECK_ERR(pn_gather(a, three, 3, (int[]){0, 1, 2}, sl), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather(a, &i1, 1, NULL, sl), PN_ERR_INVALID_ARGUMENT);
    /* shapes */
    CHECK_ERR(pn_take_along_axis(a, i1, 0), PN_ERR_INVALID_ARGUMENT); /* ndim mismatch */
    CHECK_ERR(pn_take_along_axis(a, idx_array(iv, (int64_t[]){1, 2}, 2, PN_INT32), 0),
              PN_ERR_INVALID_ARGUMENT); /* 2 vs 4 on axis 1 */
    CHECK_ERR(pn_put_along_axis(a, i2, rnd((int64_t[]){3}, 1, PN_FLOAT32), 1),
              PN_ERR_INVALID_ARGUMENT); /* values (3) vs indices (2,4) */
    CHECK_ERR(pn_put_along_axis(a, i2, rnd((int64_t[]){2, 2, 4}, 3, PN_FLOAT32), 1),
              PN_ERR_INVALID_ARGUMENT); /* extra non-singleton leading dim */
    CHECK_ERR(pn_gather(a, &i1, 1, ax0, (int64_t[]){1, 5}), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather(a, &i1, 1, ax0, (int64_t[]){-1, 4}), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather(a, &i1, 1, ax0, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather(rnd((int64_t[]){0, 4}, 2, PN_FLOAT32), &i1, 1, ax0, (int64_t[]){1, 4}),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather(a, (pn_array *[]){i1, idx_array((int64_t[]){0, 1, 2}, (int64_t[]){1, 3}, 2, PN_INT32)}, 2,
                        (int[]){0, 1}, (int64_t[]){1, 1}),
              PN_ERR_INVALID_ARGUMENT); /* index shapes (2) and (1,3) do not broadcast */
    CHECK_ERR(pn_scatter(a, &i1, 1, rnd((int64_t[]){2, 4}, 2, PN_FLOAT32), ax0, PN_SCATTER_SET),
              PN_ERR_INVALID_ARGUMENT); /* rank */
    CHECK_ERR(pn_scatter(a, &i1, 1, rnd((int64_t[]){3, 1, 4}, 3, PN_FLOAT32), ax0, PN_SCATTER_SET),
              PN_ERR_INVALID_ARGUMENT); /* index part */
    CHECK_ERR(pn_scatter(a, &i1, 1, rnd((int64_t[]){2, 1, 5}, 3, PN_FLOAT32), ax0, PN_SCATTER_SET),
              PN_ERR_INVALID_ARGUMENT); /* slice too large */
    CHECK_ERR(pn_scatter(a, &i1, 1, rnd((int64_t[]){2, 1, 4}, 3, PN_FLOAT32), ax0,
                         (pn_scatter_mode)9),
              PN_ERR_INVALID_ARGUMENT);
    /* sticky NULL inputs */
    pn_clear_error();
    pn_array *bad = pn_take(a, fi, 0);
    CHECK(bad == NULL);
    CHECK(pn_take(bad, i1, 0) == NULL);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK_ERR(pn_take(NULL, i1, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_scatter(a, &i1, 1, NULL, ax0, PN_SCATTER_SET), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── derivatives ───────────────────────────── */

typedef struct {
    int op;
    int axis;
    int nidx;
    int axes[4];
    int64_t slice[4];
    pn_scatter_mode mode;
} grad_ctx;

enum { G_TAKE, G_TAKE_ALONG, G_PUT_ALONG, G_ADD_AXIS, G_GATHER, G_SCATTER };

/* in: [a, idx..., (values/updates)]; the function squares to make second derivatives
 * matter. */
static pn_array *grad_fn(void *ctx, pn_array *const *in)
{
    const grad_ctx *c = ctx;
    pn_array *r = NULL;
    switch (c->op) {
    case G_TAKE: r = pn_take(in[0], in[1], c->axis); break;
    case G_TAKE_ALONG: r = pn_take_along_axis(in[0], in[1], c->axis); break;
    case G_PUT_ALONG: r = pn_put_along_axis(in[0], in[1], in[2], c->axis); break;
    case G_ADD_AXIS: r = pnO_scatter_add_axis(in[0], in[1], in[2], c->axis); break;
    case G_GATHER: r = pn_gather(in[0], in + 1, c->nidx, c->axes, c->slice); break;
    default: r = pn_scatter(in[0], in + 1, c->nidx, in[1 + c->nidx], c->axes, c->mode); break;
    }
    return pn_multiply(r, r);
}

static void gradcheck(const char *name, grad_ctx c, int nin, pn_array **in)
{
    CHECK_MSG(test_gradcheck(name, grad_fn, &c, nin, in, 1e-6), "%s: %s", name,
              pn_last_error_message());
    pn_clear_error();
}

/* A permutation of [0, n) (unique indices for set-mode scatters, where only the last of
 * duplicates is differentiable). */
static void rand_perm(int64_t *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(test_rand_u64() % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

TEST(gradients)
{
    pn_scope_push();
    int64_t s[3] = {3, 4, 5};
    pn_array *a = test_random_array(s, 3, PN_FLOAT32, -2, 2);
    int64_t iv[24], is[2] = {2, 3};
    rand_idx(iv, 6, 4, true);
    iv[5] = iv[0]; /* duplicates accumulate in the gradient */
    pn_array *idx = idx_array(iv, is, 2, PN_INT32);
    gradcheck("take axis 1", (grad_ctx){.op = G_TAKE, .axis = 1}, 2, (pn_array *[]){a, idx});
    rand_idx(iv, 6, 60, true);
    gradcheck("take flat", (grad_ctx){.op = G_TAKE, .axis = PN_ALL_AXES}, 2,
              (pn_array *[]){a, idx_array(iv, is, 2, PN_INT64)});
    /* take_along_axis, with broadcast indices */
    int64_t ts[3] = {3, 2, 1};
    rand_idx(iv, 6, 4, true);
    pn_array *tidx = idx_array(iv, ts, 3, PN_INT64);
    gradcheck("take_along_axis", (grad_ctx){.op = G_TAKE_ALONG, .axis = 1}, 2,
              (pn_array *[]){a, tidx});
    /* put_along_axis with unique indices per row; values broadcast from (3,1,5) */
    int64_t ps[3] = {3, 2, 5}, pv[30];
    for (int i = 0; i < 15; i++) {
        int64_t p4[4];
        rand_perm(p4, 4);
        pv[i] = p4[0];
        pv[15 + i] = p4[1] - 4; /* negative form of another row entry */
    }
    int64_t pv2[30];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 5; k++) {
            pv2[(i * 2 + 0) * 5 + k] = pv[i * 5 + k];
            pv2[(i * 2 + 1) * 5 + k] = pv[15 + i * 5 + k];
        }
    pn_array *pidx = idx_array(pv2, ps, 3, PN_INT32);
    pn_array *vals = test_random_array((int64_t[]){3, 2, 5}, 3, PN_FLOAT32, -2, 2);
    gradcheck("put_along_axis", (grad_ctx){.op = G_PUT_ALONG, .axis = 1}, 3,
              (pn_array *[]){a, pidx, vals});
    gradcheck("scatter_add_axis", (grad_ctx){.op = G_ADD_AXIS, .axis = 1}, 3,
              (pn_array *[]){a, tidx, test_random_array(ts, 3, PN_FLOAT32, -2, 2)});
    /* gather with two index arrays and windows */
    int64_t g0[3] = {0, 2, -1}, g1[2] = {1, -2};
    pn_array *gi[2] = {idx_array(g0, (int64_t[]){3, 1}, 2, PN_INT32),
                       idx_array(g1, (int64_t[]){2}, 1, PN_INT32)};
    grad_ctx gc = {.op = G_GATHER, .nidx = 2, .axes = {0, 2}, .slice = {1, 3, 2}};
    gradcheck("gather", gc, 3, (pn_array *[]){a, gi[0], gi[1]});
    /* scatter: set (unique positions), add, max, min (duplicates) */
    int64_t sv[3] = {2, 0, 1};
    pn_array *si = idx_array(sv, (int64_t[]){3}, 1, PN_INT32);
    pn_array *su = test_random_array((int64_t[]){3, 1, 4, 5}, 4, PN_FLOAT32, -2, 2);
    for (int mode = PN_SCATTER_SET; mode <= PN_SCATTER_MIN; mode++) {
        if (mode == PN_SCATTER_PROD) continue;
        grad_ctx sc = {.op = G_SCATTER, .nidx = 1, .axes = {0}, .mode = (pn_scatter_mode)mode};
        char name[64];
        snprintf(name, sizeof name, "scatter mode %d", mode);
        gradcheck(name, sc, 3, (pn_array *[]){a, si, su});
    }
    int64_t dv[4] = {1, -2, 1, 0};
    pn_array *di = idx_array(dv, (int64_t[]){4}, 1, PN_INT64);
    pn_array *du = test_random_array((int64_t[]){4, 3, 1, 5}, 4, PN_FLOAT32, -2, 2);
    for (int mode = PN_SCATTER_ADD; mode <= PN_SCATTER_MIN; mode++) {
        if (mode == PN_SCATTER_PROD) continue;
        grad_ctx sc = {.op = G_SCATTER, .nidx = 1, .axes = {1}, .mode = (pn_scatter_mode)mode};
        char name[64];
        snprintf(name, sizeof name, "scatter duplicates mode %d", mode);
        gradcheck(name, sc, 3, (pn_array *[]){a, di, du});
    }
    pn_scope_pop();
}

static int scatter_prod_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    int ax[1] = {0};
    out[0] = pn_sum(pn_scatter(in[0], in + 1, 1, in[2], ax, PN_SCATTER_PROD), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(scatter_prod_not_differentiable)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, 1, 2);
    int64_t v[2] = {0, 2};
    pn_array *in[3] = {a, idx_array(v, (int64_t[]){2}, 1, PN_INT32),
                       test_random_array((int64_t[]){2, 1, 2}, 3, PN_FLOAT32, 1, 2)};
    pn_closure *f = pn_closure_new(scatter_prod_fn, NULL, NULL);
    pn_closure *g = pn_grad(f, NULL, 0);
    int nout = 0;
    pn_array *out[4] = {NULL};
    pn_clear_error();
    int rc = pn_closure_call(g, 3, in, &nout, out);
    CHECK(rc != 0);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure_release(g);
    pn_closure_release(f);
    pn_scope_pop();
}

/* Second order: the gradient of sum(op(x)^3) is itself checked against finite differences,
 * which differentiates the vjp rules (take <-> take-scatter, gather <-> scatter-add, ...). */
static int cube_sum_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *r = grad_fn(ctx, in); /* op(x)^2 */
    pn_array *x = pn_sqrt(pn_add(r, pn_scalar(1, PN_FLOAT64)));
    out[0] = pn_sum(pn_multiply(r, x), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *grad_of_fn(void *ctx, pn_array *const *in)
{
    const grad_ctx *c = ctx;
    int nin = c->op == G_TAKE || c->op == G_TAKE_ALONG ? 2 : c->op == G_GATHER ? 1 + c->nidx : 2 + c->nidx;
    pn_closure *f = pn_closure_new(cube_sum_fn, ctx, NULL);
    pn_closure *g = pn_grad(f, NULL, 0);
    int nout = 0;
    pn_array *out[PN_MAX_OUTPUTS] = {NULL};
    int rc = pn_closure_call(g, nin, in, &nout, out);
    pn_closure_release(g);
    pn_closure_release(f);
    return rc == 0 && nout == 1 ? out[0] : NULL;
}

TEST(second_order)
{
    pn_scope_push();
    int64_t s[2] = {4, 5};
    pn_array *a = test_random_array(s, 2, PN_FLOAT32, -2, 2);
    int64_t iv[6] = {1, -1, 1, 0, 3, 2};
    pn_array *idx = idx_array(iv, (int64_t[]){6}, 1, PN_INT32);
    grad_ctx c1 = {.op = G_TAKE, .axis = 0};
    CHECK_MSG(test_gradcheck("grad of take", grad_of_fn, &c1, 2, (pn_array *[]){a, idx}, 1e-6),
              "%s", pn_last_error_message());
    pn_array *tidx = idx_array(iv, (int64_t[]){1, 6}, 2, PN_INT64);
    grad_ctx c2 = {.op = G_TAKE_ALONG, .axis = 1};
    pn_array *a2 = test_random_array((int64_t[]){4, 6}, 2, PN_FLOAT32, -2, 2);
    CHECK_MSG(test_gradcheck("grad of take_along_axis", grad_of_fn, &c2, 2,
                             (pn_array *[]){a2, tidx}, 1e-6),
              "%s", pn_last_error_message());
    grad_ctx c3 = {.op = G_GATHER, .nidx = 1, .axes = {1}, .slice = {4, 1}};
    CHECK_MSG(test_gradcheck("grad of gather", grad_of_fn, &c3, 2, (pn_array *[]){a, idx}, 1e-6),
              "%s", pn_last_error_message());
    grad_ctx c4 = {.op = G_SCATTER, .nidx = 1, .axes = {0}, .mode = PN_SCATTER_ADD};
    pn_array *u = test_random_array((int64_t[]){6, 1, 5}, 3, PN_FLOAT32, -2, 2);
    CHECK_MSG(test_gradcheck("grad of scatter add", grad_of_fn, &c4, 3, (pn_array *[]){a, idx, u},
                             1e-6),
              "%s", pn_last_error_message());
    pn_clear_error();
    pn_scope_pop();
}
