/* spectral.c — mlx.core.fft's helpers over the FFT ops of fft.c: the sample frequencies
 * (fftfreq, rfftfreq) and the short-time transforms (stft, istft). stft frames the signal
 * with one gather (take) whose indices fold in the centre padding; istft overlap-adds the
 * frames with ceil(n_fft / hop) shifted pads. All compositions: they differentiate and run
 * on the GPU through the ops they use. */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── fftfreq / rfftfreq ───────────────────────────── */

/* The n (fftfreq) or n/2+1 (rfftfreq) sample frequencies i / (n d), negative ones after the
 * positive ones for fftfreq, as float32. */
static pn_array *freqs(const char *op, int64_t n, double d, bool onesided)
{
    if (n <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] `n` must be greater than 0.", op);
    if (d == 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] `d` must be non-zero.", op);
    int64_t m = onesided ? n / 2 + 1 : n;
    float *v = malloc((size_t)m * sizeof *v);
    if (!v) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] out of memory", op);
    for (int64_t i = 0; i < m; i++) {
        int64_t k = onesided || i < (n + 1) / 2 ? i : i - n;
        v[i] = (float)((double)k / ((double)n * d));
    }
    pn_array *r = pn_array_from_data(v, &m, 1, PN_FLOAT32);
    free(v);
    return r;
}

pn_array *pn_fft_fftfreq(int64_t n, double d) { return freqs("fftfreq", n, d, false); }
pn_array *pn_fft_rfftfreq(int64_t n, double d) { return freqs("rfftfreq", n, d, true); }

/* ───────────────────────────── shared argument handling ───────────────────────────── */

/* Scale applied after a forward (inverse = false) or inverse transform of size n for norm
 * NULL/"backward", "ortho" or "forward"; 0 with an error for another name. */
static double norm_scale(const char *op, const char *norm, int64_t n, bool inverse)
{
    double sn = (double)n;
    if (!norm || !strcmp(norm, "backward")) return 1;
    if (!strcmp(norm, "ortho")) return inverse ? sqrt(sn) : 1 / sqrt(sn);
    if (!strcmp(norm, "forward")) return inverse ? sn : 1 / sn;
    pnC_fail(PN_ERR_INVALID_ARGUMENT,
             "[%s] Invalid norm. Expected one of {'backward', 'ortho', 'forward'}.", op);
    return 0;
}

/* The window as both transforms use it: `window` (1-d, at most n_fft long) or ones(win_length)
 * (win_length PN_FFT_DEFAULT: n_fft), zero-padded equally on both sides to n_fft (the extra
 * zero goes right). Owned by the current scope; NULL with an error. */
static pn_array *full_window(const char *op, pn_array *window, int64_t win_length, int64_t n_fft)
{
    pn_array *w;
    if (window) {
        if (window->ndim != 1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] window must be a one-dimensional array.", op);
        w = window;
    } else {
        if (win_length == PN_FFT_DEFAULT) win_length = n_fft;
        if (win_length < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] win_length must be non-negative, got %lld.",
                            op, (long long)win_length);
        if (win_length > n_fft)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] window length must not exceed n_fft.", op);
        w = pn_ones(&win_length, 1, PN_FLOAT32);
    }
    int64_t len = w->shape[0];
    if (len > n_fft)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] window length must not exceed n_fft.", op);
    if (len == n_fft) return w;
    int axis = 0;
    int64_t lo = (n_fft - len) / 2, hi = n_fft - len - lo;
    return pn_pad(w, &axis, &lo, &hi, 1, NULL, PN_PAD_CONSTANT);
}

/* a[..., lo:hi] on the last axis. */
static pn_array *slice_last(pn_array *a, int64_t lo, int64_t hi)
{
    int64_t start[PNC_MAX_NDIM] = {0}, stop[PNC_MAX_NDIM];
    for (int d = 0; d < a->ndim; d++) stop[d] = a->shape[d];
    start[a->ndim - 1] = lo;
    stop[a->ndim - 1] = hi;
    return pn_slice(a, start, stop, NULL, a->ndim);
}

/* ───────────────────────────── stft ───────────────────────────── */

typedef enum { PAD_REFLECT, PAD_CONSTANT, PAD_EDGE } stft_pad;

/* Index into the unpadded signal of length len for position i (may be outside [0, len)) of
 * the padded one; constant padding maps outside positions to len (a zero appended there). */
