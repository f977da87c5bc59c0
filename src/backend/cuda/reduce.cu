/* reduce.cu — GPU kernels of Reduce (sum, prod, max, min, all, any), ArgReduce, LogSumExp and
 * Softmax, with the CPU kernels' semantics (backend/cpu/reduce.c). A reduction is planned as
 * (kept outputs) x (reduced elements) with strides: a row kernel (a warp or a block cooperates
 * on one output; 16-byte loads when the reduced elements are contiguous) or a column kernel
 * (threads over consecutive outputs); too few outputs split the reduced range over blocks,
 * whose partials a second pass combines, except in a full reduction, where the last block to
 * finish combines them (a stream's counter says which block is last). Per-op variation: the
 * op structs (rop<K, T>). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/reduce.h"

#define RED_THREADS 256
#define RED_ILP 4 /* independent 16-byte loads per thread in the contiguous row loop */

/* ───────────────────────────── the ops ───────────────────────────── */

/* Accumulator and output types of a sum or product of T (the CPU's S / SO). */
template <typename T> struct sum_types {
    typedef typename png_compute<T>::type A;
    typedef T O;
};
#define SUM_TYPES(T, ACC)                                                                      \
    template <> struct sum_types<T> {                                                          \
        typedef ACC A;                                                                         \
        typedef ACC O;                                                                         \
    };
SUM_TYPES(bool, int32_t)
SUM_TYPES(uint8_t, uint32_t)
SUM_TYPES(uint16_t, uint32_t)
SUM_TYPES(int8_t, int32_t)
SUM_TYPES(int16_t, int32_t)
#undef SUM_TYPES

/* Sums scaled before they are stored (mean): as the CPU's (A)(a * scale), in double. */
template <typename A> __device__ __forceinline__ A scaled(A a, double s) { return (A)(a * s); }
__device__ __forceinline__ png_c64 scaled(png_c64 a, double s)
{
    png_c64 r = {(float)(a.re * s), (float)(a.im * s)};
    return r;
}

/* rop<K, T>: In (element type read), A (accumulator), O (stored type), init(), load(p, r)
 * (element at reduced index r), comb(a, b) (a holds the earlier elements), store(p, a,
 * scale). */
template <int K, typename T> struct rop;

template <int K, typename T> struct rop_base {
    typedef T In;
};

template <typename T> struct rop<PNG_RED_SUM, T> : rop_base<PNG_RED_SUM, T> {
    typedef typename sum_types<T>::A A;
    typedef typename sum_types<T>::O O;
    static __device__ __forceinline__ A init() { return png_from_int<A>(0); }
    static __device__ __forceinline__ A load(const T *p, int64_t) { return (A)png_load(p); }
    static __device__ __forceinline__ A comb(A a, A b) { return png_add(a, b); }
    static __device__ __forceinline__ void store(O *p, A a, double s)
    {
        png_store(p, s == 1 ? a : scaled(a, s));
    }
};
template <typename T> struct rop<PNG_RED_PROD, T> : rop_base<PNG_RED_PROD, T> {
    typedef typename sum_types<T>::A A;
    typedef typename sum_types<T>::O O;
    static __device__ __forceinline__ A init() { return png_from_int<A>(1); }
    static __device__ __forceinline__ A load(const T *p, int64_t) { return (A)png_load(p); }
    static __device__ __forceinline__ A comb(A a, A b) { return png_mul(a, b); }
    static __device__ __forceinline__ void store(O *p, A a, double) { png_store(p, a); }
};
template <typename T> struct rop<PNG_RED_MAX, T> : rop_base<PNG_RED_MAX, T> {
    typedef typename png_compute<T>::type A;
    typedef T O;
    static __device__ __forceinline__ A init() { return png_limits<A>::lo(); }
    static __device__ __forceinline__ A load(const T *p, int64_t) { return png_load(p); }
    static __device__ __forceinline__ A comb(A a, A b) { return png_max_nan(a, b); }
    static __device__ __forceinline__ void store(O *p, A a, double) { png_store(p, a); }
};
template <typename T> struct rop<PNG_RED_MIN, T> : rop_base<PNG_RED_MIN, T> {
    typedef typename png_compute<T>::type A;
    typedef T O;
    static __device__ __forceinline__ A init() { return png_limits<A>::hi(); }
    static __device__ __forceinline__ A load(const T *p, int64_t) { return png_load(p); }
    static __device__ __forceinline__ A comb(A a, A b) { return png_min_nan(a, b); }
    static __device__ __forceinline__ void store(O *p, A a, double) { png_store(p, a); }
};
template <typename T> struct rop<PNG_RED_AND, T> : rop_base<PNG_RED_AND, T> {
    typedef bool A;
    typedef bool O;
    static __device__ __forceinline__ A init() { return true; }
    static __device__ __forceinline__ A load(const T *p, int64_t)
    {
        return png_nonzero(png_load(p));
    }
    static __device__ __forceinline__ A comb(A a, A b) { return a && b; }
    static __device__ __forceinline__ void store(O *p, A a, double) { *p = a; }
};
template <typename T> struct rop<PNG_RED_OR, T> : rop_base<PNG_RED_OR, T> {
    typedef bool A;
    typedef bool O;
    static __device__ __forceinline__ A init() { return false; }
    static __device__ __forceinline__ A load(const T *p, int64_t)
    {
        return png_nonzero(png_load(p));
    }
    static __device__ __forceinline__ A comb(A a, A b) { return a || b; }
    static __device__ __forceinline__ void store(O *p, A a, double) { *p = a; }
};

