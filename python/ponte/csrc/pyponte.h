/* pyponte.h — shared declarations of ponte.core, the CPython extension over libponte: the
 * array, dtype, device and stream types, conversions between Python objects and pn_arrays,
 * error translation, and the tables each source file contributes to the module. */
#ifndef PYPONTE_H
#define PYPONTE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <ponte.h>

#define PP_MAXDIM 64

/* ───────────────────────────── types ───────────────────────────── */

/* mlx.core.array: owns one reference to a (released in dealloc). */
typedef struct {
    PyObject_HEAD
    pn_array *a;
    PyObject *weakrefs;
} PPArray;

typedef struct {
    PyObject_HEAD
    pn_dtype dtype;
} PPDtype;

typedef struct {
    PyObject_HEAD
    pn_dtype_category cat;
} PPCategory;

typedef struct {
    PyObject_HEAD
    pn_device_type type;
} PPDeviceType;

typedef struct {
    PyObject_HEAD
    pn_device dev;
} PPDevice;

typedef struct {
    PyObject_HEAD
    pn_stream s;
} PPStream;

extern PyTypeObject PPArray_Type, PPDtype_Type, PPCategory_Type, PPDeviceType_Type,
    PPDevice_Type, PPStream_Type, PPArrayAt_Type;
#define PPArray_Check(o) PyObject_TypeCheck((o), &PPArray_Type)
#define PPARR(o) (((PPArray *)(o))->a)

/* The dtype singletons (borrowed references). */
extern PyObject *pp_dtype_objs[PN_NUM_DTYPES];

/* Defines WRAPPER, a METH_VARARGS | METH_KEYWORDS function that takes IMPL's one argument
 * positionally or by the name KW, as MLX's functions take theirs, and calls IMPL (a METH_O
 * function) with it. FNAME names the function in argument errors. */
