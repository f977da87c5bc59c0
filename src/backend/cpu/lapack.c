/* lapack.c — CPU kernels of the decompositions (SVD, Eigh, Eig, LUF, QRF, Cholesky) over
 * OpenBLAS's LAPACK, and of SolveTriangular over its BLAS trsm.
 * LAPACK is column-major and Ponte row-major: a row-major m x n matrix is the column-major
 * n x m transpose, which SVD and Eigh use directly (their outputs land transposed where they
 * should); Eig, LUF and QRF transpose their input first. Batches run one matrix per OpenMP
 * thread when the matrices are small or many (LAPACK then stays on its calling thread),
 * otherwise one at a time with OpenBLAS's own threads. */
#include "backend/cpu/lapack.h"

#include "core/core.h"

#include <cblas.h>
#include <complex.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── per-dtype LAPACK ───────────────────────────── */

/* The routines of one dtype behind void pointers, so the drivers below exist once. */
typedef struct lapack_fns {
    void (*gesdd)(char jobz, int m, int n, void *a, int lda, void *s, void *u, int ldu, void *vt,
                  int ldvt, void *work, int lwork, int *iwork, int *info);
    void (*syevd)(char jobz, char uplo, int n, void *a, int lda, void *w, void *work, int lwork,
                  int *iwork, int liwork, int *info);
    void (*geev)(char jobvr, int n, void *a, int lda, void *wr, void *wi, void *vr, int ldvr,
                 void *work, int lwork, int *info);
    void (*getrf)(int m, int n, void *a, int lda, int *ipiv, int *info);
    void (*potrf)(char uplo, int n, void *a, int lda, int *info);
    void (*geqrf)(int m, int n, void *a, int lda, void *tau, void *work, int lwork, int *info);
    void (*orgqr)(int m, int n, int k, void *a, int lda, const void *tau, void *work, int lwork,
                  int *info);
} lapack_fns;

#define PNK_LAPACK_WRAPPERS(T, P)                                                              \
    static void P##_gesdd(char jobz, int m, int n, void *a, int lda, void *s, void *u, int ldu, \
                          void *vt, int ldvt, void *work, int lwork, int *iwork, int *info)    \
    {                                                                                          \
        P##gesdd_(&jobz, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info);   \
    }                                                                                          \
    static void P##_syevd(char jobz, char uplo, int n, void *a, int lda, void *w, void *work,   \
                          int lwork, int *iwork, int liwork, int *info)                        \
    {                                                                                          \
        P##syevd_(&jobz, &uplo, &n, a, &lda, w, work, &lwork, iwork, &liwork, info);           \
    }                                                                                          \
    static void P##_geev(char jobvr, int n, void *a, int lda, void *wr, void *wi, void *vr,     \
                         int ldvr, void *work, int lwork, int *info)                           \
    {                                                                                          \
        const char no = 'N';                                                                   \
        int one = 1;                                                                           \
        P##geev_(&no, &jobvr, &n, a, &lda, wr, wi, NULL, &one, vr, &ldvr, work, &lwork, info); \
    }                                                                                          \
    static void P##_getrf(int m, int n, void *a, int lda, int *ipiv, int *info)                \
    {                                                                                          \
        P##getrf_(&m, &n, a, &lda, ipiv, info);                                                \
    }                                                                                          \
    static void P##_potrf(char uplo, int n, void *a, int lda, int *info)                       \
    {                                                                                          \
        P##potrf_(&uplo, &n, a, &lda, info);                                                   \
    }                                                                                          \
    static void P##_geqrf(int m, int n, void *a, int lda, void *tau, void *work, int lwork,     \
                          int *info)                                                           \
    {                                                                                          \
        P##geqrf_(&m, &n, a, &lda, tau, work, &lwork, info);                                   \
    }                                                                                          \
    static void P##_orgqr(int m, int n, int k, void *a, int lda, const void *tau, void *work,  \
                          int lwork, int *info)                                                \
    {                                                                                          \
        P##orgqr_(&m, &n, &k, a, &lda, tau, work, &lwork, info);                               \
    }                                                                                          \
    static const lapack_fns P##_fns = {P##_gesdd, P##_syevd, P##_geev,  P##_getrf,             \
                                       P##_potrf, P##_geqrf, P##_orgqr};
