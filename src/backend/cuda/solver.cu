/* solver.cu — the GPU decompositions over cuSOLVER's dense API: gesvdj (Jacobi SVD, any
 * shape), syevd (symmetric eigensolver), getrf (LU with partial pivoting), geqrf + orgqr (QR)
 * and potrf (Cholesky), one call per matrix of a batch (batches of small matrices, at most
 * 32 x 32: one gesvdjBatched / syevjBatched / cuBLAS getrfBatched call) on one shared handle
 * bound to the Ponte stream, workspaces from the device pool, and kernels that turn getrf's
 * pivots into MLX's pivots and row indices and unpack QR's R. Convergence failures are read
 * back from the device info array once per batch. cuBLAS trsm (trsmBatched for batches of
 * small triangles) serves SolveTriangular. With
 * PONTE_GPU_SIM the same code calls the simulated cuSOLVER / cuBLAS (sim/). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/solver.h"

#ifdef PONTE_GPU_SIM
#include "backend/cuda/sim/cublas_sim.h"
#include "backend/cuda/sim/cusolver_sim.h"
#else
#include <cublas_v2.h>
#include <cusolverDn.h>
#endif

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

/* ───────────────────────────── the handle ───────────────────────────── */

/* One handle per GPU (a handle belongs to the device current at its creation); the stream it
 * runs on is set per call, so calls hold the lock from cusolverDnSetStream to their last
 * cuSOLVER call, through solver_handle: the handle of the call's GPU while the lock is held. */
static pthread_mutex_t solver_lock = PTHREAD_MUTEX_INITIALIZER;
static cusolverDnHandle_t solver_handles[PNG_MAX_DEVICES];
static cusolverDnHandle_t solver_handle;

static int solver_fail(const char *what, cusolverStatus_t st)
{
    pn_set_error(PN_ERR_BACKEND, "[cusolver] %s failed with status %d.", what, (int)st);
    return -1;
}

