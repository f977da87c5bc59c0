/* cublas_sim.cpp — the simulated classic cuBLAS (cublas_sim.h): trsm and trsmBatched through
 * the host BLAS (column-major, the same arguments) and getrfBatched through LAPACK's getrf per
 * matrix, with cuBLAS's argument checks at the call and the work in stream order. */
#include <cblas.h>
#include <new>

#include "backend/cpu/lapack.h"
#include "backend/cuda/sim/cublas_sim.h"
#include "backend/cuda/sim/sim_internal.h"

struct pnsim_cublas_context {
    cudaStream_t stream;
    int dev; /* the device current at cublasCreate */
};

/* See cublas_sim.h (cuBLAS's contracts). */
cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    *handle = new (std::nothrow) pnsim_cublas_context();
    if (!*handle) return CUBLAS_STATUS_ALLOC_FAILED;
    (*handle)->dev = pnsim_current_device();
    return CUBLAS_STATUS_SUCCESS;
}

/* Whether a routine may run work with handle now (pnsim_handle_ready). */
static cublasStatus_t blas_ready(cublasHandle_t handle)
{
    return pnsim_handle_ready(handle, CUBLAS_STATUS_SUCCESS, CUBLAS_STATUS_NOT_INITIALIZED,
                              CUBLAS_STATUS_EXECUTION_FAILED);
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

/* cuBLAS's checks of trsm's arguments (alpha a host pointer, read at the call), then, in
 * stream order (pnsim_library_run), the host BLAS on batch pairs: pair(b, &A, &B) gives pair b
 * when the work runs (a batched call's pointer arrays are device memory). */
template <typename T, typename P, typename F>
static cublasStatus_t sim_trsm(cublasHandle_t handle, cublasSideMode_t side,
                               cublasFillMode_t uplo, cublasOperation_t trans,
                               cublasDiagType_t diag, int m, int n, const T *alpha, int lda,
                               int ldb, int batch, P pair, F blas)
{
    if (cublasStatus_t e = blas_ready(handle)) return e;
    int ka = side == CUBLAS_SIDE_LEFT ? m : n;
    if (m < 0 || n < 0 || lda < (ka > 1 ? ka : 1) || ldb < (m > 1 ? m : 1) || !alpha)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const T a = *alpha;
    return pnsim_library_run(handle->stream, CUBLAS_STATUS_SUCCESS, [=] {
        for (int b = 0; b < batch; b++) {
            const T *A;
            T *B;
            pair(b, &A, &B);
            blas(CblasColMajor, side == CUBLAS_SIDE_LEFT ? CblasLeft : CblasRight,
                 uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower,
                 trans == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                 diag == CUBLAS_DIAG_UNIT ? CblasUnit : CblasNonUnit, m, n, a, A, lda, B, ldb);
        }
        return CUBLAS_STATUS_SUCCESS;
    });
}

/* trsm: sim_trsm on the one pair (A, B). */
template <typename T, typename F>
static cublasStatus_t sim_trsm_one(cublasHandle_t handle, cublasSideMode_t side,
                                   cublasFillMode_t uplo, cublasOperation_t trans,
                                   cublasDiagType_t diag, int m, int n, const T *alpha,
                                   const T *A, int lda, T *B, int ldb, F blas)
{
    auto pair = [A, B](int, const T **a, T **b) { *a = A, *b = B; };
    return sim_trsm(handle, side, uplo, trans, diag, m, n, alpha, lda, ldb, 1, pair, blas);
}

cublasStatus_t cublasStrsm(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                           cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                           const float *alpha, const float *A, int lda, float *B, int ldb)
{
    return sim_trsm_one(handle, side, uplo, trans, diag, m, n, alpha, A, lda, B, ldb, cblas_strsm);
}

cublasStatus_t cublasDtrsm(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                           cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                           const double *alpha, const double *A, int lda, double *B, int ldb)
{
    return sim_trsm_one(handle, side, uplo, trans, diag, m, n, alpha, A, lda, B, ldb, cblas_dtrsm);
}

/* trsmBatched: sim_trsm on the pairs (A[b], B[b]), the arrays read when it runs. */
template <typename T, typename F>
static cublasStatus_t sim_trsm_batched(cublasHandle_t handle, cublasSideMode_t side,
                                       cublasFillMode_t uplo, cublasOperation_t trans,
                                       cublasDiagType_t diag, int m, int n, const T *alpha,
                                       const T *const A[], int lda, T *const B[], int ldb,
                                       int batch, F blas)
{
    if (batch < 0 || (batch > 0 && (!A || !B))) return CUBLAS_STATUS_INVALID_VALUE;
    if (batch == 0) return blas_ready(handle);
    auto pair = [A, B](int i, const T **a, T **b) { *a = A[i], *b = B[i]; };
    return sim_trsm(handle, side, uplo, trans, diag, m, n, alpha, lda, ldb, batch, pair, blas);
}

cublasStatus_t cublasStrsmBatched(cublasHandle_t handle, cublasSideMode_t side,
                                  cublasFillMode_t uplo, cublasOperation_t trans,
                                  cublasDiagType_t diag, int m, int n, const float *alpha,
                                  const float *const A[], int lda, float *const B[], int ldb,
                                  int batchCount)
{
    return sim_trsm_batched(handle, side, uplo, trans, diag, m, n, alpha, A, lda, B, ldb,
                            batchCount, cblas_strsm);
}

cublasStatus_t cublasDtrsmBatched(cublasHandle_t handle, cublasSideMode_t side,
                                  cublasFillMode_t uplo, cublasOperation_t trans,
                                  cublasDiagType_t diag, int m, int n, const double *alpha,
                                  const double *const A[], int lda, double *const B[], int ldb,
                                  int batchCount)
{
    return sim_trsm_batched(handle, side, uplo, trans, diag, m, n, alpha, A, lda, B, ldb,
                            batchCount, cblas_dtrsm);
}

/* getrfBatched: LAPACK getrf on each matrix (pivots 1-based, as cuBLAS's), in stream order
 * (pnsim_library_run; the pointer array read when it runs). */
template <typename T, typename F>
static cublasStatus_t sim_getrf_batched(cublasHandle_t handle, int n, T *const A[], int lda,
                                        int *P, int *info, int batch, F getrf)
{
    if (cublasStatus_t e = blas_ready(handle)) return e;
    if (n < 0 || lda < (n > 1 ? n : 1) || batch < 0 || !A || !P || !info)
        return CUBLAS_STATUS_INVALID_VALUE;
    return pnsim_library_run(handle->stream, CUBLAS_STATUS_SUCCESS, [=] {
        for (int b = 0; b < batch; b++) getrf(&n, &n, A[b], &lda, P + (size_t)b * n, info + b);
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasSgetrfBatched(cublasHandle_t handle, int n, float *const Aarray[], int lda,
                                   int *PivotArray, int *infoArray, int batchSize)
{
    return sim_getrf_batched(handle, n, Aarray, lda, PivotArray, infoArray, batchSize, sgetrf_);
}

cublasStatus_t cublasDgetrfBatched(cublasHandle_t handle, int n, double *const Aarray[], int lda,
                                   int *PivotArray, int *infoArray, int batchSize)
{
    return sim_getrf_batched(handle, n, Aarray, lda, PivotArray, infoArray, batchSize, dgetrf_);
}