PNK_LAPACK_WRAPPERS(float, s)
PNK_LAPACK_WRAPPERS(double, d)

static const lapack_fns *fns_of(pn_dtype t) { return t == PN_FLOAT32 ? &s_fns : &d_fns; }

/* Element i of a float32/float64 buffer, as a double; and the store. */
static inline double ld(pn_dtype t, const void *p, int64_t i)
{
    return t == PN_FLOAT32 ? ((const float *)p)[i] : ((const double *)p)[i];
}
static inline void st(pn_dtype t, void *p, int64_t i, double v)
{
    if (t == PN_FLOAT32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* dst (cols x rows, row-major) = the transpose of src (rows x cols, row-major), elem bytes. */
static void transpose(const void *src, void *dst, int64_t rows, int64_t cols, size_t elem)
{
    const char *s = src;
    char *d = dst;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            memcpy(d + (j * rows + i) * elem, s + (i * cols + j) * elem, elem);
}

/* LAPACK's workspace answer (a float or double holding the optimal size) as an int. */
static int work_size(pn_dtype t, const void *q) { return (int)ld(t, q, 0) + 1; }

/* ───────────────────────────── batch driver ───────────────────────────── */

/* One matrix of a batch: reads matrix i of the input, writes its outputs, using work (the
 * driver's per-thread scratch of job->work_bytes). Returns LAPACK's info. */
typedef struct job job;
struct job {
    const char *name;
    pn_dtype t;
    int64_t nmat, m, n;
    const char *a;            /* the row-contiguous input */
    const char *b;            /* a second row-contiguous input (SolveTriangular's b), k columns */
    int64_t k;
    const char *fail;         /* what a nonzero info means, for the error (NULL: no convergence) */
    char *o[3];               /* output data */
    int64_t ostride[3];       /* elements per matrix of each output */
    size_t work_bytes;
    int lwork, liwork;        /* LAPACK workspace (elements of t, ints) */
    bool vectors, upper, unit;
    int (*one)(const job *j, int64_t i, char *work);
};

/* Runs job->one over the batch. Returns 0, or -1 with an error (out of memory, or the first
 * matrix whose info was nonzero: no convergence). */
static int run(const job *jb)
{
    int64_t big = jb->m > jb->n ? jb->m : jb->n;
    double flops = (double)jb->nmat * (double)big * (double)big * (double)big;
    bool par = jb->nmat > 1 && flops > 4.0 * PNC_PAR_GRAIN && !omp_in_parallel() &&
               (big <= 128 || jb->nmat >= omp_get_max_threads());
    /* OpenBLAS (OpenMP build) sizes its thread team by omp_get_max_threads() at each call: a
     * small matrix computed alone stays on this thread (a team's barriers cost more than the
     * work, and much more on a loaded machine). The setting is this thread's own ICV. */
    int saved_threads = omp_get_max_threads();
    bool serial_lapack = !par && big <= 256;
    if (serial_lapack) omp_set_num_threads(1);
    int64_t bad = -1;
    int bad_info = 0, oom = 0;
#pragma omp parallel if (par)
    {
        char *work = malloc(jb->work_bytes ? jb->work_bytes : 1);
        if (!work) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t i = 0; i < jb->nmat; i++) {
            if (!work) continue;
            int info = jb->one(jb, i, work);
            if (info) {
#pragma omp critical(pnk_lapack_info)
                if (bad < 0 || i < bad) bad = i, bad_info = info;
            }
        }
        free(work);
    }
    if (serial_lapack) omp_set_num_threads(saved_threads);
    if (oom) {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[linalg::%s] Out of memory for the LAPACK workspace.",
                 jb->name);
        return -1;
    }
    if (bad >= 0) {
        pnC_fail(PN_ERR_BACKEND, "[linalg::%s] LAPACK failed on matrix %lld of the batch (info "
                 "%d): %s.", jb->name, (long long)bad, bad_info,
                 jb->fail ? jb->fail : "the algorithm did not converge");
        return -1;
    }
    return 0;
}

