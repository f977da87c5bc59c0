/* test_linalg_decomp.c — the decompositions of src/ops/linalg_decomp.c (svd, eigh, eigvalsh,
 * eig, eigvals, lu, lu_factor, qr, pinv): reconstructions and orthogonality checked in float64
 * against the input, values against a cyclic Jacobi eigen solver and a Householder QR written
 * here, batched and strided inputs, errors, and derivatives (vjp and jvp) against finite
 * differences. */
#include "core/core.h"
#include "harness.h"

#include <complex.h>
#include <string.h>

/* ───────────────────────────── float64 references ───────────────────────────── */

/* Eigenvalues (ascending) of the symmetric n x n matrix a (row-major) by cyclic Jacobi
 * rotations. */
static void jacobi_eigvals(int64_t n, const double *a, double *w)
{
    double *m = malloc(sizeof(double) * (size_t)(n * n));
    memcpy(m, a, sizeof(double) * (size_t)(n * n));
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) off += m[p * n + q] * m[p * n + q];
        if (off < 1e-30) break;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double apq = m[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int64_t k = 0; k < n; k++) { /* columns p, q */
                    double kp = m[k * n + p], kq = m[k * n + q];
                    m[k * n + p] = c * kp - s * kq;
                    m[k * n + q] = s * kp + c * kq;
                }
                for (int64_t k = 0; k < n; k++) { /* rows p, q */
                    double pk = m[p * n + k], qk = m[q * n + k];
                    m[p * n + k] = c * pk - s * qk;
                    m[q * n + k] = s * pk + c * qk;
                }
            }
    }
    for (int64_t i = 0; i < n; i++) w[i] = m[i * n + i];
    for (int64_t i = 1; i < n; i++) /* insertion sort */
        for (int64_t j = i; j > 0 && w[j] < w[j - 1]; j--) {
            double t = w[j];
            w[j] = w[j - 1], w[j - 1] = t;
        }
    free(m);
}

/* Singular values (descending, k = min(m, n)) of a (m x n): square roots of the eigenvalues
 * of the smaller Gram matrix. */
static void ref_singular_values(int64_t m, int64_t n, const double *a, double *s)
{
    int64_t k = m < n ? m : n;
    double *g = calloc((size_t)(k * k), sizeof(double)), *w = malloc(sizeof(double) * (size_t)k);
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t l = 0; l < (m < n ? n : m); l++)
                g[i * k + j] += m < n ? a[i * n + l] * a[j * n + l] : a[l * n + i] * a[l * n + j];
    jacobi_eigvals(k, g, w);
    for (int64_t i = 0; i < k; i++) s[i] = sqrt(w[k - 1 - i] > 0 ? w[k - 1 - i] : 0);
    free(g), free(w);
}

/* c (m x n) = a (m x l) @ b (l x n), optionally with a transposed (stored l x m). */
static void dmatmul(int64_t m, int64_t l, int64_t n, const double *a, bool ta, const double *b,
                    double *c)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t p = 0; p < l; p++) acc += (ta ? a[p * m + i] : a[i * l + p]) * b[p * n + j];
            c[i * n + j] = acc;
        }
}

/* max |x - y| over n entries, relative to max(1, max |y|). */
static double rel_err(const double *x, const double *y, int64_t n)
{
    double e = 0, s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(y[i]) > s) s = fabs(y[i]);
        if (!(fabs(x[i] - y[i]) <= e)) e = fabs(x[i] - y[i]);
    }
    return e / s;
}

/* Whether q (r x c, c <= r) has orthonormal columns within tol. */
static bool orthonormal_columns(int64_t r, int64_t c, const double *q, double tol)
{
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++) {
            double d = 0;
            for (int64_t k = 0; k < r; k++) d += q[k * c + i] * q[k * c + j];
            if (fabs(d - (i == j)) > tol) return false;
        }
    return true;
}

static double dtol(pn_dtype t) { return t == PN_FLOAT64 ? 1e-10 : 2e-5; }

static pn_array *rnd(const int64_t *shape, int nd, pn_dtype t)
{
    return test_random_array(shape, nd, t, -1, 1);
}

typedef struct mat_case {
    int nd;
    int64_t shape[4];
} mat_case;

static int64_t batch_of(const mat_case *c)
{
    int64_t b = 1;
    for (int d = 0; d < c->nd - 2; d++) b *= c->shape[d];
    return b;
}

/* ───────────────────────────── SVD ───────────────────────────── */

static void check_svd(const char *name, pn_array *a, pn_dtype t, double ref_tol)
{
    int nd = pn_ndim(a);
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    int64_t nb = pn_size(a) / (m * n);
    pn_array *usv[3] = {NULL, NULL, NULL}, *s_only = NULL;
    CHECK(pn_linalg_svd(a, true, usv) == 0);
    CHECK(pn_linalg_svd(a, false, &s_only) == 0);
    CHECK_OK(usv[0]);
    if (!usv[0] || !s_only) return;
    CHECK(pn_array_dtype(usv[0]) == t && pn_array_dtype(usv[1]) == t && pn_array_dtype(s_only) == t);
    CHECK(pn_ndim(usv[0]) == nd && pn_dim(usv[0], -1) == m && pn_dim(usv[0], -2) == m);
    CHECK(pn_ndim(usv[1]) == nd - 1 && pn_dim(usv[1], -1) == k);
    CHECK(pn_dim(usv[2], -1) == n && pn_dim(usv[2], -2) == n);
    double *A = test_to_f64(a), *U = test_to_f64(usv[0]), *S = test_to_f64(usv[1]);
    double *Vt = test_to_f64(usv[2]), *S1 = test_to_f64(s_only);
    double tol = dtol(t) * 10;
    double *rec = malloc(sizeof(double) * (size_t)(m * n)), *us = malloc(sizeof(double) * (size_t)(m * k));
    double *ref = malloc(sizeof(double) * (size_t)(k ? k : 1)), *vt = malloc(sizeof(double) * (size_t)(n * n));
    for (int64_t b = 0; A && U && S && Vt && S1 && b < nb; b++) {
        const double *Ab = A + b * m * n, *Ub = U + b * m * m, *Sb = S + b * k, *Vb = Vt + b * n * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) us[i * k + j] = Ub[i * m + j] * Sb[j];
        dmatmul(m, k, n, us, false, Vb, rec);
        CHECK_MSG(rel_err(rec, Ab, m * n) < tol, "%s: U S Vt != a (batch %lld, err %g)", name,
                  (long long)b, rel_err(rec, Ab, m * n));
        CHECK_MSG(orthonormal_columns(m, m, Ub, tol), "%s: U is not orthogonal", name);
        for (int64_t i = 0; i < n; i++) /* Vt's rows orthonormal: V = Vt^T's columns */
            for (int64_t j = 0; j < n; j++) vt[j * n + i] = Vb[i * n + j];
        CHECK_MSG(orthonormal_columns(n, n, vt, tol), "%s: Vt is not orthogonal", name);
        ref_singular_values(m, n, Ab, ref);
        CHECK_MSG(rel_err(Sb, ref, k) < ref_tol, "%s: singular values differ from the reference", name);
        CHECK_MSG(rel_err(S1 + b * k, Sb, k) < tol, "%s: compute_uv=false values differ", name);
        for (int64_t i = 1; i < k; i++) CHECK(Sb[i] <= Sb[i - 1]);
    }
    free(A), free(U), free(S), free(Vt), free(S1), free(rec), free(us), free(ref), free(vt);
}

