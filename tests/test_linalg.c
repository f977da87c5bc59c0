/* test_linalg.c — tests of the linear algebra ops (matmul, addmm, outer, inner, tensordot,
 * einsum, trace, diag, diagonal) against float64 references computed here by plain loops,
 * over shapes, broadcasting, strided views, dtypes, errors and gradients. */
#include "core/core.h"
#include "harness.h"

#include <complex.h>
#include <string.h>

typedef double _Complex cd;

static pn_array *rnd(const int64_t *shape, int nd, pn_dtype dt)
{
    return test_random_array(shape, nd, dt, -1.0, 1.0);
}

/* Elements of a as complex doubles (real arrays: imaginary part 0). Free with free(). */
static cd *to_cd(pn_array *a)
{
    int64_t n = pn_size(a);
    cd *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    double *re = test_to_f64(pn_array_dtype(a) == PN_COMPLEX64 ? pn_real(a) : a);
    double *im = pn_array_dtype(a) == PN_COMPLEX64 ? test_to_f64(pn_imag(a)) : NULL;
    for (int64_t i = 0; re && i < n; i++) r[i] = re[i] + (im ? im[i] * I : 0);
    free(re);
    free(im);
    return r;
}

/* Checks a against a complex reference (real and imaginary parts for complex64). */
static int check_cd(const char *what, pn_array *a, const int64_t *shape, int nd, pn_dtype dt,
                    const cd *ref, double rtol, double atol)
{
    int64_t n = pnC_shape_size(shape, nd);
    double *re = malloc(sizeof(double) * (n + 1)), *im = malloc(sizeof(double) * (n + 1));
    for (int64_t i = 0; i < n; i++) re[i] = creal(ref[i]), im[i] = cimag(ref[i]);
    int ok;
    if (dt == PN_COMPLEX64) {
        ok = a && pn_array_dtype(a) == dt;
        CHECK_MSG(ok, "%s: expected complex64", what);
        ok = ok && test_check_values(what, pn_real(a), shape, nd, PN_FLOAT32, re, rtol, atol);
        ok = ok && test_check_values(what, pn_imag(a), shape, nd, PN_FLOAT32, im, rtol, atol);
    } else {
        ok = test_check_values(what, a, shape, nd, dt, re, rtol, atol);
    }
    free(re);
    free(im);
    return ok;
}

/* numpy matmul in complex double over row-major data; writes the output shape. */
static cd *ref_matmul(const cd *a, const int64_t *as0, int na, const cd *b, const int64_t *bs0,
                      int nb, int64_t *os, int *no)
{
    int64_t as[PNC_MAX_NDIM], bs[PNC_MAX_NDIM];
    int ma = na, mb = nb;
    if (na == 1) as[0] = 1, as[1] = as0[0], ma = 2;
    else memcpy(as, as0, sizeof(int64_t) * na);
    if (nb == 1) bs[0] = bs0[0], bs[1] = 1, mb = 2;
    else memcpy(bs, bs0, sizeof(int64_t) * nb);
    int64_t M = as[ma - 2], K = as[ma - 1], N = bs[mb - 1];
    int nbt = (ma > mb ? ma : mb) - 2;
    int64_t bsh[PNC_MAX_NDIM], nbatch = 1;
    for (int d = 0; d < nbt; d++) {
        int da = d - (nbt - (ma - 2)), db = d - (nbt - (mb - 2));
        int64_t ea = da >= 0 ? as[da] : 1, eb = db >= 0 ? bs[db] : 1;
        bsh[d] = ea == 1 ? eb : ea;
        nbatch *= bsh[d];
    }
    cd *out = calloc((size_t)(nbatch * M * N + 1), sizeof(cd));
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t r = bi, ao = 0, bo = 0, sa = M * K, sb = K * N;
        for (int d = nbt - 1; d >= 0; d--) {
            int64_t idx = r % bsh[d];
            r /= bsh[d];
            int da = d - (nbt - (ma - 2)), db = d - (nbt - (mb - 2));
            if (da >= 0) ao += (as[da] == 1 ? 0 : idx) * sa, sa *= as[da];
            if (db >= 0) bo += (bs[db] == 1 ? 0 : idx) * sb, sb *= bs[db];
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                cd s = 0;
                for (int64_t p = 0; p < K; p++) s += a[ao + i * K + p] * b[bo + p * N + j];
                out[bi * M * N + i * N + j] = s;
            }
    }
    *no = 0;
    for (int d = 0; d < nbt; d++) os[(*no)++] = bsh[d];
    if (na != 1) os[(*no)++] = M;
    if (nb != 1) os[(*no)++] = N;
    return out;
}

/* Checks pn_matmul(a, b) against the reference, within tolerances scaled for K. */
static void check_matmul(const char *what, pn_array *a, pn_array *b, pn_dtype out_dt)
{
    cd *av = to_cd(a), *bv = to_cd(b);
    int64_t os[PNC_MAX_NDIM];
    int no;
    cd *ref = ref_matmul(av, pn_shape(a), pn_ndim(a), bv, pn_shape(b), pn_ndim(b), os, &no);
    int64_t K = pn_shape(b)[pn_ndim(b) == 1 ? 0 : pn_ndim(b) - 2];
    double tol = test_tol(out_dt);
    pn_array *r = pn_matmul(a, b);
    CHECK_OK(r);
    check_cd(what, r, os, no, out_dt, ref, tol, tol * (1 + sqrt((double)K)));
    free(av), free(bv), free(ref);
}

typedef struct shape_case {
    int na, nb;
    int64_t a[4], b[4];
} shape_case;

static const shape_case matmul_cases[] = {
    {2, 2, {3, 4}, {4, 5}},        /* rectangular */
    {2, 2, {1, 1}, {1, 1}},        /* 1x1 */
    {2, 2, {7, 1}, {1, 6}},        /* K = 1 */
    {2, 2, {0, 3}, {3, 4}},        /* M = 0 */
    {2, 2, {3, 0}, {0, 4}},        /* K = 0: zeros */
    {2, 2, {3, 4}, {4, 0}},        /* N = 0 */
    {1, 2, {4}, {4, 5}},           /* vector @ matrix */
    {2, 1, {3, 4}, {4}},           /* matrix @ vector */
    {1, 1, {4}, {4}},              /* vector @ vector */
    {4, 3, {2, 1, 3, 4}, {5, 4, 6}}, /* broadcast batch */
    {3, 2, {2, 3, 4}, {4, 5}},     /* batch folded into rows */
    {2, 3, {3, 4}, {2, 4, 5}},     /* a shared by the batch */
    {3, 3, {6, 3, 4}, {6, 4, 5}},  /* plain batch */
    {3, 1, {2, 3, 4}, {4}},        /* batch @ vector */
    {1, 3, {4}, {2, 4, 3}},        /* vector @ batch */
    {3, 3, {300, 8, 9}, {300, 9, 7}}, /* many small matrices: threads over the batch */
    {2, 2, {65, 33}, {33, 70}},    /* odd sizes */
    {3, 3, {0, 3, 4}, {1, 4, 5}},  /* empty batch */
};

