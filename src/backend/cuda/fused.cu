/* fused.cu — pnG_fused_launch: the GPU kernel of a Compiled node (an elementwise chain fused by
 * mx.compile), in two forms that compute the same values.
 *   - Generated (on a GPU with NVRTC): the program becomes CUDA source — one line per op, each
 *     value a named register — compiled by NVRTC once per distinct program and cached for the
 *     process (pnG_rtc_launch).
 *   - Interpreted (the simulated GPU, no NVRTC, PONTE_FUSED_JIT=0, or a generated kernel that
 *     failed): one kernel runs any program, decoding its ops per element.
 * Either way each thread reads its inputs, runs every op on values held in registers (a
 * float, or a double when the program holds values a float does not hold exactly: float64,
 * int32, uint32; bool as 0/1) and stores only the result. Each op is the functor of the
 * unfused kernel through fused_ops.cuh, its result rounded to its dtype through the same
 * store, so the output is bit-identical to the unfused GPU graph's. */
#include "backend/cuda/custom_kernel.h"
#include "backend/cuda/fused.h"
#include "backend/cuda/fused_ops.cuh"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
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
#ifdef PONTE_GPU_SIM
/* The simulated launch checks the program's operand pointers (cuda_sim.h). */
static inline void pnsim_param_pointers(const png_fprog &p, pnsim_param_visit &v)
{
    v.ptr(p.out);
    for (int k = 0; k < p.nin; k++) v.ptr(p.in[k]);
}
#endif

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

/* Checks a against the cases the kernels have and fills the interpreter's program P (n, out
 * and inputs left to the caller); *wide: whether values need double registers. 0 or
 * PNG_UNSUPPORTED. */
static int png_fused_plan(const pnG_fused_args *a, png_fprog *P, bool *wide)
{
    if (a->nops < 1 || a->nops > PNG_FUSED_MAX_OPS || a->nin < 0 || a->nin > PNG_FUSED_MAX_IN ||
        a->nslots < 1 || a->nslots > PNG_FUSED_MAX_OPS)
        return PNG_UNSUPPORTED;
    memset(P, 0, sizeof *P);
    *wide = false;
    int od = png_fused_dt(a->out_dtype);
    if (od < 0) return PNG_UNSUPPORTED;
    *wide |= !png_fused_narrow(od);
    P->nin = a->nin, P->nops = a->nops, P->out_dt = od;
    for (int k = 0; k < a->nin; k++) {
        int d = png_fused_dt(a->in_dtype[k]);
        if (d < 0 || (a->strided[k] && (a->ndim < 1 || a->ndim > PNG_MAX_NDIM))) return PNG_UNSUPPORTED;
        *wide |= !png_fused_narrow(d);
        P->in_dt[k] = (int8_t)d;
    }
    for (int k = 0; k < a->nops; k++) {
        const pnG_fused_op *o = &a->ops[k];
        int t = png_fused_dt(o->t), dst = png_fused_dt(o->dst);
        if (t < 0 || dst < 0 || !png_fused_case_ok(o->kind, o->op, t, dst)) return PNG_UNSUPPORTED;
        *wide |= !png_fused_narrow(t) || !png_fused_narrow(dst);
        png_fop *p = &P->ops[k];
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
    return 0;
}

/* ───────────────────────────── generated kernels ───────────────────────────── */

/* The device type of dtype index d, as the generated source spells it. */
static const char *png_fused_type_name(int d)
{
    switch (d) {
#define PNG_FT_DT(A, D, E, T)                                                                  \
    case D: return #T;
        PNG_FUSED_DTYPES(PNG_FT_DT, 0)
#undef PNG_FT_DT
    default: return NULL;
    }
}

/* The enumerator naming op of a kind, as the generated source spells it. */
static const char *png_fused_op_name(int kind, int op)
{
    if (kind == PNG_FUSED_UNARY) switch (op) {
#define PNG_FN_U(OP, ...)                                                                      \
    case PNK_U_##OP: return "PNK_U_" #OP;
            PNG_UNARY_EXPRS(PNG_FN_U)
#undef PNG_FN_U
        }
    if (kind == PNG_FUSED_BINARY) switch (op) {
#define PNG_FN_B(OP, ...)                                                                      \
    case PNK_B_##OP: return "PNK_B_" #OP;
            PNG_BINARY_EXPRS(PNG_FN_B)
#undef PNG_FN_B
        }
    return NULL;
}

/* A growing source text; ok turns false (and stays) when memory runs out. */
struct png_text {
    char *s;
    size_t len, cap;
    bool ok;
};

static void png_emit(png_text *t, const char *fmt, ...)
{
    for (int tries = 0; t->ok && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) t->ok = false;
        else if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        } else {
            size_t cap = 2 * (t->cap + (size_t)n) + 256;
            char *grown = (char *)realloc(t->s, cap);
            if (!grown) t->ok = false;
            else t->s = grown, t->cap = cap;
        }
    }
}

