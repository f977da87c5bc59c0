/* autodiff.c — reverse and forward mode differentiation over traced graphs (pn_vjp, pn_jvp,
 * pn_grad, pn_value_and_grad) and the transformations that carry their own derivative rule
 * (pn_checkpoint, pn_custom_vjp). A call traces the function on tracer inputs, walks the
 * part of the graph between tracers and outputs iteratively (million-node graphs are fine)
 * and runs each primitive's vjp/jvp, built from public ops so transformations nest. */
#include "transforms.h"
#include "backend/cuda/eval.h"

#include <stdlib.h>

/* ───────────────────────────── tracers ───────────────────────────── */

static int tracer_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
    return 0;
}

static int tracer_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = cot[0] ? pnC_alias(cot[0]) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int tracer_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? pnC_alias(tan[0]) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

static int tracer_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    out[0] = pnC_alias(in[0]);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

const pnC_primitive pnT_tracer_prim = {
    .name = "Tracer",
    .eval = {[PN_CPU] = tracer_eval, [PN_GPU] = PNG_EVAL(tracer_eval)},
    .vjp = tracer_vjp,
    .jvp = tracer_jvp,
    .vmap = tracer_vmap,
};

pn_array *pnT_tracer(pn_array *p)
{
    if (!pnC_inputs_ok("trace", 1, &p)) return NULL;
    pn_array *t = pnC_make(&pnT_tracer_prim, NULL, 0, 1, &p, p->dtype, p->shape, p->ndim);
    if (t) t->weak = p->weak;
    return t;
}

/* ───────────────────────────── custom-rule nodes ───────────────────────────── */

/* What a custom-vjp closure holds: the function, and its vjp function (NULL for a
 * checkpoint, whose backward pass recomputes f). */
typedef struct custom_rule {
    pn_closure *f;
    pn_closure *vjp_fn;
    pn_closure *jvp_fn; /* NULL: forward mode differentiates f */
    pn_closure *vmap_fn; /* NULL: vmap maps f (the node has no batching rule) */
} custom_rule;

/* Params of a custom node: inputs are the nprimals primals, then f's outputs. The rule is
 * borrowed from the closure, which must outlive the differentiation of graphs built with it. */
typedef struct custom_params {
    const custom_rule *rule;
    int nprimals;
} custom_params;

static const pnC_primitive custom_prim, custom_vmap_prim;

int pnT_node_nargs(const pnC_node *nd)
{
    if (nd->prim == &custom_prim || nd->prim == &custom_vmap_prim)
        return PNC_PARAMS(nd, custom_params)->nprimals;
    return nd->nin;
}

/* ───────────────────────────── traced graphs ───────────────────────────── */

static int graph_oom(void)
{
    return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[transform] Out of memory.");
}

static int grow(void **items, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *p = realloc(*items, (size_t)c * elem);
    if (!p) return graph_oom();
    *items = p;
    *cap = c;
    return 0;
}

static int64_t table_lookup(const pnT_graph *g, const pnC_node *nd)
{
    const int64_t *v = pnC_ptrmap_find(&g->table, nd);
    return v ? *v : -1;
}

/* The rec index of nd, added (unseen) when new. -1 on out of memory. */
static int64_t rec_get(pnT_graph *g, pnC_node *nd)
{
    int64_t idx = table_lookup(g, nd);
    if (idx >= 0) return idx;
    if (grow((void **)&g->recs, &g->cap_rec, g->nrec + 1, sizeof *g->recs) ||
        pnC_ptrmap_put(&g->table, nd, g->nrec, "transform"))
        return -1;
    idx = g->nrec++;
    g->recs[idx] = (pnT_rec){.node = nd, .slot = -1, .tracer = -1};
    return idx;
}

static int give_slots(pnT_graph *g, pnT_rec *r)
{
    int64_t n = r->node->nout;
    if (grow((void **)&g->slots, &g->cap_slots, g->nslots + n, sizeof *g->slots)) return -1;
    r->slot = g->nslots;
    for (int64_t j = 0; j < n; j++) g->slots[g->nslots + j] = NULL;
    g->nslots += n;
    r->active = 1;
    return 0;
}

static bool carries_derivative(const pnC_node *nd)
{
    for (int j = 0; j < nd->nout; j++)
        if (pnC_is_inexact(nd->out_dtypes[j])) return true;
    return false;
}

