/* cusolver_sim.h — the simulated cuSOLVER: exactly the subset of <cusolverDn.h> that
 * solver.cu uses (handle and stream, gesvdj with its info object, syevd, getrf, potrf, geqrf
 * and orgqr, the batched
 * Jacobi routines gesvdjBatched / syevjBatched with their info objects, the 64-bit
 * API's geev with its params object, and their buffer-size queries), with cuSOLVER's names, values and statuses and no CUDA toolkit
 * header. cusolver_sim.cpp computes each call with LAPACK on the host (simulated device
 * memory is host memory), synchronously as the simulated runtime does. */
#ifndef PONTE_BACKEND_CUDA_SIM_CUSOLVER_SIM_H
#define PONTE_BACKEND_CUDA_SIM_CUSOLVER_SIM_H

#include "backend/cuda/sim/cuda_sim.h"
#include "backend/cuda/sim/cublaslt_sim.h" /* cudaDataType (library_types.h) */

typedef enum {
    CUSOLVER_STATUS_SUCCESS = 0,
    CUSOLVER_STATUS_NOT_INITIALIZED = 1,
    CUSOLVER_STATUS_ALLOC_FAILED = 2,
    CUSOLVER_STATUS_INVALID_VALUE = 3,
    CUSOLVER_STATUS_ARCH_MISMATCH = 4,
    CUSOLVER_STATUS_EXECUTION_FAILED = 6,
    CUSOLVER_STATUS_INTERNAL_ERROR = 7,
} cusolverStatus_t;

typedef enum {
    CUSOLVER_EIG_MODE_NOVECTOR = 0,
    CUSOLVER_EIG_MODE_VECTOR = 1,
} cusolverEigMode_t;

/* cublas_api.h's, which cusolverDn.h includes. */
typedef enum {
    CUBLAS_FILL_MODE_LOWER = 0,
    CUBLAS_FILL_MODE_UPPER = 1,
} cublasFillMode_t;

typedef struct pnsim_solver_context *cusolverDnHandle_t;
typedef struct pnsim_gesvdj_info *gesvdjInfo_t;
typedef struct pnsim_syevj_info *syevjInfo_t;
typedef struct pnsim_solver_params *cusolverDnParams_t;

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *handle);
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle);
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream);
cusolverStatus_t cusolverDnCreateGesvdjInfo(gesvdjInfo_t *info);
cusolverStatus_t cusolverDnDestroyGesvdjInfo(gesvdjInfo_t info);
cusolverStatus_t cusolverDnCreateSyevjInfo(syevjInfo_t *info);
cusolverStatus_t cusolverDnDestroySyevjInfo(syevjInfo_t info);
/* Whether the batched Jacobi routines sort (the default: yes). The simulated ones always sort
 * (as LAPACK returns them), which unsorted output also allows. */
cusolverStatus_t cusolverDnXgesvdjSetSortEig(gesvdjInfo_t info, int sort_svd);
cusolverStatus_t cusolverDnXsyevjSetSortEig(syevjInfo_t info, int sort_eig);
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *params);
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params);
/* geev of a real n x n matrix (float or double, all types one precision): dataTypeW complex
 * (each eigenvalue, conjugate pairs both, interleaved re/im), VR real (LAPACK's encoding of a
 * pair's vectors as two columns); or of a complex64 one (all types and the compute type
 * CUDA_C_32F: W and VR complex as LAPACK's cgeev writes them). Left vectors are not simulated
 * (jobvl NOVECTOR). Workspace sizes are 1 byte each. */
cusolverStatus_t cusolverDnXgeev_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                            cusolverEigMode_t jobvl, cusolverEigMode_t jobvr,
                                            int64_t n, cudaDataType dataTypeA, const void *A,
                                            int64_t lda, cudaDataType dataTypeW, const void *W,
                                            cudaDataType dataTypeVL, const void *VL, int64_t ldvl,
                                            cudaDataType dataTypeVR, const void *VR, int64_t ldvr,
                                            cudaDataType computeType,
                                            size_t *workspaceInBytesOnDevice,
                                            size_t *workspaceInBytesOnHost);
cusolverStatus_t cusolverDnXgeev(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                 cusolverEigMode_t jobvl, cusolverEigMode_t jobvr, int64_t n,
                                 cudaDataType dataTypeA, void *A, int64_t lda,
                                 cudaDataType dataTypeW, void *W, cudaDataType dataTypeVL,
                                 void *VL, int64_t ldvl, cudaDataType dataTypeVR, void *VR,
                                 int64_t ldvr, cudaDataType computeType, void *bufferOnDevice,
                                 size_t workspaceInBytesOnDevice, void *bufferOnHost,
                                 size_t workspaceInBytesOnHost, int *info);

