/* module.c — ponte.core's module object: error translation, the Dtype / DtypeCategory /
 * finfo / iinfo types, devices and streams (Device, DeviceType, Stream, the stream context),
 * memory statistics, eval, and the module's initialization. */
#include "pyponte.h"

#include "core/core.h" /* buffers, for get_array_buffer_size */

#include <float.h>
#include <math.h>

/* ───────────────────────────── errors ───────────────────────────── */

static PyObject *stash_type, *stash_value, *stash_tb;

int pp_stash_exception(void)
{
    if (PyErr_Occurred()) {
        if (!stash_type) PyErr_Fetch(&stash_type, &stash_value, &stash_tb);
        else PyErr_Clear();
    }
    if (pn_last_error() == PN_OK) pn_set_error(PN_ERR_BACKEND, "[python] The function raised an exception.");
    return -1;
}

void pp_clear_stash(void)
{
    Py_CLEAR(stash_type);
    Py_CLEAR(stash_value);
    Py_CLEAR(stash_tb);
}

PyObject *pp_raise(void)
{
    if (stash_type) {
        PyErr_Restore(stash_type, stash_value, stash_tb);
        stash_type = stash_value = stash_tb = NULL;
        pn_clear_error();
        return NULL;
    }
    if (PyErr_Occurred()) {
        pn_clear_error();
        return NULL;
    }
    PyObject *exc;
    switch (pn_last_error()) {
    case PN_ERR_OUT_OF_MEMORY: exc = PyExc_MemoryError; break;
    case PN_ERR_IO: exc = PyExc_OSError; break;
    case PN_ERR_BACKEND: exc = PyExc_RuntimeError; break;
    case PN_ERR_TYPE: exc = PyExc_TypeError; break;
    case PN_OK: exc = PyExc_RuntimeError; break;
    default: exc = PyExc_ValueError; break;
    }
    const char *msg = pn_last_error_message();
    PyErr_SetString(exc, msg && *msg ? msg : "[ponte] Unknown error.");
    pn_clear_error();
    return NULL;
}

void pp_release_all(pn_array **a, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i]) pn_release(a[i]);
}

/* ───────────────────────────── dtypes ───────────────────────────── */

PyObject *pp_dtype_objs[PN_NUM_DTYPES];

PyObject *pp_dtype_obj(pn_dtype t)
{
    if ((unsigned)t >= PN_NUM_DTYPES) {
        PyErr_SetString(PyExc_ValueError, "Invalid dtype.");
        return NULL;
    }
    Py_INCREF(pp_dtype_objs[t]);
    return pp_dtype_objs[t];
}

int pp_dtype_conv(PyObject *o, void *out)
{
    if (!PyObject_TypeCheck(o, &PPDtype_Type)) {
        PyErr_Format(PyExc_TypeError, "Expected a Dtype, got %s.", Py_TYPE(o)->tp_name);
        return 0;
    }
    *(pn_dtype *)out = ((PPDtype *)o)->dtype;
    return 1;
}

int pp_opt_dtype_conv(PyObject *o, void *out)
{
    if (o == Py_None) {
        *(int *)out = -1;
        return 1;
    }
    pn_dtype t;
    if (!pp_dtype_conv(o, &t)) return 0;
    *(int *)out = (int)t;
    return 1;
}

static PyObject *dtype_repr(PyObject *self)
{
    return PyUnicode_FromFormat("ponte.core.%s", pn_dtype_name(((PPDtype *)self)->dtype));
}

static PyObject *dtype_size(PyObject *self, void *c)
{
    return PyLong_FromSize_t(pn_dtype_size(((PPDtype *)self)->dtype));
}

static Py_hash_t dtype_hash(PyObject *self) { return 1000 + ((PPDtype *)self)->dtype; }

static PyObject *dtype_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &PPDtype_Type)) Py_RETURN_NOTIMPLEMENTED;
    int eq = ((PPDtype *)a)->dtype == ((PPDtype *)b)->dtype;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *dtype_reduce(PyObject *self, PyObject *unused)
{
    const char *name = pn_dtype_name(((PPDtype *)self)->dtype);
    return PyUnicode_FromString(((PPDtype *)self)->dtype == PN_BOOL ? "bool_" : name);
}

static PyGetSetDef dtype_getset[] = {
    {"size", dtype_size, NULL, "Size of one element in bytes.", NULL},
    {NULL},
};
static PyMethodDef dtype_methods[] = {
    {"__reduce__", dtype_reduce, METH_NOARGS, NULL},
    {NULL},
};

PyTypeObject PPDtype_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.Dtype",
    .tp_basicsize = sizeof(PPDtype),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An object that holds the type of the elements of an array.",
    .tp_repr = dtype_repr,
    .tp_hash = dtype_hash,
    .tp_richcompare = dtype_richcompare,
    .tp_getset = dtype_getset,
    .tp_methods = dtype_methods,
};

/* Categories: MLX's names and hierarchy (parent of each). */
static const char *cat_names[] = {"generic", "number", "integer", "unsignedinteger", "signedinteger",
                                  "inexact", "floating", "complexfloating", "bool_"};
static const int cat_parent[] = {-1, PN_CAT_GENERIC, PN_CAT_NUMBER, PN_CAT_INTEGER, PN_CAT_INTEGER,
                                 PN_CAT_NUMBER, PN_CAT_INEXACT, PN_CAT_INEXACT, PN_CAT_GENERIC};
static PyObject *cat_objs[PN_CAT_BOOL + 1];

