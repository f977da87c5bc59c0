/* test_fp8_unique_det.c — can_cast against the promotion table, the fp8 e4m3
 * conversions against a brute-force nearest-code reference over every code, unique against a
 * sort-based reference, det/slogdet against float64 Gaussian elimination, fast.cross_entropy
 * against float64 log-sum-exp; errors, and derivatives against finite differences. */
#include "harness.h"

#include <string.h>

/* ───────────────────────────── references ───────────────────────────── */

/* The value of e4m3 code c (independent of the library): NaN for 0x7f and 0xff. */
static double ref_fp8_value(int c)
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? m * pow(2, -9) : (1 + m / 8.0) * pow(2, e - 7);
    return s ? -v : v;
}

/* The code of x by brute force: the nearest finite code of magnitude <= 448, ties to the even
 * code; above 448, inf and NaN: 0x7e; the sign bit of x kept. */
static int ref_fp8_code(double x)
{
    int sign = signbit(x) ? 0x80 : 0;
    double a = fabs(x);
    if (!(a <= 448)) return 0x7e | sign;
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c <= 0x7e; c++) {
        double d = fabs(ref_fp8_value(c) - a);
        if (d < bd || (d == bd && !(c & 1))) bd = d, best = c;
    }
    return best | sign;
}

/* det and log|det| of the n x n matrix a (row-major, copied) by Gaussian elimination with
 * partial pivoting in float64; *sign in {-1, 0, 1}. */
static double ref_det(int64_t n, const double *a0, double *logabs, double *sign)
{
    double *a = malloc(sizeof(double) * (size_t)(n * n + 1));
    memcpy(a, a0, sizeof(double) * (size_t)(n * n));
    double s = 1, la = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++)
            if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (p != k) {
            for (int64_t j = 0; j < n; j++) {
                double t = a[k * n + j];
                a[k * n + j] = a[p * n + j], a[p * n + j] = t;
            }
            s = -s;
        }
        double d = a[k * n + k];
        if (d == 0) {
            s = 0, la = -INFINITY;
            break;
        }
        s *= d < 0 ? -1 : 1;
        la += log(fabs(d));
        for (int64_t i = k + 1; i < n; i++) {
            double f = a[i * n + k] / d;
            for (int64_t j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
        }
    }
    free(a);
    *logabs = la, *sign = s;
    return s * exp(la);
}

/* ───────────────────────────── can_cast ───────────────────────────── */

TEST(can_cast_follows_promotion)
{
    for (int a = 0; a < PN_NUM_DTYPES; a++)
        for (int b = 0; b < PN_NUM_DTYPES; b++)
            CHECK(pn_can_cast((pn_dtype)a, (pn_dtype)b) == (pn_promote_types((pn_dtype)a, (pn_dtype)b) == (pn_dtype)b));
    CHECK(pn_can_cast(PN_INT8, PN_INT16) && !pn_can_cast(PN_INT16, PN_INT8));
    CHECK(!pn_can_cast(PN_UINT64, PN_INT64) && !pn_can_cast(PN_FLOAT16, PN_BFLOAT16));
    CHECK(pn_can_cast(PN_INT64, PN_FLOAT32) && !pn_can_cast(PN_COMPLEX64, PN_FLOAT32));
    CHECK(pn_can_cast(PN_BOOL, PN_BOOL) && !pn_can_cast(PN_UINT32, PN_INT32));
    CHECK(!pn_can_cast((pn_dtype)-1, PN_FLOAT32) && !pn_can_cast(PN_FLOAT32, PN_NUM_DTYPES));
}

/* ───────────────────────────── fp8 ───────────────────────────── */

