/* conv.c — convolution ops as mlx.core has them: one primitive (Convolution: grouped, strided,
 * padded, kernel- and input-dilated, optionally flipped; kernel in backend/cpu/conv.c), the
 * public conv_general and the thin wrappers over it (conv1d/2d/3d, the transposed convolutions,
 * numpy's convolve). Layouts are MLX's: input (N, spatial..., C_in), weight (C_out,
 * spatial..., C_in / groups). The derivatives are convolutions again, so they nest. */
#include "backend/cpu/conv.h"
#include "backend/cuda/eval.h"

#include <string.h>

/* "(1,2,3)" of n ints into a compound literal. */
static const char *ints_str(const int *v, int n, char *buf, size_t size)
{
    int64_t w[PNK_CONV_MAX_SPATIAL];
    for (int i = 0; i < n; i++) w[i] = v[i];
    return pnC_shape_str(w, n, buf, size);
}
#define INTS_STR(v, n) ints_str((v), (n), (char[128]){0}, 128)

/* ───────────────────────────── the Convolution primitive ───────────────────────────── */

/* a as dtype t (a itself when it already is; NULL stays NULL). */
static pn_array *cast(pn_array *a, pn_dtype t) { return a && a->dtype != t ? pn_astype(a, t) : a; }

static pn_array *conv_make(pn_array *x, pn_array *w, const pnK_conv_params *p);

/* w of shape (O, K..., Cg) as the weight of the input gradient: (C, K..., Og), group by group
 * (out and in channels swapped within each group). */
static pn_array *weight_for_input_grad(pn_array *w, int groups)
{
    int nd = w->ndim;
    if (groups == 1) return pn_swapaxes(w, 0, -1);
    int64_t s[PNC_MAX_NDIM];
    s[0] = groups;
    s[1] = w->shape[0] / groups;
    for (int i = 1; i < nd; i++) s[i + 1] = w->shape[i];
    pn_array *t = pn_swapaxes(pn_reshape(w, s, nd + 1), 1, -1); /* (G, Cg, K..., Og) */
    return pn_flatten(t, 0, 1);
}

/* x of shape (N, S..., C) as the input of the weight gradient: (Cg, S..., G * N), so that the
 * batch runs over the channels of a group and the groups split its channels. */
static pn_array *input_for_weight_grad(pn_array *x, int groups)
{
    int nd = x->ndim;
    if (groups == 1) return pn_swapaxes(x, 0, -1);
    int64_t s[PNC_MAX_NDIM];
    for (int i = 0; i < nd - 1; i++) s[i] = x->shape[i];
    s[nd - 1] = groups;
    s[nd] = x->shape[nd - 1] / groups;
    pn_array *t = pn_swapaxes(pn_reshape(x, s, nd + 1), 0, -1); /* (Cg, S..., G, N) */
    return pn_flatten(t, -2, -1);
}

/* Cotangents as convolutions (per spatial axis, in the dilated, padded coordinates of the
 * forward pass: input extent I~ = (I - 1) idil + 1, kernel extent K~ = (K - 1) kdil + 1):
 *  - input: the cotangent g (N, O spatial..., C_out) dilated by the stride, correlated with
 *    the flipped, channel-swapped weight at stride idil, padded K~ - 1 - pad_lo before and
 *    I~ - 1 - (O - 1) stride + pad_lo after, which gives exactly I outputs;
 *  - weight: the input (channels as batch) correlated with g (batch as channels) at stride
 *    kdil with kernel dilation stride, which gives exactly K outputs; flipped back when the
 *    forward kernel was flipped.
 * Paddings may come out negative: the kernel crops then. */
