/* collectives.c — the distributed API over a backend, run as 2 or 3 processes: under mpirun
 * (tests/distributed/run-mpi.sh) or as the ring backend's local processes
 * (tests/distributed/run-ring.sh, which sets PONTE_TEST_DIST_BACKEND=ring, or nccl with
 * --nccl). Every process knows every rank's data (a formula of the rank), so each checks the
 * collectives, point-to-point calls, split groups, errors, gradients and compiled functions
 * against float64 values it computes itself. With the arrays on a GPU (PONTE_DEVICE=gpu; the
 * simulated build's default) it also checks which path each collective took: NCCL for the
 * dtypes NCCL carries, host memory for the others. Run alone it checks nothing useful and
 * says so. */
#include "distributed/distributed.h"
#include "harness.h"

#include <string.h>

static int R, N; /* this rank and the world size */

/* The backend under test ("mpi" unless the launcher says otherwise) and the other one. */
static const char *backend(void)
{
    const char *b = getenv("PONTE_TEST_DIST_BACKEND");
    return b && *b ? b : "mpi";
}
static const char *other_backend(void) { return strcmp(backend(), "mpi") ? "mpi" : "ring"; }

/* Whether NCCL should be usable here: -1 when the test cannot tell (a native GPU build, where
 * libnccl may be absent). */
static int nccl_expected(void)
{
    if (!strcmp(backend(), "nccl")) return 1;
    if (!pn_gpu_available()) return 0;
#ifdef PONTE_GPU_SIM
    const char *e = getenv("PONTE_NCCL");
    return !(e && !strcmp(e, "0"));
#else
    return -1;
#endif
}

/* Whether this world's GPU collectives run through NCCL (world sets it): its library is there
 * and every rank has a GPU of its own. Ranks that share a GPU (several on a one-GPU machine;
 * on the simulator, PONTE_SIM_GPU_UUID set alike) take the host path. */
static bool nccl_ready;

/* Whether the ranks share a simulated GPU: they were told they run on one machine
 * (PONTE_SIM_GPU_UUID), whose simulated GPUs (PONTE_SIM_DEVICES, all usable here) are fewer
 * than the ranks, which take GPU (rank mod count) each. */
static bool sim_gpu_shared(void)
{
#ifdef PONTE_GPU_SIM
    const char *e = getenv("PONTE_SIM_GPU_UUID"), *gpus = getenv("PONTE_SIM_DEVICES");
    const char *world = getenv("MLX_WORLD_SIZE") ? getenv("MLX_WORLD_SIZE") : getenv("WORLD_SIZE");
    const int ngpus = gpus && atoi(gpus) > 1 ? atoi(gpus) : 1, nranks = world ? atoi(world) : 2;
    return e && *e && ngpus < nranks;
#else
    return false;
#endif
}

/* The GPU collectives' path counters (distributed.h). */
typedef struct {
    int64_t host, nccl;
} paths;
static paths paths_now(void) { return (paths){pnD_gpu_path_count(false), pnD_gpu_path_count(true)}; }

/* Whether NCCL carries a collective of dtype t: reduce 0 / 1 / 2 sum / max / min, -1 moving
 * data (all_gather, send, recv: every dtype). NCCL has no 16-bit integers; complex64 sums as
 * float32 pairs but has no NCCL max / min. */
static bool nccl_carries(pn_dtype t, int reduce)
{
    if (reduce < 0) return true;
    if (t == PN_INT16 || t == PN_UINT16) return false;
    return t != PN_COMPLEX64 || reduce == 0;
}

/* Checks that the k collectives of dtype t evaluated since `before` took the expected path:
 * none on a GPU stream when the arrays are on the CPU, else NCCL when it is usable and
 * carries them, else host memory. */
static void check_path(const char *what, paths before, int k, pn_dtype t, int reduce)
{
    paths now = paths_now();
    bool gpu = pn_default_device().type == PN_GPU;
    bool nccl = gpu && nccl_ready && nccl_carries(t, reduce);
    int64_t want_host = gpu && !nccl ? k : 0, want_nccl = nccl ? k : 0;
    CHECK_MSG(now.host - before.host == want_host && now.nccl - before.nccl == want_nccl,
              "%s %s: %lld collectives through host memory and %lld through NCCL, expected %lld "
              "and %lld", what, pn_dtype_name(t), (long long)(now.host - before.host),
              (long long)(now.nccl - before.nccl), (long long)want_host, (long long)want_nccl);
}

