/* elementwise.c — constructors of the elementwise ops: unary math, binary arithmetic and
 * comparisons (broadcasting, MLX type promotion with weak scalars), where, divmod and the
 * composites built on them (clip, isclose, allclose, array_equal, nan_to_num, ...), with
 * the primitives' derivatives (vjp, jvp) and batching rules. Kernels: backend/cpu. */
#include "backend/cpu/elementwise.h"
#include "backend/cuda/eval.h"

#include <float.h>
#include <math.h>

/* ───────────────────────────── dtype rules ───────────────────────────── */

typedef struct ew_rule {
    const char *name; /* MLX's op name, for messages */
    int rule;         /* PNK_SAME, PNK_FLOAT, ... */
    bool cpx;         /* complex64 allowed */
} ew_rule;

static const ew_rule unary_rules[PNK_U_COUNT] = {
#define X(E, NM, PRIM, RULE, CPX) [PNK_U_##E] = {#NM, RULE, CPX},
    PNK_UNARY_OPS(X) PNK_UNARY_EXTRA(X)
#undef X
};

static const ew_rule binary_rules[PNK_B_COUNT] = {
#define X(E, NM, PRIM, RULE, CPX) [PNK_B_##E] = {#NM, RULE, CPX},
    PNK_BINARY_OPS(X) PNK_BINARY_EXTRA(X)
#undef X
};

static pn_dtype at_least_float(pn_dtype t) { return pnC_is_inexact(t) ? t : PN_FLOAT32; }

/* a as dtype t: a itself (borrowed) when it already is, else a new array owned by the
 * current scope (release it). A weak scalar leaf converts at once instead of adding a node. */
static pn_array *cast(pn_array *a, pn_dtype t)
{
    if (a->dtype == t) return a;
    if (a->weak && a->size == 1 && !pnC_tracing()) {
        bool locked = pnC_graph_lock();
        bool leaf = !a->node && a->buf;
        pn_array *r = leaf ? pnC_new_leaf(t, a->shape, a->ndim) : NULL;
        if (r) pnC_convert(pnC_data(a), a->dtype, pnC_data(r), t, 1);
        pnC_graph_unlock(locked);
        if (leaf) return r;
    }
    return pn_astype(a, t);
}

static void release_cast(pn_array *c, pn_array *a)
{
    if (c != a) pn_release(c);
}

/* ───────────────────────────── primitives ───────────────────────────── */

static int unary_vjp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                     const int *, int, pn_array **);
static int unary_jvp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                     pn_array **);
static int binary_vjp(const pnC_node *, pn_array *const *, pn_array *const *,
                      pn_array *const *, const int *, int, pn_array **);
static int binary_jvp(const pnC_node *, pn_array *const *, pn_array *const *,
                      pn_array *const *, pn_array **);
static int ew_vmap(const pnC_node *, pn_array *const *, const int *, pn_array **, int *);

const pnC_primitive unary_prims[PNK_U_COUNT] = {
#define X(E, NM, PRIM, RULE, CPX)                                                              \
    [PNK_U_##E] = {.name = PRIM,                                                               \
                   .eval = {[PN_CPU] = pnK_unary_eval,                                         \
                            [PN_GPU] = PNG_EVAL(pnG_unary_eval)},                              \
                   .vjp = unary_vjp,                                                           \
                   .jvp = unary_jvp,                                                           \
                   .vmap = ew_vmap},
    PNK_UNARY_OPS(X) PNK_UNARY_EXTRA(X)
#undef X
};

const pnC_primitive binary_prims[PNK_B_COUNT] = {
#define X(E, NM, PRIM, RULE, CPX)                                                              \
    [PNK_B_##E] = {.name = PRIM,                                                               \
                   .eval = {[PN_CPU] = pnK_binary_eval,                                        \
                            [PN_GPU] = PNG_EVAL(pnG_binary_eval)},                             \
                   .vjp = binary_vjp,                                                          \
                   .jvp = binary_jvp,                                                          \
                   .vmap = ew_vmap},
    PNK_BINARY_OPS(X) PNK_BINARY_EXTRA(X)
#undef X
};

