/* optim.c — CPU kernel of OptimUpdate (src/ops/optim.c): one pass computing the new parameter
 * and state slots per element, one typed simd loop per (rule, floating dtype) over the shared
 * per-element step of ops/optim.h (f32/f64 vectorize fully when built with -fno-math-errno,
 * sqrt included), OpenMP over chunks; p and the slots donate their buffers to the outputs
 * when nothing else holds them. */
#include "backend/cpu/optim.h"

#include "ops/optim.h"

#include <math.h>

#ifdef _OPENMP
#define PNK_OPT_SIMD _Pragma("omp simd")
#else
#define PNK_OPT_SIMD _Pragma("GCC ivdep")
#endif

#define PNK_OPT_ID(x) (x)

/* Each rule's element step for float and double compute: opt_step_<rule>_f / _d. */
#define PNK_OPT_STEPS(E, N, S)                                                                 \
    PNN_OPTIM_DEFINE_STEP(static inline, opt_step_##N##_f, E, float, sqrtf)                    \
    PNN_OPTIM_DEFINE_STEP(static inline, opt_step_##N##_d, E, double, sqrt)
PNN_OPTIM_RULES(PNK_OPT_STEPS)
#undef PNK_OPT_STEPS

/* n dense elements: o = p', slots'; i = p, g, slots (an output may be the same memory as its
 * input: every element is read before it is written). kd: the rule's coefficients, rounded
 * here to the compute type as the composed rule's weak scalars are. */
typedef void (*opt_row_fn)(int64_t n, int flags, const double *kd, void *const *o, const void *const *i);

/* Y(short dtype name, storage type, compute type, step suffix, load, store) per floating dtype,
 * in the order of dtype_index below. */
#define PNK_OPT_TYPES(Y, E, N, S)                                                              \
    Y(E, N, S, f32, float, float, f, PNK_OPT_ID, PNK_OPT_ID)                                   \
    Y(E, N, S, f64, double, double, d, PNK_OPT_ID, PNK_OPT_ID)                                 \
    Y(E, N, S, f16, pn_float16, float, f, pnC_f16_to_f32, pnC_f32_to_f16)                      \
    Y(E, N, S, bf16, pn_bfloat16, float, f, pnC_bf16_to_f32, pnC_f32_to_bf16)

#define PNK_OPT_ROW(E, N, S, TN, T, C, CS, LD, ST)                                             \
    static void opt_row_##N##_##TN(int64_t n, int flags, const double *kd, void *const *o,     \
                                   const void *const *i)                                       \
    {                                                                                          \
        C k[PNN_OPT_NK];                                                                       \
        for (int j = 0; j < PNN_OPT_NK; j++) k[j] = (C)kd[j];                                  \
        T *po = (T *)o[0], *ao = S > 0 ? (T *)o[1] : NULL, *bo = S > 1 ? (T *)o[2] : NULL;     \
        const T *p = (const T *)i[0], *g = (const T *)i[1];                                    \
        const T *a = S > 0 ? (const T *)i[2] : NULL, *b = S > 1 ? (const T *)i[3] : NULL;      \
        PNK_OPT_SIMD for (int64_t x = 0; x < n; x++)                                           \
        {                                                                                      \
            C av = S > 0 ? LD(a[x]) : (C)0, bv = S > 1 ? LD(b[x]) : (C)0, pv;                  \
            opt_step_##N##_##CS(flags, k, LD(p[x]), LD(g[x]), &av, &bv, &pv);                  \
            po[x] = ST(pv);                                                                    \
            if (S > 0) ao[x] = ST(av);                                                         \
            if (S > 1) bo[x] = ST(bv);                                                         \
        }                                                                                      \
    }
#define PNK_OPT_RULE_ROWS(E, N, S) PNK_OPT_TYPES(PNK_OPT_ROW, E, N, S)
PNN_OPTIM_RULES(PNK_OPT_RULE_ROWS)
#undef PNK_OPT_RULE_ROWS
#undef PNK_OPT_ROW

/* The row functions by rule and dtype_index. */
#define PNK_OPT_ROW_NAME(E, N, S, TN, ...) opt_row_##N##_##TN,
#define PNK_OPT_RULE_ENTRY(E, N, S) [E] = {PNK_OPT_TYPES(PNK_OPT_ROW_NAME, E, N, S)},
static const opt_row_fn OPT_ROWS[PNN_OPT_NRULES][4] = {PNN_OPTIM_RULES(PNK_OPT_RULE_ENTRY)};
#undef PNK_OPT_RULE_ENTRY
#undef PNK_OPT_ROW_NAME

static int dtype_index(pn_dtype t)
{
    switch (t) {
    case PN_FLOAT32: return 0;
    case PN_FLOAT64: return 1;
    case PN_FLOAT16: return 2;
    case PN_BFLOAT16: return 3;
    default: return -1;
    }
}

/* Elements per chunk handed to a thread. */
enum { OPT_CHUNK = 8192 };

/* See optim.h. */
int pnK_optim_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnN_optim_params *prm = PNC_PARAMS(node, pnN_optim_params);
    const pn_dtype t = in[0]->dtype;
    const int di = dtype_index(t), nin = node->nin, nout = node->nout;
    if (di < 0 || prm->rule < 0 || prm->rule >= PNN_OPT_NRULES)
        return pn_set_error(PN_ERR_BACKEND, "[%s] Not implemented on the CPU for %s.", node->prim->name,
                            pn_dtype_name(t));
    opt_row_fn fn = OPT_ROWS[prm->rule][di];
    const int64_t n = out[0]->size;
    /* dense sources: the inputs themselves, or contiguous temporaries of strided ones */
    pn_array *src[2 + PNN_OPT_MAX_SLOTS] = {NULL};
    int rc = -1;
    for (int k = 0; k < nin; k++) {
        src[k] = pnC_row_contiguous(in[k]) ? in[k] : pnC_contiguous(in[k]);
        if (!src[k]) goto done;
    }
    const void *ip[2 + PNN_OPT_MAX_SLOTS];
    for (int k = 0; k < nin; k++) ip[k] = n ? pnC_data(src[k]) : NULL; /* before donation */
    for (int j = 0; j < nout; j++) { /* p -> p', slot s -> slot s' */
        pn_array *donor = src[j ? j + 1 : 0];
        if (!(n > 0 && pnC_donate(out[j], donor)) && pnC_alloc_output(out[j])) goto done;
    }
    rc = 0;
    if (n == 0) goto done;
    char *op[1 + PNN_OPT_MAX_SLOTS];
    for (int j = 0; j < nout; j++) op[j] = pnC_data(out[j]);
    const int64_t es = (int64_t)pn_dtype_size(t), chunks = (n + OPT_CHUNK - 1) / OPT_CHUNK;
#pragma omp parallel for schedule(static) if (n > PNC_PAR_GRAIN)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t lo = c * OPT_CHUNK, len = n - lo < OPT_CHUNK ? n - lo : OPT_CHUNK;
        void *o[1 + PNN_OPT_MAX_SLOTS];
        const void *i[2 + PNN_OPT_MAX_SLOTS];
        for (int j = 0; j < nout; j++) o[j] = op[j] + lo * es;
        for (int k = 0; k < nin; k++) i[k] = (const char *)ip[k] + lo * es;
        fn(len, prm->flags, prm->k, o, i);
    }
done:
    for (int k = 0; k < nin; k++)
        if (src[k] && src[k] != in[k]) pnC_decref(src[k]);
    return rc;
}
