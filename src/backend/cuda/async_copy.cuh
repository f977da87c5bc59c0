/* async_copy.cuh — asynchronous global-to-shared copies (cp.async, sm_80 and later), for
 * kernels that stage the next tile while they compute on the current one (attention.cu's
 * forward). The contract is PTX's: a thread's copies land in shared memory only once a
 * png_cp_async_wait<N> of that same thread has completed their group; other threads see them
 * after a __syncthreads that follows that wait. Under PONTE_GPU_SIM (cuda_sim.h) the copy is
 * made at that wait and the destination holds 0xCD bytes until then, so a read that comes too
 * early sees garbage, not stale data that might pass. */
#ifndef PONTE_BACKEND_CUDA_ASYNC_COPY_CUH
#define PONTE_BACKEND_CUDA_ASYNC_COPY_CUH

#include "backend/cuda/common.cuh"

#include <stdint.h>

#ifdef PONTE_GPU_SIM
void pnsim_record_error(cudaError_t e); /* runtime.cpp: the launch's error */

/* Starts the copy of the 16 bytes at src (global memory) into dst (shared memory); both
 * 16-byte aligned, else the launch's error (the device's misaligned-address fault). */
static inline void png_cp_async16(void *dst, const void *src)
{
    if ((uintptr_t)dst % 16 || (uintptr_t)src % 16) {
        fprintf(stderr, "pnsim: cp.async of 16 bytes from %p to %p breaks the 16-byte alignment\n", src, dst);
        pnsim_record_error(cudaErrorMisalignedAddress);
        return;
    }
    pnsim_cp_async(dst, src, 16);
}

/* Closes the thread's group of copies started since its last commit. */
static inline void png_cp_async_commit(void) { pnsim_cp_async_commit(); }

/* Waits until at most N of the thread's committed groups are still in flight. */
template <int N> static inline void png_cp_async_wait(void) { pnsim_cp_async_wait(N); }

#else /* the device */

__device__ __forceinline__ void png_cp_async16(void *dst, const void *src)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(src) : "memory");
}

__device__ __forceinline__ void png_cp_async_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N> __device__ __forceinline__ void png_cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

#endif /* PONTE_GPU_SIM */

#endif /* PONTE_BACKEND_CUDA_ASYNC_COPY_CUH */
