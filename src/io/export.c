/* export.c — mlx.core.export_function / import_function / exporter: a function traced on
 * example inputs into its graph of primitives, written to a file in Ponte's own format
 * (layout below; not MLX's .mlxfn), and replayed node by node on new inputs when imported.
 * The reader treats the file as hostile: every count, size and reference is checked. */
#include "io/io.h"
#include "io/registry.h"
#include "transforms/trace.h"
#include "transforms/transforms.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* File layout, integers little-endian:
 *   magic "PONTEFN\0", u32 version, u32 flags (FLAG_SHAPELESS or 0), u32 metadata length,
 *   metadata bytes,
 *   u32 constant count, per constant: spec, u64 data bytes, row-major data;
 *   u32 trace count, per trace: u32 positional count, u32 keyword count, per keyword u32
 *     length + name bytes (ascending), one spec per input (positional, then keywords);
 *     u32 node count, per node: u32 name length, name, u32 params bytes, params, u32 input
 *     count, per input a ref, u32 output count, one spec per output;
 *     u32 result count, one ref per result;
 *   u64 FNV-1a hash of every byte before it.
 * spec: u32 dtype, u32 rank, i64 per extent. ref: u32 kind (REF_*), u32 index (inputs: the
 * trace's inputs; constants: the file's; node outputs: numbered in node order in the trace). */
static const char MAGIC[8] = "PONTEFN";
#define VERSION 1u
#define MAX_NAME 256     /* primitive and keyword names */
#define MAX_PARAMS 65536 /* bytes of one node's params */
#define FLAG_SHAPELESS 1u /* traces match by dtype and rank and replay at new shapes */

/* ───────────────────────────── in-memory form ───────────────────────────── */

/* One trace: its signature (positional count, keyword names, input specs) and its tape,
 * whose constant references index the file's constants (the tape holds none itself). */
typedef struct {
    uint32_t nargs, nkw;
    char **kw;     /* nkw names, ascending */
    pnT_spec *in;  /* nargs + nkw */
    pnT_tape t;
} xsig;

/* A file's contents: constants (evaluated arrays, one reference each) and traces. */
typedef struct {
    pn_array **consts;
    uint32_t nconst, cap_const;
    xsig *sigs;
    uint32_t nsig, cap_sig;
    char *metadata;
    bool shapeless;
} xfile;

static void sig_free(xsig *s)
{
    for (uint32_t i = 0; s->kw && i < s->nkw; i++) free(s->kw[i]);
    for (uint32_t i = 0; s->in && i < s->nargs + s->nkw; i++) pnT_spec_free(&s->in[i]);
    free(s->kw), free(s->in);
    pnT_tape_free(&s->t);
    *s = (xsig){0};
}

static void file_free(xfile *f)
{
    for (uint32_t i = 0; i < f->nconst; i++) pnC_decref(f->consts[i]);
    for (uint32_t i = 0; i < f->nsig; i++) sig_free(&f->sigs[i]);
    free(f->consts), free(f->sigs), free(f->metadata);
    *f = (xfile){0};
}

/* Grows *p (cap elements of size sz) to hold n. 0 or -1 with an error. */
static int grow(void **p, uint32_t *cap, uint32_t n, size_t sz, const char *op)
{
    if (n <= *cap) return 0;
    uint32_t c = *cap ? *cap * 2 : 8;
    while (c < n) c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
    *p = q, *cap = c;
    return 0;
}

/* "(2,3) float32" into buf. */
static const char *spec_str(pn_dtype t, const int64_t *shape, int ndim, char *buf, size_t n)
{
    char sh[256];
    snprintf(buf, n, "%s %s", pnC_shape_str(shape, ndim, sh, sizeof sh), pn_dtype_name(t));
    return buf;
}

/* ───────────────────────────── writing ───────────────────────────── */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->oom || n == 0) return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n) c *= 2;
        unsigned char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u64(wbuf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
    put(b, x, 8);
}

static void put_u32(wbuf *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
    put(b, x, 4);
}

static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_spec(wbuf *b, pn_dtype t, const int64_t *shape, int ndim)
{
    put_u32(b, (uint32_t)t);
    put_u32(b, (uint32_t)ndim);
    for (int i = 0; i < ndim; i++) put_u64(b, (uint64_t)shape[i]);
}

static void put_ref(wbuf *b, pnT_ref r)
{
    put_u32(b, r.kind);
    put_u32(b, r.index);
}

