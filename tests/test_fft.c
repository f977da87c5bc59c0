/* test_fft.c — mx.fft (src/ops/fft.c, backend/cpu/fft.c): every transform against a float64
 * DFT computed here (padding/truncation, Hermitian extension, scaling done independently),
 * many lengths (1, primes, powers of 2 and 3, Bluestein sizes, 2^16 sampled), axes, batches,
 * strided views, dtype promotion, shifts, errors, and the vjp / jvp / vmap rules against the
 * transform's exact real-linear derivative. */
#include "harness.h"

#include <complex.h>
#include <string.h>

typedef double _Complex dcx;

/* ───────────────────────────── float64 reference ───────────────────────────── */

/* A reference array: row-major complex doubles. */
typedef struct ref {
    int nd;
    int64_t shape[8];
    dcx *v;
} ref;

static int64_t shape_size(const int64_t *shape, int nd)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    return n;
}

static int64_t ref_size(const ref *a) { return shape_size(a->shape, a->nd); }

/* (outer, len, inner) of axis. */
static void split(const int64_t *shape, int nd, int axis, int64_t *outer, int64_t *inner)
{
    *outer = shape_size(shape, axis);
    *inner = shape_size(shape + axis + 1, nd - axis - 1);
}

/* a with axis resized to n: truncated, or zero-padded at the end. Frees a.v. */
static ref ref_resize(ref a, int axis, int64_t n)
{
    ref r = a;
    r.shape[axis] = n;
    r.v = calloc((size_t)ref_size(&r) + 1, sizeof(dcx));
    int64_t outer, inner, m = a.shape[axis];
    split(a.shape, a.nd, axis, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n && k < m; k++)
            for (int64_t i = 0; i < inner; i++)
                r.v[(o * n + k) * inner + i] = a.v[(o * m + k) * inner + i];
    free(a.v);
    return r;
}

/* The n roots e^{-+2 pi i k / n} (malloc'd). */
static dcx *roots(int64_t n, bool inverse)
{
    dcx *w = malloc((size_t)n * sizeof(dcx));
    double sg = inverse ? 2 * M_PI : -2 * M_PI;
    for (int64_t k = 0; k < n; k++) w[k] = cos(sg * k / n) + I * sin(sg * k / n);
    return w;
}

/* In place DFT along axis (sign -1 forward, +1 inverse with 1/n). */
static void ref_dft(ref *a, int axis, bool inverse)
{
    int64_t outer, inner, n = a->shape[axis];
    split(a->shape, a->nd, axis, &outer, &inner);
    dcx *line = malloc((size_t)n * sizeof(dcx)), *res = malloc((size_t)n * sizeof(dcx));
    dcx *w = roots(n, inverse);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            for (int64_t k = 0; k < n; k++) line[k] = a->v[(o * n + k) * inner + i];
            for (int64_t k = 0; k < n; k++) {
                dcx s = 0;
                for (int64_t j = 0, jk = 0; j < n; j++, jk = jk + k >= n ? jk + k - n : jk + k)
                    s += line[j] * w[jk];
                res[k] = inverse ? s / (double)n : s;
            }
            for (int64_t k = 0; k < n; k++) a->v[(o * n + k) * inner + i] = res[k];
        }
    free(w);
    free(line);
    free(res);
}

/* The Hermitian extension along axis of n/2+1 values to n (frees a.v). */
static ref ref_hermitian(ref a, int axis, int64_t n)
{
    ref r = ref_resize(a, axis, n);
    int64_t outer, inner, half = n / 2 + 1;
    split(r.shape, r.nd, axis, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = half; k < n; k++)
            for (int64_t i = 0; i < inner; i++)
                r.v[(o * n + k) * inner + i] = conj(r.v[(o * n + (n - k)) * inner + i]);
    return r;
}

enum { C2C, R2C, C2R };

/* numpy's fftn / ifftn / rfftn / irfftn of a (consumed) over axes with sizes n. */
static ref ref_fftn(ref a, int kind, bool inverse, const int *axes, int naxes, const int64_t *n)
{
    int last = axes[naxes - 1];
    if (kind == C2R) {
        for (int i = 0; i + 1 < naxes; i++) {
            a = ref_resize(a, axes[i], n[i]);
            ref_dft(&a, axes[i], true);
        }
        a = ref_resize(a, last, n[naxes - 1] / 2 + 1);
        a = ref_hermitian(a, last, n[naxes - 1]);
        ref_dft(&a, last, true);
        for (int64_t k = 0; k < ref_size(&a); k++) a.v[k] = creal(a.v[k]);
        return a;
    }
    for (int i = 0; i < naxes; i++) {
        a = ref_resize(a, axes[i], n[i]);
        if (kind == R2C)
            for (int64_t k = 0; k < ref_size(&a); k++) a.v[k] = creal(a.v[k]);
    }
    for (int i = 0; i < naxes; i++) ref_dft(&a, axes[i], inverse);
    if (kind == R2C) a = ref_resize(a, last, n[naxes - 1] / 2 + 1);
    return a;
}