TEST(svd_reconstructs_and_matches_reference)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {4, 4}}, {2, {6, 3}}, {2, {3, 6}}, {3, {3, 5, 4}},
                              {4, {2, 2, 3, 3}}, {2, {1, 5}}, {2, {1, 1}}, {3, {40, 6, 6}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            pn_scope_push();
            char name[64];
            snprintf(name, sizeof name, "svd case %zu %s", c, pn_dtype_name(dts[d]));
            check_svd(name, rnd(cases[c].shape, cases[c].nd, dts[d]), dts[d], dtol(dts[d]) * 10);
            pn_scope_pop();
        }
    /* a larger matrix (one at a time through OpenBLAS's threads) and a strided input */
    int64_t big = test_quick() ? 40 : 160;
    check_svd("svd large", rnd((int64_t[]){big, big - 7}, 2, PN_FLOAT64), PN_FLOAT64, 1e-8);
    check_svd("svd transposed", pn_swapaxes(rnd((int64_t[]){2, 5, 3}, 3, PN_FLOAT64), -1, -2), PN_FLOAT64, 1e-9);
    pn_scope_pop();
}

TEST(svd_empty_and_rank_deficient)
{
    pn_scope_push();
    pn_array *usv[3];
    CHECK(pn_linalg_svd(pn_zeros((int64_t[]){0, 3}, 2, PN_FLOAT32), true, usv) == 0);
    if (usv[2]) {
        double one[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
        test_check_values("svd empty Vt", usv[2], (int64_t[]){3, 3}, 2, PN_FLOAT32, one, 0, 0);
        CHECK(pn_size(usv[1]) == 0 && pn_size(usv[0]) == 0);
    }
    CHECK(pn_linalg_svd(pn_zeros((int64_t[]){0, 4, 4}, 3, PN_FLOAT64), true, usv) == 0);
    CHECK(usv[1] && pn_eval(usv, 3) == 0);
    /* rank 1: one nonzero singular value (the Gram-matrix reference is only good to
     * sqrt(eps) for the zero ones) */
    pn_array *u = rnd((int64_t[]){5, 1}, 2, PN_FLOAT64), *v = rnd((int64_t[]){1, 4}, 2, PN_FLOAT64);
    check_svd("svd rank 1", pn_matmul(u, v), PN_FLOAT64, 1e-7);
    pn_scope_pop();
}

/* ───────────────────────────── Eigh ───────────────────────────── */

static void check_eigh(const char *name, pn_array *a, char uplo, pn_dtype t)
{
    int64_t n = pn_dim(a, -1), nb = pn_size(a) / (n * n);
    pn_array *w = NULL, *v = NULL;
    CHECK(pn_linalg_eigh(a, uplo, &w, &v) == 0);
    pn_array *w2 = pn_linalg_eigvalsh(a, uplo);
    CHECK_OK(w);
    CHECK_OK(w2);
    if (!w || !w2) return;
    CHECK(pn_array_dtype(w) == t && pn_array_dtype(v) == t && pn_ndim(w) == pn_ndim(a) - 1);
    double *A = test_to_f64(a), *W = test_to_f64(w), *V = test_to_f64(v), *W2 = test_to_f64(w2);
    double *sym = malloc(sizeof(double) * (size_t)(n * n)), *ref = malloc(sizeof(double) * (size_t)n);
    double *av = malloc(sizeof(double) * (size_t)(n * n)), *vw = malloc(sizeof(double) * (size_t)(n * n));
    double tol = dtol(t) * 10;
    for (int64_t b = 0; A && W && V && W2 && b < nb; b++) {
        /* the symmetric matrix the chosen triangle describes */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                bool lower = i >= j;
                int64_t r = (lower == (uplo == 'L')) ? i : j, c = r == i ? j : i;
                sym[i * n + j] = A[b * n * n + r * n + c];
            }
        jacobi_eigvals(n, sym, ref);
        const double *Wb = W + b * n, *Vb = V + b * n * n;
        CHECK_MSG(rel_err(Wb, ref, n) < tol, "%s: eigenvalues differ from Jacobi", name);
        CHECK_MSG(rel_err(W2 + b * n, ref, n) < tol, "%s: eigvalsh differs from Jacobi", name);
        CHECK_MSG(orthonormal_columns(n, n, Vb, tol), "%s: V is not orthogonal", name);
        dmatmul(n, n, n, sym, false, Vb, av);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) vw[i * n + j] = Vb[i * n + j] * Wb[j];
        CHECK_MSG(rel_err(av, vw, n * n) < tol, "%s: A V != V diag(w)", name);
    }
    free(A), free(W), free(V), free(W2), free(sym), free(ref), free(av), free(vw);
}