TEST(matmul_shapes_f32_f64)
{
    pn_scope_push();
    pn_dtype dts[2] = {PN_FLOAT32, PN_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof matmul_cases / sizeof *matmul_cases; i++) {
            const shape_case *c = &matmul_cases[i];
            char what[64];
            snprintf(what, sizeof what, "%s case %zu", pn_dtype_name(dts[d]), i);
            check_matmul(what, rnd(c->a, c->na, dts[d]), rnd(c->b, c->nb, dts[d]), dts[d]);
        }
    pn_scope_pop();
}

TEST(matmul_dtypes)
{
    pn_scope_push();
    pn_dtype dts[3] = {PN_FLOAT16, PN_BFLOAT16, PN_COMPLEX64};
    for (int d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof matmul_cases / sizeof *matmul_cases; i++) {
            const shape_case *c = &matmul_cases[i];
            char what[64];
            snprintf(what, sizeof what, "%s case %zu", pn_dtype_name(dts[d]), i);
            pn_array *a = rnd(c->a, c->na, dts[d]), *b = rnd(c->b, c->nb, dts[d]);
            if (dts[d] == PN_COMPLEX64) /* give them imaginary parts */
                a = pn_add(a, pn_multiply(rnd(c->a, c->na, PN_FLOAT32), pn_scalar_complex(0, 1))),
                b = pn_subtract(b,
                                pn_multiply(rnd(c->b, c->nb, PN_FLOAT32), pn_scalar_complex(0, 1)));
            check_matmul(what, a, b, dts[d]);
        }
    pn_scope_pop();
}

/* Half-precision GEMMs large enough for every blocking path of the kernel (K > 256 for the
 * float accumulator, several row blocks, edge tiles), all transposition combinations. */
TEST(matmul_half_large)
{
    pn_scope_push();
    int64_t sizes[2][3] = {{150, 131, 530}, {97, 200, 70}}; /* K > 256 and K <= 256 */
    if (test_quick()) sizes[0][0] = 70, sizes[0][1] = 40, sizes[0][2] = 300;
    pn_dtype dts[2] = {PN_BFLOAT16, PN_FLOAT16};
    for (int z = 0; z < 4 * 2 * 2; z++) { /* 4 transpositions x 2 dtypes x 2 sizes */
        int t = z % 4, d = z / 4 % 2, sz = z / 8;
        int64_t M = sizes[sz][0], N = sizes[sz][1], K = sizes[sz][2];
        pn_array *a = rnd(t & 1 ? (int64_t[]){K, M} : (int64_t[]){M, K}, 2, dts[d]);
        pn_array *b = rnd(t & 2 ? (int64_t[]){N, K} : (int64_t[]){K, N}, 2, dts[d]);
        if (t & 1) a = pn_transpose(a, NULL, 0);
        if (t & 2) b = pn_transpose(b, NULL, 0);
        char what[64];
        snprintf(what, sizeof what, "%s trans %d size %d", pn_dtype_name(dts[d]), t, sz);
        check_matmul(what, a, b, dts[d]);
    }
    int64_t M = sizes[0][0], N = sizes[0][1], K = sizes[0][2];
    /* matrix-vector and vector-matrix in half precision */
    check_matmul("bf16 gemv", rnd((int64_t[]){M, K}, 2, PN_BFLOAT16),
                 rnd((int64_t[]){K}, 1, PN_BFLOAT16), PN_BFLOAT16);
    check_matmul("f16 vgemm", rnd((int64_t[]){K}, 1, PN_FLOAT16),
                 rnd((int64_t[]){K, N}, 2, PN_FLOAT16), PN_FLOAT16);
    pn_scope_pop();
}

TEST(matmul_views)
{
    pn_scope_push();
    pn_dtype dts[3] = {PN_FLOAT32, PN_BFLOAT16, PN_FLOAT64};
    for (int d = 0; d < 3; d++) {
        pn_dtype dt = dts[d];
        /* transposed views: passed as BLAS transposes */
        pn_array *at = pn_transpose(rnd((int64_t[]){5, 3}, 2, dt), NULL, 0);
        pn_array *bt = pn_transpose(rnd((int64_t[]){4, 5}, 2, dt), NULL, 0);
        check_matmul("a^T @ b", at, rnd((int64_t[]){5, 4}, 2, dt), dt);
        check_matmul("a @ b^T", rnd((int64_t[]){3, 5}, 2, dt), bt, dt);
        check_matmul("a^T @ b^T", at, bt, dt);
        /* batched swapaxes */
        pn_array *ab = pn_swapaxes(rnd((int64_t[]){2, 5, 3}, 3, dt), 1, 2);
        check_matmul("batched a^T", ab, rnd((int64_t[]){2, 5, 4}, 3, dt), dt);
        /* batch axis not outermost: a transposed to (3, 2, 4) from (2, 3, 4) */
        pn_array *ap = pn_transpose(rnd((int64_t[]){2, 3, 4}, 3, dt), (int[]){1, 0, 2}, 3);
        check_matmul("permuted batch", ap, rnd((int64_t[]){4, 6}, 2, dt), dt);
        /* stepped slices: copied */
        pn_array *big = rnd((int64_t[]){6, 8}, 2, dt);
        pn_array *sl = pn_slice(big, (int64_t[]){0, 1}, (int64_t[]){6, 8}, (int64_t[]){2, 2}, 2);
        check_matmul("stepped slice", sl, rnd((int64_t[]){4, 3}, 2, dt), dt);
        /* a sub-block: row stride larger than the width */
        pn_array *blk = pn_slice(big, (int64_t[]){1, 2}, (int64_t[]){5, 7}, NULL, 2);
        check_matmul("sub-block", blk, rnd((int64_t[]){5, 2}, 2, dt), dt);
        /* broadcast views (zero strides) */
        pn_array *bc = pn_broadcast_to(rnd((int64_t[]){1, 4}, 2, dt), (int64_t[]){3, 4}, 2);
        check_matmul("broadcast rows", bc, rnd((int64_t[]){4, 2}, 2, dt), dt);
        /* reversed: negative strides */
        pn_array *fl = pn_flip(rnd((int64_t[]){3, 4}, 2, dt), NULL, 0);
        check_matmul("flipped", fl, rnd((int64_t[]){4, 2}, 2, dt), dt);
    }
    pn_scope_pop();
}

TEST(matmul_promotion)
{
    pn_scope_push();
    pn_array *h = rnd((int64_t[]){2, 3}, 2, PN_FLOAT16), *f = rnd((int64_t[]){3, 2}, 2, PN_FLOAT32);
    pn_array *i = rnd((int64_t[]){3, 2}, 2, PN_INT32), *bf = rnd((int64_t[]){3, 2}, 2, PN_BFLOAT16);
    check_matmul("f16 @ f32", h, f, PN_FLOAT32);
    check_matmul("f16 @ int32", h, pn_multiply(i, pn_weak_int(1)), PN_FLOAT16);
    check_matmul("f16 @ bf16", h, bf, PN_FLOAT32);
    pn_array *r = pn_matmul(h, i);
    CHECK(r && pn_array_dtype(r) == pn_promote_types(PN_FLOAT16, PN_INT32));
    pn_scope_pop();
}

