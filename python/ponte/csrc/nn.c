/* nn.c — ponte.core._nn: the C layers, activations, losses and initializers of libponte
 * (pn_nn_*), and the optimizer and schedule objects over pn_optimizer / pn_schedule, for the
 * thin Python classes of ponte.nn and ponte.optimizers. */
#include "sigtable.h"

#include <string.h>

#define VK METH_VARARGS | METH_KEYWORDS
#define FNP(f) (PyCFunction)(void (*)(void))(f)
#define FN(name) static PyObject *py_##name(PyObject *m, PyObject *args, PyObject *kw)
#define KW(...) static char *kwlist[] = {__VA_ARGS__, NULL}
#define PARSE(fmt, ...) if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, __VA_ARGS__)) return NULL

/* The array arguments of one call (up to five; NULL / None stay NULL), released after it. */
typedef struct {
    pn_array *a[5];
    int n;
} tmp3;
/* A required array argument (None is a TypeError). */
static int conv(tmp3 *t, PyObject *o, pn_array **out)
{
    if (!(*out = pp_arr(o))) return -1;
    t->a[t->n++] = *out;
    return 0;
}
/* An optional one: None (or absent) gives NULL. */
static int conv_opt(tmp3 *t, PyObject *o, pn_array **out)
{
    *out = NULL;
    return !o || o == Py_None ? 0 : conv(t, o, out);
}
static PyObject *finish(tmp3 *t, pn_array *r)
{
    pp_release_all(t->a, t->n);
    return pp_wrap(r);
}
static PyObject *abort3(tmp3 *t)
{
    pp_release_all(t->a, t->n);
    return NULL;
}

/* ───────────────────────────── layers, activations, losses, initializers ───────────────────────────── */
/* One sigtable.h row each; the Python wrappers (ponte.nn) call them with positional arguments
 * only. The `_...` parameters are the placeholders those wrappers pass and the C call skips. */

static pn_array *nn_log_softmax(pn_array *x, int axis) { return pn_log_softmax(x, &axis, 1); }

#define ACTIVATIONS(X)                                                                             \
    X(relu) X(relu6) X(relu2) X(selu) X(gelu) X(gelu_approx) X(gelu_fast_approx) X(silu) X(sigmoid)        \
    X(log_sigmoid) X(softplus) X(softsign) X(mish) X(hardswish) X(tanh)
#define ROW_ACT(name) PP_SIG(#name, a, pn_nn_##name, "x: array", NULL), /* x by name too, as MLX */

#define SIG_LOSS_TAIL "reduction: reduction, /"
#define SIG_LOSS2(c, x, y, z) "a: array, b: array, " c ", " x ", " y ", " z ", " SIG_LOSS_TAIL
#define SIG_INIT(a, b) "shape: shape, dtype: dtype, " a ", " b ", key: array? = None, /"
#define SIG_INIT3(a, b, c, key) "shape: shape, dtype: dtype, " a ", " b ", " c ", " key ": array? = None, /"

