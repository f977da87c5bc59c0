/* conv.cu — the convolution kernels behind pnG_conv_eval (conv.c): im2col of rows of output
 * positions into a scratch matrix that the cuBLASLt GEMM (gemm.cu) then multiplies by the
 * weight, and a direct kernel (one thread per output element) for convolutions whose groups
 * are too small for a GEMM (depthwise). Geometry and layouts: pnG_conv_geom in gemm.h. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/gemm.h"

/* The dtypes a convolution takes (the floating ones). */
template <typename T> struct conv_float {
    static const bool value = false;
};
#define CONV_FLOAT(T)                                                                          \
    template <> struct conv_float<T> {                                                         \
        static const bool value = true;                                                        \
    };
CONV_FLOAT(pn_float16)
CONV_FLOAT(pn_bfloat16)
CONV_FLOAT(float)
CONV_FLOAT(double)
#undef CONV_FLOAT

/* Input index along axis d read by output position o through kernel tap t (already flipped
 * when the kernel is), or -1 on padding or between dilated elements. */
__device__ __forceinline__ int64_t tap_index(const pnG_conv_geom &g, int d, int64_t o, int64_t t)
{
    int64_t j = o * g.s[d] + t * g.kd[d] - g.pl[d];
    if (j < 0 || j >= g.din[d]) return -1;
    if (g.id[d] == 1) return j;
    return j % g.id[d] ? -1 : j / g.id[d];
}

/* Element offset in x of the first channel at output position r (over (N, out...)) through
 * tap t (over k...), or -1 when that tap reads a zero. */
__device__ __forceinline__ int64_t tap_offset(const pnG_conv_geom &g, int64_t r, int64_t t)
{
    int64_t o[3], tp[3];
    for (int d = 2; d >= 0; d--) {
        o[d] = r % g.out[d], r /= g.out[d];
        tp[d] = t % g.k[d], t /= g.k[d];
        if (g.flip) tp[d] = g.k[d] - 1 - tp[d];
    }
    int64_t pos = r; /* batch element, then the input position axis by axis */
    for (int d = 0; d < 3; d++) {
        int64_t i = tap_index(g, d, o[d], tp[d]);
        if (i < 0) return -1;
        pos = pos * g.in[d] + i;
    }
    return pos * g.C;
}

/* col (m, G * KP * Cg) = rows [r0, r0 + m) of the im2col matrix of x (N, in..., C), moved
 * as units U (an element-sized integer, or uint4 when every channel run is 16-byte aligned):
 * g's C and Cg count units. Zero bits are +0 in every floating dtype, so padding is U().
 * threadIdx.y (with the blocks) picks an (output position, tap) item, threadIdx.x walks the
 * units of its channels. */
template <typename U>
__global__ void im2col_kernel(pnG_conv_geom g, const U *x, U *col, int64_t r0, int64_t m)
{
    int64_t items = m * g.KP, rowlen = g.G * g.KP * g.Cg, block = g.KP * g.Cg;
    int cg = (int)g.Cg, C = (int)g.C;
    for (int64_t it = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; it < items;
         it += (int64_t)gridDim.x * blockDim.y) {
        int64_t r = it / g.KP, t = it - r * g.KP;
        int64_t src = tap_offset(g, r0 + r, t);
        U *dst = col + r * rowlen + t * g.Cg;
        for (int ch = threadIdx.x; ch < C; ch += blockDim.x) {
            int grp = ch / cg, c = ch - grp * cg;
            dst[grp * block + c] = src < 0 ? U() : x[src + ch];
        }
    }
}

/* Launches im2col_kernel with units U of `unit` bytes. */
template <typename U>
static int im2col_launch(const pnG_conv_geom *g, size_t es, const void *x, void *col, int64_t r0,
                         int64_t m, cudaStream_t cs)
{
    pnG_conv_geom gu = *g;
    gu.C = g->C * (int64_t)es / (int64_t)sizeof(U);
    gu.Cg = g->Cg * (int64_t)es / (int64_t)sizeof(U);
    unsigned bx = 1; /* lanes per item: enough for the channel units, at most a warp */
    while (bx < 32 && (int64_t)bx < gu.C) bx *= 2;
    unsigned by = 256 / bx;
    auto k = im2col_kernel<U>;
    PNG_LAUNCH(k, png_blocks((m * g->KP + by - 1) / by), dim3(bx, by), 0, cs, gu, (const U *)x,
               (U *)col, r0, m);
    return pnG_check_launch("conv im2col");
}

extern "C" int pnG_conv_im2col(pn_dtype dtype, const pnG_conv_geom *g, const void *x, void *col,
                               int64_t r0, int64_t m, int stream)
{
    if (m <= 0) return 0;
    size_t es = pn_dtype_size(dtype);
    cudaStream_t cs = png_stream(stream);
    if (!cs) return -1;
    if ((g->Cg * (int64_t)es) % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)col % 16 == 0)
        return im2col_launch<uint4>(g, es, x, col, r0, m, cs);
    switch (es) {
    case 2: return im2col_launch<uint16_t>(g, es, x, col, r0, m, cs);
    case 4: return im2col_launch<uint32_t>(g, es, x, col, r0, m, cs);
    case 8: return im2col_launch<uint64_t>(g, es, x, col, r0, m, cs);
    default: return PNG_UNSUPPORTED;
    }
}

/* out (N, out..., O) = the convolution of x (N, in..., C) and w (O, k..., Cg), one thread per
 * output element, accumulating in the compute type (float for halves). */
template <typename T>
__global__ void conv_direct_kernel(pnG_conv_geom g, const T *x, const T *w, T *out)
{
    typedef typename png_compute<T>::type V;
    int64_t n = g.N * g.P * g.O;
    for (int64_t e = png_thread_index(); e < n; e += png_grid_stride()) {
        int64_t r = e / g.O, oc = e - r * g.O, grp = oc / g.Og;
        const T *wr = w + oc * g.KP * g.Cg, *xg = x + grp * g.Cg;
        V acc = 0;
        for (int64_t t = 0; t < g.KP; t++) {
            int64_t src = tap_offset(g, r, t);
            if (src < 0) continue;
            for (int64_t c = 0; c < g.Cg; c++)
                acc += (V)png_load(xg + src + c) * (V)png_load(wr + t * g.Cg + c);
        }
        png_store(out + e, acc);
    }
}

extern "C" int pnG_conv_direct(pn_dtype dtype, const pnG_conv_geom *g, const void *x,
                               const void *w, void *out, int stream)
{
    int64_t n = g->N * g->P * g->O;
    if (n <= 0) return 0;
    cudaStream_t cs = png_stream(stream);
    if (!cs) return -1;
    int rc = PNG_UNSUPPORTED;
    png_dispatch(dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (conv_float<T>::value) {
            auto k = conv_direct_kernel<T>;
            PNG_LAUNCH(k, png_blocks_for(n, 256), 256, 0, cs, *g, (const T *)x, (const T *)w,
                       (T *)out);
            rc = pnG_check_launch("conv direct");
        }
    });
    return rc;
}
