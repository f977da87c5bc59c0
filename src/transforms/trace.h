/* trace.h — a function traced into a tape, shared by compile (src/transforms/compile.c) and
 * export (src/io/export.c): the closure runs once on tracer inputs, the primitive
 * applications that depend on them become a list of nodes over input, constant and earlier
 * node references, and the tape is replayed on new inputs by rebuilding those nodes. */
#ifndef PONTE_TRACE_H
#define PONTE_TRACE_H

#include "core/core.h"

enum { PNT_REF_INPUT, PNT_REF_CONST, PNT_REF_NODE };

/* A value of the tape: an input, a constant, or output `index` counted over every node's
 * outputs in node order. */
typedef struct pnT_ref {
    uint32_t kind, index;
} pnT_ref;

/* An array's dtype and shape (shape malloc'd, ndim extents). */
typedef struct pnT_spec {
    pn_dtype dtype;
    int ndim;
    int64_t *shape;
} pnT_spec;

/* One primitive application: a copy of its params, its input references, its outputs. */
typedef struct pnT_op {
    const pnC_primitive *prim;
    void *params;
    uint32_t params_size, nin, nout;
    pnT_ref *in;
    pnT_spec *out;
} pnT_op;

/* A traced function. consts are the arrays it captured (neither inputs nor computed from
 * them), one reference each, evaluated; export moves them into its file's table. */
typedef struct pnT_tape {
    uint32_t nin, nnode, nres, nvals, max_in, max_out, nconst;
    pnT_op *nodes;
    pnT_ref *res;
    pn_array **consts;
    pnT_spec *in; /* the traced inputs' specs (nin; NULL when unknown, e.g. an imported tape) */
} pnT_tape;

/* Calls f once on tracers over the nin inputs (with tracing on; room for pnT_out_capacity()
 * outputs) and records the nodes under its outputs that depend on them into *t (zeroed first). Every other array the graph reaches
 * becomes an evaluated constant. op names the caller in messages ("compile", ...). Refused:
 * evaluating an input-dependent array inside f (PN_ERR_INVALID_ARGUMENT). Returns 0, or -1
 * with an error and *t empty. Release with pnT_tape_free. */
int pnT_tape_trace(pnT_tape *t, pn_closure *f, int nin, pn_array *const *in, const char *op);
void pnT_tape_free(pnT_tape *t);
void pnT_spec_free(pnT_spec *s);
/* Copies a's dtype and shape into s. 0 or -1 (out of memory, error names op). */
int pnT_spec_of(pnT_spec *s, const pn_array *a, const char *op);
/* Whether a has s's dtype and shape. */
bool pnT_spec_matches(const pnT_spec *s, const pn_array *a);

/* Whether the graph under any of the n arrays (NULL entries skipped) reaches a Tracer node,
 * i.e. depends on the inputs of a transformation being traced (out of memory: true). A tape
 * traced inside another transformation whose constants do must not be cached or replayed: the
 * constants would cut the enclosing transformation's dependence. */
bool pnT_depends_on_tracer(pn_array *const *a, int n);

/* Output shapes for new input shapes (shapeless replay): fills shapes/ndims for node n's
 * outputs from its actual inputs in and the shapes they had when traced (traced[i], NULL when
 * unknown), as MLX's shapeless compile allows: elementwise ops, Select, AsType, Copy,
 * Softmax (broadcast of the inputs); reductions and LogSumExp over their axes (a mean's or a
 * variance's scale recomputed from the new count); ArgReduce, Scan, Sort, ArgSort; Transpose;
 * Matmul (batch broadcast); Concatenate; Broadcast (its traced target shape); Reshape read as
 * flatten / expand_dims / squeeze (else its traced shape when the sizes agree). params
 * (n->params_size bytes) receives new params when they depend on the shapes. Returns 2 (shapes
 * and params written), 1 (shapes written, params unchanged), 0 when n's primitive has no rule
 * (Slice, Pad, topk, ...), -1 with an error when the new shapes do not fit. shapes[j] needs
 * PNC_MAX_NDIM entries. */
int pnT_infer_shapes(const pnT_op *n, const pnT_spec *const *traced, pn_array *const *in,
                     int64_t **shapes, int *ndims, void *params);

/* Rebuilds the tape's nodes on inputs in (t->nin arrays) and constants consts (NULL: the
 * tape's own), in the current scope: results to out (t->nres). With reshape, output shapes
 * come from pnT_infer_shapes (inputs may have other shapes than traced). The results are
 * lazy arrays owned by the current scope. Returns 0 or -1 with an error. */
int pnT_tape_replay(const pnT_tape *t, pn_array *const *consts, pn_array *const *in,
                    bool reshape, pn_array **out, const char *op);

/* ── the global random key under compile (defined in ops/random.c) ── */

/* Makes key (a (2,) uint32 array; NULL: none) the calling thread's traced global key: while
 * one is set, keyless draws split it with lazy ops (the split's first row becomes the key,
 * the second is drawn from) and pn_random_state returns it, so a trace records the draws and
 * the key they leave. Takes a reference to key; returns the previous traced key, whose
 * reference passes to the caller (pnC_decref). */
pn_array *pnC_random_trace_key(pn_array *key);
/* Sets the calling thread's host global key from key (a (2,) uint32 array, evaluated here).
 * 0, or -1 with an error. */
int pnC_random_set_key(pn_array *key);

/* ── compile.c ── */

/* Node counts of the calling thread's last trace by a compiled function (for tests and
 * debugging): nodes recorded, nodes left after simplification, constants kept, nodes after
 * fusion and how many of them are Compiled. */
typedef struct pnT_compile_stats {
    uint32_t nodes_traced, nodes, consts, fused_nodes, compiled;
} pnT_compile_stats;
/* Calls a closure (a compiled one, or any) with room for cap outputs in out instead of
 * PN_MAX_OUTPUTS: a compiled closure then traces and returns up to cap arrays (Python's
 * mx.compile, whose implicit state can hold many). 0 or -1 as pn_closure_call. */
int pnT_compiled_call(pn_closure *c, int nin, pn_array *const *in, int cap, int *nout, pn_array **out);
/* The room of the innermost pnT_compiled_call on this thread (PN_MAX_OUTPUTS outside one):
 * how many outputs a traced function may write. */
int pnT_out_capacity(void);
/* The primitive of a fused elementwise chain (params: pnF_program, backend/cpu/fused.h). */
extern const pnC_primitive pnF_compiled_prim;
pnT_compile_stats pnT_compile_last_stats(void);

#endif /* PONTE_TRACE_H */
