/* cusolver_sim.cpp — the simulated cuSOLVER (cusolver_sim.h): each routine calls the LAPACK
 * routine of the same job on the host (gesdd for gesvdj and gesvdjBatched, syevd for syevd
 * and syevjBatched, getrf, potrf, geqrf, orgqr, s/d/cgeev for Xgeev; the batched ones per
 * matrix), with the scratch it needs from the host heap, and writes LAPACK's info where
 * cuSOLVER writes its devInfo. Arguments are checked at the call, the work runs in stream
 * order (pnsim_library_run); the info and params objects hold nothing the work reads. The
 * _bufferSize routines ask for workspaces that grow with the problem (sim_lwork,
 * geev_work_bytes); a routine given a smaller one, or one that is not device memory (host
 * memory for Xgeev's host workspace), fails with CUSOLVER_STATUS_INVALID_VALUE, and a running
 * routine scribbles over its workspace (pnsim_library_scratch). */
#include <new>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/lapack.h"
#include "backend/cuda/sim/cusolver_sim.h"
#include "backend/cuda/sim/sim_internal.h"

struct pnsim_solver_context {
    cudaStream_t stream;
    int dev; /* the device current at cusolverDnCreate */
};
struct pnsim_gesvdj_info {
    int sort;
};
struct pnsim_syevj_info {
    int sort;
};
struct pnsim_solver_params {
    int unused;
};

/* See cusolver_sim.h (cuSOLVER's contracts). */
cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *handle)
{
    if (!handle) return CUSOLVER_STATUS_INVALID_VALUE;
    *handle = new (std::nothrow) pnsim_solver_context();
    if (!*handle) return CUSOLVER_STATUS_ALLOC_FAILED;
    (*handle)->dev = pnsim_current_device();
    return CUSOLVER_STATUS_SUCCESS;
}

/* Whether a routine may run work with handle now (pnsim_handle_ready); NOT_INITIALIZED also
 * without the info / params object it needs. */
