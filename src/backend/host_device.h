/* host_device.h — PNK_HD, the qualifier of helpers that the CPU kernels and the CUDA kernels
 * (nvcc or the simulator) share from one header: static inline C for the CPU, __host__
 * __device__ inline in .cu files. */
#ifndef PONTE_BACKEND_HOST_DEVICE_H
#define PONTE_BACKEND_HOST_DEVICE_H

#if defined(__CUDACC__) || defined(PONTE_BACKEND_CUDA_SIM_CUDA_SIM_H)
#define PNK_HD __host__ __device__ inline
#else
#define PNK_HD static inline
#endif

#endif /* PONTE_BACKEND_HOST_DEVICE_H */
