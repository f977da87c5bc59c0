/* optim.cu — OptimUpdate on the GPU: one grid-stride kernel per (floating dtype, rule)
 * computing the new parameter and state slots of each element in one pass over the shared
 * per-element step of ops/optim.h (for Adam 7 memory streams instead of the ~12 kernels of the
 * composed rule), 16-byte accesses when aligned, with the CPU kernel's operation order. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/optim.h"

#include <math.h>

static const int OPT_THREADS = 256;

__device__ __forceinline__ float opt_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double opt_sqrt(double x) { return sqrt(x); }

/* opt_step<rule, C>(flags, k, p, g, &a, &b, &p'): the table's arithmetic (ops/optim.h). The
 * qualifier goes through a macro so that its comma does not split the macro's arguments. */
#define OPT_STEP_QUAL template <int RULE, typename C> __device__ __forceinline__
PNN_OPTIM_DEFINE_STEP(OPT_STEP_QUAL, opt_step, RULE, C, opt_sqrt)
#undef OPT_STEP_QUAL

/* The coefficients rounded to the compute type C, as weak scalars of the composed rule. */
template <typename C> struct opt_coeffs {
    C k[PNN_OPT_NK];
};

/* One element of rule R with S slots. An output may alias its input (read first). */
template <int R, int S, typename T, typename C>
__device__ __forceinline__ void opt_one(int flags, const opt_coeffs<C> &k, T *po, T *ao, T *bo, const T *p,
                                        const T *g, const T *a, const T *b)
{
    C av = S > 0 ? (C)png_load(a) : (C)0, bv = S > 1 ? (C)png_load(b) : (C)0, pv;
    opt_step<R, C>(flags, k.k, (C)png_load(p), (C)png_load(g), &av, &bv, &pv);
    png_store(po, pv);
    if (S > 0) png_store(ao, av);
    if (S > 1) png_store(bo, bv);
}

/* 16 bytes of elements, moved as one access (uint4: the simulator defines it too). */
template <typename T> union opt_pack {
    uint4 raw;
    T v[16 / sizeof(T)];
};

/* Dense OptimUpdate of rule R (S slots) over n elements: o = p', a', b'; i = p, g, a, b (the
 * slots past S are NULL). vec: every pointer is 16-byte aligned, so the body moves 16-byte
 * packs and the tail single elements. */
template <int R, int S, typename T, typename C>
__global__ void optim_update_kernel(int64_t n, T *po, T *ao, T *bo, const T *p, const T *g, const T *a,
                                    const T *b, int flags, opt_coeffs<C> k, bool vec)
{
    const int W = 16 / sizeof(T);
    const int64_t nv = vec ? n / W : 0;
    for (int64_t i = png_thread_index(); i < nv; i += png_grid_stride()) {
        opt_pack<T> xp, xg, xa, xb, yp, ya, yb;
        xp.raw = ((const uint4 *)p)[i];
        xg.raw = ((const uint4 *)g)[i];
        if (S > 0) xa.raw = ((const uint4 *)a)[i];
        if (S > 1) xb.raw = ((const uint4 *)b)[i];
#pragma unroll
        for (int j = 0; j < W; j++)
            opt_one<R, S>(flags, k, &yp.v[j], &ya.v[j], &yb.v[j], &xp.v[j], &xg.v[j], &xa.v[j], &xb.v[j]);
        ((uint4 *)po)[i] = yp.raw;
        if (S > 0) ((uint4 *)ao)[i] = ya.raw;
        if (S > 1) ((uint4 *)bo)[i] = yb.raw;
    }
    for (int64_t i = nv * W + png_thread_index(); i < n; i += png_grid_stride())
        opt_one<R, S>(flags, k, po + i, S > 0 ? ao + i : ao, S > 1 ? bo + i : bo, p + i, g + i,
                      S > 0 ? a + i : a, S > 1 ? b + i : b);
}

/* The dtypes OptimUpdate takes (the floating ones). */
template <typename T> struct opt_float {
    static const bool value = false;
};
#define OPT_FLOAT(T)                                                                           \
    template <> struct opt_float<T> {                                                          \
        static const bool value = true;                                                        \
    };
OPT_FLOAT(pn_float16)
OPT_FLOAT(pn_bfloat16)
OPT_FLOAT(float)
OPT_FLOAT(double)
#undef OPT_FLOAT

/* Launches rule R's kernel over the n elements. */
template <int R, int S, typename T, typename C>
static void opt_launch(int64_t n, void *const *o, const void *const *i, const pnN_optim_params *prm, int stream)
{
    opt_coeffs<C> k;
    for (int j = 0; j < PNN_OPT_NK; j++) k.k[j] = (C)prm->k[j];
    T *out[3] = {(T *)o[0], S > 0 ? (T *)o[1] : nullptr, S > 1 ? (T *)o[2] : nullptr};
    const T *in[4] = {(const T *)i[0], (const T *)i[1], S > 0 ? (const T *)i[2] : nullptr,
                      S > 1 ? (const T *)i[3] : nullptr};
    bool vec = true;
    for (int j = 0; j < 3; j++) vec &= (uintptr_t)out[j] % 16 == 0;
    for (int j = 0; j < 4; j++) vec &= (uintptr_t)in[j] % 16 == 0;
    const int64_t per_thread = vec ? 16 / (int64_t)sizeof(T) : 1;
    auto kern = optim_update_kernel<R, S, T, C>;
    PNG_LAUNCH(kern, png_blocks_for((n + per_thread - 1) / per_thread, OPT_THREADS), OPT_THREADS, 0,
               png_stream(stream), n, out[0], out[1], out[2], in[0], in[1], in[2], in[3], prm->flags, k, vec);
}

/* See optim.h. */
extern "C" int pnG_optim_update(pn_dtype t, int64_t n, void *const *o, const void *const *i,
                                const pnN_optim_params *prm, int stream)
{
    int rc = PNG_UNSUPPORTED;
    if (prm->rule < 0 || prm->rule >= PNN_OPT_NRULES) return rc;
    png_dispatch(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (opt_float<T>::value) {
            rc = 0;
            if (!o || n == 0) return;
            using C = typename png_compute<T>::type;
            switch (prm->rule) {
#define OPT_CASE(E, N, S)                                                                      \
    case E: opt_launch<E, S, T, C>(n, o, i, prm, stream); break;
                PNN_OPTIM_RULES(OPT_CASE)
#undef OPT_CASE
            }
            rc = pnG_check_launch("optim_update");
        }
    });
    return rc;
}
