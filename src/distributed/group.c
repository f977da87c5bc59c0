/* group.c — mlx.core.distributed's C API: process groups and their collectives. Ponte has no
 * communication backend yet (MPI and NCCL come later behind this same API), so the only group
 * is the singleton one (rank 0 of 1), where the reductions and gathers are copies and
 * point-to-point calls are errors, as MLX behaves without a backend. */
#include "core/core.h"

#include <string.h>

/* A process group. Backends will add their communicator here; the singleton has none. */
struct pn_dist_group {
    int rank, size;
    const char *backend; /* "singleton" until a backend exists */
};

static pn_dist_group world = {0, 1, "singleton"};

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
    (void)backend; /* no backend is compiled in */
    return false;
}

pn_dist_group *pn_dist_init(bool strict, const char *backend)
{
    if (!backend) backend = "any";
    if (!known_backend(backend))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[distributed] The only valid values for backend are 'any', 'mpi', "
                        "'nccl', 'jaccl' and 'ring' but '%s' was provided.", backend);
    if (strict)
        return pnC_fail(PN_ERR_BACKEND, !strcmp(backend, "any")
                                            ? "[distributed] Couldn't initialize any backend"
                                            : "[distributed] Couldn't initialize the %s backend",
                        backend);
    return &world;
}

int pn_dist_group_rank(const pn_dist_group *g) { return (g ? g : &world)->rank; }
int pn_dist_group_size(const pn_dist_group *g) { return (g ? g : &world)->size; }

pn_dist_group *pn_dist_group_split(pn_dist_group *g, int color, int key)
{
    (void)color, (void)key;
    if (!g) g = &world;
    if (g->size == 1)
        return pnC_fail(PN_ERR_BACKEND, "Cannot split the distributed group further.");
    return pnC_fail(PN_ERR_BACKEND, "[distributed] split: no backend for group '%s'.", g->backend);
}

void pn_dist_group_free(pn_dist_group *g)
{
    (void)g; /* the singleton is static; split groups will be freed here */
}

/* The collectives: a copy of x on a group of one (a new array, as MLX's). */
static pn_array *collective(const char *op, pn_array *x, pn_dist_group *g)
{
    if (!pnC_inputs_ok(op, 1, &x)) return NULL;
    if (!g) g = &world;
    if (g->size != 1)
        return pnC_fail(PN_ERR_BACKEND, "[%s] no backend for group '%s'.", op, g->backend);
    return pn_copy(x);
}

pn_array *pn_dist_all_sum(pn_array *x, pn_dist_group *g) { return collective("all_sum", x, g); }
pn_array *pn_dist_all_max(pn_array *x, pn_dist_group *g) { return collective("all_max", x, g); }
pn_array *pn_dist_all_min(pn_array *x, pn_dist_group *g) { return collective("all_min", x, g); }
pn_array *pn_dist_all_gather(pn_array *x, pn_dist_group *g) { return collective("all_gather", x, g); }
pn_array *pn_dist_sum_scatter(pn_array *x, pn_dist_group *g)
{
    return collective("sum_scatter", x, g);
}

/* Point-to-point: there is no other process in a singleton group. */
static pn_array *p2p(const char *what, pn_dist_group *g)
{
    if (!g) g = &world;
    if (g->size == 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "Cannot %s a singleton group", what);
    return pnC_fail(PN_ERR_BACKEND, "[distributed] no backend for group '%s'.", g->backend);
}

pn_array *pn_dist_send(pn_array *x, int dst, pn_dist_group *g)
{
    (void)dst;
    if (!pnC_inputs_ok("send", 1, &x)) return NULL;
    return p2p("send to", g);
}

pn_array *pn_dist_recv(const int64_t *shape, int ndim, pn_dtype dtype, int src, pn_dist_group *g)
{
    (void)shape, (void)ndim, (void)dtype, (void)src;
    return p2p("recv from", g);
}

pn_array *pn_dist_recv_like(pn_array *x, int src, pn_dist_group *g)
{
    if (!pnC_inputs_ok("recv_like", 1, &x)) return NULL;
    return pn_dist_recv(x->shape, x->ndim, x->dtype, src, g);
}
