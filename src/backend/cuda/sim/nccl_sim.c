/* nccl_sim.c — the simulated NCCL (nccl_sim.h). Simulated device memory is host memory and
 * runtime calls run at the call (which keeps stream order), so each collective runs at the
 * call as the host backend's collective (distributed.h's table: ring.c or mpi.c) over the
 * communicator that nccl.c bound before ncclCommInitRank, on the device buffers. It refuses
 * what NCCL would (a null or destroyed comm, a bad stream, a buffer outside device memory, a
 * type, op or peer out of range, ranks whose ids differ) with NCCL's result codes and a line
 * on stderr, never silent garbage. Grouped calls (ncclGroupStart/End) wait for the end, then
 * run sends before the rest (the host sends are buffered, its receives block).
 * Under PONTE_SIM_ASYNC a collective still runs at the call, after its stream's pending work
 * (pnsim_stream_ok), unlike the other libraries' routines, which are queued on their stream:
 * queued work runs on whichever host thread waits, or at random inside any runtime call, with
 * the simulator's queue lock held, and a host collective blocks that thread until every rank
 * reaches it. On hardware it blocks only the stream. Queued, a rank whose host thread then
 * waits in a host-side collective or any other blocking call its peers wait on from inside a
 * drain would deadlock where hardware proceeds, and ranks sharing one process (threads) would
 * deadlock on the one queue lock. */
#include "backend/cuda/sim/nccl_sim.h"
#include "distributed/distributed.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMM_MAGIC 0x4c43434e4d495350ull /* "PSIMNCCL" */
#define ID_MAGIC "pnsim-nccl-id"

struct ncclComm {
    uint64_t magic; /* COMM_MAGIC while alive */
    const pnD_backend *be;
    void *host;
    int rank, size;
};

/* The last refusal's or failure's details (ncclGetLastError: NCCL's ignores its comm too). */
static _Thread_local char last_error[512];

static _Thread_local const pnD_backend *bound_be;
static _Thread_local void *bound_comm;

void pnsim_nccl_bind(const void *backend, void *host_comm)
{
    bound_be = backend;
    bound_comm = host_comm;
}

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

const char *ncclGetLastError(ncclComm_t comm) { return last_error; }

ncclResult_t ncclGetVersion(int *version)
{
    if (!version) return ncclInvalidArgument;
    *version = 22800; /* the API of NCCL 2.28 */
    return ncclSuccess;
}

/* A refusal: r, with the reason on stderr and as the last error. */
static ncclResult_t refuse(ncclResult_t r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ncclResult_t refuse(ncclResult_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pnsim: %s\n", last_error);
    return r;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (!id) return refuse(ncclInvalidArgument, "ncclGetUniqueId: a null id");
    static atomic_uint counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s %ld %lld.%09ld %u", ID_MAGIC, (long)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec, atomic_fetch_add(&counter, 1));
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank)
{
    if (!out) return refuse(ncclInvalidArgument, "ncclCommInitRank: a null comm pointer");
    *out = NULL;
    const pnD_backend *be = bound_be;
    void *host = bound_comm;
    bound_be = NULL, bound_comm = NULL;
    if (!be || !host)
        return refuse(ncclInvalidUsage, "ncclCommInitRank: no host communicator bound "
                      "(pnsim_nccl_bind) for the simulated communicator");
    if (strncmp(id.internal, ID_MAGIC, strlen(ID_MAGIC)))
        return refuse(ncclInvalidArgument, "ncclCommInitRank: the id is not from ncclGetUniqueId");
    if (nranks != be->size(host) || rank < 0 || rank != be->rank(host))
        return refuse(ncclInvalidArgument, "ncclCommInitRank: rank %d of %d, but the host "
                      "communicator has rank %d of %d", rank, nranks, be->rank(host), be->size(host));
    /* every member must pass the same id (NCCL's bootstrap would never complete otherwise) */
    char *ids = malloc((size_t)nranks * sizeof id);
    if (!ids) return refuse(ncclSystemError, "ncclCommInitRank: out of memory");
    if (be->all_gather(host, &id, ids, sizeof id, PN_UINT8)) {
        free(ids);
        return refuse(ncclSystemError, "ncclCommInitRank: %s", pn_last_error_message());
    }
    int differs = -1;
    for (int r = 0; r < nranks && differs < 0; r++)
        if (memcmp(ids + (size_t)r * sizeof id, &id, sizeof id)) differs = r;
    free(ids);
    if (differs >= 0)
        return refuse(ncclInvalidUsage, "ncclCommInitRank: rank %d passed another unique id", differs);
    ncclComm_t c = calloc(1, sizeof *c);
    if (!c) return refuse(ncclSystemError, "ncclCommInitRank: out of memory");
    *c = (struct ncclComm){COMM_MAGIC, be, host, rank, nranks};
    *out = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm || comm->magic != COMM_MAGIC)
        return refuse(ncclInvalidArgument, "ncclCommDestroy: not a live communicator");
    comm->magic = 0;
    free(comm);
    return ncclSuccess;
}

