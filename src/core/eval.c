/* eval.c — evaluation of the lazy graph, devices and streams. pn_eval orders the pending
 * nodes by an iterative depth-first walk (no recursion), runs each primitive's kernel for its
 * stream's device, and detaches evaluated nodes so intermediates are freed as soon as their
 * last consumer has run. */
#include "core.h"
#include "backend/cuda/gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── devices and streams ───────────────────────────── */

#define MAX_STREAM_STACK 64

static atomic_int next_stream_index = 2; /* 0: CPU default, 1: GPU default */
static _Atomic int default_device_type = -1;
static _Thread_local pn_stream stream_stack[MAX_STREAM_STACK];
static _Thread_local int stream_depth;

#ifdef PONTE_HAS_GPU
bool pn_gpu_available(void) { return pnG_available(NULL); }

const char *pn_gpu_unavailable_reason(void)
{
    const char *reason = NULL;
    return pnG_available(&reason) ? "" : reason;
}
#else
bool pn_gpu_available(void) { return false; }

const char *pn_gpu_unavailable_reason(void)
{
    return "Ponte was built without the CUDA backend";
}
#endif

bool pn_is_available(pn_device d)
{
    if (d.index != 0) return false;
    return d.type == PN_CPU || (d.type == PN_GPU && pn_gpu_available());
}

static pn_device_type initial_device(void)
{
    const char *env = getenv("PONTE_DEVICE");
    if (env && strcmp(env, "cpu") == 0) return PN_CPU;
    if (env && strcmp(env, "gpu") == 0 && pn_gpu_available()) return PN_GPU;
    return pn_gpu_available() ? PN_GPU : PN_CPU;
}

pn_device pn_default_device(void)
{
    int t = atomic_load(&default_device_type);
    if (t < 0) {
        int expected = -1;
        atomic_compare_exchange_strong(&default_device_type, &expected, (int)initial_device());
        t = atomic_load(&default_device_type);
    }
    return (pn_device){.type = (pn_device_type)t, .index = 0};
}

int pn_set_default_device(pn_device d)
{
    if (!pn_is_available(d))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[set_default_device] Device %s:%d is not available (%s).",
                            d.type == PN_GPU ? "gpu" : "cpu", d.index,
                            d.type == PN_GPU ? pn_gpu_unavailable_reason() : "bad index");
    atomic_store(&default_device_type, (int)d.type);
    return 0;
}

pn_stream pn_default_stream(pn_device d)
{
    return (pn_stream){.index = d.type == PN_GPU ? 1 : 0, .device = d};
}

pn_stream pn_new_stream(pn_device d)
{
    return (pn_stream){.index = atomic_fetch_add(&next_stream_index, 1), .device = d};
}

int pn_stream_push(pn_stream s)
{
    if (!pn_is_available(s.device))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[stream] The stream's device is not available.");
    if (stream_depth == MAX_STREAM_STACK)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[stream] Too many nested streams.");
    stream_stack[stream_depth++] = s;
    return 0;
}

void pn_stream_pop(void)
{
    if (stream_depth > 0) stream_depth--;
}

pn_stream pn_current_stream(void)
{
    if (stream_depth > 0) return stream_stack[stream_depth - 1];
    return pn_default_stream(pn_default_device());
}

/* The CPU runs each stream's work in the evaluating thread, so it is done when eval returns;
 * a GPU stream's queued kernels are waited for. */
int pn_synchronize(pn_stream s)
{
#ifdef PONTE_HAS_GPU
    if (s.device.type == PN_GPU && pn_gpu_available()) return pnG_synchronize(s.index);
#endif
    return 0;
}

/* ───────────────────────────── tracing ───────────────────────────── */

static _Thread_local int trace_depth;
void pnC_trace_push(void) { trace_depth++; }
void pnC_trace_pop(void)
{
    if (trace_depth > 0) trace_depth--;
}
bool pnC_tracing(void) { return trace_depth > 0; }

/* ───────────────────────────── evaluation ───────────────────────────── */

static atomic_uint_fast64_t walk_counter;

typedef struct {
    pnC_node **items;
    int64_t n, cap;
} node_vec;