static int64_t pad_source(int64_t i, int64_t len, stft_pad mode)
{
    if (i >= 0 && i < len) return i;
    if (mode == PAD_CONSTANT) return len;
    if (mode == PAD_EDGE || len == 1) return i < 0 ? 0 : len - 1;
    int64_t period = 2 * (len - 1), r = ((i % period) + period) % period; /* numpy's reflect */
    return r < len ? r : period - r;
}

pn_array *pn_fft_stft(pn_array *x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                      pn_array *window, bool center, const char *pad_mode, const char *norm,
                      int onesided)
{
    pn_array *in[2] = {x, window};
    if (!pnC_inputs_ok("stft", window ? 2 : 1, in)) return NULL;
    if (x->ndim < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] Input must have at least one dimension.");
    if (n_fft <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] n_fft must be positive.");
    if (hop_length == PN_FFT_DEFAULT) hop_length = n_fft / 4;
    if (hop_length <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] hop_length must be positive.");
    double scale = norm_scale("stft", norm, n_fft, false);
    if (scale == 0) return NULL;
    stft_pad mode = PAD_REFLECT;
    if (center && pad_mode && strcmp(pad_mode, "reflect")) {
        if (!strcmp(pad_mode, "constant")) mode = PAD_CONSTANT;
        else if (!strcmp(pad_mode, "edge")) mode = PAD_EDGE;
        else return pnC_fail(PN_ERR_INVALID_ARGUMENT, "Invalid padding mode (%s) passed to pad", pad_mode);
    }
    int64_t len = x->shape[x->ndim - 1], pad = center ? n_fft / 2 : 0;
    if (len == 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] Cannot take the STFT of an empty signal.");
    if (len + 2 * pad < n_fft)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] Input is too short for the given n_fft.");
    int64_t frames = 1 + (len + 2 * pad - n_fft) / hop_length;
    if (frames * n_fft > INT32_MAX)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[stft] %lld frames of %lld samples are too many.",
                        (long long)frames, (long long)n_fft);
    if (onesided < 0) onesided = x->dtype != PN_COMPLEX64;

    pn_scope_push();
    pn_array *w = full_window("stft", window, win_length, n_fft);
    if (!w) return pnC_scope_return(NULL);
    /* idx[f][j]: the sample that frame f's j-th position reads, padding folded in */
    int32_t *idx = malloc((size_t)(frames * n_fft) * sizeof *idx);
    if (!idx) return pnC_scope_return(pnC_fail(PN_ERR_OUT_OF_MEMORY, "[stft] out of memory"));
    for (int64_t f = 0; f < frames; f++)
        for (int64_t j = 0; j < n_fft; j++)
            idx[f * n_fft + j] = (int32_t)pad_source(f * hop_length + j - pad, len, mode);
    pn_array *ia = pn_array_from_data(idx, (int64_t[]){frames, n_fft}, 2, PN_INT32);
    free(idx);
    pn_array *src = x;
    if (mode == PAD_CONSTANT && pad > 0) {
        int axis = x->ndim - 1;
        int64_t lo = 0, hi = 1;
        src = pn_pad(x, &axis, &lo, &hi, 1, NULL, PN_PAD_CONSTANT);
    }
    pn_array *fr = pn_multiply(pn_take(src, ia, -1), w); /* (..., frames, n_fft) */
    pn_array *spec = onesided ? pn_fft_rfft(fr, n_fft, -1) : pn_fft_fft(fr, n_fft, -1);
    if (spec && scale != 1) spec = pn_multiply(spec, pn_scalar(scale, PN_FLOAT32));
    return pnC_scope_return(spec ? pn_swapaxes(spec, -1, -2) : NULL);
}

/* ───────────────────────────── istft ───────────────────────────── */

/* Overlap-add of frames (..., F, n) placed hop apart: (..., n + hop (F - 1)). Each frame is
 * cut into r = ceil(n / hop) chunks of hop samples; chunk c of frame f lands on output chunk
 * f + c, so the sum is r pads of the chunk-c slabs shifted by c frames. */