/* Random complex data (real: imaginary parts zero) as a reference and as an array. */
static ref random_ref(const int64_t *shape, int nd, bool real)
{
    ref r = {.nd = nd};
    memcpy(r.shape, shape, (size_t)nd * sizeof *shape);
    r.v = malloc((size_t)ref_size(&r) * sizeof(dcx) + 1);
    for (int64_t k = 0; k < ref_size(&r); k++)
        r.v[k] = test_uniform(-1, 1) + (real ? 0 : I * test_uniform(-1, 1));
    return r;
}

static ref ref_copy(const ref *a)
{
    ref r = *a;
    r.v = malloc((size_t)ref_size(a) * sizeof(dcx) + 1);
    memcpy(r.v, a->v, (size_t)ref_size(a) * sizeof(dcx));
    return r;
}

static pn_array *to_array(const ref *a, pn_dtype t)
{
    int64_t n = ref_size(a);
    float *f = malloc((size_t)(2 * n + 1) * sizeof *f);
    for (int64_t k = 0; k < n; k++) f[2 * k] = (float)creal(a->v[k]), f[2 * k + 1] = (float)cimag(a->v[k]);
    pn_array *x;
    if (t == PN_COMPLEX64) {
        x = pn_array_from_data(f, a->shape, a->nd, PN_COMPLEX64);
    } else {
        for (int64_t k = 0; k < n; k++) f[k] = f[2 * k];
        x = pn_astype(pn_array_from_data(f, a->shape, a->nd, PN_FLOAT32), t);
    }
    free(f);
    return x;
}

/* Reads a (complex64 or float32, evaluated) into complex doubles (malloc'd). */
static dcx *read_array(pn_array *a)
{
    int64_t n = pn_size(a);
    dcx *v = malloc((size_t)(n + 1) * sizeof(dcx));
    float *f = malloc((size_t)(2 * n + 2) * sizeof *f);
    bool cpx = pn_array_dtype(a) == PN_COMPLEX64;
    pn_array *b = cpx ? a : pn_astype(a, PN_FLOAT32);
    if (!b || pn_to_host(b, f, (size_t)(2 * n + 2) * sizeof *f)) {
        free(f);
        free(v);
        return NULL;
    }
    for (int64_t k = 0; k < n; k++) v[k] = cpx ? f[2 * k] + I * f[2 * k + 1] : f[k];
    free(f);
    return v;
}

/* Checks a against the reference (consumed): shape, dtype, and max |a - ref| <= tol max |ref|
 * (norm-wise relative error, what an FFT's rounding bounds). Returns the error. */
static double check_ref(const char *what, pn_array *a, ref want, pn_dtype dtype, double tol)
{
    double err = -1;
    if (!a) {
        test_fail(__FILE__, __LINE__, "%s: NULL result: %s", what, pn_last_error_message());
        pn_clear_error();
        free(want.v);
        return err;
    }
    bool shape_ok = pn_ndim(a) == want.nd && pn_array_dtype(a) == dtype;
    for (int d = 0; shape_ok && d < want.nd; d++) shape_ok = pn_shape(a)[d] == want.shape[d];
    CHECK_MSG(shape_ok, "%s: wrong shape or dtype (%s)", what, pn_dtype_name(pn_array_dtype(a)));
    dcx *v = shape_ok ? read_array(a) : NULL;
    if (v) {
        double scale = 0, e = 0;
        for (int64_t k = 0; k < ref_size(&want); k++) {
            scale = fmax(scale, cabs(want.v[k]));
            e = fmax(e, cabs(v[k] - want.v[k]));
        }
        err = scale > 0 ? e / scale : e;
        CHECK_MSG(err <= tol, "%s: relative error %.3g > %.3g", what, err, tol);
    }
    free(v);
    free(want.v);
    return err;
}

#define TOL 4e-6

/* ───────────────────────────── lengths ───────────────────────────── */

