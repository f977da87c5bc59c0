/* sigtable.h — one table row per Python binding: the Python name, a signature string (names,
 * types, defaults, '/' and '*' markers), the C function and its C signature kind. One generic
 * parser converts the arguments and one dispatcher per kind calls the C function (sigtable.c). */
#ifndef PP_SIGTABLE_H
#define PP_SIGTABLE_H

#include "pyponte.h"

#define PP_SIG_MAX 12 /* parameters of one row */

/* The C signature kinds, one letter a parameter in the C call's order: a pn_array * (strong,
 * weak or optional array), x axes (const int *, int: NULL, 0 for None), s shape (const int64_t *,
 * int; `shape?` None gives NULL, 0), i int (and `axis`), b bool, d double, t pn_dtype, z const
 * char *, L int64_t, r pn_loss_reduction. Adding a kind: one line here (its C type and how its
 * slots become arguments: A(k), X(k), S(k), I(k), B(k), D(k), T(k), Z(k), L(k), R(k)). */
#define PP_SIG_KINDS(K)                                                                            \
    K(a, (pn_array *), A(0))                                                                       \
    K(aa, (pn_array *, pn_array *), A(0), A(1))                                                    \
    K(aaa, (pn_array *, pn_array *, pn_array *), A(0), A(1), A(2))                                 \
    K(ab, (pn_array *, bool), A(0), B(1))                                                          \
    K(ai, (pn_array *, int), A(0), I(1))                                                           \
    K(at, (pn_array *, pn_dtype), A(0), T(1))                                                      \
    K(ax, (pn_array *, const int *, int), A(0), X(1))                                              \
    K(as, (pn_array *, const int64_t *, int), A(0), S(1))                                          \
    K(aii, (pn_array *, int, int), A(0), I(1), I(2))                                               \
    K(aib, (pn_array *, int, bool), A(0), I(1), B(2))                                              \
    K(ais, (pn_array *, int, const int64_t *, int), A(0), I(1), S(2))                              \
    K(aLi, (pn_array *, int64_t, int), A(0), L(1), I(2))                                           \
    K(aiii, (pn_array *, int, int, int), A(0), I(1), I(2), I(3))                                   \
    K(aibb, (pn_array *, int, bool, bool), A(0), I(1), B(2), B(3))                                 \
    K(axb, (pn_array *, const int *, int, bool), A(0), X(1), B(2))                                 \
    K(axbi, (pn_array *, const int *, int, bool, int), A(0), X(1), B(2), I(3))                     \
    K(aab, (pn_array *, pn_array *, bool), A(0), A(1), B(2))                                       \
    K(aai, (pn_array *, pn_array *, int), A(0), A(1), I(2))                                        \
    K(aad, (pn_array *, pn_array *, double), A(0), A(1), D(2))                                     \
    K(aat, (pn_array *, pn_array *, pn_dtype), A(0), A(1), T(2))                                   \
    K(aaz, (pn_array *, pn_array *, const char *), A(0), A(1), Z(2))                               \
    K(aaai, (pn_array *, pn_array *, pn_array *, int), A(0), A(1), A(2), I(3))                     \
    K(aaad, (pn_array *, pn_array *, pn_array *, double), A(0), A(1), A(2), D(3))                  \
    K(aaddb, (pn_array *, pn_array *, double, double, bool), A(0), A(1), D(2), D(3), B(4))         \
    K(aaadd, (pn_array *, pn_array *, pn_array *, double, double), A(0), A(1), A(2), D(3), D(4))   \
    K(aaaab, (pn_array *, pn_array *, pn_array *, pn_array *, bool), A(0), A(1), A(2), A(3), B(4)) \
    K(aaiaaa, (pn_array *, pn_array *, int, pn_array *, pn_array *, pn_array *), A(0), A(1),      \
      I(2), A(3), A(4), A(5))                                                                      \
    K(ad, (pn_array *, double), A(0), D(1))                                                        \
    K(add, (pn_array *, double, double), A(0), D(1), D(2))                                         \
    K(ada, (pn_array *, double, pn_array *), A(0), D(1), A(2))                                     \
    K(aiaadb, (pn_array *, int, pn_array *, pn_array *, double, bool), A(0), I(1), A(2), A(3),    \
      D(4), B(5))                                                                                  \
    K(aidddbb, (pn_array *, int, double, double, double, bool, bool), A(0), I(1), D(2), D(3),     \
      D(4), B(5), B(6))                                                                            \
    K(st, (const int64_t *, int, pn_dtype), S(0), T(1))                                            \
    K(std, (const int64_t *, int, pn_dtype, double), S(0), T(1), D(2))                             \
    K(stda, (const int64_t *, int, pn_dtype, double, pn_array *), S(0), T(1), D(2), A(3))          \
    K(stbda, (const int64_t *, int, pn_dtype, bool, double, pn_array *), S(0), T(1), B(2), D(3),  \
      A(4))                                                                                        \
    K(stddda, (const int64_t *, int, pn_dtype, double, double, double, pn_array *), S(0), T(1),   \
      D(2), D(3), D(4), A(5))                                                                      \
    K(sat, (const int64_t *, int, pn_array *, pn_dtype), S(0), A(1), T(2))                         \
    K(Lt, (int64_t, pn_dtype), L(0), T(1))                                                         \
    K(sia, (const int64_t *, int, int, pn_array *), S(0), I(1), A(2))                              \
    K(sta, (const int64_t *, int, pn_dtype, pn_array *), S(0), T(1), A(2))                         \
    K(staaa, (const int64_t *, int, pn_dtype, pn_array *, pn_array *, pn_array *), S(0), T(1),    \
      A(2), A(3), A(4))                                                                            \
    K(stdda, (const int64_t *, int, pn_dtype, double, double, pn_array *), S(0), T(1), D(2),      \
      D(3), A(4))                                                                                  \
    K(asa, (pn_array *, const int64_t *, int, pn_array *), A(0), S(1), A(2))                       \
    K(aasta, (pn_array *, pn_array *, const int64_t *, int, pn_dtype, pn_array *), A(0), A(1),    \
      S(2), T(3), A(4))                                                                            \
    K(aar, (pn_array *, pn_array *, pn_loss_reduction), A(0), A(1), R(2))                          \
    K(aabr, (pn_array *, pn_array *, bool, pn_loss_reduction), A(0), A(1), B(2), R(3))             \
    K(aadr, (pn_array *, pn_array *, double, pn_loss_reduction), A(0), A(1), D(2), R(3))           \
    K(aair, (pn_array *, pn_array *, int, pn_loss_reduction), A(0), A(1), I(2), R(3))              \
    K(aaidr, (pn_array *, pn_array *, int, double, pn_loss_reduction), A(0), A(1), I(2), D(3),    \
      R(4))                                                                                        \
    K(aaadr, (pn_array *, pn_array *, pn_array *, double, pn_loss_reduction), A(0), A(1), A(2),   \
      D(3), R(4))                                                                                  \
    K(aaabdr, (pn_array *, pn_array *, pn_array *, bool, double, pn_loss_reduction), A(0), A(1),  \
      A(2), B(3), D(4), R(5))                                                                      \
    K(aaaidddr, (pn_array *, pn_array *, pn_array *, int, double, double, double,                 \
                 pn_loss_reduction), A(0), A(1), A(2), I(3), D(4), D(5), D(6), R(7))

