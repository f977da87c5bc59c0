/* upsample.c — mlx.nn.Upsample as a function: nearest, linear and cubic interpolation of every
 * spatial axis of x (N, spatial..., C) with MLX's sampling grid, and antialiased linear and cubic
 * (a filter whose support widens by 1/scale when downsampling). Composite: each spatial axis in
 * turn is a repeat (nearest, integer scale) or a take of precomputed source indices followed by
 * a weighted sum over the taps, so gradients and the GPU come from the ops. */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* MLX computes the sampling positions with float32 array ops; rnd() rounds each step to float32
 * (the volatile store keeps the compiler from fusing a multiply-add) so that the neighbours
 * chosen here are the ones MLX chooses. */
static float rnd(float v)
{
    volatile float r = v;
    return r;
}

/* The source position of output i of m along an axis of n (MLX's _scaled_indices). */
static float grid_pos(int64_t i, int64_t n, int64_t m, double scale, bool align_corners)
{
    if (align_corners) return rnd((float)i * (float)((double)(n - 1) / (double)(m > 1 ? m - 1 : 1)));
    double step = 1.0 / scale, start = ((double)(m - 1) * step - (double)n + 1) / 2;
    return rnd(rnd((float)i * (float)step) - (float)start);
}

static int64_t clamp_index(double v, int64_t n) { return v < 0 ? 0 : v > (double)(n - 1) ? n - 1 : (int64_t)v; }

/* A mode's taps of output i: source indices (in [0, n)) and weights. */
typedef void (*tap_fn)(int64_t i, int64_t n, int64_t m, double scale, bool align_corners, int64_t *idx, double *w);

/* Nearest: round((i + 0.5) n/m - 0.5) when upsampling, else floor(i n/m) (MLX's _nearest_indices). */
static void nearest_taps(int64_t i, int64_t n, int64_t m, double scale, bool align_corners, int64_t *idx, double *w)
{
    float r = (float)((double)n / (double)m);
    float p = m > n ? rintf(rnd(rnd(((float)i + 0.5f) * r) - 0.5f)) : rnd((float)i * r);
    idx[0] = clamp_index(truncf(p), n);
    w[0] = 1;
}

/* Linear: the two neighbours of the position clipped to [0, n-1]. */
static void linear_taps(int64_t i, int64_t n, int64_t m, double scale, bool align_corners, int64_t *idx, double *w)
{
    float p = grid_pos(i, n, m, scale, align_corners);
    p = p < 0 ? 0.0f : p > (float)(n - 1) ? (float)(n - 1) : p;
    float lo = floorf(p);
    idx[0] = clamp_index(lo, n);
    idx[1] = clamp_index(ceilf(p), n);
    w[1] = (double)p - (double)lo;
    w[0] = 1 - w[1];
}

/* The Keys cubic convolution kernel with coefficient a: its piece for distances up to 1, its
 * piece for 1..2, and the kernel at distance x >= 0. */
