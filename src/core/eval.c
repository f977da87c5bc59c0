/* eval.c — evaluation of the lazy graph, devices and streams. pn_eval orders the pending
 * nodes by an iterative depth-first walk (no recursion), runs each primitive's kernel for its
 * stream's device, and detaches evaluated nodes so intermediates are freed as soon as their
 * last consumer has run. pn_async_eval hands the same ordered work to a worker thread. */
#include "core.h"
#include "backend/cuda/gpu.h"

#include <pthread.h>
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

/* -1 until the environment is read, then 0 or 1 (see ponte.h). */
static _Atomic int tf32_state = -1;

bool pn_tf32_enabled(void)
{
    int v = atomic_load(&tf32_state);
    if (v < 0) {
        const char *env = getenv("PONTE_ENABLE_TF32");
        if (!env) env = getenv("MLX_ENABLE_TF32");
        v = !(env && strcmp(env, "0") == 0);
        int expected = -1;
        atomic_compare_exchange_strong(&tf32_state, &expected, v);
        v = atomic_load(&tf32_state);
    }
    return v == 1;
}

void pn_set_tf32_enabled(bool enabled) { atomic_store(&tf32_state, enabled ? 1 : 0); }

bool pn_is_available(pn_device d)
{
    if (d.type == PN_CPU) return d.index == 0;
#ifdef PONTE_HAS_GPU
    return d.type == PN_GPU && pnG_device_usable(d.index);
#else
    return false;
#endif
}

int pn_device_count(pn_device_type type)
{
    if (type == PN_CPU) return 1;
#ifdef PONTE_HAS_GPU
    return type == PN_GPU ? pnG_device_count() : 0;
#else
    return 0;
#endif
}

/* The default device's index when it is a GPU (gpu:k). */
static atomic_int default_gpu_index;

/* The device PONTE_DEVICE names (cpu, gpu, gpu:k; an unavailable GPU or anything else: the
 * GPU when one is usable, else the CPU). Sets default_gpu_index for gpu:k. */
static pn_device_type initial_device(void)
{
    const char *env = getenv("PONTE_DEVICE");
    if (env && strcmp(env, "cpu") == 0) return PN_CPU;
    if (env && strncmp(env, "gpu:", 4) == 0) {
        char *end;
        long k = strtol(env + 4, &end, 10);
        if (end != env + 4 && !*end && k >= 0 && k < PNG_MAX_DEVICES && pn_is_available((pn_device){PN_GPU, (int)k})) {
            atomic_store(&default_gpu_index, (int)k);
            return PN_GPU;
        }
    }
    return pn_gpu_available() ? PN_GPU : PN_CPU;
}

pn_device pn_default_device(void)
{
    int t = atomic_load(&default_device_type);
    if (t < 0) {
        int expected = -1;
        pn_device_type first = initial_device();
        atomic_compare_exchange_strong(&default_device_type, &expected, (int)first);
        t = atomic_load(&default_device_type);
    }
    return (pn_device){.type = (pn_device_type)t, .index = t == PN_GPU ? atomic_load(&default_gpu_index) : 0};
}

/* Why device d is not available, for errors. */
static const char *unavailable_reason(pn_device d)
{
    if (d.type != PN_GPU) return "bad index";
    return pn_gpu_available() ? "no such GPU" : pn_gpu_unavailable_reason();
}

int pn_set_default_device(pn_device d)
{
    if (!pn_is_available(d))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[set_default_device] Device %s:%d is not available (%s).",
                            d.type == PN_GPU ? "gpu" : "cpu", d.index, unavailable_reason(d));
    if (d.type == PN_GPU) atomic_store(&default_gpu_index, d.index);
    atomic_store(&default_device_type, (int)d.type);
    return 0;
}

/* Default streams: the CPU's is 0, gpu:0's is 1, another GPU's is made on first use (0 in the
 * table until then). */
static _Atomic int cpu_default_stream = 0;
static _Atomic int gpu_default_stream[PNG_MAX_DEVICES] = {1};

/* A new stream index on device d (a GPU's bound to it in the runtime). */
static pn_stream make_stream(pn_device d)
{
    pn_stream s = {.index = atomic_fetch_add(&next_stream_index, 1), .device = d};
#ifdef PONTE_HAS_GPU
    /* an unavailable GPU's stream stays unbound: every use of it fails on pn_is_available;
     * binding fails only out of memory, and leaves that error for the caller */
    if (d.type == PN_GPU && d.index != 0 && pn_is_available(d)) pnG_stream_bind(s.index, d.index);
#endif
    return s;
}

