/* trace.c — tracing a closure into a tape and replaying the tape on new inputs: the one
 * implementation behind mx.compile (compile.c) and mx.export_function (io/export.c). See
 * trace.h for the tape's form. */
#include "transforms/trace.h"

#include "backend/cpu/reduce.h"
#include "backend/cpu/sort.h"
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
        if (n->params) pnC_params_dropped(n->prim, n->params);
        free(n->params);
        free(n->in);
        for (uint32_t j = 0; n->out && j < n->nout; j++) pnT_spec_free(&n->out[j]);
        free(n->out);
    }
    for (uint32_t i = 0; t->consts && i < t->nconst; i++) pnC_decref(t->consts[i]);
    for (uint32_t i = 0; t->in && i < t->nin; i++) pnT_spec_free(&t->in[i]);
    free(t->nodes), free(t->res), free(t->consts), free(t->in);
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
        if (n->params) { /* copied at once: a trace freed early releases what it holds */
            memcpy(n->params, nd->params, nd->params_size);
            pnC_params_copied(n->prim, n->params);
        }
        n->in = calloc((size_t)nd->nin + 1, sizeof *n->in);
        n->out = calloc((size_t)nd->nout + 1, sizeof *n->out);
        if (!n->params || !n->in || !n->out) return OOM(c->op);
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

static int check_captured(const pnT_tape *t, int nin, pn_array *const *in, const char *op);

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
    /* inside another transformation the caller decides (compile falls back to running f when
     * the trace froze arrays of the enclosing transformation) */
    if (rc == 0 && !pnC_tracing()) rc = check_captured(t, nin, in, op);
    if (rc == 0 && !(t->in = calloc((size_t)nin + 1, sizeof *t->in))) rc = OOM(op);
    for (int i = 0; i < nin && rc == 0; i++) rc = pnT_spec_of(&t->in[i], in[i], op);
    for (uint32_t i = 0; i < t->nconst && rc == 0; i++) /* constants hold their data */
        rc = pnC_eval1(t->consts[i]);
    free(c.base), pnC_ptrmap_free(&c.cmap);
    pnT_graph_free(&g);
    free(tr), free(outs);
    pn_scope_pop();
    if (rc) pnT_tape_free(t);
    return rc;
}

/* A growing stack of nodes not seen before (pnT_depends_on_tracer's walk). */
typedef struct {
    pnC_ptrmap seen;
    pnC_node **items;
    int64_t n, cap;
} node_stack;

/* Pushes nd unless seen. 0, or -1 out of memory. */
static int push_unseen(node_stack *s, pnC_node *nd)
{
    if (pnC_ptrmap_find(&s->seen, nd)) return 0;
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        pnC_node **q = realloc(s->items, (size_t)cap * sizeof *q);
        if (!q) return -1;
        s->items = q, s->cap = cap;
    }
    if (pnC_ptrmap_put(&s->seen, nd, 1, "compile")) return -1;
    s->items[s->n++] = nd;
    return 0;
}

bool pnT_depends_on_tracer(pn_array *const *a, int n)
{
    node_stack s = {0};
    bool found = false;
    int rc = 0;
    for (int i = 0; i < n && !found && rc == 0; i++)
        if (a[i] && a[i]->node) rc = push_unseen(&s, a[i]->node);
    while (s.n > 0 && !found && rc == 0) {
        pnC_node *nd = s.items[--s.n];
        found = nd->prim == &pnT_tracer_prim;
        for (int k = 0; k < nd->nin && !found && rc == 0; k++)
            if (nd->inputs[k]->node) rc = push_unseen(&s, nd->inputs[k]->node);
    }
    free(s.items);
    pnC_ptrmap_free(&s.seen);
    return found || rc; /* out of memory: assume it does (the caller takes the safe path) */
}

/* MLX's rule: a traced function that reaches one of its inputs other than through its
 * parameter (an array it closes over that is an input, or whose pending graph reads one)
 * cannot be compiled, since the frozen graph would hold the input of that call. 0, or -1 with
 * a ValueError. */
