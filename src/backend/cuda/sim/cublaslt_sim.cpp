/* cublaslt_sim.cpp — the simulated cuBLASLt (cublaslt_sim.h): descriptors as plain structs,
 * validation with cuBLASLt's statuses at the call, and a reference matmul on the host in
 * stream order (pnsim_library_run): each batch's op(A) and op(B) are converted to double (complex:
 * pairs) once, every element of D is a double-accumulated dot product, plus beta C, plus the
 * epilogue's bias (per row of D), through its activation, rounded to D's type. */
#include <math.h>
#include <new>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "backend/cuda/sim/cublaslt_sim.h"
#include "backend/cuda/sim/sim_internal.h"

/* Algorithms the simulated heuristic offers (the first `requested` of them): each the same
 * reference product, numbered in algo.data[0]; PONTE_SIM_LT_PASSES (sim_passes) can make one
 * slower than another, for the tests of autotuning. Algorithm i asks for a workspace of
 * (i + 1) x SIM_WORKSPACE_STEP bytes when the preference's limit allows it (as split-K
 * algorithms do on hardware), none otherwise: the need rides in algo.data[1], a call given less
 * fails with CUBLAS_STATUS_INVALID_VALUE, and the workspace is written when the call runs. */
#define SIM_ALGOS 3
#define SIM_WORKSPACE_STEP ((uint64_t)64 << 10)

/* cublasLtMatmul calls per algorithm number (a test hook: which algorithm a plan runs). */
extern "C" long long pnsim_lt_algo_calls[SIM_ALGOS];
long long pnsim_lt_algo_calls[SIM_ALGOS];

struct pnsim_lt_context {
    int dev; /* the device current at cublasLtCreate */
};
struct pnsim_lt_matmul_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t opa, opb;
    uint32_t epilogue;
    const void *bias;
    int64_t bias_stride;
    int32_t bias_type; /* -1: D's type */
};
struct pnsim_lt_layout {
    cudaDataType_t type;
    int64_t rows, cols, ld;
    int32_t batch;
    int64_t stride;
};
struct pnsim_lt_preference {
    uint64_t workspace;
};

/* ───────────────────────────── descriptors ───────────────────────────── */

const char *cublasLtGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "<unknown>";
}