/* Sets up the common part of a job over in (made row-contiguous into *held) and allocates
 * the outputs. Returns 0, 1 when there is nothing to compute, or -1. */
static int job_init(job *jb, const char *name, pn_array *in, pn_array **held,
                    pn_array *const *out, int nout)
{
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    jb->name = name;
    jb->t = in->dtype;
    jb->m = in->shape[in->ndim - 2];
    jb->n = in->shape[in->ndim - 1];
    jb->nmat = jb->m && jb->n ? in->size / (jb->m * jb->n) : 0;
    if (jb->m > INT_MAX / (jb->n ? jb->n : 1) / 8) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Matrices of %lld x %lld are too large "
                 "for LAPACK.", name, (long long)jb->m, (long long)jb->n);
        return -1;
    }
    for (int j = 0; j < nout; j++) {
        jb->o[j] = pnC_data(out[j]);
        int64_t batch = 1;
        for (int d = 0; d < in->ndim - 2; d++) batch *= in->shape[d];
        jb->ostride[j] = batch ? out[j]->size / batch : 0;
    }
    if (!jb->nmat) return 1;
    *held = pnC_contiguous(in);
    if (!*held) return -1;
    jb->a = pnC_data(*held);
    return 0;
}

/* ───────────────────────────── SVD ───────────────────────────── */

/* Row-major a (m x n) is column-major a^T (n x m). gesdd of a^T = U' S V'^T gives
 * a = V' S U'^T: the column-major V'^T (m x m) read row-major is U, and the column-major U'
 * (n x n) read row-major is Vt. So U is passed as gesdd's vt and Vt as its u. */
static int svd_one(const job *jb, int64_t i, char *work)
{
    size_t es = pn_dtype_size(jb->t);
    int m = (int)jb->m, n = (int)jb->n, k = m < n ? m : n, info = 0;
    char *a = work, *w = a + (size_t)(m * n) * es;
    int *iwork = (int *)(w + (size_t)jb->lwork * es);
    memcpy(a, jb->a + (size_t)(i * m * n) * es, (size_t)(m * n) * es);
    char *s = jb->o[jb->vectors ? 1 : 0] + (size_t)(i * k) * es;
    char *u = jb->vectors ? jb->o[0] + (size_t)(i * m * m) * es : NULL;
    char *vt = jb->vectors ? jb->o[2] + (size_t)(i * n * n) * es : NULL;
    fns_of(jb->t)->gesdd(jb->vectors ? 'A' : 'N', n, m, a, n > 1 ? n : 1, s, vt, n > 1 ? n : 1,
                         u, m > 1 ? m : 1, w, jb->lwork, iwork, &info);
    return info;
}

/* See lapack.h. */
int pnK_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    job jb = {.vectors = p->vectors, .one = svd_one};
    pn_array *held = NULL;
    int rc = job_init(&jb, "svd", in[0], &held, out, p->vectors ? 3 : 1);
    if (rc < 0) return -1;
    if (rc == 1) { /* an empty matrix: U and Vt are identities */
        for (int j = 0; p->vectors && j < 3; j += 2) {
            int64_t d = out[j]->shape[out[j]->ndim - 1], nm = d ? out[j]->size / (d * d) : 0;
            for (int64_t q = 0; q < nm; q++)
                for (int64_t e = 0; e < d * d; e++)
                    st(jb.t, jb.o[j], q * d * d + e, e / d == e % d);
        }
        return 0;
    }
    int m = (int)jb.m, n = (int)jb.n, k = m < n ? m : n, info = 0, iq[1];
    double q[2] = {0};
    fns_of(jb.t)->gesdd(p->vectors ? 'A' : 'N', n, m, NULL, n, NULL, NULL, n, NULL, m, q, -1, iq,
                        &info);
    jb.lwork = work_size(jb.t, q);
    size_t es = pn_dtype_size(jb.t);
    jb.work_bytes = ((size_t)(m * n) + (size_t)jb.lwork) * es + sizeof(int) * 8 * (size_t)k;
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── Eigh ───────────────────────────── */

