/* test_compose.c — the compositions of src/ops/compose.c (kron, diff, median, count_nonzero,
 * searchsorted, vecdot, hadamard_transform, dynamic slice / slice_update, view, and linalg's
 * cholesky, triangular solves, inverses, solve, qr, cross) against float64 references
 * computed here by plain loops: random data, several shapes, batches, errors, gradients. */
#include "harness.h"

#include <string.h>

static pn_array *r64(const int64_t *shape, int nd) { return test_random_array(shape, nd, PN_FLOAT64, -1, 1); }

static int64_t numel(const int64_t *s, int nd)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

/* Row-major strides of shape into st. */
static void strides_of(const int64_t *s, int nd, int64_t *st)
{
    int64_t k = 1;
    for (int i = nd - 1; i >= 0; i--) st[i] = k, k *= s[i];
}

/* ───────────────────────────── kron, diff ───────────────────────────── */

TEST(kron_values)
{
    pn_scope_push();
    const struct { int na, nb; int64_t a[3], b[3]; } cases[] = {
        {2, 2, {2, 3}, {4, 1}}, {1, 2, {3}, {2, 2}}, {3, 2, {2, 1, 3}, {2, 2}}, {1, 1, {4}, {3}},
        {0, 2, {0}, {2, 3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pn_scope_push();
        int na = cases[c].na, nb = cases[c].nb, nd = na > nb ? na : nb;
        pn_array *a = r64(cases[c].a, na), *b = test_random_array(cases[c].b, nb, PN_INT32, -5, 5);
        double *av = test_to_f64(a), *bv = test_to_f64(b);
        int64_t sa[3], sb[3], so[3], sta[3], stb[3], sto[3];
        for (int k = 0; k < nd; k++) {
            sa[k] = k < nd - na ? 1 : cases[c].a[k - (nd - na)];
            sb[k] = k < nd - nb ? 1 : cases[c].b[k - (nd - nb)];
            so[k] = sa[k] * sb[k];
        }
        strides_of(sa, nd, sta), strides_of(sb, nd, stb), strides_of(so, nd, sto);
        int64_t n = numel(so, nd);
        double *ref = malloc(sizeof(double) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) {
            int64_t ia = 0, ib = 0, rem = i;
            for (int k = 0; k < nd; k++) {
                int64_t idx = rem / sto[k];
                rem %= sto[k];
                ia += idx / sb[k] * sta[k];
                ib += idx % sb[k] * stb[k];
            }
            ref[i] = av[ia] * bv[ib];
        }
        test_check_values("kron", pn_kron(a, b), so, nd, PN_FLOAT64, ref, 1e-12, 1e-12);
        free(av), free(bv), free(ref);
        pn_scope_pop();
    }
    /* integers stay integers */
    pn_array *i1 = test_random_array((int64_t[]){2, 2}, 2, PN_INT32, -3, 3);
    pn_array *k = pn_kron(i1, i1);
    CHECK_OK(k);
    CHECK(k && pn_array_dtype(k) == PN_INT32 && pn_dim(k, 0) == 4);
    pn_scope_pop();
}

TEST(diff_values_and_errors)
{
    pn_scope_push();
    const int64_t sh[3] = {3, 5, 4};
    pn_array *a = r64(sh, 3);
    double *av = test_to_f64(a);
    for (int axis = -3; axis < 3; axis++)
        for (int n = 0; n <= 3; n++) {
            pn_scope_push();
            int ax = axis < 0 ? axis + 3 : axis;
            /* reference: repeated differences on a copy */
            int64_t cur[3] = {sh[0], sh[1], sh[2]}, st[3];
            double *x = malloc(sizeof(double) * 60);
            memcpy(x, av, sizeof(double) * 60);
            for (int r = 0; r < n && cur[ax] > 0; r++) {
                int64_t nx[3] = {cur[0], cur[1], cur[2]};
                nx[ax] -= 1;
                int64_t nst[3], m = numel(nx, 3);
                strides_of(cur, 3, st), strides_of(nx, 3, nst);
                double *y = malloc(sizeof(double) * (size_t)(m + 1));
                for (int64_t i = 0; i < m; i++) {
                    int64_t idx[3] = {i / nst[0], i % nst[0] / nst[1], i % nst[1]};
                    int64_t off = idx[0] * st[0] + idx[1] * st[1] + idx[2] * st[2];
                    y[i] = x[off + st[ax]] - x[off];
                }
                free(x);
                x = y;
                memcpy(cur, nx, sizeof cur);
            }
            CHECK_MSG(test_check_values("diff", pn_diff(a, n, axis), cur, 3, PN_FLOAT64, x, 1e-12, 1e-12),
                      "diff n=%d axis=%d", n, axis);
            free(x);
            pn_scope_pop();
        }
    /* bool: not_equal; n beyond the length leaves an empty axis */
    pn_array *b = pn_array_from_data((bool[]){1, 1, 0, 1}, (int64_t[]){4}, 1, PN_BOOL);
    double want[3] = {0, 1, 1};
    test_check_values("diff bool", pn_diff(b, 1, 0), (int64_t[]){3}, 1, PN_BOOL, want, 0, 0);
    pn_array *e = pn_diff(b, 6, 0);
    CHECK(e && pn_dim(e, 0) == 0);
    CHECK_ERR(pn_diff(a, -1, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diff(a, 1, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diff(pn_scalar(1, PN_FLOAT32), 1, 0), PN_ERR_INVALID_ARGUMENT);
    free(av);
    pn_scope_pop();
}

/* ───────────────────────────── median, count_nonzero ───────────────────────────── */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

TEST(median_values)
{
    pn_scope_push();
    const int64_t sh[3] = {4, 3, 5};
    pn_array *a = r64(sh, 3);
    double *av = test_to_f64(a);
    /* reduced-axis sets as bit masks; 7 = all */
    for (int mask = 1; mask < 8; mask++)
        for (int keep = 0; keep < 2; keep++) {
            pn_scope_push();
            int axes[3], nax = 0;
            for (int k = 0; k < 3; k++)
                if (mask >> k & 1) axes[nax++] = k;
            int64_t oshape[3], kshape[3];
            int no = 0;
            for (int k = 0; k < 3; k++) {
                if (!(mask >> k & 1)) kshape[no++] = sh[k];
                oshape[k] = mask >> k & 1 ? 1 : sh[k];
            }
            int64_t nout = numel(oshape, 3), st[3], ost[3];
            strides_of(sh, 3, st), strides_of(oshape, 3, ost);
            double *ref = malloc(sizeof(double) * (size_t)nout), *buf = malloc(sizeof(double) * 60);
            for (int64_t o = 0; o < nout; o++) {
                int64_t oi[3] = {o / ost[0], o % ost[0] / ost[1], o % ost[1]}, cnt = 0;
                for (int64_t i = 0; i < 60; i++) {
                    int64_t ii[3] = {i / st[0], i % st[0] / st[1], i % st[1]};
                    bool in = true;
                    for (int k = 0; k < 3; k++) in &= (mask >> k & 1) || ii[k] == oi[k];
                    if (in) buf[cnt++] = av[i];
                }
                qsort(buf, (size_t)cnt, sizeof(double), cmp_double);
                ref[o] = cnt % 2 ? buf[cnt / 2] : 0.5 * (buf[cnt / 2 - 1] + buf[cnt / 2]);
            }
            pn_array *m = pn_median(a, mask == 7 && keep ? NULL : axes, mask == 7 && keep ? 0 : nax, keep);
            CHECK_MSG(test_check_values("median", m, keep ? oshape : kshape, keep ? 3 : no, PN_FLOAT64,
                                        ref, 1e-12, 1e-12), "median mask %d keep %d", mask, keep);
            free(ref), free(buf);
            pn_scope_pop();
        }
    /* integers give float32; an even count averages the middle pair */
    pn_array *ints = pn_array_from_data((int32_t[]){7, 1, 4, 2}, (int64_t[]){4}, 1, PN_INT32);
    double want = 3.0;
    test_check_values("median int", pn_median(ints, NULL, 0, false), NULL, 0, PN_FLOAT32, &want, 0, 0);
    CHECK_ERR(pn_median(a, (int[]){3}, 1, false), PN_ERR_INVALID_ARGUMENT);
    free(av);
    pn_scope_pop();
}

TEST(count_nonzero_values)
{
    pn_scope_push();
    const int64_t sh[2] = {5, 6};
    pn_array *a = test_random_array(sh, 2, PN_INT32, -2, 3); /* about 1 in 5 are zero */
    double *av = test_to_f64(a), rows[5] = {0}, all = 0;
    for (int i = 0; i < 30; i++) rows[i / 6] += av[i] != 0, all += av[i] != 0;
    test_check_values("count_nonzero all", pn_count_nonzero(a, NULL, 0, false), NULL, 0, PN_INT32, &all, 0, 0);
    test_check_values("count_nonzero axis", pn_count_nonzero(a, (int[]){-1}, 1, false), (int64_t[]){5}, 1,
                      PN_INT32, rows, 0, 0);
    test_check_values("count_nonzero keepdims", pn_count_nonzero(a, (int[]){1}, 1, true),
                      (int64_t[]){5, 1}, 2, PN_INT32, rows, 0, 0);
    pn_array *f = pn_astype(a, PN_FLOAT32);
    test_check_values("count_nonzero float", pn_count_nonzero(f, NULL, 0, false), NULL, 0, PN_INT32, &all, 0, 0);
    free(av);
    pn_scope_pop();
}

/* ───────────────────────────── searchsorted, vecdot ───────────────────────────── */

TEST(searchsorted_values)
{
    pn_scope_push();
    for (int64_t n = 0; n < 40; n += (n < 5 ? 1 : 7)) {
        pn_scope_push();
        /* a sorted sequence with repeats: small integers as floats */
        double *seq = malloc(sizeof(double) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) seq[i] = (double)(int)test_uniform(-6, 6);
        qsort(seq, (size_t)n, sizeof(double), cmp_double);
        float *sf = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) sf[i] = (float)seq[i];
        pn_array *s = pn_array_from_data(sf, &n, 1, PN_FLOAT32);
        const int64_t vs[2] = {3, 7};
        pn_array *v = pn_round(test_random_array(vs, 2, PN_FLOAT32, -8, 8), 0); /* hits and misses */
        double *vv = test_to_f64(v), left[21], right[21];
        for (int j = 0; j < 21; j++) {
            left[j] = right[j] = 0;
            for (int64_t i = 0; i < n; i++) left[j] += seq[i] < vv[j], right[j] += seq[i] <= vv[j];
        }
        CHECK_MSG(test_check_values("searchsorted left", pn_searchsorted(s, v, false), vs, 2, PN_UINT32,
                                    left, 0, 0), "n = %lld", (long long)n);
        CHECK_MSG(test_check_values("searchsorted right", pn_searchsorted(s, v, true), vs, 2, PN_UINT32,
                                    right, 0, 0), "n = %lld", (long long)n);
        /* a 0-d value, and integer values against float sequence */
        pn_array *v0 = pn_scalar(1.0, PN_FLOAT32), *vi = pn_astype(v, PN_INT32);
        double l0 = 0;
        for (int64_t i = 0; i < n; i++) l0 += seq[i] < 1.0;
        test_check_values("searchsorted 0-d", pn_searchsorted(s, v0, false), NULL, 0, PN_UINT32, &l0, 0, 0);
        test_check_values("searchsorted int", pn_searchsorted(s, vi, false), vs, 2, PN_UINT32, left, 0, 0);
        free(seq), free(sf), free(vv);
        pn_scope_pop();
    }
    CHECK_ERR(pn_searchsorted(r64((int64_t[]){2, 2}, 2), r64((int64_t[]){2}, 1), false), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

static pn_array *g_vecdot(void *ctx, pn_array *const *in) { return pn_vecdot(in[0], in[1], *(int *)ctx); }

TEST(vecdot_values_and_grad)
{
    pn_scope_push();
    pn_array *a = r64((int64_t[]){2, 3, 4}, 3), *b = r64((int64_t[]){3, 4}, 2);
    double *av = test_to_f64(a), *bv = test_to_f64(b), r1[6], r0[12];
    for (int i = 0; i < 6; i++) {
        r1[i] = 0;
        for (int k = 0; k < 4; k++) r1[i] += av[i * 4 + k] * bv[(i % 3) * 4 + k];
    }
    for (int j = 0; j < 12; j++) r0[j] = av[j] * bv[j] + av[12 + j] * bv[j];
    test_check_values("vecdot -1", pn_vecdot(a, b, -1), (int64_t[]){2, 3}, 2, PN_FLOAT64, r1, 1e-12, 1e-12);
    test_check_values("vecdot 0", pn_vecdot(a, b, 0), (int64_t[]){3, 4}, 2, PN_FLOAT64, r0, 1e-12, 1e-12);
    int ax = -1;
    pn_array *in[2] = {a, b};
    CHECK(test_gradcheck("vecdot", g_vecdot, &ax, 2, in, 1e-6));
    CHECK_ERR(pn_vecdot(a, r64((int64_t[]){5}, 1), -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_vecdot(a, b, 3), PN_ERR_INVALID_ARGUMENT);
    free(av), free(bv);
    pn_scope_pop();
}

/* ───────────────────────────── hadamard ───────────────────────────── */

static int parity(int64_t x)
{
    int p = 0;
    for (; x; x &= x - 1) p ^= 1;
    return p;
}

static pn_array *g_hadamard(void *ctx, pn_array *const *in) { return pn_hadamard_transform(in[0], NULL); }

TEST(hadamard_transform_values)
{
    pn_scope_push();
    for (int64_t n = 1; n <= 64; n *= 2) {
        pn_scope_push();
        int64_t sh[2] = {3, n};
        pn_array *x = r64(sh, 2);
        double *xv = test_to_f64(x), *ref = malloc(sizeof(double) * (size_t)(3 * n));
        for (int b = 0; b < 3; b++)
            for (int64_t i = 0; i < n; i++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) s += (parity(i & j) ? -1 : 1) * xv[b * n + j];
                ref[b * n + i] = s / sqrt((double)n);
            }
        CHECK_MSG(test_check_values("hadamard", pn_hadamard_transform(x, NULL), sh, 2, PN_FLOAT64, ref,
                                    1e-12, 1e-12), "n = %lld", (long long)n);
        double scale = 0.5;
        for (int64_t i = 0; i < 3 * n; i++) ref[i] *= sqrt((double)n) * scale;
        test_check_values("hadamard scale", pn_hadamard_transform(x, &scale), sh, 2, PN_FLOAT64, ref,
                          1e-12, 1e-12);
        /* float32 and integer inputs */
        pn_array *f = pn_hadamard_transform(pn_astype(x, PN_FLOAT32), &scale);
        test_check_values("hadamard f32", f, sh, 2, PN_FLOAT32, ref, 1e-5, 1e-5);
        free(xv), free(ref);
        pn_scope_pop();
    }
    pn_array *i = pn_hadamard_transform(pn_ones((int64_t[]){4}, 1, PN_INT32), NULL);
    double want[4] = {2, 0, 0, 0};
    test_check_values("hadamard int", i, (int64_t[]){4}, 1, PN_FLOAT32, want, 1e-6, 1e-6);
    pn_array *g = r64((int64_t[]){2, 8}, 2);
    CHECK(test_gradcheck("hadamard", g_hadamard, NULL, 1, &g, 1e-6));
    pn_array *g20 = r64((int64_t[]){2, 40}, 2); /* 20 * 2: the order-20 matrix, then Sylvester's */
    CHECK(test_gradcheck("hadamard 20x2", g_hadamard, NULL, 1, &g20, 1e-6));
    CHECK_ERR(pn_hadamard_transform(r64((int64_t[]){6}, 1), NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_hadamard_transform(r64((int64_t[]){36}, 1), NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── dynamic slices ───────────────────────────── */

static pn_array *g_slice(void *ctx, pn_array *const *in)
{
    pn_array *start = pn_array_from_data((int32_t[]){1, 2}, (int64_t[]){2}, 1, PN_INT32);
    return pn_slice_dynamic(in[0], start, (int[]){0, 2}, 2, (int64_t[]){2, 3, 2}, 3);
}

static pn_array *g_slice_update(void *ctx, pn_array *const *in)
{
    pn_array *start = pn_array_from_data((int32_t[]){2, 1}, (int64_t[]){2}, 1, PN_INT32);
    return pn_slice_update_dynamic(in[0], in[1], start, (int[]){-1, 0}, 2);
}

TEST(dynamic_slice_and_update)
{
    pn_scope_push();
    const int64_t sh[3] = {4, 3, 5};
    int64_t st[3];
    strides_of(sh, 3, st);
    pn_array *a = r64(sh, 3);
    double *av = test_to_f64(a);
    /* slice: start (1, 2) on axes (0, 2), size (2, 3, 2) */
    pn_array *start = pn_array_from_data((int32_t[]){1, 2}, (int64_t[]){2}, 1, PN_INT32);
    double ref[12];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 2; k++) ref[(i * 3 + j) * 2 + k] = av[(1 + i) * st[0] + j * st[1] + 2 + k];
    test_check_values("slice", pn_slice_dynamic(a, start, (int[]){0, 2}, 2, (int64_t[]){2, 3, 2}, 3),
                      (int64_t[]){2, 3, 2}, 3, PN_FLOAT64, ref, 0, 0);
    /* a 0-d start for one axis */
    pn_array *s0 = pn_scalar_int(2, PN_INT64);
    double ref1[15];
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 5; k++) ref1[j * 5 + k] = av[2 * st[0] + j * st[1] + k];
    test_check_values("slice 0-d start", pn_slice_dynamic(a, s0, (int[]){0}, 1, (int64_t[]){1, 3, 5}, 3),
                      (int64_t[]){1, 3, 5}, 3, PN_FLOAT64, ref1, 0, 0);
    /* update: (2, 3) block at (row 1, last-axis 2) of a (4, 3, 5), broadcast over axis 1 */
    pn_array *u = r64((int64_t[]){2, 1, 3}, 3);
    double *uv = test_to_f64(u), *ru = malloc(sizeof(double) * 60);
    memcpy(ru, av, sizeof(double) * 60);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) ru[(1 + i) * st[0] + 0 * st[1] + 2 + k] = uv[i * 3 + k];
    pn_array *up = pn_slice_update_dynamic(a, u, pn_array_from_data((int32_t[]){2, 1}, (int64_t[]){2}, 1, PN_INT32),
                                           (int[]){-1, 0}, 2);
    test_check_values("slice_update", up, sh, 3, PN_FLOAT64, ru, 0, 0);
    /* fewer update dims than the input: leading 1s; dtype cast to a's */
    pn_array *u2 = pn_ones((int64_t[]){5}, 1, PN_INT32);
    memcpy(ru, av, sizeof(double) * 60);
    for (int k = 0; k < 5; k++) ru[3 * st[0] + 2 * st[1] + k] = 1;
    test_check_values("slice_update broadcast", pn_slice_update_dynamic(a, u2,
                      pn_array_from_data((int32_t[]){3, 2}, (int64_t[]){2}, 1, PN_INT32), (int[]){0, 1}, 2),
                      sh, 3, PN_FLOAT64, ru, 0, 0);
    pn_array *gs = r64(sh, 3);
    CHECK(test_gradcheck("slice", g_slice, NULL, 1, &gs, 1e-6));
    pn_array *gu[2] = {r64(sh, 3), r64((int64_t[]){2, 3, 3}, 3)};
    CHECK(test_gradcheck("slice_update", g_slice_update, NULL, 2, gu, 1e-6));
    CHECK_ERR(pn_slice_dynamic(a, pn_scalar(1, PN_FLOAT32), (int[]){0}, 1, (int64_t[]){1, 3, 5}, 3),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_slice_dynamic(a, start, (int[]){0}, 1, (int64_t[]){1, 3, 5}, 3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_slice_dynamic(a, start, (int[]){0, 2}, 2, (int64_t[]){1, 3}, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_slice_update_dynamic(a, r64((int64_t[]){5, 1, 1}, 3), start, (int[]){0, 2}, 2),
              PN_ERR_INVALID_ARGUMENT);
    free(av), free(uv), free(ru);
    pn_scope_pop();
}

/* ───────────────────────────── view ───────────────────────────── */

static int view_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_view(in[0], PN_INT64);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(view_reinterprets_bytes)
{
    pn_scope_push();
    float f[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.5f, 1e-3f};
    pn_array *a = pn_array_from_data(f, (int64_t[]){2, 3}, 2, PN_FLOAT32);
    /* same size: the bit patterns */
    double bits[6];
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        bits[i] = u;
    }
    test_check_values("view u32", pn_view(a, PN_UINT32), (int64_t[]){2, 3}, 2, PN_UINT32, bits, 0, 0);
    /* smaller type: the last axis grows */
    pn_array *b = pn_view(a, PN_UINT8);
    CHECK(b && pn_ndim(b) == 2 && pn_dim(b, 1) == 12);
    double bytes[24];
    const uint8_t *p = (const uint8_t *)f;
    for (int i = 0; i < 24; i++) bytes[i] = p[i];
    test_check_values("view u8", b, (int64_t[]){2, 12}, 2, PN_UINT8, bytes, 0, 0);
    /* and back */
    test_check_values("view back", pn_view(b, PN_FLOAT32), (int64_t[]){2, 3}, 2, PN_FLOAT32,
                      (double[]){1.5, -2.0, 0.0, 3.25, -0.5, 1e-3f}, 0, 0);
    /* larger type: a non-contiguous input is read in row-major order */
    pn_array *i16 = pn_transpose(pn_array_from_data((int16_t[]){1, 2, 3, 4}, (int64_t[]){2, 2}, 2, PN_INT16), NULL, 0);
    double w32[2] = {1 + 3 * 65536.0, 2 + 4 * 65536.0};
    test_check_values("view i32", pn_view(i16, PN_INT32), (int64_t[]){2, 1}, 2, PN_INT32, w32, 0, 0);
    pn_array *e = pn_view(pn_zeros((int64_t[]){0, 4}, 2, PN_FLOAT32), PN_FLOAT64);
    CHECK(e && pn_dim(e, 1) == 2 && pn_size(e) == 0);
    CHECK_ERR(pn_view(pn_scalar(1, PN_FLOAT32), PN_FLOAT64), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_view(a, PN_FLOAT64), PN_ERR_INVALID_ARGUMENT);
    /* inside a transformation: an error, not a result cut off from the graph */
    pn_array *g = r64((int64_t[]){2}, 1), *cot = pn_ones((int64_t[]){2}, 1, PN_INT64), *outs[1], *vj[1];
    int nout = 0;
    pn_closure *cl = pn_closure_new(view_fn, NULL, NULL);
    pn_clear_error();
    CHECK(pn_vjp(cl, 1, &g, 1, &cot, &nout, outs, vj) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_closure_release(cl);
    CHECK_OK(pn_view(g, PN_INT64));
    pn_scope_pop();
}

/* ───────────────────────────── linalg ───────────────────────────── */

/* c = a @ b for row-major (m×k) (k×n) matrices. */
static void mm(const double *a, const double *b, double *c, int64_t m, int64_t k, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t t = 0; t < k; t++) s += a[i * k + t] * b[t * n + j];
            c[i * n + j] = s;
        }
}

/* A batch of random symmetric positive definite matrices m m^T + n I. */
static pn_array *spd(int64_t batch, int64_t n)
{
    pn_array *m = r64((int64_t[]){batch, n, n}, 3);
    pn_array *a = pn_add(pn_matmul(m, pn_swapaxes(m, -1, -2)),
                         pn_multiply(pn_eye(n, n, 0, PN_FLOAT64), pn_scalar((double)n, PN_FLOAT64)));
    return a;
}

/* A batch of random well-conditioned general matrices (r + n I with random signs of rows). */
static pn_array *general(int64_t batch, int64_t n)
{
    pn_array *r = r64((int64_t[]){batch, n, n}, 3);
    return pn_add(r, pn_multiply(pn_eye(n, n, 0, PN_FLOAT64), pn_scalar(0.5 * (double)n, PN_FLOAT64)));
}

/* Checks that every matrix of x (batch, n, n) is the identity within tol. */
static int check_identity(const char *what, const double *x, int64_t batch, int64_t n, double tol)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                if (fabs(x[(b * n + i) * n + j] - (i == j)) > tol) {
                    test_fail(__FILE__, __LINE__, "%s: [%lld][%lld][%lld] = %g", what, (long long)b,
                              (long long)i, (long long)j, x[(b * n + i) * n + j]);
                    return 0;
                }
    return 1;
}

TEST(cholesky_values)
{
    pn_scope_push();
    for (int64_t n = 1; n <= 7; n += 3) {
        pn_scope_push();
        pn_array *a = spd(3, n);
        double *av = test_to_f64(a);
        for (int up = 0; up < 2; up++) {
            pn_array *l = pn_linalg_cholesky(a, up);
            CHECK_OK(l);
            double *lv = test_to_f64(l), *lt = malloc(sizeof(double) * (size_t)(n * n)),
                   *prod = malloc(sizeof(double) * (size_t)(n * n));
            for (int b = 0; b < 3; b++) {
                const double *m = lv + b * n * n;
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < n; j++) {
                        lt[i * n + j] = m[j * n + i];
                        if (up ? j < i : j > i) CHECK_MSG(m[i * n + j] == 0, "cholesky not triangular");
                    }
                if (up) mm(lt, m, prod, n, n, n); else mm(m, lt, prod, n, n, n);
                for (int64_t i = 0; i < n * n; i++)
                    CHECK_MSG(fabs(prod[i] - av[b * n * n + i]) < 1e-10, "cholesky n=%lld up=%d: %g vs %g",
                              (long long)n, up, prod[i], av[b * n * n + i]);
                for (int64_t i = 0; i < n; i++) CHECK(m[i * n + i] > 0);
            }
            free(lv), free(lt), free(prod);
        }
        /* the upper triangle is not read */
        pn_array *junk = pn_add(a, pn_triu(r64((int64_t[]){n, n}, 2), 1));
        pn_array *d = pn_subtract(pn_linalg_cholesky(junk, false), pn_linalg_cholesky(a, false));
        double z = 0;
        test_check_values("cholesky lower only", pn_max(pn_abs(d), NULL, 0, false), NULL, 0, PN_FLOAT64, &z, 0, 0);
        free(av);
        pn_scope_pop();
    }
    CHECK_ERR(pn_linalg_cholesky(r64((int64_t[]){3, 4}, 2), false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_cholesky(r64((int64_t[]){3}, 1), false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_cholesky(pn_ones((int64_t[]){2, 2}, 2, PN_INT32), false), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(triangular_solves_and_inverses)
{
    pn_scope_push();
    const int64_t n = 5, k = 3;
    pn_array *base = general(2, n);
    for (int up = 0; up < 2; up++) {
        pn_scope_push();
        pn_array *t = up ? pn_triu(base, 0) : pn_tril(base, 0);
        pn_array *junk = pn_add(t, up ? pn_tril(r64((int64_t[]){n, n}, 2), -1) : pn_triu(r64((int64_t[]){n, n}, 2), 1));
        double *tv = test_to_f64(t);
        /* matrix right-hand side: a @ x == b */
        pn_array *b = r64((int64_t[]){2, n, k}, 3);
        double *bv = test_to_f64(b), *ax = malloc(sizeof(double) * (size_t)(n * k));
        pn_array *x = pn_linalg_solve_triangular(junk, b, up);
        CHECK_OK(x);
        double *xv = test_to_f64(x);
        for (int bb = 0; bb < 2; bb++) {
            mm(tv + bb * n * n, xv + bb * n * k, ax, n, n, k);
            for (int64_t i = 0; i < n * k; i++)
                CHECK_MSG(fabs(ax[i] - bv[bb * n * k + i]) < 1e-10, "solve_triangular up=%d", up);
        }
        /* vector right-hand side, broadcast over the batch */
        pn_array *v = r64(&n, 1);
        pn_array *xvv = pn_linalg_solve_triangular(t, v, up);
        CHECK(xvv && pn_ndim(xvv) == 2 && pn_dim(xvv, 1) == n);
        double *vv = test_to_f64(v), *xs = test_to_f64(xvv), av1[5];
        for (int bb = 0; bb < 2; bb++) {
            mm(tv + bb * n * n, xs + bb * n, av1, n, n, 1);
            for (int64_t i = 0; i < n; i++) CHECK(fabs(av1[i] - vv[i]) < 1e-10);
        }
        /* tri_inv: t @ inv == I */
        double *iv = test_to_f64(pn_linalg_tri_inv(junk, up)), *pr = malloc(sizeof(double) * (size_t)(2 * n * n));
        for (int bb = 0; bb < 2; bb++) mm(tv + bb * n * n, iv + bb * n * n, pr + bb * n * n, n, n, n);
        check_identity("tri_inv", pr, 2, n, 1e-10);
        free(tv), free(bv), free(ax), free(xv), free(vv), free(xs), free(iv), free(pr);
        pn_scope_pop();
    }
    /* cholesky_inv: inverse of the SPD matrix from its factor */
    pn_array *a = spd(2, n);
    for (int up = 0; up < 2; up++) {
        double *av = test_to_f64(a), *ci = test_to_f64(pn_linalg_cholesky_inv(pn_linalg_cholesky(a, up), up));
        double *pr = malloc(sizeof(double) * (size_t)(2 * n * n));
        for (int bb = 0; bb < 2; bb++) mm(av + bb * n * n, ci + bb * n * n, pr + bb * n * n, n, n, n);
        check_identity("cholesky_inv", pr, 2, n, 1e-10);
        free(av), free(ci), free(pr);
    }
    CHECK_ERR(pn_linalg_solve_triangular(base, r64((int64_t[]){4}, 1), false), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(inv_and_solve)
{
    pn_scope_push();
    for (int64_t n = 1; n <= 6; n += 5) {
        pn_scope_push();
        pn_array *a = general(3, n);
        double *av = test_to_f64(a), *iv = test_to_f64(pn_linalg_inv(a));
        double *pr = malloc(sizeof(double) * (size_t)(3 * n * n));
        for (int b = 0; b < 3; b++) mm(av + b * n * n, iv + b * n * n, pr + b * n * n, n, n, n);
        check_identity("inv", pr, 3, n, 1e-10);
        /* solve with a broadcast matrix right-hand side and with a vector */
        pn_array *rhs = r64((int64_t[]){n, 2}, 2), *vec = r64(&n, 1);
        double *rv = test_to_f64(rhs), *xv = test_to_f64(pn_linalg_solve(a, rhs)), *ax = malloc(sizeof(double) * (size_t)(2 * n));
        double *vv = test_to_f64(vec), *xs = test_to_f64(pn_linalg_solve(a, vec));
        for (int b = 0; b < 3; b++) {
            mm(av + b * n * n, xv + b * n * 2, ax, n, n, 2);
            for (int64_t i = 0; i < 2 * n; i++) CHECK_MSG(fabs(ax[i] - rv[i]) < 1e-10, "solve");
            mm(av + b * n * n, xs + b * n, ax, n, n, 1);
            for (int64_t i = 0; i < n; i++) CHECK_MSG(fabs(ax[i] - vv[i]) < 1e-10, "solve vector");
        }
        free(av), free(iv), free(pr), free(rv), free(xv), free(ax), free(vv), free(xs);
        pn_scope_pop();
    }
    /* a zero pivot needs row exchanges */
    pn_array *p = pn_array_from_data((double[]){0, 2, 0, 1, 0, 0, 0, 0, 3}, (int64_t[]){3, 3}, 2, PN_FLOAT64);
    double want[9] = {0, 1, 0, 0.5, 0, 0, 0, 0, 1.0 / 3};
    test_check_values("inv pivoting", pn_linalg_inv(p), (int64_t[]){3, 3}, 2, PN_FLOAT64, want, 1e-14, 1e-14);
    /* float32 */
    pn_array *f = pn_astype(general(1, 4), PN_FLOAT32);
    pn_array *e = pn_subtract(pn_matmul(f, pn_linalg_inv(f)), pn_eye(4, 4, 0, PN_FLOAT32));
    CHECK(pn_array_dtype(e) == PN_FLOAT32 && pn_item(pn_max(pn_abs(e), NULL, 0, false)) < 1e-5);
    CHECK_ERR(pn_linalg_inv(r64((int64_t[]){2, 3}, 2)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_solve(p, r64((int64_t[]){2}, 1)), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(qr_values)
{
    pn_scope_push();
    const int64_t shapes[][2] = {{5, 3}, {3, 5}, {4, 4}, {1, 3}};
    for (size_t c = 0; c < 4; c++) {
        pn_scope_push();
        int64_t m = shapes[c][0], n = shapes[c][1], k = m < n ? m : n;
        pn_array *a = r64((int64_t[]){2, m, n}, 3), *q, *r;
        CHECK(pn_linalg_qr(a, &q, &r) == 0);
        CHECK(q && r && pn_dim(q, -1) == k && pn_dim(q, -2) == m && pn_dim(r, -2) == k && pn_dim(r, -1) == n);
        double *av = test_to_f64(a), *qv = test_to_f64(q), *rv = test_to_f64(r);
        double *qr = malloc(sizeof(double) * (size_t)(m * n)), *qtq = malloc(sizeof(double) * (size_t)(k * k));
        double *qt = malloc(sizeof(double) * (size_t)(m * k));
        for (int b = 0; b < 2; b++) {
            const double *qb = qv + b * m * k, *rb = rv + b * k * n;
            mm(qb, rb, qr, m, k, n);
            for (int64_t i = 0; i < m * n; i++) CHECK_MSG(fabs(qr[i] - av[b * m * n + i]) < 1e-12, "qr: q r != a");
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < k; j++) qt[j * m + i] = qb[i * k + j];
            mm(qt, qb, qtq, k, m, k);
            check_identity("q^T q", qtq, 1, k, 1e-12);
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < i && j < n; j++) CHECK_MSG(rb[i * n + j] == 0, "qr: r not triangular");
        }
        free(av), free(qv), free(rv), free(qr), free(qtq), free(qt);
        pn_scope_pop();
    }
    pn_array *q, *r;
    pn_clear_error();
    CHECK(pn_linalg_qr(r64((int64_t[]){3}, 1), &q, &r) == -1 && !q && !r);
    pn_clear_error();
    pn_scope_pop();
}

TEST(cross_values)
{
    pn_scope_push();
    pn_array *a = r64((int64_t[]){4, 3}, 2), *b = r64((int64_t[]){3}, 1);
    double *av = test_to_f64(a), *bv = test_to_f64(b), ref[12];
    for (int i = 0; i < 4; i++) {
        const double *u = av + 3 * i;
        ref[3 * i] = u[1] * bv[2] - u[2] * bv[1];
        ref[3 * i + 1] = u[2] * bv[0] - u[0] * bv[2];
        ref[3 * i + 2] = u[0] * bv[1] - u[1] * bv[0];
    }
    test_check_values("cross", pn_linalg_cross(a, b, -1), (int64_t[]){4, 3}, 2, PN_FLOAT64, ref, 1e-12, 1e-12);
    /* along axis 0, and a 2-vector */
    test_check_values("cross axis 0", pn_linalg_cross(pn_transpose(a, NULL, 0), pn_reshape(b, (int64_t[]){3, 1}, 2), 0),
                      (int64_t[]){3, 4}, 2, PN_FLOAT64,
                      (double[]){ref[0], ref[3], ref[6], ref[9], ref[1], ref[4], ref[7], ref[10], ref[2], ref[5], ref[8], ref[11]},
                      1e-12, 1e-12);
    pn_array *two = pn_array_from_data((double[]){1, 2}, (int64_t[]){2}, 1, PN_FLOAT64);
    pn_array *three = pn_array_from_data((double[]){3, 4, 5}, (int64_t[]){3}, 1, PN_FLOAT64);
    test_check_values("cross 2-vector", pn_linalg_cross(two, three, -1), (int64_t[]){3}, 1, PN_FLOAT64,
                      (double[]){10, -5, -2}, 1e-12, 1e-12);
    CHECK_ERR(pn_linalg_cross(r64((int64_t[]){4}, 1), b, -1), PN_ERR_INVALID_ARGUMENT);
    free(av), free(bv);
    pn_scope_pop();
}

static pn_array *g_chol(void *ctx, pn_array *const *in)
{
    pn_array *s = pn_add(pn_matmul(in[0], pn_swapaxes(in[0], -1, -2)),
                         pn_multiply(pn_eye(3, 3, 0, PN_FLOAT64), pn_scalar(3, PN_FLOAT64)));
    return pn_linalg_cholesky(s, false);
}
static pn_array *g_inv(void *ctx, pn_array *const *in) { return pn_linalg_inv(in[0]); }
static pn_array *g_solve(void *ctx, pn_array *const *in) { return pn_linalg_solve(in[0], in[1]); }
static pn_array *g_solve_tri(void *ctx, pn_array *const *in) { return pn_linalg_solve_triangular(in[0], in[1], *(bool *)ctx); }
static pn_array *g_qr_r(void *ctx, pn_array *const *in)
{
    pn_array *q, *r;
    return pn_linalg_qr(in[0], &q, &r) ? NULL : (*(int *)ctx ? q : r);
}
static pn_array *g_median(void *ctx, pn_array *const *in) { return pn_median(in[0], (int[]){-1}, 1, false); }
static pn_array *g_kron(void *ctx, pn_array *const *in) { return pn_kron(in[0], in[1]); }
static pn_array *g_cross(void *ctx, pn_array *const *in) { return pn_linalg_cross(in[0], in[1], -1); }
static pn_array *g_diff(void *ctx, pn_array *const *in) { return pn_diff(in[0], 2, 0); }

TEST(compositions_gradients)
{
    pn_scope_push();
    double tol = 1e-5;
    pn_array *m = r64((int64_t[]){2, 3, 3}, 3);
    CHECK(test_gradcheck("cholesky", g_chol, NULL, 1, &m, tol));
    pn_array *g = general(2, 3);
    CHECK(test_gradcheck("inv", g_inv, NULL, 1, &g, tol));
    pn_array *sv[2] = {general(2, 3), r64((int64_t[]){3, 2}, 2)};
    CHECK(test_gradcheck("solve", g_solve, NULL, 2, sv, tol));
    for (int up = 0; up < 2; up++) {
        bool u = up;
        pn_array *tv[2] = {up ? pn_triu(general(1, 4), 0) : pn_tril(general(1, 4), 0), r64((int64_t[]){4}, 1)};
        CHECK_MSG(test_gradcheck("solve_triangular", g_solve_tri, &u, 2, tv, tol), "up=%d", up);
    }
    for (int which = 0; which < 2; which++) {
        pn_array *qa = r64((int64_t[]){4, 3}, 2);
        CHECK_MSG(test_gradcheck("qr", g_qr_r, &which, 1, &qa, tol), "qr output %d", which);
    }
    pn_array *md = r64((int64_t[]){3, 6}, 2);
    CHECK(test_gradcheck("median", g_median, NULL, 1, &md, tol));
    pn_array *kr[2] = {r64((int64_t[]){2, 3}, 2), r64((int64_t[]){2}, 1)};
    CHECK(test_gradcheck("kron", g_kron, NULL, 2, kr, tol));
    pn_array *cr[2] = {r64((int64_t[]){2, 3}, 2), r64((int64_t[]){3}, 1)};
    CHECK(test_gradcheck("cross", g_cross, NULL, 2, cr, tol));
    pn_array *df = r64((int64_t[]){5, 2}, 2);
    CHECK(test_gradcheck("diff", g_diff, NULL, 1, &df, tol));
    pn_scope_pop();
}

TEST(windows)
{
    pn_scope_push();
    const pn_window_kind kinds[4] = {PN_WINDOW_BARTLETT, PN_WINDOW_BLACKMAN, PN_WINDOW_HAMMING, PN_WINDOW_HANNING};
    for (int k = 0; k < 4; k++)
        for (int64_t m = 0; m <= 9; m += (m < 3 ? 1 : 3)) {
            double ref[10];
            for (int64_t n = 0; n < m; n++) {
                double t = m == 1 ? 0 : (double)n / (double)(m - 1), c = cos(2 * M_PI * t), c2 = cos(4 * M_PI * t);
                ref[n] = m == 1                               ? 1
                         : kinds[k] == PN_WINDOW_BARTLETT ? 1 - fabs(2 * t - 1)
                         : kinds[k] == PN_WINDOW_BLACKMAN ? 0.42 - 0.5 * c + 0.08 * c2
                         : kinds[k] == PN_WINDOW_HAMMING  ? 0.54 - 0.46 * c
                                                          : 0.5 - 0.5 * c;
            }
            CHECK_MSG(test_check_values("window", pn_window(kinds[k], m), &m, 1, PN_FLOAT32, ref, 1e-5, 1e-6),
                      "window %d m=%lld", k, (long long)m);
        }
    CHECK_ERR(pn_window((pn_window_kind)7, 3), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
