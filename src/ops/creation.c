/* creation.c — ops that make arrays: full/zeros/ones and their _like forms, arange and
 * linspace, eye/identity/tri, tril/triu, astype and copy. Each primitive carries its CPU
 * kernel (fills and typed conversions through the core's pnC_convert) and its derivatives. */
#include "backend/cpu/copy.h"
#include "ops/creation.h"
#include "backend/cuda/eval.h"

#include <math.h>
#include <string.h>

static bool dtype_ok(const char *op, pn_dtype dtype)
{
    if (pnC_dtype_valid(dtype)) return true;
    pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid dtype %d.", op, (int)dtype);
    return false;
}

/* ───────────────────────────── copy ───────────────────────────── */

/* Arrays never change once computed, so a copy shares its input's buffer (as MLX's Copy). */
static int copy_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
    return 0;
}

static int copy_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = cot[0] ? pn_copy(cot[0]) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int copy_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? pn_copy(tan[0]) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

const pnC_primitive copy_prim = {
    .name = "Copy",
    .eval = {[PN_CPU] = copy_eval, [PN_GPU] = PNG_EVAL(copy_eval)},
    .vjp = copy_vjp,
    .jvp = copy_jvp,
    .vmap = pnC_vmap_same_shape,
};

/* A new array with a's values (sharing a's buffer once evaluated; arrays are immutable). */
pn_array *pn_copy(pn_array *a)
{
    if (!pnC_inputs_ok("copy", 1, &a)) return NULL;
    return pnC_make(&copy_prim, NULL, 0, 1, &a, a->dtype, a->shape, a->ndim);
}

/* ───────────────────────────── astype ───────────────────────────── */

static int astype_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *a = in[0], *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (pnC_row_contiguous(a))
        pnC_convert(pnC_data(a), a->dtype, pnC_data(o), o->dtype, a->size);
    else
        pnC_copy_strided(a, o);
    return 0;
}

/* Derivatives pass through the cast when both sides are inexact; integers carry none. */
static int astype_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    if (!cot[0] || !pnC_is_inexact(in[0]->dtype) || !pnC_is_inexact(out[0]->dtype)) return 0;
    grads[0] = pn_astype(cot[0], in[0]->dtype);
    return grads[0] ? 0 : -1;
}

static int astype_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    if (!tan[0] || !pnC_is_inexact(in[0]->dtype) || !pnC_is_inexact(out[0]->dtype)) return 0;
    out_tan[0] = pn_astype(tan[0], out[0]->dtype);
    return out_tan[0] ? 0 : -1;
}

const pnC_primitive astype_prim = {
    .name = "AsType",
    .eval = {[PN_CPU] = astype_eval, [PN_GPU] = PNG_EVAL(pnG_astype_eval)},
    .vjp = astype_vjp,
    .jvp = astype_jvp,
    .vmap = pnC_vmap_same_shape,
};

/* a converted to dtype (C casts; float to integer saturates, NaN gives 0). The same dtype
 * gives a copy. */
pn_array *pn_astype(pn_array *a, pn_dtype dtype)
{
    if (!pnC_inputs_ok("astype", 1, &a) || !dtype_ok("astype", dtype)) return NULL;
    if (a->dtype == dtype) return pn_copy(a);
    return pnC_make(&astype_prim, NULL, 0, 1, &a, dtype, a->shape, a->ndim);
}

/* ───────────────────────────── full ───────────────────────────── */

/* out: a dense copy of its input (values already broadcast and cast). */
static int full_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *v = in[0], *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    bool one_value = true;
    for (int i = 0; i < v->ndim; i++) one_value &= v->shape[i] == 1 || v->strides[i] == 0;
    if (one_value)
        pnK_fill(pnC_data(o), pnC_data(v), pn_dtype_size(o->dtype), o->size);
    else if (v->ndim != o->ndim || memcmp(v->shape, o->shape, (size_t)o->ndim * sizeof *o->shape))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[full] The values do not have the "
                            "output's shape.");
    else
        pnC_copy_to_contiguous(v, pnC_data(o));
    return 0;
}

extern const pnC_primitive full_prim;

