/* test_gpusim_devices.cu — the simulated CUDA runtime with several devices (PONTE_SIM_DEVICES=2,
 * set by ctest or here): device count and ordinals, a current device per host thread, a pool,
 * counters and limit per device, streams and events bound to their device and the
 * cudaErrorInvalidResourceHandle real CUDA gives for work queued on another device's stream,
 * copies across devices, per-device kernel attributes, and each library stand-in refusing a
 * handle used away from its device. Simulator only (the library stand-ins and
 * pnsim_device_of are the simulator's). With --async, the asynchronous mode's own tests
 * instead (PONTE_SIM_ASYNC, set to 1 unless set): streams racing without events, queries,
 * host reads of pinned memory, cudaFreeAsync poison, host functions, waits across devices.
 * `test_gpusim_devices [--async] NAME` runs one test;
 * `test_gpusim_devices --expect-count N` only checks the device count (1 when
 * PONTE_SIM_DEVICES is unset or bad); `test_gpusim_devices --expect-arch 86,90,... [--optin
 * BYTES]` only checks that there is one device per entry with that architecture's figures
 * (PONTE_SIM_ARCH, and PONTE_SIM_SMEM_OPTIN=BYTES when given, as the caller set them) through
 * every route: properties, attributes, occupancy, and the opt-in shared memory that
 * cudaFuncSetAttribute and launches allow on each device. */
#include <pthread.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/sim/cublas_sim.h"
#include "backend/cuda/sim/cublaslt_sim.h"
#include "backend/cuda/sim/cudnn_sim.h"
#include "backend/cuda/sim/cufft_sim.h"
#include "backend/cuda/sim/cusolver_sim.h"
#include "backend/cuda/sim/sim_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <thread>
#include <vector>

/* ───────────────────────────── harness ───────────────────────────── */

static int g_checks, g_failures;
static unsigned long long g_rng;
static const size_t LIMIT = (size_t)64 << 20; /* PONTE_SIM_MEMORY_LIMIT: each device's */

static void check_at(bool ok, const char *what, const char *file, int line)
{
    g_checks++;
    if (!ok) {
        g_failures++;
        fprintf(stderr, "test_gpusim_devices: FAILED %s:%d: %s\n", file, line, what);
    }
}
#define CHECK(cond) check_at((cond), #cond, __FILE__, __LINE__)
/* A CUDA call that must return want (and leave it as the last error, which this clears). */
#define EXPECT(call, want)                                                                     \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != (want))                                                                      \
            fprintf(stderr, "test_gpusim_devices: %s -> %s, want %s\n", #call,                 \
                    cudaGetErrorName(e_), cudaGetErrorName(want));                             \
        check_at(e_ == (want), #call, __FILE__, __LINE__);                                     \
        cudaGetLastError();                                                                    \
    } while (0)
#define CK(call) EXPECT(call, cudaSuccess)
/* A call that must be refused for running on another device's stream. */
#define WRONG_DEVICE(call) EXPECT(call, cudaErrorInvalidResourceHandle)

/* Uniform in [-1, 1) (xorshift64*). */
static float rnd(void)
{
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return (float)((g_rng * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f;
}

static void *dmalloc(size_t bytes)
{
    void *p = nullptr;
    CK(cudaMalloc(&p, bytes));
    return p;
}

static uint64_t pool_attr(cudaMemPool_t pool, cudaMemPoolAttr attr)
{
    uint64_t v = 0;
    CK(cudaMemPoolGetAttribute(pool, attr, &v));
    return v;
}

static cudaMemPool_t pool_of(int dev)
{
    cudaMemPool_t p = nullptr;
    CK(cudaDeviceGetDefaultMemPool(&p, dev));
    return p;
}

/* ───────────────────────────── kernels ───────────────────────────── */

__device__ float g_symbol;

/* y[i] = a x[i] + b. */
__global__ void affine_kernel(const float *x, float *y, float a, float b, int n)
{
    for (int64_t i = png_thread_index(); i < n; i += png_grid_stride()) y[i] = a * x[i] + b;
}

/* out[i] = in[n - 1 - i] within one block, through dynamic shared memory. */
__global__ void reverse_smem_kernel(const float *in, float *out, int n)
{
    PNG_DYNAMIC_SMEM(float, buf);
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = in[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buf[n - 1 - i];
}

/* ───────────────────────────── devices ───────────────────────────── */

static void test_count_and_ordinals(void)
{
    int n = 0, d = -1;
    CK(cudaGetDeviceCount(&n));
    CHECK(n == 2);
    CK(cudaGetDevice(&d));
    CHECK(d == 0);
    EXPECT(cudaSetDevice(2), cudaErrorInvalidDevice);
    EXPECT(cudaSetDevice(-1), cudaErrorInvalidDevice);
    CK(cudaGetDevice(&d));
    CHECK(d == 0); /* a refused cudaSetDevice changes nothing */
    CK(cudaSetDevice(1));
    CK(cudaGetDevice(&d));
    CHECK(d == 1);
    cudaDeviceProp p0, p1, p2;
    CK(cudaGetDeviceProperties(&p0, 0));
    CK(cudaGetDeviceProperties(&p1, 1));
    EXPECT(cudaGetDeviceProperties(&p2, 2), cudaErrorInvalidDevice);
    EXPECT(cudaGetDeviceProperties(&p2, -1), cudaErrorInvalidDevice);
    CHECK(p0.totalGlobalMem == LIMIT && p1.totalGlobalMem == LIMIT);
    CHECK(p0.major == p1.major && p0.multiProcessorCount == p1.multiProcessorCount);
    CHECK(p0.pciBusID != p1.pciBusID);
    int v0 = 0, v1 = 0, v2 = 0;
    CK(cudaDeviceGetAttribute(&v0, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaDeviceGetAttribute(&v1, cudaDevAttrMultiProcessorCount, 1));
    CHECK(v0 == v1 && v0 > 0);
    EXPECT(cudaDeviceGetAttribute(&v2, cudaDevAttrMultiProcessorCount, 2), cudaErrorInvalidDevice);
    cudaMemPool_t q;
    EXPECT(cudaDeviceGetDefaultMemPool(&q, 2), cudaErrorInvalidDevice);
    EXPECT(cudaDeviceGetMemPool(&q, 2), cudaErrorInvalidDevice);
    CK(cudaDeviceGetMemPool(&q, 1));
    CHECK(q == pool_of(1));
    CHECK(pool_of(0) != pool_of(1));
    CK(cudaSetDevice(0));
}

/* Two host threads: each has its own current device, and allocates on it. */
struct thread_arg {
    int dev;
    pthread_barrier_t *bar;
    int seen_before, seen_after, alloc_dev;
};

static void *device_thread(void *p)
{
    thread_arg *a = (thread_arg *)p;
    cudaGetDevice(&a->seen_before); /* 0: a new thread starts on device 0 */
    cudaSetDevice(a->dev);
    pthread_barrier_wait(a->bar); /* both have set theirs */
    pthread_barrier_wait(a->bar);
    cudaGetDevice(&a->seen_after);
    void *m = nullptr;
    cudaMalloc(&m, 1000);
    a->alloc_dev = pnsim_device_of(m);
    cudaFree(m);
    return nullptr;
}

static void test_current_device_per_thread(void)
{
    CK(cudaSetDevice(1)); /* the main thread's: not inherited */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, nullptr, 2);
    thread_arg a[2] = {{1, &bar, -1, -1, -1}, {0, &bar, -1, -1, -1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], nullptr, device_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], nullptr);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 2; i++) {
        CHECK(a[i].seen_before == 0);
        CHECK(a[i].seen_after == a[i].dev);
        CHECK(a[i].alloc_dev == a[i].dev);
    }
    int d = -1;
    CK(cudaGetDevice(&d));
    CHECK(d == 1);
    CK(cudaSetDevice(0));
}

/* ───────────────────────────── memory ───────────────────────────── */

static void test_memory_per_device(void)
{
    /* pnsim_device_of, and the range checks for memory of either device */
    CK(cudaSetDevice(1));
    char *m1 = (char *)dmalloc(4096);
    CK(cudaSetDevice(0));
    char *m0 = (char *)dmalloc(4096);
    void *h = nullptr;
    CK(cudaMallocHost(&h, 64));
    int on_stack = 0;
    CHECK(pnsim_device_of(m0) == 0 && pnsim_device_of(m0 + 4095) == 0);
    CHECK(pnsim_device_of(m1) == 1 && pnsim_device_of(m1 + 100) == 1);
    CHECK(pnsim_device_of(h) == -1 && pnsim_device_of(&on_stack) == -1);
    CK(cudaMemset(m1, 7, 4096)); /* another device's memory, from device 0 */
    EXPECT(cudaMemset(m1 + 4000, 7, 200), cudaErrorInvalidValue);
    CK(cudaFreeHost(h));

    /* cudaMemGetInfo: the current device's */
    size_t f0, t0, f1, t1;
    CK(cudaMemGetInfo(&f0, &t0));
    CK(cudaSetDevice(1));
    CK(cudaMemGetInfo(&f1, &t1));
    CHECK(t0 == LIMIT && t1 == LIMIT);
    void *big = dmalloc((size_t)1 << 20); /* on device 1 */
    size_t f1b, f0b;
    CK(cudaMemGetInfo(&f1b, &t1));
    CHECK(f1 - f1b == (size_t)1 << 20);
    CK(cudaSetDevice(0));
    CK(cudaMemGetInfo(&f0b, &t0));
    CHECK(f0b == f0);
    CK(cudaFree(big)); /* device 1's memory, freed while device 0 is current */
    CK(cudaSetDevice(1));
    CK(cudaMemGetInfo(&f1b, &t1));
    CHECK(f1b == f1);
    CK(cudaFree(m1));
    CK(cudaSetDevice(0));
    CK(cudaFree(m0));

    /* the limit applies to each device: a limit-sized allocation on each */
    size_t free0, total;
    CK(cudaMemGetInfo(&free0, &total));
    CHECK(free0 == LIMIT);
    void *all0 = dmalloc(LIMIT);
    void *more = nullptr;
    EXPECT(cudaMalloc(&more, 256), cudaErrorMemoryAllocation);
    CK(cudaSetDevice(1));
    void *all1 = dmalloc(LIMIT);
    CHECK(all1 != nullptr && pnsim_device_of(all1) == 1);
    EXPECT(cudaMallocAsync(&more, 256, 0), cudaErrorMemoryAllocation);
    CK(cudaFree(all1));
    CK(cudaSetDevice(0));
    CK(cudaFree(all0));
}

static void test_pools_per_device(void)
{
    if (pnsim_async()) return; /* its statistics right after cudaFreeAsync need the free to run at the call */
    cudaMemPool_t p0 = pool_of(0), p1 = pool_of(1);
    cudaStream_t s0, s1;
    CK(cudaStreamCreate(&s0));
    CK(cudaSetDevice(1));
    CK(cudaStreamCreate(&s1));
    uint64_t keep = (uint64_t)8 << 20;
    CK(cudaMemPoolSetAttribute(p1, cudaMemPoolAttrReleaseThreshold, &keep));
    CHECK(pool_attr(p1, cudaMemPoolAttrReleaseThreshold) == keep);
    CHECK(pool_attr(p0, cudaMemPoolAttrReleaseThreshold) == 0);
    uint64_t used0 = pool_attr(p0, cudaMemPoolAttrUsedMemCurrent);
    uint64_t res0 = pool_attr(p0, cudaMemPoolAttrReservedMemCurrent);

    /* device 1's allocations count in device 1's pool only */
    void *a = nullptr, *b = nullptr;
    CK(cudaMallocAsync(&a, 100000, s1));
    CK(cudaMallocFromPoolAsync(&b, 3000, p1, s1));
    CHECK(pnsim_device_of(a) == 1 && pnsim_device_of(b) == 1);
    uint64_t used1 = pool_attr(p1, cudaMemPoolAttrUsedMemCurrent);
    CHECK(used1 >= 103000);
    CHECK(pool_attr(p0, cudaMemPoolAttrUsedMemCurrent) == used0);

    /* freed from device 0 (on device 0's stream): back to device 1's pool, cached */
    CK(cudaSetDevice(0));
    CK(cudaFreeAsync(a, s0));
    CK(cudaFreeAsync(b, s0));
    CHECK(pool_attr(p1, cudaMemPoolAttrUsedMemCurrent) == 0);
    CHECK(pool_attr(p1, cudaMemPoolAttrReservedMemCurrent) == used1);
    CHECK(pool_attr(p0, cudaMemPoolAttrUsedMemCurrent) == used0);
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) == res0);
    CK(cudaSetDevice(1));
    void *again = nullptr;
    CK(cudaMallocAsync(&again, 100000, s1)); /* the cached block comes back */
    CHECK(again == a);
    CK(cudaFreeAsync(again, s1));

    /* a device's allocation on device 0's pool, through the pool handle, while device 0 is
     * current; and synchronization trims the pool concerned only */
    CK(cudaSetDevice(0));
    void *c = nullptr;
    CK(cudaMallocFromPoolAsync(&c, 1 << 20, p0, s0));
    CHECK(pnsim_device_of(c) == 0);
    CK(cudaFreeAsync(c, s0));
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) >= (uint64_t)1 << 20);
    CK(cudaSetDevice(1));
    CK(cudaDeviceSynchronize()); /* device 1's: device 0's pool keeps its cache */
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) >= (uint64_t)1 << 20);
    CHECK(pool_attr(p1, cudaMemPoolAttrReservedMemCurrent) == used1); /* under its threshold */
    CK(cudaStreamSynchronize(s0)); /* device 0's stream, from device 1: device 0's pool */
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) == 0);

    /* event synchronize: the event's device's pool */
    CK(cudaSetDevice(0));
    cudaEvent_t e0;
    CK(cudaEventCreate(&e0));
    CK(cudaMallocAsync(&c, 1 << 20, s0));
    CK(cudaFreeAsync(c, s0));
    CK(cudaEventRecord(e0, s0));
    CK(cudaSetDevice(1));
    CK(cudaEventSynchronize(e0));
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) == 0);
    CK(cudaEventDestroy(e0));

    /* device 1's pool by its handle, device 0 current and its stream: device 1's memory */
    CK(cudaSetDevice(0));
    void *from1 = nullptr;
    CK(cudaMallocFromPoolAsync(&from1, 5000, p1, s0));
    CHECK(pnsim_device_of(from1) == 1);
    CK(cudaFreeAsync(from1, s0));

    /* a trim acts on the pool named */
    CK(cudaMallocAsync(&c, 1 << 20, s0));
    CK(cudaFreeAsync(c, s0));
    CK(cudaMemPoolTrimTo(p1, 0));
    CHECK(pool_attr(p1, cudaMemPoolAttrReservedMemCurrent) == 0);
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) >= (uint64_t)1 << 20);
    CK(cudaMemPoolTrimTo(p0, 0));
    CHECK(pool_attr(p0, cudaMemPoolAttrReservedMemCurrent) == 0);
    /* a reset of the high-water mark too */
    uint64_t zero = 0;
    CHECK(pool_attr(p1, cudaMemPoolAttrUsedMemHigh) >= 103000);
    CK(cudaMemPoolSetAttribute(p1, cudaMemPoolAttrUsedMemHigh, &zero));
    CHECK(pool_attr(p1, cudaMemPoolAttrUsedMemHigh) == 0);
    CHECK(pool_attr(p0, cudaMemPoolAttrUsedMemHigh) >= (uint64_t)1 << 20);
    CK(cudaMemPoolSetAttribute(p1, cudaMemPoolAttrReleaseThreshold, &zero));
    CK(cudaStreamDestroy(s0)); /* any device may destroy */
    CK(cudaStreamDestroy(s1));
}

