/* test_sort.c — sort, argsort, partition, argpartition and topk against references computed
 * here (a stable float64 sort with NaNs last): every dtype, rows along each axis and the
 * flattened array, ties (argsort stability), NaNs, complex order, views as inputs, 0-d and
 * empty arrays, the parallel and large paths, errors, and derivatives via test_gradcheck. */
#include "harness.h"

#include <string.h>

#include "core/core.h"

/* ───────────────────────────── helpers ───────────────────────────── */

static const pn_dtype all_dtypes[] = {PN_BOOL,   PN_UINT8,  PN_UINT16,  PN_UINT32, PN_UINT64,
                                      PN_INT8,   PN_INT16,  PN_INT32,   PN_INT64,  PN_FLOAT16,
                                      PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16};
#define NDT ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

static int64_t prod(const int64_t *s, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

/* Ascending with NaNs last; 0 for equal (and for two NaNs). */
static int cmp_val(double a, double b)
{
    if (isnan(a)) return isnan(b) ? 0 : 1;
    if (isnan(b)) return -1;
    return a < b ? -1 : a > b;
}

typedef struct {
    double v;
    int64_t i;
} vpair;

static int cmp_pair(const void *x, const void *y)
{
    const vpair *p = x, *q = y;
    int c = cmp_val(p->v, q->v);
    return c ? c : (p->i < q->i ? -1 : p->i > q->i);
}

/* Random test data of dtype t with many ties (and NaNs for floats), as an array. */
static pn_array *tie_data(const int64_t *shape, int nd, pn_dtype t, bool nans)
{
    int64_t n = prod(shape, nd);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    bool unsig = pnC_is_unsigned(t) || t == PN_BOOL;
    for (int64_t i = 0; i < n; i++) {
        double x = floor(test_uniform(unsig ? 0 : -6, 6));
        if (pnC_is_float(t) && test_uniform(0, 1) < 0.5) x += test_uniform(0, 1);
        if (t == PN_BOOL) x = x > 2;
        if (nans && pnC_is_float(t) && test_uniform(0, 1) < 0.1) x = NAN;
        v[i] = x;
    }
    pn_array *d = pn_array_from_data(v, shape, nd, PN_FLOAT64);
    free(v);
    return pn_astype(d, t);
}

/* The rows of a logical row-major array along axis: row r, element j at
 * ((r / inner) * N + j) * inner + r % inner. */
typedef struct {
    int64_t N, inner, rows;
} rows_t;

static rows_t rows_of(const int64_t *shape, int nd, int axis)
{
    rows_t r = {shape[axis], prod(shape + axis + 1, nd - axis - 1), 0};
    r.rows = r.N ? prod(shape, nd) / r.N : 0;
    return r;
}

static int64_t at(rows_t g, int64_t r, int64_t j)
{
    return ((r / g.inner) * g.N + j) * g.inner + r % g.inner;
}

/* Flattens for PN_ALL_AXES: shape (size,), axis 0. */
static int norm_axis(pn_array *a, int axis, int64_t *shape, int *nd)
{
    *nd = pn_ndim(a);
    memcpy(shape, pn_shape(a), sizeof(int64_t) * (size_t)*nd);
    if (axis == PN_ALL_AXES) {
        shape[0] = pn_size(a);
        *nd = 1;
        return 0;
    }
    return axis < 0 ? axis + *nd : axis;
}

/* ───────────────────────────── sort / argsort ───────────────────────────── */

static void check_sort(const char *what, pn_array *a, int axis)
{
    pn_array *s = pn_sort(a, axis), *as = pn_argsort(a, axis);
    CHECK_MSG(s && as, "%s: %s", what, pn_last_error_message());
    if (!s || !as) return;
    int64_t shape[PNC_MAX_NDIM];
    int nd;
    int ax = norm_axis(a, axis, shape, &nd);
    rows_t g = rows_of(shape, nd, ax);
    int64_t n = prod(shape, nd);
    double *av = test_to_f64(a), *rv = malloc((size_t)(n ? n : 1) * sizeof *rv),
           *ri = malloc((size_t)(n ? n : 1) * sizeof *ri);
    vpair *p = malloc((size_t)(g.N ? g.N : 1) * sizeof *p);
    for (int64_t r = 0; r < g.rows; r++) {
        for (int64_t j = 0; j < g.N; j++) p[j] = (vpair){av[at(g, r, j)], j};
        qsort(p, (size_t)g.N, sizeof *p, cmp_pair);
        for (int64_t j = 0; j < g.N; j++) {
            rv[at(g, r, j)] = p[j].v;
            ri[at(g, r, j)] = (double)p[j].i;
        }
    }
    char w2[160];
    snprintf(w2, sizeof w2, "%s (sort)", what);
    CHECK_MSG(test_check_values(w2, s, shape, nd, pn_array_dtype(a), rv, 0, 0), "%s", w2);
    snprintf(w2, sizeof w2, "%s (argsort)", what);
    CHECK_MSG(test_check_values(w2, as, shape, nd, PN_UINT32, ri, 0, 0), "%s", w2);
    free(av);
    free(rv);
    free(ri);
    free(p);
}

TEST(sort_dtypes_axes)
{
    pn_scope_push();
    /* short rows (merge sort) and long ones (radix sort from 256 elements) */
    const int64_t shapes[][3] = {{17, 0, 0}, {4, 33, 0}, {3, 5, 7}, {3, 700, 0}};
    const int nds[] = {1, 2, 3, 2};
    for (int t = 0; t < NDT; t++) {
        for (int s = 0; s < 4; s++) {
            pn_array *a = tie_data(shapes[s], nds[s], all_dtypes[t], true);
            for (int axis = -nds[s]; axis <= nds[s]; axis++) {
                int ax = axis == nds[s] ? PN_ALL_AXES : axis;
                char what[96];
                snprintf(what, sizeof what, "sort %s shape#%d axis %d", pn_dtype_name(all_dtypes[t]),
                         s, ax);
                check_sort(what, a, ax);
            }
        }
    }
    pn_scope_pop();
}

TEST(sort_views_special_values)
{
    pn_scope_push();
    int64_t s[3] = {6, 5, 4};
    pn_array *base = tie_data(s, 3, PN_FLOAT32, true);
    int perm[3] = {1, 2, 0};
    pn_array *t = pn_transpose(base, perm, 3);
    for (int ax = 0; ax < 3; ax++) check_sort("sort transposed", t, ax);
    check_sort("sort transposed flattened", t, PN_ALL_AXES);
    int64_t vs[2] = {3, 5}, st[2] = {1, 8};
    check_sort("sort as_strided", pn_as_strided(base, vs, st, 2, 3), 1);
    check_sort("sort as_strided axis 0", pn_as_strided(base, vs, st, 2, 3), 0);
    /* infinities, signed zeros, NaNs */
    double sp[12] = {INFINITY, -0.0, NAN, 0.0, -INFINITY, 1.5, -NAN, -1.5, 0.0, -0.0, 1e-30, -1e-30};
    double spl[600];
    for (int i = 0; i < 600; i++) spl[i] = sp[(i * 7) % 12];
    int64_t n12[1] = {12}, n600[1] = {600};
    for (int long_row = 0; long_row < 2; long_row++) {
        pn_array *x = long_row ? pn_array_from_data(spl, n600, 1, PN_FLOAT64)
                               : pn_array_from_data(sp, n12, 1, PN_FLOAT64);
        check_sort("sort special values", x, 0);
        check_sort("sort special values f32", pn_astype(x, PN_FLOAT32), 0);
        check_sort("sort special values f16", pn_astype(x, PN_FLOAT16), 0);
        check_sort("sort special values bf16", pn_astype(x, PN_BFLOAT16), -1);
    }
    /* 0-d (flattened) and empty arrays */
    check_sort("sort 0-d flat", pn_scalar(2.5, PN_FLOAT32), PN_ALL_AXES);
    int64_t e1[1] = {0}, e2[2] = {3, 0};
    check_sort("sort empty", tie_data(e1, 1, PN_INT32, false), 0);
    check_sort("sort (3,0) axis 1", tie_data(e2, 2, PN_FLOAT32, false), 1);
    check_sort("sort (3,0) axis 0", tie_data(e2, 2, PN_FLOAT32, false), 0);
    pn_scope_pop();
}

TEST(argsort_stability)
{
    pn_scope_push();
    /* all equal: the identity permutation; two values alternating: evens then odds */
    int64_t n = 1000;
    pn_array *z = pn_zeros(&n, 1, PN_INT16);
    pn_array *iz = pn_argsort(z, 0);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)i;
    CHECK(test_check_values("argsort equal", iz, &n, 1, PN_UINT32, ref, 0, 0));
    double *alt = malloc((size_t)n * sizeof *alt);
    for (int64_t i = 0; i < n; i++) alt[i] = (double)(i % 2);
    pn_array *x = pn_array_from_data(alt, &n, 1, PN_FLOAT64);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)(i < n / 2 ? 2 * i : 2 * (i - n / 2) + 1);
    CHECK(test_check_values("argsort alternating", pn_argsort(x, 0), &n, 1, PN_UINT32, ref, 0, 0));
    free(alt);
    free(ref);
    pn_scope_pop();
}

