/* surface3.c — mlx.core's device and stream queries and the random state (issue 4):
 * device_info (and metal.device_info), clear_streams and random.state, over
 * pn_get_device_info, pn_set_default_stream and pn_random_state (new_thread_local_stream is
 * module.c's new_stream under that name). */
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

static PyMethodDef surface3_methods[] = {
    {"device_info", (PyCFunction)(void (*)(void))py_device_info, METH_VARARGS | METH_KEYWORDS,
     "device_info(d=None): the device's properties (device_name, architecture, memory)."},
    {"clear_streams", py_clear_streams, METH_NOARGS, "Makes the devices' default streams the original ones."},
    {NULL},
};

static PyMethodDef metal_methods[] = {
    {"device_info", py_metal_device_info, METH_NOARGS, "Metal is not part of Ponte: {}."},
    {NULL},
};

/* Adds the functions above to m, metal.device_info to m.metal and random.state to m.random
 * (pp_init_ops and pp_init_types create those submodules first). 0 or -1. */
int pp_init_surface3(PyObject *m)
{
    if (PyModule_AddFunctions(m, surface3_methods) || PyType_Ready(&RandomState_Type)) return -1;
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
