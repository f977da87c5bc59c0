/* copy.cu — kernels that move, convert and create elements: strided copies with dtype
 * conversion (exactly pnC_convert's semantics, one template for every dtype pair), a tiled
 * shared-memory transpose, a vectorized fill, and the creation kernels (arange/linspace
 * sequences, eye/tri and tril/triu bands). Launchers are declared in copy.h. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/copy.h"

/* ───────────────────────────── element conversion ───────────────────────────── */

/* What pnC_convert (src/core/dtype.c) does for a (source, destination) pair:
 *   - to complex64: real part = the value as float (through double), imaginary part 0;
 *   - complex64 to bool: either part nonzero;
 *   - bool/integer to integer: two's complement wrap through 64 bits;
 *   - everything else through double: to bool v != 0; to float32/float16/bfloat16 by (float)v
 *     then round to nearest even; to float64 v; to integers saturating (NaN gives 0, bounds
 *     as pnC_store_f64's SAT_CAST, including its float64 upper bounds of the 64-bit types).
 * Complex sources contribute their real part. */
enum { CV_BOOL, CV_UINT, CV_SINT, CV_FLOAT, CV_COMPLEX };

template <typename T> struct cv_kind {
    static const int value = CV_FLOAT; /* float, double, pn_float16, pn_bfloat16 */
};
#define CV_KIND(T, K)                                                                          \
    template <> struct cv_kind<T> {                                                            \
        static const int value = K;                                                            \
    };
CV_KIND(bool, CV_BOOL)
CV_KIND(uint8_t, CV_UINT)
CV_KIND(uint16_t, CV_UINT)
CV_KIND(uint32_t, CV_UINT)
CV_KIND(uint64_t, CV_UINT)
CV_KIND(int8_t, CV_SINT)
CV_KIND(int16_t, CV_SINT)
CV_KIND(int32_t, CV_SINT)
CV_KIND(int64_t, CV_SINT)
CV_KIND(png_c64, CV_COMPLEX)
#undef CV_KIND

template <typename A, typename B> struct cv_same {
    static const bool value = false;
};
template <typename A> struct cv_same<A, A> {
    static const bool value = true;
};

/* Saturation bounds of the integer types, as pnC_store_f64 writes them. */
template <typename T> struct cv_limits;
#define CV_LIMITS(T, LO, HI)                                                                   \
    template <> struct cv_limits<T> {                                                          \
        __device__ __forceinline__ static double lo() { return LO; }                           \
        __device__ __forceinline__ static double hi() { return HI; }                           \
    };
CV_LIMITS(uint8_t, 0.0, 255.0)
CV_LIMITS(uint16_t, 0.0, 65535.0)
CV_LIMITS(uint32_t, 0.0, 4294967295.0)
CV_LIMITS(uint64_t, 0.0, 18446744073709549568.0)
CV_LIMITS(int8_t, -128.0, 127.0)
CV_LIMITS(int16_t, -32768.0, 32767.0)
CV_LIMITS(int32_t, -2147483648.0, 2147483647.0)
CV_LIMITS(int64_t, -9223372036854775808.0, 9223372036854774784.0)
#undef CV_LIMITS

template <typename S> __device__ __forceinline__ double cv_to_double(S x) { return (double)x; }
__device__ __forceinline__ double cv_to_double(pn_float16 x) { return (double)png_f16_to_float(x); }
__device__ __forceinline__ double cv_to_double(pn_bfloat16 x) { return (double)png_bf16_to_float(x); }
__device__ __forceinline__ double cv_to_double(png_c64 x) { return (double)x.re; }

/* (float)(double)x: one rounding for every source except the 64-bit integers and float64,
 * which round twice exactly as the CPU's path through double does. */
template <typename S> __device__ __forceinline__ float cv_to_float(S x)
{
    return (float)cv_to_double(x);
}
__device__ __forceinline__ float cv_to_float(float x) { return x; }
__device__ __forceinline__ float cv_to_float(pn_float16 x) { return png_f16_to_float(x); }
__device__ __forceinline__ float cv_to_float(pn_bfloat16 x) { return png_bf16_to_float(x); }
__device__ __forceinline__ float cv_to_float(png_c64 x) { return x.re; }

