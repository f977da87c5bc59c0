/* solver.c — GPU evals of SVD, Eigh, Eig and LUF (src/ops/linalg_decomp.c): the C glue around the
 * cuSOLVER launchers of solver.cu. It copies the (any-strided) input into a dense device work
 * buffer laid out as cuSOLVER needs it and moves results between column-major and Ponte's
 * row-major with device strided copies: a row-major m x n matrix is the column-major n x m
 * transpose, so SVD and Eigh factor that directly and only transpose U / V. Empty inputs and
 * matrices beyond int extents go to the CPU kernels (PNG_UNSUPPORTED). */
#include "backend/cpu/lapack.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gpu.h"
#include "backend/cuda/solver.h"
#include "core/core.h"

#include <limits.h>
#include <string.h>

/* Strides of a batch of nmat dense r x c matrices: (r*c, c, 1) row-major, (r*c, 1, r) column-
 * major. */
static void mat_strides(int64_t r, int64_t c, bool colmajor, int64_t *s)
{
    s[0] = r * c;
    s[1] = colmajor ? 1 : c;
    s[2] = colmajor ? r : 1;
}

/* Copies the input (any strides, shape (..., r, c)) into dst as nmat dense matrices, row- or
 * column-major, on the device. */
static void load_input(const pn_array *x, void *dst, bool colmajor, int stream)
{
    int nd = x->ndim;
    int64_t r = x->shape[nd - 2], c = x->shape[nd - 1], ds[PNC_MAX_NDIM], m3[3];
    mat_strides(r, c, colmajor, m3);
    int64_t acc = m3[0]; /* batch dims row-major over whole matrices */
    for (int d = nd - 3; d >= 0; d--) {
        ds[d] = acc;
        acc *= x->shape[d];
    }
    ds[nd - 2] = m3[1], ds[nd - 1] = m3[2];
    pnG_strided_copy(pnC_data(x), x->strides, x->dtype, dst, ds, x->dtype, x->shape, nd, stream);
}

/* dst (nmat row-major r x c matrices) = src read as column-major r x c matrices. */
static void from_colmajor(const void *src, void *dst, pn_dtype t, int64_t nmat, int64_t r,
                          int64_t c, int stream)
{
    int64_t shape[3] = {nmat, r, c}, ss[3], ds[3];
    mat_strides(r, c, true, ss);
    mat_strides(r, c, false, ds);
    pnG_strided_copy(src, ss, t, dst, ds, t, shape, 3, stream);
}

/* The shared checks: the batch size and matrix extents, or PNG_UNSUPPORTED. */
static int dims(pn_array *x, int64_t *nmat, int64_t *m, int64_t *n)
{
    *m = x->shape[x->ndim - 2], *n = x->shape[x->ndim - 1];
    if (*m == 0 || *n == 0 || x->size == 0 || *m * *n > INT_MAX) return PNG_UNSUPPORTED;
    *nmat = x->size / (*m * *n);
    return 0;
}

/* Device scratch of nbytes, released by work_free. */
static void *work_alloc(size_t nbytes, int stream) { return pnG_malloc(nbytes ? nbytes : 1, stream); }
static void work_free(void *p, size_t nbytes, int stream)
{
    if (p) pnG_free(p, nbytes ? nbytes : 1, stream);
}

/* See eval.h. Row-major a (m x n) is column-major a^T (n x m) = U' S V'^T, so a = V' S U'^T:
 * the column-major U' read row-major is Vt, and U is V' transposed out of column-major. */
