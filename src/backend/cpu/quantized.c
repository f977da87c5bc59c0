/* quantized.c — CPU kernels of the quantization primitives (src/ops/quantized.c) in every mode
 * of quant_codec.h: Quantize and Dequantize one group per step (OpenMP over groups) with MLX's
 * arithmetic, and
 * QuantizedMatmul in float32: fused dequantize-and-dot rows for small M (the decode case), and
 * for larger M tiles of W dequantized into float32 scratch and multiplied with pnK_gemm
 * (OpenBLAS sgemm), threads over tiles. */
#include "backend/cpu/quantized.h"

#include "backend/cpu/gemm.h"

#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ───────────────────────────── elements and bits ───────────────────────────── */

/* Element i of a floating array as double (exact); v stored at element i of one. */
static inline double load_d(const void *p, pn_dtype t, int64_t i)
{
    switch (t) {
    case PN_FLOAT16: return pnC_f16_to_f32(((const pn_float16 *)p)[i]);
    case PN_BFLOAT16: return pnC_bf16_to_f32(((const pn_bfloat16 *)p)[i]);
    case PN_FLOAT64: return ((const double *)p)[i];
    default: return ((const float *)p)[i];
    }
}
static inline void store_d(void *p, pn_dtype t, int64_t i, double v)
{
    switch (t) {
    case PN_FLOAT16: ((pn_float16 *)p)[i] = pnC_f32_to_f16((float)v); break;
    case PN_BFLOAT16: ((pn_bfloat16 *)p)[i] = pnC_f32_to_bf16((float)v); break;
    case PN_FLOAT64: ((double *)p)[i] = v; break;
    default: ((float *)p)[i] = (float)v; break;
    }
}

/* The n values of one group from its packed words (the row's bit stream, little-endian). */
static inline void unpack_group(const uint32_t *w, int bits, int n, uint8_t *q)
{
    const uint32_t mask = (1u << bits) - 1;
    uint64_t acc = 0;
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have < bits) acc |= (uint64_t)*w++ << have, have += 32;
        q[i] = (uint8_t)(acc & mask);
        acc >>= bits, have -= bits;
    }
}

/* Packs n values of bits each into n * bits / 32 words (n * bits is a multiple of 32). */
static inline void pack_group(const uint8_t *q, int bits, int n, uint32_t *w)
{
    uint64_t acc = 0;
    int have = 0;
    for (int i = 0; i < n; i++) {
        acc |= (uint64_t)q[i] << have, have += bits;
        if (have >= 32) *w++ = (uint32_t)acc, acc >>= 32, have -= 32;
    }
}

/* Contiguous versions of the inputs (the inputs themselves when they already are); NULL
 * entries on failure. Release with release_dense. */
static int make_dense(int n, pn_array *const *in, pn_array **dense)
{
    int rc = 0;
    for (int k = 0; k < n; k++) {
        dense[k] = pnC_row_contiguous(in[k]) ? in[k] : pnC_contiguous(in[k]);
        if (!dense[k]) rc = -1;
    }
    return rc;
}
static void release_dense(int n, pn_array *const *in, pn_array **dense)
{
    for (int k = 0; k < n; k++)
        if (dense[k] && dense[k] != in[k]) pnC_decref(dense[k]);
}

/* ───────────────────────────── Quantize ───────────────────────────── */

/* One group of n floats: its scale and bias and its values q, as MLX's CPU quantize computes
 * them (float arithmetic, rint: half to even). */
static void quantize_group(const float *v, int n, int bits, uint8_t *q, float *scale_out,
                           float *bias_out)
{
    float w_min = INFINITY, w_max = -INFINITY;
    for (int i = 0; i < n; i++) {
        w_max = w_max < v[i] ? v[i] : w_max;
        w_min = v[i] < w_min ? v[i] : w_min;
    }
    float scale, bias;
    pnK_affine_params(w_min, w_max, bits, &scale, &bias);
    for (int i = 0; i < n; i++) q[i] = (uint8_t)pnK_affine_level(v[i], scale, bias, bits);
    *scale_out = scale, *bias_out = bias;
}

/* The global scale of a node (its last input, a float32 scalar), or 0 without one. */
static float global_scale(const pnK_quant_params *p, pn_array *const *in, int n)
{
    if (!p->global) return 0.0f;
    pn_array *g = in[n - 1];
    return *(const float *)pnC_data(g);
}

