/* gemm.h — the CPU general matrix multiply behind matmul and addmm: one entry point for every
 * inexact dtype. float32/float64/complex64 go to OpenBLAS; float16/bfloat16 run Ponte's own
 * blocked kernel that converts panels to float while packing and accumulates in float. */
#ifndef PONTE_BACKEND_CPU_GEMM_H
#define PONTE_BACKEND_CPU_GEMM_H

#include "core/core.h"

/* Row-major C = alpha * op(A) @ op(B) + beta * C, with op(A) of shape (M, K) and op(B) of shape
 * (K, N). A is stored (M, K) with row stride lda, or (K, M) when transA; B is stored (K, N)
 * with row stride ldb, or (N, K) when transB; C is (M, N) with row stride ldc. All matrices
 * hold elements of dtype (float16, bfloat16, float32, float64 or complex64). When beta == 0,
 * C is not read (it may hold garbage or NaN). K == 0 gives beta * C. Runs on the calling
 * thread plus OpenMP / OpenBLAS threads; nested inside an OpenMP region it stays on one.
 * Returns 0, or -1 with an error (unsupported dtype, extents too large for BLAS, out of
 * memory). */
int pnK_gemm(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
             double alpha, const void *A, int64_t lda, const void *B, int64_t ldb, double beta,
             void *C, int64_t ldc);

#endif /* PONTE_BACKEND_CPU_GEMM_H */
