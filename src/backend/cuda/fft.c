/* fft.c — GPU eval of the FFT primitive (src/ops/fft.c): the input is made row-contiguous on
 * the device (the output buffer itself for complex-to-complex transforms, which then run in
 * place), each axis goes through cuFFT (fft.cu) one after another, and inverse transforms are
 * scaled once at the end. */
#include "backend/cpu/fft.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/fft.h"
#include "core/core.h"

/* (pre, post) extents around axis of a row-contiguous shape. */
static void around(const int64_t *shape, int nd, int axis, int64_t *pre, int64_t *post)
{
    *pre = pnC_shape_size(shape, axis);
    *post = pnC_shape_size(shape + axis + 1, nd - axis - 1);
}

/* C2C passes in place over the given axes of the row-contiguous complex array data. */
static int c2c_passes(const int *axes, int naxes, bool inverse, const int64_t *shape, int nd,
                      void *data, int stream)
{
    for (int i = 0; i < naxes; i++) {
        int64_t pre, post;
        around(shape, nd, axes[i], &pre, &post);
        int rc = pnG_fft_axis(PNK_FFT_C2C, inverse, pre, shape[axes[i]], post, data, data,
                              stream);
        if (rc) return rc;
    }
    return 0;
}

/* See eval.h. */
int pnG_fft_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_fft_params *p = PNC_PARAMS(node, pnK_fft_params);
    pn_array *x = in[0], *o = out[0];
    int nd = o->ndim, last = p->axes[p->naxes - 1], stream = node->stream.index;
    bool inv = p->inverse;
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    void *od = pnC_data(o);
    double scale = 1;
    int rc = 0;
    if (p->kind == PNK_FFT_C2C) {
        int64_t ostr[PNC_MAX_NDIM];
        pnC_row_strides(o->shape, nd, ostr);
        pnG_strided_copy(pnC_data(x), x->strides, x->dtype, od, ostr, o->dtype, o->shape, nd,
                         stream);
        if (pnC_failed()) return -1;
        rc = c2c_passes(p->axes, p->naxes, inv, o->shape, nd, od, stream);
        for (int i = 0; i < p->naxes; i++) scale /= (double)o->shape[p->axes[i]];
    } else if (p->kind == PNK_FFT_R2C) {
        pn_array *t = pnC_row_contiguous(x) ? NULL : pnG_dense_copy(x, stream);
        if (!pnC_row_contiguous(x) && !t) return -1;
        int64_t pre, post;
        around(o->shape, nd, last, &pre, &post);
        rc = pnG_fft_axis(PNK_FFT_R2C, false, pre, x->shape[last], post,
                          pnC_data(t ? t : x), od, stream);
        if (t) pnC_decref(t);
        if (!rc) rc = c2c_passes(p->axes, p->naxes - 1, false, o->shape, nd, od, stream);
    } else {
        /* cuFFT's C2R overwrites its input: always a private copy */
        pn_array *t = pnG_dense_copy(x, stream);
        if (!t) return -1;
        void *td = pnC_data(t);
        rc = c2c_passes(p->axes, p->naxes - 1, true, x->shape, nd, td, stream);
        int64_t pre, post;
        around(o->shape, nd, last, &pre, &post);
        if (!rc) rc = pnG_fft_axis(PNK_FFT_C2R, true, pre, o->shape[last], post, td, od, stream);
        pnC_decref(t);
        for (int i = 0; i + 1 < p->naxes; i++) scale /= (double)x->shape[p->axes[i]];
        scale /= (double)o->shape[last];
    }
    if (rc) return rc;
    if (inv) return pnG_fft_scale(p->kind != PNK_FFT_C2R, o->size, od, scale, stream);
    return 0;
}
