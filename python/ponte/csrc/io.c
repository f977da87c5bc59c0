/* io.c — mlx.core's file functions: save, savez, savez_compressed, save_safetensors, save_gguf
 * and load, on a path or a file object. Saving to a path goes through the C path functions
 * (atomic: a temporary file, then a rename); to a file object (anything with write) through
 * pn_save_to, whose writer hands the bytes to its write. Loading reads the whole file (a path
 * opened in binary mode, or the file object's read() from where it stands) and parses the
 * bytes with pn_load_from; the format is format=, else the extension of the path or of the
 * file object's name. */
#include "pyponte.h"

#include <string.h>

/* ───────────────────────────── the file argument ───────────────────────────── */

/* A path (str, bytes, os.PathLike) or a file object. */
typedef struct {
    PyObject *path; /* the path (str or bytes, owned), or NULL for a file object */
    PyObject *file; /* the file object (borrowed) */
} file_arg;

/* Reads o, the file argument of function fn; a file object must have `method` (write or
 * read). 0, or -1 with ValueError (as MLX) or the path's error. */
static int file_arg_of(PyObject *o, const char *fn, const char *method, file_arg *f)
{
    f->path = NULL, f->file = NULL;
    if (PyUnicode_Check(o) || PyBytes_Check(o) || PyObject_HasAttrString(o, "__fspath__"))
        return (f->path = PyOS_FSPath(o)) ? 0 : -1;
    if (PyObject_HasAttrString(o, method)) {
        f->file = o;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "[%s] Input must be a file-like object, or string", fn);
    return -1;
}

/* The path as UTF-8 with ext appended when it does not end with it (*holder keeps it). */
static const char *path_with_ext(PyObject *path, const char *ext, PyObject **holder)
{
    PyObject *s = PyBytes_Check(path) ? PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path)) : Py_NewRef(path);
    const char *p = s ? PyUnicode_AsUTF8(s) : NULL;
    size_t n = p ? strlen(p) : 0, k = strlen(ext);
    if (p && (n < k || strcmp(p + n - k, ext))) {
        Py_SETREF(s, PyUnicode_FromFormat("%U%s", s, ext));
        p = s ? PyUnicode_AsUTF8(s) : NULL;
    }
    *holder = s;
    return p;
}

/* ───────────────────────────── saving ───────────────────────────── */

/* pn_writer over a Python file object: write(memoryview) until every byte is taken (a raw
 * file may take fewer). A Python exception is stashed for the C caller to unwind. */
static int py_write(void *ctx, const void *data, size_t n)
{
    PyObject *f = ctx;
    const char *p = data;
    while (n > 0) {
        PyObject *mv = PyMemoryView_FromMemory((char *)p, (Py_ssize_t)n, PyBUF_READ);
        if (!mv) return pp_stash_exception();
        PyObject *r = PyObject_CallMethod(f, "write", "O", mv);
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *rel = PyObject_CallMethod(mv, "release", NULL); /* no view outlives the data */
        Py_DECREF(mv);
        if (et) { /* write's exception first */
            Py_XDECREF(rel);
            PyErr_Clear();
            PyErr_Restore(et, ev, tb);
            return pp_stash_exception();
        }
        if (!rel) {
            Py_XDECREF(r);
            return pp_stash_exception();
        }
        Py_DECREF(rel);
        Py_ssize_t w = r == Py_None ? (Py_ssize_t)n : PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (w == -1 && PyErr_Occurred()) return pp_stash_exception();
        if (w <= 0 || (size_t)w > n) {
            PyErr_Format(PyExc_OSError, "[save] The file object's write() took %zd of %zu bytes.", w, n);
            return pp_stash_exception();
        }
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Saves arrays (metadata: GGUF's, may be NULL) as format to fo, the file argument of fn; a path
 * without ext gets it appended, as MLX. */
static PyObject *save_any(const char *fn, PyObject *fo, pn_file_format format, const char *ext,
                          const pn_params *arrays, const pn_gguf_meta *metadata)
{
    file_arg f;
    if (file_arg_of(fo, fn, "write", &f)) return NULL;
    int rc = -1;
    if (f.file) {
        rc = pn_save_to(&(pn_writer){py_write, f.file}, format, arrays, metadata);
    } else {
        PyObject *holder = NULL;
        const char *path = path_with_ext(f.path, ext, &holder);
        if (path) switch (format) {
            case PN_FORMAT_NPY: rc = pn_save_npy(path, pn_params_at(arrays, 0)); break;
            case PN_FORMAT_NPZ: rc = pn_save_params(path, arrays); break; /* by ext */
            case PN_FORMAT_SAFETENSORS: rc = pn_save_safetensors(path, arrays, metadata); break;
            case PN_FORMAT_NPZ_COMPRESSED: rc = pn_savez_compressed(path, arrays); break;
            case PN_FORMAT_GGUF: rc = pn_save_gguf(path, arrays, metadata); break;
            }
        Py_XDECREF(holder);
        Py_DECREF(f.path);
    }
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    Py_RETURN_NONE;
}

/* A parameter map from a dict of arrays. NULL with an exception. */
static pn_params *dict_params(PyObject *d)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "Expected a dict of arrays.");
        return NULL;
    }
    pn_params *p = pn_params_new();
    if (!p) return (pn_params *)pp_raise();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        pn_array *a = name ? pp_arr(v) : NULL;
        if (!name && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Keys must be strings.");
        int rc = a ? pn_params_set(p, name, a) : -1;
        if (a) pn_release(a);
        if (rc) {
            if (!PyErr_Occurred()) pp_raise();
            pn_params_free(p);
            return NULL;
        }
    }
    return p;
}

