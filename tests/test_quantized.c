/* test_quantized.c — quantize, dequantize and quantized_matmul (src/ops/quantized.c) against
 * references computed here: the packed bits read back element by element for every bits and
 * group size, MLX's quantization formula, the round-trip error bound, products against float64
 * matmuls of the dequantized weights (both transposes, batched and broadcast, 1-d x, every
 * dtype, both CPU paths), vmap, gradients by finite differences, and the errors. */
#include "harness.h"

#include <string.h>

static const int all_bits[] = {1, 2, 3, 4, 5, 6, 8};
static const int all_groups[] = {32, 64, 128};

/* Value i of a row of packed words: bits [i * bits, (i + 1) * bits) of the little-endian
 * bit stream, read one bit at a time. */
static int ref_unpack(const uint32_t *row, int bits, int64_t i)
{
    int v = 0;
    for (int b = 0; b < bits; b++) {
        int64_t bit = i * bits + b;
        v |= (int)((row[bit / 32] >> (bit % 32)) & 1u) << b;
    }
    return v;
}

/* MLX's affine quantization of one group of n floats (float arithmetic): q, scale, bias. */
static void ref_quantize_group(const float *v, int n, int bits, int *q, float *scale, float *bias)
{
    float mx = v[0], mn = v[0];
    for (int i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx, mn = v[i] < mn ? v[i] : mn;
    float levels = (float)((1 << bits) - 1), s, b;
    if (bits == 1) {
        s = fmaxf(mx - mn, 1e-7f), b = mn;
    } else {
        float edge = fabsf(mn) > fabsf(mx) ? mn : mx;
        s = fmaxf((mx - mn) / levels, 1e-7f);
        if (edge != mn) s = -s;
        float q0 = rintf(edge / s);
        b = 0;
        if (q0 != 0) s = edge / q0, b = edge;
    }
    for (int i = 0; i < n; i++) q[i] = (int)fminf(fmaxf(rintf((v[i] - b) / s), 0), levels);
    *scale = s, *bias = b;
}

/* The dequantized matrix of (w_q, scales, biases) as float64 s * q + b (rows x k values). */
static double *ref_dequantize(pn_array *wq, pn_array *scales, pn_array *biases, int gs, int bits)
{
    const uint32_t *w = pn_data(wq);
    double *s = test_to_f64(scales), *b = test_to_f64(biases);
    int64_t words = pn_dim(wq, -1), k = words * 32 / bits, rows = pn_size(wq) / words;
    double *r = malloc(sizeof(double) * (size_t)(rows * k + 1));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < k; j++)
            r[i * k + j] = s[i * (k / gs) + j / gs] * ref_unpack(w + i * words, bits, j) +
                           b[i * (k / gs) + j / gs];
    free(s), free(b);
    return r;
}

TEST(quantize_bits_exact_for_every_bits_and_group)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16};
    for (int di = 0; di < 3; di++)
        for (int bi = 0; bi < 7; bi++)
            for (int gi = 0; gi < 3; gi++) {
                pn_scope_push();
                int bits = all_bits[bi], gs = all_groups[gi];
                int64_t shape[3] = {2, 3, 2 * gs};
                pn_array *w = test_random_array(shape, 3, dts[di], -2, 3), *out[3];
                CHECK(pn_quantize(w, gs, bits, NULL, out) == 0);
                CHECK_OK(out[0]);
                if (!out[0]) {
                    pn_scope_pop();
                    continue;
                }
                CHECK(pn_array_dtype(out[0]) == PN_UINT32 && pn_array_dtype(out[1]) == dts[di] &&
                      pn_array_dtype(out[2]) == dts[di]);
                CHECK(pn_dim(out[0], -1) == 2 * gs * bits / 32 && pn_dim(out[1], -1) == 2 &&
                      pn_dim(out[2], 0) == 2 && pn_ndim(out[1]) == 3);
                double *wv = test_to_f64(w), *sv = test_to_f64(out[1]), *bv = test_to_f64(out[2]);
                const uint32_t *qw = pn_data(out[0]);
                int64_t words = pn_dim(out[0], -1), bad = 0;
                for (int64_t g = 0; g < 12; g++) {
                    float v[128] = {0}, s, b;
                    int q[128];
                    for (int i = 0; i < gs; i++) v[i] = (float)wv[g * gs + i];
                    ref_quantize_group(v, gs, bits, q, &s, &b);
                    /* scales and biases are stored in w's dtype */
                    double *s_ref = test_to_f64(pn_scalar(s, dts[di]));
                    double *b_ref = test_to_f64(pn_scalar(b, dts[di]));
                    bad += sv[g] != s_ref[0] || bv[g] != b_ref[0];
                    free(s_ref), free(b_ref);
                    for (int i = 0; i < gs; i++) {
                        int64_t row = g / 2, col = (g % 2) * gs + i;
                        bad += ref_unpack(qw + row * words, bits, col) != q[i];
                    }
                }
                CHECK_MSG(bad == 0, "%s bits %d group %d: %lld mismatches", pn_dtype_name(dts[di]),
                          bits, gs, (long long)bad);
                free(wv), free(sv), free(bv);
                pn_scope_pop();
            }
    pn_scope_pop();
}