static PyObject *cat_repr(PyObject *self)
{
    return PyUnicode_FromFormat("DtypeCategory.%s", cat_names[((PPCategory *)self)->cat]);
}
static Py_hash_t cat_hash(PyObject *self) { return 2000 + ((PPCategory *)self)->cat; }
static PyObject *cat_name(PyObject *self, void *c) { return PyUnicode_FromString(cat_names[((PPCategory *)self)->cat]); }
static PyObject *cat_value(PyObject *self, void *c) { return PyLong_FromLong(((PPCategory *)self)->cat); }
static PyGetSetDef cat_getset[] = {{"name", cat_name}, {"value", cat_value}, {NULL}};

PyTypeObject PPCategory_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.DtypeCategory",
    .tp_basicsize = sizeof(PPCategory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A category of dtypes (floating, integer, ...), for issubdtype.",
    .tp_repr = cat_repr,
    .tp_hash = cat_hash,
    .tp_getset = cat_getset,
};

static int cat_is_under(int c, int ancestor)
{
    for (; c >= 0; c = cat_parent[c])
        if (c == ancestor) return 1;
    return 0;
}

static PyObject *py_issubdtype(PyObject *m, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"arg1", "arg2", NULL};
    PyObject *a, *b;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:issubdtype", kwlist, &a, &b)) return NULL;
    int ad = PyObject_TypeCheck(a, &PPDtype_Type), bd = PyObject_TypeCheck(b, &PPDtype_Type);
    int ac = PyObject_TypeCheck(a, &PPCategory_Type), bc = PyObject_TypeCheck(b, &PPCategory_Type);
    if (!(ad || ac) || !(bd || bc)) {
        PyErr_SetString(PyExc_TypeError, "issubdtype() arguments must be Dtype or DtypeCategory.");
        return NULL;
    }
    if (ad && bd) return PyBool_FromLong(((PPDtype *)a)->dtype == ((PPDtype *)b)->dtype);
    if (ad) return PyBool_FromLong(pn_issubdtype(((PPDtype *)a)->dtype, ((PPCategory *)b)->cat));
    if (bd) Py_RETURN_FALSE;
    return PyBool_FromLong(cat_is_under(((PPCategory *)a)->cat, ((PPCategory *)b)->cat));
}

/* finfo / iinfo: plain objects with MLX's attributes. */
typedef struct {
    PyObject_HEAD
    PyObject *min, *max, *eps, *smallest_normal, *bits, *dtype;
} PPInfo;

static void info_dealloc(PyObject *self)
{
    PPInfo *i = (PPInfo *)self;
    Py_XDECREF(i->min);
    Py_XDECREF(i->max);
    Py_XDECREF(i->eps);
    Py_XDECREF(i->smallest_normal);
    Py_XDECREF(i->bits);
    Py_XDECREF(i->dtype);
    Py_TYPE(self)->tp_free(self);
}

#include <structmember.h>
static PyMemberDef finfo_members[] = {
    {"min", T_OBJECT, offsetof(PPInfo, min), READONLY},
    {"max", T_OBJECT, offsetof(PPInfo, max), READONLY},
    {"eps", T_OBJECT, offsetof(PPInfo, eps), READONLY},
    {"smallest_normal", T_OBJECT, offsetof(PPInfo, smallest_normal), READONLY},
    {"bits", T_OBJECT, offsetof(PPInfo, bits), READONLY},
    {"dtype", T_OBJECT, offsetof(PPInfo, dtype), READONLY},
    {NULL},
};
static PyMemberDef iinfo_members[] = {
    {"min", T_OBJECT, offsetof(PPInfo, min), READONLY},
    {"max", T_OBJECT, offsetof(PPInfo, max), READONLY},
    {"dtype", T_OBJECT, offsetof(PPInfo, dtype), READONLY},
    {NULL},
};

static PyObject *info_repr(PyObject *self)
{
    PPInfo *i = (PPInfo *)self;
    const char *name = pn_dtype_name(((PPDtype *)i->dtype)->dtype);
    if (i->eps) {
        char lo[64], hi[64];
        snprintf(lo, sizeof lo, "%g", PyFloat_AsDouble(i->min));
        snprintf(hi, sizeof hi, "%g", PyFloat_AsDouble(i->max));
        return PyUnicode_FromFormat("finfo(min=%s, max=%s, dtype=%s)", lo, hi, name);
    }
    return PyUnicode_FromFormat("iinfo(min=%S, max=%S, dtype=%s)", i->min, i->max, name);
}

static PyObject *finfo_new(PyTypeObject *type, PyObject *args, PyObject *kw);
static PyObject *iinfo_new(PyTypeObject *type, PyObject *args, PyObject *kw);

static PyTypeObject PPFinfo_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.finfo",
    .tp_basicsize = sizeof(PPInfo),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "finfo(dtype): limits of a floating point dtype.",
    .tp_dealloc = info_dealloc,
    .tp_repr = info_repr,
    .tp_members = finfo_members,
    .tp_new = finfo_new,
};
static PyTypeObject PPIinfo_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.iinfo",
    .tp_basicsize = sizeof(PPInfo),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "iinfo(dtype): limits of an integer dtype.",
    .tp_dealloc = info_dealloc,
    .tp_repr = info_repr,
    .tp_members = iinfo_members,
    .tp_new = iinfo_new,
};

static int info_dtype_arg(PyObject *args, pn_dtype *t)
{
    PyObject *o;
    if (!PyArg_ParseTuple(args, "O", &o)) return -1;
    if (PPArray_Check(o)) {
        *t = pn_array_dtype(PPARR(o));
        return 0;
    }
    return pp_dtype_conv(o, t) ? 0 : -1;
}