template <typename D> __device__ __forceinline__ D cv_saturate(double v)
{
    if (v != v) return (D)0;
    if (v <= cv_limits<D>::lo()) return (D)cv_limits<D>::lo();
    if (v >= cv_limits<D>::hi()) return (D)cv_limits<D>::hi();
    return (D)v;
}

/* x converted from S to D as pnC_convert converts one element. */
template <typename S, typename D> __device__ __forceinline__ D png_convert(S x)
{
    constexpr int sk = cv_kind<S>::value, dk = cv_kind<D>::value;
    if constexpr (cv_same<S, D>::value) {
        return x;
    } else if constexpr (dk == CV_COMPLEX) {
        png_c64 r;
        r.re = cv_to_float(x);
        r.im = 0.0f;
        return r;
    } else if constexpr (sk == CV_COMPLEX && dk == CV_BOOL) {
        return x.re != 0.0f || x.im != 0.0f;
    } else if constexpr (sk != CV_FLOAT && sk != CV_COMPLEX && dk != CV_FLOAT && dk != CV_BOOL) {
        uint64_t u;
        if constexpr (sk == CV_SINT) u = (uint64_t)(int64_t)x;
        else u = (uint64_t)x;
        return (D)u; /* truncation to the low bits, as the CPU's little-endian copy */
    } else if constexpr (dk == CV_BOOL) {
        return cv_to_double(x) != 0.0;
    } else if constexpr (cv_same<D, double>::value) {
        return cv_to_double(x);
    } else if constexpr (dk == CV_FLOAT) { /* float, float16, bfloat16 */
        D r;
        png_store(&r, cv_to_float(x));
        return r;
    } else { /* integer from floating point or complex */
        return cv_saturate<D>(cv_to_double(x));
    }
}

/* ───────────────────────────── vector packs ───────────────────────────── */

/* The type of a B-byte load or store (aligned to B; uint2 and uint4 are CUDA's vector types,
 * which the simulator defines too). */
template <int B> struct png_raw;
template <> struct png_raw<1> { typedef uint8_t type; };
template <> struct png_raw<2> { typedef uint16_t type; };
template <> struct png_raw<4> { typedef uint32_t type; };
template <> struct png_raw<8> { typedef uint2 type; };
template <> struct png_raw<16> { typedef uint4 type; };

/* N elements of T loaded or stored as one access. */
template <typename T, int N> union png_pack {
    typename png_raw<sizeof(T) * N>::type raw;
    T v[N];
};

/* Elements per thread on the dense conversion path: the wider side moves 16 bytes. */
template <typename S, typename D> struct png_vec_width {
    static const int value = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
};

/* ───────────────────────────── copy kernels ───────────────────────────── */

/* Offsets of operands 0 and 1 of layout L at row-major linear index i, dividing in type I
 * (uint32_t when the index space fits: 32-bit divisions are several times cheaper). */
template <typename I>
__device__ __forceinline__ void png_offset2(const pnG_layout &L, int64_t i, int64_t &o0,
                                            int64_t &o1)
{
    int64_t a = 0, b = 0;
    I rem = (I)i;
    for (int d = L.ndim - 1; d >= 0; d--) {
        I ext = (I)L.shape[d], q = rem / ext, r = rem - q * ext;
        a += (int64_t)r * L.strides[0][d];
        b += (int64_t)r * L.strides[1][d];
        rem = q;
    }
    o0 = a;
    o1 = b;
}

static const int COPY_THREADS = 256, ROW_CHUNK = COPY_THREADS * 4;

/* Dense dst[i] = convert(src[i]) for i < n, V elements per access when vec (both pointers
 * aligned to V elements), one template instance per dtype pair. */
