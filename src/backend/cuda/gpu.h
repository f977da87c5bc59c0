/* gpu.h — the boundary between Ponte's C core and its CUDA backend. Plain C, readable from C,
 * CUDA C++ (nvcc) and the simulated runtime (g++ with sim/cuda_sim.h), so it never includes
 * core.h (only core/jit.h, written for both). The core calls the runtime half (device
 * detection, device memory, copies, streams); the C glue of each primitive
 * (src/backend/cuda/<family>.c, which does include core.h) calls the launchers that the .cu
 * files define, passing raw pointers and pnG_layout descriptors.
 *
 * Every function returns 0 or -1 with an error set through pn_set_error (kind PN_ERR_BACKEND,
 * or PN_ERR_OUT_OF_MEMORY), unless its contract says otherwise. Streams are Ponte's stream
 * indices (pn_stream.index); the runtime maps each to a CUDA stream of its own. */
#ifndef PONTE_BACKEND_CUDA_GPU_H
#define PONTE_BACKEND_CUDA_GPU_H

#include "ponte.h"
#include "core/jit.h" /* plain C and C++ too: generated kernels' cache, builds and tables */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* From the CPU backend (backend/cpu/copy.c): a host memcpy split over the OpenMP threads for
 * large copies (the pinned staging of host <-> device copies). */
void pnK_memcpy(void *dst, const void *src, size_t n);

/* Most dimensions a GPU kernel walks after merging the dimensions that are contiguous for
 * every operand (pnC_nditer does the merging). The glue of an op whose merged rank is larger
 * returns PNG_UNSUPPORTED and the CPU kernel runs instead. */
#define PNG_MAX_NDIM 10
/* Most operands of one strided kernel (output first). */
#define PNG_MAX_OPS 4

/* A return value of a GPU eval function (besides 0 and -1): this case has no GPU kernel
 * (a dtype, a rank, a mode); the core runs the CPU kernel over host copies instead, with no
 * error recorded. PONTE_GPU_STRICT=1 turns it into an error (the conformance test uses it). */
#define PNG_UNSUPPORTED 1

/* Shape and per-operand element strides of a strided walk, dims merged, row-major order:
 * dim ndim-1 varies fastest. ndim == 0 is one element. */
typedef struct pnG_layout {
    int ndim, nop;
    int64_t size; /* product of shape */
    int64_t shape[PNG_MAX_NDIM];
    int64_t strides[PNG_MAX_OPS][PNG_MAX_NDIM];
} pnG_layout;

/* ───────────────────────────── runtime (runtime.cu) ───────────────────────────── */

/* Whether a usable GPU is present; when not, *reason (may be NULL) names why: no driver, no
 * device, compute capability too old, built without the CUDA backend. Cheap after the first
 * call. */
bool pnG_available(const char **reason);
/* True when the backend runs on the simulated runtime (src/backend/cuda/sim). */
bool pnG_simulated(void);
/* The 16-byte UUID of the GPU this process uses, which tells whether two processes share one
 * (NCCL needs a GPU per rank): the calling thread's current one. On the simulator, when
 * PONTE_SIM_GPU_UUID is set it names the machine, and CUDA device d's UUID is its first 12
 * bytes and "#d" (processes given the same name are ranks of one machine: those on the same
 * device share a GPU); else the process id's (a GPU each). 0, or -1 with an error. */
int pnG_device_uuid(unsigned char uuid[16]);
/* The GPU (an index among the count usable GPUs the process sees) a process started by a
 * multi-process launcher keeps: its local rank (LOCAL_RANK (torchrun), MLX_LOCAL_RANK,
 * OMPI_COMM_WORLD_LOCAL_RANK (Open MPI), MPI_LOCALRANKID (MPICH), SLURM_LOCALID; else MLX_RANK)
 * modulo count, so that ranks on one machine use a GPU each, as NCCL needs (PyTorch's
 * set_device(local_rank)). -1: the process keeps every GPU it sees (fewer than 2, no
 * launcher, or PONTE_GPU_PER_RANK=0). Detection applies it after skipping the GPUs too old to
 * use, and the process then sees that GPU alone as gpu:0 (no context or pool on the others). */
int pnG_rank_gpu(int count);
/* Most GPUs one process addresses (gpu:0 .. gpu:PNG_MAX_DEVICES-1); the per-device tables of
 * the runtime, the core and the library handles have this many entries. */
#define PNG_MAX_DEVICES 16
/* How many GPUs Ponte uses (gpu:0 .. gpu:n-1): the CUDA devices the process sees that can run
 * its kernels (compute capability 8.0+), in CUDA's order, older ones skipped (a warning on
 * stderr names them); a launcher's rank sees one. 0 without any. */