/* Writes the whole file (constants already evaluated). 0 or -1 with an error. */
static int file_write(const xfile *f, const char *path)
{
    wbuf b = {0};
    put(&b, MAGIC, 8);
    put_u32(&b, VERSION);
    put_u32(&b, f->shapeless ? FLAG_SHAPELESS : 0);
    put_str(&b, f->metadata ? f->metadata : "");
    put_u32(&b, f->nconst);
    int rc = 0;
    for (uint32_t i = 0; i < f->nconst && rc == 0; i++) {
        pn_array *a = f->consts[i];
        if (pnC_eval1(a)) {
            rc = -1;
            break;
        }
        pn_array *c = pnC_contiguous(a);
        if (!c) {
            rc = -1;
            break;
        }
        size_t nbytes = (size_t)a->size * pn_dtype_size(a->dtype);
        put_spec(&b, a->dtype, a->shape, a->ndim);
        put_u64(&b, nbytes);
        put(&b, pnC_data(c), nbytes);
        pnC_decref(c);
    }
    put_u32(&b, f->nsig);
    for (uint32_t i = 0; i < f->nsig && rc == 0; i++) {
        const xsig *s = &f->sigs[i];
        put_u32(&b, s->nargs);
        put_u32(&b, s->nkw);
        for (uint32_t k = 0; k < s->nkw; k++) put_str(&b, s->kw[k]);
        for (uint32_t k = 0; k < s->nargs + s->nkw; k++)
            put_spec(&b, s->in[k].dtype, s->in[k].shape, s->in[k].ndim);
        put_u32(&b, s->t.nnode);
        for (uint32_t k = 0; k < s->t.nnode; k++) {
            const pnT_op *n = &s->t.nodes[k];
            put_str(&b, n->prim->name);
            put_u32(&b, n->params_size);
            put(&b, n->params, n->params_size);
            put_u32(&b, n->nin);
            for (uint32_t j = 0; j < n->nin; j++) put_ref(&b, n->in[j]);
            put_u32(&b, n->nout);
            for (uint32_t j = 0; j < n->nout; j++)
                put_spec(&b, n->out[j].dtype, n->out[j].shape, n->out[j].ndim);
        }
        put_u32(&b, s->t.nres);
        for (uint32_t k = 0; k < s->t.nres; k++) put_ref(&b, s->t.res[k]);
    }
    if (rc == 0 && !b.oom) put_u64(&b, pnC_fnv1a(b.p, b.n, PNC_FNV_OFFSET));
    if (rc == 0 && b.oom) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[export_function] Out of memory.");
    if (rc == 0) {
        const void *parts[1] = {b.p};
        size_t sizes[1] = {b.n};
        rc = pnI_write_file(path, parts, sizes, 1);
    }
    free(b.p);
    return rc;
}

/* ───────────────────────────── tracing ───────────────────────────── */

/* Whether every node of a shapeless trace has a shape rule: the tape replayed at its own
 * input shapes through the rules (the results dropped unevaluated). 0 or -1 with an error. */
static int check_shape_rules(const pnT_tape *t, pn_array *const *in)
{
    pn_array *out[PN_MAX_OUTPUTS];
    pn_scope_push();
    int rc = pnT_tape_replay(t, NULL, in, true, out, "export_function");
    pn_scope_pop();
    return rc;
}

/* Constant indices by array, in the core's pointer map. */
static int amap_put(pnC_ptrmap *m, const pn_array *a, uint32_t v)
{
    return pnC_ptrmap_put(m, a, v, "export_function");
}

struct pn_exporter {
    char *path;
    pn_closure *f;
    bool closed;
    xfile file;
    pnC_ptrmap consts; /* the file's constants by array */
};

/* Checks that every node of the tape can be written (a registered primitive holding no
 * functions). 0 or -1 with an error. */
static int check_nodes(const pnT_tape *t)
{
    for (uint32_t k = 0; k < t->nnode; k++) {
        const pnC_primitive *p = t->nodes[k].prim;
        char why[160];
        if (p->release_params || pnR_find(p->name) != p)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[export_function] Cannot export the primitive %s: it is not "
                                "serializable (custom_function, custom_vjp and checkpoint hold "
                                "functions, which cannot be written to a file).",
                                p->name);
        if (!pnR_node_ok(p, t->nodes[k].params_size, (int)t->nodes[k].nin,
                         (int)t->nodes[k].nout, why, sizeof why))
            return pn_set_error(PN_ERR_BACKEND,
                                "[export_function] Internal error: the primitive %s does not match "
                                "the export registry (src/io/registry.c): it expects %s.",
                                p->name, why);
    }
    return 0;
}

/* The file's constant equal to a: the same view of the same buffer, or (both row-contiguous)
 * the same dtype, shape and bytes, as when one trace folds a + 0 of a captured array into a
 * constant of its own and another trace captures a itself; -1 when none. Constants are
 * values, so one copy serves both. */
