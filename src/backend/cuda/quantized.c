/* quantized.c — GPU evals of Quantize, Dequantize and QuantizedMatmul (src/ops/quantized.c) in
 * every mode of backend/cpu/quant_codec.h: the C glue around the launchers of quantized.cu. Dense inputs only (strided ones go to the
 * CPU kernels on host copies). The product runs the direct kernel for small M and otherwise
 * dequantizes W (one batch matrix at a time) into device scratch of x's dtype and multiplies
 * with the cuBLASLt GEMM (gemm.cu); a single W serves the whole batch of x as one matrix. */
#include "backend/cpu/quantized.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/quantized.h"
#include "core/core.h"

/* Rows of x (per W) up to which the direct kernel runs instead of dequantize + GEMM. */
enum { QMM_DIRECT_ROWS = 8 };

/* Runs body over dense copies of the node's inputs. */
#define WITH_DENSE(body)                                                                       \
    do {                                                                                       \
        pn_array *dense_[4];                                                                   \
        const int n_ = node->nin;                                                              \
        if (pnG_make_dense(n_, in_, dense_, node->stream.index)) return -1;                    \
        int rc_ = body(node, dense_, out);                                                     \
        pnG_release_dense(n_, in_, dense_);                                                    \
        return rc_;                                                                            \
    } while (0)

/* The device pointer of the node's global scale (its last input), or NULL. */
static const float *gscale_of(const pnK_quant_params *p, pn_array *const *in, int nin)
{
    return p->global ? (const float *)pnC_data(in[nin - 1]) : NULL;
}

static int quantize_dense(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const pn_dtype t = in[0]->dtype;
    const bool biases = pnK_qmode_of(p->mode).biases;
    if (pnG_quantize(t, NULL, NULL, NULL, NULL, 0, p->group_size, p->bits, p->mode, NULL, 0))
        return PNG_UNSUPPORTED;
    for (int j = 0; j < (biases ? 3 : 2); j++)
        if (pnC_alloc_output(out[j])) return -1;
    const int64_t ngroups = out[1]->size;
    if (ngroups == 0) return 0;
    return pnG_quantize(t, pnC_data(in[0]), pnC_data(out[0]), pnC_data(out[1]),
                        biases ? pnC_data(out[2]) : NULL, ngroups, p->group_size, p->bits,
                        p->mode, gscale_of(p, in, node->nin), node->stream.index);
}

static int dequantize_dense(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    const pn_dtype t = out[0]->dtype;
    const bool biases = pnK_qmode_of(p->mode).biases;
    if (pnG_dequantize(t, NULL, NULL, NULL, NULL, 0, p->group_size, p->bits, p->mode, NULL, 0))
        return PNG_UNSUPPORTED;
    if (pnC_alloc_output(out[0])) return -1;
    const int64_t ngroups = in[1]->size;
    if (ngroups == 0) return 0;
    return pnG_dequantize(t, pnC_data(in[0]), pnC_data(in[1]), biases ? pnC_data(in[2]) : NULL,
                          pnC_data(out[0]), ngroups, p->group_size, p->bits, p->mode,
                          gscale_of(p, in, node->nin), node->stream.index);
}

static int qmm_dense(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_quant_params *p = PNC_PARAMS(node, pnK_quant_params);
    pn_array *o = out[0], *x = in[0], *w = in[1], *s = in[2];
    const pn_dtype t = o->dtype;
    const int stream = node->stream.index;
    const bool biases = pnK_qmode_of(p->mode).biases;
    if (pnG_dequantize(t, NULL, NULL, NULL, NULL, 0, p->group_size, p->bits, p->mode, NULL, 0))
        return PNG_UNSUPPORTED;
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    const int nd = o->ndim, nb = nd - 2, xb = x->ndim - 2, wb = w->ndim - 2;
    const int64_t M = o->shape[nd - 2], N = o->shape[nd - 1], K = x->shape[x->ndim - 1];
    const int64_t nbatch = pnC_shape_size(o->shape, nb);
    const int64_t wbatch = pnC_shape_size(w->shape, wb);
    const int64_t rows_w = w->shape[wb], words = w->shape[wb + 1], groups = s->shape[wb + 1];
    const int64_t es = (int64_t)pn_dtype_size(t), ses = (int64_t)pn_dtype_size(s->dtype);
    /* one W for every batch: the whole batch of x is one (nbatch * M, K) matrix */
    const int64_t nprod = wbatch == 1 ? 1 : nbatch, rows = wbatch == 1 ? nbatch * M : M;
    char *xd = pnC_data(x), *od = pnC_data(o), *sd = pnC_data(s);
    char *bd = biases ? pnC_data(in[3]) : NULL;
    const uint32_t *wd = pnC_data(w);
    if (K == 0) return pnG_gemm_scale(t, nbatch * M, N, 0.0, od, N, stream);
    const bool direct = rows <= QMM_DIRECT_ROWS;
    void *scratch = NULL;
    const size_t scratch_bytes = (size_t)(N * K * es);
    if (!direct && !(scratch = pnG_malloc(scratch_bytes, stream))) return -1;
    int rc = 0;
    for (int64_t i = 0; i < nprod && rc == 0; i++) {
        const int64_t xo =
            wbatch == 1 ? 0 : pnK_qmm_batch_offset(i, o->shape, nb, x->shape, xb, M * K);
        const int64_t wm =
            wbatch == 1 ? 0 : pnK_qmm_batch_offset(i, o->shape, nb, w->shape, wb, 1);
        const uint32_t *wi = wd + wm * rows_w * words;
        const char *si = sd + wm * rows_w * groups * ses;
        const char *bi = bd ? bd + wm * rows_w * groups * es : NULL;
        const char *xi = xd + xo * es;
        char *oi = od + i * rows * N * es;
        if (direct) {
            rc = pnG_qmm_direct(t, xi, wi, si, bi, oi, rows, N, K, words, groups, p->group_size,
                                p->bits, p->mode, p->transpose, stream);
        } else {
            rc = pnG_dequantize(t, wi, si, bi, scratch, rows_w * groups, p->group_size, p->bits,
                                p->mode, NULL, stream);
            if (rc == 0)
                rc = pnG_gemm(t, false, p->transpose, rows, N, K, 1.0, xi, K, 0, scratch,
                              p->transpose ? K : N, 0, 0.0, oi, N, 0, 1, stream);
        }
    }
    if (scratch) pnG_free(scratch, scratch_bytes, stream);
    return rc; /* PNG_UNSUPPORTED (cuBLASLt found no algorithm): the CPU kernel runs, as for
                * matmul */
}

/* See quantized.h. */
int pnG_quantize_eval(const pnC_node *node, pn_array *const *in_, pn_array *const *out)
{
    WITH_DENSE(quantize_dense);
}

/* See quantized.h. */
int pnG_dequantize_eval(const pnC_node *node, pn_array *const *in_, pn_array *const *out)
{
    WITH_DENSE(dequantize_dense);
}

/* See quantized.h. */
int pnG_qmm_eval(const pnC_node *node, pn_array *const *in_, pn_array *const *out)
{
    WITH_DENSE(qmm_dense);
}
