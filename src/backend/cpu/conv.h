/* conv.h — the CPU kernel of the Convolution primitive (conv.c): im2col into a bounded scratch
 * buffer, then one GEMM per group through pnK_gemm; 1x1 convolutions go straight to the GEMM.
 * The params struct is what src/ops/conv.c hands the kernel. */
#ifndef PONTE_BACKEND_CPU_CONV_H
#define PONTE_BACKEND_CPU_CONV_H

#include "backend/conv_geom.h"
#include "core/core.h"

/* Most spatial axes a convolution has (MLX: 1, 2 or 3). */
#define PNK_CONV_MAX_SPATIAL 3

/* Convolution over nsp spatial axes. Input (N, in spatial..., C), weight (O, kernel spatial...,
 * C / groups), output (N, out spatial..., O), all of one floating dtype. Per spatial axis i:
 * the input is dilated by idil[i] (idil - 1 zeros between elements), padded with pad_lo[i] /
 * pad_hi[i] zeros (negative values crop the dilated input), and the kernel, dilated by
 * kdil[i], slides with stride[i]; flip reverses the kernel along every spatial axis. Output
 * channel o of group g = o / (O / groups) reads input channels [g C/groups, (g+1) C/groups). */
typedef struct pnK_conv_params {
    int nsp;
    int stride[PNK_CONV_MAX_SPATIAL];
    int pad_lo[PNK_CONV_MAX_SPATIAL];
    int pad_hi[PNK_CONV_MAX_SPATIAL];
    int kdil[PNK_CONV_MAX_SPATIAL];
    int idil[PNK_CONV_MAX_SPATIAL];
    int groups;
    bool flip;
    /* A hint for the GPU eval, never part of the meaning (the CPU ignores it): which
     * derivative of a forward convolution this node computes (conv_vjp sets it), so the CUDA
     * backend can run it as cuDNN's backward pass. Zero (forward) for every other node. */
    uint8_t role;
} pnK_conv_params;

/* Values of pnK_conv_params.role. */
enum { PNK_CONV_ROLE_FORWARD = 0, PNK_CONV_ROLE_INPUT_GRAD = 1, PNK_CONV_ROLE_WEIGHT_GRAD = 2 };

/* The geometry of the Convolution of x by w into o under params p (conv_geom.h). */
void pnK_conv_geom_init(pnK_conv_geom *g, const pnK_conv_params *p, const pn_array *x,
                        const pn_array *w, const pn_array *o);

/* Eval function (pnC_eval_fn) of Convolution: in[0] the input, in[1] the weight (any strides),
 * out[0] gets a fresh row-contiguous buffer. Returns 0 or -1 with an error (out of memory). */
int pnK_conv_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_CONV_H */
