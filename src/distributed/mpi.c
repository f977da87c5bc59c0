/* mpi.c — the MPI communication backend (distributed.h's table) over Open MPI, loaded with
 * dlopen at first use (libmpi.so.40, then libmpi.so; PONTE_MPI_LIBNAME overrides) so libponte
 * keeps no link dependency and works where MPI is absent. Open MPI's handles are addresses of
 * exported objects (ompi_mpi_comm_world, ompi_mpi_float, ...), found with dlsym; MPICH's ABI
 * (integer handles) differs and is refused with a clear error. */
#include "distributed/distributed.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open MPI's ABI: handles are pointers; these constants are its mpi.h values. */
typedef void *MPI_Comm, *MPI_Datatype, *MPI_Op, *MPI_Errhandler;
typedef void mpi_user_fn(void *in, void *inout, int *len, MPI_Datatype *dt);
#define MPI_SUCCESS 0
#define MPI_IN_PLACE ((void *)1)
#define MPI_THREAD_MULTIPLE 3
#define MPI_MAX_LIBRARY_VERSION_STRING 256
#define MPI_MAX_ERROR_STRING 256
/* MPI_Status: source, tag, error and Open MPI's private fields (room to spare). */
typedef struct {
    int source, tag, error, pad[13];
} mpi_status;

/* The entry points and objects, in one table: X(field, symbol, type). */
#define MPI_FUNCTIONS(X)                                                                       \
    X(get_library_version, MPI_Get_library_version, int (*)(char *, int *))                   \
    X(initialized, MPI_Initialized, int (*)(int *))                                           \
    X(finalized, MPI_Finalized, int (*)(int *))                                               \
    X(init_thread, MPI_Init_thread, int (*)(int *, char ***, int, int *))                     \
    X(finalize, MPI_Finalize, int (*)(void))                                                  \
    X(comm_rank, MPI_Comm_rank, int (*)(MPI_Comm, int *))                                      \
    X(comm_size, MPI_Comm_size, int (*)(MPI_Comm, int *))                                      \
    X(comm_split, MPI_Comm_split, int (*)(MPI_Comm, int, int, MPI_Comm *))                     \
    X(comm_free, MPI_Comm_free, int (*)(MPI_Comm *))                                           \
    X(comm_set_errhandler, MPI_Comm_set_errhandler, int (*)(MPI_Comm, MPI_Errhandler))         \
    X(error_string, MPI_Error_string, int (*)(int, char *, int *))                             \
    X(allreduce, MPI_Allreduce, int (*)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm)) \
    X(allgather, MPI_Allgather,                                                                \
      int (*)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm))           \
    X(reduce_scatter_block, MPI_Reduce_scatter_block,                                          \
      int (*)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm))                      \
    X(send, MPI_Send, int (*)(const void *, int, MPI_Datatype, int, int, MPI_Comm))            \
    X(recv, MPI_Recv, int (*)(void *, int, MPI_Datatype, int, int, MPI_Comm, mpi_status *))    \
    X(get_count, MPI_Get_count, int (*)(const mpi_status *, MPI_Datatype, int *))              \
    X(type_contiguous, MPI_Type_contiguous, int (*)(int, MPI_Datatype, MPI_Datatype *))        \
    X(type_commit, MPI_Type_commit, int (*)(MPI_Datatype *))                                   \
    X(op_create, MPI_Op_create, int (*)(mpi_user_fn *, int, MPI_Op *))
#define MPI_OBJECTS(X)                                                                         \
    X(comm_world, ompi_mpi_comm_world)                                                         \
    X(errors_return, ompi_mpi_errors_return)                                                   \
    X(op_sum, ompi_mpi_op_sum)                                                                 \
    X(op_max, ompi_mpi_op_max)                                                                 \
    X(op_min, ompi_mpi_op_min)                                                                 \
    X(op_lor, ompi_mpi_op_lor)                                                                 \
    X(op_land, ompi_mpi_op_land)                                                               \
    X(t_bool, ompi_mpi_c_bool)                                                                 \
    X(t_u8, ompi_mpi_uint8_t)                                                                  \
    X(t_u16, ompi_mpi_uint16_t)                                                                \
    X(t_u32, ompi_mpi_uint32_t)                                                                \
    X(t_u64, ompi_mpi_uint64_t)                                                                \
    X(t_i8, ompi_mpi_int8_t)                                                                   \
    X(t_i16, ompi_mpi_int16_t)                                                                 \
    X(t_i32, ompi_mpi_int32_t)                                                                 \
    X(t_i64, ompi_mpi_int64_t)                                                                 \
    X(t_f32, ompi_mpi_float)                                                                   \
    X(t_f64, ompi_mpi_double)                                                                  \
    X(t_c64, ompi_mpi_c_float_complex)

