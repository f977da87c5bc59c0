/* vmap.c — pn_vmap: vectorizing a function over an axis of its inputs. The function is
 * traced once on the first batch element; when every primitive that depends on the mapped
 * inputs has a batching rule (pnC_primitive.vmap) the rules build the batched graph, else the
 * generic path calls the function once per batch element and stacks the outputs (correct
 * for every op, and composable with the other transformations). */
#include "transforms.h"

#include <stdatomic.h>
#include <stdlib.h>

/* How many vmaps took the generic loop (pnT_vmap_loop_count, for the tests). */
static atomic_llong loop_count;

int64_t pnT_vmap_loop_count(void) { return (int64_t)atomic_load(&loop_count); }

typedef struct vmap_ctx {
    pn_closure *f;
    int nin_axes, nout_axes; /* counts of the lists below (-1: list absent) */
    int *in_axes;            /* per input: mapped axis or -1; NULL: every input at axis 0 */
    int *out_axes;           /* per output: where the batch axis goes; NULL: axis 0 */
} vmap_ctx;

static void vmap_destroy(void *ctx)
{
    vmap_ctx *v = ctx;
    pn_closure_release(v->f);
    free(v->in_axes);
    free(v->out_axes);
    free(v);
}

/* Element b of a along axis (a view without that axis). */
static pn_array *batch_element(pn_array *a, int axis, int64_t b)
{
    int64_t start[PNC_MAX_NDIM], stop[PNC_MAX_NDIM];
    for (int k = 0; k < a->ndim; k++) {
        start[k] = 0;
        stop[k] = a->shape[k];
    }
    start[axis] = b;
    stop[axis] = b + 1;
    return pn_squeeze(pn_slice(a, start, stop, NULL, a->ndim), &axis, 1);
}

/* An array of the shape and dtype of one element of a along axis, made of zeros (for a batch
 * of size zero, where there is no element to slice). */
static pn_array *zero_element(pn_array *a, int axis)
{
    int64_t shape[PNC_MAX_NDIM];
    int nd = 0;
    for (int k = 0; k < a->ndim; k++)
        if (k != axis) shape[nd++] = a->shape[k];
    return pn_zeros(shape, nd, a->dtype);
}

/* Normalizes the batch axis of an output whose element has ndim dims into [0, ndim]. */
static int out_axis(const vmap_ctx *v, int j, int ndim)
{
    int ax = v->out_axes ? v->out_axes[j] : 0;
    int norm = ax < 0 ? ax + ndim + 1 : ax;
    if (norm < 0 || norm > ndim)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[vmap] Axis %d invalid for output with %d dimensions.", ax, ndim + 1);
    return norm;
}

/* o (an output of element shape o0's) with a batch axis of size B at output j's out axis,
 * every item o (for an output that depends on no mapped input, as MLX broadcasts it). */
static pn_array *broadcast_batch(const vmap_ctx *v, int j, pn_array *o, const pn_array *o0,
                                 int64_t B)
{
    int dst = out_axis(v, j, o0->ndim);
    if (dst < 0) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int d = 0;
    for (int k = 0; k <= o0->ndim; k++) shape[k] = k == dst ? B : o0->shape[d++];
    return pn_broadcast_to(pn_expand_dims(o, &dst, 1), shape, o0->ndim + 1);
}

/* The batched graph from the primitives' rules. res[j] gets the output with its batch axis
 * at out_axis (outputs the rules leave unbatched are broadcast along it). */
