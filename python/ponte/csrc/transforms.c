/* transforms.c — function transformations over Python callables: a pn_closure trampoline
 * that calls the Python function (its exceptions travel out unchanged), pytrees of lists,
 * tuples and dicts, and grad, value_and_grad, vjp, jvp, checkpoint, custom_function and vmap
 * with mlx.core's signatures (compile: compile.c). */
#include "pyponte.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── trees ───────────────────────────── */

int pp_tree_flatten(PyObject *tree, PyObject *list, int strict)
{
    if (PPArray_Check(tree)) return PyList_Append(list, tree);
    if (PyList_Check(tree) || PyTuple_Check(tree)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(tree);
        for (Py_ssize_t i = 0; i < n; i++)
            if (pp_tree_flatten(PySequence_Fast_GET_ITEM(tree, i), list, strict)) return -1;
        return 0;
    }
    if (PyDict_Check(tree)) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(tree, &pos, &k, &v))
            if (pp_tree_flatten(v, list, strict)) return -1;
        return 0;
    }
    if (strict) {
        PyErr_Format(PyExc_ValueError,
                     "[tree_flatten] The argument should contain only arrays (found %s).",
                     Py_TYPE(tree)->tp_name);
        return -1;
    }
    return 0;
}

/* See pyponte.h. */
PyObject *pp_tuple_like(PyObject *proto, PyObject *items)
{
    if (!items || PyTuple_CheckExact(proto)) return items;
    /* as MLX's trees: a namedtuple rebuilt as type(proto)(*items), another tuple subclass as
     * type(proto)(items); a type that cannot be rebuilt so stays a plain tuple */
    PyObject *r = PyObject_HasAttrString(proto, "_fields")
                      ? PyObject_Call((PyObject *)Py_TYPE(proto), items, NULL)
                      : PyObject_CallOneArg((PyObject *)Py_TYPE(proto), items);
    if (!r) {
        PyErr_Clear();
        return items;
    }
    Py_DECREF(items);
    return r;
}

/* See pyponte.h. */
PyObject *pp_tree_fill(PyObject *tree, PyObject *leaves, Py_ssize_t *pos, PyObject *marker, int mode)
{
    if (mode == PP_FILL_SKELETON && PPArray_Check(tree)) return Py_INCREF(marker), marker;
    if (mode == PP_FILL_MARKERS ? tree == marker : mode == PP_FILL_ARRAYS && PPArray_Check(tree)) {
        if (*pos >= PyList_GET_SIZE(leaves)) {
            PyErr_SetString(PyExc_RuntimeError, "[tree] Too few leaves to fill the tree.");
            return NULL;
        }
        PyObject *x = PyList_GET_ITEM(leaves, (*pos)++);
        return Py_INCREF(x), x;
    }
    if (PyList_Check(tree) || PyTuple_Check(tree)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(tree);
        PyObject *r = PyList_Check(tree) ? PyList_New(n) : PyTuple_New(n);
        for (Py_ssize_t i = 0; r && i < n; i++) {
            PyObject *x = pp_tree_fill(PySequence_Fast_GET_ITEM(tree, i), leaves, pos, marker, mode);
            if (!x) Py_CLEAR(r);
            else if (PyList_Check(r)) PyList_SET_ITEM(r, i, x);
            else PyTuple_SET_ITEM(r, i, x);
        }
        return PyTuple_Check(tree) ? pp_tuple_like(tree, r) : r;
    }
    if (PyDict_Check(tree)) {
        PyObject *r = PyDict_New(), *k, *v;
        Py_ssize_t p = 0;
        while (r && PyDict_Next(tree, &p, &k, &v)) {
            PyObject *x = pp_tree_fill(v, leaves, pos, marker, mode);
            if (!x || PyDict_SetItem(r, k, x)) Py_CLEAR(r);
            Py_XDECREF(x);
        }
        return r;
    }
    return Py_INCREF(tree), tree;
}

/* A copy of tree's structure whose array leaves are replaced, in order, by leaves[*pos...]. */
static PyObject *tree_fill(PyObject *tree, PyObject *leaves, Py_ssize_t *pos)
{
    return pp_tree_fill(tree, leaves, pos, NULL, PP_FILL_ARRAYS);
}

/* ───────────────────────────── deferred releases ───────────────────────────── */

/* Graph nodes made by checkpoint and custom_function closures point at their rules without
 * owning them (ponte.h: the closure must outlive the differentiation of the graphs built with
 * it). Inside another transformation such a closure is kept until the outermost Python-facing
 * transformation returns; at top level nothing can differentiate the graph later. */
static int transform_depth;
static PyObject *deferred; /* list of capsules releasing closures */

static void capsule_release(PyObject *cap) { pn_closure_release(PyCapsule_GetPointer(cap, "pn_closure")); }

static void release_later(pn_closure *f)
{
    if (!f) return;
    if (transform_depth > 1) {
        if (!deferred) deferred = PyList_New(0);
        PyObject *cap = deferred ? PyCapsule_New(f, "pn_closure", capsule_release) : NULL;
        if (cap && PyList_Append(deferred, cap) == 0) {
            Py_DECREF(cap);
            return;
        }
        if (cap) { /* the capsule owns f now: keep it alive rather than free it early */
            PyCapsule_SetDestructor(cap, NULL);
            Py_DECREF(cap);
        }
        PyErr_Clear();
        return; /* could not record it: leak f rather than free it too early */
    }
    pn_closure_release(f);
}

static void transform_enter(void) { transform_depth++; }

static void transform_exit(void)
{
    if (--transform_depth == 0 && deferred) {
        PyObject *exc_t, *exc_v, *exc_tb;
        PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
        Py_CLEAR(deferred);
        PyErr_Restore(exc_t, exc_v, exc_tb);
    }
}

/* ───────────────────────────── the trampoline ───────────────────────────── */

/* Calls fn(*args, **kwargs) with the array leaves of args[argnums[k]] (ascending), then those
 * of kwargs[argnames[k]], replaced by the closure's inputs (all args when nargnums < 0). */
typedef struct {
    PyObject *fn, *args, *kwargs;
    int nargnums, argnums[64];
    PyObject *argnames;  /* tuple of keyword names whose leaves are inputs too, or NULL */
    PyObject *out_tree; /* the last call's output */
    PyObject *keep;     /* outputs kept alive until the closure dies */
    int value_first;    /* 1 (grad): the output must be an array; 2 (value_and_grad): an array
                           or a tuple whose first item is one */
    int in_place;       /* grad: dicts and lists of the arguments are filled in place */
    const char *name;
} tctx;

static void tctx_destroy(void *p)
{
    tctx *c = p;
    Py_XDECREF(c->fn);
    Py_XDECREF(c->args);
    Py_XDECREF(c->kwargs);
    Py_XDECREF(c->argnames);
    Py_XDECREF(c->out_tree);
    Py_XDECREF(c->keep);
    PyMem_Free(c);
}

static tctx *tctx_new(PyObject *fn, PyObject *args, PyObject *kwargs, const char *name)
{
    tctx *c = PyMem_Calloc(1, sizeof *c);
    if (!c) {
        PyErr_NoMemory();
        return NULL;
    }
    c->keep = PyList_New(0);
    if (!c->keep) {
        PyMem_Free(c);
        return NULL;
    }
    Py_INCREF(fn);
    Py_INCREF(args);
    Py_XINCREF(kwargs);
    c->fn = fn;
    c->args = args;
    c->kwargs = kwargs;
    c->nargnums = -1;
    c->name = name;
    return c;
}

/* tree with its array leaves replaced, in order, by leaves[*pos...] as MLX's grad does it: the
 * dicts (nn.Module included) and lists are the caller's own objects, changed in place, each
 * replaced entry recorded in undo as (container, key, old value); tuples are rebuilt. Returns
 * a new reference to the filled tree. */