static int divmod_vjp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                      const int *, int, pn_array **);
static int divmod_jvp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                      pn_array **);
const pnC_primitive divmod_prim = {.name = "DivMod",
                                          .eval = {[PN_CPU] = pnK_divmod_eval,
                                                   [PN_GPU] = PNG_EVAL(pnG_divmod_eval)},
                                          .vjp = divmod_vjp,
                                          .jvp = divmod_jvp,
                                          .vmap = ew_vmap};

static int where_vjp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                     const int *, int, pn_array **);
static int where_jvp(const pnC_node *, pn_array *const *, pn_array *const *, pn_array *const *,
                     pn_array **);
const pnC_primitive where_prim = {.name = "Select",
                                         .eval = {[PN_CPU] = pnK_where_eval,
                                                  [PN_GPU] = PNG_EVAL(pnG_where_eval)},
                                         .vjp = where_vjp,
                                         .jvp = where_jvp,
                                         .vmap = ew_vmap};

/* stop_gradient: a zero-copy view through which no derivative flows. */
static int stop_gradient_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
    return 0;
}
static int no_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                  pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    return 0;
}
static int no_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                  pn_array *const *tan, pn_array **out_tan)
{
    for (int j = 0; j < node->nout; j++) out_tan[j] = NULL;
    return 0;
}
const pnC_primitive stop_gradient_prim = {.name = "StopGradient",
                                                 .eval = {[PN_CPU] = stop_gradient_eval, [PN_GPU] = PNG_EVAL(stop_gradient_eval)},
                                                 .vjp = no_vjp,
                                                 .jvp = no_jvp,
                                                 .vmap = ew_vmap};

/* ───────────────────────────── constructors ───────────────────────────── */

/* Whether unary op on dtype t is the identity (MLX returns the input itself). */
static bool unary_is_identity(int op, pn_dtype t, const pnK_ew_params *p)
{
    bool intlike = pnC_is_integer(t) || t == PN_BOOL;
    switch (op) {
    case PNK_U_FLOOR: case PNK_U_CEIL: return intlike;
    case PNK_U_ROUND: return intlike && p->p0 >= 1;
    case PNK_U_ABS: return pnC_is_unsigned(t) || t == PN_BOOL;
    case PNK_U_SIGN: return t == PN_BOOL;
    case PNK_U_CONJUGATE: case PNK_U_REAL: return t != PN_COMPLEX64;
    case PNK_U_NAN_TO_NUM: return !pnC_is_inexact(t);
    default: return false;
    }
}

/* The unary op `op` on a with MLX's dtype rule; extra (may be NULL) carries op params. */
static pn_array *unary(int op, pn_array *a, const pnK_ew_params *extra)
{
    const ew_rule *r = &unary_rules[op];
    if (!pnC_inputs_ok(r->name, 1, &a)) return NULL;
    pnK_ew_params p = extra ? *extra : (pnK_ew_params){0};
    p.op = op;
    pn_dtype t = a->dtype, in_t = t, out_t = t;
    if (t == PN_COMPLEX64 && !r->cpx)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Not supported for complex64.", r->name);
    switch (r->rule) {
    case PNK_FLOAT: in_t = out_t = at_least_float(t); break;
    case PNK_REAL: out_t = t == PN_COMPLEX64 ? PN_FLOAT32 : t; break;
    case PNK_BOOL: out_t = PN_BOOL; break;
    case PNK_INT:
        if (!pnC_is_integer(t) && t != PN_BOOL)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Only allowed on integer or boolean types but got type %s.",
                            r->name, pn_dtype_name(t));
        break;
    }
    if (op == PNK_U_NEGATIVE && t == PN_BOOL)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[negative] Not supported for bool, use logical_not instead.");
    if (op == PNK_U_BITWISE_INVERT && t == PN_BOOL) p.op = op = PNK_U_LOGICAL_NOT;
    if (unary_is_identity(op, t, &p)) return pnC_alias(a);
    pn_array *x = cast(a, in_t);
    if (!x) return NULL;
    pn_array *y = pnC_make(&unary_prims[op], &p, sizeof p, 1, &x, out_t, a->shape, a->ndim);
    release_cast(x, a);
    return y;
}

