/* gemm.cu — the GPU GEMM behind matmul, addmm and convolution: row-major products mapped onto
 * cuBLASLt's column-major matmul (strided batches, transposes through the layouts, f16/bf16 on
 * tensor cores accumulating in f32, f32 through TF32 tensor cores unless pn_tf32_enabled() says
 * no, f64, complex64; fused bias / ReLU / GELU epilogues for the real half and f32 types), with
 * a handle per GPU and a cache of plans (descriptors plus the heuristic's algorithm) per GPU and
 * problem shape. With PONTE_GPU_SIM the same code calls the simulated cuBLASLt
 * (sim/cublaslt_sim.h). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/gemm.h"

#ifdef PONTE_GPU_SIM
#include "backend/cuda/sim/cublaslt_sim.h"
#else
#include <cublasLt.h>
#endif

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Most workspace one matmul may use (what NVIDIA recommends for Hopper; the simulated
 * heuristic's algorithms ask for some of it too). */
#define GEMM_MAX_WORKSPACE ((uint64_t)32 << 20)
/* Largest batch of one cuBLASLt call (bigger batches go in chunks). */
#define GEMM_MAX_BATCH 65535
/* Plans kept (open addressing; when full, further shapes build a plan per call). */
#define GEMM_PLANS 1024
/* Autotuning: how many of the heuristic's algorithms are timed, and how many runs of each are
 * timed (after one untimed run). */
#define GEMM_TUNE_CANDIDATES 8
#define GEMM_TUNE_REPS 3

/* ───────────────────────────── types and the handle ───────────────────────────── */

/* cuBLASLt's storage, compute and scale types of a Ponte dtype (float32 through TF32 tensor
 * cores when tf32); false for other dtypes. */
static bool gemm_types(pn_dtype t, bool tf32, cudaDataType_t *data, cublasComputeType_t *compute,
                       cudaDataType_t *scale)
{
    if (t == PN_FLOAT32 && tf32) {
        *data = CUDA_R_32F, *compute = CUBLAS_COMPUTE_32F_FAST_TF32, *scale = CUDA_R_32F;
        return true;
    }
    switch (t) {
    case PN_FLOAT16: *data = CUDA_R_16F, *compute = CUBLAS_COMPUTE_32F, *scale = CUDA_R_32F; return true;
    case PN_BFLOAT16: *data = CUDA_R_16BF, *compute = CUBLAS_COMPUTE_32F, *scale = CUDA_R_32F; return true;
    case PN_FLOAT32: *data = CUDA_R_32F, *compute = CUBLAS_COMPUTE_32F, *scale = CUDA_R_32F; return true;
    case PN_FLOAT64: *data = CUDA_R_64F, *compute = CUBLAS_COMPUTE_64F, *scale = CUDA_R_64F; return true;
    case PN_COMPLEX64: *data = CUDA_C_32F, *compute = CUBLAS_COMPUTE_32F, *scale = CUDA_C_32F; return true;
    default: return false;
    }
}

/* One handle per GPU (a handle belongs to the device current at its creation), made on the
 * GPU's first GEMM. */
static pthread_once_t handle_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t handle_lock = PTHREAD_MUTEX_INITIALIZER;
static cublasLtHandle_t handles[PNG_MAX_DEVICES];

/* Autotuning (pnG_gemm_set_tuning; PONTE_GEMM_TUNE=1 turns it on, a number after a comma sets
 * the least flops, e.g. PONTE_GEMM_TUNE=1,1e9): 0 off, 1 on for plans of at least tune_min_flops
 * (2 m n k batch). Read when a GEMM makes its plan key: tuned and untuned plans of one shape are
 * kept apart. */
static int tune_on;
static double tune_min_flops = 1e10;
static int64_t tune_count;  /* plans tuned (atomic builtins) */
static int tune_last_pick; /* the index the last tuning chose */

/* Reads PONTE_GEMM_TUNE (once). */
static void handle_create(void)
{
    const char *e = getenv("PONTE_GEMM_TUNE");
    if (e && *e) {
        tune_on = atoi(e) != 0;
        const char *comma = strchr(e, ',');
        if (comma && atof(comma + 1) >= 0) tune_min_flops = atof(comma + 1);
    }
}

