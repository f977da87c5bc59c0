/* compile.c — mx.compile: a closure that traces its function once per input signature into a
 * tape (trace.c), simplifies the tape (equal constants merged, common subexpressions, dead
 * nodes), fuses chains of elementwise ops into Compiled nodes (kernels: backend/cpu/fused.c,
 * backend/cuda/fused.cu) and replays the tape on later calls of that signature without calling
 * the function, also under other transformations (grad, vmap, ...), which then see the
 * recorded ops. */
#include "transforms/trace.h"

#include "backend/cpu/fused.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/fused.h"
#include "io/registry.h"
#include "transforms/transforms.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define OP "compile"
#define OOM() pn_set_error(PN_ERR_OUT_OF_MEMORY, "[" OP "] Out of memory.")

/* ───────────────────────────── enabling ───────────────────────────── */

/* -1 until the environment is read, then 0 or 1. */
static _Atomic int enabled_state = -1;

/* Whether an environment variable holds a non-zero integer (MLX reads its flags so). */
static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strtol(v, NULL, 10) != 0;
}

bool pn_compile_enabled(void)
{
    int v = atomic_load(&enabled_state);
    if (v < 0) {
        v = !(env_on("PONTE_DISABLE_COMPILE") || env_on("MLX_DISABLE_COMPILE"));
        int expected = -1;
        atomic_compare_exchange_strong(&enabled_state, &expected, v);
        v = atomic_load(&enabled_state);
    }
    return v == 1;
}

void pn_compile_set_enabled(bool enabled) { atomic_store(&enabled_state, enabled ? 1 : 0); }

/* ───────────────────────────── simplification ───────────────────────────── */

static _Thread_local pnT_compile_stats last_stats;

pnT_compile_stats pnT_compile_last_stats(void) { return last_stats; }

static bool same_ref(pnT_ref a, pnT_ref b) { return a.kind == b.kind && a.index == b.index; }

/* Whether two evaluated constants are equal scalars (same dtype, one element, same bytes). */
static bool same_scalar(pn_array *a, pn_array *b)
{
    if (a->dtype != b->dtype || a->size != 1 || b->size != 1 || a->ndim != b->ndim ||
        a->weak != b->weak)
        return false;
    return memcmp((const char *)pnC_data(a) + a->offset * pn_dtype_size(a->dtype),
                  (const char *)pnC_data(b) + b->offset * pn_dtype_size(b->dtype),
                  pn_dtype_size(a->dtype)) == 0;
}

/* Whether node b computes what node a does (inputs already canonical). */
static bool same_node(const pnT_op *a, const pnT_op *b)
{
    if (a->prim != b->prim || a->prim->effectful || a->params_size != b->params_size || a->nin != b->nin ||
        a->nout != b->nout || memcmp(a->params, b->params, a->params_size))
        return false;
    for (uint32_t i = 0; i < a->nin; i++)
        if (!same_ref(a->in[i], b->in[i])) return false;
    for (uint32_t j = 0; j < a->nout; j++) {
        const pnT_spec *x = &a->out[j], *y = &b->out[j];
        if (x->dtype != y->dtype || x->ndim != y->ndim ||
            memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof *x->shape))
            return false;
    }
    return true;
}

static uint64_t node_hash(const pnT_op *n)
{
    uint64_t h = pnC_fnv1a(n->params, n->params_size, PNC_FNV_OFFSET ^ (uint64_t)(uintptr_t)n->prim);
    for (uint32_t i = 0; i < n->nin; i++)
        h = (h ^ ((uint64_t)n->in[i].kind << 32 | n->in[i].index)) * 1099511628211ull;
    return h;
}

static void op_free(pnT_op *n)
{
    if (n->params) pnC_params_dropped(n->prim, n->params);
    free(n->params), free(n->in);
    for (uint32_t j = 0; j < n->nout; j++) pnT_spec_free(&n->out[j]);
    free(n->out);
    *n = (pnT_op){0};
}

/* Simplifies t in place: equal scalar constants become one, a node equal to an earlier one
 * (same primitive, params, inputs and outputs) is replaced by it, and nodes and constants no
 * result depends on are dropped. 0 or -1 (out of memory; t is unchanged then). */
