/* fused.cu — pnG_fused_launch: the GPU kernel of a Compiled node (an elementwise chain fused by
 * mx.compile). One launch interprets the program: each thread takes a few elements (grid
 * stride), reads its inputs, runs every op on values held in registers (a float, or a double
 * when the program holds values a float does not hold exactly: float64, int32, uint32; bool as
 * 0/1) and stores only the result. Each op is the functor of the unfused kernel
 * (elementwise_ops.cuh) and its result is rounded to its dtype through the same store, so the
 * output is bit-identical to the unfused GPU graph's. */
#include "backend/cuda/elementwise_ops.cuh"
#include "backend/cuda/fused.h"

#include <string.h>

/* The dtypes whose values a register holds exactly: X(A, index, pn_dtype, storage type). */
#define PNG_FUSED_DTYPES(X, A)                                                                 \
    X(A, 0, PN_BOOL, bool)                                                                     \
    X(A, 1, PN_FLOAT16, pn_float16)                                                            \
    X(A, 2, PN_BFLOAT16, pn_bfloat16)                                                          \
    X(A, 3, PN_FLOAT32, float)                                                                 \
    X(A, 4, PN_FLOAT64, double)                                                                \
    X(A, 5, PN_INT8, int8_t)                                                                   \
    X(A, 6, PN_INT16, int16_t)                                                                 \
    X(A, 7, PN_INT32, int32_t)                                                                 \
    X(A, 8, PN_UINT8, uint8_t)                                                                 \
    X(A, 9, PN_UINT16, uint16_t)                                                               \
    X(A, 10, PN_UINT32, uint32_t)
#define PNG_FUSED_NDT 11

/* Case numbers of the interpreter's switch: one per (op, dtype) of each kind. */
#define PNG_FC_UNARY(op, d) (1 + (op)*PNG_FUSED_NDT + (d))
#define PNG_FC_BINARY(op, d) (1 + (PNK_U_COUNT + (op)) * PNG_FUSED_NDT + (d))
#define PNG_FC_ASTYPE(d) (1 + (PNK_U_COUNT + PNK_B_COUNT) * PNG_FUSED_NDT + (d))
#define PNG_FC_WHERE (1 + (PNK_U_COUNT + PNK_B_COUNT + 1) * PNG_FUSED_NDT)

/* One op as the kernel reads it (a kernel parameter: the program is small). */
struct png_fop {
    int16_t code, nin, in[3], out;
    pnK_ew_params prm;
};
struct png_fprog {
    int64_t n;
    void *out;
    const void *in[PNG_FUSED_MAX_IN];
    int8_t in_dt[PNG_FUSED_MAX_IN], scalar[PNG_FUSED_MAX_IN];
    int32_t nin, nops, out_dt;
    png_fop ops[PNG_FUSED_MAX_OPS];
};

/* ───────────────────────────── the steps ───────────────────────────── */

/* Whether a register of type R holds every value of storage type T exactly (a double: every
 * type of the table; a float: those narrower than 4 bytes and float32). */
template <typename T, typename R> struct png_fits {
    static const bool value =
        sizeof(R) == 8 || sizeof(T) < 4 || (sizeof(T) == 4 && png_class<T>::value == PNG_KFLT);
};

/* An op's result rounded to its dtype as the unfused kernel stores it, back in a register. */
template <typename OT, typename R, typename V> __device__ __forceinline__ R png_fround(V v)
{
    OT o;
    png_store(&o, v);
    return (R)png_load(&o);
}

template <int OP, typename T, typename R>
__device__ __forceinline__ R png_fused_unary(const pnK_ew_params &prm, R a)
{
    typedef png_unary_fn<OP, T> F;
    if constexpr (!F::ok || !png_fits<T, R>::value) {
        return (R)0; /* never issued: the host checks png_fused_case_ok */
    } else {
        F f;
        f.prm_ = prm;
        return png_fround<typename F::out_t, R>(f((typename F::CT)a));
    }
}

