/* test_quantized.c — quantize, dequantize, quantized_matmul and gather_qmm
 * (src/ops/quantized.c) in every mode against references computed here: the packed bits read back element by element for every bits and
 * group size, MLX's quantization formula, the round-trip error bound, products against float64
 * matmuls of the dequantized weights (both transposes, batched and broadcast, 1-d x, every
 * dtype, both CPU paths), vmap, gradients by finite differences, and the errors; for mxfp4,
 * mxfp8 and nvfp4 float64 codecs written from the formats (bit-exact codes and scales, values,
 * products, the nvfp4 global scale), gather_qmm against per-item products, and MLX's errors. */
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
                CHECK(pn_quantize(w, gs, bits, NULL, NULL, out) == 0);
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
    CHECK(pn_quantize(a, 32, 4, "affine", NULL, out) == 0);
    double *s = test_to_f64(out[1]), *b = test_to_f64(out[2]);
    CHECK(s[0] == (double)(0.5f / rintf(0.5f / -1e-7f)) && b[0] == 0.5);
    CHECK(s[1] == (double)-1e-7f && b[1] == 0);
    CHECK(b[2] == (double)w[2][31] && s[2] > 0); /* the negative end is exact */
    pn_array *d = pn_dequantize(out[0], out[1], out[2], 32, 4, NULL, NULL, PN_NUM_DTYPES);
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
            CHECK(pn_quantize(w, gs, bits, NULL, NULL, q) == 0);
            pn_array *d = pn_dequantize(q[0], q[1], q[2], gs, bits, NULL, NULL, PN_NUM_DTYPES);
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
            pn_array *d16 = pn_dequantize(q[0], q[1], q[2], gs, bits, NULL, NULL, PN_FLOAT16);
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
        CHECK(pn_quantize(w, 64, 5, NULL, NULL, q) == 0);
        pn_array *d = pn_dequantize(q[0], q[1], q[2], 64, 5, NULL, NULL, PN_NUM_DTYPES);
        CHECK(pn_array_dtype(d) == dts[di]);
        /* T(T(s q) + b) through ops in T */
        pn_array *qv = pn_dequantize(q[0], pn_ones_like(q[1]), pn_zeros_like(q[2]), 64, 5, NULL, NULL,
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
    CHECK(pn_quantize(pn_astype(w, c->dtype), c->gs, c->bits, NULL, NULL, q) == 0);
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

#ifdef PONTE_HAS_GPU
#include "backend/cuda/quantized.h"
#endif

/* Decoding-sized products (1 to 8 rows of x against W^T) with 2, 4 and 8 bits, groups of 64 and
 * 128, rows of several 16-byte runs: against float64, and on the GPU through the 16-byte
 * decoding kernel (pnG_qmv_vec_count), one launch per product. */
TEST(quantized_matmul_decoding_rows)
{
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16};
    const int bits[] = {2, 4, 8}, groups[] = {64, 128};
    int products = 0;
#ifdef PONTE_HAS_GPU
    const bool gpu = pn_default_device().type == PN_GPU;
    const int64_t before = pnG_qmv_vec_count();
#endif
    for (int di = 0; di < 3; di++)
        for (int bi = 0; bi < 3; bi++)
            for (int gi = 0; gi < 2; gi++) {
                const int gs = groups[gi];
                const int64_t m = 1 + (di * 3 + bi + gi) % 8; /* 1 to 8 rows */
                qmm_case c = {{m, gs * 5}, 2, {0}, 0, 72, gs * 5, true, gs, bits[bi], dts[di]};
                run_qmm_case(&c);
                products++;
            }
#ifdef PONTE_HAS_GPU
    if (gpu)
        CHECK_MSG(pnG_qmv_vec_count() - before == products, "%lld of %d products took the decoding kernel",
                  (long long)(pnG_qmv_vec_count() - before), products);
#else
    (void)products;
#endif
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
    CHECK(pn_quantize(w, 32, 4, NULL, NULL, q) == 0);
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
    CHECK(pn_quantize(w, 64, 4, NULL, NULL, q) == 0);
    pn_array *x = test_random_array((int64_t[]){3, 64}, 2, PN_FLOAT32, -1, 1);
    /* quantize */
    pn_array *o[3];
    pn_clear_error();
    CHECK(pn_quantize(pn_reshape(w, (int64_t[]){256}, 1), 64, 4, NULL, NULL, o) < 0 && !o[0]);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_quantize(test_random_array((int64_t[]){2, 48}, 2, PN_FLOAT32, 0, 1), 64, 4, NULL, NULL, o) < 0);
    CHECK(strstr(pn_last_error_message(), "divisible") != NULL);
    pn_clear_error();
    CHECK(pn_quantize(w, 64, 7, NULL, NULL, o) < 0 && strstr(pn_last_error_message(), "bits 7"));
    pn_clear_error();
    CHECK(pn_quantize(w, 16, 4, NULL, NULL, o) < 0 && strstr(pn_last_error_message(), "group size 16"));
    pn_clear_error();
    CHECK(pn_quantize(pn_astype(w, PN_INT32), 64, 4, NULL, NULL, o) < 0);
    pn_clear_error();
    CHECK(pn_quantize(w, 64, 4, "foo", NULL, o) < 0 && strstr(pn_last_error_message(), "'foo'"));
    pn_clear_error();
    CHECK(pn_quantize(w, 64, 4, "mxfp4", NULL, o) < 0 &&
          strstr(pn_last_error_message(), "mxfp4 quantization requires group size 32 but got 64"));
    pn_clear_error();
    CHECK(pn_quantize(NULL, 64, 4, NULL, NULL, o) < 0);
    pn_clear_error();
    /* dequantize */
    CHECK_ERR(pn_dequantize(q[0], q[1], NULL, 64, 4, NULL, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 32, 4, NULL, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 64, 8, NULL, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(pn_astype(q[0], PN_INT32), q[1], q[2], 64, 4, NULL, NULL, PN_NUM_DTYPES),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(pn_reshape(q[0], (int64_t[]){32}, 1), pn_reshape(q[1], (int64_t[]){4}, 1),
                            pn_reshape(q[2], (int64_t[]){4}, 1), 64, 4, NULL, NULL, PN_NUM_DTYPES),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], q[2], 64, 4, NULL, NULL, PN_INT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dequantize(q[0], q[1], pn_zeros((int64_t[]){4, 2}, 2, PN_FLOAT32), 64, 4,
                            NULL, NULL, PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
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
    CHECK(pn_quantize(w3, 64, 4, NULL, NULL, q3) == 0);
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
    pn_array *d = pn_dequantize(g->wq, in[0], in[1], g->gs, g->bits, NULL, NULL, PN_NUM_DTYPES);
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
            CHECK(pn_quantize(pn_astype(w, PN_FLOAT32), gs, bits, NULL, NULL, q) == 0);
            grad_ctx g = {q[0], tr, gs, bits};
            pn_array *in[3] = {test_random_array((int64_t[]){3, 2, 4, 32}, 4, PN_FLOAT64, -1, 1),
                               pn_astype(q[1], PN_FLOAT64), pn_astype(q[2], PN_FLOAT64)};
            test_gradcheck(tr ? "qmm transpose" : "qmm", qmm_fn, &g, 3, in, 1e-6);
            /* 1-d x with a 2-d W */
            pn_array *w2 = test_random_array(ws + 1, 2, PN_FLOAT32, -1, 1), *q2[3];
            CHECK(pn_quantize(w2, gs, bits, NULL, NULL, q2) == 0);
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
    CHECK(pn_quantize(w, 32, 6, NULL, NULL, q) == 0);
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
    CHECK(pn_quantize(w, 32, 4, NULL, NULL, q) == 0);
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

/* ───────────────────────────── floating-point modes ───────────────────────────── */
/* mxfp4 (fp4 e2m1 elements, groups of 32, e8m0 scales), mxfp8 (fp8 e4m3 elements, groups of
 * 32, e8m0 scales), nvfp4 (fp4 elements, groups of 16, e4m3 scales): references written here
 * from the formats' definitions, MLX 0.32.4's CPU arithmetic for float32 inputs. */

typedef struct fp_mode {
    const char *name;
    int gs, bits;
    double maxv;
    bool e8m0;
} fp_mode;
static const fp_mode fp_modes[] = {
    {"mxfp4", 32, 4, 6, true},
    {"mxfp8", 32, 8, 448, true},
    {"nvfp4", 16, 4, 6, false},
};

/* fp4 e2m1 by code: sign bit 3, values 0, .5, 1, 1.5, 2, 3, 4, 6. */
static const double ref_fp4[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6};

/* fp8 e4m3 by code: sign bit 7, 4 exponent bits (bias 7, 0: subnormal), 3 mantissa bits. */
static double ref_e4m3(int c)
{
    int e = (c >> 3) & 15, m = c & 7;
    double v = e ? ldexp(1 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
    return c & 128 ? -v : v;
}

/* The e4m3 code nearest x, searched over the codes 0..126 (ties to the even code), |x| above
 * 448, inf and NaN saturating to 448 with x's sign. */
static int ref_e4m3_code(double x)
{
    int s = signbit(x) ? 128 : 0;
    double a = fabs(x);
    if (!(a <= 448)) return 126 | s;
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 127; c++) {
        double d = fabs(ref_e4m3(c) - a);
        if (d < bd || (d == bd && c % 2 == 0)) best = c, bd = d;
    }
    return best | s;
}

/* One group of n float32 values: element codes and the scale code (gscale > 0: nvfp4's
 * global scale g). amax = max |v| (non-finite: scale code 128 (e8m0) and divisor 0); s = amax /
 * maxv in float; e8m0: e = ceil(log2 s) (s = 0: e = 0), divisor 2^e; e4m3: the code of s
 * (s 2688 / g with g), divisor its value; x = v / divisor in float (then times 2688 / g);
 * fp4: the first nearest of ref_fp4 in float. */
static void ref_fp_group(const fp_mode *m, const float *v, int n, float gscale, int *codes,
                         int *scode)
{
    float amax = 0;
    for (int i = 0; i < n; i++) amax = isnan(v[i]) || isnan(amax) ? NAN : fmaxf(amax, fabsf(v[i]));
    float s = amax / (float)m->maxv, div;
    if (m->e8m0) {
        if (!isfinite(s)) {
            *scode = 128, div = 0;
        } else if (s == 0) {
            *scode = 127, div = 1;
        } else {
            int e = (int)ceilf(log2f(s));
            *scode = (e + 127) & 255, div = ldexpf(1, e);
        }
    } else {
        *scode = ref_e4m3_code(gscale > 0 ? s * (2688.0f / gscale) : s);
        div = (float)ref_e4m3(*scode);
    }
    for (int i = 0; i < n; i++) {
        float x = v[i] / div;
        if (gscale > 0) x *= 2688.0f / gscale;
        if (m->bits == 8) {
            codes[i] = ref_e4m3_code(x);
            continue;
        }
        int best = 0;
        float bd = fabsf(x - (float)ref_fp4[0]);
        for (int c = 1; c < 16; c++)
            if (fabsf(x - (float)ref_fp4[c]) < bd) bd = fabsf(x - (float)ref_fp4[c]), best = c;
        codes[i] = best;
    }
}

/* The float64 matrix (rows x k) that fp-mode words and scale codes encode. */
static double *ref_fp_dequantize(const fp_mode *m, pn_array *wq, pn_array *scales, float gscale)
{
    const uint32_t *w = pn_data(wq);
    const uint8_t *s = pn_data(scales);
    int64_t words = pn_dim(wq, -1), k = words * 32 / m->bits, rows = pn_size(wq) / words;
    double *r = malloc(sizeof(double) * (size_t)(rows * k + 1));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < k; j++) {
            int c = ref_unpack(w + i * words, m->bits, j), sc = s[i * (k / m->gs) + j / m->gs];
            double scale = m->e8m0 ? ldexp(1, sc - 127) : ref_e4m3(sc);
            double v = (m->bits == 8 ? ref_e4m3(c) : ref_fp4[c]) * scale;
            if (gscale > 0) /* float32: the scale times g / 2688, the product */
                v = (float)((m->bits == 8 ? ref_e4m3(c) : ref_fp4[c]) *
                            (float)(scale * (gscale / 2688.0f)));
            r[i * k + j] = v;
        }
    return r;
}

/* A float32 (rows x k) test matrix: rows of random magnitudes, and rows of ties, zeros,
 * subnormals and (specials) inf and NaN. */
static pn_array *fp_test_matrix(const int64_t *shape, int nd, bool specials)
{
    pn_array *a = test_random_array(shape, nd, PN_FLOAT32, -1, 1);
    double *u = test_to_f64(a);
    int64_t k = shape[nd - 1], rows = pn_size(a) / k;
    float *v = malloc(sizeof(float) * (size_t)(rows * k));
    for (int64_t r = 0; r < rows; r++) {
        float mag = powf(10.0f, (float)test_uniform(-6, 3));
        for (int64_t j = 0; j < k; j++) {
            float *x = v + r * k + j, y = (float)u[r * k + j];
            switch (r % 6) {
            case 1: *x = (float)(int)test_uniform(-12, 13) * 0.25f; break; /* fp4 ties */
            case 2: *x = (float)(int)test_uniform(-8, 9) * 0.375f; break;  /* more ties */
            case 3: *x = j % 3 ? 0.0f : y * 1e-40f; break;                 /* zeros, tiny */
            case 4: *x = specials && j == 1 ? (r % 12 == 4 ? INFINITY : NAN) : y * mag; break;
            default: *x = y * mag;
            }
        }
    }
    pn_array *r = pn_array_from_data(v, shape, nd, PN_FLOAT32);
    free(u), free(v);
    return r;
}

TEST(fp_quantize_bit_exact)
{
    pn_scope_push();
    const int64_t shapes[3][3] = {{12, 64}, {2, 6, 32}, {7, 96}};
    const int nds[3] = {2, 3, 2};
    for (int mi = 0; mi < 3; mi++)
        for (int si = 0; si < 3; si++) {
            pn_scope_push();
            const fp_mode *m = &fp_modes[mi];
            pn_array *w = fp_test_matrix(shapes[si], nds[si], si != 1), *q[3];
            CHECK(pn_eval(&w, 1) == 0);
            CHECK(pn_quantize(w, 0, 0, m->name, NULL, q) == 0 && q[2] == NULL);
            CHECK(pn_array_dtype(q[0]) == PN_UINT32 && pn_array_dtype(q[1]) == PN_UINT8);
            CHECK(pn_eval(q, 2) == 0);
            int64_t k = shapes[si][nds[si] - 1], rows = pn_size(w) / k;
            CHECK(pn_dim(q[0], -1) == k * m->bits / 32 && pn_dim(q[1], -1) == k / m->gs);
            const float *v = pn_data(w);
            const uint32_t *wq = pn_data(q[0]);
            const uint8_t *sc = pn_data(q[1]);
            int bad = 0, codes[32], scode;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t g = 0; g < k / m->gs; g++) {
                    ref_fp_group(m, v + r * k + g * m->gs, m->gs, 0, codes, &scode);
                    bad += sc[r * (k / m->gs) + g] != scode;
                    for (int i = 0; i < m->gs; i++)
                        bad += ref_unpack(wq + r * (k * m->bits / 32), m->bits,
                                          g * m->gs + i) != codes[i];
                }
            CHECK_MSG(bad == 0, "%s shape %d: %d codes differ", m->name, si, bad);
            pn_scope_pop();
        }
    pn_scope_pop();
}