/* Rank r's value at index i for dtype t: small so that sums fit every integer dtype. */
static double value(int r, int64_t i, pn_dtype t)
{
    uint64_t h = (uint64_t)(r + 1) * 2654435761u + (uint64_t)i * 40503u + (uint64_t)t * 977u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    if (t == PN_BOOL) return (double)(h & 1);
    if (t == PN_UINT8 || t == PN_UINT16 || t == PN_UINT32 || t == PN_UINT64) return (double)(h % 40);
    if (t == PN_INT8 || t == PN_INT16 || t == PN_INT32 || t == PN_INT64) return (double)(h % 40) - 20;
    return (double)(h % 2001) / 200.0 - 5.0; /* exact in f64; rounded by astype for halves */
}

/* Rank r's array of shape/dtype (the same on every process that builds it). */
static pn_array *rank_array(int r, const int64_t *shape, int ndim, pn_dtype t)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = value(r, i, t);
    pn_array *a = pn_astype(pn_array_from_data(v, shape, ndim, PN_FLOAT64), t);
    free(v);
    return a;
}

/* Every rank's values as doubles (as stored in dtype t): vals[r][i]. */
static double **all_values(const int64_t *shape, int ndim, pn_dtype t)
{
    double **vals = calloc((size_t)N, sizeof *vals);
    for (int r = 0; r < N; r++) vals[r] = test_to_f64(rank_array(r, shape, ndim, t));
    return vals;
}
static void free_values(double **vals)
{
    for (int r = 0; r < N; r++) free(vals[r]);
    free(vals);
}

