/* sigtable.c — the generic parser and dispatcher of the signature tables (sigtable.h): compiles
 * each row's signature string once into a CPython format and keyword list, then per call parses
 * through PyArg_ParseTupleAndKeywords (CPython's own messages), converts, calls, wraps. */
#include "sigtable.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Parameter types (the order of the type names below). */
enum {
    T_ARRAY, T_ARRAY_OPT, T_WEAK, T_WEAK_OPT, T_PAIR, T_KEY, T_AXES, T_AXIS, T_SHAPE, T_SHAPE_OPT,
    T_INT, T_BOOL, T_FLOAT, T_LONG, T_SIZE, T_STR, T_DTYPE, T_DTYPE_OPT, T_ASTYPE, T_REDUCTION,
    T_STREAM, T_OBJECT, T_COUNT
};
static const struct {
    const char *name;
    char unit; /* the CPython format unit ('&': O& with a dtype converter) */
    char code; /* the C signature letter, 0: not passed */
} types[T_COUNT] = {
    {"array", 'O', 'a'}, {"array?", 'O', 'a'}, {"weak", 'O', 'a'}, {"weak?", 'O', 'a'},
    {"pair", 'O', 'a'}, {"key", 'O', 'a'}, {"axes", 'O', 'x'}, {"axis", 'O', 'i'},
    {"shape", 'O', 's'}, {"shape?", 'O', 's'}, {"int", 'i', 'i'}, {"bool", 'p', 'b'},
    {"float", 'd', 'd'}, {"long", 'L', 'L'}, {"size", 'n', 'L'}, {"str", 's', 'z'},
    {"dtype", '&', 't'}, {"dtype?", '&', 't'}, {"astype", '&', 0}, {"reduction", 's', 'r'},
    {"stream", 'O', 0}, {"object", 'O', 0},
};

/* One parsed argument. */
typedef struct {
    PyObject *o;
    pn_array *a;
    int i, n; /* n: the count of axes / shape entries (-1: NULL) */
    double d;
    long long L;
    Py_ssize_t sz;
    const char *s;
    int ax[PP_MAXDIM];
    int64_t sh[PP_MAXDIM];
} pp_val;

/* ───────────────────────────── kinds ───────────────────────────── */

#define A(k) c[k]->a
#define B(k) (c[k]->i != 0)
#define I(k) c[k]->i
#define D(k) c[k]->d
#define L(k) (int64_t) c[k]->L
#define T(k) (pn_dtype) c[k]->i
#define Z(k) c[k]->s
#define R(k) (pn_loss_reduction) c[k]->i
#define X(k) c[k]->n < 0 ? NULL : c[k]->ax, c[k]->n < 0 ? 0 : c[k]->n
#define S(k) c[k]->n < 0 ? NULL : c[k]->sh, c[k]->n < 0 ? 0 : c[k]->n
#define PP_SIG_CALL(code, params, ...)                                                             \
    static pn_array *call_##code(pp_sig_fn f, pp_val **c) { return ((pp_kind_##code)f)(__VA_ARGS__); }
PP_SIG_KINDS(PP_SIG_CALL)
#define PP_SIG_ENTRY(code, params, ...) {#code, call_##code},
static const struct {
    const char *code;
    pn_array *(*call)(pp_sig_fn, pp_val **);
} kinds[] = {PP_SIG_KINDS(PP_SIG_ENTRY)};

/* ───────────────────────────── compiling a row ───────────────────────────── */

static int bad_row(pp_sig *r, const char *what)
{
    PyErr_Format(PyExc_SystemError, "[sigtable] %s: %s (signature \"%s\").", r->name, what, r->sig);
    return -1;
}

/* Reads a default for parameter k of type t from s (already trimmed). */
static int parse_default(pp_sig *r, int k, int t, const char *s)
{
    r->has_dflt[k] = 1;
    if (!strcmp(s, "None")) {
        r->has_dflt[k] = 2; /* absent, as None */
        return 0;
    }
    if (!strcmp(s, "True") || !strcmp(s, "False")) {
        r->dflt_i[k] = s[0] == 'T';
        return 0;
    }
    if (!strcmp(s, "()")) {
        r->dflt_i[k] = 0;
        return 0;
    }
    if (s[0] == '\'') {
        size_t n = strlen(s);
        char *v = PyMem_Malloc(n);
        if (!v) return -1;
        memcpy(v, s + 1, n - 2);
        v[n - 2] = 0;
        r->dflt_s[k] = v; /* kept for the module's life */
        return 0;
    }
    if (t == T_DTYPE_OPT) {
        for (int d = 0; d < PN_NUM_DTYPES; d++)
            if (!strcmp(pn_dtype_name((pn_dtype)d), s)) {
                r->dflt_i[k] = d;
                return 0;
            }
        return bad_row(r, "unknown dtype default");
    }
    char *end;
    r->dflt_d[k] = strtod(s, &end);
    r->dflt_i[k] = strtoll(s, NULL, 10);
    return *end ? bad_row(r, "unreadable default") : 0;
}

