/* cudnn.h — convolutions through cuDNN (cudnn.c), loaded at run time: native builds dlopen
 * libcudnn on first use (no link-time dependency; absent or PONTE_CUDNN=0 means every
 * convolution keeps the im2col path), the simulated build calls sim/cudnn_sim.cpp. The
 * Convolution eval (conv.c) maps its nodes onto the three problems below. Plain C. */
#ifndef PONTE_BACKEND_CUDA_CUDNN_H
#define PONTE_BACKEND_CUDA_CUDNN_H

#include "ponte.h"

#include <stdbool.h>
#include <stdint.h>

/* The three cuDNN convolution entry points. */
typedef enum pnG_cudnn_op {
    PNG_CUDNN_FORWARD = 0,       /* y = conv(x, w) */
    PNG_CUDNN_BACKWARD_DATA = 1, /* x = the adjoint of conv(., w) applied to y */
    PNG_CUDNN_BACKWARD_FILTER = 2, /* w = the adjoint of conv(x, .) applied to y */
    PNG_CUDNN_NOPS = 3,
} pnG_cudnn_op;

/* One problem, always described by its forward convolution: x (N, in..., C) and y (N, out...,
 * K) packed NHWC, w (K, filt..., C / G) packed KRSC; per spatial axis (nsp of them, 2 or 3)
 * out = (in + 2 pad - ((filt - 1) dil + 1)) / stride + 1. flip: the filter reversed along
 * every spatial axis (CUDNN_CONVOLUTION), else cross-correlation. Zero the struct before
 * filling it (it is the algorithm cache's key). */
typedef struct pnG_cudnn_conv {
    int op; /* pnG_cudnn_op */
    int dtype; /* pn_dtype: float16, bfloat16, float32 or float64 */
    int nsp;
    int N, C, K, G;
    int in[3], filt[3], out[3];
    int pad[3], stride[3], dil[3];
    int flip;
} pnG_cudnn_conv;

/* Whether cuDNN is usable: loaded (on the first call), and not disabled by PONTE_CUDNN=0 or
 * pnG_cudnn_set_enabled. */
bool pnG_cudnn_available(void);

/* Runs problem p on Ponte stream `stream`: FORWARD reads x, w and writes y; BACKWARD_DATA
 * reads w, y and writes x; BACKWARD_FILTER reads x, y and writes w (device pointers, packed
 * as pnG_cudnn_conv says; the output is overwritten, beta 0). Returns 0; PNG_UNSUPPORTED
 * when cuDNN is unavailable or rejects the problem (nothing written: the caller takes
 * another path; remembered per problem, and said on stderr with PONTE_CUDNN_DEBUG=1); -1
 * with an error (out of device memory for the workspace). */
int pnG_cudnn_run(const pnG_cudnn_conv *p, void *x, void *w, void *y, int stream);

/* Test hooks: enabled 1 / 0 overrides PONTE_CUDNN, -1 goes back to it. */
void pnG_cudnn_set_enabled(int enabled);
/* Successful runs of op (a pnG_cudnn_op) since the process started. */
int64_t pnG_cudnn_count(int op);
/* One line on the library: "cuDNN <version> (<library>)", "simulated cuDNN", or why it is
 * not loaded. */
const char *pnG_cudnn_describe(void);

#endif /* PONTE_BACKEND_CUDA_CUDNN_H */
