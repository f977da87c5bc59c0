/* cuda_sim.h — the simulated CUDA runtime: what Ponte's .cu sources see instead of the CUDA
 * toolkit when built with g++ -std=c++17 -DPONTE_GPU_SIM (no GPU, no CUDA headers needed).
 *
 * Model. A launch runs its blocks one after another on the calling host thread (blockIdx.x
 * varies fastest); the threads of a block run as fibers (coroutines on their own stacks, sim.cpp)
 * on that same OS thread. A thread runs until it reaches __syncthreads, a warp collective
 * (__syncwarp, shuffles, votes, __reduce_*_sync), a spin-wait point (a failed atomicCAS,
 * __nanosleep) or its end; then another thread runs. So:
 *   - `__shared__` is `static thread_local`: one variable per OS thread, hence per running
 *     block, shared by that block's fibers; its contents at block start are whatever the
 *     previous block left (zeros the first time: indeterminate on hardware). Not `extern
 *     __shared__`: dynamic shared memory is PNG_DYNAMIC_SMEM (pnsim_dynamic_smem(): a
 *     per-block buffer of the launch's smem bytes, filled with 0xCD at each block start);
 *   - fiber stacks are 64 KiB (PONTE_SIM_STACK): a kernel with larger local arrays crashes
 *     on the guard page; blocks run in blockIdx order, so a block may wait for an earlier
 *     block's flag but never for a later one;
 *   - threadIdx/blockIdx/blockDim/gridDim are thread-locals the scheduler sets on each switch;
 *   - exited threads are not waited for, by __syncthreads nor by warp collectives (as PTX's
 *     bar.sync and *.sync: "all non-exited threads"); a collective waits for every other lane
 *     named in its mask, which must call the same collective with the same mask (lanes
 *     beyond the block's size count as exited; a value read from an exited lane or from a
 *     lane outside the mask is garbage, 0xCD bytes); the caller must be in its mask;
 *   - a deadlock (threads waiting at different barriers, or at mismatched collectives) or a
 *     misuse (caller not in mask, bad width) ends the launch with cudaErrorLaunchFailure and a
 *     one-line diagnostic on stderr; the rest of the grid does not run;
 *   - before a grid runs, the pointers its kernel parameters carry (pointer parameters and the
 *     fields pnsim_param_pointers lists) are checked: one into memory the device cannot reach
 *     (another device's cudaMalloc memory, another device's pool memory without
 *     cudaMemPoolSetAccess) or into a freed pool block fails the launch with
 *     cudaErrorIllegalAddress and a diagnostic, and the grid does not run;
 *   - PONTE_SIM_SHUFFLE=<seed> runs the ready threads in a pseudo-random order (default:
 *     deterministic), PONTE_SIM_STACK=<bytes> sets the fiber stack size (64 KiB; 256 KiB under
 *     ASan), PONTE_SIM_MEMORY_LIMIT=<bytes> caps simulated device memory (default 16 GiB),
 *     PONTE_SIM_NO_DEVICE=1 makes cudaGetDeviceCount report no device,
 *     PONTE_SIM_DEVICES=<n> simulates n devices (1..8; 1 when unset or bad),
 *     PONTE_SIM_ARCH=<cc>[,<cc>...] gives each device an architecture, the compute capability
 *     as digits (70, 75, 80, 86, 87, 89, 90, 100, 120), one entry per device, the last one
 *     repeating for further devices ("90,86": an H100 and an RTX A6000; unset: 90; a bad or
 *     unknown entry: 90, with a warning on stderr); a device then reports that
 *     architecture's figures (CUDA's technical specifications per compute capability) alike
 *     in cudaGetDeviceProperties, cudaDeviceGetAttribute, the occupancy calculator and the
 *     shared-memory limits of cudaFuncSetAttribute and launches: major.minor, resident
 *     threads and blocks per SM, shared memory per SM and opt-in per block (227 KiB on 90 and
 *     100, 163 KiB on 80 and 87, 99 KiB on 86, 89 and 120, 64 KiB on 75, 96 KiB on 70), its
 *     name ("Ponte simulated GPU (sm_86)"); the SM count (4) and the rest are the same,
 *     PONTE_SIM_SMEM_OPTIN=<bytes> lowers every device's opt-in shared memory per block below
 *     its architecture's (not below 48 KiB; e.g. 101376, the 99 KiB of sm_86 / sm_89).
 * cp.async (async_copy.cuh) copies at the issuing thread's wait_group; until then its
 * destination holds 0xCD bytes.
 * Runtime calls (runtime.cpp) run synchronously at the call, which keeps stream order, unless
 * PONTE_SIM_ASYNC=<seed> (unset or 0: off) makes them asynchronous, to show the races a GPU
 * has: each stream from cudaStreamCreate* is then a FIFO queue. Launches (a copy of the
 * body), cudaMemcpy*Async / cudaMemsetAsync, cudaFreeAsync, cudaEventRecord,
 * cudaStreamWaitEvent and cudaLaunchHostFunc check their arguments and return their errors at
 * the call but queue the work; a launch's failure is reported by the call that runs it. The
 * pending work runs, a queue head at a time from a seeded random choice of the ready streams
 * (a head waiting for an event is ready once the event's latest record at the wait call has
 * run), when the host waits (cudaStreamSynchronize: that stream; cudaEventSynchronize: until
 * the record ran; cudaDeviceSynchronize: that device; cudaMemcpy, cudaMemset, cudaFree,
 * cudaFreeHost: all), and at random at each queuing call and query (the GPU progressing
 * while the host runs). cudaStreamQuery / cudaEventQuery answer cudaErrorNotReady while the
 * work is pending. Work on the null and special streams first runs all of its device's
 * pending work, then runs at the call (the legacy stream's ordering, made stronger). A copy
 * into pageable memory is done at the call, after the stream's earlier work (as CUDA); one from
 * pageable memory takes a snapshot at the call; pinned and device memory are read and written
 * when the copy runs. A cudaFreeAsync'd block returns to its pool when the free runs, refilled
 * with 0xCD (a kernel given it that runs later is refused: use after free); a block from
 * cudaMallocAsync is usable once its stream has reached the allocation (a kernel given it
 * that runs earlier, on another stream not ordered after it by an event, is refused, as CUDA's
 * stream-ordered allocator requires). Destroying a
 * stream or an event does not wait, and its queued work still runs.
 * The library stand-ins (cuBLASLt, cuBLAS, cuSOLVER, cuDNN, cuFFT) check their arguments at
 * the call and queue the computation on their stream like a launch (scalars passed by host
 * pointer, descriptors and plan parameters copied at the call; device memory read when it
 * runs; a failure when it runs is reported as cudaErrorLaunchFailure). NCCL's collectives run
 * at the call after their stream's pending work (nccl_sim.c says why). Pending work left at
 * exit is dropped.
 * Device memory is host memory; new allocations are filled with 0xCD.
 *
 * Include order: this header defines __noinline__ (as CUDA does), which breaks the C++
 * standard headers that spell __attribute__((__noinline__)) (<memory>, <future>, <regex>,
 * <filesystem> with GCC 12); it includes the C headers kernel code may use first, so include
 * any other standard header before it. */