static PyObject *py_save(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"file", "arr", NULL};
    PyObject *fo, *ao;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:save", kwlist, &fo, &ao)) return NULL;
    pn_params *p = pn_params_new();
    pn_array *a = p ? pp_arr(ao) : (pn_array *)pp_raise();
    PyObject *r = NULL;
    if (a && pn_params_set(p, "", a) == 0) r = save_any("save", fo, PN_FORMAT_NPY, ".npy", p, NULL);
    else if (a) pp_raise();
    pn_release(a);
    pn_params_free(p);
    return r;
}

/* GGUF metadata from a dict of arrays, str and lists of str. NULL with an exception. */
static pn_gguf_meta *meta_of_dict(PyObject *d)
{
    pn_gguf_meta *m = pn_gguf_meta_new();
    if (!m) return (pn_gguf_meta *)pp_raise();
    if (d == Py_None) return m;
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "[save_gguf] metadata must be a dict.");
        pn_gguf_meta_free(m);
        return NULL;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *key = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        int rc = -1;
        if (!key) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "[save_gguf] Metadata keys must be strings.");
        } else if (PPArray_Check(v)) {
            rc = pn_gguf_meta_set_array(m, key, PPARR(v));
        } else if (PyUnicode_Check(v)) {
            const char *s = PyUnicode_AsUTF8(v);
            rc = s ? pn_gguf_meta_set_strings(m, key, &s, 1, false) : -1;
        } else if (PyList_Check(v)) {
            Py_ssize_t n = PyList_GET_SIZE(v);
            const char **strs = PyMem_Malloc((size_t)(n + 1) * sizeof *strs);
            Py_ssize_t j = 0;
            for (; strs && j < n; j++) {
                PyObject *x = PyList_GET_ITEM(v, j);
                if (!PyUnicode_Check(x) || !(strs[j] = PyUnicode_AsUTF8(x))) break;
            }
            if (!strs) PyErr_NoMemory();
            else if (j == n) rc = pn_gguf_meta_set_strings(m, key, strs, n, true);
            else if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "[save_gguf] Metadata lists must hold strings.");
            PyMem_Free(strs);
        } else {
            PyErr_Format(PyExc_TypeError, "[save_gguf] Metadata values must be arrays, strings or lists "
                         "of strings, got %s.", Py_TYPE(v)->tp_name);
        }
        if (rc) {
            if (!PyErr_Occurred()) pp_raise();
            pn_gguf_meta_free(m);
            return NULL;
        }
    }
    return m;
}

static PyObject *py_save_gguf(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"file", "arrays", "metadata", NULL};
    PyObject *fo, *d, *mo = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:save_gguf", kwlist, &fo, &d, &mo)) return NULL;
    pn_params *p = dict_params(d);
    pn_gguf_meta *meta = p ? meta_of_dict(mo) : NULL;
    PyObject *r = meta ? save_any("save_gguf", fo, PN_FORMAT_GGUF, ".gguf", p, meta) : NULL;
    pn_gguf_meta_free(meta);
    pn_params_free(p);
    return r;
}

static PyObject *py_save_safetensors(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"file", "arrays", "metadata", NULL};
    PyObject *fo, *d, *meta = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:save_safetensors", kwlist, &fo, &d, &meta))
        return NULL;
    /* metadata: a dict of str to str (MLX's ValueError otherwise), the header's __metadata__ */
    pn_gguf_meta *md = NULL;
    if (meta != Py_None) {
        if (!PyDict_Check(meta)) {
            PyErr_SetString(PyExc_TypeError, "[save_safetensors] metadata must be a dict[str, str].");
            return NULL;
        }
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(meta, &pos, &k, &v))
            if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
                PyErr_SetString(PyExc_ValueError, "[save_safetensors] Metadata must be a dictionary "
                                                  "with string keys and values");
                return NULL;
            }
        if (!(md = meta_of_dict(meta))) return NULL;
    }
    pn_params *p = dict_params(d);
    PyObject *r = p ? save_any("save_safetensors", fo, PN_FORMAT_SAFETENSORS, ".safetensors", p, md) : NULL;
    pn_params_free(p);
    pn_gguf_meta_free(md);
    return r;
}