/* ───────────────────────────── streams and events ───────────────────────────── */

static int g_host_calls;
static void count_call(void *) { g_host_calls++; }

static void test_wrong_device_stream_work(void)
{
    const int n = 256;
    CK(cudaSetDevice(1));
    cudaStream_t s1;
    cudaEvent_t e1;
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CK(cudaEventCreate(&e1));
    float *x1 = (float *)dmalloc(n * sizeof(float)), *y1 = (float *)dmalloc(n * sizeof(float));
    CK(cudaMemset(y1, 0, n * sizeof(float)));
    CK(cudaSetDevice(0));
    cudaStream_t s0;
    cudaEvent_t e0;
    CK(cudaStreamCreate(&s0));
    CK(cudaEventCreate(&e0));
    float h[n];
    for (int i = 0; i < n; i++) h[i] = rnd();

    /* device 0 current, device 1's stream: every kind of queued work is refused */
    PNG_LAUNCH(affine_kernel, 1, 64, 0, s1, x1, y1, 2.0f, 1.0f, n);
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    WRONG_DEVICE(cudaMemcpyAsync(x1, h, sizeof h, cudaMemcpyHostToDevice, s1));
    WRONG_DEVICE(cudaMemcpy2DAsync(x1, 64, h, 64, 64, 4, cudaMemcpyHostToDevice, s1));
    WRONG_DEVICE(cudaMemsetAsync(y1, 0x7f, n * sizeof(float), s1));
    g_symbol = 5.0f;
    WRONG_DEVICE(
        cudaMemcpyToSymbolAsync(g_symbol, h, sizeof(float), 0, cudaMemcpyHostToDevice, s1));
    CHECK(g_symbol == 5.0f);
    void *p = nullptr;
    WRONG_DEVICE(cudaMallocAsync(&p, 1000, s1));
    WRONG_DEVICE(cudaMallocFromPoolAsync(&p, 1000, pool_of(1), s1));
    WRONG_DEVICE(cudaMallocFromPoolAsync(&p, 1000, pool_of(0), s1));
    CK(cudaSetDevice(1));
    CK(cudaMallocAsync(&p, 1000, s1));
    CK(cudaSetDevice(0));
    uint64_t used1 = pool_attr(pool_of(1), cudaMemPoolAttrUsedMemCurrent);
    WRONG_DEVICE(cudaFreeAsync(p, s1));
    CHECK(pool_attr(pool_of(1), cudaMemPoolAttrUsedMemCurrent) == used1); /* not freed */
    WRONG_DEVICE(cudaEventRecord(e1, s1));
    WRONG_DEVICE(cudaEventRecord(e0, s1));
    g_host_calls = 0;
    WRONG_DEVICE(cudaLaunchHostFunc(s1, count_call, nullptr));
    CHECK(g_host_calls == 0);
    WRONG_DEVICE(cudaStreamWaitEvent(s1, e0, 0));
    float got[n];
    CK(cudaMemcpy(got, y1, sizeof got, cudaMemcpyDeviceToHost));
    bool untouched = true; /* neither the launch nor the memset ran */
    for (int i = 0; i < n; i++) untouched &= got[i] == 0.0f;
    CHECK(untouched);
    /* what any device may do with another's stream or event */
    CK(cudaStreamSynchronize(s1));
    CK(cudaStreamQuery(s1));
    CK(cudaEventQuery(e1));

    /* the same work on the right device succeeds; the legacy stream follows the current one */
    CK(cudaSetDevice(1));
    g_host_calls = 0;
    CK(cudaLaunchHostFunc(s1, count_call, nullptr));
    CK(cudaLaunchHostFunc(0, count_call, nullptr));
    CHECK(g_host_calls == 2);
    CK(cudaFreeAsync(p, s1));
    CK(cudaMemsetAsync(y1, 0, 16, cudaStreamPerThread));
    CK(cudaMemcpyToSymbolAsync(g_symbol, h, sizeof(float), 0, cudaMemcpyHostToDevice, s1));
    CHECK(g_symbol == h[0]);
    WRONG_DEVICE(cudaMemsetAsync(y1, 0, 16, s0));

    /* events: recorded only on a stream of their own device, current */
    WRONG_DEVICE(cudaEventRecord(e0, s1)); /* device 0's event, device 1's stream */
    WRONG_DEVICE(cudaEventRecord(e0, 0));  /* device 0's event, device 1's legacy stream */
    CK(cudaEventRecord(e1, s1));
    CK(cudaEventRecord(e1, 0));
    /* a stream waits on another device's event: how dependencies cross devices */
    CK(cudaSetDevice(0));
    CK(cudaStreamWaitEvent(s0, e1, 0));
    CK(cudaStreamWaitEvent(0, e1, 0));
    CK(cudaEventRecord(e0, s0));
    float ms;
    EXPECT(cudaEventElapsedTime(&ms, e0, e1), cudaErrorInvalidResourceHandle);
    CK(cudaSetDevice(1));
    CK(cudaStreamWaitEvent(s1, e0, 0));
    CK(cudaEventSynchronize(e0));
    CK(cudaFree(x1));
    CK(cudaFree(y1));
    CK(cudaStreamDestroy(s1));
    CK(cudaEventDestroy(e1));
    CK(cudaSetDevice(0));
    CK(cudaStreamDestroy(s0));
    CK(cudaEventDestroy(e0));
}

/* A kernel on device 1 writes device 1's memory; the result goes to device 0's memory (1D and
 * 2D, explicit and Default kinds) and to the host. */
static void test_cross_device_copies(void)
{
    const int n = 3000;
    static float h[n], got[n];
    for (int i = 0; i < n; i++) h[i] = rnd();
    const float a = rnd(), b = rnd();
    CK(cudaSetDevice(1));
    cudaStream_t s1;
    CK(cudaStreamCreate(&s1));
    float *x1 = (float *)dmalloc(sizeof h), *y1 = (float *)dmalloc(sizeof h);
    CK(cudaMemcpyAsync(x1, h, sizeof h, cudaMemcpyHostToDevice, s1));
    PNG_LAUNCH(affine_kernel, 4, 128, 0, s1, x1, y1, a, b, n);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(s1));
    CK(cudaSetDevice(0));
    cudaStream_t s0;
    CK(cudaStreamCreate(&s0));
    float *y0 = (float *)dmalloc(sizeof h), *z0 = (float *)dmalloc(sizeof h);
    CK(cudaMemsetAsync(y0, 0, sizeof h, s0));
    CK(cudaMemcpyAsync(y0, y1, sizeof h, cudaMemcpyDeviceToDevice, s0));
    CK(cudaMemcpy(z0, y1, sizeof h, cudaMemcpyDefault));
    CK(cudaMemcpyAsync(got, y0, sizeof got, cudaMemcpyDeviceToHost, s0));
    CK(cudaStreamSynchronize(s0));
    int bad = 0;
    for (int i = 0; i < n; i++) bad += fabsf(got[i] - (a * h[i] + b)) > 1e-6f;
    CHECK(bad == 0);
    CK(cudaMemcpy(got, z0, sizeof got, cudaMemcpyDeviceToHost));
    bad = 0;
    for (int i = 0; i < n; i++) bad += fabsf(got[i] - (a * h[i] + b)) > 1e-6f;
    CHECK(bad == 0);
    /* 2D: every other row of 100 floats from device 1 into device 0, packed */
    CK(cudaMemset(z0, 0, sizeof h));
    CK(cudaMemcpy2DAsync(z0, 100 * sizeof(float), y1, 200 * sizeof(float), 100 * sizeof(float),
                         n / 200, cudaMemcpyDeviceToDevice, s0));
    CK(cudaMemcpy(got, z0, sizeof got, cudaMemcpyDeviceToHost));
    bad = 0;
    for (int r = 0; r < n / 200; r++)
        for (int c = 0; c < 100; c++)
            bad += fabsf(got[r * 100 + c] - (a * h[r * 200 + c] + b)) > 1e-6f;
    CHECK(bad == 0);
    CK(cudaFree(y1)); /* device 1's, freed from device 0 */
    CK(cudaFree(x1));
    CK(cudaFree(y0));
    CK(cudaFree(z0));
    CK(cudaStreamDestroy(s0));
    CK(cudaStreamDestroy(s1));
}

/* cudaFuncSetAttribute(MaxDynamicSharedMemorySize) holds for the device current at the call. */
static void test_func_attribute_per_device(void)
{
    const int n = 16384; /* 64 KiB of floats: over the 48 KiB default */
    const size_t smem = n * sizeof(float);
    static float h[n], got[n];
    for (int i = 0; i < n; i++) h[i] = rnd();
    auto k = reverse_smem_kernel;
    float *in[2], *out[2];
    for (int d = 0; d < 2; d++) {
        CK(cudaSetDevice(d));
        in[d] = (float *)dmalloc(smem);
        out[d] = (float *)dmalloc(smem);
        CK(cudaMemcpy(in[d], h, smem, cudaMemcpyHostToDevice));
    }
    CK(cudaSetDevice(0));
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    PNG_LAUNCH(k, 1, 256, smem, 0, in[0], out[0], n);
    CK(cudaGetLastError());
    CK(cudaSetDevice(1)); /* not set on device 1 */
    CK(cudaMemset(out[1], 0, smem));
    PNG_LAUNCH(k, 1, 256, smem, 0, in[1], out[1], n);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    int blocks = -1;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 256, smem));
    CHECK(blocks == 0);
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k, 256, smem));
    CHECK(blocks > 0);
    PNG_LAUNCH(k, 1, 256, smem, 0, in[1], out[1], n);
    CK(cudaGetLastError());
    for (int d = 0; d < 2; d++) {
        CK(cudaMemcpy(got, out[d], smem, cudaMemcpyDeviceToHost));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += got[i] != h[n - 1 - i];
        CHECK(bad == 0);
        CK(cudaFree(in[d]));
        CK(cudaFree(out[d]));
    }
    CK(cudaSetDevice(0));
}