/* Row-major a read column-major is a^T: its lower triangle is a's upper one, hence the
 * flipped uplo. The eigenvectors come back as columns of a column-major matrix: transposed
 * into the row-major V. */
static int eigh_one(const job *jb, int64_t i, char *work)
{
    size_t es = pn_dtype_size(jb->t);
    int n = (int)jb->n, info = 0;
    char *a = work, *w = a + (size_t)(n * n) * es;
    int *iwork = (int *)(w + (size_t)jb->lwork * es);
    memcpy(a, jb->a + (size_t)(i * n * n) * es, (size_t)(n * n) * es);
    fns_of(jb->t)->syevd(jb->vectors ? 'V' : 'N', jb->upper ? 'L' : 'U', n, a, n,
                         jb->o[0] + (size_t)(i * n) * es, w, jb->lwork, iwork, jb->liwork, &info);
    if (!info && jb->vectors) transpose(a, jb->o[1] + (size_t)(i * n * n) * es, n, n, es);
    return info;
}

/* See lapack.h. */
int pnK_eigh_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    job jb = {.vectors = p->vectors, .upper = p->upper, .one = eigh_one};
    pn_array *held = NULL;
    int rc = job_init(&jb, p->vectors ? "eigh" : "eigvalsh", in[0], &held, out, p->vectors ? 2 : 1);
    if (rc) return rc < 0 ? -1 : 0;
    int n = (int)jb.n, info = 0, iq = 0;
    double q[2] = {0};
    fns_of(jb.t)->syevd(p->vectors ? 'V' : 'N', 'L', n, NULL, n, NULL, q, -1, &iq, -1, &info);
    jb.lwork = work_size(jb.t, q);
    jb.liwork = iq > 1 ? iq : 1;
    size_t es = pn_dtype_size(jb.t);
    jb.work_bytes = ((size_t)(n * n) + (size_t)jb.lwork) * es + sizeof(int) * (size_t)jb.liwork;
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── Eig ───────────────────────────── */

/* geev of the column-major copy of a. A complex pair (wi[j] > 0) has the eigenvectors
 * vr[:, j] ± i vr[:, j+1]. */
static int eig_one(const job *jb, int64_t i, char *work)
{
    size_t es = pn_dtype_size(jb->t);
    int n = (int)jb->n, info = 0;
    char *a = work, *wr = a + (size_t)(n * n) * es, *wi = wr + (size_t)n * es;
    char *vr = wi + (size_t)n * es, *w = vr + (size_t)(n * n) * es;
    transpose(jb->a + (size_t)(i * n * n) * es, a, n, n, es);
    fns_of(jb->t)->geev(jb->vectors ? 'V' : 'N', n, a, n, wr, wi, vr, n, w, jb->lwork, &info);
    if (info) return info;
    float complex *vals = (float complex *)jb->o[0] + i * n;
    for (int j = 0; j < n; j++) vals[j] = CMPLXF((float)ld(jb->t, wr, j), (float)ld(jb->t, wi, j));
    if (!jb->vectors) return 0;
    float complex *v = (float complex *)jb->o[1] + i * n * n; /* row-major: v[r * n + j] */
    for (int j = 0; j < n; j++) {
        double im = ld(jb->t, wi, j);
        for (int r = 0; r < n; r++) {
            double re = ld(jb->t, vr, (int64_t)j * n + r);
            if (im > 0)
                v[r * n + j] = CMPLXF((float)re, (float)ld(jb->t, vr, (int64_t)(j + 1) * n + r));
            else if (im < 0)
                v[r * n + j] = CMPLXF((float)ld(jb->t, vr, (int64_t)(j - 1) * n + r), (float)-re);
            else
                v[r * n + j] = CMPLXF((float)re, 0.0f);
        }
    }
    return 0;
}

