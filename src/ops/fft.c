/* fft.c — mlx.core.fft: one FFT primitive over several axes (complex to complex, real to
 * complex, complex to real; kernels in backend/cpu/fft.c and backend/cuda/fft.c), its
 * derivatives and batching rule, the constructors fft/ifft/fft2/.../irfftn (padding and
 * truncation to the requested sizes with pad / slice) and fftshift / ifftshift (rolls).
 * Semantics follow mlx.core.fft: complex64 results, float32 for irfft, "backward" scaling. */
#include "backend/cpu/fft.h"
#include "backend/cpu/reduce.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <math.h>
#include <string.h>

static pn_array *fft_node(pn_array *x, int kind, bool inverse, const int *axes, int naxes,
                          int64_t nreal);

/* ───────────────────────────── derivatives ───────────────────────────── */

/* The transform is linear. With Ponte's (MLX's) complex cotangent convention, where the vjp of
 * a complex-linear map is its transpose, the vjp of fftn is fftn and of ifftn is ifftn (the DFT
 * matrix is symmetric). rfftn: the real part of fftn of the cotangent zero-padded back to n on
 * the real axis. irfftn: ifftn of the cotangent, cut to n/2+1 on the real axis and doubled
 * where the forward transform used a value twice (all but the zero and Nyquist frequencies). */
static int fft_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_fft_params *p = PNC_PARAMS(node, pnK_fft_params);
    pn_array *x = in[0], *c = cot[0], *g = NULL;
    int last = p->axes[p->naxes - 1];
    grads[0] = NULL;
    if (!c) return 0;
    pn_scope_push();
    if (p->kind == PNK_FFT_C2C) {
        g = fft_node(c, PNK_FFT_C2C, p->inverse, p->axes, p->naxes, 0);
    } else if (p->kind == PNK_FFT_R2C) {
        int64_t lo = 0, hi = x->shape[last] - c->shape[last];
        pn_array *cp = hi > 0 ? pn_pad(c, &last, &lo, &hi, 1, NULL, PN_PAD_CONSTANT) : c;
        g = pn_real(fft_node(cp, PNK_FFT_C2C, false, p->axes, p->naxes, 0));
    } else {
        int64_t n = out[0]->shape[last], m = x->shape[last];
        pn_array *f = fft_node(c, PNK_FFT_C2C, true, p->axes, p->naxes, 0);
        int64_t start[PNC_MAX_NDIM], stop[PNC_MAX_NDIM], mshape[PNC_MAX_NDIM];
        for (int d = 0; d < x->ndim; d++) {
            start[d] = 0;
            stop[d] = x->shape[d];
            mshape[d] = d == last ? m : 1;
        }
        f = pn_slice(f, start, stop, NULL, x->ndim);
        pn_array *k = pn_reshape(pn_arange(0, (double)m, 1, PN_INT32), mshape, x->ndim);
        pn_array *once = pn_logical_or(pn_equal(k, pn_weak_int(0)),
                                       pn_equal(k, pn_weak_int(n % 2 ? -1 : n / 2)));
        g = pn_multiply(f, pn_where(once, pn_scalar(1, PN_FLOAT32), pn_scalar(2, PN_FLOAT32)));
    }
    return pnO_keep_result(g, grads);
}

/* The tangent goes through the same transform. */
static int fft_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    const pnK_fft_params *p = PNC_PARAMS(node, pnK_fft_params);
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    pn_array *r = fft_node(tan[0], p->kind, p->inverse, p->axes, p->naxes,
                           out[0]->shape[p->axes[p->naxes - 1]]);
    return pnO_keep_result(r, out_tan);
}

/* Batching rule: the mapped axis first, the transformed axes shift by one. */
static int fft_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                    pn_array **out, int *out_axes)
{
    const pnK_fft_params *p = PNC_PARAMS(node, pnK_fft_params);
    int b = in_axes[0], axes[PNK_FFT_MAX_AXES];
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], b, 0);
    for (int i = 0; i < p->naxes; i++) axes[i] = p->axes[i] + (b >= 0);
    int64_t nreal = node->out_shapes[0][p->axes[p->naxes - 1]];
    pn_array *r = x ? fft_node(x, p->kind, p->inverse, axes, p->naxes, nreal) : NULL;
    out_axes[0] = b >= 0 ? 0 : -1;
    return pnO_keep_result(r, out);
}

const pnC_primitive fft_prim = {
    .name = "FFT",
    .not_in_graphs = true, /* cuFFT plans are bound to the stream they were made on */
    .eval = {[PN_CPU] = pnK_fft_eval, [PN_GPU] = PNG_EVAL(pnG_fft_eval)},
    .vjp = fft_vjp,
    .jvp = fft_jvp,
    .vmap = fft_vmap,
};