TEST(quantize_edge_groups)
{
    pn_scope_push();
    /* a constant group, a zero group, a negative group and a mixed one */
    float w[4][32];
    for (int i = 0; i < 32; i++)
        w[0][i] = 0.5f, w[1][i] = 0, w[2][i] = -1.0f - (float)i / 16, w[3][i] = (float)i - 10;
    int64_t shape[2] = {4, 32};
    pn_array *a = pn_array_from_data(w, shape, 2, PN_FLOAT32), *out[3];
    CHECK(pn_quantize(a, 32, 4, "affine", out) == 0);
    double *s = test_to_f64(out[1]), *b = test_to_f64(out[2]);
    CHECK(s[0] == (double)(0.5f / rintf(0.5f / -1e-7f)) && b[0] == 0.5);
    CHECK(s[1] == (double)-1e-7f && b[1] == 0);
    CHECK(b[2] == (double)w[2][31] && s[2] > 0); /* the negative end is exact */
    pn_array *d = pn_dequantize(out[0], out[1], out[2], 32, 4, NULL, PN_NUM_DTYPES);
    double *dv = test_to_f64(d);
    CHECK(dv[0] == 0.5 && dv[32] == 0 && dv[2 * 32 + 31] == (double)w[2][31]);
    free(s), free(b), free(dv);
    pn_scope_pop();
}

TEST(dequantize_round_trip_within_half_a_step)
{
    pn_scope_push();
    for (int bi = 0; bi < 7; bi++)
        for (int gi = 0; gi < 3; gi++) {
            pn_scope_push();
            int bits = all_bits[bi], gs = all_groups[gi];
            int64_t shape[2] = {5, 3 * gs};
            pn_array *w = test_random_array(shape, 2, PN_FLOAT32, -1, 2), *q[3];
            CHECK(pn_quantize(w, gs, bits, NULL, q) == 0);
            pn_array *d = pn_dequantize(q[0], q[1], q[2], gs, bits, NULL, PN_NUM_DTYPES);
            CHECK_OK(d);
            double *ref = ref_dequantize(q[0], q[1], q[2], gs, bits);
            test_check_values("dequantize", d, shape, 2, PN_FLOAT32, ref, 1e-6, 1e-6);
            /* within half a step of w inside the grid's span; the nearest end level outside
             * it (making the larger end exact can leave the other end just outside) */
            double *wv = test_to_f64(w), *sv = test_to_f64(q[1]), *bv = test_to_f64(q[2]);
            double *dv = test_to_f64(d);
            int64_t bad = 0;
            for (int64_t i = 0; i < 15 * gs; i++) {
                double s = sv[i / gs], b = bv[i / gs], e = b + s * ((1 << bits) - 1);
                double lo = fmin(b, e), hi = fmax(b, e), tol = 1e-6 * (1 + fabs(wv[i]));
                if (wv[i] >= lo - tol && wv[i] <= hi + tol)
                    bad += fabs(dv[i] - wv[i]) > fabs(s) * 0.5 + tol;
                else
                    bad += fabs(dv[i] - fmin(fmax(wv[i], lo), hi)) > tol;
            }
            CHECK_MSG(bad == 0, "bits %d group %d: %lld elements beyond scale/2", bits, gs,
                      (long long)bad);
            free(bv);
            /* other output dtypes: cast after computing in the scales' dtype */
            pn_array *d16 = pn_dequantize(q[0], q[1], q[2], gs, bits, NULL, PN_FLOAT16);
            CHECK(pn_array_dtype(d16) == PN_FLOAT16);
            CHECK(pn_array_equal(d16, pn_astype(d, PN_FLOAT16), false) &&
                  pn_item(pn_array_equal(d16, pn_astype(d, PN_FLOAT16), false)) == 1);
            free(ref), free(wv), free(sv), free(dv);
            pn_scope_pop();
        }
    pn_scope_pop();
}