int pnT_graph_build(pnT_graph *g, int ntr, pn_array *const *tracers, int nout,
                    pn_array *const *outs, bool diff)
{
    *g = (pnT_graph){.diff = diff};
    for (int i = 0; i < ntr; i++) {
        if (!tracers[i]) continue;
        int64_t idx = rec_get(g, tracers[i]->node);
        if (idx < 0) return -1;
        pnT_rec *r = &g->recs[idx];
        r->tracer = i;
        r->state = 2;
        r->reach = 1;
        if (give_slots(g, r)) return -1;
    }
    int64_t *stack = NULL, nstack = 0, cap_stack = 0;
    int rc = 0;
    for (int o = 0; o < nout && rc == 0; o++) {
        if (!outs[o] || !outs[o]->node) continue;
        int64_t root = rec_get(g, outs[o]->node);
        if (root < 0 || g->recs[root].state != 0) {
            rc = root < 0 ? -1 : 0;
            continue;
        }
        if ((rc = grow((void **)&stack, &cap_stack, nstack + 1, sizeof *stack))) break;
        stack[nstack++] = root;
        g->recs[root].state = 1;
        while (nstack && rc == 0) {
            int64_t idx = stack[nstack - 1];
            pnC_node *nd = g->recs[idx].node;
            int lim = pnT_node_nargs(nd);
            if (g->recs[idx].next < lim) {
                pn_array *in = nd->inputs[g->recs[idx].next++];
                if (!in->node) continue;
                int64_t c = rec_get(g, in->node);
                if (c < 0) {
                    rc = -1;
                    break;
                }
                if (g->recs[c].state == 0) {
                    if ((rc = grow((void **)&stack, &cap_stack, nstack + 1, sizeof *stack))) break;
                    g->recs[c].state = 1;
                    stack[nstack++] = c;
                }
                continue;
            }
            nstack--;
            pnT_rec *r = &g->recs[idx];
            r->state = 2;
            bool active = false, reach = false;
            for (int i = 0; i < lim; i++) {
                pn_array *in = nd->inputs[i];
                if (!in->node) continue;
                int64_t c = table_lookup(g, in->node);
                reach |= c >= 0 && g->recs[c].reach;
                active |= c >= 0 && g->recs[c].active;
            }
            r->reach = reach;
            if (diff && !carries_derivative(nd)) active = false;
            else if (diff && nd->prim->vjp_sees_integer_inputs) active |= reach;
            if (!active) continue;
            if ((rc = give_slots(g, r))) break;
            if ((rc = grow((void **)&g->order, &g->cap_order, g->norder + 1, sizeof *g->order)))
                break;
            g->order[g->norder++] = idx;
        }
    }
    free(stack);
    return rc;
}

void pnT_graph_free(pnT_graph *g)
{
    free(g->recs);
    pnC_ptrmap_free(&g->table);
    free(g->order);
    free(g->slots);
    free(g->axes);
    *g = (pnT_graph){0};
}

pnT_rec *pnT_graph_find(const pnT_graph *g, const pnC_node *nd)
{
    int64_t idx = nd ? table_lookup(g, nd) : -1;
    return idx < 0 ? NULL : &g->recs[idx];
}

pn_array **pnT_graph_slot(const pnT_graph *g, const pn_array *a)
{
    pnT_rec *r = pnT_graph_find(g, a->node);
    if (!r || !r->active) return NULL;
    return &g->slots[r->slot + a->out_index];
}

/* ───────────────────────────── engines ───────────────────────────── */

int pnT_scratch_fit(pnT_scratch *s, const pnC_node *nd)
{
    int n = nd->nin > nd->nout ? nd->nin : nd->nout;
    if (n <= s->cap) return 0;
    int cap = n < 16 ? 16 : n;
    bool ok = true;
    int **ints[2] = {&s->i0, &s->i1};
    pn_array ***arrs[3] = {&s->a0, &s->a1, &s->a2};
    for (int k = 0; k < 2; k++) {
        int *p = realloc(*ints[k], (size_t)cap * sizeof *p);
        if (p) *ints[k] = p;
        ok &= p != NULL;
    }
    for (int k = 0; k < 3; k++) {
        pn_array **p = realloc(*arrs[k], (size_t)cap * sizeof *p);
        if (p) *arrs[k] = p;
        ok &= p != NULL;
    }
    if (!ok) return graph_oom();
    s->cap = cap;
    return 0;
}

void pnT_scratch_free(pnT_scratch *s)
{
    free(s->i0);
    free(s->i1);
    free(s->a0);
    free(s->a1);
    free(s->a2);
    *s = (pnT_scratch){0};
}

/* The node's outputs as arrays (dead siblings rebuilt in the current scope) into outs. */
static int node_outputs(pnC_node *nd, pn_array **outs)
{
    for (int j = 0; j < nd->nout; j++)
        if (!(outs[j] = pnC_node_output(nd, j))) return -1;
    return 0;
}

static int shape_mismatch(const char *what, const char *prim, int index, const pn_array *got,
                          const pn_array *want)
{
    char s1[256], s2[256];
    return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Primitive %s gave a derivative of shape %s for its %s %d of "
                        "shape %s.",
                        what, prim, pnC_shape_str(got->shape, got->ndim, s1, sizeof s1),
                        what[0] == 'v' ? "input" : "output", index,
                        pnC_shape_str(want->shape, want->ndim, s2, sizeof s2));
}

/* Whether a depends on a tracer, through arrays of any dtype. */
static bool reaches(const pnT_graph *g, const pn_array *a)
{
    const pnT_rec *r = a->node ? pnT_graph_find(g, a->node) : NULL;
    return r && r->reach;
}

