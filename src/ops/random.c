/* random.c — random numbers from splittable keys, bit-identical to mlx.core.random: the
 * RandomBits primitive (threefry2x32 counters per key; kernel in backend/cpu/random.c), the
 * calling thread's global key sequence, and every distribution composed from bits and
 * elementwise ops exactly as MLX composes it, so the same key gives the same values. */
#include "core/core.h"
#include "backend/cpu/random.h"
#include "backend/cuda/eval.h"
#include "transforms/trace.h"

#include <float.h>
#include <math.h>
#include <time.h>

/* ───────────────────────────── primitives ───────────────────────────── */

typedef struct bits_params {
    int width; /* bytes per element: 1, 2 or 4 */
} bits_params;

static int no_grad_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cotangents, const int *argnums, int nargs,
                       pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL; /* keys are integers: no gradient */
    return 0;
}

static int no_grad_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tangents, pn_array **out_tangents)
{
    out_tangents[0] = NULL;
    return 0;
}

static int bits_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes);

const pnC_primitive random_bits_prim = {
    .name = "RandomBits",
    .eval = {[PN_CPU] = pnK_random_bits_eval, [PN_GPU] = PNG_EVAL(pnG_random_bits_eval)},
    .vjp = no_grad_vjp,
    .jvp = no_grad_jvp,
    .vmap = bits_vmap,
};

static pn_dtype bits_dtype(int width)
{
    return width == 4 ? PN_UINT32 : width == 2 ? PN_UINT16 : width == 1 ? PN_UINT8 : PN_NUM_DTYPES;
}

/* Batching a key: keys of shape (K..., 2) draw one block each, so a mapped key axis becomes a
 * leading key axis of the output (MLX's RandomBits::vmap). */
static int bits_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    pn_array *key = in[0];
    int kax = in_axes[0];
    const bits_params *p = PNC_PARAMS(node, bits_params);
    const pn_array *o = node->outputs[0]; /* the traced output (its shape is the node's) */
    if (!o && !node->out_shapes) {
        pnC_fail(PN_ERR_BACKEND, "[bits] The output shape of a vmapped RandomBits is unknown.");
        return -1;
    }
    int ndim = o ? o->ndim : node->out_ndims[0];
    int64_t shape[PNC_MAX_NDIM + 1];
    memcpy(shape, o ? o->shape : node->out_shapes[0], (size_t)ndim * sizeof(int64_t));
    if (kax >= 0) {
        if (key->ndim < 2) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[bits] Cannot vmap over a key of shape (%lld,).",
                     (long long)key->shape[0]);
            return -1;
        }
        if (kax == key->ndim - 1) { /* the pair axis must stay last */
            key = pn_swapaxes(key, kax, kax - 1);
            if (!key) return -1;
            kax--;
        }
        if (ndim + 1 > PNC_MAX_NDIM) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[bits] Too many dimensions under vmap.");
            return -1;
        }
        memmove(shape + kax + 1, shape + kax, (size_t)(ndim - kax) * sizeof(int64_t));
        shape[kax] = key->shape[kax];
        ndim++;
    }
    out[0] = pnC_make(&random_bits_prim, p, sizeof *p, 1, &key, bits_dtype(p->width), shape, ndim);
    out_axes[0] = kax;
    return out[0] ? 0 : -1;
}

static int sqrt_svd_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *cotangents, const int *argnums, int nargs,
                        pn_array **grads)
{
    pnC_fail(PN_ERR_INVALID_ARGUMENT,
             "[multivariate_normal] The gradient with respect to cov is not implemented.");
    return -1;
}

static int sqrt_svd_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *tangents, pn_array **out_tangents)
{
    if (!tangents[0]) {
        out_tangents[0] = NULL;
        return 0;
    }
    pnC_fail(PN_ERR_INVALID_ARGUMENT,
             "[multivariate_normal] The derivative with respect to cov is not implemented.");
    return -1;
}

/* U·sqrt(S)·Vᵀ of each float32 matrix in the last two axes (MLX takes it from linalg::svd). */
const pnC_primitive sqrt_svd_prim = {
    .name = "SqrtSVD",
    .eval = {[PN_CPU] = pnK_sqrt_svd_eval, [PN_GPU] = PNG_EVAL(pnG_sqrt_svd_eval)},
    .vjp = sqrt_svd_vjp,
    .jvp = sqrt_svd_jvp,
};

/* ───────────────────────────── keys ───────────────────────────── */

/* The calling thread's global key (MLX's KeySequence::default_, also thread-local). */
static _Thread_local uint32_t global_key[2];
static _Thread_local bool global_seeded;

