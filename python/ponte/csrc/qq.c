/* qq.c — mlx.core.qqmm and gather_qqmm for ponte.core, over pn_qqmm / pn_gather_qqmm
 * (src/ops/quantized.c): x quantized on the fly and multiplied by a quantized (or floating,
 * quantized here) w, modes "nvfp4" (default), "mxfp8", "mxfp4". */
#include "pyponte.h"

/* An optional positive int: None -> 0 (the mode's default). Returns 0 or -1. */
static int qq_opt_int(PyObject *o, const char *what, int *out)
{
    *out = 0;
    if (o == Py_None) return 0;
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v <= 0 || v > 1 << 20) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive integer, got %ld", what, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The arrays of one call: converted from the Python objects (None: NULL), released at the
 * end. */
typedef struct qq_args {
    pn_array *a[8];
    int n;
} qq_args;

static int qq_take(qq_args *t, PyObject *o, pn_array **out)
{
    *out = NULL;
    if (o == NULL || o == Py_None) return 0;
    pn_array *a = pp_arr(o);
    if (!a) return -1;
    t->a[t->n++] = a;
    *out = a;
    return 0;
}

/* qqmm(x, w, scales=None, group_size=None, bits=None, mode='nvfp4', global_scale_x=None,
 *      global_scale_w=None, *, stream=None) */
static PyObject *py_qqmm(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *xo, *wo, *sco = Py_None, *go = Py_None, *bo = Py_None, *gxo = Py_None,
                       *gwo = Py_None, *so = Py_None;
    const char *mode = "nvfp4";
    static char *kwlist[] = {"x", "w", "scales", "group_size", "bits", "mode",
                             "global_scale_x", "global_scale_w", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOsOO$O:qqmm", kwlist, &xo, &wo, &sco, &go,
                                     &bo, &mode, &gxo, &gwo, &so))
        return NULL;
    int gs, bits;
    if (qq_opt_int(go, "group_size", &gs) || qq_opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    qq_args t = {.n = 0};
    pn_array *x, *w, *s, *gx, *gw;
    PyObject *r = NULL;
    if (!qq_take(&t, xo, &x) && !qq_take(&t, wo, &w) && !qq_take(&t, sco, &s) &&
        !qq_take(&t, gxo, &gx) && !qq_take(&t, gwo, &gw))
        r = pp_wrap(pn_qqmm(x, w, s, gs, bits, mode, gx, gw));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

/* gather_qqmm(x, w, /, scales=None, lhs_indices=None, rhs_indices=None, group_size=None,
 *             bits=None, mode='nvfp4', global_scale_x=None, global_scale_w=None, *,
 *             sorted_indices=False, stream=None) */
static PyObject *py_gather_qqmm(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *xo, *wo, *sco = Py_None, *lo = Py_None, *ro = Py_None, *go = Py_None,
                       *bo = Py_None, *gxo = Py_None, *gwo = Py_None, *so = Py_None;
    int sorted = 0;
    const char *mode = "nvfp4";
    static char *kwlist[] = {"x", "w", "scales", "lhs_indices", "rhs_indices", "group_size",
                             "bits", "mode", "global_scale_x", "global_scale_w",
                             "sorted_indices", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOOOsOO$pO:gather_qqmm", kwlist, &xo, &wo,
                                     &sco, &lo, &ro, &go, &bo, &mode, &gxo, &gwo, &sorted, &so))
        return NULL;
    int gs, bits;
    if (qq_opt_int(go, "group_size", &gs) || qq_opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    qq_args t = {.n = 0};
    pn_array *x, *w, *s, *li, *ri, *gx, *gw;
    PyObject *r = NULL;
    if (!qq_take(&t, xo, &x) && !qq_take(&t, wo, &w) && !qq_take(&t, sco, &s) &&
        !qq_take(&t, lo, &li) && !qq_take(&t, ro, &ri) && !qq_take(&t, gxo, &gx) &&
        !qq_take(&t, gwo, &gw))
        r = pp_wrap(pn_gather_qqmm(x, w, s, li, ri, gs, bits, mode, gx, gw, sorted));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

static PyMethodDef qq_methods[] = {
    {"qqmm", (PyCFunction)(void (*)(void))py_qqmm, METH_VARARGS | METH_KEYWORDS,
     "qqmm(x, w, scales=None, group_size=None, bits=None, mode='nvfp4', global_scale_x=None, "
     "global_scale_w=None)\n\nx quantized on the fly times the quantized w (quantized here "
     "when given in floating point), transposed: x̂ @ Ŵ.T."},
    {"gather_qqmm", (PyCFunction)(void (*)(void))py_gather_qqmm, METH_VARARGS | METH_KEYWORDS,
     "gather_qqmm(x, w, scales=None, lhs_indices=None, rhs_indices=None, group_size=None, "
     "bits=None, mode='nvfp4', global_scale_x=None, global_scale_w=None, *, "
     "sorted_indices=False)\n\nqqmm with matrix-level gather over the batch axes of x and w."},
    {NULL},
};

/* See pyponte.h. */
int pp_init_qq(PyObject *m)
{
    return PyModule_AddFunctions(m, qq_methods);
}