/* The binary op `op` on a and b, broadcast, with MLX's promotion; extra as for unary. */
static pn_array *binary(int op, pn_array *a, pn_array *b, const pnK_ew_params *extra)
{
    const ew_rule *r = &binary_rules[op];
    pn_array *ab[2] = {a, b};
    if (!pnC_inputs_ok(r->name, 2, ab)) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = pnC_broadcast_shapes(r->name, a->shape, a->ndim, b->shape, b->ndim, shape);
    if (nd < 0) return NULL;
    pn_dtype t = pnC_result_type(2, ab);
    if (r->rule == PNK_FLOAT) t = at_least_float(t);
    if (r->rule == PNK_SHIFT && t == PN_BOOL) t = PN_UINT8;
    if ((r->rule == PNK_INT || r->rule == PNK_SHIFT) && !pnC_is_integer(t) && t != PN_BOOL)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Only allowed on integer or boolean types but got types %s and %s.",
                        r->name, pn_dtype_name(a->dtype), pn_dtype_name(b->dtype));
    if (t == PN_COMPLEX64 && !r->cpx)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Not supported for complex64.", r->name);
    pnK_ew_params p = extra ? *extra : (pnK_ew_params){0};
    p.op = op;
    pn_array *x = cast(a, t), *y = x ? cast(b, t) : NULL;
    pn_array *xy[2] = {x, y};
    pn_array *o = y ? pnC_make(&binary_prims[op], &p, sizeof p, 2, xy,
                               r->rule == PNK_BOOL ? PN_BOOL : t, shape, nd)
                    : NULL;
    if (x) release_cast(x, a);
    if (y) release_cast(y, b);
    return o;
}

/* pn_abs ... pn_imag (ponte.h): one-input ops with the plain signature. */
#define X(E, NM, PRIM, RULE, CPX)                                                              \
    pn_array *pn_##NM(pn_array *a) { return unary(PNK_U_##E, a, NULL); }
PNK_UNARY_OPS(X)
#undef X

/* pn_add ... pn_right_shift (ponte.h): two-input ops, broadcast and promoted. */
#define X(E, NM, PRIM, RULE, CPX)                                                              \
    pn_array *pn_##NM(pn_array *a, pn_array *b) { return binary(PNK_B_##E, a, b, NULL); }
PNK_BINARY_OPS(X)
#undef X

/* Half-to-even rounding at 10^-decimals: one kernel pass (integers with decimals >= 0 are
 * returned as they are). */
pn_array *pn_round(pn_array *a, int decimals)
{
    if (a && pnC_inputs_ok("round", 1, &a) && a->dtype == PN_COMPLEX64) {
        /* as MLX: the real and imaginary parts each rounded, interleaved again (no arithmetic
         * on the parts, so infinities and NaNs stay where they were) */
        pn_scope_push();
        pn_array *parts[2] = {pn_round(pn_real(a), decimals), pn_round(pn_imag(a), decimals)};
        pn_array *pairs = pn_stack(parts, 2, a->ndim);
        return pnC_scope_return(pn_reshape(pn_view(pairs, PN_COMPLEX64), a->shape, a->ndim));
    }
    pnK_ew_params p = {.p0 = pow(10.0, decimals)};
    return unary(PNK_U_ROUND, a, &p);
}

/* A view of a (no copy) whose derivatives are zero. */
pn_array *pn_stop_gradient(pn_array *a)
{
    if (!pnC_inputs_ok("stop_gradient", 1, &a)) return NULL;
    return pnC_make(&stop_gradient_prim, NULL, 0, 1, &a, a->dtype, a->shape, a->ndim);
}