TEST(fp_dequantize_values_and_dtypes)
{
    pn_scope_push();
    for (int mi = 0; mi < 3; mi++) {
        pn_scope_push();
        const fp_mode *m = &fp_modes[mi];
        /* random words; scale codes spanning small and large values (within float16's range:
         * MLX rounds the scale to the output dtype before the product) */
        int64_t ws[3] = {2, 5, 2 * m->bits}, ss[3] = {2, 5, 64 / m->gs};
        pn_array *wq = pn_astype(test_random_array(ws, 3, PN_FLOAT64, 0, 4294967295.0), PN_UINT32);
        pn_array *sc = pn_astype(test_random_array(ss, 3, PN_FLOAT64, m->e8m0 ? 112 : 0,
                                                   m->e8m0 ? 141 : 255), PN_UINT8);
        CHECK(pn_eval(&wq, 1) == 0 && pn_eval(&sc, 1) == 0);
        double *ref = ref_fp_dequantize(m, wq, sc, 0);
        int64_t os[3] = {2, 5, 64};
        pn_array *r64 = pn_array_from_data(ref, os, 3, PN_FLOAT64);
        free(ref);
        /* default bfloat16; every dtype the product of two exact values rounded once */
        pn_array *d = pn_dequantize(wq, sc, NULL, 0, 0, m->name, NULL, PN_NUM_DTYPES);
        CHECK(d && pn_array_dtype(d) == PN_BFLOAT16);
        const pn_dtype dts[4] = {PN_BFLOAT16, PN_FLOAT32, PN_FLOAT16, PN_FLOAT64};
        for (int di = 0; di < 4; di++) {
            pn_array *dd = di ? pn_dequantize(wq, sc, NULL, 0, 0, m->name, NULL, dts[di]) : d;
            CHECK(dd && pn_array_dtype(dd) == dts[di]);
            pn_array *eq = pn_array_equal(dd, pn_astype(r64, dts[di]), true);
            CHECK_MSG(eq && pn_item(eq) == 1, "%s dequantize %s", m->name,
                      pn_dtype_name(dts[di]));
        }
        pn_scope_pop();
    }
    pn_scope_pop();
}