static pp_sig nn_sigs[] = {
    ACTIVATIONS(ROW_ACT)
    PP_SIG("leaky_relu", ad, pn_nn_leaky_relu, "x: array, negative_slope: float = 0.01, /", NULL),
    PP_SIG("elu", ad, pn_nn_elu, "x: array, alpha: float = 1.0, /", NULL),
    PP_SIG("celu", ad, pn_nn_celu, "x: array, alpha: float = 1.0, /", NULL),
    PP_SIG("softshrink", ad, pn_nn_softshrink, "x: array, lambd: float = 0.5, /", NULL),
    PP_SIG("hard_shrink", ad, pn_nn_hard_shrink, "x: array, lambd: float = 0.5, /", NULL),
    PP_SIG("step", ad, pn_nn_step, "x: array, threshold: float = 0.0, /", NULL),
    PP_SIG("hard_tanh", add, pn_nn_hard_tanh, "x: array, min_val: float = -1, max_val: float = 1, /", NULL),
    PP_SIG("glu", ai, pn_nn_glu, "x: array, axis: int = -1, /", NULL),
    PP_SIG("softmin", ai, pn_nn_softmin, "x: array, axis: int = -1, /", NULL),
    PP_SIG("log_softmax", ai, nn_log_softmax, "x: array, axis: int = -1, /", NULL),
    PP_SIG("linear", aaa, pn_nn_linear, "x: array, weight: array, bias: array? = None, /", NULL),
    PP_SIG("embedding", aa, pn_nn_embedding, "x: array, weight: array, /", NULL),
    PP_SIG("prelu", aa, pn_nn_prelu, "x: array, alpha: array, /", NULL),
    PP_SIG("layer_norm", aaad, pn_nn_layer_norm, "x: array, weight: array? = None, bias: array? = None, eps: float = 1e-5, /", NULL),
    PP_SIG("rms_norm", aad, pn_nn_rms_norm, "x: array, weight: array? = None, eps: float = 1e-5, /", NULL),
    PP_SIG("dropout", ada, pn_nn_dropout, "x: array, p: float, key: array? = None, /", NULL),
    PP_SIG("group_norm", aiaadb, pn_nn_group_norm, "x: array, num_groups: int, weight: array?, bias: array?, eps: float, pytorch_compatible: bool, /", NULL),
    PP_SIG("instance_norm", aaad, pn_nn_instance_norm, "x: array, weight: array?, bias: array?, eps: float, /", NULL),
    PP_SIG("sinusoidal_positional_encoding", aidddbb, pn_nn_sinusoidal_positional_encoding, "positions: array, dims: int, min_freq: float, max_freq: float, scale: float, cos_first: bool, full_turns: bool, /", NULL),
    /* losses */
    PP_SIG("cross_entropy", aaidr, pn_nn_cross_entropy, "logits: array, targets: array, axis: int, label_smoothing: float, " SIG_LOSS_TAIL, NULL),
    PP_SIG("binary_cross_entropy", aabr, pn_nn_binary_cross_entropy, "a: array, b: array, with_logits: bool, " SIG_LOSS_TAIL, NULL),
    PP_SIG("mse_loss", aar, pn_nn_mse_loss, "a: array, b: array, _p: float, " SIG_LOSS_TAIL, NULL),
    PP_SIG("l1_loss", aar, pn_nn_l1_loss, "a: array, b: array, _p: float, " SIG_LOSS_TAIL, NULL),
    PP_SIG("smooth_l1_loss", aadr, pn_nn_smooth_l1_loss, "a: array, b: array, beta: float, " SIG_LOSS_TAIL, NULL),
    PP_SIG("huber_loss", aadr, pn_nn_huber_loss, "a: array, b: array, delta: float, " SIG_LOSS_TAIL, NULL),
    PP_SIG("nll_loss", aair, pn_nn_nll_loss, "a: array, b: array, axis: int, " SIG_LOSS_TAIL, NULL),
    PP_SIG("kl_div_loss", aair, pn_nn_kl_div_loss, "a: array, b: array, axis: int, " SIG_LOSS_TAIL, NULL),
    PP_SIG("log_cosh_loss", aar, pn_nn_log_cosh_loss, SIG_LOSS2("_c: array?, _axis: int", "_x: float", "_y: float", "_z: float"), NULL),
    PP_SIG("hinge_loss", aar, pn_nn_hinge_loss, SIG_LOSS2("_c: array?, _axis: int", "_x: float", "_y: float", "_z: float"), NULL),
    PP_SIG("cosine_similarity_loss", aaidr, pn_nn_cosine_similarity_loss, SIG_LOSS2("_c: array?, axis: int", "eps: float", "_y: float", "_z: float"), NULL),
    PP_SIG("margin_ranking_loss", aaadr, pn_nn_margin_ranking_loss, SIG_LOSS2("c: array?, _axis: int", "margin: float", "_y: float", "_z: float"), NULL),
    PP_SIG("gaussian_nll_loss", aaabdr, pn_nn_gaussian_nll_loss, SIG_LOSS2("vars: array?, _axis: int", "full: bool", "eps: float", "_z: float"), NULL),
    PP_SIG("triplet_loss", aaaidddr, pn_nn_triplet_loss, SIG_LOSS2("c: array?, axis: int", "p: float", "margin: float", "eps: float"), NULL),
    /* initializers */
    PP_SIG("init_uniform", stdda, pn_nn_init_uniform, SIG_INIT("low: float", "high: float"), NULL),
    PP_SIG("init_normal", stdda, pn_nn_init_normal, SIG_INIT("mean: float", "std: float"), NULL),
    PP_SIG("init_glorot_uniform", stda, pn_nn_init_glorot_uniform, SIG_INIT("gain: float", "_b: float"), NULL),
    PP_SIG("init_glorot_normal", stda, pn_nn_init_glorot_normal, SIG_INIT("gain: float", "_b: float"), NULL),
    PP_SIG("init_he_uniform", stbda, pn_nn_init_he_uniform, SIG_INIT("fan_out: bool", "gain: float"), NULL),
    PP_SIG("init_he_normal", stbda, pn_nn_init_he_normal, SIG_INIT("fan_out: bool", "gain: float"), NULL),
    PP_SIG("init_constant", std, pn_nn_init_constant, SIG_INIT3("value: float", "_b: float", "_c: float", "_key"), NULL),
    PP_SIG("init_identity", st, pn_nn_init_identity, SIG_INIT3("_a: float", "_b: float", "_c: float", "_key"), NULL),
    PP_SIG("init_sparse", stddda, pn_nn_init_sparse, SIG_INIT3("sparsity: float", "mean: float", "std: float", "key"), NULL),
    PP_SIG("init_orthogonal", stda, pn_nn_init_orthogonal, SIG_INIT3("gain: float", "_b: float", "_c: float", "key"), NULL),
    PP_SIG_END,
};

/* ───────────────────────────── parameter maps ───────────────────────────── */

/* A map from parallel lists of names and arrays. NULL with an exception. */
static pn_params *params_of(PyObject *names, PyObject *arrays)
{
    PyObject *nf = PySequence_Fast(names, "names must be a sequence"), *af = nf ? PySequence_Fast(arrays, "arrays must be a sequence") : NULL;
    pn_params *p = af ? pn_params_new() : NULL;
    if (af && !p) pp_raise();
    Py_ssize_t n = af ? PySequence_Fast_GET_SIZE(nf) : 0;
    if (p && n != PySequence_Fast_GET_SIZE(af)) {
        PyErr_SetString(PyExc_ValueError, "names and arrays differ in length.");
        pn_params_free(p);
        p = NULL;
    }
    for (Py_ssize_t i = 0; p && i < n; i++) {
        PyObject *k = PySequence_Fast_GET_ITEM(nf, i), *v = PySequence_Fast_GET_ITEM(af, i);
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        if (!name || !PPArray_Check(v)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Expected str names and arrays.");
            pn_params_free(p);
            p = NULL;
        } else if (pn_params_set(p, name, PPARR(v))) {
            pp_raise();
            pn_params_free(p);
            p = NULL;
        }
    }
    Py_XDECREF(nf);
    Py_XDECREF(af);
    return p;
}

/* [(name, array), ...] of a map. */
static PyObject *params_items(const pn_params *p)
{
    int n = pn_params_count(p);
    PyObject *l = PyList_New(n);
    for (int i = 0; l && i < n; i++) {
        PyObject *a = pp_wrap_borrowed(pn_params_at(p, i));
        PyObject *it = a ? Py_BuildValue("(sN)", pn_params_name(p, i), a) : NULL;
        if (!it) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, i, it);
    }
    return l;
}

static PyObject *py_clip_grad_norm(PyObject *m, PyObject *args)
{
    PyObject *names, *grads;
    double max_norm;
    if (!PyArg_ParseTuple(args, "OOd", &names, &grads, &max_norm)) return NULL;
    pn_params *p = params_of(names, grads);
    if (!p) return NULL;
    pn_array *norm = pn_clip_grad_norm(p, max_norm);
    PyObject *items = norm ? params_items(p) : NULL;
    PyObject *nrm = norm ? pp_wrap(norm) : pp_raise();
    pn_params_free(p);
    if (!items || !nrm) {
        Py_XDECREF(items);
        Py_XDECREF(nrm);
        return NULL;
    }
    return Py_BuildValue("(NN)", items, nrm);
}