/* 1 / a; integers give float32. */
pn_array *pn_reciprocal(pn_array *a)
{
    if (!pnC_inputs_ok("reciprocal", 1, &a)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_divide(pn_weak_float(1.0), a));
}

/* degrees / radians: a times a weak constant (integers become float32, as MLX). */
static pn_array *scale_float(const char *name, pn_array *a, double k)
{
    if (!pnC_inputs_ok(name, 1, &a)) return NULL;
    pn_scope_push();
    pn_array *x = cast(a, at_least_float(a->dtype));
    return pnC_scope_return(x ? pn_multiply(x, pn_weak_float(k)) : NULL);
}
/* a * 180/pi and a * pi/180 (integers give float32). */
pn_array *pn_degrees(pn_array *a) { return scale_float("degrees", a, 180.0 / M_PI); }
pn_array *pn_radians(pn_array *a) { return scale_float("radians", a, M_PI / 180.0); }

/* Quotient (floor) and remainder (sign of b) from one node with two outputs. */
int pn_divmod(pn_array *a, pn_array *b, pn_array **out)
{
    pn_array *ab[2] = {a, b};
    if (out) out[0] = out[1] = NULL;
    if (!out) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[divmod] out is NULL.");
    if (!pnC_inputs_ok("divmod", 2, ab)) return -1;
    int64_t shape[PNC_MAX_NDIM];
    int nd = pnC_broadcast_shapes("divmod", a->shape, a->ndim, b->shape, b->ndim, shape);
    if (nd < 0) return -1;
    pn_dtype t = pnC_result_type(2, ab);
    if (t == PN_COMPLEX64)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[divmod] Complex type not supported.");
    pn_array *x = cast(a, t), *y = x ? cast(b, t) : NULL;
    int rc = -1;
    if (y) {
        pn_array *xy[2] = {x, y};
        const pn_dtype dt[2] = {t, t};
        const int64_t *shapes[2] = {shape, shape};
        const int nds[2] = {nd, nd};
        pnK_ew_params p = {0};
        rc = pnC_make_multi(&divmod_prim, &p, sizeof p, 2, xy, 2, dt, shapes, nds, out);
    }
    if (x) release_cast(x, a);
    if (y) release_cast(y, b);
    return rc;
}

/* cond (cast to bool) ? x : y, the three broadcast; x and y promote together. */
pn_array *pn_where(pn_array *cond, pn_array *x, pn_array *y)
{
    pn_array *in[3] = {cond, x, y};
    if (!pnC_inputs_ok("where", 3, in)) return NULL;
    int64_t s1[PNC_MAX_NDIM], shape[PNC_MAX_NDIM];
    int n1 = pnC_broadcast_shapes("where", cond->shape, cond->ndim, x->shape, x->ndim, s1);
    if (n1 < 0) return NULL;
    int nd = pnC_broadcast_shapes("where", s1, n1, y->shape, y->ndim, shape);
    if (nd < 0) return NULL;
    pn_dtype t = pnC_result_type(2, in + 1);
    pn_array *c[3] = {cast(cond, PN_BOOL), NULL, NULL};
    if (c[0]) c[1] = cast(x, t);
    if (c[1]) c[2] = cast(y, t);
    pn_array *o = c[2] ? pnC_make(&where_prim, NULL, 0, 3, c, t, shape, nd) : NULL;
    for (int k = 0; k < 3; k++)
        if (c[k]) release_cast(c[k], in[k]);
    return o;
}

/* minimum(maximum(a, a_min), a_max) with NULL meaning no bound, as MLX. */
pn_array *pn_clip(pn_array *a, pn_array *a_min, pn_array *a_max)
{
    if (!pnC_inputs_ok("clip", 1, &a)) return NULL;
    if ((!a_min || !a_max) && pnC_failed()) return NULL; /* a failed bound, not "no bound" */
    if (!a_min && !a_max)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[clip] a_min and a_max cannot both be None.");
    pn_scope_push();
    pn_array *r = a;
    if (a_min) r = pn_maximum(r, a_min);
    if (a_max) r = pn_minimum(r, a_max);
    return pnC_scope_return(r);
}