/* Adds g into *slot (NULL means zero so far). */
static int accumulate(pn_array **slot, pn_array *g)
{
    *slot = *slot ? pn_add(*slot, g) : g;
    return *slot ? 0 : -1;
}

/* Runs the active nodes of g in reverse order, moving cotangents from outputs to inputs. */
static int backward(pnT_graph *g)
{
    pnT_scratch s = {0};
    int rc = 0;
    for (int64_t k = g->norder - 1; k >= 0 && rc == 0; k--) {
        pnT_rec *r = &g->recs[g->order[k]];
        pnC_node *nd = r->node;
        pn_array **cot = &g->slots[r->slot];
        bool any = false;
        for (int j = 0; j < nd->nout && !any; j++) any = cot[j] != NULL;
        if (!any) continue;
        int lim = pnT_node_nargs(nd);
        if ((rc = pnT_scratch_fit(&s, nd))) break;
        int na = 0;
        for (int i = 0; i < lim; i++)
            if (pnT_graph_slot(g, nd->inputs[i]) ||
                (nd->prim->vjp_sees_integer_inputs && reaches(g, nd->inputs[i])))
                s.i0[na++] = i;
        if (!na) continue;
        if (!nd->prim->vjp) {
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vjp] Primitive %s does not support gradients.", nd->prim->name);
            break;
        }
        if ((rc = node_outputs(nd, s.a0))) break;
        for (int q = 0; q < na; q++) s.a1[q] = NULL;
        rc = nd->prim->vjp(nd, nd->inputs, s.a0, cot, s.i0, na, s.a1);
        if (rc) {
            if (!pnC_failed())
                pn_set_error(PN_ERR_BACKEND, "[vjp] The vjp of %s failed.", nd->prim->name);
            break;
        }
        for (int q = 0; q < na && rc == 0; q++) {
            pn_array *gq = s.a1[q], *in = nd->inputs[s.i0[q]];
            if (!gq) continue;
            if (!pnT_same_shape(gq, in)) {
                rc = shape_mismatch("vjp", nd->prim->name, s.i0[q], gq, in);
                break;
            }
            pn_array **slot = pnT_graph_slot(g, in);
            if (slot) rc = accumulate(slot, gq); /* else: an integer input (no derivative) */
        }
        /* cotangents of this node are no longer needed by the walk */
        for (int j = 0; j < nd->nout; j++) cot[j] = NULL;
    }
    pnT_scratch_free(&s);
    return rc;
}

/* Runs the active nodes of g in order, moving tangents from inputs to outputs. */
static int forward(pnT_graph *g)
{
    pnT_scratch s = {0};
    int rc = 0;
    for (int64_t k = 0; k < g->norder && rc == 0; k++) {
        pnT_rec *r = &g->recs[g->order[k]];
        pnC_node *nd = r->node;
        if ((rc = pnT_scratch_fit(&s, nd))) break;
        int lim = pnT_node_nargs(nd);
        bool any = false;
        for (int i = 0; i < nd->nin; i++) {
            pn_array **sl = i < lim ? pnT_graph_slot(g, nd->inputs[i]) : NULL;
            s.a0[i] = sl ? *sl : NULL;
            any |= s.a0[i] != NULL;
        }
        if (!any) continue;
        if (!nd->prim->jvp) {
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[jvp] Primitive %s does not support forward-mode derivatives.",
                              nd->prim->name);
            break;
        }
        pn_array **outs = s.a2;
        for (int j = 0; j < nd->nout; j++) s.a1[j] = NULL;
        rc = node_outputs(nd, outs);
        if (rc == 0) {
            rc = nd->prim->jvp(nd, nd->inputs, outs, s.a0, s.a1);
            if (rc && !pnC_failed())
                pn_set_error(PN_ERR_BACKEND, "[jvp] The jvp of %s failed.", nd->prim->name);
        }
        for (int j = 0; j < nd->nout && rc == 0; j++) {
            if (s.a1[j] && !pnT_same_shape(s.a1[j], outs[j])) {
                rc = shape_mismatch("jvp", nd->prim->name, j, s.a1[j], outs[j]);
                break;
            }
            g->slots[r->slot + j] = s.a1[j];
        }
    }
    pnT_scratch_free(&s);
    return rc;
}

static int bad_grad_output(const pn_array *o)
{
    char buf[256];
    return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                        "[grad] The function must return a scalar (0-d) array as its first "
                        "output; got shape %s.",
                        pnC_shape_str(o->shape, o->ndim, buf, sizeof buf));
}

/* See transforms.h. */
pn_array *pnT_conj_complex(pn_array *a)
{
    return a && a->dtype == PN_COMPLEX64 ? pn_conjugate(a) : a;
}