int pnG_device_count(void);
/* Whether gpu:device exists (0 <= device < pnG_device_count()). */
bool pnG_device_usable(int device);
/* The CUDA device number of gpu:device (device unless an older CUDA device before it was
 * skipped); -1 when there is no such GPU. For CUDA calls that take a device number. */
int pnG_cuda_device(int device);
/* The GPU the calling thread's CUDA calls go to (the last stream it asked for put it there);
 * always 0 when the process sees one GPU (no CUDA call then). */
int pnG_current_device(void);
/* How many threads the calling thread's current GPU holds resident at once (SMs x threads per
 * SM): the size of a grid that fills the GPU, for kernels that split long rows across blocks. */
int64_t pnG_resident_threads(void);
/* gpu:device's name (into name, n bytes), compute capability and global / free memory in
 * bytes. 0, or -1 (no such usable GPU). */
int pnG_device_info(int device, char *name, size_t n, int *major, int *minor, uint64_t *total,
                    uint64_t *free_bytes);
/* Whether work on gpu:device may copy straight from and to gpu:other's memory (the same GPU,
 * or peer access granted at detection); when not, data moves between them through the host. */
bool pnG_peer_copy(int device, int other);
/* The GPU whose memory holds p (CUDA's pointer attributes; on the simulator its allocation
 * table), -1 for host memory or an unknown address: what tests check placement with. */
int pnG_pointer_device(const void *p);
/* On the simulator: 1 when the process made CUDA device `ordinal`'s context (a CUDA call that
 * needs one ran with it current: pnsim_device_has_context), else 0, so that tests check that a
 * process touches only the GPUs it uses; -1 on hardware (not tracked). */
int pnG_sim_context_made(int ordinal);
/* Puts Ponte stream `stream` on gpu:device; streams never bound are on gpu:0. Binding a stream
 * already in use to another GPU fails with PN_ERR_INVALID_ARGUMENT, as does an unusable
 * device. */
int pnG_stream_bind(int stream, int device);
/* The GPU of a stream (0 unless bound; stream < 0: the default GPU stream). */
int pnG_stream_device(int stream);

/* Memory on stream's GPU for stream's work, at least nbytes (the pool rounds up). NULL with
 * PN_ERR_OUT_OF_MEMORY after that GPU's cache was released and the allocation retried. */
void *pnG_malloc(size_t nbytes, int stream);
/* Returns p (from pnG_malloc, same nbytes, a stream of the same GPU) to the pool, ordered after
 * stream's queued work. */
void pnG_free(void *p, size_t nbytes, int stream);
/* Host to device, queued on stream (src is reusable on return: copies of 256 KiB and more go
 * through pinned staging buffers, smaller ones through the driver). */
int pnG_copy_to_device(void *dst, const void *src, size_t nbytes, int stream);
/* Bytes per pinned staging chunk of host <-> device copies (0: copies are not staged:
 * PONTE_PINNED_STAGING=0, no pinned memory, or no GPU). */
size_t pnG_staging_chunk_bytes(void);
/* Host to device without Ponte's staging (one cudaMemcpyAsync, then a synchronize): the
 * baseline of the h2d_copy benchmark. */
int pnG_copy_to_device_unstaged(void *dst, const void *src, size_t nbytes, int stream);
/* Device to host; returns once the bytes are on the host (waits for stream's queued work). */
int pnG_copy_to_host(void *dst, const void *src, size_t nbytes, int stream);
/* Device to device, queued on stream (the two may be on different GPUs). */
int pnG_copy_device(void *dst, const void *src, size_t nbytes, int stream);
/* Makes stream `waiter` wait for the work queued so far on stream `producer` (an event; the
 * two may be on different GPUs). */
int pnG_stream_wait(int waiter, int producer);
/* Waits on the host for stream's queued work; stream < 0: every stream of every GPU. */
int pnG_synchronize(int stream);
/* Statistics and limits of the GPUs' pools, in bytes, summed over the GPUs (the pn_*_memory
 * functions add them to the host's); the memory and cache limits apply to each GPU. */
size_t pnG_active_memory(void);
size_t pnG_peak_memory(void);
void pnG_reset_peak_memory(void);
size_t pnG_cache_memory(void);
size_t pnG_set_memory_limit(size_t limit);
size_t pnG_set_cache_limit(size_t limit);
void pnG_clear_cache(void);
/* One GPU's figures: bytes in use, the peak of that since the last reset, bytes cached. 0, or
 * -1 with PN_ERR_INVALID_ARGUMENT (no such usable GPU). */