/* Records a cuBLASLt failure and returns -1. */
static int lt_fail(const char *what, cublasStatus_t st)
{
    pn_set_error(PN_ERR_BACKEND, "[cublasLt] %s failed: %s (%d)", what, cublasLtGetStatusString(st),
                 (int)st);
    return -1;
}

/* The handle of gpu:device, the current device (made on first use). NULL with an error. */
static cublasLtHandle_t lt_handle(int device)
{
    pthread_once(&handle_once, handle_create);
    if (device < 0 || device >= PNG_MAX_DEVICES) {
        pn_set_error(PN_ERR_BACKEND, "[cublasLt] No handle for GPU %d.", device);
        return NULL;
    }
    pthread_mutex_lock(&handle_lock);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (!handles[device]) st = cublasLtCreate(&handles[device]);
    cublasLtHandle_t h = st == CUBLAS_STATUS_SUCCESS ? handles[device] : NULL;
    if (!h) handles[device] = NULL;
    pthread_mutex_unlock(&handle_lock);
    if (!h) lt_fail("cublasLtCreate", st);
    return h;
}

#define LT_CHECK(call)                                                                         \
    do {                                                                                       \
        cublasStatus_t lt_st_ = (call);                                                        \
        if (lt_st_ != CUBLAS_STATUS_SUCCESS) return lt_fail(#call, lt_st_);                   \
    } while (0)

/* ───────────────────────────── plans ───────────────────────────── */

/* Everything the descriptors and the heuristic depend on; compared with memcmp, so always
 * built from a zeroed struct. Extents are cuBLASLt's (column-major): D is (m, n). */
typedef struct plan_key {
    int32_t device; /* the GPU: its handle, and the heuristic's choice for its architecture */
    int32_t dtype, tf32, opa, opb, tuned; /* tuned: plan_tuned when the key was made */
    uint32_t align_a, align_b, align_c, epilogue; /* epilogue: a cublasLtEpilogue_t */
    int64_t m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
} plan_key;

typedef struct plan {
    plan_key key;
    bool used;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
} plan;

static pthread_mutex_t plans_lock = PTHREAD_MUTEX_INITIALIZER;
static plan plans[GEMM_PLANS];

static void plan_destroy(plan *p)
{
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    p->op = NULL, p->a = p->b = p->c = NULL;
}

/* A column-major (rows, cols) layout with leading dimension ld, batched. */
static cublasStatus_t layout_create(cublasLtMatrixLayout_t *l, cudaDataType_t t, int64_t rows,
                                    int64_t cols, int64_t ld, int64_t batch, int64_t stride)
{
    cublasStatus_t st = cublasLtMatrixLayoutCreate(l, t, (uint64_t)rows, (uint64_t)cols, ld);
    if (st != CUBLAS_STATUS_SUCCESS || batch == 1) return st;
    int32_t count = (int32_t)batch;
    st = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                            sizeof stride);
}

/* A matmul descriptor for k: transposes, and k's epilogue reading the bias vector at bias (of
 * D's type, one per row of the column-major D, shared by every batch). *what names the failed
 * step. */