/* ───────────────────────────── operations ───────────────────────────── */

typedef enum { OP_ALL_REDUCE, OP_ALL_GATHER, OP_REDUCE_SCATTER, OP_SEND, OP_RECV } op_kind;
static const char *const OP_NAMES[] = {"ncclAllReduce", "ncclAllGather", "ncclReduceScatter",
                                       "ncclSend", "ncclRecv"};

/* One checked call: count elements of type t per rank (the send count of all-gather and the
 * receive count of reduce-scatter, whose other buffer holds size times more). */
typedef struct {
    op_kind kind;
    const void *in;
    void *out;
    size_t count;
    pn_dtype dt;
    pnD_reduce red;
    int peer;
    ncclComm_t comm;
} sim_op;

/* Ponte's dtype of NCCL type t; false for a type the simulator lacks (float8). */
static bool dtype_of(ncclDataType_t t, pn_dtype *dt)
{
    static const int map[10] = {PN_INT8, PN_UINT8, PN_INT32, PN_UINT32, PN_INT64,
                                PN_UINT64, PN_FLOAT16, PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16};
    if ((unsigned)t >= 10) return false;
    *dt = (pn_dtype)map[t];
    return true;
}

static ncclResult_t run(const sim_op *o)
{
    ncclComm_t c = o->comm;
    size_t es = pn_dtype_size(o->dt), n = o->count, size = (size_t)c->size;
    int rc = 0;
    switch (o->kind) {
    case OP_ALL_REDUCE: rc = c->be->all_reduce(c->host, o->in, o->out, (int64_t)n, o->dt, o->red); break;
    case OP_ALL_GATHER: rc = c->be->all_gather(c->host, o->in, o->out, (int64_t)n, o->dt); break;
    case OP_SEND: rc = c->be->send(c->host, o->in, (int64_t)n, o->dt, o->peer); break;
    case OP_RECV: rc = c->be->recv(c->host, o->out, (int64_t)n, o->dt, o->peer); break;
    case OP_REDUCE_SCATTER:
        if (o->red == PND_SUM) {
            rc = c->be->reduce_scatter_sum(c->host, o->in, o->out, (int64_t)n, o->dt);
        } else { /* max / min: the whole reduction, then this rank's block */
            char *all = malloc(n * size * es + 1);
            rc = all ? c->be->all_reduce(c->host, o->in, all, (int64_t)(n * size), o->dt, o->red)
                     : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[nccl sim] Out of memory.");
            if (rc == 0) memcpy(o->out, all + (size_t)c->rank * n * es, n * es);
            free(all);
        }
        break;
    }
    if (rc == 0) return ncclSuccess;
    snprintf(last_error, sizeof last_error, "%s over the host backend: %s", OP_NAMES[o->kind],
             pn_last_error_message());
    return ncclSystemError;
}

/* Calls between ncclGroupStart and the matching ncclGroupEnd (per thread, as NCCL's). */
static _Thread_local int group_depth;
static _Thread_local sim_op *group_ops;
static _Thread_local int group_n, group_cap;

