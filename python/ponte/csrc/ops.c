/* ops.c — ponte.core's op functions with mlx.core's names, arguments and keywords: the ops whose
 * parsing is one call of a C function are rows of signature tables (sigtable.h: one row an op,
 * including the random, linalg and fast submodules'); below them the functions with their own
 * parsing (creation from numbers, joins and splits, padding, einsum, convolutions, norms, the
 * random functions with shape rules, file I/O). */
#include "core/core.h" /* the layout flags contiguous reads */
#include "sigtable.h"

#include <math.h>
#include <string.h>

int pp_array_forward_methods(PyObject *m);

/* ───────────────────────────── helpers ───────────────────────────── */

/* Temporaries converted from arguments, released when the call is done. */
typedef struct {
    pn_array *a[16];
    int n;
} holder;

static pn_array *hold(holder *h, pn_array *x)
{
    if (x && h->n < 16) h->a[h->n++] = x;
    return x;
}
static pn_array *A(holder *h, PyObject *o) { return hold(h, pp_arr(o)); }
static pn_array *W(holder *h, PyObject *o, pn_array *other) { return hold(h, pp_arr_weak(o, other)); }
static void drop(holder *h) { pp_release_all(h->a, h->n); h->n = 0; }

/* Ends a call: releases the temporaries, leaves the stream, wraps the result. */
static PyObject *done(holder *h, int pushed, pn_array *r)
{
    drop(h);
    pp_stream_exit(pushed);
    return pp_wrap(r);
}

static PyObject *fail(holder *h, int pushed)
{
    drop(h);
    pp_stream_exit(pushed);
    return NULL;
}

/* A Python list of the n result arrays (all wrapped or none). */
static PyObject *wrap_list(pn_array **r, int n, int rc)
{
    if (rc) return pp_raise();
    PyObject *l = PyList_New(n);
    for (int i = 0; i < n; i++) {
        PyObject *x = l ? pp_wrap(r[i]) : (pn_release(r[i]), NULL);
        if (l && !x) {
            for (int j = i + 1; j < n; j++) pn_release(r[j]);
            Py_CLEAR(l);
        }
        if (l) PyList_SET_ITEM(l, i, x);
    }
    return l;
}

/* Arrays from a sequence of array-likes (held). Returns the count or -1. */
static int array_list(holder *h, PyObject *seq, pn_array **out, int max)
{
    PyObject *f = PySequence_Fast(seq, "Expected a list of arrays.");
    if (!f) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    if (n > max) {
        Py_DECREF(f);
        PyErr_Format(PyExc_ValueError, "At most %d arrays are supported.", max);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = pp_arr(PySequence_Fast_GET_ITEM(f, i));
        if (!out[i]) {
            pp_release_all(out, (int)i);
            Py_DECREF(f);
            return -1;
        }
    }
    Py_DECREF(f);
    (void)h;
    return (int)n;
}

int pp_is_int(PyObject *o)
{
    if (PyLong_Check(o)) return !PyBool_Check(o);
    if (!PyIndex_Check(o)) return 0;
    if (!PySequence_Check(o)) return 1;
    if (PyObject_Length(o) >= 0) return 0; /* a sized container (a 1-d numpy array) */
    PyErr_Clear();                         /* len() of unsized object: a 0-d array */
    return 1;
}

PyObject *pp_index(PyObject *o, const char *what)
{
    if (!pp_is_int(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %s.", what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    return PyNumber_Index(o);
}

int pp_int(PyObject *o, long long *v, const char *what)
{
    PyObject *i = pp_index(o, what);
    if (!i) return -1;
    *v = PyLong_AsLongLong(i);
    Py_DECREF(i);
    return *v == -1 && PyErr_Occurred() ? -1 : 0;
}

int pp_shape(PyObject *o, int64_t *shape, int max, const char *what)
{
    if (pp_is_int(o)) {
        long long v;
        if (pp_int(o, &v, what)) return -1;
        shape[0] = v;
        return 1;
    }
    PyObject *f = PySequence_Fast(o, "Expected an int or a sequence of ints.");
    if (!f) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an int or a sequence of ints, got %s.", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    if (n > max) {
        Py_DECREF(f);
        PyErr_Format(PyExc_ValueError, "%s has too many entries (%zd).", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PySequence_Fast_GET_ITEM(f, i);
        if (!pp_is_int(x)) {
            Py_DECREF(f);
            PyErr_Format(PyExc_TypeError, "%s must contain ints, got %s.", what, Py_TYPE(x)->tp_name);
            return -1;
        }
        long long v;
        if (pp_int(x, &v, what)) {
            Py_DECREF(f);
            return -1;
        }
        shape[i] = v;
    }
    Py_DECREF(f);
    return (int)n;
}

int pp_axes(PyObject *o, int *axes, int max)
{
    if (!o || o == Py_None) return -2;
    int64_t tmp[PP_MAXDIM];
    int n = pp_shape(o, tmp, max < PP_MAXDIM ? max : PP_MAXDIM, "axis");
    for (int i = 0; i < n; i++) {
        if (tmp[i] < INT32_MIN + 1 || tmp[i] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "Axis out of range.");
            return -1;
        }
        axes[i] = (int)tmp[i];
    }
    return n;
}

int pp_axis(PyObject *o, int *axis)
{
    if (!o || o == Py_None) {
        *axis = PN_ALL_AXES;
        return 0;
    }
    if (!pp_is_int(o)) {
        PyErr_Format(PyExc_TypeError, "axis must be an int or None, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v;
    if (pp_int(o, &v, "axis")) return -1;
    if (v < INT32_MIN + 1 || v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Axis out of range.");
        return -1;
    }
    *axis = (int)v;
    return 0;
}

#define KW(...) static char *kwlist[] = {__VA_ARGS__, NULL}
#define PARSE(fmt, ...) if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, __VA_ARGS__)) return NULL
#define ENTER(stream)                                                                              \
    holder h = {.n = 0};                                                                           \
    int pushed = pp_stream_enter(stream);                                                          \
    if (pushed < 0) return NULL
#define FN(name) static PyObject *py_##name(PyObject *m, PyObject *args, PyObject *kw)

/* ───────────────────────────── the signature tables (sigtable.h) ───────────────────────────── */
/* One row an op: its Python signature and the C function of one of sigtable.h's C kinds. */

static pn_array *op_positive(pn_array *a) { return pn_copy(a); }
/* contiguous(a, allow_col_major): a row-major copy, or a itself when allow_col_major and its
 * strides are column-major and dense (as MLX, which then does not copy). */
static pn_array *op_contiguous(pn_array *a, bool allow_col_major)
{
    return allow_col_major && a && (a->flags & PNC_COL_CONTIGUOUS) ? pn_retain(a) : pn_copy(a);
}
static pn_array *op_matrix_transpose(pn_array *a) { return pn_swapaxes(a, -1, -2); }
static pn_array *op_trunc(pn_array *a)
{
    if (!pn_issubdtype(pn_array_dtype(a), PN_CAT_INEXACT)) return pn_copy(a);
    pn_scope_push();
    pn_array *zero = pn_weak_int(0);
    pn_array *r = pn_where(pn_less(a, zero), pn_ceil(a), pn_floor(a));
    pn_retain(r);
    pn_scope_pop();
    return r;
}

static pn_array *op_logical_xor(pn_array *a, pn_array *b)
{
    pn_scope_push();
    pn_array *r = pn_not_equal(pn_astype(a, PN_BOOL), pn_astype(b, PN_BOOL));
    pn_retain(r);
    pn_scope_pop();
    return r;
}

/* zeros_like, ones_like, full, full_like: dtype -1 (None) takes the array's. */
static pn_dtype dtype_or(pn_dtype t, pn_array *a) { return (int)t < 0 ? pn_array_dtype(a) : t; }
static pn_array *op_zeros_like(pn_array *a, pn_dtype t) { return pn_full_like_dtype(a, pn_scalar_int(0, PN_INT32), dtype_or(t, a)); }
static pn_array *op_ones_like(pn_array *a, pn_dtype t) { return pn_full_like_dtype(a, pn_scalar_int(1, PN_INT32), dtype_or(t, a)); }
static pn_array *op_full(const int64_t *shape, int n, pn_array *v, pn_dtype t) { return pn_full(shape, n, v, dtype_or(t, v)); }
static pn_array *op_full_like(pn_array *a, pn_array *v, pn_dtype t) { return pn_full_like_dtype(a, v, dtype_or(t, a)); }

static pn_array *op_clip(pn_array *a, pn_array *lo, pn_array *hi)
{
    if (!lo && !hi) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "At most one of a_min and a_max may be None");
        return NULL;
    }
    return pn_clip(a, lo, hi);
}

static pn_array *op_searchsorted(pn_array *s, pn_array *v, const char *side)
{
    if (strcmp(side, "left") && strcmp(side, "right")) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[searchsorted] side must be 'left' or 'right', got '%s'.", side);
        return NULL;
    }
    return pn_searchsorted(s, v, side[0] == 'r');
}

static pn_array *op_isclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan)
{
    return pn_isclose(a, b, rtol, atol, equal_nan);
}
static pn_array *op_allclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan)
{
    return pn_allclose(a, b, rtol, atol, equal_nan);
}

#define SIG_UNARY "a: array, /, *, stream: stream = None"
#define SIG_UNARY_NAMED "a: array, stream: stream = None"
#define SIG_BINARY "a: pair, b: pair, *, stream: stream = None"
#define SIG_BINARY_POS_STREAM "a: pair, b: pair, stream: stream = None" /* MLX's stream positional too */
#define SIG_REDUCE "a: array, /, axis: axes = None, keepdims: bool = False, *, stream: stream = None"
#define SIG_ARG_REDUCE "a: array, /, axis: axis = None, keepdims: bool = False, *, stream: stream = None"
#define SIG_MOMENT "a: array, /, axis: axes = None, keepdims: bool = False, ddof: int = 0, *, stream: stream = None"
#define SIG_SCAN "a: array, /, axis: axis = None, *, reverse: bool = False, inclusive: bool = True, " \
                 "dtype: astype = None, stream: stream = None"
#define SIG_FILL "shape: shape, dtype: dtype? = float32, *, stream: stream = None"
#define SIG_FILL_LIKE "a: array, /, dtype: dtype? = None, *, stream: stream = None"
#define SIG_TRI "x: array, k: int = 0, *, stream: stream = None"
#define SIG_SORT "a: array, /, axis: axis = -1, *, stream: stream = None"
#define SIG_KTH "a: array, /, kth: int, axis: axis = -1, *, stream: stream = None"
#define SIG_CLOSE "a: array, b: weak, /, rtol: float = 1e-5, atol: float = 1e-8, *, equal_nan: bool = False, stream: stream = None"
#define SIG_UPPER(arg) arg ": array, upper: bool = False, *, stream: stream = None"
#define SIG_SHAPE(what) "a: array, /, " what ": shape, *, stream: stream = None"

