/* export.c — mlx.core.export_function, import_function and exporter over src/io/export.c: a
 * closure that calls the Python function on the traced arrays, MLX's two ways of giving the
 * inputs (arrays as *args and **kwargs, or one tuple and/or one dict of arrays), the imported
 * function's callable type and FunctionExporter. */
#include "pyponte.h"

/* ───────────────────────────── inputs ───────────────────────────── */

/* Whether o is a tuple or list of arrays / a dict from str to arrays. */
static int all_arrays(PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PPArray_Check(PySequence_Fast_GET_ITEM(seq, i))) return 0;
    return 1;
}

static int dict_of_arrays(PyObject *d)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(d)) return 0;
    while (PyDict_Next(d, &pos, &k, &v))
        if (!PyUnicode_Check(k) || !PPArray_Check(v)) return 0;
    return 1;
}

/* MLX's input forms: arrays as positional and keyword arguments, or a single tuple/list of
 * arrays and/or a dict of arrays. Sets *pos (a new tuple) and *kw (a new dict). 0, or -1 with
 * ValueError. */
static int split_inputs(const char *op, PyObject *args, PyObject *kwargs, PyObject **pos, PyObject **kw)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    int nkw = kwargs ? (int)PyDict_GET_SIZE(kwargs) : 0;
    *pos = *kw = NULL;
    int ok = 0;
    if (n == 0 || PPArray_Check(PyTuple_GET_ITEM(args, 0))) {
        ok = all_arrays(args) && (!nkw || dict_of_arrays(kwargs));
        if (ok) {
            *pos = Py_NewRef(args);
            *kw = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
        }
    } else if (!nkw && n <= 2) {
        PyObject *a0 = PyTuple_GET_ITEM(args, 0), *a1 = n == 2 ? PyTuple_GET_ITEM(args, 1) : NULL;
        if ((PyTuple_Check(a0) || PyList_Check(a0)) && all_arrays(a0) && (!a1 || dict_of_arrays(a1))) {
            ok = 1;
            *pos = PySequence_Tuple(a0);
            *kw = a1 ? PyDict_Copy(a1) : PyDict_New();
        } else if (n == 1 && dict_of_arrays(a0)) {
            ok = 1;
            *pos = PyTuple_New(0);
            *kw = PyDict_Copy(a0);
        }
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "[%s] Inputs can either be a variable number of positional "
                     "and keyword arrays or a single tuple and/or dictionary of arrays.", op);
        return -1;
    }
    if (!*pos || !*kw) {
        Py_CLEAR(*pos);
        Py_CLEAR(*kw);
        return -1;
    }
    return 0;
}

/* The C form of (pos, kw): arrays and names borrowed from the objects (valid while they live;
 * names are UTF-8). Release with flat_free. */
typedef struct {
    int nargs, nkw;
    pn_array **args, **kwargs;
    const char **names;
} flat_inputs;

static void flat_free(flat_inputs *f)
{
    PyMem_Free(f->args), PyMem_Free(f->kwargs), PyMem_Free((void *)f->names);
    *f = (flat_inputs){0};
}

static int flatten(PyObject *pos, PyObject *kw, flat_inputs *f)
{
    *f = (flat_inputs){(int)PyTuple_GET_SIZE(pos), (int)PyDict_GET_SIZE(kw), NULL, NULL, NULL};
    f->args = PyMem_Malloc(((size_t)f->nargs + 1) * sizeof *f->args);
    f->kwargs = PyMem_Malloc(((size_t)f->nkw + 1) * sizeof *f->kwargs);
    f->names = PyMem_Malloc(((size_t)f->nkw + 1) * sizeof *f->names);
    if (!f->args || !f->kwargs || !f->names) {
        flat_free(f);
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < f->nargs; i++) f->args[i] = PPARR(PyTuple_GET_ITEM(pos, i));
    PyObject *k, *v;
    Py_ssize_t p = 0;
    for (int i = 0; PyDict_Next(kw, &p, &k, &v); i++) {
        f->kwargs[i] = PPARR(v);
        if (!(f->names[i] = PyUnicode_AsUTF8(k))) {
            flat_free(f);
            return -1;
        }
    }
    return 0;
}

/* A file path (str or os.PathLike) as a new bytes object. */
static PyObject *path_bytes(PyObject *file, const char *op)
{
    if (PyCallable_Check(file)) {
        PyErr_Format(PyExc_ValueError, "[%s] Exporting to a callback is not supported by Ponte; "
                     "give a file path.", op);
        return NULL;
    }
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(file, &b)) return NULL;
    return b;
}

/* ───────────────────────────── the traced Python function ───────────────────────────── */