static PyObject *tree_fill_in_place(PyObject *tree, PyObject *leaves, Py_ssize_t *pos, PyObject *undo)
{
    int is_dict = PyDict_Check(tree);
    if (!is_dict && !PyList_Check(tree)) {
        if (!PyTuple_Check(tree)) return tree_fill(tree, leaves, pos);
        Py_ssize_t n = PyTuple_GET_SIZE(tree);
        PyObject *r = PyTuple_New(n);
        for (Py_ssize_t i = 0; r && i < n; i++) {
            PyObject *x = tree_fill_in_place(PyTuple_GET_ITEM(tree, i), leaves, pos, undo);
            if (!x) Py_CLEAR(r);
            else PyTuple_SET_ITEM(r, i, x);
        }
        return pp_tuple_like(tree, r);
    }
    PyObject *keys = is_dict ? PyDict_Keys(tree) : NULL; /* values change, keys do not */
    Py_ssize_t n = is_dict ? (keys ? PyList_GET_SIZE(keys) : -1) : PyList_GET_SIZE(tree);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = is_dict ? Py_NewRef(PyList_GET_ITEM(keys, i)) : PyLong_FromSsize_t(i);
        PyObject *old = !key ? NULL : is_dict ? PyDict_GetItemWithError(tree, key) : PyList_GET_ITEM(tree, i);
        Py_XINCREF(old);
        PyObject *x = old ? tree_fill_in_place(old, leaves, pos, undo) : NULL;
        PyObject *rec = x && x != old ? PyTuple_Pack(4, tree, key, old, x) : NULL;
        int ok = x && (x == old || (rec && PyList_Append(undo, rec) == 0 &&
                                    (is_dict ? PyDict_SetItem(tree, key, x) : PyList_SetItem(tree, i, Py_NewRef(x))) == 0));
        Py_XDECREF(rec);
        Py_XDECREF(x);
        Py_XDECREF(old);
        Py_XDECREF(key);
        if (!ok) {
            Py_XDECREF(keys);
            return NULL;
        }
    }
    Py_XDECREF(keys);
    return n < 0 ? NULL : Py_NewRef(tree);
}

/* Puts back what tree_fill_in_place replaced, newest first, where the slot still holds what
 * it put there: as MLX, an entry the function itself replaced keeps the function's value.
 * Keeps any pending exception. */
static void tree_undo_fill(PyObject *undo)
{
    PyObject *exc_t, *exc_v, *exc_tb;
    PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
    for (Py_ssize_t i = undo ? PyList_GET_SIZE(undo) - 1 : -1; i >= 0; i--) {
        PyObject *rec = PyList_GET_ITEM(undo, i);
        PyObject *tree = PyTuple_GET_ITEM(rec, 0), *key = PyTuple_GET_ITEM(rec, 1);
        PyObject *old = PyTuple_GET_ITEM(rec, 2), *put = PyTuple_GET_ITEM(rec, 3), *now;
        if (PyDict_Check(tree)) {
            now = PyDict_GetItemWithError(tree, key);
            if (now == put && PyDict_SetItem(tree, key, old)) PyErr_Clear();
        } else {
            Py_ssize_t k = PyLong_AsSsize_t(key);
            now = k >= 0 && k < PyList_GET_SIZE(tree) ? PyList_GET_ITEM(tree, k) : NULL;
            if (now == put && PyList_SetItem(tree, k, Py_NewRef(old))) PyErr_Clear();
        }
        PyErr_Clear();
    }
    PyErr_Restore(exc_t, exc_v, exc_tb);
}

/* args with the chosen positions' array leaves replaced by the wrapped inputs. */
static PyObject *rebuild_args(tctx *c, PyObject *inputs, Py_ssize_t *posp, PyObject *undo)
{
    Py_ssize_t n = PyTuple_GET_SIZE(c->args), pos = 0;
    PyObject *r = PyTuple_New(n);
    if (!r) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(c->args, i), *x;
        int chosen = c->nargnums < 0;
        for (int k = 0; !chosen && k < c->nargnums; k++) chosen = c->argnums[k] == i;
        if (chosen) x = undo ? tree_fill_in_place(a, inputs, &pos, undo) : tree_fill(a, inputs, &pos);
        else Py_INCREF(a), x = a;
        if (!x) {
            Py_DECREF(r);
            return NULL;
        }
        PyTuple_SET_ITEM(r, i, x);
    }
    *posp = pos;
    return r;
}

/* kwargs with the argnames' array leaves replaced by inputs[*pos...] (continuing after the
 * positional ones); c->kwargs itself (new reference, may be NULL) when there are none. */
static PyObject *rebuild_kwargs(tctx *c, PyObject *inputs, Py_ssize_t *pos, PyObject *undo)
{
    if (!c->argnames || PyTuple_GET_SIZE(c->argnames) == 0) {
        Py_XINCREF(c->kwargs);
        return c->kwargs;
    }
    PyObject *kw = PyDict_Copy(c->kwargs);
    for (Py_ssize_t i = 0; kw && i < PyTuple_GET_SIZE(c->argnames); i++) {
        PyObject *name = PyTuple_GET_ITEM(c->argnames, i);
        PyObject *tree = PyDict_GetItem(c->kwargs, name);
        PyObject *x = undo ? tree_fill_in_place(tree, inputs, pos, undo) : tree_fill(tree, inputs, pos);
        if (!x || PyDict_SetItem(kw, name, x)) Py_CLEAR(kw);
        Py_XDECREF(x);
    }
    return kw;
}

/* The array leaves of the ordered argument positions (all positions when nargnums < 0), then
 * those of the keyword arguments named in argnames. */
static PyObject *chosen_leaves(tctx *c, int strict)
{
    PyObject *l = PyList_New(0);
    if (!l) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(c->args);
    if (c->nargnums < 0) {
        for (Py_ssize_t i = 0; i < n; i++)
            if (pp_tree_flatten(PyTuple_GET_ITEM(c->args, i), l, strict)) return Py_DECREF(l), NULL;
        return l;
    }
    /* the trampoline fills positions in argument order, so leaves go in that order too */
    for (Py_ssize_t i = 0; i < n; i++) {
        int chosen = 0;
        for (int k = 0; !chosen && k < c->nargnums; k++) chosen = c->argnums[k] == i;
        if (chosen && pp_tree_flatten(PyTuple_GET_ITEM(c->args, i), l, strict)) return Py_DECREF(l), NULL;
    }
    for (Py_ssize_t i = 0; c->argnames && i < PyTuple_GET_SIZE(c->argnames); i++)
        if (pp_tree_flatten(PyDict_GetItem(c->kwargs, PyTuple_GET_ITEM(c->argnames, i)), l, strict))
            return Py_DECREF(l), NULL;
    return l;
}