/* Full has one input (the values, already of the output's shape), or two for the _like forms:
 * one value and the array whose shape it takes (read for its shape only, so a shapeless
 * compiled replay follows that array's new shape). The values get the gradient summed to
 * their shape; the shape's array none. */
static int full_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    if (node->nin == 1) return copy_vjp(node, in, out, cot, argnums, nargs, grads);
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        grads[i] = argnums[i] == 0 && cot[0] ? pnC_sum_to_shape(cot[0], in[0]->shape, in[0]->ndim) : NULL;
        ok &= argnums[i] != 0 || !cot[0] || grads[i];
    }
    return ok ? 0 : -1;
}

static int full_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    if (node->nin == 1) return copy_jvp(node, in, out, tan, out_tan);
    out_tan[0] = tan[0] ? pn_broadcast_to(tan[0], out[0]->shape, out[0]->ndim) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

static pn_array *full_like_make(pn_array *v, pn_array *a)
{
    pn_array *in[2] = {v, a};
    return v && a ? pnC_make(&full_prim, NULL, 0, 2, in, v->dtype, a->shape, a->ndim) : NULL;
}

/* Batching the two-input form: mapped axes to the front (the value's padded with ones up to
 * the element's rank, so it still lines up from the right), mapped at 0. */
static int full_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    if (node->nin == 1) return pnC_vmap_same_shape(node, in, in_axes, out, out_axes);
    if (in_axes[0] < 0 && in_axes[1] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pn_scope_push();
    const int rank = node->out_ndims[0];
    pn_array *v = in_axes[0] >= 0 ? pnC_batch_front(in[0], in_axes[0], rank) : in[0];
    pn_array *a = in_axes[1] >= 0 ? pnC_batch_front(in[1], in_axes[1], rank) : in[1];
    int64_t shape[PNC_MAX_NDIM];
    int nd = v && a ? pnC_broadcast_shapes("full_like", v->shape, v->ndim, a->shape, a->ndim, shape) : -1;
    if (nd >= 0 && v->size != 1) v = pn_broadcast_to(v, shape, nd); /* one value per node */
    pn_array *in2[2] = {v, a};
    out[0] = nd < 0 || !v ? NULL : pnC_make(&full_prim, NULL, 0, 2, in2, node->out_dtypes[0], shape, nd);
    out_axes[0] = 0;
    out[0] = pnC_scope_return(out[0]);
    return out[0] ? 0 : -1;
}

const pnC_primitive full_prim = {
    .name = "Full",
    .eval = {[PN_CPU] = full_eval, [PN_GPU] = PNG_EVAL(full_eval)},
    .vjp = full_vjp,
    .jvp = full_jvp,
    .vmap = full_vmap,
};

/* vals broadcast to shape and cast to dtype, as a dense array. */
pn_array *pn_full(const int64_t *shape, int ndim, pn_array *vals, pn_dtype dtype)
{
    if (!pnC_inputs_ok("full", 1, &vals) || !dtype_ok("full", dtype)) return NULL;
    for (int i = 0; shape && i < ndim; i++)
        if (shape[i] < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[full] Negative dimensions not allowed.");
    if (pnC_check_shape("full", shape, ndim)) return NULL;
    pn_scope_push();
    pn_array *v = pn_broadcast_to(pn_astype(vals, dtype), shape, ndim);
    pn_array *r = v ? pnC_make(&full_prim, NULL, 0, 1, &v, dtype, shape, ndim) : NULL;
    return pnC_scope_return(r);
}

/* `value` everywhere, in a dense array of shape and dtype. */
static pn_array *full_value(const char *op, const int64_t *shape, int ndim, double value,
                            pn_dtype dtype)
{
    if (!dtype_ok(op, dtype)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_full(shape, ndim, pn_scalar(value, dtype), dtype));
}

/* Dense zeros / ones of shape and dtype. */
pn_array *pn_zeros(const int64_t *shape, int ndim, pn_dtype dtype)
{
    return full_value("zeros", shape, ndim, 0, dtype);
}

pn_array *pn_ones(const int64_t *shape, int ndim, pn_dtype dtype)
{
    return full_value("ones", shape, ndim, 1, dtype);
}

/* See ponte.h. */
pn_array *pn_full_like_dtype(pn_array *a, pn_array *vals, pn_dtype dtype)
{
    pn_array *in[2] = {a, vals};
    if (!pnC_inputs_ok("full_like", 2, in) || !dtype_ok("full_like", dtype)) return NULL;
    if (vals->size != 1 || vals->ndim > a->ndim) return pn_full(a->shape, a->ndim, vals, dtype);
    pn_scope_push();
    return pnC_scope_return(full_like_make(pn_astype(vals, dtype), a));
}

/* Zeros / ones of a's shape and dtype. */
pn_array *pn_zeros_like(pn_array *a)
{
    if (!pnC_inputs_ok("zeros_like", 1, &a)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_full_like_dtype(a, pn_scalar(0, a->dtype), a->dtype));
}

pn_array *pn_ones_like(pn_array *a)
{
    if (!pnC_inputs_ok("ones_like", 1, &a)) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_full_like_dtype(a, pn_scalar(1, a->dtype), a->dtype));
}