TEST(dequantize_half_types_round_each_operation)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (int di = 0; di < 3; di++) {
        int64_t shape[3] = {2, 4, 128};
        pn_array *w = test_random_array(shape, 3, dts[di], -3, 3), *q[3];
        CHECK(pn_quantize(w, 64, 5, NULL, q) == 0);
        pn_array *d = pn_dequantize(q[0], q[1], q[2], 64, 5, NULL, PN_NUM_DTYPES);
        CHECK(pn_array_dtype(d) == dts[di]);
        /* T(T(s q) + b) through ops in T */
        pn_array *qv = pn_dequantize(q[0], pn_ones_like(q[1]), pn_zeros_like(q[2]), 64, 5, NULL,
                                     PN_NUM_DTYPES);
        int64_t gshape[4] = {2, 4, 2, 64}, sshape[4] = {2, 4, 2, 1};
        pn_array *ref = pn_reshape(pn_add(pn_multiply(pn_reshape(qv, gshape, 4),
                                                      pn_reshape(q[1], sshape, 4)),
                                          pn_reshape(q[2], sshape, 4)),
                                   shape, 3);
        CHECK(pn_item(pn_array_equal(d, ref, false)) == 1);
    }
    pn_scope_pop();
}

/* One quantized_matmul case against the float64 product with the dequantized weights. */
typedef struct qmm_case {
    int64_t xshape[4];
    int xnd;
    int64_t wbatch[2]; /* batch dims of W */
    int wbnd;
    int64_t n, k;
    bool transpose;
    int gs, bits;
    pn_dtype dtype;
} qmm_case;

static void run_qmm_case(const qmm_case *c)
{
    pn_scope_push();
    int64_t ws[4];
    memcpy(ws, c->wbatch, sizeof(int64_t) * c->wbnd);
    ws[c->wbnd] = c->transpose ? c->n : c->k;
    ws[c->wbnd + 1] = c->transpose ? c->k : c->n;
    pn_array *w = test_random_array(ws, c->wbnd + 2, PN_FLOAT32, -1, 1), *q[3];
    pn_array *x = test_random_array(c->xshape, c->xnd, c->dtype, -1, 1);
    CHECK(pn_quantize(pn_astype(w, c->dtype), c->gs, c->bits, NULL, q) == 0);
    pn_array *y = pn_quantized_matmul(x, q[0], q[1], q[2], c->transpose, c->gs, c->bits, NULL);
    CHECK_OK(y);
    if (!y) {
        pn_scope_pop();
        return;
    }
    /* reference: float64 matmul of x and the float64 dequantized W */
    double *wdv = ref_dequantize(q[0], q[1], q[2], c->gs, c->bits);
    pn_array *wd = pn_array_from_data(wdv, ws, c->wbnd + 2, PN_FLOAT64);
    free(wdv);
    pn_array *ref = pn_matmul(pn_astype(x, PN_FLOAT64), c->transpose ? pn_swapaxes(wd, -1, -2) : wd);
    double *rv = test_to_f64(ref);
    double tol = c->dtype == PN_FLOAT64 ? 1e-12 : c->dtype == PN_FLOAT32 ? 2e-5 : 2e-2;
    char what[128];
    snprintf(what, sizeof what, "qmm %s bits %d gs %d T %d x %dd w batch %d", pn_dtype_name(c->dtype),
             c->bits, c->gs, c->transpose, c->xnd, c->wbnd);
    test_check_values(what, y, pn_shape(ref), pn_ndim(ref), c->dtype, rv, tol, tol * 4);
    free(rv);
    pn_scope_pop();
}