int pnT_vjp(pn_closure *f, int np, pn_array *const *primals, const int *argnums, int nargs,
            int ncot, pn_array *const *cotangents, bool grad_mode, bool natural, int *nout,
            pn_array **out, pn_array **grads)
{
    *nout = 0;
    for (int k = 0; k < nargs; k++) grads[k] = NULL;
    if (!pnC_inputs_ok("vjp", np, primals)) return -1;
    /* args | tracers | outputs + grads (results) */
    pn_array **buf = malloc((size_t)(np + 2 * nargs + PN_MAX_OUTPUTS + 1) * sizeof *buf);
    if (!buf) return graph_oom();
    pn_array **args = buf, **tr = buf + np, **res = tr + nargs;
    pn_array **fo = res; /* f's outputs, first in res */
    pnT_graph g = {0};
    int n = 0, rc = 0;
    pn_scope_push();
    pnC_trace_push();
    for (int i = 0; i < np; i++) args[i] = primals[i];
    for (int k = 0; k < nargs && rc == 0; k++) {
        tr[k] = pnT_tracer(primals[argnums[k]]);
        if (!tr[k]) rc = -1;
        else args[argnums[k]] = tr[k];
    }
    if (rc == 0) rc = pn_closure_call(f, np, args, &n, fo);
    if (rc == 0 && grad_mode) {
        if (n < 1)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[grad] The function must return at least one array.");
        else if (fo[0]->ndim != 0)
            rc = bad_grad_output(fo[0]);
    } else if (rc == 0) {
        if (ncot != n)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vjp] Number of outputs to compute gradients for (%d) does not "
                              "match number of cotangents (%d).",
                              n, ncot);
        for (int j = 0; j < n && rc == 0; j++) {
            if (cotangents[j] && !pnT_same_shape(cotangents[j], fo[j])) {
                char s1[256], s2[256];
                rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                  "[vjp] Output shape %s does not match cotangent shape %s.",
                                  pnC_shape_str(fo[j]->shape, fo[j]->ndim, s1, sizeof s1),
                                  pnC_shape_str(cotangents[j]->shape, cotangents[j]->ndim, s2,
                                                sizeof s2));
            }
        }
    }
    if (rc == 0) rc = pnT_graph_build(&g, nargs, tr, n, fo, true);
    for (int j = 0; j < n && rc == 0; j++) {
        pn_array **slot = pnT_graph_slot(&g, fo[j]);
        pn_array *c = grad_mode ? NULL : cotangents[j];
        if (!slot || (grad_mode ? j > 0 : !c)) continue;
        pn_array *seed = grad_mode ? pn_ones(NULL, 0, fo[0]->dtype)
                         : c->dtype == fo[j]->dtype ? c
                                                    : pn_astype(c, fo[j]->dtype);
        if (natural) seed = pnT_conj_complex(seed);
        rc = seed ? accumulate(slot, seed) : -1;
    }
    if (rc == 0) rc = backward(&g);
    for (int k = 0; k < nargs && rc == 0; k++) {
        pn_array **slot = pnT_graph_slot(&g, tr[k]);
        pn_array *p = primals[argnums[k]];
        grads[k] = slot && *slot ? *slot : pn_zeros(p->shape, p->ndim, p->dtype);
        if (natural) grads[k] = pnT_conj_complex(grads[k]);
        if (!grads[k]) rc = -1;
    }
    pnT_graph_free(&g);
    pnC_trace_pop();
    if (rc) {
        for (int k = 0; k < nargs; k++) grads[k] = NULL;
        free(buf);
        return pnT_scope_fail(NULL, 0);
    }
    for (int k = 0; k < nargs; k++) res[n + k] = grads[k];
    rc = pnT_scope_keep(res, n + nargs);
    if (rc == 0) {
        for (int j = 0; j < n; j++) out[j] = res[j];
        for (int k = 0; k < nargs; k++) grads[k] = res[n + k];
        *nout = n;
    } else {
        for (int k = 0; k < nargs; k++) grads[k] = NULL;
    }
    free(buf);
    return rc;
}

int pnT_jvp(pn_closure *f, int np, pn_array *const *primals, pn_array *const *tangents,
            int *nout, pn_array **out, pn_array **jvps)
{
    *nout = 0;
    if (!pnC_inputs_ok("jvp", np, primals)) return -1;
    pn_array **buf = malloc((size_t)(2 * np + 2 * PN_MAX_OUTPUTS) * sizeof *buf);
    if (!buf) return graph_oom();
    pn_array **args = buf, **tr = buf + np, **res = tr + np;
    pnT_graph g = {0};
    int n = 0, rc = 0;
    pn_scope_push();
    pnC_trace_push();
    for (int i = 0; i < np && rc == 0; i++) {
        args[i] = primals[i];
        tr[i] = NULL;
        if (tangents[i]) {
            if (!(tr[i] = pnT_tracer(primals[i]))) rc = -1;
            else args[i] = tr[i];
        }
    }
    if (rc == 0) rc = pn_closure_call(f, np, args, &n, res);
    if (rc == 0) rc = pnT_graph_build(&g, np, tr, n, res, true);
    for (int i = 0; i < np && rc == 0; i++)
        if (tr[i]) *pnT_graph_slot(&g, tr[i]) = tangents[i];
    if (rc == 0) rc = forward(&g);
    for (int j = 0; j < n && rc == 0; j++) {
        pn_array **slot = pnT_graph_slot(&g, res[j]);
        pn_array *o = res[j];
        res[n + j] = slot && *slot ? *slot : pn_zeros(o->shape, o->ndim, o->dtype);
        if (!res[n + j]) rc = -1;
    }
    pnT_graph_free(&g);
    pnC_trace_pop();
    if (rc) {
        free(buf);
        return pnT_scope_fail(NULL, 0);
    }
    rc = pnT_scope_keep(res, 2 * n);
    if (rc == 0) {
        for (int j = 0; j < n; j++) {
            out[j] = res[j];
            jvps[j] = res[n + j];
        }
        *nout = n;
    }
    free(buf);
    return rc;
}