#define SOLVER_CHECK(call)                                                                     \
    do {                                                                                       \
        cusolverStatus_t solver_st_ = (call);                                                  \
        if (solver_st_ != CUSOLVER_STATUS_SUCCESS) {                                           \
            rc = solver_fail(#call, solver_st_);                                               \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

/* Takes the lock and binds the handle (created on first use) to stream. Returns 0, or -1 with
 * an error (the lock is then not held). */
static int solver_acquire(int stream)
{
    cudaStream_t cs = png_stream(stream); /* the thread is on the stream's GPU from here */
    if (!cs) return -1;
    int d = pnG_stream_device(stream);
    if (d < 0 || d >= PNG_MAX_DEVICES) return solver_fail("cusolverDnCreate", CUSOLVER_STATUS_NOT_INITIALIZED);
    pthread_mutex_lock(&solver_lock);
    cusolverStatus_t st = CUSOLVER_STATUS_SUCCESS;
    if (!solver_handles[d]) st = cusolverDnCreate(&solver_handles[d]);
    if (st != CUSOLVER_STATUS_SUCCESS) solver_handles[d] = NULL;
    solver_handle = solver_handles[d];
    if (st == CUSOLVER_STATUS_SUCCESS) st = cusolverDnSetStream(solver_handle, cs);
    if (st != CUSOLVER_STATUS_SUCCESS) {
        pthread_mutex_unlock(&solver_lock);
        return solver_fail("cusolverDnCreate/SetStream", st);
    }
    return 0;
}

/* Reads the nmat device infos and reports the first nonzero one for `what`. */
static int check_infos(const char *what, const int *dinfo, int64_t nmat, int stream)
{
    int *info = (int *)malloc(sizeof(int) * (size_t)nmat);
    if (!info) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[linalg::%s] Out of memory.", what);
        return -1;
    }
    int rc = pnG_copy_to_host(info, dinfo, sizeof(int) * (size_t)nmat, stream);
    for (int64_t i = 0; rc == 0 && i < nmat; i++)
        if (info[i] != 0) {
            pn_set_error(PN_ERR_BACKEND, "[linalg::%s] cuSOLVER failed on matrix %lld of the batch "
                         "(info %d): the algorithm did not converge.", what, (long long)i, info[i]);
            rc = -1;
        }
    free(info);
    return rc;
}

static int blas_fail(const char *what, cublasStatus_t st)
{
    pn_set_error(PN_ERR_BACKEND, "[cublas] %s failed with status %d.", what, (int)st);
    return -1;
}

/* One classic cuBLAS handle per GPU (getrfBatched, trsm), bound to the stream per call under
 * its own lock; blas_handle is the call's GPU's while the lock is held. */
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static cublasHandle_t blas_handles[PNG_MAX_DEVICES];
static cublasHandle_t blas_handle;

static int blas_acquire(int stream)
{
    cudaStream_t cs = png_stream(stream); /* the thread is on the stream's GPU from here */
    if (!cs) return -1;
    int d = pnG_stream_device(stream);
    if (d < 0 || d >= PNG_MAX_DEVICES) return blas_fail("cublasCreate", CUBLAS_STATUS_NOT_INITIALIZED);
    pthread_mutex_lock(&blas_lock);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (!blas_handles[d]) st = cublasCreate(&blas_handles[d]);
    if (st != CUBLAS_STATUS_SUCCESS) blas_handles[d] = NULL;
    blas_handle = blas_handles[d];
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(blas_handle, cs);
    if (st != CUBLAS_STATUS_SUCCESS) {
        pthread_mutex_unlock(&blas_lock);
        return blas_fail("cublasCreate/SetStream", st);
    }
    return 0;
}

static int max1(int x) { return x > 1 ? x : 1; }

/* A launcher's scratch: a device workspace of wbytes (at least 1), one info per matrix, and
 * for the 64-bit API's routines that also take a host workspace (Xgeev), host of hbytes. */
struct scratch {
    void *work, *host;
    int *info;
    size_t wbytes, hbytes;
    int64_t nmat;
    int stream;
};

/* Allocates s's buffers. Returns 0, or -1 with an error; either way scratch_free releases
 * whatever was allocated (s must start zeroed). */
static int scratch_alloc(scratch *s, size_t wbytes, int64_t nmat, int stream)
{
    s->wbytes = wbytes ? wbytes : 1, s->nmat = nmat, s->stream = stream;
    s->work = pnG_malloc(s->wbytes, stream);
    s->info = (int *)pnG_malloc(sizeof(int) * (size_t)nmat, stream);
    return s->work && s->info ? 0 : -1;
}

/* scratch_alloc with a host workspace of hbytes (at least 1) too; `what` names the routine in
 * the out-of-memory error. */
static int scratch_alloc_host(scratch *s, size_t wbytes, size_t hbytes, int64_t nmat, int stream,
                              const char *what)
{
    s->hbytes = hbytes ? hbytes : 1;
    if (!(s->host = malloc(s->hbytes)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[linalg::%s] Out of host memory.", what);
    return scratch_alloc(s, wbytes, nmat, stream);
}

static void scratch_free(scratch *s)
{
    if (s->work) pnG_free(s->work, s->wbytes, s->stream);
    if (s->info) pnG_free(s->info, sizeof(int) * (size_t)s->nmat, s->stream);
    free(s->host);
    s->work = NULL, s->info = NULL, s->host = NULL;
}

/* ───────────────────────────── per-dtype entry points ───────────────────────────── */

#define SOLVER_OVERLOADS(T, P)                                                                 \
    static cusolverStatus_t gesvdj_size(cusolverEigMode_t jobz, int m, int n, T *a, T *s, T *u, \
                                        T *v, int *lwork, gesvdjInfo_t p)                      \
    {                                                                                          \
        return cusolverDn##P##gesvdj_bufferSize(solver_handle, jobz, 0, m, n, a, m, s, u, m, v, \
                                                n, lwork, p);                                  \
    }                                                                                          \
    static cusolverStatus_t gesvdj(cusolverEigMode_t jobz, int m, int n, T *a, T *s, T *u,      \
                                   T *v, T *work, int lwork, int *info, gesvdjInfo_t p)        \
    {                                                                                          \
        return cusolverDn##P##gesvdj(solver_handle, jobz, 0, m, n, a, m, s, u, m, v, n, work,   \
                                     lwork, info, p);                                          \
    }                                                                                          \
    static cusolverStatus_t syevd_size(cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,    \
                                       T *a, T *w, int *lwork)                                 \
    {                                                                                          \
        return cusolverDn##P##syevd_bufferSize(solver_handle, jobz, uplo, n, a, n, w, lwork);   \
    }                                                                                          \
    static cusolverStatus_t syevd(cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, T *a,   \
                                  T *w, T *work, int lwork, int *info)                         \
    {                                                                                          \
        return cusolverDn##P##syevd(solver_handle, jobz, uplo, n, a, n, w, work, lwork, info);  \
    }                                                                                          \
    static cusolverStatus_t getrf_size(int m, int n, T *a, int *lwork)                          \
    {                                                                                          \
        return cusolverDn##P##getrf_bufferSize(solver_handle, m, n, a, m, lwork);               \
    }                                                                                          \
    static cusolverStatus_t getrf(int m, int n, T *a, T *work, int *ipiv, int *info)            \
    {                                                                                          \
        return cusolverDn##P##getrf(solver_handle, m, n, a, m, work, ipiv, info);               \
    }                                                                                          \
    static cublasStatus_t getrf_batched(int n, T *const *a, int *ipiv, int *info, int batch)    \
    {                                                                                          \
        return cublas##P##getrfBatched(blas_handle, n, a, n, ipiv, info, batch);               \
    }                                                                                          \
    static cusolverStatus_t geqrf_size(int m, int n, T *a, int *lwork)                          \
    {                                                                                          \
        return cusolverDn##P##geqrf_bufferSize(solver_handle, m, n, a, m, lwork);               \
    }                                                                                          \
    static cusolverStatus_t geqrf(int m, int n, T *a, T *tau, T *work, int lwork, int *info)    \
    {                                                                                          \
        return cusolverDn##P##geqrf(solver_handle, m, n, a, m, tau, work, lwork, info);         \
    }                                                                                          \
    static cusolverStatus_t orgqr_size(int m, int k, T *a, T *tau, int *lwork)                  \
    {                                                                                          \
        return cusolverDn##P##orgqr_bufferSize(solver_handle, m, k, k, a, m, tau, lwork);       \
    }                                                                                          \
    static cusolverStatus_t orgqr(int m, int k, T *a, T *tau, T *work, int lwork, int *info)    \
    {                                                                                          \
        return cusolverDn##P##orgqr(solver_handle, m, k, k, a, m, tau, work, lwork, info);      \
    }                                                                                          \
    /* column-major upper triangle: the row-major lower one */                                 \
    static cusolverStatus_t potrf_size(int n, T *a, int *lwork)                                 \
    {                                                                                          \
        return cusolverDn##P##potrf_bufferSize(solver_handle, CUBLAS_FILL_MODE_UPPER, n, a, n,  \
                                               lwork);                                         \
    }                                                                                          \
    static cusolverStatus_t potrf(int n, T *a, T *work, int lwork, int *info)                   \
    {                                                                                          \
        return cusolverDn##P##potrf(solver_handle, CUBLAS_FILL_MODE_UPPER, n, a, n, work,       \
                                    lwork, info);                                              \
    }                                                                                          \
    static cusolverStatus_t gesvdj_batched_size(cusolverEigMode_t jobz, int m, int n, T *a,     \
                                                T *s, T *u, T *v, int *lwork, gesvdjInfo_t p,  \
                                                int batch)                                     \
    {                                                                                          \
        return cusolverDn##P##gesvdjBatched_bufferSize(solver_handle, jobz, m, n, a, m, s, u,   \
                                                       m, v, n, lwork, p, batch);              \
    }                                                                                          \
    static cusolverStatus_t gesvdj_batched(cusolverEigMode_t jobz, int m, int n, T *a, T *s,    \
                                           T *u, T *v, T *work, int lwork, int *info,          \
                                           gesvdjInfo_t p, int batch)                          \
    {                                                                                          \
        return cusolverDn##P##gesvdjBatched(solver_handle, jobz, m, n, a, m, s, u, m, v, n,     \
                                            work, lwork, info, p, batch);                      \
    }                                                                                          \
    static cusolverStatus_t syevj_batched_size(cusolverEigMode_t jobz, cublasFillMode_t uplo,   \
                                               int n, T *a, T *w, int *lwork, syevjInfo_t p,   \
                                               int batch)                                      \
    {                                                                                          \
        return cusolverDn##P##syevjBatched_bufferSize(solver_handle, jobz, uplo, n, a, n, w,    \
                                                      lwork, p, batch);                        \
    }                                                                                          \
    static cusolverStatus_t syevj_batched(cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, \
                                          T *a, T *w, T *work, int lwork, int *info,           \
                                          syevjInfo_t p, int batch)                            \
    {                                                                                          \
        return cusolverDn##P##syevjBatched(solver_handle, jobz, uplo, n, a, n, w, work, lwork,  \
                                           info, p, batch);                                    \
    }
