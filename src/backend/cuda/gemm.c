/* gemm.c — the GPU eval of the GEMM primitives (Matmul, AddMM; src/ops/linalg.c): maps the
 * operands' strides onto cuBLASLt layouts (transposed views need no copy), folds a shared
 * right operand's batch into the rows, and runs the broadcast batch dims as strided batches
 * (pnG_gemm_ex in gemm.cu), one cuBLASLt call per index of the batch dims that do not merge;
 * an addmm's broadcast bias row goes to cuBLASLt's fused bias epilogue. */
#include "backend/cpu/gemm.h" /* the params and the operand planning both backends share */
#include "backend/cuda/eval.h"
#include "backend/cuda/gemm.h"
#include "core/core.h"

/* The addend c of an addmm (already broadcast to the output's shape) when cuBLASLt's bias
 * epilogue can add it instead of a copy into the output: one row of N elements repeated over
 * every other axis (stride 0 or extent 1 there, contiguous last axis), of the output's dtype
 * among float16 / bfloat16 / float32 (the bias has D's type), 16-byte aligned, beta == 1 and a
 * product with K >= 1. Ponte's row-major C (M, N) is cuBLASLt's column-major D = C^T (N, M),
 * whose bias holds one element per row of D, i.e. per column of C: exactly that row. Its
 * device pointer, or NULL when the epilogue does not apply. */
static const void *bias_row(const pnK_gemm_params *p, const pn_array *c, const pn_array *o,
                            int64_t K)
{
    int nd = o->ndim;
    if (p->beta != 1.0 || K < 1 || o->size == 0 || c->ndim != nd || c->dtype != o->dtype)
        return NULL;
    if (o->dtype != PN_FLOAT16 && o->dtype != PN_BFLOAT16 && o->dtype != PN_FLOAT32) return NULL;
    for (int d = 0; d < nd - 1; d++)
        if (c->shape[d] != 1 && c->strides[d] != 0) return NULL;
    if (c->shape[nd - 1] != 1 && c->strides[nd - 1] != 1) return NULL;
    const void *ptr = pnC_data(c);
    return (uintptr_t)ptr % 16 ? NULL : ptr;
}

/* o (allocated) = alpha * in[0] @ in[1] + beta * o through cuBLASLt, with the epilogue (bias:
 * see bias_row) fused. PNG_UNSUPPORTED when cuBLASLt has no algorithm for it. */
static int gemm_run(pn_array *const *in, pn_array *o, double alpha, double beta,
                    pnG_epilogue epi, const void *bias, int stream)
{
    int nd = o->ndim, nb = nd - 2;
    int64_t M = o->shape[nd - 2], N = o->shape[nd - 1], K = in[0]->shape[in[0]->ndim - 1];
    const int64_t *bshape = o->shape;
    int64_t nbatch = pnC_shape_size(bshape, nb);
    size_t es = pn_dtype_size(o->dtype);
    char *c = pnC_data(o);
    if (K == 0) /* zeros, or beta * c */
        return pnG_gemm_scale(o->dtype, nbatch * M, N, beta, c, N, stream);
    pnK_gemm_operand a, b;
    if (pnK_gemm_operand_init(&a, in[0], nb)) return -1;
    if (pnK_gemm_operand_init(&b, in[1], nb)) {
        pnK_gemm_operand_release(&a);
        return -1;
    }
    int rc = 0;
    bool b_shared = true; /* b is the same matrix for every batch */
    for (int d = 0; d < nb; d++) b_shared &= b.bstrides[d] == 0;
    if (nbatch == 1 || (b_shared && pnK_gemm_batch_folds(&a, bshape, nb, M))) {
        rc = pnG_gemm_ex(o->dtype, a.trans, b.trans, nbatch * M, N, K, alpha, a.data, a.ld, 0,
                         b.data, b.ld, 0, beta, c, N, 0, 1, epi, bias, stream);
    } else {
        /* Batch dims of extent > 1, merged where every operand steps evenly across them
         * (c is row-contiguous: its batch stride is what remains of the batch times M * N). */
        int64_t ext[PNC_MAX_NDIM], sa[PNC_MAX_NDIM], sb[PNC_MAX_NDIM], sc[PNC_MAX_NDIM];
        int n = 0;
        int64_t cstride = M * N;
        for (int d = nb - 1; d >= 0; d--) {
            if (bshape[d] == 1) continue;
            if (n > 0 && a.bstrides[d] == sa[n - 1] * ext[n - 1] &&
                b.bstrides[d] == sb[n - 1] * ext[n - 1]) {
                ext[n - 1] *= bshape[d];
            } else {
                ext[n] = bshape[d], sa[n] = a.bstrides[d], sb[n] = b.bstrides[d], sc[n] = cstride;
                n++;
            }
            cstride *= bshape[d];
        }
        /* dims are innermost first: dim 0 is the strided batch, the others a loop */
        int64_t outer = nbatch / ext[0];
        for (int64_t i = 0; i < outer && rc == 0; i++) {
            int64_t r = i, ao = 0, bo = 0, co = 0;
            for (int d = 1; d < n; d++) {
                int64_t idx = r % ext[d];
                r /= ext[d];
                ao += idx * sa[d], bo += idx * sb[d], co += idx * sc[d];
            }
            rc = pnG_gemm_ex(o->dtype, a.trans, b.trans, M, N, K, alpha,
                             a.data + ao * (int64_t)es, a.ld, sa[0], b.data + bo * (int64_t)es,
                             b.ld, sb[0], beta, c + co * (int64_t)es, N, sc[0], ext[0], epi, bias,
                             stream);
        }
    }
    pnK_gemm_operand_release(&a);
    pnK_gemm_operand_release(&b);
    return rc;
}

/* See eval.h. An addmm whose c is a broadcast row with beta == 1 runs as one GEMM with
 * cuBLASLt's bias epilogue (no copy of c into the output); otherwise c is copied (or donated)
 * into the output and the GEMM accumulates onto it with beta. */
int pnG_gemm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_gemm_params *p = PNC_PARAMS(node, pnK_gemm_params);
    pn_array *o = out[0];
    int stream = node->stream.index;
    double beta = 0.0;
    if (node->nin == 3 && p->beta != 0.0) {
        const void *bias = bias_row(p, in[2], o, in[0]->shape[in[0]->ndim - 1]);
        if (bias) {
            if (pnC_alloc_output(o)) return -1;
            int rc = gemm_run(in, o, p->alpha, 0.0, PNG_EPI_BIAS, bias, stream);
            if (rc != PNG_UNSUPPORTED) return rc;
            /* no fused algorithm for this case: the unfused form below */
        }
        if (bias || !pnC_donate(o, in[2])) {
            if (!bias && pnC_alloc_output(o)) return -1;
            pnC_copy_strided(in[2], o);
            if (pnC_failed()) return -1;
        }
        beta = p->beta;
    } else if (pnC_alloc_output(o)) {
        return -1;
    }
    if (o->size == 0) return 0;
    return gemm_run(in, o, p->alpha, beta, PNG_EPI_NONE, NULL, stream);
}
