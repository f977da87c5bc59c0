/* trace.c — tracing a closure into a tape and replaying the tape on new inputs: the one
 * implementation behind mx.compile (compile.c) and mx.export_function (io/export.c). See
 * trace.h for the tape's form. */
#include "transforms/trace.h"

#include "io/registry.h"
#include "transforms/transforms.h"

#include <stdlib.h>
#include <string.h>

#define OOM(op) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", op)

void pnT_spec_free(pnT_spec *s)
{
    free(s->shape);
    s->shape = NULL;
}

int pnT_spec_of(pnT_spec *s, const pn_array *a, const char *op)
{
    s->dtype = a->dtype, s->ndim = a->ndim;
    s->shape = malloc(((size_t)a->ndim + 1) * sizeof *s->shape);
    if (!s->shape) return OOM(op);
    memcpy(s->shape, a->shape, (size_t)a->ndim * sizeof *s->shape);
    return 0;
}

bool pnT_spec_matches(const pnT_spec *s, const pn_array *a)
{
    if (s->dtype != a->dtype || s->ndim != a->ndim) return false;
    for (int i = 0; i < s->ndim; i++)
        if (s->shape[i] != a->shape[i]) return false;
    return true;
}

void pnT_tape_free(pnT_tape *t)
{
    for (uint32_t i = 0; t->nodes && i < t->nnode; i++) {
        pnT_op *n = &t->nodes[i];
        free(n->params);
        free(n->in);
        for (uint32_t j = 0; n->out && j < n->nout; j++) pnT_spec_free(&n->out[j]);
        free(n->out);
    }
    for (uint32_t i = 0; t->consts && i < t->nconst; i++) pnC_decref(t->consts[i]);
    free(t->nodes), free(t->res), free(t->consts);
    *t = (pnT_tape){0};
}

/* ───────────────────────────── tracing ───────────────────────────── */

typedef struct {
    pnT_tape *t;
    pnT_graph *g;
    uint32_t *base; /* per graph rec: its first output value, or UINT32_MAX */
    uint32_t cap_const;
    pnC_ptrmap cmap; /* constant index by array */
    const char *op;
} conv;

static int ref_of(conv *c, pn_array *a, pnT_ref *r)
{
    pnT_rec *rec = a->node ? pnT_graph_find(c->g, a->node) : NULL;
    if (rec && rec->tracer >= 0) {
        *r = (pnT_ref){PNT_REF_INPUT, (uint32_t)rec->tracer};
        return 0;
    }
    if (rec && rec->active) {
        *r = (pnT_ref){PNT_REF_NODE, c->base[rec - c->g->recs] + (uint32_t)a->out_index};
        return 0;
    }
    const int64_t *v = pnC_ptrmap_find(&c->cmap, a);
    if (v) {
        *r = (pnT_ref){PNT_REF_CONST, (uint32_t)*v};
        return 0;
    }
    pnT_tape *t = c->t;
    if (t->nconst == c->cap_const) {
        uint32_t cap = c->cap_const ? 2 * c->cap_const : 8;
        pn_array **q = realloc(t->consts, cap * sizeof *q);
        if (!q) return OOM(c->op);
        t->consts = q, c->cap_const = cap;
    }
    if (pnC_ptrmap_put(&c->cmap, a, t->nconst, c->op)) return -1;
    t->consts[t->nconst] = pnC_incref(a);
    *r = (pnT_ref){PNT_REF_CONST, t->nconst++};
    return 0;
}

