/* group.c — mlx.core.distributed's C API: process groups and their collectives as lazy
 * primitives (AllReduce, AllGather, ReduceScatter, Send, Recv) over a communication backend
 * (distributed.h; MPI in mpi.c, TCP in ring.c), and over NCCL (nccl.c) for GPU nodes when
 * every member has it. Without a launcher the global group is the singleton (rank 0 of 1),
 * where the collectives are copies and point-to-point calls are errors, as in MLX. */
#include "distributed/distributed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A process group: a backend communicator, or none for a group of one, and the NCCL
 * communicator of its GPU nodes once made. Split groups are reference-counted (the caller's
 * handle and every pending node using them); the global groups are static. */
struct pn_dist_group {
    atomic_int refs;
    int rank, size;
    const pnD_backend *be; /* NULL: the singleton */
    void *comm;
    bool is_static;
    int nccl_state; /* NCCL_*: whether nccl holds pnD_nccl's communicator */
    void *nccl;
    char nccl_why[256]; /* NCCL_NONE: why NCCL cannot serve this group */
};
enum { NCCL_UNTRIED, NCCL_READY, NCCL_NONE };

static pn_dist_group singleton = {.rank = 0, .size = 1, .is_static = true};
/* The backends in the order "any" tries them, and their world groups (be set once joined). */
static const pnD_backend *const BACKEND_ORDER[] = {&pnD_mpi, &pnD_ring};
#define NBACKEND (int)(sizeof BACKEND_ORDER / sizeof BACKEND_ORDER[0])
static pn_dist_group worlds[NBACKEND] = {{.is_static = true}, {.is_static = true}};
static pn_dist_group *world; /* the group pn_dist_init settled on (NULL: not yet) */
static pthread_mutex_t world_mutex = PTHREAD_MUTEX_INITIALIZER;

static const char *const BACKENDS[] = {"any", "mpi", "ring", "nccl", "jaccl"};

/* Whether name is one of MLX's backend names. */
static bool known_backend(const char *name)
{
    for (size_t i = 0; i < sizeof BACKENDS / sizeof BACKENDS[0]; i++)
        if (!strcmp(name, BACKENDS[i])) return true;
    return false;
}

bool pn_dist_is_available(const char *backend)
{
    bool any = !backend || !strcmp(backend, "any");
    if (backend && !strcmp(backend, "nccl")) return pnD_nccl_available(NULL);
    for (int b = 0; b < NBACKEND; b++)
        if ((any || !strcmp(backend, BACKEND_ORDER[b]->name)) && BACKEND_ORDER[b]->available()) return true;
    return false; /* jaccl is not implemented */
}

/* g's NCCL communicator, made first when create (a collective over g, so only at a point
 * every member reaches: a collective's first evaluation on a GPU stream); NULL: g's GPU
 * nodes take the host path (NCCL cannot serve g, or create was false before it was made).
 * *rc: pnD_nccl_new's code when this call tried to make it (1: NCCL cannot serve g, the
 * reason recorded as an error; -1: making it failed), else 0. Nodes of one group evaluate
 * one at a time (every member runs them in the same order). */
static void *group_nccl(pn_dist_group *g, bool create, int *rc)
{
    *rc = 0;
    if (g->nccl_state == NCCL_UNTRIED && create) {
        *rc = pnD_nccl_new(g->be, g->comm, &g->nccl);
        g->nccl_state = g->nccl ? NCCL_READY : NCCL_NONE; /* a failure is not retried */
        if (*rc) snprintf(g->nccl_why, sizeof g->nccl_why, "%s", pn_last_error_message());
    }
    return g->nccl_state == NCCL_READY ? g->nccl : NULL;
}

/* Backend b's world group, joining it on first use; NULL with an error. */
static pn_dist_group *init_world(int b)
{
    pn_dist_group *w = &worlds[b];
    if (!w->be) {
        const pnD_backend *be = BACKEND_ORDER[b];
        void *comm = be->init();
        if (!comm) return NULL;
        w->comm = comm;
        w->rank = be->rank(comm);
        w->size = be->size(comm);
        w->be = be;
    }
    return w;
}