pn_stream pn_default_stream(pn_device d)
{
    if (d.type != PN_GPU) return (pn_stream){.index = atomic_load(&cpu_default_stream), .device = d};
    if (d.index < 0 || d.index >= PNG_MAX_DEVICES) return (pn_stream){.index = 1, .device = d};
    int idx = atomic_load(&gpu_default_stream[d.index]);
    if (idx == 0) { /* first use of this GPU's default stream: the first thread's index wins */
        int expected = 0;
        atomic_compare_exchange_strong(&gpu_default_stream[d.index], &expected, make_stream(d).index);
        idx = atomic_load(&gpu_default_stream[d.index]);
    }
    return (pn_stream){.index = idx, .device = d};
}

int pn_set_default_stream(pn_stream s)
{
    if (!pn_is_available(s.device))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[set_default_stream] The stream's device is not available.");
    if (s.device.type == PN_GPU) atomic_store(&gpu_default_stream[s.device.index], s.index);
    else atomic_store(&cpu_default_stream, s.index);
    return 0;
}

pn_stream pn_new_stream(pn_device d) { return make_stream(d); }

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

/* CPU work is done when eval returns, except an asynchronous evaluation, which is waited for;
 * a GPU stream's queued kernels are waited for. */
int pn_synchronize(pn_stream s)
{
    pnC_async_wait();
#ifdef PONTE_HAS_GPU
    if (s.device.type == PN_GPU && pn_gpu_available()) return pnG_synchronize(s.index);
#endif
    return 0;
}

/* ───────────────────────────── tracing ───────────────────────────── */

static _Thread_local int trace_depth;
void pnC_trace_push(void)
{
    if (trace_depth == 0) pnC_async_wait(); /* transforms walk graphs the worker may change */
    trace_depth++;
}
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
 * back, and the first time it ends a graph segment that could not be recorded. */
static atomic_int gpu_strict = -1, gpu_fallback_log = -1;
static atomic_llong gpu_fallbacks;
#define MAX_LOGGED 128
/* The primitives logged so far, per log (fallbacks; graph segments broken). */
typedef const pnC_primitive *_Atomic logged_prims[MAX_LOGGED];
static logged_prims logged_fallbacks, logged_breaks;

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

/* With PONTE_GPU_FALLBACK_LOG=1, prints "ponte: <primitive name> <what>" the first time p is
 * entered in `seen`. */
static void log_first(logged_prims seen, const pnC_primitive *p, const char *what)
{
    if (!env_flag(&gpu_fallback_log, "PONTE_GPU_FALLBACK_LOG")) return;
    for (int i = 0; i < MAX_LOGGED; i++) {
        const pnC_primitive *expected = NULL;
        if (atomic_load(&seen[i]) == p) return;
        if (atomic_compare_exchange_strong(&seen[i], &expected, p)) {
            fprintf(stderr, "ponte: %s %s\n", p->name, what);
            return;
        }
    }
}

static int gpu_fallback(const pnC_node *nd)
{
    if (env_flag(&gpu_strict, "PONTE_GPU_STRICT"))
        return pn_set_error(PN_ERR_BACKEND,
                            "[eval] Primitive %s has no GPU kernel for this case (PONTE_GPU_STRICT "
                            "is set).", nd->prim->name);
    atomic_fetch_add(&gpu_fallbacks, 1);
    log_first(logged_fallbacks, nd->prim, "runs on the CPU (no GPU kernel for this case)");
    return 0;
}

/* pnC_count_kernels: calls per primitive, one map per device type, under count_lock. */
static atomic_bool counting;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static pnC_ptrmap kernel_counts[PN_NUM_DEVICE_TYPES];

void pnC_count_kernels(bool on) { atomic_store(&counting, on); }

int64_t pnC_kernel_calls(const pnC_primitive *p, pn_device_type dev)
{
    if ((int)dev < 0 || dev >= PN_NUM_DEVICE_TYPES) return 0;
    pthread_mutex_lock(&count_lock);
    int64_t *n = pnC_ptrmap_find(&kernel_counts[dev], p);
    int64_t calls = n ? *n : 0;
    pthread_mutex_unlock(&count_lock);
    return calls;
}

static void count_kernel(const pnC_primitive *p, bool gpu)
{
    pthread_mutex_lock(&count_lock);
    pnC_ptrmap *m = &kernel_counts[gpu ? PN_GPU : PN_CPU];
    int64_t *n = pnC_ptrmap_find(m, p);
    if (n) ++*n;
    else if (pnC_ptrmap_put(m, p, 1, "eval")) pn_clear_error(); /* a count lost, nothing else */
    pthread_mutex_unlock(&count_lock);
}

