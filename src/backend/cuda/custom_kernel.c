/* custom_kernel.c — GPU eval of CustomKernel (src/ops/custom_kernel.c): allocates the outputs
 * (copying the initial values in when the call gave one), makes row-contiguous copies of the
 * inputs when the kernel asks for them, lays out the launch arguments in the generated
 * signature's order (input, its shape / strides / ndim, ..., outputs, scalars) and launches
 * through custom_kernel.cu. */
#include "backend/cuda/custom_kernel.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <string.h>

typedef struct { int32_t v[PNK_KERNEL_MAX_NDIM]; } kernel_shape;
typedef struct { int64_t v[PNK_KERNEL_MAX_NDIM]; } kernel_strides;

/* See custom_kernel.h. */
int pnG_custom_kernel_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_custom_kernel_params *p = PNC_PARAMS(node, pnK_custom_kernel_params);
    const int stream = node->stream.index, nin = p->nin, nout = node->nout;
    for (int j = 0; j < nout; j++)
        if (pnC_alloc_output(out[j])) return -1;
    if (p->has_init) { /* the full arrays after the inputs: dense copies into the outputs */
        pn_array *init[PNK_KERNEL_MAX_IO];
        if (pnG_make_dense(nout, in + nin, init, stream)) return -1;
        int rc = 0;
        for (int j = 0; j < nout && rc == 0; j++)
            rc = pnG_copy_device(pnC_data(out[j]), pnC_data(init[j]),
                                 (size_t)out[j]->size * pn_dtype_size(out[j]->dtype), stream);
        pnG_release_dense(nout, in + nin, init);
        if (rc) return -1;
    }
    pn_array *x[PNK_KERNEL_MAX_IO];
    if (p->contiguous) {
        if (pnG_make_dense(nin, in, x, stream)) return -1;
    } else {
        for (int i = 0; i < nin; i++) x[i] = in[i];
    }
    void *ptrs[2 * PNK_KERNEL_MAX_IO], *args[5 * PNK_KERNEL_MAX_IO + PNK_KERNEL_MAX_SCALARS];
    kernel_shape shapes[PNK_KERNEL_MAX_IO];
    kernel_strides strides[PNK_KERNEL_MAX_IO];
    int ndims[PNK_KERNEL_MAX_IO], na = 0, rc = 0;
    for (int i = 0; i < nin; i++) {
        ptrs[i] = pnC_data(x[i]);
        args[na++] = &ptrs[i];
        if (p->shape_info[i] && x[i]->ndim > PNK_KERNEL_MAX_NDIM) {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Input %d has %d dimensions; the shape "
                         "arguments hold at most %d.", i, x[i]->ndim, PNK_KERNEL_MAX_NDIM);
            rc = -1;
            break;
        }
        memset(&shapes[i], 0, sizeof shapes[i]);
        memset(&strides[i], 0, sizeof strides[i]);
        for (int d = 0; d < x[i]->ndim && d < PNK_KERNEL_MAX_NDIM; d++)
            shapes[i].v[d] = (int32_t)x[i]->shape[d], strides[i].v[d] = x[i]->strides[d];
        ndims[i] = x[i]->ndim;
        if (p->shape_info[i] & PNK_KERNEL_SHAPE) args[na++] = &shapes[i];
        if (p->shape_info[i] & PNK_KERNEL_STRIDES) args[na++] = &strides[i];
        if (p->shape_info[i] & PNK_KERNEL_NDIM) args[na++] = &ndims[i];
    }
    for (int j = 0; j < nout; j++) {
        ptrs[nin + j] = pnC_data(out[j]);
        args[na++] = &ptrs[nin + j];
    }
    union { int32_t i; bool b; float f; } scalars[PNK_KERNEL_MAX_SCALARS];
    for (int s = 0; s < p->nscalars; s++) {
        const pn_kernel_arg *a = &p->scalars[s];
        if (a->kind == PN_KERNEL_ARG_BOOL) scalars[s].b = a->i != 0;
        else if (a->kind == PN_KERNEL_ARG_FLOAT) scalars[s].f = (float)a->f;
        else scalars[s].i = (int32_t)a->i;
        args[na++] = &scalars[s];
    }
    unsigned grid[3], block[3];
    for (int d = 0; d < 3; d++) {
        block[d] = (unsigned)p->block[d];
        grid[d] = (unsigned)((p->grid[d] + p->block[d] - 1) / p->block[d]);
    }
    if (rc == 0)
        rc = pnG_custom_kernel_launch(p->code->key, p->code->code, p->code->len, p->code->precompiled,
                                      p->code->entry, args, grid, block, (unsigned)p->smem, stream);
    if (p->contiguous) pnG_release_dense(nin, in, x);
    return rc;
}