TEST(fp_round_trip_within_the_format_step)
{
    pn_scope_push();
    for (int mi = 0; mi < 3; mi++) {
        pn_scope_push();
        const fp_mode *m = &fp_modes[mi];
        int64_t shape[2] = {8, 128};
        pn_array *w = test_random_array(shape, 2, PN_FLOAT32, -3, 3), *q[3];
        CHECK(pn_quantize(w, m->gs, m->bits, m->name, NULL, q) == 0);
        pn_array *d = pn_dequantize(q[0], q[1], NULL, m->gs, m->bits, m->name, NULL, PN_FLOAT32);
        double *dv = test_to_f64(d), *wv = test_to_f64(w);
        /* the error is at most half the spacing of the format at the group's top (fp4: 1 for
         * values in [4, 6]; e4m3: 16 in [256, 448]) in units of a scale below 2 amax / maxv */
        int bad = 0;
        for (int64_t g = 0; g < 8 * 128 / m->gs; g++) {
            double amax = 0;
            for (int i = 0; i < m->gs; i++) amax = fmax(amax, fabs(wv[g * m->gs + i]));
            double bound = amax / m->maxv * 2 * (m->bits == 8 ? 16 : 1) * (m->e8m0 ? 1 : 0.6);
            for (int i = 0; i < m->gs; i++)
                bad += fabs(dv[g * m->gs + i] - wv[g * m->gs + i]) > bound + 1e-30;
        }
        CHECK_MSG(bad == 0, "%s: %d values off by more than half a step", m->name, bad);
        free(dv), free(wv);
        pn_scope_pop();
    }
    pn_scope_pop();
}

