/* ops.c — ponte.core's op functions with mlx.core's names, arguments and keywords: tables of
 * unary, binary, reduction and scan ops (one wrapper each, generated), then the ops with their
 * own signatures (creation, shapes, indexing, sorting, linear algebra, the compositions of
 * src/ops/compose.c, convolutions), the random submodule, linalg and file I/O. Each function is one C call between argument conversion and wrapping. */
#include "pyponte.h"

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

int pp_shape(PyObject *o, int64_t *shape, int max, const char *what)
{
    if (PyLong_Check(o) || (PyIndex_Check(o) && !PySequence_Check(o))) {
        long long v = PyLong_AsLongLong(o);
        if (v == -1 && PyErr_Occurred()) return -1;
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
        if (!PyIndex_Check(x) || PyBool_Check(x)) {
            Py_DECREF(f);
            PyErr_Format(PyExc_TypeError, "%s must contain ints, got %s.", what, Py_TYPE(x)->tp_name);
            return -1;
        }
        long long v = PyLong_AsLongLong(x);
        if (v == -1 && PyErr_Occurred()) {
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
    if (!PyIndex_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "axis must be an int or None, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
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

/* ───────────────────────────── generated tables ───────────────────────────── */

static pn_array *op_positive(pn_array *a) { return pn_copy(a); }
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

#define UNARY_OPS(X)                                                                               \
    X(abs, pn_abs) X(negative, pn_negative) X(sign, pn_sign) X(sqrt, pn_sqrt) X(rsqrt, pn_rsqrt)   \
    X(square, pn_square) X(reciprocal, pn_reciprocal) X(exp, pn_exp) X(expm1, pn_expm1)          \
    X(log, pn_log) X(log1p, pn_log1p) X(log2, pn_log2) X(log10, pn_log10) X(sin, pn_sin)          \
    X(cos, pn_cos) X(tan, pn_tan) X(arcsin, pn_arcsin) X(arccos, pn_arccos)                       \
    X(arctan, pn_arctan) X(sinh, pn_sinh) X(cosh, pn_cosh) X(tanh, pn_tanh)                       \
    X(arcsinh, pn_arcsinh) X(arccosh, pn_arccosh) X(arctanh, pn_arctanh) X(floor, pn_floor)       \
    X(ceil, pn_ceil) X(sigmoid, pn_sigmoid) X(erf, pn_erf) X(erfinv, pn_erfinv)                   \
    X(logical_not, pn_logical_not) X(bitwise_invert, pn_bitwise_invert) X(isnan, pn_isnan)        \
    X(isinf, pn_isinf) X(isfinite, pn_isfinite) X(isposinf, pn_isposinf)                          \
    X(isneginf, pn_isneginf) X(conjugate, pn_conjugate) X(real, pn_real) X(imag, pn_imag)         \
    X(degrees, pn_degrees) X(radians, pn_radians) X(stop_gradient, pn_stop_gradient)              \
    X(positive, op_positive) X(matrix_transpose, op_matrix_transpose) X(trunc, op_trunc)

static PyObject *unary(pn_array *(*f)(pn_array *), PyObject *args, PyObject *kw)
{
    KW("", "stream");
    PyObject *ao, *stream = Py_None;
    PARSE("O|$O", &ao, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a));
}
#define DEF_UNARY(name, fn) FN(name) { return unary(fn, args, kw); }
UNARY_OPS(DEF_UNARY)

static pn_array *op_logical_xor(pn_array *a, pn_array *b)
{
    pn_scope_push();
    pn_array *r = pn_not_equal(pn_astype(a, PN_BOOL), pn_astype(b, PN_BOOL));
    pn_retain(r);
    pn_scope_pop();
    return r;
}

#define BINARY_OPS(X)                                                                              \
    X(add, pn_add) X(subtract, pn_subtract) X(multiply, pn_multiply) X(divide, pn_divide)         \
    X(floor_divide, pn_floor_divide) X(remainder, pn_remainder) X(power, pn_power)                \
    X(maximum, pn_maximum) X(minimum, pn_minimum) X(arctan2, pn_arctan2)                          \
    X(logaddexp, pn_logaddexp) X(equal, pn_equal) X(not_equal, pn_not_equal) X(less, pn_less)     \
    X(less_equal, pn_less_equal) X(greater, pn_greater) X(greater_equal, pn_greater_equal)        \
    X(logical_and, pn_logical_and) X(logical_or, pn_logical_or) X(logical_xor, op_logical_xor)    \
    X(bitwise_and, pn_bitwise_and) X(bitwise_or, pn_bitwise_or) X(bitwise_xor, pn_bitwise_xor)    \
    X(left_shift, pn_left_shift) X(right_shift, pn_right_shift) X(matmul, pn_matmul)              \
    X(outer, pn_outer) X(inner, pn_inner) X(kron, pn_kron)

static PyObject *binary(pn_array *(*f)(pn_array *, pn_array *), PyObject *args, PyObject *kw)
{
    KW("a", "b", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    PARSE("OO|$O", &ao, &bo, &stream);
    ENTER(stream);
    pn_array *a, *b;
    if (PPArray_Check(ao) || !PPArray_Check(bo)) {
        a = PPArray_Check(ao) ? W(&h, ao, NULL) : A(&h, ao);
        b = a ? W(&h, bo, a) : NULL;
    } else {
        b = W(&h, bo, NULL);
        a = W(&h, ao, b);
    }
    if (!a || !b) return fail(&h, pushed);
    return done(&h, pushed, f(a, b));
}
#define DEF_BINARY(name, fn) FN(name) { return binary(fn, args, kw); }
BINARY_OPS(DEF_BINARY)

#define REDUCE_OPS(X)                                                                              \
    X(sum, pn_sum) X(prod, pn_prod) X(max, pn_max) X(min, pn_min) X(mean, pn_mean)                \
    X(all, pn_all) X(any, pn_any) X(logsumexp, pn_logsumexp) X(median, pn_median)        \
    X(count_nonzero, pn_count_nonzero)

static PyObject *reduce_op(pn_array *(*f)(pn_array *, const int *, int, bool), PyObject *args,
                           PyObject *kw)
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
    return done(&h, pushed, f(a, n == -2 ? NULL : axes, n == -2 ? 0 : n, keepdims));
}
#define DEF_REDUCE(name, fn) FN(name) { return reduce_op(fn, args, kw); }
REDUCE_OPS(DEF_REDUCE)

static PyObject *moment(pn_array *(*f)(pn_array *, const int *, int, bool, int), PyObject *args,
                        PyObject *kw)
{
    KW("", "axis", "keepdims", "ddof", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    int keepdims = 0, ddof = 0;
    PARSE("O|Opi$O", &ao, &axo, &keepdims, &ddof, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a, n == -2 ? NULL : axes, n == -2 ? 0 : n, keepdims, ddof));
}
FN(var) { return moment(pn_var, args, kw); }
FN(std) { return moment(pn_std, args, kw); }

static PyObject *arg_reduce(pn_array *(*f)(pn_array *, int, bool), PyObject *args, PyObject *kw)
{
    KW("", "axis", "keepdims", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    int keepdims = 0, axis;
    PARSE("O|Op$O", &ao, &axo, &keepdims, &stream);
    if (pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a, axis, keepdims));
}
FN(argmax) { return arg_reduce(pn_argmax, args, kw); }
FN(argmin) { return arg_reduce(pn_argmin, args, kw); }

#define SCAN_OPS(X)                                                                                \
    X(cumsum, pn_cumsum) X(cumprod, pn_cumprod) X(cummax, pn_cummax) X(cummin, pn_cummin)         \
    X(logcumsumexp, pn_logcumsumexp)

static PyObject *scan_op(pn_array *(*f)(pn_array *, int, bool, bool), PyObject *args, PyObject *kw)
{
    KW("", "axis", "reverse", "inclusive", "dtype", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    int reverse = 0, inclusive = 1, dtype = -1, axis;
    PARSE("O|O$ppO&O", &ao, &axo, &reverse, &inclusive, pp_opt_dtype_conv, &dtype, &stream);
    if (pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (a && dtype >= 0) a = hold(&h, pn_astype(a, (pn_dtype)dtype));
    if (!a) return PyErr_Occurred() ? fail(&h, pushed) : (drop(&h), pp_stream_exit(pushed), pp_raise());
    return done(&h, pushed, f(a, axis, reverse, inclusive));
}
#define DEF_SCAN(name, fn) FN(name) { return scan_op(fn, args, kw); }
SCAN_OPS(DEF_SCAN)

/* ───────────────────────────── creation ───────────────────────────── */

static PyObject *fill_op(double v, PyObject *args, PyObject *kw)
{
    KW("shape", "dtype", "stream");
    PyObject *so, *stream = Py_None;
    int dtype = PN_FLOAT32;
    PARSE("O|O&$O", &so, pp_opt_dtype_conv, &dtype, &stream);
    int64_t shape[PP_MAXDIM];
    int n = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (n < 0) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, v == 0 ? pn_zeros(shape, n, (pn_dtype)dtype) : pn_ones(shape, n, (pn_dtype)dtype));
}
FN(zeros) { return fill_op(0, args, kw); }
FN(ones) { return fill_op(1, args, kw); }

static PyObject *fill_like(double v, PyObject *args, PyObject *kw)
{
    KW("", "dtype", "stream");
    PyObject *ao, *stream = Py_None;
    int dtype = -1;
    PARSE("O|O&$O", &ao, pp_opt_dtype_conv, &dtype, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    pn_dtype t = dtype >= 0 ? (pn_dtype)dtype : pn_array_dtype(a);
    return done(&h, pushed, v == 0 ? pn_zeros(pn_shape(a), pn_ndim(a), t) : pn_ones(pn_shape(a), pn_ndim(a), t));
}
FN(zeros_like) { return fill_like(0, args, kw); }
FN(ones_like) { return fill_like(1, args, kw); }

FN(full)
{
    KW("shape", "vals", "dtype", "stream");
    PyObject *so, *vo, *stream = Py_None;
    int dtype = -1;
    PARSE("OO|O&$O", &so, &vo, pp_opt_dtype_conv, &dtype, &stream);
    int64_t shape[PP_MAXDIM];
    int n = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (n < 0) return NULL;
    ENTER(stream);
    pn_array *v = A(&h, vo);
    if (!v) return fail(&h, pushed);
    return done(&h, pushed, pn_full(shape, n, v, dtype >= 0 ? (pn_dtype)dtype : pn_array_dtype(v)));
}

FN(full_like)
{
    KW("", "vals", "dtype", "stream");
    PyObject *ao, *vo, *stream = Py_None;
    int dtype = -1;
    PARSE("OO|O&$O", &ao, &vo, pp_opt_dtype_conv, &dtype, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *v = a ? W(&h, vo, a) : NULL;
    if (!v) return fail(&h, pushed);
    return done(&h, pushed, pn_full(pn_shape(a), pn_ndim(a), v, dtype >= 0 ? (pn_dtype)dtype : pn_array_dtype(a)));
}

static int number_arg(PyObject *o, double *v, int *is_float)
{
    if (PyFloat_Check(o)) *is_float = 1;
    else if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "Expected an int or a float, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    *v = PyFloat_AsDouble(o);
    return *v == -1.0 && PyErr_Occurred() ? -1 : 0;
}

FN(arange)
{
    KW("start", "stop", "step", "dtype", "stream");
    PyObject *a = NULL, *b = Py_None, *c = Py_None, *stream = Py_None;
    int dtype = -1;
    PARSE("O|OOO&$O", &a, &b, &c, pp_opt_dtype_conv, &dtype, &stream);
    double start = 0, stop, step = 1;
    int isf = 0;
    if (b == Py_None) {
        if (number_arg(a, &stop, &isf)) return NULL;
    } else if (number_arg(a, &start, &isf) || number_arg(b, &stop, &isf)) {
        return NULL;
    }
    if (c != Py_None && number_arg(c, &step, &isf)) return NULL;
    pn_dtype t = dtype >= 0 ? (pn_dtype)dtype : isf ? PN_FLOAT32 : PN_INT32;
    ENTER(stream);
    return done(&h, pushed, pn_arange(start, stop, step, t));
}

FN(linspace)
{
    KW("start", "stop", "num", "endpoint", "dtype", "stream");
    double start, stop;
    Py_ssize_t num = 50;
    int endpoint = 1, dtype = PN_FLOAT32;
    PyObject *stream = Py_None;
    PARSE("dd|npO&O", &start, &stop, &num, &endpoint, pp_opt_dtype_conv, &dtype, &stream);
    if (num < 0) {
        PyErr_Format(PyExc_ValueError, "[linspace] number of samples, %zd, must be non-negative.", num);
        return NULL;
    }
    if (dtype < 0) dtype = PN_FLOAT32;
    if (!endpoint && num > 0) stop = start + (stop - start) * (double)(num - 1) / (double)num;
    ENTER(stream);
    return done(&h, pushed, pn_linspace(start, stop, num, (pn_dtype)dtype));
}

static PyObject *matrix_op(int which, PyObject *args, PyObject *kw)
{
    KW("n", "m", "k", "dtype", "stream");
    Py_ssize_t n;
    PyObject *mo = Py_None, *stream = Py_None;
    int k = 0, dtype = which == 0 ? PN_FLOAT32 : PN_FLOAT32;
    PARSE("n|OiO&$O", &n, &mo, &k, pp_opt_dtype_conv, &dtype, &stream);
    Py_ssize_t mm = n;
    if (mo != Py_None && (mm = PyLong_AsSsize_t(mo)) == -1 && PyErr_Occurred()) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, which == 0 ? pn_eye(n, mm, k, (pn_dtype)dtype) : pn_tri(n, mm, k, (pn_dtype)dtype));
}
FN(eye) { return matrix_op(0, args, kw); }
FN(tri) { return matrix_op(1, args, kw); }

FN(identity)
{
    KW("n", "dtype", "stream");
    Py_ssize_t n;
    int dtype = PN_FLOAT32;
    PyObject *stream = Py_None;
    PARSE("n|O&$O", &n, pp_opt_dtype_conv, &dtype, &stream);
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, pn_identity(n, (pn_dtype)dtype));
}

static PyObject *tri_part(int upper, PyObject *args, PyObject *kw)
{
    KW("x", "k", "stream");
    PyObject *ao, *stream = Py_None;
    int k = 0;
    PARSE("O|i$O", &ao, &k, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, upper ? pn_triu(a, k) : pn_tril(a, k));
}
FN(tril) { return tri_part(0, args, kw); }
FN(triu) { return tri_part(1, args, kw); }

FN(astype)
{
    KW("", "dtype", "stream");
    PyObject *ao, *stream = Py_None;
    pn_dtype t;
    PARSE("OO&|$O", &ao, pp_dtype_conv, &t, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_astype(a, t));
}

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

FN(round)
{
    KW("", "decimals", "stream");
    PyObject *ao, *stream = Py_None;
    int dec = 0;
    PARSE("O|i$O", &ao, &dec, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_round(a, dec));
}

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

FN(clip)
{
    KW("", "a_min", "a_max", "stream");
    PyObject *ao, *lo, *hi, *stream = Py_None;
    PARSE("OOO|$O", &ao, &lo, &hi, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    pn_array *l = lo == Py_None ? NULL : W(&h, lo, a), *u = hi == Py_None ? NULL : W(&h, hi, a);
    if ((lo != Py_None && !l) || (hi != Py_None && !u)) return fail(&h, pushed);
    if (!l && !u) {
        drop(&h);
        pp_stream_exit(pushed);
        PyErr_SetString(PyExc_ValueError, "At most one of a_min and a_max may be None");
        return NULL;
    }
    return done(&h, pushed, pn_clip(a, l, u));
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

static PyObject *close_op(int all, PyObject *args, PyObject *kw)
{
    KW("", "", "rtol", "atol", "equal_nan", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    double rtol = 1e-5, atol = 1e-8;
    int equal_nan = 0;
    PARSE("OO|dd$pO", &ao, &bo, &rtol, &atol, &equal_nan, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? W(&h, bo, a) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, all ? pn_allclose(a, b, rtol, atol, equal_nan) : pn_isclose(a, b, rtol, atol, equal_nan));
}
FN(isclose) { return close_op(0, args, kw); }
FN(allclose) { return close_op(1, args, kw); }

FN(array_equal)
{
    KW("a", "b", "equal_nan", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    int equal_nan = 0;
    PARSE("OO|p$O", &ao, &bo, &equal_nan, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_array_equal(a, b, equal_nan));
}

FN(divmod)
{
    KW("a", "b", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    PARSE("OO|$O", &ao, &bo, &stream);
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

FN(softmax)
{
    KW("", "axis", "precise", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    int precise = 0;
    PARSE("O|O$pO", &ao, &axo, &precise, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_softmax(a, n == -2 ? NULL : axes, n == -2 ? 0 : n, precise));
}

/* ───────────────────────────── shapes ───────────────────────────── */

FN(reshape)
{
    KW("", "shape", "stream");
    PyObject *ao, *so, *stream = Py_None;
    PARSE("OO|$O", &ao, &so, &stream);
    int64_t shape[PP_MAXDIM];
    int n = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (n < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_reshape(a, shape, n));
}

FN(flatten)
{
    KW("", "start_axis", "end_axis", "stream");
    PyObject *ao, *stream = Py_None;
    int s = 0, e = -1;
    PARSE("O|ii$O", &ao, &s, &e, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_flatten(a, s, e));
}

FN(unflatten)
{
    KW("", "axis", "shape", "stream");
    PyObject *ao, *so, *stream = Py_None;
    int axis;
    PARSE("OiO|$O", &ao, &axis, &so, &stream);
    int64_t shape[PP_MAXDIM];
    int n = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (n < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_unflatten(a, axis, shape, n));
}

static PyObject *axes_op(int which, PyObject *args, PyObject *kw)
{
    KW("", "axis", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    PARSE(which == 0 ? "O|O$O" : "OO|$O", &ao, &axo, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    if (which == 0) return done(&h, pushed, pn_squeeze(a, n == -2 ? NULL : axes, n == -2 ? 0 : n));
    if (n == -2) {
        drop(&h);
        pp_stream_exit(pushed);
        PyErr_SetString(PyExc_TypeError, "expand_dims() needs an axis.");
        return NULL;
    }
    return done(&h, pushed, pn_expand_dims(a, axes, n));
}
FN(squeeze) { return axes_op(0, args, kw); }
FN(expand_dims) { return axes_op(1, args, kw); }

FN(transpose)
{
    KW("", "axes", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    PARSE("O|O$O", &ao, &axo, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_transpose(a, n == -2 ? NULL : axes, n == -2 ? 0 : n));
}

FN(swapaxes)
{
    KW("", "axis1", "axis2", "stream");
    PyObject *ao, *stream = Py_None;
    int a1, a2;
    PARSE("Oii|$O", &ao, &a1, &a2, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_swapaxes(a, a1, a2));
}

FN(moveaxis)
{
    KW("", "source", "destination", "stream");
    PyObject *ao, *stream = Py_None;
    int s, d;
    PARSE("Oii|$O", &ao, &s, &d, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_moveaxis(a, s, d));
}

FN(broadcast_to)
{
    KW("", "shape", "stream");
    PyObject *ao, *so, *stream = Py_None;
    PARSE("OO|$O", &ao, &so, &stream);
    int64_t shape[PP_MAXDIM];
    int n = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (n < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_broadcast_to(a, shape, n));
}

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
    int sections = PyLong_Check(io), n = 0;
    if (sections) {
        long v = PyLong_AsLong(io);
        if (v == -1 && PyErr_Occurred()) return NULL;
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

FN(tile)
{
    KW("", "reps", "stream");
    PyObject *ao, *ro, *stream = Py_None;
    PARSE("OO|$O", &ao, &ro, &stream);
    int64_t reps[PP_MAXDIM];
    int n = pp_shape(ro, reps, PP_MAXDIM, "reps");
    if (n < 0) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_tile(a, reps, n));
}

FN(repeat)
{
    KW("array", "repeats", "axis", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    long long reps;
    int axis;
    PARSE("OL|O$O", &ao, &reps, &axo, &stream);
    if (pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_repeat(a, reps, axis));
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
    if (PyLong_Check(po)) {
        long long v = PyLong_AsLongLong(po);
        if (v == -1 && PyErr_Occurred()) return fail(&h, pushed);
        for (int d = 0; d < nd; d++) lo[d] = hi[d] = v;
    } else {
        PyObject *f = PySequence_Fast(po, "pad_width must be an int or a sequence.");
        if (!f) return fail(&h, pushed);
        Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
        if (n > 0 && !PyLong_Check(PySequence_Fast_GET_ITEM(f, 0))) {
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
    if (na >= 0 && ns == 1 && na > 1)
        for (int i = 1; i < na; i++) shift[i] = shift[0];
    else if (na >= 0 && ns != na) {
        PyErr_SetString(PyExc_ValueError, "[roll] shift and axis must have the same length.");
        return NULL;
    }
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_roll(a, shift, na == -2 ? NULL : axes, na == -2 ? 1 : na));
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

FN(diag)
{
    KW("", "k", "stream");
    PyObject *ao, *stream = Py_None;
    int k = 0;
    PARSE("O|i$O", &ao, &k, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_diag(a, k));
}

FN(diagonal)
{
    KW("a", "offset", "axis1", "axis2", "stream");
    PyObject *ao, *stream = Py_None;
    int off = 0, a1 = 0, a2 = 1;
    PARSE("O|iiiO", &ao, &off, &a1, &a2, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_diagonal(a, off, a1, a2));
}

FN(trace)
{
    KW("", "offset", "axis1", "axis2", "dtype", "stream");
    PyObject *ao, *stream = Py_None;
    int off = 0, a1 = 0, a2 = 1, dtype = -1;
    PARSE("O|iiiO&$O", &ao, &off, &a1, &a2, pp_opt_dtype_conv, &dtype, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (a && dtype >= 0) a = hold(&h, pn_astype(a, (pn_dtype)dtype));
    if (!a) return PyErr_Occurred() ? fail(&h, pushed) : (fail(&h, pushed), pp_raise());
    return done(&h, pushed, pn_trace(a, off, a1, a2));
}

/* ───────────────────────────── indexing and sorting ───────────────────────────── */

FN(take)
{
    KW("", "indices", "axis", "stream");
    PyObject *ao, *io, *axo = Py_None, *stream = Py_None;
    int axis;
    PARSE("OO|O$O", &ao, &io, &axo, &stream);
    if (pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao), *i = a ? A(&h, io) : NULL;
    if (!i) return fail(&h, pushed);
    return done(&h, pushed, pn_take(a, i, axis));
}

FN(take_along_axis)
{
    KW("", "indices", "axis", "stream");
    PyObject *ao, *io, *axo = NULL, *stream = Py_None;
    int axis = -1;
    PARSE("OO|O$O", &ao, &io, &axo, &stream);
    if (axo && pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao), *i = a ? A(&h, io) : NULL;
    if (!i) return fail(&h, pushed);
    return done(&h, pushed, pn_take_along_axis(a, i, axis));
}

FN(put_along_axis)
{
    KW("", "indices", "values", "axis", "stream");
    PyObject *ao, *io, *vo, *axo = Py_None, *stream = Py_None;
    int axis;
    PARSE("OOO|O$O", &ao, &io, &vo, &axo, &stream);
    if (pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao), *i = a ? A(&h, io) : NULL, *v = i ? W(&h, vo, a) : NULL;
    if (!v) return fail(&h, pushed);
    return done(&h, pushed, pn_put_along_axis(a, i, v, axis));
}

static PyObject *sort_op(pn_array *(*f)(pn_array *, int), PyObject *args, PyObject *kw)
{
    KW("", "axis", "stream");
    PyObject *ao, *axo = NULL, *stream = Py_None;
    int axis = -1;
    PARSE("O|O$O", &ao, &axo, &stream);
    if (axo && pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a, axis));
}
FN(sort) { return sort_op(pn_sort, args, kw); }
FN(argsort) { return sort_op(pn_argsort, args, kw); }

static PyObject *kth_op(pn_array *(*f)(pn_array *, int, int), PyObject *args, PyObject *kw,
                        const char *kname)
{
    static char *kwp[] = {"", "kth", "axis", "stream", NULL}, *kwt[] = {"", "k", "axis", "stream", NULL};
    PyObject *ao, *axo = NULL, *stream = Py_None;
    int k, axis = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|O$O", kname[0] == 'k' && kname[1] == 't' ? kwp : kwt,
                                     &ao, &k, &axo, &stream))
        return NULL;
    if (axo && pp_axis(axo, &axis)) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a, k, axis));
}
FN(partition) { return kth_op(pn_partition, args, kw, "kth"); }
FN(argpartition) { return kth_op(pn_argpartition, args, kw, "kth"); }
FN(topk) { return kth_op(pn_topk, args, kw, "k"); }

/* ───────────────────────────── linear algebra ───────────────────────────── */

FN(addmm)
{
    KW("", "", "", "alpha", "beta", "stream");
    PyObject *co, *ao, *bo, *stream = Py_None;
    double alpha = 1, beta = 1;
    PARSE("OOO|dd$O", &co, &ao, &bo, &alpha, &beta, &stream);
    ENTER(stream);
    pn_array *c = A(&h, co), *a = c ? A(&h, ao) : NULL, *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_addmm(c, a, b, alpha, beta));
}

FN(tensordot)
{
    KW("", "", "axes", "stream");
    PyObject *ao, *bo, *axo = NULL, *stream = Py_None;
    PARSE("OO|O$O", &ao, &bo, &axo, &stream);
    int n = 2, axa[PP_MAXDIM], axb[PP_MAXDIM], pairs = 0;
    if (axo && PyLong_Check(axo)) {
        n = (int)PyLong_AsLong(axo);
        if (n == -1 && PyErr_Occurred()) return NULL;
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

FN(diff)
{
    KW("", "n", "axis", "stream");
    PyObject *ao, *stream = Py_None;
    int n = 1, axis = -1;
    PARSE("O|ii$O", &ao, &n, &axis, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_diff(a, n, axis));
}

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

FN(searchsorted)
{
    KW("", "", "side", "stream");
    PyObject *so, *vo, *stream = Py_None;
    const char *side = "left";
    PARSE("OO|s$O", &so, &vo, &side, &stream);
    if (strcmp(side, "left") && strcmp(side, "right")) {
        PyErr_Format(PyExc_ValueError, "[searchsorted] side must be 'left' or 'right', got '%s'.", side);
        return NULL;
    }
    ENTER(stream);
    pn_array *s = A(&h, so), *v = s ? W(&h, vo, s) : NULL;
    if (!v) return fail(&h, pushed);
    return done(&h, pushed, pn_searchsorted(s, v, side[0] == 'r'));
}

FN(vecdot)
{
    KW("", "", "axis", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    int axis = -1;
    PARSE("OO|i$O", &ao, &bo, &axis, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_vecdot(a, b, axis));
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

FN(view)
{
    KW("a", "dtype", "stream");
    PyObject *ao, *stream = Py_None;
    pn_dtype t;
    PARSE("OO&|O", &ao, pp_dtype_conv, &t, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_view(a, t));
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

FN(flip)
{
    KW("", "axis", "stream");
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    PARSE("O|O$O", &ao, &axo, &stream);
    int axes[PP_MAXDIM];
    int n = pp_axes(axo, axes, PP_MAXDIM);
    if (n == -1) return NULL;
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_flip(a, n == -2 ? NULL : axes, n == -2 ? 0 : n));
}

/* einsum_path: Ponte's einsum has no contraction-order optimizer; the path it reports is the
 * pairwise left-to-right order numpy calls "naive". */
FN(einsum_path)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
        PyErr_SetString(PyExc_TypeError, "einsum_path(subscripts, *operands): subscripts must be a str.");
        return NULL;
    }
    pn_array *in[64];
    PyObject *rest = PyTuple_GetSlice(args, 1, n);
    int k = rest ? star_arrays(rest, in, 64) : -1;
    Py_XDECREF(rest);
    if (k < 0) return NULL;
    pn_scope_push();
    pn_array *r = pn_einsum(PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0)), in, k); /* validates */
    pn_scope_pop();
    pp_release_all(in, k);
    if (!r) return pp_raise();
    PyObject *path = PyList_New(0);
    for (int i = 0; path && i < (k > 1 ? k - 1 : 1); i++) {
        PyObject *pair = k > 1 ? Py_BuildValue("(ii)", 0, 1) : Py_BuildValue("(i)", 0);
        if (!pair || PyList_Append(path, pair)) Py_CLEAR(path);
        Py_XDECREF(pair);
    }
    if (!path) return NULL;
    return Py_BuildValue("(NN)", path,
                         PyUnicode_FromFormat("  Complete contraction:  %U\n  Ponte contracts the %d "
                                              "operands pairwise from the left (no path optimization).",
                                              PyTuple_GET_ITEM(args, 0), k));
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
    int single = PyLong_Check(o);
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
        PyObject *f = PyLong_Check(po) ? NULL : PySequence_Fast(po, "padding must be an int or a sequence.");
        int pair = f && PySequence_Fast_GET_SIZE(f) == 2 && !PyLong_Check(PySequence_Fast_GET_ITEM(f, 0));
        if (!PyLong_Check(po) && !f) bad = 1;
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

FN(convolve)
{
    KW("", "", "mode", "stream");
    PyObject *ao, *vo, *stream = Py_None;
    const char *mode = "full";
    PARSE("OO|s$O", &ao, &vo, &mode, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *v = a ? A(&h, vo) : NULL;
    if (!v) return fail(&h, pushed);
    return done(&h, pushed, pn_convolve(a, v, mode));
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
static PyObject *linalg_upper(pn_array *(*f)(pn_array *, bool), const char *arg, PyObject *args,
                              PyObject *kw)
{
    char *kwlist[] = {(char *)arg, "upper", "stream", NULL};
    PyObject *ao, *stream = Py_None;
    int upper = 0;
    PARSE("O|p$O", &ao, &upper, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, f(a, upper));
}
FN(linalg_cholesky) { return linalg_upper(pn_linalg_cholesky, "a", args, kw); }
FN(linalg_tri_inv) { return linalg_upper(pn_linalg_tri_inv, "a", args, kw); }
FN(linalg_cholesky_inv) { return linalg_upper(pn_linalg_cholesky_inv, "L", args, kw); }

FN(linalg_inv)
{
    KW("a", "stream");
    PyObject *ao, *stream = Py_None;
    PARSE("O|$O", &ao, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao);
    if (!a) return fail(&h, pushed);
    return done(&h, pushed, pn_linalg_inv(a));
}

FN(linalg_solve)
{
    KW("a", "b", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    PARSE("OO|$O", &ao, &bo, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_linalg_solve(a, b));
}

FN(linalg_solve_triangular)
{
    KW("a", "b", "upper", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    int upper = 0;
    PARSE("OO|$pO", &ao, &bo, &upper, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_linalg_solve_triangular(a, b, upper));
}

FN(linalg_cross)
{
    KW("a", "b", "axis", "stream");
    PyObject *ao, *bo, *stream = Py_None;
    int axis = -1;
    PARSE("OO|i$O", &ao, &bo, &axis, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL;
    if (!b) return fail(&h, pushed);
    return done(&h, pushed, pn_linalg_cross(a, b, axis));
}

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
static int opt_array(holder *h, PyObject *o, pn_array **out)
{
    *out = o == Py_None ? NULL : A(h, o);
    return o != Py_None && !*out ? -1 : 0;
}

FN(fast_rms_norm)
{
    KW("x", "weight", "eps", "stream");
    PyObject *xo, *wo, *stream = Py_None;
    double eps;
    PARSE("OOd|$O", &xo, &wo, &eps, &stream);
    ENTER(stream);
    pn_array *x = A(&h, xo), *w;
    if (!x || opt_array(&h, wo, &w)) return fail(&h, pushed);
    return done(&h, pushed, pn_nn_rms_norm(x, w, eps));
}

FN(fast_layer_norm)
{
    KW("x", "weight", "bias", "eps", "stream");
    PyObject *xo, *wo, *bo, *stream = Py_None;
    double eps;
    PARSE("OOOd|$O", &xo, &wo, &bo, &eps, &stream);
    ENTER(stream);
    pn_array *x = A(&h, xo), *w, *b;
    if (!x || opt_array(&h, wo, &w) || opt_array(&h, bo, &b)) return fail(&h, pushed);
    return done(&h, pushed, pn_nn_layer_norm(x, w, b, eps));
}

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

FN(random_key)
{
    KW("seed");
    unsigned long long seed;
    PARSE("K", &seed);
    return pp_wrap(pn_random_key(seed));
}

FN(random_seed)
{
    KW("seed");
    unsigned long long seed;
    PARSE("K", &seed);
    pn_random_seed(seed);
    Py_RETURN_NONE;
}

FN(random_split)
{
    KW("key", "num", "stream");
    PyObject *ko, *stream = Py_None;
    int num = 2;
    PARSE("O|i$O", &ko, &num, &stream);
    pn_array *key;
    if (key_arg(ko, &key)) return NULL;
    ENTER(stream);
    return done(&h, pushed, pn_random_split(key, num));
}

FN(random_bits)
{
    KW("shape", "width", "key", "stream");
    PyObject *so = NULL, *ko = Py_None, *stream = Py_None;
    int width = 4, n = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("|OiO$O", &so, &width, &ko, &stream);
    pn_array *key;
    if ((so && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) || key_arg(ko, &key)) return NULL;
    ENTER(stream);
    return done(&h, pushed, pn_random_bits(shape, n, width, key));
}

FN(random_uniform)
{
    KW("low", "high", "shape", "dtype", "key", "stream");
    PyObject *lo = NULL, *hi = NULL, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("|OOOO&O$O", &lo, &hi, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
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

static PyObject *loc_scale(int laplace, PyObject *args, PyObject *kw)
{
    KW("shape", "dtype", "loc", "scale", "key", "stream");
    PyObject *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = 0;
    double loc = 0, scale = 1;
    int64_t shape[PP_MAXDIM];
    PARSE("|OO&ddO$O", &so, pp_opt_dtype_conv, &dtype, &loc, &scale, &ko, &stream);
    pn_array *key;
    if ((so && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, laplace ? pn_random_laplace(shape, n, (pn_dtype)dtype, loc, scale, key)
                                    : pn_random_normal(shape, n, (pn_dtype)dtype, loc, scale, key));
}
FN(random_normal) { return loc_scale(0, args, kw); }
FN(random_laplace) { return loc_scale(1, args, kw); }

FN(random_randint)
{
    KW("low", "high", "shape", "dtype", "key", "stream");
    PyObject *lo, *hi, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_INT32, n = -1;
    int64_t shape[PP_MAXDIM];
    PARSE("OO|OO&O$O", &lo, &hi, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_INT32;
    ENTER(stream);
    pn_array *l = A(&h, lo), *u = l ? A(&h, hi) : NULL;
    if (!u) return fail(&h, pushed);
    if (n < 0) n = 0;
    return done(&h, pushed, pn_random_randint(l, u, shape, n, (pn_dtype)dtype, key));
}

FN(random_bernoulli)
{
    KW("p", "shape", "key", "stream");
    PyObject *po = NULL, *so = NULL, *ko = Py_None, *stream = Py_None;
    int n = -1;
    int64_t shape[PP_MAXDIM];
    PARSE("|OOO$O", &po, &so, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    ENTER(stream);
    pn_array *p = po ? A(&h, po) : NULL;
    if (po && !p) return fail(&h, pushed);
    return done(&h, pushed, pn_random_bernoulli(p, n < 0 ? NULL : shape, n < 0 ? 0 : n, key));
}

FN(random_truncated_normal)
{
    KW("lower", "upper", "shape", "dtype", "key", "stream");
    PyObject *lo, *hi, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = -1;
    int64_t shape[PP_MAXDIM];
    PARSE("OO|OO&O$O", &lo, &hi, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    pn_array *l = A(&h, lo), *u = l ? A(&h, hi) : NULL;
    if (!u) return fail(&h, pushed);
    return done(&h, pushed, pn_random_truncated_normal(l, u, n < 0 ? NULL : shape, n < 0 ? 0 : n, (pn_dtype)dtype, key));
}

FN(random_categorical)
{
    KW("logits", "axis", "shape", "num_samples", "key", "stream");
    PyObject *lo, *so = NULL, *no = Py_None, *ko = Py_None, *stream = Py_None;
    int axis = -1, n = -1, ns = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("O|iOOO$O", &lo, &axis, &so, &no, &ko, &stream);
    pn_array *key;
    if (opt_shape(so, shape, &n) || key_arg(ko, &key)) return NULL;
    if (no != Py_None) {
        if (n >= 0) {
            PyErr_SetString(PyExc_ValueError, "[categorical] At most one of shape or num_samples can be specified.");
            return NULL;
        }
        ns = (int)PyLong_AsLong(no);
        if (ns == -1 && PyErr_Occurred()) return NULL;
    }
    ENTER(stream);
    pn_array *l = A(&h, lo);
    if (!l) return fail(&h, pushed);
    return done(&h, pushed, pn_random_categorical(l, axis, n < 0 ? NULL : shape, n < 0 ? 0 : n, ns, key));
}

FN(random_gumbel)
{
    KW("shape", "dtype", "key", "stream");
    PyObject *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("|OO&O$O", &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if ((so && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    return done(&h, pushed, pn_random_gumbel(shape, n, (pn_dtype)dtype, key));
}

FN(random_multivariate_normal)
{
    KW("mean", "cov", "shape", "dtype", "key", "stream");
    PyObject *mo, *co, *so = NULL, *ko = Py_None, *stream = Py_None;
    int dtype = PN_FLOAT32, n = 0;
    int64_t shape[PP_MAXDIM];
    PARSE("OO|OO&O$O", &mo, &co, &so, pp_opt_dtype_conv, &dtype, &ko, &stream);
    pn_array *key;
    if ((so && (n = pp_shape(so, shape, PP_MAXDIM, "shape")) < 0) || key_arg(ko, &key)) return NULL;
    if (dtype < 0) dtype = PN_FLOAT32;
    ENTER(stream);
    pn_array *mean = A(&h, mo), *cov = mean ? A(&h, co) : NULL;
    if (!cov) return fail(&h, pushed);
    return done(&h, pushed, pn_random_multivariate_normal(mean, cov, shape, n, (pn_dtype)dtype, key));
}

FN(random_permutation)
{
    KW("x", "axis", "key", "stream");
    PyObject *xo, *ko = Py_None, *stream = Py_None;
    int axis = 0;
    PARSE("O|iO$O", &xo, &axis, &ko, &stream);
    pn_array *key;
    if (key_arg(ko, &key)) return NULL;
    ENTER(stream);
    if (PyLong_Check(xo)) {
        long long nn = PyLong_AsLongLong(xo);
        if (nn == -1 && PyErr_Occurred()) return fail(&h, pushed);
        return done(&h, pushed, pn_random_permutation_n(nn, key));
    }
    pn_array *x = A(&h, xo);
    if (!x) return fail(&h, pushed);
    return done(&h, pushed, pn_random_permutation(x, axis, key));
}

/* ───────────────────────────── files ───────────────────────────── */

static const char *path_arg(PyObject *o, PyObject **holder_obj)
{
    *holder_obj = PyOS_FSPath(o);
    if (!*holder_obj) return NULL;
    if (PyBytes_Check(*holder_obj)) return PyBytes_AS_STRING(*holder_obj);
    return PyUnicode_AsUTF8(*holder_obj);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* A dict of the arrays in a parameter map. */
static PyObject *params_dict(pn_params *p)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < pn_params_count(p); i++) {
        PyObject *a = pp_wrap_borrowed(pn_params_at(p, i));
        if (!a || PyDict_SetItemString(d, pn_params_name(p, i), a)) Py_CLEAR(d);
        Py_XDECREF(a);
    }
    return d;
}

/* A parameter map from a dict of arrays. NULL with an exception. */
static pn_params *dict_params(PyObject *d)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "Expected a dict of arrays.");
        return NULL;
    }
    pn_params *p = pn_params_new();
    if (!p) return (pn_params *)pp_raise();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        pn_array *a = name ? pp_arr(v) : NULL;
        if (!name && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Keys must be strings.");
        int rc = a ? pn_params_set(p, name, a) : -1;
        if (a) pn_release(a);
        if (rc) {
            if (!PyErr_Occurred()) pp_raise();
            pn_params_free(p);
            return NULL;
        }
    }
    return p;
}

FN(save)
{
    KW("file", "arr");
    PyObject *fo, *ao, *ph;
    PARSE("OO", &fo, &ao);
    const char *path = path_arg(fo, &ph);
    if (!path) return NULL;
    PyObject *full = NULL;
    if (!ends_with(path, ".npy")) {
        full = PyUnicode_FromFormat("%s.npy", path);
        path = full ? PyUnicode_AsUTF8(full) : NULL;
    }
    pn_array *a = path ? pp_arr(ao) : NULL;
    int rc = a ? pn_save_npy(path, a) : -1;
    pn_release(a);
    Py_XDECREF(full);
    Py_DECREF(ph);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    Py_RETURN_NONE;
}

static PyObject *gguf_meta_dict(const pn_gguf_meta *m);

FN(load)
{
    KW("file", "format", "return_metadata", "stream");
    PyObject *fo, *fmt = Py_None, *stream = Py_None, *ph;
    int meta = 0;
    PARSE("O|Op$O", &fo, &fmt, &meta, &stream);
    const char *path = path_arg(fo, &ph);
    if (!path) return NULL;
    const char *f = fmt != Py_None ? PyUnicode_AsUTF8(fmt) : strrchr(path, '.') ? strrchr(path, '.') + 1 : "";
    PyObject *r = NULL;
    if (!f) {
        Py_DECREF(ph);
        return NULL;
    }
    if (!strcmp(f, "npy")) {
        r = pp_wrap(pn_load_npy(path));
    } else if (!strcmp(f, "npz") || !strcmp(f, "safetensors")) {
        pn_params *p = pn_load_params(path);
        r = p ? params_dict(p) : pp_raise();
        pn_params_free(p);
    } else if (!strcmp(f, "gguf")) {
        pn_gguf_meta *m = NULL;
        pn_params *p = pn_load_gguf(path, meta ? &m : NULL);
        r = p ? params_dict(p) : pp_raise();
        pn_params_free(p);
        if (r && meta) {
            PyObject *md = gguf_meta_dict(m);
            r = md ? Py_BuildValue("(NN)", r, md) : (Py_DECREF(r), NULL);
        }
        pn_gguf_meta_free(m);
        Py_DECREF(ph);
        return r;
    } else {
        PyErr_Format(PyExc_ValueError, "[load] Unsupported file format %s.", f);
    }
    Py_DECREF(ph);
    if (r && meta) return Py_BuildValue("(N{})", r);
    return r;
}

/* GGUF metadata as a dict: arrays, str, or lists of str. */
static PyObject *gguf_meta_dict(const pn_gguf_meta *m)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < pn_gguf_meta_count(m); i++) {
        pn_array *a = pn_gguf_meta_array(m, i);
        PyObject *v = NULL;
        if (a) {
            v = pp_wrap_borrowed(a);
        } else {
            const char *const *strs;
            bool is_list;
            int64_t n = pn_gguf_meta_strings(m, i, &strs, &is_list);
            if (!is_list) {
                v = PyUnicode_DecodeUTF8(strs[0], (Py_ssize_t)strlen(strs[0]), "replace");
            } else if ((v = PyList_New((Py_ssize_t)n))) {
                for (int64_t j = 0; j < n; j++) {
                    PyObject *x = PyUnicode_DecodeUTF8(strs[j], (Py_ssize_t)strlen(strs[j]), "replace");
                    if (!x) {
                        Py_CLEAR(v);
                        break;
                    }
                    PyList_SET_ITEM(v, (Py_ssize_t)j, x);
                }
            }
        }
        if (!v || PyDict_SetItemString(d, pn_gguf_meta_key(m, i), v)) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

/* A GGUF metadata map from a dict of arrays, str and lists of str. NULL with an exception. */
static pn_gguf_meta *meta_of_dict(PyObject *d)
{
    pn_gguf_meta *m = pn_gguf_meta_new();
    if (!m) return (pn_gguf_meta *)pp_raise();
    if (d == Py_None) return m;
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "[save_gguf] metadata must be a dict.");
        pn_gguf_meta_free(m);
        return NULL;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *key = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        int rc = -1;
        if (!key) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "[save_gguf] Metadata keys must be strings.");
        } else if (PPArray_Check(v)) {
            rc = pn_gguf_meta_set_array(m, key, PPARR(v));
        } else if (PyUnicode_Check(v)) {
            const char *s = PyUnicode_AsUTF8(v);
            rc = s ? pn_gguf_meta_set_strings(m, key, &s, 1, false) : -1;
        } else if (PyList_Check(v)) {
            Py_ssize_t n = PyList_GET_SIZE(v);
            const char **strs = PyMem_Malloc((size_t)(n + 1) * sizeof *strs);
            Py_ssize_t j = 0;
            for (; strs && j < n; j++) {
                PyObject *x = PyList_GET_ITEM(v, j);
                if (!PyUnicode_Check(x) || !(strs[j] = PyUnicode_AsUTF8(x))) break;
            }
            if (!strs) PyErr_NoMemory();
            else if (j == n) rc = pn_gguf_meta_set_strings(m, key, strs, n, true);
            else if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "[save_gguf] Metadata lists must hold strings.");
            PyMem_Free(strs);
        } else {
            PyErr_Format(PyExc_TypeError, "[save_gguf] Metadata values must be arrays, strings or lists "
                         "of strings, got %s.", Py_TYPE(v)->tp_name);
        }
        if (rc) {
            if (!PyErr_Occurred()) pp_raise();
            pn_gguf_meta_free(m);
            return NULL;
        }
    }
    return m;
}

FN(save_gguf)
{
    KW("file", "arrays", "metadata");
    PyObject *fo, *d, *mo = Py_None, *ph;
    PARSE("OO|O:save_gguf", &fo, &d, &mo);
    const char *path = path_arg(fo, &ph);
    if (!path) return NULL;
    PyObject *full = NULL;
    if (!ends_with(path, ".gguf")) {
        full = PyUnicode_FromFormat("%s.gguf", path);
        path = full ? PyUnicode_AsUTF8(full) : NULL;
    }
    pn_params *p = path ? dict_params(d) : NULL;
    pn_gguf_meta *meta = p ? meta_of_dict(mo) : NULL;
    int rc = meta ? pn_save_gguf(path, p, meta) : -1;
    pn_gguf_meta_free(meta);
    pn_params_free(p);
    Py_XDECREF(full);
    Py_DECREF(ph);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    Py_RETURN_NONE;
}

static PyObject *save_map(PyObject *fo, PyObject *dict, const char *ext)
{
    PyObject *ph;
    const char *path = path_arg(fo, &ph);
    if (!path) return NULL;
    PyObject *full = NULL;
    if (!ends_with(path, ext)) {
        full = PyUnicode_FromFormat("%s%s", path, ext);
        path = full ? PyUnicode_AsUTF8(full) : NULL;
    }
    pn_params *p = path ? dict_params(dict) : NULL;
    int rc = p ? pn_save_params(path, p) : -1;
    pn_params_free(p);
    Py_XDECREF(full);
    Py_DECREF(ph);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    Py_RETURN_NONE;
}

FN(save_safetensors)
{
    KW("file", "arrays", "metadata");
    PyObject *fo, *d, *meta = Py_None;
    PARSE("OO|O", &fo, &d, &meta);
    return save_map(fo, d, ".safetensors");
}

FN(savez)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "savez(file, *args, **kwargs) needs a file.");
        return NULL;
    }
    PyObject *d = kw ? PyDict_Copy(kw) : PyDict_New();
    for (Py_ssize_t i = 1; d && i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "arr_%zd", i - 1);
        if (PyDict_SetItemString(d, name, PyTuple_GET_ITEM(args, i))) Py_CLEAR(d);
    }
    if (!d) return NULL;
    PyObject *r = save_map(PyTuple_GET_ITEM(args, 0), d, ".npz");
    Py_DECREF(d);
    return r;
}

/* ───────────────────────────── matmul variants, depends, export_to_dot ───────────────────────────── */

/* An optional array argument (None: NULL). Returns 0 or -1. */
static int opt_arr(holder *h, PyObject *o, pn_array **out)
{
    *out = NULL;
    if (!o || o == Py_None) return 0;
    return (*out = A(h, o)) ? 0 : -1;
}

FN(gather_mm)
{
    KW("", "", "lhs_indices", "rhs_indices", "sorted_indices", "stream");
    PyObject *ao, *bo, *lo = Py_None, *ro = Py_None, *stream = Py_None;
    int sorted = 0;
    PARSE("OO|OO$pO:gather_mm", &ao, &bo, &lo, &ro, &sorted, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL, *li, *ri;
    if (!b || opt_arr(&h, lo, &li) || opt_arr(&h, ro, &ri)) return fail(&h, pushed);
    return done(&h, pushed, pn_gather_mm(a, b, li, ri, sorted));
}

FN(block_masked_mm)
{
    KW("", "", "block_size", "mask_out", "mask_lhs", "mask_rhs", "stream");
    PyObject *ao, *bo, *mo = Py_None, *mlo = Py_None, *mro = Py_None, *stream = Py_None;
    int bs = 64;
    PARSE("OO|iOOO$O:block_masked_mm", &ao, &bo, &bs, &mo, &mlo, &mro, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL, *mout, *ml, *mr;
    if (!b || opt_arr(&h, mo, &mout) || opt_arr(&h, mlo, &ml) || opt_arr(&h, mro, &mr))
        return fail(&h, pushed);
    return done(&h, pushed, pn_block_masked_mm(a, b, bs, mout, ml, mr));
}

FN(segmented_mm)
{
    KW("", "", "segments", "stream");
    PyObject *ao, *bo, *so, *stream = Py_None;
    PARSE("OOO|$O:segmented_mm", &ao, &bo, &so, &stream);
    ENTER(stream);
    pn_array *a = A(&h, ao), *b = a ? A(&h, bo) : NULL, *sg = b ? A(&h, so) : NULL;
    if (!sg) return fail(&h, pushed);
    return done(&h, pushed, pn_segmented_mm(a, b, sg));
}

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

/* ───────────────────────────── tables ───────────────────────────── */

#define VK METH_VARARGS | METH_KEYWORDS
#define DEF(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, VK, doc},
#define DEF_AS(pyname, name) {pyname, (PyCFunction)(void (*)(void))py_##name, VK, NULL},
#define TABLE_DEF(name, fn) DEF(name, NULL)

static PyMethodDef op_methods[] = {
    UNARY_OPS(TABLE_DEF) BINARY_OPS(TABLE_DEF) REDUCE_OPS(TABLE_DEF) SCAN_OPS(TABLE_DEF)
    DEF(var, NULL) DEF(std, NULL) DEF(argmax, NULL) DEF(argmin, NULL)
    DEF(zeros, NULL) DEF(ones, NULL) DEF(zeros_like, NULL) DEF(ones_like, NULL) DEF(full, NULL)
    DEF(full_like, NULL) DEF(arange, NULL) DEF(linspace, NULL) DEF(eye, NULL) DEF(tri, NULL)
    DEF(identity, NULL) DEF(tril, NULL) DEF(triu, NULL) DEF(astype, NULL) DEF(asarray, NULL)
    DEF(round, NULL) DEF(where, NULL) DEF(clip, NULL) DEF(nan_to_num, NULL) DEF(isclose, NULL)
    DEF(allclose, NULL) DEF(array_equal, NULL) DEF(divmod, NULL) DEF(softmax, NULL)
    DEF(reshape, NULL) DEF(flatten, NULL) DEF(unflatten, NULL) DEF(squeeze, NULL)
    DEF(expand_dims, NULL) DEF(transpose, NULL) DEF(swapaxes, NULL) DEF(moveaxis, NULL)
    DEF(broadcast_to, NULL) DEF(broadcast_arrays, NULL) DEF(broadcast_shapes, NULL)
    DEF(concatenate, NULL) DEF(stack, NULL) DEF(split, NULL) DEF(unstack, NULL) DEF(tile, NULL)
    DEF(repeat, NULL) DEF(pad, NULL) DEF(roll, NULL) DEF(atleast_1d, NULL) DEF(atleast_2d, NULL)
    DEF(atleast_3d, NULL) DEF(as_strided, NULL) DEF(meshgrid, NULL) DEF(diag, NULL)
    DEF(diagonal, NULL) DEF(trace, NULL) DEF(take, NULL) DEF(take_along_axis, NULL)
    DEF(put_along_axis, NULL) DEF(sort, NULL) DEF(argsort, NULL) DEF(partition, NULL)
    DEF(argpartition, NULL) DEF(topk, NULL) DEF(addmm, NULL) DEF(tensordot, NULL)
    DEF(einsum, NULL) DEF(result_type, NULL) DEF(save, NULL) DEF(load, NULL)
    DEF(save_safetensors, NULL) DEF(savez, NULL) DEF(save_gguf, NULL)
    DEF(diff, NULL) DEF(minmax, NULL) DEF(searchsorted, NULL) DEF(vecdot, NULL)
    DEF(hadamard_transform, NULL) DEF(view, NULL) DEF(slice, NULL) DEF(slice_update, NULL)
    DEF(flip, NULL) DEF(einsum_path, NULL) DEF(isdtype, NULL) DEF(conv1d, NULL) DEF(conv2d, NULL)
    DEF(conv3d, NULL) DEF(conv_transpose1d, NULL) DEF(conv_transpose2d, NULL)
    DEF(conv_transpose3d, NULL) DEF(conv_general, NULL) DEF(convolve, NULL) DEF(bartlett, NULL)
    DEF(blackman, NULL) DEF(hamming, NULL) DEF(hanning, NULL)
    DEF(gather_mm, NULL) DEF(block_masked_mm, NULL) DEF(segmented_mm, NULL) DEF(depends, NULL)
    DEF(export_to_dot, "export_to_dot(file, *args, **kwargs): the graph as Graphviz DOT.")
    DEF_AS("savez_compressed", savez) DEF_AS("concat", concatenate) DEF_AS("pow", power)
    DEF_AS("permute_dims", transpose) DEF_AS("conj", conjugate) DEF_AS("empty", zeros)
    DEF_AS("empty_like", zeros_like) DEF_AS("contiguous", positive) DEF_AS("copy", positive)
    DEF_AS("acos", arccos) DEF_AS("asin", arcsin) DEF_AS("atan", arctan) DEF_AS("acosh", arccosh)
    DEF_AS("asinh", arcsinh) DEF_AS("atanh", arctanh) DEF_AS("atan2", arctan2)
    DEF_AS("bitwise_left_shift", left_shift) DEF_AS("bitwise_right_shift", right_shift)
    DEF_AS("cumulative_sum", cumsum) DEF_AS("cumulative_prod", cumprod)
    {NULL},
};

static PyMethodDef random_methods[] = {
    DEF_AS("key", random_key) DEF_AS("seed", random_seed) DEF_AS("split", random_split)
    DEF_AS("bits", random_bits) DEF_AS("uniform", random_uniform) DEF_AS("normal", random_normal)
    DEF_AS("randint", random_randint) DEF_AS("bernoulli", random_bernoulli)
    DEF_AS("truncated_normal", random_truncated_normal) DEF_AS("categorical", random_categorical)
    DEF_AS("gumbel", random_gumbel) DEF_AS("laplace", random_laplace)
    DEF_AS("multivariate_normal", random_multivariate_normal)
    DEF_AS("permutation", random_permutation)
    {NULL},
};

static PyMethodDef fast_methods[] = {
    DEF_AS("rms_norm", fast_rms_norm) DEF_AS("layer_norm", fast_layer_norm)
    {NULL},
};

static PyMethodDef linalg_methods[] = {
    DEF(norm, "norm(a, ord=None, axis=None, keepdims=False): vector and matrix norms.")
    DEF_AS("cholesky", linalg_cholesky) DEF_AS("tri_inv", linalg_tri_inv)
    DEF_AS("cholesky_inv", linalg_cholesky_inv) DEF_AS("inv", linalg_inv)
    DEF_AS("solve", linalg_solve) DEF_AS("solve_triangular", linalg_solve_triangular)
    DEF_AS("cross", linalg_cross) DEF_AS("qr", linalg_qr)
    {NULL},
};

int pp_init_ops(PyObject *m)
{
    if (PyModule_AddFunctions(m, op_methods)) return -1;
    if (!pp_submodule(m, "random", random_methods, "Random number generation (MLX's keys and bits).") ||
        !pp_submodule(m, "linalg", linalg_methods, "Linear algebra.") ||
        !pp_submodule(m, "fft", NULL, "Fast Fourier transforms.") ||
        !pp_submodule(m, "fast", fast_methods, "Fused operations: rms_norm, layer_norm, rope, scaled_dot_product_attention."))
        return -1;
    return pp_array_forward_methods(m);
}
