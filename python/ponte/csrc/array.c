/* array.c — ponte.core.array, the Python array type: construction from scalars, nested lists,
 * numpy arrays and buffers; properties, item/tolist, MLX's printed form, the operators (with
 * Python numbers as weak scalars), the buffer protocol and __array__, and the .at[] updates. */
#include "pyponte.h"

#include "core/core.h" /* pnC_alias and the owner field, for pp_wrap_borrowed */

#include <complex.h>
#include <string.h>

/* ───────────────────────────── wrapping ───────────────────────────── */

static PyObject *wrap_ref(pn_array *a)
{
    PPArray *o = PyObject_New(PPArray, &PPArray_Type);
    if (!o) {
        pn_release(a);
        return NULL;
    }
    o->a = a;
    o->weakrefs = NULL;
    return (PyObject *)o;
}

PyObject *pp_wrap(pn_array *a)
{
    if (!a) return pp_raise();
    return wrap_ref(pn_scope_take(a)); /* the object owns it, not any scope */
}

/* A borrowed array that a scope owns (inside a closure call) gets a handle of its own: a
 * retained reference would be given back through the scope's slot by pn_release, leaving
 * the scope's reference dangling (ponte.h has no alias; core.h's pnC_alias makes one). */
PyObject *pp_wrap_borrowed(pn_array *a)
{
    if (!a) return pp_raise();
    if (a->owner) return pp_wrap(pnC_alias(a));
    return wrap_ref(pn_retain(a));
}

/* Replaces the array an object holds (in-place operators, __setitem__); takes r. */
static void replace_array(PPArray *self, pn_array *r)
{
    pn_scope_take(r);
    pn_array *old = self->a;
    self->a = r;
    pn_release(old);
}

/* ───────────────────────────── Python objects to arrays ───────────────────────────── */

enum { K_NONE = -1, K_BOOL, K_INT, K_FLOAT, K_COMPLEX };

/* The kind of a Python (or numpy) scalar, or K_NONE. */
static int scalar_kind(PyObject *o)
{
    if (PyBool_Check(o)) return K_BOOL;
    if (PyLong_Check(o)) return K_INT;
    if (PyFloat_Check(o)) return K_FLOAT;
    if (PyComplex_Check(o)) return K_COMPLEX;
    return K_NONE;
}

int pp_is_scalar(PyObject *o) { return scalar_kind(o) != K_NONE; }

static int py_int64(PyObject *o, long long *v)
{
    int of = 0;
    *v = PyLong_AsLongLongAndOverflow(o, &of);
    if (of) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to an int64 array.");
        return -1;
    }
    return *v == -1 && PyErr_Occurred() ? -1 : 0;
}

static int fits_int32(long long v) { return v >= INT32_MIN && v <= INT32_MAX; }

