/* quantized.c — mlx.core.quantize, dequantize, quantized_matmul and gather_qmm for ponte.core,
 * qqmm and gather_qqmm, over pn_quantize / pn_dequantize / pn_quantized_matmul / pn_gather_qmm /
 * pn_qqmm / pn_gather_qqmm (src/ops/quantized.c).
 * Arguments as MLX's: group_size and bits None pick the mode's defaults, mode is a string
 * ("affine", "mxfp4", "mxfp8", "nvfp4"), global_scale an optional float32 scalar (nvfp4). */
#include "pyponte.h"

/* An optional int argument: None -> 0 (the mode's default). Returns 0 or -1. */
static int opt_int(PyObject *o, const char *what, int *out)
{
    *out = 0;
    if (o == Py_None) return 0;
    long long v;
    if (pp_int(o, &v, what)) return -1;
    if (v <= 0 || v > 1 << 20) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive integer, got %lld", what, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The arrays of one call (owned; released by release_all). */
typedef struct args4 {
    pn_array *a[8];
    int n;
} args4;

static int take(args4 *t, PyObject *o, pn_array **out)
{
    *out = NULL;
    if (o == NULL || o == Py_None) return 0;
    pn_array *a = pp_arr(o);
    if (!a) return -1;
    t->a[t->n++] = a;
    *out = a;
    return 0;
}

/* quantize(w, /, group_size=None, bits=None, mode='affine', *, global_scale=None, stream=None) */
static PyObject *py_quantize(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *wo, *go = Py_None, *bo = Py_None, *gso = Py_None, *so = Py_None;
    const char *mode = "affine";
    static char *kwlist[] = {"w", "group_size", "bits", "mode", "global_scale", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOs$OO:quantize", kwlist, &wo, &go, &bo, &mode,
                                     &gso, &so))
        return NULL;
    int gs, bits;
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *w, *g, *out[3] = {NULL, NULL, NULL};
    PyObject *r = NULL;
    if (take(&t, wo, &w) == 0 && take(&t, gso, &g) == 0) {
        if (pn_quantize(w, gs, bits, mode, g, out) < 0) {
            pp_raise();
        } else {
            int n = out[2] ? 3 : 2;
            r = PyTuple_New(n);
            for (int k = 0; r && k < n; k++) {
                PyObject *o = pp_wrap(out[k]);
                out[k] = NULL;
                if (!o) {
                    Py_CLEAR(r);
                    break;
                }
                PyTuple_SET_ITEM(r, k, o);
            }
            pp_release_all(out, 3);
        }
    }
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

/* dequantize(w, /, scales, biases=None, group_size=None, bits=None, mode='affine',
 *            global_scale=None, dtype=None, *, stream=None) */
static PyObject *py_dequantize(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *wo, *sco, *bio = Py_None, *go = Py_None, *bo = Py_None, *gso = Py_None, *so = Py_None;
    const char *mode = "affine";
    int dtype = -1;
    static char *kwlist[] = {"w", "scales", "biases", "group_size", "bits", "mode",
                             "global_scale", "dtype", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOOsOO&$O:dequantize", kwlist, &wo, &sco, &bio,
                                     &go, &bo, &mode, &gso, pp_opt_dtype_conv, &dtype, &so))
        return NULL;
    int gs, bits;
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *w, *s, *b, *g;
    PyObject *r = NULL;
    if (!take(&t, wo, &w) && !take(&t, sco, &s) && !take(&t, bio, &b) && !take(&t, gso, &g))
        r = pp_wrap(pn_dequantize(w, s, b, gs, bits, mode, g,
                                  dtype < 0 ? PN_NUM_DTYPES : (pn_dtype)dtype));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

/* quantized_matmul(x, w, /, scales, biases=None, transpose=True, group_size=None, bits=None,
 *                  mode='affine', *, stream=None) */
static PyObject *py_quantized_matmul(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *xo, *wo, *sco, *bio = Py_None, *go = Py_None, *bo = Py_None, *so = Py_None;
    int transpose = 1;
    const char *mode = "affine";
    static char *kwlist[] = {"x", "w", "scales", "biases", "transpose", "group_size", "bits",
                             "mode", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|OpOOs$O:quantized_matmul", kwlist, &xo, &wo,
                                     &sco, &bio, &transpose, &go, &bo, &mode, &so))
        return NULL;
    int gs, bits;
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *x, *w, *s, *b;
    PyObject *r = NULL;
    if (!take(&t, xo, &x) && !take(&t, wo, &w) && !take(&t, sco, &s) && !take(&t, bio, &b))
        r = pp_wrap(pn_quantized_matmul(x, w, s, b, transpose, gs, bits, mode));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

/* gather_qmm(x, w, /, scales, biases=None, lhs_indices=None, rhs_indices=None, transpose=True,
 *            group_size=None, bits=None, mode='affine', global_scale=None, *,
 *            sorted_indices=False, stream=None) */
static PyObject *py_gather_qmm(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *xo, *wo, *sco, *bio = Py_None, *lo = Py_None, *ro = Py_None, *go = Py_None,
                            *bo = Py_None, *gso = Py_None, *so = Py_None;
    int transpose = 1, sorted = 0;
    const char *mode = "affine";
    static char *kwlist[] = {"x", "w", "scales", "biases", "lhs_indices", "rhs_indices",
                             "transpose", "group_size", "bits", "mode", "global_scale",
                             "sorted_indices", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|OOOpOOsO$pO:gather_qmm", kwlist, &xo, &wo,
                                     &sco, &bio, &lo, &ro, &transpose, &go, &bo, &mode, &gso,
                                     &sorted, &so))
        return NULL;
    int gs, bits;
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    if (gso != Py_None) {
        PyErr_SetString(PyExc_ValueError, "[gather_qmm] global_scale is only supported on the "
                                          "GPU in MLX; Ponte does not implement it.");
        return NULL;
    }
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *x, *w, *s, *b, *li, *ri;
    PyObject *r = NULL;
    if (!take(&t, xo, &x) && !take(&t, wo, &w) && !take(&t, sco, &s) && !take(&t, bio, &b) &&
        !take(&t, lo, &li) && !take(&t, ro, &ri))
        r = pp_wrap(pn_gather_qmm(x, w, s, b, li, ri, transpose, gs, bits, mode, sorted));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
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
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *x, *w, *s, *gx, *gw;
    PyObject *r = NULL;
    if (!take(&t, xo, &x) && !take(&t, wo, &w) && !take(&t, sco, &s) &&
        !take(&t, gxo, &gx) && !take(&t, gwo, &gw))
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
    if (opt_int(go, "group_size", &gs) || opt_int(bo, "bits", &bits)) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    args4 t = {.n = 0};
    pn_array *x, *w, *s, *li, *ri, *gx, *gw;
    PyObject *r = NULL;
    if (!take(&t, xo, &x) && !take(&t, wo, &w) && !take(&t, sco, &s) &&
        !take(&t, lo, &li) && !take(&t, ro, &ri) && !take(&t, gxo, &gx) &&
        !take(&t, gwo, &gw))
        r = pp_wrap(pn_gather_qqmm(x, w, s, li, ri, gs, bits, mode, gx, gw, sorted));
    pp_release_all(t.a, t.n);
    pp_stream_exit(pushed);
    return r;
}

