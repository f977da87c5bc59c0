/* norm.cu — LayerNorm / RMSNorm on the GPU and their backward: one warp per row for rows of
 * up to 1024 elements (eight rows per block), else one block per row; the row's sums by warp
 * shuffles (block_reduce across warps), in float32 for the halves. Rows are read and written
 * in 16-byte runs (V elements per access) when every row is a whole number of runs and every
 * pointer 16-byte aligned, else element by element (V = 1). With 16-byte runs, a lane holds
 * its runs of the row in registers (up to 8 in the forward: a row of 16384 bf16 / 8192 f32 in
 * a block; 4 in the backward, which holds x and g) and reads x (and g) from memory once; every pass (mean, variance, output) reads the registers.
 * Longer rows are read again in each pass. The backward's weight and bias
 * gradients: each row group adds into its own partial row, then norm_colsum adds the partial
 * rows in a fixed order (deterministic, no atomics). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/norm.h"
#include "backend/cuda/reduce.h"

#include <math.h>

#define NORM_THREADS 256
static const int NORM_MAX_BLOCKS_BACK = 256; /* bounds the backward's partial rows */

/* Blocks of NORM_THREADS an SM should hold at once with R runs of NR rows (x, or x and g) in
 * registers: caps the registers (65536 / (blocks * 256) a thread: 48, 80 or 128, which
 * ptxas meets without spilling) so that holding a row costs few blocks in flight. R = 0: no
 * cap, as the element path. */
#define NORM_MIN_BLOCKS(R, NR) ((R) == 0 ? 1 : (R) * (NR) <= 2 ? 5 : (R) * (NR) <= 4 ? 3 : 2)

/* Two sums at once, for warp_reduce / block_reduce. */
template <typename F> struct norm_pair {
    F a, b;
};
template <typename F> struct pair_sum {
    typedef norm_pair<F> A;
    static __device__ __forceinline__ A init() { return A{(F)0, (F)0}; }
    static __device__ __forceinline__ A comb(A x, A y) { return A{x.a + y.a, x.b + y.b}; }
};

/* The pair summed over the row's group (a warp, or the whole block: every thread calls). */
template <typename F>
__device__ __forceinline__ norm_pair<F> group_sum(norm_pair<F> v, norm_pair<F> *sh, int group)
{
    return group == 32 ? warp_reduce<pair_sum<F> >(v) : block_reduce<pair_sum<F> >(v, sh);
}

/* The V elements of T at p (aligned to V elements). */
template <int V, typename T> __device__ __forceinline__ png_vec<T, V> norm_ld(const T *p)
{
    return *(const png_vec<T, V> *)p;
}

/* Calls f(j, i) for each run of V elements of a row of n that `lane` of `group` covers: run j
 * starts at element i = (lane + j group) V. R > 0: at most R runs, unrolled (so that a row
 * held in registers, norm_row, is indexed by constants); R = 0: as many as the row has. */
template <int R, int V, typename Fn>
__device__ __forceinline__ void norm_runs(int64_t n, int lane, int group, bool live, Fn f)
{
    if constexpr (R > 0) {
        PNG_UNROLL_ALL
        for (int j = 0; j < R; j++) { /* 32-bit: such rows are at most 1024 * R * V long */
            int i = (lane + j * group) * V;
            if (live && i < n) f(j, (int64_t)i);
        }
    } else {
        for (int64_t i = (int64_t)lane * V; live && i < n; i += (int64_t)group * V) f(0, i);
    }
}

/* A lane's runs of one row: with R > 0 read once into registers (norm_load), then every pass
 * over the row reads them there; with R = 0 (rows longer than the registers hold) each pass
 * reads the row from memory again. */
template <typename T, int V, int R> struct norm_row {
    const T *p;
    png_vec<T, V> run[R > 0 ? R : 1];
    __device__ __forceinline__ png_vec<T, V> at(int j, int64_t i) const
    {
        if constexpr (R > 0) return run[j];
        else return norm_ld<V>(p + i);
    }
};

template <typename T, int V, int R>
__device__ __forceinline__ norm_row<T, V, R> norm_load(const T *p, int64_t n, int lane, int group,
                                                       bool live)
{
    norm_row<T, V, R> r;
    r.p = p;
    if constexpr (R > 0)
        norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) { r.run[j] = norm_ld<V>(p + i); });
    return r;
}