/* logsumexp as a running (max, sum of exp(x - max)); a non-finite max ends as the result
 * (the CPU's "a slice whose max is infinite gives that max"; NaN wins). */
template <typename F> struct lse_acc {
    F m, s;
};
__device__ __forceinline__ float png_exp(float x) { return expf(x); }
__device__ __forceinline__ double png_exp(double x) { return exp(x); }
__device__ __forceinline__ float png_log(float x) { return logf(x); }
__device__ __forceinline__ double png_log(double x) { return log(x); }
template <typename F> __device__ __forceinline__ lse_acc<F> lse_comb(lse_acc<F> a, lse_acc<F> b)
{
    F m = png_max_nan(a.m, b.m);
    lse_acc<F> r = {m, (F)0};
    if (isinf(m) || m != m) return r;
    r.s = (a.m == -INFINITY ? (F)0 : a.s * png_exp(a.m - m)) +
          (b.m == -INFINITY ? (F)0 : b.s * png_exp(b.m - m));
    return r;
}
/* One element x into acc with one exponential. */
template <typename F> __device__ __forceinline__ lse_acc<F> lse_step(lse_acc<F> a, F x)
{
    if (x > a.m) {
        a.s = (a.m == -INFINITY ? (F)0 : a.s * png_exp(a.m - x)) + (F)1;
        a.m = x;
    } else if (x != x) {
        a.m = x;
    } else if (x != -INFINITY) {
        a.s += png_exp(x - a.m);
    }
    return a;
}
template <typename T> struct rop<PNG_RED_LSE, T> : rop_base<PNG_RED_LSE, T> {
    typedef typename png_compute<T>::type F;
    typedef lse_acc<F> A;
    typedef T O;
    static __device__ __forceinline__ A init()
    {
        A a = {(F)-INFINITY, (F)0};
        return a;
    }
    static __device__ __forceinline__ A load(const T *p, int64_t)
    {
        return lse_step(init(), (F)png_load(p));
    }
    static __device__ __forceinline__ A comb(A a, A b) { return lse_comb(a, b); }
    static __device__ __forceinline__ void store(O *p, A a, double)
    {
        png_store(p, (isinf(a.m) || a.m != a.m) ? a.m : a.m + png_log(a.s));
    }
};

/* argmax / argmin: (best value, its index); NaN is the extreme, ties go to the lower index
 * (the CPU's first extreme). i == UINT32_MAX marks the identity. */
template <typename F> struct arg_acc {
    F v;
    uint32_t i;
};
template <bool MAX, typename T> struct arg_op {
    typedef T In;
    typedef typename png_compute<T>::type F;
    typedef arg_acc<F> A;
    typedef uint32_t O;
    static __device__ __forceinline__ bool better(F v, F b)
    {
        return (MAX ? png_gt(v, b) : png_gt(b, v)) || (png_isnan(v) && !png_isnan(b));
    }
    static __device__ __forceinline__ A init()
    {
        A a;
        a.v = png_limits<F>::lo();
        a.i = UINT32_MAX;
        return a;
    }
    static __device__ __forceinline__ A load(const T *p, int64_t r)
    {
        A a;
        a.v = png_load(p);
        a.i = (uint32_t)r;
        return a;
    }
    static __device__ __forceinline__ A comb(A a, A b)
    {
        if (b.i == UINT32_MAX) return a;
        if (a.i == UINT32_MAX) return b;
        bool same = !better(a.v, b.v) && !better(b.v, a.v);
        return (better(b.v, a.v) || (same && b.i < a.i)) ? b : a;
    }
    static __device__ __forceinline__ void store(O *p, A a, double)
    {
        *p = a.i == UINT32_MAX ? 0 : a.i;
    }
};
template <typename T> struct rop<PNG_RED_ARGMAX, T> : arg_op<true, T> {};
template <typename T> struct rop<PNG_RED_ARGMIN, T> : arg_op<false, T> {};