TEST(eigh_matches_jacobi_and_reconstructs)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {5, 5}}, {3, {3, 4, 4}}, {2, {1, 1}}, {3, {50, 3, 3}}, {4, {2, 1, 6, 6}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++)
            for (int up = 0; up < 2; up++) {
                pn_scope_push();
                char name[64];
                snprintf(name, sizeof name, "eigh case %zu %s %c", c, pn_dtype_name(dts[d]), up ? 'U' : 'L');
                /* not symmetric: only the named triangle may be read */
                check_eigh(name, rnd(cases[c].shape, cases[c].nd, dts[d]), up ? 'U' : 'L', dts[d]);
                pn_scope_pop();
            }
    int64_t big = test_quick() ? 30 : 120;
    pn_array *x = rnd((int64_t[]){big, big}, 2, PN_FLOAT64);
    check_eigh("eigh large", x, 'L', PN_FLOAT64);
    check_eigh("eigh transposed", pn_swapaxes(rnd((int64_t[]){2, 4, 4}, 3, PN_FLOAT64), -1, -2), 'U', PN_FLOAT64);
    pn_scope_pop();
}

/* ───────────────────────────── Eig ───────────────────────────── */

/* The complex elements of a complex64 array (malloc'd). */
static double complex *to_c128(pn_array *z)
{
    double *re = test_to_f64(pn_real(z)), *im = test_to_f64(pn_imag(z));
    double complex *out = NULL;
    if (re && im) {
        out = malloc(sizeof(double complex) * (size_t)(pn_size(z) ? pn_size(z) : 1));
        for (int64_t i = 0; i < pn_size(z); i++) out[i] = re[i] + I * im[i];
    }
    free(re), free(im);
    return out;
}

TEST(eig_satisfies_av_equals_vw)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {4, 4}}, {2, {7, 7}}, {3, {3, 5, 5}}, {2, {1, 1}}, {3, {30, 3, 3}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    bool complex_seen = false;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            pn_scope_push();
            pn_array *a = rnd(cases[c].shape, cases[c].nd, dts[d]), *w = NULL, *v = NULL;
            CHECK(pn_linalg_eig(a, &w, &v) == 0);
            pn_array *w2 = pn_linalg_eigvals(a);
            CHECK_OK(w2);
            if (!w || !w2) {
                pn_scope_pop();
                continue;
            }
            CHECK(pn_array_dtype(w) == PN_COMPLEX64 && pn_array_dtype(v) == PN_COMPLEX64);
            int64_t n = cases[c].shape[cases[c].nd - 1], nb = batch_of(&cases[c]);
            double *A = test_to_f64(a);
            double complex *W = to_c128(w), *V = to_c128(v), *W2 = to_c128(w2);
            for (int64_t b = 0; A && W && V && W2 && b < nb; b++) {
                const double *Ab = A + b * n * n;
                const double complex *Wb = W + b * n, *Vb = V + b * n * n;
                double scale = 1, err = 0, nerr = 0, werr = 0;
                for (int64_t j = 0; j < n; j++) {
                    double norm = 0;
                    for (int64_t i = 0; i < n; i++) {
                        double complex av = 0;
                        for (int64_t l = 0; l < n; l++) av += Ab[i * n + l] * Vb[l * n + j];
                        double e = cabs(av - Vb[i * n + j] * Wb[j]);
                        if (e > err) err = e;
                        norm += creal(Vb[i * n + j] * conj(Vb[i * n + j]));
                    }
                    if (fabs(sqrt(norm) - 1) > nerr) nerr = fabs(sqrt(norm) - 1);
                    if (cabs(Wb[j] - W2[b * n + j]) > werr) werr = cabs(Wb[j] - W2[b * n + j]);
                    if (cabs(Wb[j]) > scale) scale = cabs(Wb[j]);
                    complex_seen |= cimag(Wb[j]) != 0;
                }
                CHECK_MSG(err < 1e-5 * scale, "eig case %zu: A V != V diag(w) (err %g)", c, err);
                CHECK_MSG(nerr < 1e-5, "eig case %zu: eigenvectors are not unit norm", c);
                CHECK_MSG(werr < 1e-5 * scale, "eig case %zu: eigvals differs from eig", c);
            }
            free(A), free(W), free(V), free(W2);
            pn_scope_pop();
        }
    CHECK_MSG(complex_seen, "eig: no complex pair in any random matrix");
    /* a symmetric matrix has the real spectrum Jacobi finds */
    pn_array *x = rnd((int64_t[]){5, 5}, 2, PN_FLOAT64);
    pn_array *s = pn_add(x, pn_swapaxes(x, 0, 1));
    double *S = test_to_f64(s), ref[5];
    double complex *W = to_c128(pn_linalg_eigvals(s));
    if (S && W) {
        jacobi_eigvals(5, S, ref);
        double got[5];
        for (int i = 0; i < 5; i++) {
            got[i] = creal(W[i]);
            CHECK(fabs(cimag(W[i])) < 1e-6);
        }
        for (int i = 1; i < 5; i++)
            for (int j = i; j > 0 && got[j] < got[j - 1]; j--) {
                double t = got[j];
                got[j] = got[j - 1], got[j - 1] = t;
            }
        CHECK(rel_err(got, ref, 5) < 1e-5);
    }
    free(S), free(W);
    pn_scope_pop();
}

/* ───────────────────────────── LU ───────────────────────────── */