static int check_captured(const pnT_tape *t, int nin, pn_array *const *in, const char *op)
{
    pnC_ptrmap inputs = {0};
    node_stack s = {0};
    bool found = false;
    int rc = 0;
    for (int i = 0; i < nin && rc == 0; i++) rc = pnC_ptrmap_put(&inputs, in[i], 1, op);
    for (uint32_t k = 0; k < t->nconst && !found && rc == 0; k++) {
        found = pnC_ptrmap_find(&inputs, t->consts[k]) != NULL;
        if (!found && t->consts[k]->node) rc = push_unseen(&s, t->consts[k]->node);
    }
    while (s.n > 0 && !found && rc == 0) {
        pnC_node *nd = s.items[--s.n];
        if (nd->prim == &pnT_tracer_prim) continue; /* an input reached through its tracer */
        for (int k = 0; k < nd->nin && !found && rc == 0; k++) {
            found = pnC_ptrmap_find(&inputs, nd->inputs[k]) != NULL;
            if (!found && nd->inputs[k]->node) rc = push_unseen(&s, nd->inputs[k]->node);
        }
    }
    free(s.items);
    pnC_ptrmap_free(&s.seen), pnC_ptrmap_free(&inputs);
    if (rc) return OOM(op);
    if (found)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Attempting to compile a function with "
                            "uncaptured inputs is not allowed.", op);
    return 0;
}

/* ───────────────────────────── replaying ───────────────────────────── */

/* Whether p's output shapes are the broadcast of its inputs' shapes. */
static bool broadcasting_prim(const pnC_primitive *p)
{
    return (p >= unary_prims && p < unary_prims + PNK_U_COUNT) ||
           (p >= binary_prims && p < binary_prims + PNK_B_COUNT) || p == &where_prim ||
           p == &divmod_prim || p == &astype_prim || p == &stop_gradient_prim ||
           p == &pnT_tracer_prim || p == &pnC_alias_prim || p == &copy_prim || p == &softmax_prim ||
           p == &layer_norm_prim || p == &rms_norm_prim /* x with its 1-d weight and bias */
           || p == &full_prim; /* values of the output's shape, or one value and a like-array */
}

static bool same_dims(const int64_t *a, int na, const int64_t *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* Reshape at new input shape x (traced: ts -> n->out[0]): the traced reshape read as groups of
 * consecutive input axes merged into one output axis (flatten), unit axes inserted (expand_dims)
 * or dropped (squeeze); each group's new extent is the product of its new axes. Any other
 * reshape keeps its traced shape when the sizes agree (MLX: an explicit shape is baked).
 * Returns the rank, or -1 with an error. */
static int reshape_shape(const pnT_spec *ts, const pnT_spec *to, const pn_array *x, int64_t *out)
{
    int i = 0, j = 0, nd = 0, ok = ts != NULL && ts->ndim == x->ndim, units = 0, grown = 0;
    for (int k = 0; ok && k < ts->ndim; k++)
        units += ts->shape[k] == 1, grown |= ts->shape[k] == 1 && x->shape[k] != 1;
    for (int k = 0; ok && k < to->ndim; k++) units -= to->shape[k] == 1;
    ok = ok && !(grown && units); /* which unit axis was inserted or dropped is ambiguous */
    while (ok && j < to->ndim) {
        int64_t want = to->shape[j];
        if (i < ts->ndim && ts->shape[i] == 1 && want == 1) { /* a unit axis kept */
            out[nd++] = x->shape[i++], j++;
            continue;
        }
        if (want == 1) { /* inserted */
            out[nd++] = 1, j++;
            continue;
        }
        while (i < ts->ndim && ts->shape[i] == 1) i++; /* dropped */
        int64_t prod = 1, next = 1;
        while (i < ts->ndim && prod < want) prod *= ts->shape[i], next *= x->shape[i], i++;
        ok = prod == want;
        out[nd++] = next, j++;
    }
    while (ok && i < ts->ndim) ok = ts->shape[i++] == 1; /* trailing drops */
    if (ok && pnC_shape_size(out, nd) == x->size) return nd;
    if (x->size == pnC_shape_size(to->shape, to->ndim)) {
        memcpy(out, to->shape, (size_t)to->ndim * sizeof *out);
        return to->ndim;
    }
    char s1[256], s2[256];
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[compile] Shapeless: cannot infer the shape of a "
                        "reshape of %s traced as %s; use flatten, expand_dims or squeeze.",
                        pnC_shape_str(x->shape, x->ndim, s1, sizeof s1),
                        pnC_shape_str(to->shape, to->ndim, s2, sizeof s2));
}