/* The active nodes of the graph, in order, as t->nodes; the outputs as t->res. */
static int convert(conv *c, int nout, pn_array *const *outs)
{
    pnT_graph *g = c->g;
    pnT_tape *t = c->t;
    c->base = malloc(((size_t)g->nrec + 1) * sizeof *c->base);
    t->nodes = calloc((size_t)g->norder + 1, sizeof *t->nodes);
    t->res = calloc((size_t)nout + 1, sizeof *t->res);
    if (!c->base || !t->nodes || !t->res) return OOM(c->op);
    for (int64_t i = 0; i < g->nrec; i++) c->base[i] = UINT32_MAX;
    for (int64_t k = 0; k < g->norder; k++) {
        pnC_node *nd = g->recs[g->order[k]].node;
        pnT_op *n = &t->nodes[t->nnode++];
        n->prim = nd->prim;
        n->params_size = (uint32_t)nd->params_size;
        n->nin = (uint32_t)nd->nin;
        n->nout = (uint32_t)nd->nout;
        n->params = malloc(nd->params_size + 1);
        n->in = calloc((size_t)nd->nin + 1, sizeof *n->in);
        n->out = calloc((size_t)nd->nout + 1, sizeof *n->out);
        if (!n->params || !n->in || !n->out) return OOM(c->op);
        if (nd->params_size) memcpy(n->params, nd->params, nd->params_size);
        for (int i = 0; i < nd->nin; i++)
            if (ref_of(c, nd->inputs[i], &n->in[i])) return -1;
        for (int j = 0; j < nd->nout; j++) {
            pnT_spec *o = &n->out[j];
            o->dtype = nd->out_dtypes[j], o->ndim = nd->out_ndims[j];
            o->shape = malloc(((size_t)o->ndim + 1) * sizeof *o->shape);
            if (!o->shape) return OOM(c->op);
            memcpy(o->shape, nd->out_shapes[j], (size_t)o->ndim * sizeof *o->shape);
        }
        c->base[g->order[k]] = t->nvals;
        t->nvals += n->nout;
        if (n->nin > t->max_in) t->max_in = n->nin;
        if (n->nout > t->max_out) t->max_out = n->nout;
    }
    for (int j = 0; j < nout; j++)
        if (ref_of(c, outs[j], &t->res[j])) return -1;
    t->nres = (uint32_t)nout;
    return 0;
}

int pnT_tape_trace(pnT_tape *t, pn_closure *f, int nin, pn_array *const *in, const char *op)
{
    *t = (pnT_tape){.nin = (uint32_t)nin};
    pnT_graph g = {0};
    conv c = {.t = t, .g = &g, .op = op};
    pn_scope_push();
    int rc = 0, nout = 0;
    pn_array **outs = malloc((size_t)pnT_out_capacity() * sizeof *outs);
    pn_array **tr = malloc(((size_t)nin + 1) * sizeof *tr);
    if (!tr || !outs) rc = OOM(op);
    for (int i = 0; i < nin && rc == 0; i++)
        if (!(tr[i] = pnT_tracer(in[i]))) rc = -1;
    if (rc == 0) {
        pnC_trace_push();
        rc = pn_closure_call(f, nin, tr, &nout, outs);
        pnC_trace_pop();
    }
    for (int i = 0; i < nin && rc == 0; i++)
        if (tr[i]->buf) /* evaluated through the function: its graph was cut at run time */
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[%s] Attempting to eval an array that depends on the inputs while "
                              "tracing the function is not allowed (the traced graph would hold "
                              "its value).", op);
    if (rc == 0 && pnT_graph_build(&g, nin, tr, nout, outs, false))
        rc = pnC_failed() ? -1 : OOM(op);
    if (rc == 0) rc = convert(&c, nout, outs);
    for (uint32_t i = 0; i < t->nconst && rc == 0; i++) /* constants hold their data */
        rc = pnC_eval1(t->consts[i]);
    free(c.base), pnC_ptrmap_free(&c.cmap);
    pnT_graph_free(&g);
    free(tr), free(outs);
    pn_scope_pop();
    if (rc) pnT_tape_free(t);
    return rc;
}

/* ───────────────────────────── replaying ───────────────────────────── */