/* The second pass over partial accumulators of Op. */
template <class Op> struct pass2 {
    typedef typename Op::A In;
    typedef typename Op::A A;
    typedef typename Op::O O;
    static __device__ __forceinline__ A init() { return Op::init(); }
    static __device__ __forceinline__ A comb(A a, A b) { return Op::comb(a, b); }
    static __device__ __forceinline__ A load(const In *p, int64_t) { return *p; }
    static __device__ __forceinline__ void store(O *p, A a, double s) { Op::store(p, a, s); }
};

/* acc combined with the element at p (reduced index r): load and comb, except logsumexp,
 * which folds an element in with one exponential. */
template <class Op> struct op_step {
    static __device__ __forceinline__ typename Op::A run(typename Op::A a,
                                                         const typename Op::In *p, int64_t r)
    {
        return Op::comb(a, Op::load(p, r));
    }
};
template <typename T> struct op_step<rop<PNG_RED_LSE, T> > {
    typedef rop<PNG_RED_LSE, T> Op;
    static __device__ __forceinline__ typename Op::A run(typename Op::A a, const T *p, int64_t)
    {
        return lse_step(a, (typename Op::F)png_load(p));
    }
};

/* 16 bytes of T, loaded at once. */
template <typename T> struct alignas(16) vec16 {
    T e[16 / sizeof(T)];
};

/* ───────────────────────────── reduction kernels ───────────────────────────── */

/* Launch parameters of a planned reduction. Work item w = s * outer + o covers output o's
 * reduced range [n s / splits, n (s+1) / splits); with splits > 1 it writes its partial to
 * part[w], else the output. */
struct red_args {
    pnG_dims kept, red;
    int64_t outer, n, splits;
    double scale;
    int group;   /* row kernel: threads per work item (32 or blockDim.x) */
    int rl;      /* column kernel: threads per output (reduced-range lanes) */
    bool contig; /* the reduced elements are one contiguous run */
};

/* Combines elements [r0, r1) of the row starting at p into acc, lanes `lane` of `group`. */
template <class Op>
__device__ __forceinline__ typename Op::A row_accumulate(typename Op::A acc,
                                                         const typename Op::In *p,
                                                         const red_args &P, int64_t r0,
                                                         int64_t r1, int lane, int group)
{
    typedef typename Op::In In;
    if (P.contig) {
        const int V = 16 / sizeof(In) > 0 && 16 % sizeof(In) == 0 ? 16 / sizeof(In) : 1;
        const In *q = p + r0;
        int64_t len = r1 - r0;
        int64_t head = V > 1 ? (int64_t)((16 - (uintptr_t)q % 16) % 16 / sizeof(In)) : 0;
        if (head > len) head = len;
        for (int64_t i = lane; i < head; i += group) acc = op_step<Op>::run(acc, q + i, r0 + i);
        int64_t nv = V > 1 ? (len - head) / V : 0;
        if (V > 1) {
            /* RED_ILP independent 16-byte loads in flight per thread, then combined in the
             * order of a plain strided loop (the same result as one load at a time) */
            const vec16<In> *vq = (const vec16<In> *)(q + head);
            int64_t j = lane;
            for (; j + (RED_ILP - 1) * group < nv; j += RED_ILP * group) {
                vec16<In> v[RED_ILP];
                PNG_UNROLL_ALL
                for (int u = 0; u < RED_ILP; u++) v[u] = vq[j + u * group];
                PNG_UNROLL_ALL
                for (int u = 0; u < RED_ILP; u++) {
                    int64_t r = r0 + head + (j + u * group) * V;
                    for (int k = 0; k < V; k++) acc = op_step<Op>::run(acc, &v[u].e[k], r + k);
                }
            }
            for (; j < nv; j += group) {
                vec16<In> v = vq[j];
                int64_t r = r0 + head + j * V;
                for (int k = 0; k < V; k++) acc = op_step<Op>::run(acc, &v.e[k], r + k);
            }
        }
        for (int64_t i = head + nv * V + lane; i < len; i += group)
            acc = op_step<Op>::run(acc, q + i, r0 + i);
        return acc;
    }
    for (int64_t r = r0 + lane; r < r1; r += group)
        acc = op_step<Op>::run(acc, p + png_dims_offset(P.red, 0, r), r);
    return acc;
}

/* The n partials of a full reduction at part combined by the whole block (every thread calls)
 * in the order of a one-block row pass over them, and stored to out (scaled by scale). Not
 * inlined: the kernel runs it once, and its registers would otherwise count in every pass. */