/* Appends ", " (unless first) and text to the text signature ts (its length *n, of cap bytes). */
static void sig_text_add(char *ts, size_t cap, size_t *n, const char *text)
{
    int w = snprintf(ts + *n, cap - *n, "%s%s", *n && ts[*n - 1] != '(' ? ", " : "", text);
    if (w > 0) *n = *n + (size_t)w < cap ? *n + (size_t)w : cap - 1;
}

/* Whether a default's text is a Python literal, all that a __text_signature__ may hold (a
 * dtype default is not). */
static bool literal_default(const char *d)
{
    return !strcmp(d, "None") || !strcmp(d, "True") || !strcmp(d, "False") || !strcmp(d, "()") ||
           d[0] == '\'' || d[0] == '"' || d[0] == '-' || d[0] == '.' || isdigit((unsigned char)d[0]);
}

static int compile_row(pp_sig *r)
{
    char buf[512], code[PP_SIG_MAX + 1], ts[640];
    int nc = 0, posonly = 0, kwonly = 0, optional = 0, f = 0, named = 0;
    bool text_ok = true; /* every default a literal: the text signature goes in the doc */
    size_t tn = (size_t)snprintf(ts, sizeof ts, "%s(", r->name);
    if (strlen(r->sig) >= sizeof buf) return bad_row(r, "signature too long");
    strcpy(buf, r->sig);
    r->nparams = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        while (isspace((unsigned char)*tok)) tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1])) *--e = 0;
        if (!strcmp(tok, "/")) {
            posonly = r->nparams;
            sig_text_add(ts, sizeof ts, &tn, "/");
            continue;
        }
        if (!strcmp(tok, ":named")) { /* CPython's messages name the function */
            named = 1;
            continue;
        }
        if (!strcmp(tok, "*")) {
            kwonly = 1;
            if (!optional) r->fmt[f++] = '|', optional = 1;
            r->fmt[f++] = '$';
            sig_text_add(ts, sizeof ts, &tn, "*");
            continue;
        }
        int k = r->nparams++;
        if (k >= PP_SIG_MAX) return bad_row(r, "too many parameters");
        char *colon = strchr(tok, ':'), *eq = strchr(tok, '=');
        if (!colon) return bad_row(r, "a parameter without a type");
        *colon = 0;
        if (eq) *eq = 0;
        char *name = tok, *type = colon + 1;
        for (char *p = colon; p > name && isspace((unsigned char)p[-1]);) *--p = 0;
        while (isspace((unsigned char)*type)) type++;
        for (char *p = type + strlen(type); p > type && isspace((unsigned char)p[-1]);) *--p = 0;
        int t = 0;
        while (t < T_COUNT && strcmp(types[t].name, type)) t++;
        if (t == T_COUNT) return bad_row(r, "unknown type");
        r->type[k] = (unsigned char)t;
        snprintf(r->names[k], sizeof r->names[k], "%s", name);
        r->has_dflt[k] = 0;
        char param[96];
        snprintf(param, sizeof param, "%s", name);
        if (eq) {
            char *d = eq + 1;
            while (isspace((unsigned char)*d)) d++;
            snprintf(param, sizeof param, "%s=%s", name, d);
            text_ok &= literal_default(d);
            if (parse_default(r, k, t, d)) return -1;
            if (!optional) r->fmt[f++] = '|', optional = 1;
        } else if (optional && !kwonly) {
            return bad_row(r, "a required parameter after an optional one");
        }
        sig_text_add(ts, sizeof ts, &tn, param);
        if (types[t].unit == '&') r->fmt[f++] = 'O';
        r->fmt[f++] = types[t].unit;
        if (types[t].code && name[0] != '_') code[nc++] = types[t].code;
    }
    /* the doc with the text signature first (kept for the module's life, as the row) */
    size_t dl = r->doc ? strlen(r->doc) : 0;
    if (!(r->doc_sig = malloc(tn + dl + 8))) {
        PyErr_NoMemory();
        return -1;
    }
    if (text_ok) snprintf(r->doc_sig, tn + dl + 8, "%s)\n--\n\n%s", ts, r->doc ? r->doc : "");
    else snprintf(r->doc_sig, tn + dl + 8, "%s", r->doc ? r->doc : "");
    if (named) f += snprintf(r->fmt + f, sizeof r->fmt - (size_t)f, ":%s", r->name);
    r->fmt[f] = 0;
    /* all positional-only: a METH_O or METH_VARARGS function, as CPython's own */
    r->flags = posonly < r->nparams || kwonly ? METH_VARARGS | METH_KEYWORDS
               : r->nparams == 1 && !optional ? METH_O : METH_VARARGS;
    code[nc] = 0;
    for (int k = 0; k < r->nparams; k++) r->kwlist[k] = k < posonly ? "" : r->names[k];
    r->kwlist[r->nparams] = NULL;
    if (strcmp(code, r->kind)) return bad_row(r, "the signature's C kind differs from the row's");
    r->call = -1;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kinds[i].code, code)) r->call = (int)i;
    return r->call < 0 ? bad_row(r, "no such kind") : 0;
}