static double keys_inner(double x, double a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
static double keys_outer(double x, double a) { return (((x - 5) * x + 8) * x - 4) * a; }
static double keys_cubic(double x, double a) { return x <= 1 ? keys_inner(x, a) : x <= 2 ? keys_outer(x, a) : 0; }

/* Cubic convolution (Keys, a = -0.75 as MLX and PyTorch without antialiasing) over the four
 * neighbours floor(p) - 1 .. floor(p + 1) + 1 of the unclipped position, each tap's piece chosen
 * by its place (as MLX's); indices outside the axis repeat the border. */
static void cubic_taps(int64_t i, int64_t n, int64_t m, double scale, bool align_corners, int64_t *idx, double *w)
{
    float p = grid_pos(i, n, m, scale, align_corners);
    float l1 = floorf(p), r1 = floorf(rnd(p + 1.0f));
    float grid[4] = {l1, r1, l1 - 1.0f, r1 + 1.0f};
    for (int t = 0; t < 4; t++) {
        double x = fabs((double)p - (double)grid[t]);
        w[t] = t < 2 ? keys_inner(x, -0.75) : keys_outer(x, -0.75);
        idx[t] = clamp_index(grid[t], n);
    }
}

/* Antialiased taps (MLX's _aa_indices, PyTorch's interpolate(antialias=True) for integer
 * downscales): kernel(|p - j| / widen) over the k = 2 * ceil(radius * widen) + 1 neighbours j of
 * floor(p), widen = 1/scale when downsampling (else 1); taps outside the axis get weight 0 (their
 * index clipped) and the weights are normalized to sum 1. radius 1: the triangle kernel; radius
 * 2: Keys cubic with a = -0.5. */
static void aa_taps(int64_t i, int64_t n, int64_t m, double scale, int k, double radius, int64_t *idx, double *w)
{
    double widen = scale < 1 ? 1 / scale : 1, p = grid_pos(i, n, m, scale, false), sum = 0;
    double base = floor(p);
    int half = k / 2;
    for (int t = 0; t < k; t++) {
        double j = base + (t - half), x = fabs(p - j) / widen;
        double v = radius == 1 ? fmax(1 - x, 0) : keys_cubic(x, -0.5);
        w[t] = j >= 0 && j < (double)n ? v : 0;
        sum += w[t];
        idx[t] = clamp_index(j, n);
    }
    for (int t = 0; t < k; t++) w[t] /= sum > 0 ? sum : 1;
}

/* Each mode: its name, its taps per output and their function, and its kernel's radius when
 * antialiased (0: none). */
static const struct {
    const char *name;
    int taps;
    tap_fn fn;
    double aa_radius;
} MODES[] = {{"nearest", 1, nearest_taps, 0}, {"linear", 2, linear_taps, 1}, {"cubic", 4, cubic_taps, 2}};
enum { NEAREST = 0, NMODES = sizeof MODES / sizeof MODES[0] };

/* Taps per output of mode along an axis resampled by scale (antialiased: 2 * ceil(radius /
 * min(scale, 1)) + 1, as MLX's num_taps); as a double, checked before it becomes a count. */
static double taps_of(int mode, double scale, bool antialias)
{
    if (!antialias) return MODES[mode].taps;
    return 2 * ceil(MODES[mode].aa_radius * (scale < 1 ? 1 / scale : 1)) + 1;
}

/* x resampled along axis to m entries with mode's taps: a repeat for nearest with an integer
 * scale, else take of the m * taps source indices and (linear, cubic) the weighted sum over taps
 * with weights of dtype wdt. */
static pn_array *resample_axis(pn_array *x, int axis, int64_t m, double scale, int mode, bool align_corners,
                               bool antialias, pn_dtype wdt)
{
    if (mode == NEAREST && scale == floor(scale)) return scale == 1 ? x : pn_repeat(x, (int64_t)scale, axis);
    double taps = m > 0 ? taps_of(mode, scale, antialias) : 1; /* no output: no taps to count */
    if (taps * (double)m >= 2147483648.0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[upsample] The antialiasing filter of scale %g needs %.0f taps per "
                        "output, too many.", scale, taps);
    int64_t n = x->shape[axis], k = (int64_t)taps, count = m * k;
    int32_t *idx = malloc(sizeof *idx * (size_t)(count > 0 ? count : 1));
    int64_t *ti = malloc(sizeof *ti * (size_t)k);
    double *w = malloc(sizeof *w * (size_t)(count > 0 ? count : 1));
    if (!idx || !w || !ti) {
        free(idx), free(w), free(ti);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[upsample] Out of memory.");
    }
    for (int64_t i = 0; i < m; i++) {
        if (antialias) aa_taps(i, n, m, scale, (int)k, MODES[mode].aa_radius, ti, w + i * k);
        else MODES[mode].fn(i, n, m, scale, align_corners, ti, w + i * k);
        for (int j = 0; j < k; j++) idx[i * k + j] = (int32_t)ti[j];
    }
    free(ti);
    pn_array *y = pn_take(x, pn_array_from_data(idx, &count, 1, PN_INT32), axis);
    if (k > 1) {
        int nd = x->ndim;
        int64_t shape[PNC_MAX_NDIM + 1], wshape[PNC_MAX_NDIM + 1];
        memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
        memmove(shape + axis + 2, shape + axis + 1, sizeof(int64_t) * (size_t)(nd - axis - 1));
        shape[axis] = m, shape[axis + 1] = k;
        wshape[0] = m, wshape[1] = k;
        for (int d = 2; d < nd - axis + 1; d++) wshape[d] = 1;
        pn_array *wa = pn_astype(pn_array_from_data(w, wshape, nd - axis + 1, PN_FLOAT64), wdt);
        int sum_axis = axis + 1;
        y = pn_sum(pn_multiply(pn_reshape(y, shape, nd + 1), wa), &sum_axis, 1, false);
    }
    free(idx), free(w);
    return y;
}

/* Upsampling of x (N, spatial..., C), at least one spatial axis, as mlx.nn.Upsample: spatial
 * axis d of size n becomes int(scale[d] * n) (nscale == 1: one scale for every spatial axis,
 * else nscale == ndim - 2; scales positive and finite). mode "nearest" (NULL), "linear" or
 * "cubic"; align_corners places the corner samples of input and output on each other (linear
 * and cubic; ignored by nearest); antialias (linear and cubic, not with align_corners) filters
 * with a support widened by 1/scale when downsampling, cubic then with a = -0.5. Nearest keeps x's dtype; linear and cubic return x's dtype
 * promoted with float32 (float64 stays float64). */
pn_array *pn_nn_upsample(pn_array *x, const double *scale, int nscale, const char *mode, bool align_corners,
                         bool antialias)
{
    if (!pnC_inputs_ok("upsample", 1, &x)) return NULL;
    int m = -1;
    const char *name = mode ? mode : "nearest";
    for (int i = 0; i < NMODES; i++)
        if (strcmp(name, MODES[i].name) == 0) m = i;
    if (m < 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[upsample] Got unsupported upsampling algorithm: %s.", name);
    if (antialias && m == NEAREST)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[Upsample] Antialiasing is not supported for nearest neighbor "
                                                 "upsampling.");
    if (antialias && align_corners)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[Upsample] antialias=True with align_corners=True is not "
                                                 "supported. Use align_corners=False for antialiased interpolation.");
    int nsp = x->ndim - 2;
    if (nsp <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[upsample] The input should have at least 1 spatial dimension which means it should be "
                        "at least 3D but %dD was provided.", x->ndim);
    if (!scale || (nscale != 1 && nscale != nsp))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[upsample] One scale per spatial dimension is required but %d scale%s given for %d "
                        "spatial dimensions.", scale ? nscale : 0, scale && nscale == 1 ? " was" : "s were", nsp);
    int64_t out[PNC_MAX_NDIM];
    for (int d = 0; d < nsp; d++) {
        double s = scale[nscale == 1 ? 0 : d], size = s * (double)x->shape[d + 1];
        if (!(s > 0) || !isfinite(s) || size >= 2147483648.0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[upsample] The scale factors must be positive and finite and the output sizes below "
                            "2^31, got scale %g for spatial axis %d of size %lld.", s, d,
                            (long long)x->shape[d + 1]);
        out[d] = (int64_t)size;
    }
    pn_scope_push();
    pn_dtype wdt = x->dtype == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *y = x;
    for (int d = 0; d < nsp && y; d++)
        y = resample_axis(y, d + 1, out[d], scale[nscale == 1 ? 0 : d], m, align_corners, antialias, wdt);
    return pnC_scope_return(y);
}
