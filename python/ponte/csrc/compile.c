/* compile.c — mlx.core.compile, disable_compile and enable_compile over pn_compile: a
 * compiled Python function keeps one C compiled closure per call structure (the pytree shapes
 * of the arguments, their non-array leaves, the number of implicit state arrays), feeds it the
 * array leaves plus the arrays of `inputs`, and writes the new arrays of `outputs` back into
 * those containers (dicts, lists, Modules) in place after every call. A dict in those trees
 * with _compile_pull/_compile_push methods (state kept elsewhere, e.g. in C) is refreshed
 * before it is read and handed back after it is written. */
#include "pyponte.h"

#include "transforms/trace.h"

#include <string.h>

/* ───────────────────────────── trees ───────────────────────────── */

/* The marker standing for an array leaf in a recorded output structure. */
static PyObject *slot_marker;

/* Appends to key a description of tree (arrays as "a", containers with their sizes and dict
 * keys, other leaves as (type name, value)) and its array leaves to leaves. MLX's rule:
 * arguments are trees of arrays or constants (None, bool, int, float, str). 0 or -1. */
static int describe(PyObject *tree, PyObject *key, PyObject *leaves)
{
    if (PPArray_Check(tree)) {
        if (PyList_Append(leaves, tree)) return -1;
        return PyList_Append(key, slot_marker);
    }
    int is_list = PyList_Check(tree), is_tuple = PyTuple_Check(tree);
    if (is_list || is_tuple) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(tree);
        PyObject *h = Py_BuildValue("(sn)", is_list ? "list" : "tuple", n);
        if (!h || PyList_Append(key, h)) return Py_XDECREF(h), -1;
        Py_DECREF(h);
        for (Py_ssize_t i = 0; i < n; i++)
            if (describe(PySequence_Fast_GET_ITEM(tree, i), key, leaves)) return -1;
        return 0;
    }
    if (PyDict_Check(tree)) {
        PyObject *ks = PyDict_Keys(tree), *h = ks ? PyList_AsTuple(ks) : NULL;
        Py_XDECREF(ks);
        PyObject *hh = h ? Py_BuildValue("(sO)", "dict", h) : NULL;
        Py_XDECREF(h);
        if (!hh || PyList_Append(key, hh)) return Py_XDECREF(hh), -1;
        Py_DECREF(hh);
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(tree, &pos, &k, &v))
            if (describe(v, key, leaves)) return -1;
        return 0;
    }
    if (tree == Py_None || PyBool_Check(tree) || PyLong_Check(tree) || PyFloat_Check(tree) ||
        PyUnicode_Check(tree)) {
        PyObject *h = Py_BuildValue("(sO)", Py_TYPE(tree)->tp_name, tree);
        if (!h || PyList_Append(key, h)) return Py_XDECREF(h), -1;
        Py_DECREF(h);
        return 0;
    }
    PyErr_Format(PyExc_ValueError,
                 "[compile] Function arguments must be trees of arrays or constants (floats, "
                 "ints, strings, or None), but received type %s.", Py_TYPE(tree)->tp_name);
    return -1;
}

/* Appends (container, key) for every array leaf of a state tree (dicts, Modules, lists; the
 * arrays inside tuples are read but cannot be written back: their container is None). */
static int state_slots(PyObject *tree, PyObject *parent, PyObject *k, PyObject *slots)
{
    if (PPArray_Check(tree)) {
        PyObject *s = PyTuple_Pack(2, parent ? parent : Py_None, k ? k : Py_None);
        int rc = s ? PyList_Append(slots, s) : -1;
        Py_XDECREF(s);
        return rc;
    }
    if (PyList_Check(tree) || PyTuple_Check(tree)) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(tree); i++) {
            PyObject *ik = PyLong_FromSsize_t(i);
            int rc = ik ? state_slots(PySequence_Fast_GET_ITEM(tree, i), PyList_Check(tree) ? tree : NULL, ik, slots) : -1;
            Py_XDECREF(ik);
            if (rc) return -1;
        }
        return 0;
    }
    if (PyDict_Check(tree)) {
        PyObject *kk, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(tree, &pos, &kk, &v))
            if (state_slots(v, tree, kk, slots)) return -1;
    }
    return 0;
}

