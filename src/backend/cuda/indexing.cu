/* indexing.cu — the GPU index engine: gathers copy target -> linear side (index values
 * wrapped once, then clamped), scatters combine linear side -> target (out-of-range slices
 * dropped) with atomics (native adds/max/min where the hardware has them, compare-and-swap
 * loops on the containing 32- or 64-bit word otherwise), and "set" scatters write the update
 * of the last position per target element (a winner table built with atomicMax first), so
 * duplicates resolve exactly as on the CPU. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/indexing.h"

#ifdef PONTE_GPU_SIM
/* The simulated launch checks the plan's index arrays (cuda_sim.h). */
static inline void pnsim_param_pointers(const pnG_index_plan &p, pnsim_param_visit &v)
{
    for (int k = 0; k < p.nidx; k++) v.ptr(p.idata[k]);
}
#endif

static const int IDX_THREADS = 256;
/* Slices of at least this many elements get a warp per position (one index resolve per
 * warp, consecutive lanes on consecutive slice elements); smaller ones a thread per
 * (position, slice element). */
static const int64_t IDX_WARP_SLICE = 32;

/* ───────────────────────────── positions and slices ───────────────────────────── */

/* An index element as int64 (uint64 beyond INT64_MAX saturates: out of range). */
__device__ __forceinline__ int64_t idx_load(const void *base, int dtype, int64_t off)
{
    switch (dtype) {
    case PN_UINT8: return ((const uint8_t *)base)[off];
    case PN_UINT16: return ((const uint16_t *)base)[off];
    case PN_UINT32: return ((const uint32_t *)base)[off];
    case PN_UINT64: {
        uint64_t v = ((const uint64_t *)base)[off];
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    }
    case PN_INT8: return ((const int8_t *)base)[off];
    case PN_INT16: return ((const int16_t *)base)[off];
    case PN_INT32: return ((const int32_t *)base)[off];
    default: return ((const int64_t *)base)[off];
    }
}

/* Linear-side and target offsets of position pos; false when a scatter drops it. The loops
 * over operands run to the constant bound (guarded by p.nidx) and unroll, so that off[] stays
 * in registers (a bound known only at run time put it in local memory). */
__device__ __forceinline__ bool idx_resolve(const pnG_index_plan &p, bool scatter, int64_t pos,
                                            int64_t &lin, int64_t &tgt)
{
    int64_t off[2 + PNG_IDX_MAXIDX];
    const int nop = 2 + p.nidx;
#pragma unroll
    for (int op = 0; op < 2 + PNG_IDX_MAXIDX; op++) off[op] = 0;
    for (int d = p.ni - 1; d >= 0; d--) {
        int64_t ext = p.ishape[d], q = pos / ext, c = pos - q * ext;
        pos = q;
#pragma unroll
        for (int op = 0; op < 2 + PNG_IDX_MAXIDX; op++)
            if (op < nop) off[op] += c * p.istr[op][d];
    }
    int64_t t = off[1];
#pragma unroll
    for (int k = 0; k < PNG_IDX_MAXIDX; k++) {
        if (k >= p.nidx) break;
        int64_t v = idx_load(p.idata[k], p.idtype[k], off[2 + k]);
        int64_t hi = p.extent[k] - p.window[k];
        if (v < 0) v += p.extent[k];
        if (v < 0 || v > hi) {
            if (scatter) return false;
            v = v < 0 ? 0 : hi;
        }
        t += v * p.tstride[k];
    }
    lin = off[0];
    tgt = t;
    return true;
}

/* Linear-side and target offsets of slice element s. */
__device__ __forceinline__ void idx_slice(const pnG_index_plan &p, int64_t s, int64_t &lo,
                                          int64_t &to)
{
    int64_t a = 0, b = 0;
    for (int d = p.ns - 1; d >= 0; d--) {
        int64_t ext = p.sshape[d], q = s / ext, c = s - q * ext;
        s = q;
        a += c * p.sstr[0][d];
        b += c * p.sstr[1][d];
    }
    lo = a;
    to = b;
}

/* Calls f(pos, lin, tgt) for every kept (position, slice element) pair of the plan, P
 * positions of S slice elements; by_warp: a warp per position (lanes on consecutive slice
 * elements, one index resolve per warp), else a thread per pair. */
