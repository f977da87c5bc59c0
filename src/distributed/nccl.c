/* nccl.c — NCCL for the collectives of nodes evaluated on a GPU stream (distributed.h's
 * pnD_nccl): device buffers, queued on the node's stream, no host copy. libnccl.so.2 (or
 * libnccl.so; PONTE_NCCL_LIBNAME overrides) is loaded with dlopen at first use, so libponte
 * has no link dependency on NCCL; the simulated build calls sim/nccl_sim.c's stand-ins. A
 * group's communicator is bootstrapped through its host backend (ring or MPI): every member
 * says whether it has NCCL and rank 0 adds ncclGetUniqueId's id, in one all_gather; then
 * ncclCommInitRank on the CUDA device of the GPU stream being evaluated. CPU-only builds have no NCCL. */
#include "distributed/distributed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PONTE_HAS_GPU

bool pnD_nccl_available(const char **why)
{
    if (why) *why = "Ponte was built without the CUDA backend";
    return false;
}
bool pnD_nccl_handles(pn_dtype dt, int reduce) { return false; }
int pnD_nccl_new(const pnD_backend *be, void *host_comm, void **out)
{
    *out = NULL;
    pn_set_error(PN_ERR_BACKEND, "[nccl] Ponte was built without the CUDA backend.");
    return 1;
}
const pnD_backend pnD_nccl = {.name = "nccl"};

#else

#include "backend/cuda/gpu.h"
#include "backend/cuda/sim/nccl_sim.h"

#include <pthread.h>
#ifndef PONTE_GPU_SIM
#include <dlfcn.h>
#endif

/* ───────────────────────────── the library ───────────────────────────── */

#define NCCL_FUNCS(X)                                                                          \
    X(ncclGetErrorString)                                                                      \
    X(ncclGetVersion)                                                                          \
    X(ncclGetUniqueId)                                                                         \
    X(ncclCommInitRank)                                                                        \
    X(ncclCommDestroy)                                                                         \
    X(ncclAllReduce)                                                                           \
    X(ncclAllGather)                                                                           \
    X(ncclReduceScatter)                                                                       \
    X(ncclSend)                                                                                \
    X(ncclRecv)

static struct {
#define NCCL_MEMBER(f) __typeof__(f) *f;
    NCCL_FUNCS(NCCL_MEMBER)
#undef NCCL_MEMBER
    __typeof__(ncclGetLastError) *ncclGetLastError; /* optional (NCCL 2.13) */
    bool loaded, enabled;
    int version;
    char why[320];
} nc;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void)
{
    const char *e = getenv("PONTE_NCCL");
    nc.enabled = !(e && !strcmp(e, "0"));
#ifdef PONTE_GPU_SIM
#define NCCL_ASSIGN(f) nc.f = f;
    NCCL_FUNCS(NCCL_ASSIGN)
#undef NCCL_ASSIGN
    nc.ncclGetLastError = ncclGetLastError;
    nc.loaded = true;
#else
    const char *env = getenv("PONTE_NCCL_LIBNAME");
    const char *names[] = {env && *env ? env : "libnccl.so.2", "libnccl.so"};
    void *lib = NULL;
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(nc.why, sizeof nc.why, "libnccl could not be loaded (%s: %s)", names[0], dlerror());
        return;
    }
    bool ok = true;