static PyObject *finfo_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    pn_dtype t;
    if (info_dtype_arg(args, &t)) return NULL;
    if (!pn_issubdtype(t, PN_CAT_INEXACT)) {
        PyErr_Format(PyExc_ValueError, "[finfo] dtype %s is not inexact.", pn_dtype_name(t));
        return NULL;
    }
    if (t == PN_COMPLEX64) t = PN_FLOAT32;
    double mx, eps, tiny;
    int bits;
    switch (t) {
    case PN_FLOAT16: mx = 65504.0, eps = ldexp(1, -10), tiny = ldexp(1, -14), bits = 16; break;
    case PN_BFLOAT16: mx = ldexp(1.9921875, 127), eps = ldexp(1, -7), tiny = ldexp(1, -126), bits = 16; break;
    case PN_FLOAT64: mx = DBL_MAX, eps = DBL_EPSILON, tiny = DBL_MIN, bits = 64; break;
    default: mx = FLT_MAX, eps = FLT_EPSILON, tiny = FLT_MIN, bits = 32; break;
    }
    PPInfo *i = (PPInfo *)type->tp_alloc(type, 0);
    if (!i) return NULL;
    i->min = PyFloat_FromDouble(-mx);
    i->max = PyFloat_FromDouble(mx);
    i->eps = PyFloat_FromDouble(eps);
    i->smallest_normal = PyFloat_FromDouble(tiny);
    i->bits = PyLong_FromLong(bits);
    i->dtype = pp_dtype_obj(t);
    if (!i->min || !i->max || !i->eps || !i->smallest_normal || !i->bits || !i->dtype) {
        Py_DECREF(i);
        return NULL;
    }
    return (PyObject *)i;
}

static PyObject *iinfo_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    pn_dtype t;
    if (info_dtype_arg(args, &t)) return NULL;
    if (!pn_issubdtype(t, PN_CAT_INTEGER)) {
        PyErr_Format(PyExc_ValueError, "[iinfo] Only integer types supported but %s was provided",
                     pn_dtype_name(t));
        return NULL;
    }
    PPInfo *i = (PPInfo *)type->tp_alloc(type, 0);
    if (!i) return NULL;
    int bits = (int)pn_dtype_size(t) * 8;
    if (pn_issubdtype(t, PN_CAT_UNSIGNEDINTEGER)) {
        i->min = PyLong_FromLong(0);
        i->max = PyLong_FromUnsignedLongLong(bits == 64 ? UINT64_MAX : ((1ULL << bits) - 1));
    } else {
        i->min = PyLong_FromLongLong(bits == 64 ? INT64_MIN : -(1LL << (bits - 1)));
        i->max = PyLong_FromLongLong(bits == 64 ? INT64_MAX : (1LL << (bits - 1)) - 1);
    }
    i->dtype = pp_dtype_obj(t);
    if (!i->min || !i->max || !i->dtype) {
        Py_DECREF(i);
        return NULL;
    }
    return (PyObject *)i;
}

/* ───────────────────────────── devices and streams ───────────────────────────── */

static PyObject *devtype_objs[PN_NUM_DEVICE_TYPES];
static const char *devtype_names[] = {"cpu", "gpu"};

static PyObject *devtype_repr(PyObject *self)
{
    return PyUnicode_FromFormat("DeviceType.%s", devtype_names[((PPDeviceType *)self)->type]);
}
static Py_hash_t devtype_hash(PyObject *self) { return 3000 + ((PPDeviceType *)self)->type; }
static PyObject *devtype_name(PyObject *self, void *c) { return PyUnicode_FromString(devtype_names[((PPDeviceType *)self)->type]); }
static PyObject *devtype_value(PyObject *self, void *c) { return PyLong_FromLong(((PPDeviceType *)self)->type); }
static PyGetSetDef devtype_getset[] = {{"name", devtype_name}, {"value", devtype_value}, {NULL}};

int pp_device_of(PyObject *o, pn_device *d)
{
    if (PyObject_TypeCheck(o, &PPDevice_Type)) {
        *d = ((PPDevice *)o)->dev;
        return 0;
    }
    if (PyObject_TypeCheck(o, &PPDeviceType_Type)) {
        d->type = ((PPDeviceType *)o)->type;
        d->index = 0;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "Expected a Device or DeviceType, got %s.", Py_TYPE(o)->tp_name);
    return -1;
}

static PyObject *device_like_compare(PyObject *a, PyObject *b, int op)
{
    pn_device x, y;
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    if (pp_device_of(a, &x) || pp_device_of(b, &y)) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int eq = x.type == y.type && x.index == y.index;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

PyTypeObject PPDeviceType_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.DeviceType",
    .tp_basicsize = sizeof(PPDeviceType),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The kind of a device: cpu or gpu.",
    .tp_repr = devtype_repr,
    .tp_hash = devtype_hash,
    .tp_richcompare = device_like_compare,
    .tp_getset = devtype_getset,
};

PyObject *pp_device_obj(pn_device d)
{
    PPDevice *o = PyObject_New(PPDevice, &PPDevice_Type);
    if (o) o->dev = d;
    return (PyObject *)o;
}

static PyObject *device_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"type", "index", NULL};
    PyObject *t;
    int index = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|i:Device", kwlist, &PPDeviceType_Type, &t, &index))
        return NULL;
    pn_device d = {((PPDeviceType *)t)->type, index};
    return pp_device_obj(d);
}