static int trampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    tctx *c = ctx;
    *nout = 0;
    PyObject *inputs = PyList_New(nin), *args = NULL, *kwargs = NULL, *res = NULL, *leaves = NULL;
    PyObject *undo = c->in_place ? PyList_New(0) : NULL;
    Py_ssize_t pos = 0;
    if (!inputs || (c->in_place && !undo)) {
        Py_XDECREF(inputs);
        return pp_stash_exception();
    }
    for (int i = 0; i < nin; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        if (!w) goto fail;
        PyList_SET_ITEM(inputs, i, w);
    }
    if (!(args = rebuild_args(c, inputs, &pos, undo))) goto fail;
    if (!(kwargs = rebuild_kwargs(c, inputs, &pos, undo)) && PyErr_Occurred()) goto fail;
    res = PyObject_Call(c->fn, args, kwargs);
    tree_undo_fill(undo); /* the caller's containers hold their own arrays again */
    Py_CLEAR(undo);
    if (!res) goto fail;
    if (c->value_first == 1 && !PPArray_Check(res)) { /* grad: an array only, as MLX */
        PyErr_Format(PyExc_ValueError,
                     "[%s] The return value of the function whose gradient we want to compute "
                     "should be a scalar array; but %s was returned.",
                     c->name, Py_TYPE(res)->tp_name);
        goto fail;
    }
    if (c->value_first == 2 && !PPArray_Check(res) && /* value_and_grad: an array or (array, aux...) */
        !(PyTuple_Check(res) && PyTuple_GET_SIZE(res) > 0 && PPArray_Check(PyTuple_GET_ITEM(res, 0)))) {
        PyErr_Format(PyExc_ValueError,
                     "[%s] The return value of the function whose gradient we want to compute "
                     "should be either a scalar array or a tuple with the first value being a "
                     "scalar array (Received %s).",
                     c->name, Py_TYPE(res)->tp_name);
        goto fail;
    }
    if (!(leaves = PyList_New(0)) || pp_tree_flatten(res, leaves, 0)) goto fail;
    Py_ssize_t n = PyList_GET_SIZE(leaves);
    if (n > PN_MAX_OUTPUTS) {
        PyErr_Format(PyExc_ValueError, "[%s] The function returned %zd arrays (at most %d).", c->name, n,
                     PN_MAX_OUTPUTS);
        goto fail;
    }
    for (Py_ssize_t j = 0; j < n; j++) out[j] = PPARR(PyList_GET_ITEM(leaves, j));
    if (PyList_Append(c->keep, leaves)) goto fail;
    Py_XSETREF(c->out_tree, res);
    *nout = (int)n;
    Py_DECREF(leaves);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    Py_DECREF(inputs);
    return 0;
fail:
    tree_undo_fill(undo);
    Py_XDECREF(undo);
    Py_XDECREF(leaves);
    Py_XDECREF(res);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(inputs);
    return pp_stash_exception();
}

/* Input arrays of a leaf list (borrowed from the objects). */
static pn_array **leaf_arrays(PyObject *leaves)
{
    Py_ssize_t n = PyList_GET_SIZE(leaves);
    pn_array **a = PyMem_Malloc((size_t)(n + 1) * sizeof *a);
    if (!a) return (pn_array **)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) a[i] = PPARR(PyList_GET_ITEM(leaves, i));
    return a;
}

/* A list wrapping n arrays the caller owns (all of them are consumed). */
static PyObject *wrap_arrays(pn_array **a, int n)
{
    PyObject *l = PyList_New(n);
    for (int i = 0; i < n; i++) {
        PyObject *w = l ? pp_wrap(a[i]) : (pn_release(a[i]), NULL);
        if (l && !w) {
            for (int j = i + 1; j < n; j++) pn_release(a[j]);
            Py_CLEAR(l);
        }
        if (l) PyList_SET_ITEM(l, i, w);
    }
    return l;
}

static pn_closure *closure_of(tctx *c)
{
    pn_closure *f = pn_closure_new(trampoline, c, tctx_destroy);
    if (!f) pp_raise();
    return f;
}

/* ───────────────────────────── the transformed-function type ───────────────────────────── */

enum { T_GRAD, T_VALUE_AND_GRAD, T_CHECKPOINT, T_VMAP, T_CUSTOM };

typedef struct {
    PyObject_HEAD
    int kind;
    PyObject *fn;
    int nargnums, argnums[64]; /* grad: ascending positions */
    PyObject *argnames;        /* grad: tuple of keyword names (may be empty) */
    PyObject *in_axes, *out_axes;
    PyObject *vjp_fn, *jvp_fn, *vmap_fn; /* custom_function */
    PyObject *dict;
} PPTransformed;

static PyTypeObject PPTransformed_Type;

static void tf_dealloc(PyObject *self)
{
    PPTransformed *t = (PPTransformed *)self;
    PyObject_GC_UnTrack(self);
    Py_XDECREF(t->fn);
    Py_XDECREF(t->argnames);
    Py_XDECREF(t->in_axes);
    Py_XDECREF(t->out_axes);
    Py_XDECREF(t->vjp_fn);
    Py_XDECREF(t->jvp_fn);
    Py_XDECREF(t->vmap_fn);
    Py_XDECREF(t->dict);
    PyObject_GC_Del(self);
}

static int tf_traverse(PyObject *self, visitproc visit, void *arg)
{
    PPTransformed *t = (PPTransformed *)self;
    Py_VISIT(t->fn);
    Py_VISIT(t->argnames);
    Py_VISIT(t->in_axes);
    Py_VISIT(t->out_axes);
    Py_VISIT(t->vjp_fn);
    Py_VISIT(t->jvp_fn);
    Py_VISIT(t->vmap_fn);
    Py_VISIT(t->dict);
    return 0;
}

static PPTransformed *tf_new(int kind, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "Expected a callable, got %s.", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    PPTransformed *t = PyObject_GC_New(PPTransformed, &PPTransformed_Type);
    if (!t) return NULL;
    t->kind = kind;
    Py_INCREF(fn);
    t->fn = fn;
    t->nargnums = 0;
    t->argnames = NULL;
    t->in_axes = t->out_axes = t->vjp_fn = t->jvp_fn = t->vmap_fn = t->dict = NULL;
    PyObject_GC_Track((PyObject *)t);
    /* functools.wraps-like metadata */
    PyObject *d = PyDict_New();
    if (d) {
        const char *names[] = {"__name__", "__qualname__", "__doc__", "__module__", NULL};
        for (int i = 0; names[i]; i++) {
            PyObject *v = PyObject_GetAttrString(fn, names[i]);
            if (v) PyDict_SetItemString(d, names[i], v), Py_DECREF(v);
            else PyErr_Clear();
        }
        PyDict_SetItemString(d, "__wrapped__", fn);
        t->dict = d;
    }
    return t;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* argnums (None, an int or a sequence of ints) and argnames (None, a str or a sequence of
 * strs) as MLX takes them: None with no names means argument 0; positions are sorted (the
 * gradients come back in ascending position order). */
static int parse_argnums(PPTransformed *t, PyObject *argnums, PyObject *argnames, const char *name)
{
    PyObject *names = NULL;
    if (!argnames || argnames == Py_None) {
        names = PyTuple_New(0);
    } else if (PyUnicode_Check(argnames)) {
        names = PyTuple_Pack(1, argnames);
    } else {
        names = PySequence_Check(argnames) ? PySequence_Tuple(argnames) : NULL;
        for (Py_ssize_t i = 0; names && i < PyTuple_GET_SIZE(names); i++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) Py_CLEAR(names);
        if (!names) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "[%s] argnames must be a str or a sequence of strs.", name);
        }
    }
    if (!names) return -1;
    t->argnames = names;
    int64_t tmp[64];
    int n;
    if (!argnums || argnums == Py_None) {
        n = PyTuple_GET_SIZE(names) ? 0 : 1;
        tmp[0] = 0;
    } else if ((n = pp_shape(argnums, tmp, 64, "argnums")) < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (tmp[i] < 0) {
            PyErr_Format(PyExc_ValueError, "[%s] Can't compute the gradient of negative argument index %lld.", name, (long long)tmp[i]);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (tmp[j] == tmp[i]) {
                PyErr_Format(PyExc_ValueError, "[%s] Duplicate argument index %lld is not allowed.", name, (long long)tmp[i]);
                return -1;
            }
        t->argnums[i] = tmp[i] > INT32_MAX ? INT32_MAX : (int)tmp[i];
    }
    qsort(t->argnums, (size_t)n, sizeof(int), cmp_int);
    t->nargnums = n;
    if (n == 0 && PyTuple_GET_SIZE(names) == 0) {
        PyErr_Format(PyExc_ValueError, "[%s] Gradient wrt no argument requested", name);
        return -1;
    }
    return 0;
}

