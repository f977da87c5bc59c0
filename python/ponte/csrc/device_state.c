/* device_state.c — mlx.core's device and stream queries and the random state: device_info
 * (and metal.device_info), clear_streams, new_thread_local_stream and its ThreadLocalStream
 * type, and random.state, over pn_get_device_info, pn_new_stream, pn_set_default_stream and
 * pn_random_state. */
#include "pyponte.h"

/* device_info(d=None): a dict of the device's properties as mlx.core.device_info gives them:
 * device_name and architecture, with memory_size and free_memory (CPU, bytes) or total_memory
 * and free_memory (GPU, as MLX's CUDA backend). {} for a device that is not available. */
static PyObject *py_device_info(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"d", NULL};
    PyObject *o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &o)) return NULL;
    pn_device d = pn_default_device();
    if (o != Py_None && pp_device_of(o, &d)) return NULL;
    if (!pn_is_available(d)) return PyDict_New();
    pn_device_info info;
    if (pn_get_device_info(d, &info)) return pp_raise();
    int gpu = d.type == PN_GPU;
    return Py_BuildValue("{s:s,s:s,s:K,s:K}", "device_name", info.name, "architecture", info.architecture,
                         gpu ? "total_memory" : "memory_size", (unsigned long long)info.memory_size,
                         "free_memory", (unsigned long long)info.free_memory);
}

/* metal.device_info(): Metal is never available in Ponte, so {} (as MLX without Metal). */
static PyObject *py_metal_device_info(PyObject *m, PyObject *unused) { return PyDict_New(); }

/* clear_streams(): Ponte's streams hold no resources, so this only makes each device's
 * default stream the original one again (index 0 on the CPU, 1 on the GPU). */
static PyObject *py_clear_streams(PyObject *m, PyObject *unused)
{
    for (int t = 0; t < PN_NUM_DEVICE_TYPES; t++) {
        pn_stream s = {.index = t, .device = {.type = (pn_device_type)t, .index = 0}};
        if (pn_is_available(s.device) && pn_set_default_stream(s)) return pp_raise();
    }
    Py_RETURN_NONE;
}

/* random.state: a one-entry sequence whose item is the current global key (MLX's list of the
 * global random state), read afresh at each access so seeding and draws show. */
static Py_ssize_t state_len(PyObject *self) { return 1; }
static PyObject *state_item(PyObject *self, Py_ssize_t i)
{
    if (i != 0 && i != -1) {
        PyErr_SetString(PyExc_IndexError, "random.state index out of range");
        return NULL;
    }
    return pp_wrap(pn_random_state());
}
static PyObject *state_repr(PyObject *self)
{
    PyObject *k = state_item(self, 0), *r = k ? PyUnicode_FromFormat("[%R]", k) : NULL;
    Py_XDECREF(k);
    return r;
}
static PySequenceMethods state_seq = {.sq_length = state_len, .sq_item = state_item};
static PyTypeObject RandomState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.random._RandomState",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The global random state: [key].",
    .tp_as_sequence = &state_seq,
    .tp_repr = state_repr,
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

PP_ONE_ARG(kw_new_thread_local_stream, py_new_thread_local_stream, "new_thread_local_stream", "device")

static PyMethodDef device_state_methods[] = {
    {"device_info", (PyCFunction)(void (*)(void))py_device_info, METH_VARARGS | METH_KEYWORDS,
     "device_info(d=None): the device's properties (device_name, architecture, memory)."},
    {"clear_streams", py_clear_streams, METH_NOARGS, "Makes the devices' default streams the original ones."},
    PP_ONE_ARG_METHOD("new_thread_local_stream", kw_new_thread_local_stream,
                      "new_thread_local_stream(device): a new ThreadLocalStream on the device."),
    {NULL},
};

static PyMethodDef metal_methods[] = {
    {"device_info", py_metal_device_info, METH_NOARGS, "Metal is not part of Ponte: {}."},
    {NULL},
};

/* Adds the functions above and the ThreadLocalStream type to m, metal.device_info to m.metal
 * and random.state to m.random (pp_init_ops and pp_init_types create those submodules first).
 * 0 or -1. */
int pp_init_device_state(PyObject *m)
{
    PPTLStream_Type.tp_base = &PPStream_Type;
    if (PyType_Ready(&PPTLStream_Type) ||
        PyModule_AddObjectRef(m, "ThreadLocalStream", (PyObject *)&PPTLStream_Type) ||
        PyModule_AddFunctions(m, device_state_methods) || PyType_Ready(&RandomState_Type))
        return -1;
    PyObject *metal = PyObject_GetAttrString(m, "metal");
    int rc = metal ? PyModule_AddFunctions(metal, metal_methods) : -1;
    Py_XDECREF(metal);
    PyObject *random = rc ? NULL : PyObject_GetAttrString(m, "random");
    PyObject *state = random ? PyType_GenericAlloc(&RandomState_Type, 0) : NULL;
    rc = state ? PyModule_AddObject(random, "state", state) : -1;
    if (rc) Py_XDECREF(state);
    Py_XDECREF(random);
    return rc;
}
