/* custom_kernel.c — mx.fast.cuda_kernel (a callable CudaKernel object), mx.fast.
 * precompiled_cuda_kernel and mx.fast.metal_kernel (no Metal in Ponte: RuntimeError, as MLX
 * built without Metal) over libponte's pn_fast_cuda_kernel / pn_fast_precompiled_cuda_kernel. */
#include "pyponte.h"

#include <string.h>

#define MAXIO 32
#define MAXT 16

/* ───────────────────────────── argument helpers ───────────────────────────── */

/* A sequence of str into names (borrowed UTF-8 pointers, valid while seq lives). Count or -1. */
static int str_list(PyObject *seq, const char **names, int max, const char *what)
{
    PyObject *f = PySequence_Fast(seq, "");
    if (!f) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of str.", what);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    int rc = (int)n;
    if (n > max) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d names.", what, max);
        rc = -1;
    }
    for (Py_ssize_t i = 0; i < n && rc >= 0; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(f, i);
        if (!PyUnicode_Check(s) || !(names[i] = PyUnicode_AsUTF8(s))) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must be a sequence of str.", what);
            rc = -1;
        }
    }
    Py_DECREF(f);
    return rc;
}

/* A 3-tuple of ints. 0 or -1. */
static int triple(PyObject *o, int *v, const char *what)
{
    int64_t t[3];
    int n = pp_shape(o, t, 3, what);
    if (n != 3) {
        if (n >= 0) PyErr_Format(PyExc_ValueError, "%s must be a tuple of 3 ints.", what);
        return -1;
    }
    for (int d = 0; d < 3; d++) v[d] = (int)t[d];
    return 0;
}

/* The launch's outputs: shapes and dtypes (storage in shapes/ndims/dtypes). Count or -1. */
static int outputs_of(PyObject *shapes_o, PyObject *dtypes_o, int64_t (*shapes)[PP_MAXDIM], int *ndims,
                      pn_dtype *dtypes)
{
    PyObject *fs = PySequence_Fast(shapes_o, "output_shapes must be a sequence of shapes.");
    PyObject *fd = fs ? PySequence_Fast(dtypes_o, "output_dtypes must be a sequence of Dtypes.") : NULL;
    int n = -1;
    if (fs && fd) {
        n = (int)PySequence_Fast_GET_SIZE(fs);
        if (n != PySequence_Fast_GET_SIZE(fd) || n > MAXIO) {
            PyErr_Format(PyExc_ValueError, "output_shapes and output_dtypes must have the same size "
                         "(at most %d), got %d and %d.", MAXIO, n, (int)PySequence_Fast_GET_SIZE(fd));
            n = -1;
        }
        for (int j = 0; j < n; j++) {
            int t;
            if ((ndims[j] = pp_shape(PySequence_Fast_GET_ITEM(fs, j), shapes[j], PP_MAXDIM, "output_shapes")) < 0 ||
                !pp_dtype_conv(PySequence_Fast_GET_ITEM(fd, j), &t)) {
                n = -1;
                break;
            }
            dtypes[j] = (pn_dtype)t;
        }
    }
    Py_XDECREF(fs);
    Py_XDECREF(fd);
    return n;
}

/* A sequence of arrays (or scalars) into owned arrays. Count or -1 (all released). */
static int arrays_of(PyObject *seq, pn_array **a, int max)
{
    PyObject *f = PySequence_Fast(seq, "inputs must be a sequence of arrays.");
    if (!f) return -1;
    int n = (int)PySequence_Fast_GET_SIZE(f);
    if (n > max) {
        PyErr_Format(PyExc_ValueError, "At most %d inputs, got %d.", max, n);
        n = -1;
    }
    for (int i = 0; i < n; i++)
        if (!(a[i] = pp_arr(PySequence_Fast_GET_ITEM(f, i)))) {
            pp_release_all(a, i);
            n = -1;
            break;
        }
    Py_DECREF(f);
    return n;
}

