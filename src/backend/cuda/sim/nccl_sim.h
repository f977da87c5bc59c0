/* nccl_sim.h — the subset of NCCL's API (<nccl.h>, version 2) that src/distributed/nccl.c
 * uses, with NCCL's names, enum values and types, and no CUDA header (plain C and C++). The
 * simulated build links nccl_sim.c's stand-ins, which run each collective through the host
 * backend (ring.c / mpi.c) of the communicator it was bound to; the native build only takes
 * the types from here and fills its function table with dlsym from libnccl at run time, so it
 * needs neither NCCL's header nor its library to build. */
#ifndef PONTE_BACKEND_CUDA_SIM_NCCL_SIM_H
#define PONTE_BACKEND_CUDA_SIM_NCCL_SIM_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
    ncclNumResults = 8,
} ncclResult_t;

typedef enum {
    ncclInt8 = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6,
    ncclFloat32 = 7,
    ncclFloat64 = 8,
    ncclBfloat16 = 9, /* NCCL 2.10 and later */
    ncclNumTypes = 12,
} ncclDataType_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef struct ncclComm *ncclComm_t;
typedef struct CUstream_st *pnsim_nccl_stream_t; /* cudaStream_t */

const char *ncclGetErrorString(ncclResult_t result);
/* The last error's details (NCCL 2.13 and later, whose comm argument is unused; optional in nccl.c). */
const char *ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclGetVersion(int *version);
ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, pnsim_nccl_stream_t stream);
ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, pnsim_nccl_stream_t stream);
ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               pnsim_nccl_stream_t stream);
ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, pnsim_nccl_stream_t stream);
ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, pnsim_nccl_stream_t stream);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);

#ifdef PONTE_GPU_SIM
/* The simulator's own calls. The host communicator (a pnD_backend and one of its
 * communicators) that the calling thread's next ncclCommInitRank runs its collectives over:
 * nccl.c binds it before each ncclCommInitRank (a real NCCL finds its peers through the id). */
void pnsim_nccl_bind(const void *backend, void *host_comm);
/* From the simulated runtime (runtime.cpp): whether [p, p + n) lies inside one live device
 * allocation (not pinned host memory), and whether s is a usable stream (under
 * PONTE_SIM_ASYNC it first runs s's pending work: collectives run at the call, nccl_sim.c says
 * why). */
bool pnsim_is_device_memory(const void *p, size_t n);
bool pnsim_stream_ok(pnsim_nccl_stream_t s);
#endif

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_SIM_NCCL_SIM_H */