template <typename S, typename D>
__global__ void convert_dense_kernel(D *dst, const S *src, int64_t n, bool vec)
{
    const int V = png_vec_width<S, D>::value;
    typedef typename png_raw<sizeof(S) * V>::type SR;
    typedef typename png_raw<sizeof(D) * V>::type DR;
    int64_t nv = vec ? n / V : 0;
    for (int64_t i = png_thread_index(); i < nv; i += png_grid_stride()) {
        png_pack<S, V> a;
        png_pack<D, V> b;
        a.raw = ((const SR *)src)[i];
        for (int j = 0; j < V; j++) b.v[j] = png_convert<S, D>(a.v[j]);
        ((DR *)dst)[i] = b.raw;
    }
    for (int64_t i = nv * V + png_thread_index(); i < n; i += png_grid_stride())
        dst[i] = png_convert<S, D>(src[i]);
}

/* Stores x at element off of dst as dtype dt (SAME: dt is S itself, a bit copy). The switch
 * is uniform across the grid, so one strided kernel per source type serves every pair. */
template <typename S, bool SAME>
__device__ __forceinline__ void store_as(void *dst, int64_t off, pn_dtype dt, S x)
{
    if constexpr (SAME) {
        ((S *)dst)[off] = x;
    } else {
        switch (dt) {
#define PNG_STORE_CASE(E, T)                                                                   \
    case E: ((T *)dst)[off] = png_convert<S, T>(x); break;
            PNG_FOR_EACH_DTYPE(PNG_STORE_CASE)
#undef PNG_STORE_CASE
        default: break;
        }
    }
}

/* dst = convert(src) over layout L (0: dst, 1: src). rows_walk: blocks take ROW_CHUNK-element
 * pieces of the rows of the last merged dim (one offset computation per piece); else one
 * element per thread, offsets from the linear index. */
template <typename S, bool SAME>
__global__ void copy_strided_kernel(pnG_layout L, void *dst, pn_dtype dt, const S *src,
                                    bool rows_walk)
{
    if (rows_walk) {
        int last = L.ndim - 1;
        int64_t inner = L.shape[last], ds = L.strides[0][last], ss = L.strides[1][last];
        int64_t chunks = (inner + ROW_CHUNK - 1) / ROW_CHUNK, items = L.size / inner * chunks;
        for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
            int64_t row = item / chunks, j0 = (item - row * chunks) * ROW_CHUNK;
            int64_t j1 = j0 + ROW_CHUNK < inner ? j0 + ROW_CHUNK : inner, od, os;
            png_offset2<int64_t>(L, row * inner, od, os);
            for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
                store_as<S, SAME>(dst, od + j * ds, dt, src[os + j * ss]);
        }
    } else if (L.size <= (int64_t)UINT32_MAX) {
        for (int64_t i = png_thread_index(); i < L.size; i += png_grid_stride()) {
            int64_t od, os;
            png_offset2<uint32_t>(L, i, od, os);
            store_as<S, SAME>(dst, od, dt, src[os]);
        }
    } else {
        for (int64_t i = png_thread_index(); i < L.size; i += png_grid_stride()) {
            int64_t od, os;
            png_offset2<int64_t>(L, i, od, os);
            store_as<S, SAME>(dst, od, dt, src[os]);
        }
    }
}

/* A batch of transposes: dst[od + a * dk + b] = src[os + a + b * sl] for a < na, b < nb, with
 * (od, os) the offsets of each index of the batch layout B. 32 x 32 tiles through shared
 * memory so that both the reads (along a) and the writes (along b) are coalesced. */