/* A template or scalar value: int, bool, float (scalars only) or Dtype (templates only). */
static int kernel_arg(PyObject *v, pn_kernel_arg *a, int dtype_ok)
{
    if (PyBool_Check(v)) a->kind = PN_KERNEL_ARG_BOOL, a->i = v == Py_True;
    else if (pp_is_int(v)) {
        long long i;
        if (pp_int(v, &i, "A kernel argument")) return -1;
        a->kind = PN_KERNEL_ARG_INT, a->i = i;
    }
    else if (!dtype_ok && PyFloat_Check(v)) a->kind = PN_KERNEL_ARG_FLOAT, a->f = PyFloat_AsDouble(v);
    else if (dtype_ok && PyObject_TypeCheck(v, &PPDtype_Type)) a->kind = PN_KERNEL_ARG_DTYPE, a->dtype = ((PPDtype *)v)->dtype;
    else {
        PyErr_Format(PyExc_TypeError, dtype_ok ? "Template arguments must be int, bool or Dtype, got %s."
                                               : "Scalars must be bool, int or float, got %s.", Py_TYPE(v)->tp_name);
        return -1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* Wraps n outputs in a list (releasing them on failure). */
static PyObject *out_list(pn_array **outs, int n)
{
    PyObject *l = PyList_New(n);
    for (int j = 0; j < n; j++) {
        PyObject *x = l ? pp_wrap(outs[j]) : (pn_release(outs[j]), NULL);
        if (l && !x) Py_CLEAR(l);
        if (l) PyList_SET_ITEM(l, j, x);
    }
    return l;
}

/* ───────────────────────────── CudaKernel ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    pn_cuda_kernel *k;
} PPCudaKernel;

static void ck_dealloc(PyObject *self)
{
    pn_cuda_kernel_free(((PPCudaKernel *)self)->k);
    PyObject_Free(self);
}

/* kernel(inputs, output_shapes, output_dtypes, grid, threadgroup, template=None, init_value=None,
 * verbose=False, stream=None): the outputs, a list. */
static PyObject *ck_call(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"inputs", "output_shapes", "output_dtypes", "grid", "threadgroup", "template",
                             "init_value", "verbose", "stream", NULL};
    PyObject *ins, *shapes_o, *dtypes_o, *grid_o, *tg_o, *tmpl = Py_None, *init = Py_None, *stream = Py_None;
    int verbose = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|$OOpO:cuda_kernel", kwlist, &ins, &shapes_o, &dtypes_o,
                                     &grid_o, &tg_o, &tmpl, &init, &verbose, &stream))
        return NULL;
    pn_kernel_launch l = {.verbose = verbose != 0};
    int64_t shapes[MAXIO][PP_MAXDIM];
    const int64_t *shape_ptrs[MAXIO];
    int ndims[MAXIO];
    pn_dtype dtypes[MAXIO];
    pn_kernel_arg targs[MAXT];
    PyObject *tf = NULL;
    if ((l.nout = outputs_of(shapes_o, dtypes_o, shapes, ndims, dtypes)) < 0 || triple(grid_o, l.grid, "grid") ||
        triple(tg_o, l.threadgroup, "threadgroup"))
        return NULL;
    if (init != Py_None) {
        l.has_init_value = true;
        l.init_value = PyFloat_AsDouble(init);
        if (PyErr_Occurred()) return NULL;
    }
    if (tmpl != Py_None) { /* [(name, value), ...] */
        if (!(tf = PySequence_Fast(tmpl, "template must be a sequence of (name, value) pairs."))) return NULL;
        l.ntemplate = (int)PySequence_Fast_GET_SIZE(tf);
        if (l.ntemplate > MAXT) {
            PyErr_Format(PyExc_ValueError, "At most %d template arguments.", MAXT);
            Py_DECREF(tf);
            return NULL;
        }
        for (int t = 0; t < l.ntemplate; t++) {
            PyObject *pair = PySequence_Fast_GET_ITEM(tf, t), *name, *value;
            if (!PyTuple_Check(pair) || !PyArg_ParseTuple(pair, "UO", &name, &value) ||
                !(targs[t].name = PyUnicode_AsUTF8(name)) || kernel_arg(value, &targs[t], 1)) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "template entries are (name, value) pairs.");
                Py_DECREF(tf);
                return NULL;
            }
        }
        l.template_args = targs;
    }
    for (int j = 0; j < l.nout; j++) shape_ptrs[j] = shapes[j];
    l.out_shapes = shape_ptrs, l.out_ndims = ndims, l.out_dtypes = dtypes;
    pn_array *a[MAXIO], *outs[MAXIO];
    int nin = arrays_of(ins, a, MAXIO);
    int pushed = nin < 0 ? -1 : pp_stream_enter(stream);
    int rc = pushed < 0 ? -2 : pn_cuda_kernel_call(((PPCudaKernel *)self)->k, nin, a, &l, outs);
    if (pushed >= 0) pp_stream_exit(pushed);
    if (nin > 0) pp_release_all(a, nin);
    Py_XDECREF(tf); /* after the call: the template names point into it */
    if (rc == -2) return NULL;
    if (rc) return pp_raise();
    return out_list(outs, l.nout);
}