/* The largest finite value of a floating dtype. */
static double dtype_max(pn_dtype t)
{
    switch (t) {
    case PN_FLOAT16: return 65504.0;
    case PN_BFLOAT16: return (double)pnC_bits_f32(0x7f7f0000u);
    case PN_FLOAT32: return FLT_MAX;
    default: return DBL_MAX;
    }
}

/* One kernel pass; non-float inputs are returned as they are; complex64 is refused. */
pn_array *pn_nan_to_num(pn_array *a, double nan, const double *posinf, const double *neginf)
{
    if (!pnC_inputs_ok("nan_to_num", 1, &a)) return NULL;
    if (a->dtype == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[nan_to_num] Does not yet support given type: complex64.");
    double big = dtype_max(a->dtype);
    pnK_ew_params p = {.p0 = nan, .p1 = posinf ? *posinf : big, .p2 = neginf ? *neginf : -big};
    return unary(PNK_U_NAN_TO_NUM, a, &p);
}

/* |a - b| <= atol + rtol * |b| in float64 (equal infinities close), one kernel pass. */
pn_array *pn_isclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan)
{
    pnK_ew_params p = {.p0 = rtol, .p1 = atol, .flag = equal_nan};
    return binary(PNK_B_ISCLOSE, a, b, &p);
}

/* all(isclose(...)): a 0-d bool array. */
pn_array *pn_allclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan)
{
    pn_array *ab[2] = {a, b};
    if (!pnC_inputs_ok("allclose", 2, ab)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_all(pn_isclose(a, b, rtol, atol, equal_nan), NULL, 0, false));
}

/* False (0-d) for different shapes, else all(a == b) in the promoted dtype. */
pn_array *pn_array_equal(pn_array *a, pn_array *b, bool equal_nan)
{
    pn_array *ab[2] = {a, b};
    if (!pnC_inputs_ok("array_equal", 2, ab)) return NULL;
    bool same = a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
    if (!same) return pn_scalar(0, PN_BOOL);
    pnK_ew_params p = {.flag = equal_nan && pnC_is_inexact(pnC_result_type(2, ab))};
    pn_scope_push();
    return pnC_scope_return(pn_all(binary(PNK_B_EQUAL, a, b, &p), NULL, 0, false));
}

/* ───────────────────────────── derivative helpers ───────────────────────────── */

/* t broadcast to shape/ndim (a no-op when it already has it). */
static pn_array *broadcast_to(pn_array *t, const int64_t *shape, int ndim)
{
    if (!t) return NULL;
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    return same ? t : pn_broadcast_to(t, shape, ndim);
}

static pn_array *wf(double v) { return pn_weak_float(v); }
static pn_array *zero_like_dtype(const pn_array *a) { return pn_scalar(0, a->dtype); }

/* c (a cotangent or a tangent) times the derivative of unary op at x (output y): the
 * chain-rule term, NULL for a zero derivative. Transposing ops (conjugate, real, imag) differ
 * between directions: forward is true for jvp. Runs inside the caller's scope. */