#define PP_ONE_ARG(WRAPPER, IMPL, FNAME, KW)                                                   \
    static PyObject *WRAPPER(PyObject *m, PyObject *args, PyObject *kwargs)                    \
    {                                                                                          \
        static char *kwlist_[] = {KW, NULL};                                                   \
        PyObject *x_;                                                                          \
        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:" FNAME, kwlist_, &x_)) return NULL; \
        return IMPL(m, x_);                                                                    \
    }
#define PP_ONE_ARG_METHOD(NAME, WRAPPER, DOC)                                                  \
    {NAME, (PyCFunction)(void (*)(void))WRAPPER, METH_VARARGS | METH_KEYWORDS, DOC}

/* ───────────────────────────── errors ───────────────────────────── */

/* Raises the Python exception for the thread's Ponte error (ValueError, MemoryError, OSError,
 * RuntimeError, TypeError by kind), or the Python exception a callback stashed; clears the
 * Ponte error. Always returns NULL. */
PyObject *pp_raise(void);
/* Inside a callback from C: moves the current Python exception aside (the first one sticks)
 * and records a Ponte error so that the C caller unwinds. Returns -1. */
int pp_stash_exception(void);
/* Drops a stashed exception (after a C call that succeeded anyway). */
void pp_clear_stash(void);

/* ───────────────────────────── arrays ───────────────────────────── */

/* Wraps an op's result (owned by the caller or the current scope) in a new array object that
 * owns it; NULL raises the Ponte error. */
PyObject *pp_wrap(pn_array *a);
/* Wraps a borrowed array, adding a reference. */
PyObject *pp_wrap_borrowed(pn_array *a);
/* Makes an array owned by the caller out of a Python object: an array (new reference), a Python
 * scalar (strong: bool, int32/int64, float32, complex64), nested lists, or a buffer / numpy
 * array. dtype < 0: inferred. NULL with a Python exception. Release with pn_release. */
pn_array *pp_arr(PyObject *o);
pn_array *pp_from_py(PyObject *o, int dtype);
/* As pp_arr, but Python numbers become weak scalars (for binary ops). other (may be NULL) is
 * the array the scalar meets: an int that overflows its integer dtype raises ValueError. */
pn_array *pp_arr_weak(PyObject *o, pn_array *other);
/* Whether o is a Python scalar (bool, int, float, complex). */
int pp_is_scalar(PyObject *o);
/* The row-major contents of a as a nested Python list (scalar for 0-d). */
PyObject *pp_tolist(pn_array *a);
PyObject *pp_item(pn_array *a);

/* ───────────────────────────── argument helpers ───────────────────────────── */

/* The one test and parser of integer arguments: a Python int or any integer scalar with
 * __index__ that is not a sequence (numpy.int64, a numpy integer array of shape ()); bool is
 * not an int here. pp_index: a new int object, or NULL with TypeError "<what> must be an int,
 * got <type>."; pp_int: its value (0, or -1 with TypeError / OverflowError). */
int pp_is_int(PyObject *o);
PyObject *pp_index(PyObject *o, const char *what);
int pp_int(PyObject *o, long long *v, const char *what);
/* An int or a sequence of ints into shape (at most max entries). Returns the count or -1. */
int pp_shape(PyObject *o, int64_t *shape, int max, const char *what);
/* None (returns -2: all axes), an int, or a sequence of ints. Returns the count or -1. */
int pp_axes(PyObject *o, int *axes, int max);
/* An int axis or None (PN_ALL_AXES). Returns 0 or -1. */
int pp_axis(PyObject *o, int *axis);
/* "O&" converters: a Dtype object; a Dtype or None (-1). */
int pp_dtype_conv(PyObject *o, void *out);
int pp_opt_dtype_conv(PyObject *o, void *out);
PyObject *pp_dtype_obj(pn_dtype t); /* new reference */
/* A Device, DeviceType into a device. Returns 0 or -1 (TypeError). */
int pp_device_of(PyObject *o, pn_device *d);
PyObject *pp_device_obj(pn_device d);
PyObject *pp_stream_obj(pn_stream s);
/* Makes `stream` (None, Stream, Device or DeviceType) current for the next call; returns 1 if
 * a stream was pushed, 0 for None, -1 with an exception. pp_stream_exit(pushed) undoes it. */
int pp_stream_enter(PyObject *stream);
void pp_stream_exit(int pushed);

/* Releases n arrays (NULL entries are skipped). */
void pp_release_all(pn_array **a, int n);

/* ───────────────────────────── module parts ───────────────────────────── */

/* Each file adds its functions to the module (and may create submodules). 0 or -1. */
int pp_init_types(PyObject *m);
int pp_init_array(PyObject *m);
int pp_init_ops(PyObject *m);
int pp_init_transforms(PyObject *m);
int pp_init_nn(PyObject *m);
int pp_init_linalg_decomp(PyObject *m); /* linalg_decomp.c: after pp_init_ops */
int pp_init_fft(PyObject *m); /* fft.c: fills ponte.core.fft */
int pp_init_quantized(PyObject *m); /* quantize, dequantize, quantized_matmul (quantized.c) */
int pp_init_export(PyObject *m); /* export_function, import_function, exporter (export.c) */
int pp_init_device_state(PyObject *m); /* device_info, clear_streams, thread-local streams, random.state (device_state.c) */
int pp_init_distributed(PyObject *m);  /* the distributed submodule (distributed.c) */
int pp_init_custom_kernel(PyObject *m); /* fast.cuda_kernel, precompiled_cuda_kernel, metal_kernel (custom_kernel.c) */
int pp_init_compile(PyObject *m);      /* compile, disable_compile, enable_compile (compile.c) */
int pp_init_io(PyObject *m);           /* save, savez, savez_compressed, save_safetensors, save_gguf, load (io.c) */
PyObject *pp_array_iterator(PyObject *array); /* iter(array): an ArrayIterator (array.c) */

/* Indexing (indexing.c). */
PyObject *pp_getitem(PPArray *self, PyObject *idx);
int pp_setitem(PPArray *self, PyObject *idx, PyObject *val);
/* a with the update op applied at idx: mode is a pn_scatter_mode, or -1 for subtract
 * (add of the negation) and -2 for divide (product with the reciprocal). */
pn_array *pp_index_update(pn_array *a, PyObject *idx, PyObject *val, int mode);

/* Trees (transforms.c): appends the arrays among the leaves of tree to list. strict: any other
 * leaf is a TypeError. Returns 0 or -1. */
int pp_tree_flatten(PyObject *tree, PyObject *list, int strict);
/* items (a new plain tuple, stolen) as a container of proto's type: proto itself a plain
 * tuple: items; a namedtuple: type(proto)(*items); another tuple subclass:
 * type(proto)(items); items when that call fails. New reference. */
PyObject *pp_tuple_like(PyObject *proto, PyObject *items);
/* A copy of tree (lists, tuples, dicts; other leaves kept) whose arrays (PP_FILL_ARRAYS) or
 * leaves equal to marker (PP_FILL_MARKERS) are replaced in order by leaves[*pos...], or whose
 * arrays become marker (PP_FILL_SKELETON: leaves and pos unused). New reference or NULL. */
enum { PP_FILL_ARRAYS, PP_FILL_MARKERS, PP_FILL_SKELETON };
PyObject *pp_tree_fill(PyObject *tree, PyObject *leaves, Py_ssize_t *pos, PyObject *marker, int mode);

/* tp_descr_get of the function-like types (transformed and compiled functions): bound to an
 * instance when used as a method, as a Python function would be. */
PyObject *pp_bind_as_method(PyObject *self, PyObject *obj, PyObject *type);

/* Creates a submodule "ponte.core.<name>" registered in sys.modules and set as m.<name>. */
PyObject *pp_submodule(PyObject *m, const char *name, PyMethodDef *methods, const char *doc);

#endif