static PyTypeObject PPCudaKernel_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.fast.CudaKernel",
    .tp_basicsize = sizeof(PPCudaKernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A jit-compiled custom CUDA kernel: call it with inputs, output_shapes, output_dtypes, grid "
              "and threadgroup.",
    .tp_dealloc = ck_dealloc,
    .tp_call = ck_call,
};

/* cuda_kernel(name, input_names, output_names, source, header="", ensure_row_contiguous=True,
 * shared_memory=0) */
static PyObject *py_cuda_kernel(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "input_names", "output_names", "source", "header", "ensure_row_contiguous",
                             "shared_memory", NULL};
    const char *name, *source, *header = "";
    PyObject *in_o, *out_o;
    int contiguous = 1, smem = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sOOs|spi:cuda_kernel", kwlist, &name, &in_o, &out_o, &source,
                                     &header, &contiguous, &smem))
        return NULL;
    const char *in_names[MAXIO], *out_names[MAXIO];
    int nin = str_list(in_o, in_names, MAXIO, "input_names");
    int nout = nin < 0 ? -1 : str_list(out_o, out_names, MAXIO, "output_names");
    if (nout < 0) return NULL;
    pn_cuda_kernel *k = pn_fast_cuda_kernel(name, nin, in_names, nout, out_names, source, header, contiguous != 0, smem);
    if (!k) {
        pp_raise();
        if (PyErr_ExceptionMatches(PyExc_RuntimeError)) { /* MLX raises ValueError for these */
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_SetObject(PyExc_ValueError, v);
            Py_XDECREF(t), Py_XDECREF(v), Py_XDECREF(tb);
        }
        return NULL;
    }
    PPCudaKernel *o = PyObject_New(PPCudaKernel, &PPCudaKernel_Type);
    if (!o) {
        pn_cuda_kernel_free(k);
        return NULL;
    }
    o->k = k;
    return (PyObject *)o;
}

/* precompiled_cuda_kernel(*, name, compiled_source, inputs, output_shapes, output_dtypes, scalars,
 * grid, threadgroup, shared_memory=0, init_value=None, ensure_row_contiguous=False, stream=None) */