static pn_array *unary_term(const pnK_ew_params *p, pn_array *x, pn_array *y, pn_array *c,
                            bool forward)
{
    switch (p->op) {
    case PNK_U_ABS: /* complex z: d|z| = Re(conj(z / |z|) dz); backward c conj(z / |z|) (the
                     * convention of transforms.h's pnT_vjp) */
        if (x->dtype == PN_COMPLEX64) {
            pn_array *t = pn_multiply(c, pn_conjugate(pn_sign(x)));
            return forward ? pn_real(t) : t;
        }
        return pn_multiply(c, pn_sign(x));
    case PNK_U_NEGATIVE: return pn_negative(c);
    case PNK_U_SQRT: return pn_divide(c, pn_multiply(y, wf(2)));
    case PNK_U_RSQRT: return pn_multiply(c, pn_multiply(wf(-0.5), pn_divide(y, x)));
    case PNK_U_SQUARE: return pn_multiply(c, pn_multiply(wf(2), x));
    case PNK_U_EXP: return pn_multiply(c, y);
    case PNK_U_EXPM1: return pn_multiply(c, pn_add(y, wf(1)));
    case PNK_U_LOG: return pn_divide(c, x);
    case PNK_U_LOG1P: return pn_divide(c, pn_add(x, wf(1)));
    case PNK_U_LOG2: return pn_divide(c, pn_multiply(x, wf(M_LN2)));
    case PNK_U_LOG10: return pn_divide(c, pn_multiply(x, wf(M_LN10)));
    case PNK_U_SIN: return pn_multiply(c, pn_cos(x));
    case PNK_U_COS: return pn_negative(pn_multiply(c, pn_sin(x)));
    case PNK_U_TAN: return pn_multiply(c, pn_add(wf(1), pn_square(y)));
    case PNK_U_ARCSIN: return pn_multiply(c, pn_rsqrt(pn_subtract(wf(1), pn_square(x))));
    case PNK_U_ARCCOS:
        return pn_negative(pn_multiply(c, pn_rsqrt(pn_subtract(wf(1), pn_square(x)))));
    case PNK_U_ARCTAN: return pn_divide(c, pn_add(wf(1), pn_square(x)));
    case PNK_U_SINH: return pn_multiply(c, pn_cosh(x));
    case PNK_U_COSH: return pn_multiply(c, pn_sinh(x));
    case PNK_U_TANH: return pn_multiply(c, pn_subtract(wf(1), pn_square(y)));
    case PNK_U_ARCSINH: return pn_multiply(c, pn_rsqrt(pn_add(pn_square(x), wf(1))));
    case PNK_U_ARCCOSH: return pn_multiply(c, pn_rsqrt(pn_subtract(pn_square(x), wf(1))));
    case PNK_U_ARCTANH: return pn_divide(c, pn_subtract(wf(1), pn_square(x)));
    case PNK_U_SIGMOID: return pn_multiply(c, pn_multiply(y, pn_subtract(wf(1), y)));
    case PNK_U_ERF:
        return pn_multiply(c, pn_multiply(wf(M_2_SQRTPI), pn_exp(pn_negative(pn_square(x)))));
    case PNK_U_ERFINV:
        return pn_multiply(c, pn_multiply(wf(0.8862269254527580), pn_exp(pn_square(y))));
    case PNK_U_NAN_TO_NUM: return pn_where(pn_isfinite(x), c, zero_like_dtype(c));
    case PNK_U_CONJUGATE: return pn_conjugate(c);
    case PNK_U_REAL:
        if (forward) return pn_real(c);
        return x->dtype == PN_COMPLEX64 ? pn_astype(c, PN_COMPLEX64) : pnC_alias(c);
    case PNK_U_IMAG:
        if (forward) return pn_imag(c);
        if (x->dtype != PN_COMPLEX64) return NULL;
        return pn_multiply(pn_scalar_complex(0, -1), pn_astype(c, PN_COMPLEX64));
    default: /* sign, floor, ceil, round, predicates, bitwise: zero almost everywhere */
        return NULL;
    }
}

/* Checks a derivative builder's result: NULL is fine (zero) unless an error was raised. */
static int term_status(void) { return pnC_failed() ? -1 : 0; }

static int unary_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0] || nargs < 1) return 0;
    pn_scope_push();
    pn_array *g = unary_term(PNC_PARAMS(nd, pnK_ew_params), in[0], out[0], cot[0], false);
    grads[0] = g;
    pn_scope_pop_keep(grads, 1);
    return term_status();
}

static int unary_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    out_tan[0] = unary_term(PNC_PARAMS(nd, pnK_ew_params), in[0], out[0], tan[0], true);
    pn_scope_pop_keep(out_tan, 1);
    return term_status();
}

/* c times the partial derivative of binary op with respect to input `arg` (a, b inputs, y
 * output); c may have the output's shape or (a tangent) that input's. NULL for zero, and c
 * itself for an identity partial. */