pn_dist_group *pn_dist_init(bool strict, const char *backend)
{
    if (!backend) backend = "any";
    if (!known_backend(backend))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[distributed] The only valid values for backend are 'any', 'mpi', "
                        "'nccl', 'jaccl' and 'ring' but '%s' was provided.", backend);
    bool any = !strcmp(backend, "any"), had_error = pnC_failed(), tried = false;
    /* nccl: the ring's world (or the world already joined) with NCCL for its GPU nodes */
    const char *no_nccl = NULL;
    bool nccl = !strcmp(backend, "nccl"), nccl_ok = nccl && pnD_nccl_available(&no_nccl);
    pthread_mutex_lock(&world_mutex);
    pn_dist_group *g = NULL;
    for (int b = 0; b < NBACKEND && !g && !tried && (!nccl || nccl_ok); b++) {
        const pnD_backend *be = BACKEND_ORDER[b];
        bool joined = world == &worlds[b];
        if (!any && strcmp(backend, be->name) && !(nccl && (be == &pnD_ring || joined))) continue;
        if (joined) {
            g = world;
        } else if ((!world || world == &singleton) && be->launched() && (strict || be->available())) {
            tried = true; /* the launcher's backend: its failure is the answer */
            g = init_world(b); /* an unusable library fails here with the reason */
            if (g) world = g;
        }
    }
    if (!g && strict && !tried) {
        bool ours = any || nccl || !strcmp(backend, "mpi") || !strcmp(backend, "ring");
        char nccl_why[400];
        snprintf(nccl_why, sizeof nccl_why, "NCCL is not available: %s", no_nccl ? no_nccl : "");
        const char *why = !ours ? "Ponte implements the mpi, ring and nccl backends"
                          : nccl && !nccl_ok ? nccl_why
                          : world && world != &singleton ? "this process already joined another backend's group"
                          : nccl ? "the process was not started by a launcher setting MLX_RANK, "
                                   "MLX_WORLD_SIZE, NCCL_HOST_IP and NCCL_PORT (or the ring's variables)"
                          : "the process was not started by mpirun, or by a launcher setting "
                            "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT";
        if (any)
            pnC_fail(PN_ERR_BACKEND, "[distributed] Couldn't initialize any backend (%s).", why);
        else
            pnC_fail(PN_ERR_BACKEND, "[distributed] Couldn't initialize the %s backend (%s).",
                     backend, why);
    }
    if (!g && !strict) {
        if (!had_error) pn_clear_error(); /* a failed start falls back to the singleton */
        g = world ? world : &singleton;
        if (!world) world = g;
    }
    pthread_mutex_unlock(&world_mutex);
    int rc = 0;
    if (g && nccl && g->be) { /* every member calls init: make it now */
        group_nccl(g, true, &rc);
        if (!rc && strict && g->nccl_state == NCCL_NONE) /* an earlier attempt's answer */
            rc = pn_set_error(PN_ERR_BACKEND, "%s", g->nccl_why);
    }
    if (rc && !strict && !had_error) pn_clear_error(); /* the host path stays */
    return rc && strict ? NULL : g;
}

/* g, or the global group for NULL (initialized non-strictly, as MLX's collectives do). */
static pn_dist_group *resolve(pn_dist_group *g)
{
    if (g) return g;
    pthread_mutex_lock(&world_mutex);
    pn_dist_group *w = world;
    pthread_mutex_unlock(&world_mutex);
    return w ? w : pn_dist_init(false, "any");
}

int pn_dist_group_rank(const pn_dist_group *g) { return resolve((pn_dist_group *)g)->rank; }
int pn_dist_group_size(const pn_dist_group *g) { return resolve((pn_dist_group *)g)->size; }

static void group_retain(pn_dist_group *g)
{
    if (!g->is_static) atomic_fetch_add(&g->refs, 1);
}

