/* runtime.cu — the CUDA backend's runtime (gpu.h): device detection with a reason when no GPU
 * is usable, the process's GPUs (Ponte's gpu:k is the k-th usable CUDA device: CUDA device k
 * unless an older one is skipped), device memory from each
 * GPU's stream-ordered pool of cudaMallocAsync kept as a cache (release threshold), statistics
 * and limits, copies between host and device (large ones pipelined through a small pool of
 * pinned staging buffers per GPU), one CUDA stream per Ponte stream, each on its GPU, and
 * ordering between streams (of one GPU or two) through events. A thread's CUDA calls go to the
 * GPU of the stream it last asked for (pnG_cuda_stream switches it), so launchers need not
 * know which GPU they run on. Builds with nvcc and, with PONTE_GPU_SIM, against the simulated
 * runtime. */
#include "backend/cuda/common.cuh"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ───────────────────────────── device detection ───────────────────────────── */

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static bool gpu_usable; /* some CUDA device is usable: the GPU backend is on */
static char gpu_reason[256];

/* What the runtime keeps per GPU, by Ponte's index: the usable CUDA devices (compute
 * capability 8.0+, with a stream-ordered pool) in CUDA's order, those that are not skipped
 * (as TensorFlow does), so that gpu:0 is the first GPU Ponte can run on. */
#define MAX_DEVICES PNG_MAX_DEVICES
static struct gpu_device {
    int ordinal;             /* its CUDA device number */
    cudaMemPool_t pool;      /* its default pool: the cache of freed blocks */
    int64_t resident_threads; /* SMs x threads per SM */
    size_t active, peak;     /* bytes handed out by pnG_malloc (mem_lock) */
} devices[MAX_DEVICES];
static int ndevices; /* usable CUDA devices (at most MAX_DEVICES) */
/* Threads change CUDA devices (cudaSetDevice) as they change GPUs: there are several, or gpu:0
 * is not CUDA device 0 (where a thread starts). */
static bool switching;
/* peer[i][j]: GPU i copies straight from and to GPU j's pool memory (peer access, granted to
 * i on j's pool at detection) */
static bool peer[MAX_DEVICES][MAX_DEVICES];

extern "C" int pnG_rank_gpu(int count)
{
    const char *off = getenv("PONTE_GPU_PER_RANK");
    if (count < 2 || (off && !strcmp(off, "0"))) return -1;
    static const char *const LOCAL[] = {"LOCAL_RANK", "MLX_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                        "MPI_LOCALRANKID", "SLURM_LOCALID", "MLX_RANK"};
    for (size_t k = 0; k < sizeof LOCAL / sizeof *LOCAL; k++) {
        const char *v = getenv(LOCAL[k]);
        char *end;
        long r = v && *v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && r >= 0) return (int)(r % count);
    }
    return -1;
}

/* Whether CUDA device d can run Ponte's kernels: compute capability 8.0 or newer and a
 * stream-ordered memory pool, read from its properties (no context is made on it). Fills
 * g's ordinal and resident_threads when it can, else says why (into reason, n bytes). */
static bool device_supported(int d, struct gpu_device *g, char *reason, size_t n)
{
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
        snprintf(reason, n, "cannot read the properties of CUDA device %d", d);
        cudaGetLastError();
        return false;
    }
    if (prop.major < 8) {
        snprintf(reason, n, "%.100s has compute capability %d.%d; Ponte needs 8.0 or newer", prop.name,
                 prop.major, prop.minor);
        return false;
    }
    if (!prop.memoryPoolsSupported) {
        snprintf(reason, n, "%.100s has no stream-ordered memory pool", prop.name);
        return false;
    }
    g->ordinal = d;
    g->resident_threads = prop.multiProcessorCount > 0 && prop.maxThreadsPerMultiProcessor > 0
                              ? (int64_t)prop.multiProcessorCount * prop.maxThreadsPerMultiProcessor
                              : 132 * 2048;
    return true;
}

/* Takes g's default pool as its cache of freed blocks (they stay in it: no release
 * threshold). False with the reason when the pool cannot be had. */
