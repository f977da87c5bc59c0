/* sim_internal.h — what the simulator's scheduler (sim.cpp) and runtime (runtime.cpp) share;
 * not for kernel code. */
#ifndef PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H
#define PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H

#include <utility>

#include "backend/cuda/sim/cuda_sim.h"

/* Records e (unless cudaSuccess) as the calling host thread's last error. */
void pnsim_record_error(cudaError_t e);
/* Whether s is 0, a special stream or a live stream from cudaStreamCreate*. */
bool pnsim_stream_valid(cudaStream_t s);
/* The calling host thread's current device (cudaSetDevice's; 0 until set). */
int pnsim_current_device(void);
/* Makes the current device's primary context (once): what CUDA does at cudaSetDevice (since
 * CUDA 12) and at the first call that needs one (allocations, copies, sets, streams, events,
 * launches, synchronizations); pnsim_device_has_context reports it. */
void pnsim_use_context(void);
/* The device stream s belongs to: the one current at its creation; the current device for 0
 * and the special streams; -1 when s is neither of those nor a live stream. */
int pnsim_stream_device(cudaStream_t s);
/* Whether work may be queued on s now: s is live and belongs to the current device (real CUDA
 * fails work on another device's stream with cudaErrorInvalidResourceHandle). */
bool pnsim_stream_here(cudaStream_t s);
/* Whether a library handle (or plan) created on device dev may run work on stream s now: dev
 * is the current device and s a live stream of dev. */
bool pnsim_library_device_ok(int dev, cudaStream_t s);
/* Whether PONTE_SIM_ASYNC (the asynchronous mode) is on. */
bool pnsim_async(void);
/* Whether stream is capturing (cudaStreamBeginCapture): its work is recorded through
 * pnsim_submit, not run, also in the synchronous mode. */
bool pnsim_capturing(cudaStream_t stream);
/* Under PONTE_SIM_ASYNC: queues run(ctx) (its error is reported by the call that runs it;
 * drop(ctx) follows, also when dropped at exit) on stream, a live one of the current device,
 * or for the null and special streams runs the device's pending work and then it at once.
 * cudaSuccess, or an error of work that ran (recorded). */
cudaError_t pnsim_submit(cudaStream_t stream, cudaError_t (*run)(void *ctx),
                         void (*drop)(void *ctx), void *ctx);
/* A library stand-in's check before a routine runs work with handle (a struct holding the
 * device it was created on, `dev`, and its stream, `stream`): not_initialized without a
 * handle, exec_failed when pnsim_library_device_ok refuses it, else ok. */
template <typename H, typename S>
static inline S pnsim_handle_ready(const H *handle, S ok, S not_initialized, S exec_failed)
{
    if (!handle) return not_initialized;
    return pnsim_library_device_ok(handle->dev, handle->stream) ? ok : exec_failed;
}
/* Runs a library routine's computation, work() (a callable returning the library's status S,
 * ok when it succeeded), in stream order on stream (the handle's, checked by
 * pnsim_library_device_ok): at the call in the synchronous mode, returning its status; under
 * PONTE_SIM_ASYNC, or while stream is capturing, queued like a kernel (pnsim_submit),
 * returning ok, a status other than ok being reported when it runs as
 * cudaErrorLaunchFailure (an asynchronous failure). work is
 * moved to the heap, so it must hold by value what it reads from host memory (scalars passed
 * by host pointer, descriptors, plans: the caller may free them after the call, as the real
 * libraries allow); device memory it reads when it runs. */
template <typename S, typename F> S pnsim_library_run(cudaStream_t stream, S ok, F &&work)
{
    if (!pnsim_async() && !pnsim_capturing(stream)) return work();
    auto run = [ok, w = std::forward<F>(work)]() mutable {
        return w() == ok ? cudaSuccess : cudaErrorLaunchFailure;
    };
    typedef decltype(run) R;
    pnsim_submit(
        stream, [](void *p) { return (*static_cast<R *>(p))(); },
        [](void *p) { delete static_cast<R *>(p); }, new R(std::move(run)));
    return ok;
}
/* What a queued library routine does to its workspace [p, p + n) when it runs under
 * PONTE_SIM_ASYNC: fills its first and last 256 bytes with 0xCD (the routine's scratch), so
 * that a workspace freed and reused before the routine ran shows as garbage in its new owner;
 * false (with a line on stderr) when the range is no longer device memory. True otherwise,
 * and always in the synchronous mode or for n = 0. */
bool pnsim_library_scratch(void *p, size_t n);
/* Whether [p, p + n) lies in one live device allocation (cudaMalloc or a pool's); also
 * declared for C in nccl_sim.h. */
extern "C" bool pnsim_is_device_memory(const void *p, size_t n);
/* The dynamic shared memory limit of kernel on the current device: its
 * cudaFuncAttributeMaxDynamicSharedMemorySize there, 48 KiB when never set. */
size_t pnsim_kernel_smem_limit(const void *kernel);

#define PNSIM_SMEM_DEFAULT ((size_t)48 * 1024)
/* The current device's opt-in dynamic shared memory limit per block: its architecture's
 * (PONTE_SIM_ARCH), lowered to PONTE_SIM_SMEM_OPTIN bytes when that is set and smaller (not
 * below PNSIM_SMEM_DEFAULT). */
size_t pnsim_smem_optin(void);

#endif /* PONTE_BACKEND_CUDA_SIM_SIM_INTERNAL_H */