/* Checks o as NCCL would, then runs it, or queues it inside a group. */
static ncclResult_t submit(sim_op o, ncclDataType_t t, ncclRedOp_t op, pnsim_nccl_stream_t s)
{
    const char *what = OP_NAMES[o.kind];
    ncclComm_t c = o.comm;
    if (!c || c->magic != COMM_MAGIC)
        return refuse(ncclInvalidArgument, "%s: not a live communicator", what);
    if (!dtype_of(t, &o.dt))
        return refuse(ncclInvalidArgument, "%s: datatype %d is not supported", what, (int)t);
    bool reduces = o.kind == OP_ALL_REDUCE || o.kind == OP_REDUCE_SCATTER;
    if (reduces && op != ncclSum && op != ncclMax && op != ncclMin)
        return refuse(ncclInvalidArgument, "%s: reduction %d is not simulated", what, (int)op);
    o.red = op == ncclMax ? PND_MAX : op == ncclMin ? PND_MIN : PND_SUM;
    if (!pnsim_stream_ok(s)) return refuse(ncclInvalidArgument, "%s: an invalid stream", what);
    bool p2p = o.kind == OP_SEND || o.kind == OP_RECV;
    if (p2p && (o.peer < 0 || o.peer >= c->size))
        return refuse(ncclInvalidArgument, "%s: peer %d outside the communicator's %d ranks", what,
                      o.peer, c->size);
    size_t bytes = o.count * pn_dtype_size(o.dt), many = bytes * (size_t)c->size;
    size_t in_bytes = o.kind == OP_REDUCE_SCATTER ? many : bytes;
    size_t out_bytes = o.kind == OP_ALL_GATHER ? many : bytes;
    if (o.count && o.kind != OP_RECV && !pnsim_is_device_memory(o.in, in_bytes))
        return refuse(ncclInvalidArgument, "%s: the send buffer [%p, +%zu) is not device memory",
                      what, o.in, in_bytes);
    if (o.count && o.kind != OP_SEND && !pnsim_is_device_memory(o.out, out_bytes))
        return refuse(ncclInvalidArgument, "%s: the receive buffer [%p, +%zu) is not device "
                      "memory", what, o.out, out_bytes);
    if (o.count == 0) return ncclSuccess;
    if (group_depth == 0) return run(&o);
    if (group_n == group_cap) {
        int cap = group_cap ? 2 * group_cap : 8;
        sim_op *ops = realloc(group_ops, (size_t)cap * sizeof *ops);
        if (!ops) return refuse(ncclSystemError, "%s: out of memory", what);
        group_ops = ops, group_cap = cap;
    }
    group_ops[group_n++] = o;
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void)
{
    group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void)
{
    if (group_depth == 0) return refuse(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
    if (--group_depth > 0) return ncclSuccess;
    ncclResult_t r = ncclSuccess;
    for (int pass = 0; pass < 2; pass++) /* sends first */
        for (int i = 0; i < group_n && r == ncclSuccess; i++)
            if ((group_ops[i].kind == OP_SEND) == (pass == 0)) r = run(&group_ops[i]);
    group_n = 0;
    return r;
}

ncclResult_t ncclAllReduce(const void *in, void *out, size_t count, ncclDataType_t t, ncclRedOp_t op,
                           ncclComm_t comm, pnsim_nccl_stream_t s)
{
    return submit((sim_op){OP_ALL_REDUCE, in, out, count, 0, 0, 0, comm}, t, op, s);
}

ncclResult_t ncclAllGather(const void *in, void *out, size_t count, ncclDataType_t t, ncclComm_t comm,
                           pnsim_nccl_stream_t s)
{
    return submit((sim_op){OP_ALL_GATHER, in, out, count, 0, 0, 0, comm}, t, ncclSum, s);
}

ncclResult_t ncclReduceScatter(const void *in, void *out, size_t count, ncclDataType_t t, ncclRedOp_t op,
                               ncclComm_t comm, pnsim_nccl_stream_t s)
{
    return submit((sim_op){OP_REDUCE_SCATTER, in, out, count, 0, 0, 0, comm}, t, op, s);
}

ncclResult_t ncclSend(const void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t comm,
                      pnsim_nccl_stream_t s)
{
    return submit((sim_op){OP_SEND, buf, NULL, count, 0, 0, peer, comm}, t, ncclSum, s);
}

ncclResult_t ncclRecv(void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t comm,
                      pnsim_nccl_stream_t s)
{
    return submit((sim_op){OP_RECV, NULL, buf, count, 0, 0, peer, comm}, t, ncclSum, s);
}