/* vals in a's dtype, broadcast against a's shape (as MLX: the shape is the broadcast of both). */
pn_array *pn_full_like(pn_array *a, pn_array *vals)
{
    pn_array *in[2] = {a, vals};
    if (!pnC_inputs_ok("full_like", 2, in)) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = pnC_broadcast_shapes("full_like", a->shape, a->ndim, vals->shape, vals->ndim, shape);
    if (nd < 0) return NULL;
    if (nd == a->ndim && vals->size == 1) return pn_full_like_dtype(a, vals, a->dtype);
    return pn_full(shape, nd, vals, a->dtype);
}

/* ───────────────────────────── arange and linspace ───────────────────────────── */


/* Integer dtypes with their C types, for the typed integer arange loop. */
#define PN_FOR_EACH_INT_DTYPE(X)                                                               \
    X(PN_UINT8, uint8_t) X(PN_UINT16, uint16_t) X(PN_UINT32, uint32_t) X(PN_UINT64, uint64_t)  \
    X(PN_INT8, int8_t) X(PN_INT16, int16_t) X(PN_INT32, int32_t) X(PN_INT64, int64_t)

/* Integer arange follows MLX: start and start+step are cast to the dtype first, their
 * difference is the step, and the values wrap like the dtype's arithmetic. float32/float64
 * elements are start + i * step computed in double; other dtypes (and integer linspace, which
 * saturates) go through double chunks converted by the core. Linspace ends exactly at stop. */
static int sequence_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const sequence_params *p = PNC_PARAMS(node, sequence_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int64_t n = o->size;
    if (n == 0) return 0;
    pn_dtype dt = o->dtype;
    void *d = pnC_data(o);
    if (pnC_is_integer(dt) && !p->linspace) {
        int64_t s0 = 0, s1 = 0;
        unsigned char tmp0[8], tmp1[8];
        pnC_store_f64(tmp0, dt, p->start);
        pnC_store_f64(tmp1, dt, p->start + p->step);
        pnC_convert(tmp0, dt, &s0, PN_INT64, 1);
        pnC_convert(tmp1, dt, &s1, PN_INT64, 1);
        uint64_t base = (uint64_t)s0, step = (uint64_t)s1 - (uint64_t)s0;
        switch (dt) {
#define INT_FILL(E, T)                                                                         \
    case E: {                                                                                  \
        T *v = d;                                                                              \
        _Pragma("omp parallel for if (n > PNC_PAR_GRAIN)") for (int64_t i = 0; i < n; i++)     \
            v[i] = (T)(base + (uint64_t)i * step);                                             \
        break;                                                                                 \
    }
            PN_FOR_EACH_INT_DTYPE(INT_FILL)
#undef INT_FILL
        default: break;
        }
        return 0;
    }
    double step = !p->linspace ? p->step : n > 1 ? (p->stop - p->start) / (double)(n - 1) : 0;
    if (dt == PN_FLOAT32 || dt == PN_FLOAT64) {
#define FLOAT_FILL(T)                                                                          \
    {                                                                                          \
        T *v = d;                                                                              \
        _Pragma("omp parallel for if (n > PNC_PAR_GRAIN)") for (int64_t i = 0; i < n; i++)     \
            v[i] = (T)(p->start + (double)i * step);                                           \
        if (p->linspace && n > 1) v[n - 1] = (T)p->stop;                                       \
    }
        if (dt == PN_FLOAT32) FLOAT_FILL(float) else FLOAT_FILL(double)
#undef FLOAT_FILL
        return 0;
    }
    enum { CHUNK = 2048 };
    int64_t w = (int64_t)pn_dtype_size(dt);
#pragma omp parallel for if (n > PNC_PAR_GRAIN)
    for (int64_t c = 0; c < n; c += CHUNK) {
        double v[CHUNK];
        int64_t m = n - c < CHUNK ? n - c : CHUNK;
        for (int64_t i = 0; i < m; i++) v[i] = p->start + (double)(c + i) * step;
        if (p->linspace && n > 1 && c + m == n) v[m - 1] = p->stop;
        pnC_convert(v, PN_FLOAT64, (char *)d + c * w, dt, m);
    }
    return 0;
}