/* x @ W^T / x @ W with W quantized in mode m against the float64 product with the reference
 * dequantization of W. */
static void run_fp_qmm(const fp_mode *m, const int64_t *xs, int xnd, const int64_t *wbatch,
                       int wbnd, int64_t n, int64_t k, bool transpose, pn_dtype dt)
{
    pn_scope_push();
    int64_t ws[4];
    if (wbnd) memcpy(ws, wbatch, sizeof(int64_t) * wbnd);
    ws[wbnd] = transpose ? n : k;
    ws[wbnd + 1] = transpose ? k : n;
    pn_array *w = test_random_array(ws, wbnd + 2, PN_FLOAT32, -1, 1), *q[3];
    pn_array *x = test_random_array(xs, xnd, dt, -1, 1);
    CHECK(pn_quantize(w, 0, 0, m->name, NULL, q) == 0);
    pn_array *y = pn_quantized_matmul(x, q[0], q[1], NULL, transpose, 0, 0, m->name);
    CHECK_OK(y);
    if (!y || pn_eval(q, 2)) {
        pn_scope_pop();
        return;
    }
    CHECK(pn_array_dtype(y) == dt);
    double *wdv = ref_fp_dequantize(m, q[0], q[1], 0);
    pn_array *wd = pn_array_from_data(wdv, ws, wbnd + 2, PN_FLOAT64);
    free(wdv);
    pn_array *ref = pn_matmul(pn_astype(x, PN_FLOAT64), transpose ? pn_swapaxes(wd, -1, -2) : wd);
    double *rv = test_to_f64(ref);
    double tol = dt == PN_FLOAT64 ? 1e-12 : dt == PN_FLOAT32 ? 2e-5 : 3e-2;
    char what[128];
    snprintf(what, sizeof what, "qmm %s %s T %d x %dd w batch %d", m->name, pn_dtype_name(dt),
             transpose, xnd, wbnd);
    test_check_values(what, y, pn_shape(ref), pn_ndim(ref), dt, rv, tol, tol * 4);
    free(rv);
    pn_scope_pop();
}

