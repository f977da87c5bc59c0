/* elementwise.h — launchers of the GPU elementwise kernels (elementwise_*.cu), called by their C
 * glue (elementwise.c): one operand descriptor for every arity, an op number from the CPU
 * kernels' tables (backend/cpu/elementwise.h) and the node's pnK_ew_params. Plain C. */
#ifndef PONTE_BACKEND_CUDA_ELEMENTWISE_H
#define PONTE_BACKEND_CUDA_ELEMENTWISE_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pnK_ew_params;

/* The operands of one elementwise launch, all device memory. out has n elements, row-major.
 * flat: every input is dense in out's order (element i at in[k][i]) or, with scalar[k], one
 * element broadcast to all; else layout is the strided walk (output first, then the inputs
 * in order; pnG_make_layout). */
typedef struct pnG_ew_args {
    int64_t n;
    void *out;
    const void *in[PNG_MAX_OPS - 1];
    bool flat;
    bool scalar[PNG_MAX_OPS - 1];
    pnG_layout layout;
    int stream; /* Ponte stream index */
} pnG_ew_args;

/* out = op(in[0]) (pnK_unary_op), inputs of dtype t, on a->stream; prm: the node's params.
 * With a == NULL only answers whether (op, t) has a kernel. Returns 0, -1 with an error, or
 * PNG_UNSUPPORTED when (op, t) has no kernel (nothing launched). */
int pnG_ew_unary(int op, const struct pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a);
/* out = op(in[0], in[1]) (pnK_binary_op); as pnG_ew_unary. */
int pnG_ew_binary(int op, const struct pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a);
/* out = in[0] ? in[1] : in[2]: in[0] bool, in[1], in[2] and out of dtype t (op and prm are
 * ignored: the signature is the others'). As pnG_ew_unary. */
int pnG_ew_where(int op, const struct pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_ELEMENTWISE_H */
