/* sort.cu — the GPU sort family: every element becomes an order-preserving unsigned key (the
 * CPU radix keys of src/backend/cpu/sort.c; complex: real and imaginary keys side by side)
 * paired with its source index, and the pairs sort in the total order (key, index), which is
 * a stable sort. Rows up to SORT_TILE elements sort in shared memory (bitonic, a block per
 * row); longer rows sort SORT_TILE-element tiles the same way, then merge runs pairwise in
 * global memory (each element finds its place by a binary search in the other run). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/sort.h"

/* Elements of one shared-memory sort: keys (at most 8 bytes) and uint32 indices in 48 KiB. */
static const int SORT_TILE = 4096;
static const int SORT_MAX_THREADS = 512;
static const int MERGE_THREADS = 256;

/* ───────────────────────────── keys ───────────────────────────── */

enum { SK_UINT, SK_SINT, SK_FLOAT, SK_CPX };

/* X(storage type, key type, key kind, bits of +infinity) for every dtype. */
#define SORT_KEY_TYPES(X)                                                                      \
    X(bool, uint8_t, SK_UINT, 0)                                                               \
    X(uint8_t, uint8_t, SK_UINT, 0)                                                            \
    X(uint16_t, uint16_t, SK_UINT, 0)                                                          \
    X(uint32_t, uint32_t, SK_UINT, 0)                                                          \
    X(uint64_t, uint64_t, SK_UINT, 0)                                                          \
    X(int8_t, uint8_t, SK_SINT, 0)                                                             \
    X(int16_t, uint16_t, SK_SINT, 0)                                                           \
    X(int32_t, uint32_t, SK_SINT, 0)                                                           \
    X(int64_t, uint64_t, SK_SINT, 0)                                                           \
    X(pn_float16, uint16_t, SK_FLOAT, 0x7c00u)                                                 \
    X(float, uint32_t, SK_FLOAT, 0x7f800000u)                                                  \
    X(double, uint64_t, SK_FLOAT, 0x7ff0000000000000ull)                                       \
    X(pn_bfloat16, uint16_t, SK_FLOAT, 0x7f80u)                                                \
    X(png_c64, uint64_t, SK_CPX, 0)

template <typename T> struct sort_key_of;
#define SORT_KEY_DEF(T, K, KIND, INF)                                                          \
    template <> struct sort_key_of<T> {                                                        \
        typedef K type;                                                                        \
        static const int kind = KIND;                                                          \
        static constexpr unsigned long long inf = INF;                                         \
    };
SORT_KEY_TYPES(SORT_KEY_DEF)
#undef SORT_KEY_DEF

template <typename T, typename K> union sort_bits {
    T v;
    K u;
};

/* The key of a float's bits u: negatives flip every bit, the rest the sign bit, every NaN is
 * the largest key; canon gives -0 the key of +0. */
template <typename K>
__device__ __forceinline__ K sort_float_key(K u, unsigned long long inf, bool canon)
{
    const K sign = (K)((K)1 << (8 * sizeof(K) - 1));
    if ((K)(u & (K)~sign) > (K)inf) return (K)~(K)0;
    if (canon && u == sign) u = 0;
    return (u & sign) ? (K)~u : (K)(u | sign);
}

/* The sort key of v. */
template <typename T>
__device__ __forceinline__ typename sort_key_of<T>::type sort_key(T v, bool canon)
{
    typedef typename sort_key_of<T>::type K;
    const int kind = sort_key_of<T>::kind;
    if constexpr (kind == SK_CPX) {
        if (v.re != v.re || v.im != v.im) return ~0ull;
        uint64_t kr = sort_float_key<uint32_t>(__float_as_uint(v.re), 0x7f800000u, true);
        uint64_t ki = sort_float_key<uint32_t>(__float_as_uint(v.im), 0x7f800000u, true);
        return (kr << 32) | ki;
    } else {
        sort_bits<T, K> b;
        b.v = v;
        if constexpr (kind == SK_UINT) return b.u;
        else if constexpr (kind == SK_SINT) return (K)(b.u ^ (K)((K)1 << (8 * sizeof(K) - 1)));
        else return sort_float_key<K>(b.u, sort_key_of<T>::inf, canon);
    }
}

/* The value of a non-canonical key (a NaN comes back with every mantissa bit set). */
template <typename T> __device__ __forceinline__ T sort_unkey(typename sort_key_of<T>::type k)
{
    typedef typename sort_key_of<T>::type K;
    const int kind = sort_key_of<T>::kind;
    const K sign = (K)((K)1 << (8 * sizeof(K) - 1));
    sort_bits<T, K> b;
    if constexpr (kind == SK_CPX) {
        b.u = 0; /* never used: complex sorts are canonical */
    } else if constexpr (kind == SK_UINT) {
        b.u = k;
    } else if constexpr (kind == SK_SINT) {
        b.u = (K)(k ^ sign);
    } else {
        b.u = (k & sign) ? (K)(k ^ sign) : (K)~k;
    }
    return b.v;
}