static pn_array *overlap_add(pn_array *fr, int64_t hop)
{
    int nd = fr->ndim, fa = nd - 2;
    int64_t nframes = fr->shape[fa], n = fr->shape[nd - 1], r = (n + hop - 1) / hop;
    int64_t shape[PNC_MAX_NDIM + 1];
    int last = nd - 1;
    int64_t zero = 0, extra = r * hop - n;
    pn_array *p = extra ? pn_pad(fr, &last, &zero, &extra, 1, NULL, PN_PAD_CONSTANT) : fr;
    memcpy(shape, fr->shape, (size_t)nd * sizeof *shape);
    shape[nd - 1] = r;
    shape[nd] = hop;
    p = pn_reshape(p, shape, nd + 1); /* (..., F, r, hop) */
    pn_array *sum = NULL;
    for (int64_t c = 0; c < r && p; c++) {
        int64_t start[PNC_MAX_NDIM + 1] = {0}, stop[PNC_MAX_NDIM + 1];
        memcpy(stop, shape, (size_t)(nd + 1) * sizeof *stop);
        start[nd - 1] = c;
        stop[nd - 1] = c + 1;
        pn_array *slab = pn_squeeze(pn_slice(p, start, stop, NULL, nd + 1), &last, 1);
        int64_t lo = c, hi = r - 1 - c;
        slab = pn_pad(slab, &fa, &lo, &hi, 1, NULL, PN_PAD_CONSTANT); /* (..., F + r - 1, hop) */
        sum = sum ? pn_add(sum, slab) : slab;
    }
    if (!sum) return NULL;
    memcpy(shape, fr->shape, (size_t)nd * sizeof *shape);
    shape[nd - 2] = (nframes + r - 1) * hop;
    return slice_last(pn_reshape(sum, shape, nd - 1), 0, n + hop * (nframes - 1));
}

pn_array *pn_fft_istft(pn_array *stft_matrix, int64_t n_fft, int64_t hop_length,
                       int64_t win_length, pn_array *window, bool center, const char *norm,
                       int onesided, int64_t length)
{
    pn_array *s = stft_matrix, *in[2] = {stft_matrix, window};
    if (!pnC_inputs_ok("istft", window ? 2 : 1, in)) return NULL;
    if (s->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[istft] Input must have at least two dimensions (freq, frames).");
    if (onesided < 0) onesided = 1;
    int64_t nfreq = s->shape[s->ndim - 2], nframes = s->shape[s->ndim - 1];
    if (n_fft == PN_FFT_DEFAULT) n_fft = onesided ? 2 * (nfreq - 1) : nfreq;
    if (n_fft <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[istft] n_fft must be positive.");
    if (hop_length == PN_FFT_DEFAULT) hop_length = n_fft / 4;
    if (hop_length <= 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[istft] hop_length must be positive.");
    double scale = norm_scale("istft", norm, n_fft, true);
    if (scale == 0) return NULL;
    if (nframes == 0) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[istft] The STFT has no frames.");

    pn_scope_push();
    pn_array *w = full_window("istft", window, win_length, n_fft);
    if (!w) return pnC_scope_return(NULL);
    pn_array *f = pn_swapaxes(s, -1, -2); /* (..., frames, nfreq) */
    f = onesided ? pn_fft_irfft(f, n_fft, -1) : pn_real(pn_fft_ifft(f, n_fft, -1));
    if (!f) return pnC_scope_return(NULL);
    if (scale != 1) f = pn_multiply(f, pn_scalar(scale, PN_FLOAT32));
    pn_array *y = overlap_add(pn_multiply(f, w), hop_length);
    /* the squared-window envelope, floored at 1e-8 as MLX */
    int64_t fshape[2] = {nframes, n_fft};
    pn_array *env = overlap_add(pn_broadcast_to(pn_square(w), fshape, 2), hop_length);
    y = pn_divide(y, pn_maximum(env, pn_weak_float(1e-8)));
    if (!y) return pnC_scope_return(NULL);
    int64_t total = y->shape[y->ndim - 1], start = center ? n_fft / 2 : 0;
    int64_t stop = center ? total - n_fft / 2 : total;
    if (length != PN_FFT_DEFAULT) stop = start + (length > 0 ? length : 0);
    if (stop > total) {
        int axis = y->ndim - 1;
        int64_t lo = 0, hi = stop - total;
        y = pn_pad(y, &axis, &lo, &hi, 1, NULL, PN_PAD_CONSTANT);
    }
    return pnC_scope_return(slice_last(y, start, stop < start ? start : stop));
}
