/* array.c — array handles and graph nodes: creation of lazy outputs (pnC_make), leaves,
 * reference counting with iterative destruction (a million-node chain frees without deep
 * recursion), scopes that own what ops return, and buffers for kernel outputs. */
#include "core.h"
#include "backend/cuda/eval.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* ───────────────────────────── scopes ───────────────────────────── */

struct pnC_scope {
    pn_array **items;
    int64_t n, cap;
    pnC_scope *parent;
};

static _Thread_local pnC_scope *scope_top;
static _Thread_local int scope_depth;

static void scope_adopt(pnC_scope *s, pn_array *a)
{
    if (!s) {
        a->owner = NULL;
        return;
    }
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        pn_array **items = realloc(s->items, (size_t)cap * sizeof *items);
        if (!items) { /* cannot track it: the caller owns it directly (it may leak) */
            a->owner = NULL;
            return;
        }
        s->items = items;
        s->cap = cap;
    }
    a->owner = s;
    a->owner_slot = s->n;
    s->items[s->n++] = a;
}

/* Gives a new array to whoever owns op results now: the innermost scope or the caller. */
static pn_array *adopt(pn_array *a)
{
    if (a) scope_adopt(scope_top, a);
    return a;
}

void pn_scope_push(void)
{
    pnC_scope *s = calloc(1, sizeof *s);
    if (!s) { /* degrade to the enclosing scope; pop will match via depth */
        scope_depth++;
        return;
    }
    s->parent = scope_top;
    scope_top = s;
    scope_depth++;
}

int pn_scope_depth(void) { return scope_depth; }
pnC_scope *pnC_current_scope(void) { return scope_top; }

pn_array *pn_scope_take(pn_array *a)
{
    if (a && a->owner) {
        a->owner->items[a->owner_slot] = NULL;
        a->owner = NULL;
    }
    return a;
}

static void array_decref(pn_array *a);

static void scope_close(pn_array *const *keep, int nkeep)
{
    if (scope_depth == 0) return;
    scope_depth--;
    pnC_scope *s = scope_top;
    if (!s) return;
    scope_top = s->parent;
    /* kept arrays owned here move up; kept arrays from elsewhere get a new handle up there */
    for (int i = 0; i < nkeep; i++) {
        pn_array *k = keep[i];
        if (!k) continue;
        if (k->owner == s) {
            s->items[k->owner_slot] = NULL;
            scope_adopt(scope_top, k);
        }
    }
    for (int64_t i = 0; i < s->n; i++) {
        pn_array *a = s->items[i];
        if (!a) continue;
        a->owner = NULL;
        array_decref(a);
    }
    free(s->items);
    free(s);
}

void pn_scope_pop(void) { scope_close(NULL, 0); }
void pn_scope_pop_keep(pn_array *const *keep, int n) { scope_close(keep, n); }

pn_array *pnC_alias(pn_array *a);

pn_array *pnC_scope_return(pn_array *result)
{
    if (result && result->owner != scope_top) {
        /* not created in this scope (an input passed through): return a new handle */
        result = pnC_alias(result);
    }
    scope_close(&result, 1);
    return result;
}

/* ───────────────────────────── reference counting ───────────────────────────── */

static void node_decref(pnC_node *nd);

/* Arrays whose last reference went, waiting to be destroyed by the drain loop. */
static _Thread_local pn_array **dead;
static _Thread_local int64_t ndead, dead_cap;
static _Thread_local bool draining;
/* A thread's dead list is freed when the thread exits (a key destructor). */
static pthread_key_t dead_key;
static pthread_once_t dead_once = PTHREAD_ONCE_INIT;
static void dead_key_make(void) { pthread_key_create(&dead_key, free); }

static void destroy_array(pn_array *a)
{
    if (a->node) {
        if (a->node->outputs[a->out_index] == a) a->node->outputs[a->out_index] = NULL;
        node_decref(a->node);
    }
    pnC_buffer_release(a->buf);
    free(a);
}