static struct {
#define FIELD_FN(f, sym, type) __typeof__(type) f;
#define FIELD_OBJ(f, sym) void *f;
    MPI_FUNCTIONS(FIELD_FN)
    MPI_OBJECTS(FIELD_OBJ)
    /* made at init: 2-byte types for float16/bfloat16 and the reductions MPI lacks */
    MPI_Datatype t_f16, t_bf16;
    MPI_Op user_ops[3][3]; /* [f16, bf16, complex64][pnD_reduce] (complex sum is MPI's) */
    bool loaded, ready, finalize_at_exit;
    char why[320]; /* why the library is unusable, when it is */
} mpi;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t init_mutex = PTHREAD_MUTEX_INITIALIZER;

static void load(void)
{
    const char *env = getenv("PONTE_MPI_LIBNAME");
    const char *names[] = {env && *env ? env : "libmpi.so.40", "libmpi.so"};
    void *lib = NULL;
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(mpi.why, sizeof mpi.why, "libmpi could not be loaded (%s); install Open MPI "
                 "(apt-get install openmpi-bin libopenmpi-dev)", names[0]);
        return;
    }
    /* MPICH-family libraries have no ompi_* objects: check the version string first */
    int (*version)(char *, int *) = (int (*)(char *, int *))dlsym(lib, "MPI_Get_library_version");
    char v[MPI_MAX_LIBRARY_VERSION_STRING + 1] = {0};
    int len = 0;
    if (!version || version(v, &len) != MPI_SUCCESS || !strstr(v, "Open MPI")) {
        char *nl = strchr(v, '\n');
        if (nl) *nl = 0;
        snprintf(mpi.why, sizeof mpi.why, "the MPI library is not Open MPI (%s); Ponte's MPI "
                 "backend needs Open MPI's ABI", *v ? v : "unknown version");
        dlclose(lib);
        return;
    }
#define LOAD_FN(f, sym, type) if (!(*(void **)&mpi.f = dlsym(lib, #sym))) goto missing;
#define LOAD_OBJ(f, sym) if (!(mpi.f = dlsym(lib, #sym))) goto missing;
    MPI_FUNCTIONS(LOAD_FN)
    MPI_OBJECTS(LOAD_OBJ)
    mpi.loaded = true;
    return;
missing:
    snprintf(mpi.why, sizeof mpi.why, "libmpi lacks a symbol Ponte needs (%s)", dlerror());
    dlclose(lib);
}

static bool available(void)
{
    pthread_once(&load_once, load);
    return mpi.loaded;
}

/* Started by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE; PMIx launchers PMIX_RANK), as the
 * environment said when the library was loaded: a singleton MPI_Init by other code in the
 * process (MLX's, say) sets PMIX_RANK afterwards, and does not make this a launched process. */
static int launched_at_load = -1;

__attribute__((constructor)) static void read_launch_env(void)
{
    launched_at_load = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
}

static bool launched(void)
{
    if (launched_at_load < 0) read_launch_env();
    return launched_at_load;
}