/* Whether p's output shapes are the broadcast of its inputs' shapes. */
static bool broadcasting_prim(const pnC_primitive *p)
{
    return (p >= unary_prims && p < unary_prims + PNK_U_COUNT) ||
           (p >= binary_prims && p < binary_prims + PNK_B_COUNT) || p == &where_prim ||
           p == &divmod_prim || p == &astype_prim || p == &stop_gradient_prim ||
           p == &pnT_tracer_prim || p == &pnC_alias_prim;
}

int pnT_infer_shapes(const pnT_op *n, pn_array *const *in, int64_t **shapes, int *ndims)
{
    if (!broadcasting_prim(n->prim)) return 0;
    int64_t tmp[PNC_MAX_NDIM];
    int nd = 0;
    for (uint32_t i = 0; i < n->nin; i++) {
        memcpy(tmp, shapes[0], (size_t)nd * sizeof *tmp);
        nd = pnC_broadcast_shapes(n->prim->name, tmp, nd, in[i]->shape, in[i]->ndim, shapes[0]);
        if (nd < 0) return -1;
    }
    for (uint32_t j = 0; j < n->nout; j++) {
        if (j) memcpy(shapes[j], shapes[0], (size_t)nd * sizeof *tmp);
        ndims[j] = nd;
    }
    return 1;
}

int pnT_tape_replay(const pnT_tape *t, pn_array *const *consts, pn_array *const *in,
                    bool reshape, pn_array **out, const char *op)
{
    if (!consts) consts = t->consts;
    size_t mo = (size_t)t->max_out + 1;
    pn_array **vals = malloc(((size_t)t->nvals + 1) * sizeof *vals);
    pn_array **ins = malloc(((size_t)t->max_in + 1) * sizeof *ins);
    pn_dtype *dts = malloc(mo * sizeof *dts);
    const int64_t **shapes = malloc(mo * sizeof *shapes);
    int64_t **own = reshape ? calloc(mo, sizeof *own) : NULL;
    int *nds = malloc(mo * sizeof *nds);
    int rc = vals && ins && dts && shapes && nds && (!reshape || own) ? 0 : OOM(op);
    for (size_t j = 0; reshape && rc == 0 && j < mo; j++)
        if (!(own[j] = malloc(PNC_MAX_NDIM * sizeof **own))) rc = OOM(op);
    uint32_t v = 0;
#define RESOLVE(r)                                                                             \
    ((r).kind == PNT_REF_INPUT ? in[(r).index]                                                 \
                               : (r).kind == PNT_REF_CONST ? consts[(r).index] : vals[(r).index])
    for (uint32_t k = 0; k < t->nnode && rc == 0; k++) {
        const pnT_op *n = &t->nodes[k];
        for (uint32_t i = 0; i < n->nin; i++) ins[i] = RESOLVE(n->in[i]);
        for (uint32_t j = 0; j < n->nout; j++)
            dts[j] = n->out[j].dtype, shapes[j] = n->out[j].shape, nds[j] = n->out[j].ndim;
        if (reshape) {
            int got = pnT_infer_shapes(n, ins, own, nds);
            if (got < 0) rc = -1;
            else if (got == 0)
                rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] The primitive %s cannot infer "
                                  "its output shapes for new input shapes (shapeless).", op,
                                  n->prim->name);
            for (uint32_t j = 0; j < n->nout; j++) shapes[j] = own[j];
        }
        if (rc == 0)
            rc = pnC_make_multi(n->prim, n->params, n->params_size, (int)n->nin, ins,
                                (int)n->nout, dts, shapes, nds, vals + v);
        v += n->nout;
    }
    for (uint32_t j = 0; j < t->nres && rc == 0; j++) out[j] = RESOLVE(t->res[j]);
#undef RESOLVE
    for (size_t j = 0; own && j < mo; j++) free(own[j]);
    free(vals), free(ins), free(dts), free(shapes), free(nds), free(own);
    return rc;
}