/* Mean (0 unless center) and 1 / sqrt(var + eps) of row x (n elements; lane of group; a dead
 * row contributes nothing but still joins the group's reductions). Two passes over the row
 * (the mean, then the squared deviations from it), as the CPU; rstd computed in F
 * (the CPU rounds a double's: they may differ in the last bit). */
template <int V, int R, typename T, typename F>
__device__ __forceinline__ void row_stats(const norm_row<T, V, R> &x, int64_t n, int lane,
                                          int group, bool live, int center, double eps,
                                          norm_pair<F> *sh, F *mean, F *rstd)
{
    F m = 0;
    if (center) {
        norm_pair<F> s = {(F)0, (F)0};
        norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) {
            png_vec<T, V> xv = x.at(j, i);
            for (int k = 0; k < V; k++) s.a += (F)png_load(&xv.v[k]);
        });
        m = group_sum<F>(s, sh, group).a / (F)n;
    }
    norm_pair<F> q = {(F)0, (F)0};
    norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) {
        png_vec<T, V> xv = x.at(j, i);
        for (int k = 0; k < V; k++) {
            F d = (F)png_load(&xv.v[k]) - m;
            q.a += d * d;
        }
    });
    F var = group_sum<F>(q, sh, group).a / (F)n;
    *mean = m;
    *rstd = (F)1 / sqrt(var + (F)eps); /* in F: double math here costs norm_fwd<bf16, 8, 2> a
                                         * spill under its 48-register cap */
}

/* y (rows, n) = (x - mean) * rstd * w + b, rows in a grid stride of row groups; x read from
 * memory once when R > 0. */
template <typename T, int V, int R>
__global__ void __launch_bounds__(NORM_THREADS, NORM_MIN_BLOCKS(R, 1)) norm_fwd(const T *x, const T *w, const T *b, T *y, int64_t rows, int64_t n,
                         int center, double eps, int group)
{
    typedef typename png_compute<T>::type F;
    __shared__ norm_pair<F> sh[33];
    int per = blockDim.x / group, lane = threadIdx.x % group;
    for (int64_t b0 = (int64_t)blockIdx.x * per; b0 < rows; b0 += (int64_t)gridDim.x * per) {
        int64_t row = b0 + threadIdx.x / group;
        bool live = row < rows;
        norm_row<T, V, R> xr = norm_load<T, V, R>(x + (live ? row : 0) * n, n, lane, group, live);
        F m, s;
        row_stats<V, R, T, F>(xr, n, lane, group, live, center, eps, sh, &m, &s);
        norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) {
            png_vec<T, V> xv = xr.at(j, i), wv, bv, yv;
            if (w) wv = norm_ld<V>(w + i);
            if (b) bv = norm_ld<V>(b + i);
            for (int k = 0; k < V; k++) {
                F v = ((F)png_load(&xv.v[k]) - m) * s;
                if (w) v *= (F)png_load(&wv.v[k]);
                if (b) v += (F)png_load(&bv.v[k]);
                png_store(&yv.v[k], v);
            }
            *(png_vec<T, V> *)(y + row * n + i) = yv;
        });
    }
}

/* dx = rstd (g w - mean(g w) - xhat mean(g w xhat)) (no mean(g w) unless center); row group k
 * (of gridDim.x * per) also adds g xhat and g into its partial rows pw[k], pb[k] (NULL: not
 * wanted), which it zeroes first. x and g read from memory once when R > 0. */