/* Records an MPI failure of `what` with MPI's own message. Returns -1. */
static int mpi_fail(const char *what, int code)
{
    char msg[MPI_MAX_ERROR_STRING + 1] = {0};
    int len = 0;
    if (!mpi.error_string || mpi.error_string(code, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error code %d", code);
    return pn_set_error(PN_ERR_BACKEND, "[mpi] %s failed: %s", what, msg);
}

/* The reductions MPI has no operator for (float16, bfloat16; complex64 max / min), as MPI
 * user operators over combine.c's table. */
#define USER_OP(name, DT, OP)                                                                  \
    static void name(void *in, void *inout, int *len, MPI_Datatype *dt)                       \
    {                                                                                          \
        (void)dt;                                                                              \
        pnD_combine(inout, in, *len, DT, OP);                                                  \
    }
USER_OP(f16_sum, PN_FLOAT16, PND_SUM)
USER_OP(f16_max, PN_FLOAT16, PND_MAX)
USER_OP(f16_min, PN_FLOAT16, PND_MIN)
USER_OP(bf16_sum, PN_BFLOAT16, PND_SUM)
USER_OP(bf16_max, PN_BFLOAT16, PND_MAX)
USER_OP(bf16_min, PN_BFLOAT16, PND_MIN)
USER_OP(c64_max, PN_COMPLEX64, PND_MAX)
USER_OP(c64_min, PN_COMPLEX64, PND_MIN)

static void finalize_at_exit(void)
{
    int done = 1;
    if (mpi.finalized(&done) == MPI_SUCCESS && !done) mpi.finalize();
}

/* MPI_Init_thread once (unless the program initialized MPI itself, which then finalizes it),
 * the custom types and operators, errors returned on the world communicator. */
static void *init(void)
{
    if (!available())
        return pnC_fail(PN_ERR_BACKEND, "[distributed] Couldn't initialize the mpi backend: %s.",
                        mpi.why);
    pthread_mutex_lock(&init_mutex);
    int rc = MPI_SUCCESS, already = 0;
    if (!mpi.ready) {
        rc = mpi.initialized(&already);
        if (rc == MPI_SUCCESS && !already) {
            int provided = 0;
            rc = mpi.init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
            if (rc == MPI_SUCCESS) atexit(finalize_at_exit);
        }
        if (rc == MPI_SUCCESS) rc = mpi.comm_set_errhandler(mpi.comm_world, mpi.errors_return);
        if (rc == MPI_SUCCESS) rc = mpi.type_contiguous(2, mpi.t_u8, &mpi.t_f16);
        if (rc == MPI_SUCCESS) rc = mpi.type_commit(&mpi.t_f16);
        if (rc == MPI_SUCCESS) rc = mpi.type_contiguous(2, mpi.t_u8, &mpi.t_bf16);
        if (rc == MPI_SUCCESS) rc = mpi.type_commit(&mpi.t_bf16);
        mpi_user_fn *fns[3][3] = {{f16_sum, f16_max, f16_min},
                                  {bf16_sum, bf16_max, bf16_min},
                                  {NULL, c64_max, c64_min}};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (rc == MPI_SUCCESS && fns[i][j]) rc = mpi.op_create(fns[i][j], 1, &mpi.user_ops[i][j]);
        mpi.ready = rc == MPI_SUCCESS;
    }
    pthread_mutex_unlock(&init_mutex);
    if (rc != MPI_SUCCESS) {
        mpi_fail("MPI_Init_thread", rc);
        return NULL;
    }
    return mpi.comm_world;
}

static int rank(void *comm)
{
    int r = 0;
    mpi.comm_rank(comm, &r);
    return r;
}
static int size(void *comm)
{
    int s = 1;
    mpi.comm_size(comm, &s);
    return s;
}

static void *split(void *comm, int color, int key)
{
    MPI_Comm out = NULL;
    int rc = mpi.comm_split(comm, color, key, &out);
    if (rc != MPI_SUCCESS) {
        mpi_fail("MPI_Comm_split", rc);
        return NULL;
    }
    return out;
}

/* A split communicator (never the world), unless MPI is finalized already (exit). */
static void comm_free(void *comm)
{
    int done = 0;
    if (comm && comm != mpi.comm_world && mpi.finalized(&done) == MPI_SUCCESS && !done)
        mpi.comm_free(&comm);
}

/* The MPI datatype of a Ponte dtype (every dtype has one). */
static MPI_Datatype datatype(pn_dtype dt)
{
    switch (dt) {
    case PN_BOOL: return mpi.t_bool;
    case PN_UINT8: return mpi.t_u8;
    case PN_UINT16: return mpi.t_u16;
    case PN_UINT32: return mpi.t_u32;
    case PN_UINT64: return mpi.t_u64;
    case PN_INT8: return mpi.t_i8;
    case PN_INT16: return mpi.t_i16;
    case PN_INT32: return mpi.t_i32;
    case PN_INT64: return mpi.t_i64;
    case PN_FLOAT16: return mpi.t_f16;
    case PN_FLOAT32: return mpi.t_f32;
    case PN_FLOAT64: return mpi.t_f64;
    case PN_BFLOAT16: return mpi.t_bf16;
    default: return mpi.t_c64;
    }
}

/* The MPI operator of a reduction over dt: booleans reduce as or (sum, max) / and (min). */
static MPI_Op reduce_op(pn_dtype dt, pnD_reduce op)
{
    if (dt == PN_FLOAT16) return mpi.user_ops[0][op];
    if (dt == PN_BFLOAT16) return mpi.user_ops[1][op];
    if (dt == PN_COMPLEX64 && op != PND_SUM) return mpi.user_ops[2][op];
    if (dt == PN_BOOL) return op == PND_MIN ? mpi.op_land : mpi.op_lor;
    return op == PND_SUM ? mpi.op_sum : op == PND_MAX ? mpi.op_max : mpi.op_min;
}

/* MPI counts are ints. */
static int count(const char *op, int64_t n)
{
    if (n > INT_MAX)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] %lld elements exceed MPI's count limit (%d) for one message.",
                            op, (long long)n, INT_MAX);
    return 0;
}