pn_dist_group *pn_dist_group_split(pn_dist_group *g, int color, int key)
{
    g = resolve(g);
    if (!g->be || g->size == 1)
        return pnC_fail(PN_ERR_BACKEND, "Cannot split the distributed group further.");
    if (color < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[split] The color must be >= 0, got %d.", color);
    pn_dist_group *s = calloc(1, sizeof *s);
    if (!s) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    s->comm = g->be->split(g->comm, color, key < 0 ? g->rank : key);
    if (!s->comm) {
        free(s);
        return NULL;
    }
    s->be = g->be;
    s->rank = s->be->rank(s->comm);
    s->size = s->be->size(s->comm);
    atomic_init(&s->refs, 1);
    return s;
}

void pn_dist_group_free(pn_dist_group *g)
{
    if (!g || g->is_static || atomic_fetch_sub(&g->refs, 1) != 1) return;
    if (g->nccl) pnD_nccl.free(g->nccl);
    g->be->free(g->comm);
    free(g);
}

/* ───────────────────────────── primitives ───────────────────────────── */

typedef enum { ALL_REDUCE, ALL_GATHER, SUM_SCATTER, SEND, RECV } dist_kind;

/* A node's params: its group (one reference held while the node lives), what it does, the
 * reduction and the peer rank of send / recv. */
typedef struct {
    pn_dist_group *g;
    int kind, reduce, peer;
} dist_params;

static const char *const KIND_NAMES[] = {"all_reduce", "all_gather", "sum_scatter", "send", "recv"};

/* A node's params (and a compiled trace's copy of them) hold a reference to the group. */
static void dist_release(void *params) { pn_dist_group_free(((dist_params *)params)->g); }
static void dist_retain(void *params) { group_retain(((dist_params *)params)->g); }

/* The collective's check that every process passes the same size and dtype (through the
 * host backend), so that a mismatch is an error on every rank rather than a hang or garbage;
 * nothing for send / recv. */
static int dist_check(const dist_params *p, pn_array *const *in)
{
    if (p->kind == SEND || p->kind == RECV) return 0;
    return p->g->be->check_same(p->g->comm, KIND_NAMES[p->kind], in[0]->size, in[0]->dtype);
}

/* The node's one call of backend be over comm: the input made row-contiguous, the output
 * allocated (on the kernel's side: host memory, or device memory in a GPU kernel). */
static int dist_run(const dist_params *p, const pnD_backend *be, void *comm, pn_array *const *in,
                    pn_array *const *out)
{
    const char *op = KIND_NAMES[p->kind];
    if (p->kind == SEND) {
        pn_array *x = pnC_contiguous(in[0]);
        if (!x) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[send] Out of memory.");
        int rc = be->send(comm, pnC_data(x), x->size, x->dtype, p->peer);
        pnC_decref(x);
        if (rc == 0) pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
        return rc;
    }
    if (pnC_alloc_output(out[0])) return -1;
    if (p->kind == RECV) return be->recv(comm, pnC_data(out[0]), out[0]->size, out[0]->dtype, p->peer);
    pn_array *x = pnC_contiguous(in[0]);
    if (!x) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
    void *src = pnC_data(x), *dst = pnC_data(out[0]);
    int rc = p->kind == ALL_REDUCE ? be->all_reduce(comm, src, dst, x->size, x->dtype, p->reduce)
             : p->kind == ALL_GATHER ? be->all_gather(comm, src, dst, x->size, x->dtype)
                                     : be->reduce_scatter_sum(comm, src, dst, out[0]->size, x->dtype);
    pnC_decref(x);
    return rc;
}

/* The CPU kernel. */
static int dist_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    return dist_check(p, in) || dist_run(p, p->g->be, p->g->comm, in, out) ? -1 : 0;
}

/* Collectives of GPU nodes by path: [0] through host memory, [1] through NCCL. */
static atomic_llong gpu_paths[2];

int64_t pnD_gpu_path_count(bool nccl) { return atomic_load(&gpu_paths[nccl]); }

/* On a GPU stream: NCCL on the device buffers when the group has its communicator (made by
 * the group's first GPU collective; send / recv only use one that exists, since making it
 * needs every member) and NCCL carries the dtype (pnD_nccl_handles). Otherwise through host
 * memory: the inputs brought to the host, the CPU kernel, the outputs migrating back to the
 * device when a GPU kernel next reads them. */
static int dist_eval_gpu(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    bool p2p = p->kind == SEND || p->kind == RECV;
    int rc = dist_check(p, in);
    void *nc = rc == 0 ? group_nccl(p->g, !p2p, &rc) : NULL;
    if (rc == 1) { /* NCCL cannot serve this group (every member knows): the host path */
        pn_clear_error();
        rc = 0;
    }
    if (rc) return -1;
    pn_dtype dt = p->kind == RECV ? out[0]->dtype : in[0]->dtype;
    bool use_nccl = nc && pnD_nccl_handles(dt, p2p || p->kind == ALL_GATHER ? -1 : p->reduce);
    if (use_nccl) {
        rc = dist_run(p, &pnD_nccl, nc, in, out);
    } else {
        for (int i = 0; i < nd->nin && rc == 0; i++) rc = pnC_buffer_to_host(in[i]->buf);
        bool was = pnC_eval_gpu;
        pnC_eval_gpu = false;
        if (rc == 0) rc = dist_run(p, p->g->be, p->g->comm, in, out);
        pnC_eval_gpu = was;
    }
    if (rc == 0) atomic_fetch_add(&gpu_paths[use_nccl], 1);
    return rc;
}

