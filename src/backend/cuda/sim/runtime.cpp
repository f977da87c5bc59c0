/* runtime.cpp — the simulator's CUDA runtime API: errors, PONTE_SIM_DEVICES simulated devices
 * (1 by default) of the architectures PONTE_SIM_ARCH names (sm_90 by default; each reports its
 * architecture's figures in its properties, attributes, occupancy and shared-memory limits)
 * with a current device per host thread, device memory (host memory filled with
 * 0xCD, counted against a limit on each device), each device's default memory pool with real
 * statistics, streams and events that belong to a device. Work queued on a stream of another
 * device than the current one fails as on hardware, as does a copy touching another device's
 * pool memory that pool has not granted access to (cudaMemPoolSetAccess; PONTE_SIM_NO_PEER=1:
 * no device can access another's). Every stream operation completes at the
 * call, which keeps the stream-order semantics, unless PONTE_SIM_ASYNC=<seed> queues it (the
 * asynchronous mode, below). Thread-safe: one mutex guards the allocation
 * and handle tables; the last error and the current device are per host thread. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "backend/cuda/sim/nccl_sim.h"
#include "backend/cuda/sim/sim_internal.h"

namespace {

/* X(code, message) for every error the simulator returns: the one table of error texts. */
#define PNSIM_ERRORS(X)                                                                        \
    X(cudaSuccess, "no error")                                                                 \
    X(cudaErrorInvalidValue, "invalid argument")                                               \
    X(cudaErrorMemoryAllocation, "out of memory")                                              \
    X(cudaErrorInitializationError, "initialization error")                                    \
    X(cudaErrorInvalidConfiguration, "invalid configuration argument")                         \
    X(cudaErrorInvalidDevicePointer, "invalid device pointer")                                 \
    X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                    \
    X(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version") \
    X(cudaErrorInvalidDeviceFunction, "invalid device function")                               \
    X(cudaErrorNoDevice, "no CUDA-capable device is detected")                                 \
    X(cudaErrorInvalidDevice, "invalid device ordinal")                                        \
    X(cudaErrorInvalidResourceHandle, "invalid resource handle")                               \
    X(cudaErrorNotReady, "device not ready")                                                   \
    X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                     \
    X(cudaErrorMisalignedAddress, "misaligned address")                                        \
    X(cudaErrorLaunchOutOfResources, "too many resources requested for launch")                \
    X(cudaErrorLaunchFailure, "unspecified launch failure")                                    \
    X(cudaErrorIllegalState, "the operation cannot be performed in the present state")         \
    X(cudaErrorNotSupported, "operation not supported")                                        \
    X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing")   \
    X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture") \
    X(cudaErrorGraphExecUpdateFailure, "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update") \
    X(cudaErrorUnknown, "unknown error")

__thread cudaError_t tl_last_error = cudaSuccess;
__thread int tl_device = 0; /* cudaSetDevice's */
/* cudaThreadExchangeStreamCaptureMode's */
__thread cudaStreamCaptureMode tl_capture_mode = cudaStreamCaptureModeGlobal;

inline cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess) tl_last_error = e;
    return e;
}

const int SIM_VERSION = 13000;
const int SIM_SMS = 4;
const size_t ALIGN = 256;
const int MAX_DEVICES = 8;

enum AllocKind : uint8_t { A_DEVICE, A_POOL, A_HOST, A_SYMBOL };
struct Alloc {
    size_t size; /* rounded: what it counts for */
    size_t req;  /* requested: what copies may touch */
    AllocKind kind;
    int dev; /* the device it lives on; -1 for host memory and symbols */
    bool freeing = false; /* a cudaFreeAsync of it is queued (PONTE_SIM_ASYNC) */
    bool pending = false; /* its cudaMallocAsync is queued, not yet reached in stream order */
    bool cached = false;  /* a pool block freed back into its pool's cache */
};

/* A device's default memory pool: blocks freed to it stay reserved (cached by size) until a
 * synchronization trims the pool to its release threshold, or cudaMemPoolTrimTo. */
struct Pool {
    bool access[MAX_DEVICES] = {}; /* other devices granted access (cudaMemPoolSetAccess) */
    uint64_t threshold = 0;
    size_t used = 0, reserved = 0, used_high = 0, reserved_high = 0;
    int reuse[3] = {1, 1, 1};
    std::multimap<size_t, void *> cache;
};

/* The figures of one architecture, from the CUDA programming guide's technical
 * specifications per compute capability: resident threads and blocks per SM, shared memory
 * per SM. CUDA reserves 1 KiB of it per block from 8.0 on; the opt-in per block is the rest. */
struct Arch {
    int cc; /* 10 * major + minor */
    int threads_per_sm, blocks_per_sm;
    size_t smem_per_sm;
};
constexpr Arch ARCHS[] = {
    {70, 2048, 32, 96 * 1024},  {75, 1024, 16, 64 * 1024},   {80, 2048, 32, 164 * 1024},
    {86, 1536, 16, 100 * 1024}, {87, 1536, 16, 164 * 1024},  {89, 1536, 24, 100 * 1024},
    {90, 2048, 32, 228 * 1024}, {100, 2048, 32, 228 * 1024}, {120, 1536, 24, 100 * 1024},
};
const Arch &DEFAULT_ARCH = ARCHS[6]; /* sm_90: an H100's */
static_assert(ARCHS[6].cc == 90, "DEFAULT_ARCH is sm_90");

inline size_t arch_reserved_smem(const Arch &a) { return a.cc >= 80 ? 1024 : 0; }
inline size_t arch_smem_optin(const Arch &a) { return a.smem_per_sm - arch_reserved_smem(a); }

/* The architecture an entry of PONTE_SIM_ARCH names (its first n characters: the compute
 * capability as digits, "86"); sm_90's, with a warning on stderr, for anything else. */
const Arch &arch_named(const char *s, size_t n)
{
    int cc = 0;
    size_t i = 0;
    for (; i < n && i < 4 && s[i] >= '0' && s[i] <= '9'; i++) cc = 10 * cc + (s[i] - '0');
    if (i == n)
        for (const Arch &a : ARCHS)
            if (a.cc == cc) return a;
    fprintf(stderr, "pnsim: PONTE_SIM_ARCH entry '%.*s' is not a simulated architecture (", (int)n, s);
    for (const Arch &a : ARCHS) fprintf(stderr, "%s%d", &a == ARCHS ? "" : ", ", a.cc);
    fprintf(stderr, "): sm_90 instead\n");
    return DEFAULT_ARCH;
}

/* One simulated device: its architecture, its opt-in shared memory per block, its pool (whose
 * address is its cudaMemPool_t) and its bytes in use. */
struct Device {
    const Arch *arch = &DEFAULT_ARCH;
    std::atomic<bool> context{false}; /* its primary context is made (pnsim_use_context) */
    size_t smem_optin = 0; /* the arch's, or lower (PONTE_SIM_SMEM_OPTIN) */
    Pool pool;
    size_t bytes = 0; /* cudaMalloc'd, plus the pool's reserved bytes */
};

struct State {
    std::mutex mu;
    std::map<uintptr_t, Alloc> allocs; /* every live allocation, by start address */
    size_t limit = 0;                  /* per device */
    bool no_device = false;
    int ndev = 1;
    Device dev[MAX_DEVICES];
    std::set<const void *> streams, events;
    std::map<std::pair<int, const void *>, size_t> func_smem; /* (device, kernel) */
};

