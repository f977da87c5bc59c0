/* surface6b.c — mlx.core surface of issue 4, part B: fft.fftfreq / rfftfreq / stft / istft,
 * fast.gated_delta_update and the distributed submodule (Group, init, is_available and the
 * collectives) over libponte's pn_fft_*, pn_fast_gated_delta_update and pn_dist_*. */
#include "pyponte.h"

/* None -> PN_FFT_DEFAULT, an int -> its value (bools too, as Python ints). 0 or -1. */
static int opt_int(PyObject *o, const char *name, int64_t *out)
{
    if (o == Py_None) {
        *out = PN_FFT_DEFAULT;
        return 0;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or None, got %s.", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

/* None -> -1, else the truth value (0 or 1); -2 with an exception. */
static int opt_bool(PyObject *o)
{
    if (o == Py_None) return -1;
    int t = PyObject_IsTrue(o);
    return t < 0 ? -2 : t;
}

/* Converts the optional array argument o (None: NULL). 0 or -1. */
static int opt_arr(PyObject *o, pn_array **out)
{
    *out = o == Py_None ? NULL : pp_arr(o);
    return o != Py_None && !*out ? -1 : 0;
}

/* ───────────────────────────── fft ───────────────────────────── */

/* fftfreq / rfftfreq (n, d=1.0, stream=None). */
static PyObject *freq_call(pn_array *(*f)(int64_t, double), PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n", "d", "stream", NULL};
    long long n;
    double d = 1.0;
    PyObject *stream = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "L|dO", kwlist, &n, &d, &stream)) return NULL;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *r = f(n, d);
    pp_stream_exit(pushed);
    return pp_wrap(r);
}
static PyObject *py_fftfreq(PyObject *m, PyObject *a, PyObject *k) { return freq_call(pn_fft_fftfreq, a, k); }
static PyObject *py_rfftfreq(PyObject *m, PyObject *a, PyObject *k) { return freq_call(pn_fft_rfftfreq, a, k); }

/* stft(x, n_fft=2048, hop_length=None, win_length=None, window=None, center=True,
 * pad_mode='reflect', norm='backward', onesided=None, stream=None). */
static PyObject *py_stft(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "n_fft", "hop_length", "win_length", "window", "center",
                             "pad_mode", "norm", "onesided", "stream", NULL};
    PyObject *xo, *hopo = Py_None, *wlo = Py_None, *wo = Py_None, *oso = Py_None, *stream = Py_None;
    long long n_fft = 2048;
    int center = 1;
    const char *pad_mode = "reflect", *norm = "backward";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|LOOOpssOO", kwlist, &xo, &n_fft, &hopo, &wlo,
                                     &wo, &center, &pad_mode, &norm, &oso, &stream))
        return NULL;
    int64_t hop, wl;
    int onesided = opt_bool(oso);
    if (opt_int(hopo, "hop_length", &hop) || opt_int(wlo, "win_length", &wl) || onesided == -2)
        return NULL;
    pn_array *x = pp_arr(xo), *w = NULL;
    if (!x || opt_arr(wo, &w)) {
        pn_release(x);
        return NULL;
    }
    int pushed = pp_stream_enter(stream);
    pn_array *r = pushed < 0 ? NULL
                             : pn_fft_stft(x, n_fft, hop, wl, w, center, pad_mode, norm, onesided);
    if (pushed >= 0) pp_stream_exit(pushed);
    pn_release(x);
    pn_release(w);
    return pushed < 0 ? NULL : pp_wrap(r);
}

/* istft(stft_matrix, n_fft=None, hop_length=None, win_length=None, window=None, center=True,
 * norm='backward', onesided=None, length=None, stream=None). */
static PyObject *py_istft(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"stft_matrix", "n_fft", "hop_length", "win_length", "window", "center",
                             "norm", "onesided", "length", "stream", NULL};
    PyObject *so, *nfo = Py_None, *hopo = Py_None, *wlo = Py_None, *wo = Py_None, *oso = Py_None,
                  *leno = Py_None, *stream = Py_None;
    int center = 1;
    const char *norm = "backward";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOOOpsOOO", kwlist, &so, &nfo, &hopo, &wlo, &wo,
                                     &center, &norm, &oso, &leno, &stream))
        return NULL;
    int64_t n_fft, hop, wl, length;
    int onesided = opt_bool(oso);
    if (opt_int(nfo, "n_fft", &n_fft) || opt_int(hopo, "hop_length", &hop) ||
        opt_int(wlo, "win_length", &wl) || opt_int(leno, "length", &length) || onesided == -2)
        return NULL;
    pn_array *s = pp_arr(so), *w = NULL;
    if (!s || opt_arr(wo, &w)) {
        pn_release(s);
        return NULL;
    }
    int pushed = pp_stream_enter(stream);
    pn_array *r = pushed < 0 ? NULL
                             : pn_fft_istft(s, n_fft, hop, wl, w, center, norm, onesided, length);
    if (pushed >= 0) pp_stream_exit(pushed);
    pn_release(s);
    pn_release(w);
    return pushed < 0 ? NULL : pp_wrap(r);
}

