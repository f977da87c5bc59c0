/* print.c — MLX's printed form of an array: "array([[1, 2],\n       [3, 4]], dtype=int32)";
 * dimensions longer than 6 show their first and last 3 entries around "...". Floats follow the
 * process-wide print options (mx.set_printoptions): precision -1 is C++'s default stream form
 * (6 significant digits), any other value fixed notation with that many decimals. */
#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define EDGE 3

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* The process-wide precision (MLX's global formatter is process-wide too). */
static atomic_int print_precision = -1;

void pn_set_print_options(pn_print_options options)
{
    atomic_store(&print_precision, options.precision);
}

pn_print_options pn_get_print_options(void)
{
    return (pn_print_options){.precision = atomic_load(&print_precision)};
}

static void format_float(strbuf *b, double v, int precision)
{
    if (isnan(v)) sb_printf(b, "nan");
    else if (isinf(v)) sb_printf(b, v > 0 ? "inf" : "-inf");
    /* A negative precision other than -1 reads as 6 decimals, as std::fixed does (and %.*f). */
    else if (precision != -1) sb_printf(b, "%.*f", precision, v);
    else sb_printf(b, "%g", v);
}

static void print_element(strbuf *b, const char *p, pn_dtype t, int prec)
{
    switch (t) {
    case PN_BOOL: sb_printf(b, *(const bool *)p ? "True" : "False"); break;
    case PN_UINT64: sb_printf(b, "%" PRIu64, *(const uint64_t *)p); break;
    case PN_INT64: sb_printf(b, "%" PRId64, *(const int64_t *)p); break;
    case PN_COMPLEX64: {
        pn_complex64 z = *(const pn_complex64 *)p;
        format_float(b, crealf(z), prec);
        sb_printf(b, cimagf(z) < 0 ? "-" : "+");
        format_float(b, fabsf(cimagf(z)), prec);
        sb_printf(b, "j");
        break;
    }
    default:
        if (pnC_is_integer(t)) sb_printf(b, "%.0f", pnC_load_f64(p, t));
        else format_float(b, pnC_load_f64(p, t), prec);
    }
}

/* Prints the subarray at element offset `off` starting at dimension dim. Iterative over the
 * last dimension, recursive over the others (depth is the rank, at most PNC_MAX_NDIM). */
static void print_sub(strbuf *b, const pn_array *a, int64_t off, int dim, int prec)
{
    const char *base = (const char *)a->buf->data;
    size_t es = pn_dtype_size(a->dtype);
    int64_t n = a->shape[dim];
    bool last = dim == a->ndim - 1;
    sb_printf(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0 && !last) sb_printf(b, "%*s", 7 + dim, "");
        if (i == EDGE && n > 2 * EDGE) {
            sb_printf(b, "...");
            i = n - EDGE - 1;
        } else if (last) {
            print_element(b, base + (off + i * a->strides[dim]) * (int64_t)es, a->dtype, prec);
        } else {
            print_sub(b, a, off + i * a->strides[dim], dim + 1, prec);
        }
        if (i != n - 1) sb_printf(b, last ? ", " : ",\n");
    }
    sb_printf(b, "]");
}

char *pn_to_string(pn_array *a)
{
    if (!pnC_inputs_ok("print", 1, &a)) return NULL;
    if (pnC_eval1(a)) return NULL;
    strbuf b = {0};
    int prec = atomic_load(&print_precision);
    sb_printf(&b, "array(");
    if (a->ndim == 0) print_element(&b, pnC_data(a), a->dtype, prec);
    else print_sub(&b, a, a->offset, 0, prec);
    sb_printf(&b, ", dtype=%s)", pn_dtype_name(a->dtype));
    if (b.oom) {
        free(b.s);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[print] Out of memory.");
    }
    return b.s;
}

void pn_free_string(char *s) { free(s); }

int pn_print(FILE *f, pn_array *a)
{
    char *s = pn_to_string(a);
    if (!s) return -1;
    fprintf(f, "%s\n", s);
    free(s);
    return 0;
}