static int simplify(pnT_tape *t)
{
    uint32_t nv = t->nvals, nn = t->nnode, nc = t->nconst;
    uint32_t *cmap = malloc(((size_t)nc + 1) * sizeof *cmap);   /* const -> canonical const */
    pnT_ref *vmap = malloc(((size_t)nv + 1) * sizeof *vmap);    /* value -> canonical ref */
    uint32_t *base = malloc(((size_t)nn + 1) * sizeof *base);   /* node -> first value */
    uint8_t *live = calloc((size_t)nn + 1, 1);
    uint8_t *clive = calloc((size_t)nc + 1, 1);
    size_t hcap = 16;
    while (hcap < 2 * (size_t)nn) hcap *= 2;
    int64_t *htab = malloc(hcap * sizeof *htab); /* node index + 1, 0 empty */
    int rc = cmap && vmap && base && live && clive && htab ? 0 : OOM();
    if (rc) goto done;
    memset(htab, 0, hcap * sizeof *htab);
    for (uint32_t i = 0; i < nc; i++) { /* scalar constants: quadratic over few scalars */
        cmap[i] = i;
        for (uint32_t k = 0; k < i && t->consts[i]->size == 1; k++)
            if (cmap[k] == k && same_scalar(t->consts[k], t->consts[i])) {
                cmap[i] = k;
                break;
            }
    }
    uint32_t v = 0;
    for (uint32_t k = 0; k < nn; k++) {
        pnT_op *n = &t->nodes[k];
        base[k] = v;
        for (uint32_t i = 0; i < n->nin; i++) {
            pnT_ref *r = &n->in[i];
            if (r->kind == PNT_REF_CONST) r->index = cmap[r->index];
            else if (r->kind == PNT_REF_NODE) *r = vmap[r->index];
        }
        size_t h = (size_t)node_hash(n) & (hcap - 1);
        int64_t same = -1;
        for (; htab[h]; h = (h + 1) & (hcap - 1))
            if (same_node(&t->nodes[htab[h] - 1], n)) {
                same = htab[h] - 1;
                break;
            }
        if (same < 0) htab[h] = (int64_t)k + 1;
        for (uint32_t j = 0; j < n->nout; j++)
            vmap[v + j] = (pnT_ref){PNT_REF_NODE, same < 0 ? v + j : base[same] + j};
        v += n->nout;
    }
    for (uint32_t j = 0; j < t->nres; j++) {
        pnT_ref *r = &t->res[j];
        if (r->kind == PNT_REF_CONST) r->index = cmap[r->index];
        else if (r->kind == PNT_REF_NODE) *r = vmap[r->index];
    }
    /* liveness, from the results back; value -> node through a reverse scan of base */
    uint32_t *owner = (uint32_t *)malloc(((size_t)nv + 1) * sizeof *owner);
    if (!owner) {
        rc = OOM();
        goto done;
    }
    for (uint32_t k = 0; k < nn; k++)
        for (uint32_t j = 0; j < t->nodes[k].nout; j++) owner[base[k] + j] = k;
    for (uint32_t j = 0; j < t->nres; j++) {
        if (t->res[j].kind == PNT_REF_NODE) live[owner[t->res[j].index]] = 1;
        else if (t->res[j].kind == PNT_REF_CONST) clive[t->res[j].index] = 1;
    }
    for (uint32_t k = nn; k-- > 0;) {
        if (!live[k]) continue;
        const pnT_op *n = &t->nodes[k];
        for (uint32_t i = 0; i < n->nin; i++) {
            if (n->in[i].kind == PNT_REF_NODE) live[owner[n->in[i].index]] = 1;
            else if (n->in[i].kind == PNT_REF_CONST) clive[n->in[i].index] = 1;
        }
    }
    free(owner);
    /* compaction: new value numbers and constant numbers */
    uint32_t nk = 0, nvals = 0, ncon = 0;
    for (uint32_t i = 0; i < nc; i++) {
        if (clive[i]) {
            cmap[i] = ncon;
            t->consts[ncon++] = t->consts[i];
        } else {
            pnC_decref(t->consts[i]);
        }
    }
    t->max_in = t->max_out = 0;
    for (uint32_t k = 0; k < nn; k++) {
        pnT_op *n = &t->nodes[k];
        if (!live[k]) {
            op_free(n);
            continue;
        }
        for (uint32_t j = 0; j < n->nout; j++) vmap[base[k] + j].index = nvals + j;
        for (uint32_t i = 0; i < n->nin; i++) {
            pnT_ref *r = &n->in[i];
            if (r->kind == PNT_REF_NODE) r->index = vmap[r->index].index;
            else if (r->kind == PNT_REF_CONST) r->index = cmap[r->index];
        }
        nvals += n->nout;
        if (n->nin > t->max_in) t->max_in = n->nin;
        if (n->nout > t->max_out) t->max_out = n->nout;
        t->nodes[nk++] = *n;
    }
    for (uint32_t j = 0; j < t->nres; j++) {
        pnT_ref *r = &t->res[j];
        if (r->kind == PNT_REF_NODE) r->index = vmap[r->index].index;
        else if (r->kind == PNT_REF_CONST) r->index = cmap[r->index];
    }
    t->nnode = nk, t->nvals = nvals, t->nconst = ncon;
done:
    free(cmap), free(vmap), free(base), free(live), free(clive), free(htab);
    return rc;
}

/* ───────────────────────────── the Compiled primitive ───────────────────────────── */

/* The unfused ops of a Compiled node rebuilt on in (lazy, current scope). With shape, every
 * result has that shape (the node's); with NULL, each op's shape is the broadcast of its
 * operands' (batched inputs). NULL with an error. */
static pn_array *expand(const pnF_program *pg, pn_array *const *in, const int64_t *shape, int nd)
{
    pn_array *v[PNF_MAX_IN + PNF_MAX_OPS];
    for (int i = 0; i < pg->nin; i++) v[i] = in[i];
    int64_t sh[PNC_MAX_NDIM];
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        pn_array *ops[3];
        for (int i = 0; i < op->nin; i++) ops[i] = v[op->in[i]];
        const int64_t *s = shape;
        int d = nd;
        if (!shape) {
            d = 0;
            for (int i = 0; i < op->nin; i++) {
                int64_t tmp[PNC_MAX_NDIM];
                memcpy(tmp, sh, (size_t)d * sizeof *tmp);
                if ((d = pnC_broadcast_shapes(op->prim->name, tmp, d, ops[i]->shape, ops[i]->ndim, sh)) < 0)
                    return NULL;
            }
            s = sh;
        }
        v[pg->nin + k] = pnC_make(op->prim, op->params_size ? &op->p : NULL, op->params_size,
                                  op->nin, ops, op->dtype, s, d);
        if (!v[pg->nin + k]) return NULL;
    }
    return v[pg->nin + pg->nops - 1];
}