template <class Op>
__device__ __noinline__ void combine_partials(const typename Op::A *part, typename Op::O *out,
                                              int64_t n, double scale, typename Op::A *sh)
{
    typedef typename Op::A A;
    red_args Q = {}; /* the contiguous path reads nothing else of it */
    Q.contig = true;
    A acc = row_accumulate<pass2<Op> >(Op::init(), part, Q, 0, n, threadIdx.x, blockDim.x);
    acc = block_reduce<pass2<Op> >(acc, sh);
    if (threadIdx.x == 0) Op::store(out, acc, scale);
}

/* Row kernel: `group` threads (a warp, or the block) per work item. done (a full reduction
 * split over blocks, group = the block; NULL otherwise): a stream's counter
 * (pnG_stream_counter), which each work item bumps once its partial is out; the block whose
 * bump is the last combines the partials (no second launch) and sets the counter back to 0. */
template <class Op>
__global__ void reduce_rows(const typename Op::In *x, typename Op::O *out, typename Op::A *part,
                            red_args P, unsigned *done)
{
    typedef typename Op::A A;
    __shared__ A sh[33];
    __shared__ bool last;
    int group = P.group, per = blockDim.x / group, lane = threadIdx.x % group;
    int64_t items = P.outer * P.splits;
    for (int64_t b = (int64_t)blockIdx.x * per; b < items; b += (int64_t)gridDim.x * per) {
        int64_t w = b + threadIdx.x / group, o = 0;
        A acc = Op::init();
        if (w < items) {
            o = w % P.outer;
            int64_t s = w / P.outer;
            acc = row_accumulate<Op>(acc, x + png_dims_offset(P.kept, 0, o), P,
                                     P.n * s / P.splits, P.n * (s + 1) / P.splits, lane, group);
        }
        acc = group == 32 ? warp_reduce<Op>(acc) : block_reduce<Op>(acc, sh);
        if (lane == 0 && w < items) {
            if (P.splits > 1) part[w] = acc;
            else Op::store(out + o, acc, P.scale);
        }
        if (done) { /* per = 1: w = b < items */
            if (threadIdx.x == 0) {
                __threadfence(); /* the partial is visible before the count says so */
                last = atomicAdd(done, 1u) == (unsigned)(items - 1);
            }
            __syncthreads();
            if (last) {
                __threadfence(); /* the other blocks' partials, counted, are read after */
                combine_partials<Op>(part, out, P.splits, P.scale, sh);
                if (threadIdx.x == 0) *done = 0;
            }
        }
    }
}

/* Column kernel: blockDim.x / rl consecutive outputs per block, rl threads per output. */
template <class Op>
__global__ void reduce_cols(const typename Op::In *x, typename Op::O *out, typename Op::A *part,
                            red_args P)
{
    typedef typename Op::A A;
    PNG_DYNAMIC_SMEM(A, sh);
    int rl = P.rl, ot = blockDim.x / rl;
    int tx = threadIdx.x % ot, ty = threadIdx.x / ot;
    int64_t tiles = (P.outer + ot - 1) / ot, items = tiles * P.splits;
    for (int64_t w = blockIdx.x; w < items; w += gridDim.x) {
        int64_t tile = w % tiles, s = w / tiles, o = tile * ot + tx;
        A acc = Op::init();
        if (o < P.outer) {
            const typename Op::In *p = x + png_dims_offset(P.kept, 0, o);
            int64_t r1 = P.n * (s + 1) / P.splits;
            if (P.red.ndim <= 1) {
                int64_t st = P.red.ndim ? P.red.stride[0][0] : 0;
                for (int64_t r = P.n * s / P.splits + ty; r < r1; r += rl)
                    acc = op_step<Op>::run(acc, p + r * st, r);
            } else {
                for (int64_t r = P.n * s / P.splits + ty; r < r1; r += rl)
                    acc = op_step<Op>::run(acc, p + png_dims_offset(P.red, 0, r), r);
            }
        }
        if (rl > 1) {
            sh[threadIdx.x] = acc;
            __syncthreads();
            if (ty == 0)
                for (int k = 1; k < rl; k++) acc = Op::comb(acc, sh[k * ot + tx]);
            __syncthreads();
        }
        if (ty == 0 && o < P.outer) {
            if (P.splits > 1) part[s * P.outer + o] = acc;
            else Op::store(out + o, acc, P.scale);
        }
    }
}

/* ───────────────────────────── planning ───────────────────────────── */

#ifdef PONTE_GPU_SIM
#define RED_TARGET_THREADS 1024 /* small, so the tests take the split paths */
#define RED_MIN_PER_THREAD 2
#else
#define RED_TARGET_THREADS pnG_resident_threads()
#define RED_MIN_PER_THREAD 16
#endif