/* The buffer sizes are 1: the simulated routines take their scratch from the host heap
 * (geqrf / orgqr check lwork >= 1 and, as cuSOLVER's, m >= n >= k for orgqr). The
 * routines write LAPACK's info to *info (device memory); gesvdj returns V, not V^T, as
 * cuSOLVER's. Only econ == 0 (full U and V) is simulated. The batched Jacobi routines
 * (gesvdjBatched: m, n <= 32; syevjBatched: n <= 32, else INVALID_VALUE as cuSOLVER's) run
 * the per-matrix routine on each of batchSize matrices stored one after another (A every
 * lda * n elements, S / W every min(m, n) / n, U every ldu * m, V every ldv * n), one info
 * per matrix. */
#define PNSIM_SOLVER_DECLS(T, P)                                                               \
    cusolverStatus_t cusolverDn##P##gesvdj_bufferSize(                                         \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, int econ, int m, int n, const T *A,  \
        int lda, const T *S, const T *U, int ldu, const T *V, int ldv, int *lwork,             \
        gesvdjInfo_t params);                                                                  \
    cusolverStatus_t cusolverDn##P##gesvdj(cusolverDnHandle_t handle, cusolverEigMode_t jobz,   \
                                           int econ, int m, int n, T *A, int lda, T *S, T *U,  \
                                           int ldu, T *V, int ldv, T *work, int lwork,         \
                                           int *info, gesvdjInfo_t params);                    \
    cusolverStatus_t cusolverDn##P##syevd_bufferSize(cusolverDnHandle_t handle,                 \
                                                     cusolverEigMode_t jobz,                   \
                                                     cublasFillMode_t uplo, int n, const T *A, \
                                                     int lda, const T *W, int *lwork);         \
    cusolverStatus_t cusolverDn##P##syevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,    \
                                          cublasFillMode_t uplo, int n, T *A, int lda, T *W,   \
                                          T *work, int lwork, int *info);                      \
    cusolverStatus_t cusolverDn##P##getrf_bufferSize(cusolverDnHandle_t handle, int m, int n,   \
                                                     T *A, int lda, int *lwork);               \
    cusolverStatus_t cusolverDn##P##getrf(cusolverDnHandle_t handle, int m, int n, T *A,        \
                                          int lda, T *work, int *ipiv, int *info);              \
    cusolverStatus_t cusolverDn##P##potrf_bufferSize(cusolverDnHandle_t handle,                 \
                                                     cublasFillMode_t uplo, int n, T *A,       \
                                                     int lda, int *lwork);                     \
    cusolverStatus_t cusolverDn##P##potrf(cusolverDnHandle_t handle, cublasFillMode_t uplo,     \
                                          int n, T *A, int lda, T *work, int lwork,            \
                                          int *info);                                          \
    cusolverStatus_t cusolverDn##P##geqrf_bufferSize(cusolverDnHandle_t handle, int m, int n,   \
                                                     T *A, int lda, int *lwork);               \
    cusolverStatus_t cusolverDn##P##geqrf(cusolverDnHandle_t handle, int m, int n, T *A,        \
                                          int lda, T *TAU, T *work, int lwork, int *info);     \
    cusolverStatus_t cusolverDn##P##orgqr_bufferSize(cusolverDnHandle_t handle, int m, int n,   \
                                                     int k, const T *A, int lda, const T *tau, \
                                                     int *lwork);                              \
    cusolverStatus_t cusolverDn##P##orgqr(cusolverDnHandle_t handle, int m, int n, int k, T *A, \
                                          int lda, const T *tau, T *work, int lwork,           \
                                          int *info);                                          \
    cusolverStatus_t cusolverDn##P##gesvdjBatched_bufferSize(                                  \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, int m, int n, const T *A, int lda,  \
        const T *S, const T *U, int ldu, const T *V, int ldv, int *lwork, gesvdjInfo_t params, \
        int batchSize);                                                                        \
    cusolverStatus_t cusolverDn##P##gesvdjBatched(                                             \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, int m, int n, T *A, int lda, T *S,  \
        T *U, int ldu, T *V, int ldv, T *work, int lwork, int *info, gesvdjInfo_t params,      \
        int batchSize);                                                                        \
    cusolverStatus_t cusolverDn##P##syevjBatched_bufferSize(                                   \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,       \
        const T *A, int lda, const T *W, int *lwork, syevjInfo_t params, int batchSize);       \
    cusolverStatus_t cusolverDn##P##syevjBatched(                                              \
        cusolverDnHandle_t handle, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, T *A, \
        int lda, T *W, T *work, int lwork, int *info, syevjInfo_t params, int batchSize);
PNSIM_SOLVER_DECLS(float, S)
PNSIM_SOLVER_DECLS(double, D)
#undef PNSIM_SOLVER_DECLS

#endif /* PONTE_BACKEND_CUDA_SIM_CUSOLVER_SIM_H */