template <int OP, typename T, typename R>
__device__ __forceinline__ R png_fused_binary(const pnK_ew_params &prm, R a, R b)
{
    typedef png_binary_fn<OP, T> F;
    if constexpr (!F::ok || !png_fits<T, R>::value) {
        return (R)0;
    } else {
        F f;
        f.prm_ = prm;
        return png_fround<typename F::out_t, R>(f((typename F::CT)a, (typename F::CT)b));
    }
}

/* astype to a floating or bool dtype from any register dtype: png_convert (copy.cu) of these
 * pairs is the store's rounding of the value (to bool: v != 0; to float64: exact; to float32
 * and the halves: through (float)v). Integer destinations (saturating or wrapping) have no
 * case: the host declines them. */
template <typename D, typename R> __device__ __forceinline__ R png_fused_astype(R a)
{
    if constexpr (!png_fits<D, R>::value) return (R)0;
    else return png_fround<D, R>(a);
}

/* Elements per thread and step: each op's case runs on this many values, which spreads the
 * interpreter's per-op cost (reading the op, the switch) over them. */
#define PNG_FUSED_ILP 4
#define PNG_FUSED_EACH(EXPR)                                                                   \
    for (int e = 0; e < PNG_FUSED_ILP; e++) r[e] = (EXPR);                                     \
    return;