static pn_array *invalid_type(PyObject *o)
{
    PyErr_Format(PyExc_ValueError, "Invalid type %s received in array initialization.",
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* Nested lists: the shape is read along first elements, then every element is checked. */
typedef struct {
    int ndim, leaf_depth, kind, arrays, big;
    int64_t shape[PP_MAXDIM];
} lscan;

static const char nonuniform[] = "Initialization encountered non-uniform length.";

static int scan_shape(PyObject *o, lscan *s)
{
    PyObject *cur = o;
    int d = 0;
    while (PyList_Check(cur) || PyTuple_Check(cur)) {
        if (d >= PP_MAXDIM) {
            PyErr_SetString(PyExc_ValueError, "Too many nested lists.");
            return -1;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(cur);
        s->shape[d++] = n;
        if (n == 0) break;
        cur = PySequence_Fast_GET_ITEM(cur, 0);
    }
    s->leaf_depth = d;
    s->ndim = d;
    if (PPArray_Check(cur) && d > 0) {
        pn_array *a = PPARR(cur);
        s->arrays = 1;
        if (d + pn_ndim(a) > PP_MAXDIM) {
            PyErr_SetString(PyExc_ValueError, "Too many dimensions.");
            return -1;
        }
        for (int i = 0; i < pn_ndim(a); i++) s->shape[d + i] = pn_shape(a)[i];
        s->ndim = d + pn_ndim(a);
    }
    return 0;
}

static int scan_check(PyObject *o, int depth, lscan *s)
{
    if (depth < s->leaf_depth) {
        if (!(PyList_Check(o) || PyTuple_Check(o)) || PySequence_Fast_GET_SIZE(o) != s->shape[depth]) {
            PyErr_SetString(PyExc_ValueError, nonuniform);
            return -1;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        for (Py_ssize_t i = 0; i < n; i++)
            if (scan_check(PySequence_Fast_GET_ITEM(o, i), depth + 1, s)) return -1;
        return 0;
    }
    if (s->arrays) return 0; /* checked when converted */
    if (PyList_Check(o) || PyTuple_Check(o) || PPArray_Check(o)) {
        PyErr_SetString(PyExc_ValueError, nonuniform);
        return -1;
    }
    int k = scalar_kind(o);
    if (k == K_NONE) {
        if (PyIndex_Check(o)) k = K_INT;
        else if (Py_TYPE(o)->tp_as_number && Py_TYPE(o)->tp_as_number->nb_float) k = K_FLOAT;
        else {
            invalid_type(o);
            return -1;
        }
    }
    if (k == K_INT && !PyBool_Check(o)) {
        PyObject *ix = PyNumber_Index(o);
        if (!ix) return -1;
        long long v;
        int rc = py_int64(ix, &v);
        Py_DECREF(ix);
        if (rc) return -1;
        if (!fits_int32(v)) s->big = 1;
    }
    if (k > s->kind) s->kind = k;
    return 0;
}

typedef union {
    uint8_t *b;
    int32_t *i32;
    int64_t *i64;
    float *f32;
    double *f64;
    float _Complex *c64;
    void *p;
} anybuf;

static int store_leaf(PyObject *o, anybuf *buf, int64_t *pos, pn_dtype t)
{
    int64_t i = (*pos)++;
    if (t == PN_COMPLEX64) {
        Py_complex z = PyComplex_AsCComplex(o);
        if (z.real == -1.0 && PyErr_Occurred()) return -1;
        buf->c64[i] = (float)z.real + (float)z.imag * I;
        return 0;
    }
    if (t == PN_FLOAT32 || t == PN_FLOAT64) {
        double v = PyFloat_AsDouble(o);
        if (v == -1.0 && PyErr_Occurred()) return -1;
        if (t == PN_FLOAT32) buf->f32[i] = (float)v;
        else buf->f64[i] = v;
        return 0;
    }
    if (t == PN_BOOL) {
        int v = PyObject_IsTrue(o);
        if (v < 0) return -1;
        buf->b[i] = (uint8_t)v;
        return 0;
    }
    PyObject *ix = PyNumber_Index(o);
    if (!ix) return -1;
    long long v;
    int rc = py_int64(ix, &v);
    Py_DECREF(ix);
    if (rc) return -1;
    if (t == PN_INT32) buf->i32[i] = (int32_t)v;
    else buf->i64[i] = v;
    return 0;
}

static int fill_list(PyObject *o, int depth, const lscan *s, anybuf *buf, int64_t *pos, pn_dtype t)
{
    if (depth < s->leaf_depth) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        for (Py_ssize_t i = 0; i < n; i++)
            if (fill_list(PySequence_Fast_GET_ITEM(o, i), depth + 1, s, buf, pos, t)) return -1;
        return 0;
    }
    return store_leaf(o, buf, pos, t);
}

/* Lists whose leaves are arrays (or anything array-like at the leaf depth): stacked. */
static pn_array *stack_list(PyObject *o, int depth, const lscan *s)
{
    if (depth == s->leaf_depth) {
        pn_array *a = pp_from_py(o, -1);
        if (!a) return NULL;
        int nd = pn_ndim(a);
        int ok = nd == s->ndim - depth;
        for (int i = 0; ok && i < nd; i++) ok = pn_shape(a)[i] == s->shape[depth + i];
        if (!ok) {
            pn_release(a);
            PyErr_SetString(PyExc_ValueError, nonuniform);
            return NULL;
        }
        return a;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    pn_array **parts = PyMem_Calloc((size_t)n + 1, sizeof *parts);
    if (!parts) {
        PyErr_NoMemory();
        return NULL;
    }
    pn_array *r = NULL;
    Py_ssize_t i;
    for (i = 0; i < n; i++)
        if (!(parts[i] = stack_list(PySequence_Fast_GET_ITEM(o, i), depth + 1, s))) break;
    if (i == n) {
        r = pn_stack(parts, (int)n, 0);
        if (!r) pp_raise();
    }
    pp_release_all(parts, (int)n);
    PyMem_Free(parts);
    return r;
}

static pn_array *from_list(PyObject *o, int dtype)
{
    lscan s;
    memset(&s, 0, sizeof s);
    s.kind = K_NONE;
    if (scan_shape(o, &s) || scan_check(o, 0, &s)) return NULL;
    if (s.arrays) return stack_list(o, 0, &s);
    pn_dtype t;
    switch (s.kind) {
    case K_BOOL: t = PN_BOOL; break;
    case K_INT: t = s.big || dtype == PN_INT64 ? PN_INT64 : PN_INT32; break;
    case K_COMPLEX: t = PN_COMPLEX64; break;
    default: t = dtype == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32; break;
    }
    int64_t size = 1;
    for (int i = 0; i < s.ndim; i++) size *= s.shape[i];
    anybuf buf;
    buf.p = PyMem_Malloc((size_t)(size ? size : 1) * pn_dtype_size(t));
    if (!buf.p) {
        PyErr_NoMemory();
        return NULL;
    }
    int64_t pos = 0;
    pn_array *r = NULL;
    if (size == 0 || fill_list(o, 0, &s, &buf, &pos, t) == 0) {
        r = pn_array_from_data(buf.p, s.shape, s.ndim, t);
        if (!r) pp_raise();
    }
    PyMem_Free(buf.p);
    return r;
}

/* The buffer protocol (numpy arrays, memoryviews, numpy scalars). */
static int format_dtype(const char *f, Py_ssize_t itemsize, pn_dtype *t, int *complex128)
{
    *complex128 = 0;
    if (!f) f = "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    else if ((*f == '>' || *f == '!') && itemsize > 1) return -1;
    else if (*f == '>' || *f == '!') f++;
    int z = 0;
    if (*f == 'Z') z = 1, f++;
    if (f[0] == 0 || f[1] != 0) return -1;
    switch (f[0]) {
    case '?': *t = PN_BOOL; return 0;
    case 'b': *t = PN_INT8; return 0;
    case 'B': *t = PN_UINT8; return 0;
    case 'e': *t = PN_FLOAT16; return 0;
    case 'f': *t = z ? PN_COMPLEX64 : PN_FLOAT32; return 0;
    case 'd':
        if (z) *complex128 = 1, *t = PN_COMPLEX64;
        else *t = PN_FLOAT64;
        return 0;
    case 'h': case 'i': case 'l': case 'q':
        *t = itemsize == 1 ? PN_INT8 : itemsize == 2 ? PN_INT16 : itemsize == 4 ? PN_INT32 : PN_INT64;
        return 0;
    case 'H': case 'I': case 'L': case 'Q': case 'N':
        *t = itemsize == 1 ? PN_UINT8 : itemsize == 2 ? PN_UINT16 : itemsize == 4 ? PN_UINT32 : PN_UINT64;
        return 0;
    case 'n': *t = PN_INT64; return 0;
    }
    return -1;
}

static pn_array *from_buffer(PyObject *o, int dtype)
{
    Py_buffer v;
    if (PyObject_GetBuffer(o, &v, PyBUF_RECORDS_RO)) return NULL;
    pn_array *r = NULL;
    pn_dtype t;
    int c128;
    if (format_dtype(v.format, v.itemsize, &t, &c128)) {
        PyErr_Format(PyExc_ValueError, "Unsupported buffer format '%s' in array initialization.",
                     v.format ? v.format : "B");
        PyBuffer_Release(&v);
        return NULL;
    }
    if (v.ndim > PP_MAXDIM) {
        PyErr_SetString(PyExc_ValueError, "Too many dimensions.");
        PyBuffer_Release(&v);
        return NULL;
    }
    int64_t shape[PP_MAXDIM];
    int64_t size = 1;
    for (int i = 0; i < v.ndim; i++) size *= shape[i] = v.shape[i];
    void *data = v.buf, *tmp = NULL;
    if (!PyBuffer_IsContiguous(&v, 'C') && size > 0) {
        tmp = PyMem_Malloc((size_t)v.len);
        if (!tmp || PyBuffer_ToContiguous(tmp, &v, v.len, 'C')) {
            if (!tmp) PyErr_NoMemory();
            PyMem_Free(tmp);
            PyBuffer_Release(&v);
            return NULL;
        }
        data = tmp;
    }
    if (c128) { /* complex128 has no Ponte dtype: narrow to complex64 */
        float *c = PyMem_Malloc((size_t)(size ? size : 1) * 2 * sizeof(float));
        if (c) {
            const double *d = data;
            for (int64_t i = 0; i < 2 * size; i++) c[i] = (float)d[i];
            r = pn_array_from_data(c, shape, v.ndim, PN_COMPLEX64);
            PyMem_Free(c);
        } else {
            PyErr_NoMemory();
        }
    } else {
        r = pn_array_from_data(data, shape, v.ndim, t);
    }
    if (!r && !PyErr_Occurred()) pp_raise();
    PyMem_Free(tmp);
    PyBuffer_Release(&v);
    return r;
}

pn_array *pp_from_py(PyObject *o, int dtype)
{
    pn_array *r = NULL;
    int k = scalar_kind(o);
    if (PPArray_Check(o)) {
        r = pn_retain(PPARR(o));
    } else if (k == K_BOOL) {
        r = pn_scalar(o == Py_True, dtype >= 0 ? (pn_dtype)dtype : PN_BOOL);
    } else if (k == K_INT) {
        long long v;
        if (py_int64(o, &v)) return NULL;
        r = pn_scalar_int(v, dtype >= 0 ? (pn_dtype)dtype : fits_int32(v) ? PN_INT32 : PN_INT64);
    } else if (k == K_FLOAT) {
        r = pn_scalar(PyFloat_AS_DOUBLE(o), dtype >= 0 ? (pn_dtype)dtype : PN_FLOAT32);
    } else if (k == K_COMPLEX) {
        Py_complex z = PyComplex_AsCComplex(o);
        r = pn_scalar_complex((float)z.real, (float)z.imag);
    } else if (PyList_Check(o) || PyTuple_Check(o)) {
        r = from_list(o, dtype);
    } else if (PyObject_CheckBuffer(o) && !PyBytes_Check(o) && !PyByteArray_Check(o)) {
        r = from_buffer(o, dtype);
        /* numpy's float64 becomes float32 unless asked for, as in MLX */
        if (r && dtype < 0 && pn_array_dtype(r) == PN_FLOAT64) dtype = PN_FLOAT32;
    } else if (o != Py_None && !PyUnicode_Check(o) && PyObject_HasAttrString(o, "__array__")) {
        PyObject *np = PyObject_CallMethod(o, "__array__", NULL);
        if (!np) return NULL;
        r = PyObject_CheckBuffer(np) ? pp_from_py(np, dtype) : invalid_type(o);
        Py_DECREF(np);
    } else {
        return invalid_type(o);
    }
    if (!r) return PyErr_Occurred() ? NULL : (pn_array *)pp_raise();
    if (dtype >= 0 && pn_array_dtype(r) != (pn_dtype)dtype) {
        pn_array *c = pn_astype(r, (pn_dtype)dtype);
        pn_release(r);
        if (!c) return (pn_array *)pp_raise();
        r = c;
    }
    return r;
}

/* Conversion of operands: None and strings are TypeErrors here (MLX's signatures refuse them). */
static int refuse(PyObject *o)
{
    if (o == Py_None || PyUnicode_Check(o) || PyBytes_Check(o) || PyCallable_Check(o) ||
        PyDict_Check(o)) {
        PyErr_Format(PyExc_TypeError, "Expected an array or a scalar, got %s.", Py_TYPE(o)->tp_name);
        return 1;
    }
    return 0;
}

pn_array *pp_arr(PyObject *o)
{
    if (PPArray_Check(o)) return pn_retain(PPARR(o));
    if (refuse(o)) return NULL;
    return pp_from_py(o, -1);
}

pn_array *pp_arr_weak(PyObject *o, pn_array *other)
{
    if (PPArray_Check(o)) return pn_retain(PPARR(o));
    pn_array *r;
    switch (scalar_kind(o)) {
    case K_BOOL: r = pn_weak_bool(o == Py_True); break;
    case K_INT: {
        long long v;
        if (py_int64(o, &v)) return NULL;
        if (other) {
            pn_dtype t = pn_array_dtype(other);
            if (t != PN_BOOL && pn_issubdtype(t, PN_CAT_INTEGER) && t != PN_INT64 && t != PN_UINT64) {
                int bits = (int)pn_dtype_size(t) * 8;
                long long lo = pn_issubdtype(t, PN_CAT_UNSIGNEDINTEGER) ? 0 : -(1LL << (bits - 1));
                long long hi = pn_issubdtype(t, PN_CAT_UNSIGNEDINTEGER) ? (1LL << bits) - 1
                                                                         : (1LL << (bits - 1)) - 1;
                if (v < lo || v > hi) {
                    PyErr_Format(PyExc_ValueError, "Converting %lld to %s would result in overflow.",
                                 v, pn_dtype_name(t));
                    return NULL;
                }
            } else if (t == PN_UINT64 && v < 0) {
                PyErr_Format(PyExc_ValueError, "Converting %lld to uint64 would result in overflow.", v);
                return NULL;
            }
        }
        r = pn_weak_int(v);
        break;
    }
    case K_FLOAT: r = pn_weak_float(PyFloat_AS_DOUBLE(o)); break;
    case K_COMPLEX: {
        Py_complex z = PyComplex_AsCComplex(o);
        r = pn_scalar_complex((float)z.real, (float)z.imag);
        break;
    }
    default:
        if (refuse(o)) return NULL;
        return pp_from_py(o, -1);
    }
    if (!r) pp_raise();
    return r;
}

/* ───────────────────────────── arrays to Python objects ───────────────────────────── */

static PyObject *element(const char *p, pn_dtype t)
{
    switch (t) {
    case PN_BOOL: return PyBool_FromLong(*(const uint8_t *)p);
    case PN_UINT8: return PyLong_FromLong(*(const uint8_t *)p);
    case PN_UINT16: return PyLong_FromLong(*(const uint16_t *)p);
    case PN_UINT32: return PyLong_FromUnsignedLong(*(const uint32_t *)p);
    case PN_UINT64: return PyLong_FromUnsignedLongLong(*(const uint64_t *)p);
    case PN_INT8: return PyLong_FromLong(*(const int8_t *)p);
    case PN_INT16: return PyLong_FromLong(*(const int16_t *)p);
    case PN_INT32: return PyLong_FromLong(*(const int32_t *)p);
    case PN_INT64: return PyLong_FromLongLong(*(const int64_t *)p);
    case PN_FLOAT32: return PyFloat_FromDouble(*(const float *)p);
    case PN_FLOAT64: return PyFloat_FromDouble(*(const double *)p);
    case PN_COMPLEX64: {
        const float *z = (const float *)p;
        return PyComplex_FromDoubles(z[0], z[1]);
    }
    default: break;
    }
    PyErr_SetString(PyExc_ValueError, "Unsupported dtype.");
    return NULL;
}

/* Half types are read through float32. Returns a new reference to read from, or NULL. */
static pn_array *readable(pn_array *a)
{
    pn_dtype t = pn_array_dtype(a);
    if (t == PN_FLOAT16 || t == PN_BFLOAT16) {
        pn_array *f = pn_astype(a, PN_FLOAT32);
        if (!f) pp_raise();
        return f;
    }
    return pn_retain(a);
}

PyObject *pp_item(pn_array *a)
{
    if (pn_size(a) != 1) {
        PyErr_SetString(PyExc_ValueError, "[item] item can only be called on arrays of size 1.");
        return NULL;
    }
    pn_array *r = readable(a);
    if (!r) return NULL;
    const char *p = pn_data(r);
    PyObject *v = p ? element(p, pn_array_dtype(r)) : pp_raise();
    pn_release(r);
    return v;
}

static PyObject *list_level(const char *p, const int64_t *shape, int ndim, size_t isz, pn_dtype t,
                            int64_t *pos)
{
    if (ndim == 0) return element(p + (size_t)(*pos)++ * isz, t);
    PyObject *l = PyList_New(shape[0]);
    if (!l) return NULL;
    for (int64_t i = 0; i < shape[0]; i++) {
        PyObject *x = list_level(p, shape + 1, ndim - 1, isz, t, pos);
        if (!x) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, x);
    }
    return l;
}

PyObject *pp_tolist(pn_array *a)
{
    pn_array *r = readable(a);
    if (!r) return NULL;
    const char *p = pn_data(r);
    PyObject *v = NULL;
    if (p || pn_size(r) == 0) {
        int64_t pos = 0;
        pn_clear_error();
        v = list_level(p, pn_shape(r), pn_ndim(r), pn_itemsize(r), pn_array_dtype(r), &pos);
    } else {
        pp_raise();
    }
    pn_release(r);
    return v;
}

/* ───────────────────────────── the type ───────────────────────────── */

static PyObject *array_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"val", "dtype", NULL};
    PyObject *val;
    int dtype = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O&:array", kwlist, &val, pp_opt_dtype_conv, &dtype))
        return NULL;
    if (val == Py_None) {
        PyErr_SetString(PyExc_TypeError, "array(): None is not a valid value.");
        return NULL;
    }
    pn_array *a = pp_from_py(val, dtype);
    return a ? pp_wrap(a) : NULL;
}

static void array_dealloc(PyObject *self)
{
    PPArray *o = (PPArray *)self;
    if (o->weakrefs) PyObject_ClearWeakRefs(self);
    pn_release(o->a);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *array_repr(PyObject *self)
{
    char *s = pn_to_string(PPARR(self));
    if (!s) return pp_raise();
    PyObject *r = PyUnicode_FromString(s);
    pn_free_string(s);
    return r;
}

static Py_hash_t array_hash(PyObject *self)
{
    Py_hash_t h = (Py_hash_t)((uintptr_t)self >> 4);
    return h == -1 ? -2 : h;
}

/* properties */
static PyObject *get_shape(PyObject *self, void *c)
{
    pn_array *a = PPARR(self);
    int n = pn_ndim(a);
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, PyLong_FromLongLong(pn_shape(a)[i]));
    return t;
}
static PyObject *get_dtype(PyObject *self, void *c) { return pp_dtype_obj(pn_array_dtype(PPARR(self))); }
static PyObject *get_size(PyObject *self, void *c) { return PyLong_FromLongLong(pn_size(PPARR(self))); }
static PyObject *get_ndim(PyObject *self, void *c) { return PyLong_FromLong(pn_ndim(PPARR(self))); }
static PyObject *get_itemsize(PyObject *self, void *c) { return PyLong_FromSize_t(pn_itemsize(PPARR(self))); }
static PyObject *get_nbytes(PyObject *self, void *c) { return PyLong_FromSize_t(pn_nbytes(PPARR(self))); }
static PyObject *get_T(PyObject *self, void *c) { return pp_wrap(pn_transpose(PPARR(self), NULL, 0)); }
static PyObject *get_mT(PyObject *self, void *c)
{
    if (pn_ndim(PPARR(self)) < 2) {
        PyErr_SetString(PyExc_ValueError, "[mT] The array must have at least 2 dimensions.");
        return NULL;
    }
    return pp_wrap(pn_swapaxes(PPARR(self), -1, -2));
}
static PyObject *get_real(PyObject *self, void *c) { return pp_wrap(pn_real(PPARR(self))); }
static PyObject *get_imag(PyObject *self, void *c) { return pp_wrap(pn_imag(PPARR(self))); }

typedef struct {
    PyObject_HEAD
    PyObject *array; /* the PPArray */
    PyObject *index; /* NULL until indexed */
} PPArrayAt;

static PyObject *get_at(PyObject *self, void *c)
{
    PPArrayAt *o = PyObject_New(PPArrayAt, &PPArrayAt_Type);
    if (!o) return NULL;
    Py_INCREF(self);
    o->array = self;
    o->index = NULL;
    return (PyObject *)o;
}

static PyGetSetDef array_getset[] = {
    {"shape", get_shape, NULL, "The shape of the array as a tuple.", NULL},
    {"dtype", get_dtype, NULL, "The array's Dtype.", NULL},
    {"size", get_size, NULL, "Number of elements.", NULL},
    {"ndim", get_ndim, NULL, "Number of dimensions.", NULL},
    {"itemsize", get_itemsize, NULL, "Size of one element in bytes.", NULL},
    {"nbytes", get_nbytes, NULL, "Number of bytes of the array.", NULL},
    {"T", get_T, NULL, "The array with its axes reversed.", NULL},
    {"mT", get_mT, NULL, "The array with its last two axes swapped.", NULL},
    {"real", get_real, NULL, "The real part.", NULL},
    {"imag", get_imag, NULL, "The imaginary part.", NULL},
    {"at", get_at, NULL, "Indexed updates: a.at[idx].add(v) and friends.", NULL},
    {NULL},
};

/* methods */
static PyObject *m_item(PyObject *self, PyObject *u) { return pp_item(PPARR(self)); }

/* format(a, spec): a 0-d array formats its item; any other array only with an empty spec (its
 * str), as in MLX. */
static PyObject *m_format(PyObject *self, PyObject *spec)
{
    if (!PyUnicode_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "format spec must be a string");
        return NULL;
    }
    if (pn_ndim(PPARR(self)) == 0) {
        PyObject *v = pp_item(PPARR(self));
        if (!v) return NULL;
        PyObject *r = PyObject_Format(v, spec);
        Py_DECREF(v);
        return r;
    }
    if (PyUnicode_GetLength(spec) > 0) {
        PyErr_Format(PyExc_TypeError, "unsupported format string passed to %s.__format__",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    return PyObject_Str(self);
}
static PyObject *m_tolist(PyObject *self, PyObject *u) { return pp_tolist(PPARR(self)); }

/* Collects *args given either as separate ints or as one sequence. */
static int varargs_ints(PyObject *args, int64_t *out, int max)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n == 1 && !pp_is_int(PyTuple_GET_ITEM(args, 0)))
        return pp_shape(PyTuple_GET_ITEM(args, 0), out, max, "shape");
    return pp_shape(args, out, max, "shape");
}