State &state(void)
{
    static State *st = [] {
        State *s = new State(); /* never destroyed: usable from atexit handlers */
        const char *v = getenv("PONTE_SIM_MEMORY_LIMIT");
        unsigned long long lim = v && *v ? strtoull(v, nullptr, 0) : 0;
        /* 16 GiB, or the host's memory when smaller */
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        size_t host = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)16 << 30;
        s->limit = lim ? (size_t)lim : host < ((size_t)16 << 30) ? host : (size_t)16 << 30;
        const char *nd = getenv("PONTE_SIM_NO_DEVICE");
        s->no_device = nd && *nd && strcmp(nd, "0") != 0;
        const char *dv = getenv("PONTE_SIM_DEVICES"); /* 1..MAX_DEVICES, else 1 */
        char *end = nullptr;
        long n = dv && *dv ? strtol(dv, &end, 10) : 1;
        s->ndev = end && *end == '\0' && n >= 1 && n <= MAX_DEVICES ? (int)n : 1;
        /* one architecture per device, the last entry repeating; PONTE_SIM_SMEM_OPTIN lowers
         * each device's opt-in (not below the 48 KiB default) */
        const char *ar = getenv("PONTE_SIM_ARCH"), *entry = ar && *ar ? ar : "90";
        const char *so = getenv("PONTE_SIM_SMEM_OPTIN");
        unsigned long long optin = so && *so ? strtoull(so, nullptr, 0) : 0;
        if (optin && optin < PNSIM_SMEM_DEFAULT) optin = PNSIM_SMEM_DEFAULT;
        const Arch *arch = &DEFAULT_ARCH;
        for (int d = 0; d < MAX_DEVICES; d++) {
            if (entry) { /* NULL once the last entry is read */
                const size_t n = strcspn(entry, ",");
                arch = &arch_named(entry, n);
                entry = entry[n] == ',' ? entry + n + 1 : nullptr;
            }
            const size_t own = arch_smem_optin(*arch);
            s->dev[d].arch = arch;
            s->dev[d].smem_optin = optin && optin < own ? (size_t)optin : own;
        }
        return s;
    }();
    return *st;
}
/* The device whose default pool handle is pool; NULL for any other handle. */
Device *pool_device(cudaMemPool_t pool)
{
    State &st = state();
    for (int d = 0; d < st.ndev; d++)
        if ((void *)pool == (void *)&st.dev[d]) return &st.dev[d];
    return nullptr;
}

/* Whether d names a simulated device. */
inline bool device_ok(int d) { return d >= 0 && d < state().ndev; }

struct Queue;
struct Capture;
struct CUstreamSim {
    unsigned flags;
    int dev;
    Queue *q; /* its queue of pending work under PONTE_SIM_ASYNC, else NULL */
    Capture *capture; /* the capture recording its work (cudaStreamBeginCapture), else NULL */
};
/* What an event's records set; shared with the records and waits still queued, so it
 * outlives a cudaEventDestroy while they are pending. A record numbers itself issued + 1 at
 * the call and sets done to that number when it runs (at the call, synchronously). */
struct EvState {
    bool recorded = false;
    uint64_t issued = 0, done = 0;
    double ms = 0.0;
};
struct CUeventSim {
    unsigned flags;
    int dev;
    std::shared_ptr<EvState> es;
};

inline size_t round_up(size_t n) { return (n + ALIGN - 1) & ~(ALIGN - 1); }

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Host memory for an allocation of size bytes (rounded), garbage-filled; NULL on failure. */
void *raw_alloc(size_t size)
{
    void *p = nullptr;
    if (posix_memalign(&p, ALIGN, size) != 0) return nullptr;
    memset(p, 0xCD, size);
    return p;
}

/* Under st.mu: releases dv's cached pool blocks until its pool reserves at most keep bytes. */
void pool_trim_locked(State &st, Device &dv, size_t keep)
{
    Pool &pl = dv.pool;
    while (pl.reserved > keep && !pl.cache.empty()) {
        auto it = std::prev(pl.cache.end()); /* largest first */
        size_t sz = it->first;
        void *p = it->second;
        pl.cache.erase(it);
        st.allocs.erase((uintptr_t)p);
        pl.reserved -= sz;
        dv.bytes -= sz;
        free(p);
    }
}

/* size bytes (rounded) from device d's pool into *ptr: a cached block, else a new one within
 * the device's limit (after emptying the cache). */
cudaError_t pool_alloc(int d, void **ptr, size_t size)
{
    if (!ptr) return ret(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    size_t sz = round_up(size);
    if (sz < size) return ret(cudaErrorMemoryAllocation);
    State &st = state();
    std::unique_lock<std::mutex> lock(st.mu);
    Device &dv = st.dev[d];
    Pool &pl = dv.pool;
    void *p = nullptr;
    auto it = pl.cache.lower_bound(sz); /* best fit, wasting at most half the block */
    if (it != pl.cache.end() && it->first / 2 <= sz) {
        p = it->second;
        sz = it->first;
        pl.cache.erase(it);
        Alloc &a = st.allocs[(uintptr_t)p];
        a.req = size;
        a.freeing = a.cached = false;
        lock.unlock();
        memset(p, 0xCD, sz);
        lock.lock();
    } else {
        if (dv.bytes + sz > st.limit || dv.bytes + sz < sz) {
            pool_trim_locked(st, dv, 0);
            if (dv.bytes + sz > st.limit || dv.bytes + sz < sz)
                return ret(cudaErrorMemoryAllocation);
        }
        dv.bytes += sz; /* reserve before filling outside the lock */
        lock.unlock();
        p = raw_alloc(sz);
        lock.lock();
        if (!p) {
            dv.bytes -= sz;
            return ret(cudaErrorMemoryAllocation);
        }
        pl.reserved += sz;
        if (pl.reserved > pl.reserved_high) pl.reserved_high = pl.reserved;
        st.allocs[(uintptr_t)p] = Alloc{sz, size, A_POOL, d};
    }
    pl.used += sz;
    if (pl.used > pl.used_high) pl.used_high = pl.used;
    *ptr = p;
    return cudaSuccess;
}

/* Frees a device allocation, or returns a pool block to the pool of the device it came from
 * (whichever device is current). */
cudaError_t free_device(void *ptr)
{
    if (!ptr) return cudaSuccess;
    State &st = state();
    std::unique_lock<std::mutex> lock(st.mu);
    auto it = st.allocs.find((uintptr_t)ptr);
    if (it == st.allocs.end() || it->second.kind == A_HOST || it->second.kind == A_SYMBOL)
        return ret(cudaErrorInvalidValue);
    Device &dv = st.dev[it->second.dev];
    if (it->second.kind == A_POOL) {
        if (it->second.cached) return ret(cudaErrorInvalidValue); /* double free */
        Pool &pl = dv.pool;
        pl.used -= it->second.size;
        pl.cache.emplace(it->second.size, ptr);
        it->second.cached = true;
        return cudaSuccess;
    }
    dv.bytes -= it->second.size;
    st.allocs.erase(it);
    lock.unlock();
    free(ptr);
    return cudaSuccess;
}

/* Under st.mu: the live allocation that holds all of [p, p + n); NULL when none does. */
const Alloc *find_alloc_locked(State &st, const void *p, size_t n)
{
    auto it = st.allocs.upper_bound((uintptr_t)p);
    if (it == st.allocs.begin()) return nullptr;
    --it;
    uintptr_t a = (uintptr_t)p, lo = it->first;
    bool in = a >= lo && n <= it->second.req && a - lo <= it->second.req - n;
    return in ? &it->second : nullptr;
}

/* Whether [p, p + n) lies inside one live allocation (device, pool or pinned host, of any
 * device; only device or pool with device_only). */
bool device_range_ok(const void *p, size_t n, bool device_only = false)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    const Alloc *a = find_alloc_locked(st, p, n);
    return a && (!device_only || a->kind == A_DEVICE || a->kind == A_POOL);
}

/* Whether the current device may copy to or from p: host memory, cudaMalloc'd memory (the
 * driver stages it between devices) and its own pools' memory always; another device's pool
 * memory only once that pool granted it access. */
bool pool_access_ok(const void *p)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    const Alloc *a = find_alloc_locked(st, p, 1);
    return !a || a->kind != A_POOL || a->dev == tl_device || st.dev[a->dev].pool.access[tl_device];
}

cudaError_t check_range(const char *what, const char *side, const void *p, size_t n)
{
    if (!pool_access_ok(p)) {
        fprintf(stderr, "pnsim: %s: the %s is another device's pool memory, and that pool has "
                        "not granted this device access (cudaMemPoolSetAccess)\n", what, side);
        return cudaErrorInvalidValue;
    }
    if (device_range_ok(p, n)) return cudaSuccess;
    fprintf(stderr, "pnsim: %s: %s range [%p, +%zu) is not inside a device allocation\n", what,
            side, p, n);
    return cudaErrorInvalidValue;
}

/* The checks of a copy of height rows of width bytes (pitches dpitch, spitch; width at most
 * either): cudaSuccess, or the error (recorded). */