/* ───────────────────────────── architectures ───────────────────────────── */

/* An architecture's figures as the CUDA programming guide's technical specifications per
 * compute capability give them: resident threads and blocks per SM, shared memory per SM, the
 * part CUDA reserves per block, and the opt-in maximum per block. */
struct arch_figures {
    int cc, threads_per_sm, blocks_per_sm, smem_per_sm, reserved, optin;
};
static const arch_figures FIGURES[] = {
    {70, 2048, 32, 98304, 0, 98304},       {75, 1024, 16, 65536, 0, 65536},
    {80, 2048, 32, 167936, 1024, 166912},  {86, 1536, 16, 102400, 1024, 101376},
    {87, 1536, 16, 167936, 1024, 166912},  {89, 1536, 24, 102400, 1024, 101376},
    {90, 2048, 32, 233472, 1024, 232448},  {100, 2048, 32, 233472, 1024, 232448},
    {120, 1536, 24, 102400, 1024, 101376},
};

static const arch_figures *figures_of(int cc)
{
    for (const arch_figures &f : FIGURES)
        if (f.cc == cc) return &f;
    return nullptr;
}

static int device_attr(cudaDeviceAttr attr, int dev)
{
    int v = -1;
    CK(cudaDeviceGetAttribute(&v, attr, dev));
    return v;
}

/* The blocks per SM the occupancy calculator gives with dev current. */
static int occupancy(const void *kernel, int block, size_t smem)
{
    int blocks = -1;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, block, smem));
    return blocks;
}

static int imin(int a, int b) { return a < b ? a : b; }

/* The resident blocks per SM of blocks of `block` threads with smem (> 0) bytes each on f: the
 * fewest of the thread, block and shared-memory limits. */
static int want_blocks(const arch_figures &f, int block, int smem)
{
    return imin(imin(f.threads_per_sm / block, f.blocks_per_sm), f.smem_per_sm / (smem + f.reserved));
}

/* Device dev reports architecture f with opt-in optin in its properties and attributes alike,
 * and the occupancy calculator counts with its figures. */
static void check_figures(int dev, const arch_figures &f, int optin)
{
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    char name[64];
    snprintf(name, sizeof name, "(sm_%d)", f.cc);
    CHECK(strstr(p.name, name) != nullptr);
    CHECK(p.major == f.cc / 10 && p.minor == f.cc % 10);
    CHECK(p.maxThreadsPerMultiProcessor == f.threads_per_sm);
    CHECK(p.maxBlocksPerMultiProcessor == f.blocks_per_sm);
    CHECK(p.sharedMemPerMultiprocessor == (size_t)f.smem_per_sm);
    CHECK(p.reservedSharedMemPerBlock == (size_t)f.reserved);
    CHECK(p.sharedMemPerBlockOptin == (size_t)optin);
    CHECK(p.sharedMemPerBlock == 48 * 1024 && p.maxThreadsPerBlock == 1024);
    CHECK(device_attr(cudaDevAttrComputeCapabilityMajor, dev) == p.major);
    CHECK(device_attr(cudaDevAttrComputeCapabilityMinor, dev) == p.minor);
    CHECK(device_attr(cudaDevAttrMaxThreadsPerMultiProcessor, dev) == f.threads_per_sm);
    CHECK(device_attr(cudaDevAttrMaxBlocksPerMultiprocessor, dev) == f.blocks_per_sm);
    CHECK(device_attr(cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) == f.smem_per_sm);
    CHECK(device_attr(cudaDevAttrReservedSharedMemoryPerBlock, dev) == f.reserved);
    CHECK(device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == optin);
    CHECK(device_attr(cudaDevAttrMaxSharedMemoryPerBlock, dev) == 48 * 1024);
    CHECK(device_attr(cudaDevAttrMultiProcessorCount, dev) == p.multiProcessorCount);
    CK(cudaSetDevice(dev));
    auto k = reverse_smem_kernel;
    const void *kv = (const void *)k;
    /* by threads and blocks per SM; by shared memory (with its reserve per block) */
    CHECK(occupancy(kv, 32, 0) == imin(f.threads_per_sm / 32, f.blocks_per_sm));
    CHECK(occupancy(kv, 128, 0) == imin(f.threads_per_sm / 128, f.blocks_per_sm));
    CHECK(occupancy(kv, 1024, 0) == f.threads_per_sm / 1024);
    CHECK(occupancy(kv, 64, 20000) == want_blocks(f, 64, 20000));
    CHECK(occupancy(kv, 64, 48 * 1024 + 256) == 0); /* over the kernel's limit, not yet raised */
}

/* Launches reverse_smem_kernel on the current device with smem bytes of dynamic shared
 * memory: whether the launch was accepted (and then that it computed the reverse). */
static bool reverse_launch(size_t smem)
{
    const int n = (int)(smem / sizeof(float));
    static float h[(232448 + 256) / sizeof(float)], got[(232448 + 256) / sizeof(float)];
    for (int i = 0; i < n; i++) h[i] = rnd();
    float *in = (float *)dmalloc(smem), *out = (float *)dmalloc(smem);
    CK(cudaMemcpy(in, h, smem, cudaMemcpyHostToDevice));
    PNG_LAUNCH(reverse_smem_kernel, 1, 256, smem, 0, in, out, n);
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaSuccess || e == cudaErrorInvalidValue);
    if (e == cudaSuccess) {
        CK(cudaMemcpy(got, out, smem, cudaMemcpyDeviceToHost));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += got[i] != h[n - 1 - i];
        CHECK(bad == 0);
    }
    CK(cudaFree(in));
    CK(cudaFree(out));
    return e == cudaSuccess;
}

/* Whether a launch without a kernel named (no cudaFuncSetAttribute limit) of smem bytes is
 * accepted on the current device. */
static bool unnamed_launch(size_t smem)
{
    pnsim_launch(dim3(1), dim3(32), smem, 0, [] {});
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaSuccess || e == cudaErrorInvalidValue);
    return e == cudaSuccess;
}

/* The devices have the architectures of ccs (a comma-separated list, one entry per device)
 * and, when optin_cap > 0, opt-in limits lowered to it: each device's figures through every
 * route, and its opt-in shared memory enforced at cudaFuncSetAttribute and at launch, on that
 * device only: 150 KiB allowed and launched on devices whose opt-in holds it, refused on the
 * others, even after another device allowed it. */
/* Contexts as CUDA 12 makes them, in a fresh process of three devices: counting, properties,
 * attributes, pools and peer queries make none; an allocation, a stream or a launch makes the
 * current device's (device 0 on a thread that never chose one); cudaSetDevice makes its
 * device's. */
static void check_contexts(void)
{
    int n = 0, v = 0, can = 0;
    CK(cudaGetDeviceCount(&n));
    CHECK(n == 3);
    for (int d = 0; d < n; d++) {
        cudaDeviceProp prop;
        cudaMemPool_t pool;
        CK(cudaGetDeviceProperties(&prop, d));
        CK(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryPoolsSupported, d));
        CK(cudaDeviceGetDefaultMemPool(&pool, d));
        CK(cudaDeviceCanAccessPeer(&can, d, (d + 1) % n));
    }
    for (int d = 0; d < n; d++) CHECK(!pnsim_device_has_context(d));
    std::thread([] { /* a thread that never chose a device allocates on device 0 */
        void *p = nullptr;
        CK(cudaMallocHost(&p, 64));
        CK(cudaFreeHost(p));
    }).join();
    CHECK(pnsim_device_has_context(0) && !pnsim_device_has_context(1) && !pnsim_device_has_context(2));
    CK(cudaSetDevice(2));
    CHECK(pnsim_device_has_context(2) && !pnsim_device_has_context(1));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaStreamDestroy(s));
    CK(cudaSetDevice(0));
    CHECK(!pnsim_device_has_context(1));
    CHECK(!pnsim_device_has_context(-1) && !pnsim_device_has_context(99));
}

static void check_architectures(const char *ccs, long optin_cap)
{
    int want[8], n = 0;
    for (const char *p = ccs; *p && n < 8; p += strcspn(p, ","), p += *p == ',')
        want[n++] = atoi(p);
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    CHECK(count == n);
    if (count != n) return;
    auto k = reverse_smem_kernel;
    const size_t mid = 150 * 1024;
    for (int d = 0; d < n; d++) {
        const arch_figures *f = figures_of(want[d]);
        CHECK(f != nullptr);
        if (!f) continue;
        int optin = f->optin;
        if (optin_cap > 0 && optin_cap < optin) optin = optin_cap < 48 * 1024 ? 48 * 1024 : (int)optin_cap;
        check_figures(d, *f, optin);
        CK(cudaSetDevice(d));
        const bool holds = mid <= (size_t)optin;
        EXPECT(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)mid),
               holds ? cudaSuccess : cudaErrorInvalidValue);
        CHECK(reverse_launch(mid) == holds);
        EXPECT(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin + 1),
               cudaErrorInvalidValue);
        CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
        CHECK(occupancy((const void *)k, 64, optin) == want_blocks(*f, 64, optin));
        CHECK(reverse_launch(optin));
        CHECK(!reverse_launch(optin + 256));
        CHECK(unnamed_launch(optin) && !unnamed_launch(optin + 256));
    }
    /* again, now that every device has set the kernel's limit to its own opt-in */
    for (int d = 0; d < n; d++) {
        const arch_figures *f = figures_of(want[d]);
        if (!f) continue;
        CK(cudaSetDevice(d));
        const bool holds = mid <= (size_t)device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin, d);
        CHECK(reverse_launch(mid) == holds);
    }
    CK(cudaSetDevice(0));
}

/* ───────────────────────────── library stand-ins ───────────────────────────── */

/* Each library: a handle made on device 0 runs with device 0 current on device 0's stream
 * (checked against a reference on random data), and fails with the library's execution
 * status with device 1 current or on device 1's stream, leaving its output alone. */
struct two_streams {
    cudaStream_t s0, s1;
};

static two_streams make_streams(void)
{
    two_streams t;
    CK(cudaSetDevice(1));
    CK(cudaStreamCreate(&t.s1));
    CK(cudaSetDevice(0));
    CK(cudaStreamCreate(&t.s0));
    return t;
}

static void free_streams(two_streams t)
{
    CK(cudaStreamDestroy(t.s0));
    CK(cudaStreamDestroy(t.s1));
}

static bool all_equal(const float *p, int n, float v)
{
    for (int i = 0; i < n; i++)
        if (p[i] != v) return false;
    return true;
}

static void test_cublaslt_device(void)
{
    two_streams t = make_streams();
    const int m = 3, k = 4, n = 5;
    float A[m * k], B[k * n], D[m * n];
    for (float &v : A) v = rnd();
    for (float &v : B) v = rnd();
    float *dA = (float *)dmalloc(sizeof A), *dB = (float *)dmalloc(sizeof B),
          *dD = (float *)dmalloc(sizeof D);
    CK(cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice));
    CK(cudaMemset(dD, 0, sizeof D));
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, m, k, m) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, k) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m) == CUBLAS_STATUS_SUCCESS);
    const float one = 1.0f, zero = 0.0f;
#define LT_MATMUL(stream)                                                                      \
    cublasLtMatmul(h, desc, &one, dA, la, dB, lb, &zero, dD, ld, dD, ld, nullptr, nullptr, 0, \
                   (stream))
    CK(cudaSetDevice(1));
    CHECK(LT_MATMUL(t.s0) == CUBLAS_STATUS_EXECUTION_FAILED);
    CHECK(LT_MATMUL(t.s1) == CUBLAS_STATUS_EXECUTION_FAILED);
    CK(cudaSetDevice(0));
    CHECK(LT_MATMUL(t.s1) == CUBLAS_STATUS_EXECUTION_FAILED);
    CK(cudaMemcpy(D, dD, sizeof D, cudaMemcpyDeviceToHost));
    CHECK(all_equal(D, m * n, 0.0f));
    CHECK(LT_MATMUL(t.s0) == CUBLAS_STATUS_SUCCESS);
    CHECK(LT_MATMUL(0) == CUBLAS_STATUS_SUCCESS);