/* The C function type of each kind: pp_kind_<kind>. */
#define PP_SIG_TYPEDEF(code, params, ...) typedef pn_array *(*pp_kind_##code) params;
PP_SIG_KINDS(PP_SIG_TYPEDEF)
#undef PP_SIG_TYPEDEF

typedef void (*pp_sig_fn)(void);

/* One binding. The signature string lists the parameters as `name: type` or
 * `name: type = default`, separated by commas, with `/` after the positional-only ones and `*`
 * before the keyword-only ones (as in Python). Types:
 *   array, array? (None: NULL), weak (a Python scalar becomes a weak scalar beside the first
 *   array argument), weak?, pair (two in a row: the operands of a binary op, either may be the
 *   scalar), key (a borrowed array or None), axes (an int, ints or None), axis (an int or None:
 *   all axes), shape, shape? (None: NULL), int, bool, float, long, size, str, dtype, dtype?
 *   (None: the default's dtype, else -1), astype (a dtype or None: casts the first array before
 *   the call), reduction ('none' | 'mean' | 'sum'), stream, object.
 * A parameter named `_...` is parsed and checked but not passed. A last item `:named` makes
 * CPython's messages name the function. All parameters positional-only (`/` last): a METH_O
 * (one) or METH_VARARGS function, as those are. Defaults: None, True, False,
 * numbers, 'str', () or a dtype name. Everything past `sig` is filled by pp_sig_add. */
typedef struct pp_sig {
    const char *name;
    const char *kind; /* the C signature kind, checked against sig's types */
    pp_sig_fn fn;
    const char *sig;
    const char *doc;
    /* compiled */
    int nparams, call;
    unsigned char type[PP_SIG_MAX];
    char names[PP_SIG_MAX][24];
    char *kwlist[PP_SIG_MAX + 1];
    char fmt[2 * PP_SIG_MAX + 48];
    int flags; /* METH_O, METH_VARARGS or METH_VARARGS | METH_KEYWORDS */
    long long dflt_i[PP_SIG_MAX];
    double dflt_d[PP_SIG_MAX];
    const char *dflt_s[PP_SIG_MAX];
    unsigned char has_dflt[PP_SIG_MAX];
    char *doc_sig; /* "name(params)\n--\n\n" + doc: CPython's __text_signature__ form, so
                      inspect.signature and help() show the parameters and defaults (when
                      every default is a Python literal; else the doc alone) */
    PyMethodDef def;
} pp_sig;

/* A row: PP_SIG(python name, kind, C function, signature, doc). The C function's type must be
 * the kind's (a compile-time pointer-type check). */
#define PP_SIG(name, kind, fn, sig, doc)                                                           \
    {name, #kind, (pp_sig_fn)(1 ? (fn) : (pp_kind_##kind)0), sig, doc}
#define PP_SIG_END {NULL}

/* Compiles the rows (up to the PP_SIG_END row) and adds one function per row to module m.
 * The rows must live as long as the module (static tables). 0, or -1 with SystemError naming
 * the row whose signature does not parse or does not give its kind. */
int pp_sig_add(PyObject *m, pp_sig *rows);

#endif