/* ───────────────────────────── public vjp / jvp ───────────────────────────── */

/* Vector-Jacobian product (ponte.h). Outputs and cotangents of every primal are new arrays
 * owned like op results. */
int pn_vjp(pn_closure *f, int nprimals, pn_array *const *primals, int ncotangents,
           pn_array *const *cotangents, int *nout, pn_array **out, pn_array **vjps)
{
    if (nout) *nout = 0;
    if (!f || !nout || !out || nprimals < 0 || ncotangents < 0 ||
        (nprimals > 0 && (!primals || !vjps)) || (ncotangents > 0 && !cotangents))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[vjp] Bad arguments (NULL closure or list).");
    for (int i = 0; i < nprimals; i++) vjps[i] = NULL;
    if (!pnC_inputs_ok("vjp", nprimals, primals)) return -1;
    if (!pnC_inputs_ok("vjp", ncotangents, cotangents)) return -1;
    int *argnums = malloc((size_t)(nprimals + 1) * sizeof *argnums);
    if (!argnums) return graph_oom();
    for (int i = 0; i < nprimals; i++) argnums[i] = i;
    int rc = pnT_vjp(f, nprimals, primals, argnums, nprimals, ncotangents, cotangents, false, true,
                     nout, out, vjps);
    free(argnums);
    return rc;
}

/* Jacobian-vector product (ponte.h). Outputs and their tangents are new arrays owned like op
 * results. */
int pn_jvp(pn_closure *f, int nprimals, pn_array *const *primals, pn_array *const *tangents,
           int *nout, pn_array **out, pn_array **jvps)
{
    if (nout) *nout = 0;
    if (!f || !nout || !out || !jvps || nprimals < 0 ||
        (nprimals > 0 && (!primals || !tangents)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[jvp] Bad arguments (NULL closure or list).");
    if (!pnC_inputs_ok("jvp", nprimals, primals)) return -1;
    if (!pnC_inputs_ok("jvp", nprimals, tangents)) return -1;
    for (int i = 0; i < nprimals; i++) {
        if (!pnT_same_shape(primals[i], tangents[i])) {
            char s1[256], s2[256];
            return pn_set_error(
                PN_ERR_INVALID_ARGUMENT,
                "[jvp] Input %d has shape %s but its tangent has shape %s.", i,
                pnC_shape_str(primals[i]->shape, primals[i]->ndim, s1, sizeof s1),
                pnC_shape_str(tangents[i]->shape, tangents[i]->ndim, s2, sizeof s2));
        }
    }
    return pnT_jvp(f, nprimals, primals, tangents, nout, out, jvps);
}

/* ───────────────────────────── grad / value_and_grad ───────────────────────────── */

typedef struct grad_ctx {
    pn_closure *f;
    bool value; /* value_and_grad: f's outputs come first */
    int nargs;
    int argnums[];
} grad_ctx;

static void grad_destroy(void *ctx)
{
    grad_ctx *g = ctx;
    pn_closure_release(g->f);
    free(g);
}

/* Checks argnums against nin (negative counts from the end; no repeats) into args. */
static int resolve_argnums(const int *argnums, int nargs, int nin, int *args)
{
    for (int k = 0; k < nargs; k++) {
        int a = argnums[k] < 0 ? argnums[k] + nin : argnums[k];
        if (a < 0 || a >= nin)
            return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                "[grad] Invalid argument number %d for function with %d inputs.",
                                argnums[k], nin);
        for (int q = 0; q < k; q++)
            if (args[q] == a)
                return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                    "[grad] Repeat argument number not allowed in grad.");
        args[k] = a;
    }
    return 0;
}

/* f's outputs and the gradients of its first output for the listed inputs (ponte.h). */
int pn_value_and_grad_call(pn_closure *f, int nin, pn_array *const *in, const int *argnums,
                           int nargnums, int *nout, pn_array **out, pn_array **grads)
{
    if (!f || nin < 0 || (nin > 0 && !in) || !nout || !out || !grads || nargnums <= 0 || !argnums)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[value_and_grad] Bad arguments (NULL function, arrays or argnums).");
    int *args = malloc((size_t)nargnums * sizeof *args);
    if (!args) return graph_oom();
    int rc = resolve_argnums(argnums, nargnums, nin, args);
    if (rc == 0) rc = pnT_vjp(f, nin, in, args, nargnums, 0, NULL, true, true, nout, out, grads);
    free(args);
    return rc;
}