TEST(quantized_matmul_against_float64)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    const int q = test_quick();
    for (int di = 0; di < 4; di++)
        for (int bi = 0; bi < 7; bi++)
            for (int tr = 0; tr < 2; tr++) {
                int bits = all_bits[bi], gs = all_groups[(bi + tr) % 3];
                /* decode (M = 1, 3) and GEMM (M = 37) sizes */
                qmm_case cs[] = {
                    {{gs * 2}, 1, {0}, 0, tr ? 64 : gs, gs * 2, tr, gs, bits, dts[di]},
                    {{3, gs}, 2, {0}, 0, tr ? 40 : gs, gs, tr, gs, bits, dts[di]},
                    {{q ? 9 : 37, gs * 3}, 2, {0}, 0, gs, gs * 3, tr, gs, bits, dts[di]},
                    {{2, 5, gs}, 3, {0}, 0, tr ? 96 : 2 * gs, gs, tr, gs, bits, dts[di]},
                };
                for (int k = 0; k < 4; k++) run_qmm_case(&cs[k]);
            }
    pn_scope_pop();
}

TEST(quantized_matmul_batched_weights_broadcast)
{
    pn_scope_push();
    qmm_case cs[] = {
        /* x batch matches W batch */
        {{2, 3, 64}, 3, {2}, 1, 32, 64, true, 64, 4, PN_FLOAT32},
        {{2, 3, 32}, 3, {2}, 1, 64, 32, false, 32, 3, PN_FLOAT32},
        /* x broadcast over W's batch, and W over x's */
        {{3, 64}, 2, {2}, 1, 16, 64, true, 64, 8, PN_FLOAT32},
        {{4, 1, 2, 128}, 4, {1, 3}, 2, 32, 128, true, 128, 2, PN_FLOAT16},
        {{2, 1, 10, 64}, 4, {3}, 1, 64, 64, false, 64, 6, PN_FLOAT64},
        /* many rows through the GEMM path with a batched W */
        {{2, 20, 64}, 3, {2}, 1, 96, 64, true, 32, 5, PN_FLOAT32},
    };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) run_qmm_case(&cs[k]);
    pn_scope_pop();
}

TEST(quantized_matmul_promotes_and_takes_strided_inputs)
{
    pn_scope_push();
    int64_t ws[2] = {16, 64}, xs[2] = {64, 5};
    pn_array *w = test_random_array(ws, 2, PN_FLOAT16, -1, 1), *q[3];
    CHECK(pn_quantize(w, 32, 4, NULL, q) == 0);
    /* a float32 x with float16 scales gives float32; x given as a transposed view */
    pn_array *xt = test_random_array(xs, 2, PN_FLOAT32, -1, 1);
    pn_array *x = pn_transpose(xt, NULL, 0);
    pn_array *y = pn_quantized_matmul(x, q[0], q[1], q[2], true, 32, 4, NULL);
    CHECK(pn_array_dtype(y) == PN_FLOAT32);
    double *wdv = ref_dequantize(q[0], q[1], q[2], 32, 4);
    pn_array *wd = pn_array_from_data(wdv, ws, 2, PN_FLOAT64);
    free(wdv);
    pn_array *ref = pn_matmul(pn_astype(x, PN_FLOAT64), pn_swapaxes(wd, -1, -2));
    CHECK(pn_item(pn_allclose(y, ref, 1e-4, 1e-4, false)) == 1);
    /* an int32 x promotes with the float16 scales to float16 */
    pn_array *yi = pn_quantized_matmul(test_random_array((int64_t[]){2, 64}, 2, PN_INT32, -3, 3),
                                       q[0], q[1], q[2], true, 32, 4, NULL);
    CHECK(yi && pn_array_dtype(yi) == PN_FLOAT16);
    /* empty x */
    pn_array *ye = pn_quantized_matmul(pn_zeros((int64_t[]){0, 64}, 2, PN_FLOAT32), q[0], q[1],
                                       q[2], true, 32, 4, NULL);
    CHECK(ye && pn_dim(ye, 0) == 0 && pn_dim(ye, 1) == 16 && pn_eval(&ye, 1) == 0);
    pn_scope_pop();
}