cudaError_t check_copy(const char *what, const void *dst, size_t dpitch, const void *src,
                       size_t spitch, size_t width, size_t height, cudaMemcpyKind kind)
{
    if (width > dpitch || width > spitch || !dst || !src) return ret(cudaErrorInvalidValue);
    if ((unsigned)kind > cudaMemcpyDefault) return ret(cudaErrorInvalidMemcpyDirection);
    size_t dext = dpitch * (height - 1) + width, sext = spitch * (height - 1) + width;
    cudaError_t e = cudaSuccess;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
        e = check_range(what, "destination", dst, dext);
    if (!e && (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice))
        e = check_range(what, "source", src, sext);
    return ret(e);
}

cudaError_t do_memcpy(const char *what, void *dst, const void *src, size_t count,
                      cudaMemcpyKind kind)
{
    if (count == 0) return cudaSuccess;
    if (cudaError_t e = check_copy(what, dst, count, src, count, count, 1, kind)) return e;
    memmove(dst, src, count);
    return cudaSuccess;
}

/* The checks of a memset of [ptr, ptr + count) (count > 0): cudaSuccess or the error
 * (recorded). */
cudaError_t check_memset(const char *what, const void *ptr, size_t count)
{
    if (!ptr) return ret(cudaErrorInvalidValue);
    return ret(check_range(what, "destination", ptr, count));
}

cudaError_t do_memset(const char *what, void *ptr, int value, size_t count)
{
    if (count == 0) return cudaSuccess;
    if (cudaError_t e = check_memset(what, ptr, count)) return e;
    memset(ptr, value, count);
    return cudaSuccess;
}

bool handle_live(const std::set<const void *> &set, const void *h)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    return set.count(h) != 0;
}

/* The device event was created on; -1 for a dead or unknown handle. */
int event_device(cudaEvent_t event)
{
    return handle_live(state().events, event) ? ((CUeventSim *)(void *)event)->dev : -1;
}

/* cudaSuccess when stream is live and belongs to the current device (where work may be queued
 * on it), else cudaErrorInvalidResourceHandle (recorded). */
cudaError_t stream_here(cudaStream_t stream)
{
    return pnsim_stream_device(stream) == tl_device ? cudaSuccess
                                                    : ret(cudaErrorInvalidResourceHandle);
}

/* Synchronization points trim device d's pool to its release threshold (as CUDA does). */
cudaError_t sync_point(int d)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    Device &dv = st.dev[d];
    pool_trim_locked(st, dv, (size_t)dv.pool.threshold);
    return cudaSuccess;
}

/* ───────────────────────────── the asynchronous mode ───────────────────────────── */

/* PONTE_SIM_ASYNC=<seed> (unset, empty or 0: off). Each stream from cudaStreamCreate* owns a
 * FIFO queue of pending operations; the host runs them (on whichever host thread waits, one
 * operation at a time under Async::mu) when it must wait, and at random at each queuing
 * call. The null and special streams keep no queue: work on them first runs every pending
 * operation of their device, then runs at the call (the legacy stream's synchronization,
 * made stronger: it also waits for the non-blocking streams). */

/* One pending operation: work (run(ctx), which returns its error; drop(ctx) frees ctx), or,
 * with ev set, a record of ev numbered seq (record) or a wait for ev's record seq. */
struct Op {
    cudaError_t (*run)(void *ctx) = nullptr;
    void (*drop)(void *ctx) = nullptr;
    void *ctx = nullptr;
    std::shared_ptr<EvState> ev;
    uint64_t seq = 0;
    bool record = false;
    int dev = 0; /* the device current while it runs */
};
/* A stream's queue; dead once its stream is destroyed (freed when it has run empty). */
struct Queue {
    std::deque<Op> ops;
    int dev;
    bool dead;
};
struct Async {
    std::recursive_mutex mu; /* guards everything here and the running of operations */
    uint64_t rng = 0;
    std::vector<Queue *> queues; /* live or dead with work pending */
};

/* The seed of PONTE_SIM_ASYNC (FNV-1a of its text), or 0 when the mode is off. */
uint64_t async_seed(void)
{
    static const uint64_t seed = [] {
        const char *v = getenv("PONTE_SIM_ASYNC");
        if (!v || !*v || strcmp(v, "0") == 0) return (uint64_t)0;
        uint64_t h = 1469598103934665603ull;
        for (const char *c = v; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        return h | 1;
    }();
    return seed;
}

inline bool async_on(void) { return async_seed() != 0; }

Async &async_state(void)
{
    static Async *a = [] {
        Async *x = new Async(); /* never destroyed: pending work may be dropped at exit */
        x->rng = async_seed();
        return x;
    }();
    return *a;
}

/* The next pseudo-random number (xorshift64*), under A.mu. */
uint64_t next_rand(Async &A)
{
    A.rng ^= A.rng >> 12;
    A.rng ^= A.rng << 25;
    A.rng ^= A.rng >> 27;
    return A.rng * 2685821657736338717ull;
}

/* Work running f (a callable returning cudaError_t), heap-copied. */
template <typename F> Op work_op(F &&f)
{
    typedef typename std::decay<F>::type G;
    Op op;
    op.ctx = new G(std::forward<F>(f));
    op.run = [](void *p) { return (*static_cast<G *>(p))(); };
    op.drop = [](void *p) { delete static_cast<G *>(p); };
    op.dev = tl_device;
    return op;
}

/* Under A.mu: removes q (dead and empty) from the queues and frees it. */
void forget_queue(Async &A, Queue *q)
{
    for (size_t i = 0; i < A.queues.size(); i++)
        if (A.queues[i] == q) A.queues.erase(A.queues.begin() + (long)i);
    delete q;
}

/* Whether q's first operation may run: any but a wait whose record has not run. */
bool head_ready(const Queue *q)
{
    if (q->ops.empty()) return false;
    const Op &h = q->ops.front();
    return !h.ev || h.record || h.ev->done >= h.seq;
}

/* Under A.mu: runs q's first operation (on the device it was queued on); frees q when it
 * is dead and now empty. Returns the operation's error. */
cudaError_t run_head(Async &A, Queue *q)
{
    Op op = std::move(q->ops.front());
    q->ops.pop_front();
    if (q->dead && q->ops.empty()) forget_queue(A, q);
    cudaError_t e = cudaSuccess;
    if (op.run) {
        int saved = tl_device;
        tl_device = op.dev;
        e = op.run(op.ctx);
        tl_device = saved;
        op.drop(op.ctx);
    } else if (op.record) {
        if (op.seq > op.ev->done) op.ev->done = op.seq;
        op.ev->ms = now_ms();
    }
    return e;
}

/* Under A.mu: runs the first operation of a random ready queue, one of those prefer(q)
 * accepts when any is ready. *ran says whether any queue was ready. */
template <typename P> cudaError_t step(Async &A, P prefer, bool *ran)
{
    std::vector<Queue *> ready, preferred;
    for (Queue *q : A.queues)
        if (head_ready(q)) (prefer(q) ? preferred : ready).push_back(q);
    std::vector<Queue *> &from = preferred.empty() ? ready : preferred;
    *ran = !from.empty();
    return *ran ? run_head(A, from[next_rand(A) % from.size()]) : cudaSuccess;
}

/* Runs pending operations (those prefer accepts first, others when none of those is ready)
 * until pending() is false; the first error of those that ran (recorded). */
template <typename W, typename P> cudaError_t drain(W pending, P prefer)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    cudaError_t first = cudaSuccess;
    while (pending()) {
        bool ran = false;
        cudaError_t e = step(A, prefer, &ran);
        if (!ran) { /* cannot happen: a wait names a record queued before it */
            fprintf(stderr, "pnsim: PONTE_SIM_ASYNC: queued work waits for an event that "
                            "never completes\n");
            return ret(cudaErrorUnknown);
        }
        if (e && !first) first = e;
    }
    return ret(first);
}

/* Whether any queue of device d (every device when d < 0) holds work. */
bool device_pending(int d)
{
    std::lock_guard<std::recursive_mutex> lock(async_state().mu);
    for (Queue *q : async_state().queues)
        if ((d < 0 || q->dev == d) && !q->ops.empty()) return true;
    return false;
}

/* Runs the pending work of device d (every device when d < 0). */
cudaError_t drain_device(int d)
{
    return drain([d] { return device_pending(d); },
                 [d](const Queue *q) { return d < 0 || q->dev == d; });
}

