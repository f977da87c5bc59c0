/* distributed.c — mlx.core.distributed: the Group type, init, is_available and the collectives
 * and point-to-point calls over libponte's pn_dist_* (MPI under mpirun, loaded at run time;
 * a single-process group otherwise). */
#include "pyponte.h"

/* mlx.core.distributed.Group: a borrowed pn_dist_group (the global one) or an owned split. */
typedef struct {
    PyObject_HEAD
    pn_dist_group *g;
    int owned;
} PPGroup;

static PyTypeObject PPGroup_Type;

static PyObject *group_new(pn_dist_group *g, int owned)
{
    PPGroup *o = PyObject_New(PPGroup, &PPGroup_Type);
    if (!o) {
        if (owned) pn_dist_group_free(g);
        return NULL;
    }
    o->g = g;
    o->owned = owned;
    return (PyObject *)o;
}

static void group_dealloc(PyObject *self)
{
    PPGroup *o = (PPGroup *)self;
    if (o->owned) pn_dist_group_free(o->g);
    PyObject_Free(self);
}

static PyObject *group_rank(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(pn_dist_group_rank(((PPGroup *)self)->g));
}
static PyObject *group_size(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(pn_dist_group_size(((PPGroup *)self)->g));
}
static PyObject *group_split(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"color", "key", NULL};
    int color, key = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|i", kwlist, &color, &key)) return NULL;
    pn_dist_group *g = pn_dist_group_split(((PPGroup *)self)->g, color, key);
    return g ? group_new(g, 1) : pp_raise();
}

static PyMethodDef group_methods[] = {
    {"rank", group_rank, METH_NOARGS, "The rank of this process in the group."},
    {"size", group_size, METH_NOARGS, "The number of processes in the group."},
    {"split", (PyCFunction)(void (*)(void))group_split, METH_VARARGS | METH_KEYWORDS,
     "split(color, key=-1): the subgroup of the processes with the same color."},
    {NULL},
};

static PyTypeObject PPGroup_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.distributed.Group",
    .tp_basicsize = sizeof(PPGroup),
    .tp_dealloc = group_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A group of independent processes that can communicate.",
    .tp_methods = group_methods,
};

/* The group argument: None (the global group: NULL) or a Group. 0 or -1 (TypeError). */
static int group_arg(PyObject *o, pn_dist_group **g)
{
    *g = NULL;
    if (o == Py_None) return 0;
    if (!PyObject_TypeCheck(o, &PPGroup_Type)) {
        PyErr_Format(PyExc_TypeError, "group must be a Group or None, got %s.", Py_TYPE(o)->tp_name);
        return -1;
    }
    *g = ((PPGroup *)o)->g;
    return 0;
}

static PyObject *py_is_available(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"backend", NULL};
    const char *backend = "any";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|s", kwlist, &backend)) return NULL;
    return PyBool_FromLong(pn_dist_is_available(backend));
}

/* init(strict=False, backend='any', *, all_gather_factory=None): the factory only serves
 * MLX's jaccl backend and is accepted and ignored. */
static PyObject *py_init(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"strict", "backend", "all_gather_factory", NULL};
    int strict = 0;
    const char *backend = "any";
    PyObject *factory = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ps$O", kwlist, &strict, &backend, &factory))
        return NULL;
    pn_dist_group *g = pn_dist_init(strict, backend);
    return g ? group_new(g, 0) : pp_raise();
}

typedef pn_array *(*dist_fn)(pn_array *, pn_dist_group *);