template <class Op>
static int launch_cols(const typename Op::In *x, typename Op::O *out, typename Op::A *part,
                       red_args P, cudaStream_t st)
{
    int64_t tiles = (P.outer + RED_THREADS / P.rl - 1) / (RED_THREADS / P.rl);
    auto k = reduce_cols<Op>;
    size_t smem = P.rl > 1 ? RED_THREADS * sizeof(typename Op::A) : 0;
    PNG_LAUNCH(k, png_blocks(tiles * P.splits), RED_THREADS, smem, st, x, out, part, P);
    return pnG_check_launch("reduce_cols");
}

template <class Op>
static int launch_reduce(const pnG_reduce_plan *Q, const void *xv, void *ov, int stream)
{
    typedef typename Op::In In;
    typedef typename Op::A A;
    typedef typename Op::O O;
    cudaStream_t st = png_stream(stream);
    if (!st) return -1;
    red_args P;
    P.kept = Q->kept;
    P.red = Q->red;
    P.outer = Q->outer;
    P.n = Q->n;
    P.scale = Q->scale;
    P.splits = 1;
    P.contig = Q->red.ndim == 0 || (Q->red.ndim == 1 && Q->red.stride[0][0] == 1);
    /* Rows when the reduced elements are the closest in memory, else columns. */
    int64_t rmin = INT64_MAX, kmin = INT64_MAX;
    for (int d = 0; d < Q->red.ndim; d++) {
        int64_t s = Q->red.stride[0][d] < 0 ? -Q->red.stride[0][d] : Q->red.stride[0][d];
        if (s < rmin) rmin = s;
    }
    for (int d = 0; d < Q->kept.ndim; d++) {
        int64_t s = Q->kept.stride[0][d] < 0 ? -Q->kept.stride[0][d] : Q->kept.stride[0][d];
        if (s < kmin) kmin = s;
    }
    bool rows = P.n > 16 && (rmin < kmin || P.outer == 1);
    const In *x = (const In *)xv;
    O *out = (O *)ov;
    A *part = NULL;
    size_t part_bytes = 0;
    int rc = 0;
    if (rows) {
        P.group = P.n <= 1024 ? 32 : RED_THREADS;
        P.rl = 1;
        int64_t threads = P.outer * P.group;
        if (threads < RED_TARGET_THREADS && P.n >= 2 * RED_MIN_PER_THREAD * RED_THREADS) {
            int64_t sp = RED_TARGET_THREADS / (P.outer * RED_THREADS);
            int64_t cap = P.n / (RED_MIN_PER_THREAD * RED_THREADS);
            sp = sp < cap ? sp : cap;
            if (sp > 1) {
                P.splits = sp;
                P.group = RED_THREADS;
            }
        }
    } else {
        P.rl = P.n >= 8 && P.outer * 8 < RED_TARGET_THREADS * 4 ? 8 : 1;
        int64_t tiles = (P.outer + RED_THREADS / P.rl - 1) / (RED_THREADS / P.rl);
        int64_t threads = tiles * RED_THREADS;
        if (threads < RED_TARGET_THREADS && P.n >= 2 * RED_MIN_PER_THREAD * P.rl) {
            int64_t sp = RED_TARGET_THREADS / threads, cap = P.n / (RED_MIN_PER_THREAD * P.rl);
            sp = sp < cap ? sp : cap;
            if (sp > 1) P.splits = sp;
        }
    }
    if (P.splits > 1) {
        part_bytes = (size_t)(P.outer * P.splits) * sizeof(A);
        part = (A *)pnG_malloc(part_bytes, stream);
        if (!part) return -1;
    }
    /* a full reduction over blocks: the last block to finish combines the partials */
    const bool last_combines = rows && P.splits > 1 && P.outer == 1;
    unsigned *done = last_combines ? pnG_stream_counter(stream) : NULL;
    if (last_combines && !done) rc = -1;
    if (rc == 0 && rows) {
        auto k = reduce_rows<Op>;
        int per = RED_THREADS / P.group;
        PNG_LAUNCH(k, png_blocks((P.outer * P.splits + per - 1) / per), RED_THREADS, 0, st, x,
                   out, part, P, done);
        rc = pnG_check_launch("reduce_rows");
    } else if (rc == 0) {
        rc = launch_cols<Op>(x, out, part, P, st);
    }
    if (rc == 0 && P.splits > 1 && !done) { /* combine the partials: columns of (splits, outer) */
        red_args Q2 = P;
        Q2.kept.ndim = 1;
        Q2.kept.shape[0] = P.outer;
        Q2.kept.stride[0][0] = 1;
        Q2.red.ndim = 1;
        Q2.red.shape[0] = P.splits;
        Q2.red.stride[0][0] = P.outer;
        Q2.n = P.splits;
        Q2.splits = 1;
        /* as many lanes per output as the block holds (a few outputs: a lane reads splits /
         * rl partials instead of splits / 8, which a single small block took 45 us over on
         * an H200) */
        int rl = 1;
        while (rl * 2 * P.outer <= RED_THREADS && rl < RED_THREADS) rl *= 2;
        Q2.rl = rl < 8 && P.outer < RED_THREADS ? 8 : rl;
        Q2.contig = false;
        rc = launch_cols<pass2<Op> >(part, out, NULL, Q2, st);
    }
    if (part) pnG_free(part, part_bytes, stream);
    return rc;
}