TEST(from_fp8_every_code)
{
    pn_scope_push();
    uint8_t codes[256];
    double ref[256];
    for (int c = 0; c < 256; c++) codes[c] = (uint8_t)c, ref[c] = ref_fp8_value(c);
    pn_array *x = pn_array_from_data(codes, (int64_t[]){256}, 1, PN_UINT8);
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (int d = 0; d < 4; d++) {
        pn_array *y = pn_from_fp8(x, dts[d]);
        CHECK_OK(y);
        if (y) test_check_values("from_fp8", y, (int64_t[]){256}, 1, dts[d], ref, 0, 0);
    }
    /* batched shape, strided input, -0.0 keeps its sign */
    pn_array *x2 = pn_reshape(x, (int64_t[]){4, 8, 8}, 3);
    pn_array *y2 = pn_from_fp8(pn_transpose(x2, (int[]){2, 0, 1}, 3), PN_FLOAT32);
    double *r2 = malloc(sizeof(double) * 256), *g = NULL;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 8; k++) r2[(i * 4 + j) * 8 + k] = ref[j * 64 + k * 8 + i];
    if (y2) test_check_values("from_fp8 strided", y2, (int64_t[]){8, 4, 8}, 3, PN_FLOAT32, r2, 0, 0);
    pn_array *mz = pn_from_fp8(pn_scalar_int(0x80, PN_UINT8), PN_FLOAT32);
    CHECK((g = test_to_f64(mz)) && g[0] == 0 && signbit(g[0]));
    free(g), free(r2);
    CHECK_ERR(pn_from_fp8(pn_scalar(1, PN_FLOAT32), PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_from_fp8(pn_scalar_int(1, PN_INT8), PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_from_fp8(x, PN_INT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_from_fp8(x, PN_COMPLEX64), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_from_fp8(NULL, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(to_fp8_matches_nearest_code)
{
    pn_scope_push();
    int n = test_quick() ? 2000 : 20000;
    float *v = malloc(sizeof(float) * (size_t)n);
    int i = 0;
    /* every code value, the midpoints between neighbours (ties) and just beside them */
    for (int c = 0; c < 256 && i + 5 <= n; c++) {
        double a = ref_fp8_value(c), b = ref_fp8_value((c & 0x80) | ((c & 0x7f) + 1));
        if (isnan(a)) continue;
        v[i++] = (float)a;
        if (!isnan(b) && (c & 0x7f) < 0x7e) {
            double mid = (a + b) / 2;
            v[i++] = (float)mid, v[i++] = nextafterf((float)mid, INFINITY), v[i++] = nextafterf((float)mid, -INFINITY);
        }
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 448, 449, 463.9f, 464, 464.1f, 470,
                             480, 1e9f, -1e9f, 1e-9f, -1e-9f, 0x1p-10f, 0x1.8p-10f, 0x1p-6f, 0x1.ffp-7f, 1e-40f};
    for (size_t k = 0; k < sizeof special / sizeof *special && i < n; k++) v[i++] = special[k];
    while (i < n) /* random magnitudes over the whole range and beyond */
        v[i++] = (float)(test_normal() * pow(2, (double)(int)test_uniform(-14, 11)));
    pn_array *x = pn_array_from_data(v, (int64_t[]){n}, 1, PN_FLOAT32);
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    double *ref = malloc(sizeof(double) * (size_t)n);
    for (int d = 0; d < 4; d++) {
        pn_scope_push();
        pn_array *xd = pn_astype(x, dts[d]);
        double *xv = test_to_f64(xd);
        for (int k = 0; xv && k < n; k++) ref[k] = ref_fp8_code(xv[k]);
        pn_array *y = pn_to_fp8(xd);
        CHECK_OK(y);
        if (xv && y) CHECK_MSG(test_check_values("to_fp8", y, (int64_t[]){n}, 1, PN_UINT8, ref, 0, 0), "dtype %s",
                               pn_dtype_name(dts[d]));
        free(xv);
        pn_scope_pop();
    }
    /* from_fp8 then to_fp8 gives every finite code back; batched 2-d shape */
    uint8_t codes[256];
    for (int c = 0; c < 256; c++) codes[c] = (uint8_t)c, ref[c] = (c & 0x7f) == 0x7f ? 0x7e | (c & 0x80) : c;
    pn_array *cx = pn_array_from_data(codes, (int64_t[]){16, 16}, 2, PN_UINT8);
    pn_array *back = pn_to_fp8(pn_from_fp8(cx, PN_BFLOAT16));
    if (back) test_check_values("fp8 round trip", back, (int64_t[]){16, 16}, 2, PN_UINT8, ref, 0, 0);
    CHECK_ERR(pn_to_fp8(pn_scalar_int(1, PN_INT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_to_fp8(pn_scalar_int(1, PN_UINT8)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_to_fp8(pn_scalar_complex(1, 0)), PN_ERR_INVALID_ARGUMENT);
    free(ref), free(v);
    pn_scope_pop();
}

/* ───────────────────────────── unique ───────────────────────────── */

static const double *sort_base;
static int by_value(const void *x, const void *y)
{
    double a = sort_base[*(const int64_t *)x], b = sort_base[*(const int64_t *)y];
    int na = isnan(a), nb = isnan(b);
    if (na || nb) return na != nb ? na - nb : (*(const int64_t *)x > *(const int64_t *)y) - (*(const int64_t *)x < *(const int64_t *)y);
    if (a != b) return a < b ? -1 : 1;
    return (*(const int64_t *)x > *(const int64_t *)y) - (*(const int64_t *)x < *(const int64_t *)y);
}

/* The reference unique of x (n values) at size s: values, index, inverse, counts (as doubles).
 * fill: NULL for the default (the smallest element). */
static void ref_unique(const double *x, int64_t n, int64_t s, const double *fill, double *val, double *idx,
                       double *inv, double *cnt)
{
    int64_t *p = malloc(sizeof(int64_t) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) p[i] = i;
    sort_base = x;
    qsort(p, (size_t)n, sizeof *p, by_value);
    int64_t g = -1;
    for (int64_t k = 0; k < s; k++) cnt[k] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || !(x[p[i]] == x[p[i - 1]])) {
            g++;
            if (g < s) idx[g] = (double)p[i], val[g] = x[p[i]];
        }
        if (g < s) cnt[g]++;
        inv[p[i]] = (double)(g < s ? g : s > 0 ? s - 1 : 0);
    }
    for (int64_t k = g + 1; k < s; k++) {
        idx[k] = n ? idx[0] : 0;
        val[k] = fill ? *fill : val[0];
    }
    free(p);
}

TEST(unique_matches_reference)
{
    pn_scope_push();
    const struct {
        int nd;
        int64_t shape[3];
        pn_dtype t;
        double lo, hi;
    } cases[] = {
        {1, {7}, PN_INT32, -3, 4},    {2, {3, 4}, PN_INT32, 0, 5},      {3, {2, 3, 5}, PN_FLOAT32, -4, 4},
        {2, {6, 9}, PN_INT64, -20, 20}, {1, {1}, PN_FLOAT64, -1, 1},    {2, {5, 5}, PN_UINT8, 0, 30},
        {1, {12}, PN_FLOAT16, -2, 2}, {0, {0}, PN_INT32, 0, 9},        {1, {10}, PN_BOOL, 0, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pn_scope_push();
        pn_array *a = test_random_array(cases[c].shape, cases[c].nd, cases[c].t, cases[c].lo, cases[c].hi);
        if (cases[c].t == PN_FLOAT32 || cases[c].t == PN_FLOAT16) /* ties among floats */
            a = pn_astype(pn_round(a, 0), cases[c].t);
        double *x = test_to_f64(a);
        int64_t n = pn_size(a), nuniq = 0;
        {
            double v[64], ix[64], inv[64], ct[64];
            ref_unique(x, n, 64, NULL, v, ix, inv, ct);
            for (int k = 0; k < 64; k++) nuniq += ct[k] > 0;
        }
        const int64_t sizes[] = {0, 1, nuniq > 1 ? nuniq - 1 : 1, nuniq, nuniq + 3};
        for (int si = 0; si < 5; si++)
            for (int use_fill = 0; use_fill < 2; use_fill++) {
                pn_scope_push();
                int64_t s = sizes[si];
                double fillv = 1, *val = malloc(sizeof(double) * (size_t)(s + 1)),
                       *idx = malloc(sizeof(double) * (size_t)(s + 1)), *cnt = malloc(sizeof(double) * (size_t)(s + 1)),
                       *inv = malloc(sizeof(double) * (size_t)(n + 1));
                ref_unique(x, n, s, use_fill ? &fillv : NULL, val, idx, inv, cnt);
                pn_array *out[4];
                CHECK(pn_unique(a, s, use_fill ? pn_scalar(fillv, PN_FLOAT32) : NULL, out) == 0);
                if (out[0]) {
                    char what[64];
                    snprintf(what, sizeof what, "unique case %zu size %lld fill %d", c, (long long)s, use_fill);
                    test_check_values(what, out[0], &s, 1, cases[c].t, val, 0, 0);
                    test_check_values(what, out[1], &s, 1, PN_UINT32, idx, 0, 0);
                    test_check_values(what, out[2], cases[c].shape, cases[c].nd, PN_UINT32, inv, 0, 0);
                    test_check_values(what, out[3], &s, 1, PN_INT32, cnt, 0, 0);
                }
                free(val), free(idx), free(cnt), free(inv);
                pn_scope_pop();
            }
        free(x);
        pn_scope_pop();
    }
    pn_scope_pop();
}

TEST(unique_nan_zero_empty_and_errors)
{
    pn_scope_push();
    /* each NaN is its own entry; -0.0 and 0.0 are one, shown as the first occurrence */
    const float xv[] = {1.5f, NAN, 1.5f, NAN, -0.0f, 0.0f};
    pn_array *x = pn_array_from_data(xv, (int64_t[]){6}, 1, PN_FLOAT32), *out[4];
    CHECK(pn_unique(x, 6, NULL, out) == 0);
    const double v[] = {-0.0, 1.5, NAN, NAN, -0.0, -0.0}, ix[] = {4, 0, 1, 3, 4, 4}, inv[] = {1, 2, 1, 3, 0, 0},
                 ct[] = {2, 2, 1, 1, 0, 0};
    if (out[0]) {
        test_check_values("unique nan", out[0], (int64_t[]){6}, 1, PN_FLOAT32, v, 0, 0);
        test_check_values("unique nan index", out[1], (int64_t[]){6}, 1, PN_UINT32, ix, 0, 0);
        test_check_values("unique nan inverse", out[2], (int64_t[]){6}, 1, PN_UINT32, inv, 0, 0);
        test_check_values("unique nan counts", out[3], (int64_t[]){6}, 1, PN_INT32, ct, 0, 0);
        double *g = test_to_f64(out[0]);
        CHECK(g && signbit(g[0]));
        free(g);
    }
    /* 0-d input: inverse is 0-d */
    CHECK(pn_unique(pn_scalar_int(5, PN_INT32), 2, NULL, out) == 0 && out[2] && pn_ndim(out[2]) == 0);
    /* empty input: needs a fill value unless size is 0 */
    pn_array *e = pn_zeros((int64_t[]){2, 0}, 2, PN_FLOAT32);
    CHECK(pn_unique(e, 2, pn_scalar(3, PN_INT32), out) == 0);
    if (out[0]) {
        test_check_values("unique empty", out[0], (int64_t[]){2}, 1, PN_FLOAT32, (double[]){3, 3}, 0, 0);
        test_check_values("unique empty idx", out[1], (int64_t[]){2}, 1, PN_UINT32, (double[]){0, 0}, 0, 0);
        test_check_values("unique empty counts", out[3], (int64_t[]){2}, 1, PN_INT32, (double[]){0, 0}, 0, 0);
        CHECK(pn_ndim(out[2]) == 2 && pn_dim(out[2], 0) == 2 && pn_dim(out[2], 1) == 0);
    }
    CHECK(pn_unique(e, 0, NULL, out) == 0 && out[0] && pn_size(out[0]) == 0);
    pn_clear_error();
    CHECK(pn_unique(e, 1, NULL, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT && !out[0]);
    pn_clear_error();
    CHECK(pn_unique(x, -1, NULL, out) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_unique(x, 3, pn_zeros((int64_t[]){2}, 1, PN_FLOAT32), out) == -1 &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_unique(NULL, 3, NULL, out) == -1 && !out[3]);
    pn_clear_error();
    pn_scope_pop();
}

/* values of unique(x, size) weighted, for the gradient check: the padding repeats x's minimum */
static pn_array *unique_values(void *ctx, pn_array *const *in)
{
    pn_array *out[4];
    if (pn_unique(in[0], *(int64_t *)ctx, NULL, out)) return NULL;
    pn_array *w = pn_arange(1, (double)*(int64_t *)ctx + 1, 1, PN_FLOAT64);
    return pn_sum(pn_multiply(out[0], w), NULL, 0, false);
}

TEST(unique_gradient)
{
    pn_scope_push();
    /* distinct values: the gradient is the weight of each element's rank (padding: the min) */
    pn_array *x = test_random_array((int64_t[]){2, 4}, 2, PN_FLOAT64, -2, 2);
    int64_t sizes[] = {5, 8, 11};
    for (int k = 0; k < 3; k++) CHECK_MSG(test_gradcheck("unique", unique_values, &sizes[k], 1, &x, 1e-6), "size %lld", (long long)sizes[k]);
    pn_scope_pop();
}

/* ───────────────────────────── det, slogdet ───────────────────────────── */

TEST(det_slogdet_match_elimination)
{
    pn_scope_push();
    const struct {
        int nd;
        int64_t shape[4];
    } cases[] = {{2, {1, 1}}, {2, {2, 2}}, {2, {5, 5}}, {3, {4, 3, 3}}, {4, {2, 3, 6, 6}}, {2, {12, 12}}};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 4; d++) {
            pn_scope_push();
            pn_dtype t = dts[d];
            int nd = cases[c].nd;
            int64_t n = cases[c].shape[nd - 1], nb = pn_size(pn_zeros(cases[c].shape, nd - 2, PN_FLOAT32));
            pn_array *a = test_random_array(cases[c].shape, nd, t, -2, 2);
            double *A = test_to_f64(a), *det = malloc(sizeof(double) * (size_t)nb),
                   *la = malloc(sizeof(double) * (size_t)nb), *sg = malloc(sizeof(double) * (size_t)nb);
            for (int64_t b = 0; A && b < nb; b++) det[b] = ref_det(n, A + b * n * n, &la[b], &sg[b]);
            pn_array *y = pn_linalg_det(a), *s, *l;
            CHECK(pn_linalg_slogdet(a, &s, &l) == 0);
            double rt = t == PN_FLOAT64 ? 1e-10 : t == PN_FLOAT32 ? 1e-4 : 3e-2;
            char what[64];
            snprintf(what, sizeof what, "det case %zu %s", c, pn_dtype_name(t));
            if (A && y) test_check_values(what, y, cases[c].shape, nd - 2, t, det, rt, rt * 1e-3);
            if (A && s) test_check_values(what, s, cases[c].shape, nd - 2, t, sg, 0, 0);
            if (A && l) test_check_values(what, l, cases[c].shape, nd - 2, t, la, rt, rt);
            free(A), free(det), free(la), free(sg);
            pn_scope_pop();
        }
    pn_scope_pop();
}

TEST(det_singular_empty_int_and_errors)
{
    pn_scope_push();
    /* singular (exactly, through the elimination) and a batch mixing signs */
    const float m[] = {1, 2, 2, 4, 0, 0, 0, 0, 1, 2, 3, 4, 3, 4, 1, 2};
    pn_array *a = pn_array_from_data(m, (int64_t[]){4, 2, 2}, 3, PN_FLOAT32), *s, *l;
    pn_array *y = pn_linalg_det(a);
    CHECK(pn_linalg_slogdet(a, &s, &l) == 0);
    if (y) test_check_values("det singular", y, (int64_t[]){4}, 1, PN_FLOAT32, (double[]){0, 0, -2, 2}, 1e-6, 1e-6);
    if (s) test_check_values("sign singular", s, (int64_t[]){4}, 1, PN_FLOAT32, (double[]){0, 0, -1, 1}, 0, 0);
    if (l)
        test_check_values("logabs singular", l, (int64_t[]){4}, 1, PN_FLOAT32,
                          (double[]){-INFINITY, -INFINITY, log(2), log(2)}, 1e-6, 1e-6);
    /* integers give float32 */
    const int32_t im[] = {1, 2, 3, 4};
    pn_array *ia = pn_array_from_data(im, (int64_t[]){2, 2}, 2, PN_INT32);
    pn_array *iy = pn_linalg_det(ia);
    if (iy) test_check_values("det int", iy, NULL, 0, PN_FLOAT32, (double[]){-2}, 1e-6, 1e-6);
    /* 0 x 0 matrices: det 1, sign 1, logabsdet 0 */
    pn_array *e = pn_zeros((int64_t[]){3, 0, 0}, 3, PN_FLOAT64);
    pn_array *ey = pn_linalg_det(e);
    CHECK(pn_linalg_slogdet(e, &s, &l) == 0);
    if (ey) test_check_values("det empty", ey, (int64_t[]){3}, 1, PN_FLOAT64, (double[]){1, 1, 1}, 0, 0);
    if (s) test_check_values("sign empty", s, (int64_t[]){3}, 1, PN_FLOAT64, (double[]){1, 1, 1}, 0, 0);
    if (l) test_check_values("logabs empty", l, (int64_t[]){3}, 1, PN_FLOAT64, (double[]){0, 0, 0}, 0, 0);
    CHECK_ERR(pn_linalg_det(pn_zeros((int64_t[]){3}, 1, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_det(pn_zeros((int64_t[]){2, 3}, 2, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_det(pn_zeros((int64_t[]){2, 2}, 2, PN_COMPLEX64)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_det(NULL), PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_linalg_slogdet(pn_zeros((int64_t[]){4, 3}, 2, PN_FLOAT32), &s, &l) == -1 && !s && !l &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

static pn_array *det_fn(void *ctx, pn_array *const *in) { return pn_sum(pn_linalg_det(in[0]), NULL, 0, false); }
static pn_array *logabs_fn(void *ctx, pn_array *const *in)
{
    pn_array *s, *l;
    if (pn_linalg_slogdet(in[0], &s, &l)) return NULL;
    return pn_sum(l, NULL, 0, false);
}

TEST(det_gradients)
{
    pn_scope_push();
    const int64_t shapes[][3] = {{3, 3}, {2, 4, 4}};
    for (int k = 0; k < 2; k++) {
        pn_array *a = test_random_array(shapes[k], 2 + k, PN_FLOAT64, -1, 1);
        CHECK_MSG(test_gradcheck("det", det_fn, NULL, 1, &a, 1e-6), "det shape %d", k);
        CHECK_MSG(test_gradcheck("slogdet", logabs_fn, NULL, 1, &a, 1e-6), "slogdet shape %d", k);
    }
    pn_scope_pop();
}

/* ───────────────────────────── cross_entropy ───────────────────────────── */

TEST(cross_entropy_matches_logsumexp)
{
    pn_scope_push();
    const struct {
        int nd;
        int64_t shape[3];
    } cases[] = {{1, {5}}, {2, {4, 7}}, {3, {2, 3, 11}}, {2, {1, 1}}, {2, {3, 300}}};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 4; d++) {
            pn_scope_push();
            int nd = cases[c].nd;
            int64_t C = cases[c].shape[nd - 1];
            pn_array *lg = test_random_array(cases[c].shape, nd, dts[d], -6, 6);
            pn_array *tg = test_random_array(cases[c].shape, nd - 1, d % 2 ? PN_UINT8 : PN_INT32, 0, (double)C - 0.51);
            pn_array *y = pn_fast_cross_entropy(lg, tg);
            double *L = test_to_f64(lg), *T = test_to_f64(tg);
            int64_t rows = pn_size(tg);
            double *ref = malloc(sizeof(double) * (size_t)rows);
            for (int64_t r = 0; L && T && r < rows; r++) {
                double mx = -INFINITY, acc = 0;
                for (int64_t j = 0; j < C; j++) mx = fmax(mx, L[r * C + j]);
                for (int64_t j = 0; j < C; j++) acc += exp(L[r * C + j] - mx);
                ref[r] = mx + log(acc) - L[r * C + (int64_t)T[r]];
            }
            CHECK_OK(y);
            char what[64];
            snprintf(what, sizeof what, "cross_entropy case %zu %s", c, pn_dtype_name(dts[d]));
            if (y && L && T) test_check_values(what, y, cases[c].shape, nd - 1, PN_FLOAT32, ref, 1e-5, 1e-5);
            free(L), free(T), free(ref);
            pn_scope_pop();
        }
    pn_array *lg = pn_zeros((int64_t[]){2, 3}, 2, PN_FLOAT32);
    CHECK_ERR(pn_fast_cross_entropy(pn_scalar(1, PN_FLOAT32), pn_scalar_int(0, PN_INT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(pn_zeros((int64_t[]){2, 3}, 2, PN_INT32), pn_zeros((int64_t[]){2}, 1, PN_INT32)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(lg, pn_zeros((int64_t[]){2}, 1, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(lg, pn_zeros((int64_t[]){2}, 1, PN_BOOL)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(lg, pn_zeros((int64_t[]){3}, 1, PN_INT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(lg, pn_zeros((int64_t[]){2, 1}, 2, PN_INT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(pn_zeros((int64_t[]){2, 0}, 2, PN_FLOAT32), pn_zeros((int64_t[]){2}, 1, PN_INT32)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fast_cross_entropy(lg, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

static int ce_closure(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    *nout = 1;
    out[0] = pn_fast_cross_entropy(in[0], (pn_array *)ctx);
    return out[0] ? 0 : -1;
}

/* The output is float32 (too coarse for finite differences): the vjp against the analytic
 * ct * (softmax(logits) - onehot(target)), in the logits' dtype. */
TEST(cross_entropy_gradient)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16};
    for (int d = 0; d < 3; d++) {
        pn_scope_push();
        pn_array *lg = test_random_array((int64_t[]){2, 3, 5}, 3, dts[d], -3, 3);
        pn_array *tg = test_random_array((int64_t[]){2, 3}, 2, PN_INT32, 0, 4.49);
        pn_array *ct = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, 0.5, 2);
        pn_closure *cl = pn_closure_new(ce_closure, tg, NULL);
        pn_array *outs[1] = {NULL}, *grads[1] = {NULL};
        int nout = 0;
        CHECK(pn_vjp(cl, 1, &lg, 1, &ct, &nout, outs, grads) == 0);
        double *L = test_to_f64(lg), *T = test_to_f64(tg), *CT = test_to_f64(ct), ref[30];
        for (int r = 0; L && T && CT && r < 6; r++) {
            double mx = -INFINITY, acc = 0;
            for (int j = 0; j < 5; j++) mx = fmax(mx, L[r * 5 + j]);
            for (int j = 0; j < 5; j++) acc += exp(L[r * 5 + j] - mx);
            for (int j = 0; j < 5; j++) ref[r * 5 + j] = CT[r] * (exp(L[r * 5 + j] - mx) / acc - (j == (int)T[r]));
        }
        double tol = dts[d] == PN_FLOAT16 ? 5e-3 : 1e-5;
        if (grads[0] && L && T && CT)
            test_check_values("cross_entropy vjp", grads[0], (int64_t[]){2, 3, 5}, 3, dts[d], ref, tol, tol);
        free(L), free(T), free(CT);
        pn_closure_release(cl);
        pn_scope_pop();
    }
    pn_scope_pop();
}