static cublasStatus_t desc_create(cublasLtMatmulDesc_t *op, const plan_key *k,
                                  cublasComputeType_t compute, cudaDataType_t scale,
                                  const void *bias, const char **what)
{
    cublasOperation_t opa = (cublasOperation_t)k->opa, opb = (cublasOperation_t)k->opb;
    cublasStatus_t st = cublasLtMatmulDescCreate(op, compute, scale);
    *what = "cublasLtMatmulDescCreate";
#define DESC_STEP(call)                                                                        \
    if (st == CUBLAS_STATUS_SUCCESS) st = (call), *what = #call
    DESC_STEP(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    DESC_STEP(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (k->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        uint32_t epi = k->epilogue;
        int64_t bias_stride = 0; /* one vector for every batch */
        DESC_STEP(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        DESC_STEP(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                 sizeof bias));
        DESC_STEP(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                 &bias_stride, sizeof bias_stride));
    }
#undef DESC_STEP
    if (st != CUBLAS_STATUS_SUCCESS && *op) {
        cublasLtMatmulDescDestroy(*op);
        *op = NULL;
    }
    return st;
}

/* The operands of the call that builds a plan (what autotuning runs on). */
typedef struct gemm_operands {
    const void *alpha, *beta; /* gemm_scalar */
    const void *A, *B, *C;
    cudaStream_t cs;
    int stream;
} gemm_operands;

/* Whether a plan for k is tuned: tuning on and 2 m n k batch >= tune_min_flops. */
static bool plan_tuned(const plan_key *k)
{
    double least;
    __atomic_load(&tune_min_flops, &least, __ATOMIC_RELAXED);
    return __atomic_load_n(&tune_on, __ATOMIC_RELAXED) &&
           2.0 * (double)k->m * (double)k->n * (double)k->k * (double)k->batch >= least;
}

/* The index of the fastest of the heuristic's n algorithms res[] for p's descriptors, timed on
 * the building call's operands o: each runs once untimed, then GEMM_TUNE_REPS times between two
 * events, writing a scratch D (C is read as the call reads it, never written). The host waits
 * for the timings. Tuning never fails a GEMM: without scratch memory or events, or for an
 * algorithm that fails, the heuristic's order stands (index 0 when nothing could be timed), and
 * no error is left behind. */
static int plan_tune(const plan *p, const cublasLtMatmulHeuristicResult_t *res, int n,
                     const gemm_operands *o)
{
    const plan_key *k = &p->key;
    const bool had_error = pn_last_error() != PN_OK;
    const size_t es = pn_dtype_size((pn_dtype)k->dtype);
    const size_t d_bytes = (size_t)((k->batch - 1) * k->stride_c + (k->n - 1) * k->ldc + k->m) * es;
    size_t ws_bytes = 0;
    for (int i = 0; i < n; i++)
        if (res[i].workspaceSize > ws_bytes) ws_bytes = res[i].workspaceSize;
    void *d = pnG_malloc(d_bytes, o->stream);
    void *ws = d && ws_bytes ? pnG_malloc(ws_bytes, o->stream) : NULL;
    cudaEvent_t ev[2] = {NULL, NULL};
    int best = 0;
    float best_ms = INFINITY;
    if (d && (ws || !ws_bytes) && cudaEventCreate(&ev[0]) == cudaSuccess &&
        cudaEventCreate(&ev[1]) == cudaSuccess) {
        for (int i = 0; i < n; i++) {
            cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
            for (int r = 0; r <= GEMM_TUNE_REPS && st == CUBLAS_STATUS_SUCCESS; r++) {
                if (r == 1) cudaEventRecord(ev[0], o->cs);
                st = cublasLtMatmul(handles[k->device], p->op, o->alpha, o->A, p->a, o->B, p->b, o->beta,
                                    o->C, p->c, d, p->c, &res[i].algo, ws,
                                    res[i].workspaceSize, o->cs);
            }
            float ms = INFINITY;
            if (st == CUBLAS_STATUS_SUCCESS && cudaEventRecord(ev[1], o->cs) == cudaSuccess &&
                cudaEventSynchronize(ev[1]) == cudaSuccess &&
                cudaEventElapsedTime(&ms, ev[0], ev[1]) == cudaSuccess && ms < best_ms)
                best = i, best_ms = ms;
        }
    }
    for (int e = 0; e < 2; e++)
        if (ev[e]) cudaEventDestroy(ev[e]);
    if (ws) pnG_free(ws, ws_bytes, o->stream);
    if (d) pnG_free(d, d_bytes, o->stream);
    (void)cudaGetLastError(); /* a failed event or run is not the GEMM's error */
    if (!had_error && pn_last_error() != PN_OK) pn_clear_error();
    return best;
}

/* Builds p's descriptors and asks the heuristic for the best algorithm (bias: the epilogue's
 * vector of the call that builds the plan; later calls bring their own descriptor); when the
 * plan is tuned (plan_tuned), the fastest of the heuristic's first GEMM_TUNE_CANDIDATES on the
 * call's operands o. Returns 0, -1 with an error, or PNG_UNSUPPORTED when no algorithm fits; p
 * is left without descriptors unless 0. */
static int plan_build(plan *p, const plan_key *k, const void *bias, const gemm_operands *o)
{
    cudaDataType_t data, scale;
    cublasComputeType_t compute;
    memset(p, 0, sizeof *p);
    if (!gemm_types((pn_dtype)k->dtype, k->tf32, &data, &compute, &scale)) return PNG_UNSUPPORTED;
    p->key = *k;
    cublasOperation_t opa = (cublasOperation_t)k->opa, opb = (cublasOperation_t)k->opb;
    /* stored extents: op(A) is (m, k), op(B) is (k, n) */
    int64_t ar = opa == CUBLAS_OP_N ? k->m : k->k, ac = opa == CUBLAS_OP_N ? k->k : k->m;
    int64_t br = opb == CUBLAS_OP_N ? k->k : k->n, bc = opb == CUBLAS_OP_N ? k->n : k->k;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[GEMM_TUNE_CANDIDATES];
    const int wanted = k->tuned ? GEMM_TUNE_CANDIDATES : 1;
    int found = 0;
    const char *what = NULL;
    cublasStatus_t st = desc_create(&p->op, k, compute, scale, bias, &what);
#define PLAN_STEP(call)                                                                        \
    if (st == CUBLAS_STATUS_SUCCESS) st = (call), what = #call
    PLAN_STEP(layout_create(&p->a, data, ar, ac, k->lda, k->batch, k->stride_a));
    PLAN_STEP(layout_create(&p->b, data, br, bc, k->ldb, k->batch, k->stride_b));
    PLAN_STEP(layout_create(&p->c, data, k->m, k->n, k->ldc, k->batch, k->stride_c));
    PLAN_STEP(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = GEMM_MAX_WORKSPACE;
    PLAN_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &ws, sizeof ws));
    PLAN_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                   &k->align_a, sizeof k->align_a));
    PLAN_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                   &k->align_b, sizeof k->align_b));
    PLAN_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                   &k->align_c, sizeof k->align_c));
    PLAN_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                   &k->align_c, sizeof k->align_c));