/* ───────────────────────────── dispatch ───────────────────────────── */

/* Instantiates f's kernel only where the op exists for the dtype (logsumexp: floats). */
template <int K, typename T, bool OK> struct run_kind {
    static int run(const pnG_reduce_plan *, const void *, void *, int) { return PNG_UNSUPPORTED; }
};
template <int K, typename T> struct run_kind<K, T, true> {
    static int run(const pnG_reduce_plan *P, const void *x, void *o, int s)
    {
        return launch_reduce<rop<K, T> >(P, x, o, s);
    }
};

template <typename T>
static int reduce_typed(const pnG_reduce_plan *P, const void *x, void *o, int s)
{
    switch (P->kind) {
    case PNG_RED_SUM: return run_kind<PNG_RED_SUM, T, true>::run(P, x, o, s);
    case PNG_RED_PROD: return run_kind<PNG_RED_PROD, T, true>::run(P, x, o, s);
    case PNG_RED_MAX: return run_kind<PNG_RED_MAX, T, true>::run(P, x, o, s);
    case PNG_RED_MIN: return run_kind<PNG_RED_MIN, T, true>::run(P, x, o, s);
    case PNG_RED_AND: return run_kind<PNG_RED_AND, T, true>::run(P, x, o, s);
    case PNG_RED_OR: return run_kind<PNG_RED_OR, T, true>::run(P, x, o, s);
    case PNG_RED_LSE: return run_kind<PNG_RED_LSE, T, png_is_float<T>::value>::run(P, x, o, s);
    case PNG_RED_ARGMAX: return run_kind<PNG_RED_ARGMAX, T, true>::run(P, x, o, s);
    case PNG_RED_ARGMIN: return run_kind<PNG_RED_ARGMIN, T, true>::run(P, x, o, s);
    default: return PNG_UNSUPPORTED;
    }
}

/* See reduce.h. */
extern "C" int pnG_reduce(const pnG_reduce_plan *P, const void *x, void *out, int stream)
{
    int rc = PNG_UNSUPPORTED;
    if (P->outer == 0) return 0;
    png_dispatch(P->dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        rc = reduce_typed<T>(P, x, out, stream);
    });
    return rc;
}

/* ───────────────────────────── softmax ───────────────────────────── */

/* One row per `group` threads (a warp, or the block): the running (max, sum) of the row, then
 * exp(x - max) / sum written densely. A non-finite max gives NaN everywhere, as the CPU.
 * Rows too long for softmax_cached's registers take this path. */
template <typename T>
__global__ void softmax_rows(const T *x, T *out, red_args P)
{
    typedef rop<PNG_RED_LSE, T> Op;
    typedef typename Op::A A;
    typedef typename Op::F F;
    __shared__ A sh[33];
    int group = P.group, per = blockDim.x / group, lane = threadIdx.x % group;
    for (int64_t b = (int64_t)blockIdx.x * per; b < P.outer; b += (int64_t)gridDim.x * per) {
        int64_t row = b + threadIdx.x / group;
        A acc = Op::init();
        const T *p = x;
        if (row < P.outer) {
            p = x + png_dims_offset(P.kept, 0, row);
            acc = row_accumulate<Op>(acc, p, P, 0, P.n, lane, group);
        }
        acc = group == 32 ? warp_reduce<Op>(acc) : block_reduce<Op>(acc, sh);
        if (row < P.outer) {
            T *q = out + row * P.n;
            bool finite = !(isinf(acc.m) || acc.m != acc.m);
            F m = acc.m, inv = (F)1 / acc.s;
            if (P.contig) {
                for (int64_t r = lane; r < P.n; r += group)
                    png_store(q + r, finite ? png_exp((F)png_load(p + r) - m) * inv : (F)NAN);
            } else {
                for (int64_t r = lane; r < P.n; r += group) {
                    F v = png_load(p + png_dims_offset(P.red, 0, r));
                    png_store(q + r, finite ? png_exp(v - m) * inv : (F)NAN);
                }
            }
        }
    }
}