#ifndef PONTE_BACKEND_CUDA_SIM_CUDA_SIM_H
#define PONTE_BACKEND_CUDA_SIM_CUDA_SIM_H

#ifndef __cplusplus
#error "cuda_sim.h is C++ (compile .cu sources with g++ -x c++ -std=c++17)"
#endif

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/erfinv.h"
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

/* ───────────────────────────── qualifiers ───────────────────────────── */

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __shared__ static thread_local
/* __restrict__ is a g++ keyword already. */

/* ───────────────────────────── built-in variables ───────────────────────────── */

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

/* What a running simulated thread sees (set by the scheduler before it runs a fiber). */
struct pnsim_tls_t {
    uint3 thread_idx, block_idx, block_dim, grid_dim;
    void *smem;
};
extern __thread pnsim_tls_t pnsim_tls;

/* The built-in index variables, as values read from the thread-locals. Read through functions
 * that UBSan leaves alone: GCC 12 under -fsanitize=null tested the thread-local's address
 * against null with stale flags once a kernel's loop had ended (early_exit_warp_kernel in
 * test_gpusim reported a null threadIdx in the ASan + UBSan simulator build). */
#define PNSIM_INDEX_READER(NAME, FIELD)                                                         \
    __attribute__((no_sanitize_undefined)) static inline uint3 NAME() { return pnsim_tls.FIELD; }
PNSIM_INDEX_READER(pnsim_thread_idx, thread_idx)
PNSIM_INDEX_READER(pnsim_block_idx, block_idx)
PNSIM_INDEX_READER(pnsim_block_dim, block_dim)
PNSIM_INDEX_READER(pnsim_grid_dim, grid_dim)
#define threadIdx (pnsim_thread_idx())
#define blockIdx (pnsim_block_idx())
#define blockDim (pnsim_block_dim())
#define gridDim (pnsim_grid_dim())
constexpr int warpSize = 32;

/* The dynamic shared memory of the running block (smem bytes of the launch, 256-aligned). */
static inline void *pnsim_dynamic_smem(void) { return pnsim_tls.smem; }

/* ───────────────────────────── vector types ───────────────────────────── */

#define PNSIM_VEC(T, N, A)                                                                     \
    struct __attribute__((aligned(A))) N##1 {                                                  \
        T x;                                                                                   \
    };                                                                                         \
    struct __attribute__((aligned(2 * A))) N##2 {                                              \
        T x, y;                                                                                \
    };                                                                                         \
    struct N##3 {                                                                              \
        T x, y, z;                                                                             \
    };                                                                                         \
    struct __attribute__((aligned(4 * A > 16 ? 16 : 4 * A))) N##4 {                            \
        T x, y, z, w;                                                                          \
    };                                                                                         \
    static inline N##1 make_##N##1(T x) { return N##1{x}; }                                    \
    static inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }                            \
    static inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }                    \
    static inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
PNSIM_VEC(signed char, char, 1)
PNSIM_VEC(unsigned char, uchar, 1)
PNSIM_VEC(short, short, 2)
PNSIM_VEC(unsigned short, ushort, 2)
PNSIM_VEC(int, int, 4)
PNSIM_VEC(float, float, 4)
#undef PNSIM_VEC
/* uint3 is the built-in type above; the other unsigned vectors: */
struct __attribute__((aligned(4))) uint1 {
    unsigned int x;
};
struct __attribute__((aligned(8))) uint2 {
    unsigned int x, y;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned int x, y, z, w;
};
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w)
{
    return uint4{x, y, z, w};
}
struct __attribute__((aligned(16))) double2 {
    double x, y;
};
struct __attribute__((aligned(16))) longlong2 {
    long long x, y;
};
struct __attribute__((aligned(16))) ulonglong2 {
    unsigned long long x, y;
};
static inline double2 make_double2(double x, double y) { return double2{x, y}; }
static inline longlong2 make_longlong2(long long x, long long y) { return longlong2{x, y}; }
static inline ulonglong2 make_ulonglong2(unsigned long long x, unsigned long long y)
{
    return ulonglong2{x, y};
}

/* ───────────────────────────── barriers and warp collectives ───────────────────────────── */

/* Collective kinds (pnsim_warp's `kind`). */
enum {
    PNSIM_SYNCWARP,
    PNSIM_SHFL_IDX,
    PNSIM_SHFL_UP,
    PNSIM_SHFL_DOWN,
    PNSIM_SHFL_XOR,
    PNSIM_BALLOT,
    PNSIM_ANY,
    PNSIM_ALL,
    PNSIM_RED_ADD,
    PNSIM_RED_MIN_U,
    PNSIM_RED_MAX_U,
    PNSIM_RED_MIN_I,
    PNSIM_RED_MAX_I,
    PNSIM_RED_AND,
    PNSIM_RED_OR,
    PNSIM_RED_XOR,
    PNSIM_KIND_COUNT
};
/* The block barrier: op 0 plain, 1 count, 2 and, 3 or of pred; returns the count / flag. */
int pnsim_syncthreads(int op, int pred);
/* A warp collective of the calling lane: waits until every non-exited lane of mask has
 * called the same collective with the same mask, then returns this lane's result (64-bit
 * payload: the value it read, the vote, the reduction). */