static void global_set(uint64_t seed)
{
    global_key[0] = (uint32_t)(seed >> 32);
    global_key[1] = (uint32_t)seed;
    global_seeded = true;
}

/* The next key of the global sequence: split the global key in two (as bits((2,2))), keep
 * the first half as the new global key and hand out the second. Unseeded, the sequence starts
 * from the wall clock in milliseconds, as MLX's. */
static void global_seed_once(void)
{
    if (!global_seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        global_set((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
    }
}

/* While a compiled function with the random state in its inputs or outputs is traced, the
 * global key is a lazy array (compile's input, or the host key as a constant) and keyless
 * draws split it with ops, so the trace records them (MLX's KeySequence). NULL otherwise. */
static _Thread_local pn_array *traced_key;

pn_array *pnC_random_trace_key(pn_array *key)
{
    pn_array *old = traced_key;
    traced_key = key ? pnC_incref(key) : NULL;
    return old;
}

int pnC_random_set_key(pn_array *key)
{
    if (!key || key->dtype != PN_UINT32 || key->size != 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[random.state] Expected a uint32 key of shape (2,).");
    pn_scope_push();
    pn_array *k = pn_reshape(key, (int64_t[]){2}, 1);
    int rc = k ? pnC_eval1(k) : -1;
    if (rc == 0) {
        const uint32_t *v = pnC_data(k);
        global_key[0] = v[0], global_key[1] = v[k->strides[0]];
        global_seeded = true;
    }
    pn_scope_pop();
    return rc;
}

/* The next key of the traced global key: its split's second row; the first becomes it. */
static pn_array *traced_next(void)
{
    pn_scope_push();
    pn_array *s = pn_random_split(traced_key, 2);
    pn_array *next = pn_reshape(pn_slice(s, (int64_t[]){0, 0}, (int64_t[]){1, 2}, NULL, 2), (int64_t[]){2}, 1);
    pn_array *out = pn_reshape(pn_slice(s, (int64_t[]){1, 0}, (int64_t[]){2, 2}, NULL, 2), (int64_t[]){2}, 1);
    if (next && out) pnC_decref(pnC_random_trace_key(next));
    return pnC_scope_return(next && out ? out : NULL);
}

static pn_array *global_next(void)
{
    if (traced_key) return traced_next();
    global_seed_once();
    uint32_t k[4];
    pnK_random_block(global_key[0], global_key[1], k, sizeof k);
    global_key[0] = k[0];
    global_key[1] = k[1];
    const int64_t two = 2;
    return pn_array_from_data(k + 2, &two, 1, PN_UINT32);
}

/* key itself, or (NULL) the next global key. A NULL coming from a failed op stays an error. */
static pn_array *key_or_global(pn_array *key)
{
    if (key) return key;
    if (pnC_failed()) return NULL;
    return global_next();
}

/* pn_random_key: the key (seed >> 32, seed & 0xffffffff), as mx.random.key. */
pn_array *pn_random_key(uint64_t seed)
{
    const uint32_t k[2] = {(uint32_t)(seed >> 32), (uint32_t)seed};
    const int64_t two = 2;
    return pn_array_from_data(k, &two, 1, PN_UINT32);
}

/* pn_random_seed: restarts the calling thread's global key sequence from key(seed). */
void pn_random_seed(uint64_t seed) { global_set(seed); }

/* pn_random_state: the calling thread's global key as it stands (mlx.core.random.state[0]). */
pn_array *pn_random_state(void)
{
    if (traced_key) return pnC_alias(traced_key);
    global_seed_once();
    const int64_t two = 2;
    return pn_array_from_data(global_key, &two, 1, PN_UINT32);
}

/* ───────────────────────────── bits ───────────────────────────── */

/* Random bits of shape from key (NULL: the global sequence), in the caller's scope. */
static pn_array *bits_make(const char *op, const int64_t *shape, int ndim, int width,
                           pn_array *key)
{
    if (pnC_check_shape(op, shape, ndim) < 0) return NULL;
    pn_dtype dtype = bits_dtype(width);
    if (dtype == PN_NUM_DTYPES)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bits] Bit width must be in {1, 2, 4} but got %d.", width);
    if (!(key = key_or_global(key))) return NULL;
    if (key->dtype != PN_UINT32)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bits] Expected key type uint32 but received %s.",
                        pn_dtype_name(key->dtype));
    if (key->ndim != 1 || key->shape[0] != 2) {
        char s[256];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[bits] Expected key shape (2) but received %s.",
                        pnC_shape_str(key->shape, key->ndim, s, sizeof s));
    }
    bits_params p = {.width = width};
    return pnC_make(&random_bits_prim, &p, sizeof p, 1, &key, dtype, shape, ndim);
}