/* The queue of stream (NULL for the null and special streams and in the synchronous mode). */
Queue *stream_queue(cudaStream_t stream)
{
    if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
        return nullptr;
    return ((CUstreamSim *)(void *)stream)->q;
}

/* Runs the pending work of stream (a live one; its device's for the null stream). */
cudaError_t drain_stream(cudaStream_t stream)
{
    Queue *q = stream_queue(stream);
    if (!q) return drain_device(pnsim_stream_device(stream));
    return drain([q] { return !q->ops.empty(); }, [q](const Queue *o) { return o == q; });
}

/* Runs pending work until ev's record number seq has run (preferring the queues holding it). */
cudaError_t drain_event(const std::shared_ptr<EvState> &ev, uint64_t seq)
{
    return drain([&] { return ev->done < seq; },
                 [&](const Queue *q) {
                     for (const Op &o : q->ops)
                         if (o.record && o.ev == ev && o.seq <= seq) return true;
                     return false;
                 });
}

/* GPU progress concurrent with the host: at random (one call in four), runs one to four
 * ready operations of any streams. */
void random_progress(void)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    if (next_rand(A) % 4 != 0) return;
    for (int n = 1 + (int)(next_rand(A) % 4); n > 0; n--) {
        bool ran = false;
        cudaError_t e = step(A, [](const Queue *) { return true; }, &ran);
        if (e) ret(e);
        if (!ran) return;
    }
}

/* ───────────────────────────── stream capture ───────────────────────────── */

/* The operations a capture recorded (cuda_sim.h: cudaStreamBeginCapture): each launch of its
 * graph runs them all, in order; they are dropped when the last graph, executable graph or
 * queued launch holding them is gone. */
struct OpList {
    std::vector<Op> ops;
    int dev = 0; /* the device of the captured stream */
    ~OpList()
    {
        for (Op &o : ops)
            if (o.drop) o.drop(o.ctx);
    }
};
struct Capture {
    std::shared_ptr<OpList> work = std::make_shared<OpList>();
    bool invalidated = false; /* a call the capture does not allow ran */
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal; /* cudaStreamBeginCapture's */
    pthread_t owner = pthread_self();                         /* the thread that began it */
};
/* What a cudaGraph_t and a cudaGraphExec_t are: the recorded operations, shared. */
struct GraphSim {
    std::shared_ptr<OpList> work;
};
/* The captures now active (guarded by Async::mu). */
std::vector<Capture *> &active_captures(void)
{
    static std::vector<Capture *> *v = new std::vector<Capture *>();
    return *v;
}

/* Under Async::mu: the capture recording stream's work (a live stream), or NULL. */
Capture *capture_of(cudaStream_t stream)
{
    if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) return nullptr;
    return ((CUstreamSim *)(void *)stream)->capture;
}

/* Under Async::mu: ends the capture of stream s (one is active): no longer s's nor active;
 * the caller owns it. */
Capture *detach_capture(CUstreamSim *s)
{
    Capture *c = s->capture;
    s->capture = nullptr;
    auto &act = active_captures();
    for (size_t i = 0; i < act.size(); i++)
        if (act[i] == c) act.erase(act.begin() + (long)i);
    return c;
}

/* A call stream's capture does not allow (cuda_sim.h): cudaErrorStreamCaptureUnsupported,
 * recorded, and the capture invalidated; cudaSuccess when stream is not capturing. */
cudaError_t refused_in_capture(cudaStream_t stream)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    Capture *c = capture_of(stream);
    if (!c) return cudaSuccess;
    c->invalidated = true;
    return ret(cudaErrorStreamCaptureUnsupported);
}

/* A call that would synchronize (potentially unsafe, in CUDA's words), refused as CUDA does
 * by the calling thread's mode (cudaThreadExchangeStreamCaptureMode): in the global mode while
 * this thread has a capture begun in another mode than relaxed, or another thread one begun in
 * the global mode; in the thread-local mode only for this thread's own; never in the relaxed
 * mode. Refused: cudaErrorStreamCaptureUnsupported, recorded, and the captures that forbade
 * it invalidated; else cudaSuccess. */
cudaError_t refused_while_capturing(void)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    bool refused = false;
    for (Capture *c : active_captures()) {
        const bool mine = pthread_equal(c->owner, pthread_self());
        const bool forbids =
            tl_capture_mode == cudaStreamCaptureModeRelaxed ? false
            : mine ? c->mode != cudaStreamCaptureModeRelaxed
                   : tl_capture_mode == cudaStreamCaptureModeGlobal &&
                         c->mode == cudaStreamCaptureModeGlobal;
        if (forbids) c->invalidated = refused = true;
    }
    return refused ? ret(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

/* Queues op on stream (live, of the current device), or for the null and special streams
 * runs the device's pending work and then op at once; cudaSuccess or the error of the work
 * that ran (recorded). */
cudaError_t submit(cudaStream_t stream, Op op)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    if (Capture *c = capture_of(stream)) { /* recorded (work: event ops are refused earlier) */
        c->work->ops.push_back(std::move(op));
        return cudaSuccess;
    }
    Queue *q = stream_queue(stream);
    if (!q) {
        cudaError_t e = drain_device(tl_device);
        Queue now{{}, tl_device, false};
        now.ops.push_back(std::move(op));
        cudaError_t f = ret(run_head(A, &now));
        return e ? e : f;
    }
    q->ops.push_back(std::move(op));
    random_progress();
    return cudaSuccess;
}

/* Queues f (a callable returning cudaError_t) on stream as submit does. */
template <typename F> cudaError_t submit_work(cudaStream_t stream, F &&f)
{
    return submit(stream, work_op(std::forward<F>(f)));
}

/* Whether p is pageable host memory (in no allocation of the simulated runtime). */
bool host_pageable(const void *p)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    return !find_alloc_locked(st, p, 1);
}

/* Copies height rows of width bytes (pitches dpitch, spitch), checked, in stream order as
 * CUDA does: into pageable memory at the call once the stream's earlier work has run (the
 * call returns once such a copy is done); from pageable memory through a snapshot taken at
 * the call (CUDA stages it); between device or pinned memory queued. */
cudaError_t copy_on_stream(cudaStream_t stream, void *dst, size_t dpitch, const void *src,
                           size_t spitch, size_t width, size_t height)
{
    auto rows = [](char *d, size_t dp, const char *s, size_t sp, size_t w, size_t h) {
        for (size_t r = 0; r < h; r++) memmove(d + r * dp, s + r * sp, w);
    };
    if (host_pageable(dst) || host_pageable(src))
        if (cudaError_t e = refused_in_capture(stream)) return e;
    if (host_pageable(dst)) {
        cudaError_t e = drain_stream(stream);
        rows((char *)dst, dpitch, (const char *)src, spitch, width, height);
        return e;
    }
    if (host_pageable(src)) {
        std::vector<char> snap(width * height);
        rows(snap.data(), width, (const char *)src, spitch, width, height);
        return submit_work(stream, [=, snap = std::move(snap)] {
            rows((char *)dst, dpitch, snap.data(), width, width, height);
            return cudaSuccess;
        });
    }
    return submit_work(stream, [=] {
        rows((char *)dst, dpitch, (const char *)src, spitch, width, height);
        return cudaSuccess;
    });
}

/* Runs f() (an allocation returning cudaError_t); under PONTE_SIM_ASYNC, when it runs out of
 * memory, runs all pending work (queued frees) and tries once more. */
template <typename F> cudaError_t alloc_retry(F f)
{
    cudaError_t before = tl_last_error;
    cudaError_t e = f();
    if (e != cudaErrorMemoryAllocation || !async_on() || !device_pending(-1)) return e;
    tl_last_error = before;
    drain_device(-1);
    return f();
}

} /* namespace */

/* ───────────────────────────── internal ───────────────────────────── */

void pnsim_record_error(cudaError_t e) { ret(e); }

bool pnsim_stream_valid(cudaStream_t s) { return pnsim_stream_device(s) >= 0; }

int pnsim_current_device(void) { return tl_device; }

bool pnsim_capturing(cudaStream_t stream)
{
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    return capture_of(stream) != nullptr;
}

void pnsim_use_context(void) { state().dev[tl_device].context.store(true, std::memory_order_relaxed); }