#undef LT_MATMUL
    CK(cudaMemcpy(D, dD, sizeof D, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double want = 0;
            for (int l = 0; l < k; l++) want += (double)A[i + l * m] * B[l + j * k];
            bad += fabs(D[i + j * m] - want) > 1e-5;
        }
    CHECK(bad == 0);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
    CK(cudaFree(dA));
    CK(cudaFree(dB));
    CK(cudaFree(dD));
    free_streams(t);
}

static void test_cublas_device(void)
{
    two_streams t = make_streams();
    const int m = 4, n = 3;
    float L[m * m], B[m * n], X[m * n];
    for (int j = 0; j < m; j++) /* lower triangular, dominant diagonal */
        for (int i = 0; i < m; i++) L[i + j * m] = i < j ? 0.0f : i == j ? 2.0f + rnd() : rnd();
    for (float &v : B) v = rnd();
    float *dL = (float *)dmalloc(sizeof L), *dX = (float *)dmalloc(sizeof B);
    CK(cudaMemcpy(dL, L, sizeof L, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dX, B, sizeof B, cudaMemcpyHostToDevice));
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    const float one = 1.0f;
#define TRSM()                                                                                 \
    cublasStrsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, \
                m, n, &one, dL, m, dX, m)
    CHECK(cublasSetStream(h, t.s0) == CUBLAS_STATUS_SUCCESS);
    CK(cudaSetDevice(1));
    CHECK(TRSM() == CUBLAS_STATUS_EXECUTION_FAILED);
    CK(cudaSetDevice(0));
    CHECK(cublasSetStream(h, t.s1) == CUBLAS_STATUS_SUCCESS);
    CHECK(TRSM() == CUBLAS_STATUS_EXECUTION_FAILED);
    const float *Ls[1] = {dL};
    float *Xs[1] = {dX};
    CHECK(cublasStrsmBatched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                             CUBLAS_DIAG_NON_UNIT, m, n, &one, Ls, m, Xs, m, 1) ==
          CUBLAS_STATUS_EXECUTION_FAILED);
    int piv[m], info[1];
    float *As[1] = {dL};
    CHECK(cublasSgetrfBatched(h, m, As, m, piv, info, 1) == CUBLAS_STATUS_EXECUTION_FAILED);
    CK(cudaMemcpy(X, dX, sizeof X, cudaMemcpyDeviceToHost));
    CHECK(memcmp(X, B, sizeof X) == 0);
    CHECK(cublasSetStream(h, t.s0) == CUBLAS_STATUS_SUCCESS);
    CHECK(TRSM() == CUBLAS_STATUS_SUCCESS);
#undef TRSM
    CK(cudaMemcpy(X, dX, sizeof X, cudaMemcpyDeviceToHost));
    int bad = 0; /* L X = B */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l <= i; l++) s += (double)L[i + l * m] * X[l + j * m];
            bad += fabs(s - B[i + j * m]) > 1e-5;
        }
    CHECK(bad == 0);
    cublasDestroy(h);
    CK(cudaFree(dL));
    CK(cudaFree(dX));
    free_streams(t);
}

static void test_cusolver_device(void)
{
    two_streams t = make_streams();
    const int n = 4;
    float M[n * n], A[n * n], R[n * n];
    for (float &v : M) v = rnd();
    for (int i = 0; i < n; i++) /* A = M M^T + n I: symmetric positive definite */
        for (int j = 0; j < n; j++) {
            double s = i == j ? n : 0;
            for (int l = 0; l < n; l++) s += (double)M[i + l * n] * M[j + l * n];
            A[i + j * n] = (float)s;
        }
    float *dA = (float *)dmalloc(sizeof A);
    int *info = (int *)dmalloc(sizeof(int));
    CK(cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice));
    cusolverDnHandle_t h;
    CHECK(cusolverDnCreate(&h) == CUSOLVER_STATUS_SUCCESS);
    int lwork = 0; /* the workspace potrf asks for (getrf's is the same size here) */
    CHECK(cusolverDnSpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, &lwork) ==
          CUSOLVER_STATUS_SUCCESS);
    CHECK(lwork > 1);
    float *work = (float *)dmalloc(sizeof(float) * (size_t)lwork);
    CHECK(cusolverDnSetStream(h, t.s1) == CUSOLVER_STATUS_SUCCESS);
    CHECK(cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, work, lwork, info) ==
          CUSOLVER_STATUS_EXECUTION_FAILED);
    int ipiv[n];
    CHECK(cusolverDnSgetrf(h, n, n, dA, n, work, ipiv, info) == CUSOLVER_STATUS_EXECUTION_FAILED);
    CHECK(cusolverDnSetStream(h, t.s0) == CUSOLVER_STATUS_SUCCESS);
    CK(cudaSetDevice(1));
    CHECK(cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, work, lwork, info) ==
          CUSOLVER_STATUS_EXECUTION_FAILED);
    lwork = 0; /* a size query needs no device */
    CHECK(cusolverDnSpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, &lwork) ==
          CUSOLVER_STATUS_SUCCESS);
    CK(cudaSetDevice(0));
    CK(cudaMemcpy(R, dA, sizeof R, cudaMemcpyDeviceToHost));
    CHECK(memcmp(R, A, sizeof R) == 0);
    /* less workspace than asked for, or host memory as the workspace: refused at the call */
    CHECK(cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, work, lwork - 1, info) ==
          CUSOLVER_STATUS_INVALID_VALUE);
    std::vector<float> host_work((size_t)lwork);
    CHECK(cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, host_work.data(), lwork, info) ==
          CUSOLVER_STATUS_INVALID_VALUE);
    CHECK(cusolverDnSgetrf(h, n, n, dA, n, host_work.data(), ipiv, info) == CUSOLVER_STATUS_INVALID_VALUE);
    CK(cudaMemcpy(R, dA, sizeof R, cudaMemcpyDeviceToHost));
    CHECK(memcmp(R, A, sizeof R) == 0);
    CHECK(cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n, work, lwork, info) ==
          CUSOLVER_STATUS_SUCCESS);
    CK(cudaMemcpy(R, dA, sizeof R, cudaMemcpyDeviceToHost));
    int bad = 0; /* L L^T = A, lower triangle */
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int l = 0; l <= j; l++) s += (double)R[i + l * n] * R[j + l * n];
            bad += fabs(s - A[i + j * n]) > 1e-4 * n;
        }
    CHECK(bad == 0);
    cusolverDnDestroy(h);
    CK(cudaFree(dA));
    CK(cudaFree(work));
    CK(cudaFree(info));
    free_streams(t);
}

static void test_cudnn_device(void)
{
    two_streams t = make_streams();
    const int W = 9, R = 3, Wo = W - R + 1; /* 1D as 2D: N = C = K = 1, H = 1 */
    float x[W], w[R], y[Wo];
    for (float &v : x) v = rnd();
    for (float &v : w) v = rnd();
    float *dx = (float *)dmalloc(sizeof x), *dw = (float *)dmalloc(sizeof w),
          *dy = (float *)dmalloc(sizeof y);
    CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dw, w, sizeof w, cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0, sizeof y));
    cudnnHandle_t h;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    CHECK(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnCreateTensorDescriptor(&xd) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnCreateTensorDescriptor(&yd) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnCreateFilterDescriptor(&wd) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnCreateConvolutionDescriptor(&cd) == CUDNN_STATUS_SUCCESS);
    const int xdims[4] = {1, 1, 1, W}, ydims[4] = {1, 1, 1, Wo}, wdims[4] = {1, 1, 1, R};
    const int pad[2] = {0, 0}, stride[2] = {1, 1}, dil[2] = {1, 1};
    CHECK(cudnnSetTensorNdDescriptorEx(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 4, xdims) ==
          CUDNN_STATUS_SUCCESS);
    CHECK(cudnnSetTensorNdDescriptorEx(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 4, ydims) ==
          CUDNN_STATUS_SUCCESS);
    CHECK(cudnnSetFilterNdDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, wdims) ==
          CUDNN_STATUS_SUCCESS);
    CHECK(cudnnSetConvolutionNdDescriptor(cd, 2, pad, stride, dil, CUDNN_CROSS_CORRELATION,
                                          CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
    const float one = 1.0f, zero = 0.0f;
    size_t ws = 0; /* a workspace query needs no device */
    CK(cudaSetDevice(1));
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd,
                                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                  &ws) == CUDNN_STATUS_SUCCESS);
    CK(cudaSetDevice(0));
    void *work = dmalloc(ws + 1);
#define CONV()                                                                                 \
    cudnnConvolutionForward(h, &one, xd, dx, wd, dw, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, \
                            work, ws, &zero, yd, dy)
    CHECK(cudnnSetStream(h, t.s1) == CUDNN_STATUS_SUCCESS);
    CHECK(CONV() == CUDNN_STATUS_EXECUTION_FAILED);
    float dgrad_dummy[W];
    CHECK(cudnnConvolutionBackwardData(h, &one, wd, dw, yd, dy, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
                                       work, ws, &zero, xd, dgrad_dummy) ==
          CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cudnnConvolutionBackwardFilter(h, &one, xd, dx, yd, dy, cd,
                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, work, ws, &zero,
                                         wd, dgrad_dummy) == CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cudnnSetStream(h, t.s0) == CUDNN_STATUS_SUCCESS);
    CK(cudaSetDevice(1));
    CHECK(CONV() == CUDNN_STATUS_EXECUTION_FAILED);
    CK(cudaSetDevice(0));
    CK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    CHECK(all_equal(y, Wo, 0.0f));
    CHECK(CONV() == CUDNN_STATUS_SUCCESS);
#undef CONV
    CK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int o = 0; o < Wo; o++) {
        double s = 0;
        for (int r = 0; r < R; r++) s += (double)x[o + r] * w[r];
        bad += fabs(y[o] - s) > 1e-5;
    }
    CHECK(bad == 0);
    cudnnDestroyTensorDescriptor(xd);
    cudnnDestroyTensorDescriptor(yd);
    cudnnDestroyFilterDescriptor(wd);
    cudnnDestroyConvolutionDescriptor(cd);
    cudnnDestroy(h);
    CK(cudaFree(work));
    CK(cudaFree(dx));
    CK(cudaFree(dw));
    CK(cudaFree(dy));
    free_streams(t);
}

static void test_cufft_device(void)
{
    two_streams t = make_streams();
    const int n = 8;
    cufftComplex x[n], y[n];
    for (cufftComplex &v : x) v.x = rnd(), v.y = rnd();
    cufftComplex *dx = (cufftComplex *)dmalloc(sizeof x), *dy = (cufftComplex *)dmalloc(sizeof y);
    CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0, sizeof y));
    cufftHandle plan;
    int dims[1] = {n};
    CHECK(cufftPlanMany(&plan, 1, dims, nullptr, 1, n, nullptr, 1, n, CUFFT_C2C, 1) ==
          CUFFT_SUCCESS);
    CK(cudaSetDevice(1));
    CHECK(cufftExecC2C(plan, dx, dy, CUFFT_FORWARD) == CUFFT_EXEC_FAILED);
    CK(cudaSetDevice(0));
    CHECK(cufftSetStream(plan, t.s1) == CUFFT_SUCCESS);
    CHECK(cufftExecC2C(plan, dx, dy, CUFFT_FORWARD) == CUFFT_EXEC_FAILED);
    CK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    CHECK(all_equal(&y[0].x, 2 * n, 0.0f));
    CHECK(cufftSetStream(plan, t.s0) == CUFFT_SUCCESS);
    CHECK(cufftExecC2C(plan, dx, dy, CUFFT_FORWARD) == CUFFT_SUCCESS);
    CK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int f = 0; f < n; f++) {
        double re = 0, im = 0;
        for (int j = 0; j < n; j++) {
            double ang = -2 * M_PI * f * j / n;
            re += x[j].x * cos(ang) - x[j].y * sin(ang);
            im += x[j].x * sin(ang) + x[j].y * cos(ang);
        }
        bad += fabs(y[f].x - re) > 1e-5 || fabs(y[f].y - im) > 1e-5;
    }
    CHECK(bad == 0);
    cufftDestroy(plan);
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    free_streams(t);
}

