/* cudnn_sim.cpp — the simulated cuDNN (cudnn_sim.h): descriptors as plain structs, cuDNN's
 * shape checks and statuses at the call, and each convolution computed on the host in stream
 * order (pnsim_library_run; simulated device memory is host memory) by a reference loop
 * written from cuDNN's documented formulas, independent of Ponte's CPU convolution: double accumulation, one
 * rounding to the data type. Counts its calls (pnsim_cudnn_calls) so tests can see it ran. */
#include <new>
#include <stdint.h>
#include <string.h>

#include "backend/cuda/sim/cudnn_sim.h"
#include "backend/cuda/sim/sim_internal.h"
#include "core/half.h"

#define SIM_MAXD 5 /* N, C and up to 3 spatial axes */

struct cudnnContext {
    pnsim_cudnn_stream_t stream;
    int dev; /* the device current at cudnnCreate */
};
struct cudnnTensorStruct {
    bool set;
    cudnnDataType_t type;
    int nd;
    int dims[SIM_MAXD];     /* (N, C, spatial...) */
    int64_t strides[SIM_MAXD]; /* element strides of those dims */
};
struct cudnnFilterStruct {
    bool set;
    cudnnDataType_t type;
    int nd;
    int dims[SIM_MAXD]; /* (K, C per group, spatial...) */
    int64_t strides[SIM_MAXD];
};
struct cudnnConvolutionStruct {
    bool set;
    int nsp;
    int pad[SIM_MAXD], stride[SIM_MAXD], dil[SIM_MAXD];
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    int groups = 1;
    cudnnMathType_t math;
};

/* Calls of the three convolution entry points, in order forward, backward data, backward
 * filter (read by backend/cuda/cudnn.c's test hook). */
extern "C" long long pnsim_cudnn_calls[3];
long long pnsim_cudnn_calls[3];

/* Workspace the simulated algorithms ask for, so callers exercise their workspace path. */
#define SIM_WORKSPACE 256

const char *cudnnGetErrorString(cudnnStatus_t status)
{
    switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}

/* A new T into *out: SUCCESS, BAD_PARAM_NULL_POINTER, INTERNAL_ERROR (no memory). */
template <typename T> static cudnnStatus_t create(T **out)
{
    if (!out) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *out = new (std::nothrow) T();
    return *out ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_INTERNAL_ERROR;
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    cudnnStatus_t st = create(handle);
    if (st == CUDNN_STATUS_SUCCESS) (*handle)->dev = pnsim_current_device();
    return st;
}

