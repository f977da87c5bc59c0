/* sim_internal.h — what the simulator's scheduler (sim.cpp) and runtime (runtime.cpp) share;
 * not for kernel code. */
#ifndef PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H
#define PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H

#include "backend/cuda/sim/cuda_sim.h"

/* Records e (unless cudaSuccess) as the calling host thread's last error. */
void pnsim_record_error(cudaError_t e);
/* Whether s is 0, a special stream or a live stream from cudaStreamCreate*. */
bool pnsim_stream_valid(cudaStream_t s);
/* The dynamic shared memory limit of kernel: its cudaFuncAttributeMaxDynamicSharedMemorySize,
 * 48 KiB when never set. */
size_t pnsim_kernel_smem_limit(const void *kernel);

#define PNSIM_SMEM_DEFAULT ((size_t)48 * 1024)
#define PNSIM_SMEM_OPTIN_MAX ((size_t)227 * 1024) /* an H100's */
/* The opt-in dynamic shared memory limit per block: PONTE_SIM_SMEM_OPTIN bytes when set
 * (clamped to 48 KiB .. PNSIM_SMEM_OPTIN_MAX), else PNSIM_SMEM_OPTIN_MAX. */
size_t pnsim_smem_optin(void);
#define PNSIM_SMEM_OPTIN (pnsim_smem_optin())

#endif /* PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H */