/* ───────────────────────────── the asynchronous mode ───────────────────────────── */

/* PONTE_SIM_ASYNC's tests (`test_gpusim_devices --async [NAME]`, which sets PONTE_SIM_ASYNC=1
 * unless set): each race repeats TRIALS times and counts the outcomes, which the seed fixes;
 * a race must show both the right and the wrong value (the mode can see the bug), and the
 * same work ordered by an event or a synchronization must always show the right one. */
static const int TRIALS = 64;

/* Two streams of device 0. */
struct stream_pair {
    cudaStream_t a, b;
};
static stream_pair make_pair(void)
{
    stream_pair t;
    CK(cudaStreamCreateWithFlags(&t.a, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&t.b, cudaStreamNonBlocking));
    return t;
}
static void free_pair(stream_pair t)
{
    CK(cudaStreamDestroy(t.a));
    CK(cudaStreamDestroy(t.b));
}

__global__ void fill_kernel(int *p, int n, int v)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = v;
}
__global__ void add_one_kernel(const int *x, int *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + 1;
}
static void fill(int *p, int n, int v, cudaStream_t s)
{
    PNG_LAUNCH(fill_kernel, (n + 127) / 128, 128, 0, s, p, n, v);
}
static void add_one(const int *x, int *y, int n, cudaStream_t s)
{
    PNG_LAUNCH(add_one_kernel, (n + 127) / 128, 128, 0, s, x, y, n);
}
/* The first element of device array p, read after a synchronization. */
static int first_of(const int *p)
{
    int v = 0;
    CK(cudaMemcpy(&v, p, sizeof v, cudaMemcpyDeviceToHost));
    return v;
}
/* Whether the race counts show both outcomes (and prints them). */
static bool both_seen(const char *what, int right, int wrong)
{
    printf("test_gpusim_devices: %s: %d right, %d wrong of %d\n", what, right, wrong, TRIALS);
    return right > 0 && wrong > 0;
}

/* ───────────────────────────── kernel pointer checks ───────────────────────────── */

/* Runs f with stderr going to a temporary file; what it wrote there (at most cap - 1 bytes) into
 * buf, NUL-terminated. */
template <typename F> static void stderr_of(char *buf, size_t cap, F f)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    if (saved < 0 || !tmp) {
        CHECK(!"stderr redirected");
        f();
        buf[0] = '\0';
        return;
    }
    dup2(fileno(tmp), 2);
    f();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t got = fread(buf, 1, cap - 1, tmp);
    buf[got] = '\0';
    fclose(tmp);
}
/* How many times needle occurs in text. */
static int count_of(const char *text, const char *needle)
{
    int c = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) c++;
    return c;
}
/* Grants (or revokes) device dev read-write access to pool. */
static void pool_access(cudaMemPool_t pool, int dev, bool on)
{
    cudaMemAccessDesc d = {};
    d.location.type = cudaMemLocationTypeDevice;
    d.location.id = dev;
    d.flags = on ? cudaMemAccessFlagsProtReadWrite : cudaMemAccessFlagsProtNone;
    CK(cudaMemPoolSetAccess(pool, &d, 1));
}

/* add_one_kernel's parameters in a struct, the pointers at bytes 8 and 16 (as a strided-view
 * descriptor or a pointer array carries them), opted in to the launch check; `unused` is not
 * (the kernel never reads it). */
struct add_one_args {
    int n;
    const int *x;
    int *y;
    const int *unused;
};
static inline void pnsim_param_pointers(const add_one_args &a, pnsim_param_visit &v)
{
    v.ptr(a.x);
    v.ptr(a.y);
}
__global__ void add_one_struct_kernel(add_one_args a)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < a.n) a.y[i] = a.x[i] + 1;
}
/* A parameter block that a kernel gets a pointer to, opted in to the launch check word by
 * word (as generated kernels' blocks are). */
struct param_block {
    size_t size;
    unsigned char bytes[64];
};
static inline void pnsim_param_pointers(const param_block &b, pnsim_param_visit &v)
{
    v.words(b.bytes, b.size);
}
__global__ void add_one_block_kernel(const param_block *p)
{
    add_one_args a;
    memcpy(&a, p->bytes, sizeof a);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < a.n) a.y[i] = a.x[i] + 1;
}

/* How add_one_passed hands the kernel its pointers. */
enum { BY_POINTER, BY_STRUCT, BY_BLOCK, PASSINGS };
/* y[i] = x[i] + 1 on stream s (run at the call: not for PONTE_SIM_ASYNC), the pointers
 * passed as `how` says. */
static void add_one_passed(int how, const int *x, int *y, int n, cudaStream_t s)
{
    const add_one_args a = {n, x, y, nullptr};
    const unsigned blocks = (unsigned)(n + 127) / 128 + (n == 0);
    if (how == BY_POINTER) {
        PNG_LAUNCH(add_one_kernel, blocks, 128, 0, s, x, y, n);
    } else if (how == BY_STRUCT) {
        PNG_LAUNCH(add_one_struct_kernel, blocks, 128, 0, s, a);
    } else {
        param_block b = {};
        b.size = sizeof a;
        memcpy(b.bytes, &a, sizeof a);
        PNG_LAUNCH(add_one_block_kernel, blocks, 128, 0, s, &b);
    }
}

/* A kernel on device 1 handed pointers (as pointers, in a struct's pointer fields, in a
 * parameter block it gets a pointer to) into device 0's pool memory is refused with cudaErrorIllegalAddress and a
 * diagnostic naming the parameter, the pointer and both devices until device 0's pool grants
 * device 1 access; into device 0's cudaMalloc memory always (no peer access); into a pool
 * block already freed too (use after free), not once the block is allocated again. Null,
 * own-device and pinned host pointers pass, and so does a struct field not opted in. */
static void test_kernel_pointer_access(void)
{
    if (pnsim_async()) return; /* checked at the call here; test_async_kernel_pointer_access */
    const int n = 300;
    cudaMemPool_t p0 = pool_of(0), p1 = pool_of(1);
    pool_access(p0, 1, false);
    int *x0 = nullptr, *d0 = (int *)dmalloc(n * sizeof(int)), *h = nullptr;
    CK(cudaMallocAsync((void **)&x0, n * sizeof(int), 0));
    fill(x0, n, 7, 0);
    fill(d0, n, 7, 0);
    CK(cudaMallocHost((void **)&h, n * sizeof(int)));
    for (int i = 0; i < n; i++) h[i] = 7;
    CK(cudaSetDevice(1));
    CK(cudaMemPoolTrimTo(p1, 0)); /* an empty cache: a freed block is the one allocated next */
    int *y1 = nullptr;
    CK(cudaMallocAsync((void **)&y1, n * sizeof(int), 0));
    char err[4096], want[96];
    static const char *const words[PASSINGS] = {
        "parameter 0 holds", "parameter 0, field at byte 8 of it holds",
        "parameter 0, field at byte 16 of the struct it points to holds"};
    for (int how = 0; how < PASSINGS; how++) {
        CK(cudaMemset(y1, 0, n * sizeof(int)));
        stderr_of(err, sizeof err, [&] { add_one_passed(how, x0, y1, n, 0); });
        EXPECT(cudaGetLastError(), cudaErrorIllegalAddress);
        CHECK(first_of(y1) == 0); /* the grid did not run */
        snprintf(want, sizeof want, "%s %p, pool memory of another device", words[how], (void *)x0);
        CHECK(strstr(err, want) != nullptr);
        CHECK(strstr(err, "(memory of device 0, kernel launched on device 1)") != nullptr);
        stderr_of(err, sizeof err, [&] { add_one_passed(how, d0, y1, n, 0); });
        EXPECT(cudaGetLastError(), cudaErrorIllegalAddress);
        CHECK(strstr(err, "cudaMalloc memory of another device") != nullptr);
        add_one_passed(how, h, y1, n, 0); /* pinned host memory, and device 1's own */
        CK(cudaGetLastError());
        CHECK(first_of(y1) == 8);
        add_one_passed(how, nullptr, nullptr, 0, 0);
        CK(cudaGetLastError());
    }
    pool_access(p0, 1, true);
    for (int how = 0; how < PASSINGS; how++) {
        CK(cudaMemset(y1, 0, n * sizeof(int)));
        add_one_passed(how, x0, y1, n, 0);
        CK(cudaGetLastError());
        CHECK(first_of(y1) == 8);
        add_one_passed(how, d0, y1, n, 0); /* the pool's grant is not peer access */
        EXPECT(cudaGetLastError(), cudaErrorIllegalAddress);
    }
    pool_access(p0, 1, false);
    int *f1 = nullptr, *again = nullptr;
    CK(cudaMallocAsync((void **)&f1, n * sizeof(int), 0));
    fill(f1, n, 3, 0);
    CK(cudaFreeAsync(f1, 0));
    for (int how = 0; how < PASSINGS; how++) {
        stderr_of(err, sizeof err, [&] { add_one_passed(how, f1, y1, n, 0); });
        EXPECT(cudaGetLastError(), cudaErrorIllegalAddress);
        CHECK(strstr(err, "use after free (memory of device 1, kernel launched on device 1)") != nullptr);
    }
    const add_one_args stale = {n, h, y1, f1}; /* a field the kernel does not read: unchecked */
    PNG_LAUNCH(add_one_struct_kernel, 3, 128, 0, 0, stale);
    CK(cudaGetLastError());
    CK(cudaMallocAsync((void **)&again, n * sizeof(int), 0));
    CHECK(again == f1);
    fill(again, n, 3, 0);
    add_one_passed(BY_POINTER, again, y1, n, 0);
    CK(cudaGetLastError());
    CHECK(first_of(y1) == 4);
    CK(cudaFree(again));
    CK(cudaFree(y1));
    CK(cudaSetDevice(0));
    CK(cudaFreeHost(h));
    CK(cudaFree(d0));
    CK(cudaFree(x0));
}

/* A kernel on stream b reading what a kernel on stream a wrote: right every time after b waits
 * for an event a recorded; without the wait, sometimes stale. */
static void test_async_cross_stream(void)
{
    const int n = 300;
    int *x = (int *)dmalloc(n * sizeof(int)), *y = (int *)dmalloc(n * sizeof(int));
    stream_pair t = make_pair();
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    int right = 0, wrong = 0;
    for (int k = 0; k < TRIALS; k++) {
        CK(cudaMemset(x, 0, n * sizeof(int)));
        fill(x, n, 7 + k, t.a);
        CK(cudaEventRecord(ev, t.a));
        CK(cudaStreamWaitEvent(t.b, ev, 0));
        add_one(x, y, n, t.b);
        CK(cudaStreamSynchronize(t.b));
        right += first_of(y) == 8 + k;
    }
    CHECK(right == TRIALS);
    right = 0;
    for (int k = 0; k < TRIALS; k++) {
        CK(cudaMemset(x, 0, n * sizeof(int)));
        fill(x, n, 7 + k, t.a);
        add_one(x, y, n, t.b); /* no wait: a race */
        CK(cudaDeviceSynchronize());
        int v = first_of(y);
        CHECK(v == 8 + k || v == 1);
        (v == 8 + k ? right : wrong)++;
    }
    CHECK(both_seen("kernel on b without waiting for a", right, wrong));
    CK(cudaEventDestroy(ev));
    free_pair(t);
    CK(cudaFree(x));
    CK(cudaFree(y));
}

/* cudaEventQuery and cudaStreamQuery answer cudaErrorNotReady (not recorded as the last error)
 * while the work is pending, cudaSuccess once synchronized; an event never recorded is ready;
 * cudaEventElapsedTime is not ready before its records ran. */