/* Every length 1..80, primes and composites past the generic radix (Bluestein), powers. */
TEST(fft_lengths)
{
    pn_scope_push();
    int64_t extra[] = {81, 97, 121, 125, 127, 128, 243, 256, 257, 343, 500, 1000, 1009, 1024,
                       2187, 4093, 4096};
    int nx = (int)(sizeof extra / sizeof *extra);
    double worst = 0;
    for (int i = 0; i < 80 + nx; i++) {
        int64_t n = i < 80 ? i + 1 : extra[i - 80];
        if (test_quick() && n > 1100) continue;
        int64_t shape[2] = {2, n};
        ref x = random_ref(shape, 2, false);
        pn_array *a = to_array(&x, PN_COMPLEX64);
        char what[64];
        int ax = 1;
        for (int inv = 0; inv < 2; inv++) {
            snprintf(what, sizeof what, "%s n=%lld", inv ? "ifft" : "fft", (long long)n);
            pn_array *r = inv ? pn_fft_ifft(a, 0, -1) : pn_fft_fft(a, 0, -1);
            worst = fmax(worst, check_ref(what, r, ref_fftn(ref_copy(&x), C2C, inv, &ax, 1, &n),
                                          PN_COMPLEX64, TOL));
        }
        free(x.v);
        /* the real transforms on real data */
        ref xr = random_ref(shape, 2, true);
        pn_array *ar = to_array(&xr, PN_FLOAT32);
        snprintf(what, sizeof what, "rfft n=%lld", (long long)n);
        check_ref(what, pn_fft_rfft(ar, 0, -1), ref_fftn(ref_copy(&xr), R2C, false, &ax, 1, &n),
                  PN_COMPLEX64, TOL);
        int64_t hshape[2] = {2, n / 2 + 1};
        ref h = random_ref(hshape, 2, false);
        pn_array *ah = to_array(&h, PN_COMPLEX64);
        snprintf(what, sizeof what, "irfft n=%lld", (long long)n);
        check_ref(what, pn_fft_irfft(ah, n, -1), ref_fftn(h, C2R, true, &ax, 1, &n), PN_FLOAT32,
                  TOL);
        free(xr.v);
    }
    printf("  worst relative error (c2c, n <= 4096): %.3g\n", worst);
    pn_scope_pop();
}

/* Long transforms: 2^16, 3^10, a prime near 2^16 (Bluestein over 2^18), checked at sampled
 * bins with a direct float64 sum. */
TEST(fft_long)
{
    pn_scope_push();
    int64_t lens[] = {65536, 59049, 65521, 1 << 20};
    int nl = test_quick() ? 2 : 4;
    for (int li = 0; li < nl; li++) {
        int64_t n = lens[li], shape[1] = {n};
        ref x = random_ref(shape, 1, false);
        pn_array *a = to_array(&x, PN_COMPLEX64);
        pn_array *r = pn_fft_fft(a, 0, 0);
        dcx *v = r ? read_array(r) : NULL;
        CHECK_OK(v);
        double err = 0, scale = sqrt((double)n); /* |X_k| ~ sqrt(n) for unit random data */
        dcx *w = roots(n, false);
        for (int s = 0; v && s < 24; s++) {
            int64_t k = s < 4 ? s : (int64_t)(test_rand_u64() % (uint64_t)n);
            dcx sum = 0;
            for (int64_t j = 0, jk = 0; j < n; j++, jk = jk + k >= n ? jk + k - n : jk + k)
                sum += x.v[j] * w[jk];
            err = fmax(err, cabs(v[k] - sum) / scale);
        }
        CHECK_MSG(err < 2e-5, "fft n=%lld: sampled relative error %.3g", (long long)n, err);
        printf("  n=%lld sampled error %.3g (relative to sqrt(n))\n", (long long)n, err);
        /* and back */
        pn_array *b = pn_fft_ifft(r, 0, 0);
        dcx *back = b ? read_array(b) : NULL;
        double e2 = 0;
        for (int64_t j = 0; back && j < n; j++) e2 = fmax(e2, cabs(back[j] - x.v[j]));
        CHECK_MSG(back && e2 < 1e-5, "ifft(fft) n=%lld: error %.3g", (long long)n, e2);
        free(v);
        free(w);
        free(back);
        free(x.v);
    }
    pn_scope_pop();
}

/* ───────────────────────────── axes, sizes, layouts ───────────────────────────── */

typedef pn_array *(*nfn)(pn_array *, const int64_t *, const int *, int);

