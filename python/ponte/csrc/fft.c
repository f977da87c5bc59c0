/* fft.c — ponte.core.fft, mlx.core.fft's functions over libponte's pn_fft_* (src/ops/fft.c):
 * the 1-d transforms (a, n=None, axis=-1, norm="backward"), the 2-d and n-d ones (a, s=None,
 * axes=..., norm="backward") and the shifts (a, axes=None), each with a trailing stream
 * argument. pp_init_fft fills the fft submodule that pp_init_ops creates. */
#include "pyponte.h"

typedef pn_array *(*fft_nfn)(pn_array *, const int64_t *, const int *, int, const char *);
typedef pn_array *(*fft_shift_fn)(pn_array *, const int *, int);

/* Converts a, runs the call with the stream entered, wraps the result. */
#define FFT_CALL(stream, ao, expr)                                                             \
    do {                                                                                       \
        int pushed_ = pp_stream_enter(stream);                                                 \
        if (pushed_ < 0) return NULL;                                                          \
        pn_array *a = pp_arr(ao);                                                              \
        pn_array *r_ = a ? (expr) : NULL;                                                      \
        pn_release(a);                                                                         \
        pp_stream_exit(pushed_);                                                               \
        return a ? pp_wrap(r_) : NULL;                                                         \
    } while (0)

/* fft / ifft / rfft / irfft (a, n=None, axis=-1, norm="backward", stream=None). */
static PyObject *fft_1d(fft_nfn f, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"a", "n", "axis", "norm", "stream", NULL};
    PyObject *ao, *no = Py_None, *stream = Py_None;
    int axis = -1;
    const char *norm = "backward";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OisO", kwlist, &ao, &no, &axis, &norm,
                                     &stream))
        return NULL;
    int64_t n = 0;
    if (no != Py_None) {
        long long v;
        if (pp_int(no, &v, "n")) return NULL;
        n = v;
    }
    FFT_CALL(stream, ao, f(a, no == Py_None ? NULL : &n, &axis, 1, norm));
}

/* fft2 / fftn / ... (a, s=None, axes=[-2, -1] for the 2-d ones, None for the n-d ones,
 * norm="backward", stream=None). As MLX, s without axes is an error. */
static PyObject *fft_nd(const char *name, fft_nfn f, bool two, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"a", "s", "axes", "norm", "stream", NULL};
    PyObject *ao, *so = Py_None, *axo = NULL, *stream = Py_None;
    const char *norm = "backward";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOsO", kwlist, &ao, &so, &axo, &norm,
                                     &stream))
        return NULL;
    int64_t s[PP_MAXDIM];
    int axes[PP_MAXDIM], ns = -1, na;
    if (so != Py_None && (ns = pp_shape(so, s, PP_MAXDIM, "s")) < 0) return NULL;
    if (!axo && two) {
        axes[0] = -2, axes[1] = -1, na = 2;
    } else if ((na = pp_axes(axo, axes, PP_MAXDIM)) == -1) {
        return NULL;
    }
    if (na == -2 && ns >= 0) {
        PyErr_Format(PyExc_ValueError, "[%s] `axes` should not be `None` if `s` is not `None`.",
                     name);
        return NULL;
    }
    if (na >= 0 && ns >= 0 && ns != na) {
        PyErr_SetString(PyExc_ValueError, "[fftn] Shape and axes have different sizes.");
        return NULL;
    }
    FFT_CALL(stream, ao,
             f(a, ns >= 0 ? s : NULL, na >= 0 ? axes : NULL, na >= 0 ? na : 0, norm));
}

/* fftshift / ifftshift (a, axes=None, stream=None). */
static PyObject *fft_shift(fft_shift_fn f, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"a", "axes", "stream", NULL};
    PyObject *ao, *axo = Py_None, *stream = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &ao, &axo, &stream)) return NULL;
    int axes[PP_MAXDIM], na = pp_axes(axo, axes, PP_MAXDIM);
    if (na == -1) return NULL;
    FFT_CALL(stream, ao, f(a, na == -2 ? NULL : axes, na == -2 ? 0 : na));
}