static PyObject *py_precompiled_cuda_kernel(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "compiled_source", "inputs", "output_shapes", "output_dtypes", "scalars", "grid",
                             "threadgroup", "shared_memory", "init_value", "ensure_row_contiguous", "stream", NULL};
    const char *name = NULL;
    Py_buffer code = {0};
    PyObject *ins = NULL, *shapes_o = NULL, *dtypes_o = NULL, *scalars_o = NULL, *grid_o = NULL, *tg_o = NULL;
    PyObject *init = Py_None, *stream = Py_None;
    int smem = 0, contiguous = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$sy*OOOOOOiOpO:precompiled_cuda_kernel", kwlist, &name, &code,
                                     &ins, &shapes_o, &dtypes_o, &scalars_o, &grid_o, &tg_o, &smem, &init,
                                     &contiguous, &stream))
        return NULL;
    PyObject *required[8] = {name ? Py_None : NULL, code.obj, ins, shapes_o, dtypes_o, scalars_o, grid_o, tg_o};
    for (int r = 0; r < 8; r++)
        if (!required[r]) { /* keyword-only and required: PyArg cannot say so */
            PyErr_Format(PyExc_TypeError, "precompiled_cuda_kernel() missing required keyword argument '%s'",
                         kwlist[r]);
            PyBuffer_Release(&code);
            return NULL;
        }
    pn_kernel_launch l = {0};
    int64_t shapes[MAXIO][PP_MAXDIM];
    const int64_t *shape_ptrs[MAXIO];
    int ndims[MAXIO];
    pn_dtype dtypes[MAXIO];
    pn_kernel_arg scalars[MAXT];
    int nscalars = -1;
    PyObject *sf = NULL;
    if ((l.nout = outputs_of(shapes_o, dtypes_o, shapes, ndims, dtypes)) >= 0 && !triple(grid_o, l.grid, "grid") &&
        !triple(tg_o, l.threadgroup, "threadgroup") &&
        (sf = PySequence_Fast(scalars_o, "scalars must be a sequence of bool, int or float."))) {
        nscalars = (int)PySequence_Fast_GET_SIZE(sf);
        if (nscalars > MAXT) {
            PyErr_Format(PyExc_ValueError, "At most %d scalars.", MAXT);
            nscalars = -1;
        }
        for (int s = 0; s < nscalars; s++)
            if (kernel_arg(PySequence_Fast_GET_ITEM(sf, s), &scalars[s], 0)) {
                nscalars = -1;
                break;
            }
    }
    Py_XDECREF(sf);
    if (nscalars >= 0 && init != Py_None) {
        l.has_init_value = true;
        l.init_value = PyFloat_AsDouble(init);
        if (PyErr_Occurred()) nscalars = -1;
    }
    if (nscalars < 0) {
        PyBuffer_Release(&code);
        return NULL;
    }
    for (int j = 0; j < l.nout; j++) shape_ptrs[j] = shapes[j];
    l.out_shapes = shape_ptrs, l.out_ndims = ndims, l.out_dtypes = dtypes;
    pn_array *a[MAXIO], *outs[MAXIO];
    int nin = arrays_of(ins, a, MAXIO);
    int pushed = nin < 0 ? -1 : pp_stream_enter(stream);
    int rc = pushed < 0 ? -2
                        : pn_fast_precompiled_cuda_kernel(name, code.buf, (size_t)code.len, nin, a, nscalars, scalars,
                                                          &l, smem, contiguous != 0, outs);
    if (pushed >= 0) pp_stream_exit(pushed);
    if (nin > 0) pp_release_all(a, nin);
    PyBuffer_Release(&code);
    if (rc == -2) return NULL;
    if (rc) return pp_raise();
    return out_list(outs, l.nout);
}

/* metal_kernel(...): Ponte has no Metal back-end. */
static PyObject *py_metal_kernel(PyObject *m, PyObject *args, PyObject *kw)
{
    PyErr_SetString(PyExc_RuntimeError, "[metal_kernel] No Metal back-end.");
    return NULL;
}

#define KW(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, doc},
static PyMethodDef fast_methods[] = {
    KW(cuda_kernel, "cuda_kernel(name, input_names, output_names, source, header='', ensure_row_contiguous=True, "
                    "shared_memory=0): a jit-compiled custom CUDA kernel (a callable).")
    KW(precompiled_cuda_kernel, "precompiled_cuda_kernel(*, name, compiled_source, inputs, output_shapes, "
                                "output_dtypes, scalars, grid, threadgroup, shared_memory=0, init_value=None, "
                                "ensure_row_contiguous=False, stream=None): runs a PTX or cubin kernel.")
    KW(metal_kernel, "metal_kernel(...): Metal kernels (no Metal back-end in Ponte: RuntimeError).")
    {NULL},
};

/* Adds cuda_kernel, precompiled_cuda_kernel and metal_kernel to m.fast (pp_init_ops makes it). */
int pp_init_custom_kernel(PyObject *m)
{
    if (PyType_Ready(&PPCudaKernel_Type)) return -1;
    PyObject *fast = PyObject_GetAttrString(m, "fast");
    int rc = fast ? PyModule_AddFunctions(fast, fast_methods) : -1;
    Py_XDECREF(fast);
    return rc;
}