/* ───────────────────────────── optimizers ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    pn_optimizer *o;
} PPOptimizer;

static void optim_dealloc(PyObject *self)
{
    pn_optimizer_free(((PPOptimizer *)self)->o);
    Py_TYPE(self)->tp_free(self);
}

/* A new pn_optimizer from (kind, lr, hyper): hyper is the sequence of pn_optim_<kind>'s
 * arguments after lr, in order (numbers; flags as bools). NULL with a Python error. */
static pn_optimizer *optim_make(const char *kind, double lr, PyObject *hyper)
{
    static const struct {
        const char *kind;
        int n;
    } K[] = {{"sgd", 4}, {"adam", 4}, {"adamw", 5}, {"rmsprop", 2}, {"adagrad", 1}, {"adadelta", 2},
             {"adamax", 3}, {"lion", 3}, {"adafactor", 9}, {"muon", 4}};
    enum { MAXH = 9 };
    double h[MAXH] = {0};
    PyObject *seq = PySequence_Fast(hyper, "Optimizer hyperparameters must be a sequence.");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int k = 0;
    while (k < (int)(sizeof K / sizeof K[0]) && strcmp(K[k].kind, kind)) k++;
    if (k == (int)(sizeof K / sizeof K[0]) || n != K[k].n) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "Unknown optimizer '%s' or wrong number of hyperparameters (%zd).", kind, n);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        h[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (h[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
#define F(i) (h[i] != 0)
    pn_optimizer *o = NULL;
    switch (k) {
    case 0: o = pn_optim_sgd(lr, h[0], h[1], h[2], F(3)); break;
    case 1: o = pn_optim_adam(lr, h[0], h[1], h[2], F(3)); break;
    case 2: o = pn_optim_adamw(lr, h[0], h[1], h[2], h[3], F(4)); break;
    case 3: o = pn_optim_rmsprop(lr, h[0], h[1]); break;
    case 4: o = pn_optim_adagrad(lr, h[0]); break;
    case 5: o = pn_optim_adadelta(lr, h[0], h[1]); break;
    case 6: o = pn_optim_adamax(lr, h[0], h[1], h[2]); break;
    case 7: o = pn_optim_lion(lr, h[0], h[1], h[2]); break;
    case 8: o = pn_optim_adafactor(lr, h[0], h[1], h[2], h[3], h[4], h[5], F(6), F(7), F(8)); break;
    case 9: o = pn_optim_muon(lr, h[0], h[1], F(2), (int)h[3]); break;
    }
#undef F
    if (!o) pp_raise();
    return o;
}

/* Optimizer(kind, lr, hyper): see optim_make. */
static PyObject *optim_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    const char *kind;
    double lr;
    PyObject *hyper;
    if (!PyArg_ParseTuple(args, "sdO", &kind, &lr, &hyper)) return NULL;
    pn_optimizer *o = optim_make(kind, lr, hyper);
    if (!o) return NULL;
    PPOptimizer *self = (PPOptimizer *)type->tp_alloc(type, 0);
    if (!self) {
        pn_optimizer_free(o);
        return NULL;
    }
    self->o = o;
    return (PyObject *)self;
}

/* add_group(names, kind, lr, hyper) -> the group's index: pn_optimizer_add_group with the
 * parameter names (or prefixes) given and a rule built as by Optimizer(kind, lr, hyper). */
static PyObject *optim_add_group(PyObject *self, PyObject *args)
{
    PyObject *names, *hyper;
    const char *kind;
    double lr;
    if (!PyArg_ParseTuple(args, "OsdO", &names, &kind, &lr, &hyper)) return NULL;
    PyObject *seq = PySequence_Fast(names, "add_group: names must be a sequence of str.");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char **pre = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof *pre);
    int rc = -1;
    for (Py_ssize_t i = 0; pre && i < n; i++)
        if (!(pre[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i)))) goto done;
    if (!pre) {
        PyErr_NoMemory();
        goto done;
    }
    pn_optimizer *rule = optim_make(kind, lr, hyper);
    if (!rule) goto done;
    rc = pn_optimizer_add_group(((PPOptimizer *)self)->o, pre, (int)n, rule);
    if (rc < 0) pp_raise();
done:
    PyMem_Free(pre);
    Py_DECREF(seq);
    return rc < 0 ? NULL : PyLong_FromLong(rc);
}

/* update(names, params, grad_names, grads, lr, group_lrs=()) -> the updated params, in names
 * order; lr is this step's learning rate, group_lrs[i] that of group i. */
/* One update of p by g (pn_optimizer_update, or pn_optimizer_update_arrays with lr when lr is
 * non-NULL) -> a new list of p's arrays in order, or NULL with the error raised. */
static PyObject *optim_step(pn_optimizer *o, pn_params *p, pn_params *g, pn_array *lr)
{
    if (lr ? pn_optimizer_update_arrays(o, p, g, lr) : pn_optimizer_update(o, p, g)) return pp_raise();
    int n = pn_params_count(p);
    PyObject *r = PyList_New(n);
    for (int i = 0; r && i < n; i++) {
        PyObject *a = pp_wrap_borrowed(pn_params_at(p, i));
        if (!a) Py_CLEAR(r);
        else PyList_SET_ITEM(r, i, a);
    }
    return r;
}