TEST(lu_reconstructs_with_row_indices)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {4, 4}}, {2, {6, 3}}, {2, {3, 6}}, {3, {3, 5, 5}}, {2, {1, 1}}, {3, {40, 4, 4}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            pn_scope_push();
            pn_dtype t = dts[d];
            pn_array *a = rnd(cases[c].shape, cases[c].nd, t), *p, *l, *u, *lu, *piv;
            CHECK(pn_linalg_lu(a, &p, &l, &u) == 0);
            CHECK(pn_linalg_lu_factor(a, &lu, &piv) == 0);
            if (!p || !lu) {
                pn_scope_pop();
                continue;
            }
            int64_t m = cases[c].shape[cases[c].nd - 2], n = cases[c].shape[cases[c].nd - 1];
            int64_t k = m < n ? m : n, nb = batch_of(&cases[c]);
            CHECK(pn_array_dtype(p) == PN_UINT32 && pn_array_dtype(piv) == PN_UINT32);
            CHECK(pn_dim(l, -1) == k && pn_dim(l, -2) == m && pn_dim(u, -2) == k && pn_dim(u, -1) == n);
            CHECK(pn_dim(p, -1) == m && pn_dim(piv, -1) == k && pn_array_dtype(lu) == t);
            double *A = test_to_f64(a), *P = test_to_f64(p), *L = test_to_f64(l), *U = test_to_f64(u);
            double *LU = test_to_f64(lu), *PV = test_to_f64(piv);
            double *prod = malloc(sizeof(double) * (size_t)(m * n)), *perm = malloc(sizeof(double) * (size_t)(m * n));
            for (int64_t b = 0; A && P && L && U && LU && PV && b < nb; b++) {
                const double *Lb = L + b * m * k, *Ub = U + b * k * n, *Pb = P + b * m;
                dmatmul(m, k, n, Lb, false, Ub, prod);
                bool seen[64] = {false}, perm_ok = true, tri_ok = true, packed_ok = true;
                for (int64_t i = 0; i < m; i++) {
                    int64_t r = (int64_t)Pb[i];
                    perm_ok &= r >= 0 && r < m && !seen[r];
                    if (r >= 0 && r < m) seen[r] = true;
                    for (int64_t j = 0; j < n; j++) perm[i * n + j] = r >= 0 && r < m ? prod[r * n + j] : NAN;
                }
                CHECK_MSG(perm_ok, "lu case %zu: p is not a permutation", c);
                CHECK_MSG(rel_err(perm, A + b * m * n, m * n) < dtol(t) * 10,
                          "lu case %zu %s: l[p] @ u != a", c, pn_dtype_name(t));
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < k; j++) {
                        double x = Lb[i * k + j];
                        tri_ok &= j > i ? x == 0 : j == i ? x == 1 : fabs(x) <= 1 + 1e-6;
                        if (j < i) packed_ok &= x == LU[b * m * n + i * n + j];
                    }
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < n; j++) {
                        tri_ok &= j >= i || Ub[i * n + j] == 0;
                        if (j >= i) packed_ok &= Ub[i * n + j] == LU[b * m * n + i * n + j];
                    }
                CHECK_MSG(tri_ok, "lu case %zu: l or u has the wrong shape of triangle", c);
                CHECK_MSG(packed_ok, "lu case %zu: lu_factor's lu differs from l and u", c);
                /* the pivots replayed as swaps give the inverse of the row indices */
                int64_t rows[64];
                for (int64_t i = 0; i < m; i++) rows[i] = i;
                for (int64_t i = 0; i < k; i++) {
                    int64_t q = (int64_t)PV[b * k + i], tmp = rows[i];
                    CHECK(q >= i && q < m);
                    if (q < i || q >= m) break;
                    rows[i] = rows[q], rows[q] = tmp;
                }
                for (int64_t i = 0; i < m; i++) CHECK((int64_t)Pb[rows[i]] == i);
            }
            free(A), free(P), free(L), free(U), free(LU), free(PV), free(prod), free(perm);
            pn_scope_pop();
        }
    /* a singular matrix still factors (a zero on U's diagonal), as in MLX */
    pn_array *p, *l, *u;
    pn_array *z = pn_zeros((int64_t[]){3, 3}, 2, PN_FLOAT32);
    CHECK(pn_linalg_lu(z, &p, &l, &u) == 0);
    CHECK(u && pn_eval(&u, 1) == 0);
    pn_scope_pop();
}

/* ───────────────────────────── QR ───────────────────────────── */

/* Householder QR of a (m x n, row-major) in float64 with LAPACK's conventions: the reflector of
 * column j maps x = r[j:, j] to beta e_0 with beta = -sign(x_0) |x| (sign(0) = +1), and is the
 * identity when x[1:] is zero. q (m x k), r (k x n), k = min(m, n). */
static void ref_qr(int64_t m, int64_t n, const double *a, double *q, double *r)
{
    int64_t k = m < n ? m : n;
    double *w = malloc(sizeof(double) * (size_t)(m * n)), *v = malloc(sizeof(double) * (size_t)(m * k));
    double *qq = malloc(sizeof(double) * (size_t)(m * k));
    memcpy(w, a, sizeof(double) * (size_t)(m * n));
    memset(v, 0, sizeof(double) * (size_t)(m * k));
    for (int64_t j = 0; j < k; j++) {
        double tail = 0, x0 = w[j * n + j];
        for (int64_t i = j + 1; i < m; i++) tail += w[i * n + j] * w[i * n + j];
        if (tail == 0) continue; /* H_j = I */
        double beta = -(x0 < 0 ? -1 : 1) * sqrt(x0 * x0 + tail), vn = 0;
        for (int64_t i = j; i < m; i++) v[i * k + j] = w[i * n + j] - (i == j ? beta : 0);
        for (int64_t i = j; i < m; i++) vn += v[i * k + j] * v[i * k + j];
        for (int64_t c = 0; c < n; c++) { /* w = (I - 2 v v^T / v^T v) w */
            double d = 0;
            for (int64_t i = j; i < m; i++) d += v[i * k + j] * w[i * n + c];
            for (int64_t i = j; i < m; i++) w[i * n + c] -= 2 * d / vn * v[i * k + j];
        }
    }
    for (int64_t i = 0; i < m; i++) /* Q = H_0 ... H_{k-1} I[:, :k], the last reflector first */
        for (int64_t c = 0; c < k; c++) qq[i * k + c] = i == c;
    for (int64_t j = k - 1; j >= 0; j--) {
        double vn = 0;
        for (int64_t i = j; i < m; i++) vn += v[i * k + j] * v[i * k + j];
        if (vn == 0) continue;
        for (int64_t c = 0; c < k; c++) {
            double d = 0;
            for (int64_t i = j; i < m; i++) d += v[i * k + j] * qq[i * k + c];
            for (int64_t i = j; i < m; i++) qq[i * k + c] -= 2 * d / vn * v[i * k + j];
        }
    }
    memcpy(q, qq, sizeof(double) * (size_t)(m * k));
    for (int64_t i = 0; i < k; i++)
        for (int64_t c = 0; c < n; c++) r[i * n + c] = c < i ? 0 : w[i * n + c];
    free(w), free(v), free(qq);
}