/* The gradients in MLX's structure: the positional ones (one tree for one position, a tuple of
 * trees for several, None for none), then, when argnames were given, the pair (positional,
 * {name: tree}). The flat list holds the positional leaves first, then the keyword ones. */
static PyObject *grads_result(PPTransformed *t, PyObject *args, PyObject *kwargs, PyObject *grads)
{
    Py_ssize_t pos = 0;
    PyObject *positional = t->nargnums > 1 ? PyTuple_New(t->nargnums) : NULL;
    if (t->nargnums > 1 && !positional) return NULL;
    for (int k = 0; k < t->nargnums; k++) {
        PyObject *g = tree_fill(PyTuple_GET_ITEM(args, t->argnums[k]), grads, &pos);
        if (!g) {
            Py_XDECREF(positional);
            return NULL;
        }
        if (t->nargnums > 1) PyTuple_SET_ITEM(positional, k, g);
        else positional = g;
    }
    if (!positional) positional = Py_NewRef(Py_None);
    Py_ssize_t nnames = PyTuple_GET_SIZE(t->argnames);
    if (nnames == 0) return positional;
    PyObject *named = PyDict_New();
    for (Py_ssize_t i = 0; named && i < nnames; i++) {
        PyObject *key = PyTuple_GET_ITEM(t->argnames, i);
        PyObject *g = tree_fill(PyDict_GetItem(kwargs, key), grads, &pos);
        if (!g || PyDict_SetItem(named, key, g)) Py_CLEAR(named);
        Py_XDECREF(g);
    }
    if (!named) {
        Py_DECREF(positional);
        return NULL;
    }
    return Py_BuildValue("(NN)", positional, named);
}

static PyObject *call_grad(PPTransformed *t, PyObject *args, PyObject *kwargs)
{
    const char *name = t->kind == T_GRAD ? "grad" : "value_and_grad";
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (t->nargnums > 0 && t->argnums[t->nargnums - 1] >= nargs) {
        PyErr_Format(PyExc_ValueError, "[%s] Can't compute the gradient of argument index %d because "
                     "the function is called with only %zd arguments.", name,
                     t->argnums[t->nargnums - 1], nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t->argnames); i++) {
        PyObject *key = PyTuple_GET_ITEM(t->argnames, i);
        if (!kwargs || !PyDict_GetItem(kwargs, key)) {
            PyObject *have = kwargs ? PyDict_Keys(kwargs) : PyList_New(0);
            PyErr_Format(PyExc_ValueError, "[%s] Can't compute the gradient of keyword argument '%U' "
                         "because the function is called with the keyword arguments %R.", name, key, have);
            Py_XDECREF(have);
            return NULL;
        }
    }
    tctx *c = tctx_new(t->fn, args, kwargs, name);
    if (!c) return NULL;
    c->nargnums = t->nargnums;
    memcpy(c->argnums, t->argnums, sizeof c->argnums);
    c->argnames = Py_NewRef(t->argnames);
    c->value_first = t->kind == T_GRAD ? 1 : 2;
    c->in_place = 1;
    PyObject *leaves = chosen_leaves(c, 1);
    pn_closure *f = leaves ? closure_of(c) : (tctx_destroy(c), NULL);
    if (!f) {
        Py_XDECREF(leaves);
        return NULL;
    }
    Py_ssize_t nin = PyList_GET_SIZE(leaves);
    pn_array **in = leaf_arrays(leaves);
    int *nums = PyMem_Malloc((size_t)(nin + 1) * sizeof(int));
    PyObject *result = NULL;
    if (in && nums) {
        for (Py_ssize_t i = 0; i < nin; i++) nums[i] = (int)i;
        /* values first, then the nin gradients, however many parameters there are */
        pn_array **outs = PyMem_Malloc((size_t)(nin + PN_MAX_OUTPUTS + 1) * sizeof *outs);
        int nval = 0;
        int rc = outs ? pn_value_and_grad_call(f, (int)nin, in, nums, (int)nin, &nval, outs,
                                               outs + PN_MAX_OUTPUTS)
                      : (PyErr_NoMemory(), -1);
        if (rc) {
            if (outs) pp_raise();
        } else {
            PyObject *vals = wrap_arrays(outs, nval);
            PyObject *grads = vals ? wrap_arrays(outs + PN_MAX_OUTPUTS, (int)nin)
                                   : (pp_release_all(outs + PN_MAX_OUTPUTS, (int)nin), NULL);
            Py_ssize_t pos = 0;
            PyObject *value = vals && grads ? tree_fill(c->out_tree, vals, &pos) : NULL;
            PyObject *g_tree = value ? grads_result(t, args, kwargs, grads) : NULL;
            if (g_tree) result = t->kind == T_GRAD ? (Py_INCREF(g_tree), g_tree) : PyTuple_Pack(2, value, g_tree);
            Py_XDECREF(g_tree);
            Py_XDECREF(value);
            Py_XDECREF(vals);
            Py_XDECREF(grads);
        }
        PyMem_Free(outs);
    } else {
        PyErr_NoMemory();
    }
    PyMem_Free(in);
    PyMem_Free(nums);
    Py_DECREF(leaves);
    pn_closure_release(f);
    return result;
}

/* Marks an output leaf whose out_axes entry is None (not batched). */
#define VMAP_UNBATCHED INT_MIN

/* One axis entry: an int, or None (none_value). Returns 0 or -1 with MLX's ValueError. */
static int axis_entry(PyObject *ax, int none_value, long *v)
{
    if (ax == Py_None) {
        *v = none_value;
        return 0;
    }
    long long x;
    if (!pp_is_int(ax)) {
        PyErr_SetString(PyExc_ValueError, "[vmap] axis must be int or None.");
        return -1;
    }
    if (pp_int(ax, &x, "axis")) return -1;
    if (x < INT_MIN + 1 || x > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "[vmap] axis out of range.");
        return -1;
    }
    *v = (long)x;
    return 0;
}

/* Matches the axes tree spec (an int, None, or a tree prefix of tree: lists against lists,
 * tuples against tuples, dicts against dicts with the same keys) against tree and appends one
 * entry (long) per array leaf of tree, in pp_tree_flatten's order, to out (None: none_value).
 * Returns 0 or -1 with a ValueError. */
static int axes_for_tree(PyObject *spec, PyObject *tree, int none_value, PyObject *out)
{
    if (spec == Py_None || pp_is_int(spec)) {
        long v;
        if (axis_entry(spec, none_value, &v)) return -1;
        PyObject *leaves = PyList_New(0);
        if (!leaves || pp_tree_flatten(tree, leaves, 0)) {
            Py_XDECREF(leaves);
            return -1;
        }
        int rc = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(leaves) && rc == 0; i++) {
            PyObject *x = PyLong_FromLong(v);
            rc = !x || PyList_Append(out, x) ? -1 : 0;
            Py_XDECREF(x);
        }
        Py_DECREF(leaves);
        return rc;
    }
    int same = (PyTuple_Check(spec) && PyTuple_Check(tree)) || (PyList_Check(spec) && PyList_Check(tree));
    if (same) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(spec);
        if (n != PySequence_Fast_GET_SIZE(tree)) {
            PyErr_Format(PyExc_ValueError, "[vmap] The axes tree has %zd entries where the tree it "
                         "describes has %zd.", n, PySequence_Fast_GET_SIZE(tree));
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            if (axes_for_tree(PySequence_Fast_GET_ITEM(spec, i), PySequence_Fast_GET_ITEM(tree, i),
                              none_value, out))
                return -1;
        return 0;
    }
    if (PyDict_Check(spec) && PyDict_Check(tree) && PyDict_Size(spec) == PyDict_Size(tree)) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(tree, &pos, &k, &v)) {
            PyObject *sub = PyDict_GetItemWithError(spec, k);
            if (!sub) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "[vmap] The axes tree's dict keys must match "
                                    "the tree's.");
                return -1;
            }
            if (axes_for_tree(sub, v, none_value, out)) return -1;
        }
        return 0;
    }
    if (PyTuple_Check(spec) || PyList_Check(spec) || PyDict_Check(spec))
        PyErr_Format(PyExc_ValueError, "[vmap] The axes tree (a %s) is not a prefix of the tree it "
                     "describes (a %s).", Py_TYPE(spec)->tp_name, Py_TYPE(tree)->tp_name);
    else
        PyErr_SetString(PyExc_ValueError, "[vmap] axis must be int or None.");
    return -1;
}