template <typename F>
__device__ __forceinline__ void idx_walk(const pnG_index_plan &p, bool scatter, int64_t P,
                                         int64_t S, bool by_warp, F f)
{
    if (by_warp) {
        bool flat = p.ns == 1;
        int64_t ls = flat ? p.sstr[0][0] : 0, ts = flat ? p.sstr[1][0] : 0;
        int64_t wpb = blockDim.x / 32, lane = threadIdx.x % 32;
        for (int64_t pos = blockIdx.x * wpb + threadIdx.x / 32; pos < P;
             pos += (int64_t)gridDim.x * wpb) {
            int64_t lin, tgt;
            if (!idx_resolve(p, scatter, pos, lin, tgt)) continue;
            for (int64_t s = lane; s < S; s += 32) {
                int64_t lo, to;
                if (flat) lo = s * ls, to = s * ts;
                else idx_slice(p, s, lo, to);
                f(pos, lin + lo, tgt + to);
            }
        }
        return;
    }
    for (int64_t w = png_thread_index(); w < P * S; w += png_grid_stride()) {
        int64_t pos = w, lo = 0, to = 0, lin, tgt;
        if (S > 1) {
            pos = w / S;
            idx_slice(p, w - pos * S, lo, to);
        }
        if (idx_resolve(p, scatter, pos, lin, tgt)) f(pos, lin + lo, tgt + to);
    }
}

/* ───────────────────────────── combining ───────────────────────────── */

/* The unsigned type integer arithmetic wraps in (no signed overflow, no int promotion
 * overflow for 16-bit products); floats compute as themselves. */
template <typename C> struct idx_wrap {
    typedef C type;
};
#define IDX_WRAP(C, U)                                                                         \
    template <> struct idx_wrap<C> {                                                           \
        typedef U type;                                                                        \
    };
IDX_WRAP(bool, uint32_t)
IDX_WRAP(uint8_t, uint32_t)
IDX_WRAP(uint16_t, uint32_t)
IDX_WRAP(uint32_t, uint32_t)
IDX_WRAP(uint64_t, uint64_t)
IDX_WRAP(int8_t, uint32_t)
IDX_WRAP(int16_t, uint32_t)
IDX_WRAP(int32_t, uint32_t)
IDX_WRAP(int64_t, uint64_t)
#undef IDX_WRAP

/* The CPU's combine on compute values x (target) and y (update): add, prod, and max/min that
 * propagate a NaN update (a NaN already in the target stays: nothing compares greater). */
template <int MODE, typename C> __device__ __forceinline__ C idx_combine(C x, C y)
{
    typedef typename idx_wrap<C>::type W;
    if constexpr (MODE == PN_SCATTER_ADD) return (C)((W)x + (W)y);
    else if constexpr (MODE == PN_SCATTER_PROD) return (C)((W)x * (W)y);
    else if constexpr (MODE == PN_SCATTER_MAX) return (y > x || y != y) ? y : x;
    else return (x > y || y != y) ? y : x;
}
__device__ __forceinline__ bool idx_cnan(png_c64 z) { return z.re != z.re || z.im != z.im; }
__device__ __forceinline__ bool idx_cgt(png_c64 a, png_c64 b)
{
    return a.re > b.re || (a.re == b.re && a.im > b.im);
}
template <int MODE> __device__ __forceinline__ png_c64 idx_combine(png_c64 x, png_c64 y)
{
    png_c64 r;
    if constexpr (MODE == PN_SCATTER_ADD) {
        r.re = x.re + y.re;
        r.im = x.im + y.im;
    } else if constexpr (MODE == PN_SCATTER_PROD) {
        r.re = x.re * y.re - x.im * y.im;
        r.im = x.re * y.im + x.im * y.re;
    } else if constexpr (MODE == PN_SCATTER_MAX) {
        r = (idx_cgt(y, x) || idx_cnan(y)) ? y : x;
    } else {
        r = (idx_cgt(x, y) || idx_cnan(y)) ? y : x;
    }
    return r;
}

/* new = combine(old, y) on the storage type T (halves through float). */
template <int MODE, typename T> __device__ __forceinline__ T idx_apply(T old, T y)
{
    typedef typename png_compute<T>::type C;
    T r;
    C x = png_load(&old), v = png_load(&y);
    png_store(&r, idx_combine<MODE>(x, v));
    return r;
}

/* The unsigned type of 1- and 2-byte elements. */
template <int B> struct idx_small_uint;
template <> struct idx_small_uint<1> {
    typedef uint8_t type;
};
template <> struct idx_small_uint<2> {
    typedef uint16_t type;
};