#define NCCL_SYM(f)                                                                            \
    if (ok && !(*(void **)&nc.f = dlsym(lib, #f))) {                                           \
        ok = false;                                                                            \
        snprintf(nc.why, sizeof nc.why, "libnccl lacks %s", #f);                              \
    }
    NCCL_FUNCS(NCCL_SYM)
#undef NCCL_SYM
    if (!ok) {
        dlclose(lib);
        memset(&nc, 0, sizeof nc);
        return;
    }
    *(void **)&nc.ncclGetLastError = dlsym(lib, "ncclGetLastError");
    nc.loaded = true;
#endif
    if (nc.ncclGetVersion(&nc.version) != ncclSuccess) nc.version = 0;
}

bool pnD_nccl_available(const char **why)
{
    pthread_once(&load_once, load);
    const char *gpu_why = NULL;
    bool ok = nc.enabled && nc.loaded && pnG_available(&gpu_why);
    if (why)
        *why = ok ? "" : !nc.enabled ? "PONTE_NCCL=0" : !nc.loaded ? nc.why : gpu_why;
    return ok;
}

/* ───────────────────────────── types ───────────────────────────── */

/* How NCCL reduces each dtype: its type (-1: no NCCL reduction; NCCL has no 16-bit
 * integers), NCCL elements per element (complex64 sums as float32 pairs), the op that is the
 * sum (bool's or is the max over 0 / 1) and whether max / min exist (complex64 is ordered by
 * real then imaginary part: not NCCL's). Moving data (all_gather, send, recv) takes every
 * dtype as bytes. */
static const struct {
    int type, per, sum;
    bool ordered;
} REDUCE[PN_NUM_DTYPES] = {
    [PN_BOOL] = {ncclUint8, 1, ncclMax, true},        [PN_UINT8] = {ncclUint8, 1, ncclSum, true},
    [PN_UINT16] = {-1, 0, 0, false},                  [PN_UINT32] = {ncclUint32, 1, ncclSum, true},
    [PN_UINT64] = {ncclUint64, 1, ncclSum, true},     [PN_INT8] = {ncclInt8, 1, ncclSum, true},
    [PN_INT16] = {-1, 0, 0, false},                   [PN_INT32] = {ncclInt32, 1, ncclSum, true},
    [PN_INT64] = {ncclInt64, 1, ncclSum, true},       [PN_FLOAT16] = {ncclFloat16, 1, ncclSum, true},
    [PN_FLOAT32] = {ncclFloat32, 1, ncclSum, true},   [PN_FLOAT64] = {ncclFloat64, 1, ncclSum, true},
    [PN_BFLOAT16] = {ncclBfloat16, 1, ncclSum, true}, [PN_COMPLEX64] = {ncclFloat32, 2, ncclSum, false},
};

bool pnD_nccl_handles(pn_dtype dt, int reduce)
{
    pthread_once(&load_once, load);
    if ((unsigned)dt >= PN_NUM_DTYPES) return false;
    if (reduce < 0) return true;
    if (dt == PN_BFLOAT16 && nc.version < 21000) return false; /* before NCCL 2.10 */
    return REDUCE[dt].type >= 0 && (reduce == PND_SUM || REDUCE[dt].ordered);
}

/* ───────────────────────────── communicators ───────────────────────────── */

/* A group's NCCL communicator, with the host communicator it was bootstrapped over (which
 * also carries send's size header). */
typedef struct {
    ncclComm_t comm;
    const pnD_backend *be;
    void *host;
    int rank, size;
} nccl_comm;

/* r as 0, or -1 with PN_ERR_BACKEND naming the call and NCCL's reason. */
static int check(const nccl_comm *c, const char *what, ncclResult_t r)
{
    if (r == ncclSuccess) return 0;
    const char *more = nc.ncclGetLastError ? nc.ncclGetLastError(c ? c->comm : NULL) : NULL;
    bool has_more = more && *more;
    return pn_set_error(PN_ERR_BACKEND, "[nccl] %s failed: %s%s%s%s.", what, nc.ncclGetErrorString(r),
                        has_more ? " (" : "", has_more ? more : "", has_more ? ")" : "");
}

/* What a member says in the bootstrap's all_gather: whether it can use NCCL (or failed to
 * make the id, rank 0), its GPU's UUID, and rank 0's unique id. */
enum { HAS_NONE, HAS_NCCL, HAS_FAILED };
typedef struct {
    unsigned char state;
    unsigned char gpu[16];
    ncclUniqueId id;
} hello;

/* The first member after m of the all_gather's n hellos on m's GPU; -1 when none. */
static int same_gpu(const hello *all, int n, int m)
{
    for (int o = m + 1; o < n; o++)
        if (!memcmp(all[o].gpu, all[m].gpu, sizeof all[m].gpu)) return o;
    return -1;
}

int pnD_nccl_new(const pnD_backend *be, void *host_comm, void **out)
{
    *out = NULL;
    int rank = be->rank(host_comm), size = be->size(host_comm);
    hello mine = {pnD_nccl_available(NULL) ? HAS_NCCL : HAS_NONE, {0}, {{0}}};
    /* the evaluated node's GPU becomes the thread's current CUDA device: the UUID said and the
     * communicator made are that GPU's */
    if (mine.state == HAS_NCCL && (!pnG_cuda_stream(pnC_eval_stream) || pnG_device_uuid(mine.gpu))) {
        pn_clear_error(); /* said as HAS_NONE: every member then agrees on the host path */
        mine.state = HAS_NONE;
    }
    ncclResult_t r = ncclSuccess;
    if (mine.state == HAS_NCCL && rank == 0 && (r = nc.ncclGetUniqueId(&mine.id)) != ncclSuccess)
        mine.state = HAS_FAILED;
    hello *all = malloc((size_t)size * sizeof *all);
    if (!all) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[nccl] Out of memory.");
    int rc = be->all_gather(host_comm, &mine, all, (int64_t)sizeof mine, PN_UINT8);
    int lacking = -1, shared = -1, with = -1;
    for (int m = 0; rc == 0 && m < size && lacking < 0; m++)
        if (all[m].state != HAS_NCCL) lacking = m;
    for (int m = 0; rc == 0 && lacking < 0 && m < size && shared < 0; m++)
        if ((with = same_gpu(all, size, m)) >= 0) shared = m;
    nccl_comm *c = NULL;
    if (rc) {
        rc = -1;
    } else if (lacking >= 0 && all[lacking].state == HAS_FAILED) {
        rc = rank == 0 ? check(NULL, "ncclGetUniqueId", r)
                       : pn_set_error(PN_ERR_BACKEND, "[nccl] ncclGetUniqueId failed on rank 0.");
    } else if (lacking >= 0) { /* every member saw the same hellos: all take the host path */
        pn_set_error(PN_ERR_BACKEND, "[nccl] Rank %d of the group cannot use NCCL (no library or no "
                     "GPU there); its GPU arrays' collectives go through host memory.", lacking);
        rc = 1;
    } else if (shared >= 0) {
        pn_set_error(PN_ERR_BACKEND, "[nccl] Ranks %d and %d of the group share one GPU, and NCCL "
                     "needs a GPU per rank; their GPU arrays' collectives go through host memory.",
                     shared, with);
        rc = 1;
    } else { /* every member has NCCL and a GPU of its own */
        c = calloc(1, sizeof *c);
        if (!c) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[nccl] Out of memory.");
    }
    if (c) {
        *c = (nccl_comm){NULL, be, host_comm, rank, size};
#ifdef PONTE_GPU_SIM
        pnsim_nccl_bind(be, host_comm);
#endif
        rc = check(NULL, "ncclCommInitRank", nc.ncclCommInitRank(&c->comm, size, all[0].id, rank));
        if (rc) free(c);
        else *out = c;
    }
    free(all);
    return rc;
}

static int rank_of(void *comm) { return ((nccl_comm *)comm)->rank; }
static int size_of(void *comm) { return ((nccl_comm *)comm)->size; }

/* Destroys the communicator (the group's last reference went away). A failure is only said
 * on stderr: there is no caller to tell. */
static void comm_free(void *comm)
{
    nccl_comm *c = comm;
    if (!c) return;
    ncclResult_t r = nc.ncclCommDestroy(c->comm);
    if (r != ncclSuccess) fprintf(stderr, "ponte: ncclCommDestroy failed: %s\n", nc.ncclGetErrorString(r));
    free(c);
}

/* ───────────────────────────── collectives ───────────────────────────── */

/* The CUDA stream of the GPU node being evaluated. */
static pnsim_nccl_stream_t stream(void) { return (pnsim_nccl_stream_t)pnG_cuda_stream(pnC_eval_stream); }

static int all_reduce(void *comm, const void *in, void *out, int64_t n, pn_dtype dt, pnD_reduce op)
{
    nccl_comm *c = comm;
    if (!n) return 0;
    pnsim_nccl_stream_t s = stream();
    if (!s) return -1;
    ncclRedOp_t o = op == PND_MAX ? ncclMax : op == PND_MIN ? ncclMin : (ncclRedOp_t)REDUCE[dt].sum;
    return check(c, "ncclAllReduce", nc.ncclAllReduce(in, out, (size_t)(n * REDUCE[dt].per),
                                                       (ncclDataType_t)REDUCE[dt].type, o, c->comm, s));
}

static int all_gather(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    nccl_comm *c = comm;
    if (!n) return 0;
    pnsim_nccl_stream_t s = stream();
    if (!s) return -1;
    return check(c, "ncclAllGather", nc.ncclAllGather(in, out, (size_t)n * pn_dtype_size(dt), ncclUint8, c->comm, s));
}

static int reduce_scatter_sum(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    nccl_comm *c = comm;
    if (!n) return 0;
    pnsim_nccl_stream_t s = stream();
    if (!s) return -1;
    return check(c, "ncclReduceScatter",
                 nc.ncclReduceScatter(in, out, (size_t)(n * REDUCE[dt].per), (ncclDataType_t)REDUCE[dt].type,
                                      (ncclRedOp_t)REDUCE[dt].sum, c->comm, s));
}

/* Point-to-point: the message's byte count goes first through the host backend, so that a
 * recv of another size is an error (after draining the message) instead of NCCL's undefined
 * behaviour; then the bytes through NCCL. */
static int send_msg(void *comm, const void *buf, int64_t n, pn_dtype dt, int dst)
{
    nccl_comm *c = comm;
    if (dst == c->rank)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[send] A process cannot send to itself.");
    int64_t bytes = n * (int64_t)pn_dtype_size(dt);
    if (c->be->send(c->host, &bytes, 1, PN_INT64, dst)) return -1;
    if (!bytes) return 0;
    pnsim_nccl_stream_t s = stream();
    return s ? check(c, "ncclSend", nc.ncclSend(buf, (size_t)bytes, ncclUint8, dst, c->comm, s)) : -1;
}

static int recv_msg(void *comm, void *buf, int64_t n, pn_dtype dt, int src)
{
    nccl_comm *c = comm;
    if (src == c->rank)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[recv] A process cannot receive from itself.");
    int64_t want = n * (int64_t)pn_dtype_size(dt), bytes = 0;
    if (c->be->recv(c->host, &bytes, 1, PN_INT64, src)) return -1;
    pnsim_nccl_stream_t s = bytes ? stream() : NULL;
    if (bytes && !s) return -1;
    if (bytes == want)
        return bytes ? check(c, "ncclRecv", nc.ncclRecv(buf, (size_t)bytes, ncclUint8, src, c->comm, s)) : 0;
    void *scratch = bytes ? pnG_malloc((size_t)bytes, pnC_eval_stream) : NULL; /* drain it */
    if (bytes && !scratch) return -1;
    int rc = bytes ? check(c, "ncclRecv", nc.ncclRecv(scratch, (size_t)bytes, ncclUint8, src, c->comm, s)) : 0;
    if (scratch) pnG_free(scratch, (size_t)bytes, pnC_eval_stream);
    if (rc == 0)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                          "[recv] Expected %lld bytes from rank %d but %lld arrived (shapes or "
                          "dtypes differ between send and recv).", (long long)want, src, (long long)bytes);
    return rc;
}

const pnD_backend pnD_nccl = {
    .name = "nccl",
    .rank = rank_of,
    .size = size_of,
    .all_reduce = all_reduce,
    .all_gather = all_gather,
    .reduce_scatter_sum = reduce_scatter_sum,
    .send = send_msg,
    .recv = recv_msg,
    .free = comm_free,
};

#endif /* PONTE_HAS_GPU */