static pn_array *binary_term(int op, int arg, pn_array *a, pn_array *b, pn_array *y,
                             pn_array *c)
{
    switch (op) {
    case PNK_B_ADD: return c;
    case PNK_B_SUBTRACT: return arg ? pn_negative(c) : c;
    case PNK_B_MULTIPLY: return pn_multiply(c, arg ? a : b);
    case PNK_B_DIVIDE:
        return arg ? pn_negative(pn_multiply(c, pn_divide(y, b))) : pn_divide(c, b);
    case PNK_B_REMAINDER:
        return arg ? pn_negative(pn_multiply(c, pn_floor_divide(a, b))) : c;
    case PNK_B_POWER:
        if (arg == 0)
            return pn_multiply(c, pn_multiply(b, pn_power(a, pn_subtract(b, wf(1)))));
        /* log(a) where a > 0; elsewhere the derivative is taken as 0 */
        return pn_multiply(c, pn_multiply(y, pn_log(pn_where(pn_greater(a, wf(0)), a, wf(1)))));
    case PNK_B_MAXIMUM: case PNK_B_MINIMUM: { /* ties go to b, as MLX (relu's and clip's
                                               * derivative is 0 at the kink) */
        pn_array *mask = op == PNK_B_MAXIMUM ? pn_greater(a, b) : pn_less(a, b);
        return arg ? pn_where(mask, zero_like_dtype(c), c) : pn_where(mask, c, zero_like_dtype(c));
    }
    case PNK_B_ARCTAN2: {
        pn_array *den = pn_add(pn_square(a), pn_square(b));
        return arg ? pn_negative(pn_divide(pn_multiply(c, a), den))
                   : pn_divide(pn_multiply(c, b), den);
    }
    case PNK_B_LOGADDEXP:
        return pn_multiply(c, pn_sigmoid(arg ? pn_subtract(b, a) : pn_subtract(a, b)));
    default: /* floor_divide, comparisons, logical, bitwise, isclose */
        return NULL;
    }
}

static int binary_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    int op = PNC_PARAMS(nd, pnK_ew_params)->op;
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        int arg = argnums[i];
        pn_array *g = pnC_sum_to_shape(binary_term(op, arg, in[0], in[1], out[0], cot[0]), in[arg]->shape, in[arg]->ndim);
        grads[i] = g == cot[0] ? pnC_alias(g) : g;
    }
    pn_scope_pop_keep(grads, nargs);
    return term_status();
}

/* Sum of the tangent terms of inputs 0..n-1 (NULL terms are zero), broadcast to out. */
static pn_array *sum_terms(pn_array **terms, int n, const pn_array *out, pn_array *const *tan)
{
    pn_array *s = NULL;
    for (int k = 0; k < n; k++)
        if (terms[k]) s = s ? pn_add(s, terms[k]) : terms[k];
    if (!s) return NULL;
    s = broadcast_to(s, out->shape, out->ndim);
    for (int k = 0; k < n; k++)
        if (s == tan[k]) return pnC_alias(s);
    return s;
}

static int binary_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    int op = PNC_PARAMS(nd, pnK_ew_params)->op;
    out_tan[0] = NULL;
    pn_scope_push();
    pn_array *terms[2];
    for (int k = 0; k < 2; k++)
        terms[k] = tan[k] ? binary_term(op, k, in[0], in[1], out[0], tan[k]) : NULL;
    out_tan[0] = sum_terms(terms, 2, out[0], tan);
    pn_scope_pop_keep(out_tan, 1);
    return term_status();
}

/* divmod: the quotient is piecewise constant; the remainder differentiates as remainder. */
static int divmod_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[1]) return 0;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        int arg = argnums[i];
        pn_array *g = arg ? pn_negative(pn_multiply(cot[1], out[0])) : cot[1];
        g = pnC_sum_to_shape(g, in[arg]->shape, in[arg]->ndim);
        grads[i] = g == cot[1] ? pnC_alias(g) : g;
    }
    pn_scope_pop_keep(grads, nargs);
    return term_status();
}