/* Where vmap puts the batch axis of each of the n output leaves: out_axes is an int or None
 * for every output, or a tree prefix of the function's output (VMAP_UNBATCHED for None), or
 * a one-tuple holding that for an output that is not a tuple.
 * Returns 0 or -1 with an exception. */
static int vmap_out_axes(PyObject *out_axes, PyObject *out_tree, int n, int *axes)
{
    /* as MLX, a one-tuple describes a single (non-tuple) output too: out_axes=(1,) */
    if (PyTuple_Check(out_axes) && PyTuple_GET_SIZE(out_axes) == 1 && !PyTuple_Check(out_tree))
        out_axes = PyTuple_GET_ITEM(out_axes, 0);
    PyObject *l = PyList_New(0);
    if (!l || axes_for_tree(out_axes, out_tree, VMAP_UNBATCHED, l)) {
        Py_XDECREF(l);
        return -1;
    }
    int rc = 0;
    if (PyList_GET_SIZE(l) != n) {
        PyErr_SetString(PyExc_ValueError, "[vmap] out_axes does not match the function's outputs.");
        rc = -1;
    }
    for (int j = 0; j < n && rc == 0; j++) axes[j] = (int)PyLong_AsLong(PyList_GET_ITEM(l, j));
    Py_DECREF(l);
    return rc;
}

/* An output whose out_axes entry is None: the batch must not change it. Checks that every item
 * along axis 0 equals the first (evaluating it) and returns the first. */
static pn_array *unbatched_output(pn_array *o)
{
    pn_scope_push();
    int64_t start[PP_MAXDIM] = {0}, stop[PP_MAXDIM];
    int nd = pn_ndim(o);
    for (int i = 0; i < nd; i++) stop[i] = pn_shape(o)[i];
    stop[0] = 1;
    pn_array *first = pn_slice(o, start, stop, NULL, nd);
    pn_array *same = pn_array_equal(o, pn_broadcast_to(first, pn_shape(o), nd), true);
    pn_array *r = NULL;
    if (same && pn_shape(o)[0] > 1 && pn_eval(&same, 1) == 0 && !pn_item(same))
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[vmap] An output with out_axes None varies along "
                     "the mapped axis.");
    else if (same && pn_last_error() == PN_OK)
        r = pn_squeeze(first, (int[]){0}, 1);
    pn_scope_pop_keep(&r, r ? 1 : 0);
    return r;
}

/* Calls a closure made by make(f) over every array leaf of args; outputs in the function's
 * output structure, their batch axes moved by out_axes (vmap; NULL otherwise). */
static PyObject *call_wrapped(PPTransformed *t, PyObject *args, PyObject *kwargs,
                              pn_closure *(*make)(PPTransformed *, pn_closure *, PyObject *),
                              const char *name, PyObject *out_axes)
{
    tctx *c = tctx_new(t->fn, args, kwargs, name);
    if (!c) return NULL;
    PyObject *leaves = chosen_leaves(c, 0);
    pn_closure *f = leaves ? closure_of(c) : (tctx_destroy(c), NULL);
    if (!f) {
        Py_XDECREF(leaves);
        return NULL;
    }
    Py_ssize_t nin = PyList_GET_SIZE(leaves);
    pn_array **in = leaf_arrays(leaves);
    PyObject *result = NULL;
    pn_closure *g = in ? make(t, f, args) : NULL;
    if (g) {
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        if (pn_closure_call(g, (int)nin, in, &n, out)) {
            pp_raise();
        } else {
            int axes[PN_MAX_OUTPUTS];
            if (out_axes && vmap_out_axes(out_axes, c->out_tree, n, axes)) {
                pp_release_all(out, n);
                n = -1;
            }
            for (int j = 0; out_axes && j < n; j++) {
                if (axes[j] == 0) continue;
                pn_array *m = axes[j] == VMAP_UNBATCHED ? unbatched_output(out[j])
                                                         : pn_moveaxis(out[j], 0, axes[j]);
                pn_release(out[j]);
                out[j] = m;
            }
            for (int j = 0; j < n; j++)
                if (!out[j]) {
                    pp_release_all(out, n);
                    n = -1;
                    pp_raise();
                    break;
                }
            PyObject *vals = n >= 0 ? wrap_arrays(out, n) : NULL;
            Py_ssize_t pos = 0;
            if (vals) result = tree_fill(c->out_tree, vals, &pos);
            Py_XDECREF(vals);
        }
        if (t->kind == T_CHECKPOINT) release_later(g);
        else pn_closure_release(g);
    }
    PyMem_Free(in);
    Py_DECREF(leaves);
    pn_closure_release(f);
    return result;
}

static pn_closure *make_checkpoint(PPTransformed *t, pn_closure *f, PyObject *args)
{
    pn_closure *g = pn_checkpoint(f);
    if (!g) pp_raise();
    return g;
}

/* in_axes: an int or None for every leaf, or a tuple (or list) with one entry per argument,
 * each an int, None, or a tree prefix of that argument; as MLX, a dict is the tree prefix of
 * a function's single argument. */
static pn_closure *make_vmap(PPTransformed *t, pn_closure *f, PyObject *args)
{
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    PyObject *spec = t->in_axes, *entries = PyList_New(0), *leaves = PyList_New(0);
    int *axes = NULL, ok = entries && leaves;
    int whole = pp_is_int(spec) || (PyDict_Check(spec) && nargs == 1); /* spec for every arg */
    if (ok && PyDict_Check(spec) && nargs != 1) {
        PyErr_SetString(PyExc_ValueError, "[vmap] A dict in_axes describes a function's single "
                                          "argument; pass a tuple with one entry per argument.");
        ok = 0;
    } else if (ok && !whole && !PyTuple_Check(spec) && !PyList_Check(spec)) {
        PyErr_SetString(PyExc_ValueError, "[vmap] in_axes must be an int, None, or a tuple of them.");
        ok = 0;
    } else if (ok && !whole && PySequence_Fast_GET_SIZE(spec) != nargs) {
        PyErr_Format(PyExc_ValueError, "[vmap] The number of in axes (%zd) must match the number of arguments (%zd).",
                     PySequence_Fast_GET_SIZE(spec), nargs);
        ok = 0;
    }
    for (Py_ssize_t i = 0; ok && i < nargs; i++) {
        PyObject *arg = PyTuple_GET_ITEM(args, i);
        PyObject *ax = whole ? spec : PySequence_Fast_GET_ITEM(spec, i);
        if (axes_for_tree(ax, arg, INT_MIN, entries) || pp_tree_flatten(arg, leaves, 0)) ok = 0;
    }
    Py_ssize_t nin = ok ? PyList_GET_SIZE(leaves) : 0;
    if (ok && !(axes = PyMem_Malloc((size_t)(nin + 1) * sizeof(int)))) PyErr_NoMemory(), ok = 0;
    for (Py_ssize_t k = 0; ok && k < nin; k++) {
        long v = PyLong_AsLong(PyList_GET_ITEM(entries, k));
        int nd = pn_ndim(PPARR(PyList_GET_ITEM(leaves, k)));
        /* None -> -1 (unmapped); negative axes count from the end */
        if (v != INT_MIN && (v < -nd || v >= nd)) {
            PyErr_Format(PyExc_ValueError, "[vmap] Axis %ld invalid for input with %d dimensions.", v, nd);
            ok = 0;
            break;
        }
        axes[k] = v == INT_MIN ? -1 : v < 0 ? (int)v + nd : (int)v;
    }
    Py_XDECREF(entries);
    Py_XDECREF(leaves);
    pn_closure *g = ok ? pn_vmap(f, axes, (int)nin, NULL, 0) : NULL;
    if (ok && !g) pp_raise();
    PyMem_Free(axes);
    return g;
}