int pnG_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    int64_t nmat, m, n;
    if (dims(in[0], &nmat, &m, &n)) return PNG_UNSUPPORTED;
    int stream = node->stream.index, nout = p->vectors ? 3 : 1;
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_dtype t = in[0]->dtype;
    size_t es = pn_dtype_size(t), abytes = (size_t)(nmat * m * n) * es;
    size_t vbytes = p->vectors ? (size_t)(nmat * m * m) * es : 0;
    void *a = work_alloc(abytes, stream), *v = p->vectors ? work_alloc(vbytes, stream) : NULL;
    int rc = -1;
    if (a && (v || !p->vectors)) {
        load_input(in[0], a, false, stream);
        if (!pnC_failed())
            rc = pnG_solver_svd(t, nmat, (int)n, (int)m, a, pnC_data(out[p->vectors ? 1 : 0]),
                                p->vectors ? pnC_data(out[2]) : NULL, v, p->vectors, stream);
        if (rc == 0 && p->vectors) {
            from_colmajor(v, pnC_data(out[0]), t, nmat, m, m, stream);
            rc = pnC_failed() ? -1 : 0;
        }
    }
    work_free(a, abytes, stream);
    work_free(v, vbytes, stream);
    return rc;
}

/* See eval.h. Row-major a read column-major is a^T: its lower triangle is a's upper one; the
 * eigenvectors (column-major columns) are transposed out into the row-major V. */
int pnG_eigh_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    int64_t nmat, m, n;
    if (dims(in[0], &nmat, &m, &n)) return PNG_UNSUPPORTED;
    int stream = node->stream.index, nout = p->vectors ? 2 : 1;
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_dtype t = in[0]->dtype;
    size_t abytes = (size_t)(nmat * n * n) * pn_dtype_size(t);
    void *a = work_alloc(abytes, stream);
    int rc = -1;
    if (a) {
        load_input(in[0], a, false, stream);
        if (!pnC_failed())
            rc = pnG_solver_eigh(t, nmat, (int)n, a, pnC_data(out[0]), p->vectors, p->upper, stream);
        if (rc == 0 && p->vectors) {
            from_colmajor(a, pnC_data(out[1]), t, nmat, n, n, stream);
            rc = pnC_failed() ? -1 : 0;
        }
    }
    work_free(a, abytes, stream);
    return rc;
}

/* See eval.h. geev factors the column-major copy (A itself); its results are packed into the
 * complex64 outputs by the launcher. */
int pnG_eig_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    int64_t nmat, m, n;
    if (dims(in[0], &nmat, &m, &n) || m != n) return PNG_UNSUPPORTED;
    int stream = node->stream.index, nout = p->vectors ? 2 : 1;
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_dtype t = in[0]->dtype;
    size_t abytes = (size_t)(nmat * n * n) * pn_dtype_size(t);
    void *a = work_alloc(abytes, stream);
    int rc = -1;
    if (a) {
        load_input(in[0], a, true, stream);
        if (!pnC_failed())
            rc = pnG_solver_eig(t, nmat, (int)n, a, pnC_data(out[0]),
                                p->vectors ? pnC_data(out[1]) : NULL, stream);
    }
    work_free(a, abytes, stream);
    return rc;
}

/* See eval.h. getrf factors the column-major copy in place; LU goes back to row-major. */
int pnG_luf_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    int64_t nmat, m, n;
    if (dims(in[0], &nmat, &m, &n)) return PNG_UNSUPPORTED;
    int stream = node->stream.index;
    for (int j = 0; j < 3; j++)
        if (pnC_alloc_output(out[j])) return -1;
    pn_dtype t = in[0]->dtype;
    size_t abytes = (size_t)(nmat * m * n) * pn_dtype_size(t);
    void *a = work_alloc(abytes, stream);
    int rc = -1;
    if (a) {
        load_input(in[0], a, true, stream);
        if (!pnC_failed())
            rc = pnG_solver_lu(t, nmat, (int)m, (int)n, a, pnC_data(out[1]), pnC_data(out[2]), stream);
        if (rc == 0) {
            from_colmajor(a, pnC_data(out[0]), t, nmat, m, n, stream);
            rc = pnC_failed() ? -1 : 0;
        }
    }
    work_free(a, abytes, stream);
    return rc;
}