uint64_t pnsim_warp(int kind, unsigned mask, uint64_t value, int arg, int width);
/* The lanes of the caller's warp that have not exited. */
unsigned pnsim_activemask(void);
/* Lets the other ready threads of the block run first (spin-waits: a failed atomicCAS,
 * __nanosleep); returns at once outside a kernel. */
void pnsim_yield(void);
/* A monotonic nanosecond count (clock64). */
long long pnsim_clock(void);
/* cp.async (async_copy.cuh): the calling thread's asynchronous copy of `bytes` from src into
 * dst. dst holds 0xCD bytes until a pnsim_cp_async_wait of this thread completes the copy's
 * group (the device leaves it undefined until then); src is read at that wait. Outside a
 * kernel: copied at once. */
void pnsim_cp_async(void *dst, const void *src, unsigned bytes);
/* cp.async.commit_group: the thread's copies since its last commit become one group. */
void pnsim_cp_async_commit(void);
/* cp.async.wait_group n: completes the thread's committed groups but the n newest. */
void pnsim_cp_async_wait(int n);

#define PNSIM_FENCE() __asm__ __volatile__("" ::: "memory")

static inline void __syncthreads(void)
{
    PNSIM_FENCE();
    pnsim_syncthreads(0, 0);
    PNSIM_FENCE();
}
static inline int __syncthreads_count(int pred)
{
    PNSIM_FENCE();
    int r = pnsim_syncthreads(1, pred);
    PNSIM_FENCE();
    return r;
}
static inline int __syncthreads_and(int pred)
{
    PNSIM_FENCE();
    int r = pnsim_syncthreads(2, pred);
    PNSIM_FENCE();
    return r;
}
static inline int __syncthreads_or(int pred)
{
    PNSIM_FENCE();
    int r = pnsim_syncthreads(3, pred);
    PNSIM_FENCE();
    return r;
}
static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    PNSIM_FENCE();
    pnsim_warp(PNSIM_SYNCWARP, mask, 0, 0, 32);
    PNSIM_FENCE();
}
static inline unsigned __activemask(void) { return pnsim_activemask(); }
static inline void __nanosleep(unsigned int)
{
    PNSIM_FENCE();
    pnsim_yield();
    PNSIM_FENCE();
}
static inline long long clock64(void) { return pnsim_clock(); }

template <typename T> static inline uint64_t pnsim_bits(T v)
{
    static_assert(std::is_arithmetic<T>::value && sizeof(T) <= 8,
                  "warp shuffles take arithmetic types of at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <typename T> static inline T pnsim_from_bits(uint64_t u)
{
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
template <typename T> static inline T pnsim_shfl(int kind, unsigned mask, T v, int arg, int width)
{
    PNSIM_FENCE();
    T r = pnsim_from_bits<T>(pnsim_warp(kind, mask, pnsim_bits(v), arg, width));
    PNSIM_FENCE();
    return r;
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32)
{
    return pnsim_shfl(PNSIM_SHFL_IDX, mask, var, srcLane, width);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32)
{
    return pnsim_shfl(PNSIM_SHFL_UP, mask, var, (int)(delta > 64 ? 64 : delta), width);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32)
{
    return pnsim_shfl(PNSIM_SHFL_DOWN, mask, var, (int)(delta > 64 ? 64 : delta), width);
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32)
{
    return pnsim_shfl(PNSIM_SHFL_XOR, mask, var, laneMask, width);
}
static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    return (unsigned)pnsim_shfl<uint32_t>(PNSIM_BALLOT, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred)
{
    return (int)pnsim_shfl<uint32_t>(PNSIM_ANY, mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred)
{
    return (int)pnsim_shfl<uint32_t>(PNSIM_ALL, mask, pred != 0, 0, 32);
}
static inline unsigned __reduce_add_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_ADD, mask, v, 0, 32);
}
static inline int __reduce_add_sync(unsigned mask, int v)
{
    return (int)pnsim_shfl<uint32_t>(PNSIM_RED_ADD, mask, (uint32_t)v, 0, 32);
}
static inline unsigned __reduce_min_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_MIN_U, mask, v, 0, 32);
}
static inline int __reduce_min_sync(unsigned mask, int v)
{
    return (int)pnsim_shfl<uint32_t>(PNSIM_RED_MIN_I, mask, (uint32_t)v, 0, 32);
}
static inline unsigned __reduce_max_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_MAX_U, mask, v, 0, 32);
}
static inline int __reduce_max_sync(unsigned mask, int v)
{
    return (int)pnsim_shfl<uint32_t>(PNSIM_RED_MAX_I, mask, (uint32_t)v, 0, 32);
}
static inline unsigned __reduce_and_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_AND, mask, v, 0, 32);
}
static inline unsigned __reduce_or_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_OR, mask, v, 0, 32);
}
static inline unsigned __reduce_xor_sync(unsigned mask, unsigned v)
{
    return pnsim_shfl<uint32_t>(PNSIM_RED_XOR, mask, v, 0, 32);
}

/* ───────────────────────────── memory fences and atomics ───────────────────────────── */

static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Integer read-modify-writes: one builtin each. */
#define PNSIM_ATOMIC_INT(NAME, BUILTIN, T)                                                     \
    static inline T NAME(T *p, T v) { return BUILTIN(p, v, __ATOMIC_RELAXED); }
#define PNSIM_ATOMIC_INTS(NAME, BUILTIN)                                                       \
    PNSIM_ATOMIC_INT(NAME, BUILTIN, int)                                                       \
    PNSIM_ATOMIC_INT(NAME, BUILTIN, unsigned int)                                              \
    PNSIM_ATOMIC_INT(NAME, BUILTIN, unsigned long long)
PNSIM_ATOMIC_INTS(atomicAdd, __atomic_fetch_add)
PNSIM_ATOMIC_INTS(atomicAnd, __atomic_fetch_and)
PNSIM_ATOMIC_INTS(atomicOr, __atomic_fetch_or)
PNSIM_ATOMIC_INTS(atomicXor, __atomic_fetch_xor)
PNSIM_ATOMIC_INTS(atomicExch, __atomic_exchange_n)
PNSIM_ATOMIC_INT(atomicSub, __atomic_fetch_sub, int)
PNSIM_ATOMIC_INT(atomicSub, __atomic_fetch_sub, unsigned int)
#undef PNSIM_ATOMIC_INTS
#undef PNSIM_ATOMIC_INT