static int64_t shape_size(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static const pn_dtype ALL_TYPES[] = {PN_BOOL,  PN_UINT8,   PN_UINT16,  PN_UINT32,  PN_UINT64,
                                     PN_INT8,  PN_INT16,   PN_INT32,   PN_INT64,   PN_FLOAT16,
                                     PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16, PN_COMPLEX64};
#define NTYPES (int)(sizeof ALL_TYPES / sizeof ALL_TYPES[0])

TEST(world)
{
    pn_scope_push();
    CHECK(pn_dist_is_available("any") && pn_dist_is_available(backend()) && pn_dist_is_available("ring"));
    CHECK(!pn_dist_is_available("jaccl"));
    int nccl = nccl_expected();
    if (nccl >= 0) CHECK_MSG(pn_dist_is_available("nccl") == nccl, "is_available(\"nccl\") should be %d", nccl);
    pn_dist_group *g = pn_dist_init(true, "any");
    CHECK_OK(g);
    /* strict nccl: this world when NCCL serves it, else the reason (below) */
    bool strict_ok = strcmp(backend(), "nccl") || !sim_gpu_shared();
    CHECK(pn_dist_init(false, backend()) == g && (pn_dist_init(true, backend()) == g) == strict_ok);
    /* the other backend: not started by this launcher, or this process joined another group */
    pn_clear_error();
    CHECK(!pn_dist_init(true, other_backend()) && pn_last_error() == PN_ERR_BACKEND);
    CHECK(pn_dist_init(false, other_backend()) == g);
    R = pn_dist_group_rank(g);
    N = pn_dist_group_size(g);
    CHECK(N >= 2 && R >= 0 && R < N);
    CHECK(pn_dist_group_rank(NULL) == R && pn_dist_group_size(NULL) == N);
    /* nccl: this world, whose GPU nodes use NCCL, when NCCL is usable */
    pn_clear_error();
    if (pn_dist_is_available("nccl")) {
        nccl_ready = pn_dist_init(true, "nccl") == g;
        if (!nccl_ready) { /* every rank's answer: the host path, and why */
            const char *why = pn_last_error_message();
            CHECK_MSG(pn_last_error() == PN_ERR_BACKEND && strstr(why, "share one GPU"), "%s", why);
            if (R == 0) fprintf(stderr, "note: NCCL does not serve this world: %s\n", why);
            pn_clear_error(); /* asked again: the same answer, no new attempt */
            CHECK(!pn_dist_init(true, "nccl") && strstr(pn_last_error_message(), "share one GPU"));
            pn_clear_error();
            CHECK(pn_dist_init(false, "nccl") == g && !pn_last_error());
        }
#ifdef PONTE_GPU_SIM
        CHECK_MSG(nccl_ready == !sim_gpu_shared(), "NCCL %s this world", nccl_ready ? "serves" : "does not serve");
#endif
    } else {
        CHECK(!pn_dist_init(true, "nccl") && pn_last_error() == PN_ERR_BACKEND);
    }
    pn_clear_error();
    pn_dist_group_free(g); /* the global group: a no-op */
    pn_scope_pop();
}

/* all_sum / all_max / all_min over every dtype and a few shapes, strided input included. */
TEST(all_reduce)
{
    pn_scope_push();
    int64_t shapes[3][2] = {{0}, {7}, {3, 5}};
    int ndims[3] = {0, 1, 2};
    pn_array *(*fns[3])(pn_array *, pn_dist_group *) = {pn_dist_all_sum, pn_dist_all_max,
                                                        pn_dist_all_min};
    for (int t = 0; t < NTYPES; t++) {
        pn_dtype dt = ALL_TYPES[t];
        for (int s = 0; s < 3; s++) {
            int64_t n = shape_size(shapes[s], ndims[s]);
            double **vals = all_values(shapes[s], ndims[s], dt);
            double *ref = malloc((size_t)n * sizeof *ref);
            for (int f = 0; f < 3; f++) {
                for (int64_t i = 0; i < n; i++) {
                    double acc = vals[0][i];
                    for (int r = 1; r < N; r++) {
                        double v = vals[r][i];
                        if (dt == PN_BOOL) acc = f == 2 ? (acc && v) : (acc || v);
                        else acc = f == 0 ? acc + v : f == 1 ? fmax(acc, v) : fmin(acc, v);
                    }
                    ref[i] = acc;
                }
                pn_array *x = rank_array(R, shapes[s], ndims[s], dt);
                char what[64];
                snprintf(what, sizeof what, "reduce %d %s rank%d", f, pn_dtype_name(dt), ndims[s]);
                paths before = paths_now();
                test_check_values(what, fns[f](x, NULL), shapes[s], ndims[s], dt, ref,
                                  test_tol(dt), test_tol(dt));
                check_path(what, before, 1, dt, f);
            }
            free(ref);
            free_values(vals);
        }
    }
    /* a transposed (strided) input and a float32 sum */
    int64_t sh[2] = {4, 6}, tsh[2] = {6, 4};
    double **vals = all_values(sh, 2, PN_FLOAT32);
    double ref[24];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) {
            ref[i * 4 + j] = 0;
            for (int r = 0; r < N; r++) ref[i * 4 + j] += vals[r][j * 6 + i];
        }
    pn_array *xt = pn_transpose(rank_array(R, sh, 2, PN_FLOAT32), NULL, 0);
    test_check_values("strided all_sum", pn_dist_all_sum(xt, NULL), tsh, 2, PN_FLOAT32, ref, 1e-6, 1e-6);
    free_values(vals);
    pn_scope_pop();
}

TEST(all_gather)
{
    pn_scope_push();
    int64_t shapes[3][2] = {{0}, {3}, {2, 3}};
    int ndims[3] = {0, 1, 2};
    for (int t = 0; t < NTYPES; t++) {
        pn_dtype dt = ALL_TYPES[t];
        for (int s = 0; s < 3; s++) {
            int64_t n = shape_size(shapes[s], ndims[s]);
            double **vals = all_values(shapes[s], ndims[s], dt);
            double *ref = malloc((size_t)(n * N) * sizeof *ref);
            for (int r = 0; r < N; r++) memcpy(ref + r * n, vals[r], (size_t)n * sizeof *ref);
            int64_t oshape[2] = {ndims[s] ? shapes[s][0] * N : N, shapes[s][1]};
            pn_array *y = pn_dist_all_gather(rank_array(R, shapes[s], ndims[s], dt), NULL);
            paths before = paths_now();
            test_check_values("all_gather", y, oshape, ndims[s] ? ndims[s] : 1, dt, ref, 0, 0);
            check_path("all_gather", before, 1, dt, -1);
            free(ref);
            free_values(vals);
        }
    }
    pn_scope_pop();
}

