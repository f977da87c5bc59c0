/* gemm.h — launchers of the GPU matrix products, called by the C glue of matmul / addmm
 * (gemm.c) and of Convolution (conv.c): a strided-batched GEMM through cuBLASLt (optionally with a
 * fused bias / ReLU / GELU epilogue) and the scaling
 * of a matrix for the K == 0 case (gemm.cu), the convolution kernels: im2col and a direct kernel
 * for depthwise convolutions (conv.cu). All pointers are device memory; every launcher queues
 * its work on a Ponte stream index and returns 0, -1 with an error, or PNG_UNSUPPORTED. */
#ifndef PONTE_BACKEND_CUDA_GEMM_H
#define PONTE_BACKEND_CUDA_GEMM_H

#include "backend/cuda/gpu.h"
#include "backend/conv_geom.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row-major C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b < batch, as pnK_gemm
 * (backend/cpu/gemm.h) for one matrix: op(A) is (M, K), stored (M, K) with row stride lda or
 * (K, M) when transA; op(B) is (K, N), stored (K, N) with row stride ldb or (N, K) when transB;
 * C is (M, N) with row stride ldc. X[b] starts stride_x elements after X[b - 1] (0: one matrix
 * shared by the whole batch; stride_c must not be 0 when batch > 1). dtype is float16,
 * bfloat16, float32, float64 or complex64; halves accumulate in float32, float32 keeps full
 * precision (no TF32). When beta == 0, C is not read. M, N >= 1 and K >= 1 (K == 0: see
 * pnG_gemm_scale). Returns PNG_UNSUPPORTED for another dtype or when cuBLASLt has no
 * algorithm for the case. */
int pnG_gemm(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
             double alpha, const void *A, int64_t lda, int64_t stride_a, const void *B,
             int64_t ldb, int64_t stride_b, double beta, void *C, int64_t ldc, int64_t stride_c,
             int64_t batch, int stream);

/* What a GEMM applies to alpha * op(A) op(B) + beta * C before storing it (cuBLASLt's fused
 * epilogues): nothing, or + bias[j] on every element of column j (of every row and batch),
 * then optionally ReLU (max(x, 0)) or GELU in its tanh form. */
typedef enum pnG_epilogue {
    PNG_EPI_NONE,
    PNG_EPI_BIAS,
    PNG_EPI_RELU_BIAS,
    PNG_EPI_GELU_BIAS,
} pnG_epilogue;

/* pnG_gemm with an epilogue: bias (device memory) holds N elements of dtype, packed, 16-byte
 * aligned, shared by the whole batch (NULL for PNG_EPI_NONE). Epilogues other than
 * PNG_EPI_NONE take float16, bfloat16 and float32 only; PNG_UNSUPPORTED for other dtypes or
 * when cuBLASLt has no algorithm for the fused form (C may then be partly written: the caller
 * redoes the product unfused). */
int pnG_gemm_ex(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                double alpha, const void *A, int64_t lda, int64_t stride_a, const void *B,
                int64_t ldb, int64_t stride_b, double beta, void *C, int64_t ldc,
                int64_t stride_c, int64_t batch, pnG_epilogue epilogue, const void *bias,
                int stream);

/* How many cuBLASLt matmuls ran with a fused epilogue since the process started (a test and
 * benchmark hook: the conformance test checks that addmm's broadcast bias took the fused path). */
int64_t pnG_gemm_epilogue_count(void);

/* Autotuning of the GEMM plans: when on, the first call of each problem shape (a plan) whose
 * 2 M N K batch reaches min_flops times the best few of cuBLASLt's heuristic algorithms on its
 * operands (the host waits for that once) and keeps the fastest; off (the default, unless
 * PONTE_GEMM_TUNE=1[,min_flops] is set), the heuristic's first. min_flops < 0 keeps the current
 * threshold (1e10 unless set). Tuned and untuned plans of a shape are cached apart, so turning
 * it off and on again re-tunes nothing. */
void pnG_gemm_set_tuning(bool on, double min_flops);

/* How many plans have been tuned since the process started, and (last_pick, may be NULL) the
 * heuristic's index of the algorithm the last tuning chose (a test and benchmark hook). */
int64_t pnG_gemm_tuned_count(int *last_pick);

/* C = beta * C for the row-major (rows, cols) matrix C with row stride ldc, of an inexact
 * dtype; beta == 0 writes zeros without reading C (NaN there does not survive). */
int pnG_gemm_scale(pn_dtype dtype, int64_t rows, int64_t cols, double beta, void *C,
                   int64_t ldc, int stream);

/* The geometry of a convolution (backend/cpu/conv.h semantics), spatial axes padded to three
 * leading axes of extent 1 so that one kernel serves 1-, 2- and 3-d. The input x is the
 * row-contiguous (N, in..., C), the weight w the row-contiguous (O, k..., Cg), the output the
 * row-contiguous (N, out..., O). */
typedef pnK_conv_geom pnG_conv_geom; /* backend/conv_geom.h: one geometry for both backends */

/* Writes rows [r0, r0 + m) of the im2col matrix of x (a floating dtype) into col (row-major,
 * m rows of G * KP * Cg elements: for each group g a block of KP taps of its Cg channels; taps on
 * padding or between dilated elements are zeros). Row r is output position r over (N, out...). */
int pnG_conv_im2col(pn_dtype dtype, const pnG_conv_geom *g, const void *x, void *col,
                    int64_t r0, int64_t m, int stream);

/* The whole convolution of x and w into out, one thread per output element summing its
 * KP * Cg products (accumulating in float for halves): for grouped convolutions with small
 * groups (depthwise), where a GEMM per group would be tiny. */
int pnG_conv_direct(pn_dtype dtype, const pnG_conv_geom *g, const void *x, const void *w,
                    void *out, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_GEMM_H */
