/* cudnn.c — cuDNN's legacy convolution API behind one function table (cudnn.h): native builds
 * fill it with dlsym from libcudnn.so.9 (or libcudnn.so) on first use, the simulated build
 * with sim/cudnn_sim.cpp's stand-ins. One cuDNN handle per CUDA stream; descriptors and the
 * algorithm (cuDNN's _v7 heuristic, the first result that fits) cached per problem; the
 * workspace comes from the device pool on the problem's stream. */
#define _GNU_SOURCE
#include "backend/cuda/cudnn.h"
#include "backend/cuda/gpu.h"
#include "backend/cuda/sim/cudnn_sim.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef PONTE_GPU_SIM
#include <dlfcn.h>
#endif

/* ───────────────────────────── the function table ───────────────────────────── */

#define CUDNN_FUNCS(X)                                                                         \
    X(cudnnGetErrorString)                                                                     \
    X(cudnnCreate)                                                                             \
    X(cudnnSetStream)                                                                          \
    X(cudnnCreateTensorDescriptor)                                                             \
    X(cudnnDestroyTensorDescriptor)                                                            \
    X(cudnnSetTensorNdDescriptorEx)                                                            \
    X(cudnnCreateFilterDescriptor)                                                             \
    X(cudnnDestroyFilterDescriptor)                                                            \
    X(cudnnSetFilterNdDescriptor)                                                              \
    X(cudnnCreateConvolutionDescriptor)                                                        \
    X(cudnnDestroyConvolutionDescriptor)                                                       \
    X(cudnnSetConvolutionNdDescriptor)                                                         \
    X(cudnnSetConvolutionGroupCount)                                                           \
    X(cudnnSetConvolutionMathType)                                                             \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                                  \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                             \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                           \
    X(cudnnGetConvolutionForwardWorkspaceSize)                                                 \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                            \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                          \
    X(cudnnConvolutionForward)                                                                 \
    X(cudnnConvolutionBackwardData)                                                            \
    X(cudnnConvolutionBackwardFilter)

static struct {
#define CUDNN_MEMBER(f) __typeof__(f) *f;
    CUDNN_FUNCS(CUDNN_MEMBER)
#undef CUDNN_MEMBER
    size_t (*getVersion)(void); /* cudnnGetVersion; optional */
} dnn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded;
static char describe[256] = "cuDNN not loaded yet";
static int env_enabled = 1;     /* PONTE_CUDNN */
static int debug;               /* PONTE_CUDNN_DEBUG */
static int override_enabled = -1;
static int64_t counts[PNG_CUDNN_NOPS];

#define DEBUG(...)                                                                             \
    do {                                                                                       \
        if (debug) fprintf(stderr, "[ponte cudnn] " __VA_ARGS__);                              \
    } while (0)