/* (ka, ia) before (kb, ib) in the total order. */
template <typename K>
__device__ __forceinline__ bool sort_less(K ka, uint32_t ia, K kb, uint32_t ib)
{
    return ka < kb || (ka == kb && ia < ib);
}

/* Element offsets of row r in the input and the output. */
__device__ __forceinline__ void sort_row_offsets(const pnG_sort_desc &d, int64_t r, int64_t &ao,
                                                 int64_t &oo)
{
    int64_t a = 0, o = 0;
    for (int k = d.nd - 1; k >= 0; k--) {
        int64_t ext = d.shape[k], q = r / ext, c = r - q * ext;
        r = q;
        a += c * d.astr[k];
        o += c * d.ostr[k];
    }
    ao = a;
    oo = o;
}

/* Writes arranged position j of a row (key k, source index i) to the output at oo. */
template <typename T>
__device__ __forceinline__ void sort_emit(const pnG_sort_desc &d, const T *src, void *dst,
                                          int64_t ao, int64_t oo, int64_t j,
                                          typename sort_key_of<T>::type k, uint32_t i)
{
    int64_t at = oo + (j - d.lo) * d.so;
    if (d.arg) ((uint32_t *)dst)[at] = i;
    else if (d.canon) ((T *)dst)[at] = src[ao + (int64_t)i * d.sa];
    else ((T *)dst)[at] = sort_unkey<T>(k);
}

/* ───────────────────────────── shared-memory sort ───────────────────────────── */

/* Sorts segments of `seg` elements of every row (the whole row when seg >= n) in shared
 * memory, P (a power of two >= the segment) slots per segment: to_dst writes the arranged
 * row to the output; otherwise the segment's sorted (key, index) pairs go to kbuf/ibuf (row r
 * at r * n). A block per segment. */
template <typename T>
__global__ void sort_block_kernel(pnG_sort_desc d, const T *src, void *dst, int64_t seg, int P,
                                  bool to_dst, typename sort_key_of<T>::type *kbuf,
                                  uint32_t *ibuf)
{
    typedef typename sort_key_of<T>::type K;
    PNG_DYNAMIC_SMEM(unsigned char, smem);
    uint32_t *ix = (uint32_t *)smem;
    K *keys = (K *)(smem + (size_t)P * sizeof(uint32_t));
    int64_t nseg = (d.n + seg - 1) / seg, items = d.rows * nseg;
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        int64_t r = item / nseg, s0 = (item - r * nseg) * seg;
        int64_t cnt = d.n - s0 < seg ? d.n - s0 : seg;
        int64_t ao, oo;
        sort_row_offsets(d, r, ao, oo);
        for (int i = threadIdx.x; i < P; i += blockDim.x) {
            if (i < cnt) {
                keys[i] = sort_key<T>(src[ao + (s0 + i) * d.sa], d.canon);
                ix[i] = (uint32_t)(s0 + i);
            } else {
                keys[i] = (K)~(K)0;
                ix[i] = UINT32_MAX;
            }
        }
        __syncthreads();
        for (int k = 2; k <= P; k <<= 1) {
            for (int j = k >> 1; j > 0; j >>= 1) {
                for (int t = threadIdx.x; t < P / 2; t += blockDim.x) {
                    int i = 2 * j * (t / j) + (t % j), l = i + j;
                    bool up = (i & k) == 0;
                    K ka = keys[i], kb = keys[l];
                    uint32_t ia = ix[i], ib = ix[l];
                    if (sort_less(kb, ib, ka, ia) == up) {
                        keys[i] = kb, keys[l] = ka;
                        ix[i] = ib, ix[l] = ia;
                    }
                }
                __syncthreads();
            }
        }
        if (to_dst) {
            for (int64_t j = d.lo + threadIdx.x; j < cnt; j += blockDim.x)
                sort_emit<T>(d, src, dst, ao, oo, j, keys[j], ix[j]);
        } else {
            for (int64_t i = threadIdx.x; i < cnt; i += blockDim.x) {
                kbuf[r * d.n + s0 + i] = keys[i];
                ibuf[r * d.n + s0 + i] = ix[i];
            }
        }
        __syncthreads(); /* the next segment reuses the shared memory */
    }
}

/* ───────────────────────────── global merges ───────────────────────────── */

