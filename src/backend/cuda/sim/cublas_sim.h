/* cublas_sim.h — the simulated classic cuBLAS: exactly the subset of <cublas_v2.h> that
 * solver.cu uses (a handle bound to a stream, the triangular solve trsm, trsmBatched and the
 * batched LU getrfBatched in float and double), with cuBLAS's names, values and statuses and
 * no CUDA toolkit header. cublas_sim.cpp computes trsm with the host BLAS and getrfBatched with
 * LAPACK's getrf per matrix (simulated device memory is host memory), synchronously as the
 * simulated runtime does. */
#ifndef PONTE_BACKEND_CUDA_SIM_CUBLAS_SIM_H
#define PONTE_BACKEND_CUDA_SIM_CUBLAS_SIM_H

#include "backend/cuda/sim/cusolver_sim.h" /* cublasFillMode_t; cublasStatus_t, cublasOperation_t */

typedef enum {
    CUBLAS_SIDE_LEFT = 0,
    CUBLAS_SIDE_RIGHT = 1,
} cublasSideMode_t;

typedef enum {
    CUBLAS_DIAG_NON_UNIT = 0,
    CUBLAS_DIAG_UNIT = 1,
} cublasDiagType_t;

typedef struct pnsim_cublas_context *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
/* Solves op(A) X = alpha B (side LEFT, A m x m) or X op(A) = alpha B (side RIGHT, A n x n) for
 * the m x n column-major B in place, A triangular (uplo), with a unit diagonal when asked. */
cublasStatus_t cublasStrsm(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                           cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                           const float *alpha, const float *A, int lda, float *B, int ldb);
cublasStatus_t cublasDtrsm(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                           cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                           const double *alpha, const double *A, int lda, double *B, int ldb);
/* trsm on each of batchCount (A[i], B[i]) pairs (device pointer arrays in device memory). */
cublasStatus_t cublasStrsmBatched(cublasHandle_t handle, cublasSideMode_t side,
                                  cublasFillMode_t uplo, cublasOperation_t trans,
                                  cublasDiagType_t diag, int m, int n, const float *alpha,
                                  const float *const A[], int lda, float *const B[], int ldb,
                                  int batchCount);
cublasStatus_t cublasDtrsmBatched(cublasHandle_t handle, cublasSideMode_t side,
                                  cublasFillMode_t uplo, cublasOperation_t trans,
                                  cublasDiagType_t diag, int m, int n, const double *alpha,
                                  const double *const A[], int lda, double *const B[], int ldb,
                                  int batchCount);
/* LU with partial pivoting of batchSize n x n column-major matrices Aarray[i] (device
 * pointers in device memory) in place: PivotArray gets n 1-based pivots per matrix and
 * infoArray one info each (> 0: an exact zero pivot). */
cublasStatus_t cublasSgetrfBatched(cublasHandle_t handle, int n, float *const Aarray[], int lda,
                                   int *PivotArray, int *infoArray, int batchSize);
cublasStatus_t cublasDgetrfBatched(cublasHandle_t handle, int n, double *const Aarray[], int lda,
                                   int *PivotArray, int *infoArray, int batchSize);

#endif /* PONTE_BACKEND_CUDA_SIM_CUBLAS_SIM_H */