static int vec_push(node_vec *v, pnC_node *nd)
{
    if (v->n == v->cap) {
        int64_t cap = v->cap ? 2 * v->cap : 256;
        pnC_node **items = realloc(v->items, (size_t)cap * sizeof *items);
        if (!items) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[eval] Out of memory.");
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = nd;
    return 0;
}

static bool pending(const pn_array *a) { return !a->buf && a->node; }

/* Post-order of the pending nodes under the roots; each listed node is retained. */
static int topo_order(pn_array *const *arrays, int n, node_vec *order)
{
    uint64_t mark = atomic_fetch_add(&walk_counter, 1) + 1;
    node_vec stack = {0};
    int64_t *next = NULL, next_cap = 0; /* next input to visit, per stack entry */
    int rc = 0;
    for (int r = 0; r < n && rc == 0; r++) {
        if (!pending(arrays[r]) || arrays[r]->node->mark == mark) continue;
        arrays[r]->node->mark = mark;
        if ((rc = vec_push(&stack, arrays[r]->node))) break;
        while (stack.n) {
            if (next_cap < stack.cap) {
                int64_t *nx = realloc(next, (size_t)stack.cap * sizeof *nx);
                if (!nx) {
                    rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[eval] Out of memory.");
                    break;
                }
                for (int64_t i = next_cap; i < stack.cap; i++) nx[i] = 0;
                next = nx;
                next_cap = stack.cap;
            }
            int64_t top = stack.n - 1;
            pnC_node *nd = stack.items[top];
            if (next[top] < nd->nin) {
                pn_array *in = nd->inputs[next[top]++];
                if (pending(in) && in->node->mark != mark) {
                    in->node->mark = mark;
                    if ((rc = vec_push(&stack, in->node))) break;
                    if (stack.n - 1 < next_cap) next[stack.n - 1] = 0;
                }
                continue;
            }
            next[top] = 0;
            stack.n--;
            if ((rc = vec_push(order, nd))) break;
            pnC_node_retain(nd);
        }
    }
    free(stack.items);
    free(next);
    return rc;
}

/* ───────────────────────────── GPU fallback ───────────────────────────── */

/* A primitive with no GPU kernel for a case (no eval[PN_GPU], or PNG_UNSUPPORTED) runs its CPU
 * kernel on host copies. PONTE_GPU_STRICT=1 makes that an error (the conformance test proves
 * coverage with it); PONTE_GPU_FALLBACK_LOG=1 names each primitive the first time it falls
 * back. */
static atomic_int gpu_strict = -1, gpu_fallback_log = -1;
static atomic_llong gpu_fallbacks;
#define MAX_LOGGED 128
static const pnC_primitive *_Atomic logged[MAX_LOGGED];

static bool env_flag(atomic_int *cache, const char *name)
{
    int v = atomic_load(cache);
    if (v < 0) {
        const char *e = getenv(name);
        v = e && *e && strcmp(e, "0") != 0;
        atomic_store(cache, v);
    }
    return v;
}

int64_t pnC_gpu_fallback_count(void) { return atomic_load(&gpu_fallbacks); }

static int gpu_fallback(const pnC_node *nd)
{
    if (env_flag(&gpu_strict, "PONTE_GPU_STRICT"))
        return pn_set_error(PN_ERR_BACKEND,
                            "[eval] Primitive %s has no GPU kernel for this case (PONTE_GPU_STRICT "
                            "is set).", nd->prim->name);
    atomic_fetch_add(&gpu_fallbacks, 1);
    if (env_flag(&gpu_fallback_log, "PONTE_GPU_FALLBACK_LOG")) {
        for (int i = 0; i < MAX_LOGGED; i++) {
            const pnC_primitive *expected = NULL;
            if (atomic_load(&logged[i]) == nd->prim) break;
            if (atomic_compare_exchange_strong(&logged[i], &expected, nd->prim)) {
                fprintf(stderr, "ponte: %s runs on the CPU (no GPU kernel for this case)\n",
                        nd->prim->name);
                break;
            }
        }
    }
    return 0;
}

/* Runs fn over the node with its inputs made current on the kernel's side. Returns 0, -1 or
 * PNG_UNSUPPORTED (a GPU kernel declining the case). */
static int run_kernel(pnC_node *nd, pnC_eval_fn fn, bool gpu, pn_array *const *outs)
{
    int stream = nd->stream.index;
    for (int i = 0; i < nd->nin; i++) {
        pnC_buffer *b = nd->inputs[i]->buf;
        if (!b) continue;
        if (gpu ? pnC_buffer_to_device(b, stream) : pnC_buffer_to_host(b)) return -1;
    }
    for (int j = 0; j < nd->nout; j++) { /* re-running a kept node replaces its data */
        pnC_buffer_release(outs[j]->buf);
        outs[j]->buf = NULL;
    }
    bool had_error = pnC_failed(), was_gpu = pnC_eval_gpu;
    int was_stream = pnC_eval_stream;
    pnC_eval_gpu = gpu;
    pnC_eval_stream = stream;
    int rc = fn(nd, nd->inputs, outs);
    pnC_eval_gpu = was_gpu;
    pnC_eval_stream = was_stream;
    if (rc == 0 && !had_error && pnC_failed()) rc = -1; /* a helper recorded an error */
    if (rc == PNG_UNSUPPORTED) {
        for (int j = 0; j < nd->nout; j++) {
            pnC_buffer_release(outs[j]->buf);
            outs[j]->buf = NULL;
        }
    }
    return rc;
}

/* Runs one node's kernel; rebuilds dead outputs as temporaries for the kernel to fill. */
static int run_node(pnC_node *nd)
{
    pn_array *outs_small[8], **outs = outs_small;
    bool temp_small[8], *temp = temp_small;
    if (nd->nout > 8) {
        outs = malloc((size_t)nd->nout * (sizeof *outs + sizeof *temp));
        if (!outs) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[eval] Out of memory.");
        temp = (bool *)(outs + nd->nout);
    }
    int rc = 0;
    for (int j = 0; j < nd->nout; j++) {
        temp[j] = nd->outputs[j] == NULL;
        outs[j] = temp[j] ? pnC_node_temp_output(nd, j) : nd->outputs[j];
        if (!outs[j]) rc = -1;
    }
    pn_device_type dev = nd->stream.device.type;
    bool done = false;
    if (rc == 0 && dev == PN_GPU) {
        pnC_eval_fn gfn = nd->prim->eval[PN_GPU];
        if (gfn) {
            rc = run_kernel(nd, gfn, true, outs);
            done = rc != PNG_UNSUPPORTED;
            if (!done) rc = 0;
        }
        if (!done) rc = gpu_fallback(nd);
    }
    if (rc == 0 && !done) {
        pnC_eval_fn fn = nd->prim->eval[PN_CPU];
        if (!fn)
            rc = pn_set_error(PN_ERR_BACKEND, "[eval] Primitive %s has no CPU implementation.",
                              nd->prim->name);
        else
            rc = run_kernel(nd, fn, false, outs);
        if (rc == PNG_UNSUPPORTED)
            rc = pn_set_error(PN_ERR_BACKEND, "[eval] Primitive %s declined its CPU kernel.",
                              nd->prim->name);
    }
    if (rc == 0) {
        for (int j = 0; j < nd->nout; j++) {
            if (!outs[j]->buf) {
                rc = pn_set_error(PN_ERR_BACKEND, "[eval] Primitive %s left output %d without data.",
                                  nd->prim->name, j);
                break;
            }
        }
    } else if (!pnC_failed()) {
        pn_set_error(PN_ERR_BACKEND, "[eval] Primitive %s failed.", nd->prim->name);
    }
    for (int j = 0; j < nd->nout; j++)
        if (temp[j] && outs[j]) pnC_decref(outs[j]);
    if (outs != outs_small) free(outs);
    return rc;
}

/* After evaluation outside a trace, outputs forget their producer so the graph behind them
 * can be freed. */
static void detach(pnC_node *nd)
{
    for (int j = 0; j < nd->nout; j++) {
        pn_array *o = nd->outputs[j];
        if (!o || o->node != nd) continue;
        nd->outputs[j] = NULL;
        o->node = NULL;
        pnC_node_release(nd);
    }
}

int pn_eval(pn_array *const *arrays, int n)
{
    if (n < 0 || (n > 0 && !arrays))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[eval] Bad array list.");
    for (int i = 0; i < n; i++)
        if (!pnC_inputs_ok("eval", 1, &arrays[i])) return -1;
    node_vec order = {0};
    int rc = topo_order(arrays, n, &order);
    bool keep_graph = pnC_tracing();
    int64_t i = 0;
    for (; rc == 0 && i < order.n; i++) {
        pnC_node *nd = order.items[i];
        rc = run_node(nd);
        if (rc == 0 && !keep_graph) detach(nd);
        pnC_node_release(nd); /* the order's reference: may free inputs no one else needs */
    }
    for (; i < order.n; i++) pnC_node_release(order.items[i]);
    free(order.items);
    return rc;
}

int pn_async_eval(pn_array *const *arrays, int n) { return pn_eval(arrays, n); }

int pnC_eval1(pn_array *a)
{
    if (!a || !a->buf) {
        if (pn_eval(&a, 1)) return -1;
    }
    return pnC_buffer_to_host(a->buf);
}