static bool open_pool(struct gpu_device *g, char *reason, size_t n)
{
    uint64_t keep = ~(uint64_t)0;
    if (cudaDeviceGetDefaultMemPool(&g->pool, g->ordinal) != cudaSuccess ||
        cudaMemPoolSetAttribute(g->pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) {
        snprintf(reason, n, "the memory pool of CUDA device %d cannot be used", g->ordinal);
        cudaGetLastError();
        return false;
    }
    return true;
}

static void detect(void)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
        snprintf(gpu_reason, sizeof gpu_reason, "no CUDA device is present");
        cudaGetLastError();
        return;
    }
    if (e == cudaErrorInsufficientDriver) {
        snprintf(gpu_reason, sizeof gpu_reason,
                 "the NVIDIA driver is missing or older than this CUDA runtime");
        cudaGetLastError();
        return;
    }
    if (e != cudaSuccess) {
        snprintf(gpu_reason, sizeof gpu_reason, "CUDA is not usable: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return;
    }
    /* the usable devices become gpu:0, gpu:1, ...; those skipped are said on stderr once
     * a usable one is found (the backend is on), else the first one's reason is the reason */
    struct {
        int ordinal;
        char why[200];
    } skipped[MAX_DEVICES];
    int nskipped = 0;
    for (int d = 0; d < count && ndevices < MAX_DEVICES; d++) {
        if (device_supported(d, &devices[ndevices], skipped[nskipped].why, sizeof skipped[0].why))
            ndevices++;
        else if (nskipped < MAX_DEVICES - 1) /* the last slot is scratch for further ones */
            skipped[nskipped++].ordinal = d;
    }
    /* a launcher's process keeps its rank's GPU alone (as PyTorch's set_device(local_rank)):
     * the others get no context and no pool from it */
    int mine = pnG_rank_gpu(ndevices);
    if (mine >= 0) {
        devices[0] = devices[mine];
        ndevices = 1;
    }
    int kept = 0;
    for (int k = 0; k < ndevices; k++) {
        if (open_pool(&devices[k], skipped[nskipped].why, sizeof skipped[0].why))
            devices[kept++] = devices[k];
        else if (nskipped < MAX_DEVICES - 1)
            skipped[nskipped++].ordinal = devices[k].ordinal;
    }
    ndevices = kept;
    if (ndevices == 0) {
        if (count == 1) snprintf(gpu_reason, sizeof gpu_reason, "%s", skipped[0].why);
        else if (count == 2) snprintf(gpu_reason, sizeof gpu_reason, "%s (nor can CUDA device 1)", skipped[0].why);
        else snprintf(gpu_reason, sizeof gpu_reason, "%s (nor can CUDA devices 1 to %d)", skipped[0].why, count - 1);
        return;
    }
    for (int k = 0; k < nskipped; k++)
        fprintf(stderr, "ponte: CUDA device %d is skipped: %s (gpu:0 is CUDA device %d)\n",
                skipped[k].ordinal, skipped[k].why, devices[0].ordinal);
    switching = ndevices > 1 || devices[0].ordinal != 0;
    /* pool memory is its own GPU's alone until a pool grants another access: grant it where
     * the hardware allows, so that arrays move between those GPUs directly */
    for (int i = 0; i < ndevices; i++)
        for (int j = 0; j < ndevices; j++) {
            int can = 0;
            if (i == j ||
                cudaDeviceCanAccessPeer(&can, devices[i].ordinal, devices[j].ordinal) != cudaSuccess ||
                !can) {
                cudaGetLastError();
                continue;
            }
            cudaMemAccessDesc access = {};
            access.location.type = cudaMemLocationTypeDevice;
            access.location.id = devices[i].ordinal;
            access.flags = cudaMemAccessFlagsProtReadWrite;
            peer[i][j] = cudaMemPoolSetAccess(devices[j].pool, &access, 1) == cudaSuccess;
            cudaGetLastError();
        }
    cudaSetDevice(devices[0].ordinal);
    gpu_usable = true;
}

extern "C" bool pnG_available(const char **reason)
{
    pthread_once(&detect_once, detect);
    if (reason) *reason = gpu_usable ? "" : gpu_reason;
    return gpu_usable;
}

extern "C" int pnG_device_count(void)
{
    pthread_once(&detect_once, detect);
    return gpu_usable ? ndevices : 0;
}

extern "C" bool pnG_device_usable(int device)
{
    return device >= 0 && device < pnG_device_count();
}

extern "C" int pnG_cuda_device(int device)
{
    return pnG_device_usable(device) ? devices[device].ordinal : -1;
}

/* Ponte's index of CUDA device `ordinal`; -1 for a device Ponte skipped or does not know. */
static int ponte_index(int ordinal)
{
    for (int k = 0; k < ndevices; k++)
        if (devices[k].ordinal == ordinal) return k;
    return -1;
}

/* Makes gpu:device the calling thread's current CUDA device. */
static cudaError_t enter_device(int device) { return cudaSetDevice(devices[device].ordinal); }