/* A new T (zeroed) into *out: SUCCESS, INVALID_VALUE for a NULL out, ALLOC_FAILED. */
template <typename T> static cublasStatus_t create(T **out)
{
    if (!out) return CUBLAS_STATUS_INVALID_VALUE;
    *out = new (std::nothrow) T();
    return *out ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

/* Copies the attribute value at buf into v when size matches. */
template <typename V> static cublasStatus_t set(V *v, const void *buf, size_t size)
{
    if (!buf || size != sizeof *v) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(v, buf, sizeof *v);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle)
{
    cublasStatus_t st = create(handle);
    if (st == CUBLAS_STATUS_SUCCESS) (*handle)->dev = pnsim_current_device();
    return st;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

static bool known_type(cudaDataType_t t)
{
    return t == CUDA_R_16F || t == CUDA_R_16BF || t == CUDA_R_32F || t == CUDA_R_64F ||
           t == CUDA_C_32F;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld)
{
    if (!known_type(type) || rows > (uint64_t)INT64_MAX || cols > (uint64_t)INT64_MAX || ld < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = create(layout);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    (*layout)->type = type;
    (*layout)->rows = (int64_t)rows, (*layout)->cols = (int64_t)cols, (*layout)->ld = ld;
    (*layout)->batch = 1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout)
{
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size)
{
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set(&layout->batch, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return set(&layout->stride, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType_t scale)
{
    if (!known_type(scale)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = create(desc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    (*desc)->compute = compute, (*desc)->scale = scale;
    (*desc)->opa = (*desc)->opb = CUBLAS_OP_N;
    (*desc)->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    (*desc)->bias_type = -1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc)
{
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void *buf,
                                              size_t size)
{
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    int32_t op;
    uint32_t epi;
    cublasStatus_t st;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        st = set(&op, buf, size);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
        if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->opa : desc->opb) = (cublasOperation_t)op;
        return st;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        st = set(&epi, buf, size);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
        switch (epi) {
        case CUBLASLT_EPILOGUE_DEFAULT:
        case CUBLASLT_EPILOGUE_RELU:
        case CUBLASLT_EPILOGUE_BIAS:
        case CUBLASLT_EPILOGUE_RELU_BIAS:
        case CUBLASLT_EPILOGUE_GELU:
        case CUBLASLT_EPILOGUE_GELU_BIAS: desc->epilogue = epi; return st;
        }
        return CUBLAS_STATUS_INVALID_VALUE; /* (AUX / gradient epilogues: not simulated) */
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set(&desc->bias, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return set(&desc->bias_stride, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set(&desc->bias_type, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
{
    return create(pref);
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
{
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size)
{
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    uint32_t align;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set(&pref->workspace, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set(&align, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

/* ───────────────────────────── validation ───────────────────────────── */

/* Whether the problem is one cuBLASLt takes: one storage type throughout, matching the compute
 * and scale types; op(A) (m, k), op(B) (k, n), C and D (m, n); leading dimensions at least the
 * rows; equal batch counts, D's batches apart. */
static cublasStatus_t check(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                            cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                            cublasLtMatrixLayout_t d)
{
    if (!desc || !a || !b || !c || !d) return CUBLAS_STATUS_INVALID_VALUE;
    cudaDataType_t t = d->type;
    if (a->type != t || b->type != t || c->type != t) return CUBLAS_STATUS_NOT_SUPPORTED;
    bool ok;
    switch (t) {
    case CUDA_R_16F:
    case CUDA_R_16BF:
    case CUDA_R_32F:
        ok = (desc->compute == CUBLAS_COMPUTE_32F || desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32) &&
             desc->scale == CUDA_R_32F;
        break;
    case CUDA_R_64F: ok = desc->compute == CUBLAS_COMPUTE_64F && desc->scale == CUDA_R_64F; break;
    case CUDA_C_32F: ok = desc->compute == CUBLAS_COMPUTE_32F && desc->scale == CUDA_C_32F; break;
    default: ok = false;
    }
    if (!ok) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        /* the bias has D's type (the documented exceptions are integer and fp8 kernels) */
        if (t == CUDA_R_64F || t == CUDA_C_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
        if ((desc->epilogue & CUBLASLT_EPILOGUE_BIAS) && desc->bias_type != -1 &&
            desc->bias_type != (int32_t)t)
            return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    int64_t m = d->rows, n = d->cols;
    int64_t am = desc->opa == CUBLAS_OP_N ? a->rows : a->cols;
    int64_t k = desc->opa == CUBLAS_OP_N ? a->cols : a->rows;
    int64_t bk = desc->opb == CUBLAS_OP_N ? b->rows : b->cols;
    int64_t bn = desc->opb == CUBLAS_OP_N ? b->cols : b->rows;
    if (am != m || bk != k || bn != n || c->rows != m || c->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasLtMatrixLayout_t all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        if (all[i]->ld < (all[i]->rows > 1 ? all[i]->rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
        if (all[i]->batch != d->batch || all[i]->stride < 0) return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (d->batch < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->batch > 1 && d->stride == 0) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc,
                                              cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc,
                                              cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *returned)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    cublasStatus_t st = check(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const int n = requested < SIM_ALGOS ? requested : SIM_ALGOS;
    for (int i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        const uint64_t need = (uint64_t)(i + 1) * SIM_WORKSPACE_STEP;
        results[i].algo.data[0] = (uint64_t)i;
        results[i].algo.data[1] = pref->workspace >= need ? need : 0;
        results[i].workspaceSize = (size_t)results[i].algo.data[1];
        results[i].state = CUBLAS_STATUS_SUCCESS;
        results[i].wavesCount = 1.0f;
    }
    *returned = n;
    return CUBLAS_STATUS_SUCCESS;
}

/* How many times algorithm `algo` computes its product: the entry of PONTE_SIM_LT_PASSES
 * ("p0,p1,...", one per algorithm number) or 1. */
static int sim_passes(const cublasLtMatmulAlgo_t *algo)
{
    const char *e = getenv("PONTE_SIM_LT_PASSES");
    const uint64_t number = algo ? algo->data[0] : 0;
    for (uint64_t i = 0; e && *e; i++) {
        if (i == number) {
            int v = atoi(e);
            return v > 0 ? v : 1;
        }
        e = strchr(e, ',');
        if (e) e++;
    }
    return 1;
}

/* ───────────────────────────── the reference matmul ───────────────────────────── */

/* x rounded to TF32 (10 explicit mantissa bits; to nearest, ties away from zero, as the
 * hardware's conversion), kept in a float. Inf and NaN pass through. */
static float to_tf32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&x, &u, sizeof u);
    return x;
}

/* A complex value in double (real types leave im 0). */
struct pnsim_cd {
    double re, im;
};

static pnsim_cd load(cudaDataType_t t, const void *base, int64_t i)
{
    switch (t) {
    case CUDA_R_16F: return {pnC_f16_to_f32(((const pn_float16 *)base)[i]), 0.0};
    case CUDA_R_16BF: return {pnC_bf16_to_f32(((const pn_bfloat16 *)base)[i]), 0.0};
    case CUDA_R_32F: return {((const float *)base)[i], 0.0};
    case CUDA_R_64F: return {((const double *)base)[i], 0.0};
    case CUDA_C_32F: return {((const float *)base)[2 * i], ((const float *)base)[2 * i + 1]};
    case CUDA_C_64F: return {((const double *)base)[2 * i], ((const double *)base)[2 * i + 1]};
    }
    return {0.0, 0.0};
}

static void store(cudaDataType_t t, void *base, int64_t i, pnsim_cd v)
{
    switch (t) {
    case CUDA_R_16F: ((pn_float16 *)base)[i] = pnC_f32_to_f16((float)v.re); return;
    case CUDA_R_16BF: ((pn_bfloat16 *)base)[i] = pnC_f32_to_bf16((float)v.re); return;
    case CUDA_R_32F: ((float *)base)[i] = (float)v.re; return;
    case CUDA_R_64F: ((double *)base)[i] = v.re; return;
    case CUDA_C_32F:
        ((float *)base)[2 * i] = (float)v.re, ((float *)base)[2 * i + 1] = (float)v.im;
        return;
    case CUDA_C_64F: ((double *)base)[2 * i] = v.re, ((double *)base)[2 * i + 1] = v.im; return;
    }
}

static size_t type_size(cudaDataType_t t)
{
    switch (t) {
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    case CUDA_R_32F: return 4;
    case CUDA_R_64F:
    case CUDA_C_32F: return 8;
    case CUDA_C_64F: return 16;
    }
    return 0;
}

/* x after the epilogue's activation (the bias is already in). */
static double activate(uint32_t epilogue, double x)
{
    if (epilogue & CUBLASLT_EPILOGUE_RELU) return x > 0.0 ? x : (x == x ? 0.0 : x);
    if (epilogue & CUBLASLT_EPILOGUE_GELU) {
        const double k = 0.7978845608028654; /* sqrt(2 / pi) */
        return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
    return x;
}

/* A scalar of the scale type at host pointer p. */
static pnsim_cd scalar(cudaDataType_t scale, const void *p)
{
    return scale == CUDA_R_16F || scale == CUDA_R_16BF ? pnsim_cd{0, 0} : load(scale, p, 0);
}

/* dst (rows, k), row r contiguous, = the matrix whose element (r, l) is at x[r * sr + l * sl]. */
static void gather(pnsim_cd *dst, cudaDataType_t t, const void *x, int64_t rows, int64_t k,
                   int64_t sr, int64_t sl)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t l = 0; l < k; l++) dst[r * k + l] = load(t, x, r * sr + l * sl);
}

/* D = activation(alpha op(A) op(B) + beta C + bias) for every batch (C NULL: beta is 0), the
 * problem checked by check(). A slow algorithm computes every batch `passes` times and stores
 * the last (D may be C). */
static cublasStatus_t reference_matmul(const pnsim_lt_matmul_desc *desc, pnsim_cd al,
                                       const void *A, const pnsim_lt_layout *Adesc,
                                       const void *B, const pnsim_lt_layout *Bdesc, pnsim_cd be,
                                       const void *C, const pnsim_lt_layout *Cdesc, void *D,
                                       const pnsim_lt_layout *Ddesc, int64_t passes)
{
    cudaDataType_t t = Ddesc->type;
    size_t es = type_size(t);
    bool cplx = t == CUDA_C_32F;
    const bool read_c = C != NULL;
    const bool has_bias = (desc->epilogue & CUBLASLT_EPILOGUE_BIAS) != 0;
    int64_t m = Ddesc->rows, n = Ddesc->cols;
    int64_t k = desc->opa == CUBLAS_OP_N ? Adesc->cols : Adesc->rows;
    /* op(A) row i, element l: A[i + l lda] (N) or A[l + i lda] (T); op(B) column j, element l:
     * B[l + j ldb] (N) or B[j + l ldb] (T) */
    int64_t a_si = desc->opa == CUBLAS_OP_N ? 1 : Adesc->ld, a_sl = desc->opa == CUBLAS_OP_N ? Adesc->ld : 1;
    int64_t b_sj = desc->opb == CUBLAS_OP_N ? Bdesc->ld : 1, b_sl = desc->opb == CUBLAS_OP_N ? 1 : Bdesc->ld;
    pnsim_cd *ar = new (std::nothrow) pnsim_cd[(size_t)(m * k) + 1];
    pnsim_cd *bc = new (std::nothrow) pnsim_cd[(size_t)(n * k) + 1];
    if (!ar || !bc) {
        delete[] ar;
        delete[] bc;
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    volatile double sink = 0;
    for (int64_t pass_bi = 0; pass_bi < passes * Ddesc->batch; pass_bi++) {
        const int64_t bi = pass_bi % Ddesc->batch;
        const bool last = pass_bi >= (passes - 1) * Ddesc->batch;
        const char *a = (const char *)A + (size_t)(bi * Adesc->stride) * es;
        const char *b = (const char *)B + (size_t)(bi * Bdesc->stride) * es;
        const char *c = read_c ? (const char *)C + (size_t)(bi * Cdesc->stride) * es : NULL;
        char *d = (char *)D + (size_t)(bi * Ddesc->stride) * es;
        const char *bias = has_bias ? (const char *)desc->bias + (size_t)(bi * desc->bias_stride) * es
                                    : NULL;
        gather(ar, t, a, m, k, a_si, a_sl);
        gather(bc, t, b, n, k, b_sj, b_sl);
        if (desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32) { /* the tensor cores' inputs */
            for (int64_t i = 0; i < m * k; i++) ar[i].re = to_tf32((float)ar[i].re);
            for (int64_t i = 0; i < n * k; i++) bc[i].re = to_tf32((float)bc[i].re);
        }
        for (int64_t j = 0; j < n; j++) {
            for (int64_t i = 0; i < m; i++) {
                const pnsim_cd *x = ar + i * k, *y = bc + j * k;
                pnsim_cd s = {0.0, 0.0}, r;
                if (cplx) {
                    for (int64_t l = 0; l < k; l++) {
                        s.re += x[l].re * y[l].re - x[l].im * y[l].im;
                        s.im += x[l].re * y[l].im + x[l].im * y[l].re;
                    }
                } else {
                    for (int64_t l = 0; l < k; l++) s.re += x[l].re * y[l].re;
                }
                r.re = al.re * s.re - al.im * s.im, r.im = al.re * s.im + al.im * s.re;
                if (read_c) {
                    pnsim_cd cv = load(t, c, i + j * Cdesc->ld);
                    r.re += be.re * cv.re - be.im * cv.im, r.im += be.re * cv.im + be.im * cv.re;
                }
                if (bias) r.re += load(t, bias, i).re; /* real types only (checked) */
                r.re = activate(desc->epilogue, r.re);
                if (last) store(t, d, i + j * Ddesc->ld, r);
                else sink = sink + r.re;
            }
        }
    }
    delete[] ar;
    delete[] bc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                              cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                              cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSize, cudaStream_t stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    /* the handle's device must be current, and the stream its */
    if (!pnsim_library_device_ok(handle->dev, stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (!alpha || !beta || !A || !B || !D) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = check(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    pnsim_cd al = scalar(desc->scale, alpha), be = scalar(desc->scale, beta);
    bool read_c = be.re != 0.0 || be.im != 0.0;
    if (read_c && !C) return CUBLAS_STATUS_INVALID_VALUE;
    const bool has_bias = (desc->epilogue & CUBLASLT_EPILOGUE_BIAS) != 0;
    if (has_bias && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
    const uint64_t number = algo ? algo->data[0] : 0;
    if (algo && (workspaceSize < algo->data[1] || (algo->data[1] && !workspace)))
        return CUBLAS_STATUS_INVALID_VALUE; /* less workspace than the algorithm needs */
    if (number < SIM_ALGOS) __atomic_fetch_add(&pnsim_lt_algo_calls[number], 1, __ATOMIC_RELAXED);
    const int64_t passes = sim_passes(algo);
    /* the descriptors by value: the caller may destroy them once the call returns */
    const pnsim_lt_matmul_desc dc = *desc;
    const pnsim_lt_layout la = *Adesc, lb = *Bdesc, lc = *Cdesc, ld = *Ddesc;
    return pnsim_library_run(stream, CUBLAS_STATUS_SUCCESS, [=] {
        if (!pnsim_library_scratch(workspace, workspaceSize)) return CUBLAS_STATUS_EXECUTION_FAILED;
        return reference_matmul(&dc, al, A, &la, B, &lb, be, read_c ? C : NULL, &lc, D, &ld,
                                passes);
    });
}