static cusolverStatus_t solver_ready(cusolverDnHandle_t handle, bool have_params = true)
{
    if (!have_params) return CUSOLVER_STATUS_NOT_INITIALIZED;
    return pnsim_handle_ready(handle, CUSOLVER_STATUS_SUCCESS, CUSOLVER_STATUS_NOT_INITIALIZED,
                              CUSOLVER_STATUS_EXECUTION_FAILED);
}
/* Runs work (returning a status) in stream order on handle's stream (pnsim_library_run). */
template <typename F> static cusolverStatus_t solver_run(cusolverDnHandle_t handle, F work)
{
    return pnsim_library_run(handle->stream, CUSOLVER_STATUS_SUCCESS, work);
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle)
{
    delete handle;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreateGesvdjInfo(gesvdjInfo_t *info)
{
    if (!info) return CUSOLVER_STATUS_INVALID_VALUE;
    *info = new (std::nothrow) pnsim_gesvdj_info();
    return *info ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_ALLOC_FAILED;
}
cusolverStatus_t cusolverDnDestroyGesvdjInfo(gesvdjInfo_t info)
{
    delete info;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreateSyevjInfo(syevjInfo_t *info)
{
    if (!info) return CUSOLVER_STATUS_INVALID_VALUE;
    *info = new (std::nothrow) pnsim_syevj_info();
    if (*info) (*info)->sort = 1;
    return *info ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_ALLOC_FAILED;
}
cusolverStatus_t cusolverDnDestroySyevjInfo(syevjInfo_t info)
{
    delete info;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnXgesvdjSetSortEig(gesvdjInfo_t info, int sort_svd)
{
    if (!info) return CUSOLVER_STATUS_INVALID_VALUE;
    info->sort = sort_svd;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnXsyevjSetSortEig(syevjInfo_t info, int sort_eig)
{
    if (!info) return CUSOLVER_STATUS_INVALID_VALUE;
    info->sort = sort_eig;
    return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *params)
{
    if (!params) return CUSOLVER_STATUS_INVALID_VALUE;
    *params = new (std::nothrow) pnsim_solver_params();
    return *params ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_ALLOC_FAILED;
}
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params)
{
    delete params;
    return CUSOLVER_STATUS_SUCCESS;
}

/* ───────────────────────────── LAPACK by type ───────────────────────────── */

#define PNSIM_LAPACK_OVERLOADS(T, P)                                                           \
    static void gesdd(char jobz, int m, int n, T *a, int lda, T *s, T *u, int ldu, T *vt,      \
                      int ldvt, T *work, int lwork, int *iwork, int *info)                     \
    {                                                                                          \
        P##gesdd_(&jobz, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info);   \
    }                                                                                          \
    static void syevd(char jobz, char uplo, int n, T *a, int lda, T *w, T *work, int lwork,    \
                      int *iwork, int liwork, int *info)                                       \
    {                                                                                          \
        P##syevd_(&jobz, &uplo, &n, a, &lda, w, work, &lwork, iwork, &liwork, info);           \
    }                                                                                          \
    static void getrf(int m, int n, T *a, int lda, int *ipiv, int *info)                       \
    {                                                                                          \
        P##getrf_(&m, &n, a, &lda, ipiv, info);                                                \
    }                                                                                          \
    static void potrf(char uplo, int n, T *a, int lda, int *info)                              \
    {                                                                                          \
        P##potrf_(&uplo, &n, a, &lda, info);                                                   \
    }                                                                                          \
    static void geqrf(int m, int n, T *a, int lda, T *tau, T *work, int lwork, int *info)      \
    {                                                                                          \
        P##geqrf_(&m, &n, a, &lda, tau, work, &lwork, info);                                   \
    }                                                                                          \
    static void orgqr(int m, int n, int k, T *a, int lda, const T *tau, T *work, int lwork,    \
                      int *info)                                                               \
    {                                                                                          \
        P##orgqr_(&m, &n, &k, a, &lda, tau, work, &lwork, info);                               \
    }                                                                                          \
    static void geev(char jobvr, int n, T *a, int lda, T *wr, T *wi, T *vr, int ldvr, T *work, \
                     int lwork, int *info)                                                     \
    {                                                                                          \
        char no = 'N';                                                                         \
        int one = 1;                                                                           \
        P##geev_(&no, &jobvr, &n, a, &lda, wr, wi, NULL, &one, vr, &ldvr, work, &lwork, info); \
    }
PNSIM_LAPACK_OVERLOADS(float, s)
PNSIM_LAPACK_OVERLOADS(double, d)

static int max1(int x) { return x > 1 ? x : 1; }

/* ───────────────────────────── workspaces ───────────────────────────── */

/* The workspace a simulated routine asks for (its _bufferSize), in elements of its type, for
 * batch matrices of m x n: more than one and growing with the problem, as cuSOLVER's, so that
 * a caller passing less (or none) fails here where it would overrun memory on a GPU. */
static int sim_lwork(int m, int n, int batch = 1)
{
    const int64_t e = (int64_t)max1(batch) * ((int64_t)max1(m) * max1(n) + 32);
    return e < INT32_MAX ? (int)e : INT32_MAX;
}
/* Whether the caller's workspace (work, lwork elements of T) is device memory of that size
 * and covers sim_lwork's need: checked at the call (CUSOLVER_STATUS_INVALID_VALUE when not). */
template <typename T> static bool work_ok(const T *work, int lwork, int need)
{
    return work && lwork >= need && pnsim_is_device_memory(work, sizeof(T) * (size_t)lwork);
}
/* What a routine does to its workspace when it runs (pnsim_library_scratch): false when it
 * is no longer device memory then (the routine fails, as an asynchronous error). */
template <typename T> static bool work_scratch(T *work, int lwork)
{
    return pnsim_library_scratch(work, sizeof(T) * (size_t)lwork);
}

/* gesvdj through gesdd of one matrix: A = U S VT, then V = VT^T (cols x cols, leading
 * dimension ldv); the arguments checked by sim_gesvdj. */
template <typename T>
static cusolverStatus_t gesvdj_one(bool vec, int m, int n, T *A, int lda, T *S, T *U, int ldu,
                                   T *V, int ldv, int *info)
{
    char job = vec ? 'A' : 'N';
    int k = m < n ? m : n, lwork = -1, one = 1, q_info = 0;
    T q = 0;
    T *vt = vec ? (T *)malloc(sizeof(T) * (size_t)max1(n * n)) : NULL;
    int *iwork = (int *)malloc(sizeof(int) * (size_t)max1(8 * k));
    gesdd(job, m, n, A, lda, S, vec ? U : &q, vec ? ldu : one, vt ? vt : &q, vec ? n : one, &q,
          lwork, iwork, &q_info);
    lwork = (int)q + 1;
    T *work = (T *)malloc(sizeof(T) * (size_t)lwork);
    if ((vec && !vt) || !iwork || !work) {
        free(vt), free(iwork), free(work);
        return CUSOLVER_STATUS_ALLOC_FAILED;
    }
    T dummy = 0;
    gesdd(job, m, n, A, lda, S, vec ? U : &dummy, vec ? ldu : one, vec ? vt : &dummy,
          vec ? max1(n) : one, work, lwork, iwork, info);
    if (vec && *info == 0)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) V[i + j * ldv] = vt[j + i * n];
    free(vt), free(iwork), free(work);
    return CUSOLVER_STATUS_SUCCESS;
}

/* gesvdj of batch matrices (A, S, U, V, info each batch's apart): cuSOLVER's checks, then
 * gesvdj_one on each in stream order. */
template <typename T>
static cusolverStatus_t sim_gesvdj(cusolverDnHandle_t handle, cusolverEigMode_t jobz, int econ,
                                   int m, int n, T *A, int lda, T *S, T *U, int ldu, T *V,
                                   int ldv, T *work, int lwork, int *info, int batch)
{
    if (econ || m < 0 || n < 0 || lda < max1(m)) return CUSOLVER_STATUS_INVALID_VALUE;
    if (!work_ok(work, lwork, sim_lwork(m, n, batch))) return CUSOLVER_STATUS_INVALID_VALUE;
    bool vec = jobz == CUSOLVER_EIG_MODE_VECTOR;
    /* the hardware's gesvdj writes V (an identity to start from) also without vectors: U and
     * V must be real matrices in both modes (seen on an H200, 2026-11-26) */
    if (!U || !V || ldu < max1(m) || ldv < max1(n)) return CUSOLVER_STATUS_INVALID_VALUE;
    const int k = m < n ? m : n;
    return solver_run(handle, [=] {
        if (!work_scratch(work, lwork)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        for (int b = 0; b < batch; b++) {
            cusolverStatus_t st = gesvdj_one(vec, m, n, A + (size_t)b * lda * n, lda,
                                             S + (size_t)b * k, U + (size_t)b * ldu * m, ldu,
                                             V + (size_t)b * ldv * n, ldv, info + b);
            if (st != CUSOLVER_STATUS_SUCCESS) return st;
        }
        return CUSOLVER_STATUS_SUCCESS;
    });
}

/* syevd of one matrix through LAPACK (job 'V' or 'N', ul 'L' or 'U'). */
template <typename T>
static cusolverStatus_t syevd_one(char job, char ul, int n, T *A, int lda, T *W, int *info)
{
    int q_info = 0, iq = 0;
    T q = 0;
    syevd(job, ul, n, A, lda, W, &q, -1, &iq, -1, &q_info);
    int lwork = (int)q + 1, liwork = max1(iq);
    T *work = (T *)malloc(sizeof(T) * (size_t)lwork);
    int *iwork = (int *)malloc(sizeof(int) * (size_t)liwork);
    if (!work || !iwork) {
        free(work), free(iwork);
        return CUSOLVER_STATUS_ALLOC_FAILED;
    }
    syevd(job, ul, n, A, lda, W, work, lwork, iwork, liwork, info);
    free(work), free(iwork);
    return CUSOLVER_STATUS_SUCCESS;
}

/* syevd of batch matrices (A, W, info each batch's apart): cuSOLVER's checks, then syevd_one
 * on each in stream order. */
template <typename T>
static cusolverStatus_t sim_syevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                  cublasFillMode_t uplo, int n, T *A, int lda, T *W, T *work,
                                  int lwork, int *info, int batch)
{
    if (n < 0 || lda < max1(n)) return CUSOLVER_STATUS_INVALID_VALUE;
    if (!work_ok(work, lwork, sim_lwork(n, n, batch))) return CUSOLVER_STATUS_INVALID_VALUE;
    char job = jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N';
    char ul = uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
    return solver_run(handle, [=] {
        if (!work_scratch(work, lwork)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        for (int b = 0; b < batch; b++) {
            cusolverStatus_t st = syevd_one(job, ul, n, A + (size_t)b * lda * n, lda,
                                            W + (size_t)b * n, info + b);
            if (st != CUSOLVER_STATUS_SUCCESS) return st;
        }
        return CUSOLVER_STATUS_SUCCESS;
    });
}

/* getrf through LAPACK: cuSOLVER's checks, then the factorization in stream order. */
template <typename T>
static cusolverStatus_t sim_getrf(cusolverDnHandle_t handle, int m, int n, T *A, int lda,
                                  T *work, int *ipiv, int *info)
{
    if (m < 0 || n < 0 || lda < max1(m)) return CUSOLVER_STATUS_INVALID_VALUE;
    const int lwork = sim_lwork(m, n); /* getrf takes no size: the one its _bufferSize gave */
    if (!work_ok(work, lwork, lwork)) return CUSOLVER_STATUS_INVALID_VALUE;
    return solver_run(handle, [=] {
        if (!work_scratch(work, lwork)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        getrf(m, n, A, lda, ipiv, info);
        return CUSOLVER_STATUS_SUCCESS;
    });
}

/* geqrf or orgqr of sim_qr's (checked) arguments through LAPACK. */
template <typename T>
static cusolverStatus_t qr_one(bool orgq, int m, int n, int k, T *A, int lda, T *tau, int *info)
{
    T q = 0;
    int q_info = 0;
    if (orgq) orgqr(m, n, k, A, lda, tau, &q, -1, &q_info);
    else geqrf(m, n, A, lda, tau, &q, -1, &q_info);
    int lw = max1((int)q + 1);
    T *work = (T *)malloc(sizeof(T) * (size_t)lw);
    if (!work) return CUSOLVER_STATUS_ALLOC_FAILED;
    if (orgq) orgqr(m, n, k, A, lda, tau, work, lw, info);
    else geqrf(m, n, A, lda, tau, work, lw, info);
    free(work);
    return CUSOLVER_STATUS_SUCCESS;
}

/* geqrf (orgq false) or orgqr (m x n from k reflectors) through LAPACK with a workspace from
 * the heap; cuSOLVER's argument checks, then the work in stream order. */
template <typename T>
static cusolverStatus_t sim_qr(cusolverDnHandle_t handle, bool orgq, int m, int n, int k, T *A,
                               int lda, T *tau, T *work, int lwork, int *info)
{
    if (m < 0 || n < 0 || lda < max1(m) || !A || !tau || !info) return CUSOLVER_STATUS_INVALID_VALUE;
    if (orgq && (n > m || k < 0 || k > n)) return CUSOLVER_STATUS_INVALID_VALUE;
    if (!work_ok(work, lwork, sim_lwork(m, n))) return CUSOLVER_STATUS_INVALID_VALUE;
    return solver_run(handle, [=] {
        if (!work_scratch(work, lwork)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        return qr_one(orgq, m, n, k, A, lda, tau, info);
    });
}

/* The entry points of cusolver_sim.h for one type: buffer sizes from sim_lwork, the work on
 * the host. */
#define PNSIM_SOLVER_DEFS(T, P)                                                                \
    cusolverStatus_t cusolverDn##P##gesvdj_bufferSize(                                         \
        cusolverDnHandle_t handle, cusolverEigMode_t, int, int m, int n, const T *, int,        \
        const T *,                                                                             \
        const T *, int, const T *, int, int *lwork, gesvdjInfo_t)                              \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(m, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##gesvdj(cusolverDnHandle_t handle, cusolverEigMode_t jobz,   \
                                           int econ, int m, int n, T *A, int lda, T *S, T *U,  \
                                           int ldu, T *V, int ldv, T *work, int lwork,         \
                                           int *info, gesvdjInfo_t params)                     \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle, params)) return e;                       \
        return sim_gesvdj(handle, jobz, econ, m, n, A, lda, S, U, ldu, V, ldv, work, lwork,    \
                          info, 1);                                                            \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##syevd_bufferSize(cusolverDnHandle_t handle,                 \
                                                     cusolverEigMode_t, cublasFillMode_t,      \
                                                     int n, const T *, int, const T *,         \
                                                     int *lwork)                               \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(n, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##syevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,    \
                                          cublasFillMode_t uplo, int n, T *A, int lda, T *W,   \
                                          T *work, int lwork, int *info)                       \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle)) return e;                               \
        return sim_syevd(handle, jobz, uplo, n, A, lda, W, work, lwork, info, 1);              \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##getrf_bufferSize(cusolverDnHandle_t handle, int m, int n,  \
                                                     T *, int, int *lwork)                     \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(m, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##getrf(cusolverDnHandle_t handle, int m, int n, T *A,        \
                                          int lda, T *work, int *ipiv, int *info)              \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle)) return e;                               \
        return sim_getrf(handle, m, n, A, lda, work, ipiv, info);                              \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##potrf_bufferSize(cusolverDnHandle_t handle,                 \
                                                     cublasFillMode_t, int n, T *, int,        \
                                                     int *lwork)                               \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(n, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##potrf(cusolverDnHandle_t handle, cublasFillMode_t uplo,     \
                                          int n, T *A, int lda, T *work, int lwork, int *info) \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle)) return e;                               \
        if (n < 0 || lda < max1(n)) return CUSOLVER_STATUS_INVALID_VALUE;                      \
        if (!work_ok(work, lwork, sim_lwork(n, n))) return CUSOLVER_STATUS_INVALID_VALUE;      \
        char ul = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L';                                  \
        return solver_run(handle, [=] {                                                        \
            if (!work_scratch(work, lwork)) return CUSOLVER_STATUS_EXECUTION_FAILED;           \
            potrf(ul, n, A, lda, info);                                                        \
            return CUSOLVER_STATUS_SUCCESS;                                                    \
        });                                                                                    \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##geqrf_bufferSize(cusolverDnHandle_t handle, int m, int n,  \
                                                     T *, int, int *lwork)                     \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(m, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##geqrf(cusolverDnHandle_t handle, int m, int n, T *A,        \
                                          int lda, T *TAU, T *work, int lwork, int *info)      \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle)) return e;                               \
        return sim_qr(handle, false, m, n, m < n ? m : n, A, lda, TAU, work, lwork, info);     \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##orgqr_bufferSize(cusolverDnHandle_t handle, int m, int n,  \
                                                     int, const T *, int, const T *,           \
                                                     int *lwork)                               \
    {                                                                                          \
        if (!handle) return CUSOLVER_STATUS_NOT_INITIALIZED;                                   \
        *lwork = sim_lwork(m, n);                                                              \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##orgqr(cusolverDnHandle_t handle, int m, int n, int k, T *A, \
                                          int lda, const T *tau, T *work, int lwork,           \
                                          int *info)                                           \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle)) return e;                               \
        return sim_qr(handle, true, m, n, k, A, lda, const_cast<T *>(tau), work, lwork, info); \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##gesvdjBatched_bufferSize(                                  \
        cusolverDnHandle_t handle, cusolverEigMode_t, int m, int n, const T *, int, const T *, \
        const T *, int, const T *, int, int *lwork, gesvdjInfo_t params, int batchSize)        \
    {                                                                                          \
        if (!handle || !params) return CUSOLVER_STATUS_NOT_INITIALIZED;                        \
        if (m > 32 || n > 32 || batchSize < 0) return CUSOLVER_STATUS_INVALID_VALUE;           \
        *lwork = sim_lwork(m, n, batchSize);                                                   \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##gesvdjBatched(                                             \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, int m, int n, T *A, int lda, T *S,  \
        T *U, int ldu, T *V, int ldv, T *work, int lwork, int *info, gesvdjInfo_t params,      \
        int batchSize)                                                                         \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle, params)) return e;                       \
        if (m > 32 || n > 32 || batchSize < 0) return CUSOLVER_STATUS_INVALID_VALUE;           \
        if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;                                    \
        return sim_gesvdj(handle, jobz, 0, m, n, A, lda, S, U, ldu, V, ldv, work, lwork, info, \
                          batchSize);                                                          \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##syevjBatched_bufferSize(                                   \
        cusolverDnHandle_t handle, cusolverEigMode_t, cublasFillMode_t, int n, const T *, int, \
        const T *, int *lwork, syevjInfo_t params, int batchSize)                              \
    {                                                                                          \
        if (!handle || !params) return CUSOLVER_STATUS_NOT_INITIALIZED;                        \
        if (n > 32 || batchSize < 0) return CUSOLVER_STATUS_INVALID_VALUE;                     \
        *lwork = sim_lwork(n, n, batchSize);                                                   \
        return CUSOLVER_STATUS_SUCCESS;                                                        \
    }                                                                                          \
    cusolverStatus_t cusolverDn##P##syevjBatched(                                              \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, T *A, \
        int lda, T *W, T *work, int lwork, int *info, syevjInfo_t params, int batchSize)       \
    {                                                                                          \
        if (cusolverStatus_t e = solver_ready(handle, params)) return e;                       \
        if (n > 32 || batchSize < 0) return CUSOLVER_STATUS_INVALID_VALUE;                     \
        if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;                                    \
        return sim_syevd(handle, jobz, uplo, n, A, lda, W, work, lwork, info, batchSize);      \
    }