/* Calls fn(*inputs[:nargs], **dict(zip(names, inputs[nargs:]))): the C side passes the
 * keyword inputs in ascending name order, the order of names here. */
typedef struct {
    PyObject *fn;
    int nargs;
    PyObject *names; /* sorted tuple of str */
    PyObject *keep;  /* the last call's outputs, alive until the next call */
} xctx;

static void xctx_destroy(void *p)
{
    xctx *c = p;
    Py_XDECREF(c->fn);
    Py_XDECREF(c->names);
    Py_XDECREF(c->keep);
    PyMem_Free(c);
}

static int xtrampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    xctx *c = ctx;
    *nout = 0;
    Py_ssize_t nkw = c->names ? PyTuple_GET_SIZE(c->names) : 0;
    if (nin != c->nargs + nkw) {
        PyErr_SetString(PyExc_RuntimeError, "[export_function] Input count mismatch.");
        return pp_stash_exception();
    }
    PyObject *args = PyTuple_New(c->nargs), *kw = PyDict_New(), *res = NULL;
    if (!args || !kw) goto fail;
    for (int i = 0; i < nin; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        if (!w) goto fail;
        if (i < c->nargs) PyTuple_SET_ITEM(args, i, w);
        else {
            int r = PyDict_SetItem(kw, PyTuple_GET_ITEM(c->names, i - c->nargs), w);
            Py_DECREF(w);
            if (r) goto fail;
        }
    }
    if (!(res = PyObject_Call(c->fn, args, kw))) goto fail;
    PyObject *list = PPArray_Check(res) ? PyTuple_Pack(1, res)
                     : (PyTuple_Check(res) || PyList_Check(res)) && all_arrays(res) ? PySequence_Tuple(res)
                                                                                    : NULL;
    if (!list) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "[export_function] Outputs can be either a single "
                            "array, a tuple, or a list of arrays.");
        goto fail;
    }
    if (PyTuple_GET_SIZE(list) > PN_MAX_OUTPUTS) {
        Py_DECREF(list);
        PyErr_Format(PyExc_ValueError, "[export_function] At most %d outputs.", PN_MAX_OUTPUTS);
        goto fail;
    }
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(list); j++) out[j] = PPARR(PyTuple_GET_ITEM(list, j));
    *nout = (int)PyTuple_GET_SIZE(list);
    Py_XSETREF(c->keep, list);
    Py_DECREF(res), Py_DECREF(args), Py_DECREF(kw);
    return 0;
fail:
    Py_XDECREF(res), Py_XDECREF(args), Py_XDECREF(kw);
    return pp_stash_exception();
}

/* A closure over fn with a fresh context; *ctx gets the context to set per call. */
static pn_closure *xclosure(PyObject *fn, xctx **ctx)
{
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "[export_function] Expected a callable, got %s.", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    xctx *c = PyMem_Calloc(1, sizeof *c);
    if (!c) return (pn_closure *)PyErr_NoMemory();
    c->fn = Py_NewRef(fn);
    pn_closure *f = pn_closure_new(xtrampoline, c, xctx_destroy);
    if (!f) return (pn_closure *)pp_raise();
    *ctx = c;
    return f;
}

/* Sets the call's shape on ctx: nargs positional inputs and kw's names, sorted. 0 or -1. */
static int xctx_set(xctx *c, const flat_inputs *fi, PyObject *kw)
{
    PyObject *keys = PyDict_Keys(kw);
    if (!keys || PyList_Sort(keys)) {
        Py_XDECREF(keys);
        return -1;
    }
    c->nargs = fi->nargs;
    Py_XSETREF(c->names, PyList_AsTuple(keys));
    Py_DECREF(keys);
    return c->names ? 0 : -1;
}

/* Runs one export call: traces through e. 0 or -1 with a Python exception. */
static int export_call(pn_exporter *e, xctx *c, PyObject *pos, PyObject *kw)
{
    flat_inputs fi;
    if (flatten(pos, kw, &fi)) return -1;
    int rc = xctx_set(c, &fi, kw);
    if (rc == 0 && pn_exporter_call(e, fi.nargs, fi.args, fi.nkw, fi.names, fi.kwargs)) {
        pp_raise();
        rc = -1;
    }
    pp_clear_stash();
    Py_CLEAR(c->keep);
    flat_free(&fi);
    return rc;
}

/* ───────────────────────────── export_function ───────────────────────────── */