/* pn_random_bits: uint8/16/32 bits (width 1/2/4) of shape, MLX's layout for the key. */
pn_array *pn_random_bits(const int64_t *shape, int ndim, int width, pn_array *key)
{
    pn_scope_push(); /* holds a global key drawn for a NULL key */
    return pnC_scope_return(bits_make("bits", shape, ndim, width, key));
}

/* pn_random_split: num keys of shape (num, 2), the bits((num, 2)) of key. */
pn_array *pn_random_split(pn_array *key, int num)
{
    const int64_t shape[2] = {num, 2};
    pn_scope_push();
    return pnC_scope_return(bits_make("split", shape, 2, 4, key));
}

/* ───────────────────────────── shape checks ───────────────────────────── */

/* Shapes as (pointer, rank); a 0-d shape may come as NULL. */
static bool same_dims(const int64_t *a, const int64_t *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void copy_dims(int64_t *dst, const int64_t *src, int n)
{
    for (int i = 0; i < n; i++) dst[i] = src[i];
}

/* Whether params of shape (pshape, np) broadcast to exactly (shape, ndim); an MLX-style
 * error naming op when not. */
static bool fits(const char *op, const int64_t *pshape, int np, const int64_t *shape, int ndim)
{
    int64_t b[PNC_MAX_NDIM];
    int nb = pnC_broadcast_shapes(op, shape, ndim, pshape, np, b);
    if (nb < 0) return false;
    if (nb != ndim || !same_dims(b, shape, ndim)) {
        char s1[256], s2[256];
        pnC_fail(PN_ERR_INVALID_ARGUMENT,
                 "[%s] Cannot generate random values of shape %s from broadcasted shape %s.",
                 op, pnC_shape_str(shape, ndim, s1, sizeof s1), pnC_shape_str(b, nb, s2, sizeof s2));
        return false;
    }
    return true;
}

static bool check_float(const char *op, pn_dtype dtype)
{
    if (pnC_is_float(dtype)) return true;
    pnC_fail(PN_ERR_INVALID_ARGUMENT,
             "[%s] Can only generate random numbers with a real floating point type, got %s.", op,
             pn_dtype_name(dtype));
    return false;
}

/* ───────────────────────────── uniform ───────────────────────────── */

/* The largest value below 1 of dtype, as float32 (float64 draws through float32, as normal). */
static float below_one(pn_dtype dtype)
{
    if (dtype == PN_FLOAT16) return 1.0f - 0x1p-11f;
    if (dtype == PN_BFLOAT16) return 1.0f - 0x1p-8f;
    return nextafterf(1.0f, 0.0f);
}

/* MLX's uniform, unchecked: float32(bits) / float32(UINT32_MAX) (which is 2^32), clamped
 * below 1 in dtype, then range * u + low in dtype. */
static pn_array *uniform_draw(pn_array *low, pn_array *high, const int64_t *shape, int ndim,
                              pn_dtype dtype, pn_array *key)
{
    pn_array *lo = pn_astype(low, dtype);
    pn_array *range = pn_subtract(pn_astype(high, dtype), lo);
    pn_array *u = bits_make("uniform", shape, ndim, 4, key);
    u = pn_divide(u, pn_scalar((double)UINT32_MAX, PN_FLOAT32));
    u = pn_astype(pn_minimum(u, pn_scalar(below_one(dtype), PN_FLOAT32)), dtype);
    return pn_add(pn_multiply(range, u), lo);
}

/* Uniform in [-1, 1) through float32: the first step of normal and laplace. */
static pn_array *uniform_pm1(const int64_t *shape, int ndim, pn_array *key)
{
    return uniform_draw(pn_scalar(nextafterf(-1.0f, 0.0f), PN_FLOAT32), pn_scalar(1.0, PN_FLOAT32),
                        shape, ndim, PN_FLOAT32, key);
}

/* pn_random_uniform: values in [low, high) (broadcast to shape) of a floating dtype. */
pn_array *pn_random_uniform(pn_array *low, pn_array *high, const int64_t *shape, int ndim,
                            pn_dtype dtype, pn_array *key)
{
    pn_array *lh[2] = {low, high};
    if (!pnC_inputs_ok("uniform", 2, lh)) return NULL;
    if (!check_float("uniform", dtype) || pnC_check_shape("uniform", shape, ndim) < 0)
        return NULL;
    int64_t r[PNC_MAX_NDIM];
    int nr = pnC_broadcast_shapes("uniform", low->shape, low->ndim, high->shape, high->ndim, r);
    if (nr < 0 || !fits("uniform", r, nr, shape, ndim)) return NULL;
    pn_scope_push();
    return pnC_scope_return(uniform_draw(low, high, shape, ndim, dtype, key));
}

/* ───────────────────────────── normal and friends ───────────────────────────── */

/* Complex normal (MLX): real and imaginary parts erfinv(u) with u uniform in [-1, 1), so that
 * E|z|² = 1; then scale and loc. */
static pn_array *complex_normal(const int64_t *shape, int ndim, double loc, double scale,
                                pn_array *key)
{
    int64_t s2[PNC_MAX_NDIM + 1];
    if (ndim + 1 > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[normal] Too many dimensions (%d).", ndim);
    copy_dims(s2, shape, ndim);
    s2[ndim] = 2;
    pn_array *parts[2] = {NULL, NULL}, *z = NULL;
    const int last = -1;
    pn_array *s = pn_erfinv(uniform_pm1(s2, ndim + 1, key));
    if (pn_split_sections(s, 2, -1, parts) == 0) {
        pn_array *re = pn_astype(pn_squeeze(parts[0], &last, 1), PN_COMPLEX64);
        pn_array *im = pn_astype(pn_squeeze(parts[1], &last, 1), PN_COMPLEX64);
        z = pn_add(re, pn_multiply(im, pn_scalar_complex(0.0f, 1.0f)));
    }
    if (scale != 1.0) z = pn_multiply(pn_scalar((float)scale, PN_FLOAT32), z);
    if (loc != 0.0) z = pn_add(pn_scalar((float)loc, PN_FLOAT32), z);
    return z;
}

/* pn_random_normal: loc + scale * sqrt(2) * erfinv(u), u uniform in [-1, 1) in float32. */
pn_array *pn_random_normal(const int64_t *shape, int ndim, pn_dtype dtype, double loc,
                           double scale, pn_array *key)
{
    if (pnC_check_shape("normal", shape, ndim) < 0) return NULL;
    if (dtype != PN_COMPLEX64 && !check_float("normal", dtype)) return NULL;
    pn_scope_push();
    if (dtype == PN_COMPLEX64) return pnC_scope_return(complex_normal(shape, ndim, loc, scale, key));
    pn_array *applied = pn_scalar(sqrt(2.0), dtype);
    if (scale != 1.0) applied = pn_multiply(applied, pn_scalar((float)scale, dtype));
    pn_array *s = pn_astype(pn_erfinv(uniform_pm1(shape, ndim, key)), dtype);
    s = pn_multiply(applied, s);
    if (loc != 0.0) s = pn_add(pn_scalar((float)loc, dtype), s);
    return pnC_scope_return(s);
}

/* See ponte.h. As pn_random_normal: sqrt(2) * scale times erfinv of the uniform draw, plus
 * loc, with loc and scale as arrays of dtype. */
pn_array *pn_random_normal_arrays(const int64_t *shape, int ndim, pn_dtype dtype, pn_array *loc,
                                  pn_array *scale, pn_array *key)
{
    if (!loc && !scale) return pn_random_normal(shape, ndim, dtype, 0, 1, key);
    pn_array *ls[2] = {loc ? loc : scale, scale ? scale : loc};
    if (!pnC_inputs_ok("normal", 2, ls)) return NULL;
    if (pnC_check_shape("normal", shape, ndim) < 0) return NULL;
    if (dtype != PN_COMPLEX64 && !check_float("normal", dtype)) return NULL;
    for (int i = 0; i < 2; i++)
        if (!pnC_broadcasts_to(ls[i], shape, ndim))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[normal] loc and scale (shape %s) must broadcast to the shape of "
                            "the samples.", PNC_SHAPE_STR(ls[i]->shape, ls[i]->ndim));
    pn_scope_push();
    pn_array *s;
    if (dtype == PN_COMPLEX64) {
        s = complex_normal(shape, ndim, 0, 1, key);
        if (scale) s = pn_multiply(pn_astype(scale, dtype), s);
    } else {
        pn_array *applied = pn_scalar(sqrt(2.0), dtype);
        if (scale) applied = pn_multiply(applied, pn_astype(scale, dtype));
        s = pn_multiply(applied, pn_astype(pn_erfinv(uniform_pm1(shape, ndim, key)), dtype));
    }
    if (loc) s = pn_add(pn_astype(loc, dtype), s);
    if (s && s->ndim < ndim) s = pn_broadcast_to(s, shape, ndim);
    return pnC_scope_return(s);
}

/* pn_random_randint: integers in [low, high) of an integer (or bool) dtype, as MLX 0.32.4:
 * astype(maximum(floor(uniform(low, high) in float32), low), dtype). */
pn_array *pn_random_randint(pn_array *low, pn_array *high, const int64_t *shape, int ndim,
                            pn_dtype dtype, pn_array *key)
{
    pn_array *lh[2] = {low, high};
    if (!pnC_inputs_ok("randint", 2, lh)) return NULL;
    if (!pnC_dtype_valid(dtype) || pnC_is_inexact(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[randint] randint only accepts integer dtypes and bool, got %s.",
                        pn_dtype_name(dtype));
    if (pnC_check_shape("randint", shape, ndim) < 0) return NULL;
    int64_t r[PNC_MAX_NDIM];
    int nr = pnC_broadcast_shapes("randint", low->shape, low->ndim, high->shape, high->ndim, r);
    if (nr < 0 || !fits("randint", r, nr, shape, ndim)) return NULL;
    pn_scope_push();
    pn_array *u = uniform_draw(low, high, shape, ndim, PN_FLOAT32, key);
    return pnC_scope_return(pn_astype(pn_maximum(pn_floor(u), low), dtype));
}

/* pn_random_bernoulli: bits < p * nextafter(2^32, inf), so p <= 0 is never and p >= 1 always
 * true (MLX). p NULL means 0.5; shape NULL means p's shape. */
pn_array *pn_random_bernoulli(pn_array *p, const int64_t *shape, int ndim, pn_array *key)
{
    if (!p && pnC_failed()) return NULL;
    if (p && !pnC_is_float(p->dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[bernoulli] bernoulli probability `p` must be a float type, got %s.",
                        pn_dtype_name(p->dtype));
    if (!shape) ndim = p ? p->ndim : 0;
    const int64_t *oshape = shape ? shape : p ? p->shape : NULL;
    if (pnC_check_shape("bernoulli", oshape, ndim) < 0) return NULL;
    if (p && !fits("bernoulli", p->shape, p->ndim, oshape, ndim)) return NULL;
    pn_scope_push();
    if (!p) p = pn_scalar(0.5, PN_FLOAT32);
    float upper = nextafterf((float)UINT32_MAX, FLT_MAX);
    pn_array *res = pn_less(bits_make("bernoulli", oshape, ndim, 4, key),
                            pn_multiply(p, pn_scalar(upper, PN_FLOAT32)));
    return pnC_scope_return(res);
}

/* fma(a, b, c) of float32 arrays rounded once to float32: the product is exact in float64,
 * so only the float64 sum rounds before float32 (a double rounding that differs from the
 * fused result about once in 2^29). */
static pn_array *fma_f32(pn_array *a, pn_array *b, pn_array *c)
{
    pn_array *p = pn_multiply(pn_astype(a, PN_FLOAT64), pn_astype(b, PN_FLOAT64));
    return pn_astype(pn_add(p, pn_astype(c, PN_FLOAT64)), PN_FLOAT32);
}

/* MLX's CPU erf (Abramowitz-Stegun 7.1.26, about 1e-7 absolute, over MLX's polynomial exp),
 * computed in float32 for every dtype and rounded to x's dtype, step for step as MLX does, so
 * that truncated_normal's bounds (and so its samples) are MLX's bits; pn_erf is accurate to a
 * few ulp and rounds differently. */
static pn_array *mlx_erf(pn_array *x)
{
#define F32(v) pn_scalar(v, PN_FLOAT32)
    pn_array *v = pn_astype(x, PN_FLOAT32);
    pn_array *t = pn_divide(F32(1.0), fma_f32(F32(0.3275911f), pn_abs(v), F32(1.0)));
    pn_array *r = fma_f32(F32(1.061405429f), t, F32(-1.453152027f));
    r = fma_f32(r, t, F32(1.421413741f));
    r = fma_f32(r, t, F32(-0.284496736f));
    r = fma_f32(r, t, F32(0.254829592f));
    /* exp(w), w = -v^2 <= 0: 2^ip p(fp) with ip = floor(w log2(e) + 1/2), 0 below -88 */
    pn_array *w = pn_multiply(pn_negative(v), v);
    pn_array *y = pn_multiply(w, F32(1.442695f));
    pn_array *ip = pn_floor(pn_add(pn_astype(y, PN_FLOAT64), pn_scalar(0.5, PN_FLOAT64)));
    pn_array *fp = pn_subtract(y, pn_astype(ip, PN_FLOAT32));
    static const float c[6] = {1.339887440266574e-3f, 9.618437357674640e-3f,
                               5.550332471162809e-2f, 2.402264791363012e-1f,
                               6.931472028550421e-1f, 1.0f};
    pn_array *p = F32(1.535336188319500e-4f);
    for (int i = 0; i < 6; i++) p = fma_f32(p, fp, F32(c[i]));
    /* 2^ip from exponent bits in MLX: ip = -127 gives the bits of 0 */
    pn_array *scale = pn_where(pn_less(ip, pn_scalar(-126.5, PN_FLOAT64)),
                               pn_scalar(0.0, PN_FLOAT64), pn_power(pn_scalar(2.0, PN_FLOAT64), ip));
    pn_array *e = pn_astype(pn_multiply(scale, pn_astype(p, PN_FLOAT64)), PN_FLOAT32);
    e = pn_where(pn_less(w, F32(-88.0f)), F32(0.0f), e);
    pn_array *res = pn_astype(fma_f32(pn_multiply(pn_negative(e), t), r, F32(1.0f)), pn_array_dtype(x));
    return pn_where(pn_greater(x, pn_scalar(0.0, pn_array_dtype(x))), res, pn_negative(res));
#undef F32
}

/* erf of truncated_normal's bounds: MLX's float erf's values with pn_erf's derivative (MLX
 * differentiates its Erf exactly) — e + stop_gradient(mlx - e) in float64 is mlx exactly, as
 * the two differ by far less than either. float64 keeps pn_erf's full precision (MLX's
 * float64 erf goes through float). */
static pn_array *bound_erf(pn_array *x)
{
    if (pn_array_dtype(x) == PN_FLOAT64) return pn_erf(x);
    pn_array *e = pn_erf(pn_astype(x, PN_FLOAT64));
    pn_array *d = pn_stop_gradient(pn_subtract(pn_astype(mlx_erf(x), PN_FLOAT64), e));
    return pn_astype(pn_add(e, d), pn_array_dtype(x));
}

/* pn_random_truncated_normal: sqrt(2) * erfinv(u), u uniform between erf(lower/sqrt(2)) and
 * erf(upper/sqrt(2)) (bound_erf), clipped to [lower, upper] (MLX, after JAX). shape NULL
 * means the broadcast shape of lower and upper. */
pn_array *pn_random_truncated_normal(pn_array *lower, pn_array *upper, const int64_t *shape,
                                     int ndim, pn_dtype dtype, pn_array *key)
{
    pn_array *lu[2] = {lower, upper};
    if (!pnC_inputs_ok("truncated_normal", 2, lu)) return NULL;
    if (!check_float("truncated_normal", dtype)) return NULL;
    int64_t b[PNC_MAX_NDIM];
    int nb = pnC_broadcast_shapes("truncated_normal", lower->shape, lower->ndim, upper->shape,
                                  upper->ndim, b);
    if (nb < 0) return NULL;
    if (!shape) {
        shape = b;
        ndim = nb;
    }
    if (pnC_check_shape("truncated_normal", shape, ndim) < 0) return NULL;
    if (!fits("truncated_normal", b, nb, shape, ndim)) return NULL;
    pn_scope_push();
    pn_array *sqrt2 = pn_scalar(sqrt(2.0), dtype);
    pn_array *lo = pn_astype(lower, dtype), *hi = pn_astype(upper, dtype);
    pn_array *a = bound_erf(pn_divide(lo, sqrt2)), *c = bound_erf(pn_divide(hi, sqrt2));
    pn_array *out = pn_multiply(sqrt2, pn_erfinv(uniform_draw(a, c, shape, ndim, dtype, key)));
    return pnC_scope_return(pn_maximum(pn_minimum(hi, out), lo));
}

/* Standard Gumbel samples -log(-log(u)), u uniform in [0, 1) of dtype (unchecked). */
static pn_array *gumbel_draw(const int64_t *shape, int ndim, pn_dtype dtype, pn_array *key)
{
    pn_array *u = uniform_draw(pn_scalar(0.0, dtype), pn_scalar(1.0, dtype), shape, ndim, dtype, key);
    return pn_negative(pn_log(pn_negative(pn_log(u))));
}

/* pn_random_gumbel: standard Gumbel samples (cdf exp(-exp(-x))). */
pn_array *pn_random_gumbel(const int64_t *shape, int ndim, pn_dtype dtype, pn_array *key)
{
    if (!check_float("gumbel", dtype) || pnC_check_shape("gumbel", shape, ndim) < 0) return NULL;
    pn_scope_push();
    return pnC_scope_return(gumbel_draw(shape, ndim, dtype, key));
}

/* pn_random_laplace: loc + scale * sign(u) * log1p(-|u|), u uniform in [-1, 1) (MLX). */
pn_array *pn_random_laplace(const int64_t *shape, int ndim, pn_dtype dtype, double loc,
                            double scale, pn_array *key)
{
    if (!check_float("laplace", dtype) || pnC_check_shape("laplace", shape, ndim) < 0) return NULL;
    pn_scope_push();
    pn_array *u = uniform_pm1(shape, ndim, key);
    pn_array *s = pn_multiply(pn_sign(u), pn_log1p(pn_multiply(pn_scalar(-1.0, dtype), pn_abs(u))));
    s = pn_astype(s, dtype);
    if (scale != 1.0) s = pn_multiply(pn_scalar((float)scale, dtype), s);
    if (loc != 0.0) s = pn_add(pn_scalar((float)loc, dtype), s);
    return pnC_scope_return(s);
}

/* ───────────────────────────── categorical ───────────────────────────── */

/* One distribution (logits has size 1 but along axis) drawn into a non-empty shape, as MLX
 * 0.32 does it: by inverse cdf, with one uniform per sample. With e = exp(l - max l), the
 * sample is the number of cumsum(e) entries <= u * sum(e) (at most n - 1). Unchecked. */
static pn_array *categorical_by_cdf(pn_array *logits, int axis, const int64_t *shape, int ndim,
                                    pn_array *key)
{
    int64_t n = logits->shape[axis];
    const int last = -1;
    pn_array *l = pn_reshape(logits, &n, 1);
    pn_array *e = pn_exp(pn_subtract(l, pn_max(l, NULL, 0, false)));
    pn_array *cdf = pn_cumsum(e, 0, false, true);
    pn_array *u = uniform_draw(pn_scalar(0.0, PN_FLOAT32), pn_scalar(1.0, PN_FLOAT32), shape, ndim,
                               PN_FLOAT32, key);
    pn_array *t = pn_expand_dims(pn_multiply(u, pn_sum(e, NULL, 0, false)), &last, 1);
    pn_array *count = pn_sum(pn_greater_equal(t, cdf), &last, 1, false);
    return pn_astype(pn_minimum(count, pn_scalar_int(n - 1, PN_INT64)), PN_UINT32);
}

/* A draw from logits along axis into shape. Many distributions (or a 0-d draw): argmax of
 * logits + gumbel along the axis that sits at `offset` of the gumbel shape (shape with the
 * category count inserted there); one distribution: by inverse cdf. Unchecked. */
static pn_array *categorical_draw(pn_array *logits, int axis, const int64_t *shape, int ndim,
                                  pn_array *key)
{
    if (ndim > 0 && logits->size == logits->shape[axis] && logits->size > 0)
        return categorical_by_cdf(logits, axis, shape, ndim, key);
    int64_t g[PNC_MAX_NDIM + 1];
    int offset = axis + ndim - logits->ndim + 1;
    copy_dims(g, shape, offset);
    g[offset] = logits->shape[axis];
    copy_dims(g + offset + 1, shape + offset, ndim - offset);
    return pn_argmax(pn_add(gumbel_draw(g, ndim + 1, PN_FLOAT32, key), logits), offset, false);
}

/* pn_random_categorical: category indices (uint32) drawn from unnormalized logits along
 * axis. num_samples > 0 gives shape logits.shape without axis, plus num_samples last; else
 * shape (NULL: logits.shape without axis), which must be broadcast compatible with it. */
pn_array *pn_random_categorical(pn_array *logits, int axis, const int64_t *shape, int ndim,
                                int num_samples, pn_array *key)
{
    if (!pnC_inputs_ok("categorical", 1, &logits)) return NULL;
    int ax = logits->ndim > 0 ? (axis < 0 ? axis + logits->ndim : axis) : -1;
    if (ax < 0 || ax >= logits->ndim)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[categorical] Invalid axis %d for logits with %d dimensions.", axis,
                        logits->ndim);
    if (shape && num_samples > 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[categorical] At most one of shape or num_samples can be specified.");
    int64_t reduced[PNC_MAX_NDIM];
    int nred = 0;
    for (int i = 0; i < logits->ndim; i++)
        if (i != ax) reduced[nred++] = logits->shape[i];
    if (num_samples > 0) { /* logits get a trailing axis of 1 that the samples fill */
        int64_t s[PNC_MAX_NDIM];
        if (logits->ndim + 1 > PNC_MAX_NDIM)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[categorical] Too many dimensions.");
        copy_dims(s, reduced, nred);
        s[nred] = num_samples;
        pn_scope_push();
        const int last = -1;
        pn_array *l = pn_expand_dims(logits, &last, 1);
        return pnC_scope_return(l ? categorical_draw(l, ax, s, nred + 1, key) : NULL);
    }
    if (!shape) {
        shape = reduced;
        ndim = nred;
    }
    if (pnC_check_shape("categorical", shape, ndim) < 0) return NULL;
    int64_t b[PNC_MAX_NDIM];
    int nb = pnC_broadcast_shapes("categorical", shape, ndim, reduced, nred, b);
    if (nb < 0) return NULL;
    if (nb != ndim || !same_dims(b, shape, ndim) || ndim + 1 > PNC_MAX_NDIM) {
        char s1[256], s2[256];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[categorical] Requested shape %s is not broadcast compatible with "
                        "reduced logits shape %s.",
                        pnC_shape_str(shape, ndim, s1, sizeof s1),
                        pnC_shape_str(reduced, nred, s2, sizeof s2));
    }
    pn_scope_push();
    return pnC_scope_return(categorical_draw(logits, ax, shape, ndim, key));
}

/* ───────────────────────────── multivariate normal ───────────────────────────── */

/* pn_random_multivariate_normal: mean + z·std for standard normal z of shape
 * broadcast(cov batch, mean batch, shape) + (n,), with std = U·sqrt(S)·Vᵀ of cov's SVD
 * (MLX). dtype must be float32. Not differentiable with respect to cov. */
pn_array *pn_random_multivariate_normal(pn_array *mean, pn_array *cov, const int64_t *shape,
                                        int ndim, pn_dtype dtype, pn_array *key)
{
    pn_array *mc[2] = {mean, cov};
    if (!pnC_inputs_ok("multivariate_normal", 2, mc)) return NULL;
    if (dtype != PN_FLOAT32)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[multivariate_normal] dtype must be float32.");
    if (mean->ndim < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[multivariate_normal] mean must have at least one dimension.");
    if (cov->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[multivariate_normal] cov must have at least two dimensions.");
    int64_t n = mean->shape[mean->ndim - 1];
    if (cov->shape[cov->ndim - 1] != cov->shape[cov->ndim - 2])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[multivariate_normal] last two dimensions of cov must be equal.");
    if (cov->shape[cov->ndim - 1] != n)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[multivariate_normal] mean and cov must have compatible shapes.");
    if (pnC_check_shape("multivariate_normal", shape, ndim) < 0) return NULL;
    int64_t b1[PNC_MAX_NDIM], out[PNC_MAX_NDIM + 1];
    int n1 = pnC_broadcast_shapes("multivariate_normal", cov->shape, cov->ndim - 2, mean->shape,
                                  mean->ndim - 1, b1);
    if (n1 < 0) return NULL;
    int nout = pnC_broadcast_shapes("multivariate_normal", b1, n1, shape, ndim, out);
    if (nout < 0) return NULL;
    if (nout + 1 > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[multivariate_normal] Too many dimensions.");
    out[nout++] = n;
    pn_scope_push();
    pn_array *c = pn_astype(cov, PN_FLOAT32);
    pn_array *std = c ? pnC_make(&sqrt_svd_prim, NULL, 0, 1, &c, PN_FLOAT32, c->shape, c->ndim) : NULL;
    const int minus2 = -2;
    pn_array *z = pn_random_normal(out, nout, dtype, 0.0, 1.0, key);
    pn_array *scaled = pn_squeeze(pn_matmul(pn_expand_dims(z, &minus2, 1), std), &minus2, 1);
    return pnC_scope_return(pn_add(mean, scaled));
}

/* ───────────────────────────── permutations ───────────────────────────── */

/* pn_random_permutation_n: a permutation of arange(n) (uint32), argsort of n random words. */
pn_array *pn_random_permutation_n(int64_t n, pn_array *key)
{
    if (n < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[permutation] Expected a non-negative size but got %lld.", (long long)n);
    pn_scope_push();
    return pnC_scope_return(pn_argsort(bits_make("permutation", &n, 1, 4, key), 0));
}

/* pn_random_permutation: x with its entries along axis in a random order. */
pn_array *pn_random_permutation(pn_array *x, int axis, pn_array *key)
{
    if (!pnC_inputs_ok("permutation", 1, &x)) return NULL;
    int ax = pnC_axis("permutation", axis, x->ndim);
    if (ax < 0) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_take(x, pn_random_permutation_n(x->shape[ax], key), ax));
}
