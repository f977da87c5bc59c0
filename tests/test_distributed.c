/* test_distributed.c — the distributed API in a process no launcher started: backend
 * availability (MPI loads at run time when installed; the ring backend is built in), the
 * singleton global group, strict initialization errors and eager argument checks. The
 * multi-process checks are tests/distributed/collectives.c, which ctest runs under mpirun
 * (test_mpi) and as ring processes (test_ring, test_ring_hostfile; test_ring_gpu,
 * test_ring_gpu_host and test_nccl on the simulated GPU build). */
#include "harness.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* Whether Open MPI's library loads here (what pn_dist_is_available("mpi") must say). */
static bool libmpi_loads(void)
{
    const char *names[] = {"libmpi.so.40", "libmpi.so"};
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            return true;
        }
    }
    return false;
}

TEST(availability)
{
    pn_scope_push();
    CHECK(pn_dist_is_available("mpi") == libmpi_loads());
    CHECK(pn_dist_is_available("ring") && pn_dist_is_available("any") && pn_dist_is_available(NULL));
    CHECK(!pn_dist_is_available("jaccl") && !pn_dist_is_available("tcp"));
    /* nccl: a GPU and libnccl; the simulated build's NCCL is built in (PONTE_NCCL=0: off) */
#ifdef PONTE_GPU_SIM
    const char *off = getenv("PONTE_NCCL");
    CHECK(pn_dist_is_available("nccl") == (pn_gpu_available() && !(off && !strcmp(off, "0"))));
#else
    if (!pn_gpu_available()) CHECK(!pn_dist_is_available("nccl"));
#endif
    pn_scope_pop();
}

TEST(singleton_without_launcher)
{
    pn_scope_push();
    if (getenv("OMPI_COMM_WORLD_SIZE")) { /* started by mpirun: nothing to check here */
        pn_scope_pop();
        return;
    }
    const char *names[] = {"any", "mpi", "ring", "nccl", "jaccl"};
    for (int i = 0; i < 5; i++) {
        pn_clear_error();
        CHECK(!pn_dist_init(true, names[i]) && pn_last_error() == PN_ERR_BACKEND);
        const char *msg = pn_last_error_message();
        CHECK_MSG(msg && strstr(msg, "Couldn't initialize"), "strict %s: %s", names[i], msg);
        if (i == 1 && libmpi_loads()) CHECK_MSG(strstr(msg, "mpirun"), "mpi: %s", msg);
        if (i == 3) /* nccl: why NCCL is unusable, or which launch it needs */
            CHECK_MSG(strstr(msg, pn_dist_is_available("nccl") ? "NCCL_HOST_IP" : "NCCL is not available"),
                      "nccl: %s", msg);
    }
    pn_clear_error();
    pn_dist_group *g = pn_dist_init(false, "mpi");
    CHECK(g && pn_dist_group_rank(g) == 0 && pn_dist_group_size(g) == 1);
    CHECK(pn_dist_init(false, NULL) == g && pn_dist_init(false, "ring") == g);
    CHECK(!pn_dist_init(false, "tcp") && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(!pn_dist_group_split(NULL, 1, 0) && pn_last_error() == PN_ERR_BACKEND);
    pn_clear_error();
    int64_t shape[2] = {4, 3};
    pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x);
    test_check_values("all_gather", pn_dist_all_gather(x, NULL), shape, 2, PN_FLOAT32, xv, 0, 0);
    test_check_values("sum_scatter", pn_dist_sum_scatter(x, g), shape, 2, PN_FLOAT32, xv, 0, 0);
    free(xv);
    CHECK_ERR(pn_dist_send(x, 0, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, 2, PN_FLOAT32, 0, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, -1, PN_FLOAT32, 0, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, 2, (pn_dtype)99, 0, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_all_max(NULL, g), PN_ERR_INVALID_ARGUMENT);
    pn_dist_group_free(g); /* the global group: a no-op */
    CHECK(pn_dist_group_size(NULL) == 1);
    pn_scope_pop();
}