/* Pops the reserved keywords shapeless and metadata out of a copy of kwargs. */
static int export_options(PyObject **kwargs, int *shapeless, const char **metadata, PyObject **meta_obj)
{
    *shapeless = 0, *metadata = NULL, *meta_obj = NULL;
    PyObject *kw = *kwargs ? PyDict_Copy(*kwargs) : PyDict_New();
    if (!kw) return -1;
    *kwargs = kw;
    PyObject *s = PyDict_GetItemString(kw, "shapeless");
    if (s) {
        if ((*shapeless = PyObject_IsTrue(s)) < 0) return -1;
        if (PyDict_DelItemString(kw, "shapeless")) return -1;
    }
    PyObject *m = PyDict_GetItemString(kw, "metadata");
    if (m) {
        if (m != Py_None) {
            if (!PyUnicode_Check(m)) {
                PyErr_SetString(PyExc_TypeError, "[export_function] metadata must be a str or None.");
                return -1;
            }
            *meta_obj = Py_NewRef(m);
            if (!(*metadata = PyUnicode_AsUTF8(m))) return -1;
        }
        if (PyDict_DelItemString(kw, "metadata")) return -1;
    }
    return 0;
}

static PyObject *py_export_function(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    (void)mod;
    if (PyTuple_GET_SIZE(args) < 2) {
        PyErr_SetString(PyExc_TypeError, "export_function(file, fun, *args, shapeless=False, "
                        "metadata=None, **kwargs) takes a file and a function.");
        return NULL;
    }
    PyObject *path = path_bytes(PyTuple_GET_ITEM(args, 0), "export_function");
    if (!path) return NULL;
    PyObject *kw = kwargs, *meta = NULL, *pos = NULL, *kwa = NULL, *rest = NULL, *ret = NULL;
    int shapeless;
    const char *metadata;
    xctx *c = NULL;
    pn_closure *f = NULL;
    if (export_options(&kw, &shapeless, &metadata, &meta)) goto done;
    if (!(rest = PyTuple_GetSlice(args, 2, PyTuple_GET_SIZE(args)))) goto done;
    if (split_inputs("export_function", rest, kw, &pos, &kwa)) goto done;
    if (!(f = xclosure(PyTuple_GET_ITEM(args, 1), &c))) goto done;
    flat_inputs fi;
    if (flatten(pos, kwa, &fi)) goto done;
    if (xctx_set(c, &fi, kwa) == 0) {
        if (pn_export_function(PyBytes_AS_STRING(path), f, fi.nargs, fi.args, fi.nkw, fi.names,
                               fi.kwargs, shapeless, metadata))
            pp_raise();
        else
            ret = Py_NewRef(Py_None);
        pp_clear_stash();
    }
    flat_free(&fi);
done:
    pn_closure_release(f);
    if (kw != kwargs) Py_XDECREF(kw);
    Py_XDECREF(meta), Py_XDECREF(pos), Py_XDECREF(kwa), Py_XDECREF(rest);
    Py_DECREF(path);
    return ret;
}