TEST(matmul_errors)
{
    pn_scope_push();
    pn_array *a = rnd((int64_t[]){2, 3}, 2, PN_FLOAT32), *b = rnd((int64_t[]){4, 5}, 2, PN_FLOAT32);
    CHECK_ERR(pn_matmul(a, b), PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(!pn_matmul(a, b));
    const char *msg = pn_last_error_message();
    CHECK_MSG(strstr(msg, "(2,3)") && strstr(msg, "(4,5)") && strstr(msg, "[matmul]"),
              "message: %s", msg);
    pn_clear_error();
    CHECK_ERR(pn_matmul(pn_scalar(1, PN_FLOAT32), b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_matmul(rnd((int64_t[]){3}, 1, PN_FLOAT32), rnd((int64_t[]){4}, 1, PN_FLOAT32)),
              PN_ERR_INVALID_ARGUMENT);
    /* MLX refuses integer (and bool) products */
    CHECK_ERR(pn_matmul(rnd((int64_t[]){2, 3}, 2, PN_INT32), rnd((int64_t[]){3, 2}, 2, PN_INT32)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_matmul(rnd((int64_t[]){2, 3}, 2, PN_BOOL), rnd((int64_t[]){3, 2}, 2, PN_UINT8)),
              PN_ERR_INVALID_ARGUMENT);
    /* batch extents that do not broadcast */
    CHECK_ERR(pn_matmul(rnd((int64_t[]){2, 3, 4}, 3, PN_FLOAT32),
                        rnd((int64_t[]){3, 4, 5}, 3, PN_FLOAT32)),
              PN_ERR_INVALID_ARGUMENT);
    /* sticky NULL */
    CHECK_ERR(pn_matmul(pn_matmul(a, b), a), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── addmm ───────────────────────────── */

static void check_addmm(const char *what, pn_array *c, pn_array *a, pn_array *b, double alpha,
                        double beta, pn_dtype dt)
{
    cd *av = to_cd(a), *bv = to_cd(b), *cv = to_cd(c);
    int64_t os[PNC_MAX_NDIM];
    int no;
    cd *ref = ref_matmul(av, pn_shape(a), pn_ndim(a), bv, pn_shape(b), pn_ndim(b), os, &no);
    int64_t n = pnC_shape_size(os, no);
    /* c broadcasts to the output: index it by right-aligned coordinates */
    int nc = pn_ndim(c);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i, ci = 0, cs = 1;
        for (int d = no - 1; d >= 0; d--) {
            int64_t idx = r % os[d];
            r /= os[d];
            int dc = d - (no - nc);
            if (dc >= 0) {
                int64_t e = pn_shape(c)[dc];
                ci += (e == 1 ? 0 : idx) * cs;
                cs *= e;
            }
        }
        ref[i] = alpha * ref[i] + beta * cv[ci];
    }
    double tol = test_tol(dt);
    pn_array *r = pn_addmm(c, a, b, alpha, beta);
    CHECK_OK(r);
    check_cd(what, r, os, no, dt, ref, tol, 4 * tol);
    free(av), free(bv), free(cv), free(ref);
}

TEST(addmm)
{
    pn_scope_push();
    pn_dtype dts[4] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    for (int d = 0; d < 4; d++) {
        pn_dtype dt = dts[d];
        pn_array *a = rnd((int64_t[]){3, 4}, 2, dt), *b = rnd((int64_t[]){4, 5}, 2, dt);
        check_addmm("full c", rnd((int64_t[]){3, 5}, 2, dt), a, b, 1.0, 1.0, dt);
        check_addmm("row c", rnd((int64_t[]){5}, 1, dt), a, b, 0.5, 2.0, dt);
        check_addmm("column c", rnd((int64_t[]){3, 1}, 2, dt), a, b, -1.0, 0.25, dt);
        check_addmm("scalar c", pn_scalar(0.75, dt), a, b, 2.0, 1.0, dt);
        check_addmm("beta 0", rnd((int64_t[]){3, 5}, 2, dt), a, b, 1.5, 0.0, dt);
        check_addmm("batched", rnd((int64_t[]){5}, 1, dt), rnd((int64_t[]){2, 3, 4}, 3, dt), b, 1.0,
                    1.0, dt);
        check_addmm("broadcast batch", rnd((int64_t[]){2, 1, 5}, 3, dt),
                    rnd((int64_t[]){2, 3, 4}, 3, dt), rnd((int64_t[]){1, 4, 5}, 3, dt), 0.5, -1.0,
                    dt);
        check_addmm("vector a", rnd((int64_t[]){5}, 1, dt), rnd((int64_t[]){4}, 1, dt), b, 1.0, 1.0,
                    dt);
        check_addmm("vector b", rnd((int64_t[]){3}, 1, dt), a, rnd((int64_t[]){4}, 1, dt), 1.0, 1.0,
                    dt);
        check_addmm("transposed c", pn_transpose(rnd((int64_t[]){5, 3}, 2, dt), NULL, 0), a, b, 1.0,
                    3.0, dt);
        check_addmm("K = 0", rnd((int64_t[]){3, 5}, 2, dt), rnd((int64_t[]){3, 0}, 2, dt),
                    rnd((int64_t[]){0, 5}, 2, dt), 1.0, 0.5, dt);
    }
    /* complex: the composite path */
    pn_array *ca =
        pn_add(rnd((int64_t[]){3, 4}, 2, PN_COMPLEX64),
               pn_multiply(rnd((int64_t[]){3, 4}, 2, PN_FLOAT32), pn_scalar_complex(0, 1)));
    check_addmm("complex", rnd((int64_t[]){3, 5}, 2, PN_COMPLEX64), ca,
                rnd((int64_t[]){4, 5}, 2, PN_COMPLEX64), 0.5, 2.0, PN_COMPLEX64);
    /* errors */
    pn_array *a = rnd((int64_t[]){3, 4}, 2, PN_FLOAT32), *b = rnd((int64_t[]){4, 5}, 2, PN_FLOAT32);
    CHECK_ERR(pn_addmm(rnd((int64_t[]){4, 5}, 2, PN_FLOAT32), a, b, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_addmm(rnd((int64_t[]){2, 3, 5}, 3, PN_FLOAT32), a, b, 1, 1),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_addmm(rnd((int64_t[]){3, 5}, 2, PN_FLOAT32), a, a, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_addmm(rnd((int64_t[]){3, 5}, 2, PN_INT32), rnd((int64_t[]){3, 4}, 2, PN_INT32),
                       rnd((int64_t[]){4, 5}, 2, PN_INT32), 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_addmm(a, pn_scalar(1, PN_FLOAT32), b, 1, 1), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── einsum reference ───────────────────────────── */

/* A plain-loop einsum over explicit letter subscripts ("ij,jk->ik"; no ellipsis), size-1
 * extents broadcasting. Returns the output (row-major) and writes its shape. */
static double *ref_einsum(const char *sub, int n, double *const *ops, pn_array *const *arrs,
                          int64_t *os, int *no)
{
    char terms[8][32], out[32];
    const char *arrow = strstr(sub, "->");
    int t = 0, k = 0;
    for (const char *p = sub; p != arrow; p++) {
        if (*p == ',') terms[t++][k] = 0, k = 0;
        else terms[t][k++] = *p;
    }
    terms[t][k] = 0;
    strcpy(out, arrow + 2);
    int64_t dims[128] = {0};
    for (int i = 0; i < n; i++)
        for (int j = 0; terms[i][j]; j++) {
            int64_t e = pn_shape(arrs[i])[j];
            if (e > dims[(int)terms[i][j]] || dims[(int)terms[i][j]] == 0) dims[(int)terms[i][j]] =
                dims[(int)terms[i][j]] > e ? dims[(int)terms[i][j]] : e;
        }
    char letters[64];
    int nl = 0;
    for (int c = 0; c < 128; c++) {
        bool any = false;
        for (int i = 0; i < n; i++) any |= strchr(terms[i], c) != NULL && c;
        if (any) letters[nl++] = (char)c;
    }
    *no = (int)strlen(out);
    int64_t osz = 1;
    for (int i = 0; i < *no; i++) os[i] = dims[(int)out[i]], osz *= os[i];
    double *r = calloc((size_t)(osz + 1), sizeof(double));
    int64_t total = 1, val[128] = {0};
    for (int l = 0; l < nl; l++) total *= dims[(int)letters[l]];
    for (int64_t it = 0; it < total; it++) {
        int64_t rem = it;
        for (int l = nl - 1; l >= 0; l--)
            val[(int)letters[l]] = rem % dims[(int)letters[l]], rem /= dims[(int)letters[l]];
        double prod = 1;
        for (int i = 0; i < n; i++) {
            int64_t off = 0;
            for (int j = 0; terms[i][j]; j++) {
                int64_t e = pn_shape(arrs[i])[j];
                off = off * e + (e == 1 ? 0 : val[(int)terms[i][j]]);
            }
            prod *= ops[i][off];
        }
        int64_t oo = 0;
        for (int j = 0; j < *no; j++) oo = oo * os[j] + val[(int)out[j]];
        r[oo] += prod;
    }
    return r;
}

typedef struct ein_case {
    const char *sub, *ref; /* what pn_einsum gets; the explicit letters form for the reference */
    int n;
    int nd[3];
    int64_t s[3][4];
} ein_case;

static const ein_case ein_cases[] = {
    {"ij,jk->ik", "ij,jk->ik", 2, {2, 2}, {{3, 4}, {4, 5}}},
    {"ii->i", "ii->i", 1, {2}, {{4, 4}}},
    {"ii", "ii->", 1, {2}, {{4, 4}}},
    {"bij,bjk->bik", "bij,bjk->bik", 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}},
    {"i,i->", "i,i->", 2, {1, 1}, {{6}, {6}}},
    {"...ij,...jk", "xij,xjk->xik", 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}},
    {"...ij,jk->...ik", "xyij,jk->xyik", 2, {4, 2}, {{2, 2, 3, 4}, {4, 5}}},
    {"...ij,...jk", "xij,jk->xik", 2, {3, 2}, {{2, 3, 4}, {4, 5}}},
    {"ij->ji", "ij->ji", 1, {2}, {{3, 4}}},
    {"ij,jk", "ij,jk->ik", 2, {2, 2}, {{3, 4}, {4, 5}}},
    {"ji", "ji->ij", 1, {2}, {{3, 4}}},
    {"i,i", "i,i->", 2, {1, 1}, {{5}, {5}}},
    {"ijk->", "ijk->", 1, {3}, {{2, 3, 4}}},
    {"ijk->kj", "ijk->kj", 1, {3}, {{2, 3, 4}}},
    {"ij,ij->ij", "ij,ij->ij", 2, {2, 2}, {{3, 4}, {3, 4}}},
    {"i,j->ij", "i,j->ij", 2, {1, 1}, {{3}, {4}}},
    {"ij,j->i", "ij,j->i", 2, {2, 1}, {{3, 4}, {4}}},
    {"iij->j", "iij->j", 1, {3}, {{3, 3, 4}}},
    {"iii->i", "iii->i", 1, {3}, {{3, 3, 3}}},
    {"ijij->ij", "ijij->ij", 1, {4}, {{2, 3, 2, 3}}},
    {"ab,bc,cd->ad", "ab,bc,cd->ad", 3, {2, 2, 2}, {{2, 3}, {3, 4}, {4, 5}}},
    {"ab,ab,ab->", "ab,ab,ab->", 3, {2, 2, 2}, {{2, 3}, {2, 3}, {2, 3}}},
    {"abc,cd,be->ade", "abc,cd,be->ade", 3, {3, 2, 2}, {{2, 3, 4}, {4, 2}, {3, 2}}},
    {" ij , jk -> ik ", "ij,jk->ik", 2, {2, 2}, {{3, 4}, {4, 5}}},
    {"ij,jk->ik", "ij,jk->ik", 2, {2, 2}, {{3, 1}, {4, 5}}}, /* size-1 contraction broadcasts */
    {"ij,ij->i", "ij,ij->i", 2, {2, 2}, {{3, 1}, {1, 4}}},
    {",ij->ij", ",ij->ij", 2, {0, 2}, {{0}, {2, 3}}},
    {"ij,kj->ik", "ij,kj->ik", 2, {2, 2}, {{3, 4}, {5, 4}}},
    {"bij,bkj->bki", "bij,bkj->bki", 2, {3, 3}, {{2, 3, 4}, {2, 5, 4}}},
    {"ij,jk->", "ij,jk->", 2, {2, 2}, {{3, 4}, {4, 5}}},
    {"ijk,ikl->jl", "ijk,ikl->jl", 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}},
    {"ij,jk->ik", "ij,jk->ik", 2, {2, 2}, {{3, 0}, {0, 5}}},
    {"Ab,bC->AC", "Ab,bC->AC", 2, {2, 2}, {{2, 3}, {3, 2}}},
    {"ba", "ba->ab", 1, {2}, {{2, 3}}},
    {"aB", "aB->Ba", 1, {2}, {{2, 3}}},
};

TEST(einsum_patterns)
{
    pn_scope_push();
    pn_dtype dts[2] = {PN_FLOAT32, PN_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < sizeof ein_cases / sizeof *ein_cases; c++) {
            const ein_case *e = &ein_cases[c];
            pn_array *ops[3];
            double *vals[3];
            for (int i = 0; i < e->n; i++)
                ops[i] = rnd(e->s[i], e->nd[i], dts[d]), vals[i] = test_to_f64(ops[i]);
            int64_t os[PNC_MAX_NDIM];
            int no;
            double *ref = ref_einsum(e->ref, e->n, vals, ops, os, &no);
            pn_array *r = pn_einsum(e->sub, ops, e->n);
            char what[96];
            snprintf(what, sizeof what, "einsum \"%s\" %s", e->sub, pn_dtype_name(dts[d]));
            CHECK_MSG(r != NULL, "%s: %s", what, pn_last_error_message());
            pn_clear_error();
            if (r)
                test_check_values(what, r, os, no, dts[d], ref, test_tol(dts[d]) * 10,
                                  test_tol(dts[d]) * 10);
            free(ref);
            for (int i = 0; i < e->n; i++) free(vals[i]);
        }
    /* views as operands */
    pn_array *a = pn_transpose(rnd((int64_t[]){4, 3}, 2, PN_FLOAT64), NULL, 0);
    pn_array *b = pn_slice(rnd((int64_t[]){8, 5}, 2, PN_FLOAT64), (int64_t[]){0, 0},
                           (int64_t[]){8, 5}, (int64_t[]){2, 1}, 2);
    pn_array *r1 = pn_einsum("ij,jk->ik", (pn_array *[]){a, b}, 2);
    pn_array *r2 = pn_matmul(a, b);
    double *v2 = test_to_f64(r2);
    if (v2)
        test_check_values("einsum views", r1, (int64_t[]){3, 5}, 2, PN_FLOAT64, v2, 1e-12, 1e-12);
    free(v2);
    pn_scope_pop();
}

TEST(einsum_errors)
{
    pn_scope_push();
    pn_array *a = rnd((int64_t[]){2, 3}, 2, PN_FLOAT32), *b = rnd((int64_t[]){4, 5}, 2, PN_FLOAT32);
    pn_array *sq = rnd((int64_t[]){3, 3}, 2, PN_FLOAT32);
    CHECK_ERR(pn_einsum("ij,jk->ik", &a, 1), PN_ERR_INVALID_ARGUMENT);      /* operand count */
    CHECK_ERR(pn_einsum("ij->k", &a, 1), PN_ERR_INVALID_ARGUMENT);          /* unknown output */
    CHECK_ERR(pn_einsum("ii->ii", &sq, 1), PN_ERR_INVALID_ARGUMENT);        /* repeat in output */
    CHECK_ERR(pn_einsum("i1", &a, 1), PN_ERR_INVALID_ARGUMENT);             /* not a letter */
    CHECK_ERR(pn_einsum("i..", &a, 1), PN_ERR_INVALID_ARGUMENT);            /* broken ellipsis */
    CHECK_ERR(pn_einsum("...i...", &a, 1), PN_ERR_INVALID_ARGUMENT);        /* two ellipses */
    CHECK_ERR(pn_einsum("ijk", &a, 1), PN_ERR_INVALID_ARGUMENT);            /* subscript count */
    CHECK_ERR(pn_einsum("ijk...", &a, 1), PN_ERR_INVALID_ARGUMENT);         /* too few dims */
    CHECK_ERR(pn_einsum("ij,jk", (pn_array *[]){a, b}, 2), PN_ERR_INVALID_ARGUMENT); /* extents */
    CHECK_ERR(pn_einsum("ii", &a, 1), PN_ERR_INVALID_ARGUMENT);             /* repeat extents */
    CHECK_ERR(pn_einsum("ij->i->j", &a, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_einsum("ij-jk", &a, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_einsum(NULL, &a, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_einsum("ij", &a, 0), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* The greedy path: the pair whose product removes the most elements first (here the small
 * middle product (8,10)x(10,7) when the left operand is wide, else the left pair), the
 * path's steps as counts and positions, too small a buffer refused. */
TEST(einsum_path_greedy)
{
    pn_scope_push();
    pn_array *a = rnd((int64_t[]){5, 8}, 2, PN_FLOAT32), *b = rnd((int64_t[]){8, 10}, 2, PN_FLOAT32);
    pn_array *c = rnd((int64_t[]){10, 7}, 2, PN_FLOAT32), *b2 = rnd((int64_t[]){8, 3}, 2, PN_FLOAT32);
    pn_array *c2 = rnd((int64_t[]){3, 7}, 2, PN_FLOAT32);
    int path[16];
    uint64_t info[4];
    CHECK(pn_einsum_path("ij,jk,kl", (pn_array *[]){a, b, c}, 3, path, 16, info) == 2);
    CHECK(path[0] == 2 && path[1] == 1 && path[2] == 2 && path[3] == 2 && path[4] == 0 && path[5] == 1);
    /* naive: 5*8*10*7 elements, summing; the path: 8*10*7 then 5*8*7, each summing */
    CHECK(info[0] == 5 * 8 * 10 * 7 * 3 && info[1] == 8 * 10 * 7 * 2 + 5 * 8 * 7 * 2);
    CHECK(info[2] == 4 && info[3] == 3);
    CHECK(pn_einsum_path("ij,jk,kl", (pn_array *[]){a, b2, c2}, 3, path, 16, NULL) == 2);
    CHECK(path[1] == 0 && path[2] == 1 && path[4] == 0 && path[5] == 1);
    CHECK(pn_einsum_path("ij,jk", (pn_array *[]){a, b}, 2, path, 16, NULL) == 1);
    CHECK(path[0] == 2 && path[1] == 0 && path[2] == 1);
    CHECK(pn_einsum_path("ij,jk,kl", (pn_array *[]){a, b, c}, 3, path, 4, NULL) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_einsum_path("ij,jk->ik", (pn_array *[]){a, a}, 2, path, 16, NULL) == -1);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── outer, inner, tensordot ───────────────────────────── */

TEST(outer_inner_tensordot)
{
    pn_scope_push();
    pn_dtype dts[3] = {PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16};
    for (int d = 0; d < 3; d++) {
        pn_dtype dt = dts[d];
        double tol = test_tol(dt) * 4;
        /* outer flattens both */
        pn_array *a = rnd((int64_t[]){2, 2}, 2, dt), *b = rnd((int64_t[]){3}, 1, dt);
        double *av = test_to_f64(a), *bv = test_to_f64(b), ref[64];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) ref[i * 3 + j] = av[i] * bv[j];
        test_check_values("outer", pn_outer(a, b), (int64_t[]){4, 3}, 2, dt, ref, tol, tol);
        free(av), free(bv);
        /* inner: last axes */
        pn_array *x = rnd((int64_t[]){2, 3, 4}, 3, dt), *y = rnd((int64_t[]){5, 4}, 2, dt);
        double *xv = test_to_f64(x), *yv = test_to_f64(y), ir[30];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 5; j++) {
                double s = 0;
                for (int k = 0; k < 4; k++) s += xv[i * 4 + k] * yv[j * 4 + k];
                ir[i * 5 + j] = s;
            }
        test_check_values("inner", pn_inner(x, y), (int64_t[]){2, 3, 5}, 3, dt, ir, tol, tol);
        /* inner with a scalar multiplies */
        double sr[24];
        for (int i = 0; i < 24; i++) sr[i] = 2 * xv[i];
        test_check_values("inner scalar", pn_inner(x, pn_scalar(2, dt)), (int64_t[]){2, 3, 4}, 3,
                          dt, sr, tol, tol);
        free(xv), free(yv);
        /* tensordot over axes (0, 2) of p with (1, 0) of q */
        pn_array *p = rnd((int64_t[]){3, 2, 4}, 3, dt), *q = rnd((int64_t[]){4, 3, 5}, 3, dt);
        double *pv = test_to_f64(p), *qv = test_to_f64(q), tr[10];
        for (int j = 0; j < 2; j++)
            for (int l = 0; l < 5; l++) {
                double s = 0;
                for (int i = 0; i < 3; i++)
                    for (int k = 0; k < 4; k++) s += pv[i * 8 + j * 4 + k] * qv[k * 15 + i * 5 + l];
                tr[j * 5 + l] = s;
            }
        test_check_values("tensordot", pn_tensordot(p, q, (int[]){0, -1}, (int[]){1, 0}, 2),
                          (int64_t[]){2, 5}, 2, dt, tr, tol, tol);
        free(pv), free(qv);
        /* tensordot_n: last 2 of u with first 2 of v; n = 0 is the outer product */
        pn_array *u = rnd((int64_t[]){2, 3, 4}, 3, dt), *v = rnd((int64_t[]){3, 4, 2}, 3, dt);
        double *uv = test_to_f64(u), *vv = test_to_f64(v), nr[4], o0[48];
        for (int i = 0; i < 2; i++)
            for (int l = 0; l < 2; l++) {
                double s = 0;
                for (int jk = 0; jk < 12; jk++) s += uv[i * 12 + jk] * vv[jk * 2 + l];
                nr[i * 2 + l] = s;
            }
        test_check_values("tensordot_n", pn_tensordot_n(u, v, 2), (int64_t[]){2, 2}, 2, dt, nr, tol,
                          tol);
        pn_array *u2 = rnd((int64_t[]){2, 2}, 2, dt), *v2 = rnd((int64_t[]){3}, 1, dt);
        double *u2v = test_to_f64(u2), *v2v = test_to_f64(v2);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) o0[i * 3 + j] = u2v[i] * v2v[j];
        test_check_values("tensordot 0", pn_tensordot_n(u2, v2, 0), (int64_t[]){2, 2, 3}, 3, dt, o0,
                          tol, tol);
        free(uv), free(vv), free(u2v), free(v2v);
    }
    pn_array *a = rnd((int64_t[]){2, 3}, 2, PN_FLOAT32), *b = rnd((int64_t[]){4, 5}, 2, PN_FLOAT32);
    CHECK_ERR(pn_inner(a, b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tensordot(a, b, (int[]){1}, (int[]){0}, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tensordot(a, b, (int[]){2}, (int[]){0}, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tensordot(a, a, (int[]){0, 0}, (int[]){0, 1}, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tensordot_n(a, b, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_tensordot_n(a, b, 3), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── trace, diag, diagonal ───────────────────────────── */

/* Reference diagonal of a row-major array: output axes are the others in order, then the
 * diagonal. */
static double *ref_diagonal(const double *v, const int64_t *s, int nd, int off, int a1, int a2,
                            int64_t *os, int *no)
{
    int64_t st[8];
    st[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) st[i] = st[i + 1] * s[i + 1];
    int64_t o1 = off < 0 ? -off : 0, o2 = off > 0 ? off : 0;
    int64_t dl = s[a1] - o1 < s[a2] - o2 ? s[a1] - o1 : s[a2] - o2;
    if (dl < 0) dl = 0;
    int others[8], n = 0;
    for (int i = 0; i < nd; i++)
        if (i != a1 && i != a2) others[n] = i, os[n++] = s[i];
    os[n] = dl;
    *no = n + 1;
    int64_t total = pnC_shape_size(os, *no);
    double *r = malloc(sizeof(double) * (total + 1));
    for (int64_t i = 0; i < total; i++) {
        int64_t rem = i, k = rem % dl, off_in = 0;
        rem /= dl;
        for (int j = n - 1; j >= 0; j--) off_in += (rem % os[j]) * st[others[j]], rem /= os[j];
        r[i] = v[off_in + (k + o1) * st[a1] + (k + o2) * st[a2]];
    }
    return r;
}

TEST(diagonal_trace_diag)
{
    pn_scope_push();
    pn_dtype dts[3] = {PN_FLOAT32, PN_INT32, PN_FLOAT64};
    for (int d = 0; d < 3; d++) {
        pn_dtype dt = dts[d];
        pn_array *m = test_random_array((int64_t[]){4, 5}, 2, dt, -9, 9);
        pn_array *t3 = test_random_array((int64_t[]){3, 4, 5}, 3, dt, -9, 9);
        double *mv = test_to_f64(m), *tv = test_to_f64(t3);
        for (int off = -5; off <= 6; off++) {
            int64_t os[8];
            int no;
            char what[64];
            double *ref = ref_diagonal(mv, (int64_t[]){4, 5}, 2, off, 0, 1, os, &no);
            snprintf(what, sizeof what, "diagonal %d", off);
            test_check_values(what, pn_diagonal(m, off, 0, 1), os, no, dt, ref, 0, 0);
            test_check_values("diag 2-d", pn_diag(m, off), os, no, dt, ref, 0, 0);
            double tr = 0;
            for (int64_t i = 0; i < os[0]; i++) tr += ref[i];
            test_check_values("trace", pn_trace(m, off, 0, 1), NULL, 0, dt, &tr, 1e-6, 1e-6);
            free(ref);
            /* reversed axes: the transposed matrix's diagonal */
            ref = ref_diagonal(mv, (int64_t[]){4, 5}, 2, off, 1, 0, os, &no);
            test_check_values("diagonal 1,0", pn_diagonal(m, off, 1, 0), os, no, dt, ref, 0, 0);
            free(ref);
            /* 3-d, axes (0, 2) and (-1, 1) */
            ref = ref_diagonal(tv, (int64_t[]){3, 4, 5}, 3, off, 0, 2, os, &no);
            test_check_values("diagonal 3-d", pn_diagonal(t3, off, 0, 2), os, no, dt, ref, 0, 0);
            free(ref);
            ref = ref_diagonal(tv, (int64_t[]){3, 4, 5}, 3, off, 2, 1, os, &no);
            test_check_values("diagonal 3-d neg", pn_diagonal(t3, off, -1, 1), os, no, dt, ref, 0,
                              0);
            double tr3[8] = {0};
            for (int64_t i = 0; i < os[0]; i++)
                for (int64_t k = 0; k < os[1]; k++) tr3[i] += ref[i * os[1] + k];
            test_check_values("trace 3-d", pn_trace(t3, off, -1, 1), os, 1, dt, tr3, 1e-6, 1e-6);
            free(ref);
        }
        /* diagonal of a transposed view, and of a diagonal (a view of a view) */
        pn_array *mt = pn_transpose(m, NULL, 0);
        double *ref;
        int64_t os[8];
        int no;
        ref = ref_diagonal(mv, (int64_t[]){4, 5}, 2, -1, 1, 0, os, &no);
        test_check_values("diagonal of view", pn_diagonal(mt, -1, 0, 1), os, no, dt, ref, 0, 0);
        free(ref);
        pn_array *dd = pn_diagonal(pn_diagonal(t3, 0, 0, 1), 1, 0, 1); /* (5, 3) -> offset 1 */
        double chain[4];
        int64_t nchain = 0;
        for (int64_t k = 0; k + 1 < 3 && k < 5; k++)
            chain[nchain++] = tv[(k + 1) * 20 + (k + 1) * 5 + k];
        test_check_values("diagonal of diagonal", dd, (int64_t[]){nchain}, 1, dt, chain, 0, 0);
        /* diag of 1-d: a matrix with the vector on diagonal k */
        pn_array *v = test_random_array((int64_t[]){3}, 1, dt, -9, 9);
        double *vv = test_to_f64(v);
        for (int k = -2; k <= 2; k++) {
            int64_t n = 3 + (k < 0 ? -k : k);
            double full[25] = {0};
            for (int i = 0; i < 3; i++)
                full[(i + (k < 0 ? -k : 0)) * n + i + (k > 0 ? k : 0)] = vv[i];
            test_check_values("diag 1-d", pn_diag(v, k), (int64_t[]){n, n}, 2, dt, full, 0, 0);
        }
        free(vv), free(mv), free(tv);
    }
    /* trace keeps the dtype (int32 stays int32) */
    pn_array *ti = pn_trace(test_random_array((int64_t[]){3, 3}, 2, PN_INT32, -5, 5), 0, 0, 1);
    CHECK(ti && pn_array_dtype(ti) == PN_INT32);
    /* empty */
    pn_array *e = pn_diagonal(rnd((int64_t[]){0, 3}, 2, PN_FLOAT32), 0, 0, 1);
    CHECK(e && pn_ndim(e) == 1 && pn_shape(e)[0] == 0);
    test_check_values("trace empty", pn_trace(rnd((int64_t[]){0, 3}, 2, PN_FLOAT32), 0, 0, 1), NULL,
                      0, PN_FLOAT32, (double[]){0}, 0, 0);
    /* errors */
    pn_array *a1 = rnd((int64_t[]){3}, 1, PN_FLOAT32), *a2 = rnd((int64_t[]){3, 3}, 2, PN_FLOAT32);
    CHECK_ERR(pn_diagonal(a1, 0, 0, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diagonal(a2, 0, 1, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diagonal(a2, 0, 0, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diagonal(a2, 0, -3, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_trace(a1, 0, 0, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_trace(a2, 0, 0, 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diag(rnd((int64_t[]){2, 2, 2}, 3, PN_FLOAT32), 0), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_diag(pn_scalar(1, PN_FLOAT32), 0), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

static pn_array *g_matmul(void *ctx, pn_array *const *in) { return pn_matmul(in[0], in[1]); }
static pn_array *g_addmm(void *ctx, pn_array *const *in)
{
    return pn_addmm(in[2], in[0], in[1], 0.7, -1.3);
}
static pn_array *g_addmm1(void *ctx, pn_array *const *in)
{
    return pn_addmm(in[2], in[0], in[1], 1.0, 1.0);
}
typedef struct diag_ctx {
    int off, a1, a2;
} diag_ctx;
static pn_array *g_diagonal(void *ctx, pn_array *const *in)
{
    const diag_ctx *c = ctx;
    return pn_diagonal(in[0], c->off, c->a1, c->a2);
}
static pn_array *g_trace(void *ctx, pn_array *const *in)
{
    const diag_ctx *c = ctx;
    return pn_trace(in[0], c->off, c->a1, c->a2);
}
static pn_array *g_diag(void *ctx, pn_array *const *in) { return pn_diag(in[0], *(int *)ctx); }
typedef struct ein_ctx {
    const char *s;
    int n;
} ein_ctx;
static pn_array *g_einsum(void *ctx, pn_array *const *in)
{
    const ein_ctx *c = ctx;
    return pn_einsum(c->s, in, c->n);
}
static pn_array *g_tensordot(void *ctx, pn_array *const *in)
{
    return pn_tensordot(in[0], in[1], (int[]){0, 2}, (int[]){1, 0}, 2);
}
static pn_array *g_outer_inner(void *ctx, pn_array *const *in)
{
    return pn_add(pn_outer(in[0], in[1]), pn_inner(pn_reshape(in[0], (int64_t[]){3, 1}, 2),
                                                    pn_reshape(in[1], (int64_t[]){3, 1}, 2)));
}

static pn_array *r64(const int64_t *shape, int nd) { return rnd(shape, nd, PN_FLOAT64); }

TEST(gradients_matmul)
{
    pn_scope_push();
    double tol = 1e-6;
    struct {
        const char *name;
        int na, nb;
        int64_t a[4], b[4];
    } cases[] = {
        {"2-d", 2, 2, {3, 4}, {4, 2}},
        {"broadcast batch", 4, 3, {2, 1, 3, 4}, {5, 4, 2}},
        {"folded batch", 3, 2, {2, 3, 4}, {4, 5}},
        {"shared a", 2, 3, {3, 4}, {2, 4, 5}},
        {"vector-matrix", 1, 2, {4}, {4, 3}},
        {"matrix-vector", 2, 1, {3, 4}, {4}},
        {"vector-vector", 1, 1, {4}, {4}},
        {"batch-vector", 3, 1, {2, 3, 4}, {4}},
        {"K = 1", 2, 2, {3, 1}, {1, 2}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pn_array *in[2] = {r64(cases[i].a, cases[i].na), r64(cases[i].b, cases[i].nb)};
        CHECK_MSG(test_gradcheck(cases[i].name, g_matmul, NULL, 2, in, tol), "matmul %s",
                  cases[i].name);
    }
    /* through a transposed view */
    pn_array *tv[2] = {pn_transpose(r64((int64_t[]){4, 3}, 2), NULL, 0), r64((int64_t[]){4, 2}, 2)};
    CHECK(test_gradcheck("transposed", g_matmul, NULL, 2, tv, tol));
    pn_array *am[3] = {r64((int64_t[]){3, 4}, 2), r64((int64_t[]){4, 2}, 2),
                       r64((int64_t[]){2}, 1)};
    CHECK(test_gradcheck("addmm", g_addmm, NULL, 3, am, tol));
    pn_array *am2[3] = {r64((int64_t[]){2, 3, 4}, 3), r64((int64_t[]){4, 2}, 2),
                        r64((int64_t[]){3, 2}, 2)};
    CHECK(test_gradcheck("addmm batched", g_addmm, NULL, 3, am2, tol));
    pn_array *am3[3] = {r64((int64_t[]){4}, 1), r64((int64_t[]){4, 2}, 2), r64((int64_t[]){2}, 1)};
    CHECK(test_gradcheck("addmm vector", g_addmm1, NULL, 3, am3, tol));
    pn_array *td[2] = {r64((int64_t[]){3, 2, 4}, 3), r64((int64_t[]){4, 3, 2}, 3)};
    CHECK(test_gradcheck("tensordot", g_tensordot, NULL, 2, td, tol));
    pn_array *oi[2] = {r64((int64_t[]){3}, 1), r64((int64_t[]){3}, 1)};
    CHECK(test_gradcheck("outer+inner", g_outer_inner, NULL, 2, oi, tol));
    pn_scope_pop();
}

TEST(gradients_diag_einsum)
{
    pn_scope_push();
    double tol = 1e-6;
    diag_ctx dc[] = {{0, 0, 1}, {1, 0, 1}, {-2, 0, 1}, {1, 2, 0}, {0, -1, 1}};
    for (size_t i = 0; i < sizeof dc / sizeof *dc; i++) {
        pn_array *x = r64((int64_t[]){4, 3, 5}, 3), *m = r64((int64_t[]){4, 5}, 2);
        CHECK_MSG(test_gradcheck("diagonal", g_diagonal, &dc[i], 1, &x, tol), "diagonal %zu", i);
        CHECK_MSG(test_gradcheck("trace", g_trace, &dc[i], 1, &x, tol), "trace %zu", i);
        if (dc[i].a1 == 0 && dc[i].a2 == 1)
            CHECK_MSG(test_gradcheck("trace 2-d", g_trace, &dc[i], 1, &m, tol), "trace 2-d %zu", i);
    }
    for (int k = -1; k <= 2; k++) {
        pn_array *v = r64((int64_t[]){3}, 1), *m = r64((int64_t[]){3, 4}, 2);
        CHECK_MSG(test_gradcheck("diag 1-d", g_diag, &k, 1, &v, tol), "diag 1-d %d", k);
        CHECK_MSG(test_gradcheck("diag 2-d", g_diag, &k, 1, &m, tol), "diag 2-d %d", k);
    }
    ein_ctx ec[] = {{"ij,jk->ik", 2}, {"ii->i", 1}, {"ii", 1}, {"bij,bjk->bik", 2},
                    {"i,i->", 2}, {"ij,ij->i", 2}, {"i,j->ij", 2}};
    int64_t es[][2][3] = {{{3, 4}, {4, 2}}, {{3, 3}}, {{3, 3}}, {{2, 3, 4}, {2, 4, 2}},
                          {{4}, {4}}, {{3, 4}, {3, 4}}, {{3}, {2}}};
    int end[][2] = {{2, 2}, {2}, {2}, {3, 3}, {1, 1}, {2, 2}, {1, 1}};
    for (size_t i = 0; i < sizeof ec / sizeof *ec; i++) {
        pn_array *in[2];
        for (int j = 0; j < ec[i].n; j++) in[j] = r64(es[i][j], end[i][j]);
        CHECK_MSG(test_gradcheck(ec[i].s, g_einsum, &ec[i], ec[i].n, in, tol), "einsum %s",
                  ec[i].s);
    }
    pn_scope_pop();
}

/* Second-order: the gradient of a matmul-based loss is itself differentiable. */
static int loss_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *y = pn_matmul(in[0], in[1]);
    out[0] = pn_sum(pn_multiply(y, y), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(grad_of_grad)
{
    pn_scope_push();
    pn_closure *f = pn_closure_new(loss_fn, NULL, NULL);
    pn_closure *g = pn_grad(f, (int[]){0}, 1);
    pn_array *a = r64((int64_t[]){3, 4}, 2), *b = r64((int64_t[]){4, 2}, 2);
    pn_array *in[2] = {a, b}, *out[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_closure_call(g, 2, in, &nout, out) == 0 && nout == 1);
    /* d/da sum((ab)^2) = 2 (ab) b^T */
    if (nout == 1) {
        pn_array *ref = pn_multiply(pn_matmul(pn_matmul(a, b), pn_transpose(b, NULL, 0)),
                                    pn_scalar(2, PN_FLOAT64));
        double *rv = test_to_f64(ref);
        if (rv)
            test_check_values("grad", out[0], (int64_t[]){3, 4}, 2, PN_FLOAT64, rv, 1e-10, 1e-10);
        free(rv);
    }
    pn_closure_release(g);
    pn_closure_release(f);
    pn_scope_pop();
}

/* ───────────────────────────── vmap ───────────────────────────── */

static int mm_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_matmul(in[0], in[1]);
    *nout = 1;
    return out[0] ? 0 : -1;
}
static int addmm_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_addmm(in[2], in[0], in[1], 0.5, 2.0);
    *nout = 1;
    return out[0] ? 0 : -1;
}
static int diag_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_diagonal(in[0], 1, 0, 1);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* Calls pn_vmap(f) on the inputs and returns its single output. */
static pn_array *vmapped(pn_fn fn, const int *axes, int nin, pn_array *const *in)
{
    pn_closure *f = pn_closure_new(fn, NULL, NULL);
    pn_closure *v = pn_vmap(f, axes, nin, NULL, 1);
    pn_array *out[PN_MAX_OUTPUTS] = {0};
    int nout = 0;
    int rc = v ? pn_closure_call(v, nin, in, &nout, out) : -1;
    CHECK_MSG(rc == 0 && nout == 1, "vmap failed: %s", pn_last_error_message());
    pn_closure_release(v);
    pn_closure_release(f);
    return rc == 0 ? out[0] : NULL;
}

TEST(vmap_rules)
{
    pn_scope_push();
    /* a mapped along its middle axis, b shared */
    pn_array *a = r64((int64_t[]){4, 3, 5}, 3), *b = r64((int64_t[]){5, 2}, 2);
    pn_array *r = vmapped(mm_fn, (int[]){1, -1}, 2, (pn_array *[]){a, b});
    cd *av = to_cd(pn_copy(pn_moveaxis(a, 1, 0))), *bv = to_cd(b);
    int64_t os[PNC_MAX_NDIM];
    int no;
    cd *ref = ref_matmul(av, (int64_t[]){3, 4, 5}, 3, bv, (int64_t[]){5, 2}, 2, os, &no);
    check_cd("vmap matmul a", r, os, no, PN_FLOAT64, ref, 1e-12, 1e-12);
    free(av), free(bv), free(ref);
    /* a unmapped with its own batch, b mapped */
    pn_array *a2 = r64((int64_t[]){2, 4, 5}, 3), *b2 = r64((int64_t[]){3, 5, 6}, 3);
    r = vmapped(mm_fn, (int[]){-1, 0}, 2, (pn_array *[]){a2, b2});
    av = to_cd(a2), bv = to_cd(b2);
    ref = ref_matmul(av, (int64_t[]){1, 2, 4, 5}, 4, bv, (int64_t[]){3, 1, 5, 6}, 4, os, &no);
    check_cd("vmap matmul b", r, os, no, PN_FLOAT64, ref, 1e-12, 1e-12);
    free(av), free(bv), free(ref);
    /* addmm with a and c mapped */
    pn_array *a3 = r64((int64_t[]){3, 4, 5}, 3), *c3 = r64((int64_t[]){2, 3}, 2);
    r = vmapped(addmm_fn, (int[]){0, -1, 1}, 3, (pn_array *[]){a3, b, c3});
    av = to_cd(a3), bv = to_cd(b);
    ref = ref_matmul(av, (int64_t[]){3, 4, 5}, 3, bv, (int64_t[]){5, 2}, 2, os, &no);
    double *cv = test_to_f64(c3);
    for (int i = 0; i < 3; i++)
        for (int m = 0; m < 4; m++)
            for (int n = 0; n < 2; n++)
                ref[i * 8 + m * 2 + n] = 0.5 * ref[i * 8 + m * 2 + n] + 2.0 * cv[n * 3 + i];
    check_cd("vmap addmm", r, os, no, PN_FLOAT64, ref, 1e-12, 1e-12);
    free(av), free(bv), free(ref), free(cv);
    /* diagonal mapped along the last axis */
    pn_array *x = r64((int64_t[]){3, 4, 5}, 3);
    r = vmapped(diag_fn, (int[]){2}, 1, &x);
    double *xv = test_to_f64(x), dref[15];
    for (int bb = 0; bb < 5; bb++)
        for (int k = 0; k < 3; k++) dref[bb * 3 + k] = xv[k * 20 + (k + 1) * 5 + bb];
    test_check_values("vmap diagonal", r, (int64_t[]){5, 3}, 2, PN_FLOAT64, dref, 0, 0);
    free(xv);
    pn_scope_pop();
}