/* Reshape at new input shape x whose traced request inferred axis `infer` (-1 given): the traced
 * shape with that axis inferred again from x's size (MLX). Returns the rank, or -1 with an
 * error when the other extents do not divide the size. */
static int reshape_infer(const pnT_spec *to, int infer, const pn_array *x, int64_t *out)
{
    int64_t rest = 1;
    for (int d = 0; d < to->ndim; d++)
        if (d != infer) rest *= to->shape[d];
    if (infer >= to->ndim || rest == 0 || x->size % rest) {
        char s1[256];
        int64_t req[PNC_MAX_NDIM];
        memcpy(req, to->shape, (size_t)to->ndim * sizeof *req);
        if (infer < to->ndim) req[infer] = -1;
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[reshape] Cannot reshape array of size "
                            "%lld into shape %s.", (long long)x->size,
                            pnC_shape_str(req, to->ndim, s1, sizeof s1));
    }
    memcpy(out, to->shape, (size_t)to->ndim * sizeof *out);
    out[infer] = x->size / rest;
    return to->ndim;
}

/* SliceUpdate at new shapes: src's shape, when the traced slice (first element and step per
 * axis, the update's extents) still lies inside it. 0, or -1 with an error. */
static int slice_update_fits(const int64_t *start, const int64_t *step, const pn_array *x,
                             const pn_array *u)
{
    bool ok = u->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++) {
        if (u->shape[d] == 0) continue;
        int64_t last = start[d] + (u->shape[d] - 1) * step[d];
        ok = start[d] >= 0 && start[d] < x->shape[d] && last >= 0 && last < x->shape[d];
    }
    if (ok) return 0;
    char s1[256], s2[256];
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[compile] Shapeless: a slice update of shape %s "
                        "traced for a larger array does not fit the new shape %s.",
                        pnC_shape_str(u->shape, u->ndim, s1, sizeof s1),
                        pnC_shape_str(x->shape, x->ndim, s2, sizeof s2));
}

