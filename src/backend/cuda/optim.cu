/* optim.cu — AdamUpdate on the GPU: one grid-stride kernel per floating dtype computing the
 * new parameter and both moments of each element in one pass (7 memory streams instead of
 * the ~12 kernels of the composed rule), 16-byte accesses when aligned, with the CPU kernel's
 * operation order. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/optim.h"

#include <math.h>

static const int ADAM_THREADS = 256;

__device__ __forceinline__ float adam_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double adam_sqrt(double x) { return sqrt(x); }

/* The coefficients rounded to the compute type C, as weak scalars of the composed rule. */
template <typename C> struct adam_coeffs {
    C b1, ob1, b2, ob2, eps, decay, c1, c2;
};

/* One element: the arithmetic of pnK_adam_update_eval. An output may alias its input (read
 * first). */
template <typename T, typename C>
__device__ __forceinline__ void adam_one(const adam_coeffs<C> &k, T *po, T *mo, T *vo,
                                         const T *p, const T *g, const T *m, const T *v)
{
    C gi = png_load(g);
    C mi = k.b1 * png_load(m) + k.ob1 * gi;
    C vi = k.b2 * png_load(v) + k.ob2 * (gi * gi);
    C pi = png_load(p) * k.decay;
    png_store(po, pi - (k.c1 * mi) / (adam_sqrt(vi) * k.c2 + k.eps));
    png_store(mo, mi);
    png_store(vo, vi);
}

/* 16 bytes of elements, moved as one access (uint4: the simulator defines it too). */
template <typename T> union adam_pack {
    uint4 raw;
    T v[16 / sizeof(T)];
};

/* Dense AdamUpdate over n elements; vec: every pointer is 16-byte aligned, so the body moves
 * 16-byte packs and the tail single elements. */
template <typename T, typename C>
__global__ void adam_update_kernel(int64_t n, T *po, T *mo, T *vo, const T *p, const T *g,
                                   const T *m, const T *v, adam_coeffs<C> k, bool vec)
{
    const int W = 16 / sizeof(T);
    const int64_t nv = vec ? n / W : 0;
    for (int64_t i = png_thread_index(); i < nv; i += png_grid_stride()) {
        adam_pack<T> a, b, c, d, x, y, z;
        a.raw = ((const uint4 *)p)[i];
        b.raw = ((const uint4 *)g)[i];
        c.raw = ((const uint4 *)m)[i];
        d.raw = ((const uint4 *)v)[i];
#pragma unroll
        for (int j = 0; j < W; j++)
            adam_one(k, &x.v[j], &y.v[j], &z.v[j], &a.v[j], &b.v[j], &c.v[j], &d.v[j]);
        ((uint4 *)po)[i] = x.raw;
        ((uint4 *)mo)[i] = y.raw;
        ((uint4 *)vo)[i] = z.raw;
    }
    for (int64_t i = nv * W + png_thread_index(); i < n; i += png_grid_stride())
        adam_one(k, po + i, mo + i, vo + i, p + i, g + i, m + i, v + i);
}

/* The dtypes AdamUpdate takes (the floating ones). */
template <typename T> struct adam_float {
    static const bool value = false;
};
#define ADAM_FLOAT(T)                                                                          \
    template <> struct adam_float<T> {                                                         \
        static const bool value = true;                                                        \
    };
ADAM_FLOAT(pn_float16)
ADAM_FLOAT(pn_bfloat16)
ADAM_FLOAT(float)
ADAM_FLOAT(double)
#undef ADAM_FLOAT

/* See optim.h. */
extern "C" int pnG_adam_update(pn_dtype t, int64_t n, void *const *o, const void *const *i,
                               const pnN_adam_params *prm, int stream)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (adam_float<T>::value) {
            rc = 0;
            if (!o || n == 0) return;
            using C = typename png_compute<T>::type;
            const adam_coeffs<C> k = {(C)prm->b1,  (C)(1 - prm->b1), (C)prm->b2,
                                      (C)(1 - prm->b2), (C)prm->eps, (C)prm->decay,
                                      (C)prm->c1,  (C)prm->c2};
            bool vec = true;
            for (int j = 0; j < 3; j++) vec &= (uintptr_t)o[j] % 16 == 0;
            for (int j = 0; j < 4; j++) vec &= (uintptr_t)i[j] % 16 == 0;
            const int64_t per_thread = vec ? 16 / (int64_t)sizeof(T) : 1;
            auto kern = adam_update_kernel<T, C>;
            PNG_LAUNCH(kern, png_blocks_for((n + per_thread - 1) / per_thread, ADAM_THREADS),
                       ADAM_THREADS, 0, png_stream(stream), n, (T *)o[0], (T *)o[1], (T *)o[2],
                       (const T *)i[0], (const T *)i[1], (const T *)i[2], (const T *)i[3], k, vec);
            rc = pnG_check_launch("adam_update");
        }
    });
    return rc;
}