static int grad_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    grad_ctx *g = ctx;
    pn_array **grads = malloc((size_t)g->nargs * sizeof *grads);
    pn_array *fo[PN_MAX_OUTPUTS];
    int n = 0;
    int rc = grads ? pn_value_and_grad_call(g->f, nin, in, g->argnums, g->nargs, &n, fo, grads)
                   : graph_oom();
    if (rc == 0) {
        int total = g->nargs + (g->value ? n : 0);
        if (total > PN_MAX_OUTPUTS) {
            for (int j = 0; j < n; j++) pn_release(fo[j]);
            for (int k = 0; k < g->nargs; k++) pn_release(grads[k]);
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[grad] %d results exceed the %d outputs a closure may return "
                              "(pn_value_and_grad_call has no such limit).",
                              total, PN_MAX_OUTPUTS);
        } else {
            int m = 0;
            for (int j = 0; j < n; j++) {
                if (g->value) out[m++] = fo[j];
                else pn_release(fo[j]);
            }
            for (int k = 0; k < g->nargs; k++) out[m++] = grads[k];
            *nout = m;
        }
    }
    free(grads);
    return rc;
}

static pn_closure *make_grad(pn_closure *f, const int *argnums, int nargnums, bool value)
{
    const char *name = value ? "value_and_grad" : "grad";
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] The function is NULL.", name);
    if (argnums && nargnums <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Must specify at least one argument.", name);
    int n = argnums ? nargnums : 1;
    grad_ctx *g = malloc(sizeof *g + (size_t)n * sizeof(int));
    if (!g) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", name);
    g->f = pn_closure_retain(f);
    g->value = value;
    g->nargs = n;
    for (int k = 0; k < n; k++) g->argnums[k] = argnums ? argnums[k] : 0;
    return pn_closure_new(grad_call, g, grad_destroy);
}

/* A closure returning the gradients of f's first output (ponte.h); it holds a reference to
 * f. NULL with an error for a NULL f or an empty argnums list. */
pn_closure *pn_grad(pn_closure *f, const int *argnums, int nargnums)
{
    return make_grad(f, argnums, nargnums, false);
}

/* A closure returning f's outputs followed by the gradients of its first (ponte.h). */
pn_closure *pn_value_and_grad(pn_closure *f, const int *argnums, int nargnums)
{
    return make_grad(f, argnums, nargnums, true);
}

/* ───────────────────────────── custom rules: checkpoint, custom_vjp ───────────────────── */

static int custom_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    int np = PNC_PARAMS(nd, custom_params)->nprimals;
    for (int j = 0; j < nd->nout; j++) {
        const pn_array *src = in[np + j];
        pnC_set_view(out[j], src, src->offset, src->strides);
    }
    return 0;
}

/* The custom rule's backward pass: vjp_fn(primals, cotangents, outputs), or for a checkpoint
 * the vjp of f recomputed from the primals. */
static int custom_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const custom_params *p = PNC_PARAMS(nd, custom_params);
    int np = p->nprimals, nout = nd->nout;
    for (int q = 0; q < nargs; q++) grads[q] = NULL;
    if (!p->rule->vjp_fn) { /* checkpoint: recompute f and differentiate it */
        pn_array *fo[PN_MAX_OUTPUTS];
        int n = 0;
        pn_scope_push();
        int rc = pnT_vjp(p->rule->f, np, in, argnums, nargs, nout, cot, false, false, &n, fo, grads);
        if (rc) return pnT_scope_fail(grads, nargs);
        for (int j = 0; j < n; j++) pn_release(fo[j]);
        return pnT_scope_keep(grads, nargs);
    }
    pn_array **args = malloc((size_t)(np + 2 * nout) * sizeof *args);
    if (!args) return graph_oom();
    pn_array *res[PN_MAX_OUTPUTS];
    int n = 0, rc = 0;
    pn_scope_push();
    for (int i = 0; i < np; i++) args[i] = in[i];
    for (int j = 0; j < nout && rc == 0; j++) {
        /* the user's rule speaks MLX's convention (transforms.h, pnT_vjp) */
        args[np + j] = cot[j] ? pnT_conj_complex(cot[j]) : pn_zeros(out[j]->shape, out[j]->ndim, out[j]->dtype);
        args[np + nout + j] = out[j];
        if (!args[np + j]) rc = -1;
    }
    if (rc == 0) rc = pn_closure_call(p->rule->vjp_fn, np + 2 * nout, args, &n, res);
    if (rc == 0 && n != np)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                          "[custom_vjp] The vjp function returned %d cotangents for a function "
                          "of %d inputs.",
                          n, np);
    for (int q = 0; q < nargs && rc == 0; q++) {
        pn_array *gq = res[argnums[q]];
        if (!pnT_same_shape(gq, in[argnums[q]])) {
            char s1[256], s2[256];
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[custom_vjp] The cotangent of input %d has shape %s, expected %s.",
                              argnums[q], pnC_shape_str(gq->shape, gq->ndim, s1, sizeof s1),
                              pnC_shape_str(in[argnums[q]]->shape, in[argnums[q]]->ndim, s2,
                                            sizeof s2));
            break;
        }
        grads[q] = pnT_conj_complex(gq);
    }
    free(args);
    if (rc) return pnT_scope_fail(grads, nargs);
    return pnT_scope_keep(grads, nargs);
}