/* Sequences have no array inputs: nothing to differentiate. */
static int no_input_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    return 0;
}

static int no_input_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = NULL;
    return 0;
}

const pnC_primitive arange_prim = {
    .name = "Arange",
    .eval = {[PN_CPU] = sequence_eval, [PN_GPU] = PNG_EVAL(pnG_sequence_eval)},
    .vjp = no_input_vjp,
    .jvp = no_input_jvp,
};

const pnC_primitive linspace_prim = {
    .name = "Linspace",
    .eval = {[PN_CPU] = sequence_eval, [PN_GPU] = PNG_EVAL(pnG_sequence_eval)},
    .vjp = no_input_vjp,
    .jvp = no_input_jvp,
};

/* start, start+step, ... while < stop (> stop for a negative step), in dtype (not bool). */
pn_array *pn_arange(double start, double stop, double step, pn_dtype dtype)
{
    if (!dtype_ok("arange", dtype)) return NULL;
    if (dtype == PN_BOOL)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[arange] bool not supported for arange.");
    if (isnan(start) || isnan(stop) || isnan(step) || isinf(start) || isinf(stop))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[arange] Cannot compute length.");
    sequence_params p = {start, step, stop, false};
    double real = ceil((stop - start) / step);
    if (isinf(step)) { /* one element when the range is not empty */
        real = (step > 0 && start < stop) || (step < 0 && start > stop) ? 1 : 0;
        p.step = 0;
    }
    if (real > (double)(INT64_MAX / 16))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[arange] Maximum size exceeded.");
    int64_t size = real > 0 ? (int64_t)real : 0; /* NaN (0/0: step 0, start == stop) too */
    return pnC_make(&arange_prim, &p, sizeof p, 0, NULL, dtype, &size, 1);
}

/* num evenly spaced values from start to stop inclusive. */
pn_array *pn_linspace(double start, double stop, int64_t num, pn_dtype dtype)
{
    if (!dtype_ok("linspace", dtype)) return NULL;
    if (num < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[linspace] number of samples, %lld, must be non-negative.",
                        (long long)num);
    sequence_params p = {start, 0, stop, true};
    return pnC_make(&linspace_prim, &p, sizeof p, 0, NULL, dtype, &num, 1);
}

/* ───────────────────────────── eye and tri ───────────────────────────── */


static int eye_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const eye_params *p = PNC_PARAMS(node, eye_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    int64_t n = o->shape[0], m = o->shape[1];
    size_t w = pn_dtype_size(o->dtype);
    char *d = pnC_data(o);
    unsigned char one[8];
    pnC_store_f64(one, o->dtype, 1);
    memset(d, 0, (size_t)o->size * w);
#pragma omp parallel for if (o->size > PNC_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i + p->k;
        if (p->tri) {
            int64_t count = j + 1 < 0 ? 0 : j + 1 > m ? m : j + 1;
            pnK_fill(d + i * m * (int64_t)w, one, w, count);
        } else if (j >= 0 && j < m) {
            memcpy(d + (i * m + j) * (int64_t)w, one, w);
        }
    }
    return 0;
}

const pnC_primitive eye_prim = {
    .name = "Eye",
    .eval = {[PN_CPU] = eye_eval, [PN_GPU] = PNG_EVAL(pnG_eye_eval)},
    .vjp = no_input_vjp,
    .jvp = no_input_jvp,
};