/* Complex values sort by (real, imag), a NaN in either part last. */
TEST(sort_complex)
{
    pn_scope_push();
    int64_t n = 40, rows = 3, shape[2] = {3, 40};
    float _Complex *v = malloc((size_t)(n * rows) * sizeof *v);
    for (int64_t i = 0; i < n * rows; i++) {
        float re = floorf((float)test_uniform(-3, 3)), im = floorf((float)test_uniform(-3, 3));
        if (i % 13 == 5) im = NAN;
        if (i % 17 == 3) re = NAN;
        v[i] = re + im * (float _Complex)I;
    }
    pn_array *a = pn_array_from_data(v, shape, 2, PN_COMPLEX64);
    pn_array *s = pn_sort(a, 1), *as = pn_argsort(a, 1);
    float _Complex *sv = malloc((size_t)(n * rows) * sizeof *sv);
    uint32_t *iv = malloc((size_t)(n * rows) * sizeof *iv);
    CHECK(pn_to_host(s, sv, (size_t)(n * rows) * sizeof *sv) == 0);
    CHECK(pn_to_host(as, iv, (size_t)(n * rows) * sizeof *iv) == 0);
    for (int64_t r = 0; r < rows; r++) {
        /* reference: stable insertion sort with the same order */
        int64_t idx[40];
        for (int64_t j = 0; j < n; j++) idx[j] = j;
        for (int64_t j = 1; j < n; j++) {
            int64_t x = idx[j], k = j;
            for (; k > 0; k--) {
                float _Complex p = v[r * n + x], q = v[r * n + idx[k - 1]];
                bool pn = isnan(crealf(p)) || isnan(cimagf(p)), qn = isnan(crealf(q)) || isnan(cimagf(q));
                bool less = !pn && (qn || crealf(p) < crealf(q) ||
                                    (crealf(p) == crealf(q) && cimagf(p) < cimagf(q)));
                if (!less) break;
                idx[k] = idx[k - 1];
            }
            idx[k] = x;
        }
        for (int64_t j = 0; j < n; j++) {
            CHECK_MSG(iv[r * n + j] == (uint32_t)idx[j], "complex argsort row %lld pos %lld",
                      (long long)r, (long long)j);
            CHECK_MSG(memcmp(&sv[r * n + j], &v[r * n + idx[j]], sizeof(float _Complex)) == 0,
                      "complex sort row %lld pos %lld", (long long)r, (long long)j);
        }
    }
    free(v);
    free(sv);
    free(iv);
    pn_scope_pop();
}