static PyObject *stream_kw(PyObject *kw)
{
    if (!kw) return Py_None;
    PyObject *s = PyDict_GetItemString(kw, "stream");
    Py_ssize_t n = PyDict_GET_SIZE(kw);
    if (n > (s ? 1 : 0)) {
        PyErr_SetString(PyExc_TypeError, "Unexpected keyword argument.");
        return NULL;
    }
    return s ? s : Py_None;
}

static PyObject *m_reshape(PyObject *self, PyObject *args, PyObject *kw)
{
    int64_t shape[PP_MAXDIM];
    PyObject *stream = stream_kw(kw);
    if (!stream) return NULL;
    int n = varargs_ints(args, shape, PP_MAXDIM);
    if (n < 0) return NULL;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *r = pn_reshape(PPARR(self), shape, n);
    pp_stream_exit(pushed);
    return pp_wrap(r);
}

static PyObject *m_transpose(PyObject *self, PyObject *args, PyObject *kw)
{
    int64_t ax64[PP_MAXDIM];
    int axes[PP_MAXDIM];
    PyObject *stream = stream_kw(kw);
    if (!stream) return NULL;
    int n = 0;
    int all = PyTuple_GET_SIZE(args) == 0 ||
              (PyTuple_GET_SIZE(args) == 1 && PyTuple_GET_ITEM(args, 0) == Py_None);
    if (!all) {
        n = varargs_ints(args, ax64, PP_MAXDIM);
        if (n < 0) return NULL;
        for (int i = 0; i < n; i++) axes[i] = (int)ax64[i];
    }
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *r = pn_transpose(PPARR(self), all ? NULL : axes, n);
    pp_stream_exit(pushed);
    return pp_wrap(r);
}