static void array_decref(pn_array *a)
{
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
    if (ndead == dead_cap) {
        int64_t cap = dead_cap ? 2 * dead_cap : 1024;
        pn_array **d = realloc(dead, (size_t)cap * sizeof *d);
        if (!d) { /* no room to defer: destroy now (recursive, but memory is already short) */
            bool locked = pnC_graph_lock();
            destroy_array(a);
            pnC_graph_unlock(locked);
            return;
        }
        dead = d;
        dead_cap = cap;
        pthread_once(&dead_once, dead_key_make);
        pthread_setspecific(dead_key, d);
    }
    dead[ndead++] = a;
    if (draining) return;
    draining = true;
    bool locked = pnC_graph_lock(); /* destruction clears graph links an async eval reads */
    while (ndead) destroy_array(dead[--ndead]);
    pnC_graph_unlock(locked);
    draining = false;
}

void pnC_decref(pn_array *a)
{
    if (a) array_decref(a);
}

static void node_decref(pnC_node *nd)
{
    if (atomic_fetch_sub_explicit(&nd->refs, 1, memory_order_acq_rel) != 1) return;
    for (int i = 0; i < nd->nin; i++) array_decref(nd->inputs[i]);
    if (nd->prim->release_params) nd->prim->release_params(nd->params);
    free(nd);
}

void pnC_node_retain(pnC_node *nd) { atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed); }
void pnC_node_release(pnC_node *nd) { node_decref(nd); }

pn_array *pnC_incref(pn_array *a)
{
    if (a) atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

pn_array *pn_retain(pn_array *a)
{
    if (a) atomic_fetch_add_explicit(&a->retains, 1, memory_order_relaxed);
    return pnC_incref(a);
}

void pn_release(pn_array *a)
{
    if (!a) return;
    int r = atomic_load_explicit(&a->retains, memory_order_relaxed);
    while (r > 0 && !atomic_compare_exchange_weak(&a->retains, &r, r - 1)) {
    }
    if (r > 0) { /* an explicit pn_retain goes first; the scope keeps its own reference */
        array_decref(a);
        return;
    }
    if (a->owner) { /* owned through a scope: leave the scope's slot empty */
        a->owner->items[a->owner_slot] = NULL;
        a->owner = NULL;
    }
    array_decref(a);
}

/* ───────────────────────────── creation ───────────────────────────── */

/* A bare array struct with shape set and no data, not yet adopted by any scope. */
static pn_array *array_alloc(pn_dtype dtype, const int64_t *shape, int ndim)
{
    pn_array *a = malloc(sizeof *a + 2 * (size_t)ndim * sizeof(int64_t));
    if (!a) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[array] Out of memory.");
    atomic_init(&a->refs, 1);
    atomic_init(&a->retains, 0);
    a->dtype = dtype;
    a->ndim = ndim;
    a->weak = 0;
    a->flags = 0;
    a->out_index = 0;
    a->stream = pn_current_stream();
    a->node = NULL;
    a->buf = NULL;
    a->offset = 0;
    a->owner = NULL;
    a->owner_slot = 0;
    a->tag = NULL;
    a->shape = a->dims;
    a->strides = a->dims + ndim;
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) {
        a->shape[i] = shape[i];
        size *= shape[i];
        a->strides[i] = 0;
    }
    a->size = size;
    return a;
}

void pnC_row_strides(const int64_t *shape, int ndim, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

void pnC_update_flags(pn_array *a)
{
    uint8_t f = 0;
    int64_t s = 1;
    bool row = true, col = true;
    for (int i = a->ndim - 1; i >= 0; i--) {
        if (a->shape[i] != 1 && a->strides[i] != s) row = false;
        s *= a->shape[i];
    }
    s = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] != 1 && a->strides[i] != s) col = false;
        s *= a->shape[i];
    }
    if (a->size == 0) row = col = true;
    if (row) f |= PNC_ROW_CONTIGUOUS;
    if (col) f |= PNC_COL_CONTIGUOUS;
    a->flags = f;
}