int pnT_infer_shapes(const pnT_op *n, const pnT_spec *const *traced, pn_array *const *in,
                     int64_t **shapes, int *ndims, void *params)
{
    const pnC_primitive *p = n->prim;
    int64_t *o = shapes[0], tmp[PNC_MAX_NDIM];
    int nd = 0, got = 1;
    char s1[256], s2[256];
    if (broadcasting_prim(p)) {
        for (uint32_t i = 0; i < n->nin; i++) {
            memcpy(tmp, o, (size_t)nd * sizeof *tmp);
            nd = pnC_broadcast_shapes(p->name, tmp, nd, in[i]->shape, in[i]->ndim, o);
            if (nd < 0) return -1;
        }
    } else if (p == &reduce_prim || p == &lse_prim) {
        pnK_reduce_params *rp = params;
        memcpy(rp, n->params, sizeof *rp);
        got = 2;
        const pn_array *x = in[0];
        int64_t count = 1, traced_count = 1;
        for (int d = 0, k = 0; d < x->ndim; d++) {
            bool red = k < rp->naxes && rp->axes[k] == d;
            if (red) {
                k++, count *= x->shape[d];
                traced_count *= traced[0] ? traced[0]->shape[d] : 1;
            }
            if (!red) o[nd++] = x->shape[d];
            else if (rp->keepdims) o[nd++] = 1;
        }
        if (p == &reduce_prim && rp->op == PNK_SUM && rp->scale != 1) {
            /* mean and var: scale = 1 / (count - ddof), the count taken again */
            if (!traced[0])
                return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[compile] Shapeless: a scaled sum "
                                    "needs the traced input shape.");
            double ddof = (double)traced_count - 1 / rp->scale;
            double den = (double)count - (double)(int64_t)(ddof + (ddof < 0 ? -0.5 : 0.5));
            rp->scale = 1 / (den > 0 ? den : 0.0);
        }
    } else if (p == &argreduce_prim) {
        const pnK_argreduce_params *ap = n->params;
        for (int d = 0; ap->axis != PN_ALL_AXES && d < in[0]->ndim; d++)
            if (d != ap->axis) o[nd++] = in[0]->shape[d];
            else if (ap->keepdims) o[nd++] = 1;
        for (int d = 0; ap->axis == PN_ALL_AXES && ap->keepdims && d < in[0]->ndim; d++) o[nd++] = 1;
    } else if (p == &scan_prim || p == &sort_prim || p == &argsort_prim) {
        if (p != &scan_prim && ((const pnK_sort_params *)n->params)->lo != 0)
            return 0; /* topk: k is baked */
        if (n->out[0].ndim == in[0]->ndim) {
            nd = in[0]->ndim;
            memcpy(o, in[0]->shape, (size_t)nd * sizeof *o);
        } else { /* over the flattened input */
            o[0] = in[0]->size, nd = 1;
        }
    } else if (p == &transpose_prim) {
        const int *perm = n->params; /* transpose_params: the permutation first */
        nd = in[0]->ndim;
        for (int d = 0; d < nd; d++) o[d] = in[0]->shape[perm[d]];
    } else if (p == &matmul_prim) {
        const pn_array *a = in[0], *b = in[1];
        if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[matmul] Last dimension of first input "
                                "with shape %s must match second to last dimension of second "
                                "input with shape %s.",
                                pnC_shape_str(a->shape, a->ndim, s1, sizeof s1),
                                pnC_shape_str(b->shape, b->ndim, s2, sizeof s2));
        nd = pnC_broadcast_shapes("matmul", a->shape, a->ndim - 2, b->shape, b->ndim - 2, o);
        if (nd < 0) return -1;
        o[nd++] = a->shape[a->ndim - 2], o[nd++] = b->shape[b->ndim - 1];
    } else if (p == &reshape_prim) {
        int infer = *(const int *)n->params; /* reshape_params: the inferred axis or -1 */
        nd = infer >= 0 ? reshape_infer(&n->out[0], infer, in[0], o)
                        : reshape_shape(traced[0], &n->out[0], in[0], o);
        if (nd < 0) return -1;
    } else if (p == &slice_update_prim) {
        const int64_t *start = n->params; /* slice_params: start, then step, per axis */
        if (slice_update_fits(start, start + PNC_MAX_NDIM, in[0], in[1])) return -1;
        nd = in[0]->ndim;
        memcpy(o, in[0]->shape, (size_t)nd * sizeof *o);
    } else if (p == &broadcast_prim && n->nin == 2) { /* broadcast like the second input */
        nd = pnC_broadcast_shapes("broadcast_to", in[0]->shape, in[0]->ndim, in[1]->shape,
                                  in[1]->ndim, o);
        if (nd < 0) return -1;
    } else if (p == &broadcast_prim) { /* the traced target shape, as MLX */
        nd = n->out[0].ndim;
        memcpy(o, n->out[0].shape, (size_t)nd * sizeof *o);
        if (pnC_broadcast_shapes("broadcast_to", in[0]->shape, in[0]->ndim, o, nd, tmp) != nd ||
            !same_dims(tmp, nd, o, nd))
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[broadcast_shapes] Shapes %s and %s "
                                "cannot be broadcast.",
                                pnC_shape_str(in[0]->shape, in[0]->ndim, s1, sizeof s1),
                                pnC_shape_str(o, nd, s2, sizeof s2));
    } else if (p == &concat_prim) {
        int axis = *(const int *)n->params; /* concat_params: the axis */
        nd = in[0]->ndim;
        memcpy(o, in[0]->shape, (size_t)nd * sizeof *o);
        o[axis] = 0;
        for (uint32_t i = 0; i < n->nin; i++) {
            for (int d = 0; d < nd; d++)
                if (d != axis && in[i]->shape[d] != o[d])
                    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[concatenate] All the input "
                                        "array dimensions must match exactly except for the "
                                        "concatenation axis. However, the provided shapes are "
                                        "%s and %s, and the concatenation axis is %d.",
                                        pnC_shape_str(in[0]->shape, nd, s1, sizeof s1),
                                        pnC_shape_str(in[i]->shape, in[i]->ndim, s2, sizeof s2), axis);
            o[axis] += in[i]->shape[axis];
        }
    } else if (p == &layer_norm_vjp_prim || p == &rms_norm_vjp_prim) {
        nd = in[0]->ndim; /* dx as x; dweight and dbias: x's last extent */
        memcpy(o, in[0]->shape, (size_t)nd * sizeof *o);
        for (uint32_t j = 1; j < n->nout; j++) {
            shapes[j][0] = in[0]->shape[nd - 1];
            ndims[j] = 1;
        }
        ndims[0] = nd;
        return got;
    } else {
        return 0;
    }
    for (uint32_t j = 0; j < n->nout; j++) {
        if (j) memcpy(shapes[j], o, (size_t)nd * sizeof *o);
        ndims[j] = nd;
    }
    return got;
}