TEST(fftn_axes_and_sizes)
{
    pn_scope_push();
    int64_t shape[3] = {4, 6, 5};
    struct {
        int naxes, axes[3];
        int64_t s[3];
        bool has_s;
    } cases[] = {
        {3, {0, 1, 2}, {0}, false}, {1, {1}, {0}, false},      {2, {0, 2}, {0}, false},
        {2, {2, 0}, {0}, false},    {2, {1, 2}, {7, 3}, true}, {2, {-1, 0}, {8, 2}, true},
        {1, {0}, {9}, true},        {3, {2, 1, 0}, {3, 7, 4}, true},
    };
    nfn fns[4] = {pn_fft_fftn, pn_fft_ifftn, pn_fft_rfftn, pn_fft_irfftn};
    const char *names[4] = {"fftn", "ifftn", "rfftn", "irfftn"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int f = 0; f < 4; f++) {
            int kind = f < 2 ? C2C : f == 2 ? R2C : C2R;
            bool inv = f == 1 || f == 3;
            int na = cases[c].naxes, ax[3];
            int64_t n[3];
            for (int i = 0; i < na; i++) {
                ax[i] = cases[c].axes[i] < 0 ? cases[c].axes[i] + 3 : cases[c].axes[i];
                n[i] = cases[c].has_s ? cases[c].s[i] : shape[ax[i]];
            }
            if (!cases[c].has_s && kind == C2R) n[na - 1] = 2 * (shape[ax[na - 1]] - 1);
            ref x = random_ref(shape, 3, kind == R2C);
            pn_array *a = to_array(&x, kind == R2C ? PN_FLOAT32 : PN_COMPLEX64);
            char what[96];
            snprintf(what, sizeof what, "%s case %zu", names[f], c);
            pn_array *r = fns[f](a, cases[c].has_s ? cases[c].s : NULL, cases[c].axes, na);
            check_ref(what, r, ref_fftn(x, kind, inv, ax, na, n),
                      kind == C2R ? PN_FLOAT32 : PN_COMPLEX64, TOL);
        }
    /* defaults: every axis; s without axes means the last len(s) axes */
    ref x = random_ref(shape, 3, false);
    pn_array *a = to_array(&x, PN_COMPLEX64);
    int all[3] = {0, 1, 2}, last2[2] = {1, 2};
    int64_t s2[2] = {3, 8};
    check_ref("fftn all axes", pn_fft_fftn(a, NULL, NULL, 0),
              ref_fftn(ref_copy(&x), C2C, false, all, 3, shape), PN_COMPLEX64, TOL);
    check_ref("ifftn s only", pn_fft_ifftn(a, s2, NULL, 2),
              ref_fftn(ref_copy(&x), C2C, true, last2, 2, s2), PN_COMPLEX64, TOL);
    int64_t d2[2] = {6, 5};
    check_ref("fft2 default axes", pn_fft_fft2(a, NULL, NULL),
              ref_fftn(ref_copy(&x), C2C, false, last2, 2, d2), PN_COMPLEX64, TOL);
    check_ref("ifft2 default axes", pn_fft_ifft2(a, NULL, NULL),
              ref_fftn(ref_copy(&x), C2C, true, last2, 2, d2), PN_COMPLEX64, TOL);
    int a01[2] = {0, 1};
    int64_t d01[2] = {5, 4};
    check_ref("rfft2 axes s", pn_fft_rfft2(pn_real(a), d01, a01),
              ref_fftn(ref_copy(&x), R2C, false, a01, 2, d01), PN_COMPLEX64, TOL);
    int64_t irs[2] = {6, 2 * (5 - 1)};
    check_ref("irfft2 default", pn_fft_irfft2(a, NULL, NULL),
              ref_fftn(ref_copy(&x), C2R, true, last2, 2, irs), PN_FLOAT32, TOL);
    free(x.v);
    pn_scope_pop();
}