static void check_qr(const char *name, pn_array *a, pn_dtype t)
{
    int nd = pn_ndim(a);
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n, nb = pn_size(a) / (m * n);
    pn_array *q = NULL, *r = NULL;
    CHECK(pn_linalg_qr(a, &q, &r) == 0);
    CHECK_OK(q);
    if (!q || !r) return;
    CHECK(pn_array_dtype(q) == t && pn_array_dtype(r) == t && pn_ndim(q) == nd && pn_ndim(r) == nd);
    CHECK(pn_dim(q, -2) == m && pn_dim(q, -1) == k && pn_dim(r, -2) == k && pn_dim(r, -1) == n);
    for (int d = 0; d < nd - 2; d++) CHECK(pn_dim(q, d) == pn_dim(a, d) && pn_dim(r, d) == pn_dim(a, d));
    double *A = test_to_f64(a), *Q = test_to_f64(q), *R = test_to_f64(r);
    double *rec = malloc(sizeof(double) * (size_t)(m * n)), *rq = malloc(sizeof(double) * (size_t)(m * k));
    double *rr = malloc(sizeof(double) * (size_t)(k * n));
    double tol = dtol(t) * 10;
    for (int64_t b = 0; A && Q && R && b < nb; b++) {
        const double *Ab = A + b * m * n, *Qb = Q + b * m * k, *Rb = R + b * k * n;
        dmatmul(m, k, n, Qb, false, Rb, rec);
        CHECK_MSG(rel_err(rec, Ab, m * n) < tol, "%s: Q R != a (batch %lld, err %g)", name,
                  (long long)b, rel_err(rec, Ab, m * n));
        CHECK_MSG(orthonormal_columns(m, k, Qb, tol), "%s: Q's columns are not orthonormal", name);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < i && j < n; j++) CHECK_MSG(Rb[i * n + j] == 0, "%s: R not upper triangular", name);
        ref_qr(m, n, Ab, rq, rr);
        CHECK_MSG(rel_err(Qb, rq, m * k) < tol, "%s: Q differs from the Householder reference (signs?)", name);
        CHECK_MSG(rel_err(Rb, rr, k * n) < tol, "%s: R differs from the Householder reference", name);
    }
    free(A), free(Q), free(R), free(rec), free(rq), free(rr);
}

/* No columns: the LU node's row indices (its third output) are the identity order per
 * matrix; lu and the pivots have no elements. */
TEST(lu_of_empty_matrices)
{
    pn_scope_push();
    pn_array *lu = NULL, *piv = NULL;
    CHECK(pn_linalg_lu_factor(pn_zeros((int64_t[]){2, 3, 0}, 3, PN_FLOAT32), &lu, &piv) == 0);
    pn_array *rows = lu && lu->node ? pnC_node_output(lu->node, 2) : NULL;
    double ref[6] = {0, 1, 2, 0, 1, 2};
    CHECK_OK(rows);
    if (rows) test_check_values("lu empty rows", rows, (int64_t[]){2, 3}, 2, PN_UINT32, ref, 0, 0);
    CHECK(lu && piv && pn_size(lu) == 0 && pn_size(piv) == 0);
    pn_scope_pop();
}

TEST(qr_reconstructs_and_matches_reference)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {4, 4}}, {2, {6, 3}}, {2, {3, 6}}, {3, {3, 5, 4}}, {4, {2, 2, 3, 3}},
                              {2, {1, 5}}, {2, {5, 1}}, {2, {1, 1}}, {3, {40, 6, 6}}, {3, {3, 4, 7}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            pn_scope_push();
            char name[64];
            snprintf(name, sizeof name, "qr case %zu %s", c, pn_dtype_name(dts[d]));
            check_qr(name, rnd(cases[c].shape, cases[c].nd, dts[d]), dts[d]);
            pn_scope_pop();
        }
    int64_t big = test_quick() ? 40 : 150;
    check_qr("qr large", rnd((int64_t[]){big, big - 9}, 2, PN_FLOAT64), PN_FLOAT64);
    check_qr("qr large wide", rnd((int64_t[]){big - 20, big}, 2, PN_FLOAT64), PN_FLOAT64);
    /* strided inputs: a transposed batch and a column slice */
    check_qr("qr transposed", pn_swapaxes(rnd((int64_t[]){2, 5, 3}, 3, PN_FLOAT64), -1, -2), PN_FLOAT64);
    check_qr("qr sliced", pn_slice(rnd((int64_t[]){6, 8}, 2, PN_FLOAT32), (int64_t[]){0, 1},
                                   (int64_t[]){6, 8}, (int64_t[]){1, 2}, 2), PN_FLOAT32);
    /* rank deficient: a zero column (that reflector is the identity) */
    pn_array *z = pn_multiply(rnd((int64_t[]){5, 3}, 2, PN_FLOAT64),
                              pn_array_from_data((double[]){1, 0, 1}, (int64_t[]){3}, 1, PN_FLOAT64));
    check_qr("qr zero column", z, PN_FLOAT64);
    /* empty matrices: Q (m, 0) and R (0, n), or the batch is empty */
    const mat_case empty[] = {{2, {0, 3}}, {2, {3, 0}}, {3, {0, 4, 2}}};
    for (int e = 0; e < 3; e++) {
        pn_array *q = NULL, *r = NULL;
        CHECK(pn_linalg_qr(pn_zeros(empty[e].shape, empty[e].nd, PN_FLOAT32), &q, &r) == 0);
        pn_array *both[2] = {q, r};
        CHECK(q && r && pn_eval(both, 2) == 0 && pn_size(q) == 0 && pn_size(r) == 0);
        int64_t m = empty[e].shape[empty[e].nd - 2], n = empty[e].shape[empty[e].nd - 1];
        CHECK(q && r && pn_dim(q, -1) == (m < n ? m : n) && pn_dim(r, -1) == n);
    }
    pn_scope_pop();
}