/* Forward mode through the user's rule: jvp_fn(primals, tangents) (NULL tangents as zeros)
 * gives one tangent per output, of the output's shape. */
static int custom_jvp_rule(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                           pn_array *const *tan, pn_array **out_tan)
{
    const custom_params *p = PNC_PARAMS(nd, custom_params);
    int np = p->nprimals, nout = nd->nout, n = 0, rc = 0;
    pn_array **args = malloc((size_t)(2 * np + 1) * sizeof *args), *res[PN_MAX_OUTPUTS];
    if (!args) return graph_oom();
    pn_scope_push();
    for (int i = 0; i < np && rc == 0; i++) {
        args[i] = in[i];
        args[np + i] = tan[i] ? tan[i] : pn_zeros(in[i]->shape, in[i]->ndim, in[i]->dtype);
        if (!args[np + i]) rc = -1;
    }
    if (rc == 0) rc = pn_closure_call(p->rule->jvp_fn, 2 * np, args, &n, res);
    free(args);
    if (rc == 0 && n != nout)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[custom_jvp] The jvp function returned %d "
                          "tangents for a function of %d outputs.", n, nout);
    for (int j = 0; j < nout && rc == 0; j++) {
        if (!pnT_same_shape(res[j], out[j])) {
            char s1[256], s2[256];
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[custom_jvp] The tangent of output %d has shape %s, expected %s.", j,
                              pnC_shape_str(res[j]->shape, res[j]->ndim, s1, sizeof s1),
                              pnC_shape_str(out[j]->shape, out[j]->ndim, s2, sizeof s2));
            break;
        }
        out_tan[j] = res[j];
    }
    if (rc) {
        for (int j = 0; j < nout; j++) out_tan[j] = NULL;
        return pnT_scope_fail(NULL, 0);
    }
    return pnT_scope_keep(out_tan, nout);
}

/* Forward mode through a custom node: the user's jvp rule, else the jvp of f itself. */
static int custom_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                      pn_array *const *tan, pn_array **out_tan)
{
    const custom_params *p = PNC_PARAMS(nd, custom_params);
    pn_array *fo[PN_MAX_OUTPUTS], *jv[PN_MAX_OUTPUTS];
    int n = 0;
    for (int j = 0; j < nd->nout; j++) out_tan[j] = NULL;
    if (p->rule->jvp_fn) return custom_jvp_rule(nd, in, out, tan, out_tan);
    pn_scope_push();
    if (pnT_jvp(p->rule->f, p->nprimals, in, tan, &n, fo, jv)) return pnT_scope_fail(NULL, 0);
    if (n != nd->nout) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT,
                     "[custom_vjp] The function returned %d outputs when recomputed, %d before.",
                     n, nd->nout);
        return pnT_scope_fail(NULL, 0);
    }
    for (int j = 0; j < n; j++) {
        pn_release(fo[j]);
        out_tan[j] = jv[j];
    }
    return pnT_scope_keep(out_tan, n);
}

static const pnC_primitive custom_prim = {
    .name = "CustomVJP",
    .eval = {[PN_CPU] = custom_eval, [PN_GPU] = PNG_EVAL(custom_eval)},
    .vjp = custom_vjp,
    .jvp = custom_jvp,
};

/* Batching through the user's rule: vmap_fn(inputs, their axes as 0-d int32 arrays, -1 for
 * unbatched) gives the outputs, then their axes. The node's other inputs (f's outputs) are
 * not used. */
static int custom_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    const custom_params *p = PNC_PARAMS(nd, custom_params);
    int np = p->nprimals, nout = nd->nout, n = 0, rc = 0;
    pn_array **args = malloc((size_t)(2 * np + 1) * sizeof *args), *res[PN_MAX_OUTPUTS];
    if (!args) return graph_oom();
    pn_scope_push();
    for (int i = 0; i < np && rc == 0; i++) {
        args[i] = in[i];
        args[np + i] = pn_scalar_int(in_axes[i], PN_INT32);
        if (!args[np + i]) rc = -1;
    }
    if (rc == 0) rc = pn_closure_call(p->rule->vmap_fn, 2 * np, args, &n, res);
    free(args);
    if (rc == 0 && n != 2 * nout)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[custom_vmap] The vmap function returned %d "
                          "arrays for a function of %d outputs (expected the outputs, then their "
                          "axes).", n, nout);
    for (int j = 0; j < nout && rc == 0; j++) {
        /* out[] receives the results: the unbatched output's type is the node's */
        pn_array *o = res[j], *ax = res[nout + j];
        int64_t a = ax && pn_size(ax) == 1 ? pn_item_int(ax) : INT64_MIN;
        int nd0 = nd->out_ndims[j];
        const int64_t *sh0 = nd->out_shapes[j];
        bool ok = o && o->dtype == nd->out_dtypes[j] &&
                  (a == -1 ? o->ndim == nd0 : a >= 0 && a <= nd0 && o->ndim == nd0 + 1);
        for (int k = 0, d = 0; ok && k < o->ndim; k++)
            if (k != a) ok = o->shape[k] == sh0[d++];
        if (!ok) {
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT, "[custom_vmap] Output %d of the vmap function "
                              "(or its axis) does not match the function's output.", j);
            break;
        }
        out[j] = o;
        out_axes[j] = (int)a;
    }
    if (rc) {
        for (int j = 0; j < nout; j++) out[j] = NULL;
        return pnT_scope_fail(NULL, 0);
    }
    return pnT_scope_keep(out, nout);
}