extern "C" int pnG_current_device(void)
{
    int c = 0;
    if (!switching) return 0;
    if (cudaGetDevice(&c) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    int d = ponte_index(c);
    return d < 0 ? 0 : d;
}

extern "C" bool pnG_peer_copy(int device, int other)
{
    return device == other || (pnG_device_usable(device) && pnG_device_usable(other) && peer[device][other]);
}

extern "C" int pnG_pointer_device(const void *p)
{
    if (!p || !pnG_available(NULL)) return -1;
#ifdef PONTE_GPU_SIM
    return ponte_index(pnsim_device_of(p));
#else
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return a.type == cudaMemoryTypeDevice ? ponte_index(a.device) : -1;
#endif
}

extern "C" int pnG_sim_context_made(int ordinal)
{
#ifdef PONTE_GPU_SIM
    return pnsim_device_has_context(ordinal) ? 1 : 0;
#else
    (void)ordinal;
    return -1;
#endif
}

extern "C" int64_t pnG_resident_threads(void)
{
    pthread_once(&detect_once, detect);
    return gpu_usable ? devices[pnG_current_device()].resident_threads : 132 * 2048;
}

extern "C" int pnG_device_info(int device, char *name, size_t n, int *major, int *minor,
                               uint64_t *total, uint64_t *free_bytes)
{
    cudaDeviceProp prop;
    size_t fr = 0, tot = 0;
    if (!pnG_device_usable(device) ||
        cudaGetDeviceProperties(&prop, devices[device].ordinal) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    snprintf(name, n, "%s", prop.name);
    *major = prop.major;
    *minor = prop.minor;
    int was = pnG_current_device();
    if (enter_device(device) != cudaSuccess || cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        fr = 0, tot = prop.totalGlobalMem;
    }
    enter_device(was);
    *total = tot ? tot : prop.totalGlobalMem;
    *free_bytes = fr;
    return 0;
}

extern "C" bool pnG_simulated(void)
{
#ifdef PONTE_GPU_SIM
    return true;
#else
    return false;
#endif
}

extern "C" int pnG_device_uuid(unsigned char uuid[16])
{
    memset(uuid, 0, 16);
    int dev = 0;
#ifdef PONTE_GPU_SIM
    /* PONTE_SIM_GPU_UUID names the machine, whose CUDA device d has the UUID "name#d" */
    const char *e = getenv("PONTE_SIM_GPU_UUID");
    cudaGetDevice(&dev);
    if (e && *e) snprintf((char *)uuid, 16, "%.12s#%d", e, dev);
    else snprintf((char *)uuid, 16, "pid%ld", (long)getpid());
    return 0;
#else
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        cudaGetLastError();
        return pn_set_error(PN_ERR_BACKEND, "[cuda] Cannot read the GPU's properties.");
    }
    memcpy(uuid, prop.uuid.bytes, 16);
    return 0;
#endif
}

static int need_gpu(void)
{
    const char *reason;
    if (pnG_available(&reason)) return 0;
    return pn_set_error(PN_ERR_BACKEND, "[gpu] The GPU is not available: %s.", reason);
}

/* ───────────────────────────── graph segments: the thread's state ───────────────────────────── */

/* A free pnG_free put off while a segment is open (it runs after the segment's work). */
struct deferred_free {
    void *p;
    size_t nbytes;
    int stream;
};
/* The segment open on this thread (pnG_segment_begin to pnG_segment_close). */
static thread_local struct segment {
    bool open;            /* frees are put off */
    bool capturing;       /* the thread's work for `stream` is recorded (until pnG_segment_end) */
    int stream;           /* the Ponte stream of the segment */
    cudaStream_t cs;      /* the thread's capture stream, which pnG_cuda_stream gives for it */
    cudaStream_t launch;  /* the Ponte stream's own CUDA stream, where the graph runs */
    int device;           /* its GPU */
    bool allocated;       /* pnG_malloc allocated on the GPU's allocation stream meanwhile */
    size_t bytes;         /* allocated on the allocation stream or put off freeing */
    struct deferred_free *frees;
    int nfrees, cap;
} seg;
/* Per GPU: the stream that allocates for captured work (allocation is not recorded), and the
 * event the graph's launch waits on. Made at the first segment. */
static cudaStream_t alloc_streams[MAX_DEVICES];
static cudaEvent_t alloc_events[MAX_DEVICES];
/* Per thread and GPU: the stream the thread's segments record on, so that other threads'
 * work on the same Ponte stream goes on running (a capture takes all work queued on its
 * stream, from any thread). Made at the thread's first segment on the GPU, kept. */
static thread_local cudaStream_t capture_streams[MAX_DEVICES];

/* ───────────────────────────── streams ───────────────────────────── */

static pthread_mutex_t stream_lock = PTHREAD_MUTEX_INITIALIZER;
static cudaStream_t *streams; /* by Ponte stream index; NULL until first use */
static unsigned **counters;   /* pnG_stream_counter's words, by stream index; NULL until asked */
static signed char *stream_devices; /* the device of each stream index (0 unless bound) */
static int nstreams;

/* Makes room for stream index `stream` in the tables (stream_lock held). 0, or -1 with an
 * error. */
static int streams_reserve_locked(int stream)
{
    if (stream < nstreams) return 0;
    int n = nstreams ? nstreams : 16;
    while (n <= stream) n *= 2;
    cudaStream_t *s = (cudaStream_t *)realloc(streams, (size_t)n * sizeof *s);
    if (s) streams = s;
    unsigned **c = s ? (unsigned **)realloc(counters, (size_t)n * sizeof *c) : NULL;
    if (c) counters = c;
    signed char *d = c ? (signed char *)realloc(stream_devices, (size_t)n) : NULL;
    if (!d) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[gpu] Out of memory.");
    stream_devices = d;
    memset(s + nstreams, 0, (size_t)(n - nstreams) * sizeof *s);
    memset(c + nstreams, 0, (size_t)(n - nstreams) * sizeof *c);
    memset(d + nstreams, 0, (size_t)(n - nstreams));
    nstreams = n;
    return 0;
}

extern "C" int pnG_stream_bind(int stream, int device)
{
    if (!pnG_device_usable(device))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] GPU %d is not available (%d usable).",
                            device, pnG_device_count());
    if (stream < 0) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] Bad stream %d.", stream);
    pthread_mutex_lock(&stream_lock);
    int rc = streams_reserve_locked(stream);
    if (rc == 0 && streams[stream] && stream_devices[stream] != device)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] Stream %d is already on GPU %d.", stream,
                          stream_devices[stream]);
    if (rc == 0) stream_devices[stream] = (signed char)device;
    pthread_mutex_unlock(&stream_lock);
    return rc;
}

extern "C" int pnG_stream_device(int stream)
{
    if (stream < 0) stream = 1;
    pthread_mutex_lock(&stream_lock);
    int d = stream < nstreams ? stream_devices[stream] : 0;
    pthread_mutex_unlock(&stream_lock);
    return d;
}