/* ───────────────────────────── pinv ───────────────────────────── */

/* The four Penrose conditions for x = pinv(a) of one (m x n) matrix. */
static void check_penrose(const char *name, const double *a, const double *x, int64_t m, int64_t n,
                          double tol)
{
    double *ax = malloc(sizeof(double) * (size_t)(m * m)), *xa = malloc(sizeof(double) * (size_t)(n * n));
    double *axa = malloc(sizeof(double) * (size_t)(m * n)), *xax = malloc(sizeof(double) * (size_t)(n * m));
    dmatmul(m, n, m, a, false, x, ax);
    dmatmul(n, m, n, x, false, a, xa);
    dmatmul(m, m, n, ax, false, a, axa);
    dmatmul(n, n, m, xa, false, x, xax);
    CHECK_MSG(rel_err(axa, a, m * n) < tol, "%s: a x a != a", name);
    CHECK_MSG(rel_err(xax, x, n * m) < tol, "%s: x a x != x", name);
    bool sym = true;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) sym &= fabs(ax[i * m + j] - ax[j * m + i]) < tol;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) sym &= fabs(xa[i * n + j] - xa[j * n + i]) < tol;
    CHECK_MSG(sym, "%s: a x or x a is not symmetric", name);
    free(ax), free(xa), free(axa), free(xax);
}

TEST(pinv_satisfies_penrose_conditions)
{
    pn_scope_push();
    const mat_case cases[] = {{2, {4, 4}}, {2, {6, 3}}, {2, {3, 6}}, {3, {3, 5, 2}}};
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            pn_scope_push();
            pn_array *a = rnd(cases[c].shape, cases[c].nd, dts[d]), *x = pn_linalg_pinv(a);
            CHECK_OK(x);
            int64_t m = cases[c].shape[cases[c].nd - 2], n = cases[c].shape[cases[c].nd - 1];
            CHECK(x && pn_dim(x, -1) == m && pn_dim(x, -2) == n && pn_array_dtype(x) == dts[d]);
            double *A = test_to_f64(a), *X = test_to_f64(x);
            for (int64_t b = 0; A && X && b < batch_of(&cases[c]); b++)
                check_penrose("pinv", A + b * m * n, X + b * m * n, m, n, dts[d] == PN_FLOAT64 ? 1e-9 : 1e-3);
            free(A), free(X);
            pn_scope_pop();
        }
    /* rank deficient (a repeated column): the tiny singular value is cut off */
    pn_array *a = rnd((int64_t[]){5, 3}, 2, PN_FLOAT64);
    pn_array *cols[2] = {a, pn_slice(a, (int64_t[]){0, 0}, (int64_t[]){5, 1}, NULL, 2)};
    pn_array *r = pn_concatenate(cols, 2, 1), *x = pn_linalg_pinv(r);
    double *R = test_to_f64(r), *X = test_to_f64(x);
    if (R && X) check_penrose("pinv rank deficient", R, X, 5, 4, 1e-9);
    double big = 0;
    for (int i = 0; X && i < 20; i++) big = fabs(X[i]) > big ? fabs(X[i]) : big;
    CHECK_MSG(big < 10, "pinv rank deficient: the cutoff did not drop the zero singular value");
    free(R), free(X);
    pn_scope_pop();
}

/* ───────────────────────────── errors ───────────────────────────── */

static pn_array *svd_s(pn_array *a)
{
    pn_array *s = NULL;
    return pn_linalg_svd(a, false, &s) ? NULL : s;
}
static pn_array *svd_u(pn_array *a)
{
    pn_array *o[3];
    return pn_linalg_svd(a, true, o) ? NULL : o[0];
}
static pn_array *eigh_w(pn_array *a, char uplo)
{
    pn_array *w, *v;
    return pn_linalg_eigh(a, uplo, &w, &v) ? NULL : w;
}
static pn_array *eig_w(pn_array *a)
{
    pn_array *w, *v;
    return pn_linalg_eig(a, &w, &v) ? NULL : w;
}
static pn_array *lu_p(pn_array *a)
{
    pn_array *p, *l, *u;
    return pn_linalg_lu(a, &p, &l, &u) ? NULL : p;
}
static pn_array *luf_lu(pn_array *a)
{
    pn_array *lu, *piv;
    return pn_linalg_lu_factor(a, &lu, &piv) ? NULL : lu;
}
static pn_array *qr_q(pn_array *a)
{
    pn_array *q, *r;
    return pn_linalg_qr(a, &q, &r) ? NULL : q;
}
static pn_array *qr_r(pn_array *a)
{
    pn_array *q, *r;
    return pn_linalg_qr(a, &q, &r) ? NULL : r;
}