SOLVER_OVERLOADS(float, S)
SOLVER_OVERLOADS(double, D)

/* Batches of at least 2 matrices of at most BATCHED_MAX_N rows and columns (the limit of
 * cuSOLVER's batched Jacobi routines) go to one gesvdjBatched / syevjBatched call instead of
 * one call per matrix. */
#define BATCHED_MAX_N 32
static bool use_batched(int64_t nmat, int m, int n)
{
    return nmat >= 2 && nmat <= INT_MAX && m <= BATCHED_MAX_N && n <= BATCHED_MAX_N;
}

/* ───────────────────────────── SVD ───────────────────────────── */

template <typename T>
static int svd_batch(int64_t nmat, int m, int n, T *a, T *s, T *u, T *v, bool vectors, int stream)
{
    int k = m < n ? m : n, lwork = 0, rc = 0;
    cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    const bool batched = use_batched(nmat, m, n);
    gesvdjInfo_t params = NULL;
    T *uv = NULL;
    scratch sc = {};
    size_t uvbytes = 0;
    if (!vectors) { /* gesvdj writes V (and may write U) even without vectors: scratch for both
                     * (for every matrix when batched) */
        uvbytes = sizeof(T) * ((size_t)m * m + (size_t)n * n) * (size_t)(batched ? nmat : 1);
        if (!(uv = (T *)pnG_malloc(uvbytes, stream))) return -1;
        u = uv;
        v = uv + (size_t)m * m * (size_t)(batched ? nmat : 1);
    }
    if (solver_acquire(stream)) {
        if (uv) pnG_free(uv, uvbytes, stream);
        return -1;
    }
    SOLVER_CHECK(cusolverDnCreateGesvdjInfo(&params));
    if (batched) {
        SOLVER_CHECK(cusolverDnXgesvdjSetSortEig(params, 1)); /* descending, as gesvdj's */
        SOLVER_CHECK(gesvdj_batched_size(jobz, m, n, a, s, u, v, &lwork, params, (int)nmat));
    } else {
        SOLVER_CHECK(gesvdj_size(jobz, m, n, a, s, u, v, &lwork, params));
    }
    if (scratch_alloc(&sc, sizeof(T) * (size_t)max1(lwork), nmat, stream)) {
        rc = -1;
        goto done;
    }
    if (batched)
        SOLVER_CHECK(gesvdj_batched(jobz, m, n, a, s, u, v, (T *)sc.work, lwork, sc.info, params,
                                    (int)nmat));
    for (int64_t i = 0; !batched && i < nmat; i++)
        SOLVER_CHECK(gesvdj(jobz, m, n, a + i * m * n, s + i * k, vectors ? u + i * m * m : u,
                            vectors ? v + i * n * n : v, (T *)sc.work, lwork, sc.info + i, params));
done:
    if (params) cusolverDnDestroyGesvdjInfo(params);
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) rc = check_infos("svd", sc.info, nmat, stream);
    scratch_free(&sc);
    if (uv) pnG_free(uv, uvbytes, stream);
    return rc;
}