static int conv_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_conv_params *p = PNC_PARAMS(node, pnK_conv_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_array *x = in[0], *w = in[1], *g = cot[0];
    int nsp = p->nsp;
    bool empty = x->size == 0 || w->size == 0 || g->size == 0;
    pn_scope_push();
    g = cast(g, x->dtype); /* a cotangent of another dtype */
    bool ok = true;
    for (int a = 0; a < nargs; a++) {
        pn_array *r = NULL;
        if (empty) {
            r = pn_zeros_like(in[argnums[a]]);
        } else if (argnums[a] == 0) {
            pnK_conv_params q = *p;
            for (int i = 0; i < nsp; i++) {
                int64_t In = x->shape[1 + i], K = w->shape[1 + i], O = g->shape[1 + i];
                int64_t kt = (K - 1) * p->kdil[i] + 1, it = (In - 1) * p->idil[i] + 1;
                q.stride[i] = p->idil[i];
                q.idil[i] = p->stride[i];
                q.pad_lo[i] = (int)(kt - 1 - p->pad_lo[i]);
                q.pad_hi[i] = (int)(it - 1 - (O - 1) * p->stride[i] + p->pad_lo[i]);
            }
            q.flip = !p->flip;
            q.role = PNK_CONV_ROLE_INPUT_GRAD;
            r = conv_make(g, weight_for_input_grad(w, p->groups), &q);
        } else if (argnums[a] == 1) {
            pnK_conv_params q = *p;
            int axes[PNK_CONV_MAX_SPATIAL];
            for (int i = 0; i < nsp; i++) {
                int64_t In = x->shape[1 + i], K = w->shape[1 + i], O = g->shape[1 + i];
                int64_t it = (In - 1) * p->idil[i] + 1;
                q.stride[i] = p->kdil[i];
                q.kdil[i] = p->stride[i];
                q.pad_hi[i] = (int)((O - 1) * p->stride[i] + (K - 1) * p->kdil[i] + 1 - it - p->pad_lo[i]);
                axes[i] = 1 + i;
            }
            q.flip = false;
            q.role = PNK_CONV_ROLE_WEIGHT_GRAD;
            r = pn_swapaxes(conv_make(input_for_weight_grad(x, p->groups), pn_swapaxes(g, 0, -1), &q), 0, -1);
            if (p->flip) r = pn_flip(r, axes, nsp);
        }
        ok &= r != NULL;
        grads[a] = r;
    }
    pn_scope_pop_keep(grads, nargs);
    if (!ok) {
        for (int a = 0; a < nargs; a++) pn_release(grads[a]), grads[a] = NULL;
        return -1;
    }
    return 0;
}

/* Linear in each argument: conv(tx, w) + conv(x, tw). */
static int conv_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_conv_params *p = PNC_PARAMS(node, pnK_conv_params);
    pn_scope_push();
    pn_array *r = NULL;
    bool ok = true;
    if (tan[0]) ok &= (r = conv_make(cast(tan[0], in[0]->dtype), in[1], p)) != NULL;
    if (tan[1]) {
        pn_array *t = conv_make(in[0], cast(tan[1], in[1]->dtype), p);
        ok &= (r = r && t ? pn_add(r, t) : t) != NULL;
    }
    out_tan[0] = pnC_scope_return(ok ? r : NULL);
    return ok ? 0 : -1;
}

/* Batching. A mapped input alone folds its batch axis into N. A mapped weight folds into the
 * output channels, ordered (group, batch, channel of group) so that groups still see their
 * own input channels; when the input is mapped too, the batch folds into the channels of both
 * and multiplies the groups. The output is mapped at axis 0 (input alone) or just before its
 * channels. */
static int conv_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    pnK_conv_params q = *PNC_PARAMS(node, pnK_conv_params);
    int nsp = q.nsp, G = q.groups, xa = in_axes[0], wa = in_axes[1];
    pn_scope_push();
    pn_array *x = in[0], *w = in[1], *y = NULL;
    if (wa < 0) {
        int64_t B = x->shape[xa];
        x = pn_flatten(pn_moveaxis(x, xa, 0), 0, 1);
        y = conv_make(x, w, &q);
        if (y) y = pn_unflatten(y, 0, (int64_t[]){B, y->shape[0] / (B ? B : 1)}, 2);
        out_axes[0] = 0;
    } else {
        w = pn_moveaxis(w, wa, 0); /* (B, O, K..., Cg) */
        int64_t B = w ? w->shape[0] : 0, O = w ? w->shape[1] : 0, s[PNC_MAX_NDIM];
        if (xa >= 0) { /* channels (B, C) in x, out channels (B, O), B * G groups */
            x = pn_flatten(pn_moveaxis(x, xa, nsp + 1), nsp + 1, nsp + 2);
            w = pn_flatten(w, 0, 1);
            q.groups = (int)(B * G);
        } else { /* out channels (G, B, O / G) */
            s[0] = B, s[1] = G, s[2] = O / G;
            for (int i = 0; i < nsp + 1; i++) s[3 + i] = w ? w->shape[2 + i] : 0;
            w = pn_flatten(pn_swapaxes(pn_reshape(w, s, nsp + 4), 0, 1), 0, 2);
        }
        y = x && w ? conv_make(x, w, &q) : NULL;
        if (y && xa >= 0) {
            y = pn_unflatten(y, nsp + 1, (int64_t[]){B, O}, 2);
        } else if (y) {
            y = pn_unflatten(y, nsp + 1, (int64_t[]){G, B, O / G}, 3);
            y = pn_flatten(pn_swapaxes(y, nsp + 1, nsp + 2), nsp + 2, nsp + 3);
        }
        out_axes[0] = nsp + 1;
    }
    out[0] = y;
    pn_scope_pop_keep(out, 1);
    return out[0] ? 0 : -1;
}

