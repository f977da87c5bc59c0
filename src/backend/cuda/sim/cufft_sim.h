/* cufft_sim.h — the simulated cuFFT: exactly the subset of <cufft.h> that fft.cu uses (plans
 * with the advanced data layout, a stream per plan, C2C / R2C / C2R execution, destruction),
 * with cuFFT's names, values and statuses and no CUDA toolkit header. cufft_sim.cpp runs each
 * transform at the call on the host (simulated device memory is host memory) through the CPU
 * FFT's line transform (backend/cpu/fft.h), unnormalized like cuFFT. */
#ifndef PONTE_BACKEND_CUDA_SIM_CUFFT_SIM_H
#define PONTE_BACKEND_CUDA_SIM_CUFFT_SIM_H

#include "backend/cuda/sim/cuda_sim.h"

typedef int cufftHandle;
typedef float cufftReal;
typedef struct {
    float x, y;
} cufftComplex;

typedef enum cufftResult_t {
    CUFFT_SUCCESS = 0,
    CUFFT_INVALID_PLAN = 1,
    CUFFT_ALLOC_FAILED = 2,
    CUFFT_INVALID_TYPE = 3,
    CUFFT_INVALID_VALUE = 4,
    CUFFT_INTERNAL_ERROR = 5,
    CUFFT_EXEC_FAILED = 6,
    CUFFT_SETUP_FAILED = 7,
    CUFFT_INVALID_SIZE = 8,
} cufftResult;

typedef enum cufftType_t {
    CUFFT_R2C = 0x2a,
    CUFFT_C2R = 0x2c,
    CUFFT_C2C = 0x29,
} cufftType;

#define CUFFT_FORWARD (-1)
#define CUFFT_INVERSE 1

/* A plan of batch rank-1 transforms of n[0] points with the advanced layout (inembed and
 * onembed must be non-NULL for the strides to apply, as in cuFFT; their values are not read
 * for rank 1). Only rank 1 is simulated. */
cufftResult cufftPlanMany(cufftHandle *plan, int rank, int *n, int *inembed, int istride,
                          int idist, int *onembed, int ostride, int odist, cufftType type,
                          int batch);
cufftResult cufftSetStream(cufftHandle plan, cudaStream_t stream);
cufftResult cufftDestroy(cufftHandle plan);
/* direction: CUFFT_FORWARD or CUFFT_INVERSE (unnormalized). Out of place or in place. */
cufftResult cufftExecC2C(cufftHandle plan, cufftComplex *idata, cufftComplex *odata,
                         int direction);
cufftResult cufftExecR2C(cufftHandle plan, cufftReal *idata, cufftComplex *odata);
cufftResult cufftExecC2R(cufftHandle plan, cufftComplex *idata, cufftReal *odata);

#endif /* PONTE_BACKEND_CUDA_SIM_CUFFT_SIM_H */