enum { TILE = 32, TILE_ROWS = 8 };
template <typename T>
__global__ void transpose_kernel(pnG_layout B, T *dst, const T *src, int64_t na, int64_t nb,
                                 int64_t dk, int64_t sl)
{
    __shared__ T tile[TILE][TILE + 1];
    int64_t ta = (na + TILE - 1) / TILE, tb = (nb + TILE - 1) / TILE, per = ta * tb;
    int64_t tiles = B.size * per;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        int64_t o = t / per, r = t - o * per, ia = r / tb, ib = r - ia * tb, od, os;
        png_offset2<int64_t>(B, o, od, os);
        int64_t a0 = ia * TILE, b0 = ib * TILE;
        for (int y = threadIdx.y; y < TILE; y += blockDim.y) {
            int64_t a = a0 + threadIdx.x, b = b0 + y;
            if (a < na && b < nb) tile[y][threadIdx.x] = src[os + a + b * sl];
        }
        __syncthreads();
        for (int y = threadIdx.y; y < TILE; y += blockDim.y) {
            int64_t a = a0 + y, b = b0 + threadIdx.x;
            if (a < na && b < nb) dst[od + a * dk + b] = tile[threadIdx.x][y];
        }
        __syncthreads();
    }
}

/* The unsigned type of an element size (same-dtype copies move bits). */
template <typename F> static bool png_dispatch_bits(size_t es, F &&f)
{
    switch (es) {
    case 1: f(png_tag<uint8_t>()); return true;
    case 2: f(png_tag<uint16_t>()); return true;
    case 4: f(png_tag<uint32_t>()); return true;
    case 8: f(png_tag<uint64_t>()); return true;
    default: return false;
    }
}

static size_t png_dtype_bytes(pn_dtype t)
{
    size_t n = 0;
    png_dispatch(t, [&](auto tag) { n = sizeof(typename decltype(tag)::type); });
    return n;
}

static bool png_aligned(const void *p, size_t a) { return (uintptr_t)p % a == 0; }

/* The transpose case: same dtype, dst unit stride on the last dim, src unit stride on another
 * dim k, both extents at least 8. Launches and returns true; false when it does not apply. */
static bool try_transpose(const pnG_layout *L, void *dst, const void *src, size_t es,
                          cudaStream_t s, bool *launched)
{
    int last = L->ndim - 1, k = -1;
    *launched = false;
    if (last < 1 || L->strides[0][last] != 1 || L->strides[1][last] == 1) return false;
    for (int d = 0; d < last; d++)
        if (L->strides[1][d] == 1) k = d;
    if (k < 0 || L->shape[k] < 8 || L->shape[last] < 8) return false;
    pnG_layout B;
    B.ndim = 0;
    B.nop = 2;
    B.size = 1;
    for (int d = 0; d < last; d++) {
        if (d == k) continue;
        B.shape[B.ndim] = L->shape[d];
        B.strides[0][B.ndim] = L->strides[0][d];
        B.strides[1][B.ndim] = L->strides[1][d];
        B.size *= L->shape[d];
        B.ndim++;
    }
    int64_t na = L->shape[k], nb = L->shape[last], dk = L->strides[0][k], sl = L->strides[1][last];
    int64_t tiles = B.size * ((na + TILE - 1) / TILE) * ((nb + TILE - 1) / TILE);
    return png_dispatch_bits(es, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        auto kern = transpose_kernel<T>;
        PNG_LAUNCH(kern, png_blocks(tiles), dim3(TILE, TILE_ROWS), 0, s, B, (T *)dst,
                   (const T *)src, na, nb, dk, sl);
        *launched = true;
    });
}