/* Runs fn over the node with its inputs made current on the kernel's side. Returns 0, -1 or
 * PNG_UNSUPPORTED (a GPU kernel declining the case). */
static int run_kernel(pnC_node *nd, pnC_eval_fn fn, bool gpu, pn_array *const *outs)
{
    int stream = nd->stream.index;
#ifdef PONTE_HAS_GPU
    /* the thread's CUDA calls go to the stream's GPU (inputs move there below) */
    if (gpu && !pnG_cuda_stream(stream)) return -1;
#endif
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
    bool profile = pnC_profile_on();
    double t0 = profile ? pnC_profile_clock() : 0;
    int rc = fn(nd, nd->inputs, outs);
    if (profile && rc == 0) pnC_profile_add(nd, outs[0], pnC_profile_clock() - t0);
    if (rc == 0 && atomic_load_explicit(&counting, memory_order_relaxed)) count_kernel(nd->prim, gpu);
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
        if (!done) rc = pnC_eval_capturing ? -1 : gpu_fallback(nd); /* runs again uncaptured */
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

/* ───────────────────────────── asynchronous evaluation ───────────────────────────── */

/* pn_async_eval orders the pending nodes on the caller's thread and hands the order to one
 * worker thread (at most one job in flight; a new job first waits for the previous one). While
 * the job runs, the worker holds graph_mutex around each node it evaluates, detaches and
 * releases; other threads take the same mutex (pnC_graph_lock) before they read or change
 * graph links (an array's node and buffer, a node's weak outputs), so they see every node
 * either untouched or finished. Anything that walks graphs (eval of unfinished arrays,
 * transforms, pn_synchronize) waits for the job first (pnC_async_wait). */
static pthread_mutex_t graph_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t job_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_posted = PTHREAD_COND_INITIALIZER, job_done = PTHREAD_COND_INITIALIZER;
static atomic_bool async_busy;
static bool job_ready, worker_running;
static node_vec job_order;
static pn_array **job_roots;
static int job_nroots;
static _Thread_local bool holds_graph, is_worker;

bool pnC_graph_lock(void)
{
    if (holds_graph || !atomic_load_explicit(&async_busy, memory_order_acquire)) return false;
    pthread_mutex_lock(&graph_mutex);
    holds_graph = true;
    return true;
}

void pnC_graph_unlock(bool locked)
{
    if (!locked) return;
    holds_graph = false;
    pthread_mutex_unlock(&graph_mutex);
}

void pnC_async_wait(void)
{
    if (is_worker || !atomic_load_explicit(&async_busy, memory_order_acquire)) return;
    pthread_mutex_lock(&job_mutex);
    while (atomic_load_explicit(&async_busy, memory_order_acquire))
        pthread_cond_wait(&job_done, &job_mutex);
    pthread_mutex_unlock(&job_mutex);
}

bool pnC_async_busy(void) { return atomic_load_explicit(&async_busy, memory_order_acquire); }

/* Whether a has data now (consistent with a job in flight). */
static bool has_data(const pn_array *a)
{
    bool locked = pnC_graph_lock();
    bool ready = a->buf != NULL;
    pnC_graph_unlock(locked);
    return ready;
}

bool pn_is_evaluated(const pn_array *a) { return a && has_data(a); }

/* ───────────────────────────── graph segments ───────────────────────────── */

#ifdef PONTE_HAS_GPU
/* With PONTE_GPU_GRAPHS=1, a run of GPU nodes on one stream is recorded into a CUDA graph and
 * launched as one (gpu.h: pnG_segment_begin), which costs the GPU less per kernel. Nothing
 * recorded runs before the launch, so a node that cannot be recorded (a host wait, a CPU
 * fallback, an error) drops the recording and the nodes run again directly. */
#define SEGMENT_MAX_NODES 1024

/* Whether nd can join a segment on `stream`: a GPU kernel with small outputs (gpu.h). */
static bool segment_node(const pnC_node *nd, int stream)
{
    if (nd->stream.device.type != PN_GPU || nd->stream.index != stream ||
        !nd->prim->eval[PN_GPU] || nd->prim->effectful || nd->prim->not_in_graphs)
        return false;
    for (int j = 0; j < nd->nout; j++) {
        size_t bytes = pn_dtype_size(nd->out_dtypes[j]);
        for (int d = 0; d < nd->out_ndims[j]; d++) bytes *= (size_t)nd->out_shapes[j][d];
        if (bytes > PNG_SEGMENT_NODE_BYTES) return false;
    }
    return true;
}

/* The nodes order[i..) a segment may hold: an index past i + 1, or i + 1 for none. */
static int64_t segment_extent(const node_vec *order, int64_t i)
{
    if (!pnG_graphs_enabled() || pnC_profile_on() || pnC_failed() ||
        atomic_load_explicit(&counting, memory_order_relaxed))
        return i + 1;
    int stream = order->items[i]->stream.index;
    int64_t j = i;
    while (j < order->n && j - i < SEGMENT_MAX_NODES && segment_node(order->items[j], stream)) j++;
    return j - i >= 2 ? j : i + 1;
}

/* FNV-1a over n bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Mixes into h what shapes nd's kernels: its primitive and its operands' dtypes and layouts
 * (two segments of one key usually record the same sequence of work). */
static uint64_t segment_key(uint64_t h, const pnC_node *nd)
{
    h = fnv(h, &nd->prim, sizeof nd->prim);
    for (int k = 0; k < nd->nin; k++) {
        const pn_array *a = nd->inputs[k];
        h = fnv(h, &a->dtype, sizeof a->dtype);
        h = fnv(h, a->shape, (size_t)a->ndim * sizeof *a->shape);
        if (a->buf) h = fnv(h, a->strides, (size_t)a->ndim * sizeof *a->strides);
    }
    for (int j = 0; j < nd->nout; j++) {
        h = fnv(h, &nd->out_dtypes[j], sizeof nd->out_dtypes[j]);
        h = fnv(h, nd->out_shapes[j], (size_t)nd->out_ndims[j] * sizeof **nd->out_shapes);
    }
    return h;
}

/* Runs order[i..*end) (segment_extent's end) as one graph, or directly when it cannot be
 * recorded; sets *end past the nodes it took (fewer when the segment is full). The nodes are
 * released only after it (a direct run needs them and their inputs as they were).
 * Returns 0, or -1 with the error of the failing node (the nodes before it ran). */
static int run_segment(node_vec *order, int64_t i, int64_t *end)
{
    pnC_node **nodes = order->items;
    int stream = nodes[i]->stream.index;
    /* inputs that exist already go to the stream now: a copy or a wait breaks a capture */
    int64_t last = *end;
    *end = i + 1; /* until the segment opens, node i alone is taken */
    if (!pnG_cuda_stream(stream)) return -1;
    for (int64_t k = i; k < last; k++)
        for (int j = 0; j < nodes[k]->nin; j++) {
            pnC_buffer *b = nodes[k]->inputs[j]->buf;
            if (b && pnC_buffer_to_device(b, stream)) return -1;
        }
    if (pnG_segment_begin(stream)) {
        pn_clear_error();
        return run_node(nodes[i]);
    }
    *end = last;
    pnC_eval_capturing = true;
    uint64_t key = 0xcbf29ce484222325ull;
    int64_t k = i;
    bool failed = false;
    while (k < *end && !failed) {
        key = segment_key(key, nodes[k]);
        failed = run_node(nodes[k++]) != 0 || !pnG_segment_recording();
        if (pnG_segment_full()) break;
    }
    pnC_eval_capturing = false;
    *end = k;
    if (failed) pn_clear_error(); /* the direct run says it again if it holds */
    int rc = 0;
    if (pnG_segment_end(key, failed)) {
        log_first(logged_breaks, nodes[*end - 1]->prim,
                  "ends a graph segment that could not be recorded (it runs again directly)");
        for (k = i; k < *end && rc == 0; k++) rc = run_node(nodes[k]);
    }
    pnG_segment_close();
    if (rc) *end = k; /* the failed node is the last taken */
    return rc;
}
#endif

/* Runs order[i], or a segment of order[i..*end) (*end is i + 1 on entry). */
static int run_nodes(node_vec *order, int64_t i, int64_t *end)
{
#ifdef PONTE_HAS_GPU
    int64_t j = segment_extent(order, i);
    if (j > i + 1) {
        *end = j;
        return run_segment(order, i, end);
    }
#endif
    return run_node(order->items[i]);
}

/* Runs the nodes of order in turn (each retained by the order), detaching them unless the
 * graph is kept for a trace; with `locking`, each step holds the graph mutex. Frees the order.
 * Returns 0, or -1 with the error of the failing node. */
static int run_order(node_vec *order, bool keep_graph, bool locking)
{
    int rc = 0;
    for (int64_t i = 0, end; i < order->n; i = end) {
        bool locked = locking && pnC_graph_lock();
        end = i + 1;
        bool ran = rc == 0;
        if (ran) rc = run_nodes(order, i, &end);
        for (int64_t k = i; k < end; k++) { /* on failure, the last node taken failed */
            pnC_node *nd = order->items[k];
            if (ran && (rc == 0 || k < end - 1) && !keep_graph) detach(nd);
            pnC_node_release(nd); /* the order's reference: may free inputs no one else needs */
        }
        pnC_graph_unlock(locked);
    }
    free(order->items);
    order->items = NULL;
    order->n = order->cap = 0;
    return rc;
}

/* The worker: runs each posted job, then releases its roots and reports it done. An error
 * leaves the failed arrays unevaluated; evaluating them again reports it. */
static void *worker_main(void *unused)
{
    (void)unused;
    is_worker = true;
    pthread_mutex_lock(&job_mutex);
    for (;;) {
        while (!job_ready) pthread_cond_wait(&job_posted, &job_mutex);
        job_ready = false;
        node_vec order = job_order;
        pthread_mutex_unlock(&job_mutex);

        run_order(&order, false, true);
        pn_clear_error();
        bool locked = pnC_graph_lock();
        for (int r = 0; r < job_nroots; r++) pnC_decref(job_roots[r]);
        pnC_graph_unlock(locked);
        free(job_roots);
        job_roots = NULL;

        pthread_mutex_lock(&job_mutex);
        atomic_store_explicit(&async_busy, false, memory_order_release);
        pthread_cond_broadcast(&job_done);
    }
    return NULL;
}

/* Starts the worker once. False when the thread cannot be created (evaluation then runs on
 * the caller's thread). Called with job_mutex held. */
static bool start_worker(void)
{
    if (worker_running) return true;
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr)) return false;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    worker_running = pthread_create(&t, &attr, worker_main, NULL) == 0;
    pthread_attr_destroy(&attr);
    return worker_running;
}

