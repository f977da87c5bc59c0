/* optim.c — CPU kernel of AdamUpdate (src/ops/optim.c): one pass computing the new parameter
 * and both moments per element, a typed simd loop per floating dtype (f32/f64 vectorize fully
 * when built with -fno-math-errno, sqrt included), OpenMP over chunks; p, m, v buffers are
 * donated to the outputs when nothing else holds them. */
#include "backend/cpu/optim.h"

#include "ops/optim.h"

#include <math.h>

#ifdef _OPENMP
#define PNK_ADAM_SIMD _Pragma("omp simd")
#else
#define PNK_ADAM_SIMD _Pragma("GCC ivdep")
#endif

#define PNK_ADAM_ID(x) (x)

/* X(ENUM, short name, storage type, compute type, load, store, sqrt). */
#define PNK_ADAM_TYPES(X)                                                                      \
    X(PN_FLOAT32, f32, float, float, PNK_ADAM_ID, PNK_ADAM_ID, sqrtf)                          \
    X(PN_FLOAT64, f64, double, double, PNK_ADAM_ID, PNK_ADAM_ID, sqrt)                         \
    X(PN_FLOAT16, f16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16, sqrtf)               \
    X(PN_BFLOAT16, bf16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16, sqrtf)

/* n elements: o[0..2] = p', m', v'; i[0..3] = p, g, m, v (all dense). An output may be the
 * same memory as its input (donated): every element is read before it is written. The
 * operation order is the composed rule's (p*decay first, then c1*m' / (sqrt(v')*c2 + eps)),
 * so float32 results match it to the last bit when the compiler does not contract. */
typedef void (*adam_row_fn)(int64_t n, void *const *o, const void *const *i,
                            const pnN_adam_params *prm);

#define PNK_ADAM_ROW(E, N, T, C, LD, ST, SQRT)                                                 \
    static void adam_row_##N(int64_t n, void *const *o, const void *const *i,                 \
                             const pnN_adam_params *prm)                                        \
    {                                                                                          \
        T *po = o[0], *mo = o[1], *vo = o[2];                                                   \
        const T *p = i[0], *g = i[1], *m = i[2], *v = i[3];                                     \
        const C b1 = (C)prm->b1, ob1 = (C)(1 - prm->b1), b2 = (C)prm->b2;                       \
        const C ob2 = (C)(1 - prm->b2), eps = (C)prm->eps, decay = (C)prm->decay;              \
        const C c1 = (C)prm->c1, c2 = (C)prm->c2;                                              \
        PNK_ADAM_SIMD for (int64_t k = 0; k < n; k++)                                          \
        {                                                                                      \
            C gk = LD(g[k]);                                                                   \
            C mk = b1 * LD(m[k]) + ob1 * gk;                                                   \
            C vk = b2 * LD(v[k]) + ob2 * (gk * gk);                                            \
            C pk = LD(p[k]) * decay;                                                           \
            po[k] = ST(pk - (c1 * mk) / (SQRT(vk) * c2 + eps));                                \
            mo[k] = ST(mk);                                                                    \
            vo[k] = ST(vk);                                                                    \
        }                                                                                      \
    }
PNK_ADAM_TYPES(PNK_ADAM_ROW)
#undef PNK_ADAM_ROW

static adam_row_fn adam_row(pn_dtype t)
{
    switch (t) {
#define PNK_ADAM_CASE(E, N, ...)                                                               \
    case E: return adam_row_##N;
        PNK_ADAM_TYPES(PNK_ADAM_CASE)
#undef PNK_ADAM_CASE
    default: return NULL;
    }
}

/* Elements per chunk handed to a thread. */
enum { ADAM_CHUNK = 8192 };

/* See optim.h. */
int pnK_adam_update_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnN_adam_params *prm = PNC_PARAMS(node, pnN_adam_params);
    const pn_dtype t = in[0]->dtype;
    adam_row_fn fn = adam_row(t);
    if (!fn)
        return pn_set_error(PN_ERR_BACKEND, "[%s] Not implemented on the CPU for %s.",
                            node->prim->name, pn_dtype_name(t));
    const int64_t n = out[0]->size;
    /* dense sources: the inputs themselves, or contiguous temporaries of strided ones */
    pn_array *src[4] = {NULL, NULL, NULL, NULL};
    int rc = -1;
    for (int k = 0; k < 4; k++) {
        src[k] = pnC_row_contiguous(in[k]) ? in[k] : pnC_contiguous(in[k]);
        if (!src[k]) goto done;
    }
    const void *ip[4];
    for (int k = 0; k < 4; k++) ip[k] = n ? pnC_data(src[k]) : NULL; /* before donation */
    static const int donor[3] = {0, 2, 3}; /* p -> p', m -> m', v -> v' */
    for (int j = 0; j < 3; j++)
        if (!(n > 0 && pnC_donate(out[j], src[donor[j]])) && pnC_alloc_output(out[j])) goto done;
    rc = 0;
    if (n == 0) goto done;
    char *op[3];
    for (int j = 0; j < 3; j++) op[j] = pnC_data(out[j]);
    const int64_t es = (int64_t)pn_dtype_size(t), chunks = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
#pragma omp parallel for schedule(static) if (n > PNC_PAR_GRAIN)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t lo = c * ADAM_CHUNK, len = n - lo < ADAM_CHUNK ? n - lo : ADAM_CHUNK;
        void *o[3];
        const void *i[4];
        for (int j = 0; j < 3; j++) o[j] = op[j] + lo * es;
        for (int k = 0; k < 4; k++) i[k] = (const char *)ip[k] + lo * es;
        fn(len, o, i, prm);
    }
done:
    for (int k = 0; k < 4; k++)
        if (src[k] && src[k] != in[k]) pnC_decref(src[k]);
    return rc;
}