/* The source of a's kernel (entry point pn_fused) for a planned program; NULL when out of memory
 * (free() it). Operands become named values: xK input K, vK op K's result (per element). */
static char *png_fused_source(const pnG_fused_args *a, const png_fprog *P, bool wide)
{
    png_text t = {NULL, 0, 0, true};
    png_emit(&t, "/* generated by Ponte (fused.cu): a fused elementwise chain of %d ops */\n"
                 "#include \"backend/cuda/fused_ops.cuh\"\n"
                 "typedef %s R;\n"
                 "extern \"C\" __global__ void __launch_bounds__(%d) pn_fused(const pnG_fused_jit_params P)\n{\n",
             a->nops, wide ? "double" : "float", PNG_FUSED_THREADS);
    for (int k = 0; k < a->nin; k++) /* broadcast scalars: read once */
        if (a->scalar[k])
            png_emit(&t, "    const R x%d = (R)png_load((const %s *)P.in[%d]);\n", k,
                     png_fused_type_name(P->in_dt[k]), k);
    /* each thread takes PNG_FUSED_ILP elements a grid stride apart (coalesced for each e): all
     * their loads, then the ops, then the stores, so the loads are in flight together and an
     * output that shares an input's buffer is written after its reads */
    png_emit(&t, "    const int64_t G = png_grid_stride();\n"
                 "    for (int64_t i0 = png_thread_index(); i0 < P.n; i0 += G * %d) {\n",
             PNG_FUSED_ILP);
    for (int k = 0; k < a->nin; k++)
        if (!a->scalar[k]) png_emit(&t, "        R x%d_[%d];\n", k, PNG_FUSED_ILP);
    png_emit(&t, "#pragma unroll\n        for (int e = 0; e < %d; e++) {\n"
                 "            const int64_t i = i0 + e * G < P.n ? i0 + e * G : i0;\n", PNG_FUSED_ILP);
    bool strided = false;
    for (int k = 0; k < a->nin; k++) strided |= a->strided[k] && !a->scalar[k];
    if (strided) { /* the element's coordinates, for the strided inputs */
        png_emit(&t, "            int64_t r = i;\n");
        for (int d = a->ndim - 1; d > 0; d--)
            png_emit(&t, "            const int64_t c%d = r %% P.shape[%d];\n            r /= P.shape[%d];\n", d, d, d);
        png_emit(&t, "            const int64_t c0 = r;\n");
    }
    for (int k = 0; k < a->nin; k++) {
        if (a->scalar[k]) continue;
        png_emit(&t, "            x%d_[e] = (R)png_load((const %s *)P.in[%d] + ", k, png_fused_type_name(P->in_dt[k]), k);
        if (!a->strided[k]) png_emit(&t, "i");
        for (int d = 0; a->strided[k] && d < a->ndim; d++)
            png_emit(&t, "%sc%d * P.strides[%d][%d]", d ? " + " : "", d, k, d);
        png_emit(&t, ");\n");
    }
    png_emit(&t, "        }\n        R out_[%d];\n#pragma unroll\n        for (int e = 0; e < %d; e++) {\n",
             PNG_FUSED_ILP, PNG_FUSED_ILP);
    for (int k = 0; k < a->nin; k++)
        if (!a->scalar[k]) png_emit(&t, "            const R x%d = x%d_[e];\n", k, k);
    int producer[PNG_FUSED_MAX_OPS]; /* slot -> the op whose result it holds now */
    for (int k = 0; k < a->nops; k++) {
        const pnG_fused_op *o = &a->ops[k];
        char arg[3][16];
        for (int j = 0; j < P->ops[k].nin; j++) {
            int v = o->in[j];
            if (v < a->nin) snprintf(arg[j], sizeof arg[j], "x%d", v);
            else snprintf(arg[j], sizeof arg[j], "v%d", producer[v - a->nin]);
        }
        png_emit(&t, "            const R v%d = ", k);
        if (o->kind == PNG_FUSED_UNARY || o->kind == PNG_FUSED_BINARY)
            png_emit(&t, "png_fused_%s<%s, %s, R>(P.prm[%d], %s%s%s);\n",
                     o->kind == PNG_FUSED_UNARY ? "unary" : "binary", png_fused_op_name(o->kind, o->op),
                     png_fused_type_name(png_fused_dt(o->t)), k, arg[0],
                     o->kind == PNG_FUSED_BINARY ? ", " : "", o->kind == PNG_FUSED_BINARY ? arg[1] : "");
        else if (o->kind == PNG_FUSED_ASTYPE)
            png_emit(&t, "png_fused_astype<%s, R>(%s);\n", png_fused_type_name(png_fused_dt(o->dst)), arg[0]);
        else
            png_emit(&t, "%s != 0 ? %s : %s;\n", arg[0], arg[1], arg[2]);
        producer[o->out] = k;
    }
    png_emit(&t, "            out_[e] = v%d;\n        }\n#pragma unroll\n        for (int e = 0; e < %d; e++)\n"
                 "            if (i0 + e * G < P.n) png_store((%s *)P.out + i0 + e * G, out_[e]);\n    }\n}\n",
             a->nops - 1, PNG_FUSED_ILP, png_fused_type_name(P->out_dt));
    if (!t.ok) free(t.s);
    return t.ok ? t.s : NULL;
}

