/* gemm.c — the GPU eval of the GEMM primitives (Matmul, AddMM; src/ops/linalg.c): maps the
 * operands' strides onto cuBLASLt layouts (transposed views need no copy), folds a shared
 * right operand's batch into the rows, and runs the broadcast batch dims as strided batches
 * (pnG_gemm in gemm.cu), one cuBLASLt call per index of the batch dims that do not merge. */
#include "backend/cuda/eval.h"
#include "backend/cuda/gemm.h"
#include "core/core.h"

/* The params of the GEMM primitives: mirrors gemm_params in src/ops/linalg.c (checked by
 * size in pnG_gemm_eval). */
typedef struct gpu_gemm_params {
    double alpha, beta;
} gpu_gemm_params;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* How a (rows, cols) matrix with element strides (sr, sc) reaches cuBLASLt: row-major with row
 * stride *ld, or transposed with column stride *ld. False when neither works (negative, zero
 * or interleaved strides): the caller copies it. */
static bool matrix_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc, bool *trans,
                          int64_t *ld)
{
    if (cols <= 1) sc = 1;
    if (rows <= 1) sr = max64(cols, 1);
    if (sc == 1 && sr >= max64(1, cols)) {
        *trans = false, *ld = sr;
        return true;
    }
    if (sr == 1 && sc >= max64(1, rows)) {
        *trans = true, *ld = sc;
        return true;
    }
    return false;
}

/* One operand: data, layout and per-output-batch-dim element strides (0 where broadcast). */
typedef struct gpu_operand {
    pn_array *owned; /* a contiguous device copy to release, or NULL */
    const char *data;
    bool trans;
    int64_t ld;
    int64_t bstrides[PNC_MAX_NDIM];
} gpu_operand;

static int operand_init(gpu_operand *op, pn_array *x, int nb)
{
    int nd = x->ndim;
    int64_t rows = x->shape[nd - 2], cols = x->shape[nd - 1];
    op->owned = NULL;
    if (!matrix_layout(rows, cols, x->strides[nd - 2], x->strides[nd - 1], &op->trans, &op->ld)) {
        op->owned = x = pnC_contiguous(x);
        if (!x) return -1;
        matrix_layout(rows, cols, x->strides[nd - 2], x->strides[nd - 1], &op->trans, &op->ld);
    }
    op->data = pnC_data(x);
    int xb = nd - 2; /* x's batch dims align with the last xb of the output's nb */
    for (int d = 0; d < nb; d++) {
        int xd = d - (nb - xb);
        op->bstrides[d] = (xd < 0 || x->shape[xd] == 1) ? 0 : x->strides[xd];
    }
    return 0;
}

/* Whether the whole batch of `a` folds into the rows of one GEMM: `a` is not transposed and
 * its (batch..., M) rows are equally spaced by ld. */
static bool batch_folds(const gpu_operand *a, const int64_t *bshape, int nb, int64_t M)
{
    if (a->trans) return false;
    int64_t expect = M * a->ld;
    for (int d = nb - 1; d >= 0; d--) {
        if (bshape[d] == 1) continue;
        if (a->bstrides[d] != expect) return false;
        expect *= bshape[d];
    }
    return true;
}

/* See eval.h. */
int pnG_gemm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    if (node->params_size != sizeof(gpu_gemm_params)) return PNG_UNSUPPORTED;
    const gpu_gemm_params *p = PNC_PARAMS(node, gpu_gemm_params);
    pn_array *o = out[0];
    int nd = o->ndim, nb = nd - 2, stream = node->stream.index;
    double beta = 0.0;
    if (node->nin == 3 && p->beta != 0.0) {
        if (!pnC_donate(o, in[2])) {
            if (pnC_alloc_output(o)) return -1;
            pnC_copy_strided(in[2], o);
            if (pnC_failed()) return -1;
        }
        beta = p->beta;
    } else if (pnC_alloc_output(o)) {
        return -1;
    }
    if (o->size == 0) return 0;

    int64_t M = o->shape[nd - 2], N = o->shape[nd - 1], K = in[0]->shape[in[0]->ndim - 1];
    const int64_t *bshape = o->shape;
    int64_t nbatch = pnC_shape_size(bshape, nb);
    size_t es = pn_dtype_size(o->dtype);
    char *c = pnC_data(o);
    if (K == 0) /* zeros, or beta * c */
        return pnG_gemm_scale(o->dtype, nbatch * M, N, beta, c, N, stream);
    gpu_operand a, b;
    if (operand_init(&a, in[0], nb)) return -1;
    if (operand_init(&b, in[1], nb)) {
        if (a.owned) pnC_decref(a.owned);
        return -1;
    }
    int rc = 0;
    bool b_shared = true; /* b is the same matrix for every batch */
    for (int d = 0; d < nb; d++) b_shared &= b.bstrides[d] == 0;
    if (nbatch == 1 || (b_shared && batch_folds(&a, bshape, nb, M))) {
        rc = pnG_gemm(o->dtype, a.trans, b.trans, nbatch * M, N, K, p->alpha, a.data, a.ld, 0,
                      b.data, b.ld, 0, beta, c, N, 0, 1, stream);
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
            rc = pnG_gemm(o->dtype, a.trans, b.trans, M, N, K, p->alpha, a.data + ao * (int64_t)es,
                          a.ld, sa[0], b.data + bo * (int64_t)es, b.ld, sb[0], beta,
                          c + co * (int64_t)es, N, sc[0], ext[0], stream);
        }
    }
    if (a.owned) pnC_decref(a.owned);
    if (b.owned) pnC_decref(b.owned);
    return rc;
}