static PyObject *m_array(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dtype", "copy", NULL};
    PyObject *dtype = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:__array__", kwlist, &dtype, &copy)) return NULL;
    PyObject *np = PyImport_ImportModule("numpy");
    if (!np) return NULL;
    PyObject *src = self, *tmp = NULL;
    pn_dtype t = pn_array_dtype(PPARR(self));
    if (t == PN_BFLOAT16) { /* numpy has no bfloat16: through float32 */
        tmp = pp_wrap(pn_astype(PPARR(self), PN_FLOAT32));
        if (!tmp) {
            Py_DECREF(np);
            return NULL;
        }
        src = tmp;
    }
    PyObject *mv = PyMemoryView_FromObject(src);
    PyObject *r = NULL;
    if (mv) {
        PyObject *fargs = Py_BuildValue("(O)", mv);
        PyObject *fkw = Py_BuildValue("{s:O}", "dtype", dtype);
        PyObject *fn = PyObject_GetAttrString(np, "array");
        if (fargs && fkw && fn) r = PyObject_Call(fn, fargs, fkw);
        Py_XDECREF(fargs);
        Py_XDECREF(fkw);
        Py_XDECREF(fn);
        Py_DECREF(mv);
    }
    Py_XDECREF(tmp);
    Py_DECREF(np);
    return r;
}

static PyObject *m_copy(PyObject *self, PyObject *args) { return pp_wrap_borrowed(PPARR(self)); }

/* The array API namespace: ponte.core (api_version is not supported, as MLX). */
static PyObject *m_array_namespace(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"api_version", NULL};
    PyObject *v = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:__array_namespace__", kwlist, &v)) return NULL;
    if (v != Py_None) {
        PyErr_SetString(PyExc_ValueError, "Explicitly specifying api_version is not yet implemented.");
        return NULL;
    }
    return PyImport_ImportModule("ponte.core");
}

static PyObject *m_getstate(PyObject *self, PyObject *u)
{
    PyObject *l = pp_tolist(PPARR(self));
    if (!l) return NULL;
    return Py_BuildValue("(NN)", l, pp_dtype_obj(pn_array_dtype(PPARR(self))));
}

static PyObject *m_reduce(PyObject *self, PyObject *u)
{
    PyObject *l = pp_tolist(PPARR(self));
    if (!l) return NULL;
    return Py_BuildValue("(O(NN))", (PyObject *)&PPArray_Type, l, pp_dtype_obj(pn_array_dtype(PPARR(self))));
}

/* ───────────────────────────── DLPack ───────────────────────────── */
/* The DLPack structures (dlpack.h, v0.8 ABI), declared here to avoid the dependency. */
typedef struct { int32_t device_type, device_id; } dl_device;
typedef struct { uint8_t code, bits; uint16_t lanes; } dl_dtype;
typedef struct {
    void *data;
    dl_device device;
    int32_t ndim;
    dl_dtype dtype;
    int64_t *shape, *strides;
    uint64_t byte_offset;
} dl_tensor;
typedef struct dl_managed {
    dl_tensor t;
    void *ctx;
    void (*deleter)(struct dl_managed *);
} dl_managed;
enum { DL_INT = 0, DL_UINT = 1, DL_FLOAT = 2, DL_BFLOAT = 4, DL_COMPLEX = 5, DL_BOOL = 6, DL_CPU = 1 };

static int dl_of_dtype(pn_dtype t, dl_dtype *d)
{
    d->lanes = 1;
    d->bits = (uint8_t)(pn_dtype_size(t) * 8);
    if (t == PN_BOOL) d->code = DL_BOOL, d->bits = 8;
    else if (pn_issubdtype(t, PN_CAT_UNSIGNEDINTEGER)) d->code = DL_UINT;
    else if (pn_issubdtype(t, PN_CAT_INTEGER)) d->code = DL_INT;
    else if (t == PN_BFLOAT16) d->code = DL_BFLOAT;
    else if (t == PN_COMPLEX64) d->code = DL_COMPLEX;
    else d->code = DL_FLOAT;
    return 0;
}