int pnC_alloc_output(pn_array *out)
{
    pnC_buffer *b = pnC_buffer_new_for_eval((size_t)out->size * pn_dtype_size(out->dtype));
    if (!b) return -1;
    pnC_buffer_release(out->buf);
    out->buf = b;
    out->offset = 0;
    pnC_row_strides(out->shape, out->ndim, out->strides);
    out->flags = PNC_ROW_CONTIGUOUS | (out->ndim <= 1 ? PNC_COL_CONTIGUOUS : 0);
    if (out->ndim > 1) pnC_update_flags(out);
    return 0;
}

void pnC_set_view(pn_array *out, const pn_array *src, int64_t offset, const int64_t *strides)
{
    pnC_buffer_retain(src->buf);
    pnC_buffer_release(out->buf);
    out->buf = src->buf;
    out->offset = offset;
    if (strides != out->strides) memcpy(out->strides, strides, (size_t)out->ndim * sizeof(int64_t));
    pnC_update_flags(out);
}

bool pnC_donate(pn_array *out, pn_array *in)
{
    if (!in->buf || pnC_tracing() || pnC_eval_capturing) return false;
    if (atomic_load_explicit(&in->refs, memory_order_acquire) != 1) return false;
    if (atomic_load_explicit(&in->buf->refs, memory_order_acquire) != 1) return false;
    if (!pnC_row_contiguous(in) || in->offset != 0 || in->size != out->size) return false;
    if (pn_dtype_size(in->dtype) != pn_dtype_size(out->dtype)) return false;
    pnC_buffer_release(out->buf);
    out->buf = in->buf;
    in->buf = NULL; /* in is held only by the node being evaluated; it is never read again */
    /* the kernel writes the donated buffer on its own side: the other copy goes stale */
    if (pnC_eval_gpu)
        out->buf->host_valid = 0;
    else
        out->buf->device_valid = 0;
    out->offset = 0;
    pnC_row_strides(out->shape, out->ndim, out->strides);
    pnC_update_flags(out);
    return true;
}

pn_array *pnC_new_leaf(pn_dtype dtype, const int64_t *shape, int ndim)
{
    pn_array *a = array_alloc(dtype, shape, ndim);
    if (!a) return NULL;
    if (pnC_alloc_output(a)) {
        free(a);
        return NULL;
    }
    return adopt(a);
}

/* The same as pnC_new_leaf but owned by the caller alone (kernel temporaries). */
pn_array *pnC_new_temp(pn_dtype dtype, const int64_t *shape, int ndim)
{
    pn_array *a = array_alloc(dtype, shape, ndim);
    if (!a) return NULL;
    if (pnC_alloc_output(a)) {
        free(a);
        return NULL;
    }
    return a;
}

pn_array *pnC_broadcast_view(const pn_array *a, const int64_t *shape, int ndim)
{
    if (ndim < a->ndim) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[broadcast] Cannot broadcast to fewer dimensions.");
    int64_t strides[PNC_MAX_NDIM];
    for (int d = 0; d < ndim; d++) {
        int s = d - (ndim - a->ndim); /* a's dimension aligned on the right */
        if (s < 0 || a->shape[s] == 1)
            strides[d] = 0;
        else if (a->shape[s] == shape[d])
            strides[d] = a->strides[s];
        else
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[broadcast] Shapes do not broadcast.");
    }
    pn_array *v = array_alloc(a->dtype, shape, ndim);
    if (!v) return NULL;
    pnC_set_view(v, a, a->offset, strides);
    return v;
}

/* One allocation holds the node, its input/output slots, its params and the dtype and shape
 * of every output (so a dead output can be rebuilt). */