/* See solver.h. */
int pnG_solver_svd(pn_dtype t, int64_t nmat, int rows, int cols, void *a, void *s, void *u,
                   void *v, bool vectors, int stream)
{
    if (t == PN_FLOAT32)
        return svd_batch(nmat, rows, cols, (float *)a, (float *)s, (float *)u, (float *)v, vectors, stream);
    return svd_batch(nmat, rows, cols, (double *)a, (double *)s, (double *)u, (double *)v, vectors, stream);
}

/* ───────────────────────────── Eigh ───────────────────────────── */

template <typename T>
static int eigh_batch(int64_t nmat, int n, T *a, T *w, bool vectors, bool lower, int stream)
{
    int lwork = 0, rc = 0;
    cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    cublasFillMode_t uplo = lower ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER;
    const bool batched = use_batched(nmat, n, n);
    syevjInfo_t params = NULL;
    scratch sc = {};
    if (solver_acquire(stream)) return -1;
    if (batched) {
        SOLVER_CHECK(cusolverDnCreateSyevjInfo(&params));
        SOLVER_CHECK(cusolverDnXsyevjSetSortEig(params, 1)); /* ascending, as syevd's */
        SOLVER_CHECK(syevj_batched_size(jobz, uplo, n, a, w, &lwork, params, (int)nmat));
    } else {
        SOLVER_CHECK(syevd_size(jobz, uplo, n, a, w, &lwork));
    }
    if (scratch_alloc(&sc, sizeof(T) * (size_t)max1(lwork), nmat, stream)) {
        rc = -1;
        goto done;
    }
    if (batched)
        SOLVER_CHECK(syevj_batched(jobz, uplo, n, a, w, (T *)sc.work, lwork, sc.info, params,
                                   (int)nmat));
    for (int64_t i = 0; !batched && i < nmat; i++)
        SOLVER_CHECK(syevd(jobz, uplo, n, a + i * n * n, w + i * n, (T *)sc.work, lwork,
                           sc.info + i));
done:
    if (params) cusolverDnDestroySyevjInfo(params);
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) rc = check_infos(vectors ? "eigh" : "eigvalsh", sc.info, nmat, stream);
    scratch_free(&sc);
    return rc;
}

/* See solver.h. */
int pnG_solver_eigh(pn_dtype t, int64_t nmat, int n, void *a, void *w, bool vectors, bool lower,
                    int stream)
{
    if (t == PN_FLOAT32) return eigh_batch(nmat, n, (float *)a, (float *)w, vectors, lower, stream);
    return eigh_batch(nmat, n, (double *)a, (double *)w, vectors, lower, stream);
}

/* ───────────────────────────── Eig ───────────────────────────── */

/* geev's results (w: n interleaved complex eigenvalues per matrix; vr: real column-major
 * vectors, a conjugate pair's as the columns j, j+1 = re, im) as Eig's outputs: vals
 * (nmat, n) and, with vectors, vecs (nmat, n, n) row-major, both complex64 (interleaved). */
template <typename T>
__global__ void eig_pack_kernel(int64_t nmat, int n, const T *w, const T *vr, float *vals,
                                float *vecs)
{
    const int64_t nn = (int64_t)n * n, total = vecs ? nmat * nn : nmat * n;
    for (int64_t t = png_thread_index(); t < total; t += png_grid_stride()) {
        if (!vecs) {
            vals[2 * t] = (float)w[2 * t], vals[2 * t + 1] = (float)w[2 * t + 1];
            continue;
        }
        int64_t i = t / nn, r = t % nn / n, j = t % n; /* vecs[i][r][j] = v_j[r] */
        const T *wi = w + 2 * i * n, *v = vr + i * nn;
        T im = wi[2 * j + 1], re_out, im_out;
        if (im > 0) /* the first of a pair: v_j = vr[:, j] + i vr[:, j+1] */
            re_out = v[j * n + r], im_out = v[(j + 1) * n + r];
        else if (im < 0) /* the second: the conjugate of the first */
            re_out = v[(j - 1) * n + r], im_out = -v[j * n + r];
        else
            re_out = v[j * n + r], im_out = 0;
        vecs[2 * t] = (float)re_out, vecs[2 * t + 1] = (float)im_out;
        if (r == 0) vals[2 * (i * n + j)] = (float)wi[2 * j], vals[2 * (i * n + j) + 1] = (float)im;
    }
}