PNSIM_SOLVER_DEFS(float, S)
PNSIM_SOLVER_DEFS(double, D)

/* Xgeev's workspaces (its _bufferSize) for n x n matrices of elem-byte elements: on the
 * device n * n + 32 elements, on the host n + 32. */
static size_t geev_work_bytes(int64_t n, size_t elem, bool host)
{
    const size_t k = n > 0 ? (size_t)n : 0;
    return elem * ((host ? k : k * k) + 32);
}
/* The caller's Xgeev workspaces: device memory and host memory of geev_work_bytes each. */
struct geev_work {
    void *dev, *host;
    size_t dev_bytes, host_bytes;
};
/* What Xgeev does to its workspaces when it runs: the device one as pnsim_library_scratch
 * says (false when it is no longer device memory), the host one overwritten whole. */
static bool geev_scratch(const geev_work &w)
{
    memset(w.host, 0xCD, w.host_bytes);
    return pnsim_library_scratch(w.dev, w.dev_bytes);
}

/* geev through LAPACK: eigenvalues interleaved into W, right vectors into VR as LAPACK writes
 * them; checked at the call, run in stream order. */
template <typename T>
static cusolverStatus_t sim_geev(cusolverDnHandle_t handle, cusolverEigMode_t jobvr, int64_t n64,
                                 T *A, int64_t lda, T *W, T *VR, int64_t ldvr, geev_work ws, int *info)
{
    if (n64 < 0 || n64 > INT32_MAX || lda < (n64 > 1 ? n64 : 1)) return CUSOLVER_STATUS_INVALID_VALUE;
    int n = (int)n64;
    bool vec = jobvr == CUSOLVER_EIG_MODE_VECTOR;
    if (vec && (!VR || ldvr < max1(n))) return CUSOLVER_STATUS_INVALID_VALUE;
    return solver_run(handle, [=] {
        if (!geev_scratch(ws)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        int q_info = 0;
        T q = 0, dummy = 0;
        geev(vec ? 'V' : 'N', n, A, (int)lda, &dummy, &dummy, vec ? VR : &dummy,
             vec ? (int)ldvr : 1, &q, -1, &q_info);
        int lwork = (int)q + 1;
        T *work = (T *)malloc(sizeof(T) * ((size_t)lwork + 2 * (size_t)max1(n)));
        if (!work) return CUSOLVER_STATUS_ALLOC_FAILED;
        T *wr = work + lwork, *wi = wr + max1(n);
        geev(vec ? 'V' : 'N', n, A, (int)lda, wr, wi, vec ? VR : &dummy, vec ? (int)ldvr : 1,
             work, lwork, info);
        for (int j = 0; j < n; j++) W[2 * j] = wr[j], W[2 * j + 1] = wi[j];
        free(work);
        return CUSOLVER_STATUS_SUCCESS;
    });
}

/* complex64 geev through LAPACK cgeev (complex arithmetic, as cuSOLVER's for CUDA_C_32F):
 * the eigenvalues straight into W, the right vectors into VR, both interleaved complex as
 * LAPACK writes them; scratch (work, then 2n floats of rwork) from the host heap; checked at
 * the call, run in stream order. */
static cusolverStatus_t sim_geev_complex(cusolverDnHandle_t handle, cusolverEigMode_t jobvr,
                                         int64_t n64, float *A, int64_t lda, float *W, float *VR,
                                         int64_t ldvr, geev_work ws, int *info)
{
    if (n64 < 0 || n64 > INT32_MAX || lda < (n64 > 1 ? n64 : 1)) return CUSOLVER_STATUS_INVALID_VALUE;
    bool vec = jobvr == CUSOLVER_EIG_MODE_VECTOR;
    if (vec && (!VR || ldvr < max1((int)n64))) return CUSOLVER_STATUS_INVALID_VALUE;
    return solver_run(handle, [=] {
        if (!geev_scratch(ws)) return CUSOLVER_STATUS_EXECUTION_FAILED;
        int n = (int)n64, ilda = (int)lda, one = 1, query = -1, q_info = 0;
        char no = 'N', jv = vec ? 'V' : 'N';
        int ildvr = vec ? (int)ldvr : 1;
        float q[2] = {0, 0}, dummy[2] = {0, 0};
        cgeev_(&no, &jv, &n, A, &ilda, dummy, NULL, &one, vec ? VR : dummy, &ildvr, q, &query,
               dummy, &q_info);
        int lwork = (int)q[0] + 1;
        float *work = (float *)malloc(sizeof(float) * (2 * (size_t)lwork + 2 * (size_t)max1(n)));
        if (!work) return CUSOLVER_STATUS_ALLOC_FAILED;
        cgeev_(&no, &jv, &n, A, &ilda, W, NULL, &one, vec ? VR : dummy, &ildvr, work, &lwork,
               work + 2 * (size_t)lwork, info);
        free(work);
        return CUSOLVER_STATUS_SUCCESS;
    });
}

cusolverStatus_t cusolverDnXgeev_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                            cusolverEigMode_t jobvl, cusolverEigMode_t,
                                            int64_t n, cudaDataType dataTypeA, const void *,
                                            int64_t, cudaDataType dataTypeW, const void *,
                                            cudaDataType, const void *, int64_t, cudaDataType,
                                            const void *, int64_t, cudaDataType,
                                            size_t *workspaceInBytesOnDevice,
                                            size_t *workspaceInBytesOnHost)
{
    if (!handle || !params) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (jobvl != CUSOLVER_EIG_MODE_NOVECTOR || !workspaceInBytesOnDevice || !workspaceInBytesOnHost)
        return CUSOLVER_STATUS_INVALID_VALUE;
    bool f32 = dataTypeA == CUDA_R_32F && dataTypeW == CUDA_C_32F;
    bool f64 = dataTypeA == CUDA_R_64F && dataTypeW == CUDA_C_64F;
    bool c32 = dataTypeA == CUDA_C_32F && dataTypeW == CUDA_C_32F;
    if (!f32 && !f64 && !c32) return CUSOLVER_STATUS_INVALID_VALUE;
    const size_t elem = f32 ? 4 : 8;
    *workspaceInBytesOnDevice = geev_work_bytes(n, elem, false);
    *workspaceInBytesOnHost = geev_work_bytes(n, elem, true);
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXgeev(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                 cusolverEigMode_t jobvl, cusolverEigMode_t jobvr, int64_t n,
                                 cudaDataType dataTypeA, void *A, int64_t lda,
                                 cudaDataType dataTypeW, void *W, cudaDataType dataTypeVL, void *,
                                 int64_t, cudaDataType dataTypeVR, void *VR, int64_t ldvr,
                                 cudaDataType computeType, void *bufferOnDevice,
                                 size_t workspaceInBytesOnDevice, void *bufferOnHost,
                                 size_t workspaceInBytesOnHost, int *info)
{
    if (cusolverStatus_t e = solver_ready(handle, params)) return e;
    if (jobvl != CUSOLVER_EIG_MODE_NOVECTOR || !A || !W || !info) return CUSOLVER_STATUS_INVALID_VALUE;
    /* the workspaces _bufferSize asks for: device memory, and host memory */
    const size_t elem = dataTypeA == CUDA_R_32F ? 4 : 8;
    const geev_work ws = {bufferOnDevice, bufferOnHost, workspaceInBytesOnDevice, workspaceInBytesOnHost};
    if (!ws.dev || ws.dev_bytes < geev_work_bytes(n, elem, false) ||
        !pnsim_is_device_memory(ws.dev, ws.dev_bytes) || !ws.host ||
        ws.host_bytes < geev_work_bytes(n, elem, true) || pnsim_device_of(ws.host) >= 0)
        return CUSOLVER_STATUS_INVALID_VALUE;
    if (dataTypeA == CUDA_R_32F && dataTypeW == CUDA_C_32F && dataTypeVL == CUDA_R_32F &&
        dataTypeVR == CUDA_R_32F && computeType == CUDA_R_32F)
        return sim_geev(handle, jobvr, n, (float *)A, lda, (float *)W, (float *)VR, ldvr, ws, info);
    if (dataTypeA == CUDA_R_64F && dataTypeW == CUDA_C_64F && dataTypeVL == CUDA_R_64F &&
        dataTypeVR == CUDA_R_64F && computeType == CUDA_R_64F)
        return sim_geev(handle, jobvr, n, (double *)A, lda, (double *)W, (double *)VR, ldvr, ws, info);
    if (dataTypeA == CUDA_C_32F && dataTypeW == CUDA_C_32F && dataTypeVL == CUDA_C_32F &&
        dataTypeVR == CUDA_C_32F && computeType == CUDA_C_32F)
        return sim_geev_complex(handle, jobvr, n, (float *)A, lda, (float *)W, (float *)VR, ldvr, ws, info);
    return CUSOLVER_STATUS_INVALID_VALUE;
}