/* cgeev of the column-major copy of complex64 a: the eigenvalues straight into the output,
 * the column-major eigenvectors transposed into the row-major V. Work: a and vr (n * n
 * complex each), lwork complex, then 2n floats of rwork. */
static int eig_one_complex(const job *jb, int64_t i, char *work)
{
    const size_t es = 2 * sizeof(float);
    int n = (int)jb->n, info = 0, one = 1, ldvr = n > 1 ? n : 1, lwork = jb->lwork;
    char no = 'N', jobvr = jb->vectors ? 'V' : 'N';
    float *a = (float *)work, *vr = a + 2 * (size_t)n * n, *w = vr + 2 * (size_t)n * n;
    float *rwork = w + 2 * (size_t)lwork;
    transpose(jb->a + (size_t)(i * n * n) * es, a, n, n, es);
    float *vals = (float *)jb->o[0] + 2 * i * n;
    cgeev_(&no, &jobvr, &n, a, &ldvr, vals, NULL, &one, vr, &ldvr, w, &lwork, rwork, &info);
    if (info || !jb->vectors) return info;
    transpose(vr, jb->o[1] + (size_t)(i * n * n) * es, n, n, es);
    return 0;
}

/* See lapack.h. */
int pnK_eig_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_decomp_params *p = PNC_PARAMS(node, pnK_decomp_params);
    bool cplx = in[0]->dtype == PN_COMPLEX64;
    job jb = {.vectors = p->vectors, .one = cplx ? eig_one_complex : eig_one};
    pn_array *held = NULL;
    int rc = job_init(&jb, p->vectors ? "eig" : "eigvals", in[0], &held, out, p->vectors ? 2 : 1);
    if (rc) return rc < 0 ? -1 : 0;
    int n = (int)jb.n, info = 0;
    if (cplx) {
        char no = 'N', jobvr = p->vectors ? 'V' : 'N';
        int one = 1, ld = n > 1 ? n : 1, query = -1;
        float q[2] = {0}, dummy[2] = {0};
        cgeev_(&no, &jobvr, &n, dummy, &ld, dummy, NULL, &one, dummy, &ld, q, &query, dummy, &info);
        jb.lwork = (int)q[0] + 1;
        jb.work_bytes = 2 * sizeof(float) * ((size_t)(2 * n * n) + (size_t)jb.lwork + (size_t)n);
        rc = run(&jb);
        pnC_decref(held);
        return rc;
    }
    double q[2] = {0};
    fns_of(jb.t)->geev(p->vectors ? 'V' : 'N', n, NULL, n, NULL, NULL, NULL, n, q, -1, &info);
    jb.lwork = work_size(jb.t, q);
    jb.work_bytes = ((size_t)(2 * n * n + 2 * n) + (size_t)jb.lwork) * pn_dtype_size(jb.t);
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── LUF ───────────────────────────── */

/* See lapack.h. */
void pnK_lu_pivots(const int *ipiv, int64_t k, int64_t m, uint32_t *pivots, uint32_t *rows)
{
    for (int64_t j = 0; j < m; j++) rows[j] = (uint32_t)j;
    for (int64_t j = 0; j < k; j++) pivots[j] = (uint32_t)(ipiv[j] - 1);
    for (int64_t j = k - 1; j >= 0; j--) {
        uint32_t p = pivots[j], t = rows[p];
        rows[p] = rows[j];
        rows[j] = t;
    }
}