template <typename T>
static int eig_batch(int64_t nmat, int n, T *a, float *vals, float *vecs, int stream)
{
    const cudaDataType real = sizeof(T) == 4 ? CUDA_R_32F : CUDA_R_64F;
    const cudaDataType cplx = sizeof(T) == 4 ? CUDA_C_32F : CUDA_C_64F;
    const cusolverEigMode_t jobvr = vecs ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    const size_t nn = (size_t)n * n;
    cusolverDnParams_t params = NULL;
    size_t dbytes = 0, hbytes = 0;
    /* w and vr for the whole batch, plus one matrix of scratch for VL (never asked for, but
     * the routines are given real memory wherever they take a pointer: gesvdj writes V
     * without vectors) */
    size_t wbytes = sizeof(T) * (2 * (size_t)n * nmat + (vecs ? nn * nmat : nn) + nn);
    T *w = (T *)pnG_malloc(wbytes, stream), *vr = w ? w + 2 * (size_t)n * nmat : NULL;
    T *vl = vr ? vr + (vecs ? nn * nmat : nn) : NULL;
    scratch sc = {};
    int rc = 0;
    if (!w) return -1;
    if (solver_acquire(stream)) {
        pnG_free(w, wbytes, stream);
        return -1;
    }
    SOLVER_CHECK(cusolverDnCreateParams(&params));
    SOLVER_CHECK(cusolverDnXgeev_bufferSize(solver_handle, params, CUSOLVER_EIG_MODE_NOVECTOR, jobvr,
                                            n, real, a, n, cplx, w, real, vl, n, real, vr, n, real,
                                            &dbytes, &hbytes));
    if (scratch_alloc_host(&sc, dbytes, hbytes, nmat, stream, "eig")) {
        rc = -1;
        goto done;
    }
    for (int64_t i = 0; i < nmat; i++)
        SOLVER_CHECK(cusolverDnXgeev(solver_handle, params, CUSOLVER_EIG_MODE_NOVECTOR, jobvr, n,
                                     real, a + i * nn, n, cplx, w + 2 * i * n, real, vl, n, real,
                                     vecs ? vr + i * nn : vr, n, real, sc.work, sc.wbytes, sc.host,
                                     sc.hbytes, sc.info + i));
done:
    if (params) cusolverDnDestroyParams(params);
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) rc = check_infos(vecs ? "eig" : "eigvals", sc.info, nmat, stream);
    if (rc == 0) {
        const int threads = 256;
        int64_t total = vecs ? (int64_t)nmat * (int64_t)nn : nmat * n;
        PNG_LAUNCH(eig_pack_kernel<T>, png_blocks_for(total, threads), threads, 0,
                   png_stream(stream), nmat, n, (const T *)w, (const T *)vr, vals, vecs);
        rc = pnG_check_launch("eig_pack_kernel");
    }
    scratch_free(&sc);
    pnG_free(w, wbytes, stream);
    return rc;
}

/* See solver.h. */
int pnG_solver_eig(pn_dtype t, int64_t nmat, int n, void *a, void *vals, void *vecs, int stream)
{
    if (t == PN_FLOAT32) return eig_batch(nmat, n, (float *)a, (float *)vals, (float *)vecs, stream);
    return eig_batch(nmat, n, (double *)a, (float *)vals, (float *)vecs, stream);
}

/* See solver.h. Complex A has no real/imaginary packing: W and VR come out as Eig's complex64
 * values and (column-major) vectors; only one complex matrix of scratch (VL, and VR without
 * vectors) besides the solver's workspace. */
int pnG_solver_eig_complex(int64_t nmat, int n, void *a, void *vals, void *vr, int stream)
{
    const cudaDataType c = CUDA_C_32F;
    const cusolverEigMode_t jobvr = vr ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    const size_t nn = (size_t)n * n, cbytes = 2 * sizeof(float); /* one complex64 */
    float *A = (float *)a, *W = (float *)vals, *VR = (float *)vr;
    float *vl = (float *)pnG_malloc(cbytes * (nn ? nn : 1), stream);
    cusolverDnParams_t params = NULL;
    size_t dbytes = 0, hbytes = 0;
    scratch sc = {};
    int rc = 0;
    if (!vl) return -1;
    if (solver_acquire(stream)) {
        pnG_free(vl, cbytes * (nn ? nn : 1), stream);
        return -1;
    }
    SOLVER_CHECK(cusolverDnCreateParams(&params));
    SOLVER_CHECK(cusolverDnXgeev_bufferSize(solver_handle, params, CUSOLVER_EIG_MODE_NOVECTOR, jobvr,
                                            n, c, A, n, c, W, c, vl, n, c, VR ? VR : vl, n, c,
                                            &dbytes, &hbytes));
    if (scratch_alloc_host(&sc, dbytes, hbytes, nmat, stream, "eig")) {
        rc = -1;
        goto done;
    }
    for (int64_t i = 0; i < nmat; i++)
        SOLVER_CHECK(cusolverDnXgeev(solver_handle, params, CUSOLVER_EIG_MODE_NOVECTOR, jobvr, n, c,
                                     A + 2 * i * nn, n, c, W + 2 * i * n, c, vl, n, c,
                                     VR ? VR + 2 * i * nn : vl, n, c, sc.work, sc.wbytes, sc.host,
                                     sc.hbytes, sc.info + i));
done:
    if (params) cusolverDnDestroyParams(params);
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) rc = check_infos(vr ? "eig" : "eigvals", sc.info, nmat, stream);
    scratch_free(&sc);
    pnG_free(vl, cbytes * (nn ? nn : 1), stream);
    return rc;
}