bool pnsim_device_has_context(int d)
{
    return d >= 0 && d < MAX_DEVICES && state().dev[d].context.load(std::memory_order_relaxed);
}

int pnsim_stream_device(cudaStream_t s)
{
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return tl_device;
    return handle_live(state().streams, s) ? ((CUstreamSim *)(void *)s)->dev : -1;
}

bool pnsim_stream_here(cudaStream_t s) { return pnsim_stream_device(s) == tl_device; }

bool pnsim_library_device_ok(int dev, cudaStream_t s)
{
    return dev == tl_device && pnsim_stream_device(s) == dev;
}

bool pnsim_async(void) { return async_on(); }

bool pnsim_library_scratch(void *p, size_t n)
{
    if (!n || !async_on()) return true;
    if (!device_range_ok(p, n, true)) {
        fprintf(stderr, "pnsim: a library routine's workspace [%p, +%zu) is not device memory "
                        "when the routine runs\n", p, n);
        return false;
    }
    const size_t k = n < 256 ? n : 256;
    memset(p, 0xCD, k);
    memset((char *)p + n - k, 0xCD, k);
    return true;
}

cudaError_t pnsim_submit(cudaStream_t stream, cudaError_t (*run)(void *), void (*drop)(void *),
                         void *ctx)
{
    Op op;
    op.run = run, op.drop = drop, op.ctx = ctx, op.dev = tl_device;
    return submit(stream, std::move(op));
}

int pnsim_device_of(const void *p)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    const Alloc *a = find_alloc_locked(st, p, 1);
    return a ? a->dev : -1;
}

/* See cuda_sim.h. */
cudaError_t pnsim_check_kernel_pointer(int device, int index, long field, bool pointee,
                                       const void *p)
{
    if (!p) return cudaSuccess;
    State &st = state();
    std::unique_lock<std::mutex> lock(st.mu);
    const Alloc *a = find_alloc_locked(st, p, 1);
    if (!a || (a->kind != A_DEVICE && a->kind != A_POOL)) return cudaSuccess;
    const int owner = a->dev;
    const char *why;
    if (a->cached) why = "a pool block already freed (back in its pool's cache): use after free";
    else if (a->pending)
        why = "a pool block whose stream-ordered allocation its stream has not reached (allocated "
              "on another stream, with no event wait between)";
    else if (owner == device) return cudaSuccess;
    else if (a->kind == A_DEVICE) why = "cudaMalloc memory of another device (no peer access)";
    else if (!st.dev[owner].pool.access[device])
        why = "pool memory of another device whose pool has not granted this device access "
              "(cudaMemPoolSetAccess)";
    else return cudaSuccess;
    lock.unlock();
    char where[64] = "";
    if (field >= 0)
        snprintf(where, sizeof where, ", field at byte %ld of %s", field,
                 pointee ? "the struct it points to" : "it");
    fprintf(stderr,
            "pnsim: kernel parameter %d%s holds %p, %s (memory of device %d, kernel launched on "
            "device %d): cudaErrorIllegalAddress\n",
            index, where, p, why, owner, device);
    return cudaErrorIllegalAddress;
}

/* See nccl_sim.h. */
extern "C" bool pnsim_is_device_memory(const void *p, size_t n) { return device_range_ok(p, n, true); }

extern "C" bool pnsim_stream_ok(pnsim_nccl_stream_t s)
{
    if (!pnsim_stream_valid((cudaStream_t)s)) return false;
    if (async_on()) drain_stream((cudaStream_t)s); /* collectives run at the call */
    return true;
}

size_t pnsim_smem_optin(void) { return state().dev[tl_device].smem_optin; }

size_t pnsim_kernel_smem_limit(const void *kernel)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    auto it = st.func_smem.find({tl_device, kernel});
    return it == st.func_smem.end() ? PNSIM_SMEM_DEFAULT : it->second;
}

/* ───────────────────────────── errors ───────────────────────────── */

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
#define PNSIM_ERROR_STRING(E, MSG)                                                             \
    case E: return MSG;
        PNSIM_ERRORS(PNSIM_ERROR_STRING)
#undef PNSIM_ERROR_STRING
    default: return "unrecognized error code";
    }
}

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
#define PNSIM_ERROR_NAME(E, MSG)                                                               \
    case E: return #E;
        PNSIM_ERRORS(PNSIM_ERROR_NAME)
#undef PNSIM_ERROR_NAME
    default: return "cudaErrorUnknown";
    }
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = tl_last_error;
    tl_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return tl_last_error; }

/* ───────────────────────────── device ───────────────────────────── */

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count) return ret(cudaErrorInvalidValue);
    if (state().no_device) {
        *count = 0;
        return ret(cudaErrorNoDevice);
    }
    *count = state().ndev;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device) return ret(cudaErrorInvalidValue);
    if (state().no_device) return ret(cudaErrorNoDevice);
    *device = tl_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (state().no_device) return ret(cudaErrorNoDevice);
    if (!device_ok(device)) return ret(cudaErrorInvalidDevice);
    tl_device = device;
    pnsim_use_context(); /* CUDA 12's cudaSetDevice makes the device's primary context */
    return cudaSuccess;
}

/* Device d's properties: its architecture's figures (Device::arch), the rest an H100's. */
static void device_properties(cudaDeviceProp *prop, int d)
{
    const State &st = state();
    const Arch &a = *st.dev[d].arch;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "Ponte simulated GPU (sm_%d)", a.cc);
    prop->totalGlobalMem = st.limit;
    prop->sharedMemPerBlock = PNSIM_SMEM_DEFAULT;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->memPitch = 2147483647;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->totalConstMem = 65536;
    prop->major = a.cc / 10;
    prop->minor = a.cc % 10;
    prop->textureAlignment = 512;
    prop->pciBusID = d; /* tells devices of one architecture apart */
    prop->multiProcessorCount = SIM_SMS;
    prop->canMapHostMemory = 1;
    prop->concurrentKernels = 1;
    prop->asyncEngineCount = 2;
    prop->unifiedAddressing = 1;
    prop->memoryBusWidth = 5120;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->maxThreadsPerMultiProcessor = a.threads_per_sm;
    prop->sharedMemPerMultiprocessor = a.smem_per_sm;
    prop->regsPerMultiprocessor = 65536;
    prop->concurrentManagedAccess = 0;
    prop->sharedMemPerBlockOptin = st.dev[d].smem_optin;
    prop->maxBlocksPerMultiProcessor = a.blocks_per_sm;
    prop->reservedSharedMemPerBlock = arch_reserved_smem(a);
    prop->memoryPoolsSupported = 1;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (!prop) return ret(cudaErrorInvalidValue);
    if (state().no_device) return ret(cudaErrorNoDevice);
    if (!device_ok(device)) return ret(cudaErrorInvalidDevice);
    device_properties(prop, device);
    return cudaSuccess;
}

/* Read from the same properties as cudaGetDeviceProperties, so that the two routes agree. */
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (!value) return ret(cudaErrorInvalidValue);
    if (state().no_device) return ret(cudaErrorNoDevice);
    if (!device_ok(device)) return ret(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    device_properties(&p, device);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrTotalConstantMemory: *value = (int)p.totalConstMem; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrUnifiedAddressing: *value = p.unifiedAddressing; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = p.regsPerMultiprocessor; break;
    case cudaDevAttrPageableMemoryAccess: *value = p.pageableMemoryAccess; break;
    case cudaDevAttrConcurrentManagedAccess: *value = p.concurrentManagedAccess; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: *value = (int)p.reservedSharedMemPerBlock; break;
    case cudaDevAttrMemoryPoolsSupported: *value = p.memoryPoolsSupported; break;
    default: return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *version)
{
    if (!version) return ret(cudaErrorInvalidValue);
    *version = SIM_VERSION;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version)
{
    if (!version) return ret(cudaErrorInvalidValue);
    *version = SIM_VERSION;
    return cudaSuccess;
}

/* The host waits: the device's pending work runs first (PONTE_SIM_ASYNC). */
cudaError_t cudaDeviceSynchronize(void)
{
    pnsim_use_context();
    if (cudaError_t e = refused_while_capturing()) return e;
    cudaError_t e = async_on() ? drain_device(tl_device) : cudaSuccess;
    sync_point(tl_device);
    return e;
}

cudaError_t cudaDeviceReset(void) { return cudaDeviceSynchronize(); }