static int dtype_of_dl(dl_dtype d, pn_dtype *t)
{
    static const struct { uint8_t code, bits; pn_dtype t; } map[] = {
        {DL_BOOL, 8, PN_BOOL}, {DL_UINT, 8, PN_UINT8}, {DL_UINT, 16, PN_UINT16}, {DL_UINT, 32, PN_UINT32},
        {DL_UINT, 64, PN_UINT64}, {DL_INT, 8, PN_INT8}, {DL_INT, 16, PN_INT16}, {DL_INT, 32, PN_INT32},
        {DL_INT, 64, PN_INT64}, {DL_FLOAT, 16, PN_FLOAT16}, {DL_FLOAT, 32, PN_FLOAT32},
        {DL_FLOAT, 64, PN_FLOAT64}, {DL_BFLOAT, 16, PN_BFLOAT16}, {DL_COMPLEX, 64, PN_COMPLEX64},
    };
    if (d.lanes != 1) return -1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].code == d.code && map[i].bits == d.bits) return *t = map[i].t, 0;
    return -1;
}

/* The exporter's context: the array object (kept alive) and the shape/strides storage. */
typedef struct {
    dl_managed m;
    PyObject *owner;
    int64_t dims[];
} dl_export;

static void dl_export_delete(dl_managed *m)
{
    dl_export *e = (dl_export *)m;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_XDECREF(e->owner);
    PyGILState_Release(g);
    PyMem_RawFree(e);
}

static void dl_capsule_destructor(PyObject *cap)
{
    if (PyCapsule_IsValid(cap, "dltensor")) { /* never consumed */
        dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");
        if (m && m->deleter) m->deleter(m);
    }
}

static PyObject *m_dlpack(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *maxv = Py_None, *dev = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO", kwlist, &stream, &maxv, &dev, &copy)) return NULL;
    pn_array *a = PPARR(self);
    const void *data = pn_data(a); /* evaluated, row-contiguous */
    if (!data && pn_size(a) > 0) return pp_raise();
    pn_clear_error();
    int nd = pn_ndim(a);
    dl_export *e = PyMem_RawCalloc(1, sizeof *e + (size_t)(2 * nd + 1) * sizeof(int64_t));
    if (!e) return PyErr_NoMemory();
    static char empty;
    e->m.t.data = data ? (void *)data : &empty;
    e->m.t.device.device_type = DL_CPU;
    e->m.t.ndim = nd;
    dl_of_dtype(pn_array_dtype(a), &e->m.t.dtype);
    e->m.t.shape = e->dims;
    e->m.t.strides = e->dims + nd;
    int64_t st = 1;
    for (int i = nd - 1; i >= 0; i--) {
        e->dims[i] = pn_shape(a)[i];
        e->dims[nd + i] = st;
        st *= e->dims[i];
    }
    e->m.ctx = e;
    e->m.deleter = dl_export_delete;
    Py_INCREF(self);
    e->owner = self;
    PyObject *cap = PyCapsule_New(&e->m, "dltensor", dl_capsule_destructor);
    if (!cap) dl_export_delete(&e->m);
    return cap;
}

static PyObject *m_dlpack_device(PyObject *self, PyObject *u) { return Py_BuildValue("(ii)", DL_CPU, 0); }

/* from_dlpack(x): a copy of a DLPack producer's (CPU) tensor. */
PyObject *pp_from_dlpack(PyObject *m, PyObject *args, PyObject *kw);
PyObject *pp_from_dlpack(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "copy", NULL};
    PyObject *x, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O", kwlist, &x, &copy)) return NULL;
    if (PPArray_Check(x)) return pp_wrap_borrowed(PPARR(x));
    if (!PyObject_HasAttrString(x, "__dlpack__")) {
        PyErr_Format(PyExc_TypeError, "from_dlpack() expects a DLPack producer, got %s.", Py_TYPE(x)->tp_name);
        return NULL;
    }
    PyObject *cap = PyObject_CallMethod(x, "__dlpack__", NULL);
    if (!cap) return NULL;
    dl_managed *mt = PyCapsule_GetPointer(cap, "dltensor");
    if (!mt) {
        Py_DECREF(cap);
        return NULL;
    }
    dl_tensor *t = &mt->t;
    pn_dtype dt;
    PyObject *r = NULL;
    if (t->device.device_type != DL_CPU) {
        PyErr_SetString(PyExc_ValueError, "[from_dlpack] Only CPU tensors can be imported.");
    } else if (dtype_of_dl(t->dtype, &dt) || t->ndim > PP_MAXDIM || t->ndim < 0) {
        PyErr_SetString(PyExc_ValueError, "[from_dlpack] Unsupported dtype or rank.");
    } else {
        int nd = t->ndim;
        int64_t size = 1, shape[PP_MAXDIM];
        for (int i = 0; i < nd; i++) size *= shape[i] = t->shape[i];
        size_t isz = pn_dtype_size(dt);
        const char *base = (const char *)t->data + t->byte_offset;
        int contiguous = 1;
        if (t->strides) {
            int64_t st = 1;
            for (int i = nd - 1; i >= 0; i--) {
                if (shape[i] != 1 && t->strides[i] != st) contiguous = 0;
                st *= shape[i];
            }
        }
        char *tmp = NULL;
        if (!contiguous && size > 0) { /* gather a strided tensor into row-major order */
            tmp = PyMem_Malloc((size_t)size * isz);
            if (!tmp) {
                PyErr_NoMemory();
            } else {
                int64_t idx[PP_MAXDIM] = {0};
                for (int64_t k = 0; k < size; k++) {
                    int64_t off = 0;
                    for (int i = 0; i < nd; i++) off += idx[i] * t->strides[i];
                    memcpy(tmp + (size_t)k * isz, base + off * (int64_t)isz, isz);
                    for (int i = nd - 1; i >= 0 && ++idx[i] == shape[i]; i--) idx[i] = 0;
                }
            }
        }
        if (contiguous || tmp) r = pp_wrap(pn_array_from_data(tmp ? tmp : base, shape, nd, dt));
        PyMem_Free(tmp);
    }
    /* consumed: the capsule no longer frees it, we do */
    PyCapsule_SetName(cap, "used_dltensor");
    if (mt->deleter) mt->deleter(mt);
    Py_DECREF(cap);
    return r;
}

static PyMethodDef array_methods[] = {
    {"item", m_item, METH_NOARGS, "The value of a size-1 array as a Python scalar."},
    {"tolist", m_tolist, METH_NOARGS, "The array as nested Python lists."},
    {"__format__", m_format, METH_O, "format(a, spec): a 0-d array formats its item."},
    {"reshape", (PyCFunction)(void (*)(void))m_reshape, METH_VARARGS | METH_KEYWORDS,
     "reshape(*shape, stream=None)"},
    {"transpose", (PyCFunction)(void (*)(void))m_transpose, METH_VARARGS | METH_KEYWORDS,
     "transpose(*axes, stream=None)"},
    {"__array__", (PyCFunction)(void (*)(void))m_array, METH_VARARGS | METH_KEYWORDS,
     "A numpy array with the same contents (bfloat16 becomes float32)."},
    {"__copy__", m_copy, METH_NOARGS, NULL},
    {"__array_namespace__", (PyCFunction)(void (*)(void))m_array_namespace, METH_VARARGS | METH_KEYWORDS,
     "The module with the array API's functions (ponte.core)."},
    {"__deepcopy__", m_copy, METH_O, NULL},
    {"__reduce__", m_reduce, METH_NOARGS, NULL},
    {"__getstate__", m_getstate, METH_NOARGS, NULL},
    {"__dlpack__", (PyCFunction)(void (*)(void))m_dlpack, METH_VARARGS | METH_KEYWORDS,
     "A DLPack capsule sharing the array's (evaluated, row-major) data."},
    {"__dlpack_device__", m_dlpack_device, METH_NOARGS, NULL},
    {NULL},
};