static int all_reduce(void *comm, const void *in, void *out, int64_t n, pn_dtype dt, pnD_reduce op)
{
    if (count("all_reduce", n)) return -1;
    int rc = mpi.allreduce(in == out ? MPI_IN_PLACE : in, out, (int)n, datatype(dt),
                           reduce_op(dt, op), comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail("MPI_Allreduce", rc);
}

static int all_gather(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    if (count("all_gather", n) || count("all_gather", n * size(comm))) return -1;
    int rc = mpi.allgather(in, (int)n, datatype(dt), out, (int)n, datatype(dt), comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail("MPI_Allgather", rc);
}

static int reduce_scatter_sum(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    if (count("sum_scatter", n)) return -1;
    int rc = mpi.reduce_scatter_block(in, out, (int)n, datatype(dt), reduce_op(dt, PND_SUM), comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail("MPI_Reduce_scatter_block", rc);
}

static int send(void *comm, const void *buf, int64_t n, pn_dtype dt, int dst)
{
    if (count("send", n)) return -1;
    int rc = mpi.send(buf, (int)n, datatype(dt), dst, 0, comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail("MPI_Send", rc);
}

static int recv(void *comm, void *buf, int64_t n, pn_dtype dt, int src)
{
    if (count("recv", n)) return -1;
    mpi_status st; /* a longer message than expected fails as MPI_ERR_TRUNCATE */
    int rc = mpi.recv(buf, (int)n, datatype(dt), src, 0, comm, &st);
    if (rc != MPI_SUCCESS) return mpi_fail("MPI_Recv (the message may be larger than expected)", rc);
    int got = 0;
    if (mpi.get_count(&st, datatype(dt), &got) == MPI_SUCCESS && got != n)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[recv] Expected %lld elements from rank %d but %d arrived (shapes or "
                            "dtypes differ between send and recv).", (long long)n, src, got);
    return 0;
}

static int check_same(void *comm, const char *op, int64_t n, pn_dtype dt)
{
    int64_t v[4] = {n, -n, (int64_t)dt, -(int64_t)dt};
    int rc = mpi.allreduce(MPI_IN_PLACE, v, 4, mpi.t_i64, mpi.op_max, comm);
    if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allreduce", rc);
    if (v[0] != -v[1] || v[2] != -v[3])
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The processes of the group passed arrays of different sizes or "
                            "dtypes (this rank: %lld elements of %s; sizes range %lld..%lld).",
                            op, (long long)n, pn_dtype_name(dt), (long long)-v[1], (long long)v[0]);
    return 0;
}

const pnD_backend pnD_mpi = {
    .name = "mpi",
    .available = available,
    .launched = launched,
    .init = init,
    .rank = rank,
    .size = size,
    .split = split,
    .all_reduce = all_reduce,
    .all_gather = all_gather,
    .reduce_scatter_sum = reduce_scatter_sum,
    .send = send,
    .recv = recv,
    .check_same = check_same,
    .free = comm_free,
};