/* ───────────────────────────── memory ───────────────────────────── */

/* cudaMalloc's allocation (alloc_retry's f). */
cudaError_t device_alloc(void **ptr, size_t size)
{
    if (!ptr) return ret(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    size_t sz = round_up(size);
    State &st = state();
    int d = tl_device;
    Device &dv = st.dev[d];
    {
        std::lock_guard<std::mutex> lock(st.mu);
        if (sz < size || dv.bytes + sz > st.limit || dv.bytes + sz < sz)
            return ret(cudaErrorMemoryAllocation);
        dv.bytes += sz; /* reserved while filling outside the lock */
    }
    void *p = raw_alloc(sz);
    std::lock_guard<std::mutex> lock(st.mu);
    if (!p) {
        dv.bytes -= sz;
        return ret(cudaErrorMemoryAllocation);
    }
    st.allocs[(uintptr_t)p] = Alloc{sz, size, A_DEVICE, d};
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t size)
{
    pnsim_use_context();
    if (cudaError_t e = refused_while_capturing()) return e;
    return alloc_retry([=] { return device_alloc(ptr, size); });
}

/* Synchronizes (PONTE_SIM_ASYNC: all pending work runs first), as CUDA's does. */
cudaError_t cudaFree(void *ptr)
{
    pnsim_use_context();
    if (cudaError_t e = refused_while_capturing()) return e;
    if (ptr && async_on()) drain_device(-1);
    return free_device(ptr);
}

/* Under PONTE_SIM_ASYNC, a block from cudaMallocAsync / cudaMallocFromPoolAsync is usable once
 * its stream reaches the allocation (CUDA's rule: work on another stream must be ordered after
 * it, by an event): until then a kernel that is handed it fails as an illegal address. */
cudaError_t stream_ordered_alloc(int d, void **ptr, size_t size, cudaStream_t stream)
{
    cudaError_t e = alloc_retry([=] { return pool_alloc(d, ptr, size); });
    if (e || !async_on() || !*ptr || !stream_queue(stream)) return e;
    void *p = *ptr;
    {
        State &st = state();
        std::lock_guard<std::mutex> lock(st.mu);
        st.allocs[(uintptr_t)p].pending = true;
    }
    return submit_work(stream, [p] {
        State &st = state();
        std::lock_guard<std::mutex> lock(st.mu);
        auto it = st.allocs.find((uintptr_t)p);
        if (it != st.allocs.end()) it->second.pending = false;
        return cudaSuccess;
    });
}

cudaError_t cudaMallocAsync(void **ptr, size_t size, cudaStream_t stream)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (cudaError_t e = refused_in_capture(stream)) return e;
    return stream_ordered_alloc(tl_device, ptr, size, stream);
}

/* Under PONTE_SIM_ASYNC the block returns to its pool when the free runs in stream order,
 * refilled with 0xCD then (a reader that runs later sees poison); the checks (a live device
 * or pool allocation's start, not freed nor queued to be) are at the call. */
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (cudaError_t e = refused_in_capture(stream)) return e;
    if (!ptr || !async_on()) return free_device(ptr);
    size_t size = 0;
    {
        State &st = state();
        std::lock_guard<std::mutex> lock(st.mu);
        auto it = st.allocs.find((uintptr_t)ptr);
        if (it == st.allocs.end() || it->second.kind == A_HOST ||
            it->second.kind == A_SYMBOL || it->second.freeing || it->second.cached)
            return ret(cudaErrorInvalidValue); /* not an allocation, or a double free */
        it->second.freeing = true;
        size = it->second.size;
    }
    return submit_work(stream, [=] {
        memset(ptr, 0xCD, size);
        return free_device(ptr);
    });
}

cudaError_t cudaMallocFromPoolAsync(void **ptr, size_t size, cudaMemPool_t pool, cudaStream_t s)
{
    pnsim_use_context();
    Device *dv = pool_device(pool);
    if (!dv) return ret(cudaErrorInvalidValue);
    if (cudaError_t e = stream_here(s)) return e;
    if (cudaError_t e = refused_in_capture(s)) return e;
    return stream_ordered_alloc((int)(dv - state().dev), ptr, size, s);
}

cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags)
{
    pnsim_use_context();
    if (!ptr || flags > 7) return ret(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    void *p = raw_alloc(round_up(size));
    if (!p) return ret(cudaErrorMemoryAllocation);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.allocs[(uintptr_t)p] = Alloc{round_up(size), size, A_HOST, -1};
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, 0); }

/* Synchronizes (PONTE_SIM_ASYNC: all pending work runs first), as CUDA's does. */
cudaError_t cudaFreeHost(void *ptr)
{
    pnsim_use_context();
    if (!ptr) return cudaSuccess;
    if (async_on()) drain_device(-1);
    State &st = state();
    {
        std::lock_guard<std::mutex> lock(st.mu);
        auto it = st.allocs.find((uintptr_t)ptr);
        if (it == st.allocs.end() || it->second.kind != A_HOST) return ret(cudaErrorInvalidValue);
        st.allocs.erase(it);
    }
    free(ptr);
    return cudaSuccess;
}

/* Synchronous (PONTE_SIM_ASYNC: all pending work runs first). */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    pnsim_use_context();
    if (cudaError_t e = refused_while_capturing()) return e;
    if (count && async_on()) drain_device(-1);
    return do_memcpy("cudaMemcpy", dst, src, count, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (!async_on() && !pnsim_capturing(stream)) return do_memcpy("cudaMemcpyAsync", dst, src, count, kind);
    if (count == 0) return cudaSuccess;
    if (cudaError_t e = check_copy("cudaMemcpyAsync", dst, count, src, count, count, 1, kind))
        return e;
    return copy_on_stream(stream, dst, count, src, count, count, 1);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, enum cudaMemcpyKind kind,
                              cudaStream_t stream)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (width == 0 || height == 0) return cudaSuccess;
    if (cudaError_t e = check_copy("cudaMemcpy2D", dst, dpitch, src, spitch, width, height, kind))
        return e;
    if (async_on() || pnsim_capturing(stream))
        return copy_on_stream(stream, dst, dpitch, src, spitch, width, height);
    for (size_t r = 0; r < height; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, enum cudaMemcpyKind kind)
{
    return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, 0);
}

void pnsim_register_symbol(const void *p, size_t size)
{
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.allocs.emplace((uintptr_t)p, Alloc{size, size, A_SYMBOL, -1});
}

/* Synchronous (PONTE_SIM_ASYNC: all pending work runs first). */
cudaError_t cudaMemset(void *ptr, int value, size_t count)
{
    pnsim_use_context();
    if (cudaError_t e = refused_while_capturing()) return e;
    if (count && async_on()) drain_device(-1);
    return do_memset("cudaMemset", ptr, value, count);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (!async_on() && !pnsim_capturing(stream)) return do_memset("cudaMemsetAsync", ptr, value, count);
    if (count == 0) return cudaSuccess;
    if (cudaError_t e = check_memset("cudaMemsetAsync", ptr, count)) return e;
    return submit_work(stream, [=] {
        memset(ptr, value, count);
        return cudaSuccess;
    });
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    pnsim_use_context();
    if (!free_bytes || !total_bytes) return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    size_t used = st.dev[tl_device].bytes;
    *total_bytes = st.limit;
    *free_bytes = st.limit > used ? st.limit - used : 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device)
{
    if (!pool) return ret(cudaErrorInvalidValue);
    if (!device_ok(device)) return ret(cudaErrorInvalidDevice);
    *pool = (cudaMemPool_t)(void *)&state().dev[device];
    return cudaSuccess;
}

