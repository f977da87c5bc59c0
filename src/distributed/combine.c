/* combine.c — the element-wise reductions of all_reduce over every dtype, on host buffers, for
 * the backends that reduce themselves (ring.c) or need operators their library lacks (mpi.c:
 * float16, bfloat16 and complex64 max / min). One table, X-macro generated. */
#include "distributed/distributed.h"

#include <complex.h>
#include <math.h>

/* max / min that let NaN win (as MLX's all_max / all_min do through its reductions). */
#define PND_MAX(x, y) ((x) > (y) || (x) != (x) ? (x) : (y))
#define PND_MIN(x, y) ((x) < (y) || (x) != (x) ? (x) : (y))

/* complex64 in lexicographic order (real part, then imaginary), as MLX orders them. */
static bool c64_less(pn_complex64 a, pn_complex64 b)
{
    return crealf(a) < crealf(b) || (crealf(a) == crealf(b) && cimagf(a) < cimagf(b));
}

/* acc[i] = acc[i] op x[i] for one storage type T computed in type C (load / store convert). */
#define DEF_COMBINE(NAME, T, C, LOAD, STORE)                                                   \
    static void NAME(void *accv, const void *xv, int64_t n, pnD_reduce op)                    \
    {                                                                                          \
        T *acc = accv;                                                                         \
        const T *x = xv;                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                      \
            C a = LOAD(acc[i]), b = LOAD(x[i]);                                                \
            acc[i] = STORE(op == PND_SUM ? a + b : op == PND_MAX ? PND_MAX(a, b) : PND_MIN(a, b)); \
        }                                                                                      \
    }
#define ID(v) (v)
DEF_COMBINE(combine_u8, uint8_t, uint8_t, ID, ID)
DEF_COMBINE(combine_u16, uint16_t, uint16_t, ID, ID)
DEF_COMBINE(combine_u32, uint32_t, uint32_t, ID, ID)
DEF_COMBINE(combine_u64, uint64_t, uint64_t, ID, ID)
DEF_COMBINE(combine_i8, int8_t, int8_t, ID, ID)
DEF_COMBINE(combine_i16, int16_t, int16_t, ID, ID)
DEF_COMBINE(combine_i32, int32_t, int32_t, ID, ID)
DEF_COMBINE(combine_i64, int64_t, int64_t, ID, ID)
DEF_COMBINE(combine_f32, float, float, ID, ID)
DEF_COMBINE(combine_f64, double, double, ID, ID)
DEF_COMBINE(combine_f16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16)
DEF_COMBINE(combine_bf16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16)

/* bool: or for sum and max, and for min. */
static void combine_bool(void *accv, const void *xv, int64_t n, pnD_reduce op)
{
    bool *acc = accv;
    const bool *x = xv;
    for (int64_t i = 0; i < n; i++) acc[i] = op == PND_MIN ? acc[i] && x[i] : acc[i] || x[i];
}

static void combine_c64(void *accv, const void *xv, int64_t n, pnD_reduce op)
{
    pn_complex64 *acc = accv;
    const pn_complex64 *x = xv;
    for (int64_t i = 0; i < n; i++)
        if (op == PND_SUM) acc[i] += x[i];
        else if (op == PND_MAX ? c64_less(acc[i], x[i]) : c64_less(x[i], acc[i])) acc[i] = x[i];
}

typedef void (*combine_fn)(void *acc, const void *x, int64_t n, pnD_reduce op);
static const combine_fn COMBINE[PN_NUM_DTYPES] = {
    [PN_BOOL] = combine_bool,   [PN_UINT8] = combine_u8,     [PN_UINT16] = combine_u16,
    [PN_UINT32] = combine_u32,  [PN_UINT64] = combine_u64,   [PN_INT8] = combine_i8,
    [PN_INT16] = combine_i16,   [PN_INT32] = combine_i32,    [PN_INT64] = combine_i64,
    [PN_FLOAT16] = combine_f16, [PN_FLOAT32] = combine_f32,  [PN_FLOAT64] = combine_f64,
    [PN_BFLOAT16] = combine_bf16, [PN_COMPLEX64] = combine_c64,
};

void pnD_combine(void *acc, const void *x, int64_t n, pn_dtype dt, pnD_reduce op)
{
    if ((unsigned)dt < PN_NUM_DTYPES && COMBINE[dt]) COMBINE[dt](acc, x, n, op);
}