static pn_array *all_reduce(pn_array *x, pn_dist_group *g, pnD_reduce op);

/* all_sum / all_max / all_min: the cotangent passes through unchanged, as MLX (each rank's
 * cotangent is taken to be the replicated one); forward mode exists for the sum only. */
static int reduce_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) {
        grads[i] = cot[0] ? pnC_alias(cot[0]) : NULL;
        if (cot[0] && !grads[i]) return -1;
    }
    return 0;
}

static int reduce_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    out_tan[0] = NULL;
    if (p->reduce != PND_SUM)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[all_reduce] Only all reduce sum is supported in forward mode.");
    if (!tan[0]) return 0;
    out_tan[0] = all_reduce(tan[0], p->g, PND_SUM);
    return out_tan[0] ? 0 : -1;
}

static int reduce_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    out[0] = all_reduce(in[0], p->g, p->reduce);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

/* all_gather: the cotangent's rows of this rank (MLX's rule); forward mode gathers tangents. */
static int gather_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0] || nargs == 0) return 0;
    const pn_array *x = in[0];
    int64_t rows = x->ndim ? x->shape[0] : 1;
    int64_t start[PNC_MAX_NDIM] = {0}, stop[PNC_MAX_NDIM];
    int n = cot[0]->ndim;
    for (int d = 0; d < n; d++) stop[d] = cot[0]->shape[d];
    start[0] = (int64_t)p->g->rank * rows;
    stop[0] = start[0] + rows;
    pn_scope_push();
    pn_array *r = pn_slice(cot[0], start, stop, NULL, n);
    if (x->ndim == 0) r = pn_squeeze(r, (int[]){0}, 1);
    for (int i = 0; i < nargs; i++) grads[i] = i == 0 || !r ? r : pnC_alias(r);
    pn_scope_pop_keep(grads, nargs);
    return r ? 0 : -1;
}

/* jvp of all_gather and sum_scatter: the same collective of the tangent. */
static int same_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    out_tan[0] = p->kind == ALL_GATHER ? pn_dist_all_gather(tan[0], p->g)
                                       : pn_dist_sum_scatter(tan[0], p->g);
    return out_tan[0] ? 0 : -1;
}

/* sum_scatter: this rank's shard is the only part of the output that depends on its x here,
 * so the cotangent lands at the shard's rows, zeros elsewhere (the per-process derivative
 * that MLX's all_sum and all_gather rules also give; MLX has no rule for sum_scatter). */
static int scatter_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0] || nargs == 0) return 0;
    int64_t rows = cot[0]->shape[0];
    int64_t low = p->g->rank * rows, high = (int64_t)(p->g->size - 1 - p->g->rank) * rows;
    grads[0] = pn_pad(cot[0], (int[]){0}, &low, &high, 1, NULL, PN_PAD_CONSTANT);
    for (int i = 1; i < nargs && grads[0]; i++) grads[i] = pnC_alias(grads[0]);
    return grads[0] ? 0 : -1;
}