/* ───────────────────────────── LU ───────────────────────────── */

/* One thread per matrix: getrf's 1-based swap sequence ipiv (k per matrix) to 0-based pivots
 * and the row indices of pnK_lu_pivots (the swaps applied to the identity in reverse). */
__global__ void lu_pivots_kernel(int64_t nmat, int k, int m, const int *ipiv, uint32_t *pivots,
                                 uint32_t *rows)
{
    for (int64_t b = png_thread_index(); b < nmat; b += png_grid_stride()) {
        const int *ip = ipiv + b * k;
        uint32_t *pv = pivots + b * k, *r = rows + b * m;
        for (int j = 0; j < m; j++) r[j] = (uint32_t)j;
        for (int j = 0; j < k; j++) pv[j] = (uint32_t)(ip[j] - 1);
        for (int j = k - 1; j >= 0; j--) {
            uint32_t p = pv[j], t = r[p];
            r[p] = r[j];
            r[j] = t;
        }
    }
}

/* One thread per matrix: ptrs[i] = base + i * stride, the pointer arrays of cuBLAS's batched
 * routines (P: T * or const T *). */
template <typename P>
__global__ void matrix_pointers_kernel(int64_t nmat, int64_t stride, P base, P *ptrs)
{
    for (int64_t i = png_thread_index(); i < nmat; i += png_grid_stride())
        ptrs[i] = base + i * stride;
}

/* getrf of each column-major n x n matrix of a with cuBLAS's getrfBatched (one call for the
 * batch), pivots into ipiv (n per matrix), infos into info. */
template <typename T>
static int lu_batched(int64_t nmat, int n, T *a, int *ipiv, int *info, int stream)
{
    size_t pbytes = sizeof(T *) * (size_t)nmat;
    T **ptrs = (T **)pnG_malloc(pbytes, stream);
    if (!ptrs) return -1;
    PNG_LAUNCH(matrix_pointers_kernel<T *>, png_blocks_for(nmat, 128), 128, 0, png_stream(stream),
               nmat, (int64_t)n * n, a, ptrs);
    int rc = pnG_check_launch("matrix_pointers_kernel");
    if (rc == 0 && (rc = blas_acquire(stream)) == 0) {
        cublasStatus_t st = getrf_batched(n, ptrs, ipiv, info, (int)nmat);
        pthread_mutex_unlock(&blas_lock);
        if (st != CUBLAS_STATUS_SUCCESS) rc = blas_fail("getrfBatched", st);
    }
    pnG_free(ptrs, pbytes, stream);
    return rc;
}

/* Batches of small square matrices: one getrfBatched call; others: getrf per matrix. An exact
 * zero pivot (info > 0) is not an error. */
template <typename T>
static int lu_batch(int64_t nmat, int m, int n, T *a, uint32_t *pivots, uint32_t *rows, int stream)
{
    int k = m < n ? m : n, lwork = 0, rc = 0;
    const bool batched = m == n && use_batched(nmat, m, n);
    size_t pbytes = sizeof(int) * (size_t)(nmat * max1(k));
    int *ipiv = (int *)pnG_malloc(pbytes, stream);
    scratch sc = {};
    if (!ipiv) return -1;
    if (batched) {
        rc = scratch_alloc(&sc, 0, nmat, stream);
        if (rc == 0) rc = lu_batched(nmat, n, a, ipiv, sc.info, stream);
    } else {
        if (solver_acquire(stream)) {
            pnG_free(ipiv, pbytes, stream);
            return -1;
        }
        SOLVER_CHECK(getrf_size(m, n, a, &lwork));
        if (scratch_alloc(&sc, sizeof(T) * (size_t)max1(lwork), nmat, stream)) {
            rc = -1;
            goto done;
        }
        for (int64_t i = 0; i < nmat; i++)
            SOLVER_CHECK(getrf(m, n, a + i * m * n, (T *)sc.work, ipiv + i * k, sc.info + i));
    done:
        pthread_mutex_unlock(&solver_lock);
    }
    if (rc == 0) {
        PNG_LAUNCH(lu_pivots_kernel, png_blocks_for(nmat, 128), 128, 0, png_stream(stream), nmat,
                   k, m, ipiv, pivots, rows);
        rc = pnG_check_launch("lu_pivots_kernel");
    }
    scratch_free(&sc);
    pnG_free(ipiv, pbytes, stream);
    return rc;
}

/* See solver.h. */
int pnG_solver_lu(pn_dtype t, int64_t nmat, int m, int n, void *a, uint32_t *pivots,
                  uint32_t *rows, int stream)
{
    if (t == PN_FLOAT32) return lu_batch(nmat, m, n, (float *)a, pivots, rows, stream);
    return lu_batch(nmat, m, n, (double *)a, pivots, rows, stream);
}

