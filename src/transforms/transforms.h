/* transforms.h — private interface shared by the function transformations (closure.c,
 * autodiff.c, vmap.c): tracer arrays, the walk over the traced part of a graph, the vjp/jvp
 * engines behind the public calls, and the scope helper that hands results out. */
#ifndef PONTE_TRANSFORMS_H
#define PONTE_TRANSFORMS_H

#include "core/core.h"

/* ───────────────────────────── tracers ───────────────────────────── */

/* A fresh array equal to p (an identity node, zero-copy at evaluation) that a transformation
 * passes to the function in place of p, so the arrays depending on it can be found. Owned by
 * the current scope. Its vjp/jvp pass cotangents/tangents through, so an enclosing
 * transformation sees through it. */
pn_array *pnT_tracer(pn_array *p);
extern const pnC_primitive pnT_tracer_prim;

/* ───────────────────────────── traced graphs ───────────────────────────── */

/* One node under the outputs of a traced call. */
typedef struct pnT_rec {
    pnC_node *node;
    int64_t slot;   /* first of node->nout per-output slots in pnT_graph.slots */
    int32_t next;   /* depth-first cursor over the inputs */
    int32_t tracer; /* index of the tracer this node made, or -1 */
    uint8_t state;  /* 0 unseen, 1 on the stack, 2 done */
    uint8_t active; /* depends on a tracer (and, for autodiff, can carry a derivative) */
    uint8_t reach;  /* depends on a tracer, whatever the dtypes on the way */
} pnT_rec;

/* The nodes under a set of outputs, with those that depend on the tracers listed in
 * topological order. Every active array (a tracer or an output of an active node) has one
 * slot, a pn_array * the engines use for its cotangent, tangent or batched value. */
typedef struct pnT_graph {
    pnT_rec *recs;
    int64_t nrec, cap_rec;
    pnC_ptrmap table; /* node -> index into recs */
    int64_t *order; /* active non-tracer recs, inputs before consumers */
    int64_t norder, cap_order;
    pn_array **slots;
    int64_t nslots, cap_slots;
    int32_t *axes; /* a per-slot int (vmap: the mapped axis), allocated on demand */
    bool diff;     /* autodiff mode: only inexact outputs carry derivatives */
} pnT_graph;

/* Walks the graph under outs (iteratively) from the ntr tracer arrays (made by pnT_tracer;
 * NULL entries are skipped). diff: autodiff mode (a node whose outputs are all integer or
 * bool is not active); else plain dependency. Returns 0 or -1 (out of memory). Release with
 * pnT_graph_free. */
int pnT_graph_build(pnT_graph *g, int ntr, pn_array *const *tracers, int nout,
                    pn_array *const *outs, bool diff);
void pnT_graph_free(pnT_graph *g);
/* The rec of a node, or NULL when the walk did not reach it. */
pnT_rec *pnT_graph_find(const pnT_graph *g, const pnC_node *nd);
/* The slot of an active array (a tracer or an output of an active node), else NULL. */
pn_array **pnT_graph_slot(const pnT_graph *g, const pn_array *a);
/* How many leading inputs of nd derivatives and batching flow through (all but the
 * forward-pass outputs that a custom-vjp node carries). */
int pnT_node_nargs(const pnC_node *nd);

/* Per-node scratch lists for the walks, grown to the largest node met. */
typedef struct pnT_scratch {
    int *i0, *i1;
    pn_array **a0, **a1, **a2;
    int cap;
} pnT_scratch;

/* Makes every list hold an entry per input and per output of nd. Returns 0 or -1 (out of
 * memory). */
int pnT_scratch_fit(pnT_scratch *s, const pnC_node *nd);
void pnT_scratch_free(pnT_scratch *s);

/* Whether a and b have the same shape. */
static inline bool pnT_same_shape(const pn_array *a, const pn_array *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* ───────────────────────────── engines ───────────────────────────── */

/* Reverse mode over f at primals, differentiating the nargs primals listed in argnums
 * (distinct, in range). Cotangents: when grad_mode, ones for output 0 (which must be 0-d) and
 * zero for the others; else ncot cotangents, one per output (NULL entries: zero). Outputs go
 * to out (*nout, room for PN_MAX_OUTPUTS), gradients to grads[nargs]; all are new arrays owned
 * like op results. Returns 0 or -1 with an error (nothing is returned then).
 * Complex cotangents: the primitives' vjps follow one convention inside the backward pass,
 * cot * f'(z) for holomorphic f (JAX's); MLX's functions take and give the conjugate,
 * (dL/dx + i dL/dy for a real loss L of z = x + iy), so with `natural` the complex cotangents
 * are conjugated on the way in and the complex gradients on the way out. Backward passes that
 * run inside another one (checkpoint) pass false. */
int pnT_vjp(pn_closure *f, int np, pn_array *const *primals, const int *argnums, int nargs,
            int ncot, pn_array *const *cotangents, bool grad_mode, bool natural, int *nout,
            pn_array **out, pn_array **grads);
/* a conjugated when it is complex (a itself otherwise): between the two conventions above. */
pn_array *pnT_conj_complex(pn_array *a);
/* Forward mode over f at primals with tangents[np] (NULL entries: zero). Outputs and their
 * tangents go to out and jvps (*nout each), new arrays owned like op results. 0 or -1. */
int pnT_jvp(pn_closure *f, int np, pn_array *const *primals, pn_array *const *tangents,
            int *nout, pn_array **out, pn_array **jvps);

/* ───────────────────────────── scopes ───────────────────────────── */

/* Closes the scope opened by the caller's pn_scope_push, handing the n results (NULL entries
 * skipped) to the enclosing owner. Results not owned by the closing scope (inputs passed
 * through, captured arrays) or repeated become new handles (pnC_alias) first, so every result
 * is a distinct array its receiver owns. Returns 0, or -1 (and releases everything, results
 * set to NULL) when an alias cannot be made. */
int pnT_scope_keep(pn_array **res, int n);
/* Closes the scope opened by the caller after a failure: releases everything, sets the n
 * results to NULL and returns -1 (an error is recorded when none is). */
int pnT_scope_fail(pn_array **res, int n);

/* How many pn_vmap calls so far batched by calling the function once per batch item (some
 * primitive of the traced graph had no batching rule) instead of through the rules. */
int64_t pnT_vmap_loop_count(void);

#endif /* PONTE_TRANSFORMS_H */