#define UNARY_OPS(X)                                                                               \
    X(abs, pn_abs) X(negative, pn_negative) X(sign, pn_sign) X(sqrt, pn_sqrt) X(rsqrt, pn_rsqrt)   \
    X(square, pn_square) X(reciprocal, pn_reciprocal) X(exp, pn_exp) X(expm1, pn_expm1)          \
    X(log, pn_log) X(log1p, pn_log1p) X(log2, pn_log2) X(log10, pn_log10) X(sin, pn_sin)          \
    X(cos, pn_cos) X(tan, pn_tan) X(arcsin, pn_arcsin) X(arccos, pn_arccos)                       \
    X(arctan, pn_arctan) X(sinh, pn_sinh) X(cosh, pn_cosh) X(tanh, pn_tanh)                       \
    X(arcsinh, pn_arcsinh) X(arccosh, pn_arccosh) X(arctanh, pn_arctanh) X(floor, pn_floor)       \
    X(ceil, pn_ceil) X(sigmoid, pn_sigmoid) X(erf, pn_erf) X(erfinv, pn_erfinv)                   \
    X(logical_not, pn_logical_not) X(real, pn_real) X(imag, pn_imag)                              \
    X(degrees, pn_degrees) X(radians, pn_radians) X(stop_gradient, pn_stop_gradient)              \
    X(positive, op_positive) X(matrix_transpose, op_matrix_transpose) X(trunc, op_trunc)          \
    X(copy, op_positive) X(acos, pn_arccos)                                                       \
    X(asin, pn_arcsin) X(atan, pn_arctan) X(acosh, pn_arccosh) X(asinh, pn_arcsinh)               \
    X(atanh, pn_arctanh)

/* Unary ops whose MLX signature names a (and stream) without making them positional-only. */
#define UNARY_OPS_NAMED(X)                                                                         \
    X(bitwise_invert, pn_bitwise_invert) X(isnan, pn_isnan) X(isinf, pn_isinf)                    \
    X(isfinite, pn_isfinite) X(isposinf, pn_isposinf) X(isneginf, pn_isneginf)                   \
    X(conjugate, pn_conjugate) X(conj, pn_conjugate)

#define BINARY_OPS(X)                                                                              \
    X(power, pn_power) X(maximum, pn_maximum) X(minimum, pn_minimum) X(arctan2, pn_arctan2)       \
    X(logaddexp, pn_logaddexp) X(logical_and, pn_logical_and) X(logical_or, pn_logical_or)        \
    X(logical_xor, op_logical_xor) X(matmul, pn_matmul) X(outer, pn_outer) X(inner, pn_inner)     \
    X(kron, pn_kron) X(pow, pn_power) X(atan2, pn_arctan2)                                        \
    X(bitwise_left_shift, pn_left_shift) X(bitwise_right_shift, pn_right_shift)

/* Binary ops whose MLX signature takes the stream positionally as well. */
#define BINARY_OPS_POS_STREAM(X)                                                                   \
    X(add, pn_add) X(subtract, pn_subtract) X(multiply, pn_multiply) X(divide, pn_divide)         \
    X(floor_divide, pn_floor_divide) X(remainder, pn_remainder) X(equal, pn_equal)                \
    X(not_equal, pn_not_equal) X(less, pn_less) X(less_equal, pn_less_equal)                      \
    X(greater, pn_greater) X(greater_equal, pn_greater_equal) X(bitwise_and, pn_bitwise_and)      \
    X(bitwise_or, pn_bitwise_or) X(bitwise_xor, pn_bitwise_xor) X(left_shift, pn_left_shift)      \
    X(right_shift, pn_right_shift)

#define REDUCE_OPS(X)                                                                              \
    X(sum, pn_sum) X(prod, pn_prod) X(max, pn_max) X(min, pn_min) X(mean, pn_mean)                \
    X(all, pn_all) X(any, pn_any) X(logsumexp, pn_logsumexp) X(median, pn_median)                 \
    X(count_nonzero, pn_count_nonzero)

#define SCAN_OPS(X)                                                                                \
    X(cumsum, pn_cumsum) X(cumprod, pn_cumprod) X(cummax, pn_cummax) X(cummin, pn_cummin)         \
    X(logcumsumexp, pn_logcumsumexp) X(cumulative_sum, pn_cumsum) X(cumulative_prod, pn_cumprod)

#define ROW_UNARY(name, fn) PP_SIG(#name, a, fn, SIG_UNARY, NULL),
#define ROW_UNARY_NAMED(name, fn) PP_SIG(#name, a, fn, SIG_UNARY_NAMED, NULL),
#define ROW_BINARY(name, fn) PP_SIG(#name, aa, fn, SIG_BINARY, NULL),
#define ROW_BINARY_POS_STREAM(name, fn) PP_SIG(#name, aa, fn, SIG_BINARY_POS_STREAM, NULL),
#define ROW_REDUCE(name, fn) PP_SIG(#name, axb, fn, SIG_REDUCE, NULL),
#define ROW_SCAN(name, fn) PP_SIG(#name, aibb, fn, SIG_SCAN, NULL),

static pp_sig op_sigs[] = {
    UNARY_OPS(ROW_UNARY) UNARY_OPS_NAMED(ROW_UNARY_NAMED) BINARY_OPS(ROW_BINARY) BINARY_OPS_POS_STREAM(ROW_BINARY_POS_STREAM) REDUCE_OPS(ROW_REDUCE) SCAN_OPS(ROW_SCAN)
    PP_SIG("var", axbi, pn_var, SIG_MOMENT, NULL),
    PP_SIG("std", axbi, pn_std, SIG_MOMENT, NULL),
    PP_SIG("argmax", aib, pn_argmax, SIG_ARG_REDUCE, NULL),
    PP_SIG("argmin", aib, pn_argmin, SIG_ARG_REDUCE, NULL),
    PP_SIG("softmax", axb, pn_softmax, "a: array, /, axis: axes = None, *, precise: bool = False, stream: stream = None", NULL),
    /* creation */
    PP_SIG("zeros", st, pn_zeros, SIG_FILL, NULL),
    PP_SIG("empty", st, pn_zeros, SIG_FILL, NULL),
    PP_SIG("ones", st, pn_ones, SIG_FILL, NULL),
    PP_SIG("zeros_like", at, op_zeros_like, SIG_FILL_LIKE, NULL),
    PP_SIG("empty_like", at, op_zeros_like, SIG_FILL_LIKE, NULL),
    PP_SIG("ones_like", at, op_ones_like, SIG_FILL_LIKE, NULL),
    PP_SIG("full", sat, op_full, "shape: shape, vals: array, dtype: dtype? = None, *, stream: stream = None", NULL),
    PP_SIG("full_like", aat, op_full_like, "a: array, vals: weak, dtype: dtype? = None, *, stream: stream = None", NULL),
    PP_SIG("contiguous", ab, op_contiguous, "a: array, /, allow_col_major: bool = False, *, stream: stream = None", NULL),
    PP_SIG("identity", Lt, pn_identity, "n: size, dtype: dtype? = float32, *, stream: stream = None", NULL),
    PP_SIG("tril", ai, pn_tril, SIG_TRI, NULL),
    PP_SIG("triu", ai, pn_triu, SIG_TRI, NULL),
    PP_SIG("astype", at, pn_astype, "a: array, /, dtype: dtype, stream: stream = None", NULL),
    PP_SIG("view", at, pn_view, "a: array, dtype: dtype, stream: stream = None", NULL),
    /* elementwise with arguments */
    PP_SIG("round", ai, pn_round, "a: array, /, decimals: int = 0, stream: stream = None", NULL),
    PP_SIG("clip", aaa, op_clip, "a: array, /, a_min: weak?, a_max: weak?, *, stream: stream = None", NULL),
    PP_SIG("isclose", aaddb, op_isclose, SIG_CLOSE, NULL),
    PP_SIG("allclose", aaddb, op_allclose, SIG_CLOSE, NULL),
    PP_SIG("array_equal", aab, pn_array_equal, "a: array, b: array, equal_nan: bool = False, stream: stream = None", NULL),
    /* shapes */
    PP_SIG("reshape", as, pn_reshape, SIG_SHAPE("shape"), NULL),
    PP_SIG("broadcast_to", as, pn_broadcast_to, SIG_SHAPE("shape"), NULL),
    PP_SIG("tile", as, pn_tile, SIG_SHAPE("reps"), NULL),
    PP_SIG("flatten", aii, pn_flatten, "a: array, /, start_axis: int = 0, end_axis: int = -1, *, stream: stream = None", NULL),
    PP_SIG("unflatten", ais, pn_unflatten, "a: array, /, axis: int, shape: shape, *, stream: stream = None", NULL),
    PP_SIG("squeeze", ax, pn_squeeze, "a: array, /, axis: axes = None, *, stream: stream = None", NULL),
    PP_SIG("expand_dims", ax, pn_expand_dims, "a: array, /, axis: axes, *, stream: stream = None", NULL),
    PP_SIG("transpose", ax, pn_transpose, "a: array, /, axes: axes = None, stream: stream = None", NULL),
    PP_SIG("permute_dims", ax, pn_transpose, "a: array, /, axes: axes = None, *, stream: stream = None", NULL),
    PP_SIG("flip", ax, pn_flip, "a: array, /, axis: axes = None, *, stream: stream = None", NULL),
    PP_SIG("swapaxes", aii, pn_swapaxes, "a: array, /, axis1: int, axis2: int, *, stream: stream = None", NULL),
    PP_SIG("moveaxis", aii, pn_moveaxis, "a: array, /, source: int, destination: int, *, stream: stream = None", NULL),
    PP_SIG("repeat", aLi, pn_repeat, "array: array, repeats: long, axis: axis = None, *, stream: stream = None", NULL),
    PP_SIG("diag", ai, pn_diag, "a: array, /, k: int = 0, *, stream: stream = None", NULL),
    PP_SIG("diagonal", aiii, pn_diagonal, "a: array, offset: int = 0, axis1: int = 0, axis2: int = 1, stream: stream = None", NULL),
    PP_SIG("trace", aiii, pn_trace, "a: array, /, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: astype = None, *, stream: stream = None", NULL),
    PP_SIG("diff", aii, pn_diff, "a: array, /, n: int = 1, axis: int = -1, *, stream: stream = None", NULL),
    /* indexing and sorting */
    PP_SIG("take", aai, pn_take, "a: array, /, indices: array, axis: axis = None, *, stream: stream = None", NULL),
    PP_SIG("take_along_axis", aai, pn_take_along_axis, "a: array, /, indices: array, axis: axis = -1, *, stream: stream = None", NULL),
    PP_SIG("put_along_axis", aaai, pn_put_along_axis, "a: array, /, indices: array, values: weak, axis: axis = None, *, stream: stream = None", NULL),
    PP_SIG("sort", ai, pn_sort, SIG_SORT, NULL),
    PP_SIG("argsort", ai, pn_argsort, SIG_SORT, NULL),
    PP_SIG("partition", aii, pn_partition, SIG_KTH, NULL),
    PP_SIG("argpartition", aii, pn_argpartition, SIG_KTH, NULL),
    PP_SIG("topk", aii, pn_topk, "a: array, /, k: int, axis: axis = -1, *, stream: stream = None", NULL),
    PP_SIG("searchsorted", aaz, op_searchsorted, "a: array, v: weak, /, side: str = 'left', *, stream: stream = None", NULL),
    /* linear algebra and matmul variants */
    PP_SIG("addmm", aaadd, pn_addmm, "c: array, a: array, b: array, /, alpha: float = 1.0, beta: float = 1.0, *, stream: stream = None", NULL),
    PP_SIG("vecdot", aai, pn_vecdot, "a: array, b: array, /, axis: int = -1, *, stream: stream = None", NULL),
    PP_SIG("convolve", aaz, pn_convolve, "a: array, v: array, /, mode: str = 'full', *, stream: stream = None", NULL),
    PP_SIG("gather_mm", aaaab, pn_gather_mm, "a: array, b: array, /, lhs_indices: array? = None, rhs_indices: array? = None, *, sorted_indices: bool = False, stream: stream = None, :named", NULL),
    PP_SIG("block_masked_mm", aaiaaa, pn_block_masked_mm, "a: array, b: array, /, block_size: int = 64, mask_out: array? = None, mask_lhs: array? = None, mask_rhs: array? = None, *, stream: stream = None, :named", NULL),
    PP_SIG("segmented_mm", aaa, pn_segmented_mm, "a: array, b: array, /, segments: array, *, stream: stream = None, :named", NULL),
    /* fp8 e4m3 */
    PP_SIG("to_fp8", a, pn_to_fp8, "x: array, *, stream: stream = None", NULL),
    PP_SIG("from_fp8", at, pn_from_fp8, "x: array, dtype: dtype? = bfloat16, *, stream: stream = None", NULL),
    PP_SIG_END,
};