static const pnC_primitive custom_vmap_prim = {
    .name = "CustomVJP",
    .eval = {[PN_CPU] = custom_eval, [PN_GPU] = PNG_EVAL(custom_eval)},
    .vjp = custom_vjp,
    .jvp = custom_jvp,
    .vmap = custom_vmap,
};

static void rule_destroy(void *ctx)
{
    custom_rule *r = ctx;
    pn_closure_release(r->f);
    pn_closure_release(r->vjp_fn);
    pn_closure_release(r->jvp_fn);
    pn_closure_release(r->vmap_fn);
    free(r);
}

/* Calling a custom closure: f's outputs, passed through a node that carries the rule. */
static int custom_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const custom_rule *rule = ctx;
    pn_array *fo[PN_MAX_OUTPUTS];
    int n = 0;
    pn_scope_push();
    if (pn_closure_call(rule->f, nin, in, &n, fo)) return pnT_scope_fail(NULL, 0);
    pn_array **inputs = malloc((size_t)(nin + n + 1) * sizeof *inputs);
    const int64_t *shapes[PN_MAX_OUTPUTS];
    pn_dtype dtypes[PN_MAX_OUTPUTS];
    int ndims[PN_MAX_OUTPUTS];
    if (!inputs) {
        graph_oom();
        return pnT_scope_fail(NULL, 0);
    }
    for (int i = 0; i < nin; i++) inputs[i] = in[i];
    for (int j = 0; j < n; j++) {
        inputs[nin + j] = fo[j];
        shapes[j] = fo[j]->shape;
        dtypes[j] = fo[j]->dtype;
        ndims[j] = fo[j]->ndim;
    }
    custom_params params = {.rule = rule, .nprimals = nin};
    int rc = n == 0 ? 0
                    : pnC_make_multi(rule->vmap_fn ? &custom_vmap_prim : &custom_prim, &params,
                                     sizeof params, nin + n, inputs, n,
                                     dtypes, shapes, ndims, out);
    free(inputs);
    if (rc) return pnT_scope_fail(NULL, 0);
    if (pnT_scope_keep(out, n)) return -1;
    *nout = n;
    return 0;
}

static pn_closure *make_custom(const char *name, pn_closure *f, pn_closure *vjp_fn,
                               pn_closure *jvp_fn, pn_closure *vmap_fn)
{
    custom_rule *r = malloc(sizeof *r);
    if (!r) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", name);
    r->f = pn_closure_retain(f);
    r->vjp_fn = pn_closure_retain(vjp_fn);
    r->jvp_fn = pn_closure_retain(jvp_fn);
    r->vmap_fn = pn_closure_retain(vmap_fn);
    return pn_closure_new(custom_call, r, rule_destroy);
}

/* A closure equal to f whose backward pass recomputes f from its inputs (ponte.h). It holds
 * a reference to f and must outlive the differentiation of graphs built by calling it. */
pn_closure *pn_checkpoint(pn_closure *f)
{
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[checkpoint] The function is NULL.");
    return make_custom("checkpoint", f, NULL, NULL, NULL);
}

/* A closure equal to f whose vjp is vjp_fn (ponte.h); forward mode uses f's own jvp. It
 * holds references to both and must outlive the differentiation of graphs built with it. */
pn_closure *pn_custom_vjp(pn_closure *f, pn_closure *vjp_fn)
{
    if (!f || !vjp_fn)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[custom_vjp] The function or its vjp is NULL.");
    return make_custom("custom_vjp", f, vjp_fn, NULL, NULL);
}

/* A closure equal to f with the given rules (ponte.h): vjp_fn as pn_custom_vjp's (NULL: f's
 * vjp, recomputed), jvp_fn(primals, tangents) for forward mode (NULL: f's jvp), vmap_fn for
 * batching (NULL: vmap maps f). */
pn_closure *pn_custom_function(pn_closure *f, pn_closure *vjp_fn, pn_closure *jvp_fn,
                               pn_closure *vmap_fn)
{
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[custom_function] The function is NULL.");
    return make_custom("custom_function", f, vjp_fn, jvp_fn, vmap_fn);
}