/* ───────────────────────────── calling ───────────────────────────── */

static int reduction_of(const char *s, int *r)
{
    if (!strcmp(s, "none")) *r = PN_REDUCTION_NONE;
    else if (!strcmp(s, "mean")) *r = PN_REDUCTION_MEAN;
    else if (!strcmp(s, "sum")) *r = PN_REDUCTION_SUM;
    else {
        PyErr_Format(PyExc_ValueError, "Invalid reduction. Must be 'none', 'mean', or 'sum' (got '%s').", s);
        return -1;
    }
    return 0;
}

/* Converts the non-array arguments (before the stream is entered). 0 or -1. */
static int convert_plain(pp_sig *r, pp_val *v)
{
    for (int k = 0; k < r->nparams; k++) {
        PyObject *o = v[k].o;
        switch (r->type[k]) {
        case T_AXES:
            if ((v[k].n = pp_axes(o, v[k].ax, PP_MAXDIM)) == -1) return -1;
            if (v[k].n == -2) v[k].n = r->has_dflt[k] ? -1 : -2; /* -2: None for a required one */
            break;
        case T_AXIS:
            if (!o) v[k].i = r->has_dflt[k] == 1 ? (int)r->dflt_i[k] : PN_ALL_AXES;
            else if (pp_axis(o, &v[k].i)) return -1;
            break;
        case T_SHAPE:
        case T_SHAPE_OPT:
            if (r->type[k] == T_SHAPE_OPT && (!o || o == Py_None)) v[k].n = -1;
            else if (!o) v[k].n = 0; /* () */
            else if ((v[k].n = pp_shape(o, v[k].sh, PP_MAXDIM, r->names[k])) < 0) return -1;
            break;
        case T_DTYPE_OPT: /* converted while parsing; None: the default */
        case T_ASTYPE:
            if (v[k].i < 0 && r->has_dflt[k] == 1) v[k].i = (int)r->dflt_i[k];
            break;
        case T_KEY:
            if (!o || o == Py_None) break;
            if (!PPArray_Check(o)) {
                PyErr_Format(PyExc_TypeError, "key must be an array, got %s.", Py_TYPE(o)->tp_name);
                return -1;
            }
            v[k].a = PPARR(o);
            break;
        case T_REDUCTION:
            if (reduction_of(v[k].s, &v[k].i)) return -1;
            break;
        case T_SIZE: v[k].L = v[k].sz; break;
        default: break;
        }
    }
    return 0;
}

/* Converts the array arguments in order into held (owned). Returns the count held, or -1 (all
 * released) with an exception. */
static int convert_arrays(pp_sig *r, pp_val *v, pn_array **held)
{
    int nh = 0;
    pn_array *first = NULL;
    for (int k = 0; k < r->nparams; k++) {
        PyObject *o = v[k].o;
        int t = r->type[k];
        if (r->names[k][0] == '_' || (t != T_ARRAY && t != T_ARRAY_OPT && t != T_WEAK &&
                                      t != T_WEAK_OPT && t != T_PAIR))
            continue;
        pn_array *x = NULL;
        if (!o || ((t == T_ARRAY_OPT || t == T_WEAK_OPT) && o == Py_None)) { /* absent: NULL */
            v[k].a = NULL;
            continue;
        }
        if (t == T_PAIR && k + 1 < r->nparams) { /* a binary op's operands: either is the scalar */
            PyObject *p = v[k + 1].o;
            pn_array *y;
            if (PPArray_Check(o) || !PPArray_Check(p)) {
                x = PPArray_Check(o) ? pp_arr_weak(o, NULL) : pp_arr(o);
                y = x ? pp_arr_weak(p, x) : NULL;
            } else {
                y = pp_arr_weak(p, NULL);
                x = y ? pp_arr_weak(o, y) : NULL;
            }
            if (x) held[nh++] = x;
            if (y) held[nh++] = y;
            if (!x || !y) goto fail;
            v[k].a = x, v[k + 1].a = y;
            if (!first) first = x;
            k++;
            continue;
        }
        x = t == T_WEAK || t == T_WEAK_OPT ? pp_arr_weak(o, first) : pp_arr(o);
        if (!x) goto fail;
        held[nh++] = v[k].a = x;
        if (!first) first = x;
    }
    return nh;
fail:
    pp_release_all(held, nh);
    return -1;
}