TEST(fp_quantized_matmul_against_float64)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    const int64_t big = test_quick() ? 9 : 37;
    for (int mi = 0; mi < 3; mi++)
        for (int di = 0; di < 4; di++)
            for (int tr = 0; tr < 2; tr++) {
                const fp_mode *m = &fp_modes[mi];
                run_fp_qmm(m, (int64_t[]){64}, 1, NULL, 0, tr ? 48 : 64, 64, tr, dts[di]);
                run_fp_qmm(m, (int64_t[]){3, 64}, 2, NULL, 0, tr ? 40 : 32, 64, tr, dts[di]);
                run_fp_qmm(m, (int64_t[]){big, 96}, 2, NULL, 0, 64, 96, tr, dts[di]);
                run_fp_qmm(m, (int64_t[]){2, 5, 32}, 3, (int64_t[]){2}, 1, tr ? 24 : 64, 32, tr,
                           dts[di]);
                run_fp_qmm(m, (int64_t[]){3, 1, 4, 64}, 4, (int64_t[]){2}, 1, 32, 64, tr,
                           dts[di]);
            }
    pn_scope_pop();
}

TEST(nvfp4_global_scale)
{
    pn_scope_push();
    const fp_mode *m = &fp_modes[2];
    int64_t shape[2] = {6, 64};
    pn_array *w = test_random_array(shape, 2, PN_FLOAT32, -4, 4), *q[3];
    const float gv[3] = {2.5f, 4.0f, 9.0f}; /* below amax (scales saturate), near, above */
    for (int k = 0; k < 3; k++) {
        pn_scope_push();
        pn_array *g = pn_array_from_data(&gv[k], NULL, 0, PN_FLOAT32);
        CHECK(pn_quantize(w, 0, 0, "nvfp4", g, q) == 0 && pn_eval(q, 2) == 0);
        const float *v = pn_data(w);
        const uint32_t *wq = pn_data(q[0]);
        const uint8_t *sc = pn_data(q[1]);
        int bad = 0, codes[16], scode;
        for (int64_t r = 0; r < 6; r++)
            for (int64_t gi = 0; gi < 4; gi++) {
                ref_fp_group(m, v + r * 64 + gi * 16, 16, gv[k], codes, &scode);
                bad += sc[r * 4 + gi] != scode;
                for (int i = 0; i < 16; i++) bad += ref_unpack(wq + r * 8, 4, gi * 16 + i) != codes[i];
            }
        CHECK_MSG(bad == 0, "nvfp4 global %g: %d codes differ", gv[k], bad);
        /* dequantized in float32 whatever dtype asks (as MLX) */
        pn_array *d = pn_dequantize(q[0], q[1], NULL, 0, 0, "nvfp4", g, PN_BFLOAT16);
        CHECK(d && pn_array_dtype(d) == PN_FLOAT32);
        double *ref = ref_fp_dequantize(m, q[0], q[1], gv[k]);
        test_check_values("nvfp4 global dequantize", d, shape, 2, PN_FLOAT32, ref, 0, 0);
        free(ref);
        pn_scope_pop();
    }
    pn_scope_pop();
}

