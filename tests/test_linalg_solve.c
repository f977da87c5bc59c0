/* test_linalg_solve.c — the SolveTriangular and Cholesky primitives (src/ops/linalg_solve.c)
 * and the functions over them (inv, solve, solve_triangular, tri_inv, cholesky_inv, cholesky)
 * beyond the small cases of test_compose.c: larger matrices against float64 elimination done
 * here, singular matrices as errors at evaluation (as MLX raises), non-positive-definite
 * Cholesky as MLX leaves it, vmap, half-precision inputs, empty shapes. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* A well-conditioned random n x n float64 matrix (diagonally dominant), batch copies. */
static pn_array *well_conditioned(int64_t batch, int64_t n, pn_dtype t)
{
    int64_t sh[3] = {batch, n, n};
    pn_array *a = test_random_array(sh, 3, PN_FLOAT64, -1, 1);
    pn_array *d = pn_multiply(pn_eye(n, n, 0, PN_FLOAT64), pn_scalar((double)n, PN_FLOAT64));
    return pn_astype(pn_add(a, d), t);
}

/* x = a^-1 b in float64 by Gaussian elimination with partial pivoting (a n x n, b n x k). */
static void ref_solve(const double *a_in, const double *b_in, int64_t n, int64_t k, double *x)
{
    double *a = malloc(sizeof(double) * (size_t)(n * n));
    memcpy(a, a_in, sizeof(double) * (size_t)(n * n));
    memcpy(x, b_in, sizeof(double) * (size_t)(n * k));
    for (int64_t c = 0; c < n; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[p * n + c])) p = r;
        for (int64_t j = 0; j < n; j++) {
            double t = a[c * n + j];
            a[c * n + j] = a[p * n + j], a[p * n + j] = t;
        }
        for (int64_t j = 0; j < k; j++) {
            double t = x[c * k + j];
            x[c * k + j] = x[p * k + j], x[p * k + j] = t;
        }
        for (int64_t r = c + 1; r < n; r++) {
            double f = a[r * n + c] / a[c * n + c];
            for (int64_t j = c; j < n; j++) a[r * n + j] -= f * a[c * n + j];
            for (int64_t j = 0; j < k; j++) x[r * k + j] -= f * x[c * k + j];
        }
    }
    for (int64_t r = n - 1; r >= 0; r--)
        for (int64_t j = 0; j < k; j++) {
            double s = x[r * k + j];
            for (int64_t c = r + 1; c < n; c++) s -= a[r * n + c] * x[c * k + j];
            x[r * k + j] = s / a[r * n + r];
        }
    free(a);
}

TEST(solve_and_inv_larger_than_unrolled)
{
    pn_scope_push();
    int64_t n = test_quick() ? 40 : 150, k = 7, batch = 2;
    pn_dtype types[2] = {PN_FLOAT64, PN_FLOAT32};
    for (int ti = 0; ti < 2; ti++) {
        pn_scope_push();
        pn_dtype t = types[ti];
        double tol = t == PN_FLOAT64 ? 1e-10 : 2e-4;
        pn_array *a = well_conditioned(batch, n, t);
        pn_array *b = test_random_array((int64_t[]){batch, n, k}, 3, t, -1, 1);
        double *av = test_to_f64(a), *bv = test_to_f64(b);
        double *want = malloc(sizeof(double) * (size_t)(batch * n * n));
        double *eye = calloc((size_t)(n * n), sizeof(double));
        for (int64_t i = 0; i < n; i++) eye[i * n + i] = 1;
        for (int64_t q = 0; q < batch; q++) ref_solve(av + q * n * n, eye, n, n, want + q * n * n);
        test_check_values("inv", pn_linalg_inv(a), (int64_t[]){batch, n, n}, 3, t, want, tol, tol);
        for (int64_t q = 0; q < batch; q++) ref_solve(av + q * n * n, bv + q * n * k, n, k, want + q * n * k);
        test_check_values("solve", pn_linalg_solve(a, b), (int64_t[]){batch, n, k}, 3, t, want, tol, tol);
        /* the triangles of a, solved as such */
        for (int up = 0; up < 2; up++) {
            pn_array *tri = up ? pn_triu(a, 0) : pn_tril(a, 0);
            double *tv = test_to_f64(tri);
            for (int64_t q = 0; q < batch; q++) ref_solve(tv + q * n * n, bv + q * n * k, n, k, want + q * n * k);
            test_check_values("solve_triangular", pn_linalg_solve_triangular(a, b, up),
                              (int64_t[]){batch, n, k}, 3, t, want, tol, tol);
            free(tv);
        }
        free(av), free(bv), free(want), free(eye);
        pn_scope_pop();
    }
    pn_scope_pop();
}