const pnC_primitive conv_prim = {
    .name = "Convolution",
    .eval = {[PN_CPU] = pnK_conv_eval, [PN_GPU] = PNG_EVAL(pnG_conv_eval)},
    .vjp = conv_vjp,
    .jvp = conv_jvp,
    .vmap = conv_vmap,
};

/* The Convolution node of x and w (same floating dtype, checked ranks and channels) with
 * params p: computes the output shape, failing when a padded axis is shorter than the
 * dilated kernel. */
static pn_array *conv_make(pn_array *x, pn_array *w, const pnK_conv_params *p)
{
    if (!pnC_inputs_ok("conv", 2, (pn_array *[]){x, w})) return NULL;
    int nsp = p->nsp;
    int64_t shape[PNK_CONV_MAX_SPATIAL + 2];
    shape[0] = x->shape[0];
    shape[nsp + 1] = w->shape[0];
    for (int i = 0; i < nsp; i++) {
        int64_t In = x->shape[1 + i], K = w->shape[1 + i];
        int64_t it = In > 0 ? (In - 1) * p->idil[i] + 1 : 0, kt = K > 0 ? (K - 1) * p->kdil[i] + 1 : 0;
        int64_t span = it + p->pad_lo[i] + p->pad_hi[i] - kt;
        if (span < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[conv] Spatial dimensions of input after padding cannot be smaller "
                            "than weight spatial dimensions. Got error at axis %d for input with "
                            "shape %s, padding low %s, padding high %s, and weight of shape %s.",
                            i + 1, PNC_SHAPE_STR(x->shape, x->ndim), INTS_STR(p->pad_lo, nsp),
                            INTS_STR(p->pad_hi, nsp), PNC_SHAPE_STR(w->shape, w->ndim));
        shape[1 + i] = span / p->stride[i] + 1;
    }
    return pnC_make(&conv_prim, p, sizeof *p, 2, (pn_array *[]){x, w}, x->dtype, shape, nsp + 2);
}

/* ───────────────────────────── conv_general ───────────────────────────── */

/* Checks one per-axis argument: every entry at least `min`. */
static bool check_axis_args(const char *what, const int *v, int n, int min)
{
    if (!v) return true;
    for (int i = 0; i < n; i++)
        if (v[i] < min) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[conv] %s sizes must be %s. Got %s %s.", what,
                     min > 0 ? "positive" : "non-negative", what, INTS_STR(v, n));
            return false;
        }
    return true;
}

/* MLX's checks of an input/weight pair for an nsp-d convolution (nsp == 0: take it from the
 * input's rank). Returns nsp, or -1 with an error. */
static int conv_checks(pn_array *x, pn_array *w, int nsp, int groups)
{
    if (nsp == 0) {
        nsp = x->ndim - 2;
        if (nsp < 1 || nsp > PNK_CONV_MAX_SPATIAL)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[conv] Only works for inputs with 1-3 spatial dimensions. The inputs "
                            "must be in the format [N, ..., C_in]. Got input with shape %s.",
                            PNC_SHAPE_STR(x->shape, x->ndim)), -1;
    }
    if (!pnC_is_float(x->dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] Invalid input array with type %s. Convolution currently only "
                        "supports floating point types", pn_dtype_name(x->dtype)), -1;
    if (x->ndim != nsp + 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] Invalid input array with %d dimensions for %dD convolution. "
                        "Expected an array with %d dimensions following the format "
                        "[N, ..., C_in].", x->ndim, nsp, nsp + 2), -1;
    if (w->ndim != nsp + 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] Invalid weight array with %d dimensions for %dD convolution. "
                        "Expected an array with %d dimensions following the format "
                        "[C_out, ..., C_in].", w->ndim, nsp, nsp + 2), -1;
    if (groups < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[conv] The number of groups must be positive, "
                        "got %d.", groups), -1;
    int64_t C = x->shape[nsp + 1], Cg = w->shape[nsp + 1], O = w->shape[0];
    if (C % groups != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] The input channels must be divisible by the number of groups. "
                        "Got input with shape %s and %d groups.", PNC_SHAPE_STR(x->shape, x->ndim),
                        groups), -1;
    if (groups > 1 && O % groups != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] If groups > 1, the output channels must be divisible by the "
                        "number of groups. Got %lld output channels and %d groups.",
                        (long long)O, groups), -1;
    if (C != groups * Cg) {
        if (groups == 1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[conv] Expect the input channels in the input and weight array to "
                            "match but got shapes - input: %s and weight: %s",
                            PNC_SHAPE_STR(x->shape, x->ndim), PNC_SHAPE_STR(w->shape, w->ndim)), -1;
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] Given groups=%d and weights of shape %s, expected to have %lld "
                        "input channels but got %lld input channels instead.", groups,
                        PNC_SHAPE_STR(w->shape, w->ndim), (long long)(groups * Cg), (long long)C), -1;
    }
    return nsp;
}