/* The closure of gather_qmm's gradient check: in = (x), the rest fixed. */
typedef struct gqmm_ctx {
    pn_array *wq, *scales, *biases, *lhs, *rhs;
    const char *mode;
    bool transpose;
} gqmm_ctx;
static pn_array *gqmm_fn(void *c, pn_array *const *in)
{
    gqmm_ctx *g = c;
    return pn_gather_qmm(in[0], g->wq, g->scales, g->biases, g->lhs, g->rhs, g->transpose, 0, 0,
                         g->mode, false);
}

TEST(gather_qmm_against_gathered_products)
{
    pn_scope_push();
    const char *modes[2] = {"affine", "mxfp4"};
    for (int mi = 0; mi < 2; mi++)
        for (int tr = 0; tr < 2; tr++) {
            pn_scope_push();
            /* 4 experts of W (64 x 64), x (5, 2, 64), indices broadcasting (3, 1) with (4) */
            pn_array *w = test_random_array((int64_t[]){4, 64, 64}, 3, PN_FLOAT32, -1, 1), *q[3];
            CHECK(pn_quantize(w, 0, 0, modes[mi], NULL, q) == 0);
            pn_array *x = test_random_array((int64_t[]){5, 2, 64}, 3, PN_FLOAT32, -1, 1);
            int32_t lv[3] = {4, 0, 2}, rv[4] = {3, 1, 1, 0};
            pn_array *li = pn_array_from_data(lv, (int64_t[]){3, 1}, 2, PN_INT32);
            pn_array *ri = pn_array_from_data(rv, (int64_t[]){4}, 1, PN_UINT32);
            pn_array *y = pn_gather_qmm(x, q[0], q[1], q[2], li, ri, tr, 0, 0, modes[mi], false);
            CHECK(y && pn_ndim(y) == 4 && pn_dim(y, 0) == 3 && pn_dim(y, 1) == 4 &&
                  pn_dim(y, 2) == 2 && pn_dim(y, 3) == 64);
            /* item (i, j) = x[lhs[i]] @ W[rhs[j]] */
            pn_array *items[12];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 4; j++) {
                    pn_array *e = pn_scalar_int(rv[j], PN_INT32);
                    items[i * 4 + j] = pn_quantized_matmul(
                        pn_take(x, pn_scalar_int(lv[i], PN_INT32), 0), pn_take(q[0], e, 0),
                        pn_take(q[1], e, 0), q[2] ? pn_take(q[2], e, 0) : NULL, tr, 0, 0,
                        modes[mi]);
                }
            pn_array *ref = pn_reshape(pn_stack(items, 12, 0), (int64_t[]){3, 4, 2, 64}, 4);
            CHECK(y && pn_item(pn_allclose(y, ref, 1e-5, 1e-5, false)) == 1);
            /* only rhs_indices: x's batch (4 items) pairs with the index in order */
            pn_array *x4 = test_random_array((int64_t[]){4, 1, 64}, 3, PN_FLOAT32, -1, 1);
            pn_array *y2 = pn_gather_qmm(x4, q[0], q[1], q[2], NULL, ri, tr, 0, 0, modes[mi], true);
            pn_array *it2[4];
            for (int j = 0; j < 4; j++) {
                pn_array *e = pn_scalar_int(rv[j], PN_INT32);
                it2[j] = pn_quantized_matmul(pn_take(x4, pn_scalar_int(j, PN_INT32), 0),
                                             pn_take(q[0], e, 0), pn_take(q[1], e, 0),
                                             q[2] ? pn_take(q[2], e, 0) : NULL, tr, 0, 0,
                                             modes[mi]);
            }
            CHECK(y2 && pn_item(pn_allclose(y2, pn_stack(it2, 4, 0), 1e-5, 1e-5, false)) == 1);
            /* no indices: quantized_matmul */
            pn_array *y3 = pn_gather_qmm(x4, q[0], q[1], q[2], NULL, NULL, tr, 0, 0, modes[mi],
                                         false);
            pn_array *r3 = pn_quantized_matmul(x4, q[0], q[1], q[2], tr, 0, 0, modes[mi]);
            CHECK(y3 && pn_item(pn_array_equal(y3, r3, false)) == 1);
            /* the gradient with respect to x, in float64 */
            gqmm_ctx g = {q[0], q[1], q[2], li, ri, modes[mi], tr};
            if (q[2]) g.scales = pn_astype(q[1], PN_FLOAT64), g.biases = pn_astype(q[2], PN_FLOAT64);
            pn_array *xin[1] = {pn_astype(x, PN_FLOAT64)};
            test_gradcheck("gather_qmm dx", gqmm_fn, &g, 1, xin, 1e-6);
            pn_scope_pop();
        }
    pn_scope_pop();
}