static PyObject *slot_get(PyObject *s)
{
    PyObject *c = PyTuple_GET_ITEM(s, 0), *k = PyTuple_GET_ITEM(s, 1);
    return c == Py_None ? NULL : PyObject_GetItem(c, k);
}

/* Writes v at slot s (dict item or list entry, through __setitem__ so Modules see it). */
static int slot_set(PyObject *s, PyObject *v)
{
    PyObject *c = PyTuple_GET_ITEM(s, 0), *k = PyTuple_GET_ITEM(s, 1);
    if (c == Py_None) return 0;
    return PyObject_SetItem(c, k, v);
}

/* Calls method (PULL or PUSH) on every container of tree that defines it: state objects
 * whose arrays live elsewhere (an optimizer's state in C) refresh themselves from their owner
 * (pull) or hand their arrays back to it (push). 0 or -1. */
static const char *const PULL = "_compile_pull", *const PUSH = "_compile_push";

static int state_sync(PyObject *tree, const char *method)
{
    if (!tree || PPArray_Check(tree)) return 0;
    if (PyList_Check(tree) || PyTuple_Check(tree)) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(tree); i++)
            if (state_sync(PySequence_Fast_GET_ITEM(tree, i), method)) return -1;
        return 0;
    }
    if (!PyDict_Check(tree)) return 0;
    if (PyObject_HasAttrString(tree, method)) {
        PyObject *r = PyObject_CallMethod(tree, method, NULL);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(tree, &pos, &k, &v))
        if ((PyDict_Check(v) || PyList_Check(v) || PyTuple_Check(v)) && state_sync(v, method)) return -1;
    return 0;
}

/* ───────────────────────────── one traced structure ───────────────────────────── */

/* One call structure: its C compiled closure and what its trace recorded. */
typedef struct {
    pn_closure *compiled;
    PyObject *fun, *inputs, *outputs; /* borrowed from the owner (which outlives it) */
    int rs_in, rs_out; /* mx.random.state is in inputs (its key the last input) / outputs */
    PyObject *out_skel;               /* the result's structure, arrays as markers */
    Py_ssize_t nres;                  /* arrays in the result (then the output state's) */
    /* during a call */
    PyObject *args, *kwargs, *kwnames; /* kwnames: sorted keyword names */
    Py_ssize_t nargleaves, cap; /* cap: room for outputs in this call */
    PyObject *keep; /* leaf lists the trace returned, alive until the call ends */
} centry;

static void centry_destroy(void *p)
{
    centry *e = p;
    Py_XDECREF(e->out_skel);
    Py_XDECREF(e->keep);
    PyMem_Free(e);
}

/* The C function a compiled closure traces: calls fun on the inputs (argument leaves, then
 * the input state's), with the state containers holding the traced arrays during the call. */