static PyObject *optim_update(PyObject *self, PyObject *args)
{
    PPOptimizer *op = (PPOptimizer *)self;
    PyObject *names, *params, *grads, *gnames, *glrs = NULL;
    double lr;
    if (!PyArg_ParseTuple(args, "OOOOd|O", &names, &params, &gnames, &grads, &lr, &glrs)) return NULL;
    PyObject *gl = glrs && glrs != Py_None ? PySequence_Fast(glrs, "group_lrs must be a sequence.") : NULL;
    if (!gl && PyErr_Occurred()) return NULL;
    for (Py_ssize_t i = 0; gl && i < PySequence_Fast_GET_SIZE(gl); i++) {
        double gi = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(gl, i));
        pn_optimizer *r = pn_optimizer_group(op->o, (int)i);
        if (gi == -1.0 && PyErr_Occurred()) break;
        if (!r) {
            PyErr_SetString(PyExc_ValueError, "More group learning rates than groups.");
            break;
        }
        pn_schedule *s = pn_schedule_constant(gi);
        if (!s) {
            pp_raise();
            break;
        }
        pn_optimizer_set_schedule(r, s);
    }
    Py_XDECREF(gl);
    if (PyErr_Occurred()) return NULL;
    pn_params *p = params_of(names, params), *g = p ? params_of(gnames, grads) : NULL;
    PyObject *r = NULL;
    if (g) {
        pn_schedule *s = pn_schedule_constant(lr);
        if (s) pn_optimizer_set_schedule(op->o, s);
        r = s ? optim_step(op->o, p, g, NULL) : pp_raise();
    }
    pn_params_free(p);
    pn_params_free(g);
    return r;
}

/* ── compile: array hyper-parameters (issue 4) ── update_arrays(names, params, grad_names,
 * grads, lr) -> the updated params, in names order: pn_optimizer_update_arrays with lr an array
 * (the step counted as an array in the state), so mx.compile traces the whole update. */
static PyObject *optim_update_arrays(PyObject *self, PyObject *args)
{
    PyObject *names, *params, *grads, *gnames, *lr;
    if (!PyArg_ParseTuple(args, "OOOOO!", &names, &params, &gnames, &grads, &PPArray_Type, &lr)) return NULL;
    pn_params *p = params_of(names, params), *g = p ? params_of(gnames, grads) : NULL;
    PyObject *r = g ? optim_step(((PPOptimizer *)self)->o, p, g, PPARR(lr)) : NULL;
    pn_params_free(p);
    pn_params_free(g);
    return r;
}

static PyObject *optim_state(PyObject *self, PyObject *u) { return params_items(pn_optimizer_state(((PPOptimizer *)self)->o)); }

static PyObject *optim_set_state(PyObject *self, PyObject *args)
{
    PyObject *names, *arrays;
    if (!PyArg_ParseTuple(args, "OO", &names, &arrays)) return NULL;
    pn_params *src = params_of(names, arrays);
    if (!src) return NULL;
    pn_params *st = pn_optimizer_state(((PPOptimizer *)self)->o);
    int rc = 0;
    for (int i = 0; i < pn_params_count(src) && rc == 0; i++)
        rc = pn_params_set(st, pn_params_name(src, i), pn_params_at(src, i));
    pn_params_free(src);
    if (rc) return pp_raise();
    Py_RETURN_NONE;
}

static PyMethodDef optim_methods[] = {
    {"update", optim_update, METH_VARARGS,
     "update(names, params, grad_names, grads, lr, group_lrs=()) -> new params."},
    {"update_arrays", optim_update_arrays, METH_VARARGS,
     "update_arrays(names, params, grad_names, grads, lr) -> new params (lr and step as arrays)."},
    {"add_group", optim_add_group, METH_VARARGS, "add_group(names, kind, lr, hyper) -> group index."},
    {"state", optim_state, METH_NOARGS, "[(name, array)] of the optimizer's state."},
    {"set_state", optim_set_state, METH_VARARGS, "set_state(names, arrays)."},
    {NULL},
};

static PyTypeObject PPOptimizer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core._nn.Optimizer",
    .tp_basicsize = sizeof(PPOptimizer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A libponte optimizer (update rule and state).",
    .tp_new = optim_new,
    .tp_dealloc = optim_dealloc,
    .tp_methods = optim_methods,
};

/* ───────────────────────────── schedules ───────────────────────────── */

typedef struct {
    PyObject_HEAD
    pn_schedule *s;
} PPSchedule;

static void sched_dealloc(PyObject *self)
{
    pn_schedule_free(((PPSchedule *)self)->s);
    Py_TYPE(self)->tp_free(self);
}

/* Schedule(kind, init, a, b): constant(init), step_decay(init, rate, step_size),
 * exponential_decay(init, rate), cosine_decay(init, steps, end), linear(init, end, steps). */
static PyObject *sched_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    const char *kind;
    double init, a = 0, b = 0;
    if (!PyArg_ParseTuple(args, "sd|dd", &kind, &init, &a, &b)) return NULL;
    pn_schedule *s = NULL;
    if (!strcmp(kind, "constant")) s = pn_schedule_constant(init);
    else if (!strcmp(kind, "step_decay")) s = pn_schedule_step_decay(init, a, (int64_t)b);
    else if (!strcmp(kind, "exponential_decay")) s = pn_schedule_exponential_decay(init, a);
    else if (!strcmp(kind, "cosine_decay")) s = pn_schedule_cosine_decay(init, (int64_t)a, b);
    else if (!strcmp(kind, "linear")) s = pn_schedule_linear(init, a, (int64_t)b);
    else {
        PyErr_Format(PyExc_ValueError, "Unknown schedule '%s'.", kind);
        return NULL;
    }
    if (!s) return pp_raise();
    PPSchedule *self = (PPSchedule *)type->tp_alloc(type, 0);
    if (!self) {
        pn_schedule_free(s);
        return NULL;
    }
    self->s = s;
    return (PyObject *)self;
}

static PyObject *sched_call(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *so;
    if (!PyArg_ParseTuple(args, "O", &so)) return NULL;
    long long step;
    if (PPArray_Check(so)) {
        step = pn_item_int(PPARR(so));
        if (pn_last_error() != PN_OK) return pp_raise();
    } else {
        if (pp_int(so, &step, "step")) return NULL;
    }
    return pp_wrap(pn_scalar(pn_schedule_at(((PPSchedule *)self)->s, step), PN_FLOAT32));
}