/* Max and sum of float values, for the cached softmax's block reductions. */
template <typename F> struct fmax_op {
    typedef F A;
    static __device__ __forceinline__ A init() { return (F)-INFINITY; }
    static __device__ __forceinline__ A comb(A a, A b) { return png_max_nan(a, b); }
};
template <typename F> struct fsum_op {
    typedef F A;
    static __device__ __forceinline__ A init() { return (F)0; }
    static __device__ __forceinline__ A comb(A a, A b) { return a + b; }
};

/* Elements per thread of the cached softmax: 64 bytes of the compute type (16 floats, 8
 * doubles), so that the row's values fit beside the rest in the 64 registers of a 1024-thread
 * launch (16 doubles spilled there). */
template <typename T> struct sm_items {
    static const int value = 64 / (int)sizeof(typename png_compute<T>::type);
};

/* The cached softmax's elements of a thread: element k is row element sm_index<VEC>(k)
 * (dense rows with VEC: runs of 16 bytes, one load each; else one element per group-wide
 * stride). In 32 bits: rows have at most 1024 * sm_items elements (64-bit indices, two
 * registers each and kept from the loads to the stores, made the kernel spill). */
template <typename T, bool VEC> __device__ __forceinline__ int sm_index(int k, int lane, int group)
{
    const int V = VEC ? 16 / sizeof(T) : 1;
    return (lane + (k / V) * group) * V + k % V;
}

/* Softmax of rows of at most group * sm_items elements, held in registers: one read of the
 * input, the max, then the sum of exp(x - max) (the CPU's order of work). Launched with up to
 * 1024 threads, hence the launch bounds (registers capped at 64 so such a launch always fits).
 * VEC: rows are dense, 16-byte aligned and a whole number of 16-byte runs long. */
template <typename T, bool VEC>
__global__ void __launch_bounds__(1024) softmax_cached(const T *x, T *out, red_args P)
{
    typedef typename png_compute<T>::type F;
    const int V = VEC ? 16 / sizeof(T) : 1, ITEMS = sm_items<T>::value;
    __shared__ F sh[33];
    int group = P.group, per = blockDim.x / group, lane = threadIdx.x % group;
    const int n = (int)P.n; /* at most 1024 * ITEMS: the launcher's test */
    for (int64_t b = (int64_t)blockIdx.x * per; b < P.outer; b += (int64_t)gridDim.x * per) {
        int64_t row = b + threadIdx.x / group;
        bool live = row < P.outer;
        const T *p = x + (live ? png_dims_offset(P.kept, 0, row) : 0);
        F v[ITEMS], m = (F)-INFINITY;
        PNG_UNROLL_ALL
        for (int c = 0; c < ITEMS / V; c++) { /* 16-byte runs (VEC) or single elements */
            int r = sm_index<T, VEC>(c * V, lane, group);
            vec16<T> w;
            if (VEC && live && r < n) w = *(const vec16<T> *)(p + r);
            PNG_UNROLL_ALL
            for (int e = 0; e < V; e++) {
                F a = (F)-INFINITY;
                if (live && r + e < n)
                    a = png_load(VEC ? &w.e[e] : p + (P.contig ? r : png_dims_offset(P.red, 0, r)));
                v[c * V + e] = a;
                m = png_max_nan(m, a);
            }
        }
        m = group == 32 ? warp_reduce<fmax_op<F> >(m) : block_reduce<fmax_op<F> >(m, sh);
        F s = 0;
        PNG_UNROLL_ALL
        for (int k = 0; k < ITEMS; k++) {
            v[k] = png_exp(v[k] - m);
            s += v[k];
        }
        s = group == 32 ? warp_reduce<fsum_op<F> >(s) : block_reduce<fsum_op<F> >(s, sh);
        bool finite = !(isinf(m) || m != m);
        F inv = (F)1 / s;
        T *q = out + row * P.n;
        PNG_UNROLL_ALL
        for (int c = 0; c < ITEMS / V; c++) {
            int r = sm_index<T, VEC>(c * V, lane, group);
            if (!live || r >= n) continue;
            vec16<T> w;
            PNG_UNROLL_ALL
            for (int e = 0; e < V; e++)
                png_store(VEC ? &w.e[e] : q + r, finite ? v[c * V + e] * inv : (F)NAN);
            if (VEC) *(vec16<T> *)(q + r) = w;
        }
    }
}