static int trampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    centry *e = ctx;
    *nout = 0;
    PyObject *leaves = PyList_New(nin), *slots = NULL, *saved = NULL, *args = NULL, *kw = NULL,
             *res = NULL, *outl = NULL;
    int rc = -1;
    Py_ssize_t pos = 0;
    for (int i = 0; leaves && i < nin; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        if (!w) goto done;
        PyList_SET_ITEM(leaves, i, w);
    }
    if (!leaves || !(args = pp_tree_fill(e->args, leaves, &pos, NULL, PP_FILL_ARRAYS))) goto done;
    if (e->kwargs && !(kw = PyDict_New())) goto done;
    for (Py_ssize_t i = 0; kw && i < PyList_GET_SIZE(e->kwnames); i++) {
        PyObject *name = PyList_GET_ITEM(e->kwnames, i);
        PyObject *x = pp_tree_fill(PyDict_GetItem(e->kwargs, name), leaves, &pos, NULL, PP_FILL_ARRAYS);
        if (!x || PyDict_SetItem(kw, name, x)) {
            Py_XDECREF(x);
            goto done;
        }
        Py_DECREF(x);
    }
    /* the input state holds the traced arrays while fun runs */
    if (!(slots = PyList_New(0)) || !(saved = PyList_New(0))) goto done;
    if (e->inputs && state_slots(e->inputs, NULL, NULL, slots)) goto done;
    if (PyList_GET_SIZE(slots) != nin - pos - e->rs_in) {
        PyErr_SetString(PyExc_RuntimeError, "[compile] The input state changed during the call.");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slots); i++) {
        PyObject *s = PyList_GET_ITEM(slots, i), *orig = slot_get(s);
        PyObject *tr = PyList_GET_ITEM(leaves, pos + i);
        PyObject *rec = orig ? PyTuple_Pack(3, s, orig, tr) : NULL;
        if (PyErr_Occurred() || (rec && (PyList_Append(saved, rec) || slot_set(s, tr)))) {
            Py_XDECREF(orig), Py_XDECREF(rec);
            goto done;
        }
        Py_XDECREF(orig), Py_XDECREF(rec);
    }
    if (state_sync(e->inputs, PUSH)) goto done;
    /* with the random state, keyless draws split a traced key: the input's, or (state only
     * in outputs) the current key as a constant */
    pn_array *key = NULL, *host = NULL, *prev = NULL;
    if (e->rs_in || e->rs_out) {
        if (!(key = e->rs_in ? in[nin - 1] : (host = pn_random_state()))) {
            pp_raise();
            goto done;
        }
        prev = pnC_random_trace_key(key);
    }
    res = PyObject_Call(e->fun, args, kw);
    if (e->rs_in || e->rs_out) { /* the key f left; the previous one back */
        key = pnC_random_trace_key(prev);
        pnC_decref(prev);
    }
    if (res && state_sync(e->outputs, PULL)) Py_CLEAR(res);
    if (res) {
        PyObject *skel = pp_tree_fill(res, NULL, NULL, slot_marker, PP_FILL_SKELETON);
        outl = skel ? PyList_New(0) : NULL;
        if (outl && pp_tree_flatten(res, outl, 0) == 0) {
            Py_XSETREF(e->out_skel, skel);
            skel = NULL;
            e->nres = PyList_GET_SIZE(outl);
            if (e->outputs && pp_tree_flatten(e->outputs, outl, 0)) Py_CLEAR(outl);
            PyObject *k = outl && e->rs_out ? pp_wrap_borrowed(key) : NULL;
            if (outl && e->rs_out && (!k || PyList_Append(outl, k))) Py_CLEAR(outl);
            Py_XDECREF(k);
        } else {
            Py_CLEAR(outl);
        }
        Py_XDECREF(skel);
    }
    /* put the input state back (what fun left in place of a traced array is kept) */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(saved); i++) {
        PyObject *rec = PyList_GET_ITEM(saved, i), *cur = slot_get(PyTuple_GET_ITEM(rec, 0));
        if (cur == PyTuple_GET_ITEM(rec, 2)) slot_set(PyTuple_GET_ITEM(rec, 0), PyTuple_GET_ITEM(rec, 1));
        Py_XDECREF(cur);
        PyErr_Clear();
    }
    pnC_decref(key), pn_release(host);
    if (!outl) goto done;
    Py_ssize_t n = PyList_GET_SIZE(outl);
    if (n > e->cap) {
        PyErr_Format(PyExc_ValueError, "[compile] The function returns %zd arrays with its output "
                     "state (at most %zd).", n, e->cap);
        goto done;
    }
    if (PyList_Append(e->keep, outl)) goto done;
    for (Py_ssize_t j = 0; j < n; j++) out[j] = PPARR(PyList_GET_ITEM(outl, j));
    *nout = (int)n;
    rc = 0;
done:
    Py_XDECREF(leaves), Py_XDECREF(slots), Py_XDECREF(saved), Py_XDECREF(args);
    Py_XDECREF(kw), Py_XDECREF(res), Py_XDECREF(outl);
    return rc ? pp_stash_exception() : 0;
}

/* ───────────────────────────── the compiled-function type ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    PyObject *fun, *inputs, *outputs;
    int shapeless;
    int rs_in, rs_out; /* inputs / outputs hold mx.random.state (see uses_random_state) */
    PyObject *cache; /* key tuple -> capsule holding a centry's closure */
    PyObject *dict;
} PPCompiled;

/* The key a call left becomes the global key: the traced one while an enclosing compiled
 * function traces (its draws continue from it), else the host key. 0 or -1. */
static int random_state_set(pn_array *key)
{
    pn_array *traced = pnC_random_trace_key(NULL);
    if (!traced) return pnC_random_set_key(key);
    pnC_decref(traced);
    pnC_decref(pnC_random_trace_key(key));
    return 0;
}

static void cap_release(PyObject *cap) { pn_closure_release(PyCapsule_GetPointer(cap, "compiled")); }