extern "C" int pnG_launch_copy(const pnG_layout *L, void *dst, pn_dtype dt, const void *src,
                               pn_dtype st, int stream)
{
    if (L->size == 0) return 0;
    if (L->ndim == 0) { /* one element: as a 1-d walk of one */
        pnG_layout one = *L;
        one.ndim = 1;
        one.shape[0] = 1;
        one.strides[0][0] = one.strides[1][0] = 0;
        return pnG_launch_copy(&one, dst, dt, src, st, stream);
    }
    size_t ses = png_dtype_bytes(st), des = png_dtype_bytes(dt);
    if (!ses || !des)
        return pn_set_error(PN_ERR_BACKEND, "[gpu] copy: unsupported dtype %d -> %d.", (int)st,
                            (int)dt);
    bool dense = L->ndim == 1 && L->strides[0][0] == 1 && L->strides[1][0] == 1;
    if (dense && st == dt) return pnG_copy_device(dst, src, (size_t)L->size * ses, stream);
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    if (st == dt) {
        bool launched;
        try_transpose(L, dst, src, ses, s, &launched);
        if (launched) return pnG_check_launch("transpose");
    }
    if (dense) { /* a conversion (the same dtype went to memcpy) */
        png_dispatch(st, [&](auto stag) {
            png_dispatch(dt, [&](auto dtag) {
                typedef typename decltype(stag)::type S;
                typedef typename decltype(dtag)::type D;
                const int V = png_vec_width<S, D>::value;
                bool vec = png_aligned(src, sizeof(S) * V) && png_aligned(dst, sizeof(D) * V);
                auto kern = convert_dense_kernel<S, D>;
                PNG_LAUNCH(kern, png_blocks_for((L->size + V - 1) / V, COPY_THREADS),
                           COPY_THREADS, 0, s, (D *)dst, (const S *)src, L->size, vec);
            });
        });
        return pnG_check_launch("convert");
    }
    int64_t inner = L->shape[L->ndim - 1];
    bool rows_walk = inner >= ROW_CHUNK / 4;
    unsigned grid = rows_walk ? png_blocks(L->size / inner * ((inner + ROW_CHUNK - 1) / ROW_CHUNK))
                              : png_blocks_for(L->size, COPY_THREADS);
    if (st == dt) {
        png_dispatch_bits(ses, [&](auto tag) {
            typedef typename decltype(tag)::type U;
            auto kern = copy_strided_kernel<U, true>;
            PNG_LAUNCH(kern, grid, COPY_THREADS, 0, s, *L, dst, dt, (const U *)src, rows_walk);
        });
    } else {
        png_dispatch(st, [&](auto tag) {
            typedef typename decltype(tag)::type S;
            auto kern = copy_strided_kernel<S, false>;
            PNG_LAUNCH(kern, grid, COPY_THREADS, 0, s, *L, dst, dt, (const S *)src, rows_walk);
        });
    }
    return pnG_check_launch("copy");
}

/* ───────────────────────────── fill ───────────────────────────── */

/* dst[0..n) = *value: `head` single elements up to 16-byte alignment, nvec 16-byte stores,
 * then the tail. */
template <typename U>
__global__ void fill_kernel(U *dst, const U *value, int64_t n, int64_t head, int64_t nvec)
{
    const int V = 16 / sizeof(U);
    U v = *value;
    png_pack<U, V> p;
    for (int j = 0; j < V; j++) p.v[j] = v;
    for (int64_t i = png_thread_index(); i < head; i += png_grid_stride()) dst[i] = v;
    uint4 *body = (uint4 *)(dst + head);
    for (int64_t i = png_thread_index(); i < nvec; i += png_grid_stride()) body[i] = p.raw;
    for (int64_t i = head + nvec * V + png_thread_index(); i < n; i += png_grid_stride())
        dst[i] = v;
}