TEST(sum_scatter)
{
    pn_scope_push();
    pn_dtype types[8] = {PN_FLOAT32, PN_FLOAT64, PN_INT32, PN_FLOAT16,
                         PN_BFLOAT16, PN_BOOL, PN_COMPLEX64, PN_INT16};
    int64_t shape[2] = {2 * N, 3}, oshape[2] = {2, 3};
    for (int t = 0; t < 8; t++) {
        double **vals = all_values(shape, 2, types[t]);
        double ref[6];
        for (int i = 0; i < 6; i++) {
            ref[i] = 0;
            for (int r = 0; r < N; r++) ref[i] += vals[r][R * 6 + i];
            if (types[t] == PN_BOOL) ref[i] = ref[i] > 0; /* or */
        }
        pn_array *y = pn_dist_sum_scatter(rank_array(R, shape, 2, types[t]), NULL);
        paths before = paths_now();
        test_check_values("sum_scatter", y, oshape, 2, types[t], ref, test_tol(types[t]), test_tol(types[t]));
        check_path("sum_scatter", before, 1, types[t], 0);
        free_values(vals);
    }
    int64_t bad[1] = {2 * N + 1};
    CHECK_ERR(pn_dist_sum_scatter(pn_zeros(bad, 1, PN_FLOAT32), NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_sum_scatter(pn_zeros(NULL, 0, PN_FLOAT32), NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* A ring: each rank sends to the next and receives from the previous, small messages in one
 * eval, then a large one ordered even-sends-first so blocking sends cannot all wait. */
TEST(send_recv_ring)
{
    pn_scope_push();
    int next = (R + 1) % N, prev = (R + N - 1) % N;
    int64_t shape[2] = {3, 4};
    pn_dtype types[3] = {PN_FLOAT32, PN_INT64, PN_BFLOAT16};
    for (int t = 0; t < 3; t++) {
        pn_array *x = rank_array(R, shape, 2, types[t]);
        pn_array *s = pn_dist_send(x, next, NULL);
        pn_array *r = t == 1 ? pn_dist_recv_like(x, prev, NULL)
                             : pn_dist_recv(shape, 2, types[t], prev, NULL);
        paths before = paths_now();
        CHECK(pn_eval((pn_array *[]){s, r}, 2) == 0);
        check_path("send and recv", before, 2, types[t], -1);
        double *xv = test_to_f64(x), *pv = test_to_f64(rank_array(prev, shape, 2, types[t]));
        test_check_values("send returns x", s, shape, 2, types[t], xv, 0, 0);
        test_check_values("recv", r, shape, 2, types[t], pv, 0, 0);
        free(xv), free(pv);
    }
    int64_t big[1] = {test_quick() ? 100000 : 1000000};
    pn_array *x = rank_array(R, big, 1, PN_FLOAT32);
    pn_array *s = pn_dist_send(x, next, NULL), *r = pn_dist_recv(big, 1, PN_FLOAT32, prev, NULL);
    CHECK(pn_eval((pn_array *[]){x}, 1) == 0);
    paths before = paths_now();
    CHECK(pn_eval(R % 2 ? (pn_array *[]){r, s} : (pn_array *[]){s, r}, 2) == 0);
    check_path("large send and recv", before, 2, PN_FLOAT32, -1);
    double *pv = test_to_f64(rank_array(prev, big, 1, PN_FLOAT32));
    test_check_values("large recv", r, big, 1, PN_FLOAT32, pv, 0, 0);
    free(pv);
    pn_scope_pop();
}

TEST(split)
{
    pn_scope_push();
    pn_dist_group *g = pn_dist_group_split(NULL, R % 2, N - R); /* reversed order by key */
    CHECK_OK(g);
    int members[8], m = 0;
    for (int r = 0; r < N; r++)
        if (r % 2 == R % 2) members[m++] = r;
    CHECK(pn_dist_group_size(g) == m);
    int pos = 0;
    for (int i = 0; i < m; i++) pos += members[i] > R; /* higher ranks come first */
    CHECK_MSG(pn_dist_group_rank(g) == pos, "split rank %d, expected %d", pn_dist_group_rank(g), pos);
    int64_t shape[1] = {5};
    double ref[5] = {0};
    for (int i = 0; i < m; i++) {
        double *v = test_to_f64(rank_array(members[i], shape, 1, PN_FLOAT64));
        for (int j = 0; j < 5; j++) ref[j] += v[j];
        free(v);
    }
    pn_array *y = pn_dist_all_sum(rank_array(R, shape, 1, PN_FLOAT64), g);
    pn_dist_group_free(g); /* the pending node keeps the group alive */
    paths before = paths_now(); /* on a GPU: the split group's own NCCL communicator */
    test_check_values("split all_sum", y, shape, 1, PN_FLOAT64, ref, 1e-12, 1e-12);
    check_path("split all_sum", before, m > 1, PN_FLOAT64, 0); /* a group of one copies */
    /* the default key keeps the parent's order */
    pn_dist_group *h = pn_dist_group_split(NULL, 0, -1);
    CHECK(h && pn_dist_group_size(h) == N && pn_dist_group_rank(h) == R);
    pn_dist_group_free(h);
    pn_clear_error();
    CHECK(!pn_dist_group_split(NULL, -1, 0) && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

TEST(errors)
{
    pn_scope_push();
    int64_t shape[1] = {3 + (R == 1)}; /* rank 1 disagrees */
    pn_array *x = pn_ones(shape, 1, PN_FLOAT32);
    CHECK_ERR(pn_dist_send(x, N, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_send(x, -1, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, 1, PN_FLOAT32, N, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, -1, PN_FLOAT32, 0, NULL), PN_ERR_INVALID_ARGUMENT);
    /* a size mismatch is an error on every rank, not a hang */
    pn_array *y = pn_dist_all_sum(x, NULL);
    pn_clear_error();
    CHECK(pn_eval(&y, 1) != 0 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    shape[0] = 3; /* same size, different dtype */
    pn_array *z = pn_dist_all_gather(pn_ones(shape, 1, R == 0 ? PN_FLOAT32 : PN_INT32), NULL);
    CHECK(pn_eval(&z, 1) != 0 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    /* recv of a different size than sent (ranks 0 and 1) */
    if (R < 2) {
        int64_t five[1] = {5}, four[1] = {4}, six[1] = {6};
        for (int k = 0; k < 2; k++) {
            pn_array *a = R == 0 ? pn_dist_send(pn_ones(five, 1, PN_FLOAT32), 1, NULL)
                                 : pn_dist_recv(k ? six : four, 1, PN_FLOAT32, 0, NULL);
            int rc = pn_eval(&a, 1);
            CHECK_MSG(R == 0 ? rc == 0 : rc != 0, "rank %d size-mismatched recv rc %d", R, rc);
            pn_clear_error();
        }
    }
    pn_scope_pop();
}

/* Derivatives: each rank differentiates its own function, the other ranks' inputs held
 * fixed (MLX's rules: all_sum passes the cotangent, all_gather slices this rank's rows,
 * sum_scatter places it at this rank's rows); forward mode sends the tangent through the
 * same collective. */
/* f(x) = the collective of x, as a closure for pn_vjp / pn_jvp. */
static int collective_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *(*fn)(pn_array *, pn_dist_group *) = (pn_array * (*)(pn_array *, pn_dist_group *)) ctx;
    *nout = 1;
    out[0] = fn(in[0], NULL);
    return out[0] ? 0 : -1;
}

TEST(gradients)
{
    pn_scope_push();
    int64_t shape[2] = {2 * N, 3}, n = 6 * N;
    pn_array *x = rank_array(R, shape, 2, PN_FLOAT64);
    pn_closure *fs[3] = {pn_closure_new(collective_fn, (void *)pn_dist_all_sum, NULL),
                         pn_closure_new(collective_fn, (void *)pn_dist_all_gather, NULL),
                         pn_closure_new(collective_fn, (void *)pn_dist_sum_scatter, NULL)};
    int64_t gshape[2] = {2 * N * N, 3}, sshape[2] = {2, 3};
    const int64_t *oshapes[3] = {shape, gshape, sshape};
    int64_t osizes[3] = {n, n * N, 6};
    for (int f = 0; f < 3; f++) {
        pn_array *cot = rank_array(R + 10, oshapes[f], 2, PN_FLOAT64);
        double *cv = test_to_f64(cot);
        pn_array *out = NULL, *grad = NULL;
        int nout = 0;
        CHECK(pn_vjp(fs[f], 1, &x, 1, &cot, &nout, &out, &grad) == 0);
        double *ref = calloc((size_t)n, sizeof *ref);
        for (int64_t i = 0; i < n; i++) {
            if (f == 0) ref[i] = cv[i];
            else if (f == 1) ref[i] = cv[R * n + i];
            else if (i / 6 == R) ref[i] = cv[i % 6];
        }
        test_check_values("vjp", grad, shape, 2, PN_FLOAT64, ref, 1e-12, 1e-12);
        /* forward mode: the tangent through the same collective (every rank's tangent) */
        pn_array *tan = rank_array(R + 20, shape, 2, PN_FLOAT64), *jout = NULL, *jt = NULL;
        CHECK(pn_jvp(fs[f], 1, &x, &tan, &nout, &jout, &jt) == 0);
        double **tv = calloc((size_t)N, sizeof *tv);
        for (int r = 0; r < N; r++) tv[r] = test_to_f64(rank_array(r + 20, shape, 2, PN_FLOAT64));
        double *jref = calloc((size_t)osizes[f], sizeof *jref);
        for (int64_t i = 0; i < osizes[f]; i++) {
            if (f == 0) for (int r = 0; r < N; r++) jref[i] += tv[r][i];
            else if (f == 1) jref[i] = tv[i / n][i % n];
            else for (int r = 0; r < N; r++) jref[i] += tv[r][R * 6 + i];
        }
        test_check_values("jvp", jt, oshapes[f], 2, PN_FLOAT64, jref, 1e-12, 1e-12);
        for (int r = 0; r < N; r++) free(tv[r]);
        free(tv), free(jref), free(ref), free(cv);
    }
    /* vmap of all_sum over axis 1: the same sums, batched */
    pn_closure *vm = pn_vmap(fs[0], (int[]){1}, 1, (int[]){1}, 1);
    pn_array *vout = NULL;
    int nv = 1;
    CHECK(vm && pn_closure_call(vm, 1, &x, &nv, &vout) == 0);
    double *vref = calloc((size_t)n, sizeof *vref);
    for (int r = 0; r < N; r++) {
        double *v = test_to_f64(rank_array(r, shape, 2, PN_FLOAT64));
        for (int64_t i = 0; i < n; i++) vref[i] += v[i];
        free(v);
    }
    test_check_values("vmap all_sum", vout, shape, 2, PN_FLOAT64, vref, 1e-12, 1e-12);
    free(vref);
    pn_closure_release(vm);
    /* compiled: the collectives replay from the cached trace (twice: a cache hit; the second
     * input differs), and a gradient through the compiled function */
    for (int f = 0; f < 3; f++) {
        pn_closure *cf = pn_compile(fs[f], false);
        for (int call = 0; call < 2; call++) {
            pn_array *xin = call ? pn_multiply(x, pn_scalar(3.0, PN_FLOAT64)) : x, *cout = NULL;
            int nc = 1;
            CHECK(cf && pn_closure_call(cf, 1, &xin, &nc, &cout) == 0 && nc == 1);
            double **xs = calloc((size_t)N, sizeof *xs);
            for (int r = 0; r < N; r++) xs[r] = test_to_f64(rank_array(r, shape, 2, PN_FLOAT64));
            double *cref = calloc((size_t)osizes[f], sizeof *cref), k = call ? 3.0 : 1.0;
            for (int64_t i = 0; i < osizes[f]; i++) {
                if (f == 0) for (int r = 0; r < N; r++) cref[i] += k * xs[r][i];
                else if (f == 1) cref[i] = k * xs[i / n][i % n];
                else for (int r = 0; r < N; r++) cref[i] += k * xs[r][R * 6 + i];
            }
            test_check_values("compiled collective", cout, oshapes[f], 2, PN_FLOAT64, cref, 1e-12, 1e-12);
            for (int r = 0; r < N; r++) free(xs[r]);
            free(xs), free(cref);
        }
        if (f == 0) { /* the cotangent passes through the compiled all_sum */
            pn_array *cot = rank_array(R + 10, shape, 2, PN_FLOAT64), *out = NULL, *grad = NULL;
            int nout = 0;
            CHECK(pn_vjp(cf, 1, &x, 1, &cot, &nout, &out, &grad) == 0);
            double *cv = test_to_f64(cot);
            test_check_values("vjp of the compiled all_sum", grad, shape, 2, PN_FLOAT64, cv, 1e-12, 1e-12);
            free(cv);
        }
        pn_closure_release(cf);
    }
    for (int f = 0; f < 3; f++) pn_closure_release(fs[f]);
    pn_scope_pop();
}

/* pn_nn_average_gradients: the mean over the ranks for every batching, mixed dtypes, and out
 * aliasing grads. */
TEST(average_gradients)
{
    pn_scope_push();
    int64_t shapes[4][2] = {{3, 4}, {5, 0}, {2, 2}, {7, 0}};
    int ndims[4] = {2, 1, 2, 1};
    int64_t sizes[3] = {0, 16, 1 << 20};
    for (int mixed = 0; mixed < 2; mixed++) {
        pn_dtype types[4] = {PN_FLOAT32, PN_FLOAT32, mixed ? PN_FLOAT64 : PN_FLOAT32, PN_FLOAT32};
        for (int s = 0; s < 3; s++) {
            pn_array *g[4], *out[4];
            for (int i = 0; i < 4; i++) g[i] = rank_array(R, shapes[i], ndims[i], types[i]);
            bool alias = s == 2;
            CHECK(pn_nn_average_gradients(g, 4, NULL, sizes[s], alias ? g : out) == 0);
            for (int i = 0; i < 4; i++) {
                int64_t n = shape_size(shapes[i], ndims[i]);
                double **vals = all_values(shapes[i], ndims[i], types[i]);
                double ref[16] = {0};
                for (int r = 0; r < N; r++)
                    for (int64_t k = 0; k < n; k++) ref[k] += vals[r][k] / N;
                test_check_values("average_gradients", alias ? g[i] : out[i], shapes[i], ndims[i],
                                  types[i], ref, 1e-6, 1e-6);
                free_values(vals);
            }
        }
    }
    CHECK(pn_nn_average_gradients(NULL, 0, NULL, 0, NULL) == 0);
    pn_clear_error();
    CHECK(pn_nn_average_gradients((pn_array *[]){NULL}, 1, NULL, 0, (pn_array *[]){NULL}) == -1);
    pn_clear_error();
    pn_scope_pop();
}

#ifdef PONTE_GPU_SIM
#include "backend/cuda/gpu.h"
#include "backend/cuda/sim/nccl_sim.h"

/* The simulated NCCL refuses what NCCL would, with its result codes (and runs what it
 * accepts): a null comm, no host communicator bound, ranks passing different ids, host
 * memory, an unknown type, a bad stream, a peer outside the communicator, an unmatched
 * ncclGroupEnd. Calls the simulator directly over the world's host communicator. */
TEST(nccl_sim_misuse)
{
    const pnD_backend *be = strcmp(backend(), "mpi") ? &pnD_ring : &pnD_mpi;
    void *host = be->init(); /* the world joined already */
    CHECK(host && be->rank(host) == R && be->size(host) == N);
    float hbuf[4] = {1, 2, 3, 4};
    CHECK(ncclAllReduce(hbuf, hbuf, 4, ncclFloat32, ncclSum, NULL, NULL) == ncclInvalidArgument);
    CHECK(ncclGroupEnd() == ncclInvalidUsage);
    ncclUniqueId id, all[8];
    if (N > 8) return; /* all holds 8 ids */
    ncclComm_t comm = NULL;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess);
    CHECK(ncclCommInitRank(&comm, N, id, R) == ncclInvalidUsage && !comm); /* nothing bound */
    pnsim_nccl_bind(be, host); /* every rank its own id: refused on every rank */
    CHECK(ncclCommInitRank(&comm, N, id, R) == ncclInvalidUsage && !comm);
    CHECK(be->all_gather(host, &id, all, sizeof id, PN_UINT8) == 0); /* rank 0's id for all */
    pnsim_nccl_bind(be, host);
    CHECK(ncclCommInitRank(&comm, N, all[0], (R + 1) % N) == ncclInvalidArgument); /* wrong rank */
    pnsim_nccl_bind(be, host);
    CHECK(ncclCommInitRank(&comm, N, all[0], R) == ncclSuccess && comm);
    float *dev = pnG_malloc(4 * sizeof *dev, 1);
    CHECK(dev != NULL);
    for (int i = 0; i < 4; i++) dev[i] = (float)(R + i); /* simulated device memory is host memory */
    CHECK(ncclAllReduce(hbuf, dev, 4, ncclFloat32, ncclSum, comm, NULL) == ncclInvalidArgument);
    CHECK(ncclAllReduce(dev, dev, 4, (ncclDataType_t)10, ncclSum, comm, NULL) == ncclInvalidArgument);
    CHECK(ncclAllReduce(dev, dev, 4, ncclFloat32, ncclSum, comm, (pnsim_nccl_stream_t)0x1234) ==
          ncclInvalidArgument);
    CHECK(ncclSend(dev, 4, ncclFloat32, N, comm, NULL) == ncclInvalidArgument);
    CHECK(strstr(ncclGetLastError(comm), "peer") != NULL);
    CHECK(ncclAllReduce(dev, dev, 4, ncclFloat32, ncclMax, comm, NULL) == ncclSuccess);
    for (int i = 0; i < 4; i++) CHECK_MSG(dev[i] == (float)(N - 1 + i), "max %d: %g", i, dev[i]);
    /* a grouped ring exchange: every rank sends first, which the group makes safe */
    float *got = pnG_malloc(4 * sizeof *got, 1);
    for (int i = 0; i < 4; i++) dev[i] = (float)(10 * R + i);
    CHECK(ncclGroupStart() == ncclSuccess);
    CHECK(ncclRecv(got, 4, ncclFloat32, (R + N - 1) % N, comm, NULL) == ncclSuccess);
    CHECK(ncclSend(dev, 4, ncclFloat32, (R + 1) % N, comm, NULL) == ncclSuccess);
    CHECK(ncclGroupEnd() == ncclSuccess);
    for (int i = 0; i < 4; i++) CHECK(got[i] == (float)(10 * ((R + N - 1) % N) + i));
    pnG_free(got, 4 * sizeof *got, 1);
    pnG_free(dev, 4 * sizeof *dev, 1);
    CHECK(ncclCommDestroy(comm) == ncclSuccess);
    CHECK(ncclCommDestroy(NULL) == ncclInvalidArgument);
    /* through nccl.c: a refused call is PN_ERR_BACKEND with NCCL's text and its details */
    void *nc = NULL; /* none with PONTE_NCCL=0 */
    int made = pnD_nccl_new(be, host, &nc);
    CHECK_MSG(made == (nccl_ready ? 0 : 1) && !nc == !nccl_ready, "%d: %s", made, pn_last_error_message());
    float gathered[8 * 4];
    pn_clear_error();
    if (nc) {
        CHECK(pnD_nccl.all_gather(nc, hbuf, gathered, 4, PN_FLOAT32) == -1 &&
              pn_last_error() == PN_ERR_BACKEND);
        const char *msg = pn_last_error_message();
        CHECK_MSG(strstr(msg, "[nccl] ncclAllGather failed: invalid argument") &&
                  strstr(msg, "not device memory"), "%s", msg);
        pnD_nccl.free(nc);
    }
    pn_clear_error();
}
#endif
