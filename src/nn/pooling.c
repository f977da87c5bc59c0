/* pooling.c — mlx.nn's max and average pooling (1-, 2- and 3-d, layout (N, spatial..., C)) as
 * compositions of public ops: pad, then the windows as a view (a reshape when they tile the
 * input exactly, else as_strided), then max or mean over the window axes. Gradients come from
 * those ops. */
#include "core/core.h"

#include <math.h>

#define MAX_SPATIAL 3

/* The padding value of max pooling: -inf for floats, the lowest value for integers. */
static pn_array *lowest_value(pn_dtype t)
{
    switch (t) {
    case PN_BOOL:
    case PN_UINT8:
    case PN_UINT16:
    case PN_UINT32:
    case PN_UINT64: return pn_scalar_int(0, t);
    case PN_INT8: return pn_scalar_int(INT8_MIN, t);
    case PN_INT16: return pn_scalar_int(INT16_MIN, t);
    case PN_INT32: return pn_scalar_int(INT32_MIN, t);
    case PN_INT64: return pn_scalar_int(INT64_MIN, t);
    default: return pn_scalar(-INFINITY, t);
    }
}

/* nsp-d pooling of x with per-axis kernel, stride (NULL: kernel) and padding (NULL: 0). */
static pn_array *pool(const char *name, bool is_max, int nsp, pn_array *x, const int *kernel,
                      const int *stride, const int *padding)
{
    if (!pnC_inputs_ok(name, 1, &x)) return NULL;
    if (x->ndim != nsp + 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Expected an input with %d dimensions (N, %d spatial, C), got shape "
                        "%s.", name, nsp + 2, nsp, pnC_shape_str(x->shape, x->ndim, (char[256]){0}, 256));
    if (!kernel) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] kernel_size is NULL.", name);
    int k[MAX_SPATIAL], s[MAX_SPATIAL], p[MAX_SPATIAL];
    bool padded = false, tiled = true;
    int64_t out[MAX_SPATIAL];
    for (int i = 0; i < nsp; i++) {
        k[i] = kernel[i];
        s[i] = stride ? stride[i] : k[i];
        p[i] = padding ? padding[i] : 0;
        if (k[i] < 1 || s[i] < 1 || p[i] < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] kernel_size and stride must be positive and padding "
                            "non-negative, got kernel_size %d, stride %d and padding %d along "
                            "spatial axis %d.", name, k[i], s[i], p[i], i);
        int64_t n = x->shape[1 + i] + 2 * (int64_t)p[i];
        if (n < k[i])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The kernel size %d is larger than the padded input (%lld) along "
                            "spatial axis %d.", name, k[i], (long long)n, i);
        out[i] = (n - k[i]) / s[i] + 1;
        padded |= p[i] > 0;
        tiled &= s[i] == k[i] && n % k[i] == 0;
    }
    pn_scope_push();
    if (padded) {
        int axes[MAX_SPATIAL];
        int64_t lo[MAX_SPATIAL];
        for (int i = 0; i < nsp; i++) axes[i] = 1 + i, lo[i] = p[i];
        x = pn_pad(x, axes, lo, lo, nsp, is_max ? lowest_value(x->dtype) : NULL, PN_PAD_CONSTANT);
        if (!x) return pnC_scope_return(NULL);
    }
    int wax[MAX_SPATIAL]; /* the window axes to reduce */
    pn_array *win;
    if (tiled) { /* (N, out0, k0, out1, k1, ..., C) */
        int64_t shape[2 * MAX_SPATIAL + 2];
        shape[0] = x->shape[0];
        for (int i = 0; i < nsp; i++) shape[1 + 2 * i] = out[i], shape[2 + 2 * i] = k[i], wax[i] = 2 + 2 * i;
        shape[2 * nsp + 1] = x->shape[nsp + 1];
        win = pn_reshape(x, shape, 2 * nsp + 2);
    } else { /* (N, out..., k..., C) over the row-major elements of x */
        int64_t shape[2 * MAX_SPATIAL + 2], strides[2 * MAX_SPATIAL + 2], rs[MAX_SPATIAL + 2];
        pnC_row_strides(x->shape, x->ndim, rs);
        shape[0] = x->shape[0], strides[0] = rs[0];
        for (int i = 0; i < nsp; i++) {
            shape[1 + i] = out[i], strides[1 + i] = rs[1 + i] * s[i];
            shape[1 + nsp + i] = k[i], strides[1 + nsp + i] = rs[1 + i];
            wax[i] = 1 + nsp + i;
        }
        shape[2 * nsp + 1] = x->shape[nsp + 1], strides[2 * nsp + 1] = 1;
        win = pn_as_strided(x, shape, strides, 2 * nsp + 2, 0);
    }
    pn_array *y = is_max ? pn_max(win, wax, nsp, false) : pn_mean(win, wax, nsp, false);
    return pnC_scope_return(y);
}

/* 1-d forms: stride 0 means kernel_size. */
pn_array *pn_nn_max_pool1d(pn_array *x, int kernel_size, int stride, int padding)
{
    return pool("max_pool1d", true, 1, x, &kernel_size, stride ? &stride : NULL, &padding);
}

pn_array *pn_nn_avg_pool1d(pn_array *x, int kernel_size, int stride, int padding)
{
    return pool("avg_pool1d", false, 1, x, &kernel_size, stride ? &stride : NULL, &padding);
}

pn_array *pn_nn_max_pool2d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding)
{
    return pool("max_pool2d", true, 2, x, kernel_size, stride, padding);
}

pn_array *pn_nn_avg_pool2d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding)
{
    return pool("avg_pool2d", false, 2, x, kernel_size, stride, padding);
}

pn_array *pn_nn_max_pool3d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding)
{
    return pool("max_pool3d", true, 3, x, kernel_size, stride, padding);
}

pn_array *pn_nn_avg_pool3d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding)
{
    return pool("avg_pool3d", false, 3, x, kernel_size, stride, padding);
}