/* Everything else is a compare-and-swap loop on the bits: new = F(old, v). */
template <typename T, typename U, typename F> static inline T pnsim_atomic_cas_loop(T *p, F f)
{
    static_assert(sizeof(T) == sizeof(U), "bits type");
    U *q = reinterpret_cast<U *>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED);
    for (;;) {
        T o, n;
        memcpy(&o, &old, sizeof o);
        n = f(o);
        U nb;
        memcpy(&nb, &n, sizeof nb);
        if (__atomic_compare_exchange_n(q, &old, nb, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return o;
    }
}
static inline float atomicAdd(float *p, float v)
{
    return pnsim_atomic_cas_loop<float, uint32_t>(p, [v](float o) { return o + v; });
}
static inline double atomicAdd(double *p, double v)
{
    return pnsim_atomic_cas_loop<double, uint64_t>(p, [v](double o) { return o + v; });
}
static inline float atomicExch(float *p, float v)
{
    return pnsim_atomic_cas_loop<float, uint32_t>(p, [v](float) { return v; });
}
#define PNSIM_ATOMIC_MINMAX(T, U)                                                              \
    static inline T atomicMax(T *p, T v)                                                       \
    {                                                                                          \
        return pnsim_atomic_cas_loop<T, U>(p, [v](T o) { return o < v ? v : o; });             \
    }                                                                                          \
    static inline T atomicMin(T *p, T v)                                                       \
    {                                                                                          \
        return pnsim_atomic_cas_loop<T, U>(p, [v](T o) { return v < o ? v : o; });             \
    }
PNSIM_ATOMIC_MINMAX(int, uint32_t)
PNSIM_ATOMIC_MINMAX(unsigned int, uint32_t)
PNSIM_ATOMIC_MINMAX(long long, uint64_t)
PNSIM_ATOMIC_MINMAX(unsigned long long, uint64_t)
#undef PNSIM_ATOMIC_MINMAX
static inline unsigned int atomicInc(unsigned int *p, unsigned int v)
{
    return pnsim_atomic_cas_loop<unsigned, uint32_t>(
        p, [v](unsigned o) { return o >= v ? 0u : o + 1u; });
}
static inline unsigned int atomicDec(unsigned int *p, unsigned int v)
{
    return pnsim_atomic_cas_loop<unsigned, uint32_t>(
        p, [v](unsigned o) { return (o == 0u || o > v) ? v : o - 1u; });
}
/* A failed compare-and-swap lets the other threads run: a spin lock held by another thread
 * of the block can be released (threads switch only at such points). */
#define PNSIM_ATOMIC_CAS(T)                                                                    \
    static inline T atomicCAS(T *p, T compare, T v)                                            \
    {                                                                                          \
        if (!__atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED,              \
                                         __ATOMIC_RELAXED)) {                                  \
            PNSIM_FENCE();                                                                     \
            pnsim_yield();                                                                     \
            PNSIM_FENCE();                                                                     \
        }                                                                                      \
        return compare;                                                                        \
    }
PNSIM_ATOMIC_CAS(int)
PNSIM_ATOMIC_CAS(unsigned int)
PNSIM_ATOMIC_CAS(unsigned long long)
PNSIM_ATOMIC_CAS(unsigned short)
#undef PNSIM_ATOMIC_CAS

/* ───────────────────────────── intrinsics ───────────────────────────── */

#define PNSIM_BITCAST(NAME, FROM, TO)                                                          \
    static inline TO NAME(FROM v)                                                              \
    {                                                                                          \
        TO r;                                                                                  \
        memcpy(&r, &v, sizeof r);                                                              \
        return r;                                                                              \
    }
PNSIM_BITCAST(__float_as_uint, float, unsigned int)
PNSIM_BITCAST(__uint_as_float, unsigned int, float)
PNSIM_BITCAST(__float_as_int, float, int)
PNSIM_BITCAST(__int_as_float, int, float)
PNSIM_BITCAST(__double_as_longlong, double, long long)
PNSIM_BITCAST(__longlong_as_double, long long, double)
#undef PNSIM_BITCAST
static inline int __double2hiint(double d) { return (int)(__double_as_longlong(d) >> 32); }
static inline int __double2loint(double d) { return (int)__double_as_longlong(d); }
static inline double __hiloint2double(int hi, int lo)
{
    return __longlong_as_double((long long)(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo));
}