static PyTypeObject PPSchedule_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ponte.core._nn.Schedule",
    .tp_basicsize = sizeof(PPSchedule),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A learning-rate schedule: schedule(step) -> array.",
    .tp_new = sched_new,
    .tp_dealloc = sched_dealloc,
    .tp_call = sched_call,
};

/* batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps)
 * -> (y, new_mean or None, new_var or None) */
static PyObject *py_batch_norm(PyObject *m, PyObject *args)
{
    PyObject *xo, *wo, *bo, *mo, *vo;
    int training;
    double momentum, eps;
    if (!PyArg_ParseTuple(args, "OOOOOpdd", &xo, &wo, &bo, &mo, &vo, &training, &momentum, &eps))
        return NULL;
    tmp3 t = {.n = 0};
    pn_array *x, *w, *b, *rm, *rv;
    if (conv(&t, xo, &x) || conv_opt(&t, wo, &w) || conv_opt(&t, bo, &b)) return abort3(&t);
    pn_array *extra[2] = {NULL, NULL};
    int ne = 0;
    rm = rv = NULL;
    if (mo != Py_None) {
        if (!(rm = pp_arr(mo))) return abort3(&t);
        extra[ne++] = rm;
    }
    if (vo != Py_None) {
        if (!(rv = pp_arr(vo))) {
            pp_release_all(extra, ne);
            return abort3(&t);
        }
        extra[ne++] = rv;
    }
    pn_array *nm = NULL, *nv = NULL;
    pn_array *y = pn_nn_batch_norm(x, w, b, rm, rv, training != 0, momentum, eps, &nm, &nv);
    pp_release_all(extra, ne);
    pp_release_all(t.a, t.n);
    PyObject *yo = pp_wrap(y);
    if (!yo) {
        if (nm) pp_release_all(&nm, 1);
        if (nv) pp_release_all(&nv, 1);
        return NULL;
    }
    PyObject *nmo = nm ? pp_wrap(nm) : Py_NewRef(Py_None);
    PyObject *nvo = nv ? pp_wrap(nv) : Py_NewRef(Py_None);
    if (!nmo || !nvo) {
        Py_DECREF(yo);
        Py_XDECREF(nmo);
        Py_XDECREF(nvo);
        return NULL;
    }
    return Py_BuildValue("(NNN)", yo, nmo, nvo);
}

/* alibi_bias(q_len, k_len, num_heads, offset, dtype) */
static PyObject *py_alibi_bias(PyObject *m, PyObject *args)
{
    long long ql, kl, off;
    int heads;
    pn_dtype dt = PN_FLOAT32;
    if (!PyArg_ParseTuple(args, "LLiL|O&", &ql, &kl, &heads, &off, pp_dtype_conv, &dt)) return NULL;
    return pp_wrap(pn_nn_alibi_bias(ql, kl, heads, off, dt));
}

/* ──────────────────── recurrent layers, upsampling, bilinear ──────────────────── */

/* Converts n arguments into arrays: the first nreq are required, the others may be None
 * (NULL). Returns 0, or -1 with an exception after releasing what it made. */
static int rec_arrays(PyObject *const *objs, int n, int nreq, pn_array **out)
{
    for (int i = 0; i < n; i++) out[i] = NULL;
    for (int i = 0; i < n; i++) {
        if (i >= nreq && objs[i] == Py_None) continue;
        if (!(out[i] = pp_arr(objs[i]))) {
            pp_release_all(out, i);
            return -1;
        }
    }
    return 0;
}

/* A Python callable as the RNN's nonlinearity closure; its results stay alive in keep until
 * the closure goes (pn_closure_call gives the layer its own handles). */
typedef struct {
    PyObject *fn, *keep;
} rec_act;

static void rec_act_destroy(void *ctx)
{
    rec_act *a = ctx;
    Py_XDECREF(a->fn);
    Py_XDECREF(a->keep);
    PyMem_Free(a);
}

static int rec_act_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    rec_act *a = ctx;
    PyObject *arg = pp_wrap_borrowed(in[0]);
    PyObject *r = arg ? PyObject_CallOneArg(a->fn, arg) : NULL;
    Py_XDECREF(arg);
    if (r && !PPArray_Check(r)) {
        PyErr_Format(PyExc_TypeError, "[RNN] The nonlinearity must return an array, got %s.", Py_TYPE(r)->tp_name);
        Py_CLEAR(r);
    }
    if (!r || PyList_Append(a->keep, r)) {
        Py_XDECREF(r);
        return pp_stash_exception();
    }
    out[0] = PPARR(r);
    *nout = 1;
    Py_DECREF(r);
    return 0;
}

/* rnn(x, Wxh, Whh, bias, hidden, nonlinearity): nonlinearity None means tanh. */
static PyObject *py_rnn(PyObject *m, PyObject *args)
{
    PyObject *o[5], *fo;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &fo)) return NULL;
    if (fo != Py_None && !PyCallable_Check(fo))
        return PyErr_Format(PyExc_ValueError, "Nonlinearity must be callable. Current value: %R.", fo);
    pn_closure *f = NULL;
    if (fo != Py_None) {
        rec_act *a = PyMem_Malloc(sizeof *a);
        if (!a) return PyErr_NoMemory();
        a->fn = Py_NewRef(fo);
        if (!(a->keep = PyList_New(0))) {
            rec_act_destroy(a);
            return NULL;
        }
        if (!(f = pn_closure_new(rec_act_call, a, rec_act_destroy))) return pp_raise();
    }
    pn_array *a[5];
    if (rec_arrays(o, 5, 3, a)) {
        pn_closure_release(f);
        return NULL;
    }
    pn_array *y = pn_nn_rnn(a[0], a[1], a[2], a[3], a[4], f);
    pp_release_all(a, 5);
    pn_closure_release(f);
    return pp_wrap(y);
}

/* gru(x, Wx, Wh, b, bhn, hidden) */
static PyObject *py_gru(PyObject *m, PyObject *args)
{
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    pn_array *a[6];
    if (rec_arrays(o, 6, 3, a)) return NULL;
    pn_array *y = pn_nn_gru(a[0], a[1], a[2], a[3], a[4], a[5]);
    pp_release_all(a, 6);
    return pp_wrap(y);
}

