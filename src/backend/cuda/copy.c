/* copy.c — the device side of the core's copy helpers: pnG_strided_copy and pnG_fill, which
 * pnC_strided_copy and pnK_fill call while a GPU kernel runs (so every primitive built from
 * them runs on the GPU unchanged), and the GPU eval of AsType. Kernels are in copy.cu. */
#include "backend/cuda/copy.h"
#include "backend/cuda/eval.h"

/* See eval.h. Dims merge as in pnC_strided_copy; a merged rank above PNG_MAX_NDIM walks its
 * leading dims on the host, one launch per index of them. */
void pnG_strided_copy(const void *src, const int64_t *src_strides, pn_dtype st, void *dst,
                      const int64_t *dst_strides, pn_dtype dt, const int64_t *shape, int ndim,
                      int stream)
{
    pnC_nditer it;
    const int64_t *strides[2] = {dst_strides, src_strides};
    pnC_nditer_init(&it, ndim, shape, 2, strides);
    if (it.rows == 0 || it.inner == 0) return;
    int host = it.ndim > PNG_MAX_NDIM ? it.ndim - PNG_MAX_NDIM : 0; /* dims walked here */
    pnG_layout L;
    L.ndim = it.ndim - host;
    L.nop = 2;
    L.size = 1;
    for (int d = 0; d < L.ndim; d++) {
        L.shape[d] = it.shape[host + d];
        L.strides[0][d] = it.strides[0][host + d];
        L.strides[1][d] = it.strides[1][host + d];
        L.size *= L.shape[d];
    }
    int64_t count = 1, idx[PNC_MAX_NDIM] = {0};
    for (int d = 0; d < host; d++) count *= it.shape[d];
    size_t ses = pn_dtype_size(st), des = pn_dtype_size(dt);
    for (int64_t c = 0; c < count; c++) {
        int64_t doff = 0, soff = 0;
        for (int d = 0; d < host; d++) {
            doff += idx[d] * it.strides[0][d];
            soff += idx[d] * it.strides[1][d];
        }
        if (pnG_launch_copy(&L, (char *)dst + doff * (int64_t)des, dt,
                            (const char *)src + soff * (int64_t)ses, st, stream))
            return;
        for (int d = host - 1; d >= 0 && ++idx[d] == it.shape[d]; d--) idx[d] = 0;
    }
}

/* See eval.h. */
void pnG_fill(void *dst, const void *value, size_t elem_size, int64_t n, int stream)
{
    pnG_launch_fill(dst, value, elem_size, n, stream);
}

/* AsType: a dense output written by the converting copy (dense inputs take the vectorized
 * conversion kernel). */
int pnG_astype_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pn_array *a = in[0];
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    pnG_strided_copy(pnC_data(a), a->strides, a->dtype, pnC_data(o), o->strides, o->dtype,
                     o->shape, o->ndim, node->stream.index);
    return 0; /* a failed launch recorded an error, which the evaluator reports */
}

/* See eval.h. */
pn_array *pnG_dense_copy(pn_array *x, int stream)
{
    pn_array *t = pnC_new_temp(x->dtype, x->shape, x->ndim);
    if (!t) return NULL;
    pnG_strided_copy(pnC_data(x), x->strides, x->dtype, pnC_data(t), t->strides, t->dtype,
                     x->shape, x->ndim, stream);
    if (pnC_failed()) {
        pnC_decref(t);
        return NULL;
    }
    return t;
}

/* See eval.h. */
int pnG_make_dense(int n, pn_array *const *in, pn_array **dense, int stream)
{
    for (int k = 0; k < n; k++) {
        bool ok = in[k]->size == 0 || pnC_row_contiguous(in[k]);
        dense[k] = ok ? in[k] : pnG_dense_copy(in[k], stream);
        if (!dense[k]) {
            while (k-- > 0)
                if (dense[k] != in[k]) pnC_decref(dense[k]);
            return -1;
        }
    }
    return 0;
}

/* See eval.h. */
void pnG_release_dense(int n, pn_array *const *in, pn_array **dense)
{
    for (int k = 0; k < n; k++)
        if (dense[k] != in[k]) pnC_decref(dense[k]);
}