/* savez / savez_compressed (file, *args, **kwargs): positional arrays as arr_0, arr_1, ... */
static PyObject *savez_any(PyObject *args, PyObject *kw, bool compress)
{
    const char *fn = compress ? "savez_compressed" : "savez";
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1) {
        PyErr_Format(PyExc_TypeError, "%s(file, *args, **kwargs) needs a file.", fn);
        return NULL;
    }
    PyObject *d = kw ? PyDict_Copy(kw) : PyDict_New();
    for (Py_ssize_t i = 1; d && i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "arr_%zd", i - 1);
        if (PyDict_SetItemString(d, name, PyTuple_GET_ITEM(args, i))) Py_CLEAR(d);
    }
    pn_params *p = d ? dict_params(d) : NULL;
    PyObject *r = p ? save_any(fn, PyTuple_GET_ITEM(args, 0), compress ? PN_FORMAT_NPZ_COMPRESSED : PN_FORMAT_NPZ,
                               ".npz", p, NULL)
                    : NULL;
    pn_params_free(p);
    Py_XDECREF(d);
    return r;
}

static PyObject *py_savez(PyObject *m, PyObject *args, PyObject *kw) { return savez_any(args, kw, false); }
static PyObject *py_savez_compressed(PyObject *m, PyObject *args, PyObject *kw) { return savez_any(args, kw, true); }

/* ───────────────────────────── loading ───────────────────────────── */

/* A dict of the arrays in a parameter map. */
static PyObject *params_dict(pn_params *p)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < pn_params_count(p); i++) {
        PyObject *a = pp_wrap_borrowed(pn_params_at(p, i));
        if (!a || PyDict_SetItemString(d, pn_params_name(p, i), a)) Py_CLEAR(d);
        Py_XDECREF(a);
    }
    return d;
}

/* GGUF metadata as a dict: arrays, str, or lists of str. */
static PyObject *gguf_meta_dict(const pn_gguf_meta *m)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < pn_gguf_meta_count(m); i++) {
        pn_array *a = pn_gguf_meta_array(m, i);
        PyObject *v = NULL;
        if (a) {
            v = pp_wrap_borrowed(a);
        } else {
            const char *const *strs;
            bool is_list;
            int64_t n = pn_gguf_meta_strings(m, i, &strs, &is_list);
            if (!is_list) {
                v = PyUnicode_DecodeUTF8(strs[0], (Py_ssize_t)strlen(strs[0]), "replace");
            } else if ((v = PyList_New((Py_ssize_t)n))) {
                for (int64_t j = 0; j < n; j++) {
                    PyObject *x = PyUnicode_DecodeUTF8(strs[j], (Py_ssize_t)strlen(strs[j]), "replace");
                    if (!x) {
                        Py_CLEAR(v);
                        break;
                    }
                    PyList_SET_ITEM(v, (Py_ssize_t)j, x);
                }
            }
        }
        if (!v || PyDict_SetItemString(d, pn_gguf_meta_key(m, i), v)) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

/* The format named by s ("npy", "npz", "safetensors", "gguf"). 0, or -1 with ValueError. */
static int format_of(const char *s, pn_file_format *f)
{
    static const struct {
        const char *name;
        pn_file_format format;
    } names[] = {{"npy", PN_FORMAT_NPY}, {"npz", PN_FORMAT_NPZ}, {"safetensors", PN_FORMAT_SAFETENSORS},
                 {"gguf", PN_FORMAT_GGUF}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i].name)) {
            *f = names[i].format;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "[load] Unknown file format %s", s);
    return -1;
}

/* The file's bytes: a path's whole content, a file object's read() (from where it stands). A
 * new bytes-like object, or NULL with an exception. */
static PyObject *read_all(const file_arg *f)
{
    PyObject *file = f->file ? Py_NewRef(f->file) : NULL;
    if (!file) {
        PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
        PyObject *open = builtins ? PyDict_GetItemString(builtins, "open") : NULL;
        if (!open) {
            PyErr_SetString(PyExc_RuntimeError, "[load] builtins.open is missing.");
            return NULL;
        }
        if (!(file = PyObject_CallFunction(open, "Os", f->path, "rb"))) return NULL;
    }
    PyObject *data = PyObject_CallMethod(file, "read", NULL);
    if (!f->file) { /* close what was opened here, keeping read's exception first */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = PyObject_CallMethod(file, "close", NULL);
        if (et) Py_XDECREF(r), PyErr_Clear(), PyErr_Restore(et, ev, tb);
        else if (!r) Py_CLEAR(data);
        else Py_DECREF(r);
    }
    Py_DECREF(file);
    if (data && !PyObject_CheckBuffer(data)) {
        PyErr_Format(PyExc_ValueError, "[load] The file object's read() returned %s, not bytes (open "
                     "the file in binary mode).", Py_TYPE(data)->tp_name);
        Py_CLEAR(data);
    }
    return data;
}