static pp_sig linalg_sigs[] = {
    PP_SIG("cholesky", ab, pn_linalg_cholesky, SIG_UPPER("a"), NULL),
    PP_SIG("tri_inv", ab, pn_linalg_tri_inv, SIG_UPPER("a"), NULL),
    PP_SIG("cholesky_inv", ab, pn_linalg_cholesky_inv, SIG_UPPER("a"), NULL),
    PP_SIG("inv", a, pn_linalg_inv, "a: array, *, stream: stream = None", NULL),
    PP_SIG("solve", aa, pn_linalg_solve, "a: array, b: array, *, stream: stream = None", NULL),
    PP_SIG("solve_triangular", aab, pn_linalg_solve_triangular, "a: array, b: array, *, upper: bool = False, stream: stream = None", NULL),
    PP_SIG("cross", aai, pn_linalg_cross, "a: array, b: array, axis: int = -1, *, stream: stream = None", NULL),
    PP_SIG("det", a, pn_linalg_det, "a: array, *, stream: stream = None", NULL),
    PP_SIG_END,
};

/* mx.fast's normalizations over the C layers (nn.c adds rope and attention to the module). */
static pp_sig fast_sigs[] = {
    PP_SIG("rms_norm", aad, pn_nn_rms_norm, "x: array, weight: array?, eps: float, *, stream: stream = None", NULL),
    PP_SIG("layer_norm", aaad, pn_nn_layer_norm, "x: array, weight: array?, bias: array?, eps: float, *, stream: stream = None", NULL),
    PP_SIG("cross_entropy", aa, pn_fast_cross_entropy, "logits: array, targets: array, *, stream: stream = None", NULL),
    PP_SIG_END,
};

#define SIG_RANDOM_TAIL "key: key = None, stream: stream = None" /* MLX's stream positional too */
static pp_sig random_sigs[] = {
    PP_SIG("split", ai, pn_random_split, "key: key, num: int = 2, stream: stream = None", NULL),
    PP_SIG("bits", sia, pn_random_bits, "shape: shape = (), width: int = 4, key: key = None, *, stream: stream = None", NULL),
    PP_SIG("normal", staaa, pn_random_normal_arrays, "shape: shape = (), dtype: dtype? = float32, loc: weak? = None, scale: weak? = None, " SIG_RANDOM_TAIL, NULL),
    PP_SIG("laplace", stdda, pn_random_laplace, "shape: shape = (), dtype: dtype? = float32, loc: float = 0, scale: float = 1, " SIG_RANDOM_TAIL, NULL),
    PP_SIG("gumbel", sta, pn_random_gumbel, "shape: shape = (), dtype: dtype? = float32, " SIG_RANDOM_TAIL, NULL),
    PP_SIG("bernoulli", asa, pn_random_bernoulli, "p: array = None, shape: shape? = None, " SIG_RANDOM_TAIL, NULL),
    PP_SIG("truncated_normal", aasta, pn_random_truncated_normal, "lower: array, upper: array, shape: shape? = None, dtype: dtype? = float32, " SIG_RANDOM_TAIL, NULL),
    PP_SIG("multivariate_normal", aasta, pn_random_multivariate_normal, "mean: array, cov: array, shape: shape = (), dtype: dtype? = float32, " SIG_RANDOM_TAIL, NULL),
    PP_SIG_END,
};

/* ───────────────────────────── creation ───────────────────────────── */

/* An arange bound: an int (any pp_is_int, and bool; *wide set when it does not fit int32, as
 * MLX then makes int64) or a float (a Python float or a numpy floating scalar). 0 or -1. */
static int number_arg(PyObject *o, double *v, int *is_float, int *wide)
{
    if (PyBool_Check(o) || pp_is_int(o)) {
        PyObject *i = PyNumber_Index(o);
        long long x = i ? PyLong_AsLongLong(i) : -1;
        Py_XDECREF(i);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (x < INT32_MIN || x > INT32_MAX) *wide = 1;
        *v = (double)x;
        return 0;
    }
    if (!PyFloat_Check(o) && (PPArray_Check(o) || !PyObject_HasAttrString(o, "__float__") ||
                              PyComplex_Check(o))) {
        PyErr_Format(PyExc_TypeError, "Expected an int or a float, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    *is_float = 1;
    *v = PyFloat_AsDouble(o);
    return *v == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* arange(stop), arange(start, stop[, step[, dtype]]), and MLX's second form arange(stop, step,
 * dtype) (a Dtype third: the two numbers are stop and step), or arange(stop, dtype). Python-int
 * bounds give int32, int64 when one does not fit int32 (as MLX); a float bound gives float32. */
FN(arange)
{
    KW("start", "stop", "step", "dtype", "stream");
    PyObject *a = NULL, *b = Py_None, *c = Py_None, *stream = Py_None;
    int dtype = -1;
    PARSE("O|OOO&$O", &a, &b, &c, pp_opt_dtype_conv, &dtype, &stream);
    PyObject *pos_dtype = PyObject_TypeCheck(b, &PPDtype_Type) ? b : PyObject_TypeCheck(c, &PPDtype_Type) ? c : NULL;
    if (pos_dtype) {
        if (dtype >= 0) {
            PyErr_SetString(PyExc_TypeError, "arange() got multiple values for argument 'dtype'.");
            return NULL;
        }
        dtype = (int)((PPDtype *)pos_dtype)->dtype;
        if (pos_dtype == c) c = b; /* arange(stop, step, dtype) */
        else c = Py_None;
        b = Py_None;
    }
    double start = 0, stop, step = 1;
    int isf = 0, wide = 0;
    if (b == Py_None) {
        if (number_arg(a, &stop, &isf, &wide)) return NULL;
    } else if (number_arg(a, &start, &isf, &wide) || number_arg(b, &stop, &isf, &wide)) {
        return NULL;
    }
    if (c != Py_None && number_arg(c, &step, &isf, &wide)) return NULL;
    pn_dtype t = dtype >= 0 ? (pn_dtype)dtype : isf ? PN_FLOAT32 : wide ? PN_INT64 : PN_INT32;
    ENTER(stream);
    return done(&h, pushed, pn_arange(start, stop, step, t));
}

/* linspace(start, stop, num=50, endpoint=True, dtype=float32, stream=None); a Dtype in
 * endpoint's place is the dtype (MLX's older linspace(start, stop, num, dtype, stream)). */
FN(linspace)
{
    KW("start", "stop", "num", "endpoint", "dtype", "stream");
    double start, stop;
    long long num = 50;
    PyObject *numo = NULL, *endo = Py_True, *stream = Py_None;
    int dtype = -1;
    PARSE("dd|OOO&O", &start, &stop, &numo, &endo, pp_opt_dtype_conv, &dtype, &stream);
    if (numo && numo != Py_None && pp_int(numo, &num, "num")) return NULL;
    if (PyObject_TypeCheck(endo, &PPDtype_Type)) {
        if (dtype >= 0) {
            PyErr_SetString(PyExc_TypeError, "linspace() got multiple values for argument 'dtype'.");
            return NULL;
        }
        dtype = (int)((PPDtype *)endo)->dtype;
        endo = Py_True;
    }
    int endpoint = PyObject_IsTrue(endo);
    if (endpoint < 0) return NULL;
    if (num < 0) {
        PyErr_Format(PyExc_ValueError, "[linspace] number of samples, %lld, must be non-negative.", num);
        return NULL;
    }
    if (dtype < 0) dtype = PN_FLOAT32;
    if (!endpoint && num > 0) stop = start + (stop - start) * (double)(num - 1) / (double)num;
    ENTER(stream);
    return done(&h, pushed, pn_linspace(start, stop, (int64_t)num, (pn_dtype)dtype));
}

static PyObject *matrix_op(int which, PyObject *args, PyObject *kw)
{
    KW("n", "m", "k", "dtype", "stream");
    Py_ssize_t n;
    PyObject *mo = Py_None, *stream = Py_None;
    int k = 0, dtype = which == 0 ? PN_FLOAT32 : PN_FLOAT32;
    PARSE("n|OiO&$O", &n, &mo, &k, pp_opt_dtype_conv, &dtype, &stream);
    Py_ssize_t mm = n;
    long long mv;
    if (mo != Py_None && pp_int(mo, &mv, "m")) return NULL;
    if (mo != Py_None) mm = (Py_ssize_t)mv;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, which == 0 ? pn_eye(n, mm, k, (pn_dtype)dtype) : pn_tri(n, mm, k, (pn_dtype)dtype));
}
FN(eye) { return matrix_op(0, args, kw); }
FN(tri) { return matrix_op(1, args, kw); }


FN(asarray)
{
    KW("a", "dtype", "copy");
    PyObject *ao, *copy = Py_None;
    int dtype = -1;
    PARSE("O|O&$O", &ao, pp_opt_dtype_conv, &dtype, &copy);
    if (PPArray_Check(ao) && (dtype < 0 || dtype == (int)pn_array_dtype(PPARR(ao))) &&
        !PyObject_IsTrue(copy)) {
        Py_INCREF(ao);
        return ao;
    }
    pn_array *a = pp_from_py(ao, dtype);
    return a ? pp_wrap(a) : NULL;
}

/* ───────────────────────────── elementwise with arguments ───────────────────────────── */

FN(where)
{
    KW("condition", "x", "y", "stream");
    PyObject *co, *xo, *yo, *stream = Py_None;
    PARSE("OOO|$O", &co, &xo, &yo, &stream);
    ENTER(stream);
    pn_array *c = A(&h, co), *x, *y;
    if (PPArray_Check(xo) || !PPArray_Check(yo)) {
        x = PPArray_Check(xo) ? W(&h, xo, NULL) : W(&h, xo, NULL);
        y = x ? W(&h, yo, x) : NULL;
    } else {
        y = W(&h, yo, NULL);
        x = W(&h, xo, y);
    }
    if (!c || !x || !y) return fail(&h, pushed);
    return done(&h, pushed, pn_where(c, x, y));
}

FN(nan_to_num)
{
    KW("", "nan", "posinf", "neginf", "stream");
    PyObject *ao, *po = Py_None, *no = Py_None, *stream = Py_None;
    double nan = 0, pinf, ninf;
    PARSE("O|dOO$O", &ao, &nan, &po, &no, &stream);
    if (po != Py_None && (pinf = PyFloat_AsDouble(po)) == -1.0 && PyErr_Occurred()) return NULL;
    if (no != Py_None && (ninf = PyFloat_AsDouble(no)) == -1.0 && PyErr_Occurred()) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_nan_to_num(a, nan, po == Py_None ? NULL : &pinf, no == Py_None ? NULL : &ninf));
}