/* X(python name, C function, kind: 1 one-d (an n-d call over one axis: n <= 0 is then the C
 * API's error), 2 two-d, 0 n-d) */
#define FFT_FUNCS(X)                                                                           \
    X(fft, pn_fft_fftn_norm, 1) X(ifft, pn_fft_ifftn_norm, 1)                                  \
    X(rfft, pn_fft_rfftn_norm, 1) X(irfft, pn_fft_irfftn_norm, 1)                              \
    X(fft2, pn_fft_fftn_norm, 2) X(ifft2, pn_fft_ifftn_norm, 2)                                \
    X(rfft2, pn_fft_rfftn_norm, 2) X(irfft2, pn_fft_irfftn_norm, 2)                            \
    X(fftn, pn_fft_fftn_norm, 0) X(ifftn, pn_fft_ifftn_norm, 0)                                \
    X(rfftn, pn_fft_rfftn_norm, 0) X(irfftn, pn_fft_irfftn_norm, 0)

#define FFT_WRAP(NAME, FN, KIND)                                                               \
    static PyObject *py_fft_##NAME(PyObject *m, PyObject *args, PyObject *kw)                  \
    {                                                                                          \
        return KIND == 1 ? fft_1d(FN, args, kw) : fft_nd(#NAME, FN, KIND == 2, args, kw);      \
    }
FFT_FUNCS(FFT_WRAP)

static PyObject *py_fft_fftshift(PyObject *m, PyObject *args, PyObject *kw)
{
    return fft_shift(pn_fft_fftshift, args, kw);
}
static PyObject *py_fft_ifftshift(PyObject *m, PyObject *args, PyObject *kw)
{
    return fft_shift(pn_fft_ifftshift, args, kw);
}

#define FFT_DEF(NAME, FN, KIND)                                                                \
    {#NAME, (PyCFunction)(void (*)(void))py_fft_##NAME, METH_VARARGS | METH_KEYWORDS,          \
     KIND == 1 ? #NAME "(a, n=None, axis=-1, norm='backward', stream=None)"                    \
     : KIND == 2 ? #NAME "(a, s=None, axes=[-2, -1], norm='backward', stream=None)"            \
                 : #NAME "(a, s=None, axes=None, norm='backward', stream=None)"},
static PyMethodDef fft_methods[] = {
    FFT_FUNCS(FFT_DEF)
    {"fftshift", (PyCFunction)(void (*)(void))py_fft_fftshift, METH_VARARGS | METH_KEYWORDS,
     "fftshift(a, axes=None, stream=None): the zero frequency to the centre."},
    {"ifftshift", (PyCFunction)(void (*)(void))py_fft_ifftshift, METH_VARARGS | METH_KEYWORDS,
     "ifftshift(a, axes=None, stream=None): the inverse of fftshift."},
    {NULL},
};

/* ───────────────────────────── frequencies, stft, istft ───────────────────────────── */

/* None -> PN_FFT_DEFAULT, an int -> its value. 0 or -1. */
static int opt_int(PyObject *o, const char *name, int64_t *out)
{
    if (o == Py_None) {
        *out = PN_FFT_DEFAULT;
        return 0;
    }
    long long v;
    if (pp_int(o, &v, name)) return -1;
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

static PyMethodDef spectral_methods[] = {
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

/* Adds the functions to ponte.core.fft (created empty by pp_init_ops). 0 or -1. */
int pp_init_fft(PyObject *m)
{
    PyObject *fft = PyObject_GetAttrString(m, "fft");
    if (!fft) return -1;
    int rc = PyModule_AddFunctions(fft, fft_methods) || PyModule_AddFunctions(fft, spectral_methods) ||
             PyModule_SetDocString(fft, "mlx.core.fft: Fast Fourier Transforms.");
    Py_DECREF(fft);
    return rc ? -1 : 0;
}