/* The expansion as a closure of the node's inputs, for the derivative engines. */
static int expand_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const pnC_node *node = ctx;
    out[0] = expand(node->params, in, node->out_shapes[0], node->out_ndims[0]);
    *nout = out[0] ? 1 : 0;
    return out[0] ? 0 : -1;
}

static int compiled_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    pn_closure *f = pn_closure_new(expand_fn, (void *)node, NULL);
    pn_array *o[PN_MAX_OUTPUTS], *g[PNF_MAX_IN] = {0};
    int n = 0, rc = f ? pn_vjp(f, node->nin, in, 1, cot, &n, o, g) : -1;
    pn_closure_release(f);
    for (int i = 0; i < nargs; i++) grads[i] = rc == 0 ? g[argnums[i]] : NULL;
    for (int i = 0; rc == 0 && i < node->nin; i++) { /* the gradients not asked for */
        bool asked = false;
        for (int j = 0; j < nargs; j++) asked |= argnums[j] == i;
        if (!asked) pn_release(g[i]);
    }
    for (int j = 0; rc == 0 && j < n; j++) pn_release(o[j]);
    return rc;
}

static int compiled_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *tan, pn_array **out_tan)
{
    pn_closure *f = pn_closure_new(expand_fn, (void *)node, NULL);
    pn_array *o[PN_MAX_OUTPUTS], *t[PN_MAX_OUTPUTS];
    int n = 0, rc = f ? pnT_jvp(f, node->nin, in, tan, &n, o, t) : -1;
    pn_closure_release(f);
    out_tan[0] = rc == 0 ? t[0] : NULL;
    if (rc == 0) pn_release(o[0]);
    return rc;
}

/* Batching: mapped axes to the front (an unmapped input gets a leading axis of 1 unless it is
 * a scalar) and, after it, ones up to the output's rank (an input of fewer dimensions
 * broadcasts from the right), then the ops rebuilt with broadcast shapes; the output is
 * mapped along axis 0. */
static int compiled_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                         pn_array **out, int *out_axes)
{
    const pnF_program *pg = node->params;
    const int rank = node->out_ndims[0];
    pn_array *b[PNF_MAX_IN];
    for (int i = 0; i < pg->nin; i++) {
        if (in_axes[i] < 0 && in[i]->ndim == 0) {
            b[i] = in[i];
            continue;
        }
        b[i] = in_axes[i] >= 0 ? pn_moveaxis(in[i], in_axes[i], 0) : pn_expand_dims(in[i], (int[]){0}, 1);
        if (!b[i]) return -1;
        if (b[i]->ndim - 1 < rank) {
            int64_t shape[PNC_MAX_NDIM];
            const int missing = rank - (b[i]->ndim - 1);
            shape[0] = b[i]->shape[0];
            for (int d = 0; d < missing; d++) shape[1 + d] = 1;
            memcpy(shape + 1 + missing, b[i]->shape + 1, (size_t)(b[i]->ndim - 1) * sizeof *shape);
            if (!(b[i] = pn_reshape(b[i], shape, rank + 1))) return -1;
        }
    }
    out[0] = expand(pg, b, NULL, 0);
    /* an inlined Broadcast expands to its input's shape: the result takes the node's */
    int64_t batch = -1, s[PNC_MAX_NDIM];
    for (int i = 0; i < pg->nin && batch < 0; i++)
        if (in_axes[i] >= 0) batch = in[i]->shape[in_axes[i]];
    int nd = out[0] && batch >= 0 ? pnC_batch_shape(batch, node->out_shapes[0], rank, s) : -1;
    if (nd >= 0 && (out[0]->ndim != nd || memcmp(out[0]->shape, s, (size_t)nd * sizeof *s) != 0))
        out[0] = pn_broadcast_to(out[0], s, nd);
    out_axes[0] = 0;
    return out[0] ? 0 : -1;
}

/* "Compiled" followed by the fused ops' names in order, as MLX names its fused nodes
 * (cut at n bytes). */