static PyObject *py_load(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"file", "format", "return_metadata", "stream", NULL};
    PyObject *fo, *fmt = Py_None, *stream = Py_None;
    int want_meta = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Op$O:load", kwlist, &fo, &fmt, &want_meta, &stream))
        return NULL;
    (void)stream;
    file_arg f;
    if (file_arg_of(fo, "load", "read", &f)) return NULL;
    /* the name: the path, or the file object's name (for the format and for errors) */
    PyObject *name = f.path ? Py_NewRef(f.path) : PyObject_GetAttrString(f.file, "name");
    if (!name) PyErr_Clear();
    PyObject *name_str = name && PyBytes_Check(name) ? PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(name))
                         : name && PyUnicode_Check(name) ? Py_NewRef(name) : NULL;
    if (!name_str) PyErr_Clear();
    const char *nm = name_str ? PyUnicode_AsUTF8(name_str) : NULL;
    PyObject *r = NULL, *data = NULL;
    pn_file_format format;
    if (fmt != Py_None) {
        const char *s = PyUnicode_Check(fmt) ? PyUnicode_AsUTF8(fmt) : NULL;
        if (!s && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "[load] format must be a str.");
        if (!s || format_of(s, &format)) goto done;
    } else {
        const char *dot = nm ? strrchr(nm, '.') : NULL;
        const char *slash = nm ? strrchr(nm, '/') : NULL;
        if (!dot || (slash && slash > dot)) {
            PyErr_SetString(PyExc_ValueError, f.file ? "[load] Could not infer file format from the file "
                                                       "object (it has no name with an extension): pass format="
                                                     : "[load] Could not infer file format from extension");
            goto done;
        }
        if (format_of(dot + 1, &format)) goto done;
    }
    if (want_meta && format != PN_FORMAT_GGUF && format != PN_FORMAT_SAFETENSORS) {
        PyErr_Format(PyExc_ValueError, "[load] metadata not supported for format %s",
                     format == PN_FORMAT_NPY ? "npy" : "npz");
        goto done;
    }
    if (!(data = read_all(&f))) goto done;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)) goto done;
    pn_gguf_meta *meta = NULL;
    pn_params *p = pn_load_from(view.buf, (size_t)view.len, format, nm, want_meta ? &meta : NULL);
    PyBuffer_Release(&view);
    if (!p) {
        pp_raise();
        goto done;
    }
    r = format == PN_FORMAT_NPY ? pp_wrap_borrowed(pn_params_at(p, 0)) : params_dict(p);
    pn_params_free(p);
    if (r && want_meta) {
        PyObject *md = meta ? gguf_meta_dict(meta) : PyDict_New();
        r = md ? Py_BuildValue("(NN)", r, md) : (Py_DECREF(r), NULL);
    }
    pn_gguf_meta_free(meta);
done:
    Py_XDECREF(data);
    Py_XDECREF(name_str);
    Py_XDECREF(name);
    Py_XDECREF(f.path);
    return r;
}

/* ───────────────────────────── the table ───────────────────────────── */

#define VK METH_VARARGS | METH_KEYWORDS
static PyMethodDef io_methods[] = {
    {"save", (PyCFunction)(void (*)(void))py_save, VK,
     "save(file, arr): arr as .npy to a path (.npy appended when missing) or a file object."},
    {"savez", (PyCFunction)(void (*)(void))py_savez, VK,
     "savez(file, *args, **kwargs): arrays as .npz (positional ones as arr_0, arr_1, ...)."},
    {"savez_compressed", (PyCFunction)(void (*)(void))py_savez_compressed, VK,
     "savez_compressed(file, *args, **kwargs): savez with deflated members."},
    {"save_safetensors", (PyCFunction)(void (*)(void))py_save_safetensors, VK,
     "save_safetensors(file, arrays, metadata=None): a dict of arrays (and a dict of string "
     "metadata) as .safetensors."},
    {"save_gguf", (PyCFunction)(void (*)(void))py_save_gguf, VK,
     "save_gguf(file, arrays, metadata=None): a dict of arrays (and metadata) as .gguf."},
    {"load", (PyCFunction)(void (*)(void))py_load, VK,
     "load(file, format=None, return_metadata=False, *, stream=None): the arrays of a .npy, .npz, "
     ".safetensors or .gguf path or file object."},
    {NULL},
};

int pp_init_io(PyObject *m) { return PyModule_AddFunctions(m, io_methods); }