/* What a planned program's source depends on, as bytes (equal bytes: the same source), so a
 * launch finds its kernel without generating the source again. */
struct png_fused_sig {
    size_t len;
    uint8_t b[8 + 3 * PNG_FUSED_MAX_IN + 9 * PNG_FUSED_MAX_OPS];
};

static void png_fused_signature(const pnG_fused_args *a, const png_fprog *P, bool wide, png_fused_sig *s)
{
    size_t n = 0;
    bool strided = false;
    for (int k = 0; k < a->nin; k++) strided |= a->strided[k] && !a->scalar[k];
    s->b[n++] = (uint8_t)a->nin, s->b[n++] = (uint8_t)a->nops, s->b[n++] = wide;
    s->b[n++] = (uint8_t)P->out_dt, s->b[n++] = (uint8_t)(strided ? a->ndim : 0);
    for (int k = 0; k < a->nin; k++)
        s->b[n++] = (uint8_t)P->in_dt[k], s->b[n++] = a->scalar[k], s->b[n++] = a->strided[k];
    for (int k = 0; k < a->nops; k++) {
        const pnG_fused_op *o = &a->ops[k];
        s->b[n++] = (uint8_t)o->kind, s->b[n++] = (uint8_t)o->op, s->b[n++] = (uint8_t)(o->op >> 8);
        s->b[n++] = (uint8_t)o->t, s->b[n++] = (uint8_t)o->dst, s->b[n++] = (uint8_t)o->out;
        for (int j = 0; j < 3; j++) s->b[n++] = (uint8_t)(j < P->ops[k].nin ? o->in[j] : 0);
    }
    s->len = n;
}

/* The generated kernels by signature (pnC_kernel_table, under fused_lock) point to entries
 * that are never freed (a launch keeps using its entry after the lock is released). */
struct png_fused_entry {
    char key[64];
    char *source;
    pnG_rtc_kernel *kernel; /* NULL until its first launch loaded it */
};
static pnC_kernel_table fused_table;
static pthread_mutex_t fused_lock = PTHREAD_MUTEX_INITIALIZER;

/* The entry of signature s, made (source generated, key from its hash) when it is new; NULL
 * with an error when out of memory. Called with fused_lock held. */
static png_fused_entry *png_fused_entry_for(const pnG_fused_args *a, const png_fprog *P, bool wide,
                                            const png_fused_sig *s)
{
    png_fused_entry *e = (png_fused_entry *)pnC_kernel_table_get(&fused_table, s->b, s->len);
    if (e) return e;
    e = (png_fused_entry *)calloc(1, sizeof *e);
    char *source = e ? png_fused_source(a, P, wide) : NULL;
    if (!source || pnC_kernel_table_put(&fused_table, s->b, s->len, e, "compile")) {
        if (!source) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[compile] Out of memory generating a fused kernel.");
        free(source);
        free(e);
        return NULL;
    }
    e->source = source;
    snprintf(e->key, sizeof e->key, "ponte:fused:%016llx:%zu", (unsigned long long)pnC_fnv1a(source, strlen(source), PNC_FNV_OFFSET),
             strlen(source));
    return e;
}

static int64_t fused_launches, fused_generated; /* pnG_fused_count (atomic builtins) */
static pnC_jit_status jit;                      /* generated kernels could not run, and why */

extern "C" const char *pnG_fused_jit_error(void) { return pnC_jit_reason(&jit); }

/* Whether generated kernels are tried: not with PONTE_FUSED_JIT=0, not after one failed, and
 * on the simulated GPU only with PONTE_SIM_JIT=1 (it builds them with the host compiler). */