FN(divmod)
{
    KW("a", "b", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    PARSE("OO|O", &ao, &bo, &stream);
    ENTER(stream);
    pn_array *a = PPArray_Check(ao) ? W(&h, ao, NULL) : A(&h, ao), *b = a ? W(&h, bo, a) : NULL;
    if (!b) return fail(&h, pushed);
    pn_array *out[2];
    int rc = pn_divmod(a, b, out);
    drop(&h);
    pp_stream_exit(pushed);
    return wrap_list(out, 2, rc);
}

/* ───────────────────────────── reductions with arguments ───────────────────────────── */

/* ───────────────────────────── shapes ───────────────────────────── */


/* Functions over *arrays with a stream keyword: collects the positional arrays. */
static int star_arrays(PyObject *args, pn_array **out, int max)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n > max) {
        PyErr_Format(PyExc_ValueError, "At most %d arrays are supported.", max);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(out[i] = pp_arr(PyTuple_GET_ITEM(args, i)))) {
            pp_release_all(out, (int)i);
            return -1;
        }
    return (int)n;
}

static PyObject *kw_get(PyObject *kw, const char *name, PyObject *dflt)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, name) : NULL;
    return v ? v : dflt;
}

FN(broadcast_arrays)
{
    pn_array *in[64], *out[64];
    int n = star_arrays(args, in, 64);
    if (n < 0) return NULL;
    int pushed = pp_stream_enter(kw_get(kw, "stream", Py_None));
    int rc = pushed < 0 ? -1 : pn_broadcast_arrays(in, n, out);
    pp_stream_exit(pushed);
    pp_release_all(in, n);
    if (pushed < 0) return NULL;
    PyObject *l = wrap_list(out, n, rc);
    if (!l) return NULL;
    PyObject *t = PyList_AsTuple(l);
    Py_DECREF(l);
    return t;
}

FN(broadcast_shapes)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    int64_t out[PP_MAXDIM], cur[PP_MAXDIM];
    int nout = 0;
    if (n == 0) return PyErr_Format(PyExc_ValueError, "[broadcast_shapes] Must provide at least one shape.");
    for (Py_ssize_t i = 0; i < n; i++) {
        int k = pp_shape(PyTuple_GET_ITEM(args, i), cur, PP_MAXDIM, "shape");
        if (k < 0) return NULL;
        int r = k > nout ? k : nout;
        int64_t res[PP_MAXDIM];
        for (int d = 0; d < r; d++) {
            int64_t x = d < r - nout ? 1 : out[d - (r - nout)], y = d < r - k ? 1 : cur[d - (r - k)];
            if (x != y && x != 1 && y != 1) {
                PyErr_SetString(PyExc_ValueError, "[broadcast_shapes] Shapes cannot be broadcast.");
                return NULL;
            }
            res[d] = x == 1 ? y : x;
        }
        memcpy(out, res, sizeof(int64_t) * (size_t)r);
        nout = r;
    }
    PyObject *t = PyTuple_New(nout);
    for (int d = 0; t && d < nout; d++) PyTuple_SET_ITEM(t, d, PyLong_FromLongLong(out[d]));
    return t;
}

static PyObject *join_op(int stack, PyObject *args, PyObject *kw)
{
    KW("arrays", "axis", "stream");
    PyObject *lo, *axo = NULL, *stream = Py_None;
    PARSE("O|O$O", &lo, &axo, &stream);
    int axis = 0;
    if (axo && pp_axis(axo, &axis)) return NULL;
    Py_ssize_t len = PySequence_Check(lo) ? PySequence_Size(lo) : -1;
    if (len < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "arrays must be a list of arrays.");
        return NULL;
    }
    pn_array **in = PyMem_Malloc((size_t)(len + 1) * sizeof *in);
    if (!in) return PyErr_NoMemory();
    holder h0 = {.n = 0};
    int n = len > INT32_MAX ? -1 : array_list(&h0, lo, in, (int)len);
    if (n < 0) {
        PyMem_Free(in);
        return NULL;
    }
    int pushed = pp_stream_enter(stream);
    pn_array *r = NULL;
    if (pushed >= 0) {
        if (axis == PN_ALL_AXES && !stack) { /* axis=None: flattened */
            for (int i = 0; i < n; i++) {
                int64_t f = pn_size(in[i]);
                pn_array *x = pn_reshape(in[i], &f, 1);
                pn_release(in[i]);
                in[i] = x;
            }
            axis = 0;
        }
        r = stack ? pn_stack(in, n, axis) : pn_concatenate(in, n, axis);
        pp_stream_exit(pushed);
    }
    pp_release_all(in, n);
    PyMem_Free(in);
    return pushed < 0 ? NULL : pp_wrap(r);
}
FN(concatenate) { return join_op(0, args, kw); }
FN(stack) { return join_op(1, args, kw); }

FN(split)
{
    KW("", "indices_or_sections", "axis", "stream");
    PyObject *ao, *io, *stream = Py_None;
    int axis = 0;
    PARSE("OO|i$O", &ao, &io, &axis, &stream);
    int64_t idx[1024];
    int sections = pp_is_int(io), n = 0;
    if (sections) {
        long long v;
        if (pp_int(io, &v, "indices_or_sections")) return NULL;
        if (v <= 0 || v > 1 << 20) {
            PyErr_SetString(PyExc_ValueError, "[split] Invalid number of sections.");
            return NULL;
        }
        n = (int)v;
    } else if ((n = pp_shape(io, idx, 1024, "indices")) < 0) {
        return NULL;
    }
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    int nout = sections ? n : n + 1;
    pn_array **out = PyMem_Calloc((size_t)nout, sizeof *out);
    if (!out) {
        fail(&h, pushed);
        return PyErr_NoMemory();
    }
    int rc = sections ? pn_split_sections(a, n, axis, out) : pn_split(a, idx, n, axis, out);
    drop(&h);
    pp_stream_exit(pushed);
    PyObject *l = wrap_list(out, nout, rc);
    PyMem_Free(out);
    return l;
}

FN(unstack)
{
    KW("", "axis", "stream");
    PyObject *ao, *stream = Py_None;
    int axis = 0;
    PARSE("O|$iO", &ao, &axis, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    if (pn_ndim(a) == 0) {
        fail(&h, pushed);
        PyErr_SetString(PyExc_ValueError, "[unstack] No axis to unstack.");
        return NULL;
    }
    int64_t n = pn_dim(a, axis);
    if (n < 0) return fail(&h, pushed), pp_raise();
    pn_array **out = PyMem_Calloc((size_t)n + 1, sizeof *out);
    int rc = out ? pn_split_sections(a, (int)n, axis, out) : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        pn_array *s = pn_squeeze(out[i], &axis, 1);
        pn_release(out[i]);
        out[i] = s;
        if (!s) {
            for (int64_t j = i + 1; j < n; j++) pn_release(out[j]);
            pp_release_all(out, (int)i);
            rc = -1;
        }
    }
    drop(&h);
    pp_stream_exit(pushed);
    PyObject *l = wrap_list(out, (int)n, rc);
    PyMem_Free(out);
    return l;
}