/* The FFT node over x, already at the transform's input sizes: axes normalized (at most
 * PNK_FFT_MAX_AXES, distinct), nreal the output length of the real axis for C2R. x is cast to
 * the kind's input dtype (complex to real drops the imaginary part, as MLX). */
static pn_array *fft_node(pn_array *x, int kind, bool inverse, const int *axes, int naxes,
                          int64_t nreal)
{
    if (!x) return NULL;
    pnK_fft_params q = {.naxes = naxes, .inverse = inverse, .kind = kind};
    int64_t shape[PNC_MAX_NDIM];
    for (int i = 0; i < naxes; i++) q.axes[i] = axes[i];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    int last = axes[naxes - 1];
    if (kind == PNK_FFT_R2C) shape[last] = x->shape[last] / 2 + 1;
    if (kind == PNK_FFT_C2R) shape[last] = nreal;
    pn_dtype in_t = kind == PNK_FFT_R2C ? PN_FLOAT32 : PN_COMPLEX64;
    pn_dtype out_t = kind == PNK_FFT_C2R ? PN_FLOAT32 : PN_COMPLEX64;
    pn_array *xi = x->dtype == in_t ? x : pn_astype(x, in_t);
    return xi ? pnC_make(&fft_prim, &q, sizeof q, 1, &xi, out_t, shape, x->ndim) : NULL;
}

/* ───────────────────────────── constructors ───────────────────────────── */

/* fftn / ifftn / rfftn / irfftn (MLX's fft_impl): axes NULL means the last naxes axes when s
 * is given, else every axis; s NULL means a's sizes (irfftn: 2 (m - 1) on the last axis). */
static pn_array *fft_impl(pn_array *a, const int64_t *s, const int *axes, int naxes, int kind,
                          bool inverse, const char *norm)
{
    if (!pnC_inputs_ok("fftn", 1, &a)) return NULL;
    bool ortho = norm && !strcmp(norm, "ortho"), fwd = norm && !strcmp(norm, "forward");
    if (norm && !ortho && !fwd && strcmp(norm, "backward"))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[fft] Invalid norm. Expected one of {'backward', 'ortho', 'forward'}.");
    int nd = a->ndim;
    if (nd < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[fftn] Requires array with at least one dimension.");
    int ax[PNC_MAX_NDIM];
    if (!axes && !s) naxes = nd;
    if (naxes < 0 || naxes > nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[fftn] Got %d axes for an array with %d dimensions.", naxes, nd);
    for (int i = 0; i < naxes; i++) {
        int v = axes ? axes[i] : nd - naxes + i;
        ax[i] = v < 0 ? v + nd : v;
    }
    for (int i = 0; i < naxes; i++)
        for (int j = 0; j < i; j++)
            if (ax[i] == ax[j])
                return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                                "[fftn] Duplicated axis received %d.", axes ? axes[i] : ax[i]);
    for (int i = 0; i < naxes; i++)
        if (ax[i] < 0 || ax[i] >= nd)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[fftn] Invalid axis received for array with %d dimensions.", nd);
    if (naxes == 0) return pnC_alias(a);
    bool real = kind != PNK_FFT_C2C;
    int64_t n[PNC_MAX_NDIM];
    for (int i = 0; i < naxes; i++) n[i] = s ? s[i] : a->shape[ax[i]];
    if (!s && real && inverse) n[naxes - 1] = (n[naxes - 1] - 1) * 2;
    for (int i = 0; i < naxes; i++)
        if (n[i] <= 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[fftn] Invalid FFT output size requested %lld on axis %d.",
                            (long long)n[i], ax[i]);
    /* the input's sizes: n, except n/2+1 on the real axis of irfftn */
    int64_t start[PNC_MAX_NDIM], stop[PNC_MAX_NDIM], lo[PNC_MAX_NDIM], hi[PNC_MAX_NDIM];
    int padax[PNC_MAX_NDIM], npad = 0;
    bool cut = false;
    for (int d = 0; d < nd; d++) start[d] = 0, stop[d] = a->shape[d];
    for (int i = 0; i < naxes; i++) {
        int64_t want = (real && inverse && i == naxes - 1) ? n[i] / 2 + 1 : n[i];
        int64_t have = a->shape[ax[i]];
        if (want < have) stop[ax[i]] = want, cut = true;
        if (want > have) padax[npad] = ax[i], lo[npad] = 0, hi[npad++] = want - have;
    }
    pn_scope_push();
    pn_array *x = cut ? pn_slice(a, start, stop, NULL, nd) : a;
    if (npad) x = pn_pad(x, padax, lo, hi, npad, NULL, PN_PAD_CONSTANT);
    pn_array *r = fft_node(x, kind, inverse, ax, naxes, n[naxes - 1]);
    /* norm: the node is "backward" (1/N on the inverse); N is the product of the logical
     * transform sizes (irfftn: its output's, rfftn: its input's) */
    if (r && (ortho || fwd)) {
        double nn = 1;
        for (int i = 0; i < naxes; i++) nn *= (double)n[i];
        double scale = ortho ? (inverse ? sqrt(nn) : 1 / sqrt(nn)) : (inverse ? nn : 1 / nn);
        r = pn_multiply(r, pn_scalar(scale, PN_FLOAT32));
    }
    return pnC_scope_return(r);
}

/* The default axes of the 2-d transforms. */
static const int last_two[2] = {-2, -1};

/* See ponte.h. */
pn_array *pn_fft_fftn(pn_array *a, const int64_t *s, const int *axes, int naxes)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2C, false, NULL);
}
pn_array *pn_fft_fftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                             const char *norm)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2C, false, norm);
}
pn_array *pn_fft_ifftn(pn_array *a, const int64_t *s, const int *axes, int naxes)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2C, true, NULL);
}
pn_array *pn_fft_ifftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                              const char *norm)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2C, true, norm);
}
pn_array *pn_fft_rfftn(pn_array *a, const int64_t *s, const int *axes, int naxes)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_R2C, false, NULL);
}
pn_array *pn_fft_rfftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                              const char *norm)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_R2C, false, norm);
}
pn_array *pn_fft_irfftn(pn_array *a, const int64_t *s, const int *axes, int naxes)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2R, true, NULL);
}
pn_array *pn_fft_irfftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                               const char *norm)
{
    return fft_impl(a, s, axes, naxes, PNK_FFT_C2R, true, norm);
}

