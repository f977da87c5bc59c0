/* linalg_decomp.c — mlx.core.linalg's decompositions in ponte.core.linalg: svd, eigh,
 * eigvalsh, eig, eigvals, lu, lu_factor and pinv over pn_linalg_* (src/ops/linalg_decomp.c),
 * added to the linalg submodule that ops.c creates. Tuples as MLX returns them. */
#include "pyponte.h"

#include <string.h>

#define VK METH_VARARGS | METH_KEYWORDS
#define FN(name) static PyObject *py_##name(PyObject *m, PyObject *args, PyObject *kw)
#define KW(...) static char *kwlist[] = {__VA_ARGS__, NULL}
#define PARSE(fmt, ...) if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, __VA_ARGS__)) return NULL

/* One call's array argument and stream: call_enter converts `ao` and enters `stream` (None:
 * the default), call_exit releases and leaves. */
typedef struct call {
    pn_array *a;
    int pushed;
} call;

static int call_enter(call *c, PyObject *ao, PyObject *stream)
{
    c->a = NULL;
    c->pushed = pp_stream_enter(stream);
    if (c->pushed < 0) return -1;
    if (!(c->a = pp_arr(ao))) {
        pp_stream_exit(c->pushed);
        return -1;
    }
    return 0;
}

static void call_exit(call *c)
{
    pn_release(c->a);
    pp_stream_exit(c->pushed);
}