static pnC_node *node_alloc(const pnC_primitive *p, const void *params, size_t params_size,
                            int nin, pn_array *const *inputs, int nout, const pn_dtype *dtypes,
                            const int64_t *const *shapes, const int *ndims)
{
    size_t dims = 0;
    for (int j = 0; j < nout; j++) dims += (size_t)ndims[j];
    size_t head = sizeof(pnC_node) + (size_t)(nin + nout) * sizeof(pn_array *) +
                  (size_t)nout * sizeof(int64_t *);
    head = (head + 15) & ~(size_t)15;
    size_t tail = (size_t)nout * (sizeof(pn_dtype) + sizeof(int)) + 16;
    size_t params_at = head + dims * sizeof(int64_t);
    pnC_node *nd = malloc(params_at + ((params_size + 15) & ~(size_t)15) + tail);
    if (!nd) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", p->name);
    atomic_init(&nd->refs, 0);
    nd->prim = p;
    nd->nin = nin;
    nd->nout = nout;
    nd->inputs = (pn_array **)(nd + 1);
    nd->outputs = nd->inputs + nin;
    nd->out_shapes = (int64_t **)(nd->outputs + nout);
    int64_t *dim = (int64_t *)((char *)nd + head);
    nd->params_size = params_size;
    nd->params = (char *)nd + params_at;
    nd->out_dtypes = (pn_dtype *)((char *)nd->params + ((params_size + 15) & ~(size_t)15));
    nd->out_ndims = (int *)(nd->out_dtypes + nout);
    nd->stream = pn_current_stream();
    nd->mark = 0;
    if (params_size) memcpy(nd->params, params, params_size);
    pnC_params_copied(p, nd->params);
    for (int i = 0; i < nin; i++) nd->inputs[i] = pnC_incref(inputs[i]);
    for (int j = 0; j < nout; j++) {
        nd->outputs[j] = NULL;
        nd->out_dtypes[j] = dtypes[j];
        nd->out_ndims[j] = ndims[j];
        nd->out_shapes[j] = dim;
        if (ndims[j]) memcpy(dim, shapes[j], (size_t)ndims[j] * sizeof(int64_t));
        dim += ndims[j];
    }
    return nd;
}

static void attach_output(pnC_node *nd, pn_array *a, int j)
{
    a->node = nd;
    a->out_index = j;
    a->stream = nd->stream;
    nd->outputs[j] = a;
    atomic_fetch_add_explicit(&nd->refs, 1, memory_order_relaxed);
}

pn_array *pnC_make(const pnC_primitive *p, const void *params, size_t params_size, int nin,
                   pn_array *const *inputs, pn_dtype dtype, const int64_t *shape, int ndim)
{
    if (!pnC_inputs_ok(p->name, nin, inputs)) return NULL;
    if (pnC_check_shape(p->name, shape, ndim)) return NULL;
    pn_array *a = array_alloc(dtype, shape, ndim);
    if (!a) return NULL;
    pnC_node *nd = node_alloc(p, params, params_size, nin, inputs, 1, &dtype, &shape, &ndim);
    if (!nd) {
        free(a);
        return NULL;
    }
    attach_output(nd, a, 0);
    return adopt(a);
}

int pnC_make_multi(const pnC_primitive *p, const void *params, size_t params_size, int nin,
                   pn_array *const *inputs, int nout, const pn_dtype *dtypes,
                   const int64_t *const *shapes, const int *ndims, pn_array **out)
{
    for (int j = 0; j < nout; j++) out[j] = NULL;
    if (!pnC_inputs_ok(p->name, nin, inputs)) return -1;
    for (int j = 0; j < nout; j++)
        if (pnC_check_shape(p->name, shapes[j], ndims[j])) return -1;
    pnC_node *nd = node_alloc(p, params, params_size, nin, inputs, nout, dtypes, shapes, ndims);
    if (!nd) return -1;
    for (int j = 0; j < nout; j++) {
        pn_array *a = array_alloc(dtypes[j], shapes[j], ndims[j]);
        if (!a) {
            for (int k = 0; k < j; k++) array_decref(out[k]);
            for (int k = 0; k < nout; k++) out[k] = NULL;
            if (j == 0) { /* no output holds the node yet */
                atomic_fetch_add(&nd->refs, 1);
                node_decref(nd);
            }
            return -1;
        }
        attach_output(nd, a, j);
        out[j] = a;
    }
    for (int j = 0; j < nout; j++) adopt(out[j]);
    return 0;
}

/* Output j of nd: the live array, or a rebuilt one (adopted by the current scope). */
pn_array *pnC_node_output(pnC_node *nd, int j)
{
    if (nd->outputs[j]) return nd->outputs[j];
    pn_array *a = array_alloc(nd->out_dtypes[j], nd->out_shapes[j], nd->out_ndims[j]);
    if (!a) return NULL;
    attach_output(nd, a, j);
    return adopt(a);
}