FN(pad)
{
    KW("", "pad_width", "mode", "constant_values", "stream");
    PyObject *ao, *po, *vo = NULL, *stream = Py_None;
    const char *mode = "constant";
    PARSE("OO|sO$O", &ao, &po, &mode, &vo, &stream);
    pn_pad_mode pm;
    if (!strcmp(mode, "constant")) pm = PN_PAD_CONSTANT;
    else if (!strcmp(mode, "edge")) pm = PN_PAD_EDGE;
    else {
        PyErr_Format(PyExc_ValueError, "[pad] Invalid padding mode (%s) passed.", mode);
        return NULL;
    }
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    int nd = pn_ndim(a);
    int64_t lo[PP_MAXDIM], hi[PP_MAXDIM];
    /* int, (int,), (lo, hi), or per-axis pairs, as numpy */
    int64_t flat[2 * PP_MAXDIM];
    int ok = 1;
    if (pp_is_int(po)) {
        long long v;
        if (pp_int(po, &v, "pad_width")) return fail(&h, pushed);
        for (int d = 0; d < nd; d++) lo[d] = hi[d] = v;
    } else {
        PyObject *f = PySequence_Fast(po, "pad_width must be an int or a sequence.");
        if (!f) return fail(&h, pushed);
        Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
        if (n > 0 && !pp_is_int(PySequence_Fast_GET_ITEM(f, 0))) {
            if (n != nd && n != 1) ok = 0;
            for (int d = 0; ok > 0 && d < nd; d++) {
                int k = pp_shape(PySequence_Fast_GET_ITEM(f, n == 1 ? 0 : d), flat, 2, "pad_width");
                if (k < 0) ok = -1;
                else if (k == 1) lo[d] = hi[d] = flat[0];
                else lo[d] = flat[0], hi[d] = flat[1];
            }
        } else {
            int k = pp_shape(f, flat, 2, "pad_width");
            if (k < 0) ok = -1;
            for (int d = 0; ok > 0 && d < nd; d++) lo[d] = flat[0], hi[d] = k == 2 ? flat[1] : flat[0];
            if (k == 0) ok = 0;
        }
        Py_DECREF(f);
    }
    if (ok <= 0) {
        fail(&h, pushed);
        if (ok == 0) PyErr_SetString(PyExc_ValueError, "[pad] Invalid number of padding sizes passed to pad.");
        return NULL;
    }
    pn_array *v = vo ? W(&h, vo, a) : NULL;
    if (vo && !v) return fail(&h, pushed);
    return done(&h, pushed, pn_pad(a, NULL, lo, hi, nd, v, pm));
}

FN(roll)
{
    KW("", "shift", "axis", "stream");
    PyObject *ao, *so, *axo = Py_None, *stream = Py_None;
    PARSE("OO|O$O", &ao, &so, &axo, &stream);
    int64_t shift[PP_MAXDIM];
    int axes[PP_MAXDIM];
    int ns = pp_shape(so, shift, PP_MAXDIM, "shift");
    if (ns < 0) return NULL;
    int na = pp_axes(axo, axes, PP_MAXDIM);
    if (na == -1) return NULL;
    /* numpy broadcasts one shift over several axes and one axis over several shifts */
    if (na >= 0 && ns == 1 && na > 1)
        for (int i = 1; i < na; i++) shift[i] = shift[0];
    else if (na == 1 && ns > 1)
        for (na = 1; na < ns; na++) axes[na] = axes[0];
    else if (na >= 0 && ns != na) {
        PyErr_SetString(PyExc_ValueError, "[roll] shift and axis must have the same length.");
        return NULL;
    }
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_roll(a, shift, na == -2 ? NULL : axes, na == -2 ? ns : na));
}

static PyObject *atleast(int k, PyObject *args, PyObject *kw)
{
    pn_array *in[64];
    int n = star_arrays(args, in, 64);
    if (n < 0) return NULL;
    pn_array *out[64];
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int nd = pn_ndim(in[i]);
        if (nd >= k) {
            out[i] = pn_retain(in[i]);
            continue;
        }
        int64_t shape[3] = {1, 1, 1};
        const int64_t *s = pn_shape(in[i]);
        if (k == 3 && nd == 1) shape[1] = s[0];
        else if (k == 3 && nd == 2) shape[0] = s[0], shape[1] = s[1];
        else for (int d = 0; d < nd; d++) shape[k - nd + d] = s[d];
        if (!(out[i] = pn_reshape(in[i], shape, k))) {
            pp_release_all(out, i);
            rc = -1;
            break;
        }
    }
    pp_release_all(in, n);
    if (rc) return pp_raise();
    if (n == 1) return pp_wrap(out[0]);
    return wrap_list(out, n, 0);
}
FN(atleast_1d) { return atleast(1, args, kw); }
FN(atleast_2d) { return atleast(2, args, kw); }
FN(atleast_3d) { return atleast(3, args, kw); }

FN(as_strided)
{
    KW("", "shape", "strides", "offset", "stream");
    PyObject *ao, *so = Py_None, *sto = Py_None, *stream = Py_None;
    long long offset = 0;
    PARSE("O|OOL$O", &ao, &so, &sto, &offset, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    int64_t shape[PP_MAXDIM], strides[PP_MAXDIM];
    int n = pn_ndim(a);
    memcpy(shape, pn_shape(a), sizeof(int64_t) * (size_t)n);
    if (so != Py_None && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) return fail(&h, pushed);
    if (sto != Py_None) {
        if (pp_shape(sto, strides, PP_MAXDIM, "strides") != n) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "[as_strided] shape and strides must have the same length.");
            return fail(&h, pushed);
        }
    } else {
        int64_t s = 1;
        for (int d = n - 1; d >= 0; d--) strides[d] = s, s *= shape[d];
    }
    return done(&h, pushed, pn_as_strided(a, shape, strides, n, offset));
}

FN(meshgrid)
{
    pn_array *in[64], *out[64];
    int n = star_arrays(args, in, 64);
    if (n < 0) return NULL;
    PyObject *sp = kw_get(kw, "sparse", Py_False), *ix = kw_get(kw, "indexing", NULL);
    const char *indexing = ix && ix != Py_None ? PyUnicode_AsUTF8(ix) : "xy";
    if (!indexing) {
        pp_release_all(in, n);
        return NULL;
    }
    int pushed = pp_stream_enter(kw_get(kw, "stream", Py_None));
    int rc = pushed < 0 ? -1 : pn_meshgrid(in, n, PyObject_IsTrue(sp), indexing, out);
    pp_stream_exit(pushed);
    pp_release_all(in, n);
    if (pushed < 0) return NULL;
    return wrap_list(out, n, rc);
}

/* ───────────────────────────── indexing and sorting ───────────────────────────── */



/* ───────────────────────────── linear algebra ───────────────────────────── */

FN(tensordot)
{
    KW("", "", "axes", "stream");
    PyObject *ao, *bo, *axo = NULL, *stream = Py_None;
    PARSE("OO|O$O", &ao, &bo, &axo, &stream);
    int n = 2, axa[PP_MAXDIM], axb[PP_MAXDIM], pairs = 0;
    if (axo && pp_is_int(axo)) {
        long long v;
        if (pp_int(axo, &v, "axes")) return NULL;
        if (v < INT_MIN || v > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "[tensordot] axes out of range.");
            return NULL;
        }
        n = (int)v;
    } else if (axo) {
        if (!PySequence_Check(axo) || PySequence_Size(axo) != 2) {
            PyErr_SetString(PyExc_ValueError, "[tensordot] axes must be an int or a pair of axis lists.");
            return NULL;
        }
        PyObject *x = PySequence_GetItem(axo, 0), *y = PySequence_GetItem(axo, 1);
        int na = x ? pp_axes(x, axa, PP_MAXDIM) : -1, nb = y ? pp_axes(y, axb, PP_MAXDIM) : -1;
        Py_XDECREF(x);
        Py_XDECREF(y);
        if (na < 0 || nb < 0) return NULL;
        if (na != nb) {
            PyErr_SetString(PyExc_ValueError, "[tensordot] Both axis lists must have the same length.");
            return NULL;
        }
        n = na;
        pairs = 1;
    }
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pairs ? pn_tensordot(a, b, axa, axb, n) : pn_tensordot_n(a, b, n));
}

FN(einsum)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
        PyErr_SetString(PyExc_TypeError, "einsum(subscripts, *operands): subscripts must be a str.");
        return NULL;
    }
    const char *sub = PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0));
    PyObject *rest = PyTuple_GetSlice(args, 1, n);
    if (!sub || !rest) return NULL;
    pn_array *in[64];
    int k = star_arrays(rest, in, 64);
    Py_DECREF(rest);
    if (k < 0) return NULL;
    int pushed = pp_stream_enter(kw_get(kw, "stream", Py_None));
    pn_array *r = pushed < 0 ? NULL : pn_einsum(sub, in, k);
    pp_stream_exit(pushed);
    pp_release_all(in, k);
    return pushed < 0 ? NULL : pp_wrap(r);
}

/* ───────────────────────────── compositions (src/ops/compose.c) ───────────────────────────── */

FN(minmax)
{
    KW("", "axis", "keepdims", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    int keepdims = 0;
    PARSE("O|Op$O", &ao, &axo, &keepdims, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    const int *ax = n == -2 ? NULL : axes;
    int na = n == -2 ? 0 : n;
    pn_array *out[2] = {pn_min(a, ax, na, keepdims), NULL};
    out[1] = out[0] ? pn_max(a, ax, na, keepdims) : NULL;
    int rc = out[1] ? 0 : (pn_release(out[0]), -1);
    drop(&h);
    pp_stream_exit(pushed);
    PyObject *l = wrap_list(out, 2, rc);
    if (!l) return NULL;
    PyObject *t = PyList_AsTuple(l);
    Py_DECREF(l);
    return t;
}

FN(hadamard_transform)
{
    KW("a", "scale", "stream");
    PyObject *ao, *so = Py_None, *stream = Py_None;
    PARSE("O|OO", &ao, &so, &stream);
    double scale = 0;
    if (so != Py_None && (scale = PyFloat_AsDouble(so)) == -1.0 && PyErr_Occurred()) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_hadamard_transform(a, so == Py_None ? NULL : &scale));
}

FN(slice)
{
    KW("a", "start_indices", "axes", "slice_size", "stream");
    PyObject *ao, *io, *axo, *so, *stream = Py_None;
    PARSE("OOOO|$O", &ao, &io, &axo, &so, &stream);
    int axes[PP_MAXDIM];
    int64_t size[PP_MAXDIM];
    int na = pp_axes(axo, axes, PP_MAXDIM), ns = na < 0 ? -1 : pp_shape(so, size, PP_MAXDIM, "slice_size");
    if (na == -2) PyErr_SetString(PyExc_TypeError, "[slice] axes must be a sequence of ints.");
    if (na < 0 || ns < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao), *i = a ? A(&h, io) : NULL;
    if (!i) return fail(&h, pushed);
    return done(&h, pushed, pn_slice_dynamic(a, i, axes, na, size, ns));
}

FN(slice_update)
{
    KW("a", "update", "start_indices", "axes", "stream");
    PyObject *ao, *uo, *io, *axo, *stream = Py_None;
    PARSE("OOOO|$O", &ao, &uo, &io, &axo, &stream);
    int axes[PP_MAXDIM];
    int na = pp_axes(axo, axes, PP_MAXDIM);
    if (na == -2) PyErr_SetString(PyExc_TypeError, "[slice_update] axes must be a sequence of ints.");
    if (na < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao), *u = a ? W(&h, uo, a) : NULL, *i = u ? A(&h, io) : NULL;
    if (!i) return fail(&h, pushed);
    return done(&h, pushed, pn_slice_update_dynamic(a, u, i, axes, na));
}

/* einsum_path(subscripts, *operands): (the path, as a list of tuples of positions, and a
 * report), the order pn_einsum contracts in (pn_einsum_path). */
FN(einsum_path)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
        PyErr_SetString(PyExc_TypeError, "einsum_path(subscripts, *operands): subscripts must be a str.");
        return NULL;
    }
    const char *subs = PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0));
    pn_array *in[64];
    PyObject *rest = subs ? PyTuple_GetSlice(args, 1, n) : NULL;
    int k = rest ? star_arrays(rest, in, 64) : -1;
    Py_XDECREF(rest);
    if (k < 0) return NULL;
    int flat[4 * 64];
    uint64_t info[4];
    int steps = pn_einsum_path(subs, in, k, flat, 4 * 64, info);
    pp_release_all(in, k);
    if (steps < 0) return pp_raise();
    PyObject *path = PyList_New(steps);
    for (int s = 0, w = 0; path && s < steps; s++) {
        int c = flat[w++];
        PyObject *t = PyTuple_New(c);
        for (int j = 0; t && j < c; j++) {
            PyObject *v = PyLong_FromLong(flat[w++]);
            if (!v) Py_CLEAR(t);
            else PyTuple_SET_ITEM(t, j, v);
        }
        if (!t) Py_CLEAR(path);
        else PyList_SET_ITEM(path, s, t);
    }
    if (!path) return NULL;
    return Py_BuildValue("(NN)", path,
                         PyUnicode_FromFormat("  Complete contraction:  %s\n"
                                              "         Naive scaling:  %llu\n"
                                              "     Optimized scaling:  %llu\n"
                                              "      Naive FLOP count:  %llu\n"
                                              "  Optimized FLOP count:  %llu\n",
                                              subs, (unsigned long long)info[2], (unsigned long long)info[3],
                                              (unsigned long long)info[0], (unsigned long long)info[1]));
}