/* in = (x): the fp-mode product with a fixed W. */
static pn_array *fpqmm_fn(void *c, pn_array *const *in)
{
    gqmm_ctx *g = c;
    return pn_quantized_matmul(in[0], g->wq, g->scales, NULL, g->transpose, 0, 0, g->mode);
}

TEST(fp_quantized_matmul_gradient_and_vmap)
{
    pn_scope_push();
    for (int mi = 0; mi < 3; mi++)
        for (int tr = 0; tr < 2; tr++) {
            pn_scope_push();
            const fp_mode *m = &fp_modes[mi];
            pn_array *w = test_random_array((int64_t[]){2, 32, 32}, 3, PN_FLOAT32, -1, 1), *q[3];
            CHECK(pn_quantize(w, 0, 0, m->name, NULL, q) == 0);
            gqmm_ctx g = {q[0], q[1], NULL, NULL, NULL, m->name, tr};
            pn_array *x[1] = {test_random_array((int64_t[]){3, 2, 4, 32}, 4, PN_FLOAT64, -1, 1)};
            test_gradcheck(m->name, fpqmm_fn, &g, 1, x, 1e-6);
            pn_scope_pop();
        }
    /* vmap over x and over (x, w_q, scales) */
    pn_array *w = test_random_array((int64_t[]){3, 16, 32}, 3, PN_FLOAT32, -1, 1), *q[3];
    CHECK(pn_quantize(w, 0, 0, "mxfp8", NULL, q) == 0);
    pn_array *x = test_random_array((int64_t[]){3, 5, 32}, 3, PN_FLOAT32, -1, 1);
    pn_array *y = pn_quantized_matmul(x, q[0], q[1], NULL, true, 0, 0, "mxfp8");
    pn_array *rows[3];
    for (int b = 0; b < 3; b++) {
        pn_array *i = pn_scalar_int(b, PN_INT32);
        rows[b] = pn_quantized_matmul(pn_take(x, i, 0), pn_take(q[0], i, 0), pn_take(q[1], i, 0),
                                      NULL, true, 0, 0, "mxfp8");
    }
    CHECK(y && pn_item(pn_allclose(y, pn_stack(rows, 3, 0), 1e-5, 1e-5, false)) == 1);
    pn_scope_pop();
}