extern "C" int pnG_launch_fill(void *dst, const void *value, size_t elem_size, int64_t n,
                               int stream)
{
    if (n <= 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    bool known = png_dispatch_bits(elem_size, [&](auto tag) {
        typedef typename decltype(tag)::type U;
        const int64_t V = 16 / sizeof(U);
        int64_t head = n, nvec = 0;
        if (png_aligned(dst, sizeof(U))) {
            uintptr_t mis = (uintptr_t)dst % 16;
            head = mis ? (int64_t)((16 - mis) / sizeof(U)) : 0;
            if (head > n) head = n;
            nvec = (n - head) / V;
        }
        auto kern = fill_kernel<U>;
        PNG_LAUNCH(kern, png_blocks_for(nvec + V, COPY_THREADS), COPY_THREADS, 0, s, (U *)dst,
                   (const U *)value, n, head, nvec);
    });
    return known ? pnG_check_launch("fill") : 0;
}

/* ───────────────────────────── creation ───────────────────────────── */

/* See pnG_launch_sequence (copy.h): the CPU's sequence_eval element by element. */
template <typename D>
__global__ void sequence_kernel(D *dst, int64_t n, bool int_mode, uint64_t base, uint64_t istep,
                                double start, double step, double stop, bool linspace)
{
    constexpr int dk = cv_kind<D>::value;
    for (int64_t i = png_thread_index(); i < n; i += png_grid_stride()) {
        if constexpr (dk == CV_UINT || dk == CV_SINT) {
            if (int_mode) {
                dst[i] = (D)(base + (uint64_t)i * istep);
                continue;
            }
        }
        double v = start + (double)i * step;
        if (linspace && n > 1 && i == n - 1) v = stop;
        dst[i] = png_convert<double, D>(v);
    }
}

extern "C" int pnG_launch_sequence(void *dst, pn_dtype dt, int64_t n, bool int_mode,
                                   uint64_t base, uint64_t istep, double start, double step,
                                   double stop, bool linspace, int stream)
{
    if (n <= 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    bool known = png_dispatch(dt, [&](auto tag) {
        typedef typename decltype(tag)::type D;
        auto kern = sequence_kernel<D>;
        PNG_LAUNCH(kern, png_blocks_for(n, COPY_THREADS), COPY_THREADS, 0, s, (D *)dst, n,
                   int_mode, base, istep, start, step, stop, linspace);
    });
    if (!known) return pn_set_error(PN_ERR_BACKEND, "[gpu] sequence: unsupported dtype %d.", (int)dt);
    return pnG_check_launch("sequence");
}

/* One element (r, j) of a band (pnG_band_mode): row r is row i = r % n of its matrix. */
template <typename T>
__device__ __forceinline__ void band_element(T *row, int64_t j, int64_t e, int mode, T one,
                                             T zero)
{
    switch (mode) {
    case PNG_BAND_EYE: row[j] = j == e ? one : zero; break;
    case PNG_BAND_TRI: row[j] = j <= e ? one : zero; break;
    case PNG_BAND_TRIL:
        if (j > e) row[j] = zero;
        break;
    default:
        if (j < e) row[j] = zero;
        break;
    }
}

/* rows x m dense elements. Wide rows (rows_walk): blocks take ROW_CHUNK pieces of rows, one
 * division per piece; narrow rows: one element per thread. */
template <typename T>
__global__ void band_kernel(T *d, int64_t rows, int64_t n, int64_t m, int64_t k, int mode,
                            bool rows_walk)
{
    T one = png_convert<double, T>(1.0), zero = png_convert<double, T>(0.0);
    if (rows_walk) {
        int64_t chunks = (m + ROW_CHUNK - 1) / ROW_CHUNK, items = rows * chunks;
        for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
            int64_t r = item / chunks, j0 = (item - r * chunks) * ROW_CHUNK;
            int64_t j1 = j0 + ROW_CHUNK < m ? j0 + ROW_CHUNK : m, e = r % n + k;
            for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
                band_element(d + r * m, j, e, mode, one, zero);
        }
    } else {
        for (int64_t idx = png_thread_index(); idx < rows * m; idx += png_grid_stride()) {
            int64_t r = idx / m, j = idx - r * m;
            band_element(d + r * m, j, r % n + k, mode, one, zero);
        }
    }
}

extern "C" int pnG_launch_band(void *dst, pn_dtype dt, int64_t rows, int64_t n, int64_t m,
                               int64_t k, pnG_band_mode mode, int stream)
{
    if (rows <= 0 || n <= 0 || m <= 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    bool rows_walk = m >= ROW_CHUNK / 4;
    unsigned grid = rows_walk ? png_blocks(rows * ((m + ROW_CHUNK - 1) / ROW_CHUNK))
                              : png_blocks_for(rows * m, COPY_THREADS);
    bool known = png_dispatch(dt, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        auto kern = band_kernel<T>;
        PNG_LAUNCH(kern, grid, COPY_THREADS, 0, s, (T *)dst, rows, n, m, k, (int)mode, rows_walk);
    });
    if (!known) return pn_set_error(PN_ERR_BACKEND, "[gpu] band: unsupported dtype %d.", (int)dt);
    return pnG_check_launch("band");
}