/* bartlett, blackman, hamming, hanning: the window of M points. */
static PyObject *window(pn_window_kind kind, PyObject *args, PyObject *kw)
{
    KW("M", "stream");
    Py_ssize_t m;
    PyObject *stream = Py_None;
    PARSE("n|$O", &m, &stream);
    ENTER(stream);
    return done(&h, pushed, pn_window(kind, m));
}
FN(bartlett) { return window(PN_WINDOW_BARTLETT, args, kw); }
FN(blackman) { return window(PN_WINDOW_BLACKMAN, args, kw); }
FN(hamming) { return window(PN_WINDOW_HAMMING, args, kw); }
FN(hanning) { return window(PN_WINDOW_HANNING, args, kw); }

/* ───────────────────────────── convolutions ───────────────────────────── */

/* An int (used for all n axes) or a sequence of n ints into out. Returns 0 or -1. */
static int per_axis(PyObject *o, int n, int *out, const char *op, const char *what)
{
    int64_t tmp[PP_MAXDIM];
    int k = pp_shape(o, tmp, PP_MAXDIM, what);
    if (k < 0) return -1;
    int single = pp_is_int(o);
    if (!single && k != n) {
        PyErr_Format(PyExc_ValueError, "[%s] %s must be an int or a sequence of %d ints, got %d.", op,
                     what, n, k);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int64_t v = tmp[single ? 0 : i];
        if (v < INT32_MIN || v > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "[%s] %s out of range.", op, what);
            return -1;
        }
        out[i] = (int)v;
    }
    return 0;
}

/* conv1d/2d/3d and conv_transpose1d/2d/3d: nd spatial axes, one C call each. */
static PyObject *conv_nd(int nd, int transpose, PyObject *args, PyObject *kw)
{
    static char *kwc[] = {"input", "weight", "stride", "padding", "dilation", "groups", "stream", NULL};
    static char *kwt[] = {"input", "weight", "stride", "padding", "dilation", "output_padding", "groups",
                          "stream", NULL};
    static const char *names[2][3] = {{"conv1d", "conv2d", "conv3d"},
                                      {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}};
    const char *op = names[transpose][nd - 1];
    PyObject *io, *wo, *so = NULL, *po = NULL, *dlo = NULL, *opo = NULL, *stream = Py_None;
    int groups = 1;
    int ok = transpose ? PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOOi$O", kwt, &io, &wo, &so, &po, &dlo,
                                                     &opo, &groups, &stream)
                       : PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOi$O", kwc, &io, &wo, &so, &po, &dlo,
                                                     &groups, &stream);
    if (!ok) return NULL;
    int s[3] = {1, 1, 1}, p[3] = {0}, d[3] = {1, 1, 1}, o[3] = {0};
    if ((so && per_axis(so, nd, s, op, "stride")) || (po && per_axis(po, nd, p, op, "padding")) ||
        (dlo && per_axis(dlo, nd, d, op, "dilation")) || (opo && per_axis(opo, nd, o, op, "output_padding")))
        return NULL;
    ENTER(stream);
    pn_array *x = A(&h, io), *w = x ? A(&h, wo) : NULL, *r = NULL;
    if (!w) return fail(&h, pushed);
    switch (nd * 2 + transpose) {
    case 2: r = pn_conv1d(x, w, s[0], p[0], d[0], groups); break;
    case 3: r = pn_conv_transpose1d(x, w, s[0], p[0], d[0], o[0], groups); break;
    case 4: r = pn_conv2d(x, w, s, p, d, groups); break;
    case 5: r = pn_conv_transpose2d(x, w, s, p, d, o, groups); break;
    case 6: r = pn_conv3d(x, w, s, p, d, groups); break;
    default: r = pn_conv_transpose3d(x, w, s, p, d, o, groups); break;
    }
    return done(&h, pushed, r);
}
FN(conv1d) { return conv_nd(1, 0, args, kw); }
FN(conv2d) { return conv_nd(2, 0, args, kw); }
FN(conv3d) { return conv_nd(3, 0, args, kw); }
FN(conv_transpose1d) { return conv_nd(1, 1, args, kw); }
FN(conv_transpose2d) { return conv_nd(2, 1, args, kw); }
FN(conv_transpose3d) { return conv_nd(3, 1, args, kw); }

FN(conv_general)
{
    KW("input", "weight", "stride", "padding", "kernel_dilation", "input_dilation", "groups", "flip", "stream");
    PyObject *io, *wo, *so = NULL, *po = NULL, *kdo = NULL, *ido = NULL, *stream = Py_None;
    int groups = 1, flip = 0;
    PARSE("OO|OOOOip$O", &io, &wo, &so, &po, &kdo, &ido, &groups, &flip, &stream);
    ENTER(stream);
    pn_array *x = A(&h, io), *w = x ? A(&h, wo) : NULL;
    if (!w) return fail(&h, pushed);
    int nd = pn_ndim(x) - 2;
    if (nd < 1 || nd > 3) {
        fail(&h, pushed);
        PyErr_Format(PyExc_ValueError, "[conv_general] The input must have 3 to 5 dimensions, got %d.", nd + 2);
        return NULL;
    }
    int s[3] = {1, 1, 1}, lo[3] = {0}, hi[3] = {0}, kd[3] = {1, 1, 1}, id[3] = {1, 1, 1};
    int bad = (so && per_axis(so, nd, s, "conv_general", "stride")) ||
              (kdo && per_axis(kdo, nd, kd, "conv_general", "kernel_dilation")) ||
              (ido && per_axis(ido, nd, id, "conv_general", "input_dilation"));
    if (!bad && po) { /* int, sequence of nd ints, or a pair (low, high) of such */
        PyObject *f = pp_is_int(po) ? NULL : PySequence_Fast(po, "padding must be an int or a sequence.");
        int pair = f && PySequence_Fast_GET_SIZE(f) == 2 && !pp_is_int(PySequence_Fast_GET_ITEM(f, 0));
        if (!pp_is_int(po) && !f) bad = 1;
        else if (pair)
            bad = per_axis(PySequence_Fast_GET_ITEM(f, 0), nd, lo, "conv_general", "padding") ||
                  per_axis(PySequence_Fast_GET_ITEM(f, 1), nd, hi, "conv_general", "padding");
        else if (!(bad = per_axis(po, nd, lo, "conv_general", "padding")))
            memcpy(hi, lo, sizeof lo);
        Py_XDECREF(f);
    }
    if (bad) return fail(&h, pushed);
    return done(&h, pushed, pn_conv_general(x, w, s, lo, hi, kd, id, groups, flip));
}

/* ───────────────────────────── dtypes ───────────────────────────── */

FN(result_type)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "result_type() needs at least one array or dtype.");
        return NULL;
    }
    int t = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(args, i);
        pn_dtype d;
        if (PPArray_Check(o)) d = pn_array_dtype(PPARR(o));
        else if (!pp_dtype_conv(o, &d)) return NULL;
        t = t < 0 ? (int)d : (int)pn_promote_types((pn_dtype)t, d);
    }
    return pp_dtype_obj((pn_dtype)t);
}

/* The array API's kinds of dtypes, as categories. */
static const struct { const char *name; pn_dtype_category cat; } dtype_kinds[] = {
    {"bool", PN_CAT_BOOL}, {"signed integer", PN_CAT_SIGNEDINTEGER},
    {"unsigned integer", PN_CAT_UNSIGNEDINTEGER}, {"integral", PN_CAT_INTEGER},
    {"real floating", PN_CAT_FLOATING}, {"complex floating", PN_CAT_COMPLEXFLOATING},
    {"numeric", PN_CAT_NUMBER},
};

/* isdtype(dtype, kind): kind is a Dtype, a DtypeCategory, one of the array API's kind names,
 * or a tuple of these (any of them matches). 1, 0, or -1 with an exception. */
static int isdtype_of(pn_dtype t, PyObject *kind)
{
    if (PyTuple_Check(kind)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kind); i++) {
            int r = isdtype_of(t, PyTuple_GET_ITEM(kind, i));
            if (r) return r;
        }
        return 0;
    }
    if (PyObject_TypeCheck(kind, &PPDtype_Type)) return ((PPDtype *)kind)->dtype == t;
    if (PyObject_TypeCheck(kind, &PPCategory_Type)) return pn_issubdtype(t, ((PPCategory *)kind)->cat);
    const char *name = PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    for (size_t i = 0; name && i < sizeof dtype_kinds / sizeof *dtype_kinds; i++)
        if (!strcmp(name, dtype_kinds[i].name))
            return pn_issubdtype(t, dtype_kinds[i].cat);
    if (name) PyErr_Format(PyExc_ValueError, "[isdtype] Unknown kind '%s'.", name);
    else if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "[isdtype] kind must be a Dtype, a str or a tuple, got %s.",
                     Py_TYPE(kind)->tp_name);
    return -1;
}