static centry *entry_for(PPCompiled *self, PyObject *key)
{
    PyObject *cap = PyDict_GetItemWithError(self->cache, key);
    if (cap) return PyCapsule_GetContext(cap);
    if (PyErr_Occurred()) return NULL;
    centry *e = PyMem_Calloc(1, sizeof *e);
    if (!e || !(e->keep = PyList_New(0))) {
        PyMem_Free(e);
        return (centry *)PyErr_NoMemory();
    }
    e->fun = self->fun, e->inputs = self->inputs, e->outputs = self->outputs;
    e->rs_in = self->rs_in, e->rs_out = self->rs_out;
    pn_closure *f = pn_closure_new(trampoline, e, centry_destroy);
    if (!f) return (centry *)pp_raise();
    e->compiled = pn_compile(f, self->shapeless);
    pn_closure_release(f); /* the compiled closure keeps it */
    if (!e->compiled) return (centry *)pp_raise();
    cap = PyCapsule_New(e->compiled, "compiled", cap_release);
    if (!cap || PyCapsule_SetContext(cap, e) || PyDict_SetItem(self->cache, key, cap)) {
        if (!cap) pn_closure_release(e->compiled);
        Py_XDECREF(cap);
        return NULL;
    }
    Py_DECREF(cap);
    return e;
}

/* Appends to key each leaf's dtype and shape (shapeless: its rank): a trace records the
 * result's structure, which may differ between signatures (f returning a list for float32
 * inputs and an array for int32 ones), so each signature gets its own entry. 0 or -1. */
static int leaves_signature(PyObject *leaves, int shapeless, PyObject *key)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(leaves); i++) {
        const pn_array *a = PPARR(PyList_GET_ITEM(leaves, i));
        int nd = pn_ndim(a);
        PyObject *h = PyTuple_New(shapeless ? 2 : 1 + nd);
        if (!h) return -1;
        PyTuple_SET_ITEM(h, 0, PyLong_FromLong((long)pn_array_dtype(a)));
        if (shapeless) PyTuple_SET_ITEM(h, 1, PyLong_FromLong(nd));
        for (int d = 0; !shapeless && d < nd; d++)
            PyTuple_SET_ITEM(h, 1 + d, PyLong_FromLongLong((long long)pn_shape(a)[d]));
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(h); j++)
            if (!PyTuple_GET_ITEM(h, j)) return Py_DECREF(h), -1;
        int rc = PyList_Append(key, h);
        Py_DECREF(h);
        if (rc) return -1;
    }
    return 0;
}

