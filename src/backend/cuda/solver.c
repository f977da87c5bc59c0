/* solver.c — GPU evals of SVD, Eigh, Eig, LUF, QRF (src/ops/linalg_decomp.c), Cholesky and
 * SolveTriangular (src/ops/linalg_solve.c): the C glue around the cuSOLVER / cuBLAS launchers
 * of solver.cu. It copies the (any-strided) input into a dense device work
 * buffer laid out as cuSOLVER needs it and moves results between column-major and Ponte's
 * row-major with device strided copies: a row-major m x n matrix is the column-major n x m
 * transpose, so SVD and Eigh factor that directly and only transpose U / V. Empty inputs give
 * what the CPU kernels give (identities for SVD's U and Vt, LU's identity row order); matrices
 * beyond int extents go to the CPU kernels (PNG_UNSUPPORTED). */
#include "backend/cpu/lapack.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gpu.h"
#include "backend/cuda/solver.h"
#include "core/core.h"

#include <limits.h>
#include <stdlib.h>
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

/* The shared checks: the batch size (0 for an empty input) and matrix extents, or
 * PNG_UNSUPPORTED. */
static int dims(pn_array *x, int64_t *nmat, int64_t *m, int64_t *n)
{
    *m = x->shape[x->ndim - 2], *n = x->shape[x->ndim - 1];
    if (*m * *n > INT_MAX) return PNG_UNSUPPORTED;
    *nmat = *m && *n ? x->size / (*m * *n) : 0;
    return 0;
}

/* Fills the dense device output o with value(i, d) for its element i, written on the host and
 * copied (the few outputs of empty inputs that have elements). 0 or -1. */
static int fill_from_host(pn_array *o, double (*value)(int64_t i, int64_t d), int64_t d, int stream)
{
    if (!o->size) return 0;
    size_t es = pn_dtype_size(o->dtype);
    char *h = malloc((size_t)o->size * es);
    if (!h) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[linalg] Out of memory.");
        return -1;
    }
    for (int64_t i = 0; i < o->size; i++) pnC_store_f64(h + (size_t)i * es, o->dtype, value(i, d));
    int rc = pnG_copy_to_device(pnC_data(o), h, (size_t)o->size * es, stream);
    free(h);
    return rc;
}

/* Device scratch of nbytes, released by work_free. */
static void *work_alloc(size_t nbytes, int stream) { return pnG_malloc(nbytes ? nbytes : 1, stream); }
static void work_free(void *p, size_t nbytes, int stream)
{
    if (p) pnG_free(p, nbytes ? nbytes : 1, stream);
}

/* One decomposition's run: the input's extents, its dense device work copy a (column-major
 * when asked), and an extra device buffer of extra_bytes (SVD's U'). */
typedef struct decomp_job {
    const pnK_decomp_params *p;
    pn_array *const *out;
    pn_dtype t;
    int64_t nmat, m, n;
    void *a, *extra;
    int stream;
} decomp_job;

/* The solver call of one decomposition and its moves of the results into out. */
typedef int (*decomp_fn)(const decomp_job *j);

/* The skeleton every GPU decomposition shares: checks the extents (square when asked; others
 * go to the CPU kernel as PNG_UNSUPPORTED), allocates the nout outputs, and for an empty input
 * runs `empty` (NULL: its outputs have no elements); else copies the input into the work
 * buffer (row- or column-major), adds extra_per_mat elements of scratch per matrix, runs fn,
 * releases the scratch. */
static int decompose(const pnC_node *node, pn_array *const *in, pn_array *const *out, int nout,
                     bool square, bool colmajor, int64_t extra_per_mat, decomp_fn fn, decomp_fn empty)
{
    decomp_job j = {PNC_PARAMS(node, pnK_decomp_params), out, in[0]->dtype, 0, 0, 0, NULL, NULL,
                    node->stream.index};
    if (dims(in[0], &j.nmat, &j.m, &j.n) || (square && j.m != j.n)) return PNG_UNSUPPORTED;
    for (int k = 0; k < nout; k++)
        if (pnC_alloc_output(out[k])) return -1;
    if (!j.nmat) return empty ? empty(&j) : 0;
    size_t es = pn_dtype_size(j.t), abytes = (size_t)(j.nmat * j.m * j.n) * es;
    size_t xbytes = (size_t)(j.nmat * extra_per_mat) * es;
    j.a = work_alloc(abytes, j.stream);
    j.extra = extra_per_mat ? work_alloc(xbytes, j.stream) : NULL;
    int rc = -1;
    if (j.a && (j.extra || !extra_per_mat)) {
        load_input(in[0], j.a, colmajor, j.stream);
        if (!pnC_failed()) rc = fn(&j);
    }
    work_free(j.a, abytes, j.stream);
    if (extra_per_mat) work_free(j.extra, xbytes, j.stream);
    return rc;
}