static void test_async_queries(void)
{
    const int n = 256;
    int *x = (int *)dmalloc(n * sizeof(int));
    stream_pair t = make_pair();
    cudaEvent_t ev, start;
    CK(cudaEventCreate(&ev));
    CK(cudaEventCreate(&start));
    CK(cudaEventQuery(ev));
    int pending = 0, done = 0;
    for (int k = 0; k < TRIALS; k++) {
        CK(cudaEventRecord(start, t.a));
        fill(x, n, k, t.a);
        CK(cudaEventRecord(ev, t.a));
        cudaError_t qs = cudaStreamQuery(t.a), qe = cudaEventQuery(ev);
        CHECK(qs == cudaSuccess || qs == cudaErrorNotReady);
        CHECK(qe == cudaSuccess || qe == cudaErrorNotReady);
        CHECK(qe != cudaErrorNotReady || qs == cudaErrorNotReady); /* the record is last */
        CHECK(cudaPeekAtLastError() == cudaSuccess);
        float ms = -1;
        cudaError_t te = cudaEventElapsedTime(&ms, start, ev);
        CHECK(te == (qe == cudaSuccess ? cudaSuccess : cudaErrorNotReady));
        (qe == cudaErrorNotReady ? pending : done)++;
        CK(cudaEventSynchronize(ev));
        CK(cudaEventQuery(ev));
        CK(cudaStreamQuery(t.a));
        CK(cudaEventElapsedTime(&ms, start, ev));
        CHECK(ms >= 0);
    }
    CHECK(both_seen("event query right after the record", done, pending));
    CK(cudaEventDestroy(ev));
    CK(cudaEventDestroy(start));
    free_pair(t);
    CK(cudaFree(x));
}

/* The host reading a pinned buffer a copy on a stream fills: sometimes stale before
 * cudaStreamSynchronize, right after it. A copy into pageable memory is done when the call
 * returns (as CUDA); one from pageable memory takes the source as it was at the call. */
static void test_async_host_reads(void)
{
    const int n = 64;
    int *d = (int *)dmalloc(n * sizeof(int)), *h = nullptr;
    CK(cudaMallocHost((void **)&h, n * sizeof(int)));
    stream_pair t = make_pair();
    int right = 0, stale = 0, pageable[n];
    for (int k = 0; k < TRIALS; k++) {
        h[0] = -1;
        fill(d, n, k, t.a);
        CK(cudaMemcpyAsync(h, d, n * sizeof(int), cudaMemcpyDeviceToHost, t.a));
        (h[0] == k ? right : stale)++;
        CK(cudaStreamSynchronize(t.a));
        CHECK(h[0] == k && h[n - 1] == k);
        fill(d, n, 2 * k, t.a);
        CK(cudaMemcpyAsync(pageable, d, sizeof pageable, cudaMemcpyDeviceToHost, t.a));
        CHECK(pageable[0] == 2 * k && pageable[n - 1] == 2 * k);
        for (int i = 0; i < n; i++) pageable[i] = 3 * k;
        CK(cudaMemcpyAsync(d, pageable, sizeof pageable, cudaMemcpyHostToDevice, t.a));
        pageable[0] = -5; /* after the call: not what the copy takes */
        CK(cudaStreamSynchronize(t.a));
        CHECK(first_of(d) == 3 * k);
    }
    CHECK(both_seen("pinned host read before the synchronization", right, stale));
    free_pair(t);
    CK(cudaFreeHost(h));
    CK(cudaFree(d));
}

/* cudaFreeAsync returns a block to the pool when the free runs (pool used bytes drop then),
 * filled with 0xCD: a reader on another stream that did not wait sometimes reads the freed
 * block, a copy seeing the poison and a kernel refused (cudaErrorIllegalAddress, use after
 * free, checked when its grid runs); one the freeing stream waited for never does. A second
 * free of a block whose free is queued is refused at the call. A block freed and allocated
 * again is live: a kernel reading it runs. */
/* A block from cudaMallocAsync on stream a is usable on stream b only once a has reached the
 * allocation (an event wait orders it): without the wait, a kernel on b that runs first is
 * refused as an illegal address; with it, every run is right. */
static void test_async_alloc_order(void)
{
    const int n = 256;
    int *y = (int *)dmalloc(n * sizeof(int));
    stream_pair t = make_pair();
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    int right = 0, refused = 0;
    static char err[1 << 16];
    stderr_of(err, sizeof err, [&] {
        for (int ordered = 1; ordered >= 0; ordered--)
            for (int k = 0; k < TRIALS; k++) {
                int *x = nullptr;
                fill(y, n, 0, t.a); /* work queued on a ahead of the allocation */
                CK(cudaMallocAsync((void **)&x, n * sizeof(int), t.a));
                if (ordered) {
                    CK(cudaEventRecord(ev, t.a));
                    CK(cudaStreamWaitEvent(t.b, ev, 0));
                }
                fill(x, n, k, t.b);
                /* the refusal comes from the synchronization, or earlier (the kernel may run
                 * at its launch) as the last error */
                cudaError_t e = cudaDeviceSynchronize(), last = cudaGetLastError();
                const bool failed = e != cudaSuccess || last != cudaSuccess;
                CHECK(!failed || (!ordered && (e == cudaErrorIllegalAddress ||
                                               last == cudaErrorIllegalAddress)));
                if (!ordered) (failed ? refused : right)++;
                else CHECK(first_of(x) == k);
                CK(cudaFreeAsync(x, t.b));
                CK(cudaDeviceSynchronize());
            }
    });
    CHECK(both_seen("kernel on b using a's allocation without waiting", right, refused));
    CHECK(count_of(err, "stream-ordered allocation its stream has not reached") == refused);
    CK(cudaEventDestroy(ev));
    free_pair(t);
    CK(cudaFree(y));
}

static void test_async_free_poison(void)
{
    const int n = 512;
    int *y = (int *)dmalloc(n * sizeof(int)), *z = (int *)dmalloc(sizeof(int));
    stream_pair t = make_pair();
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const int poison = (int)0xCDCDCDCD;
    const uint64_t used = pool_attr(pool_of(0), cudaMemPoolAttrUsedMemCurrent);
    int right = 0, refused = 0, copied = 0, poisoned = 0;
    static char err[1 << 16];
    stderr_of(err, sizeof err, [&] {
        for (int ordered = 1; ordered >= 0; ordered--)
            for (int k = 0; k < TRIALS; k++) {
                CK(cudaMemset(y, 0, n * sizeof(int)));
                int *x = nullptr;
                CK(cudaMallocAsync((void **)&x, n * sizeof(int), t.a));
                fill(x, n, k, t.a);
                CK(cudaEventRecord(ev, t.a));
                CK(cudaStreamWaitEvent(t.b, ev, 0));
                add_one(x, y, n, t.b);
                CK(cudaMemcpyAsync(z, x, sizeof(int), cudaMemcpyDeviceToDevice, t.b));
                if (ordered) {
                    CK(cudaEventRecord(ev, t.b));
                    CK(cudaStreamWaitEvent(t.a, ev, 0));
                }
                CK(cudaFreeAsync(x, t.a));
                EXPECT(cudaFreeAsync(x, t.a), cudaErrorInvalidValue);
                cudaError_t e = cudaDeviceSynchronize(); /* the kernel's error, unless it ran
                                                            earlier at random */
                cudaGetLastError();
                CHECK(e == cudaSuccess || (!ordered && e == cudaErrorIllegalAddress));
                CHECK(pool_attr(pool_of(0), cudaMemPoolAttrUsedMemCurrent) == used);
                int v = first_of(y), w = first_of(z);
                CHECK(v == k + 1 || (!ordered && v == 0));
                CHECK(w == k || (!ordered && w == poison));
                if (!ordered) (v == k + 1 ? right : refused)++, (w == k ? copied : poisoned)++;
            }
    });
    CHECK(both_seen("kernel racing cudaFreeAsync", right, refused));
    CHECK(both_seen("copy racing cudaFreeAsync", copied, poisoned));
    CHECK(count_of(err, "use after free") == refused);
    /* freed (the pool keeps the block cached through the synchronization), then allocated
     * again before a kernel reads it: live, it runs */
    uint64_t keep = LIMIT, zero = 0;
    CK(cudaMemPoolSetAttribute(pool_of(0), cudaMemPoolAttrReleaseThreshold, &keep));
    int *x = nullptr, *again = nullptr;
    CK(cudaMallocAsync((void **)&x, n * sizeof(int), t.a));
    const uint64_t reserved = pool_attr(pool_of(0), cudaMemPoolAttrReservedMemCurrent);
    CK(cudaFreeAsync(x, t.a));
    CK(cudaStreamSynchronize(t.a));
    CHECK(pool_attr(pool_of(0), cudaMemPoolAttrReservedMemCurrent) == reserved);
    CK(cudaMallocAsync((void **)&again, n * sizeof(int), t.a));
    CK(cudaMemPoolSetAttribute(pool_of(0), cudaMemPoolAttrReleaseThreshold, &zero));
    CHECK(again == x);
    fill(again, n, 41, t.a);
    add_one(again, y, n, t.a);
    CK(cudaStreamSynchronize(t.a));
    CHECK(first_of(y) == 42);
    CK(cudaFreeAsync(again, t.a));
    CK(cudaEventDestroy(ev));
    free_pair(t);
    CK(cudaFree(z));
    CK(cudaFree(y));
}

/* Host functions run in stream order, after the stream's earlier work, not at the call
 * (sometimes); a destroyed stream's and event's queued work still runs. */
static int g_log[8], g_nlog;
static void log_call(void *p) { g_log[g_nlog++] = (int)(intptr_t)p; }
static void test_async_host_functions(void)
{
    const int n = 128;
    int *x = (int *)dmalloc(n * sizeof(int)), *h = nullptr;
    CK(cudaMallocHost((void **)&h, sizeof(int)));
    stream_pair t = make_pair();
    int at_call = 0, later = 0;
    for (int k = 0; k < TRIALS; k++) {
        g_nlog = 0;
        CK(cudaLaunchHostFunc(t.a, log_call, (void *)(intptr_t)1));
        fill(x, n, k, t.a);
        CK(cudaMemcpyAsync(h, x, sizeof(int), cudaMemcpyDeviceToHost, t.a));
        CK(cudaLaunchHostFunc(t.a, log_call, (void *)(intptr_t)2));
        CK(cudaLaunchHostFunc(t.b, log_call, (void *)(intptr_t)3));
        (g_nlog == 3 ? at_call : later)++;
        CK(cudaDeviceSynchronize());
        CHECK(g_nlog == 3 && h[0] == k);
        int one = -1, two = -1;
        for (int i = 0; i < g_nlog; i++) {
            if (g_log[i] == 1) one = i;
            if (g_log[i] == 2) two = i;
        }
        CHECK(one >= 0 && two > one);
    }
    CHECK(later > 0);
    printf("test_gpusim_devices: host functions: %d all run at the call, %d not\n", at_call,
           later);
    /* destroy does not wait, and does not drop the work */
    cudaStream_t s;
    cudaEvent_t ev;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaEventCreate(&ev));
    fill(x, n, 99, s);
    CK(cudaEventRecord(ev, s));
    CK(cudaStreamWaitEvent(t.b, ev, 0));
    CK(cudaEventDestroy(ev));
    CK(cudaStreamDestroy(s));
    add_one(x, x, n, t.b);
    CK(cudaStreamSynchronize(t.b));
    CHECK(first_of(x) == 100);
    /* the null stream runs after all earlier work of the device */
    fill(x, n, 5, t.a);
    add_one(x, x, n, 0);
    int v = 0;
    CK(cudaMemcpyAsync(&v, x, sizeof v, cudaMemcpyDeviceToHost, 0));
    CHECK(v == 6);
    free_pair(t);
    CK(cudaFreeHost(h));
    CK(cudaFree(x));
}

/* A stream of device 1 copying what a kernel on device 0 wrote: right after waiting for
 * device 0's event, sometimes stale without. */
static void test_async_cross_device(void)
{
    const int n = 200;
    int *x = (int *)dmalloc(n * sizeof(int));
    cudaStream_t s0, s1;
    cudaEvent_t ev;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    CK(cudaSetDevice(1));
    int *y = (int *)dmalloc(n * sizeof(int));
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    int right = 0, wrong = 0;
    for (int wait = 1; wait >= 0; wait--)
        for (int k = 0; k < TRIALS; k++) {
            CK(cudaSetDevice(0));
            CK(cudaMemset(x, 0, n * sizeof(int)));
            fill(x, n, 11 + k, s0);
            CK(cudaEventRecord(ev, s0));
            CK(cudaSetDevice(1));
            if (wait) CK(cudaStreamWaitEvent(s1, ev, 0));
            CK(cudaMemcpyAsync(y, x, n * sizeof(int), cudaMemcpyDeviceToDevice, s1));
            CK(cudaStreamSynchronize(s1));
            int v = first_of(y);
            CHECK(v == 11 + k || (!wait && v == 0));
            if (!wait) (v == 11 + k ? right : wrong)++;
            CK(cudaSetDevice(0));
            CK(cudaDeviceSynchronize());
        }
    CHECK(both_seen("device 1 copy without waiting for device 0", right, wrong));
    CK(cudaSetDevice(1));
    CK(cudaStreamDestroy(s1));
    CK(cudaFree(y));
    CK(cudaSetDevice(0));
    CK(cudaStreamDestroy(s0));
    CK(cudaEventDestroy(ev));
    CK(cudaFree(x));
}