/* ───────────────────────────── imported functions ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    pn_imported_function *f;
} PPImported;

static void imported_dealloc(PyObject *self)
{
    pn_imported_function_free(((PPImported *)self)->f);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *imported_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *pos, *kw;
    if (split_inputs("import_function::call", args, kwargs, &pos, &kw)) return NULL;
    flat_inputs fi;
    PyObject *ret = NULL;
    if (flatten(pos, kw, &fi) == 0) {
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        if (pn_imported_function_call(((PPImported *)self)->f, fi.nargs, fi.args, fi.nkw, fi.names,
                                      fi.kwargs, &n, out))
            pp_raise();
        else if ((ret = PyTuple_New(n)))
            for (int j = 0; j < n; j++) {
                PyObject *w = pp_wrap(out[j]);
                if (!w) {
                    for (int k = j + 1; k < n; k++) pn_release(out[k]);
                    Py_CLEAR(ret);
                    break;
                }
                PyTuple_SET_ITEM(ret, j, w);
            }
        flat_free(&fi);
    }
    Py_DECREF(pos), Py_DECREF(kw);
    return ret;
}

static PyTypeObject PPImported_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.ImportedFunction",
    .tp_basicsize = sizeof(PPImported),
    .tp_dealloc = imported_dealloc,
    .tp_call = imported_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A function read by import_function: call it with arrays as *args/**kwargs or with "
              "a tuple and/or a dict of arrays; it returns a tuple of arrays.",
};

static PyObject *py_import_function(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    (void)mod;
    static char *kwlist[] = {"file", "return_metadata", NULL};
    PyObject *file;
    int return_metadata = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p:import_function", kwlist, &file, &return_metadata))
        return NULL;
    PyObject *path = path_bytes(file, "import_function");
    if (!path) return NULL;
    pn_imported_function *f = pn_import_function(PyBytes_AS_STRING(path));
    Py_DECREF(path);
    if (!f) return pp_raise();
    PPImported *o = PyObject_New(PPImported, &PPImported_Type);
    if (!o) {
        pn_imported_function_free(f);
        return NULL;
    }
    o->f = f;
    if (!return_metadata) return (PyObject *)o;
    PyObject *r = Py_BuildValue("(Ns)", (PyObject *)o, pn_imported_function_metadata(f));
    return r;
}

/* ───────────────────────────── FunctionExporter ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    pn_exporter *e;
    pn_closure *f;
    xctx *ctx;
    int closed;
} PPExporter;

static void exporter_dealloc(PyObject *self)
{
    PPExporter *x = (PPExporter *)self;
    pn_exporter_free(x->e);
    pn_closure_release(x->f);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *exporter_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PPExporter *x = (PPExporter *)self;
    if (x->closed) {
        PyErr_SetString(PyExc_RuntimeError,
                        "[export_function] Attempting to write after exporting is closed.");
        return NULL;
    }
    PyObject *pos, *kw;
    if (split_inputs("export_function", args, kwargs, &pos, &kw)) return NULL;
    int rc = export_call(x->e, x->ctx, pos, kw);
    Py_DECREF(pos), Py_DECREF(kw);
    return rc ? NULL : Py_NewRef(Py_None);
}

static PyObject *exporter_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    PPExporter *x = (PPExporter *)self;
    x->closed = 1;
    pn_exporter_close(x->e);
    Py_RETURN_NONE;
}

static PyObject *exporter_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *exporter_exit(PyObject *self, PyObject *args)
{
    (void)args;
    return exporter_close(self, NULL);
}

static PyMethodDef exporter_methods[] = {
    {"close", exporter_close, METH_NOARGS, "Ends exporting: later calls raise."},
    {"__enter__", exporter_enter, METH_NOARGS, NULL},
    {"__exit__", exporter_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject PPExporter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.FunctionExporter",
    .tp_basicsize = sizeof(PPExporter),
    .tp_dealloc = exporter_dealloc,
    .tp_call = exporter_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = exporter_methods,
    .tp_doc = "A context managing class for exporting multiple traces of the same function to a "
              "file. Make an instance of this class by calling mx.exporter.",
};

static PyObject *py_exporter(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    (void)mod;
    static char *kwlist[] = {"file", "fun", "shapeless", "metadata", NULL};
    PyObject *file, *fn, *meta = Py_None;
    int shapeless = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$pO:exporter", kwlist, &file, &fn, &shapeless, &meta))
        return NULL;
    if (meta != Py_None && !PyUnicode_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "[exporter] metadata must be a str or None.");
        return NULL;
    }
    const char *metadata = meta == Py_None ? NULL : PyUnicode_AsUTF8(meta);
    if (meta != Py_None && !metadata) return NULL;
    PyObject *path = path_bytes(file, "exporter");
    if (!path) return NULL;
    PPExporter *x = PyObject_New(PPExporter, &PPExporter_Type);
    if (!x) {
        Py_DECREF(path);
        return NULL;
    }
    x->e = NULL, x->ctx = NULL, x->closed = 0;
    x->f = xclosure(fn, &x->ctx);
    if (x->f && !(x->e = pn_exporter_new(PyBytes_AS_STRING(path), x->f, shapeless, metadata))) pp_raise();
    Py_DECREF(path);
    if (!x->e) {
        Py_DECREF(x);
        return NULL;
    }
    return (PyObject *)x;
}

/* ───────────────────────────── registration ───────────────────────────── */

#define FNP(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef export_methods[] = {
    {"export_function", FNP(py_export_function), METH_VARARGS | METH_KEYWORDS,
     "export_function(file, fun, *args, shapeless=False, metadata=None, **kwargs): traces fun on "
     "the example arrays and writes its graph to file (Ponte's format; shapeless=True is not "
     "supported)."},
    {"import_function", FNP(py_import_function), METH_VARARGS | METH_KEYWORDS,
     "import_function(file, return_metadata=False): the function written by export_function, "
     "returning a tuple of arrays (and the metadata string when asked)."},
    {"exporter", FNP(py_exporter), METH_VARARGS | METH_KEYWORDS,
     "exporter(file, fun, *, shapeless=False, metadata=None) -> FunctionExporter: each call "
     "adds a trace of fun for its inputs' signature to the file."},
    {NULL},
};

int pp_init_export(PyObject *m)
{
    if (PyType_Ready(&PPImported_Type) || PyType_Ready(&PPExporter_Type)) return -1;
    if (PyModule_AddObjectRef(m, "FunctionExporter", (PyObject *)&PPExporter_Type)) return -1;
    return PyModule_AddFunctions(m, export_methods);
}
