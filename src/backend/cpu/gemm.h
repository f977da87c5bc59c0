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

/* Params of the Matmul and AddMM primitives (src/ops/linalg.c): out = alpha * a @ b, plus
 * beta * c for AddMM. Shared with the GPU eval (src/backend/cuda/gemm.c). */
typedef struct pnK_gemm_params {
    double alpha, beta;
} pnK_gemm_params;

/* One GEMM operand of a batched product as a BLAS-style kernel sees it (either backend): the
 * element pointer (pnC_data: host or device), the layout of its matrices (row-major with row
 * stride ld, or transposed with column stride ld) and its element stride per output batch dim
 * (0 where broadcast). owned is a contiguous copy made when the strides fit neither layout. */
typedef struct pnK_gemm_operand {
    pn_array *owned;
    const char *data;
    bool trans;
    int64_t ld;
    int64_t bstrides[PNC_MAX_NDIM];
} pnK_gemm_operand;

/* Fills op for x (rank >= 2) in a product whose output has nb batch dims; copies x to a
 * contiguous temporary (on the evaluating device) when its matrix strides need it. Returns 0,
 * or -1 with an error (out of memory). Release with pnK_gemm_operand_release. */
int pnK_gemm_operand_init(pnK_gemm_operand *op, pn_array *x, int nb);
void pnK_gemm_operand_release(pnK_gemm_operand *op);
/* Whether every batch of a (not transposed) folds into the rows of one GEMM of M rows per
 * batch: its (batch..., M) rows are equally spaced by ld. */
bool pnK_gemm_batch_folds(const pnK_gemm_operand *a, const int64_t *bshape, int nb, int64_t M);

#endif /* PONTE_BACKEND_CPU_GEMM_H */