template <typename T>
static int launch_softmax(const pnG_dims *kept, const pnG_dims *red, int64_t outer, int64_t n,
                          const void *x, void *out, int stream)
{
    cudaStream_t st = png_stream(stream);
    if (!st) return -1;
    red_args P;
    P.kept = *kept;
    P.red = *red;
    P.outer = outer;
    P.n = n;
    P.splits = 1;
    P.scale = 1;
    P.rl = 1;
    P.contig = red->ndim == 0 || (red->ndim == 1 && red->stride[0][0] == 1);
    const int items = sm_items<T>::value;
    if (n <= 1024 * items) { /* the row fits in registers */
        int threads = n <= RED_THREADS * items ? RED_THREADS : 1024;
        P.group = n <= 32 * items ? 32 : threads;
        int rows_per = threads / P.group;
        /* 16-byte runs when every row starts aligned and is a whole number of runs long */
        const int64_t V = 16 / sizeof(T);
        bool vec = P.contig && n % V == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)out % 16 == 0;
        for (int d = 0; d < P.kept.ndim && vec; d++) vec = P.kept.stride[0][d] % V == 0;
        auto k = vec ? softmax_cached<T, true> : softmax_cached<T, false>;
        PNG_LAUNCH(k, png_blocks((outer + rows_per - 1) / rows_per), threads, 0, st,
                   (const T *)x, (T *)out, P);
        return pnG_check_launch("softmax_cached");
    }
    P.group = RED_THREADS;
    int per = 1;
    auto k = softmax_rows<T>;
    PNG_LAUNCH(k, png_blocks((outer + per - 1) / per), RED_THREADS, 0, st, (const T *)x, (T *)out,
               P);
    return pnG_check_launch("softmax_rows");
}

/* Softmax exists for the float dtypes only. */
template <typename T, bool OK = png_is_float<T>::value> struct softmax_run {
    static int run(const pnG_dims *, const pnG_dims *, int64_t, int64_t, const void *, void *,
                   int)
    {
        return PNG_UNSUPPORTED;
    }
};
template <typename T> struct softmax_run<T, true> {
    static int run(const pnG_dims *kept, const pnG_dims *red, int64_t outer, int64_t n,
                   const void *x, void *out, int stream)
    {
        return launch_softmax<T>(kept, red, outer, n, x, out, stream);
    }
};

/* See reduce.h. */
extern "C" int pnG_softmax(pn_dtype dtype, const pnG_dims *kept, const pnG_dims *red,
                           int64_t outer, int64_t n, const void *x, void *out, int stream)
{
    int rc = PNG_UNSUPPORTED;
    if (outer == 0 || n == 0) return 0;
    png_dispatch(dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        rc = softmax_run<T>::run(kept, red, outer, n, x, out, stream);
    });
    return rc;
}

/* ───────────────────────────── ExtremeVjp ───────────────────────────── */

/* One thread per kept index: count the window's ties, then write its gradient. */
template <typename T>
__global__ void extreme_vjp_kernel(const T *x, const T *m, const T *c, T *g, pnG_layout K,
                                   pnG_dims R, int64_t n)
{
    typedef typename png_compute<T>::type A;
    T zero, tq, v;
    png_store(&zero, (A)0);
    for (int64_t o = png_thread_index(); o < K.size; o += png_grid_stride()) {
        const T *xo = x + png_offset(K, 0, o);
        T *go = g + png_offset(K, 1, o);
        A mv = png_load(m + png_offset(K, 2, o));
        int32_t ties = 0;
        for (int64_t r = 0; r < n; r++) ties += png_load(xo + png_dims_offset(R, 0, r)) == mv;
        png_store(&tq, (A)ties); /* the count as the dtype holds it, as the composite divides */
        png_store(&v, (A)png_load(c + png_offset(K, 3, o)) / png_load(&tq));
        for (int64_t r = 0; r < n; r++)
            go[png_dims_offset(R, 1, r)] = png_load(xo + png_dims_offset(R, 0, r)) == mv ? v : zero;
    }
}

/* See reduce.h. */
extern "C" int pnG_extreme_vjp(pn_dtype dtype, const pnG_layout *K, const pnG_dims *R, int64_t n,
                               const void *x, const void *m, const void *c, void *g, int stream)
{
    int rc = PNG_UNSUPPORTED;
    cudaStream_t st = png_stream(stream);
    png_dispatch(dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        if constexpr (png_is_float<T>::value) {
            auto k = extreme_vjp_kernel<T>;
            PNG_LAUNCH(k, png_blocks_for(K->size, 256), 256, 0, st, (const T *)x, (const T *)m,
                       (const T *)c, (T *)g, *K, *R, n);
            rc = pnG_check_launch("extreme_vjp");
        }
    });
    return rc;
}