static int luf_one(const job *jb, int64_t i, char *work)
{
    size_t es = pn_dtype_size(jb->t);
    int m = (int)jb->m, n = (int)jb->n, k = m < n ? m : n, info = 0;
    char *a = work;
    int *ipiv = (int *)(a + (size_t)(m * n) * es);
    transpose(jb->a + (size_t)(i * m * n) * es, a, m, n, es); /* column-major copy */
    fns_of(jb->t)->getrf(m, n, a, m > 1 ? m : 1, ipiv, &info);
    if (info < 0) return info;
    transpose(a, jb->o[0] + (size_t)(i * m * n) * es, n, m, es);
    pnK_lu_pivots(ipiv, k, m, (uint32_t *)jb->o[1] + i * k, (uint32_t *)jb->o[2] + i * m);
    return 0; /* info > 0: an exactly singular U, a valid factorization */
}

/* See lapack.h. */
int pnK_luf_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    job jb = {.one = luf_one};
    pn_array *held = NULL;
    int rc = job_init(&jb, "lu", in[0], &held, out, 3);
    if (rc < 0) return -1;
    if (rc == 1) { /* no columns (or rows): the row indices are the identity */
        uint32_t *rows = (uint32_t *)jb.o[2];
        for (int64_t i = 0; i < out[2]->size; i++) rows[i] = (uint32_t)(i % jb.m);
        return 0;
    }
    int64_t k = jb.m < jb.n ? jb.m : jb.n;
    jb.work_bytes = (size_t)(jb.m * jb.n) * pn_dtype_size(jb.t) + sizeof(int) * (size_t)k;
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── QRF ───────────────────────────── */

/* geqrf + orgqr of the column-major copy of a (m x n, leading dimension m): R is the upper
 * triangle of its first k rows (written row-major, zeros below), Q the first k columns that
 * orgqr forms in place (transposed out into the row-major m x k Q). */
static int qr_one(const job *jb, int64_t i, char *work)
{
    size_t es = pn_dtype_size(jb->t);
    int m = (int)jb->m, n = (int)jb->n, k = m < n ? m : n, info = 0;
    char *a = work, *tau = a + (size_t)(m * n) * es, *w = tau + (size_t)k * es;
    transpose(jb->a + (size_t)(i * m * n) * es, a, m, n, es);
    const lapack_fns *f = fns_of(jb->t);
    f->geqrf(m, n, a, m, tau, w, jb->lwork, &info);
    if (info) return info;
    char *r = jb->o[1] + (size_t)(i * k * n) * es;
    for (int64_t p = 0; p < k; p++)
        for (int64_t c = 0; c < n; c++)
            st(jb->t, r, p * n + c, p <= c ? ld(jb->t, a, p + c * m) : 0.0);
    f->orgqr(m, k, k, a, m, tau, w, jb->lwork, &info);
    if (info) return info;
    transpose(a, jb->o[0] + (size_t)(i * m * k) * es, k, m, es);
    return 0;
}

/* See lapack.h. */
int pnK_qr_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    (void)node;
    job jb = {.one = qr_one, .fail = "invalid argument"};
    pn_array *held = NULL;
    int rc = job_init(&jb, "qr", in[0], &held, out, 2);
    if (rc) return rc < 0 ? -1 : 0; /* empty: Q (m, 0) and R (0, n) have no elements */
    int m = (int)jb.m, n = (int)jb.n, k = m < n ? m : n, info = 0;
    double q1[2] = {0}, q2[2] = {0};
    fns_of(jb.t)->geqrf(m, n, NULL, m, NULL, q1, -1, &info);
    fns_of(jb.t)->orgqr(m, k, k, NULL, m, NULL, q2, -1, &info);
    int l1 = work_size(jb.t, q1), l2 = work_size(jb.t, q2);
    jb.lwork = l1 > l2 ? l1 : l2;
    jb.work_bytes = ((size_t)(m * n) + (size_t)k + (size_t)jb.lwork) * pn_dtype_size(jb.t);
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── SolveTriangular ───────────────────────────── */

