/* test_matmul_variants.c — gather_mm, block_masked_mm and segmented_mm (src/ops/matmul_variants.c)
 * and depends (src/ops/depends.c) against float64 loops computed here: random data, batched and
 * unbatched shapes, vector operands, bool and float masks, gradients against finite differences,
 * and the error cases. */
#include "harness.h"

#include <string.h>

/* c (M, N) = a (M, K) @ b (K, N), row-major float64, with optional element weights on a, b. */
static void ref_mm(const double *a, const double *b, int64_t M, int64_t K, int64_t N,
                   const double *wa, const double *wb, double *c)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += a[i * K + k] * (wa ? wa[i * K + k] : 1) * b[k * N + j] * (wb ? wb[k * N + j] : 1);
            c[i * N + j] = s;
        }
}

static pn_array *idx_array(const int32_t *v, const int64_t *shape, int nd)
{
    return pn_array_from_data(v, shape, nd, PN_INT32);
}

TEST(gather_mm_values)
{
    pn_scope_push();
    /* a (3, 2, M, K) flattened batch 6, b (2, K, N) batch 2 */
    const int64_t M = 4, K = 5, N = 3;
    int64_t ash[4] = {3, 2, M, K}, bsh[3] = {2, K, N};
    for (int di = 0; di < 2; di++) {
        pn_dtype dt = di ? PN_FLOAT32 : PN_FLOAT64;
        double tol = di ? 1e-5 : 1e-12;
        pn_array *a = test_random_array(ash, 4, dt, -1, 1), *b = test_random_array(bsh, 3, dt, -1, 1);
        double *av = test_to_f64(a), *bv = test_to_f64(b);
        /* explicit indices broadcasting (2, 1) against (3,): out (2, 3, M, N) */
        const int32_t li[2] = {0, 5}, ri[3] = {1, 0, 1};
        pn_array *l = idx_array(li, (int64_t[]){2, 1}, 2), *r = idx_array(ri, (int64_t[]){3}, 1);
        double ref[2 * 3 * M * N];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                ref_mm(av + li[i] * M * K, bv + ri[j] * K * N, M, K, N, NULL, NULL, ref + (i * 3 + j) * M * N);
        pn_array *out = pn_gather_mm(a, b, l, r, false);
        CHECK_OK(out);
        test_check_values("gather_mm explicit", out, (int64_t[]){2, 3, M, N}, 4, dt, ref, tol, tol);
        /* default indices: a's batch (3, 2) broadcast with b's (2,) -> plain broadcast matmul */
        double ref2[6 * M * N];
        for (int i = 0; i < 6; i++) ref_mm(av + i * M * K, bv + (i % 2) * K * N, M, K, N, NULL, NULL, ref2 + i * M * N);
        out = pn_gather_mm(a, b, NULL, NULL, false);
        test_check_values("gather_mm default", out, (int64_t[]){3, 2, M, N}, 4, dt, ref2, tol, tol);
        /* only rhs indices, unbatched a (M, K): (3, M, N) */
        pn_array *a2 = test_random_array((int64_t[]){M, K}, 2, dt, -1, 1);
        double *a2v = test_to_f64(a2), ref3[3 * M * N];
        for (int j = 0; j < 3; j++) ref_mm(a2v, bv + ri[j] * K * N, M, K, N, NULL, NULL, ref3 + j * M * N);
        out = pn_gather_mm(a2, b, NULL, r, true);
        test_check_values("gather_mm rhs only", out, (int64_t[]){3, M, N}, 3, dt, ref3, tol, tol);
        /* a vector operand: (K,) @ b[ri] -> (3, N) */
        pn_array *v = test_random_array((int64_t[]){K}, 1, dt, -1, 1);
        double *vv = test_to_f64(v), ref4[3 * N];
        for (int j = 0; j < 3; j++) ref_mm(vv, bv + ri[j] * K * N, 1, K, N, NULL, NULL, ref4 + j * N);
        out = pn_gather_mm(v, b, NULL, r, false);
        test_check_values("gather_mm vector", out, (int64_t[]){3, N}, 2, dt, ref4, tol, tol);
        free(av), free(bv), free(a2v), free(vv);
    }
    pn_scope_pop();
}