/* A kernel queued on device 1 reading device 0's pool memory, whose pool grants device 1
 * access after the launch: the check runs when the grid runs, so the kernel is refused
 * (cudaErrorIllegalAddress) when it ran before the grant, and runs when after. */
static void test_async_kernel_pointer_access(void)
{
    const int n = 256;
    cudaMemPool_t p0 = pool_of(0);
    int *x0 = nullptr;
    CK(cudaMallocAsync((void **)&x0, n * sizeof(int), 0));
    fill(x0, n, 7, 0);
    CK(cudaSetDevice(1));
    cudaStream_t s1;
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    int *y1 = nullptr;
    CK(cudaMallocAsync((void **)&y1, n * sizeof(int), 0));
    int ran = 0, refused = 0;
    static char err[1 << 16];
    stderr_of(err, sizeof err, [&] {
        for (int k = 0; k < TRIALS; k++) {
            CK(cudaMemset(y1, 0, n * sizeof(int)));
            add_one(x0, y1, n, s1);
            pool_access(p0, 1, true);
            cudaStreamSynchronize(s1);
            cudaGetLastError();
            int v = first_of(y1);
            CHECK(v == 8 || v == 0);
            (v == 8 ? ran : refused)++;
            pool_access(p0, 1, false);
        }
    });
    CHECK(both_seen("kernel queued before its pool granted access", ran, refused));
    CHECK(count_of(err, "has not granted this device access") == refused);
    CK(cudaStreamDestroy(s1));
    CK(cudaFree(y1));
    CK(cudaSetDevice(0));
    CK(cudaFree(x0));
}

/* A library routine runs in stream order on its stream, like a kernel, not at the call: a
 * cuBLASLt matmul's D (alpha A B, A n x 1 filled by a memset, B = 1) copied on stream b is
 * right every time after b waits for an event a recorded after the matmul, and without the
 * wait sometimes stale (zero). alpha (host pointer mode) is read at the call and the
 * descriptors may be destroyed right after it. A cudaFreeAsync of the matmul's input on its
 * own stream after the call frees it after the matmul ran: D always right. The matmul uses
 * its workspace when it runs. A cuFFT transform keeps its plan's parameters of the call. */
static void test_async_library_calls(void)
{
    const int n = 64;
    const size_t bytes = n * sizeof(float);
    stream_pair t = make_pair();
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cublasLtHandle_t h;
    CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS);
    float *dA = (float *)dmalloc(bytes), *dB = (float *)dmalloc(sizeof(float));
    float *dD = (float *)dmalloc(bytes), *dY = (float *)dmalloc(bytes);
    const float one = 1.0f, zero = 0.0f;
    CK(cudaMemcpy(dB, &one, sizeof one, cudaMemcpyHostToDevice));
    float a0;
    memset(&a0, 0x3f, sizeof a0); /* what cudaMemset(A, 0x3f) leaves in each element */
    /* D = alpha A B on stream s (descriptors made for the call, destroyed right after it;
     * alpha overwritten after it) */
    auto matmul = [&](const float *A, float alpha, cudaStream_t s, void *ws = nullptr,
                      size_t ws_bytes = 0) {
        cublasLtMatmulDesc_t desc;
        cublasLtMatrixLayout_t la, lb, ld;
        CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
        CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, n, 1, n) == CUBLAS_STATUS_SUCCESS);
        CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 1, 1, 1) == CUBLAS_STATUS_SUCCESS);
        CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, n, 1, n) == CUBLAS_STATUS_SUCCESS);
        CHECK(cublasLtMatmul(h, desc, &alpha, A, la, dB, lb, &zero, dD, ld, dD, ld, nullptr, ws,
                             ws_bytes, s) == CUBLAS_STATUS_SUCCESS);
        alpha = -1.0f;
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(desc);
    };
    auto want = [&](int k) { return (float)((double)(k + 1) * a0); };
    CK(cudaMemset(dA, 0x3f, bytes));
    int right = 0, wrong = 0;
    for (int wait = 1; wait >= 0; wait--)
        for (int k = 0; k < TRIALS; k++) {
            CK(cudaMemset(dD, 0, bytes));
            matmul(dA, (float)(k + 1), t.a);
            if (wait) {
                CK(cudaEventRecord(ev, t.a));
                CK(cudaStreamWaitEvent(t.b, ev, 0));
            }
            CK(cudaMemcpyAsync(dY, dD, bytes, cudaMemcpyDeviceToDevice, t.b));
            CK(cudaDeviceSynchronize());
            float y[n];
            CK(cudaMemcpy(y, dY, bytes, cudaMemcpyDeviceToHost));
            const bool ok = y[0] == want(k) && y[n - 1] == want(k);
            CHECK(ok || (!wait && y[0] == 0.0f));
            if (!wait) (ok ? right : wrong)++;
        }
    CHECK(both_seen("copy of a cuBLASLt matmul's output without waiting for it", right, wrong));
    for (int k = 0; k < TRIALS; k++) {
        float *A = nullptr;
        CK(cudaMallocAsync((void **)&A, bytes, t.a));
        CK(cudaMemsetAsync(A, 0x3f, bytes, t.a));
        matmul(A, (float)(k + 1), t.a);
        CK(cudaFreeAsync(A, t.a)); /* the matmul, queued before it, reads A first */
        CK(cudaStreamSynchronize(t.a));
        float d = 0;
        CK(cudaMemcpy(&d, dD, sizeof d, cudaMemcpyDeviceToHost));
        CHECK(d == want(k));
    }
    /* the matmul uses its workspace (fills it with 0xCD) when it runs: a memset of it on
     * stream b races the matmul without the wait, and always comes after with it */
    unsigned char *ws = (unsigned char *)dmalloc(512);
    right = wrong = 0;
    for (int wait = 1; wait >= 0; wait--)
        for (int k = 0; k < TRIALS; k++) {
            matmul(dA, 1.0f, t.a, ws, 512);
            if (wait) {
                CK(cudaEventRecord(ev, t.a));
                CK(cudaStreamWaitEvent(t.b, ev, 0));
            }
            CK(cudaMemsetAsync(ws, 0x11, 512, t.b));
            CK(cudaDeviceSynchronize());
            unsigned char w = 0;
            CK(cudaMemcpy(&w, ws, 1, cudaMemcpyDeviceToHost));
            CHECK(w == 0x11 || (!wait && w == 0xCD));
            if (!wait) (w == 0x11 ? right : wrong)++;
        }
    CHECK(both_seen("memset of a cuBLASLt workspace without waiting for the matmul", right, wrong));
    CK(cudaFree(ws));
    /* a cuFFT plan destroyed right after the call, its slot reused by a plan of other
     * parameters before the transform runs: the transform keeps its own (8 ones: 8, 0, ...) */
    const int nf = 8;
    cufftComplex ones[nf], f[nf];
    for (cufftComplex &v : ones) v.x = 1.0f, v.y = 0.0f;
    cufftComplex *dx = (cufftComplex *)dmalloc(sizeof ones), *dy = (cufftComplex *)dmalloc(sizeof f);
    CK(cudaMemcpy(dx, ones, sizeof ones, cudaMemcpyHostToDevice));
    for (int k = 0; k < TRIALS; k++) {
        CK(cudaMemset(dy, 0, sizeof f));
        cufftHandle p8, p4;
        int d8[1] = {nf}, d4[1] = {nf / 2};
        CHECK(cufftPlanMany(&p8, 1, d8, nullptr, 1, nf, nullptr, 1, nf, CUFFT_C2C, 1) == CUFFT_SUCCESS);
        CHECK(cufftSetStream(p8, t.a) == CUFFT_SUCCESS);
        CHECK(cufftExecC2C(p8, dx, dy, CUFFT_FORWARD) == CUFFT_SUCCESS);
        CHECK(cufftDestroy(p8) == CUFFT_SUCCESS);
        CHECK(cufftPlanMany(&p4, 1, d4, nullptr, 1, nf / 2, nullptr, 1, nf / 2, CUFFT_C2C, 2) ==
              CUFFT_SUCCESS);
        CK(cudaStreamSynchronize(t.a));
        CK(cudaMemcpy(f, dy, sizeof f, cudaMemcpyDeviceToHost));
        CHECK(f[0].x == (float)nf && f[nf / 2].x == 0.0f);
        CHECK(cufftDestroy(p4) == CUFFT_SUCCESS);
    }
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    CHECK(cublasLtDestroy(h) == CUBLAS_STATUS_SUCCESS);
    CK(cudaEventDestroy(ev));
    free_pair(t);
    CK(cudaFree(dA));
    CK(cudaFree(dB));
    CK(cudaFree(dD));
    CK(cudaFree(dY));
}

/* Without PONTE_SIM_ASYNC (the default) every operation is complete when its call returns. */
static void test_sync_default(void)
{
    if (pnsim_async()) return; /* the whole suite run under the mode */
    const int n = 64;
    int *x = (int *)dmalloc(n * sizeof(int)), *h = nullptr;
    CK(cudaMallocHost((void **)&h, sizeof(int)));
    stream_pair t = make_pair();
    cudaEvent_t ev;
    CK(cudaEventCreate(&ev));
    for (int k = 0; k < 8; k++) {
        g_nlog = 0;
        fill(x, n, k, t.a);
        add_one(x, x, n, t.b);
        CK(cudaMemcpyAsync(h, x, sizeof(int), cudaMemcpyDeviceToHost, t.b));
        CK(cudaLaunchHostFunc(t.a, log_call, (void *)(intptr_t)1));
        CK(cudaEventRecord(ev, t.a));
        CHECK(h[0] == k + 1 && g_nlog == 1);
        CK(cudaEventQuery(ev));
        CK(cudaStreamQuery(t.b));
    }
    CK(cudaEventDestroy(ev));
    free_pair(t);
    CK(cudaFreeHost(h));
    CK(cudaFree(x));
}

/* ───────────────────────────── main ───────────────────────────── */

struct named_test {
    const char *name;
    void (*fn)(void);
};
/* Stream capture (cuda_sim.h): work queued on a capturing stream is recorded, not run; each
 * launch of its graph runs it all in order, also when the graph and the executable graph are
 * destroyed while a launch is pending; a call the capture does not allow invalidates it. */