TEST(sort_large_parallel)
{
    pn_scope_push();
    int64_t big = test_quick() ? 20000 : 1000000;
    pn_array *a = test_random_array(&big, 1, PN_FLOAT32, -1000, 1000);
    check_sort("sort one long row", a, 0);
    int64_t m[2] = {test_quick() ? 50 : 800, test_quick() ? 100 : 1000};
    pn_array *b = tie_data(m, 2, PN_INT32, false);
    check_sort("sort many rows", b, 1);
    check_sort("sort many rows axis 0", b, 0);
    pn_scope_pop();
}

/* ───────────────────────────── partition / topk ───────────────────────────── */

static int cmp_dbl(const void *x, const void *y) { return cmp_val(*(const double *)x, *(const double *)y); }

static bool same_val(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

/* Checks partition and argpartition at kth: the kth element in its sorted place, smaller or
 * equal ones before, larger or equal after, a permutation of the row, and argpartition
 * pointing at exactly the values partition placed. */
static void check_partition(const char *what, pn_array *a, int kth, int axis)
{
    pn_array *p = pn_partition(a, kth, axis), *ip = pn_argpartition(a, kth, axis);
    CHECK_MSG(p && ip, "%s: %s", what, pn_last_error_message());
    if (!p || !ip) return;
    int64_t shape[PNC_MAX_NDIM];
    int nd;
    int ax = norm_axis(a, axis, shape, &nd);
    rows_t g = rows_of(shape, nd, ax);
    int64_t k = kth < 0 ? kth + g.N : kth, n = prod(shape, nd);
    bool shp_ok = pn_ndim(p) == nd && pn_ndim(ip) == nd && pn_array_dtype(ip) == PN_UINT32 &&
                  pn_array_dtype(p) == pn_array_dtype(a);
    for (int d = 0; shp_ok && d < nd; d++)
        shp_ok = pn_shape(p)[d] == shape[d] && pn_shape(ip)[d] == shape[d];
    CHECK_MSG(shp_ok, "%s: wrong shape or dtype", what);
    if (!shp_ok) return;
    double *av = test_to_f64(a), *pv = test_to_f64(p), *iv = test_to_f64(ip);
    double *row = malloc((size_t)(g.N ? g.N : 1) * sizeof *row),
           *prow = malloc((size_t)(g.N ? g.N : 1) * sizeof *prow);
    bool *seen = malloc((size_t)(g.N ? g.N : 1));
    int bad = 0;
    for (int64_t r = 0; r < g.rows && av && pv && iv && !bad; r++) {
        memset(seen, 0, (size_t)g.N);
        for (int64_t j = 0; j < g.N; j++) {
            row[j] = av[at(g, r, j)];
            prow[j] = pv[at(g, r, j)];
        }
        for (int64_t j = 0; j < g.N; j++) {
            int64_t src = (int64_t)iv[at(g, r, j)];
            if (src < 0 || src >= g.N || seen[src]) bad = 1;
            else if (!same_val(row[src], prow[j])) bad = 2;
            else seen[src] = true;
        }
        for (int64_t j = 0; j < g.N && !bad; j++)
            if ((j < k && cmp_val(prow[j], prow[k]) > 0) || (j > k && cmp_val(prow[j], prow[k]) < 0))
                bad = 3;
        qsort(row, (size_t)g.N, sizeof *row, cmp_dbl);
        qsort(prow, (size_t)g.N, sizeof *prow, cmp_dbl);
        for (int64_t j = 0; j < g.N && !bad; j++)
            if (!same_val(row[j], prow[j])) bad = 4;
        CHECK_MSG(!bad, "%s: row %lld fails check %d", what, (long long)r, bad);
    }
    (void)n;
    free(av);
    free(pv);
    free(iv);
    free(row);
    free(prow);
    free(seen);
}

/* topk: shape with k along axis; the row's k largest (as a multiset). */
static void check_topk(const char *what, pn_array *a, int k, int axis)
{
    pn_array *t = pn_topk(a, k, axis);
    CHECK_MSG(t != NULL, "%s: %s", what, pn_last_error_message());
    if (!t) return;
    int64_t shape[PNC_MAX_NDIM], oshape[PNC_MAX_NDIM];
    int nd;
    int ax = norm_axis(a, axis, shape, &nd);
    memcpy(oshape, shape, sizeof oshape);
    oshape[ax] = k;
    rows_t g = rows_of(shape, nd, ax), go = rows_of(oshape, nd, ax);
    go.rows = g.rows;
    double *av = test_to_f64(a), *tv = test_to_f64(t);
    int64_t on = prod(oshape, nd);
    double *ref = malloc((size_t)(on ? on : 1) * sizeof *ref);
    double *row = malloc((size_t)(g.N ? g.N : 1) * sizeof *row),
           *trow = malloc((size_t)(k ? k : 1) * sizeof *trow);
    bool ok = av && tv && pn_ndim(t) == nd;
    for (int d = 0; ok && d < nd; d++) ok = pn_shape(t)[d] == oshape[d];
    for (int64_t r = 0; ok && r < g.rows; r++) {
        for (int64_t j = 0; j < g.N; j++) row[j] = av[at(g, r, j)];
        for (int64_t j = 0; j < k; j++) trow[j] = tv[at(go, r, j)];
        qsort(row, (size_t)g.N, sizeof *row, cmp_dbl);
        qsort(trow, (size_t)k, sizeof *trow, cmp_dbl);
        for (int64_t j = 0; j < k; j++) ok = ok && same_val(trow[j], row[g.N - k + j]);
    }
    CHECK_MSG(ok, "%s: wrong shape or values", what);
    free(av);
    free(tv);
    free(ref);
    free(row);
    free(trow);
}

TEST(partition_topk_cases)
{
    pn_scope_push();
    const int64_t shapes[][3] = {{17, 0, 0}, {4, 33, 0}, {3, 5, 7}};
    const int nds[] = {1, 2, 3};
    for (int t = 0; t < NDT; t++) {
        for (int s = 0; s < 3; s++) {
            pn_array *a = tie_data(shapes[s], nds[s], all_dtypes[t], true);
            for (int axis = -nds[s]; axis <= nds[s]; axis++) {
                int ax = axis == nds[s] ? PN_ALL_AXES : axis;
                int64_t N = ax == PN_ALL_AXES ? pn_size(a) : shapes[s][axis < 0 ? axis + nds[s] : axis];
                int kths[4] = {0, (int)(N / 2), (int)N - 1, -(int)(N / 3) - 1};
                for (int q = 0; q < 4; q++) {
                    char what[128];
                    snprintf(what, sizeof what, "partition %s shape#%d axis %d kth %d",
                             pn_dtype_name(all_dtypes[t]), s, ax, kths[q]);
                    check_partition(what, a, kths[q], ax);
                    int k = q == 3 ? (int)N : kths[q];
                    snprintf(what, sizeof what, "topk %s shape#%d axis %d k %d",
                             pn_dtype_name(all_dtypes[t]), s, ax, k);
                    check_topk(what, a, k, ax);
                }
            }
        }
    }
    /* views; a long row (the introselect on many ties and on sorted input); many rows */
    int64_t s3[3] = {6, 5, 40};
    pn_array *tv = pn_transpose(tie_data(s3, 3, PN_FLOAT64, true), NULL, 0); /* (40,5,6) */
    check_partition("partition transposed", tv, 7, 0);
    check_topk("topk transposed", tv, 9, 0);
    int64_t big = test_quick() ? 5000 : 300000;
    pn_array *l = tie_data(&big, 1, PN_INT32, false);
    check_partition("partition long row with ties", l, (int)(big / 3), 0);
    check_topk("topk long row", l, 100, 0);
    pn_array *sorted = pn_arange(0, (double)big, 1, PN_FLOAT32);
    check_partition("partition sorted input", sorted, (int)(big / 2), 0);
    check_partition("partition reversed input", pn_negative(sorted), 5, 0);
    check_topk("topk sorted input", sorted, 10, 0);
    int64_t m[2] = {test_quick() ? 40 : 1000, 300};
    pn_array *mr = test_random_array(m, 2, PN_FLOAT32, -1, 1);
    check_partition("partition many rows", mr, 150, 1);
    check_topk("topk many rows", mr, 5, -1);
    /* 0-d and empty */
    check_partition("partition 0-d flat", pn_scalar(1, PN_INT32), 0, PN_ALL_AXES);
    int64_t e[2] = {0, 5};
    check_partition("partition empty rows", tie_data(e, 2, PN_FLOAT32, false), 2, 1);
    check_topk("topk k=0", test_random_array(m, 2, PN_FLOAT32, -1, 1), 0, 1);
    check_topk("topk of empty axis", tie_data(e, 2, PN_FLOAT32, false), 0, 0);
    pn_scope_pop();
}

/* ───────────────────────────── errors ───────────────────────────── */

TEST(errors)
{
    pn_scope_push();
    int64_t s[2] = {3, 4};
    pn_array *a = test_random_array(s, 2, PN_FLOAT32, 0, 1);
    CHECK_ERR(pn_sort(a, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argsort(a, -3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_sort(pn_scalar(1, PN_FLOAT32), 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_partition(a, 4, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_partition(a, -5, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argpartition(a, 3, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_argpartition(a, 0, 2), PN_ERR_INVALID_ARGUMENT);
    int64_t e[2] = {0, 4};
    CHECK_ERR(pn_partition(pn_zeros(e, 2, PN_FLOAT32), 0, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_topk(a, 5, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_topk(a, -1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_topk(a, 1, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_topk(a, 13, PN_ALL_AXES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_sort(NULL, 0), PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_array *bad = pn_sort(a, 7);
    CHECK(pn_topk(bad, 1, 0) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── derivatives ───────────────────────────── */

typedef struct {
    int op, axis, k;
} grad_ctx;

enum { G_SORT, G_PARTITION, G_TOPK };

static pn_array *grad_fn(void *ctx, pn_array *const *in)
{
    const grad_ctx *c = ctx;
    pn_array *r = c->op == G_SORT        ? pn_sort(in[0], c->axis)
                  : c->op == G_PARTITION ? pn_partition(in[0], c->k, c->axis)
                                         : pn_topk(in[0], c->k, c->axis);
    /* weight positions differently so a wrong permutation shows */
    pn_array *w = pn_arange(1, (double)pn_size(r) + 1, 1, PN_FLOAT64);
    return pn_multiply(pn_multiply(r, r), pn_reshape(w, pn_shape(r), pn_ndim(r)));
}

TEST(gradients)
{
    pn_scope_push();
    int64_t s[2] = {3, 6};
    pn_array *a = test_random_array(s, 2, PN_FLOAT32, -3, 3);
    const grad_ctx cases[] = {
        {G_SORT, 1, 0},      {G_SORT, 0, 0},      {G_SORT, PN_ALL_AXES, 0},
        {G_PARTITION, 1, 2}, {G_PARTITION, 0, -1}, {G_PARTITION, PN_ALL_AXES, 7},
        {G_TOPK, 1, 2},      {G_TOPK, 0, 3},       {G_TOPK, PN_ALL_AXES, 5},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof name, "sort-family op %d axis %d k %d", cases[i].op, cases[i].axis,
                 cases[i].k);
        grad_ctx c = cases[i];
        CHECK_MSG(test_gradcheck(name, grad_fn, &c, 1, &a, 1e-6), "%s: %s", name,
                  pn_last_error_message());
        pn_clear_error();
    }
    pn_scope_pop();
}

/* Second order: the gradient of sum(w * op(x)^2 * sqrt(op(x)^2 + 1)) checked by finite
 * differences, which differentiates the vjp (scatter-add along axis) in turn. */
static int smooth_sum_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *r = grad_fn(ctx, in);
    out[0] = pn_sum(pn_multiply(r, pn_sqrt(pn_add(r, pn_scalar(1, PN_FLOAT64)))), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *grad_of_fn(void *ctx, pn_array *const *in)
{
    pn_closure *f = pn_closure_new(smooth_sum_fn, ctx, NULL);
    pn_closure *g = pn_grad(f, NULL, 0);
    int nout = 0;
    pn_array *out[PN_MAX_OUTPUTS] = {NULL};
    int rc = pn_closure_call(g, 1, in, &nout, out);
    pn_closure_release(g);
    pn_closure_release(f);
    return rc == 0 && nout == 1 ? out[0] : NULL;
}

TEST(second_order)
{
    pn_scope_push();
    int64_t s[2] = {3, 5};
    pn_array *a = test_random_array(s, 2, PN_FLOAT32, -3, 3);
    const grad_ctx cases[] = {{G_SORT, 1, 0}, {G_PARTITION, 0, 1}, {G_TOPK, -1, 2}};
    for (int i = 0; i < 3; i++) {
        grad_ctx c = cases[i];
        CHECK_MSG(test_gradcheck("second order sort family", grad_of_fn, &c, 1, &a, 1e-6),
                  "case %d: %s", i, pn_last_error_message());
        pn_clear_error();
    }
    pn_scope_pop();
}