/* ───────────────────────────── operators ───────────────────────────── */

typedef pn_array *(*binop_fn)(pn_array *, pn_array *);

/* Both operands as arrays (numbers weak); 1 when an operand is not array-like. */
static int operands(PyObject *a, PyObject *b, pn_array **x, pn_array **y)
{
    pn_array *other = PPArray_Check(a) ? PPARR(a) : PPArray_Check(b) ? PPARR(b) : NULL;
    *x = *y = NULL;
    if (!PPArray_Check(a) && !PPArray_Check(b)) { /* two non-arrays: the first is strong */
        if (!(*x = pp_arr(a))) return -1;
        other = *x;
    } else if (!(*x = pp_arr_weak(a, other))) {
        return -1;
    }
    if (!(*y = pp_arr_weak(b, other))) {
        pn_release(*x);
        *x = NULL;
        return -1;
    }
    return 0;
}

/* An operator's non-array operand that MLX refuses to meet an array: a list or tuple (not
 * converted, unlike in functions), or an object that is neither a scalar nor array-like. 0 when
 * the operands convert (x, y set), 1 when refused (no error set), -1 on another error. */
static int operator_operands(PyObject *a, PyObject *b, pn_array **x, pn_array **y)
{
    PyObject *o = PPArray_Check(a) ? b : a;
    if (PyList_Check(o) || PyTuple_Check(o)) return 1;
    if (!operands(a, b, x, y)) return 0;
    if (!pp_is_scalar(o) &&
        (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError))) {
        PyErr_Clear();
        return 1;
    }
    return -1;
}

/* An operator on an array and an operand it cannot meet: None is left to Python (TypeError);
 * anything else is a ValueError naming the operation, as in MLX. */
static PyObject *refuse_operand(PyObject *a, PyObject *b, const char *what)
{
    PyObject *o = PPArray_Check(a) ? b : a, *arr = PPArray_Check(a) ? a : b;
    if (o == Py_None) Py_RETURN_NOTIMPLEMENTED;
    PyErr_Format(PyExc_ValueError, "Cannot perform %s on a %s and %s", what, Py_TYPE(arr)->tp_name,
                 Py_TYPE(o)->tp_name);
    return NULL;
}

static PyObject *binary(PyObject *a, PyObject *b, binop_fn f, const char *what)
{
    pn_array *x, *y;
    int rc = operator_operands(a, b, &x, &y);
    if (rc) return rc > 0 ? refuse_operand(a, b, what) : NULL;
    pn_array *r = f(x, y);
    pn_release(x);
    pn_release(y);
    return pp_wrap(r);
}

static PyObject *inplace(PyObject *self, PyObject *b, binop_fn f, const char *what)
{
    if (!PPArray_Check(self)) Py_RETURN_NOTIMPLEMENTED;
    char op[48];
    snprintf(op, sizeof op, "inplace %s", what);
    /* true division would make an integer or boolean array floating: MLX refuses in place */
    if (f == pn_divide && !pn_issubdtype(pn_array_dtype(PPARR(self)), PN_CAT_INEXACT)) {
        pn_array *x, *y;
        int rc = operator_operands(self, b, &x, &y);
        if (rc) return rc > 0 ? refuse_operand(self, b, op) : NULL;
        pn_release(x);
        pn_release(y);
        PyErr_SetString(PyExc_ValueError, "In place division cannot cast to non-floating point type.");
        return NULL;
    }
    PyObject *r = binary(self, b, f, op);
    if (!r || r == Py_NotImplemented) return r;
    pn_array *na = pn_retain(PPARR(r));
    Py_DECREF(r);
    replace_array((PPArray *)self, na);
    Py_INCREF(self);
    return self;
}

static pn_array *pn_logical_or_bitwise_xor(pn_array *a, pn_array *b) { return pn_bitwise_xor(a, b); }

#define BINOPS(X)                                                                                  \
    X(add, pn_add, "addition")                                                                     \
    X(subtract, pn_subtract, "subtraction")                                                        \
    X(multiply, pn_multiply, "multiplication")                                                     \
    X(true_divide, pn_divide, "division")                                                          \
    X(floor_divide, pn_floor_divide, "floor division")                                             \
    X(remainder, pn_remainder, "modulus")                                                          \
    X(matrix_multiply, pn_matmul, "matrix multiplication")                                         \
    X(lshift, pn_left_shift, "left shift")                                                         \
    X(rshift, pn_right_shift, "right shift")                                                       \
    X(and, pn_bitwise_and, "bitwise and")                                                          \
    X(or, pn_bitwise_or, "bitwise or")                                                             \
    X(xor, pn_logical_or_bitwise_xor, "bitwise xor")

#define DEF_BINOP(name, fn, what)                                                                  \
    static PyObject *nb_##name(PyObject *a, PyObject *b) { return binary(a, b, fn, what); }       \
    static PyObject *nb_inplace_##name(PyObject *a, PyObject *b) { return inplace(a, b, fn, what); }
BINOPS(DEF_BINOP)

static PyObject *nb_power(PyObject *a, PyObject *b, PyObject *mod)
{
    if (mod != Py_None) Py_RETURN_NOTIMPLEMENTED;
    return binary(a, b, pn_power, "power");
}
static PyObject *nb_inplace_power(PyObject *a, PyObject *b, PyObject *mod)
{
    return inplace(a, b, pn_power, "power");
}

static PyObject *nb_divmod(PyObject *a, PyObject *b)
{
    pn_array *x, *y, *out[2];
    int rc = operator_operands(a, b, &x, &y);
    if (rc > 0) Py_RETURN_NOTIMPLEMENTED; /* MLX: TypeError */
    if (rc) return NULL;
    rc = pn_divmod(x, y, out);
    pn_release(x);
    pn_release(y);
    if (rc) return pp_raise();
    PyObject *q = pp_wrap(out[0]), *r = pp_wrap(out[1]);
    if (!q || !r) {
        Py_XDECREF(q);
        Py_XDECREF(r);
        return NULL;
    }
    return Py_BuildValue("(NN)", q, r);
}

static PyObject *nb_negative(PyObject *a) { return pp_wrap(pn_negative(PPARR(a))); }
static PyObject *nb_positive(PyObject *a) { Py_INCREF(a); return a; }
static PyObject *nb_absolute(PyObject *a) { return pp_wrap(pn_abs(PPARR(a))); }
static PyObject *nb_invert(PyObject *a)
{
    pn_array *x = PPARR(a);
    return pp_wrap(pn_array_dtype(x) == PN_BOOL ? pn_logical_not(x) : pn_bitwise_invert(x));
}

static int scalar_check(PyObject *self)
{
    if (pn_size(PPARR(self)) != 1) {
        PyErr_SetString(PyExc_ValueError, "[convert] Only length-1 arrays can be converted to Python scalars.");
        return -1;
    }
    return 0;
}