/* lstm(x, Wx, Wh, bias, hidden, cell) -> (hidden states, cell states) */
static PyObject *py_lstm(PyObject *m, PyObject *args)
{
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    pn_array *a[6], *c = NULL;
    if (rec_arrays(o, 6, 3, a)) return NULL;
    pn_array *h = pn_nn_lstm(a[0], a[1], a[2], a[3], a[4], a[5], &c);
    pp_release_all(a, 6);
    if (!h) return pp_raise();
    PyObject *ho = pp_wrap(h);
    if (!ho) {
        pp_release_all(&c, 1);
        return NULL;
    }
    PyObject *co = pp_wrap(c);
    if (!co) {
        Py_DECREF(ho);
        return NULL;
    }
    return Py_BuildValue("(NN)", ho, co);
}

/* upsample(x, scale_factor, mode, align_corners, antialias=False): scale_factor a number
 * (every spatial axis) or a sequence of one per spatial axis. */
static PyObject *py_upsample(PyObject *m, PyObject *args)
{
    PyObject *xo, *so;
    const char *mode;
    int align, antialias = 0;
    if (!PyArg_ParseTuple(args, "OOsp|p", &xo, &so, &mode, &align, &antialias)) return NULL;
    double scale[PP_MAXDIM];
    int ns = 1;
    if (PySequence_Check(so)) {
        Py_ssize_t n = PySequence_Size(so);
        if (n < 0) return NULL;
        if (n > PP_MAXDIM) return PyErr_Format(PyExc_ValueError, "[Upsample] Too many scale factors (%zd).", n);
        ns = (int)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *it = PySequence_GetItem(so, i);
            scale[i] = it ? PyFloat_AsDouble(it) : -1;
            Py_XDECREF(it);
            if (PyErr_Occurred()) return NULL;
        }
    } else {
        scale[0] = PyFloat_AsDouble(so);
        if (PyErr_Occurred()) return NULL;
    }
    pn_array *x;
    if (rec_arrays(&xo, 1, 1, &x)) return NULL;
    pn_array *y = pn_nn_upsample(x, scale, ns, mode, align != 0, antialias != 0);
    pp_release_all(&x, 1);
    return pp_wrap(y);
}

/* bilinear(x1, x2, weight, bias) */
static PyObject *py_bilinear(PyObject *m, PyObject *args)
{
    PyObject *o[4] = {NULL, NULL, NULL, Py_None};
    if (!PyArg_ParseTuple(args, "OOO|O", &o[0], &o[1], &o[2], &o[3])) return NULL;
    pn_array *a[4];
    if (rec_arrays(o, 4, 3, a)) return NULL;
    pn_array *y = pn_nn_bilinear(a[0], a[1], a[2], a[3]);
    pp_release_all(a, 4);
    return pp_wrap(y);
}

/* ───────────────────────────── transformer blocks ───────────────────────────── */

/* A Python activation as the pn_closure of pn_transformer_config: each result stays alive in
 * keep until the C call that used it has returned. */
typedef struct {
    PyObject *fn, *keep;
} tf_act;

static int tf_act_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    tf_act *a = ctx;
    *nout = 0;
    PyObject *x = nin == 1 ? pp_wrap_borrowed(in[0]) : NULL;
    PyObject *r = x ? PyObject_CallOneArg(a->fn, x) : NULL;
    Py_XDECREF(x);
    if (r && !PPArray_Check(r)) {
        PyErr_Format(PyExc_TypeError, "The activation must return an array, not %s.", Py_TYPE(r)->tp_name);
        Py_CLEAR(r);
    }
    int rc = r ? PyList_Append(a->keep, r) : -1;
    Py_XDECREF(r);
    if (rc) return pp_stash_exception();
    out[0] = PPARR(r); /* alive in keep */
    *nout = 1;
    return 0;
}

/* The config tuple (dims, num_heads, mlp_dims, num_encoder_layers, num_decoder_layers,
 * dropout, norm_first). 0, or -1 with a Python error. */
static int tf_config(PyObject *o, pn_transformer_config *c)
{
    int nf = 0;
    *c = (pn_transformer_config){0};
    if (!PyArg_ParseTuple(o, "iiiiidp", &c->dims, &c->num_heads, &c->mlp_dims, &c->num_encoder_layers,
                          &c->num_decoder_layers, &c->dropout, &nf))
        return -1;
    c->norm_first = nf;
    return 0;
}

/* A mask argument: None, "causal" or an array (anything pp_arr takes, owned through *owned). */
static int tf_mask(PyObject *o, pn_attention_mask *m, pn_array **owned)
{
    *m = (pn_attention_mask){0};
    *owned = NULL;
    if (!o || o == Py_None) return 0;
    if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8(o);
        if (!s) return -1;
        if (strcmp(s, "causal") != 0) {
            PyErr_Format(PyExc_ValueError, "[transformer] invalid mask option '%s'; must be 'causal', an array or None", s);
            return -1;
        }
        m->mode = "causal";
        return 0;
    }
    if (!(*owned = pp_arr(o))) return -1;
    m->array = *owned;
    return 0;
}

/* transformer(part, x, memory, masks, names, arrays, config, activation): the forward pass of
 * pn_transformer_part `part` (0 encoder layer, 1 decoder layer, 2 encoder, 3 decoder, 4
 * transformer with x = src, memory = tgt) over the parameters named `names`; masks in the
 * order of the C function's mask arguments; activation None (relu) or a callable. */