/* ───────────────────────────── custom_function ───────────────────────────── */

/* A vjp or jvp rule's context: the forward's context (for the output structure) and the rule
 * (in vjp_fn, whichever it is). */
typedef struct {
    PyObject *vjp_fn, *args;
    tctx *fwd;
    pn_closure *fwd_closure; /* keeps fwd alive */
    int nprimals;
    PyObject *keep;
} vctx;

static void vctx_destroy(void *p)
{
    vctx *v = p;
    Py_XDECREF(v->vjp_fn);
    Py_XDECREF(v->args);
    Py_XDECREF(v->keep);
    pn_closure_release(v->fwd_closure);
    PyMem_Free(v);
}

/* MLX hands a rule the primals of a one-argument function as that argument itself. */
static int unwrap_single(PyObject **args)
{
    if (PyTuple_GET_SIZE(*args) != 1) return 0;
    PyObject *x = PyTuple_GET_ITEM(*args, 0);
    Py_INCREF(x);
    Py_SETREF(*args, x);
    return 0;
}

/* The user's jvp rule: in = primals then tangents (leaves of args each); calls
 * jvp_fn(primals, tangents) and returns the leaves of its result, one per output. */
static int jvp_trampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    vctx *v = ctx;
    *nout = 0;
    int np = v->nprimals;
    PyObject *lists[2] = {PyList_New(np), PyList_New(np)}, *pt = NULL, *tt = NULL, *res = NULL,
             *leaves = NULL;
    Py_ssize_t pos = 0, nexp = 0;
    if (!lists[0] || !lists[1]) goto fail;
    for (int i = 0; i < 2 * np && i < nin; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        if (!w) goto fail;
        PyList_SET_ITEM(lists[i / np], i % np, w);
    }
    if (!(pt = tree_fill(v->args, lists[0], &pos)) || unwrap_single(&pt)) goto fail;
    pos = 0;
    if (!(tt = tree_fill(v->args, lists[1], &pos)) || unwrap_single(&tt)) goto fail;
    if (!(res = PyObject_CallFunctionObjArgs(v->vjp_fn, pt, tt, NULL))) goto fail;
    if (!(leaves = PyList_New(0)) || pp_tree_flatten(res, leaves, 0)) goto fail;
    PyObject *ol = PyList_New(0);
    if (!ol || pp_tree_flatten(v->fwd->out_tree, ol, 0)) {
        Py_XDECREF(ol);
        goto fail;
    }
    nexp = PyList_GET_SIZE(ol);
    Py_DECREF(ol);
    if (PyList_GET_SIZE(leaves) != nexp) {
        PyErr_Format(PyExc_ValueError, "[custom_function] The jvp returned %zd arrays for %zd outputs.",
                     PyList_GET_SIZE(leaves), nexp);
        goto fail;
    }
    for (Py_ssize_t j = 0; j < nexp; j++) out[j] = PPARR(PyList_GET_ITEM(leaves, j));
    if (PyList_Append(v->keep, leaves)) goto fail;
    *nout = (int)nexp;
    Py_DECREF(leaves);
    Py_DECREF(res);
    Py_DECREF(pt);
    Py_DECREF(tt);
    Py_DECREF(lists[0]);
    Py_DECREF(lists[1]);
    return 0;
fail:
    Py_XDECREF(leaves);
    Py_XDECREF(res);
    Py_XDECREF(pt);
    Py_XDECREF(tt);
    Py_XDECREF(lists[0]);
    Py_XDECREF(lists[1]);
    return pp_stash_exception();
}

/* The user's vmap rule: in = the batched inputs (leaves of args), then their axes (0-d, -1 for
 * none); calls vmap_fn(inputs, axes) (None for an unbatched input), which returns (outputs,
 * out_axes); returns the output leaves, then one 0-d int32 axis per leaf (-1 for None). */
static int vmap_trampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    vctx *v = ctx;
    *nout = 0;
    int np = v->nprimals;
    PyObject *arrs = PyList_New(np), *axs = PyList_New(np), *it = NULL, *at = NULL, *res = NULL,
             *leaves = NULL, *entries = NULL, *keep = NULL;
    Py_ssize_t pos = 0, n = 0;
    if (!arrs || !axs) goto fail;
    if (nin != 2 * np) {
        PyErr_SetString(PyExc_RuntimeError, "[custom_function] The vmap rule got a wrong input count.");
        goto fail;
    }
    for (int i = 0; i < np; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        long a = (long)pn_item_int(in[np + i]);
        PyObject *ax = a < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(a);
        if (!w || !ax) {
            Py_XDECREF(w);
            Py_XDECREF(ax);
            goto fail;
        }
        PyList_SET_ITEM(arrs, i, w);
        PyList_SET_ITEM(axs, i, ax);
    }
    if (!(it = tree_fill(v->args, arrs, &pos)) || unwrap_single(&it)) goto fail;
    pos = 0;
    if (!(at = tree_fill(v->args, axs, &pos)) || unwrap_single(&at)) goto fail;
    if (!(res = PyObject_CallFunctionObjArgs(v->vjp_fn, it, at, NULL))) goto fail;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        PyErr_SetString(PyExc_ValueError, "[custom_function] The vmap function must return "
                        "(outputs, output axes).");
        goto fail;
    }
    PyObject *outs = PyTuple_GET_ITEM(res, 0);
    if (!(leaves = PyList_New(0)) || pp_tree_flatten(outs, leaves, 0)) goto fail;
    if (!(entries = PyList_New(0)) || axes_for_tree(PyTuple_GET_ITEM(res, 1), outs, INT_MIN, entries))
        goto fail;
    n = PyList_GET_SIZE(leaves);
    if (2 * n > PN_MAX_OUTPUTS) {
        PyErr_SetString(PyExc_ValueError, "[custom_function] The vmap function returned too many arrays.");
        goto fail;
    }
    if (!(keep = PyList_New(0))) goto fail;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *leaf = PyList_GET_ITEM(leaves, j);
        long a = PyLong_AsLong(PyList_GET_ITEM(entries, j));
        int nd = pn_ndim(PPARR(leaf));
        a = a == INT_MIN ? -1 : a < 0 ? a + nd : a;
        PyObject *ax = pp_wrap(pn_scalar_int(a, PN_INT32));
        if (!ax || PyList_Append(keep, leaf) || PyList_Append(keep, ax)) {
            Py_XDECREF(ax);
            goto fail;
        }
        out[j] = PPARR(leaf);
        out[n + j] = PPARR(ax);
        Py_DECREF(ax);
    }
    if (PyList_Append(v->keep, keep)) goto fail;
    *nout = (int)(2 * n);
    Py_DECREF(keep);
    Py_DECREF(entries);
    Py_DECREF(leaves);
    Py_DECREF(res);
    Py_DECREF(it);
    Py_DECREF(at);
    Py_DECREF(arrs);
    Py_DECREF(axs);
    return 0;
fail:
    Py_XDECREF(keep);
    Py_XDECREF(entries);
    Py_XDECREF(leaves);
    Py_XDECREF(res);
    Py_XDECREF(it);
    Py_XDECREF(at);
    Py_XDECREF(arrs);
    Py_XDECREF(axs);
    return pp_stash_exception();
}