const pnC_primitive tri_prim = {
    .name = "Tri",
    .eval = {[PN_CPU] = eye_eval, [PN_GPU] = PNG_EVAL(pnG_eye_eval)},
    .vjp = no_input_vjp,
    .jvp = no_input_jvp,
};

/* n x m (m < 0: n) with ones on diagonal k (MLX: n and m must be positive). */
pn_array *pn_eye(int64_t n, int64_t m, int k, pn_dtype dtype)
{
    if (!dtype_ok("eye", dtype)) return NULL;
    if (m < 0) m = n;
    if (n <= 0 || m <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[eye] N and M must be positive integers.");
    eye_params p = {k, false};
    return pnC_make(&eye_prim, &p, sizeof p, 0, NULL, dtype, (int64_t[]){n, m}, 2);
}

/* The n x n identity. */
pn_array *pn_identity(int64_t n, pn_dtype dtype) { return pn_eye(n, n, 0, dtype); }

/* n x m (m < 0: n) with ones at and below diagonal k. */
pn_array *pn_tri(int64_t n, int64_t m, int k, pn_dtype dtype)
{
    if (!dtype_ok("tri", dtype)) return NULL;
    if (m < 0) m = n;
    if (n < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tri] N must be non-negative (got %lld).",
                        (long long)n);
    eye_params p = {k, true};
    return pnC_make(&tri_prim, &p, sizeof p, 0, NULL, dtype, (int64_t[]){n, m}, 2);
}

/* ───────────────────────────── tril and triu ───────────────────────────── */


/* out: a dense copy of the input (its own buffer when donated) with the other triangle of
 * each matrix (the last two axes) zeroed row by row. */
static int trimask_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const trimask_params *p = PNC_PARAMS(node, trimask_params);
    pn_array *o = out[0];
    if (!pnC_donate(o, in[0])) {
        if (pnC_alloc_output(o)) return -1;
        pnC_copy_to_contiguous(in[0], pnC_data(o));
    }
    int64_t n = o->shape[o->ndim - 2], m = o->shape[o->ndim - 1];
    int64_t rows = n ? o->size / m : 0;
    size_t w = pn_dtype_size(o->dtype);
    char *d = pnC_data(o);
    if (m == 0) return 0;
#pragma omp parallel for if (o->size > PNC_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r % n, edge = i + p->k + (p->upper ? 0 : 1);
        edge = edge < 0 ? 0 : edge > m ? m : edge;
        char *row = d + r * m * (int64_t)w;
        if (p->upper)
            memset(row, 0, (size_t)edge * w);
        else
            memset(row + edge * (int64_t)w, 0, (size_t)(m - edge) * w);
    }
    return 0;
}

static pn_array *trimask_make(pn_array *a, int64_t k, bool upper);

/* Linear: the same mask applies to cotangents and tangents. */
static int trimask_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const trimask_params *p = PNC_PARAMS(node, trimask_params);
    grads[0] = cot[0] ? trimask_make(cot[0], p->k, p->upper) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int trimask_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                       pn_array *const *tan, pn_array **out_tan)
{
    const trimask_params *p = PNC_PARAMS(node, trimask_params);
    out_tan[0] = tan[0] ? trimask_make(tan[0], p->k, p->upper) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

const pnC_primitive trimask_prim = {
    .name = "TriMask",
    .eval = {[PN_CPU] = trimask_eval, [PN_GPU] = PNG_EVAL(pnG_trimask_eval)},
    .vjp = trimask_vjp,
    .jvp = trimask_jvp,
};

static pn_array *trimask_make(pn_array *a, int64_t k, bool upper)
{
    const char *op = upper ? "triu" : "tril";
    if (!pnC_inputs_ok(op, 1, &a)) return NULL;
    if (a->ndim < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] array must be at least 2-D", op);
    trimask_params p = {k, upper};
    return pnC_make(&trimask_prim, &p, sizeof p, 1, &a, a->dtype, a->shape, a->ndim);
}

/* a with the elements above diagonal k of its last two axes set to zero. */
pn_array *pn_tril(pn_array *a, int k) { return trimask_make(a, k, false); }

/* a with the elements below diagonal k of its last two axes set to zero. */
pn_array *pn_triu(pn_array *a, int k) { return trimask_make(a, k, true); }