/* Bits of storage type T and back, through a union (the element sizes 1, 2, 4, 8). */
template <typename T, typename U> union idx_bits {
    T v;
    U u;
};

/* *p = combine(*p, y) atomically: a compare-and-swap loop on the word holding *p (the
 * containing aligned 32-bit word for 1- and 2-byte types: device buffers are 512-byte
 * granular, so the word never leaves the allocation). */
template <int MODE, typename T> __device__ __forceinline__ void idx_atomic_cas(T *p, T y)
{
    if constexpr (sizeof(T) == 8) {
        unsigned long long *q = (unsigned long long *)p, old = *q, assumed;
        do {
            assumed = old;
            idx_bits<T, unsigned long long> a, b;
            a.u = assumed;
            b.v = idx_apply<MODE>(a.v, y);
            if (b.u == assumed) return;
            old = atomicCAS(q, assumed, b.u);
        } while (old != assumed);
    } else if constexpr (sizeof(T) == 4) {
        unsigned *q = (unsigned *)p, old = *q, assumed;
        do {
            assumed = old;
            idx_bits<T, unsigned> a, b;
            a.u = assumed;
            b.v = idx_apply<MODE>(a.v, y);
            if (b.u == assumed) return;
            old = atomicCAS(q, assumed, b.u);
        } while (old != assumed);
    } else {
        typedef typename idx_small_uint<sizeof(T)>::type R;
        uintptr_t addr = (uintptr_t)p;
        unsigned *q = (unsigned *)(addr & ~(uintptr_t)3);
        unsigned shift = (unsigned)(addr & 3) * 8u, mask = (unsigned)(R)~(R)0 << shift;
        unsigned old = *q, assumed;
        do {
            assumed = old;
            idx_bits<T, R> a, b;
            a.u = (R)((assumed & mask) >> shift);
            b.v = idx_apply<MODE>(a.v, y);
            unsigned nw = (assumed & ~mask) | ((unsigned)b.u << shift);
            if (nw == assumed) return;
            old = atomicCAS(q, assumed, nw);
        } while (old != assumed);
    }
}

/* The atomic combine of mode MODE: native atomics where they exist, else idx_atomic_cas. */
template <int MODE, typename T> __device__ __forceinline__ void idx_atomic(T *p, T y)
{
    idx_atomic_cas<MODE>(p, y);
}
#define IDX_NATIVE(MODE, T, CALL)                                                              \
    template <> __device__ __forceinline__ void idx_atomic<MODE, T>(T * p, T y) { CALL; }
IDX_NATIVE(PN_SCATTER_ADD, float, atomicAdd(p, y))
IDX_NATIVE(PN_SCATTER_ADD, double, atomicAdd(p, y))
IDX_NATIVE(PN_SCATTER_ADD, int32_t, atomicAdd((unsigned *)p, (unsigned)y))
IDX_NATIVE(PN_SCATTER_ADD, uint32_t, atomicAdd((unsigned *)p, (unsigned)y))
IDX_NATIVE(PN_SCATTER_ADD, int64_t, atomicAdd((unsigned long long *)p, (unsigned long long)y))
IDX_NATIVE(PN_SCATTER_ADD, uint64_t, atomicAdd((unsigned long long *)p, (unsigned long long)y))
IDX_NATIVE(PN_SCATTER_ADD, png_c64, (atomicAdd(&p->re, y.re), atomicAdd(&p->im, y.im)))
IDX_NATIVE(PN_SCATTER_MAX, int32_t, atomicMax((int *)p, (int)y))
IDX_NATIVE(PN_SCATTER_MAX, uint32_t, atomicMax((unsigned *)p, (unsigned)y))
IDX_NATIVE(PN_SCATTER_MAX, uint64_t, atomicMax((unsigned long long *)p, (unsigned long long)y))
IDX_NATIVE(PN_SCATTER_MIN, int32_t, atomicMin((int *)p, (int)y))
IDX_NATIVE(PN_SCATTER_MIN, uint32_t, atomicMin((unsigned *)p, (unsigned)y))
IDX_NATIVE(PN_SCATTER_MIN, uint64_t, atomicMin((unsigned long long *)p, (unsigned long long)y))
#undef IDX_NATIVE

/* ───────────────────────────── kernels ───────────────────────────── */