static PyObject *device_repr(PyObject *self)
{
    pn_device d = ((PPDevice *)self)->dev;
    return PyUnicode_FromFormat("Device(%s, %d)", devtype_names[d.type], d.index);
}
static Py_hash_t device_hash(PyObject *self)
{
    pn_device d = ((PPDevice *)self)->dev;
    return 3000 + d.type + 16 * d.index;
}
static PyObject *device_type(PyObject *self, void *c)
{
    PyObject *t = devtype_objs[((PPDevice *)self)->dev.type];
    Py_INCREF(t);
    return t;
}
static PyGetSetDef device_getset[] = {{"type", device_type}, {NULL}};

PyTypeObject PPDevice_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.Device",
    .tp_basicsize = sizeof(PPDevice),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A device to run operations on.",
    .tp_new = device_new,
    .tp_repr = device_repr,
    .tp_hash = device_hash,
    .tp_richcompare = device_like_compare,
    .tp_getset = device_getset,
};

PyObject *pp_stream_obj(pn_stream s)
{
    PPStream *o = PyObject_New(PPStream, &PPStream_Type);
    if (o) o->s = s;
    return (PyObject *)o;
}

static PyObject *stream_repr(PyObject *self)
{
    pn_stream s = ((PPStream *)self)->s;
    return PyUnicode_FromFormat("Stream(Device(%s, %d), %d)", devtype_names[s.device.type],
                                s.device.index, s.index);
}
static PyObject *stream_compare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &PPStream_Type)) Py_RETURN_NOTIMPLEMENTED;
    pn_stream x = ((PPStream *)a)->s, y = ((PPStream *)b)->s;
    int eq = x.index == y.index && x.device.type == y.device.type && x.device.index == y.device.index;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}
static Py_hash_t stream_hash(PyObject *self) { return 5000 + ((PPStream *)self)->s.index; }
static PyObject *stream_device(PyObject *self, void *c) { return pp_device_obj(((PPStream *)self)->s.device); }
static PyObject *stream_index(PyObject *self, void *c) { return PyLong_FromLong(((PPStream *)self)->s.index); }
static PyGetSetDef stream_getset[] = {{"device", stream_device}, {"index", stream_index}, {NULL}};

PyTypeObject PPStream_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.Stream",
    .tp_basicsize = sizeof(PPStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A stream of operations on a device.",
    .tp_repr = stream_repr,
    .tp_hash = stream_hash,
    .tp_richcompare = stream_compare,
    .tp_getset = stream_getset,
};

/* Resolves None / Stream / Device / DeviceType to a stream: 1 found, 0 None, -1 error. */
static int stream_of(PyObject *o, pn_stream *s)
{
    if (!o || o == Py_None) return 0;
    if (PyObject_TypeCheck(o, &PPStream_Type)) {
        *s = ((PPStream *)o)->s;
        return 1;
    }
    pn_device d;
    if (pp_device_of(o, &d)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "Expected a Stream, Device or DeviceType, got %s.",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (!pn_is_available(d)) {
        PyErr_Format(PyExc_ValueError, "[stream] Device %s:%d is not available.", devtype_names[d.type],
                     d.index);
        return -1;
    }
    *s = pn_default_stream(d);
    return 1;
}

int pp_stream_enter(PyObject *stream)
{
    pn_stream s;
    int k = stream_of(stream, &s);
    if (k <= 0) return k;
    if (pn_stream_push(s)) {
        pp_raise();
        return -1;
    }
    return 1;
}

void pp_stream_exit(int pushed)
{
    if (pushed > 0) pn_stream_pop();
}

/* The object mx.stream(s) returns: a context manager. */
typedef struct {
    PyObject_HEAD
    pn_stream s;
    int depth;
} PPStreamContext;

static PyObject *sctx_enter(PyObject *self, PyObject *unused)
{
    PPStreamContext *c = (PPStreamContext *)self;
    if (pn_stream_push(c->s)) return pp_raise();
    c->depth++;
    Py_RETURN_NONE;
}

static PyObject *sctx_exit(PyObject *self, PyObject *args)
{
    PPStreamContext *c = (PPStreamContext *)self;
    if (c->depth > 0) {
        c->depth--;
        pn_stream_pop();
    }
    Py_RETURN_FALSE;
}

static PyMethodDef sctx_methods[] = {
    {"__enter__", sctx_enter, METH_NOARGS, NULL},
    {"__exit__", sctx_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject PPStreamContext_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.StreamContext",
    .tp_basicsize = sizeof(PPStreamContext),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context manager that makes a stream current for the operations inside it.",
    .tp_methods = sctx_methods,
};

static PyObject *py_stream(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"s", NULL};
    PyObject *o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:stream", kwlist, &o)) return NULL;
    pn_stream s;
    int k = stream_of(o, &s);
    if (k < 0) return NULL;
    if (k == 0) s = pn_current_stream();
    PPStreamContext *c = PyObject_New(PPStreamContext, &PPStreamContext_Type);
    if (!c) return NULL;
    c->s = s;
    c->depth = 0;
    return (PyObject *)c;
}

static PyObject *py_default_device(PyObject *m, PyObject *unused) { return pp_device_obj(pn_default_device()); }

static PyObject *py_set_default_device(PyObject *m, PyObject *arg)
{
    pn_device d;
    if (pp_device_of(arg, &d)) return NULL;
    if (pn_set_default_device(d)) return pp_raise();
    Py_RETURN_NONE;
}

static PyObject *py_is_available(PyObject *m, PyObject *arg)
{
    pn_device d;
    if (pp_device_of(arg, &d)) return NULL;
    return PyBool_FromLong(pn_is_available(d));
}

static PyObject *py_device_count(PyObject *m, PyObject *arg)
{
    pn_device d;
    if (pp_device_of(arg, &d)) return NULL;
    return PyLong_FromLong(pn_device_count(d.type));
}

/* The device of a default_stream / new_stream call (what: MLX's message), ValueError as MLX's
 * when there is no such device (a build without a GPU backend, or no usable GPU). 0 or -1. */
static int stream_device_of(PyObject *arg, pn_device *d, const char *what)
{
    if (pp_device_of(arg, d)) return -1;
    if (pn_is_available(*d)) return 0;
    if (pn_device_count(d->type) > 0) /* the backend is there, the index is not */
        PyErr_Format(PyExc_ValueError, "%s stream on Device(%s, %d): there are %d %s devices.", what,
                     devtype_names[d->type], d->index, pn_device_count(d->type), devtype_names[d->type]);
    else
        PyErr_Format(PyExc_ValueError, "%s %s stream without %s backend.", what, devtype_names[d->type],
                     devtype_names[d->type]);
    return -1;
}

static PyObject *py_default_stream(PyObject *m, PyObject *arg)
{
    pn_device d;
    if (stream_device_of(arg, &d, "[default_stream] Cannot get")) return NULL;
    return pp_stream_obj(pn_default_stream(d));
}

static PyObject *py_new_stream(PyObject *m, PyObject *arg)
{
    pn_device d;
    if (stream_device_of(arg, &d, "[new_stream] Cannot make")) return NULL;
    pn_stream s = pn_new_stream(d);
    if (pn_last_error() != PN_OK) return pp_raise();
    return pp_stream_obj(s);
}

static PyObject *py_synchronize(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"stream", NULL};
    PyObject *o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:synchronize", kwlist, &o)) return NULL;
    pn_stream s;
    int k = stream_of(o, &s);
    if (k < 0) return NULL;
    if (k == 0) s = pn_current_stream();
    if (pn_synchronize(s)) return pp_raise();
    Py_RETURN_NONE;
}