/* ───────────────────────────── QR (geqrf + orgqr) ───────────────────────────── */

/* R (nmat, k, n) row-major, zeros below the diagonal, from the first k rows of each
 * column-major m x n matrix geqrf left in a. */
template <typename T>
__global__ void qr_r_kernel(int64_t nmat, int m, int n, const T *a, T *r)
{
    const int64_t k = m < n ? m : n, kn = k * n;
    for (int64_t t = png_thread_index(); t < nmat * kn; t += png_grid_stride()) {
        int64_t i = t / kn, p = t % kn / n, c = t % n;
        r[t] = p <= c ? a[i * m * n + p + c * m] : T(0);
    }
}

template <typename T>
static int qr_batch(int64_t nmat, int m, int n, T *a, T *r, int stream)
{
    int k = m < n ? m : n, l1 = 0, l2 = 0, rc = 0;
    size_t tbytes = sizeof(T) * (size_t)(nmat * k);
    T *tau = (T *)pnG_malloc(tbytes, stream);
    scratch sc = {};
    if (!tau) return -1;
    if (solver_acquire(stream)) {
        pnG_free(tau, tbytes, stream);
        return -1;
    }
    SOLVER_CHECK(geqrf_size(m, n, a, &l1));
    SOLVER_CHECK(orgqr_size(m, k, a, tau, &l2));
    if (scratch_alloc(&sc, sizeof(T) * (size_t)max1(l1 > l2 ? l1 : l2), nmat, stream)) {
        rc = -1;
        goto done;
    }
    for (int64_t i = 0; i < nmat; i++)
        SOLVER_CHECK(geqrf(m, n, a + i * m * n, tau + i * k, (T *)sc.work, max1(l1), sc.info + i));
    PNG_LAUNCH(qr_r_kernel<T>, png_blocks_for(nmat * k * n, 256), 256, 0, png_stream(stream), nmat,
               m, n, (const T *)a, r);
    if ((rc = pnG_check_launch("qr_r_kernel")) != 0) goto done;
    for (int64_t i = 0; i < nmat; i++)
        SOLVER_CHECK(orgqr(m, k, a + i * m * n, tau + i * k, (T *)sc.work, max1(l2), sc.info + i));
done:
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) rc = check_infos("qr", sc.info, nmat, stream);
    scratch_free(&sc);
    pnG_free(tau, tbytes, stream);
    return rc;
}

/* See solver.h. */
int pnG_solver_qr(pn_dtype t, int64_t nmat, int m, int n, void *a, void *r, int stream)
{
    if (t == PN_FLOAT32) return qr_batch(nmat, m, n, (float *)a, (float *)r, stream);
    return qr_batch(nmat, m, n, (double *)a, (double *)r, stream);
}

/* ───────────────────────────── Cholesky (potrf) ───────────────────────────── */

/* Zeroes the strict lower triangle of each column-major n x n matrix (the row-major upper
 * one). */
template <typename T>
__global__ void zero_lower_kernel(int64_t nmat, int64_t n, T *a)
{
    for (int64_t t = png_thread_index(); t < nmat * n * n; t += png_grid_stride()) {
        int64_t e = t % (n * n), r = e % n, c = e / n;
        if (r > c) a[t] = T(0);
    }
}

template <typename T>
static int potrf_batch(int64_t nmat, int n, T *a, int stream)
{
    int lwork = 0, rc = 0;
    scratch sc = {};
    if (solver_acquire(stream)) return -1;
    SOLVER_CHECK(potrf_size(n, a, &lwork));
    if (scratch_alloc(&sc, sizeof(T) * (size_t)max1(lwork), nmat, stream)) {
        rc = -1;
        goto done;
    }
    for (int64_t i = 0; i < nmat; i++) /* info > 0 (not positive definite): the partial factor */
        SOLVER_CHECK(potrf(n, a + i * n * n, (T *)sc.work, lwork, sc.info + i));
done:
    pthread_mutex_unlock(&solver_lock);
    if (rc == 0) {
        PNG_LAUNCH(zero_lower_kernel<T>, png_blocks_for(nmat * n * n, 256), 256, 0,
                   png_stream(stream), nmat, (int64_t)n, a);
        rc = pnG_check_launch("zero_lower_kernel");
    }
    scratch_free(&sc);
    return rc;
}

/* See solver.h. */
int pnG_solver_cholesky(pn_dtype t, int64_t nmat, int n, void *a, int stream)
{
    if (t == PN_FLOAT32) return potrf_batch(nmat, n, (float *)a, stream);
    return potrf_batch(nmat, n, (double *)a, stream);
}

/* ───────────────────────────── triangular solves (cuBLAS trsm) ───────────────────────────── */