/* A tuple of the n results of a call that returned rc (all wrapped or none). */
static PyObject *tuple_of(pn_array **r, int n, int rc)
{
    if (rc) return pp_raise();
    PyObject *t = PyTuple_New(n);
    for (int i = 0; i < n; i++) {
        PyObject *x = t ? pp_wrap(r[i]) : (pn_release(r[i]), NULL);
        if (t && !x) {
            for (int j = i + 1; j < n; j++) pn_release(r[j]);
            Py_CLEAR(t);
        }
        if (t) PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

/* UPLO ("L" or "U") as a char; the C function reports other values with MLX's wording. */
static char uplo_of(const char *s) { return s && strlen(s) == 1 ? s[0] : '?'; }

FN(svd)
{
    KW("a", "compute_uv", "stream");
    PyObject *ao, *stream = Py_None;
    int uv = 1;
    PARSE("O|p$O", &ao, &uv, &stream);
    call c;
    if (call_enter(&c, ao, stream)) return NULL;
    pn_array *out[3] = {NULL, NULL, NULL};
    int rc = pn_linalg_svd(c.a, uv, out);
    call_exit(&c);
    if (!uv) return rc ? pp_raise() : pp_wrap(out[0]);
    return tuple_of(out, 3, rc);
}

static PyObject *eigh_common(PyObject *args, PyObject *kw, bool vectors)
{
    KW("a", "UPLO", "stream");
    PyObject *ao, *stream = Py_None;
    const char *us = "L";
    PARSE("O|s$O", &ao, &us, &stream);
    char uplo = uplo_of(us);
    call c;
    if (call_enter(&c, ao, stream)) return NULL;
    pn_array *out[2] = {NULL, NULL};
    int rc;
    if (vectors) rc = pn_linalg_eigh(c.a, uplo, &out[0], &out[1]);
    else rc = (out[0] = pn_linalg_eigvalsh(c.a, uplo)) ? 0 : -1;
    call_exit(&c);
    if (!vectors) return rc ? pp_raise() : pp_wrap(out[0]);
    return tuple_of(out, 2, rc);
}
FN(eigh) { return eigh_common(args, kw, true); }
FN(eigvalsh) { return eigh_common(args, kw, false); }

/* Functions of one matrix with tuple results: eig (2), lu (3), lu_factor (2); n == 1 for the
 * single-array ones (eigvals, pinv). */
typedef enum { D_EIG, D_EIGVALS, D_LU, D_LU_FACTOR, D_PINV } decomp_kind;

static PyObject *one_matrix(PyObject *args, PyObject *kw, decomp_kind k)
{
    KW("a", "stream");
    PyObject *ao, *stream = Py_None;
    PARSE("O|$O", &ao, &stream);
    call c;
    if (call_enter(&c, ao, stream)) return NULL;
    pn_array *out[3] = {NULL, NULL, NULL};
    int rc = -1, n = 1;
    switch (k) {
    case D_EIG: rc = pn_linalg_eig(c.a, &out[0], &out[1]), n = 2; break;
    case D_EIGVALS: rc = (out[0] = pn_linalg_eigvals(c.a)) ? 0 : -1; break;
    case D_LU: rc = pn_linalg_lu(c.a, &out[0], &out[1], &out[2]), n = 3; break;
    case D_LU_FACTOR: rc = pn_linalg_lu_factor(c.a, &out[0], &out[1]), n = 2; break;
    case D_PINV: rc = (out[0] = pn_linalg_pinv(c.a)) ? 0 : -1; break;
    }
    call_exit(&c);
    if (n == 1) return rc ? pp_raise() : pp_wrap(out[0]);
    return tuple_of(out, n, rc);
}
FN(eig) { return one_matrix(args, kw, D_EIG); }
FN(eigvals) { return one_matrix(args, kw, D_EIGVALS); }
FN(lu) { return one_matrix(args, kw, D_LU); }
FN(lu_factor) { return one_matrix(args, kw, D_LU_FACTOR); }
FN(pinv) { return one_matrix(args, kw, D_PINV); }

/* linalg.slogdet(a, *, stream=None): (sign, logabsdet). */
static PyObject *py_slogdet(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"a", "stream", NULL};
    PyObject *ao, *stream = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:slogdet", kwlist, &ao, &stream)) return NULL;
    int pushed = pp_stream_enter(stream);
    if (pushed < 0) return NULL;
    pn_array *a = pp_arr(ao), *s = NULL, *l = NULL;
    int rc = a ? pn_linalg_slogdet(a, &s, &l) : -1;
    pn_release(a);
    pp_stream_exit(pushed);
    if (rc) return PyErr_Occurred() ? NULL : pp_raise();
    PyObject *so = pp_wrap(s), *lo = so ? pp_wrap(l) : (pn_release(l), NULL);
    PyObject *t = so && lo ? PyTuple_Pack(2, so, lo) : NULL;
    Py_XDECREF(so);
    Py_XDECREF(lo);
    return t;
}

#define DEF(name, doc) {#name, (PyCFunction)(void (*)(void))py_##name, VK, doc},
static PyMethodDef decomp_methods[] = {
    DEF(svd, "svd(a, compute_uv=True, *, stream=None): (U, S, Vt), or S alone.")
    DEF(eigh, "eigh(a, UPLO='L', *, stream=None): (eigenvalues, eigenvectors) of a symmetric matrix.")
    DEF(eigvalsh, "eigvalsh(a, UPLO='L', *, stream=None): eigenvalues of a symmetric matrix.")
    DEF(eig, "eig(a, *, stream=None): complex (eigenvalues, eigenvectors).")
    DEF(eigvals, "eigvals(a, *, stream=None): complex eigenvalues.")
    DEF(lu, "lu(a, *, stream=None): (p, L, U) with a = L[p] @ U.")
    DEF(lu_factor, "lu_factor(a, *, stream=None): (LU, pivots).")
    DEF(pinv, "pinv(a, *, stream=None): the Moore-Penrose pseudo-inverse.")
    DEF(slogdet, "slogdet(a, *, stream=None): (sign, logabsdet) of the determinant of square matrices.")
    {NULL},
};

/* Adds the decompositions to m.linalg (created by pp_init_ops, which must run first). */
int pp_init_linalg_decomp(PyObject *m)
{
    PyObject *linalg = PyObject_GetAttrString(m, "linalg");
    if (!linalg) return -1;
    int rc = PyModule_AddFunctions(linalg, decomp_methods);
    Py_DECREF(linalg);
    return rc;
}