int pnT_tape_replay(const pnT_tape *t, pn_array *const *consts, pn_array *const *in,
                    bool reshape, pn_array **out, const char *op)
{
    if (!consts) consts = t->consts;
    size_t mo = (size_t)t->max_out + 1, mi = (size_t)t->max_in + 1;
    pn_array **vals = malloc(((size_t)t->nvals + 1) * sizeof *vals);
    pn_array **ins = malloc(mi * sizeof *ins);
    pn_dtype *dts = malloc(mo * sizeof *dts);
    const int64_t **shapes = malloc(mo * sizeof *shapes);
    int64_t **own = reshape ? calloc(mo, sizeof *own) : NULL;
    int *nds = malloc(mo * sizeof *nds);
    /* shapeless: the traced spec of every value, of a node's inputs; a params scratch */
    const pnT_spec **vspec = reshape ? malloc(((size_t)t->nvals + 1) * sizeof *vspec) : NULL;
    const pnT_spec **tin = reshape ? malloc(mi * sizeof *tin) : NULL;
    pnT_spec *cspec = reshape ? calloc(mi, sizeof *cspec) : NULL;
    uint32_t maxp = 0;
    for (uint32_t k = 0; k < t->nnode; k++)
        if (t->nodes[k].params_size > maxp) maxp = t->nodes[k].params_size;
    void *pscratch = reshape ? calloc(1, (size_t)maxp + sizeof(double)) : NULL;
    int rc = vals && ins && dts && shapes && nds && (!reshape || (own && vspec && tin && cspec && pscratch))
                 ? 0 : OOM(op);
    for (size_t j = 0; reshape && rc == 0 && j < mo; j++)
        if (!(own[j] = malloc(PNC_MAX_NDIM * sizeof **own))) rc = OOM(op);
    uint32_t v = 0;
#define RESOLVE(r)                                                                             \
    ((r).kind == PNT_REF_INPUT ? in[(r).index]                                                 \
                               : (r).kind == PNT_REF_CONST ? consts[(r).index] : vals[(r).index])
    for (uint32_t k = 0; k < t->nnode && rc == 0; k++) {
        const pnT_op *n = &t->nodes[k];
        const void *params = n->params;
        for (uint32_t i = 0; i < n->nin; i++) ins[i] = RESOLVE(n->in[i]);
        for (uint32_t j = 0; j < n->nout; j++)
            dts[j] = n->out[j].dtype, shapes[j] = n->out[j].shape, nds[j] = n->out[j].ndim;
        if (reshape) {
            for (uint32_t i = 0; i < n->nin; i++) {
                pnT_ref r = n->in[i];
                if (r.kind == PNT_REF_NODE) tin[i] = vspec[r.index];
                else if (r.kind == PNT_REF_INPUT) tin[i] = t->in ? &t->in[r.index] : NULL;
                else { /* a constant keeps its shape */
                    cspec[i] = (pnT_spec){ins[i]->dtype, ins[i]->ndim, ins[i]->shape};
                    tin[i] = &cspec[i];
                }
            }
            memset(pscratch, 0, (size_t)maxp);
            int got = pnT_infer_shapes(n, tin, ins, own, nds, pscratch);
            if (got < 0) rc = -1;
            else if (got == 0)
                rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s cannot infer output shapes "
                                  "for new input shapes (shapeless).", op, n->prim->name);
            else if (got == 2) params = pscratch;
            for (uint32_t j = 0; j < n->nout; j++) shapes[j] = own[j];
            for (uint32_t j = 0; j < n->nout; j++) vspec[v + j] = &n->out[j];
        }
        if (rc == 0)
            rc = pnC_make_multi(n->prim, params, n->params_size, (int)n->nin, ins,
                                (int)n->nout, dts, shapes, nds, vals + v);
        v += n->nout;
    }
    for (uint32_t j = 0; j < t->nres && rc == 0; j++) out[j] = RESOLVE(t->res[j]);
#undef RESOLVE
    for (size_t j = 0; own && j < mo; j++) free(own[j]);
    free(vals), free(ins), free(dts), free(shapes), free(nds), free(own);
    free(vspec), free(tin), free(cspec), free(pscratch);
    return rc;
}