static int divmod_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = out_tan[1] = NULL;
    pn_scope_push();
    pn_array *terms[2] = {tan[0], tan[1] ? pn_negative(pn_multiply(tan[1], out[0])) : NULL};
    out_tan[1] = sum_terms(terms, 2, out[1], tan);
    pn_scope_pop_keep(out_tan, 2);
    return term_status();
}

/* where: the cotangent goes to x where cond holds and to y elsewhere; cond gets none. */
static int where_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    for (int i = 0; i < nargs; i++) {
        int arg = argnums[i];
        if (arg == 0) continue;
        pn_array *z = zero_like_dtype(cot[0]);
        pn_array *g = arg == 1 ? pn_where(in[0], cot[0], z) : pn_where(in[0], z, cot[0]);
        grads[i] = pnC_sum_to_shape(g, in[arg]->shape, in[arg]->ndim);
    }
    pn_scope_pop_keep(grads, nargs);
    return term_status();
}

static int where_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[1] && !tan[2]) return 0;
    pn_scope_push();
    pn_array *z = zero_like_dtype(out[0]);
    pn_array *t = pn_where(in[0], tan[1] ? tan[1] : z, tan[2] ? tan[2] : z);
    out_tan[0] = broadcast_to(t, out[0]->shape, out[0]->ndim);
    pn_scope_pop_keep(out_tan, 1);
    return term_status();
}

/* ───────────────────────────── batching ───────────────────────────── */

/* Every elementwise primitive batches the same way: mapped axes move to the front, mapped
 * inputs with fewer (unbatched) dims get size-1 axes after the batch axis so that the rest
 * broadcasts as before, and the node is rebuilt over the new inputs. */
static int ew_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes, pn_array **out,
                   int *out_axes)
{
    int rank = 0; /* the largest unbatched rank */
    bool mapped = false;
    for (int k = 0; k < nd->nin; k++) {
        int r = in[k]->ndim - (in_axes[k] >= 0);
        if (r > rank) rank = r;
        mapped |= in_axes[k] >= 0;
    }
    pn_scope_push();
    pn_array *x[PNC_MAX_OPS];
    int64_t shape[PNC_MAX_NDIM];
    int ndim = 0;
    bool ok = true;
    for (int k = 0; k < nd->nin && ok; k++) {
        pn_array *a = in[k];
        if (in_axes[k] >= 0) {
            a = pn_moveaxis(a, in_axes[k], 0);
            int r = in[k]->ndim - 1;
            if (a && r < rank) {
                int64_t s[PNC_MAX_NDIM];
                s[0] = a->shape[0];
                for (int d = 1; d <= rank; d++) s[d] = d <= rank - r ? 1 : a->shape[d - (rank - r)];
                a = pn_reshape(a, s, rank + 1);
            }
        }
        x[k] = a;
        ok = a != NULL;
        if (ok && k == 0) {
            ndim = a->ndim;
            memcpy(shape, a->shape, (size_t)ndim * sizeof *shape);
        } else if (ok) {
            int64_t t[PNC_MAX_NDIM];
            ndim = pnC_broadcast_shapes(nd->prim->name, shape, ndim, a->shape, a->ndim, t);
            ok = ndim >= 0;
            if (ok) memcpy(shape, t, (size_t)ndim * sizeof *shape);
        }
    }
    int rc = -1;
    if (ok) {
        const int64_t *shapes[PNC_MAX_OPS];
        int ndims[PNC_MAX_OPS];
        for (int j = 0; j < nd->nout; j++) {
            shapes[j] = shape;
            ndims[j] = ndim;
            out_axes[j] = mapped ? 0 : -1;
        }
        rc = pnC_make_multi(nd->prim, nd->params, nd->params_size, nd->nin, x, nd->nout,
                            nd->out_dtypes, shapes, ndims, out);
    }
    pn_scope_pop_keep(out, rc == 0 ? nd->nout : 0);
    return rc;
}