static PyObject *compiled_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    PPCompiled *self = (PPCompiled *)op;
    if (!pn_compile_enabled()) return PyObject_Call(self->fun, args, kwargs);
    PyObject *key = PyList_New(0), *leaves = PyList_New(0), *kwnames = NULL, *slots = NULL,
             *outs = NULL, *result = NULL, *keyt = NULL;
    pn_array **in = NULL, **out = NULL;
    centry *e = NULL;
    if (!key || !leaves || describe(args, key, leaves)) goto done;
    if (kwargs && PyDict_GET_SIZE(kwargs)) {
        if (!(kwnames = PyDict_Keys(kwargs)) || PyList_Sort(kwnames)) goto done;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(kwnames); i++) {
            PyObject *name = PyList_GET_ITEM(kwnames, i);
            if (PyList_Append(key, name) || describe(PyDict_GetItem(kwargs, name), key, leaves)) goto done;
        }
    }
    Py_ssize_t nargleaves = PyList_GET_SIZE(leaves);
    if (state_sync(self->inputs, PULL) || (self->outputs != self->inputs && state_sync(self->outputs, PULL))) goto done;
    if (self->inputs && pp_tree_flatten(self->inputs, leaves, 0)) goto done;
    if (self->rs_in) { /* the global key, the last input */
        PyObject *k = pp_wrap(pn_random_state());
        if (!k || PyList_Append(leaves, k)) {
            Py_XDECREF(k);
            goto done;
        }
        Py_DECREF(k);
    }
    PyObject *ns = PyLong_FromSsize_t(PyList_GET_SIZE(leaves) - nargleaves);
    if (!ns || PyList_Append(key, ns)) {
        Py_XDECREF(ns);
        goto done;
    }
    Py_DECREF(ns);
    if (leaves_signature(leaves, self->shapeless, key)) goto done;
    if (!(keyt = PyList_AsTuple(key)) || !(e = entry_for(self, keyt))) goto done;
    Py_ssize_t nin = PyList_GET_SIZE(leaves);
    if (!(in = PyMem_Malloc((size_t)(nin + 1) * sizeof *in))) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nin; i++) in[i] = PPARR(PyList_GET_ITEM(leaves, i));
    e->args = args, e->kwargs = kwnames ? kwargs : NULL, e->kwnames = kwnames;
    e->nargleaves = nargleaves;
    /* outputs: the result's arrays and the output state's (which may grow at the first call) */
    e->cap = 4 * nin + 1024;
    if (!(out = PyMem_Malloc((size_t)e->cap * sizeof *out))) {
        PyErr_NoMemory();
        goto done;
    }
    int nout = 0;
    int rc = pnT_compiled_call(e->compiled, (int)nin, in, (int)e->cap, &nout, out);
    e->args = e->kwargs = e->kwnames = NULL;
    PyList_SetSlice(e->keep, 0, PyList_GET_SIZE(e->keep), NULL);
    if (rc) {
        pp_raise();
        goto done;
    }
    pp_clear_stash();
    if (!(outs = PyList_New(nout))) {
        pp_release_all(out, nout);
        goto done;
    }
    for (int j = 0; j < nout; j++) {
        PyObject *w = pp_wrap(out[j]);
        if (!w) {
            pp_release_all(out + j + 1, nout - j - 1);
            goto done;
        }
        PyList_SET_ITEM(outs, j, w);
    }
    /* the output state: written back in place */
    if (!(slots = PyList_New(0)) || (self->outputs && state_slots(self->outputs, NULL, NULL, slots))) goto done;
    if (PyList_GET_SIZE(slots) != nout - e->nres - self->rs_out) {
        PyErr_Format(PyExc_ValueError, "[compile] The output state holds %zd arrays, the traced "
                     "call left %zd.", PyList_GET_SIZE(slots), (Py_ssize_t)nout - e->nres - self->rs_out);
        goto done;
    }
    if (self->rs_out && random_state_set(out[nout - 1])) { /* the key the call left */
        pp_raise();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slots); i++)
        if (slot_set(PyList_GET_ITEM(slots, i), PyList_GET_ITEM(outs, e->nres + i))) goto done;
    if (state_sync(self->outputs, PUSH)) goto done;
    Py_ssize_t pos = 0;
    result = pp_tree_fill(e->out_skel, outs, &pos, slot_marker, PP_FILL_MARKERS);
done:
    PyMem_Free(in), PyMem_Free(out);
    Py_XDECREF(key), Py_XDECREF(leaves), Py_XDECREF(kwnames), Py_XDECREF(slots);
    Py_XDECREF(outs), Py_XDECREF(keyt);
    return result;
}

static void compiled_dealloc(PyObject *op)
{
    PPCompiled *self = (PPCompiled *)op;
    PyObject_GC_UnTrack(op);
    Py_CLEAR(self->cache); /* entries borrow fun/inputs/outputs: release them first */
    Py_CLEAR(self->fun);
    Py_CLEAR(self->inputs);
    Py_CLEAR(self->outputs);
    Py_CLEAR(self->dict);
    Py_TYPE(op)->tp_free(op);
}

static int compiled_traverse(PyObject *op, visitproc visit, void *arg)
{
    PPCompiled *self = (PPCompiled *)op;
    Py_VISIT(self->fun);
    Py_VISIT(self->inputs);
    Py_VISIT(self->outputs);
    Py_VISIT(self->dict);
    return 0;
}

static PyTypeObject PPCompiled_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.CompiledFunction",
    .tp_basicsize = sizeof(PPCompiled),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A function compiled by mx.compile.",
    .tp_call = compiled_call,
    .tp_dealloc = compiled_dealloc,
    .tp_traverse = compiled_traverse,
    .tp_descr_get = pp_bind_as_method, /* bound when used as a method */
    .tp_dictoffset = offsetof(PPCompiled, dict),
};

/* Whether tree holds mx.random.state. Ponte's global key is host state; a compiled call
 * passes it as an extra input (state in inputs) and sets it from an extra output (state in
 * outputs), and its trace draws from that key with ops (pnC_random_trace_key), so replays
 * give the numbers the plain calls would, as MLX's compile does. */