/* Batched 1-d transforms along every axis, n padding and truncation, odd irfft sizes. */
TEST(fft_1d_axes_and_n)
{
    pn_scope_push();
    int64_t shape[3] = {3, 10, 7};
    for (int axis = -3; axis < 3; axis++)
        for (int k = 0; k < 4; k++) {
            int64_t n = k == 0 ? 0 : k == 1 ? 4 : k == 2 ? 13 : 1;
            int ax = axis < 0 ? axis + 3 : axis;
            int64_t nn = n ? n : shape[ax];
            ref x = random_ref(shape, 3, false);
            pn_array *a = to_array(&x, PN_COMPLEX64);
            char what[64];
            snprintf(what, sizeof what, "fft axis %d n %lld", axis, (long long)n);
            check_ref(what, pn_fft_fft(a, n, axis), ref_fftn(ref_copy(&x), C2C, false, &ax, 1, &nn),
                      PN_COMPLEX64, TOL);
            snprintf(what, sizeof what, "ifft axis %d n %lld", axis, (long long)n);
            check_ref(what, pn_fft_ifft(a, n, axis), ref_fftn(ref_copy(&x), C2C, true, &ax, 1, &nn),
                      PN_COMPLEX64, TOL);
            snprintf(what, sizeof what, "rfft axis %d n %lld", axis, (long long)n);
            check_ref(what, pn_fft_rfft(a, n, axis), ref_fftn(ref_copy(&x), R2C, false, &ax, 1, &nn),
                      PN_COMPLEX64, TOL);
            int64_t nr = n ? n : 2 * (shape[ax] - 1);
            snprintf(what, sizeof what, "irfft axis %d n %lld", axis, (long long)n);
            check_ref(what, pn_fft_irfft(a, n, axis), ref_fftn(x, C2R, true, &ax, 1, &nr),
                      PN_FLOAT32, TOL);
        }
    pn_scope_pop();
}

/* Views: transposed, sliced with steps, broadcast inputs; and dtype promotion. */
TEST(fft_views_and_dtypes)
{
    pn_scope_push();
    int64_t shape[2] = {12, 9};
    ref x = random_ref(shape, 2, false);
    pn_array *a = to_array(&x, PN_COMPLEX64);
    /* transpose: (9, 12) */
    ref xt = {.nd = 2, .shape = {9, 12}};
    xt.v = malloc(108 * sizeof(dcx));
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 9; j++) xt.v[j * 12 + i] = x.v[i * 9 + j];
    int ax1 = 1, ax0 = 0, both[2] = {0, 1};
    int64_t n12 = 12, n9 = 9, nb[2] = {9, 12};
    pn_array *at = pn_transpose(a, NULL, 0);
    check_ref("fft of a transpose", pn_fft_fft(at, 0, -1),
              ref_fftn(ref_copy(&xt), C2C, false, &ax1, 1, &n12), PN_COMPLEX64, TOL);
    check_ref("fft2 of a transpose", pn_fft_fftn(at, NULL, both, 2),
              ref_fftn(ref_copy(&xt), C2C, false, both, 2, nb), PN_COMPLEX64, TOL);
    check_ref("rfft of a transpose axis 0", pn_fft_rfft(pn_real(at), 0, 0),
              ref_fftn(ref_copy(&xt), R2C, false, &ax0, 1, &n9), PN_COMPLEX64, TOL);
    free(xt.v);
    /* a[::3, 1::2]: (4, 4) */
    ref xs = {.nd = 2, .shape = {4, 4}};
    xs.v = malloc(16 * sizeof(dcx));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) xs.v[i * 4 + j] = x.v[(3 * i) * 9 + 1 + 2 * j];
    pn_array *as = pn_slice(a, (int64_t[]){0, 1}, (int64_t[]){12, 9}, (int64_t[]){3, 2}, 2);
    int64_t n44[2] = {4, 4};
    check_ref("fftn of a strided slice", pn_fft_fftn(as, NULL, NULL, 0),
              ref_fftn(ref_copy(&xs), C2C, false, both, 2, n44), PN_COMPLEX64, TOL);
    check_ref("irfftn of a strided slice", pn_fft_irfftn(as, NULL, NULL, 0),
              ref_fftn(xs, C2R, true, both, 2, (int64_t[]){4, 6}), PN_FLOAT32, TOL);
    /* broadcast rows: every row the same */
    ref row = {.nd = 2, .shape = {5, 9}};
    row.v = malloc(45 * sizeof(dcx));
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 9; j++) row.v[i * 9 + j] = x.v[j];
    pn_array *ab = pn_broadcast_to(pn_slice(a, (int64_t[]){0, 0}, (int64_t[]){1, 9}, NULL, 2),
                                   (int64_t[]){5, 9}, 2);
    check_ref("fft2 of a broadcast", pn_fft_fft2(ab, NULL, NULL),
              ref_fftn(row, C2C, false, both, 2, (int64_t[]){5, 9}), PN_COMPLEX64, TOL);
    /* real inputs of other dtypes: complex64 results (no complex128) */
    pn_dtype dts[4] = {PN_FLOAT32, PN_FLOAT64, PN_INT32, PN_FLOAT16};
    ref xr = random_ref(shape, 2, true);
    for (int i = 0; i < 12 * 9; i++) xr.v[i] = round(4 * creal(xr.v[i])); /* exact in ints */
    for (int d = 0; d < 4; d++) {
        pn_array *ar = to_array(&xr, dts[d]);
        char what[64];
        snprintf(what, sizeof what, "fft of %s", pn_dtype_name(dts[d]));
        check_ref(what, pn_fft_fft(ar, 0, -1), ref_fftn(ref_copy(&xr), C2C, false, &ax1, 1, &n9),
                  PN_COMPLEX64, TOL);
        snprintf(what, sizeof what, "irfft of %s", pn_dtype_name(dts[d]));
        int64_t n16 = 16;
        check_ref(what, pn_fft_irfft(ar, 0, -1), ref_fftn(ref_copy(&xr), C2R, true, &ax1, 1, &n16),
                  PN_FLOAT32, TOL);
    }
    /* rfft of complex input drops the imaginary part */
    ref xre = ref_copy(&x);
    for (int i = 0; i < 12 * 9; i++) xre.v[i] = creal(xre.v[i]);
    check_ref("rfft of complex", pn_fft_rfft(a, 0, -1), ref_fftn(xre, R2C, false, &ax1, 1, &n9),
              PN_COMPLEX64, TOL);
    /* empty batch */
    pn_array *e = pn_fft_fft(pn_zeros((int64_t[]){0, 8}, 2, PN_COMPLEX64), 0, -1);
    CHECK_OK(e);
    CHECK(e && pn_size(e) == 0 && pn_eval(&e, 1) == 0);
    free(xr.v);
    free(x.v);
    pn_scope_pop();
}