static bool png_fused_jit_wanted(void)
{
#ifdef PONTE_GPU_SIM
    const char *sim = getenv("PONTE_SIM_JIT");
    if (!sim || strcmp(sim, "1") != 0) return false;
#endif
    if (pnC_jit_failed(&jit)) return false;
    const char *env = getenv("PONTE_FUSED_JIT");
    return !(env && env[0] == '0' && env[1] == 0);
}

extern "C" bool pnG_fused_jit_ready(void) { return png_fused_jit_wanted(); }

extern "C" char *pnG_fused_source(const pnG_fused_args *a)
{
    png_fprog P;
    bool wide;
    if (png_fused_plan(a, &P, &wide) != 0) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[compile] The fused program has an op or dtype the GPU "
                                              "kernels do not take.");
        return NULL;
    }
    char *src = png_fused_source(a, &P, wide);
    if (!src) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[compile] Out of memory generating a fused kernel.");
    return src;
}

/* ───────────────────────────── launch ───────────────────────────── */

extern "C" int pnG_fused_launch(const pnG_fused_args *a, bool run)
{
    png_fprog P;
    bool wide;
    int rc = png_fused_plan(a, &P, &wide);
    if (rc != 0 || !run || a->n == 0) return rc;
    cudaStream_t st = png_stream(a->stream);
    if (!st) return -1;
    /* both kernels take PNG_FUSED_ILP elements per thread and step */
    const unsigned blocks = png_blocks_for((a->n + PNG_FUSED_ILP - 1) / PNG_FUSED_ILP, PNG_FUSED_THREADS);
    if (png_fused_jit_wanted()) {
        png_fused_sig sig;
        png_fused_signature(a, &P, wide, &sig);
        pthread_mutex_lock(&fused_lock);
        png_fused_entry *e = png_fused_entry_for(a, &P, wide, &sig);
        pnG_rtc_kernel *const known = e ? e->kernel : NULL;
        pnG_rtc_kernel *kernel = known;
        pthread_mutex_unlock(&fused_lock);
        pnG_fused_jit_params J;
        memset(&J, 0, sizeof J);
        J.n = a->n, J.out = a->out;
        for (int k = 0; k < a->nin; k++) J.in[k] = a->in[k];
        for (int k = 0; k < a->nops; k++) J.prm[k] = P.ops[k].prm;
        memcpy(J.shape, a->shape, sizeof J.shape);
        memcpy(J.strides, a->strides, sizeof J.strides);
        const unsigned grid[3] = {blocks, 1, 1}, block[3] = {PNG_FUSED_THREADS, 1, 1};
        rc = e ? pnG_rtc_launch(&kernel, e->key, e->source, "pn_fused", &J, sizeof J, grid, block, 0, a->stream) : -1;
        if (rc == 0 && !known) { /* loaded by this launch: kept for the next */
            pthread_mutex_lock(&fused_lock);
            e->kernel = kernel;
            pthread_mutex_unlock(&fused_lock);
        }
        if (rc == 0) {
            __atomic_fetch_add(&fused_generated, 1, __ATOMIC_RELAXED);
            __atomic_fetch_add(&fused_launches, 1, __ATOMIC_RELAXED);
            return 0;
        }
        /* no NVRTC, or a kernel it refused: the interpreter from now on (pnG_fused_jit_error
         * keeps the reason) */
        pnC_jit_fail(&jit);
    }
    for (int k = 0; k < a->nin; k++)
        if (a->strided[k] && !a->scalar[k]) return PNG_FUSED_NEEDS_DENSE;
    P.n = a->n, P.out = a->out;
    for (int k = 0; k < a->nin; k++) P.in[k] = a->in[k], P.scalar[k] = a->scalar[k];
    if (wide) {
        auto k = png_fused_kernel<double>;
        PNG_LAUNCH(k, blocks, PNG_FUSED_THREADS, 0, st, P);
    } else {
        auto k = png_fused_kernel<float>;
        PNG_LAUNCH(k, blocks, PNG_FUSED_THREADS, 0, st, P);
    }
    rc = pnG_check_launch("fused");
    if (rc == 0) __atomic_fetch_add(&fused_launches, 1, __ATOMIC_RELAXED);
    return rc;
}

extern "C" int64_t pnG_fused_generated_count(void) { return __atomic_load_n(&fused_generated, __ATOMIC_RELAXED); }

extern "C" int64_t pnG_fused_count(void) { return __atomic_load_n(&fused_launches, __ATOMIC_RELAXED); }