static int vmap_by_rules(const vmap_ctx *v, pnT_graph *g, int nin, pn_array *const *in,
                         const int *axes, pn_array *const *tracers, int64_t B, int n,
                         pn_array *const *o0, pn_array **res)
{
    g->axes = calloc((size_t)(g->nslots + 1), sizeof *g->axes);
    if (!g->axes) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    for (int i = 0; i < nin; i++) {
        if (!tracers[i]) continue;
        pn_array **sl = pnT_graph_slot(g, tracers[i]);
        *sl = in[i];
        g->axes[sl - g->slots] = axes[i];
    }
    pnT_scratch s = {0};
    int rc = 0;
    for (int64_t k = 0; k < g->norder && rc == 0; k++) {
        pnT_rec *r = &g->recs[g->order[k]];
        pnC_node *nd = r->node;
        if ((rc = pnT_scratch_fit(&s, nd))) break;
        pn_array **vin = s.a0, **vout = s.a1;
        int *vax = s.i0, *vout_ax = s.i1;
        for (int i = 0; i < nd->nin; i++) {
            pn_array **sl = pnT_graph_slot(g, nd->inputs[i]);
            vin[i] = sl ? *sl : nd->inputs[i];
            vax[i] = sl ? g->axes[sl - g->slots] : -1;
        }
        for (int j = 0; j < nd->nout; j++) {
            vout[j] = NULL;
            vout_ax[j] = -1;
        }
        rc = nd->prim->vmap(nd, vin, vax, vout, vout_ax);
        if (rc && !pnC_failed())
            pn_set_error(PN_ERR_BACKEND, "[vmap] The batching rule of %s failed.", nd->prim->name);
        for (int j = 0; j < nd->nout && rc == 0; j++) {
            if (!vout[j]) {
                rc = pn_set_error(PN_ERR_BACKEND,
                                  "[vmap] The batching rule of %s gave no output %d.",
                                  nd->prim->name, j);
                break;
            }
            g->slots[r->slot + j] = vout[j];
            g->axes[r->slot + j] = vout_ax[j];
        }
    }
    pnT_scratch_free(&s);
    for (int j = 0; j < n && rc == 0; j++) {
        /* an output that depends on no mapped input is broadcast along the batch, as MLX does */
        pn_array **sl = pnT_graph_slot(g, o0[j]);
        pn_array *o = sl ? *sl : o0[j];
        int ax = sl ? g->axes[sl - g->slots] : -1;
        int dst = out_axis(v, j, o0[j]->ndim);
        if (dst < 0) return -1;
        if (ax < 0) { /* the rule left it unbatched: give it the batch axis */
            o = broadcast_batch(v, j, o, o0[j], B);
        } else if (ax != dst) {
            o = pn_moveaxis(o, ax, dst);
        }
        if (!o) return -1;
        /* a rule that gets the shape wrong would silently corrupt results: check it */
        bool ok = o->ndim == o0[j]->ndim + 1 && o->shape[dst] == B && o->dtype == o0[j]->dtype;
        for (int k = 0, d = 0; ok && k < o->ndim; k++)
            if (k != dst) ok = o->shape[k] == o0[j]->shape[d++];
        if (!ok) {
            char s1[256];
            return pn_set_error(PN_ERR_BACKEND,
                                "[vmap] Batching rules gave output %d the shape %s, which does "
                                "not match the function's output.",
                                j, pnC_shape_str(o->shape, o->ndim, s1, sizeof s1));
        }
        res[j] = o;
    }
    return rc;
}

/* The generic path: f on every batch element, outputs stacked. */
static int vmap_by_loop(const vmap_ctx *v, const pnT_graph *g, int nin, pn_array *const *in,
                        const int *axes, int64_t B, int n, pn_array *const *o0, pn_array **res)
{
    pn_array **cols = malloc((size_t)(n * B + 1) * sizeof *cols);
    pn_array **args = malloc((size_t)(nin + 1) * sizeof *args);
    int rc = 0;
    if (!cols || !args) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    for (int j = 0; j < n && rc == 0; j++) cols[j * B] = o0[j];
    for (int64_t b = 1; b < B && rc == 0; b++) {
        for (int i = 0; i < nin && rc == 0; i++) {
            args[i] = axes[i] >= 0 ? batch_element(in[i], axes[i], b) : in[i];
            if (!args[i]) rc = -1;
        }
        pn_array *ob[PN_MAX_OUTPUTS];
        int nb = 0;
        if (rc == 0) rc = pn_closure_call(v->f, nin, args, &nb, ob);
        if (rc == 0 && nb != n)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vmap] The function returned %d outputs for batch element %lld "
                              "and %d for element 0.",
                              nb, (long long)b, n);
        for (int j = 0; j < n && rc == 0; j++) {
            if (!pnT_same_shape(ob[j], o0[j]) || ob[j]->dtype != o0[j]->dtype) {
                rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                  "[vmap] Output %d of batch element %lld differs in shape or "
                                  "dtype from that of element 0.",
                                  j, (long long)b);
                break;
            }
            cols[j * B + b] = ob[j];
        }
    }
    for (int j = 0; j < n && rc == 0; j++) {
        if (!pnT_graph_slot(g, o0[j])) { /* depends on no mapped input */
            if (!(res[j] = broadcast_batch(v, j, o0[j], o0[j], B))) rc = -1;
            continue;
        }
        int dst = out_axis(v, j, o0[j]->ndim);
        if (dst < 0 || !(res[j] = pn_stack(cols + j * B, (int)B, dst))) rc = -1;
    }
    free(cols);
    free(args);
    return rc;
}