#undef PLAN_STEP
    if (st == CUBLAS_STATUS_SUCCESS) {
        /* no algorithm is an answer (NOT_SUPPORTED, or a zero count), not an error */
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handles[k->device], p->op, p->a, p->b, p->c, p->c,
                                                           pref, wanted, res, &found);
        if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED)
            st = hs, what = "cublasLtMatmulAlgoGetHeuristic";
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) {
        plan_destroy(p);
        return lt_fail(what, st);
    }
    /* the usable results: a prefix of those with a SUCCESS state */
    int usable = 0;
    while (usable < found && res[usable].state == CUBLAS_STATUS_SUCCESS) usable++;
    if (usable < 1) {
        plan_destroy(p);
        return PNG_UNSUPPORTED;
    }
    const int pick = usable > 1 ? plan_tune(p, res, usable, o) : 0;
    if (usable > 1) {
        __atomic_fetch_add(&tune_count, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&tune_last_pick, pick, __ATOMIC_RELAXED);
    }
    p->algo = res[pick].algo;
    p->workspace = res[pick].workspaceSize;
    return 0;
}

static uint64_t key_hash(const plan_key *k)
{
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The published plan for k under plans_lock, or NULL; *slot: the free slot where k would go
 * (NULL when the cache is full). */
static plan *plan_find(const plan_key *k, uint64_t h, plan **slot)
{
    *slot = NULL;
    for (int i = 0; i < GEMM_PLANS; i++) {
        plan *p = &plans[(h + (uint64_t)i) % GEMM_PLANS];
        if (!p->used) {
            *slot = p;
            return NULL;
        }
        if (!memcmp(&p->key, k, sizeof *k)) return p;
    }
    return NULL;
}

/* The cached plan for k, built on first use (entries are never changed once published, so the
 * caller uses it without the lock). The build, with its tuning runs and the host's wait for
 * them, happens outside the lock, so other threads' GEMMs go on meanwhile; when two threads
 * build one key at once, the first to publish wins and the other's build is dropped. When the
 * cache is full, the plan built into *spare is returned: the caller destroys it after use.
 * NULL with rc set (-1 or PNG_UNSUPPORTED) on failure. */
static const plan *plan_get(const plan_key *k, const void *bias, const gemm_operands *o,
                            plan *spare, int *rc)
{
    uint64_t h = key_hash(k);
    plan *slot, *p;
    pthread_mutex_lock(&plans_lock);
    p = plan_find(k, h, &slot);
    pthread_mutex_unlock(&plans_lock);
    if (p) return p;
    if ((*rc = plan_build(spare, k, bias, o)) != 0) return NULL;
    pthread_mutex_lock(&plans_lock);
    if ((p = plan_find(k, h, &slot))) {
        plan_destroy(spare); /* another thread published k first */
    } else if (slot) {
        *slot = *spare; /* the descriptors move into the cache */
        slot->used = true;
        p = slot;
    } else {
        p = spare;
    }
    pthread_mutex_unlock(&plans_lock);
    return p;
}

/* ───────────────────────────── GEMM ───────────────────────────── */

/* The alignment cuBLASLt may assume for pointer p and every batch step of `step` bytes
 * after it: the largest power of two dividing both, at most 256. */
static uint32_t alignment(const void *p, int64_t step)
{
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)step | 256u;
    return (uint32_t)(v & (~v + 1));
}