template <typename T, int V, int R>
__global__ void __launch_bounds__(NORM_THREADS, NORM_MIN_BLOCKS(R, 2)) norm_bwd(const T *x, const T *w, const T *g, T *dx,
                         typename png_compute<T>::type *pw, typename png_compute<T>::type *pb,
                         int64_t rows, int64_t n, int center, double eps, int group)
{
    typedef typename png_compute<T>::type F;
    __shared__ norm_pair<F> sh[33];
    int per = blockDim.x / group, lane = threadIdx.x % group;
    int64_t k = (int64_t)blockIdx.x * per + threadIdx.x / group;
    F *mw = pw ? pw + k * n : NULL, *mb = pb ? pb + k * n : NULL;
    for (int64_t i = lane; i < n; i += group) {
        if (mw) mw[i] = 0;
        if (mb) mb[i] = 0;
    }
    for (int64_t b0 = (int64_t)blockIdx.x * per; b0 < rows; b0 += (int64_t)gridDim.x * per) {
        int64_t row = b0 + threadIdx.x / group;
        bool live = row < rows;
        int64_t at = (live ? row : 0) * n;
        norm_row<T, V, R> xr = norm_load<T, V, R>(x + at, n, lane, group, live);
        norm_row<T, V, R> gr = norm_load<T, V, R>(g + at, n, lane, group, live);
        F m, s;
        row_stats<V, R, T, F>(xr, n, lane, group, live, center, eps, sh, &m, &s);
        norm_pair<F> c = {(F)0, (F)0}; /* sums of g w and g w xhat */
        norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) {
            png_vec<T, V> xv = xr.at(j, i), gv = gr.at(j, i), wv;
            if (w) wv = norm_ld<V>(w + i);
            for (int k = 0; k < V; k++) {
                F gw = (F)png_load(&gv.v[k]) * (w ? (F)png_load(&wv.v[k]) : (F)1);
                c.a += gw;
                c.b += gw * (((F)png_load(&xv.v[k]) - m) * s);
            }
        });
        c = group_sum<F>(c, sh, group);
        F c1 = center ? c.a / (F)n : (F)0, c2 = c.b / (F)n;
        norm_runs<R, V>(n, lane, group, live, [&](int j, int64_t i) {
            png_vec<T, V> xv = xr.at(j, i), gv = gr.at(j, i), wv, dv;
            png_vec<F, V> sw, sb; /* the partial rows' runs */
            if (w) wv = norm_ld<V>(w + i);
            if (mw) sw = norm_ld<V>(mw + i);
            if (mb) sb = norm_ld<V>(mb + i);
            for (int k = 0; k < V; k++) {
                F g1 = (F)png_load(&gv.v[k]), xh = ((F)png_load(&xv.v[k]) - m) * s;
                F gw = g1 * (w ? (F)png_load(&wv.v[k]) : (F)1);
                png_store(&dv.v[k], s * (gw - c1 - xh * c2));
                if (mw) sw.v[k] += g1 * xh;
                if (mb) sb.v[k] += g1;
            }
            *(png_vec<T, V> *)(dx + row * n + i) = dv;
            if (mw) *(png_vec<F, V> *)(mw + i) = sw;
            if (mb) *(png_vec<F, V> *)(mb + i) = sb;
        });
    }
}

/* out[c] = sum over k < G of part[k][c], in order of k: 32 columns per block, eight slices
 * of k per column added in slice order. */
template <typename T>
__global__ void norm_colsum(const typename png_compute<T>::type *part, T *out, int64_t G,
                            int64_t n)
{
    typedef typename png_compute<T>::type F;
    __shared__ F sh[8][32];
    int cx = threadIdx.x % 32, cy = threadIdx.x / 32;
    for (int64_t c0 = (int64_t)blockIdx.x * 32; c0 < n; c0 += (int64_t)gridDim.x * 32) {
        int64_t c = c0 + cx;
        F s = 0;
        for (int64_t k = cy; c < n && k < G; k += 8) s += part[k * n + c];
        sh[cy][cx] = s;
        __syncthreads();
        if (cy == 0 && c < n) {
            F t = 0;
            for (int j = 0; j < 8; j++) t += sh[j][cx];
            png_store(out + c, t);
        }
        __syncthreads();
    }
}

/* Rows per block and threads per row: a warp per row up to 1024 elements, else the block. */
static int norm_group(int64_t n) { return n <= 1024 ? 32 : NORM_THREADS; }

/* Whether rows of n elements of T at these pointers (NULL: absent) move in 16-byte runs. */
template <typename T> static bool norm_vec_ok(int64_t n, const void *const *ptrs, int count)
{
    if (n % (16 / (int64_t)sizeof(T)) != 0) return false;
    for (int j = 0; j < count; j++)
        if ((uintptr_t)ptrs[j] % 16 != 0) return false;
    return true;
}

/* Runs of 16 bytes a lane holds of a row in registers: the fewest of 2, 4, ..., most that
 * hold the row, or 0 (longer rows: every pass reads the row from memory). */
template <typename T> static int norm_cached_runs(int64_t n, int group, int most)
{
    int64_t per_run = (int64_t)group * (int64_t)(16 / sizeof(T));
    int64_t runs = (n + per_run - 1) / per_run;
    int r = 2;
    while (r < runs && r < most) r *= 2;
    return runs <= r ? r : 0;
}