static int vmap_call(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const vmap_ctx *v = ctx;
    if (v->in_axes && v->nin_axes != nin)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[vmap] The number of in axes (%d) must match the number of inputs "
                            "(%d).",
                            v->nin_axes, nin);
    int *axes = malloc((size_t)(nin + 1) * sizeof *axes);
    if (!axes) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    int64_t B = -1;
    int rc = 0;
    for (int i = 0; i < nin && rc == 0; i++) {
        int ax = axes[i] = v->in_axes ? v->in_axes[i] : 0;
        if (ax == -1) continue;
        if (in[i]->ndim == 0)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vmap] Cannot vmap an input with zero dimensions.");
        else if (ax < 0 || ax >= in[i]->ndim)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vmap] Axis %d invalid for input with %d dimensions.", ax,
                              in[i]->ndim);
        else if (B >= 0 && in[i]->shape[ax] != B)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[vmap] Inconsistent axis sizes: %lld and %lld.",
                              (long long)in[i]->shape[ax], (long long)B);
        else
            B = in[i]->shape[ax];
    }
    if (rc == 0 && B < 0)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                          "[vmap] At least one input must be mapped (in_axes are all -1).");
    if (rc) {
        free(axes);
        return -1;
    }

    pn_array **args = malloc((size_t)(2 * nin + 1) * sizeof *args);
    if (!args) {
        free(axes);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    }
    pn_array **tracers = args + nin, *o0[PN_MAX_OUTPUTS], *res[PN_MAX_OUTPUTS];
    pnT_graph g = {0};
    int n = 0;
    pn_scope_push();
    pnC_trace_push();
    /* trace element 0 (zeros of the element's shape for an empty batch) */
    for (int i = 0; i < nin && rc == 0; i++) {
        tracers[i] = NULL;
        args[i] = in[i];
        if (axes[i] < 0) continue;
        pn_array *e = B > 0 ? batch_element(in[i], axes[i], 0) : zero_element(in[i], axes[i]);
        if (!(args[i] = tracers[i] = pnT_tracer(e))) rc = -1;
    }
    if (rc == 0) rc = pn_closure_call(v->f, nin, args, &n, o0);
    pnC_trace_pop();
    if (rc == 0 && v->out_axes && v->nout_axes != n)
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                          "[vmap] The number of out axes (%d) must match the number of outputs "
                          "(%d).",
                          v->nout_axes, n);
    if (rc == 0) rc = pnT_graph_build(&g, nin, tracers, n, o0, false);
    if (rc == 0 && B == 0) {
        for (int j = 0; j < n && rc == 0; j++) {
            int64_t shape[PNC_MAX_NDIM];
            int dst = out_axis(v, j, o0[j]->ndim), d = 0;
            if (dst < 0) {
                rc = -1;
                break;
            }
            for (int k = 0; k <= o0[j]->ndim; k++) shape[k] = k == dst ? 0 : o0[j]->shape[d++];
            if (!(res[j] = pn_zeros(shape, o0[j]->ndim + 1, o0[j]->dtype))) rc = -1;
        }
    } else if (rc == 0) {
        bool rules = true;
        for (int64_t k = 0; k < g.norder && rules; k++)
            rules = g.recs[g.order[k]].node->prim->vmap != NULL;
        if (!rules) atomic_fetch_add_explicit(&loop_count, 1, memory_order_relaxed);
        rc = rules ? vmap_by_rules(v, &g, nin, in, axes, tracers, B, n, o0, res)
                   : vmap_by_loop(v, &g, nin, in, axes, B, n, o0, res);
    }
    pnT_graph_free(&g);
    free(axes);
    free(args);
    if (rc) return pnT_scope_fail(NULL, 0);
    if (pnT_scope_keep(res, n)) return -1;
    for (int j = 0; j < n; j++) out[j] = res[j];
    *nout = n;
    return 0;
}

/* A closure vectorizing f (ponte.h): in_axes[i] is input i's mapped axis or -1 (in_axes NULL:
 * every input at axis 0); out_axes[j] places output j's batch axis (NULL: 0; negative counts
 * from the end). Outputs that do not depend on a mapped input come back unbatched, as in MLX.
 * It holds a reference to f. */
pn_closure *pn_vmap(pn_closure *f, const int *in_axes, int nin, const int *out_axes, int nout)
{
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[vmap] The function is NULL.");
    if ((in_axes && nin < 0) || (out_axes && nout < 0))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[vmap] Negative axis count.");
    vmap_ctx *v = calloc(1, sizeof *v);
    if (!v) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    v->nin_axes = in_axes ? nin : -1;
    v->nout_axes = out_axes ? nout : -1;
    if (in_axes) v->in_axes = malloc((size_t)(nin + 1) * sizeof(int));
    if (out_axes) v->out_axes = malloc((size_t)(nout + 1) * sizeof(int));
    if ((in_axes && !v->in_axes) || (out_axes && !v->out_axes)) {
        free(v->in_axes);
        free(v->out_axes);
        free(v);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[vmap] Out of memory.");
    }
    for (int i = 0; in_axes && i < nin; i++) v->in_axes[i] = in_axes[i];
    for (int j = 0; out_axes && j < nout; j++) v->out_axes[j] = out_axes[j];
    v->f = pn_closure_retain(f);
    return pn_closure_new(vmap_call, v, vmap_destroy);
}