/* One op on the operand values a, b, c of PNG_FUSED_ILP elements, results into r. */
template <typename R>
__device__ __forceinline__ void png_fused_step(const png_fop &op, const R *a, const R *b, const R *c, R *r)
{
    switch (op.code) {
#define PNG_FU_DT(OP, D, E, T)                                                                 \
    case PNG_FC_UNARY(PNK_U_##OP, D): PNG_FUSED_EACH((png_fused_unary<PNK_U_##OP, T, R>(op.prm, a[e])))
#define PNG_FU(OP, ...) PNG_FUSED_DTYPES(PNG_FU_DT, OP)
        PNG_UNARY_EXPRS(PNG_FU)
#undef PNG_FU
#undef PNG_FU_DT
#define PNG_FB_DT(OP, D, E, T)                                                                 \
    case PNG_FC_BINARY(PNK_B_##OP, D):                                                         \
        PNG_FUSED_EACH((png_fused_binary<PNK_B_##OP, T, R>(op.prm, a[e], b[e])))
#define PNG_FB(OP, ...) PNG_FUSED_DTYPES(PNG_FB_DT, OP)
        PNG_BINARY_EXPRS(PNG_FB)
#undef PNG_FB
#undef PNG_FB_DT
#define PNG_FA_DT(A, D, E, T)                                                                  \
    case PNG_FC_ASTYPE(D): PNG_FUSED_EACH((png_fused_astype<T, R>(a[e])))
        PNG_FUSED_DTYPES(PNG_FA_DT, 0)
#undef PNG_FA_DT
    case PNG_FC_WHERE: PNG_FUSED_EACH(a[e] != 0 ? b[e] : c[e])
    default: PNG_FUSED_EACH((R)0)
    }
}

/* Elements idx[] of input k (dtype index in_dt[k]) as register values (a broadcast scalar is
 * read once). */
template <typename R>
__device__ __forceinline__ void png_fused_load(const png_fprog &P, int k, const int64_t *idx, R *v)
{
    switch (P.in_dt[k]) {
#define PNG_FL_DT(A, D, E, T)                                                                  \
    case D:                                                                                    \
        if constexpr (png_fits<T, R>::value) {                                                 \
            const T *p = (const T *)P.in[k];                                                   \
            if (P.scalar[k]) {                                                                 \
                const R x = (R)png_load(p);                                                    \
                for (int e = 0; e < PNG_FUSED_ILP; e++) v[e] = x;                              \
            } else {                                                                           \
                for (int e = 0; e < PNG_FUSED_ILP; e++) v[e] = (R)png_load(p + idx[e]);        \
            }                                                                                  \
        }                                                                                      \
        break;
        PNG_FUSED_DTYPES(PNG_FL_DT, 0)
#undef PNG_FL_DT
    default: break;
    }
}

/* Stores the values of the elements idx[e] < n. */
template <typename R>
__device__ __forceinline__ void png_fused_store(const png_fprog &P, const int64_t *idx, const R *v)
{
    switch (P.out_dt) {
#define PNG_FS_DT(A, D, E, T)                                                                  \
    case D:                                                                                    \
        if constexpr (png_fits<T, R>::value)                                                   \
            for (int e = 0; e < PNG_FUSED_ILP; e++)                                            \
                if (idx[e] < P.n) png_store((T *)P.out + idx[e], v[e]);                        \
        break;
        PNG_FUSED_DTYPES(PNG_FS_DT, 0)
#undef PNG_FS_DT
    default: break;
    }
}

/* The interpreter: each thread takes PNG_FUSED_ILP elements a grid stride apart (coalesced
 * for every e), runs every op in order on them; operand a < nin reads input a, else slot
 * a - nin (slots live in local memory, few of them: the host reuses dead ones). Elements past
 * n compute element i again (in bounds) and are not stored. */
template <typename R> __global__ void png_fused_kernel(png_fprog P)
{
    const int64_t G = png_grid_stride();
    for (int64_t i = png_thread_index(); i < P.n; i += G * PNG_FUSED_ILP) {
        int64_t idx[PNG_FUSED_ILP], at[PNG_FUSED_ILP];
        for (int e = 0; e < PNG_FUSED_ILP; e++) {
            idx[e] = i + e * G;
            at[e] = idx[e] < P.n ? idx[e] : i;
        }
        R slot[PNG_FUSED_MAX_OPS][PNG_FUSED_ILP], r[PNG_FUSED_ILP] = {};
        for (int k = 0; k < P.nops; k++) {
            const png_fop &op = P.ops[k];
            R v[3][PNG_FUSED_ILP] = {};
            for (int j = 0; j < 3; j++) {
                if (j >= op.nin) break;
                const int a = op.in[j];
                if (a < P.nin) png_fused_load<R>(P, a, at, v[j]);
                else
                    for (int e = 0; e < PNG_FUSED_ILP; e++) v[j][e] = slot[a - P.nin][e];
            }
            png_fused_step<R>(op, v[0], v[1], v[2], r);
            for (int e = 0; e < PNG_FUSED_ILP; e++) slot[op.out][e] = r[e];
        }
        png_fused_store<R>(P, idx, r); /* the last op's results */
    }
}

/* ───────────────────────────── launch ───────────────────────────── */

static int64_t fused_launches; /* pnG_fused_count (atomic builtins) */

/* Whether dtype index d fits a float register. */
static bool png_fused_narrow(int d)
{
    switch (d) {
#define PNG_FN_DT(A, D, E, T)                                                                  \
    case D: return png_fits<T, float>::value;
        PNG_FUSED_DTYPES(PNG_FN_DT, 0)
#undef PNG_FN_DT
    default: return false;
    }
}

/* The register-dtype index of t, or -1. */
static int png_fused_dt(int t)
{
#define PNG_FD_DT(A, D, E, T)                                                                  \
    if (t == E) return D;
    PNG_FUSED_DTYPES(PNG_FD_DT, 0)
#undef PNG_FD_DT
    return -1;
}

/* Whether the interpreter has a case for (kind, op) on dtype index d; dst: the result's. */
static bool png_fused_case_ok(int kind, int op, int d, int dst)
{
    switch (kind) {
    case PNG_FUSED_UNARY:
        switch (PNG_FC_UNARY(op, d)) {
#define PNG_FU_DT(OP, D, E, T)                                                                 \
    case PNG_FC_UNARY(PNK_U_##OP, D): return png_unary_fn<PNK_U_##OP, T>::ok;
#define PNG_FU(OP, ...) PNG_FUSED_DTYPES(PNG_FU_DT, OP)
            PNG_UNARY_EXPRS(PNG_FU)
#undef PNG_FU
#undef PNG_FU_DT
        default: return false;
        }
    case PNG_FUSED_BINARY:
        switch (PNG_FC_BINARY(op, d)) {
#define PNG_FB_DT(OP, D, E, T)                                                                 \
    case PNG_FC_BINARY(PNK_B_##OP, D): return png_binary_fn<PNK_B_##OP, T>::ok;
#define PNG_FB(OP, ...) PNG_FUSED_DTYPES(PNG_FB_DT, OP)
            PNG_BINARY_EXPRS(PNG_FB)
#undef PNG_FB
#undef PNG_FB_DT
        default: return false;
        }
    case PNG_FUSED_WHERE: return true;
    case PNG_FUSED_ASTYPE: return dst <= 4; /* bool, the floats */
    default: return false;
    }
}

extern "C" int pnG_fused_launch(const pnG_fused_args *a, bool run)
{
    if (a->nops < 1 || a->nops > PNG_FUSED_MAX_OPS || a->nin < 0 || a->nin > PNG_FUSED_MAX_IN ||
        a->nslots < 1 || a->nslots > PNG_FUSED_MAX_OPS)
        return PNG_UNSUPPORTED;
    png_fprog P;
    memset(&P, 0, sizeof P);
    bool wide = false;
    int od = png_fused_dt(a->out_dtype);
    if (od < 0) return PNG_UNSUPPORTED;
    wide |= !png_fused_narrow(od);
    P.n = a->n, P.out = a->out, P.nin = a->nin, P.nops = a->nops, P.out_dt = od;
    for (int k = 0; k < a->nin; k++) {
        int d = png_fused_dt(a->in_dtype[k]);
        if (d < 0) return PNG_UNSUPPORTED;
        wide |= !png_fused_narrow(d);
        P.in[k] = a->in[k], P.in_dt[k] = (int8_t)d, P.scalar[k] = a->scalar[k];
    }
    for (int k = 0; k < a->nops; k++) {
        const pnG_fused_op *o = &a->ops[k];
        int t = png_fused_dt(o->t), dst = png_fused_dt(o->dst);
        if (t < 0 || dst < 0 || !png_fused_case_ok(o->kind, o->op, t, dst)) return PNG_UNSUPPORTED;
        wide |= !png_fused_narrow(t) || !png_fused_narrow(dst);
        png_fop *p = &P.ops[k];
        p->nin = o->kind == PNG_FUSED_WHERE ? 3 : o->kind == PNG_FUSED_BINARY ? 2 : 1;
        p->code = (int16_t)(o->kind == PNG_FUSED_UNARY    ? PNG_FC_UNARY(o->op, t)
                            : o->kind == PNG_FUSED_BINARY ? PNG_FC_BINARY(o->op, t)
                            : o->kind == PNG_FUSED_ASTYPE ? PNG_FC_ASTYPE(dst)
                                                          : PNG_FC_WHERE);
        for (int j = 0; j < p->nin; j++) {
            if (o->in[j] < 0 || o->in[j] >= a->nin + a->nslots) return PNG_UNSUPPORTED;
            p->in[j] = o->in[j];
        }
        if (o->out < 0 || o->out >= a->nslots) return PNG_UNSUPPORTED;
        p->out = o->out;
        p->prm.op = o->op, p->prm.flag = o->flag;
        p->prm.p0 = o->p0, p->prm.p1 = o->p1, p->prm.p2 = o->p2;
    }
    if (!run || a->n == 0) return 0;
    cudaStream_t st = png_stream(a->stream);
    if (!st) return -1;
    const int threads = 256;
    const int64_t per_thread = (a->n + PNG_FUSED_ILP - 1) / PNG_FUSED_ILP;
    if (wide) {
        auto k = png_fused_kernel<double>;
        PNG_LAUNCH(k, png_blocks_for(per_thread, threads), threads, 0, st, P);
    } else {
        auto k = png_fused_kernel<float>;
        PNG_LAUNCH(k, png_blocks_for(per_thread, threads), threads, 0, st, P);
    }
    int rc = pnG_check_launch("fused");
    if (rc == 0) __atomic_fetch_add(&fused_launches, 1, __ATOMIC_RELAXED);
    return rc;
}

extern "C" int64_t pnG_fused_count(void) { return __atomic_load_n(&fused_launches, __ATOMIC_RELAXED); }