extern "C" void *pnG_cuda_stream(int stream)
{
    if (need_gpu()) return NULL;
    if (stream < 0) stream = 1; /* the GPU's default stream */
    pthread_mutex_lock(&stream_lock);
    if (streams_reserve_locked(stream)) {
        pthread_mutex_unlock(&stream_lock);
        return NULL;
    }
    int device = stream_devices[stream];
    /* with several GPUs, the calling thread's CUDA calls go to the stream's device from here */
    cudaError_t e = switching ? enter_device(device) : cudaSuccess;
    if (e == cudaSuccess && !streams[stream]) {
        e = cudaStreamCreateWithFlags(&streams[stream], cudaStreamNonBlocking);
        if (e != cudaSuccess) streams[stream] = NULL;
    }
    cudaStream_t s = streams[stream];
    pthread_mutex_unlock(&stream_lock);
    if (seg.capturing && stream == seg.stream && s) s = seg.cs; /* this thread's work records */
    if (e != cudaSuccess) {
        cudaGetLastError();
        pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot create or enter the CUDA stream of GPU %d: %s",
                     device, cudaGetErrorString(e));
        return NULL;
    }
    return (void *)s;
}

/* ───────────────────────────── CUDA graphs ───────────────────────────── */

struct pnG_graph {
    cudaGraphExec_t exec; /* the instantiated graph (the captured one is freed at once) */
    int device;           /* Ponte's GPU it was recorded on */
};

extern "C" int pnG_capture_begin(int stream)
{
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    /* thread-local: other threads' allocations and waits go on (only this thread's would
     * break the capture) */
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot start capturing stream %d: %s", stream,
                            cudaGetErrorString(e));
    }
    return 0;
}

extern "C" pnG_graph *pnG_capture_end(int stream)
{
    cudaStream_t s = png_stream(stream);
    if (!s) return NULL;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph); /* the executable graph stands alone */
    pnG_graph *g = e == cudaSuccess ? (pnG_graph *)malloc(sizeof *g) : NULL;
    if (!g) {
        if (exec) cudaGraphExecDestroy(exec);
        cudaGetLastError();
        if (e != cudaSuccess)
            pn_set_error(PN_ERR_BACKEND, "[gpu] The capture of stream %d failed: %s", stream,
                         cudaGetErrorString(e));
        else pn_set_error(PN_ERR_OUT_OF_MEMORY, "[gpu] Out of host memory for a graph.");
        return NULL;
    }
    g->exec = exec, g->device = pnG_stream_device(stream);
    return g;
}

extern "C" int pnG_graph_launch(pnG_graph *g, int stream)
{
    if (!g) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] No graph to launch.");
    if (pnG_stream_device(stream) != g->device)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[gpu] A graph recorded on GPU %d cannot run on stream %d of GPU %d.",
                            g->device, stream, pnG_stream_device(stream));
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    cudaError_t e = cudaGraphLaunch(g->exec, s);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot launch a graph on stream %d: %s", stream,
                            cudaGetErrorString(e));
    }
    return 0;
}

extern "C" void pnG_graph_free(pnG_graph *g)
{
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGetLastError();
    free(g);
}

/* ───────────────────────────── graph segments of eval ───────────────────────────── */

static int graphs_on = -1; /* PONTE_GPU_GRAPHS=1, read once, or pnG_graphs_set's */

extern "C" bool pnG_graphs_enabled(void)
{
    int on = __atomic_load_n(&graphs_on, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv("PONTE_GPU_GRAPHS");
        on = e && !strcmp(e, "1");
        __atomic_store_n(&graphs_on, on, __ATOMIC_RELAXED);
    }
    return on;
}

extern "C" bool pnG_graphs_set(bool on)
{
    bool was = pnG_graphs_enabled();
    __atomic_store_n(&graphs_on, (int)on, __ATOMIC_RELAXED);
    return was;
}

/* The thread's executable graphs, by segment key and GPU: a segment replayed again updates
 * its graph (the new pointers, same shape of work), cheaper than instantiating one. */
#define GRAPH_CACHE 32
static thread_local struct cached_graph {
    uint64_t key, used;
    int device;
    cudaGraphExec_t exec;
} graph_cache[GRAPH_CACHE];
static thread_local uint64_t graph_clock;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static pnG_segment_stats segment_stats;

static void count_segment(int64_t pnG_segment_stats::*field)
{
    pthread_mutex_lock(&stats_lock);
    segment_stats.*field += 1;
    pthread_mutex_unlock(&stats_lock);
}

extern "C" void pnG_segment_counts(pnG_segment_stats *out)
{
    pthread_mutex_lock(&stats_lock);
    *out = segment_stats;
    pthread_mutex_unlock(&stats_lock);
}

/* GPU d's allocation stream and event, and the thread's capture stream for it, made on first
 * use (outside any capture; GPU d is current). */
static int segment_streams_ready(int d)
{
    pthread_mutex_lock(&stream_lock);
    cudaError_t e = cudaSuccess;
    if (!alloc_streams[d]) e = cudaStreamCreateWithFlags(&alloc_streams[d], cudaStreamNonBlocking);
    if (e == cudaSuccess && !alloc_events[d])
        e = cudaEventCreateWithFlags(&alloc_events[d], cudaEventDisableTiming);
    pthread_mutex_unlock(&stream_lock);
    if (e == cudaSuccess && !capture_streams[d])
        e = cudaStreamCreateWithFlags(&capture_streams[d], cudaStreamNonBlocking);
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    return pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot make GPU %d's segment streams: %s", d,
                        cudaGetErrorString(e));
}