static int uses_random_state(PyObject *tree)
{
    if (!tree) return 0;
    if (strcmp(Py_TYPE(tree)->tp_name, "ponte.core.random._RandomState") == 0) return 1;
    if (PyList_Check(tree) || PyTuple_Check(tree)) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(tree); i++)
            if (uses_random_state(PySequence_Fast_GET_ITEM(tree, i))) return 1;
    } else if (PyDict_Check(tree)) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(tree, &pos, &k, &v))
            if (uses_random_state(v)) return 1;
    }
    return 0;
}

/* What functools.update_wrapper copies: fn's __module__, __name__, __qualname__, __doc__ (those
 * it has) and the items of its __dict__ into the compiled function's dict, and __wrapped__ = fn
 * (inspect.signature follows it). 0 or -1. */
static int wrap_attributes(PyObject *c, PyObject *fn)
{
    static const char *const names[] = {"__module__", "__name__", "__qualname__", "__doc__"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        PyObject *v = PyObject_GetAttrString(fn, names[i]);
        if (!v) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
            continue;
        }
        int rc = PyObject_SetAttrString(c, names[i], v);
        Py_DECREF(v);
        if (rc) return -1;
    }
    PyObject *d = PyObject_GetAttrString(fn, "__dict__");
    if (!d) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear();
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (d && PyDict_Check(d) && PyDict_Next(d, &pos, &k, &v))
        if (PyObject_SetAttr(c, k, v)) return Py_DECREF(d), -1;
    Py_XDECREF(d);
    return PyObject_SetAttrString(c, "__wrapped__", fn);
}

static PyObject *py_compile(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fun", "inputs", "outputs", "shapeless", NULL};
    PyObject *fn, *inputs = Py_None, *outputs = Py_None;
    int shapeless = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOp:compile", kwlist, &fn, &inputs, &outputs, &shapeless))
        return NULL;
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "compile() expects a callable, got %s.", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    PPCompiled *c = PyObject_GC_New(PPCompiled, &PPCompiled_Type);
    if (!c) return NULL;
    c->fun = (Py_INCREF(fn), fn);
    c->inputs = inputs == Py_None ? NULL : (Py_INCREF(inputs), inputs);
    c->outputs = outputs == Py_None ? NULL : (Py_INCREF(outputs), outputs);
    c->shapeless = shapeless;
    c->rs_in = uses_random_state(c->inputs);
    c->rs_out = uses_random_state(c->outputs);
    c->dict = NULL;
    c->cache = PyDict_New();
    PyObject_GC_Track((PyObject *)c);
    if (!c->cache) return Py_DECREF(c), NULL;
    if (wrap_attributes((PyObject *)c, fn)) return Py_DECREF(c), NULL;
    return (PyObject *)c;
}

static PyObject *py_disable_compile(PyObject *m, PyObject *u)
{
    pn_compile_set_enabled(false);
    Py_RETURN_NONE;
}

static PyObject *py_enable_compile(PyObject *m, PyObject *u)
{
    pn_compile_set_enabled(true);
    Py_RETURN_NONE;
}

/* _tracing() -> whether a transformation (mx.compile's trace, grad, vmap, ...) is tracing on
 * this thread: the optimizers then count their step and schedule their rate with ops. */
static PyObject *py_tracing(PyObject *m, PyObject *u) { return PyBool_FromLong(pnC_tracing()); }

static PyMethodDef compile_methods[] = {
    {"_tracing", py_tracing, METH_NOARGS, "Whether a transformation is tracing on this thread."},
    {"compile", (PyCFunction)(void (*)(void))py_compile, METH_VARARGS | METH_KEYWORDS,
     "compile(fun, inputs=None, outputs=None, shapeless=False): fun traced once per call "
     "structure and replayed without running the Python function."},
    {"disable_compile", py_disable_compile, METH_NOARGS, "Globally disables compilation."},
    {"enable_compile", py_enable_compile, METH_NOARGS, "Globally enables compilation."},
    {NULL},
};

int pp_init_compile(PyObject *m)
{
    if (!slot_marker && !(slot_marker = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type))) return -1;
    if (PyType_Ready(&PPCompiled_Type)) return -1;
    return PyModule_AddFunctions(m, compile_methods);
}