static PyObject *py_gpu_is_available(PyObject *m, PyObject *unused) { return PyBool_FromLong(pn_gpu_available()); }
static PyObject *py_false(PyObject *m, PyObject *unused) { Py_RETURN_FALSE; }

/* metal.start_capture(path) / stop_capture(): nothing to capture without Metal; None, as MLX
 * gives on Linux. */
static PyObject *py_metal_capture(PyObject *m, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", NULL};
    const char *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|s:capture", kwlist, &path)) return NULL;
    Py_RETURN_NONE;
}

/* ───────────────────────────── memory ───────────────────────────── */

static PyObject *py_get_active_memory(PyObject *m, PyObject *u) { return PyLong_FromSize_t(pn_get_active_memory()); }
static PyObject *py_get_peak_memory(PyObject *m, PyObject *u) { return PyLong_FromSize_t(pn_get_peak_memory()); }
static PyObject *py_get_cache_memory(PyObject *m, PyObject *u) { return PyLong_FromSize_t(pn_get_cache_memory()); }
static PyObject *py_reset_peak_memory(PyObject *m, PyObject *u)
{
    pn_reset_peak_memory();
    Py_RETURN_NONE;
}
static PyObject *py_clear_cache(PyObject *m, PyObject *u)
{
    pn_clear_cache();
    Py_RETURN_NONE;
}

/* get_array_buffer_size(*trees): the allocated bytes (size class) of the distinct buffers behind
 * the evaluated arrays among the leaves. */