static int send_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes, pn_array **out,
                     int *out_axes)
{
    const dist_params *p = PNC_PARAMS(nd, dist_params);
    out[0] = pn_dist_send(in[0], p->peer, p->g);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

#define DIST_PRIM(var, pname, ...)                                                             \
    static const pnC_primitive var = {.name = pname,                                           \
                                      .eval = {[PN_CPU] = dist_eval, [PN_GPU] = dist_eval_gpu}, \
                                      .release_params = dist_release,                  \
                                      .retain_params = dist_retain, .effectful = true, __VA_ARGS__}
DIST_PRIM(all_reduce_prim, "AllReduce", .vjp = reduce_vjp, .jvp = reduce_jvp, .vmap = reduce_vmap);
DIST_PRIM(all_gather_prim, "AllGather", .vjp = gather_vjp, .jvp = same_jvp);
DIST_PRIM(sum_scatter_prim, "ReduceScatter", .vjp = scatter_vjp, .jvp = same_jvp);
DIST_PRIM(send_prim, "Send", .vmap = send_vmap);
DIST_PRIM(recv_prim, "Recv");

/* The node of a distributed primitive over g (which it retains through dist_retain). */
static pn_array *make(const pnC_primitive *prim, pn_dist_group *g, dist_kind kind, int reduce,
                      int peer, int nin, pn_array *x, pn_dtype dtype, const int64_t *shape, int ndim)
{
    dist_params p;
    memset(&p, 0, sizeof p); /* the padding too: compile compares params as bytes */
    p.g = g, p.kind = kind, p.reduce = reduce, p.peer = peer;
    return pnC_make(prim, &p, sizeof p, nin, nin ? &x : NULL, dtype, shape, ndim);
}

static pn_array *all_reduce(pn_array *x, pn_dist_group *g, pnD_reduce op)
{
    static const char *const names[] = {"all_sum", "all_max", "all_min"};
    if (!pnC_inputs_ok(names[op], 1, &x)) return NULL;
    g = resolve(g);
    if (!g) return NULL;
    if (g->size == 1) return pn_copy(x);
    return make(&all_reduce_prim, g, ALL_REDUCE, op, 0, 1, x, x->dtype, x->shape, x->ndim);
}

pn_array *pn_dist_all_sum(pn_array *x, pn_dist_group *g) { return all_reduce(x, g, PND_SUM); }
pn_array *pn_dist_all_max(pn_array *x, pn_dist_group *g) { return all_reduce(x, g, PND_MAX); }
pn_array *pn_dist_all_min(pn_array *x, pn_dist_group *g) { return all_reduce(x, g, PND_MIN); }

pn_array *pn_dist_all_gather(pn_array *x, pn_dist_group *g)
{
    if (!pnC_inputs_ok("all_gather", 1, &x)) return NULL;
    if (!(g = resolve(g))) return NULL;
    if (g->size == 1) return pn_copy(x);
    int64_t shape[PNC_MAX_NDIM];
    int ndim = x->ndim ? x->ndim : 1;
    if (x->ndim) memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    else shape[0] = 1;
    shape[0] *= g->size;
    return make(&all_gather_prim, g, ALL_GATHER, 0, 0, 1, x, x->dtype, shape, ndim);
}

pn_array *pn_dist_sum_scatter(pn_array *x, pn_dist_group *g)
{
    if (!pnC_inputs_ok("sum_scatter", 1, &x)) return NULL;
    if (!(g = resolve(g))) return NULL;
    if (g->size == 1) return pn_copy(x);
    char buf[256];
    if (x->ndim == 0 || x->shape[0] % g->size != 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[sum_scatter] Invalid shape=%s for a group of size %d. The first "
                        "dimension (axis 0) must be divisible by the group size.",
                        pnC_shape_str(x->shape, x->ndim, buf, sizeof buf), g->size);
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[0] /= g->size;
    return make(&sum_scatter_prim, g, SUM_SCATTER, PND_SUM, 0, 1, x, x->dtype, shape, x->ndim);
}

/* The group of a point-to-point call with its peer checked; NULL with an error. */
static pn_dist_group *p2p_group(pn_dist_group *g, int peer, bool send)
{
    if (!(g = resolve(g))) return NULL;
    if (g->size == 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "Cannot %s a singleton group",
                        send ? "send to" : "recv from");
    if (peer < 0 || peer >= g->size)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "Invalid %s=%d for a group of size %d",
                        send ? "destination" : "source", peer, g->size);
    return g;
}

pn_array *pn_dist_send(pn_array *x, int dst, pn_dist_group *g)
{
    if (!pnC_inputs_ok("send", 1, &x) || !(g = p2p_group(g, dst, true))) return NULL;
    return make(&send_prim, g, SEND, 0, dst, 1, x, x->dtype, x->shape, x->ndim);
}

pn_array *pn_dist_recv(const int64_t *shape, int ndim, pn_dtype dtype, int src, pn_dist_group *g)
{
    if (ndim < 0 || (ndim > 0 && !shape))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[recv] Invalid shape (ndim %d).", ndim);
    if (pnC_check_shape("recv", shape, ndim)) return NULL;
    if (!pnC_dtype_valid(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[recv] Invalid dtype %d.", (int)dtype);
    if (!(g = p2p_group(g, src, false))) return NULL;
    return make(&recv_prim, g, RECV, 0, src, 0, NULL, dtype, shape, ndim);
}

pn_array *pn_dist_recv_like(pn_array *x, int src, pn_dist_group *g)
{
    if (!pnC_inputs_ok("recv_like", 1, &x)) return NULL;
    return pn_dist_recv(x->shape, x->ndim, x->dtype, src, g);
}