/* Rebuilds a dead output of nd for evaluation, owned by the caller alone. */
pn_array *pnC_node_temp_output(pnC_node *nd, int j)
{
    pn_array *a = array_alloc(nd->out_dtypes[j], nd->out_shapes[j], nd->out_ndims[j]);
    if (!a) return NULL;
    attach_output(nd, a, j);
    return a;
}

/* ───────────────────────────── alias ───────────────────────────── */

static int alias_eval(const pnC_node *nd, pn_array *const *in, pn_array *const *out)
{
    pnC_set_view(out[0], in[0], in[0]->offset, in[0]->strides);
    return 0;
}

static int alias_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = cot[0] ? pnC_alias(cot[0]) : NULL;
    return cot[0] && !grads[0] ? -1 : 0;
}

static int alias_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                     pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = tan[0] ? pnC_alias(tan[0]) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

static int alias_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                      pn_array **out, int *out_axes)
{
    out[0] = pnC_alias(in[0]);
    out_axes[0] = in_axes[0];
    return out[0] ? 0 : -1;
}

const pnC_primitive pnC_alias_prim = {
    .name = "Alias",
    .eval = {[PN_CPU] = alias_eval, [PN_GPU] = PNG_EVAL(alias_eval)},
    .vjp = alias_vjp,
    .jvp = alias_jvp,
    .vmap = alias_vmap,
};

/* A new handle on the same values: a leaf sharing the buffer when a is an evaluated leaf,
 * else an Alias node (zero-copy view at evaluation) so graphs stay connected. */
pn_array *pnC_alias(pn_array *a)
{
    if (!pnC_inputs_ok("alias", 1, &a)) return NULL;
    pn_array *r;
    bool locked = pnC_graph_lock();
    bool leaf = !a->node && a->buf;
    pnC_graph_unlock(locked);
    if (leaf) {
        r = array_alloc(a->dtype, a->shape, a->ndim);
        if (!r) return NULL;
        r->stream = a->stream;
        pnC_set_view(r, a, a->offset, a->strides);
        r = adopt(r);
    } else {
        r = pnC_make(&pnC_alias_prim, NULL, 0, 1, &a, a->dtype, a->shape, a->ndim);
    }
    if (r) r->weak = a->weak;
    return r;
}

/* ───────────────────────────── leaves from data ───────────────────────────── */