extern "C" int pnG_segment_begin(int stream)
{
    if (seg.open)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] A graph segment is already open.");
    cudaStream_t s = png_stream(stream);
    int d = pnG_stream_device(stream);
    if (!s || segment_streams_ready(d)) return -1;
    cudaError_t e = cudaStreamBeginCapture(capture_streams[d], cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot start recording for stream %d: %s",
                            stream, cudaGetErrorString(e));
    }
    seg.open = seg.capturing = true;
    seg.stream = stream < 0 ? 1 : stream;
    seg.cs = capture_streams[d], seg.launch = s, seg.device = d, seg.allocated = false;
    seg.bytes = 0, seg.nfrees = 0;
    return 0;
}

extern "C" bool pnG_segment_full(void) { return seg.bytes >= PNG_SEGMENT_MAX_BYTES; }

extern "C" bool pnG_segment_recording(void)
{
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (!seg.capturing || cudaStreamIsCapturing(seg.cs, &st) != cudaSuccess) cudaGetLastError();
    return st == cudaStreamCaptureStatusActive;
}

/* The executable graph for (key, d) made from graph: the cached one updated, or a new one
 * (cached, evicting the least recently used). NULL when neither works. */
static cudaGraphExec_t graph_for(uint64_t key, int d, cudaGraph_t graph)
{
    struct cached_graph *slot = &graph_cache[0];
    for (int i = 0; i < GRAPH_CACHE; i++) {
        struct cached_graph *c = &graph_cache[i];
        if (c->exec && c->key == key && c->device == d) {
            slot = c;
            break;
        }
        if (!c->exec || (slot->exec && c->used < slot->used)) slot = c;
    }
    slot->used = ++graph_clock;
    if (slot->exec && slot->key == key && slot->device == d) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(slot->exec, graph, &info) == cudaSuccess) {
            count_segment(&pnG_segment_stats::updated);
            return slot->exec;
        }
        cudaGetLastError(); /* another shape of work under the same key: a new graph */
    }
    if (slot->exec) cudaGraphExecDestroy(slot->exec); /* a queued launch still runs */
    slot->exec = NULL;
    if (cudaGraphInstantiate(&slot->exec, graph, 0) != cudaSuccess) {
        cudaGetLastError();
        slot->exec = NULL;
        return NULL;
    }
    slot->key = key, slot->device = d;
    count_segment(&pnG_segment_stats::instantiated);
    return slot->exec;
}

extern "C" int pnG_segment_end(uint64_t key, bool failed)
{
    if (!seg.capturing) return 1;
    seg.capturing = false;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(seg.cs, &graph);
    if (e != cudaSuccess) cudaGetLastError();
    int d = seg.device;
    if (seg.allocated) { /* whatever runs next uses blocks the allocation stream handed out */
        cudaError_t w = cudaEventRecord(alloc_events[d], alloc_streams[d]);
        if (w == cudaSuccess) w = cudaStreamWaitEvent(seg.launch, alloc_events[d], 0);
        if (w != cudaSuccess) {
            cudaGetLastError();
            cudaStreamSynchronize(alloc_streams[d]);
        }
    }
    cudaGraphExec_t exec = e == cudaSuccess && !failed ? graph_for(key, d, graph) : NULL;
    if (graph) cudaGraphDestroy(graph);
    if (exec && cudaGraphLaunch(exec, seg.launch) == cudaSuccess) {
        count_segment(&pnG_segment_stats::launched);
        return 0;
    }
    cudaGetLastError();
    count_segment(&pnG_segment_stats::run_again);
    return 1;
}

extern "C" void pnG_segment_close(void)
{
    if (!seg.open) return;
    if (seg.capturing) pnG_segment_end(0, true);
    seg.open = false;
    for (int i = 0; i < seg.nfrees; i++)
        pnG_free(seg.frees[i].p, seg.frees[i].nbytes, seg.frees[i].stream);
    seg.nfrees = 0, seg.bytes = 0;
}

extern "C" unsigned *pnG_stream_counter(int stream)
{
    cudaStream_t s = png_stream(stream); /* the stream, and its slot in counters */
    if (!s) return NULL;
    if (stream < 0) stream = 1;
    pthread_mutex_lock(&stream_lock);
    unsigned *c = counters[stream];
    cudaError_t e = cudaSuccess;
    if (!c) { /* zeroed on the stream, before any kernel of it can see the word */
        e = cudaMalloc((void **)&c, sizeof *c);
        if (e == cudaSuccess) e = cudaMemsetAsync(c, 0, sizeof *c, s);
        if (e == cudaSuccess) counters[stream] = c;
        else if (c) cudaFree(c), c = NULL;
    }
    pthread_mutex_unlock(&stream_lock);
    if (e != cudaSuccess) {
        cudaGetLastError();
        pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot allocate a stream's counter: %s",
                     cudaGetErrorString(e));
        return NULL;
    }
    return c;
}

extern "C" int pnG_stream_wait(int waiter, int producer)
{
    if (waiter == producer || producer < 0) return 0;
    /* the event is made and recorded on the producer's device; the wait is queued from the
     * waiter's, which may be another GPU */
    cudaStream_t p = png_stream(producer);
    if (!p) return -1;
    cudaEvent_t ev;
    PNG_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, p);
    cudaStream_t w = e == cudaSuccess ? png_stream(waiter) : NULL;
    if (e == cudaSuccess && !w) {
        cudaEventDestroy(ev);
        return -1;
    }
    if (e == cudaSuccess) e = cudaStreamWaitEvent(w, ev, 0);
    cudaEventDestroy(ev); /* released once the wait no longer needs it */
    if (e != cudaSuccess)
        return pn_set_error(PN_ERR_BACKEND, "[gpu] Cannot order streams: %s", cudaGetErrorString(e));
    return 0;
}