static cublasStatus_t trsm(cublasSideMode_t side, cublasFillMode_t uplo, cublasDiagType_t diag,
                           int m, int n, const float *a, int lda, float *b, int ldb)
{
    const float one = 1.0f;
    return cublasStrsm(blas_handle, side, uplo, CUBLAS_OP_N, diag, m, n, &one, a, lda, b, ldb);
}
static cublasStatus_t trsm(cublasSideMode_t side, cublasFillMode_t uplo, cublasDiagType_t diag,
                           int m, int n, const double *a, int lda, double *b, int ldb)
{
    const double one = 1.0;
    return cublasDtrsm(blas_handle, side, uplo, CUBLAS_OP_N, diag, m, n, &one, a, lda, b, ldb);
}
static cublasStatus_t trsm_batched(cublasSideMode_t side, cublasFillMode_t uplo,
                                   cublasDiagType_t diag, int m, int n, const float *const *a,
                                   int lda, float *const *b, int ldb, int batch)
{
    const float one = 1.0f;
    return cublasStrsmBatched(blas_handle, side, uplo, CUBLAS_OP_N, diag, m, n, &one, a, lda, b,
                              ldb, batch);
}
static cublasStatus_t trsm_batched(cublasSideMode_t side, cublasFillMode_t uplo,
                                   cublasDiagType_t diag, int m, int n, const double *const *a,
                                   int lda, double *const *b, int ldb, int batch)
{
    const double one = 1.0;
    return cublasDtrsmBatched(blas_handle, side, uplo, CUBLAS_OP_N, diag, m, n, &one, a, lda, b,
                              ldb, batch);
}

/* The smallest index of a matrix with a zero on its diagonal, into *first (left alone when
 * there is none). */
template <typename T>
__global__ void zero_diagonal_kernel(int64_t nmat, int64_t n, const T *a, int *first)
{
    for (int64_t t = png_thread_index(); t < nmat * n; t += png_grid_stride()) {
        int64_t i = t / n, d = t % n;
        if (a[i * n * n + d * (n + 1)] == T(0)) atomicMin(first, (int)i);
    }
}

template <typename T>
static int trsm_batch(int64_t nmat, int n, int k, bool upper, bool unit, const T *a, T *x,
                      int64_t *singular, int stream)
{
    *singular = -1;
    if (!unit) {
        int *first = (int *)pnG_malloc(sizeof(int), stream), none = INT_MAX, host = INT_MAX;
        int rc = first ? pnG_copy_to_device(first, &none, sizeof(int), stream) : -1;
        if (rc == 0) {
            PNG_LAUNCH(zero_diagonal_kernel<T>, png_blocks_for(nmat * n, 256), 256, 0,
                       png_stream(stream), nmat, (int64_t)n, a, first);
            rc = pnG_check_launch("zero_diagonal_kernel");
        }
        if (rc == 0) rc = pnG_copy_to_host(&host, first, sizeof(int), stream);
        if (first) pnG_free(first, sizeof(int), stream);
        if (rc) return -1;
        if (host != INT_MAX) {
            *singular = host;
            return 0;
        }
    }
    /* batches of small triangles: one trsmBatched call over pointer arrays built on the device */
    const bool batched = use_batched(nmat, n, n);
    size_t pbytes = batched ? sizeof(void *) * 2 * (size_t)nmat : 0;
    void **ptrs = batched ? (void **)pnG_malloc(pbytes, stream) : NULL;
    const T **pa = (const T **)ptrs;
    T **px = ptrs ? (T **)(ptrs + nmat) : NULL;
    if (batched) {
        if (!ptrs) return -1;
        PNG_LAUNCH(matrix_pointers_kernel<const T *>, png_blocks_for(nmat, 128), 128, 0,
                   png_stream(stream), nmat, (int64_t)n * n, a, pa);
        PNG_LAUNCH(matrix_pointers_kernel<T *>, png_blocks_for(nmat, 128), 128, 0,
                   png_stream(stream), nmat, (int64_t)n * k, x, px);
        if (pnG_check_launch("matrix_pointers_kernel")) {
            pnG_free(ptrs, pbytes, stream);
            return -1;
        }
    }
    if (blas_acquire(stream)) {
        if (ptrs) pnG_free(ptrs, pbytes, stream);
        return -1;
    }
    /* row-major T x = b is column-major x^T T^T = b^T: side right, the other triangle */
    cublasFillMode_t uplo = upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER;
    cublasDiagType_t diag = unit ? CUBLAS_DIAG_UNIT : CUBLAS_DIAG_NON_UNIT;
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (batched) st = trsm_batched(CUBLAS_SIDE_RIGHT, uplo, diag, k, n, pa, n, px, k, (int)nmat);
    for (int64_t i = 0; !batched && i < nmat && st == CUBLAS_STATUS_SUCCESS; i++)
        st = trsm(CUBLAS_SIDE_RIGHT, uplo, diag, k, n, a + i * n * n, n, x + i * n * k, k);
    pthread_mutex_unlock(&blas_lock);
    if (ptrs) pnG_free(ptrs, pbytes, stream);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(batched ? "trsmBatched" : "trsm", st);
}

/* See solver.h. */
int pnG_solver_trsm(pn_dtype t, int64_t nmat, int n, int k, bool upper, bool unit, const void *a,
                    void *x, int64_t *singular, int stream)
{
    if (t == PN_FLOAT32)
        return trsm_batch(nmat, n, k, upper, unit, (const float *)a, (float *)x, singular, stream);
    return trsm_batch(nmat, n, k, upper, unit, (const double *)a, (double *)x, singular, stream);
}