static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
static inline unsigned long long __brevll(unsigned long long x)
{
    return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
static inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s)
{
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
static inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (s & 31)) >> 32);
}
static inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (s & 31));
}
static inline unsigned int __umulhi(unsigned int a, unsigned int b)
{
    return (unsigned)(((uint64_t)a * b) >> 32);
}
static inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b)
{
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline long long __mul64hi(long long a, long long b)
{
    return (long long)(((__int128)a * b) >> 64);
}
static inline int __mul24(int a, int b) { return (int)((a << 8 >> 8) * (b << 8 >> 8)); }
static inline unsigned int __umul24(unsigned int a, unsigned int b)
{
    return (a & 0xffffffu) * (b & 0xffffffu);
}
template <typename T> static inline T __ldg(const T *p) { return *p; }
template <typename T> static inline T __ldca(const T *p) { return *p; }
template <typename T> static inline T __ldcs(const T *p) { return *p; }
template <typename T> static inline T __ldlu(const T *p) { return *p; }
template <typename T> static inline void __stcs(T *p, T v) { *p = v; }
template <typename T> static inline void __stwt(T *p, T v) { *p = v; }

/* Fast-math intrinsics: the accurate host functions (the GPU ones are at least this close). */
static inline float __fdividef(float a, float b) { return a / b; }
static inline float fdividef(float a, float b) { return a / b; }
/* glibc declares (but does not export) __expf and friends: these definitions match its
 * declarations (external linkage, noexcept). */
inline float __expf(float x) noexcept { return expf(x); }
inline float __exp10f(float x) noexcept { return powf(10.0f, x); }
inline float __logf(float x) noexcept { return logf(x); }
inline float __log2f(float x) noexcept { return log2f(x); }
inline float __log10f(float x) noexcept { return log10f(x); }
inline float __sinf(float x) noexcept { return sinf(x); }
inline float __cosf(float x) noexcept { return cosf(x); }
inline float __tanf(float x) noexcept { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) noexcept
{
    *s = sinf(x);
    *c = cosf(x);
}
inline float __powf(float a, float b) noexcept { return powf(a, b); }
static inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __drcp_rn(double a) { return 1.0 / a; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline double rcbrt(double x) { return 1.0 / cbrt(x); }
static inline float sinpif(float x) { return (float)sin(M_PI * (double)x); }
static inline float cospif(float x) { return (float)cos(M_PI * (double)x); }
static inline double sinpi(double x) { return sin(M_PI * x); }
static inline double cospi(double x) { return cos(M_PI * x); }

/* erfinv: core/erfinv.h's float64 version (the CPU backend's), correctly rounded to within an
 * ulp in double; erfinvf rounds it to float. */
static inline double erfinv(double y) { return pn_erfinv_f64(y); }
static inline float erfinvf(float y) { return (float)erfinv((double)y); }
static inline double erfcinv(double y) { return erfinv(1.0 - y); }
static inline float erfcinvf(float y) { return (float)erfinv(1.0 - (double)y); }
static inline float normcdff(float x) { return (float)(0.5 * erfc(-(double)x * M_SQRT1_2)); }
static inline double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

/* min/max as CUDA's math headers define them (mixed signedness goes unsigned). */
#define PNSIM_MINMAX(A, B, R)                                                                  \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }                        \
    static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
PNSIM_MINMAX(int, int, int)
PNSIM_MINMAX(unsigned int, unsigned int, unsigned int)
PNSIM_MINMAX(int, unsigned int, unsigned int)
PNSIM_MINMAX(unsigned int, int, unsigned int)
PNSIM_MINMAX(long, long, long)
PNSIM_MINMAX(unsigned long, unsigned long, unsigned long)
PNSIM_MINMAX(long, unsigned long, unsigned long)
PNSIM_MINMAX(unsigned long, long, unsigned long)
PNSIM_MINMAX(long long, long long, long long)
PNSIM_MINMAX(unsigned long long, unsigned long long, unsigned long long)
PNSIM_MINMAX(long long, unsigned long long, unsigned long long)
PNSIM_MINMAX(unsigned long long, long long, unsigned long long)
#undef PNSIM_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin((double)a, b); }
static inline double max(float a, double b) { return fmax((double)a, b); }
static inline double min(double a, float b) { return fmin(a, (double)b); }
static inline double max(double a, float b) { return fmax(a, (double)b); }

/* Float to integer conversions as PTX cvt does them: rounded, saturated, NaN -> 0. */
#define PNSIM_CVT(NAME, F, I, ROUND)                                                           \
    static inline I NAME(F x)                                                                  \
    {                                                                                          \
        F r = ROUND(x);                                                                        \
        if (r != r) return 0;                                                                  \
        if (r <= (F)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();       \
        if (r >= (F)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();       \
        return (I)r;                                                                           \
    }
#define PNSIM_CVT_MODES(F, FN, I, IN)                                                          \
    PNSIM_CVT(__##FN##2##IN##_rn, F, I, rint)                                                  \
    PNSIM_CVT(__##FN##2##IN##_rz, F, I, trunc)                                                 \
    PNSIM_CVT(__##FN##2##IN##_rd, F, I, floor)                                                 \
    PNSIM_CVT(__##FN##2##IN##_ru, F, I, ceil)
PNSIM_CVT_MODES(float, float, int, int)
PNSIM_CVT_MODES(float, float, unsigned int, uint)
PNSIM_CVT_MODES(float, float, long long, ll)
PNSIM_CVT_MODES(float, float, unsigned long long, ull)
PNSIM_CVT_MODES(double, double, int, int)
PNSIM_CVT_MODES(double, double, unsigned int, uint)
PNSIM_CVT_MODES(double, double, long long, ll)
PNSIM_CVT_MODES(double, double, unsigned long long, ull)
#undef PNSIM_CVT_MODES
#undef PNSIM_CVT
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline float __ll2float_rn(long long x) { return (float)x; }
static inline float __ull2float_rn(unsigned long long x) { return (float)x; }
static inline double __ll2double_rn(long long x) { return (double)x; }
static inline double __ull2double_rn(unsigned long long x) { return (double)x; }
static inline float __double2float_rn(double x) { return (float)x; }
static inline float __double2float_rz(double x)
{
    float f = (float)x;
    if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
    return f;
}

/* ───────────────────────────── runtime API (runtime.cpp) ───────────────────────────── */

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorGraphExecUpdateFailure = 910,
    cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUmemPoolHandle_st *cudaMemPool_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
#define cudaHostAllocMapped 0x02
#define cudaHostAllocWriteCombined 0x04

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxBlockDimY = 3,
    cudaDevAttrMaxBlockDimZ = 4,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrTotalConstantMemory = 9,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMaxRegistersPerBlock = 12,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrMaxThreadsPerMultiProcessor = 39,
    cudaDevAttrUnifiedAddressing = 41,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
    cudaDevAttrMaxRegistersPerMultiprocessor = 82,
    cudaDevAttrPageableMemoryAccess = 88,
    cudaDevAttrConcurrentManagedAccess = 89,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
    cudaDevAttrMaxBlocksPerMultiprocessor = 106,
    cudaDevAttrReservedSharedMemoryPerBlock = 111,
    cudaDevAttrMemoryPoolsSupported = 115
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};

enum cudaMemPoolAttr {
    cudaMemPoolReuseFollowEventDependencies = 0x1,
    cudaMemPoolReuseAllowOpportunistic = 0x2,
    cudaMemPoolReuseAllowInternalDependencies = 0x3,
    cudaMemPoolAttrReleaseThreshold = 0x4,
    cudaMemPoolAttrReservedMemCurrent = 0x5,
    cudaMemPoolAttrReservedMemHigh = 0x6,
    cudaMemPoolAttrUsedMemCurrent = 0x7,
    cudaMemPoolAttrUsedMemHigh = 0x8
};

/* Which devices may read and write a pool's memory (cudaMemPoolSetAccess): by default only the
 * pool's own; another device's copies from or to it need access granted, and only between
 * devices that can access each other (cudaDeviceCanAccessPeer; PONTE_SIM_NO_PEER=1 makes the
 * simulated devices unable to). */
enum cudaMemLocationType { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1 };
struct cudaMemLocation {
    enum cudaMemLocationType type;
    int id;
};
enum cudaMemAccessFlags {
    cudaMemAccessFlagsProtNone = 0,
    cudaMemAccessFlagsProtRead = 1,
    cudaMemAccessFlagsProtReadWrite = 3
};
struct cudaMemAccessDesc {
    struct cudaMemLocation location;
    enum cudaMemAccessFlags flags;
};
cudaError_t cudaDeviceCanAccessPeer(int *can_access, int device, int peer_device);
cudaError_t cudaMemPoolSetAccess(cudaMemPool_t pool, const struct cudaMemAccessDesc *desc, size_t count);
cudaError_t cudaMemPoolGetAccess(enum cudaMemAccessFlags *flags, cudaMemPool_t pool,
                                 struct cudaMemLocation *location);

/* The fields of CUDA's cudaDeviceProp that the simulator fills (same names and types). */
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    size_t memPitch;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    size_t totalConstMem;
    int major;
    int minor;
    size_t textureAlignment;
    int multiProcessorCount;
    int integrated;
    int canMapHostMemory;
    int concurrentKernels;
    int ECCEnabled;
    int pciBusID;
    int pciDeviceID;
    int pciDomainID;
    int asyncEngineCount;
    int unifiedAddressing;
    int memoryBusWidth;
    int l2CacheSize;
    int persistingL2CacheMaxSize;
    int maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    int regsPerMultiprocessor;
    int managedMemory;
    int pageableMemoryAccess;
    int concurrentManagedAccess;
    int cooperativeLaunch;
    size_t sharedMemPerBlockOptin;
    int maxBlocksPerMultiProcessor;
    size_t reservedSharedMemPerBlock;
    int memoryPoolsSupported;
};

/* Errors. The last error is per host thread and stays until cudaGetLastError reads it. */
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);

/* Device. */
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

/* Memory. */
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocAsync(void **ptr, size_t size, cudaStream_t stream);
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream);
cudaError_t cudaMallocFromPoolAsync(void **ptr, size_t size, cudaMemPool_t pool, cudaStream_t s);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void *ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream = 0);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device);
cudaError_t cudaDeviceGetMemPool(cudaMemPool_t *pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *value);
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t min_bytes_to_keep);

cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, enum cudaMemcpyKind kind,
                              cudaStream_t stream = 0);