/* The scalars as the scale type wants them. */
typedef union gemm_scalar {
    float f;
    double d;
    png_c64 c;
} gemm_scalar;

static gemm_scalar scalar_of(pn_dtype t, double v)
{
    gemm_scalar s;
    memset(&s, 0, sizeof s);
    if (t == PN_FLOAT64) s.d = v;
    else if (t == PN_COMPLEX64) s.c.re = (float)v, s.c.im = 0.0f;
    else s.f = (float)v;
    return s;
}

static int64_t epilogue_calls; /* pnG_gemm_epilogue_count (atomic builtins) */

/* One cuBLASLt call of at most GEMM_MAX_BATCH matrices (arguments in cuBLASLt's terms). With
 * an epilogue the cached descriptor is not used (its bias pointer is the building call's): the
 * call gets a descriptor of its own, equal but for the pointer, so that plans stay read-only. */
static int gemm_call(plan_key *k, const gemm_scalar *alpha, const void *A, const void *B,
                     const gemm_scalar *beta, void *C, const void *bias, cudaStream_t cs,
                     int stream)
{
    size_t es = pn_dtype_size((pn_dtype)k->dtype);
    k->align_a = alignment(A, k->stride_a * (int64_t)es);
    k->align_b = alignment(B, k->stride_b * (int64_t)es);
    k->align_c = alignment(C, k->stride_c * (int64_t)es);
    plan spare;
    int rc = 0;
    const gemm_operands o = {alpha, beta, A, B, C, cs, stream};
    const plan *p = plan_get(k, bias, &o, &spare, &rc);
    if (!p) return rc;
    cublasLtMatmulDesc_t op = p->op, own = NULL;
    if (k->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        cudaDataType_t data, scale;
        cublasComputeType_t compute;
        const char *what = NULL;
        gemm_types((pn_dtype)k->dtype, k->tf32, &data, &compute, &scale);
        cublasStatus_t st = desc_create(&own, k, compute, scale, bias, &what);
        if (st != CUBLAS_STATUS_SUCCESS) rc = lt_fail(what, st);
        op = own;
    }
    void *ws = NULL;
    if (rc == 0 && p->workspace > 0 && !(ws = pnG_malloc(p->workspace, stream))) rc = -1;
    if (rc == 0) {
        cublasStatus_t st = cublasLtMatmul(handles[k->device], op, alpha, A, p->a, B, p->b, beta, C, p->c,
                                           C, p->c, &p->algo, ws, p->workspace, cs);
        if (st != CUBLAS_STATUS_SUCCESS) rc = lt_fail("cublasLtMatmul", st);
        else if (own) __atomic_fetch_add(&epilogue_calls, 1, __ATOMIC_RELAXED);
    }
    if (own) cublasLtMatmulDescDestroy(own);
    if (ws) pnG_free(ws, p->workspace, stream);
    if (p == &spare) plan_destroy(&spare);
    return rc;
}