static int vjp_trampoline(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    vctx *v = ctx;
    *nout = 0;
    int np = v->nprimals, no = (nin - np) / 2;
    PyObject *prim = NULL, *cots = NULL, *outs = NULL, *pt = NULL, *ct = NULL, *ot = NULL, *res = NULL,
             *leaves = NULL;
    PyObject *lists[3] = {PyList_New(np), PyList_New(no), PyList_New(no)};
    for (int k = 0; k < 3; k++)
        if (!lists[k]) goto fail;
    for (int i = 0; i < nin; i++) {
        PyObject *w = pp_wrap_borrowed(in[i]);
        if (!w) goto fail;
        int k = i < np ? 0 : i < np + no ? 1 : 2, j = i < np ? i : i < np + no ? i - np : i - np - no;
        PyList_SET_ITEM(lists[k], j, w);
    }
    Py_ssize_t pos = 0;
    if (!(pt = tree_fill(v->args, lists[0], &pos)) || unwrap_single(&pt)) goto fail;
    pos = 0;
    if (!(ct = tree_fill(v->fwd->out_tree, lists[1], &pos))) goto fail;
    pos = 0;
    if (!(ot = tree_fill(v->fwd->out_tree, lists[2], &pos))) goto fail;
    if (!(res = PyObject_CallFunctionObjArgs(v->vjp_fn, pt, ct, ot, NULL))) goto fail;
    if (PyTuple_GET_SIZE(v->args) == 1 && !(PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 1)) {
        PyObject *t1 = PyTuple_Pack(1, res);
        Py_SETREF(res, t1);
        if (!res) goto fail;
    }
    if (!(leaves = PyList_New(0)) || pp_tree_flatten(res, leaves, 0)) goto fail;
    if (PyList_GET_SIZE(leaves) != np) {
        PyErr_Format(PyExc_ValueError, "[custom_function] The vjp returned %zd arrays for %d primals.",
                     PyList_GET_SIZE(leaves), np);
        goto fail;
    }
    for (int j = 0; j < np; j++) out[j] = PPARR(PyList_GET_ITEM(leaves, j));
    if (PyList_Append(v->keep, leaves)) goto fail;
    *nout = np;
    Py_DECREF(leaves);
    Py_DECREF(res);
    Py_DECREF(pt);
    Py_DECREF(ct);
    Py_DECREF(ot);
    for (int k = 0; k < 3; k++) Py_DECREF(lists[k]);
    return 0;
fail:
    Py_XDECREF(leaves);
    Py_XDECREF(res);
    Py_XDECREF(pt);
    Py_XDECREF(ct);
    Py_XDECREF(ot);
    Py_XDECREF(prim);
    Py_XDECREF(cots);
    Py_XDECREF(outs);
    for (int k = 0; k < 3; k++) Py_XDECREF(lists[k]);
    return pp_stash_exception();
}

/* The vjp rule's context for one call of a custom_function over args. */
static vctx *vctx_new(PyObject *rule, pn_closure *f, PyObject *args, tctx *fwd)
{
    vctx *v = PyMem_Calloc(1, sizeof *v);
    if (!v) return (vctx *)PyErr_NoMemory();
    v->keep = PyList_New(0);
    if (!v->keep) {
        PyMem_Free(v);
        return NULL;
    }
    Py_INCREF(rule);
    Py_INCREF(args);
    v->vjp_fn = rule;
    v->args = args;
    v->fwd_closure = pn_closure_retain(f);
    PyObject *leaves = PyList_New(0);
    if (!leaves || pp_tree_flatten(args, leaves, 0)) {
        Py_XDECREF(leaves);
        vctx_destroy(v);
        return NULL;
    }
    v->nprimals = (int)PyList_GET_SIZE(leaves);
    Py_DECREF(leaves);
    v->fwd = fwd;
    return v;
}

static PyObject *call_custom(PPTransformed *t, PyObject *args, PyObject *kwargs)
{
    if (!t->vjp_fn && !t->jvp_fn && !t->vmap_fn) return PyObject_Call(t->fn, args, kwargs);
    tctx *c = tctx_new(t->fn, args, kwargs, "custom_function");
    if (!c) return NULL;
    PyObject *leaves = chosen_leaves(c, 0);
    pn_closure *f = leaves ? closure_of(c) : (tctx_destroy(c), NULL);
    if (!f) {
        Py_XDECREF(leaves);
        return NULL;
    }
    vctx *v = t->vjp_fn ? vctx_new(t->vjp_fn, f, args, c) : NULL;
    vctx *jv = t->jvp_fn ? vctx_new(t->jvp_fn, f, args, c) : NULL;
    vctx *mv = t->vmap_fn ? vctx_new(t->vmap_fn, f, args, c) : NULL;
    pn_closure *rule = v ? pn_closure_new(vjp_trampoline, v, vctx_destroy) : NULL;
    pn_closure *jrule = jv ? pn_closure_new(jvp_trampoline, jv, vctx_destroy) : NULL;
    pn_closure *mrule = mv ? pn_closure_new(vmap_trampoline, mv, vctx_destroy) : NULL;
    pn_closure *g = NULL;
    if (!PyErr_Occurred() && (!t->vjp_fn || rule) && (!t->jvp_fn || jrule) && (!t->vmap_fn || mrule)) {
        g = pn_custom_function(f, rule, jrule, mrule);
        if (!g) pp_raise();
    } else {
        if (v && !rule) vctx_destroy(v);
        if (jv && !jrule) vctx_destroy(jv);
        if (mv && !mrule) vctx_destroy(mv);
        if (!PyErr_Occurred()) pp_raise();
    }
    Py_ssize_t nin = PyList_GET_SIZE(leaves);
    pn_array **in = g ? leaf_arrays(leaves) : NULL;
    PyObject *result = NULL;
    if (in) {
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        if (pn_closure_call(g, (int)nin, in, &n, out)) {
            pp_raise();
        } else {
            PyObject *vals = wrap_arrays(out, n);
            Py_ssize_t pos = 0;
            if (vals) result = tree_fill(c->out_tree, vals, &pos);
            Py_XDECREF(vals);
        }
    }
    PyMem_Free(in);
    release_later(g);
    pn_closure_release(rule);
    pn_closure_release(jrule);
    pn_closure_release(mrule);
    Py_DECREF(leaves);
    pn_closure_release(f);
    return result;
}

static PyObject *tf_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PPTransformed *t = (PPTransformed *)self;
    PyObject *r = NULL;
    transform_enter();
    switch (t->kind) {
    case T_GRAD:
    case T_VALUE_AND_GRAD: r = call_grad(t, args, kwargs); break;
    case T_CHECKPOINT: r = call_wrapped(t, args, kwargs, make_checkpoint, "checkpoint", NULL); break;
    case T_VMAP: r = call_wrapped(t, args, kwargs, make_vmap, "vmap", t->out_axes); break;
    case T_CUSTOM: r = call_custom(t, args, kwargs); break;
    }
    if (!r && !PyErr_Occurred()) pp_raise();
    pp_clear_stash();
    transform_exit();
    return r;
}

/* custom_function decorators: f.vjp(rule) stores the rule and returns it. */
static PyObject *set_rule(PyObject *self, PyObject *fn, int which)
{
    PPTransformed *t = (PPTransformed *)self;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "Expected a callable.");
        return NULL;
    }
    PyObject **slot = which == 0 ? &t->vjp_fn : which == 1 ? &t->jvp_fn : &t->vmap_fn;
    Py_INCREF(fn);
    Py_XSETREF(*slot, fn);
    Py_INCREF(self); /* the custom function, as MLX: `@f.vjp def f(...)` keeps f usable */
    return self;
}
static PyObject *tf_vjp(PyObject *self, PyObject *fn) { return set_rule(self, fn, 0); }
static PyObject *tf_jvp(PyObject *self, PyObject *fn) { return set_rule(self, fn, 1); }
static PyObject *tf_vmap(PyObject *self, PyObject *fn) { return set_rule(self, fn, 2); }