/* Gathers: R is the raw element type of the element size. */
template <typename R>
__global__ void idx_gather_kernel(pnG_index_plan p, R *lin, const R *tgt, int64_t P, int64_t S,
                                  bool by_warp)
{
    idx_walk(p, false, P, S, by_warp,
             [&](int64_t, int64_t l, int64_t t) { lin[l] = tgt[t]; });
}

/* Combining scatters. */
template <int MODE, typename T>
__global__ void idx_scatter_kernel(pnG_index_plan p, const T *lin, T *tgt, int64_t P, int64_t S,
                                   bool by_warp)
{
    idx_walk(p, true, P, S, by_warp,
             [&](int64_t, int64_t l, int64_t t) { idx_atomic<MODE>(tgt + t, lin[l]); });
}

/* "set" scatters, pass 1: win[t] = the last position writing target element t. */
template <typename W>
__global__ void idx_winner_kernel(pnG_index_plan p, W *win, int64_t P, int64_t S, bool by_warp)
{
    idx_walk(p, true, P, S, by_warp,
             [&](int64_t pos, int64_t, int64_t t) { atomicMax(win + t, (W)pos); });
}

/* "set" scatters, pass 2: the winning position writes (win NULL: no duplicates possible). */
template <typename R, typename W>
__global__ void idx_set_kernel(pnG_index_plan p, const R *lin, R *tgt, const W *win, int64_t P,
                               int64_t S, bool by_warp)
{
    idx_walk(p, true, P, S, by_warp, [&](int64_t pos, int64_t l, int64_t t) {
        if (!win || win[t] == (W)pos) tgt[t] = lin[l];
    });
}

/* ───────────────────────────── launcher ───────────────────────────── */

/* Blocks of IDX_THREADS for P positions of S slice elements. */
static unsigned idx_grid(int64_t P, int64_t S, bool by_warp)
{
    return by_warp ? png_blocks_for(P, IDX_THREADS / 32) : png_blocks_for(P * S, IDX_THREADS);
}

template <typename R>
static int idx_run_raw(const pnG_index_plan &p, bool scatter, void *lin, void *tgt,
                       int64_t tgt_size, int64_t P, int64_t S, int stream)
{
    cudaStream_t st = png_stream(stream);
    bool by_warp = S >= IDX_WARP_SLICE;
    unsigned grid = idx_grid(P, S, by_warp);
    if (!scatter) {
        auto k = idx_gather_kernel<R>;
        PNG_LAUNCH(k, grid, IDX_THREADS, 0, st, p, (R *)lin, (const R *)tgt, P, S, by_warp);
        return pnG_check_launch("gather");
    }
    if (P == 1) { /* one position: no duplicates */
        auto k = idx_set_kernel<R, unsigned>;
        PNG_LAUNCH(k, grid, IDX_THREADS, 0, st, p, (const R *)lin, (R *)tgt,
                   (const unsigned *)nullptr, P, S, by_warp);
        return pnG_check_launch("scatter");
    }
    bool wide = P > (int64_t)UINT32_MAX;
    size_t wbytes = (size_t)tgt_size * (wide ? 8 : 4);
    void *win = pnG_malloc(wbytes, stream);
    if (!win) return -1;
    int rc = 0;
    if (cudaMemsetAsync(win, 0, wbytes, st) != cudaSuccess) {
        rc = pn_set_error(PN_ERR_BACKEND, "[gpu] cudaMemsetAsync of a scatter table failed");
    } else if (wide) {
        auto k1 = idx_winner_kernel<unsigned long long>;
        PNG_LAUNCH(k1, grid, IDX_THREADS, 0, st, p, (unsigned long long *)win, P, S, by_warp);
        auto k2 = idx_set_kernel<R, unsigned long long>;
        PNG_LAUNCH(k2, grid, IDX_THREADS, 0, st, p, (const R *)lin, (R *)tgt,
                   (const unsigned long long *)win, P, S, by_warp);
        rc = pnG_check_launch("scatter");
    } else {
        auto k1 = idx_winner_kernel<unsigned>;
        PNG_LAUNCH(k1, grid, IDX_THREADS, 0, st, p, (unsigned *)win, P, S, by_warp);
        auto k2 = idx_set_kernel<R, unsigned>;
        PNG_LAUNCH(k2, grid, IDX_THREADS, 0, st, p, (const R *)lin, (R *)tgt,
                   (const unsigned *)win, P, S, by_warp);
        rc = pnG_check_launch("scatter");
    }
    pnG_free(win, wbytes, stream);
    return rc;
}