/* Parses args / kw into v by the row's CPython format. 0 or -1. */
static int parse(pp_sig *r, PyObject *args, PyObject *kw, pp_val *v)
{
    enum { NP = 2 * PP_SIG_MAX };
    void *p[NP];
    int np = 0;
    for (int k = 0; k < r->nparams; k++) {
        pp_val *x = &v[k];
        x->o = NULL, x->a = NULL, x->n = -1;
        x->i = r->has_dflt[k] == 2 ? -1 : (int)r->dflt_i[k];
        x->d = r->dflt_d[k], x->L = r->dflt_i[k], x->sz = (Py_ssize_t)r->dflt_i[k];
        x->s = r->dflt_s[k];
        switch (types[r->type[k]].unit) {
        case 'i': case 'p': p[np++] = &x->i; break;
        case 'd': p[np++] = &x->d; break;
        case 'L': p[np++] = &x->L; break;
        case 'n': p[np++] = &x->sz; break;
        case 's': p[np++] = &x->s; break;
        case '&': /* O&: converter, then its output */
            p[np++] = (void *)(r->type[k] == T_DTYPE ? pp_dtype_conv : pp_opt_dtype_conv);
            p[np++] = &x->i;
            break;
        default: p[np++] = &x->o; break;
        }
    }
    while (np < NP) p[np++] = NULL;
    /* The pointers travel as void * and CPython reads them back as the unit's pointer type
     * (one representation on every platform CPython supports). */
#define P12(o) p[o], p[o + 1], p[o + 2], p[o + 3], p[o + 4], p[o + 5], p[o + 6], p[o + 7], p[o + 8], \
               p[o + 9], p[o + 10], p[o + 11]
    int ok = r->flags & METH_KEYWORDS ? PyArg_ParseTupleAndKeywords(args, kw, r->fmt, r->kwlist, P12(0), P12(12))
                                      : PyArg_ParseTuple(args, r->fmt, P12(0), P12(12));
#undef P12
    return ok ? 0 : -1;
}

static PyObject *sig_call(pp_sig *r, PyObject *args, PyObject *kw)
{
    pp_val v[PP_SIG_MAX];
    if (parse(r, args, kw, v)) return NULL;
    if (convert_plain(r, v)) return NULL;
    PyObject *stream = Py_None;
    for (int k = 0; k < r->nparams; k++)
        if (r->type[k] == T_STREAM && v[k].o) stream = v[k].o;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *held[PP_SIG_MAX + 1];
    int nh = convert_arrays(r, v, held);
    if (nh < 0) {
        pp_stream_exit(pushed);
        return NULL;
    }
    pn_array *out = NULL;
    int ok = 1;
    for (int k = 0; k < r->nparams; k++)
        if (r->type[k] == T_AXES && v[k].n == -2) { /* checked after the arrays, as before */
            PyErr_Format(PyExc_TypeError, "%s() needs an axis.", r->name);
            pp_release_all(held, nh);
            pp_stream_exit(pushed);
            return NULL;
        }
    for (int k = 0; k < r->nparams; k++) /* astype: cast the first array */
        if (r->type[k] == T_ASTYPE && v[k].i >= 0)
            for (int j = 0; j < r->nparams; j++)
                if (types[r->type[j]].code == 'a' && v[j].a) {
                    pn_array *cast = pn_astype(v[j].a, (pn_dtype)v[k].i);
                    if (!cast) ok = 0;
                    else held[nh++] = v[j].a = cast;
                    break;
                }
    if (ok) {
        pp_val *c[PP_SIG_MAX];
        int nc = 0;
        for (int k = 0; k < r->nparams; k++)
            if (types[r->type[k]].code && r->names[k][0] != '_') c[nc++] = &v[k];
        out = kinds[r->call].call(r->fn, c);
    }
    pp_release_all(held, nh);
    pp_stream_exit(pushed);
    return pp_wrap(out);
}