/* See quantized.h. */
int pnK_quantize_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const pnK_qmode m = pnK_qmode_of(p->mode);
    const int nout = m.biases ? 3 : 2;
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_array *w = NULL;
    if (make_dense(1, in, &w)) return -1;
    const int gs = p->group_size, bits = p->bits;
    const pn_dtype t = w->dtype;
    const int kind = pnK_rt_kind(t);
    const float gscale = global_scale(p, in, p->global ? 2 : 1);
    const int64_t ngroups = out[1]->size, words = gs * bits / 32;
    const void *src = w->size ? pnC_data(w) : NULL;
    uint32_t *wq = ngroups ? pnC_data(out[0]) : NULL;
    void *sc = ngroups ? pnC_data(out[1]) : NULL;
    void *bi = ngroups && m.biases ? pnC_data(out[2]) : NULL;
#pragma omp parallel for schedule(static) if (ngroups * gs > PNC_PAR_GRAIN)
    for (int64_t g = 0; g < ngroups; g++) {
        uint8_t q[128];
        if (m.biases) {
            float v[128], s, b;
            for (int i = 0; i < gs; i++) v[i] = (float)load_d(src, t, g * gs + i);
            quantize_group(v, gs, bits, q, &s, &b);
            store_d(sc, t, g, s);
            store_d(bi, t, g, b);
        } else {
            double v[128];
            for (int i = 0; i < gs; i++) v[i] = load_d(src, t, g * gs + i);
            pnK_fp_quantize_group(&m, kind, v, gs, gscale, q, (uint8_t *)sc + g);
        }
        pack_group(q, bits, gs, wq + g * words);
    }
    release_dense(1, in, &w);
    return 0;
}

/* ───────────────────────────── Dequantize ───────────────────────────── */

/* One group: out[i] = T(T(s * v[i]) + b) (affine, bias), or T(s * v[i]) (no bias), each
 * operation rounded to the output dtype T (s and b are values of T, v[i] of the element). */
static void dequantize_group(const float *v, int n, double s, double b, bool bias, void *out,
                             pn_dtype t, int64_t at)
{
    const int kind = pnK_rt_kind(t);
    for (int i = 0; i < n; i++) {
        double r = pnK_rt(s * pnK_rt(v[i], kind), kind);
        if (bias) r = pnK_rt(r + b, kind);
        store_d(out, t, at + i, r);
    }
}

/* The element values of mode m (value of code c at vals[c]; 256 entries). */
static void elem_values(const pnK_qmode *m, float *vals)
{
    for (int c = 0; c < 256; c++) vals[c] = pnK_elem_value(m->elem, c);
}

/* The scale of group g as a value of the compute dtype t: scales of dtype t (affine) or uint8
 * codes (fp modes; with a global scale gscale > 0: float32(s * (gscale / 2688))). */
static double group_scale(const pnK_qmode *m, const void *scales, pn_dtype t, int64_t g,
                          float gscale)
{
    if (m->scale == PNK_SCALE_FLOAT) return load_d(scales, t, g);
    const int c = ((const uint8_t *)scales)[g];
    if (gscale > 0) return (float)(pnK_e4m3_value(c) * (gscale / 2688.0f));
    return pnK_rt(pnK_scale_value(m->scale, c), pnK_rt_kind(t));
}

/* See quantized.h. */
int pnK_dequantize_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const pnK_qmode m = pnK_qmode_of(p->mode);
    const int nin = m.biases || p->global ? 3 : 2;
    if (pnC_alloc_output(out[0])) return -1;
    pn_array *d[3] = {NULL, NULL, NULL};
    int rc = -1;
    if (make_dense(nin, in, d)) goto done;
    rc = 0;
    const int gs = p->group_size, bits = p->bits;
    const pn_dtype t = out[0]->dtype;
    const int64_t ngroups = d[1]->size, words = gs * bits / 32;
    if (ngroups == 0) goto done;
    const float gscale = global_scale(p, in, nin);
    float vals[256];
    elem_values(&m, vals);
    const uint32_t *wq = pnC_data(d[0]);
    const void *sc = pnC_data(d[1]), *bi = m.biases ? pnC_data(d[2]) : NULL;
    void *o = pnC_data(out[0]);
#pragma omp parallel for schedule(static) if (ngroups * gs > PNC_PAR_GRAIN)
    for (int64_t g = 0; g < ngroups; g++) {
        uint8_t q[128];
        float v[128];
        unpack_group(wq + g * words, bits, gs, q);
        for (int i = 0; i < gs; i++) v[i] = vals[q[i]];
        dequantize_group(v, gs, group_scale(&m, sc, t, g, gscale),
                         m.biases ? load_d(bi, t, g) : 0.0, m.biases, o, t, g * gs);
    }
done:
    release_dense(nin, in, d);
    return rc;
}

/* ───────────────────────────── QuantizedMatmul ───────────────────────────── */
/* Computed in float32 (double for float64): x and the result are converted to the compute
 * type when the dtype is a half type. */