/* See pyponte.h. */
PyObject *pp_bind_as_method(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (!obj || obj == Py_None) return Py_INCREF(self), self;
    return PyMethod_New(self, obj);
}

static PyMethodDef tf_methods[] = {
    {"vjp", tf_vjp, METH_O, "Sets the custom vjp rule: vjp(primals, cotangents, outputs)."},
    {"jvp", tf_jvp, METH_O, "Sets the custom jvp rule: jvp(primals, tangents) -> output tangents."},
    {"vmap", tf_vmap, METH_O, "Sets the custom vmap rule: vmap(inputs, axes) -> (outputs, axes)."},
    {NULL},
};

static PyTypeObject PPTransformed_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core.Transformed",
    .tp_basicsize = sizeof(PPTransformed),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A function transformed by grad, value_and_grad, checkpoint, vmap or custom_function.",
    .tp_dealloc = tf_dealloc,
    .tp_traverse = tf_traverse,
    .tp_call = tf_call,
    .tp_methods = tf_methods,
    .tp_descr_get = pp_bind_as_method,
    .tp_dictoffset = offsetof(PPTransformed, dict),
};

/* ───────────────────────────── module functions ───────────────────────────── */

static PyObject *grad_like(int kind, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fun", "argnums", "argnames", NULL};
    PyObject *fn, *argnums = Py_None, *argnames = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &fn, &argnums, &argnames)) return NULL;
    PPTransformed *t = tf_new(kind, fn);
    if (!t) return NULL;
    if (parse_argnums(t, argnums, argnames, kind == T_GRAD ? "grad" : "value_and_grad")) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static PyObject *py_grad(PyObject *m, PyObject *args, PyObject *kw) { return grad_like(T_GRAD, args, kw); }
static PyObject *py_value_and_grad(PyObject *m, PyObject *args, PyObject *kw) { return grad_like(T_VALUE_AND_GRAD, args, kw); }

static PyObject *py_checkpoint(PyObject *m, PyObject *fn) { return (PyObject *)tf_new(T_CHECKPOINT, fn); }
PP_ONE_ARG(kw_checkpoint, py_checkpoint, "checkpoint", "fun")

static PyObject *py_vmap(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fun", "in_axes", "out_axes", NULL};
    PyObject *fn, *in_axes = NULL, *out_axes = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &fn, &in_axes, &out_axes)) return NULL;
    PPTransformed *t = tf_new(T_VMAP, fn);
    if (!t) return NULL;
    t->in_axes = in_axes ? in_axes : PyLong_FromLong(0);
    if (in_axes) Py_INCREF(in_axes);
    t->out_axes = out_axes ? (Py_INCREF(out_axes), out_axes) : PyLong_FromLong(0);
    return (PyObject *)t;
}

static PyObject *py_custom_function(PyObject *m, PyObject *fn) { return (PyObject *)tf_new(T_CUSTOM, fn); }

/* compile, disable_compile, enable_compile: csrc/compile.c. */

/* vjp / jvp: primals and cotangents/tangents are lists of arrays. */
static PyObject *vjp_jvp(int jvp, PyObject *args, PyObject *kw)
{
    static char *kwv[] = {"fun", "primals", "cotangents", NULL}, *kwj[] = {"fun", "primals", "tangents", NULL};
    PyObject *fn, *po, *co;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", jvp ? kwj : kwv, &fn, &po, &co)) return NULL;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "Expected a callable.");
        return NULL;
    }
    PyObject *pt = PySequence_Tuple(po), *ct = pt ? PySequence_Tuple(co) : NULL;
    if (!ct) {
        Py_XDECREF(pt);
        return NULL;
    }
    Py_ssize_t np = PyTuple_GET_SIZE(pt), nc = PyTuple_GET_SIZE(ct);
    pn_array *prim[PN_MAX_OUTPUTS], *cot[PN_MAX_OUTPUTS];
    int ok = np <= PN_MAX_OUTPUTS && nc <= PN_MAX_OUTPUTS;
    if (!ok) PyErr_SetString(PyExc_ValueError, "Too many primals or cotangents.");
    for (Py_ssize_t i = 0; ok && i < np; i++) {
        if (!PPArray_Check(PyTuple_GET_ITEM(pt, i))) {
            PyErr_SetString(PyExc_ValueError, "[vjp] primals must be a list of arrays.");
            ok = 0;
        } else prim[i] = PPARR(PyTuple_GET_ITEM(pt, i));
    }
    for (Py_ssize_t i = 0; ok && i < nc; i++) {
        if (!PPArray_Check(PyTuple_GET_ITEM(ct, i))) {
            PyErr_Format(PyExc_ValueError, "[%s] %s must be a list of arrays.", jvp ? "jvp" : "vjp", jvp ? "tangents" : "cotangents");
            ok = 0;
        } else cot[i] = PPARR(PyTuple_GET_ITEM(ct, i));
    }
    if (ok && jvp && nc != np) {
        PyErr_SetString(PyExc_ValueError, "[jvp] Number of inputs does not match number of tangents.");
        ok = 0;
    }
    PyObject *result = NULL;
    transform_enter();
    tctx *c = ok ? tctx_new(fn, pt, NULL, jvp ? "jvp" : "vjp") : NULL;
    pn_closure *f = c ? closure_of(c) : NULL;
    if (f) {
        pn_array *out[PN_MAX_OUTPUTS], *d[PN_MAX_OUTPUTS];
        int n = 0;
        int rc = jvp ? pn_jvp(f, (int)np, prim, cot, &n, out, d)
                     : pn_vjp(f, (int)np, prim, (int)nc, cot, &n, out, d);
        if (rc) {
            pp_raise();
        } else {
            PyObject *o = wrap_arrays(out, n);
            PyObject *g = o ? wrap_arrays(d, jvp ? n : (int)np) : (pp_release_all(d, jvp ? n : (int)np), NULL);
            if (o && g) result = PyTuple_Pack(2, o, g);
            Py_XDECREF(o);
            Py_XDECREF(g);
        }
        pn_closure_release(f);
    }
    Py_DECREF(pt);
    Py_DECREF(ct);
    pp_clear_stash();
    transform_exit();
    return result;
}

static PyObject *py_vjp(PyObject *m, PyObject *args, PyObject *kw) { return vjp_jvp(0, args, kw); }
static PyObject *py_jvp(PyObject *m, PyObject *args, PyObject *kw) { return vjp_jvp(1, args, kw); }

#define VK METH_VARARGS | METH_KEYWORDS
#define FNP(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef transform_methods[] = {
    {"grad", FNP(py_grad), VK, "grad(fun, argnums=None, argnames=[]): a function computing the gradient of fun."},
    {"value_and_grad", FNP(py_value_and_grad), VK, "value_and_grad(fun, argnums=None, argnames=[])."},
    {"vjp", FNP(py_vjp), VK, "vjp(fun, primals, cotangents) -> (outputs, vjps)."},
    {"jvp", FNP(py_jvp), VK, "jvp(fun, primals, tangents) -> (outputs, jvps)."},
    PP_ONE_ARG_METHOD("checkpoint", kw_checkpoint, "checkpoint(fun): recompute fun's intermediates in the backward pass."),
    {"custom_function", py_custom_function, METH_O, "custom_function(fun): a function with a custom vjp (fun.vjp)."},
    {"vmap", FNP(py_vmap), VK, "vmap(fun, in_axes=0, out_axes=0): vectorizes fun."},
    {NULL},
};

int pp_init_transforms(PyObject *m)
{
    if (PyType_Ready(&PPTransformed_Type)) return -1;
    return PyModule_AddFunctions(m, transform_methods);
}