static PyObject *py_transformer(PyObject *m, PyObject *args)
{
    int part;
    PyObject *xo, *mo, *masks, *names, *arrays, *cfgo, *act;
    if (!PyArg_ParseTuple(args, "iOOOOOO!O", &part, &xo, &mo, &masks, &names, &arrays, &PyTuple_Type, &cfgo, &act))
        return NULL;
    pn_transformer_config cfg;
    if (tf_config(cfgo, &cfg)) return NULL;
    if (part < PN_TRANSFORMER_ENCODER_LAYER || part > PN_TRANSFORMER) {
        PyErr_Format(PyExc_ValueError, "[transformer] unknown block %d.", part);
        return NULL;
    }
    if (act != Py_None && !PyCallable_Check(act)) {
        PyErr_SetString(PyExc_TypeError, "[transformer] activation must be callable.");
        return NULL;
    }
    PyObject *ms = PySequence_Fast(masks, "masks must be a sequence");
    if (!ms) return NULL;
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(ms);
    tmp3 t = {.n = 0};
    pn_array *x, *mem, *owned[3] = {NULL, NULL, NULL};
    pn_attention_mask mk[3] = {{0}, {0}, {0}};
    pn_params *p = NULL;
    pn_closure *cl = NULL;
    tf_act a = {act, PyList_New(0)};
    PyObject *res = NULL;
    if (nm > 3) PyErr_SetString(PyExc_ValueError, "[transformer] at most three masks.");
    int ok = a.keep && nm <= 3 && conv(&t, xo, &x) == 0 && conv_opt(&t, mo, &mem) == 0;
    for (Py_ssize_t i = 0; ok && i < nm; i++) ok = tf_mask(PySequence_Fast_GET_ITEM(ms, i), &mk[i], &owned[i]) == 0;
    if (ok) ok = (p = params_of(names, arrays)) != NULL;
    if (ok && act != Py_None) {
        cfg.activation = cl = pn_closure_new(tf_act_call, &a, NULL);
        if (!cl) ok = (pp_raise(), 0);
    }
    if (ok) {
        pn_array *r = NULL;
        switch (part) {
        case PN_TRANSFORMER_ENCODER_LAYER: r = pn_nn_transformer_encoder_layer(x, mk[0], p, "", &cfg, NULL); break;
        case PN_TRANSFORMER_DECODER_LAYER: r = pn_nn_transformer_decoder_layer(x, mem, mk[0], mk[1], p, "", &cfg, NULL); break;
        case PN_TRANSFORMER_ENCODER: r = pn_nn_transformer_encoder(x, mk[0], p, "", &cfg, NULL); break;
        case PN_TRANSFORMER_DECODER: r = pn_nn_transformer_decoder(x, mem, mk[0], mk[1], p, "", &cfg, NULL); break;
        case PN_TRANSFORMER: r = pn_nn_transformer(x, mem, mk[0], mk[1], mk[2], p, "", &cfg, NULL); break;
        }
        if (r) pp_clear_stash();
        res = pp_wrap(r); /* NULL: raises the Ponte error or the activation's exception */
    }
    pn_closure_release(cl);
    pn_params_free(p);
    pp_release_all(owned, 3);
    pp_release_all(t.a, t.n);
    Py_XDECREF(a.keep);
    Py_DECREF(ms);
    return res;
}

/* transformer_init(part, prefix, config, key=None): [(name, array)] of pn_nn_transformer_init. */
static PyObject *py_transformer_init(PyObject *m, PyObject *args)
{
    int part;
    const char *prefix;
    PyObject *cfgo, *ko = Py_None;
    if (!PyArg_ParseTuple(args, "isO!|O", &part, &prefix, &PyTuple_Type, &cfgo, &ko)) return NULL;
    pn_transformer_config cfg;
    if (tf_config(cfgo, &cfg)) return NULL;
    tmp3 t = {.n = 0};
    pn_array *key;
    if (conv_opt(&t, ko, &key)) return abort3(&t);
    pn_params *p = pn_params_new();
    PyObject *items = p && pn_nn_transformer_init(p, prefix, (pn_transformer_part)part, &cfg, key) == 0
                          ? params_items(p) : pp_raise();
    pn_params_free(p);
    pp_release_all(t.a, t.n);
    return items;
}

/* ───────────────────────────── pooling (ponte.nn.conv_pool) ───────────────────────────── */

/* The six C poolings under one signature (the 1-d forms take plain ints). */
typedef pn_array *(*pool_fn)(pn_array *, const int *, const int *, const int *);
static pn_array *max_pool1d_v(pn_array *x, const int *k, const int *s, const int *p)
{
    return pn_nn_max_pool1d(x, k[0], s[0], p[0]);
}
static pn_array *avg_pool1d_v(pn_array *x, const int *k, const int *s, const int *p)
{
    return pn_nn_avg_pool1d(x, k[0], s[0], p[0]);
}
static const pool_fn pool_fns[2][3] = {{avg_pool1d_v, pn_nn_avg_pool2d, pn_nn_avg_pool3d},
                                       {max_pool1d_v, pn_nn_max_pool2d, pn_nn_max_pool3d}};

/* A sequence of n ints (n < 0: 1 to 3, any) in int range into out. Returns the count or -1. */
static int pool_ints(PyObject *o, int n, int *out, const char *what)
{
    int64_t v[3];
    int k = pp_shape(o, v, 3, what);
    if (k < 0) return -1;
    if (k < 1 || (n >= 0 && k != n)) {
        PyErr_Format(PyExc_ValueError, "[pool] %s must hold %d ints, got %d.", what, n < 0 ? 3 : n, k);
        return -1;
    }
    for (int i = 0; i < k; i++) {
        if (v[i] < INT32_MIN || v[i] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "[pool] %s out of range.", what);
            return -1;
        }
        out[i] = (int)v[i];
    }
    return k;
}

/* pool(x, is_max, kernel_size, stride, padding): max or average pooling of x (N, spatial...,
 * C) over len(kernel_size) (1 to 3) spatial axes; stride and padding hold as many ints. */
static PyObject *py_pool(PyObject *m, PyObject *args)
{
    PyObject *xo, *ko, *so, *po;
    int is_max, k[3], s[3], p[3];
    if (!PyArg_ParseTuple(args, "OpOOO", &xo, &is_max, &ko, &so, &po)) return NULL;
    int n = pool_ints(ko, -1, k, "kernel_size");
    if (n < 0 || pool_ints(so, n, s, "stride") < 0 || pool_ints(po, n, p, "padding") < 0) return NULL;
    tmp3 t = {.n = 0};
    pn_array *x;
    if (conv(&t, xo, &x)) return NULL;
    return finish(&t, pool_fns[is_max][n - 1](x, k, s, p));
}