static void load(void)
{
    const char *e = getenv("PONTE_CUDNN");
    env_enabled = !(e && !strcmp(e, "0"));
    e = getenv("PONTE_CUDNN_DEBUG");
    debug = e && *e && strcmp(e, "0") != 0;
#ifdef PONTE_GPU_SIM
#define CUDNN_ASSIGN(f) dnn.f = f;
    CUDNN_FUNCS(CUDNN_ASSIGN)
#undef CUDNN_ASSIGN
    loaded = true;
    snprintf(describe, sizeof describe, "simulated cuDNN");
#else
    const char *names[] = {"libcudnn.so.9", "libcudnn.so"};
    void *lib = NULL;
    const char *name = NULL;
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(name = names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(describe, sizeof describe, "cuDNN not loaded: %s", dlerror());
    } else {
        bool ok = true;
#define CUDNN_SYM(f)                                                                           \
    if (ok && !(*(void **)&dnn.f = dlsym(lib, #f))) {                                          \
        ok = false;                                                                            \
        snprintf(describe, sizeof describe, "cuDNN not loaded: %s lacks %s", name, #f);       \
    }
        CUDNN_FUNCS(CUDNN_SYM)
#undef CUDNN_SYM
        *(void **)&dnn.getVersion = dlsym(lib, "cudnnGetVersion");
        if (ok) {
            size_t v = dnn.getVersion ? dnn.getVersion() : 0;
            snprintf(describe, sizeof describe, "cuDNN %zu.%zu.%zu (%s)", v / 10000,
                     v % 10000 / 100, v % 100, name);
            loaded = true;
        } else {
            dlclose(lib);
            memset(&dnn, 0, sizeof dnn);
        }
    }
#endif
    if (!env_enabled) DEBUG("disabled by PONTE_CUDNN=0\n");
    DEBUG("%s\n", describe);
}

bool pnG_cudnn_available(void)
{
    pthread_once(&load_once, load);
    int on = override_enabled >= 0 ? override_enabled : env_enabled;
    return loaded && on;
}

void pnG_cudnn_set_enabled(int enabled) { override_enabled = enabled < 0 ? -1 : enabled != 0; }

int64_t pnG_cudnn_count(int op)
{
    if (op < 0 || op >= PNG_CUDNN_NOPS) return 0;
    return __atomic_load_n(&counts[op], __ATOMIC_RELAXED);
}

const char *pnG_cudnn_describe(void)
{
    pthread_once(&load_once, load);
    return describe;
}

/* ───────────────────────────── handles and the problem cache ───────────────────────────── */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Handles by CUDA stream (a linear table: few streams); beyond it, no cuDNN. */
#define CUDNN_HANDLES 64
static struct {
    void *stream;
    cudnnHandle_t handle;
} handles[CUDNN_HANDLES];
static int nhandles;

/* The handle of CUDA stream cs (created and bound on first use), NULL when none can be. */
static cudnnHandle_t handle_for(void *cs)
{
    for (int i = 0; i < nhandles; i++)
        if (handles[i].stream == cs) return handles[i].handle;
    if (nhandles == CUDNN_HANDLES) return NULL;
    cudnnHandle_t h = NULL;
    cudnnStatus_t st = dnn.cudnnCreate(&h);
    if (st == CUDNN_STATUS_SUCCESS) st = dnn.cudnnSetStream(h, (pnsim_cudnn_stream_t)cs);
    if (st != CUDNN_STATUS_SUCCESS) {
        DEBUG("cudnnCreate/cudnnSetStream: %s\n", dnn.cudnnGetErrorString(st));
        return NULL; /* a created handle is kept out of the table: leaked, once */
    }
    handles[nhandles].stream = cs;
    handles[nhandles].handle = h;
    nhandles++;
    return h;
}

/* A problem's descriptors and algorithm; ok false: cuDNN rejected it (fall back). */
typedef struct plan {
    pnG_cudnn_conv key;
    int tf32, device; /* device: the GPU whose handle chose the algorithm (architectures differ) */
    bool used, ok;
    int algo;
    size_t workspace;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} plan;

/* Open-addressed table keyed by the problem; when full, problems are planned per call. */
#define CUDNN_PLANS 512
static plan plans[CUDNN_PLANS];

static uint64_t key_hash(const pnG_cudnn_conv *k, int tf32, int device)
{
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull ^ (uint64_t)tf32 ^ ((uint64_t)device << 1);
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void plan_destroy(plan *pl)
{
    if (pl->x) dnn.cudnnDestroyTensorDescriptor(pl->x);
    if (pl->y) dnn.cudnnDestroyTensorDescriptor(pl->y);
    if (pl->w) dnn.cudnnDestroyFilterDescriptor(pl->w);
    if (pl->conv) dnn.cudnnDestroyConvolutionDescriptor(pl->conv);
    pl->x = pl->y = NULL, pl->w = NULL, pl->conv = NULL;
}

static cudnnDataType_t data_type(int dtype)
{
    switch (dtype) {
    case PN_FLOAT16: return CUDNN_DATA_HALF;
    case PN_BFLOAT16: return CUDNN_DATA_BFLOAT16;
    case PN_FLOAT64: return CUDNN_DATA_DOUBLE;
    default: return CUDNN_DATA_FLOAT;
    }
}

#define PLAN_CHECK(call)                                                                       \
    do {                                                                                       \
        cudnnStatus_t st_ = (call);                                                            \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                     \
            DEBUG("%s: %s\n", #call, dnn.cudnnGetErrorString(st_));                            \
            return false;                                                                      \
        }                                                                                      \
    } while (0)

/* The heuristic's first algorithm with a SUCCESS status whose workspace query succeeds. */
#define PLAN_PICK(PerfT, heuristic_call, size_call)                                            \
    do {                                                                                       \
        PerfT perf[8];                                                                         \
        int n = 0;                                                                             \
        PLAN_CHECK(heuristic_call);                                                            \
        for (int i = 0; i < n; i++) {                                                          \
            size_t ws = 0;                                                                     \
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;                              \
            if (size_call != CUDNN_STATUS_SUCCESS) continue;                                   \
            pl->algo = (int)perf[i].algo;                                                      \
            pl->workspace = ws;                                                                \
            return true;                                                                       \
        }                                                                                      \
        DEBUG("no algorithm among %d candidates\n", n);                                        \
        return false;                                                                          \
    } while (0)

/* Builds pl's descriptors and picks its algorithm; false when cuDNN rejects the problem. */
static bool plan_build(plan *pl, cudnnHandle_t h)
{
    const pnG_cudnn_conv *p = &pl->key;
    cudnnDataType_t t = data_type(p->dtype);
    int ns = p->nsp, xd[5] = {p->N, p->C}, yd[5] = {p->N, p->K}, wd[5] = {p->K, p->C / p->G};
    for (int i = 0; i < ns; i++) xd[2 + i] = p->in[i], yd[2 + i] = p->out[i], wd[2 + i] = p->filt[i];
    PLAN_CHECK(dnn.cudnnCreateTensorDescriptor(&pl->x));
    PLAN_CHECK(dnn.cudnnCreateTensorDescriptor(&pl->y));
    PLAN_CHECK(dnn.cudnnCreateFilterDescriptor(&pl->w));
    PLAN_CHECK(dnn.cudnnCreateConvolutionDescriptor(&pl->conv));
    PLAN_CHECK(dnn.cudnnSetTensorNdDescriptorEx(pl->x, CUDNN_TENSOR_NHWC, t, ns + 2, xd));
    PLAN_CHECK(dnn.cudnnSetTensorNdDescriptorEx(pl->y, CUDNN_TENSOR_NHWC, t, ns + 2, yd));
    PLAN_CHECK(dnn.cudnnSetFilterNdDescriptor(pl->w, t, CUDNN_TENSOR_NHWC, ns + 2, wd));
    PLAN_CHECK(dnn.cudnnSetConvolutionNdDescriptor(
        pl->conv, ns, p->pad, p->stride, p->dil, p->flip ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION,
        t == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
    PLAN_CHECK(dnn.cudnnSetConvolutionGroupCount(pl->conv, p->G));
    /* f32: TF32 tensor cores only when allowed; half types: tensor cores; f64: FMA */
    cudnnMathType_t math = t == CUDNN_DATA_FLOAT ? (pl->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH)
                           : t == CUDNN_DATA_DOUBLE ? CUDNN_DEFAULT_MATH
                                                    : CUDNN_TENSOR_OP_MATH;
    PLAN_CHECK(dnn.cudnnSetConvolutionMathType(pl->conv, math));
    switch (p->op) {
    case PNG_CUDNN_FORWARD:
        PLAN_PICK(cudnnConvolutionFwdAlgoPerf_t,
                  dnn.cudnnGetConvolutionForwardAlgorithm_v7(h, pl->x, pl->w, pl->conv, pl->y, 8, &n, perf),
                  dnn.cudnnGetConvolutionForwardWorkspaceSize(h, pl->x, pl->w, pl->conv, pl->y,
                                                              perf[i].algo, &ws));
    case PNG_CUDNN_BACKWARD_DATA:
        PLAN_PICK(cudnnConvolutionBwdDataAlgoPerf_t,
                  dnn.cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl->w, pl->y, pl->conv, pl->x, 8, &n, perf),
                  dnn.cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl->w, pl->y, pl->conv, pl->x,
                                                                   perf[i].algo, &ws));
    default:
        PLAN_PICK(cudnnConvolutionBwdFilterAlgoPerf_t,
                  dnn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl->x, pl->y, pl->conv, pl->w, 8, &n, perf),
                  dnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl->x, pl->y, pl->conv, pl->w,
                                                                     perf[i].algo, &ws));
    }
}

/* The cached plan of (p, tf32) on GPU device, built on a miss; *temp gets a per-call plan (to
 * destroy) when the table is full. NULL: cuDNN rejects the problem. Called with the lock
 * held. */
static plan *plan_get(const pnG_cudnn_conv *p, int tf32, int device, cudnnHandle_t h, plan *temp)
{
    uint64_t hash = key_hash(p, tf32, device);
    plan *slot = NULL;
    for (int i = 0; i < CUDNN_PLANS; i++) {
        plan *pl = &plans[(hash + (uint64_t)i) % CUDNN_PLANS];
        if (!pl->used) {
            slot = pl;
            break;
        }
        if (pl->tf32 == tf32 && pl->device == device && !memcmp(&pl->key, p, sizeof *p))
            return pl->ok ? pl : NULL;
    }
    plan *pl = slot ? slot : temp;
    memset(pl, 0, sizeof *pl);
    pl->key = *p;
    pl->tf32 = tf32;
    pl->device = device;
    pl->used = true;
    pl->ok = plan_build(pl, h);
    if (!pl->ok) {
        plan_destroy(pl);
        DEBUG("problem op %d nsp %d N %d C %d K %d G %d dtype %d rejected: the im2col path runs\n",
              p->op, p->nsp, p->N, p->C, p->K, p->G, p->dtype);
    }
    return pl->ok ? pl : NULL;
}

/* ───────────────────────────── running ───────────────────────────── */

/* See cudnn.h. */
int pnG_cudnn_run(const pnG_cudnn_conv *p, void *x, void *w, void *y, int stream)
{
    if (!pnG_cudnn_available()) return PNG_UNSUPPORTED;
    void *cs = pnG_cuda_stream(stream);
    if (!cs) return -1;
    int tf32 = p->dtype == PN_FLOAT32 && pn_tf32_enabled();
    plan temp, *pl = NULL;
    pthread_mutex_lock(&lock);
    cudnnHandle_t h = handle_for(cs);
    if (h) pl = plan_get(p, tf32, pnG_stream_device(stream), h, &temp);
    pthread_mutex_unlock(&lock);
    if (!pl) return PNG_UNSUPPORTED;
    void *ws = pl->workspace ? pnG_malloc(pl->workspace, stream) : NULL;
    int rc = 0;
    if (pl->workspace && !ws) {
        rc = -1;
    } else {
        double one64 = 1.0, zero64 = 0.0;
        float one32 = 1.0f, zero32 = 0.0f;
        bool f64 = p->dtype == PN_FLOAT64;
        const void *alpha = f64 ? (const void *)&one64 : (const void *)&one32;
        const void *beta = f64 ? (const void *)&zero64 : (const void *)&zero32;
        cudnnStatus_t st;
        switch (p->op) {
        case PNG_CUDNN_FORWARD:
            st = dnn.cudnnConvolutionForward(h, alpha, pl->x, x, pl->w, w, pl->conv,
                                             (cudnnConvolutionFwdAlgo_t)pl->algo, ws,
                                             pl->workspace, beta, pl->y, y);
            break;
        case PNG_CUDNN_BACKWARD_DATA:
            st = dnn.cudnnConvolutionBackwardData(h, alpha, pl->w, w, pl->y, y, pl->conv,
                                                  (cudnnConvolutionBwdDataAlgo_t)pl->algo, ws,
                                                  pl->workspace, beta, pl->x, x);
            break;
        default:
            st = dnn.cudnnConvolutionBackwardFilter(h, alpha, pl->x, x, pl->y, y, pl->conv,
                                                    (cudnnConvolutionBwdFilterAlgo_t)pl->algo,
                                                    ws, pl->workspace, beta, pl->w, w);
            break;
        }
        if (st == CUDNN_STATUS_SUCCESS) {
            __atomic_fetch_add(&counts[p->op], 1, __ATOMIC_RELAXED);
        } else {
            DEBUG("convolution op %d failed: %s; the im2col path runs\n", p->op,
                  dnn.cudnnGetErrorString(st));
            rc = PNG_UNSUPPORTED;
            if (pl != &temp) { /* not again (its descriptors stay: another call may hold them) */
                pthread_mutex_lock(&lock);
                pl->ok = false;
                pthread_mutex_unlock(&lock);
            }
        }
    }
    if (ws) pnG_free(ws, pl->workspace, stream);
    if (pl == &temp) plan_destroy(&temp);
    return rc;
}