extern "C" void pnG_gemm_set_tuning(bool on, double min_flops)
{
    pthread_once(&handle_once, handle_create); /* after PONTE_GEMM_TUNE is read */
    if (min_flops >= 0) __atomic_store(&tune_min_flops, &min_flops, __ATOMIC_RELAXED);
    __atomic_store_n(&tune_on, (int)on, __ATOMIC_RELAXED);
}

extern "C" int64_t pnG_gemm_tuned_count(int *last_pick)
{
    if (last_pick) *last_pick = __atomic_load_n(&tune_last_pick, __ATOMIC_RELAXED);
    return __atomic_load_n(&tune_count, __ATOMIC_RELAXED);
}

extern "C" int64_t pnG_gemm_epilogue_count(void)
{
    return __atomic_load_n(&epilogue_calls, __ATOMIC_RELAXED);
}

extern "C" int pnG_gemm(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N,
                        int64_t K, double alpha, const void *A, int64_t lda, int64_t stride_a,
                        const void *B, int64_t ldb, int64_t stride_b, double beta, void *C,
                        int64_t ldc, int64_t stride_c, int64_t batch, int stream)
{
    return pnG_gemm_ex(dtype, transA, transB, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                       beta, C, ldc, stride_c, batch, PNG_EPI_NONE, NULL, stream);
}

extern "C" int pnG_gemm_ex(pn_dtype dtype, bool transA, bool transB, int64_t M, int64_t N,
                           int64_t K, double alpha, const void *A, int64_t lda, int64_t stride_a,
                           const void *B, int64_t ldb, int64_t stride_b, double beta, void *C,
                           int64_t ldc, int64_t stride_c, int64_t batch, pnG_epilogue epilogue,
                           const void *bias, int stream)
{
    /* cuBLASLt's epilogue of each pnG_epilogue */
    static const uint32_t lt_epilogue[] = {CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_BIAS,
                                           CUBLASLT_EPILOGUE_RELU_BIAS, CUBLASLT_EPILOGUE_GELU_BIAS};
    cudaDataType_t data, scale;
    cublasComputeType_t compute;
    const bool tf32 = dtype == PN_FLOAT32 && pn_tf32_enabled();
    if (!gemm_types(dtype, tf32, &data, &compute, &scale)) return PNG_UNSUPPORTED;
    if ((unsigned)epilogue >= sizeof lt_epilogue / sizeof *lt_epilogue) return PNG_UNSUPPORTED;
    if (epilogue != PNG_EPI_NONE) { /* the bias has D's type: the real half and f32 types */
        if (dtype != PN_FLOAT16 && dtype != PN_BFLOAT16 && dtype != PN_FLOAT32) return PNG_UNSUPPORTED;
        if (!bias || (uintptr_t)bias % 16) return PNG_UNSUPPORTED;
    }
    if (M <= 0 || N <= 0 || batch <= 0) return 0;
    if (K <= 0) return PNG_UNSUPPORTED;
    cudaStream_t cs = png_stream(stream); /* the thread is on the stream's GPU from here */
    if (!cs) return -1;
    const int device = pnG_stream_device(stream);
    if (!lt_handle(device)) return -1;
    /* The leading dimension of single-row storage is arbitrary: make it one cuBLASLt takes. */
    int64_t a_rows = transA ? K : M, a_cols = transA ? M : K;
    int64_t b_rows = transB ? N : K, b_cols = transB ? K : N;
    if (a_rows <= 1 && lda < a_cols) lda = a_cols;
    if (b_rows <= 1 && ldb < b_cols) ldb = b_cols;
    if (M <= 1 && ldc < N) ldc = N;
    if (lda < a_cols || ldb < b_cols || ldc < N) {
        pn_set_error(PN_ERR_BACKEND, "[gemm] leading dimensions too small");
        return -1;
    }
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's A is our B. */
    plan_key k;
    memset(&k, 0, sizeof k);
    k.device = device;
    k.dtype = (int32_t)dtype;
    k.tf32 = tf32;
    k.epilogue = lt_epilogue[epilogue]; /* bias[j] per row j of the column-major D = C^T */
    k.opa = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    k.opb = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    k.m = N, k.n = M, k.k = K;
    k.lda = ldb, k.ldb = lda, k.ldc = ldc;
    k.stride_a = stride_b, k.stride_b = stride_a, k.stride_c = stride_c;
    gemm_scalar al = scalar_of(dtype, alpha), be = scalar_of(dtype, beta);
    size_t es = pn_dtype_size(dtype);
    for (int64_t b0 = 0; b0 < batch; b0 += GEMM_MAX_BATCH) {
        k.batch = batch - b0 < GEMM_MAX_BATCH ? batch - b0 : GEMM_MAX_BATCH;
        int64_t strides[3] = {k.stride_a, k.stride_b, k.stride_c};
        if (k.batch == 1) k.stride_a = k.stride_b = k.stride_c = 0;
        k.tuned = plan_tuned(&k);
        int rc = gemm_call(&k, &al, (const char *)B + (size_t)(b0 * stride_b) * es,
                           (const char *)A + (size_t)(b0 * stride_a) * es, &be,
                           (char *)C + (size_t)(b0 * stride_c) * es, bias, cs, stream);
        k.stride_a = strides[0], k.stride_b = strides[1], k.stride_c = strides[2];
        if (rc) return rc;
    }
    return 0;
}