/* fftshift / ifftshift against index arithmetic; dtypes kept. */
TEST(fft_shift)
{
    pn_scope_push();
    int64_t shape[2] = {5, 8};
    pn_array *a = test_random_array(shape, 2, PN_FLOAT32, -1, 1);
    double *v = test_to_f64(a);
    int axes_sets[3][2] = {{0, 1}, {1, 0}, {-2, 0}};
    int nsets[3] = {2, 1, 1};
    for (int inv = 0; inv < 2; inv++)
        for (int s = -1; s < 3; s++) {
            const int *axes = s < 0 ? NULL : axes_sets[s];
            int na = s < 0 ? 0 : nsets[s];
            pn_array *r = inv ? pn_fft_ifftshift(a, axes, na) : pn_fft_fftshift(a, axes, na);
            double want[40];
            bool sh[2] = {s < 0 || s == 0, s < 0 || s == 0 || s == 1};
            if (s == 1) sh[0] = false, sh[1] = true;
            if (s == 2) sh[0] = true, sh[1] = false;
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 8; j++) {
                    /* out[i] = in[(i - shift) mod n], shift n/2 or (n+1)/2 */
                    int si = sh[0] ? (inv ? 3 : 2) : 0, sj = sh[1] ? 4 : 0;
                    want[i * 8 + j] = v[((i - si + 5) % 5) * 8 + (j - sj + 8) % 8];
                }
            char what[48];
            snprintf(what, sizeof what, "%s set %d", inv ? "ifftshift" : "fftshift", s);
            test_check_values(what, r, shape, 2, PN_FLOAT32, want, 0, 0);
        }
    /* ifftshift undoes fftshift on odd lengths */
    pn_array *b = pn_fft_ifftshift(pn_fft_fftshift(a, NULL, 0), NULL, 0);
    test_check_values("ifftshift(fftshift)", b, shape, 2, PN_FLOAT32, v, 0, 0);
    CHECK_ERR(pn_fft_fftshift(a, (int[]){2}, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_ifftshift(a, (int[]){-3}, 1), PN_ERR_INVALID_ARGUMENT);
    pn_array *z = pn_fft_fftshift(pn_scalar(3, PN_FLOAT32), NULL, 0);
    CHECK(z && pn_item(z) == 3);
    free(v);
    pn_scope_pop();
}