/* Evaluating r fails with PN_ERR_BACKEND and a message naming fn and "singular". */
static void check_singular(const char *fn, pn_array *r)
{
    CHECK_OK(r);
    pn_clear_error();
    int rc = pn_eval(&r, 1);
    CHECK_MSG(rc != 0, "%s of a singular matrix evaluated without an error", fn);
    CHECK_MSG(pn_last_error() == PN_ERR_BACKEND, "%s: error kind %d", fn, (int)pn_last_error());
    const char *msg = pn_last_error_message();
    CHECK_MSG(strstr(msg, fn) && strstr(msg, "singular"), "%s: message '%s'", fn, msg);
    pn_clear_error();
}

TEST(singular_matrices_raise_at_eval)
{
    pn_scope_push();
    float s[4] = {1, 2, 2, 4};
    pn_array *a = pn_array_from_data(s, (int64_t[]){2, 2}, 2, PN_FLOAT32);
    check_singular("inv", pn_linalg_inv(a));
    check_singular("solve", pn_linalg_solve(a, pn_ones((int64_t[]){2}, 1, PN_FLOAT32)));
    double z[4] = {1, 0, 3, 0};
    pn_array *lz = pn_array_from_data(z, (int64_t[]){2, 2}, 2, PN_FLOAT64);
    check_singular("tri_inv", pn_linalg_tri_inv(lz, false));
    check_singular("solve_triangular", pn_linalg_solve_triangular(lz, pn_ones((int64_t[]){2, 3}, 2, PN_FLOAT64), false));
    /* one singular matrix in a batch fails the whole evaluation */
    pn_array *batch = pn_stack((pn_array *[]){pn_eye(2, 2, 0, PN_FLOAT32), a, pn_eye(2, 2, 0, PN_FLOAT32)}, 3, 0);
    check_singular("inv", pn_linalg_inv(batch));
    /* an exactly zero pivot only: a nearly singular matrix still solves */
    double ns[4] = {1, 2, 2, 4 + 1e-9};
    pn_array *near = pn_array_from_data(ns, (int64_t[]){2, 2}, 2, PN_FLOAT64);
    pn_array *ni = pn_linalg_inv(near);
    CHECK_OK(ni);
    CHECK(pn_eval(&ni, 1) == 0);
    pn_scope_pop();
}

TEST(cholesky_as_mlx)
{
    pn_scope_push();
    /* not positive definite: MLX (LAPACK potrf) gives the partial factor [[1, 0], [2, -3]] on
     * the CPU; cuSOLVER's potrf (the GPU) leaves NaN at the failing pivot instead (what a failed
     * factorization holds is backend-defined; MLX's GPU has no cholesky) */
    float v[4] = {1, 2, 2, 1};
    pn_array *a = pn_array_from_data(v, (int64_t[]){2, 2}, 2, PN_FLOAT32);
    pn_array *partial = pn_linalg_cholesky(a, false);
    double *pv = test_to_f64(partial);
    CHECK_MSG(pv && pv[0] == 1 && pv[1] == 0 && pv[2] == 2, "cholesky partial: first column");
    if (pn_default_device().type == PN_CPU) CHECK_MSG(pv && pv[3] == -3, "cholesky partial: pivot");
    else CHECK_MSG(pv && (pv[3] == -3 || isnan(pv[3])), "cholesky partial (gpu): pivot");
    free(pv);
    /* a larger SPD batch: L L^T == A, upper is L^T */
    int64_t n = test_quick() ? 30 : 120;
    pn_array *m = test_random_array((int64_t[]){2, n, n}, 3, PN_FLOAT64, -1, 1);
    pn_array *spd = pn_add(pn_matmul(m, pn_swapaxes(m, -1, -2)),
                           pn_multiply(pn_eye(n, n, 0, PN_FLOAT64), pn_scalar((double)n, PN_FLOAT64)));
    pn_array *l = pn_linalg_cholesky(spd, false), *u = pn_linalg_cholesky(spd, true);
    double *sv = test_to_f64(spd);
    test_check_values("L L^T", pn_matmul(l, pn_swapaxes(l, -1, -2)), (int64_t[]){2, n, n}, 3,
                      PN_FLOAT64, sv, 1e-12, 1e-10);
    double *zeros = calloc((size_t)(2 * n * n), sizeof(double));
    test_check_values("upper", pn_subtract(u, pn_swapaxes(l, -1, -2)), (int64_t[]){2, n, n}, 3,
                      PN_FLOAT64, zeros, 0, 0);
    free(zeros);
    double *lv = test_to_f64(l);
    for (int64_t q = 0; q < 2; q++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) CHECK_MSG(lv[q * n * n + i * n + j] == 0, "L not lower");
    free(sv), free(lv);
    pn_scope_pop();
}