/* ───────────────────────────── ponte.core.fast ───────────────────────────── */

/* scaled_dot_product_attention(q, k, v, *, scale, mask=None, sinks=None, force_fused=False,
 * stream=None); force_fused is accepted and changes nothing (every case has a fused path). */
static PyObject *py_sdpa(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *qo, *ko, *vo, *mo = Py_None, *sko = Py_None, *so = Py_None;
    double scale;
    int force_fused = 0;
    static char *kwlist[] = {"q", "k", "v", "scale", "mask", "sinks", "force_fused", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|$dOOpO", kwlist, &qo, &ko, &vo, &scale, &mo, &sko,
                                     &force_fused, &so))
        return NULL;
    if (!kw || !PyDict_GetItemString(kw, "scale")) {
        PyErr_SetString(PyExc_TypeError,
                        "scaled_dot_product_attention() missing required keyword argument 'scale'");
        return NULL;
    }
    const char *mode = NULL;
    PyObject *marr = NULL;
    if (PyUnicode_Check(mo)) {
        mode = PyUnicode_AsUTF8(mo);
        if (!mode) return NULL;
        if (strcmp(mode, "causal") != 0) {
            PyErr_Format(PyExc_ValueError,
                         "[scaled_dot_product_attention] invalid mask option '%s'; must be 'causal' or an array", mode);
            return NULL;
        }
    } else if (mo != Py_None) {
        marr = mo;
    }
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    tmp3 t = {.n = 0};
    pn_array *q, *k, *v, *mask, *sinks;
    if (conv(&t, qo, &q) || conv(&t, ko, &k) || conv(&t, vo, &v) || conv_opt(&t, marr, &mask) ||
        conv_opt(&t, sko, &sinks)) {
        pp_stream_exit(pushed);
        return abort3(&t);
    }
    PyObject *r = finish(&t, pn_fast_scaled_dot_product_attention_sinks(q, k, v, scale, mode, mask, sinks));
    pp_stream_exit(pushed);
    return r;
}

/* rope(a, dims, *, traditional, base, scale, offset, freqs=None, stream=None) */
static PyObject *py_rope(PyObject *m, PyObject *args, PyObject *kw)
{
    PyObject *ao, *bo = Py_None, *fo = Py_None, *so = Py_None, *oo = NULL;
    int dims, trad = -1;
    double scale = 0;
    static char *kwlist[] = {"a", "dims", "traditional", "base", "scale", "offset", "freqs", "stream", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|$pOdOOO", kwlist, &ao, &dims, &trad, &bo, &scale,
                                     &oo, &fo, &so))
        return NULL;
    if (trad < 0 || !oo || !kw || !PyDict_GetItemString(kw, "scale") || !PyDict_GetItemString(kw, "base")) {
        PyErr_SetString(PyExc_TypeError,
                        "rope() requires the keyword arguments traditional, base, scale and offset");
        return NULL;
    }
    if ((bo == Py_None) == (fo == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "[rope] Exactly one of base and freqs must be given (the other None).");
        return NULL;
    }
    double base = bo == Py_None ? 0 : PyFloat_AsDouble(bo);
    if (base == -1.0 && PyErr_Occurred()) return NULL;
    int pushed = pp_stream_enter(so);
    if (pushed < 0) return NULL;
    tmp3 t = {.n = 0};
    pn_array *a, *offset, *freqs;
    if (conv(&t, ao, &a) || conv(&t, oo, &offset) || conv_opt(&t, fo, &freqs)) {
        pp_stream_exit(pushed);
        return abort3(&t);
    }
    PyObject *r = finish(&t, pn_fast_rope(a, dims, trad != 0, base, scale, offset, freqs));
    pp_stream_exit(pushed);
    return r;
}

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
        if ((i < 5 || o[i] != Py_None) && !(a[i] = pp_arr(o[i]))) {
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
    {"scaled_dot_product_attention", FNP(py_sdpa), VK,
     "scaled_dot_product_attention(q, k, v, *, scale, mask=None, sinks=None, force_fused=False, stream=None): "
     "softmax(scale * q @ k.T + mask) @ v, with one more softmax column of logit sinks[h] and value 0 per head."},
    {"rope", FNP(py_rope), VK,
     "rope(a, dims, *, traditional, base, scale, offset, freqs=None, stream=None): rotary positional encoding "
     "(offset: an int, or an integer array of one offset or one per batch entry; exactly one of base and freqs)."},
    {NULL},
};

/* ───────────────────────────── module ───────────────────────────── */

#define VA(name) {#name, py_##name, METH_VARARGS, NULL},
static PyMethodDef nn_methods[] = {
    VA(batch_norm) VA(alibi_bias)
    VA(transformer) VA(transformer_init)
    VA(rnn) VA(gru) VA(lstm) VA(upsample) VA(bilinear)
    VA(clip_grad_norm)
    VA(pool)
    {NULL},
};

int pp_init_nn(PyObject *m)
{
    PyObject *sub = pp_submodule(m, "_nn", nn_methods, "libponte's nn layers and optimizers (private).");
    if (!sub || pp_sig_add(sub, nn_sigs)) return -1;
    if (PyType_Ready(&PPOptimizer_Type) || PyType_Ready(&PPSchedule_Type)) return -1;
    if (PyModule_AddObjectRef(sub, "Optimizer", (PyObject *)&PPOptimizer_Type) ||
        PyModule_AddObjectRef(sub, "Schedule", (PyObject *)&PPSchedule_Type))
        return -1;
    /* ponte.core.fast is created (empty) by pp_init_ops; its functions live here */
    PyObject *fast = PyObject_GetAttrString(m, "fast");
    if (!fast) return -1;
    int rc = PyModule_AddFunctions(fast, fast_methods);
    Py_DECREF(fast);
    return rc;
}