cudaError_t cudaDeviceGetMemPool(cudaMemPool_t *pool, int device)
{
    return cudaDeviceGetDefaultMemPool(pool, device);
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *value)
{
    Device *dv = pool_device(pool);
    if (!dv || !value) return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    Pool &pl = dv->pool;
    uint64_t v = 0;
    switch (attr) {
    case cudaMemPoolReuseFollowEventDependencies:
    case cudaMemPoolReuseAllowOpportunistic:
    case cudaMemPoolReuseAllowInternalDependencies:
        pl.reuse[attr - 1] = *(int *)value;
        return cudaSuccess;
    case cudaMemPoolAttrReleaseThreshold: memcpy(&pl.threshold, value, 8); return cudaSuccess;
    case cudaMemPoolAttrReservedMemHigh: /* only a reset (to 0) is allowed */
    case cudaMemPoolAttrUsedMemHigh:
        memcpy(&v, value, 8);
        if (v != 0) return ret(cudaErrorInvalidValue);
        if (attr == cudaMemPoolAttrReservedMemHigh) pl.reserved_high = pl.reserved;
        else pl.used_high = pl.used;
        return cudaSuccess;
    default: return ret(cudaErrorInvalidValue);
    }
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *value)
{
    Device *dv = pool_device(pool);
    if (!dv || !value) return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    Pool &pl = dv->pool;
    uint64_t v;
    switch (attr) {
    case cudaMemPoolReuseFollowEventDependencies:
    case cudaMemPoolReuseAllowOpportunistic:
    case cudaMemPoolReuseAllowInternalDependencies:
        *(int *)value = pl.reuse[attr - 1];
        return cudaSuccess;
    case cudaMemPoolAttrReleaseThreshold: v = pl.threshold; break;
    case cudaMemPoolAttrReservedMemCurrent: v = pl.reserved; break;
    case cudaMemPoolAttrReservedMemHigh: v = pl.reserved_high; break;
    case cudaMemPoolAttrUsedMemCurrent: v = pl.used; break;
    case cudaMemPoolAttrUsedMemHigh: v = pl.used_high; break;
    default: return ret(cudaErrorInvalidValue);
    }
    memcpy(value, &v, 8);
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t min_bytes_to_keep)
{
    Device *dv = pool_device(pool);
    if (!dv) return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    pool_trim_locked(st, *dv, min_bytes_to_keep);
    return cudaSuccess;
}

cudaError_t cudaDeviceCanAccessPeer(int *can_access, int device, int peer_device)
{
    if (!can_access) return ret(cudaErrorInvalidValue);
    if (!device_ok(device) || !device_ok(peer_device)) return ret(cudaErrorInvalidDevice);
    const char *np = getenv("PONTE_SIM_NO_PEER");
    *can_access = device != peer_device && !(np && *np && strcmp(np, "0") != 0);
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAccess(cudaMemPool_t pool, const struct cudaMemAccessDesc *desc, size_t count)
{
    Device *dv = pool_device(pool);
    if (!dv || (!desc && count)) return ret(cudaErrorInvalidValue);
    State &st = state();
    const int owner = (int)(dv - st.dev);
    for (size_t i = 0; i < count; i++) {
        const int id = desc[i].location.id;
        const unsigned fl = (unsigned)desc[i].flags;
        if (desc[i].location.type != cudaMemLocationTypeDevice || !device_ok(id) ||
            (fl != cudaMemAccessFlagsProtNone && fl != cudaMemAccessFlagsProtRead &&
             fl != cudaMemAccessFlagsProtReadWrite))
            return ret(cudaErrorInvalidValue);
        if (id == owner) { /* the owner keeps read-write access */
            if (fl != cudaMemAccessFlagsProtReadWrite) return ret(cudaErrorInvalidValue);
            continue;
        }
        int can = 0;
        cudaDeviceCanAccessPeer(&can, id, owner);
        if (!can && fl != cudaMemAccessFlagsProtNone) return ret(cudaErrorInvalidDevice);
    }
    std::lock_guard<std::mutex> lock(st.mu);
    for (size_t i = 0; i < count; i++)
        if (desc[i].location.id != owner)
            dv->pool.access[desc[i].location.id] = desc[i].flags != cudaMemAccessFlagsProtNone;
    return cudaSuccess;
}

cudaError_t cudaMemPoolGetAccess(enum cudaMemAccessFlags *flags, cudaMemPool_t pool,
                                 struct cudaMemLocation *location)
{
    Device *dv = pool_device(pool);
    if (!dv || !flags || !location || location->type != cudaMemLocationTypeDevice ||
        !device_ok(location->id))
        return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    bool own = location->id == (int)(dv - st.dev);
    *flags = own || dv->pool.access[location->id] ? cudaMemAccessFlagsProtReadWrite
                                                  : cudaMemAccessFlagsProtNone;
    return cudaSuccess;
}

/* ───────────────────────────── streams and events ───────────────────────────── */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    pnsim_use_context();
    if (!stream || flags > cudaStreamNonBlocking) return ret(cudaErrorInvalidValue);
    CUstreamSim *s = new CUstreamSim{flags, tl_device, nullptr, nullptr};
    if (async_on()) {
        Async &A = async_state();
        std::lock_guard<std::recursive_mutex> lock(A.mu);
        s->q = new Queue{{}, tl_device, false};
        A.queues.push_back(s->q);
    }
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.streams.insert(s);
    *stream = (cudaStream_t)s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

/* Does not wait (as CUDA): work still queued on the stream runs later. */
cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    State &st = state();
    {
        std::lock_guard<std::mutex> lock(st.mu);
        if (!st.streams.erase(stream)) return ret(cudaErrorInvalidResourceHandle);
    }
    CUstreamSim *s = (CUstreamSim *)(void *)stream;
    if (s->capture) { /* a capture never ended: its recorded work is dropped */
        Async &A = async_state();
        std::lock_guard<std::recursive_mutex> lock(A.mu);
        delete detach_capture(s);
    }
    if (s->q) {
        Async &A = async_state();
        std::lock_guard<std::recursive_mutex> lock(A.mu);
        s->q->dead = true;
        if (s->q->ops.empty()) forget_queue(A, s->q);
    }
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    int d = pnsim_stream_device(stream);
    if (d < 0) return ret(cudaErrorInvalidResourceHandle);
    if (cudaError_t e = refused_while_capturing()) return e;
    cudaError_t e = async_on() ? drain_stream(stream) : cudaSuccess;
    sync_point(d);
    return e;
}

/* cudaErrorNotReady (not recorded) while work queued on stream (any of its device's for the
 * null stream) is pending; it may first run some ready work, at random. */
cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    int d = pnsim_stream_device(stream);
    if (d < 0) return ret(cudaErrorInvalidResourceHandle);
    if (cudaError_t e = refused_while_capturing()) return e;
    if (!async_on()) return cudaSuccess;
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    random_progress();
    Queue *q = stream_queue(stream);
    return (q ? !q->ops.empty() : device_pending(d)) ? cudaErrorNotReady : cudaSuccess;
}

/* The event may be of another device (how dependencies cross devices); the stream not. Under
 * PONTE_SIM_ASYNC the stream's later work waits for the event's latest record at the call
 * (none: no wait). */
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    if (cudaError_t e = stream_here(stream)) return e;
    if (cudaError_t e = refused_in_capture(stream)) return e;
    if (event_device(event) < 0 || flags > 1) return ret(cudaErrorInvalidResourceHandle);
    if (!async_on()) return cudaSuccess;
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    Op op;
    op.ev = ((CUeventSim *)(void *)event)->es;
    op.seq = op.ev->issued;
    op.dev = tl_device;
    if (op.ev->done >= op.seq) return cudaSuccess;
    Queue *q = stream_queue(stream);
    if (!q) return drain_event(op.ev, op.seq);
    q->ops.push_back(std::move(op));
    random_progress();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    pnsim_use_context();
    if (!event || flags > 7) return ret(cudaErrorInvalidValue);
    CUeventSim *e = new CUeventSim{flags, tl_device, std::make_shared<EvState>()};
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.events.insert(e);
    *event = (cudaEvent_t)e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

/* The stream must be the current device's, and so must the event (its device's). Under
 * PONTE_SIM_ASYNC the record is queued: it completes (and takes its time) when it runs. */
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (cudaError_t e = stream_here(stream)) return e;
    if (cudaError_t e = refused_in_capture(stream)) return e;
    if (event_device(event) != tl_device) return ret(cudaErrorInvalidResourceHandle);
    CUeventSim *e = (CUeventSim *)(void *)event;
    Op op;
    op.ev = e->es;
    op.record = true;
    op.dev = tl_device;
    if (!async_on()) {
        op.ev->recorded = true;
        op.ev->done = op.seq = ++op.ev->issued;
        op.ev->ms = now_ms();
        return cudaSuccess;
    }
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    op.ev->recorded = true;
    op.seq = ++op.ev->issued;
    return submit(stream, std::move(op));
}