int pnG_device_memory(int device, size_t *active, size_t *peak, size_t *cache);
/* The CUDA stream behind a Ponte stream index (cudaStream_t, as void * for C), created on
 * first use; NULL with an error on failure. With several GPUs it also makes the stream's GPU
 * the calling thread's current CUDA device, so that what the caller launches next goes there. */
void *pnG_cuda_stream(int stream);
/* A device word of stream's own, zero between kernels: a kernel that counts in it (its blocks
 * finishing, so that the last one combines their partials) must leave it zero. Allocated on
 * the stream's first call and kept until the process exits; NULL with an error on failure. */
unsigned *pnG_stream_counter(int stream);
/* Checks the last launch on stream; `what` names the kernel in the error. */
int pnG_check_launch(const char *what);

/* CUDA graphs: the work queued on a stream between pnG_capture_begin and pnG_capture_end
 * (kernels, copies and library calls on device memory that is already allocated; no
 * allocation, free, event or host wait may happen meanwhile) is recorded instead of run, and
 * pnG_graph_launch queues all of it again with one call, which costs the GPU less per kernel
 * than launching each. The simulator records and replays it too (cuda_sim.h). */
typedef struct pnG_graph pnG_graph;
/* Starts recording the work queued on Ponte stream `stream` by this thread. 0, or -1 with an
 * error (the stream already records, or cannot be had). */
int pnG_capture_begin(int stream);
/* Ends the recording begun on stream: the work as a graph ready to launch (owned by the
 * caller: pnG_graph_free), or NULL with an error when a call the capture does not allow ran
 * meanwhile (the recorded work is then dropped, never run). */
pnG_graph *pnG_capture_end(int stream);
/* Queues one run of g's work on stream, a stream of the GPU g was recorded on. 0, or -1
 * with an error. */
int pnG_graph_launch(pnG_graph *g, int stream);
/* Frees g (NULL: nothing); a launch still queued runs to its end. */
void pnG_graph_free(pnG_graph *g);

/* Graph segments of eval (PONTE_GPU_GRAPHS=1, src/core/eval.c): eval records a run of GPU
 * nodes on one stream into a graph and launches that graph on the stream, or runs them again
 * directly when the capture failed. While a segment records, pnG_cuda_stream gives the
 * recording thread its own capture stream in place of the segment's stream (other threads'
 * work on that stream goes on running, outside the graph), pnG_malloc for it allocates for
 * real on the GPU's allocation stream (the launch waits for it), and every pnG_free of the
 * thread is put off until pnG_segment_close, after the work that may read the block. Host
 * waits, events and copies from pageable memory break the capture (the segment then runs
 * again without one). */
bool pnG_graphs_enabled(void);
/* Turns graph segments on or off for the process (tests, benchmarks); gives the old setting. */
bool pnG_graphs_set(bool on);
/* Opens a segment on this thread and starts recording its work for Ponte stream `stream`. 0,
 * or -1 with an error (one is open already; no capture stream can be made or record). */
int pnG_segment_begin(int stream);
/* Graph segments hold small work only, where launches cost more than the kernels: nodes
 * whose outputs take PNG_SEGMENT_NODE_BYTES at most, until the segment has allocated or put
 * off freeing PNG_SEGMENT_MAX_BYTES (a segment's buffers live until it ends, which bounds the
 * memory this costs). pnG_segment_full says the segment has reached that. */
#define PNG_SEGMENT_NODE_BYTES ((size_t)1 << 20)
#define PNG_SEGMENT_MAX_BYTES ((size_t)32 << 20)
bool pnG_segment_full(void);
/* Whether the open segment still records (a call a capture does not allow ends that). */
bool pnG_segment_recording(void);
/* Ends the recording: with `failed` false and a good capture, launches its graph (the
 * thread's cached one for `key` updated, or a new one) and returns 0; else nothing of it
 * runs and it returns 1 (run the segment's work again directly). No error is recorded. */
int pnG_segment_end(uint64_t key, bool failed);
/* Closes the segment: the frees put off are queued now (after the work of the segment or of
 * its direct run). Ends a recording still open, dropping it. */
void pnG_segment_close(void);
/* What graph segments did in this process: graphs launched (each one instantiated or an
 * update of the cached one), and segments run again directly. */
typedef struct pnG_segment_stats {
    int64_t launched, instantiated, updated, run_again;
} pnG_segment_stats;
void pnG_segment_counts(pnG_segment_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_GPU_H */