static int nb_bool(PyObject *self)
{
    if (scalar_check(self)) return -1;
    PyObject *v = pp_item(PPARR(self));
    if (!v) return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static PyObject *nb_int(PyObject *self)
{
    if (scalar_check(self)) return NULL;
    PyObject *v = pp_item(PPARR(self));
    if (!v) return NULL;
    PyObject *r = PyNumber_Long(v);
    Py_DECREF(v);
    return r;
}

static PyObject *nb_float(PyObject *self)
{
    if (scalar_check(self)) return NULL;
    PyObject *v = pp_item(PPARR(self));
    if (!v) return NULL;
    PyObject *r = PyComplex_Check(v) ? PyFloat_FromDouble(PyComplex_RealAsDouble(v)) : PyNumber_Float(v);
    Py_DECREF(v);
    return r;
}

static PyObject *nb_index(PyObject *self)
{
    if (!pn_issubdtype(pn_array_dtype(PPARR(self)), PN_CAT_INTEGER) &&
        pn_array_dtype(PPARR(self)) != PN_BOOL) {
        PyErr_SetString(PyExc_TypeError, "Only integer arrays can be converted to an index.");
        return NULL;
    }
    return nb_int(self);
}

static PyNumberMethods array_as_number = {
    .nb_add = nb_add,
    .nb_subtract = nb_subtract,
    .nb_multiply = nb_multiply,
    .nb_remainder = nb_remainder,
    .nb_divmod = nb_divmod,
    .nb_power = nb_power,
    .nb_negative = nb_negative,
    .nb_positive = nb_positive,
    .nb_absolute = nb_absolute,
    .nb_bool = nb_bool,
    .nb_invert = nb_invert,
    .nb_lshift = nb_lshift,
    .nb_rshift = nb_rshift,
    .nb_and = nb_and,
    .nb_xor = nb_xor,
    .nb_or = nb_or,
    .nb_int = nb_int,
    .nb_float = nb_float,
    .nb_inplace_add = nb_inplace_add,
    .nb_inplace_subtract = nb_inplace_subtract,
    .nb_inplace_multiply = nb_inplace_multiply,
    .nb_inplace_remainder = nb_inplace_remainder,
    .nb_inplace_power = nb_inplace_power,
    .nb_inplace_lshift = nb_inplace_lshift,
    .nb_inplace_rshift = nb_inplace_rshift,
    .nb_inplace_and = nb_inplace_and,
    .nb_inplace_xor = nb_inplace_xor,
    .nb_inplace_or = nb_inplace_or,
    .nb_floor_divide = nb_floor_divide,
    .nb_true_divide = nb_true_divide,
    .nb_inplace_floor_divide = nb_inplace_floor_divide,
    .nb_inplace_true_divide = nb_inplace_true_divide,
    .nb_index = nb_index,
    .nb_matrix_multiply = nb_matrix_multiply,
    .nb_inplace_matrix_multiply = nb_inplace_matrix_multiply,
};

static PyObject *array_richcompare(PyObject *a, PyObject *b, int op)
{
    static const binop_fn fns[] = {pn_less, pn_less_equal, pn_equal, pn_not_equal, pn_greater,
                                   pn_greater_equal};
    static const char *const what[] = {"less than", "less than or equal", "equal", "not equal",
                                       "greater than", "greater than or equal"};
    if (op == Py_EQ || op == Py_NE) { /* an array never equals what it cannot meet (MLX) */
        pn_array *x, *y;
        int rc = operator_operands(a, b, &x, &y);
        if (rc < 0) return NULL;
        if (rc > 0) return PyBool_FromLong(op == Py_NE);
        pn_array *r = fns[op](x, y);
        pn_release(x);
        pn_release(y);
        return pp_wrap(r);
    }
    return binary(a, b, fns[op], what[op]);
}

/* ───────────────────────────── sequence and mapping ───────────────────────────── */

static Py_ssize_t array_len(PyObject *self)
{
    pn_array *a = PPARR(self);
    if (pn_ndim(a) == 0) {
        PyErr_SetString(PyExc_TypeError, "len() 0-dimensional array.");
        return -1;
    }
    return (Py_ssize_t)pn_shape(a)[0];
}

static PyObject *array_sq_item(PyObject *self, Py_ssize_t i)
{
    Py_ssize_t n = array_len(self);
    if (n < 0) return NULL;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "array index out of range");
        return NULL;
    }
    PyObject *idx = PyLong_FromSsize_t(i);
    if (!idx) return NULL;
    PyObject *r = pp_getitem((PPArray *)self, idx);
    Py_DECREF(idx);
    return r;
}

static PyObject *array_subscript(PyObject *self, PyObject *idx) { return pp_getitem((PPArray *)self, idx); }

static int array_ass_subscript(PyObject *self, PyObject *idx, PyObject *val)
{
    if (!val) {
        PyErr_SetString(PyExc_TypeError, "Cannot delete array elements.");
        return -1;
    }
    return pp_setitem((PPArray *)self, idx, val);
}

static PySequenceMethods array_as_sequence = {
    .sq_length = array_len,
    .sq_item = array_sq_item,
};

static PyMappingMethods array_as_mapping = {
    .mp_length = array_len,
    .mp_subscript = array_subscript,
    .mp_ass_subscript = array_ass_subscript,
};

/* ───────────────────────────── buffer protocol ───────────────────────────── */

static const char *buffer_format(pn_dtype t)
{
    switch (t) {
    case PN_BOOL: return "?";
    case PN_UINT8: return "B";
    case PN_UINT16: return "H";
    case PN_UINT32: return "I";
    case PN_UINT64: return "Q";
    case PN_INT8: return "b";
    case PN_INT16: return "h";
    case PN_INT32: return "i";
    case PN_INT64: return "q";
    case PN_FLOAT16: return "e";
    case PN_FLOAT32: return "f";
    case PN_FLOAT64: return "d";
    case PN_COMPLEX64: return "Zf";
    default: return NULL;
    }
}

static int array_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    pn_array *a = PPARR(self);
    const char *fmt = buffer_format(pn_array_dtype(a));
    view->obj = NULL;
    if (!fmt) {
        PyErr_SetString(PyExc_BufferError, "bfloat16 has no buffer format; use np.array(a) (float32).");
        return -1;
    }
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "ponte arrays export read-only buffers.");
        return -1;
    }
    const void *data = pn_data(a);
    if (!data && pn_size(a) > 0) { /* the evaluation failed: its own error (MemoryError, ...) */
        pp_raise();
        return -1;
    }
    pn_clear_error();
    int nd = pn_ndim(a);
    Py_ssize_t *dims = PyMem_Malloc((size_t)(2 * nd + 1) * sizeof(Py_ssize_t));
    if (!dims) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t isz = (Py_ssize_t)pn_itemsize(a), stride = isz;
    for (int i = nd - 1; i >= 0; i--) {
        dims[i] = (Py_ssize_t)pn_shape(a)[i];
        dims[nd + i] = stride;
        stride *= dims[i];
    }
    static char empty;
    view->buf = data ? (void *)data : &empty;
    view->obj = self;
    Py_INCREF(self);
    view->len = (Py_ssize_t)pn_nbytes(a);
    view->readonly = 1;
    view->itemsize = isz;
    view->format = (flags & PyBUF_FORMAT) ? (char *)fmt : NULL;
    view->ndim = nd;
    view->shape = (flags & PyBUF_ND) ? dims : NULL;
    view->strides = (flags & PyBUF_STRIDES) ? dims + nd : NULL;
    view->suboffsets = NULL;
    view->internal = dims;
    return 0;
}

static void array_releasebuffer(PyObject *self, Py_buffer *view) { PyMem_Free(view->internal); }

static PyBufferProcs array_as_buffer = {array_getbuffer, array_releasebuffer};

PyTypeObject PPArray_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.array",
    .tp_basicsize = sizeof(PPArray),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "array(val, dtype=None): an N-dimensional array (lazy, evaluated on demand).",
    .tp_new = array_new,
    .tp_dealloc = array_dealloc,
    .tp_repr = array_repr,
    .tp_str = array_repr,
    .tp_hash = array_hash,
    .tp_as_number = &array_as_number,
    .tp_as_sequence = &array_as_sequence,
    .tp_as_mapping = &array_as_mapping,
    .tp_as_buffer = &array_as_buffer,
    .tp_richcompare = array_richcompare,
    .tp_iter = pp_array_iterator, /* an ArrayIterator; TypeError for 0-d (below) */
    .tp_getset = array_getset,
    .tp_methods = array_methods,
    .tp_weaklistoffset = offsetof(PPArray, weakrefs),
};

/* ───────────────────────────── .at[] ───────────────────────────── */

static void at_dealloc(PyObject *self)
{
    PPArrayAt *o = (PPArrayAt *)self;
    Py_XDECREF(o->array);
    Py_XDECREF(o->index);
    PyObject_Free(self);
}

static PyObject *at_getitem(PyObject *self, PyObject *idx)
{
    PPArrayAt *o = (PPArrayAt *)self;
    PPArrayAt *r = PyObject_New(PPArrayAt, &PPArrayAt_Type);
    if (!r) return NULL;
    Py_INCREF(o->array);
    Py_INCREF(idx);
    r->array = o->array;
    r->index = idx;
    return (PyObject *)r;
}