TEST(fft_errors)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){4, 6}, 2, PN_FLOAT32, -1, 1);
    CHECK_ERR(pn_fft_fft(pn_scalar(1, PN_FLOAT32), 0, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_irfftn(pn_scalar(1, PN_FLOAT32), NULL, NULL, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fft(a, 0, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_rfft(a, 0, -3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fft(a, -4, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fftn(a, (int64_t[]){4, 0}, (int[]){0, 1}, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fftn(a, NULL, (int[]){0, -2}, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fft2(a, NULL, (int[]){1, 1}), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_rfftn(a, (int64_t[]){2, 2, 2}, NULL, 3), PN_ERR_INVALID_ARGUMENT);
    /* irfft of a length-1 axis asks for n = 0 */
    CHECK_ERR(pn_fft_irfft(pn_zeros((int64_t[]){3, 1}, 2, PN_COMPLEX64), 0, -1),
              PN_ERR_INVALID_ARGUMENT);
    /* sticky NULL */
    CHECK_ERR(pn_fft_fft(NULL, 0, -1), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── derivatives ───────────────────────────── */

typedef struct tr_ctx {
    int kind;
    bool inverse;
    int naxes, axes[3];
    int64_t s[3];
    bool has_s;
} tr_ctx;

static pn_array *apply(const tr_ctx *c, pn_array *x)
{
    const int64_t *s = c->has_s ? c->s : NULL;
    if (c->kind == C2C)
        return c->inverse ? pn_fft_ifftn(x, s, c->axes, c->naxes) : pn_fft_fftn(x, s, c->axes, c->naxes);
    return c->kind == R2C ? pn_fft_rfftn(x, s, c->axes, c->naxes) : pn_fft_irfftn(x, s, c->axes, c->naxes);
}

static int tr_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = apply(ctx, in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* The transform is real-linear: in MLX's convention (transforms.h, pnT_vjp), the cotangent of
 * a complex input element is dL/dRe + i dL/dIm for L(x) = Re sum(conj(cot) f(x)) (real
 * inputs: dL/dRe). The reference evaluates L on each unit input (and i times it) through the
 * float64 transform. */
TEST(fft_vjp_jvp_vmap)
{
    pn_scope_push();
    tr_ctx cases[] = {
        {C2C, false, 1, {1}, {0}, false},        {C2C, true, 1, {0}, {0}, false},
        {C2C, false, 2, {0, 1}, {5, 3}, true},   {C2C, true, 2, {1, 0}, {0}, false},
        {R2C, false, 1, {1}, {0}, false},        {R2C, false, 1, {1}, {7}, true},
        {R2C, false, 2, {1, 0}, {0}, false},     {C2R, true, 1, {1}, {0}, false},
        {C2R, true, 1, {1}, {7}, true},          {C2R, true, 1, {1}, {8}, true},
        {C2R, true, 2, {0, 1}, {0}, false},      {C2R, true, 2, {1, 0}, {4, 5}, true},
    };
    int64_t shape[2] = {3, 6};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        tr_ctx *c = &cases[ci];
        bool real_in = c->kind == R2C;
        ref x = random_ref(shape, 2, real_in);
        pn_array *a = to_array(&x, real_in ? PN_FLOAT32 : PN_COMPLEX64);
        int ax[3];
        int64_t n[3];
        for (int i = 0; i < c->naxes; i++) {
            ax[i] = c->axes[i];
            n[i] = c->has_s ? c->s[i] : shape[ax[i]];
        }
        if (!c->has_s && c->kind == C2R) n[c->naxes - 1] = 2 * (shape[ax[c->naxes - 1]] - 1);
        ref y = ref_fftn(ref_copy(&x), c->kind, c->inverse, ax, c->naxes, n);
        ref u = random_ref(y.shape, y.nd, c->kind == C2R);
        pn_array *ua = to_array(&u, c->kind == C2R ? PN_FLOAT32 : PN_COMPLEX64);
        /* reference vjp */
        int64_t nx = ref_size(&x);
        ref g = ref_copy(&x);
        for (int64_t e = 0; e < nx; e++) {
            dcx parts[2];
            for (int im = 0; im < (real_in ? 1 : 2); im++) {
                ref b = ref_copy(&x);
                memset(b.v, 0, (size_t)nx * sizeof(dcx));
                b.v[e] = im ? I : 1;
                ref fb = ref_fftn(b, c->kind, c->inverse, ax, c->naxes, n);
                double L = 0;
                for (int64_t k = 0; k < ref_size(&fb); k++) L += creal(conj(u.v[k]) * fb.v[k]);
                parts[im] = L;
                free(fb.v);
            }
            g.v[e] = real_in ? parts[0] : parts[0] + I * parts[1];
        }
        pn_closure *f = pn_closure_new(tr_call, c, NULL);
        pn_array *outs[1], *vjps[1] = {NULL}, *jvps[1] = {NULL};
        int nout = 0;
        char what[64];
        snprintf(what, sizeof what, "vjp case %zu", ci);
        if (pn_vjp(f, 1, &a, 1, &ua, &nout, outs, vjps) == 0)
            check_ref(what, vjps[0], g, real_in ? PN_FLOAT32 : PN_COMPLEX64, 2e-5);
        else
            test_fail(__FILE__, __LINE__, "%s failed: %s", what, pn_last_error_message()), free(g.v);
        /* jvp: the transform of the tangent */
        ref t = random_ref(shape, 2, real_in);
        pn_array *ta = to_array(&t, real_in ? PN_FLOAT32 : PN_COMPLEX64);
        snprintf(what, sizeof what, "jvp case %zu", ci);
        if (pn_jvp(f, 1, &a, &ta, &nout, outs, jvps) == 0)
            check_ref(what, jvps[0], ref_fftn(t, c->kind, c->inverse, ax, c->naxes, n),
                      c->kind == C2R ? PN_FLOAT32 : PN_COMPLEX64, 2e-5);
        else
            test_fail(__FILE__, __LINE__, "%s failed: %s", what, pn_last_error_message()), free(t.v);
        /* vmap over a new leading axis of 2 (the axes shift) */
        pn_array *pair[2] = {a, pn_multiply(a, pn_weak_float(-0.5))};
        pn_array *st = pn_stack(pair, 2, 0);
        int in_ax = 0;
        pn_closure *vf = pn_vmap(f, &in_ax, 1, NULL, 1);
        pn_array *vo[1] = {NULL};
        snprintf(what, sizeof what, "vmap case %zu", ci);
        if (vf && pn_closure_call(vf, 1, &st, &nout, vo) == 0) {
            pn_array *want[2] = {apply(c, pair[0]), apply(c, pair[1])};
            pn_array *w = pn_stack(want, 2, 0);
            dcx *gv = read_array(vo[0]), *wv = w ? read_array(w) : NULL;
            double e = 0, sc = 0;
            for (int64_t k = 0; gv && wv && k < pn_size(w); k++)
                e = fmax(e, cabs(gv[k] - wv[k])), sc = fmax(sc, cabs(wv[k]));
            CHECK_MSG(gv && wv && pn_size(vo[0]) == pn_size(w) && e <= 1e-6 * sc,
                      "%s: error %.3g", what, e / sc);
            free(gv);
            free(wv);
        } else {
            test_fail(__FILE__, __LINE__, "%s failed: %s", what, pn_last_error_message());
        }
        pn_closure_release(vf);
        pn_closure_release(f);
        free(x.v);
        free(y.v);
        free(u.v);
    }
    pn_scope_pop();
}

/* A real-valued loss through rfft and irfft: the gradient of sum(irfft(rfft(x) * h)) (a
 * circular convolution) against finite differences in float64 of the reference. */
typedef struct conv_ctx {
    pn_array *h;
} conv_ctx;

static int conv_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    conv_ctx *c = ctx;
    pn_array *y = pn_fft_irfft(pn_multiply(pn_fft_rfft(in[0], 0, -1), c->h), 7, -1);
    out[0] = pn_sum(pn_multiply(y, y), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(fft_grad_of_real_loss)
{
    pn_scope_push();
    int64_t n = 7, hs[1] = {4};
    ref h = random_ref(hs, 1, false);
    ref x = random_ref(&n, 1, true);
    conv_ctx c = {to_array(&h, PN_COMPLEX64)};
    pn_closure *f = pn_closure_new(conv_call, &c, NULL);
    pn_closure *gf = pn_grad(f, NULL, 1);
    pn_array *a = to_array(&x, PN_FLOAT32), *g[1] = {NULL};
    int nout = 0;
    CHECK(pn_closure_call(gf, 1, &a, &nout, g) == 0);
    dcx *gv = g[0] ? read_array(g[0]) : NULL;
    /* loss(x) in float64 */
    int ax = 0;
    for (int e = 0; gv && e < n; e++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            ref xp = ref_copy(&x);
            xp.v[e] += sgn ? -1e-6 : 1e-6;
            ref X = ref_fftn(xp, R2C, false, &ax, 1, &n);
            for (int k = 0; k < 4; k++) X.v[k] *= h.v[k];
            ref y = ref_fftn(X, C2R, true, &ax, 1, &n);
            L[sgn] = 0;
            for (int k = 0; k < n; k++) L[sgn] += creal(y.v[k]) * creal(y.v[k]);
            free(y.v);
        }
        double fd = (L[0] - L[1]) / 2e-6;
        CHECK_MSG(fabs(creal(gv[e]) - fd) <= 1e-4 * fmax(1, fabs(fd)),
                  "grad element %d: %.8g vs finite differences %.8g", e, creal(gv[e]), fd);
    }
    free(gv);
    pn_closure_release(gf);
    pn_closure_release(f);
    free(h.v);
    free(x.v);
    pn_scope_pop();
}