TEST(errors)
{
    pn_scope_push();
    pn_array *i32 = test_random_array((int64_t[]){3, 3}, 2, PN_INT32, -5, 5);
    pn_array *f16 = test_random_array((int64_t[]){3, 3}, 2, PN_FLOAT16, -1, 1);
    pn_array *vec = rnd((int64_t[]){4}, 1, PN_FLOAT32), *rect = rnd((int64_t[]){3, 4}, 2, PN_FLOAT32);
    pn_array *sq = rnd((int64_t[]){3, 3}, 2, PN_FLOAT32);
    pn_array *bad[] = {i32, f16, vec};
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(svd_s(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(svd_u(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(eigh_w(bad[i], 'L'), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(pn_linalg_eigvalsh(bad[i], 'L'), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(eig_w(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(pn_linalg_eigvals(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(lu_p(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(luf_lu(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(pn_linalg_pinv(bad[i]), PN_ERR_INVALID_ARGUMENT);
        CHECK_ERR(qr_q(bad[i]), PN_ERR_INVALID_ARGUMENT);
    }
    pn_clear_error();
    CHECK(!qr_r(i32) && strstr(pn_last_error_message(), "[linalg::qr] Arrays must have type "
                               "float32 or float64. Received array with type int32."));
    pn_clear_error();
    CHECK(!qr_q(vec) && strstr(pn_last_error_message(), "[linalg::qr] Arrays must have >= 2 "
                               "dimensions. Received array with 1 dimensions."));
    pn_array *q = NULL, *r = NULL;
    CHECK(pn_linalg_qr(NULL, &q, &r) == -1 && !q && !r);
    pn_clear_error();
    /* MLX's wording */
    pn_clear_error();
    CHECK(!svd_s(i32) && strstr(pn_last_error_message(), "[linalg::svd] Arrays must have type "
                                "float32 or float64. Received array with type int32."));
    pn_clear_error();
    CHECK(!eigh_w(vec, 'L') && strstr(pn_last_error_message(), "[linalg::eigh] Arrays must have >= 2 "
                                      "dimensions. Received array with 1 dimensions."));
    pn_clear_error();
    CHECK_ERR(eigh_w(rect, 'L'), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_eigvalsh(rect, 'U'), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(eig_w(rect), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_eigvals(rect), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(eigh_w(sq, 'X'), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_eigvalsh(NULL, 'L'), PN_ERR_INVALID_ARGUMENT);
    /* rectangular LU and SVD are fine */
    CHECK_OK(lu_p(rect));
    CHECK_OK(svd_u(rect));
    /* no convergence: NaN input makes LAPACK fail, reported at evaluation */
    pn_array *nan = pn_full((int64_t[]){3, 3}, 2, pn_scalar(NAN, PN_FLOAT64), PN_FLOAT64);
    pn_array *w = eigh_w(nan, 'L');
    pn_clear_error();
    if (w && pn_eval(&w, 1) != 0) CHECK(pn_last_error() == PN_ERR_BACKEND);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── derivatives ───────────────────────────── */

typedef enum {
    G_SVD_S, G_SVD_S_ONLY, G_SVD_U, G_SVD_V, G_SVD_FULL_U, G_SVD_REC,
    G_EIGH_W, G_EIGH_V, G_EIGVALSH, G_LU_PACKED, G_LU_L, G_LU_U, G_PINV, G_QR_Q, G_QR_R
} gfn;

/* Sign-invariant functions of the factors: Uk diag(c) Uk^T does not depend on the signs. */
static pn_array *spread(pn_array *q, pn_array *qt)
{
    int64_t k = pn_dim(q, -1);
    pn_array *c = pn_arange(1, (double)k + 1, 1, pn_array_dtype(q));
    return pn_matmul(pn_multiply(q, c), qt);
}

static pn_array *g_fn(void *ctx, pn_array *const *in)
{
    gfn f = *(gfn *)ctx;
    pn_array *a = in[0], *o[3] = {NULL, NULL, NULL};
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    int nd = pn_ndim(a);
    int64_t lo[4] = {0}, hi[4];
    memcpy(hi, pn_shape(a), sizeof(int64_t) * (size_t)nd);
    pn_array *sym = NULL;
    if (f == G_EIGH_W || f == G_EIGH_V || f == G_EIGVALSH) sym = pn_add(a, pn_swapaxes(a, -1, -2));
    switch (f) {
    case G_SVD_S: return pn_linalg_svd(a, true, o) ? NULL : o[1];
    case G_SVD_S_ONLY: return pn_linalg_svd(a, false, o) ? NULL : o[0];
    case G_SVD_U:
    case G_SVD_V:
    case G_SVD_FULL_U:
    case G_SVD_REC: {
        if (pn_linalg_svd(a, true, o)) return NULL;
        if (f == G_SVD_FULL_U) return spread(o[0], pn_swapaxes(o[0], -1, -2));
        if (f == G_SVD_REC) {
            hi[nd - 2] = m, hi[nd - 1] = k;
            pn_array *uk = pn_slice(o[0], lo, hi, NULL, nd);
            hi[nd - 2] = k, hi[nd - 1] = n;
            pn_array *vk = pn_slice(o[2], lo, hi, NULL, nd);
            return pn_matmul(pn_multiply(uk, pn_expand_dims(pn_square(o[1]), (int[]){-2}, 1)), vk);
        }
        if (f == G_SVD_U) {
            hi[nd - 1] = k;
            pn_array *uk = pn_slice(o[0], lo, hi, NULL, nd);
            return spread(uk, pn_swapaxes(uk, -1, -2));
        }
        hi[nd - 2] = k;
        pn_array *vk = pn_slice(o[2], lo, hi, NULL, nd);
        return spread(pn_swapaxes(vk, -1, -2), vk);
    }
    case G_EIGH_W: return eigh_w(sym, 'U');
    case G_EIGVALSH: return pn_linalg_eigvalsh(sym, 'L');
    case G_EIGH_V: {
        pn_array *w, *v;
        if (pn_linalg_eigh(sym, 'L', &w, &v)) return NULL;
        return spread(v, pn_swapaxes(v, -1, -2));
    }
    case G_LU_PACKED: return luf_lu(a);
    case G_LU_L:
    case G_LU_U: {
        pn_array *p, *l, *u;
        if (pn_linalg_lu(a, &p, &l, &u)) return NULL;
        return f == G_LU_L ? l : u;
    }
    case G_PINV: return pn_linalg_pinv(a);
    case G_QR_Q: return qr_q(a);
    case G_QR_R: return qr_r(a);
    }
    return NULL;
}

static int lu_closure(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    *nout = 1;
    out[0] = luf_lu(in[0]);
    return out[0] ? 0 : -1;
}

TEST(gradients)
{
    pn_scope_push();
    struct {
        gfn f;
        const char *name;
        int nd;
        int64_t shape[3];
    } cases[] = {
        {G_SVD_S, "svd S square", 2, {4, 4}},       {G_SVD_S, "svd S tall", 2, {5, 3}},
        {G_SVD_S, "svd S wide batched", 3, {2, 3, 5}}, {G_SVD_S_ONLY, "svd S only", 2, {4, 3}},
        {G_SVD_U, "svd U square", 2, {4, 4}},       {G_SVD_U, "svd U tall", 2, {5, 3}},
        {G_SVD_U, "svd U wide", 2, {3, 5}},         {G_SVD_V, "svd V square", 2, {4, 4}},
        {G_SVD_V, "svd V tall", 2, {5, 3}},         {G_SVD_V, "svd V wide batched", 3, {2, 3, 5}},
        {G_SVD_FULL_U, "svd full U", 2, {4, 4}},    {G_SVD_REC, "svd U S^2 Vt", 2, {4, 3}},
        {G_EIGH_W, "eigh w", 2, {4, 4}},            {G_EIGH_V, "eigh V", 2, {4, 4}},
        {G_EIGH_V, "eigh V batched", 3, {2, 3, 3}}, {G_EIGVALSH, "eigvalsh", 2, {5, 5}},
        {G_LU_PACKED, "lu_factor", 2, {4, 4}},      {G_LU_L, "lu L batched", 3, {2, 3, 3}},
        {G_LU_U, "lu U", 2, {4, 4}},                {G_PINV, "pinv square", 2, {3, 3}},
        {G_PINV, "pinv tall", 2, {4, 3}},           {G_PINV, "pinv wide", 2, {2, 4}},
        {G_QR_Q, "qr Q square", 2, {4, 4}},         {G_QR_R, "qr R square", 2, {4, 4}},
        {G_QR_Q, "qr Q tall", 2, {5, 3}},           {G_QR_R, "qr R tall", 2, {5, 3}},
        {G_QR_Q, "qr Q wide", 2, {3, 5}},           {G_QR_R, "qr R wide", 2, {3, 5}},
        {G_QR_Q, "qr Q batched", 3, {2, 4, 3}},     {G_QR_R, "qr R wide batched", 3, {2, 2, 4}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pn_scope_push();
        pn_array *a = rnd(cases[i].shape, cases[i].nd, PN_FLOAT64);
        CHECK_MSG(test_gradcheck(cases[i].name, g_fn, &cases[i].f, 1, &a, 1e-5), "gradcheck %s",
                  cases[i].name);
        pn_scope_pop();
    }
    /* non-square LU has no derivative: a clear error */
    pn_array *r = rnd((int64_t[]){3, 4}, 2, PN_FLOAT64), *ct = pn_ones((int64_t[]){3, 4}, 2, PN_FLOAT64);
    pn_closure *cl = pn_closure_new(lu_closure, NULL, NULL);
    pn_array *outs[1] = {NULL}, *grads[1] = {NULL};
    int nout = 0;
    pn_clear_error();
    CHECK(pn_vjp(cl, 1, &r, 1, &ct, &nout, outs, grads) != 0);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT && strstr(pn_last_error_message(), "non-square"));
    pn_clear_error();
    pn_closure_release(cl);
    pn_scope_pop();
}

/* vmap over the batch axis in the middle equals the batched op. */
static int vm_svd(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    *nout = 1;
    out[0] = svd_s(in[0]);
    return out[0] ? 0 : -1;
}
static int vm_qr(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    *nout = 2;
    return pn_linalg_qr(in[0], &out[0], &out[1]);
}

TEST(vmap_moves_the_batch_axis)
{
    pn_scope_push();
    pn_array *a = rnd((int64_t[]){4, 3, 5}, 3, PN_FLOAT64);
    pn_closure *f = pn_closure_new(vm_svd, NULL, NULL);
    pn_closure *vf = pn_vmap(f, (int[]){1}, 1, (int[]){0}, 1);
    pn_array *y = NULL;
    int nout = 0;
    CHECK(vf && pn_closure_call(vf, 1, &a, &nout, &y) == 0);
    pn_array *ref = svd_s(pn_moveaxis(a, 1, 0));
    double *r = test_to_f64(ref);
    if (y && r) test_check_values("vmap svd", y, (int64_t[]){3, 4}, 2, PN_FLOAT64, r, 1e-12, 1e-12);
    free(r);
    pn_closure_release(vf);
    pn_closure_release(f);
    /* QR's two outputs, batch axis 2 of 3 */
    pn_array *b = rnd((int64_t[]){5, 3, 2}, 3, PN_FLOAT64);
    f = pn_closure_new(vm_qr, NULL, NULL);
    vf = pn_vmap(f, (int[]){2}, 1, (int[]){0, 0}, 2);
    pn_array *qr[2] = {NULL, NULL}, *ref_q, *ref_r;
    CHECK(vf && pn_closure_call(vf, 1, &b, &nout, qr) == 0 && nout == 2);
    CHECK(pn_linalg_qr(pn_moveaxis(b, 2, 0), &ref_q, &ref_r) == 0);
    double *rq = test_to_f64(ref_q), *rr = test_to_f64(ref_r);
    if (qr[0] && rq) test_check_values("vmap qr Q", qr[0], (int64_t[]){2, 5, 3}, 3, PN_FLOAT64, rq, 1e-12, 1e-12);
    if (qr[1] && rr) test_check_values("vmap qr R", qr[1], (int64_t[]){2, 3, 3}, 3, PN_FLOAT64, rr, 1e-12, 1e-12);
    free(rq), free(rr);
    pn_closure_release(vf);
    pn_closure_release(f);
    pn_scope_pop();
}