static int64_t same_constant(const pn_exporter *e, const pn_array *a)
{
    for (uint32_t i = 0; a->buf && i < e->file.nconst; i++) {
        const pn_array *c = e->file.consts[i];
        if (!c->buf || c->dtype != a->dtype || c->ndim != a->ndim) continue;
        bool shape = true, strides = true;
        for (int d = 0; shape && d < a->ndim; d++) {
            shape = c->shape[d] == a->shape[d];
            strides = strides && c->strides[d] == a->strides[d];
        }
        if (!shape) continue;
        if (c->buf == a->buf && c->offset == a->offset && strides) return i;
        if (!pnC_row_contiguous(c) || !pnC_row_contiguous(a)) continue;
        const void *x = pn_data((pn_array *)c), *y = pn_data((pn_array *)a); /* host copies */
        if (!x || !y) {
            pn_clear_error(); /* not comparable: kept as a constant of its own */
            continue;
        }
        if (memcmp(x, y, pn_nbytes((pn_array *)a)) == 0) return i;
    }
    return -1;
}

/* Moves the tape's constants into the file's table (an array already there, or an equal one,
 * is shared) and renumbers the tape's constant references. 0 or -1
 * (the file may hold unused constants). */
static int adopt_consts(pn_exporter *e, pnT_tape *t)
{
    const char *op = "export_function";
    uint32_t *idx = malloc(((size_t)t->nconst + 1) * sizeof *idx);
    int rc = idx ? grow((void **)&e->file.consts, &e->file.cap_const, e->file.nconst + t->nconst,
                        sizeof *e->file.consts, op)
                 : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
    for (uint32_t i = 0; i < t->nconst && rc == 0; i++) {
        const int64_t *v = pnC_ptrmap_find(&e->consts, t->consts[i]);
        int64_t same = v ? *v : same_constant(e, t->consts[i]);
        if (same >= 0) {
            idx[i] = (uint32_t)same;
            continue;
        }
        idx[i] = e->file.nconst;
        if ((rc = amap_put(&e->consts, t->consts[i], idx[i]))) break;
        e->file.consts[e->file.nconst++] = pnC_incref(t->consts[i]);
    }
    for (uint32_t k = 0; k < t->nnode && rc == 0; k++)
        for (uint32_t i = 0; i < t->nodes[k].nin; i++)
            if (t->nodes[k].in[i].kind == PNT_REF_CONST)
                t->nodes[k].in[i].index = idx[t->nodes[k].in[i].index];
    for (uint32_t j = 0; j < t->nres && rc == 0; j++)
        if (t->res[j].kind == PNT_REF_CONST) t->res[j].index = idx[t->res[j].index];
    for (uint32_t i = 0; i < t->nconst; i++) pnC_decref(t->consts[i]);
    free(t->consts), free(idx);
    t->consts = NULL, t->nconst = 0;
    return rc;
}

/* Orders kwargs by name into order[nkw] (insertion sort: few keywords). Checks the names. */
static int kw_order(const char *op, int nkw, const char *const *names, int *order)
{
    for (int i = 0; i < nkw; i++) {
        if (!names[i] || !names[i][0] || strlen(names[i]) > MAX_NAME)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Keyword names must be non-empty "
                                "strings of at most %d bytes.", op, MAX_NAME);
        int j = i;
        while (j > 0 && strcmp(names[order[j - 1]], names[i]) > 0) order[j] = order[j - 1], j--;
        order[j] = i;
    }
    for (int i = 1; i < nkw; i++)
        if (strcmp(names[order[i - 1]], names[order[i]]) == 0)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] The keyword input \"%s\" is given "
                                "twice.", op, names[order[i]]);
    return 0;
}