/* Solves each matrix of a batch through vmap over axis 1 of a and axis 0 of b. */
static int solve_tri_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_linalg_solve_triangular(in[0], in[1], true);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static int chol_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)ctx, (void)nin;
    out[0] = pn_linalg_cholesky(in[0], false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(vmap_over_the_solvers)
{
    pn_scope_push();
    int64_t n = 5, k = 3, B = 4;
    pn_array *a = well_conditioned(B, n, PN_FLOAT64);          /* (B, n, n) */
    pn_array *at = pn_moveaxis(a, 0, 1);                        /* (n, B, n): mapped on axis 1 */
    pn_array *b = test_random_array((int64_t[]){B, n, k}, 3, PN_FLOAT64, -1, 1);
    pn_closure *f = pn_closure_new(solve_tri_fn, NULL, NULL);
    pn_closure *vf = pn_vmap(f, (int[]){1, 0}, 2, NULL, 1);
    pn_array *ins[2] = {at, b}, *out[1];
    int nout = 0;
    CHECK(pn_closure_call(vf, 2, ins, &nout, out) == 0);
    double *want = test_to_f64(pn_linalg_solve_triangular(a, b, true));
    test_check_values("vmap solve_triangular", out[0], (int64_t[]){B, n, k}, 3, PN_FLOAT64, want,
                      1e-12, 1e-12);
    free(want);
    /* an unmapped right-hand side is shared by every matrix */
    pn_array *b1 = pn_take(b, pn_scalar_int(0, PN_INT32), 0);
    pn_closure *vf2 = pn_vmap(f, (int[]){0, -1}, 2, NULL, 1);
    pn_array *ins2[2] = {a, b1};
    CHECK(pn_closure_call(vf2, 2, ins2, &nout, out) == 0);
    want = test_to_f64(pn_linalg_solve_triangular(a, b1, true));
    test_check_values("vmap shared b", out[0], (int64_t[]){B, n, k}, 3, PN_FLOAT64, want, 1e-12,
                      1e-12);
    free(want);
    pn_array *spd = pn_add(pn_matmul(a, pn_swapaxes(a, -1, -2)), pn_eye(n, n, 0, PN_FLOAT64));
    pn_closure *c = pn_closure_new(chol_fn, NULL, NULL);
    pn_closure *vc = pn_vmap(c, (int[]){2}, 1, NULL, 1);
    pn_array *spd_t = pn_moveaxis(spd, 0, 2);
    CHECK(pn_closure_call(vc, 1, &spd_t, &nout, out) == 0);
    want = test_to_f64(pn_linalg_cholesky(spd, false));
    test_check_values("vmap cholesky", out[0], (int64_t[]){B, n, n}, 3, PN_FLOAT64, want, 1e-12,
                      1e-12);
    free(want);
    pn_closure_release(f), pn_closure_release(vf), pn_closure_release(vf2);
    pn_closure_release(c), pn_closure_release(vc);
    pn_scope_pop();
}

TEST(half_precision_and_empty)
{
    pn_scope_push();
    pn_dtype halves[2] = {PN_FLOAT16, PN_BFLOAT16};
    for (int h = 0; h < 2; h++) {
        pn_array *a = well_conditioned(1, 6, halves[h]);
        pn_array *ai = pn_linalg_inv(a);
        CHECK_OK(ai);
        CHECK(pn_array_dtype(ai) == halves[h]);
        double eye[36] = {0};
        for (int i = 0; i < 6; i++) eye[i * 7] = 1;
        test_check_values("half inv", pn_matmul(pn_astype(a, PN_FLOAT32), pn_astype(ai, PN_FLOAT32)),
                          (int64_t[]){1, 6, 6}, 3, PN_FLOAT32, eye, 0, 5e-2);
    }
    pn_array *e = pn_zeros((int64_t[]){3, 0, 0}, 3, PN_FLOAT32);
    test_check_values("inv of empty", pn_linalg_inv(e), (int64_t[]){3, 0, 0}, 3, PN_FLOAT32, NULL, 0, 0);
    test_check_values("cholesky of empty", pn_linalg_cholesky(e, false), (int64_t[]){3, 0, 0}, 3,
                      PN_FLOAT32, NULL, 0, 0);
    pn_array *nok = pn_zeros((int64_t[]){4, 0}, 2, PN_FLOAT32);
    test_check_values("no right-hand sides", pn_linalg_solve_triangular(well_conditioned(1, 4, PN_FLOAT32), nok, false),
                      (int64_t[]){1, 4, 0}, 3, PN_FLOAT32, NULL, 0, 0);
    CHECK_ERR(pn_linalg_solve(pn_ones((int64_t[]){3, 3}, 2, PN_FLOAT32), pn_ones((int64_t[]){4}, 1, PN_FLOAT32)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_linalg_inv(pn_ones((int64_t[]){3, 4}, 2, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