static void compiled_label(const pnC_node *node, char *buf, size_t n)
{
    const pnF_program *pg = node->params;
    size_t len = (size_t)snprintf(buf, n, "Compiled");
    for (int k = 0; k < pg->nops && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s", pg->ops[k].prim->name);
}

const pnC_primitive pnF_compiled_prim = {.name = "Compiled",
                                         .label = compiled_label,
                                         .eval = {[PN_CPU] = pnK_fused_eval,
                                                  [PN_GPU] = PNG_EVAL(pnG_fused_eval)},
                                         .vjp = compiled_vjp,
                                         .jvp = compiled_jvp,
                                         .vmap = compiled_vmap};

/* ───────────────────────────── fusion ───────────────────────────── */

/* The fused kind of a tape node, or -1. */
static int fusable(const pnT_op *n)
{
    const pnC_primitive *p = n->prim;
    if (n->nout != 1) return -1;
    if (p >= unary_prims && p < unary_prims + PNK_U_COUNT) return PNF_UNARY;
    if (p >= binary_prims && p < binary_prims + PNK_B_COUNT) return PNF_BINARY;
    if (p == &where_prim) return PNF_WHERE;
    if (p == &astype_prim) return PNF_ASTYPE;
    return -1;
}

typedef struct {
    const pnT_tape *t;
    const pnT_spec *in; /* the input specs */
    uint32_t *owner;    /* value -> node */
} shapes_ctx;

/* The spec of node value v (an output of node owner[v]; a node's values are consecutive). */
static const pnT_spec *value_spec(const shapes_ctx *c, uint32_t v)
{
    uint32_t j = v;
    while (j > 0 && c->owner[j - 1] == c->owner[v]) j--;
    return &c->t->nodes[c->owner[v]].out[v - j];
}

/* Whether the value r has a shape that broadcasts to the root's (one element included). */
static bool fits(const shapes_ctx *c, pnT_ref r, const pnT_spec *root)
{
    const int64_t *s;
    int nd;
    if (r.kind == PNT_REF_INPUT) s = c->in[r.index].shape, nd = c->in[r.index].ndim;
    else if (r.kind == PNT_REF_CONST) s = c->t->consts[r.index]->shape, nd = c->t->consts[r.index]->ndim;
    else {
        const pnT_spec *v = value_spec(c, r.index);
        s = v->shape, nd = v->ndim;
    }
    if (nd > root->ndim) return false;
    for (int d = 0; d < nd; d++) { /* broadcasts to the root's shape (the kernels read it so) */
        int64_t want = root->shape[root->ndim - nd + d];
        if (s[d] != want && s[d] != 1) return false;
    }
    return true;
}

static bool same_spec(const pnT_spec *a, const pnT_spec *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0;
}

/* The node a member of group k reads through r when it is a one-input Broadcast to the
 * group's shape (not a member itself): the group computes its own copy of it (an identity
 * op over the Broadcast's input, which the kernels broadcast as they read it), as MLX fuses
 * a shared broadcast into each compiled node using it. -1 otherwise. */
static int64_t inlined_broadcast(const pnT_tape *t, const uint32_t *owner, const int32_t *group,
                                 pnT_ref r, uint32_t k)
{
    if (r.kind != PNT_REF_NODE) return -1;
    uint32_t b = owner[r.index];
    const pnT_op *n = &t->nodes[b];
    if (group[b] == (int32_t)k || n->prim != &broadcast_prim || n->nin != 1 || n->nout != 1 ||
        !same_spec(&n->out[0], &t->nodes[k].out[0]))
        return -1;
    return b;
}

/* The program of group k into pg, its outside inputs (as the tape's refs) into
 * ext[0..pg->nin): first one identity op (kind PNF_ASTYPE to its own dtype, primitive
 * Broadcast) per inlined Broadcast (inlined_broadcast), then the members (the nodes j <= k
 * with group[j] == k) in order. */
static void group_program(const pnT_tape *t, const int32_t *group, const uint32_t *owner, uint32_t k,
                          pnF_program *pg, pnT_ref *ext)
{
    uint32_t members[PNF_MAX_OPS], bc[PNF_MAX_OPS];
    int nm = 0, nb = 0;
    for (uint32_t j = 0; j <= k; j++) /* members in order (every one is before k) */
        if (group[j] == (int32_t)k) members[nm++] = j;
    memset(pg, 0, PNF_PROGRAM_SIZE(0));
    for (int m = 0; m < nm; m++) /* the inlined broadcasts, in order of first use */
        for (uint32_t i = 0; i < t->nodes[members[m]].nin; i++) {
            int64_t b = inlined_broadcast(t, owner, group, t->nodes[members[m]].in[i], k);
            int q = 0;
            while (b >= 0 && q < nb && bc[q] != (uint32_t)b) q++;
            if (b >= 0 && q == nb) bc[nb++] = (uint32_t)b;
        }
    for (int m = 0; m < nb + nm; m++) {
        const pnT_op *x = &t->nodes[m < nb ? bc[m] : members[m - nb]];
        pnF_op *op = &pg->ops[m];
        memset(op, 0, sizeof *op);
        op->prim = x->prim, op->kind = (int8_t)(m < nb ? PNF_ASTYPE : fusable(x)), op->nin = (int8_t)x->nin;
        op->params_size = x->params_size;
        if (x->params_size) memcpy(&op->p, x->params, sizeof op->p < x->params_size ? sizeof op->p : x->params_size);
        op->dtype = x->out[0].dtype;
        for (uint32_t i = 0; i < x->nin; i++) {
            pnT_ref r = x->in[i];
            int64_t b = m < nb ? -1 : inlined_broadcast(t, owner, group, r, k);
            if (b >= 0) {
                int q = 0;
                while (bc[q] != (uint32_t)b) q++;
                op->in[i] = (int16_t)(PNF_MAX_IN + q); /* fixed below */
                continue;
            }
            if (r.kind == PNT_REF_NODE && group[owner[r.index]] == (int32_t)k) {
                int q = 0;
                while (members[q] != owner[r.index]) q++;
                op->in[i] = (int16_t)(PNF_MAX_IN + nb + q); /* fixed below */
                continue;
            }
            int e = 0;
            while (e < pg->nin && !same_ref(ext[e], r)) e++;
            if (e == pg->nin) ext[pg->nin++] = r;
            op->in[i] = (int16_t)e;
        }
    }
    pg->nops = nb + nm;
    for (int m = 0; m < pg->nops; m++) /* operands computed in the program after the inputs */
        for (int i = 0; i < pg->ops[m].nin; i++)
            if (pg->ops[m].in[i] >= PNF_MAX_IN) pg->ops[m].in[i] = (int16_t)(pg->nin + pg->ops[m].in[i] - PNF_MAX_IN);
}

/* Whether the GPU's fused kernels take group k's program (its input dtypes read from the tape). */
static bool group_on_gpu(const shapes_ctx *c, const int32_t *group, uint32_t k)
{
#ifdef PONTE_HAS_GPU
    pnF_program pg;
    pnT_ref ext[PNF_MAX_IN];
    group_program(c->t, group, c->owner, k, &pg, ext);
    pn_dtype dt[PNF_MAX_IN];
    for (int i = 0; i < pg.nin; i++) {
        pnT_ref r = ext[i];
        dt[i] = r.kind == PNT_REF_INPUT   ? c->in[r.index].dtype
                : r.kind == PNT_REF_CONST ? c->t->consts[r.index]->dtype
                                          : value_spec(c, r.index)->dtype;
    }
    return pnG_fused_supported(&pg, dt);
#else
    (void)c, (void)group, (void)k;
    return false;
#endif
}

/* Replaces each maximal group of elementwise nodes of one output shape whose intermediate
 * results are used only inside the group (at least two nodes) by one Compiled node. t must
 * be simplified (every node live). gpu: only groups the GPU's fused kernels take (the tape the
 * GPU replays when some group of the full fusion has no GPU kernel). 0 or -1 (out of memory;
 * t unchanged). */
static int fuse(pnT_tape *t, const pnT_spec *in_specs, bool gpu)
{
    uint32_t nn = t->nnode, nv = t->nvals;
    if (nn < 2) return 0;
    uint32_t *owner = malloc(((size_t)nv + 1) * sizeof *owner), *base = malloc(((size_t)nn + 1) * sizeof *base);
    int32_t *group = malloc(((size_t)nn + 1) * sizeof *group);
    uint32_t *ncons = calloc((size_t)nn + 1, sizeof *ncons), *cstart = calloc((size_t)nn + 2, sizeof *cstart);
    uint8_t *is_res = calloc((size_t)nn + 1, 1);
    uint32_t *cons = NULL, *newval = malloc(((size_t)nv + 1) * sizeof *newval);
    pnT_op *nodes = calloc((size_t)nn + 1, sizeof *nodes);
    int rc = owner && base && group && ncons && cstart && is_res && newval && nodes ? 0 : OOM();
    uint32_t v = 0, total = 0;
    for (uint32_t k = 0; rc == 0 && k < nn; k++) {
        base[k] = v, group[k] = -1;
        for (uint32_t j = 0; j < t->nodes[k].nout; j++) owner[v++] = k;
    }
    for (uint32_t k = 0; rc == 0 && k < nn; k++)
        for (uint32_t i = 0; i < t->nodes[k].nin; i++)
            if (t->nodes[k].in[i].kind == PNT_REF_NODE) ncons[owner[t->nodes[k].in[i].index]]++, total++;
    if (rc == 0 && !(cons = malloc(((size_t)total + 1) * sizeof *cons))) rc = OOM();
    for (uint32_t k = 0; rc == 0 && k < nn; k++) cstart[k + 1] = cstart[k] + ncons[k];
    for (uint32_t k = 0; rc == 0 && k < nn; k++) ncons[k] = 0;
    for (uint32_t k = 0; rc == 0 && k < nn; k++)
        for (uint32_t i = 0; i < t->nodes[k].nin; i++)
            if (t->nodes[k].in[i].kind == PNT_REF_NODE) {
                uint32_t o = owner[t->nodes[k].in[i].index];
                cons[cstart[o] + ncons[o]++] = k;
            }
    for (uint32_t j = 0; rc == 0 && j < t->nres; j++)
        if (t->res[j].kind == PNT_REF_NODE) is_res[owner[t->res[j].index]] = 1;
    if (rc) goto done;
    shapes_ctx sc = {t, in_specs, owner};
    uint32_t members[PNF_MAX_OPS];
    int ngroups = 0;
    /* groups, from the last node back; a node joins when all its consumers are members */
    for (uint32_t k = nn; k-- > 0;) {
        const pnT_op *root = &t->nodes[k];
        if (group[k] >= 0 || fusable(root) < 0) continue;
        bool ok = true;
        for (uint32_t i = 0; i < root->nin && ok; i++) ok = fits(&sc, root->in[i], &root->out[0]);
        if (!ok) continue;
        int nm = 0;
        members[nm++] = k;
        group[k] = (int32_t)k;
        int64_t lowest = -1; /* the earliest node a member reads */
        for (uint32_t i = 0; i < root->nin; i++)
            if (root->in[i].kind == PNT_REF_NODE && (int64_t)owner[root->in[i].index] > lowest) lowest = owner[root->in[i].index];
        for (int64_t j = (int64_t)k - 1; j >= 0 && nm < PNF_MAX_OPS && lowest >= 0; j--) {
            const pnT_op *n = &t->nodes[j];
            if (group[j] >= 0 || is_res[j] || fusable(n) < 0 || !same_spec(&n->out[0], &root->out[0]) ||
                ncons[j] == 0)
                continue;
            bool all = true;
            for (uint32_t c = cstart[j]; c < cstart[j + 1] && all; c++) all = group[cons[c]] == (int32_t)k;
            for (uint32_t i = 0; i < n->nin && all; i++) all = fits(&sc, n->in[i], &root->out[0]);
            if (!all) continue;
            group[j] = (int32_t)k;
            members[nm++] = (uint32_t)j;
        }
        /* distinct outside inputs (an inlined broadcast's input for it), and inlined broadcasts */
        pnT_ref ext[PNF_MAX_IN];
        uint32_t bc[PNF_MAX_OPS];
        int next = 0, nb = 0;
        for (int m = 0; m < nm && ok; m++) {
            const pnT_op *n = &t->nodes[members[m]];
            for (uint32_t i = 0; i < n->nin && ok; i++) {
                pnT_ref r = n->in[i];
                if (r.kind == PNT_REF_NODE && group[owner[r.index]] == (int32_t)k) continue;
                int64_t b = inlined_broadcast(t, owner, group, r, k);
                if (b >= 0) {
                    int q = 0;
                    while (q < nb && bc[q] != (uint32_t)b) q++;
                    if (q == nb && (ok = nm + nb < PNF_MAX_OPS)) bc[nb++] = (uint32_t)b;
                    r = t->nodes[b].in[0];
                }
                int e = 0;
                while (ok && e < next && !same_ref(ext[e], r)) e++;
                if (ok && e == next && (ok = next < PNF_MAX_IN)) ext[next++] = r;
            }
        }
        if (ok && nm >= 2 && gpu) ok = group_on_gpu(&sc, group, k);
        if (!ok || nm < 2) {
            for (int m = 0; m < nm; m++) group[members[m]] = -1;
            if (nm >= 2) group[k] = -2; /* too many inputs, or no GPU kernel: leave it alone */
            continue;
        }
        ngroups++;
        (void)lowest;
    }
    if (ngroups == 0) goto done;
    /* a Broadcast every consumer of which is a member that inlined it (and no result) goes */
    for (uint32_t b = 0; b < nn; b++) {
        if (t->nodes[b].prim != &broadcast_prim || is_res[b] || ncons[b] == 0) continue;
        bool gone = true;
        for (uint32_t c = cstart[b]; c < cstart[b + 1] && gone; c++) {
            int32_t g = group[cons[c]];
            gone = g >= 0; /* in a group (a root, or a member of one) */
            for (uint32_t i = 0; i < t->nodes[cons[c]].nin && gone; i++) {
                pnT_ref r = t->nodes[cons[c]].in[i];
                if (r.kind == PNT_REF_NODE && owner[r.index] == b)
                    gone = inlined_broadcast(t, owner, group, r, (uint32_t)g) == (int64_t)b;
            }
        }
        if (gone) group[b] = -3;
    }
    /* the new node list: a group's members before its root vanish, the root becomes Compiled */
    uint32_t nk = 0, nvals = 0;
    for (uint32_t k = 0; k < nn && rc == 0; k++) {
        pnT_op *n = &t->nodes[k];
        if (group[k] >= 0 && group[k] != (int32_t)k) continue; /* a member: built with its root */
        if (group[k] == -3) continue; /* an inlined broadcast with no other use: freed below */
        if (group[k] == (int32_t)k) {
            int nm = 0;
            for (uint32_t j = 0; j <= k; j++) /* members in order (every one is before k) */
                if (group[j] == (int32_t)k) members[nm++] = j;
            pnF_program *pg = calloc(1, sizeof *pg);
            pnT_ref *ext = calloc(PNF_MAX_IN, sizeof *ext);
            if (!pg || !ext) {
                free(pg), free(ext);
                rc = OOM();
                break;
            }
            group_program(t, group, owner, k, pg, ext);
            for (int e = 0; e < pg->nin; e++)
                if (ext[e].kind == PNT_REF_NODE) ext[e].index = newval[ext[e].index];
            pnT_op fused = {.prim = &pnF_compiled_prim, .params = pg,
                            .params_size = (uint32_t)PNF_PROGRAM_SIZE(pg->nops), .nin = (uint32_t)pg->nin,
                            .nout = 1, .in = ext, .out = n->out};
            n->out = NULL, n->nout = 0;
            for (int m = 0; m < nm; m++) op_free(&t->nodes[members[m]]);
            newval[base[k]] = nvals;
            nodes[nk++] = fused;
            nvals += 1;
            continue;
        }
        for (uint32_t i = 0; i < n->nin; i++)
            if (n->in[i].kind == PNT_REF_NODE) n->in[i].index = newval[n->in[i].index];
        for (uint32_t j = 0; j < n->nout; j++) newval[base[k] + j] = nvals + j;
        nvals += n->nout;
        nodes[nk++] = *n;
    }
    if (rc == 0) {
        /* only now: the groups after an inlined Broadcast read its node to build their programs */
        for (uint32_t k = 0; k < nn; k++)
            if (group[k] == -3) op_free(&t->nodes[k]);
        for (uint32_t j = 0; j < t->nres; j++)
            if (t->res[j].kind == PNT_REF_NODE) t->res[j].index = newval[t->res[j].index];
        free(t->nodes);
        t->nodes = nodes, nodes = NULL;
        t->nnode = nk, t->nvals = nvals, t->max_in = t->max_out = 0;
        for (uint32_t k = 0; k < nk; k++) {
            if (t->nodes[k].nin > t->max_in) t->max_in = t->nodes[k].nin;
            if (t->nodes[k].nout > t->max_out) t->max_out = t->nodes[k].nout;
        }
    }
done:
    free(owner), free(base), free(group), free(ncons), free(cstart), free(is_res), free(cons);
    free(newval), free(nodes);
    return rc;
}

/* A deep copy of t (constants shared by reference). 0 or -1. */
static int tape_copy(pnT_tape *dst, const pnT_tape *src)
{
    *dst = *src;
    dst->in = NULL; /* the fused tape is never replayed at new shapes */
    dst->nodes = calloc((size_t)src->nnode + 1, sizeof *dst->nodes);
    dst->res = malloc(((size_t)src->nres + 1) * sizeof *dst->res);
    dst->consts = malloc(((size_t)src->nconst + 1) * sizeof *dst->consts);
    dst->nnode = 0, dst->nconst = 0;
    if (!dst->nodes || !dst->res || !dst->consts) return OOM();
    memcpy(dst->res, src->res, (size_t)src->nres * sizeof *dst->res);
    for (uint32_t i = 0; i < src->nconst; i++) dst->consts[dst->nconst++] = pnC_incref(src->consts[i]);
    for (uint32_t k = 0; k < src->nnode; k++) {
        const pnT_op *a = &src->nodes[k];
        pnT_op *b = &dst->nodes[dst->nnode++];
        *b = (pnT_op){.prim = a->prim, .params_size = a->params_size, .nin = a->nin};
        b->params = malloc(a->params_size + 1);
        if (b->params) {
            memcpy(b->params, a->params, a->params_size);
            pnC_params_copied(b->prim, b->params);
        }
        b->in = malloc(((size_t)a->nin + 1) * sizeof *b->in);
        b->out = calloc((size_t)a->nout + 1, sizeof *b->out);
        if (!b->params || !b->in || !b->out) return OOM();
        memcpy(b->in, a->in, a->nin * sizeof *b->in);
        for (uint32_t j = 0; j < a->nout; j++) {
            pnT_spec *o = &b->out[j];
            b->nout = j + 1;
            *o = (pnT_spec){a->out[j].dtype, a->out[j].ndim, malloc(((size_t)a->out[j].ndim + 1) * sizeof *o->shape)};
            if (!o->shape) return OOM();
            memcpy(o->shape, a->out[j].shape, (size_t)o->ndim * sizeof *o->shape);
        }
    }
    return 0;
}

/* ───────────────────────────── the compiled closure ───────────────────────────── */

/* Room the current caller gave for a compiled closure's outputs (pnT_compiled_call). */
static _Thread_local int out_cap = PN_MAX_OUTPUTS;

int pnT_out_capacity(void) { return out_cap; }

int pnT_compiled_call(pn_closure *c, int nin, pn_array *const *in, int cap, int *nout, pn_array **out)
{
    int saved = out_cap;
    out_cap = cap > PN_MAX_OUTPUTS ? cap : PN_MAX_OUTPUTS;
    int rc = pn_closure_call(c, nin, in, nout, out);
    out_cap = saved;
    return rc;
}

/* One cached trace: the input signature it was traced for, its simplified tape, and that tape
 * with its elementwise chains fused (replayed on the CPU; on the GPU when gpu_fused: every
 * Compiled node has a GPU kernel). When some has none, gft (gpu_partial) fuses only the
 * chains that have one, for the GPU; without any, the GPU replays the unfused tape. */
typedef struct entry {
    struct entry *next;
    pnT_spec *in;
    pnT_tape t, ft, gft;
    bool fused, gpu_fused, gpu_partial;
} entry;

typedef struct {
    pn_closure *f;
    bool shapeless;
    pthread_mutex_t lock; /* guards cache: held to look up and insert, never while f runs */
    entry *cache;         /* entries are immutable once inserted and live until destroy */
} compiled;

static void entry_free(entry *e)
{
    for (uint32_t i = 0; e->in && i < e->t.nin; i++) pnT_spec_free(&e->in[i]);
    free(e->in);
    pnT_tape_free(&e->t);
    pnT_tape_free(&e->ft);
    pnT_tape_free(&e->gft);
    free(e);
}

static void compiled_destroy(void *ctx)
{
    compiled *c = ctx;
    while (c->cache) {
        entry *e = c->cache;
        c->cache = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->lock);
    pn_closure_release(c->f);
    free(c);
}

/* Whether e was traced for these inputs (shapeless: dtypes and ranks only). */
static bool entry_matches(const entry *e, bool shapeless, int nin, pn_array *const *in)
{
    if (e->t.nin != (uint32_t)nin) return false;
    for (int i = 0; i < nin; i++) {
        const pnT_spec *s = &e->in[i];
        if (shapeless ? s->dtype != in[i]->dtype || s->ndim != in[i]->ndim
                      : !pnT_spec_matches(s, in[i]))
            return false;
    }
    return true;
}

/* Whether every Compiled node of the fused tape ft (inputs in) runs as one GPU launch
 * (backend/cuda/fused.c). False without the GPU backend or out of memory. */
static bool gpu_fusable(const pnT_tape *ft, const pnT_spec *in)
{
#ifdef PONTE_HAS_GPU
    pn_dtype *vt = malloc(((size_t)ft->nvals + 1) * sizeof *vt); /* value -> dtype */
    bool ok = vt != NULL;
    for (uint32_t k = 0, v = 0; ok && k < ft->nnode; k++) {
        const pnT_op *n = &ft->nodes[k];
        if (n->prim == &pnF_compiled_prim) {
            pn_dtype dt[PNF_MAX_IN];
            for (uint32_t i = 0; i < n->nin; i++) {
                pnT_ref r = n->in[i];
                dt[i] = r.kind == PNT_REF_INPUT ? in[r.index].dtype
                        : r.kind == PNT_REF_CONST ? ft->consts[r.index]->dtype : vt[r.index];
            }
            ok = pnG_fused_supported(n->params, dt);
        }
        for (uint32_t j = 0; j < n->nout; j++) vt[v++] = n->out[j].dtype;
    }
    free(vt);
    return ok;
#else
    (void)ft, (void)in;
    return false;
#endif
}

/* Traces c->f on in into a new entry (not yet in the cache). NULL with an error. */
static entry *trace_entry(compiled *c, int nin, pn_array *const *in)
{
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->in = calloc((size_t)nin + 1, sizeof *e->in))) {
        free(e);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[" OP "] Out of memory.");
    }
    int rc = pnT_tape_trace(&e->t, c->f, nin, in, OP);
    for (int i = 0; i < nin && rc == 0; i++) rc = pnT_spec_of(&e->in[i], in[i], OP);
    for (uint32_t k = 0; k < e->t.nnode && rc == 0; k++)
        if (!e->t.nodes[k].prim->retain_params &&
            (e->t.nodes[k].prim->release_params || pnR_find(e->t.nodes[k].prim->name) != e->t.nodes[k].prim))
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[" OP "] Cannot compile a function using %s: its node refers to "
                              "functions (custom_function, custom_vjp, checkpoint) that a compiled "
                              "trace cannot keep alive. Compile the functions it calls instead.",
                              e->t.nodes[k].prim->name);
    uint32_t before = e->t.nnode;
    if (rc == 0) rc = simplify(&e->t);
    /* fused nodes bake the shapes they were grouped by; PONTE_COMPILE_FUSE=0 turns fusion off */
    if (rc == 0 && !c->shapeless && !(getenv("PONTE_COMPILE_FUSE") && !env_on("PONTE_COMPILE_FUSE"))) {
        rc = tape_copy(&e->ft, &e->t);
        if (rc == 0) rc = fuse(&e->ft, e->in, false);
        e->fused = rc == 0 && e->ft.nnode < e->t.nnode;
        if (!e->fused) pnT_tape_free(&e->ft);
        e->gpu_fused = e->fused && gpu_fusable(&e->ft, e->in);
        if (rc == 0 && e->fused && !e->gpu_fused && pn_gpu_available()) {
            rc = tape_copy(&e->gft, &e->t);
            if (rc == 0) rc = fuse(&e->gft, e->in, true);
            e->gpu_partial = rc == 0 && e->gft.nnode < e->t.nnode;
            if (!e->gpu_partial) pnT_tape_free(&e->gft);
        }
    }
    if (rc) {
        e->t.nin = (uint32_t)nin; /* frees every spec written */
        entry_free(e);
        return NULL;
    }
    last_stats = (pnT_compile_stats){.nodes_traced = before, .nodes = e->t.nnode,
                                     .consts = e->t.nconst,
                                     .fused_nodes = e->fused ? e->ft.nnode : e->t.nnode};
    for (uint32_t k = 0; e->fused && k < e->ft.nnode; k++)
        last_stats.compiled += e->ft.nodes[k].prim == &pnF_compiled_prim;
    return e;
}