extern "C" int pnG_synchronize(int stream)
{
    if (need_gpu()) return -1;
    if (stream < 0) { /* every device */
        int was = pnG_current_device();
        for (int d = 0; d < ndevices; d++) {
            PNG_CHECK(enter_device(d));
            PNG_CHECK(cudaDeviceSynchronize());
        }
        PNG_CHECK(enter_device(was));
        return 0;
    }
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    PNG_CHECK(cudaStreamSynchronize(s));
    return 0;
}

extern "C" int pnG_check_launch(const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    return pn_set_error(PN_ERR_BACKEND, "[gpu] Kernel %s failed to launch: %s", what,
                        cudaGetErrorString(e));
}

/* ───────────────────────────── memory ───────────────────────────── */

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t active_bytes, peak_bytes; /* over every device */
static size_t memory_limit; /* per device; 0: the device's memory is the limit */
static size_t cache_limit = (size_t)-1;

/* Granularity of the accounting: the pool hands out blocks in these steps. */
static size_t rounded(size_t n) { return n < 512 ? 512 : (n + 511) & ~(size_t)511; }

/* A statistic of device d's pool (0 when it cannot be read). */
static size_t pool_attribute(int d, cudaMemPoolAttr attr)
{
    if (!pnG_device_usable(d)) return 0;
    uint64_t v = 0;
    if (cudaMemPoolGetAttribute(devices[d].pool, attr, &v) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return (size_t)v;
}

/* Gives device d's cached blocks back down to keep bytes, after the frees queued on its
 * streams have completed. The calling thread stays on device d. */
static void trim_cache(int d, size_t keep)
{
    if (enter_device(d) == cudaSuccess) cudaDeviceSynchronize();
    cudaMemPoolTrimTo(devices[d].pool, keep);
    cudaGetLastError();
}

extern "C" void *pnG_malloc(size_t nbytes, int stream)
{
    if (need_gpu()) return NULL;
    cudaStream_t s = png_stream(stream);
    if (!s) return NULL;
    int d = pnG_stream_device(stream);
    struct gpu_device *g = &devices[d];
    size_t n = rounded(nbytes);
    pthread_mutex_lock(&mem_lock);
    bool over = memory_limit && g->active + n > memory_limit;
    size_t active = g->active;
    pthread_mutex_unlock(&mem_lock);
    if (over) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY,
                     "[malloc] Attempting to allocate %zu bytes on GPU %d which is greater than "
                     "the memory limit of %zu bytes (%zu bytes in use).",
                     nbytes, d, memory_limit, active);
        return NULL;
    }
    void *p = NULL;
    cudaError_t e;
    if (seg.capturing && s == seg.cs) {
        /* on the allocation stream, for real (CUDA's relaxed mode allows it; the graph's
         * launch waits for it); no retry: trimming the cache synchronizes, and the segment
         * runs again without capture after a failure */
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&mode);
        e = cudaMallocAsync(&p, n, alloc_streams[d]);
        cudaThreadExchangeStreamCaptureMode(&mode);
        if (e == cudaSuccess) seg.allocated = true, seg.bytes += n;
    } else {
        e = cudaMallocAsync(&p, n, s);
    }
    if (e == cudaErrorMemoryAllocation && !seg.capturing) { /* give the cache back, try again */
        cudaGetLastError();
        trim_cache(d, 0);
        e = cudaMallocAsync(&p, n, s);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        pn_set_error(e == cudaErrorMemoryAllocation ? PN_ERR_OUT_OF_MEMORY : PN_ERR_BACKEND,
                     "[malloc] Unable to allocate %zu bytes on GPU %d (%zu bytes in use): %s.",
                     nbytes, d, active, cudaGetErrorString(e));
        return NULL;
    }
    pthread_mutex_lock(&mem_lock);
    g->active += n;
    if (g->active > g->peak) g->peak = g->active;
    active_bytes += n;
    if (active_bytes > peak_bytes) peak_bytes = active_bytes;
    pthread_mutex_unlock(&mem_lock);
    return p;
}

extern "C" void pnG_free(void *p, size_t nbytes, int stream)
{
    if (!p || !pnG_available(NULL)) return;
    if (seg.open) { /* after the segment's work, which may still read p */
        if (seg.nfrees == seg.cap) {
            int cap = seg.cap ? 2 * seg.cap : 256;
            void *grown = realloc(seg.frees, (size_t)cap * sizeof *seg.frees);
            if (grown) seg.frees = (struct deferred_free *)grown, seg.cap = cap;
        }
        if (seg.nfrees < seg.cap) {
            seg.frees[seg.nfrees++] = (struct deferred_free){p, nbytes, stream};
            seg.bytes += nbytes;
            return;
        }
        if (seg.capturing) return; /* out of host memory mid-capture: the block is lost */
    }
    cudaStream_t s = png_stream(stream);
    if (!s || cudaFreeAsync(p, s) != cudaSuccess) {
        cudaGetLastError();
        cudaDeviceSynchronize();
        cudaFree(p);
        cudaGetLastError();
    }
    struct gpu_device *g = &devices[pnG_stream_device(stream)];
    pthread_mutex_lock(&mem_lock);
    g->active -= rounded(nbytes);
    active_bytes -= rounded(nbytes);
    pthread_mutex_unlock(&mem_lock);
}