/* The simulated device that the allocation holding p (cudaMalloc / cudaMallocAsync /
 * cudaMallocFromPoolAsync) lives on; -1 for host memory, symbols and unknown addresses. For
 * tests. PONTE_SIM_DEVICES=N (1..8, default 1) sets how many devices there are. */
int pnsim_device_of(const void *p);
/* Whether the process made simulated device d's primary context: called cudaSetDevice(d), or
 * a runtime call that needs a context (an allocation, copy, set, stream, event, launch or
 * synchronization) on a thread whose current device was d. For tests: a process should touch
 * only the GPUs it uses (a launcher's rank one; no skipped GPU). */
bool pnsim_device_has_context(int d);

/* __device__ / __constant__ variables are plain globals; these copy to and from them. */
void pnsim_register_symbol(const void *p, size_t size);
template <typename T>
static inline cudaError_t cudaMemcpyToSymbol(const T &symbol, const void *src, size_t count,
                                             size_t offset = 0,
                                             enum cudaMemcpyKind kind = cudaMemcpyHostToDevice)
{
    if (offset > sizeof(T) || count > sizeof(T) - offset || (count && !src) ||
        (unsigned)kind > cudaMemcpyDefault)
        return cudaMemcpy(nullptr, src, 1, kind); /* records cudaErrorInvalidValue */
    memcpy((char *)&symbol + offset, src, count);
    return cudaSuccess;
}
template <typename T>
static inline cudaError_t cudaMemcpyToSymbolAsync(const T &symbol, const void *src, size_t count,
                                                  size_t offset = 0,
                                                  enum cudaMemcpyKind kind = cudaMemcpyHostToDevice,
                                                  cudaStream_t stream = 0)
{
    /* an empty copy on stream: refused as any work on a dead or another device's stream */
    if (cudaError_t e = cudaMemcpyAsync(nullptr, nullptr, 0, cudaMemcpyHostToDevice, stream))
        return e;
    return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}
template <typename T>
static inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &symbol, size_t count,
                                               size_t offset = 0,
                                               enum cudaMemcpyKind kind = cudaMemcpyDeviceToHost)
{
    if (offset > sizeof(T) || count > sizeof(T) - offset || (count && !dst) ||
        (unsigned)kind > cudaMemcpyDefault)
        return cudaMemcpy(dst, nullptr, 1, kind); /* records cudaErrorInvalidValue */
    memcpy(dst, (const char *)&symbol + offset, count);
    return cudaSuccess;
}
template <typename T> static inline cudaError_t cudaGetSymbolAddress(void **ptr, const T &symbol)
{
    if (!ptr) return cudaMemcpy(nullptr, nullptr, 1, cudaMemcpyDefault);
    pnsim_register_symbol(&symbol, sizeof(T)); /* so copies to it pass the range checks */
    *ptr = (void *)&symbol;
    return cudaSuccess;
}

/* Streams and events (everything completes at the call, but see PONTE_SIM_ASYNC). Each belongs to the device current
 * at its creation (0 and the special streams: the current device); work queued on a stream
 * of another device than the current one fails with cudaErrorInvalidResourceHandle. */
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);