TEST(gather_mm_errors)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){2, 3, 4}, 3, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){2, 4, 5}, 3, PN_FLOAT32, -1, 1);
    pn_array *fi = pn_array_from_data((float[]){0, 1}, (int64_t[]){2}, 1, PN_FLOAT32);
    CHECK_ERR(pn_gather_mm(a, b, fi, NULL, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_mm(a, a, NULL, NULL, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_mm(pn_astype(a, PN_INT32), pn_astype(b, PN_INT32), NULL, NULL, false),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_mm(pn_scalar(1, PN_FLOAT32), b, NULL, NULL, false), PN_ERR_INVALID_ARGUMENT);
    pn_array *i3 = idx_array((int32_t[]){0, 1, 0}, (int64_t[]){3}, 1);
    pn_array *i2 = idx_array((int32_t[]){0, 1}, (int64_t[]){2}, 1);
    CHECK_ERR(pn_gather_mm(a, b, i3, i2, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_mm(NULL, b, NULL, NULL, false), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* Expands a block mask (br, bc) to (R, C) elements as float64 (bool: 0/1). */
static void expand_ref(const double *m, int64_t br, int64_t bc, int64_t R, int64_t C, int bs, double *out)
{
    (void)br;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) out[i * C + j] = m[(i / bs) * bc + j / bs];
}

TEST(block_masked_mm_values)
{
    pn_scope_push();
    const int bs = 4;
    const int64_t M = 10, K = 7, N = 9; /* not multiples of bs */
    const int64_t bm = 3, bk = 2, bn = 3;
    for (int variant = 0; variant < 4; variant++) {
        pn_scope_push();
        bool batched = variant & 1, float_masks = variant & 2;
        int64_t B = batched ? 2 : 1;
        pn_dtype mdt = float_masks ? PN_FLOAT32 : PN_BOOL;
        int64_t ash[3] = {B, M, K}, bsh[2] = {K, N};
        pn_array *a = test_random_array(batched ? ash : ash + 1, batched ? 3 : 2, PN_FLOAT64, -1, 1);
        pn_array *b = test_random_array(bsh, 2, PN_FLOAT64, -1, 1);
        int64_t mlsh[3] = {B, bm, bk}, mrsh[2] = {bk, bn}, mosh[3] = {B, bm, bn};
        double lo = float_masks ? -1 : 0, hi = float_masks ? 2 : 1;
        pn_array *ml = test_random_array(batched ? mlsh : mlsh + 1, batched ? 3 : 2, mdt, lo, hi);
        pn_array *mr = test_random_array(mrsh, 2, mdt, lo, hi);
        pn_array *mo = test_random_array(batched ? mosh : mosh + 1, batched ? 3 : 2, mdt, lo, hi);
        double *av = test_to_f64(a), *bv = test_to_f64(b), *mlv = test_to_f64(ml), *mrv = test_to_f64(mr),
               *mov = test_to_f64(mo);
        double *ref = malloc(sizeof(double) * B * M * N), *wa = malloc(sizeof(double) * M * K),
               *wb = malloc(sizeof(double) * K * N), *wo = malloc(sizeof(double) * M * N);
        expand_ref(mrv, bk, bn, K, N, bs, wb);
        for (int64_t t = 0; t < B; t++) {
            expand_ref(mlv + t * bm * bk, bm, bk, M, K, bs, wa);
            expand_ref(mov + t * bm * bn, bm, bn, M, N, bs, wo);
            ref_mm(av + t * M * K, bv, M, K, N, wa, wb, ref + t * M * N);
            for (int64_t i = 0; i < M * N; i++) ref[t * M * N + i] *= wo[i];
        }
        pn_array *out = pn_block_masked_mm(a, b, bs, mo, ml, mr);
        CHECK_OK(out);
        test_check_values("block_masked_mm", out, batched ? (int64_t[]){B, M, N} : (int64_t[]){M, N},
                          batched ? 3 : 2, PN_FLOAT64, ref, 1e-12, 1e-12);
        /* no masks: plain matmul */
        for (int64_t t = 0; t < B; t++) ref_mm(av + t * M * K, bv, M, K, N, NULL, NULL, ref + t * M * N);
        out = pn_block_masked_mm(a, b, 64, NULL, NULL, NULL);
        test_check_values("block_masked_mm unmasked", out,
                          batched ? (int64_t[]){B, M, N} : (int64_t[]){M, N}, batched ? 3 : 2,
                          PN_FLOAT64, ref, 1e-12, 1e-12);
        free(av), free(bv), free(mlv), free(mrv), free(mov), free(ref), free(wa), free(wb), free(wo);
        pn_scope_pop();
    }
    /* a masked-out block holding NaN contributes zero (bool masks select, not multiply) */
    pn_array *a = pn_full((int64_t[]){2, 2}, 2, pn_scalar(NAN, PN_FLOAT32), PN_FLOAT32);
    pn_array *b = pn_ones((int64_t[]){2, 2}, 2, PN_FLOAT32);
    bool f = false;
    pn_array *m0 = pn_array_from_data(&f, (int64_t[]){1, 1}, 2, PN_BOOL);
    double zeros[4] = {0};
    test_check_values("block_masked_mm NaN block", pn_block_masked_mm(a, b, 32, NULL, m0, NULL),
                      (int64_t[]){2, 2}, 2, PN_FLOAT32, zeros, 0, 0);
    pn_scope_pop();
}

TEST(block_masked_mm_errors)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){8, 6}, 2, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){6, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *good = pn_ones((int64_t[]){2, 2}, 2, PN_BOOL);
    pn_array *bad = pn_ones((int64_t[]){3, 2}, 2, PN_BOOL);
    CHECK_OK(pn_block_masked_mm(a, b, 4, NULL, good, NULL));
    CHECK_ERR(pn_block_masked_mm(a, b, 4, NULL, bad, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_block_masked_mm(a, b, 4, pn_ones((int64_t[]){2}, 1, PN_BOOL), NULL, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_block_masked_mm(a, b, 4, pn_ones((int64_t[]){2, 2}, 2, PN_INT32), NULL, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_block_masked_mm(a, b, 0, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_block_masked_mm(a, a, 4, NULL, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_block_masked_mm(pn_astype(a, PN_INT32), pn_astype(b, PN_INT32), 4, NULL, NULL, NULL),
              PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(segmented_mm_values)
{
    pn_scope_push();
    const int64_t M = 3, K = 8, N = 4;
    pn_array *a = test_random_array((int64_t[]){M, K}, 2, PN_FLOAT64, -1, 1);
    pn_array *b = test_random_array((int64_t[]){K, N}, 2, PN_FLOAT64, -1, 1);
    double *av = test_to_f64(a), *bv = test_to_f64(b);
    /* (2, 3, 2) segments: ordinary, empty, reversed, whole, out of range */
    const int32_t seg[12] = {0, 3, 3, 8, 5, 5, 6, 2, 0, 8, 6, 20};
    pn_array *s = idx_array(seg, (int64_t[]){2, 3, 2}, 3);
    double ref[6 * M * N];
    for (int q = 0; q < 6; q++) {
        double *wa = calloc(M * K, sizeof *wa);
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) wa[i * K + k] = k >= seg[2 * q] && k < seg[2 * q + 1];
        ref_mm(av, bv, M, K, N, wa, NULL, ref + q * M * N);
        free(wa);
    }
    pn_array *out = pn_segmented_mm(a, b, s);
    CHECK_OK(out);
    test_check_values("segmented_mm", out, (int64_t[]){2, 3, M, N}, 4, PN_FLOAT64, ref, 1e-12, 1e-12);
    /* one segment as a (2,) array: (M, N) */
    out = pn_segmented_mm(a, b, idx_array(seg, (int64_t[]){2}, 1));
    test_check_values("segmented_mm single", out, (int64_t[]){M, N}, 2, PN_FLOAT64, ref, 1e-12, 1e-12);
    CHECK_ERR(pn_segmented_mm(a, b, idx_array(seg, (int64_t[]){4, 3}, 2)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_segmented_mm(a, b, pn_astype(s, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_segmented_mm(pn_expand_dims(a, (int[]){0}, 1), b, s), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_segmented_mm(b, b, s), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_segmented_mm(pn_astype(a, PN_INT32), pn_astype(b, PN_INT32), s), PN_ERR_INVALID_ARGUMENT);
    free(av), free(bv);
    pn_scope_pop();
}

/* Gradient checks: each case builds one output from (a, b). */
typedef struct {
    int which;
    pn_array *i1, *i2;
} gcase;

static pn_array *variant_op(void *ctx, pn_array *const *in)
{
    const gcase *c = ctx;
    switch (c->which) {
    case 0: return pn_gather_mm(in[0], in[1], c->i1, c->i2, false);
    case 1: return pn_block_masked_mm(in[0], in[1], 2, c->i1, c->i2, NULL);
    case 2: return pn_segmented_mm(in[0], in[1], c->i1);
    default: {
        pn_array *out;
        return pn_depends(&in[0], 1, &in[1], 1, &out) ? NULL : pn_multiply(out, in[0]);
    }
    }
}

TEST(matmul_variants_gradients)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){3, 4, 5}, 3, PN_FLOAT64, -1, 1);
    pn_array *b = test_random_array((int64_t[]){2, 5, 3}, 3, PN_FLOAT64, -1, 1);
    gcase g0 = {0, idx_array((int32_t[]){2, 0, 2}, (int64_t[]){3}, 1),
                idx_array((int32_t[]){1, 1, 0}, (int64_t[]){3}, 1)};
    test_gradcheck("gather_mm", variant_op, &g0, 2, (pn_array *[]){a, b}, 1e-6);
    pn_array *a2 = test_random_array((int64_t[]){5, 4}, 2, PN_FLOAT64, -1, 1);
    pn_array *b2 = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT64, -1, 1);
    bool mo[6] = {true, false, true, true, false, true}, ml[6] = {true, true, false, true, true, false};
    gcase g1 = {1, pn_array_from_data(mo, (int64_t[]){3, 2}, 2, PN_BOOL),
                pn_array_from_data(ml, (int64_t[]){3, 2}, 2, PN_BOOL)};
    test_gradcheck("block_masked_mm", variant_op, &g1, 2, (pn_array *[]){a2, b2}, 1e-6);
    gcase g2 = {2, idx_array((int32_t[]){0, 2, 1, 4, 3, 3}, (int64_t[]){3, 2}, 2), NULL};
    test_gradcheck("segmented_mm", variant_op, &g2, 2, (pn_array *[]){a2, b2}, 1e-6);
    gcase g3 = {3, NULL, NULL};
    test_gradcheck("depends", variant_op, &g3, 2, (pn_array *[]){a2, a2}, 1e-6);
    pn_scope_pop();
}

TEST(depends_values_and_errors)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *y = test_random_array((int64_t[]){4}, 1, PN_FLOAT32, -1, 1);
    pn_array *dep = pn_exp(y), *in[2] = {x, pn_negative(x)}, *out[2];
    CHECK(pn_depends(in, 2, &dep, 1, out) == 0);
    double *xv = test_to_f64(x), neg[6];
    for (int i = 0; i < 6; i++) neg[i] = -xv[i];
    test_check_values("depends 0", out[0], (int64_t[]){2, 3}, 2, PN_FLOAT32, xv, 0, 0);
    test_check_values("depends 1", out[1], (int64_t[]){2, 3}, 2, PN_FLOAT32, neg, 0, 0);
    /* evaluating the output evaluated the dependency */
    CHECK(pn_is_evaluated(dep));
    /* no dependencies: still the same values */
    CHECK(pn_depends(&x, 1, NULL, 0, out) == 0);
    test_check_values("depends none", out[0], (int64_t[]){2, 3}, 2, PN_FLOAT32, xv, 0, 0);
    pn_clear_error();
    pn_array *bad = NULL;
    CHECK(pn_depends(&x, 1, &bad, 1, out) == -1 && out[0] == NULL);
    pn_clear_error();
    CHECK(pn_depends(&x, -1, NULL, 0, out) == -1);
    pn_clear_error();
    free(xv);
    pn_scope_pop();
}