/* Whether a convolution may run with handle now (pnsim_handle_ready). */
static cudnnStatus_t dnn_ready(cudnnHandle_t handle)
{
    return pnsim_handle_ready(handle, CUDNN_STATUS_SUCCESS, CUDNN_STATUS_NOT_INITIALIZED,
                              CUDNN_STATUS_EXECUTION_FAILED);
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    delete handle;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, pnsim_cudnn_stream_t stream)
{
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { return create(d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { return create(d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) { return create(d); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

static bool type_ok(cudnnDataType_t t)
{
    return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_DOUBLE || t == CUDNN_DATA_HALF ||
           t == CUDNN_DATA_BFLOAT16;
}

/* Packed strides of dims (outer, inner channel-like axis, spatial...) in format f: NCHW is
 * row-major over dims; NHWC puts axis 1 innermost. */
static void packed_strides(const int *dims, int nd, cudnnTensorFormat_t f, int64_t *strides)
{
    int order[SIM_MAXD], n = 0; /* axes from outermost to innermost */
    order[n++] = 0;
    if (f == CUDNN_TENSOR_NCHW) order[n++] = 1;
    for (int i = 2; i < nd; i++) order[n++] = i;
    if (f == CUDNN_TENSOR_NHWC) order[n++] = 1;
    int64_t acc = 1;
    for (int j = nd - 1; j >= 0; j--) {
        strides[order[j]] = acc;
        acc *= dims[order[j]];
    }
}

/* Shared by tensor and filter descriptors. */
template <typename D>
static cudnnStatus_t set_desc(D *d, cudnnTensorFormat_t format, cudnnDataType_t type, int nd,
                              const int *dims)
{
    if (!d || !dims) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (nd < 3 || nd > SIM_MAXD || !type_ok(type)) return CUDNN_STATUS_BAD_PARAM;
    if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) return CUDNN_STATUS_BAD_PARAM;
    for (int i = 0; i < nd; i++)
        if (dims[i] <= 0) return CUDNN_STATUS_BAD_PARAM;
    d->type = type;
    d->nd = nd;
    memcpy(d->dims, dims, sizeof(int) * (size_t)nd);
    packed_strides(dims, nd, format, d->strides);
    d->set = true;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensorNdDescriptorEx(cudnnTensorDescriptor_t desc,
                                           cudnnTensorFormat_t format, cudnnDataType_t dataType,
                                           int nbDims, const int dimA[])
{
    return set_desc(desc, format, dataType, nbDims, dimA);
}

cudnnStatus_t cudnnSetFilterNdDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int nbDims,
                                         const int filterDimA[])
{
    return set_desc(desc, format, dataType, nbDims, filterDimA);
}

cudnnStatus_t cudnnSetConvolutionNdDescriptor(cudnnConvolutionDescriptor_t desc,
                                              int arrayLength, const int padA[],
                                              const int filterStrideA[], const int dilationA[],
                                              cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType)
{
    if (!desc || !padA || !filterStrideA || !dilationA) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (arrayLength < 1 || arrayLength > SIM_MAXD - 2 || !type_ok(computeType) ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
        return CUDNN_STATUS_BAD_PARAM;
    for (int i = 0; i < arrayLength; i++)
        if (padA[i] < 0 || filterStrideA[i] < 1 || dilationA[i] < 1) return CUDNN_STATUS_BAD_PARAM;
    desc->nsp = arrayLength;
    memcpy(desc->pad, padA, sizeof(int) * (size_t)arrayLength);
    memcpy(desc->stride, filterStrideA, sizeof(int) * (size_t)arrayLength);
    memcpy(desc->dil, dilationA, sizeof(int) * (size_t)arrayLength);
    desc->mode = mode;
    desc->compute = computeType;
    desc->set = true;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int groupCount)
{
    if (!desc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (groupCount < 1) return CUDNN_STATUS_BAD_PARAM;
    desc->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t m)
{
    if (!desc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (m < CUDNN_DEFAULT_MATH || m > CUDNN_FMA_MATH) return CUDNN_STATUS_BAD_PARAM;
    desc->math = m;
    return CUDNN_STATUS_SUCCESS;
}

/* ───────────────────────────── checks ───────────────────────────── */

/* The convolution's shape contract: x (N, C, S...), w (K, C / groups, R...), y (N, K, O...)
 * with O = (S + 2 pad - ((R - 1) dil + 1)) / stride + 1 per spatial axis; one data type,
 * the compute type double for double data and float (or half for half data) otherwise. */
static cudnnStatus_t check(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                           cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y)
{
    if (!x || !w || !c || !y) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (!x->set || !w->set || !c->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
    int nd = x->nd;
    if (w->nd != nd || y->nd != nd || c->nsp != nd - 2) return CUDNN_STATUS_BAD_PARAM;
    if (w->type != x->type || y->type != x->type) return CUDNN_STATUS_BAD_PARAM;
    bool dbl = x->type == CUDNN_DATA_DOUBLE;
    if (dbl != (c->compute == CUDNN_DATA_DOUBLE)) return CUDNN_STATUS_NOT_SUPPORTED;
    if (c->compute == CUDNN_DATA_HALF && x->type != CUDNN_DATA_HALF) return CUDNN_STATUS_NOT_SUPPORTED;
    if (c->compute == CUDNN_DATA_BFLOAT16) return CUDNN_STATUS_NOT_SUPPORTED;
    int G = c->groups;
    if (x->dims[0] != y->dims[0] || x->dims[1] != w->dims[1] * G || y->dims[1] != w->dims[0] ||
        w->dims[0] % G != 0)
        return CUDNN_STATUS_BAD_PARAM;
    for (int i = 0; i < nd - 2; i++) {
        int64_t span = (int64_t)x->dims[2 + i] + 2 * c->pad[i] -
                       ((int64_t)(w->dims[2 + i] - 1) * c->dil[i] + 1);
        if (span < 0 || span / c->stride[i] + 1 != y->dims[2 + i]) return CUDNN_STATUS_BAD_PARAM;
    }
    return CUDNN_STATUS_SUCCESS;
}

/* ───────────────────────────── heuristics and workspaces ───────────────────────────── */

/* One result: algorithm 0, SIM_WORKSPACE bytes, deterministic, the descriptor's math. */
template <typename P>
static cudnnStatus_t heuristic(cudnnHandle_t h, cudnnTensorDescriptor_t x,
                               cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                               cudnnTensorDescriptor_t y, int requested, int *returned, P *perf)
{
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    if (!returned || !perf) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (requested < 1) return CUDNN_STATUS_BAD_PARAM;
    *returned = 0;
    cudnnStatus_t st = check(x, w, c, y);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    memset(&perf[0], 0, sizeof perf[0]);
    perf[0].status = CUDNN_STATUS_SUCCESS;
    perf[0].memory = SIM_WORKSPACE;
    perf[0].determinism = CUDNN_DETERMINISTIC;
    perf[0].mathType = c->math;
    *returned = 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount,
    int *returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t *perfResults)
{
    return heuristic(handle, srcDesc, filterDesc, convDesc, destDesc, requestedAlgoCount,
                     returnedAlgoCount, perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount,
    int *returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t *perfResults)
{
    return heuristic(handle, gradDesc, filterDesc, convDesc, diffDesc, requestedAlgoCount,
                     returnedAlgoCount, perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount,
    int *returnedAlgoCount, cudnnConvolutionBwdFilterAlgoPerf_t *perfResults)
{
    return heuristic(handle, srcDesc, gradDesc, convDesc, diffDesc, requestedAlgoCount,
                     returnedAlgoCount, perfResults);
}

/* SIM_WORKSPACE bytes for algorithm 0 of a valid problem; NOT_SUPPORTED for other algos. */
static cudnnStatus_t workspace(cudnnHandle_t h, cudnnTensorDescriptor_t x,
                               cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                               cudnnTensorDescriptor_t y, int algo, size_t *size)
{
    if (!h) return CUDNN_STATUS_NOT_INITIALIZED;
    if (!size) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    cudnnStatus_t st = check(x, w, c, y);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (algo != 0) return CUDNN_STATUS_NOT_SUPPORTED;
    *size = SIM_WORKSPACE;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
    const cudnnFilterDescriptor_t wDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t yDesc, cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes)
{
    return workspace(handle, xDesc, wDesc, convDesc, yDesc, (int)algo, sizeInBytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
    const cudnnTensorDescriptor_t dyDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t dxDesc, cudnnConvolutionBwdDataAlgo_t algo, size_t *sizeInBytes)
{
    return workspace(handle, dxDesc, wDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
    const cudnnTensorDescriptor_t dyDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, cudnnConvolutionBwdFilterAlgo_t algo,
    size_t *sizeInBytes)
{
    return workspace(handle, xDesc, gradDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}

/* ───────────────────────────── the reference loops ───────────────────────────── */

static double load(cudnnDataType_t t, const void *base, int64_t i)
{
    switch (t) {
    case CUDNN_DATA_FLOAT: return ((const float *)base)[i];
    case CUDNN_DATA_DOUBLE: return ((const double *)base)[i];
    case CUDNN_DATA_HALF: return pnC_f16_to_f32(((const pn_float16 *)base)[i]);
    case CUDNN_DATA_BFLOAT16: return pnC_bf16_to_f32(((const pn_bfloat16 *)base)[i]);
    }
    return 0.0;
}

static void store(cudnnDataType_t t, void *base, int64_t i, double v)
{
    switch (t) {
    case CUDNN_DATA_FLOAT: ((float *)base)[i] = (float)v; return;
    case CUDNN_DATA_DOUBLE: ((double *)base)[i] = v; return;
    case CUDNN_DATA_HALF: ((pn_float16 *)base)[i] = pnC_f32_to_f16((float)v); return;
    case CUDNN_DATA_BFLOAT16: ((pn_bfloat16 *)base)[i] = pnC_f32_to_bf16((float)v); return;
    }
}

static double scale(cudnnDataType_t t, const void *p)
{
    return t == CUDNN_DATA_DOUBLE ? *(const double *)p : (double)*(const float *)p;
}

/* One convolution problem with every index spelled out: x (N, C, S...), w (K, Cg, R...),
 * y (N, K, O...), nsp spatial axes, group of output channel k = k / (K / G). It holds the
 * descriptors by value: the caller may destroy them once the call returns, as cuDNN allows. */
struct problem {
    cudnnTensorStruct x, y;
    cudnnFilterStruct w;
    cudnnConvolutionStruct c;
    int nsp, G, Kg, Cg;
};

static problem make_problem(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                            cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y)
{
    problem p = {*x, *y, *w, *c, x->nd - 2, c->groups, w->dims[0] / c->groups, w->dims[1]};
    return p;
}

/* Calls f(idx) for every index of dims (n of them) in row-major order. */
template <typename F> static void for_each(const int *dims, int n, F f)
{
    int idx[SIM_MAXD] = {0};
    for (int i = 0; i < n; i++)
        if (dims[i] <= 0) return;
    for (;;) {
        f(idx);
        int d = n - 1;
        while (d >= 0 && ++idx[d] == dims[d]) idx[d--] = 0;
        if (d < 0) return;
    }
}

/* The input coordinate read by output coordinate o through filter tap r on spatial axis i
 * (cuDNN: o stride + r dil - pad), or -1 outside the input. The filter element used is r in
 * cross-correlation mode and R - 1 - r in convolution mode (the filter flipped). */
static int64_t in_coord(const problem &p, int i, int64_t o, int64_t r)
{
    int64_t j = o * p.c.stride[i] + r * p.c.dil[i] - p.c.pad[i];
    return j >= 0 && j < p.x.dims[2 + i] ? j : -1;
}
static int64_t filter_tap(const problem &p, int i, int64_t r)
{
    return p.c.mode == CUDNN_CONVOLUTION ? p.w.dims[2 + i] - 1 - r : r;
}

/* sum over (c in group, taps) of x * w for y element (n, k, o...), as cuDNN's forward
 * formula; with the roles of the loops kept generic through the callback. */
template <typename F> static void for_taps(const problem &p, const int *o, F f)
{
    int rd[SIM_MAXD];
    for (int i = 0; i < p.nsp; i++) rd[i] = p.w.dims[2 + i];
    for_each(rd, p.nsp, [&](const int *r) {
        int64_t xo = 0, wo = 0;
        for (int i = 0; i < p.nsp; i++) {
            int64_t j = in_coord(p, i, o[i], r[i]);
            if (j < 0) return;
            xo += j * p.x.strides[2 + i];
            wo += filter_tap(p, i, r[i]) * p.w.strides[2 + i];
        }
        f(xo, wo);
    });
}

/* The part the three convolutions share: cuDNN's checks (the handle; the descriptors; alpha,
 * beta and the data pointers, ptrs_ok saying whether those are all non-NULL; algorithm 0 and
 * the workspace), the call counted in pnsim_cudnn_calls[which], then in stream order
 * (pnsim_library_run, the workspace used as pnsim_library_scratch says) every element of the
 * output out (out_of(p): its descriptor in the problem) = alpha sum(p, t, index) + beta out,
 * with the problem (descriptors by value), the data type and alpha and beta (host pointers)
 * read at the call. */
template <typename O, typename F>
static cudnnStatus_t convolution(cudnnHandle_t handle, int which, const void *alpha,
                                 const void *beta, cudnnTensorDescriptor_t x,
                                 cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                                 cudnnTensorDescriptor_t y, bool ptrs_ok, int algo,
                                 void *workspace, size_t workspace_bytes, void *out, O out_of,
                                 F sum)
{
    if (cudnnStatus_t e = dnn_ready(handle)) return e;
    cudnnStatus_t st = check(x, w, c, y);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (!alpha || !beta || !ptrs_ok) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (algo != 0 || workspace_bytes < SIM_WORKSPACE || !workspace) return CUDNN_STATUS_BAD_PARAM;
    pnsim_cudnn_calls[which]++;
    const problem p = make_problem(x, w, c, y);
    const cudnnDataType_t t = p.x.type;
    const double a = scale(t, alpha), b = scale(t, beta);
    return pnsim_library_run(handle->stream, CUDNN_STATUS_SUCCESS, [=] {
        if (!pnsim_library_scratch(workspace, workspace_bytes))
            return CUDNN_STATUS_EXECUTION_FAILED;
        const auto &o = out_of(p);
        for_each(o.dims, o.nd, [&](const int *i) {
            int64_t off = 0;
            for (int d = 0; d < o.nd; d++) off += i[d] * o.strides[d];
            store(t, out, off, a * sum(p, t, i) + (b != 0.0 ? b * load(t, out, off) : 0.0));
        });
        return CUDNN_STATUS_SUCCESS;
    });
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha,
                                      const cudnnTensorDescriptor_t xDesc, const void *x,
                                      const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc,
                                      cudnnConvolutionFwdAlgo_t algo, void *workSpace,
                                      size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y)
{
    auto sum = [=](const problem &p, cudnnDataType_t t, const int *yi) {
        int n = yi[0], k = yi[1], g = k / p.Kg;
        double acc = 0.0;
        for_taps(p, yi + 2, [&](int64_t xo, int64_t wo) {
            for (int c = 0; c < p.Cg; c++)
                acc += load(t, x, n * p.x.strides[0] + (g * p.Cg + c) * p.x.strides[1] + xo) *
                       load(t, w, k * p.w.strides[0] + c * p.w.strides[1] + wo);
        });
        return acc;
    };
    auto out = [](const problem &p) -> const cudnnTensorStruct & { return p.y; };
    return convolution(handle, 0, alpha, beta, xDesc, wDesc, convDesc, yDesc, x && w && y,
                       (int)algo, workSpace, workSpaceSizeInBytes, y, out, sum);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void *alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void *w,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *workSpace,
                                           size_t workSpaceSizeInBytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxDesc, void *dx)
{
    /* dx[n, c, j] = sum over k of c's group, taps r and outputs o with j = o stride + r dil -
     * pad of dy[n, k, o] w[k, c - group base, tap(r)]: the adjoint of the forward. */
    auto sum = [=](const problem &p, cudnnDataType_t t, const int *xi) {
        int rd[SIM_MAXD];
        for (int i = 0; i < p.nsp; i++) rd[i] = p.w.dims[2 + i];
        int n = xi[0], c = xi[1], g = c / p.Cg;
        double acc = 0.0;
        for_each(rd, p.nsp, [&](const int *r) {
            int64_t yo = 0, wo = 0;
            for (int i = 0; i < p.nsp; i++) {
                int64_t num = (int64_t)xi[2 + i] + p.c.pad[i] - (int64_t)r[i] * p.c.dil[i];
                if (num < 0 || num % p.c.stride[i]) return;
                int64_t o = num / p.c.stride[i];
                if (o >= p.y.dims[2 + i]) return;
                yo += o * p.y.strides[2 + i];
                wo += filter_tap(p, i, r[i]) * p.w.strides[2 + i];
            }
            for (int kl = 0; kl < p.Kg; kl++) {
                int k = g * p.Kg + kl;
                acc += load(t, dy, n * p.y.strides[0] + k * p.y.strides[1] + yo) *
                       load(t, w, k * p.w.strides[0] + (c - g * p.Cg) * p.w.strides[1] + wo);
            }
        });
        return acc;
    };
    auto out = [](const problem &p) -> const cudnnTensorStruct & { return p.x; };
    return convolution(handle, 1, alpha, beta, dxDesc, wDesc, convDesc, dyDesc, w && dy && dx,
                       (int)algo, workSpace, workSpaceSizeInBytes, dx, out, sum);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void *alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void *x,
                                             const cudnnTensorDescriptor_t dyDesc,
                                             const void *dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                             void *workSpace, size_t workSpaceSizeInBytes,
                                             const void *beta,
                                             const cudnnFilterDescriptor_t dwDesc, void *dw)
{
    /* dw[k, c, tap(r)] = sum over n and outputs o of x[n, group base + c, o stride + r dil -
     * pad] dy[n, k, o]. */
    auto sum = [=](const problem &p, cudnnDataType_t t, const int *wi) {
        int od[SIM_MAXD];
        for (int i = 0; i < p.nsp; i++) od[i] = p.y.dims[2 + i];
        int k = wi[0], c = wi[1], g = k / p.Kg;
        int r[SIM_MAXD];
        for (int i = 0; i < p.nsp; i++) r[i] = (int)filter_tap(p, i, wi[2 + i]); /* an involution */
        double acc = 0.0;
        for_each(od, p.nsp, [&](const int *o) {
            int64_t xo = 0, yo = 0;
            for (int i = 0; i < p.nsp; i++) {
                int64_t j = in_coord(p, i, o[i], r[i]);
                if (j < 0) return;
                xo += j * p.x.strides[2 + i];
                yo += (int64_t)o[i] * p.y.strides[2 + i];
            }
            for (int n = 0; n < p.x.dims[0]; n++)
                acc += load(t, x, n * p.x.strides[0] + (g * p.Cg + c) * p.x.strides[1] + xo) *
                       load(t, dy, n * p.y.strides[0] + k * p.y.strides[1] + yo);
        });
        return acc;
    };
    auto out = [](const problem &p) -> const cudnnFilterStruct & { return p.w; };
    return convolution(handle, 2, alpha, beta, xDesc, dwDesc, convDesc, dyDesc, x && dy && dw,
                       (int)algo, workSpace, workSpaceSizeInBytes, dw, out, sum);
}