/* Flattens args and kwargs (in name order) into flat[nargs + nkw] after checking them. */
static int gather_inputs(const char *op, int nargs, pn_array *const *args, int nkw,
                         const char *const *kw_names, pn_array *const *kwargs, pn_array **flat,
                         int *order)
{
    if (nargs < 0 || nkw < 0 || (nargs && !args) || (nkw && (!kw_names || !kwargs)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Bad input lists.", op);
    if (!pnC_inputs_ok(op, nargs, args) || !pnC_inputs_ok(op, nkw, kwargs)) return -1;
    if (kw_order(op, nkw, kw_names, order)) return -1;
    for (int i = 0; i < nargs; i++) flat[i] = args[i];
    for (int i = 0; i < nkw; i++) flat[nargs + i] = kwargs[order[i]];
    return 0;
}

/* Traces e->f on the inputs into a new trace of e->file. 0 or -1 with an error (the file is
 * unchanged then). */
static int trace(pn_exporter *e, int nargs, pn_array *const *args, int nkw,
                 const char *const *kw_names, pn_array *const *kwargs)
{
    const char *op = "export_function";
    int nin = nargs + nkw;
    pn_array **flat = malloc(((size_t)nin + 1) * sizeof *flat);
    int *order = malloc(((size_t)nkw + 1) * sizeof *order);
    xsig s = {0};
    int rc = flat && order ? 0 : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
    if (rc == 0) rc = gather_inputs(op, nargs, args, nkw, kw_names, kwargs, flat, order);
    if (rc == 0) { /* the signature */
        s.nargs = (uint32_t)nargs, s.nkw = (uint32_t)nkw;
        s.kw = calloc((size_t)nkw + 1, sizeof *s.kw);
        s.in = calloc((size_t)nin + 1, sizeof *s.in);
        if (!s.kw || !s.in) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
        for (int i = 0; i < nkw && rc == 0; i++)
            if (!(s.kw[i] = strdup(kw_names[order[i]])))
                rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
        for (int i = 0; i < nin && rc == 0; i++) rc = pnT_spec_of(&s.in[i], flat[i], op);
    }
    if (rc) {
        free(flat), free(order), sig_free(&s);
        return -1;
    }
    if (rc == 0) rc = pnT_tape_trace(&s.t, e->f, nin, flat, op);
    if (rc == 0) rc = check_nodes(&s.t);
    if (rc == 0 && e->file.shapeless) rc = check_shape_rules(&s.t, flat);
    if (rc == 0)
        rc = grow((void **)&e->file.sigs, &e->file.cap_sig, e->file.nsig + 1, sizeof *e->file.sigs, op);
    if (rc == 0) rc = adopt_consts(e, &s.t);
    if (rc == 0) {
        e->file.sigs[e->file.nsig++] = s;
        s = (xsig){0};
    }
    sig_free(&s);
    free(flat), free(order);
    return rc;
}

/* ───────────────────────────── public: exporting ───────────────────────────── */

/* An exporter; write_now: create the file at once (mx.exporter), else only after the first
 * successful trace (export_function leaves an existing file alone when tracing fails). */
static pn_exporter *exporter_new(const char *path, pn_closure *f, bool shapeless,
                                 const char *metadata, bool write_now)
{
    if (!path || !f)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[export_function] NULL path or function.");
    if (metadata && strlen(metadata) > UINT32_MAX - 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[export_function] The metadata is too long.");
    pn_exporter *e = calloc(1, sizeof *e);
    if (e) e->path = strdup(path);
    if (e && metadata) e->file.metadata = strdup(metadata);
    if (!e || !e->path || (metadata && !e->file.metadata)) {
        if (e) free(e->path), free(e->file.metadata);
        free(e);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[export_function] Out of memory.");
    }
    e->f = pn_closure_retain(f);
    e->file.shapeless = shapeless;
    if (write_now && file_write(&e->file, e->path)) { /* a bad path fails here */
        pn_exporter_free(e);
        return NULL;
    }
    return e;
}

pn_exporter *pn_exporter_new(const char *path, pn_closure *f, bool shapeless, const char *metadata)
{
    return exporter_new(path, f, shapeless, metadata, true);
}

int pn_exporter_call(pn_exporter *e, int nargs, pn_array *const *args, int nkw,
                     const char *const *kw_names, pn_array *const *kwargs)
{
    if (!e) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[export_function] NULL exporter.");
    if (e->closed)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[export_function] Attempting to write after exporting is closed.");
    if (nargs < 0 || nkw < 0 || nargs + nkw > (1 << 20))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[export_function] Bad input counts.");
    if (trace(e, nargs, args, nkw, kw_names, kwargs)) return -1;
    return file_write(&e->file, e->path);
}

int pn_exporter_close(pn_exporter *e)
{
    if (e) e->closed = true;
    return 0;
}

void pn_exporter_free(pn_exporter *e)
{
    if (!e) return;
    file_free(&e->file);
    pnC_ptrmap_free(&e->consts);
    pn_closure_release(e->f);
    free(e->path);
    free(e);
}

int pn_export_function(const char *path, pn_closure *f, int nargs, pn_array *const *args, int nkw,
                       const char *const *kw_names, pn_array *const *kwargs, bool shapeless,
                       const char *metadata)
{
    pn_exporter *e = exporter_new(path, f, shapeless, metadata, false);
    if (!e) return -1;
    int rc = pn_exporter_call(e, nargs, args, nkw, kw_names, kwargs);
    pn_exporter_free(e);
    return rc;
}

/* ───────────────────────────── reading ───────────────────────────── */

typedef struct {
    const unsigned char *p;
    size_t n, pos;
    const char *path;
} rbuf;

#define BAD(r, ...) bad(r, __VA_ARGS__)

static int bad(const rbuf *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const rbuf *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pn_set_error(PN_ERR_IO, "[import_function] Malformed function file %s: %s.", r->path, msg);
}

static int get(rbuf *r, void *dst, size_t n, const char *what)
{
    if (n > r->n - r->pos) return BAD(r, "truncated (reading %s at byte %zu)", what, r->pos);
    if (dst && n) memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

static int get_u32(rbuf *r, uint32_t *v, const char *what)
{
    unsigned char x[4] = {0};
    if (get(r, x, 4, what)) return -1;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return 0;
}

static int get_u64(rbuf *r, uint64_t *v, const char *what)
{
    unsigned char x[8] = {0};
    if (get(r, x, 8, what)) return -1;
    *v = 0;
    for (int i = 7; i >= 0; i--) *v = *v << 8 | x[i];
    return 0;
}

/* A count of items of at least min_bytes each that must fit in what is left. */
static int get_count(rbuf *r, uint32_t *n, size_t min_bytes, const char *what)
{
    if (get_u32(r, n, what)) return -1;
    if ((uint64_t)*n * min_bytes > r->n - r->pos)
        return BAD(r, "%s %" PRIu32 " is larger than the rest of the file", what, *n);
    return 0;
}

/* A string of at most max bytes without NUL, malloc'd. */
static int get_str(rbuf *r, char **out, uint32_t max, const char *what)
{
    uint32_t n;
    if (get_count(r, &n, 1, what)) return -1;
    if (n > max) return BAD(r, "%s has %" PRIu32 " bytes (at most %" PRIu32 ")", what, n, max);
    if (memchr(r->p + r->pos, 0, n)) return BAD(r, "%s holds a NUL byte", what);
    char *s = malloc((size_t)n + 1);
    if (!s) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    memcpy(s, r->p + r->pos, n);
    s[n] = 0;
    r->pos += n;
    *out = s;
    return 0;
}

static int get_spec(rbuf *r, pnT_spec *s, const char *what)
{
    uint32_t t, nd;
    if (get_u32(r, &t, what) || get_u32(r, &nd, what)) return -1;
    if (t >= PN_NUM_DTYPES) return BAD(r, "%s has an unknown dtype code %" PRIu32, what, t);
    if (nd > PNC_MAX_NDIM) return BAD(r, "%s has rank %" PRIu32 " (at most %d)", what, nd, PNC_MAX_NDIM);
    s->dtype = (pn_dtype)t, s->ndim = (int)nd;
    if (!(s->shape = malloc(((size_t)nd + 1) * sizeof *s->shape)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    int64_t size = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(r, &d, what)) return -1;
        if (d > (uint64_t)INT64_MAX || (d && size > (INT64_MAX / 16) / (int64_t)d))
            return BAD(r, "%s has an extent out of range", what);
        s->shape[i] = (int64_t)d;
        size *= (int64_t)d;
    }
    return 0;
}

/* A reference in a trace with nin inputs, where nvals node outputs are defined so far. */
static int get_ref(rbuf *r, pnT_ref *x, uint32_t nin, uint32_t nconst, uint32_t nvals, const char *what)
{
    if (get_u32(r, &x->kind, what) || get_u32(r, &x->index, what)) return -1;
    uint32_t lim = x->kind == PNT_REF_INPUT ? nin : x->kind == PNT_REF_CONST ? nconst : nvals;
    if (x->kind > PNT_REF_NODE) return BAD(r, "%s has an unknown kind %" PRIu32, what, x->kind);
    if (x->index >= lim)
        return BAD(r, "%s refers to %s %" PRIu32 " of %" PRIu32 " (out of range)", what,
                   x->kind == PNT_REF_INPUT ? "input" : x->kind == PNT_REF_CONST ? "constant"
                                                                        : "earlier node output",
                   x->index, lim);
    return 0;
}

static int read_sig(rbuf *r, xsig *s, uint32_t nconst, uint32_t si)
{
    char what[96];
    snprintf(what, sizeof what, "trace %" PRIu32, si);
    if (get_u32(r, &s->nargs, what) || get_u32(r, &s->nkw, what)) return -1;
    uint64_t nin64 = (uint64_t)s->nargs + s->nkw;
    if (nin64 * 8 > r->n - r->pos) return BAD(r, "%s: %" PRIu64 " inputs do not fit in the file", what, nin64);
    uint32_t nin = (uint32_t)nin64;
    s->t.nin = nin;
    s->kw = calloc((size_t)s->nkw + 1, sizeof *s->kw);
    s->in = calloc((size_t)nin + 1, sizeof *s->in);
    if (!s->kw || !s->in) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    for (uint32_t k = 0; k < s->nkw; k++) {
        if (get_str(r, &s->kw[k], MAX_NAME, "a keyword name")) return -1;
        if (!s->kw[k][0] || (k && strcmp(s->kw[k - 1], s->kw[k]) >= 0))
            return BAD(r, "%s: keyword names must be non-empty, distinct and ascending", what);
    }
    for (uint32_t k = 0; k < nin; k++)
        if (get_spec(r, &s->in[k], "an input spec")) return -1;
    uint32_t nnode;
    if (get_count(r, &nnode, 16, "the node count")) return -1;
    if (!(s->t.nodes = calloc((size_t)nnode + 1, sizeof *s->t.nodes)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    for (uint32_t k = 0; k < nnode; k++) {
        pnT_op *n = &s->t.nodes[k];
        s->t.nnode = k + 1;
        char *name = NULL;
        if (get_str(r, &name, MAX_NAME, "a primitive name")) return -1;
        n->prim = pnR_find(name);
        if (!n->prim) {
            BAD(r, "%s, node %" PRIu32 ": unknown primitive \"%s\"", what, k, name);
            free(name);
            return -1;
        }
        free(name);
        if (get_count(r, &n->params_size, 1, "a params size")) return -1;
        if (n->params_size > MAX_PARAMS)
            return BAD(r, "%s, node %" PRIu32 " (%s): %" PRIu32 " bytes of params", what, k,
                       n->prim->name, n->params_size);
        if (!(n->params = malloc((size_t)n->params_size + 1)))
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
        if (get(r, n->params, n->params_size, "params")) return -1;
        if (get_count(r, &n->nin, 8, "an input count")) return -1;
        if (!(n->in = calloc((size_t)n->nin + 1, sizeof *n->in)))
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
        for (uint32_t j = 0; j < n->nin; j++)
            if (get_ref(r, &n->in[j], nin, nconst, s->t.nvals, "a node input")) return -1;
        if (get_count(r, &n->nout, 8, "an output count")) return -1;
        if (n->nout > INT32_MAX / 2 || n->nin > INT32_MAX / 2)
            return BAD(r, "%s, node %" PRIu32 ": %" PRIu32 " inputs, %" PRIu32 " outputs", what,
                       k, n->nin, n->nout);
        char why[160];
        if (!pnR_node_ok(n->prim, n->params_size, (int)n->nin, (int)n->nout, why, sizeof why))
            return BAD(r, "%s, node %" PRIu32 ": the primitive %s takes %s", what, k,
                       n->prim->name, why);
        if (!(n->out = calloc((size_t)n->nout + 1, sizeof *n->out)))
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
        for (uint32_t j = 0; j < n->nout; j++)
            if (get_spec(r, &n->out[j], "an output spec")) return -1;
        if (n->nout > UINT32_MAX - s->t.nvals) return BAD(r, "%s: too many node outputs", what);
        s->t.nvals += n->nout;
        if (n->nin > s->t.max_in) s->t.max_in = n->nin;
        if (n->nout > s->t.max_out) s->t.max_out = n->nout;
    }
    if (get_count(r, &s->t.nres, 8, "the result count")) return -1;
    if (s->t.nres > PN_MAX_OUTPUTS)
        return BAD(r, "%s returns %" PRIu32 " arrays (at most %d)", what, s->t.nres, PN_MAX_OUTPUTS);
    if (!(s->t.res = calloc((size_t)s->t.nres + 1, sizeof *s->t.res)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    for (uint32_t j = 0; j < s->t.nres; j++)
        if (get_ref(r, &s->t.res[j], nin, nconst, s->t.nvals, "a result")) return -1;
    return 0;
}

static int file_read(xfile *f, const unsigned char *data, size_t size, const char *path)
{
    rbuf r = {data, size, 0, path};
    char magic[8];
    uint32_t version, flags;
    if (get(&r, magic, 8, "the magic") || memcmp(magic, MAGIC, 8))
        return pn_set_error(PN_ERR_IO, "[import_function] %s is not a Ponte function file (wrong "
                            "magic; Ponte does not read MLX's .mlxfn files).", path);
    if (get_u32(&r, &version, "the version") || get_u32(&r, &flags, "the flags")) return -1;
    if (version != VERSION)
        return pn_set_error(PN_ERR_IO, "[import_function] %s has format version %" PRIu32
                            " (this Ponte reads version %u).", path, version, VERSION);
    if (size < r.pos + 8) return BAD(&r, "truncated (no checksum)");
    uint64_t want = 0;
    for (int i = 7; i >= 0; i--) want = want << 8 | data[size - 8 + (size_t)i];
    if (pnC_fnv1a(data, size - 8, PNC_FNV_OFFSET) != want) return BAD(&r, "checksum mismatch (corrupt or truncated)");
    r.n = size - 8; /* the checksum is not content */
    if (flags & ~FLAG_SHAPELESS) return BAD(&r, "unknown flags 0x%" PRIx32, flags);
    f->shapeless = flags & FLAG_SHAPELESS;
    if (get_str(&r, &f->metadata, UINT32_MAX, "the metadata")) return -1;
    uint32_t nconst;
    if (get_count(&r, &nconst, 16, "the constant count")) return -1;
    if (!(f->consts = calloc((size_t)nconst + 1, sizeof *f->consts)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    for (uint32_t i = 0; i < nconst; i++) {
        pnT_spec s = {0};
        uint64_t nbytes;
        int rc = get_spec(&r, &s, "a constant's spec") || get_u64(&r, &nbytes, "a constant's size");
        uint64_t want_bytes = rc ? 0 : (uint64_t)pnC_shape_size(s.shape, s.ndim) * pn_dtype_size(s.dtype);
        char sb[320];
        if (rc == 0 && nbytes != want_bytes)
            rc = BAD(&r, "constant %" PRIu32 " has %" PRIu64 " bytes of data for %s (expected %" PRIu64 ")",
                     i, nbytes, spec_str(s.dtype, s.shape, s.ndim, sb, sizeof sb), want_bytes);
        if (rc == 0 && nbytes > r.n - r.pos) rc = BAD(&r, "truncated (constant %" PRIu32 "'s data)", i);
        pn_array *a = rc == 0 ? pnC_new_temp(s.dtype, s.shape, s.ndim) : NULL;
        if (rc == 0 && !a) rc = -1;
        if (a) {
            if (nbytes) memcpy(pnC_data(a), r.p + r.pos, (size_t)nbytes);
            r.pos += (size_t)nbytes;
            f->consts[f->nconst++] = a;
        }
        pnT_spec_free(&s);
        if (rc) return -1;
    }
    uint32_t nsig;
    if (get_count(&r, &nsig, 12, "the trace count")) return -1;
    if (!(f->sigs = calloc((size_t)nsig + 1, sizeof *f->sigs)))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    for (uint32_t i = 0; i < nsig; i++) {
        f->nsig = i + 1;
        if (read_sig(&r, &f->sigs[i], f->nconst, i)) return -1;
    }
    if (r.pos != r.n) return BAD(&r, "%zu unexpected bytes after the last trace", r.n - r.pos);
    return 0;
}

/* ───────────────────────────── public: importing ───────────────────────────── */

struct pn_imported_function {
    atomic_int refs;
    xfile file;
};

static void imported_release(pn_imported_function *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1) return;
    file_free(&f->file);
    free(f);
}

pn_imported_function *pn_import_function(const char *path)
{
    if (!path) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[import_function] NULL path.");
    size_t size = 0;
    unsigned char *data = pnI_read_file(path, &size);
    if (!data) return NULL;
    pn_imported_function *f = calloc(1, sizeof *f);
    if (!f) {
        free(data);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[import_function] Out of memory.");
    }
    atomic_init(&f->refs, 1);
    int rc = file_read(&f->file, data, size, path);
    free(data);
    if (rc) {
        imported_release(f);
        return NULL;
    }
    return f;
}

void pn_imported_function_free(pn_imported_function *f) { imported_release(f); }

const char *pn_imported_function_metadata(const pn_imported_function *f)
{
    return f && f->file.metadata ? f->file.metadata : "";
}

/* Builds the trace's graph on the inputs, in the current scope: results to out (at new shapes
 * through the shape rules when the file is shapeless and a shape differs). 0 or -1. */
static int replay(const xfile *f, const xsig *s, pn_array *const *in, int *nout, pn_array **out)
{
    bool reshape = false;
    for (uint32_t i = 0; f->shapeless && i < s->nargs + s->nkw && !reshape; i++)
        reshape = !pnT_spec_matches(&s->in[i], in[i]);
    pnT_tape t = s->t;
    t.in = s->in; /* the traced shapes the rules compare with (a read tape has none) */
    if (pnT_tape_replay(&t, f->consts, in, reshape, out, "import_function")) return -1;
    *nout = (int)s->t.nres;
    return 0;
}

/* Whether the n inputs flat fit trace s: the same dtypes and shapes (shapeless: ranks). */
static bool sig_matches(const xsig *s, bool shapeless, int n, pn_array *const *flat)
{
    if ((uint64_t)s->nargs + s->nkw != (uint64_t)n) return false;
    for (int i = 0; i < n; i++) {
        const pnT_spec *p = &s->in[i];
        if (shapeless ? p->dtype != flat[i]->dtype || p->ndim != flat[i]->ndim
                      : !pnT_spec_matches(p, flat[i]))
            return false;
    }
    return true;
}

/* The error listing the file's traces and the inputs given (names: NULL for the closure). */
static int no_match(const xfile *f, int nargs, int nkw, const char *const *names,
                    pn_array *const *flat)
{
    char msg[3072], sb[320];
    size_t k = 0;
#define ADD(...) (k += (size_t)snprintf(msg + (k < sizeof msg ? k : sizeof msg - 1), k < sizeof msg ? sizeof msg - k : 1, __VA_ARGS__))
    ADD("[import_function::call] No imported function matches the given positional and "
        "keyword arguments. The file holds:");
    for (uint32_t i = 0; i < f->nsig && k < sizeof msg; i++) {
        const xsig *s = &f->sigs[i];
        ADD("\n %" PRIu32 ". %" PRIu32 " positional and %" PRIu32 " keyword inputs:", i + 1,
            s->nargs, s->nkw);
        for (uint32_t j = 0; j < s->nargs + s->nkw; j++) {
            const pnT_spec *p = &s->in[j];
            if (j < s->nargs) ADD(" %" PRIu32 ": ", j + 1);
            else ADD(" \"%s\": ", s->kw[j - s->nargs]);
            ADD("%s%s", spec_str(p->dtype, p->shape, p->ndim, sb, sizeof sb),
                j + 1 < s->nargs + s->nkw ? "," : "");
        }
    }
    if (f->nsig == 0) ADD(" no traces.");
    ADD("\nCalled with %d positional and %d keyword inputs:", nargs, nkw);
    for (int j = 0; j < nargs + nkw; j++) {
        if (j < nargs || !names) ADD(" %d: ", j + 1);
        else ADD(" \"%s\": ", names[j - nargs]);
        ADD("%s%s", spec_str(flat[j]->dtype, flat[j]->shape, flat[j]->ndim, sb, sizeof sb),
            j + 1 < nargs + nkw ? "," : "");
    }
#undef ADD
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "%s", msg);
}

int pn_imported_function_call(pn_imported_function *f, int nargs, pn_array *const *args, int nkw,
                              const char *const *kw_names, pn_array *const *kwargs, int *nout,
                              pn_array **out)
{
    const char *op = "import_function::call";
    if (nout) *nout = 0;
    if (!f || !nout || !out || nargs < 0 || nkw < 0 || nargs + nkw > (1 << 20))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Bad arguments.", op);
    int nin = nargs + nkw, rc = 0;
    pn_array **flat = malloc(((size_t)nin + 1) * sizeof *flat);
    int *order = malloc(((size_t)nkw + 1) * sizeof *order);
    const char **names = malloc(((size_t)nkw + 1) * sizeof *names);
    if (!flat || !order || !names) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op);
    if (rc == 0) rc = gather_inputs(op, nargs, args, nkw, kw_names, kwargs, flat, order);
    for (int i = 0; i < nkw && rc == 0; i++) names[i] = kw_names[order[i]];
    const xsig *s = NULL;
    for (uint32_t i = 0; i < f->file.nsig && rc == 0 && !s; i++) {
        const xsig *c = &f->file.sigs[i];
        bool ok = c->nargs == (uint32_t)nargs && c->nkw == (uint32_t)nkw &&
                  sig_matches(c, f->file.shapeless, nin, flat);
        for (int j = 0; ok && j < nkw; j++) ok = strcmp(c->kw[j], names[j]) == 0;
        if (ok) s = c;
    }
    if (rc == 0 && !s) rc = no_match(&f->file, nargs, nkw, names, flat);
    if (rc == 0) {
        pn_scope_push();
        int n = 0;
        if (replay(&f->file, s, flat, &n, out)) rc = pnT_scope_fail(out, (int)s->t.nres);
        else if ((rc = pnT_scope_keep(out, n)) == 0) *nout = n;
    }
    free(flat), free(order), free(names);
    return rc;
}

static int imported_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_imported_function *f = ctx;
    for (uint32_t i = 0; i < f->file.nsig; i++)
        if (sig_matches(&f->file.sigs[i], f->file.shapeless, nin, in)) return replay(&f->file, &f->file.sigs[i], in, nout, out);
    return no_match(&f->file, nin, 0, NULL, in);
}

static void imported_destroy(void *ctx) { imported_release(ctx); }

pn_closure *pn_imported_function_closure(pn_imported_function *f)
{
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[import_function] NULL function.");
    atomic_fetch_add(&f->refs, 1);
    return pn_closure_new(imported_fn, f, imported_destroy);
}