/* The cached entry for these inputs, or NULL. */
static entry *lookup(compiled *c, int nin, pn_array *const *in)
{
    pthread_mutex_lock(&c->lock);
    entry *e = c->cache;
    while (e && !entry_matches(e, c->shapeless, nin, in)) e = e->next;
    pthread_mutex_unlock(&c->lock);
    return e;
}

/* Adds e (traced by this thread) to the cache and returns it; when another thread added a
 * matching entry meanwhile, e is dropped and that one returned (results already replayed
 * from e hold their own references to its constants). */
static entry *insert(compiled *c, entry *e, int nin, pn_array *const *in)
{
    pthread_mutex_lock(&c->lock);
    entry *o = c->cache;
    while (o && !entry_matches(o, c->shapeless, nin, in)) o = o->next;
    if (!o) e->next = c->cache, c->cache = e;
    pthread_mutex_unlock(&c->lock);
    if (o) entry_free(e);
    return o ? o : e;
}

static int compiled_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    compiled *c = ctx;
    *nout = 0;
    if (!pn_compile_enabled()) return pn_closure_call(c->f, nin, in, nout, out);
    if (nin < 0 || (nin && !in) || !pnC_inputs_ok(OP, nin, in)) return -1;
    /* inside another transformation's trace (grad, vjp, jvp, vmap, an enclosing compile) the
     * tape is replayed too, unfused, so that transformation sees its ops without f running */
    bool nested = pnC_tracing();
    entry *e = lookup(c, nin, in);
    bool fresh = !e;
    if (fresh && !(e = trace_entry(c, nin, in))) return -1;
    if (fresh && nested && pnT_depends_on_tracer(e->t.consts, (int)e->t.nconst)) {
        /* f captured arrays of the enclosing transformation: frozen, they would cut its
         * dependence. The trace is dropped and f runs itself under that transformation. */
        entry_free(e);
        return pn_closure_call(c->f, nin, in, nout, out);
    }
    if (e->t.nres > (uint32_t)out_cap) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[" OP "] The function returns %u arrays (at most "
                     "%d).", e->t.nres, out_cap);
        if (fresh) entry_free(e);
        return -1;
    }
    bool reshape = false;
    for (int i = 0; c->shapeless && i < nin && !reshape; i++) reshape = !pnT_spec_matches(&e->in[i], in[i]);
    bool on_cpu = pn_current_stream().device.type == PN_CPU;
    const pnT_tape *t = e->fused && (e->gpu_fused || on_cpu) ? &e->ft : e->gpu_partial ? &e->gft : &e->t;
    if (nested) t = &e->t; /* the enclosing transformation differentiates/batches plain ops */
    pn_scope_push();
    if (pnT_tape_replay(t, NULL, in, reshape || (fresh && c->shapeless), out, OP)) {
        pnT_scope_fail(out, (int)e->t.nres);
        if (fresh) entry_free(e); /* a shapeless trace that cannot replay is not kept */
        return -1;
    }
    int n = (int)e->t.nres;
    if (fresh) insert(c, e, nin, in);
    if (pnT_scope_keep(out, n)) return -1;
    *nout = n;
    return 0;
}

pn_closure *pn_compile(pn_closure *f, bool shapeless)
{
    if (!f) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[" OP "] NULL function.");
    compiled *c = calloc(1, sizeof *c);
    if (!c) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[" OP "] Out of memory.");
    if (pthread_mutex_init(&c->lock, NULL)) {
        free(c);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[" OP "] Cannot create the cache's lock.");
    }
    c->f = pn_closure_retain(f);
    c->shapeless = shapeless;
    return pn_closure_new(compiled_fn, c, compiled_destroy);
}