/* One quantized matrix as the product sees it: packed rows of `words` uint32 each, `groups`
 * scales and biases (dtype t) per row, `cols` values per row. */
typedef struct qmat {
    const uint32_t *w;
    const void *scales, *biases; /* biases NULL for the fp modes */
    pn_dtype t;
    int64_t rows, cols, words, groups;
    int group_size, bits;
    const pnK_qmode *mode;
    const float *vals; /* element values by code */
} qmat;

/* Dequantizes columns [c0, c0 + nc) of rows [r0, r0 + nr) of m (c0 and nc multiples of the
 * group size) into dst (row-major, row stride ld, elements of the compute type: double when
 * f64, else float) as s * q + b. */
static void qmat_dequantize(const qmat *m, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                            void *dst, int64_t ld, bool f64)
{
    const int gs = m->group_size, wpg = gs * m->bits / 32;
    uint8_t q[128];
    for (int64_t r = 0; r < nr; r++) {
        const int64_t row = r0 + r;
        for (int64_t c = 0; c < nc; c += gs) {
            const int64_t g = row * m->groups + (c0 + c) / gs;
            unpack_group(m->w + row * m->words + (c0 + c) / gs * wpg, m->bits, gs, q);
            const double s = group_scale(m->mode, m->scales, m->t, g, 0.0f);
            const double b = m->biases ? load_d(m->biases, m->t, g) : 0.0;
            if (f64) {
                double *o = (double *)dst + r * ld + c;
                for (int i = 0; i < gs; i++) o[i] = s * m->vals[q[i]] + b;
            } else {
                float *o = (float *)dst + r * ld + c, sf = (float)s, bf = (float)b;
                for (int i = 0; i < gs; i++) o[i] = sf * m->vals[q[i]] + bf;
            }
        }
    }
}

/* Rows of x below which the transposed product runs as fused dots. */
enum { QMM_SMALL_M = 8 };
/* Bytes of dequantized W per tile of the GEMM path. */
enum { QMM_TILE_BYTES = 1 << 20 };

/* out (M, N) = x (M, K) @ W^T (W: m, N x K) for small M: each thread dequantizes rows of W
 * into a K-element buffer and dots them with every row of x. */
static int qmm_rows(const void *x, int64_t M, int64_t K, const qmat *m, void *out, int64_t N,
                    bool f64)
{
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (N * K > PNC_PAR_GRAIN)
    {
        void *row = malloc((f64 ? sizeof(double) : sizeof(float)) * (size_t)(K ? K : 1));
        if (!row) failed = 1;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            if (!row) continue;
            qmat_dequantize(m, n, 1, 0, K, row, K, f64);
            for (int64_t i = 0; i < M; i++) {
                if (f64) {
                    const double *xi = (const double *)x + i * K, *r = row;
                    double acc = 0;
#pragma omp simd reduction(+ : acc)
                    for (int64_t k = 0; k < K; k++) acc += xi[k] * r[k];
                    ((double *)out)[i * N + n] = acc;
                } else {
                    const float *xi = (const float *)x + i * K, *r = row;
                    float acc = 0;
#pragma omp simd reduction(+ : acc)
                    for (int64_t k = 0; k < K; k++) acc += xi[k] * r[k];
                    ((float *)out)[i * N + n] = acc;
                }
            }
        }
        free(row);
    }
    return failed ? pn_set_error(PN_ERR_OUT_OF_MEMORY, "[quantized_matmul] out of memory") : 0;
}

/* out (M, N) = x (M, K) @ W^T (transpose: W is N x K) or x @ W (W is K x N): tiles of output
 * columns dequantized into scratch of the compute type and multiplied with pnK_gemm, one
 * thread per tile. */