template <int MODE, typename T>
static int idx_run_combine(const pnG_index_plan &p, void *lin, void *tgt, int64_t P, int64_t S,
                           int stream)
{
    bool by_warp = S >= IDX_WARP_SLICE;
    unsigned grid = idx_grid(P, S, by_warp);
    auto k = idx_scatter_kernel<MODE, T>;
    PNG_LAUNCH(k, grid, IDX_THREADS, 0, png_stream(stream), p, (const T *)lin, (T *)tgt, P, S,
               by_warp);
    return pnG_check_launch("scatter");
}

static int64_t idx_vectorized; /* pnG_index_vectorized_count */

extern "C" int64_t pnG_index_vectorized_count(void)
{
    return __atomic_load_n(&idx_vectorized, __ATOMIC_RELAXED);
}

/* Plan p of a gather whose slices are whole runs of 16-byte vectors, as the same plan in
 * vectors: flat unit-stride slices of S elements of esize bytes, S and every position's
 * linear-side and target strides multiples of V = 16 / esize elements, both pointers 16-byte
 * aligned. Row gathers (embedding lookups, take along a leading axis) then move 16 bytes per
 * load and store. False: p as it is. */
static bool idx_vectorize(const pnG_index_plan *p, size_t esize, const void *lin, const void *tgt,
                          int64_t S, pnG_index_plan *v)
{
    if (esize == 0 || esize >= 16 || 16 % esize) return false;
    const int64_t V = 16 / (int64_t)esize;
    if (p->ns != 1 || p->sstr[0][0] != 1 || p->sstr[1][0] != 1 || S % V ||
        ((uintptr_t)lin | (uintptr_t)tgt) % 16)
        return false;
    *v = *p;
    for (int d = 0; d < p->ni; d++)
        for (int op = 0; op < 2; op++) { /* linear side and target; index arrays keep theirs */
            if (p->istr[op][d] % V) return false;
            v->istr[op][d] /= V;
        }
    for (int k = 0; k < p->nidx; k++) {
        if (p->tstride[k] % V) return false;
        v->tstride[k] /= V;
    }
    v->sshape[0] = S / V;
    return true;
}

/* See indexing.h. */
extern "C" int pnG_index_run(const pnG_index_plan *p, pn_dtype dtype, bool scatter, int mode,
                             void *lin, void *tgt, int64_t tgt_size, int stream)
{
    int64_t P = 1, S = 1;
    for (int d = 0; d < p->ni; d++) P *= p->ishape[d];
    for (int d = 0; d < p->ns; d++) S *= p->sshape[d];
    if (P == 0 || S == 0) return 0;
    pnG_index_plan vec;
    if (!scatter && idx_vectorize(p, pn_dtype_size(dtype), lin, tgt, S, &vec)) {
        __atomic_fetch_add(&idx_vectorized, 1, __ATOMIC_RELAXED);
        return idx_run_raw<uint4>(vec, false, lin, tgt, 0, P, vec.sshape[0], stream);
    }
    if (!scatter || mode == PN_SCATTER_SET) {
        switch (pn_dtype_size(dtype)) {
        case 1: return idx_run_raw<uint8_t>(*p, scatter, lin, tgt, tgt_size, P, S, stream);
        case 2: return idx_run_raw<uint16_t>(*p, scatter, lin, tgt, tgt_size, P, S, stream);
        case 4: return idx_run_raw<uint32_t>(*p, scatter, lin, tgt, tgt_size, P, S, stream);
        case 8: return idx_run_raw<uint64_t>(*p, scatter, lin, tgt, tgt_size, P, S, stream);
        default: return PNG_UNSUPPORTED;
        }
    }
    int rc = PNG_UNSUPPORTED;
    png_dispatch(dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
#define IDX_MODE_CASE(M)                                                                       \
    case M: rc = idx_run_combine<M, T>(*p, lin, tgt, P, S, stream); break;
        switch (mode) {
            IDX_MODE_CASE(PN_SCATTER_ADD)
            IDX_MODE_CASE(PN_SCATTER_PROD)
            IDX_MODE_CASE(PN_SCATTER_MAX)
            IDX_MODE_CASE(PN_SCATTER_MIN)
        default: break;
        }
#undef IDX_MODE_CASE
    });
    return rc;
}