pn_array *pn_array_from_data(const void *data, const int64_t *shape, int ndim, pn_dtype dtype)
{
    if (!pnC_dtype_valid(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[array] Invalid dtype %d.", (int)dtype);
    if (pnC_check_shape("array", shape, ndim)) return NULL;
    int64_t n = pnC_shape_size(shape, ndim);
    if (n > 0 && !data) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[array] data is NULL.");
    pn_array *a = pnC_new_leaf(dtype, shape, ndim);
    if (a && n > 0) memcpy(pnC_data(a), data, (size_t)n * pn_dtype_size(dtype));
    return a;
}

pn_array *pn_scalar(double value, pn_dtype dtype)
{
    if (!pnC_dtype_valid(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[array] Invalid dtype %d.", (int)dtype);
    pn_array *a = pnC_new_leaf(dtype, NULL, 0);
    if (a) pnC_store_f64(pnC_data(a), dtype, value);
    return a;
}

pn_array *pn_scalar_int(int64_t value, pn_dtype dtype)
{
    if (!pnC_dtype_valid(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[array] Invalid dtype %d.", (int)dtype);
    pn_array *a = pnC_new_leaf(dtype, NULL, 0);
    if (!a) return NULL;
    if (pnC_is_integer(dtype) || dtype == PN_BOOL)
        pnC_convert(&value, PN_INT64, pnC_data(a), dtype, 1);
    else
        pnC_store_f64(pnC_data(a), dtype, (double)value);
    return a;
}

pn_array *pn_scalar_complex(float re, float im)
{
    pn_array *a = pnC_new_leaf(PN_COMPLEX64, NULL, 0);
    if (a) *(pn_complex64 *)pnC_data(a) = re + im * I;
    return a;
}

pn_array *pn_weak_float(double value)
{
    pn_array *a = pn_scalar(value, PN_FLOAT64);
    if (a) a->weak = 1;
    return a;
}

pn_array *pn_weak_int(int64_t value)
{
    pn_array *a = pn_scalar_int(value, PN_INT64);
    if (a) a->weak = 1;
    return a;
}

pn_array *pn_weak_bool(bool value)
{
    pn_array *a = pn_scalar(value, PN_BOOL);
    if (a) a->weak = 1;
    return a;
}

/* ───────────────────────────── queries ───────────────────────────── */

int pn_ndim(const pn_array *a) { return a ? a->ndim : 0; }
const int64_t *pn_shape(const pn_array *a) { return a ? a->shape : NULL; }
int64_t pn_size(const pn_array *a) { return a ? a->size : 0; }
pn_dtype pn_array_dtype(const pn_array *a) { return a ? a->dtype : PN_NUM_DTYPES; }
size_t pn_itemsize(const pn_array *a) { return a ? pn_dtype_size(a->dtype) : 0; }
size_t pn_nbytes(const pn_array *a) { return a ? (size_t)a->size * pn_dtype_size(a->dtype) : 0; }

int64_t pn_dim(const pn_array *a, int axis)
{
    if (!a) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[dim] NULL array."), -1;
    int ax = pnC_axis("dim", axis, a->ndim);
    return ax < 0 ? -1 : a->shape[ax];
}

/* ───────────────────────────── reading data ───────────────────────────── */

int pn_to_host(pn_array *a, void *dst, size_t dst_bytes)
{
    if (!pnC_inputs_ok("to_host", 1, &a)) return -1;
    if (pnC_eval1(a)) return -1;
    size_t need = pn_nbytes(a);
    if (dst_bytes < need)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[to_host] Destination holds %zu bytes but the array needs %zu.",
                            dst_bytes, need);
    if (need == 0) return 0;
    if (pnC_row_contiguous(a))
        memcpy(dst, pnC_data(a), need);
    else
        pnC_copy_to_contiguous(a, dst);
    return 0;
}

const void *pn_data(pn_array *a)
{
    if (!pnC_inputs_ok("data", 1, &a)) return NULL;
    if (pnC_eval1(a)) return NULL;
    if (!pnC_row_contiguous(a)) { /* give a a dense copy of its own; views keep the old one */
        pnC_async_wait(); /* an async eval may be reading a's buffer */
        pnC_buffer *b = pnC_buffer_new(pn_nbytes(a));
        if (!b) return NULL;
        pnC_copy_to_contiguous(a, b->data);
        pnC_buffer_release(a->buf);
        a->buf = b;
        a->offset = 0;
        pnC_row_strides(a->shape, a->ndim, a->strides);
        pnC_update_flags(a);
    }
    return pnC_data(a);
}

static int item_check(pn_array *a)
{
    if (!pnC_inputs_ok("item", 1, &a)) return -1;
    if (a->size != 1)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[item] item can only be called on arrays of size 1.");
    return pnC_eval1(a);
}

double pn_item(pn_array *a)
{
    if (item_check(a)) return NAN;
    return pnC_load_f64(pnC_data(a), a->dtype);
}

int64_t pn_item_int(pn_array *a)
{
    if (item_check(a)) return 0;
    if (pnC_is_integer(a->dtype) || a->dtype == PN_BOOL) {
        int64_t v;
        pnC_convert(pnC_data(a), a->dtype, &v, PN_INT64, 1);
        return v;
    }
    return (int64_t)pnC_load_f64(pnC_data(a), a->dtype);
}

pn_array *pnC_contiguous(pn_array *a)
{
    if (pnC_row_contiguous(a)) return pnC_incref(a);
    pn_array *c = pnC_new_temp(a->dtype, a->shape, a->ndim);
    if (!c) return NULL;
    pnC_copy_to_contiguous(a, pnC_data(c));
    c->stream = a->stream;
    return c;
}