/* See ponte.h. */
pn_array *pn_fft_fft2(pn_array *a, const int64_t *s, const int *axes)
{
    return pn_fft_fftn(a, s, axes ? axes : last_two, 2);
}
pn_array *pn_fft_ifft2(pn_array *a, const int64_t *s, const int *axes)
{
    return pn_fft_ifftn(a, s, axes ? axes : last_two, 2);
}
pn_array *pn_fft_rfft2(pn_array *a, const int64_t *s, const int *axes)
{
    return pn_fft_rfftn(a, s, axes ? axes : last_two, 2);
}
pn_array *pn_fft_irfft2(pn_array *a, const int64_t *s, const int *axes)
{
    return pn_fft_irfftn(a, s, axes ? axes : last_two, 2);
}

/* See ponte.h. n == 0: the default size. */
pn_array *pn_fft_fft(pn_array *a, int64_t n, int axis)
{
    return pn_fft_fftn(a, n ? &n : NULL, &axis, 1);
}
pn_array *pn_fft_ifft(pn_array *a, int64_t n, int axis)
{
    return pn_fft_ifftn(a, n ? &n : NULL, &axis, 1);
}
pn_array *pn_fft_rfft(pn_array *a, int64_t n, int axis)
{
    return pn_fft_rfftn(a, n ? &n : NULL, &axis, 1);
}
pn_array *pn_fft_irfft(pn_array *a, int64_t n, int axis)
{
    return pn_fft_irfftn(a, n ? &n : NULL, &axis, 1);
}

/* fftshift (inverse false: rolls by n/2) and ifftshift (by (n+1)/2, i.e. -(n/2)). */
static pn_array *shift_impl(const char *name, pn_array *a, const int *axes, int naxes,
                            bool inverse)
{
    if (!pnC_inputs_ok(name, 1, &a)) return NULL;
    if (!axes) naxes = a->ndim;
    if (naxes <= 0) return pnC_alias(a);
    int ax[PNC_MAX_NDIM];
    int64_t shift[PNC_MAX_NDIM];
    if (naxes > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Too many axes (%d).", name, naxes);
    for (int i = 0; i < naxes; i++) {
        int v = axes ? axes[i] : i, d = v < 0 ? v + a->ndim : v;
        if (d < 0 || d >= a->ndim)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Invalid axis %d for array with %d dimensions.", name, v,
                            a->ndim);
        ax[i] = d;
        shift[i] = inverse ? (a->shape[d] + 1) / 2 : a->shape[d] / 2;
    }
    return pn_roll(a, shift, ax, naxes);
}

/* See ponte.h. */
pn_array *pn_fft_fftshift(pn_array *a, const int *axes, int naxes)
{
    return shift_impl("fftshift", a, axes, naxes, false);
}
pn_array *pn_fft_ifftshift(pn_array *a, const int *axes, int naxes)
{
    return shift_impl("ifftshift", a, axes, naxes, true);
}