extern "C" int pnG_device_memory(int device, size_t *active, size_t *peak, size_t *cache)
{
    if (!pnG_device_usable(device))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gpu] GPU %d is not available.", device);
    pthread_mutex_lock(&mem_lock);
    *active = devices[device].active;
    *peak = devices[device].peak;
    pthread_mutex_unlock(&mem_lock);
    size_t reserved = pool_attribute(device, cudaMemPoolAttrReservedMemCurrent);
    size_t used = pool_attribute(device, cudaMemPoolAttrUsedMemCurrent);
    *cache = reserved > used ? reserved - used : 0;
    return 0;
}

extern "C" size_t pnG_active_memory(void)
{
    pthread_mutex_lock(&mem_lock);
    size_t v = active_bytes;
    pthread_mutex_unlock(&mem_lock);
    return v;
}

extern "C" size_t pnG_peak_memory(void)
{
    pthread_mutex_lock(&mem_lock);
    size_t v = peak_bytes;
    pthread_mutex_unlock(&mem_lock);
    return v;
}

extern "C" void pnG_reset_peak_memory(void)
{
    pthread_mutex_lock(&mem_lock);
    peak_bytes = 0; /* as the host side (allocator.c) */
    for (int d = 0; d < ndevices; d++) devices[d].peak = 0;
    pthread_mutex_unlock(&mem_lock);
}

extern "C" size_t pnG_cache_memory(void)
{
    size_t total = 0;
    for (int d = 0; d < pnG_device_count(); d++) {
        size_t reserved = pool_attribute(d, cudaMemPoolAttrReservedMemCurrent);
        size_t used = pool_attribute(d, cudaMemPoolAttrUsedMemCurrent);
        total += reserved > used ? reserved - used : 0;
    }
    return total;
}

extern "C" size_t pnG_set_memory_limit(size_t limit)
{
    pthread_mutex_lock(&mem_lock);
    size_t old = memory_limit;
    memory_limit = limit;
    pthread_mutex_unlock(&mem_lock);
    return old;
}

extern "C" size_t pnG_set_cache_limit(size_t limit)
{
    pthread_mutex_lock(&mem_lock);
    size_t old = cache_limit;
    cache_limit = limit;
    pthread_mutex_unlock(&mem_lock);
    int was = pnG_current_device();
    for (int d = 0; d < pnG_device_count(); d++) {
        uint64_t keep = limit == (size_t)-1 ? ~(uint64_t)0 : (uint64_t)limit;
        cudaMemPoolSetAttribute(devices[d].pool, cudaMemPoolAttrReleaseThreshold, &keep);
        size_t used = pool_attribute(d, cudaMemPoolAttrUsedMemCurrent);
        if (limit != (size_t)-1) trim_cache(d, used + limit);
    }
    if (pnG_available(NULL)) enter_device(was);
    return old;
}

extern "C" void pnG_clear_cache(void)
{
    int was = pnG_current_device();
    for (int d = 0; d < pnG_device_count(); d++) trim_cache(d, 0);
    if (pnG_available(NULL)) enter_device(was);
}

/* ───────────────────────────── copies ───────────────────────────── */

/* Copies of at least STAGE_MIN bytes between pageable host memory and the device go through
 * a pool of STAGE_BUFS pinned host buffers of STAGE_CHUNK bytes per GPU (made on that GPU's
 * first large copy), chunk by chunk: each buffer has an event recorded after the DMA that
 * reads / fills it, so the host waits only when it reuses a buffer still in flight, and the
 * host-side memcpy of one chunk (split over the OpenMP threads: pnK_memcpy) overlaps the DMA
 * of the others. One copy uses a GPU's pool at a time (its lock). The buffers live until the
 * process exits (the runtime has no shutdown hook). PONTE_PINNED_STAGING=0, or a failed
 * cudaHostAlloc, leaves every copy to the driver's own staging. */
#define STAGE_BUFS 4
#define STAGE_CHUNK ((size_t)8 << 20)
#define STAGE_MIN ((size_t)256 << 10)

struct stage_buf {
    char *host;
    cudaEvent_t done; /* recorded after the last DMA touching host */
};
static struct stage_pool {
    pthread_mutex_t lock;
    bool tried, ready;
    struct stage_buf buf[STAGE_BUFS];
} stages[MAX_DEVICES];
static pthread_once_t stages_once = PTHREAD_ONCE_INIT;

static void stages_init(void)
{
    for (int d = 0; d < MAX_DEVICES; d++) pthread_mutex_init(&stages[d].lock, NULL);
}

/* Makes device d's staging buffers on the first call (d is the current device, so the events
 * belong to it); whether they are there. */
static bool stage_make(int d)
{
    pthread_once(&stages_once, stages_init);
    struct stage_pool *sp = &stages[d];
    pthread_mutex_lock(&sp->lock);
    if (!sp->tried) {
        sp->tried = true;
        const char *env = getenv("PONTE_PINNED_STAGING");
        bool ok = !(env && !strcmp(env, "0"));
        for (int i = 0; ok && i < STAGE_BUFS; i++)
            ok = cudaHostAlloc((void **)&sp->buf[i].host, STAGE_CHUNK, cudaHostAllocPortable) == cudaSuccess &&
                 cudaEventCreateWithFlags(&sp->buf[i].done, cudaEventDisableTiming) == cudaSuccess;
        if (!ok) {
            for (int j = 0; j < STAGE_BUFS; j++) {
                if (sp->buf[j].host) cudaFreeHost(sp->buf[j].host);
                if (sp->buf[j].done) cudaEventDestroy(sp->buf[j].done);
                sp->buf[j].host = NULL, sp->buf[j].done = NULL;
            }
            cudaGetLastError(); /* not sticky: the copies go unstaged */
        }
        sp->ready = ok;
    }
    bool ready = sp->ready;
    pthread_mutex_unlock(&sp->lock);
    return ready;
}