static PyMethodDef fft_methods[] = {
    {"fftfreq", (PyCFunction)(void (*)(void))py_fftfreq, METH_VARARGS | METH_KEYWORDS,
     "fftfreq(n, d=1.0, stream=None): the DFT sample frequencies (float32)."},
    {"rfftfreq", (PyCFunction)(void (*)(void))py_rfftfreq, METH_VARARGS | METH_KEYWORDS,
     "rfftfreq(n, d=1.0, stream=None): the non-negative DFT sample frequencies (float32)."},
    {"stft", (PyCFunction)(void (*)(void))py_stft, METH_VARARGS | METH_KEYWORDS,
     "stft(x, n_fft=2048, hop_length=None, win_length=None, window=None, center=True, "
     "pad_mode='reflect', norm='backward', onesided=None, stream=None): Short-Time Fourier "
     "Transform, complex (..., n_freq, n_frames)."},
    {"istft", (PyCFunction)(void (*)(void))py_istft, METH_VARARGS | METH_KEYWORDS,
     "istft(stft_matrix, n_fft=None, hop_length=None, win_length=None, window=None, center=True, "
     "norm='backward', onesided=None, length=None, stream=None): inverse Short-Time Fourier "
     "Transform."},
    {NULL},
};

/* ───────────────────────────── fast.gated_delta_update ───────────────────────────── */

static PyObject *py_gated_delta_update(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"q", "k", "v", "gamma", "beta", "initial_state", "mask", "stream", NULL};
    PyObject *o[7] = {0}, *stream = Py_None;
    o[5] = o[6] = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|OOO", kwlist, &o[0], &o[1], &o[2], &o[3],
                                     &o[4], &o[5], &o[6], &stream))
        return NULL;
    pn_array *a[7] = {0}, *out[2];
    for (int i = 0; i < 7; i++) {
        if (i < 5 ? !(a[i] = pp_arr(o[i])) : opt_arr(o[i], &a[i])) {
            pp_release_all(a, 7);
            return NULL;
        }
    }
    int pushed = pp_stream_enter(stream);
    int rc = pushed < 0 ? -2 : pn_fast_gated_delta_update(a[0], a[1], a[2], a[3], a[4], a[5], a[6], out);
    if (pushed >= 0) pp_stream_exit(pushed);
    pp_release_all(a, 7);
    if (rc == -2) return NULL;
    if (rc) return pp_raise();
    PyObject *y = pp_wrap(out[0]), *s = y ? pp_wrap(out[1]) : NULL;
    if (!s) {
        if (!y) pn_release(out[1]);
        Py_XDECREF(y);
        return NULL;
    }
    PyObject *list = Py_BuildValue("[NN]", y, s);
    return list;
}

static PyMethodDef fast_methods[] = {
    {"gated_delta_update", (PyCFunction)(void (*)(void))py_gated_delta_update,
     METH_VARARGS | METH_KEYWORDS,
     "gated_delta_update(q, k, v, gamma, beta, initial_state=None, mask=None, stream=None): "
     "[output (B, T, Hv, Dv), final state (B, Hv, Dv, Dk)] of the gated delta recurrence."},
    {NULL},
};

/* ───────────────────────────── distributed ───────────────────────────── */

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
    KWFN(is_available, "is_available(backend='any'): whether a communication backend exists "
                       "(none is compiled into Ponte: False)."),
    KWFN(init, "init(strict=False, backend='any'): the global group (a singleton group without "
               "a backend; strict=True raises RuntimeError)."),
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

/* Adds fftfreq / rfftfreq / stft / istft to m.fft, gated_delta_update to m.fast and the
 * distributed submodule (pp_init_ops creates fft and fast first). 0 or -1. */
int pp_init_surface6b(PyObject *m)
{
    const char *subs[2] = {"fft", "fast"};
    PyMethodDef *tables[2] = {fft_methods, fast_methods};
    for (int i = 0; i < 2; i++) {
        PyObject *sub = PyObject_GetAttrString(m, subs[i]);
        int rc = sub ? PyModule_AddFunctions(sub, tables[i]) : -1;
        Py_XDECREF(sub);
        if (rc) return -1;
    }
    if (PyType_Ready(&PPGroup_Type)) return -1;
    PyObject *dist = pp_submodule(m, "distributed", dist_methods,
                                  "Communication between processes (single process in Ponte).");
    return dist ? PyModule_AddObjectRef(dist, "Group", (PyObject *)&PPGroup_Type) : -1;
}