static PyObject *at_apply(PyObject *self, PyObject *args, PyObject *kw, int mode)
{
    static char *kwlist[] = {"value", "stream", NULL};
    PPArrayAt *o = (PPArrayAt *)self;
    PyObject *val, *stream = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O", kwlist, &val, &stream)) return NULL;
    if (!o->index) {
        PyErr_SetString(PyExc_ValueError, "Index the .at property first: a.at[idx].add(v).");
        return NULL;
    }
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *r = pp_index_update(PPARR(o->array), o->index, val, mode);
    pp_stream_exit(pushed);
    return r ? pp_wrap(r) : NULL;
}

#define AT_METHOD(name, mode)                                                                      \
    static PyObject *at_##name(PyObject *self, PyObject *args, PyObject *kw)                       \
    {                                                                                              \
        return at_apply(self, args, kw, mode);                                                     \
    }
AT_METHOD(add, PN_SCATTER_ADD)
AT_METHOD(subtract, -1)
AT_METHOD(multiply, PN_SCATTER_PROD)
AT_METHOD(divide, -2)
AT_METHOD(maximum, PN_SCATTER_MAX)
AT_METHOD(minimum, PN_SCATTER_MIN)

#define AT_DEF(name) {#name, (PyCFunction)(void (*)(void))at_##name, METH_VARARGS | METH_KEYWORDS, NULL}
static PyMethodDef at_methods[] = {AT_DEF(add),     AT_DEF(subtract), AT_DEF(multiply),
                                   AT_DEF(divide),  AT_DEF(maximum),  AT_DEF(minimum),
                                   {NULL}};
static PyMappingMethods at_as_mapping = {.mp_subscript = at_getitem};

PyTypeObject PPArrayAt_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.ArrayAt",
    .tp_basicsize = sizeof(PPArrayAt),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Indexed updates of an array that accumulate at repeated indices.",
    .tp_dealloc = at_dealloc,
    .tp_as_mapping = &at_as_mapping,
    .tp_methods = at_methods,
};

/* ───────────────────────────── init ───────────────────────────── */

/* Methods that are the module's functions with the array as first argument (a.sum(...)). */
static const char *const forwarded[] = {
    "abs", "all", "any", "argmax", "argmin", "astype", "conj", "cos", "cummax", "cummin",
    "cumprod", "cumsum", "diag", "diagonal", "exp", "flatten", "log", "log10", "log1p", "log2",
    "logcumsumexp", "logsumexp", "max", "mean", "min", "moveaxis", "prod", "reciprocal", "round",
    "rsqrt", "sin", "split", "sqrt", "square", "squeeze", "sum", "swapaxes", "view", /* var, std: below */
    NULL,
};

/* ───────────────────────────── ArrayIterator ───────────────────────────── */

/* mlx.core.ArrayIterator: iter(array), the arrays along the first axis in order. */
typedef struct {
    PyObject_HEAD
    PyObject *array;
    Py_ssize_t i, n;
} PPArrayIterator;

static void aiter_dealloc(PyObject *self)
{
    Py_XDECREF(((PPArrayIterator *)self)->array);
    PyObject_Free(self);
}
static PyObject *aiter_next(PyObject *self)
{
    PPArrayIterator *it = (PPArrayIterator *)self;
    if (!it->array || it->i >= it->n) {
        Py_CLEAR(it->array);
        return NULL; /* StopIteration */
    }
    return PySequence_GetItem(it->array, it->i++);
}

static PyTypeObject PPArrayIterator_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.ArrayIterator",
    .tp_basicsize = sizeof(PPArrayIterator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A helper object to iterate over the 1st dimension of an array.",
    .tp_dealloc = aiter_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = aiter_next,
};

PyObject *pp_array_iterator(PyObject *array)
{
    Py_ssize_t n = PyObject_Length(array); /* TypeError for a 0-d array */
    if (n < 0) return NULL;
    PPArrayIterator *it = PyObject_New(PPArrayIterator, &PPArrayIterator_Type);
    if (!it) return NULL;
    it->array = Py_NewRef(array);
    it->i = 0;
    it->n = n;
    return (PyObject *)it;
}

int pp_init_array(PyObject *m)
{
    if (PyType_Ready(&PPArray_Type) || PyType_Ready(&PPArrayAt_Type) || PyType_Ready(&PPArrayIterator_Type))
        return -1;
    static PyMethodDef from_dlpack_def = {"from_dlpack", (PyCFunction)(void (*)(void))pp_from_dlpack,
                                          METH_VARARGS | METH_KEYWORDS,
                                          "from_dlpack(x): an array with the contents of a DLPack producer."};
    PyObject *fd = PyCFunction_NewEx(&from_dlpack_def, NULL, PyModule_GetNameObject(m));
    if (!fd || PyModule_AddObject(m, "from_dlpack", fd)) return -1;
    if (PyModule_AddObjectRef(m, "array", (PyObject *)&PPArray_Type) ||
        PyModule_AddObjectRef(m, "ArrayAt", (PyObject *)&PPArrayAt_Type) ||
        PyModule_AddObjectRef(m, "ArrayIterator", (PyObject *)&PPArrayIterator_Type))
        return -1;
    return 0;
}

/* a.var / a.std: the module's functions, plus the array API's keyword-only `correction`
 * (MLX's methods take it; it replaces ddof when given). */
static PyObject *moment_fns[2]; /* the module's var and std */

static PyObject *moment_method(int which, PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *kw = kwargs ? PyDict_Copy(kwargs) : PyDict_New(), *full = NULL, *r = NULL;
    if (!kw) return NULL;
    PyObject *corr = PyDict_GetItemString(kw, "correction"); /* borrowed */
    if (corr) {
        Py_INCREF(corr);
        int bad = PyDict_DelItemString(kw, "correction") ||
                  (corr != Py_None && PyDict_SetItemString(kw, "ddof", corr));
        Py_DECREF(corr);
        if (bad) goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (!(full = PyTuple_New(n + 1))) goto done;
    Py_INCREF(self);
    PyTuple_SET_ITEM(full, 0, self);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(PyTuple_GET_ITEM(args, i));
        PyTuple_SET_ITEM(full, i + 1, PyTuple_GET_ITEM(args, i));
    }
    r = PyObject_Call(moment_fns[which], full, kw);
done:
    Py_XDECREF(full);
    Py_DECREF(kw);
    return r;
}
static PyObject *array_var(PyObject *self, PyObject *args, PyObject *kw) { return moment_method(0, self, args, kw); }
static PyObject *array_std(PyObject *self, PyObject *args, PyObject *kw) { return moment_method(1, self, args, kw); }

/* Called by ops.c once the module's functions exist. */
int pp_array_forward_methods(PyObject *m);
int pp_array_forward_methods(PyObject *m)
{
    static PyMethodDef moment_defs[2] = {
        {"var", (PyCFunction)(void (*)(void))array_var, METH_VARARGS | METH_KEYWORDS,
         "var(axis=None, keepdims=False, ddof=0, *, correction=None, stream=None)"},
        {"std", (PyCFunction)(void (*)(void))array_std, METH_VARARGS | METH_KEYWORDS,
         "std(axis=None, keepdims=False, ddof=0, *, correction=None, stream=None)"},
    };
    for (int i = 0; i < 2; i++) {
        PyObject *d;
        if (!(moment_fns[i] = PyObject_GetAttrString(m, moment_defs[i].ml_name)) ||
            !(d = PyDescr_NewMethod(&PPArray_Type, &moment_defs[i])))
            return -1;
        int rc = PyDict_SetItemString(PPArray_Type.tp_dict, moment_defs[i].ml_name, d);
        Py_DECREF(d);
        if (rc) return -1;
    }
    for (int i = 0; forwarded[i]; i++) {
        PyObject *f = PyObject_GetAttrString(m, forwarded[i]);
        if (!f) {
            PyErr_Clear();
            continue; /* the op is not in the core yet */
        }
        PyObject *meth = PyInstanceMethod_New(f);
        Py_DECREF(f);
        if (!meth || PyDict_SetItemString(PPArray_Type.tp_dict, forwarded[i], meth)) {
            Py_XDECREF(meth);
            return -1;
        }
        Py_DECREF(meth);
    }
    PyType_Modified(&PPArray_Type);
    return 0;
}