/* Stream capture into CUDA graphs, as the simulator keeps it: a stream from cudaStreamCreate*
 * records, between cudaStreamBeginCapture and cudaStreamEndCapture, the kernels, async copies
 * and memsets between device or pinned memory, host functions and library calls queued on
 * it, without running them; cudaGraphLaunch queues one run of them all, in capture order, on
 * a stream of the same device (each launch checks its kernels' pointers again when it runs).
 * Stricter than CUDA (which records these as graph nodes): event records and waits,
 * cudaMallocAsync / cudaFreeAsync and copies from or to pageable memory on the capturing
 * stream are refused with cudaErrorStreamCaptureUnsupported; so are the calls that would
 * synchronize (cudaDeviceSynchronize, cudaStreamSynchronize, cudaStreamQuery, cudaMemcpy,
 * cudaMemset, cudaMalloc, cudaFree) where CUDA forbids them: by the calling thread's mode
 * (cudaThreadExchangeStreamCaptureMode, global at first) and the modes captures were begun
 * in, as CUDA documents (global: this thread's capture not begun relaxed, or another thread's
 * begun global; thread-local: this thread's own; relaxed: never). A refused call invalidates
 * the captures that forbade it: cudaStreamEndCapture then fails with
 * cudaErrorStreamCaptureInvalidated (and gives no graph). */
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
/* The outcome cudaGraphExecUpdate reports (the first values of CUDA's). */
enum cudaGraphExecUpdateResult {
    cudaGraphExecUpdateSuccess = 0,
    cudaGraphExecUpdateError = 1,
    cudaGraphExecUpdateErrorTopologyChanged = 2,
    cudaGraphExecUpdateErrorNodeTypeChanged = 3
};
typedef struct CUgraphNode_st *cudaGraphNode_t;
typedef struct cudaGraphExecUpdateResultInfo_st {
    enum cudaGraphExecUpdateResult result;
    cudaGraphNode_t errorNode, errorFromNode; /* always NULL here */
} cudaGraphExecUpdateResultInfo;
/* Gives exec graph's work in place of its own when both recorded the same sequence of
 * operations (the same count, each of the same kind: a kernel, a copy, a memset, a host
 * function, a library call; kernels may differ in function, shape and parameters, as CUDA
 * allows); launches queued before keep the work they had. Else
 * cudaErrorGraphExecUpdateFailure with the reason in info, and exec unchanged. */
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                cudaGraphExecUpdateResultInfo *info);
/* Sets the calling thread's capture mode to *mode and gives back the one it had in *mode. */
cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
typedef void (*cudaHostFn_t)(void *user_data);
/* Runs fn(user_data) in stream order: at once (the stream's earlier work is complete
 * already), or queued under PONTE_SIM_ASYNC. */
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *user_data);

/* Kernel attributes, keyed by the current device and the kernel's address. */
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value);
template <typename T>
static inline cudaError_t cudaFuncSetAttribute(T *func, enum cudaFuncAttribute attr, int value)
{
    return cudaFuncSetAttribute(reinterpret_cast<const void *>(func), attr, value);
}

/* Resident blocks per SM as the current device's architecture allows them by threads, blocks
 * and shared memory per SM (with the 1 KiB reserved per block from sm_80 on): 0 when smem is
 * over the kernel's dynamic shared memory limit there; registers are not modelled. */
cudaError_t pnsim_occupancy(int *blocks, const void *func, int block_size, size_t smem);
template <typename T>
static inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, T func,
                                                                        int block_size,
                                                                        size_t smem)
{
    return pnsim_occupancy(blocks, reinterpret_cast<const void *>(func), block_size, smem);
}

/* ───────────────────────────── launch ───────────────────────────── */

/* How the runtime runs, copies, frees and checks a launch's body (one thread's kernel call):
 * run(ctx) calls it; clone(ctx) copies it onto the heap and drop frees such a copy
 * (PONTE_SIM_ASYNC queues the copy: the caller's body is gone once the launch returns);
 * check(ctx, device) checks the pointers its kernel parameters carry before a grid runs on
 * device (pnsim_check_kernel_pointer): cudaSuccess, or the first one's error. */
struct pnsim_body_ops {
    void (*run)(void *ctx);
    void *(*clone)(const void *ctx);
    void (*drop)(void *ctx);
    cudaError_t (*check)(const void *ctx, int device);
};

/* Checks p, a pointer kernel parameter `index` carries (itself when field < 0; else the field
 * at byte `field` of the struct it is, or of the struct it points to when `pointee`), before a
 * grid runs on device: a non-null pointer into live cudaMalloc memory of another device (the
 * simulator has no cudaDeviceEnablePeerAccess: Ponte uses pool memory across devices), into
 * pool memory of another device whose pool has not granted device access
 * (cudaMemPoolSetAccess), or into a pool block that is back in its pool's cache (freed) is
 * cudaErrorIllegalAddress, after a `pnsim:` diagnostic on stderr, as hardware faults on it;
 * anything else (null, host memory, the device's own memory) is cudaSuccess. */
cudaError_t pnsim_check_kernel_pointer(int device, int index, long field, bool pointee,
                                       const void *p);

/* What a struct's pnsim_param_pointers reports its pointer fields to: the launch's device,
 * the parameter's index, the struct (the parameter, or the struct a pointer parameter points
 * to when pointee) and the first error. */
struct pnsim_param_visit {
    int device, index;
    bool pointee;
    const void *base;
    cudaError_t err;
    /* Checks the pointer field f of the struct at base. */
    template <typename T> void ptr(T *const &f) { check(&f, (const void *)f); }
    /* Checks each 8-byte aligned word of [p, p + bytes) inside the struct as a pointer field
     * (a parameter block whose layout the launch does not know: its unused bytes must be
     * zero). */
    void words(const void *p, size_t bytes)
    {
        for (size_t off = 0; off + sizeof(void *) <= bytes; off += sizeof(void *)) {
            const void *w;
            memcpy(&w, (const char *)p + off, sizeof w);
            check((const char *)p + off, w);
        }
    }
    /* Checks value, the pointer held at field (inside the struct), unless an error came first. */
    void check(const void *field, const void *value)
    {
        if (!err)
            err = pnsim_check_kernel_pointer(device, index, (long)((const char *)field - (const char *)base),
                                             pointee, value);
    }
};
/* The pointer fields of a struct kernel parameter (or of the struct a pointer parameter points
 * to) that the launch checks: none by default. A struct that carries pointers opts in with an
 * overload for its type, found by ADL where the launch is compiled, that passes each pointer
 * field its kernels read to v.ptr (only the live ones: a pointer array's used entries), e.g.
 *     static inline void pnsim_param_pointers(const my_args &a, pnsim_param_visit &v)
 *     { v.ptr(a.x); v.ptr(a.y); }
 * Scanning every word instead would flag the stale pointers that unused fields (a descriptor's
 * dims beyond its rank, filled from the stack) hold. */