static void test_stream_capture(void)
{
    const int n = 300;
    int *x = (int *)dmalloc(n * sizeof(int)), *y = (int *)dmalloc(n * sizeof(int));
    int *pinned = nullptr;
    CK(cudaMallocHost((void **)&pinned, n * sizeof(int)));
    cudaStream_t s;
    cudaEvent_t ev;
    CK(cudaStreamCreate(&s));
    CK(cudaEventCreate(&ev));
    CK(cudaMemsetAsync(x, 0, n * sizeof(int), s));
    CK(cudaStreamSynchronize(s));
    cudaStreamCaptureStatus st;
    CK(cudaStreamIsCapturing(s, &st));
    CHECK(st == cudaStreamCaptureStatusNone);
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
    CK(cudaStreamIsCapturing(s, &st));
    CHECK(st == cudaStreamCaptureStatusActive);
    add_one(x, y, n, s); /* x += 2 through y, then x copied into pinned memory */
    add_one(y, x, n, s);
    CK(cudaGetLastError());
    CK(cudaMemcpyAsync(pinned, x, n * sizeof(int), cudaMemcpyDeviceToHost, s));
    cudaGraph_t g = nullptr;
    CK(cudaStreamEndCapture(s, &g));
    CHECK(g != nullptr);
    CK(cudaStreamSynchronize(s));
    std::vector<int> h(n, -1);
    CK(cudaMemcpy(h.data(), x, n * sizeof(int), cudaMemcpyDeviceToHost));
    int ran = 0;
    for (int i = 0; i < n; i++) ran += h[i] != 0;
    CHECK(ran == 0); /* recorded, not run */
    cudaGraphExec_t ex = nullptr;
    CK(cudaGraphInstantiate(&ex, g, 0));
    CK(cudaGraphDestroy(g));
    for (int k = 1; k <= 4; k++) {
        memset(pinned, 0xff, n * sizeof(int));
        CK(cudaGraphLaunch(ex, s));
        if (k == 4) CK(cudaGraphExecDestroy(ex)); /* a pending launch still runs */
        CK(cudaStreamSynchronize(s));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += pinned[i] != 2 * k;
        CHECK(bad == 0);
    }
    /* refused while capturing: a synchronization, an event record, a stream-ordered
     * allocation, a copy into pageable memory; each invalidates the capture */
    for (int kind = 0; kind < 4; kind++) {
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        add_one(x, y, n, s);
        void *p = nullptr;
        if (kind == 0) EXPECT(cudaDeviceSynchronize(), cudaErrorStreamCaptureUnsupported);
        if (kind == 1) EXPECT(cudaEventRecord(ev, s), cudaErrorStreamCaptureUnsupported);
        if (kind == 2) EXPECT(cudaMallocAsync(&p, 64, s), cudaErrorStreamCaptureUnsupported);
        if (kind == 3)
            EXPECT(cudaMemcpyAsync(h.data(), x, n * sizeof(int), cudaMemcpyDeviceToHost, s),
                   cudaErrorStreamCaptureUnsupported);
        CK(cudaStreamIsCapturing(s, &st));
        CHECK(st == cudaStreamCaptureStatusInvalidated);
        g = (cudaGraph_t)(void *)&p;
        EXPECT(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
        CHECK(g == nullptr);
    }
    cudaStream_t gone; /* a stream destroyed while capturing: its recorded work is dropped */
    CK(cudaStreamCreate(&gone));
    CK(cudaStreamBeginCapture(gone, cudaStreamCaptureModeGlobal));
    add_one(x, y, n, gone);
    CK(cudaStreamDestroy(gone));
    CK(cudaMemcpy(h.data(), y, n * sizeof(int), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) bad += h[i] != 7; /* the last launch's y, untouched since */
    CHECK(bad == 0);
    /* the legacy stream cannot capture; ending a capture never begun; a graph launched on
     * another device's stream */
    EXPECT(cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
    EXPECT(cudaStreamEndCapture(s, &g), cudaErrorIllegalState);
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    add_one(x, y, n, s);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ex, g, 0));
    CK(cudaSetDevice(1));
    cudaStream_t s1;
    CK(cudaStreamCreate(&s1));
    EXPECT(cudaGraphLaunch(ex, s1), cudaErrorInvalidResourceHandle);
    CK(cudaStreamDestroy(s1));
    CK(cudaSetDevice(0));
    CK(cudaGraphExecDestroy(ex));
    CK(cudaGraphDestroy(g));
    CK(cudaEventDestroy(ev));
    CK(cudaStreamDestroy(s));
    CK(cudaFreeHost(pinned));
    CK(cudaFree(x));
    CK(cudaFree(y));
}

/* Sets the n ints at device p to v (a synchronous copy). */
static void set_ints(int *p, int n, int v)
{
    std::vector<int> h(n, v);
    CK(cudaMemcpy(p, h.data(), n * sizeof(int), cudaMemcpyHostToDevice));
}

/* How many of the n ints at device p are not v. */
static int ints_not(const int *p, int n, int v)
{
    std::vector<int> h(n);
    CK(cudaMemcpy(h.data(), p, n * sizeof(int), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) bad += h[i] != v;
    return bad;
}

/* Capture modes (cuda_sim.h), as CUDA documents them: a thread-local capture forbids only its
 * own thread's synchronizing calls, a global one also other threads' in the global mode, and a
 * thread in the relaxed mode makes such calls (they run) even while it captures.
 * cudaGraphExecUpdate gives an executable graph another graph's work of the same shape (its
 * next launch runs that), and refuses a graph of more operations or of another kind of
 * operation, leaving the executable graph as it was. */
static void test_capture_modes_and_update(void)
{
    const int n = 300;
    int *x = (int *)dmalloc(n * sizeof(int)), *y = (int *)dmalloc(n * sizeof(int));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    cudaStreamCaptureStatus st;
    cudaGraph_t g = nullptr;
    for (int mode = 0; mode < 2; mode++) {
        CK(cudaStreamBeginCapture(s, mode ? cudaStreamCaptureModeGlobal : cudaStreamCaptureModeThreadLocal));
        add_one(x, y, n, s);
        cudaError_t other_global = cudaSuccess, other_relaxed = cudaSuccess;
        std::thread([&] {
            other_global = cudaDeviceSynchronize();
            cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
            CK(cudaThreadExchangeStreamCaptureMode(&m));
            other_relaxed = cudaDeviceSynchronize();
            CK(cudaThreadExchangeStreamCaptureMode(&m));
        }).join();
        CHECK(other_relaxed == cudaSuccess);
        CK(cudaStreamIsCapturing(s, &st));
        if (mode == 0) { /* thread-local: the other thread ran it; this thread may when relaxed */
            CHECK(other_global == cudaSuccess && st == cudaStreamCaptureStatusActive);
            cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
            CK(cudaThreadExchangeStreamCaptureMode(&m));
            CHECK(m == cudaStreamCaptureModeGlobal);
            void *p = nullptr;
            CK(cudaMalloc(&p, 64));
            CK(cudaFree(p));
            CK(cudaThreadExchangeStreamCaptureMode(&m));
            CHECK(m == cudaStreamCaptureModeRelaxed);
            CK(cudaStreamIsCapturing(s, &st));
            CHECK(st == cudaStreamCaptureStatusActive);
            EXPECT(cudaDeviceSynchronize(), cudaErrorStreamCaptureUnsupported);
        } else { /* global: the other thread in the global mode was refused */
            CHECK(other_global == cudaErrorStreamCaptureUnsupported);
            CHECK(st == cudaStreamCaptureStatusInvalidated);
        }
        EXPECT(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
    }
    /* update: y = x + 1 becomes x = y + 1 */
    cudaGraph_t forward, back, twice, fill;
    cudaGraphExec_t ex;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    add_one(x, y, n, s);
    CK(cudaStreamEndCapture(s, &forward));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    add_one(y, x, n, s);
    CK(cudaStreamEndCapture(s, &back));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    add_one(y, x, n, s);
    add_one(x, y, n, s);
    CK(cudaStreamEndCapture(s, &twice));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CK(cudaMemsetAsync(x, 0, n * sizeof(int), s));
    CK(cudaStreamEndCapture(s, &fill));
    CK(cudaGraphInstantiate(&ex, forward, 0));
    set_ints(x, n, 3);
    CK(cudaGraphLaunch(ex, s));
    CK(cudaStreamSynchronize(s));
    CHECK(ints_not(y, n, 4) == 0);
    cudaGraphExecUpdateResultInfo info;
    CK(cudaGraphExecUpdate(ex, back, &info));
    CHECK(info.result == cudaGraphExecUpdateSuccess);
    set_ints(y, n, 10);
    CK(cudaGraphLaunch(ex, s));
    CK(cudaStreamSynchronize(s));
    CHECK(ints_not(x, n, 11) == 0);
    EXPECT(cudaGraphExecUpdate(ex, twice, &info), cudaErrorGraphExecUpdateFailure);
    CHECK(info.result == cudaGraphExecUpdateErrorTopologyChanged);
    EXPECT(cudaGraphExecUpdate(ex, fill, &info), cudaErrorGraphExecUpdateFailure);
    CHECK(info.result == cudaGraphExecUpdateErrorNodeTypeChanged);
    set_ints(y, n, 20);
    CK(cudaGraphLaunch(ex, s)); /* still x = y + 1 */
    CK(cudaStreamSynchronize(s));
    CHECK(ints_not(x, n, 21) == 0);
    CK(cudaGraphExecDestroy(ex));
    for (cudaGraph_t d : {forward, back, twice, fill}) CK(cudaGraphDestroy(d));
    CK(cudaStreamDestroy(s));
    CK(cudaFree(x));
    CK(cudaFree(y));
}

static const named_test TESTS[] = {
    {"count_and_ordinals", test_count_and_ordinals},
    {"current_device_per_thread", test_current_device_per_thread},
    {"memory_per_device", test_memory_per_device},
    {"pools_per_device", test_pools_per_device},
    {"wrong_device_stream_work", test_wrong_device_stream_work},
    {"cross_device_copies", test_cross_device_copies},
    {"func_attribute_per_device", test_func_attribute_per_device},
    {"cublaslt_device", test_cublaslt_device},
    {"cublas_device", test_cublas_device},
    {"cusolver_device", test_cusolver_device},
    {"cudnn_device", test_cudnn_device},
    {"cufft_device", test_cufft_device},
    {"sync_default", test_sync_default},
    {"kernel_pointer_access", test_kernel_pointer_access},
    {"stream_capture", test_stream_capture},
    {"capture_modes_and_update", test_capture_modes_and_update},
};
static const named_test ASYNC_TESTS[] = {
    {"async_cross_stream", test_async_cross_stream},
    {"async_queries", test_async_queries},
    {"async_host_reads", test_async_host_reads},
    {"async_free_poison", test_async_free_poison},
    {"async_alloc_order", test_async_alloc_order},
    {"async_host_functions", test_async_host_functions},
    {"async_cross_device", test_async_cross_device},
    {"async_kernel_pointer_access", test_async_kernel_pointer_access},
    {"async_library_calls", test_async_library_calls},
    {"async_stream_capture", test_stream_capture},
    {"async_capture_modes_and_update", test_capture_modes_and_update},
};

int main(int argc, char **argv)
{
    char lim[32];
    snprintf(lim, sizeof lim, "%zu", LIMIT);
    setenv("PONTE_SIM_MEMORY_LIMIT", lim, 1);
    if (argc > 2 && strcmp(argv[1], "--expect-arch") == 0) {
        /* PONTE_SIM_DEVICES, PONTE_SIM_ARCH and PONTE_SIM_SMEM_OPTIN as the caller set them */
        g_rng = 0x9e3779b97f4a7c15ull;
        check_architectures(argv[2], argc > 4 && !strcmp(argv[3], "--optin") ? atol(argv[4]) : 0);
    } else if (argc > 1 && strcmp(argv[1], "--contexts") == 0) {
        check_contexts(); /* PONTE_SIM_DEVICES=3, nothing run before */
    } else if (argc > 2 && strcmp(argv[1], "--expect-count") == 0) {
        /* PONTE_SIM_DEVICES as the caller left it (unset, or a bad value: 1 device) */
        int want = atoi(argv[2]), n = 0, d = -1;
        CK(cudaGetDeviceCount(&n));
        CHECK(n == want);
        if (want == 1) {
            EXPECT(cudaSetDevice(1), cudaErrorInvalidDevice);
            cudaMemPool_t p;
            EXPECT(cudaDeviceGetDefaultMemPool(&p, 1), cudaErrorInvalidDevice);
            cudaDeviceProp prop;
            EXPECT(cudaGetDeviceProperties(&prop, 1), cudaErrorInvalidDevice);
        }
        CK(cudaSetDevice(want - 1));
        CK(cudaGetDevice(&d));
        CHECK(d == want - 1);
    } else {
        setenv("PONTE_SIM_DEVICES", "2", 0);
        const bool async = argc > 1 && strcmp(argv[1], "--async") == 0;
        if (async) { /* the asynchronous mode's tests */
            setenv("PONTE_SIM_ASYNC", "1", 0);
            argc--, argv++;
        }
        const char *s = getenv("PONTE_TEST_SEED");
        g_rng = s && *s ? strtoull(s, nullptr, 0) : (unsigned long long)time(nullptr) ^ getpid();
        g_rng |= 1;
        printf("test_gpusim_devices: seed %llu (PONTE_TEST_SEED)\n", g_rng);
        int ran = 0;
        const named_test *tests = async ? ASYNC_TESTS : TESTS;
        const size_t ntests = async ? sizeof ASYNC_TESTS / sizeof *ASYNC_TESTS
                                    : sizeof TESTS / sizeof *TESTS;
        for (size_t i = 0; i < ntests; i++) {
            const named_test &t = tests[i];
            if (argc < 2 || strcmp(argv[1], t.name) == 0) {
                t.fn();
                ran++;
                int d = -1;
                cudaGetDevice(&d);
                CHECK(d == 0); /* each test leaves device 0 current */
                CHECK(cudaGetLastError() == cudaSuccess);
            }
        }
        if (!ran) {
            fprintf(stderr, "test_gpusim_devices: no test named %s\n", argv[1]);
            return 1;
        }
    }
    if (g_failures) {
        fprintf(stderr, "test_gpusim_devices: %d of %d checks FAILED\n", g_failures, g_checks);
        return 1;
    }
    printf("test_gpusim_devices: all %d checks passed\n", g_checks);
    return 0;
}
