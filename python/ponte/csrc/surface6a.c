/* surface6a.c — mlx.core's surface, part A (issue 4): can_cast, to_fp8/from_fp8, unique,
 * linalg.det/slogdet, fast.cross_entropy and the matrix_norm alias over src/ops/surface6a.c, and
 * the ThreadLocalStream (new_thread_local_stream's result) and ArrayIterator (iter(array)) types. */
#include "pyponte.h"
#include "sigtable.h"

/* ───────────────────────────── functions ───────────────────────────── */

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

/* linalg.slogdet(a, *, stream=None): (sign, logabsdet). */
static PyObject *py_slogdet(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"a", "stream", NULL};
    PyObject *ao, *stream = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:slogdet", kwlist, &ao, &stream)) return NULL;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *a = pp_arr(ao), *s = NULL, *l = NULL;
    int rc = a ? pn_linalg_slogdet(a, &s, &l) : -1;
    pn_release(a);
    pp_stream_exit(pushed);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    PyObject *so = pp_wrap(s), *lo = so ? pp_wrap(l) : (pn_release(l), NULL);
    PyObject *t = so && lo ? PyTuple_Pack(2, so, lo) : NULL;
    Py_XDECREF(so);
    Py_XDECREF(lo);
    return t;
}

static pp_sig core_sigs[] = {
    PP_SIG("to_fp8", a, pn_to_fp8, "x: array, *, stream: stream = None", NULL),
    PP_SIG("from_fp8", at, pn_from_fp8, "x: array, dtype: dtype? = bfloat16, *, stream: stream = None", NULL),
    PP_SIG_END,
};

static pp_sig linalg_sigs[] = {
    PP_SIG("det", a, pn_linalg_det, "a: array, *, stream: stream = None", NULL),
    PP_SIG_END,
};

static pp_sig fast_sigs[] = {
    PP_SIG("cross_entropy", aa, pn_fast_cross_entropy, "logits: array, targets: array, *, stream: stream = None", NULL),
    PP_SIG_END,
};

/* ───────────────────────────── ThreadLocalStream ───────────────────────────── */

/* mlx.core.ThreadLocalStream: a Stream (a fresh one, so it equals no other) that prints with
 * its own creation number and compares by identity, as MLX's. Ponte's streams serve every
 * thread, so one stream stands for all threads. */
typedef struct {
    PPStream base;
    long number;
} PPTLStream;

static const char *const tls_devnames[PN_NUM_DEVICE_TYPES] = {"cpu", "gpu"};

static PyObject *tls_repr(PyObject *self)
{
    pn_device d = ((PPStream *)self)->s.device;
    const char *name = (unsigned)d.type < PN_NUM_DEVICE_TYPES ? tls_devnames[d.type] : "?";
    return PyUnicode_FromFormat("ThreadLocalStream(Device(%s, %d), %ld)", name, d.index, ((PPTLStream *)self)->number);
}
static PyObject *tls_compare(PyObject *a, PyObject *b, int op)
{
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    return PyBool_FromLong((a == b) == (op == Py_EQ));
}
static Py_hash_t tls_hash(PyObject *self)
{
    Py_hash_t h = (Py_hash_t)((uintptr_t)self >> 4);
    return h == -1 ? -2 : h;
}

static PyTypeObject PPTLStream_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.ThreadLocalStream",
    .tp_basicsize = sizeof(PPTLStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A stream that will be unique per thread and can be used to run operations on a given device.",
    .tp_repr = tls_repr,
    .tp_hash = tls_hash,
    .tp_richcompare = tls_compare,
};

/* new_thread_local_stream(device): a ThreadLocalStream over a new stream on the device. */
static PyObject *py_new_thread_local_stream(PyObject *m, PyObject *arg)
{
    static long count;
    pn_device d;
    if (pp_device_of(arg, &d)) return NULL;
    pn_stream s = pn_new_stream(d);
    if (pn_last_error() != PN_OK) return pp_raise();
    PPTLStream *o = PyObject_New(PPTLStream, &PPTLStream_Type);
    if (!o) return NULL;
    o->base.s = s;
    o->number = count++;
    return (PyObject *)o;
}

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

/* ───────────────────────────── module ───────────────────────────── */

#define VK (METH_VARARGS | METH_KEYWORDS)
static PyMethodDef core_methods[] = {
    {"can_cast", (PyCFunction)(void (*)(void))py_can_cast, VK,
     "can_cast(from_, to): whether promoting from_ (an array or Dtype) with to gives to."},
    {"unique", (PyCFunction)(void (*)(void))py_unique, VK,
     "unique(a, /, size, return_index=False, return_inverse=False, return_counts=False, fill_value=None, "
     "*, stream=None): the sorted unique elements of the flattened a at a static size."},
    {"new_thread_local_stream", py_new_thread_local_stream, METH_O,
     "new_thread_local_stream(device): a new ThreadLocalStream on the device."},
    {NULL},
};

static PyMethodDef linalg_methods[] = {
    {"slogdet", (PyCFunction)(void (*)(void))py_slogdet, VK,
     "slogdet(a, *, stream=None): (sign, logabsdet) of the determinant of square matrices."},
    {NULL},
};

/* Adds to m, m.linalg and m.fast (pp_init_ops creates them first): the functions above,
 * matrix_norm (linalg.norm itself, as in MLX) and the ThreadLocalStream and ArrayIterator
 * types; replaces module.c's new_thread_local_stream. 0 or -1. */
int pp_init_surface6a(PyObject *m)
{
    PPTLStream_Type.tp_base = &PPStream_Type;
    if (PyType_Ready(&PPTLStream_Type) || PyType_Ready(&PPArrayIterator_Type) ||
        PyModule_AddObjectRef(m, "ThreadLocalStream", (PyObject *)&PPTLStream_Type) ||
        PyModule_AddObjectRef(m, "ArrayIterator", (PyObject *)&PPArrayIterator_Type) ||
        PyModule_AddFunctions(m, core_methods) || pp_sig_add(m, core_sigs))
        return -1;
    PyObject *linalg = PyObject_GetAttrString(m, "linalg"), *fast = PyObject_GetAttrString(m, "fast");
    PyObject *norm = linalg ? PyObject_GetAttrString(linalg, "norm") : NULL;
    int rc = !fast || !norm || PyModule_AddFunctions(linalg, linalg_methods) || pp_sig_add(linalg, linalg_sigs) ||
                     pp_sig_add(fast, fast_sigs) || PyModule_AddObjectRef(m, "matrix_norm", norm)
                 ? -1
                 : 0;
    Py_XDECREF(norm);
    Py_XDECREF(linalg);
    Py_XDECREF(fast);
    return rc;
}