TEST(quantization_errors)
{
    pn_scope_push();
    int64_t ws[2] = {4, 64};
    pn_array *w = test_random_array(ws, 2, PN_FLOAT32, -1, 1), *q[3];
    CHECK(pn_quantize(w, 64, 4, NULL, q) == 0);
    pn_array *x = test_random_array((int64_t[]){3, 64}, 2, PN_FLOAT32, -1, 1);
    /* quantize */
    pn_array *o[3];
    pn_clear_error();
    CHECK(pn_quantize(pn_reshape(w, (int64_t[]){256}, 1), 64, 4, NULL, o) < 0 && !o[0]);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_quantize(test_random_array((int64_t[]){2, 48}, 2, PN_FLOAT32, 0, 1), 64, 4, NULL, o) < 0);
    CHECK(strstr(pn_last_error_message(), "divisible") != NULL);
    pn_clear_error();
    CHECK(pn_quantize(w, 64, 7, NULL, o) < 0 && strstr(pn_last_error_message(), "bits 7"));
    pn_clear_error();
    CHECK(pn_quantize(w, 16, 4, NULL, o) < 0 && strstr(pn_last_error_message(), "group size 16"));
    pn_clear_error();
    CHECK(pn_quantize(pn_astype(w, PN_INT32), 64, 4, NULL, o) < 0);
    pn_clear_error();
    CHECK(pn_quantize(w, 64, 4, "foo", o) < 0 && strstr(pn_last_error_message(), "'foo'"));
    pn_clear_error();
    CHECK(pn_quantize(w, 32, 4, "mxfp4", o) < 0);
    pn_clear_error();
    CHECK(pn_quantize(NULL, 64, 4, NULL, o) < 0);
    pn_clear_error();
    /* dequantize */
    CHECK_ERR(pn_dequantize(q[0], q[1], NULL, 64, 4, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 32, 4, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 64, 8, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(pn_astype(q[0], PN_INT32), q[1], q[2], 64, 4, NULL, PN_NUM_DTYPES),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(pn_reshape(q[0], (int64_t[]){32}, 1), pn_reshape(q[1], (int64_t[]){4}, 1),
                            pn_reshape(q[2], (int64_t[]){4}, 1), 64, 4, NULL, PN_NUM_DTYPES),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 64, 4, NULL, PN_INT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], pn_zeros((int64_t[]){4, 2}, 2, PN_FLOAT32), 64, 4, NULL,
                            PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    /* quantized_matmul */
    CHECK_ERR(pn_quantized_matmul(test_random_array((int64_t[]){3, 32}, 2, PN_FLOAT32, 0, 1), q[0],
                                  q[1], q[2], true, 64, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q[0], q[1], q[2], false, 64, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q[0], q[1], NULL, true, 64, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, pn_astype(q[0], PN_INT32), q[1], q[2], true, 64, 4, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q[0], q[1], q[2], true, 64, 7, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q[0], q[1], q[2], true, 128, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q[0], pn_zeros((int64_t[]){4, 2}, 2, PN_FLOAT32),
                                  pn_zeros((int64_t[]){4, 2}, 2, PN_FLOAT32), true, 64, 4, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(pn_scalar(1, PN_FLOAT32), q[0], q[1], q[2], true, 64, 4, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(pn_astype(x, PN_COMPLEX64), q[0], q[1], q[2], true, 64, 4, NULL),
              PN_ERR_INVALID_ARGUMENT);
    /* batch shapes that do not broadcast */
    pn_array *w3 = test_random_array((int64_t[]){3, 4, 64}, 3, PN_FLOAT32, -1, 1), *q3[3];
    CHECK(pn_quantize(w3, 64, 4, NULL, q3) == 0);
    CHECK_ERR(pn_quantized_matmul(test_random_array((int64_t[]){2, 5, 64}, 3, PN_FLOAT32, 0, 1),
                                  q3[0], q3[1], q3[2], true, 64, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(x, q3[0], q[1], q[2], true, 64, 4, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── derivatives ───────────────────────────── */

/* Closures over (x, w_q, scales, biases) with group size 32 and 4 bits: the product, and the
 * sum of the product. */
static int qmm_plain(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_quantized_matmul(in[0], in[1], in[2], in[3], true, 32, 4, NULL);
    *nout = 1;
    return out[0] ? 0 : -1;
}
static int qmm_sum(void *ctx, int n, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_quantized_matmul(in[0], in[1], in[2], in[3], true, 32, 6, NULL), NULL, 0,
                    false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

typedef struct grad_ctx {
    pn_array *wq;
    bool transpose;
    int gs, bits;
} grad_ctx;

/* in = (x, scales, biases) */
static pn_array *qmm_fn(void *c, pn_array *const *in)
{
    grad_ctx *g = c;
    return pn_quantized_matmul(in[0], g->wq, in[1], in[2], g->transpose, g->gs, g->bits, NULL);
}
/* in = (scales, biases); the output squared so the cotangent path is not trivial */
static pn_array *deq_fn(void *c, pn_array *const *in)
{
    grad_ctx *g = c;
    pn_array *d = pn_dequantize(g->wq, in[0], in[1], g->gs, g->bits, NULL, PN_NUM_DTYPES);
    return pn_multiply(d, d);
}

TEST(quantized_matmul_gradients)
{
    pn_scope_push();
    for (int tr = 0; tr < 2; tr++)
        for (int bi = 0; bi < 2; bi++) {
            pn_scope_push();
            int bits = bi ? 3 : 4, gs = 32;
            int64_t ws[3] = {2, tr ? 6 : 32, tr ? 32 : 64};
            pn_array *w = test_random_array(ws, 3, PN_FLOAT64, -1, 1), *q[3];
            CHECK(pn_quantize(pn_astype(w, PN_FLOAT32), gs, bits, NULL, q) == 0);
            grad_ctx g = {q[0], tr, gs, bits};
            pn_array *in[3] = {test_random_array((int64_t[]){3, 2, 4, 32}, 4, PN_FLOAT64, -1, 1),
                               pn_astype(q[1], PN_FLOAT64), pn_astype(q[2], PN_FLOAT64)};
            test_gradcheck(tr ? "qmm transpose" : "qmm", qmm_fn, &g, 3, in, 1e-6);
            /* 1-d x with a 2-d W */
            pn_array *w2 = test_random_array(ws + 1, 2, PN_FLOAT32, -1, 1), *q2[3];
            CHECK(pn_quantize(w2, gs, bits, NULL, q2) == 0);
            grad_ctx g2 = {q2[0], tr, gs, bits};
            pn_array *in2[3] = {test_random_array((int64_t[]){32}, 1, PN_FLOAT64, -1, 1),
                                pn_astype(q2[1], PN_FLOAT64), pn_astype(q2[2], PN_FLOAT64)};
            test_gradcheck("qmm 1-d x", qmm_fn, &g2, 3, in2, 1e-6);
            pn_scope_pop();
        }
    pn_scope_pop();
}

TEST(dequantize_gradients_and_no_gradient_for_the_packed_matrix)
{
    pn_scope_push();
    pn_array *w = test_random_array((int64_t[]){3, 64}, 2, PN_FLOAT32, -1, 1), *q[3];
    CHECK(pn_quantize(w, 32, 6, NULL, q) == 0);
    grad_ctx g = {q[0], false, 32, 6};
    pn_array *in[2] = {pn_astype(q[1], PN_FLOAT64), pn_astype(q[2], PN_FLOAT64)};
    test_gradcheck("dequantize", deq_fn, &g, 2, in, 1e-6);
    /* the gradient with respect to w_q is an error, as in MLX; the others are fine */
    pn_array *x = test_random_array((int64_t[]){2, 64}, 2, PN_FLOAT32, -1, 1);
    pn_array *prim[4] = {x, q[0], q[1], q[2]};
    pn_closure *f = pn_closure_new(qmm_sum, NULL, NULL);
    int nout = 0;
    pn_array *outs[PN_MAX_OUTPUTS], *grads[4];
    pn_clear_error();
    CHECK(pn_value_and_grad_call(f, 4, prim, (int[]){1}, 1, &nout, outs, grads) < 0);
    CHECK(strstr(pn_last_error_message(), "quantized weights") != NULL);
    pn_clear_error();
    CHECK(pn_value_and_grad_call(f, 4, prim, (int[]){0, 2, 3}, 3, &nout, outs, grads) == 0);
    /* d sum / d bias = the column sums of x per group, broadcast over the rows */
    if (nout == 1) {
        pn_array *colsum = pn_sum(x, (int[]){0}, 1, false);
        pn_array *ref = pn_sum(pn_reshape(colsum, (int64_t[]){2, 32}, 2), (int[]){1}, 1, false);
        pn_array *gb = pn_reshape(grads[2], (int64_t[]){3, 2}, 2);
        CHECK(pn_item(pn_allclose(gb, pn_broadcast_to(ref, (int64_t[]){3, 2}, 2), 1e-5, 1e-5, false)) == 1);
    }
    pn_closure_release(f);
    pn_scope_pop();
}

TEST(quantized_matmul_vmap)
{
    pn_scope_push();
    pn_array *w = test_random_array((int64_t[]){4, 10, 64}, 3, PN_FLOAT32, -1, 1), *q[3];
    CHECK(pn_quantize(w, 32, 4, NULL, q) == 0);
    pn_array *x = test_random_array((int64_t[]){3, 4, 64}, 3, PN_FLOAT32, -1, 1);
    /* x mapped along axis 1 with a shared W; then x, w_q, scales, biases all mapped */
    int cases[2][4] = {{1, -1, -1, -1}, {1, 0, 0, 0}};
    for (int k = 0; k < 2; k++) {
        pn_scope_push();
        pn_closure *f = pn_closure_new(qmm_plain, NULL, NULL);
        pn_closure *vf = pn_vmap(f, cases[k], 4, (int[]){0}, 1);
        pn_array *w2[3];
        for (int j = 0; j < 3; j++)
            w2[j] = k ? q[j] : pn_take(q[j], pn_scalar_int(1, PN_INT32), 0);
        pn_array *in[4] = {x, w2[0], w2[1], w2[2]}, *out[PN_MAX_OUTPUTS];
        int nout = 0;
        CHECK(pn_closure_call(vf, 4, in, &nout, out) == 0 && nout == 1);
        /* reference: one product per batch index, stacked */
        pn_array *rows[4];
        for (int b = 0; b < 4; b++) {
            pn_array *idx = pn_scalar_int(b, PN_INT32);
            pn_array *xb = pn_take(x, idx, 1);
            rows[b] = k ? pn_quantized_matmul(xb, pn_take(q[0], idx, 0), pn_take(q[1], idx, 0),
                                              pn_take(q[2], idx, 0), true, 32, 4, NULL)
                        : pn_quantized_matmul(xb, w2[0], w2[1], w2[2], true, 32, 4, NULL);
        }
        pn_array *ref = pn_stack(rows, 4, 0);
        CHECK(nout == 1 && pn_item(pn_allclose(out[0], ref, 1e-4, 1e-4, false)) == 1);
        pn_closure_release(vf);
        pn_closure_release(f);
        pn_scope_pop();
    }
    pn_scope_pop();
}