/* Whether a copy of nbytes on the current device goes through its pinned pool (making it on
 * first use). */
static bool staged(size_t nbytes)
{
    return nbytes >= STAGE_MIN && stage_make(pnG_current_device());
}

extern "C" size_t pnG_staging_chunk_bytes(void)
{
    if (!pnG_available(NULL)) return 0;
    return stage_make(pnG_current_device()) ? STAGE_CHUNK : 0;
}

/* The bytes of chunk j of a copy of nbytes (all STAGE_CHUNK but the last). */
static size_t chunk_bytes(size_t nbytes, size_t j)
{
    size_t off = j * STAGE_CHUNK;
    return nbytes - off < STAGE_CHUNK ? nbytes - off : STAGE_CHUNK;
}

/* host -> device through the pool; returns once src has been read (the DMAs may still run). */
static cudaError_t stage_to_device(char *dst, const char *src, size_t nbytes, cudaStream_t s)
{
    cudaError_t e = cudaSuccess;
    struct stage_pool *sp = &stages[pnG_current_device()];
    pthread_mutex_lock(&sp->lock);
    for (size_t i = 0; i * STAGE_CHUNK < nbytes && e == cudaSuccess; i++) {
        struct stage_buf *b = &sp->buf[i % STAGE_BUFS];
        size_t off = i * STAGE_CHUNK, n = chunk_bytes(nbytes, i);
        e = cudaEventSynchronize(b->done); /* its previous DMA has read it */
        if (e != cudaSuccess) break;
        pnK_memcpy(b->host, src + off, n);
        e = cudaMemcpyAsync(dst + off, b->host, n, cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) e = cudaEventRecord(b->done, s);
    }
    pthread_mutex_unlock(&sp->lock);
    return e;
}

/* Copies chunk j of a device -> host copy (queued into its buffer, event recorded) out to dst
 * once its DMA is done. */
static cudaError_t stage_drain(struct stage_pool *sp, char *dst, size_t nbytes, size_t j)
{
    struct stage_buf *b = &sp->buf[j % STAGE_BUFS];
    cudaError_t e = cudaEventSynchronize(b->done);
    if (e == cudaSuccess) pnK_memcpy(dst + j * STAGE_CHUNK, b->host, chunk_bytes(nbytes, j));
    return e;
}

/* device -> host through the pool, synchronous: up to STAGE_BUFS chunks' DMAs are queued while
 * the host copies the oldest finished chunk out of its buffer. */
static cudaError_t stage_to_host(char *dst, const char *src, size_t nbytes, cudaStream_t s)
{
    cudaError_t e = cudaSuccess;
    size_t nchunks = (nbytes + STAGE_CHUNK - 1) / STAGE_CHUNK, drained = 0;
    struct stage_pool *sp = &stages[pnG_current_device()];
    pthread_mutex_lock(&sp->lock);
    for (size_t i = 0; i < nchunks && e == cudaSuccess; i++) {
        struct stage_buf *b = &sp->buf[i % STAGE_BUFS];
        if (i >= STAGE_BUFS) e = stage_drain(sp, dst, nbytes, drained++); /* frees b for chunk i */
        if (e == cudaSuccess) e = cudaEventSynchronize(b->done); /* a DMA of another copy */
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(b->host, src + i * STAGE_CHUNK, chunk_bytes(nbytes, i),
                                cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess) e = cudaEventRecord(b->done, s);
    }
    while (drained < nchunks && e == cudaSuccess) e = stage_drain(sp, dst, nbytes, drained++);
    pthread_mutex_unlock(&sp->lock);
    return e;
}

extern "C" int pnG_copy_to_device(void *dst, const void *src, size_t nbytes, int stream)
{
    if (nbytes == 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    if (staged(nbytes)) {
        PNG_CHECK(stage_to_device((char *)dst, (const char *)src, nbytes, s));
        return 0;
    }
    /* from pageable memory the call returns once src has been staged, so the caller may reuse
     * it at once */
    PNG_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
    return 0;
}

/* The unstaged host -> device copy (the driver stages pageable memory itself), synchronous:
 * the baseline of the h2d_copy benchmark figure. */
extern "C" int pnG_copy_to_device_unstaged(void *dst, const void *src, size_t nbytes, int stream)
{
    if (nbytes == 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    PNG_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
    PNG_CHECK(cudaStreamSynchronize(s));
    return 0;
}

extern "C" int pnG_copy_to_host(void *dst, const void *src, size_t nbytes, int stream)
{
    if (nbytes == 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    if (staged(nbytes)) {
        PNG_CHECK(stage_to_host((char *)dst, (const char *)src, nbytes, s));
        return 0;
    }
    PNG_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
    PNG_CHECK(cudaStreamSynchronize(s));
    return 0;
}

extern "C" int pnG_copy_device(void *dst, const void *src, size_t nbytes, int stream)
{
    if (nbytes == 0) return 0;
    cudaStream_t s = png_stream(stream);
    if (!s) return -1;
    PNG_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
    return 0;
}