pn_array *pn_conv_general(pn_array *input, pn_array *weight, const int *stride,
                          const int *padding_lo, const int *padding_hi,
                          const int *kernel_dilation, const int *input_dilation, int groups,
                          bool flip)
{
    if (!pnC_inputs_ok("conv_general", 2, (pn_array *[]){input, weight})) return NULL;
    int nsp = conv_checks(input, weight, 0, groups);
    if (nsp < 0) return NULL;
    if (!check_axis_args("Stride", stride, nsp, 1) ||
        !check_axis_args("Kernel dilation", kernel_dilation, nsp, 1) ||
        !check_axis_args("Input dilation", input_dilation, nsp, 1))
        return NULL;
    pn_dtype dtype = pn_promote_types(input->dtype, weight->dtype);
    if (!pnC_is_float(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[conv] Invalid weight array with type %s. Convolution currently only "
                        "supports floating point types", pn_dtype_name(weight->dtype));
    pnK_conv_params p;
    memset(&p, 0, sizeof p);
    p.nsp = nsp;
    p.groups = groups;
    p.flip = flip;
    bool negative = false;
    for (int i = 0; i < nsp; i++) {
        p.stride[i] = stride ? stride[i] : 1;
        p.kdil[i] = kernel_dilation ? kernel_dilation[i] : 1;
        p.idil[i] = input_dilation ? input_dilation[i] : 1;
        p.pad_lo[i] = padding_lo ? padding_lo[i] : 0;
        p.pad_hi[i] = padding_hi ? padding_hi[i] : 0;
        negative |= p.pad_lo[i] < 0 || p.pad_hi[i] < 0;
    }
    pn_scope_push();
    pn_array *x = cast(input, dtype), *w = cast(weight, dtype);
    if (negative && x) {
        /* MLX crops the (undilated) input by the negative paddings before convolving. */
        int64_t start[PNK_CONV_MAX_SPATIAL + 2] = {0}, stop[PNK_CONV_MAX_SPATIAL + 2];
        for (int d = 0; d < x->ndim; d++) stop[d] = x->shape[d];
        for (int i = 0; i < nsp; i++) {
            if (p.pad_lo[i] < 0) start[1 + i] = -(int64_t)p.pad_lo[i], p.pad_lo[i] = 0;
            if (p.pad_hi[i] < 0) stop[1 + i] += p.pad_hi[i], p.pad_hi[i] = 0;
            if (stop[1 + i] < start[1 + i]) stop[1 + i] = start[1 + i];
        }
        x = pn_slice(x, start, stop, NULL, x->ndim);
    }
    return pnC_scope_return(x && w ? conv_make(x, w, &p) : NULL);
}

/* ───────────────────────────── wrappers ───────────────────────────── */

/* conv1d/2d/3d: an nsp-d convolution with symmetric padding (nsp 0: the input's spatial rank);
 * NULL arrays take defaults. */
static pn_array *conv_nd(int nsp, pn_array *input, pn_array *weight, const int *stride,
                         const int *padding, const int *dilation, int groups)
{
    if (!pnC_inputs_ok("conv", 2, (pn_array *[]){input, weight})) return NULL;
    if (conv_checks(input, weight, nsp, groups) < 0) return NULL;
    return pn_conv_general(input, weight, stride, padding, padding, dilation, NULL, groups, false);
}

pn_array *pn_conv1d(pn_array *input, pn_array *weight, int stride, int padding, int dilation,
                    int groups)
{
    /* MLX: the spatial rank is the input's, the ints apply to every spatial axis */
    int s[PNK_CONV_MAX_SPATIAL] = {stride, stride, stride},
        p[PNK_CONV_MAX_SPATIAL] = {padding, padding, padding},
        d[PNK_CONV_MAX_SPATIAL] = {dilation, dilation, dilation};
    return conv_nd(0, input, weight, s, p, d, groups);
}

pn_array *pn_conv2d(pn_array *input, pn_array *weight, const int *stride, const int *padding,
                    const int *dilation, int groups)
{
    return conv_nd(2, input, weight, stride, padding, dilation, groups);
}

pn_array *pn_conv3d(pn_array *input, pn_array *weight, const int *stride, const int *padding,
                    const int *dilation, int groups)
{
    return conv_nd(3, input, weight, stride, padding, dilation, groups);
}

/* Transposed nsp-d convolution (nsp 0: the input's spatial rank) as MLX builds it: stride 1 over the input dilated by stride,
 * padding K~ - 1 - padding before and K~ - 1 - padding + output_padding after, kernel
 * flipped. */
static pn_array *conv_transpose_nd(int nsp, pn_array *input, pn_array *weight, const int *stride,
                                   const int *padding, const int *dilation,
                                   const int *output_padding, int groups)
{
    if (!pnC_inputs_ok("conv_transpose", 2, (pn_array *[]){input, weight})) return NULL;
    if ((nsp = conv_checks(input, weight, nsp, groups)) < 0) return NULL;
    if (!check_axis_args("Stride", stride, nsp, 1) ||
        !check_axis_args("Kernel dilation", dilation, nsp, 1) ||
        !check_axis_args("Padding", padding, nsp, 0) ||
        !check_axis_args("Output padding", output_padding, nsp, 0))
        return NULL;
    int lo[PNK_CONV_MAX_SPATIAL], hi[PNK_CONV_MAX_SPATIAL];
    for (int i = 0; i < nsp; i++) {
        int d = dilation ? dilation[i] : 1, pad = padding ? padding[i] : 0;
        int kt = 1 + d * (int)(weight->shape[1 + i] - 1);
        lo[i] = kt - pad - 1;
        hi[i] = lo[i] + (output_padding ? output_padding[i] : 0);
    }
    int ones[PNK_CONV_MAX_SPATIAL] = {1, 1, 1};
    return pn_conv_general(input, weight, ones, lo, hi, dilation, stride, groups, true);
}

pn_array *pn_conv_transpose1d(pn_array *input, pn_array *weight, int stride, int padding,
                              int dilation, int output_padding, int groups)
{
    int s[PNK_CONV_MAX_SPATIAL] = {stride, stride, stride},
        p[PNK_CONV_MAX_SPATIAL] = {padding, padding, padding},
        d[PNK_CONV_MAX_SPATIAL] = {dilation, dilation, dilation},
        o[PNK_CONV_MAX_SPATIAL] = {output_padding, output_padding, output_padding};
    return conv_transpose_nd(0, input, weight, s, p, d, o, groups); /* nsp as conv1d's */
}

pn_array *pn_conv_transpose2d(pn_array *input, pn_array *weight, const int *stride,
                              const int *padding, const int *dilation,
                              const int *output_padding, int groups)
{
    return conv_transpose_nd(2, input, weight, stride, padding, dilation, output_padding, groups);
}

pn_array *pn_conv_transpose3d(pn_array *input, pn_array *weight, const int *stride,
                              const int *padding, const int *dilation,
                              const int *output_padding, int groups)
{
    return conv_transpose_nd(3, input, weight, stride, padding, dilation, output_padding, groups);
}

/* numpy.convolve: the longer array is the signal, the shorter the (flipped) kernel; "same"
 * pads an even kernel one less after than before, as MLX. */
pn_array *pn_convolve(pn_array *a, pn_array *v, const char *mode)
{
    if (!pnC_inputs_ok("convolve", 2, (pn_array *[]){a, v})) return NULL;
    if (a->ndim != 1 || v->ndim != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[convolve] Inputs must be 1D.");
    if (a->size == 0 || v->size == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[convolve] Inputs cannot be empty.");
    pn_array *x = a->size < v->size ? v : a, *k = a->size < v->size ? a : v;
    int n = (int)k->size, lo, hi;
    if (mode && !strcmp(mode, "full")) lo = hi = n - 1;
    else if (mode && !strcmp(mode, "valid")) lo = hi = 0;
    else if (mode && !strcmp(mode, "same")) lo = n / 2, hi = n % 2 ? n / 2 : (n / 2 > 0 ? n / 2 - 1 : 0);
    else return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[convolve] Invalid mode.");
    pn_scope_push();
    int64_t s3[3] = {1, -1, 1}, flat = -1;
    pn_array *y = pn_conv_general(pn_reshape(x, s3, 3), pn_reshape(k, s3, 3), NULL, &lo, &hi, NULL,
                                  NULL, 1, true);
    return pnC_scope_return(pn_reshape(y, &flat, 1));
}