static int qmm_tiles(const void *x, int64_t M, int64_t K, const qmat *m, bool transpose,
                     void *out, int64_t N, bool f64)
{
    int threads = 1;
#ifdef _OPENMP
    threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#endif
    const int gs = m->group_size;
    const pn_dtype ct = f64 ? PN_FLOAT64 : PN_FLOAT32;
    const size_t es = pn_dtype_size(ct);
    /* tile width: a multiple of the group size (whole groups for x @ W), enough tiles for the
     * threads, at most QMM_TILE_BYTES of W */
    int64_t nb = QMM_TILE_BYTES / (int64_t)es / (K > 0 ? K : 1);
    int64_t per_thread = (N + threads - 1) / threads;
    if (nb > per_thread) nb = per_thread;
    nb = (nb + gs - 1) / gs * gs;
    if (nb < gs) nb = gs;
    const int64_t ntiles = (N + nb - 1) / nb;
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (ntiles > 1)
    {
        void *tile = malloc(es * (size_t)(nb * K));
        if (!tile) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (!tile || failed) continue;
            const int64_t n0 = t * nb, nc = N - n0 < nb ? N - n0 : nb;
            if (transpose) /* rows n0.. of W (N x K): tile (nc, K), used transposed */
                qmat_dequantize(m, n0, nc, 0, K, tile, K, f64);
            else /* columns n0.. of W (K x N): tile (K, nc) */
                qmat_dequantize(m, 0, K, n0, nc, tile, nc, f64);
            failed |= pnK_gemm(ct, false, transpose, M, nc, K, 1.0, x, K, tile,
                               transpose ? K : nc, 0.0, (char *)out + n0 * (int64_t)es, N) != 0;
        }
        free(tile);
    }
    if (failed && !pnC_failed())
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[quantized_matmul] out of memory");
    return failed ? -1 : 0;
}

/* See quantized.h. */
int pnK_qmm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    const pn_dtype t = o->dtype;
    const bool f64 = t == PN_FLOAT64, half = pnC_is_half(t);
    const pn_dtype ct = f64 ? PN_FLOAT64 : PN_FLOAT32;
    const int64_t ces = (int64_t)pn_dtype_size(ct);
    const pnK_qmode mode = pnK_qmode_of(p->mode);
    const int nin = mode.biases ? 4 : 3;
    float vals[256];
    elem_values(&mode, vals);
    pn_array *d[4] = {NULL, NULL, NULL, NULL};
    char *xc = NULL, *oc = NULL;
    int rc = -1;
    if (make_dense(nin, in, d)) goto done;
    pn_array *x = d[0], *w = d[1], *s = d[2];
    const int nd = o->ndim, nb = nd - 2, xb = x->ndim - 2, wb = w->ndim - 2;
    const int64_t M = o->shape[nd - 2], N = o->shape[nd - 1], K = x->shape[x->ndim - 1];
    const int64_t nbatch = pnC_shape_size(o->shape, nb);
    const int64_t wbatch = pnC_shape_size(w->shape, wb);
    qmat m = {.t = t, .group_size = p->group_size, .bits = p->bits, .mode = &mode, .vals = vals};
    m.rows = w->shape[wb], m.words = w->shape[wb + 1], m.groups = s->shape[wb + 1];
    m.cols = m.groups * p->group_size;
    /* x and the result in the compute type (copies for the half types) */
    if (!half) {
        xc = pnC_data(x), oc = pnC_data(o);
    } else {
        xc = malloc((size_t)(ces * (x->size ? x->size : 1)));
        oc = malloc((size_t)(ces * o->size));
        if (!xc || !oc) {
            pn_set_error(PN_ERR_OUT_OF_MEMORY, "[quantized_matmul] out of memory");
            goto done;
        }
        pnC_convert(pnC_data(x), t, xc, ct, x->size);
    }
    rc = 0;
    if (K == 0) {
        memset(oc, 0, (size_t)(ces * o->size));
    } else {
        /* one W for every batch: the whole batch of x is one (nbatch * M, K) matrix */
        const int64_t groups = wbatch == 1 ? 1 : nbatch, rows = wbatch == 1 ? nbatch * M : M;
        const uint32_t *w0 = pnC_data(w);
        const char *s0 = pnC_data(s), *b0 = mode.biases ? pnC_data(d[3]) : NULL;
        const int64_t es = (int64_t)pn_dtype_size(s->dtype);
        for (int64_t i = 0; i < groups && rc == 0; i++) {
            const int64_t xo =
                wbatch == 1 ? 0 : pnK_qmm_batch_offset(i, o->shape, nb, x->shape, xb, M * K);
            const int64_t wm =
                wbatch == 1 ? 0 : pnK_qmm_batch_offset(i, o->shape, nb, w->shape, wb, 1);
            m.w = w0 + wm * m.rows * m.words;
            m.scales = s0 + wm * m.rows * m.groups * es;
            m.biases = b0 ? b0 + wm * m.rows * m.groups * es : NULL;
            const char *xi = xc + xo * ces;
            char *oi = oc + i * rows * N * ces;
            rc = p->transpose && rows <= QMM_SMALL_M
                     ? qmm_rows(xi, rows, K, &m, oi, N, f64)
                     : qmm_tiles(xi, rows, K, &m, p->transpose, oi, N, f64);
        }
    }
    if (rc == 0 && half) pnC_convert(oc, ct, pnC_data(o), t, o->size);
done:
    if (half) free(xc), free(oc);
    release_dense(nin, in, d);
    return rc;
}