/* Waits until the event's latest record at the call has run. */
cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    int d = event_device(event);
    if (d < 0) return ret(cudaErrorInvalidResourceHandle);
    cudaError_t e = cudaSuccess;
    if (async_on()) {
        std::shared_ptr<EvState> es = ((CUeventSim *)(void *)event)->es;
        std::lock_guard<std::recursive_mutex> lock(async_state().mu);
        e = drain_event(es, es->issued);
    }
    sync_point(d);
    return e;
}

/* cudaErrorNotReady (not recorded) while the event's latest record is pending; it may first
 * run some ready work, at random. */
cudaError_t cudaEventQuery(cudaEvent_t event)
{
    if (!handle_live(state().events, event)) return ret(cudaErrorInvalidResourceHandle);
    if (!async_on()) return cudaSuccess;
    std::lock_guard<std::recursive_mutex> lock(async_state().mu);
    random_progress();
    const EvState &es = *((CUeventSim *)(void *)event)->es;
    return es.done < es.issued ? cudaErrorNotReady : cudaSuccess;
}

/* cudaErrorNotReady (not recorded) while either event's latest record is pending. */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!ms) return ret(cudaErrorInvalidValue);
    int da = event_device(start), db = event_device(end);
    if (da < 0 || db != da) return ret(cudaErrorInvalidResourceHandle);
    CUeventSim *a = (CUeventSim *)(void *)start, *b = (CUeventSim *)(void *)end;
    if ((a->flags | b->flags) & cudaEventDisableTiming) return ret(cudaErrorInvalidResourceHandle);
    if (!a->es->recorded || !b->es->recorded) return ret(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::recursive_mutex> lock(async_state().mu);
    if (a->es->done < a->es->issued || b->es->done < b->es->issued) return cudaErrorNotReady;
    *ms = (float)(b->es->ms - a->es->ms);
    return cudaSuccess;
}

/* Does not wait (as CUDA): a record still queued completes later. */
cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    State &st = state();
    {
        std::lock_guard<std::mutex> lock(st.mu);
        if (!st.events.erase(event)) return ret(cudaErrorInvalidResourceHandle);
    }
    delete (CUeventSim *)(void *)event;
    return cudaSuccess;
}

/* Runs fn(user_data) in stream order: at the call, or queued under PONTE_SIM_ASYNC. */
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *user_data)
{
    pnsim_use_context();
    if (cudaError_t e = stream_here(stream)) return e;
    if (!fn) return ret(cudaErrorInvalidValue);
    if (!async_on() && !pnsim_capturing(stream)) {
        fn(user_data);
        return cudaSuccess;
    }
    return submit_work(stream, [=] {
        fn(user_data);
        return cudaSuccess;
    });
}

/* ───────────────────────────── kernel attributes ───────────────────────────── */

cudaError_t pnsim_occupancy(int *blocks, const void *func, int block_size, size_t smem)
{
    if (!blocks || !func || block_size < 1 || block_size > 1024) return ret(cudaErrorInvalidValue);
    if (smem > pnsim_kernel_smem_limit(func)) {
        *blocks = 0;
        return cudaSuccess;
    }
    const Arch &a = *state().dev[tl_device].arch;
    const size_t per_block = smem + arch_reserved_smem(a);
    int warps = (block_size + 31) / 32;
    int by_threads = a.threads_per_sm / 32 / warps;
    int by_smem = per_block ? (int)(a.smem_per_sm / per_block) : a.blocks_per_sm;
    int b = by_threads < a.blocks_per_sm ? by_threads : a.blocks_per_sm;
    *blocks = b < by_smem ? b : by_smem;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    pnsim_use_context();
    if (!func) return ret(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
        return value >= -1 && value <= 100 ? cudaSuccess : ret(cudaErrorInvalidValue);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > pnsim_smem_optin())
        return ret(cudaErrorInvalidValue);
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.func_smem[{tl_device, func}] = (size_t)value; /* per device, as on hardware */
    return cudaSuccess;
}

/* ───────────────────────────── stream capture (cuda_sim.h) ───────────────────────────── */

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    if (cudaError_t e = stream_here(stream)) return e;
    if ((unsigned)mode > cudaStreamCaptureModeRelaxed) return ret(cudaErrorInvalidValue);
    if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
        return ret(cudaErrorStreamCaptureUnsupported); /* the legacy stream cannot capture */
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    CUstreamSim *s = (CUstreamSim *)(void *)stream;
    if (s->capture) return ret(cudaErrorIllegalState);
    s->capture = new Capture();
    s->capture->work->dev = tl_device;
    s->capture->mode = mode;
    active_captures().push_back(s->capture);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    if (!graph) return ret(cudaErrorInvalidValue);
    if (pnsim_stream_device(stream) < 0) return ret(cudaErrorInvalidResourceHandle);
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    if (!capture_of(stream)) return ret(cudaErrorIllegalState);
    Capture *c = detach_capture((CUstreamSim *)(void *)stream);
    *graph = nullptr;
    cudaError_t e = cudaSuccess;
    if (c->invalidated) e = ret(cudaErrorStreamCaptureInvalidated);
    else *graph = (cudaGraph_t)(void *)new GraphSim{c->work};
    delete c;
    return e;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status)
{
    if (!status) return ret(cudaErrorInvalidValue);
    if (pnsim_stream_device(stream) < 0) return ret(cudaErrorInvalidResourceHandle);
    Async &A = async_state();
    std::lock_guard<std::recursive_mutex> lock(A.mu);
    const Capture *c = capture_of(stream);
    *status = !c ? cudaStreamCaptureStatusNone
                 : c->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    if (!exec || !graph || flags) return ret(cudaErrorInvalidValue);
    *exec = (cudaGraphExec_t)(void *)new GraphSim{((GraphSim *)(void *)graph)->work};
    return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                cudaGraphExecUpdateResultInfo *info)
{
    if (!exec || !graph || !info) return ret(cudaErrorInvalidValue);
    std::shared_ptr<OpList> &have = ((GraphSim *)(void *)exec)->work;
    const std::shared_ptr<OpList> &want = ((GraphSim *)(void *)graph)->work;
    *info = cudaGraphExecUpdateResultInfo{cudaGraphExecUpdateSuccess, nullptr, nullptr};
    if (have->dev != want->dev) info->result = cudaGraphExecUpdateError;
    else if (have->ops.size() != want->ops.size())
        info->result = cudaGraphExecUpdateErrorTopologyChanged;
    else
        for (size_t i = 0; i < want->ops.size(); i++) /* an operation's kind is its run step */
            if (want->ops[i].run != have->ops[i].run || want->ops[i].dev != have->ops[i].dev)
                info->result = cudaGraphExecUpdateErrorNodeTypeChanged;
    if (info->result != cudaGraphExecUpdateSuccess) return ret(cudaErrorGraphExecUpdateFailure);
    have = want; /* queued launches hold the old list */
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode)
{
    if (!mode || (unsigned)*mode > cudaStreamCaptureModeRelaxed) return ret(cudaErrorInvalidValue);
    std::swap(*mode, tl_capture_mode);
    return cudaSuccess;
}

/* One run of the graph's work queued on stream (in order, each operation on the device it was
 * captured on), as one operation per recorded one holding the shared list. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    if (!exec) return ret(cudaErrorInvalidValue);
    if (cudaError_t e = stream_here(stream)) return e;
    if (cudaError_t e = refused_in_capture(stream)) return e;
    const std::shared_ptr<OpList> &work = ((GraphSim *)(void *)exec)->work;
    if (work->dev != tl_device) return ret(cudaErrorInvalidResourceHandle);
    pnsim_use_context();
    struct Replay {
        std::shared_ptr<OpList> work;
        size_t i;
    };
    cudaError_t first = cudaSuccess;
    for (size_t i = 0; i < work->ops.size(); i++) {
        Op op;
        op.ctx = new Replay{work, i};
        op.run = [](void *p) {
            const Replay *r = static_cast<Replay *>(p);
            Op &o = r->work->ops[r->i];
            return o.run(o.ctx);
        };
        op.drop = [](void *p) { delete static_cast<Replay *>(p); };
        op.dev = work->ops[i].dev;
        cudaError_t e = submit(stream, std::move(op));
        if (e && !first) first = e;
    }
    return first;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    delete (GraphSim *)(void *)exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete (GraphSim *)(void *)graph;
    return cudaSuccess;
}