template <typename T> static inline void pnsim_param_pointers(const T &, pnsim_param_visit &) {}

/* Checks kernel parameter index, of type T: a pointer itself, then the pointer fields of the
 * struct it points to; a struct's pointer fields (pnsim_param_pointers); nothing for others. */
template <typename T>
static inline cudaError_t pnsim_check_param(int device, int index, const T &v)
{
    if constexpr (std::is_pointer_v<T>) {
        if (cudaError_t e = pnsim_check_kernel_pointer(device, index, -1, false, (const void *)v))
            return e;
        if constexpr (std::is_class_v<std::remove_cv_t<std::remove_pointer_t<T>>>) {
            if (!v) return cudaSuccess;
            pnsim_param_visit w{device, index, true, v, cudaSuccess};
            pnsim_param_pointers(*v, w);
            return w.err;
        }
    } else if constexpr (std::is_class_v<T>) {
        pnsim_param_visit w{device, index, false, &v, cudaSuccess};
        pnsim_param_pointers(v, w);
        return w.err;
    }
    return cudaSuccess;
}

/* A kernel with its arguments, as pnsim_bind makes it: calling it is one thread's kernel call
 * (the arguments are kept by value: a body run later, under PONTE_SIM_ASYNC, must not read
 * the caller's variables); check(device) checks each parameter (pnsim_check_param). */
template <typename K, typename... P> struct pnsim_bound {
    K kernel;
    std::tuple<P...> params;
    void operator()() const { std::apply(kernel, params); }
    cudaError_t check(int device) const
    {
        return check_each(device, std::index_sequence_for<P...>{});
    }
    template <size_t... I>
    cudaError_t check_each(int device, std::index_sequence<I...>) const
    {
        cudaError_t e = cudaSuccess;
        ((e = e ? e : pnsim_check_param(device, (int)I, std::get<I>(params))), ...);
        return e;
    }
};

/* Whether a body of type F has check(int) (pnsim_bound); plain lambdas have none. */
template <typename F, typename = void> struct pnsim_has_check : std::false_type {};
template <typename F>
struct pnsim_has_check<F, std::void_t<decltype(std::declval<const F &>().check(0))>>
    : std::true_type {};

/* The body operations of a body of type F. */
template <typename F> struct pnsim_body {
    static void run(void *p) { (*static_cast<F *>(p))(); }
    static void *clone(const void *p) { return new F(*static_cast<const F *>(p)); }
    static void drop(void *p) { delete static_cast<F *>(p); }
    static cudaError_t check(const void *p, int device)
    {
        if constexpr (pnsim_has_check<F>::value) return static_cast<const F *>(p)->check(device);
        (void)p, (void)device;
        return cudaSuccess;
    }
    static constexpr pnsim_body_ops ops = {run, clone, drop, check};
};

/* Runs body (ops->run(ctx)) as every thread of every block of grid x block (see the header
 * comment), at the call or, under PONTE_SIM_ASYNC, queued on stream (a copy of it).
 * kernel (may be NULL) keys the dynamic shared memory limit set by cudaFuncSetAttribute on the
 * current device; without it any smem up to that device's opt-in maximum is accepted. A dead
 * stream, or one of another device than the current one, sets cudaErrorInvalidResourceHandle. On an invalid
 * configuration (block 1..1024 threads, x,y <= 1024, z <= 64; grid x < 2^31, y,z <= 65535;
 * smem over the limit) sets the last error to cudaErrorInvalidValue, as CUDA 13 does on an
 * H100 (older runtimes said cudaErrorInvalidConfiguration), and runs nothing; a deadlock
 * sets cudaErrorLaunchFailure (when the grid runs); a kernel parameter pointing into memory
 * the device cannot access or into a freed pool block (ops->check, run just before the grid:
 * at the call, or when a queued launch runs) sets cudaErrorIllegalAddress and runs nothing.
 * Launching from inside a kernel sets cudaErrorNotSupported. */
void pnsim_launch_raw(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *kernel,
                      const pnsim_body_ops *ops, void *ctx);

static inline cudaStream_t pnsim_stream_arg(cudaStream_t s) { return s; }
static inline cudaStream_t pnsim_stream_arg(int s) { return s ? cudaStreamLegacy : (cudaStream_t)0; }

/* The launch PNG_LAUNCH expands to: body() is one thread's kernel call. */
template <typename S, typename F>
static inline void pnsim_launch(dim3 grid, dim3 block, size_t smem, S stream, F body)
{
    pnsim_launch_raw(grid, block, smem, pnsim_stream_arg(stream), nullptr, &pnsim_body<F>::ops,
                     &body);
}
/* The body of a launch of kernel with args, as PNG_LAUNCH makes it: the arguments evaluated at
 * the call, as CUDA does, each converted to its parameter's type and kept by value. */
template <typename... P, typename... A>
static inline auto pnsim_bind(void (*kernel)(P...), A &&...args)
{
    return pnsim_bound<void (*)(P...), std::decay_t<P>...>{
        kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
}
/* The same with the kernel named, so its cudaFuncSetAttribute limit applies. */
template <typename S, typename K, typename F>
static inline void pnsim_launch_kernel(K kernel, dim3 grid, dim3 block, size_t smem, S stream,
                                       F body)
{
    pnsim_launch_raw(grid, block, smem, pnsim_stream_arg(stream),
                     reinterpret_cast<const void *>(kernel), &pnsim_body<F>::ops, &body);
}

#endif /* PONTE_BACKEND_CUDA_SIM_CUDA_SIM_H */