/* The instance of kernel template K (norm_fwd, norm_bwd) for `runs` (norm_cached_runs with at
 * most MOST, 4 or 8; -1: rows not in 16-byte runs, element by element). */
#define NORM_KERNEL(K, T, MOST, runs)                                                          \
    ((runs) < 0         ? K<T, 1, 0>                                                           \
     : (runs) == 2      ? K<T, 16 / sizeof(T), 2>                                              \
     : (runs) == 4      ? K<T, 16 / sizeof(T), 4>                                              \
     : (runs) == (MOST) ? K<T, 16 / sizeof(T), MOST>                                           \
                        : K<T, 16 / sizeof(T), 0>)

template <typename T>
static int launch_fwd(int center, double eps, int64_t rows, int64_t n, const void *x,
                      const void *w, const void *b, void *y, int stream)
{
    cudaStream_t st = png_stream(stream);
    if (!st) return -1;
    int group = norm_group(n), per = NORM_THREADS / group;
    const void *ptrs[4] = {x, w, b, y};
    int runs = norm_vec_ok<T>(n, ptrs, 4) ? norm_cached_runs<T>(n, group, 8) : -1;
    auto k = NORM_KERNEL(norm_fwd, T, 8, runs);
    PNG_LAUNCH(k, png_blocks((rows + per - 1) / per), NORM_THREADS, 0, st, (const T *)x,
               (const T *)w, (const T *)b, (T *)y, rows, n, center, eps, group);
    return pnG_check_launch("norm_fwd");
}

template <typename T>
static int launch_bwd(int center, double eps, int64_t rows, int64_t n, const void *x,
                      const void *w, const void *g, void *dx, void *dw, void *db, int stream)
{
    typedef typename png_compute<T>::type F;
    cudaStream_t st = png_stream(stream);
    if (!st) return -1;
    int group = norm_group(n), per = NORM_THREADS / group;
    unsigned blocks = png_blocks((rows + per - 1) / per);
    if (blocks > (unsigned)NORM_MAX_BLOCKS_BACK) blocks = NORM_MAX_BLOCKS_BACK;
    int64_t G = rows ? (int64_t)blocks * per : 0; /* row groups, each with its partial rows */
    size_t bytes = (size_t)G * (size_t)n * sizeof(F);
    F *part = NULL;
    if ((dw || db) && bytes) {
        part = (F *)pnG_malloc(bytes * 2, stream);
        if (!part) return -1;
    }
    F *pw = dw ? part : NULL, *pb = db ? part + G * n : NULL;
    int rc = 0;
    if (rows) {
        const void *ptrs[4] = {x, w, g, dx};
        int runs = norm_vec_ok<T>(n, ptrs, 4) ? norm_cached_runs<T>(n, group, 4) : -1;
        auto k = NORM_KERNEL(norm_bwd, T, 4, runs);
        PNG_LAUNCH(k, blocks, NORM_THREADS, 0, st, (const T *)x, (const T *)w, (const T *)g,
                   (T *)dx, pw, pb, rows, n, center, eps, group);
        rc = pnG_check_launch("norm_bwd");
    }
    void *outs[2] = {dw, db};
    F *parts[2] = {pw, pb};
    for (int j = 0; j < 2 && rc == 0; j++) {
        if (!outs[j]) continue;
        auto k2 = norm_colsum<T>;
        PNG_LAUNCH(k2, png_blocks((n + 31) / 32), 256, 0, st, (const F *)parts[j], (T *)outs[j],
                   G, n);
        rc = pnG_check_launch("norm_colsum");
    }
    if (part) pnG_free(part, bytes * 2, stream);
    return rc;
}

/* See norm.h. */
extern "C" int pnG_norm(pn_dtype t, int center, double eps, int64_t rows, int64_t n,
                        const void *x, const void *w, const void *b, void *y, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        if constexpr (png_is_float<T>::value)
            rc = rows && n ? launch_fwd<T>(center, eps, rows, n, x, w, b, y, stream) : 0;
    });
    return rc;
}

/* See norm.h. */
extern "C" int pnG_norm_vjp(pn_dtype t, int center, double eps, int64_t rows, int64_t n,
                            const void *x, const void *w, const void *g, void *dx, void *dw,
                            void *db, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        if constexpr (png_is_float<T>::value)
            rc = n ? launch_bwd<T>(center, eps, rows, n, x, w, g, dx, dw, db, stream) : 0;
    });
    return rc;
}