FN(isdtype)
{
    KW("dtype", "kind");
    pn_dtype t;
    PyObject *kind;
    PARSE("O&O", pp_dtype_conv, &t, &kind);
    int r = isdtype_of(t, kind);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* ───────────────────────────── linalg ───────────────────────────── */

/* Singular-value matrix norms of x over axes (a0, a1) (negative allowed), as MLX: the
 * largest (kind 2), smallest (-2) or the sum (0: 'nuc') of the singular values. */
static pn_array *sv_norm(pn_array *x, int a0, int a1, int kind, bool keepdims)
{
    int nd = pn_ndim(x);
    int r = a0 < 0 ? a0 + nd : a0, c = a1 < 0 ? a1 + nd : a1;
    pn_array *m = r > c ? pn_moveaxis(pn_moveaxis(x, r, -1), c, -1)
                        : pn_moveaxis(pn_moveaxis(x, c, -1), r, -2);
    pn_array *s = NULL;
    if (!m || pn_linalg_svd(m, false, &s)) return NULL;
    int last = -1;
    s = kind == 2 ? pn_max(s, &last, 1, false) : kind == -2 ? pn_min(s, &last, 1, false)
                                                             : pn_sum(s, &last, 1, false);
    int both[2] = {r < c ? r : c, r < c ? c : r};
    return keepdims ? pn_expand_dims(s, both, 2) : s;
}

/* linalg.norm over the ops: vector p-norms, matrix 'fro', and 2, -2, 'nuc' through the SVD. */
FN(norm)
{
    KW("", "ord", "axis", "keepdims", "stream");
    PyObject *ao, *ordo = Py_None, *axo = Py_None, *stream = Py_None;
    int keepdims = 0;
    PARSE("O|OOp$O", &ao, &ordo, &axo, &keepdims, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    const int *ax = n == -2 ? NULL : axes;
    int na = n == -2 ? 0 : n;
    int vec = n == 1 || (n == -2 && pn_ndim(a) == 1);
    if (n == -2 && ordo != Py_None && pn_ndim(a) == 2) na = 0, vec = 0;
    pn_scope_push();
    pn_array *r = NULL;
    pn_array *x = pn_issubdtype(pn_array_dtype(a), PN_CAT_INEXACT) ? a : pn_astype(a, PN_FLOAT32);
    if (ordo == Py_None || (PyUnicode_Check(ordo) && !strcmp(PyUnicode_AsUTF8(ordo), "fro"))) {
        r = pn_sqrt(pn_sum(pn_square(pn_abs(x)), ax, na, keepdims));
    } else if (PyUnicode_Check(ordo) && !strcmp(PyUnicode_AsUTF8(ordo), "nuc") && !vec) {
        r = sv_norm(x, na == 2 ? axes[0] : -2, na == 2 ? axes[1] : -1, 0, keepdims);
    } else if (PyUnicode_Check(ordo)) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[linalg::norm] Unsupported norm order.");
    } else {
        double p = PyFloat_AsDouble(ordo);
        if (p == -1.0 && PyErr_Occurred()) {
            pn_scope_pop();
            return fail(&h, pushed);
        }
        pn_array *ab = pn_abs(x);
        if (vec) {
            if (isinf(p)) r = p > 0 ? pn_max(ab, ax, na, keepdims) : pn_min(ab, ax, na, keepdims);
            else if (p == 0) r = pn_sum(pn_astype(pn_not_equal(ab, pn_weak_int(0)), pn_array_dtype(x)), ax, na, keepdims);
            else if (p == 1) r = pn_sum(ab, ax, na, keepdims);
            else if (p == 2) r = pn_sqrt(pn_sum(pn_square(ab), ax, na, keepdims));
            else r = pn_power(pn_sum(pn_power(ab, pn_weak_float(p)), ax, na, keepdims), pn_weak_float(1.0 / p));
        } else {
            int a0 = na == 2 ? axes[0] : -2, a1 = na == 2 ? axes[1] : -1;
            if (p == 1 || p == -1 || isinf(p)) {
                int sum_ax = isinf(p) ? a1 : a0, red_ax = isinf(p) ? a0 : a1;
                pn_array *s = pn_sum(ab, &sum_ax, 1, true);
                int nd = pn_ndim(s);
                int red = red_ax < 0 ? red_ax + nd : red_ax;
                pn_array *m = (p > 0) ? pn_max(s, &red, 1, true) : pn_min(s, &red, 1, true);
                if (!keepdims && m) {
                    int both[2] = {sum_ax < 0 ? sum_ax + nd : sum_ax, red};
                    m = pn_squeeze(m, both, 2);
                }
                r = m;
            } else if (p == 2 || p == -2) {
                r = sv_norm(x, a0, a1, (int)p, keepdims);
            } else {
                pn_set_error(PN_ERR_INVALID_ARGUMENT, "[linalg::norm] Invalid ord %g for matrix norm.", p);
            }
        }
    }
    pn_retain(r);
    pn_scope_pop();
    return done(&h, pushed, r);
}

/* linalg functions of one matrix argument (named a, or L for cholesky_inv) and `upper`. */

FN(linalg_qr)
{
    KW("a", "stream");
    PyObject *ao, *stream = Py_None;
    PARSE("O|$O", &ao, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    pn_array *out[2];
    int rc = pn_linalg_qr(a, &out[0], &out[1]);
    drop(&h);
    pp_stream_exit(pushed);
    PyObject *l = wrap_list(out, 2, rc);
    if (!l) return NULL;
    PyObject *t = PyList_AsTuple(l);
    Py_DECREF(l);
    return t;
}

/* ───────────────────────────── fast ───────────────────────────── */
/* mx.fast's normalizations over the C layers (nn.c adds rope and attention to the module). */

/* An optional array argument (None: NULL). Returns 0, or -1 with an exception. */
/* ───────────────────────────── random ───────────────────────────── */

static int key_arg(PyObject *o, pn_array **key)
{
    *key = NULL;
    if (!o || o == Py_None) return 0;
    if (!PPArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "key must be an array, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    *key = PPARR(o);
    return 0;
}

static int opt_shape(PyObject *o, int64_t *shape, int *n)
{
    if (!o || o == Py_None) {
        *n = -1;
        return 0;
    }
    *n = pp_shape(o, shape, PP_MAXDIM, "shape");
    return *n < 0 ? -1 : 0;
}

/* "O&" converter of a seed: any int (pp_index), taken modulo 2^64 as MLX's uint64. */
static int seed_conv(PyObject *o, void *out)
{
    PyObject *i = pp_index(o, "seed");
    if (!i) return 0;
    *(unsigned long long *)out = PyLong_AsUnsignedLongLongMask(i);
    Py_DECREF(i);
    return !PyErr_Occurred();
}

FN(random_key)
{
    KW("seed");
    unsigned long long seed;
    PARSE("O&", seed_conv, &seed);
    return pp_wrap(pn_random_key(seed));
}

FN(random_seed)
{
    KW("seed");
    unsigned long long seed;
    PARSE("O&", seed_conv, &seed);
    pn_random_seed(seed);
    Py_RETURN_NONE;
}

FN(random_uniform)
{
    KW("low", "high", "shape", "dtype", "key", "stream");
    PyObject *lo = NULL, *hi = NULL, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("|OOOO&OO", &lo, &hi, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if ((so && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    pn_array *l = lo ? A(&h, lo) : hold(&h, pn_scalar(0, (pn_dtype)dtype));
    pn_array *u = hi ? A(&h, hi) : hold(&h, pn_scalar(1, (pn_dtype)dtype));
    if (!l || !u) return PyErr_Occurred() ? fail(&h, pushed) : (fail(&h, pushed), pp_raise());
    if (!so) { /* shape: the bounds' broadcast shape */
        int64_t tmp[PP_MAXDIM];
        n = 0;
        int nl = pn_ndim(l), nu = pn_ndim(u);
        n = nl > nu ? nl : nu;
        for (int d = 0; d < n; d++) {
            int64_t x = d < n - nl ? 1 : pn_shape(l)[d - (n - nl)], y = d < n - nu ? 1 : pn_shape(u)[d - (n - nu)];
            tmp[d] = x == 1 ? y : x;
        }
        memcpy(shape, tmp, sizeof(int64_t) * (size_t)n);
    }
    return done(&h, pushed, pn_random_uniform(l, u, shape, n, (pn_dtype)dtype, key));
}


FN(random_randint)
{
    KW("low", "high", "shape", "dtype", "key", "stream");
    PyObject *lo, *hi, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_INT32, n = -1;
    int64_t shape[PP_MAXDIM];
    PARSE("OO|OO&OO", &lo, &hi, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_INT32;
    ENTER(stream);
    pn_array *l = A(&h, lo), *u = l ? A(&h, hi) : NULL;
    if (!u) return fail(&h, pushed);
    if (n < 0) n = 0;
    return done(&h, pushed, pn_random_randint(l, u, shape, n, (pn_dtype)dtype, key));
}

FN(random_categorical)
{
    KW("logits", "axis", "shape", "num_samples", "key", "stream");
    PyObject *lo, *so = NULL, *no = Py_None, *ko = Py_None, *stream = Py_None;
    int axis = -1, n = -1, ns = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("O|iOOOO", &lo, &axis, &so, &no, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    if (no != Py_None) {
        if (n >= 0) {
            PyErr_SetString(PyExc_ValueError, "[categorical] At most one of shape or num_samples can be specified.");
            return NULL;
        }
        long long v;
        if (pp_int(no, &v, "num_samples")) return NULL;
        if (v < 0 || v > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "[categorical] num_samples out of range.");
            return NULL;
        }
        ns = (int)v;
    }
    ENTER(stream);
    pn_array *l = A(&h, lo);
    if (!l) return fail(&h, pushed);
    return done(&h, pushed, pn_random_categorical(l, axis, n < 0 ? NULL : shape, n < 0 ? 0 : n, ns, key));
}

FN(random_permutation)
{
    KW("x", "axis", "key", "stream");
    PyObject *xo, *ko = Py_None, *stream = Py_None;
    int axis = 0;
    PARSE("O|iOO", &xo, &axis, &ko, &stream);
    pn_array *key;
    if (key_arg(ko, &key)) return NULL;
    ENTER(stream);
    if (pp_is_int(xo)) {
        long long nn;
        if (pp_int(xo, &nn, "x")) return fail(&h, pushed);
        return done(&h, pushed, pn_random_permutation_n(nn, key));
    }
    pn_array *x = A(&h, xo);
    if (!x) return fail(&h, pushed);
    return done(&h, pushed, pn_random_permutation(x, axis, key));
}

/* ───────────────────────────── matmul variants, depends, export_to_dot ───────────────────────────── */

/* An optional array argument (None: NULL). Returns 0 or -1. */
/* An array or a sequence of arrays into out (owned); *single says which. Count or -1. */
static int one_or_many(PyObject *o, pn_array **out, int max, int *single)
{
    *single = PPArray_Check(o) || pp_is_scalar(o);
    if (*single) return (out[0] = pp_arr(o)) ? 1 : -1;
    if (!PyList_Check(o) && !PyTuple_Check(o)) {
        PyErr_Format(PyExc_TypeError, "[depends] Expected an array or a sequence of arrays, got %s.",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    return array_list(NULL, o, out, max);
}

FN(depends)
{
    KW("inputs", "dependencies", NULL);
    PyObject *io, *dobj;
    PARSE("OO:depends", &io, &dobj);
    pn_array *in[64], *deps[64], *out[64];
    int single, dsingle;
    int n = one_or_many(io, in, 64, &single);
    if (n < 0) return NULL;
    int nd = one_or_many(dobj, deps, 64, &dsingle);
    if (nd < 0) {
        pp_release_all(in, n);
        return NULL;
    }
    int rc = pn_depends(in, n, deps, nd, out);
    pp_release_all(in, n);
    pp_release_all(deps, nd);
    if (rc) return pp_raise();
    if (single) return pp_wrap(out[0]);
    return wrap_list(out, n, 0);
}

/* export_to_dot(file, *outputs, **names): file is a path or an object with write(str). */
static PyObject *py_export_to_dot(PyObject *m, PyObject *args, PyObject *kw)
{
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "export_to_dot() missing the file argument.");
        return NULL;
    }
    PyObject *file = PyTuple_GET_ITEM(args, 0), *rest = PyTuple_GetSlice(args, 1, nargs);
    if (!rest) return NULL;
    pn_array *outs[256], *named[256];
    const char *names[256];
    int n = star_arrays(rest, outs, 256), nn = 0;
    Py_DECREF(rest);
    if (n < 0) return NULL;
    PyObject *key, *val, *ret = NULL;
    Py_ssize_t pos = 0;
    while (kw && PyDict_Next(kw, &pos, &key, &val)) {
        if (nn == 256 || !PPArray_Check(val)) {
            PyErr_SetString(PyExc_TypeError, "[export_to_dot] Keyword arguments must name arrays.");
            goto out;
        }
        names[nn] = PyUnicode_AsUTF8(key);
        if (!names[nn]) goto out;
        named[nn++] = PPARR(val);
    }
    for (int i = 0; i < nn; i++) { /* named arrays are outputs too (MLX) */
        if (n == 256) {
            PyErr_SetString(PyExc_ValueError, "[export_to_dot] At most 256 arrays.");
            goto out;
        }
        outs[n++] = pn_retain(named[i]); /* outs holds references */
    }
    int is_path = PyUnicode_Check(file) || PyBytes_Check(file) || PyObject_HasAttrString(file, "__fspath__");
    if (!is_path && !PyObject_HasAttrString(file, "write")) {
        PyErr_Format(PyExc_TypeError, "[export_to_dot] file must be a path or have a write method, "
                     "got %s.", Py_TYPE(file)->tp_name);
        goto out;
    }
    if (is_path) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(file, &path)) goto out;
        FILE *f = fopen(PyBytes_AS_STRING(path), "w");
        if (!f) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
            Py_DECREF(path);
            goto out;
        }
        int rc = pn_export_to_dot(f, outs, n, named, names, nn);
        if (fclose(f) && rc == 0) rc = pn_set_error(PN_ERR_IO, "[export_to_dot] Writing the file failed.");
        Py_DECREF(path);
        if (rc) {
            pp_raise();
            goto out;
        }
    } else {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f) {
            PyErr_NoMemory();
            goto out;
        }
        int rc = pn_export_to_dot(f, outs, n, named, names, nn);
        fclose(f);
        if (rc) {
            free(buf);
            pp_raise();
            goto out;
        }
        PyObject *r = PyObject_CallMethod(file, "write", "s#", buf, (Py_ssize_t)len);
        free(buf);
        if (!r) goto out;
        Py_DECREF(r);
    }
    ret = Py_None;
    Py_INCREF(ret);
out:
    pp_release_all(outs, n);
    return ret;
}

/* ───────────────────────────── can_cast, unique ───────────────────────────── */

/* can_cast(from_, to): from_ an array or Dtype (else ValueError, as MLX), to a Dtype. */
static PyObject *py_can_cast(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"from_", "to", NULL};
    PyObject *from;
    int to;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO&:can_cast", kwlist, &from, pp_dtype_conv, &to)) return NULL;
    pn_dtype f;
    if (PPArray_Check(from)) f = pn_array_dtype(PPARR(from));
    else if (PyObject_TypeCheck(from, &PPDtype_Type)) f = ((PPDtype *)from)->dtype;
    else {
        PyErr_SetString(PyExc_ValueError, "[can_cast] `from_` must be an array or a dtype.");
        return NULL;
    }
    return PyBool_FromLong(pn_can_cast(f, (pn_dtype)to));
}

/* unique(a, /, size, return_index=False, return_inverse=False, return_counts=False,
 * fill_value=None, *, stream=None): the values alone, or a tuple of the values and the
 * requested index, inverse and counts in that order. */
static PyObject *py_unique(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"", "size", "return_index", "return_inverse", "return_counts",
                             "fill_value", "stream", NULL};
    PyObject *ao, *fo = Py_None, *stream = Py_None;
    PyObject *want[3] = {Py_False, Py_False, Py_False};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "On|O!O!O!O$O:unique", kwlist, &ao, &size, &PyBool_Type,
                                     &want[0], &PyBool_Type, &want[1], &PyBool_Type, &want[2], &fo, &stream))
        return NULL;
    if (fo != Py_None && !PPArray_Check(fo) && !pp_is_scalar(fo)) {
        PyErr_Format(PyExc_TypeError, "unique(): fill_value must be a scalar, an array or None, not %s.",
                     Py_TYPE(fo)->tp_name);
        return NULL;
    }
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *a = pp_arr(ao), *fill = NULL, *out[4] = {NULL, NULL, NULL, NULL};
    int rc = -1;
    if (a && (fo == Py_None || (fill = pp_arr_weak(fo, a)))) rc = pn_unique(a, size, fill, out);
    pn_release(a);
    pn_release(fill);
    pp_stream_exit(pushed);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    int n = 1;
    for (int k = 0; k < 3; k++) {
        if (want[k] == Py_True) out[n++] = out[k + 1];
        else pn_release(out[k + 1]);
    }
    if (n == 1) return pp_wrap(out[0]);
    PyObject *t = PyTuple_New(n);
    for (int k = 0; k < n; k++) {
        PyObject *x = t ? pp_wrap(out[k]) : (pn_release(out[k]), NULL);
        if (t && !x) {
            for (int j = k + 1; j < n; j++) pn_release(out[j]);
            Py_CLEAR(t);
        }
        if (t) PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

/* ───────────────────────────── tables ───────────────────────────── */

#define VK METH_VARARGS | METH_KEYWORDS
#define DEF(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, VK, doc},
#define DEF_AS(pyname, name) {pyname, (PyCFunction)(void (*)(void))py_##name, VK, NULL},
#define TABLE_DEF(name, fn) DEF(name, NULL)

static PyMethodDef op_methods[] = {
    DEF(arange, NULL) DEF(linspace, NULL) DEF(eye, NULL) DEF(tri, NULL) DEF(asarray, NULL)
    DEF(where, NULL) DEF(nan_to_num, NULL) DEF(divmod, NULL)
    DEF(broadcast_arrays, NULL) DEF(broadcast_shapes, NULL)
    DEF(concatenate, NULL) DEF(stack, NULL) DEF(split, NULL) DEF(unstack, NULL)
    DEF(pad, NULL) DEF(roll, NULL) DEF(atleast_1d, NULL) DEF(atleast_2d, NULL)
    DEF(atleast_3d, NULL) DEF(as_strided, NULL) DEF(meshgrid, NULL) DEF(tensordot, NULL)
    DEF(einsum, NULL) DEF(result_type, NULL) DEF(minmax, NULL) DEF(hadamard_transform, NULL) DEF(slice, NULL) DEF(slice_update, NULL)
    DEF(einsum_path, NULL) DEF(isdtype, NULL) DEF(conv1d, NULL) DEF(conv2d, NULL)
    DEF(conv3d, NULL) DEF(conv_transpose1d, NULL) DEF(conv_transpose2d, NULL)
    DEF(conv_transpose3d, NULL) DEF(conv_general, NULL) DEF(bartlett, NULL)
    DEF(blackman, NULL) DEF(hamming, NULL) DEF(hanning, NULL) DEF(depends, NULL)
    DEF(export_to_dot, "export_to_dot(file, *args, **kwargs): the graph as Graphviz DOT.")
    DEF(can_cast, "can_cast(from_, to): whether promoting from_ (an array or Dtype) with to gives to.")
    DEF(unique, "unique(a, /, size, return_index=False, return_inverse=False, return_counts=False, "
                "fill_value=None, *, stream=None): the sorted unique elements of the flattened a at a static size.")
    DEF_AS("concat", concatenate)
    {NULL},
};

static PyMethodDef random_methods[] = {
    DEF_AS("key", random_key) DEF_AS("seed", random_seed) DEF_AS("uniform", random_uniform)
    DEF_AS("randint", random_randint) DEF_AS("categorical", random_categorical)
    DEF_AS("permutation", random_permutation)
    {NULL},
};

static PyMethodDef linalg_methods[] = {
    DEF(norm, "norm(a, ord=None, axis=None, keepdims=False): vector and matrix norms.")
    DEF_AS("qr", linalg_qr)
    {NULL},
};

int pp_init_ops(PyObject *m)
{
    PyObject *random, *linalg, *fast;
    if (PyModule_AddFunctions(m, op_methods) || pp_sig_add(m, op_sigs)) return -1;
    if (!(random = pp_submodule(m, "random", random_methods, "Random number generation (MLX's keys and bits).")) ||
        !(linalg = pp_submodule(m, "linalg", linalg_methods, "Linear algebra.")) ||
        !pp_submodule(m, "fft", NULL, "Fast Fourier transforms.") ||
        !(fast = pp_submodule(m, "fast", NULL, "Fused operations: rms_norm, layer_norm, rope, scaled_dot_product_attention.")))
        return -1;
    if (pp_sig_add(random, random_sigs) || pp_sig_add(linalg, linalg_sigs) || pp_sig_add(fast, fast_sigs))
        return -1;
    PyObject *norm = PyObject_GetAttrString(linalg, "norm"); /* matrix_norm is linalg.norm, as in MLX */
    int rc = !norm || PyModule_AddObjectRef(m, "matrix_norm", norm);
    Py_XDECREF(norm);
    return rc ? -1 : pp_array_forward_methods(m);
}