static PyMethodDef quantized_methods[] = {
    {"quantize", (PyCFunction)(void (*)(void))py_quantize, METH_VARARGS | METH_KEYWORDS,
     "quantize(w, group_size=None, bits=None, mode='affine', *, global_scale=None) -> (w_q, "
     "scales[, biases])\n\nQuantizes w (..., K) in groups of group_size along the last axis "
     "(modes 'affine', 'mxfp4', 'mxfp8', 'nvfp4'; biases for 'affine' only)."},
    {"dequantize", (PyCFunction)(void (*)(void))py_dequantize, METH_VARARGS | METH_KEYWORDS,
     "dequantize(w, scales, biases=None, group_size=None, bits=None, mode='affine', "
     "global_scale=None, dtype=None)\n\nThe matrix that (w, scales, biases) encode."},
    {"quantized_matmul", (PyCFunction)(void (*)(void))py_quantized_matmul,
     METH_VARARGS | METH_KEYWORDS,
     "quantized_matmul(x, w, scales, biases=None, transpose=True, group_size=None, bits=None, "
     "mode='affine')\n\nx @ dequantize(w).T (transpose) or x @ dequantize(w)."},
    {"gather_qmm", (PyCFunction)(void (*)(void))py_gather_qmm, METH_VARARGS | METH_KEYWORDS,
     "gather_qmm(x, w, scales, biases=None, lhs_indices=None, rhs_indices=None, transpose=True, "
     "group_size=None, bits=None, mode='affine', global_scale=None, *, sorted_indices=False)"
     "\n\nquantized_matmul with matrix-level gather over the batch axes of x and w."},
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
int pp_init_quantized(PyObject *m)
{
    return PyModule_AddFunctions(m, quantized_methods);
}