static PyObject *py_get_array_buffer_size(PyObject *m, PyObject *args)
{
    PyObject *list = PyList_New(0);
    if (!list || pp_tree_flatten(args, list, 0)) {
        Py_XDECREF(list);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    const pnC_buffer **seen = PyMem_Malloc((size_t)(n + 1) * sizeof *seen);
    size_t total = 0;
    Py_ssize_t nseen = 0;
    for (Py_ssize_t i = 0; seen && i < n; i++) {
        pn_array *a = PPARR(PyList_GET_ITEM(list, i));
        if (!pn_is_evaluated(a) || !a->buf) {
            PyErr_SetString(PyExc_ValueError, "[get_array_buffer_size] Arrays must be evaluated.");
            break;
        }
        Py_ssize_t k = 0;
        while (k < nseen && seen[k] != a->buf) k++;
        if (k < nseen) continue;
        seen[nseen++] = a->buf;
        /* capacity is the host size class; a buffer only on the device has none yet */
        total += a->buf->capacity > a->buf->nbytes ? a->buf->capacity : a->buf->nbytes;
    }
    if (!seen) PyErr_NoMemory();
    PyMem_Free(seen);
    Py_DECREF(list);
    return PyErr_Occurred() ? NULL : PyLong_FromSize_t(total);
}

static int size_arg(PyObject *o, size_t *v)
{
    PyObject *i = pp_index(o, "limit"), *zero = i ? PyLong_FromLong(0) : NULL;
    int neg = zero ? PyObject_RichCompareBool(i, zero, Py_LT) : -1;
    *v = neg == 0 ? PyLong_AsSize_t(i) : 0;
    Py_XDECREF(zero);
    Py_XDECREF(i);
    if (neg < 0) return -1;
    if (neg) {
        PyErr_SetString(PyExc_ValueError, "The limit must be non-negative.");
        return -1;
    }
    return *v == (size_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *py_set_memory_limit(PyObject *m, PyObject *o)
{
    size_t v;
    if (size_arg(o, &v)) return NULL;
    return PyLong_FromSize_t(pn_set_memory_limit(v));
}
static PyObject *py_set_cache_limit(PyObject *m, PyObject *o)
{
    size_t v;
    if (size_arg(o, &v)) return NULL;
    return PyLong_FromSize_t(pn_set_cache_limit(v));
}
static PyObject *py_get_memory_limit(PyObject *m, PyObject *u)
{
    return PyLong_FromSize_t(pn_get_memory_limit());
}
static PyObject *py_set_wired_limit(PyObject *m, PyObject *o)
{
    size_t v;
    if (size_arg(o, &v)) return NULL;
    return PyLong_FromLong(0);
}

/* ───────────────────────────── print options ───────────────────────────── */

/* mx.PrintOptions: a copy of the print options (changing it changes nothing global, as MLX). */
typedef struct {
    PyObject_HEAD
    int precision;
} PPPrintOptions;

static PyMemberDef popts_members[] = {
    {"precision", T_INT, offsetof(PPPrintOptions, precision), 0, "Decimals of floats (-1: default form)."},
    {NULL},
};

static PyTypeObject PPPrintOptions_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.PrintOptions",
    .tp_basicsize = sizeof(PPPrintOptions),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The options used to print arrays (get_printoptions()).",
    .tp_members = popts_members,
};

/* mx.printoptions(precision): sets the options on __enter__, restores the previous on __exit__. */
typedef struct {
    PyObject_HEAD
    pn_print_options options, saved[16];
    int depth;
} PPPrintContext;

static PyObject *pctx_enter(PyObject *self, PyObject *unused)
{
    PPPrintContext *c = (PPPrintContext *)self;
    if (c->depth == (int)(sizeof c->saved / sizeof c->saved[0])) {
        PyErr_SetString(PyExc_RuntimeError, "[printoptions] The context is entered too many times.");
        return NULL;
    }
    c->saved[c->depth++] = pn_get_print_options();
    pn_set_print_options(c->options);
    Py_INCREF(self);
    return self;
}

static PyObject *pctx_exit(PyObject *self, PyObject *args)
{
    PPPrintContext *c = (PPPrintContext *)self;
    if (c->depth > 0) pn_set_print_options(c->saved[--c->depth]);
    Py_RETURN_FALSE;
}

static PyMethodDef pctx_methods[] = {
    {"__enter__", pctx_enter, METH_NOARGS, NULL},
    {"__exit__", pctx_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject PPPrintContext_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core._PrintOptionsContext",
    .tp_basicsize = sizeof(PPPrintContext),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context manager that sets print options inside it (mx.printoptions).",
    .tp_methods = pctx_methods,
};

static int precision_arg(PyObject *args, PyObject *kw, const char *fmt, int *precision)
{
    static char *kwlist[] = {"precision", NULL};
    *precision = -1;
    return PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, precision) ? 0 : -1;
}

static PyObject *py_set_printoptions(PyObject *m, PyObject *args, PyObject *kw)
{
    int precision;
    if (precision_arg(args, kw, "|i:set_printoptions", &precision)) return NULL;
    pn_set_print_options((pn_print_options){.precision = precision});
    Py_RETURN_NONE;
}

static PyObject *py_get_printoptions(PyObject *m, PyObject *unused)
{
    PPPrintOptions *o = PyObject_New(PPPrintOptions, &PPPrintOptions_Type);
    if (o) o->precision = pn_get_print_options().precision;
    return (PyObject *)o;
}

static PyObject *py_printoptions(PyObject *m, PyObject *args, PyObject *kw)
{
    int precision;
    if (precision_arg(args, kw, "|i:printoptions", &precision)) return NULL;
    PPPrintContext *c = PyObject_New(PPPrintContext, &PPPrintContext_Type);
    if (!c) return NULL;
    c->options = (pn_print_options){.precision = precision};
    c->depth = 0;
    return (PyObject *)c;
}

/* ───────────────────────────── eval ───────────────────────────── */

static PyObject *eval_impl(PyObject *args, int async)
{
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    if (pp_tree_flatten(args, list, 0)) {
        Py_DECREF(list);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    pn_array *stack[16], **arr = n <= 16 ? stack : PyMem_Malloc((size_t)n * sizeof *arr);
    if (!arr) {
        Py_DECREF(list);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) arr[i] = PPARR(PyList_GET_ITEM(list, i));
    int rc = n == 0 ? 0 : async ? pn_async_eval(arr, (int)n) : pn_eval(arr, (int)n);
    if (arr != stack) PyMem_Free(arr);
    Py_DECREF(list);
    if (rc) return pp_raise();
    Py_RETURN_NONE;
}

static PyObject *py_eval(PyObject *m, PyObject *args) { return eval_impl(args, 0); }
static PyObject *py_async_eval(PyObject *m, PyObject *args) { return eval_impl(args, 1); }

/* ───────────────────────────── module ───────────────────────────── */

static PyObject *py_set_default_stream(PyObject *m, PyObject *arg)
{
    if (!PyObject_TypeCheck(arg, &PPStream_Type)) {
        PyErr_Format(PyExc_TypeError, "set_default_stream() expects a Stream, got %s.",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (pn_set_default_stream(((PPStream *)arg)->s)) return pp_raise();
    Py_RETURN_NONE;
}

PP_ONE_ARG(kw_set_default_stream, py_set_default_stream, "set_default_stream", "stream")
PP_ONE_ARG(kw_set_default_device, py_set_default_device, "set_default_device", "device")
PP_ONE_ARG(kw_is_available, py_is_available, "is_available", "device")
PP_ONE_ARG(kw_device_count, py_device_count, "device_count", "device_type")
PP_ONE_ARG(kw_default_stream, py_default_stream, "default_stream", "device")
PP_ONE_ARG(kw_new_stream, py_new_stream, "new_stream", "device")
PP_ONE_ARG(kw_new_thread_unsafe_stream, py_new_stream, "new_thread_unsafe_stream", "device")
PP_ONE_ARG(kw_set_memory_limit, py_set_memory_limit, "set_memory_limit", "limit")
PP_ONE_ARG(kw_set_cache_limit, py_set_cache_limit, "set_cache_limit", "limit")
PP_ONE_ARG(kw_set_wired_limit, py_set_wired_limit, "set_wired_limit", "limit")

static PyMethodDef module_methods[] = {
    PP_ONE_ARG_METHOD("set_default_stream", kw_set_default_stream, "Makes a stream the default of its device."),
    {"issubdtype", (PyCFunction)(void (*)(void))py_issubdtype, METH_VARARGS | METH_KEYWORDS,
     "issubdtype(arg1, arg2): whether arg1 is a subtype of arg2."},
    {"stream", (PyCFunction)(void (*)(void))py_stream, METH_VARARGS | METH_KEYWORDS,
     "stream(s): a context manager making s the default stream inside it."},
    {"default_device", py_default_device, METH_NOARGS, "The default device."},
    PP_ONE_ARG_METHOD("set_default_device", kw_set_default_device, "Sets the default device."),
    PP_ONE_ARG_METHOD("is_available", kw_is_available, "Whether a device is available."),
    PP_ONE_ARG_METHOD("device_count", kw_device_count, "The number of devices of a type."),
    PP_ONE_ARG_METHOD("default_stream", kw_default_stream, "The default stream of a device."),
    PP_ONE_ARG_METHOD("new_stream", kw_new_stream, "A new stream on a device."),
    PP_ONE_ARG_METHOD("new_thread_unsafe_stream", kw_new_thread_unsafe_stream,
                      "A new stream on a device (Ponte's streams work from any thread: new_stream)."),
    {"synchronize", (PyCFunction)(void (*)(void))py_synchronize, METH_VARARGS | METH_KEYWORDS,
     "Waits until the stream's work is done."},
    {"get_active_memory", py_get_active_memory, METH_NOARGS, "Bytes held by live arrays."},
    {"get_peak_memory", py_get_peak_memory, METH_NOARGS, "The peak of active memory."},
    {"reset_peak_memory", py_reset_peak_memory, METH_NOARGS, "Resets the peak memory to zero."},
    {"get_cache_memory", py_get_cache_memory, METH_NOARGS, "Bytes held in the allocator's cache."},
    {"clear_cache", py_clear_cache, METH_NOARGS, "Returns cached buffers to the system."},
    {"get_array_buffer_size", py_get_array_buffer_size, METH_VARARGS,
     "get_array_buffer_size(*args): bytes of the distinct buffers behind the evaluated arrays."},
    PP_ONE_ARG_METHOD("set_memory_limit", kw_set_memory_limit, "Sets the memory limit; returns the old one."),
    {"get_memory_limit", py_get_memory_limit, METH_NOARGS, "The memory limit (0: none)."},
    PP_ONE_ARG_METHOD("set_cache_limit", kw_set_cache_limit, "Sets the cache limit; returns the old one."),
    PP_ONE_ARG_METHOD("set_wired_limit", kw_set_wired_limit, "Accepted for compatibility (no effect)."),
    {"set_printoptions", (PyCFunction)(void (*)(void))py_set_printoptions, METH_VARARGS | METH_KEYWORDS,
     "set_printoptions(precision=-1): decimals of printed floats (-1: the default form)."},
    {"get_printoptions", py_get_printoptions, METH_NOARGS, "The current print options (a copy)."},
    {"printoptions", (PyCFunction)(void (*)(void))py_printoptions, METH_VARARGS | METH_KEYWORDS,
     "printoptions(precision=-1): a context manager setting the print options inside it."},
    {"eval", py_eval, METH_VARARGS, "eval(*args): evaluates the arrays in the given trees."},
    {"async_eval", py_async_eval, METH_VARARGS, "async_eval(*args): starts evaluating the arrays."},
    {NULL},
};

static PyMethodDef cuda_methods[] = {
    {"is_available", py_gpu_is_available, METH_NOARGS, "Whether a CUDA GPU is usable."},
    {NULL},
};
static PyMethodDef metal_methods[] = {
    {"is_available", py_false, METH_NOARGS, "Metal is never available in Ponte."},
    {"get_active_memory", py_get_active_memory, METH_NOARGS, NULL},
    {"get_peak_memory", py_get_peak_memory, METH_NOARGS, NULL},
    {"get_cache_memory", py_get_cache_memory, METH_NOARGS, NULL},
    {"reset_peak_memory", py_reset_peak_memory, METH_NOARGS, NULL},
    {"clear_cache", py_clear_cache, METH_NOARGS, NULL},
    PP_ONE_ARG_METHOD("set_memory_limit", kw_set_memory_limit, NULL),
    PP_ONE_ARG_METHOD("set_cache_limit", kw_set_cache_limit, NULL),
    PP_ONE_ARG_METHOD("set_wired_limit", kw_set_wired_limit, "Accepted for compatibility (no effect)."),
    {"start_capture", (PyCFunction)(void (*)(void))py_metal_capture, METH_VARARGS | METH_KEYWORDS,
     "No Metal capture in Ponte: does nothing."},
    {"stop_capture", (PyCFunction)(void (*)(void))py_metal_capture, METH_VARARGS | METH_KEYWORDS,
     "No Metal capture in Ponte: does nothing."},
    {NULL},
};

PyObject *pp_submodule(PyObject *m, const char *name, PyMethodDef *methods, const char *doc)
{
    char full[128];
    snprintf(full, sizeof full, "ponte.core.%s", name);
    PyObject *sub = PyModule_New(full);
    if (!sub) return NULL;
    if ((doc && PyModule_SetDocString(sub, doc)) ||
        (methods && PyModule_AddFunctions(sub, methods))) {
        Py_DECREF(sub);
        return NULL;
    }
    PyObject *mods = PyImport_GetModuleDict();
    if (PyDict_SetItemString(mods, full, sub) || PyModule_AddObjectRef(m, name, sub)) {
        Py_DECREF(sub);
        return NULL;
    }
    Py_DECREF(sub);
    return sub; /* borrowed: the module keeps it */
}

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t)) return -1;
    return name ? PyModule_AddObjectRef(m, name, (PyObject *)t) : 0;
}

int pp_init_types(PyObject *m)
{
    if (add_type(m, &PPDtype_Type, "Dtype") || add_type(m, &PPCategory_Type, "DtypeCategory") ||
        add_type(m, &PPFinfo_Type, "finfo") || add_type(m, &PPIinfo_Type, "iinfo") ||
        add_type(m, &PPDeviceType_Type, "DeviceType") || add_type(m, &PPDevice_Type, "Device") ||
        add_type(m, &PPStream_Type, "Stream") || add_type(m, &PPStreamContext_Type, "StreamContext") ||
        add_type(m, &PPPrintOptions_Type, "PrintOptions") ||
        add_type(m, &PPPrintContext_Type, "_PrintOptionsContext"))
        return -1;
    for (int t = 0; t < PN_NUM_DTYPES; t++) {
        PPDtype *d = PyObject_New(PPDtype, &PPDtype_Type);
        if (!d) return -1;
        d->dtype = (pn_dtype)t;
        pp_dtype_objs[t] = (PyObject *)d;
        const char *name = t == PN_BOOL ? "bool_" : pn_dtype_name((pn_dtype)t);
        if (PyModule_AddObjectRef(m, name, (PyObject *)d)) return -1;
    }
    for (int c = 0; c <= PN_CAT_BOOL; c++) {
        PPCategory *o = PyObject_New(PPCategory, &PPCategory_Type);
        if (!o) return -1;
        o->cat = (pn_dtype_category)c;
        cat_objs[c] = (PyObject *)o;
        if (c != PN_CAT_BOOL && PyModule_AddObjectRef(m, cat_names[c], (PyObject *)o)) return -1;
        if (PyDict_SetItemString(PPCategory_Type.tp_dict, cat_names[c], (PyObject *)o)) return -1;
    }
    for (int t = 0; t < PN_NUM_DEVICE_TYPES; t++) {
        PPDeviceType *o = PyObject_New(PPDeviceType, &PPDeviceType_Type);
        if (!o) return -1;
        o->type = (pn_device_type)t;
        devtype_objs[t] = (PyObject *)o;
        if (PyModule_AddObjectRef(m, devtype_names[t], (PyObject *)o) ||
            PyDict_SetItemString(PPDeviceType_Type.tp_dict, devtype_names[t], (PyObject *)o))
            return -1;
    }
    PyType_Modified(&PPCategory_Type);
    PyType_Modified(&PPDeviceType_Type);
    if (PyModule_AddFunctions(m, module_methods)) return -1;
    if (!pp_submodule(m, "cuda", cuda_methods, "CUDA backend queries.") ||
        !pp_submodule(m, "metal", metal_methods, "Metal is not part of Ponte; is_available() is False."))
        return -1;
    if (PyModule_AddObjectRef(m, "newaxis", Py_None) ||
        PyModule_AddObject(m, "pi", PyFloat_FromDouble(M_PI)) ||
        PyModule_AddObject(m, "e", PyFloat_FromDouble(M_E)) ||
        PyModule_AddObject(m, "euler_gamma", PyFloat_FromDouble(0.5772156649015329)) ||
        PyModule_AddObject(m, "inf", PyFloat_FromDouble(INFINITY)) ||
        PyModule_AddObject(m, "nan", PyFloat_FromDouble(NAN)) ||
        PyModule_AddStringConstant(m, "__version__", "0.1.0"))
        return -1;
    return 0;
}

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "ponte.core",
    "ponte.core: lazy arrays, ops and function transformations with mlx.core's API.", -1, NULL,
};

PyMODINIT_FUNC PyInit_core(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (!m) return NULL;
    if (pp_init_types(m) || pp_init_array(m) || pp_init_ops(m) || pp_init_transforms(m) ||
        pp_init_nn(m) || pp_init_quantized(m) || pp_init_fft(m) ||
        pp_init_linalg_decomp(m) || pp_init_export(m) || pp_init_io(m) || pp_init_device_state(m) ||
        pp_init_distributed(m) || pp_init_custom_kernel(m) || pp_init_compile(m)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