/* METH_O: the one argument as a 1-tuple. */
static PyObject *sig_call_o(pp_sig *r, PyObject *arg)
{
    PyObject *args = PyTuple_Pack(1, arg);
    PyObject *out = args ? sig_call(r, args, NULL) : NULL;
    Py_XDECREF(args);
    return out;
}

/* The functions are ordinary builtins of their module (self is the module, as for
 * PyModule_AddFunctions): each row gets one of PP_SIG_SLOTS trampolines that knows its row. */
#define PP_SIG_SLOTS 512
static pp_sig *slots[PP_SIG_SLOTS];
static int nslots;
#define TRAMP1(n, i)                                                                               \
    static PyObject *tramp_##n(PyObject *m, PyObject *a, PyObject *k) { return sig_call(slots[i], a, k); } \
    static PyObject *tramp_o_##n(PyObject *m, PyObject *a) { return sig_call_o(slots[i], a); }
#define TRAMP2(n, i) TRAMP1(n##0, (i) * 2) TRAMP1(n##1, (i) * 2 + 1)
#define TRAMP4(n, i) TRAMP2(n##0, (i) * 2) TRAMP2(n##1, (i) * 2 + 1)
#define TRAMP8(n, i) TRAMP4(n##0, (i) * 2) TRAMP4(n##1, (i) * 2 + 1)
#define TRAMP16(n, i) TRAMP8(n##0, (i) * 2) TRAMP8(n##1, (i) * 2 + 1)
#define TRAMP32(n, i) TRAMP16(n##0, (i) * 2) TRAMP16(n##1, (i) * 2 + 1)
#define TRAMP64(n, i) TRAMP32(n##0, (i) * 2) TRAMP32(n##1, (i) * 2 + 1)
#define TRAMP128(n, i) TRAMP64(n##0, (i) * 2) TRAMP64(n##1, (i) * 2 + 1)
#define TRAMP256(n, i) TRAMP128(n##0, (i) * 2) TRAMP128(n##1, (i) * 2 + 1)
#define TRAMP512(n, i) TRAMP256(n##0, (i) * 2) TRAMP256(n##1, (i) * 2 + 1)
TRAMP512(x, 0)
#define ENTRY1(n, i) {(PyCFunction)(void (*)(void))tramp_##n, tramp_o_##n},
#define ENTRY2(n, i) ENTRY1(n##0, 0) ENTRY1(n##1, 0)
#define ENTRY4(n, i) ENTRY2(n##0, 0) ENTRY2(n##1, 0)
#define ENTRY8(n, i) ENTRY4(n##0, 0) ENTRY4(n##1, 0)
#define ENTRY16(n, i) ENTRY8(n##0, 0) ENTRY8(n##1, 0)
#define ENTRY32(n, i) ENTRY16(n##0, 0) ENTRY16(n##1, 0)
#define ENTRY64(n, i) ENTRY32(n##0, 0) ENTRY32(n##1, 0)
#define ENTRY128(n, i) ENTRY64(n##0, 0) ENTRY64(n##1, 0)
#define ENTRY256(n, i) ENTRY128(n##0, 0) ENTRY128(n##1, 0)
#define ENTRY512(n, i) ENTRY256(n##0, 0) ENTRY256(n##1, 0)
static const struct {
    PyCFunction kw, o;
} tramps[PP_SIG_SLOTS] = {ENTRY512(x, 0)};

int pp_sig_add(PyObject *m, pp_sig *rows)
{
    PyObject *modname = PyModule_GetNameObject(m);
    if (!modname) return -1;
    for (pp_sig *r = rows; r->name; r++) {
        if (compile_row(r)) goto fail;
        if (nslots == PP_SIG_SLOTS) {
            bad_row(r, "out of trampolines (raise PP_SIG_SLOTS)");
            goto fail;
        }
        slots[nslots] = r;
        r->def = (PyMethodDef){r->name, r->flags == METH_O ? tramps[nslots].o : tramps[nslots].kw, r->flags, r->doc_sig};
        nslots++;
        PyObject *fn = PyCFunction_NewEx(&r->def, m, modname);
        if (!fn || PyModule_AddObject(m, r->name, fn)) {
            Py_XDECREF(fn);
            goto fail;
        }
    }
    Py_DECREF(modname);
    return 0;
fail:
    Py_DECREF(modname);
    return -1;
}