TEST(fp_mode_errors)
{
    pn_scope_push();
    pn_array *w = test_random_array((int64_t[]){4, 64}, 2, PN_FLOAT32, -1, 1), *q[3], *o[3];
    CHECK(pn_quantize(w, 0, 0, "mxfp4", NULL, q) == 0);
    struct {
        const char *mode;
        int gs, bits;
        const char *msg;
    } bad[] = {
        {"mxfp4", 64, 4, "mxfp4 quantization requires group size 32 but got 64."},
        {"mxfp4", 32, 8, "mxfp4 quantization requires bits to be 4 but got 8."},
        {"mxfp8", 32, 4, "mxfp8 quantization requires bits to be 8 but got 4."},
        {"mxfp8", 16, 8, "mxfp8 quantization requires group size 32 but got 16."},
        {"nvfp4", 32, 4, "nvfp4 quantization requires group size 16 but got 32."},
        {"nvfp4", 16, 8, "nvfp4 quantization requires bits to be 4 but got 8."},
        {"mxfp6", 32, 6, "Invalid quantization mode 'mxfp6'."},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        pn_clear_error();
        CHECK(pn_quantize(w, bad[k].gs, bad[k].bits, bad[k].mode, NULL, o) < 0 && !o[0]);
        CHECK_MSG(strstr(pn_last_error_message(), bad[k].msg) != NULL, "%s", pn_last_error_message());
        pn_clear_error();
        CHECK_ERR(pn_dequantize(q[0], q[1], NULL, bad[k].gs, bad[k].bits, bad[k].mode, NULL,
                                PN_NUM_DTYPES), PN_ERR_INVALID_ARGUMENT);
    }
    pn_clear_error();
    /* biases with an fp mode; float scales; missing biases for affine */
    CHECK(!pn_dequantize(q[0], q[1], q[1], 0, 0, "mxfp4", NULL, PN_NUM_DTYPES) &&
          strstr(pn_last_error_message(), "Biases must be null for quantization mode 'mxfp4'"));
    pn_clear_error();
    CHECK(!pn_dequantize(q[0], pn_astype(q[1], PN_FLOAT32), NULL, 0, 0, "mxfp4", NULL,
                         PN_NUM_DTYPES) &&
          strstr(pn_last_error_message(), "Scale type must be uint8 but received type float32"));
    pn_clear_error();
    CHECK_ERR(pn_quantized_matmul(w, q[0], q[1], q[1], true, 0, 0, "mxfp4"),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_quantized_matmul(w, q[0], pn_astype(q[1], PN_FLOAT32), NULL, true, 0, 0, "affine"),
              PN_ERR_INVALID_ARGUMENT);
    /* global scale: nvfp4 only, a float32 scalar */
    pn_array *g = pn_array_from_data((float[]){2.0f}, NULL, 0, PN_FLOAT32);
    CHECK(pn_quantize(w, 0, 0, "mxfp4", g, o) < 0 &&
          strstr(pn_last_error_message(), "Global scale is only supported for 'nvfp4'"));
    pn_clear_error();
    CHECK(pn_quantize(w, 0, 0, "nvfp4", pn_array_from_data((float[]){2, 3}, (int64_t[]){2}, 1,
                                                           PN_FLOAT32), o) < 0 &&
          strstr(pn_last_error_message(), "Global scale must be a scalar but got shape (2)"));
    pn_clear_error();
    CHECK(pn_quantize(w, 0, 0, "nvfp4", pn_astype(g, PN_FLOAT16), o) < 0 &&
          strstr(pn_last_error_message(), "Global scale must have dtype float32 but got float16"));
    pn_clear_error();
    CHECK(pn_quantize(w, 0, 0, "nvfp4", pn_reshape(g, (int64_t[]){1, 1}, 2), o) == 0);
    /* gather_qmm: integer indices, a 2-d x */
    pn_array *w3 = pn_reshape(q[0], (int64_t[]){1, 4, 8}, 3), *s3 = pn_reshape(q[1], (int64_t[]){1, 4, 2}, 3);
    CHECK_ERR(pn_gather_qmm(w, w3, s3, NULL, NULL, pn_zeros((int64_t[]){1}, 1, PN_FLOAT32), true,
                            0, 0, "mxfp4", false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_qmm(pn_reshape(w, (int64_t[]){256}, 1), w3, s3, NULL, NULL,
                            pn_zeros((int64_t[]){1}, 1, PN_INT32), true, 0, 0, "mxfp4", false),
              PN_ERR_INVALID_ARGUMENT);
    CHECK(pn_gather_qmm(pn_reshape(w, (int64_t[]){1, 4, 64}, 3), w3, s3, NULL, NULL,
                        pn_zeros((int64_t[]){1}, 1, PN_INT32), true, 0, 0, "mxfp4", false) != NULL);
    /* no gradient through fp-mode scales */
    pn_clear_error();
    pn_scope_pop();
}