/* See lapack.h. */
const char *pnK_trsm_fn_name(int fn)
{
    static const char *const names[] = {[PNK_SOLVE_TRIANGULAR] = "solve_triangular",
                                        [PNK_TRI_INV] = "tri_inv",
                                        [PNK_CHOLESKY_INV] = "cholesky_inv",
                                        [PNK_INV] = "inv",
                                        [PNK_SOLVE] = "solve"};
    return fn >= 0 && fn <= PNK_SOLVE ? names[fn] : "solve_triangular";
}

/* Row-major trsm (BLAS reads only the triangle named) after the diagonal check. Returns the
 * 1-based position of the first zero on the diagonal, or 0. */
static int trsm_one(const job *jb, int64_t i, char *work)
{
    (void)work;
    size_t es = pn_dtype_size(jb->t);
    int64_t n = jb->n, k = jb->k;
    const char *a = jb->a + (size_t)(i * n * n) * es;
    char *x = jb->o[0] + (size_t)(i * n * k) * es;
    memcpy(x, jb->b + (size_t)(i * n * k) * es, (size_t)(n * k) * es);
    for (int64_t d = 0; d < n && !jb->unit; d++)
        if (ld(jb->t, a, d * (n + 1)) == 0) return (int)(d + 1);
    if (k == 0) return 0;
    CBLAS_UPLO up = jb->upper ? CblasUpper : CblasLower;
    CBLAS_DIAG dg = jb->unit ? CblasUnit : CblasNonUnit;
    if (jb->t == PN_FLOAT32)
        cblas_strsm(CblasRowMajor, CblasLeft, up, CblasNoTrans, dg, (int)n, (int)k, 1.0f,
                    (const float *)a, (int)n, (float *)x, (int)k);
    else
        cblas_dtrsm(CblasRowMajor, CblasLeft, up, CblasNoTrans, dg, (int)n, (int)k, 1.0,
                    (const double *)a, (int)n, (double *)x, (int)k);
    return 0;
}

/* See lapack.h. */
int pnK_trsm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_trsm_params *p = PNC_PARAMS(node, pnK_trsm_params);
    job jb = {.upper = p->upper, .unit = p->unit, .one = trsm_one,
              .fail = "the matrix is singular (a zero pivot)"};
    pn_array *held = NULL;
    int rc = job_init(&jb, pnK_trsm_fn_name(p->fn), in[0], &held, out, 1);
    if (rc) return rc < 0 ? -1 : 0;
    pn_array *hb = pnC_contiguous(in[1]);
    if (!hb) {
        pnC_decref(held);
        return -1;
    }
    jb.b = pnC_data(hb);
    jb.k = in[1]->shape[in[1]->ndim - 1];
    rc = run(&jb);
    pnC_decref(hb);
    pnC_decref(held);
    return rc;
}

/* ───────────────────────────── Cholesky ───────────────────────────── */

/* potrf on the column-major view: its upper triangle is the row-major lower one, and the
 * factor U (A = U^T U) read row-major is L. The other triangle is zeroed. */
static int chol_one(const job *jb, int64_t i, char *work)
{
    (void)work;
    size_t es = pn_dtype_size(jb->t);
    int n = (int)jb->n, info = 0;
    char *o = jb->o[0] + (size_t)i * (size_t)n * (size_t)n * es;
    memcpy(o, jb->a + (size_t)i * (size_t)n * (size_t)n * es, (size_t)n * (size_t)n * es);
    fns_of(jb->t)->potrf('U', n, o, n, &info);
    if (info < 0) return info;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = r + 1; c < n; c++) st(jb->t, o, r * n + c, 0.0);
    return 0; /* info > 0: not positive definite; the partial factor stands, as in MLX */
}

/* See lapack.h. */
int pnK_cholesky_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    (void)node;
    job jb = {.one = chol_one};
    pn_array *held = NULL;
    int rc = job_init(&jb, "cholesky", in[0], &held, out, 1);
    if (rc) return rc < 0 ? -1 : 0;
    rc = run(&jb);
    pnC_decref(held);
    return rc;
}