static int check_roots(pn_array *const *arrays, int n)
{
    if (n < 0 || (n > 0 && !arrays))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[eval] Bad array list.");
    for (int i = 0; i < n; i++)
        if (!pnC_inputs_ok("eval", 1, &arrays[i])) return -1;
    return 0;
}

int pn_eval(pn_array *const *arrays, int n)
{
    if (check_roots(arrays, n)) return -1;
    if (!is_worker && pnC_async_busy()) { /* finished arrays need no wait */
        int ready = 0;
        while (ready < n && has_data(arrays[ready])) ready++;
        if (ready == n) return 0;
        pnC_async_wait();
    }
    node_vec order = {0};
    int rc = topo_order(arrays, n, &order);
    if (rc) {
        for (int64_t i = 0; i < order.n; i++) pnC_node_release(order.items[i]);
        free(order.items);
        return rc;
    }
    return run_order(&order, pnC_tracing(), false);
}

int pn_async_eval(pn_array *const *arrays, int n)
{
    if (check_roots(arrays, n)) return -1;
    if (pnC_tracing()) /* as MLX: the trace needs the graph evaluated where it stands */
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[async_eval] Not allowed inside a graph transformation.");
    pnC_async_wait();
    if (is_worker) return pn_eval(arrays, n);
    node_vec order = {0};
    int rc = topo_order(arrays, n, &order);
    bool on_gpu = false; /* GPU kernels are queued asynchronously already */
    for (int64_t i = 0; i < order.n && !on_gpu; i++)
        on_gpu = order.items[i]->stream.device.type == PN_GPU;
    pn_array **roots = rc || order.n == 0 || on_gpu ? NULL : malloc((size_t)n * sizeof *roots);
    if (rc || !roots) {
        if (rc) {
            for (int64_t i = 0; i < order.n; i++) pnC_node_release(order.items[i]);
            free(order.items);
            return rc;
        }
        return run_order(&order, false, false);
    }
    for (int r = 0; r < n; r++) roots[r] = pnC_incref(arrays[r]);
    pthread_mutex_lock(&job_mutex);
    if (!start_worker()) {
        pthread_mutex_unlock(&job_mutex);
        for (int r = 0; r < n; r++) pnC_decref(roots[r]);
        free(roots);
        return run_order(&order, false, false);
    }
    job_order = order;
    job_roots = roots;
    job_nroots = n;
    job_ready = true;
    atomic_store_explicit(&async_busy, true, memory_order_release);
    pthread_cond_signal(&job_posted);
    pthread_mutex_unlock(&job_mutex);
    return 0;
}

int pnC_eval1(pn_array *a)
{
    if (!a || !has_data(a)) {
        if (pn_eval(&a, 1)) return -1;
    }
    return pnC_buffer_to_host(a->buf);
}
