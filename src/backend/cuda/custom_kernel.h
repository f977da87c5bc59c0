/* custom_kernel.h — the GPU side of mlx.core.fast.cuda_kernel / precompiled_cuda_kernel
 * (src/ops/custom_kernel.c): the CustomKernel node's eval (custom_kernel.c) and the runtime
 * compilation and launch of user CUDA source (custom_kernel.cu: NVRTC, loaded with dlopen, and
 * the CUDA 12 library API). Plain C that CUDA C++ also reads. */
#ifndef PONTE_BACKEND_CUDA_CUSTOM_KERNEL_H
#define PONTE_BACKEND_CUDA_CUSTOM_KERNEL_H

#include "backend/cuda/gpu.h"

#include <stddef.h>
#include <stdint.h>

struct pnC_node;

#define PNK_KERNEL_MAX_IO 32      /* inputs, and outputs, of one custom kernel */
#define PNK_KERNEL_MAX_SCALARS 16 /* scalar arguments of a precompiled kernel */
#define PNK_KERNEL_MAX_NDIM 10    /* extents of the Shape / Strides arguments (MLX's MAX_NDIM) */
#define PNK_KERNEL_MAX_NDIM_STR "10"
/* which shape arguments follow an input (the body mentions name_shape, name_strides, name_ndim) */
enum { PNK_KERNEL_SHAPE = 1, PNK_KERNEL_STRIDES = 2, PNK_KERNEL_NDIM = 4 };

/* One kernel's code in the process-wide table (src/ops/custom_kernel.c; never freed, as a JIT
 * cache): key (name and hash), the entry symbol, the source (NUL-terminated) or binary. */
typedef struct pnK_kernel_code {
    char *key, *entry, *code;
    size_t len;
    bool precompiled;
} pnK_kernel_code;

/* A CustomKernel node's params: its code, the launch (grid in threads), and per input which
 * shape arguments it passes. Inputs are the nin kernel inputs, then (has_init) one array per
 * output holding the initial value. */
typedef struct pnK_custom_kernel_params {
    const pnK_kernel_code *code;
    int grid[3], block[3];
    int nin, smem;
    bool contiguous, has_init;
    uint8_t shape_info[PNK_KERNEL_MAX_IO];
    int nscalars;
    pn_kernel_arg scalars[PNK_KERNEL_MAX_SCALARS];
} pnK_custom_kernel_params;

#ifdef __cplusplus
extern "C" {
#endif

/* CustomKernel's GPU eval (custom_kernel.c). 0 or -1. */
int pnG_custom_kernel_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Compiles (once per key: the module stays loaded for the process) and launches one kernel:
 * code is CUDA source when precompiled is false (compiled by NVRTC for this device's
 * architecture), else PTX or a cubin of code_len bytes; entry is the kernel's symbol. args
 * are the launch's argument pointers (cudaLaunchKernel's), grid in blocks. 0, or -1 with an
 * error (PN_ERR_BACKEND with NVRTC's log when the source does not compile, or when runtime
 * compilation is not available: no NVRTC library, or the simulated GPU). */
int pnG_custom_kernel_launch(const char *key, const char *code, size_t code_len, bool precompiled,
                             const char *entry, void **args, const unsigned grid[3],
                             const unsigned block[3], unsigned smem, int stream);

/* Compiles a kernel Ponte generated (CUDA source that includes Ponte's own headers, read from
 * the library's embedded copies) with NVRTC for sm_<sm>, without loading it: needs NVRTC but
 * no GPU (the tests check generated sources with it). Returns the cubin (release with free())
 * with its size in *len, or NULL with an error (NVRTC's log when the source does not compile;
 * NVRTC missing). sm < 0: the PTX text for compute_<-sm> instead (NUL-terminated; *len
 * counts the NUL). name: the source's name in messages. */
char *pnG_rtc_compile(const char *name, const char *source, int sm, size_t *len);

/* A generated kernel, loaded (valid for the life of the process). */
typedef struct pnG_rtc_kernel pnG_rtc_kernel;

/* pnG_custom_kernel_launch for a kernel Ponte generated (as pnG_rtc_compile compiles it), whose
 * one parameter is the param_size bytes at param. *kernel: the kernel when the caller kept it
 * from an earlier launch, else NULL, and then the kernel of key (keys of generated kernels
 * start with "ponte:") is found or compiled from source, and stored there. 0, or -1 with an
 * error. The parameter's unused bytes must be zero: the simulated launch checks each 8-byte
 * word of it as a pointer the kernel may read. The simulated GPU builds the source with the host C++ compiler when
 * PONTE_SIM_JIT=1 (custom_kernel.cu) and refuses otherwise. */
int pnG_rtc_launch(pnG_rtc_kernel **kernel, const char *key, const char *source, const char *entry,
                   const void *param, size_t param_size, const unsigned grid[3], const unsigned block[3],
                   unsigned smem, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_CUSTOM_KERNEL_H */