/* Moves a column-major result into a row-major output after a successful solver call. */
static int results_from_colmajor(int rc, const void *src, pn_array *dst, const decomp_job *j,
                                 int64_t r, int64_t c)
{
    if (rc != 0) return rc;
    from_colmajor(src, pnC_data(dst), j->t, j->nmat, r, c, j->stream);
    return pnC_failed() ? -1 : 0;
}

/* Row-major a (m x n) is column-major a^T (n x m) = U' S V'^T, so a = V' S U'^T: the
 * column-major U' read row-major is Vt, and U is V' transposed out of column-major. */
static int svd_run(const decomp_job *j)
{
    bool vec = j->p->vectors;
    int rc = pnG_solver_svd(j->t, j->nmat, (int)j->n, (int)j->m, j->a, pnC_data(j->out[vec ? 1 : 0]),
                            vec ? pnC_data(j->out[2]) : NULL, j->extra, vec, j->stream);
    return vec ? results_from_colmajor(rc, j->extra, j->out[0], j, j->m, j->m) : rc;
}

/* Row-major a read column-major is a^T: its lower triangle is a's upper one; the eigenvectors
 * (column-major columns) are transposed out into the row-major V. */
static int eigh_run(const decomp_job *j)
{
    bool vec = j->p->vectors;
    int rc = pnG_solver_eigh(j->t, j->nmat, (int)j->n, j->a, pnC_data(j->out[0]), vec,
                             j->p->upper, j->stream);
    return vec ? results_from_colmajor(rc, j->a, j->out[1], j, j->n, j->n) : rc;
}

/* geev factors the column-major copy (A itself); the launcher packs its results into the
 * complex64 outputs. */
static int eig_run(const decomp_job *j)
{
    return pnG_solver_eig(j->t, j->nmat, (int)j->n, j->a, pnC_data(j->out[0]),
                          j->p->vectors ? pnC_data(j->out[1]) : NULL, j->stream);
}

/* complex64: complex geev of the column-major copy writes the values straight into out[0] and
 * the column-major eigenvectors into the scratch (extra), transposed out into the row-major
 * V. */
static int eig_complex_run(const decomp_job *j)
{
    bool vec = j->p->vectors;
    int rc = pnG_solver_eig_complex(j->nmat, (int)j->n, j->a, pnC_data(j->out[0]),
                                    vec ? j->extra : NULL, j->stream);
    return vec ? results_from_colmajor(rc, j->extra, j->out[1], j, j->n, j->n) : rc;
}

/* getrf factors the column-major copy in place; LU goes back to row-major. */
static int luf_run(const decomp_job *j)
{
    int rc = pnG_solver_lu(j->t, j->nmat, (int)j->m, (int)j->n, j->a, pnC_data(j->out[1]),
                           pnC_data(j->out[2]), j->stream);
    return results_from_colmajor(rc, j->a, j->out[0], j, j->m, j->n);
}

/* geqrf + orgqr factor the column-major copy in place; the launcher writes R, and Q (the first
 * k columns of each m x n column-major matrix) is moved out into the row-major output. */
static int qr_run(const decomp_job *j)
{
    int64_t k = j->m < j->n ? j->m : j->n;
    int rc = pnG_solver_qr(j->t, j->nmat, (int)j->m, (int)j->n, j->a, pnC_data(j->out[1]),
                           j->stream);
    if (rc) return rc;
    int64_t shape[3] = {j->nmat, j->m, k}, ss[3] = {j->m * j->n, 1, j->m}, ds[3];
    mat_strides(j->m, k, false, ds);
    pnG_strided_copy(j->a, ss, j->t, pnC_data(j->out[0]), ds, j->t, shape, 3, j->stream);
    return pnC_failed() ? -1 : 0;
}