/* ───────────────────────────── C = beta * C ───────────────────────────── */

template <typename T> __device__ __forceinline__ void scale_one(T *p, double beta)
{
    typedef typename png_compute<T>::type V;
    png_store(p, beta == 0.0 ? (V)0 : (V)(png_load(p) * (V)beta));
}
__device__ __forceinline__ void scale_one(png_c64 *p, double beta)
{
    png_c64 v = *p;
    float b = (float)beta;
    v.re = beta == 0.0 ? 0.0f : v.re * b;
    v.im = beta == 0.0 ? 0.0f : v.im * b;
    *p = v;
}

/* Whether T is a dtype the GEMM takes (the inexact ones). */
template <typename T> struct gemm_inexact {
    static const bool value = false;
};
#define GEMM_INEXACT(T)                                                                        \
    template <> struct gemm_inexact<T> {                                                       \
        static const bool value = true;                                                        \
    };
GEMM_INEXACT(pn_float16)
GEMM_INEXACT(pn_bfloat16)
GEMM_INEXACT(float)
GEMM_INEXACT(double)
GEMM_INEXACT(png_c64)
#undef GEMM_INEXACT

/* c (rows, cols), row stride ldc: every element times beta (zeros when beta == 0). */
template <typename T>
__global__ void scale_kernel(T *c, int64_t rows, int64_t cols, int64_t ldc, double beta)
{
    int64_t n = rows * cols;
    for (int64_t i = png_thread_index(); i < n; i += png_grid_stride())
        scale_one(c + (i / cols) * ldc + i % cols, beta);
}

extern "C" int pnG_gemm_scale(pn_dtype dtype, int64_t rows, int64_t cols, double beta, void *C,
                              int64_t ldc, int stream)
{
    if (rows <= 0 || cols <= 0) return 0;
    cudaStream_t cs = png_stream(stream);
    if (!cs) return -1;
    int rc = PNG_UNSUPPORTED;
    png_dispatch(dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (gemm_inexact<T>::value) {
            auto k = scale_kernel<T>;
            PNG_LAUNCH(k, png_blocks_for(rows * cols, 256), 256, 0, cs, (T *)C, rows, cols, ldc,
                       beta);
            rc = pnG_check_launch("gemm scale");
        }
    });
    return rc;
}