/* Elements of sorted run (k, ix)[0, len) before (key, i) in the total order. */
template <typename K>
__device__ __forceinline__ int64_t sort_rank(const K *k, const uint32_t *ix, int64_t len, K key,
                                             uint32_t i)
{
    int64_t lo = 0, hi = len;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sort_less(k[mid], ix[mid], key, i)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* One merge pass: the sorted runs of w elements of each row (in ka/ia) merge pairwise into
 * runs of 2w (in kb/ib). An element's place is its position in its run plus its rank in the
 * other run. */
template <typename K>
__global__ void sort_merge_kernel(int64_t rows, int64_t n, int64_t w, const K *ka,
                                  const uint32_t *ia, K *kb, uint32_t *ib)
{
    for (int64_t e = png_thread_index(); e < rows * n; e += png_grid_stride()) {
        int64_t r = e / n, i = e - r * n, base = r * n;
        int64_t s = i / (2 * w) * (2 * w);
        int64_t mid = s + w < n ? s + w : n, end = s + 2 * w < n ? s + 2 * w : n;
        K key = ka[e];
        uint32_t id = ia[e];
        int64_t at;
        if (i < mid) at = i + sort_rank(ka + base + mid, ia + base + mid, end - mid, key, id);
        else at = (i - mid) + s + sort_rank(ka + base + s, ia + base + s, mid - s, key, id);
        kb[base + at] = key;
        ib[base + at] = id;
    }
}

/* Writes the sorted rows (kbuf/ibuf) to the output. */
template <typename T>
__global__ void sort_emit_kernel(pnG_sort_desc d, const T *src, void *dst,
                                 const typename sort_key_of<T>::type *kbuf, const uint32_t *ibuf)
{
    int64_t m = d.n - d.lo;
    for (int64_t e = png_thread_index(); e < d.rows * m; e += png_grid_stride()) {
        int64_t r = e / m, j = d.lo + (e - r * m), ao, oo;
        sort_row_offsets(d, r, ao, oo);
        sort_emit<T>(d, src, dst, ao, oo, j, kbuf[r * d.n + j], ibuf[r * d.n + j]);
    }
}

/* ───────────────────────────── launcher ───────────────────────────── */

static int sort_pow2(int64_t n)
{
    int p = 2;
    while (p < n) p <<= 1;
    return p;
}

template <typename T>
static int sort_run(const pnG_sort_desc &d, const T *src, void *dst, int stream)
{
    typedef typename sort_key_of<T>::type K;
    cudaStream_t st = png_stream(stream);
    auto kblock = sort_block_kernel<T>;
    if (d.n <= SORT_TILE) {
        int P = sort_pow2(d.n), threads = P / 2 < SORT_MAX_THREADS ? P / 2 : SORT_MAX_THREADS;
        if (threads < 32) threads = 32;
        size_t smem = (size_t)P * (sizeof(K) + sizeof(uint32_t));
        PNG_LAUNCH(kblock, png_blocks(d.rows), threads, smem, st, d, src, dst, d.n, P, true,
                   (K *)nullptr, (uint32_t *)nullptr);
        return pnG_check_launch("sort");
    }
    size_t total = (size_t)(d.rows * d.n), kbytes = total * sizeof(K), ibytes = total * 4;
    K *k0 = (K *)pnG_malloc(kbytes, stream), *k1 = (K *)pnG_malloc(kbytes, stream);
    uint32_t *i0 = (uint32_t *)pnG_malloc(ibytes, stream);
    uint32_t *i1 = (uint32_t *)pnG_malloc(ibytes, stream);
    int rc = 0;
    if (!k0 || !k1 || !i0 || !i1) {
        rc = -1;
    } else {
        int64_t tiles = d.rows * ((d.n + SORT_TILE - 1) / SORT_TILE);
        size_t smem = (size_t)SORT_TILE * (sizeof(K) + sizeof(uint32_t));
        PNG_LAUNCH(kblock, png_blocks(tiles), SORT_MAX_THREADS, smem, st, d, src, dst,
                   (int64_t)SORT_TILE, SORT_TILE, false, k0, i0);
        rc = pnG_check_launch("sort");
        unsigned grid = png_blocks_for((int64_t)total, MERGE_THREADS);
        for (int64_t w = SORT_TILE; rc == 0 && w < d.n; w *= 2) {
            auto km = sort_merge_kernel<K>;
            PNG_LAUNCH(km, grid, MERGE_THREADS, 0, st, d.rows, d.n, w, (const K *)k0,
                       (const uint32_t *)i0, k1, i1);
            rc = pnG_check_launch("sort merge");
            K *tk = k0;
            k0 = k1, k1 = tk;
            uint32_t *ti = i0;
            i0 = i1, i1 = ti;
        }
        if (rc == 0) {
            auto ke = sort_emit_kernel<T>;
            PNG_LAUNCH(ke, png_blocks_for(d.rows * (d.n - d.lo), MERGE_THREADS), MERGE_THREADS, 0,
                       st, d, src, dst, (const K *)k0, (const uint32_t *)i0);
            rc = pnG_check_launch("sort");
        }
    }
    if (k0) pnG_free(k0, kbytes, stream);
    if (k1) pnG_free(k1, kbytes, stream);
    if (i0) pnG_free(i0, ibytes, stream);
    if (i1) pnG_free(i1, ibytes, stream);
    return rc;
}

/* See sort.h. */
extern "C" int pnG_sort(const pnG_sort_desc *d, pn_dtype dtype, const void *src, void *dst,
                        int stream)
{
    if (d->rows == 0 || d->n == 0 || d->lo >= d->n) return 0;
    int rc = PNG_UNSUPPORTED;
    png_dispatch(dtype, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        rc = sort_run<T>(*d, (const T *)src, dst, stream);
    });
    return rc;
}