/* Element i of a batch of d x d identities. */
static double identity_at(int64_t i, int64_t d) { return i % (d * d) / d == i % d; }

/* An empty matrix: U and Vt are identities (as the CPU kernel). */
static int svd_empty(const decomp_job *j)
{
    for (int k = 0; j->p->vectors && k < 3; k += 2) {
        pn_array *o = j->out[k];
        if (fill_from_host(o, identity_at, o->shape[o->ndim - 1], j->stream)) return -1;
    }
    return 0;
}

/* See eval.h. */
int pnG_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    int64_t m = in[0]->shape[in[0]->ndim - 2];
    return decompose(node, in, out, p->vectors ? 3 : 1, false, false, p->vectors ? m * m : 0,
                     svd_run, svd_empty);
}

/* See eval.h. */
int pnG_eigh_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    return decompose(node, in, out, p->vectors ? 2 : 1, false, false, 0, eigh_run, NULL);
}

/* See eval.h. */
int pnG_eig_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    if (in[0]->dtype == PN_COMPLEX64) {
        int64_t n = in[0]->shape[in[0]->ndim - 1];
        return decompose(node, in, out, p->vectors ? 2 : 1, true, true, p->vectors ? n * n : 0,
                         eig_complex_run, NULL);
    }
    return decompose(node, in, out, p->vectors ? 2 : 1, true, true, 0, eig_run, NULL);
}

/* Element i of rows 0..d-1 repeated. */
static double row_order_at(int64_t i, int64_t d) { return (double)(i % d); }

/* No columns (or rows): the row indices are the identity order (as the CPU kernel). */
static int luf_empty(const decomp_job *j) { return fill_from_host(j->out[2], row_order_at, j->m, j->stream); }

/* See eval.h. */
int pnG_luf_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    return decompose(node, in, out, 3, false, true, 0, luf_run, luf_empty);
}

/* See eval.h. */
int pnG_qr_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    return decompose(node, in, out, 2, false, true, 0, qr_run, NULL);
}

/* potrf factors the row-major copy (column-major, its upper triangle is the row-major lower
 * one) in place; the result is already row-major L. */
static int cholesky_run(const decomp_job *j)
{
    int rc = pnG_solver_cholesky(j->t, j->nmat, (int)j->n, j->a, j->stream);
    if (rc == 0)
        rc = pnG_copy_device(pnC_data(j->out[0]), j->a,
                             (size_t)(j->nmat * j->n * j->n) * pn_dtype_size(j->t), j->stream);
    return rc;
}

/* See eval.h. */
int pnG_cholesky_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    if (out[0]->size == 0) return pnC_alloc_output(out[0]); /* nothing to factor */
    return decompose(node, in, out, 1, true, false, 0, cholesky_run, NULL);
}

/* See eval.h. b is copied into the output (row-major), which trsm solves in place. */
int pnG_trsm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_trsm_params *p = PNC_PARAMS(node, pnK_trsm_params);
    if (out[0]->size == 0) return pnC_alloc_output(out[0]); /* nothing to solve */
    int64_t nmat, n, ncols, nb, k;
    if (dims(in[0], &nmat, &n, &ncols) || dims(in[1], &nb, &n, &k) || n * k > INT_MAX)
        return PNG_UNSUPPORTED; /* beyond int extents */
    int stream = node->stream.index;
    if (pnC_alloc_output(out[0])) return -1;
    load_input(in[1], pnC_data(out[0]), false, stream);
    pn_array *a = pnC_contiguous(in[0]);
    if (!a || pnC_failed()) {
        if (a) pnC_decref(a);
        return -1;
    }
    int64_t singular = -1;
    int rc = pnG_solver_trsm(out[0]->dtype, nmat, (int)n, (int)k, p->upper, p->unit, pnC_data(a),
                             pnC_data(out[0]), &singular, stream);
    pnC_decref(a);
    if (rc == 0 && singular >= 0) {
        pn_set_error(PN_ERR_BACKEND, "[linalg::%s] Matrix %lld of the batch is singular (a zero "
                     "pivot).", pnK_trsm_fn_name(p->fn), (long long)singular);
        return -1;
    }
    return rc;
}