/* all_sum / all_max / all_min / all_gather / sum_scatter (x, *, group=None, stream=None). */
static PyObject *collective(dist_fn f, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "group", "stream", NULL};
    PyObject *xo, *go = Py_None, *stream = Py_None;
    pn_dist_group *g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", kwlist, &xo, &go, &stream) ||
        group_arg(go, &g))
        return NULL;
    pn_array *x = pp_arr(xo);
    if (!x) return NULL;
    int pushed = pp_stream_enter(stream);
    pn_array *r = pushed < 0 ? NULL : f(x, g);
    if (pushed >= 0) pp_stream_exit(pushed);
    pn_release(x);
    return pushed < 0 ? NULL : pp_wrap(r);
}
#define COLLECTIVE(name)                                                                       \
    static PyObject *py_##name(PyObject *m, PyObject *a, PyObject *k)                          \
    {                                                                                          \
        return collective(pn_dist_##name, a, k);                                               \
    }
COLLECTIVE(all_sum)
COLLECTIVE(all_max)
COLLECTIVE(all_min)
COLLECTIVE(all_gather)
COLLECTIVE(sum_scatter)

/* send(x, dst, *, group=None, stream=None) / recv_like(x, src, *, group=None, stream=None). */
static PyObject *p2p_like(bool send, PyObject *args, PyObject *kw)
{
    static char *send_kw[] = {"x", "dst", "group", "stream", NULL};
    static char *recv_kw[] = {"x", "src", "group", "stream", NULL};
    PyObject *xo, *go = Py_None, *stream = Py_None;
    int rank;
    pn_dist_group *g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|$OO", send ? send_kw : recv_kw, &xo, &rank,
                                     &go, &stream) ||
        group_arg(go, &g))
        return NULL;
    pn_array *x = pp_arr(xo);
    if (!x) return NULL;
    int pushed = pp_stream_enter(stream);
    pn_array *r = pushed < 0 ? NULL : send ? pn_dist_send(x, rank, g) : pn_dist_recv_like(x, rank, g);
    if (pushed >= 0) pp_stream_exit(pushed);
    pn_release(x);
    return pushed < 0 ? NULL : pp_wrap(r);
}
static PyObject *py_send(PyObject *m, PyObject *a, PyObject *k) { return p2p_like(true, a, k); }
static PyObject *py_recv_like(PyObject *m, PyObject *a, PyObject *k) { return p2p_like(false, a, k); }

/* recv(shape, dtype, src, *, group=None, stream=None). */
static PyObject *py_recv(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"shape", "dtype", "src", "group", "stream", NULL};
    PyObject *so, *go = Py_None, *stream = Py_None;
    int dtype, src;
    pn_dist_group *g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO&i|$OO", kwlist, &so, pp_dtype_conv, &dtype,
                                     &src, &go, &stream) ||
        group_arg(go, &g))
        return NULL;
    int64_t shape[PP_MAXDIM];
    int nd = pp_shape(so, shape, PP_MAXDIM, "shape");
    if (nd < 0) return NULL;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *r = pn_dist_recv(shape, nd, (pn_dtype)dtype, src, g);
    pp_stream_exit(pushed);
    return pp_wrap(r);
}

#define KWFN(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, doc}
static PyMethodDef dist_methods[] = {
    KWFN(is_available, "is_available(backend='any'): whether a communication backend can be "
                       "used ('mpi': Open MPI's library loads; 'ring' and 'any': always; "
                       "'nccl': a GPU and libnccl)."),
    KWFN(init, "init(strict=False, backend='any'): the global group: MPI's world when started "
               "by mpirun, the ring's when started by torchrun or mlx.launch (backend 'nccl': "
               "the same, with NCCL for GPU arrays), else a singleton group (strict=True "
               "raises RuntimeError then)."),
    KWFN(all_sum, "all_sum(x, *, group=None, stream=None): sum of x over the group's processes."),
    KWFN(all_max, "all_max(x, *, group=None, stream=None): maximum of x over the group."),
    KWFN(all_min, "all_min(x, *, group=None, stream=None): minimum of x over the group."),
    KWFN(all_gather, "all_gather(x, *, group=None, stream=None): the x of all processes "
                     "concatenated along axis 0."),
    KWFN(sum_scatter, "sum_scatter(x, *, group=None, stream=None): this rank's axis-0 shard of "
                      "the sum of x over the group."),
    KWFN(send, "send(x, dst, *, group=None, stream=None): sends x to rank dst."),
    KWFN(recv, "recv(shape, dtype, src, *, group=None, stream=None): receives an array from "
               "rank src."),
    KWFN(recv_like, "recv_like(x, src, *, group=None, stream=None): recv(x.shape, x.dtype, src)."),
    {NULL},
};

/* Adds the distributed submodule with its Group type to m. 0 or -1. */
int pp_init_distributed(PyObject *m)
{
    if (PyType_Ready(&PPGroup_Type)) return -1;
    PyObject *dist = pp_submodule(m, "distributed", dist_methods,
                                  "Communication between processes (MPI under mpirun).");
    return dist ? PyModule_AddObjectRef(dist, "Group", (PyObject *)&PPGroup_Type) : -1;
}
